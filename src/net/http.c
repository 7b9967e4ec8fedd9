/* The HTTP/1.1 server: routes and their dispatch, the listener and the
 * server's life (new, listen, drain, free). Connections are in http_conn.c,
 * a request and its reply in http_req.c; what they share, in
 * http_internal.h. */
#include "http_internal.h"

/* ------------------------------------------------------------ helpers */

const char *http_date_header(struct http_server *s)
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
int64_t http_header_deadline_ms(const struct http_cfg *cfg)
{
	return cfg->header_timeout_ms < cfg->request_timeout_ms ? cfg->header_timeout_ms : cfg->request_timeout_ms;
}

void http_timer_arm(struct http_conn *c, int64_t ms)
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

void http_record_request(struct http_req *r, int status)
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

void http_dispatch(struct http_conn *c, struct http_req *r)
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
