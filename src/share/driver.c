/* Shared rides: the driver's side, over the WebSocket (share.leg.update;
 * share_internal.h). */
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

/* ------------------------------------------------------------ the driver's commands */

static const char *const share_actions[] = { "arrived", "picked_up", "dropped_off", NULL };

static const struct jv_field share_leg_fields[] = {
	{ "trip_id", JV_UUID, JV_REQUIRED },
	{ "booking_id", JV_UUID, JV_REQUIRED },
	{ "action", JV_STRING, JV_REQUIRED, 0, 0, share_actions },
	{ "stops_version", JV_INTEGER, JV_REQUIRED, 1, 2147483647 },
	{ "otp", JV_STRING, JV_NULLABLE, 4, 4 },
	{ "cash_collected", JV_BOOL, JV_NULLABLE },
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
	} else if (reason && strcmp(reason, "cash") == 0) {
		share_leg_reject(s, c, "validation_failed", "payload.cash_collected",
				 "the rider pays cash (trip rule cash): drop them off with cash_collected true");
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
	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(pl, "cash_collected")))
		cJSON_AddTrueToObject(p, "cash_collected");
	cJSON_AddRawToObject(p, "stops", stops ? stops : "[]");
	cJSON_free(stops);
	char *json = cJSON_PrintUnformatted(p);
	cJSON_Delete(p);
	share_lane_push(&s->lane_leg, json, share_leg_done, c);
	cJSON_free(json);
	return true;
}


/* ------------------------------------------------------------ apps reconnecting */

/* A driver's app (re)connected: the stop list of their open shared trip, at
 * its version (what they missed meanwhile is in it). */
static void share_driver_opened(struct share *s, struct session *ss)
{
	struct uuid driver, k;
	void *v;
	if (!uuid_parse(ss->who.id, &driver))
		return;
	for (size_t i = 0; umap_next(&s->trips, &i, &k, &v);) {
		const struct share_trip *t = v;
		if (uuid_eq(&t->driver, &driver) && t->nstops > 0) {
			share_send_stops(s, t);
			return;
		}
	}
}

static struct db_stmt share_st_view = {
	"share_view", "SELECT share_booking_view(b) FROM share_bookings b WHERE b.id = $1::uuid", 1,
};

struct share_view_ctx {
	struct share *s;
	struct uuid booking, rider;
};

static void share_view_read(void *arg, const struct db_result *res)
{
	struct share_view_ctx *c = arg;
	struct share_booking *b = umap_get(&c->s->bookings, &c->booking);
	cJSON *v = res->err == RH_OK && db_rows(res) == 1 ? cJSON_Parse(db_get(res, 0, 0)) : NULL;
	/* (a change answered meanwhile was sent already, and is newer) */
	if (v && (!b || (int64_t)jv_num(v, "version", 0) >= b->version))
		share_send_rider(c->s, &c->rider, v);
	cJSON_Delete(v);
	rh_free(c);
}

/* A rider's app (re)connected: their active booking as it stands now
 * (share.booking.updated, its version), read from the database. */
static void share_rider_opened(struct share *s, struct session *ss)
{
	struct uuid rider;
	struct share_booking *b = uuid_parse(ss->who.id, &rider) ? umap_get(&s->by_rider, &rider) : NULL;
	if (!b)
		return;
	struct share_view_ctx *c = RH_NEW(struct share_view_ctx);
	c->s = s;
	c->booking = b->id;
	c->rider = rider;
	char id[37];
	uuid_format(&b->id, id);
	const char *params[] = { id };
	db_query(s->deps.db, &share_st_view, params, share_view_read, c);
}

static void share_app_opened(struct session *ss, void *ctx)
{
	if (ss->who.role == ROLE_DRIVER)
		share_driver_opened(ctx, ss);
	else if (ss->who.role == ROLE_RIDER)
		share_rider_opened(ctx, ss);
}

void share_driver_init(struct share *s)
{
	if (!s->deps.gateway)
		return;
	s->leg_type = (struct gw_message_type){ .event_type = "share.leg.update", .roles = ROLE_DRIVER,
						.payload = share_leg_fields, .handler = share_on_leg, .ctx = s };
	gateway_register(s->deps.gateway, &s->leg_type);
	gateway_on_opened(s->deps.gateway, ROLE_DRIVER | ROLE_RIDER, share_app_opened, s);
	if (s->deps.db)
		db_register(s->deps.db, &share_st_view);
}
