LIB_SRCS += src/net/http.c src/net/http_parse.c src/net/jsonv.c src/net/problem.c src/net/ratelimit.c src/net/stream.c
