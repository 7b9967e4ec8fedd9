#include "store/migrations.h"

#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/strbuf.h"

/* Arbitrary, fixed: every ridehail daemon on a database uses this lock. */
#define MIGRATE_LOCK_KEY "7243001"

int migrations_latest(void)
{
	return rh_migrations_count ? rh_migrations[rh_migrations_count - 1].version : 0;
}

static void migrate_checksum_hex(const char *s, char out[17])
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a 64 */
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	snprintf(out, 17, "%016" PRIx64, h);
}

enum migrate_step {
	ST_LOCK,
	ST_TABLE,
	ST_READ,      /* the migrations recorded */
	ST_APPLY,     /* one migration, with its record */
	ST_FN_READ,   /* the function files recorded */
	ST_FN_BEGIN,  /* the function files go in one transaction: */
	ST_FN_APPLY,  /* one file */
	ST_FN_RECORD, /* their records, and the commit */
	ST_UNLOCK,
	ST_DONE
};

/* What a run found and did, for `ridehaild migrate` to print. */
struct migrate_report {
	int db_version;
	bool migrations_pending; /* apply=false and a migration is pending */
	bool fn_pending;         /* apply=false and function files differ */
	bool fn_newer;           /* functions left alone: the database is newer */
	int fn_current;          /* function files recorded as this binary has them */
	int fn_applied;          /* function files applied by this run */
	char fn_stale[256];      /* which differ (names, comma-separated) */
};

struct migrator {
	struct event_base *base;
	PGconn *pg;
	struct event *ev;
	bool apply;
	migrate_done_cb cb;
	void *arg;
	enum migrate_step step;
	int next;          /* index into rh_migrations / rh_function_files of the one being applied */
	int db_version;    /* highest version recorded in the database */
	char *applied_sums; /* per embedded migration: 0 pending, 1 applied */
	bool failed;        /* apply=false and something is pending */
	char msg[512];      /* error of the current step */
	char pending[512];  /* why failed */
	PGresult *last;    /* result of the current step (ST_READ, ST_FN_READ) */
	struct migrate_report rep;
	struct migrate_report *report; /* where to copy rep at the end, or NULL */
};

static void migrator_finish(struct migrator *m, rh_err err)
{
	migrate_done_cb cb = m->cb;
	void *arg = m->arg;
	int version = m->db_version;
	char msg[512];
	snprintf(msg, sizeof msg, "%s", m->msg);
	if (m->report) {
		m->rep.db_version = m->db_version;
		*m->report = m->rep;
	}
	migrator_cancel(m);
	cb(arg, err, version, msg);
}

static bool migrator_send(struct migrator *m, const char *sql)
{
	if (!PQsendQuery(m->pg, sql)) {
		snprintf(m->msg, sizeof m->msg, "send failed: %s", PQerrorMessage(m->pg));
		return false;
	}
	int f;
	while ((f = PQflush(m->pg)) == 1)
		; /* migration texts are small; the kernel buffer takes them */
	if (f < 0) {
		snprintf(m->msg, sizeof m->msg, "flush failed: %s", PQerrorMessage(m->pg));
		return false;
	}
	return true;
}

/* The records of every function file, and the commit of their transaction. */
static bool migrator_send_fn_records(struct migrator *m)
{
	struct strbuf sb;
	sb_init(&sb, 1u << 20);
	sb_puts(&sb, "DELETE FROM schema_functions;\n");
	for (int i = 0; i < rh_function_files_count; i++) {
		char sum[17];
		migrate_checksum_hex(rh_function_files[i].sql, sum);
		sb_printf(&sb, "%s ('%s', '%s', %d)",
			  i ? "," : "INSERT INTO schema_functions (name, checksum, schema_version) VALUES", rh_function_files[i].name,
			  sum, m->db_version);
	}
	sb_puts(&sb, rh_function_files_count ? ";\nCOMMIT" : "COMMIT");
	bool ok = migrator_send(m, sb.buf);
	sb_fini(&sb);
	return ok;
}

/* Sends the SQL for the current step; false (with msg) on failure. */
static bool migrator_begin_step(struct migrator *m)
{
	switch (m->step) {
	case ST_LOCK:
		return migrator_send(m, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")");
	case ST_TABLE:
		return migrator_send(m, "SET client_min_messages = warning;"
					"CREATE TABLE IF NOT EXISTS schema_migrations ("
					" version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
					" applied_at timestamptz NOT NULL DEFAULT now());"
					"CREATE TABLE IF NOT EXISTS schema_functions ("
					" name text PRIMARY KEY, checksum text NOT NULL, schema_version integer NOT NULL,"
					" applied_at timestamptz NOT NULL DEFAULT now())");
	case ST_READ:
		return migrator_send(m, "SELECT version, checksum FROM schema_migrations ORDER BY version");
	case ST_APPLY: {
		const struct migration *mg = &rh_migrations[m->next];
		char sum[17];
		struct strbuf sb;
		migrate_checksum_hex(mg->sql, sum);
		sb_init(&sb, 64u << 20);
		/* One simple-query string = one implicit transaction: the file and
		 * its record commit together or not at all. */
		sb_puts(&sb, mg->sql);
		sb_printf(&sb, "\n;\nINSERT INTO schema_migrations (version, name, checksum) VALUES (%d, '%s', '%s')",
			  mg->version, mg->name, sum);
		log_info(NULL, "applying migration %03d_%s", mg->version, mg->name);
		bool ok = migrator_send(m, sb.buf);
		sb_fini(&sb);
		return ok;
	}
	case ST_FN_READ:
		return migrator_send(m, "SELECT name, checksum, schema_version FROM schema_functions");
	case ST_FN_BEGIN:
		log_info(NULL, "applying the %d function files (differing: %s)", rh_function_files_count,
			 m->rep.fn_stale[0] ? m->rep.fn_stale : "records only");
		return migrator_send(m, "BEGIN");
	case ST_FN_APPLY:
		return migrator_send(m, rh_function_files[m->next].sql);
	case ST_FN_RECORD:
		return migrator_send_fn_records(m);
	case ST_UNLOCK:
		return migrator_send(m, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")");
	case ST_DONE:
		break;
	}
	return true;
}

/* Whether the database recorded a checksum the migration's text stands for:
 * its own, or one of an earlier text it replaced. */
static bool migrate_sum_matches(const struct migration *mg, const char *sum)
{
	char want[17];
	migrate_checksum_hex(mg->sql, want);
	if (strcmp(want, sum) == 0)
		return true;
	for (const char *const *w = mg->was; w && *w; w++)
		if (strcmp(*w, sum) == 0)
			return true;
	return false;
}

/* Compares what the database recorded with what the binary carries. */
static bool migrator_check_read(struct migrator *m)
{
	int rows = PQntuples(m->last);
	m->db_version = 0;
	for (int r = 0; r < rows; r++) {
		int v = atoi(PQgetvalue(m->last, r, 0));
		const char *sum = PQgetvalue(m->last, r, 1);
		if (v > m->db_version)
			m->db_version = v;
		for (int i = 0; i < rh_migrations_count; i++) {
			if (rh_migrations[i].version != v)
				continue;
			if (!migrate_sum_matches(&rh_migrations[i], sum)) {
				char want[17];
				migrate_checksum_hex(rh_migrations[i].sql, want);
				snprintf(m->msg, sizeof m->msg,
					 "migration %03d_%s was changed after it was applied (checksum %s, file %s)",
					 v, rh_migrations[i].name, sum, want);
				return false;
			}
			m->applied_sums[i] = 1;
		}
	}
	if (m->db_version > migrations_latest())
		log_warn(NULL, "database schema version %d is newer than this binary's %d", m->db_version,
			 migrations_latest());
	return true;
}

/* Picks the next pending migration, or moves on to the functions. */
static void migrator_advance_apply(struct migrator *m)
{
	while (m->next < rh_migrations_count && m->applied_sums[m->next])
		m->next++;
	if (m->next >= rh_migrations_count) {
		/* A newer binary migrated this database: its functions stay. */
		m->rep.fn_newer = m->db_version > migrations_latest();
		m->step = m->rep.fn_newer ? ST_UNLOCK : ST_FN_READ;
		return;
	}
	if (!m->apply) {
		snprintf(m->pending, sizeof m->pending,
			 "schema at version %d, this binary needs %d: run `ridehaild migrate`", m->db_version,
			 migrations_latest());
		m->failed = true;
		m->rep.migrations_pending = true;
		m->step = ST_UNLOCK;
		return;
	}
	m->step = ST_APPLY;
}

static void migrator_note_stale(struct migrator *m, const char *name)
{
	char *s = m->rep.fn_stale;
	size_t n = strlen(s);
	if (n + strlen(name) + 6 >= sizeof m->rep.fn_stale) {
		if (!strstr(s, "..."))
			snprintf(s + n, sizeof m->rep.fn_stale - n, ", ...");
		return;
	}
	snprintf(s + n, sizeof m->rep.fn_stale - n, "%s%s", n ? ", " : "", name);
}

/* Compares the function files the database recorded with the binary's: a
 * file is current when its text and the schema version it was applied on
 * are both the same. Then: nothing to do, apply them all, or (apply=false)
 * report them pending. */
static void migrator_check_functions(struct migrator *m)
{
	int rows = PQntuples(m->last), known = 0;
	m->rep.fn_current = 0;
	m->rep.fn_stale[0] = '\0';
	for (int i = 0; i < rh_function_files_count; i++) {
		const struct function_file *f = &rh_function_files[i];
		char want[17];
		migrate_checksum_hex(f->sql, want);
		bool current = false;
		for (int r = 0; r < rows; r++) {
			if (strcmp(PQgetvalue(m->last, r, 0), f->name) != 0)
				continue;
			known++;
			current = strcmp(PQgetvalue(m->last, r, 1), want) == 0 &&
				  atoi(PQgetvalue(m->last, r, 2)) == m->db_version;
		}
		if (current)
			m->rep.fn_current++;
		else
			migrator_note_stale(m, f->name);
	}
	if (m->rep.fn_current == 0 && rh_function_files_count > 1)
		snprintf(m->rep.fn_stale, sizeof m->rep.fn_stale, "all");
	/* (rows > known: records of files this binary does not carry) */
	if (m->rep.fn_current == rh_function_files_count && rows == known) {
		m->step = ST_UNLOCK;
	} else if (!m->apply) {
		snprintf(m->pending, sizeof m->pending,
			 "function files differ from this binary's (%s): run `ridehaild migrate`",
			 m->rep.fn_stale[0] ? m->rep.fn_stale : "records of files it does not carry");
		m->failed = true;
		m->rep.fn_pending = true;
		m->step = ST_UNLOCK;
	} else {
		m->step = ST_FN_BEGIN;
	}
}

/* One step's results are all in; decide what comes next. */
static bool migrator_step_done(struct migrator *m)
{
	switch (m->step) {
	case ST_LOCK:
		m->step = ST_TABLE;
		break;
	case ST_TABLE:
		m->step = ST_READ;
		break;
	case ST_READ:
		if (!migrator_check_read(m))
			return false;
		m->next = 0;
		migrator_advance_apply(m);
		break;
	case ST_APPLY:
		m->applied_sums[m->next] = 1;
		if (rh_migrations[m->next].version > m->db_version)
			m->db_version = rh_migrations[m->next].version;
		migrator_advance_apply(m);
		break;
	case ST_FN_READ:
		migrator_check_functions(m);
		break;
	case ST_FN_BEGIN:
		m->next = 0;
		m->step = rh_function_files_count ? ST_FN_APPLY : ST_FN_RECORD;
		break;
	case ST_FN_APPLY:
		if (++m->next >= rh_function_files_count)
			m->step = ST_FN_RECORD;
		break;
	case ST_FN_RECORD:
		m->rep.fn_applied = rh_function_files_count;
		m->rep.fn_current = rh_function_files_count;
		m->step = ST_UNLOCK;
		break;
	case ST_UNLOCK:
		m->step = ST_DONE;
		break;
	case ST_DONE:
		break;
	}
	return true;
}

static void migrator_io(evutil_socket_t fd, short what, void *arg)
{
	struct migrator *m = arg;
	if (!PQconsumeInput(m->pg)) {
		snprintf(m->msg, sizeof m->msg, "connection lost: %s", PQerrorMessage(m->pg));
		migrator_finish(m, RH_EDB);
		return;
	}
	while (!PQisBusy(m->pg)) {
		PGresult *res = PQgetResult(m->pg);
		if (res) {
			ExecStatusType st = PQresultStatus(res);
			if (st == PGRES_FATAL_ERROR && !m->msg[0]) {
				const char *e = PQresultErrorMessage(res);
				if (m->step == ST_APPLY)
					snprintf(m->msg, sizeof m->msg, "migration %03d_%s failed: %s",
						 rh_migrations[m->next].version, rh_migrations[m->next].name, e);
				else if (m->step == ST_FN_APPLY)
					snprintf(m->msg, sizeof m->msg, "function file %s failed: %s",
						 rh_function_files[m->next].name, e);
				else
					snprintf(m->msg, sizeof m->msg, "%s", e);
			}
			if ((m->step == ST_READ || m->step == ST_FN_READ) && st == PGRES_TUPLES_OK) {
				PQclear(m->last);
				m->last = res;
			} else {
				PQclear(res);
			}
			continue;
		}
		/* NULL: this step's results are complete. */
		if (m->msg[0]) {
			size_t n = strlen(m->msg);
			while (n && (m->msg[n - 1] == '\n' || m->msg[n - 1] == ' '))
				m->msg[--n] = '\0';
			migrator_finish(m, RH_EDB);
			return;
		}
		if (!migrator_step_done(m)) {
			migrator_finish(m, RH_EDB);
			return;
		}
		if (m->step == ST_DONE) {
			if (m->failed) {
				snprintf(m->msg, sizeof m->msg, "%s", m->pending);
				migrator_finish(m, RH_EINVAL);
			} else {
				migrator_finish(m, RH_OK);
			}
			return;
		}
		if (!migrator_begin_step(m)) {
			migrator_finish(m, RH_EDB);
			return;
		}
	}
}

static struct migrator *migrator_new(struct event_base *base, PGconn *pg, bool apply, migrate_done_cb cb, void *arg,
				     struct migrate_report *report)
{
	struct migrator *m = RH_NEW(struct migrator);
	m->report = report;
	m->base = base;
	m->pg = pg;
	m->apply = apply;
	m->cb = cb;
	m->arg = arg;
	m->applied_sums = rh_calloc((size_t)rh_migrations_count + 1, 1);
	m->step = ST_LOCK;
	m->ev = event_new(base, PQsocket(pg), EV_READ | EV_PERSIST, migrator_io, m);
	event_add(m->ev, NULL);
	if (!migrator_begin_step(m)) {
		/* Report from the loop, never from inside the call. */
		event_active(m->ev, EV_READ, 0);
	}
	return m;
}

struct migrator *migrator_start(struct event_base *base, PGconn *pg, bool apply, migrate_done_cb cb, void *arg)
{
	return migrator_new(base, pg, apply, cb, arg, NULL);
}

void migrator_cancel(struct migrator *m)
{
	if (!m)
		return;
	event_free(m->ev);
	PQclear(m->last);
	rh_free(m->applied_sums);
	rh_free(m);
}

/* ------------------------------------------------------------ CLI */

struct migrate_cli_state {
	int rc;
	int version;
	bool done;
};

static void migrate_cli_done(void *arg, rh_err err, int version, const char *msg)
{
	struct migrate_cli_state *st = arg;
	st->done = true;
	st->version = version;
	if (err == RH_OK) {
		st->rc = 0;
	} else {
		fprintf(stderr, "ridehaild migrate: %s\n", msg);
		st->rc = 1;
	}
}

/* What a run left, in the words of `ridehaild migrate [--status]`. */
static void migrate_cli_print(const struct migrate_report *r, int rc)
{
	if (r->migrations_pending)
		printf("schema at version %d; this binary needs %d\n", r->db_version, migrations_latest());
	else
		printf("schema at version %d (this binary: %d, %d migrations)\n", r->db_version, migrations_latest(),
		       rh_migrations_count);
	if (r->fn_newer)
		printf("functions: as the newer binary that migrated the database left them\n");
	else if (r->fn_pending)
		printf("functions: %d of %d files differ from this binary's (%s)\n",
		       rh_function_files_count - r->fn_current, rh_function_files_count,
		       r->fn_stale[0] ? r->fn_stale : "records of files it does not carry");
	else if (r->fn_applied)
		printf("functions: %d files applied (differing: %s)\n", r->fn_applied,
		       r->fn_stale[0] ? r->fn_stale : "records only");
	else if (rc == 0)
		printf("functions: %d files, as this binary has them\n", r->fn_current);
}

int migrate_cli(const char *conninfo, bool status_only)
{
	PGconn *pg = PQconnectdb(conninfo);
	if (PQstatus(pg) != CONNECTION_OK) {
		fprintf(stderr, "ridehaild migrate: cannot connect: %s", PQerrorMessage(pg));
		PQfinish(pg);
		return 1;
	}
	PQsetnonblocking(pg, 1);
	struct event_base *base = event_base_new();
	struct migrate_cli_state st = { .rc = 1 };
	struct migrate_report rep = { 0 };
	struct migrator *m = migrator_new(base, pg, !status_only, migrate_cli_done, &st, &rep);
	(void)m;
	while (!st.done && event_base_loop(base, EVLOOP_ONCE) == 0)
		;
	event_base_free(base);
	PQfinish(pg);
	if (st.rc == 0 || status_only)
		migrate_cli_print(&rep, st.rc);
	return st.rc;
}
