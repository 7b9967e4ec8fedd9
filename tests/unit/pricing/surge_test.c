/* The surge engine on manual time: demand and supply put in by hand, the
 * recompute driven by the timers, every number checked against the formula
 * in docs/pricing.md. */
#include "../unit.h"

#include <stdlib.h>

#include "core/config.h"
#include "core/settings.h"
#include "core/timer.h"
#include "geo/hexgrid.h"
#include "pricing/surge.h"

#define SW_DRIVERS 4096
#define SW_ZONES 4

/* The world the engine asks: drivers, zone overrides (by cell centre in a
 * box), and the events it tells. */
struct sworld {
	struct rh_config cfg;
	struct rh_timers *timers;
	struct surge *s;
	double dlat[SW_DRIVERS], dlon[SW_DRIVERS];
	int dveh[SW_DRIVERS];
	int nd;
	bool supply_fails;
	int supply_calls;
	struct {
		double min_lat, min_lon, max_lat, max_lon;
		struct surge_override o;
	} zone[SW_ZONES];
	int nzones;
	struct surge_change told[4096];
	int ntold;
	int tell_calls;
};

static bool sw_supply(void *ctx, int64_t now, void (*add)(void *, double, double, int), void *acc)
{
	struct sworld *w = ctx;
	w->supply_calls++;
	if (w->supply_fails)
		return false;
	for (int i = 0; i < w->nd; i++)
		add(acc, w->dlat[i], w->dlon[i], w->dveh[i]);
	return true;
}

static bool sw_override(void *ctx, const double *plat, const double *plon, struct surge_override *out)
{
	struct sworld *w = ctx;
	double lat = plat[0], lon = plon[0]; /* by the cell's centre */
	for (int i = 0; i < w->nzones; i++) {
		if (lat >= w->zone[i].min_lat && lat <= w->zone[i].max_lat && lon >= w->zone[i].min_lon &&
		    lon <= w->zone[i].max_lon) {
			*out = w->zone[i].o;
			return true;
		}
	}
	return false;
}

static void sw_changed(void *ctx, const struct surge_change *c, size_t n, int64_t now)
{
	struct sworld *w = ctx;
	w->tell_calls++;
	for (size_t i = 0; i < n && w->ntold < 4096; i++)
		w->told[w->ntold++] = c[i];
}

static const double HLAT = 40.7549, HLON = -73.9840; /* the hot spot */

/* A world at t = 0 with the configuration text (defaults otherwise), the
 * reference latitude 41 and two vehicle types. */
static void sw_init(struct sworld *w, const char *conf)
{
	memset(w, 0, sizeof *w);
	struct cfg_errors errs;
	char text[2048];
	snprintf(text, sizeof text, "[surge]\nlatitude = 41\n%s\n[tariff.standard]\n[tariff.xl]\n", conf ? conf : "");
	if (config_load_buffer(&w->cfg, "test", text, NULL, &errs) != RH_OK) {
		for (int i = 0; i < errs.n; i++)
			unit_fail(__FILE__, __LINE__, "config: %s", errs.msg[i]);
		abort();
	}
	w->timers = rh_timers_manual(0);
	struct surge_deps d = { .timers = w->timers, .cfg = &w->cfg.surge, .nvehicles = w->cfg.ntariffs,
				.supply = sw_supply, .supply_ctx = w, .override_at = sw_override, .override_ctx = w,
				.changed = sw_changed, .changed_ctx = w };
	w->s = surge_new(&d);
}

static void sw_fini(struct sworld *w)
{
	surge_free(w->s);
	rh_timers_free(w->timers);
	config_fini(&w->cfg);
}

static void sw_driver(struct sworld *w, double lat, double lon, int veh)
{
	w->dlat[w->nd] = lat;
	w->dlon[w->nd] = lon;
	w->dveh[w->nd] = veh;
	w->nd++;
}

static double sw_m(struct sworld *w, double lat, double lon, int veh)
{
	struct surge_point p;
	surge_at(w->s, lat, lon, veh, &p);
	return p.multiplier;
}

/* Time moves to the next recompute (the timer fires it). */
static void sw_tick(struct sworld *w)
{
	rh_timers_advance(w->timers, surge_next_ms(w->s));
}

UNIT_TEST(surge_curve_is_piecewise_linear_and_flat_past_the_ends)
{
	struct sworld w;
	sw_init(&w, "curve_ratio = 1,2,5,8\ncurve_multiplier = 1,1.5,2.5,3");
	const struct surge_cfg *c = &w.cfg.surge;
	CHECK_NEAR(surge_curve(c, 0), 1.0, 1e-12);
	CHECK_NEAR(surge_curve(c, 1), 1.0, 1e-12);
	CHECK_NEAR(surge_curve(c, 1.5), 1.25, 1e-12);
	CHECK_NEAR(surge_curve(c, 2), 1.5, 1e-12);
	CHECK_NEAR(surge_curve(c, 3.5), 2.0, 1e-12);
	CHECK_NEAR(surge_curve(c, 6.5), 2.75, 1e-12);
	CHECK_NEAR(surge_curve(c, 8), 3.0, 1e-12);
	CHECK_NEAR(surge_curve(c, 100), 3.0, 1e-12);
	sw_fini(&w);
}

/* Demand over supply drives the multiplier up by the EMA, never more than
 * max_step per recompute, up to the cap; then, demand gone and drivers
 * back, down again at the same pace once min_dwell has passed. */
UNIT_TEST(surge_rises_by_steps_to_the_cap_and_falls_after_the_dwell)
{
	struct sworld w;
	sw_init(&w, "interval = 30s\nwindow = 5m\nema_alpha = 0.5\nmax_step = 0.3\nmin_dwell = 90s\ncap = 2.2\n"
		    "neighbour_max_diff = 5");
	sw_driver(&w, HLAT, HLON, 0);
	for (int i = 0; i < 20; i++)
		surge_demand(w.s, HLAT + 0.0001 * i, HLON, 0, 1000);
	CHECK_NEAR(sw_m(&w, HLAT, HLON, 0), 1.0, 1e-12); /* nothing computed yet */
	/* ratio 20 -> raw 3.0; ema 1 -> 2 -> 2.5 -> 2.75...; shown: +0.3 each time, capped at 2.2 */
	double want[] = { 1.3, 1.6, 1.9, 2.2, 2.2, 2.2 };
	for (int i = 0; i < 6; i++) {
		sw_tick(&w);
		CHECK_NEAR(sw_m(&w, HLAT, HLON, 0), want[i], 1e-9);
	}
	CHECK_EQ_INT(rh_timers_now(w.timers), 180000);
	/* the other vehicle type has no demand there */
	CHECK_NEAR(sw_m(&w, HLAT, HLON, 1), 1.0, 1e-12);
	struct surge_point p;
	surge_at(w.s, HLAT, HLON, 0, &p);
	CHECK_EQ_INT(p.demand, 20);
	CHECK_EQ_INT(p.supply, 1);
	CHECK_NEAR(p.ratio, 20, 1e-12);
	sw_fini(&w);

	/* The same, with drivers arriving right after the 4th recompute (t =
	 * 120 s, when it last rose): ratio 20 / 31 -> raw 1. The EMA falls at
	 * once, the multiplier only once min_dwell (90 s) has passed since it
	 * last rose, then by at most 0.3 per recompute: 2.2, 2.2, then from
	 * t = 210 s 1.9, 1.6, 1.3, and the EMA's tail (1.029 -> 1.03,
	 * 1.0146 -> 1.01, 1.0073 -> 1.01, 1.0037 -> 1) */
	sw_init(&w, "interval = 30s\nwindow = 5m\nema_alpha = 0.5\nmax_step = 0.3\nmin_dwell = 90s\ncap = 2.2\n"
		    "neighbour_max_diff = 5");
	sw_driver(&w, HLAT, HLON, 0);
	for (int i = 0; i < 20; i++)
		surge_demand(w.s, HLAT + 0.0001 * i, HLON, 0, 1000);
	for (int i = 0; i < 4; i++)
		sw_tick(&w);
	CHECK_NEAR(sw_m(&w, HLAT, HLON, 0), 2.2, 1e-9);
	for (int i = 0; i < 30; i++)
		sw_driver(&w, HLAT, HLON + 0.0001 * i, 0);
	double down[] = { 2.2, 2.2, 1.9, 1.6, 1.3, 1.03, 1.01, 1.01, 1.0 };
	for (int i = 0; i < 9; i++) {
		sw_tick(&w);
		CHECK_NEAR(sw_m(&w, HLAT, HLON, 0), down[i], 1e-9);
	}
	sw_fini(&w);
}

UNIT_TEST(surge_holds_for_the_dwell_before_changing_direction)
{
	struct sworld w;
	sw_init(&w, "interval = 10s\nwindow = 25s\nema_alpha = 1\nmax_step = 0.3\nmin_dwell = 60s\nneighbour_max_diff = 5");
	sw_driver(&w, HLAT, HLON, 0);
	for (int i = 0; i < 4; i++)
		surge_demand(w.s, HLAT, HLON, 0, 500);
	sw_tick(&w); /* t = 10 s: ratio 4 -> raw 2.17, +0.3 */
	CHECK_NEAR(sw_m(&w, HLAT, HLON, 0), 1.3, 1e-9);
	/* buckets of 2.5 s: the requests of t = 0.5 s leave the window at 27.5 s */
	sw_tick(&w); /* 20 s */
	CHECK_NEAR(sw_m(&w, HLAT, HLON, 0), 1.6, 1e-9);
	sw_tick(&w); /* 30 s: gone; ema 1 wants down, but it rose at 20 s: held until 80 s */
	CHECK_NEAR(sw_m(&w, HLAT, HLON, 0), 1.6, 1e-9);
	for (int t = 40; t < 80; t += 10) {
		sw_tick(&w);
		CHECK_NEAR(sw_m(&w, HLAT, HLON, 0), 1.6, 1e-9);
	}
	sw_tick(&w); /* 80 s: 60 s since it last moved up */
	CHECK_NEAR(sw_m(&w, HLAT, HLON, 0), 1.3, 1e-9);
	/* going down, a new burst must wait the dwell again before it rises */
	for (int i = 0; i < 10; i++)
		surge_demand(w.s, HLAT, HLON, 0, rh_timers_now(w.timers));
	sw_tick(&w); /* 90 s: wants up, it moved down at 80 s */
	CHECK_NEAR(sw_m(&w, HLAT, HLON, 0), 1.3, 1e-9);
	sw_fini(&w);
}

struct sw_cells {
	struct sworld *w;
	struct geo_hexgrid g;
	int n;
	geo_hex h[4096];
	double m[4096];
};

static void sw_cell(void *ctx, geo_hex cell, const double *m, const uint32_t *demand, const uint32_t *supply)
{
	struct sw_cells *c = ctx;
	if (c->n < 4096) {
		c->h[c->n] = cell;
		c->m[c->n] = m[0];
		c->n++;
	}
}

/* One very hot cell: its neighbours are raised so that no two adjacent
 * cells differ by more than neighbour_max_diff, ring after ring. */
UNIT_TEST(surge_neighbours_never_differ_by_more_than_the_step)
{
	struct sworld w;
	sw_init(&w, "ema_alpha = 1\nmax_step = 10\ncap = 3\nneighbour_max_diff = 0.5");
	for (int i = 0; i < 100; i++)
		surge_demand(w.s, HLAT, HLON, 0, 0);
	sw_tick(&w);
	CHECK_NEAR(sw_m(&w, HLAT, HLON, 0), 3.0, 1e-9);
	struct sw_cells c = { .w = &w };
	REQUIRE(surge_grid(w.s, &c.g));
	surge_each_cell(w.s, sw_cell, &c);
	/* the hot cell, 6 at 2.5, 12 at 2.0, 18 at 1.5 (1 + 24 + ... ) */
	geo_hex hot = geo_hex_of(&c.g, HLAT, HLON);
	int by_ring[8] = { 0 };
	for (int i = 0; i < c.n; i++) {
		int d = geo_hex_distance(hot, c.h[i]);
		REQUIRE(d < 8);
		CHECK_NEAR(c.m[i], 3.0 - 0.5 * d, 1e-9);
		by_ring[d]++;
		for (int j = 0; j < c.n; j++)
			if (geo_hex_distance(c.h[i], c.h[j]) == 1 && fabs(c.m[i] - c.m[j]) > 0.5 + 1e-9)
				unit_fail(__FILE__, __LINE__, "adjacent cells at %.2f and %.2f", c.m[i], c.m[j]);
	}
	CHECK_EQ_INT(by_ring[0], 1);
	CHECK_EQ_INT(by_ring[1], 6);
	CHECK_EQ_INT(by_ring[2], 12);
	CHECK_EQ_INT(by_ring[3], 18);
	CHECK_EQ_INT(by_ring[4], 0); /* 1.0: not made */
	sw_fini(&w);
}

/* Random cities: whatever the demand and supply, after every recompute
 * every multiplier is within [1, cap], moved by at most max_step (no
 * override), and adjacent cells differ by at most neighbour_max_diff. */
UNIT_TEST(surge_invariants_hold_in_random_cities)
{
	uint64_t seed = unit_seed();
	for (int city = 0; city < 6; city++) {
		struct sworld w;
		sw_init(&w, "interval = 30s\nema_alpha = 0.6\nmax_step = 0.3\nmin_dwell = 0s\ncap = 2.5\nneighbour_max_diff = 0.4");
		uint64_t r = seed + (uint64_t)city * 7919;
		for (int round = 0; round < 12; round++) {
			/* some demand and drivers around, moving */
			w.nd = 0;
			for (int i = 0; i < 300; i++) {
				r = r * 6364136223846793005ULL + 1442695040888963407ULL;
				double a = (double)(r >> 11) / 9007199254740992.0;
				r = r * 6364136223846793005ULL + 1442695040888963407ULL;
				double b = (double)(r >> 11) / 9007199254740992.0;
				double lat = HLAT + (a - 0.5) * 0.2, lon = HLON + (b - 0.5) * 0.25;
				if (i % 3 == 0)
					sw_driver(&w, lat, lon, 0);
				else
					surge_demand(w.s, lat + (round % 2) * 0.01, lon, 0, rh_timers_now(w.timers));
			}
			struct sw_cells before = { .w = &w };
			surge_each_cell(w.s, sw_cell, &before);
			sw_tick(&w);
			struct sw_cells after = { .w = &w };
			REQUIRE(surge_grid(w.s, &after.g));
			surge_each_cell(w.s, sw_cell, &after);
			for (int i = 0; i < after.n; i++) {
				CHECK(after.m[i] >= 1.0 && after.m[i] <= 2.5 + 1e-9);
				double was = 1.0;
				for (int j = 0; j < before.n; j++)
					if (before.h[j] == after.h[i])
						was = before.m[j];
				if (fabs(after.m[i] - was) > 0.3 + 1e-9)
					unit_fail(__FILE__, __LINE__, "city %d round %d: moved %.2f -> %.2f", city, round, was,
						  after.m[i]);
				for (int j = 0; j < after.n; j++)
					if (geo_hex_distance(after.h[i], after.h[j]) == 1 && fabs(after.m[i] - after.m[j]) > 0.4 + 1e-9)
						unit_fail(__FILE__, __LINE__, "city %d round %d: adjacent %.2f, %.2f", city, round,
							  after.m[i], after.m[j]);
			}
		}
		sw_fini(&w);
	}
}

UNIT_TEST(surge_operator_overrides_cap_freeze_and_disable_a_zone)
{
	struct sworld w;
	sw_init(&w, "ema_alpha = 1\nmax_step = 0.5\ncap = 3\nneighbour_max_diff = 5\nmin_dwell = 0s");
	const double A = 40.70, B = 40.80, C = 40.90; /* three hot spots 11 km apart */
	for (int i = 0; i < 50; i++) {
		surge_demand(w.s, A, HLON, 0, 0);
		surge_demand(w.s, B, HLON, 0, 0);
		surge_demand(w.s, C, HLON, 0, 0);
	}
	sw_tick(&w);
	sw_tick(&w);
	CHECK_NEAR(sw_m(&w, A, HLON, 0), 2.0, 1e-9);
	CHECK_NEAR(sw_m(&w, B, HLON, 0), 2.0, 1e-9);
	/* A capped at 1.4, B frozen, C disabled */
	w.zone[0].min_lat = A - 0.02, w.zone[0].max_lat = A + 0.02;
	w.zone[0].o = (struct surge_override){ SURGE_OVERRIDE_CAP, 1.4 };
	w.zone[1].min_lat = B - 0.02, w.zone[1].max_lat = B + 0.02;
	w.zone[1].o = (struct surge_override){ SURGE_OVERRIDE_FREEZE, 0 };
	w.zone[2].min_lat = C - 0.02, w.zone[2].max_lat = C + 0.02;
	w.zone[2].o = (struct surge_override){ SURGE_OVERRIDE_DISABLE, 0 };
	for (int i = 0; i < 3; i++)
		w.zone[i].min_lon = -180, w.zone[i].max_lon = 180;
	w.nzones = 3;
	for (int k = 0; k < 3; k++) {
		sw_tick(&w);
		CHECK_NEAR(sw_m(&w, A, HLON, 0), 1.4, 1e-9);
		CHECK_NEAR(sw_m(&w, B, HLON, 0), 2.0, 1e-9);
		CHECK_NEAR(sw_m(&w, C, HLON, 0), 1.0, 1e-9);
	}
	/* overrides lifted: back up at max_step per recompute, not at once */
	w.nzones = 0;
	sw_tick(&w);
	CHECK_NEAR(sw_m(&w, A, HLON, 0), 1.9, 1e-9);
	CHECK_NEAR(sw_m(&w, B, HLON, 0), 2.5, 1e-9);
	CHECK_NEAR(sw_m(&w, C, HLON, 0), 1.5, 1e-9);
	sw_fini(&w);
}

UNIT_TEST(surge_failed_recompute_keeps_the_last_good_values)
{
	struct sworld w;
	sw_init(&w, "ema_alpha = 1\nmax_step = 0.3\nneighbour_max_diff = 5");
	for (int i = 0; i < 50; i++)
		surge_demand(w.s, HLAT, HLON, 0, 0);
	sw_tick(&w);
	sw_tick(&w);
	CHECK_NEAR(sw_m(&w, HLAT, HLON, 0), 1.6, 1e-9);
	w.supply_fails = true;
	for (int k = 0; k < 3; k++) {
		sw_tick(&w);
		CHECK_NEAR(sw_m(&w, HLAT, HLON, 0), 1.6, 1e-9); /* never unpriced, never moved */
	}
	struct surge_stats st;
	surge_get_stats(w.s, &st);
	CHECK_EQ_INT(st.failures, 3);
	CHECK_EQ_INT(st.recomputes, 2);
	CHECK_EQ_INT(w.supply_calls, 5);
	/* it works again: it goes on from where it stood */
	w.supply_fails = false;
	sw_tick(&w);
	CHECK_NEAR(sw_m(&w, HLAT, HLON, 0), 1.9, 1e-9);
	sw_fini(&w);
}

/* surge.updated: one per cell that moved at least event_min_change, at most
 * every event_min_interval, a return to 1 always, and at most
 * events_per_interval per recompute. */
UNIT_TEST(surge_events_are_rate_limited_per_cell)
{
	struct sworld w;
	sw_init(&w, "interval = 10s\nwindow = 1m\nema_alpha = 1\nmax_step = 0.1\ncap = 3\nneighbour_max_diff = 5\n"
		    "min_dwell = 0s\nevent_min_interval = 25s\nevent_min_change = 0.15\nevents_per_interval = 2");
	for (int i = 0; i < 50; i++)
		surge_demand(w.s, HLAT, HLON, 0, 0);
	sw_tick(&w); /* 10 s: 1.1: below the min change */
	CHECK_EQ_INT(w.ntold, 0);
	sw_tick(&w); /* 20 s: 1.2: told */
	REQUIRE(w.ntold == 1);
	CHECK_NEAR(w.told[0].multiplier, 1.2, 1e-9);
	CHECK_NEAR(w.told[0].previous, 1.0, 1e-9);
	CHECK_EQ_INT(w.told[0].demand, 50);
	CHECK_EQ_INT(w.told[0].vehicle, 0);
	sw_tick(&w); /* 30 s: 1.3, only 0.1 since */
	sw_tick(&w); /* 40 s: 1.4, 0.2 since but 20 s < 25 s */
	CHECK_EQ_INT(w.ntold, 1);
	sw_tick(&w); /* 50 s: 1.5, 30 s since: told */
	REQUIRE(w.ntold == 2);
	CHECK_NEAR(w.told[1].multiplier, 1.5, 1e-9);
	CHECK_NEAR(w.told[1].previous, 1.2, 1e-9);
	/* five more cells at once: two per recompute, the rest later. The first
	 * cell's demand (t = 0) leaves the 1 min window at 60 s: it goes down
	 * 1.4, 1.3 (20 s after its event: not yet), 1.2 (told at 80 s) */
	w.ntold = 0;
	for (int c = 0; c < 5; c++)
		for (int i = 0; i < 50; i++)
			surge_demand(w.s, HLAT + 0.1 * (c + 1), HLON, 0, rh_timers_now(w.timers));
	sw_tick(&w); /* 60 s: 1.1 each: nothing */
	CHECK_EQ_INT(w.ntold, 0);
	sw_tick(&w); /* 70 s: 1.2 each: 5 owed, 2 told */
	CHECK_EQ_INT(w.ntold, 2);
	CHECK_EQ_INT(w.tell_calls, 3);
	sw_tick(&w); /* 80 s: the first cell (1.5 -> 1.2) and one more */
	REQUIRE(w.ntold == 4);
	CHECK_NEAR(w.told[2].multiplier, 1.2, 1e-9);
	CHECK_NEAR(w.told[2].previous, 1.5, 1e-9);
	sw_tick(&w); /* 90 s: the last two */
	REQUIRE(w.ntold == 6);
	for (int c = 0; c < 5; c++) {
		struct surge_point p;
		surge_at(w.s, HLAT + 0.1 * (c + 1), HLON, 0, &p);
		int n = 0;
		for (int i = 0; i < w.ntold; i++)
			n += w.told[i].cell == p.cell;
		CHECK_EQ_INT(n, 1);
	}
	sw_fini(&w);
}

UNIT_TEST(surge_idle_cells_are_dropped_and_off_means_one)
{
	struct sworld w;
	sw_init(&w, "interval = 10s\nwindow = 20s\nema_alpha = 1\nmax_step = 1\nmin_dwell = 0s\nneighbour_max_diff = 5");
	surge_demand(w.s, HLAT, HLON, 0, 0);
	sw_driver(&w, HLAT + 0.2, HLON, 1);
	sw_tick(&w);
	struct surge_stats st;
	surge_get_stats(w.s, &st);
	CHECK_EQ_INT(st.cells, 2);
	w.nd = 0;
	for (int i = 0; i < 4; i++)
		sw_tick(&w);
	surge_get_stats(w.s, &st);
	CHECK_EQ_INT(st.cells, 0);
	sw_fini(&w);

	sw_init(&w, "enabled = false");
	for (int i = 0; i < 50; i++)
		surge_demand(w.s, HLAT, HLON, 0, 0);
	CHECK_EQ_INT(rh_timers_next(w.timers), -1); /* no timer at all */
	CHECK(surge_recompute(w.s, 100000));
	struct surge_point p;
	surge_at(w.s, HLAT, HLON, 0, &p);
	CHECK_NEAR(p.multiplier, 1.0, 1e-12);
	CHECK(!p.enabled);
	CHECK(p.cell_id[0] == 'h');
	sw_fini(&w);
}
