#include "pricing/book.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/settings.h"
#include "core/strbuf.h"
#include "net/jsonv.h"
#include "pricing/pricing.h"

/* ------------------------------------------------------------ building */

/* An integer member within [lo, hi] (def when absent); out of range or not
 * a number: *bad is set (the book is refused: the database's constraints
 * say it cannot be, and a fare's arithmetic must not overflow). */
static int64_t book_int(const cJSON *o, const char *name, int64_t lo, int64_t hi, int64_t def, bool *bad)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, name);
	if (!x || cJSON_IsNull(x))
		return def;
	double v = x->valuedouble;
	if (!cJSON_IsNumber(x) || !(v >= (double)lo && v <= (double)hi)) {
		*bad = true;
		return def;
	}
	return (int64_t)v;
}

#define BOOK_AMOUNT_MAX 1000000000000LL /* minor units: far above any fare */

struct book *book_from_config(const struct tariff_cfg *t, int n)
{
	struct book *b = RH_NEW(struct book);
	b->tariffs = rh_calloc((size_t)(n > 0 ? n : 1), sizeof *b->tariffs);
	b->ntariffs = (size_t)n;
	for (int i = 0; i < n; i++) {
		struct book_tariff *x = &b->tariffs[i];
		rh_copy(x->vehicle, sizeof x->vehicle, t[i].name);
		rh_copy(x->currency, sizeof x->currency, t[i].currency);
		x->current = true;
		x->base = t[i].base;
		x->per_km = t[i].per_km;
		x->per_min = t[i].per_min;
		x->minimum = t[i].minimum;
		x->booking_fee = t[i].booking_fee;
		x->cancel_fee = t[i].cancel_fee;
		x->no_show_fee = t[i].no_show_fee;
		x->waiting_free_s = t[i].waiting_free_ms / 1000;
		x->waiting_per_min = t[i].waiting_per_min;
	}
	return b;
}

void book_free(struct book *b)
{
	if (!b)
		return;
	for (size_t i = 0; i < b->nzones; i++) {
		rh_free(b->zones[i].ring);
		rh_free(b->zones[i].pts);
	}
	rh_free(b->zones);
	rh_free(b->tariffs);
	rh_free(b);
}

static int book_hhmm(const char *s)
{
	int h, m;
	char tail;
	if (!s || sscanf(s, "%2d:%2d%c", &h, &m, &tail) != 2 || h < 0 || h > 24 || m < 0 || m > 59 || (h == 24 && m))
		return -1;
	return h * 60 + m;
}

/* A zone's rings from its GeoJSON MultiPolygon (PostGIS wrote it: valid). */
static bool book_zone_geometry(struct book_zone *z, const cJSON *g)
{
	const cJSON *polys = cJSON_GetObjectItemCaseSensitive(g, "coordinates");
	if (!cJSON_IsArray(polys))
		return false;
	size_t nr = 0, np = 0;
	const cJSON *poly, *ring, *pt;
	cJSON_ArrayForEach(poly, polys) {
		cJSON_ArrayForEach(ring, poly) {
			nr++;
			np += (size_t)cJSON_GetArraySize(ring);
		}
	}
	if (!nr)
		return false;
	z->nrings = nr;
	z->ring = rh_malloc((nr + 1) * sizeof *z->ring);
	z->pts = rh_malloc((np ? np : 1) * 2 * sizeof *z->pts);
	z->min_lat = z->min_lon = INFINITY;
	z->max_lat = z->max_lon = -INFINITY;
	size_t r = 0, p = 0;
	cJSON_ArrayForEach(poly, polys) {
		cJSON_ArrayForEach(ring, poly) {
			z->ring[r++] = p;
			cJSON_ArrayForEach(pt, ring) {
				const cJSON *lon = cJSON_GetArrayItem(pt, 0), *lat = cJSON_GetArrayItem(pt, 1);
				if (!cJSON_IsNumber(lon) || !cJSON_IsNumber(lat))
					return false;
				z->pts[2 * p] = lon->valuedouble;
				z->pts[2 * p + 1] = lat->valuedouble;
				z->min_lat = fmin(z->min_lat, lat->valuedouble);
				z->max_lat = fmax(z->max_lat, lat->valuedouble);
				z->min_lon = fmin(z->min_lon, lon->valuedouble);
				z->max_lon = fmax(z->max_lon, lon->valuedouble);
				p++;
			}
		}
	}
	z->ring[r] = p;
	return true;
}

static bool book_parse_zone(struct book *b, struct book_zone *z, const cJSON *j, char *err, size_t errlen)
{
	const char *name = jv_str(j, "name"), *kind = jv_str(j, "kind");
	if (!name || !kind || !book_zone_geometry(z, cJSON_GetObjectItemCaseSensitive(j, "geometry"))) {
		snprintf(err, errlen, "a zone without a name, kind or geometry");
		return false;
	}
	bool bad = false;
	z->id = (int)book_int(j, "id", INT32_MIN, INT32_MAX, 0, &bad);
	rh_copy(z->name, sizeof z->name, name);
	z->service_area = strcmp(kind, "service_area") == 0;
	z->priority = (int)book_int(j, "priority", -1000000, 1000000, 0, &bad);
	if (bad) {
		snprintf(err, errlen, "zone %s: an id or priority out of range", name);
		return false;
	}
	const cJSON *o = cJSON_GetObjectItemCaseSensitive(j, "override");
	if (cJSON_IsObject(o)) {
		int mode = surge_override_parse(jv_str(o, "mode"));
		if (mode < 0) {
			snprintf(err, errlen, "zone %s: an override of no known mode", name);
			return false;
		}
		z->has_override = true;
		z->override.mode = (enum surge_override_mode)mode;
		z->override.cap = jv_num(o, "cap", 1.0);
		b->noverrides++;
	}
	if (z->service_area)
		b->has_service_area = true;
	return true;
}

static bool book_parse_tariff(struct book_tariff *t, const cJSON *j, char *err, size_t errlen)
{
	const char *vt = jv_str(j, "vehicle_type"), *cur = jv_str(j, "currency");
	if (!vt || !cur) {
		snprintf(err, errlen, "a tariff without a vehicle type or currency");
		return false;
	}
	rh_copy(t->vehicle, sizeof t->vehicle, vt);
	rh_copy(t->currency, sizeof t->currency, cur);
	bool bad = false;
	t->version = (int)book_int(j, "version", 1, INT32_MAX, 0, &bad);
	t->base = book_int(j, "base", 0, BOOK_AMOUNT_MAX, 0, &bad);
	t->per_km = book_int(j, "per_km", 0, BOOK_AMOUNT_MAX, 0, &bad);
	t->per_min = book_int(j, "per_min", 0, BOOK_AMOUNT_MAX, 0, &bad);
	t->minimum = book_int(j, "minimum", 0, BOOK_AMOUNT_MAX, 0, &bad);
	t->booking_fee = book_int(j, "booking_fee", 0, BOOK_AMOUNT_MAX, 0, &bad);
	t->cancel_fee = book_int(j, "cancel_fee", 0, BOOK_AMOUNT_MAX, 0, &bad);
	t->no_show_fee = book_int(j, "no_show_fee", 0, BOOK_AMOUNT_MAX, 0, &bad);
	t->waiting_free_s = book_int(j, "waiting_free_s", 0, 86400 * 365, 0, &bad);
	t->waiting_per_min = book_int(j, "waiting_per_min", 0, BOOK_AMOUNT_MAX, 0, &bad);
	const cJSON *x;
	cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(j, "bands")) {
		if (t->nbands == BOOK_BANDS_MAX)
			break;
		struct book_band *bd = &t->bands[t->nbands];
		rh_copy(bd->name, sizeof bd->name, jv_str(x, "name") ? jv_str(x, "name") : "");
		bd->start_min = book_hhmm(jv_str(x, "start"));
		bd->end_min = book_hhmm(jv_str(x, "end"));
		if (bd->start_min < 0 || bd->end_min < 0) {
			snprintf(err, errlen, "tariff %s v%d: a band without start and end (HH:MM)", vt, t->version);
			return false;
		}
		static const struct {
			const char *name;
			unsigned bit;
			size_t off;
		} m[] = { { "base", BAND_BASE, offsetof(struct book_band, base) },
			  { "per_km", BAND_PER_KM, offsetof(struct book_band, per_km) },
			  { "per_min", BAND_PER_MIN, offsetof(struct book_band, per_min) },
			  { "minimum", BAND_MINIMUM, offsetof(struct book_band, minimum) } };
		for (size_t k = 0; k < sizeof m / sizeof *m; k++) {
			if (jv_has(x, m[k].name)) {
				bd->set |= m[k].bit;
				*(int64_t *)((char *)bd + m[k].off) = book_int(x, m[k].name, 0, BOOK_AMOUNT_MAX, 0, &bad);
			}
		}
		t->nbands++;
	}
	cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(j, "zone_rules")) {
		if (t->nrules == BOOK_RULES_MAX)
			break;
		struct book_rule *r = &t->rules[t->nrules];
		const char *kind = jv_str(x, "kind");
		if (kind && strcmp(kind, "pickup_fee") == 0)
			r->kind = RULE_PICKUP_FEE;
		else if (kind && strcmp(kind, "dropoff_fee") == 0)
			r->kind = RULE_DROPOFF_FEE;
		else if (kind && strcmp(kind, "fixed") == 0)
			r->kind = RULE_FIXED;
		else {
			snprintf(err, errlen, "tariff %s v%d: a zone rule of no known kind", vt, t->version);
			return false;
		}
		const char *a = jv_str(x, r->kind == RULE_FIXED ? "from" : "zone");
		const char *b = r->kind == RULE_FIXED ? jv_str(x, "to") : "";
		if (!a || !b) {
			snprintf(err, errlen, "tariff %s v%d: a zone rule without its zones", vt, t->version);
			return false;
		}
		rh_copy(r->zone, sizeof r->zone, a);
		rh_copy(r->to, sizeof r->to, b);
		r->amount = book_int(x, "amount", 0, BOOK_AMOUNT_MAX, 0, &bad);
		r->both_ways = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(x, "both_ways"));
		t->nrules++;
	}
	if (bad) {
		snprintf(err, errlen, "tariff %s v%d: an amount out of range", vt, t->version);
		return false;
	}
	return true;
}

struct book *book_parse(const char *json, char *err, size_t errlen)
{
	cJSON *j = cJSON_Parse(json);
	if (!cJSON_IsObject(j)) {
		snprintf(err, errlen, "the book is not a JSON object");
		cJSON_Delete(j);
		return NULL;
	}
	struct book *b = RH_NEW(struct book);
	bool bad = false;
	b->version = book_int(j, "version", 1, INT64_C(1) << 53, 0, &bad);
	const cJSON *zones = cJSON_GetObjectItemCaseSensitive(j, "zones");
	const cJSON *tariffs = cJSON_GetObjectItemCaseSensitive(j, "tariffs");
	size_t nz = (size_t)cJSON_GetArraySize(zones), nt = (size_t)cJSON_GetArraySize(tariffs);
	b->zones = rh_calloc(nz ? nz : 1, sizeof *b->zones);
	b->tariffs = rh_calloc(nt ? nt : 1, sizeof *b->tariffs);
	const cJSON *x;
	bool ok = b->version >= 1;
	if (!ok)
		snprintf(err, errlen, "the book has no version");
	cJSON_ArrayForEach(x, zones) {
		if (!ok)
			break;
		ok = book_parse_zone(b, &b->zones[b->nzones++], x, err, errlen);
	}
	cJSON_ArrayForEach(x, tariffs) {
		if (!ok)
			break;
		ok = book_parse_tariff(&b->tariffs[b->ntariffs++], x, err, errlen);
	}
	cJSON_Delete(j);
	if (!ok) {
		book_free(b);
		return NULL;
	}
	/* the current version of each vehicle type: its highest */
	for (size_t i = 0; i < b->ntariffs; i++) {
		struct book_tariff *t = &b->tariffs[i];
		t->current = true;
		for (size_t k = 0; k < b->ntariffs; k++)
			if (strcmp(b->tariffs[k].vehicle, t->vehicle) == 0 && b->tariffs[k].version > t->version)
				t->current = false;
	}
	return b;
}

/* ------------------------------------------------------------ questions */

const struct book_tariff *book_tariff(const struct book *b, const char *vehicle, int version)
{
	for (size_t i = 0; i < b->ntariffs; i++) {
		const struct book_tariff *t = &b->tariffs[i];
		if (strcmp(t->vehicle, vehicle) == 0 && (version ? t->version == version : t->current))
			return t;
	}
	return NULL;
}

int book_band_at(const struct book_tariff *t, int minute)
{
	for (int i = 0; i < t->nbands; i++) {
		const struct book_band *b = &t->bands[i];
		bool in = b->start_min < b->end_min ? minute >= b->start_min && minute < b->end_min
						    : minute >= b->start_min || minute < b->end_min;
		if (in)
			return i;
	}
	return -1;
}

bool book_zone_contains(const struct book_zone *z, double lat, double lon)
{
	if (lat < z->min_lat || lat > z->max_lat || lon < z->min_lon || lon > z->max_lon)
		return false;
	bool in = false;
	for (size_t r = 0; r < z->nrings; r++) {
		const double *p = z->pts;
		size_t a = z->ring[r], e = z->ring[r + 1];
		for (size_t i = a, j = e - 1; i < e; j = i++) {
			double xi = p[2 * i], yi = p[2 * i + 1], xj = p[2 * j], yj = p[2 * j + 1];
			if ((yi > lat) != (yj > lat) && lon < (xj - xi) * (lat - yi) / (yj - yi) + xi)
				in = !in;
		}
	}
	return in;
}

int book_zone_at(const struct book *b, double lat, double lon)
{
	int best = -1;
	for (size_t i = 0; i < b->nzones; i++) {
		const struct book_zone *z = &b->zones[i];
		if (z->service_area || (best >= 0 && z->priority <= b->zones[best].priority))
			continue;
		if (book_zone_contains(z, lat, lon))
			best = (int)i;
	}
	return best;
}

bool book_in_service_area(const struct book *b, double lat, double lon)
{
	if (!b->has_service_area)
		return true;
	for (size_t i = 0; i < b->nzones; i++)
		if (b->zones[i].service_area && book_zone_contains(&b->zones[i], lat, lon))
			return true;
	return false;
}

/* The override of the highest-priority zone with one (named zones before
 * service areas) for which holds(zone, arg). */
static bool book_override_where(const struct book *b, bool (*holds)(const struct book_zone *z, const void *arg),
				const void *arg, struct surge_override *out)
{
	if (!b->noverrides)
		return false;
	const struct book_zone *best = NULL;
	for (size_t i = 0; i < b->nzones; i++) {
		const struct book_zone *z = &b->zones[i];
		if (!z->has_override)
			continue;
		if (best && (best->service_area < z->service_area ||
			     (best->service_area == z->service_area && best->priority >= z->priority)))
			continue;
		if (holds(z, arg))
			best = z;
	}
	if (best)
		*out = best->override;
	return best != NULL;
}

static bool book_zone_holds_point(const struct book_zone *z, const void *arg)
{
	const double *p = arg;
	return book_zone_contains(z, p[0], p[1]);
}

bool book_override_at(const struct book *b, double lat, double lon, struct surge_override *out)
{
	const double p[2] = { lat, lon };
	return book_override_where(b, book_zone_holds_point, p, out);
}

/* Inside the convex polygon of n corners in order (either way round). */
static bool book_in_convex(const double *lat, const double *lon, int n, double plat, double plon)
{
	int sign = 0;
	for (int i = 0; i < n; i++) {
		int j = (i + 1) % n;
		double cross = (lon[j] - lon[i]) * (plat - lat[i]) - (lat[j] - lat[i]) * (plon - lon[i]);
		int sg = cross > 0 ? 1 : cross < 0 ? -1 : 0;
		if (sg && sign && sg != sign)
			return false;
		if (sg)
			sign = sg;
	}
	return true;
}

/* The cell: lat[0..6], lon[0..6], its centre then its corners. */
struct book_cell {
	const double *lat, *lon;
};

static bool book_zone_touches_cell(const struct book_zone *z, const void *arg)
{
	const struct book_cell *c = arg;
	for (int i = 0; i < 7; i++)
		if (book_zone_contains(z, c->lat[i], c->lon[i]))
			return true;
	for (size_t r = 0; r < z->nrings; r++) {
		if (z->ring[r + 1] == z->ring[r])
			continue; /* an empty ring (PostGIS never writes one) */
		const double *pt = &z->pts[2 * z->ring[r]];
		if (book_in_convex(c->lat + 1, c->lon + 1, 6, pt[1], pt[0]))
			return true;
	}
	return false;
}

bool book_override_for_cell(const struct book *b, const double *lat, const double *lon, struct surge_override *out)
{
	const struct book_cell c = { lat, lon };
	return book_override_where(b, book_zone_touches_cell, &c, out);
}

/* ------------------------------------------------------------ the fare */

void book_price(const struct book_tariff *t, int band, const char *pz, const char *dz, int64_t distance_m,
		int64_t duration_s, double surge, struct fare *out)
{
	memset(out, 0, sizeof *out);
	rh_copy(out->vehicle_type, sizeof out->vehicle_type, t->vehicle);
	rh_copy(out->currency, sizeof out->currency, t->currency);
	rh_copy(out->method, sizeof out->method, "straight_line");
	out->tariff_version = t->version;
	out->band = band;
	out->base = t->base;
	out->per_km = t->per_km;
	out->per_min = t->per_min;
	out->minimum = t->minimum;
	if (band >= 0 && band < t->nbands) {
		const struct book_band *b = &t->bands[band];
		rh_copy(out->band_name, sizeof out->band_name, b->name);
		if (b->set & BAND_BASE)
			out->base = b->base;
		if (b->set & BAND_PER_KM)
			out->per_km = b->per_km;
		if (b->set & BAND_PER_MIN)
			out->per_min = b->per_min;
		if (b->set & BAND_MINIMUM)
			out->minimum = b->minimum;
	}
	out->booking_fee = t->booking_fee;
	out->cancel_fee = t->cancel_fee;
	out->no_show_fee = t->no_show_fee;
	out->waiting_free_s = t->waiting_free_s;
	out->waiting_per_min = t->waiting_per_min;
	out->distance_m = distance_m;
	out->duration_s = duration_s;
	rh_copy(out->pickup_zone, sizeof out->pickup_zone, pz ? pz : "");
	rh_copy(out->dropoff_zone, sizeof out->dropoff_zone, dz ? dz : "");
	for (int i = 0; i < t->nrules; i++) {
		const struct book_rule *r = &t->rules[i];
		if (r->kind == RULE_PICKUP_FEE && pz && strcmp(r->zone, pz) == 0)
			out->zone_fee += r->amount;
		else if (r->kind == RULE_DROPOFF_FEE && dz && strcmp(r->zone, dz) == 0)
			out->zone_fee += r->amount;
		else if (r->kind == RULE_FIXED && pz && dz && !out->fixed &&
			 ((strcmp(r->zone, pz) == 0 && strcmp(r->to, dz) == 0) ||
			  (r->both_ways && strcmp(r->zone, dz) == 0 && strcmp(r->to, pz) == 0)))
			out->fixed = r->amount;
	}
	out->distance = (out->per_km * distance_m + 500) / 1000;
	out->time = (out->per_min * duration_s + 30) / 60;
	if (out->fixed > 0) {
		/* a fixed fare replaces the metered parts, the surge and the minimum */
		out->surge = 1.0;
		out->total = out->fixed + out->booking_fee + out->zone_fee;
		return;
	}
	out->surge = surge;
	/* the same arithmetic as trip_metered_fare() in sql/functions/30_trip_fare.sql */
	int64_t surge_milli = llround(surge * 1000.0);
	int64_t surged = ((out->base + out->distance + out->time) * surge_milli + 500) / 1000;
	out->total = (surged > out->minimum ? surged : out->minimum) + out->booking_fee + out->zone_fee;
}
