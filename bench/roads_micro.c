/* Roads in isolation: import and load times, memory per node, and the
 * latency of single routes (the daemon's method and plain Dijkstra) and of
 * many-to-one ETAs, on random pairs of points that snap onto the map.
 *
 *   roads_micro <extract.osm.pbf> [pairs] [seed] [pairs.csv] [trips.csv ...]
 *
 * Prints name=value lines. With pairs.csv, writes each pair and our
 * shortest distance (metric distance) for the pgRouting comparison. With
 * trip files, the map is calibrated from them first (America/New_York
 * local times: the NYC taxi files) and the held-out figures are printed;
 * the route timings then run with the profile on. Turn restrictions:
 * turn_restrictions_honoured_pct, the share of what the extract's
 * restrictions forbid that no route (the daemon's method) drives. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/config.h"
#include "core/settings.h"
#include "routing/routing.h"

static uint64_t rng_state;
static uint64_t rng_next(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}
static double rng_unit(void) { return (double)(rng_next() >> 11) / 9007199254740992.0; }

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p)
{
	qsort(v, n, sizeof *v, cmp_double);
	size_t i = (size_t)(p * (double)(n - 1) + 0.5);
	return v[i];
}

struct pair {
	double a, b, c, d;
};

static struct routing *load(const char *map, const char *conf, double *ms)
{
	struct rh_config cfg;
	struct cfg_errors errs;
	char *env[] = { NULL };
	if (config_load_buffer(&cfg, "bench.conf", conf, env, &errs) != RH_OK)
		exit(1);
	struct routing *r;
	char err[512];
	double t0 = now_us();
	if (routing_load(map, &cfg.routing, &r, err, sizeof err) != RH_OK) {
		fprintf(stderr, "%s\n", err);
		exit(1);
	}
	*ms = (now_us() - t0) / 1000;
	config_fini(&cfg);
	return r;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: roads_micro <extract> [pairs] [seed] [pairs.csv]\n");
		return 2;
	}
	size_t npairs = argc > 2 ? strtoul(argv[2], NULL, 10) : 10000;
	uint64_t seed = argc > 3 ? strtoull(argv[3], NULL, 10) : (uint64_t)time(NULL);
	const char *csv = argc > 4 ? argv[4] : NULL;
	rng_state = seed;
	printf("seed=%llu\n", (unsigned long long)seed);

	struct rh_config cfg;
	struct cfg_errors errs;
	char *env[] = { NULL };
	if (config_load_buffer(&cfg, "bench.conf", "", env, &errs) != RH_OK)
		return 1;
	char map[256], err[512];
	snprintf(map, sizeof map, "/tmp/ridehail-bench-%d.map", (int)getpid());
	struct routing_stats st;
	double t0 = now_us();
	if (routing_import(argv[1], &cfg.routing, map, &st, err, sizeof err) != RH_OK) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	printf("import_ms=%.0f\n", (now_us() - t0) / 1000);
	printf("turn_restrictions=%zu\nturn_graph_nodes=%zu\nturn_graph_arcs=%zu\n", st.restrictions, st.turn_nodes,
	       st.turn_arcs);
	if (argc > 5) {
		char rep[256];
		snprintf(rep, sizeof rep, "/tmp/ridehail-bench-%d.cal", (int)getpid());
		FILE *f = fopen(rep, "w+");
		if (!f || routing_calibrate(map, (const char *const *)argv + 5, (size_t)argc - 5, "America/New_York",
					    &cfg.routing, map, f, err, sizeof err) != RH_OK) {
			fprintf(stderr, "calibrate: %s\n", err);
			return 1;
		}
		rewind(f);
		/* the calibration's own report: these figures, as it printed them */
		static const char *const keep[] = { "trips_fit", "trips_held", "eta_mape_freeflow_pct", "eta_mape_pct",
						     "eta_bias_pct", "eta_range_cover_pct" };
		char line[256];
		while (fgets(line, sizeof line, f))
			for (size_t k = 0; k < sizeof keep / sizeof *keep; k++)
				if (!strncmp(line, keep[k], strlen(keep[k])) && line[strlen(keep[k])] == '=')
					fputs(line, stdout);
		fclose(f);
		unlink(rep);
	}
	config_fini(&cfg);

	double load_ms, dummy;
	int64_t live0 = rh_alloc_live_bytes();
	struct routing *r = load(map, "", &load_ms);
	int64_t held = rh_alloc_live_bytes() - live0;
	struct routing *rd = load(map, "[routing]\nmetric = distance\n", &dummy);
	routing_get_stats(r, &st);
	printf("map_load_ms=%.1f\n", load_ms);
	printf("graph_nodes=%zu\ngraph_edges=%zu\n", st.nodes, st.edges);
	/* measured by the allocation wrapper: graph, hierarchy, grid and scratch */
	printf("bytes_per_node=%.0f\n", (double)held / (double)st.nodes);

	struct pair *pairs = calloc(npairs, sizeof *pairs);
	struct route_result res;
	for (size_t i = 0; i < npairs;) {
		struct pair p = { st.min_lat + rng_unit() * (st.max_lat - st.min_lat),
				  st.min_lon + rng_unit() * (st.max_lon - st.min_lon),
				  st.min_lat + rng_unit() * (st.max_lat - st.min_lat),
				  st.min_lon + rng_unit() * (st.max_lon - st.min_lon) };
		if (routing_route(r, p.a, p.b, p.c, p.d, false, &res) == RH_OK)
			pairs[i++] = p;
	}
	size_t tried_all = 0, taken_all = 0;
	for (size_t i = 0; i < routing_restriction_count(r); i++) {
		size_t tried, taken;
		if (routing_restriction_taken(r, i, ROUTE_FAST, &tried, &taken) != RH_OK)
			return 1;
		tried_all += tried, taken_all += taken;
	}
	if (tried_all)
		printf("turn_restrictions_honoured_pct=%.1f\n", 100.0 * (double)(tried_all - taken_all) / (double)tried_all);
	double *lat = calloc(npairs, sizeof *lat);
	for (int method = 0; method < 2; method++) {
		size_t n = method ? (npairs < 2000 ? npairs : 2000) : npairs;
		double sum = 0;
		for (size_t i = 0; i < n; i++) {
			double s = now_us();
			rh_err e = routing_route_method(r, pairs[i].a, pairs[i].b, pairs[i].c, pairs[i].d,
							method ? ROUTE_DIJKSTRA : ROUTE_FAST, method == 0, &res);
			lat[i] = now_us() - s;
			sum += res.distance_m;
			if (e != RH_OK)
				return 1;
		}
		const char *name = method ? "dijkstra" : "route";
		printf("%s_mean_km=%.2f\n", name, sum / (double)n / 1000);
		printf("%s_p50_us=%.1f\n", name, pct(lat, n, 0.5));
		printf("%s_p99_us=%.1f\n", name, pct(lat, n, 0.99));
	}
	/* many-to-one: 16 drivers to one pickup, as candidate ranking asks */
	size_t rounds = npairs / 16 < 1000 ? npairs / 16 : 1000;
	if (rounds) {
		double slat[16], slon[16];
		struct routing_eta eta[16];
		for (size_t k = 0; k < rounds; k++) {
			for (int j = 0; j < 16; j++)
				slat[j] = pairs[k * 16 + j].a, slon[j] = pairs[k * 16 + j].b;
			double s = now_us();
			if (routing_eta_many_to_one(r, slat, slon, 16, pairs[k].c, pairs[k].d, eta) != RH_OK)
				return 1;
			lat[k] = now_us() - s;
		}
		printf("eta16_p50_us=%.1f\n", pct(lat, rounds, 0.5));
		printf("eta16_p99_us=%.1f\n", pct(lat, rounds, 0.99));
	}
	if (csv) {
		FILE *f = fopen(csv, "w");
		if (!f)
			return 1;
		for (size_t i = 0; i < npairs; i++) {
			if (routing_route(rd, pairs[i].a, pairs[i].b, pairs[i].c, pairs[i].d, false, &res) != RH_OK)
				continue;
			fprintf(f, "%.7f,%.7f,%.7f,%.7f,%.3f\n", pairs[i].a, pairs[i].b, pairs[i].c, pairs[i].d,
				res.distance_m);
		}
		fclose(f);
	}
	routing_free(r);
	routing_free(rd);
	unlink(map);
	free(pairs);
	free(lat);
	return 0;
}
