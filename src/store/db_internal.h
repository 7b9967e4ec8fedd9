/* What store/db's files share: db.c (queries, the pipeline, results) and
 * db_conn.c (the pool's connections and its life). The structs, and the
 * functions one calls in the other. */
#ifndef RH_DB_INTERNAL_H
#define RH_DB_INTERNAL_H

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

/* db.c */
struct db_query *db_query_new(const struct db_stmt *stmt, const char *const *params, db_cb cb, void *arg);
void db_query_free(struct db_query *q);
void db_deliver_cb(evutil_socket_t fd, short what, void *arg);
void db_query_fail_later(struct db *db, struct db_query *q, rh_err err, const char *msg, bool unknown);
bool db_all_down(const struct db *db);
void db_sweep_cb(evutil_socket_t fd, short what, void *arg);
void db_fail_waiting(struct db *db, rh_err err, const char *msg);
bool db_conn_flush(struct db_conn *c);
bool db_conn_send(struct db_conn *c, struct db_query *q);
void db_pump(struct db *db);
void db_conn_io_cb(evutil_socket_t fd, short what, void *arg);
void db_conn_write_cb(evutil_socket_t fd, short what, void *arg);

/* db_conn.c */
void db_conn_broken(struct db_conn *c, const char *why);
void db_listen_start(struct db_conn *c);
void db_conn_connect(struct db_conn *c);

#endif
