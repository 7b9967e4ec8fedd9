LIB_SRCS += src/presence/history.c src/presence/presence.c
