/* A fare from the pricing book: the vehicle type's current tariff, the
 * time-of-day band of the local time (pricing.timezone, set as the
 * process's TZ at start), the named zones of both ends, and the surge at
 * the pickup after the zone's override. */
#include <string.h>
#include <time.h>

#include "core/settings.h"
#include "core/timer.h"
#include "store/listen.h"
#include "core/strbuf.h"
#include "net/http.h"
#include "pricing_internal.h"

/* The vehicle type's name: the configuration's index. */
static const char *pricing_vehicle_name(const struct pricing *p, int vehicle)
{
	return vehicle >= 0 && vehicle < p->deps.ntariffs ? p->deps.tariffs[vehicle].name : "";
}

/* The tariff to price with: the book's current one for the type, or the
 * configuration's while the book has none for it. */
static const struct book_tariff *pricing_tariff(const struct pricing *p, int vehicle, int version)
{
	const char *name = pricing_vehicle_name(p, vehicle);
	const struct book_tariff *t = book_tariff(p->book, name, version);
	if (!t && version)
		t = book_tariff(p->book, name, 0);
	return t;
}

static int pricing_minute_of_day(int64_t now_ms)
{
	time_t secs = (time_t)(now_ms / 1000);
	struct tm tm;
	if (!localtime_r(&secs, &tm))
		return 0;
	return tm.tm_hour * 60 + tm.tm_min;
}

void pricing_surge_at(const struct pricing *p, double lat, double lng, int vehicle, struct surge_point *out)
{
	surge_at(p->surge, lat, lng, vehicle, out);
	struct surge_override o;
	if (!book_override_at(p->book, lat, lng, &o))
		return;
	out->override = o.mode;
	if (o.mode == SURGE_OVERRIDE_DISABLE)
		out->multiplier = 1.0;
	else if (o.mode == SURGE_OVERRIDE_CAP && out->multiplier > o.cap)
		out->multiplier = o.cap;
	/* freeze: the cell holds its value in the engine */
}

void pricing_price(const struct pricing *p, int vehicle, double plat, double plng, double dlat, double dlng,
		   int64_t distance_m, int64_t duration_s, int64_t now_ms, struct fare *out)
{
	const struct book_tariff *t = pricing_tariff(p, vehicle, 0);
	struct book_tariff none;
	if (!t) { /* a vehicle type the book does not know (cannot happen once seeded) */
		memset(&none, 0, sizeof none);
		rh_copy(none.vehicle, sizeof none.vehicle, pricing_vehicle_name(p, vehicle));
		rh_copy(none.currency, sizeof none.currency, "XXX");
		t = &none;
	}
	int zp = book_zone_at(p->book, plat, plng), zd = book_zone_at(p->book, dlat, dlng);
	struct surge_point sp;
	pricing_surge_at(p, plat, plng, vehicle, &sp);
	book_price(t, book_band_at(t, pricing_minute_of_day(now_ms)), zp >= 0 ? p->book->zones[zp].name : NULL,
		   zd >= 0 ? p->book->zones[zd].name : NULL, distance_m, duration_s, sp.multiplier, out);
	rh_copy(out->cell, sizeof out->cell, sp.cell_id);
}

void pricing_fare_complete(const struct pricing *p, double plat, double plng, double dlat, double dlng,
			   struct fare *f)
{
	int vehicle = tariff_find(p->deps.tariffs, p->deps.ntariffs, f->vehicle_type);
	const struct book_tariff *t = pricing_tariff(p, vehicle, f->tariff_version);
	if (t) {
		f->cancel_fee = t->cancel_fee;
		f->no_show_fee = t->no_show_fee;
		f->waiting_free_s = t->waiting_free_s;
		f->waiting_per_min = t->waiting_per_min;
		if (t->version == f->tariff_version && f->band >= 0 && f->band < t->nbands)
			rh_copy(f->band_name, sizeof f->band_name, t->bands[f->band].name);
	}
	int zp = book_zone_at(p->book, plat, plng), zd = book_zone_at(p->book, dlat, dlng);
	rh_copy(f->pickup_zone, sizeof f->pickup_zone, zp >= 0 ? p->book->zones[zp].name : "");
	rh_copy(f->dropoff_zone, sizeof f->dropoff_zone, zd >= 0 ? p->book->zones[zd].name : "");
	struct surge_point sp;
	surge_at(p->surge, plat, plng, vehicle, &sp);
	rh_copy(f->cell, sizeof f->cell, sp.cell_id);
}

int64_t pricing_quote_ttl(const struct pricing *p, const struct fare *f)
{
	int64_t ttl = p->cfg->quote_ttl_ms;
	if (f->surge > 1.0 && p->deps.surge->quote_ttl_ms < ttl)
		ttl = p->deps.surge->quote_ttl_ms;
	return ttl;
}

void pricing_note_request(struct pricing *p, double lat, double lng, int vehicle, int64_t now)
{
	surge_demand(p->surge, lat, lng, vehicle, now);
}

bool pricing_in_service_area(const struct pricing *p, double lat, double lng)
{
	return book_in_service_area(p->book, lat, lng);
}

void pricing_reply_outside_service_area(struct http_req *req, const char *field)
{
	http_reply_field_problem(req, PROBLEM_OUTSIDE_SERVICE_AREA, field, NULL, "the %s is outside the service area",
				 field);
}

/* ------------------------------------------------------------ the parts */

static bool pricing_override_hook(void *ctx, const double *lat, const double *lon, struct surge_override *out)
{
	const struct pricing *p = ctx;
	return book_override_for_cell(p->book, lat, lon, out);
}

void pricing_parts_init(struct pricing *p)
{
	pricing_book_init(p);
	struct surge_deps sd = {
		.timers = p->deps.timers, .metrics = p->deps.metrics, .cfg = p->deps.surge, .nvehicles = p->deps.ntariffs,
		.supply = p->deps.supply, .supply_ctx = p->deps.supply_ctx, .override_at = pricing_override_hook,
		.override_ctx = p, .changed = pricing_surge_changed, .changed_ctx = p,
	};
	p->surge = surge_new(&sd);
	pricing_surge_api_init(p);
	pricing_admin_api_init(p);
	pricing_payments_init(p);
}

void pricing_parts_fini(struct pricing *p)
{
	pricing_payments_fini(p);
	surge_free(p->surge);
	pricing_book_fini(p);
}

bool pricing_ready(const struct pricing *p, char *why, size_t whylen)
{
	if (!p->deps.db || p->book_loaded)
		return true;
	rh_copy(why, whylen, p->load_error);
	return false;
}

void pricing_stop(struct pricing *p)
{
	db_listener_free(p->listener);
	p->listener = NULL;
}
