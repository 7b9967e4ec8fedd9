/* The scheduler of rides for later (match_internal.h): when each SCHEDULED
 * trip's search is due, in wall-clock time, and one timer armed for the
 * soonest. Both clocks come in: the timers source (monotonic, what the
 * timer is armed on) and a wall clock (what scheduled_at is in), so tests
 * drive it with a manual source and a wall clock of their own
 * (tests/unit/match/schedule_test.c).
 *
 * The entries are an array sorted by due time, latest first, so the soonest
 * is popped from the end; a city schedules hundreds, not millions. The
 * timer is never armed further than MATCH_SCHEDULE_MAX_SLEEP_MS ahead: a
 * wall clock stepped forward (NTP, a suspended machine) is noticed within
 * that, and one stepped back makes a tick find nothing due and sleep again. */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/timer.h"
#include "match_internal.h"

#define MATCH_SCHEDULE_MAX_SLEEP_MS 60000
#define MATCH_SCHEDULE_RETRY_MS 1000

struct match_schedule_entry {
	struct uuid trip;
	int64_t due; /* wall ms */
};

struct match_schedule {
	struct rh_timers *timers;
	struct rh_timer *timer;
	struct match_schedule_hooks h;
	struct match_schedule_entry *v; /* latest first */
	size_t n, cap;
	bool ticking;                   /* inside the tick: it arms the timer once, at its end */
};

static void match_schedule_tick(void *arg, int64_t now);

struct match_schedule *match_schedule_new(struct rh_timers *timers, const struct match_schedule_hooks *h)
{
	struct match_schedule *s = RH_NEW(struct match_schedule);
	s->timers = timers;
	s->h = *h;
	s->timer = rh_timer_new(timers, match_schedule_tick, s);
	return s;
}

void match_schedule_free(struct match_schedule *s)
{
	if (!s)
		return;
	rh_timer_free(s->timer);
	rh_free(s->v);
	rh_free(s);
}

size_t match_schedule_count(const struct match_schedule *s)
{
	return s->n;
}

int64_t match_schedule_next(const struct match_schedule *s)
{
	return s->n ? s->v[s->n - 1].due : -1;
}

/* The timer at the soonest due time (on the timers' clock), or off. */
static void match_schedule_arm(struct match_schedule *s)
{
	if (s->ticking)
		return;
	if (s->n == 0) {
		rh_timer_cancel(s->timer);
		return;
	}
	int64_t wait = s->v[s->n - 1].due - s->h.wall_ms(s->h.ctx);
	if (wait < 0)
		wait = 0;
	if (wait > MATCH_SCHEDULE_MAX_SLEEP_MS)
		wait = MATCH_SCHEDULE_MAX_SLEEP_MS;
	rh_timer_at(s->timer, rh_timers_now(s->timers) + wait);
}

static ssize_t match_schedule_find(const struct match_schedule *s, const struct uuid *trip)
{
	for (size_t i = 0; i < s->n; i++)
		if (uuid_eq(&s->v[i].trip, trip))
			return (ssize_t)i;
	return -1;
}

static void match_schedule_remove_at(struct match_schedule *s, size_t i)
{
	memmove(&s->v[i], &s->v[i + 1], (s->n - i - 1) * sizeof *s->v);
	s->n--;
}

void match_schedule_put(struct match_schedule *s, const struct uuid *trip, int64_t due)
{
	ssize_t at = match_schedule_find(s, trip);
	if (at >= 0)
		match_schedule_remove_at(s, (size_t)at);
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 16;
		s->v = rh_realloc(s->v, s->cap * sizeof *s->v);
	}
	/* the first entry due no later than this one (latest first): the new
	 * one goes before it, so equal times pop in the order they came */
	size_t lo = 0, hi = s->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->v[mid].due > due)
			lo = mid + 1;
		else
			hi = mid;
	}
	memmove(&s->v[lo + 1], &s->v[lo], (s->n - lo) * sizeof *s->v);
	s->v[lo] = (struct match_schedule_entry){ .trip = *trip, .due = due };
	s->n++;
	match_schedule_arm(s);
}

bool match_schedule_del(struct match_schedule *s, const struct uuid *trip)
{
	ssize_t at = match_schedule_find(s, trip);
	if (at < 0)
		return false;
	match_schedule_remove_at(s, (size_t)at);
	match_schedule_arm(s);
	return true;
}

/* Every entry due by the wall clock now, soonest first, all taken out
 * before the first hook runs (a hook may put one back, or others: they
 * wait for the next tick, even if due already). */
static void match_schedule_tick(void *arg, int64_t now)
{
	struct match_schedule *s = arg;
	(void)now;
	int64_t wall = s->h.wall_ms(s->h.ctx);
	size_t k = 0;
	while (k < s->n && s->v[s->n - 1 - k].due <= wall)
		k++;
	struct uuid *due = rh_malloc((k ? k : 1) * sizeof *due);
	for (size_t i = 0; i < k; i++)
		due[i] = s->v[s->n - 1 - i].trip;
	s->n -= k;
	s->ticking = true;
	for (size_t i = 0; i < k; i++)
		s->h.due(s->h.ctx, &due[i]);
	s->ticking = false;
	rh_free(due);
	match_schedule_arm(s);
}

/* ------------------------------------------------------------ the matcher's side */

struct match_start_ctx {
	struct matcher *m;
	struct uuid trip;
};

static int64_t match_scheduled_wall(void *ctx)
{
	struct matcher *m = ctx;
	return m->deps.wall_ms();
}

static void match_scheduled_started(void *arg, const struct trip_result *res)
{
	struct match_start_ctx *c = arg;
	struct matcher *m = c->m;
	char id[37];
	uuid_format(&c->trip, id);
	if (res->err == RH_OK) {
		metric_inc(m->m_schedule_started); /* (the trip's listeners started its search) */
	} else if (res->err == RH_EAGAIN || res->err == RH_EDB) {
		/* the database did not answer: again shortly, while the trip is followed */
		log_info(NULL, "match: the search of scheduled trip %s could not start (%s); retrying", id,
			 rh_err_name(res->err));
		if (umap_get(&m->rides, &c->trip))
			match_schedule_put(m->schedule, &c->trip, m->deps.wall_ms() + MATCH_SCHEDULE_RETRY_MS);
	} else {
		log_info(NULL, "match: scheduled trip %s was not started: %s", id, trip_refusal_name(res->refusal));
	}
	rh_free(c);
}

/* A scheduled ride's time has come: SCHEDULED -> SEARCHING through the
 * trip module (only from SCHEDULED: a ride cancelled meanwhile stays so). */
static void match_scheduled_due(void *ctx, const struct uuid *trip)
{
	struct matcher *m = ctx;
	struct trip_change c;
	trip_change_init(&c, trip, TRIP_SEARCHING, TRIP_ROLE_SYSTEM, "scheduler");
	c.only_from = TRIP_SCHEDULED;
	struct match_start_ctx *sc = RH_NEW(struct match_start_ctx);
	sc->m = m;
	sc->trip = *trip;
	trip_change(m->deps.trips, &c, match_scheduled_started, sc);
}

void match_scheduled_add(struct matcher *m, const struct ride *r)
{
	match_schedule_put(m->schedule, &r->trip, r->scheduled_at - m->cfg->schedule_lead_ms);
}

void match_scheduled_init(struct matcher *m)
{
	const struct match_schedule_hooks h = { .wall_ms = match_scheduled_wall, .due = match_scheduled_due, .ctx = m };
	m->schedule = match_schedule_new(m->deps.timers, &h);
}
