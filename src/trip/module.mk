LIB_SRCS += src/trip/trip.c
LIB_SRCS += src/trip/view.c
