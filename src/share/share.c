/* Shared rides: the module's memory of trips and bookings (as the
 * database last answered), the start, setup (share_internal.h). */
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

static struct db_stmt share_st_active = { "share_active", "SELECT share_active()", 0 };

const char *const share_state_names[] = { "pending", "confirmed", "arrived", "picked_up", "dropped_off",
					  "cancelled", NULL };

/* ------------------------------------------------------------ memory from answers */

static int share_state_parse(const char *n)
{
	for (int i = 0; n && share_state_names[i]; i++)
		if (strcmp(share_state_names[i], n) == 0)
			return i;
	return -1;
}

/* The internal members of share_booking_plan() left out of what clients see. */
void share_view_strip(cJSON *v)
{
	static const char *const internal[] = { "direct_s", "direct_m", "solo_price", "requested_ms", "picked_up_ms" };
	for (size_t i = 0; i < sizeof internal / sizeof *internal; i++)
		cJSON_DeleteItemFromObjectCaseSensitive(v, internal[i]);
}

/* A booking's row (share_booking_plan()) into memory: made or updated. */
struct share_booking *share_booking_from(struct share *s, const cJSON *v)
{
	struct uuid id;
	if (!uuid_parse(jv_str(v, "id"), &id))
		return NULL;
	struct share_booking *b = umap_get(&s->bookings, &id);
	if (!b) {
		b = RH_NEW(struct share_booking);
		b->id = id;
		umap_put(&s->bookings, &id, b);
		uuid_parse(jv_str(v, "rider_id"), &b->rider);
		umap_put(&s->by_rider, &b->rider, b); /* (one active booking per rider: the database's index) */
	}
	int st = share_state_parse(jv_str(v, "state"));
	b->state = st < 0 ? SB_CANCELLED : (enum share_state)st;
	b->seats = (int)jv_num(v, "seats", 1);
	b->version = (int64_t)jv_num(v, "version", 1);
	const char *mode = jv_str(v, "mode");
	b->express = mode && strcmp(mode, "express") == 0;
	const cJSON *pu = cJSON_GetObjectItemCaseSensitive(v, "pickup");
	const cJSON *dr = cJSON_GetObjectItemCaseSensitive(v, "dropoff");
	b->plat = jv_num(pu, "lat", 0);
	b->plng = jv_num(pu, "lng", 0);
	b->dlat = jv_num(dr, "lat", 0);
	b->dlng = jv_num(dr, "lng", 0);
	b->direct_s = jv_num(v, "direct_s", 0);
	b->requested_ms = (int64_t)jv_num(v, "requested_ms", 0);
	b->picked_up_ms = (int64_t)jv_num(v, "picked_up_ms", 0);
	return b;
}

void share_booking_forget(struct share *s, struct share_booking *b)
{
	umap_del(&s->bookings, &b->id);
	if (umap_get(&s->by_rider, &b->rider) == b)
		umap_del(&s->by_rider, &b->rider);
	rh_free(b);
}

/* The stop list as the database stores it and the driver reads it. */
char *share_stops_json(const struct share_trip *t, bool for_driver)
{
	cJSON *a = cJSON_CreateArray();
	for (size_t i = 0; i < t->nstops; i++) {
		const struct share_booking *b = t->stops[i].b;
		cJSON *o = cJSON_CreateObject();
		char id[37];
		uuid_format(&b->id, id);
		cJSON_AddStringToObject(o, "booking_id", id);
		cJSON_AddStringToObject(o, "kind", t->stops[i].pickup ? "pickup" : "dropoff");
		if (for_driver) {
			uuid_format(&b->rider, id);
			cJSON_AddStringToObject(o, "rider_id", id);
			cJSON *loc = cJSON_AddObjectToObject(o, "location");
			cJSON_AddNumberToObject(loc, "lat", t->stops[i].pickup ? b->plat : b->dlat);
			cJSON_AddNumberToObject(loc, "lng", t->stops[i].pickup ? b->plng : b->dlng);
			cJSON_AddNumberToObject(o, "seats", b->seats);
			cJSON_AddStringToObject(o, "state", share_state_names[b->state]);
		} else {
			cJSON_AddNumberToObject(o, "lat", t->stops[i].pickup ? b->plat : b->dlat);
			cJSON_AddNumberToObject(o, "lng", t->stops[i].pickup ? b->plng : b->dlng);
		}
		cJSON_AddItemToArray(a, o);
	}
	char *out = cJSON_PrintUnformatted(a);
	cJSON_Delete(a);
	return out;
}

/* The driver's stop list (share.stops), at its version. */
void share_send_stops(struct share *s, const struct share_trip *t)
{
	struct session *ss = gateway_session_of(s->deps.gateway, &t->driver);
	if (!ss)
		return;
	char id[37];
	uuid_format(&t->id, id);
	char *stops = share_stops_json(t, true);
	cJSON *p = cJSON_CreateObject();
	cJSON_AddStringToObject(p, "trip_id", id);
	cJSON_AddNumberToObject(p, "stops_version", (double)t->stops_version);
	cJSON_AddItemToObject(p, "stops", cJSON_Parse(stops));
	cJSON_free(stops);
	gateway_send(ss, "share.stops", p, NULL);
}

/* The rider's feed: share.booking.updated with the booking as it stands. */
void share_send_rider(struct share *s, const struct uuid *rider, const cJSON *view)
{
	struct session *ss = gateway_session_of(s->deps.gateway, rider);
	if (!ss)
		return;
	cJSON *v = cJSON_Duplicate(view, true);
	share_view_strip(v);
	gateway_send(ss, "share.booking.updated", v, NULL);
}

void share_trip_remove_stops(struct share_trip *t, const struct share_booking *b, bool pickup_only)
{
	size_t m = 0;
	for (size_t i = 0; i < t->nstops; i++)
		if (t->stops[i].b != b || (pickup_only && !t->stops[i].pickup))
			t->stops[m++] = t->stops[i];
	t->nstops = m;
}

/* ------------------------------------------------------------ at start */

static void share_loaded(void *arg, const struct db_result *res)
{
	struct share *s = arg;
	cJSON *a = share_answer(res, "share_active");
	if (!a) {
		log_warn(NULL, "share: could not read the open shared trips back; trying again in 1 s");
		rh_timer_at(s->load_timer, share_now(s) + 1000);
		return;
	}
	const cJSON *bs = cJSON_GetObjectItemCaseSensitive(a, "bookings");
	const cJSON *it;
	cJSON_ArrayForEach(it, bs)
		share_booking_from(s, it);
	const cJSON *ts = cJSON_GetObjectItemCaseSensitive(a, "trips");
	size_t ntrips = 0;
	cJSON_ArrayForEach(it, ts) {
		struct share_trip *t = RH_NEW(struct share_trip);
		uuid_parse(jv_str(it, "id"), &t->id);
		uuid_parse(jv_str(it, "driver_id"), &t->driver);
		t->driver_version = (int64_t)jv_num(it, "driver_version", 0);
		t->seats = (int)jv_num(it, "seats", 1);
		t->stops_version = (int64_t)jv_num(it, "stops_version", 1);
		const cJSON *st;
		cJSON_ArrayForEach(st, cJSON_GetObjectItemCaseSensitive(it, "stops")) {
			struct uuid bid;
			struct share_booking *b = uuid_parse(jv_str(st, "booking_id"), &bid) ? umap_get(&s->bookings, &bid)
											       : NULL;
			if (!b || t->nstops >= SHARE_PLAN_MAX_STOPS)
				continue;
			b->trip = t;
			const char *kind = jv_str(st, "kind");
			t->stops[t->nstops++] = (struct share_trip_stop){ b, kind && strcmp(kind, "pickup") == 0 };
		}
		umap_put(&s->trips, &t->id, t);
		ntrips++;
	}
	log_info(NULL, "share: %zu open shared trips read back", ntrips);
	struct uuid k;
	void *v;
	for (size_t i = 0; umap_next(&s->bookings, &i, &k, &v);) {
		struct share_booking *b = v;
		if (b->state == SB_PENDING)
			share_match(s, b);
	}
	cJSON_Delete(a);
}

static void share_deferred(void *arg, int64_t now)
{
	(void)now;
	struct share *s = arg;
	share_match_waiting(s, &s->deferred);
}

static void share_load(void *arg, int64_t now)
{
	(void)now;
	struct share *s = arg;
	db_query(s->deps.db, &share_st_active, NULL, share_loaded, s);
}

void share_start(struct share *s)
{
	if (!s->deps.db)
		return;
	s->load_timer = rh_timer_new(s->deps.timers, share_load, s);
	s->defer_timer = rh_timer_new(s->deps.timers, share_deferred, s);
	rh_timer_at(s->load_timer, share_now(s));
}


struct share *share_new(const struct share_deps *d)
{
	struct share *s = RH_NEW(struct share);
	s->deps = *d;
	s->cfg = d->cfg;
	s->vehicle = tariff_find(d->tariffs, d->ntariffs, d->cfg->vehicle_type);
	if (s->vehicle < 0) {
		log_error(NULL, "share: share.vehicle_type %s is not a configured [tariff.<name>]; using %s",
			  d->cfg->vehicle_type, d->tariffs[0].name);
		s->vehicle = 0;
	}
	s->tariff = &d->tariffs[s->vehicle];
	share_card_key(pricing_key(d->pricing)->k, &s->key);
	umap_init(&s->bookings);
	umap_init(&s->trips);
	umap_init(&s->by_rider);
	static const double bounds[] = { 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1 };
	static const char *const outcome_labels[] = { "outcome", NULL };
	if (d->metrics) {
		s->f_match = metrics_histogram(d->metrics, "ridehail_share_match_seconds",
					       "Time on the loop to place one pending shared booking: the open trips near it tried (travel times and the insertion search), or the drivers for a new trip.",
					       NULL, bounds, (int)(sizeof bounds / sizeof *bounds));
		s->c_match = metric_cell(s->f_match, NULL);
		s->f_outcomes = metrics_counter(d->metrics, "ridehail_share_bookings_total",
						"Shared bookings decided, by outcome: inserted (into an open trip), new_trip, or why cancelled (no_driver, no_seat, unavailable).",
						outcome_labels);
	}
	share_lanes_init(s);
	if (d->db)
		db_register(d->db, &share_st_active);
	share_api_init(s);
	share_driver_init(s);
	return s;
}

void share_free(struct share *s)
{
	if (!s)
		return;
	struct uuid k;
	void *v;
	for (size_t i = 0; umap_next(&s->bookings, &i, &k, &v);)
		rh_free(v);
	for (size_t i = 0; umap_next(&s->trips, &i, &k, &v);)
		rh_free(v);
	umap_fini(&s->bookings);
	umap_fini(&s->trips);
	umap_fini(&s->by_rider);
	if (s->load_timer)
		rh_timer_free(s->load_timer);
	if (s->defer_timer)
		rh_timer_free(s->defer_timer);
	rh_free(s);
}
