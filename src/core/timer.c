#include "core/timer.h"

#include <event2/event.h>

#include "core/alloc.h"
#include "core/clock.h"

struct rh_timers {
	struct event_base *base; /* NULL: the manual source */
	int64_t now_ms;          /* manual: the current time */
	struct rh_timer *armed;  /* manual: armed timers, unordered */
};

struct rh_timer {
	struct rh_timers *t;
	rh_timer_fn fn;
	void *arg;
	struct event *ev;        /* the loop's */
	int64_t at_ms;
	bool armed;
	struct rh_timer *next;   /* manual: in t->armed */
};

static int64_t rh_timers_mono_ms(void)
{
	return rh_mono_ns() / 1000000;
}

struct rh_timers *rh_timers_loop(struct event_base *base)
{
	struct rh_timers *t = RH_NEW(struct rh_timers);
	t->base = base;
	return t;
}

struct rh_timers *rh_timers_manual(int64_t start_ms)
{
	struct rh_timers *t = RH_NEW(struct rh_timers);
	t->now_ms = start_ms;
	return t;
}

void rh_timers_free(struct rh_timers *t)
{
	rh_free(t);
}

int64_t rh_timers_now(const struct rh_timers *t)
{
	return t->base ? rh_timers_mono_ms() : t->now_ms;
}

static void rh_timer_unlink(struct rh_timer *tm)
{
	for (struct rh_timer **p = &tm->t->armed; *p; p = &(*p)->next) {
		if (*p == tm) {
			*p = tm->next;
			break;
		}
	}
	tm->next = NULL;
}

int64_t rh_timers_next(const struct rh_timers *t)
{
	int64_t best = -1;
	for (const struct rh_timer *tm = t->armed; tm; tm = tm->next)
		if (best < 0 || tm->at_ms < best)
			best = tm->at_ms;
	return best;
}

void rh_timers_advance(struct rh_timers *t, int64_t to_ms)
{
	for (;;) {
		struct rh_timer *due = NULL;
		for (struct rh_timer *tm = t->armed; tm; tm = tm->next)
			if (tm->at_ms <= to_ms && (!due || tm->at_ms < due->at_ms))
				due = tm;
		if (!due)
			break;
		rh_timer_unlink(due);
		due->armed = false;
		if (due->at_ms > t->now_ms)
			t->now_ms = due->at_ms;
		due->fn(due->arg, t->now_ms);
	}
	if (to_ms > t->now_ms)
		t->now_ms = to_ms;
}

static void rh_timer_fired(evutil_socket_t fd, short what, void *arg)
{
	struct rh_timer *tm = arg;
	(void)fd;
	(void)what;
	tm->armed = false;
	tm->fn(tm->arg, rh_timers_mono_ms());
}

struct rh_timer *rh_timer_new(struct rh_timers *t, rh_timer_fn fn, void *arg)
{
	struct rh_timer *tm = RH_NEW(struct rh_timer);
	tm->t = t;
	tm->fn = fn;
	tm->arg = arg;
	if (t->base)
		tm->ev = evtimer_new(t->base, rh_timer_fired, tm);
	return tm;
}

void rh_timer_at(struct rh_timer *tm, int64_t at_ms)
{
	struct rh_timers *t = tm->t;
	if (tm->armed)
		rh_timer_cancel(tm);
	tm->at_ms = at_ms;
	tm->armed = true;
	if (!t->base) {
		tm->next = t->armed;
		t->armed = tm;
		return;
	}
	int64_t in = at_ms - rh_timers_mono_ms();
	if (in < 0)
		in = 0;
	struct timeval tv = { (time_t)(in / 1000), (suseconds_t)(in % 1000) * 1000 };
	evtimer_add(tm->ev, &tv);
}

void rh_timer_cancel(struct rh_timer *tm)
{
	if (!tm->armed)
		return;
	tm->armed = false;
	if (tm->t->base)
		evtimer_del(tm->ev);
	else
		rh_timer_unlink(tm);
}

bool rh_timer_is_armed(const struct rh_timer *tm)
{
	return tm->armed;
}

void rh_timer_free(struct rh_timer *tm)
{
	if (!tm)
		return;
	rh_timer_cancel(tm);
	if (tm->ev)
		event_free(tm->ev);
	rh_free(tm);
}
