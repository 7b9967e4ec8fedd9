LIB_SRCS += src/geo/geohash.c
