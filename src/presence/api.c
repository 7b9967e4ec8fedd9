/* Presence over REST: GET /v1/drivers/nearby for riders (positions fuzzed)
 * and operators (exact, with ids), PUT /v1/drivers/me/location, the
 * fallback for a driver's app without a socket, and GET /v1/admin/presence,
 * the operator's view of every driver record (what dispatch sees of them,
 * to hold against the database's). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "auth/auth.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/strbuf.h"
#include "geo/geohash.h"
#include "net/http.h"
#include "presence_internal.h"
#include "store/db.h"

#define PRESENCE_FUZZ_WINDOW_MS (5 * 60 * 1000)

/* Moves a position by up to fuzz metres, the same way for 5 minutes: a
 * rider cannot average repeated queries back to the true position. */
static void presence_fuzz_position(struct presence *p, const struct presence_hit *h, int64_t wall, double *lat,
				   double *lon)
{
	unsigned char in[24], hash[crypto_shorthash_BYTES];
	int64_t window = wall / PRESENCE_FUZZ_WINDOW_MS;
	memcpy(in, h->driver.b, 16);
	memcpy(in + 16, &window, 8);
	crypto_shorthash(hash, in, sizeof in, p->fuzz_key);
	uint32_t a, d;
	memcpy(&a, hash, 4);
	memcpy(&d, hash + 4, 4);
	double angle = (double)a / 4294967296.0 * 2 * M_PI;
	double dist = (double)p->cfg->fuzz_m * (0.5 + 0.5 * (double)d / 4294967296.0);
	*lat = h->lat + dist * cos(angle) / 111320.0;
	*lon = h->lon + dist * sin(angle) / (111320.0 * cos(h->lat * M_PI / 180.0));
	if (*lat > 90)
		*lat = 90;
	if (*lat < -90)
		*lat = -90;
}

/* One driver of the nearby list, hand-formatted (printf's floating point
 * was a sixth of the cost of a query). */
static void presence_nearby_item(struct presence *p, struct strbuf *sb, const struct presence_hit *h, bool exact,
				 double lat, double lng, int64_t wall)
{
	double dl = h->lat, dn = h->lon, dist = h->dist_m;
	if (!exact) {
		presence_fuzz_position(p, h, wall, &dl, &dn);
		dist = geo_dist_haversine_m(lat, lng, dl, dn);
	}
	sb_puts(sb, "{\"location\":{\"lat\":");
	sb_fixed(sb, dl, 6);
	sb_puts(sb, ",\"lng\":");
	size_t at = sb->len;
	sb_fixed(sb, dn, 6);
	char lon_text[40];
	size_t n = sb->len - at < sizeof lon_text ? sb->len - at : 0;
	memcpy(lon_text, sb->buf + at, n);
	sb_puts(sb, ",\"lon\":"); /* (the same, as it was first spelled: formatted once) */
	sb_append(sb, lon_text, n);
	sb_puts(sb, "},\"distance_m\":");
	sb_fixed(sb, dist, 0);
	sb_puts(sb, ",\"vehicle_type\":\"");
	sb_puts(sb, p->deps.tariffs[h->vehicle].name);
	sb_putc(sb, '"');
	if (h->heading >= 0) {
		sb_puts(sb, ",\"heading_deg\":");
		sb_fixed(sb, h->heading, 0);
	}
	if (exact) {
		char id[37];
		uuid_format(&h->driver, id);
		sb_printf(sb, ",\"driver_id\":\"%s\",\"status\":\"%s\",\"version\":%lld,\"ping_age_ms\":%lld", id,
			  driver_status_name(h->status), (long long)h->version, (long long)h->ping_age_ms);
	}
	sb_putc(sb, '}');
}

static void presence_api_nearby(struct http_req *req, void *ctx)
{
	struct presence *p = ctx;
	struct auth_principal who;
	double lat, lng;
	int64_t radius, limit;
	if (!auth_require_or_reply(p->deps.auth, req, ROLE_RIDER | ROLE_OPERATOR, &who))
		return;
	if (!http_query_number_or_reply(req, "lat", -90, 90, 0, true, &lat) || !http_query_number_or_reply(req, "lng", -180, 180, 0, true, &lng) ||
	    !http_query_integer_or_reply(req, "radius_m", 1, p->cfg->nearby_max_radius_m, 2000, false, &radius) ||
	    !http_query_integer_or_reply(req, "limit", 1, p->cfg->nearby_max_limit, 10, false, &limit))
		return;
	uint32_t mask = 0xffff;
	const char *vt = http_req_query(req, "vehicle_type");
	if (vt) {
		int v = presence_vehicle_index(p, vt);
		if (v < 0) {
			http_reply_field_problem(req, PROBLEM_VALIDATION, "vehicle_type", "enum", "unknown vehicle_type \"%s\"", vt);
			return;
		}
		mask = 1u << v;
	}
	struct presence_hit hits[256];
	size_t n = presence_nearest(p, lat, lng, (double)radius, DRIVER_AVAILABLE, mask, presence_now(p), hits, (size_t)limit);
	bool exact = who.role == ROLE_OPERATOR;
	int64_t wall = rh_wall_ms();
	struct strbuf sb;
	sb_init(&sb, 1u << 20);
	sb_expect(&sb, 256 + n * 224); /* one allocation for the answer */
	sb_puts(&sb, "{\"drivers\":[");
	for (size_t i = 0; i < n; i++) {
		if (i)
			sb_putc(&sb, ',');
		presence_nearby_item(p, &sb, &hits[i], exact, lat, lng, wall);
	}
	sb_printf(&sb, "],\"count\":%zu,\"radius_m\":%lld,\"exact\":%s}", n, (long long)radius, exact ? "true" : "false");
	http_reply(req, 200, "application/json", sb.buf, sb.len);
	sb_fini(&sb);
}

/* ------------------------------------------------------------ PUT /v1/drivers/me/location */

static void presence_http_fix(struct presence *p, struct http_req *req, struct driver_rec *r, const cJSON *body)
{
	int64_t now = presence_now(p), wall = rh_wall_ms();
	if (!presence_ping_allowed(p, r, now)) {
		http_reply_header(req, "Retry-After", "1");
		http_reply_problem(req, PROBLEM_RATE_LIMITED, NULL, "more than %.1f location updates a second",
				   p->cfg->max_pings_per_s);
		return;
	}
	if (!r->connected && !r->http_mode) {
		r->http_mode = true;
		presence_rec_sync_grid(p, r);
	}
	const cJSON *loc = cJSON_GetObjectItemCaseSensitive(body, "location");
	struct presence_fix fx = {
		.lat = jv_num(loc, "lat", 0), .lon = jv_num(loc, jv_has(loc, "lng") ? "lng" : "lon", 0),
		.heading = jv_num(body, "heading_deg", -1),
		.speed = jv_num(body, "speed_kmh", -1), .accuracy = jv_num(body, "accuracy_m", -1),
		.source = jv_str(body, "source"),
	};
	rh_parse_rfc3339(jv_str(body, "timestamp"), &fx.device_ms);
	const char *reason, *field;
	enum presence_fix_result res = presence_fix_apply(p, &r->id, &fx, now, wall, &reason, &field);
	if (res == PRESENCE_FIX_REJECTED) {
		struct gw_reject rej;
		presence_fix_reject(&rej, reason, field, fx.device_ms, wall);
		cJSON *ext = cJSON_CreateObject();
		cJSON_AddStringToObject(ext, "field", field);
		cJSON_AddStringToObject(ext, "reason", reason);
		http_reply_problem(req, PROBLEM_VALIDATION, ext, "%s", rej.details);
		return;
	}
	cJSON *j = cJSON_CreateObject();
	cJSON_AddStringToObject(j, "status", res == PRESENCE_FIX_OK ? "ok" : "ignored");
	http_reply_json(req, 200, j);
}

struct presence_http_load {
	struct presence *p;
	struct http_req *req;
	struct uuid id;
	cJSON *body;
};

static void presence_http_loaded(void *arg, const struct db_result *res)
{
	struct presence_http_load *a = arg;
	struct presence *p = a->p;
	if (res->err != RH_OK) {
		http_reply_err(a->req, db_result_err(res), "load the driver", res->message);
	} else if (db_rows(res) == 0 || db_get(res, 0, 3)[0] == 't') {
		http_reply_problem(a->req, PROBLEM_FORBIDDEN, NULL, "no such driver, or disabled");
	} else {
		struct driver_rec *r = presence_rec_get(p, &a->id);
		if (!r) {
			http_reply_problem(a->req, PROBLEM_OVERLOADED, NULL, "too many drivers online");
		} else {
			presence_rec_load_row(p, r, db_get(res, 0, 0), db_get(res, 0, 1), db_get(res, 0, 2), presence_now(p));
			presence_http_fix(p, a->req, r, a->body);
		}
	}
	cJSON_Delete(a->body);
	rh_free(a);
}

static void presence_api_location(struct http_req *req, void *ctx)
{
	struct presence *p = ctx;
	struct auth_principal who;
	if (!auth_require_or_reply(p->deps.auth, req, ROLE_DRIVER, &who))
		return;
	cJSON *body = http_req_json_valid_or_reply(req, presence_http_location_fields);
	if (!body)
		return;
	const cJSON *loc = cJSON_GetObjectItemCaseSensitive(body, "location");
	if (jv_has(loc, "lng") == jv_has(loc, "lon")) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, "location.lng", "required",
					 "location needs lng (or, as before, lon), not both");
		cJSON_Delete(body);
		return;
	}
	struct uuid id;
	uuid_parse(who.id, &id);
	struct driver_rec *r = presence_rec_find(p, &id);
	if (r) {
		presence_http_fix(p, req, r, body);
		cJSON_Delete(body);
		return;
	}
	struct presence_http_load *a = RH_NEW(struct presence_http_load);
	a->p = p;
	a->req = req;
	a->id = id;
	a->body = body;
	const char *params[] = { who.id };
	db_query(p->deps.db, &presence_st_driver_load, params, presence_http_loaded, a);
}

/* ------------------------------------------------------------ GET /v1/admin/presence */

static void presence_api_admin(struct http_req *req, void *ctx)
{
	struct presence *p = ctx;
	struct auth_principal who;
	int64_t limit;
	if (!auth_operator_or_reply(p->deps.auth, req, &who) ||
	    !http_query_integer_or_reply(req, "limit", 1, 100000, 1000, false, &limit))
		return;
	int want = -1;
	const char *st = http_req_query(req, "status");
	if (st) {
		want = driver_status_parse(st);
		if (want < 0 && strcmp(st, "unreachable") != 0) {
			http_reply_field_problem(req, PROBLEM_VALIDATION, "status", "enum", "unknown status \"%s\"", st);
			return;
		}
		if (want < 0)
			want = DRIVER_UNREACHABLE;
	}
	int64_t now = presence_now(p);
	struct strbuf sb;
	sb_init(&sb, 1u << 26);
	sb_puts(&sb, "{\"drivers\":[");
	int64_t n = 0, total = 0;
	for (uint32_t slot = 0; slot < p->nrecs; slot++) {
		const struct driver_rec *r = presence_rec_at(p, slot);
		if (!r->used || (want >= 0 && r->status != (enum driver_status)want))
			continue;
		total++;
		if (n == limit)
			continue;
		char id[37];
		uuid_format(&r->id, id);
		sb_printf(&sb, "%s{\"driver_id\":\"%s\",\"status\":\"%s\",\"version\":%lld,\"connected\":%s,"
			       "\"reserving\":%s,\"unsure\":%s,\"ping_age_ms\":%lld}",
			  n ? "," : "", id, driver_status_name(r->status), (long long)r->version, r->connected ? "true" : "false",
			  r->reserving ? "true" : "false", r->unsure ? "true" : "false",
			  (long long)(r->last_ping_ms ? now - r->last_ping_ms : -1));
		n++;
	}
	sb_printf(&sb, "],\"count\":%lld,\"total\":%lld}", (long long)n, (long long)total);
	http_reply_header(req, "Cache-Control", "no-store");
	http_reply(req, 200, "application/json", sb.buf, sb.len);
	sb_fini(&sb);
}

static const struct http_route presence_routes[] = {
	{ HTTP_GET, "/v1/admin/presence", presence_api_admin, 0 },
	{ HTTP_GET, "/v1/drivers/nearby", presence_api_nearby, 0 },
	{ HTTP_PUT, "/v1/drivers/me/location", presence_api_location, 0 },
	{ 0 },
};

void presence_api_init(struct presence *p)
{
	http_server_add_routes(p->deps.http, presence_routes, p);
}
