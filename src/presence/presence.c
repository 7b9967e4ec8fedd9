#include "presence/presence.h"

#include <event2/event.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/server.h"
#include "gateway/gateway.h"
#include "geo/geohash.h"
#include "geo/grid.h"
#include "net/http.h"
#include "net/ws.h"
#include "net/ws_frame.h"
#include "presence/gps_check.h"
#include "presence/history.h"
#include "presence/suspect.h"
#include "store/db.h"

#define SWEEP_MS 1000
#define SWEEP_BUDGET 20000        /* slots examined per sweep tick */
#define FUZZ_WINDOW_MS (5 * 60 * 1000)

static const char *const status_names[] = { "offline", "available", "offered", "en_route", "on_trip", "unreachable" };

const char *driver_status_name(enum driver_status s)
{
	return (unsigned)s < RH_ARRAY_LEN(status_names) ? status_names[s] : "?";
}

int driver_status_parse(const char *s)
{
	for (int i = 0; i < DRIVER_UNREACHABLE; i++)
		if (s && strcmp(s, status_names[i]) == 0)
			return i;
	return -1;
}

struct driver_rec {
	struct uuid id;
	uint32_t slot;             /* its index: the grid's handle */
	bool used;
	bool in_grid;
	enum driver_status status; /* as in the database */
	int vehicle;               /* index into cfg.tariff */
	int64_t version;
	struct session *session;   /* borrowed from the gateway */
	int64_t last_ping_ms;      /* monotonic, for freshness */
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
	bool http_mode;            /* no socket: the app uses the HTTP fallback */
	int64_t available_since_ms; /* monotonic */
	uint32_t offers, accepts;
	struct gps_track gps;         /* GPS sanity (gps_check.h) */
	int64_t suspect_event_ms;     /* wall: the last driver.location.suspect written */
};

struct presence {
	struct server *srv;
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
	struct event *sweep;
	struct gw_message_type location_type, status_type; /* registered with the gateway */
	struct presence_hooks hooks;
	struct gps_check_cfg gps_cfg;
	struct presence_suspect *suspect;
	struct metric_family *f_ignored;
	struct metric_cell *m_pings, *m_connected, *m_grid, *m_records, *m_evictions, *m_throttled, *m_cells;
};

/* ------------------------------------------------------------ records */

#define REC_CHUNK_BITS 12
#define REC_CHUNK (1u << REC_CHUNK_BITS)

static inline struct driver_rec *rec_at(const struct presence *p, uint32_t slot)
{
	return &p->chunks[slot >> REC_CHUNK_BITS][slot & (REC_CHUNK - 1)];
}

static uint32_t uuid_hash(const struct uuid *u)
{
	uint32_t h;
	memcpy(&h, u->b + 12, 4); /* random bits of a v4 uuid; mixed anyway */
	h ^= (uint32_t)u->b[0] << 24 | (uint32_t)u->b[5] << 16 | (uint32_t)u->b[9] << 8 | u->b[3];
	h *= 0x9e3779b1u;
	return h;
}

static struct driver_rec *rec_find(struct presence *p, const struct uuid *id)
{
	if (!p->index_cap)
		return NULL;
	uint32_t mask = p->index_cap - 1;
	for (uint32_t i = uuid_hash(id) & mask;; i = (i + 1) & mask) {
		uint32_t e = p->index[i];
		if (e == 0)
			return NULL;
		if (e != UINT32_MAX && uuid_eq(&rec_at(p, e - 1)->id, id))
			return rec_at(p, e - 1);
	}
}

static void index_insert(struct presence *p, uint32_t slot);

static void index_grow(struct presence *p)
{
	uint32_t *old = p->index, oldcap = p->index_cap;
	p->index_cap = oldcap ? oldcap * 2 : 1024;
	p->index = rh_calloc(p->index_cap, sizeof *p->index);
	p->index_used = 0;
	for (uint32_t i = 0; i < oldcap; i++)
		if (old[i] && old[i] != UINT32_MAX)
			index_insert(p, old[i] - 1);
	rh_free(old);
}

static void index_insert(struct presence *p, uint32_t slot)
{
	if ((p->index_used + 1) * 2 > p->index_cap)
		index_grow(p);
	uint32_t mask = p->index_cap - 1;
	uint32_t i = uuid_hash(&rec_at(p, slot)->id) & mask;
	while (p->index[i] != 0 && p->index[i] != UINT32_MAX)
		i = (i + 1) & mask;
	if (p->index[i] == 0)
		p->index_used++;
	p->index[i] = slot + 1;
}

static void index_remove(struct presence *p, uint32_t slot)
{
	uint32_t mask = p->index_cap - 1;
	for (uint32_t i = uuid_hash(&rec_at(p, slot)->id) & mask;; i = (i + 1) & mask) {
		if (p->index[i] == slot + 1) {
			p->index[i] = UINT32_MAX;
			return;
		}
		if (p->index[i] == 0)
			return;
	}
}

static struct driver_rec *rec_new(struct presence *p, const struct uuid *id)
{
	uint32_t slot;
	if (p->nfree) {
		slot = p->free_slots[--p->nfree];
	} else {
		if (p->nrecs == p->cfg->max_drivers)
			return NULL;
		if (p->nrecs == p->cap) {
			uint32_t n = p->cap >> REC_CHUNK_BITS;
			p->chunks = rh_realloc(p->chunks, (size_t)(n + 1) * sizeof *p->chunks);
			p->chunks[n] = rh_calloc(REC_CHUNK, sizeof **p->chunks);
			p->cap += REC_CHUNK;
			p->free_slots = rh_realloc(p->free_slots, (size_t)p->cap * sizeof *p->free_slots);
		}
		slot = p->nrecs++;
	}
	struct driver_rec *r = rec_at(p, slot);
	memset(r, 0, sizeof *r);
	r->id = *id;
	r->slot = slot;
	r->used = true;
	r->heading = r->speed = r->accuracy = -1;
	index_insert(p, slot);
	metric_add(p->m_records, 1);
	return r;
}

static uint32_t rec_slot(const struct presence *p, const struct driver_rec *r)
{
	(void)p;
	return r->slot;
}

static void rec_free(struct presence *p, struct driver_rec *r)
{
	uint32_t slot = rec_slot(p, r);
	if (r->in_grid && geo_grid_remove(p->grid, slot) == RH_OK)
		r->in_grid = false;
	index_remove(p, slot);
	r->used = false;
	p->free_slots[p->nfree++] = slot;
	metric_add(p->m_records, -1);
}

/* What the grid filters on: the database status while the driver can be
 * reached (an open socket, or an app on the HTTP fallback that keeps sending
 * locations: staleness covers it when it stops). */
static uint8_t grid_status(const struct driver_rec *r)
{
	return r->session || r->http_mode ? (uint8_t)r->status : DRIVER_UNREACHABLE;
}

static void rec_set_status(struct driver_rec *r, enum driver_status st)
{
	if (st == DRIVER_AVAILABLE && r->status != DRIVER_AVAILABLE)
		r->available_since_ms = rh_mono_ns() / 1000000;
	r->status = st;
}

static void rec_sync_grid_status(struct presence *p, struct driver_rec *r)
{
	if (r->in_grid && geo_grid_set_status(p->grid, rec_slot(p, r), grid_status(r)) != RH_OK)
		log_error(NULL, "presence: grid status update failed");
}

int presence_vehicle_index(const struct server *srv, const char *type)
{
	for (int i = 0; i < srv->cfg.ntariffs; i++)
		if (strcmp(srv->cfg.tariff[i].name, type) == 0)
			return i;
	return -1;
}

/* ------------------------------------------------------------ sessions */

static struct db_stmt st_driver_load = {
	"presence_driver_load", "SELECT vehicle_type, status, version, disabled FROM drivers WHERE id = $1", 1,
};
static struct db_stmt st_driver_status = {
	"presence_driver_status",
	"UPDATE drivers SET status = $2, version = version + 1, updated_at = now()"
	" WHERE id = $1 AND status IN ('offline', 'available') RETURNING version",
	2,
};
static struct db_stmt st_driver_evict = {
	"presence_driver_evict",
	"UPDATE drivers SET status = 'offline', version = version + 1, updated_at = now()"
	" WHERE id = $1 AND status = 'available' RETURNING version",
	1,
};

struct admit_ctx {
	struct presence *p;
	struct gw_pending *pending;
	struct http_req *req; /* for fallback pings */
	struct uuid id;
	cJSON *body;
};

/* Fills the record from a drivers row; false when the account is unusable. */
static bool rec_load_row(struct presence *p, struct driver_rec *r, const struct db_result *res)
{
	int v = presence_vehicle_index(p->srv, db_get(res, 0, 0));
	int st = driver_status_parse(db_get(res, 0, 1));
	r->vehicle = v < 0 ? 0 : v;
	if (st >= 0 && !r->status_pending)
		rec_set_status(r, (enum driver_status)st);
	r->version = strtoll(db_get(res, 0, 2), NULL, 10);
	return true;
}

static void admit_loaded(void *arg, const struct db_result *res)
{
	struct admit_ctx *a = arg;
	struct presence *p = a->p;
	if (res->err != RH_OK) {
		gateway_refuse(a->pending, PROBLEM_DB_UNAVAILABLE, "cannot load the driver now; retry");
	} else if (db_rows(res) == 0) {
		gateway_refuse(a->pending, PROBLEM_FORBIDDEN, "no such driver");
	} else if (db_get(res, 0, 3)[0] == 't') {
		gateway_refuse(a->pending, PROBLEM_FORBIDDEN, "this driver account is disabled");
	} else {
		struct driver_rec *r = rec_find(p, &a->id);
		if (!r)
			r = rec_new(p, &a->id);
		if (!r) {
			gateway_refuse(a->pending, PROBLEM_OVERLOADED, "too many drivers online");
		} else {
			rec_load_row(p, r, res);
			gateway_admit(a->pending, NULL);
		}
	}
	rh_free(a);
}

static void driver_admit(struct gw_pending *pending, const struct auth_principal *who, void *ctx)
{
	struct presence *p = ctx;
	struct admit_ctx *a = RH_NEW(struct admit_ctx);
	a->p = p;
	a->pending = pending;
	if (!uuid_parse(who->id, &a->id)) {
		rh_free(a);
		gateway_refuse(pending, PROBLEM_FORBIDDEN, "malformed subject");
		return;
	}
	const char *params[] = { who->id };
	db_query(p->srv->db, &st_driver_load, params, admit_loaded, a);
}

static void driver_opened(struct session *s, void *ctx)
{
	struct presence *p = ctx;
	struct uuid id;
	uuid_parse(s->who.id, &id);
	struct driver_rec *r = rec_find(p, &id);
	if (!r) { /* evicted between admission and now: make it again */
		r = rec_new(p, &id);
		if (!r) {
			gateway_close(s, WS_CLOSE_TRY_AGAIN, "too many drivers online");
			return;
		}
	}
	if (r->session) {
		struct session *old = r->session;
		r->session = NULL;
		p->connected--;
		old->owner = NULL;
		log_info(NULL, "driver %s: a new session replaces the old one", s->who.id);
		gateway_close(old, WS_CLOSE_REPLACED, "replaced by a new session");
	}
	r->session = s;
	r->http_mode = false;
	s->owner = r;
	p->connected++;
	metric_set(p->m_connected, p->connected);
	rec_sync_grid_status(p, r);
	/* Tell the app where it stands. */
	cJSON *pl = cJSON_CreateObject();
	cJSON_AddStringToObject(pl, "driver_id", s->who.id);
	cJSON_AddStringToObject(pl, "status", driver_status_name(r->status));
	cJSON_AddNumberToObject(pl, "version", (double)r->version);
	cJSON_AddStringToObject(pl, "reason", "session_opened");
	gateway_send(s, "driver.status.changed", pl, NULL);
	if (p->hooks.opened)
		p->hooks.opened(p->hooks.ctx, s, &r->id);
}

static void driver_closed(struct session *s, void *ctx, uint16_t code)
{
	struct presence *p = ctx;
	struct driver_rec *r = s->owner;
	if (!r || r->session != s)
		return;
	r->session = NULL;
	p->connected--;
	metric_set(p->m_connected, p->connected);
	/* Out of searches at once (no socket: no offers); the position stays so a
	 * reconnect within evict_after is seamless. */
	rec_sync_grid_status(p, r);
}

/* ------------------------------------------------------------ pings */

static const char *const sources[] = { "gps", "network", "manual", NULL };

/* Indices into the tables, for the scanned values (jv_scan). */
enum { PT_LAT, PT_LON };

static const struct jv_field geo_point_fields[] = {
	[PT_LAT] = { "lat", JV_NUMBER, JV_REQUIRED, -90, 90 },
	[PT_LON] = { "lon", JV_NUMBER, JV_REQUIRED, -180, 180 },
	{ 0 },
};

enum { LOC_DRIVER_ID, LOC_LOCATION, LOC_SPEED, LOC_HEADING, LOC_ACCURACY, LOC_SOURCE };

const struct jv_field presence_location_fields[] = {
	[LOC_DRIVER_ID] = { "driver_id", JV_UUID, JV_REQUIRED },
	[LOC_LOCATION] = { "location", JV_OBJECT, JV_REQUIRED, 0, 0, NULL, geo_point_fields },
	[LOC_SPEED] = { "speed_kmh", JV_NUMBER, 0, 0, 400 },
	[LOC_HEADING] = { "heading_deg", JV_NUMBER, 0, 0, 360 },
	[LOC_ACCURACY] = { "accuracy_m", JV_NUMBER, 0, 0, 100000 },
	[LOC_SOURCE] = { "source", JV_STRING, 0, 0, 0, sources },
	{ 0 },
};

/* The same, over HTTP (PUT /v1/drivers/me/location): the driver is the token's. */
static const struct jv_field http_location_fields[] = {
	{ "location", JV_OBJECT, JV_REQUIRED, 0, 0, NULL, geo_point_fields },
	{ "speed_kmh", JV_NUMBER, 0, 0, 400 },
	{ "heading_deg", JV_NUMBER, 0, 0, 360 },
	{ "accuracy_m", JV_NUMBER, 0, 0, 100000 },
	{ "source", JV_STRING, 0, 0, 0, sources },
	{ "timestamp", JV_DATETIME, JV_REQUIRED },
	{ 0 },
};

/* Token bucket: max_pings_per_s sustained, twice that in a burst. */
static bool ping_allowed(struct presence *p, struct driver_rec *r, int64_t now)
{
	double rate = p->cfg->max_pings_per_s, burst = rate * 2 < 1 ? 1 : rate * 2;
	if (r->tokens_ms == 0) {
		r->tokens = burst;
	} else {
		r->tokens += (double)(now - r->tokens_ms) * rate / 1000.0;
		if (r->tokens > burst)
			r->tokens = burst;
	}
	r->tokens_ms = now;
	if (r->tokens >= 1) {
		r->tokens -= 1;
		if (now - r->last_throttled_ms > 1000)
			r->throttled_since_ms = 0; /* a calm second ends a flood */
		return true;
	}
	r->last_throttled_ms = now;
	if (!r->throttled_since_ms)
		r->throttled_since_ms = now;
	return false;
}

static void count_ignored(struct presence *p, const char *reason)
{
	const char *lv[] = { reason };
	metric_inc(metric_cell(p->f_ignored, lv));
}

enum ping_result { PING_OK, PING_REJECT, PING_IGNORED };

/* One location, however it came (a tree, the scan, the HTTP fallback);
 * heading, speed and accuracy are -1 and source NULL when absent. */
struct fix {
	double lat, lon, heading, speed, accuracy;
	const char *source;
	int64_t device_ms;
};

static void fix_from_json(const cJSON *pl, int64_t device_ms, struct fix *f)
{
	const cJSON *loc = cJSON_GetObjectItemCaseSensitive(pl, "location");
	f->lat = jv_num(loc, "lat", 0);
	f->lon = jv_num(loc, "lon", 0);
	f->heading = jv_num(pl, "heading_deg", -1);
	f->speed = jv_num(pl, "speed_kmh", -1);
	f->accuracy = jv_num(pl, "accuracy_m", -1);
	f->source = jv_str(pl, "source");
	f->device_ms = device_ms;
}

/* GPS sanity (presence/gps_check.h): a fix implying an impossible speed or
 * jump is not believed; the driver leaves the grid (search and offers)
 * until its fixes are consistent again, and an operator hears of it
 * (presence/suspect.h). */
static bool location_believed(struct presence *p, struct driver_rec *r, const struct fix *fx, int64_t wall)
{
	struct gps_fix g = { fx->lat, fx->lon, fx->accuracy, fx->device_ms }, from = r->gps.last;
	struct gps_jump jump;
	enum gps_verdict v = gps_check_fix(&p->gps_cfg, &r->gps, &g, &jump);
	if (v == GPS_RECOVERED)
		presence_suspect_recovered(p->suspect, &r->id);
	if (v == GPS_OK || v == GPS_RECOVERED)
		return true;
	count_ignored(p, "implausible");
	if (v == GPS_SUSPECT) {
		if (r->in_grid && geo_grid_remove(p->grid, rec_slot(p, r)) == RH_OK)
			r->in_grid = false;
		presence_suspect_report(p->suspect, &r->id, &from, &g, &jump, wall, &r->suspect_event_ms);
	}
	return false;
}

/* Applies one location; shared by the WebSocket and the HTTP fallback. */
/* now: monotonic ms, wall: wall-clock ms, both of when the fix arrived. */
static enum ping_result apply_location(struct presence *p, struct driver_rec *r, const struct fix *fx, int64_t now,
				       int64_t wall, struct gw_reject *rej)
{
	int64_t device_ms = fx->device_ms;
	if (device_ms > wall + p->cfg->max_clock_skew_ms) {
		gw_reject_set(rej, "timestamp_in_future", "timestamp", "the location is stamped %lld s in the future",
			      (long long)((device_ms - wall) / 1000));
		return PING_REJECT;
	}
	if (device_ms < wall - p->cfg->max_ping_age_ms) {
		gw_reject_set(rej, "stale", "timestamp", "the location is %lld s old", (long long)((wall - device_ms) / 1000));
		return PING_REJECT;
	}
	if (device_ms < r->last_device_ms) {
		count_ignored(p, "out_of_order"); /* an older fix arriving late: keep the newer */
		return PING_IGNORED;
	}
	if (!location_believed(p, r, fx, wall))
		return PING_IGNORED;
	double lat = fx->lat, lon = fx->lon;
	uint32_t slot = rec_slot(p, r);
	rh_err e;
	if (r->in_grid) {
		e = geo_grid_move(p->grid, slot, lat, lon, now);
	} else {
		struct geo_grid_driver d = { .lat = lat, .lon = lon, .ping_ms = now, .status = grid_status(r),
					     .vehicle = (uint16_t)(1u << r->vehicle) };
		e = geo_grid_insert(p->grid, slot, &d);
		r->in_grid = e == RH_OK;
	}
	if (e != RH_OK) {
		gw_reject_set(rej, "validation_failed", "location", "the grid refused the position");
		return PING_REJECT;
	}
	r->lat = lat;
	r->lon = lon;
	r->heading = (float)fx->heading;
	r->speed = (float)fx->speed;
	r->accuracy = (float)fx->accuracy;
	const char *src = fx->source;
	r->source = !src || strcmp(src, "gps") == 0 ? SOURCE_GPS : strcmp(src, "network") == 0 ? SOURCE_NETWORK : SOURCE_MANUAL;
	r->last_ping_ms = now;
	r->last_device_ms = device_ms;
	metric_inc(p->m_pings);
	if (r->has_trip && p->hooks.location)
		p->hooks.location(p->hooks.ctx, &r->id, lat, lon, r->speed, r->accuracy, device_ms);
	if (p->history) {
		struct history_point hp = {
			.recv_ms = wall, .device_ms = device_ms, .lat = lat, .lon = lon, .heading = r->heading,
			.speed = r->speed, .accuracy = r->accuracy, .source = r->source, .has_trip = r->has_trip,
		};
		memcpy(hp.driver, r->id.b, 16);
		memcpy(hp.trip, r->trip.b, 16);
		history_push(p->history, &hp);
	}
	return PING_OK;
}

/* driver.location.updated, from either form of the message. */
static bool location_update(struct presence *p, struct session *s, const char *driver_id, const char *event_id,
			    const struct fix *fx, struct gw_reject *rej)
{
	struct driver_rec *r = s->owner;
	int64_t now, wall;
	ws_rx_time(s->ws, &now, &wall); /* the clocks as the message was read, not two readings per ping */
	if (!r)
		return true; /* replaced meanwhile */
	if (strcmp(driver_id, s->who.id) != 0) {
		gw_reject_set(rej, "forbidden", "payload.driver_id", "driver_id must be your own id");
		return false;
	}
	if (!ping_allowed(p, r, now)) {
		metric_inc(p->m_throttled);
		if (now - r->throttled_since_ms >= p->cfg->flood_close_after_ms) {
			log_info(ws_logid(s->ws), "driver %s keeps sending over %.1f pings/s: closing", s->who.id,
				 p->cfg->max_pings_per_s);
			gateway_close(s, WS_CLOSE_POLICY, "too many location updates");
			return true;
		}
		if (now - r->last_throttle_notice_ms >= 1000) { /* one notice a second, not one per ping */
			r->last_throttle_notice_ms = now;
			gw_reject_set(rej, "rate_limited", NULL, "more than %.1f location updates a second; extra ones are dropped",
				      p->cfg->max_pings_per_s);
			gateway_reject(s, "driver.location.updated", event_id, rej);
		}
		return true;
	}
	enum ping_result res = apply_location(p, r, fx, now, wall, rej);
	if (res == PING_REJECT) {
		char field[160];
		snprintf(field, sizeof field, "%s%s", strcmp(rej->field, "timestamp") == 0 ? "" : "payload.", rej->field);
		snprintf(rej->field, sizeof rej->field, "%.127s", field);
		return false;
	}
	if (p->cfg->ack_interval_ms > 0) {
		r->pings_since_ack++;
		if (now - r->last_ack_ms >= p->cfg->ack_interval_ms) {
			cJSON *ack = cJSON_CreateObject();
			cJSON_AddStringToObject(ack, "driver_id", s->who.id);
			cJSON_AddNumberToObject(ack, "count", r->pings_since_ack);
			cJSON_AddStringToObject(ack, "last_event_id", event_id);
			gateway_send(s, "driver.location.acked", ack, event_id);
			r->pings_since_ack = 0;
			r->last_ack_ms = now;
		}
	}
	return true;
}

static bool on_location(struct session *s, void *ctx, const cJSON *msg, const cJSON *pl, struct gw_reject *rej)
{
	struct fix fx;
	int64_t device_ms = 0;
	rh_parse_rfc3339(jv_str(msg, "timestamp"), &device_ms); /* validated by the envelope */
	fix_from_json(pl, device_ms, &fx);
	return location_update(ctx, s, jv_str(pl, "driver_id"), jv_str(msg, "event_id"), &fx, rej);
}

static double scanned_num(const struct jv_value *v, double def) { return v->present ? v->num : def; }

static bool on_location_scanned(struct session *s, void *ctx, const struct jv_value *env, const struct jv_value *pl,
				struct gw_reject *rej)
{
	const struct jv_value *pt = pl[LOC_LOCATION].sub;
	struct fix fx = {
		.lat = pt[PT_LAT].num,
		.lon = pt[PT_LON].num,
		.heading = scanned_num(&pl[LOC_HEADING], -1),
		.speed = scanned_num(&pl[LOC_SPEED], -1),
		.accuracy = scanned_num(&pl[LOC_ACCURACY], -1),
		.source = pl[LOC_SOURCE].present ? pl[LOC_SOURCE].str : NULL,
		.device_ms = env[GW_ENV_TIMESTAMP].ms,
	};
	return location_update(ctx, s, pl[LOC_DRIVER_ID].str, env[GW_ENV_EVENT_ID].str, &fx, rej);
}

/* ------------------------------------------------------------ availability */

static const char *const driver_settable[] = { "available", "offline", NULL };

static const struct jv_field status_fields[] = {
	{ "driver_id", JV_UUID, JV_REQUIRED },
	{ "status", JV_STRING, JV_REQUIRED, 0, 0, driver_settable },
	{ "reason", JV_STRING, 0, 1, 64 },
	{ 0 },
};

struct status_ctx {
	struct presence *p;
	struct uuid id;
	enum driver_status want;
	char correlation[37];
};

static void status_written(void *arg, const struct db_result *res)
{
	struct status_ctx *c = arg;
	struct presence *p = c->p;
	struct driver_rec *r = rec_find(p, &c->id);
	if (r)
		r->status_pending = false;
	struct session *s = r ? r->session : NULL;
	if (res->err == RH_OK && db_rows(res) == 1 && r) {
		rec_set_status(r, c->want);
		r->version = strtoll(db_get(res, 0, 0), NULL, 10);
		rec_sync_grid_status(p, r);
		char id[37];
		uuid_format(&c->id, id);
		log_info(NULL, "driver %s is %s (version %lld)", id, driver_status_name(r->status), (long long)r->version);
		if (s) {
			cJSON *pl = cJSON_CreateObject();
			cJSON_AddStringToObject(pl, "driver_id", id);
			cJSON_AddStringToObject(pl, "status", driver_status_name(r->status));
			cJSON_AddNumberToObject(pl, "version", (double)r->version);
			cJSON_AddStringToObject(pl, "reason", "driver_request");
			gateway_send(s, "driver.status.changed", pl, c->correlation);
		}
		if (c->want == DRIVER_AVAILABLE && p->hooks.available)
			p->hooks.available(p->hooks.ctx, &c->id);
	} else if (s) {
		struct gw_reject rej;
		if (res->err != RH_OK)
			gw_reject_set(&rej, "unavailable", NULL, "the change was not saved (%s); send it again", res->message);
		else
			gw_reject_set(&rej, "invalid_state", "payload.status", "not now: you are %s", driver_status_name(r->status));
		gateway_reject(s, "driver.status.changed", c->correlation, &rej);
	}
	rh_free(c);
}

static bool on_status(struct session *s, void *ctx, const cJSON *msg, const cJSON *pl, struct gw_reject *rej)
{
	struct presence *p = ctx;
	struct driver_rec *r = s->owner;
	if (!r)
		return true;
	if (strcmp(jv_str(pl, "driver_id"), s->who.id) != 0) {
		gw_reject_set(rej, "forbidden", "payload.driver_id", "driver_id must be your own id");
		return false;
	}
	enum driver_status want = (enum driver_status)driver_status_parse(jv_str(pl, "status"));
	if (r->status != DRIVER_OFFLINE && r->status != DRIVER_AVAILABLE) {
		gw_reject_set(rej, "invalid_state", "payload.status", "you are %s: finish or cancel first",
			      driver_status_name(r->status));
		return false;
	}
	struct status_ctx *c = RH_NEW(struct status_ctx);
	c->p = p;
	c->id = r->id;
	c->want = want;
	snprintf(c->correlation, sizeof c->correlation, "%s", jv_str(msg, "event_id"));
	r->status_pending = true;
	const char *params[] = { s->who.id, driver_status_name(want) };
	db_query(p->srv->db, &st_driver_status, params, status_written, c);
	return true;
}

/* ------------------------------------------------------------ sweeping */

static void evicted_written(void *arg, const struct db_result *res)
{
	(void)arg;
	(void)res; /* best effort: the next login reloads the row anyway */
}

static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	struct presence *p = arg;
	int64_t now = rh_mono_ns() / 1000000;
	uint32_t evicted[1024];
	size_t n = geo_grid_sweep_stale(p->grid, now, p->cfg->evict_after_ms, SWEEP_BUDGET, evicted, RH_ARRAY_LEN(evicted));
	for (size_t i = 0; i < n; i++) {
		struct driver_rec *r = rec_at(p, evicted[i]);
		char id[37];
		r->in_grid = false;
		metric_inc(p->m_evictions);
		uuid_format(&r->id, id);
		if (r->status == DRIVER_AVAILABLE) {
			const char *params[] = { id };
			db_query(p->srv->db, &st_driver_evict, params, evicted_written, NULL);
			r->status = DRIVER_OFFLINE;
		}
		log_info(NULL, "driver %s evicted: no location for %lld s", id, (long long)(p->cfg->evict_after_ms / 1000));
		if (!r->session && !r->has_trip)
			rec_free(p, r);
	}
	metric_set(p->m_grid, (double)geo_grid_count(p->grid));
	metric_set(p->m_cells, (double)geo_grid_cell_count(p->grid));
}

/* ------------------------------------------------------------ queries */

/* The grid's k nearest fresh drivers in any status of status_mask. */
static size_t grid_nearest(struct presence *p, double lat, double lon, double radius_m, uint32_t status_mask,
			   uint32_t vehicle_mask, struct geo_grid_hit *hits, size_t k, int64_t *now_ms)
{
	struct geo_grid_filter f = {
		.status_mask = status_mask,
		.vehicle_mask = (uint16_t)vehicle_mask,
		.now_ms = rh_mono_ns() / 1000000,
		.stale_after_ms = p->cfg->stale_after_ms,
	};
	size_t n = 0;
	*now_ms = f.now_ms;
	if (geo_grid_nearest(p->grid, lat, lon, radius_m, &f, hits, k, &n) != RH_OK)
		return 0;
	return n;
}

static struct presence_hit hit_of(const struct driver_rec *r, double dist_m, int64_t now_ms)
{
	return (struct presence_hit){
		.driver = r->id, .dist_m = dist_m, .lat = r->lat, .lon = r->lon, .heading = r->heading,
		.vehicle = r->vehicle, .version = r->version, .ping_age_ms = now_ms - r->last_ping_ms,
		.idle_ms = r->status == DRIVER_AVAILABLE ? now_ms - r->available_since_ms : 0,
		.offers = r->offers, .accepts = r->accepts, .slot = r->slot,
	};
}

size_t presence_nearest(struct presence *p, double lat, double lon, double radius_m, enum driver_status status,
			uint32_t vehicle_mask, struct presence_hit *out, size_t k)
{
	struct geo_grid_hit hits[256];
	if (k > RH_ARRAY_LEN(hits))
		k = RH_ARRAY_LEN(hits);
	int64_t now_ms;
	size_t n = grid_nearest(p, lat, lon, radius_m, 1u << status, vehicle_mask, hits, k, &now_ms);
	for (size_t i = 0; i < n; i++)
		out[i] = hit_of(rec_at(p, hits[i].slot), hits[i].dist_m, now_ms);
	return n;
}

bool presence_hit_of(struct presence *p, const struct uuid *driver, enum driver_status status,
		     struct presence_hit *out)
{
	const struct driver_rec *r = rec_find(p, driver);
	int64_t now_ms = rh_mono_ns() / 1000000;
	/* the grid's own filter (geo_knn_scan_cell) on this one record */
	if (!r || !r->in_grid || r->status != status || now_ms - r->last_ping_ms >= p->cfg->stale_after_ms)
		return false;
	*out = hit_of(r, 0, now_ms);
	return true;
}

void presence_set_status(struct presence *p, const struct uuid *driver, enum driver_status st, int64_t version)
{
	struct driver_rec *r = rec_find(p, driver);
	if (!r || version < r->version)
		return; /* an older answer arriving late */
	rec_set_status(r, st);
	r->version = version;
	rec_sync_grid_status(p, r);
}

void presence_set_hooks(struct presence *p, const struct presence_hooks *h)
{
	p->hooks = *h;
}

void presence_set_trip(struct presence *p, const struct uuid *driver, const struct uuid *trip)
{
	struct driver_rec *r = rec_find(p, driver);
	if (!r)
		return;
	r->has_trip = trip != NULL;
	if (trip)
		r->trip = *trip;
	else
		memset(&r->trip, 0, sizeof r->trip);
}

void presence_note_offer(struct presence *p, const struct uuid *driver, bool accepted)
{
	struct driver_rec *r = rec_find(p, driver);
	if (!r)
		return;
	if (accepted)
		r->accepts++;
	else
		r->offers++;
}

size_t presence_count(struct presence *p, double lat, double lon, double radius_m, uint32_t status_mask,
		      uint32_t vehicle_mask, size_t max)
{
	struct geo_grid_hit hits[64];
	int64_t now_ms;
	if (max > RH_ARRAY_LEN(hits))
		max = RH_ARRAY_LEN(hits);
	return grid_nearest(p, lat, lon, radius_m, status_mask, vehicle_mask, hits, max, &now_ms);
}

bool presence_driver(struct presence *p, const struct uuid *driver, enum driver_status *st, int64_t *version,
		     double *lat, double *lon)
{
	struct driver_rec *r = rec_find(p, driver);
	if (!r)
		return false;
	*st = r->status;
	*version = r->version;
	*lat = r->lat;
	*lon = r->lon;
	return true;
}

struct session *presence_session(struct presence *p, const struct uuid *driver)
{
	struct driver_rec *r = rec_find(p, driver);
	return r ? r->session : NULL;
}

/* Moves a position by up to fuzz metres, the same way for 5 minutes: a
 * rider cannot average repeated queries back to the true position. */
static void fuzz_position(struct presence *p, const struct driver_rec *r, double *lat, double *lon)
{
	unsigned char in[24], h[crypto_shorthash_BYTES];
	int64_t window = rh_wall_ms() / FUZZ_WINDOW_MS;
	memcpy(in, r->id.b, 16);
	memcpy(in + 16, &window, 8);
	crypto_shorthash(h, in, sizeof in, p->fuzz_key);
	uint32_t a, d;
	memcpy(&a, h, 4);
	memcpy(&d, h + 4, 4);
	double angle = (double)a / 4294967296.0 * 2 * M_PI;
	double dist = p->cfg->fuzz_m * (0.5 + 0.5 * (double)d / 4294967296.0);
	*lat = r->lat + dist * cos(angle) / 111320.0;
	*lon = r->lon + dist * sin(angle) / (111320.0 * cos(r->lat * M_PI / 180.0));
	if (*lat > 90)
		*lat = 90;
	if (*lat < -90)
		*lat = -90;
}

static void nearby(struct http_req *req, void *ctx)
{
	struct presence *p = ctx;
	struct auth_principal who;
	double lat, lng;
	int64_t radius, limit;
	if (!auth_require_or_reply(p->srv->auth, req, ROLE_RIDER | ROLE_OPERATOR, &who))
		return;
	if (!http_query_number_or_reply(req, "lat", -90, 90, 0, true, &lat) || !http_query_number_or_reply(req, "lng", -180, 180, 0, true, &lng) ||
	    !http_query_integer_or_reply(req, "radius_m", 1, p->cfg->nearby_max_radius_m, 2000, false, &radius) ||
	    !http_query_integer_or_reply(req, "limit", 1, p->cfg->nearby_max_limit, 10, false, &limit))
		return;
	uint32_t mask = 0xffff;
	const char *vt = http_req_query(req, "vehicle_type");
	if (vt) {
		int v = presence_vehicle_index(p->srv, vt);
		if (v < 0) {
			cJSON *ext = cJSON_CreateObject();
			cJSON_AddStringToObject(ext, "field", "vehicle_type");
			cJSON_AddStringToObject(ext, "rule", "enum");
			http_reply_problem(req, PROBLEM_VALIDATION, ext, "unknown vehicle_type \"%s\"", vt);
			return;
		}
		mask = 1u << v;
	}
	struct presence_hit hits[256];
	size_t n = presence_nearest(p, lat, lng, (double)radius, DRIVER_AVAILABLE, mask, hits, (size_t)limit);
	bool exact = who.role == ROLE_OPERATOR;
	struct strbuf sb;
	sb_init(&sb, 1u << 20);
	sb_puts(&sb, "{\"drivers\":[");
	for (size_t i = 0; i < n; i++) {
		const struct driver_rec *r = rec_at(p, hits[i].slot);
		double dl = hits[i].lat, dn = hits[i].lon, dist = hits[i].dist_m;
		if (!exact) {
			fuzz_position(p, r, &dl, &dn);
			dist = geo_dist_haversine_m(lat, lng, dl, dn);
		}
		/* hand-formatted: printf's floating point was a sixth of the cost */
		sb_puts(&sb, i ? ",{\"location\":{\"lat\":" : "{\"location\":{\"lat\":");
		sb_fixed(&sb, dl, 6);
		sb_puts(&sb, ",\"lon\":");
		sb_fixed(&sb, dn, 6);
		sb_puts(&sb, "},\"distance_m\":");
		sb_fixed(&sb, dist, 0);
		sb_puts(&sb, ",\"vehicle_type\":\"");
		sb_puts(&sb, p->srv->cfg.tariff[hits[i].vehicle].name);
		sb_putc(&sb, '"');
		if (hits[i].heading >= 0) {
			sb_puts(&sb, ",\"heading_deg\":");
			sb_fixed(&sb, hits[i].heading, 0);
		}
		if (exact) {
			char id[37];
			uuid_format(&hits[i].driver, id);
			sb_printf(&sb, ",\"driver_id\":\"%s\",\"status\":\"%s\",\"version\":%lld,\"ping_age_ms\":%lld", id,
				  driver_status_name(r->status), (long long)hits[i].version, (long long)hits[i].ping_age_ms);
		}
		sb_putc(&sb, '}');
	}
	sb_printf(&sb, "],\"count\":%zu,\"radius_m\":%lld,\"exact\":%s}", n, (long long)radius, exact ? "true" : "false");
	http_reply(req, 200, "application/json", sb.buf, sb.len);
	sb_fini(&sb);
}

/* PUT /v1/drivers/me/location: for drivers without a socket. */
static void http_location_apply(struct presence *p, struct http_req *req, struct driver_rec *r, cJSON *body)
{
	struct gw_reject rej;
	int64_t device_ms;
	rh_parse_rfc3339(jv_str(body, "timestamp"), &device_ms);
	if (!ping_allowed(p, r, rh_mono_ns() / 1000000)) {
		http_reply_header(req, "Retry-After", "1");
		http_reply_problem(req, PROBLEM_RATE_LIMITED, NULL, "more than %.1f location updates a second",
				   p->cfg->max_pings_per_s);
		return;
	}
	if (!r->session && !r->http_mode) {
		r->http_mode = true;
		rec_sync_grid_status(p, r);
	}
	struct fix fx;
	fix_from_json(body, device_ms, &fx);
	enum ping_result res = apply_location(p, r, &fx, rh_mono_ns() / 1000000, rh_wall_ms(), &rej);
	if (res == PING_REJECT) {
		cJSON *ext = cJSON_CreateObject();
		cJSON_AddStringToObject(ext, "field", rej.field);
		cJSON_AddStringToObject(ext, "reason", rej.reason);
		http_reply_problem(req, PROBLEM_VALIDATION, ext, "%s", rej.details);
		return;
	}
	cJSON *j = cJSON_CreateObject();
	cJSON_AddStringToObject(j, "status", res == PING_OK ? "ok" : "ignored");
	http_reply_json(req, 200, j);
}

static void http_location_loaded(void *arg, const struct db_result *res)
{
	struct admit_ctx *a = arg;
	struct presence *p = a->p;
	if (res->err != RH_OK) {
		http_reply_header(a->req, "Retry-After", "1");
		http_reply_problem(a->req, PROBLEM_DB_UNAVAILABLE, NULL, "cannot load the driver now");
	} else if (db_rows(res) == 0 || db_get(res, 0, 3)[0] == 't') {
		http_reply_problem(a->req, PROBLEM_FORBIDDEN, NULL, "no such driver, or disabled");
	} else {
		struct driver_rec *r = rec_find(p, &a->id);
		if (!r)
			r = rec_new(p, &a->id);
		if (!r) {
			http_reply_problem(a->req, PROBLEM_OVERLOADED, NULL, "too many drivers online");
		} else {
			rec_load_row(p, r, res);
			http_location_apply(p, a->req, r, a->body);
		}
	}
	cJSON_Delete(a->body);
	rh_free(a);
}

static void http_location(struct http_req *req, void *ctx)
{
	struct presence *p = ctx;
	struct auth_principal who;
	if (!auth_require_or_reply(p->srv->auth, req, ROLE_DRIVER, &who))
		return;
	cJSON *body = http_req_json_valid_or_reply(req, http_location_fields);
	if (!body)
		return;
	struct uuid id;
	uuid_parse(who.id, &id);
	struct driver_rec *r = rec_find(p, &id);
	if (r) {
		http_location_apply(p, req, r, body);
		cJSON_Delete(body);
		return;
	}
	struct admit_ctx *a = RH_NEW(struct admit_ctx);
	a->p = p;
	a->req = req;
	a->id = id;
	a->body = body;
	const char *params[] = { who.id };
	db_query(p->srv->db, &st_driver_load, params, http_location_loaded, a);
}

static const struct http_route presence_routes[] = {
	{ HTTP_GET, "/v1/drivers/nearby", nearby, 0 },
	{ HTTP_PUT, "/v1/drivers/me/location", http_location, 0 },
	{ 0 },
};

static const struct gw_message_type location_type = {
	"driver.location.updated", ROLE_DRIVER, presence_location_fields, on_location, NULL, on_location_scanned,
};
static const struct gw_message_type status_type = {
	"driver.status.changed", ROLE_DRIVER, status_fields, on_status, NULL,
};

/* ------------------------------------------------------------ setup */

static void presence_collect(void *arg)
{
	struct presence *p = arg;
	metric_set(p->m_grid, (double)geo_grid_count(p->grid));
	metric_set(p->m_cells, (double)geo_grid_cell_count(p->grid));
}

struct presence *presence_new(struct server *srv)
{
	static const char *const reason_label[] = { "reason", NULL };
	struct presence *p = RH_NEW(struct presence);
	struct metrics *m = srv->metrics;
	p->srv = srv;
	p->cfg = &srv->cfg.presence;
	struct geo_grid_config gc = { .bits = (unsigned)p->cfg->grid_bits, .max_slots = (uint32_t)p->cfg->max_drivers,
				      .initial_slots = 1024 };
	if (geo_grid_new(&gc, &p->grid) != RH_OK) {
		log_error(NULL, "presence: cannot create the grid");
		abort();
	}
	randombytes_buf(p->fuzz_key, sizeof p->fuzz_key);
	p->gps_cfg = (struct gps_check_cfg){ .max_speed_kmh = p->cfg->gps_max_speed_kmh,
					     .max_jump_m = (double)p->cfg->gps_max_jump_m,
					     .recover_fixes = (int)p->cfg->gps_recover_fixes };
	p->suspect = presence_suspect_new(srv);
	p->history = history_new(srv);
	p->sweep = event_new(srv->base, -1, EV_PERSIST, sweep_cb, p);
	struct timeval tv = { SWEEP_MS / 1000, (SWEEP_MS % 1000) * 1000 };
	event_add(p->sweep, &tv);

	p->m_pings = metric_cell(metrics_counter(m, "ridehail_presence_pings_total", "Location updates applied to the grid.", NULL), NULL);
	p->f_ignored = metrics_counter(m, "ridehail_presence_pings_ignored_total", "Valid location updates not applied, by reason (out_of_order, implausible).", reason_label);
	p->m_throttled = metric_cell(metrics_counter(m, "ridehail_presence_pings_throttled_total", "Location updates dropped for exceeding presence.max_pings_per_s.", NULL), NULL);
	p->m_connected = metric_cell(metrics_gauge(m, "ridehail_presence_connected_drivers", "Drivers with an open WebSocket session.", NULL), NULL);
	p->m_grid = metric_cell(metrics_gauge(m, "ridehail_presence_grid_drivers", "Drivers in the grid (with a recent position).", NULL), NULL);
	p->m_cells = metric_cell(metrics_gauge(m, "ridehail_presence_grid_cells", "Non-empty grid cells.", NULL), NULL);
	p->m_records = metric_cell(metrics_gauge(m, "ridehail_presence_driver_records", "Driver records held in memory.", NULL), NULL);
	p->m_evictions = metric_cell(metrics_counter(m, "ridehail_presence_stale_evictions_total", "Drivers dropped from the grid after presence.evict_after without a location.", NULL), NULL);
	metrics_on_collect(m, presence_collect, p);

	db_register(srv->db, &st_driver_load);
	db_register(srv->db, &st_driver_status);
	db_register(srv->db, &st_driver_evict);
	p->location_type = location_type;
	p->location_type.ctx = p;
	p->status_type = status_type;
	p->status_type.ctx = p;
	gateway_register(srv->gateway, &p->location_type);
	gateway_register(srv->gateway, &p->status_type);
	struct gw_role_hooks hooks = { .admit = driver_admit, .opened = driver_opened, .closed = driver_closed, .ctx = p };
	gateway_set_role_hooks(srv->gateway, ROLE_DRIVER, &hooks);
	http_server_add_routes(srv->http, presence_routes, p);
	return p;
}

void presence_stop(struct presence *p)
{
	if (p)
		history_flush_now(p->history);
}

void presence_free(struct presence *p)
{
	if (!p)
		return;
	event_free(p->sweep);
	history_free(p->history);
	presence_suspect_free(p->suspect);
	geo_grid_free(p->grid);
	for (uint32_t i = 0; i < p->cap >> REC_CHUNK_BITS; i++)
		rh_free(p->chunks[i]);
	rh_free(p->chunks);
	rh_free(p->free_slots);
	rh_free(p->index);
	rh_free(p);
}
