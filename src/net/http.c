#include "net/http.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/fdbudget.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/settings.h"
#include "core/strbuf.h"
#include "net/conncount.h"
#include "net/numparse.h"
#include "core/proxy.h"
#include "net/stream.h"

#define ROUTE_MAX_SEGS 12
/* Stop reading pipelined requests while this much output waits for a slow reader. */
#define OUTPUT_PAUSE_BYTES (1u << 20)

struct route_entry {
	struct http_route r;
	void *ctx;
	int nseg;
	char *segs[ROUTE_MAX_SEGS];
	char *names[ROUTE_MAX_SEGS]; /* of {name} segments, without the braces; NULL for literals */
	struct metric_cell *latency;
	struct { int status; struct metric_cell *cell; } status_cells[8];
	int nstatus;
	struct route_entry *next;
};

/* C_CLOSING: the last reply is being written; C_LINGER: it has been written
 * and our side shut down, and we discard what the client still sends for a
 * moment, so that closing with unread input (an RST) cannot destroy the
 * reply before the client reads it (e.g. a 413 sent mid-upload). */
enum conn_state { C_IDLE, C_HEAD, C_BODY, C_DISPATCHED, C_CLOSING, C_LINGER };
#define LINGER_MS 2000
/* At the connection cap a new client may take the place of a connection
 * that is idle or still sending its request (never one whose request is
 * being handled): first one from the address that holds the most
 * connections, if that is more than the newcomer's would then hold (a flood
 * from many addresses cannot shut out an address that holds few, however
 * fast it churns); else one quiet, or started, at least RECLAIM_AFTER_NS
 * ago (a fresh client beats a held socket; one that just arrived is left to
 * send its request). */
#define RECLAIM_AFTER_NS (1000 * 1000000LL)
#define RECLAIM_SCAN 256 /* connections looked at, least recently active first */

struct http_conn {
	TAILQ_ENTRY(http_conn) link;
	struct http_server *srv;
	struct stream *st;      /* NULL once closed or handed over */
	struct event *timer;
	uint64_t id;
	char peer[64];
	enum conn_state state;
	struct http_req *req;   /* from the end of its head (C_BODY) until its reply */
	int nrequests;
	int64_t active_ns;      /* monotonic: the last read or reply (the list is in this order) */
	int64_t head_start_ns;  /* monotonic: the current request's first byte */
	size_t head_scanned;    /* bytes of the current head searched for its end */
	struct conn_addr addr;  /* the client's address (net/conncount.h) */
	bool has_addr;
	bool in_process; /* http_conn_process() is on the stack */
	bool peer_eof;   /* the client half-closed: reply, then close */
	bool rejecting;  /* over a cap: told 503, then closed */
	bool dead;
	struct http_conn *next_dead;
};

struct http_req {
	struct http_conn *conn; /* NULL once orphaned */
	struct http_server *srv;
	struct http_head head;
	char *head_buf;
	const char *path; /* decoded (into `decoded`); as sent when it could not be */
	char *decoded; /* path, query and path-parameter strings, NUL-separated */
	size_t decoded_used, decoded_cap;
	struct http_target target;
	int nparams;
	const char *pk[ROUTE_MAX_SEGS], *pv[ROUTE_MAX_SEGS];
	struct strbuf body;
	struct http_chunked chunked;
	int64_t body_remaining;
	struct route_entry *route;
	struct strbuf extra_headers;
	int64_t start_ns;
	bool keep_alive;
	bool dispatched;
	char id[40];
	char logid[48];
	char client[64]; /* "host:port": the peer, or the client a trusted proxy names */
};

TAILQ_HEAD(conn_list, http_conn);

struct http_server {
	struct event_base *base;
	const struct http_cfg *cfg;
	struct evconnlistener *listener;
	struct event *accept_retry;
	struct event *reaper;
	struct conn_list conns;   /* least recently active first */
	struct http_conn *dead;
	struct conn_counts *counts; /* every client socket, HTTP and WebSocket */
	int reserve_fd;           /* spare descriptor for refusing clients when none are left */
	int nconns, inflight, nrejecting;
	bool draining;
	struct route_entry *routes, **routes_tail;
	uint64_t next_conn_id, req_seq;
	uint32_t req_prefix;
	char date[64];
	time_t date_sec;
	struct stream_scratch scratch;
	struct proxy_list proxies; /* http.trusted_proxies */
	struct metric_family *f_requests, *f_latency;
	struct metric_cell *m_conns, *m_accepted, *m_inflight, *m_unmatched_latency;
	struct metric_cell *m_rejected_limit, *m_rejected_address, *m_rejected_fds, *m_reclaimed, *m_cap, *m_sockets;
};

static void http_conn_process(struct http_conn *c);
static void http_conn_close(struct http_conn *c);
static void http_req_free(struct http_req *r);

/* ------------------------------------------------------------ helpers */

static const char *http_date_header(struct http_server *s)
{
	time_t now = time(NULL);
	if (now != s->date_sec) {
		struct tm tm;
		gmtime_r(&now, &tm);
		strftime(s->date, sizeof s->date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
		s->date_sec = now;
	}
	return s->date;
}

/* http.header_timeout, and never past the whole request's deadline */
static int64_t http_header_deadline_ms(const struct http_cfg *cfg)
{
	return cfg->header_timeout_ms < cfg->request_timeout_ms ? cfg->header_timeout_ms : cfg->request_timeout_ms;
}

static void http_timer_arm(struct http_conn *c, int64_t ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	evtimer_add(c->timer, &tv);
}

static const char *http_method_name(enum http_method m)
{
	static const char *names[] = { "OTHER", "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS" };
	return names[m];
}

/* ------------------------------------------------------------ metrics */

static struct metric_cell *http_status_cell(struct http_server *s, struct route_entry *re, enum http_method m,
					    int status)
{
	if (re)
		for (int i = 0; i < re->nstatus; i++)
			if (re->status_cells[i].status == status)
				return re->status_cells[i].cell;
	char st[8];
	snprintf(st, sizeof st, "%d", status);
	const char *labels[] = { re ? re->r.pattern : "unmatched", http_method_name(m), st };
	if (!re)
		return metric_cell(s->f_requests, labels);
	struct metric_cell *cell = metric_cell(s->f_requests, labels);
	if (re->nstatus < (int)RH_ARRAY_LEN(re->status_cells)) {
		re->status_cells[re->nstatus].status = status;
		re->status_cells[re->nstatus].cell = cell;
		re->nstatus++;
	}
	return cell;
}

static void http_record_request(struct http_req *r, int status)
{
	struct http_server *s = r->srv;
	double secs = (double)(rh_mono_ns() - r->start_ns) / 1e9;
	metric_inc(http_status_cell(s, r->route, r->head.method, status));
	metric_observe(s->f_latency, r->route ? r->route->latency : s->m_unmatched_latency, secs);
	if (status >= 500)
		log_warn(r->logid, "%s %s -> %d in %.3f ms", r->head.method_str, r->path ? r->path : "?", status,
			 secs * 1e3);
	else
		log_debug(r->logid, "%s %s -> %d in %.3f ms", r->head.method_str, r->path ? r->path : "?", status,
			  secs * 1e3);
}

/* ------------------------------------------------------------ replies */

/* A fixed buffer for a reply head; what does not fit is cut (never happens:
 * see http_write_reply). */
struct headbuf {
	char *p;
	size_t len, cap;
};

static void http_hb_put(struct headbuf *b, const char *s, size_t n)
{
	if (n > b->cap - b->len)
		n = b->cap - b->len;
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void http_hb_puts(struct headbuf *b, const char *s) { http_hb_put(b, s, strlen(s)); }

/* v in decimal into out (at least 21 bytes), no NUL; returns the length. */
static size_t http_fmt_uint(char *out, uint64_t v)
{
	char t[20];
	size_t n = 0;
	do {
		t[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (size_t i = 0; i < n; i++)
		out[i] = t[n - 1 - i];
	return n;
}

/* v in lowercase hex, at least `min` digits, NUL-terminated: what "%0*llx" prints. */
static size_t http_fmt_hex(char *out, uint64_t v, int min)
{
	static const char hx[] = "0123456789abcdef";
	char t[16];
	int n = 0;
	do {
		t[n++] = hx[v & 15];
		v >>= 4;
	} while (v);
	while (n < min)
		t[n++] = '0';
	for (int i = 0; i < n; i++)
		out[i] = t[n - 1 - i];
	out[n] = '\0';
	return (size_t)n;
}

static void http_conn_linger(struct http_conn *c);

/* The connection was active now: it goes to the end of the list, which is
 * thus ordered from the least recently active (what a new client may take
 * the place of at the cap). */
static void http_conn_touch(struct http_conn *c, int64_t now_ns)
{
	c->active_ns = now_ns;
	if (TAILQ_NEXT(c, link)) {
		TAILQ_REMOVE(&c->srv->conns, c, link);
		TAILQ_INSERT_TAIL(&c->srv->conns, c, link);
	}
}

static void http_write_reply(struct http_req *r, int status, const char *ctype, const void *body, size_t len)
{
	struct http_conn *c = r->conn;
	struct http_server *s = r->srv;
	bool close = !r->keep_alive || s->draining || (c && (c->peer_eof || c->nrequests >= s->cfg->max_requests_per_conn));

	if (r->dispatched) {
		s->inflight--;
		metric_set(s->m_inflight, s->inflight);
	}
	http_record_request(r, status);
	if (!c) { /* orphaned: the client left while we worked */
		http_req_free(r);
		return;
	}
	/* The head is put together, not printed: printf was a tenth of a small
	 * request's cost. Every piece is ours and bounded (a request id is at
	 * most 39 characters, a content type a constant). */
	char head[512];
	struct headbuf hb = { head, 0, sizeof head };
	char num[24];
	http_hb_puts(&hb, "HTTP/1.1 ");
	http_hb_put(&hb, num, http_fmt_uint(num, (uint64_t)(status > 0 && status < 1000 ? status : 500)));
	http_hb_puts(&hb, " ");
	http_hb_puts(&hb, http_status_reason(status));
	http_hb_puts(&hb, "\r\nDate: ");
	http_hb_puts(&hb, http_date_header(s));
	http_hb_puts(&hb, "\r\nServer: ridehaild/" RH_VERSION "\r\nX-Request-Id: ");
	http_hb_puts(&hb, r->id);
	http_hb_puts(&hb, "\r\nContent-Length: ");
	http_hb_put(&hb, num, http_fmt_uint(num, len));
	http_hb_puts(&hb, "\r\n");
	if (ctype) {
		http_hb_puts(&hb, "Content-Type: ");
		http_hb_puts(&hb, ctype);
		http_hb_puts(&hb, "\r\n");
	}
	if (close)
		http_hb_puts(&hb, "Connection: close\r\n");
	struct iovec iov[4] = {
		{ head, hb.len },
		{ r->extra_headers.buf, r->extra_headers.len },
		{ (void *)"\r\n", 2 },
		{ (void *)body, r->head.method == HTTP_HEAD ? 0 : len },
	};
	bool ok = stream_writev(c->st, iov, 4);
	c->req = NULL;
	http_req_free(r);
	if (!ok) { /* the client stopped reading past the output cap, or is gone */
		http_conn_close(c);
		return;
	}
	if (close) {
		c->state = C_CLOSING;
		evtimer_del(c->timer);
		if (stream_pending(c->st) == 0)
			http_conn_linger(c);
		/* else http_conn_on_drain lingers once the reply is out */
		return;
	}
	c->state = C_IDLE;
	http_conn_touch(c, rh_mono_ns());
	http_timer_arm(c, s->cfg->idle_timeout_ms);
	if (!c->in_process)
		stream_replay(c->st); /* requests that arrived meanwhile */
}

void http_reply_header(struct http_req *r, const char *name, const char *value)
{
	if (strpbrk(name, "\r\n:") || strpbrk(value, "\r\n"))
		return; /* never let a value split the response */
	sb_printf(&r->extra_headers, "%s: %s\r\n", name, value);
}

/* Whether the reply already carries header `name` (set by the handler). */
static bool http_reply_has_header(const struct http_req *r, const char *name)
{
	size_t n = strlen(name);
	const char *h = r->extra_headers.buf;
	for (size_t i = 0; h && i + n < r->extra_headers.len; i++)
		if ((i == 0 || h[i - 1] == '\n') && strncasecmp(h + i, name, n) == 0 && h[i + n] == ':')
			return true;
	return false;
}

void http_reply(struct http_req *r, int status, const char *content_type, const void *body, size_t len)
{
	http_write_reply(r, status, content_type, body, len);
}

void http_reply_json(struct http_req *r, int status, cJSON *json)
{
	char *text = cJSON_PrintUnformatted(json);
	cJSON_Delete(json);
	http_write_reply(r, status, "application/json", text, strlen(text));
	cJSON_free(text);
}

void http_reply_problem(struct http_req *r, enum problem p, cJSON *ext, const char *fmt, ...)
{
	char detail[512], type[128];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof detail, fmt, ap);
	va_end(ap);
	snprintf(type, sizeof type, PROBLEM_TYPE_BASE "%s", problem_slug(p));
	cJSON *j = cJSON_CreateObject();
	cJSON_AddStringToObject(j, "type", type);
	cJSON_AddStringToObject(j, "title", problem_title(p));
	cJSON_AddNumberToObject(j, "status", problem_status(p));
	cJSON_AddStringToObject(j, "detail", detail);
	if (r->path)
		cJSON_AddStringToObject(j, "instance", r->path);
	cJSON_AddStringToObject(j, "request_id", r->id);
	if (ext) {
		cJSON *item = ext->child;
		while (item) {
			cJSON *next = item->next;
			if (!cJSON_GetObjectItemCaseSensitive(j, item->string)) {
				cJSON_DetachItemViaPointer(ext, item);
				cJSON_AddItemToObject(j, item->string, item);
			}
			item = next;
		}
		cJSON_Delete(ext);
	}
	char *text = cJSON_PrintUnformatted(j);
	cJSON_Delete(j);
	int retry = problem_retry_after_s(p);
	if (retry > 0 && !http_reply_has_header(r, "Retry-After")) {
		char secs[16];
		snprintf(secs, sizeof secs, "%d", retry);
		http_reply_header(r, "Retry-After", secs);
	}
	http_write_reply(r, problem_status(p), "application/problem+json", text, strlen(text));
	cJSON_free(text);
}

void http_reply_err(struct http_req *r, rh_err e, const char *what, const char *cause)
{
	const struct err_reply *er = err_reply_of(e);
	if (problem_status(er->problem) >= 500 && e != RH_EAGAIN && e != RH_ENOMEM)
		log_error(r->logid, "cannot %s: %s", what, cause && *cause ? cause : rh_err_name(e));
	else if (cause && *cause)
		log_info(r->logid, "cannot %s: %s", what, cause);
	http_reply_problem(r, er->problem, NULL, "cannot %s%s", what, er->suffix);
}

/* ------------------------------------------------------------ requests */

/* A request is allocated once its head is complete (or to answer one that
 * never completes): a connection still receiving a head holds only its
 * bytes. */
static struct http_req *http_req_new(struct http_conn *c)
{
	struct http_server *s = c->srv;
	struct http_req *r = RH_NEW(struct http_req);
	r->conn = c;
	r->srv = s;
	r->keep_alive = true;
	r->start_ns = c->head_start_ns;
	sb_init(&r->body, (size_t)s->cfg->max_body_size + 1);
	sb_init(&r->extra_headers, 4096);
	/* "%08x%08llx" of the prefix and the sequence, and "req=<id>" */
	size_t n = http_fmt_hex(r->id, s->req_prefix, 8);
	n += http_fmt_hex(r->id + n, ++s->req_seq, 8);
	memcpy(r->logid, "req=", 4);
	memcpy(r->logid + 4, r->id, n + 1);
	return r;
}

static void http_req_free(struct http_req *r)
{
	if (!r)
		return;
	rh_free(r->head_buf);
	rh_free(r->decoded);
	sb_fini(&r->body);
	sb_fini(&r->extra_headers);
	rh_free(r);
}

static bool http_valid_request_id(const char *v)
{
	size_t n = strlen(v);
	return n > 0 && n <= 36 && strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-") == n;
}

/* Appends the decoding of s[0..n) to r->decoded; NULL if malformed. */
static const char *http_req_decode(struct http_req *r, const char *s, size_t n, bool plus)
{
	char *out = r->decoded + r->decoded_used;
	int k = http_url_decode(s, n, out, r->decoded_cap - r->decoded_used, plus);
	if (k < 0)
		return NULL;
	r->decoded_used += (size_t)k + 1;
	return out;
}

/* Splits the target into the decoded path and the query parameters (net/
 * http_parse.h); r->path is set either way, for the reply to name. */
static enum http_target_status http_req_parse_target(struct http_req *r)
{
	const char *t = r->head.target;
	/* room for the target's strings, then the path parameters (each a
	 * piece of the path, decoded, with its NUL) */
	r->decoded_cap = http_target_bufsize(t) + strlen(t) + ROUTE_MAX_SEGS;
	r->decoded = rh_malloc(r->decoded_cap);
	enum http_target_status st = http_target_decode(t, r->decoded, r->decoded_cap, &r->target);
	r->path = r->target.path;
	r->decoded_used = r->target.used;
	return st;
}

enum http_method http_req_method(const struct http_req *r) { return r->head.method; }
const char *http_req_path(const struct http_req *r) { return r->path; }
const char *http_req_logid(const struct http_req *r) { return r->logid; }
const char *http_req_id(const struct http_req *r) { return r->id; }
const char *http_req_peer(const struct http_req *r)
{
	return r->client[0] ? r->client : r->conn ? r->conn->peer : "?";
}
int64_t http_req_start_ns(const struct http_req *r) { return r->start_ns; }
struct event_base *http_req_base(const struct http_req *r) { return r->srv->base; }

const char *http_req_param(const struct http_req *r, const char *name)
{
	for (int i = 0; i < r->nparams; i++)
		if (strcmp(r->pk[i], name) == 0)
			return r->pv[i];
	return NULL;
}

const char *http_req_query(const struct http_req *r, const char *name)
{
	for (int i = 0; i < r->target.nquery; i++)
		if (strcmp(r->target.keys[i], name) == 0)
			return r->target.vals[i];
	return NULL;
}

const char *http_req_header(const struct http_req *r, const char *lower_name)
{
	return http_head_get(&r->head, lower_name);
}

const char *http_req_body(const struct http_req *r, size_t *len)
{
	if (len)
		*len = r->body.len;
	return r->body.buf ? r->body.buf : "";
}

cJSON *http_req_json_or_reply(struct http_req *r)
{
	const char *ct = http_req_header(r, "content-type");
	size_t len;
	const char *body = http_req_body(r, &len);
	if (ct) {
		size_t n = strcspn(ct, ";");
		while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
			n--;
		bool json = (n == 16 && strncasecmp(ct, "application/json", 16) == 0) ||
			    (n > 5 && strncasecmp(ct + n - 5, "+json", 5) == 0);
		if (!json) {
			http_reply_problem(r, PROBLEM_UNSUPPORTED_MEDIA, NULL,
					   "Content-Type must be application/json, not %.*s", (int)n, ct);
			return NULL;
		}
	}
	if (len == 0) {
		http_reply_problem(r, PROBLEM_INVALID_JSON, NULL, "request body is empty; a JSON object is required");
		return NULL;
	}
	const char *end = NULL;
	cJSON *j = cJSON_ParseWithLengthOpts(body, len, &end, false);
	if (!j) {
		size_t at = end && end >= body && end <= body + len ? (size_t)(end - body) : 0;
		cJSON *ext = cJSON_CreateObject();
		cJSON_AddNumberToObject(ext, "offset", (double)at);
		http_reply_problem(r, PROBLEM_INVALID_JSON, ext, "invalid JSON near byte %zu", at);
		return NULL;
	}
	/* Anything but blanks after the value is an error too. */
	for (const char *p = end; p < body + len; p++) {
		if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
			cJSON_Delete(j);
			cJSON *ext = cJSON_CreateObject();
			cJSON_AddNumberToObject(ext, "offset", (double)(p - body));
			http_reply_problem(r, PROBLEM_INVALID_JSON, ext, "unexpected data after the JSON value at byte %zu",
					   (size_t)(p - body));
			return NULL;
		}
	}
	if (!cJSON_IsObject(j)) {
		cJSON_Delete(j);
		http_reply_problem(r, PROBLEM_INVALID_JSON, NULL, "the body must be a JSON object");
		return NULL;
	}
	return j;
}

void http_reply_invalid(struct http_req *r, const struct jv_error *err)
{
	cJSON *ext = cJSON_CreateObject();
	cJSON_AddStringToObject(ext, "field", err->path);
	cJSON_AddStringToObject(ext, "rule", err->keyword);
	http_reply_problem(r, PROBLEM_VALIDATION, ext, "%s", err->message);
}

void http_reply_field_problem(struct http_req *r, enum problem p, const char *field, const char *rule,
			      const char *fmt, ...)
{
	char detail[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof detail, fmt, ap);
	va_end(ap);
	cJSON *ext = cJSON_CreateObject();
	cJSON_AddStringToObject(ext, "field", field);
	if (rule)
		cJSON_AddStringToObject(ext, "rule", rule);
	http_reply_problem(r, p, ext, "%s", detail);
}

/* The query parameter `name`, or NULL after replying 400 required (with
 * *absent set instead when it is optional and missing). */
static const char *http_query_param_or_reply(struct http_req *req, const char *name, bool required, bool *absent)
{
	const char *v = http_req_query(req, name);
	*absent = v == NULL;
	if (!v && required)
		http_reply_field_problem(req, PROBLEM_VALIDATION, name, "required", "query parameter %s is required", name);
	return v;
}

bool http_query_number_or_reply(struct http_req *req, const char *name, double min, double max, double def,
				bool required, double *out)
{
	bool absent;
	const char *v = http_query_param_or_reply(req, name, required, &absent);
	if (absent) {
		*out = def;
		return !required;
	}
	double d;
	bool num = num_parse_decimal(v, &d);
	if (!num || d < min || d > max) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, name, !num ? "type" : d < min ? "minimum" : "maximum",
					 "%s must be a number from %g to %g", name, min, max);
		return false;
	}
	*out = d;
	return true;
}

bool http_query_integer_or_reply(struct http_req *req, const char *name, int64_t min, int64_t max, int64_t def,
				 bool required, int64_t *out)
{
	bool absent;
	const char *v = http_query_param_or_reply(req, name, required, &absent);
	if (absent) {
		*out = def;
		return !required;
	}
	int64_t n;
	bool num = num_parse_integer(v, &n);
	if (!num || n < min || n > max) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, name, !num ? "type" : n < min ? "minimum" : "maximum",
					 "%s must be an integer from %lld to %lld", name, (long long)min, (long long)max);
		return false;
	}
	*out = n;
	return true;
}

cJSON *http_req_json_valid_or_reply(struct http_req *r, const struct jv_field *fields)
{
	cJSON *j = http_req_json_or_reply(r);
	if (!j)
		return NULL;
	struct jv_error err;
	if (!jv_check(j, fields, &err)) {
		cJSON_Delete(j);
		http_reply_invalid(r, &err);
		return NULL;
	}
	return j;
}

/* ------------------------------------------------------------ routing */

static int http_split_path(char *path, char **segs, int max)
{
	int n = 0;
	char *p = path;
	if (*p == '/')
		p++;
	if (!*p)
		return 0;
	for (;;) {
		if (n == max)
			return -1;
		segs[n++] = p;
		char *slash = strchr(p, '/');
		if (!slash)
			break;
		*slash = '\0';
		p = slash + 1;
	}
	return n;
}

void http_server_add_routes(struct http_server *s, const struct http_route *routes, void *ctx)
{
	for (const struct http_route *r = routes; r->pattern; r++) {
		struct route_entry *re = RH_NEW(struct route_entry);
		re->r = *r;
		re->ctx = ctx;
		char *copy = rh_strdup(r->pattern);
		char *segs[ROUTE_MAX_SEGS];
		re->nseg = http_split_path(copy, segs, ROUTE_MAX_SEGS);
		for (int i = 0; i < re->nseg; i++) {
			re->segs[i] = rh_strdup(segs[i]);
			if (segs[i][0] == '{')
				re->names[i] = rh_strndup(segs[i] + 1, strlen(segs[i]) - 2);
		}
		rh_free(copy);
		const char *labels[] = { r->pattern };
		re->latency = metric_cell(s->f_latency, labels);
		*s->routes_tail = re;
		s->routes_tail = &re->next;
	}
}

static bool http_route_matches(const struct route_entry *re, char **segs, int nseg)
{
	if (re->nseg != nseg)
		return false;
	for (int i = 0; i < nseg; i++)
		if (re->segs[i][0] != '{' && strcmp(re->segs[i], segs[i]) != 0)
			return false;
	return true;
}

/* Finds the route; on a path match with the wrong method fills allow. */
static struct route_entry *http_route_find(struct http_server *s, struct http_req *r, char *allow, size_t allowlen,
					   const char ***raw_params)
{
	char *copy = rh_strdup(r->head.target);
	char *q = strchr(copy, '?');
	if (q)
		*q = '\0';
	char *segs[ROUTE_MAX_SEGS + 1];
	int nseg = http_split_path(copy, segs, ROUTE_MAX_SEGS);
	struct route_entry *found = NULL;
	size_t alen = 0;
	unsigned seen = 0;
	allow[0] = '\0';
	for (struct route_entry *re = s->routes; re && nseg >= 0; re = re->next) {
		if (!http_route_matches(re, segs, nseg))
			continue;
		enum http_method m = r->head.method == HTTP_HEAD ? HTTP_GET : r->head.method;
		if (re->r.method == m && !found) {
			found = re;
			for (int i = 0; i < nseg; i++) {
				if (re->segs[i][0] != '{')
					continue;
				const char *v = http_req_decode(r, segs[i], strlen(segs[i]), false);
				if (!v) {
					rh_free(copy);
					*raw_params = NULL;
					return NULL;
				}
				r->pk[r->nparams] = re->names[i];
				r->pv[r->nparams++] = v;
			}
		}
		if (!(seen & (1u << re->r.method))) {
			seen |= 1u << re->r.method;
			alen += (size_t)snprintf(allow + alen, allowlen - alen, "%s%s", alen ? ", " : "",
						 http_method_name(re->r.method));
			if (re->r.method == HTTP_GET && alen < allowlen)
				alen += (size_t)snprintf(allow + alen, allowlen - alen, ", HEAD");
		}
	}
	rh_free(copy);
	*raw_params = (const char **)r->pv;
	return found;
}

static void http_dispatch(struct http_conn *c, struct http_req *r)
{
	struct http_server *s = c->srv;
	char allow[128];
	const char **params;

	c->state = C_DISPATCHED;
	c->nrequests++;
	evtimer_del(c->timer);
	r->dispatched = true;
	s->inflight++;
	metric_set(s->m_inflight, s->inflight);

	proxy_client(&s->proxies, c->peer, http_req_header(r, "x-forwarded-for"), r->client, sizeof r->client);
	const char *rid = http_req_header(r, "x-request-id");
	if (rid && http_valid_request_id(rid)) {
		snprintf(r->id, sizeof r->id, "%s", rid);
		snprintf(r->logid, sizeof r->logid, "req=%s", rid);
	}
	switch (http_req_parse_target(r)) {
	case HTTP_TARGET_OK:
		break;
	case HTTP_TARGET_BAD_PATH:
		http_reply_problem(r, PROBLEM_BAD_REQUEST, NULL, "malformed percent-encoding in the path");
		return;
	case HTTP_TARGET_BAD_QUERY:
		http_reply_problem(r, PROBLEM_BAD_REQUEST, NULL, "malformed percent-encoding in the query");
		return;
	case HTTP_TARGET_TOO_MANY:
		http_reply_problem(r, PROBLEM_BAD_REQUEST, NULL, "more than %d query parameters", HTTP_MAX_QUERY);
		return;
	}
	if (r->head.method == HTTP_UNKNOWN) {
		http_reply_problem(r, PROBLEM_NOT_IMPLEMENTED, NULL, "method %s is not supported", r->head.method_str);
		return;
	}
	struct route_entry *re = http_route_find(s, r, allow, sizeof allow, &params);
	if (!params) {
		http_reply_problem(r, PROBLEM_BAD_REQUEST, NULL, "malformed percent-encoding in the path");
		return;
	}
	if (!re && r->head.method == HTTP_OPTIONS && allow[0]) {
		http_reply_header(r, "Allow", allow);
		http_reply(r, 204, NULL, NULL, 0);
		return;
	}
	if (!re && allow[0]) {
		http_reply_header(r, "Allow", allow);
		http_reply_problem(r, PROBLEM_METHOD_NOT_ALLOWED, NULL, "%s is not allowed on %s; allowed: %s",
				   r->head.method_str, r->path, allow);
		return;
	}
	if (!re) {
		http_reply_problem(r, PROBLEM_NOT_FOUND, NULL, "no resource at %s", r->path);
		return;
	}
	r->route = re;
	if (r->head.upgrade_websocket && !(re->r.flags & HTTP_ROUTE_UPGRADE)) {
		http_reply_problem(r, PROBLEM_BAD_REQUEST, NULL, "%s does not accept a WebSocket upgrade", r->path);
		return;
	}
	re->r.handler(r, re->ctx);
}

/* ------------------------------------------------------------ connections */

static void http_conn_reply_early(struct http_conn *c, struct http_req *r, int status, const char *detail)
{
	/* An error found before dispatch (bad head, body too large...): answer
	 * and close, since the rest of the stream cannot be trusted. */
	r->keep_alive = false;
	c->state = C_DISPATCHED;
	http_reply_problem(r, problem_for_status(status), NULL, "%s", detail);
}

static void http_body_sink(void *arg, const char *p, size_t n)
{
	sb_append(arg, p, n);
}

/* Is the end of a head (a blank line) in buf[0..len)? The search resumes
 * where the last one stopped, so a head trickled in byte by byte is searched
 * once, not once per byte (and nothing is copied or parsed until it is
 * there). Blank lines before the request line are skipped as the parser
 * skips them. */
static bool http_conn_head_complete(struct http_conn *c, const char *buf, size_t len)
{
	size_t skip = 0;
	while (skip < len && skip < 8 && (buf[skip] == '\r' || buf[skip] == '\n'))
		skip++;
	size_t i = c->head_scanned > skip + 2 ? c->head_scanned - 2 : skip;
	for (; i + 1 < len; i++) {
		if (buf[i] != '\n')
			continue;
		if (buf[i + 1] == '\n' || (buf[i + 1] == '\r' && i + 2 < len && buf[i + 2] == '\n'))
			return true;
	}
	c->head_scanned = len;
	return false;
}

/* Reads the head of the next request. Returns false to stop processing. */
static bool http_conn_read_head(struct http_conn *c)
{
	struct http_server *s = c->srv;
	size_t avail = stream_in_len(c->st);
	size_t max = (size_t)s->cfg->max_header_size;
	if (avail <= max && !http_conn_head_complete(c, stream_in(c->st), avail))
		return false;
	size_t want = max + 16;
	size_t n = avail < want ? avail : want;
	int status = 0;
	const char *detail = NULL;

	/* The parser writes NUL terminators: it works on the request's own copy,
	 * which also outlives the connection if the client leaves. */
	char *buf = rh_malloc(n + 1);
	memcpy(buf, stream_in(c->st), n);
	buf[n] = '\0';
	struct http_head head;
	enum http_parse_status st = http_parse_head(buf, n, max, &head, &status, &detail);
	if (st == HTTP_PARSE_INCOMPLETE) {
		rh_free(buf);
		return false;
	}
	struct http_req *r = c->req = http_req_new(c);
	if (st == HTTP_PARSE_ERROR) {
		rh_free(buf);
		r->head.method_str = "?";
		http_conn_reply_early(c, r, status, detail);
		return false;
	}
	r->head = head;
	r->head_buf = buf;
	r->keep_alive = r->head.keep_alive;
	stream_consume(c->st, r->head.head_len);
	/* the head's deadline is past; the body has what is left of the request's */
	int64_t left_ms = s->cfg->request_timeout_ms - (rh_mono_ns() - c->head_start_ns) / 1000000;
	http_timer_arm(c, left_ms > 1 ? left_ms : 1);

	if (r->head.content_length > s->cfg->max_body_size) {
		char msg[128];
		snprintf(msg, sizeof msg, "body of %lld bytes is over the limit of %lld",
			 (long long)r->head.content_length, (long long)s->cfg->max_body_size);
		http_conn_reply_early(c, r, 413, msg);
		return false;
	}
	if (r->head.chunked)
		http_chunked_init(&r->chunked);
	r->body_remaining = r->head.content_length > 0 ? r->head.content_length : 0;
	if (r->head.expect_continue && (r->body_remaining > 0 || r->head.chunked))
		stream_write(c->st, "HTTP/1.1 100 Continue\r\n\r\n", 25);
	c->state = C_BODY;
	return true;
}

/* Moves body bytes from the input; true once the body is complete. */
static bool http_conn_read_body(struct http_conn *c)
{
	struct http_req *r = c->req;
	size_t avail = stream_in_len(c->st);
	if (!r->head.chunked) {
		size_t n = avail < (size_t)r->body_remaining ? avail : (size_t)r->body_remaining;
		if (n) {
			sb_append(&r->body, stream_in(c->st), n);
			stream_consume(c->st, n);
			r->body_remaining -= (int64_t)n;
		}
		return r->body_remaining == 0;
	}
	if (avail == 0)
		return false;
	size_t used = 0;
	enum http_chunked_status st = http_chunked_feed(&r->chunked, stream_in(c->st), avail, &used,
							(size_t)c->srv->cfg->max_body_size, http_body_sink, &r->body);
	stream_consume(c->st, used);
	if (st == HTTP_CHUNKED_DONE)
		return true;
	if (st == HTTP_CHUNKED_ERROR)
		http_conn_reply_early(c, r, 400, "malformed chunked body");
	else if (st == HTTP_CHUNKED_TOO_LARGE)
		http_conn_reply_early(c, r, 413, "chunked body over the size limit");
	return false;
}

static void http_conn_process(struct http_conn *c)
{
	struct http_server *s = c->srv;
	c->in_process = true;
	while (!c->dead && c->st) {
		if (c->state >= C_DISPATCHED)
			break; /* a handler, the last reply or lingering owns the connection */
		if (stream_pending(c->st) > OUTPUT_PAUSE_BYTES)
			break; /* a slow reader: resumed by http_conn_on_drain */
		if (c->state == C_IDLE) {
			if (stream_in_len(c->st) == 0)
				break;
			if (s->draining) {
				http_conn_close(c);
				break;
			}
			/* a request begins: its head has http.header_timeout, the
			 * whole of it http.request_timeout */
			c->state = C_HEAD;
			c->head_start_ns = c->active_ns;
			c->head_scanned = 0;
			http_timer_arm(c, http_header_deadline_ms(s->cfg));
		}
		if (c->state == C_HEAD && !http_conn_read_head(c))
			break;
		if (c->state == C_BODY) {
			if (!http_conn_read_body(c))
				break;
			http_dispatch(c, c->req);
		}
	}
	c->in_process = false;
}

static void http_conn_on_read(struct stream *st, void *arg)
{
	struct http_conn *c = arg;
	if (c->state == C_LINGER) {
		stream_consume(st, stream_in_len(st)); /* discarded */
		return;
	}
	http_conn_touch(c, rh_mono_ns());
	http_conn_process(c);
}

/* The last reply is out: shut our side, then discard what the client still
 * sends for a moment, so that closing with unread input (which makes the
 * kernel send a reset) cannot destroy the reply before the client reads it. */
static void http_conn_linger(struct http_conn *c)
{
	if (c->peer_eof) { /* nothing more will come: no need to wait */
		http_conn_close(c);
		return;
	}
	c->state = C_LINGER;
	stream_consume(c->st, stream_in_len(c->st));
	stream_shutdown_write(c->st);
	http_timer_arm(c, LINGER_MS);
}

static void http_conn_on_drain(struct stream *st, void *arg)
{
	struct http_conn *c = arg;
	if (c->state == C_CLOSING)
		http_conn_linger(c);
	else if (c->state == C_IDLE && !c->in_process)
		stream_replay(st);
}

static void http_conn_on_close(struct stream *st, void *arg, int err)
{
	struct http_conn *c = arg;
	if (err == 0 && (c->state == C_DISPATCHED || c->state == C_CLOSING)) {
		c->peer_eof = true; /* half-closed: the reply still goes out */
		return;
	}
	if (err)
		log_debug(NULL, "conn=%llu error: %s", (unsigned long long)c->id, strerror(err));
	http_conn_close(c);
}

static const struct stream_ops conn_ops = {
	.on_read = http_conn_on_read,
	.on_drain = http_conn_on_drain,
	.on_close = http_conn_on_close,
};

static void http_conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http_conn *c = arg;
	if (c->state == C_HEAD || c->state == C_BODY) {
		if (!c->req)
			c->req = http_req_new(c); /* the head never completed */
		if (c->req->head.method_str == NULL)
			c->req->head.method_str = "?";
		http_conn_reply_early(c, c->req, 408, c->state == C_HEAD ? "the request's headers were not received in time"
								    : "the request was not received in time");
		return;
	}
	if (c->state == C_IDLE || c->state == C_LINGER || c->state == C_CLOSING)
		http_conn_close(c);
}

static void http_reaper_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http_server *s = arg;
	while (s->dead) {
		struct http_conn *c = s->dead;
		s->dead = c->next_dead;
		event_free(c->timer);
		rh_free(c);
	}
}

/* Never frees the connection inside a callback of its own: unlinks it,
 * closes its socket, and lets the reaper free it on the next loop turn. */
static void http_conn_close(struct http_conn *c)
{
	struct http_server *s = c->srv;
	if (c->dead)
		return;
	c->dead = true;
	if (c->st) {
		stream_free(c->st);
		c->st = NULL;
	}
	evtimer_del(c->timer);
	if (c->req) {
		if (c->state == C_DISPATCHED)
			c->req->conn = NULL; /* the handler still owns it */
		else
			http_req_free(c->req);
		c->req = NULL;
	}
	TAILQ_REMOVE(&s->conns, c, link);
	s->nconns--;
	if (c->rejecting)
		s->nrejecting--;
	metric_set(s->m_conns, s->nconns);
	c->next_dead = s->dead;
	s->dead = c;
	event_active(s->reaper, EV_TIMEOUT, 0);
}

struct stream *http_req_detach(struct http_req *r)
{
	struct http_conn *c = r->conn;
	struct http_server *s = r->srv;
	s->inflight--;
	metric_set(s->m_inflight, s->inflight);
	if (!c) {
		http_req_free(r);
		return NULL;
	}
	struct stream *st = c->st;
	http_record_request(r, 101);
	c->req = NULL;
	http_req_free(r);
	c->st = NULL; /* the new owner takes the socket */
	http_conn_close(c);
	return st;
}

/* Over a connection cap, a client still gets a 503 it can read: the reply
 * goes out like any last reply (then lingering close). Past a small slack
 * (FD_BUDGET_REJECT_SLACK, within the descriptors kept back) even that is
 * skipped and the socket just closed. */
static size_t http_overloaded_reply(char *out, size_t n, const char *detail)
{
	char body[256];
	int bl = snprintf(body, sizeof body,
			  "{\"type\":\"" PROBLEM_TYPE_BASE "overloaded\",\"title\":\"Too many connections\","
			  "\"status\":503,\"detail\":\"%s\"}", detail);
	int k = snprintf(out, n,
			 "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\n"
			 "Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", bl, body);
	return k > 0 && (size_t)k < n ? (size_t)k : 0;
}

static void http_conn_reject_overloaded(struct http_conn *c, const char *detail)
{
	char resp[512];
	stream_write(c->st, resp, http_overloaded_reply(resp, sizeof resp, detail));
	c->state = C_CLOSING;
	if (stream_pending(c->st) == 0)
		http_conn_linger(c);
	http_timer_arm(c, LINGER_MS);
}

/* At the connection cap: closes a connection to make room for a new client
 * whose address holds `newcomer` connections already (see RECLAIM_AFTER_NS
 * for which). A request being handled, or a WebSocket (the hub holds
 * those), is never taken. */
static bool http_conn_reclaim(struct http_server *s, int64_t now, int newcomer)
{
	struct http_conn *heaviest = NULL, *old = NULL;
	int most = 0, n = 0;
	for (struct http_conn *c = TAILQ_FIRST(&s->conns); c && n < RECLAIM_SCAN; c = TAILQ_NEXT(c, link), n++) {
		if (c->rejecting || (c->state != C_IDLE && c->state != C_HEAD && c->state != C_BODY))
			continue;
		int held = c->has_addr ? conn_counts_of(s->counts, &c->addr) : 0;
		if (held > most) {
			most = held;
			heaviest = c;
		}
		int64_t since = c->state == C_IDLE ? c->active_ns : c->head_start_ns;
		if (!old && now - since >= RECLAIM_AFTER_NS)
			old = c;
	}
	struct http_conn *c = most > newcomer + 1 ? heaviest : old;
	if (!c)
		return false;
	log_debug(NULL, "conn=%llu from %s closed to make room (%s; its address holds %d)", (unsigned long long)c->id,
		  c->peer, c == heaviest && most > newcomer + 1 ? "the address holding the most" : "held longest", most);
	metric_inc(s->m_reclaimed);
	http_conn_close(c);
	return true;
}

static void http_format_peer(const struct sockaddr *sa, char *out, size_t n)
{
	char host[INET6_ADDRSTRLEN] = "?";
	int port = 0;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		evutil_inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
		port = ntohs(in->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		evutil_inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
		port = ntohs(in6->sin6_port);
	}
	snprintf(out, n, "%s:%d", host, port);
}

static void http_accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	struct http_server *s = arg;
	if (s->draining) {
		evutil_closesocket(fd);
		return;
	}
	struct conn_addr addr;
	bool has_addr = conn_counts_addr_of(sa, &addr);
	int64_t now = rh_mono_ns();
	const char *refuse = NULL;
	int64_t per_address = s->cfg->max_connections_per_address;
	int held = has_addr ? conn_counts_of(s->counts, &addr) : 0;
	if (per_address > 0 && has_addr && held >= per_address) {
		refuse = "too many connections from your address; retry later";
		metric_inc(s->m_rejected_address);
	} else if (conn_counts_total(s->counts) - s->nrejecting >= s->cfg->max_connections &&
		   !http_conn_reclaim(s, now, held)) {
		refuse = "connection limit reached; retry later";
		metric_inc(s->m_rejected_limit);
	}
	if (refuse && s->nrejecting >= FD_BUDGET_REJECT_SLACK) {
		evutil_closesocket(fd);
		return;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	struct http_conn *c = RH_NEW(struct http_conn);
	c->srv = s;
	c->id = ++s->next_conn_id;
	c->timer = evtimer_new(s->base, http_conn_timer_cb, c);
	c->active_ns = c->head_start_ns = now;
	c->addr = addr;
	c->has_addr = has_addr;
	http_format_peer(sa, c->peer, sizeof c->peer);
	TAILQ_INSERT_TAIL(&s->conns, c, link);
	s->nconns++;
	metric_set(s->m_conns, s->nconns);
	metric_inc(s->m_accepted);
	/* Input up to one maximal request (head + body) plus slack; output up to
	 * what a slow reader may leave unread before we give up on it. */
	size_t in_max = (size_t)(s->cfg->max_header_size + s->cfg->max_body_size) + 65536;
	c->st = stream_new(s->base, fd, &s->scratch, in_max, 64u << 20, &conn_ops, c);
	conn_counts_acquire(s->counts, has_addr ? &addr : NULL);
	stream_count(c->st, s->counts, has_addr ? &addr : NULL);
	if (refuse) {
		c->rejecting = true;
		s->nrejecting++;
		http_conn_reject_overloaded(c, refuse);
		return;
	}
	c->state = C_IDLE;
	/* a new connection has the head's deadline to send one */
	http_timer_arm(c, http_header_deadline_ms(s->cfg));
}

/* Out of descriptors (EMFILE): the spare one kept for this lets us take one
 * waiting client at a time, tell it 503 and close it, so that clients are
 * refused at once rather than left hanging in the backlog; then accepting
 * pauses (http_accept_error_cb) while existing connections are served. */
static void http_refuse_without_descriptors(struct http_server *s)
{
	if (s->reserve_fd < 0 || !s->listener)
		return;
	char resp[512];
	size_t n = http_overloaded_reply(resp, sizeof resp, "the server is out of file descriptors; retry later");
	int lfd = evconnlistener_get_fd(s->listener);
	for (int i = 0; i < 16; i++) {
		close(s->reserve_fd);
		s->reserve_fd = -1;
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			char junk[2048];
			while (recv(fd, junk, sizeof junk, MSG_DONTWAIT) > 0)
				; /* what already came: closing with it unread would reset the reply away */
			ssize_t w = send(fd, resp, n, MSG_DONTWAIT | MSG_NOSIGNAL);
			(void)w;
			shutdown(fd, SHUT_WR);
			close(fd);
			metric_inc(s->m_rejected_fds);
		}
		s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (fd < 0 || s->reserve_fd < 0)
			break;
	}
}

static void http_accept_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http_server *s = arg;
	if (s->reserve_fd < 0)
		s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (!s->draining && s->listener)
		evconnlistener_enable(s->listener);
}

static void http_accept_error_cb(struct evconnlistener *l, void *arg)
{
	struct http_server *s = arg;
	int err = EVUTIL_SOCKET_ERROR();
	if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
		/* Out of descriptors: refuse who is waiting, then pause accepting
		 * instead of spinning; the connections already open are served. */
		log_warn(NULL, "accept: %s; refusing waiting clients with 503 and pausing accepts for 100 ms",
			 strerror(err));
		if (err == EMFILE || err == ENFILE)
			http_refuse_without_descriptors(s);
		evconnlistener_disable(l);
		struct timeval tv = { 0, 100000 };
		evtimer_add(s->accept_retry, &tv);
		return;
	}
	log_warn(NULL, "accept: %s", strerror(err));
}

/* ------------------------------------------------------------ server */

static void http_server_collect(void *arg)
{
	struct http_server *s = arg;
	metric_set(s->m_sockets, conn_counts_total(s->counts));
	metric_set(s->m_cap, (double)s->cfg->max_connections);
}

struct http_server *http_server_new(struct event_base *base, const struct http_cfg *cfg, struct metrics *m)
{
	static const char *const req_labels[] = { "route", "method", "status", NULL };
	static const char *const lat_labels[] = { "route", NULL };
	struct http_server *s = RH_NEW(struct http_server);
	s->base = base;
	s->cfg = cfg;
	TAILQ_INIT(&s->conns);
	s->routes_tail = &s->routes;
	s->reaper = event_new(base, -1, 0, http_reaper_cb, s);
	s->scratch.size = 256 * 1024;
	s->scratch.buf = rh_malloc(s->scratch.size);
	s->accept_retry = evtimer_new(base, http_accept_retry_cb, s);
	s->counts = conn_counts_new();
	s->reserve_fd = -1;
	evutil_secure_rng_get_bytes(&s->req_prefix, sizeof s->req_prefix);
	char err[160];
	if (proxy_list_parse(cfg->trusted_proxies, &s->proxies, err, sizeof err) != RH_OK)
		memset(&s->proxies, 0, sizeof s->proxies); /* (config validation refused it already) */
	s->f_requests = metrics_counter(m, "ridehail_http_requests_total",
					"HTTP requests answered, by route pattern, method and status.", req_labels);
	s->f_latency = metrics_histogram(m, "ridehail_http_request_duration_seconds",
					 "Time from a complete request to its reply, by route pattern.", lat_labels,
					 metrics_latency_bounds, metrics_latency_nbounds);
	const char *unmatched[] = { "unmatched" };
	s->m_unmatched_latency = metric_cell(s->f_latency, unmatched);
	s->m_conns = metric_cell(metrics_gauge(m, "ridehail_http_connections", "Open HTTP connections (WebSocket ones are counted by the gateway).", NULL), NULL);
	s->m_accepted = metric_cell(metrics_counter(m, "ridehail_http_connections_accepted_total", "TCP connections accepted.", NULL), NULL);
	static const char *const reason_label[] = { "reason", NULL };
	struct metric_family *rej = metrics_counter(m, "ridehail_http_connections_rejected_total",
						    "Connections refused with 503, by reason: limit (http.max_connections), "
						    "address (http.max_connections_per_address), descriptors (none left).",
						    reason_label);
	s->m_rejected_limit = metric_cell(rej, (const char *[]){ "limit" });
	s->m_rejected_address = metric_cell(rej, (const char *[]){ "address" });
	s->m_rejected_fds = metric_cell(rej, (const char *[]){ "descriptors" });
	s->m_reclaimed = metric_cell(metrics_counter(m, "ridehail_http_connections_reclaimed_total",
						     "Idle or slow connections closed at the connection cap to make room for a new client.",
						     NULL), NULL);
	s->m_sockets = metric_cell(metrics_gauge(m, "ridehail_client_sockets",
						 "Open client sockets, HTTP and WebSocket together (what http.max_connections caps).",
						 NULL), NULL);
	s->m_cap = metric_cell(metrics_gauge(m, "ridehail_client_sockets_max",
					     "The effective http.max_connections (derived from the open-file limit).", NULL),
			       NULL);
	metrics_on_collect(m, http_server_collect, s);
	s->m_inflight = metric_cell(metrics_gauge(m, "ridehail_http_requests_in_flight", "Requests dispatched and not yet answered.", NULL), NULL);
	return s;
}

static rh_err http_resolve_listen(const char *listen, struct sockaddr_storage *ss, int *sslen)
{
	char host[256];
	int port;
	if (!cfg_split_addr(listen, host, sizeof host, &port))
		return RH_EINVAL;
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
	struct addrinfo *res = NULL;
	char portstr[8];
	snprintf(portstr, sizeof portstr, "%d", port);
	if (getaddrinfo(host, portstr, &hints, &res) != 0 || !res)
		return RH_EINVAL;
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*sslen = (int)res->ai_addrlen;
	freeaddrinfo(res);
	return RH_OK;
}

rh_err http_server_listen(struct http_server *s, char *bound, size_t boundlen)
{
	struct sockaddr_storage ss;
	int sslen;
	if (http_resolve_listen(s->cfg->listen, &ss, &sslen) != RH_OK) {
		log_error(NULL, "http.listen %s: cannot resolve", s->cfg->listen);
		return RH_EINVAL;
	}
	s->listener = evconnlistener_new_bind(s->base, http_accept_cb, s,
					      LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
					      (int)s->cfg->backlog, (struct sockaddr *)&ss, sslen);
	if (!s->listener) {
		log_error(NULL, "http.listen %s: %s", s->cfg->listen, strerror(errno));
		return RH_EIO;
	}
	evconnlistener_set_error_cb(s->listener, http_accept_error_cb);
	s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	struct sockaddr_storage got;
	socklen_t gl = sizeof got;
	getsockname(evconnlistener_get_fd(s->listener), (struct sockaddr *)&got, &gl);
	char host[INET6_ADDRSTRLEN];
	if (got.ss_family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&got;
		evutil_inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
		snprintf(bound, boundlen, "[%s]:%d", host, ntohs(a->sin6_port));
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&got;
		evutil_inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
		snprintf(bound, boundlen, "%s:%d", host, ntohs(a->sin_port));
	}
	return RH_OK;
}

void http_server_drain(struct http_server *s)
{
	s->draining = true;
	/* Close the listening socket, so new clients are refused at once rather
	 * than left in the backlog until the process exits. */
	if (s->listener) {
		evconnlistener_free(s->listener);
		s->listener = NULL;
	}
	evtimer_del(s->accept_retry);
	struct http_conn *c, *next;
	for (c = TAILQ_FIRST(&s->conns); c; c = next) {
		next = TAILQ_NEXT(c, link);
		if (c->state == C_IDLE && stream_in_len(c->st) == 0)
			http_conn_close(c);
	}
}

int http_server_inflight(const struct http_server *s) { return s->inflight; }
int http_server_connections(const struct http_server *s) { return s->nconns; }

void http_server_free(struct http_server *s)
{
	if (!s)
		return;
	while (!TAILQ_EMPTY(&s->conns))
		http_conn_close(TAILQ_FIRST(&s->conns));
	http_reaper_cb(-1, 0, s);
	if (s->listener)
		evconnlistener_free(s->listener);
	event_free(s->reaper);
	event_free(s->accept_retry);
	if (s->reserve_fd >= 0)
		close(s->reserve_fd);
	/* (WebSocket streams, which release their place here, are gone: the
	 * gateway is freed first) */
	conn_counts_free(s->counts);
	rh_free(s->scratch.buf);
	struct route_entry *re = s->routes;
	while (re) {
		struct route_entry *next = re->next;
		for (int i = 0; i < re->nseg; i++) {
			rh_free(re->segs[i]);
			rh_free(re->names[i]);
		}
		rh_free(re);
		re = next;
	}
	rh_free(s);
}

struct stream_scratch *http_server_scratch(struct http_server *s) { return &s->scratch; }
