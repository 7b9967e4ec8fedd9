LIB_SRCS += src/net/http.c src/net/http_parse.c src/net/problem.c
