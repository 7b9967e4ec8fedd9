/* The loaded road graph: validation of the map file, the snapping grid and
 * the shortest-path searches. Pure computation: no server, no libevent. */
#include "graph.h"

#include <errno.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

struct seed {
	uint32_t node;
	uint32_t cost;  /* weight units from the point to the node (or back) */
	uint32_t edge;  /* the edge the partial piece lies on */
	double frac;    /* the part of that edge */
};

struct heap {
	uint64_t *k; /* dist << 32 | node */
	size_t n, cap;
};

struct search {
	uint32_t *dist;
	uint32_t *stamp;
	uint32_t *parent; /* edge id (forward numbering, or of the hierarchy), NONE at a seed */
	uint32_t *pred;   /* hierarchy searches: the node the parent edge comes from */
	uint32_t *aux_ms, *aux_mm; /* hierarchy searches: time and distance along the tree */
	uint32_t gen;
	struct heap h;
};

struct routing {
	uint32_t n, m;
	int metric;
	double snap_max_m;
	double *lat, *lon;     /* degrees */
	double *x, *y;         /* metres, equirectangular about the map's centre */
	uint8_t *role;         /* RMAP_FROM | RMAP_TO per node */
	double lat0, lon0, coslat0;
	uint32_t *first_out, *to, *time_ms, *dist_mm, *w;
	uint32_t *first_in, *in_edge; /* reverse CSR: forward edge ids by target */
	uint32_t *from;        /* source node of each forward edge */
	/* grid over edges */
	double cell_m, gx0, gy0;
	uint32_t gw, gh;
	uint32_t *cell_first, *cell_edges;
	struct ch_graph ch;    /* of the configured metric */
	/* scratch */
	struct search fw, bw;
	double *geom;
	size_t geom_cap;
	size_t bytes;
	double min_lat, min_lon, max_lat, max_lon;
};

/* ------------------------------------------------------------ heap */

static void rt_heap_push(struct heap *h, uint32_t d, uint32_t node)
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

static uint64_t rt_heap_pop(struct heap *h)
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

static uint32_t rt_heap_top(const struct heap *h)
{
	return h->n ? (uint32_t)(h->k[0] >> 32) : INF;
}

static uint32_t rt_sat_add(uint32_t a, uint32_t b)
{
	uint64_t s = (uint64_t)a + b;
	return s >= INF ? INF - 1 : (uint32_t)s;
}

/* ------------------------------------------------------------ geometry */

static void rt_project(const struct routing *r, double lat, double lon, double *x, double *y)
{
	*x = (lon - r->lon0) * DEG * EARTH_R * r->coslat0;
	*y = (lat - r->lat0) * DEG * EARTH_R;
}

/* Squared distance from p to segment a-b, and the fraction along it. */
static double rt_seg_dist2(double px, double py, double ax, double ay, double bx, double by, double *t)
{
	double dx = bx - ax, dy = by - ay, l2 = dx * dx + dy * dy;
	double f = l2 > 0 ? ((px - ax) * dx + (py - ay) * dy) / l2 : 0;
	f = f < 0 ? 0 : f > 1 ? 1 : f;
	double qx = ax + f * dx - px, qy = ay + f * dy - py;
	*t = f;
	return qx * qx + qy * qy;
}

static uint32_t rt_edge_find(const struct routing *r, uint32_t u, uint32_t v)
{
	uint32_t best = NONE;
	for (uint32_t e = r->first_out[u]; e < r->first_out[u + 1]; e++)
		if (r->to[e] == v && (best == NONE || r->w[e] < r->w[best]))
			best = e;
	return best;
}

/* May a route start (RMAP_FROM) or end (RMAP_TO) on edge e? */
static bool rt_edge_usable(const struct routing *r, uint32_t e, unsigned want)
{
	return e != NONE && (want == RMAP_FROM ? r->role[r->to[e]] & RMAP_FROM : r->role[r->from[e]] & RMAP_TO);
}

static void rt_snap_edge(const struct routing *r, double px, double py, uint32_t e, unsigned want, double *best2,
		      uint32_t *beste, double *bestt)
{
	uint32_t u = r->from[e], v = r->to[e];
	if (!rt_edge_usable(r, e, want) && !rt_edge_usable(r, rt_edge_find(r, v, u), want))
		return;
	double t, d2 = rt_seg_dist2(px, py, r->x[u], r->y[u], r->x[v], r->y[v], &t);
	if (d2 < *best2) {
		*best2 = d2;
		*beste = e;
		*bestt = t;
	}
}

static void rt_snap_cell(const struct routing *r, double px, double py, long cx, long cy, unsigned want,
		      double *best2, uint32_t *beste, double *bestt)
{
	if (cx < 0 || cy < 0 || cx >= (long)r->gw || cy >= (long)r->gh)
		return;
	uint32_t c = (uint32_t)cy * r->gw + (uint32_t)cx;
	for (uint32_t i = r->cell_first[c]; i < r->cell_first[c + 1]; i++)
		rt_snap_edge(r, px, py, r->cell_edges[i], want, best2, beste, bestt);
}

/* The nearest road segment within snap_max_m where a route may start
 * (want RMAP_FROM) or end (RMAP_TO), searched ring by ring. */
static bool rt_snap(const struct routing *r, double lat, double lon, unsigned want, struct snap *s)
{
	if (!isfinite(lat) || !isfinite(lon) || lat < -90 || lat > 90 || lon < -180 || lon > 180)
		return false;
	double px, py;
	rt_project(r, lat, lon, &px, &py);
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
	uint32_t e = NONE;
	for (long k = 0; k <= rings; k++) {
		if (k == 0) {
			rt_snap_cell(r, px, py, cx, cy, want, &best2, &e, &t);
		} else {
			for (long i = -k; i <= k; i++) {
				rt_snap_cell(r, px, py, cx + i, cy - k, want, &best2, &e, &t);
				rt_snap_cell(r, px, py, cx + i, cy + k, want, &best2, &e, &t);
			}
			for (long i = -k + 1; i <= k - 1; i++) {
				rt_snap_cell(r, px, py, cx - k, cy + i, want, &best2, &e, &t);
				rt_snap_cell(r, px, py, cx + k, cy + i, want, &best2, &e, &t);
			}
		}
		double reach = border + (double)k * r->cell_m;
		if (e != NONE && best2 <= reach * reach)
			break;
	}
	if (e == NONE || sqrt(best2) > r->snap_max_m)
		return false;
	uint32_t u = r->from[e], v = r->to[e];
	s->dist_m = sqrt(best2);
	s->lat = r->lat[u] + t * (r->lat[v] - r->lat[u]);
	s->lon = r->lon[u] + t * (r->lon[v] - r->lon[u]);
	if (u < v) {
		s->a = u, s->b = v, s->t = t, s->e_ab = e, s->e_ba = rt_edge_find(r, v, u);
	} else {
		s->a = v, s->b = u, s->t = 1 - t, s->e_ba = e, s->e_ab = rt_edge_find(r, v, u);
	}
	if (!rt_edge_usable(r, s->e_ab, want))
		s->e_ab = NONE;
	if (!rt_edge_usable(r, s->e_ba, want))
		s->e_ba = NONE;
	return true;
}

rh_err routing_nearest_road(const struct routing *r, double lat, double lon, bool brute, double *dist_m)
{
	if (!routing_loaded(r))
		return RH_EAGAIN;
	struct snap s;
	if (!brute) {
		if (!rt_snap(r, lat, lon, RMAP_FROM, &s))
			return RH_ENOTFOUND;
		*dist_m = s.dist_m;
		return RH_OK;
	}
	double px, py, best2 = INFINITY, t;
	uint32_t e = NONE;
	rt_project(r, lat, lon, &px, &py);
	for (uint32_t i = 0; i < r->m; i++)
		rt_snap_edge(r, px, py, i, RMAP_FROM, &best2, &e, &t);
	if (e == NONE || sqrt(best2) > r->snap_max_m)
		return RH_ENOTFOUND;
	*dist_m = sqrt(best2);
	return RH_OK;
}

static uint32_t rt_part_cost(const struct routing *r, uint32_t e, double frac)
{
	return (uint32_t)llround(frac * (double)r->w[e]);
}

/* Where a search from point s starts (forward) or ends (toward s). A point
 * on a node (a junction, a way's end) is that node too, at no cost, in
 * whichever direction the segment runs. */
#define SEEDS_MAX 3
static size_t rt_snap_seeds(const struct routing *r, const struct snap *s, bool outgoing, struct seed out[SEEDS_MAX])
{
	size_t n = 0;
	uint32_t any = s->e_ab != NONE ? s->e_ab : s->e_ba;
	if (s->t <= 0 || s->t >= 1)
		out[n++] = (struct seed){ s->t <= 0 ? s->a : s->b, 0, any, 0 };
	if (s->e_ab != NONE) {
		double f = outgoing ? 1 - s->t : s->t;
		out[n++] = (struct seed){ outgoing ? s->b : s->a, rt_part_cost(r, s->e_ab, f), s->e_ab, f };
	}
	if (s->e_ba != NONE) {
		double f = outgoing ? s->t : 1 - s->t;
		out[n++] = (struct seed){ outgoing ? s->a : s->b, rt_part_cost(r, s->e_ba, f), s->e_ba, f };
	}
	return n;
}

/* Both points on the same segment, the second ahead of the first. */
static uint32_t rt_direct_cost(const struct routing *r, const struct snap *s, const struct snap *t, uint32_t *edge,
			    double *frac)
{
	uint32_t best = INF;
	if (s->a != t->a || s->b != t->b)
		return INF;
	if (s->e_ab != NONE && s->t <= t->t) {
		best = rt_part_cost(r, s->e_ab, t->t - s->t);
		*edge = s->e_ab;
		*frac = t->t - s->t;
	}
	if (s->e_ba != NONE && s->t >= t->t && rt_part_cost(r, s->e_ba, s->t - t->t) < best) {
		best = rt_part_cost(r, s->e_ba, s->t - t->t);
		*edge = s->e_ba;
		*frac = s->t - t->t;
	}
	return best;
}

/* ------------------------------------------------------------ searches */

static void rt_search_reset(struct routing *r, struct search *s)
{
	if (++s->gen == 0) {
		memset(s->stamp, 0, r->n * sizeof *s->stamp);
		s->gen = 1;
	}
	s->h.n = 0;
}

static void rt_search_begin(struct routing *r)
{
	rt_search_reset(r, &r->fw);
	rt_search_reset(r, &r->bw);
}

static uint32_t rt_search_label(const struct routing *r, const struct search *s, uint32_t u)
{
	(void)r;
	return s->stamp[u] == s->gen ? s->dist[u] : INF;
}

static bool rt_search_relax(struct routing *r, struct search *s, uint32_t v, uint32_t d, uint32_t via)
{
	(void)r;
	if (s->stamp[v] == s->gen && s->dist[v] <= d)
		return false;
	s->stamp[v] = s->gen;
	s->dist[v] = d;
	s->parent[v] = via;
	rt_heap_push(&s->h, d, v);
	return true;
}

/* Pops stale entries; returns NONE when the heap is empty. */
static uint32_t rt_search_settle(struct routing *r, struct search *s, uint32_t *d)
{
	while (s->h.n) {
		uint64_t k = rt_heap_pop(&s->h);
		uint32_t u = (uint32_t)k, du = (uint32_t)(k >> 32);
		if (du == s->dist[u]) {
			*d = du;
			return u;
		}
	}
	return NONE;
}

struct meet {
	uint32_t cost;
	uint32_t node;     /* NONE: direct on one segment */
	uint32_t src_edge, dst_edge; /* partial pieces at both ends */
	double src_frac, dst_frac;
};

static void rt_search_seed(struct routing *r, struct search *s, const struct seed *sd, size_t n)
{
	for (size_t i = 0; i < n; i++)
		rt_search_relax(r, s, sd[i].node, sd[i].cost, NONE);
}

/* Plain Dijkstra forward from the source seeds: the reference. */
static void rt_search_dijkstra(struct routing *r, const struct seed *src, size_t ns, const struct seed *dst, size_t nd,
			    struct meet *best)
{
	struct search *f = &r->fw;
	rt_search_seed(r, f, src, ns);
	uint32_t du, u;
	while ((u = rt_search_settle(r, f, &du)) != NONE) {
		if (du >= best->cost)
			break;
		for (size_t i = 0; i < nd; i++)
			if (dst[i].node == u && rt_sat_add(du, dst[i].cost) < best->cost) {
				best->cost = rt_sat_add(du, dst[i].cost);
				best->node = u;
				best->dst_edge = dst[i].edge;
				best->dst_frac = dst[i].frac;
			}
		for (uint32_t e = r->first_out[u]; e < r->first_out[u + 1]; e++)
			rt_search_relax(r, f, r->to[e], rt_sat_add(du, r->w[e]), e);
	}
	/* the backward labels the path walk reads: only the chosen seed */
	if (best->node != NONE) {
		r->bw.stamp[best->node] = r->bw.gen;
		r->bw.parent[best->node] = NONE;
	}
}

static void rt_meet_check(struct routing *r, uint32_t v, const struct seed *dst, size_t nd, struct meet *best)
{
	uint32_t a = rt_search_label(r, &r->fw, v), b = rt_search_label(r, &r->bw, v);
	if (a == INF || b == INF)
		return;
	uint32_t c = rt_sat_add(a, b);
	if (c < best->cost) {
		best->cost = c;
		best->node = v;
	}
	(void)dst, (void)nd;
}

/* Bidirectional Dijkstra: forward from the source, backward (on the reverse
 * graph) from the target, the smaller frontier first; done when the two
 * frontiers' minima add up to the best meeting found. */
static void rt_search_bidir(struct routing *r, const struct seed *src, size_t ns, const struct seed *dst, size_t nd,
			 struct meet *best)
{
	struct search *f = &r->fw, *b = &r->bw;
	rt_search_seed(r, f, src, ns);
	rt_search_seed(r, b, dst, nd);
	for (size_t i = 0; i < ns; i++)
		rt_meet_check(r, src[i].node, dst, nd, best);
	for (;;) {
		uint32_t tf = rt_heap_top(&f->h), tb = rt_heap_top(&b->h);
		if (tf == INF && tb == INF)
			break;
		if ((uint64_t)(tf == INF ? 0 : tf) + (tb == INF ? 0 : tb) >= best->cost)
			break;
		uint32_t du, u;
		if (tf <= tb) {
			if ((u = rt_search_settle(r, f, &du)) == NONE)
				continue;
			for (uint32_t e = r->first_out[u]; e < r->first_out[u + 1]; e++)
				if (rt_search_relax(r, f, r->to[e], rt_sat_add(du, r->w[e]), e))
					rt_meet_check(r, r->to[e], dst, nd, best);
		} else {
			if ((u = rt_search_settle(r, b, &du)) == NONE)
				continue;
			for (uint32_t i = r->first_in[u]; i < r->first_in[u + 1]; i++) {
				uint32_t e = r->in_edge[i];
				if (rt_search_relax(r, b, r->from[e], rt_sat_add(du, r->w[e]), e))
					rt_meet_check(r, r->from[e], dst, nd, best);
			}
		}
	}
	if (best->node != NONE) {
		/* which target seed the backward walk ends on */
		uint32_t v = best->node;
		while (b->parent[v] != NONE)
			v = r->to[b->parent[v]];
		for (size_t i = 0; i < nd; i++)
			if (dst[i].node == v) {
				best->dst_edge = dst[i].edge;
				best->dst_frac = dst[i].frac;
			}
	}
}

static void rt_geom_reserve(struct routing *r)
{
	if (r->geom_cap < 2 * ((size_t)r->n + 4)) {
		r->geom_cap = 2 * ((size_t)r->n + 4);
		r->geom = rh_realloc(r->geom, r->geom_cap * sizeof *r->geom);
	}
}

/* Walks both parent chains from the meeting node: totals and geometry. */
static void rt_unpack(struct routing *r, const struct snap *s, const struct snap *t, const struct seed *src,
			 size_t ns, struct meet *best, bool want_geometry, struct route_result *out)
{
	uint64_t mm = 0, ms = 0;
	size_t np = 0;
	if (want_geometry)
		rt_geom_reserve(r);
	double *g = r->geom;
	if (want_geometry) {
		g[np * 2] = s->lon, g[np * 2 + 1] = s->lat, np++;
	}
	if (best->node == NONE) {
		mm = 0;
	} else {
		/* forward chain: collect edges backwards, then emit in order */
		uint32_t v = best->node;
		size_t cnt = 0;
		while (r->fw.parent[v] != NONE) {
			uint32_t e = r->fw.parent[v];
			mm += r->dist_mm[e];
			ms += r->time_ms[e];
			cnt++;
			v = r->from[e];
		}
		for (size_t i = 0; i < ns; i++)
			if (src[i].node == v) {
				best->src_edge = src[i].edge;
				best->src_frac = src[i].frac;
			}
		if (want_geometry) {
			np += cnt + 1;
			size_t k = np;
			v = best->node;
			for (;;) {
				k--;
				g[k * 2] = r->lon[v], g[k * 2 + 1] = r->lat[v];
				if (r->fw.parent[v] == NONE)
					break;
				v = r->from[r->fw.parent[v]];
			}
		}
		v = best->node;
		while (r->bw.parent[v] != NONE) {
			uint32_t e = r->bw.parent[v];
			mm += r->dist_mm[e];
			ms += r->time_ms[e];
			v = r->to[e];
			if (want_geometry) {
				g[np * 2] = r->lon[v], g[np * 2 + 1] = r->lat[v];
				np++;
			}
		}
	}
	double dm = (double)mm / 1000.0, dt = (double)ms / 1000.0;
	if (best->src_edge != NONE) {
		dm += best->src_frac * r->dist_mm[best->src_edge] / 1000.0;
		dt += best->src_frac * r->time_ms[best->src_edge] / 1000.0;
	}
	if (best->dst_edge != NONE) {
		dm += best->dst_frac * r->dist_mm[best->dst_edge] / 1000.0;
		dt += best->dst_frac * r->time_ms[best->dst_edge] / 1000.0;
	}
	if (want_geometry) {
		g[np * 2] = t->lon, g[np * 2 + 1] = t->lat, np++;
	}
	out->distance_m = dm;
	out->duration_s = dt;
	out->npoints = want_geometry ? np : 0;
	out->coords = want_geometry ? r->geom : NULL;
}

/* ------------------------------------------------------------ hierarchy */

static bool rt_ch_relax(struct search *s, uint32_t v, uint32_t d, uint32_t via, uint32_t from, uint32_t ms,
		     uint32_t mm)
{
	if (s->stamp[v] == s->gen && s->dist[v] <= d)
		return false;
	s->stamp[v] = s->gen;
	s->dist[v] = d;
	s->parent[v] = via;
	s->pred[v] = from;
	s->aux_ms[v] = ms;
	s->aux_mm[v] = mm;
	rt_heap_push(&s->h, d, v);
	return true;
}

static void rt_ch_seed(struct routing *r, struct search *s, const struct seed *sd, size_t n)
{
	for (size_t i = 0; i < n; i++)
		rt_ch_relax(s, sd[i].node, sd[i].cost, NONE, NONE, (uint32_t)llround(sd[i].frac * r->time_ms[sd[i].edge]),
			 (uint32_t)llround(sd[i].frac * r->dist_mm[sd[i].edge]));
}

/* Settles one node of an upward search; false when it is done. */
static bool rt_ch_step(struct routing *r, struct search *s, const struct search *other, bool forward, struct meet *best)
{
	uint32_t du, u = rt_search_settle(r, s, &du);
	if (u == NONE || du >= best->cost)
		return false;
	uint32_t o = rt_search_label(r, other, u);
	if (o != INF && rt_sat_add(du, o) < best->cost) {
		best->cost = rt_sat_add(du, o);
		best->node = u;
	}
	const uint32_t *first = forward ? r->ch.first_up : r->ch.first_down;
	const struct ch_edge *e = forward ? r->ch.up : r->ch.down;
	for (uint32_t i = first[u]; i < first[u + 1]; i++)
		rt_ch_relax(s, e[i].to, rt_sat_add(du, e[i].w), i, u, rt_sat_add(s->aux_ms[u], e[i].time_ms),
			 rt_sat_add(s->aux_mm[u], e[i].dist_mm));
	return true;
}

static void rt_search_ch(struct routing *r, const struct seed *src, size_t ns, const struct seed *dst, size_t nd,
		      struct meet *best)
{
	struct search *f = &r->fw, *b = &r->bw;
	rt_ch_seed(r, f, src, ns);
	rt_ch_seed(r, b, dst, nd);
	bool fl = true, bl = true;
	while (fl || bl) {
		if (fl && (!bl || rt_heap_top(&f->h) <= rt_heap_top(&b->h)))
			fl = rt_ch_step(r, f, b, true, best);
		else
			bl = rt_ch_step(r, b, f, false, best);
	}
}

/* The edge a->b of the hierarchy stored at node x (x = lower rank). */
static const struct ch_edge *rt_ch_find(const struct routing *r, uint32_t x, uint32_t other, bool up)
{
	const uint32_t *first = up ? r->ch.first_up : r->ch.first_down;
	const struct ch_edge *e = up ? r->ch.up : r->ch.down, *best = NULL;
	for (uint32_t i = first[x]; i < first[x + 1]; i++)
		if (e[i].to == other && (!best || e[i].w < best->w))
			best = &e[i];
	return best;
}

static void rt_geom_add(struct routing *r, size_t *np, uint32_t node)
{
	if (2 * (*np + 2) > r->geom_cap) {
		r->geom_cap = 2 * (*np + 2) * 2;
		r->geom = rh_realloc(r->geom, r->geom_cap * sizeof *r->geom);
	}
	r->geom[2 * *np] = r->lon[node];
	r->geom[2 * *np + 1] = r->lat[node];
	(*np)++;
}

/* Appends the road nodes of a->b (bypassing mid) after a, through b. An
 * explicit stack; a damaged hierarchy stops unpacking (never loops: every
 * mid ranks below both ends) and the point count is capped. */
static void rt_ch_unpack(struct routing *r, uint32_t a, uint32_t b, uint32_t mid, size_t *np)
{
	struct item {
		uint32_t a, b, mid;
	} stack[256];
	size_t sp = 0;
	stack[sp++] = (struct item){ a, b, mid };
	while (sp) {
		struct item it = stack[--sp];
		const struct ch_edge *e1 = NULL, *e2 = NULL;
		if (it.mid != NONE && sp + 2 <= RH_ARRAY_LEN(stack) && *np < 4 * (size_t)r->n + 16) {
			e1 = rt_ch_find(r, it.mid, it.a, false); /* a -> mid, stored at mid */
			e2 = rt_ch_find(r, it.mid, it.b, true);  /* mid -> b */
		}
		if (!e1 || !e2) {
			rt_geom_add(r, np, it.b);
			continue;
		}
		stack[sp++] = (struct item){ it.mid, it.b, e2->mid };
		stack[sp++] = (struct item){ it.a, it.mid, e1->mid };
	}
}

static void rt_unpack_ch(struct routing *r, const struct snap *s, const struct snap *t, struct meet *best,
			    bool want_geometry, struct route_result *out)
{
	size_t np = 0;
	if (best->node == NONE) { /* along one segment */
		out->distance_m = best->src_frac * r->dist_mm[best->src_edge] / 1000.0;
		out->duration_s = best->src_frac * r->time_ms[best->src_edge] / 1000.0;
	} else {
		uint32_t m = best->node;
		out->distance_m = ((double)r->fw.aux_mm[m] + r->bw.aux_mm[m]) / 1000.0;
		out->duration_s = ((double)r->fw.aux_ms[m] + r->bw.aux_ms[m]) / 1000.0;
	}
	if (!want_geometry) {
		out->npoints = 0;
		out->coords = NULL;
		return;
	}
	rt_geom_reserve(r);
	r->geom[0] = s->lon, r->geom[1] = s->lat;
	np = 1;
	if (best->node != NONE) {
		/* forward chain, seed to meeting node: collect, then unpack in order */
		size_t cnt = 0;
		for (uint32_t v = best->node; r->fw.parent[v] != NONE; v = r->fw.pred[v])
			cnt++;
		uint32_t *chain = rh_malloc((cnt + 1) * sizeof *chain);
		uint32_t v = best->node;
		for (size_t i = cnt; i > 0; i--) {
			chain[i - 1] = v;
			v = r->fw.pred[v];
		}
		rt_geom_add(r, &np, v);
		for (size_t i = 0; i < cnt; i++) {
			uint32_t node = chain[i];
			rt_ch_unpack(r, r->fw.pred[node], node, r->ch.up[r->fw.parent[node]].mid, &np);
		}
		rh_free(chain);
		for (v = best->node; r->bw.parent[v] != NONE; v = r->bw.pred[v])
			rt_ch_unpack(r, v, r->bw.pred[v], r->ch.down[r->bw.parent[v]].mid, &np);
	}
	if (2 * (np + 1) > r->geom_cap) {
		r->geom_cap = 2 * (np + 1);
		r->geom = rh_realloc(r->geom, r->geom_cap * sizeof *r->geom);
	}
	r->geom[2 * np] = t->lon, r->geom[2 * np + 1] = t->lat;
	np++;
	out->npoints = np;
	out->coords = r->geom;
}

rh_err routing_route_method(struct routing *r, double from_lat, double from_lon, double to_lat, double to_lon,
			    enum route_method method, bool want_geometry, struct route_result *out)
{
	memset(out, 0, sizeof *out);
	if (!routing_loaded(r))
		return RH_EAGAIN;
	struct snap s, t;
	if (!rt_snap(r, from_lat, from_lon, RMAP_FROM, &s)) {
		out->bad_point = ROUTE_POINT_FROM;
		return RH_EINVAL;
	}
	if (!rt_snap(r, to_lat, to_lon, RMAP_TO, &t)) {
		out->bad_point = ROUTE_POINT_TO;
		return RH_EINVAL;
	}
	out->from_snap_m = s.dist_m;
	out->to_snap_m = t.dist_m;
	struct seed src[SEEDS_MAX], dst[SEEDS_MAX];
	size_t ns = rt_snap_seeds(r, &s, true, src), nd = rt_snap_seeds(r, &t, false, dst);
	struct meet best = { INF, NONE, NONE, NONE, 0, 0 };
	uint32_t de = NONE;
	double dfrac = 0;
	uint32_t direct = rt_direct_cost(r, &s, &t, &de, &dfrac);
	if (direct != INF) {
		best.cost = direct;
		best.src_edge = de;
		best.src_frac = dfrac;
	}
	rt_search_begin(r);
	if (method == ROUTE_DIJKSTRA)
		rt_search_dijkstra(r, src, ns, dst, nd, &best);
	else if (method == ROUTE_BIDIR)
		rt_search_bidir(r, src, ns, dst, nd, &best);
	else
		rt_search_ch(r, src, ns, dst, nd, &best);
	if (best.cost == INF)
		return RH_ENOTFOUND;
	if (method == ROUTE_FAST) {
		rt_unpack_ch(r, &s, &t, &best, want_geometry, out);
		return RH_OK;
	}
	if (best.node != NONE)
		best.src_edge = NONE;
	rt_unpack(r, &s, &t, src, ns, &best, want_geometry, out);
	return RH_OK;
}

rh_err routing_route(struct routing *r, double from_lat, double from_lon, double to_lat, double to_lon,
		     bool want_geometry, struct route_result *out)
{
	return routing_route_method(r, from_lat, from_lon, to_lat, to_lon, ROUTE_FAST, want_geometry, out);
}

/* ------------------------------------------------------------ many-to-one */

/* One upward search from the target, complete (its space is small), then
 * per source an upward search that stops once it cannot beat what it met:
 * the target's half is shared by all k sources. */
rh_err routing_eta_many_to_one(struct routing *r, const double *src_lat, const double *src_lon, size_t k,
			       double to_lat, double to_lon, struct routing_eta *out)
{
	if (!routing_loaded(r))
		return RH_EAGAIN;
	struct snap t;
	if (!rt_snap(r, to_lat, to_lon, RMAP_TO, &t))
		return RH_EINVAL;
	struct seed dst[SEEDS_MAX];
	size_t nd = rt_snap_seeds(r, &t, false, dst);
	struct search *f = &r->fw, *b = &r->bw;
	rt_search_reset(r, b);
	rt_ch_seed(r, b, dst, nd);
	struct meet none = { INF, NONE, NONE, NONE, 0, 0 };
	rt_search_reset(r, f); /* empty: the backward search meets nothing */
	while (rt_ch_step(r, b, f, false, &none))
		;
	for (size_t i = 0; i < k; i++) {
		struct snap s;
		struct seed src[SEEDS_MAX];
		memset(&out[i], 0, sizeof out[i]);
		if (!rt_snap(r, src_lat[i], src_lon[i], RMAP_FROM, &s))
			continue;
		size_t ns = rt_snap_seeds(r, &s, true, src);
		struct meet best = { INF, NONE, NONE, NONE, 0, 0 };
		best.cost = rt_direct_cost(r, &s, &t, &best.src_edge, &best.src_frac);
		rt_search_reset(r, f);
		rt_ch_seed(r, f, src, ns);
		while (rt_ch_step(r, f, b, true, &best))
			;
		if (best.cost == INF)
			continue;
		out[i].reachable = true;
		if (best.node == NONE) {
			out[i].distance_m = best.src_frac * r->dist_mm[best.src_edge] / 1000.0;
			out[i].duration_s = best.src_frac * r->time_ms[best.src_edge] / 1000.0;
		} else {
			out[i].distance_m = ((double)f->aux_mm[best.node] + b->aux_mm[best.node]) / 1000.0;
			out[i].duration_s = ((double)f->aux_ms[best.node] + b->aux_ms[best.node]) / 1000.0;
		}
	}
	return RH_OK;
}

/* ------------------------------------------------------------ loading */

bool routing_loaded(const struct routing *r)
{
	return r != NULL && r->n > 0;
}

static void *rt_take(const uint8_t **p, size_t n)
{
	void *out = rh_malloc(n ? n : 1);
	memcpy(out, *p, n);
	*p += n;
	return out;
}

static bool rt_load_err(char *err, size_t errlen, const char *msg)
{
	snprintf(err, errlen, "%s", msg);
	return false;
}

static bool rt_validate(const struct routing *r, const int32_t *lat, const int32_t *lon, char *err,
			     size_t errlen)
{
	if (r->first_out[0] != 0 || r->first_out[r->n] != r->m)
		return rt_load_err(err, errlen, "edge index does not cover the edges");
	for (uint32_t u = 0; u < r->n; u++) {
		if (r->first_out[u] > r->first_out[u + 1])
			return rt_load_err(err, errlen, "edge index not in order");
		if (r->role[u] == 0 || r->role[u] > (RMAP_FROM | RMAP_TO))
			return rt_load_err(err, errlen, "node role out of range");
		if (lat[u] < -900000000 || lat[u] > 900000000 || lon[u] < -1800000000 || lon[u] > 1800000000)
			return rt_load_err(err, errlen, "node coordinate out of range");
	}
	for (uint32_t e = 0; e < r->m; e++)
		if (r->to[e] >= r->n)
			return rt_load_err(err, errlen, "edge points past the last node");
	return true;
}

static bool rt_ch_index_ok(const uint32_t *first, uint32_t n, uint32_t count)
{
	if (first[0] != 0 || first[n] != count)
		return false;
	for (uint32_t u = 0; u < n; u++)
		if (first[u] > first[u + 1])
			return false;
	return true;
}

static bool rt_ch_edges_ok(const struct ch_graph *g, const uint32_t *first, const struct ch_edge *e)
{
	for (uint32_t x = 0; x < g->n; x++)
		for (uint32_t i = first[x]; i < first[x + 1]; i++) {
			if (e[i].to >= g->n || g->rank[e[i].to] <= g->rank[x])
				return false;
			if (e[i].mid != NONE && (e[i].mid >= g->n || g->rank[e[i].mid] >= g->rank[x]))
				return false;
		}
	return true;
}

/* One metric's hierarchy: kept (and checked) when it is the configured one,
 * else skipped (the checksum already covered it). */
static bool rt_ch_read(struct routing *r, const uint8_t **p, const uint8_t *end, bool keep, char *err, size_t errlen)
{
	uint32_t counts[2];
	if (end - *p < 8)
		return rt_load_err(err, errlen, "hierarchy section missing");
	memcpy(counts, *p, 8);
	*p += 8;
	uint64_t n = r->n;
	uint64_t size = n * 4 + (n + 1) * 8 + ((uint64_t)counts[0] + counts[1]) * sizeof(struct ch_edge);
	if (counts[0] > 2u * RMAP_MAX_EDGES || counts[1] > 2u * RMAP_MAX_EDGES || size > (uint64_t)(end - *p))
		return rt_load_err(err, errlen, "hierarchy section larger than the file");
	if (!keep) {
		*p += size;
		return true;
	}
	struct ch_graph *g = &r->ch;
	g->n = r->n, g->nup = counts[0], g->ndown = counts[1];
	g->rank = rt_take(p, n * 4);
	g->first_up = rt_take(p, (n + 1) * 4);
	g->first_down = rt_take(p, (n + 1) * 4);
	g->up = rt_take(p, (size_t)g->nup * sizeof *g->up);
	g->down = rt_take(p, (size_t)g->ndown * sizeof *g->down);
	uint8_t *seen = rh_calloc(n, 1);
	bool perm = true;
	for (uint32_t u = 0; u < r->n && perm; u++) {
		perm = g->rank[u] < r->n && !seen[g->rank[u]];
		if (perm)
			seen[g->rank[u]] = 1;
	}
	rh_free(seen);
	if (!perm)
		return rt_load_err(err, errlen, "hierarchy ranks are not a permutation");
	if (!rt_ch_index_ok(g->first_up, r->n, g->nup) || !rt_ch_index_ok(g->first_down, r->n, g->ndown))
		return rt_load_err(err, errlen, "hierarchy edge index out of order");
	if (!rt_ch_edges_ok(g, g->first_up, g->up) || !rt_ch_edges_ok(g, g->first_down, g->down))
		return rt_load_err(err, errlen, "hierarchy edge breaks the rank order");
	r->bytes += (size_t)n * 12 + ((size_t)g->nup + g->ndown) * sizeof(struct ch_edge);
	return true;
}

static void rt_build_reverse(struct routing *r)
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
}

static void rt_cell_range(const struct routing *r, double v0, double v1, double origin, uint32_t cells, uint32_t *lo,
		       uint32_t *hi)
{
	double a = floor((fmin(v0, v1) - origin) / r->cell_m), b = floor((fmax(v0, v1) - origin) / r->cell_m);
	*lo = a < 0 ? 0 : a >= cells ? cells - 1 : (uint32_t)a;
	*hi = b < 0 ? 0 : b >= cells ? cells - 1 : (uint32_t)b;
}

/* Cell listings the grid would hold: long edges (or a hostile file) touch
 * many cells. */
static uint64_t rt_grid_listings(const struct routing *r)
{
	uint64_t total = 0;
	for (uint32_t e = 0; e < r->m; e++) {
		uint32_t cx0, cx1, cy0, cy1;
		rt_cell_range(r, r->x[r->from[e]], r->x[r->to[e]], r->gx0, r->gw, &cx0, &cx1);
		rt_cell_range(r, r->y[r->from[e]], r->y[r->to[e]], r->gy0, r->gh, &cy0, &cy1);
		total += (uint64_t)(cx1 - cx0 + 1) * (cy1 - cy0 + 1);
	}
	return total;
}

/* The grid: every edge listed in each cell its bounding box touches. Cells
 * of 100 m, coarser when the map is large or its edges long. */
static void rt_build_grid(struct routing *r)
{
	double x0 = INFINITY, y0 = INFINITY, x1 = -INFINITY, y1 = -INFINITY;
	for (uint32_t u = 0; u < r->n; u++) {
		x0 = fmin(x0, r->x[u]), x1 = fmax(x1, r->x[u]);
		y0 = fmin(y0, r->y[u]), y1 = fmax(y1, r->y[u]);
	}
	r->cell_m = 50;
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
		 rt_grid_listings(r) > 8 * (uint64_t)r->m + (uint64_t)r->gw * r->gh);
	size_t cells = (size_t)r->gw * r->gh;
	r->cell_first = rh_calloc(cells + 1, sizeof *r->cell_first);
	for (int pass = 0; pass < 2; pass++) {
		uint32_t *fill = NULL;
		if (pass == 1) {
			for (size_t c = 0; c < cells; c++)
				r->cell_first[c + 1] += r->cell_first[c];
			r->cell_edges = rh_malloc(((size_t)r->cell_first[cells] + 1) * sizeof *r->cell_edges);
			fill = rh_malloc((cells + 1) * sizeof *fill);
			memcpy(fill, r->cell_first, (cells + 1) * sizeof *fill);
		}
		for (uint32_t e = 0; e < r->m; e++) {
			uint32_t u = r->from[e], v = r->to[e];
			/* a two-way road is listed once: its lower-numbered direction */
			if (u > v && rt_edge_find(r, v, u) != NONE)
				continue;
			uint32_t cx0, cx1, cy0, cy1;
			rt_cell_range(r, r->x[u], r->x[v], r->gx0, r->gw, &cx0, &cx1);
			rt_cell_range(r, r->y[u], r->y[v], r->gy0, r->gh, &cy0, &cy1);
			for (uint32_t cy = cy0; cy <= cy1; cy++)
				for (uint32_t cx = cx0; cx <= cx1; cx++) {
					size_t c = (size_t)cy * r->gw + cx;
					if (pass == 0)
						r->cell_first[c + 1]++;
					else
						r->cell_edges[fill[c]++] = e;
				}
		}
		rh_free(fill);
	}
	r->bytes += (cells + 1 + r->cell_first[cells]) * sizeof(uint32_t);
}

static void rt_prepare(struct routing *r, const int32_t *lat, const int32_t *lon)
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
		rt_project(r, r->lat[u], r->lon[u], &r->x[u], &r->y[u]);
	r->w = rh_malloc(((size_t)r->m + 1) * sizeof *r->w);
	for (uint32_t e = 0; e < r->m; e++)
		r->w[e] = rmap_weight(r->metric, r->time_ms[e], r->dist_mm[e]);
	rt_build_reverse(r);
	rt_build_grid(r);
	struct search *s[2] = { &r->fw, &r->bw };
	for (int i = 0; i < 2; i++) {
		s[i]->dist = rh_malloc(r->n * sizeof(uint32_t));
		s[i]->stamp = rh_calloc(r->n, sizeof(uint32_t));
		s[i]->parent = rh_malloc(r->n * sizeof(uint32_t));
		s[i]->pred = rh_malloc(r->n * sizeof(uint32_t));
		s[i]->aux_ms = rh_malloc(r->n * sizeof(uint32_t));
		s[i]->aux_mm = rh_malloc(r->n * sizeof(uint32_t));
	}
	r->bytes += (size_t)r->n * (4 * sizeof(double) + 4 * 2 + 4 * 3 * 2 + 4 * 2 + 4) +
		    (size_t)r->m * 4 * 7;
}

rh_err routing_load_buffer(const void *data, size_t len, const struct routing_cfg *cfg, struct routing **out,
			   char *err, size_t errlen)
{
	*out = NULL;
	struct rmap_header h;
	if (len < RMAP_HEADER_SIZE) {
		snprintf(err, errlen, "truncated map file (%zu bytes, no complete header)", len);
		return RH_EINVAL;
	}
	memcpy(&h, data, sizeof h);
	if (memcmp(h.magic, RMAP_MAGIC, 8) != 0) {
		snprintf(err, errlen, "not a ridehail map file (bad magic); make one with `ridehaild map import`");
		return RH_EINVAL;
	}
	if (h.version != RMAP_VERSION) {
		snprintf(err, errlen, "map file version %u, this build reads %u: import the map again", h.version,
			 RMAP_VERSION);
		return RH_EINVAL;
	}
	if (h.nodes == 0 || h.nodes > RMAP_MAX_NODES || h.edges > RMAP_MAX_EDGES ||
	    h.body_len < rmap_body_len(h.nodes, h.edges)) {
		snprintf(err, errlen, "map header is inconsistent (%u nodes, %u edges, %llu body bytes)", h.nodes,
			 h.edges, (unsigned long long)h.body_len);
		return RH_EINVAL;
	}
	if (len - RMAP_HEADER_SIZE != h.body_len) {
		snprintf(err, errlen, "map file is %s: %zu body bytes, header says %llu",
			 len - RMAP_HEADER_SIZE < h.body_len ? "truncated" : "too long", len - RMAP_HEADER_SIZE,
			 (unsigned long long)h.body_len);
		return RH_EINVAL;
	}
	const uint8_t *p = (const uint8_t *)data + RMAP_HEADER_SIZE;
	uint8_t hash[RMAP_HASH_SIZE];
	crypto_generichash(hash, sizeof hash, p, h.body_len, NULL, 0);
	if (sodium_memcmp(hash, h.hash, sizeof hash) != 0) {
		snprintf(err, errlen, "map file is corrupt (checksum mismatch)");
		return RH_EINVAL;
	}
	struct routing *r = RH_NEW(struct routing);
	r->n = h.nodes, r->m = h.edges;
	r->metric = cfg->metric;
	r->snap_max_m = (double)cfg->snap_max_distance_m;
	int32_t *lat = rt_take(&p, (size_t)r->n * 4), *lon = rt_take(&p, (size_t)r->n * 4);
	r->role = rt_take(&p, r->n);
	r->first_out = rt_take(&p, ((size_t)r->n + 1) * 4);
	r->to = rt_take(&p, (size_t)r->m * 4);
	r->time_ms = rt_take(&p, (size_t)r->m * 4);
	r->dist_mm = rt_take(&p, (size_t)r->m * 4);
	const uint8_t *end = (const uint8_t *)data + len;
	bool ok = rt_validate(r, lat, lon, err, errlen);
	for (int metric = 0; metric < 2 && ok; metric++)
		ok = rt_ch_read(r, &p, end, metric == r->metric, err, errlen);
	if (ok && p != end)
		ok = rt_load_err(err, errlen, "trailing bytes after the hierarchies");
	if (!ok) {
		rh_free(lat);
		rh_free(lon);
		routing_free(r);
		return RH_EINVAL;
	}
	rt_prepare(r, lat, lon);
	rh_free(lat);
	rh_free(lon);
	*out = r;
	return RH_OK;
}

rh_err routing_load(const char *map_path, const struct routing_cfg *cfg, struct routing **out, char *err,
		    size_t errlen)
{
	*out = NULL;
	FILE *f = fopen(map_path, "rb");
	if (!f) {
		snprintf(err, errlen, "cannot open map %s: %s", map_path, strerror(errno));
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
	fclose(f);
	if (failed) {
		rh_free(buf);
		snprintf(err, errlen, "cannot read map %s", map_path);
		return RH_EIO;
	}
	char why[256];
	rh_err e = routing_load_buffer(buf, len, cfg, out, why, sizeof why);
	rh_free(buf);
	if (e != RH_OK)
		snprintf(err, errlen, "map %s: %s", map_path, why);
	return e;
}

void routing_free(struct routing *r)
{
	if (!r)
		return;
	void *ptrs[] = { r->role, r->lat, r->lon, r->x, r->y, r->first_out, r->to, r->time_ms, r->dist_mm, r->w,
			 r->first_in, r->in_edge, r->from, r->cell_first, r->cell_edges, r->fw.dist,
			 r->fw.stamp, r->fw.parent, r->fw.h.k, r->bw.dist, r->bw.stamp, r->bw.parent,
			 r->bw.h.k, r->geom, r->fw.pred, r->fw.aux_ms, r->fw.aux_mm, r->bw.pred,
			 r->bw.aux_ms, r->bw.aux_mm };
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
	st->min_lat = r->min_lat, st->min_lon = r->min_lon;
	st->max_lat = r->max_lat, st->max_lon = r->max_lon;
}
