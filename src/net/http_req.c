/* A request as its handler sees it: the accessors, the body and query
 * readers, and the reply (head, problems). */
#include "http_internal.h"

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


/* The connection was active now: it goes to the end of the list, which is
 * thus ordered from the least recently active (what a new client may take
 * the place of at the cap). */
void http_conn_touch(struct http_conn *c, int64_t now_ns)
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
struct http_req *http_req_new(struct http_conn *c)
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

void http_req_free(struct http_req *r)
{
	if (!r)
		return;
	rh_free(r->head_buf);
	rh_free(r->decoded);
	sb_fini(&r->body);
	sb_fini(&r->extra_headers);
	rh_free(r);
}

bool http_valid_request_id(const char *v)
{
	size_t n = strlen(v);
	return n > 0 && n <= 36 && strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-") == n;
}

/* Appends the decoding of s[0..n) to r->decoded; NULL if malformed. */
const char *http_req_decode(struct http_req *r, const char *s, size_t n, bool plus)
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
enum http_target_status http_req_parse_target(struct http_req *r)
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
