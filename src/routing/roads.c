/* The road graph drawn: GET /v1/map/roads' GeoJSON, made from the loaded
 * graph. Both directions of a segment are one line; runs of nodes joined to
 * exactly two others by roads of one class are one polyline, simplified with
 * Douglas-Peucker in metres (equirectangular about the map's centre). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/strbuf.h"
#include "graph.h"
#include "routing/routing.h"

static const char *const routing_roads_class_name[RMAP_CLASSES] = {
	"motorway", "trunk", "primary", "secondary", "tertiary", "unclassified", "residential", "service",
};

/* One undirected neighbour: adjacency lists sorted by node, then neighbour. */
struct routing_roads_adj {
	uint32_t u, v;
	uint8_t cls;
};

static int routing_roads_adj_cmp(const void *a, const void *b)
{
	const struct routing_roads_adj *x = a, *y = b;
	if (x->u != y->u)
		return x->u < y->u ? -1 : 1;
	if (x->v != y->v)
		return x->v < y->v ? -1 : 1;
	return (int)x->cls - (int)y->cls;
}

struct routing_roads_ctx {
	const struct graph_roads *g;
	struct routing_roads_adj *adj;
	uint32_t *first; /* n + 1 */
	uint8_t *seen;   /* per adjacency entry */
	double *x, *y;   /* projected, per node */
	uint32_t *path;  /* the polyline being walked */
	uint8_t *keep;
	uint32_t *stack;
	size_t path_cap;
};

static uint32_t routing_roads_find(const struct routing_roads_ctx *c, uint32_t u, uint32_t v)
{
	uint32_t lo = c->first[u], hi = c->first[u + 1];
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (c->adj[mid].v < v)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo; /* v is there: every entry has its reverse */
}

/* A node a polyline passes through: two neighbours, one class. */
static bool routing_roads_interior(const struct routing_roads_ctx *c, uint32_t u)
{
	uint32_t a = c->first[u], b = c->first[u + 1];
	return b - a == 2 && c->adj[a].cls == c->adj[a + 1].cls;
}

static void routing_roads_push(struct routing_roads_ctx *c, size_t *len, uint32_t node)
{
	if (*len == c->path_cap) {
		c->path_cap = c->path_cap ? c->path_cap * 2 : 256;
		c->path = rh_realloc(c->path, c->path_cap * sizeof *c->path);
		c->keep = rh_realloc(c->keep, c->path_cap);
		c->stack = rh_realloc(c->stack, 2 * c->path_cap * sizeof *c->stack);
	}
	c->path[(*len)++] = node;
}

/* Marks the points of path[0..len) that Douglas-Peucker keeps at tol metres. */
static void routing_roads_simplify(struct routing_roads_ctx *c, size_t len, double tol)
{
	memset(c->keep, 0, len);
	c->keep[0] = c->keep[len - 1] = 1;
	size_t sp = 0;
	c->stack[sp++] = 0;
	c->stack[sp++] = (uint32_t)(len - 1);
	while (sp) {
		uint32_t b = c->stack[--sp], a = c->stack[--sp];
		if (b <= a + 1)
			continue;
		double ax = c->x[c->path[a]], ay = c->y[c->path[a]];
		double dx = c->x[c->path[b]] - ax, dy = c->y[c->path[b]] - ay;
		double l2 = dx * dx + dy * dy;
		double worst = -1;
		uint32_t at = a;
		for (uint32_t i = a + 1; i < b; i++) {
			double px = c->x[c->path[i]] - ax, py = c->y[c->path[i]] - ay;
			double d2;
			if (l2 <= 0) {
				d2 = px * px + py * py;
			} else {
				double t = (px * dx + py * dy) / l2;
				t = t < 0 ? 0 : t > 1 ? 1 : t;
				double qx = px - t * dx, qy = py - t * dy;
				d2 = qx * qx + qy * qy;
			}
			if (d2 > worst) {
				worst = d2;
				at = i;
			}
		}
		if (worst > tol * tol) {
			c->keep[at] = 1;
			c->stack[sp++] = a;
			c->stack[sp++] = at;
			c->stack[sp++] = at;
			c->stack[sp++] = b;
		}
	}
}

/* Walks the polyline that starts at u along adjacency entry e, marking
 * what it passes. */
static size_t routing_roads_walk(struct routing_roads_ctx *c, uint32_t u, uint32_t e)
{
	size_t len = 0;
	routing_roads_push(c, &len, u);
	uint32_t start = u;
	for (;;) {
		uint32_t v = c->adj[e].v;
		c->seen[e] = 1;
		c->seen[routing_roads_find(c, v, u)] = 1;
		routing_roads_push(c, &len, v);
		if (v == start || !routing_roads_interior(c, v))
			return len;
		uint32_t a = c->first[v];
		uint32_t next = c->adj[a].v == u ? a + 1 : a;
		if (c->seen[next])
			return len;
		u = v;
		e = next;
	}
}

static size_t routing_roads_write_class(struct routing_roads_ctx *c, int cls, double tol, struct strbuf *sb, bool *first_feature)
{
	const struct graph_roads *g = c->g;
	size_t lines = 0;
	size_t head = sb->len;
	for (int pass = 0; pass < 2; pass++) {
		/* pass 0: from every end and junction; pass 1: what is left is rings */
		for (uint32_t u = 0; u < g->n; u++) {
			if (pass == 0 && routing_roads_interior(c, u))
				continue;
			for (uint32_t e = c->first[u]; e < c->first[u + 1]; e++) {
				if (c->seen[e] || c->adj[e].cls != cls)
					continue;
				size_t len = routing_roads_walk(c, u, e);
				routing_roads_simplify(c, len, tol);
				if (lines == 0) {
					if (!*first_feature)
						sb_putc(sb, ',');
					sb_puts(sb, "{\"type\":\"Feature\",\"properties\":{\"class\":\"");
					sb_puts(sb, routing_roads_class_name[cls]);
					sb_puts(sb, "\"},\"geometry\":{\"type\":\"MultiLineString\",\"coordinates\":[");
				} else {
					sb_putc(sb, ',');
				}
				lines++;
				sb_putc(sb, '[');
				bool firstpt = true;
				for (size_t i = 0; i < len; i++) {
					if (!c->keep[i])
						continue;
					sb_puts(sb, firstpt ? "[" : ",[");
					firstpt = false;
					sb_fixed(sb, g->lon[c->path[i]], 5);
					sb_putc(sb, ',');
					sb_fixed(sb, g->lat[c->path[i]], 5);
					sb_putc(sb, ']');
				}
				sb_putc(sb, ']');
			}
		}
	}
	if (lines) {
		sb_puts(sb, "]}}");
		*first_feature = false;
	} else {
		sb->len = head;
	}
	return lines;
}

rh_err routing_roads_geojson(const struct routing *r, double tolerance_m, struct strbuf *sb,
			     struct routing_roads_stats *st)
{
	if (!routing_loaded(r))
		return RH_EAGAIN;
	struct graph_roads g;
	graph_roads_of(r, &g);
	struct routing_roads_ctx c = { .g = &g };
	/* every directed edge both ways, then each pair once */
	size_t na = 0;
	c.adj = rh_malloc((size_t)g.m * 2 * sizeof *c.adj + 1);
	for (uint32_t e = 0; e < g.m; e++) {
		uint32_t u = g.from[e], v = g.to[e];
		if (u == v)
			continue;
		uint8_t k = g.cls[e] < RMAP_CLASSES ? g.cls[e] : RMAP_CLASS_SERVICE;
		c.adj[na++] = (struct routing_roads_adj){ u, v, k };
		c.adj[na++] = (struct routing_roads_adj){ v, u, k };
	}
	qsort(c.adj, na, sizeof *c.adj, routing_roads_adj_cmp);
	size_t w = 0;
	for (size_t i = 0; i < na; i++) /* one entry per neighbour: the most important class wins */
		if (w == 0 || c.adj[w - 1].u != c.adj[i].u || c.adj[w - 1].v != c.adj[i].v)
			c.adj[w++] = c.adj[i];
	na = w;
	c.first = rh_calloc((size_t)g.n + 1, sizeof *c.first);
	for (size_t i = 0; i < na; i++)
		c.first[c.adj[i].u + 1]++;
	for (uint32_t u = 0; u < g.n; u++)
		c.first[u + 1] += c.first[u];
	for (size_t i = 0; i < na; i++) { /* a pair's two entries agree on the class */
		struct routing_roads_adj *a = &c.adj[i];
		if (a->u > a->v) {
			struct routing_roads_adj *b = &c.adj[routing_roads_find(&c, a->v, a->u)];
			uint8_t k = a->cls < b->cls ? a->cls : b->cls;
			a->cls = b->cls = k;
		}
	}
	c.seen = rh_calloc(na + 1, 1);
	c.x = rh_malloc(((size_t)g.n + 1) * sizeof *c.x);
	c.y = rh_malloc(((size_t)g.n + 1) * sizeof *c.y);
	const double deg = M_PI / 180 * 6371008.8;
	for (uint32_t u = 0; u < g.n; u++) {
		c.x[u] = (g.lon[u]) * deg * g.coslat0;
		c.y[u] = (g.lat[u] - g.lat0) * deg;
	}
	struct routing_stats rs;
	routing_get_stats(r, &rs);
	sb_puts(sb, "{\"type\":\"FeatureCollection\",\"bbox\":[");
	sb_fixed(sb, rs.min_lon, 5);
	sb_putc(sb, ',');
	sb_fixed(sb, rs.min_lat, 5);
	sb_putc(sb, ',');
	sb_fixed(sb, rs.max_lon, 5);
	sb_putc(sb, ',');
	sb_fixed(sb, rs.max_lat, 5);
	sb_puts(sb, "],\"features\":[");
	bool first = true;
	size_t lines = 0;
	for (int k = 0; k < RMAP_CLASSES; k++)
		lines += routing_roads_write_class(&c, k, tolerance_m, sb, &first);
	sb_puts(sb, "]}");
	if (st) {
		st->lines = lines;
		st->segments = na / 2;
	}
	rh_free(c.adj);
	rh_free(c.first);
	rh_free(c.seen);
	rh_free(c.x);
	rh_free(c.y);
	rh_free(c.path);
	rh_free(c.keep);
	rh_free(c.stack);
	return RH_OK;
}
