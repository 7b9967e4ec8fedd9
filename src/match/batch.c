/* Batch mode (match.mode = batch): the trips that need a driver within
 * match.batch_window are assigned together, the least total cost over all of
 * them, instead of each to its own best as it arrives.
 *
 * A window opens when a search joins an empty pool and closes batch_window
 * later. At the close, each trip of the window looks for candidates as a
 * greedy search would (the nearest untried available drivers within its
 * current ring, the ring widened while it holds none; none in any ring: the
 * demand queue), the pickup ETAs of the candidate pairs come from one
 * many-to-many question to the world, and the assignment solver
 * (match/assign.h) picks the pairs: each trip as many drivers as it may have
 * offers out (match.parallel_offers), each driver at most one trip. The
 * pairs become offers exactly as greedy's do (reserved first, then sent,
 * then the cascade), so reservations, parallel offers, timeouts and the rule
 * that a driver has one offer at a time hold as they do there. A trip left
 * without a driver (its candidates went to others) stays for the next
 * window; a trip whose offer was declined, expired or lost is offered again
 * at once as greedy would (dispatch_step: only a trip's first offer waits
 * for a window), and the driver, released, is a candidate for the other
 * trips again.
 *
 * The cost of a pair (dispatch_pair_cost_ms) is the pickup ETA less the
 * score's other two terms turned into seconds; leaving a trip out costs
 * more than any set of pickups (serve as many as possible first), plus its
 * age: between trips that cannot all be served, the one waiting longer is
 * served first unless its pickup is longer by more than the difference in
 * waits (the demand queue's order, as a price). */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "core/settings.h"
#include "core/timer.h"
#include "dispatch_internal.h"
#include "geo/geohash.h"
#include "match/assign.h"

/* Leaving out a trip's first driver costs this (ms, ~35 years: more than
 * any sum of pickups), a parallel offer's further ones half of it. */
#define BATCH_UNASSIGNED_MS ((int64_t)1 << 40)
/* Trips assigned together at most (a window holding more is assigned in
 * parts of this many, oldest first): 128 trips x 16 candidates is a pickup
 * matrix of 262,144 pairs. */
#define DISPATCH_BATCH_PART 128

struct dispatch_batch {
	struct dispatch *d;
	struct dispatch_queue pool;      /* the window being gathered, in arrival order */
	struct rh_timer *timer;          /* its close */
	int64_t closes_at;               /* -1: no window open */
	struct assign *solver;
	struct dispatch_search **run;    /* the window being assigned (NULL: stopped meanwhile) */
	size_t nrun;
};

/* ------------------------------------------------------------ the cost */

int64_t dispatch_pair_cost_ms(const struct match_cfg *cfg, const struct dispatch_cand *c)
{
	/* The score's idle and acceptance terms at greedy's own exchange rate for
	 * a short pickup: exp(-eta / 300 s) falls by weight_eta / 300 per second
	 * there, so a unit of score is worth 300 s / weight_eta of pickup. */
	double unit_s = 300.0 / (cfg->weight_eta > 0.05 ? cfg->weight_eta : 0.05);
	double idle = (double)c->idle_ms / 600000.0;
	double accept = (c->accepts + 1.0) / (c->offers + 2.0);
	double credit_s = unit_s * (cfg->weight_idle * (idle > 1 ? 1 : idle) + cfg->weight_acceptance * accept);
	return llround((c->eta_s - credit_s) * 1000.0);
}

/* ------------------------------------------------------------ the pool */

int64_t dispatch_batch_closes_at(const struct dispatch_batch *b)
{
	return b ? b->closes_at : -1;
}

void dispatch_batch_add(struct dispatch_search *s, int64_t now)
{
	struct dispatch_batch *b = s->d->batch;
	if (s->pooled || s->live >= s->d->cfg->parallel_offers)
		return;
	s->pooled = true;
	TAILQ_INSERT_TAIL(&b->pool, s, pool_link);
	if (b->closes_at < 0) {
		b->closes_at = now + s->d->cfg->batch_window_ms;
		rh_timer_at(b->timer, b->closes_at);
	}
}

void dispatch_batch_remove(struct dispatch_search *s)
{
	struct dispatch_batch *b = s->d->batch;
	if (!s->pooled)
		return;
	s->pooled = false;
	for (size_t i = 0; i < b->nrun; i++)
		if (b->run[i] == s) {
			b->run[i] = NULL; /* being assigned: it just stopped */
			return;
		}
	TAILQ_REMOVE(&b->pool, s, pool_link);
}

void dispatch_batch_driver_free(struct dispatch *d, const struct uuid *driver, int64_t now)
{
	struct dispatch_cand c;
	if (d->nwaiting == 0 || !d->open || !d->w.driver(d->w.ctx, driver, now, &c))
		return;
	double radius = dispatch_radius_max(d);
	struct dispatch_search *s, *next;
	for (s = TAILQ_FIRST(&d->waiting); s; s = next) {
		next = TAILQ_NEXT(s, wait_link);
		if (s->t.vehicle != c.vehicle || dispatch_tried(s, driver) ||
		    geo_dist_haversine_m(c.lat, c.lon, s->t.lat, s->t.lon) > radius)
			continue;
		dispatch_wait_leave(s);
		s->radius_step = 0;
		dispatch_batch_add(s, now);
	}
}

/* ------------------------------------------------------------ the window */

/* One window's problem: its trips (those with candidates), the distinct
 * candidate drivers, and which drivers each trip may have. */
struct batch_window {
	struct dispatch_search **s; /* per trip */
	struct dispatch_trip *trips;
	size_t nt;
	struct dispatch_cand *drv;  /* distinct drivers */
	size_t nd, cap_d;
	struct umap drv_index;      /* driver -> index + 1 */
	uint32_t *cand;             /* trip j's candidates: cand[cand_start[j] .. cand_start[j + 1]) */
	size_t *cand_start, ncand, cap_cand;
	double *eta, *road;         /* [driver * nt + trip] */
};

static void dispatch_batch_window_fini(struct batch_window *w)
{
	rh_free(w->s);
	rh_free(w->trips);
	rh_free(w->drv);
	umap_fini(&w->drv_index);
	rh_free(w->cand);
	rh_free(w->cand_start);
	rh_free(w->eta);
	rh_free(w->road);
}

static void dispatch_batch_window_add_cand(struct batch_window *w, const struct dispatch_cand *c)
{
	uintptr_t at = (uintptr_t)umap_get(&w->drv_index, &c->driver);
	if (!at) {
		if (w->nd == w->cap_d) {
			w->cap_d = w->cap_d ? 2 * w->cap_d : 64;
			w->drv = rh_realloc(w->drv, w->cap_d * sizeof *w->drv);
		}
		w->drv[w->nd++] = *c;
		at = w->nd;
		umap_put(&w->drv_index, &c->driver, (void *)at);
	}
	if (w->ncand == w->cap_cand) {
		w->cap_cand = w->cap_cand ? 2 * w->cap_cand : 256;
		w->cand = rh_realloc(w->cand, w->cap_cand * sizeof *w->cand);
	}
	w->cand[w->ncand++] = (uint32_t)(at - 1);
}

/* The untried candidates of s at its ring, widening while a ring has none;
 * false when no ring has any (the caller sends it to the demand queue). */
static bool dispatch_batch_gather(struct batch_window *w, struct dispatch_search *s, int64_t now)
{
	struct dispatch *d = s->d;
	const struct cfg_list *steps = &d->cfg->radius_steps;
	struct dispatch_cand c[DISPATCH_MAX_CANDIDATES];
	size_t k = (size_t)d->cfg->candidates < DISPATCH_MAX_CANDIDATES ? (size_t)d->cfg->candidates
									: DISPATCH_MAX_CANDIDATES;
	size_t first = w->ncand;
	for (; s->radius_step < steps->n; s->radius_step++) {
		size_t n = d->w.nearby(d->w.ctx, &s->t, steps->v[s->radius_step], now, c, k);
		for (size_t i = 0; i < n; i++)
			if (!dispatch_tried(s, &c[i].driver))
				dispatch_batch_window_add_cand(w, &c[i]);
		if (w->ncand > first)
			return true;
	}
	return false;
}

/* The assignment of the window's trips: rows are (trip, offer slot) pairs,
 * columns the drivers. row_trip[r] says whose row r is. */
static void dispatch_batch_solve(struct dispatch_batch *b, struct batch_window *w, int64_t now, size_t nrows,
			uint32_t *row_trip, int32_t *row_col)
{
	const struct match_cfg *cfg = b->d->cfg;
	size_t *start = rh_malloc((nrows + 1) * sizeof *start);
	uint32_t *col = rh_malloc((w->ncand * (size_t)cfg->parallel_offers + 1) * sizeof *col);
	int64_t *cost = rh_malloc((w->ncand * (size_t)cfg->parallel_offers + 1) * sizeof *cost);
	int64_t *unassigned = rh_malloc((nrows + 1) * sizeof *unassigned);
	size_t np = 0, r = 0;
	for (size_t j = 0; j < w->nt; j++) {
		struct dispatch_search *s = w->s[j];
		if (!s)
			continue;
		int need = (int)cfg->parallel_offers - s->live;
		for (int slot = 0; slot < need; slot++, r++) {
			row_trip[r] = (uint32_t)j;
			start[r] = np;
			unassigned[r] = (slot == 0 ? BATCH_UNASSIGNED_MS : BATCH_UNASSIGNED_MS / 2) + (now - s->started);
			for (size_t x = w->cand_start[j]; x < w->cand_start[j + 1]; x++) {
				uint32_t i = w->cand[x];
				if (w->eta[(size_t)i * w->nt + j] < 0)
					continue;
				struct dispatch_cand c = w->drv[i];
				c.eta_s = w->eta[(size_t)i * w->nt + j];
				col[np] = i;
				cost[np++] = dispatch_pair_cost_ms(cfg, &c);
			}
		}
	}
	start[nrows] = np;
	struct assign_problem p = { nrows, w->nd, start, col, cost, unassigned };
	(void)assign_solve(b->solver, &p, row_col);
	rh_free(start);
	rh_free(col);
	rh_free(cost);
	rh_free(unassigned);
}

/* The window's trips with candidates get their drivers; those left out go
 * back to the pool (or, with no reachable driver in any ring, to the demand
 * queue). */
static void dispatch_batch_offer(struct dispatch_batch *b, struct batch_window *w, int64_t now)
{
	const struct match_cfg *cfg = b->d->cfg;
	size_t nrows = 0;
	for (size_t j = 0; j < w->nt; j++) {
		struct dispatch_search *s = w->s[j];
		bool reachable = false;
		for (size_t x = w->cand_start[j]; s && x < w->cand_start[j + 1] && !reachable; x++)
			reachable = w->eta[(size_t)w->cand[x] * w->nt + j] >= 0;
		if (!s || reachable) {
			nrows += s ? (size_t)(cfg->parallel_offers - s->live) : 0;
			continue;
		}
		/* no road from any candidate: the next ring, next window */
		w->s[j] = NULL;
		s->pooled = false;
		if (++s->radius_step >= cfg->radius_steps.n)
			dispatch_wait_enter(s, now);
		else
			dispatch_batch_add(s, now);
	}
	uint32_t *row_trip = rh_malloc((nrows + 1) * sizeof *row_trip);
	int32_t *row_col = rh_malloc((nrows + 1) * sizeof *row_col);
	dispatch_batch_solve(b, w, now, nrows, row_trip, row_col);
	for (size_t r = 0; r < nrows; r++) {
		size_t j = row_trip[r];
		if (row_col[r] < 0 || !w->s[j])
			continue;
		size_t i = (size_t)row_col[r];
		struct dispatch_cand c = w->drv[i];
		c.eta_s = w->eta[i * w->nt + j];
		c.road_m = w->road[i * w->nt + j];
		dispatch_offer_make(w->s[j], &c, dispatch_score(cfg, &c));
	}
	rh_free(row_trip);
	rh_free(row_col);
}

/* Up to DISPATCH_BATCH_PART of the *left trips at the head of the pool:
 * their candidates, their pickup ETAs at once, the assignment, the offers;
 * the trips left out go to the tail, for the next window. */
static void dispatch_batch_part(struct dispatch_batch *b, size_t *left, int64_t now)
{
	struct dispatch *d = b->d;
	size_t n = *left < DISPATCH_BATCH_PART ? *left : DISPATCH_BATCH_PART;
	struct dispatch_search *s;
	struct batch_window w = { 0 };
	umap_init(&w.drv_index);
	w.s = rh_malloc((n + 1) * sizeof *w.s);
	w.trips = rh_malloc((n + 1) * sizeof *w.trips);
	w.cand_start = rh_malloc((n + 1) * sizeof *w.cand_start);
	b->run = w.s; /* (a search stopped while its window is assigned leaves a NULL here) */
	for (size_t x = 0; x < n && (s = TAILQ_FIRST(&b->pool)); x++) {
		TAILQ_REMOVE(&b->pool, s, pool_link);
		(*left)--;
		s->pooled = false;
		if (s->giving_up || s->waiting || s->live >= d->cfg->parallel_offers)
			continue;
		if (now >= s->deadline) {
			if (s->live == 0)
				dispatch_give_up(s);
			continue;
		}
		w.cand_start[w.nt] = w.ncand;
		if (!dispatch_batch_gather(&w, s, now)) {
			dispatch_wait_enter(s, now);
			continue;
		}
		s->pooled = true; /* in this window until its offers are made */
		w.s[w.nt] = s;
		w.trips[w.nt++] = s->t;
		b->nrun = w.nt;
	}
	if (n == 0 || !TAILQ_FIRST(&b->pool))
		*left = 0;
	w.cand_start[w.nt] = w.ncand;
	if (w.nt > 0) {
		/* only each trip's own candidates: the other pairs are never costed */
		uint8_t *want = rh_calloc(w.nd * w.nt + 1, 1);
		w.eta = rh_malloc((w.nd * w.nt + 1) * sizeof *w.eta);
		w.road = rh_malloc((w.nd * w.nt + 1) * sizeof *w.road);
		for (size_t j = 0; j < w.nt; j++)
			for (size_t x = w.cand_start[j]; x < w.cand_start[j + 1]; x++)
				want[(size_t)w.cand[x] * w.nt + j] = 1;
		d->w.etas(d->w.ctx, w.drv, w.nd, w.trips, w.nt, want, w.eta, w.road);
		rh_free(want);
		dispatch_batch_offer(b, &w, now);
	}
	b->run = NULL;
	b->nrun = 0;
	for (size_t j = 0; j < w.nt; j++) {
		if (!(s = w.s[j]))
			continue;
		s->pooled = false;
		if (s->live > 0)
			dispatch_tell(s, false, now);
		dispatch_batch_add(s, now); /* left out, or short of offers: the next window */
	}
	dispatch_batch_window_fini(&w);
}

/* The window closes: its trips are assigned, DISPATCH_BATCH_PART at a time
 * in arrival order (the drivers one part is offered are no longer
 * available to the next), so that the pickup ETA matrix and the solver stay
 * small however many trips a window holds. */
static void dispatch_batch_run(void *arg, int64_t now)
{
	struct dispatch_batch *b = arg;
	b->closes_at = -1;
	size_t left = 0;
	struct dispatch_search *s;
	TAILQ_FOREACH(s, &b->pool, pool_link)
		left++;
	while (left > 0)
		dispatch_batch_part(b, &left, now);
}

/* ------------------------------------------------------------ setup */

struct dispatch_batch *dispatch_batch_new(struct dispatch *d)
{
	struct dispatch_batch *b = RH_NEW(struct dispatch_batch);
	b->d = d;
	TAILQ_INIT(&b->pool);
	b->closes_at = -1;
	b->timer = rh_timer_new(d->timers, dispatch_batch_run, b);
	b->solver = assign_new();
	return b;
}

void dispatch_batch_free(struct dispatch_batch *b)
{
	if (!b)
		return;
	rh_timer_free(b->timer);
	assign_free(b->solver);
	rh_free(b);
}
