/* What the road graph's files share: graph.c (routes, ETAs, turn
 * restrictions, the profile's timings), graph_snap.c (snapping a point and
 * the seeds of a search), graph_search.c (the searches, unpacking a path,
 * many-to-many ETAs) and graph_load.c (loading a map file). The loaded
 * graph, and the functions one calls in another. */
#ifndef RH_GRAPH_INTERNAL_H
#define RH_GRAPH_INTERNAL_H

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

#define NONE UINT32_MAX
#define INF UINT32_MAX
#define EARTH_R 6371008.8
#define DEG (M_PI / 180.0)
#define GRID_MAX_CELLS (1u << 22)

/* A point snapped onto the segment a-b (a < b), at fraction t from a. */
struct snap {
	uint32_t a, b;
	uint32_t e_ab, e_ba; /* directed edges a->b and b->a, NONE when absent */
	double t;
	double dist_m;
	double lat, lon;
};

/* Where a search starts (forward) or ends (backward): a node of the turn
 * graph, what reaching it costs from the point (or from it to the point),
 * and the road edge whose part that is (NONE: a whole edge or nothing). */
struct seed {
	uint32_t node;
	uint32_t cost, ms, mm;
	uint32_t edge;
	double frac;
};
struct seeds {
	struct seed *v;
	size_t n, cap;
};
struct heap {
	uint64_t *k; /* dist << 32 | node */
	size_t n, cap;
};

/* One direction's labels over the turn graph. */
struct label {
	uint32_t stamp;  /* the search's generation when set: older is unset */
	uint32_t dist;
	uint32_t parent; /* hierarchy searches: the hierarchy edge (index into up or down); NONE at a seed */
	uint32_t pred;   /* the node before (after, backward) on the way; NONE at a seed */
	uint32_t aux_ms, aux_mm; /* time and distance along the tree */
};

/* A node's label is one struct (24 bytes, mostly one cache line), not six
 * arrays: a relaxation reads and writes it whole. */
struct search {
	struct label *lab;
	uint32_t gen;
	struct heap h;
};

/* Many-to-many: a target's backward search reached node with this label. */
struct bucket {
	uint32_t node, target, cost, ms, mm;
};

/* Local time: UTC offsets of the profile's time zone, from each switch on. */
struct tz_switch {
	int64_t from;
	int32_t offset;
};

/* A segment as the snapping grid lists it, in its cell's run: the
 * projected ends, the edge listed (a two-way road's lower-numbered
 * direction), its reverse, and where a route may use it (RMAP_FROM: a
 * start, RMAP_TO: an end, in either direction). Made at load, so that a
 * candidate costs one record read in sequence, not a walk through the
 * graph's arrays. */
struct snap_seg {
	double ax, ay, bx, by;
	uint32_t e, rev;
	uint8_t usable;
};
struct routing {
	uint32_t n, m;         /* road nodes and directed road edges */
	uint32_t xn;           /* turn-graph nodes: road edges and copies of some */
	int metric;
	double snap_max_m;
	double *lat, *lon;     /* degrees */
	double *x, *y;         /* metres, equirectangular about the map's centre */
	uint8_t *role;         /* RMAP_FROM | RMAP_TO per node */
	double lat0, lon0, coslat0;
	uint32_t *first_out, *to, *dist_mm, *w;
	uint32_t *time_ms;     /* under the profile when there is one */
	uint32_t *ff_ms;       /* at the imported speeds */
	uint8_t *cls;
	uint32_t *first_in, *in_edge; /* reverse road CSR: edge ids by target */
	uint32_t *from;        /* source node of each road edge */
	/* turn graph */
	uint32_t *xroad, *xfirst, *xto;
	uint32_t *xfirst_in, *xin;    /* predecessors */
	uint32_t *copy_first, *copies; /* road edge -> its copies (nodes >= m) */
	uint32_t nrestr;
	struct mapfile_restriction *rs;
	uint32_t *rvia;
	uint32_t ndrop;
	double *drop_xy;       /* dropped segments, projected: x1, y1, x2, y2 */
	/* grid over edges */
	double cell_m, gx0, gy0;
	uint32_t gw, gh;
	uint32_t *cell_first;
	struct snap_seg *cell_segs;
	struct ch_graph ch;    /* of the configured metric, over the turn graph, renumbered by rank */
	uint32_t *ch_pos;      /* turn-graph node -> its number in ch (highest rank first) */
	uint32_t *ch_node;     /* and back */
	/* travel-time profile */
	bool has_profile;
	struct mapfile_profile prof;
	struct tz_switch *tz;
	size_t ntz;
	/* scratch */
	struct search fw, bw;
	struct seeds ss, ts;
	struct bucket *bk;
	size_t nbk, capbk;
	double *geom;
	size_t geom_cap;
	size_t bytes;
	double min_lat, min_lon, max_lat, max_lon;
};
struct meet {
	uint32_t cost;
	uint32_t node;     /* NONE: direct on one segment */
	uint32_t edge;     /* direct: the segment's edge and the part of it */
	double frac;
};
/* What a route is made of: each turn-graph node on it (a whole edge), in
 * order, handed to a visitor; the parts at the ends come from the seeds. */
struct graph_walk {
	bool geometry;
	double *class_ms; /* free-flow milliseconds per road class, or NULL */
};

/* graph_snap.c */
void graph_project(const struct routing *r, double lat, double lon, double *x, double *y);
double graph_seg_dist2(double px, double py, double ax, double ay, double bx, double by, double *t);
uint32_t graph_edge_find(const struct routing *r, uint32_t u, uint32_t v);
bool graph_edge_usable(const struct routing *r, uint32_t e, unsigned want);
bool graph_snap(const struct routing *r, double lat, double lon, unsigned want, struct snap *s);
void graph_seeds_from(const struct routing *r, const struct snap *s, struct seeds *v);
void graph_seeds_to(const struct routing *r, const struct snap *t, struct seeds *v);
uint32_t graph_direct_cost(const struct routing *r, const struct snap *s, const struct snap *t, uint32_t *edge,
			       double *frac);

/* graph_search.c */
void graph_search_reset(struct routing *r, struct search *s);
void graph_search_begin(struct routing *r);
void graph_search_dijkstra(struct routing *r, const struct seeds *src, const struct seeds *dst, struct meet *best);
void graph_search_bidir(struct routing *r, const struct seeds *src, const struct seeds *dst, struct meet *best);
void graph_geom_point(struct routing *r, size_t *np, double lat, double lon);
void graph_walk_part(const struct routing *r, const struct graph_walk *w, uint32_t e, double frac);
void graph_unpack_plain(struct routing *r, const struct seeds *src, const struct seeds *dst,
			    const struct meet *best, const struct graph_walk *w, size_t *np);
void graph_ch_seed(const struct routing *r, struct search *s, const struct seeds *sd);
bool graph_ch_step(struct routing *r, struct search *s, const struct search *other, bool forward, struct meet *best);
void graph_search_ch(struct routing *r, const struct seeds *src, const struct seeds *dst, struct meet *best);
void graph_unpack_ch(struct routing *r, const struct seeds *src, const struct seeds *dst, const struct meet *best,
			 const struct graph_walk *w, size_t *np);

/* graph.c */
void graph_tz_init(struct routing *r);
void graph_eta_fill(const struct routing *r, struct routing_eta *o, double ms, double mm, int64_t when);

#endif
