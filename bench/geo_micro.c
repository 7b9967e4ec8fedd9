/* Micro-benchmark of the geo building blocks, no I/O: grid moves (pings),
 * k-nearest queries, geohash encode and the two distance functions.
 *
 *   make bench-geo-micro            (or build/release/bench/geo_micro [drivers] [bits...])
 *
 * The city is 20 x 20 km around (52.09, 5.12), the same spot as the Redis GEO
 * anchor; drivers are uniform in it, 3 vehicle types, all available and fresh.
 * A query is 2 km radius, 10 nearest, available drivers of any type with
 * pings newer than 30 s. A ping moves a driver ~40 m (10 m/s, one ping per
 * 4 s) in a random direction. Prints name=value lines, one block per cell
 * precision. Single-threaded; pin it with taskset for stable figures. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "geo/geohash.h"
#include "geo/grid.h"

#define CITY_LAT 52.09
#define CITY_LON 5.12
#define HALF_KM 10.0

static uint64_t rng_state = 42;
static uint64_t rng_next(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}
static double rng_unit(void) { return (double)(rng_next() >> 11) / 9007199254740992.0; }

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static const double deg_per_km_lat = 1.0 / 111.195;

static void city_point(double *lat, double *lon)
{
	double dlat = HALF_KM * deg_per_km_lat, dlon = dlat / cos(CITY_LAT * M_PI / 180);
	*lat = CITY_LAT + (rng_unit() * 2 - 1) * dlat;
	*lon = CITY_LON + (rng_unit() * 2 - 1) * dlon;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void bench_grid(unsigned bits, uint32_t ndrivers)
{
	struct geo_grid *g;
	struct geo_grid_config cfg = { .bits = bits, .max_slots = ndrivers, .initial_slots = ndrivers };
	if (geo_grid_new(&cfg, &g) != RH_OK) {
		fprintf(stderr, "bad bits %u\n", bits);
		exit(1);
	}
	double *lat = malloc(sizeof *lat * ndrivers), *lon = malloc(sizeof *lon * ndrivers);
	int64_t now = 1700000000000LL;
	double t0 = now_s();
	for (uint32_t s = 0; s < ndrivers; s++) {
		struct geo_grid_driver d;
		city_point(&lat[s], &lon[s]);
		d = (struct geo_grid_driver){ lat[s], lon[s], now, 1, (uint16_t)(1u << (s % 3)) };
		if (geo_grid_insert(g, s, &d) != RH_OK)
			exit(1);
	}
	double t_insert = now_s() - t0;

	/* Pings: precompute a sequence of (slot, new position). */
	enum { NPINGS = 2000000 };
	uint32_t *ps = malloc(sizeof *ps * NPINGS);
	double *plat = malloc(sizeof *plat * NPINGS), *plon = malloc(sizeof *plon * NPINGS);
	for (int i = 0; i < NPINGS; i++) {
		uint32_t s = (uint32_t)(rng_next() % ndrivers);
		double a = rng_unit() * 2 * M_PI, km = 0.040;
		lat[s] += km * cos(a) * deg_per_km_lat;
		lon[s] += km * sin(a) * deg_per_km_lat / cos(CITY_LAT * M_PI / 180);
		ps[i] = s, plat[i] = lat[s], plon[i] = lon[s];
	}
	struct geo_grid_stats st0, st1;
	geo_grid_stats_get(g, &st0);
	t0 = now_s();
	for (int i = 0; i < NPINGS; i++)
		if (geo_grid_move(g, ps[i], plat[i], plon[i], now + i / 100) != RH_OK)
			exit(1);
	double t_move = now_s() - t0;
	geo_grid_stats_get(g, &st1);
	double cell_change_frac = (double)(st1.cell_changes - st0.cell_changes) / NPINGS;
	now += NPINGS / 100;

	/* Queries. */
	enum { NQ = 200000 };
	double *qlat = malloc(sizeof *qlat * NQ), *qlon = malloc(sizeof *qlon * NQ), *lat_ns = malloc(sizeof *lat_ns * NQ);
	for (int i = 0; i < NQ; i++)
		city_point(&qlat[i], &qlon[i]);
	struct geo_grid_filter f = { 1u << 1, UINT16_MAX, now, 30000 };
	struct geo_grid_hit hits[10];
	size_t n, total = 0;
	geo_grid_stats_get(g, &st0);
	t0 = now_s();
	for (int i = 0; i < NQ; i++) {
		double a = now_s();
		if (geo_grid_nearest(g, qlat[i], qlon[i], 2000, &f, hits, 10, &n) != RH_OK)
			exit(1);
		lat_ns[i] = (now_s() - a) * 1e9;
		total += n;
	}
	double t_query = now_s() - t0;
	geo_grid_stats_get(g, &st1);
	qsort(lat_ns, NQ, sizeof *lat_ns, cmp_double);

	/* A rarer filter: one vehicle type of three. */
	f.vehicle_mask = 1u << 2;
	t0 = now_s();
	for (int i = 0; i < NQ; i++)
		if (geo_grid_nearest(g, qlat[i], qlon[i], 2000, &f, hits, 10, &n) != RH_OK)
			exit(1);
	double t_query1 = now_s() - t0;

	printf("bits=%u drivers=%u cells=%zu memory_bytes=%zu bytes_per_driver=%.0f\n", bits, ndrivers,
	       geo_grid_cell_count(g), geo_grid_memory_bytes(g), (double)geo_grid_memory_bytes(g) / ndrivers);
	printf("  insert_ns=%.0f move_ns=%.1f moves_per_s=%.0f cell_change_frac=%.3f\n", t_insert / ndrivers * 1e9,
	       t_move / NPINGS * 1e9, NPINGS / t_move, cell_change_frac);
	printf("  nearest_ns=%.0f nearest_per_s=%.0f p50_ns=%.0f p99_ns=%.0f hits_avg=%.2f cells_per_q=%.1f "
	       "candidates_per_q=%.1f full_scans=%" PRIu64 "\n",
	       t_query / NQ * 1e9, NQ / t_query, lat_ns[NQ / 2], lat_ns[NQ * 99 / 100], (double)total / NQ,
	       (double)(st1.cells_visited - st0.cells_visited) / NQ, (double)(st1.candidates - st0.candidates) / NQ,
	       st1.full_scans - st0.full_scans);
	printf("  nearest_one_type_ns=%.0f\n", t_query1 / NQ * 1e9);
	geo_grid_free(g);
	free(lat), free(lon), free(ps), free(plat), free(plon), free(qlat), free(qlon), free(lat_ns);
}

static void bench_math(void)
{
	enum { N = 4000000 };
	double *a = malloc(sizeof *a * N * 2), sum = 0;
	for (int i = 0; i < N * 2; i++)
		a[i] = (i & 1) ? CITY_LON + rng_unit() * 0.2 : CITY_LAT + rng_unit() * 0.2;
	double t0 = now_s();
	for (int i = 0; i + 3 < N * 2; i += 2)
		sum += geo_dist_haversine_m(a[i], a[i + 1], a[i + 2], a[i + 3]);
	double th = now_s() - t0;
	t0 = now_s();
	for (int i = 0; i + 3 < N * 2; i += 2)
		sum += geo_dist_equirect_m(a[i], a[i + 1], a[i + 2], a[i + 3]);
	double te = now_s() - t0;
	uint64_t x = 0, h;
	t0 = now_s();
	for (int i = 0; i + 1 < N * 2; i += 2) {
		if (geo_hash_encode(a[i], a[i + 1], 32, &h) != RH_OK)
			exit(1);
		x ^= h;
	}
	double tg = now_s() - t0;
	printf("haversine_ns=%.1f equirect_ns=%.1f geohash_encode_ns=%.1f (checksum %g %" PRIx64 ")\n", th / N * 1e9,
	       te / N * 1e9, tg / N * 1e9, sum, x);
	free(a);
}

int main(int argc, char **argv)
{
	uint32_t ndrivers = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 10) : 50000;
	bench_math();
	if (argc > 2) {
		for (int i = 2; i < argc; i++)
			bench_grid((unsigned)atoi(argv[i]), ndrivers);
	} else {
		bench_grid(GEO_GRID_DEFAULT_BITS, ndrivers);
	}
	return 0;
}
