/* GET /v1/surge (one point), GET /v1/surge/cells (every cell, GeoJSON, for
 * maps), and the surge.updated rows the engine's changes become. */
#include <cjson/cJSON.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/settings.h"
#include "core/strbuf.h"
#include "core/timer.h"
#include "core/uuid.h"
#include "net/http.h"
#include "pricing_internal.h"
#include "store/db.h"

/* Wall-clock ms of a monotonic time (for the API's RFC 3339 times). */
static int64_t pricing_wall_of(const struct pricing *p, int64_t mono)
{
	return rh_wall_ms() + (mono - rh_timers_now(p->deps.timers));
}

/* When the multipliers answered now stop holding: the next recompute (a
 * quote's time with surge off). */
static int64_t pricing_surge_expires(const struct pricing *p)
{
	if (!p->deps.surge->enabled)
		return rh_wall_ms() + p->cfg->quote_ttl_ms;
	return pricing_wall_of(p, surge_next_ms(p->surge));
}

static const char *pricing_demand_level(double ratio)
{
	return ratio < 0.5 ? "low" : ratio < 1 ? "normal" : ratio < 2 ? "high" : "very_high";
}

static const char *pricing_supply_level(uint32_t supply, uint32_t demand)
{
	if (supply == 0)
		return "none";
	return supply < demand ? "low" : supply < 2 * demand ? "normal" : "high";
}

/* ?vehicle_type=, the first configured type when absent; -1 after a 400. */
static int pricing_vehicle_or_reply(struct pricing *p, struct http_req *req)
{
	const char *vt = http_req_query(req, "vehicle_type");
	int vehicle = vt ? tariff_find(p->deps.tariffs, p->deps.ntariffs, vt) : 0;
	if (vehicle < 0)
		http_reply_field_problem(req, PROBLEM_VALIDATION, "vehicle_type", "enum", "unknown vehicle_type \"%.40s\"", vt);
	return vehicle;
}

static void pricing_put_times(struct pricing *p, struct strbuf *sb)
{
	char t[32];
	struct surge_stats st;
	surge_get_stats(p->surge, &st);
	sb_puts(sb, "\"computed_at\":");
	if (st.last_ok_ms) {
		rh_format_rfc3339(pricing_wall_of(p, st.last_ok_ms), t);
		sb_putc(sb, '"');
		sb_puts(sb, t);
		sb_putc(sb, '"');
	} else {
		sb_puts(sb, "null");
	}
	rh_format_rfc3339(pricing_surge_expires(p), t);
	sb_puts(sb, ",\"expires_at\":\"");
	sb_puts(sb, t);
	sb_putc(sb, '"');
}

static void pricing_api_surge(struct http_req *req, void *ctx)
{
	struct pricing *p = ctx;
	double lat, lng;
	if (!http_query_number_or_reply(req, "lat", -90, 90, 0, true, &lat) ||
	    !http_query_number_or_reply(req, "lng", -180, 180, 0, true, &lng))
		return;
	int vehicle = pricing_vehicle_or_reply(p, req);
	if (vehicle < 0)
		return;
	struct surge_point sp;
	pricing_surge_at(p, lat, lng, vehicle, &sp);
	double clat = 0, clng = 0;
	struct geo_hexgrid g;
	if (surge_grid(p->surge, &g))
		geo_hex_centre(&g, sp.cell, &clat, &clng);
	int zone = book_zone_at(p->book, lat, lng);
	struct strbuf sb;
	sb_init(&sb, 4096);
	sb_puts(&sb, "{\"vehicle_type\":\"");
	sb_puts(&sb, p->deps.tariffs[vehicle].name);
	sb_puts(&sb, "\",\"multiplier\":");
	sb_fixed(&sb, sp.multiplier, 2);
	sb_puts(&sb, ",\"enabled\":");
	sb_puts(&sb, sp.enabled ? "true" : "false");
	sb_puts(&sb, ",\"cell\":\"");
	sb_puts(&sb, sp.cell_id);
	sb_puts(&sb, "\",\"cell_centre\":{\"lat\":");
	sb_fixed(&sb, clat, 6);
	sb_puts(&sb, ",\"lng\":");
	sb_fixed(&sb, clng, 6);
	sb_puts(&sb, "},\"demand\":{\"requests\":");
	sb_int(&sb, sp.demand);
	sb_puts(&sb, ",\"level\":\"");
	sb_puts(&sb, pricing_demand_level(sp.ratio));
	sb_puts(&sb, "\"},\"supply\":{\"drivers\":");
	sb_int(&sb, sp.supply);
	sb_puts(&sb, ",\"level\":\"");
	sb_puts(&sb, pricing_supply_level(sp.supply, sp.demand));
	sb_puts(&sb, "\"},\"ratio\":");
	sb_fixed(&sb, sp.ratio, 3);
	sb_puts(&sb, ",\"zone\":");
	if (zone >= 0) {
		sb_putc(&sb, '"');
		sb_puts(&sb, p->book->zones[zone].name); /* [a-z0-9_-] (sql: zones.name) */
		sb_putc(&sb, '"');
	} else {
		sb_puts(&sb, "null");
	}
	sb_puts(&sb, ",\"override\":");
	if (sp.override) {
		sb_putc(&sb, '"');
		sb_puts(&sb, surge_override_name(sp.override));
		sb_putc(&sb, '"');
	} else {
		sb_puts(&sb, "null");
	}
	sb_puts(&sb, ",\"in_service_area\":");
	sb_puts(&sb, book_in_service_area(p->book, lat, lng) ? "true" : "false");
	sb_putc(&sb, ',');
	pricing_put_times(p, &sb);
	sb_putc(&sb, '}');
	http_reply_header(req, "Cache-Control", "no-store");
	http_reply(req, 200, "application/json", sb.buf, sb.len);
	sb_fini(&sb);
}

struct pricing_cells {
	struct strbuf *sb;
	const struct geo_hexgrid *g;
	int vehicle;
	size_t n;
};

static void pricing_cell_feature(void *ctx, geo_hex cell, const double *m, const uint32_t *demand,
				 const uint32_t *supply)
{
	struct pricing_cells *c = ctx;
	struct strbuf *sb = c->sb;
	char id[GEO_HEX_ID_MAX];
	geo_hex_format(cell, id);
	double lat[6], lon[6];
	geo_hex_corners(c->g, cell, lat, lon);
	sb_puts(sb, c->n++ ? ",{" : "{");
	sb_puts(sb, "\"type\":\"Feature\",\"id\":\"");
	sb_puts(sb, id);
	sb_puts(sb, "\",\"geometry\":{\"type\":\"Polygon\",\"coordinates\":[[");
	for (int i = 0; i <= 6; i++) {
		sb_puts(sb, i ? ",[" : "[");
		sb_fixed(sb, lon[i % 6], 6);
		sb_putc(sb, ',');
		sb_fixed(sb, lat[i % 6], 6);
		sb_putc(sb, ']');
	}
	sb_puts(sb, "]]},\"properties\":{\"cell\":\"");
	sb_puts(sb, id);
	sb_puts(sb, "\",\"multiplier\":");
	sb_fixed(sb, m[c->vehicle], 2);
	sb_puts(sb, ",\"demand\":");
	sb_int(sb, demand[c->vehicle]);
	sb_puts(sb, ",\"supply\":");
	sb_int(sb, supply[c->vehicle]);
	sb_puts(sb, "}}");
}

static void pricing_api_surge_cells(struct http_req *req, void *ctx)
{
	struct pricing *p = ctx;
	int vehicle = pricing_vehicle_or_reply(p, req);
	if (vehicle < 0)
		return;
	struct strbuf sb;
	sb_init(&sb, (size_t)64 << 20);
	sb_puts(&sb, "{\"type\":\"FeatureCollection\",\"vehicle_type\":\"");
	sb_puts(&sb, p->deps.tariffs[vehicle].name);
	sb_puts(&sb, "\",");
	pricing_put_times(p, &sb);
	sb_puts(&sb, ",\"features\":[");
	struct geo_hexgrid g;
	struct pricing_cells c = { .sb = &sb, .g = &g, .vehicle = vehicle };
	if (surge_grid(p->surge, &g))
		surge_each_cell(p->surge, pricing_cell_feature, &c);
	sb_puts(&sb, "]}");
	if (sb.overflow) {
		sb_fini(&sb);
		http_reply_err(req, RH_ENOMEM, "list every cell", "over 64 MiB of GeoJSON");
		return;
	}
	http_reply_header(req, "Cache-Control", "no-store");
	http_reply(req, 200, "application/geo+json", sb.buf, sb.len);
	sb_fini(&sb);
}

struct pricing_map_cells {
	const struct geo_hexgrid *g;
	int nvehicles;
	pricing_surge_cell_fn fn;
	void *ctx;
	size_t n;
};

static void pricing_map_cell(void *ctx, geo_hex cell, const double *m, const uint32_t *demand, const uint32_t *supply)
{
	struct pricing_map_cells *c = ctx;
	(void)demand, (void)supply;
	double top = 1;
	for (int v = 0; v < c->nvehicles; v++)
		top = m[v] > top ? m[v] : top;
	if (top <= 1.0)
		return;
	double lat[6], lon[6];
	geo_hex_corners(c->g, cell, lat, lon);
	c->fn(c->ctx, lat, lon, top);
	c->n++;
}

size_t pricing_surge_cells(struct pricing *p, pricing_surge_cell_fn fn, void *ctx)
{
	struct geo_hexgrid g;
	struct pricing_map_cells c = { .g = &g, .nvehicles = p->deps.ntariffs, .fn = fn, .ctx = ctx };
	if (p->surge && surge_grid(p->surge, &g))
		surge_each_cell(p->surge, pricing_map_cell, &c);
	return c.n;
}

int64_t pricing_surge_version(const struct pricing *p)
{
	struct surge_stats st;
	if (!p->surge)
		return 0;
	surge_get_stats(p->surge, &st);
	return st.recomputes;
}

/* ------------------------------------------------------------ surge.updated */

static struct db_stmt pricing_st_surge_events = {
	"pricing_surge_events",
	"INSERT INTO outbox (event_type, producer, correlation_id, aggregate_id, aggregate_seq, payload) "
	"SELECT 'surge.updated', 'ridehaild', (e->>'a')::uuid, (e->>'a')::uuid, "
	"COALESCE((SELECT max(o.aggregate_seq) FROM outbox o WHERE o.aggregate_id = (e->>'a')::uuid), 0) + 1, e->'p' "
	"FROM jsonb_array_elements($1::jsonb) e",
	1, 0
};

/* A cell's events are one aggregate: the same id for the same cell and
 * vehicle type under the same projection (a name-based UUID, version 8). */
static void pricing_cell_aggregate(const struct geo_hexgrid *g, geo_hex cell, const char *vehicle, struct uuid *out)
{
	char name[128];
	char id[GEO_HEX_ID_MAX];
	geo_hex_format(cell, id);
	int n = snprintf(name, sizeof name, "surge|%.4f|%.4f|%s|%s", g->lat0, g->size_m, id, vehicle);
	unsigned char h[16];
	crypto_generichash(h, sizeof h, (const unsigned char *)name, (unsigned long long)n, NULL, 0);
	h[6] = (unsigned char)((h[6] & 0x0f) | 0x80);
	h[8] = (unsigned char)((h[8] & 0x3f) | 0x80);
	memcpy(out->b, h, 16);
}

static void pricing_surge_events_done(void *arg, const struct db_result *res)
{
	if (res->err != RH_OK)
		log_warn(NULL, "surge: surge.updated rows not written (%s)", res->message);
}

void pricing_surge_changed(void *ctx, const struct surge_change *c, size_t n, int64_t now)
{
	struct pricing *p = ctx;
	struct geo_hexgrid g;
	if (!p->deps.db || !surge_grid(p->surge, &g))
		return;
	char computed[32], expires[32];
	rh_format_rfc3339(pricing_wall_of(p, now), computed);
	rh_format_rfc3339(pricing_wall_of(p, now + p->deps.surge->interval_ms), expires);
	cJSON *all = cJSON_CreateArray();
	for (size_t i = 0; i < n; i++) {
		struct uuid agg;
		char aid[37], cell[GEO_HEX_ID_MAX];
		const char *vehicle = p->deps.tariffs[c[i].vehicle].name;
		pricing_cell_aggregate(&g, c[i].cell, vehicle, &agg);
		uuid_format(&agg, aid);
		geo_hex_format(c[i].cell, cell);
		cJSON *e = cJSON_CreateObject();
		cJSON_AddStringToObject(e, "a", aid);
		cJSON *pl = cJSON_AddObjectToObject(e, "p");
		cJSON_AddStringToObject(pl, "cell", cell);
		cJSON_AddStringToObject(pl, "vehicle_type", vehicle);
		cJSON_AddNumberToObject(pl, "multiplier", c[i].multiplier);
		cJSON_AddNumberToObject(pl, "previous_multiplier", c[i].previous);
		cJSON_AddNumberToObject(pl, "demand", c[i].demand);
		cJSON_AddNumberToObject(pl, "supply", c[i].supply);
		cJSON *ctr = cJSON_AddObjectToObject(pl, "centre");
		cJSON_AddNumberToObject(ctr, "lat", round(c[i].lat * 1e7) / 1e7);
		cJSON_AddNumberToObject(ctr, "lon", round(c[i].lon * 1e7) / 1e7);
		cJSON_AddStringToObject(pl, "computed_at", computed);
		cJSON_AddStringToObject(pl, "expires_at", expires);
		cJSON_AddItemToArray(all, e);
	}
	char *json = cJSON_PrintUnformatted(all);
	cJSON_Delete(all);
	const char *params[] = { json };
	db_query(p->deps.db, &pricing_st_surge_events, params, pricing_surge_events_done, p);
	cJSON_free(json);
}

static const struct http_route pricing_surge_routes[] = {
	{ HTTP_GET, "/v1/surge", pricing_api_surge, 0 },
	{ HTTP_GET, "/v1/surge/cells", pricing_api_surge_cells, 0 },
	{ 0 },
};

void pricing_surge_api_init(struct pricing *p)
{
	if (p->deps.db)
		db_register(p->deps.db, &pricing_st_surge_events);
	if (p->deps.http)
		http_server_add_routes(p->deps.http, pricing_surge_routes, p);
}
