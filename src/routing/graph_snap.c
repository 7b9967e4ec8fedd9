/* Snapping a point onto the nearest usable road (the grid of segments), and
 * the seeds a search starts from or ends at on the snapped edges. */
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

/* ------------------------------------------------------------ geometry */

void graph_project(const struct routing *r, double lat, double lon, double *x, double *y)
{
	*x = (lon - r->lon0) * DEG * EARTH_R * r->coslat0;
	*y = (lat - r->lat0) * DEG * EARTH_R;
}

/* Squared distance from p to segment a-b, and the fraction along it. */
double graph_seg_dist2(double px, double py, double ax, double ay, double bx, double by, double *t)
{
	double dx = bx - ax, dy = by - ay, l2 = dx * dx + dy * dy;
	double f = l2 > 0 ? ((px - ax) * dx + (py - ay) * dy) / l2 : 0;
	f = f < 0 ? 0 : f > 1 ? 1 : f;
	double qx = ax + f * dx - px, qy = ay + f * dy - py;
	*t = f;
	return qx * qx + qy * qy;
}

uint32_t graph_edge_find(const struct routing *r, uint32_t u, uint32_t v)
{
	uint32_t best = NONE;
	for (uint32_t e = r->first_out[u]; e < r->first_out[u + 1]; e++)
		if (r->to[e] == v && (best == NONE || r->w[e] < r->w[best]))
			best = e;
	return best;
}

/* May a route start (RMAP_FROM) or end (RMAP_TO) on edge e? */
bool graph_edge_usable(const struct routing *r, uint32_t e, unsigned want)
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
bool graph_snap(const struct routing *r, double lat, double lon, unsigned want, struct snap *s)
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
void graph_seeds_from(const struct routing *r, const struct snap *s, struct seeds *v)
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
void graph_seeds_to(const struct routing *r, const struct snap *t, struct seeds *v)
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
uint32_t graph_direct_cost(const struct routing *r, const struct snap *s, const struct snap *t, uint32_t *edge,
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
