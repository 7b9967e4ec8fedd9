/* The trip module: changes in as C structs, results out typed, listeners
 * told of every change. The JSON here is the SQL functions' calling
 * convention (sql/: trip_transitions() items and answers), nothing else. */
#include "trip/trip.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/metrics.h"
#include "net/ratelimit.h"
#include "store/db.h"
#include "trip_internal.h"

#define TRIP_RATELIMIT_KEYS 65536

static const char *const trip_state_names[] = { "SEARCHING", "MATCHED", "ARRIVED", "IN_PROGRESS", "COMPLETED",
						"CANCELLED", "SCHEDULED" };
static const char *const trip_role_names[] = { "rider", "driver", "operator", "system" };
/* As the SQL functions spell them (the reason member of a refusal). */
static const char *const trip_refusal_names[TRIP_REFUSAL_COUNT] = {
	[TRIP_REFUSAL_NONE] = "",
	[TRIP_REFUSAL_ILLEGAL] = "illegal_transition",
	[TRIP_REFUSAL_FINISHED] = "trip_finished",
	[TRIP_REFUSAL_IN_PROGRESS] = "trip_in_progress",
	[TRIP_REFUSAL_ALREADY_MATCHED] = "already_matched",
	[TRIP_REFUSAL_STATE_CHANGED] = "state_changed",
	[TRIP_REFUSAL_VERSION] = "version_conflict",
	[TRIP_REFUSAL_DRIVER_UNAVAILABLE] = "driver_unavailable",
	[TRIP_REFUSAL_DRIVER_BUSY] = "driver_busy",
	[TRIP_REFUSAL_NOT_COMPLETED] = "not_completed",
	[TRIP_REFUSAL_ALREADY_RATED] = "already_rated",
};

int trip_state_parse(const char *s)
{
	for (int i = 0; s && i < (int)RH_ARRAY_LEN(trip_state_names); i++)
		if (strcmp(s, trip_state_names[i]) == 0)
			return i;
	return -1;
}

const char *trip_state_name(enum trip_state s)
{
	return (unsigned)s < RH_ARRAY_LEN(trip_state_names) ? trip_state_names[s] : "?";
}

const char *trip_role_name(enum trip_role r)
{
	return (unsigned)r < RH_ARRAY_LEN(trip_role_names) ? trip_role_names[r] : "?";
}

const char *trip_refusal_name(enum trip_refusal r)
{
	return (unsigned)r < TRIP_REFUSAL_COUNT ? trip_refusal_names[r] : "?";
}

static enum trip_refusal trip_refusal_parse(const char *s)
{
	for (int i = 1; s && i < TRIP_REFUSAL_COUNT; i++)
		if (strcmp(s, trip_refusal_names[i]) == 0)
			return (enum trip_refusal)i;
	return TRIP_REFUSAL_ILLEGAL;
}

int trip_vehicle_index(const struct trips *t, const char *name)
{
	return tariff_index(t->deps.cfg, name);
}

void trip_change_init(struct trip_change *c, const struct uuid *trip, enum trip_state to, enum trip_role role,
		      const char *actor)
{
	memset(c, 0, sizeof *c);
	c->trip = *trip;
	c->to = to;
	c->role = role;
	snprintf(c->actor, sizeof c->actor, "%s", actor);
	c->only_from = -1;
	c->driver_version = -1;
	c->eta_s = c->pickup_m = -1;
	c->score = -1;
}

/* ------------------------------------------------------------ listeners */

void trips_listen(struct trips *t, const struct trip_listener *l)
{
	if (t->nlisteners < TRIP_LISTENERS_MAX)
		t->listeners[t->nlisteners++] = *l;
}

void trip_notify(struct trips *t, const struct trip_event *e)
{
	if (t->ended_while_loading && !trip_state_is_active(e->trip->state))
		umap_put(t->ended_while_loading, &e->trip->id, t);
	for (int i = 0; i < t->nlisteners; i++)
		t->listeners[i].changed(t->listeners[i].ctx, e);
}

/* ------------------------------------------------------------ answers */

void trip_answer_read(struct tx_answer *a, struct trip_result *res, struct trip *trip)
{
	memset(res, 0, sizeof *res);
	memset(trip, 0, sizeof *trip);
	res->driver_version = -1;
	res->unknown = a->unknown;
	const cJSON *b = a->body;
	const cJSON *reason = cJSON_GetObjectItemCaseSensitive(b, "reason");
	const cJSON *state = cJSON_GetObjectItemCaseSensitive(b, "state");
	const cJSON *version = cJSON_GetObjectItemCaseSensitive(b, "version");
	const cJSON *dv = cJSON_GetObjectItemCaseSensitive(b, "driver_version");
	int st = trip_state_parse(cJSON_GetStringValue(state));
	res->state = st < 0 ? TRIP_SEARCHING : (enum trip_state)st;
	res->version = cJSON_IsNumber(version) ? (int64_t)version->valuedouble : 0;
	res->repeated = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(b, "repeated"));
	res->driver_version = cJSON_IsNumber(dv) ? (int64_t)dv->valuedouble : -1;
	switch (a->status) {
	case 200:
	case 201:
		if (!trip_from_answer(a->body, trip)) {
			log_error(NULL, "trip: a malformed trip row from the database");
			res->err = RH_EDB;
			return;
		}
		res->err = RH_OK;
		res->trip = trip;
		return;
	case 404:
		res->err = RH_ENOTFOUND;
		return;
	case 409:
		res->err = RH_ECONFLICT;
		res->refusal = trip_refusal_parse(cJSON_GetStringValue(reason));
		return;
	case 503:
		res->err = RH_EAGAIN;
		return;
	default:
		res->err = RH_EDB;
		return;
	}
}

/* ------------------------------------------------------------ changes */

struct trip_change_ctx {
	enum trip_state to;
	enum trip_role by;
	trip_done_fn cb;
	void *arg;
};

static void trip_count_change(struct trips *t, enum trip_state to, const struct trip_result *res)
{
	const char *result = res->err == RH_OK ? (res->repeated ? "repeated" : "ok")
			   : res->err == RH_ENOTFOUND ? "not_found"
			   : res->err == RH_ECONFLICT ? "refused"
			   : res->err == RH_EAGAIN ? "unavailable"
						   : "error";
	const char *lv[] = { trip_state_name(to), result };
	metric_inc(metric_cell(t->f_transitions, lv));
}

static void trip_change_answered(struct trips *t, void *arg, struct tx_answer *a)
{
	struct trip_change_ctx *c = arg;
	struct trip trip;
	struct trip_result res;
	trip_answer_read(a, &res, &trip);
	trip_count_change(t, c->to, &res);
	if (res.err == RH_OK) {
		/* A repeat is told too: after an answer lost on the way (the
		 * asker was told to ask again), it is how memory catches up. */
		struct trip_event e = { .trip = &trip, .by = c->by, .driver_version = res.repeated ? -1 : res.driver_version };
		trip_notify(t, &e);
	}
	c->cb(c->arg, &res);
	trip_fini(&trip);
	rh_free(c);
}

/* The change as one item of trip_transitions() (sql/: its args). */
static char *trip_change_item(const struct trip_change *c)
{
	char id[37];
	cJSON *o = cJSON_CreateObject();
	uuid_format(&c->trip, id);
	cJSON_AddStringToObject(o, "trip_id", id);
	cJSON_AddStringToObject(o, "to", trip_state_name(c->to));
	cJSON_AddStringToObject(o, "role", trip_role_name(c->role));
	cJSON_AddStringToObject(o, "actor", c->actor);
	cJSON *args = cJSON_AddObjectToObject(o, "args");
	if (c->expected_version > 0)
		cJSON_AddNumberToObject(args, "expected_version", (double)c->expected_version);
	if (c->only_from >= 0)
		cJSON_AddStringToObject(args, "only_from", trip_state_name((enum trip_state)c->only_from));
	if (c->to == TRIP_MATCHED) {
		uuid_format(&c->driver, id);
		cJSON_AddStringToObject(args, "driver_id", id);
		if (c->driver_version >= 0)
			cJSON_AddNumberToObject(args, "driver_version", (double)c->driver_version);
		if (c->eta_s >= 0)
			cJSON_AddNumberToObject(args, "eta_s", c->eta_s);
		if (c->pickup_m >= 0)
			cJSON_AddNumberToObject(args, "distance_m", c->pickup_m);
		if (c->score >= 0)
			cJSON_AddNumberToObject(args, "score", round(c->score * 1000) / 1000);
	} else if (c->to == TRIP_COMPLETED) {
		cJSON_AddNumberToObject(args, "distance_m", (double)c->distance_m);
		cJSON_AddNumberToObject(args, "duration_s", (double)c->duration_s);
		if (c->has_end) {
			cJSON_AddNumberToObject(args, "end_lat", c->end_lat);
			cJSON_AddNumberToObject(args, "end_lng", c->end_lng);
		}
	} else if (c->to == TRIP_CANCELLED && c->reason[0]) {
		cJSON_AddStringToObject(args, "reason", c->reason);
	}
	char *json = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return json;
}

void trip_change(struct trips *t, const struct trip_change *c, trip_done_fn cb, void *arg)
{
	struct trip_change_ctx *cc = RH_NEW(struct trip_change_ctx);
	char id[37];
	cc->to = c->to;
	cc->by = c->role;
	cc->cb = cb;
	cc->arg = arg;
	uuid_format(&c->trip, id);
	trip_batch_enqueue(t, &trip_tx_changes, id, trip_change_item(c), trip_change_answered, cc);
}

void trips_set_supply(struct trips *t, const struct trip_supply *s)
{
	t->supply = *s;
}

/* ------------------------------------------------------------ a driver gone */

static struct db_stmt trip_st_driver_lost = {
	"trip_driver_lost", "SELECT trip_driver_lost($1::uuid, $2::uuid, $3::boolean)", 3,
};

struct trip_lost_ctx {
	void (*done)(void *arg, rh_err err, bool changed);
	void *arg;
};

static void trip_driver_lost_written(void *arg, const struct db_result *res)
{
	struct trip_lost_ctx *c = arg;
	rh_err e = db_result_err(res);
	c->done(c->arg, e, e == RH_OK && db_rows(res) == 1 && strcmp(db_get(res, 0, 0), "1") == 0);
	rh_free(c);
}

void trip_mark_driver_lost(struct trips *t, const struct uuid *trip, const struct uuid *driver, bool lost,
			   void (*done)(void *arg, rh_err err, bool changed), void *arg)
{
	char tid[37], did[37];
	uuid_format(trip, tid);
	uuid_format(driver, did);
	const char *params[] = { tid, did, lost ? "true" : "false" };
	struct trip_lost_ctx *c = RH_NEW(struct trip_lost_ctx);
	c->done = done;
	c->arg = arg;
	db_query(t->deps.db, &trip_st_driver_lost, params, trip_driver_lost_written, c);
}

/* ------------------------------------------------------------ at start */

static struct db_stmt trip_st_active = {
	"trip_active",
	"SELECT trip_json(t, false) FROM trips t WHERE t.state IN ('SCHEDULED', 'SEARCHING', 'MATCHED', 'ARRIVED', 'IN_PROGRESS')"
	" ORDER BY t.requested_at",
	0,
};

struct trip_load_ctx {
	struct trips *t;
	void (*done)(void *arg, int n);
	void *arg;
};

static void trip_active_loaded(void *arg, const struct db_result *res)
{
	struct trip_load_ctx *c = arg;
	struct trips *t = c->t;
	int told = -1;
	if (res->err == RH_OK) {
		told = 0;
		for (int i = 0; i < db_rows(res); i++) {
			struct trip trip;
			if (!trip_from_row_json(db_get(res, i, 0), &trip)) {
				log_error(NULL, "trip: a malformed trip row from the database: %s", db_get(res, i, 0));
				continue;
			}
			if (!t->ended_while_loading || !umap_get(t->ended_while_loading, &trip.id)) { /* (else it ended while read) */
				struct trip_event e = { .trip = &trip, .recovered = true, .by = TRIP_ROLE_SYSTEM,
							.driver_version = -1 };
				trip_notify(t, &e);
				told++;
			}
			trip_fini(&trip);
		}
	} else {
		log_warn(NULL, "trip: cannot load the active trips (%s)", res->message);
	}
	if (t->ended_while_loading) {
		umap_fini(t->ended_while_loading);
		rh_free(t->ended_while_loading);
		t->ended_while_loading = NULL;
	}
	c->done(c->arg, told);
	rh_free(c);
}

void trips_load_active(struct trips *t, void (*done)(void *arg, int n), void *arg)
{
	struct trip_load_ctx *c = RH_NEW(struct trip_load_ctx);
	c->t = t;
	c->done = done;
	c->arg = arg;
	if (!t->ended_while_loading) {
		t->ended_while_loading = RH_NEW(struct umap);
		umap_init(t->ended_while_loading);
	}
	db_query(t->deps.db, &trip_st_active, NULL, trip_active_loaded, c);
}

/* ------------------------------------------------------------ setup */

struct trips *trips_new(const struct trips_deps *d)
{
	static const char *const tr_labels[] = { "to", "result", NULL };
	static const char *const req_labels[] = { "result", NULL };
	struct trips *t = RH_NEW(struct trips);
	t->deps = *d;
	t->cfg = &d->cfg->trip;
	t->nlanes = (int)t->cfg->batch_lanes;
	trip_batch_init(t);
	db_register(d->db, &trip_st_active);
	db_register(d->db, &trip_st_driver_lost);
	t->rl_rides = ratelimit_new(t->cfg->rides_per_minute, t->cfg->rides_per_minute, TRIP_RATELIMIT_KEYS);
	t->f_transitions = metrics_counter(d->metrics, "ridehail_trip_transitions_total",
					   "Trip transitions asked for, by target state and result (ok, repeated, refused, not_found, unavailable, error).",
					   tr_labels);
	t->f_requests = metrics_counter(d->metrics, "ridehail_ride_requests_total",
					"Ride requests that passed validation, by result (accepted: sent to the database; rate_limited).",
					req_labels);
	if (d->http) {
		trip_rides_api_init(t);
		trip_read_api_init(t);
	}
	return t;
}

void trips_free(struct trips *t)
{
	if (!t)
		return;
	trip_batch_fini(t);
	ratelimit_free(t->rl_rides);
	if (t->ended_while_loading) {
		umap_fini(t->ended_while_loading);
		rh_free(t->ended_while_loading);
	}
	rh_free(t);
}
