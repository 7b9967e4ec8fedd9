/* The loaded road graph's questions: routes (one, and split at a point),
 * many-to-one ETAs, the turn restrictions kept, the profile's timings by
 * hour of the week. Pure computation: no server, no libevent. */
#include "graph.h"

#include <errno.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/settings.h"
#include "graph_internal.h"

/* Hour of the week (Monday 00:00 = 0) at unix time `when` in the profile's zone. */
static int graph_hour_of_week(const struct routing *r, int64_t when)
{
	int32_t off = 0;
	size_t lo = 0, hi = r->ntz;
	while (lo < hi) { /* the last switch at or before when */
		size_t mid = lo + (hi - lo) / 2;
		if (r->tz[mid].from <= when)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo > 0)
		off = r->tz[lo - 1].offset;
	else if (r->ntz)
		off = r->tz[0].offset;
	int64_t local = when + off;
	int64_t days = local >= 0 ? local / 86400 : (local - 86399) / 86400;
	int64_t sec = local - days * 86400;
	int dow = (int)(((days + 3) % 7 + 7) % 7); /* 1970-01-01 was a Thursday */
	return dow * 24 + (int)(sec / 3600);
}

/* A route's duration, and its range, from its time along the edges (under
 * the profile's class factors) at hour `when`; without a profile the time
 * along the edges and no range. */
void graph_timing_how(const struct routing *r, double edge_s, int how, double *dur, double *lo, double *hi)
{
	if (!r->has_profile || how < 0 || how >= RMAP_HOURS) {
		*dur = *lo = *hi = edge_s;
		return;
	}
	double base = edge_s > 0 ? edge_s + r->prof.overhead_s : 0;
	*dur = base * r->prof.hour_factor[how];
	*lo = *dur * r->prof.range_lo;
	*hi = *dur * r->prof.range_hi;
}

static void graph_timing(const struct routing *r, double edge_s, int64_t when, double *dur, double *lo, double *hi)
{
	graph_timing_how(r, edge_s, r->has_profile ? graph_hour_of_week(r, when) : -1, dur, lo, hi);
}

/* The offsets of the profile's zone for the years a daemon may run in,
 * read once through the C library with TZ pointed at the zone. */
void graph_tz_init(struct routing *r)
{
	rh_free(r->tz);
	r->tz = NULL;
	r->ntz = 0;
	const char *zone = r->prof.tz[0] ? r->prof.tz : "UTC";
	const char *old = getenv("TZ");
	char *saved = old ? rh_strdup(old) : NULL;
	setenv("TZ", zone, 1);
	tzset();
	size_t cap = 0;
	int32_t last = INT32_MIN;
	const int64_t t0 = 946684800, t1 = 2524608000; /* 2000 .. 2050 */
	for (int64_t t = t0; t < t1; t += 86400) {
		struct tm tm;
		time_t tt = (time_t)t;
		localtime_r(&tt, &tm);
		int32_t off = (int32_t)tm.tm_gmtoff;
		if (off == last)
			continue;
		int64_t at = t;
		if (last != INT32_MIN) /* the hour it changed, within the day before */
			for (at = t - 86400 + 3600; at < t; at += 3600) {
				tt = (time_t)at;
				localtime_r(&tt, &tm);
				if ((int32_t)tm.tm_gmtoff == off)
					break;
			}
		if (r->ntz == cap) {
			cap = cap ? cap * 2 : 64;
			r->tz = rh_realloc(r->tz, cap * sizeof *r->tz);
		}
		r->tz[r->ntz++] = (struct tz_switch){ last == INT32_MIN ? INT64_MIN : at, off };
		last = off;
	}
	if (saved)
		setenv("TZ", saved, 1);
	else
		unsetenv("TZ");
	tzset();
	rh_free(saved);
}

/* ------------------------------------------------------------ queries */

/* Is the point within snap distance of a road the import dropped (off the
 * kept component)? A scan: only asked when a point failed to snap. */
static bool graph_near_dropped(const struct routing *r, double lat, double lon)
{
	if (!isfinite(lat) || !isfinite(lon))
		return false;
	double px, py, t, lim2 = r->snap_max_m * r->snap_max_m;
	graph_project(r, lat, lon, &px, &py);
	for (uint32_t i = 0; i < r->ndrop; i++) {
		const double *q = r->drop_xy + 4 * (size_t)i;
		if (graph_seg_dist2(px, py, q[0], q[1], q[2], q[3], &t) <= lim2)
			return true;
	}
	return false;
}

static rh_err graph_route(struct routing *r, double from_lat, double from_lon, double to_lat, double to_lon,
		       enum route_method method, const struct graph_walk *w, struct route_result *out, struct meet *bestp)
{
	memset(out, 0, sizeof *out);
	if (!routing_loaded(r))
		return RH_EAGAIN;
	struct snap s, t;
	if (!graph_snap(r, from_lat, from_lon, RMAP_FROM, &s)) {
		out->bad_point = ROUTE_POINT_FROM;
		out->bad_point_disconnected = graph_near_dropped(r, from_lat, from_lon);
		return RH_EINVAL;
	}
	if (!graph_snap(r, to_lat, to_lon, RMAP_TO, &t)) {
		out->bad_point = ROUTE_POINT_TO;
		out->bad_point_disconnected = graph_near_dropped(r, to_lat, to_lon);
		return RH_EINVAL;
	}
	out->from_snap_m = s.dist_m;
	out->to_snap_m = t.dist_m;
	graph_seeds_from(r, &s, &r->ss);
	graph_seeds_to(r, &t, &r->ts);
	struct meet best = { INF, NONE, NONE, 0 };
	uint32_t de = NONE;
	double dfrac = 0;
	uint32_t direct = graph_direct_cost(r, &s, &t, &de, &dfrac);
	if (direct != INF)
		best = (struct meet){ direct, NONE, de, dfrac };
	graph_search_begin(r);
	if (method == ROUTE_DIJKSTRA)
		graph_search_dijkstra(r, &r->ss, &r->ts, &best);
	else if (method == ROUTE_BIDIR)
		graph_search_bidir(r, &r->ss, &r->ts, &best);
	else
		graph_search_ch(r, &r->ss, &r->ts, &best);
	if (best.cost == INF)
		return RH_ENOTFOUND;
	size_t np = 0;
	if (w->geometry)
		graph_geom_point(r, &np, s.lat, s.lon);
	if (best.node == NONE) { /* along one segment */
		out->distance_m = best.frac * r->dist_mm[best.edge] / 1000.0;
		out->duration_s = best.frac * r->time_ms[best.edge] / 1000.0;
		graph_walk_part(r, w, best.edge, best.frac);
	} else {
		uint32_t m = best.node;
		out->distance_m = ((double)r->fw.lab[m].aux_mm + r->bw.lab[m].aux_mm) / 1000.0;
		out->duration_s = ((double)r->fw.lab[m].aux_ms + r->bw.lab[m].aux_ms) / 1000.0;
		if (w->geometry || w->class_ms) {
			if (method == ROUTE_FAST)
				graph_unpack_ch(r, &r->ss, &r->ts, &best, w, &np);
			else
				graph_unpack_plain(r, &r->ss, &r->ts, &best, w, &np);
		}
	}
	if (w->geometry)
		graph_geom_point(r, &np, t.lat, t.lon);
	out->npoints = np;
	out->coords = w->geometry ? r->geom : NULL;
	if (bestp)
		*bestp = best;
	return RH_OK;
}

rh_err routing_route_at(struct routing *r, double from_lat, double from_lon, double to_lat, double to_lon,
			enum route_method method, bool want_geometry, int64_t when, struct route_result *out)
{
	struct graph_walk w = { want_geometry, NULL };
	rh_err e = graph_route(r, from_lat, from_lon, to_lat, to_lon, method, &w, out, NULL);
	if (e == RH_OK) {
		out->edges_s = out->duration_s;
		graph_timing(r, out->edges_s, when, &out->duration_s, &out->duration_low_s, &out->duration_high_s);
		out->has_range = r->has_profile;
	}
	return e;
}

rh_err routing_route_method(struct routing *r, double from_lat, double from_lon, double to_lat, double to_lon,
			    enum route_method method, bool want_geometry, struct route_result *out)
{
	return routing_route_at(r, from_lat, from_lon, to_lat, to_lon, method, want_geometry, (int64_t)time(NULL), out);
}

rh_err routing_route(struct routing *r, double from_lat, double from_lon, double to_lat, double to_lon,
		     bool want_geometry, struct route_result *out)
{
	return routing_route_method(r, from_lat, from_lon, to_lat, to_lon, ROUTE_FAST, want_geometry, out);
}

rh_err graph_route_split(struct routing *r, double from_lat, double from_lon, double to_lat, double to_lon,
		      double class_s[RMAP_CLASSES], double *distance_m)
{
	double ms[RMAP_CLASSES] = { 0 };
	struct graph_walk w = { false, ms };
	struct route_result res;
	rh_err e = graph_route(r, from_lat, from_lon, to_lat, to_lon, ROUTE_FAST, &w, &res, NULL);
	for (int c = 0; c < RMAP_CLASSES; c++)
		class_s[c] = ms[c] / 1000.0;
	*distance_m = res.distance_m;
	return e;
}

void graph_eta_fill(const struct routing *r, struct routing_eta *o, double ms, double mm, int64_t when)
{
	o->reachable = true;
	o->distance_m = mm / 1000.0;
	o->edges_s = ms / 1000.0;
	graph_timing(r, o->edges_s, when, &o->duration_s, &o->duration_low_s, &o->duration_high_s);
}

/* One upward search from the target, complete (its space is small), then
 * per source an upward search that stops once it cannot beat what it met:
 * the target's half is shared by all k sources. */
rh_err routing_eta_many_to_one_at(struct routing *r, const double *src_lat, const double *src_lon, size_t k,
				  double to_lat, double to_lon, int64_t when, struct routing_eta *out)
{
	if (!routing_loaded(r))
		return RH_EAGAIN;
	struct snap t;
	if (!graph_snap(r, to_lat, to_lon, RMAP_TO, &t))
		return RH_EINVAL;
	graph_seeds_to(r, &t, &r->ts);
	struct search *f = &r->fw, *b = &r->bw;
	graph_search_reset(r, b);
	graph_ch_seed(r, b, &r->ts);
	struct meet none = { INF, NONE, NONE, 0 };
	while (graph_ch_step(r, b, NULL, false, &none))
		;
	for (size_t i = 0; i < k; i++) {
		struct snap s;
		memset(&out[i], 0, sizeof out[i]);
		if (!graph_snap(r, src_lat[i], src_lon[i], RMAP_FROM, &s))
			continue;
		graph_seeds_from(r, &s, &r->ss);
		struct meet best = { INF, NONE, NONE, 0 };
		best.cost = graph_direct_cost(r, &s, &t, &best.edge, &best.frac);
		graph_search_reset(r, f);
		graph_ch_seed(r, f, &r->ss);
		while (graph_ch_step(r, f, b, true, &best))
			;
		if (best.cost == INF)
			continue;
		if (best.node == NONE)
			graph_eta_fill(r, &out[i], best.frac * r->time_ms[best.edge], best.frac * r->dist_mm[best.edge], when);
		else
			graph_eta_fill(r, &out[i], (double)f->lab[best.node].aux_ms + b->lab[best.node].aux_ms,
				    (double)f->lab[best.node].aux_mm + b->lab[best.node].aux_mm, when);
	}
	return RH_OK;
}

rh_err routing_eta_many_to_one(struct routing *r, const double *src_lat, const double *src_lon, size_t k,
			       double to_lat, double to_lon, struct routing_eta *out)
{
	return routing_eta_many_to_one_at(r, src_lat, src_lon, k, to_lat, to_lon, (int64_t)time(NULL), out);
}

/* ------------------------------------------------------------ restrictions */

size_t routing_restriction_count(const struct routing *r)
{
	return routing_loaded(r) ? r->nrestr : 0;
}

bool routing_restriction_get(const struct routing *r, size_t i, struct routing_restriction *out)
{
	memset(out, 0, sizeof *out);
	if (!routing_loaded(r) || i >= r->nrestr)
		return false;
	const struct mapfile_restriction *rs = &r->rs[i];
	out->only = rs->kind == RMAP_ONLY;
	out->osm_id = (long long)((uint64_t)rs->osm_id_hi << 32 | rs->osm_id_lo);
	size_t k = 0;
	uint32_t edges[ROUTING_RESTRICTION_MAX];
	edges[k++] = rs->from;
	for (uint32_t v = 0; v < rs->via_count && k + 1 < ROUTING_RESTRICTION_MAX; v++)
		edges[k++] = r->rvia[rs->via_first + v];
	edges[k++] = rs->to;
	out->npoints = 0;
	out->lat[out->npoints] = r->lat[r->from[edges[0]]];
	out->lon[out->npoints++] = r->lon[r->from[edges[0]]];
	for (size_t j = 0; j < k; j++) {
		out->lat[out->npoints] = r->lat[r->to[edges[j]]];
		out->lon[out->npoints++] = r->lon[r->to[edges[j]]];
	}
	/* the other ways on from the last node (for only_*: what is forbidden) */
	uint32_t v = r->from[rs->to];
	out->nexits = 0;
	for (uint32_t e = r->first_out[v]; e < r->first_out[v + 1] && out->nexits < ROUTING_RESTRICTION_MAX; e++) {
		out->exit_lat[out->nexits] = r->lat[r->to[e]];
		out->exit_lon[out->nexits++] = r->lon[r->to[e]];
	}
	return true;
}

static bool graph_same(const double *g, size_t i, double lat, double lon)
{
	return g[2 * i] == lon && g[2 * i + 1] == lat;
}

/* Does the geometry drive from (a point on) segment p[0]-p[1] through
 * p[1..k-1] onto segment p[k-1]-(elat, elon)? */
static bool graph_geom_drives(const struct route_result *res, const struct routing_restriction *rr, size_t k, double elat,
			   double elon)
{
	const double *g = res->coords;
	size_t n = res->npoints, run = k - 1; /* p[1] .. p[k-1] */
	for (size_t j = 1; j + run < n; j++) {
		bool match = true;
		for (size_t q = 0; q < run && match; q++)
			match = graph_same(g, j + q, rr->lat[1 + q], rr->lon[1 + q]);
		if (!match)
			continue;
		bool before = j == 1 || graph_same(g, j - 1, rr->lat[0], rr->lon[0]);
		size_t after = j + run;
		bool next = after == n - 1 || graph_same(g, after, elat, elon);
		if (before && next)
			return true;
	}
	return false;
}

rh_err routing_restriction_taken(struct routing *r, size_t i, enum route_method method, size_t *tried, size_t *taken)
{
	*tried = *taken = 0;
	struct routing_restriction rr, other;
	if (!routing_restriction_get(r, i, &rr))
		return RH_EINVAL;
	size_t k = rr.npoints - 1; /* p[k] ends the to segment */
	/* from 60% along the from segment, to 60% along each segment it must not drive */
	double slat = rr.lat[0] + 0.6 * (rr.lat[1] - rr.lat[0]), slon = rr.lon[0] + 0.6 * (rr.lon[1] - rr.lon[0]);
	double ends_lat[ROUTING_RESTRICTION_MAX], ends_lon[ROUTING_RESTRICTION_MAX];
	size_t nends = 0;
	if (!rr.only) {
		ends_lat[0] = rr.lat[k], ends_lon[0] = rr.lon[k], nends = 1;
	} else {
		for (size_t x = 0; x < rr.nexits; x++) {
			bool allowed = false;
			/* every record of this relation from the same segment names an allowed way on */
			for (size_t j = 0; j < r->nrestr && !allowed; j++) {
				if (!routing_restriction_get(r, j, &other) || other.osm_id != rr.osm_id || !other.only ||
				    other.npoints != rr.npoints)
					continue;
				bool same = true;
				for (size_t q = 0; q < k && same; q++)
					same = other.lat[q] == rr.lat[q] && other.lon[q] == rr.lon[q];
				allowed = same && other.lat[k] == rr.exit_lat[x] && other.lon[k] == rr.exit_lon[x];
			}
			if (!allowed)
				ends_lat[nends] = rr.exit_lat[x], ends_lon[nends++] = rr.exit_lon[x];
		}
	}
	for (size_t x = 0; x < nends; x++) {
		double tlat = rr.lat[k - 1] + 0.6 * (ends_lat[x] - rr.lat[k - 1]);
		double tlon = rr.lon[k - 1] + 0.6 * (ends_lon[x] - rr.lon[k - 1]);
		struct route_result res;
		rh_err e = routing_route_at(r, slat, slon, tlat, tlon, method, true, 0, &res);
		if (e == RH_EINVAL)
			continue; /* an end the map does not let a route start or end on */
		(*tried)++;
		if (e == RH_OK && graph_geom_drives(&res, &rr, k, ends_lat[x], ends_lon[x]))
			(*taken)++;
	}
	return RH_OK;
}
