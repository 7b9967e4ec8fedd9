/* The pool's queries: queueing, timeouts, pipelined sending on the ready
 * connections, the results read back and answered once each (store/db.h);
 * the connections themselves are in db_conn.c. */
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

static void db_conn_read_results(struct db_conn *c);

/* ------------------------------------------------------------ queries */

struct db_query *db_query_new(const struct db_stmt *stmt, const char *const *params, db_cb cb, void *arg)
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

void db_query_free(struct db_query *q)
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

void db_deliver_cb(evutil_socket_t fd, short what, void *arg)
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
void db_query_fail_later(struct db *db, struct db_query *q, rh_err err, const char *msg, bool unknown)
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
bool db_all_down(const struct db *db)
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

void db_sweep_cb(evutil_socket_t fd, short what, void *arg)
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
void db_fail_waiting(struct db *db, rh_err err, const char *msg)
{
	struct db_query *q;
	while ((q = STAILQ_FIRST(&db->queue)) != NULL) {
		STAILQ_REMOVE_HEAD(&db->queue, link);
		db->queued--;
		db_query_fail_later(db, q, err, msg, false);
	}
}

/* ------------------------------------------------------------ sending */

bool db_conn_flush(struct db_conn *c)
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
bool db_conn_send(struct db_conn *c, struct db_query *q)
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
void db_pump(struct db *db)
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

void db_conn_io_cb(evutil_socket_t fd, short what, void *arg)
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

void db_conn_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct db_conn *c = arg;
	if (c->state == DC_READY)
		db_conn_flush(c);
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
