/* Contraction hierarchies, built at import: nodes are contracted one by one,
 * least important first (edge difference plus contracted neighbours); a
 * shortcut u->v via x is added only when a bounded witness search finds no
 * path u->v avoiding x as short as u->x->v. Each node keeps its edges to the
 * nodes contracted after it: the upward forward edges (x->v) and the upward
 * backward edges (u->x, stored at x). A query searches upward from both ends
 * (graph.c). Pure computation. */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "graph.h"

#define NONE UINT32_MAX
#define WITNESS_SETTLE_MAX 600

struct dyn_list {
	struct ch_edge *e;
	uint32_t n, cap;
};

struct ch_builder {
	uint32_t n;
	struct dyn_list *out, *in;
	bool *done;
	uint32_t *deleted;
	int32_t *prio;
	/* witness search */
	uint32_t *dist, *stamp, gen;
	uint64_t *heap;
	size_t hn, hcap;
	/* priority queue */
	uint64_t *pq;
	size_t pn, pcap;
	/* result */
	struct dyn_list *up, *down;
};

static void ch_list_add(struct dyn_list *l, const struct ch_edge *e)
{
	for (uint32_t i = 0; i < l->n; i++) {
		if (l->e[i].to != e->to)
			continue;
		if (e->w < l->e[i].w)
			l->e[i] = *e;
		return;
	}
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 4;
		l->e = rh_realloc(l->e, l->cap * sizeof *l->e);
	}
	l->e[l->n++] = *e;
}

static void ch_list_compact(struct dyn_list *l, const bool *done)
{
	uint32_t k = 0;
	for (uint32_t i = 0; i < l->n; i++)
		if (!done[l->e[i].to])
			l->e[k++] = l->e[i];
	l->n = k;
}

static void ch_heap_push(uint64_t **h, size_t *n, size_t *cap, uint64_t key)
{
	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 1024;
		*h = rh_realloc(*h, *cap * sizeof **h);
	}
	size_t i = (*n)++;
	while (i > 0 && (*h)[(i - 1) / 2] > key) {
		(*h)[i] = (*h)[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	(*h)[i] = key;
}

static uint64_t ch_heap_pop(uint64_t *h, size_t *n)
{
	uint64_t top = h[0], last = h[--*n];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= *n)
			break;
		if (c + 1 < *n && h[c + 1] < h[c])
			c++;
		if (h[c] >= last)
			break;
		h[i] = h[c];
		i = c;
	}
	if (*n)
		h[i] = last;
	return top;
}

static uint32_t ch_sat_add(uint32_t a, uint32_t b)
{
	uint64_t s = (uint64_t)a + b;
	return s >= UINT32_MAX ? UINT32_MAX - 1 : (uint32_t)s;
}

/* Dijkstra from s over live nodes, avoiding x, up to limit. */
static void ch_witness(struct ch_builder *b, uint32_t s, uint32_t x, uint32_t limit)
{
	if (++b->gen == 0) {
		memset(b->stamp, 0, b->n * sizeof *b->stamp);
		b->gen = 1;
	}
	b->hn = 0;
	b->stamp[s] = b->gen;
	b->dist[s] = 0;
	ch_heap_push(&b->heap, &b->hn, &b->hcap, s);
	unsigned settled = 0;
	while (b->hn) {
		uint64_t k = ch_heap_pop(b->heap, &b->hn);
		uint32_t u = (uint32_t)k, d = (uint32_t)(k >> 32);
		if (d != b->dist[u])
			continue;
		if (d > limit || ++settled > WITNESS_SETTLE_MAX)
			break;
		const struct dyn_list *l = &b->out[u];
		for (uint32_t i = 0; i < l->n; i++) {
			uint32_t v = l->e[i].to;
			if (v == x || b->done[v])
				continue;
			uint32_t nd = ch_sat_add(d, l->e[i].w);
			if (b->stamp[v] == b->gen && b->dist[v] <= nd)
				continue;
			b->stamp[v] = b->gen;
			b->dist[v] = nd;
			ch_heap_push(&b->heap, &b->hn, &b->hcap, (uint64_t)nd << 32 | v);
		}
	}
}

/* Shortcuts contracting x would need; added when !simulate. */
static uint32_t ch_contract(struct ch_builder *b, uint32_t x, bool simulate)
{
	struct dyn_list *in = &b->in[x], *out = &b->out[x];
	ch_list_compact(in, b->done);
	ch_list_compact(out, b->done);
	uint32_t maxout = 0, count = 0;
	for (uint32_t j = 0; j < out->n; j++)
		if (out->e[j].w > maxout)
			maxout = out->e[j].w;
	for (uint32_t i = 0; i < in->n; i++) {
		const struct ch_edge ux = in->e[i]; /* .to is u */
		uint32_t u = ux.to;
		ch_witness(b, u, x, ch_sat_add(ux.w, maxout));
		for (uint32_t j = 0; j < out->n; j++) {
			const struct ch_edge *xv = &out->e[j];
			uint32_t v = xv->to;
			if (v == u)
				continue;
			uint32_t need = ch_sat_add(ux.w, xv->w);
			if (b->stamp[v] == b->gen && b->dist[v] <= need)
				continue;
			count++;
			if (simulate)
				continue;
			struct ch_edge sc = { v, need, ch_sat_add(ux.time_ms, xv->time_ms), ch_sat_add(ux.dist_mm, xv->dist_mm), x };
			ch_list_add(&b->out[u], &sc);
			sc.to = u;
			ch_list_add(&b->in[v], &sc);
		}
	}
	return count;
}

static int32_t ch_priority(struct ch_builder *b, uint32_t x)
{
	uint32_t sc = ch_contract(b, x, true);
	return 2 * (int32_t)sc - (int32_t)(b->in[x].n + b->out[x].n) + (int32_t)b->deleted[x];
}

static void ch_queue_push(struct ch_builder *b, uint32_t x)
{
	b->prio[x] = ch_priority(b, x);
	uint64_t key = (uint64_t)(uint32_t)(b->prio[x] + (1 << 30)) << 32 | x;
	ch_heap_push(&b->pq, &b->pn, &b->pcap, key);
}

/* The builder's lists for the n-node graph in CSR, self-loops left out. */
static void ch_builder_init(struct ch_builder *b, uint32_t n, const uint32_t *first_out, const uint32_t *to,
			    const uint32_t *time_ms, const uint32_t *dist_mm, int metric)
{
	*b = (struct ch_builder){ .n = n };
	b->out = rh_calloc(n, sizeof *b->out);
	b->in = rh_calloc(n, sizeof *b->in);
	b->up = rh_calloc(n, sizeof *b->up);
	b->down = rh_calloc(n, sizeof *b->down);
	b->done = rh_calloc(n, sizeof *b->done);
	b->deleted = rh_calloc(n, sizeof *b->deleted);
	b->prio = rh_calloc(n, sizeof *b->prio);
	b->dist = rh_calloc(n, sizeof *b->dist);
	b->stamp = rh_calloc(n, sizeof *b->stamp);
	for (uint32_t u = 0; u < n; u++)
		for (uint32_t e = first_out[u]; e < first_out[u + 1]; e++) {
			if (to[e] == u)
				continue;
			struct ch_edge ce = { to[e], mapfile_weight(metric, time_ms[e], dist_mm[e]), time_ms[e], dist_mm[e], NONE };
			ch_list_add(&b->out[u], &ce);
			ce.to = u;
			ch_list_add(&b->in[to[e]], &ce);
		}
}

/* Contracts x: its shortcuts added, what remains around it kept as its
 * upward and downward edges, its neighbours' priorities renewed. */
static void ch_settle(struct ch_builder *b, uint32_t x)
{
	ch_contract(b, x, false);
	ch_list_compact(&b->in[x], b->done);
	ch_list_compact(&b->out[x], b->done);
	/* what remains around x leads upward */
	for (uint32_t j = 0; j < b->out[x].n; j++)
		ch_list_add(&b->up[x], &b->out[x].e[j]);
	for (uint32_t j = 0; j < b->in[x].n; j++)
		ch_list_add(&b->down[x], &b->in[x].e[j]);
	b->done[x] = true;
	for (uint32_t j = 0; j < b->out[x].n; j++)
		b->deleted[b->out[x].e[j].to]++;
	for (uint32_t j = 0; j < b->in[x].n; j++)
		b->deleted[b->in[x].e[j].to]++;
	for (uint32_t j = 0; j < b->out[x].n; j++)
		ch_queue_push(b, b->out[x].e[j].to);
	for (uint32_t j = 0; j < b->in[x].n; j++)
		ch_queue_push(b, b->in[x].e[j].to);
	rh_free(b->out[x].e);
	rh_free(b->in[x].e);
	b->out[x] = (struct dyn_list){ 0 };
	b->in[x] = (struct dyn_list){ 0 };
}

/* The upward and downward edges into out, in CSR; the builder freed. */
static void ch_flatten(struct ch_builder *b, struct ch_graph *out)
{
	uint32_t n = b->n;
	struct dyn_list *lists[2] = { b->up, b->down };
	uint32_t **firsts[2] = { &out->first_up, &out->first_down };
	struct ch_edge **edges[2] = { &out->up, &out->down };
	uint32_t *counts[2] = { &out->nup, &out->ndown };
	for (int s = 0; s < 2; s++) {
		uint32_t *first = rh_malloc(((size_t)n + 1) * sizeof *first);
		first[0] = 0;
		for (uint32_t x = 0; x < n; x++)
			first[x + 1] = first[x] + lists[s][x].n;
		struct ch_edge *e = rh_malloc(((size_t)first[n] + 1) * sizeof *e);
		for (uint32_t x = 0; x < n; x++) {
			if (lists[s][x].n)
				memcpy(e + first[x], lists[s][x].e, lists[s][x].n * sizeof *e);
			rh_free(lists[s][x].e);
		}
		*firsts[s] = first;
		*edges[s] = e;
		*counts[s] = first[n];
	}
	void *ptrs[] = { b->out, b->in, b->up, b->down, b->done, b->deleted, b->prio, b->dist, b->stamp, b->heap, b->pq };
	for (size_t i = 0; i < RH_ARRAY_LEN(ptrs); i++)
		rh_free(ptrs[i]);
}

rh_err ch_build(uint32_t n, const uint32_t *first_out, const uint32_t *to, const uint32_t *time_ms,
		const uint32_t *dist_mm, int metric, struct ch_graph *out)
{
	struct ch_builder b;
	ch_builder_init(&b, n, first_out, to, time_ms, dist_mm, metric);
	for (uint32_t x = 0; x < n; x++)
		ch_queue_push(&b, x);
	uint32_t *rank = rh_malloc(((size_t)n + 1) * sizeof *rank);
	uint32_t next = 0;
	while (b.pn) {
		uint64_t k = ch_heap_pop(b.pq, &b.pn);
		uint32_t x = (uint32_t)k;
		int32_t p = (int32_t)(uint32_t)(k >> 32) - (1 << 30);
		if (b.done[x] || p != b.prio[x])
			continue;
		int32_t now = ch_priority(&b, x);
		if (b.pn && now > p) {
			b.prio[x] = now;
			ch_heap_push(&b.pq, &b.pn, &b.pcap, (uint64_t)(uint32_t)(now + (1 << 30)) << 32 | x);
			continue;
		}
		ch_settle(&b, x);
		rank[x] = next++;
	}
	out->n = n;
	out->rank = rank;
	ch_flatten(&b, out);
	return RH_OK;
}

void ch_graph_fini(struct ch_graph *g)
{
	rh_free(g->rank);
	rh_free(g->first_up);
	rh_free(g->up);
	rh_free(g->first_down);
	rh_free(g->down);
	memset(g, 0, sizeof *g);
}
