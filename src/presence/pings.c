/* Locations: driver.location.updated over the WebSocket (the hot path: most
 * messages the daemon reads), the per-driver rate limit, and the fix itself,
 * shared with the HTTP fallback (api.c). A fix moves the driver in the grid,
 * goes to the location hook when they are on a trip, and into the history
 * queue; nothing on this path waits for the database. */
#include <stdio.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "geo/grid.h"
#include "net/ws.h"
#include "net/ws_frame.h"
#include "presence/suspect.h"
#include "presence_internal.h"

static const char *const presence_sources[] = { "gps", "network", "manual", NULL };

/* Indices into the tables, for the scanned values (jv_scan). */
enum { PT_LAT, PT_LON };

static const struct jv_field presence_point_fields[] = {
	[PT_LAT] = { "lat", JV_NUMBER, JV_REQUIRED, -90, 90 },
	[PT_LON] = { "lon", JV_NUMBER, JV_REQUIRED, -180, 180 },
	{ 0 },
};

/* Version 2 spells the longitude as the REST API does. */
static const struct jv_field presence_point_fields_v2[] = {
	[PT_LAT] = { "lat", JV_NUMBER, JV_REQUIRED, -90, 90 },
	[PT_LON] = { "lng", JV_NUMBER, JV_REQUIRED, -180, 180 },
	{ 0 },
};

enum { LOC_DRIVER_ID, LOC_LOCATION, LOC_SPEED, LOC_HEADING, LOC_ACCURACY, LOC_SOURCE };

const struct jv_field presence_location_fields[] = {
	[LOC_DRIVER_ID] = { "driver_id", JV_UUID, JV_REQUIRED },
	[LOC_LOCATION] = { "location", JV_OBJECT, JV_REQUIRED, 0, 0, NULL, presence_point_fields },
	[LOC_SPEED] = { "speed_kmh", JV_NUMBER, 0, 0, 400 },
	[LOC_HEADING] = { "heading_deg", JV_NUMBER, 0, 0, 360 },
	[LOC_ACCURACY] = { "accuracy_m", JV_NUMBER, 0, 0, 100000 },
	[LOC_SOURCE] = { "source", JV_STRING, 0, 0, 0, presence_sources },
	{ 0 },
};

static const struct jv_field presence_location_fields_v2[] = {
	[LOC_DRIVER_ID] = { "driver_id", JV_UUID, JV_REQUIRED },
	[LOC_LOCATION] = { "location", JV_OBJECT, JV_REQUIRED, 0, 0, NULL, presence_point_fields_v2 },
	[LOC_SPEED] = { "speed_kmh", JV_NUMBER, 0, 0, 400 },
	[LOC_HEADING] = { "heading_deg", JV_NUMBER, 0, 0, 360 },
	[LOC_ACCURACY] = { "accuracy_m", JV_NUMBER, 0, 0, 100000 },
	[LOC_SOURCE] = { "source", JV_STRING, 0, 0, 0, presence_sources },
	{ 0 },
};

/* Over HTTP (PUT /v1/drivers/me/location) a point takes either spelling of
 * the longitude: lng as everywhere in the REST API, lon as before. */
static const struct jv_field presence_http_point_fields[] = {
	{ "lat", JV_NUMBER, JV_REQUIRED, -90, 90 },
	{ "lng", JV_NUMBER, 0, -180, 180 },
	{ "lon", JV_NUMBER, 0, -180, 180 },
	{ 0 },
};

/* The same, over HTTP: the driver is the token's. */
const struct jv_field presence_http_location_fields[] = {
	{ "location", JV_OBJECT, JV_REQUIRED, 0, 0, NULL, presence_http_point_fields },
	{ "speed_kmh", JV_NUMBER, 0, 0, 400 },
	{ "heading_deg", JV_NUMBER, 0, 0, 360 },
	{ "accuracy_m", JV_NUMBER, 0, 0, 100000 },
	{ "source", JV_STRING, 0, 0, 0, presence_sources },
	{ "timestamp", JV_DATETIME, JV_REQUIRED },
	{ 0 },
};

bool presence_ping_allowed(struct presence *p, struct driver_rec *r, int64_t now)
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

static void presence_count_ignored(struct presence *p, const char *reason)
{
	const char *lv[] = { reason };
	metric_inc(metric_cell(p->f_ignored, lv));
}

/* Moves the driver in the grid (inserting them on their first fix). */
static rh_err presence_grid_place(struct presence *p, struct driver_rec *r, double lat, double lon, int64_t now)
{
	if (r->in_grid)
		return geo_grid_move(p->grid, r->slot, lat, lon, now);
	struct geo_grid_driver d = { .lat = lat, .lon = lon, .ping_ms = now,
				     .status = r->connected || r->http_mode ? (uint8_t)r->status : DRIVER_UNREACHABLE,
				     .vehicle = (uint16_t)(1u << r->vehicle) };
	rh_err e = geo_grid_insert(p->grid, r->slot, &d);
	r->in_grid = e == RH_OK;
	return e;
}

static void presence_history_push(struct presence *p, const struct driver_rec *r, const struct presence_fix *fx,
				  int64_t wall)
{
	struct history_point hp = {
		.recv_ms = wall, .device_ms = fx->device_ms, .lat = r->lat, .lon = r->lon, .heading = r->heading,
		.speed = r->speed, .accuracy = r->accuracy, .source = r->source, .has_trip = r->has_trip,
	};
	memcpy(hp.driver, r->id.b, 16);
	memcpy(hp.trip, r->trip.b, 16);
	history_push(p->history, &hp);
}

/* GPS sanity (presence/gps_check.h): a fix implying an impossible speed or
 * jump is not believed; the driver leaves the grid (search and offers)
 * until its fixes are consistent again, and an operator hears of it
 * (presence/suspect.h). */
static bool presence_location_believed(struct presence *p, struct driver_rec *r, const struct presence_fix *fx,
				       int64_t wall)
{
	struct gps_fix g = { fx->lat, fx->lon, fx->accuracy, fx->device_ms }, from = r->gps.last;
	struct gps_jump jump;
	enum gps_verdict v = gps_check_fix(&p->gps_cfg, &r->gps, &g, &jump);
	if (v == GPS_RECOVERED)
		presence_suspect_recovered(p->suspect, &r->id);
	if (v == GPS_OK || v == GPS_RECOVERED)
		return true;
	presence_count_ignored(p, "implausible");
	if (v == GPS_SUSPECT) {
		if (r->in_grid && geo_grid_remove(p->grid, r->slot) == RH_OK)
			r->in_grid = false;
		presence_suspect_report(p->suspect, &r->id, &from, &g, &jump, wall, &r->suspect_event_ms);
	}
	return false;
}

static enum presence_fix_result presence_rec_fix(struct presence *p, struct driver_rec *r, const struct presence_fix *fx,
						 int64_t now, int64_t wall, const char **reason, const char **field)
{
	*field = "timestamp";
	if (fx->device_ms > wall + p->cfg->max_clock_skew_ms) {
		*reason = "timestamp_in_future";
		return PRESENCE_FIX_REJECTED;
	}
	if (fx->device_ms < wall - p->cfg->max_ping_age_ms) {
		*reason = "stale";
		return PRESENCE_FIX_REJECTED;
	}
	if (fx->device_ms < r->last_device_ms) {
		presence_count_ignored(p, "out_of_order"); /* an older fix arriving late: keep the newer */
		return PRESENCE_FIX_IGNORED;
	}
	if (!presence_location_believed(p, r, fx, wall))
		return PRESENCE_FIX_IGNORED;
	if (presence_grid_place(p, r, fx->lat, fx->lon, now) != RH_OK) {
		*reason = "validation_failed";
		*field = "location";
		return PRESENCE_FIX_REJECTED;
	}
	r->lat = fx->lat;
	r->lon = fx->lon;
	r->heading = (float)fx->heading;
	r->speed = (float)fx->speed;
	r->accuracy = (float)fx->accuracy;
	const char *src = fx->source;
	r->source = !src || strcmp(src, "gps") == 0 ? SOURCE_GPS : strcmp(src, "network") == 0 ? SOURCE_NETWORK : SOURCE_MANUAL;
	r->last_ping_ms = now;
	r->last_device_ms = fx->device_ms;
	metric_inc(p->m_pings);
	if (r->has_trip && p->hooks.location)
		p->hooks.location(p->hooks.ctx, &r->id, &r->trip, r->lat, r->lon, r->speed, r->accuracy, fx->device_ms, now);
	if (p->history)
		presence_history_push(p, r, fx, wall);
	return PRESENCE_FIX_OK;
}

enum presence_fix_result presence_fix_apply(struct presence *p, const struct uuid *driver, const struct presence_fix *fx,
					    int64_t now, int64_t wall, const char **reason, const char **field)
{
	struct driver_rec *r = presence_rec_find(p, driver);
	if (!r) {
		*reason = "not_found";
		*field = "driver_id";
		return PRESENCE_FIX_REJECTED;
	}
	return presence_rec_fix(p, r, fx, now, wall, reason, field);
}

void presence_fix_reject(struct gw_reject *rej, const char *reason, const char *field, int64_t device_ms, int64_t wall)
{
	if (strcmp(reason, "stale") == 0)
		gw_reject_set(rej, reason, field, "the location is %lld s old", (long long)((wall - device_ms) / 1000));
	else if (strcmp(reason, "timestamp_in_future") == 0)
		gw_reject_set(rej, reason, field, "the location is stamped %lld s in the future",
			      (long long)((device_ms - wall) / 1000));
	else
		gw_reject_set(rej, reason, field, "the grid refused the position");
	if (strcmp(field, "timestamp") != 0) /* the payload's members are named from the envelope */
		snprintf(rej->field, sizeof rej->field, "payload.%s", field);
}

/* Too many pings: throttled (one notice a second), then closed after a run
 * of presence.flood_close_after. */
static void presence_ping_throttled(struct presence *p, struct session *s, struct driver_rec *r, const char *event_id,
				    int64_t now)
{
	metric_inc(p->m_throttled);
	if (now - r->throttled_since_ms >= p->cfg->flood_close_after_ms) {
		log_info(ws_logid(s->ws), "driver %s keeps sending over %.1f pings/s: closing", s->who.id,
			 p->cfg->max_pings_per_s);
		gateway_close(s, WS_CLOSE_POLICY, "too many location updates");
		return;
	}
	if (now - r->last_throttle_notice_ms >= 1000) {
		struct gw_reject rej;
		r->last_throttle_notice_ms = now;
		gw_reject_set(&rej, "rate_limited", NULL, "more than %.1f location updates a second; extra ones are dropped",
			      p->cfg->max_pings_per_s);
		gateway_reject(s, "driver.location.updated", event_id, &rej);
	}
}

static void presence_ping_ack(struct presence *p, struct session *s, struct driver_rec *r, const char *event_id,
			      int64_t now)
{
	r->pings_since_ack++;
	if (now - r->last_ack_ms < p->cfg->ack_interval_ms)
		return;
	cJSON *ack = cJSON_CreateObject();
	cJSON_AddStringToObject(ack, "driver_id", s->who.id);
	cJSON_AddNumberToObject(ack, "count", r->pings_since_ack);
	cJSON_AddStringToObject(ack, "last_event_id", event_id);
	gateway_send(s, "driver.location.acked", ack, event_id);
	r->pings_since_ack = 0;
	r->last_ack_ms = now;
}

/* driver.location.updated, from either form of the message. */
static bool presence_location_update(struct presence *p, struct session *s, const char *driver_id, const char *event_id,
				     const struct presence_fix *fx, struct gw_reject *rej)
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
	if (!presence_ping_allowed(p, r, now)) {
		presence_ping_throttled(p, s, r, event_id, now);
		return true;
	}
	const char *reason, *field;
	if (presence_rec_fix(p, r, fx, now, wall, &reason, &field) == PRESENCE_FIX_REJECTED) {
		presence_fix_reject(rej, reason, field, fx->device_ms, wall);
		return false;
	}
	if (p->cfg->ack_interval_ms > 0)
		presence_ping_ack(p, s, r, event_id, now);
	return true;
}

static bool presence_on_location(struct session *s, void *ctx, const cJSON *msg, const cJSON *pl, struct gw_reject *rej)
{
	int64_t device_ms = 0;
	rh_parse_rfc3339(jv_str(msg, "timestamp"), &device_ms); /* validated by the envelope */
	const cJSON *loc = cJSON_GetObjectItemCaseSensitive(pl, "location");
	bool v2 = jv_num(msg, "event_version", 1) >= 2;
	struct presence_fix fx = {
		.lat = jv_num(loc, "lat", 0),
		.lon = jv_num(loc, v2 ? "lng" : "lon", 0),
		.heading = jv_num(pl, "heading_deg", -1),
		.speed = jv_num(pl, "speed_kmh", -1),
		.accuracy = jv_num(pl, "accuracy_m", -1),
		.source = jv_str(pl, "source"),
		.device_ms = device_ms,
	};
	return presence_location_update(ctx, s, jv_str(pl, "driver_id"), jv_str(msg, "event_id"), &fx, rej);
}

static double presence_scanned_num(const struct jv_value *v, double def)
{
	return v->present ? v->num : def;
}

static bool presence_on_location_scanned(struct session *s, void *ctx, const struct jv_value *env,
					 const struct jv_value *pl, struct gw_reject *rej)
{
	const struct jv_value *pt = pl[LOC_LOCATION].sub;
	struct presence_fix fx = {
		.lat = pt[PT_LAT].num,
		.lon = pt[PT_LON].num,
		.heading = presence_scanned_num(&pl[LOC_HEADING], -1),
		.speed = presence_scanned_num(&pl[LOC_SPEED], -1),
		.accuracy = presence_scanned_num(&pl[LOC_ACCURACY], -1),
		.source = pl[LOC_SOURCE].present ? pl[LOC_SOURCE].str : NULL,
		.device_ms = env[GW_ENV_TIMESTAMP].ms,
	};
	return presence_location_update(ctx, s, pl[LOC_DRIVER_ID].str, env[GW_ENV_EVENT_ID].str, &fx, rej);
}

static const struct gw_message_type presence_location_type = {
	"driver.location.updated", ROLE_DRIVER, presence_location_fields, presence_on_location, NULL,
	presence_on_location_scanned, presence_location_fields_v2,
};

void presence_pings_init(struct presence *p)
{
	p->location_type = presence_location_type;
	p->location_type.ctx = p;
	gateway_register(p->deps.gateway, &p->location_type);
}
