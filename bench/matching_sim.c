/* The daemon's own dispatch (src/match/dispatch.c) on a simulated clock: a
 * replayed demand, a fleet on a road map, greedy and batch mode side by side
 * with the same seed, the same demand and the same fleet.
 *
 * Nothing here is the daemon's I/O: the world dispatch asks (drivers near a
 * point, pickup ETAs, reservations, offers) is answered in memory, ETAs and
 * drive times by the router on the map (one many-to-one search per greedy
 * step, as the daemon's pricing_etas; one many-to-many per batch window), and
 * time is rh_timers_manual moved from event to event. So the figures are
 * dispatch's policy on this demand, not the machine's speed.
 *
 * A driver answers an offer after an exponential delay (--accept-delay,
 * capped at 4x), accepting with probability --accept, ignoring it (the offer
 * expires) with --ignore, else declining. A reservation is answered 5 ms
 * later, won; a MATCHED commits 10 ms after the accept. A matched driver
 * drives the road route to the pickup, boards for 30 s, drives to the
 * dropoff and is free there. A rider whose trip has no driver after
 * --patience s cancels. Idle drivers stand still.
 *
 *   build/release/bench/matching_sim --map M --bbox minlon,minlat,maxlon,maxlat --csv F --od F
 *       [--start '2014-04-30 18:00:00'] [--window 3600] [--mult 10] [--drivers N] [--seed S]
 *       [--batch-window MS] [--accept P] [--patience S] [--match 'key = value']
 *
 * Prints, for each mode, name_<mode>=value lines (bench/matching.sh adds
 * the demand's multiple to the names):
 * pickup_wait_mean_s (request to the car at the pickup, completed trips),
 * match_time_p95_s (request to MATCHED), completed_pct, deadhead_km_per_trip
 * (road km driven to pickups per completed trip), estimate_pickup_mae_s
 * (the rider's first estimate of the car's arrival against when it came);
 * what batching had to work with: match_time_mean_s, pickup_drive_mean_s
 * (MATCHED to the car at the pickup), queued_pct (trips that waited in the
 * demand queue), free_drivers_at_request (mean), and in batch mode
 * window_trips_mean, window_multi_pct (windows of more than one trip),
 * window_not_nearest_pct (a window's offers that went to a driver other
 * than the trip's nearest among the window's) and window_pickup_given_up_s
 * (the pickup seconds that cost, mean per offer); then batch_wait_gain_pct,
 * how much lower batch's mean pickup wait was (positive: batch better).
 * --match 'key = value' adds lines to the [match] section of every run
 * (e.g. other score weights). */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/config.h"
#include "core/settings.h"
#include "core/timer.h"
#include "core/uuid.h"
#include "geo/geohash.h"
#include "match/dispatch.h"
#include "match/reposition.h"
#include "routing/routing.h"
#include "sim/sim.h"

#define BOARD_S 30.0

/* ------------------------------------------------------------ the model */

enum drv_state { DRV_FREE, DRV_OFFERED, DRV_BUSY };

struct sdrv {
	struct uuid id;
	double lat, lon;
	enum drv_state st;
	int64_t version, free_since;
	uint32_t offers, accepts;
	struct sim_rng rng;
	bool moving;                 /* repositioning: from (lat, lon) at t0 to (tlat, tlon) at t1 */
	double flat, flon, tlat, tlon;
	int64_t t0, t1;
};

struct strip {
	struct uuid id;
	const struct sim_request *req;
	int64_t t_req, t_matched, t_arrived, t_done;
	int driver;        /* index, -1 */
	bool cancelled, searching;
	bool has_est, queued;
	double est_arrival_ms; /* the rider's first estimate of the car's arrival (absolute) */
	double pickup_m;
};

enum ev_kind { EV_REQUEST, EV_RESERVED, EV_ANSWER, EV_MATCHED, EV_ARRIVED, EV_DONE, EV_PATIENCE, EV_FREE, EV_GAVE_UP, EV_REPOSITION };

struct ev {
	int64_t t;
	uint64_t seq;
	enum ev_kind kind;
	int trip, driver;
	struct uuid offer;
	int answer; /* EV_ANSWER: 1 accept, 0 decline */
};

struct sim {
	struct rh_config cfg;
	struct rh_timers *timers;
	struct dispatch *d;
	struct routing *r;
	struct sdrv *drv;
	size_t ndrv;
	struct strip *trips;
	size_t ntrips;
	struct ev *heap;
	size_t nheap, capheap;
	uint64_t seq;
	int64_t epoch_s; /* unix time of t = 0, for the router */
	double accept, ignore, accept_delay_s, patience_s;
	size_t m2m_calls, m2m_pairs;
	struct reposition *rp;       /* repositioning on: demand and the plan */
	double follow;               /* the chance a driver follows a suggestion */
	int64_t rp_interval_ms, last_request_ms;
	double reposition_km;
	size_t suggestions, followed;
	const char *match_extra;     /* more [match] lines (--match) */
	/* what batching had to work with: each window's trips and their best pickups */
	size_t win_trips, win_multi, free_at_request;
	int64_t win_at;              /* the last window's close */
	size_t win_nt, win_nd;
	double *win_eta;             /* its pickup matrix, [driver * nt + trip] */
	int *win_trip;               /* its trips' indexes */
	struct uuid *win_drv;
	size_t offers_in_window, offers_not_nearest;
	double regret_s;             /* pickup seconds given up against each trip's own nearest */
};

static struct sim S;

static void ev_push(struct ev e)
{
	if (S.nheap == S.capheap) {
		S.capheap = S.capheap ? 2 * S.capheap : 1024;
		S.heap = rh_realloc(S.heap, S.capheap * sizeof *S.heap);
	}
	e.seq = S.seq++;
	size_t i = S.nheap++;
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (S.heap[p].t < e.t || (S.heap[p].t == e.t && S.heap[p].seq < e.seq))
			break;
		S.heap[i] = S.heap[p];
		i = p;
	}
	S.heap[i] = e;
}

static struct ev ev_pop(void)
{
	struct ev top = S.heap[0], last = S.heap[--S.nheap];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= S.nheap)
			break;
		if (c + 1 < S.nheap &&
		    (S.heap[c + 1].t < S.heap[c].t || (S.heap[c + 1].t == S.heap[c].t && S.heap[c + 1].seq < S.heap[c].seq)))
			c++;
		if (last.t < S.heap[c].t || (last.t == S.heap[c].t && last.seq < S.heap[c].seq))
			break;
		S.heap[i] = S.heap[c];
		i = c;
	}
	S.heap[i] = last;
	return top;
}

static int64_t now_ms(void) { return rh_timers_now(S.timers); }

static int drv_of(const struct uuid *id)
{
	/* the uuid's first 8 bytes hold the index (see setup) */
	uint64_t x;
	memcpy(&x, id->b, sizeof x);
	return x < S.ndrv ? (int)x : -1;
}

static int trip_of(const struct uuid *id)
{
	uint64_t x;
	memcpy(&x, id->b, sizeof x);
	return x < S.ntrips ? (int)x : -1;
}

/* A repositioning driver's position now (a straight line between the
 * ends at the route's pace: near enough for choosing a driver). */
static void drv_sync(struct sdrv *v, int64_t now)
{
	if (!v->moving)
		return;
	if (now >= v->t1) {
		v->lat = v->tlat;
		v->lon = v->tlon;
		v->moving = false;
		return;
	}
	double f = v->t1 > v->t0 ? (double)(now - v->t0) / (double)(v->t1 - v->t0) : 1;
	v->lat = v->flat + (v->tlat - v->flat) * f;
	v->lon = v->flon + (v->tlon - v->flon) * f;
}

/* The driver stops where they are (matched, or sent elsewhere). */
static void drv_stop(struct sdrv *v, int64_t now)
{
	drv_sync(v, now);
	v->moving = false;
}

static void fill_cand(const struct sdrv *v, struct dispatch_cand *c, int64_t now)
{
	*c = (struct dispatch_cand){ .driver = v->id, .lat = v->lat, .lon = v->lon, .version = v->version,
				     .idle_ms = now - v->free_since, .offers = v->offers, .accepts = v->accepts,
				     .eta_s = -1 };
}

/* The free drivers within radius, nearest first, up to k (brute force: a
 * few thousand drivers). */
struct near_hit {
	double d;
	int i;
};
static int near_cmp(const void *a, const void *b)
{
	double x = ((const struct near_hit *)a)->d, y = ((const struct near_hit *)b)->d;
	return x < y ? -1 : x > y;
}

static size_t nearest(const struct dispatch_trip *t, double radius_m, struct near_hit *out, size_t k)
{
	static struct near_hit *all;
	static size_t cap;
	if (cap < S.ndrv) {
		cap = S.ndrv;
		all = rh_realloc(all, cap * sizeof *all);
	}
	size_t n = 0;
	double kx = cos(t->lat * 3.14159265358979323846 / 180) * 111320.0;
	for (size_t i = 0; i < S.ndrv; i++) {
		if (S.drv[i].st != DRV_FREE)
			continue;
		drv_sync(&S.drv[i], now_ms());
		double dx = (S.drv[i].lon - t->lon) * kx, dy = (S.drv[i].lat - t->lat) * 111320.0;
		double dd = sqrt(dx * dx + dy * dy);
		if (dd <= radius_m)
			all[n++] = (struct near_hit){ dd, (int)i };
	}
	qsort(all, n, sizeof *all, near_cmp);
	if (n > k)
		n = k;
	memcpy(out, all, n * sizeof *out);
	return n;
}

/* ------------------------------------------------------------ the world */

static size_t w_nearby(void *ctx, const struct dispatch_trip *t, double radius_m, int64_t now,
		       struct dispatch_cand *out, size_t k)
{
	(void)ctx;
	struct near_hit h[256];
	size_t n = nearest(t, radius_m, h, k < 256 ? k : 256);
	for (size_t i = 0; i < n; i++) {
		fill_cand(&S.drv[h[i].i], &out[i], now);
		out[i].road_m = h[i].d;
	}
	return n;
}

static size_t w_candidates(void *ctx, const struct dispatch_trip *t, double radius_m, int64_t now,
			   struct dispatch_cand *out, size_t k)
{
	size_t n = w_nearby(ctx, t, radius_m, now, out, k);
	double lat[256], lon[256];
	struct routing_eta e[256];
	for (size_t i = 0; i < n; i++) {
		lat[i] = out[i].lat;
		lon[i] = out[i].lon;
	}
	if (n && routing_eta_many_to_one_at(S.r, lat, lon, n, t->lat, t->lon, S.epoch_s + now / 1000, e) != RH_OK)
		return 0;
	for (size_t i = 0; i < n; i++) {
		out[i].eta_s = e[i].reachable ? e[i].duration_s : -1;
		out[i].road_m = e[i].reachable ? e[i].distance_m : -1;
	}
	return n;
}

static bool w_any_free(void *ctx, const struct dispatch_trip *t, double radius_m, int64_t now)
{
	(void)ctx;
	(void)now;
	struct near_hit h[1];
	return nearest(t, radius_m, h, 1) > 0;
}

static bool w_driver(void *ctx, const struct uuid *id, int64_t now, struct dispatch_cand *out)
{
	(void)ctx;
	int i = drv_of(id);
	if (i < 0 || S.drv[i].st != DRV_FREE)
		return false;
	drv_sync(&S.drv[i], now);
	fill_cand(&S.drv[i], out, now);
	return true;
}

static bool w_eta(void *ctx, struct dispatch_cand *c, const struct dispatch_trip *t)
{
	(void)ctx;
	struct routing_eta e;
	if (routing_eta_many_to_one_at(S.r, &c->lat, &c->lon, 1, t->lat, t->lon, S.epoch_s + now_ms() / 1000, &e) !=
		    RH_OK ||
	    !e.reachable)
		return false;
	c->eta_s = e.duration_s;
	c->road_m = e.distance_m;
	return true;
}

static void w_etas(void *ctx, const struct dispatch_cand *drivers, size_t nd, const struct dispatch_trip *trips, size_t nt,
		   const uint8_t *want, double *eta_s, double *road_m)
{
	(void)ctx;
	(void)want; /* (one search gives every pair; the window's nearest, below, reads them all) */
	double *lat = rh_malloc((nd + nt + 1) * sizeof *lat), *lon = rh_malloc((nd + nt + 1) * sizeof *lon);
	struct routing_eta *e = rh_malloc((nd * nt + 1) * sizeof *e);
	for (size_t i = 0; i < nd; i++) {
		lat[i] = drivers[i].lat;
		lon[i] = drivers[i].lon;
	}
	for (size_t j = 0; j < nt; j++) {
		lat[nd + j] = trips[j].lat;
		lon[nd + j] = trips[j].lon;
	}
	S.m2m_calls++;
	S.m2m_pairs += nd * nt;
	S.win_trips += nt;
	S.win_multi += nt > 1;
	bool ok = routing_eta_many_to_many(S.r, lat, lon, nd, lat + nd, lon + nd, nt, S.epoch_s + now_ms() / 1000, e) ==
		  RH_OK;
	for (size_t x = 0; x < nd * nt; x++) {
		eta_s[x] = ok && e[x].reachable ? e[x].duration_s : -1;
		road_m[x] = ok && e[x].reachable ? e[x].distance_m : -1;
	}
	S.win_at = now_ms();
	S.win_nt = nt;
	S.win_nd = nd;
	S.win_eta = rh_realloc(S.win_eta, (nd * nt + 1) * sizeof *S.win_eta);
	memcpy(S.win_eta, eta_s, nd * nt * sizeof *eta_s);
	S.win_trip = rh_realloc(S.win_trip, (nt + 1) * sizeof *S.win_trip);
	S.win_drv = rh_realloc(S.win_drv, (nd + 1) * sizeof *S.win_drv);
	for (size_t j = 0; j < nt; j++)
		S.win_trip[j] = trip_of(&trips[j].id);
	for (size_t i = 0; i < nd; i++)
		S.win_drv[i] = drivers[i].driver;
	rh_free(lat);
	rh_free(lon);
	rh_free(e);
}

/* An offer made at a window's close: was its driver the trip's nearest
 * among the window's (what a window of its own would have given it)? */
static void window_note(const struct dispatch_offer *o)
{
	int tj = trip_of(&o->trip);
	if (S.win_at != now_ms())
		return;
	for (size_t j = 0; j < S.win_nt; j++) {
		if (S.win_trip[j] != tj)
			continue;
		double best = -1, got = -1;
		for (size_t i = 0; i < S.win_nd; i++) {
			double e = S.win_eta[i * S.win_nt + j];
			if (e >= 0 && (best < 0 || e < best))
				best = e;
			if (uuid_eq(&S.win_drv[i], &o->driver))
				got = e;
		}
		S.offers_in_window++;
		if (got > best + 0.5) {
			S.offers_not_nearest++;
			S.regret_s += got - best;
		}
		return;
	}
}

static void w_reserve(void *ctx, const struct dispatch_offer *o)
{
	(void)ctx;
	window_note(o);
	int i = drv_of(&o->driver);
	drv_stop(&S.drv[i], now_ms()); /* offered: waits where they are */
	S.drv[i].st = DRV_OFFERED;
	ev_push((struct ev){ .t = now_ms() + 5, .kind = EV_RESERVED, .driver = i, .offer = o->id });
}

static bool w_offer(void *ctx, const struct dispatch_offer *o, const struct dispatch_trip *t)
{
	(void)ctx;
	(void)t;
	struct sdrv *v = &S.drv[drv_of(&o->driver)];
	v->offers++;
	double u = sim_rng_unit(&v->rng);
	if (u < S.ignore)
		return true; /* it expires */
	double delay = sim_rng_exp(&v->rng, S.accept_delay_s);
	if (delay > 4 * S.accept_delay_s)
		delay = 4 * S.accept_delay_s;
	ev_push((struct ev){ .t = now_ms() + (int64_t)(delay * 1000), .kind = EV_ANSWER, .driver = drv_of(&o->driver),
			     .trip = trip_of(&o->trip), .offer = o->id,
			     .answer = sim_rng_unit(&v->rng) < S.accept });
	return true;
}

static void w_ended(void *ctx, const struct dispatch_offer *o, const char *reason, bool reserved, bool told)
{
	(void)ctx;
	(void)reason;
	(void)reserved;
	(void)told;
	int i = drv_of(&o->driver);
	if (S.drv[i].st == DRV_OFFERED) {
		S.drv[i].st = DRV_FREE;
		S.drv[i].version++;
		ev_push((struct ev){ .t = now_ms() + 5, .kind = EV_FREE, .driver = i }); /* the release's answer */
	}
}

static void w_progress(void *ctx, const struct uuid *trip, bool waiting, double radius_m, int offers,
		       const struct dispatch_estimate *est)
{
	(void)ctx;
	(void)radius_m;
	(void)offers;
	struct strip *t = &S.trips[trip_of(trip)];
	t->queued |= waiting;
	if (!t->has_est && est->has_pickup) {
		t->has_est = true;
		t->est_arrival_ms = (double)now_ms() + est->pickup_s * 1000;
	}
}

static void w_give_up(void *ctx, const struct uuid *trip)
{
	(void)ctx;
	ev_push((struct ev){ .t = now_ms() + 10, .kind = EV_GAVE_UP, .trip = trip_of(trip) });
}

/* ------------------------------------------------------------ events */

static double drive_s(double flat, double flon, double tlat, double tlon, double *dist_m)
{
	struct route_result rr;
	if (routing_route_at(S.r, flat, flon, tlat, tlon, ROUTE_FAST, false, S.epoch_s + now_ms() / 1000, &rr) != RH_OK) {
		*dist_m = sim_dist_m(flat, flon, tlat, tlon) * 1.3;
		return *dist_m / (20 / 3.6);
	}
	*dist_m = rr.distance_m;
	return rr.duration_s;
}

static void trip_stop(struct strip *t, const char *reason)
{
	if (!t->searching)
		return;
	t->searching = false;
	dispatch_stop(S.d, &t->id, NULL, reason, now_ms());
}

static void ev_run(const struct ev *e)
{
	int64_t now = now_ms();
	struct strip *t = e->trip >= 0 && (size_t)e->trip < S.ntrips ? &S.trips[e->trip] : NULL;
	switch (e->kind) {
	case EV_REQUEST: {
		t->t_req = now;
		t->searching = true;
		for (size_t i = 0; i < S.ndrv; i++)
			S.free_at_request += S.drv[i].st == DRV_FREE;
		struct dispatch_trip dt = { .id = t->id, .lat = t->req->plat, .lon = t->req->plon, .vehicle = 0 };
		dispatch_search(S.d, &dt, now, now);
		if (S.rp)
			reposition_demand(S.rp, dt.lat, dt.lon, now);
		ev_push((struct ev){ .t = now + (int64_t)(S.patience_s * 1000), .kind = EV_PATIENCE, .trip = e->trip });
		break;
	}
	case EV_RESERVED:
		dispatch_reserved(S.d, &e->offer, DISPATCH_RESERVED, ++S.drv[e->driver].version, now);
		break;
	case EV_ANSWER: {
		struct dispatch_offer got;
		struct uuid tid;
		if (!e->answer) {
			(void)dispatch_decline(S.d, &e->offer, &S.drv[e->driver].id, NULL, &tid, now);
			break;
		}
		if (dispatch_accept(S.d, &e->offer, &S.drv[e->driver].id, NULL, &got) != DISPATCH_OK)
			break;
		ev_push((struct ev){ .t = now + 10, .kind = EV_MATCHED, .driver = e->driver, .trip = trip_of(&got.trip) });
		break;
	}
	case EV_MATCHED: {
		struct sdrv *v = &S.drv[e->driver];
		if (t->cancelled || !t->searching) { /* the rider left meanwhile: the MATCHED is refused */
			const struct dispatch_offer *o = dispatch_offer_of(S.d, &v->id);
			if (o)
				dispatch_accept_failed(S.d, &o->id, now);
			break;
		}
		t->searching = false;
		t->t_matched = now;
		t->driver = e->driver;
		drv_stop(v, now);
		v->st = DRV_BUSY;
		v->accepts++;
		dispatch_stop(S.d, &t->id, &v->id, "matched_elsewhere", now);
		double s = drive_s(v->lat, v->lon, t->req->plat, t->req->plon, &t->pickup_m);
		ev_push((struct ev){ .t = now + (int64_t)(s * 1000), .kind = EV_ARRIVED, .trip = e->trip, .driver = e->driver });
		break;
	}
	case EV_ARRIVED: {
		struct sdrv *v = &S.drv[e->driver];
		t->t_arrived = now;
		v->lat = t->req->plat;
		v->lon = t->req->plon;
		double m, s = drive_s(v->lat, v->lon, t->req->dlat, t->req->dlon, &m);
		ev_push((struct ev){ .t = now + (int64_t)((BOARD_S + s) * 1000), .kind = EV_DONE, .trip = e->trip,
				     .driver = e->driver });
		break;
	}
	case EV_DONE: {
		struct sdrv *v = &S.drv[e->driver];
		t->t_done = now;
		v->lat = t->req->dlat;
		v->lon = t->req->dlon;
		v->st = DRV_FREE;
		v->free_since = now;
		v->version++;
		dispatch_driver_free(S.d, &v->id, now);
		break;
	}
	case EV_PATIENCE:
		if (t->searching) {
			t->cancelled = true;
			trip_stop(t, "trip_cancelled");
		}
		break;
	case EV_GAVE_UP:
		if (t->searching) { /* cancelled no_drivers, then the answer */
			t->cancelled = true;
			trip_stop(t, "trip_cancelled");
			dispatch_gave_up(S.d, &t->id, true, now);
		}
		break;
	case EV_REPOSITION: {
		if (now > S.last_request_ms)
			break; /* the demand is over */
		ev_push((struct ev){ .t = now + S.rp_interval_ms, .kind = EV_REPOSITION });
		struct reposition_driver *rd = rh_malloc((S.ndrv + 1) * sizeof *rd);
		int *idx = rh_malloc((S.ndrv + 1) * sizeof *idx);
		size_t n = 0;
		for (size_t i = 0; i < S.ndrv; i++) {
			struct sdrv *v = &S.drv[i];
			if (v->st != DRV_FREE)
				continue;
			drv_sync(v, now);
			rd[n] = (struct reposition_driver){ v->id, v->lat, v->lon };
			idx[n++] = (int)i;
		}
		struct reposition_move *mv = rh_malloc((n + 1) * sizeof *mv);
		size_t k = reposition_plan(S.rp, rd, n, now, mv, n);
		S.suggestions += k;
		for (size_t x = 0; x < k; x++) {
			struct sdrv *v = &S.drv[idx[mv[x].driver]];
			if (sim_rng_unit(&v->rng) >= S.follow)
				continue;
			S.followed++;
			drv_stop(v, now);
			double m, s = drive_s(v->lat, v->lon, mv[x].lat, mv[x].lon, &m);
			S.reposition_km += m / 1000;
			v->moving = true;
			v->flat = v->lat;
			v->flon = v->lon;
			v->tlat = mv[x].lat;
			v->tlon = mv[x].lon;
			v->t0 = now;
			v->t1 = now + (int64_t)(s * 1000);
		}
		rh_free(mv);
		rh_free(idx);
		rh_free(rd);
		break;
	}
	case EV_FREE:
		if (S.drv[e->driver].st == DRV_FREE)
			dispatch_driver_free(S.d, &S.drv[e->driver].id, now);
		break;
	}
}

/* ------------------------------------------------------------ a run */

struct figures {
	double wait_mean_s, match_p95_s, completed_pct, deadhead_km, est_mae_s, est_bias_s;
	double match_mean_s, drive_mean_s, queued_pct, free_mean, win_trips_mean, win_multi_pct, not_nearest_pct,
		regret_s;
	size_t completed, requests, m2m_calls, suggestions, followed;
	double m2m_pairs_mean;
};

static int dbl_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void run(const char *mode, bool repo, int64_t window_ms, const struct sim_demand *dem, const double *dlat,
		const double *dlon, size_t ndrv, uint64_t seed, struct figures *f)
{
	char text[512];
	snprintf(text, sizeof text,
		 "[match]\nmode = %s\nbatch_window = %" PRId64 "ms\nmax_search = %ds\nreposition = %s\n"
		 "reposition_interval = %" PRId64 "ms\n%s\n",
		 mode, window_ms, (int)S.patience_s + 60, repo ? "true" : "false", S.rp_interval_ms,
		 S.match_extra ? S.match_extra : "");
	struct cfg_errors errs;
	if (config_load_buffer(&S.cfg, "matching_sim", text, NULL, &errs) != RH_OK) {
		fprintf(stderr, "matching_sim: config: %s\n", errs.msg[0]);
		exit(1);
	}
	S.timers = rh_timers_manual(0);
	S.ndrv = ndrv;
	S.drv = rh_calloc(ndrv, sizeof *S.drv);
	for (size_t i = 0; i < ndrv; i++) {
		struct sdrv *v = &S.drv[i];
		uint64_t x = i;
		memcpy(v->id.b, &x, sizeof x);
		v->id.b[8] = 0xd0;
		v->lat = dlat[i];
		v->lon = dlon[i];
		v->version = 1;
		v->free_since = 0;
		sim_rng_seed(&v->rng, seed, 1000 + i);
	}
	S.ntrips = dem->n;
	S.trips = rh_calloc(dem->n, sizeof *S.trips);
	S.nheap = 0;
	S.m2m_calls = S.m2m_pairs = 0;
	S.win_trips = S.win_multi = S.free_at_request = 0;
	S.offers_in_window = S.offers_not_nearest = 0;
	S.regret_s = 0;
	S.win_at = -1;
	S.suggestions = S.followed = 0;
	S.reposition_km = 0;
	S.rp = repo ? reposition_new(&S.cfg.match) : NULL;
	S.last_request_ms = dem->n ? (int64_t)(dem->req[dem->n - 1].t_s * 1000) : 0;
	if (repo)
		ev_push((struct ev){ .t = S.rp_interval_ms, .kind = EV_REPOSITION });
	for (size_t j = 0; j < dem->n; j++) {
		struct strip *t = &S.trips[j];
		uint64_t x = j;
		memcpy(t->id.b, &x, sizeof x);
		t->id.b[8] = 0x7e;
		t->req = &dem->req[j];
		t->driver = -1;
		t->t_matched = t->t_arrived = t->t_done = -1;
		ev_push((struct ev){ .t = (int64_t)(dem->req[j].t_s * 1000), .kind = EV_REQUEST, .trip = (int)j });
	}
	const struct dispatch_world w = {
		.candidates = w_candidates, .any_free = w_any_free, .driver = w_driver, .eta = w_eta,
		.nearby = w_nearby, .etas = w_etas, .reserve = w_reserve, .offer = w_offer,
		.ended = w_ended, .progress = w_progress, .give_up = w_give_up, .ctx = &S,
	};
	S.d = dispatch_new(&S.cfg.match, S.timers, &w);
	dispatch_open(S.d, 0);
	for (;;) {
		int64_t tn = rh_timers_next(S.timers);
		if (S.nheap == 0 && tn < 0)
			break;
		if (S.nheap == 0 || (tn >= 0 && tn < S.heap[0].t)) {
			rh_timers_advance(S.timers, tn);
			continue;
		}
		int64_t te = S.heap[0].t;
		if (te > rh_timers_now(S.timers))
			rh_timers_advance(S.timers, te);
		struct ev e = ev_pop();
		ev_run(&e);
	}
	/* figures */
	double *match = rh_malloc((dem->n + 1) * sizeof *match);
	size_t nm = 0, nc = 0, ne = 0, nq = 0;
	double wait = 0, dead = 0, err = 0, bias = 0, msum = 0, dsum = 0;
	for (size_t j = 0; j < dem->n; j++) {
		const struct strip *t = &S.trips[j];
		if (t->t_matched >= 0)
			match[nm++] = (double)(t->t_matched - t->t_req) / 1000;
		nq += t->queued;
		if (t->t_done < 0)
			continue;
		nc++;
		msum += (double)(t->t_matched - t->t_req) / 1000;
		dsum += (double)(t->t_arrived - t->t_matched) / 1000;
		wait += (double)(t->t_arrived - t->t_req) / 1000;
		dead += t->pickup_m / 1000;
		if (t->has_est) {
			double x = (t->est_arrival_ms - (double)t->t_arrived) / 1000;
			err += fabs(x);
			bias += x;
			ne++;
		}
	}
	qsort(match, nm, sizeof *match, dbl_cmp);
	f->requests = dem->n;
	f->completed = nc;
	f->wait_mean_s = nc ? wait / (double)nc : 0;
	f->match_p95_s = nm ? match[(size_t)floor(0.95 * (double)(nm - 1))] : 0;
	f->completed_pct = dem->n ? 100.0 * (double)nc / (double)dem->n : 0;
	f->deadhead_km = nc ? (dead + S.reposition_km) / (double)nc : 0; /* repositioning is empty driving too */
	f->suggestions = S.suggestions;
	f->followed = S.followed;
	f->est_mae_s = ne ? err / (double)ne : 0;
	f->est_bias_s = ne ? bias / (double)ne : 0;
	f->match_mean_s = nc ? msum / (double)nc : 0;
	f->drive_mean_s = nc ? dsum / (double)nc : 0;
	f->queued_pct = dem->n ? 100.0 * (double)nq / (double)dem->n : 0;
	f->free_mean = dem->n ? (double)S.free_at_request / (double)dem->n : 0;
	f->win_trips_mean = S.m2m_calls ? (double)S.win_trips / (double)S.m2m_calls : 0;
	f->win_multi_pct = S.m2m_calls ? 100.0 * (double)S.win_multi / (double)S.m2m_calls : 0;
	f->not_nearest_pct = S.offers_in_window ? 100.0 * (double)S.offers_not_nearest / (double)S.offers_in_window : 0;
	f->regret_s = S.offers_in_window ? S.regret_s / (double)S.offers_in_window : 0;
	f->m2m_calls = S.m2m_calls;
	f->m2m_pairs_mean = S.m2m_calls ? (double)S.m2m_pairs / (double)S.m2m_calls : 0;
	rh_free(match);
	reposition_free(S.rp);
	S.rp = NULL;
	dispatch_free(S.d);
	rh_timers_free(S.timers);
	config_fini(&S.cfg);
	rh_free(S.drv);
	rh_free(S.trips);
}

/* ------------------------------------------------------------ setup */

/* A point routes join both ways with the box's middle (on the map's
 * connected core). */
static bool usable(double lat, double lon, double clat, double clon)
{
	struct route_result rr;
	return routing_route(S.r, lat, lon, clat, clon, false, &rr) == RH_OK &&
	       routing_route(S.r, clat, clon, lat, lon, false, &rr) == RH_OK;
}

static void print_figs(const char *mode, const struct figures *f)
{
	printf("pickup_wait_mean_s_%s=%.1f\n", mode, f->wait_mean_s);
	printf("match_time_p95_s_%s=%.1f\n", mode, f->match_p95_s);
	printf("completed_pct_%s=%.1f\n", mode, f->completed_pct);
	printf("deadhead_km_per_trip_%s=%.3f\n", mode, f->deadhead_km);
	printf("estimate_pickup_mae_s_%s=%.1f\n", mode, f->est_mae_s);
	printf("estimate_pickup_bias_s_%s=%.1f\n", mode, f->est_bias_s);
	if (f->suggestions)
		printf("reposition_followed_%s=%zu/%zu\n", mode, f->followed, f->suggestions);
	printf("match_time_mean_s_%s=%.1f\n", mode, f->match_mean_s);
	printf("pickup_drive_mean_s_%s=%.1f\n", mode, f->drive_mean_s);
	printf("queued_pct_%s=%.1f\n", mode, f->queued_pct);
	printf("free_drivers_at_request_%s=%.1f\n", mode, f->free_mean);
	if (f->m2m_calls) {
		printf("window_trips_mean_%s=%.2f\n", mode, f->win_trips_mean);
		printf("window_multi_pct_%s=%.1f\n", mode, f->win_multi_pct);
		printf("window_not_nearest_pct_%s=%.1f\n", mode, f->not_nearest_pct);
		printf("window_pickup_given_up_s_%s=%.1f\n", mode, f->regret_s);
	}
}

static double gain_pct(const struct figures *base, const struct figures *x)
{
	return base->wait_mean_s > 0 ? 100 * (base->wait_mean_s - x->wait_mean_s) / base->wait_mean_s : 0;
}

int main(int argc, char **argv)
{
	const char *map = NULL, *csv = NULL, *od = NULL, *bbox = NULL, *start = "2014-04-30 18:00:00";
	double window = 3600;
	int mult = 1;
	long drivers = -1;
	uint64_t seed = 23;
	int64_t bwin = 2000;
	S.accept = 0.85;
	S.ignore = 0.05;
	S.accept_delay_s = 5;
	S.patience_s = 600;
	S.follow = 0.7;
	S.rp_interval_ms = 60000;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v)
			goto usage;
		if (!strcmp(a, "--map"))
			map = v;
		else if (!strcmp(a, "--csv"))
			csv = v;
		else if (!strcmp(a, "--od"))
			od = v;
		else if (!strcmp(a, "--bbox"))
			bbox = v;
		else if (!strcmp(a, "--start"))
			start = v;
		else if (!strcmp(a, "--window"))
			window = atof(v);
		else if (!strcmp(a, "--mult"))
			mult = atoi(v);
		else if (!strcmp(a, "--drivers"))
			drivers = atol(v);
		else if (!strcmp(a, "--seed"))
			seed = strtoull(v, NULL, 10);
		else if (!strcmp(a, "--batch-window"))
			bwin = atoll(v);
		else if (!strcmp(a, "--accept"))
			S.accept = atof(v);
		else if (!strcmp(a, "--follow"))
			S.follow = atof(v);
		else if (!strcmp(a, "--reposition-interval"))
			S.rp_interval_ms = atoll(v);
		else if (!strcmp(a, "--patience"))
			S.patience_s = atof(v);
		else if (!strcmp(a, "--match"))
			S.match_extra = v;
		else
			goto usage;
		i++;
	}
	if (!map || !csv || !bbox)
		goto usage;
	struct sim_bbox box;
	if (!sim_bbox_parse(bbox, &box)) {
		fprintf(stderr, "matching_sim: bad --bbox\n");
		return 2;
	}
	struct rh_config rcfg;
	struct cfg_errors errs;
	char err[256];
	if (config_load_buffer(&rcfg, "matching_sim", "", NULL, &errs) != RH_OK ||
	    routing_load(map, &rcfg.routing, &S.r, err, sizeof err) != RH_OK) {
		fprintf(stderr, "matching_sim: %s: %s\n", map, err);
		return 1;
	}
	struct sim_bbox inner = sim_bbox_shrink(box, 250);
	struct sim_replay_opts ro = { .box = inner, .use_box = true, .window_s = window, .compress = 1, .need_time = true };
	if (!sim_parse_time(start, &ro.start)) {
		fprintf(stderr, "matching_sim: bad --start\n");
		return 2;
	}
	struct sim_demand dem, odd;
	sim_demand_init(&dem);
	sim_demand_init(&odd);
	if (sim_demand_load_csv(csv, &ro, &dem, err, sizeof err) != RH_OK) {
		fprintf(stderr, "matching_sim: %s: %s\n", csv, err);
		return 1;
	}
	if (od) {
		struct sim_replay_opts oo = { .box = inner, .use_box = true, .start = -1, .compress = 1 };
		if (sim_demand_load_csv(od, &oo, &odd, err, sizeof err) != RH_OK) {
			fprintf(stderr, "matching_sim: %s: %s\n", od, err);
			return 1;
		}
	}
	struct sim_rng rng;
	sim_rng_seed(&rng, seed, 1);
	sim_demand_multiply(&dem, &rng, mult, 60, 150);
	sim_demand_fill_dropoffs(&dem, &odd, &rng);
	S.epoch_s = dem.window_start;
	double clat = (box.min_lat + box.max_lat) / 2, clon = (box.min_lon + box.max_lon) / 2;
	/* keep the requests both of whose ends the roads reach */
	size_t kept = 0, dropped = 0;
	for (size_t j = 0; j < dem.n; j++) {
		struct sim_request *q = &dem.req[j];
		if (!q->has_dropoff) {
			q->has_dropoff = true;
			q->dlat = sim_rng_range(&rng, inner.min_lat, inner.max_lat);
			q->dlon = sim_rng_range(&rng, inner.min_lon, inner.max_lon);
		}
		if (usable(q->plat, q->plon, clat, clon) && usable(q->dlat, q->dlon, clat, clon))
			dem.req[kept++] = *q;
		else
			dropped++;
	}
	dem.n = kept;
	if (drivers < 0)
		drivers = 30L * mult; /* the 1x hour's 95 requests keep about 30 cars busy */
	double *dlat = rh_malloc((size_t)drivers * sizeof *dlat), *dlon = rh_malloc((size_t)drivers * sizeof *dlon);
	for (long i = 0; i < drivers;) {
		double la = sim_rng_range(&rng, inner.min_lat, inner.max_lat),
		       lo = sim_rng_range(&rng, inner.min_lon, inner.max_lon);
		if (!usable(la, lo, clat, clon))
			continue;
		dlat[i] = la;
		dlon[i++] = lo;
	}
	printf("# matching_sim: %dx demand, %zu requests (%zu dropped: off the roads), %ld drivers, seed %" PRIu64
	       ", batch window %" PRId64 " ms, accept %.2f, ignore %.2f, patience %.0f s\n",
	       mult, dem.n, dropped, drivers, seed, bwin, S.accept, S.ignore, S.patience_s);
	struct figures g, b, gr, br;
	run("greedy", false, bwin, &dem, dlat, dlon, (size_t)drivers, seed, &g);
	run("batch", false, bwin, &dem, dlat, dlon, (size_t)drivers, seed, &b);
	run("greedy", true, bwin, &dem, dlat, dlon, (size_t)drivers, seed, &gr);
	run("batch", true, bwin, &dem, dlat, dlon, (size_t)drivers, seed, &br);
	printf("requests=%zu\n", dem.n);
	printf("drivers=%ld\n", drivers);
	print_figs("greedy", &g);
	print_figs("batch", &b);
	print_figs("greedy_reposition", &gr);
	print_figs("batch_reposition", &br);
	printf("batch_wait_gain_pct=%.1f\n", gain_pct(&g, &b));
	printf("reposition_wait_gain_pct=%.1f\n", gain_pct(&g, &gr));
	printf("reposition_batch_wait_gain_pct=%.1f\n", gain_pct(&b, &br));
	printf("batch_m2m_calls=%zu\n", b.m2m_calls);
	printf("batch_m2m_pairs_mean=%.0f\n", b.m2m_pairs_mean);
	rh_free(S.win_eta);
	rh_free(S.win_trip);
	rh_free(S.win_drv);
	rh_free(dlat);
	rh_free(dlon);
	sim_demand_fini(&dem);
	sim_demand_fini(&odd);
	routing_free(S.r);
	config_fini(&rcfg);
	return 0;
usage:
	fprintf(stderr, "usage: matching_sim --map M --bbox minlon,minlat,maxlon,maxlat --csv F [--od F] [--start T] "
			"[--window S] [--mult N] [--drivers N] [--seed S] [--batch-window MS] [--accept P] [--patience S] "
			"[--follow P] [--reposition-interval MS] [--match 'key = value']\n");
	return 2;
}
