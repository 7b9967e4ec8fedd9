/* Turn restrictions and the turn graph of the import (`map import`): each
 * OSM restriction relation resolved into road edges of the kept graph (via
 * a node or via ways), then the graph whose nodes are road edges and whose
 * arcs are the turns allowed, with copies of via edges for the via-way
 * restrictions. */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "graph.h"
#include "import_internal.h"

static void import_list_add(struct u32_list *l, uint32_t x)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 4;
		l->v = rh_realloc(l->v, l->cap * sizeof *l->v);
	}
	l->v[l->n++] = x;
}

static bool import_list_has(const struct u32_list *l, uint32_t x)
{
	for (uint32_t i = 0; i < l->n; i++)
		if (l->v[i] == x)
			return true;
	return false;
}

void import_turns_fini(struct import_turns *t)
{
	rh_free(t->rs);
	rh_free(t->via.v);
}

static uint32_t import_find_edge(const struct mapfile_data *d, uint32_t u, uint32_t v)
{
	if (u == NONE || v == NONE)
		return NONE;
	for (uint32_t e = d->first_out[u]; e < d->first_out[u + 1]; e++)
		if (d->to[e] == v)
			return e;
	return NONE;
}

static const struct osm_way *import_way_find(const struct importer *im, const uint32_t *byid, long long id)
{
	size_t lo = 0, hi = im->nways;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (im->ways[byid[mid]].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < im->nways && im->ways[byid[lo]].id == id ? &im->ways[byid[lo]] : NULL;
}

static uint32_t import_final(const struct importer *im, const uint32_t *final, long long osm_id)
{
	size_t i = import_node_find(im, osm_id);
	return i == SIZE_MAX ? NONE : final[i];
}

/* The edges of way w that touch node v: into v (into true) or out of it;
 * skip (a node, or NONE) is left out. A way that passes through v (rather
 * than ending there) gives both of its sides. */
static void import_way_edges_at(const struct importer *im, const uint32_t *final, const struct mapfile_data *d,
				const struct osm_way *w, uint32_t v, bool into, uint32_t skip, struct u32_list *out)
{
	for (size_t k = 0; k < w->count; k++) {
		if (import_final(im, final, im->refs[w->first + k]) != v)
			continue;
		for (int side = -1; side <= 1; side += 2) {
			if ((side < 0 && k == 0) || (side > 0 && k + 1 >= w->count))
				continue;
			uint32_t nb = import_final(im, final, im->refs[w->first + k + side]);
			if (nb == NONE || nb == skip)
				continue;
			uint32_t e = into ? import_find_edge(d, nb, v) : import_find_edge(d, v, nb);
			if (e != NONE && !import_list_has(out, e))
				import_list_add(out, e);
		}
	}
}

static int import_wayidx_cmp(const void *a, const void *b, void *ctx)
{
	const struct osm_way *w = ctx;
	long long x = w[*(const uint32_t *)a].id, y = w[*(const uint32_t *)b].id;
	return x < y ? -1 : x > y;
}

/* Walks the via ways from the end they share with a from way: their road
 * nodes in order, in path (NONE-free), or false when they do not chain. */
static bool import_via_path(const struct importer *im, const uint32_t *final, const uint32_t *byid,
			    const struct osm_restr *rs, struct u32_list *path)
{
	const long long *ids = im->rrefs + rs->first;
	path->n = 0;
	uint32_t cur = NONE;
	for (size_t i = 0; i < rs->nvia; i++) {
		const struct osm_way *v = import_way_find(im, byid, ids[rs->nfrom + i]);
		if (!v)
			return false;
		uint32_t a = import_final(im, final, im->refs[v->first]);
		uint32_t b = import_final(im, final, im->refs[v->first + v->count - 1]);
		if (i == 0) {
			/* the end the from way touches */
			bool touch_a = false, touch_b = false;
			for (size_t f = 0; f < rs->nfrom; f++) {
				const struct osm_way *fw = import_way_find(im, byid, ids[f]);
				for (size_t k = 0; fw && k < fw->count; k++) {
					uint32_t x = import_final(im, final, im->refs[fw->first + k]);
					touch_a |= x == a && a != NONE;
					touch_b |= x == b && b != NONE;
				}
			}
			if (touch_a == touch_b)
				return false;
			cur = touch_a ? a : b;
		}
		bool forward = cur == a;
		if (cur != a && cur != b)
			return false;
		for (size_t k = 0; k < v->count; k++) {
			size_t at = forward ? k : v->count - 1 - k;
			uint32_t x = import_final(im, final, im->refs[v->first + at]);
			if (x == NONE)
				return false;
			if (path->n == 0 || path->v[path->n - 1] != x)
				import_list_add(path, x);
		}
		cur = forward ? b : a;
	}
	return path->n >= 2;
}

static void import_record(struct import_turns *t, uint32_t kind, uint32_t from, uint32_t to, uint32_t via_first,
			  uint32_t via_count, long long osm_id)
{
	GROW(t->rs, t->nrs, t->caprs);
	t->rs[t->nrs++] = (struct mapfile_restriction){ from, to, via_first, via_count, kind,
						     (uint32_t)((unsigned long long)osm_id & 0xffffffffu),
						     (uint32_t)((unsigned long long)osm_id >> 32) };
}

/* Each restriction relation -> records in road edges; a relation whose
 * members are not on the kept graph (cut by the extract, not drivable) or
 * do not meet is skipped and counted. */
void import_restrictions(const struct importer *im, const uint32_t *final, const struct mapfile_data *d,
			 struct import_turns *t)
{
	uint32_t *byid = rh_malloc((im->nways + 1) * sizeof *byid);
	for (size_t i = 0; i < im->nways; i++)
		byid[i] = (uint32_t)i;
	qsort_r(byid, im->nways, sizeof *byid, import_wayidx_cmp, im->ways);
	uint32_t *efrom = rh_malloc(((size_t)d->m + 1) * sizeof *efrom);
	for (uint32_t u = 0; u < d->n; u++)
		for (uint32_t e = d->first_out[u]; e < d->first_out[u + 1]; e++)
			efrom[e] = u;
	struct u32_list fe = { 0 }, te = { 0 }, path = { 0 };
	for (size_t r = 0; r < im->nrestr; r++) {
		const struct osm_restr *rs = &im->restr[r];
		const long long *ids = im->rrefs + rs->first;
		fe.n = te.n = 0;
		size_t before = t->nrs;
		uint32_t via_first = t->via.n, via_count = 0;
		uint32_t at_from, at_to, skip_from = NONE, skip_to = NONE;
		if (rs->via_node) {
			at_from = at_to = import_final(im, final, ids[rs->nfrom]);
		} else {
			if (!import_via_path(im, final, byid, rs, &path)) {
				t->relations_skipped++;
				continue;
			}
			at_from = path.v[0], at_to = path.v[path.n - 1];
			skip_from = path.v[1], skip_to = path.v[path.n - 2];
			bool ok = true;
			for (uint32_t i = 0; i + 1 < path.n && ok; i++) {
				uint32_t e = import_find_edge(d, path.v[i], path.v[i + 1]);
				ok = e != NONE;
				import_list_add(&t->via, e);
			}
			via_count = path.n - 1;
			if (!ok) { /* the via way cannot be driven that way: nothing to restrict */
				t->via.n = via_first;
				t->relations_skipped++;
				continue;
			}
		}
		if (at_from == NONE) {
			t->relations_skipped++;
			continue;
		}
		for (size_t i = 0; i < rs->nfrom; i++) {
			const struct osm_way *w = import_way_find(im, byid, ids[i]);
			if (w)
				import_way_edges_at(im, final, d, w, at_from, true, skip_from, &fe);
		}
		for (size_t i = 0; i < rs->nto; i++) {
			const struct osm_way *w = import_way_find(im, byid, ids[rs->nfrom + rs->nvia + i]);
			if (w)
				import_way_edges_at(im, final, d, w, at_to, false, skip_to, &te);
		}
		bool same_way = rs->nfrom == 1 && rs->nto == 1 && ids[0] == ids[rs->nfrom + rs->nvia];
		for (uint32_t i = 0; i < fe.n; i++)
			for (uint32_t j = 0; j < te.n; j++) {
				uint32_t a = efrom[fe.v[i]], b = d->to[te.v[j]];
				/* a way through the via node is both of its sides: on one
				 * way, a u-turn restriction is the way back, any other
				 * the way on */
				if (rs->via_node && same_way && (a == b) != rs->u_turn)
					continue;
				import_record(t, rs->kind, fe.v[i], te.v[j], via_first, via_count, rs->id);
			}
		if (t->nrs == before) {
			t->via.n = via_first;
			t->relations_skipped++;
		} else {
			t->relations_applied++;
		}
	}
	rh_free(byid);
	rh_free(efrom);
	rh_free(fe.v);
	rh_free(te.v);
	rh_free(path.v);
}

static int import_pair_cmp(const void *a, const void *b)
{
	const uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static bool import_pair_has(const uint64_t *p, size_t n, uint64_t key)
{
	return n && bsearch(&key, p, n, sizeof *p, import_pair_cmp) != NULL;
}

/* Any pair whose first half is a? (pairs sorted) */
static bool import_pair_from(const uint64_t *p, size_t n, uint32_t a)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if ((p[mid] >> 32) < a)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && (p[lo] >> 32) == a;
}

/* The turn graph while it is built: arcs[x] are the turns out of turn
 * node x, road[x] the road edge node x drives along (x itself for the
 * first d->m nodes, the copied via edge for the nodes above). */
struct import_xgraph {
	struct u32_list *arcs;
	uint32_t *road;
	uint32_t n, cap;
};

/* One turn node e per road edge, and an arc e1 -> e2 for each turn from e1
 * into e2 at the node between them that no via-node restriction forbids. */
static void import_turns_plain(const struct mapfile_data *d, const struct import_turns *t, struct import_xgraph *x)
{
	size_t nno = 0, nonly = 0;
	uint64_t *no = rh_malloc((t->nrs + 1) * sizeof *no), *only = rh_malloc((t->nrs + 1) * sizeof *only);
	for (size_t i = 0; i < t->nrs; i++)
		if (t->rs[i].via_count == 0) {
			uint64_t key = (uint64_t)t->rs[i].from << 32 | t->rs[i].to;
			if (t->rs[i].kind == RMAP_NO)
				no[nno++] = key;
			else
				only[nonly++] = key;
		}
	qsort(no, nno, sizeof *no, import_pair_cmp);
	qsort(only, nonly, sizeof *only, import_pair_cmp);
	for (uint32_t e1 = 0; e1 < d->m; e1++) {
		x->road[e1] = e1;
		uint32_t v = d->to[e1];
		bool has_only = import_pair_from(only, nonly, e1);
		for (uint32_t e2 = d->first_out[v]; e2 < d->first_out[v + 1]; e2++) {
			uint64_t key = (uint64_t)e1 << 32 | e2;
			if (import_pair_has(no, nno, key) || (has_only && !import_pair_has(only, nonly, key)))
				continue;
			import_list_add(&x->arcs[e1], e2);
		}
	}
	rh_free(no);
	rh_free(only);
}

/* Per via-way restriction, copies of its via edges entered only from its
 * from edge, on which the turn it names is forbidden (no_*) or the only
 * one (only_*); records of one relation and one from edge share a chain of
 * copies. Two via-way restrictions that leave the same edge onto the same
 * first via edge but differ in their via path cannot both be modelled by
 * one copy: the second is skipped and counted, and its records dropped
 * from t. */
static void import_turns_via_ways(struct import_turns *t, struct import_xgraph *x)
{
	bool *dropped = rh_calloc(t->nrs + 1, sizeof *dropped);
	for (size_t i = 0; i < t->nrs;) {
		const struct mapfile_restriction *r = &t->rs[i];
		size_t j = i + 1;
		while (j < t->nrs && t->rs[j].from == r->from && t->rs[j].via_first == r->via_first &&
		       t->rs[j].osm_id_lo == r->osm_id_lo && t->rs[j].osm_id_hi == r->osm_id_hi)
			j++;
		if (r->via_count == 0) {
			i = j;
			continue;
		}
		const uint32_t *via = t->via.v + r->via_first;
		uint32_t k = r->via_count, slot = NONE;
		for (uint32_t a = 0; a < x->arcs[r->from].n; a++)
			if (x->road[x->arcs[r->from].v[a]] == via[0])
				slot = a;
		if (slot == NONE || x->arcs[r->from].v[slot] != via[0]) {
			/* the turn onto the via path is already forbidden (nothing
			 * to do), or already leads into another restriction's copy */
			if (slot != NONE) {
				for (size_t q = i; q < j; q++)
					dropped[q] = true;
				t->relations_applied--;
				t->relations_skipped++;
			}
			i = j;
			continue;
		}
		if (x->n + k >= x->cap) {
			uint32_t old = x->cap;
			x->cap = (x->n + k) * 2;
			x->arcs = rh_realloc(x->arcs, x->cap * sizeof *x->arcs);
			memset(x->arcs + old, 0, (x->cap - old) * sizeof *x->arcs);
			x->road = rh_realloc(x->road, x->cap * sizeof *x->road);
		}
		uint32_t c0 = x->n;
		x->n += k;
		for (uint32_t s = 0; s < k; s++) {
			uint32_t c = c0 + s;
			x->road[c] = via[s];
			const struct u32_list *base = &x->arcs[via[s]];
			for (uint32_t a = 0; a < base->n; a++) {
				uint32_t y = base->v[a];
				if (s + 1 < k) {
					if (x->road[y] == via[s + 1])
						import_list_add(&x->arcs[c], c + 1);
					else if (r->kind == RMAP_NO)
						import_list_add(&x->arcs[c], y);
					continue;
				}
				bool named = false;
				for (size_t q = i; q < j; q++)
					named |= x->road[y] == t->rs[q].to;
				if (named == (r->kind == RMAP_ONLY))
					import_list_add(&x->arcs[c], y);
			}
		}
		x->arcs[r->from].v[slot] = c0;
		i = j;
	}
	/* keep the records actually modelled */
	size_t kept = 0;
	for (size_t i = 0; i < t->nrs; i++)
		if (!dropped[i])
			t->rs[kept++] = t->rs[i];
	t->nrs = kept;
	rh_free(dropped);
}

/* The turn graph into d, in CSR (x's lists freed, its road array taken),
 * with the restriction records it models. */
static void import_turns_store(struct mapfile_data *d, const struct import_turns *t, struct import_xgraph *x)
{
	uint32_t xn = x->n;
	d->xn = xn;
	d->xroad = x->road;
	d->xfirst = rh_malloc(((size_t)xn + 1) * sizeof *d->xfirst);
	d->xfirst[0] = 0;
	for (uint32_t i = 0; i < xn; i++)
		d->xfirst[i + 1] = d->xfirst[i] + x->arcs[i].n;
	d->xm = d->xfirst[xn];
	d->xto = rh_malloc(((size_t)d->xm + 1) * sizeof *d->xto);
	for (uint32_t i = 0; i < xn; i++) {
		if (x->arcs[i].n)
			memcpy(d->xto + d->xfirst[i], x->arcs[i].v, x->arcs[i].n * sizeof *d->xto);
		rh_free(x->arcs[i].v);
	}
	rh_free(x->arcs);
	d->nrestr = (uint32_t)t->nrs;
	d->rs = rh_malloc((t->nrs + 1) * sizeof *d->rs);
	if (t->nrs)
		memcpy(d->rs, t->rs, t->nrs * sizeof *d->rs);
	d->nrvia = t->via.n;
	d->rvia = rh_malloc(((size_t)t->via.n + 1) * sizeof *d->rvia);
	if (t->via.n)
		memcpy(d->rvia, t->via.v, t->via.n * sizeof *d->rvia);
}

/* The turn graph of d's roads under t's restrictions (see the three steps
 * above), stored in d. */
void import_turn_graph(struct mapfile_data *d, struct import_turns *t)
{
	struct import_xgraph x = { .n = d->m, .cap = d->m + 16 };
	x.arcs = rh_calloc(x.cap, sizeof *x.arcs);
	x.road = rh_malloc(x.cap * sizeof *x.road);
	import_turns_plain(d, t, &x);
	import_turns_via_ways(t, &x);
	import_turns_store(d, t, &x);
}
