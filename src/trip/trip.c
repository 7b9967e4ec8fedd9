#include "trip/trip.h"

#include <ctype.h>
#include <event2/event.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "auth/auth.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/server.h"
#include "core/strbuf.h"
#include "core/uuid.h"
#include "geo/geohash.h"
#include "net/http.h"
#include "net/ratelimit.h"
#include "presence/presence.h"
#include "pricing/pricing.h"
#include "store/db.h"

#define RATELIMIT_KEYS 65536
#define IDEMPOTENCY_KEY_MAX 255

static const char *const state_names[] = { "SEARCHING", "MATCHED", "ARRIVED", "IN_PROGRESS", "COMPLETED", "CANCELLED" };

int trip_state_parse(const char *s)
{
	for (int i = 0; s && i < (int)(sizeof state_names / sizeof *state_names); i++)
		if (strcmp(s, state_names[i]) == 0)
			return i;
	return -1;
}

const char *trip_state_name(enum trip_state s)
{
	return (unsigned)s < sizeof state_names / sizeof *state_names ? state_names[s] : "?";
}

struct tx_item {
	TAILQ_ENTRY(tx_item) link;
	char *json;         /* one item of the batch's JSON array */
	enum trip_state to; /* (transitions) the target state */
	trip_done_cb cb;
	void *arg;
};
TAILQ_HEAD(tx_queue, tx_item);

struct lane;
struct trips;

/* What a lane batches: transitions (trip_transitions()) or ride requests
 * (trip_requests()). Both statements take the items as one JSON array and
 * a "safe" flag (item by item, one subtransaction each) and answer one row
 * (i, status, body) per item. */
struct batch_kind {
	const char *what; /* for the log */
	struct db_stmt *stmt;
	/* the answer of one item, before its callback */
	void (*answered)(struct trips *t, struct tx_item *it, int status, const cJSON *body);
};

struct tx_batch {
	struct trips *t;
	struct lane *lane;
	int n;
	struct tx_item **items;
	char *json;  /* the items as sent (kept to send again) */
	bool safe;   /* sent with one subtransaction per item */
};

/* Items are spread over lanes by key (the trip id; the rider for
 * requests): each lane has one batch at the database at a time (the next
 * one gathers meanwhile), so one trip's transitions stay in order and never
 * race each other, nor one rider's requests, while lanes use several
 * connections of the pool. */
#define LANES_MAX 8
struct lane {
	struct trips *t;
	const struct batch_kind *kind;
	struct metric_family *f_batch; /* batch sizes */
	struct metric_cell *m_batch;
	struct metric_cell *m_reruns;  /* batches sent again item by item */
	struct tx_queue queue;
	int queued;
	bool inflight;
	bool scheduled;
	struct event *flush_ev;
};

struct trips {
	struct server *srv;
	struct lane lanes[LANES_MAX];  /* transitions */
	struct lane rlanes[LANES_MAX]; /* ride requests */
	int nlanes;
	/* Batches at the database, both kinds: at most nlanes. Under load a
	 * lane waits for a free slot and its batch grows meanwhile, so the
	 * database runs as many batches at once as it has lanes, each as big
	 * as the load makes it, whichever kinds are busy. */
	int inflight;
	int next_lane; /* where the next free slot looks first (round robin) */
	struct ratelimit *rl_rides;
	struct trip_listener listener;
	struct metric_family *f_transitions, *f_requests;
};

/* ------------------------------------------------------------ statements */

static struct db_stmt st_requests = {
	"trip_requests", "SELECT i, status, body FROM trip_requests($1::jsonb, $2::boolean) ORDER BY i", 2,
};
static struct db_stmt st_transitions = {
	"trip_transitions", "SELECT i, status, body FROM trip_transitions($1::jsonb, $2::boolean) ORDER BY i", 2,
};
static struct db_stmt st_get = {
	"trip_get", "SELECT trip_json(t, true), t.rider_id, t.driver_id FROM trips t WHERE t.id = $1", 1,
};
static struct db_stmt st_receipt = {
	"trip_receipt", "SELECT trip_receipt(t), t.rider_id, t.driver_id, t.state, t.cancel_fee FROM trips t WHERE t.id = $1", 1,
};
static struct db_stmt st_rate = {
	"trip_rate", "SELECT status, body FROM trip_rate($1, $2, $3, $4, $5)", 5,
};
/* Newest first, keyset pagination on (requested_at, id); $2/$3 the cursor. */
#define LIST_SQL(who)                                                                                         \
	"SELECT trip_json(t, false), (extract(epoch FROM t.requested_at) * 1000000)::bigint, t.id FROM trips t" \
	" WHERE " who " AND ($2::bigint IS NULL OR (t.requested_at, t.id) <"                                  \
	" ('epoch'::timestamptz + $2::bigint * interval '1 microsecond', $3::uuid))"                          \
	" ORDER BY t.requested_at DESC, t.id DESC LIMIT $4"
static struct db_stmt st_list[3] = {
	{ "trip_list_rider", LIST_SQL("t.rider_id = $1::uuid"), 4 },
	{ "trip_list_driver", LIST_SQL("t.driver_id = $1::uuid"), 4 },
	{ "trip_list_all", LIST_SQL("$1::text IS NULL"), 4 },
};

/* ------------------------------------------------------------ transitions */

static void flush(struct lane *l);

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lane *l = arg;
	l->scheduled = false;
	flush(l);
}

static void schedule(struct lane *l)
{
	if (l->inflight || l->scheduled || l->queued == 0 || l->t->inflight >= l->t->nlanes)
		return;
	l->scheduled = true;
	event_active(l->flush_ev, EV_TIMEOUT, 0);
}

/* A slot is free: every lane with items waiting may take it, starting
 * with the one after the last to look first. */
static void schedule_all(struct trips *t)
{
	int n = 2 * t->nlanes;
	for (int k = 0; k < n; k++) {
		int i = (t->next_lane + k) % n;
		schedule(i < t->nlanes ? &t->lanes[i] : &t->rlanes[i - t->nlanes]);
	}
	t->next_lane = (t->next_lane + 1) % n;
}

static void count_transition(struct trips *t, enum trip_state to, int status, const cJSON *body)
{
	const char *result = status == 200 ? (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "repeated")) ? "repeated" : "ok")
			   : status == 404 ? "not_found"
			   : status == 409 ? "refused"
			   : status == 503 ? "unavailable"
					   : "error";
	const char *lv[] = { trip_state_name(to), result };
	metric_inc(metric_cell(t->f_transitions, lv));
}

/* Presence keeps a copy of each driver's status and version: the answer of
 * a transition that moved the driver says where they are now. */
static void sync_presence(struct trips *t, enum trip_state to, const cJSON *body)
{
	const cJSON *dv = cJSON_GetObjectItemCaseSensitive(body, "driver_version");
	const cJSON *drv = cJSON_GetObjectItemCaseSensitive(body, "driver");
	const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(drv, "id"));
	struct uuid u;
	if (!cJSON_IsNumber(dv) || !id || !uuid_parse(id, &u))
		return;
	enum driver_status st = to == TRIP_MATCHED ? DRIVER_EN_ROUTE : to == TRIP_IN_PROGRESS ? DRIVER_ON_TRIP : DRIVER_AVAILABLE;
	presence_set_status(t->srv->presence, &u, st, (int64_t)dv->valuedouble);
}

/* The answer of one transition: counted, presence told where the driver
 * is now, the listener (the matcher) told of the change. */
static void transition_answered(struct trips *t, struct tx_item *it, int status, const cJSON *body)
{
	if (status == 200) {
		/* A repeat is told too: after an answer lost on the way (the
		 * client was told to resend), it is how memory catches up. */
		if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "repeated")))
			sync_presence(t, it->to, body);
		if (t->listener.changed)
			t->listener.changed(t->listener.ctx, it->to, body);
	}
	count_transition(t, it->to, status, body);
}

static const struct batch_kind transitions_kind = { "transitions", &st_transitions, transition_answered };
static const struct batch_kind requests_kind = { "ride requests", &st_requests, NULL };

static void batch_send(struct tx_batch *b);

static void batch_done(void *arg, const struct db_result *res)
{
	struct tx_batch *b = arg;
	struct trips *t = b->t;
	struct lane *l = b->lane;
	if (res->err != RH_OK && res->pg && !res->unknown && !b->safe && b->n > 1) {
		/* One item raised (a race the unique indexes caught, a row changed
		 * since it was read, a bug): the whole batch rolled back. Again,
		 * each item on its own. */
		log_info(NULL, "trip: a batch of %d %s failed (%s); sending it again item by item", b->n, l->kind->what,
			 res->message);
		metric_inc(l->m_reruns);
		b->safe = true;
		batch_send(b);
		return;
	}
	l->inflight = false;
	t->inflight--;
	int rows = res->err == RH_OK ? db_rows(res) : 0;
	if (res->err != RH_OK)
		log_warn(NULL, "trip: a batch of %d %s failed: %s%s", b->n, l->kind->what, res->message,
			 res->unknown ? " (lost in flight: it may have committed; retrying is safe)" : "");
	for (int i = 0; i < b->n; i++) {
		struct tx_item *it = b->items[i];
		int status = 503;
		cJSON *body = NULL;
		if (i < rows) {
			status = atoi(db_get(res, i, 1));
			body = cJSON_Parse(db_get(res, i, 2));
			if (status == 500) {
				log_error(NULL, "trip: %s failed in the database: %s", l->kind->what, db_get(res, i, 2));
			} else if (body && !trip_view_render(body)) {
				log_error(NULL, "trip: %s: a malformed trip row from the database: %s", l->kind->what,
					  db_get(res, i, 2));
				cJSON_Delete(body);
				body = NULL;
				status = 500;
			}
		} else if (res->err == RH_OK) {
			status = 500;
		}
		if (!body) {
			body = cJSON_CreateObject();
			cJSON_AddStringToObject(body, "reason", status == 503 ? "database_unavailable" : "error");
			cJSON_AddStringToObject(body, "message", res->message);
			if (res->unknown)
				cJSON_AddBoolToObject(body, "unknown", true);
		}
		if (l->kind->answered)
			l->kind->answered(t, it, status, body);
		it->cb(it->arg, status, body);
		cJSON_Delete(body);
		cJSON_free(it->json);
		rh_free(it);
	}
	rh_free(b->items);
	rh_free(b->json);
	rh_free(b);
	schedule_all(t);
}

static void batch_send(struct tx_batch *b)
{
	const char *params[] = { b->json, b->safe ? "true" : "false" };
	db_query(b->t->srv->db, b->lane->kind->stmt, params, batch_done, b);
}

static void flush(struct lane *l)
{
	struct trips *t = l->t;
	if (l->inflight || l->queued == 0 || t->inflight >= t->nlanes)
		return;
	t->inflight++;
	int max = (int)t->srv->cfg.trip.batch_max;
	int n = l->queued < max ? l->queued : max;
	struct tx_batch *b = RH_NEW(struct tx_batch);
	b->t = t;
	b->lane = l;
	b->n = n;
	b->items = rh_calloc((size_t)n, sizeof *b->items);
	struct strbuf sb;
	sb_init(&sb, 64u << 20);
	sb_putc(&sb, '[');
	for (int i = 0; i < n; i++) {
		struct tx_item *it = TAILQ_FIRST(&l->queue);
		TAILQ_REMOVE(&l->queue, it, link);
		l->queued--;
		b->items[i] = it;
		if (i)
			sb_putc(&sb, ',');
		sb_puts(&sb, it->json);
	}
	sb_putc(&sb, ']');
	metric_observe(l->f_batch, l->m_batch, n);
	l->inflight = true;
	b->json = sb_take(&sb, NULL);
	b->safe = n == 1; /* alone, its error is its own answer anyway */
	batch_send(b);
}

/* Queues one item (its JSON taken) on the lane of key. */
static void enqueue(struct lane *lanes, int nlanes, const char *key, char *json, enum trip_state to, trip_done_cb cb,
		    void *arg)
{
	struct tx_item *it = RH_NEW(struct tx_item);
	it->json = json;
	it->to = to;
	it->cb = cb;
	it->arg = arg;
	uint32_t h = 2166136261u; /* FNV-1a of the key: a key always takes the same lane */
	for (const char *c = key; *c; c++)
		h = (h ^ (unsigned char)*c) * 16777619u;
	struct lane *l = &lanes[h % (uint32_t)nlanes];
	TAILQ_INSERT_TAIL(&l->queue, it, link);
	l->queued++;
	schedule(l);
}

void trip_transition(struct trips *t, const char *trip_id, enum trip_state to, const char *role, const char *actor,
		     cJSON *args, trip_done_cb cb, void *arg)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "trip_id", trip_id);
	cJSON_AddStringToObject(o, "to", trip_state_name(to));
	cJSON_AddStringToObject(o, "role", role);
	cJSON_AddStringToObject(o, "actor", actor);
	cJSON_AddItemToObject(o, "args", args ? args : cJSON_CreateObject());
	char *json = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	enqueue(t->lanes, t->nlanes, trip_id, json, to, cb, arg);
}

/* ------------------------------------------------------------ HTTP helpers */

static const char *role_of(const struct auth_principal *p)
{
	return p->role == ROLE_RIDER ? "rider" : p->role == ROLE_DRIVER ? "driver" : "operator";
}

static bool trip_id_or_reply(struct http_req *req, const char **id)
{
	*id = http_req_param(req, "id");
	if (!jv_is_uuid(*id)) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, "id", "format", "a trip id is a UUID");
		return false;
	}
	return true;
}

static void reply_db_error(struct http_req *req, const struct db_result *res, const char *what)
{
	if (res->err == RH_EAGAIN || res->unknown || res->pg == NULL) {
		http_reply_header(req, "Retry-After", "1");
		http_reply_problem(req, PROBLEM_DB_UNAVAILABLE, NULL, "cannot %s now: %s", what, res->message);
		return;
	}
	log_error(http_req_logid(req), "trip: cannot %s: %s", what, res->message);
	http_reply_problem(req, PROBLEM_INTERNAL, NULL, "cannot %s", what);
}

/* Replies with a JSON text from the database, as is. */
static void reply_json_text(struct http_req *req, int status, const char *json)
{
	http_reply_header(req, "Cache-Control", "no-store");
	http_reply(req, status, "application/json", json, strlen(json));
}

/* A refusal from the database ({reason, state, ...}) as problem+json. */
static void reply_refusal(struct http_req *req, int status, const cJSON *body)
{
	const char *reason = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(body, "reason"));
	const char *state = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(body, "state"));
	const char *to = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(body, "to"));
	reason = reason ? reason : "error";
	cJSON *ext = cJSON_CreateObject();
	cJSON_AddStringToObject(ext, "reason", reason);
	if (state)
		cJSON_AddStringToObject(ext, "state", state);
	if (status == 404) {
		cJSON_Delete(ext);
		http_reply_problem(req, PROBLEM_NOT_FOUND, NULL, "no such trip");
	} else if (status == 409 && (strcmp(reason, "driver_unavailable") == 0 || strcmp(reason, "driver_busy") == 0)) {
		http_reply_problem(req, PROBLEM_DRIVER_UNAVAILABLE, ext,
				   "the driver is not available for this trip (offline, busy, another vehicle type, or a newer version)");
	} else if (status == 409 && strcmp(reason, "version_conflict") == 0) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, "version");
		if (cJSON_IsNumber(v))
			cJSON_AddNumberToObject(ext, "version", v->valuedouble);
		http_reply_problem(req, PROBLEM_CONFLICT, ext, "the trip has changed: it is at version %d, %s",
				   cJSON_IsNumber(v) ? v->valueint : 0, state ? state : "");
	} else if (status == 409 && strcmp(reason, "already_rated") == 0) {
		http_reply_problem(req, PROBLEM_CONFLICT, ext, "this trip has already been rated by you");
	} else if (status == 409) {
		char asked[48] = "";
		if (to)
			snprintf(asked, sizeof asked, " (asked: %s)", to);
		http_reply_problem(req, PROBLEM_TRIP_STATE, ext, "the trip is %s: %s%s", state ? state : "?",
				   strcmp(reason, "not_completed") == 0 ? "only a completed trip can be rated"
				   : strcmp(reason, "trip_in_progress") == 0 ? "a trip in progress cannot be cancelled"
				   : strcmp(reason, "trip_finished") == 0 ? "it is over"
				   : strcmp(reason, "already_matched") == 0 ? "it has a driver already"
									    : "not a legal transition",
				   asked);
	} else if (status == 503) {
		cJSON_Delete(ext);
		http_reply_header(req, "Retry-After", "1");
		http_reply_problem(req, PROBLEM_DB_UNAVAILABLE, NULL, "the database did not answer; retrying is safe");
	} else {
		cJSON_Delete(ext);
		http_reply_problem(req, PROBLEM_INTERNAL, NULL, "the transition failed");
	}
}

static void reply_transition(void *arg, int status, const cJSON *body)
{
	struct http_req *req = arg;
	if (status != 200) {
		reply_refusal(req, status, body);
		return;
	}
	cJSON *out = cJSON_Duplicate(body, 1);
	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(out, "repeated")))
		http_reply_header(req, "Idempotent-Replayed", "true");
	cJSON_DeleteItemFromObjectCaseSensitive(out, "repeated");
	cJSON_DeleteItemFromObjectCaseSensitive(out, "driver_version");
	http_reply_header(req, "Cache-Control", "no-store");
	http_reply_json(req, 200, out);
}

/* The body: a validated JSON object, or {} when there is none. */
static cJSON *body_or_empty(struct http_req *req, const struct jv_field *fields)
{
	size_t len = 0;
	http_req_body(req, &len);
	if (len == 0)
		return cJSON_CreateObject();
	return http_req_json_valid_or_reply(req, fields);
}

/* ------------------------------------------------------------ POST /v1/rides */

static const struct jv_field place_fields[] = {
	{ "lat", JV_NUMBER, JV_REQUIRED, -90, 90 },
	{ "lng", JV_NUMBER, JV_REQUIRED, -180, 180 },
	{ "address", JV_STRING, JV_NULLABLE, 1, 200 },
	{ 0 }
};

static const struct jv_field ride_fields[] = {
	{ "pickup", JV_OBJECT, JV_REQUIRED, 0, 0, NULL, place_fields },
	{ "dropoff", JV_OBJECT, JV_REQUIRED, 0, 0, NULL, place_fields },
	{ "vehicle_type", JV_STRING, JV_NULLABLE, 1, 31 },
	{ "quote_id", JV_STRING, JV_NULLABLE, 1, QUOTE_ID_MAX - 1 },
	{ 0 }
};

static bool idempotency_key_ok(const char *k)
{
	size_t n = strlen(k);
	if (n < 1 || n > IDEMPOTENCY_KEY_MAX)
		return false;
	for (const char *c = k; *c; c++)
		if ((unsigned char)*c < 0x21 || (unsigned char)*c > 0x7e)
			return false;
	return true;
}

struct create_ctx {
	struct http_req *req;
	struct trips *t;
};

static void ride_created(void *arg, int status, const cJSON *body)
{
	struct create_ctx *cc = arg;
	struct http_req *req = cc->req;
	struct trips *t = cc->t;
	rh_free(cc);
	if (status == 201 || status == 200) {
		cJSON *b = cJSON_Duplicate(body, 1);
		const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(b, "id"));
		char loc[64];
		snprintf(loc, sizeof loc, "/v1/rides/%s", id ? id : "");
		http_reply_header(req, "Location", loc);
		if (status == 200) {
			http_reply_header(req, "Idempotent-Replayed", "true");
			cJSON_DeleteItemFromObjectCaseSensitive(b, "idempotent_replay");
		} else {
			log_info(http_req_logid(req), "trip %s requested", id ? id : "?");
			if (t->listener.created)
				t->listener.created(t->listener.ctx, b);
		}
		http_reply_header(req, "Cache-Control", "no-store");
		http_reply_json(req, 201, b);
		return;
	}
	cJSON *ext = cJSON_CreateObject();
	if (status == 409) {
		const char *active = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(body, "active_trip_id"));
		if (active)
			cJSON_AddStringToObject(ext, "active_trip_id", active);
		http_reply_problem(req, PROBLEM_ACTIVE_TRIP, ext, "the rider already has an active trip (%s)",
				   active ? active : "?");
	} else if (status == 422) {
		cJSON_AddStringToObject(ext, "field", "Idempotency-Key");
		http_reply_problem(req, PROBLEM_IDEMPOTENCY_REUSED, ext,
				   "this Idempotency-Key was used for a different ride request");
	} else if (status == 503) {
		cJSON_Delete(ext);
		const char *msg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(body, "message"));
		http_reply_header(req, "Retry-After", "1");
		http_reply_problem(req, PROBLEM_DB_UNAVAILABLE, NULL, "cannot %s now: %s",
				   cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "unknown"))
					   ? "confirm the ride (retry with the same Idempotency-Key)"
					   : "request a ride",
				   msg ? msg : "the database did not answer");
	} else {
		cJSON_Delete(ext);
		http_reply_problem(req, PROBLEM_INTERNAL, NULL, "cannot request a ride");
	}
}

static void ride_request(struct http_req *req, void *ctx)
{
	struct trips *t = ctx;
	struct server *srv = t->srv;
	struct auth_principal who;
	if (!auth_require_or_reply(srv->auth, req, ROLE_RIDER, &who))
		return;
	const char *key = http_req_header(req, "idempotency-key");
	if (key && !idempotency_key_ok(key)) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, "Idempotency-Key", "maxLength",
					 "Idempotency-Key must be 1 to %d visible ASCII characters", IDEMPOTENCY_KEY_MAX);
		return;
	}
	cJSON *body = http_req_json_valid_or_reply(req, ride_fields);
	if (!body)
		return;
	const cJSON *pu = cJSON_GetObjectItemCaseSensitive(body, "pickup");
	const cJSON *dr = cJSON_GetObjectItemCaseSensitive(body, "dropoff");
	double plat = jv_num(pu, "lat", 0), plng = jv_num(pu, "lng", 0);
	double dlat = jv_num(dr, "lat", 0), dlng = jv_num(dr, "lng", 0);
	const char *vt = jv_str(body, "vehicle_type");
	const char *quote_id = jv_str(body, "quote_id");
	int vehicle = vt ? presence_vehicle_index(srv, vt) : 0;
	if (vehicle < 0) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, "vehicle_type", "enum", "unknown vehicle_type \"%s\"", vt);
		goto out;
	}
	const struct tariff_cfg *tariff = &srv->cfg.tariff[vehicle];
	double line = geo_dist_haversine_m(plat, plng, dlat, dlng);
	if (line < (double)srv->cfg.trip.min_trip_m) {
		http_reply_field_problem(req, PROBLEM_UNPROCESSABLE, "dropoff", NULL,
					 "pickup and dropoff are %.0f m apart; a trip must be at least %lld m", line,
					 (long long)srv->cfg.trip.min_trip_m);
		goto out;
	}
	/* No driver of this type online anywhere within the largest search
	 * radius: say so now rather than search in vain (seed 002: 503 +
	 * Retry-After). Busy drivers count: they will be free soon. */
	const struct cfg_list *steps = &srv->cfg.match.radius_steps;
	uint32_t online = 1u << DRIVER_AVAILABLE | 1u << DRIVER_OFFERED | 1u << DRIVER_EN_ROUTE | 1u << DRIVER_ON_TRIP;
	if (srv->cfg.match.automatic && presence_count(srv->presence, plat, plng, steps->v[steps->n - 1], online, 1u << vehicle, 1) == 0) {
		http_reply_header(req, "Retry-After", "30");
		http_reply_problem(req, PROBLEM_UNAVAILABLE, NULL, "no %s driver is online within %.0f m of the pickup; retry later",
				   tariff->name, steps->v[steps->n - 1]);
		goto out;
	}
	/* Rate limit before any work that touches the database: a stuck retry
	 * loop in an app must not reach the matcher. */
	int64_t retry_ms = 0;
	if (!ratelimit_allow(t->rl_rides, who.id, rh_mono_ns() / 1000000, &retry_ms)) {
		char secs[24];
		snprintf(secs, sizeof secs, "%lld", (long long)((retry_ms + 999) / 1000));
		http_reply_header(req, "Retry-After", secs);
		cJSON *ext = cJSON_CreateObject();
		cJSON_AddNumberToObject(ext, "retry_after_s", (double)((retry_ms + 999) / 1000));
		http_reply_problem(req, PROBLEM_RATE_LIMITED, ext, "too many ride requests; retry in %s s", secs);
		const char *lv[] = { "rate_limited" };
		metric_inc(metric_cell(t->f_requests, lv));
		goto out;
	}

	struct fare fare;
	if (quote_id) {
		struct quote q;
		enum quote_check qc = pricing_quote_open(pricing_key(srv->pricing), quote_id, rh_wall_ms(), &q);
		if (qc == QUOTE_INVALID) {
			http_reply_field_problem(req, PROBLEM_QUOTE_INVALID, "quote_id", NULL,
						 "quote_id is not a quote this service issued");
			goto out;
		}
		if (qc == QUOTE_EXPIRED) {
			char exp[32];
			rh_format_rfc3339(q.expires_ms, exp);
			http_reply_field_problem(req, PROBLEM_QUOTE_EXPIRED, "quote_id", NULL,
						 "the quote expired at %s; ask GET /v1/estimate for a new one", exp);
			goto out;
		}
		double m = srv->cfg.pricing.quote_match_m;
		if (strcmp(q.fare.vehicle_type, tariff->name) != 0) {
			http_reply_field_problem(req, PROBLEM_QUOTE_MISMATCH, "vehicle_type", NULL,
						 "the quote is for vehicle type %s, the request for %s", q.fare.vehicle_type,
						 tariff->name);
			goto out;
		}
		if (geo_dist_haversine_m(q.pickup_lat, q.pickup_lng, plat, plng) > m ||
		    geo_dist_haversine_m(q.dropoff_lat, q.dropoff_lng, dlat, dlng) > m) {
			bool pick = geo_dist_haversine_m(q.pickup_lat, q.pickup_lng, plat, plng) > m;
			http_reply_field_problem(req, PROBLEM_QUOTE_MISMATCH, pick ? "pickup" : "dropoff", NULL,
						 "the %s is more than %.0f m from the quote's", pick ? "pickup" : "dropoff", m);
			goto out;
		}
		fare = q.fare;
	} else {
		int bad = 0;
		rh_err re = pricing_estimate(srv->pricing, vehicle, plat, plng, dlat, dlng, &fare, &bad);
		if (re != RH_OK) {
			pricing_reply_route_error(req, re, bad);
			goto out;
		}
	}

	cJSON *fj = cJSON_CreateObject();
	pricing_fare_json(&fare, fj, true);
	char *fare_json = cJSON_PrintUnformatted(fj);
	cJSON_Delete(fj);
	const struct trip_cfg *tc = &srv->cfg.trip;
	char policy[256];
	snprintf(policy, sizeof policy,
		 "{\"cancel_grace_s\":%.3f,\"cancel_fee\":%lld,\"no_show_wait_s\":%.3f,\"no_show_fee\":%lld,"
		 "\"fare_tolerance\":%.6f}",
		 (double)tc->cancel_grace_ms / 1000.0, (long long)tariff->cancel_fee, (double)tc->no_show_wait_ms / 1000.0,
		 (long long)tariff->no_show_fee, tc->fare_tolerance);

	/* The request as the idempotency check compares it: what it asks for,
	 * not how the JSON was spelled. */
	const char *pa = jv_str(pu, "address"), *da = jv_str(dr, "address");
	char hash_hex[65], c[4][32];
	unsigned char h[32];
	snprintf(c[0], sizeof c[0], "%.7f", plat);
	snprintf(c[1], sizeof c[1], "%.7f", plng);
	snprintf(c[2], sizeof c[2], "%.7f", dlat);
	snprintf(c[3], sizeof c[3], "%.7f", dlng);
	{
		/* each part with its length first, so that no two requests hash alike */
		const char *parts[] = { tariff->name, c[0], c[1], c[2], c[3], pa ? pa : "", da ? da : "",
					quote_id ? quote_id : "" };
		crypto_generichash_state hs;
		crypto_generichash_init(&hs, NULL, 0, sizeof h);
		for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) {
			uint32_t n = (uint32_t)strlen(parts[i]);
			crypto_generichash_update(&hs, (const unsigned char *)&n, sizeof n);
			crypto_generichash_update(&hs, (const unsigned char *)parts[i], n);
		}
		crypto_generichash_final(&hs, h, sizeof h);
	}
	sodium_bin2hex(hash_hex, sizeof hash_hex, h, sizeof h);

	/* one item of trip_requests() (sql/009): trip_request()'s parameters */
	cJSON *it = cJSON_CreateObject();
	cJSON_AddStringToObject(it, "rider", who.id);
	if (key)
		cJSON_AddStringToObject(it, "key", key);
	cJSON_AddStringToObject(it, "hash", hash_hex);
	cJSON_AddStringToObject(it, "vehicle", tariff->name);
	cJSON_AddRawToObject(it, "plat", c[0]);
	cJSON_AddRawToObject(it, "plng", c[1]);
	cJSON_AddRawToObject(it, "dlat", c[2]);
	cJSON_AddRawToObject(it, "dlng", c[3]);
	if (pa)
		cJSON_AddStringToObject(it, "pa", pa);
	if (da)
		cJSON_AddStringToObject(it, "da", da);
	cJSON_AddStringToObject(it, "cur", tariff->currency);
	if (quote_id)
		cJSON_AddStringToObject(it, "quote", quote_id);
	cJSON_AddRawToObject(it, "fare", fare_json);
	cJSON_AddRawToObject(it, "policy", policy);
	char *json = cJSON_PrintUnformatted(it);
	cJSON_Delete(it);
	const char *lv[] = { "accepted" };
	metric_inc(metric_cell(t->f_requests, lv));
	struct create_ctx *cc = RH_NEW(struct create_ctx);
	cc->req = req;
	cc->t = t;
	enqueue(t->rlanes, t->nlanes, who.id, json, TRIP_SEARCHING, ride_created, cc);
	cJSON_free(fare_json);
out:
	cJSON_Delete(body);
}

/* ------------------------------------------------------------ transitions over HTTP */

static const struct jv_field version_fields[] = {
	{ "expected_version", JV_INTEGER, JV_NULLABLE, 1, 2147483647 },
	{ 0 }
};

static const struct jv_field cancel_fields[] = {
	{ "reason", JV_STRING, JV_NULLABLE, 1, 64 },
	{ "expected_version", JV_INTEGER, JV_NULLABLE, 1, 2147483647 },
	{ 0 }
};

static const struct jv_field point_fields[] = {
	{ "lat", JV_NUMBER, JV_REQUIRED, -90, 90 },
	{ "lng", JV_NUMBER, JV_REQUIRED, -180, 180 },
	{ 0 }
};

static const struct jv_field complete_fields[] = {
	{ "distance_m", JV_INTEGER, JV_REQUIRED, 0, 5000000 },
	{ "duration_s", JV_INTEGER, JV_REQUIRED, 0, 172800 },
	{ "end_location", JV_OBJECT, JV_NULLABLE, 0, 0, NULL, point_fields },
	{ "expected_version", JV_INTEGER, JV_NULLABLE, 1, 2147483647 },
	{ 0 }
};

static const struct jv_field assign_fields[] = {
	{ "driver_id", JV_UUID, JV_REQUIRED },
	{ "driver_version", JV_INTEGER, JV_NULLABLE, 0, 9007199254740991.0 },
	{ "expected_version", JV_INTEGER, JV_NULLABLE, 1, 2147483647 },
	{ 0 }
};

static void copy_member(cJSON *args, const cJSON *body, const char *name, const char *as)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, name);
	if (v && !cJSON_IsNull(v))
		cJSON_AddItemToObject(args, as ? as : name, cJSON_Duplicate(v, 1));
}

/* One handler for every transition endpoint: who may ask, what the body
 * holds, and the target state. */
static void transition_endpoint(struct http_req *req, struct trips *t, enum trip_state to, unsigned roles,
				const struct jv_field *fields)
{
	struct auth_principal who;
	const char *id;
	if (!auth_require_or_reply(t->srv->auth, req, roles, &who) || !trip_id_or_reply(req, &id))
		return;
	cJSON *body = body_or_empty(req, fields);
	if (!body)
		return;
	if (to == TRIP_COMPLETED && !jv_has(body, "distance_m")) {
		/* (an empty body) */
		cJSON_Delete(body);
		http_reply_field_problem(req, PROBLEM_VALIDATION, "distance_m", "required",
					 "distance_m and duration_s of the trip are required");
		return;
	}
	if (to == TRIP_MATCHED && !jv_has(body, "driver_id")) {
		cJSON_Delete(body);
		http_reply_field_problem(req, PROBLEM_VALIDATION, "driver_id", "required", "driver_id is required");
		return;
	}
	cJSON *args = cJSON_CreateObject();
	copy_member(args, body, "expected_version", NULL);
	copy_member(args, body, "reason", NULL);
	copy_member(args, body, "driver_id", NULL);
	copy_member(args, body, "driver_version", NULL);
	copy_member(args, body, "distance_m", NULL);
	copy_member(args, body, "duration_s", NULL);
	const cJSON *end = cJSON_GetObjectItemCaseSensitive(body, "end_location");
	if (cJSON_IsObject(end)) {
		copy_member(args, end, "lat", "end_lat");
		copy_member(args, end, "lng", "end_lng");
	}
	cJSON_Delete(body);
	trip_transition(t, id, to, role_of(&who), who.id, args, reply_transition, req);
}

static void ride_cancel(struct http_req *req, void *ctx)
{
	transition_endpoint(req, ctx, TRIP_CANCELLED, ROLE_RIDER | ROLE_DRIVER | ROLE_OPERATOR, cancel_fields);
}

static void ride_assign(struct http_req *req, void *ctx)
{
	transition_endpoint(req, ctx, TRIP_MATCHED, ROLE_OPERATOR, assign_fields);
}

static void ride_arrived(struct http_req *req, void *ctx)
{
	transition_endpoint(req, ctx, TRIP_ARRIVED, ROLE_DRIVER | ROLE_OPERATOR, version_fields);
}

static void ride_start(struct http_req *req, void *ctx)
{
	transition_endpoint(req, ctx, TRIP_IN_PROGRESS, ROLE_DRIVER | ROLE_OPERATOR, version_fields);
}

static void ride_complete(struct http_req *req, void *ctx)
{
	transition_endpoint(req, ctx, TRIP_COMPLETED, ROLE_DRIVER | ROLE_OPERATOR, complete_fields);
}

/* ------------------------------------------------------------ reading */

struct read_ctx {
	struct http_req *req;
	struct auth_principal who;
	bool receipt;
};

/* Riders see their own trips, drivers the trips assigned to them,
 * operators all; anyone else is told there is no such trip. */
static bool may_see(const struct auth_principal *who, const char *rider_id, const char *driver_id)
{
	if (who->role == ROLE_OPERATOR)
		return true;
	if (who->role == ROLE_RIDER)
		return rider_id && strcmp(rider_id, who->id) == 0;
	return driver_id && strcmp(driver_id, who->id) == 0;
}

static void trip_read_done(void *arg, const struct db_result *res)
{
	struct read_ctx *rc = arg;
	struct http_req *req = rc->req;
	if (res->err != RH_OK) {
		reply_db_error(req, res, "read the trip");
	} else if (db_rows(res) == 0 || !may_see(&rc->who, db_get(res, 0, 1), db_get(res, 0, 2))) {
		http_reply_problem(req, PROBLEM_NOT_FOUND, NULL, "no such trip");
	} else if (rc->receipt && strcmp(db_get(res, 0, 3), "COMPLETED") != 0 &&
		   !(strcmp(db_get(res, 0, 3), "CANCELLED") == 0 && db_get(res, 0, 4) && atoll(db_get(res, 0, 4)) > 0)) {
		cJSON *ext = cJSON_CreateObject();
		cJSON_AddStringToObject(ext, "state", db_get(res, 0, 3));
		cJSON_AddStringToObject(ext, "reason", "no_receipt");
		http_reply_problem(req, PROBLEM_TRIP_STATE, ext,
				   "the trip is %s: a receipt exists once it is completed (or cancelled with a fee)",
				   db_get(res, 0, 3));
	} else if (rc->receipt) {
		reply_json_text(req, 200, db_get(res, 0, 0));
	} else {
		char *view = trip_view_text(db_get(res, 0, 0));
		if (view) {
			reply_json_text(req, 200, view);
		} else {
			log_error(NULL, "trip: a malformed trip row from the database: %s", db_get(res, 0, 0));
			http_reply_problem(req, PROBLEM_INTERNAL, NULL, "the trip could not be shown");
		}
		cJSON_free(view);
	}
	rh_free(rc);
}

static void trip_read(struct http_req *req, struct trips *t, bool receipt)
{
	struct read_ctx *rc = RH_NEW(struct read_ctx);
	const char *id;
	if (!auth_require_or_reply(t->srv->auth, req, ROLE_RIDER | ROLE_DRIVER | ROLE_OPERATOR, &rc->who) ||
	    !trip_id_or_reply(req, &id)) {
		rh_free(rc);
		return;
	}
	rc->req = req;
	rc->receipt = receipt;
	const char *params[] = { id };
	db_query(t->srv->db, receipt ? &st_receipt : &st_get, params, trip_read_done, rc);
}

static void ride_get(struct http_req *req, void *ctx)
{
	trip_read(req, ctx, false);
}

static void ride_receipt(struct http_req *req, void *ctx)
{
	trip_read(req, ctx, true);
}

struct list_ctx {
	struct http_req *req;
	int limit;
};

static void ride_list_done(void *arg, const struct db_result *res)
{
	struct list_ctx *lc = arg;
	struct http_req *req = lc->req;
	if (res->err != RH_OK) {
		reply_db_error(req, res, "list trips");
		rh_free(lc);
		return;
	}
	struct strbuf sb;
	sb_init(&sb, 64u << 20);
	sb_puts(&sb, "{\"items\":[");
	int n = db_rows(res);
	for (int i = 0; i < n; i++) {
		if (i)
			sb_putc(&sb, ',');
		char *view = trip_view_text(db_get(res, i, 0));
		if (!view) {
			log_error(NULL, "trip: a malformed trip row from the database: %s", db_get(res, i, 0));
			http_reply_problem(req, PROBLEM_INTERNAL, NULL, "a trip could not be shown");
			sb_fini(&sb);
			rh_free(lc);
			return;
		}
		sb_puts(&sb, view);
		cJSON_free(view);
	}
	sb_puts(&sb, "],\"next_cursor\":");
	if (n > 0 && n == lc->limit)
		sb_printf(&sb, "\"%s.%s\"}", db_get(res, n - 1, 1), db_get(res, n - 1, 2));
	else
		sb_puts(&sb, "null}");
	http_reply_header(req, "Cache-Control", "no-store");
	http_reply(req, 200, "application/json", sb.buf, sb.len);
	sb_fini(&sb);
	rh_free(lc);
}

/* A cursor is "<microseconds since the epoch>.<trip id>" of the last item. */
static bool parse_cursor(const char *c, char *us, size_t uslen, char *id, size_t idlen)
{
	const char *dot = strchr(c, '.');
	if (!dot || dot == c || (size_t)(dot - c) >= uslen || (size_t)(dot - c) > 18 || !jv_is_uuid(dot + 1))
		return false;
	for (const char *p = c; p < dot; p++)
		if (!isdigit((unsigned char)*p))
			return false;
	snprintf(us, uslen, "%.*s", (int)(dot - c), c);
	snprintf(id, idlen, "%s", dot + 1);
	return true;
}

static void ride_list(struct http_req *req, void *ctx)
{
	struct trips *t = ctx;
	struct auth_principal who;
	if (!auth_require_or_reply(t->srv->auth, req, ROLE_RIDER | ROLE_DRIVER | ROLE_OPERATOR, &who))
		return;
	int64_t limit;
	if (!http_query_integer_or_reply(req, "limit", 1, 100, 20, false, &limit))
		return;
	const char *cursor = http_req_query(req, "cursor");
	char us[24] = "", cid[40] = "", ns[16];
	if (cursor && !parse_cursor(cursor, us, sizeof us, cid, sizeof cid)) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, "cursor", "format",
					 "cursor must be a next_cursor value from a previous page");
		return;
	}
	snprintf(ns, sizeof ns, "%d", (int)limit);
	struct list_ctx *lc = RH_NEW(struct list_ctx);
	lc->req = req;
	lc->limit = (int)limit;
	const char *params[] = { who.role == ROLE_OPERATOR ? NULL : who.id, cursor ? us : NULL, cursor ? cid : NULL, ns };
	int which = who.role == ROLE_RIDER ? 0 : who.role == ROLE_DRIVER ? 1 : 2;
	db_query(t->srv->db, &st_list[which], params, ride_list_done, lc);
}

/* ------------------------------------------------------------ ratings */

static const struct jv_field rating_fields[] = {
	{ "stars", JV_INTEGER, JV_REQUIRED, 1, 5 },
	{ "comment", JV_STRING, JV_NULLABLE, 0, 500 },
	{ 0 }
};

static void rated(void *arg, const struct db_result *res)
{
	struct http_req *req = arg;
	if (res->err != RH_OK || db_rows(res) != 1) {
		reply_db_error(req, res, "record the rating");
		return;
	}
	int status = atoi(db_get(res, 0, 0));
	if (status == 201) {
		reply_json_text(req, 201, db_get(res, 0, 1));
		return;
	}
	cJSON *b = cJSON_Parse(db_get(res, 0, 1));
	reply_refusal(req, status, b);
	cJSON_Delete(b);
}

static void ride_rate(struct http_req *req, void *ctx)
{
	struct trips *t = ctx;
	struct auth_principal who;
	const char *id;
	if (!auth_require_or_reply(t->srv->auth, req, ROLE_RIDER | ROLE_DRIVER, &who) || !trip_id_or_reply(req, &id))
		return;
	cJSON *body = http_req_json_valid_or_reply(req, rating_fields);
	if (!body)
		return;
	char stars[8];
	snprintf(stars, sizeof stars, "%d", (int)jv_num(body, "stars", 0));
	const char *params[] = { id, role_of(&who), who.id, stars, jv_str(body, "comment") };
	db_query(t->srv->db, &st_rate, params, rated, req);
	cJSON_Delete(body);
}

/* ------------------------------------------------------------ setup */

static const struct http_route trip_routes[] = {
	{ HTTP_POST, "/v1/rides", ride_request, 0 },
	{ HTTP_GET, "/v1/rides", ride_list, 0 },
	{ HTTP_GET, "/v1/rides/{id}", ride_get, 0 },
	{ HTTP_GET, "/v1/rides/{id}/receipt", ride_receipt, 0 },
	{ HTTP_POST, "/v1/rides/{id}/cancel", ride_cancel, 0 },
	{ HTTP_POST, "/v1/rides/{id}/assign", ride_assign, 0 },
	{ HTTP_POST, "/v1/rides/{id}/arrived", ride_arrived, 0 },
	{ HTTP_POST, "/v1/rides/{id}/start", ride_start, 0 },
	{ HTTP_POST, "/v1/rides/{id}/complete", ride_complete, 0 },
	{ HTTP_POST, "/v1/rides/{id}/rating", ride_rate, 0 },
	{ 0 },
};

struct trips *trips_new(struct server *srv)
{
	static const char *const tr_labels[] = { "to", "result", NULL };
	static const char *const req_labels[] = { "result", NULL };
	static const char *const kind_labels[] = { "kind", NULL };
	static const double batch_bounds[] = { 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024 };
	struct trips *t = RH_NEW(struct trips);
	t->srv = srv;
	t->nlanes = (int)srv->cfg.trip.batch_lanes;
	struct metric_family *f_tb = metrics_histogram(srv->metrics, "ridehail_trip_batch_size",
						       "Transitions committed together in one transaction (group commit).", NULL,
						       batch_bounds, (int)(sizeof batch_bounds / sizeof *batch_bounds));
	struct metric_family *f_rb = metrics_histogram(srv->metrics, "ridehail_ride_request_batch_size",
						       "Ride requests committed together in one transaction (group commit).", NULL,
						       batch_bounds, (int)(sizeof batch_bounds / sizeof *batch_bounds));
	struct metric_family *f_reruns = metrics_counter(
		srv->metrics, "ridehail_trip_batch_reruns_total",
		"Batches run again item by item because one item failed or a row changed since it was read, by kind (transition, request).",
		kind_labels);
	const char *lv_tr[] = { "transition" }, *lv_rq[] = { "request" };
	for (int i = 0; i < 2 * t->nlanes; i++) {
		bool req = i >= t->nlanes;
		struct lane *l = req ? &t->rlanes[i - t->nlanes] : &t->lanes[i];
		l->t = t;
		l->kind = req ? &requests_kind : &transitions_kind;
		l->f_batch = req ? f_rb : f_tb;
		l->m_batch = metric_cell(l->f_batch, NULL);
		l->m_reruns = metric_cell(f_reruns, req ? lv_rq : lv_tr);
		TAILQ_INIT(&l->queue);
		l->flush_ev = evtimer_new(srv->base, flush_cb, l);
	}
	t->rl_rides = ratelimit_new(srv->cfg.trip.rides_per_minute, srv->cfg.trip.rides_per_minute, RATELIMIT_KEYS);
	t->f_transitions = metrics_counter(srv->metrics, "ridehail_trip_transitions_total",
					   "Trip transitions asked for, by target state and result (ok, repeated, refused, not_found, unavailable, error).",
					   tr_labels);
	t->f_requests = metrics_counter(srv->metrics, "ridehail_ride_requests_total",
					"Ride requests that passed validation, by result (accepted: sent to the database; rate_limited).",
					req_labels);
	db_register(srv->db, &st_requests);
	db_register(srv->db, &st_transitions);
	db_register(srv->db, &st_get);
	db_register(srv->db, &st_receipt);
	db_register(srv->db, &st_rate);
	for (int i = 0; i < 3; i++)
		db_register(srv->db, &st_list[i]);
	http_server_add_routes(srv->http, trip_routes, t);
	return t;
}

void trips_set_listener(struct trips *t, const struct trip_listener *l)
{
	t->listener = *l;
}

void trips_free(struct trips *t)
{
	if (!t)
		return;
	struct tx_item *it;
	for (int i = 0; i < 2 * t->nlanes; i++) {
		struct lane *l = i >= t->nlanes ? &t->rlanes[i - t->nlanes] : &t->lanes[i];
		while ((it = TAILQ_FIRST(&l->queue))) {
			TAILQ_REMOVE(&l->queue, it, link);
			cJSON_free(it->json);
			rh_free(it);
		}
		if (l->flush_ev)
			event_free(l->flush_ev);
	}
	ratelimit_free(t->rl_rides);
	rh_free(t);
}
