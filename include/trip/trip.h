/* Trips: ride requests, the trip state machine, cancellation fees, final
 * fares, receipts and ratings, and the REST endpoints for them.
 *
 *   SEARCHING -> MATCHED -> ARRIVED -> IN_PROGRESS -> COMPLETED
 *   SEARCHING | MATCHED | ARRIVED -> CANCELLED (IN_PROGRESS: operator only)
 *
 * The state machine itself is sql/005_trips.sql's trip_transition(): one
 * transaction per transition that updates the trip on (state, version),
 * appends its trip_events row and outbox rows, and moves the driver's
 * status and version. This module validates input, calls it, and keeps
 * presence's copy of the driver's status in step with the answer.
 *
 * Group commit: transitions that arrive while a batch is at the database
 * wait and go together in the next (trip_transitions()), so at load one
 * commit carries many transitions and at rest a transition waits for
 * nothing. Trips are spread over trip.batch_lanes lanes by id; one trip's
 * transitions are applied in the order asked.
 *
 * Endpoints: POST /v1/rides, GET /v1/rides, GET /v1/rides/{id},
 * POST /v1/rides/{id}/{cancel,assign,arrived,start,complete,rating},
 * GET /v1/rides/{id}/receipt. */
#ifndef RH_TRIP_TRIP_H
#define RH_TRIP_TRIP_H

#include <cjson/cJSON.h>
#include <stdbool.h>

struct server;
struct trips;

enum trip_state {
	TRIP_SEARCHING = 0,
	TRIP_MATCHED,
	TRIP_ARRIVED,
	TRIP_IN_PROGRESS,
	TRIP_COMPLETED,
	TRIP_CANCELLED,
};
const char *trip_state_name(enum trip_state s);

struct trips *trips_new(struct server *srv);
void trips_free(struct trips *t);

/* The answer to one transition:
 *   200  done; body is the trip (body.repeated: it was already in that state,
 *        nothing changed: the idempotent no-op; the listener hears repeats
 *        too, so that memory catches up after an answer lost on the way)
 *   404  no such trip, or not one this actor may touch
 *   409  refused in the current state: body {reason, state}; reasons
 *        illegal_transition, trip_finished, trip_in_progress, already_matched,
 *        version_conflict, driver_unavailable, driver_busy
 *   503  the database did not answer (retrying is safe: transitions are
 *        idempotent)
 *   500  a bug
 * body is borrowed for the duration of the callback. */
typedef void (*trip_done_cb)(void *arg, int status, const cJSON *body);

/* Asks for a transition of trip_id (canonical UUID) to `to`, by `role`
 * ("rider", "driver", "operator" or "system") and actor (an account id, or
 * a name for the system). args (taken over; may be NULL) as documented at
 * trip_transition() in sql/005_trips.sql: expected_version; driver_id,
 * driver_version, eta_s, distance_m, score (MATCHED); distance_m,
 * duration_s, end_lat, end_lng (COMPLETED); reason (CANCELLED); only_from (refused
 * with reason state_changed unless the trip is in that state). The
 * callback runs exactly once, never from inside this call. */
void trip_transition(struct trips *t, const char *trip_id, enum trip_state to, const char *role, const char *actor,
		     cJSON *args, trip_done_cb cb, void *arg);

/* Who hears about trips (dispatch): a new trip, and every transition that
 * changed something (not repeats), with the trip as the database answered.
 * Called before the transition's own callback. */
struct trip_listener {
	void (*created)(void *ctx, const cJSON *trip);
	void (*changed)(void *ctx, enum trip_state to, const cJSON *trip);
	void *ctx;
};
void trips_set_listener(struct trips *t, const struct trip_listener *l);

/* The state named s ("MATCHED"...), or -1. */
int trip_state_parse(const char *s);

/* The trip as the API shows it, built in place of the {"trip_row": [...]}
 * that the database's trip_view() answers (sql/011, src/trip/view.c); the
 * body's other members stay. A body without trip_row is left as it is;
 * false: a malformed row. */
bool trip_view_render(cJSON *body);
/* The same for a JSON text: the rendered text (cJSON_free it), or NULL. */
char *trip_view_text(const char *json);

#endif
