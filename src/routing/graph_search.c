/* The shortest-path searches over the turn graph: the heap, Dijkstra,
 * bidirectional, the contraction hierarchy's; unpacking a path into
 * geometry and timings; many-to-many ETAs (buckets). */
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

/* ------------------------------------------------------------ searches */

void graph_search_reset(struct routing *r, struct search *s)
{
	if (++s->gen == 0) {
		for (uint32_t i = 0; i <= r->xn; i++)
			s->lab[i].stamp = 0;
		s->gen = 1;
	}
	s->h.n = 0;
}

void graph_search_begin(struct routing *r)
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
void graph_search_dijkstra(struct routing *r, const struct seeds *src, const struct seeds *dst, struct meet *best)
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
void graph_search_bidir(struct routing *r, const struct seeds *src, const struct seeds *dst, struct meet *best)
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

void graph_geom_point(struct routing *r, size_t *np, double lat, double lon)
{
	if (2 * (*np + 2) > r->geom_cap) {
		r->geom_cap = 2 * (*np + 2) * 2;
		r->geom = rh_realloc(r->geom, r->geom_cap * sizeof *r->geom);
	}
	r->geom[2 * *np] = lon;
	r->geom[2 * *np + 1] = lat;
	(*np)++;
}


static void graph_walk_node(struct routing *r, const struct graph_walk *w, size_t *np, uint32_t x)
{
	if (w->geometry)
		graph_geom_add(r, np, x);
	if (w->class_ms)
		w->class_ms[r->cls[r->xroad[x]]] += r->ff_ms[r->xroad[x]];
}

void graph_walk_part(const struct routing *r, const struct graph_walk *w, uint32_t e, double frac)
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
void graph_unpack_plain(struct routing *r, const struct seeds *src, const struct seeds *dst,
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
void graph_ch_seed(const struct routing *r, struct search *s, const struct seeds *sd)
{
	for (size_t i = 0; i < sd->n; i++)
		graph_relax(s, r->ch_pos[sd->v[i].node], sd->v[i].cost, NONE, NONE, sd->v[i].ms, sd->v[i].mm);
}

/* Settles one node of an upward search; false when it is done. */
bool graph_ch_step(struct routing *r, struct search *s, const struct search *other, bool forward, struct meet *best)
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

void graph_search_ch(struct routing *r, const struct seeds *src, const struct seeds *dst, struct meet *best)
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

void graph_unpack_ch(struct routing *r, const struct seeds *src, const struct seeds *dst, const struct meet *best,
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
