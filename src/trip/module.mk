LIB_SRCS += src/trip/trip.c src/trip/batch.c src/trip/rides_api.c src/trip/read_api.c src/trip/view.c
