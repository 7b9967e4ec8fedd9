#include "store/listen.h"

#include <event2/event.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/prio.h"
#include "core/settings.h"

enum listen_state { LS_DOWN, LS_CONNECTING, LS_LISTEN_SENT, LS_LISTENING };

struct db_listener {
	struct event_base *base;
	const struct database_cfg *cfg;
	struct db_listen_hooks h;
	char sql[512];           /* LISTEN a; LISTEN b; ... */
	PGconn *pg;
	enum listen_state state;
	struct event *ev;        /* the socket */
	struct event *timer;     /* connect timeout, reconnect backoff */
	int64_t backoff_ms;
};

static void db_listen_connect(struct db_listener *l);

static void db_listen_clear_ev(struct db_listener *l)
{
	if (l->ev) {
		event_free(l->ev);
		l->ev = NULL;
	}
}

static void db_listen_arm_timer(struct db_listener *l, int64_t ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	evtimer_add(l->timer, &tv);
}

/* The connection broke (or never came up): try again after the backoff. */
static void db_listen_broken(struct db_listener *l, const char *why)
{
	if (l->state == LS_LISTENING)
		log_warn(NULL, "db listen: connection lost (%s); notifications are missed until it is back", why);
	else
		log_debug(NULL, "db listen: %s", why);
	db_listen_clear_ev(l);
	if (l->pg) {
		PQfinish(l->pg);
		l->pg = NULL;
	}
	l->state = LS_DOWN;
	l->backoff_ms = l->backoff_ms ? l->backoff_ms * 2 : 100;
	if (l->backoff_ms > l->cfg->reconnect_max_ms)
		l->backoff_ms = l->cfg->reconnect_max_ms;
	db_listen_arm_timer(l, l->backoff_ms);
}

static void db_listen_watch(struct db_listener *l, short what, event_callback_fn cb)
{
	db_listen_clear_ev(l);
	l->ev = event_new(l->base, PQsocket(l->pg), what, cb, l);
	event_priority_set(l->ev, RH_PRIO_HIGH);
	event_add(l->ev, NULL);
}

/* Reads what the server sent: results of the LISTEN, notifications. */
static void db_listen_io_cb(evutil_socket_t fd, short what, void *arg)
{
	struct db_listener *l = arg;
	if (!PQconsumeInput(l->pg)) {
		db_listen_broken(l, PQerrorMessage(l->pg));
		return;
	}
	while (!PQisBusy(l->pg)) {
		PGresult *r = PQgetResult(l->pg);
		if (!r)
			break;
		ExecStatusType st = PQresultStatus(r);
		if (st != PGRES_COMMAND_OK) {
			char why[256];
			snprintf(why, sizeof why, "LISTEN failed: %s", PQresultErrorMessage(r));
			PQclear(r);
			db_listen_broken(l, why);
			return;
		}
		PQclear(r);
	}
	if (l->state == LS_LISTEN_SENT && !PQisBusy(l->pg)) {
		l->state = LS_LISTENING;
		l->backoff_ms = 0;
		log_info(NULL, "db listen: listening (%s)", l->sql);
		if (l->h.ready)
			l->h.ready(l->h.arg);
		if (!l->pg)
			return;
	}
	PGnotify *n;
	while (l->pg && (n = PQnotifies(l->pg)) != NULL) {
		if (l->h.notify)
			l->h.notify(l->h.arg, n->relname, n->extra ? n->extra : "");
		PQfreemem(n);
	}
}

static void db_listen_established(struct db_listener *l)
{
	evtimer_del(l->timer);
	if (!PQsendQuery(l->pg, l->sql)) {
		db_listen_broken(l, PQerrorMessage(l->pg));
		return;
	}
	if (PQflush(l->pg) < 0) {
		db_listen_broken(l, PQerrorMessage(l->pg));
		return;
	}
	l->state = LS_LISTEN_SENT;
	db_listen_watch(l, EV_READ | EV_PERSIST, db_listen_io_cb);
}

static void db_listen_poll_cb(evutil_socket_t fd, short what, void *arg)
{
	struct db_listener *l = arg;
	PostgresPollingStatusType st = PQconnectPoll(l->pg);
	switch (st) {
	case PGRES_POLLING_OK:
		db_listen_established(l);
		return;
	case PGRES_POLLING_FAILED:
		db_listen_broken(l, PQerrorMessage(l->pg));
		return;
	default:
		db_listen_watch(l, st == PGRES_POLLING_WRITING ? EV_WRITE : EV_READ, db_listen_poll_cb);
		return;
	}
}

static void db_listen_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct db_listener *l = arg;
	if (l->state == LS_DOWN)
		db_listen_connect(l);
	else if (l->state == LS_CONNECTING)
		db_listen_broken(l, "connect timed out");
}

static void db_listen_connect(struct db_listener *l)
{
	char timeout[32];
	snprintf(timeout, sizeof timeout, "%lld", (long long)((l->cfg->connect_timeout_ms + 999) / 1000));
	const char *keys[] = { "dbname", "application_name", "keepalives_idle", "keepalives_interval", "keepalives_count",
			       NULL };
	const char *vals[] = { l->cfg->url, "ridehaild-listen", "10", "5", "3", NULL };
	l->pg = PQconnectStartParams(keys, vals, 1);
	if (!l->pg || PQstatus(l->pg) == CONNECTION_BAD) {
		db_listen_broken(l, l->pg ? PQerrorMessage(l->pg) : "out of memory");
		return;
	}
	PQsetnonblocking(l->pg, 1);
	l->state = LS_CONNECTING;
	db_listen_watch(l, EV_WRITE, db_listen_poll_cb);
	db_listen_arm_timer(l, l->cfg->connect_timeout_ms);
}

struct db_listener *db_listener_new(struct event_base *base, const struct database_cfg *cfg, const char *const *channels,
			      const struct db_listen_hooks *h)
{
	struct db_listener *l = RH_NEW(struct db_listener);
	l->base = base;
	l->cfg = cfg;
	l->h = *h;
	size_t off = 0;
	for (int i = 0; channels[i] && i < 8; i++)
		off += (size_t)snprintf(l->sql + off, sizeof l->sql - off, "%sLISTEN %s", i ? "; " : "", channels[i]);
	l->timer = evtimer_new(base, db_listen_timer_cb, l);
	l->state = LS_DOWN;
	db_listen_arm_timer(l, 0); /* the first attempt from the loop, never from inside db_listener_new() */
	return l;
}

bool db_listener_listening(const struct db_listener *l)
{
	return l && l->state == LS_LISTENING;
}

void db_listener_free(struct db_listener *l)
{
	if (!l)
		return;
	db_listen_clear_ev(l);
	if (l->pg)
		PQfinish(l->pg);
	event_free(l->timer);
	rh_free(l);
}
