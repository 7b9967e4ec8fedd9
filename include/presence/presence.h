/* Drivers online: one record per driver seen recently, the geohash grid of
 * their positions (the hot path: every ping moves a driver in memory and
 * nothing else waits), their WebSocket sessions (one per driver; a new login
 * replaces the old session), availability, staleness, nearby search for
 * riders and operators, and the location history (presence/history.h).
 *
 * Ownership: presence owns driver records and the grid; a record borrows
 * its session from the gateway (cleared in the gateway's closed hook). */
#ifndef RH_PRESENCE_PRESENCE_H
#define RH_PRESENCE_PRESENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/uuid.h"
#include "net/jsonv.h"

struct server;
struct presence;
struct session;

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

struct presence_hit {
	struct uuid driver;
	double dist_m;
	double lat, lon;
	float heading;
	int vehicle;       /* index of the vehicle type in cfg.tariff */
	int64_t version;   /* drivers.version as last known */
	int64_t ping_age_ms;
	int64_t idle_ms;   /* time since the driver last became available */
	uint32_t offers, accepts; /* ride offers seen and accepted since the record was made */
	uint32_t slot;     /* presence's own handle of the record (internal) */
};

/* What dispatch needs to hear from presence. Every hook may be NULL. */
struct presence_hooks {
	/* A location was applied for a driver on a trip (presence_set_trip). */
	void (*location)(void *ctx, const struct uuid *driver, double lat, double lon, float speed_kmh,
			 float accuracy_m, int64_t device_ms);
	/* The driver made themself available (driver.status.changed). */
	void (*available)(void *ctx, const struct uuid *driver);
	/* A driver's session opened (after presence told the app its status). */
	void (*opened)(void *ctx, struct session *s, const struct uuid *driver);
	void *ctx;
};

struct presence *presence_new(struct server *srv);
/* Shutdown: write what the history queue holds. */
void presence_stop(struct presence *p);
void presence_free(struct presence *p);

/* The k nearest drivers with a live socket, fresh position and `status`,
 * of a vehicle type in vehicle_mask (bit i = cfg.tariff[i]), nearest first. */
size_t presence_nearest(struct presence *p, double lat, double lon, double radius_m, enum driver_status status,
			uint32_t vehicle_mask, struct presence_hit *out, size_t k);
/* One driver as presence_nearest() would list them (a fresh position in the
 * grid, `status`), without searching: false if it would not. dist_m is 0:
 * the caller measures from where it needs. */
bool presence_hit_of(struct presence *p, const struct uuid *driver, enum driver_status status,
		     struct presence_hit *out);
/* The dispatcher changed a driver's status (and version) in the database. */
void presence_set_status(struct presence *p, const struct uuid *driver, enum driver_status st, int64_t version);
void presence_set_hooks(struct presence *p, const struct presence_hooks *h);
/* The trip a driver is on (NULL: none): their locations go to the location
 * hook and their history rows carry the trip id. */
void presence_set_trip(struct presence *p, const struct uuid *driver, const struct uuid *trip);
/* Counts an offer to the driver, and whether it was accepted. */
void presence_note_offer(struct presence *p, const struct uuid *driver, bool accepted);
/* Drivers with a live socket and fresh position, in any of the statuses of
 * status_mask (bit 1u << status), within radius_m. */
size_t presence_count(struct presence *p, double lat, double lon, double radius_m, uint32_t status_mask,
		      uint32_t vehicle_mask, size_t max);
/* The driver's current status and version as presence knows them; false if unknown. */
bool presence_driver(struct presence *p, const struct uuid *driver, enum driver_status *st, int64_t *version,
		     double *lat, double *lon);

/* The driver's open session, or NULL. */
struct session *presence_session(struct presence *p, const struct uuid *driver);
/* Index of a vehicle type in cfg.tariff, or -1. */
int presence_vehicle_index(const struct server *srv, const char *type);

#endif
