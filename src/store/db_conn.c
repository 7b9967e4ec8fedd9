/* The pool's connections: connecting and its backoff, a connection's states,
 * a broken one's queries, LISTEN on one of them, the migrations at first
 * contact; and the pool's life (new, start, close, free). */
#include "store/db.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/prio.h"
#include "core/metrics.h"
#include "core/settings.h"
#include "store/migrations.h"
#include "db_internal.h"

static const char *const state_names[] = { "down", "connecting", "migrating", "waiting", "ready" };

/* ------------------------------------------------------------ lifecycle */

static void db_conn_set_state(struct db_conn *c, enum conn_state st)
{
	c->state = st;
}

static void db_collect(void *arg)
{
	struct db *db = arg;
	int counts[5] = { 0 };
	for (int i = 0; i < db->nconns; i++)
		counts[db->conns[i].state]++;
	for (int i = 0; i < 5; i++)
		metric_set(db->m_state[i], counts[i]);
	metric_set(db->m_queue, db->queued);
}

static void db_conn_clear_events(struct db_conn *c)
{
	if (c->ev) {
		event_free(c->ev);
		c->ev = NULL;
	}
	if (c->wev) {
		event_free(c->wev);
		c->wev = NULL;
	}
}

/* Fails everything in flight on c, closes it and schedules a reconnect. */
void db_conn_broken(struct db_conn *c, const char *why)
{
	struct db *db = c->db;
	char msg[256];
	snprintf(msg, sizeof msg, "%s", why && *why ? why : "connection lost");
	size_t n = strlen(msg);
	while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
		msg[--n] = '\0';
	if (c->state == DC_READY || c->state == DC_WAITING)
		log_warn(NULL, "db conn=%d lost: %s", c->index, msg);
	snprintf(c->last_error, sizeof c->last_error, "%s", msg);
	if (c->migrator) {
		migrator_cancel(c->migrator);
		c->migrator = NULL;
		db->migrating = false;
	}
	db_conn_clear_events(c);
	if (c->pg) {
		PQfinish(c->pg);
		c->pg = NULL;
	}
	enum conn_state was = c->state;
	db_conn_set_state(c, DC_DOWN);
	bool was_listening = db->listen_conn == c->index;
	if (was_listening)
		db->listen_conn = -1;
	memset(c->prepared, 0, sizeof c->prepared);
	c->inflight = 0;
	struct db_query *q;
	while ((q = STAILQ_FIRST(&c->fifo)) != NULL) {
		STAILQ_REMOVE_HEAD(&c->fifo, link);
		if (q->kind == Q_QUERY) {
			metric_inc(db->m_lost);
			db_query_fail_later(db, q, RH_EDB, "database connection lost", true);
		} else {
			db_query_free(q);
		}
	}
	/* With every connection down, waiting queries fail now, not at timeout,
	 * and the schema is checked again on the next connection: what comes back
	 * may be a restored backup or a failover replica. */
	if (db_all_down(db)) {
		if (db->schema_ok)
			log_info(NULL, "db: every connection is down; the schema will be checked again on reconnect");
		db->schema_ok = false;
		db_fail_waiting(db, RH_EAGAIN, "database unavailable");
	}
	if (db->closing) {
		db_close(db, db->close_done, db->close_arg);
		return;
	}
	/* another connection takes the listening over (its callback fails
	 * first: it was in c's FIFO, answered from the loop) */
	for (int i = 0; was_listening && i < db->nconns; i++)
		if (db->conns[i].state == DC_READY) {
			db_listen_start(&db->conns[i]);
			break;
		}
	if (was == DC_READY)
		c->backoff_ms = BACKOFF_MIN_MS;
	else
		c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : BACKOFF_MIN_MS;
	if (c->backoff_ms > db->cfg->reconnect_max_ms)
		c->backoff_ms = db->cfg->reconnect_max_ms;
	struct timeval tv = { .tv_sec = c->backoff_ms / 1000, .tv_usec = (c->backoff_ms % 1000) * 1000 };
	evtimer_add(c->timer, &tv);
	metric_inc(db->m_reconnects);
}

static void db_listen_done(void *arg, const struct db_result *res)
{
	struct db_conn *c = arg;
	struct db *db = c->db;
	db->listen_pending = false;
	if (res->err != RH_OK || c->state != DC_READY) {
		log_warn(NULL, "db conn=%d: cannot LISTEN: %s", c->index, res->message);
		/* another ready connection tries; else the next to come up */
		for (int i = 0; i < db->nconns && !db->closing; i++)
			if (&db->conns[i] != c && db->conns[i].state == DC_READY) {
				db_listen_start(&db->conns[i]);
				break;
			}
		return;
	}
	db->listen_conn = c->index;
	log_info(NULL, "db conn=%d listens on %s", c->index, db->listen_stmt.sql + 7);
	if (db->on_listen)
		db->on_listen(db->listen_arg);
}

/* Starts listening on c unless some connection listens already. The
 * statement goes to this connection, not through the queue. */
void db_listen_start(struct db_conn *c)
{
	struct db *db = c->db;
	if (!db->on_notify || db->listen_conn >= 0 || db->listen_pending || c->state != DC_READY)
		return;
	struct db_query *q = db_query_new(&db->listen_stmt, NULL, db_listen_done, c);
	q->start_ns = rh_mono_ns();
	db->listen_pending = true;
	if (db_conn_send(c, q))
		db_conn_flush(c);
}

void db_listen(struct db *db, const char *channel, void (*on_notify)(void *arg, const char *payload),
	       void (*on_listen)(void *arg), void *arg)
{
	snprintf(db->listen_sql, sizeof db->listen_sql, "LISTEN %s", channel);
	db->listen_stmt.name = "db_listen";
	db->listen_stmt.sql = db->listen_sql;
	db->listen_stmt.nparams = 0;
	db_register(db, &db->listen_stmt);
	db->on_notify = on_notify;
	db->on_listen = on_listen;
	db->listen_arg = arg;
}

static void db_conn_ready(struct db_conn *c)
{
	struct db *db = c->db;
	if (!PQenterPipelineMode(c->pg)) {
		db_conn_broken(c, "cannot enter pipeline mode");
		return;
	}
	db_conn_clear_events(c);
	c->ev = event_new(db->base, PQsocket(c->pg), EV_READ | EV_PERSIST, db_conn_io_cb, c);
	event_priority_set(c->ev, RH_PRIO_HIGH);
	c->wev = event_new(db->base, PQsocket(c->pg), EV_WRITE, db_conn_write_cb, c);
	event_priority_set(c->wev, RH_PRIO_HIGH);
	event_add(c->ev, NULL);
	db_conn_set_state(c, DC_READY);
	c->backoff_ms = 0;
	c->last_error[0] = '\0';
	log_info(NULL, "db conn=%d ready (server %d, pipeline depth %lld)", c->index, PQserverVersion(c->pg),
		 (long long)db->cfg->pipeline_depth);
	db_listen_start(c);
	db_pump(db);
}

static void migrate_done(void *arg, rh_err err, int version, const char *msg)
{
	struct db_conn *c = arg;
	struct db *db = c->db;
	c->migrator = NULL;
	db->migrating = false;
	if (err != RH_OK) {
		db->migrate_failed = true;
		snprintf(db->why, sizeof db->why, "%s", msg);
		log_error(NULL, "schema: %s", msg);
		db_conn_broken(c, msg);
		return;
	}
	db->schema_ok = true;
	db->migrate_failed = false;
	log_info(NULL, "schema at version %d", version);
	/* Wake the connections that waited for the schema. */
	for (int i = 0; i < db->nconns; i++)
		if (db->conns[i].state == DC_WAITING)
			db_conn_ready(&db->conns[i]);
	db_conn_ready(c);
}

/* Connected: migrate (first connection only), or wait for the one that is. */
static void db_conn_established(struct db_conn *c)
{
	struct db *db = c->db;
	evtimer_del(c->timer);
	PQsetnonblocking(c->pg, 1);
	db_conn_clear_events(c);
	if (db->schema_ok) {
		db_conn_ready(c);
		return;
	}
	if (db->migrating) {
		db_conn_set_state(c, DC_WAITING);
		/* still watch the socket so that a server shutdown is noticed */
		c->ev = event_new(db->base, PQsocket(c->pg), EV_READ | EV_PERSIST, db_conn_io_cb, c);
		event_priority_set(c->ev, RH_PRIO_HIGH);
		event_add(c->ev, NULL);
		return;
	}
	db->migrating = true;
	db_conn_set_state(c, DC_MIGRATING);
	c->migrator = migrator_start(db->base, c->pg, db->cfg->migrate, migrate_done, c);
}

static void db_conn_poll_cb(evutil_socket_t fd, short what, void *arg)
{
	struct db_conn *c = arg;
	if (what & EV_TIMEOUT) {
		db_conn_broken(c, "connect timed out");
		return;
	}
	PostgresPollingStatusType st = PQconnectPoll(c->pg);
	db_conn_clear_events(c);
	switch (st) {
	case PGRES_POLLING_OK:
		db_conn_established(c);
		return;
	case PGRES_POLLING_FAILED:
		db_conn_broken(c, PQerrorMessage(c->pg));
		return;
	case PGRES_POLLING_READING:
	case PGRES_POLLING_WRITING:
	default: {
		short ev = st == PGRES_POLLING_WRITING ? EV_WRITE : EV_READ;
		/* the socket may change between attempts (several hosts) */
		c->ev = event_new(c->db->base, PQsocket(c->pg), ev, db_conn_poll_cb, c);
		event_priority_set(c->ev, RH_PRIO_HIGH);
		event_add(c->ev, NULL);
		return;
	}
	}
}

static void db_conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct db_conn *c = arg;
	if (c->state == DC_DOWN)
		db_conn_connect(c);
	else if (c->state == DC_CONNECTING)
		db_conn_broken(c, "connect timed out");
}

static void db_notice_cb(void *arg, const PGresult *res)
{
	struct db_conn *c = arg;
	log_info(NULL, "db conn=%d notice: %s", c->index, PQresultErrorMessage(res));
}

void db_conn_connect(struct db_conn *c)
{
	struct db *db = c->db;
	char timeout[32];
	snprintf(timeout, sizeof timeout, "%lld", (long long)((db->cfg->connect_timeout_ms + 999) / 1000));
	char options[64];
	snprintf(options, sizeof options, "-c statement_timeout=%lld", (long long)db->cfg->statement_timeout_ms);
	/* expand_dbname: the url may be a URI or key=value string; the keys
	 * after it fill in only what it leaves unset... except options and
	 * application_name, which we own. */
	const char *keys[] = { "dbname", "application_name", "options", "keepalives_idle", "keepalives_interval",
			       "keepalives_count", NULL };
	const char *vals[] = { db->cfg->url, "ridehaild", options, "10", "5", "3", NULL };
	c->pg = PQconnectStartParams(keys, vals, 1);
	if (!c->pg || PQstatus(c->pg) == CONNECTION_BAD) {
		db_conn_broken(c, c->pg ? PQerrorMessage(c->pg) : "out of memory");
		return;
	}
	PQsetnonblocking(c->pg, 1);
	PQsetNoticeReceiver(c->pg, db_notice_cb, c);
	db_conn_set_state(c, DC_CONNECTING);
	c->ev = event_new(db->base, PQsocket(c->pg), EV_WRITE, db_conn_poll_cb, c);
	event_priority_set(c->ev, RH_PRIO_HIGH);
	event_add(c->ev, NULL);
	struct timeval tv = { .tv_sec = db->cfg->connect_timeout_ms / 1000,
			      .tv_usec = (db->cfg->connect_timeout_ms % 1000) * 1000 };
	evtimer_add(c->timer, &tv);
}

struct db *db_new(struct event_base *base, const struct database_cfg *cfg, struct metrics *m)
{
	static const char *const state_label[] = { "state", NULL };
	struct db *db = RH_NEW(struct db);
	db->base = base;
	db->cfg = cfg;
	STAILQ_INIT(&db->queue);
	STAILQ_INIT(&db->failed);
	db->nconns = (int)cfg->pool_size;
	db->listen_conn = -1;
	db->conns = rh_calloc((size_t)db->nconns, sizeof *db->conns);
	for (int i = 0; i < db->nconns; i++) {
		struct db_conn *c = &db->conns[i];
		c->db = db;
		c->index = i;
		STAILQ_INIT(&c->fifo);
		c->timer = evtimer_new(base, db_conn_timer_cb, c);
	}
	db->sweep = event_new(base, -1, EV_PERSIST, db_sweep_cb, db);
	db->deliver = event_new(base, -1, 0, db_deliver_cb, db);
	event_priority_set(db->deliver, RH_PRIO_HIGH);
	struct timeval tv = { 0, 100000 };
	event_add(db->sweep, &tv);
	snprintf(db->why, sizeof db->why, "connecting");

	db->m_queries = metric_cell(metrics_counter(m, "ridehail_db_queries_total", "Queries submitted to the pool.", NULL), NULL);
	db->m_errors = metric_cell(metrics_counter(m, "ridehail_db_query_errors_total", "Queries answered with an error (server error, lost connection, timeout).", NULL), NULL);
	db->m_lost = metric_cell(metrics_counter(m, "ridehail_db_queries_lost_total", "Queries in flight on a connection that broke (outcome unknown).", NULL), NULL);
	db->m_timeouts = metric_cell(metrics_counter(m, "ridehail_db_queue_timeouts_total", "Queries that waited past database.query_timeout for a connection.", NULL), NULL);
	db->m_reconnects = metric_cell(metrics_counter(m, "ridehail_db_reconnects_total", "Connection attempts scheduled after a failure.", NULL), NULL);
	db->m_queue = metric_cell(metrics_gauge(m, "ridehail_db_queue_depth", "Queries waiting for a connection.", NULL), NULL);
	db->f_conn_state = metrics_gauge(m, "ridehail_db_pool_connections", "Pool connections by state.", state_label);
	for (int i = 0; i < 5; i++) {
		const char *lv[] = { state_names[i] };
		db->m_state[i] = metric_cell(db->f_conn_state, lv);
	}
	db->f_latency = metrics_histogram(m, "ridehail_db_query_duration_seconds", "Query time from submission to result.", NULL,
					  metrics_latency_bounds, metrics_latency_nbounds);
	db->m_latency = metric_cell(db->f_latency, NULL);
	metrics_on_collect(m, db_collect, db);
	return db;
}

void db_register(struct db *db, struct db_stmt *stmt)
{
	if (db->nstmts == DB_MAX_STMTS) {
		log_error(NULL, "db: more than %d statements", DB_MAX_STMTS);
		abort();
	}
	stmt->index = db->nstmts;
	db->stmts[db->nstmts++] = stmt;
}

void db_start(struct db *db)
{
	for (int i = 0; i < db->nconns; i++)
		db_conn_connect(&db->conns[i]);
}

bool db_is_ready(const struct db *db, char *why, size_t whylen)
{
	bool any = false;
	for (int i = 0; i < db->nconns; i++)
		any |= db->conns[i].state == DC_READY;
	if (any && db->schema_ok)
		return true;
	if (db->migrate_failed) {
		snprintf(why, whylen, "%s", db->why);
	} else if (db->migrating) {
		snprintf(why, whylen, "applying migrations");
	} else {
		const char *err = "";
		for (int i = 0; i < db->nconns && !*err; i++)
			err = db->conns[i].last_error;
		snprintf(why, whylen, "database not connected%s%s", *err ? ": " : "", err);
	}
	return false;
}

void db_close(struct db *db, void (*done)(void *arg), void *arg)
{
	db->closing = true;
	db->close_done = done;
	db->close_arg = arg;
	db_fail_waiting(db, RH_EAGAIN, "shutting down");
	int busy = 0;
	for (int i = 0; i < db->nconns; i++) {
		struct db_conn *c = &db->conns[i];
		if (c->state == DC_READY && c->inflight > 0) {
			busy++;
			continue;
		}
		evtimer_del(c->timer);
		if (c->migrator) {
			migrator_cancel(c->migrator);
			c->migrator = NULL;
		}
		db_conn_clear_events(c);
		if (c->pg) {
			PQfinish(c->pg);
			c->pg = NULL;
		}
		c->state = DC_DOWN;
	}
	if (busy == 0 && db->close_done) {
		void (*cb)(void *) = db->close_done;
		db->close_done = NULL;
		cb(db->close_arg);
	}
}

/* Frees without calling anyone back: by now every owner of a query is gone
 * (the server closes the pool and waits for in-flight work before freeing). */
void db_free(struct db *db)
{
	if (!db)
		return;
	struct db_query *q;
	for (int i = 0; i < db->nconns; i++) {
		struct db_conn *c = &db->conns[i];
		if (c->migrator)
			migrator_cancel(c->migrator);
		db_conn_clear_events(c);
		if (c->pg)
			PQfinish(c->pg);
		while ((q = STAILQ_FIRST(&c->fifo)) != NULL) {
			STAILQ_REMOVE_HEAD(&c->fifo, link);
			db_query_free(q);
		}
		event_free(c->timer);
	}
	while ((q = STAILQ_FIRST(&db->queue)) != NULL) {
		STAILQ_REMOVE_HEAD(&db->queue, link);
		db_query_free(q);
	}
	while ((q = STAILQ_FIRST(&db->failed)) != NULL) {
		STAILQ_REMOVE_HEAD(&db->failed, link);
		db_query_free(q);
	}
	event_free(db->sweep);
	event_free(db->deliver);
	rh_free(db->conns);
	rh_free(db);
}
