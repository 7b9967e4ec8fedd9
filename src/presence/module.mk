LIB_SRCS += src/presence/history.c src/presence/presence.c src/presence/gps_check.c src/presence/suspect.c
