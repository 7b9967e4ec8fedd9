/* Dispatch without sockets or a database: a small world of drivers on a
 * plane around a pickup, answered by hand, and time driven by the manual
 * timers. Every test says what dispatch must have asked of the world. */
#include "../unit.h"

#include "match/dispatch.h"
#include "core/config.h"
#include "core/settings.h"
#include "core/timer.h"
#include "geo/geohash.h"

#define W_MAX 64

struct w_driver {
	struct uuid id;
	double lat, lon;
	int vehicle;
	bool free;   /* AVAILABLE in the world's eyes */
	bool online; /* has a session */
	int64_t version;
};

struct w_ended {
	struct dispatch_offer o;
	char reason[32];
	bool reserved, told;
};

struct w_progress {
	struct uuid trip;
	bool waiting;
	double radius_m;
	struct dispatch_estimate est;
};

struct world {
	struct w_driver d[W_MAX];
	int n;
	struct dispatch_offer reserves[W_MAX], sent[W_MAX];
	int nreserves, nsent;
	struct w_ended ended[W_MAX];
	int nended;
	struct w_progress progress[W_MAX];
	int nprogress;
	struct uuid gave_up[8];
	int ngave_up;
	int ncandidates; /* calls */
	int netas;       /* batch: many-to-many calls */
	int netas_unasked; /* batch: pairs of a window no trip had as candidate */
	bool no_road;    /* batch: no road from anyone to anywhere */
};

static const double PLAT = 52.37, PLON = 4.89; /* the pickup */

static struct w_driver *w_find(struct world *w, const struct uuid *id)
{
	for (int i = 0; i < w->n; i++)
		if (uuid_eq(&w->d[i].id, id))
			return &w->d[i];
	return NULL;
}

/* A driver dist_m north of the pickup. */
static struct uuid w_add(struct world *w, double dist_m, int vehicle)
{
	struct w_driver *d = &w->d[w->n++];
	uuid_v4(&d->id);
	d->lat = PLAT + dist_m / 111195.0;
	d->lon = PLON;
	d->vehicle = vehicle;
	d->free = d->online = true;
	d->version = 1;
	return d->id;
}

static void w_fill(const struct w_driver *d, struct dispatch_cand *c, const struct dispatch_trip *t)
{
	*c = (struct dispatch_cand){ .driver = d->id, .lat = d->lat, .lon = d->lon, .vehicle = d->vehicle,
				     .version = d->version, .eta_s = -1 };
	if (t) {
		c->road_m = geo_dist_haversine_m(d->lat, d->lon, t->lat, t->lon);
		c->eta_s = c->road_m / 10.0; /* 36 km/h */
	}
}

static size_t w_candidates(void *ctx, const struct dispatch_trip *t, double radius_m, int64_t now,
			   struct dispatch_cand *out, size_t k)
{
	struct world *w = ctx;
	(void)now;
	w->ncandidates++;
	size_t n = 0;
	for (int i = 0; i < w->n && n < k; i++) {
		const struct w_driver *d = &w->d[i];
		if (d->free && d->online && d->vehicle == t->vehicle &&
		    geo_dist_haversine_m(d->lat, d->lon, t->lat, t->lon) <= radius_m)
			w_fill(d, &out[n++], t);
	}
	return n; /* (order does not matter: dispatch scores them) */
}

static bool w_any_free(void *ctx, const struct dispatch_trip *t, double radius_m, int64_t now)
{
	struct dispatch_cand c[W_MAX];
	return w_candidates(ctx, t, radius_m, now, c, W_MAX) > 0;
}

static bool w_driver(void *ctx, const struct uuid *id, int64_t now, struct dispatch_cand *out)
{
	struct w_driver *d = w_find(ctx, id);
	(void)now;
	if (!d || !d->free || !d->online)
		return false;
	w_fill(d, out, NULL);
	return true;
}

static bool w_eta(void *ctx, struct dispatch_cand *c, const struct dispatch_trip *t)
{
	(void)ctx;
	c->road_m = geo_dist_haversine_m(c->lat, c->lon, t->lat, t->lon);
	c->eta_s = c->road_m / 10.0;
	return true;
}

static void w_reserve(void *ctx, const struct dispatch_offer *o)
{
	struct world *w = ctx;
	w->reserves[w->nreserves++] = *o;
	w_find(w, &o->driver)->free = false; /* out of every other search at once */
}

static bool w_offer(void *ctx, const struct dispatch_offer *o, const struct dispatch_trip *t)
{
	struct world *w = ctx;
	(void)t;
	w->sent[w->nsent++] = *o;
	return w_find(w, &o->driver)->online;
}

static void w_ended(void *ctx, const struct dispatch_offer *o, const char *reason, bool reserved, bool told)
{
	struct world *w = ctx;
	struct w_ended *e = &w->ended[w->nended++];
	e->o = *o;
	snprintf(e->reason, sizeof e->reason, "%s", reason);
	e->reserved = reserved;
	e->told = told;
	struct w_driver *d = w_find(w, &o->driver);
	if (strcmp(reason, "unanswered") == 0)
		return; /* presence holds them until it has read where they stand */
	d->free = true; /* released (or never reserved) */
	d->version++;
}

static void w_progress(void *ctx, const struct uuid *trip, bool waiting, double radius_m, int offers,
		       const struct dispatch_estimate *est)
{
	struct world *w = ctx;
	(void)offers;
	w->progress[w->nprogress++] = (struct w_progress){ *trip, waiting, radius_m, *est };
}

/* Batch mode's questions: candidates without ETAs, then all ETAs at once. */
static size_t w_nearby(void *ctx, const struct dispatch_trip *t, double radius_m, int64_t now, struct dispatch_cand *out,
		       size_t k)
{
	size_t n = w_candidates(ctx, t, radius_m, now, out, k);
	for (size_t i = 0; i < n; i++)
		out[i].eta_s = -1;
	return n;
}

static void w_etas(void *ctx, const struct dispatch_cand *drivers, size_t nd, const struct dispatch_trip *trips, size_t nt,
		   const uint8_t *want, double *eta_s, double *road_m)
{
	struct world *w = ctx;
	w->netas++;
	for (size_t i = 0; i < nd; i++)
		for (size_t j = 0; j < nt; j++) {
			struct dispatch_cand c = drivers[i];
			if (!want[i * nt + j]) {
				eta_s[i * nt + j] = 1e9; /* (not asked: a pair the solver must not use) */
				road_m[i * nt + j] = 1e9;
				w->netas_unasked++;
				continue;
			}
			w_eta(ctx, &c, &trips[j]);
			eta_s[i * nt + j] = w->no_road ? -1 : c.eta_s;
			road_m[i * nt + j] = c.road_m;
		}
}

static void w_give_up(void *ctx, const struct uuid *trip)
{
	struct world *w = ctx;
	w->gave_up[w->ngave_up++] = *trip;
}

struct fixture {
	struct rh_config cfg;
	struct rh_timers *timers;
	struct world w;
	struct dispatch *d;
	struct dispatch_trip trip;
};

static struct fixture fx;

static const struct dispatch_world w_world = {
	.candidates = w_candidates, .any_free = w_any_free, .driver = w_driver, .eta = w_eta, .nearby = w_nearby,
	.etas = w_etas, .reserve = w_reserve, .offer = w_offer, .ended = w_ended, .progress = w_progress,
	.give_up = w_give_up, .ctx = &fx.w,
};

/* extra: more of the [match] section (batch mode's keys). */
static void fixture_init_with(int parallel, const char *radius_steps, const char *timeouts, const char *extra)
{
	memset(&fx, 0, sizeof fx);
	struct cfg_errors errs;
	char text[512];
	snprintf(text, sizeof text,
		 "[match]\nparallel_offers = %d\nradius_steps = %s\noffer_timeouts = %s\nmax_search = 60s\n"
		 "waiting_retry = 2s\n%s",
		 parallel, radius_steps, timeouts, extra);
	if (config_load_buffer(&fx.cfg, "test", text, NULL, &errs) != RH_OK)
		unit_fail(__FILE__, __LINE__, "config: %s", errs.msg[0]);
	fx.timers = rh_timers_manual(1000000);
	fx.d = dispatch_new(&fx.cfg.match, fx.timers, &w_world);
	uuid_v4(&fx.trip.id);
	fx.trip.lat = PLAT;
	fx.trip.lon = PLON;
	dispatch_open(fx.d, rh_timers_now(fx.timers));
}

static void fixture_init(int parallel, const char *radius_steps, const char *timeouts)
{
	fixture_init_with(parallel, radius_steps, timeouts, "");
}

static void fixture_fini(void)
{
	dispatch_free(fx.d);
	rh_timers_free(fx.timers);
	config_fini(&fx.cfg);
}

static int64_t now_ms(void)
{
	return rh_timers_now(fx.timers);
}

static void advance(int64_t ms)
{
	rh_timers_advance(fx.timers, now_ms() + ms);
}

/* The database answers the last reservation. */
static void answer_last(bool won)
{
	const struct dispatch_offer *o = &fx.w.reserves[fx.w.nreserves - 1];
	dispatch_reserved(fx.d, &o->id, won ? DISPATCH_RESERVED : DISPATCH_TAKEN, o->version + 1, now_ms());
}

UNIT_TEST(dispatch_offers_the_nearest_and_cascades_on_timeout)
{
	fixture_init(1, "3000", "15,10");
	struct uuid near = w_add(&fx.w, 300, 0), far = w_add(&fx.w, 900, 0);
	w_add(&fx.w, 200, 1); /* another vehicle type: never */
	dispatch_search(fx.d, &fx.trip, now_ms(), now_ms());
	REQUIRE(fx.w.nreserves == 1);
	CHECK(uuid_eq(&fx.w.reserves[0].driver, &near));
	CHECK_EQ_INT(fx.w.nsent, 0); /* nothing goes out before the database reserved them */
	answer_last(true);
	REQUIRE(fx.w.nsent == 1);
	CHECK_EQ_INT(fx.w.sent[0].expires_at, now_ms() + 15000);
	CHECK_EQ_INT(fx.w.sent[0].eta_s, 30);
	advance(14999);
	CHECK_EQ_INT(fx.w.nended, 0);
	advance(1);
	/* expired: the driver is released and told, the next round goes to the next one */
	REQUIRE(fx.w.nended == 1);
	CHECK_EQ_STR(fx.w.ended[0].reason, "expired");
	CHECK(fx.w.ended[0].reserved && fx.w.ended[0].told);
	REQUIRE(fx.w.nreserves == 2);
	CHECK(uuid_eq(&fx.w.reserves[1].driver, &far));
	CHECK_EQ_INT(fx.w.reserves[1].round, 1);
	answer_last(true);
	CHECK_EQ_INT(fx.w.sent[1].expires_at, now_ms() + 10000); /* the second round's timeout */
	/* the first driver is never offered this trip again */
	advance(10000);
	CHECK_EQ_INT(fx.w.nreserves, 2);
	CHECK(dispatch_is_searching(fx.d, &fx.trip.id));
	fixture_fini();
}

UNIT_TEST(dispatch_parallel_offers_and_the_first_acceptance)
{
	fixture_init(3, "3000", "15");
	struct uuid a = w_add(&fx.w, 100, 0), b = w_add(&fx.w, 200, 0), c = w_add(&fx.w, 300, 0);
	w_add(&fx.w, 400, 0);
	dispatch_search(fx.d, &fx.trip, now_ms(), now_ms());
	REQUIRE(fx.w.nreserves == 3); /* three at once, the fourth waits */
	for (int i = 0; i < 3; i++)
		dispatch_reserved(fx.d, &fx.w.reserves[i].id, DISPATCH_RESERVED, 2, now_ms());
	CHECK_EQ_INT(fx.w.nsent, 3);
	struct dispatch_offer got;
	const struct dispatch_offer *ob = dispatch_offer_of(fx.d, &b);
	REQUIRE(ob != NULL);
	struct uuid ob_id = ob->id;
	/* someone else's offer, a wrong trip, then the real acceptance */
	CHECK_EQ_INT(dispatch_accept(fx.d, &ob_id, &a, NULL, &got), DISPATCH_NOT_YOURS);
	CHECK_EQ_INT(dispatch_accept(fx.d, &ob_id, &b, &a, &got), DISPATCH_OTHER_TRIP);
	CHECK_EQ_INT(dispatch_accept(fx.d, &ob_id, &b, &fx.trip.id, &got), DISPATCH_OK);
	CHECK_EQ_INT(got.version, 2);
	CHECK_EQ_INT(dispatch_accept(fx.d, &ob_id, &b, NULL, &got), DISPATCH_DUPLICATE);
	/* an accepting offer does not expire */
	advance(20000);
	CHECK_EQ_INT(fx.w.nended, 2); /* a and c expired, b did not */
	for (int i = 0; i < fx.w.nended; i++)
		CHECK(!uuid_eq(&fx.w.ended[i].o.driver, &b));
	/* MATCHED to b: the search ends, nothing of b's is released */
	int before = fx.w.nended;
	dispatch_stop(fx.d, &fx.trip.id, &b, "matched_elsewhere", now_ms());
	CHECK(!dispatch_is_searching(fx.d, &fx.trip.id));
	for (int i = before; i < fx.w.nended; i++)
		CHECK(!uuid_eq(&fx.w.ended[i].o.driver, &b));
	CHECK(dispatch_offer_of(fx.d, &b) == NULL);
	(void)c;
	fixture_fini();
}

UNIT_TEST(dispatch_withdraws_the_other_offers_when_matched)
{
	fixture_init(2, "3000", "15");
	struct uuid a = w_add(&fx.w, 100, 0), b = w_add(&fx.w, 200, 0);
	dispatch_search(fx.d, &fx.trip, now_ms(), now_ms());
	REQUIRE(fx.w.nreserves == 2);
	dispatch_reserved(fx.d, &fx.w.reserves[0].id, DISPATCH_RESERVED, 2, now_ms());
	/* b's reservation is still at the database when a operator assigns a */
	dispatch_stop(fx.d, &fx.trip.id, &a, "matched_elsewhere", now_ms());
	CHECK_EQ_INT(fx.w.nended, 0); /* a's offer: the driver is the trip's; b's: still reserving */
	dispatch_reserved(fx.d, &fx.w.reserves[1].id, DISPATCH_RESERVED, 2, now_ms());
	/* b was reserved for a trip that no longer searches: released, not told */
	REQUIRE(fx.w.nended == 1);
	CHECK(uuid_eq(&fx.w.ended[0].o.driver, &b));
	CHECK_EQ_STR(fx.w.ended[0].reason, "withdrawn");
	CHECK(fx.w.ended[0].reserved && !fx.w.ended[0].told);
	CHECK_EQ_INT(fx.w.nsent, 1);
	fixture_fini();
}

UNIT_TEST(dispatch_declined_and_lost_races_go_to_the_next)
{
	fixture_init(1, "3000", "15");
	struct uuid a = w_add(&fx.w, 100, 0), b = w_add(&fx.w, 200, 0), c = w_add(&fx.w, 300, 0);
	dispatch_search(fx.d, &fx.trip, now_ms(), now_ms());
	answer_last(false); /* someone else had a */
	REQUIRE(fx.w.nended == 1);
	CHECK_EQ_STR(fx.w.ended[0].reason, "lost_race");
	CHECK(!fx.w.ended[0].reserved && !fx.w.ended[0].told); /* never ours: nothing to release */
	REQUIRE(fx.w.nreserves == 2);
	CHECK(uuid_eq(&fx.w.reserves[1].driver, &b));
	CHECK_EQ_INT(fx.w.reserves[1].round, 0); /* a lost race is not a round */
	answer_last(true);
	struct uuid trip_out, offer = fx.w.sent[0].id;
	CHECK_EQ_INT(dispatch_decline(fx.d, &offer, &a, NULL, &trip_out, now_ms()), DISPATCH_NOT_YOURS);
	CHECK_EQ_INT(dispatch_decline(fx.d, &offer, &b, NULL, &trip_out, now_ms()), DISPATCH_OK);
	CHECK(uuid_eq(&trip_out, &fx.trip.id));
	CHECK_EQ_STR(fx.w.ended[1].reason, "declined");
	CHECK(fx.w.ended[1].reserved && !fx.w.ended[1].told); /* they said no: no withdrawal to tell */
	REQUIRE(fx.w.nreserves == 3);
	CHECK(uuid_eq(&fx.w.reserves[2].driver, &c));
	CHECK_EQ_INT(dispatch_decline(fx.d, &offer, &b, NULL, &trip_out, now_ms()), DISPATCH_NO_OFFER);
	fixture_fini();
}

UNIT_TEST(dispatch_widens_the_radius_then_waits_then_gives_up)
{
	fixture_init(1, "500,1000,2000", "15");
	dispatch_search(fx.d, &fx.trip, now_ms(), now_ms());
	/* nobody anywhere: every ring looked at once, then the demand queue */
	CHECK_EQ_INT(fx.w.ncandidates, 3);
	CHECK_EQ_INT(fx.w.nreserves, 0);
	REQUIRE(fx.w.nprogress == 1);
	CHECK(fx.w.progress[0].waiting);
	CHECK_NEAR(fx.w.progress[0].radius_m, 2000, 0);
	int searching, waiting;
	dispatch_counts(fx.d, &searching, &waiting);
	CHECK(searching == 1 && waiting == 1);
	/* a driver appears 1.5 km away: the next look (2 s later) finds them,
	 * from the smallest ring up, telling the rider the search widened */
	struct uuid a = w_add(&fx.w, 1500, 0);
	advance(1999);
	CHECK_EQ_INT(fx.w.nreserves, 0);
	advance(1);
	REQUIRE(fx.w.nreserves == 1);
	CHECK(uuid_eq(&fx.w.reserves[0].driver, &a));
	CHECK(!fx.w.progress[fx.w.nprogress - 1].waiting);
	CHECK_NEAR(fx.w.progress[fx.w.nprogress - 1].radius_m, 2000, 0);
	answer_last(false); /* lost: nobody left, back to waiting */
	dispatch_counts(fx.d, &searching, &waiting);
	CHECK_EQ_INT(waiting, 1);
	/* up to max_search, then give up; the cancellation failing puts it
	 * back in the queue */
	advance(60000);
	REQUIRE(fx.w.ngave_up == 1);
	CHECK(uuid_eq(&fx.w.gave_up[0], &fx.trip.id));
	dispatch_gave_up(fx.d, &fx.trip.id, false, now_ms());
	dispatch_counts(fx.d, &searching, &waiting);
	CHECK_EQ_INT(waiting, 1);
	advance(2000);
	CHECK_EQ_INT(fx.w.ngave_up, 2); /* tried again */
	dispatch_gave_up(fx.d, &fx.trip.id, true, now_ms());
	dispatch_stop(fx.d, &fx.trip.id, NULL, "trip_cancelled", now_ms());
	dispatch_counts(fx.d, &searching, &waiting);
	CHECK(searching == 0 && waiting == 0);
	fixture_fini();
}

UNIT_TEST(dispatch_demand_queue_gives_a_freed_driver_to_the_oldest_waiting_trip)
{
	fixture_init(1, "1000", "15");
	struct dispatch_trip t1 = fx.trip, t2 = fx.trip, t3 = fx.trip;
	uuid_v4(&t2.id);
	uuid_v4(&t3.id);
	t3.lat += 0.1; /* 11 km north: out of reach */
	dispatch_search(fx.d, &t1, now_ms(), now_ms());
	advance(100);
	dispatch_search(fx.d, &t2, now_ms(), now_ms());
	dispatch_search(fx.d, &t3, now_ms(), now_ms());
	int searching, waiting;
	dispatch_counts(fx.d, &searching, &waiting);
	CHECK_EQ_INT(waiting, 3);
	/* a driver frees up near t1 and t2 (not t3): t1 waited longest */
	struct uuid a = w_add(&fx.w, 50, 0);
	dispatch_driver_free(fx.d, &a, now_ms());
	REQUIRE(fx.w.nreserves == 1);
	CHECK(uuid_eq(&fx.w.reserves[0].trip, &t1.id));
	dispatch_counts(fx.d, &searching, &waiting);
	CHECK_EQ_INT(waiting, 2);
	/* the next one goes to t2; a driver of another type to nobody */
	struct uuid xl = w_add(&fx.w, 50, 1), b = w_add(&fx.w, 60, 0);
	dispatch_driver_free(fx.d, &xl, now_ms());
	CHECK_EQ_INT(fx.w.nreserves, 1);
	dispatch_driver_free(fx.d, &b, now_ms());
	REQUIRE(fx.w.nreserves == 2);
	CHECK(uuid_eq(&fx.w.reserves[1].trip, &t2.id));
	fixture_fini();
}

UNIT_TEST(dispatch_waits_for_the_start_release_before_offering)
{
	/* a dispatch not yet open (the last run's reservations are being
	 * released): searches wait, then all start at once */
	struct cfg_errors errs;
	struct rh_config cfg;
	REQUIRE(config_load_buffer(&cfg, "test", "", NULL, &errs) == RH_OK);
	struct rh_timers *t = rh_timers_manual(0);
	memset(&fx.w, 0, sizeof fx.w);
	struct dispatch *d = dispatch_new(&cfg.match, t, &w_world);
	w_add(&fx.w, 100, 0);
	struct dispatch_trip trip = { .lat = PLAT, .lon = PLON };
	uuid_v4(&trip.id);
	dispatch_search(d, &trip, 0, 0);
	CHECK_EQ_INT(fx.w.nreserves, 0);
	dispatch_open(d, 10);
	CHECK_EQ_INT(fx.w.nreserves, 1);
	dispatch_free(d);
	rh_timers_free(t);
	config_fini(&cfg);
}

UNIT_TEST(dispatch_score_prefers_short_pickups_then_idle_then_acceptance)
{
	struct cfg_errors errs;
	struct rh_config cfg;
	REQUIRE(config_load_buffer(&cfg, "test", "", NULL, &errs) == RH_OK);
	struct dispatch_cand near = { .eta_s = 60 }, far = { .eta_s = 600 };
	CHECK(dispatch_score(&cfg.match, &near) > dispatch_score(&cfg.match, &far));
	struct dispatch_cand idle = { .eta_s = 60, .idle_ms = 600000 };
	CHECK(dispatch_score(&cfg.match, &idle) > dispatch_score(&cfg.match, &near));
	struct dispatch_cand accepts = { .eta_s = 60, .offers = 10, .accepts = 10 }, refuses = { .eta_s = 60, .offers = 10 };
	CHECK(dispatch_score(&cfg.match, &accepts) > dispatch_score(&cfg.match, &refuses));
	config_fini(&cfg);
}

UNIT_TEST(dispatch_a_reservation_the_database_did_not_answer_leaves_the_driver_to_try_again)
{
	/* A driver taken by someone else is not tried again for this trip; one
	 * whose reservation got no answer never saw the offer: once presence
	 * has read them back free, the waiting trip gets them. */
	fixture_init(1, "3000", "15");
	struct uuid a = w_add(&fx.w, 100, 0);
	dispatch_search(fx.d, &fx.trip, now_ms(), now_ms());
	REQUIRE(fx.w.nreserves == 1);
	dispatch_reserved(fx.d, &fx.w.reserves[0].id, DISPATCH_UNANSWERED, 0, now_ms());
	REQUIRE(fx.w.nended == 1);
	CHECK_EQ_STR(fx.w.ended[0].reason, "unanswered");
	CHECK(!fx.w.ended[0].reserved && !fx.w.ended[0].told);
	/* presence keeps a out of searches until its read answers: the trip waits */
	CHECK_EQ_INT(fx.w.nreserves, 1);
	int searching, waiting;
	dispatch_counts(fx.d, &searching, &waiting);
	CHECK_EQ_INT(waiting, 1);
	/* read back free: the waiting trip is offered to them */
	fx.w.d[0].free = true;
	dispatch_driver_free(fx.d, &a, now_ms());
	REQUIRE(fx.w.nreserves == 2);
	CHECK(uuid_eq(&fx.w.reserves[1].driver, &a));
	CHECK(uuid_eq(&fx.w.reserves[1].trip, &fx.trip.id));
	/* taken this time: never again for this trip, even once free */
	dispatch_reserved(fx.d, &fx.w.reserves[1].id, DISPATCH_TAKEN, 0, now_ms());
	CHECK_EQ_STR(fx.w.ended[1].reason, "lost_race");
	CHECK_EQ_INT(fx.w.nreserves, 2);
	dispatch_driver_free(fx.d, &a, now_ms());
	advance(2000);
	CHECK_EQ_INT(fx.w.nreserves, 2);
	dispatch_counts(fx.d, &searching, &waiting);
	CHECK_EQ_INT(waiting, 1);
	fixture_fini();
}

UNIT_TEST(dispatch_an_accept_the_database_did_not_answer_keeps_its_offer_for_the_resend)
{
	fixture_init(1, "3000", "15,10");
	struct uuid a = w_add(&fx.w, 100, 0);
	w_add(&fx.w, 200, 0);
	dispatch_search(fx.d, &fx.trip, now_ms(), now_ms());
	answer_last(true);
	REQUIRE(fx.w.nsent == 1);
	struct uuid offer = fx.w.sent[0].id;
	int64_t expires = fx.w.sent[0].expires_at;
	advance(14000);
	struct dispatch_offer got;
	REQUIRE(dispatch_accept(fx.d, &offer, &a, NULL, &got) == DISPATCH_OK);
	/* the MATCHED got no answer: the offer is live again, for at least the
	 * round's timeout from now (it was about to expire), nothing ended */
	int64_t until = 0;
	CHECK(dispatch_accept_unanswered(fx.d, &offer, false, now_ms(), &until));
	CHECK_EQ_INT(until, now_ms() + 15000);
	CHECK(until > expires);
	CHECK_EQ_INT(fx.w.nended, 0);
	const struct dispatch_offer *o = dispatch_offer_of(fx.d, &a);
	REQUIRE(o != NULL);
	CHECK_EQ_INT(o->state, DISPATCH_LIVE);
	CHECK(!o->maybe_matched);
	/* the resend is accepted like the first */
	CHECK_EQ_INT(dispatch_accept(fx.d, &offer, &a, NULL, &got), DISPATCH_OK);
	/* lost in flight this time: it may have committed */
	CHECK(dispatch_accept_unanswered(fx.d, &offer, true, now_ms(), &until));
	CHECK(dispatch_offer_of(fx.d, &a)->maybe_matched);
	/* never sent again: it expires as any offer, told, released, saying
	 * it may have been matched; the search goes on */
	advance(14999);
	CHECK_EQ_INT(fx.w.nended, 0);
	advance(1);
	REQUIRE(fx.w.nended == 1);
	CHECK_EQ_STR(fx.w.ended[0].reason, "expired");
	CHECK(fx.w.ended[0].reserved && fx.w.ended[0].told && fx.w.ended[0].o.maybe_matched);
	CHECK_EQ_INT(fx.w.nreserves, 2);
	fixture_fini();
}

UNIT_TEST(dispatch_an_unanswered_accept_of_a_trip_no_longer_searching_is_withdrawn)
{
	fixture_init(1, "3000", "15");
	struct uuid a = w_add(&fx.w, 100, 0);
	dispatch_search(fx.d, &fx.trip, now_ms(), now_ms());
	answer_last(true);
	struct uuid offer = fx.w.sent[0].id;
	struct dispatch_offer got;
	REQUIRE(dispatch_accept(fx.d, &offer, &a, NULL, &got) == DISPATCH_OK);
	/* the rider cancels while the accept is at the database */
	dispatch_stop(fx.d, &fx.trip.id, NULL, "trip_cancelled", now_ms());
	CHECK_EQ_INT(fx.w.nended, 0); /* (accepting: its answer settles it) */
	int64_t until = 0;
	CHECK(!dispatch_accept_unanswered(fx.d, &offer, false, now_ms(), &until));
	REQUIRE(fx.w.nended == 1);
	CHECK_EQ_STR(fx.w.ended[0].reason, "withdrawn");
	CHECK(fx.w.ended[0].reserved && fx.w.ended[0].told);
	CHECK(dispatch_offer_of(fx.d, &a) == NULL);
	CHECK_EQ_INT(dispatch_accept(fx.d, &offer, &a, NULL, &got), DISPATCH_NO_OFFER);
	fixture_fini();
}

/* ------------------------------------------------------------ batch mode */

/* A trip m metres north of the pickup (south when negative). */
static struct dispatch_trip trip_at(double m)
{
	struct dispatch_trip t = { .lat = PLAT + m / 111195.0, .lon = PLON };
	uuid_v4(&t.id);
	return t;
}

static int reserved_for(const struct uuid *trip, const struct uuid *driver)
{
	int n = 0;
	for (int i = 0; i < fx.w.nreserves; i++)
		n += uuid_eq(&fx.w.reserves[i].trip, trip) && uuid_eq(&fx.w.reserves[i].driver, driver);
	return n;
}

UNIT_TEST(dispatch_batch_assigns_a_window_together_not_each_to_its_nearest)
{
	/* d1 is the nearest driver of both trips; d2 is a fair pickup for a
	 * only. Greedy, a (first) takes d1 and b gets d2 from 1.7 km; a window
	 * gives a d2 and b d1: 700 + 500 m of pickups instead of 500 + 1700. */
	fixture_init_with(1, "3000", "15", "mode = batch\nbatch_window = 500ms\n");
	struct uuid d1 = w_add(&fx.w, 0, 0), d2 = w_add(&fx.w, 1200, 0);
	struct dispatch_trip a = trip_at(500), b = trip_at(-500);
	dispatch_search(fx.d, &a, now_ms(), now_ms());
	advance(200);
	dispatch_search(fx.d, &b, now_ms(), now_ms());
	/* nothing is asked or reserved before the window closes, 500 ms after a */
	CHECK_EQ_INT(fx.w.nreserves, 0);
	CHECK_EQ_INT(fx.w.netas, 0);
	advance(299);
	CHECK_EQ_INT(fx.w.nreserves, 0);
	advance(1);
	CHECK_EQ_INT(fx.w.netas, 1); /* every pickup ETA of the window in one question */
	REQUIRE(fx.w.nreserves == 2);
	CHECK_EQ_INT(reserved_for(&a.id, &d2), 1);
	CHECK_EQ_INT(reserved_for(&b.id, &d1), 1);
	/* then as greedy: reserved, sent, accepted */
	dispatch_reserved(fx.d, &fx.w.reserves[0].id, DISPATCH_RESERVED, 2, now_ms());
	dispatch_reserved(fx.d, &fx.w.reserves[1].id, DISPATCH_RESERVED, 2, now_ms());
	CHECK_EQ_INT(fx.w.nsent, 2);
	struct dispatch_offer got;
	const struct dispatch_offer *o = dispatch_offer_of(fx.d, &d2);
	REQUIRE(o != NULL);
	CHECK_EQ_INT(o->eta_s, 70);
	CHECK_EQ_INT(dispatch_accept(fx.d, &o->id, &d2, &a.id, &got), DISPATCH_OK);
	dispatch_stop(fx.d, &a.id, &d2, "matched_elsewhere", now_ms());
	CHECK(!dispatch_is_searching(fx.d, &a.id));
	CHECK(dispatch_is_searching(fx.d, &b.id));
	fixture_fini();
}

UNIT_TEST(dispatch_batch_a_declined_trip_is_offered_again_at_once_and_frees_the_driver)
{
	fixture_init_with(1, "3000", "15", "mode = batch\nbatch_window = 1s\n");
	struct uuid d1 = w_add(&fx.w, 0, 0), d3 = w_add(&fx.w, -2000, 0);
	struct dispatch_trip b = trip_at(-100);
	dispatch_search(fx.d, &b, now_ms(), now_ms());
	advance(1000);
	REQUIRE(fx.w.nreserves == 1);
	CHECK_EQ_INT(reserved_for(&b.id, &d1), 1);
	answer_last(true);
	REQUIRE(fx.w.nsent == 1);
	/* a second trip arrives meanwhile: d1 is on offer, d3 is free */
	struct dispatch_trip c = trip_at(50);
	dispatch_search(fx.d, &c, now_ms(), now_ms());
	advance(400);
	struct uuid trip_out, offer = fx.w.sent[0].id;
	CHECK_EQ_INT(dispatch_decline(fx.d, &offer, &d1, NULL, &trip_out, now_ms()), DISPATCH_OK);
	REQUIRE(fx.w.nended == 1);
	CHECK(fx.w.ended[0].reserved); /* released */
	/* b does not wait for c's window (a declined trip would pay a window
	 * per round): its next offer goes out at once, to d3, never to d1 again */
	REQUIRE(fx.w.nreserves == 2);
	CHECK_EQ_INT(reserved_for(&b.id, &d3), 1);
	/* d1, free again, is c's when c's window closes (600 ms on) */
	advance(599);
	CHECK_EQ_INT(fx.w.nreserves, 2);
	advance(1);
	REQUIRE(fx.w.nreserves == 3);
	CHECK_EQ_INT(reserved_for(&c.id, &d1), 1);
	CHECK_EQ_INT(reserved_for(&b.id, &d1), 1); /* (the first offer only) */
	fixture_fini();
}

UNIT_TEST(dispatch_batch_asks_the_pickup_etas_of_candidate_pairs_only)
{
	/* two trips 6 km apart, each with its own driver inside a 1 km ring: the
	 * window asks a 2 x 2 matrix but wants the two candidate pairs only,
	 * and the pairs it did not ask (1e9 here) are never offered */
	fixture_init_with(1, "1000", "15", "mode = batch\nbatch_window = 200ms\n");
	struct uuid d1 = w_add(&fx.w, 0, 0), d2 = w_add(&fx.w, 6000, 0);
	struct dispatch_trip a = trip_at(100), b = trip_at(6100);
	dispatch_search(fx.d, &a, now_ms(), now_ms());
	dispatch_search(fx.d, &b, now_ms(), now_ms());
	advance(200);
	CHECK_EQ_INT(fx.w.netas, 1);
	CHECK_EQ_INT(fx.w.netas_unasked, 2);
	REQUIRE(fx.w.nreserves == 2);
	CHECK_EQ_INT(reserved_for(&a.id, &d1), 1);
	CHECK_EQ_INT(reserved_for(&b.id, &d2), 1);
	fixture_fini();
}

UNIT_TEST(dispatch_batch_leaves_a_trip_for_the_next_window_and_the_queue_in_order)
{
	/* one driver, two trips in reach: the older trip gets them when the
	 * pickups are alike; the other is in the next window, finds nobody in
	 * any ring and waits in the demand queue, first for the next free driver */
	fixture_init_with(1, "1000,2000", "15", "mode = batch\nbatch_window = 300ms\n");
	struct uuid d1 = w_add(&fx.w, 0, 0);
	struct dispatch_trip old = trip_at(300), young = trip_at(-310);
	dispatch_search(fx.d, &old, now_ms(), now_ms());
	advance(100);
	dispatch_search(fx.d, &young, now_ms(), now_ms());
	advance(200);
	REQUIRE(fx.w.nreserves == 1);
	CHECK_EQ_INT(reserved_for(&old.id, &d1), 1);
	int searching, waiting;
	dispatch_counts(fx.d, &searching, &waiting);
	CHECK(searching == 2 && waiting == 0);
	/* the rider of the trip left over is told when the next window closes */
	struct dispatch_estimate e;
	REQUIRE(dispatch_estimate(fx.d, &young.id, now_ms(), &e));
	CHECK(e.has_match);
	CHECK(e.match_s >= 0.3 && e.match_s < 10);
	advance(300);
	dispatch_counts(fx.d, &searching, &waiting);
	CHECK_EQ_INT(waiting, 1);
	CHECK(fx.w.progress[fx.w.nprogress - 1].waiting);
	CHECK(uuid_eq(&fx.w.progress[fx.w.nprogress - 1].trip, &young.id));
	/* a driver frees up near it: it joins a window, the driver is theirs */
	struct uuid d2 = w_add(&fx.w, -600, 0);
	dispatch_driver_free(fx.d, &d2, now_ms());
	CHECK_EQ_INT(fx.w.nreserves, 1);
	advance(300);
	REQUIRE(fx.w.nreserves == 2);
	CHECK_EQ_INT(reserved_for(&young.id, &d2), 1);
	dispatch_counts(fx.d, &searching, &waiting);
	CHECK_EQ_INT(waiting, 0);
	fixture_fini();
}

UNIT_TEST(dispatch_batch_no_driver_twice_with_parallel_offers)
{
	/* three trips, parallel offers 2, four drivers all in reach of all: each
	 * driver is reserved once, every trip gets at least one offer */
	fixture_init_with(2, "3000", "15", "mode = batch\nbatch_window = 200ms\n");
	for (int i = 0; i < 4; i++)
		w_add(&fx.w, 100.0 * i, 0);
	struct dispatch_trip t[3] = { trip_at(0), trip_at(150), trip_at(300) };
	for (int i = 0; i < 3; i++)
		dispatch_search(fx.d, &t[i], now_ms(), now_ms());
	advance(200);
	REQUIRE(fx.w.nreserves == 4);
	for (int i = 0; i < 4; i++)
		for (int j = i + 1; j < 4; j++)
			CHECK(!uuid_eq(&fx.w.reserves[i].driver, &fx.w.reserves[j].driver));
	for (int k = 0; k < 3; k++) {
		int n = 0;
		for (int i = 0; i < 4; i++)
			n += uuid_eq(&fx.w.reserves[i].trip, &t[k].id);
		CHECK(n >= 1 && n <= 2);
	}
	fixture_fini();
}
