#include "dispatch_internal.h"

#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "core/settings.h"
#include "core/timer.h"
#include "core/umap.h"
#include "geo/geohash.h"

static void dispatch_step(struct dispatch_search *s, int64_t now);

double dispatch_score(const struct match_cfg *c, const struct dispatch_cand *h)
{
	double idle = (double)h->idle_ms / 600000.0;
	double accept = (h->accepts + 1.0) / (h->offers + 2.0);
	return c->weight_eta * exp(-h->eta_s / 300.0) + c->weight_idle * (idle > 1 ? 1 : idle) +
	       c->weight_acceptance * accept;
}

double dispatch_radius_max(const struct dispatch *d)
{
	return d->cfg->radius_steps.v[d->cfg->radius_steps.n - 1];
}

bool dispatch_tried(const struct dispatch_search *s, const struct uuid *driver)
{
	for (int i = 0; i < s->ntried; i++)
		if (uuid_eq(&s->tried[i], driver))
			return true;
	return false;
}

/* The driver may be offered this trip again. */
static void dispatch_untry(struct dispatch_search *s, const struct uuid *driver)
{
	for (int i = 0; i < s->ntried; i++)
		if (uuid_eq(&s->tried[i], driver)) {
			s->tried[i] = s->tried[--s->ntried];
			return;
		}
}

/* ------------------------------------------------------------ offers */

static void dispatch_offer_free(struct dispatch_offer_rec *o)
{
	struct dispatch *d = o->d;
	umap_del(&d->offers, &o->pub.id);
	if (umap_get(&d->offer_of, &o->pub.driver) == o)
		umap_del(&d->offer_of, &o->pub.driver);
	if (o->s) {
		TAILQ_REMOVE(&o->s->offers, o, link);
		o->s->live--;
	}
	rh_timer_free(o->timer);
	rh_free(o);
}

/* Out of its search (which goes on or stops), the offer stays for the
 * answer on its way. */
static void dispatch_offer_detach(struct dispatch_offer_rec *o)
{
	if (!o->s)
		return;
	TAILQ_REMOVE(&o->s->offers, o, link);
	o->s->live--;
	o->s = NULL;
}

/* The offer is over without a match: the world releases and tells; the
 * search goes on (next round) unless `quiet`. */
static void dispatch_offer_end(struct dispatch_offer_rec *o, const char *reason, bool tell, bool next_round,
			       int64_t now)
{
	struct dispatch *d = o->d;
	struct dispatch_search *s = o->s;
	bool reserved = o->pub.state != DISPATCH_RESERVING;
	d->w.ended(d->w.ctx, &o->pub, reason, reserved, tell && reserved);
	dispatch_offer_free(o);
	if (s && next_round) {
		s->round++;
		dispatch_step(s, now);
	}
}

/* How long an offer of this round stands (match.offer_timeouts). */
static int64_t dispatch_offer_timeout_ms(const struct dispatch *d, int round)
{
	const struct cfg_list *to = &d->cfg->offer_timeouts;
	return (int64_t)llround(to->v[round < to->n ? round : to->n - 1] * 1000);
}

static void dispatch_offer_expired(void *arg, int64_t now)
{
	struct dispatch_offer_rec *o = arg;
	if (o->pub.state == DISPATCH_LIVE)
		dispatch_offer_end(o, "expired", true, true, now);
}

/* Reserves c for s: out of every other search at once (the world marks
 * them); the database decides. */
void dispatch_offer_make(struct dispatch_search *s, const struct dispatch_cand *c, double score)
{
	struct dispatch *d = s->d;
	struct dispatch_offer_rec *o = RH_NEW(struct dispatch_offer_rec);
	o->d = d;
	o->s = s;
	uuid_v4(&o->pub.id);
	o->pub.driver = c->driver;
	o->pub.trip = s->t.id;
	o->pub.state = DISPATCH_RESERVING;
	o->pub.version = c->version;
	o->pub.road_m = c->road_m;
	o->pub.eta_s = (int)llround(c->eta_s);
	o->pub.score = score;
	o->pub.round = s->round;
	if (s->first_offer_at < 0)
		s->first_offer_at = rh_timers_now(d->timers);
	o->timer = rh_timer_new(d->timers, dispatch_offer_expired, o);
	umap_put(&d->offers, &o->pub.id, o);
	umap_put(&d->offer_of, &o->pub.driver, o);
	TAILQ_INSERT_TAIL(&s->offers, o, link);
	s->live++;
	if (s->ntried < DISPATCH_MAX_TRIED)
		s->tried[s->ntried++] = c->driver;
	d->w.reserve(d->w.ctx, &o->pub);
}

void dispatch_reserved(struct dispatch *d, const struct uuid *offer, enum dispatch_reserve_answer answer,
		       int64_t version, int64_t now)
{
	struct dispatch_offer_rec *o = umap_get(&d->offers, offer);
	if (!o)
		return;
	struct dispatch_search *s = o->s;
	if (answer != DISPATCH_RESERVED) {
		/* someone else has the driver: the next one. No answer: the
		 * next one too, and this driver may come back to this trip once
		 * presence knows they are free (they never saw the offer). */
		if (s && answer == DISPATCH_UNANSWERED)
			dispatch_untry(s, &o->pub.driver);
		dispatch_offer_end(o, answer == DISPATCH_TAKEN ? "lost_race" : "unanswered", false, false, now);
		if (s)
			dispatch_step(s, now);
		return;
	}
	o->pub.version = version;
	if (!s) {
		/* withdrawn meanwhile (matched, cancelled): free them again */
		o->pub.state = DISPATCH_LIVE;
		dispatch_offer_end(o, "withdrawn", false, false, now);
		return;
	}
	o->pub.state = DISPATCH_LIVE;
	o->pub.expires_at = now + dispatch_offer_timeout_ms(d, o->pub.round);
	if (!d->w.offer(d->w.ctx, &o->pub, &s->t)) {
		dispatch_offer_end(o, "unreachable", false, false, now);
		dispatch_step(s, now);
		return;
	}
	rh_timer_at(o->timer, o->pub.expires_at);
}

/* ------------------------------------------------------------ the rider's estimate */

/* Before any trip was matched: a driver takes a third of the first round's
 * timeout to answer. */
static int64_t dispatch_offer_timeout_prior_ms(const struct match_cfg *cfg)
{
	return (int64_t)llround(cfg->offer_timeouts.v[0] * 1000 / 3);
}

static void dispatch_stats_add(double *mean, double sample)
{
	*mean = *mean < 0 ? sample : *mean + (sample - *mean) / DISPATCH_STATS_WEIGHT;
}

/* s is matched to driver: what it took, for the next riders' estimates. */
static void dispatch_stats_matched(struct dispatch_search *s, const struct uuid *driver, int64_t now)
{
	struct dispatch_stats *st = &s->d->stats;
	if (s->waited_at >= 0)
		dispatch_stats_add(&st->wait_to_match_ms, (double)(now - s->waited_at));
	else if (s->first_offer_at >= 0)
		dispatch_stats_add(&st->offer_to_match_ms, (double)(now - s->first_offer_at));
	struct dispatch_offer_rec *o;
	TAILQ_FOREACH(o, &s->offers, link)
		if (uuid_eq(&o->pub.driver, driver))
			dispatch_stats_add(&st->pickup_eta_s, o->pub.eta_s);
}

/* From what this search has (offers out: their drivers' pickups; waiting:
 * how long waiting trips took lately; in a batch window: its close) and
 * what recent trips took. */
static void dispatch_estimate_of(const struct dispatch_search *s, int64_t now, struct dispatch_estimate *e)
{
	const struct dispatch_stats *st = &s->d->stats;
	*e = (struct dispatch_estimate){ 0 };
	double match_ms = -1, eta_s = st->pickup_eta_s;
	if (s->live > 0) {
		const struct dispatch_offer_rec *o;
		eta_s = -1;
		TAILQ_FOREACH(o, &s->offers, link)
			if (eta_s < 0 || o->pub.eta_s < eta_s)
				eta_s = o->pub.eta_s;
		match_ms = st->offer_to_match_ms - (double)(now - s->first_offer_at);
	} else if (s->waiting) {
		if (st->wait_to_match_ms >= 0)
			match_ms = st->wait_to_match_ms - (double)(now - s->waited_at);
	} else if (s->pooled) {
		match_ms = (double)(dispatch_batch_closes_at(s->d->batch) - now) + st->offer_to_match_ms;
	}
	if (match_ms < 0 && (s->live > 0 || (s->waiting && st->wait_to_match_ms >= 0)))
		match_ms = 0; /* overdue: any moment now */
	if (match_ms < 0)
		return;
	e->has_match = true;
	e->match_s = match_ms / 1000.0;
	if (eta_s >= 0) {
		e->has_pickup = true;
		e->pickup_s = e->match_s + eta_s;
	}
}

bool dispatch_estimate(const struct dispatch *d, const struct uuid *trip, int64_t now, struct dispatch_estimate *out)
{
	const struct dispatch_search *s = umap_get(&d->searches, trip);
	if (!s)
		return false;
	dispatch_estimate_of(s, now, out);
	return true;
}

void dispatch_tell(struct dispatch_search *s, bool waiting, int64_t now)
{
	struct dispatch *d = s->d;
	const struct cfg_list *steps = &d->cfg->radius_steps;
	double radius = waiting || s->radius_step >= steps->n ? dispatch_radius_max(d) : steps->v[s->radius_step];
	struct dispatch_estimate e;
	dispatch_estimate_of(s, now, &e);
	d->w.progress(d->w.ctx, &s->t.id, waiting, radius, s->round, &e);
}

/* ------------------------------------------------------------ the search */

void dispatch_wait_leave(struct dispatch_search *s)
{
	if (!s->waiting)
		return;
	s->waiting = false;
	TAILQ_REMOVE(&s->d->waiting, s, wait_link);
	s->d->nwaiting--;
	rh_timer_cancel(s->timer);
}

/* The next look around, and the rider told the trip is waiting. */
static void dispatch_wait_arm(struct dispatch_search *s, int64_t now)
{
	struct dispatch *d = s->d;
	int64_t next = now + d->cfg->waiting_retry_ms;
	rh_timer_at(s->timer, next < s->deadline ? next : s->deadline);
	dispatch_tell(s, true, now);
}

void dispatch_wait_enter(struct dispatch_search *s, int64_t now)
{
	struct dispatch *d = s->d;
	if (s->waiting)
		return;
	s->waiting = true;
	if (s->waited_at < 0)
		s->waited_at = now;
	TAILQ_INSERT_TAIL(&d->waiting, s, wait_link);
	d->nwaiting++;
	dispatch_wait_arm(s, now);
}

static void dispatch_wait_tick(void *arg, int64_t now)
{
	struct dispatch_search *s = arg;
	struct dispatch *d = s->d;
	/* Nobody free within the largest ring (what a waiting trip mostly
	 * finds): one look instead of every ring's, and the trip keeps its
	 * place in the queue (the longest waiting gets freed drivers first). */
	if (s->waiting && now < s->deadline && !d->w.any_free(d->w.ctx, &s->t, dispatch_radius_max(d), now)) {
		dispatch_wait_arm(s, now);
		return;
	}
	dispatch_wait_leave(s);
	s->radius_step = 0; /* drivers came (or time is up): from the smallest ring */
	dispatch_step(s, now);
}

void dispatch_give_up(struct dispatch_search *s)
{
	s->giving_up = true;
	dispatch_wait_leave(s);
	s->d->w.give_up(s->d->w.ctx, &s->t.id);
}

/* The best untried candidate within the current ring, or -1. */
static int dispatch_best(struct dispatch_search *s, struct dispatch_cand *c, size_t n, double *score)
{
	int best = -1;
	*score = -1;
	for (size_t i = 0; i < n; i++) {
		if (c[i].eta_s < 0 || dispatch_tried(s, &c[i].driver))
			continue;
		double sc = dispatch_score(s->d->cfg, &c[i]);
		if (sc > *score) {
			*score = sc;
			best = (int)i;
		}
	}
	return best;
}

/* Offers the trip to the best candidates until parallel_offers are out,
 * widening the radius when a ring has none left; with none anywhere the
 * trip waits. */
static void dispatch_step(struct dispatch_search *s, int64_t now)
{
	struct dispatch *d = s->d;
	if (s->giving_up || !d->open)
		return; /* (before the release of the last run's reservations: dispatch_open steps it) */
	if (now >= s->deadline) {
		if (s->live == 0)
			dispatch_give_up(s);
		return;
	}
	if (d->batch && s->first_offer_at < 0) {
		dispatch_batch_add(s, now); /* drivers for it come with the window's */
		return;
	}
	/* (batch mode: a trip whose offer was declined, expired or lost is
	 * offered again at once, as greedy would, not a window later) */
	const struct cfg_list *steps = &d->cfg->radius_steps;
	struct dispatch_cand cands[DISPATCH_MAX_CANDIDATES];
	size_t k = (size_t)d->cfg->candidates < DISPATCH_MAX_CANDIDATES ? (size_t)d->cfg->candidates
									: DISPATCH_MAX_CANDIDATES;
	bool widened = false, offered = false;
	while (s->live < d->cfg->parallel_offers && s->radius_step < steps->n) {
		size_t n = d->w.candidates(d->w.ctx, &s->t, steps->v[s->radius_step], now, cands, k);
		double score;
		int best = dispatch_best(s, cands, n, &score);
		if (best < 0) {
			s->radius_step++;
			widened = true;
			continue;
		}
		dispatch_offer_make(s, &cands[best], score);
		offered = true;
	}
	if (s->live == 0 && s->radius_step >= steps->n)
		dispatch_wait_enter(s, now);
	else if ((widened || offered) && s->radius_step < steps->n)
		dispatch_tell(s, false, now);
}

void dispatch_search(struct dispatch *d, const struct dispatch_trip *t, int64_t started, int64_t now)
{
	if (!d->cfg->automatic || umap_get(&d->searches, &t->id))
		return;
	struct dispatch_search *s = RH_NEW(struct dispatch_search);
	s->d = d;
	s->t = *t;
	s->started = started;
	s->deadline = started + (t->max_search_ms > 0 ? t->max_search_ms : d->cfg->max_search_ms);
	s->first_offer_at = s->waited_at = -1;
	TAILQ_INIT(&s->offers);
	s->timer = rh_timer_new(d->timers, dispatch_wait_tick, s);
	umap_put(&d->searches, &t->id, s);
	d->nsearching++;
	dispatch_step(s, now);
}

void dispatch_stop(struct dispatch *d, const struct uuid *trip, const struct uuid *keep, const char *reason,
		   int64_t now)
{
	struct dispatch_search *s = umap_get(&d->searches, trip);
	if (s) {
		umap_del(&d->searches, trip);
		d->nsearching--;
		if (keep)
			dispatch_stats_matched(s, keep, now);
		dispatch_wait_leave(s);
		dispatch_batch_remove(s);
		struct dispatch_offer_rec *o;
		while ((o = TAILQ_FIRST(&s->offers))) {
			if (keep && uuid_eq(&o->pub.driver, keep) && o->pub.state != DISPATCH_RESERVING)
				dispatch_offer_free(o); /* the driver is the trip's now: nothing to release */
			else if (o->pub.state == DISPATCH_LIVE)
				dispatch_offer_end(o, reason, true, false, now);
			else
				dispatch_offer_detach(o); /* its answer settles it */
		}
		rh_timer_free(s->timer);
		rh_free(s);
	}
	/* an operator may assign a driver who had an offer for another trip */
	struct dispatch_offer_rec *other = keep ? umap_get(&d->offer_of, keep) : NULL;
	if (other && !uuid_eq(&other->pub.trip, trip) && other->pub.state == DISPATCH_LIVE)
		dispatch_offer_end(other, "driver_assigned", true, true, now);
}

void dispatch_gave_up(struct dispatch *d, const struct uuid *trip, bool saved, int64_t now)
{
	struct dispatch_search *s = umap_get(&d->searches, trip);
	if (!s || saved)
		return; /* (saved: the trip's CANCELLED stops the search) */
	s->giving_up = false;
	dispatch_wait_enter(s, now); /* not saved (the database was away): wait and try again */
}

void dispatch_open(struct dispatch *d, int64_t now)
{
	d->open = true;
	size_t i = 0;
	struct uuid k;
	void *v;
	while (umap_next(&d->searches, &i, &k, &v)) {
		struct dispatch_search *s = v;
		if (s->live == 0 && !s->waiting)
			dispatch_step(s, now);
	}
}

/* A driver just became free (declined, timed out, finished a trip, went
 * available): the oldest waiting trip near them gets them first. One look
 * at the driver, then a distance per waiting trip: no search of the grid
 * per waiting trip (with a thousand trips waiting, every driver going
 * available was a thousand searches of the largest radius). */
void dispatch_driver_free(struct dispatch *d, const struct uuid *driver, int64_t now)
{
	struct dispatch_cand c;
	if (d->batch) {
		dispatch_batch_driver_free(d, driver, now);
		return;
	}
	if (d->nwaiting == 0 || !d->open || !d->w.driver(d->w.ctx, driver, now, &c))
		return;
	double radius = dispatch_radius_max(d);
	struct dispatch_search *s;
	TAILQ_FOREACH(s, &d->waiting, wait_link) {
		if (s->t.vehicle != c.vehicle || dispatch_tried(s, driver) ||
		    geo_dist_haversine_m(c.lat, c.lon, s->t.lat, s->t.lon) > radius)
			continue;
		if (!d->w.eta(d->w.ctx, &c, &s->t))
			continue; /* no road from them to this pickup */
		dispatch_wait_leave(s);
		dispatch_offer_make(s, &c, dispatch_score(d->cfg, &c));
		dispatch_tell(s, false, now);
		return;
	}
}

/* ------------------------------------------------------------ the driver's answer */

static enum dispatch_refusal dispatch_offer_check(struct dispatch *d, const struct uuid *offer,
						  const struct uuid *driver, const struct uuid *trip,
						  struct dispatch_offer_rec **out)
{
	struct dispatch_offer_rec *o = umap_get(&d->offers, offer);
	*out = o;
	if (!o || !o->s)
		return DISPATCH_NO_OFFER;
	if (!uuid_eq(&o->pub.driver, driver))
		return DISPATCH_NOT_YOURS;
	if (o->pub.state == DISPATCH_ACCEPTING)
		return DISPATCH_DUPLICATE;
	if (o->pub.state != DISPATCH_LIVE)
		return DISPATCH_NOT_LIVE;
	if (trip && !uuid_eq(trip, &o->pub.trip))
		return DISPATCH_OTHER_TRIP;
	return DISPATCH_OK;
}

enum dispatch_refusal dispatch_accept(struct dispatch *d, const struct uuid *offer, const struct uuid *driver,
				      const struct uuid *trip, struct dispatch_offer *out)
{
	struct dispatch_offer_rec *o;
	enum dispatch_refusal r = dispatch_offer_check(d, offer, driver, trip, &o);
	if (r != DISPATCH_OK)
		return r;
	o->pub.state = DISPATCH_ACCEPTING;
	rh_timer_cancel(o->timer);
	*out = o->pub;
	return DISPATCH_OK;
}

void dispatch_accept_failed(struct dispatch *d, const struct uuid *offer, int64_t now)
{
	struct dispatch_offer_rec *o = umap_get(&d->offers, offer);
	if (!o || o->pub.state != DISPATCH_ACCEPTING)
		return;
	o->pub.state = DISPATCH_LIVE; /* so that it is released */
	dispatch_offer_end(o, "accept_failed", false, true, now);
}

bool dispatch_accept_unanswered(struct dispatch *d, const struct uuid *offer, bool maybe_applied, int64_t now,
				int64_t *expires_at)
{
	struct dispatch_offer_rec *o = umap_get(&d->offers, offer);
	if (!o || o->pub.state != DISPATCH_ACCEPTING)
		return false;
	o->pub.state = DISPATCH_LIVE;
	o->pub.maybe_matched = o->pub.maybe_matched || maybe_applied;
	if (!o->s) {
		/* the trip stopped searching meanwhile: nothing to accept again */
		dispatch_offer_end(o, "withdrawn", true, false, now);
		return false;
	}
	int64_t grace = dispatch_offer_timeout_ms(d, o->pub.round);
	if (o->pub.expires_at < now + grace)
		o->pub.expires_at = now + grace;
	rh_timer_at(o->timer, o->pub.expires_at);
	*expires_at = o->pub.expires_at;
	return true;
}

enum dispatch_refusal dispatch_decline(struct dispatch *d, const struct uuid *offer, const struct uuid *driver,
				       const struct uuid *trip, struct uuid *trip_out, int64_t now)
{
	struct dispatch_offer_rec *o;
	enum dispatch_refusal r = dispatch_offer_check(d, offer, driver, trip, &o);
	if (r != DISPATCH_OK)
		return r;
	*trip_out = o->pub.trip;
	dispatch_offer_end(o, "declined", false, true, now);
	return DISPATCH_OK;
}

/* ------------------------------------------------------------ questions */

bool dispatch_is_searching(const struct dispatch *d, const struct uuid *trip)
{
	return umap_get(&d->searches, trip) != NULL;
}

int64_t dispatch_search_started(const struct dispatch *d, const struct uuid *trip)
{
	const struct dispatch_search *s = umap_get(&d->searches, trip);
	return s ? s->started : -1;
}

const struct dispatch_offer *dispatch_offer_of(const struct dispatch *d, const struct uuid *driver)
{
	const struct dispatch_offer_rec *o = umap_get(&d->offer_of, driver);
	return o ? &o->pub : NULL;
}

size_t dispatch_offered_drivers(const struct dispatch *d, struct uuid *out, size_t max)
{
	size_t i = 0, n = 0;
	struct uuid k;
	void *v;
	while (n < max && umap_next(&d->offer_of, &i, &k, &v))
		out[n++] = k;
	return n;
}

void dispatch_counts(const struct dispatch *d, int *searching, int *waiting)
{
	*searching = d->nsearching;
	*waiting = d->nwaiting;
}

/* ------------------------------------------------------------ setup */

struct dispatch *dispatch_new(const struct match_cfg *cfg, struct rh_timers *timers, const struct dispatch_world *w)
{
	struct dispatch *d = RH_NEW(struct dispatch);
	d->cfg = cfg;
	d->timers = timers;
	d->w = *w;
	umap_init(&d->searches);
	umap_init(&d->offers);
	umap_init(&d->offer_of);
	TAILQ_INIT(&d->waiting);
	d->stats.offer_to_match_ms = (double)dispatch_offer_timeout_prior_ms(cfg);
	d->stats.wait_to_match_ms = d->stats.pickup_eta_s = -1;
	if (cfg->mode == MATCH_MODE_BATCH)
		d->batch = dispatch_batch_new(d);
	return d;
}

void dispatch_free(struct dispatch *d)
{
	if (!d)
		return;
	size_t i = 0;
	struct uuid k;
	void *v;
	while (umap_next(&d->offers, &i, &k, &v)) {
		struct dispatch_offer_rec *o = v;
		rh_timer_free(o->timer);
		rh_free(o);
	}
	i = 0;
	while (umap_next(&d->searches, &i, &k, &v)) {
		struct dispatch_search *s = v;
		rh_timer_free(s->timer);
		rh_free(s);
	}
	dispatch_batch_free(d->batch);
	umap_fini(&d->searches);
	umap_fini(&d->offers);
	umap_fini(&d->offer_of);
	rh_free(d);
}
