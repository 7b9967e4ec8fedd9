/* Shared rides: the module (include/share/share.h, docs/sharing.md). */
#include "share/share.h"

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

#define SHARE_KEY_MAX 255
#define SHARE_TRIES 4        /* a booking is matched again this often after a lost race */
#define SHARE_DRIVERS 8      /* drivers looked at for a new trip */

enum share_state { SB_PENDING, SB_CONFIRMED, SB_ARRIVED, SB_PICKED_UP, SB_DROPPED_OFF, SB_CANCELLED };
static const char *const share_state_names[] = { "pending", "confirmed", "arrived", "picked_up", "dropped_off",
						 "cancelled", NULL };

struct share_trip;

/* An active booking as the last answer of the database left it. */
struct share_booking {
	struct uuid id, rider;
	struct share_trip *trip; /* NULL while pending */
	enum share_state state;
	int seats;
	bool express;
	double plat, plng, dlat, dlng;
	double direct_s;
	int64_t requested_ms, picked_up_ms; /* wall */
	int tries;
	bool busy;                /* a change of it is at the database */
	struct share_booking *next_waiting;
};

struct share_trip_stop {
	struct share_booking *b;
	bool pickup;
};

struct share_trip {
	struct uuid id, driver;
	int64_t driver_version;
	int seats;
	int64_t stops_version;
	size_t nstops;
	struct share_trip_stop stops[SHARE_PLAN_MAX_STOPS];
	bool busy;                /* an insertion is at the database: others wait */
	bool closed;              /* finished while an insertion was out: freed when it is answered */
	struct share_booking *waiting;
};

/* What one share_*() call answered: its jsonb (NULL when the call failed:
 * err and unknown say how). */
struct share_reply {
	cJSON *a;
	rh_err err;
	bool unknown;
};
typedef void (*share_done_fn)(void *arg, const struct share_reply *r);

struct share_item {
	char *json;
	share_done_fn done;
	void *arg;
	struct share_item *next;
};

struct share_lane {
	struct share *s;
	const char *kind;
	struct share_item *head, **tail;
	int busy;                 /* batches (or items sent again alone) at the database */
};

struct share {
	struct share_deps deps;
	const struct share_cfg *cfg;
	const struct tariff_cfg *tariff;
	int vehicle;
	struct share_card_key key;
	struct umap bookings, trips;
	struct gw_message_type leg_type;
	struct rh_timer *load_timer;
	struct rh_timer *defer_timer;  /* bookings waiting for the start's release of reservations */
	struct share_booking *deferred;
	struct share_lane lane_book, lane_confirm, lane_cancel, lane_leg;
	struct metric_family *f_match, *f_outcomes;
	struct metric_cell *c_match;
};

static struct db_stmt share_st_get = {
	"share_get",
	"SELECT share_booking_view(b), b.rider_id::text, share_receipt(b) FROM share_bookings b WHERE b.id = $1::uuid", 1,
};
static struct db_stmt share_st_active = { "share_active", "SELECT share_active()", 0 };

static int64_t share_now(const struct share *s)
{
	return rh_timers_now(s->deps.timers);
}

/* ------------------------------------------------------------ memory from answers */

static int share_state_parse(const char *n)
{
	for (int i = 0; n && share_state_names[i]; i++)
		if (strcmp(share_state_names[i], n) == 0)
			return i;
	return -1;
}

/* The internal members of share_booking_plan() left out of what clients see. */
static void share_view_strip(cJSON *v)
{
	static const char *const internal[] = { "direct_s", "direct_m", "solo_price", "requested_ms", "picked_up_ms" };
	for (size_t i = 0; i < sizeof internal / sizeof *internal; i++)
		cJSON_DeleteItemFromObjectCaseSensitive(v, internal[i]);
}

/* A booking's row (share_booking_plan()) into memory: made or updated. */
static struct share_booking *share_booking_from(struct share *s, const cJSON *v)
{
	struct uuid id;
	if (!uuid_parse(jv_str(v, "id"), &id))
		return NULL;
	struct share_booking *b = umap_get(&s->bookings, &id);
	if (!b) {
		b = RH_NEW(struct share_booking);
		b->id = id;
		umap_put(&s->bookings, &id, b);
	}
	uuid_parse(jv_str(v, "rider_id"), &b->rider);
	int st = share_state_parse(jv_str(v, "state"));
	b->state = st < 0 ? SB_CANCELLED : (enum share_state)st;
	b->seats = (int)jv_num(v, "seats", 1);
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

static void share_booking_forget(struct share *s, struct share_booking *b)
{
	umap_del(&s->bookings, &b->id);
	rh_free(b);
}

/* The stop list as the database stores it and the driver reads it. */
static char *share_stops_json(const struct share_trip *t, bool for_driver)
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
static void share_send_stops(struct share *s, const struct share_trip *t)
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
static void share_send_rider(struct share *s, const struct uuid *rider, const cJSON *view)
{
	struct session *ss = gateway_session_of(s->deps.gateway, rider);
	if (!ss)
		return;
	cJSON *v = cJSON_Duplicate(view, true);
	share_view_strip(v);
	gateway_send(ss, "share.booking.updated", v, NULL);
}

static void share_trip_remove_stops(struct share_trip *t, const struct share_booking *b, bool pickup_only)
{
	size_t m = 0;
	for (size_t i = 0; i < t->nstops; i++)
		if (t->stops[i].b != b || (pickup_only && !t->stops[i].pickup))
			t->stops[m++] = t->stops[i];
	t->nstops = m;
}

/* ------------------------------------------------------------ the database's answers */


/* Changes go to the database in batches, one lane per kind of change
 * (book, confirm, cancel, leg): one batch at the database at a time, the
 * next gathering meanwhile, each one share_batch() call, one transaction,
 * one commit for all its items (at rest a batch is one item and waits for
 * nothing). Every item is answered on its own: refusals are answers. A
 * batch that failed as a whole is sent again item by item, so a failure is
 * that item's only. */
#define SHARE_BATCH_MAX 64

struct share_batch_ctx {
	struct share_lane *lane;
	struct share_item *items;
	size_t n;
};

static struct db_stmt share_st_batch = { "share_batch", "SELECT share_batch($1, $2::jsonb)", 2 };

static void share_batch_send(struct share_lane *l, struct share_item *items, size_t n);
static void share_lane_send(struct share_lane *l);

/* The lane is free once its batch is answered, and after a failed batch
 * once every item sent again alone is (l->busy counts what is out). */
static void share_lane_answered(struct share_lane *l)
{
	if (--l->busy == 0)
		share_lane_send(l);
}

static void share_batch_done(void *arg, const struct db_result *res)
{
	struct share_batch_ctx *c = arg;
	struct share_lane *l = c->lane;
	cJSON *arr = res->err == RH_OK && db_rows(res) == 1 ? cJSON_Parse(db_get(res, 0, 0)) : NULL;
	bool whole = cJSON_IsArray(arr) && (size_t)cJSON_GetArraySize(arr) == c->n;
	if (!whole && c->n > 1) {
		log_warn(NULL, "share: a %s batch of %zu failed (%s); sending its items one by one", l->kind, c->n,
			 res->message);
		cJSON_Delete(arr);
		struct share_item *it = c->items;
		rh_free(c);
		while (it) {
			struct share_item *next = it->next;
			it->next = NULL;
			share_batch_send(l, it, 1);
			it = next;
		}
		share_lane_answered(l);
		return;
	}
	if (!whole)
		log_warn(NULL, "share: share_%s failed: %s", l->kind, res->message);
	struct share_reply r = { NULL, res->err == RH_OK ? RH_EDB : db_result_err(res), res->unknown };
	size_t i = 0;
	for (struct share_item *it = c->items, *next; it; it = next, i++) {
		next = it->next;
		r.a = whole ? cJSON_GetArrayItem(arr, (int)i) : NULL;
		it->done(it->arg, &r);
		rh_free(it->json);
		rh_free(it);
	}
	cJSON_Delete(arr);
	rh_free(c);
	share_lane_answered(l);
}

static void share_batch_send(struct share_lane *l, struct share_item *items, size_t n)
{
	struct strbuf sb;
	sb_init(&sb, 1u << 26);
	sb_putc(&sb, '[');
	for (struct share_item *it = items; it; it = it->next) {
		if (it != items)
			sb_putc(&sb, ',');
		sb_puts(&sb, it->json);
	}
	sb_putc(&sb, ']');
	struct share_batch_ctx *c = RH_NEW(struct share_batch_ctx);
	c->lane = l;
	c->items = items;
	c->n = n;
	l->busy++;
	const char *params[] = { l->kind, sb.buf };
	db_query(l->s->deps.db, &share_st_batch, params, share_batch_done, c);
	sb_fini(&sb);
}

static void share_lane_send(struct share_lane *l)
{
	if (l->busy || !l->head)
		return;
	struct share_item *items = l->head, *last = items;
	size_t n = 1;
	while (last->next && n < SHARE_BATCH_MAX) {
		last = last->next;
		n++;
	}
	l->head = last->next;
	last->next = NULL;
	if (!l->head)
		l->tail = &l->head;
	share_batch_send(l, items, n);
}

/* Queues one call of share_<kind>(json). */
static void share_lane_push(struct share_lane *l, const char *json, share_done_fn done, void *arg)
{
	struct share_item *it = RH_NEW(struct share_item);
	it->json = rh_strdup(json);
	it->done = done;
	it->arg = arg;
	*l->tail = it;
	l->tail = &it->next;
	share_lane_send(l);
}

/* The jsonb answer of a query of one row (share_active()); NULL when it failed. */
static cJSON *share_answer(const struct db_result *r, const char *what)
{
	if (r->err != RH_OK || db_rows(r) != 1) {
		log_warn(NULL, "share: %s failed: %s", what, r->message);
		return NULL;
	}
	return cJSON_Parse(db_get(r, 0, 0));
}

static int share_status(const cJSON *a)
{
	return (int)jv_num(a, "status", 500);
}

/* ------------------------------------------------------------ matching */

static void share_match(struct share *s, struct share_booking *b);
static void share_give_up(struct share *s, struct share_booking *b, const char *reason);

static void share_trip_unbusy(struct share *s, struct share_trip *t)
{
	t->busy = false;
	struct share_booking *w = t->waiting;
	t->waiting = NULL;
	while (w) {
		struct share_booking *next = w->next_waiting;
		w->next_waiting = NULL;
		share_match(s, w);
		w = next;
	}
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

static void share_confirm_send(struct share *s, struct share_confirm_ctx *c)
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
	c->b->busy = true;
	c->trip->busy = true;
	share_lane_push(&s->lane_confirm, sb.buf, share_confirmed, c);
	sb_fini(&sb);
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
	if (best < 0) {
		share_give_up(s, b, "no_driver");
		return;
	}
	struct share_reserve_ctx *r = RH_NEW(struct share_reserve_ctx);
	r->s = s;
	r->b = b;
	r->hit = hits[best];
	b->busy = true;
	presence_reserve(s->deps.presence, &hits[best].driver, hits[best].version, share_reserved, r);
}

/* A pending booking: into the open trip where it scores best, else a new
 * trip. */
static void share_match_search(struct share *s, struct share_booking *b, int64_t wall);

static void share_match(struct share *s, struct share_booking *b)
{
	if (b->state != SB_PENDING || b->busy)
		return;
	int64_t t0 = rh_mono_ns();
	share_match_search(s, b, rh_wall_ms());
	if (s->f_match)
		metric_observe(s->f_match, s->c_match, (double)(rh_mono_ns() - t0) / 1e9);
}

static void share_match_search(struct share *s, struct share_booking *b, int64_t wall)
{
	struct share_candidate best = { 0 };
	struct uuid k;
	void *v;
	for (size_t i = 0; umap_next(&s->trips, &i, &k, &v);) {
		struct share_trip *t = v;
		struct presence_hit car;
		if (!presence_driver(s->deps.presence, &t->driver, &car) ||
		    geo_dist_haversine_m(car.lat, car.lon, b->plat, b->plng) > (double)s->cfg->search_radius_m)
			continue;
		struct share_plan_out out;
		if (share_try_trip(s, b, t, wall, &out) && (!best.trip || out.score < best.plan.score)) {
			best.trip = t;
			best.plan = out;
		}
	}
	if (!best.trip) {
		share_new_trip(s, b, wall);
		return;
	}
	struct share_trip *t = best.trip;
	if (t->busy) {
		b->next_waiting = t->waiting;
		t->waiting = b;
		return;
	}
	struct share_confirm_ctx *c = RH_NEW(struct share_confirm_ctx);
	c->s = s;
	c->b = b;
	c->trip = t;
	/* the current list with the pickup, then the dropoff, at their
	 * positions in the new list */
	size_t m = 0;
	for (size_t i = 0; i <= t->nstops; i++) {
		if (i == best.plan.pickup_at)
			c->stops[m++] = (struct share_trip_stop){ b, true };
		if (i < t->nstops)
			c->stops[m++] = t->stops[i];
	}
	size_t at = best.plan.dropoff_at;
	memmove(&c->stops[at + 1], &c->stops[at], (m - at) * sizeof c->stops[0]);
	c->stops[at] = (struct share_trip_stop){ b, false };
	c->nstops = m + 1;
	share_confirm_send(s, c);
}

/* ------------------------------------------------------------ cancellations */

struct share_cancel_ctx {
	struct share *s;
	struct share_booking *b;  /* may be NULL: a rider's own cancel of a booking not in memory */
	struct http_req *req;
};

static void share_trip_finished(struct share *s, struct share_trip *t)
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

/* The rider's own cancellation answered. */
static void share_cancel_reply(struct http_req *req, const struct share_reply *res)
{
	cJSON *a = res->a;
	int st = a ? share_status(a) : 503;
	if (st == 200) {
		cJSON *bv = cJSON_DetachItemFromObjectCaseSensitive(a, "booking");
		share_view_strip(bv);
		http_reply_header(req, "Cache-Control", "no-store");
		http_reply_json(req, 200, bv);
	} else if (st == 404) {
		http_reply_problem(req, PROBLEM_NOT_FOUND, NULL, "no such booking");
	} else if (st == 409) {
		const char *reason = jv_str(a, "reason");
		const cJSON *bv = cJSON_GetObjectItemCaseSensitive(a, "booking");
		const char *state = bv ? jv_str(bv, "state") : NULL;
		cJSON *ext = cJSON_CreateObject();
		cJSON_AddStringToObject(ext, "reason", reason ? reason : "conflict");
		if (state)
			cJSON_AddStringToObject(ext, "state", state);
		http_reply_problem(req, PROBLEM_CONFLICT, ext, "%s",
				   state ? "the booking can no longer be cancelled: the rider is aboard or it is over"
					 : "the trip's stop list changed meanwhile; ask again");
	} else {
		http_reply_err(req, res->err, "cancel the booking",
			       res->unknown ? "lost in flight; it may have been cancelled" : NULL);
	}
}

static void share_cancelled(void *arg, const struct share_reply *res)
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

/* ------------------------------------------------------------ REST: the rate card */

static const struct jv_field share_point_fields[] = {
	{ "lat", JV_NUMBER, JV_REQUIRED, -90, 90 },
	{ "lng", JV_NUMBER, JV_REQUIRED, -180, 180 },
	{ 0 }
};

static const struct jv_field share_card_fields[] = {
	{ "pickup", JV_OBJECT, JV_REQUIRED, 0, 0, NULL, share_point_fields },
	{ "dropoff", JV_OBJECT, JV_REQUIRED, 0, 0, NULL, share_point_fields },
	{ "time", JV_DATETIME, JV_NULLABLE },
	{ "corporate", JV_BOOL, JV_NULLABLE },
	{ 0 }
};

static void share_api_rate_card(struct http_req *req, void *ctx)
{
	struct share *s = ctx;
	struct auth_principal who;
	if (!auth_require_or_reply(s->deps.auth, req, ROLE_RIDER, &who))
		return;
	cJSON *body = http_req_json_valid_or_reply(req, share_card_fields);
	if (!body)
		return;
	struct share_card c;
	memset(&c, 0, sizeof c);
	const cJSON *pu = cJSON_GetObjectItemCaseSensitive(body, "pickup");
	const cJSON *dr = cJSON_GetObjectItemCaseSensitive(body, "dropoff");
	c.plat = jv_num(pu, "lat", 0);
	c.plng = jv_num(pu, "lng", 0);
	c.dlat = jv_num(dr, "lat", 0);
	c.dlng = jv_num(dr, "lng", 0);
	c.corp = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "corporate"));
	int64_t wall = rh_wall_ms(), when = wall;
	const char *ts = jv_str(body, "time");
	if (ts)
		rh_parse_rfc3339(ts, &when);
	cJSON_Delete(body);
	struct fare f;
	int bad = 0;
	rh_err e = pricing_estimate(s->deps.pricing, s->vehicle, c.plat, c.plng, c.dlat, c.dlng, when / 1000, &f, &bad);
	if (e != RH_OK) {
		pricing_reply_route_error(req, e, bad);
		return;
	}
	snprintf(c.rider, sizeof c.rider, "%.36s", who.id);
	snprintf(c.vehicle, sizeof c.vehicle, "%s", s->tariff->name);
	snprintf(c.currency, sizeof c.currency, "%s", f.currency);
	c.expires_ms = wall + s->cfg->rate_card_ttl_ms;
	c.solo = f.total;
	c.direct_s = f.duration_s;
	c.direct_m = f.distance_m;
	struct share_prices pr = { s->cfg->discount, s->cfg->express_premium, s->cfg->second_seat,
				   s->cfg->corporate_discount };
	share_card_prices(f.total, &pr, c.price);
	char id[SHARE_CARD_ID_MAX], exp[32];
	share_card_sign(&s->key, &c, id, sizeof id);
	rh_format_rfc3339(c.expires_ms, exp);
	/* written out (no tree): the rate card is asked for as often as an
	 * estimate; every string here is ours (ids, names, base64url) */
	struct strbuf sb;
	sb_init(&sb, 1u << 16);
	sb_puts(&sb, "{\"rate_card_id\":\"");
	sb_puts(&sb, id);
	sb_puts(&sb, "\",\"expires_at\":\"");
	sb_puts(&sb, exp);
	sb_puts(&sb, "\",\"vehicle_type\":\"");
	sb_puts(&sb, c.vehicle);
	sb_puts(&sb, "\",\"currency\":\"");
	sb_puts(&sb, c.currency);
	sb_puts(&sb, "\",\"solo_fare\":");
	sb_int(&sb, (long long)c.solo);
	sb_puts(&sb, ",\"distance_m\":");
	sb_int(&sb, (long long)c.direct_m);
	sb_puts(&sb, ",\"duration_s\":");
	sb_int(&sb, (long long)c.direct_s);
	sb_puts(&sb, c.corp ? ",\"corporate\":true,\"options\":[" : ",\"corporate\":false,\"options\":[");
	for (int seats = 1; seats <= 2; seats++)
		for (int ex = 0; ex <= 1; ex++)
			for (int corp = 0; corp <= 1; corp++) {
				sb_puts(&sb, seats == 1 && !ex && !corp ? "{\"seats\":" : ",{\"seats\":");
				sb_int(&sb, seats);
				sb_puts(&sb, ex ? ",\"mode\":\"express\"" : ",\"mode\":\"normal\"");
				sb_puts(&sb, corp ? ",\"corporate\":true,\"price\":" : ",\"corporate\":false,\"price\":");
				sb_int(&sb, (long long)c.price[share_card_option(seats, ex, corp)]);
				sb_puts(&sb, ",\"currency\":\"");
				sb_puts(&sb, c.currency);
				sb_puts(&sb, (!corp || c.corp) && seats <= s->tariff->seats ? "\",\"available\":true}"
											  : "\",\"available\":false}");
			}
	sb_puts(&sb, "],\"applied_coupons\":[]}");
	http_reply_header(req, "Cache-Control", "no-store");
	http_reply(req, 200, "application/json", sb.buf, sb.len);
	sb_fini(&sb);
}

/* ------------------------------------------------------------ REST: bookings */

static const char *const share_modes[] = { "normal", "express", NULL };

static const struct jv_field share_choice_fields[] = {
	{ "seats", JV_INTEGER, JV_REQUIRED, 1, 2 },
	{ "mode", JV_STRING, JV_REQUIRED, 0, 0, share_modes },
	{ "corporate", JV_BOOL, JV_REQUIRED },
	{ 0 }
};

static const struct jv_field share_rules_fields[] = {
	{ "cash", JV_BOOL, JV_NULLABLE },
	{ "otp", JV_BOOL, JV_NULLABLE },
	{ "hotspot", JV_BOOL, JV_NULLABLE },
	{ 0 }
};

static const struct jv_field share_booking_fields[] = {
	{ "rate_card_id", JV_STRING, JV_REQUIRED, 1, SHARE_CARD_ID_MAX - 1 },
	{ "choice", JV_OBJECT, JV_REQUIRED, 0, 0, NULL, share_choice_fields },
	{ "rules", JV_OBJECT, JV_NULLABLE, 0, 0, NULL, share_rules_fields },
	{ 0 }
};

static bool share_key_ok(const char *k)
{
	size_t n = strlen(k);
	if (n < 1 || n > SHARE_KEY_MAX)
		return false;
	for (const char *c = k; *c; c++)
		if ((unsigned char)*c < 0x21 || (unsigned char)*c > 0x7e)
			return false;
	return true;
}

struct share_book_ctx {
	struct share *s;
	struct http_req *req;
};

static void share_booked(void *arg, const struct share_reply *res)
{
	struct share_book_ctx *c = arg;
	struct share *s = c->s;
	struct http_req *req = c->req;
	rh_free(c);
	cJSON *a = res->a;
	int st = a ? share_status(a) : 503;
	if (st == 409) {
		cJSON *ext = cJSON_CreateObject();
		const char *active = jv_str(a, "active_booking_id");
		if (active)
			cJSON_AddStringToObject(ext, "active_booking_id", active);
		http_reply_problem(req, PROBLEM_ACTIVE_BOOKING, ext, "the rider already has an active shared booking (%s)",
				   active ? active : "?");
	} else if (st == 422) {
		cJSON *ext = cJSON_CreateObject();
		cJSON_AddStringToObject(ext, "field", "Idempotency-Key");
		http_reply_problem(req, PROBLEM_IDEMPOTENCY_REUSED, ext,
				   "this Idempotency-Key was used for a different booking");
	} else if (st == 200 || st == 202) {
		cJSON *bv = cJSON_DetachItemFromObjectCaseSensitive(a, "booking");
		struct share_booking *b = NULL;
		if (st == 202)
			b = share_booking_from(s, bv);
		char loc[80];
		snprintf(loc, sizeof loc, "/v1/share/bookings/%s", jv_str(bv, "id"));
		http_reply_header(req, "Location", loc);
		http_reply_header(req, "Cache-Control", "no-store");
		if (st == 200)
			http_reply_header(req, "Idempotent-Replayed", "true");
		share_view_strip(bv);
		http_reply_json(req, st, bv);
		if (b)
			share_match(s, b);
	} else {
		http_reply_err(req, res->err, "book a shared ride",
			       res->unknown ? "lost in flight; retry with the same Idempotency-Key" : NULL);
	}
}

/* The request as the idempotency check compares it. */
static void share_booking_hash(const char *card, int seats, const char *mode, bool corp, int rules, char hex[65])
{
	char text[SHARE_CARD_ID_MAX + 64];
	int n = snprintf(text, sizeof text, "%s|%d|%s|%d|%d", card, seats, mode, corp ? 1 : 0, rules);
	unsigned char h[32];
	crypto_generichash(h, sizeof h, (const unsigned char *)text, (size_t)n, NULL, 0);
	sodium_bin2hex(hex, 65, h, sizeof h);
}

/* The rate card of a booking, if it stands for this rider and choice; else
 * the refusal naming the field (false). */
static bool share_card_or_reply(struct http_req *req, struct share *s, const char *rider, const char *card_id,
				int seats, bool corp, struct share_card *c)
{
	enum share_card_check cc = share_card_open(&s->key, card_id, rh_wall_ms(), c);
	if (cc == SHARE_CARD_INVALID || strcmp(c->rider, rider) != 0) {
		http_reply_field_problem(req, PROBLEM_RATE_CARD_INVALID, "rate_card_id", NULL,
					 cc == SHARE_CARD_INVALID ? "rate_card_id is not a rate card this service issued"
								  : "the rate card was issued to another rider");
	} else if (cc == SHARE_CARD_EXPIRED) {
		char exp[32];
		rh_format_rfc3339(c->expires_ms, exp);
		http_reply_field_problem(req, PROBLEM_RATE_CARD_EXPIRED, "rate_card_id", NULL,
					 "the rate card expired at %s; ask POST /v1/share/rate-card for a new one", exp);
	} else if (corp && !c->corp) {
		http_reply_field_problem(req, PROBLEM_CHOICE_NOT_ON_CARD, "choice.corporate", NULL,
					 "the rate card was not asked for a corporate account: no corporate option is on it");
	} else if (seats > s->tariff->seats) {
		http_reply_field_problem(req, PROBLEM_CHOICE_NOT_ON_CARD, "choice.seats", NULL,
					 "%d seats is more than a %s car has (%lld)", seats, s->tariff->name,
					 (long long)s->tariff->seats);
	} else if (strcmp(c->vehicle, s->tariff->name) != 0) {
		http_reply_field_problem(req, PROBLEM_RATE_CARD_EXPIRED, "rate_card_id", NULL,
					 "the rate card is for vehicle type %s; shared rides now run on %s", c->vehicle,
					 s->tariff->name);
	} else {
		return true;
	}
	return false;
}

static void share_api_book(struct http_req *req, void *ctx)
{
	struct share *s = ctx;
	struct auth_principal who;
	if (!auth_require_or_reply(s->deps.auth, req, ROLE_RIDER, &who))
		return;
	const char *key = http_req_header(req, "idempotency-key");
	if (key && !share_key_ok(key)) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, "Idempotency-Key", "maxLength",
					 "Idempotency-Key must be 1 to %d visible ASCII characters", SHARE_KEY_MAX);
		return;
	}
	cJSON *body = http_req_json_valid_or_reply(req, share_booking_fields);
	if (!body)
		return;
	const char *card_id = jv_str(body, "rate_card_id");
	const cJSON *ch = cJSON_GetObjectItemCaseSensitive(body, "choice");
	int seats = (int)jv_num(ch, "seats", 1);
	const char *mode = jv_str(ch, "mode");
	bool corp = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ch, "corporate"));
	const cJSON *ru = cJSON_GetObjectItemCaseSensitive(body, "rules");
	int rules = (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ru, "cash")) ? 1 : 0) |
		    (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ru, "otp")) ? 2 : 0) |
		    (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ru, "hotspot")) ? 4 : 0);
	struct share_card c;
	if (share_card_or_reply(req, s, who.id, card_id, seats, corp, &c)) {
		bool express = strcmp(mode, "express") == 0;
		char hash[65], otp[8] = "";
		share_booking_hash(card_id, seats, mode, corp, rules, hash);
		if (rules & 2)
			snprintf(otp, sizeof otp, "%04u", randombytes_uniform(10000));
		cJSON *it = cJSON_CreateObject();
		cJSON_AddStringToObject(it, "rider", who.id);
		if (key)
			cJSON_AddStringToObject(it, "key", key);
		cJSON_AddStringToObject(it, "hash", hash);
		cJSON_AddStringToObject(it, "card", card_id);
		cJSON_AddNumberToObject(it, "seats", seats);
		cJSON_AddStringToObject(it, "mode", mode);
		cJSON_AddBoolToObject(it, "corp", corp);
		cJSON_AddNumberToObject(it, "price", (double)c.price[share_card_option(seats, express, corp)]);
		cJSON_AddNumberToObject(it, "solo_price", (double)c.solo);
		cJSON_AddStringToObject(it, "cur", c.currency);
		cJSON_AddStringToObject(it, "vehicle", c.vehicle);
		cJSON_AddNumberToObject(it, "plat", c.plat);
		cJSON_AddNumberToObject(it, "plng", c.plng);
		cJSON_AddNumberToObject(it, "dlat", c.dlat);
		cJSON_AddNumberToObject(it, "dlng", c.dlng);
		cJSON_AddNumberToObject(it, "direct_s", (double)c.direct_s);
		cJSON_AddNumberToObject(it, "direct_m", (double)c.direct_m);
		cJSON_AddNumberToObject(it, "rules", rules);
		if (rules & 2)
			cJSON_AddStringToObject(it, "otp", otp);
		char *json = cJSON_PrintUnformatted(it);
		cJSON_Delete(it);
		struct share_book_ctx *bc = RH_NEW(struct share_book_ctx);
		bc->s = s;
		bc->req = req;
		share_lane_push(&s->lane_book, json, share_booked, bc);
		cJSON_free(json);
	}
	cJSON_Delete(body);
}

struct share_get_ctx {
	struct share *s;
	struct http_req *req;
	struct auth_principal who;
	bool receipt;
};

static void share_got(void *arg, const struct db_result *res)
{
	struct share_get_ctx *c = arg;
	struct http_req *req = c->req;
	if (res->err != RH_OK) {
		http_reply_err(req, db_result_err(res), "read the booking", NULL);
	} else if (db_rows(res) != 1 ||
		   (c->who.role == ROLE_RIDER && strcmp(db_get(res, 0, 1), c->who.id) != 0)) {
		http_reply_problem(req, PROBLEM_NOT_FOUND, NULL, "no such booking");
	} else {
		cJSON *v = cJSON_Parse(db_get(res, 0, c->receipt ? 2 : 0));
		const char *state = c->receipt ? jv_str(v, "state") : NULL;
		if (c->receipt && (!state || strcmp(state, "dropped_off") != 0)) {
			cJSON *ext = cJSON_CreateObject();
			cJSON_AddStringToObject(ext, "state", state ? state : "?");
			http_reply_problem(req, PROBLEM_CONFLICT, ext, "the booking is %s: a receipt comes with the drop-off",
					   state ? state : "?");
			cJSON_Delete(v);
		} else {
			http_reply_header(req, "Cache-Control", "no-store");
			http_reply_json(req, 200, v);
		}
	}
	rh_free(c);
}

static void share_get(struct http_req *req, struct share *s, bool receipt)
{
	struct share_get_ctx *c = RH_NEW(struct share_get_ctx);
	if (!auth_require_or_reply(s->deps.auth, req, ROLE_RIDER | ROLE_OPERATOR, &c->who)) {
		rh_free(c);
		return;
	}
	const char *id = http_req_param(req, "id");
	if (!jv_is_uuid(id)) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, "id", "format", "a booking id is a UUID");
		rh_free(c);
		return;
	}
	c->s = s;
	c->req = req;
	c->receipt = receipt;
	const char *params[] = { id };
	db_query(s->deps.db, &share_st_get, params, share_got, c);
}

static void share_api_get(struct http_req *req, void *ctx)
{
	share_get(req, ctx, false);
}

static void share_api_receipt(struct http_req *req, void *ctx)
{
	share_get(req, ctx, true);
}

static const struct jv_field share_cancel_fields[] = {
	{ "reason", JV_STRING, JV_NULLABLE, 1, 64 },
	{ 0 }
};

/* POST /v1/share/bookings/{id}/cancel: the rider's own, before pickup. */
static void share_api_cancel(struct http_req *req, void *ctx)
{
	struct share *s = ctx;
	struct auth_principal who;
	if (!auth_require_or_reply(s->deps.auth, req, ROLE_RIDER, &who))
		return;
	const char *id = http_req_param(req, "id");
	if (!jv_is_uuid(id)) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, "id", "format", "a booking id is a UUID");
		return;
	}
	size_t len = 0;
	http_req_body(req, &len);
	cJSON *body = len ? http_req_json_valid_or_reply(req, share_cancel_fields) : cJSON_CreateObject();
	if (!body)
		return;
	struct uuid bid;
	uuid_parse(id, &bid);
	struct share_booking *b = umap_get(&s->bookings, &bid);
	if (b && b->busy) {
		cJSON *ext = cJSON_CreateObject();
		cJSON_AddStringToObject(ext, "reason", "changing");
		http_reply_problem(req, PROBLEM_CONFLICT, ext, "the booking is being matched right now; ask again");
		cJSON_Delete(body);
		return;
	}
	cJSON *p = cJSON_CreateObject();
	cJSON_AddStringToObject(p, "booking", id);
	cJSON_AddStringToObject(p, "rider", who.id);
	cJSON_AddStringToObject(p, "role", "rider");
	cJSON_AddStringToObject(p, "actor", who.id);
	cJSON_AddStringToObject(p, "reason", jv_str(body, "reason") ? jv_str(body, "reason") : "rider_cancelled");
	if (b && b->trip) {
		struct share_trip tmp = *b->trip;
		share_trip_remove_stops(&tmp, b, false);
		char *stops = share_stops_json(&tmp, false);
		cJSON_AddRawToObject(p, "stops", stops);
		cJSON_free(stops);
		cJSON_AddNumberToObject(p, "stops_version", (double)b->trip->stops_version);
	}
	cJSON_Delete(body);
	char *json = cJSON_PrintUnformatted(p);
	cJSON_Delete(p);
	struct share_cancel_ctx *c = RH_NEW(struct share_cancel_ctx);
	c->s = s;
	c->b = b;
	c->req = req;
	if (b)
		b->busy = true;
	share_lane_push(&s->lane_cancel, json, share_cancelled, c);
	cJSON_free(json);
}

/* ------------------------------------------------------------ the driver's commands */

static const char *const share_actions[] = { "arrived", "picked_up", "dropped_off", NULL };

static const struct jv_field share_leg_fields[] = {
	{ "trip_id", JV_UUID, JV_REQUIRED },
	{ "booking_id", JV_UUID, JV_REQUIRED },
	{ "action", JV_STRING, JV_REQUIRED, 0, 0, share_actions },
	{ "stops_version", JV_INTEGER, JV_REQUIRED, 1, 2147483647 },
	{ "otp", JV_STRING, JV_NULLABLE, 4, 4 },
	{ "command_id", JV_STRING, JV_NULLABLE, 1, 64 },
	{ 0 }
};

struct share_leg_ctx {
	struct share *s;
	struct uuid driver, trip, booking;
	char action[16];
	char correlation[40];
	char command_id[65];
};

static void share_leg_reject(struct share *s, struct share_leg_ctx *c, const char *reason, const char *field,
			     const char *details)
{
	struct session *ss = gateway_session_of(s->deps.gateway, &c->driver);
	if (!ss)
		return;
	struct gw_reject rej;
	gw_reject_set(&rej, reason, field, "%s", details);
	gateway_reject(ss, "share.leg.update", c->correlation, &rej);
}

static void share_leg_done(void *arg, const struct share_reply *res)
{
	struct share_leg_ctx *c = arg;
	struct share *s = c->s;
	cJSON *a = res->a;
	int st = a ? share_status(a) : 503;
	const char *reason = a ? jv_str(a, "reason") : NULL;
	char num[96];
	if (st == 200) {
		const cJSON *bv = cJSON_GetObjectItemCaseSensitive(a, "booking");
		struct share_booking *b = umap_get(&s->bookings, &c->booking);
		struct share_trip *t = umap_get(&s->trips, &c->trip);
		struct session *ss = gateway_session_of(s->deps.gateway, &c->driver);
		if (ss) {
			char tid[37], bid[37];
			uuid_format(&c->trip, tid);
			uuid_format(&c->booking, bid);
			cJSON *p = cJSON_CreateObject();
			cJSON_AddStringToObject(p, "trip_id", tid);
			cJSON_AddStringToObject(p, "booking_id", bid);
			cJSON_AddStringToObject(p, "state", jv_str(bv, "state"));
			if (c->command_id[0])
				cJSON_AddStringToObject(p, "command_id", c->command_id);
			gateway_send(ss, "share.leg.updated", p, c->correlation);
		}
		if (b) {
			share_booking_from(s, bv);
			share_send_rider(s, &b->rider, bv);
			if (t && b->state != SB_ARRIVED) {
				share_trip_remove_stops(t, b, b->state == SB_PICKED_UP);
				t->stops_version = (int64_t)jv_num(a, "stops_version", (double)t->stops_version);
			}
			if (t && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "trip_finished")))
				share_trip_finished(s, t);
			else if (t && b->state != SB_ARRIVED)
				share_send_stops(s, t);
			if (b->state == SB_DROPPED_OFF)
				share_booking_forget(s, b);
		}
	} else if (st == 404) {
		share_leg_reject(s, c, "not_found", "payload.trip_id", "no open shared trip of yours has this id");
	} else if (reason && strcmp(reason, "rider_not_on_trip") == 0) {
		share_leg_reject(s, c, "not_found", "payload.booking_id",
				 "this booking is not a rider of the trip");
	} else if (reason && strcmp(reason, "stops_version") == 0) {
		snprintf(num, sizeof num, "the stop list is at version %lld: act on the latest share.stops",
			 (long long)jv_num(a, "stops_version", 0));
		share_leg_reject(s, c, "version_conflict", "payload.stops_version", num);
	} else if (reason && strcmp(reason, "otp") == 0) {
		share_leg_reject(s, c, "validation_failed", "payload.otp",
				 "the rider's code does not match (trip rule otp)");
	} else if (reason && strcmp(reason, "booking_state") == 0) {
		snprintf(num, sizeof num, "the rider's booking is %s", jv_str(a, "state") ? jv_str(a, "state") : "?");
		share_leg_reject(s, c, "invalid_state", "payload.action", num);
	} else {
		struct session *ss = gateway_session_of(s->deps.gateway, &c->driver);
		if (ss) {
			struct gw_reject rej;
			gw_reject_err(&rej, res->err, "update the leg");
			gateway_reject(ss, "share.leg.update", c->correlation, &rej);
		}
	}
	rh_free(c);
}

static bool share_on_leg(struct session *ss, void *ctx, const cJSON *msg, const cJSON *pl, struct gw_reject *rej)
{
	struct share *s = ctx;
	(void)rej;
	struct share_leg_ctx *c = RH_NEW(struct share_leg_ctx);
	c->s = s;
	uuid_parse(ss->who.id, &c->driver);
	uuid_parse(jv_str(pl, "trip_id"), &c->trip);
	uuid_parse(jv_str(pl, "booking_id"), &c->booking);
	snprintf(c->action, sizeof c->action, "%s", jv_str(pl, "action"));
	snprintf(c->correlation, sizeof c->correlation, "%s", jv_str(msg, "event_id"));
	const char *cid = jv_str(pl, "command_id");
	if (cid)
		snprintf(c->command_id, sizeof c->command_id, "%s", cid);
	/* the list after this stop, as the driver will have it */
	char *stops = NULL;
	struct share_trip *t = umap_get(&s->trips, &c->trip);
	struct share_booking *b = umap_get(&s->bookings, &c->booking);
	if (t && b && b->trip == t) {
		struct share_trip tmp = *t;
		if (strcmp(c->action, "arrived") != 0)
			share_trip_remove_stops(&tmp, b, strcmp(c->action, "picked_up") == 0);
		stops = share_stops_json(&tmp, false);
	}
	cJSON *p = cJSON_CreateObject();
	cJSON_AddStringToObject(p, "trip", jv_str(pl, "trip_id"));
	cJSON_AddStringToObject(p, "driver", ss->who.id);
	cJSON_AddStringToObject(p, "booking", jv_str(pl, "booking_id"));
	cJSON_AddStringToObject(p, "action", c->action);
	cJSON_AddNumberToObject(p, "stops_version", jv_num(pl, "stops_version", 0));
	if (jv_str(pl, "otp"))
		cJSON_AddStringToObject(p, "otp", jv_str(pl, "otp"));
	cJSON_AddRawToObject(p, "stops", stops ? stops : "[]");
	cJSON_free(stops);
	char *json = cJSON_PrintUnformatted(p);
	cJSON_Delete(p);
	share_lane_push(&s->lane_leg, json, share_leg_done, c);
	cJSON_free(json);
	return true;
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
	struct share_booking *w = s->deferred;
	s->deferred = NULL;
	while (w) {
		struct share_booking *next = w->next_waiting;
		w->next_waiting = NULL;
		share_match(s, w);
		w = next;
	}
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

/* ------------------------------------------------------------ setup */

static const struct http_route share_routes[] = {
	{ HTTP_POST, "/v1/share/rate-card", share_api_rate_card, 0 },
	{ HTTP_POST, "/v1/share/bookings", share_api_book, 0 },
	{ HTTP_GET, "/v1/share/bookings/{id}", share_api_get, 0 },
	{ HTTP_GET, "/v1/share/bookings/{id}/receipt", share_api_receipt, 0 },
	{ HTTP_POST, "/v1/share/bookings/{id}/cancel", share_api_cancel, 0 },
	{ 0 },
};

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
	struct share_lane *lanes[] = { &s->lane_book, &s->lane_confirm, &s->lane_cancel, &s->lane_leg };
	const char *kinds[] = { "book", "confirm", "cancel", "leg" };
	for (int i = 0; i < 4; i++) {
		lanes[i]->s = s;
		lanes[i]->kind = kinds[i];
		lanes[i]->tail = &lanes[i]->head;
	}
	if (d->db) {
		db_register(d->db, &share_st_batch);
		db_register(d->db, &share_st_get);
		db_register(d->db, &share_st_active);
	}
	if (d->http)
		http_server_add_routes(d->http, share_routes, s);
	if (d->gateway) {
		s->leg_type = (struct gw_message_type){ .event_type = "share.leg.update", .roles = ROLE_DRIVER,
							.payload = share_leg_fields, .handler = share_on_leg, .ctx = s };
		gateway_register(d->gateway, &s->leg_type);
	}
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
	if (s->load_timer)
		rh_timer_free(s->load_timer);
	if (s->defer_timer)
		rh_timer_free(s->defer_timer);
	rh_free(s);
}
