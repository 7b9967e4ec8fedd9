/* Shared rides (docs/sharing.md): several riders in one car.
 *
 * The rate card (POST /v1/share/rate-card: eight prices from pricing's
 * fare for the trip alone, share/card.h), bookings (POST
 * /v1/share/bookings: 202 pending, then confirmed into a shared trip or
 * cancelled, GET and the rider's WebSocket feed), the insertion of a
 * pending booking into an open shared trip within the detour, wait and seat
 * bounds (share/plan.h, travel times from the router's many-to-many) or a
 * new shared trip with a reserved driver, the driver's versioned stop list
 * over the WebSocket and their per-rider commands (share.leg.update),
 * per-rider fares and receipts.
 *
 * Ownership: PostgreSQL holds shared trips and bookings, changed only by
 * the functions of sql/functions/50_share.sql (one transaction each, with
 * history and outbox rows); this module keeps the open trips and active
 * bookings in memory as the last answers of those functions. A driver of a
 * shared trip stays reserved (presence's OFFERED) from its first booking to
 * its last drop-off: no solo search can pick them; presence frees them when
 * the trip ends. */
#ifndef RH_SHARE_SHARE_H
#define RH_SHARE_SHARE_H

#include <stdbool.h>
#include <stddef.h>

struct uuid;

struct event_base;
struct rh_timers;
struct metrics;
struct db;
struct http_server;
struct auth;
struct gateway;
struct presence;
struct pricing;
struct routing;
struct share_cfg;
struct pricing_cfg;
struct tariff_cfg;
struct share;

struct share_deps {
	struct rh_timers *timers;
	struct metrics *metrics;
	struct db *db;
	struct http_server *http;
	struct auth *auth;
	struct gateway *gateway;
	struct presence *presence;
	struct pricing *pricing;
	struct routing *routing;    /* NULL: straight lines (pricing's detour factor and speed) */
	const struct share_cfg *cfg;
	const struct pricing_cfg *pricing_cfg;
	const struct tariff_cfg *tariffs;
	int ntariffs;
	/* The matcher releases the last run's reservations at start
	 * (match.auto): new shared trips wait until it has
	 * (presence_stale_released), else a driver reserved meanwhile could be
	 * freed by it. */
	bool after_release;
};
struct share *share_new(const struct share_deps *d);
/* Reads the open trips and active bookings back (at start). */
void share_start(struct share *s);
void share_free(struct share *s);

/* An active booking as the operator's map shows it (share_each_booking). */
struct share_booking_view {
	const struct uuid *id;
	const char *state;          /* pending, confirmed, arrived, picked_up */
	double plat, plng, dlat, dlng;
	int seats;
	const struct uuid *trip;    /* the shared trip; NULL while pending */
	const struct uuid *driver;  /* its driver; NULL while pending */
};
typedef void (*share_booking_fn)(void *ctx, const struct share_booking_view *b);
/* fn(ctx, view) once per active booking, in no set order; the count. */
size_t share_each_booking(struct share *s, share_booking_fn fn, void *ctx);

#endif
