/* HTTP connections: reading heads and bodies, keep-alive, timeouts,
 * lingering close, the connection caps (reclaiming, refusing) and accept. */
#include "http_internal.h"

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

void http_conn_process(struct http_conn *c)
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
void http_conn_linger(struct http_conn *c)
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

void http_reaper_cb(evutil_socket_t fd, short what, void *arg)
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
void http_conn_close(struct http_conn *c)
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

void http_accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
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

void http_accept_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http_server *s = arg;
	if (s->reserve_fd < 0)
		s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (!s->draining && s->listener)
		evconnlistener_enable(s->listener);
}

void http_accept_error_cb(struct evconnlistener *l, void *arg)
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
