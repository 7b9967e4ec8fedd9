/* A small client for ridehaild's public protocol, on libevent: HTTP/1.1
 * requests over a pool of keep-alive connections, and WebSockets (RFC 6455,
 * client side, framing from net/ws_frame.h). Used by bin/ridehail-sim; any
 * other tool that needs to talk to the daemon as an app does can use it too.
 *
 * Ownership: the pool owns its connections and queued requests; a reply's
 * body is borrowed for the duration of the callback. A WebSocket is owned by
 * its caller (simc_ws_free); a closed one stays allocated until freed, and
 * the close callback must not free it (mark it, free later). */
#ifndef RH_SIM_CLIENT_H
#define RH_SIM_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;

struct simc_reply {
	int status;           /* 0: the connection failed before a whole reply */
	const char *body;     /* NUL-terminated, borrowed */
	size_t body_len;
	int retry_after_s;    /* Retry-After, or -1 */
};

typedef void (*simc_http_cb)(void *arg, const struct simc_reply *r);

struct simc_pool;

/* conns keep-alive connections to host:port (IPv4 literal). */
struct simc_pool *simc_pool_new(struct event_base *base, const char *host, int port, int conns);
void simc_pool_free(struct simc_pool *p);
/* Queues a request; token (may be NULL) becomes "Authorization: Bearer",
 * extra_header (may be NULL) is one "Name: value" line without CRLF, body
 * (may be NULL) is sent as application/json. cb runs exactly once. */
void simc_http(struct simc_pool *p, const char *method, const char *path, const char *token,
	       const char *extra_header, const char *body, simc_http_cb cb, void *arg);

struct simc_ws;

struct simc_ws_cbs {
	void (*open)(void *arg);                                  /* the 101 arrived */
	void (*text)(void *arg, const char *text, size_t len);    /* one whole text message */
	/* closed: code is the peer's close code, 1006 for a dropped connection,
	 * or 0 when the handshake failed (http_status then says why, 0 if none). */
	void (*closed)(void *arg, int code, int http_status, const char *why);
};

struct simc_ws *simc_ws_open(struct event_base *base, const char *host, int port, const char *token,
			     const struct simc_ws_cbs *cbs, void *arg);
/* Sends one text message; false once the socket is closed. */
bool simc_ws_send(struct simc_ws *w, const char *text, size_t len);
/* Sends a normal close (1000) and stops reading. */
void simc_ws_close(struct simc_ws *w);
void simc_ws_free(struct simc_ws *w);

#endif
