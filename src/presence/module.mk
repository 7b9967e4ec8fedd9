LIB_SRCS += src/presence/presence.c src/presence/pings.c src/presence/drivers.c src/presence/reserve.c src/presence/api.c src/presence/history.c \
            src/presence/gps_check.c src/presence/suspect.c
