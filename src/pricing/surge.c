#include "pricing/surge.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/settings.h"
#include "core/timer.h"

/* Demand is counted in SURGE_BUCKETS buckets of window / SURGE_BUCKETS;
 * the window is the last SURGE_BUCKETS of them. */
#define SURGE_BUCKETS 10

/* One cell's state for one vehicle type. */
struct surge_val {
	uint16_t bucket[SURGE_BUCKETS]; /* requests per bucket (saturating) */
	uint32_t demand, supply;       /* as of the last recompute */
	double ema;                    /* smoothed raw multiplier */
	double m;                      /* the multiplier shown */
	double next;                   /* the recompute's candidate */
	int dir;                       /* which way m last moved: -1, 0, +1 */
	int64_t moved_ms;              /* when */
	double event_m;                /* the multiplier last told (surge.updated) */
	int64_t event_ms;
};

struct surge_cell {
	geo_hex h;
	double lat, lon;  /* centre */
	int32_t nb[6];    /* neighbour cells' indexes, -1: not tracked */
};

struct surge {
	struct surge_deps deps;
	const struct surge_cfg *cfg;
	int nveh;
	struct geo_hexgrid grid;
	bool grid_set;
	struct rh_timer *timer;
	int64_t next_ms;
	/* cells and their values: vals[cell * nveh + vehicle] */
	struct surge_cell *cells;
	struct surge_val *vals;
	size_t ncells, cap;
	/* the map from cell to index: open addressing, linear probing (a
	 * slot's key and index side by side: one cache line a probe) */
	struct surge_slot {
		uint64_t key;
		int64_t idx; /* -1: empty */
	} *slots;
	size_t mcap;
	/* ... and, when the cells are compact (a city: their bounding box in
	 * axial coordinates not much larger than their number), a dense array
	 * over that box too: the supply's 50,000 lookups a recompute without
	 * hashing. Cells made outside the box since it was sized are in the
	 * hash only. */
	int32_t *dense;    /* index or -1, (q - dq0) * drn + (r - dr0) */
	int32_t dq0, dr0, dqn, drn;
	double *nx;        /* the smoothing pass's candidates of one vehicle type, by cell */
	uint32_t *sup;     /* supply being counted, by cell and vehicle type (dense: 4 bytes apart) */
	size_t sup_cap;
	size_t nx_cap;
	int64_t epoch;     /* demand bucket of the latest time seen */
	int64_t bucket_ms;
	/* the smoothing heap (scratch) */
	double *hkey;
	int32_t *hval;
	size_t hn, hcap;
	struct surge_change *changes;
	size_t changes_cap;
	struct surge_stats stats;
	struct metric_cell *m_ok, *m_failed, *m_cells, *m_dropped, *m_max;
	struct metric_family *f_seconds, *f_recomputes;
	struct metric_cell *m_seconds;
};

const char *surge_override_name(enum surge_override_mode m)
{
	switch (m) {
	case SURGE_OVERRIDE_CAP: return "cap";
	case SURGE_OVERRIDE_FREEZE: return "freeze";
	case SURGE_OVERRIDE_DISABLE: return "disable";
	default: return "none";
	}
}

int surge_override_parse(const char *s)
{
	for (int m = SURGE_OVERRIDE_CAP; m <= SURGE_OVERRIDE_DISABLE; m++)
		if (s && strcmp(s, surge_override_name(m)) == 0)
			return m;
	return -1;
}

double surge_curve(const struct surge_cfg *c, double ratio)
{
	int n = c->curve_ratio.n;
	if (n == 0)
		return 1.0;
	const double *x = c->curve_ratio.v, *y = c->curve_multiplier.v;
	if (ratio <= x[0])
		return y[0];
	for (int i = 1; i < n; i++)
		if (ratio <= x[i])
			return y[i - 1] + (y[i] - y[i - 1]) * (ratio - x[i - 1]) / (x[i] - x[i - 1]);
	return y[n - 1];
}

/* ------------------------------------------------------------ the map */

static size_t surge_hash(uint64_t k)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdULL;
	k ^= k >> 33;
	return (size_t)k;
}

/* The dense array's slot of a cell, or -1 when outside its box. */
static int64_t surge_dense_slot(const struct surge *s, geo_hex h)
{
	int64_t q = (int64_t)geo_hex_q(h) - s->dq0, r = (int64_t)geo_hex_r(h) - s->dr0;
	if (!s->dense || q < 0 || r < 0 || q >= s->dqn || r >= s->drn)
		return -1;
	return q * s->drn + r;
}

static int32_t surge_find(const struct surge *s, geo_hex h)
{
	int64_t d = surge_dense_slot(s, h);
	if (d >= 0)
		return s->dense[d];
	if (!s->mcap)
		return -1;
	size_t mask = s->mcap - 1;
	for (size_t i = surge_hash(h) & mask;; i = (i + 1) & mask) {
		const struct surge_slot *x = &s->slots[i];
		if (x->idx < 0)
			return -1;
		if (x->key == h)
			return (int32_t)x->idx;
	}
}

static void surge_map_put(struct surge *s, geo_hex h, int32_t v)
{
	int64_t d = surge_dense_slot(s, h);
	if (d >= 0)
		s->dense[d] = v;
	size_t mask = s->mcap - 1;
	size_t i = surge_hash(h) & mask;
	while (s->slots[i].idx >= 0)
		i = (i + 1) & mask;
	s->slots[i].key = h;
	s->slots[i].idx = v;
}

/* The map rebuilt for the cells as they are (after growth or drops), and
 * every cell's neighbours looked up again. */
static void surge_map_rebuild(struct surge *s, size_t want)
{
	size_t cap = 64;
	while (cap < want * 2)
		cap *= 2;
	if (cap != s->mcap) {
		rh_free(s->slots);
		s->mcap = cap;
		s->slots = rh_malloc(cap * sizeof *s->slots);
	}
	for (size_t i = 0; i < s->mcap; i++)
		s->slots[i].idx = -1;
	/* the dense array over the cells' box (grown by a margin of 8 cells for
	 * those made next to them), when it is at most 8 times their number */
	rh_free(s->dense);
	s->dense = NULL;
	if (s->ncells) {
		int32_t q0 = INT32_MAX, q1 = INT32_MIN, r0 = INT32_MAX, r1 = INT32_MIN;
		for (size_t c = 0; c < s->ncells; c++) {
			int32_t q = geo_hex_q(s->cells[c].h), r = geo_hex_r(s->cells[c].h);
			q0 = q < q0 ? q : q0, q1 = q > q1 ? q : q1, r0 = r < r0 ? r : r0, r1 = r > r1 ? r : r1;
		}
		int64_t qn = (int64_t)q1 - q0 + 17, rn = (int64_t)r1 - r0 + 17;
		if (qn * rn <= 8 * (int64_t)s->ncells + 4096 && qn * rn <= ((int64_t)1 << 26)) {
			s->dq0 = q0 - 8, s->dr0 = r0 - 8, s->dqn = (int32_t)qn, s->drn = (int32_t)rn;
			s->dense = rh_malloc((size_t)(qn * rn) * sizeof *s->dense);
			for (int64_t i = 0; i < qn * rn; i++)
				s->dense[i] = -1;
		}
	}
	for (size_t c = 0; c < s->ncells; c++)
		surge_map_put(s, s->cells[c].h, (int32_t)c);
	for (size_t c = 0; c < s->ncells; c++) {
		geo_hex nb[6];
		geo_hex_neighbours(s->cells[c].h, nb);
		for (int k = 0; k < 6; k++)
			s->cells[c].nb[k] = surge_find(s, nb[k]);
	}
}

static void surge_val_init(struct surge_val *v)
{
	memset(v, 0, sizeof *v);
	v->ema = v->m = v->next = v->event_m = 1.0;
	v->event_ms = INT64_MIN / 2;
	v->moved_ms = INT64_MIN / 2;
}

/* The cell's index, made if new (-1: surge.max_cells reached). */
static int32_t surge_cell_get(struct surge *s, geo_hex h)
{
	int32_t c = surge_find(s, h);
	if (c >= 0)
		return c;
	if ((int64_t)s->ncells >= s->cfg->max_cells) {
		s->stats.dropped_points++;
		if (s->m_dropped)
			metric_inc(s->m_dropped);
		return -1;
	}
	if (s->ncells == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 256;
		s->cells = rh_realloc(s->cells, s->cap * sizeof *s->cells);
		s->vals = rh_realloc(s->vals, s->cap * (size_t)s->nveh * sizeof *s->vals);
	}
	c = (int32_t)s->ncells++;
	struct surge_cell *cell = &s->cells[c];
	cell->h = h;
	geo_hex_centre(&s->grid, h, &cell->lat, &cell->lon);
	for (int v = 0; v < s->nveh; v++)
		surge_val_init(&s->vals[(size_t)c * s->nveh + v]);
	if (s->ncells * 2 > s->mcap) {
		surge_map_rebuild(s, s->ncells);
		return c;
	}
	surge_map_put(s, h, c);
	geo_hex nb[6];
	geo_hex_neighbours(h, nb);
	for (int k = 0; k < 6; k++) {
		int32_t n = surge_find(s, nb[k]);
		cell->nb[k] = n;
		if (n >= 0)
			s->cells[n].nb[(k + 3) % 6] = c; /* the opposite direction */
	}
	return c;
}

static struct surge_val *surge_val_of(struct surge *s, int32_t c, int v)
{
	return &s->vals[(size_t)c * s->nveh + v];
}

/* The projection's reference latitude: configured, or the first point's,
 * rounded to a whole degree. */
static void surge_fix_grid(struct surge *s, double lat)
{
	if (s->grid_set)
		return;
	double lat0 = s->cfg->latitude != 0 ? s->cfg->latitude : round(lat);
	geo_hexgrid_init(&s->grid, lat0, s->cfg->cell_area_km2);
	s->grid_set = true;
}

/* Demand buckets up to `now`: the ones that left the window are emptied. */
static void surge_rotate(struct surge *s, int64_t now)
{
	int64_t e = now / s->bucket_ms;
	if (e <= s->epoch)
		return;
	int64_t steps = e - s->epoch;
	if (steps > SURGE_BUCKETS)
		steps = SURGE_BUCKETS;
	size_t nv = s->ncells * (size_t)s->nveh;
	for (int64_t k = 1; k <= steps; k++) {
		int b = (int)((s->epoch + k) % SURGE_BUCKETS);
		for (size_t i = 0; i < nv; i++)
			s->vals[i].bucket[b] = 0;
	}
	s->epoch = e;
}

void surge_demand(struct surge *s, double lat, double lon, int vehicle, int64_t now)
{
	if (!s->cfg->enabled || vehicle < 0 || vehicle >= s->nveh)
		return;
	surge_fix_grid(s, lat);
	surge_rotate(s, now);
	int32_t c = surge_cell_get(s, geo_hex_of(&s->grid, lat, lon));
	if (c < 0)
		return;
	struct surge_val *v = surge_val_of(s, c, vehicle);
	uint16_t *b = &v->bucket[s->epoch % SURGE_BUCKETS];
	if (*b < UINT16_MAX)
		(*b)++;
}

void surge_at(struct surge *s, double lat, double lon, int vehicle, struct surge_point *out)
{
	memset(out, 0, sizeof *out);
	out->multiplier = 1.0;
	out->enabled = s->cfg->enabled;
	surge_fix_grid(s, lat);
	out->cell = geo_hex_of(&s->grid, lat, lon);
	geo_hex_format(out->cell, out->cell_id);
	if (vehicle < 0 || vehicle >= s->nveh)
		return;
	int32_t c = surge_find(s, out->cell);
	if (c < 0)
		return;
	const struct surge_val *v = surge_val_of(s, c, vehicle);
	out->multiplier = s->cfg->enabled ? v->m : 1.0;
	out->demand = v->demand;
	out->supply = v->supply;
	out->ratio = (double)v->demand / (v->supply > 0 ? v->supply : 1);
}

int64_t surge_next_ms(const struct surge *s)
{
	return s->next_ms;
}

bool surge_grid(const struct surge *s, struct geo_hexgrid *out)
{
	if (!s->grid_set)
		return false;
	*out = s->grid;
	return true;
}

void surge_get_stats(const struct surge *s, struct surge_stats *out)
{
	*out = s->stats;
	out->cells = s->ncells;
}

size_t surge_each_cell(struct surge *s, surge_cell_fn fn, void *ctx)
{
	double m[SURGE_VEHICLES_MAX];
	uint32_t d[SURGE_VEHICLES_MAX], sp[SURGE_VEHICLES_MAX];
	for (size_t c = 0; c < s->ncells; c++) {
		for (int v = 0; v < s->nveh; v++) {
			const struct surge_val *x = surge_val_of(s, (int32_t)c, v);
			m[v] = s->cfg->enabled ? x->m : 1.0;
			d[v] = x->demand;
			sp[v] = x->supply;
		}
		fn(ctx, s->cells[c].h, m, d, sp);
	}
	return s->ncells;
}

/* ------------------------------------------------------------ recompute */

struct surge_acc {
	struct surge *s;
	size_t counted;
};

static void surge_add_supply(void *arg, double lat, double lon, int vehicle)
{
	struct surge_acc *a = arg;
	struct surge *s = a->s;
	if (vehicle < 0 || vehicle >= s->nveh)
		return;
	surge_fix_grid(s, lat);
	int32_t c = surge_cell_get(s, geo_hex_of(&s->grid, lat, lon));
	if (c < 0)
		return;
	size_t i = (size_t)c * s->nveh + (size_t)vehicle;
	if (i >= s->sup_cap) { /* a cell made while counting */
		size_t cap = s->cap * (size_t)s->nveh;
		s->sup = rh_realloc(s->sup, cap * sizeof *s->sup);
		memset(s->sup + s->sup_cap, 0, (cap - s->sup_cap) * sizeof *s->sup);
		s->sup_cap = cap;
	}
	s->sup[i]++;
	a->counted++;
}

static double surge_round2(double x)
{
	return round(x * 100.0) / 100.0;
}

/* The candidate of one value: curve, EMA, step, dwell, floor and cap. */
static void surge_step(const struct surge *s, struct surge_val *v, int64_t now)
{
	const struct surge_cfg *c = s->cfg;
	double ratio = (double)v->demand / (v->supply > 0 ? v->supply : 1);
	double raw = surge_curve(c, ratio);
	v->ema = c->ema_alpha * raw + (1.0 - c->ema_alpha) * v->ema;
	double delta = v->ema - v->m;
	if (delta > c->max_step)
		delta = c->max_step;
	if (delta < -c->max_step)
		delta = -c->max_step;
	int dir = delta > 1e-9 ? 1 : delta < -1e-9 ? -1 : 0;
	if (dir != 0 && v->dir == -dir && now - v->moved_ms < c->min_dwell_ms)
		delta = 0; /* dwell: not back the other way so soon */
	double m = v->m + delta;
	if (m < 1.0)
		m = 1.0;
	if (m > c->cap)
		m = c->cap;
	v->next = surge_round2(m);
}

/* The heap of the smoothing pass: a max-heap of (value, cell). */
static void surge_heap_push(struct surge *s, double key, int32_t c)
{
	if (s->hn == s->hcap) {
		s->hcap = s->hcap ? s->hcap * 2 : 256;
		s->hkey = rh_realloc(s->hkey, s->hcap * sizeof *s->hkey);
		s->hval = rh_realloc(s->hval, s->hcap * sizeof *s->hval);
	}
	size_t i = s->hn++;
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (s->hkey[p] >= key)
			break;
		s->hkey[i] = s->hkey[p];
		s->hval[i] = s->hval[p];
		i = p;
	}
	s->hkey[i] = key;
	s->hval[i] = c;
}

static bool surge_heap_pop(struct surge *s, double *key, int32_t *c)
{
	if (!s->hn)
		return false;
	*key = s->hkey[0];
	*c = s->hval[0];
	double k = s->hkey[--s->hn];
	int32_t v = s->hval[s->hn];
	size_t i = 0;
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		double mk = k;
		if (l < s->hn && s->hkey[l] > mk)
			m = l, mk = s->hkey[l];
		if (r < s->hn && s->hkey[r] > mk)
			m = r;
		if (m == i)
			break;
		s->hkey[i] = s->hkey[m];
		s->hval[i] = s->hval[m];
		i = m;
	}
	s->hkey[i] = k;
	s->hval[i] = v;
	return true;
}

/* The smoothing pass's array holds every cell (made ones too). */
static void surge_nx_fit(struct surge *s)
{
	if (s->ncells <= s->nx_cap)
		return;
	s->nx_cap = s->ncells * 2;
	s->nx = rh_realloc(s->nx, s->nx_cap * sizeof *s->nx);
}

/* Neighbours never differ by more than d: from the highest cell down, each
 * neighbour is raised to at least its neighbour minus d (a cell not tracked
 * yet is made when that is above 1). Popping in decreasing order settles
 * each cell once, as in Dijkstra's algorithm; only cells that would raise a
 * neighbour enter the heap, so a smooth map costs one look at each cell's
 * six neighbours. The candidates of the vehicle type are copied into one
 * dense array for the pass (the values are 88 bytes apart). */
static void surge_smooth(struct surge *s, int v)
{
	const double d = s->cfg->neighbour_max_diff, eps = 1e-9;
	surge_nx_fit(s);
	double *nx = s->nx;
	size_t n0 = s->ncells;
	for (size_t c = 0; c < n0; c++)
		nx[c] = surge_val_of(s, (int32_t)c, v)->next;
	s->hn = 0;
	for (size_t c = 0; c < n0; c++) {
		double x = nx[c];
		if (x <= 1.0 + d + eps)
			continue;
		const int32_t *nb = s->cells[c].nb;
		double lift = x - d - eps;
		for (int k = 0; k < 6; k++) {
			if (nb[k] < 0 || nx[nb[k]] < lift) {
				surge_heap_push(s, x, (int32_t)c);
				break;
			}
		}
	}
	double key;
	int32_t c;
	while (surge_heap_pop(s, &key, &c)) {
		if (key < s->nx[c] - eps)
			continue; /* raised since it was pushed: a later entry has it */
		double lift = surge_round2(key - d);
		if (lift <= 1.0 + eps)
			continue;
		geo_hex nbh[6];
		bool have_nbh = false;
		for (int k = 0; k < 6; k++) {
			int32_t n = s->cells[c].nb[k];
			if (n < 0) {
				if (!have_nbh) {
					geo_hex_neighbours(s->cells[c].h, nbh);
					have_nbh = true;
				}
				n = surge_cell_get(s, nbh[k]); /* may move cells and vals */
				if (n < 0)
					continue;
				surge_nx_fit(s);
				s->nx[n] = 1.0; /* a new cell's candidate */
			}
			if (s->nx[n] < lift - eps) {
				s->nx[n] = lift;
				if (lift > 1.0 + d + eps)
					surge_heap_push(s, lift, n);
			}
		}
	}
	for (size_t i = 0; i < s->ncells; i++)
		surge_val_of(s, (int32_t)i, v)->next = s->nx[i];
}

/* A value worth telling: moved enough since the last event, and not told
 * too recently. */
static bool surge_owes_event(const struct surge *s, const struct surge_val *v, int64_t now)
{
	const struct surge_cfg *c = s->cfg;
	double moved = fabs(v->m - v->event_m);
	if (moved < 1e-9)
		return false;
	if (moved < c->event_min_change - 1e-9 && !(v->m == 1.0 && v->event_m != 1.0))
		return false;
	return now - v->event_ms >= c->event_min_interval_ms;
}

static void surge_tell(struct surge *s, int64_t now)
{
	size_t n = 0, max = (size_t)s->cfg->events_per_interval;
	for (size_t c = 0; c < s->ncells && n < max; c++) {
		for (int v = 0; v < s->nveh && n < max; v++) {
			struct surge_val *x = surge_val_of(s, (int32_t)c, v);
			if (!surge_owes_event(s, x, now))
				continue;
			if (n == s->changes_cap) {
				s->changes_cap = s->changes_cap ? s->changes_cap * 2 : 64;
				s->changes = rh_realloc(s->changes, s->changes_cap * sizeof *s->changes);
			}
			struct surge_change *ch = &s->changes[n++];
			ch->cell = s->cells[c].h;
			ch->vehicle = v;
			ch->multiplier = x->m;
			ch->previous = x->event_m;
			ch->demand = x->demand;
			ch->supply = x->supply;
			ch->lat = s->cells[c].lat;
			ch->lon = s->cells[c].lon;
			x->event_m = x->m;
			x->event_ms = now;
		}
	}
	if (n && s->deps.changed)
		s->deps.changed(s->deps.changed_ctx, s->changes, n, now);
}

/* Cells with nothing going on are dropped (the map rebuilt once). */
static void surge_drop_idle(struct surge *s)
{
	size_t out = 0;
	for (size_t c = 0; c < s->ncells; c++) {
		bool idle = true;
		for (int v = 0; v < s->nveh && idle; v++) {
			const struct surge_val *x = surge_val_of(s, (int32_t)c, v);
			uint32_t recent = 0;
			for (int b = 0; b < SURGE_BUCKETS; b++)
				recent += x->bucket[b];
			idle = recent == 0 && x->supply == 0 && x->m == 1.0 && x->event_m == 1.0 && x->ema < 1.005;
		}
		if (idle)
			continue;
		if (out != c) {
			s->cells[out] = s->cells[c];
			memcpy(&s->vals[out * s->nveh], &s->vals[c * s->nveh], (size_t)s->nveh * sizeof *s->vals);
		}
		out++;
	}
	if (out != s->ncells) {
		s->ncells = out;
		surge_map_rebuild(s, s->ncells);
	}
}

static void surge_fail(struct surge *s, const char *why)
{
	s->stats.failures++;
	if (s->m_failed)
		metric_inc(s->m_failed);
	log_warn(NULL, "surge: recompute failed (%s); the last good multipliers stand", why);
}

/* The operator's overrides (disable, freeze, cap) on the candidates. */
static void surge_apply_overrides(struct surge *s)
{
	if (!s->deps.override_at)
		return;
	for (size_t ci = 0; ci < s->ncells; ci++) {
		struct surge_override o;
		double lat[7], lon[7];
		lat[0] = s->cells[ci].lat;
		lon[0] = s->cells[ci].lon;
		geo_hex_corners(&s->grid, s->cells[ci].h, lat + 1, lon + 1);
		if (!s->deps.override_at(s->deps.override_ctx, lat, lon, &o))
			continue;
		for (int v = 0; v < s->nveh; v++) {
			struct surge_val *x = surge_val_of(s, (int32_t)ci, v);
			if (o.mode == SURGE_OVERRIDE_DISABLE)
				x->next = 1.0;
			else if (o.mode == SURGE_OVERRIDE_FREEZE)
				x->next = x->m;
			else if (o.mode == SURGE_OVERRIDE_CAP && x->next > o.cap)
				x->next = surge_round2(o.cap < 1.0 ? 1.0 : o.cap);
		}
	}
}

/* The checked candidates become the multipliers: the highest of them. */
static double surge_commit(struct surge *s, size_t nv_all, int64_t now)
{
	double top = 1.0;
	for (size_t i = 0; i < nv_all; i++) {
		struct surge_val *x = &s->vals[i];
		double delta = x->next - x->m;
		if (fabs(delta) > 1e-9) {
			x->dir = delta > 0 ? 1 : -1;
			x->moved_ms = now;
			x->m = x->next;
		}
		if (x->m > top)
			top = x->m;
	}
	return top;
}

bool surge_recompute(struct surge *s, int64_t now)
{
	const struct surge_cfg *c = s->cfg;
	if (!c->enabled)
		return true;
	int64_t t0 = rh_mono_ns();
	surge_rotate(s, now);
	size_t nv = s->ncells * (size_t)s->nveh;
	if (s->sup_cap < s->cap * (size_t)s->nveh) {
		s->sup_cap = s->cap * (size_t)s->nveh;
		s->sup = rh_realloc(s->sup, s->sup_cap * sizeof *s->sup);
	}
	if (s->sup_cap)
		memset(s->sup, 0, s->sup_cap * sizeof *s->sup);
	struct surge_acc acc = { .s = s };
	if (s->deps.supply && !s->deps.supply(s->deps.supply_ctx, now, surge_add_supply, &acc)) {
		surge_fail(s, "supply could not be counted");
		return false;
	}
	nv = s->ncells * (size_t)s->nveh;
	for (size_t i = 0; i < nv; i++)
		s->vals[i].supply = s->sup[i];
	/* the candidates: the last good values stay until all are checked, so
	 * the EMA moves only when the recompute succeeds */
	double *ema_before = rh_malloc((nv ? nv : 1) * sizeof *ema_before);
	for (size_t i = 0; i < nv; i++) {
		struct surge_val *x = &s->vals[i];
		ema_before[i] = x->ema;
		uint32_t d = 0;
		for (int b = 0; b < SURGE_BUCKETS; b++)
			d += x->bucket[b];
		x->demand = d;
		surge_step(s, x, now);
	}
	for (int v = 0; v < s->nveh; v++)
		surge_smooth(s, v); /* may add cells */
	size_t nv_all = s->ncells * (size_t)s->nveh;
	surge_apply_overrides(s);
	for (size_t i = 0; i < nv_all; i++) {
		double x = s->vals[i].next;
		if (!isfinite(x) || x < 1.0 || x > c->cap + 1e-9) {
			for (size_t k = 0; k < nv && k < nv_all; k++)
				s->vals[k].ema = ema_before[k];
			rh_free(ema_before);
			surge_fail(s, "a multiplier out of range");
			return false;
		}
	}
	rh_free(ema_before);
	double top = surge_commit(s, nv_all, now);
	surge_tell(s, now);
	surge_drop_idle(s);
	s->stats.recomputes++;
	s->stats.last_ok_ms = now;
	s->stats.last_duration_ms = (double)(rh_mono_ns() - t0) / 1e6;
	if (s->m_ok) {
		metric_inc(s->m_ok);
		metric_set(s->m_cells, (double)s->ncells);
		metric_set(s->m_max, top);
		metric_observe(s->f_seconds, s->m_seconds, s->stats.last_duration_ms / 1000.0);
	}
	return true;
}

static void surge_on_timer(void *arg, int64_t now)
{
	struct surge *s = arg;
	surge_recompute(s, now);
	s->next_ms = now + s->cfg->interval_ms;
	rh_timer_at(s->timer, s->next_ms);
}

struct surge *surge_new(const struct surge_deps *d)
{
	struct surge *s = RH_NEW(struct surge);
	s->deps = *d;
	s->cfg = d->cfg;
	s->nveh = d->nvehicles < 1 ? 1 : d->nvehicles > SURGE_VEHICLES_MAX ? SURGE_VEHICLES_MAX : d->nvehicles;
	s->bucket_ms = s->cfg->window_ms / SURGE_BUCKETS;
	if (s->bucket_ms < 1)
		s->bucket_ms = 1;
	if (s->cfg->latitude != 0)
		surge_fix_grid(s, s->cfg->latitude);
	surge_map_rebuild(s, 0);
	int64_t now = d->timers ? rh_timers_now(d->timers) : 0;
	s->epoch = now / s->bucket_ms;
	s->next_ms = now + s->cfg->interval_ms;
	if (d->metrics) {
		static const char *const result_label[] = { "result", NULL };
		s->f_recomputes = metrics_counter(d->metrics, "ridehail_surge_recomputes_total",
						  "Surge recomputes, by result (ok, failed: the last good multipliers stood).",
						  result_label);
		s->m_ok = metric_cell(s->f_recomputes, (const char *[]){ "ok" });
		s->m_failed = metric_cell(s->f_recomputes, (const char *[]){ "failed" });
		s->m_cells = metric_cell(metrics_gauge(d->metrics, "ridehail_surge_cells",
						       "Cells the surge engine tracks (with demand, supply or a multiplier above 1).",
						       NULL),
					 NULL);
		s->m_max = metric_cell(metrics_gauge(d->metrics, "ridehail_surge_max_multiplier",
						     "The highest multiplier of any cell and vehicle type after the last recompute.",
						     NULL),
				       NULL);
		s->m_dropped = metric_cell(metrics_counter(d->metrics, "ridehail_surge_points_dropped_total",
							   "Requests or drivers not counted: their cell would pass surge.max_cells.",
							   NULL),
					   NULL);
		s->f_seconds = metrics_histogram(d->metrics, "ridehail_surge_recompute_seconds",
						 "Time of one surge recompute on the event loop.", NULL,
						 metrics_latency_bounds, metrics_latency_nbounds);
		s->m_seconds = metric_cell(s->f_seconds, NULL);
		metric_set(s->m_max, 1.0);
	}
	if (s->cfg->enabled && d->timers) {
		s->timer = rh_timer_new(d->timers, surge_on_timer, s);
		rh_timer_at(s->timer, s->next_ms);
	}
	return s;
}

void surge_free(struct surge *s)
{
	if (!s)
		return;
	rh_timer_free(s->timer);
	rh_free(s->cells);
	rh_free(s->vals);
	rh_free(s->slots);
	rh_free(s->dense);
	rh_free(s->nx);
	rh_free(s->sup);
	rh_free(s->hkey);
	rh_free(s->hval);
	rh_free(s->changes);
	rh_free(s);
}
