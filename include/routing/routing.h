/* Roads: a car graph imported from OpenStreetMap, held in memory, answering
 * shortest travel-time (or distance) queries between two points.
 *
 *   ridehaild map import city.osm.pbf -o var/city.map   (routing_import)
 *   [routing] map = var/city.map                         (routing_load at start)
 *
 * The graph keeps the largest strongly connected component of the drivable
 * roads, plus what only drains into it (a route may start there) or is only
 * fed by it (a route may end there), so every start snapped onto the map can
 * reach every end: one node per OSM node on a road, one directed edge per
 * drivable direction of each segment. Points are snapped to the nearest
 * usable segment through a grid index over the edges. Queries use
 * contraction hierarchies built at import and cost microseconds on the event
 * loop; they use scratch space inside struct routing, so one struct routing
 * serves one thread at a time and results borrowed from it (geometry) stay
 * valid only until the next query.
 *
 * Units: distances in metres, durations in seconds, coordinates in WGS 84
 * degrees. Ownership: struct routing owns the graph and its scratch; callers
 * own their result structs. */
#ifndef RH_ROUTING_ROUTING_H
#define RH_ROUTING_ROUTING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

struct routing;
struct routing_cfg;

/* Which requested point a query failed on (route_result.bad_point). */
enum route_point { ROUTE_POINT_NONE = 0, ROUTE_POINT_FROM, ROUTE_POINT_TO };

/* Query methods. ROUTE_FAST (contraction hierarchies) is what the daemon
 * uses; ROUTE_BIDIR is bidirectional Dijkstra on the road graph and
 * ROUTE_DIJKSTRA the plain one-directional reference the tests compare the
 * others with. */
enum route_method { ROUTE_FAST = 0, ROUTE_BIDIR, ROUTE_DIJKSTRA };

struct route_result {
	double distance_m;   /* along the roads, snapped point to snapped point */
	double duration_s;   /* at the imported speeds; with a travel-time profile, what a
			      * trip at that hour of the week takes (see docs/routing.md) */
	double duration_low_s, duration_high_s; /* with a profile: the range the real time falls
						 * in on range_share of trips (p10-p90); else duration_s */
	bool has_range;      /* a profile is loaded: the range means something */
	double edges_s;      /* the sum of the edges' times (free-flow, or the profile's class
			      * factors), before the hour of the week */
	double from_snap_m;  /* from each requested point to where it was snapped */
	double to_snap_m;
	enum route_point bad_point; /* on RH_EINVAL: the point off the map */
	bool bad_point_disconnected; /* ... and it is near a road the import left out (not
				      * joined to the rest of the map), not far from every road */
	/* Geometry, only with want_geometry: npoints [lon, lat] pairs (GeoJSON
	 * order), borrowed from the routing object until its next query. */
	size_t npoints;
	const double *coords;
};

/* routing_route: RH_OK with *out filled; RH_EINVAL when a point is outside
 * the map or farther than routing.snap_max_distance from any road
 * (out->bad_point says which); RH_ENOTFOUND when no road path joins the two
 * snapped points. r NULL or not loaded: RH_EAGAIN. */
rh_err routing_route(struct routing *r, double from_lat, double from_lon, double to_lat, double to_lon,
		     bool want_geometry, struct route_result *out) RH_MUST_CHECK;
/* The same with a chosen method (tests and benchmarks). */
rh_err routing_route_method(struct routing *r, double from_lat, double from_lon, double to_lat, double to_lon,
			    enum route_method method, bool want_geometry, struct route_result *out) RH_MUST_CHECK;
/* The same at unix time `when` (the profile's hour of the week); the
 * functions without it read the wall clock. */
rh_err routing_route_at(struct routing *r, double from_lat, double from_lon, double to_lat, double to_lon,
			enum route_method method, bool want_geometry, int64_t when, struct route_result *out) RH_MUST_CHECK;

/* Distance (m) from a point to the nearest road a route may start on:
 * RH_ENOTFOUND past routing.snap_max_distance (or off the map). brute scans
 * every segment instead of the grid (the tests' reference). */
rh_err routing_nearest_road(const struct routing *r, double lat, double lon, bool brute, double *dist_m) RH_MUST_CHECK;

/* One source's answer of a many-to-one query. */
struct routing_eta {
	bool reachable;     /* false: off the map, too far from a road, or no path */
	double duration_s;  /* as route_result.duration_s */
	double distance_m;
	double duration_low_s, duration_high_s; /* as in route_result */
	double edges_s;
};

/* ETAs from k sources (drivers at src_lat[i], src_lon[i]) to one target (a
 * pickup), with the configured metric: the target's half of the hierarchy
 * search runs once and every source's small upward search meets it, so k
 * drivers cost a fraction of k queries (16 drivers: about 6 single routes
 * on Midtown Manhattan). out[i] answers source i (reachable false for a
 * source off the map). RH_EINVAL when the target itself is off the map;
 * RH_EAGAIN when r is NULL or not loaded. No geometry. */
rh_err routing_eta_many_to_one(struct routing *r, const double *src_lat, const double *src_lon, size_t k,
			       double to_lat, double to_lon, struct routing_eta *out) RH_MUST_CHECK;
rh_err routing_eta_many_to_one_at(struct routing *r, const double *src_lat, const double *src_lon, size_t k,
				  double to_lat, double to_lon, int64_t when, struct routing_eta *out) RH_MUST_CHECK;

/* ETAs from ns sources to nd targets (drivers to riders, at unix time
 * when): out[i * nd + j] answers source i to target j (reachable false
 * when either point is off the map or no path joins them). One upward
 * search per source and per target, joined through buckets: ns + nd small
 * searches, not ns * nd routes. RH_EAGAIN when r is NULL or not loaded. */
rh_err routing_eta_many_to_many(struct routing *r, const double *src_lat, const double *src_lon, size_t ns,
				const double *dst_lat, const double *dst_lon, size_t nd, int64_t when,
				struct routing_eta *out) RH_MUST_CHECK;

/* ------------------------------------------------------------ turn restrictions */

/* A turn restriction the loaded map honours, as the road nodes it names:
 * lat/lon[0] the start of the from segment, then the via node (or the via
 * way's nodes), then the end of the to segment. only: the to segment is the
 * only way on from there (exits: every segment leaving the last via node,
 * by its far end). Tests and benchmarks walk these. */
#define ROUTING_RESTRICTION_MAX 32
struct routing_restriction {
	bool only;
	long long osm_id;
	size_t npoints;
	double lat[ROUTING_RESTRICTION_MAX + 1], lon[ROUTING_RESTRICTION_MAX + 1];
	size_t nexits;
	double exit_lat[ROUTING_RESTRICTION_MAX], exit_lon[ROUTING_RESTRICTION_MAX];
};
size_t routing_restriction_count(const struct routing *r);
bool routing_restriction_get(const struct routing *r, size_t i, struct routing_restriction *out);
/* Routes what restriction i forbids (no_*: from its from segment onto its
 * to segment; only_*: onto each other way on) with method and counts in
 * *taken the routes whose geometry drives it, of *tried. */
rh_err routing_restriction_taken(struct routing *r, size_t i, enum route_method method, size_t *tried,
				 size_t *taken) RH_MUST_CHECK;

/* ------------------------------------------------------------ lifecycle */

/* True when r holds a graph (a NULL r is "no map configured"). */
bool routing_loaded(const struct routing *r);

/* Reads a prepared map file (routing_import's output) and validates all of
 * it (checksum, sizes, every index in range) before use: on any error
 * returns RH_EINVAL or RH_EIO with a message in err and *out NULL, never a
 * partial graph. cfg supplies the query settings (snap distance, metric). */
rh_err routing_load(const char *map_path, const struct routing_cfg *cfg, struct routing **out, char *err,
		    size_t errlen) RH_MUST_CHECK;
/* The same from a buffer (the fuzz target; the buffer is not kept). */
rh_err routing_load_buffer(const void *data, size_t len, const struct routing_cfg *cfg, struct routing **out,
			   char *err, size_t errlen) RH_MUST_CHECK;
void routing_free(struct routing *r);

struct routing_stats {
	size_t nodes, edges;   /* in the graph (the largest strongly connected component and its fringes) */
	size_t osm_nodes, osm_ways, road_ways; /* import only */
	size_t restrictions;   /* turn restrictions honoured (relations; import) or records (loaded map) */
	size_t restrictions_skipped; /* import: relations not modelled (conditional, not for cars, off the graph) */
	size_t turn_nodes, turn_arcs; /* the turn graph the queries search: road edges (and copies), turns */
	bool profile;          /* a travel-time profile is loaded */
	size_t bytes;          /* estimate of the memory held by the loaded graph, hierarchy and grid */
	double min_lat, min_lon, max_lat, max_lon;
};
void routing_get_stats(const struct routing *r, struct routing_stats *st);

/* Imports an OpenStreetMap extract (.osm, .osm.pbf, .osm.gz, .osm.bz2) into
 * a map file written atomically (temporary file, then rename). Speeds and
 * road rules come from cfg. st (may be NULL) receives counts. */
rh_err routing_import(const char *osm_path, const struct routing_cfg *cfg, const char *map_path,
		      struct routing_stats *st, char *err, size_t errlen) RH_MUST_CHECK;

#include <stdio.h>
/* Fits a travel-time profile from trip records (CSV, see docs/routing.md)
 * to the map at map_path and writes the map with it to out_path (may be
 * map_path: written atomically). tz: the zone the records' times are in.
 * Prints name=value figures (held-out validation included) to report. */
rh_err routing_calibrate(const char *map_path, const char *const *trip_paths, size_t ntrips, const char *tz,
			 const struct routing_cfg *cfg, const char *out_path, FILE *report, char *err,
			 size_t errlen) RH_MUST_CHECK;

/* The road graph as GeoJSON (RFC 7946) for drawing: a FeatureCollection
 * with a bbox and one MultiLineString per road class (properties.class:
 * motorway ... service), both directions of a road one line, runs between
 * junctions one polyline simplified to tolerance_m (Douglas-Peucker),
 * coordinates to 5 decimals. Appended to sb. RH_EAGAIN without a map. */
struct strbuf;
struct routing_roads_stats {
	size_t lines, segments;
};
rh_err routing_roads_geojson(const struct routing *r, double tolerance_m, struct strbuf *sb,
			     struct routing_roads_stats *st) RH_MUST_CHECK;

/* `ridehaild map import <file> -o <map>`, `ridehaild map calibrate`:
 * argc/argv start at "map". */
int routing_map_cli(const struct routing_cfg *cfg, int argc, char **argv);

/* GET /v1/route on the server's HTTP listener (routing/api.c). */
struct http_server;
struct metrics;
struct routing_api;
/* Registers the route and the metrics; r may be NULL (no map: 503). */
struct routing_api *routing_api_new(struct http_server *http, struct metrics *m, struct routing *r,
				    const struct routing_cfg *cfg);
void routing_api_free(struct routing_api *a);

#endif
