LIB_SRCS += src/geo/geohash.c src/geo/grid.c src/geo/hexgrid.c
