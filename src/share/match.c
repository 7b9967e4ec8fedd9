/* Shared rides: matching a pending booking into an open trip or a new one,
 * and the ends of bookings and trips (share_internal.h). */
#include "share_internal.h"

#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/settings.h"
#include "core/strbuf.h"
#include "core/timer.h"
#include "core/umap.h"
#include "core/uuid.h"
#include "gateway/gateway.h"
#include "geo/geohash.h"
#include "net/http.h"
#include "presence/presence.h"
#include "pricing/pricing.h"
#include "routing/routing.h"
#include "share/card.h"
#include "share/plan.h"
#include "store/db.h"

/* ------------------------------------------------------------ matching */

static void share_give_up(struct share *s, struct share_booking *b, const char *reason);

/* Matches every booking of a waiting list (next_waiting), taken whole. */
void share_match_waiting(struct share *s, struct share_booking **list)
{
	struct share_booking *w = *list;
	*list = NULL;
	while (w) {
		struct share_booking *next = w->next_waiting;
		w->next_waiting = NULL;
		share_match(s, w);
		w = next;
	}
}

static void share_trip_unbusy(struct share *s, struct share_trip *t)
{
	t->busy = false;
	share_match_waiting(s, &t->waiting);
}

/* Travel times between n points (tt[i * n + j]): the router's
 * many-to-many when a map is loaded, else straight lines at pricing's
 * detour factor and average speed. */
static void share_matrix(struct share *s, const double *lat, const double *lng, size_t n, int64_t when, double *tt)
{
	if (routing_loaded(s->deps.routing)) {
		struct routing_eta *e = rh_calloc(n * n, sizeof *e);
		if (routing_eta_many_to_many(s->deps.routing, lat, lng, n, lat, lng, n, when, e) == RH_OK) {
			for (size_t i = 0; i < n * n; i++)
				tt[i] = i % (n + 1) == 0 ? 0 : e[i].reachable ? e[i].duration_s : -1;
			rh_free(e);
			return;
		}
		rh_free(e);
	}
	const struct pricing_cfg *pc = s->deps.pricing_cfg;
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < n; j++)
			tt[i * n + j] = geo_dist_haversine_m(lat[i], lng[i], lat[j], lng[j]) * pc->detour_factor /
					(pc->average_speed_kmh / 3.6);
}

static double share_bound(const struct share *s, const struct share_booking *b)
{
	return b->express ? s->cfg->express_detour : s->cfg->max_detour;
}

static void share_rider_of(const struct share *s, const struct share_booking *b, int64_t wall, struct share_rider *r)
{
	r->direct_s = b->direct_s;
	r->bound = share_bound(s, b);
	r->seats = b->seats;
	r->onboard = b->state == SB_PICKED_UP;
	r->ridden_s = r->onboard ? (double)(wall - b->picked_up_ms) / 1000.0 : 0;
	r->wait_by_s = (double)(b->requested_ms + s->cfg->max_wait_ms - wall) / 1000.0;
}

struct share_candidate {
	struct share_trip *trip;
	struct share_plan_out plan;
};

/* The best insertion of b into trip t, if any. */
static bool share_try_trip(struct share *s, struct share_booking *b, struct share_trip *t, int64_t wall,
			   struct share_plan_out *out)
{
	struct presence_hit car;
	if (t->nstops + 2 > SHARE_PLAN_MAX_STOPS || !presence_driver(s->deps.presence, &t->driver, &car))
		return false;
	int held = 0;
	struct share_booking *riders[SHARE_PLAN_MAX_STOPS];
	struct share_rider rs[SHARE_PLAN_MAX_STOPS];
	struct share_stop stops[SHARE_PLAN_MAX_STOPS];
	size_t nr = 0;
	size_t N = t->nstops + 3;
	double lat[SHARE_PLAN_MAX_STOPS + 3], lng[SHARE_PLAN_MAX_STOPS + 3];
	lat[0] = car.lat;
	lng[0] = car.lon;
	for (size_t i = 0; i < t->nstops; i++) {
		struct share_booking *sb = t->stops[i].b;
		size_t r = 0;
		while (r < nr && riders[r] != sb)
			r++;
		if (r == nr) {
			riders[nr] = sb;
			share_rider_of(s, sb, wall, &rs[nr]);
			held += sb->seats;
			nr++;
		}
		stops[i].rider = (int)r;
		stops[i].pickup = t->stops[i].pickup;
		lat[i + 1] = t->stops[i].pickup ? sb->plat : sb->dlat;
		lng[i + 1] = t->stops[i].pickup ? sb->plng : sb->dlng;
	}
	/* The seats the database holds (share_seats) are held from
	 * confirmation to drop-off: the plan can only use what is free now. */
	if (held + b->seats > t->seats)
		return false;
	lat[N - 2] = b->plat;
	lng[N - 2] = b->plng;
	lat[N - 1] = b->dlat;
	lng[N - 1] = b->dlng;
	double *tt = rh_calloc(N * N, sizeof *tt);
	share_matrix(s, lat, lng, N, wall / 1000, tt);
	struct share_plan_in in = {
		.stops = stops, .nstops = t->nstops, .riders = rs, .nriders = nr, .capacity = t->seats, .tt = tt,
		.w_detour = s->cfg->weight_detour, .w_fair = s->cfg->weight_fairness,
	};
	share_rider_of(s, b, wall, &in.add);
	bool ok = share_plan_insert(&in, out);
	rh_free(tt);
	return ok;
}

struct share_confirm_ctx {
	struct share *s;
	struct share_booking *b;
	struct share_trip *trip;      /* the trip inserted into, or the new one */
	bool is_new;
	struct share_trip_stop stops[SHARE_PLAN_MAX_STOPS]; /* the list asked for */
	size_t nstops;
	struct uuid driver;
	int64_t driver_version;
};

static void share_confirmed(void *arg, const struct share_reply *res)
{
	struct share_confirm_ctx *c = arg;
	struct share *s = c->s;
	struct share_booking *b = c->b;
	struct share_trip *t = c->trip;
	b->busy = false;
	cJSON *a = res->a;
	int st = a ? share_status(a) : 503;
	if (st == 200) {
		const cJSON *bv = cJSON_GetObjectItemCaseSensitive(a, "booking");
		share_booking_from(s, bv);
		b->trip = t;
		memcpy(t->stops, c->stops, sizeof c->stops);
		t->nstops = c->nstops;
		t->stops_version = (int64_t)jv_num(cJSON_GetObjectItemCaseSensitive(a, "trip"), "stops_version", 1);
		char id[37], tid[37];
		uuid_format(&b->id, id);
		uuid_format(&t->id, tid);
		const char *lv[] = { c->is_new ? "new_trip" : "inserted" };
		if (s->f_outcomes)
			metric_inc(metric_cell(s->f_outcomes, lv));
		log_info(NULL, "share: booking %s confirmed into trip %s (%s, stops version %lld)", id, tid,
			 c->is_new ? "new" : "inserted", (long long)t->stops_version);
		share_send_stops(s, t);
		share_send_rider(s, &b->rider, bv);
		share_trip_unbusy(s, t);
	} else if (c->is_new) {
		/* the trip was never made: its driver goes back */
		presence_release(s->deps.presence, &c->driver, c->driver_version, &t->id, "share_not_confirmed");
		umap_del(&s->trips, &t->id);
		share_trip_unbusy(s, t);
		rh_free(t);
		if (st == 409 && b->state == SB_PENDING && b->tries++ < SHARE_TRIES)
			share_match(s, b);
		else if (st != 409 || b->state == SB_PENDING)
			share_give_up(s, b, st == 409 ? "no_driver" : "unavailable");
	} else {
		const char *reason = a ? jv_str(a, "reason") : NULL;
		char id[37];
		uuid_format(&b->id, id);
		log_info(NULL, "share: booking %s not inserted (%s): matching again", id, reason ? reason : "failed");
		share_trip_unbusy(s, t);
		if (t->closed)
			rh_free(t);
		if (reason && strcmp(reason, "booking_state") == 0) {
			/* (cancelled meanwhile) */
		} else if (b->tries++ < SHARE_TRIES) {
			share_match(s, b);
		} else {
			share_give_up(s, b, "no_seat");
		}
	}
	rh_free(c);
}

/* The share_confirm() call of c (its JSON, to free with rh_free). */
static char *share_confirm_json(struct share *s, const struct share_confirm_ctx *c)
{
	struct share_trip tmp = *c->trip;
	memcpy(tmp.stops, c->stops, sizeof c->stops);
	tmp.nstops = c->nstops;
	char *stops = share_stops_json(&tmp, false);
	char bid[37], tid[37], did[37];
	uuid_format(&c->b->id, bid);
	uuid_format(&c->trip->id, tid);
	struct strbuf sb;
	sb_init(&sb, 1u << 20);
	if (c->is_new) {
		uuid_format(&c->driver, did);
		sb_printf(&sb,
			  "{\"booking\":\"%s\",\"trip\":\"%s\",\"new\":true,\"driver\":\"%s\",\"driver_version\":%lld,"
			  "\"seats\":%d,\"vehicle\":\"%s\",\"stops\":%s}",
			  bid, tid, did, (long long)c->driver_version, c->trip->seats, s->tariff->name, stops);
	} else {
		sb_printf(&sb, "{\"booking\":\"%s\",\"trip\":\"%s\",\"stops_version\":%lld,\"stops\":%s}", bid, tid,
			  (long long)c->trip->stops_version, stops);
	}
	cJSON_free(stops);
	char *out = rh_strdup(sb.buf);
	sb_fini(&sb);
	return out;
}

static void share_confirm_send(struct share *s, struct share_confirm_ctx *c)
{
	char *json = share_confirm_json(s, c);
	c->b->busy = true;
	c->trip->busy = true;
	share_lane_push(&s->lane_confirm, json, share_confirmed, c);
	rh_free(json);
}

struct share_reserve_ctx {
	struct share *s;
	struct share_booking *b;
	struct presence_hit hit;
};

static void share_reserved(void *arg, enum presence_reserve_answer answer, int64_t version)
{
	struct share_reserve_ctx *r = arg;
	struct share *s = r->s;
	struct share_booking *b = r->b;
	b->busy = false;
	if (answer != PRESENCE_RESERVED) { /* taken, or unanswered: presence frees them if it committed unseen */
		if (b->tries++ < SHARE_TRIES)
			share_match(s, b);
		else
			share_give_up(s, b, "no_driver");
		rh_free(r);
		return;
	}
	struct share_trip *t = RH_NEW(struct share_trip);
	uuid_v4(&t->id);
	t->driver = r->hit.driver;
	t->driver_version = version;
	t->seats = (int)s->tariff->seats;
	umap_put(&s->trips, &t->id, t);
	struct share_confirm_ctx *c = RH_NEW(struct share_confirm_ctx);
	c->s = s;
	c->b = b;
	c->trip = t;
	c->is_new = true;
	c->stops[0] = (struct share_trip_stop){ b, true };
	c->stops[1] = (struct share_trip_stop){ b, false };
	c->nstops = 2;
	c->driver = r->hit.driver;
	c->driver_version = version;
	rh_free(r);
	share_confirm_send(s, c);
}

/* The nearest available driver of the shared vehicle type who can be at
 * b's pickup within its wait bound, if any. */
static bool share_driver_for(struct share *s, const struct share_booking *b, int64_t wall, struct presence_hit *out)
{
	struct presence_hit hits[SHARE_DRIVERS];
	size_t n = presence_nearest(s->deps.presence, b->plat, b->plng, (double)s->cfg->search_radius_m,
				    DRIVER_AVAILABLE, 1u << s->vehicle, share_now(s), hits, SHARE_DRIVERS);
	double lat[SHARE_DRIVERS], lng[SHARE_DRIVERS], eta[SHARE_DRIVERS], dist[SHARE_DRIVERS];
	for (size_t i = 0; i < n; i++) {
		lat[i] = hits[i].lat;
		lng[i] = hits[i].lon;
	}
	if (n)
		pricing_etas(s->deps.pricing, lat, lng, n, b->plat, b->plng, wall / 1000, eta, dist);
	double wait_by = (double)(b->requested_ms + s->cfg->max_wait_ms - wall) / 1000.0;
	int best = -1;
	for (size_t i = 0; i < n; i++)
		if (eta[i] >= 0 && eta[i] <= wait_by && (best < 0 || eta[i] < eta[best]))
			best = (int)i;
	if (best >= 0)
		*out = hits[best];
	return best >= 0;
}

/* No open trip takes b: a new one, with the nearest available driver who
 * can be at the pickup within the wait bound, reserved as solo dispatch
 * reserves (presence_reserve: no other search can pick them). */
static void share_new_trip(struct share *s, struct share_booking *b, int64_t wall)
{
	if (s->deps.after_release && !presence_stale_released(s->deps.presence)) {
		/* at start: not before the last run's reservations are released
		 * (that release would free a driver reserved meanwhile) */
		b->next_waiting = s->deferred;
		s->deferred = b;
		if (!rh_timer_is_armed(s->defer_timer))
			rh_timer_at(s->defer_timer, share_now(s) + 100);
		return;
	}
	if (b->seats > (int)s->tariff->seats) { /* (the car shrank since the card: booked before a restart) */
		share_give_up(s, b, "no_seat");
		return;
	}
	struct presence_hit hit;
	if (!share_driver_for(s, b, wall, &hit)) {
		share_give_up(s, b, "no_driver");
		return;
	}
	struct share_reserve_ctx *r = RH_NEW(struct share_reserve_ctx);
	r->s = s;
	r->b = b;
	r->hit = hit;
	b->busy = true;
	presence_reserve(s->deps.presence, &hit.driver, hit.version, share_reserved, r);
}

/* A pending booking: into the open trip where it scores best, else a new
 * trip. */
static void share_match_search(struct share *s, struct share_booking *b, int64_t wall);

void share_match(struct share *s, struct share_booking *b)
{
	if (b->state != SB_PENDING || b->busy)
		return;
	int64_t t0 = rh_mono_ns();
	share_match_search(s, b, rh_wall_ms());
	if (s->f_match)
		metric_observe(s->f_match, s->c_match, (double)(rh_mono_ns() - t0) / 1e9);
}

/* The open trip near b where its insertion scores best, if any. */
static bool share_best_trip(struct share *s, struct share_booking *b, int64_t wall, struct share_candidate *best)
{
	best->trip = NULL;
	struct uuid k;
	void *v;
	for (size_t i = 0; umap_next(&s->trips, &i, &k, &v);) {
		struct share_trip *t = v;
		struct presence_hit car;
		if (!presence_driver(s->deps.presence, &t->driver, &car) ||
		    geo_dist_haversine_m(car.lat, car.lon, b->plat, b->plng) > (double)s->cfg->search_radius_m)
			continue;
		struct share_plan_out out;
		if (share_try_trip(s, b, t, wall, &out) && (!best->trip || out.score < best->plan.score)) {
			best->trip = t;
			best->plan = out;
		}
	}
	return best->trip != NULL;
}

/* The confirmation of b into the trip of best: the current list with the
 * pickup, then the dropoff, at their positions in the new list. */
static struct share_confirm_ctx *share_insertion(struct share *s, struct share_booking *b,
						 const struct share_candidate *best)
{
	struct share_trip *t = best->trip;
	struct share_confirm_ctx *c = RH_NEW(struct share_confirm_ctx);
	c->s = s;
	c->b = b;
	c->trip = t;
	size_t m = 0;
	for (size_t i = 0; i <= t->nstops; i++) {
		if (i == best->plan.pickup_at)
			c->stops[m++] = (struct share_trip_stop){ b, true };
		if (i < t->nstops)
			c->stops[m++] = t->stops[i];
	}
	size_t at = best->plan.dropoff_at;
	memmove(&c->stops[at + 1], &c->stops[at], (m - at) * sizeof c->stops[0]);
	c->stops[at] = (struct share_trip_stop){ b, false };
	c->nstops = m + 1;
	return c;
}

static void share_match_search(struct share *s, struct share_booking *b, int64_t wall)
{
	struct share_candidate best;
	if (!share_best_trip(s, b, wall, &best)) {
		share_new_trip(s, b, wall);
	} else if (best.trip->busy) {
		b->next_waiting = best.trip->waiting;
		best.trip->waiting = b;
	} else {
		share_confirm_send(s, share_insertion(s, b, &best));
	}
}

/* ------------------------------------------------------------ decided with the booking */

/* A booking decided before it is written, in its own transaction: into an
 * open trip whose list is not at the database, or cancelled when no trip
 * takes it and no driver can reach it. (A new trip needs a driver reserved
 * first: that booking is written pending and matched after.) */
struct share_decision {
	struct share_booking *b;           /* in memory once the booking is written */
	struct share_confirm_ctx *confirm; /* into an open trip (busy meanwhile); NULL: cancelled */
	const char *reason;
};

struct share_decision *share_decide(struct share *s, struct share_booking *b, cJSON *item)
{
	if (s->deps.after_release && !presence_stale_released(s->deps.presence)) {
		rh_free(b);
		return NULL;
	}
	int64_t t0 = rh_mono_ns(), wall = rh_wall_ms();
	struct share_candidate best;
	struct presence_hit hit;
	struct share_decision *d = NULL;
	bool too_big = b->seats > (int)s->tariff->seats;
	if (share_best_trip(s, b, wall, &best)) {
		if (!best.trip->busy) {
			d = RH_NEW(struct share_decision);
			d->confirm = share_insertion(s, b, &best);
			char *json = share_confirm_json(s, d->confirm);
			cJSON_AddRawToObject(item, "confirm", json);
			rh_free(json);
			best.trip->busy = true;
		}
	} else if (too_big || !share_driver_for(s, b, wall, &hit)) {
		d = RH_NEW(struct share_decision);
		d->reason = too_big ? "no_seat" : "no_driver";
		cJSON_AddStringToObject(item, "cancel", d->reason);
	}
	if (d) {
		d->b = b;
		b->busy = true;
	} else {
		rh_free(b);
	}
	if (s->f_match)
		metric_observe(s->f_match, s->c_match, (double)(rh_mono_ns() - t0) / 1e9);
	return d;
}

void share_decided(struct share *s, struct share_decision *d, int status, const cJSON *bv, const cJSON *decided)
{
	struct share_booking *b = d->b;
	if (status != 202 || !decided) { /* not written (a replay, a refusal, a failure): nothing was decided */
		if (d->confirm) {
			struct share_trip *t = d->confirm->trip;
			share_trip_unbusy(s, t);
			if (t->closed)
				rh_free(t);
			rh_free(d->confirm);
		}
		b->busy = false;
		if (status == 202) { /* (written pending without its decision: matched as any other) */
			umap_put(&s->bookings, &b->id, b);
			umap_put(&s->by_rider, &b->rider, b);
			share_match(s, share_booking_from(s, bv));
		} else {
			rh_free(b);
		}
		rh_free(d);
		return;
	}
	umap_put(&s->bookings, &b->id, b);
	umap_put(&s->by_rider, &b->rider, b);
	share_booking_from(s, bv);
	struct share_reply r = { .a = (cJSON *)decided, .err = RH_OK };
	if (d->confirm) {
		share_confirmed(d->confirm, &r);
	} else {
		const char *lv[] = { d->reason };
		if (s->f_outcomes)
			metric_inc(metric_cell(s->f_outcomes, lv));
		struct share_cancel_ctx *c = RH_NEW(struct share_cancel_ctx);
		c->s = s;
		c->b = b;
		share_cancelled(c, &r);
	}
	rh_free(d);
}

/* ------------------------------------------------------------ the ends of bookings and trips */

void share_trip_finished(struct share *s, struct share_trip *t)
{
	presence_release(s->deps.presence, &t->driver, t->driver_version, &t->id, "share_finished");
	for (size_t i = 0; i < t->nstops; i++)
		t->stops[i].b->trip = NULL;
	t->nstops = 0;
	umap_del(&s->trips, &t->id);
	char id[37];
	uuid_format(&t->id, id);
	log_info(NULL, "share: trip %s finished", id);
	if (t->busy)
		t->closed = true; /* an insertion's answer (a refusal: trip_closed) still names it */
	else
		rh_free(t);
}

void share_cancelled(void *arg, const struct share_reply *res)
{
	struct share_cancel_ctx *c = arg;
	struct share *s = c->s;
	cJSON *a = res->a;
	if (a && share_status(a) == 200 && c->b) {
		struct share_booking *b = c->b;
		b->busy = false;
		struct share_trip *t = b->trip;
		const cJSON *bv = cJSON_GetObjectItemCaseSensitive(a, "booking");
		share_send_rider(s, &b->rider, bv);
		if (t) {
			share_trip_remove_stops(t, b, false);
			t->stops_version = (int64_t)jv_num(a, "stops_version", (double)t->stops_version);
			if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "trip_finished")))
				share_trip_finished(s, t);
			else
				share_send_stops(s, t);
		}
		share_booking_forget(s, b);
	} else if (c->b) {
		c->b->busy = false;
	}
	if (c->req)
		share_cancel_reply(c->req, res);
	rh_free(c);
}

/* A pending booking nobody can take: cancelled by the system, with why. */
static void share_give_up(struct share *s, struct share_booking *b, const char *reason)
{
	char id[37];
	uuid_format(&b->id, id);
	log_info(NULL, "share: booking %s cancelled: %s", id, reason);
	const char *lv[] = { reason };
	if (s->f_outcomes)
		metric_inc(metric_cell(s->f_outcomes, lv));
	struct share_cancel_ctx *c = RH_NEW(struct share_cancel_ctx);
	c->s = s;
	c->b = b;
	b->busy = true;
	char p[200];
	snprintf(p, sizeof p, "{\"booking\":\"%s\",\"role\":\"system\",\"reason\":\"%s\"}", id, reason);
	share_lane_push(&s->lane_cancel, p, share_cancelled, c);
}
