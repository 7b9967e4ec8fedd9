/* Micro-benchmark of batched matching's two costs, no I/O:
 *
 *   assign    the assignment solver (src/match/assign.c) on windows of R
 *             requests x D drivers uniform in a 20 x 20 km city (the city of
 *             bench-geo-micro and bench-dispatch), every pair within 2 km a
 *             candidate (cost: the straight line x 1.3 at 25 km/h, in ms, as
 *             dispatch without a map), every request to be served if it can
 *             be; a fresh random window each round. assign_solve_ms_p50/p99
 *             are the solver's CPU time on its thread (this machine is
 *             shared: CPU time is what the solver costs; wall time beside it).
 *   m2m       with --map: routing_eta_many_to_many from D drivers to R
 *             pickups at random points of the map's middle (the box of
 *             docs/simulator.md's Midtown replay when --bbox gives it), every
 *             answer of the R x D matrix; many_to_many_ms_p50/p99, CPU.
 *
 *   build/release/bench/matching_micro [--rounds N] [--map FILE --bbox minlon,minlat,maxlon,maxlat]
 *
 * Prints name=value lines. Single-threaded; pin it with taskset. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/config.h"
#include "core/settings.h"
#include "geo/geohash.h"
#include "match/assign.h"
#include "routing/routing.h"

#define CITY_LAT 52.09
#define CITY_LON 5.12
#define HALF_KM 10.0
#define RADIUS_M 2000.0

static uint64_t rng_state = 23;
static uint64_t rng_next(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}
static double rng_unit(void) { return (double)(rng_next() >> 11) / 9007199254740992.0; }

static double cpu_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static double wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of v[0..n), sorted in place. */
static double pct(double *v, size_t n, double p)
{
	qsort(v, n, sizeof *v, cmp_double);
	size_t k = (size_t)ceil(p / 100.0 * (double)n);
	return v[k ? k - 1 : 0];
}

static void city_point(double *lat, double *lon)
{
	double dlat = HALF_KM / 111.195, dlon = dlat / cos(CITY_LAT * M_PI / 180);
	*lat = CITY_LAT + (rng_unit() * 2 - 1) * dlat;
	*lon = CITY_LON + (rng_unit() * 2 - 1) * dlon;
}

struct window {
	size_t nr, nd, npairs, cap;
	size_t *start;
	uint32_t *col;
	int64_t *cost, *unassigned;
};

/* A fresh random window: requests and drivers in the city, the pairs within
 * the radius (driver positions bucketed in 2 km cells, so making a window of
 * 5,000 drivers is quick; not timed anyway). */
static void window_make(struct window *w, size_t nr, size_t nd)
{
	double *dlat = rh_malloc(nd * sizeof *dlat), *dlon = rh_malloc(nd * sizeof *dlon);
	for (size_t j = 0; j < nd; j++)
		city_point(&dlat[j], &dlon[j]);
	w->nr = nr;
	w->nd = nd;
	w->npairs = 0;
	w->start = rh_realloc(w->start, (nr + 1) * sizeof *w->start);
	w->unassigned = rh_realloc(w->unassigned, nr * sizeof *w->unassigned);
	for (size_t i = 0; i < nr; i++) {
		double lat, lon;
		city_point(&lat, &lon);
		w->start[i] = w->npairs;
		w->unassigned[i] = (int64_t)1 << 40; /* serve every request that can be */
		for (size_t j = 0; j < nd; j++) {
			double d = geo_dist_haversine_m(lat, lon, dlat[j], dlon[j]);
			if (d > RADIUS_M)
				continue;
			if (w->npairs == w->cap) {
				w->cap = w->cap ? 2 * w->cap : 4096;
				w->col = rh_realloc(w->col, w->cap * sizeof *w->col);
				w->cost = rh_realloc(w->cost, w->cap * sizeof *w->cost);
			}
			w->col[w->npairs] = (uint32_t)j;
			w->cost[w->npairs++] = llround(d * 1.3 / (25 / 3.6) * 1000);
		}
	}
	w->start[nr] = w->npairs;
	rh_free(dlat);
	rh_free(dlon);
}

static void bench_assign(const char *tag, size_t nr, size_t nd, int rounds)
{
	struct assign *a = assign_new();
	struct window w = { 0 };
	int32_t *rc = rh_malloc(nr * sizeof *rc);
	double *cpu = rh_malloc((size_t)rounds * sizeof *cpu), *wall = rh_malloc((size_t)rounds * sizeof *wall);
	double pairs = 0, served = 0;
	for (int k = 0; k < rounds; k++) {
		window_make(&w, nr, nd);
		struct assign_problem p = { w.nr, w.nd, w.start, w.col, w.cost, w.unassigned };
		double c0 = cpu_ms(), w0 = wall_ms();
		(void)assign_solve(a, &p, rc);
		cpu[k] = cpu_ms() - c0;
		wall[k] = wall_ms() - w0;
		pairs += (double)w.npairs;
		for (size_t i = 0; i < nr; i++)
			served += rc[i] >= 0;
	}
	printf("assign_solve_ms_p50%s=%.3f\n", tag, pct(cpu, (size_t)rounds, 50));
	printf("assign_solve_ms_p99%s=%.3f\n", tag, pct(cpu, (size_t)rounds, 99));
	printf("assign_solve_wall_ms_p99%s=%.3f\n", tag, pct(wall, (size_t)rounds, 99));
	printf("assign_pairs_per_request%s=%.1f\n", tag, pairs / rounds / (double)nr);
	printf("assign_served_pct%s=%.1f\n", tag, 100.0 * served / rounds / (double)nr);
	assign_free(a);
	rh_free(w.start);
	rh_free(w.col);
	rh_free(w.cost);
	rh_free(w.unassigned);
	rh_free(rc);
	rh_free(cpu);
	rh_free(wall);
}

static void bench_m2m(const char *map, const double box[4], size_t nr, size_t nd, int rounds)
{
	struct rh_config cfg;
	struct cfg_errors errs;
	static char *const no_env[] = { NULL };
	if (config_load_buffer(&cfg, "bench", "", no_env, &errs) != RH_OK)
		exit(2);
	struct routing *r;
	char err[512];
	if (routing_load(map, &cfg.routing, &r, err, sizeof err) != RH_OK) {
		fprintf(stderr, "matching_micro: %s: %s\n", map, err);
		exit(2);
	}
	double *slat = rh_malloc(nd * sizeof *slat), *slon = rh_malloc(nd * sizeof *slon);
	double *tlat = rh_malloc(nr * sizeof *tlat), *tlon = rh_malloc(nr * sizeof *tlon);
	struct routing_eta *out = rh_malloc(nr * nd * sizeof *out);
	double *cpu = rh_malloc((size_t)rounds * sizeof *cpu);
	double reach = 0;
	for (int k = 0; k < rounds; k++) {
		for (size_t j = 0; j < nd; j++) {
			slat[j] = box[1] + rng_unit() * (box[3] - box[1]);
			slon[j] = box[0] + rng_unit() * (box[2] - box[0]);
		}
		for (size_t i = 0; i < nr; i++) {
			tlat[i] = box[1] + rng_unit() * (box[3] - box[1]);
			tlon[i] = box[0] + rng_unit() * (box[2] - box[0]);
		}
		double c0 = cpu_ms();
		if (routing_eta_many_to_many(r, slat, slon, nd, tlat, tlon, nr, 1398880800, out) != RH_OK)
			exit(2);
		cpu[k] = cpu_ms() - c0;
		for (size_t x = 0; x < nr * nd; x++)
			reach += out[x].reachable;
	}
	printf("many_to_many_ms_p50=%.2f\n", pct(cpu, (size_t)rounds, 50));
	printf("many_to_many_ms=%.2f\n", pct(cpu, (size_t)rounds, 99));
	printf("many_to_many_pairs=%zu\n", nr * nd);
	printf("many_to_many_reachable_pct=%.1f\n", 100.0 * reach / rounds / (double)(nr * nd));
	routing_free(r);
	config_fini(&cfg);
	rh_free(slat);
	rh_free(slon);
	rh_free(tlat);
	rh_free(tlon);
	rh_free(out);
	rh_free(cpu);
}

int main(int argc, char **argv)
{
	int rounds = 200;
	const char *map = NULL;
	double box[4] = { 0 };
	bool have_box = false;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
			rounds = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--map") && i + 1 < argc)
			map = argv[++i];
		else if (!strcmp(argv[i], "--bbox") && i + 1 < argc)
			have_box = sscanf(argv[++i], "%lf,%lf,%lf,%lf", &box[0], &box[1], &box[2], &box[3]) == 4;
		else {
			fprintf(stderr, "usage: matching_micro [--rounds N] [--map FILE --bbox minlon,minlat,maxlon,maxlat]\n");
			return 2;
		}
	}
	if (rounds < 1)
		rounds = 1;
	bench_assign("", 200, 1000, rounds);
	bench_assign("_1000x5000", 1000, 5000, rounds / 4 > 10 ? rounds / 4 : 10);
	if (map) {
		if (!have_box) {
			fprintf(stderr, "matching_micro: --map needs --bbox\n");
			return 2;
		}
		bench_m2m(map, box, 200, 1000, rounds / 4 > 10 ? rounds / 4 : 10);
	}
	return 0;
}
