LIB_SRCS += src/net/http.c src/net/http_parse.c src/net/problem.c
LIB_SRCS += src/net/ws_frame.c src/net/utf8.c src/net/sha1.c
