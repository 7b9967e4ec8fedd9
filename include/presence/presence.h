/* Drivers online: one record per driver seen recently, the geohash grid of
 * their positions (the hot path: every ping moves a driver in memory and
 * nothing else waits), availability, staleness, nearby search for riders and
 * operators, reservations for dispatch, and the location history
 * (presence/history.h).
 *
 * Presence is the one writer of a driver's status in memory, and of the
 * drivers table's status outside a trip's own transitions: the driver's own
 * changes (available, offline), evictions, reservations and their release
 * (dispatch asks: presence_reserve, presence_release), and what trips did to
 * their drivers (it listens to the trip module). Everyone else asks.
 *
 * Ownership: presence owns driver records and the grid. A driver's session
 * belongs to the gateway (found there by account); session->owner is the
 * driver's record while the session is the driver's current one.
 *
 * Time: every function that needs the time takes `now` (monotonic ms);
 * presence reads no clock (its timers come from deps.timers). */
#ifndef RH_PRESENCE_PRESENCE_H
#define RH_PRESENCE_PRESENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/uuid.h"
#include "net/jsonv.h"

struct event_base;
struct rh_timers;
struct metrics;
struct db;
struct http_server;
struct auth;
struct gateway;
struct presence_cfg;
struct tariff_cfg;
struct trip_listener;
struct presence;

/* The payload of driver.location.updated (schemas/, docs/websocket.md). */
extern const struct jv_field presence_location_fields[];

/* As stored in drivers.status; UNREACHABLE only in memory (no socket). */
enum driver_status {
	DRIVER_OFFLINE = 0,
	DRIVER_AVAILABLE,
	DRIVER_OFFERED,
	DRIVER_EN_ROUTE,
	DRIVER_ON_TRIP,
	DRIVER_UNREACHABLE,
};
const char *driver_status_name(enum driver_status s);
/* -1 when not a status name. */
int driver_status_parse(const char *s);

/* A driver as a search finds them. */
struct presence_hit {
	struct uuid driver;
	double dist_m;
	double lat, lon;
	float heading;
	int vehicle;       /* index of the vehicle type in the tariffs */
	enum driver_status status;
	int64_t version;   /* drivers.version as last known */
	int64_t ping_age_ms;
	int64_t idle_ms;   /* time since the driver last became available */
	uint32_t offers, accepts; /* ride offers seen and accepted since the record was made */
	uint32_t slot;     /* presence's own handle of the record (internal) */
	float accuracy_m;  /* of the last fix; < 0: not given */
};

/* What dispatch hears from presence. Every hook may be NULL. */
struct presence_hooks {
	/* A location was applied for a driver on a trip. */
	void (*location)(void *ctx, const struct uuid *driver, const struct uuid *trip, double lat, double lon,
			 float speed_kmh, float accuracy_m, int64_t device_ms, int64_t now);
	/* The driver became available (their own change, a released
	 * reservation, the end of their trip): first in line for waiting trips. */
	void (*available)(void *ctx, const struct uuid *driver, int64_t now);
	/* A driver's session opened (after presence told the app its status). */
	void (*opened)(void *ctx, const struct uuid *driver, int64_t now);
	void *ctx;
};

struct presence_deps {
	struct event_base *base;
	struct rh_timers *timers;
	struct metrics *metrics;
	struct db *db;             /* NULL: memory only (tests) */
	struct http_server *http;  /* NULL: no endpoints */
	struct auth *auth;
	struct gateway *gateway;   /* NULL: no WebSocket */
	const struct presence_cfg *cfg;
	const struct tariff_cfg *tariffs; /* the vehicle types */
	int ntariffs;
};
struct presence *presence_new(const struct presence_deps *d);
/* Shutdown: write what the history queue holds. */
void presence_stop(struct presence *p);
void presence_free(struct presence *p);
void presence_set_hooks(struct presence *p, const struct presence_hooks *h);
/* Presence's ear on trips: what each change did to its driver (status and
 * version, the trip they are on). */
void presence_trip_listener(struct presence *p, struct trip_listener *out);

/* ------------------------------------------------------------ locations */

/* One location fix; heading, speed and accuracy < 0 and source NULL when
 * absent. */
struct presence_fix {
	double lat, lon, heading, speed, accuracy;
	const char *source;
	int64_t device_ms; /* the device's wall clock */
};
enum presence_fix_result { PRESENCE_FIX_OK, PRESENCE_FIX_REJECTED, PRESENCE_FIX_IGNORED };
/* Applies a fix for a driver known to presence (now: monotonic ms, wall: the
 * wall clock, both when it arrived); *why names a rejection (a field and a
 * reason: timestamp_in_future, stale). */
enum presence_fix_result presence_fix_apply(struct presence *p, const struct uuid *driver, const struct presence_fix *fx,
					    int64_t now, int64_t wall, const char **reason, const char **field);
/* Makes the record of a driver that has no session (tests, the HTTP
 * fallback): status and version as the database has them. false when the
 * table of drivers is full. */
bool presence_driver_load(struct presence *p, const struct uuid *driver, int vehicle, enum driver_status st,
			  int64_t version, int64_t now);

/* ------------------------------------------------------------ questions */

/* The k nearest drivers with a live socket, fresh position and `status`,
 * of a vehicle type in vehicle_mask (bit i = tariff i), nearest first. */
size_t presence_nearest(struct presence *p, double lat, double lon, double radius_m, enum driver_status status,
			uint32_t vehicle_mask, int64_t now, struct presence_hit *out, size_t k);
/* One driver as presence_nearest() would list them (reachable, a fresh
 * position, `status`), without searching: false if it would not. dist_m is
 * 0: the caller measures from where it needs. */
bool presence_hit_of(struct presence *p, const struct uuid *driver, enum driver_status status, int64_t now,
		     struct presence_hit *out);
/* Drivers with a live socket and fresh position, in any of the statuses of
 * status_mask (bit 1u << status), within radius_m, up to max. */
size_t presence_count(struct presence *p, double lat, double lon, double radius_m, uint32_t status_mask,
		      uint32_t vehicle_mask, int64_t now, size_t max);
/* Every driver presence_nearest() would list with `status` (a live
 * socket, a fresh position), anywhere: fn(ctx, lat, lon, vehicle) once each
 * (the surge engine's supply). Returns how many. */
size_t presence_each(struct presence *p, enum driver_status status, int64_t now,
		     void (*fn)(void *ctx, double lat, double lon, int vehicle), void *ctx);
/* The driver as presence knows them (any status, stale or not); false if
 * unknown. */
bool presence_driver(struct presence *p, const struct uuid *driver, struct presence_hit *out);
/* How long the driver has been gone: 0 while they hold a session, else the
 * time since they were last heard of (a location, a session opened or
 * closed, or since presence made their record); -1 when presence has no
 * record of them. */
int64_t presence_gone_ms(struct presence *p, const struct uuid *driver, int64_t now);
/* The driver's account was disabled or deleted: out of the grid at once,
 * offline when only available (not while a trip or reservation holds them). */
void presence_driver_withdraw(struct presence *p, const struct uuid *driver);
/* Every driver on the map (a position in the grid, not offline), in slot
 * order, up to max: what the operator's console draws. ping_age_ms is from
 * now; slot stays the driver's while the record lives. */
size_t presence_list(struct presence *p, int64_t now, struct presence_hit *out, size_t max);
/* How many records presence_list() may answer at most now. */
size_t presence_records(const struct presence *p);
/* Counts an offer to the driver, and whether it was accepted. */
void presence_note_offer(struct presence *p, const struct uuid *driver, bool accepted);
/* Index of a vehicle type in the tariffs, or -1. */
int presence_vehicle_index(const struct presence *p, const char *type);

/* ------------------------------------------------------------ reservations */

/* Reserves an available driver for an offer, at the version dispatch saw:
 * at once out of every other search (OFFERED in memory), then in the
 * database on (status, version), batched with the other reservations of the
 * loop turn (one statement, one commit). cb runs once, never from inside
 * this call: RESERVED (the driver is OFFERED at version), TAKEN (someone
 * else has them) or UNANSWERED (the database did not answer; a reservation
 * that committed unseen is freed again). Unless reserved, presence learns
 * where the driver really stands, asking until the database answers. */
enum presence_reserve_answer { PRESENCE_RESERVED, PRESENCE_TAKEN, PRESENCE_UNANSWERED };
typedef void (*presence_reserved_fn)(void *arg, enum presence_reserve_answer answer, int64_t version);
void presence_reserve(struct presence *p, const struct uuid *driver, int64_t version, presence_reserved_fn cb,
		      void *arg);
/* The offer ended without a match: the driver is freed in the database if
 * still OFFERED at version (and the trip's history gets a match.rejected
 * event with `reason`), retried while the database is away; the available
 * hook runs once they are free. */
void presence_release(struct presence *p, const struct uuid *driver, int64_t version, const struct uuid *trip,
		      const char *reason);
/* At start: drivers left OFFERED by the last run (every one but those of
 * keep, n of them) are made available again; done(arg, ok) once the database
 * answered (ok false: try again later). */
void presence_release_stale(struct presence *p, const struct uuid *keep, size_t n, void (*done)(void *arg, bool ok),
			    void *arg);
/* Whether that release has been done (answered ok): a reservation made
 * before it could be undone by it, so reservers other than dispatch (which
 * orders itself after it) wait for this. */
bool presence_stale_released(const struct presence *p);

#endif
