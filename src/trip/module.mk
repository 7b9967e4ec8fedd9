LIB_SRCS += src/trip/trip.c
