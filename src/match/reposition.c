/* Repositioning's arithmetic (include/match/reposition.h): decayed demand
 * per cell, supply counted from the idle drivers handed in, moves from
 * surplus to deficit. */
#include "match/reposition.h"

#include <math.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "core/settings.h"
#include "geo/geohash.h"

#define REPOSITION_MAX_CELLS 8192
#define REPOSITION_FORGET 0.05
#define REPOSITION_M_PER_DEG 111320.0

struct reposition_cell {
	int32_t cx, cy;
	double demand; /* as of t */
	int64_t t;
};

struct reposition {
	double cell_m, radius_m, half_life_ms;
	bool has_origin;
	double lat0, lon0, kx; /* the local plane: metres east per degree of longitude */
	struct reposition_cell *cells;
	size_t ncells;
};

struct reposition *reposition_new(const struct match_cfg *cfg)
{
	struct reposition *rp = RH_NEW(struct reposition);
	rp->cell_m = (double)cfg->reposition_cell_m;
	rp->radius_m = (double)cfg->reposition_radius_m;
	rp->half_life_ms = (double)cfg->reposition_half_life_ms;
	rp->cells = rh_malloc(REPOSITION_MAX_CELLS * sizeof *rp->cells);
	return rp;
}

void reposition_free(struct reposition *rp)
{
	if (!rp)
		return;
	rh_free(rp->cells);
	rh_free(rp);
}

static void reposition_cell_of(const struct reposition *rp, double lat, double lon, int32_t *cx, int32_t *cy)
{
	*cx = (int32_t)floor((lon - rp->lon0) * rp->kx / rp->cell_m);
	*cy = (int32_t)floor((lat - rp->lat0) * REPOSITION_M_PER_DEG / rp->cell_m);
}

static void reposition_centre(const struct reposition *rp, int32_t cx, int32_t cy, double *lat, double *lon)
{
	*lon = rp->lon0 + ((double)cx + 0.5) * rp->cell_m / rp->kx;
	*lat = rp->lat0 + ((double)cy + 0.5) * rp->cell_m / REPOSITION_M_PER_DEG;
}

static double reposition_decayed(const struct reposition *rp, const struct reposition_cell *c, int64_t now)
{
	return now <= c->t ? c->demand : c->demand * exp2(-(double)(now - c->t) / rp->half_life_ms);
}

static struct reposition_cell *reposition_find(const struct reposition *rp, int32_t cx, int32_t cy)
{
	for (size_t i = 0; i < rp->ncells; i++)
		if (rp->cells[i].cx == cx && rp->cells[i].cy == cy)
			return &rp->cells[i];
	return NULL;
}

void reposition_demand(struct reposition *rp, double lat, double lon, int64_t now)
{
	if (!rp->has_origin) {
		rp->has_origin = true;
		/* the grid's corner on a tenth of a degree, so that one city
		 * always gets the same cells */
		rp->lat0 = floor(lat * 10) / 10;
		rp->lon0 = floor(lon * 10) / 10;
		rp->kx = REPOSITION_M_PER_DEG * cos(rp->lat0 * 3.14159265358979323846 / 180);
	}
	int32_t cx, cy;
	reposition_cell_of(rp, lat, lon, &cx, &cy);
	struct reposition_cell *c = reposition_find(rp, cx, cy);
	if (!c) {
		if (rp->ncells == REPOSITION_MAX_CELLS)
			return; /* a city of more than 8,192 busy cells: the new ones wait for old ones to fade */
		c = &rp->cells[rp->ncells++];
		*c = (struct reposition_cell){ .cx = cx, .cy = cy, .t = now };
	}
	c->demand = reposition_decayed(rp, c, now) + 1;
	c->t = now;
}

double reposition_demand_at(const struct reposition *rp, double lat, double lon, int64_t now)
{
	if (!rp->has_origin)
		return 0;
	int32_t cx, cy;
	reposition_cell_of(rp, lat, lon, &cx, &cy);
	const struct reposition_cell *c = reposition_find(rp, cx, cy);
	return c ? reposition_decayed(rp, c, now) : 0;
}

size_t reposition_hot_cells(const struct reposition *rp, int64_t now, double *lat, double *lon, size_t max)
{
	size_t n = 0;
	for (size_t i = 0; i < rp->ncells && n < max; i++)
		if (reposition_decayed(rp, &rp->cells[i], now) >= 1) {
			reposition_centre(rp, rp->cells[i].cx, rp->cells[i].cy, &lat[n], &lon[n]);
			n++;
		}
	return n;
}

/* ------------------------------------------------------------ the plan */

/* A cell as the plan sees it: demand, the idle drivers there, how many it
 * may give (surplus) or wants (deficit). */
struct plan_cell {
	int32_t cx, cy;
	double demand;
	int drivers, spare, want;
	double lat, lon;
};

static struct plan_cell *reposition_plan_find(struct plan_cell *pc, size_t n, int32_t cx, int32_t cy)
{
	for (size_t i = 0; i < n; i++)
		if (pc[i].cx == cx && pc[i].cy == cy)
			return &pc[i];
	return NULL;
}

static int reposition_plan_by_want(const void *a, const void *b)
{
	const struct plan_cell *x = *(const struct plan_cell *const *)a, *y = *(const struct plan_cell *const *)b;
	if (x->want != y->want)
		return x->want > y->want ? -1 : 1;
	return x->demand > y->demand ? -1 : x->demand < y->demand;
}

size_t reposition_plan(struct reposition *rp, const struct reposition_driver *drivers, size_t n, int64_t now,
		       struct reposition_move *out, size_t max)
{
	if (!rp->has_origin || n == 0 || max == 0)
		return 0;
	/* forget what has faded */
	size_t k = 0;
	for (size_t i = 0; i < rp->ncells; i++) {
		struct reposition_cell c = rp->cells[i];
		c.demand = reposition_decayed(rp, &c, now);
		c.t = now;
		if (c.demand >= REPOSITION_FORGET)
			rp->cells[k++] = c;
	}
	rp->ncells = k;
	/* every cell with demand or drivers */
	struct plan_cell *pc = rh_malloc((rp->ncells + n + 1) * sizeof *pc);
	int32_t *dcell = rh_malloc((n + 1) * sizeof *dcell); /* the driver's plan cell */
	size_t npc = 0;
	for (size_t i = 0; i < rp->ncells; i++)
		pc[npc++] = (struct plan_cell){ .cx = rp->cells[i].cx, .cy = rp->cells[i].cy,
						.demand = rp->cells[i].demand };
	for (size_t i = 0; i < n; i++) {
		int32_t cx, cy;
		reposition_cell_of(rp, drivers[i].lat, drivers[i].lon, &cx, &cy);
		struct plan_cell *c = reposition_plan_find(pc, npc, cx, cy);
		if (!c) {
			c = &pc[npc++];
			*c = (struct plan_cell){ .cx = cx, .cy = cy };
		}
		c->drivers++;
		dcell[i] = (int32_t)(c - pc);
	}
	struct plan_cell **deficit = rh_malloc((npc + 1) * sizeof *deficit);
	size_t ndef = 0;
	for (size_t i = 0; i < npc; i++) {
		struct plan_cell *c = &pc[i];
		reposition_centre(rp, c->cx, c->cy, &c->lat, &c->lon);
		double gap = c->demand - c->drivers;
		if (gap >= 1) {
			c->want = (int)floor(gap);
			deficit[ndef++] = c;
		} else if (gap <= -1) {
			c->spare = (int)floor(-gap);
		}
	}
	qsort(deficit, ndef, sizeof *deficit, reposition_plan_by_want);
	bool *moved = rh_calloc(n + 1, sizeof *moved);
	size_t nout = 0;
	for (size_t x = 0; x < ndef && nout < max; x++) {
		struct plan_cell *t = deficit[x];
		int wanted = t->want;
		while (wanted > 0 && nout < max) {
			/* the nearest surplus driver in reach */
			size_t best = n;
			double best_d = rp->radius_m;
			for (size_t i = 0; i < n; i++) {
				if (moved[i] || pc[dcell[i]].spare <= 0)
					continue;
				double d = geo_dist_haversine_m(drivers[i].lat, drivers[i].lon, t->lat, t->lon);
				if (d <= best_d) {
					best_d = d;
					best = i;
				}
			}
			if (best == n)
				break;
			moved[best] = true;
			pc[dcell[best]].spare--;
			wanted--;
			out[nout++] = (struct reposition_move){ .driver = best, .lat = t->lat, .lon = t->lon,
								.demand = t->demand, .drivers = t->drivers, .dist_m = best_d };
		}
	}
	rh_free(moved);
	rh_free(deficit);
	rh_free(dcell);
	rh_free(pc);
	return nout;
}
