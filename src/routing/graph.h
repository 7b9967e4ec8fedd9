/* Inside the routing module: the map file layout and the in-memory graph.
 * Nothing outside src/routing includes this. */
#ifndef RH_ROUTING_GRAPH_H
#define RH_ROUTING_GRAPH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "routing/routing.h"

/* Map file: a 64-byte header, then the body, all little-endian:
 *   int32  lat_e7[n], lon_e7[n]          degrees x 1e7
 *   uint8  role[n]                       RMAP_FROM: a route may start here (reaches the
 *                                        strongly connected core); RMAP_TO: may end here
 *                                        (reached from it); RMAP_THROUGH alone: neither, but
 *                                        on a path from a start to an end
 *   uint32 first_out[n + 1]              CSR: edges of node u are first_out[u] .. first_out[u+1]-1
 *   uint32 to[m], time_ms[m], dist_mm[m] time_ms at the imported (free-flow) speeds
 *   uint8  cls[m]                        road class (RMAP_CLASS_*)
 * then the turn graph (edge-based: one node per road edge, one arc per
 * allowed turn, plus copies of the edges on a via-way restriction's path):
 *   uint32 xn, xm, nrestr, nrvia, ndrop  turn-graph nodes (>= m), arcs, restrictions, their via
 *                                        edges, road segments the import dropped
 *   uint32 xroad[xn - m]                 the road edge each copy stands for (node x < m is edge x)
 *   uint32 xfirst[xn + 1], xto[xm]       CSR of the arcs
 *   struct mapfile_restriction rs[nrestr]   the restrictions honoured, in road edges
 *   uint32 rvia[nrvia]                   their via edges (rs[i].via_first ..)
 *   int32  drop_e7[ndrop * 4]            dropped segments (lat, lon, lat, lon): roads off the
 *                                        kept component, to say why a point near one is refused
 * then, when the header's flags have RMAP_FLAG_PROFILE, the travel-time
 * profile (struct mapfile_profile, `map calibrate`), then the contraction
 * hierarchy of each metric (time, then distance) over the turn graph:
 *   uint32 nup, ndown, rank[xn], first_up[xn + 1], first_down[xn + 1]
 *   ch_edge up[nup], down[ndown]
 * The header carries the counts, the body's length and its BLAKE2b-256, so a
 * truncated or altered file is refused before any of it is used. */
#define RMAP_MAGIC "RHROADS\x01"
#define RMAP_VERSION 3u
#define RMAP_HEADER_SIZE 64u
#define RMAP_HASH_SIZE 32u
#define RMAP_FROM 1u
#define RMAP_TO 2u
#define RMAP_THROUGH 4u /* alone: a route may pass but neither start nor end here */
#define RMAP_MAX_NODES (1u << 28)
#define RMAP_MAX_EDGES (1u << 30)
#define RMAP_FLAG_PROFILE 1u

struct mapfile_header {
	char magic[8];
	uint32_t version;
	uint32_t flags;
	uint32_t nodes;
	uint32_t edges;
	uint64_t body_len;
	uint8_t hash[RMAP_HASH_SIZE];
};

/* Road classes (links count as their road's class). */
enum {
	RMAP_CLASS_MOTORWAY = 0,
	RMAP_CLASS_TRUNK,
	RMAP_CLASS_PRIMARY,
	RMAP_CLASS_SECONDARY,
	RMAP_CLASS_TERTIARY,
	RMAP_CLASS_UNCLASSIFIED,
	RMAP_CLASS_RESIDENTIAL,
	RMAP_CLASS_SERVICE,
	RMAP_CLASSES
};
#define RMAP_HOURS 168 /* hours of the week, Monday 00:00 first */

/* A turn restriction in road edges: from, then via_count via edges (a via
 * way's path; none for a via node), then to. RMAP_NO: that sequence is
 * never driven; RMAP_ONLY: from (and the via path), the only way on is to
 * (one record per allowed `to` when there are several). */
#define RMAP_NO 0u
#define RMAP_ONLY 1u
struct mapfile_restriction {
	uint32_t from, to;
	uint32_t via_first, via_count;
	uint32_t kind;
	uint32_t osm_id_lo, osm_id_hi; /* the relation */
};

/* The profile `map calibrate` fits from trips (see docs/routing.md): an
 * edge of class c takes class_factor[c] times its free-flow time; a route
 * takes hour_factor[h] * (sum of its edges + overhead_s) at hour of the week
 * h in time zone tz; the real duration fell between range_lo and range_hi
 * times that on range_share of the fitting trips. The rest records the fit
 * and its held-out validation. */
struct mapfile_profile {
	char tz[48];
	float class_factor[RMAP_CLASSES];
	float hour_factor[RMAP_HOURS];
	float overhead_s;
	float range_lo, range_hi, range_share;
	uint32_t trips_fit, trips_held;
	float held_mape_freeflow_pct, held_mape_pct, held_cover_pct, held_bias_pct;
	uint32_t reserved[8];
};

/* The graph part of the body; the hierarchies follow it. */
static inline uint64_t mapfile_body_len(uint64_t n, uint64_t m)
{
	return n * 9 + (n + 1) * 4 + m * 13;
}

/* What a search minimises on an edge: milliseconds or millimetres (labels
 * are 32 bits: routes up to 49 days or 4,294 km). */
static inline uint32_t mapfile_weight(int metric, uint32_t time_ms, uint32_t dist_mm)
{
	return metric == 0 ? time_ms : dist_mm;
}

/* An edge of the hierarchy: to, weight, both quantities, and the node it
 * bypasses (NONE: a road segment). In `up` of x it is x->to; in `down` of x
 * it is to->x; either way rank[to] > rank[x] and rank[mid] < rank[x]. */
struct ch_edge {
	uint32_t to, w, time_ms, dist_mm, mid;
};

struct ch_graph {
	uint32_t n, nup, ndown;
	uint32_t *rank;
	uint32_t *first_up, *first_down;
	struct ch_edge *up, *down;
};

rh_err ch_build(uint32_t n, const uint32_t *first_out, const uint32_t *to, const uint32_t *time_ms,
		const uint32_t *dist_mm, int metric, struct ch_graph *out) RH_MUST_CHECK;
void ch_graph_fini(struct ch_graph *g);

/* Everything a map file holds, in arrays (import.c builds it, the loader
 * and `map calibrate` read it back). */
struct mapfile_data {
	uint32_t n, m;
	int32_t *lat_e7, *lon_e7;
	uint8_t *role;
	uint32_t *first_out, *to, *time_ms, *dist_mm;
	uint8_t *cls;
	uint32_t xn, xm, nrestr, nrvia;
	uint32_t *xroad; /* xn entries (identity below m) */
	uint32_t *xfirst, *xto;
	struct mapfile_restriction *rs;
	uint32_t *rvia;
	uint32_t ndrop;
	int32_t *drop_e7;
	bool has_profile;
	struct mapfile_profile profile;
	struct ch_graph ch[2];
};

/* The time an edge takes under the profile (or free-flow without). */
static inline uint32_t mapfile_edge_time(const struct mapfile_data *d, uint32_t e)
{
	if (!d->has_profile)
		return d->time_ms[e];
	double t = (double)d->time_ms[e] * d->profile.class_factor[d->cls[e] < RMAP_CLASSES ? d->cls[e] : 0];
	return t < 1 ? 1 : t > 4e9 ? 4000000000u : (uint32_t)(t + 0.5);
}

/* Builds both hierarchies of d over its turn graph (edge times from the profile). */
rh_err mapfile_build_ch(struct mapfile_data *d) RH_MUST_CHECK;
/* Writes a complete map file, atomically (temporary file, then rename). */
rh_err mapfile_write(const char *path, const struct mapfile_data *d, char *err, size_t errlen) RH_MUST_CHECK;
/* Parses and checks a map file's body into d (arrays allocated; the
 * hierarchy of the other metric skipped unless both). */
rh_err mapfile_parse(const void *data, size_t len, struct mapfile_data *d, int keep_metric, bool both, char *err,
		  size_t errlen) RH_MUST_CHECK;
void mapfile_data_fini(struct mapfile_data *d);

/* graph.c, for `map calibrate` (calibrate.c): loading with or without the
 * profile, reading a whole file, and a route's free-flow seconds by road class. */
rh_err graph_load(const char *map_path, const struct routing_cfg *cfg, bool freeflow, struct routing **out, char *err,
	       size_t errlen) RH_MUST_CHECK;
rh_err graph_read_file(const char *path, uint8_t **buf, size_t *len, char *err, size_t errlen) RH_MUST_CHECK;
/* A route's duration and range from its edges' seconds at hour of the week how. */
void graph_timing_how(const struct routing *r, double edge_s, int how, double *dur, double *lo, double *hi);
rh_err graph_route_split(struct routing *r, double from_lat, double from_lon, double to_lat, double to_lon,
		      double class_s[RMAP_CLASSES], double *distance_m) RH_MUST_CHECK;

/* The road graph as it was loaded, read-only, for drawing it (roads.c):
 * node coordinates, the road edges in CSR order, their source nodes and
 * classes. Borrowed from r. */
struct graph_roads {
	uint32_t n, m;
	const double *lat, *lon;
	const uint32_t *first_out, *to, *from;
	const uint8_t *cls;
	double lat0, coslat0;
};
void graph_roads_of(const struct routing *r, struct graph_roads *out);

#endif
