/* The loaded road graph: validation of the map file, the snapping grid and
 * the shortest-path searches. Pure computation: no server, no libevent. */
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

/* ------------------------------------------------------------ heap */

static void graph_heap_push(struct heap *h, uint32_t d, uint32_t node)
{
	if (h->n == h->cap) {
		h->cap = h->cap ? h->cap * 2 : 1024;
		h->k = rh_realloc(h->k, h->cap * sizeof *h->k);
	}
	uint64_t key = (uint64_t)d << 32 | node;
	size_t i = h->n++;
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (h->k[p] <= key)
			break;
		h->k[i] = h->k[p];
		i = p;
	}
	h->k[i] = key;
}

static uint64_t graph_heap_pop(struct heap *h)
{
	uint64_t top = h->k[0], last = h->k[--h->n];
	size_t i = 0, n = h->n;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= n)
			break;
		if (c + 1 < n && h->k[c + 1] < h->k[c])
			c++;
		if (h->k[c] >= last)
			break;
		h->k[i] = h->k[c];
		i = c;
	}
	if (n)
		h->k[i] = last;
	return top;
}

static uint32_t graph_heap_top(const struct heap *h)
{
	return h->n ? (uint32_t)(h->k[0] >> 32) : INF;
}

static uint32_t graph_sat_add(uint32_t a, uint32_t b)
{
	uint64_t s = (uint64_t)a + b;
	return s >= INF ? INF - 1 : (uint32_t)s;
}

/* ------------------------------------------------------------ geometry */

static void graph_project(const struct routing *r, double lat, double lon, double *x, double *y)
{
	*x = (lon - r->lon0) * DEG * EARTH_R * r->coslat0;
	*y = (lat - r->lat0) * DEG * EARTH_R;
}

/* Squared distance from p to segment a-b, and the fraction along it. */
static double graph_seg_dist2(double px, double py, double ax, double ay, double bx, double by, double *t)
{
	double dx = bx - ax, dy = by - ay, l2 = dx * dx + dy * dy;
	double f = l2 > 0 ? ((px - ax) * dx + (py - ay) * dy) / l2 : 0;
	f = f < 0 ? 0 : f > 1 ? 1 : f;
	double qx = ax + f * dx - px, qy = ay + f * dy - py;
	*t = f;
	return qx * qx + qy * qy;
}

static uint32_t graph_edge_find(const struct routing *r, uint32_t u, uint32_t v)
{
	uint32_t best = NONE;
	for (uint32_t e = r->first_out[u]; e < r->first_out[u + 1]; e++)
		if (r->to[e] == v && (best == NONE || r->w[e] < r->w[best]))
			best = e;
	return best;
}

/* May a route start (RMAP_FROM) or end (RMAP_TO) on edge e? */
static bool graph_edge_usable(const struct routing *r, uint32_t e, unsigned want)
{
	return e != NONE && (want == RMAP_FROM ? r->role[r->to[e]] & RMAP_FROM : r->role[r->from[e]] & RMAP_TO);
}

static void graph_snap_seg(const struct snap_seg *g, double px, double py, unsigned want, double *best2,
			   const struct snap_seg **best, double *bestt)
{
	if (!(g->usable & want))
		return;
	double t, d2 = graph_seg_dist2(px, py, g->ax, g->ay, g->bx, g->by, &t);
	if (d2 < *best2) {
		*best2 = d2;
		*best = g;
		*bestt = t;
	}
}

static void graph_snap_cell(const struct routing *r, double px, double py, long cx, long cy, unsigned want,
			    double *best2, const struct snap_seg **best, double *bestt)
{
	if (cx < 0 || cy < 0 || cx >= (long)r->gw || cy >= (long)r->gh)
		return;
	uint32_t c = (uint32_t)cy * r->gw + (uint32_t)cx;
	for (uint32_t i = r->cell_first[c]; i < r->cell_first[c + 1]; i++)
		graph_snap_seg(&r->cell_segs[i], px, py, want, best2, best, bestt);
}

/* The nearest road segment within snap_max_m where a route may start
 * (want RMAP_FROM) or end (RMAP_TO), searched ring by ring. */
static bool graph_snap(const struct routing *r, double lat, double lon, unsigned want, struct snap *s)
{
	if (!isfinite(lat) || !isfinite(lon) || lat < -90 || lat > 90 || lon < -180 || lon > 180)
		return false;
	double px, py;
	graph_project(r, lat, lon, &px, &py);
	double fx = floor((px - r->gx0) / r->cell_m), fy = floor((py - r->gy0) / r->cell_m);
	long rings = (long)ceil(r->snap_max_m / r->cell_m) + 1;
	if (fx < -rings || fy < -rings || fx > (double)r->gw + rings || fy > (double)r->gh + rings)
		return false;
	long cx = (long)fx, cy = (long)fy;
	/* how far the point is from its own cell's border: every cell of ring
	 * k+1 is at least that plus k whole cells away */
	double ox = px - r->gx0 - fx * r->cell_m, oy = py - r->gy0 - fy * r->cell_m;
	double border = fmin(fmin(ox, r->cell_m - ox), fmin(oy, r->cell_m - oy));
	double best2 = INFINITY, t = 0;
	const struct snap_seg *g = NULL;
	for (long k = 0; k <= rings; k++) {
		if (k == 0) {
			graph_snap_cell(r, px, py, cx, cy, want, &best2, &g, &t);
		} else {
			for (long i = -k; i <= k; i++) {
				graph_snap_cell(r, px, py, cx + i, cy - k, want, &best2, &g, &t);
				graph_snap_cell(r, px, py, cx + i, cy + k, want, &best2, &g, &t);
			}
			for (long i = -k + 1; i <= k - 1; i++) {
				graph_snap_cell(r, px, py, cx - k, cy + i, want, &best2, &g, &t);
				graph_snap_cell(r, px, py, cx + k, cy + i, want, &best2, &g, &t);
			}
		}
		double reach = border + (double)k * r->cell_m;
		if (g && best2 <= reach * reach)
			break;
	}
	if (!g || sqrt(best2) > r->snap_max_m)
		return false;
	uint32_t e = g->e, u = r->from[e], v = r->to[e];
	s->dist_m = sqrt(best2);
	s->lat = r->lat[u] + t * (r->lat[v] - r->lat[u]);
	s->lon = r->lon[u] + t * (r->lon[v] - r->lon[u]);
	if (u < v) {
		s->a = u, s->b = v, s->t = t, s->e_ab = e, s->e_ba = g->rev;
	} else {
		s->a = v, s->b = u, s->t = 1 - t, s->e_ba = e, s->e_ab = g->rev;
	}
	if (!graph_edge_usable(r, s->e_ab, want))
		s->e_ab = NONE;
	if (!graph_edge_usable(r, s->e_ba, want))
		s->e_ba = NONE;
	return true;
}

rh_err routing_nearest_road(const struct routing *r, double lat, double lon, bool brute, double *dist_m)
{
	if (!routing_loaded(r))
		return RH_EAGAIN;
	struct snap s;
	if (!brute) {
		if (!graph_snap(r, lat, lon, RMAP_FROM, &s))
			return RH_ENOTFOUND;
		*dist_m = s.dist_m;
		return RH_OK;
	}
	/* the reference: every edge, from the graph's own arrays (not the
	 * grid's records) */
	double px, py, best2 = INFINITY, t;
	graph_project(r, lat, lon, &px, &py);
	for (uint32_t e = 0; e < r->m; e++) {
		uint32_t u = r->from[e], v = r->to[e];
		if (!graph_edge_usable(r, e, RMAP_FROM) && !graph_edge_usable(r, graph_edge_find(r, v, u), RMAP_FROM))
			continue;
		best2 = fmin(best2, graph_seg_dist2(px, py, r->x[u], r->y[u], r->x[v], r->y[v], &t));
	}
	if (best2 == INFINITY || sqrt(best2) > r->snap_max_m)
		return RH_ENOTFOUND;
	*dist_m = sqrt(best2);
	return RH_OK;
}

static uint32_t graph_part_cost(const struct routing *r, uint32_t e, double frac)
{
	return (uint32_t)llround(frac * (double)r->w[e]);
}

static void graph_seed_add(struct seeds *v, uint32_t node, uint32_t cost, uint32_t ms, uint32_t mm, uint32_t edge,
			double frac)
{
	if (v->n == v->cap) {
		v->cap = v->cap ? v->cap * 2 : 16;
		v->v = rh_realloc(v->v, v->cap * sizeof *v->v);
	}
	v->v[v->n++] = (struct seed){ node, cost, ms, mm, edge, frac };
}

static void graph_seed_part(const struct routing *r, struct seeds *v, uint32_t node, uint32_t e, double frac)
{
	graph_seed_add(v, node, graph_part_cost(r, e, frac), (uint32_t)llround(frac * r->time_ms[e]),
		    (uint32_t)llround(frac * r->dist_mm[e]), e, frac);
}

/* Where a route from point s starts: the rest of its edge in each direction
 * it may be driven; a point on a node (a junction, a way's end) may also
 * leave by any road out of it, whatever that road's role: the node itself
 * reaches the core, and a road that does not may still lead to the end
 * (a slip road between the fringes, RMAP_THROUGH). Labels are "at the end
 * of the edge". */
static void graph_seeds_from(const struct routing *r, const struct snap *s, struct seeds *v)
{
	v->n = 0;
	if (s->e_ab != NONE)
		graph_seed_part(r, v, s->e_ab, s->e_ab, 1 - s->t);
	if (s->e_ba != NONE)
		graph_seed_part(r, v, s->e_ba, s->e_ba, s->t);
	if (s->t <= 0 || s->t >= 1) {
		uint32_t p = s->t <= 0 ? s->a : s->b;
		for (uint32_t e = r->first_out[p]; e < r->first_out[p + 1]; e++)
			graph_seed_part(r, v, e, e, 1);
	}
}

/* The turn-graph nodes a route may come through to reach edge e (every
 * turn into e or into a copy of it), each the part frac of e away. */
static void graph_seed_into(const struct routing *r, struct seeds *v, uint32_t e, double frac)
{
	for (uint32_t c = r->copy_first[e]; c <= r->copy_first[e + 1]; c++) {
		uint32_t x = c == r->copy_first[e + 1] ? e : r->copies[c];
		for (uint32_t i = r->xfirst_in[x]; i < r->xfirst_in[x + 1]; i++)
			graph_seed_part(r, v, r->xin[i], e, frac);
	}
}

/* Where a route to point t ends: the turns into its edge, then the part of
 * the edge up to t; a point on a node is also reached by any edge into it
 * (whatever its role, as for a start). */
static void graph_seeds_to(const struct routing *r, const struct snap *t, struct seeds *v)
{
	v->n = 0;
	if (t->e_ab != NONE)
		graph_seed_into(r, v, t->e_ab, t->t);
	if (t->e_ba != NONE)
		graph_seed_into(r, v, t->e_ba, 1 - t->t);
	if (t->t <= 0 || t->t >= 1) {
		uint32_t p = t->t <= 0 ? t->a : t->b;
		for (uint32_t i = r->first_in[p]; i < r->first_in[p + 1]; i++) {
			uint32_t e = r->in_edge[i];
			graph_seed_add(v, e, 0, 0, 0, NONE, 0);
			for (uint32_t c = r->copy_first[e]; c < r->copy_first[e + 1]; c++)
				graph_seed_add(v, r->copies[c], 0, 0, 0, NONE, 0);
		}
	}
}

/* Both points on the same segment, the second ahead of the first. */
static uint32_t graph_direct_cost(const struct routing *r, const struct snap *s, const struct snap *t, uint32_t *edge,
			       double *frac)
{
	uint32_t best = INF;
	if (s->a != t->a || s->b != t->b)
		return INF;
	if (s->e_ab != NONE && s->t <= t->t) {
		best = graph_part_cost(r, s->e_ab, t->t - s->t);
		*edge = s->e_ab;
		*frac = t->t - s->t;
	}
	if (s->e_ba != NONE && s->t >= t->t && graph_part_cost(r, s->e_ba, s->t - t->t) < best) {
		best = graph_part_cost(r, s->e_ba, s->t - t->t);
		*edge = s->e_ba;
		*frac = s->t - t->t;
	}
	return best;
}

/* ------------------------------------------------------------ searches */

static void graph_search_reset(struct routing *r, struct search *s)
{
	if (++s->gen == 0) {
		for (uint32_t i = 0; i <= r->xn; i++)
			s->lab[i].stamp = 0;
		s->gen = 1;
	}
	s->h.n = 0;
}

static void graph_search_begin(struct routing *r)
{
	graph_search_reset(r, &r->fw);
	graph_search_reset(r, &r->bw);
}

static uint32_t graph_search_label(const struct search *s, uint32_t u)
{
	return s->lab[u].stamp == s->gen ? s->lab[u].dist : INF;
}

/* Inlined into the searches' loops: a call per edge was 8% of a route's instructions. */
static inline bool graph_relax(struct search *s, uint32_t v, uint32_t d, uint32_t via, uint32_t from, uint32_t ms,
			       uint32_t mm) __attribute__((always_inline));
static inline bool graph_relax(struct search *s, uint32_t v, uint32_t d, uint32_t via, uint32_t from, uint32_t ms,
			       uint32_t mm)
{
	if (s->lab[v].stamp == s->gen && s->lab[v].dist <= d)
		return false;
	s->lab[v].stamp = s->gen;
	s->lab[v].dist = d;
	s->lab[v].parent = via;
	s->lab[v].pred = from;
	s->lab[v].aux_ms = ms;
	s->lab[v].aux_mm = mm;
	graph_heap_push(&s->h, d, v);
	return true;
}

static void graph_search_seed(struct search *s, const struct seeds *sd)
{
	for (size_t i = 0; i < sd->n; i++)
		graph_relax(s, sd->v[i].node, sd->v[i].cost, NONE, NONE, sd->v[i].ms, sd->v[i].mm);
}

/* Pops stale entries; returns NONE when the heap is empty. */
static uint32_t graph_search_settle(struct search *s, uint32_t *d)
{
	while (s->h.n) {
		uint64_t k = graph_heap_pop(&s->h);
		uint32_t u = (uint32_t)k, du = (uint32_t)(k >> 32);
		if (du == s->lab[u].dist) {
			*d = du;
			return u;
		}
	}
	return NONE;
}

struct meet {
	uint32_t cost;
	uint32_t node;     /* NONE: direct on one segment */
	uint32_t edge;     /* direct: the segment's edge and the part of it */
	double frac;
};

static void graph_meet_check(struct routing *r, uint32_t v, struct meet *best)
{
	uint32_t a = graph_search_label(&r->fw, v), b = graph_search_label(&r->bw, v);
	if (a == INF || b == INF)
		return;
	uint32_t c = graph_sat_add(a, b);
	if (c < best->cost) {
		best->cost = c;
		best->node = v;
	}
}

/* A turn x -> y, forward: y's whole edge. */
static void graph_relax_fw(struct routing *r, uint32_t x, uint32_t du, uint32_t y, struct meet *best)
{
	struct search *f = &r->fw;
	uint32_t e = r->xroad[y];
	if (graph_relax(f, y, graph_sat_add(du, r->w[e]), NONE, x, graph_sat_add(f->lab[x].aux_ms, r->time_ms[e]),
		     graph_sat_add(f->lab[x].aux_mm, r->dist_mm[e])) && best)
		graph_meet_check(r, y, best);
}

/* The same turn, backward from y: x's label is y's plus y's edge. */
static void graph_relax_bw(struct routing *r, uint32_t y, uint32_t du, uint32_t x, struct meet *best)
{
	struct search *b = &r->bw;
	uint32_t e = r->xroad[y];
	if (graph_relax(b, x, graph_sat_add(du, r->w[e]), NONE, y, graph_sat_add(b->lab[y].aux_ms, r->time_ms[e]),
		     graph_sat_add(b->lab[y].aux_mm, r->dist_mm[e])))
		graph_meet_check(r, x, best);
}

/* Plain Dijkstra forward over the turn graph from the source seeds, the
 * target's seeds labelled backward: the reference. */
static void graph_search_dijkstra(struct routing *r, const struct seeds *src, const struct seeds *dst, struct meet *best)
{
	struct search *f = &r->fw;
	graph_search_seed(f, src);
	graph_search_seed(&r->bw, dst);
	uint32_t du, u;
	while ((u = graph_search_settle(f, &du)) != NONE) {
		if (du >= best->cost)
			break;
		graph_meet_check(r, u, best);
		for (uint32_t a = r->xfirst[u]; a < r->xfirst[u + 1]; a++)
			graph_relax_fw(r, u, du, r->xto[a], NULL);
	}
}

/* Bidirectional Dijkstra over the turn graph, the smaller frontier first;
 * done when the two frontiers' minima add up to the best meeting found. */
static void graph_search_bidir(struct routing *r, const struct seeds *src, const struct seeds *dst, struct meet *best)
{
	struct search *f = &r->fw, *b = &r->bw;
	graph_search_seed(f, src);
	graph_search_seed(b, dst);
	for (size_t i = 0; i < src->n; i++)
		graph_meet_check(r, src->v[i].node, best);
	for (;;) {
		uint32_t tf = graph_heap_top(&f->h), tb = graph_heap_top(&b->h);
		if (tf == INF && tb == INF)
			break;
		if ((uint64_t)(tf == INF ? 0 : tf) + (tb == INF ? 0 : tb) >= best->cost)
			break;
		uint32_t du, u;
		if (tf <= tb) {
			if ((u = graph_search_settle(f, &du)) == NONE)
				continue;
			for (uint32_t a = r->xfirst[u]; a < r->xfirst[u + 1]; a++)
				graph_relax_fw(r, u, du, r->xto[a], best);
		} else {
			if ((u = graph_search_settle(b, &du)) == NONE)
				continue;
			for (uint32_t i = r->xfirst_in[u]; i < r->xfirst_in[u + 1]; i++)
				graph_relax_bw(r, u, du, r->xin[i], best);
		}
	}
}

static void graph_geom_add(struct routing *r, size_t *np, uint32_t x)
{
	if (2 * (*np + 2) > r->geom_cap) {
		r->geom_cap = 2 * (*np + 2) * 2;
		r->geom = rh_realloc(r->geom, r->geom_cap * sizeof *r->geom);
	}
	uint32_t node = r->to[r->xroad[x]];
	r->geom[2 * *np] = r->lon[node];
	r->geom[2 * *np + 1] = r->lat[node];
	(*np)++;
}

static void graph_geom_point(struct routing *r, size_t *np, double lat, double lon)
{
	if (2 * (*np + 2) > r->geom_cap) {
		r->geom_cap = 2 * (*np + 2) * 2;
		r->geom = rh_realloc(r->geom, r->geom_cap * sizeof *r->geom);
	}
	r->geom[2 * *np] = lon;
	r->geom[2 * *np + 1] = lat;
	(*np)++;
}

/* What a route is made of: each turn-graph node on it (a whole edge), in
 * order, handed to a visitor; the parts at the ends come from the seeds. */
struct graph_walk {
	bool geometry;
	double *class_ms; /* free-flow milliseconds per road class, or NULL */
};

static void graph_walk_node(struct routing *r, const struct graph_walk *w, size_t *np, uint32_t x)
{
	if (w->geometry)
		graph_geom_add(r, np, x);
	if (w->class_ms)
		w->class_ms[r->cls[r->xroad[x]]] += r->ff_ms[r->xroad[x]];
}

static void graph_walk_part(const struct routing *r, const struct graph_walk *w, uint32_t e, double frac)
{
	if (w->class_ms && e != NONE)
		w->class_ms[r->cls[e]] += frac * r->ff_ms[e];
}

static const struct seed *graph_seed_find(const struct seeds *v, uint32_t node)
{
	const struct seed *best = NULL;
	for (size_t i = 0; i < v->n; i++)
		if (v->v[i].node == node && (!best || v->v[i].cost < best->cost))
			best = &v->v[i];
	return best;
}

/* Reference searches: walk both predecessor chains from the meeting node. */
static void graph_unpack_plain(struct routing *r, const struct seeds *src, const struct seeds *dst,
			    const struct meet *best, const struct graph_walk *w, size_t *np)
{
	size_t cnt = 0;
	for (uint32_t v = best->node; r->fw.lab[v].pred != NONE; v = r->fw.lab[v].pred)
		cnt++;
	uint32_t *chain = rh_malloc((cnt + 1) * sizeof *chain);
	uint32_t v = best->node;
	for (size_t i = cnt + 1; i > 0; i--) {
		chain[i - 1] = v;
		v = r->fw.lab[v].pred;
	}
	const struct seed *s0 = graph_seed_find(src, chain[0]);
	if (s0)
		graph_walk_part(r, w, s0->edge, s0->frac);
	if (w->geometry)
		graph_geom_add(r, np, chain[0]);
	for (size_t i = 1; i <= cnt; i++)
		graph_walk_node(r, w, np, chain[i]);
	rh_free(chain);
	for (v = best->node; r->bw.lab[v].pred != NONE; v = r->bw.lab[v].pred)
		graph_walk_node(r, w, np, r->bw.lab[v].pred);
	const struct seed *t0 = graph_seed_find(dst, v);
	if (t0)
		graph_walk_part(r, w, t0->edge, t0->frac);
}

/* ------------------------------------------------------------ hierarchy */

/* The hierarchy's searches run on its own numbering (graph_ch_reorder):
 * seeds go in through ch_pos, nodes come out through ch_node. */
static void graph_ch_seed(const struct routing *r, struct search *s, const struct seeds *sd)
{
	for (size_t i = 0; i < sd->n; i++)
		graph_relax(s, r->ch_pos[sd->v[i].node], sd->v[i].cost, NONE, NONE, sd->v[i].ms, sd->v[i].mm);
}

/* Settles one node of an upward search; false when it is done. */
static bool graph_ch_step(struct routing *r, struct search *s, const struct search *other, bool forward, struct meet *best)
{
	uint32_t du, u = graph_search_settle(s, &du);
	if (u == NONE || du >= best->cost)
		return false;
	uint32_t o = other ? graph_search_label(other, u) : INF;
	if (o != INF && graph_sat_add(du, o) < best->cost) {
		best->cost = graph_sat_add(du, o);
		best->node = u;
	}
	/* Stall on demand: when a node this search has reached ranks above u
	 * and reaches u more cheaply (an edge of the other direction's graph,
	 * read backwards), u is not on a shortest upward path and its edges
	 * need not be relaxed. Its label stays an upper bound, so meeting there
	 * is still a real path. */
	const uint32_t *sfirst = forward ? r->ch.first_down : r->ch.first_up;
	const struct ch_edge *se = forward ? r->ch.down : r->ch.up;
	for (uint32_t i = sfirst[u]; i < sfirst[u + 1]; i++) {
		uint32_t l = graph_search_label(s, se[i].to);
		if (l != INF && graph_sat_add(l, se[i].w) < du)
			return true;
	}
	const uint32_t *first = forward ? r->ch.first_up : r->ch.first_down;
	const struct ch_edge *e = forward ? r->ch.up : r->ch.down;
	for (uint32_t i = first[u]; i < first[u + 1]; i++)
		graph_relax(s, e[i].to, graph_sat_add(du, e[i].w), i, u, graph_sat_add(s->lab[u].aux_ms, e[i].time_ms),
			 graph_sat_add(s->lab[u].aux_mm, e[i].dist_mm));
	return true;
}

static void graph_search_ch(struct routing *r, const struct seeds *src, const struct seeds *dst, struct meet *best)
{
	struct search *f = &r->fw, *b = &r->bw;
	graph_ch_seed(r, f, src);
	graph_ch_seed(r, b, dst);
	bool fl = true, bl = true;
	while (fl || bl) {
		if (fl && (!bl || graph_heap_top(&f->h) <= graph_heap_top(&b->h)))
			fl = graph_ch_step(r, f, b, true, best);
		else
			bl = graph_ch_step(r, b, f, false, best);
	}
}

/* The edge a->b of the hierarchy stored at node x (x = lower rank). */
static const struct ch_edge *graph_ch_find(const struct routing *r, uint32_t x, uint32_t other, bool up)
{
	const uint32_t *first = up ? r->ch.first_up : r->ch.first_down;
	const struct ch_edge *e = up ? r->ch.up : r->ch.down, *best = NULL;
	for (uint32_t i = first[x]; i < first[x + 1]; i++)
		if (e[i].to == other && (!best || e[i].w < best->w))
			best = &e[i];
	return best;
}

/* Visits the turn-graph nodes of a->b (bypassing mid) after a, through b.
 * An explicit stack; a damaged hierarchy stops unpacking (never loops:
 * every mid ranks below both ends) and the point count is capped. */
static void graph_ch_unpack(struct routing *r, const struct graph_walk *w, uint32_t a, uint32_t b, uint32_t mid, size_t *np,
			 size_t *visits)
{
	struct item {
		uint32_t a, b, mid;
	} stack[256];
	size_t sp = 0;
	stack[sp++] = (struct item){ a, b, mid };
	while (sp) {
		struct item it = stack[--sp];
		const struct ch_edge *e1 = NULL, *e2 = NULL;
		if (it.mid != NONE && sp + 2 <= RH_ARRAY_LEN(stack) && *visits < 4 * (size_t)r->xn + 16) {
			e1 = graph_ch_find(r, it.mid, it.a, false); /* a -> mid, stored at mid */
			e2 = graph_ch_find(r, it.mid, it.b, true);  /* mid -> b */
		}
		if (!e1 || !e2) {
			(*visits)++;
			graph_walk_node(r, w, np, r->ch_node[it.b]);
			continue;
		}
		stack[sp++] = (struct item){ it.mid, it.b, e2->mid };
		stack[sp++] = (struct item){ it.a, it.mid, e1->mid };
	}
}

static void graph_unpack_ch(struct routing *r, const struct seeds *src, const struct seeds *dst, const struct meet *best,
			 const struct graph_walk *w, size_t *np)
{
	size_t cnt = 0, visits = 0;
	for (uint32_t v = best->node; r->fw.lab[v].parent != NONE; v = r->fw.lab[v].pred)
		cnt++;
	uint32_t *chain = rh_malloc((cnt + 1) * sizeof *chain);
	uint32_t v = best->node;
	for (size_t i = cnt; i > 0; i--) {
		chain[i - 1] = v;
		v = r->fw.lab[v].pred;
	}
	const struct seed *s0 = graph_seed_find(src, r->ch_node[v]);
	if (s0)
		graph_walk_part(r, w, s0->edge, s0->frac);
	if (w->geometry)
		graph_geom_add(r, np, r->ch_node[v]);
	for (size_t i = 0; i < cnt; i++) {
		uint32_t node = chain[i];
		graph_ch_unpack(r, w, r->fw.lab[node].pred, node, r->ch.up[r->fw.lab[node].parent].mid, np, &visits);
	}
	rh_free(chain);
	for (v = best->node; r->bw.lab[v].parent != NONE; v = r->bw.lab[v].pred)
		graph_ch_unpack(r, w, v, r->bw.lab[v].pred, r->ch.down[r->bw.lab[v].parent].mid, np, &visits);
	const struct seed *t0 = graph_seed_find(dst, r->ch_node[v]);
	if (t0)
		graph_walk_part(r, w, t0->edge, t0->frac);
}

/* ------------------------------------------------------------ profile */

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
static void graph_tz_init(struct routing *r)
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

static void graph_eta_fill(const struct routing *r, struct routing_eta *o, double ms, double mm, int64_t when)
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

static int graph_bucket_cmp(const void *a, const void *b)
{
	const struct bucket *x = a, *y = b;
	if (x->node != y->node)
		return x->node < y->node ? -1 : 1;
	return x->target < y->target ? -1 : x->target > y->target;
}

/* Each target's complete upward backward search leaves its labels in
 * r->bk, sorted by node; tok[j] says whether target j snapped (to ts[j]). */
static void graph_buckets_fill(struct routing *r, const double *dst_lat, const double *dst_lon, size_t nd,
			       struct snap *ts, bool *tok)
{
	struct search *b = &r->bw;
	r->nbk = 0;
	for (size_t j = 0; j < nd; j++) {
		if (!(tok[j] = graph_snap(r, dst_lat[j], dst_lon[j], RMAP_TO, &ts[j])))
			continue;
		graph_seeds_to(r, &ts[j], &r->ts);
		graph_search_reset(r, b);
		graph_ch_seed(r, b, &r->ts);
		uint32_t du, u;
		while (graph_heap_top(&b->h) != INF) {
			/* settle by hand to see each node once */
			if ((u = graph_search_settle(b, &du)) == NONE)
				break;
			if (r->nbk == r->capbk) {
				r->capbk = r->capbk ? r->capbk * 2 : 1024;
				r->bk = rh_realloc(r->bk, r->capbk * sizeof *r->bk);
			}
			r->bk[r->nbk++] = (struct bucket){ u, (uint32_t)j, du, b->lab[u].aux_ms, b->lab[u].aux_mm };
			for (uint32_t i = r->ch.first_down[u]; i < r->ch.first_down[u + 1]; i++) {
				const struct ch_edge *e = &r->ch.down[i];
				graph_relax(b, e->to, graph_sat_add(du, e->w), i, u, graph_sat_add(b->lab[u].aux_ms, e->time_ms),
					 graph_sat_add(b->lab[u].aux_mm, e->dist_mm));
			}
		}
	}
	qsort(r->bk, r->nbk, sizeof *r->bk, graph_bucket_cmp);
}

/* One source's complete upward forward search (seeded in r->ss) reads the
 * buckets of the nodes it settles: a meeting cheaper than best[j] is the
 * best to target j, its time and distance in bms[j], bmm[j]. */
static void graph_buckets_scan(struct routing *r, struct meet *best, uint32_t *bms, uint32_t *bmm)
{
	struct search *f = &r->fw;
	graph_search_reset(r, f);
	graph_ch_seed(r, f, &r->ss);
	uint32_t du, u;
	while ((u = graph_search_settle(f, &du)) != NONE) {
		size_t lo = 0, hi = r->nbk;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			if (r->bk[mid].node < u)
				lo = mid + 1;
			else
				hi = mid;
		}
		for (; lo < r->nbk && r->bk[lo].node == u; lo++) {
			const struct bucket *k = &r->bk[lo];
			uint32_t c = graph_sat_add(du, k->cost);
			if (c < best[k->target].cost) {
				best[k->target] = (struct meet){ c, u, NONE, 0 };
				bms[k->target] = graph_sat_add(f->lab[u].aux_ms, k->ms);
				bmm[k->target] = graph_sat_add(f->lab[u].aux_mm, k->mm);
			}
		}
		for (uint32_t a = r->ch.first_up[u]; a < r->ch.first_up[u + 1]; a++) {
			const struct ch_edge *e = &r->ch.up[a];
			graph_relax(f, e->to, graph_sat_add(du, e->w), a, u, graph_sat_add(f->lab[u].aux_ms, e->time_ms),
				 graph_sat_add(f->lab[u].aux_mm, e->dist_mm));
		}
	}
}

/* Many-to-many with buckets: each target's complete upward backward search
 * leaves its labels in buckets by node; each source's complete upward
 * forward search reads the buckets of the nodes it settles. ns + nd small
 * searches for ns * nd answers. */
rh_err routing_eta_many_to_many(struct routing *r, const double *src_lat, const double *src_lon, size_t ns,
				const double *dst_lat, const double *dst_lon, size_t nd, int64_t when,
				struct routing_eta *out)
{
	if (!routing_loaded(r))
		return RH_EAGAIN;
	memset(out, 0, ns * nd * sizeof *out);
	struct snap *ts = rh_calloc(nd + 1, sizeof *ts);
	bool *tok = rh_calloc(nd + 1, sizeof *tok);
	struct meet *best = rh_calloc(nd + 1, sizeof *best);
	graph_buckets_fill(r, dst_lat, dst_lon, nd, ts, tok);
	for (size_t i = 0; i < ns; i++) {
		struct snap s;
		if (!graph_snap(r, src_lat[i], src_lon[i], RMAP_FROM, &s))
			continue;
		for (size_t j = 0; j < nd; j++) {
			best[j] = (struct meet){ INF, NONE, NONE, 0 };
			if (tok[j]) {
				uint32_t c = graph_direct_cost(r, &s, &ts[j], &best[j].edge, &best[j].frac);
				best[j].cost = c;
			}
		}
		uint32_t *bms = rh_calloc(nd + 1, sizeof *bms), *bmm = rh_calloc(nd + 1, sizeof *bmm);
		graph_seeds_from(r, &s, &r->ss);
		graph_buckets_scan(r, best, bms, bmm);
		for (size_t j = 0; j < nd; j++) {
			struct routing_eta *o = &out[i * nd + j];
			if (best[j].cost == INF)
				continue;
			if (best[j].node == NONE)
				graph_eta_fill(r, o, best[j].frac * r->time_ms[best[j].edge],
					    best[j].frac * r->dist_mm[best[j].edge], when);
			else
				graph_eta_fill(r, o, bms[j], bmm[j], when);
		}
		rh_free(bms);
		rh_free(bmm);
	}
	rh_free(ts);
	rh_free(tok);
	rh_free(best);
	return RH_OK;
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

/* ------------------------------------------------------------ loading */

bool routing_loaded(const struct routing *r)
{
	return r != NULL && r->n > 0;
}

static void graph_build_reverse(struct routing *r)
{
	r->from = rh_malloc(((size_t)r->m + 1) * sizeof *r->from);
	r->first_in = rh_calloc((size_t)r->n + 1, sizeof *r->first_in);
	r->in_edge = rh_malloc(((size_t)r->m + 1) * sizeof *r->in_edge);
	for (uint32_t u = 0; u < r->n; u++)
		for (uint32_t e = r->first_out[u]; e < r->first_out[u + 1]; e++) {
			r->from[e] = u;
			r->first_in[r->to[e] + 1]++;
		}
	for (uint32_t u = 0; u < r->n; u++)
		r->first_in[u + 1] += r->first_in[u];
	uint32_t *fill = rh_malloc(((size_t)r->n + 1) * sizeof *fill);
	memcpy(fill, r->first_in, ((size_t)r->n + 1) * sizeof *fill);
	for (uint32_t e = 0; e < r->m; e++)
		r->in_edge[fill[r->to[e]]++] = e;
	rh_free(fill);
	/* the turn graph's predecessors, and each edge's copies */
	uint32_t xn = r->xn, xm = r->xfirst[xn];
	r->xfirst_in = rh_calloc((size_t)xn + 1, sizeof *r->xfirst_in);
	r->xin = rh_malloc(((size_t)xm + 1) * sizeof *r->xin);
	for (uint32_t a = 0; a < xm; a++)
		r->xfirst_in[r->xto[a] + 1]++;
	for (uint32_t x = 0; x < xn; x++)
		r->xfirst_in[x + 1] += r->xfirst_in[x];
	fill = rh_malloc(((size_t)xn + 1) * sizeof *fill);
	memcpy(fill, r->xfirst_in, ((size_t)xn + 1) * sizeof *fill);
	for (uint32_t x = 0; x < xn; x++)
		for (uint32_t a = r->xfirst[x]; a < r->xfirst[x + 1]; a++)
			r->xin[fill[r->xto[a]]++] = x;
	rh_free(fill);
	r->copy_first = rh_calloc((size_t)r->m + 2, sizeof *r->copy_first);
	r->copies = rh_malloc(((size_t)xn - r->m + 1) * sizeof *r->copies);
	for (uint32_t x = r->m; x < xn; x++)
		r->copy_first[r->xroad[x] + 1]++;
	for (uint32_t e = 0; e < r->m; e++)
		r->copy_first[e + 1] += r->copy_first[e];
	fill = rh_malloc(((size_t)r->m + 1) * sizeof *fill);
	memcpy(fill, r->copy_first, ((size_t)r->m + 1) * sizeof *fill);
	for (uint32_t x = r->m; x < xn; x++)
		r->copies[fill[r->xroad[x]]++] = x;
	rh_free(fill);
}

static void graph_cell_range(const struct routing *r, double v0, double v1, double origin, uint32_t cells, uint32_t *lo,
		       uint32_t *hi)
{
	double a = floor((fmin(v0, v1) - origin) / r->cell_m), b = floor((fmax(v0, v1) - origin) / r->cell_m);
	*lo = a < 0 ? 0 : a >= cells ? cells - 1 : (uint32_t)a;
	*hi = b < 0 ? 0 : b >= cells ? cells - 1 : (uint32_t)b;
}

/* Cell listings the grid would hold: long edges (or a hostile file) touch
 * many cells. */
static uint64_t graph_grid_listings(const struct routing *r)
{
	uint64_t total = 0;
	for (uint32_t e = 0; e < r->m; e++) {
		uint32_t cx0, cx1, cy0, cy1;
		graph_cell_range(r, r->x[r->from[e]], r->x[r->to[e]], r->gx0, r->gw, &cx0, &cx1);
		graph_cell_range(r, r->y[r->from[e]], r->y[r->to[e]], r->gy0, r->gh, &cy0, &cy1);
		total += (uint64_t)(cx1 - cx0 + 1) * (cy1 - cy0 + 1);
	}
	return total;
}

/* The grid: every edge listed in each cell its bounding box touches. Cells
 * of 100 m, coarser when the map is large or its edges long. */
static void graph_build_grid(struct routing *r)
{
	double x0 = INFINITY, y0 = INFINITY, x1 = -INFINITY, y1 = -INFINITY;
	for (uint32_t u = 0; u < r->n; u++) {
		x0 = fmin(x0, r->x[u]), x1 = fmax(x1, r->x[u]);
		y0 = fmin(y0, r->y[u]), y1 = fmax(y1, r->y[u]);
	}
	r->cell_m = 25;
	r->gx0 = x0, r->gy0 = y0;
	do {
		r->cell_m *= 2;
		r->gw = (uint32_t)((x1 - x0) / r->cell_m) + 1;
		r->gh = (uint32_t)((y1 - y0) / r->cell_m) + 1;
	} while ((uint64_t)r->gw * r->gh > GRID_MAX_CELLS ||
		 /* a map's extent, not its size, set the cells: a few roads far
		  * apart (a corrupt or hostile file) took 4M cells, 16 MB zeroed
		  * per load; a real city has far fewer cells than edges */
		 (uint64_t)r->gw * r->gh > 16 * (uint64_t)r->m + 4096 ||
		 graph_grid_listings(r) > 8 * (uint64_t)r->m + (uint64_t)r->gw * r->gh);
	size_t cells = (size_t)r->gw * r->gh;
	r->cell_first = rh_calloc(cells + 1, sizeof *r->cell_first);
	for (int pass = 0; pass < 2; pass++) {
		uint32_t *fill = NULL;
		if (pass == 1) {
			for (size_t c = 0; c < cells; c++)
				r->cell_first[c + 1] += r->cell_first[c];
			r->cell_segs = rh_malloc(((size_t)r->cell_first[cells] + 1) * sizeof *r->cell_segs);
			fill = rh_malloc((cells + 1) * sizeof *fill);
			memcpy(fill, r->cell_first, (cells + 1) * sizeof *fill);
		}
		for (uint32_t e = 0; e < r->m; e++) {
			uint32_t u = r->from[e], v = r->to[e];
			/* a two-way road is listed once: its lower-numbered direction */
			uint32_t rev = graph_edge_find(r, v, u);
			if (u > v && rev != NONE)
				continue;
			struct snap_seg g = { r->x[u], r->y[u], r->x[v], r->y[v], e, rev, 0 };
			for (unsigned want = RMAP_FROM; want <= RMAP_TO; want <<= 1)
				if (graph_edge_usable(r, e, want) || graph_edge_usable(r, rev, want))
					g.usable |= (uint8_t)want;
			uint32_t cx0, cx1, cy0, cy1;
			graph_cell_range(r, r->x[u], r->x[v], r->gx0, r->gw, &cx0, &cx1);
			graph_cell_range(r, r->y[u], r->y[v], r->gy0, r->gh, &cy0, &cy1);
			for (uint32_t cy = cy0; cy <= cy1; cy++)
				for (uint32_t cx = cx0; cx <= cx1; cx++) {
					size_t c = (size_t)cy * r->gw + cx;
					if (pass == 0)
						r->cell_first[c + 1]++;
					else
						r->cell_segs[fill[c]++] = g;
				}
		}
		rh_free(fill);
	}
	r->bytes += (cells + 1) * sizeof(uint32_t) + r->cell_first[cells] * sizeof(struct snap_seg);
}

/* Renumbers the hierarchy by rank, highest first. Every upward search
 * climbs into the same few top nodes; numbered together, those nodes'
 * labels and edges share cache lines and stay cached from one query to the
 * next, where the turn graph's numbering (by road edge) scatters them over
 * the whole map. */
static void graph_ch_reorder(struct routing *r)
{
	struct ch_graph *g = &r->ch;
	uint32_t n = g->n;
	r->ch_pos = rh_malloc(((size_t)n + 1) * sizeof *r->ch_pos);
	r->ch_node = rh_malloc(((size_t)n + 1) * sizeof *r->ch_node);
	for (uint32_t x = 0; x < n; x++) {
		r->ch_pos[x] = n - 1 - g->rank[x]; /* ranks are a permutation (checked at load) */
		r->ch_node[r->ch_pos[x]] = x;
	}
	for (int dir = 0; dir < 2; dir++) {
		uint32_t **first = dir ? &g->first_down : &g->first_up;
		struct ch_edge **edges = dir ? &g->down : &g->up;
		uint32_t *nf = rh_malloc(((size_t)n + 1) * sizeof *nf);
		struct ch_edge *ne = rh_malloc(((size_t)(dir ? g->ndown : g->nup) + 1) * sizeof *ne);
		nf[0] = 0;
		for (uint32_t p = 0; p < n; p++) {
			uint32_t x = r->ch_node[p], k = nf[p];
			for (uint32_t i = (*first)[x]; i < (*first)[x + 1]; i++, k++) {
				ne[k] = (*edges)[i];
				ne[k].to = r->ch_pos[ne[k].to];
				if (ne[k].mid != NONE)
					ne[k].mid = r->ch_pos[ne[k].mid];
			}
			nf[p + 1] = k;
		}
		rh_free(*first);
		rh_free(*edges);
		*first = nf;
		*edges = ne;
	}
	for (uint32_t p = 0; p < n; p++)
		g->rank[p] = n - 1 - p;
	r->bytes += 2 * ((size_t)n + 1) * sizeof(uint32_t);
}

static void graph_prepare(struct routing *r, const int32_t *lat, const int32_t *lon)
{
	r->lat = rh_malloc(r->n * sizeof *r->lat);
	r->lon = rh_malloc(r->n * sizeof *r->lon);
	r->x = rh_malloc(r->n * sizeof *r->x);
	r->y = rh_malloc(r->n * sizeof *r->y);
	r->min_lat = r->min_lon = INFINITY;
	r->max_lat = r->max_lon = -INFINITY;
	for (uint32_t u = 0; u < r->n; u++) {
		r->lat[u] = lat[u] / 1e7;
		r->lon[u] = lon[u] / 1e7;
		r->min_lat = fmin(r->min_lat, r->lat[u]), r->max_lat = fmax(r->max_lat, r->lat[u]);
		r->min_lon = fmin(r->min_lon, r->lon[u]), r->max_lon = fmax(r->max_lon, r->lon[u]);
	}
	r->lat0 = (r->min_lat + r->max_lat) / 2;
	r->lon0 = (r->min_lon + r->max_lon) / 2;
	r->coslat0 = cos(r->lat0 * DEG);
	for (uint32_t u = 0; u < r->n; u++)
		graph_project(r, r->lat[u], r->lon[u], &r->x[u], &r->y[u]);
	r->w = rh_malloc(((size_t)r->m + 1) * sizeof *r->w);
	for (uint32_t e = 0; e < r->m; e++)
		r->w[e] = mapfile_weight(r->metric, r->time_ms[e], r->dist_mm[e]);
	graph_build_reverse(r);
	graph_build_grid(r);
	graph_ch_reorder(r);
	struct search *s[2] = { &r->fw, &r->bw };
	for (int i = 0; i < 2; i++) {
		s[i]->lab = rh_calloc((size_t)r->xn + 1, sizeof *s[i]->lab);
	}
	if (r->has_profile)
		graph_tz_init(r);
	r->bytes += (size_t)r->n * (4 * sizeof(double) + 1 + 4 * 2) + (size_t)r->m * 4 * 9 +
		    (size_t)r->xn * (4 * 6 * 2 + 4 * 3) + (size_t)r->xfirst[r->xn] * 4 * 2 +
		    ((size_t)r->ch.nup + r->ch.ndown) * sizeof(struct ch_edge) + (size_t)r->xn * 12;
}

static rh_err graph_load_buffer(const void *data, size_t len, const struct routing_cfg *cfg, bool freeflow,
				struct routing **out, char *err, size_t errlen)
{
	*out = NULL;
	struct mapfile_data d;
	int metric = cfg->metric == 1 ? 1 : 0;
	rh_err e = mapfile_parse(data, len, &d, metric, false, err, errlen);
	if (e != RH_OK)
		return e;
	struct routing *r = RH_NEW(struct routing);
	r->n = d.n, r->m = d.m, r->xn = d.xn;
	r->metric = metric;
	r->snap_max_m = (double)cfg->snap_max_distance_m;
	r->role = d.role, r->first_out = d.first_out, r->to = d.to, r->dist_mm = d.dist_mm, r->cls = d.cls;
	r->ff_ms = d.time_ms;
	r->has_profile = d.has_profile && !freeflow;
	r->prof = d.profile;
	r->time_ms = rh_malloc(((size_t)r->m + 1) * sizeof *r->time_ms);
	for (uint32_t i = 0; i < r->m; i++)
		r->time_ms[i] = r->has_profile ? mapfile_edge_time(&d, i) : d.time_ms[i];
	r->xroad = d.xroad, r->xfirst = d.xfirst, r->xto = d.xto;
	r->nrestr = d.nrestr, r->rs = d.rs, r->rvia = d.rvia;
	r->ndrop = d.ndrop;
	r->ch = d.ch[metric];
	ch_graph_fini(&d.ch[1 - metric]);
	graph_prepare(r, d.lat_e7, d.lon_e7);
	r->drop_xy = rh_malloc(((size_t)r->ndrop * 4 + 1) * sizeof *r->drop_xy);
	for (size_t i = 0; i < (size_t)r->ndrop * 4; i += 2)
		graph_project(r, d.drop_e7[i] / 1e7, d.drop_e7[i + 1] / 1e7, &r->drop_xy[i], &r->drop_xy[i + 1]);
	rh_free(d.drop_e7);
	rh_free(d.lat_e7);
	rh_free(d.lon_e7);
	*out = r;
	return RH_OK;
}

rh_err routing_load_buffer(const void *data, size_t len, const struct routing_cfg *cfg, struct routing **out,
			   char *err, size_t errlen)
{
	return graph_load_buffer(data, len, cfg, false, out, err, errlen);
}

/* The whole file into memory (rh_free it). */
rh_err graph_read_file(const char *path, uint8_t **buf_out, size_t *len_out, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return RH_EIO;
	}
	size_t cap = 1 << 20, len = 0;
	uint8_t *buf = rh_malloc(cap);
	size_t got;
	while ((got = fread(buf + len, 1, cap - len, f)) > 0) {
		len += got;
		if (len == cap) {
			cap *= 2;
			buf = rh_realloc(buf, cap);
		}
	}
	bool failed = ferror(f);
	int saved = errno;
	fclose(f);
	if (failed) {
		rh_free(buf);
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(saved));
		return RH_EIO;
	}
	*buf_out = buf;
	*len_out = len;
	return RH_OK;
}

rh_err graph_load(const char *map_path, const struct routing_cfg *cfg, bool freeflow, struct routing **out, char *err,
	       size_t errlen)
{
	*out = NULL;
	uint8_t *buf;
	size_t len;
	char why[512];
	rh_err e = graph_read_file(map_path, &buf, &len, why, sizeof why);
	if (e != RH_OK) {
		snprintf(err, errlen, "map: %s", why);
		return e;
	}
	e = graph_load_buffer(buf, len, cfg, freeflow, out, why, sizeof why);
	rh_free(buf);
	if (e != RH_OK)
		snprintf(err, errlen, "map %s: %s", map_path, why);
	return e;
}

rh_err routing_load(const char *map_path, const struct routing_cfg *cfg, struct routing **out, char *err,
		    size_t errlen)
{
	return graph_load(map_path, cfg, false, out, err, errlen);
}

void routing_free(struct routing *r)
{
	if (!r)
		return;
	void *ptrs[] = { r->role, r->lat, r->lon, r->x, r->y, r->first_out, r->to, r->time_ms, r->ff_ms, r->dist_mm,
			 r->cls, r->w, r->first_in, r->in_edge, r->from, r->xroad, r->xfirst, r->xto, r->xfirst_in,
			 r->xin, r->copy_first, r->copies, r->rs, r->rvia, r->drop_xy, r->cell_first, r->cell_segs, r->tz, r->ch_pos, r->ch_node,
			 r->fw.lab, r->fw.h.k, r->bw.lab, r->bw.h.k,
			 r->ss.v, r->ts.v, r->bk, r->geom };
	for (size_t i = 0; i < RH_ARRAY_LEN(ptrs); i++)
		rh_free(ptrs[i]);
	ch_graph_fini(&r->ch);
	rh_free(r);
}

void routing_get_stats(const struct routing *r, struct routing_stats *st)
{
	memset(st, 0, sizeof *st);
	if (!r)
		return;
	st->nodes = r->n;
	st->edges = r->m;
	st->bytes = r->bytes;
	st->restrictions = r->nrestr;
	st->turn_nodes = r->xn;
	st->turn_arcs = r->xfirst[r->xn];
	st->profile = r->has_profile;
	st->min_lat = r->min_lat, st->min_lon = r->min_lon;
	st->max_lat = r->max_lat, st->max_lon = r->max_lon;
}

void graph_roads_of(const struct routing *r, struct graph_roads *out)
{
	*out = (struct graph_roads){ .n = r->n, .m = r->m, .lat = r->lat, .lon = r->lon, .first_out = r->first_out,
				     .to = r->to, .from = r->from, .cls = r->cls, .lat0 = r->lat0,
				     .coslat0 = r->coslat0 };
}
