/* Trips: ride requests, the trip state machine, cancellation fees, final
 * fares, receipts and ratings, and the REST endpoints for them.
 *
 *   SEARCHING -> MATCHED -> ARRIVED -> IN_PROGRESS -> COMPLETED
 *   SEARCHING | MATCHED | ARRIVED -> CANCELLED (IN_PROGRESS: operator only)
 *   SCHEDULED -> SEARCHING (the scheduler, match.schedule_lead before
 *   scheduled_at), SCHEDULED -> CANCELLED (free)
 *
 * The state machine itself is in SQL (trip_transitions(), sql/): one
 * transaction per batch of changes that updates each trip on (state,
 * version), appends its trip_events and outbox rows, and moves the driver's
 * status and version. This module is its only caller: it takes a change as
 * a C struct, answers a typed result, and tells its listeners of every trip
 * that was made or changed (one direction: modules that follow trips listen,
 * they are never called back twice).
 *
 * Group commit: changes that arrive while a batch is at the database wait
 * and go together in the next, so at load one commit carries many and at
 * rest a change waits for nothing. Trips are spread over trip.batch_lanes
 * lanes by id; one trip's changes are applied in the order asked.
 *
 * Endpoints: POST /v1/rides, GET /v1/rides, GET /v1/rides/{id},
 * POST /v1/rides/{id}/{cancel,assign,arrived,start,complete,rating},
 * GET /v1/rides/{id}/receipt. */
#ifndef RH_TRIP_TRIP_H
#define RH_TRIP_TRIP_H

#include <stdbool.h>
#include <stdint.h>

#include "core/err.h"
#include "core/uuid.h"

struct event_base;
struct metrics;
struct db;
struct http_server;
struct auth;
struct pricing;
struct rh_config;
struct trips;
struct trip_row;

enum trip_state {
	TRIP_SEARCHING = 0,
	TRIP_MATCHED,
	TRIP_ARRIVED,
	TRIP_IN_PROGRESS,
	TRIP_COMPLETED,
	TRIP_CANCELLED,
	TRIP_SCHEDULED, /* a ride for later: nothing searched until match.schedule_lead before it */
};
const char *trip_state_name(enum trip_state s);
/* The state named s ("MATCHED"...), or -1. */
int trip_state_parse(const char *s);
static inline bool trip_state_is_active(enum trip_state s)
{
	return s != TRIP_COMPLETED && s != TRIP_CANCELLED;
}

/* A trip as the database last answered it. What dispatch and the live feed
 * need is typed here; the whole row (every column of the API's view) is
 * kept for the views at the edge (trip_view_json). Borrowed by listeners and
 * callbacks for the duration of the call. */
struct trip {
	struct uuid id, rider;
	enum trip_state state;
	int64_t version;
	char vehicle_type[32];
	double pickup_lat, pickup_lng, dropoff_lat, dropoff_lng;
	char currency[4];
	int64_t fare_quoted;    /* minor units */
	bool has_driver;
	struct uuid driver;
	int64_t requested_at, started_at; /* wall clock ms; 0: not yet */
	int64_t scheduled_at;      /* wall clock ms: a ride for then; 0: for now */
	int64_t search_started_at; /* wall clock ms: a scheduled ride's search began; 0: not (or at requested_at) */
	bool booked;               /* booked by an operator for the rider (waits match.booking_max_wait) */
	const struct trip_row *row;
};

/* When t's search began (wall ms): a scheduled ride's at its search's
 * start, any other at its request. */
static inline int64_t trip_search_start(const struct trip *t)
{
	return t->search_started_at ? t->search_started_at : t->requested_at;
}

/* Who asks for a change. */
enum trip_role { TRIP_ROLE_RIDER, TRIP_ROLE_DRIVER, TRIP_ROLE_OPERATOR, TRIP_ROLE_SYSTEM };
const char *trip_role_name(enum trip_role r);

/* One change of one trip: the target state, who asks, and what the target
 * takes (the other members are ignored). */
struct trip_change {
	struct uuid trip;
	enum trip_state to;
	enum trip_role role;
	char actor[40];            /* the account id, or a name for the system */
	int64_t expected_version;  /* refused (version_conflict) unless the trip is at it; 0: any */
	int only_from;             /* refused (state_changed) unless the trip is in it; -1: any */
	/* MATCHED: the driver, at driver_version if >= 0, with the offer's figures */
	struct uuid driver;
	int64_t driver_version;
	int eta_s, pickup_m;       /* -1: not known */
	double score;              /* < 0: not known */
	/* COMPLETED: what was metered (required), and where it ended */
	int64_t distance_m, duration_s;
	bool has_end;
	double end_lat, end_lng;
	/* CANCELLED: why ("" lets the state machine name it) */
	char reason[65];
};
/* A change with every optional member unset. */
void trip_change_init(struct trip_change *c, const struct uuid *trip, enum trip_state to, enum trip_role role,
		      const char *actor);

/* Why a change was refused (err RH_ECONFLICT) or a request turned down. */
enum trip_refusal {
	TRIP_REFUSAL_NONE = 0,
	TRIP_REFUSAL_ILLEGAL,          /* not an edge of the state machine */
	TRIP_REFUSAL_FINISHED,         /* the trip is COMPLETED or CANCELLED */
	TRIP_REFUSAL_IN_PROGRESS,      /* only an operator cancels a trip in progress */
	TRIP_REFUSAL_ALREADY_MATCHED,  /* another driver has it */
	TRIP_REFUSAL_STATE_CHANGED,    /* only_from no longer holds */
	TRIP_REFUSAL_VERSION,          /* expected_version no longer holds */
	TRIP_REFUSAL_DRIVER_UNAVAILABLE, /* the driver is offline, busy, of another type, or moved on */
	TRIP_REFUSAL_DRIVER_BUSY,      /* the driver has another active trip */
	TRIP_REFUSAL_NOT_COMPLETED,    /* (ratings) only a completed trip is rated */
	TRIP_REFUSAL_ALREADY_RATED,
	TRIP_REFUSAL_COUNT
};
const char *trip_refusal_name(enum trip_refusal r);

/* The answer to one change:
 *   RH_OK        done; trip is the trip as the change left it (repeated: it
 *                was in that state already, nothing changed: the idempotent
 *                no-op, so a change may always be asked again)
 *   RH_ENOTFOUND no such trip, or not one this actor may touch
 *   RH_ECONFLICT refused in the trip's current state (refusal, state, version)
 *   RH_EAGAIN    the database did not answer; asking again is safe
 *                (unknown: it may have been applied)
 *   RH_EDB       the database failed (a bug, logged) */
struct trip_result {
	rh_err err;
	enum trip_refusal refusal;
	enum trip_state state;     /* RH_ECONFLICT: the trip's state */
	int64_t version;           /* RH_ECONFLICT (version): the trip's version */
	bool repeated;
	bool unknown;
	int64_t driver_version;    /* RH_OK: the driver's version if the change moved them, else -1 */
	const struct trip *trip;   /* RH_OK; borrowed for the callback */
};
typedef void (*trip_done_fn)(void *arg, const struct trip_result *res);

/* Asks for a change; cb runs exactly once, never from inside this call,
 * after every listener has heard of the change. */
void trip_change(struct trips *t, const struct trip_change *c, trip_done_fn cb, void *arg);

/* What listeners hear: a trip just made (created) or changed (not repeats;
 * a repeat is heard once, after a restart or an answer lost on the way, so
 * that memory catches up with the database). driver_version: the trip's
 * driver's version if this change moved them (MATCHED, IN_PROGRESS, the
 * end), else -1. */
struct trip_event {
	const struct trip *trip;
	bool created;
	bool recovered;      /* read back at start (trips_load_active) */
	enum trip_role by;   /* who asked for it (a request: the rider; read back: the system) */
	int64_t driver_version;
};
struct trip_listener {
	void (*changed)(void *ctx, const struct trip_event *e);
	void *ctx;
};
/* Listeners hear in the order they were added (at most 4). */
void trips_listen(struct trips *t, const struct trip_listener *l);

/* A live trip's driver gone past trip.driver_lost_after (lost), or back
 * (!lost): flagged in the database with an event of the trip for the
 * operator (trip.driver_lost, trip.driver_returned); a flagged trip can be
 * ended by its rider or an operator (reason driver_lost, the fare rule of
 * docs/api.md). done(arg, err, changed): changed false when the trip is no
 * longer live with this driver, or was flagged so already. */
void trip_mark_driver_lost(struct trips *t, const struct uuid *trip, const struct uuid *driver, bool lost,
			   void (*done)(void *arg, rh_err err, bool changed), void *arg);

/* At start: every active trip, read from the database, told to every
 * listener as a recovered event (a trip that ends while the read is on its
 * way is not told). done(arg, n) with the number told, or -1 when the
 * database did not answer (ask again later). */
void trips_load_active(struct trips *t, void (*done)(void *arg, int n), void *arg);

/* Ride requests are refused at once when no driver could serve them (a
 * question for dispatch, asked through this hook; unset: never refused). */
struct trip_supply {
	/* true when a driver of vehicle type index `vehicle` is online near
	 * the pickup; *radius_m: how far dispatch looks */
	bool (*drivers_near)(void *ctx, double lat, double lng, int vehicle, double *radius_m);
	void *ctx;
};
void trips_set_supply(struct trips *t, const struct trip_supply *s);

struct trips_deps {
	struct event_base *base;
	struct metrics *metrics;
	struct db *db;
	struct http_server *http;   /* NULL: no endpoints */
	struct auth *auth;
	struct pricing *pricing;
	const struct rh_config *cfg; /* trip, pricing.quote_match_m and the tariffs */
};
struct trips *trips_new(const struct trips_deps *d);
void trips_free(struct trips *t);

/* Reads the trip row the database's trip_view() answers ({"trip_row": [...]},
 * its columns by position: include/trip/trip_row.def) into *out, which then
 * owns the row (trip_fini). false: a malformed row. */
bool trip_from_row_json(const char *json, struct trip *out);
void trip_fini(struct trip *t);

/* The trip as the API shows it (docs/api.md): a new cJSON object, or NULL
 * for a malformed row. */
struct cJSON;
struct cJSON *trip_view_json(const struct trip *t);
/* The view built in place of t's row, which t then no longer has. */
struct cJSON *trip_view_take(struct trip *t);
/* The view's "driver" member alone (NULL: no driver). */
struct cJSON *trip_view_driver_json(const struct trip *t);
/* The same as text (free with cJSON_free), from the row's JSON text. */
char *trip_view_text(const char *json);

#endif
