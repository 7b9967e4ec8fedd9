/* POST /v1/rides, and the transitions over HTTP (cancel, assign, arrived,
 * start, complete): the edge where JSON bodies become typed requests and
 * typed results become replies. */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "auth/auth.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/strbuf.h"
#include "geo/geohash.h"
#include "net/http.h"
#include "net/ratelimit.h"
#include "pricing/pricing.h"
#include "trip_internal.h"

#define TRIP_IDEMPOTENCY_KEY_MAX 255

static enum trip_role trip_role_of(const struct auth_principal *p)
{
	return p->role == ROLE_RIDER ? TRIP_ROLE_RIDER : p->role == ROLE_DRIVER ? TRIP_ROLE_DRIVER : TRIP_ROLE_OPERATOR;
}

bool trip_id_or_reply(struct http_req *req, const char **id)
{
	*id = http_req_param(req, "id");
	if (!jv_is_uuid(*id)) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, "id", "format", "a trip id is a UUID");
		return false;
	}
	return true;
}

/* ------------------------------------------------------------ results as replies */

static const char *trip_refusal_detail(enum trip_refusal r)
{
	switch (r) {
	case TRIP_REFUSAL_NOT_COMPLETED: return "only a completed trip can be rated";
	case TRIP_REFUSAL_IN_PROGRESS: return "a trip in progress cannot be cancelled";
	case TRIP_REFUSAL_FINISHED: return "it is over";
	case TRIP_REFUSAL_ALREADY_MATCHED: return "it has a driver already";
	case TRIP_REFUSAL_STATE_CHANGED: return "it has moved on";
	default: return "not a legal transition";
	}
}

/* A refusal (RH_ECONFLICT) as problem+json: reason and state as members. */
static void trip_reply_refusal(struct http_req *req, const struct trip_result *res)
{
	cJSON *ext = cJSON_CreateObject();
	cJSON_AddStringToObject(ext, "reason", trip_refusal_name(res->refusal));
	cJSON_AddStringToObject(ext, "state", trip_state_name(res->state));
	switch (res->refusal) {
	case TRIP_REFUSAL_DRIVER_UNAVAILABLE:
	case TRIP_REFUSAL_DRIVER_BUSY:
		http_reply_problem(req, PROBLEM_DRIVER_UNAVAILABLE, ext,
				   "the driver is not available for this trip (offline, busy, another vehicle type, or a newer version)");
		return;
	case TRIP_REFUSAL_VERSION:
		cJSON_AddNumberToObject(ext, "version", (double)res->version);
		http_reply_problem(req, PROBLEM_CONFLICT, ext, "the trip has changed: it is at version %lld, %s",
				   (long long)res->version, trip_state_name(res->state));
		return;
	case TRIP_REFUSAL_ALREADY_RATED:
		http_reply_problem(req, PROBLEM_CONFLICT, ext, "this trip has already been rated by you");
		return;
	default:
		http_reply_problem(req, PROBLEM_TRIP_STATE, ext, "the trip is %s: %s", trip_state_name(res->state),
				   trip_refusal_detail(res->refusal));
		return;
	}
}

void trip_reply_result(struct http_req *req, const struct trip_result *res)
{
	if (res->err == RH_ECONFLICT) {
		trip_reply_refusal(req, res);
		return;
	}
	if (res->err == RH_ENOTFOUND) {
		http_reply_problem(req, PROBLEM_NOT_FOUND, NULL, "no such trip");
		return;
	}
	cJSON *view = res->err == RH_OK ? trip_view_json(res->trip) : NULL;
	if (!view) {
		http_reply_err(req, res->err == RH_OK ? RH_EDB : res->err, "change the trip",
			       res->unknown ? "lost in flight; it may have been applied" : NULL);
		return;
	}
	if (res->repeated)
		http_reply_header(req, "Idempotent-Replayed", "true");
	http_reply_header(req, "Cache-Control", "no-store");
	http_reply_json(req, 200, view);
}

static void trip_change_replied(void *arg, const struct trip_result *res)
{
	trip_reply_result(arg, res);
}

/* ------------------------------------------------------------ transitions over HTTP */

static const struct jv_field version_fields[] = {
	{ "expected_version", JV_INTEGER, JV_NULLABLE, 1, 2147483647 },
	{ 0 }
};

static const struct jv_field cancel_fields[] = {
	{ "reason", JV_STRING, JV_NULLABLE, 1, 64 },
	{ "expected_version", JV_INTEGER, JV_NULLABLE, 1, 2147483647 },
	{ 0 }
};

static const struct jv_field point_fields[] = {
	{ "lat", JV_NUMBER, JV_REQUIRED, -90, 90 },
	{ "lng", JV_NUMBER, JV_REQUIRED, -180, 180 },
	{ 0 }
};

static const struct jv_field complete_fields[] = {
	{ "distance_m", JV_INTEGER, JV_REQUIRED, 0, 5000000 },
	{ "duration_s", JV_INTEGER, JV_REQUIRED, 0, 172800 },
	{ "end_location", JV_OBJECT, JV_NULLABLE, 0, 0, NULL, point_fields },
	{ "expected_version", JV_INTEGER, JV_NULLABLE, 1, 2147483647 },
	{ 0 }
};

static const struct jv_field assign_fields[] = {
	{ "driver_id", JV_UUID, JV_REQUIRED },
	{ "driver_version", JV_INTEGER, JV_NULLABLE, 0, 9007199254740991.0 },
	{ "expected_version", JV_INTEGER, JV_NULLABLE, 1, 2147483647 },
	{ 0 }
};

/* The body: a validated JSON object, or {} when there is none. */
static cJSON *trip_body_or_empty(struct http_req *req, const struct jv_field *fields)
{
	size_t len = 0;
	http_req_body(req, &len);
	if (len == 0)
		return cJSON_CreateObject();
	return http_req_json_valid_or_reply(req, fields);
}

/* The change a validated body asks for; false (after replying) when a
 * member the target needs is missing. */
static bool trip_change_from_body(struct http_req *req, const cJSON *body, struct trip_change *c)
{
	c->expected_version = (int64_t)jv_num(body, "expected_version", 0);
	const char *reason = jv_str(body, "reason");
	if (reason)
		snprintf(c->reason, sizeof c->reason, "%s", reason);
	if (c->to == TRIP_MATCHED) {
		if (!jv_has(body, "driver_id")) {
			http_reply_field_problem(req, PROBLEM_VALIDATION, "driver_id", "required", "driver_id is required");
			return false;
		}
		uuid_parse(jv_str(body, "driver_id"), &c->driver);
		c->driver_version = (int64_t)jv_num(body, "driver_version", -1);
	}
	if (c->to == TRIP_COMPLETED) {
		if (!jv_has(body, "distance_m")) {
			http_reply_field_problem(req, PROBLEM_VALIDATION, "distance_m", "required",
						 "distance_m and duration_s of the trip are required");
			return false;
		}
		c->distance_m = (int64_t)jv_num(body, "distance_m", 0);
		c->duration_s = (int64_t)jv_num(body, "duration_s", 0);
		const cJSON *end = cJSON_GetObjectItemCaseSensitive(body, "end_location");
		if (cJSON_IsObject(end)) {
			c->has_end = true;
			c->end_lat = jv_num(end, "lat", 0);
			c->end_lng = jv_num(end, "lng", 0);
		}
	}
	return true;
}

/* One handler for every transition endpoint: who may ask, what the body
 * holds, and the target state. */
static void trip_transition_endpoint(struct http_req *req, struct trips *t, enum trip_state to, unsigned roles,
				     const struct jv_field *fields)
{
	struct auth_principal who;
	const char *id;
	if (!auth_require_or_reply(t->deps.auth, req, roles, &who) || !trip_id_or_reply(req, &id))
		return;
	cJSON *body = trip_body_or_empty(req, fields);
	if (!body)
		return;
	struct trip_change c;
	struct uuid tid;
	uuid_parse(id, &tid);
	trip_change_init(&c, &tid, to, trip_role_of(&who), who.id);
	if (trip_change_from_body(req, body, &c))
		trip_change(t, &c, trip_change_replied, req);
	cJSON_Delete(body);
}

static void trip_api_cancel(struct http_req *req, void *ctx)
{
	trip_transition_endpoint(req, ctx, TRIP_CANCELLED, ROLE_RIDER | ROLE_DRIVER | ROLE_OPERATOR, cancel_fields);
}

static void trip_api_assign(struct http_req *req, void *ctx)
{
	trip_transition_endpoint(req, ctx, TRIP_MATCHED, ROLE_OPERATOR, assign_fields);
}

static void trip_api_arrived(struct http_req *req, void *ctx)
{
	trip_transition_endpoint(req, ctx, TRIP_ARRIVED, ROLE_DRIVER | ROLE_OPERATOR, version_fields);
}

static void trip_api_start(struct http_req *req, void *ctx)
{
	trip_transition_endpoint(req, ctx, TRIP_IN_PROGRESS, ROLE_DRIVER | ROLE_OPERATOR, version_fields);
}

static void trip_api_complete(struct http_req *req, void *ctx)
{
	trip_transition_endpoint(req, ctx, TRIP_COMPLETED, ROLE_DRIVER | ROLE_OPERATOR, complete_fields);
}

/* ------------------------------------------------------------ POST /v1/rides */

static const struct jv_field place_fields[] = {
	{ "lat", JV_NUMBER, JV_REQUIRED, -90, 90 },
	{ "lng", JV_NUMBER, JV_REQUIRED, -180, 180 },
	{ "address", JV_STRING, JV_NULLABLE, 1, 200 },
	{ 0 }
};

static const struct jv_field ride_fields[] = {
	{ "pickup", JV_OBJECT, JV_REQUIRED, 0, 0, NULL, place_fields },
	{ "dropoff", JV_OBJECT, JV_REQUIRED, 0, 0, NULL, place_fields },
	{ "vehicle_type", JV_STRING, JV_NULLABLE, 1, 31 },
	{ "quote_id", JV_STRING, JV_NULLABLE, 1, QUOTE_ID_MAX - 1 },
	{ "rider_id", JV_UUID, JV_NULLABLE }, /* an operator's booking: whom it is for */
	{ "scheduled_at", JV_DATETIME, JV_NULLABLE }, /* a ride for later (trip.schedule_horizon) */
	{ 0 }
};

/* A ride request as the rider asked it, validated. Strings point into the
 * body (alive until the request is queued). */
struct ride_ask {
	struct auth_principal who;
	const char *rider;          /* whom the trip is for: who.id, or an operator's rider_id */
	bool booked;                /* by an operator (a dispatcher's booking) */
	const char *key;            /* Idempotency-Key, or NULL */
	double plat, plng, dlat, dlng;
	const char *paddr, *daddr;  /* or NULL */
	const char *quote_id;       /* or NULL */
	int64_t scheduled_at;       /* wall ms: a ride for then (SCHEDULED); 0: now */
	int vehicle;
	const struct tariff_cfg *tariff;
	struct fare fare;
};

static bool trip_idempotency_key_ok(const char *k)
{
	size_t n = strlen(k);
	if (n < 1 || n > TRIP_IDEMPOTENCY_KEY_MAX)
		return false;
	for (const char *c = k; *c; c++)
		if ((unsigned char)*c < 0x21 || (unsigned char)*c > 0x7e)
			return false;
	return true;
}

/* Seed designs spell the time of a ride for later "scheduledTime" (and
 * everything else in camelCase, which this API does not take either): a
 * body naming it is told the member's name here rather than only that it
 * is unknown. */
static bool trip_ride_alias_ok_or_reply(struct http_req *req)
{
	size_t len = 0;
	const char *b = http_req_body(req, &len);
	static const char alias[] = "\"scheduledTime\"";
	if (!b || len < sizeof alias - 1 || !memmem(b, len, alias, sizeof alias - 1))
		return true;
	http_reply_field_problem(req, PROBLEM_VALIDATION, "scheduledTime", "additionalProperties",
				 "unknown member scheduledTime: a ride for later is asked with scheduled_at "
				 "(RFC 3339, e.g. 2026-12-08T18:30:00Z)");
	return false;
}

/* scheduled_at, if given, into a->scheduled_at: after now and within
 * trip.schedule_horizon, or a 400 naming it (false). */
static bool trip_ride_schedule_or_reply(struct http_req *req, struct trips *t, const cJSON *body, struct ride_ask *a,
					int64_t now_wall)
{
	const char *at = jv_str(body, "scheduled_at");
	if (!at)
		return true;
	if (rh_parse_rfc3339(at, &a->scheduled_at) != 0) { /* (the field check took it: a year out of range) */
		http_reply_field_problem(req, PROBLEM_VALIDATION, "scheduled_at", "format",
					 "scheduled_at must be an RFC 3339 date-time with a zone");
		return false;
	}
	if (a->scheduled_at <= now_wall) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, "scheduled_at", "minimum",
					 "scheduled_at (%s) is in the past; leave it out to ride now", at);
		return false;
	}
	int64_t horizon = t->cfg->schedule_horizon_ms;
	if (a->scheduled_at - now_wall > horizon) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, "scheduled_at", "maximum",
					 "scheduled_at (%s) is more than %lld s ahead (trip.schedule_horizon)", at,
					 (long long)(horizon / 1000));
		return false;
	}
	return true;
}

/* The body into *a, or a 400 (NULL). The body is returned: a's strings
 * live in it. */
static cJSON *trip_ride_ask_read(struct http_req *req, struct trips *t, struct ride_ask *a)
{
	a->key = http_req_header(req, "idempotency-key");
	if (a->key && !trip_idempotency_key_ok(a->key)) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, "Idempotency-Key", "maxLength",
					 "Idempotency-Key must be 1 to %d visible ASCII characters", TRIP_IDEMPOTENCY_KEY_MAX);
		return NULL;
	}
	if (!trip_ride_alias_ok_or_reply(req))
		return NULL;
	cJSON *body = http_req_json_valid_or_reply(req, ride_fields);
	if (!body)
		return NULL;
	if (!trip_ride_schedule_or_reply(req, t, body, a, rh_wall_ms())) {
		cJSON_Delete(body);
		return NULL;
	}
	const cJSON *pu = cJSON_GetObjectItemCaseSensitive(body, "pickup");
	const cJSON *dr = cJSON_GetObjectItemCaseSensitive(body, "dropoff");
	a->plat = jv_num(pu, "lat", 0);
	a->plng = jv_num(pu, "lng", 0);
	a->dlat = jv_num(dr, "lat", 0);
	a->dlng = jv_num(dr, "lng", 0);
	a->paddr = jv_str(pu, "address");
	a->daddr = jv_str(dr, "address");
	a->quote_id = jv_str(body, "quote_id");
	const char *vt = jv_str(body, "vehicle_type");
	a->vehicle = vt ? trip_vehicle_index(t, vt) : 0;
	if (a->vehicle < 0) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, "vehicle_type", "enum", "unknown vehicle_type \"%s\"", vt);
		cJSON_Delete(body);
		return NULL;
	}
	a->tariff = &t->deps.cfg->tariff[a->vehicle];
	/* A rider books for themselves; an operator books for a rider, named. */
	const char *rider = jv_str(body, "rider_id");
	a->booked = a->who.role == ROLE_OPERATOR;
	if (a->booked && !rider) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, "rider_id", "required",
					 "an operator books for a rider: rider_id is required (a rider by phone: "
					 "POST /v1/dispatch/riders)");
		cJSON_Delete(body);
		return NULL;
	}
	if (!a->booked && rider) {
		http_reply_field_problem(req, PROBLEM_FORBIDDEN, "rider_id", NULL,
					 "a rider books for themselves; rider_id is for operators");
		cJSON_Delete(body);
		return NULL;
	}
	a->rider = a->booked ? rider : a->who.id;
	return body;
}

/* Whether the trip can be served at all: long enough, a driver near, the
 * rider within their rate (before any work that touches the database: a
 * stuck retry loop in an app must not reach the matcher). */
static bool trip_ride_admissible_or_reply(struct http_req *req, struct trips *t, const struct ride_ask *a)
{
	double line = geo_dist_haversine_m(a->plat, a->plng, a->dlat, a->dlng);
	if (line < (double)t->cfg->min_trip_m) {
		http_reply_field_problem(req, PROBLEM_UNPROCESSABLE, "dropoff", NULL,
					 "pickup and dropoff are %.0f m apart; a trip must be at least %lld m", line,
					 (long long)t->cfg->min_trip_m);
		return false;
	}
	if (!pricing_in_service_area(t->deps.pricing, a->plat, a->plng)) {
		pricing_reply_outside_service_area(req, "pickup");
		return false;
	}
	int64_t retry_ms = 0, now = rh_mono_ns() / 1000000;
	if (!ratelimit_allow(t->rl_rides, a->rider, now, &retry_ms)) {
		char secs[24];
		snprintf(secs, sizeof secs, "%lld", (long long)((retry_ms + 999) / 1000));
		http_reply_header(req, "Retry-After", secs);
		cJSON *ext = cJSON_CreateObject();
		cJSON_AddNumberToObject(ext, "retry_after_s", (double)((retry_ms + 999) / 1000));
		http_reply_problem(req, PROBLEM_RATE_LIMITED, ext, "too many ride requests; retry in %s s", secs);
		const char *lv[] = { "rate_limited" };
		metric_inc(metric_cell(t->f_requests, lv));
		return false;
	}
	/* demand for surge, whether or not a driver can be found */
	pricing_note_request(t->deps.pricing, a->plat, a->plng, a->vehicle, now);
	/* No driver of this type online near the pickup: say so now rather
	 * than search in vain (seed 002: 503 + Retry-After). A dispatcher's
	 * booking is kept instead: searched as drivers come online, in the
	 * demand queue, for match.booking_max_wait; and a ride for later is
	 * searched when its time comes. */
	double radius = 0;
	const struct trip_supply *sup = &t->supply;
	if (!a->booked && !a->scheduled_at && sup->drivers_near && !sup->drivers_near(sup->ctx, a->plat, a->plng, a->vehicle, &radius)) {
		http_reply_header(req, "Retry-After", "30");
		http_reply_problem(req, PROBLEM_UNAVAILABLE, NULL, "no %s driver is online within %.0f m of the pickup; retry later",
				   a->tariff->name, radius);
		return false;
	}
	return true;
}

/* The quote's fare, if it still stands for this trip; else a 422. */
static bool trip_ride_quote_or_reply(struct http_req *req, struct trips *t, struct ride_ask *a)
{
	struct quote q;
	enum quote_check qc = pricing_quote_open(pricing_key(t->deps.pricing), a->quote_id, rh_wall_ms(), &q);
	if (qc == QUOTE_INVALID) {
		http_reply_field_problem(req, PROBLEM_QUOTE_INVALID, "quote_id", NULL, "quote_id is not a quote this service issued");
		return false;
	}
	if (qc == QUOTE_EXPIRED) {
		char exp[32];
		rh_format_rfc3339(q.expires_ms, exp);
		cJSON *ext = cJSON_CreateObject();
		cJSON_AddStringToObject(ext, "field", "quote_id");
		cJSON_AddStringToObject(ext, "reason", "quote_expired");
		cJSON_AddStringToObject(ext, "expired_at", exp);
		cJSON_AddNumberToObject(ext, "surge_multiplier", q.fare.surge);
		http_reply_problem(req, PROBLEM_QUOTE_EXPIRED, ext,
				   "the quote (surge %.2f) expired at %s; ask GET /v1/estimate for a new one", q.fare.surge, exp);
		return false;
	}
	if (strcmp(q.fare.vehicle_type, a->tariff->name) != 0) {
		http_reply_field_problem(req, PROBLEM_QUOTE_MISMATCH, "vehicle_type", NULL,
					 "the quote is for vehicle type %s, the request for %s", q.fare.vehicle_type,
					 a->tariff->name);
		return false;
	}
	double m = (double)t->deps.cfg->pricing.quote_match_m;
	bool pick = geo_dist_haversine_m(q.pickup_lat, q.pickup_lng, a->plat, a->plng) > m;
	if (pick || geo_dist_haversine_m(q.dropoff_lat, q.dropoff_lng, a->dlat, a->dlng) > m) {
		http_reply_field_problem(req, PROBLEM_QUOTE_MISMATCH, pick ? "pickup" : "dropoff", NULL,
					 "the %s is more than %.0f m from the quote's", pick ? "pickup" : "dropoff", m);
		return false;
	}
	a->fare = q.fare;
	pricing_fare_complete(t->deps.pricing, a->plat, a->plng, a->dlat, a->dlng, &a->fare);
	return true;
}

static bool trip_ride_fare_or_reply(struct http_req *req, struct trips *t, struct ride_ask *a)
{
	if (a->quote_id)
		return trip_ride_quote_or_reply(req, t, a);
	int bad = 0;
	rh_err re = pricing_estimate(t->deps.pricing, a->vehicle, a->plat, a->plng, a->dlat, a->dlng, rh_wall_ms() / 1000,
				     &a->fare, &bad);
	if (re != RH_OK) {
		pricing_reply_route_error(req, re, bad);
		return false;
	}
	return true;
}

/* The request as the idempotency check compares it: what it asks for, not
 * how the JSON was spelled; each part with its length first, so that no
 * two requests hash alike. */
static void trip_ride_hash(const struct ride_ask *a, char hex[65])
{
	char c[5][32];
	unsigned char h[32];
	snprintf(c[0], sizeof c[0], "%.7f", a->plat);
	snprintf(c[1], sizeof c[1], "%.7f", a->plng);
	snprintf(c[2], sizeof c[2], "%.7f", a->dlat);
	snprintf(c[3], sizeof c[3], "%.7f", a->dlng);
	snprintf(c[4], sizeof c[4], "%lld", (long long)a->scheduled_at);
	const char *parts[] = { a->tariff->name, c[0], c[1], c[2], c[3], a->paddr ? a->paddr : "",
				a->daddr ? a->daddr : "", a->quote_id ? a->quote_id : "", c[4] };
	crypto_generichash_state hs;
	crypto_generichash_init(&hs, NULL, 0, sizeof h);
	/* (a ride for now hashes as it always has: keys stored before rides
	 * could be scheduled still answer their replays) */
	size_t nparts = sizeof parts / sizeof *parts - (a->scheduled_at ? 0 : 1);
	for (size_t i = 0; i < nparts; i++) {
		uint32_t n = (uint32_t)strlen(parts[i]);
		crypto_generichash_update(&hs, (const unsigned char *)&n, sizeof n);
		crypto_generichash_update(&hs, (const unsigned char *)parts[i], n);
	}
	crypto_generichash_final(&hs, h, sizeof h);
	sodium_bin2hex(hex, 65, h, sizeof h);
}

/* One item of trip_requests() (sql/): trip_request()'s parameters. */
static char *trip_ride_item(const struct trips *t, const struct ride_ask *a)
{
	const struct trip_cfg *tc = t->cfg;
	char hash[65], num[32];
	trip_ride_hash(a, hash);
	cJSON *it = cJSON_CreateObject();
	cJSON_AddStringToObject(it, "rider", a->rider);
	if (a->booked) /* the history row names the operator (sql/functions/40_trip_request.sql) */
		cJSON_AddStringToObject(it, "by", a->who.id);
	if (a->key)
		cJSON_AddStringToObject(it, "key", a->key);
	cJSON_AddStringToObject(it, "hash", hash);
	cJSON_AddStringToObject(it, "vehicle", a->tariff->name);
	const double coords[] = { a->plat, a->plng, a->dlat, a->dlng };
	const char *names[] = { "plat", "plng", "dlat", "dlng" };
	for (int i = 0; i < 4; i++) {
		snprintf(num, sizeof num, "%.7f", coords[i]);
		cJSON_AddRawToObject(it, names[i], num);
	}
	if (a->paddr)
		cJSON_AddStringToObject(it, "pa", a->paddr);
	if (a->daddr)
		cJSON_AddStringToObject(it, "da", a->daddr);
	cJSON_AddStringToObject(it, "cur", a->fare.currency);
	if (a->quote_id)
		cJSON_AddStringToObject(it, "quote", a->quote_id);
	if (a->scheduled_at) {
		char at[32];
		rh_format_rfc3339(a->scheduled_at, at);
		cJSON_AddStringToObject(it, "sched", at);
	}
	pricing_fare_json(&a->fare, cJSON_AddObjectToObject(it, "fare"), true);
	char pol[384];
	snprintf(pol, sizeof pol,
		 "{\"cancel_grace_s\":%.3f,\"cancel_fee\":%lld,\"no_show_wait_s\":%.3f,\"no_show_fee\":%lld,"
		 "\"waiting_free_s\":%lld,\"waiting_per_min\":%lld,\"fare_tolerance\":%.6f}",
		 (double)tc->cancel_grace_ms / 1000.0, (long long)a->fare.cancel_fee,
		 (double)tc->no_show_wait_ms / 1000.0, (long long)a->fare.no_show_fee,
		 (long long)a->fare.waiting_free_s, (long long)a->fare.waiting_per_min, tc->fare_tolerance);
	cJSON_AddRawToObject(it, "policy", pol);
	char *json = cJSON_PrintUnformatted(it);
	cJSON_Delete(it);
	return json;
}

/* A refused request (409 active trip, 422 key reused) or a failure. */
static void trip_ride_reply_refused(struct http_req *req, struct tx_answer *a)
{
	const char *active = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(a->body, "active_trip_id"));
	cJSON *ext = cJSON_CreateObject();
	if (a->status == 409) {
		if (active)
			cJSON_AddStringToObject(ext, "active_trip_id", active);
		http_reply_problem(req, PROBLEM_ACTIVE_TRIP, ext, "the rider already has an active trip (%s)",
				   active ? active : "?");
		return;
	}
	if (a->status == 404) { /* a booking for a rider that does not exist */
		cJSON_AddStringToObject(ext, "field", "rider_id");
		http_reply_problem(req, PROBLEM_NOT_FOUND, ext, "no rider with this rider_id");
		return;
	}
	if (a->status == 422) {
		cJSON_AddStringToObject(ext, "field", "Idempotency-Key");
		http_reply_problem(req, PROBLEM_IDEMPOTENCY_REUSED, ext,
				   "this Idempotency-Key was used for a different ride request");
		return;
	}
	cJSON_Delete(ext);
	if (a->status == 503 && a->unknown)
		http_reply_problem(req, PROBLEM_DB_UNAVAILABLE, NULL,
				   "cannot confirm the ride now (retry with the same Idempotency-Key)");
	else
		http_reply_err(req, a->status == 503 ? RH_EAGAIN : RH_EDB, "request a ride", NULL);
}

/* A request on its way to the database: the HTTP request, who booked it, and
 * whose place in the rate limit it took, given back if it is answered 503
 * (the retry that invites is not another ride request). */
struct ride_pending {
	struct http_req *req;
	bool booked;
	char rider[40];
};

static void trip_ride_created(struct trips *t, void *arg, struct tx_answer *a)
{
	struct ride_pending *pend = arg;
	struct http_req *req = pend->req;
	bool booked = pend->booked;
	if (a->status == 503)
		ratelimit_refund(t->rl_rides, pend->rider, rh_mono_ns() / 1000000);
	rh_free(pend);
	if (a->status != 201 && a->status != 200) {
		trip_ride_reply_refused(req, a);
		return;
	}
	struct trip trip;
	struct trip_result res;
	trip_answer_read(a, &res, &trip);
	if (res.err != RH_OK || !trip.row) {
		http_reply_err(req, RH_EDB, "request a ride", "a malformed trip row");
		trip_fini(&trip);
		return;
	}
	char id[37], loc[64];
	uuid_format(&trip.id, id);
	snprintf(loc, sizeof loc, "/v1/rides/%s", id);
	http_reply_header(req, "Location", loc);
	if (a->status == 200) {
		http_reply_header(req, "Idempotent-Replayed", "true");
	} else {
		log_info(http_req_logid(req), "trip %s requested", id);
		struct trip_event e = { .trip = &trip, .created = true, .by = booked ? TRIP_ROLE_OPERATOR : TRIP_ROLE_RIDER,
					.driver_version = -1 };
		trip_notify(t, &e);
	}
	http_reply_header(req, "Cache-Control", "no-store");
	cJSON *view = trip_view_take(&trip); /* (the row was read whole: it renders) */
	http_reply_json(req, 201, view);
	trip_fini(&trip);
}

static void trip_api_request(struct http_req *req, void *ctx)
{
	struct trips *t = ctx;
	struct ride_ask a;
	memset(&a, 0, sizeof a);
	if (!auth_require_or_reply(t->deps.auth, req, ROLE_RIDER | ROLE_OPERATOR, &a.who))
		return;
	/* A rider's failed payment holds their next ride (before anything else
	 * is read), and an operator's booking for them (who may clear the hold). */
	char unpaid[37];
	if (a.who.role == ROLE_RIDER && pricing_payment_held(t->deps.pricing, a.who.id, unpaid)) {
		pricing_reply_payment_required(req, unpaid);
		return;
	}
	cJSON *body = trip_ride_ask_read(req, t, &a);
	if (!body)
		return;
	if (a.booked && pricing_payment_held(t->deps.pricing, a.rider, unpaid)) {
		pricing_reply_payment_required(req, unpaid);
		cJSON_Delete(body);
		return;
	}
	if (trip_ride_admissible_or_reply(req, t, &a) && trip_ride_fare_or_reply(req, t, &a)) {
		const char *lv[] = { "accepted" };
		metric_inc(metric_cell(t->f_requests, lv));
		struct ride_pending *pend = RH_NEW(struct ride_pending);
		pend->req = req;
		pend->booked = a.booked;
		snprintf(pend->rider, sizeof pend->rider, "%s", a.rider);
		trip_batch_enqueue(t, &trip_tx_requests, a.rider, trip_ride_item(t, &a), trip_ride_created, pend);
	}
	cJSON_Delete(body);
}

/* ------------------------------------------------------------ setup */

static const struct http_route trip_rides_routes[] = {
	{ HTTP_POST, "/v1/rides", trip_api_request, 0 },
	{ HTTP_POST, "/v1/rides/{id}/cancel", trip_api_cancel, 0 },
	{ HTTP_POST, "/v1/rides/{id}/assign", trip_api_assign, 0 },
	{ HTTP_POST, "/v1/rides/{id}/arrived", trip_api_arrived, 0 },
	{ HTTP_POST, "/v1/rides/{id}/start", trip_api_start, 0 },
	{ HTTP_POST, "/v1/rides/{id}/complete", trip_api_complete, 0 },
	{ 0 },
};

void trip_rides_api_init(struct trips *t)
{
	http_server_add_routes(t->deps.http, trip_rides_routes, t);
}
