/* The map file: writing it (import, calibrate) and reading it back with
 * every size, index and order checked before any of it is used. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "graph.h"

#define NONE UINT32_MAX

/* ------------------------------------------------------------ hierarchy */

rh_err mapfile_build_ch(struct mapfile_data *d)
{
	uint32_t *tms = rh_malloc(((size_t)d->xm + 1) * sizeof *tms), *dmm = rh_malloc(((size_t)d->xm + 1) * sizeof *dmm);
	uint32_t *etime = rh_malloc(((size_t)d->m + 1) * sizeof *etime);
	for (uint32_t e = 0; e < d->m; e++)
		etime[e] = mapfile_edge_time(d, e);
	/* an arc x -> y costs y's road edge: labels are "at the end of the edge" */
	for (uint32_t a = 0; a < d->xm; a++) {
		uint32_t road = d->xroad[d->xto[a]];
		tms[a] = etime[road];
		dmm[a] = d->dist_mm[road];
	}
	rh_err e = RH_OK;
	for (int metric = 0; metric < 2 && e == RH_OK; metric++) {
		ch_graph_fini(&d->ch[metric]);
		e = ch_build(d->xn, d->xfirst, d->xto, tms, dmm, metric, &d->ch[metric]);
	}
	rh_free(tms);
	rh_free(dmm);
	rh_free(etime);
	return e;
}

/* ------------------------------------------------------------ writing */

static bool mapfile_write_all(FILE *f, const void *p, size_t n, crypto_generichash_state *h)
{
	crypto_generichash_update(h, p, n);
	return n == 0 || fwrite(p, 1, n, f) == n;
}

static uint64_t mapfile_turn_len(const struct mapfile_data *d)
{
	return 20 + (uint64_t)d->ndrop * 16 + ((uint64_t)d->xn - d->m) * 4 + ((uint64_t)d->xn + 1) * 4 + (uint64_t)d->xm * 4 +
	       (uint64_t)d->nrestr * sizeof(struct mapfile_restriction) + (uint64_t)d->nrvia * 4;
}

rh_err mapfile_write(const char *path, const struct mapfile_data *d, char *err, size_t errlen)
{
	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
	FILE *f = fopen(tmp, "wb");
	if (!f) {
		snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
		return RH_EIO;
	}
	uint32_t n = d->n, m = d->m;
	struct mapfile_header h;
	memset(&h, 0, sizeof h);
	memcpy(h.magic, RMAP_MAGIC, 8);
	h.version = RMAP_VERSION;
	h.flags = d->has_profile ? RMAP_FLAG_PROFILE : 0;
	h.nodes = n, h.edges = m;
	h.body_len = mapfile_body_len(n, m) + mapfile_turn_len(d) + (d->has_profile ? sizeof(struct mapfile_profile) : 0);
	for (int i = 0; i < 2; i++)
		h.body_len += 8 + (uint64_t)d->xn * 4 + ((uint64_t)d->xn + 1) * 8 +
			      ((uint64_t)d->ch[i].nup + d->ch[i].ndown) * sizeof(struct ch_edge);
	bool ok = fwrite(&h, 1, sizeof h, f) == sizeof h;
	crypto_generichash_state hs;
	crypto_generichash_init(&hs, NULL, 0, RMAP_HASH_SIZE);
	ok = ok && mapfile_write_all(f, d->lat_e7, (size_t)n * 4, &hs) && mapfile_write_all(f, d->lon_e7, (size_t)n * 4, &hs);
	ok = ok && mapfile_write_all(f, d->role, n, &hs);
	ok = ok && mapfile_write_all(f, d->first_out, ((size_t)n + 1) * 4, &hs);
	ok = ok && mapfile_write_all(f, d->to, (size_t)m * 4, &hs) && mapfile_write_all(f, d->time_ms, (size_t)m * 4, &hs);
	ok = ok && mapfile_write_all(f, d->dist_mm, (size_t)m * 4, &hs) && mapfile_write_all(f, d->cls, m, &hs);
	uint32_t counts4[5] = { d->xn, d->xm, d->nrestr, d->nrvia, d->ndrop };
	ok = ok && mapfile_write_all(f, counts4, sizeof counts4, &hs);
	ok = ok && mapfile_write_all(f, d->xroad + m, ((size_t)d->xn - m) * 4, &hs);
	ok = ok && mapfile_write_all(f, d->xfirst, ((size_t)d->xn + 1) * 4, &hs);
	ok = ok && mapfile_write_all(f, d->xto, (size_t)d->xm * 4, &hs);
	ok = ok && mapfile_write_all(f, d->rs, (size_t)d->nrestr * sizeof *d->rs, &hs);
	ok = ok && mapfile_write_all(f, d->rvia, (size_t)d->nrvia * 4, &hs);
	ok = ok && mapfile_write_all(f, d->drop_e7, (size_t)d->ndrop * 16, &hs);
	if (d->has_profile)
		ok = ok && mapfile_write_all(f, &d->profile, sizeof d->profile, &hs);
	for (int i = 0; i < 2 && ok; i++) {
		const struct ch_graph *c = &d->ch[i];
		uint32_t counts[2] = { c->nup, c->ndown };
		ok = mapfile_write_all(f, counts, sizeof counts, &hs) && mapfile_write_all(f, c->rank, (size_t)d->xn * 4, &hs) &&
		     mapfile_write_all(f, c->first_up, ((size_t)d->xn + 1) * 4, &hs) &&
		     mapfile_write_all(f, c->first_down, ((size_t)d->xn + 1) * 4, &hs) &&
		     mapfile_write_all(f, c->up, (size_t)c->nup * sizeof(struct ch_edge), &hs) &&
		     mapfile_write_all(f, c->down, (size_t)c->ndown * sizeof(struct ch_edge), &hs);
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

/* ------------------------------------------------------------ reading */

struct mapfile_reader {
	const uint8_t *p, *end;
};

/* A copy of the next n bytes, or NULL when the body is shorter. */
static void *mapfile_take(struct mapfile_reader *rd, uint64_t n)
{
	if (n > (uint64_t)(rd->end - rd->p))
		return NULL;
	void *out = rh_malloc(n ? (size_t)n : 1);
	memcpy(out, rd->p, (size_t)n);
	rd->p += n;
	return out;
}

static bool mapfile_err(char *err, size_t errlen, const char *msg)
{
	snprintf(err, errlen, "%s", msg);
	return false;
}

static bool mapfile_index_ok(const uint32_t *first, uint32_t n, uint32_t count)
{
	if (first[0] != 0 || first[n] != count)
		return false;
	for (uint32_t u = 0; u < n; u++)
		if (first[u] > first[u + 1])
			return false;
	return true;
}

static bool mapfile_graph_ok(const struct mapfile_data *d, char *err, size_t errlen)
{
	if (!mapfile_index_ok(d->first_out, d->n, d->m))
		return mapfile_err(err, errlen, "edge index out of order or not covering the edges");
	for (uint32_t u = 0; u < d->n; u++) {
		if (d->role[u] == 0 || (d->role[u] > (RMAP_FROM | RMAP_TO) && d->role[u] != RMAP_THROUGH))
			return mapfile_err(err, errlen, "node role out of range");
		if (d->lat_e7[u] < -900000000 || d->lat_e7[u] > 900000000 || d->lon_e7[u] < -1800000000 ||
		    d->lon_e7[u] > 1800000000)
			return mapfile_err(err, errlen, "node coordinate out of range");
	}
	for (uint32_t e = 0; e < d->m; e++) {
		if (d->to[e] >= d->n)
			return mapfile_err(err, errlen, "edge points past the last node");
		if (d->cls[e] >= RMAP_CLASSES)
			return mapfile_err(err, errlen, "road class out of range");
	}
	return true;
}

/* Node x of the turn graph stands for road edge xroad[x]; an arc x -> y is a
 * turn at the node x's edge ends on, so y's edge must start there. */
static bool mapfile_turns_ok(const struct mapfile_data *d, const uint32_t *from, char *err, size_t errlen)
{
	for (uint32_t x = d->m; x < d->xn; x++)
		if (d->xroad[x] >= d->m)
			return mapfile_err(err, errlen, "turn-graph copy of an edge past the last edge");
	if (!mapfile_index_ok(d->xfirst, d->xn, d->xm))
		return mapfile_err(err, errlen, "turn index out of order or not covering the arcs");
	for (uint32_t x = 0; x < d->xn; x++)
		for (uint32_t a = d->xfirst[x]; a < d->xfirst[x + 1]; a++)
			if (d->xto[a] >= d->xn || from[d->xroad[d->xto[a]]] != d->to[d->xroad[x]])
				return mapfile_err(err, errlen, "turn joins edges that do not meet");
	for (uint32_t i = 0; i < d->nrestr; i++) {
		const struct mapfile_restriction *r = &d->rs[i];
		if (r->from >= d->m || r->to >= d->m || r->kind > RMAP_ONLY || r->via_first > d->nrvia ||
		    r->via_count > d->nrvia - r->via_first)
			return mapfile_err(err, errlen, "restriction out of range");
	}
	for (uint32_t i = 0; i < d->nrvia; i++)
		if (d->rvia[i] >= d->m)
			return mapfile_err(err, errlen, "restriction via edge out of range");
	return true;
}

static bool mapfile_ch_edges_ok(const struct ch_graph *g, const uint32_t *first, const struct ch_edge *e)
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

/* One metric's hierarchy: kept (and checked) or skipped (the checksum
 * already covered it). */
static bool mapfile_ch_read(struct mapfile_reader *rd, uint32_t n, bool keep, struct ch_graph *g, char *err, size_t errlen)
{
	uint32_t counts[2];
	if (rd->end - rd->p < 8)
		return mapfile_err(err, errlen, "hierarchy section missing");
	memcpy(counts, rd->p, 8);
	rd->p += 8;
	uint64_t size = (uint64_t)n * 4 + ((uint64_t)n + 1) * 8 + ((uint64_t)counts[0] + counts[1]) * sizeof(struct ch_edge);
	if (counts[0] > 2u * RMAP_MAX_EDGES || counts[1] > 2u * RMAP_MAX_EDGES || size > (uint64_t)(rd->end - rd->p))
		return mapfile_err(err, errlen, "hierarchy section larger than the file");
	if (!keep) {
		rd->p += size;
		return true;
	}
	g->n = n, g->nup = counts[0], g->ndown = counts[1];
	g->rank = mapfile_take(rd, (uint64_t)n * 4);
	g->first_up = mapfile_take(rd, ((uint64_t)n + 1) * 4);
	g->first_down = mapfile_take(rd, ((uint64_t)n + 1) * 4);
	g->up = mapfile_take(rd, (uint64_t)g->nup * sizeof *g->up);
	g->down = mapfile_take(rd, (uint64_t)g->ndown * sizeof *g->down);
	uint8_t *seen = rh_calloc((size_t)n + 1, 1);
	bool perm = true;
	for (uint32_t u = 0; u < n && perm; u++) {
		perm = g->rank[u] < n && !seen[g->rank[u]];
		if (perm)
			seen[g->rank[u]] = 1;
	}
	rh_free(seen);
	if (!perm)
		return mapfile_err(err, errlen, "hierarchy ranks are not a permutation");
	if (!mapfile_index_ok(g->first_up, n, g->nup) || !mapfile_index_ok(g->first_down, n, g->ndown))
		return mapfile_err(err, errlen, "hierarchy edge index out of order");
	if (!mapfile_ch_edges_ok(g, g->first_up, g->up) || !mapfile_ch_edges_ok(g, g->first_down, g->down))
		return mapfile_err(err, errlen, "hierarchy edge breaks the rank order");
	return true;
}

static bool mapfile_profile_ok(const struct mapfile_profile *p, char *err, size_t errlen)
{
	if (memchr(p->tz, 0, sizeof p->tz) == NULL)
		return mapfile_err(err, errlen, "profile time zone is not terminated");
	for (size_t i = 0; p->tz[i]; i++) {
		char c = p->tz[i];
		bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
			  c == '/' || c == '+' || c == '-';
		if (!ok || (i == 0 && c == '/') || (c == '.'))
			return mapfile_err(err, errlen, "profile time zone is not a zone name");
	}
	for (int c = 0; c < RMAP_CLASSES; c++)
		if (!(p->class_factor[c] >= 0.1f && p->class_factor[c] <= 100.0f))
			return mapfile_err(err, errlen, "profile class factor out of range");
	for (int h = 0; h < RMAP_HOURS; h++)
		if (!(p->hour_factor[h] >= 0.1f && p->hour_factor[h] <= 10.0f))
			return mapfile_err(err, errlen, "profile hour factor out of range");
	if (!(p->overhead_s >= 0 && p->overhead_s <= 3600) || !(p->range_lo > 0 && p->range_lo <= 1) ||
	    !(p->range_hi >= 1 && p->range_hi <= 100))
		return mapfile_err(err, errlen, "profile overhead or range out of range");
	return true;
}

/* The header of a map file of len bytes into h: magic, version, counts,
 * length and the body's checksum. */
static rh_err mapfile_header_read(const void *data, size_t len, struct mapfile_header *h, char *err, size_t errlen)
{
	if (len < RMAP_HEADER_SIZE) {
		snprintf(err, errlen, "truncated map file (%zu bytes, no complete header)", len);
		return RH_EINVAL;
	}
	memcpy(h, data, sizeof *h);
	if (memcmp(h->magic, RMAP_MAGIC, 8) != 0) {
		snprintf(err, errlen, "not a ridehail map file (bad magic); make one with `ridehaild map import`");
		return RH_EINVAL;
	}
	if (h->version != RMAP_VERSION) {
		snprintf(err, errlen, "map file version %u, this build reads %u: import the map again", h->version,
			 RMAP_VERSION);
		return RH_EINVAL;
	}
	if (h->nodes == 0 || h->nodes > RMAP_MAX_NODES || h->edges > RMAP_MAX_EDGES ||
	    (h->flags & ~RMAP_FLAG_PROFILE) || h->body_len < mapfile_body_len(h->nodes, h->edges)) {
		snprintf(err, errlen, "map header is inconsistent (%u nodes, %u edges, %llu body bytes)", h->nodes,
			 h->edges, (unsigned long long)h->body_len);
		return RH_EINVAL;
	}
	if (len - RMAP_HEADER_SIZE != h->body_len) {
		snprintf(err, errlen, "map file is %s: %zu body bytes, header says %llu",
			 len - RMAP_HEADER_SIZE < h->body_len ? "truncated" : "too long", len - RMAP_HEADER_SIZE,
			 (unsigned long long)h->body_len);
		return RH_EINVAL;
	}
	uint8_t hash[RMAP_HASH_SIZE];
	crypto_generichash(hash, sizeof hash, (const uint8_t *)data + RMAP_HEADER_SIZE, h->body_len, NULL, 0);
	if (sodium_memcmp(hash, h->hash, sizeof hash) != 0) {
		snprintf(err, errlen, "map file is corrupt (checksum mismatch)");
		return RH_EINVAL;
	}
	return RH_OK;
}

/* The turn section (the turn graph, the restrictions it models, the
 * segments the import left out) into d, whose road graph is read and
 * checked; false with err set if it is missing or wrong. */
static bool mapfile_turns_read(struct mapfile_reader *rd, struct mapfile_data *d, char *err, size_t errlen)
{
	uint32_t counts[5] = { 0 }, m = d->m;
	if (rd->end - rd->p < 20)
		return mapfile_err(err, errlen, "turn section missing");
	memcpy(counts, rd->p, 20);
	rd->p += 20;
	d->xn = counts[0], d->xm = counts[1], d->nrestr = counts[2], d->nrvia = counts[3], d->ndrop = counts[4];
	if (d->xn < m || d->xn > RMAP_MAX_EDGES || d->nrestr > RMAP_MAX_EDGES || d->nrvia > RMAP_MAX_EDGES)
		return mapfile_err(err, errlen, "turn section counts out of range");
	uint32_t *copies = mapfile_take(rd, ((uint64_t)d->xn - m) * 4);
	d->xfirst = mapfile_take(rd, ((uint64_t)d->xn + 1) * 4);
	d->xto = mapfile_take(rd, (uint64_t)d->xm * 4);
	d->rs = mapfile_take(rd, (uint64_t)d->nrestr * sizeof *d->rs);
	d->rvia = mapfile_take(rd, (uint64_t)d->nrvia * 4);
	d->drop_e7 = mapfile_take(rd, (uint64_t)d->ndrop * 16);
	if (!copies || !d->xfirst || !d->xto || !d->rs || !d->rvia || !d->drop_e7) {
		rh_free(copies);
		return mapfile_err(err, errlen, "turn section larger than the file");
	}
	d->xroad = rh_malloc(((size_t)d->xn + 1) * sizeof *d->xroad);
	for (uint32_t x = 0; x < m; x++)
		d->xroad[x] = x;
	memcpy(d->xroad + m, copies, ((size_t)d->xn - m) * 4);
	rh_free(copies);
	uint32_t *from = rh_malloc(((size_t)m + 1) * sizeof *from);
	for (uint32_t u = 0; u < d->n; u++)
		for (uint32_t e = d->first_out[u]; e < d->first_out[u + 1]; e++)
			from[e] = u;
	bool ok = mapfile_turns_ok(d, from, err, errlen);
	rh_free(from);
	for (uint32_t i = 0; ok && i < d->ndrop * 4; i += 2)
		if (d->drop_e7[i] < -900000000 || d->drop_e7[i] > 900000000 || d->drop_e7[i + 1] < -1800000000 ||
		    d->drop_e7[i + 1] > 1800000000)
			ok = mapfile_err(err, errlen, "dropped segment coordinate out of range");
	return ok;
}

/* The travel-time profile `map calibrate` wrote, into d. */
static bool mapfile_profile_read(struct mapfile_reader *rd, struct mapfile_data *d, char *err, size_t errlen)
{
	if ((uint64_t)(rd->end - rd->p) < sizeof d->profile)
		return mapfile_err(err, errlen, "profile section missing");
	memcpy(&d->profile, rd->p, sizeof d->profile);
	rd->p += sizeof d->profile;
	d->has_profile = true;
	return mapfile_profile_ok(&d->profile, err, errlen);
}

rh_err mapfile_parse(const void *data, size_t len, struct mapfile_data *d, int keep_metric, bool both, char *err,
		  size_t errlen)
{
	memset(d, 0, sizeof *d);
	struct mapfile_header h;
	rh_err e = mapfile_header_read(data, len, &h, err, errlen);
	if (e != RH_OK)
		return e;
	const uint8_t *body = (const uint8_t *)data + RMAP_HEADER_SIZE;
	struct mapfile_reader rd = { body, body + h.body_len };
	uint32_t n = d->n = h.nodes, m = d->m = h.edges;
	d->lat_e7 = mapfile_take(&rd, (uint64_t)n * 4);
	d->lon_e7 = mapfile_take(&rd, (uint64_t)n * 4);
	d->role = mapfile_take(&rd, n);
	d->first_out = mapfile_take(&rd, ((uint64_t)n + 1) * 4);
	d->to = mapfile_take(&rd, (uint64_t)m * 4);
	d->time_ms = mapfile_take(&rd, (uint64_t)m * 4);
	d->dist_mm = mapfile_take(&rd, (uint64_t)m * 4);
	d->cls = mapfile_take(&rd, m);
	bool ok = mapfile_graph_ok(d, err, errlen) && mapfile_turns_read(&rd, d, err, errlen);
	if (ok && (h.flags & RMAP_FLAG_PROFILE))
		ok = mapfile_profile_read(&rd, d, err, errlen);
	for (int metric = 0; metric < 2 && ok; metric++)
		ok = mapfile_ch_read(&rd, d->xn, both || metric == keep_metric, &d->ch[metric], err, errlen);
	if (ok && rd.p != rd.end)
		ok = mapfile_err(err, errlen, "trailing bytes after the hierarchies");
	if (!ok) {
		mapfile_data_fini(d);
		return RH_EINVAL;
	}
	return RH_OK;
}

void mapfile_data_fini(struct mapfile_data *d)
{
	void *ptrs[] = { d->lat_e7, d->lon_e7, d->role, d->first_out, d->to, d->time_ms, d->dist_mm, d->cls,
			 d->xroad, d->xfirst, d->xto, d->rs, d->rvia, d->drop_e7 };
	for (size_t i = 0; i < RH_ARRAY_LEN(ptrs); i++)
		rh_free(ptrs[i]);
	ch_graph_fini(&d->ch[0]);
	ch_graph_fini(&d->ch[1]);
	memset(d, 0, sizeof *d);
}
