#include "pricing/pricing.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/settings.h"
#include "core/strbuf.h"
#include "geo/geohash.h"
#include "net/http.h"
#include "routing/routing.h"
#include "pricing_internal.h"

/* ------------------------------------------------------------ the formula */

void pricing_fare(const struct tariff_cfg *t, int64_t distance_m, int64_t duration_s, double surge, struct fare *out)
{
	memset(out, 0, sizeof *out);
	rh_copy(out->vehicle_type, sizeof out->vehicle_type, t->name);
	rh_copy(out->currency, sizeof out->currency, t->currency);
	out->per_km = t->per_km;
	out->per_min = t->per_min;
	out->surge = surge;
	out->distance_m = distance_m;
	out->duration_s = duration_s;
	out->base = t->base;
	out->distance = (t->per_km * distance_m + 500) / 1000;
	out->time = (t->per_min * duration_s + 30) / 60;
	out->minimum = t->minimum;
	out->booking_fee = t->booking_fee;
	out->band = -1;
	/* The same arithmetic as trip_metered_fare() in sql/functions/30_trip_fare.sql, so a
	 * trip metered exactly as estimated costs exactly the quote. */
	int64_t surge_milli = llround(surge * 1000.0);
	int64_t surged = ((out->base + out->distance + out->time) * surge_milli + 500) / 1000;
	out->total = (surged > out->minimum ? surged : out->minimum) + out->booking_fee;
	rh_copy(out->method, sizeof out->method, "straight_line");
}

/* The estimate at unix time now; with a travel-time profile on the map,
 * range (may be NULL) receives the duration's low and high bounds, else
 * range[0] < 0. */
static rh_err pricing_estimate_at(struct pricing *p, int vehicle, double plat, double plng, double dlat, double dlng,
				  int64_t now, struct fare *out, int *bad_point, double range[2])
{
	const struct pricing_cfg *c = p->cfg;
	*bad_point = 0;
	if (range)
		range[0] = range[1] = -1;
	if (routing_loaded(p->deps.routing)) {
		struct route_result rr;
		rh_err e = routing_route_at(p->deps.routing, plat, plng, dlat, dlng, ROUTE_FAST, false, now, &rr);
		if (e == RH_EINVAL)
			*bad_point = rr.bad_point == ROUTE_POINT_TO ? 2 : 1;
		if (e != RH_OK)
			return e;
		pricing_price(p, vehicle, plat, plng, dlat, dlng, llround(rr.distance_m), llround(rr.duration_s),
			      now * 1000, out);
		rh_copy(out->method, sizeof out->method, "road");
		if (range && rr.has_range)
			range[0] = rr.duration_low_s, range[1] = rr.duration_high_s;
		return RH_OK;
	}
	double line = geo_dist_haversine_m(plat, plng, dlat, dlng);
	double road = line * c->detour_factor;
	double dur = road / (c->average_speed_kmh / 3.6);
	pricing_price(p, vehicle, plat, plng, dlat, dlng, llround(road), llround(dur), now * 1000, out);
	return RH_OK;
}

rh_err pricing_estimate(struct pricing *p, int vehicle, double plat, double plng, double dlat, double dlng,
			int64_t when_unix, struct fare *out, int *bad_point)
{
	return pricing_estimate_at(p, vehicle, plat, plng, dlat, dlng, when_unix, out, bad_point, NULL);
}

void pricing_etas(struct pricing *p, const double *lat, const double *lon, size_t n, double to_lat, double to_lon,
		  int64_t when_unix, double *eta_s, double *dist_m)
{
	const struct pricing_cfg *c = p->cfg;
	if (routing_loaded(p->deps.routing) && n > 0) {
		struct routing_eta e[256];
		size_t k = n < 256 ? n : 256;
		if (routing_eta_many_to_one_at(p->deps.routing, lat, lon, k, to_lat, to_lon, when_unix, e) ==
		    RH_OK) {
			for (size_t i = 0; i < k; i++) {
				eta_s[i] = e[i].reachable ? e[i].duration_s : -1;
				dist_m[i] = e[i].reachable ? e[i].distance_m : -1;
			}
			for (size_t i = k; i < n; i++)
				eta_s[i] = dist_m[i] = -1;
			return;
		}
		/* the target is off the map: fall back to straight lines */
	}
	for (size_t i = 0; i < n; i++) {
		dist_m[i] = geo_dist_haversine_m(lat[i], lon[i], to_lat, to_lon) * c->detour_factor;
		eta_s[i] = dist_m[i] / (c->average_speed_kmh / 3.6);
	}
}

void pricing_etas_many(struct pricing *p, const double *lat, const double *lon, size_t ns, const double *to_lat,
		       const double *to_lon, size_t nd, const uint8_t *want, int64_t when_unix, double *eta_s,
		       double *dist_m)
{
	const struct pricing_cfg *c = p->cfg;
	struct routing_eta *e = NULL;
	if (routing_loaded(p->deps.routing) && ns > 0 && nd > 0) {
		e = rh_malloc(ns * nd * sizeof *e);
		if (routing_eta_many_to_many(p->deps.routing, lat, lon, ns, to_lat, to_lon, nd, when_unix, e) != RH_OK) {
			rh_free(e);
			e = NULL;
		}
	}
	for (size_t j = 0; j < nd; j++) {
		bool any = false;
		for (size_t i = 0; e && i < ns; i++) {
			const struct routing_eta *x = &e[i * nd + j];
			eta_s[i * nd + j] = x->reachable ? x->duration_s : -1;
			dist_m[i * nd + j] = x->reachable ? x->distance_m : -1;
			any = any || x->reachable;
		}
		if (any)
			continue;
		/* no map, or the point is off it: straight lines, as pricing_etas */
		for (size_t i = 0; i < ns; i++) {
			if (want && !want[i * nd + j])
				continue;
			double d = geo_dist_haversine_m(lat[i], lon[i], to_lat[j], to_lon[j]) * c->detour_factor;
			dist_m[i * nd + j] = d;
			eta_s[i * nd + j] = d / (c->average_speed_kmh / 3.6);
		}
	}
	rh_free(e);
}

void pricing_reply_route_error(struct http_req *req, rh_err e, int bad_point)
{
	if (e == RH_EINVAL) {
		const char *which = bad_point == 2 ? "dropoff" : "pickup";
		cJSON *ext = cJSON_CreateObject();
		cJSON_AddStringToObject(ext, "field", which);
		cJSON_AddStringToObject(ext, "point", which);
		http_reply_problem(req, PROBLEM_POINT_OFF_MAP, ext, "the %s is outside the area served (not near a road of the map)",
				   which);
	} else {
		http_reply_problem(req, PROBLEM_NO_ROUTE, NULL, "no road route joins the pickup and the dropoff");
	}
}

void pricing_fare_json(const struct fare *f, cJSON *o, bool rates)
{
	cJSON_AddStringToObject(o, "currency", f->currency);
	cJSON_AddNumberToObject(o, "base", (double)f->base);
	cJSON_AddNumberToObject(o, "distance", (double)f->distance);
	cJSON_AddNumberToObject(o, "time", (double)f->time);
	cJSON_AddNumberToObject(o, "surge_multiplier", f->surge);
	cJSON_AddNumberToObject(o, "minimum", (double)f->minimum);
	cJSON_AddNumberToObject(o, "booking_fee", (double)f->booking_fee);
	cJSON_AddNumberToObject(o, "total", (double)f->total);
	if (f->zone_fee)
		cJSON_AddNumberToObject(o, "zone_fee", (double)f->zone_fee);
	if (f->fixed)
		cJSON_AddNumberToObject(o, "fixed_fare", (double)f->fixed);
	if (f->band_name[0])
		cJSON_AddStringToObject(o, "band", f->band_name);
	if (rates) {
		cJSON_AddNumberToObject(o, "per_km", (double)f->per_km);
		cJSON_AddNumberToObject(o, "per_min", (double)f->per_min);
		cJSON_AddNumberToObject(o, "distance_m", (double)f->distance_m);
		cJSON_AddNumberToObject(o, "duration_s", (double)f->duration_s);
		cJSON_AddStringToObject(o, "method", f->method);
		if (f->tariff_version)
			cJSON_AddNumberToObject(o, "tariff_version", f->tariff_version);
		if (f->pickup_zone[0])
			cJSON_AddStringToObject(o, "pickup_zone", f->pickup_zone);
		if (f->dropoff_zone[0])
			cJSON_AddStringToObject(o, "dropoff_zone", f->dropoff_zone);
		if (f->cell[0])
			cJSON_AddStringToObject(o, "surge_cell", f->cell);
	}
}

/* ------------------------------------------------------------ quotes */

/* "q3.<base64url(fields)>.<base64url(MAC of what precedes the last dot)>",
 * the MAC a keyed BLAKE2b-256; q3's fields are q2's and the pricing book's
 * tariff version, band, zone fee and fixed fare. "q2." quotes (without
 * those) and "q1." quotes (the MAC HMAC-SHA-256: eight SHA-256 blocks, a
 * quarter of an estimate's time) are still opened, so that quotes given out
 * before an upgrade are honoured until they expire. */
#define QUOTE_PREFIX "q3."
#define QUOTE_MAC_BYTES 32
_Static_assert(crypto_auth_hmacsha256_BYTES == QUOTE_MAC_BYTES, "a q1 MAC is as long as a q2 one");

static void pricing_quote_mac(const struct quote_key *key, char version, const char *msg, size_t len,
		      unsigned char mac[QUOTE_MAC_BYTES])
{
	if (version == '1')
		crypto_auth_hmacsha256(mac, (const unsigned char *)msg, (unsigned long long)len, key->k);
	else
		crypto_generichash(mac, QUOTE_MAC_BYTES, (const unsigned char *)msg, (unsigned long long)len, key->k,
				   sizeof key->k);
}

void pricing_quote_sign(const struct quote_key *key, const struct quote *q, char *id, size_t idlen)
{
	const struct fare *f = &q->fare;
	/* The fields, as "%s|%.6f|...|%lld" would print them, without printf
	 * (a fifth of an estimate's cost went to formatting these numbers). */
	struct strbuf sb;
	sb_init(&sb, 320);
	const double coords[4] = { q->pickup_lat, q->pickup_lng, q->dropoff_lat, q->dropoff_lng };
	const int64_t ints1[5] = { f->base, f->distance, f->time, f->minimum, f->booking_fee };
	const int64_t ints2[5] = { f->total, f->per_km, f->per_min, f->distance_m, f->duration_s };
	sb_puts(&sb, f->vehicle_type);
	for (int i = 0; i < 4; i++) {
		sb_putc(&sb, '|');
		sb_fixed(&sb, coords[i], 6);
	}
	sb_putc(&sb, '|');
	sb_puts(&sb, f->currency);
	for (int i = 0; i < 5; i++) {
		sb_putc(&sb, '|');
		sb_int(&sb, ints1[i]);
	}
	sb_putc(&sb, '|');
	sb_fixed(&sb, f->surge, 3);
	for (int i = 0; i < 5; i++) {
		sb_putc(&sb, '|');
		sb_int(&sb, ints2[i]);
	}
	sb_putc(&sb, '|');
	sb_puts(&sb, f->method);
	sb_putc(&sb, '|');
	sb_int(&sb, q->expires_ms);
	const int64_t ints3[4] = { f->tariff_version, f->band, f->zone_fee, f->fixed };
	for (int i = 0; i < 4; i++) {
		sb_putc(&sb, '|');
		sb_int(&sb, ints3[i]);
	}
	if (sb.overflow)
		abort(); /* bounded by construction: a vehicle name of 31, numbers */
	char fields[320];
	size_t n = sb.len;
	memcpy(fields, sb.buf, n);
	sb_fini(&sb);
	/* id: prefix, base64 of the fields, '.', base64 of the MAC */
	char signed_part[3 + sodium_base64_ENCODED_LEN(320, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
	memcpy(signed_part, QUOTE_PREFIX, 3);
	sodium_bin2base64(signed_part + 3, sizeof signed_part - 3, (const unsigned char *)fields, n,
			  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	size_t m = 3 + strlen(signed_part + 3);
	unsigned char mac[QUOTE_MAC_BYTES];
	pricing_quote_mac(key, QUOTE_PREFIX[1], signed_part, m, mac);
	char macs[sodium_base64_ENCODED_LEN(QUOTE_MAC_BYTES, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
	sodium_bin2base64(macs, sizeof macs, mac, sizeof mac, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	size_t ml = strlen(macs);
	if (m + 1 + ml + 1 > idlen)
		abort(); /* callers pass QUOTE_ID_MAX */
	memcpy(id, signed_part, m);
	id[m] = '.';
	memcpy(id + m + 1, macs, ml + 1);
}

enum quote_check pricing_quote_open(const struct quote_key *key, const char *id, int64_t now_ms, struct quote *out)
{
	size_t len = strlen(id);
	if (len >= QUOTE_ID_MAX || id[0] != 'q' || id[1] < '1' || id[1] > '3' || id[2] != '.')
		return QUOTE_INVALID;
	const char *dot = strrchr(id, '.');
	if (dot == id + 2)
		return QUOTE_INVALID;
	unsigned char mac[QUOTE_MAC_BYTES], want[QUOTE_MAC_BYTES];
	size_t maclen = 0;
	if (sodium_base642bin(mac, sizeof mac, dot + 1, strlen(dot + 1), NULL, &maclen, NULL,
			      sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
	    maclen != sizeof mac)
		return QUOTE_INVALID;
	/* One spelling only: the decoder took a byte outside the alphabet (and
	 * a last character with stray low bits) for a valid one, so another
	 * text decoded to the same MAC (found by the fuzz target) */
	char canon[sodium_base64_ENCODED_LEN(QUOTE_MAC_BYTES, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
	sodium_bin2base64(canon, sizeof canon, mac, sizeof mac, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	if (strcmp(canon, dot + 1) != 0)
		return QUOTE_INVALID;
	pricing_quote_mac(key, id[1], id, (size_t)(dot - id), want);
	if (sodium_memcmp(mac, want, sizeof mac) != 0) /* constant time */
		return QUOTE_INVALID;
	char fields[321];
	size_t flen = 0;
	const char *b = id + 3;
	if (sodium_base642bin((unsigned char *)fields, sizeof fields - 1, b, (size_t)(dot - b), NULL, &flen, NULL,
			      sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
		return QUOTE_INVALID;
	fields[flen] = '\0';
	memset(out, 0, sizeof *out);
	struct fare *f = &out->fare;
	long long v[15] = { 0 };
	v[12] = -1; /* q1, q2: no band */
	char vt[32], cur[4], method[16];
	int got = sscanf(fields,
			 "%31[^|]|%lf|%lf|%lf|%lf|%3[^|]|%lld|%lld|%lld|%lld|%lld|%lf|%lld|%lld|%lld|%lld|%lld|%15[^|]|%lld"
			 "|%lld|%lld|%lld|%lld",
			 vt, &out->pickup_lat, &out->pickup_lng, &out->dropoff_lat, &out->dropoff_lng, cur, &v[0], &v[1],
			 &v[2], &v[3], &v[4], &f->surge, &v[5], &v[6], &v[7], &v[8], &v[9], method, &v[10], &v[11], &v[12],
			 &v[13], &v[14]);
	if (got != (id[1] == '3' ? 23 : 19)) /* signed by us, so only a change of format gets here */
		return QUOTE_INVALID;
	f->tariff_version = (int)v[11];
	f->band = (int)v[12];
	f->zone_fee = v[13];
	f->fixed = v[14];
	rh_copy(f->vehicle_type, sizeof f->vehicle_type, vt);
	rh_copy(f->currency, sizeof f->currency, cur);
	rh_copy(f->method, sizeof f->method, method);
	f->base = v[0];
	f->distance = v[1];
	f->time = v[2];
	f->minimum = v[3];
	f->booking_fee = v[4];
	f->total = v[5];
	f->per_km = v[6];
	f->per_min = v[7];
	f->distance_m = v[8];
	f->duration_s = v[9];
	out->expires_ms = v[10];
	if (now_ms > out->expires_ms)
		return QUOTE_EXPIRED;
	return QUOTE_OK;
}

/* ------------------------------------------------------------ GET /v1/estimate */

/* The fare's members from the pricing book, inside the estimate's fare
 * object: zone fee, fixed fare and band when they apply, the tariff
 * version and the surge cell. */
static void pricing_fare_book_members(struct strbuf *sb, const struct fare *f)
{
	if (f->zone_fee) {
		sb_puts(sb, ",\"zone_fee\":");
		sb_int(sb, f->zone_fee);
	}
	if (f->fixed) {
		sb_puts(sb, ",\"fixed_fare\":");
		sb_int(sb, f->fixed);
	}
	if (f->band_name[0]) {
		sb_puts(sb, ",\"band\":\"");
		sb_puts(sb, f->band_name); /* [a-z0-9_-]: checked when the tariff was written */
		sb_putc(sb, '"');
	}
	sb_puts(sb, ",\"tariff_version\":");
	sb_int(sb, f->tariff_version);
	sb_puts(sb, ",\"surge_cell\":\"");
	sb_puts(sb, f->cell);
	sb_putc(sb, '"');
}

/* GET /v1/estimate's query: the points and the vehicle type's index, or false
 * once replied. */
static bool pricing_estimate_query_or_reply(struct pricing *p, struct http_req *req, double pt[4], int *vehicle)
{
	if (!http_query_number_or_reply(req, "pickup_lat", -90, 90, 0, true, &pt[0]) ||
	    !http_query_number_or_reply(req, "pickup_lng", -180, 180, 0, true, &pt[1]) ||
	    !http_query_number_or_reply(req, "dropoff_lat", -90, 90, 0, true, &pt[2]) ||
	    !http_query_number_or_reply(req, "dropoff_lng", -180, 180, 0, true, &pt[3]))
		return false;
	const char *vt = http_req_query(req, "vehicle_type");
	*vehicle = vt ? tariff_find(p->deps.tariffs, p->deps.ntariffs, vt) : 0;
	if (*vehicle < 0) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, "vehicle_type", "enum", "unknown vehicle_type \"%.40s\"",
					 vt);
		return false;
	}
	double line = geo_dist_haversine_m(pt[0], pt[1], pt[2], pt[3]);
	if (line < (double)p->deps.min_trip_m) {
		http_reply_field_problem(req, PROBLEM_UNPROCESSABLE, "dropoff", NULL,
					 "pickup and dropoff are %.0f m apart; a trip must be at least %lld m", line,
					 (long long)p->deps.min_trip_m);
		return false;
	}
	if (!pricing_in_service_area(p, pt[0], pt[1])) {
		pricing_reply_outside_service_area(req, "pickup");
		return false;
	}
	return true;
}

/* The estimate's fare members, from "vehicle_type" to the fare's "total". */
static void pricing_estimate_fare_json(struct strbuf *sb, const struct fare *f, const double range[2])
{
	sb_puts(sb, "{\"vehicle_type\":\"");
	sb_puts(sb, f->vehicle_type);
	sb_puts(sb, "\",\"distance_m\":");
	sb_int(sb, f->distance_m);
	sb_puts(sb, ",\"duration_s\":");
	sb_int(sb, f->duration_s);
	if (range[0] >= 0) {
		sb_puts(sb, ",\"duration_low_s\":");
		sb_int(sb, llround(range[0]));
		sb_puts(sb, ",\"duration_high_s\":");
		sb_int(sb, llround(range[1]));
	}
	sb_puts(sb, ",\"method\":\"");
	sb_puts(sb, f->method);
	sb_puts(sb, "\",\"fare\":{\"currency\":\"");
	sb_puts(sb, f->currency);
	sb_puts(sb, "\",\"base\":");
	sb_int(sb, f->base);
	sb_puts(sb, ",\"distance\":");
	sb_int(sb, f->distance);
	sb_puts(sb, ",\"time\":");
	sb_int(sb, f->time);
	sb_puts(sb, ",\"surge_multiplier\":");
	sb_fixed(sb, f->surge, 3);
	sb_puts(sb, ",\"minimum\":");
	sb_int(sb, f->minimum);
	sb_puts(sb, ",\"booking_fee\":");
	sb_int(sb, f->booking_fee);
	sb_puts(sb, ",\"total\":");
	sb_int(sb, f->total);
	pricing_fare_book_members(sb, f);
}

/* The values of "pickup_eta_s" and "nearest_driver_m": the nearest few
 * drivers by air, the quickest of them by road. */
static void pricing_estimate_eta_json(struct pricing *p, struct strbuf *sb, double plat, double plng, int vehicle,
				      int64_t now_ms)
{
	double hl[8], hn[8], eta[8], dist[8];
	size_t nh = p->deps.drivers_near ? p->deps.drivers_near(p->deps.drivers_ctx, plat, plng, (double)p->cfg->eta_radius_m,
							       vehicle, hl, hn, routing_loaded(p->deps.routing) ? 8 : 1)
					 : 0;
	pricing_etas(p, hl, hn, nh, plat, plng, now_ms / 1000, eta, dist);
	int best = -1;
	for (size_t i = 0; i < nh; i++)
		if (eta[i] >= 0 && (best < 0 || eta[i] < eta[best]))
			best = (int)i;
	if (best >= 0) {
		sb_int(sb, llround(eta[best]));
		sb_puts(sb, ",\"nearest_driver_m\":");
		sb_int(sb, llround(dist[best]));
	} else { /* no driver in reach: both members present, null (docs/api.md) */
		sb_puts(sb, "null,\"nearest_driver_m\":null");
	}
}

static void pricing_api_estimate(struct http_req *req, void *ctx)
{
	struct pricing *p = ctx;
	double pt[4];
	int vehicle;
	if (!pricing_estimate_query_or_reply(p, req, pt, &vehicle))
		return;
	double plat = pt[0], plng = pt[1], dlat = pt[2], dlng = pt[3];
	struct quote q = { .pickup_lat = plat, .pickup_lng = plng, .dropoff_lat = dlat, .dropoff_lng = dlng };
	int bad = 0;
	double range[2];
	int64_t now_ms = rh_wall_ms();
	rh_err re = pricing_estimate_at(p, vehicle, plat, plng, dlat, dlng, now_ms / 1000, &q.fare, &bad, range);
	if (re != RH_OK) {
		pricing_reply_route_error(req, re, bad);
		return;
	}
	q.expires_ms = now_ms + pricing_quote_ttl(p, &q.fare);
	char id[QUOTE_ID_MAX], exp[32];
	pricing_quote_sign(&p->key, &q, id, sizeof id);
	rh_format_rfc3339(q.expires_ms, exp);

	/* Written by hand, not through cJSON: this is the most frequent request
	 * a rider's app makes, and a tree per reply was most of its cost. */
	const struct fare *f = &q.fare;
	struct strbuf sb;
	sb_init(&sb, 4096);
	pricing_estimate_fare_json(&sb, f, range);
	sb_puts(&sb, "},\"pickup_eta_s\":");
	pricing_estimate_eta_json(p, &sb, plat, plng, vehicle, now_ms);
	sb_puts(&sb, ",\"quote_id\":\"");
	sb_puts(&sb, id);
	sb_puts(&sb, "\",\"expires_at\":\"");
	sb_puts(&sb, exp);
	sb_puts(&sb, "\"}");
	const char *lv[] = { f->method };
	metric_inc(metric_cell(p->f_estimates, lv));
	http_reply_header(req, "Cache-Control", "no-store");
	http_reply(req, 200, "application/json", sb.buf, sb.len);
	sb_fini(&sb);
}

static const struct http_route pricing_routes[] = {
	{ HTTP_GET, "/v1/estimate", pricing_api_estimate, 0 },
	{ 0 },
};

void pricing_quote_key(const char *secret, struct quote_key *out)
{
	if (secret && *secret) {
		/* A key of its own, derived from the token secret: a quote can never
		 * pass for a token, nor a token for a quote. */
		static const char ctx[] = "ridehail quote key v1";
		crypto_generichash_state st;
		crypto_generichash_init(&st, NULL, 0, sizeof out->k);
		crypto_generichash_update(&st, (const unsigned char *)ctx, sizeof ctx);
		crypto_generichash_update(&st, (const unsigned char *)secret, strlen(secret));
		crypto_generichash_final(&st, out->k, sizeof out->k);
	} else {
		randombytes_buf(out->k, sizeof out->k);
	}
}

const struct quote_key *pricing_key(const struct pricing *p)
{
	return &p->key;
}

struct pricing *pricing_new(const struct pricing_deps *d)
{
	static const char *const method_label[] = { "method", NULL };
	struct pricing *p = RH_NEW(struct pricing);
	p->deps = *d;
	p->cfg = d->cfg;
	pricing_quote_key(d->jwt_secret, &p->key);
	p->f_estimates = metrics_counter(d->metrics, "ridehail_fare_estimates_total",
					 "Fare estimates answered, by distance method (straight_line, road).", method_label);
	if (d->http)
		http_server_add_routes(d->http, pricing_routes, p);
	pricing_parts_init(p);
	return p;
}

void pricing_free(struct pricing *p)
{
	if (!p)
		return;
	pricing_parts_fini(p);
	sodium_memzero(&p->key, sizeof p->key);
	rh_free(p);
}
