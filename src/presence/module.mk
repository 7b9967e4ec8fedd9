LIB_SRCS += src/presence/history.c
