/* What net/http's files share: http.c (routes, the server), http_req.c (a
 * request and its reply) and http_conn.c (connections). The structs, and the
 * functions one of them calls in another. */
#ifndef RH_HTTP_INTERNAL_H
#define RH_HTTP_INTERNAL_H

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

/* http.c */
const char *http_date_header(struct http_server *s);
int64_t http_header_deadline_ms(const struct http_cfg *cfg);
void http_timer_arm(struct http_conn *c, int64_t ms);
void http_record_request(struct http_req *r, int status);
void http_dispatch(struct http_conn *c, struct http_req *r);

/* http_req.c */
void http_conn_touch(struct http_conn *c, int64_t now_ns);
struct http_req *http_req_new(struct http_conn *c);
void http_req_free(struct http_req *r);
bool http_valid_request_id(const char *v);
const char *http_req_decode(struct http_req *r, const char *s, size_t n, bool plus);
enum http_target_status http_req_parse_target(struct http_req *r);

/* http_conn.c */
void http_conn_process(struct http_conn *c);
void http_conn_linger(struct http_conn *c);
void http_reaper_cb(evutil_socket_t fd, short what, void *arg);
void http_conn_close(struct http_conn *c);
void http_accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg);
void http_accept_retry_cb(evutil_socket_t fd, short what, void *arg);
void http_accept_error_cb(struct evconnlistener *l, void *arg);

#endif
