#include "net/ws.h"

#include <event2/event.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/settings.h"
#include "net/http.h"
#include "net/stream.h"
#include "net/ws_frame.h"
#include "net/ws_rate.h"

/* The sweep visits every connection once a second, a tenth of them every
 * 100 ms, so that 100,000 connections never cost one long turn of the loop. */
#define SWEEP_MS 100
#define SWEEP_SLICES 10

enum ws_state {
	WS_OPEN,
	WS_CLOSING,  /* we sent a close frame; waiting for the peer's (or a timeout) */
	WS_DRAINING, /* the close handshake is done; our last bytes are going out */
};

struct ws_conn {
	TAILQ_ENTRY(ws_conn) link;
	struct ws_hub *hub;
	struct stream *st;
	struct ws_parser parser;
	const struct ws_handlers *h;
	void *arg;
	enum ws_state state;
	char *msg; /* a fragmented message being assembled */
	size_t msg_len, msg_cap;
	int64_t opened_ms, last_rx_ms, last_ping_ms, close_ms, expires_ms;
	int64_t ping_early_ms; /* this connection's heartbeat comes this much before ws.ping_interval */
	int64_t last_rx_wall_ms;
	struct ws_rate data_rate, control_rate; /* frames the client may send */
	uint64_t id;
	bool notified, dead;
	struct ws_conn *next_dead;
	char logid[32];
	char peer[64];
};

TAILQ_HEAD(ws_list, ws_conn);

struct ws_hub {
	struct event_base *base;
	struct http_server *http;
	const struct ws_cfg *cfg;
	struct ws_list conns;
	struct ws_conn *cursor; /* where the next sweep slice starts; NULL: the head */
	int count;
	uint64_t next_id;
	struct ws_conn *dead;
	struct event *sweep, *reaper;
	struct metric_family *f_closes, *f_errors;
	struct metric_cell *m_conns, *m_opened, *m_rx_msgs, *m_tx_msgs, *m_rx_bytes, *m_tx_bytes, *m_slow;
};

static void ws_conn_notify(struct ws_conn *c, uint16_t code, const char *reason);
static void ws_conn_terminate(struct ws_conn *c);

static int64_t ws_now_ms(void) { return rh_mono_ns() / 1000000; }

/* ------------------------------------------------------------ sending */

static bool ws_send_frame(struct ws_conn *c, uint8_t opcode, const void *payload, size_t len)
{
	uint8_t head[WS_HEADER_MAX];
	size_t hl = ws_frame_write_header(head, opcode, true, len, NULL);
	struct iovec iov[2] = { { head, hl }, { (void *)payload, len } };
	if (stream_writev(c->st, iov, 2)) {
		metric_add(c->hub->m_tx_bytes, (double)(hl + len));
		return true;
	}
	return false;
}

/* A reader that does not keep up: stop writing to it and drop it. Its
 * output buffer stays capped at ws.max_output; we cannot even send it a
 * close frame, since that would be queued behind what it does not read. */
static void ws_conn_slow_reader(struct ws_conn *c)
{
	metric_inc(c->hub->m_slow);
	log_info(c->logid, "closing: a slow reader left %zu bytes unread", stream_pending(c->st));
	ws_conn_notify(c, WS_CLOSE_POLICY, "slow reader");
	ws_conn_terminate(c);
}

static bool ws_send_message(struct ws_conn *c, uint8_t opcode, const void *data, size_t len)
{
	if (c->state != WS_OPEN || c->dead)
		return false;
	if (!ws_send_frame(c, opcode, data, len)) {
		ws_conn_slow_reader(c);
		return false;
	}
	metric_inc(c->hub->m_tx_msgs);
	return true;
}

bool ws_send_text(struct ws_conn *c, const char *text, size_t len)
{
	return ws_send_message(c, WS_OP_TEXT, text, len);
}

bool ws_send_binary(struct ws_conn *c, const void *data, size_t len)
{
	return ws_send_message(c, WS_OP_BINARY, data, len);
}

static void ws_count_close(struct ws_hub *hub, uint16_t code)
{
	char code_s[8];
	snprintf(code_s, sizeof code_s, "%u", code);
	const char *lv[] = { code_s };
	metric_inc(metric_cell(hub->f_closes, lv));
}

/* Sends our close frame and waits for the peer's. */
void ws_close(struct ws_conn *c, uint16_t code, const char *reason)
{
	if (c->state != WS_OPEN || c->dead)
		return;
	uint8_t frame[WS_CLOSE_FRAME_MAX];
	size_t n = ws_frame_build_close(frame, code, reason, NULL);
	c->state = WS_CLOSING;
	c->close_ms = ws_now_ms();
	if (!n || !stream_write(c->st, frame, n)) {
		ws_conn_notify(c, code, reason);
		ws_conn_terminate(c);
		return;
	}
	ws_conn_notify(c, code, reason);
}

/* ------------------------------------------------------------ lifecycle */

static void ws_conn_notify(struct ws_conn *c, uint16_t code, const char *reason)
{
	if (c->notified)
		return;
	c->notified = true;
	ws_count_close(c->hub, code);
	log_debug(c->logid, "websocket closed code=%u reason=\"%s\"", code, reason ? reason : "");
	c->h->on_close(c, c->arg, code, reason ? reason : "");
}

static void ws_reaper_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ws_hub *hub = arg;
	while (hub->dead) {
		struct ws_conn *c = hub->dead;
		hub->dead = c->next_dead;
		rh_free(c->msg);
		rh_free(c);
	}
}

/* Closes the socket; the struct goes on the next loop turn. */
static void ws_conn_terminate(struct ws_conn *c)
{
	struct ws_hub *hub = c->hub;
	if (c->dead)
		return;
	if (!c->notified)
		ws_conn_notify(c, WS_CLOSE_ABNORMAL, "connection lost");
	c->dead = true;
	stream_free(c->st);
	c->st = NULL;
	if (hub->cursor == c)
		hub->cursor = TAILQ_NEXT(c, link);
	TAILQ_REMOVE(&hub->conns, c, link);
	hub->count--;
	metric_set(hub->m_conns, hub->count);
	c->next_dead = hub->dead;
	hub->dead = c;
	event_active(hub->reaper, EV_TIMEOUT, 0);
}

/* A protocol error: tell the peer why and drop the connection. */
static void ws_conn_fail(struct ws_conn *c, uint16_t code, const char *why)
{
	const char *lv[] = { why };
	metric_inc(metric_cell(c->hub->f_errors, lv));
	log_info(c->logid, "websocket protocol error: %s (closing with %u)", why, code);
	uint8_t frame[WS_CLOSE_FRAME_MAX];
	size_t n = ws_frame_build_close(frame, code, why, NULL);
	if (c->state == WS_OPEN && n)
		stream_write(c->st, frame, n);
	c->state = WS_DRAINING;
	c->close_ms = ws_now_ms();
	ws_conn_notify(c, code, why);
	stream_shutdown_write(c->st);
	stream_pause(c->st);
}

/* ------------------------------------------------------------ receiving */

static void ws_deliver(struct ws_conn *c, bool binary, const char *data, size_t len)
{
	metric_inc(c->hub->m_rx_msgs);
	if (c->state != WS_OPEN)
		return;
	if (binary)
		c->h->on_binary(c, c->arg, data, len);
	else
		c->h->on_message(c, c->arg, data, len);
}

static bool ws_on_data_frame(struct ws_conn *c, const struct ws_frame *f)
{
	bool binary = f->message_opcode == WS_OP_BINARY;
	if (binary && !c->h->on_binary) {
		ws_conn_fail(c, WS_CLOSE_UNSUPPORTED, "binary messages are not supported");
		return false;
	}
	if (f->message_end && c->msg_len == 0) {
		ws_deliver(c, binary, (const char *)f->payload, f->payload_len); /* the usual case: zero copy */
		return true;
	}
	if (c->msg_len + f->payload_len > c->msg_cap) {
		size_t cap = c->msg_cap ? c->msg_cap : 1024;
		while (cap < c->msg_len + f->payload_len)
			cap *= 2;
		c->msg = rh_realloc(c->msg, cap);
		c->msg_cap = cap;
	}
	/* An empty fragment may come before anything was buffered (msg still
	 * NULL): memcpy with a null pointer is undefined even for 0 bytes. */
	if (f->payload_len) {
		memcpy(c->msg + c->msg_len, f->payload, f->payload_len);
		c->msg_len += f->payload_len;
	}
	if (f->message_end) {
		ws_deliver(c, binary, c->msg ? c->msg : "", c->msg_len);
		c->msg_len = 0;
		if (c->msg_cap > 65536) {
			rh_free(c->msg);
			c->msg = NULL;
			c->msg_cap = 0;
		}
	}
	return true;
}

static bool ws_on_control_frame(struct ws_conn *c, const struct ws_frame *f)
{
	switch (f->opcode) {
	case WS_OP_PING:
		if (c->state == WS_OPEN && !ws_send_frame(c, WS_OP_PONG, f->payload, f->payload_len)) {
			ws_conn_slow_reader(c);
			return false;
		}
		return true;
	case WS_OP_PONG:
		return true;
	case WS_OP_CLOSE: {
		char reason[WS_CLOSE_REASON_MAX + 1];
		size_t rl = f->close_reason_len < WS_CLOSE_REASON_MAX ? f->close_reason_len : WS_CLOSE_REASON_MAX;
		memcpy(reason, f->close_reason, rl);
		reason[rl] = '\0';
		if (c->state == WS_OPEN) {
			/* echo the code (an empty close gets an empty close) and close
			 * the TCP connection first, as RFC 6455 7.1.1 asks of servers */
			uint8_t frame[WS_CLOSE_FRAME_MAX];
			uint16_t code = f->close_code == WS_CLOSE_NO_STATUS ? 0 : f->close_code;
			size_t n = ws_frame_build_close(frame, code, NULL, NULL);
			if (n)
				stream_write(c->st, frame, n);
		}
		c->state = WS_DRAINING;
		c->close_ms = ws_now_ms();
		ws_conn_notify(c, f->close_code, reason);
		stream_shutdown_write(c->st);
		stream_pause(c->st);
		if (stream_pending(c->st) == 0)
			ws_conn_terminate(c);
		return false;
	}
	}
	return true;
}

/* The session's frame rates (ws.max_messages_per_s, ws.max_pings_per_s):
 * past them the client is flooding, and is closed with 1008. A close frame
 * always goes through. */
static bool ws_frame_allowed(struct ws_conn *c, const struct ws_frame *f)
{
	const struct ws_cfg *cfg = c->hub->cfg;
	if (f->opcode == WS_OP_CLOSE)
		return true;
	bool control = f->opcode == WS_OP_PING || f->opcode == WS_OP_PONG;
	bool ok = control ? ws_rate_take(&c->control_rate, cfg->max_pings_per_s, cfg->max_pings_per_s * 4, c->last_rx_ms)
			  : ws_rate_take(&c->data_rate, cfg->max_messages_per_s, (double)cfg->max_message_burst,
					 c->last_rx_ms);
	if (!ok)
		ws_conn_fail(c, WS_CLOSE_POLICY, control ? "ping flood" : "too many messages");
	return ok;
}

static void ws_on_read(struct stream *st, void *arg)
{
	struct ws_conn *c = arg;
	c->last_rx_ms = ws_now_ms();
	c->last_rx_wall_ms = rh_wall_ms();
	metric_add(c->hub->m_rx_bytes, (double)stream_in_len(st));
	while (!c->dead && c->state != WS_DRAINING && stream_in_len(st) > 0) {
		struct ws_frame f;
		/* the stream's input is our own memory: the parser unmasks in place */
		uint8_t *buf = (uint8_t *)(uintptr_t)stream_in(st);
		enum ws_status rc = ws_parser_next(&c->parser, buf, stream_in_len(st), &f);
		if (rc == WS_MORE)
			return;
		if (rc == WS_ERROR) {
			ws_conn_fail(c, f.error_code, f.error);
			return;
		}
		if (!ws_frame_allowed(c, &f))
			return;
		bool go_on = f.opcode >= WS_OP_CLOSE ? ws_on_control_frame(c, &f) : ws_on_data_frame(c, &f);
		if (c->dead)
			return;
		stream_consume(st, f.frame_len);
		if (!go_on)
			return;
	}
	if (c->state == WS_DRAINING && !c->dead)
		stream_consume(st, stream_in_len(st));
}

static void ws_on_drain(struct stream *st, void *arg)
{
	struct ws_conn *c = arg;
	if (c->state == WS_DRAINING)
		ws_conn_terminate(c);
}

static void ws_on_close(struct stream *st, void *arg, int err)
{
	struct ws_conn *c = arg;
	ws_conn_notify(c, WS_CLOSE_ABNORMAL, err ? strerror(err) : "connection closed without a close frame");
	ws_conn_terminate(c);
}

static const struct stream_ops ws_stream_ops = {
	.on_read = ws_on_read,
	.on_drain = ws_on_drain,
	.on_close = ws_on_close,
};

/* ------------------------------------------------------------ timers */

static void ws_sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ws_hub *hub = arg;
	int64_t now = ws_now_ms(), wall = rh_wall_ms();
	const struct ws_cfg *cfg = hub->cfg;
	int budget = (hub->count + SWEEP_SLICES - 1) / SWEEP_SLICES;
	struct ws_conn *c = hub->cursor ? hub->cursor : TAILQ_FIRST(&hub->conns), *next;
	for (; c && budget > 0; c = next, budget--) {
		next = TAILQ_NEXT(c, link);
		if (c->state != WS_OPEN) {
			if (now - c->close_ms >= cfg->close_timeout_ms)
				ws_conn_terminate(c);
			continue;
		}
		if (c->expires_ms && wall > c->expires_ms) {
			ws_close(c, WS_CLOSE_TOKEN_EXPIRED, "access token expired");
			continue;
		}
		if (now - c->last_rx_ms >= cfg->idle_timeout_ms) {
			ws_close(c, WS_CLOSE_GOING_AWAY, "idle timeout");
			continue;
		}
		int64_t due = cfg->ping_interval_ms - c->ping_early_ms;
		if (now - c->last_rx_ms >= due && now - c->last_ping_ms >= due) {
			/* a heartbeat: the client's pong (or any frame) proves it alive */
			char stamp[24];
			int n = snprintf(stamp, sizeof stamp, "%lld", (long long)wall);
			c->last_ping_ms = now;
			if (!ws_send_frame(c, WS_OP_PING, stamp, (size_t)n))
				ws_conn_slow_reader(c);
		}
	}
	/* ws_conn_terminate above moved the cursor past what it freed */
	hub->cursor = c;
}

/* ------------------------------------------------------------ handshake */

rh_err ws_check_upgrade_or_reply(struct ws_hub *hub, struct http_req *req)
{
	const char *upgrade = http_req_header(req, "upgrade");
	const char *version = http_req_header(req, "sec-websocket-version");
	const char *key = http_req_header(req, "sec-websocket-key");
	if (!upgrade || strcasecmp(upgrade, "websocket") != 0) {
		http_reply_header(req, "Upgrade", "websocket");
		http_reply_problem(req, PROBLEM_UPGRADE_REQUIRED, NULL,
				   "this endpoint speaks WebSocket only: send Upgrade: websocket");
		return RH_EINVAL;
	}
	const char *conn = http_req_header(req, "connection");
	if (!conn || !strcasestr(conn, "upgrade")) {
		http_reply_problem(req, PROBLEM_BAD_REQUEST, NULL, "Connection: Upgrade is required");
		return RH_EINVAL;
	}
	if (!version || strcmp(version, "13") != 0) {
		http_reply_header(req, "Sec-WebSocket-Version", "13");
		http_reply_problem(req, PROBLEM_UPGRADE_REQUIRED, NULL, "only WebSocket version 13 is supported");
		return RH_EINVAL;
	}
	char accept[WS_ACCEPT_LEN + 1];
	if (!key || ws_handshake_accept(key, strlen(key), accept) != RH_OK) {
		http_reply_problem(req, PROBLEM_BAD_REQUEST, NULL, "Sec-WebSocket-Key must be 16 bytes in base64");
		return RH_EINVAL;
	}
	if (hub->count >= hub->cfg->max_connections) {
		http_reply_problem(req, PROBLEM_OVERLOADED, NULL, "WebSocket connection limit reached; retry later");
		return RH_EAGAIN;
	}
	return RH_OK;
}

struct ws_conn *ws_accept(struct ws_hub *hub, struct http_req *req, const char *subprotocol, int64_t expires_ms,
			  const struct ws_handlers *h, void *arg)
{
	char accept[WS_ACCEPT_LEN + 1], resp[512];
	const char *key = http_req_header(req, "sec-websocket-key");
	if (!key || ws_handshake_accept(key, strlen(key), accept) != RH_OK) {
		http_reply_problem(req, PROBLEM_BAD_REQUEST, NULL, "Sec-WebSocket-Key must be 16 bytes in base64");
		return NULL;
	}
	char peer[64];
	snprintf(peer, sizeof peer, "%s", http_req_peer(req));
	int n = snprintf(resp, sizeof resp,
			 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
			 "Sec-WebSocket-Accept: %s\r\n%s%s%s\r\n",
			 accept, subprotocol ? "Sec-WebSocket-Protocol: " : "", subprotocol ? subprotocol : "",
			 subprotocol ? "\r\n" : "");
	struct stream *st = http_req_detach(req);
	if (!st)
		return NULL;
	struct ws_conn *c = RH_NEW(struct ws_conn);
	c->hub = hub;
	c->st = st;
	c->h = h;
	c->arg = arg;
	c->id = ++hub->next_id;
	c->opened_ms = c->last_rx_ms = c->last_ping_ms = ws_now_ms();
	/* Spread heartbeats over the last quarter of the interval: connections
	 * opened together (a fleet reconnecting, a benchmark) would otherwise
	 * all be pinged in one sweep, thousands of writes in one turn of the
	 * loop while their pings wait. */
	c->ping_early_ms = (int64_t)((c->id * 2654435761u) % 1000u) * (hub->cfg->ping_interval_ms / 4) / 1000;
	c->expires_ms = expires_ms;
	snprintf(c->logid, sizeof c->logid, "ws=%llu", (unsigned long long)c->id);
	snprintf(c->peer, sizeof c->peer, "%s", peer);
	struct ws_limits lim = {
		.max_frame = (size_t)hub->cfg->max_frame_size,
		.max_message = (size_t)hub->cfg->max_message_size,
		.expect_masked = true,
	};
	ws_parser_init(&c->parser, &lim);
	TAILQ_INSERT_TAIL(&hub->conns, c, link);
	hub->count++;
	metric_set(hub->m_conns, hub->count);
	metric_inc(hub->m_opened);
	stream_write(st, resp, (size_t)n);
	/* Input: one whole frame (header + payload) at most; output: the cap
	 * that closes slow readers. Bytes the client sent right after its
	 * upgrade request reach ws_on_read once this callback returns. */
	stream_set_ops(st, &ws_stream_ops, c, (size_t)hub->cfg->max_frame_size + WS_HEADER_MAX,
		       (size_t)hub->cfg->max_output);
	log_debug(c->logid, "websocket open from %s", c->peer);
	return c;
}

bool ws_is_open(const struct ws_conn *c) { return c->state == WS_OPEN && !c->dead; }
const char *ws_peer(const struct ws_conn *c) { return c->peer; }
const char *ws_logid(const struct ws_conn *c) { return c->logid; }

void ws_rx_time(const struct ws_conn *c, int64_t *mono_ms, int64_t *wall_ms)
{
	*mono_ms = c->last_rx_ms;
	*wall_ms = c->last_rx_wall_ms;
}

size_t ws_memory(const struct ws_conn *c)
{
	return sizeof *c + c->msg_cap + (c->st ? sizeof *c->st + stream_buffered(c->st) : 0);
}

/* ------------------------------------------------------------ hub */

struct ws_hub *ws_hub_new(struct event_base *base, struct http_server *http, const struct ws_cfg *cfg,
			  struct metrics *m)
{
	static const char *const code_label[] = { "code", NULL };
	static const char *const error_label[] = { "error", NULL };
	struct ws_hub *hub = RH_NEW(struct ws_hub);
	hub->base = base;
	hub->http = http;
	hub->cfg = cfg;
	TAILQ_INIT(&hub->conns);
	hub->sweep = event_new(base, -1, EV_PERSIST, ws_sweep_cb, hub);
	hub->reaper = event_new(base, -1, 0, ws_reaper_cb, hub);
	struct timeval tv = { SWEEP_MS / 1000, (SWEEP_MS % 1000) * 1000 };
	event_add(hub->sweep, &tv);
	hub->m_conns = metric_cell(metrics_gauge(m, "ridehail_ws_connections", "Open WebSocket connections.", NULL), NULL);
	hub->m_opened = metric_cell(metrics_counter(m, "ridehail_ws_connections_opened_total", "WebSocket connections opened.", NULL), NULL);
	hub->f_closes = metrics_counter(m, "ridehail_ws_closes_total", "WebSocket connections closed, by close code (1006: dropped without a close).", code_label);
	hub->f_errors = metrics_counter(m, "ridehail_ws_protocol_errors_total", "Connections failed for breaking RFC 6455 or for flooding (ping flood, too many messages), by error.", error_label);
	hub->m_rx_msgs = metric_cell(metrics_counter(m, "ridehail_ws_messages_received_total", "Text messages received.", NULL), NULL);
	hub->m_tx_msgs = metric_cell(metrics_counter(m, "ridehail_ws_messages_sent_total", "Text messages sent.", NULL), NULL);
	hub->m_rx_bytes = metric_cell(metrics_counter(m, "ridehail_ws_received_bytes_total", "Bytes received on WebSocket connections.", NULL), NULL);
	hub->m_tx_bytes = metric_cell(metrics_counter(m, "ridehail_ws_sent_bytes_total", "Bytes sent on WebSocket connections.", NULL), NULL);
	hub->m_slow = metric_cell(metrics_counter(m, "ridehail_ws_slow_readers_total", "Connections dropped because their unread output passed ws.max_output.", NULL), NULL);
	return hub;
}

void ws_hub_close_all(struct ws_hub *hub, uint16_t code, const char *reason)
{
	struct ws_conn *c, *next;
	for (c = TAILQ_FIRST(&hub->conns); c; c = next) {
		next = TAILQ_NEXT(c, link);
		ws_close(c, code, reason);
	}
}

int ws_hub_count(const struct ws_hub *hub) { return hub ? hub->count : 0; }

void ws_hub_free(struct ws_hub *hub)
{
	if (!hub)
		return;
	while (!TAILQ_EMPTY(&hub->conns))
		ws_conn_terminate(TAILQ_FIRST(&hub->conns));
	ws_reaper_cb(-1, 0, hub);
	event_free(hub->sweep);
	event_free(hub->reaper);
	rh_free(hub);
}
