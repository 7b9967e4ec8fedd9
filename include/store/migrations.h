/* Schema migrations: sql/NNN_name.sql, compiled into the binary in order
 * (build-aux/embed) and applied exactly once each, recorded with a checksum
 * in schema_migrations. A session advisory lock serialises daemons that start
 * together; each file runs as one implicit transaction (all or nothing). */
#ifndef RH_STORE_MIGRATIONS_H
#define RH_STORE_MIGRATIONS_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "core/err.h"

struct migration {
	int version;
	const char *name;
	const char *sql;
};

extern const struct migration rh_migrations[];
extern const int rh_migrations_count;

int migrations_latest(void);

struct event_base;
struct migrator;

/* err RH_OK: schema at `version` (== migrations_latest() unless the database
 * is newer than the binary). Otherwise msg says what failed. */
typedef void (*migrate_done_cb)(void *arg, rh_err err, int version, const char *msg);

/* Runs on an established non-blocking connection, which it borrows until the
 * callback (the owner must not watch its socket meanwhile). apply=false only
 * checks that nothing is pending. */
struct migrator *migrator_start(struct event_base *base, PGconn *pg, bool apply, migrate_done_cb cb, void *arg);
/* Stops without calling back (the owner is dropping the connection). */
void migrator_cancel(struct migrator *m);

/* Blocking variant for `ridehaild migrate`: connects, runs, prints progress. */
int migrate_cli(const char *conninfo, bool status_only);

#endif
