/* Shared rides: the REST API (rate card, bookings, receipt, cancel;
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

static struct db_stmt share_st_get = {
	"share_get",
	"SELECT share_booking_view(b), b.rider_id::text, share_receipt(b) FROM share_bookings b WHERE b.id = $1::uuid", 1,
};

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
	struct share_decision *decision; /* decided with the booking; NULL: matched after */
};

static void share_booked(void *arg, const struct share_reply *res)
{
	struct share_book_ctx *c = arg;
	struct share *s = c->s;
	struct http_req *req = c->req;
	struct share_decision *decision = c->decision;
	rh_free(c);
	cJSON *a = res->a;
	int st = a ? share_status(a) : 503;
	if (decision && st != 202)
		share_decided(s, decision, st, NULL, NULL);
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
		if (st == 202 && decision)
			share_decided(s, decision, st, bv, cJSON_GetObjectItemCaseSensitive(a, "decided"));
		else if (st == 202)
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

/* The booking about to be written, as matching sees one: its id made
 * here (the item's "id"); freed by share_decide() when undecided. */
static struct share_booking *share_booking_about(const struct share_card *c, const struct auth_principal *who,
						 int seats, bool express, cJSON *item)
{
	struct share_booking *b = RH_NEW(struct share_booking);
	uuid_v4(&b->id);
	uuid_parse(who->id, &b->rider);
	b->state = SB_PENDING;
	b->version = 1;
	b->seats = seats;
	b->express = express;
	b->plat = c->plat;
	b->plng = c->plng;
	b->dlat = c->dlat;
	b->dlng = c->dlng;
	b->direct_s = (double)c->direct_s;
	b->requested_ms = rh_wall_ms();
	char id[37];
	uuid_format(&b->id, id);
	cJSON_AddStringToObject(item, "id", id);
	return b;
}

static void share_api_book(struct http_req *req, void *ctx)
{
	struct share *s = ctx;
	struct auth_principal who;
	if (!auth_require_or_reply(s->deps.auth, req, ROLE_RIDER, &who))
		return;
	/* a rider's failed payment holds their next shared ride as a solo one */
	char unpaid[37];
	if (pricing_payment_held(s->deps.pricing, who.id, unpaid)) {
		pricing_reply_payment_required(req, unpaid);
		return;
	}
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
		struct share_decision *decision = share_decide(s, share_booking_about(&c, &who, seats, express, it), it);
		char *json = cJSON_PrintUnformatted(it);
		cJSON_Delete(it);
		struct share_book_ctx *bc = RH_NEW(struct share_book_ctx);
		bc->s = s;
		bc->req = req;
		bc->decision = decision;
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

/* The rider's own cancellation answered. */
void share_cancel_reply(struct http_req *req, const struct share_reply *res)
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

static const struct http_route share_routes[] = {
	{ HTTP_POST, "/v1/share/rate-card", share_api_rate_card, 0 },
	{ HTTP_POST, "/v1/share/bookings", share_api_book, 0 },
	{ HTTP_GET, "/v1/share/bookings/{id}", share_api_get, 0 },
	{ HTTP_GET, "/v1/share/bookings/{id}/receipt", share_api_receipt, 0 },
	{ HTTP_POST, "/v1/share/bookings/{id}/cancel", share_api_cancel, 0 },
	{ 0 },
};

void share_api_init(struct share *s)
{
	if (s->deps.db)
		db_register(s->deps.db, &share_st_get);
	if (s->deps.http)
		http_server_add_routes(s->deps.http, share_routes, s);
}
