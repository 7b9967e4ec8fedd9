/* The matcher: one ride per active trip, kept in step with what the trip
 * module tells it; dispatch searches for SEARCHING trips through the world
 * below (presence for drivers and their reservations, pricing for pickup
 * ETAs, the gateway for the driver's messages, the trip module for the
 * no_drivers cancellation); the feed tells the rider. */
#include "match_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/strbuf.h"
#include "core/timer.h"
#include "gateway/gateway.h"
#include "presence/presence.h"
#include "pricing/pricing.h"

#define MATCH_MAX_CANDIDATES 256

int64_t match_now(const struct matcher *m)
{
	return rh_timers_now(m->deps.timers);
}

void match_count_offer(struct matcher *m, const char *result)
{
	const char *lv[] = { result };
	metric_inc(metric_cell(m->f_offers, lv));
}

struct session *match_session(const struct matcher *m, const struct uuid *account)
{
	return gateway_session_of(m->deps.gateway, account);
}

/* Unix seconds now: when a drive starts, for a calibrated map's hour of the week. */
static int64_t match_wall_s(void)
{
	return rh_wall_ms() / 1000;
}

double match_eta(const struct matcher *m, double lat, double lon, double tlat, double tlon)
{
	double eta, road;
	pricing_etas(m->deps.pricing, &lat, &lon, 1, tlat, tlon, match_wall_s(), &eta, &road);
	return eta < 0 ? 0 : eta;
}

cJSON *match_point_json(double lat, double lon, int version)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "lat", lat);
	cJSON_AddNumberToObject(o, version >= 2 ? "lng" : "lon", lon);
	return o;
}

cJSON *match_money_json(int64_t minor, const char *currency, int version)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "currency", currency);
	cJSON_AddNumberToObject(o, "amount", version >= 2 ? (double)minor : (double)minor / 100.0);
	return o;
}

void match_send_assigned(struct matcher *m, const struct ride *r, struct session *s)
{
	(void)m;
	int v = s->protocol >= 2 ? 2 : 1;
	cJSON *p = cJSON_CreateObject();
	cJSON_AddStringToObject(p, "trip_id", r->trip_s);
	cJSON_AddStringToObject(p, "state", trip_state_name(r->state));
	cJSON_AddStringToObject(p, "rider_id", r->rider_s);
	cJSON_AddItemToObject(p, "pickup", match_point_json(r->plat, r->plng, v));
	cJSON_AddItemToObject(p, "dropoff", match_point_json(r->dlat, r->dlng, v));
	cJSON_AddItemToObject(p, "fare", match_money_json(r->fare_total, r->currency, v));
	gateway_send_v(s, "trip.assigned", v, p, r->trip_s);
}

/* ------------------------------------------------------------ rides */

static void match_ride_set_driver(struct matcher *m, struct ride *r, const struct uuid *driver)
{
	if (r->has_driver && uuid_eq(&r->driver, driver))
		return;
	if (r->has_driver && umap_get(&m->by_driver, &r->driver) == r)
		umap_del(&m->by_driver, &r->driver);
	r->driver = *driver;
	r->has_driver = true;
	uuid_format(driver, r->driver_s);
	umap_put(&m->by_driver, driver, r);
}

struct ride *match_ride_get(struct matcher *m, const struct trip *t, bool *fresh)
{
	struct ride *r = umap_get(&m->rides, &t->id);
	*fresh = r == NULL;
	if (r)
		return r;
	r = RH_NEW(struct ride);
	r->m = m;
	r->trip = t->id;
	r->rider = t->rider;
	uuid_format(&t->id, r->trip_s);
	uuid_format(&t->rider, r->rider_s);
	r->state = t->state;
	r->booked = t->booked;
	r->scheduled_at = t->scheduled_at;
	int v = presence_vehicle_index(m->deps.presence, t->vehicle_type);
	r->vehicle = v < 0 ? 0 : v;
	r->plat = t->pickup_lat;
	r->plng = t->pickup_lng;
	r->dlat = t->dropoff_lat;
	r->dlng = t->dropoff_lng;
	r->fare_total = t->fare_quoted;
	snprintf(r->currency, sizeof r->currency, "%s", t->currency);
	match_feed_start(r);
	if (t->has_driver)
		match_ride_set_driver(m, r, &t->driver);
	umap_put(&m->rides, &t->id, r);
	umap_put(&m->by_rider, &t->rider, r);
	return r;
}

static void match_ride_free(struct matcher *m, struct ride *r)
{
	umap_del(&m->rides, &r->trip);
	if (r->has_driver && umap_get(&m->by_driver, &r->driver) == r)
		umap_del(&m->by_driver, &r->driver);
	if (umap_get(&m->by_rider, &r->rider) == r)
		umap_del(&m->by_rider, &r->rider);
	match_schedule_del(m->schedule, &r->trip);
	match_feed_end(r);
	match_feed_free(&r->feed);
	rh_free(r);
}

static void match_search(struct matcher *m, const struct ride *r, int64_t started, int64_t now)
{
	struct dispatch_trip dt = { .id = r->trip, .lat = r->plat, .lon = r->plng, .vehicle = r->vehicle,
				    .max_search_ms = r->booked ? m->cfg->booking_max_wait_ms : 0 };
	dispatch_search(m->dispatch, &dt, started, now);
}

/* ------------------------------------------------------------ what trips tell */

/* MATCHED: the search is over, the rider hears who comes, the driver gets
 * the trip (after the acknowledgement of their own accept, commands.c, or
 * now when an operator assigned them). */
static void match_on_matched(struct matcher *m, struct ride *r, const struct trip *t, enum trip_role by, int64_t now)
{
	if (t->has_driver)
		match_ride_set_driver(m, r, &t->driver);
	int64_t started = dispatch_search_started(m->dispatch, &r->trip);
	if (started >= 0)
		metric_observe(m->f_match_time, m->m_match_time, (double)(now - started) / 1000.0);
	dispatch_stop(m->dispatch, &r->trip, r->has_driver ? &r->driver : NULL, "matched_elsewhere", now);
	cJSON *p = cJSON_CreateObject();
	cJSON *drv = trip_view_driver_json(t);
	if (drv && !cJSON_HasObjectItem(drv, "rating"))
		cJSON_AddNullToObject(drv, "rating"); /* as the API's accounts say it: null until the first rating */
	if (drv)
		cJSON_AddItemToObject(p, "driver", drv);
	struct presence_hit h;
	if (r->has_driver && presence_driver(m->deps.presence, &r->driver, &h) && (h.lat || h.lon))
		cJSON_AddNumberToObject(p, "pickup_eta_s", llround(match_eta(m, h.lat, h.lon, r->plat, r->plng)));
	match_feed_send(r, "trip.matched", p);
	struct session *s = r->has_driver && by != TRIP_ROLE_DRIVER ? match_session(m, &r->driver) : NULL;
	if (s)
		match_send_assigned(m, r, s);
}

/* SCHEDULED -> SEARCHING: the scheduled ride's search starts now; the
 * rider hears it (trip.state_changed, with the time it is for). */
static void match_on_searching(struct matcher *m, struct ride *r, int64_t now)
{
	cJSON *p = cJSON_CreateObject();
	cJSON_AddStringToObject(p, "state", trip_state_name(TRIP_SEARCHING));
	if (r->scheduled_at) {
		char at[32];
		rh_format_rfc3339(r->scheduled_at, at);
		cJSON_AddStringToObject(p, "scheduled_at", at);
	}
	match_feed_send(r, "trip.state_changed", p);
	match_suggest_demand(m, r->plat, r->plng, now);
	match_search(m, r, now, now);
}

/* Any other state: the rider hears it, the driver too when someone else
 * made the change (their own command is acknowledged instead); an end frees
 * the ride. */
static void match_on_state(struct matcher *m, struct ride *r, const struct trip *t, enum trip_role by, int64_t now)
{
	if (t->state == TRIP_IN_PROGRESS)
		match_meter_start(&r->meter, now);
	cJSON *p = cJSON_CreateObject();
	cJSON_AddStringToObject(p, "state", trip_state_name(t->state));
	cJSON *view = t->state == TRIP_COMPLETED || t->state == TRIP_CANCELLED ? trip_view_json(t) : NULL;
	cJSON *fare = t->state == TRIP_COMPLETED ? cJSON_DetachItemFromObjectCaseSensitive(view, "fare") : NULL;
	cJSON *canc = t->state == TRIP_CANCELLED ? cJSON_DetachItemFromObjectCaseSensitive(view, "cancellation") : NULL;
	cJSON_Delete(view);
	if (fare)
		cJSON_AddItemToObject(p, "fare", fare);
	if (canc)
		cJSON_AddItemToObject(p, "cancellation", canc);
	cJSON *dp = cJSON_Duplicate(p, 1);
	match_feed_send(r, "trip.state_changed", p);
	struct session *s = r->has_driver && by != TRIP_ROLE_DRIVER ? match_session(m, &r->driver) : NULL;
	if (s) {
		cJSON_AddStringToObject(dp, "trip_id", r->trip_s);
		gateway_send(s, "trip.state_changed", dp, r->trip_s);
	} else {
		cJSON_Delete(dp);
	}
	if (!trip_state_is_active(t->state)) {
		dispatch_stop(m->dispatch, &r->trip, NULL, "trip_cancelled", now);
		match_ride_free(m, r);
	}
}

static void match_trip_changed(void *ctx, const struct trip_event *e)
{
	struct matcher *m = ctx;
	const struct trip *t = e->trip;
	int64_t now = match_now(m);
	bool fresh;
	struct ride *r = match_ride_get(m, t, &fresh);
	if (fresh && !e->created) {
		match_feed_resume(r); /* a trip of the last run: its rider may have seen numbers already */
		r->lost = MATCH_LOST_UNKNOWN; /* (the last run may have flagged its driver) */
	}
	if (e->recovered) {
		if (fresh) /* (a ride followed already is newer than the read) */
			match_recover_ride(m, r, t);
		return;
	}
	if (t->state == TRIP_SCHEDULED) { /* made, or heard of first as it is */
		if (fresh || e->created)
			match_scheduled_add(m, r);
		return;
	}
	if (e->created || (fresh && t->state == TRIP_SEARCHING)) {
		if (e->created)
			match_suggest_demand(m, r->plat, r->plng, now);
		if (t->state == TRIP_SEARCHING)
			match_search(m, r, now, now);
		return;
	}
	if (!fresh && r->state == t->state)
		return; /* a repeat of what we know already */
	enum trip_state before = r->state;
	r->state = t->state;
	if (t->state == TRIP_SEARCHING && before == TRIP_SCHEDULED)
		match_on_searching(m, r, now);
	else if (t->state == TRIP_MATCHED)
		match_on_matched(m, r, t, e->by, now);
	else
		match_on_state(m, r, t, e->by, now);
}

void match_recover_ride(struct matcher *m, struct ride *r, const struct trip *t)
{
	int64_t now = match_now(m);
	r->state = t->state;
	if (t->state == TRIP_SCHEDULED) {
		match_scheduled_add(m, r); /* (due while the daemon was down: at once) */
	} else if (t->state == TRIP_SEARCHING) {
		int64_t since = trip_search_start(t);
		int64_t elapsed = since ? m->deps.wall_ms() - since : 0;
		match_search(m, r, now - (elapsed > 0 ? elapsed : 0), now);
	} else if (t->state == TRIP_IN_PROGRESS) {
		r->meter.running = true;
		r->meter.resuming = true; /* recover.c reads the distance so far */
		int64_t elapsed = t->started_at ? rh_wall_ms() - t->started_at : 0;
		r->meter.started_at = now - (elapsed > 0 ? elapsed : 0);
	}
	/* a driver who reconnected before the trips were read back is told now */
	struct session *s = r->has_driver ? match_session(m, &r->driver) : NULL;
	if (s)
		match_send_assigned(m, r, s);
}

/* ------------------------------------------------------------ what presence tells */

static void match_on_location(void *ctx, const struct uuid *driver, const struct uuid *trip, double lat, double lon,
			      float speed, float accuracy, int64_t device_ms, int64_t now)
{
	struct matcher *m = ctx;
	struct ride *r = umap_get(&m->by_driver, driver);
	(void)trip;
	(void)now;
	if (!r)
		return;
	if (r->state == TRIP_IN_PROGRESS)
		match_meter_fix(&r->meter, m->cfg, lat, lon, accuracy, device_ms);
	if (!trip_state_is_active(r->state) || r->state == TRIP_SEARCHING)
		return;
	/* Every ping of every driver on a trip comes here: the members are
	 * written straight, without a cJSON tree and printf's %g for each
	 * number (a third of the relay's time went there). Positions with 7
	 * decimals (1 cm), speed with 1. */
	bool to_dropoff = r->state == TRIP_IN_PROGRESS;
	double eta = match_eta(m, lat, lon, to_dropoff ? r->dlat : r->plat, to_dropoff ? r->dlng : r->plng);
	struct strbuf *sb = match_feed_buf(m); /* (kept: no allocation per message) */
	sb_puts(sb, "{\"location\":{\"lat\":");
	sb_fixed(sb, lat, 7);
	int lon_at = (int)sb->len + 2; /* the "lon" key: "lng" in version 2 */
	sb_puts(sb, ",\"lon\":");
	sb_fixed(sb, lon, 7);
	sb_putc(sb, '}');
	if (speed >= 0) {
		sb_puts(sb, ",\"speed_kmh\":");
		sb_fixed(sb, speed, 1);
	}
	sb_puts(sb, ",\"eta_s\":");
	sb_int(sb, llround(eta));
	sb_puts(sb, to_dropoff ? ",\"eta_to\":\"dropoff\"" : ",\"eta_to\":\"pickup\"");
	match_feed_send_lon_sb(r, "driver.location", sb, lon_at);
}

static void match_on_available(void *ctx, const struct uuid *driver, int64_t now)
{
	struct matcher *m = ctx;
	if (m->cfg->automatic)
		dispatch_driver_free(m->dispatch, driver, now);
}

static void match_send_offer(struct matcher *m, const struct dispatch_offer *o, const struct ride *r,
			     struct session *s);

/* A driver (re)connected: tell them where they stand. */
static void match_on_driver_opened(void *ctx, const struct uuid *driver, int64_t now)
{
	struct matcher *m = ctx;
	struct session *s = match_session(m, driver);
	struct ride *r = umap_get(&m->by_driver, driver);
	const struct dispatch_offer *o = dispatch_offer_of(m->dispatch, driver);
	(void)now;
	if (!s)
		return;
	if (r) {
		match_send_assigned(m, r, s);
	} else if (o && o->state == DISPATCH_LIVE) {
		struct ride *or = umap_get(&m->rides, &o->trip);
		if (or)
			match_send_offer(m, o, or, s);
	}
}

/* ------------------------------------------------------------ dispatch's world */

static void match_cand_of(const struct presence_hit *h, struct dispatch_cand *c)
{
	*c = (struct dispatch_cand){ .driver = h->driver, .lat = h->lat, .lon = h->lon, .vehicle = h->vehicle,
				     .version = h->version, .idle_ms = h->idle_ms, .offers = h->offers,
				     .accepts = h->accepts, .eta_s = -1, .road_m = h->dist_m };
}

static size_t match_world_candidates(void *ctx, const struct dispatch_trip *t, double radius_m, int64_t now,
				     struct dispatch_cand *out, size_t k)
{
	struct matcher *m = ctx;
	struct presence_hit hits[MATCH_MAX_CANDIDATES];
	size_t n = presence_nearest(m->deps.presence, t->lat, t->lon, radius_m, DRIVER_AVAILABLE, 1u << t->vehicle, now,
				    hits, k < MATCH_MAX_CANDIDATES ? k : MATCH_MAX_CANDIDATES);
	/* pickup ETAs of all of them at once (one search from the pickup
	 * when a road map is loaded) */
	double lat[MATCH_MAX_CANDIDATES], lon[MATCH_MAX_CANDIDATES], eta[MATCH_MAX_CANDIDATES], road[MATCH_MAX_CANDIDATES];
	for (size_t i = 0; i < n; i++) {
		lat[i] = hits[i].lat;
		lon[i] = hits[i].lon;
	}
	pricing_etas(m->deps.pricing, lat, lon, n, t->lat, t->lon, match_wall_s(), eta, road);
	size_t j = 0;
	for (size_t i = 0; i < n; i++) {
		if (!match_session(m, &hits[i].driver))
			continue;
		match_cand_of(&hits[i], &out[j]);
		out[j].eta_s = eta[i];
		out[j].road_m = road[i]; /* from here on: along the road */
		j++;
	}
	return j;
}

/* Batch mode: the drivers candidates() would list, without ETAs (the
 * window asks for all of them at once, match_world_etas). */
static size_t match_world_nearby(void *ctx, const struct dispatch_trip *t, double radius_m, int64_t now,
				 struct dispatch_cand *out, size_t k)
{
	struct matcher *m = ctx;
	struct presence_hit hits[MATCH_MAX_CANDIDATES];
	size_t n = presence_nearest(m->deps.presence, t->lat, t->lon, radius_m, DRIVER_AVAILABLE, 1u << t->vehicle, now,
				    hits, k < MATCH_MAX_CANDIDATES ? k : MATCH_MAX_CANDIDATES);
	size_t j = 0;
	for (size_t i = 0; i < n; i++)
		if (match_session(m, &hits[i].driver))
			match_cand_of(&hits[i], &out[j++]);
	return j;
}

/* Batch mode: one many-to-many question for a window's candidate pairs. */
static void match_world_etas(void *ctx, const struct dispatch_cand *drivers, size_t nd, const struct dispatch_trip *trips,
			     size_t nt, const uint8_t *want, double *eta_s, double *road_m)
{
	struct matcher *m = ctx;
	double *lat = rh_malloc((nd + nt + 1) * sizeof *lat), *lon = rh_malloc((nd + nt + 1) * sizeof *lon);
	for (size_t i = 0; i < nd; i++) {
		lat[i] = drivers[i].lat;
		lon[i] = drivers[i].lon;
	}
	for (size_t j = 0; j < nt; j++) {
		lat[nd + j] = trips[j].lat;
		lon[nd + j] = trips[j].lon;
	}
	pricing_etas_many(m->deps.pricing, lat, lon, nd, lat + nd, lon + nd, nt, want, match_wall_s(), eta_s, road_m);
	rh_free(lat);
	rh_free(lon);
}

static bool match_world_any_free(void *ctx, const struct dispatch_trip *t, double radius_m, int64_t now)
{
	struct matcher *m = ctx;
	return presence_count(m->deps.presence, t->lat, t->lon, radius_m, 1u << DRIVER_AVAILABLE, 1u << t->vehicle, now,
			      1) > 0;
}

static bool match_world_driver(void *ctx, const struct uuid *driver, int64_t now, struct dispatch_cand *out)
{
	struct matcher *m = ctx;
	struct presence_hit h;
	if (!match_session(m, driver) || !presence_hit_of(m->deps.presence, driver, DRIVER_AVAILABLE, now, &h))
		return false;
	match_cand_of(&h, out);
	return true;
}

static bool match_world_eta(void *ctx, struct dispatch_cand *c, const struct dispatch_trip *t)
{
	struct matcher *m = ctx;
	pricing_etas(m->deps.pricing, &c->lat, &c->lon, 1, t->lat, t->lon, match_wall_s(), &c->eta_s, &c->road_m);
	return c->eta_s >= 0;
}

struct match_reserve_ctx {
	struct matcher *m;
	struct uuid offer;
};

static void match_reserved(void *arg, enum presence_reserve_answer answer, int64_t version)
{
	struct match_reserve_ctx *c = arg;
	enum dispatch_reserve_answer a = answer == PRESENCE_RESERVED ? DISPATCH_RESERVED
				       : answer == PRESENCE_TAKEN    ? DISPATCH_TAKEN
								     : DISPATCH_UNANSWERED;
	dispatch_reserved(c->m->dispatch, &c->offer, a, version, match_now(c->m));
	rh_free(c);
}

static void match_world_reserve(void *ctx, const struct dispatch_offer *o)
{
	struct matcher *m = ctx;
	struct match_reserve_ctx *c = RH_NEW(struct match_reserve_ctx);
	c->m = m;
	c->offer = o->id;
	presence_reserve(m->deps.presence, &o->driver, o->version, match_reserved, c);
}

static void match_send_offer(struct matcher *m, const struct dispatch_offer *o, const struct ride *r,
			     struct session *s)
{
	int v = s->protocol >= 2 ? 2 : 1;
	cJSON *p = cJSON_CreateObject();
	char oid[37], exp[32];
	uuid_format(&o->id, oid);
	rh_format_rfc3339(rh_wall_ms() + (o->expires_at - match_now(m)), exp);
	cJSON_AddStringToObject(p, "offer_id", oid);
	cJSON_AddStringToObject(p, "trip_id", r->trip_s);
	cJSON_AddItemToObject(p, "pickup", match_point_json(r->plat, r->plng, v));
	cJSON_AddItemToObject(p, "dropoff", match_point_json(r->dlat, r->dlng, v));
	cJSON_AddItemToObject(p, "fare", match_money_json(r->fare_total, r->currency, v));
	cJSON_AddNumberToObject(p, "pickup_eta_s", o->eta_s);
	cJSON_AddNumberToObject(p, "distance_m", llround(o->road_m));
	cJSON_AddStringToObject(p, "expires_at", exp);
	gateway_send_v(s, "ride.offer", v, p, r->trip_s);
}

static bool match_world_offer(void *ctx, const struct dispatch_offer *o, const struct dispatch_trip *t)
{
	struct matcher *m = ctx;
	struct session *s = match_session(m, &o->driver);
	struct ride *r = umap_get(&m->rides, &t->id);
	if (!s || !r)
		return false;
	presence_note_offer(m->deps.presence, &o->driver, false);
	match_count_offer(m, "sent");
	match_send_offer(m, o, r, s);
	return true;
}

static void match_world_ended(void *ctx, const struct dispatch_offer *o, const char *reason, bool reserved, bool told)
{
	struct matcher *m = ctx;
	match_count_offer(m, reason);
	struct session *s = told ? match_session(m, &o->driver) : NULL;
	if (s) {
		char oid[37], tid[37];
		uuid_format(&o->id, oid);
		uuid_format(&o->trip, tid);
		cJSON *p = cJSON_CreateObject();
		cJSON_AddStringToObject(p, "offer_id", oid);
		cJSON_AddStringToObject(p, "trip_id", tid);
		cJSON_AddStringToObject(p, "reason", reason);
		gateway_send(s, "offer.withdrawn", p, NULL);
	}
	if (reserved)
		presence_release(m->deps.presence, &o->driver, o->version, &o->trip, reason);
	if (o->maybe_matched)
		match_accept_check(m, o);
}

static void match_world_progress(void *ctx, const struct uuid *trip, bool waiting, double radius_m, int offers,
				 const struct dispatch_estimate *est)
{
	struct matcher *m = ctx;
	struct ride *r = umap_get(&m->rides, trip);
	if (r)
		match_feed_progress(r, waiting, radius_m, offers, est);
}

struct match_give_up_ctx {
	struct matcher *m;
	struct uuid trip;
};

static void match_gave_up(void *arg, const struct trip_result *res)
{
	struct match_give_up_ctx *c = arg;
	struct matcher *m = c->m;
	if (res->err == RH_OK) {
		metric_inc(m->m_no_drivers);
	} else {
		char id[37];
		uuid_format(&c->trip, id);
		log_info(NULL, "match: the no_drivers cancellation of %s failed (%s); retrying", id, rh_err_name(res->err));
	}
	/* (refused: the trip found a driver meanwhile, or ended) */
	dispatch_gave_up(m->dispatch, &c->trip, res->err != RH_EAGAIN && res->err != RH_EDB, match_now(m));
	rh_free(c);
}

static void match_world_give_up(void *ctx, const struct uuid *trip)
{
	struct matcher *m = ctx;
	char id[37];
	uuid_format(trip, id);
	const struct ride *r = umap_get(&m->rides, trip);
	int64_t wait = r && r->booked ? m->cfg->booking_max_wait_ms : m->cfg->max_search_ms;
	log_info(NULL, "match: no driver for trip %s within %lld s", id, (long long)(wait / 1000));
	struct trip_change c;
	trip_change_init(&c, trip, TRIP_CANCELLED, TRIP_ROLE_SYSTEM, "matcher");
	snprintf(c.reason, sizeof c.reason, "no_drivers");
	c.only_from = TRIP_SEARCHING; /* never a trip that found a driver meanwhile */
	struct match_give_up_ctx *g = RH_NEW(struct match_give_up_ctx);
	g->m = m;
	g->trip = *trip;
	trip_change(m->deps.trips, &c, match_gave_up, g);
}

/* ------------------------------------------------------------ supply */

static bool match_drivers_near(void *ctx, double lat, double lng, int vehicle, double *radius_m)
{
	struct matcher *m = ctx;
	const struct cfg_list *steps = &m->cfg->radius_steps;
	uint32_t online = 1u << DRIVER_AVAILABLE | 1u << DRIVER_OFFERED | 1u << DRIVER_EN_ROUTE | 1u << DRIVER_ON_TRIP;
	*radius_m = steps->v[steps->n - 1];
	return !m->cfg->automatic ||
	       presence_count(m->deps.presence, lat, lng, *radius_m, online, 1u << vehicle, match_now(m), 1) > 0;
}

void matcher_supply(struct matcher *m, struct trip_supply *out)
{
	out->drivers_near = match_drivers_near;
	out->ctx = m;
}

/* ------------------------------------------------------------ setup */

#define MATCH_MSG_TYPES 8

void match_register_type(struct matcher *m, const struct gw_message_type *t)
{
	if (!m->msg_types)
		m->msg_types = rh_calloc(MATCH_MSG_TYPES, sizeof *m->msg_types);
	if (m->nmsg_types == MATCH_MSG_TYPES)
		abort(); /* a bug: raise MATCH_MSG_TYPES */
	struct gw_message_type *mine = &m->msg_types[m->nmsg_types++];
	*mine = *t;
	mine->ctx = m;
	gateway_register(m->deps.gateway, mine);
}

static void match_collect(void *arg)
{
	struct matcher *m = arg;
	int searching, waiting;
	dispatch_counts(m->dispatch, &searching, &waiting);
	metric_set(m->m_searching, searching);
	metric_set(m->m_waiting, waiting);
	metric_set(m->m_lost, match_lost_count(m));
	metric_set(m->m_scheduled, (double)match_schedule_count(m->schedule));
}

static void match_metrics_init(struct matcher *m, struct metrics *mx)
{
	static const char *const result_label[] = { "result", NULL };
	static const double bounds[] = { 0.1, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300 };
	m->f_offers = metrics_counter(mx, "ridehail_match_offers_total",
				      "Ride offers by outcome: sent, accepted, declined, expired, matched_elsewhere, trip_cancelled, lost_race, unanswered, unreachable, accept_failed, withdrawn, driver_assigned.",
				      result_label);
	m->f_match_time = metrics_histogram(mx, "ridehail_match_time_seconds", "From the start of a search to MATCHED.",
					    NULL, bounds, (int)(sizeof bounds / sizeof *bounds));
	m->m_match_time = metric_cell(m->f_match_time, NULL);
	m->m_searching = metric_cell(metrics_gauge(mx, "ridehail_match_searching", "Trips being searched a driver for.", NULL), NULL);
	m->m_waiting = metric_cell(metrics_gauge(mx, "ridehail_match_waiting",
						 "Trips in the demand queue: no candidate in range, waiting for a driver.", NULL),
				   NULL);
	m->m_no_drivers = metric_cell(metrics_counter(mx, "ridehail_match_no_drivers_total",
						      "Trips cancelled after match.max_search without a driver.", NULL),
				      NULL);
	m->m_scheduled = metric_cell(metrics_gauge(mx, "ridehail_match_scheduled",
						   "Scheduled rides (SCHEDULED) whose search is yet to start.", NULL),
				     NULL);
	m->m_schedule_started = metric_cell(metrics_counter(mx, "ridehail_match_scheduled_started_total",
							    "Scheduled rides moved to SEARCHING at match.schedule_lead before their time.",
							    NULL),
					    NULL);
	m->m_lost = metric_cell(metrics_gauge(mx, "ridehail_match_drivers_lost",
					      "Live trips whose driver has been gone past trip.driver_lost_after (flagged: the rider or an operator may end them).",
					      NULL),
				 NULL);
	m->m_rider_msgs = metric_cell(metrics_counter(mx, "ridehail_match_rider_messages_total",
						      "Live messages to riders (matched, driver.location, state changes, progress).",
						      NULL),
				      NULL);
	m->m_suggestions = metric_cell(metrics_counter(mx, "ridehail_match_reposition_suggestions_total",
						       "driver.reposition.suggested messages sent to idle drivers (match.reposition).",
						       NULL),
				       NULL);
	metrics_on_collect(mx, match_collect, m);
}

struct matcher *matcher_new(const struct matcher_deps *d)
{
	struct matcher *m = RH_NEW(struct matcher);
	m->deps = *d;
	m->cfg = d->cfg;
	umap_init(&m->rides);
	umap_init(&m->by_driver);
	umap_init(&m->by_rider);
	LIST_INIT(&m->checks);
	match_metrics_init(m, d->metrics);
	const struct dispatch_world w = {
		.candidates = match_world_candidates, .any_free = match_world_any_free, .driver = match_world_driver,
		.eta = match_world_eta, .nearby = match_world_nearby, .etas = match_world_etas,
		.reserve = match_world_reserve, .offer = match_world_offer,
		.ended = match_world_ended, .progress = match_world_progress, .give_up = match_world_give_up, .ctx = m,
	};
	m->dispatch = dispatch_new(m->cfg, d->timers, &w);
	match_commands_init(m);
	match_feed_init(m);
	match_scheduled_init(m);
	const struct presence_hooks ph = { .location = match_on_location, .available = match_on_available,
					   .opened = match_on_driver_opened, .ctx = m };
	presence_set_hooks(d->presence, &ph);
	const struct trip_listener tl = { .changed = match_trip_changed, .ctx = m };
	trips_listen(d->trips, &tl);
	match_suggest_init(m);
	match_recover_start(m);
	match_lost_init(m);
	return m;
}

void matcher_free(struct matcher *m)
{
	if (!m)
		return;
	match_suggest_free(m);
	dispatch_free(m->dispatch);
	match_checks_free(m);
	size_t i = 0;
	struct uuid k;
	void *v;
	while (umap_next(&m->rides, &i, &k, &v)) {
		struct ride *r = v;
		match_feed_free(&r->feed);
		rh_free(r);
	}
	umap_fini(&m->rides);
	umap_fini(&m->by_driver);
	umap_fini(&m->by_rider);
	match_schedule_free(m->schedule);
	match_feed_fini(m);
	match_lost_fini(m);
	rh_timer_free(m->recover_timer);
	rh_free(m->msg_types);
	rh_free(m);
}
