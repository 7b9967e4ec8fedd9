/* PostgreSQL through libpq's asynchronous API, on the event loop.
 *
 * A small pool of non-blocking connections in pipeline mode: each connection
 * carries up to database.pipeline_depth queries at once, each query its own
 * implicit transaction (one Sync per query), so one failing query never
 * aborts another. Statements are declared once (struct db_stmt) and prepared
 * lazily on each connection. Connections that fail are reconnected with
 * exponential backoff; pending migrations are applied by the first
 * connection before any query runs (store/migrate.h).
 *
 * Contract: db_query() always calls its callback exactly once, and never
 * from inside db_query() itself (always from the loop), so callers need not
 * guard against re-entrancy. The PGresult belongs to the pool and is cleared
 * when the callback returns.
 *
 * Each query is its own transaction (one Sync each). Work that should commit
 * together is one set-based statement (trip_requests(), trip_transitions(),
 * the matcher's reservations: arrays in, a row per item out).
 *
 * A query lost with its connection reports RH_EDB with db_result.unknown set:
 * the statement may or may not have committed. Callers whose writes are not
 * idempotent must read back before retrying. */
#ifndef RH_STORE_DB_H
#define RH_STORE_DB_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/err.h"

struct event_base;
struct metrics;
struct database_cfg;
struct db;

struct db_stmt {
	const char *name;  /* unique; also the prepared statement name */
	const char *sql;   /* one statement, $1..$n */
	int nparams;
	int index;         /* set by db_register */
};

struct db_result {
	rh_err err;           /* RH_OK, RH_EDB (server error or lost connection), RH_EAGAIN (no connection in time / queue full / shutting down) */
	const PGresult *pg;   /* rows on RH_OK; the error result on a server error; else NULL */
	const char *sqlstate; /* "23505"... on a server error, else "" */
	const char *message;  /* human-readable error, "" on success */
	bool unknown;         /* lost in flight: it may have committed */
};

typedef void (*db_cb)(void *arg, const struct db_result *res);

struct db *db_new(struct event_base *base, const struct database_cfg *cfg, struct metrics *m);
/* Declare a statement; call before db_start. The struct must outlive the pool. */
void db_register(struct db *db, struct db_stmt *stmt);
/* Begin connecting (the database may well be down: we keep trying). */
void db_start(struct db *db);

/* Queue a query; params has stmt->nparams entries (NULL = SQL NULL) and is
 * copied. timeout_ms 0 means database.query_timeout. */
void db_query(struct db *db, const struct db_stmt *stmt, const char *const *params, db_cb cb, void *arg);
void db_query_timeout(struct db *db, const struct db_stmt *stmt, const char *const *params, int64_t timeout_ms,
		      db_cb cb, void *arg);

/* Notifications (LISTEN/NOTIFY) on one channel: one connection of the pool
 * listens (and carries queries as the others do). on_notify gets each
 * payload, from the loop; on_listen runs each time listening (re)starts --
 * at start and after that connection was lost, when notifications sent
 * meanwhile were missed and the caller should reload what they announce.
 * Call before db_start; one channel per pool. */
void db_listen(struct db *db, const char *channel, void (*on_notify)(void *arg, const char *payload),
	       void (*on_listen)(void *arg), void *arg);

/* Readiness: a connection is up and the schema is current. When not ready,
 * why[] says why ("connecting: connection refused", "migration 3 failed: ..."). */
bool db_is_ready(const struct db *db, char *why, size_t whylen);
/* Whether a connection has been ready since db_start: a pool that is not
 * ready now has lost its database rather than not found it yet. */
bool db_was_ready(const struct db *db);

/* Shutdown: fail queued queries (RH_EAGAIN), let in-flight ones finish, then
 * close every connection; `done` runs once all in-flight queries are answered
 * (at once if none). */
void db_close(struct db *db, void (*done)(void *arg), void *arg);
void db_free(struct db *db);

/* Result helpers (text format). */
int db_rows(const struct db_result *r);
/* NULL for SQL NULL (or out of range). */
const char *db_get(const struct db_result *r, int row, int col);
/* Rows affected by INSERT/UPDATE/DELETE. */
int64_t db_affected(const struct db_result *r);
bool db_is_unique_violation(const struct db_result *r);
/* What a failed query means to the caller, the one classification every
 * module uses: RH_EAGAIN the database did not answer (down, overloaded, the
 * connection lost: retrying is safe for idempotent work), RH_EINVAL it
 * refused a value (SQLSTATE class 22: an input of the wrong shape),
 * RH_ECONFLICT a constraint held (class 23), RH_EDB anything else (a bug:
 * log it). RH_OK for a success. */
rh_err db_result_err(const struct db_result *r);
/* The constraint or index a server error names ("" if none). */
const char *db_error_constraint(const struct db_result *r);

#endif
