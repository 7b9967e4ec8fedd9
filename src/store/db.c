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

#define DB_MAX_STMTS 256
#define BACKOFF_MIN_MS 100

struct db_query {
	STAILQ_ENTRY(db_query) link;
	const struct db_stmt *stmt; /* NULL for a pseudo entry (prepare/sync) */
	enum { Q_QUERY, Q_PREPARE, Q_SYNC } kind;
	char **params;
	db_cb cb;
	void *arg;
	int64_t deadline_ns;
	int64_t start_ns;
	PGresult *result;
	/* set when failed outside the loop's I/O path (see db_query_fail_later) */
	rh_err fail_err;
	const char *fail_msg;
	bool fail_unknown;
};
STAILQ_HEAD(query_list, db_query);

enum conn_state {
	DC_DOWN,       /* waiting for the reconnect timer */
	DC_CONNECTING, /* PQconnectPoll in progress */
	DC_MIGRATING,  /* the migrator borrows the connection */
	DC_WAITING,    /* up, waiting for another connection's migration */
	DC_READY,
};

struct db_conn {
	struct db *db;
	int index;
	PGconn *pg;
	enum conn_state state;
	struct event *ev;        /* socket, read (persist) */
	struct event *wev;       /* socket, write (while a flush is pending) */
	struct event *timer;     /* reconnect backoff / connect timeout */
	int64_t backoff_ms;
	int inflight;            /* queries (not pseudo entries) in the FIFO */
	struct query_list fifo;  /* sent, results pending, in order */
	unsigned char prepared[DB_MAX_STMTS];
	struct migrator *migrator;
	char last_error[256];
};

struct db {
	struct event_base *base;
	const struct database_cfg *cfg;
	struct db_stmt *stmts[DB_MAX_STMTS];
	int nstmts;
	struct db_conn *conns;
	int nconns;
	struct query_list queue; /* waiting for a connection */
	int queued;              /* in queue */
	struct event *sweep;     /* expires queued queries */
	struct event *deliver;   /* reports failures outside db_query() */
	struct query_list failed; /* answered from `deliver` */
	bool schema_ok, migrating, migrate_failed, closing;
	char why[256];
	void (*close_done)(void *);
	void *close_arg;
	/* LISTEN (db_listen): the channel, its statement, and which connection
	 * listens (-1: none yet, or it was lost) */
	struct db_stmt listen_stmt;
	char listen_sql[96];
	void (*on_notify)(void *arg, const char *payload);
	void (*on_listen)(void *arg);
	void *listen_arg;
	int listen_conn;
	bool listen_pending;
	/* metrics */
	struct metric_family *f_latency, *f_conn_state;
	struct metric_cell *m_queries, *m_errors, *m_lost, *m_timeouts, *m_queue, *m_latency, *m_reconnects;
	struct metric_cell *m_state[5];
};

static void db_conn_connect(struct db_conn *c);
static void db_conn_broken(struct db_conn *c, const char *why);
static void db_pump(struct db *db);
static void db_conn_read_results(struct db_conn *c);
static void db_listen_start(struct db_conn *c);

static const char *const state_names[] = { "down", "connecting", "migrating", "waiting", "ready" };

/* ------------------------------------------------------------ queries */

static struct db_query *db_query_new(const struct db_stmt *stmt, const char *const *params, db_cb cb, void *arg)
{
	struct db_query *q = RH_NEW(struct db_query);
	q->kind = Q_QUERY;
	q->stmt = stmt;
	q->cb = cb;
	q->arg = arg;
	if (stmt && stmt->nparams > 0) {
		q->params = rh_calloc((size_t)stmt->nparams, sizeof(char *));
		for (int i = 0; i < stmt->nparams; i++)
			q->params[i] = params[i] ? rh_strdup(params[i]) : NULL;
	}
	return q;
}

static void db_query_free(struct db_query *q)
{
	if (q->params)
		for (int i = 0; i < q->stmt->nparams; i++)
			rh_free(q->params[i]);
	rh_free(q->params);
	if (q->result)
		PQclear(q->result);
	rh_free(q);
}

/* Answers a query and frees it. */
static void db_query_answer(struct db *db, struct db_query *q, rh_err err, const char *message, bool unknown)
{
	struct db_result res = { .err = err, .pg = q->result, .sqlstate = "", .message = message ? message : "",
				 .unknown = unknown };
	if (err == RH_OK) {
		metric_observe(db->f_latency, db->m_latency, (double)(rh_mono_ns() - q->start_ns) / 1e9);
	} else {
		metric_inc(db->m_errors);
		if (q->result) {
			const char *st = PQresultErrorField(q->result, PG_DIAG_SQLSTATE);
			res.sqlstate = st ? st : "";
			res.message = PQresultErrorMessage(q->result);
		}
	}
	if (q->cb)
		q->cb(q->arg, &res);
	db_query_free(q);
}

static void db_deliver_cb(evutil_socket_t fd, short what, void *arg)
{
	struct db *db = arg;
	struct db_query *q;
	while ((q = STAILQ_FIRST(&db->failed)) != NULL) {
		STAILQ_REMOVE_HEAD(&db->failed, link);
		db_query_answer(db, q, q->fail_err, q->fail_msg, q->fail_unknown);
	}
}

/* Fails a query from the loop, never from inside the call that noticed the
 * failure: a db_query() caller must not see other callbacks run under it. */
static void db_query_fail_later(struct db *db, struct db_query *q, rh_err err, const char *msg, bool unknown)
{
	if (q->result && unknown) {
		PQclear(q->result);
		q->result = NULL;
	}
	q->fail_err = err;
	q->fail_msg = msg;
	q->fail_unknown = unknown;
	STAILQ_INSERT_TAIL(&db->failed, q, link);
	event_active(db->deliver, EV_TIMEOUT, 0);
}

/* True while no connection is up or on its way up: the database is down and
 * queries should fail at once rather than wait out their timeout. */
static bool db_all_down(const struct db *db)
{
	for (int i = 0; i < db->nconns; i++)
		if (db->conns[i].state != DC_DOWN)
			return false;
	return true;
}

void db_query_timeout(struct db *db, const struct db_stmt *stmt, const char *const *params, int64_t timeout_ms,
		      db_cb cb, void *arg)
{
	struct db_query *q = db_query_new(stmt, params, cb, arg);
	q->start_ns = rh_mono_ns();
	q->deadline_ns = q->start_ns + (timeout_ms > 0 ? timeout_ms : db->cfg->query_timeout_ms) * 1000000;
	metric_inc(db->m_queries);
	if (db->closing) {
		db_query_fail_later(db, q, RH_EAGAIN, "shutting down", false);
		return;
	}
	if (db->queued >= db->cfg->queue_max) {
		db_query_fail_later(db, q, RH_EAGAIN, "database queue full", false);
		return;
	}
	if (db_all_down(db)) {
		db_query_fail_later(db, q, RH_EAGAIN, "database unavailable", false);
		return;
	}
	STAILQ_INSERT_TAIL(&db->queue, q, link);
	db->queued++;
	db_pump(db);
}

void db_query(struct db *db, const struct db_stmt *stmt, const char *const *params, db_cb cb, void *arg)
{
	db_query_timeout(db, stmt, params, 0, cb, arg);
}

static void db_sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	struct db *db = arg;
	int64_t now = rh_mono_ns();
	struct db_query *q;
	/* Deadlines differ per query: rebuild the (bounded) queue without the
	 * expired ones, keeping the order of the rest. */
	struct query_list keep = STAILQ_HEAD_INITIALIZER(keep);
	while ((q = STAILQ_FIRST(&db->queue)) != NULL) {
		STAILQ_REMOVE_HEAD(&db->queue, link);
		if (q->deadline_ns > now) {
			STAILQ_INSERT_TAIL(&keep, q, link);
			continue;
		}
		db->queued--;
		metric_inc(db->m_timeouts);
		db_query_fail_later(db, q, RH_EAGAIN, "timed out waiting for a database connection", false);
	}
	STAILQ_CONCAT(&db->queue, &keep);
}

/* Fails every query still waiting. */
static void db_fail_waiting(struct db *db, rh_err err, const char *msg)
{
	struct db_query *q;
	while ((q = STAILQ_FIRST(&db->queue)) != NULL) {
		STAILQ_REMOVE_HEAD(&db->queue, link);
		db->queued--;
		db_query_fail_later(db, q, err, msg, false);
	}
}

/* ------------------------------------------------------------ sending */

static bool db_conn_flush(struct db_conn *c)
{
	int r = PQflush(c->pg);
	if (r < 0) {
		db_conn_broken(c, PQerrorMessage(c->pg));
		return false;
	}
	if (r == 1)
		event_add(c->wev, NULL);
	return true;
}

static void db_fifo_push(struct db_conn *c, struct db_query *q)
{
	STAILQ_INSERT_TAIL(&c->fifo, q, link);
}

/* Sends q as its own transaction (its statement, then a Sync). */
static bool db_conn_send(struct db_conn *c, struct db_query *q)
{
	const struct db_stmt *st = q->stmt;
	if (!c->prepared[st->index]) {
		if (!PQsendPrepare(c->pg, st->name, st->sql, st->nparams, NULL)) {
			db_conn_broken(c, PQerrorMessage(c->pg));
			return false;
		}
		struct db_query *p = db_query_new(NULL, NULL, NULL, NULL);
		p->kind = Q_PREPARE;
		db_fifo_push(c, p);
		c->prepared[st->index] = 1;
	}
	if (!PQsendQueryPrepared(c->pg, st->name, st->nparams, (const char *const *)q->params, NULL, NULL, 0) ||
	    !PQpipelineSync(c->pg)) {
		/* q is not in any list yet: fail it with the connection */
		db_fifo_push(c, q);
		db_conn_broken(c, PQerrorMessage(c->pg));
		return false;
	}
	db_fifo_push(c, q);
	c->inflight++;
	struct db_query *s = db_query_new(NULL, NULL, NULL, NULL);
	s->kind = Q_SYNC;
	db_fifo_push(c, s);
	return true;
}

/* Moves queued queries onto ready connections, least loaded first. */
static void db_pump(struct db *db)
{
	while (!STAILQ_EMPTY(&db->queue)) {
		struct db_conn *best = NULL;
		for (int i = 0; i < db->nconns; i++) {
			struct db_conn *c = &db->conns[i];
			if (c->state != DC_READY || c->inflight >= db->cfg->pipeline_depth)
				continue;
			if (!best || c->inflight < best->inflight)
				best = c;
		}
		if (!best)
			return;
		/* Fill this connection up to the depth, then flush once. */
		while (!STAILQ_EMPTY(&db->queue) && best->inflight < db->cfg->pipeline_depth && best->state == DC_READY) {
			struct db_query *q = STAILQ_FIRST(&db->queue);
			STAILQ_REMOVE_HEAD(&db->queue, link);
			db->queued--;
			if (!db_conn_send(best, q))
				break;
			if (best->inflight * 2 >= db->cfg->pipeline_depth)
				break; /* spread a burst over the pool */
		}
		if (best->state == DC_READY && !db_conn_flush(best))
			continue;
	}
}

/* ------------------------------------------------------------ receiving */

static void db_conn_read_results(struct db_conn *c)
{
	struct db *db = c->db;
	while (!STAILQ_EMPTY(&c->fifo) && !PQisBusy(c->pg)) {
		struct db_query *q = STAILQ_FIRST(&c->fifo);
		PGresult *res = PQgetResult(c->pg);
		if (q->kind == Q_SYNC) {
			if (!res || PQresultStatus(res) != PGRES_PIPELINE_SYNC) {
				if (res)
					PQclear(res);
				db_conn_broken(c, "protocol: expected a pipeline sync");
				return;
			}
			PQclear(res);
			STAILQ_REMOVE_HEAD(&c->fifo, link);
			db_query_free(q);
			continue;
		}
		if (res) {
			if (!q->result)
				q->result = res;
			else
				PQclear(res);
			continue;
		}
		/* NULL: q's results are complete. */
		STAILQ_REMOVE_HEAD(&c->fifo, link);
		if (q->kind == Q_PREPARE) {
			if (q->result && PQresultStatus(q->result) != PGRES_COMMAND_OK) {
				log_error(NULL, "db conn=%d prepare failed: %s", c->index, PQresultErrorMessage(q->result));
				/* the query after it is aborted and reports the failure */
				for (int i = 0; i < db->nstmts; i++)
					c->prepared[i] = 0;
			}
			db_query_free(q);
			continue;
		}
		ExecStatusType st = q->result ? PQresultStatus(q->result) : PGRES_FATAL_ERROR;
		c->inflight--;
		if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
			db_query_answer(db, q, RH_OK, NULL, false);
		else if (st == PGRES_PIPELINE_ABORTED)
			db_query_answer(db, q, RH_EDB, "aborted: an earlier statement in the pipeline failed", false);
		else
			db_query_answer(db, q, RH_EDB, "query failed", false);
		if (c->state != DC_READY)
			return; /* a callback closed the pool */
	}
}

static void db_conn_io_cb(evutil_socket_t fd, short what, void *arg)
{
	struct db_conn *c = arg;
	if (!PQconsumeInput(c->pg)) {
		db_conn_broken(c, PQerrorMessage(c->pg));
		return;
	}
	db_conn_read_results(c);
	/* Notifications (to db_listen's callback: only its channel is listened
	 * to) are parsed out of the input while results are read, so they are
	 * collected after: one that came with a result would otherwise wait for
	 * the socket's next read, which an idle connection may never have. */
	PGnotify *n;
	while (c->pg && (n = PQnotifies(c->pg)) != NULL) {
		if (c->db->on_notify)
			c->db->on_notify(c->db->listen_arg, n->extra);
		PQfreemem(n);
	}
	if (c->state == DC_READY && PQstatus(c->pg) == CONNECTION_BAD) {
		db_conn_broken(c, PQerrorMessage(c->pg));
		return;
	}
	if (c->state == DC_READY)
		db_pump(c->db);
	if (c->db->closing && c->state == DC_READY && c->inflight == 0)
		db_close(c->db, c->db->close_done, c->db->close_arg);
}

static void db_conn_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct db_conn *c = arg;
	if (c->state == DC_READY)
		db_conn_flush(c);
}

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
static void db_conn_broken(struct db_conn *c, const char *why)
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
static void db_listen_start(struct db_conn *c)
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

static void db_conn_connect(struct db_conn *c)
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

/* ------------------------------------------------------------ results */

int db_rows(const struct db_result *r)
{
	return r->pg && r->err == RH_OK ? PQntuples(r->pg) : 0;
}

const char *db_get(const struct db_result *r, int row, int col)
{
	if (!r->pg || row >= PQntuples(r->pg) || col >= PQnfields(r->pg) || PQgetisnull(r->pg, row, col))
		return NULL;
	return PQgetvalue(r->pg, row, col);
}

int64_t db_affected(const struct db_result *r)
{
	if (!r->pg)
		return 0;
	const char *n = PQcmdTuples((PGresult *)r->pg);
	return n && *n ? strtoll(n, NULL, 10) : 0;
}

rh_err db_result_err(const struct db_result *r)
{
	if (r->err == RH_OK)
		return RH_OK;
	if (r->err == RH_EAGAIN || r->unknown || !r->pg || !r->sqlstate[0])
		return RH_EAGAIN;
	if (strncmp(r->sqlstate, "22", 2) == 0)
		return RH_EINVAL;
	if (strncmp(r->sqlstate, "23", 2) == 0)
		return RH_ECONFLICT;
	/* 57P01 admin shutdown, 57P03 cannot connect now, 53 insufficient
	 * resources, 08 connection exceptions, 40001/40P01 serialization and
	 * deadlock: the database, not the query */
	if (strncmp(r->sqlstate, "57", 2) == 0 || strncmp(r->sqlstate, "53", 2) == 0 ||
	    strncmp(r->sqlstate, "08", 2) == 0 || strncmp(r->sqlstate, "40", 2) == 0)
		return RH_EAGAIN;
	return RH_EDB;
}

bool db_is_unique_violation(const struct db_result *r)
{
	return strcmp(r->sqlstate, "23505") == 0;
}

const char *db_error_constraint(const struct db_result *r)
{
	const char *c = r->pg ? PQresultErrorField(r->pg, PG_DIAG_CONSTRAINT_NAME) : NULL;
	return c ? c : "";
}
