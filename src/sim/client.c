/* HTTP/1.1 and WebSocket client for the simulator (see include/sim/client.h). */
#include "sim/client.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sodium.h>

#include "core/alloc.h"
#include "net/ws_frame.h"

#define SIMC_MAX_REPLY (4u << 20)
#define SIMC_MAX_MESSAGE (1u << 20)

/* ------------------------------------------------------------ sockets */

static struct bufferevent *simc_connect(struct event_base *base, const char *host, int port,
					bufferevent_data_cb rd, bufferevent_event_cb ev, void *arg)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		return NULL;
	struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!bev)
		return NULL;
	bufferevent_setcb(bev, rd, NULL, ev, arg);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	if (bufferevent_socket_connect(bev, (struct sockaddr *)&sa, sizeof sa) != 0) {
		bufferevent_free(bev);
		return NULL;
	}
	int one = 1;
	setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return bev;
}

/* The status, Content-Length and Retry-After of a response head; false when
 * it is not one. */
static bool simc_parse_head(const char *head, size_t len, int *status, size_t *clen, int *retry, bool *close)
{
	if (len < 12 || strncmp(head, "HTTP/1.", 7) != 0)
		return false;
	*status = atoi(head + 9);
	*clen = 0;
	*retry = -1;
	*close = false;
	const char *p = memchr(head, '\n', len), *end = head + len;
	while (p && p + 1 < end) {
		p++;
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		if (!eol)
			break;
		const char *colon = memchr(p, ':', (size_t)(eol - p));
		if (colon) {
			size_t nl = (size_t)(colon - p);
			const char *v = colon + 1;
			while (v < eol && *v == ' ')
				v++;
			if (nl == 14 && strncasecmp(p, "Content-Length", 14) == 0)
				*clen = (size_t)strtoul(v, NULL, 10);
			else if (nl == 11 && strncasecmp(p, "Retry-After", 11) == 0)
				*retry = atoi(v);
			else if (nl == 10 && strncasecmp(p, "Connection", 10) == 0 && strncasecmp(v, "close", 5) == 0)
				*close = true;
		}
		p = eol;
	}
	return *status >= 100 && *status <= 599;
}

/* ------------------------------------------------------------ HTTP pool */

struct simc_req {
	struct simc_req *next;
	char *wire;
	size_t wire_len;
	simc_http_cb cb;
	void *arg;
};

struct simc_conn {
	struct simc_pool *pool;
	struct bufferevent *bev;
	struct simc_req *cur; /* in flight */
};

struct simc_pool {
	struct event_base *base;
	char host[64];
	int port, nconns;
	struct simc_conn *conns;
	struct simc_req *head, *tail;
};

static void simc_pool_pump(struct simc_pool *p);

static void simc_req_done(struct simc_pool *p, struct simc_req *q, const struct simc_reply *r)
{
	q->cb(q->arg, r);
	rh_free(q->wire);
	rh_free(q);
}

static void simc_conn_drop(struct simc_conn *c)
{
	if (c->bev)
		bufferevent_free(c->bev);
	c->bev = NULL;
	struct simc_req *q = c->cur;
	c->cur = NULL;
	if (q) {
		struct simc_reply r = { .status = 0, .body = "", .retry_after_s = -1 };
		simc_req_done(c->pool, q, &r);
	}
}

static void simc_conn_read(struct bufferevent *bev, void *arg)
{
	struct simc_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	while (c->cur) {
		struct evbuffer_ptr e = evbuffer_search(in, "\r\n\r\n", 4, NULL);
		if (e.pos < 0) {
			if (evbuffer_get_length(in) > 65536)
				simc_conn_drop(c);
			return;
		}
		size_t hl = (size_t)e.pos + 4, clen;
		int status = 0, retry;
		bool close;
		const char *head = (const char *)evbuffer_pullup(in, (ev_ssize_t)hl);
		if (!simc_parse_head(head, hl, &status, &clen, &retry, &close) || clen > SIMC_MAX_REPLY) {
			simc_conn_drop(c);
			return;
		}
		if (evbuffer_get_length(in) < hl + clen)
			return;
		char *body = rh_malloc(clen + 1);
		evbuffer_drain(in, hl);
		evbuffer_remove(in, body, clen);
		body[clen] = '\0';
		struct simc_req *q = c->cur;
		c->cur = NULL;
		struct simc_reply r = { .status = status, .body = body, .body_len = clen, .retry_after_s = retry };
		struct simc_pool *p = c->pool;
		if (close) {
			bufferevent_free(c->bev);
			c->bev = NULL;
		}
		simc_req_done(p, q, &r);
		rh_free(body);
		simc_pool_pump(p);
		if (!c->bev)
			return;
	}
}

static void simc_conn_event(struct bufferevent *bev, short what, void *arg)
{
	struct simc_conn *c = arg;
	if (what & BEV_EVENT_CONNECTED)
		return;
	/* A keep-alive connection the daemon closed while idle is normal; one
	 * with a request in flight fails that request (status 0). */
	simc_conn_drop(c);
	simc_pool_pump(c->pool);
}

static void simc_pool_pump(struct simc_pool *p)
{
	for (int i = 0; i < p->nconns && p->head; i++) {
		struct simc_conn *c = &p->conns[i];
		if (c->cur)
			continue;
		if (!c->bev) {
			c->bev = simc_connect(p->base, p->host, p->port, simc_conn_read, simc_conn_event, c);
			if (!c->bev)
				continue;
		}
		struct simc_req *q = p->head;
		p->head = q->next;
		if (!p->head)
			p->tail = NULL;
		q->next = NULL;
		c->cur = q;
		bufferevent_write(c->bev, q->wire, q->wire_len);
	}
}

struct simc_pool *simc_pool_new(struct event_base *base, const char *host, int port, int conns)
{
	struct simc_pool *p = rh_calloc(1, sizeof *p);
	p->base = base;
	snprintf(p->host, sizeof p->host, "%s", host);
	p->port = port;
	p->nconns = conns > 0 ? conns : 1;
	p->conns = rh_calloc((size_t)p->nconns, sizeof *p->conns);
	for (int i = 0; i < p->nconns; i++)
		p->conns[i].pool = p;
	return p;
}

void simc_pool_free(struct simc_pool *p)
{
	if (!p)
		return;
	for (int i = 0; i < p->nconns; i++) {
		if (p->conns[i].bev)
			bufferevent_free(p->conns[i].bev);
		if (p->conns[i].cur) {
			rh_free(p->conns[i].cur->wire);
			rh_free(p->conns[i].cur);
		}
	}
	for (struct simc_req *q = p->head, *n; q; q = n) {
		n = q->next;
		rh_free(q->wire);
		rh_free(q);
	}
	rh_free(p->conns);
	rh_free(p);
}

void simc_http(struct simc_pool *p, const char *method, const char *path, const char *token,
	       const char *extra_header, const char *body, simc_http_cb cb, void *arg)
{
	size_t blen = body ? strlen(body) : 0;
	size_t cap = strlen(path) + (token ? strlen(token) : 0) + (extra_header ? strlen(extra_header) : 0) + blen + 256;
	struct simc_req *q = rh_calloc(1, sizeof *q);
	q->wire = rh_malloc(cap);
	int n = snprintf(q->wire, cap, "%s %s HTTP/1.1\r\nHost: %s:%d\r\n%s%s%s%s%s", method, path, p->host, p->port,
			 token ? "Authorization: Bearer " : "", token ? token : "", token ? "\r\n" : "",
			 extra_header ? extra_header : "", extra_header ? "\r\n" : "");
	if (body)
		n += snprintf(q->wire + n, cap - (size_t)n, "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
			      blen, body);
	else
		n += snprintf(q->wire + n, cap - (size_t)n, "\r\n");
	q->wire_len = (size_t)n;
	q->cb = cb;
	q->arg = arg;
	if (p->tail)
		p->tail->next = q;
	else
		p->head = q;
	p->tail = q;
	simc_pool_pump(p);
}

/* ------------------------------------------------------------ WebSocket */

struct simc_ws {
	struct bufferevent *bev;
	struct simc_ws_cbs cbs;
	void *arg;
	char host[64];
	int port;
	char *token;
	char key[32], accept[WS_ACCEPT_LEN + 1];
	bool upgraded, closed;
	struct ws_parser parser;
	char *msg;
	size_t msg_len;
};

static void simc_ws_finish(struct simc_ws *w, int code, int http_status, const char *why)
{
	if (w->closed)
		return;
	w->closed = true;
	if (w->bev) {
		bufferevent_disable(w->bev, EV_READ);
		bufferevent_setcb(w->bev, NULL, NULL, NULL, NULL);
		bufferevent_free(w->bev);
		w->bev = NULL;
	}
	if (w->cbs.closed)
		w->cbs.closed(w->arg, code, http_status, why);
}

static void simc_ws_mask(uint8_t mask[4])
{
	randombytes_buf(mask, 4);
}

static bool simc_ws_send_frame(struct simc_ws *w, uint8_t op, const void *data, size_t len)
{
	if (w->closed || !w->upgraded || !w->bev)
		return false;
	uint8_t hdr[WS_HEADER_MAX], mask[4];
	simc_ws_mask(mask);
	size_t hl = ws_frame_write_header(hdr, op, true, len, mask);
	uint8_t *body = rh_malloc(len ? len : 1);
	memcpy(body, data, len);
	ws_mask_apply(body, len, mask, 0);
	struct evbuffer *out = bufferevent_get_output(w->bev);
	evbuffer_add(out, hdr, hl);
	evbuffer_add(out, body, len);
	rh_free(body);
	return true;
}

bool simc_ws_send(struct simc_ws *w, const char *text, size_t len)
{
	return simc_ws_send_frame(w, WS_OP_TEXT, text, len);
}

static void simc_ws_frames(struct simc_ws *w, struct evbuffer *in)
{
	size_t want = WS_HEADER_MAX;
	while (!w->closed) {
		size_t avail = evbuffer_get_length(in), n = want < avail ? want : avail;
		if (n == 0)
			return;
		uint8_t *buf = evbuffer_pullup(in, (ev_ssize_t)n);
		struct ws_frame f;
		enum ws_status st = ws_parser_next(&w->parser, buf, n, &f);
		if (st == WS_MORE) {
			if (f.need > avail)
				return;
			want = f.need;
			continue;
		}
		if (st == WS_ERROR) {
			simc_ws_finish(w, f.error_code, 0, f.error);
			return;
		}
		want = WS_HEADER_MAX;
		switch (f.opcode) {
		case WS_OP_TEXT:
		case WS_OP_BINARY:
		case WS_OP_CONT:
			if (w->msg_len + f.payload_len > SIMC_MAX_MESSAGE) {
				simc_ws_finish(w, WS_CLOSE_TOO_BIG, 0, "message too big");
				return;
			}
			w->msg = rh_realloc(w->msg, w->msg_len + f.payload_len + 1);
			memcpy(w->msg + w->msg_len, f.payload, f.payload_len);
			w->msg_len += f.payload_len;
			if (f.message_end) {
				w->msg[w->msg_len] = '\0';
				size_t len = w->msg_len;
				w->msg_len = 0;
				evbuffer_drain(in, f.frame_len);
				if (f.message_opcode != WS_OP_TEXT) {
					simc_ws_finish(w, WS_CLOSE_UNSUPPORTED, 0, "binary message from the server");
					return;
				}
				if (w->cbs.text)
					w->cbs.text(w->arg, w->msg, len);
				continue;
			}
			break;
		case WS_OP_PING: {
			uint8_t pl[WS_CONTROL_MAX];
			size_t pn = f.payload_len;
			memcpy(pl, f.payload, pn);
			evbuffer_drain(in, f.frame_len);
			simc_ws_send_frame(w, WS_OP_PONG, pl, pn);
			continue;
		}
		case WS_OP_CLOSE: {
			int code = f.close_code;
			char why[WS_CLOSE_REASON_MAX + 1];
			snprintf(why, sizeof why, "%.*s", (int)f.close_reason_len, (const char *)f.close_reason);
			evbuffer_drain(in, f.frame_len);
			uint8_t c[WS_CLOSE_FRAME_MAX], mask[4];
			simc_ws_mask(mask);
			size_t cl = ws_frame_build_close(c, code == WS_CLOSE_NO_STATUS ? 0 : WS_CLOSE_NORMAL, NULL, mask);
			if (w->bev && cl)
				bufferevent_write(w->bev, c, cl);
			simc_ws_finish(w, code, 0, why);
			return;
		}
		default:
			break;
		}
		evbuffer_drain(in, f.frame_len);
	}
}

static void simc_ws_read(struct bufferevent *bev, void *arg)
{
	struct simc_ws *w = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	if (!w->upgraded) {
		struct evbuffer_ptr e = evbuffer_search(in, "\r\n\r\n", 4, NULL);
		if (e.pos < 0)
			return;
		size_t hl = (size_t)e.pos + 4, clen;
		int status = 0, retry;
		bool close;
		char *head = rh_malloc(hl + 1);
		evbuffer_remove(in, head, hl);
		head[hl] = '\0';
		if (!simc_parse_head(head, hl, &status, &clen, &retry, &close) || status != 101) {
			rh_free(head);
			simc_ws_finish(w, 0, status, "handshake refused");
			return;
		}
		bool ok = strstr(head, w->accept) != NULL;
		rh_free(head);
		if (!ok) {
			simc_ws_finish(w, 0, 101, "bad Sec-WebSocket-Accept");
			return;
		}
		w->upgraded = true;
		if (w->cbs.open)
			w->cbs.open(w->arg);
		if (w->closed)
			return;
	}
	simc_ws_frames(w, in);
}

static void simc_ws_event(struct bufferevent *bev, short what, void *arg)
{
	struct simc_ws *w = arg;
	if (what & BEV_EVENT_CONNECTED) {
		char req[4096];
		int n = snprintf(req, sizeof req,
				 "GET /v1/ws HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
				 "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer %s\r\n\r\n",
				 w->host, w->port, w->key, w->token);
		bufferevent_write(bev, req, (size_t)n);
		return;
	}
	simc_ws_finish(w, w->upgraded ? WS_CLOSE_ABNORMAL : 0, 0,
		       (what & BEV_EVENT_EOF) ? "connection closed" : strerror(errno));
}

struct simc_ws *simc_ws_open(struct event_base *base, const char *host, int port, const char *token,
			     const struct simc_ws_cbs *cbs, void *arg)
{
	struct simc_ws *w = rh_calloc(1, sizeof *w);
	w->cbs = *cbs;
	w->arg = arg;
	snprintf(w->host, sizeof w->host, "%s", host);
	w->port = port;
	w->token = rh_strdup(token);
	uint8_t nonce[16];
	randombytes_buf(nonce, sizeof nonce);
	sodium_bin2base64(w->key, sizeof w->key, nonce, sizeof nonce, sodium_base64_VARIANT_ORIGINAL);
	if (ws_handshake_accept(w->key, strlen(w->key), w->accept) != RH_OK)
		w->accept[0] = '\0';
	ws_parser_init(&w->parser, &(struct ws_limits){ .max_frame = SIMC_MAX_MESSAGE,
							.max_message = SIMC_MAX_MESSAGE, .expect_masked = false });
	w->bev = simc_connect(base, host, port, simc_ws_read, simc_ws_event, w);
	if (!w->bev)
		w->closed = true; /* simc_ws_send answers false */
	return w;
}

void simc_ws_close(struct simc_ws *w)
{
	if (!w || w->closed || !w->bev)
		return;
	uint8_t c[WS_CLOSE_FRAME_MAX], mask[4];
	simc_ws_mask(mask);
	size_t cl = ws_frame_build_close(c, WS_CLOSE_NORMAL, "bye", mask);
	if (w->upgraded && cl)
		bufferevent_write(w->bev, c, cl);
	w->closed = true;
	bufferevent_disable(w->bev, EV_READ);
}

void simc_ws_free(struct simc_ws *w)
{
	if (!w)
		return;
	if (w->bev) {
		bufferevent_setcb(w->bev, NULL, NULL, NULL, NULL);
		bufferevent_free(w->bev);
	}
	rh_free(w->token);
	rh_free(w->msg);
	rh_free(w);
}
