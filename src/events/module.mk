LIB_SRCS += src/events/relay.c src/events/tail.c src/events/webhook.c src/events/natsauth.c
