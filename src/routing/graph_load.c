/* Loading a map file: validation (mapfile.c), the reverse edges, the
 * snapping grid, the hierarchy's order, the time zone; the graph's stats. */
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
