/* OpenStreetMap extract -> map file: the car rules (which ways, which
 * directions, what speed), the largest strongly connected component, and
 * the file writer (the turn restrictions and the turn graph: turns.c).
 * libreadosm parses .osm and .osm.pbf; .gz and .bz2 are inflated into a
 * temporary .osm first. The command line is cli.c. */
#include <bzlib.h>
#include <errno.h>
#include <math.h>
#include <readosm.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/alloc.h"
#include "core/settings.h"
#include "graph.h"
#include "import_internal.h"

/* ------------------------------------------------------------ car rules */

static const char *import_tag(const readosm_way *w, const char *key)
{
	for (int i = 0; i < w->tag_count; i++)
		if (strcmp(w->tags[i].key, key) == 0)
			return w->tags[i].value;
	return NULL;
}

/* km/h for a highway class, 0 when cars do not drive there. */
static double import_class_speed(const struct routing_cfg *c, const char *hw, bool *implied_oneway, uint8_t *cls)
{
	static const struct {
		const char *name;
		size_t off;
		uint8_t cls;
	} classes[] = {
		{ "motorway", offsetof(struct routing_cfg, speed_motorway), RMAP_CLASS_MOTORWAY },
		{ "trunk", offsetof(struct routing_cfg, speed_trunk), RMAP_CLASS_TRUNK },
		{ "primary", offsetof(struct routing_cfg, speed_primary), RMAP_CLASS_PRIMARY },
		{ "secondary", offsetof(struct routing_cfg, speed_secondary), RMAP_CLASS_SECONDARY },
		{ "tertiary", offsetof(struct routing_cfg, speed_tertiary), RMAP_CLASS_TERTIARY },
		{ "unclassified", offsetof(struct routing_cfg, speed_unclassified), RMAP_CLASS_UNCLASSIFIED },
		{ "road", offsetof(struct routing_cfg, speed_unclassified), RMAP_CLASS_UNCLASSIFIED },
		{ "residential", offsetof(struct routing_cfg, speed_residential), RMAP_CLASS_RESIDENTIAL },
		{ "living_street", offsetof(struct routing_cfg, speed_living_street), RMAP_CLASS_RESIDENTIAL },
		{ "service", offsetof(struct routing_cfg, speed_service), RMAP_CLASS_SERVICE },
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
		*cls = classes[i].cls;
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
	uint8_t cls = 0;
	double kmh = import_class_speed(im->cfg, hw, &implied, &cls);
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
	im->ways[im->nways++] = (struct osm_way){ w->id, im->nrefs, (size_t)w->node_ref_count, fwd, bwd, cls, (float)kmh };
	for (int i = 0; i < w->node_ref_count; i++) {
		GROW(im->refs, im->nrefs, im->caprefs);
		im->refs[im->nrefs++] = w->node_refs[i];
	}
	return READOSM_OK;
}

static const char *import_rel_tag(const readosm_relation *r, const char *key)
{
	for (int i = 0; i < r->tag_count; i++)
		if (strcmp(r->tags[i].key, key) == 0)
			return r->tags[i].value;
	return NULL;
}

/* A turn restriction for cars: type=restriction with restriction (or
 * restriction:motorcar) = no_* | only_*, not excepting cars, not limited to
 * some hours (day_on, hour_on: conditional restrictions are not modelled),
 * with from and to ways and one via node or via ways. */
static int import_relation(const void *user, const readosm_relation *r)
{
	struct importer *im = (struct importer *)user;
	const char *type = import_rel_tag(r, "type");
	if (!type || strcmp(type, "restriction") != 0)
		return READOSM_OK;
	const char *v = import_rel_tag(r, "restriction:motorcar");
	if (!v)
		v = import_rel_tag(r, "restriction");
	const char *except = import_rel_tag(r, "except");
	if (!v || (except && strstr(except, "motorcar")) || import_rel_tag(r, "day_on") || import_rel_tag(r, "hour_on")) {
		im->restr_other++;
		return READOSM_OK;
	}
	uint8_t kind;
	if (strncmp(v, "no_", 3) == 0)
		kind = RMAP_NO;
	else if (strncmp(v, "only_", 5) == 0)
		kind = RMAP_ONLY;
	else {
		im->restr_other++;
		return READOSM_OK;
	}
	struct osm_restr rs = { .id = r->id, .kind = kind, .u_turn = strstr(v, "u_turn") != NULL, .first = im->nrrefs };
	size_t nvia_nodes = 0;
	/* from ways, then via, then to ways, whatever the members' order */
	for (int pass = 0; pass < 3; pass++) {
		static const char *const roles[] = { "from", "via", "to" };
		for (int i = 0; i < r->member_count; i++) {
			const readosm_member *mb = &r->members[i];
			if (!mb->role || strcmp(mb->role, roles[pass]) != 0)
				continue;
			if (pass == 1 && mb->member_type == READOSM_MEMBER_NODE)
				nvia_nodes++;
			else if (mb->member_type != READOSM_MEMBER_WAY)
				continue;
			GROW(im->rrefs, im->nrrefs, im->caprrefs);
			im->rrefs[im->nrrefs++] = mb->id;
			*(pass == 0 ? &rs.nfrom : pass == 1 ? &rs.nvia : &rs.nto) += 1;
		}
	}
	rs.via_node = nvia_nodes > 0;
	if (rs.nfrom == 0 || rs.nto == 0 || rs.nvia == 0 || (rs.via_node && (nvia_nodes != 1 || rs.nvia != 1))) {
		im->nrrefs = rs.first;
		im->restr_other++;
		return READOSM_OK;
	}
	GROW(im->restr, im->nrestr, im->caprestr);
	im->restr[im->nrestr++] = rs;
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

size_t import_node_find(const struct importer *im, long long id)
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
	uint32_t u, v, time_ms, dist_mm, cls;
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

/* Marks RMAP_THROUGH the nodes outside both fringes that lie on a path
 * from a node a route may start at to one it may end at: reached from a
 * start (forward over first/adj) and reaching an end (forward over the
 * reversed rfirst/radj), such as a slip road from a road that only leaves
 * the extract's core to one that only enters it. */
static void import_through_mark(uint32_t n, const uint32_t *first, const uint32_t *adj, const uint32_t *rfirst,
				const uint32_t *radj, uint8_t *role)
{
	uint8_t *seen = rh_calloc((size_t)n + 1, 1);
	uint32_t *queue = rh_malloc(((size_t)n + 1) * sizeof *queue);
	for (int pass = 0; pass < 2; pass++) {
		const uint8_t want = pass ? RMAP_TO : RMAP_FROM, bit = (uint8_t)(1u << pass);
		const uint32_t *f = pass ? rfirst : first, *a = pass ? radj : adj;
		size_t head = 0, tail = 0;
		for (uint32_t u = 0; u < n; u++)
			if (role[u] & want) {
				seen[u] |= bit;
				queue[tail++] = u;
			}
		while (head < tail) {
			uint32_t u = queue[head++];
			for (uint32_t i = f[u]; i < f[u + 1]; i++)
				if (!(seen[a[i]] & bit)) {
					seen[a[i]] |= bit;
					queue[tail++] = a[i];
				}
		}
	}
	for (uint32_t u = 0; u < n; u++)
		if (role[u] == 0 && seen[u] == 3)
			role[u] = RMAP_THROUGH;
	rh_free(queue);
	rh_free(seen);
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

static bool import_has_edge(const uint32_t *first, const uint32_t *adj, uint32_t u, uint32_t v)
{
	for (uint32_t i = first[u]; i < first[u + 1]; i++)
		if (adj[i] == v)
			return true;
	return false;
}

/* May a route start or end on the segment u-v, in a direction it has?
 * (What snapping accepts: a start on an edge whose end reaches the core,
 * an end on one whose start the core reaches.) */
static bool import_pair_snappable(const uint8_t *role, const uint32_t *first, const uint32_t *adj, uint32_t u,
				  uint32_t v)
{
	return (import_has_edge(first, adj, u, v) && ((role[v] & RMAP_FROM) || (role[u] & RMAP_TO))) ||
	       (import_has_edge(first, adj, v, u) && ((role[u] & RMAP_FROM) || (role[v] & RMAP_TO)));
}

/* The ways' segments as directed edges between graph nodes, numbered in
 * the order the ways reach them (gid: OSM node index -> graph node, NONE
 * for a node no way has); *n graph nodes, *m edges. */
static struct edge *import_way_edges(const struct importer *im, uint32_t *gid, uint32_t *n, size_t *m)
{
	size_t cap = 0;
	struct edge *edges = NULL;
	*n = 0;
	*m = 0;
	for (size_t i = 0; i < im->nnodes; i++)
		gid[i] = NONE;
	for (size_t w = 0; w < im->nways; w++) {
		const struct osm_way *ow = &im->ways[w];
		size_t prev = SIZE_MAX;
		for (size_t k = 0; k < ow->count; k++) {
			size_t cur = import_node_find(im, im->refs[ow->first + k]);
			if (cur != SIZE_MAX && gid[cur] == NONE)
				gid[cur] = (*n)++;
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
					GROW(edges, *m, cap);
					edges[(*m)++] = dir ? (struct edge){ gid[cur], gid[prev], tms, dmm, ow->cls }
							    : (struct edge){ gid[prev], gid[cur], tms, dmm, ow->cls };
				}
			}
			prev = cur; /* a missing node (cut by the extract) breaks the way */
		}
	}
	return edges;
}

/* Each node's role (RMAP_FROM, RMAP_TO; 0 for a node the map leaves out):
 * the largest strongly connected component, and beside it what drains
 * into it (a start there is fine: RMAP_FROM) and what it feeds (a
 * destination: RMAP_TO), such as an old town one may leave but, in the
 * extract, not enter; and the roads between the fringes that bypass the
 * core: a route from one fringe to the other may be shorter that way.
 * edges sorted, (first, adj) their CSR. */
static uint8_t *import_roles(uint32_t n, const struct edge *edges, size_t m, const uint32_t *first,
			     const uint32_t *adj)
{
	uint32_t *comp = rh_malloc(n * sizeof *comp);
	uint32_t big = import_largest_scc(n, first, adj, comp);
	uint8_t *role = rh_calloc(n, 1);
	for (uint32_t u = 0; u < n; u++)
		if (comp[u] == big)
			role[u] = RMAP_FROM | RMAP_TO;
	rh_free(comp);
	import_reach_mark(n, first, adj, role, RMAP_TO);
	struct edge *rev = rh_malloc(m * sizeof *rev);
	for (size_t i = 0; i < m; i++)
		rev[i] = (struct edge){ edges[i].v, edges[i].u, 0, 0, 0 };
	qsort(rev, m, sizeof *rev, import_edge_cmp);
	uint32_t *rfirst = rh_malloc(((size_t)n + 1) * sizeof *rfirst), *radj = rh_malloc(m * sizeof *radj);
	import_csr_build(n, rev, m, rfirst, radj);
	import_reach_mark(n, rfirst, radj, role, RMAP_FROM);
	import_through_mark(n, first, adj, rfirst, radj, role);
	rh_free(rev);
	rh_free(rfirst);
	rh_free(radj);
	return role;
}

/* The kept nodes (a role) renumbered in order into keep (graph node ->
 * final node, NONE if left out); their coordinates and roles into d. */
static uint32_t *import_nodes_keep(const struct importer *im, const uint32_t *gid, uint32_t n, const uint8_t *role,
				   struct mapfile_data *d)
{
	uint32_t *keep = rh_malloc(n * sizeof *keep), kn = 0;
	for (uint32_t u = 0; u < n; u++)
		keep[u] = role[u] ? kn++ : NONE;
	d->n = kn;
	d->lat_e7 = rh_malloc((kn + 1) * sizeof *d->lat_e7);
	d->lon_e7 = rh_malloc((kn + 1) * sizeof *d->lon_e7);
	d->role = rh_malloc(kn + 1);
	for (size_t i = 0; i < im->nnodes; i++)
		if (gid[i] != NONE && keep[gid[i]] != NONE) {
			d->lat_e7[keep[gid[i]]] = im->nodes[i].lat_e7;
			d->lon_e7[keep[gid[i]]] = im->nodes[i].lon_e7;
			d->role[keep[gid[i]]] = role[gid[i]];
		}
	return keep;
}

/* The segments left out, once per pair of nodes, into d: a point near one
 * is told why. */
static void import_dropped(const struct importer *im, const uint32_t *gid, uint32_t n, const struct edge *edges,
			   size_t m, const uint8_t *role, const uint32_t *first, const uint32_t *adj,
			   struct mapfile_data *d)
{
	int32_t *nlat = rh_malloc(((size_t)n + 1) * sizeof *nlat), *nlon = rh_malloc(((size_t)n + 1) * sizeof *nlon);
	for (size_t i = 0; i < im->nnodes; i++)
		if (gid[i] != NONE)
			nlat[gid[i]] = im->nodes[i].lat_e7, nlon[gid[i]] = im->nodes[i].lon_e7;
	d->drop_e7 = rh_malloc((m * 4 + 1) * sizeof *d->drop_e7);
	for (size_t i = 0; i < m; i++) {
		uint32_t u = edges[i].u, v = edges[i].v;
		if (import_pair_snappable(role, first, adj, u, v) || (u > v && import_has_edge(first, adj, v, u)))
			continue;
		int32_t *q = d->drop_e7 + 4 * (size_t)d->ndrop++;
		q[0] = nlat[u], q[1] = nlon[u], q[2] = nlat[v], q[3] = nlon[v];
	}
	rh_free(nlat);
	rh_free(nlon);
}

/* The edges between kept nodes, renumbered, into d in CSR with their
 * times, lengths and classes (edges is reordered in place). */
static void import_edges_keep(struct edge *edges, size_t m, const uint32_t *keep, struct mapfile_data *d)
{
	size_t km = 0;
	for (size_t i = 0; i < m; i++)
		if (keep[edges[i].u] != NONE && keep[edges[i].v] != NONE)
			edges[km++] = (struct edge){ keep[edges[i].u], keep[edges[i].v], edges[i].time_ms, edges[i].dist_mm,
						     edges[i].cls };
	qsort(edges, km, sizeof *edges, import_edge_cmp);
	d->m = (uint32_t)km;
	d->first_out = rh_malloc(((size_t)d->n + 1) * sizeof *d->first_out);
	d->to = rh_malloc((km + 1) * sizeof *d->to);
	d->time_ms = rh_malloc((km + 1) * sizeof *d->time_ms);
	d->dist_mm = rh_malloc((km + 1) * sizeof *d->dist_mm);
	d->cls = rh_malloc(km + 1);
	import_csr_build(d->n, edges, km, d->first_out, d->to);
	for (size_t i = 0; i < km; i++)
		d->time_ms[i] = edges[i].time_ms, d->dist_mm[i] = edges[i].dist_mm, d->cls[i] = (uint8_t)edges[i].cls;
}

/* Ways -> edges over graph nodes; then only the largest component and what
 * routes reach through it, in CSR, with the turn graph; written to map_path. */
static rh_err import_build_and_write(struct importer *im, const char *map_path, struct routing_stats *st, char *err,
			      size_t errlen)
{
	qsort(im->nodes, im->nnodes, sizeof *im->nodes, import_node_cmp);
	uint32_t *gid = rh_malloc((im->nnodes + 1) * sizeof *gid);
	uint32_t n;
	size_t m;
	struct edge *edges = import_way_edges(im, gid, &n, &m);
	if (n == 0 || m == 0) {
		rh_free(gid);
		rh_free(edges);
		snprintf(err, errlen, "no drivable roads in the extract");
		return RH_EINVAL;
	}
	qsort(edges, m, sizeof *edges, import_edge_cmp);
	uint32_t *first = rh_malloc(((size_t)n + 1) * sizeof *first), *adj = rh_malloc(m * sizeof *adj);
	import_csr_build(n, edges, m, first, adj);
	uint8_t *role = import_roles(n, edges, m, first, adj);
	struct mapfile_data d = { 0 };
	uint32_t *keep = import_nodes_keep(im, gid, n, role, &d);
	import_dropped(im, gid, n, edges, m, role, first, adj, &d);
	import_edges_keep(edges, m, keep, &d);
	/* OSM node index -> final node, for the restrictions */
	uint32_t *final = rh_malloc((im->nnodes + 1) * sizeof *final);
	for (size_t i = 0; i < im->nnodes; i++)
		final[i] = gid[i] != NONE ? keep[gid[i]] : NONE;
	struct import_turns tr = { 0 };
	import_restrictions(im, final, &d, &tr);
	import_turn_graph(&d, &tr);
	rh_free(final);
	rh_err e = mapfile_build_ch(&d);
	if (e != RH_OK)
		snprintf(err, errlen, "cannot build the contraction hierarchy");
	else
		e = mapfile_write(map_path, &d, err, errlen);
	if (st) {
		memset(st, 0, sizeof *st);
		st->nodes = d.n, st->edges = d.m;
		st->osm_nodes = im->nnodes, st->osm_ways = im->all_ways, st->road_ways = im->nways;
		st->restrictions = tr.relations_applied;
		st->restrictions_skipped = tr.relations_skipped + im->restr_other;
		st->turn_nodes = d.xn, st->turn_arcs = d.xm;
	}
	import_turns_fini(&tr);
	mapfile_data_fini(&d); /* lat, lon and roles too */
	void *ptrs[] = { gid, edges, first, adj, keep, role };
	for (size_t i = 0; i < RH_ARRAY_LEN(ptrs); i++)
		rh_free(ptrs[i]);
	return e;
}

/* Why an extract could not be read, in words: the file itself (missing,
 * a directory, empty, unreadable), else what its first bytes are. */
static void import_explain(const char *path, const char *src, int rc, char *err, size_t errlen)
{
	struct stat st;
	if (stat(path, &st) != 0) {
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
		return;
	}
	if (S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "cannot read %s: it is a directory", path);
		return;
	}
	FILE *f = fopen(src, "rb");
	if (!f) {
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
		return;
	}
	unsigned char head[64];
	size_t n = fread(head, 1, sizeof head, f);
	fclose(f);
	bool pbf = import_has_suffix(src, ".pbf");
	const char *why;
	if (n == 0)
		why = "the file is empty";
	else if (pbf && n >= 17 && memmem(head, n, "OSMHeader", 9))
		why = "a PBF file, but truncated or corrupt past its header";
	else if (pbf)
		why = "not an OpenStreetMap PBF file (no OSMHeader block at its start)";
	else if (head[0] == '<' || (n >= 3 && head[0] == 0xef && head[1] == 0xbb && head[2] == 0xbf))
		why = rc == READOSM_XML_ERROR ? "XML, but not well-formed (truncated or corrupt?)" : "unreadable XML";
	else
		why = "not OpenStreetMap XML (it does not start with '<')";
	snprintf(err, errlen, "cannot read %s: %s (OpenStreetMap reader code %d)", path, why, rc);
}

rh_err routing_import(const char *osm_path, const struct routing_cfg *cfg, const char *map_path,
		      struct routing_stats *st, char *err, size_t errlen)
{
	_Static_assert(sizeof(struct mapfile_header) == RMAP_HEADER_SIZE, "map header layout");
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
		rc = readosm_parse(h, &im, import_node, import_way, import_relation);
	readosm_close(h);
	rh_err e;
	if (rc != READOSM_OK) {
		import_explain(osm_path, src, rc, err, errlen);
		e = RH_EINVAL;
	} else {
		e = import_build_and_write(&im, map_path, st, err, errlen);
	}
	if (tmp[0])
		unlink(tmp);
	rh_free(im.nodes);
	rh_free(im.refs);
	rh_free(im.ways);
	rh_free(im.restr);
	rh_free(im.rrefs);
	return e;
}
