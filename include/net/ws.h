/* WebSocket connections (RFC 6455) on the HTTP listener: the upgrade
 * handshake, framing (net/ws_frame.h), fragmented messages, ping/pong, the
 * close handshake, heartbeats, idle and token-expiry timeouts, limits on
 * frame, message and pending-output size, and a connection limit.
 *
 * The hub owns every connection. The owner of a connection (the gateway)
 * gets whole text messages through on_message and exactly one on_close; the
 * connection is freed after on_close returns, so nothing may keep its
 * pointer past that. Sending never blocks: output beyond ws.max_output
 * (a reader that does not keep up) closes the connection with 1008. */
#ifndef RH_NET_WS_H
#define RH_NET_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

struct event_base;
struct http_server;
struct http_req;
struct metrics;
struct ws_cfg;
struct ws_hub;
struct ws_conn;

struct ws_handlers {
	/* A complete, UTF-8-valid text message. */
	void (*on_message)(struct ws_conn *c, void *arg, const char *text, size_t len);
	/* The connection is gone (code: what was sent or received; 1006 when the
	 * TCP connection dropped without a close). */
	void (*on_close)(struct ws_conn *c, void *arg, uint16_t code, const char *reason);
	/* A complete binary message; NULL (the driver protocol): binary closes
	 * the connection with 1003. */
	void (*on_binary)(struct ws_conn *c, void *arg, const void *data, size_t len);
};

struct ws_hub *ws_hub_new(struct event_base *base, struct http_server *http, const struct ws_cfg *cfg,
			  struct metrics *m);
/* Shutdown: every connection gets a 1001 close; returns at once. */
void ws_hub_close_all(struct ws_hub *hub, uint16_t code, const char *reason);
int ws_hub_count(const struct ws_hub *hub);
void ws_hub_free(struct ws_hub *hub);

/* Checks the upgrade request (method, Upgrade/Connection headers, version 13,
 * Sec-WebSocket-Key). RH_OK: fine; otherwise it has replied (400/426/503). */
rh_err ws_check_upgrade_or_reply(struct ws_hub *hub, struct http_req *req);
/* Completes the upgrade: writes 101 (echoing `subprotocol` if not NULL) and
 * takes the socket from the HTTP server. `expires_ms` (wall clock, 0 = never)
 * closes the connection with 4001 when the credential expires. Returns NULL
 * if the client left meanwhile. */
struct ws_conn *ws_accept(struct ws_hub *hub, struct http_req *req, const char *subprotocol, int64_t expires_ms,
			  const struct ws_handlers *h, void *arg);

/* Sends one text message. false (and the connection is being closed) when
 * the reader is too slow or the connection is closing. */
bool ws_send_text(struct ws_conn *c, const char *text, size_t len);
bool ws_send_binary(struct ws_conn *c, const void *data, size_t len);
/* Starts the close handshake; on_close follows (from the loop). */
void ws_close(struct ws_conn *c, uint16_t code, const char *reason);
/* This connection's cap on unsent output (ws.max_output by default): past
 * it the connection is dropped as a slow reader. */
void ws_set_output_max(struct ws_conn *c, size_t out_max);
bool ws_is_open(const struct ws_conn *c);
const char *ws_peer(const struct ws_conn *c);
const char *ws_logid(const struct ws_conn *c);
/* When the bytes being delivered were read (monotonic and wall ms): one
 * clock reading per socket read, for the messages that came in it. */
void ws_rx_time(const struct ws_conn *c, int64_t *mono_ms, int64_t *wall_ms);
size_t ws_memory(const struct ws_conn *c);

/* Application close codes (RFC 6455 7.4.2: 4000-4999 are ours). */
enum {
	WS_CLOSE_REPLACED = 4000,      /* another session of the same account took over */
	WS_CLOSE_TOKEN_EXPIRED = 4001, /* the access token expired: log in again */
	WS_CLOSE_ACCOUNT = 4003,       /* the account was disabled */
};

#endif
