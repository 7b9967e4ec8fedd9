/* Reservations: dispatch asks for a driver before it offers them a ride,
 * and frees them when the offer ends without a match. A driver is reserved
 * with an optimistic update on (status, version) in PostgreSQL; zero rows:
 * someone else has them. Presence marks them OFFERED in memory at once, so
 * that no other search picks them meanwhile, and keeps memory and the
 * database in step whatever the database answers: a reservation refused or
 * lost is followed by a read of where the driver really stands, asked again
 * until the database answers (a driver must never stay OFFERED in memory
 * while the database says available: they would get no offer again). A
 * reservation whose answer was lost may have committed all the same: dispatch
 * was told it failed, so nobody offers that driver anything, and the read
 * that finds them OFFERED at the version it would have made frees them
 * (a driver must never stay OFFERED in the database without an offer
 * either). Releases are asked again until the database answers too. Retries
 * wait at most PRESENCE_RETRY_MAX_MS, which bounds how long a driver stays
 * out of dispatch after the database is back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/strbuf.h"
#include "core/timer.h"
#include "presence_internal.h"
#include "store/db.h"

#define PRESENCE_RETRY_MIN_MS 250
#define PRESENCE_RETRY_MAX_MS 2000

/* Reserves drivers on (status, version), a batch at once: $1 the drivers,
 * $2 their versions as presence knows them; a row (n, version) for each one
 * reserved, n its place in the arrays (from 1). A driver named twice is
 * reserved once: the other gets no row, as if someone else had won.
 *
 * Its commit does not wait for the disk (synchronous_commit off for this
 * transaction alone). A reservation is atomic and seen by every other
 * transaction at once, as before; only its durability is deferred, to the
 * WAL writer (within wal_writer_delay) or to the next commit that waits,
 * which flushes it too. What a crash of the database could lose is what a
 * restart releases anyway (reserved-but-unanswered drivers go back to
 * available), and nothing durable depends on it unflushed: the MATCHED
 * that uses it checks the driver's version and waits for its own flush,
 * which covers the reservation's WAL before it. */
static struct db_stmt presence_st_reserve = {
	"match_reserve",
	"WITH async AS (SELECT set_config('synchronous_commit', 'off', true))"
	" UPDATE drivers d SET status = 'offered', version = d.version + 1, updated_at = now()"
	" FROM async, unnest($1::uuid[], $2::bigint[]) WITH ORDINALITY AS u (id, v, n)"
	" WHERE d.id = u.id AND d.status = 'available' AND d.version = u.v AND NOT d.disabled"
	" RETURNING u.n, d.version",
	2,
};
/* Frees a driver we reserved (only if still reserved at our version) and
 * records why the offer ended as a match.rejected event of the trip. */
static struct db_stmt presence_st_release = {
	"match_release",
	"WITH d AS (UPDATE drivers SET status = 'available', version = version + 1, updated_at = now()"
	" WHERE id = $1 AND status = 'offered' AND version = $2 RETURNING version)"
	" SELECT d.version, trip_emit(t, 'match.rejected', jsonb_build_object('trip_id', t.id, 'driver_id', $1::uuid,"
	" 'reason', $4::text)) FROM d JOIN trips t ON t.id = $3::uuid",
	4,
};
static struct db_stmt presence_st_driver_state = {
	"match_driver_state", "SELECT status, version FROM drivers WHERE id = $1", 1,
};
/* Frees a driver left OFFERED by a reservation whose answer was lost (it
 * committed; dispatch was told it failed): only at the version that
 * reservation made. */
static struct db_stmt presence_st_release_stray = {
	"presence_release_stray",
	"UPDATE drivers SET status = 'available', version = version + 1, updated_at = now()"
	" WHERE id = $1 AND status = 'offered' AND version = $2 RETURNING version",
	2,
};
static struct db_stmt presence_st_release_all = {
	"match_release_all",
	"UPDATE drivers SET status = 'available', version = version + 1, updated_at = now()"
	" WHERE status = 'offered' AND NOT (id = ANY ($1::uuid[]))"
	/* a shared trip's driver stays reserved for the trip's life (src/share) */
	" AND NOT EXISTS (SELECT 1 FROM share_trips s WHERE s.driver_id = drivers.id AND s.state = 'OPEN')"
	" RETURNING id, version",
	1,
};

/* Work that waits for the database to come back (a read of a driver's
 * status, a release): kept in a list so that shutdown frees what is still
 * waiting. */
struct presence_retry {
	LIST_ENTRY(presence_retry) link;
	struct rh_timer *timer;
};
LIST_HEAD(presence_retries, presence_retry);

struct presence_reservation {
	struct uuid driver;
	int64_t version; /* as presence knew it; once reserved, the new one */
	bool won;
	presence_reserved_fn cb;
	void *arg;
};

/* Reservations waiting for the one in flight: they go together as the next
 * batch (one statement, one commit). */
struct reserve_queue {
	struct presence *p;
	struct presence_reservation **pending;
	int npending, cap;
	bool inflight;
	struct rh_timer *flush; /* the next loop turn */
	struct presence_retries retries;
};

static void presence_retry_start(struct presence *p, struct presence_retry *w, rh_timer_fn fn, void *arg)
{
	w->timer = rh_timer_new(p->deps.timers, fn, arg);
	LIST_INSERT_HEAD(&p->reserve->retries, w, link);
}

static void presence_retry_end(struct presence_retry *w)
{
	LIST_REMOVE(w, link);
	rh_timer_free(w->timer);
}

/* The database did not answer: ask again after *wait_ms, which grows from
 * PRESENCE_RETRY_MIN_MS to PRESENCE_RETRY_MAX_MS. */
static void presence_retry_later(struct presence *p, struct presence_retry *w, int64_t *wait_ms)
{
	*wait_ms = *wait_ms ? *wait_ms * 2 : PRESENCE_RETRY_MIN_MS;
	if (*wait_ms > PRESENCE_RETRY_MAX_MS)
		*wait_ms = PRESENCE_RETRY_MAX_MS;
	rh_timer_at(w->timer, presence_now(p) + *wait_ms);
}

/* ------------------------------------------------------------ where they stand */

struct presence_ask {
	struct presence_retry retry; /* first: freed through it at shutdown */
	struct presence *p;
	struct uuid driver;
	int64_t wait_ms;
	int64_t stray_version; /* > 0: OFFERED at this version is a lost reservation's: free them */
	bool freeing;          /* the stray reservation's release is at the database */
};

static void presence_ask_send(struct presence_ask *a);

static void presence_ask_retry(void *arg, int64_t now)
{
	(void)now;
	presence_ask_send(arg);
}

static void presence_ask_end(struct presence_ask *a, struct driver_rec *r)
{
	if (r)
		r->unsure = false;
	presence_retry_end(&a->retry);
	rh_free(a);
}

static void presence_ask_read(void *arg, const struct db_result *res)
{
	struct presence_ask *a = arg;
	struct presence *p = a->p;
	struct driver_rec *r = presence_rec_find(p, &a->driver);
	if (!r) {
		presence_ask_end(a, NULL); /* forgotten meanwhile: the next session reads the row */
		return;
	}
	if (res->err != RH_OK) {
		presence_retry_later(p, &a->retry, &a->wait_ms); /* the database is away: ask again */
		return;
	}
	if (a->freeing) {
		/* the stray reservation released (a row), or someone moved the
		 * driver meanwhile (none): read where they stand */
		a->freeing = false;
		a->stray_version = 0;
		if (db_rows(res) == 1) {
			presence_rec_set_status(p, r, DRIVER_AVAILABLE, atoll(db_get(res, 0, 0)), presence_now(p));
			presence_ask_end(a, r);
		} else {
			presence_ask_send(a);
		}
		return;
	}
	int st = db_rows(res) == 1 ? driver_status_parse(db_get(res, 0, 0)) : -1;
	int64_t version = st >= 0 ? atoll(db_get(res, 0, 1)) : 0;
	if (st == DRIVER_OFFERED && a->stray_version > 0 && version == a->stray_version) {
		a->freeing = true;
		a->wait_ms = 0;
		presence_ask_send(a);
		return;
	}
	if (st >= 0)
		presence_rec_set_status(p, r, (enum driver_status)st, version, presence_now(p));
	presence_ask_end(a, r);
}

static void presence_ask_send(struct presence_ask *a)
{
	char d[37], v[24];
	uuid_format(&a->driver, d);
	snprintf(v, sizeof v, "%lld", (long long)a->stray_version);
	const char *params[] = { d, v };
	db_query(a->p->deps.db, a->freeing ? &presence_st_release_stray : &presence_st_driver_state, params,
		 presence_ask_read, a);
}

/* Learns from the database where the driver stands (after a reservation
 * someone else won, or one the database did not answer: stray_version is
 * then the version that reservation would have made, 0 otherwise). */
static void presence_ask_status(struct presence *p, struct driver_rec *r, int64_t stray_version)
{
	if (r->unsure)
		return; /* already asking */
	r->unsure = true;
	struct presence_ask *a = RH_NEW(struct presence_ask);
	a->p = p;
	a->driver = r->id;
	a->stray_version = stray_version;
	presence_retry_start(p, &a->retry, presence_ask_retry, a);
	presence_ask_send(a);
}

/* ------------------------------------------------------------ reserving */

static void presence_reserve_flush(struct reserve_queue *q);

/* answered: whether the database answered the batch (else a reservation
 * may have committed unseen, at the version after the one it was asked at). */
static void presence_reserve_answer(struct presence *p, struct presence_reservation *c, bool answered)
{
	struct driver_rec *r = presence_rec_find(p, &c->driver);
	if (r)
		r->reserving = false;
	if (c->won && r)
		presence_rec_set_status(p, r, DRIVER_OFFERED, c->version, presence_now(p));
	else if (r)
		presence_ask_status(p, r, answered ? 0 : c->version + 1);
	c->cb(c->arg, c->won ? PRESENCE_RESERVED : answered ? PRESENCE_TAKEN : PRESENCE_UNANSWERED, c->version);
	rh_free(c);
}

struct presence_reserve_batch {
	struct reserve_queue *q;
	int n;
	struct presence_reservation **c;
};

static void presence_reserve_done(void *arg, const struct db_result *res)
{
	struct presence_reserve_batch *b = arg;
	struct reserve_queue *q = b->q;
	if (res->err != RH_OK)
		log_warn(NULL, "presence: %d reservations failed: %s", b->n, res->message);
	for (int i = 0; i < db_rows(res); i++) {
		long n = atol(db_get(res, i, 0));
		if (n >= 1 && n <= b->n) {
			b->c[n - 1]->won = true;
			b->c[n - 1]->version = atoll(db_get(res, i, 1));
		}
	}
	q->inflight = false;
	for (int i = 0; i < b->n; i++)
		presence_reserve_answer(q->p, b->c[i], res->err == RH_OK);
	rh_free(b->c);
	rh_free(b);
	presence_reserve_flush(q);
}

/* Sends the waiting reservations as one statement, if none is in flight. */
static void presence_reserve_flush(struct reserve_queue *q)
{
	if (q->inflight || q->npending == 0)
		return;
	struct presence_reserve_batch *b = RH_NEW(struct presence_reserve_batch);
	b->q = q;
	b->n = q->npending;
	b->c = q->pending;
	q->pending = NULL;
	q->npending = q->cap = 0;
	struct strbuf ids, vers;
	sb_init(&ids, 16u << 20);
	sb_init(&vers, 16u << 20);
	sb_putc(&ids, '{');
	sb_putc(&vers, '{');
	for (int i = 0; i < b->n; i++) {
		char d[37];
		uuid_format(&b->c[i]->driver, d);
		if (i) {
			sb_putc(&ids, ',');
			sb_putc(&vers, ',');
		}
		sb_puts(&ids, d);
		sb_int(&vers, b->c[i]->version);
	}
	sb_putc(&ids, '}');
	sb_putc(&vers, '}');
	const char *params[] = { ids.buf, vers.buf };
	q->inflight = true;
	db_query(q->p->deps.db, &presence_st_reserve, params, presence_reserve_done, b);
	sb_fini(&ids);
	sb_fini(&vers);
}

static void presence_reserve_flush_cb(void *arg, int64_t now)
{
	(void)now;
	presence_reserve_flush(arg);
}

void presence_reserve(struct presence *p, const struct uuid *driver, int64_t version, presence_reserved_fn cb,
		      void *arg)
{
	struct reserve_queue *q = p->reserve;
	struct driver_rec *r = presence_rec_find(p, driver);
	if (r) {
		/* out of every other search at once; the database decides */
		r->reserving = true;
		r->status = DRIVER_OFFERED;
		presence_rec_sync_grid(p, r);
	}
	struct presence_reservation *c = RH_NEW(struct presence_reservation);
	c->driver = *driver;
	c->version = version;
	c->cb = cb;
	c->arg = arg;
	/* with the others of this turn of the loop, or after the one in flight */
	if (q->npending == q->cap) {
		q->cap = q->cap ? 2 * q->cap : 16;
		q->pending = rh_realloc(q->pending, (size_t)q->cap * sizeof *q->pending);
	}
	q->pending[q->npending++] = c;
	if (!q->inflight && !rh_timer_is_armed(q->flush))
		rh_timer_at(q->flush, presence_now(p));
}

/* ------------------------------------------------------------ releasing */

struct presence_release_ctx {
	struct presence_retry retry; /* first: freed through it at shutdown */
	struct presence *p;
	struct uuid driver, trip;
	int64_t version;
	char reason[32];
	int64_t wait_ms;
};

static void presence_release_send(struct presence_release_ctx *c);

static void presence_release_retry(void *arg, int64_t now)
{
	(void)now;
	presence_release_send(arg);
}

static void presence_released(void *arg, const struct db_result *res)
{
	struct presence_release_ctx *c = arg;
	struct presence *p = c->p;
	struct driver_rec *r = presence_rec_find(p, &c->driver);
	if (res->err != RH_OK) {
		/* the database is away: try again until it answers (a lost
		 * answer is safe to repeat: the release is on the version) */
		if (!c->wait_ms) {
			char id[37];
			uuid_format(&c->driver, id);
			log_warn(NULL, "presence: could not release driver %s yet: %s (retrying)", id, res->message);
		}
		presence_retry_later(p, &c->retry, &c->wait_ms);
		return;
	}
	if (db_rows(res) == 1) {
		if (r)
			presence_rec_set_status(p, r, DRIVER_AVAILABLE, atoll(db_get(res, 0, 0)), presence_now(p));
	} else if (r) {
		/* not released by us (someone moved them meanwhile, or a first
		 * try whose answer was lost did): memory follows the database */
		presence_ask_status(p, r, 0);
	}
	presence_retry_end(&c->retry);
	rh_free(c);
}

static void presence_release_send(struct presence_release_ctx *c)
{
	char d[37], v[24], t[37];
	uuid_format(&c->driver, d);
	uuid_format(&c->trip, t);
	snprintf(v, sizeof v, "%lld", (long long)c->version);
	const char *params[] = { d, v, t, c->reason };
	db_query(c->p->deps.db, &presence_st_release, params, presence_released, c);
}

void presence_release(struct presence *p, const struct uuid *driver, int64_t version, const struct uuid *trip,
		      const char *reason)
{
	struct presence_release_ctx *c = RH_NEW(struct presence_release_ctx);
	c->p = p;
	c->driver = *driver;
	c->trip = *trip;
	c->version = version;
	snprintf(c->reason, sizeof c->reason, "%s", reason);
	presence_retry_start(p, &c->retry, presence_release_retry, c);
	presence_release_send(c);
}

/* ------------------------------------------------------------ at start */

struct presence_stale_ctx {
	struct presence *p;
	void (*done)(void *arg, bool ok);
	void *arg;
};

static void presence_released_stale(void *arg, const struct db_result *res)
{
	struct presence_stale_ctx *c = arg;
	struct presence *p = c->p;
	if (res->err == RH_OK) {
		for (int i = 0; i < db_rows(res); i++) {
			struct uuid d;
			struct driver_rec *r = uuid_parse(db_get(res, i, 0), &d) ? presence_rec_find(p, &d) : NULL;
			if (r)
				presence_rec_set_status(p, r, DRIVER_AVAILABLE, atoll(db_get(res, i, 1)), presence_now(p));
		}
		if (db_rows(res))
			log_info(NULL, "presence: released %d drivers left reserved by the last run", db_rows(res));
		p->stale_released = true;
	}
	c->done(c->arg, res->err == RH_OK);
	rh_free(c);
}

bool presence_stale_released(const struct presence *p)
{
	return p->stale_released;
}

void presence_release_stale(struct presence *p, const struct uuid *keep, size_t n, void (*done)(void *arg, bool ok),
			    void *arg)
{
	struct strbuf sb;
	sb_init(&sb, 1u << 24);
	sb_putc(&sb, '{');
	for (size_t i = 0; i < n; i++) {
		char id[37];
		uuid_format(&keep[i], id);
		if (i)
			sb_putc(&sb, ',');
		sb_puts(&sb, id);
	}
	sb_putc(&sb, '}');
	struct presence_stale_ctx *c = RH_NEW(struct presence_stale_ctx);
	c->p = p;
	c->done = done;
	c->arg = arg;
	const char *params[] = { sb.buf };
	db_query(p->deps.db, &presence_st_release_all, params, presence_released_stale, c);
	sb_fini(&sb);
}

/* ------------------------------------------------------------ setup */

void presence_reserve_init(struct presence *p)
{
	struct reserve_queue *q = RH_NEW(struct reserve_queue);
	q->p = p;
	q->flush = rh_timer_new(p->deps.timers, presence_reserve_flush_cb, q);
	LIST_INIT(&q->retries);
	p->reserve = q;
	if (!p->deps.db)
		return;
	db_register(p->deps.db, &presence_st_reserve);
	db_register(p->deps.db, &presence_st_release);
	db_register(p->deps.db, &presence_st_driver_state);
	db_register(p->deps.db, &presence_st_release_stray);
	db_register(p->deps.db, &presence_st_release_all);
}

void presence_reserve_fini(struct presence *p)
{
	struct reserve_queue *q = p->reserve;
	if (!q)
		return;
	for (int i = 0; i < q->npending; i++)
		rh_free(q->pending[i]);
	struct presence_retry *w;
	while ((w = LIST_FIRST(&q->retries))) {
		presence_retry_end(w);
		rh_free(w); /* (the first member of an ask or a release) */
	}
	rh_free(q->pending);
	rh_timer_free(q->flush);
	rh_free(q);
}
