/* Live trips whose driver is gone: no session and no location for
 * trip.driver_lost_after. A sweep looks at every ride with a driver; one whose
 * driver is gone that long is flagged in the database through the trip
 * module (an event of the trip for the operator, and its rider or an
 * operator may then end it, reason driver_lost), and the flag is cleared if
 * the driver comes back while the trip is live. A trip read back after a
 * restart does not know how the last run left the flag: it is written once
 * the driver is seen back, or gone that long. */
#include <stdio.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/timer.h"
#include "match_internal.h"
#include "presence/presence.h"

#define MATCH_LOST_SWEEP_MIN_MS 250
#define MATCH_LOST_SWEEP_MAX_MS 5000

struct match_lost_ctx {
	struct matcher *m;
	struct uuid trip, driver;
	bool lost;
};

static void match_lost_written(void *arg, rh_err err, bool changed)
{
	struct match_lost_ctx *c = arg;
	struct ride *r = umap_get(&c->m->rides, &c->trip);
	if (r && r->has_driver && uuid_eq(&r->driver, &c->driver)) {
		r->lost_asking = false;
		if (err == RH_OK)
			r->lost = c->lost ? MATCH_LOST_YES : MATCH_LOST_NO; /* (the next sweep asks again on failure) */
	}
	if (err == RH_OK && changed) {
		char t[37], d[37];
		uuid_format(&c->trip, t);
		uuid_format(&c->driver, d);
		if (c->lost)
			log_warn(NULL, "match: driver %s of trip %s is gone (no session, no location for %lld s): flagged"
				       " driver_lost; the rider or an operator may end the trip", d, t,
				 (long long)(c->m->deps.driver_lost_after_ms / 1000));
		else
			log_info(NULL, "match: driver %s of trip %s is back: driver_lost cleared", d, t);
	}
	rh_free(c);
}

static void match_lost_sweep(void *arg, int64_t now)
{
	struct matcher *m = arg;
	size_t i = 0;
	struct uuid k;
	void *v;
	while (umap_next(&m->by_driver, &i, &k, &v)) {
		struct ride *r = v;
		if (r->lost_asking || !trip_state_is_active(r->state) || r->state == TRIP_SEARCHING)
			continue;
		int64_t gone = presence_gone_ms(m->deps.presence, &r->driver, now);
		int want = gone < 0 ? -1
			 : gone == 0 ? MATCH_LOST_NO
			 : gone >= m->deps.driver_lost_after_ms ? MATCH_LOST_YES
			 : -1; /* away, not for long: as it is */
		if (want < 0 || want == (int)r->lost)
			continue;
		struct match_lost_ctx *c = RH_NEW(struct match_lost_ctx);
		c->m = m;
		c->trip = r->trip;
		c->driver = r->driver;
		c->lost = want == MATCH_LOST_YES;
		r->lost_asking = true;
		trip_mark_driver_lost(m->deps.trips, &r->trip, &r->driver, c->lost, match_lost_written, c);
	}
	int64_t every = m->deps.driver_lost_after_ms / 4;
	every = every < MATCH_LOST_SWEEP_MIN_MS ? MATCH_LOST_SWEEP_MIN_MS
	      : every > MATCH_LOST_SWEEP_MAX_MS ? MATCH_LOST_SWEEP_MAX_MS
						: every;
	rh_timer_at(m->lost_timer, now + every);
}

int match_lost_count(struct matcher *m)
{
	int n = 0;
	size_t i = 0;
	struct uuid k;
	void *v;
	while (umap_next(&m->by_driver, &i, &k, &v))
		n += ((struct ride *)v)->lost == MATCH_LOST_YES;
	return n;
}

void match_lost_init(struct matcher *m)
{
	m->lost_timer = rh_timer_new(m->deps.timers, match_lost_sweep, m);
	if (m->deps.driver_lost_after_ms > 0)
		rh_timer_at(m->lost_timer, match_now(m) + MATCH_LOST_SWEEP_MIN_MS);
}

void match_lost_fini(struct matcher *m)
{
	rh_timer_free(m->lost_timer);
}
