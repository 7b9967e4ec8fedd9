LIB_SRCS += src/net/http.c src/net/http_req.c src/net/http_conn.c src/net/http_parse.c src/net/jsonv.c src/net/problem.c src/net/ratelimit.c src/net/stream.c src/net/numparse.c src/net/conncount.c
LIB_SRCS += src/net/ws.c src/net/ws_rate.c src/net/ws_frame.c src/net/utf8.c src/net/sha1.c
