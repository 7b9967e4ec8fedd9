#include "../unit.h"

#include "core/timer.h"

struct timer_log {
	int n;
	int64_t at[16];
	int which[16];
	struct rh_timer *rearm; /* re-armed once from its own callback */
	int64_t rearm_at;
};

static struct timer_log timer_log;

static void timer_test_fire(void *arg, int64_t now)
{
	int which = (int)(intptr_t)arg;
	timer_log.at[timer_log.n] = now;
	timer_log.which[timer_log.n++] = which;
	if (which == 2 && timer_log.rearm) {
		rh_timer_at(timer_log.rearm, timer_log.rearm_at);
		timer_log.rearm = NULL;
	}
}

UNIT_TEST(timer_manual_fires_in_order_with_due_time_as_now)
{
	memset(&timer_log, 0, sizeof timer_log);
	struct rh_timers *t = rh_timers_manual(1000);
	struct rh_timer *a = rh_timer_new(t, timer_test_fire, (void *)1);
	struct rh_timer *b = rh_timer_new(t, timer_test_fire, (void *)2);
	struct rh_timer *c = rh_timer_new(t, timer_test_fire, (void *)3);
	rh_timer_at(a, 1500);
	rh_timer_at(b, 1200);
	rh_timer_at(c, 9000);
	CHECK_EQ_INT(rh_timers_next(t), 1200);
	rh_timers_advance(t, 1100);
	CHECK_EQ_INT(timer_log.n, 0);
	CHECK_EQ_INT(rh_timers_now(t), 1100);
	/* b re-arms itself... no: b arms a again, later, from its callback */
	timer_log.rearm = a;
	timer_log.rearm_at = 1700;
	rh_timers_advance(t, 2000);
	REQUIRE(timer_log.n == 2);
	CHECK_EQ_INT(timer_log.which[0], 2);
	CHECK_EQ_INT(timer_log.at[0], 1200);
	CHECK_EQ_INT(timer_log.which[1], 1); /* moved from 1500 to 1700 by b */
	CHECK_EQ_INT(timer_log.at[1], 1700);
	CHECK_EQ_INT(rh_timers_now(t), 2000);
	CHECK(!rh_timer_is_armed(a) && rh_timer_is_armed(c));
	rh_timer_cancel(c);
	rh_timers_advance(t, 10000);
	CHECK_EQ_INT(timer_log.n, 2);
	CHECK_EQ_INT(rh_timers_next(t), -1);
	rh_timer_free(a);
	rh_timer_free(b);
	rh_timer_free(c);
	rh_timer_free(NULL);
	rh_timers_free(t);
}
