/* Inside src/presence: the records and what the files share.
 *
 *   presence.c  records, the one writer of their status, the questions
 *               (nearest, count, one driver), the trip listener, eviction
 *   pings.c     locations: the WebSocket's hot path and the fix itself
 *   drivers.c   a driver's sessions (admission, open, close) and their own
 *               status changes (driver.status.changed)
 *   reserve.c   reservations for dispatch, and their release
 *   api.c       GET /v1/drivers/nearby, PUT /v1/drivers/me/location
 *   history.c   the location history (presence/history.h) */
#ifndef RH_PRESENCE_INTERNAL_H
#define RH_PRESENCE_INTERNAL_H

#include <sodium.h>

#include "core/settings.h"
#include "gateway/gateway.h"
#include "presence/gps_check.h"
#include "presence/history.h"
#include "presence/presence.h"

struct geo_grid;
struct metric_family;
struct metric_cell;
struct rh_timer;
struct reserve_queue;
struct presence_suspect;

struct driver_rec {
	struct uuid id;
	uint32_t slot;             /* its index: the grid's handle */
	bool used;
	bool in_grid;
	enum driver_status status; /* as in the database */
	int vehicle;               /* index into the tariffs */
	int64_t version;
	bool connected;            /* the gateway holds a session of theirs */
	int64_t last_ping_ms;      /* monotonic, for freshness */
	int64_t last_heard_ms;     /* monotonic: made, last session opened or closed (with last_ping_ms: last heard of) */
	int64_t last_device_ms;    /* device clock of the last accepted ping */
	int64_t last_ack_ms;
	double lat, lon;
	float heading, speed, accuracy;
	uint8_t source;
	bool has_trip;
	struct uuid trip;
	/* ping rate limit (token bucket) and flood detection */
	double tokens;
	int64_t tokens_ms;
	int64_t throttled_since_ms;   /* start of the current run of throttling */
	int64_t last_throttled_ms;
	int64_t last_throttle_notice_ms;
	uint32_t pings_since_ack;
	bool status_pending;       /* a status change is being written */
	bool reserving;            /* a reservation of theirs is at the database */
	bool unsure;               /* the database did not say where they stand: asking again */
	bool http_mode;            /* no socket: the app uses the HTTP fallback */
	int64_t available_since_ms; /* monotonic */
	uint32_t offers, accepts;
	struct gps_track gps;         /* GPS sanity (gps_check.h) */
	int64_t suspect_event_ms;     /* wall: the last driver.location.suspect written */
};

struct presence {
	struct presence_deps deps;
	bool stale_released;    /* the start's release of stale reservations is done */
	const struct presence_cfg *cfg;
	struct geo_grid *grid;
	struct history *history;
	/* Records live in fixed chunks that never move: sessions and callbacks
	 * hold pointers to them while more drivers arrive. */
	struct driver_rec **chunks;
	uint32_t nrecs, cap;       /* slots used so far / allocated */
	uint32_t *free_slots;
	uint32_t nfree;
	uint32_t *index;           /* open addressing: slot+1, 0 empty, UINT32_MAX deleted */
	uint32_t index_cap, index_used;
	uint32_t connected;
	unsigned char fuzz_key[crypto_shorthash_KEYBYTES];
	struct rh_timer *sweep;
	struct gw_message_type location_type, status_type; /* registered with the gateway */
	struct presence_hooks hooks;
	struct reserve_queue *reserve;
	struct gps_check_cfg gps_cfg;
	struct presence_suspect *suspect;
	struct metric_family *f_ignored;
	struct metric_cell *m_pings, *m_connected, *m_grid, *m_records, *m_evictions, *m_throttled, *m_cells;
};

/* ------------------------------------------------------------ presence.c */

struct driver_rec *presence_rec_find(struct presence *p, const struct uuid *id);
/* A new record (NULL: presence.max_drivers reached). */
struct driver_rec *presence_rec_new(struct presence *p, const struct uuid *id);
/* The record, made if new; NULL: the table is full. */
struct driver_rec *presence_rec_get(struct presence *p, const struct uuid *id);
struct driver_rec *presence_rec_at(const struct presence *p, uint32_t slot);
/* The one place a record's status changes: the grid follows, and the
 * available hook runs when the driver becomes available. An older version
 * arriving late is ignored (false). */
bool presence_rec_set_status(struct presence *p, struct driver_rec *r, enum driver_status st, int64_t version,
			     int64_t now);
/* The grid's copy of whether the driver can be offered rides. */
void presence_rec_sync_grid(struct presence *p, struct driver_rec *r);
/* The record's session is opened/closed (drivers.c, api.c). */
void presence_rec_set_connected(struct presence *p, struct driver_rec *r, bool connected);
/* Sends driver.status.changed to the driver's session, if open. */
void presence_tell_status(struct presence *p, const struct driver_rec *r, const char *reason, const char *correlation);
int64_t presence_now(const struct presence *p);

/* ------------------------------------------------------------ the parts */

void presence_pings_init(struct presence *p);
void presence_drivers_init(struct presence *p);
/* Fills the record from a drivers row (vehicle_type, status, version). */
void presence_rec_load_row(struct presence *p, struct driver_rec *r, const char *vehicle, const char *status,
			   const char *version, int64_t now);
extern struct db_stmt presence_st_driver_load;
void presence_reserve_init(struct presence *p);
void presence_reserve_fini(struct presence *p);
void presence_api_init(struct presence *p);

/* The ping token bucket (pings.c): presence.max_pings_per_s sustained,
 * twice that in a burst; false when over. */
bool presence_ping_allowed(struct presence *p, struct driver_rec *r, int64_t now);
/* A rejected fix (presence_fix_apply's reason and field) as a rejection:
 * field "timestamp" as it is, another as payload.<field>. */
void presence_fix_reject(struct gw_reject *rej, const char *reason, const char *field, int64_t device_ms, int64_t wall);
extern const struct jv_field presence_http_location_fields[];

#endif
