/* The scheduler of rides for later alone: a manual timers source and a
 * wall clock of the test's own (which can be stepped apart from it). */
#include "../unit.h"

#include <stdlib.h>

#include "../../../src/match/match_internal.h"
#include "core/timer.h"

#define SCHED_MAX_FIRED 4096

struct sched_world {
	struct rh_timers *timers;
	struct match_schedule *s;
	int64_t wall_offset; /* wall = timers' now + this */
	struct uuid fired[SCHED_MAX_FIRED];
	int64_t fired_at[SCHED_MAX_FIRED]; /* wall ms */
	int nfired;
	int64_t retry_ms; /* > 0: every due trip is put back this much later, once */
};

static int64_t sched_wall(void *ctx)
{
	struct sched_world *w = ctx;
	return rh_timers_now(w->timers) + w->wall_offset;
}

static void sched_due(void *ctx, const struct uuid *trip)
{
	struct sched_world *w = ctx;
	if (w->nfired < SCHED_MAX_FIRED) {
		w->fired[w->nfired] = *trip;
		w->fired_at[w->nfired] = sched_wall(w);
		w->nfired++;
	}
	if (w->retry_ms > 0) {
		int64_t r = w->retry_ms;
		w->retry_ms = 0;
		match_schedule_put(w->s, trip, sched_wall(w) + r);
	}
}

static void sched_world_init(struct sched_world *w, int64_t mono_start, int64_t wall_start)
{
	memset(w, 0, sizeof *w);
	w->timers = rh_timers_manual(mono_start);
	w->wall_offset = wall_start - mono_start;
	const struct match_schedule_hooks h = { .wall_ms = sched_wall, .due = sched_due, .ctx = w };
	w->s = match_schedule_new(w->timers, &h);
}

static void sched_world_fini(struct sched_world *w)
{
	match_schedule_free(w->s);
	rh_timers_free(w->timers);
}

static struct uuid sched_id(unsigned n)
{
	struct uuid u;
	memset(&u, 0, sizeof u);
	memcpy(&u, &n, sizeof n);
	return u;
}

static bool sched_is(const struct uuid *a, unsigned n)
{
	struct uuid b = sched_id(n);
	return uuid_eq(a, &b);
}

/* Moves time forward in 100 ms steps (as the loop would turn). */
static void sched_run_until(struct sched_world *w, int64_t mono_to)
{
	for (int64_t t = rh_timers_now(w->timers); t < mono_to;) {
		t = t + 100 < mono_to ? t + 100 : mono_to;
		rh_timers_advance(w->timers, t);
	}
}

UNIT_TEST(schedule_fires_each_trip_at_its_time_in_order)
{
	struct sched_world w;
	const int64_t W0 = 1800000000000; /* wall ms */
	sched_world_init(&w, 5000, W0);
	struct uuid a = sched_id(1), b = sched_id(2), c = sched_id(3), d = sched_id(4), z = sched_id(0);
	match_schedule_put(w.s, &z, W0 + 30000);
	match_schedule_put(w.s, &a, W0 + 20000);
	match_schedule_put(w.s, &b, W0 + 10000);
	match_schedule_put(w.s, &c, W0 + 20000); /* same time as a: after it */
	match_schedule_put(w.s, &d, W0 + 40000);
	CHECK_EQ_INT(match_schedule_count(w.s), 5);
	CHECK_EQ_INT(match_schedule_next(w.s), W0 + 10000);
	match_schedule_put(w.s, &z, W0 + 25000); /* moved */
	CHECK(match_schedule_del(w.s, &d));
	CHECK(!match_schedule_del(w.s, &d));
	CHECK_EQ_INT(match_schedule_count(w.s), 4);
	sched_run_until(&w, 5000 + 9999);
	CHECK_EQ_INT(w.nfired, 0); /* nothing early */
	sched_run_until(&w, 5000 + 10000);
	REQUIRE(w.nfired == 1);
	CHECK(sched_is(&w.fired[0], 2));
	CHECK_EQ_INT(w.fired_at[0], W0 + 10000);
	sched_run_until(&w, 5000 + 60000);
	REQUIRE(w.nfired == 4);
	CHECK(sched_is(&w.fired[1], 1) && sched_is(&w.fired[2], 3) && sched_is(&w.fired[3], 0));
	CHECK_EQ_INT(w.fired_at[1], W0 + 20000);
	CHECK_EQ_INT(w.fired_at[2], W0 + 20000);
	CHECK_EQ_INT(w.fired_at[3], W0 + 25000);
	CHECK_EQ_INT(match_schedule_count(w.s), 0);
	CHECK_EQ_INT(match_schedule_next(w.s), -1);
	CHECK_EQ_INT(rh_timers_next(w.timers), -1); /* nothing left armed */
	sched_world_fini(&w);
}

UNIT_TEST(schedule_due_already_fires_at_the_next_turn_not_inside_put)
{
	struct sched_world w;
	const int64_t W0 = 1800000000000;
	sched_world_init(&w, 0, W0);
	struct uuid a = sched_id(7);
	match_schedule_put(w.s, &a, W0 - 3600000); /* due an hour ago (the daemon was down) */
	CHECK_EQ_INT(w.nfired, 0);
	CHECK_EQ_INT(rh_timers_next(w.timers), 0);
	rh_timers_advance(w.timers, 0);
	REQUIRE(w.nfired == 1);
	CHECK(sched_is(&w.fired[0], 7));
	sched_world_fini(&w);
}

UNIT_TEST(schedule_a_trip_put_back_by_its_hook_waits_for_its_new_time)
{
	struct sched_world w;
	const int64_t W0 = 1800000000000;
	sched_world_init(&w, 0, W0);
	struct uuid a = sched_id(9);
	w.retry_ms = 1000; /* the start failed: again in 1 s */
	match_schedule_put(w.s, &a, W0 + 500);
	sched_run_until(&w, 1400);
	CHECK_EQ_INT(w.nfired, 1);
	sched_run_until(&w, 1500);
	REQUIRE(w.nfired == 2);
	CHECK_EQ_INT(w.fired_at[1], W0 + 1500);
	sched_world_fini(&w);
}

UNIT_TEST(schedule_follows_the_wall_clock_when_it_is_stepped)
{
	struct sched_world w;
	const int64_t W0 = 1800000000000;
	sched_world_init(&w, 0, W0);
	struct uuid a = sched_id(1), b = sched_id(2);
	match_schedule_put(w.s, &a, W0 + 3600000); /* in an hour */
	/* the timer sleeps at most a minute, whatever the wait */
	CHECK(rh_timers_next(w.timers) <= 60000);
	/* the wall clock jumps 2 h ahead (a suspended machine woke up): within a
	 * minute of the timers' clock the trip is found due */
	w.wall_offset += 2 * 3600000;
	sched_run_until(&w, 60000);
	REQUIRE(w.nfired == 1);
	CHECK(sched_is(&w.fired[0], 1));
	/* stepped back: the timer fires for b's old time, finds nothing due yet
	 * and sleeps again; b fires when the wall clock reaches its time */
	int64_t due_b = sched_wall(&w) + 10000;
	match_schedule_put(w.s, &b, due_b);
	w.wall_offset -= 5000;
	sched_run_until(&w, 60000 + 10000);
	CHECK_EQ_INT(w.nfired, 1);
	sched_run_until(&w, 60000 + 15000);
	REQUIRE(w.nfired == 2);
	CHECK(sched_is(&w.fired[1], 2));
	CHECK_EQ_INT(w.fired_at[1], due_b);
	sched_world_fini(&w);
}

/* Random puts, moves and deletions against a plain list: every trip fires
 * once, no earlier than its time and within a turn (100 ms) after it, in
 * order of time. */
UNIT_TEST(schedule_matches_a_plain_list_on_random_operations)
{
	uint64_t seed = unit_seed();
	srand((unsigned)seed);
	printf("  schedule random: seed %llu\n", (unsigned long long)seed);
	struct sched_world w;
	const int64_t W0 = 1800000000000;
	sched_world_init(&w, 0, W0);
	enum { N = 300 };
	int64_t due[N]; /* -1: not scheduled */
	for (int i = 0; i < N; i++)
		due[i] = -1;
	for (int step = 0; step < 2000; step++) {
		unsigned id = (unsigned)(rand() % N);
		struct uuid u = sched_id(id + 1);
		int op = rand() % 10;
		if (op < 6) {
			due[id] = sched_wall(&w) + rand() % 20000;
			match_schedule_put(w.s, &u, due[id]);
		} else if (op < 7) {
			CHECK(match_schedule_del(w.s, &u) == (due[id] >= 0));
			due[id] = -1;
		} else {
			int nf = w.nfired;
			sched_run_until(&w, rh_timers_now(w.timers) + rand() % 3000);
			for (int f = nf; f < w.nfired; f++) {
				unsigned fid = 0;
				memcpy(&fid, &w.fired[f], sizeof fid);
				REQUIRE(fid >= 1 && fid <= N && due[fid - 1] >= 0);
				CHECK(w.fired_at[f] >= due[fid - 1] && w.fired_at[f] < due[fid - 1] + 100);
				due[fid - 1] = -1;
			}
		}
		size_t left = 0;
		for (int i = 0; i < N; i++)
			left += due[i] >= 0;
		CHECK_EQ_INT(match_schedule_count(w.s), left);
		if (unit_current_failed())
			break;
	}
	sched_world_fini(&w);
}
