/* The HTTP/1.1 server: listener, connections, a route table, JSON and
 * problem+json replies. REST handlers and the WebSocket upgrade share the
 * listener (docs/architecture.md says why this is not evhttp).
 *
 * Ownership: the server owns its connections; a connection owns the request
 * being read. Once dispatched, a request belongs to its handler until the
 * handler replies (exactly once, now or later from a database callback). If
 * the client disconnects first the request is orphaned: the reply is
 * discarded and the request freed then. */
#ifndef RH_NET_HTTP_H
#define RH_NET_HTTP_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "net/http_parse.h"
#include "net/jsonv.h"
#include "net/problem.h"

struct event_base;
struct http_cfg;
struct metrics;
struct http_server;
struct http_req;

typedef void (*http_handler)(struct http_req *req, void *ctx);

enum {
	HTTP_ROUTE_UPGRADE = 1 << 0, /* WebSocket upgrade endpoint: no body, may detach */
};

struct http_route {
	enum http_method method;
	const char *pattern; /* "/v1/rides/{id}": {name} matches one path segment */
	http_handler handler;
	unsigned flags;
};

struct http_server *http_server_new(struct event_base *base, const struct http_cfg *cfg, struct metrics *m);
/* Binds and listens on cfg->listen; writes the bound "host:port" to bound. */
rh_err http_server_listen(struct http_server *s, char *bound, size_t boundlen) RH_MUST_CHECK;
/* routes: terminated by an entry with pattern NULL; ctx is passed to handlers. */
void http_server_add_routes(struct http_server *s, const struct http_route *routes, void *ctx);
/* Shutdown: stop accepting, close idle keep-alive connections; busy ones close
 * after their current reply. */
void http_server_drain(struct http_server *s);
/* Requests dispatched and not yet answered. */
int http_server_inflight(const struct http_server *s);
int http_server_connections(const struct http_server *s);
void http_server_free(struct http_server *s);

/* ------------------------------------------------------------ requests */
enum http_method http_req_method(const struct http_req *r);
const char *http_req_path(const struct http_req *r);
/* Path parameter captured by {name}, percent-decoded; NULL if absent. */
const char *http_req_param(const struct http_req *r, const char *name);
/* Query parameter, percent-decoded ('+' as space); first occurrence wins. */
const char *http_req_query(const struct http_req *r, const char *name);
/* Header by lower-case name. */
const char *http_req_header(const struct http_req *r, const char *lower_name);
const char *http_req_body(const struct http_req *r, size_t *len);
/* "req=<id>" for log lines. */
const char *http_req_logid(const struct http_req *r);
const char *http_req_id(const struct http_req *r);
/* The client as "host:port": the TCP peer, or, when the peer is one of
 * http.trusted_proxies, the address its X-Forwarded-For names (port 0: not
 * known; net/proxy.h). Logs and per-address rate limits use this. */
const char *http_req_peer(const struct http_req *r);
/* Monotonic ns when the request was dispatched. */
int64_t http_req_start_ns(const struct http_req *r);
struct event_base *http_req_base(const struct http_req *r);

/* Parses the body as a JSON object, or replies (400/415) and returns NULL. */
cJSON *http_req_json_or_reply(struct http_req *r);

/* ------------------------------------------------------------ replies */
/* Extra response header for the coming reply (copied). */
void http_reply_header(struct http_req *r, const char *name, const char *value);
void http_reply(struct http_req *r, int status, const char *content_type, const void *body, size_t len);
/* Serialises and frees json. */
void http_reply_json(struct http_req *r, int status, cJSON *json);
/* RFC 9457 problem+json: type and title from the problem table, the detail
 * formatted, `ext` (may be NULL; freed) merged in as extension members. */
void http_reply_problem(struct http_req *r, enum problem p, cJSON *ext, const char *fmt, ...) RH_PRINTF(4, 5);

/* The reply to a failure (net/problem.h err_reply_of: the one mapping), with
 * Retry-After where retrying helps; `what` completes "cannot %s". `cause`
 * (may be NULL: e.g. the database's message) goes to the log only. With a
 * database's answer: http_reply_err(req, db_result_err(res), what, res->message). */
void http_reply_err(struct http_req *r, rh_err e, const char *what, const char *cause);
/* 400 validation-failed naming the field (`field`) and the failed rule
 * (`rule`, a JSON Schema keyword). */
void http_reply_invalid(struct http_req *r, const struct jv_error *err);
/* A numeric query parameter within [min, max]: def when absent and not
 * required; otherwise replies 400 validation-failed naming the field and the
 * rule (required, type, minimum, maximum) and returns false. */
bool http_query_number_or_reply(struct http_req *req, const char *name, double min, double max, double def,
				bool required, double *out);
/* The same for an integer (no fraction, no exponent). Both take the JSON
 * number grammar only (net/numparse.h): no hexadecimal, no spaces. */
bool http_query_integer_or_reply(struct http_req *req, const char *name, int64_t min, int64_t max, int64_t def,
				 bool required, int64_t *out);
/* A problem naming the offending field (and the failed rule, may be NULL). */
void http_reply_field_problem(struct http_req *req, enum problem p, const char *field, const char *rule,
			      const char *fmt, ...) RH_PRINTF(5, 6);
/* Parses the body and checks it against fields, or replies and returns NULL. */
cJSON *http_req_json_valid_or_reply(struct http_req *r, const struct jv_field *fields);

/* WebSocket upgrade: takes the socket away from the HTTP server. Returns its
 * stream (the new owner sets its callbacks with stream_set_ops; input may
 * already hold bytes sent after the request), or NULL if the client left;
 * the request is freed either way. */
struct stream;
struct stream *http_req_detach(struct http_req *r);
/* The shared input scratch buffer (for streams handed over by detach). */
struct stream_scratch *http_server_scratch(struct http_server *s);

#endif
