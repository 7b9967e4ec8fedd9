LIB_SRCS += src/gateway/gateway.c
