/* OpenStreetMap extract -> map file: the car rules (which ways, which
 * directions, what speed), the largest strongly connected component, and
 * the file writer. libreadosm parses .osm and .osm.pbf; .gz and .bz2 are
 * inflated into a temporary .osm first. */
#include <bzlib.h>
#include <errno.h>
#include <math.h>
#include <readosm.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <zlib.h>

#include "core/alloc.h"
#include "core/settings.h"
#include "graph.h"

#define NONE UINT32_MAX

struct osm_node {
	long long id;
	int32_t lat_e7, lon_e7;
};

struct osm_way {
	size_t first, count; /* into refs */
	uint8_t fwd, bwd;
	float kmh;
};

struct importer {
	const struct routing_cfg *cfg;
	struct osm_node *nodes;
	size_t nnodes, capnodes;
	long long *refs;
	size_t nrefs, caprefs;
	struct osm_way *ways;
	size_t nways, capways;
	size_t all_ways;
};

#define GROW(arr, n, cap)                                                        \
	do {                                                                     \
		if ((n) == (cap)) {                                              \
			(cap) = (cap) ? (cap) * 2 : 4096;                        \
			(arr) = rh_realloc((arr), (cap) * sizeof *(arr));        \
		}                                                                \
	} while (0)

/* ------------------------------------------------------------ car rules */

static const char *import_tag(const readosm_way *w, const char *key)
{
	for (int i = 0; i < w->tag_count; i++)
		if (strcmp(w->tags[i].key, key) == 0)
			return w->tags[i].value;
	return NULL;
}

/* km/h for a highway class, 0 when cars do not drive there. */
static double import_class_speed(const struct routing_cfg *c, const char *hw, bool *implied_oneway)
{
	static const struct {
		const char *name;
		size_t off;
	} classes[] = {
		{ "motorway", offsetof(struct routing_cfg, speed_motorway) },
		{ "trunk", offsetof(struct routing_cfg, speed_trunk) },
		{ "primary", offsetof(struct routing_cfg, speed_primary) },
		{ "secondary", offsetof(struct routing_cfg, speed_secondary) },
		{ "tertiary", offsetof(struct routing_cfg, speed_tertiary) },
		{ "unclassified", offsetof(struct routing_cfg, speed_unclassified) },
		{ "road", offsetof(struct routing_cfg, speed_unclassified) },
		{ "residential", offsetof(struct routing_cfg, speed_residential) },
		{ "living_street", offsetof(struct routing_cfg, speed_living_street) },
		{ "service", offsetof(struct routing_cfg, speed_service) },
	};
	size_t len = strlen(hw);
	bool link = len > 5 && strcmp(hw + len - 5, "_link") == 0;
	if (link)
		len -= 5;
	for (size_t i = 0; i < RH_ARRAY_LEN(classes); i++) {
		if (strlen(classes[i].name) != len || strncmp(classes[i].name, hw, len) != 0)
			continue;
		if (link && i > 4)
			return 0; /* only the classified roads have links */
		*implied_oneway = i == 0; /* motorway and motorway_link */
		return (double)*(const int64_t *)((const char *)c + classes[i].off);
	}
	return 0;
}

static bool import_access_denied(const char *v)
{
	static const char *const no[] = { "no", "private", "agricultural", "forestry", "delivery",
					  "emergency", "military", "psv", "bus", "disabled", NULL };
	for (int i = 0; no[i]; i++)
		if (strcmp(v, no[i]) == 0)
			return true;
	return false;
}

/* The most specific of access, vehicle, motor_vehicle, motorcar decides. */
static bool import_car_allowed(const readosm_way *w)
{
	static const char *const keys[] = { "motorcar", "motor_vehicle", "vehicle", "access" };
	for (size_t i = 0; i < RH_ARRAY_LEN(keys); i++) {
		const char *v = import_tag(w, keys[i]);
		if (v)
			return !import_access_denied(v);
	}
	return true;
}

/* A maxspeed tag in km/h ("50", "30 mph"); 0 when absent or not a number. */
static double import_maxspeed(const char *v)
{
	if (!v)
		return 0;
	char *end;
	double s = strtod(v, &end);
	if (end == v || !(s > 0))
		return 0;
	while (*end == ' ')
		end++;
	if (strncmp(end, "mph", 3) == 0)
		s *= 1.609344;
	else if (*end && strncmp(end, "km/h", 4) != 0 && strncmp(end, "kmh", 3) != 0)
		return 0;
	return s >= 5 && s <= 200 ? s : 0;
}

static int import_way(const void *user, const readosm_way *w)
{
	struct importer *im = (struct importer *)user;
	im->all_ways++;
	const char *hw = import_tag(w, "highway");
	if (!hw || w->node_ref_count < 2)
		return READOSM_OK;
	bool implied = false;
	double kmh = import_class_speed(im->cfg, hw, &implied);
	const char *area = import_tag(w, "area");
	if (kmh <= 0 || (area && strcmp(area, "yes") == 0) || !import_car_allowed(w))
		return READOSM_OK;
	const char *junction = import_tag(w, "junction");
	if (junction && (strcmp(junction, "roundabout") == 0 || strcmp(junction, "circular") == 0))
		implied = true;
	bool fwd = true, bwd = !implied;
	const char *ow = import_tag(w, "oneway");
	if (ow) {
		if (!strcmp(ow, "yes") || !strcmp(ow, "true") || !strcmp(ow, "1"))
			bwd = false;
		else if (!strcmp(ow, "-1") || !strcmp(ow, "reverse"))
			fwd = false, bwd = true;
		else if (!strcmp(ow, "no") || !strcmp(ow, "false") || !strcmp(ow, "0"))
			bwd = true;
		else if (!strcmp(ow, "reversible") || !strcmp(ow, "alternating"))
			return READOSM_OK; /* direction changes by time of day: not routable */
	}
	if (im->cfg->use_maxspeed) {
		double ms = import_maxspeed(import_tag(w, "maxspeed"));
		if (ms > 0)
			kmh = ms;
	}
	GROW(im->ways, im->nways, im->capways);
	im->ways[im->nways++] = (struct osm_way){ im->nrefs, (size_t)w->node_ref_count, fwd, bwd, (float)kmh };
	for (int i = 0; i < w->node_ref_count; i++) {
		GROW(im->refs, im->nrefs, im->caprefs);
		im->refs[im->nrefs++] = w->node_refs[i];
	}
	return READOSM_OK;
}

static int import_node(const void *user, const readosm_node *n)
{
	struct importer *im = (struct importer *)user;
	GROW(im->nodes, im->nnodes, im->capnodes);
	im->nodes[im->nnodes++] = (struct osm_node){ n->id, (int32_t)lround(n->latitude * 1e7),
						     (int32_t)lround(n->longitude * 1e7) };
	return READOSM_OK;
}

static int import_node_cmp(const void *a, const void *b)
{
	long long x = ((const struct osm_node *)a)->id, y = ((const struct osm_node *)b)->id;
	return x < y ? -1 : x > y;
}

static size_t import_node_find(const struct importer *im, long long id)
{
	size_t lo = 0, hi = im->nnodes;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (im->nodes[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < im->nnodes && im->nodes[lo].id == id ? lo : SIZE_MAX;
}

/* ------------------------------------------------------------ inflating */

static bool import_has_suffix(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && strcasecmp(s + a - b, suf) == 0;
}

/* .gz / .bz2 into a temporary .osm; *tmp receives its path. */
static rh_err import_inflate(const char *path, bool bz2, char *tmp, size_t tmplen, char *err, size_t errlen)
{
	const char *dir = getenv("TMPDIR");
	snprintf(tmp, tmplen, "%s/ridehail-osm-XXXXXX.osm", dir && *dir ? dir : "/tmp");
	int fd = mkstemps(tmp, 4);
	if (fd < 0) {
		snprintf(err, errlen, "cannot create a temporary file: %s", strerror(errno));
		return RH_EIO;
	}
	FILE *out = fdopen(fd, "wb");
	char buf[1 << 16];
	bool ok = true;
	if (bz2) {
		FILE *in = fopen(path, "rb");
		int bze = BZ_OK;
		BZFILE *bz = in ? BZ2_bzReadOpen(&bze, in, 0, 0, NULL, 0) : NULL;
		ok = bz && bze == BZ_OK;
		while (ok) {
			int n = BZ2_bzRead(&bze, bz, buf, sizeof buf);
			if (bze != BZ_OK && bze != BZ_STREAM_END) {
				ok = false;
				break;
			}
			fwrite(buf, 1, (size_t)n, out);
			if (bze == BZ_STREAM_END)
				break;
		}
		if (bz)
			BZ2_bzReadClose(&bze, bz);
		if (in)
			fclose(in);
	} else {
		gzFile gz = gzopen(path, "rb");
		ok = gz != NULL;
		int n;
		while (ok && (n = gzread(gz, buf, sizeof buf)) > 0)
			fwrite(buf, 1, (size_t)n, out);
		if (gz) {
			int ge;
			gzerror(gz, &ge);
			if (ge != Z_OK && ge != Z_STREAM_END)
				ok = false;
			gzclose(gz);
		}
	}
	if (fclose(out) != 0)
		ok = false;
	if (!ok) {
		unlink(tmp);
		snprintf(err, errlen, "cannot decompress %s (missing, truncated or not %s)", path, bz2 ? "bzip2" : "gzip");
		return RH_EINVAL;
	}
	return RH_OK;
}

/* ------------------------------------------------------------ graph */

struct edge {
	uint32_t u, v, time_ms, dist_mm;
};

/* Length of a road segment on the WGS 84 ellipsoid: the local radii of
 * curvature at the mid-latitude (meridian M, prime vertical N). Segments are
 * metres to a few kilometres long, where this agrees with the geodesic to
 * about 1e-6; a sphere would be off by up to half a percent. */
static double import_segment_m(int32_t lat1, int32_t lon1, int32_t lat2, int32_t lon2)
{
	const double a = 6378137.0, e2 = 6.69437999014e-3;
	double p1 = lat1 / 1e7 * M_PI / 180, p2 = lat2 / 1e7 * M_PI / 180;
	double pm = (p1 + p2) / 2, dl = (lon2 - lon1) / 1e7 * M_PI / 180;
	double s = sin(pm), w = 1 - e2 * s * s;
	double m = a * (1 - e2) / (w * sqrt(w)), n = a / sqrt(w);
	double dy = m * (p2 - p1), dx = n * cos(pm) * dl;
	return sqrt(dx * dx + dy * dy);
}

static int import_edge_cmp(const void *a, const void *b)
{
	const struct edge *x = a, *y = b;
	if (x->u != y->u)
		return x->u < y->u ? -1 : 1;
	return x->v < y->v ? -1 : x->v > y->v;
}

/* Iterative Tarjan: comp[u] per node; returns the largest component's id. */
static uint32_t import_largest_scc(uint32_t n, const uint32_t *first, const uint32_t *adj, uint32_t *comp)
{
	uint32_t *index = rh_malloc(n * sizeof *index), *low = rh_malloc(n * sizeof *low);
	uint32_t *stack = rh_malloc(n * sizeof *stack), *cs = rh_malloc(n * sizeof *cs);
	uint32_t *it = rh_malloc(n * sizeof *it);
	bool *on = rh_calloc(n, sizeof *on);
	uint32_t *size = rh_calloc(n, sizeof *size);
	for (uint32_t u = 0; u < n; u++)
		index[u] = NONE;
	uint32_t next = 0, sp = 0, ncomp = 0, best = 0;
	for (uint32_t root = 0; root < n; root++) {
		if (index[root] != NONE)
			continue;
		size_t csp = 0;
		cs[csp++] = root;
		index[root] = low[root] = next++;
		it[root] = first[root];
		stack[sp++] = root;
		on[root] = true;
		while (csp) {
			uint32_t u = cs[csp - 1];
			if (it[u] < first[u + 1]) {
				uint32_t v = adj[it[u]++];
				if (index[v] == NONE) {
					index[v] = low[v] = next++;
					it[v] = first[v];
					stack[sp++] = v;
					on[v] = true;
					cs[csp++] = v;
				} else if (on[v] && index[v] < low[u]) {
					low[u] = index[v];
				}
				continue;
			}
			if (low[u] == index[u]) {
				uint32_t v;
				do {
					v = stack[--sp];
					on[v] = false;
					comp[v] = ncomp;
					size[ncomp]++;
				} while (v != u);
				if (size[ncomp] > size[best])
					best = ncomp;
				ncomp++;
			}
			csp--;
			if (csp) {
				uint32_t p = cs[csp - 1];
				if (low[u] < low[p])
					low[p] = low[u];
			}
		}
	}
	void *ptrs[] = { index, low, stack, cs, it, on, size };
	for (size_t i = 0; i < RH_ARRAY_LEN(ptrs); i++)
		rh_free(ptrs[i]);
	return best;
}

/* Sets `bit` on every node reachable from one that has both bits. */
static void import_reach_mark(uint32_t n, const uint32_t *first, const uint32_t *adj, uint8_t *role, uint8_t bit)
{
	uint32_t *queue = rh_malloc(((size_t)n + 1) * sizeof *queue);
	size_t head = 0, tail = 0;
	for (uint32_t u = 0; u < n; u++)
		if (role[u] == (RMAP_FROM | RMAP_TO))
			queue[tail++] = u;
	while (head < tail) {
		uint32_t u = queue[head++];
		for (uint32_t i = first[u]; i < first[u + 1]; i++)
			if (!(role[adj[i]] & bit)) {
				role[adj[i]] |= bit;
				queue[tail++] = adj[i];
			}
	}
	rh_free(queue);
}

static void import_csr_build(uint32_t n, const struct edge *e, size_t m, uint32_t *first, uint32_t *adj)
{
	memset(first, 0, ((size_t)n + 1) * sizeof *first);
	for (size_t i = 0; i < m; i++)
		first[e[i].u + 1]++;
	for (uint32_t u = 0; u < n; u++)
		first[u + 1] += first[u];
	for (size_t i = 0; i < m; i++)
		adj[i] = e[i].v; /* edges are sorted by u */
}

/* Ways -> edges over graph nodes; then only the largest component, in CSR. */
static rh_err import_build_and_write(struct importer *im, const char *map_path, struct routing_stats *st, char *err,
			      size_t errlen)
{
	qsort(im->nodes, im->nnodes, sizeof *im->nodes, import_node_cmp);
	uint32_t *gid = rh_malloc((im->nnodes + 1) * sizeof *gid);
	for (size_t i = 0; i < im->nnodes; i++)
		gid[i] = NONE;
	uint32_t n = 0;
	size_t m = 0, cap = 0;
	struct edge *edges = NULL;
	for (size_t w = 0; w < im->nways; w++) {
		const struct osm_way *ow = &im->ways[w];
		size_t prev = SIZE_MAX;
		for (size_t k = 0; k < ow->count; k++) {
			size_t cur = import_node_find(im, im->refs[ow->first + k]);
			if (cur != SIZE_MAX && gid[cur] == NONE)
				gid[cur] = n++;
			if (cur != SIZE_MAX && prev != SIZE_MAX && gid[cur] != gid[prev]) {
				const struct osm_node *a = &im->nodes[prev], *b = &im->nodes[cur];
				double d = import_segment_m(a->lat_e7, a->lon_e7, b->lat_e7, b->lon_e7);
				uint32_t dmm = (uint32_t)llround(d * 1000);
				uint32_t tms = (uint32_t)llround(d / (ow->kmh / 3.6) * 1000);
				if (tms == 0)
					tms = 1;
				for (int dir = 0; dir < 2; dir++) {
					if (!(dir ? ow->bwd : ow->fwd))
						continue;
					GROW(edges, m, cap);
					edges[m++] = dir ? (struct edge){ gid[cur], gid[prev], tms, dmm }
							 : (struct edge){ gid[prev], gid[cur], tms, dmm };
				}
			}
			prev = cur; /* a missing node (cut by the extract) breaks the way */
		}
	}
	if (n == 0 || m == 0) {
		rh_free(gid);
		rh_free(edges);
		snprintf(err, errlen, "no drivable roads in the extract");
		return RH_EINVAL;
	}
	qsort(edges, m, sizeof *edges, import_edge_cmp);
	uint32_t *first = rh_malloc(((size_t)n + 1) * sizeof *first), *adj = rh_malloc(m * sizeof *adj);
	import_csr_build(n, edges, m, first, adj);
	uint32_t *comp = rh_malloc(n * sizeof *comp);
	uint32_t big = import_largest_scc(n, first, adj, comp);
	/* Beside the component, keep what drains into it (a start there is
	 * fine: RMAP_FROM) and what it feeds (a destination: RMAP_TO), such as
	 * an old town one may leave but, in the extract, not enter. */
	uint8_t *role = rh_calloc(n, 1);
	for (uint32_t u = 0; u < n; u++)
		if (comp[u] == big)
			role[u] = RMAP_FROM | RMAP_TO;
	import_reach_mark(n, first, adj, role, RMAP_TO);
	struct edge *rev = rh_malloc(m * sizeof *rev);
	for (size_t i = 0; i < m; i++)
		rev[i] = (struct edge){ edges[i].v, edges[i].u, 0, 0 };
	qsort(rev, m, sizeof *rev, import_edge_cmp);
	uint32_t *rfirst = rh_malloc(((size_t)n + 1) * sizeof *rfirst), *radj = rh_malloc(m * sizeof *radj);
	import_csr_build(n, rev, m, rfirst, radj);
	import_reach_mark(n, rfirst, radj, role, RMAP_FROM);
	rh_free(rev);
	rh_free(rfirst);
	rh_free(radj);
	/* renumber the kept nodes; coordinates by the new numbers */
	uint32_t *keep = rh_malloc(n * sizeof *keep), kn = 0;
	for (uint32_t u = 0; u < n; u++)
		keep[u] = role[u] ? kn++ : NONE;
	int32_t *lat = rh_malloc(kn * sizeof *lat), *lon = rh_malloc(kn * sizeof *lon);
	uint8_t *roles = rh_malloc(kn + 1);
	for (size_t i = 0; i < im->nnodes; i++)
		if (gid[i] != NONE && keep[gid[i]] != NONE) {
			lat[keep[gid[i]]] = im->nodes[i].lat_e7;
			lon[keep[gid[i]]] = im->nodes[i].lon_e7;
			roles[keep[gid[i]]] = role[gid[i]];
		}
	size_t km = 0;
	for (size_t i = 0; i < m; i++)
		if (keep[edges[i].u] != NONE && keep[edges[i].v] != NONE)
			edges[km++] = (struct edge){ keep[edges[i].u], keep[edges[i].v], edges[i].time_ms, edges[i].dist_mm };
	qsort(edges, km, sizeof *edges, import_edge_cmp);
	uint32_t *to = rh_malloc((km + 1) * sizeof *to), *tms = rh_malloc((km + 1) * sizeof *tms);
	uint32_t *dmm = rh_malloc((km + 1) * sizeof *dmm);
	import_csr_build(kn, edges, km, first, to);
	for (size_t i = 0; i < km; i++)
		tms[i] = edges[i].time_ms, dmm[i] = edges[i].dist_mm;
	struct ch_graph ch[2];
	for (int metric = 0; metric < 2; metric++)
		if (ch_build(kn, first, to, tms, dmm, metric, &ch[metric]) != RH_OK) {
			snprintf(err, errlen, "cannot build the contraction hierarchy");
			return RH_EINVAL;
		}
	rh_err e = rmap_write(map_path, kn, (uint32_t)km, lat, lon, roles, first, to, tms, dmm, ch, err, errlen);
	ch_graph_fini(&ch[0]);
	ch_graph_fini(&ch[1]);
	if (st) {
		memset(st, 0, sizeof *st);
		st->nodes = kn, st->edges = km;
		st->osm_nodes = im->nnodes, st->osm_ways = im->all_ways, st->road_ways = im->nways;
	}
	void *ptrs[] = { gid, edges, first, adj, comp, keep, lat, lon, to, tms, dmm, role, roles };
	for (size_t i = 0; i < RH_ARRAY_LEN(ptrs); i++)
		rh_free(ptrs[i]);
	return e;
}

/* ------------------------------------------------------------ file */

static bool rmap_write_all(FILE *f, const void *p, size_t n, crypto_generichash_state *h)
{
	crypto_generichash_update(h, p, n);
	return fwrite(p, 1, n, f) == n;
}

rh_err rmap_write(const char *path, uint32_t n, uint32_t m, const int32_t *lat_e7, const int32_t *lon_e7,
		  const uint8_t *role, const uint32_t *first_out, const uint32_t *to, const uint32_t *time_ms, const uint32_t *dist_mm,
		  const struct ch_graph ch[2], char *err, size_t errlen)
{
	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
	FILE *f = fopen(tmp, "wb");
	if (!f) {
		snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
		return RH_EIO;
	}
	struct rmap_header h;
	memset(&h, 0, sizeof h);
	memcpy(h.magic, RMAP_MAGIC, 8);
	h.version = RMAP_VERSION;
	h.nodes = n, h.edges = m;
	h.body_len = rmap_body_len(n, m);
	for (int i = 0; i < 2; i++)
		h.body_len += 8 + (uint64_t)n * 4 + ((uint64_t)n + 1) * 8 + ((uint64_t)ch[i].nup + ch[i].ndown) * sizeof(struct ch_edge);
	bool ok = fwrite(&h, 1, sizeof h, f) == sizeof h;
	crypto_generichash_state hs;
	crypto_generichash_init(&hs, NULL, 0, RMAP_HASH_SIZE);
	ok = ok && rmap_write_all(f, lat_e7, (size_t)n * 4, &hs) && rmap_write_all(f, lon_e7, (size_t)n * 4, &hs);
	ok = ok && rmap_write_all(f, role, n, &hs);
	ok = ok && rmap_write_all(f, first_out, ((size_t)n + 1) * 4, &hs);
	ok = ok && rmap_write_all(f, to, (size_t)m * 4, &hs) && rmap_write_all(f, time_ms, (size_t)m * 4, &hs);
	ok = ok && rmap_write_all(f, dist_mm, (size_t)m * 4, &hs);
	for (int i = 0; i < 2 && ok; i++) {
		uint32_t counts[2] = { ch[i].nup, ch[i].ndown };
		ok = rmap_write_all(f, counts, sizeof counts, &hs) && rmap_write_all(f, ch[i].rank, (size_t)n * 4, &hs) &&
		     rmap_write_all(f, ch[i].first_up, ((size_t)n + 1) * 4, &hs) &&
		     rmap_write_all(f, ch[i].first_down, ((size_t)n + 1) * 4, &hs) &&
		     rmap_write_all(f, ch[i].up, (size_t)ch[i].nup * sizeof(struct ch_edge), &hs) &&
		     rmap_write_all(f, ch[i].down, (size_t)ch[i].ndown * sizeof(struct ch_edge), &hs);
	}
	crypto_generichash_final(&hs, h.hash, sizeof h.hash);
	ok = ok && fseek(f, 0, SEEK_SET) == 0 && fwrite(&h, 1, sizeof h, f) == sizeof h;
	ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
	if (fclose(f) != 0)
		ok = false;
	if (!ok || rename(tmp, path) != 0) {
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
		unlink(tmp);
		return RH_EIO;
	}
	return RH_OK;
}

rh_err routing_import(const char *osm_path, const struct routing_cfg *cfg, const char *map_path,
		      struct routing_stats *st, char *err, size_t errlen)
{
	_Static_assert(sizeof(struct rmap_header) == RMAP_HEADER_SIZE, "map header layout");
	_Static_assert(sizeof(struct ch_edge) == 20, "hierarchy edge layout");
	/* the file is written and read as the host lays it out */
	_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "map files are little-endian");
	char tmp[4096] = "";
	const char *src = osm_path;
	if (import_has_suffix(osm_path, ".gz") || import_has_suffix(osm_path, ".bz2")) {
		rh_err e = import_inflate(osm_path, import_has_suffix(osm_path, ".bz2"), tmp, sizeof tmp, err, errlen);
		if (e != RH_OK)
			return e;
		src = tmp;
	} else if (!import_has_suffix(osm_path, ".osm") && !import_has_suffix(osm_path, ".pbf")) {
		snprintf(err, errlen, "%s: expected .osm, .osm.pbf, .osm.gz or .osm.bz2", osm_path);
		return RH_EINVAL;
	}
	struct importer im = { .cfg = cfg };
	const void *h = NULL;
	int rc = readosm_open(src, &h);
	if (rc == READOSM_OK)
		rc = readosm_parse(h, &im, import_node, import_way, NULL);
	readosm_close(h);
	if (tmp[0])
		unlink(tmp);
	rh_err e;
	if (rc != READOSM_OK) {
		snprintf(err, errlen, "cannot read %s: OpenStreetMap parser error %d%s", osm_path, rc,
			 rc == READOSM_FILE_NOT_FOUND ? " (no such file)" : " (corrupt or truncated?)");
		e = RH_EINVAL;
	} else {
		e = import_build_and_write(&im, map_path, st, err, errlen);
	}
	rh_free(im.nodes);
	rh_free(im.refs);
	rh_free(im.ways);
	return e;
}

/* ------------------------------------------------------------ CLI */

int routing_map_cli(const struct routing_cfg *cfg, int argc, char **argv)
{
	const char *in = NULL, *out = NULL;
	if (argc < 2 || strcmp(argv[1], "import") != 0)
		goto usage;
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "-o") == 0 && i + 1 < argc)
			out = argv[++i];
		else if (!in && argv[i][0] != '-')
			in = argv[i];
		else
			goto usage;
	}
	if (!in || !out)
		goto usage;
	char err[512];
	struct routing_stats st;
	if (routing_import(in, cfg, out, &st, err, sizeof err) != RH_OK) {
		fprintf(stderr, "ridehaild map import: %s\n", err);
		return 1;
	}
	printf("ridehaild map import: %s -> %s: %zu nodes, %zu edges kept (around the largest strongly connected "
	       "component), from %zu OSM nodes, %zu ways (%zu drivable)\n",
	       in, out, st.nodes, st.edges, st.osm_nodes, st.osm_ways, st.road_ways);
	return 0;
usage:
	fprintf(stderr, "usage: ridehaild [-c conf] map import <extract.osm|.osm.pbf|.osm.gz|.osm.bz2> -o <file.map>\n");
	return 2;
}
