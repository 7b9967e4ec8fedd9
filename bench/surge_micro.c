/* surge_recompute_ms: one surge recompute (src/pricing/surge.c) with
 * --cells active cells and --drivers available drivers, on one core, the
 * way the daemon runs it on its event loop: supply counted from every
 * driver's position, demand summed, the curve, EMA, step, dwell and cap,
 * neighbour smoothing, the new values checked and swapped, events chosen.
 *
 * The city: a square of hexagonal cells (default 10,000: 100 x 100 cells of
 * 5.16 km2), demand in every cell each interval (0..6 requests, 46 more in
 * 20 hot spots: 1..30 over the window in steady state), drivers uniformly
 * over the square (5 a cell), so that surge and its smoothing have work;
 * the drivers move a little before each recompute. Prints name=value
 * lines: the median and p99 over --rounds recomputes after --warmup ones,
 * of the thread's CPU time (surge_recompute_ms: the work of one recompute
 * on one core, without the time other processes of a shared machine take
 * that core meanwhile) and of the wall time (surge_recompute_wall_ms).
 *
 *   build/release/bench/surge_micro [--cells 10000] [--drivers 50000] [--rounds 40] [--warmup 5] [--seed 1] */
#include <math.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/settings.h"
#include "core/timer.h"
#include "geo/hexgrid.h"
#include "pricing/surge.h"

struct bench_world {
	double *lat, *lon;
	size_t n;
	uint64_t rng;
	size_t told;
};

static double bench_unit(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	z ^= z >> 31;
	return (double)(z >> 11) / 9007199254740992.0;
}

static bool bench_supply(void *ctx, int64_t now, void (*add)(void *, double, double, int), void *acc)
{
	struct bench_world *w = ctx;
	for (size_t i = 0; i < w->n; i++)
		add(acc, w->lat[i], w->lon[i], 0);
	return true;
}

static void bench_changed(void *ctx, const struct surge_change *c, size_t n, int64_t now)
{
	((struct bench_world *)ctx)->told += n;
}

static int64_t bench_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int bench_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	long cells = 10000, drivers = 50000, rounds = 40, warmup = 5, seed = 1;
	for (int i = 1; i + 1 < argc; i += 2) {
		long v = atol(argv[i + 1]);
		if (!strcmp(argv[i], "--cells"))
			cells = v;
		else if (!strcmp(argv[i], "--drivers"))
			drivers = v;
		else if (!strcmp(argv[i], "--rounds"))
			rounds = v;
		else if (!strcmp(argv[i], "--warmup"))
			warmup = v;
		else if (!strcmp(argv[i], "--seed"))
			seed = v;
		else {
			fprintf(stderr, "usage: surge_micro [--cells N] [--drivers N] [--rounds N] [--warmup N] [--seed N]\n");
			return 2;
		}
	}
	struct rh_config cfg;
	struct cfg_errors errs;
	static char *const no_env[] = { NULL };
	/* the defaults, the grid fixed at the city's latitude */
	if (config_load_buffer(&cfg, "bench", "[surge]\nlatitude = 41\n", no_env, &errs) != RH_OK) {
		fprintf(stderr, "surge_micro: configuration refused\n");
		return 1;
	}
	struct geo_hexgrid g;
	geo_hexgrid_init(&g, 41, cfg.surge.cell_area_km2);
	int side = (int)ceil(sqrt((double)cells));
	/* the square of cells from (q0, r0): its corners' coordinates */
	geo_hex h0 = geo_hex_of(&g, 40.0, -75.0);
	double lat_lo = 1e9, lat_hi = -1e9, lon_lo = 1e9, lon_hi = -1e9;
	geo_hex *cell = rh_malloc((size_t)cells * sizeof *cell);
	for (long k = 0; k < cells; k++) {
		cell[k] = geo_hex_pack(geo_hex_q(h0) + (int32_t)(k % side) - (int32_t)(k / side) / 2,
				       geo_hex_r(h0) + (int32_t)(k / side));
		double la, lo;
		geo_hex_centre(&g, cell[k], &la, &lo);
		lat_lo = fmin(lat_lo, la), lat_hi = fmax(lat_hi, la), lon_lo = fmin(lon_lo, lo), lon_hi = fmax(lon_hi, lo);
	}
	struct bench_world w = { .n = (size_t)drivers, .rng = (uint64_t)seed };
	w.lat = rh_malloc(w.n * sizeof *w.lat);
	w.lon = rh_malloc(w.n * sizeof *w.lon);
	for (size_t i = 0; i < w.n; i++) {
		/* drivers on the cells' centres, jittered within them */
		double la, lo;
		geo_hex_centre(&g, cell[(size_t)(bench_unit(&w.rng) * (double)cells)], &la, &lo);
		w.lat[i] = la + (bench_unit(&w.rng) - 0.5) * 0.015;
		w.lon[i] = lo + (bench_unit(&w.rng) - 0.5) * 0.02;
	}
	struct rh_timers *timers = rh_timers_manual(0);
	struct surge_deps d = { .timers = timers, .cfg = &cfg.surge, .nvehicles = cfg.ntariffs, .supply = bench_supply,
				.supply_ctx = &w, .changed = bench_changed, .changed_ctx = &w };
	struct surge *s = surge_new(&d);
	double *ms = rh_malloc((size_t)(rounds + 1) * sizeof *ms), *wall = rh_malloc((size_t)(rounds + 1) * sizeof *wall);
	int64_t now = 0;
	size_t ncells = 0;
	for (long r = 0; r < warmup + rounds; r++) {
		/* demand of the interval (not timed): every cell 0..6 requests,
		 * 20 hot spots 40 more each, so the window (10 intervals) holds
		 * 1..30 a cell in steady state */
		for (long k = 0; k < cells; k++) {
			double la, lo;
			geo_hex_centre(&g, cell[k], &la, &lo);
			int n = (int)(bench_unit(&w.rng) * 6.5);
			if (k % (cells / 20 + 1) == 0)
				n += 40;
			for (int i = 0; i < n; i++)
				surge_demand(s, la, lo, 0, now + 1);
		}
		for (size_t i = 0; i < w.n; i += 7) { /* some drivers move */
			w.lat[i] += (bench_unit(&w.rng) - 0.5) * 0.002;
			w.lon[i] += (bench_unit(&w.rng) - 0.5) * 0.002;
		}
		now += cfg.surge.interval_ms;
		int64_t t0 = rh_mono_ns(), c0 = bench_cpu_ns();
		if (!surge_recompute(s, now)) {
			fprintf(stderr, "surge_micro: a recompute failed\n");
			return 1;
		}
		double c = (double)(bench_cpu_ns() - c0) / 1e6, t = (double)(rh_mono_ns() - t0) / 1e6;
		if (r >= warmup) {
			ms[r - warmup] = c;
			wall[r - warmup] = t;
		}
		struct surge_stats st;
		surge_get_stats(s, &st);
		ncells = st.cells;
	}
	qsort(ms, (size_t)rounds, sizeof *ms, bench_cmp);
	qsort(wall, (size_t)rounds, sizeof *wall, bench_cmp);
	struct surge_point p;
	surge_at(s, lat_lo + (lat_hi - lat_lo) / 2, lon_lo + (lon_hi - lon_lo) / 2, 0, &p);
	printf("surge_recompute_ms=%.3f\n", ms[rounds / 2]);
	printf("surge_recompute_p99_ms=%.3f\n", ms[(size_t)((double)rounds * 0.99)]);
	printf("surge_recompute_wall_ms=%.3f\n", wall[rounds / 2]);
	printf("surge_recompute_wall_p99_ms=%.3f\n", wall[(size_t)((double)rounds * 0.99)]);
	printf("surge_recompute_cells=%zu\n", ncells);
	printf("surge_recompute_drivers=%ld\n", drivers);
	printf("surge_recompute_events=%zu\n", w.told);
	rh_free(ms);
	rh_free(wall);
	rh_free(cell);
	rh_free(w.lat);
	rh_free(w.lon);
	surge_free(s);
	rh_timers_free(timers);
	config_fini(&cfg);
	return 0;
}
