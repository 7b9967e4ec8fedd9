/* The schema and the functions over it, compiled into the binary
 * (build-aux/embed) and brought to what the binary carries when the daemon
 * first reaches the database, or by `ridehaild migrate`:
 *
 *  - migrations, sql/NNN_name.sql: tables, indexes, domains, constraints,
 *    types and data moves, applied exactly once each in version order and
 *    recorded with a checksum in schema_migrations; a recorded migration
 *    whose text changed is refused, unless the binary's text names the
 *    recorded checksum as one it stands for ("-- was-checksum:" lines);
 *  - function files, sql/functions/NN_name.sql: every function body, once,
 *    as CREATE OR REPLACE, applied after the migrations in name order and
 *    recorded with a checksum and the schema version in schema_functions.
 *    They are applied again, all of them in one transaction, whenever the
 *    binary's text of any differs from what is recorded or a migration ran
 *    since: a database at a newer schema than the binary keeps the newer
 *    binary's functions.
 *
 * A session advisory lock serialises daemons that start together; each
 * migration runs as one implicit transaction (all or nothing). */
#ifndef RH_STORE_MIGRATIONS_H
#define RH_STORE_MIGRATIONS_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "core/err.h"

struct migration {
	int version;
	const char *name;
	const char *sql;
	const char *const *was; /* NULL-terminated checksums of earlier texts it stands for, or NULL */
};

struct function_file {
	const char *name; /* the file name without ".sql" */
	const char *sql;  /* its text, placeholders expanded */
};

extern const struct migration rh_migrations[];
extern const int rh_migrations_count;
extern const struct function_file rh_function_files[];
extern const int rh_function_files_count;

int migrations_latest(void);

struct event_base;
struct migrator;

/* err RH_OK: schema at `version` (== migrations_latest() unless the database
 * is newer than the binary) and the functions as the binary has them (or as
 * the newer binary left them). Otherwise msg says what failed, or (apply =
 * false, RH_EINVAL) what is pending. */
typedef void (*migrate_done_cb)(void *arg, rh_err err, int version, const char *msg);

/* Runs on an established non-blocking connection, which it borrows until the
 * callback (the owner must not watch its socket meanwhile). apply=false only
 * checks that nothing is pending (no migration, no function file). */
struct migrator *migrator_start(struct event_base *base, PGconn *pg, bool apply, migrate_done_cb cb, void *arg);
/* Stops without calling back (the owner is dropping the connection). */
void migrator_cancel(struct migrator *m);

/* Blocking variant for `ridehaild migrate`: connects, runs, prints the
 * schema version and the function files' state (status_only: changes
 * nothing; exit status 1 when something is pending). */
int migrate_cli(const char *conninfo, bool status_only);

#endif
