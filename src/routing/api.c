/* GET /v1/route: the road route between two points as a GeoJSON Feature
 * (RFC 7946), answered on the event loop from the in-memory graph. */
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/settings.h"
#include "core/strbuf.h"
#include "net/http.h"
#include "routing/routing.h"

struct routing_api {
	struct routing *routing;
	const struct routing_cfg *cfg;
	struct metric_cell *m_ok, *m_off_map, *m_no_route, *m_invalid;
	struct metric_family *f_latency;
	struct metric_cell *m_latency;
	/* GET /v1/map/roads: made at the first request, kept (the map does not
	 * change while the daemon runs) */
	char *roads;
	size_t roads_len;
	char roads_etag[40];
};

/* The roads' simplification: a drawing's, a few metres off the roads at most. */
#define ROUTING_ROADS_TOLERANCE_M 3.0

static bool routing_api_coord(struct http_req *req, const char *name, double lim, double *out)
{
	return http_query_number_or_reply(req, name, -lim, lim, 0, true, out);
}

static void routing_api_reply_geojson(struct http_req *req, const struct route_result *res)
{
	struct strbuf sb;
	sb_init(&sb, 64u << 20);
	sb_puts(&sb, "{\"type\":\"Feature\",\"geometry\":{\"type\":\"LineString\",\"coordinates\":[");
	for (size_t i = 0; i < res->npoints; i++) {
		sb_puts(&sb, i ? ",[" : "[");
		sb_fixed(&sb, res->coords[2 * i], 7);
		sb_putc(&sb, ',');
		sb_fixed(&sb, res->coords[2 * i + 1], 7);
		sb_putc(&sb, ']');
	}
	sb_puts(&sb, "]},\"properties\":{\"distance_m\":");
	sb_fixed(&sb, res->distance_m, 1);
	sb_puts(&sb, ",\"duration_s\":");
	sb_fixed(&sb, res->duration_s, 1);
	if (res->has_range) {
		sb_puts(&sb, ",\"duration_low_s\":");
		sb_fixed(&sb, res->duration_low_s, 1);
		sb_puts(&sb, ",\"duration_high_s\":");
		sb_fixed(&sb, res->duration_high_s, 1);
	}
	sb_puts(&sb, ",\"from_snap_m\":");
	sb_fixed(&sb, res->from_snap_m, 1);
	sb_puts(&sb, ",\"to_snap_m\":");
	sb_fixed(&sb, res->to_snap_m, 1);
	sb_puts(&sb, "}}");
	http_reply(req, 200, "application/geo+json", sb.buf, sb.len);
	sb_fini(&sb);
}

static void routing_api_route(struct http_req *req, void *ctx)
{
	struct routing_api *a = ctx;
	struct routing *r = a->routing;
	double lat1, lng1, lat2, lng2;
	if (!routing_loaded(r)) {
		http_reply_problem(req, PROBLEM_UNAVAILABLE, NULL, "no road map is loaded (routing.map is empty)");
		return;
	}
	if (!routing_api_coord(req, "from_lat", 90, &lat1) || !routing_api_coord(req, "from_lng", 180, &lng1) ||
	    !routing_api_coord(req, "to_lat", 90, &lat2) || !routing_api_coord(req, "to_lng", 180, &lng2)) {
		metric_inc(a->m_invalid);
		return;
	}
	int64_t t0 = rh_mono_ns();
	struct route_result res;
	rh_err e = routing_route_at(r, lat1, lng1, lat2, lng2, ROUTE_FAST, true, rh_wall_ms() / 1000, &res);
	metric_observe(a->f_latency, a->m_latency, (double)(rh_mono_ns() - t0) / 1e9);
	if (e == RH_EINVAL) {
		metric_inc(a->m_off_map);
		bool from = res.bad_point == ROUTE_POINT_FROM;
		cJSON *ext = cJSON_CreateObject();
		cJSON_AddStringToObject(ext, "point", from ? "from" : "to");
		cJSON_AddNumberToObject(ext, "max_snap_m", (double)a->cfg->snap_max_distance_m);
		if (res.bad_point_disconnected) {
			cJSON_AddStringToObject(ext, "reason", "disconnected");
			http_reply_problem(req, PROBLEM_POINT_OFF_MAP, ext,
					   "the %s point (%.6f, %.6f) is near a road that is not connected to the rest "
					   "of the map (the import keeps the roads every other road can reach); no "
					   "connected road within %lld m",
					   from ? "from" : "to", from ? lat1 : lat2, from ? lng1 : lng2,
					   (long long)a->cfg->snap_max_distance_m);
			return;
		}
		http_reply_problem(req, PROBLEM_POINT_OFF_MAP, ext,
				   "the %s point (%.6f, %.6f) is outside the map or more than %lld m from any road",
				   from ? "from" : "to", from ? lat1 : lat2, from ? lng1 : lng2,
				   (long long)a->cfg->snap_max_distance_m);
		return;
	}
	if (e != RH_OK) {
		metric_inc(a->m_no_route);
		http_reply_problem(req, PROBLEM_NO_ROUTE, NULL, "no road route joins the two points");
		return;
	}
	metric_inc(a->m_ok);
	routing_api_reply_geojson(req, &res);
}

/* GET /v1/map/roads: the road graph, simplified, for the operator's console
 * to draw; cached and revalidated by ETag. */
static void routing_api_roads(struct http_req *req, void *ctx)
{
	struct routing_api *a = ctx;
	if (!routing_loaded(a->routing)) {
		http_reply_problem(req, PROBLEM_UNAVAILABLE, NULL, "no road map is loaded (routing.map is empty)");
		return;
	}
	if (!a->roads) {
		struct strbuf sb;
		sb_init(&sb, 256u << 20);
		int64_t t0 = rh_mono_ns();
		struct routing_roads_stats st;
		if (routing_roads_geojson(a->routing, ROUTING_ROADS_TOLERANCE_M, &sb, &st) != RH_OK || sb.overflow) {
			sb_fini(&sb);
			http_reply_err(req, RH_ENOMEM, "draw the road map", NULL);
			return;
		}
		unsigned char h[16];
		crypto_generichash(h, sizeof h, (const unsigned char *)sb.buf, sb.len, NULL, 0);
		char hex[33];
		sodium_bin2hex(hex, sizeof hex, h, sizeof h);
		snprintf(a->roads_etag, sizeof a->roads_etag, "\"%s\"", hex);
		a->roads = sb_take(&sb, &a->roads_len);
		log_info(http_req_logid(req), "routing: road map drawn in %.1f ms: %zu lines over %zu segments, %zu bytes",
			 (double)(rh_mono_ns() - t0) / 1e6, st.lines, st.segments, a->roads_len);
	}
	http_reply_header(req, "ETag", a->roads_etag);
	http_reply_header(req, "Cache-Control", "public, max-age=300");
	const char *inm = http_req_header(req, "if-none-match");
	if (inm && (strstr(inm, a->roads_etag) || strcmp(inm, "*") == 0)) {
		http_reply(req, 304, NULL, NULL, 0);
		return;
	}
	http_reply(req, 200, "application/geo+json", a->roads, a->roads_len);
}

static const struct http_route routing_routes[] = {
	{ HTTP_GET, "/v1/route", routing_api_route, 0 },
	{ HTTP_GET, "/v1/map/roads", routing_api_roads, 0 },
	{ 0 },
};

struct routing_api *routing_api_new(struct http_server *http, struct metrics *m, struct routing *r,
				    const struct routing_cfg *cfg)
{
	static const char *const result_label[] = { "result", NULL };
	static const double bounds[] = { 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2 };
	struct routing_api *a = rh_calloc(1, sizeof *a);
	a->routing = r;
	a->cfg = cfg;
	struct metric_family *q = metrics_counter(m, "ridehail_routing_queries_total",
						  "GET /v1/route requests by result (ok, off_map, no_route, invalid).", result_label);
	a->m_ok = metric_cell(q, (const char *const[]){ "ok" });
	a->m_off_map = metric_cell(q, (const char *const[]){ "off_map" });
	a->m_no_route = metric_cell(q, (const char *const[]){ "no_route" });
	a->m_invalid = metric_cell(q, (const char *const[]){ "invalid" });
	a->f_latency = metrics_histogram(m, "ridehail_routing_query_seconds",
					 "Time to snap both points and find the route (on the event loop).", NULL,
					 bounds, (int)RH_ARRAY_LEN(bounds));
	a->m_latency = metric_cell(a->f_latency, NULL);
	struct routing_stats st;
	routing_get_stats(r, &st);
	metric_set(metric_cell(metrics_gauge(m, "ridehail_routing_graph_nodes", "Nodes of the loaded road graph (0: no map).", NULL), NULL),
		   (double)st.nodes);
	metric_set(metric_cell(metrics_gauge(m, "ridehail_routing_graph_edges", "Directed edges of the loaded road graph.", NULL), NULL),
		   (double)st.edges);
	http_server_add_routes(http, routing_routes, a);
	return a;
}

void routing_api_free(struct routing_api *a)
{
	if (a)
		rh_free(a->roads);
	rh_free(a);
}
