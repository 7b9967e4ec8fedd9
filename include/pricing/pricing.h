/* Pricing: the fare formula, upfront quotes and GET /v1/estimate.
 *
 * A fare is base + distance x per_km + time x per_min, times the surge
 * multiplier, at least the minimum, plus the booking fee; every amount in
 * integer minor units of the tariff's currency. Distance and duration come
 * from straight-line distance x pricing.detour_factor at
 * pricing.average_speed (method "straight_line") until a road map is
 * loaded.
 *
 * A quote is stateless and tamper-proof: its id is the quoted fare and trip
 * (vehicle type, pickup, dropoff, expiry) signed with a keyed BLAKE2b-256 MAC under a
 * key derived from auth.jwt_secret, so estimates write nothing and any
 * daemon sharing the secret honours another's quotes until they expire. */
#ifndef RH_PRICING_PRICING_H
#define RH_PRICING_PRICING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

struct metrics;
struct http_server;
struct routing;
struct pricing_cfg;
struct tariff_cfg;
struct pricing;

#define QUOTE_ID_MAX 400

struct fare {
	char vehicle_type[32];
	char currency[4];
	int64_t base, distance, time, minimum, booking_fee, total; /* minor units */
	int64_t per_km, per_min;                                    /* the tariff's rates */
	double surge;                                               /* multiplier, >= 1 */
	int64_t distance_m, duration_s;
	char method[16];                                            /* "straight_line" or "road" */
	/* The pricing book's (docs/pricing.md); a quote carries the first four. */
	int tariff_version;      /* 0: the configuration's tariff (the book not read yet) */
	int band;                /* the time-of-day band applied, -1: none */
	int64_t zone_fee;        /* pickup and dropoff zone fees (not surged) */
	int64_t fixed;           /* > 0: a fixed fare between two zones (no surge, no minimum) */
	char band_name[16];
	char pickup_zone[64], dropoff_zone[64]; /* the named zones of the ends ("" none) */
	char cell[28];           /* the pickup's surge cell */
	int64_t cancel_fee, no_show_fee, waiting_free_s, waiting_per_min; /* the tariff's, for the trip's policy */
};

/* The fare for a trip of distance_m / duration_s on tariff t (pure). */
void pricing_fare(const struct tariff_cfg *t, int64_t distance_m, int64_t duration_s, double surge, struct fare *out);

struct quote {
	struct fare fare;
	double pickup_lat, pickup_lng, dropoff_lat, dropoff_lng;
	int64_t expires_ms; /* wall clock */
};

struct event_base;
struct rh_timers;
struct db;
struct database_cfg;
struct surge_cfg;
struct payments_cfg;
struct auth;

struct pricing_deps {
	struct event_base *base;    /* NULL with db NULL */
	struct rh_timers *timers;
	struct db *db;              /* NULL: the configuration's tariffs only, no zones, no events (tests) */
	const struct database_cfg *dbcfg; /* the pricing book's notifications are listened for with it */
	struct auth *auth;          /* the admin endpoints' operator check */
	const struct surge_cfg *surge;
	const struct payments_cfg *payments;
	/* Supply for surge: add(acc, lat, lon, vehicle) once per available
	 * driver with a fresh position (presence answers); false: could not
	 * count. */
	bool (*supply)(void *ctx, int64_t now, void (*add)(void *acc, double lat, double lon, int vehicle), void *acc);
	void *supply_ctx;
	struct metrics *metrics;
	struct http_server *http;   /* NULL: no endpoint */
	struct routing *routing;    /* NULL: no map */
	const struct pricing_cfg *cfg;
	const struct tariff_cfg *tariffs;
	int ntariffs;
	const char *jwt_secret;     /* the quote key is derived from it */
	int64_t min_trip_m;         /* trip.min_trip: shorter estimates are refused */
	/* Up to k available drivers of vehicle type `vehicle` nearest to
	 * (lat, lng) within radius_m, their positions into lat_out/lon_out, for
	 * the estimate's pickup ETA (presence answers; NULL: none). */
	size_t (*drivers_near)(void *ctx, double lat, double lng, double radius_m, int vehicle, double *lat_out,
			       double *lon_out, size_t k);
	void *drivers_ctx;
};
struct pricing *pricing_new(const struct pricing_deps *d);
void pricing_free(struct pricing *p);

/* Ready to price with the database's book (it has been read once); else
 * why. Always true without a database. */
bool pricing_ready(const struct pricing *p, char *why, size_t whylen);
/* Shutdown: stop listening for the book's changes. */
void pricing_stop(struct pricing *p);

/* The surge cells above 1, for the operator's map: fn(ctx, corners, m) once
 * per cell, m the highest multiplier over the vehicle types; the count.
 * pricing_surge_version() changes with every recompute. */
typedef void (*pricing_surge_cell_fn)(void *ctx, const double lat[6], const double lng[6], double m);
size_t pricing_surge_cells(struct pricing *p, pricing_surge_cell_fn fn, void *ctx);
int64_t pricing_surge_version(const struct pricing *p);

/* A ride request at (lat, lng) for vehicle type index `vehicle`: demand
 * for surge (counted whether or not it is served). now: monotonic ms. */
void pricing_note_request(struct pricing *p, double lat, double lng, int vehicle, int64_t now);
/* Inside the service area (everywhere when none is defined). */
bool pricing_in_service_area(const struct pricing *p, double lat, double lng);
/* 422 outside-service-area naming `field` ("pickup"). */
struct http_req;
void pricing_reply_outside_service_area(struct http_req *req, const char *field);
/* The payment hand-off (docs/pricing.md): whether the rider (an account
 * id) is held by a failed payment (payments.hold), and the trip of it. */
bool pricing_payment_held(const struct pricing *p, const char *rider_id, char trip_out[37]);
/* 402 payment-required naming the trip. */
void pricing_reply_payment_required(struct http_req *req, const char *trip_id);
/* A fare opened from a quote: the zones, cell and the tariff's fees for the
 * trip's policy, from the version the quote was priced with (the current
 * one when the book no longer holds it). */
void pricing_fare_complete(const struct pricing *p, double plat, double plng, double dlat, double dlng,
			   struct fare *f);

/* Distance, duration and fare between two points for vehicle type index
 * `vehicle` (into cfg.tariff), by the best method available: the road graph
 * when a map is loaded ("road"), else the straight line ("straight_line").
 * when_unix: the trip's start, unix seconds (a calibrated map's travel times
 * depend on the hour of the week). With a map: RH_EINVAL when a point is
 * off it (*bad_point: 1 pickup, 2 dropoff), RH_ENOTFOUND when no road joins
 * them; else RH_OK. */
rh_err pricing_estimate(struct pricing *p, int vehicle, double plat, double plng, double dlat, double dlng,
			int64_t when_unix, struct fare *out, int *bad_point) RH_MUST_CHECK;
/* Seconds from a driver at (lat, lon) to a point, leaving at when_unix:
 * by road when a map is loaded (-1 when unreachable), else straight line x
 * detour at the average speed. n drivers at once (they share the work). */
void pricing_etas(struct pricing *p, const double *lat, const double *lon, size_t n, double to_lat, double to_lon,
		  int64_t when_unix, double *eta_s, double *dist_m);
/* The same from ns drivers to nd points at once (a batch window's
 * pickups): eta_s[i * nd + j] and dist_m[i * nd + j] from driver i to point
 * j; with a map one many-to-many search (-1 when no road joins them; a
 * point no driver reaches, as one off the map, by the straight line).
 * want (NULL: every pair) marks the pairs asked, want[i * nd + j]: the
 * straight lines are drawn for those only (the others are left alone). */
void pricing_etas_many(struct pricing *p, const double *lat, const double *lon, size_t ns, const double *to_lat,
		       const double *to_lon, size_t nd, const uint8_t *want, int64_t when_unix, double *eta_s,
		       double *dist_m);
/* The reply to a point off the map / no route, as problem+json. */
void pricing_reply_route_error(struct http_req *req, rh_err e, int bad_point);

struct quote_key {
	unsigned char k[32];
};
/* The quote key for a token secret (empty: a random key). */
void pricing_quote_key(const char *jwt_secret, struct quote_key *out);
const struct quote_key *pricing_key(const struct pricing *p);

/* Signs q into id (at least QUOTE_ID_MAX bytes). */
void pricing_quote_sign(const struct quote_key *key, const struct quote *q, char *id, size_t idlen);

enum quote_check {
	QUOTE_OK = 0,
	QUOTE_INVALID,  /* malformed or signature does not verify */
	QUOTE_EXPIRED,
};
/* Verifies and decodes a quote id; now_ms is the wall clock. */
enum quote_check pricing_quote_open(const struct quote_key *key, const char *id, int64_t now_ms, struct quote *out);

/* The fare as JSON members (base, distance, time, surge_multiplier, minimum,
 * booking_fee, total, currency; zone_fee, fixed_fare, band when they apply)
 * appended to an object being built; with `rates` also per_km, per_min,
 * distance_m, duration_s, method, tariff_version, the zones and the surge
 * cell (what the trip stores to meter its final fare by the same tariff
 * and explain its receipt). */
struct cJSON;
void pricing_fare_json(const struct fare *f, struct cJSON *obj, bool rates);

#endif
