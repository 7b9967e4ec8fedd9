#include "geo/grid.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "geo/geohash.h"

#define DEG2RAD (M_PI / 180.0)
#define GEO_NONE32 UINT32_MAX

/* One driver inside a cell. Everything a query reads sits here, contiguous
 * per cell, so a scan touches no other memory: the position as a unit vector
 * (the chord between two unit vectors gives the great-circle distance with no
 * trigonometry per candidate), the filter fields and the slot. 40 bytes. */
struct geo_entry {
	double x, y, z;
	int64_t ping_ms;
	uint32_t slot;
	uint16_t vehicle;
	uint8_t status;
};

/* A cell: a swap-remove array of entries. Records live in a dense array with
 * stable indices (slots point at them); free records form a list through
 * next_free and keep their entry buffer for the next cell. */
struct geo_cellrec {
	uint64_t key; /* geohash of the cell; GEO_HASH_NONE when free */
	struct geo_entry *e;
	uint32_t n, cap;
	uint32_t next_free;
};

/* Per slot: where the driver's entry is, and its position in degrees (kept
 * here, off the scan path, for get and for the hits). cell == GEO_NONE32:
 * not in the grid. */
struct geo_slot {
	double lat, lon;
	uint32_t cell;
	uint32_t pos;
};

/* Open addressing, linear probing, load <= 1/2, backward-shift deletion (no
 * tombstones). Maps a cell key to its record index. */
struct geo_hslot {
	uint64_t key; /* GEO_HASH_NONE when empty */
	uint32_t cell;
};

struct geo_grid {
	unsigned bits, lat_bits, lon_bits;
	uint32_t nrows, ncols;    /* 2^lat_bits, 2^lon_bits */
	double row_deg, col_deg;  /* cell height and width in degrees */
	uint32_t max_slots;

	struct geo_slot *slots;
	uint32_t slots_cap;
	size_t count;

	struct geo_cellrec *cells;
	uint32_t cells_len, cells_cap; /* records in use or on the free list / allocated */
	uint32_t free_head;
	size_t ncells;                 /* non-empty cells */
	size_t entry_cap_total;        /* sum of cells[].cap, for memory accounting */

	struct geo_hslot *ht;
	uint32_t ht_cap;               /* power of two */
	unsigned ht_shift;             /* 64 - log2(ht_cap) */

	uint32_t sweep_cursor;
	struct geo_grid_stats stats;
};

/* ------------------------------------------------------------ hash table */

static inline uint32_t geo_ht_home(const struct geo_grid *g, uint64_t key)
{
	/* Fibonacci hashing: neighbouring cells differ in low bits. */
	return (uint32_t)((key * 0x9e3779b97f4a7c15ULL) >> g->ht_shift);
}

static inline uint32_t geo_ht_find(const struct geo_grid *g, uint64_t key)
{
	uint32_t mask = g->ht_cap - 1;
	for (uint32_t i = geo_ht_home(g, key);; i = (i + 1) & mask) {
		if (g->ht[i].key == key)
			return g->ht[i].cell;
		if (g->ht[i].key == GEO_HASH_NONE)
			return GEO_NONE32;
	}
}

static void geo_ht_put(struct geo_grid *g, uint64_t key, uint32_t cell)
{
	uint32_t mask = g->ht_cap - 1, i = geo_ht_home(g, key);
	while (g->ht[i].key != GEO_HASH_NONE)
		i = (i + 1) & mask;
	g->ht[i].key = key;
	g->ht[i].cell = cell;
}

static void geo_ht_alloc(struct geo_grid *g, uint32_t cap)
{
	g->ht = rh_malloc(sizeof *g->ht * cap);
	for (uint32_t i = 0; i < cap; i++)
		g->ht[i].key = GEO_HASH_NONE;
	g->ht_cap = cap;
	g->ht_shift = 64 - (unsigned)__builtin_ctz(cap);
}

static void geo_ht_grow(struct geo_grid *g)
{
	struct geo_hslot *old = g->ht;
	uint32_t old_cap = g->ht_cap;
	geo_ht_alloc(g, old_cap * 2);
	for (uint32_t i = 0; i < old_cap; i++)
		if (old[i].key != GEO_HASH_NONE)
			geo_ht_put(g, old[i].key, old[i].cell);
	rh_free(old);
}

static void geo_ht_del(struct geo_grid *g, uint64_t key)
{
	uint32_t mask = g->ht_cap - 1, i = geo_ht_home(g, key);
	while (g->ht[i].key != key)
		i = (i + 1) & mask;
	/* Backward shift: pull later members of the probe run into the hole
	 * unless that would move them before their home slot. */
	for (uint32_t j = (i + 1) & mask;; j = (j + 1) & mask) {
		if (g->ht[j].key == GEO_HASH_NONE)
			break;
		uint32_t home = geo_ht_home(g, g->ht[j].key);
		/* Is home cyclically outside (i, j]? Then j may move to i. */
		if (((j - home) & mask) >= ((j - i) & mask)) {
			g->ht[i] = g->ht[j];
			i = j;
		}
	}
	g->ht[i].key = GEO_HASH_NONE;
}

/* ------------------------------------------------------------ cells */

static uint32_t geo_cell_acquire(struct geo_grid *g, uint64_t key)
{
	uint32_t c = geo_ht_find(g, key);
	if (c != GEO_NONE32)
		return c;
	if (g->free_head != GEO_NONE32) {
		c = g->free_head;
		g->free_head = g->cells[c].next_free;
	} else {
		if (g->cells_len == g->cells_cap) {
			uint32_t cap = g->cells_cap * 2;
			g->cells = rh_realloc(g->cells, sizeof *g->cells * cap);
			g->cells_cap = cap;
		}
		c = g->cells_len++;
		g->cells[c].e = NULL;
		g->cells[c].cap = 0;
	}
	g->cells[c].key = key;
	g->cells[c].n = 0;
	g->cells[c].next_free = GEO_NONE32;
	if ((g->ncells + 1) * 2 > g->ht_cap)
		geo_ht_grow(g);
	geo_ht_put(g, key, c);
	g->ncells++;
	return c;
}

/* An emptied cell leaves the hash table. Small entry buffers stay with the
 * record for the next cell (a driver wobbling across a cell edge must not
 * cost a malloc per ping); big ones are returned. */
static void geo_cell_release(struct geo_grid *g, uint32_t c)
{
	struct geo_cellrec *cr = &g->cells[c];
	geo_ht_del(g, cr->key);
	cr->key = GEO_HASH_NONE;
	if (cr->cap > 8) {
		g->entry_cap_total -= cr->cap;
		rh_free(cr->e);
		cr->e = NULL;
		cr->cap = 0;
	}
	cr->next_free = g->free_head;
	g->free_head = c;
	g->ncells--;
}

static void geo_cell_append(struct geo_grid *g, uint32_t c, uint32_t slot, const struct geo_entry *e)
{
	struct geo_cellrec *cr = &g->cells[c];
	if (cr->n == cr->cap) {
		uint32_t cap = cr->cap ? cr->cap * 2 : 4;
		cr->e = rh_realloc(cr->e, sizeof *cr->e * cap);
		g->entry_cap_total += cap - cr->cap;
		cr->cap = cap;
	}
	cr->e[cr->n] = *e;
	g->slots[slot].cell = c;
	g->slots[slot].pos = cr->n;
	cr->n++;
}

/* Takes the slot's entry out of its cell (swap-remove) into *out. */
static void geo_cell_take(struct geo_grid *g, uint32_t slot, struct geo_entry *out)
{
	struct geo_slot *s = &g->slots[slot];
	uint32_t c = s->cell;
	struct geo_cellrec *cr = &g->cells[c];
	*out = cr->e[s->pos];
	uint32_t last = --cr->n;
	if (s->pos != last) {
		cr->e[s->pos] = cr->e[last];
		g->slots[cr->e[s->pos].slot].pos = s->pos;
	}
	s->cell = GEO_NONE32;
	if (cr->n == 0)
		geo_cell_release(g, c);
}

static inline uint64_t geo_grid_key(const struct geo_grid *g, double lat, double lon)
{
	uint32_t i, j;
	geo_hash_index_of(lat, lon, g->bits, &i, &j);
	return geo_hash_from_index(i, j, g->bits);
}

static inline void geo_unit_vector(double lat, double lon, struct geo_entry *e)
{
	double p = lat * DEG2RAD, l = lon * DEG2RAD;
	double cp = cos(p);
	e->x = cp * cos(l);
	e->y = cp * sin(l);
	e->z = sin(p);
}

/* ------------------------------------------------------------ lifecycle */

rh_err geo_grid_new(const struct geo_grid_config *cfg, struct geo_grid **out)
{
	unsigned bits = cfg->bits ? cfg->bits : GEO_GRID_DEFAULT_BITS;
	if (bits < GEO_GRID_MIN_BITS || bits > GEO_GRID_MAX_BITS || cfg->max_slots == 0)
		return RH_EINVAL;
	struct geo_grid *g = RH_NEW(struct geo_grid);
	g->bits = bits;
	g->lat_bits = geo_hash_lat_bits(bits);
	g->lon_bits = geo_hash_lon_bits(bits);
	g->nrows = 1u << g->lat_bits;
	g->ncols = 1u << g->lon_bits;
	g->row_deg = 180.0 / g->nrows;
	g->col_deg = 360.0 / g->ncols;
	g->max_slots = cfg->max_slots;
	g->slots_cap = cfg->initial_slots < cfg->max_slots ? cfg->initial_slots : cfg->max_slots;
	if (g->slots_cap < 16)
		g->slots_cap = cfg->max_slots < 16 ? cfg->max_slots : 16;
	g->slots = rh_malloc(sizeof *g->slots * g->slots_cap);
	for (uint32_t i = 0; i < g->slots_cap; i++)
		g->slots[i].cell = GEO_NONE32;
	g->cells_cap = 64;
	g->cells = rh_malloc(sizeof *g->cells * g->cells_cap);
	g->free_head = GEO_NONE32;
	geo_ht_alloc(g, 128);
	*out = g;
	return RH_OK;
}

void geo_grid_free(struct geo_grid *g)
{
	if (!g)
		return;
	for (uint32_t c = 0; c < g->cells_len; c++)
		rh_free(g->cells[c].e);
	rh_free(g->cells);
	rh_free(g->slots);
	rh_free(g->ht);
	rh_free(g);
}

/* ------------------------------------------------------------ drivers */

static void geo_slots_reserve(struct geo_grid *g, uint32_t slot)
{
	if (slot < g->slots_cap)
		return;
	uint64_t cap = (uint64_t)g->slots_cap * 2;
	if (cap <= slot)
		cap = (uint64_t)slot + 1;
	if (cap > g->max_slots)
		cap = g->max_slots;
	g->slots = rh_realloc(g->slots, sizeof *g->slots * cap);
	for (uint32_t i = g->slots_cap; i < cap; i++)
		g->slots[i].cell = GEO_NONE32;
	g->slots_cap = (uint32_t)cap;
}

bool geo_grid_has(const struct geo_grid *g, uint32_t slot)
{
	return slot < g->slots_cap && g->slots[slot].cell != GEO_NONE32;
}

static inline struct geo_entry *geo_grid_entry(const struct geo_grid *g, uint32_t slot)
{
	const struct geo_slot *s = &g->slots[slot];
	return &g->cells[s->cell].e[s->pos];
}

rh_err geo_grid_insert(struct geo_grid *g, uint32_t slot, const struct geo_grid_driver *d)
{
	if (slot >= g->max_slots || !geo_coord_is_valid(d->lat, d->lon) || d->status > GEO_GRID_MAX_STATUS)
		return RH_EINVAL;
	if (geo_grid_has(g, slot))
		return RH_ECONFLICT;
	geo_slots_reserve(g, slot);
	struct geo_entry e;
	geo_unit_vector(d->lat, d->lon, &e);
	e.ping_ms = d->ping_ms;
	e.slot = slot;
	e.vehicle = d->vehicle;
	e.status = d->status;
	uint32_t c = geo_cell_acquire(g, geo_grid_key(g, d->lat, d->lon));
	geo_cell_append(g, c, slot, &e);
	g->slots[slot].lat = d->lat;
	g->slots[slot].lon = d->lon;
	g->count++;
	return RH_OK;
}

rh_err geo_grid_move(struct geo_grid *g, uint32_t slot, double lat, double lon, int64_t now_ms)
{
	if (!geo_grid_has(g, slot))
		return RH_ENOTFOUND;
	if (!geo_coord_is_valid(lat, lon))
		return RH_EINVAL;
	struct geo_slot *s = &g->slots[slot];
	uint64_t key = geo_grid_key(g, lat, lon);
	s->lat = lat;
	s->lon = lon;
	if (g->cells[s->cell].key == key) {
		/* The common case: the driver stays in its cell. */
		struct geo_entry *e = &g->cells[s->cell].e[s->pos];
		geo_unit_vector(lat, lon, e);
		e->ping_ms = now_ms;
		return RH_OK;
	}
	struct geo_entry e;
	geo_cell_take(g, slot, &e);
	geo_unit_vector(lat, lon, &e);
	e.ping_ms = now_ms;
	geo_cell_append(g, geo_cell_acquire(g, key), slot, &e);
	g->stats.cell_changes++;
	return RH_OK;
}

rh_err geo_grid_remove(struct geo_grid *g, uint32_t slot)
{
	struct geo_entry e;
	if (!geo_grid_has(g, slot))
		return RH_ENOTFOUND;
	geo_cell_take(g, slot, &e);
	g->count--;
	return RH_OK;
}

rh_err geo_grid_set_status(struct geo_grid *g, uint32_t slot, uint8_t status)
{
	if (!geo_grid_has(g, slot))
		return RH_ENOTFOUND;
	if (status > GEO_GRID_MAX_STATUS)
		return RH_EINVAL;
	geo_grid_entry(g, slot)->status = status;
	return RH_OK;
}

rh_err geo_grid_set_vehicle(struct geo_grid *g, uint32_t slot, uint16_t vehicle)
{
	if (!geo_grid_has(g, slot))
		return RH_ENOTFOUND;
	geo_grid_entry(g, slot)->vehicle = vehicle;
	return RH_OK;
}

rh_err geo_grid_get(const struct geo_grid *g, uint32_t slot, struct geo_grid_driver *out)
{
	if (!geo_grid_has(g, slot))
		return RH_ENOTFOUND;
	const struct geo_entry *e = geo_grid_entry(g, slot);
	out->lat = g->slots[slot].lat;
	out->lon = g->slots[slot].lon;
	out->ping_ms = e->ping_ms;
	out->status = e->status;
	out->vehicle = e->vehicle;
	return RH_OK;
}

/* ------------------------------------------------------------ search */

/* now_ms - window, saturated: pings newer than this are fresh. */
static int64_t geo_cutoff_ms(int64_t now_ms, int64_t window_ms)
{
	int64_t c;
	if (window_ms == GEO_GRID_NO_STALE)
		return INT64_MIN;
	if (__builtin_sub_overflow(now_ms, window_ms, &c))
		return window_ms > 0 ? INT64_MIN : INT64_MAX;
	return c;
}

/* Distances inside a query are squared chord lengths between unit vectors:
 * monotonic in the great-circle distance d, chord = 2 sin(d / 2R). */
static double geo_chord2_of_m(double m)
{
	double ang = m / GEO_EARTH_RADIUS_M;
	if (ang >= M_PI)
		return 4.0;
	double c = 2 * sin(ang / 2);
	return c * c;
}

static double geo_m_of_chord2(double c2)
{
	double half = sqrt(c2) / 2;
	return 2 * GEO_EARTH_RADIUS_M * asin(half < 1.0 ? half : 1.0);
}

/* The k best so far: a max-heap on chord^2 (kept in dist_m) in the caller's
 * output array, so the worst is at the root and is replaced first. */
struct geo_knn {
	struct geo_grid_hit *h;
	size_t n, k;
	double limit; /* accept below this: radius until full, then the root */
	double radius_c2;
	double qx, qy, qz;
	uint32_t status_mask;
	uint16_t vehicle_mask;
	int64_t cutoff_ms; /* accept ping_ms > cutoff_ms */
	uint64_t candidates;
};

static void geo_knn_push(struct geo_knn *q, uint32_t slot, double c2)
{
	struct geo_grid_hit *h = q->h;
	size_t i;
	if (q->n < q->k) {
		/* Sift up from the new leaf. */
		i = q->n++;
		while (i > 0 && h[(i - 1) / 2].dist_m < c2) {
			h[i] = h[(i - 1) / 2];
			i = (i - 1) / 2;
		}
	} else {
		/* Replace the root and sift down. */
		i = 0;
		for (;;) {
			size_t l = 2 * i + 1, big = i;
			double bigv = c2;
			if (l < q->n && h[l].dist_m > bigv)
				big = l, bigv = h[l].dist_m;
			if (l + 1 < q->n && h[l + 1].dist_m > bigv)
				big = l + 1;
			if (big == i)
				break;
			h[i] = h[big];
			i = big;
		}
	}
	h[i].slot = slot;
	h[i].dist_m = c2;
	if (q->n == q->k)
		q->limit = h[0].dist_m;
}

static void geo_knn_scan_cell(struct geo_knn *q, const struct geo_cellrec *cr)
{
	const struct geo_entry *e = cr->e, *end = cr->e + cr->n;
	q->candidates += cr->n;
	for (; e < end; e++) {
		if (!((q->status_mask >> e->status) & 1) || !(e->vehicle & q->vehicle_mask) ||
		    e->ping_ms <= q->cutoff_ms)
			continue;
		double dx = e->x - q->qx, dy = e->y - q->qy, dz = e->z - q->qz;
		double c2 = dx * dx + dy * dy + dz * dz;
		/* Until the heap is full, accept up to the radius (inclusive);
		 * then only what beats the current worst. */
		if (q->n < q->k ? c2 <= q->limit : c2 < q->limit)
			geo_knn_push(q, e->slot, c2);
	}
}

/* Lower bound (metres) on the distance from a point at latitude lat_rad to
 * any point whose longitude differs by at least dlon_deg (either way): the
 * cross-track distance to the nearest such meridian, which past 90 degrees is
 * the distance to the pole. */
static double geo_lon_gap_m(double lat_rad, double dlon_deg)
{
	if (dlon_deg <= 0)
		return 0;
	if (dlon_deg > 90)
		dlon_deg = 90;
	double s = cos(lat_rad) * sin(dlon_deg * DEG2RAD);
	return GEO_EARTH_RADIUS_M * asin(s < 1.0 ? s : 1.0);
}

/* Lower bound on the distance from the query to anything in a cell. */
static double geo_cell_gap_m(const struct geo_grid *g, uint64_t key, double lat, double lon)
{
	uint32_t i, j;
	geo_hash_to_index(key, g->bits, &i, &j);
	double lat_min = -90.0 + g->row_deg * i, lat_max = lat_min + g->row_deg;
	double lon_min = -180.0 + g->col_deg * j, lon_max = lon_min + g->col_deg;
	double dlat = lat < lat_min ? lat_min - lat : lat > lat_max ? lat - lat_max : 0;
	double dlon = 0;
	if (lon < lon_min || lon > lon_max) {
		/* Angular gap to the nearer edge, the short way round. */
		double a = fmod(lon_min - lon + 720.0, 360.0), b = fmod(lon - lon_max + 720.0, 360.0);
		dlon = a < b ? a : b;
	}
	double glat = GEO_EARTH_RADIUS_M * dlat * DEG2RAD, glon = geo_lon_gap_m(lat * DEG2RAD, dlon);
	return glat > glon ? glat : glon;
}

static void geo_grid_scan_all(struct geo_grid *g, struct geo_knn *q, double lat, double lon)
{
	for (uint32_t c = 0; c < g->cells_len; c++) {
		const struct geo_cellrec *cr = &g->cells[c];
		if (cr->key == GEO_HASH_NONE)
			continue;
		/* Skip cells that cannot beat the current limit; the bound is
		 * shaved so rounding never skips a cell holding a tie. */
		if (geo_chord2_of_m(geo_cell_gap_m(g, cr->key, lat, lon)) * (1 - 1e-9) > q->limit)
			continue;
		geo_knn_scan_cell(q, cr);
	}
}

static inline void geo_grid_scan_at(struct geo_grid *g, struct geo_knn *q, uint32_t row, uint32_t col)
{
	uint32_t c = geo_ht_find(g, geo_hash_from_index(row, col, g->bits));
	g->stats.cells_visited++;
	if (c != GEO_NONE32)
		geo_knn_scan_cell(q, &g->cells[c]);
}

/* Scans ring r around (i0, j0): the cells at Chebyshev distance r. Rows
 * beyond a pole do not exist; columns wrap (the caller keeps 2r+1 < ncols so
 * no column is visited twice). */
static void geo_grid_scan_ring(struct geo_grid *g, struct geo_knn *q, uint32_t i0, uint32_t j0, uint32_t r)
{
	uint32_t cmask = g->ncols - 1;
	int64_t lo = (int64_t)i0 - r, hi = (int64_t)i0 + r;
	if (r == 0) {
		geo_grid_scan_at(g, q, i0, j0);
		return;
	}
	for (int64_t row = lo; row <= hi; row++) {
		if (row < 0 || row >= (int64_t)g->nrows)
			continue;
		if (row == lo || row == hi) {
			for (uint32_t d = 0; d <= 2 * r; d++)
				geo_grid_scan_at(g, q, (uint32_t)row, (j0 - r + d) & cmask);
		} else {
			geo_grid_scan_at(g, q, (uint32_t)row, (j0 - r) & cmask);
			geo_grid_scan_at(g, q, (uint32_t)row, (j0 + r) & cmask);
		}
	}
}

/* Lower bound (metres) on the distance from the query to any point outside
 * the block of rings 0..r: the nearest of the block's four sides. A side at a
 * pole has nothing beyond it. */
static double geo_grid_block_gap_m(const struct geo_grid *g, double lat, double lon, uint32_t i0, uint32_t j0,
				   uint32_t r)
{
	double gap = INFINITY;
	double lat0 = -90.0 + g->row_deg * i0, lon0 = -180.0 + g->col_deg * j0;
	if (i0 >= r + 1) {
		double s = lat - (lat0 - g->row_deg * r);
		gap = fmin(gap, GEO_EARTH_RADIUS_M * s * DEG2RAD);
	}
	if ((uint64_t)i0 + r + 1 < g->nrows) {
		double n = lat0 + g->row_deg * (r + 1) - lat;
		gap = fmin(gap, GEO_EARTH_RADIUS_M * n * DEG2RAD);
	}
	double w = lon - (lon0 - g->col_deg * r), e = lon0 + g->col_deg * (r + 1) - lon;
	return fmin(gap, geo_lon_gap_m(lat * DEG2RAD, fmin(w, e)));
}

static void geo_knn_finish(const struct geo_grid *g, struct geo_knn *q)
{
	/* Heap sort in place: repeatedly move the root (the worst) to the end. */
	struct geo_grid_hit *h = q->h;
	size_t n = q->n;
	while (n > 1) {
		struct geo_grid_hit top = h[0], last = h[n - 1];
		n--;
		size_t i = 0;
		for (;;) {
			size_t l = 2 * i + 1, big = i;
			double bigv = last.dist_m;
			if (l < n && h[l].dist_m > bigv)
				big = l, bigv = h[l].dist_m;
			if (l + 1 < n && h[l + 1].dist_m > bigv)
				big = l + 1;
			if (big == i)
				break;
			h[i] = h[big];
			i = big;
		}
		h[i] = last;
		h[n] = top;
	}
	for (size_t i = 0; i < q->n; i++) {
		h[i].dist_m = geo_m_of_chord2(h[i].dist_m);
		h[i].lat = g->slots[h[i].slot].lat;
		h[i].lon = g->slots[h[i].slot].lon;
	}
}

rh_err geo_grid_nearest(struct geo_grid *g, double lat, double lon, double radius_m,
			const struct geo_grid_filter *f, struct geo_grid_hit *out, size_t k, size_t *nout)
{
	*nout = 0;
	if (!geo_coord_is_valid(lat, lon) || !(radius_m >= 0))
		return RH_EINVAL;
	if (k == 0)
		return RH_OK;
	g->stats.queries++;

	struct geo_entry qe;
	geo_unit_vector(lat, lon, &qe);
	struct geo_knn q = {
		.h = out, .k = k, .qx = qe.x, .qy = qe.y, .qz = qe.z,
		.status_mask = f->status_mask, .vehicle_mask = f->vehicle_mask,
	};
	q.radius_c2 = q.limit = geo_chord2_of_m(radius_m);
	q.cutoff_ms = geo_cutoff_ms(f->now_ms, f->stale_after_ms);
	if (g->count == 0)
		return RH_OK;

	uint32_t i0, j0;
	geo_hash_index_of(lat, lon, g->bits, &i0, &j0);
	/* Ring search while it is cheaper than scanning every cell. */
	uint64_t visited = 0, budget = g->ncells > 64 ? g->ncells : 64;
	for (uint32_t r = 0;; r++) {
		uint64_t ring = r ? 8ULL * r : 1;
		if (2ULL * r + 1 > g->ncols || visited + ring > budget) {
			g->stats.full_scans++;
			q.n = 0;
			q.limit = q.radius_c2;
			geo_grid_scan_all(g, &q, lat, lon);
			break;
		}
		geo_grid_scan_ring(g, &q, i0, j0, r);
		visited += ring;
		double gap_c2 = geo_chord2_of_m(geo_grid_block_gap_m(g, lat, lon, i0, j0, r)) * (1 - 1e-9);
		if (gap_c2 > q.limit)
			break;
	}
	g->stats.candidates += q.candidates;
	geo_knn_finish(g, &q);
	*nout = q.n;
	return RH_OK;
}

/* ------------------------------------------------------------ housekeeping */

size_t geo_grid_sweep_stale(struct geo_grid *g, int64_t now_ms, int64_t evict_after_ms, size_t budget,
			    uint32_t *evicted, size_t cap)
{
	size_t n = 0;
	int64_t cutoff = geo_cutoff_ms(now_ms, evict_after_ms);
	for (size_t seen = 0; seen < budget && n < cap && g->count > 0; seen++) {
		uint32_t slot = g->sweep_cursor;
		g->sweep_cursor = slot + 1 < g->slots_cap ? slot + 1 : 0;
		if (!geo_grid_has(g, slot) || geo_grid_entry(g, slot)->ping_ms > cutoff)
			continue;
		struct geo_entry e;
		geo_cell_take(g, slot, &e);
		g->count--;
		g->stats.evictions++;
		evicted[n++] = slot;
	}
	return n;
}

size_t geo_grid_count(const struct geo_grid *g) { return g->count; }
size_t geo_grid_cell_count(const struct geo_grid *g) { return g->ncells; }
unsigned geo_grid_bits(const struct geo_grid *g) { return g->bits; }

size_t geo_grid_memory_bytes(const struct geo_grid *g)
{
	return sizeof *g + sizeof *g->slots * g->slots_cap + sizeof *g->cells * g->cells_cap +
	       sizeof *g->ht * g->ht_cap + sizeof(struct geo_entry) * g->entry_cap_total;
}

void geo_grid_stats_get(const struct geo_grid *g, struct geo_grid_stats *out)
{
	*out = g->stats;
}
