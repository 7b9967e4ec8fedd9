LIB_SRCS += src/gateway/gateway.c src/gateway/registry.c
