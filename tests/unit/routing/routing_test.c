/* Roads on real data: Monaco against GraphHopper's shortest-distance routes,
 * the fast search against plain Dijkstra on random pairs, many-to-one against
 * single queries, and a damaged map file refused whole. */
#include "routing/routing.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/metrics.h"
#include "core/settings.h"
#include "core/timer.h"
#include "geo/geohash.h"
#include "pricing/pricing.h"

#include "../unit.h"

static char *const no_env[] = { NULL };

static uint64_t rng_state;
static uint64_t rng_next(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}
static double rng_unit(void) { return (double)(rng_next() >> 11) / 9007199254740992.0; }

static bool defaults(struct rh_config *cfg, const char *text)
{
	struct cfg_errors errs;
	return config_load_buffer(cfg, "test.conf", text, no_env, &errs) == RH_OK;
}

/* Imports ../shared/data/osm/<name> into a temporary map and loads it. */
static struct routing *monaco(struct rh_config *cfg, const char *name, char *map, size_t maplen)
{
	const char *data = unit_shared_data();
	if (!data) {
		unit_skip("../shared/data is absent: Monaco routing checks skipped");
		return NULL;
	}
	char osm[4096], err[512];
	snprintf(osm, sizeof osm, "%s/osm/%s", data, name);
	snprintf(map, maplen, "/tmp/ridehail-unit-%d.map", (int)getpid());
	struct routing_stats st;
	if (routing_import(osm, &cfg->routing, map, &st, err, sizeof err) != RH_OK) {
		unit_fail(__FILE__, __LINE__, "import: %s", err);
		return NULL;
	}
	struct routing *r = NULL;
	if (routing_load(map, &cfg->routing, &r, err, sizeof err) != RH_OK)
		unit_fail(__FILE__, __LINE__, "load: %s", err);
	return r;
}

UNIT_TEST(routing_monaco_matches_graphhopper_shortest)
{
	struct rh_config cfg;
	REQUIRE(defaults(&cfg, "[routing]\nmetric = distance\n"));
	char map[256];
	struct routing *r = monaco(&cfg, "monaco-graphhopper-2012.osm.gz", map, sizeof map);
	if (!r) {
		config_fini(&cfg);
		return;
	}
	char csv[4096];
	snprintf(csv, sizeof csv, "%s/reference/monaco-graphhopper-routes.csv", unit_shared_data());
	FILE *f = fopen(csv, "r");
	REQUIRE(f);
	char line[1024];
	int rows = 0;
	REQUIRE(fgets(line, sizeof line, f)); /* header */
	while (fgets(line, sizeof line, f)) {
		double lat1, lon1, lat2, lon2, want;
		const char *p = line;
		for (int c = 0; c < 3; c++)
			p = strchr(p, ',') + 1;
		if (sscanf(p, "%lf,%lf,%lf,%lf,%lf", &lat1, &lon1, &lat2, &lon2, &want) != 5)
			continue;
		struct route_result res;
		rh_err e = routing_route(r, lat1, lon1, lat2, lon2, true, &res);
		CHECK_EQ_INT(e, RH_OK);
		/* 3%, and 5 m for the routes of a few metres */
		double tol = want * 0.03 > 5 ? want * 0.03 : 5;
		if (!(fabs(res.distance_m - want) <= tol))
			unit_fail(__FILE__, __LINE__, "(%f,%f)->(%f,%f): %.1f m, GraphHopper %.1f m", lat1, lon1, lat2,
				  lon2, res.distance_m, want);
		CHECK(res.npoints >= 2);
		rows++;
	}
	fclose(f);
	CHECK(rows >= 10);
	routing_free(r);
	unlink(map);
	config_fini(&cfg);
}

static void random_point(const struct routing_stats *st, double *lat, double *lon)
{
	*lat = st->min_lat + rng_unit() * (st->max_lat - st->min_lat);
	*lon = st->min_lon + rng_unit() * (st->max_lon - st->min_lon);
}

static void fast_equals_dijkstra(const char *metric)
{
	struct rh_config cfg;
	char text[128];
	snprintf(text, sizeof text, "[routing]\nmetric = %s\nsnap_max_distance = 2000\n", metric);
	REQUIRE(defaults(&cfg, text));
	char map[256];
	struct routing *r = monaco(&cfg, "monaco-graphhopper-2012.osm.gz", map, sizeof map);
	if (!r) {
		config_fini(&cfg);
		return;
	}
	rng_state = unit_seed();
	struct routing_stats st;
	routing_get_stats(r, &st);
	int compared = 0;
	for (int i = 0; i < 2000; i++) {
		double a, b, c, d;
		random_point(&st, &a, &b);
		random_point(&st, &c, &d);
		struct route_result slow;
		rh_err e2 = routing_route_method(r, a, b, c, d, ROUTE_DIJKSTRA, false, &slow);
		bool failed = false;
		for (int m = 0; m < 2 && !failed; m++) {
			struct route_result fast;
			enum route_method method = m ? ROUTE_BIDIR : ROUTE_FAST;
			rh_err e1 = routing_route_method(r, a, b, c, d, method, m == 0, &fast);
			CHECK_EQ_INT(e1, e2);
			if (e1 != RH_OK)
				continue;
			double want = strcmp(metric, "time") == 0 ? slow.duration_s : slow.distance_m;
			double got = strcmp(metric, "time") == 0 ? fast.duration_s : fast.distance_m;
			if (!(fabs(want - got) <= 1e-6 * want + 0.01)) {
				unit_fail(__FILE__, __LINE__, "pair %d (%f,%f)->(%f,%f): %s %.3f, Dijkstra %.3f", i, a, b,
					  c, d, m ? "bidirectional" : "hierarchy", got, want);
				failed = true;
			}
			if (m == 0 && fast.npoints < 2) {
				unit_fail(__FILE__, __LINE__, "pair %d: no geometry", i);
				failed = true;
			}
		}
		if (failed)
			break;
		if (e2 == RH_OK)
			compared++;
	}
	CHECK(compared > 500);
	routing_free(r);
	unlink(map);
	config_fini(&cfg);
}

UNIT_TEST(routing_fast_equals_dijkstra_time) { fast_equals_dijkstra("time"); }
UNIT_TEST(routing_fast_equals_dijkstra_distance) { fast_equals_dijkstra("distance"); }

UNIT_TEST(routing_many_to_one_equals_single_queries)
{
	struct rh_config cfg;
	REQUIRE(defaults(&cfg, "[routing]\nsnap_max_distance = 2000\n"));
	char map[256];
	struct routing *r = monaco(&cfg, "monaco-graphhopper-2012.osm.gz", map, sizeof map);
	if (!r) {
		config_fini(&cfg);
		return;
	}
	rng_state = unit_seed() ^ 0x55;
	struct routing_stats st;
	routing_get_stats(r, &st);
	for (int round = 0; round < 50; round++) {
		double lat[16], lon[16], tl, tn;
		struct routing_eta eta[16];
		for (int i = 0; i < 16; i++)
			random_point(&st, &lat[i], &lon[i]);
		random_point(&st, &tl, &tn);
		rh_err e = routing_eta_many_to_one(r, lat, lon, 16, tl, tn, eta);
		struct route_result one;
		if (routing_route(r, lat[0], lon[0], tl, tn, false, &one) == RH_EINVAL && one.bad_point == ROUTE_POINT_TO) {
			CHECK_EQ_INT(e, RH_EINVAL);
			continue;
		}
		REQUIRE(e == RH_OK);
		for (int i = 0; i < 16; i++) {
			rh_err e1 = routing_route(r, lat[i], lon[i], tl, tn, false, &one);
			CHECK_EQ_INT(eta[i].reachable, e1 == RH_OK);
			if (e1 == RH_OK) {
				CHECK_NEAR(eta[i].duration_s, one.duration_s, 0.01 + one.duration_s * 1e-6);
				CHECK_NEAR(eta[i].distance_m, one.distance_m, 1 + one.distance_m * 0.05);
			}
		}
	}
	routing_free(r);
	unlink(map);
	config_fini(&cfg);
}

UNIT_TEST(routing_off_map_names_the_point)
{
	struct rh_config cfg;
	REQUIRE(defaults(&cfg, ""));
	char map[256];
	struct routing *r = monaco(&cfg, "monaco-graphhopper-2012.osm.gz", map, sizeof map);
	if (!r) {
		config_fini(&cfg);
		return;
	}
	struct route_result res;
	CHECK_EQ_INT(routing_route(r, 43.7307, 7.4213, 48.85, 2.35, false, &res), RH_EINVAL);
	CHECK_EQ_INT(res.bad_point, ROUTE_POINT_TO);
	CHECK_EQ_INT(routing_route(r, 0, 0, 43.7307, 7.4213, false, &res), RH_EINVAL);
	CHECK_EQ_INT(res.bad_point, ROUTE_POINT_FROM);
	/* the sea south of the harbour: on the map's box, far from roads */
	CHECK_EQ_INT(routing_route(r, 43.70, 7.425, 43.7307, 7.4213, false, &res), RH_EINVAL);
	CHECK_EQ_INT(routing_route(NULL, 43.7307, 7.4213, 43.7307, 7.4213, false, &res), RH_EAGAIN);
	CHECK(!routing_loaded(NULL));
	routing_free(r);
	unlink(map);
	config_fini(&cfg);
}

UNIT_TEST(routing_damaged_map_is_refused)
{
	struct rh_config cfg;
	REQUIRE(defaults(&cfg, ""));
	char map[256];
	struct routing *r = monaco(&cfg, "monaco-graphhopper-2012.osm.gz", map, sizeof map);
	if (!r) {
		config_fini(&cfg);
		return;
	}
	routing_free(r);
	FILE *f = fopen(map, "rb");
	REQUIRE(f);
	static uint8_t buf[1 << 20];
	size_t n = fread(buf, 1, sizeof buf, f);
	fclose(f);
	char err[256];
	struct routing *bad = (struct routing *)1;
	CHECK_EQ_INT(routing_load_buffer(buf, n, &cfg.routing, &bad, err, sizeof err), RH_OK);
	routing_free(bad);
	CHECK_EQ_INT(routing_load_buffer(buf, n - 1, &cfg.routing, &bad, err, sizeof err), RH_EINVAL);
	CHECK(bad == NULL);
	CHECK(strstr(err, "truncated") != NULL);
	buf[n / 2] ^= 1;
	CHECK_EQ_INT(routing_load_buffer(buf, n, &cfg.routing, &bad, err, sizeof err), RH_EINVAL);
	CHECK(strstr(err, "corrupt") != NULL);
	CHECK_EQ_INT(routing_load_buffer(buf, 10, &cfg.routing, &bad, err, sizeof err), RH_EINVAL);
	CHECK_EQ_INT(routing_load("/nonexistent/x.map", &cfg.routing, &bad, err, sizeof err), RH_EIO);
	unlink(map);
	config_fini(&cfg);
}

/* The car rules on a hand-made square (no shared data needed): 1-2 two-way
 * with maxspeed 36, 2->3 oneway=yes, 3->4 from a way drawn 4,3 with
 * oneway=-1, 4->1 a roundabout drawn 4,1; a private diagonal 1-3 and a
 * footway 2-4 that cars may not use. Sides are 111.3 m (at the equator). */
UNIT_TEST(routing_car_rules_on_a_square)
{
	static const char osm[] =
		"<?xml version=\"1.0\"?>\n<osm version=\"0.6\">\n"
		" <node id=\"1\" lat=\"0\" lon=\"0\"/>\n <node id=\"2\" lat=\"0.001\" lon=\"0\"/>\n"
		" <node id=\"3\" lat=\"0.001\" lon=\"0.001\"/>\n <node id=\"4\" lat=\"0\" lon=\"0.001\"/>\n"
		" <way id=\"10\"><nd ref=\"1\"/><nd ref=\"2\"/><tag k=\"highway\" v=\"residential\"/><tag k=\"maxspeed\" v=\"36\"/></way>\n"
		" <way id=\"11\"><nd ref=\"2\"/><nd ref=\"3\"/><tag k=\"highway\" v=\"residential\"/><tag k=\"oneway\" v=\"yes\"/></way>\n"
		" <way id=\"12\"><nd ref=\"4\"/><nd ref=\"3\"/><tag k=\"highway\" v=\"tertiary\"/><tag k=\"oneway\" v=\"-1\"/></way>\n"
		" <way id=\"13\"><nd ref=\"4\"/><nd ref=\"1\"/><tag k=\"highway\" v=\"primary\"/><tag k=\"junction\" v=\"roundabout\"/></way>\n"
		" <way id=\"14\"><nd ref=\"1\"/><nd ref=\"3\"/><tag k=\"highway\" v=\"service\"/><tag k=\"access\" v=\"private\"/></way>\n"
		" <way id=\"15\"><nd ref=\"2\"/><nd ref=\"4\"/><tag k=\"highway\" v=\"footway\"/></way>\n"
		"</osm>\n";
	char osm_path[128], map[128], err[512];
	snprintf(osm_path, sizeof osm_path, "/tmp/ridehail-unit-square-%d.osm", (int)getpid());
	snprintf(map, sizeof map, "/tmp/ridehail-unit-square-%d.map", (int)getpid());
	FILE *f = fopen(osm_path, "w");
	REQUIRE(f);
	fputs(osm, f);
	fclose(f);
	struct rh_config cfg;
	REQUIRE(defaults(&cfg, ""));
	struct routing_stats st;
	rh_err e = routing_import(osm_path, &cfg.routing, map, &st, err, sizeof err);
	unlink(osm_path);
	if (e != RH_OK)
		unit_fail(__FILE__, __LINE__, "import: %s", err);
	REQUIRE(e == RH_OK);
	CHECK_EQ_INT(st.nodes, 4);
	CHECK_EQ_INT(st.edges, 5); /* 1<->2, 2->3, 3->4, 4->1 */
	struct routing *r = NULL;
	REQUIRE(routing_load(map, &cfg.routing, &r, err, sizeof err) == RH_OK);
	const double side = 110.6; /* one side, WGS 84 at the equator: 110.57 m north-south, 111.32 east-west */
	static const struct {
		double lat1, lon1, lat2, lon2, sides;
	} cases[] = {
		{ 0.001, 0, 0, 0, 1 },         /* 2 -> 1: two-way */
		{ 0, 0, 0.001, 0, 1 },         /* 1 -> 2 */
		{ 0, 0, 0, 0.001, 3 },         /* 1 -> 4: the roundabout runs 4 -> 1 only */
		{ 0.001, 0.001, 0, 0.001, 1 }, /* 3 -> 4: oneway=-1 on a way drawn 4,3 */
		{ 0, 0.001, 0.001, 0.001, 3 }, /* 4 -> 3: the long way round */
		{ 0, 0, 0.001, 0.001, 2 },     /* 1 -> 3: not through the private diagonal */
		{ 0.001, 0, 0, 0.001, 2 },     /* 2 -> 4: not along the footway */
	};
	for (size_t i = 0; i < RH_ARRAY_LEN(cases); i++) {
		struct route_result res;
		REQUIRE(routing_route(r, cases[i].lat1, cases[i].lon1, cases[i].lat2, cases[i].lon2, true, &res) == RH_OK);
		CHECK_NEAR(res.distance_m, cases[i].sides * side, cases[i].sides * 1.0);
		/* the snapped ends, and the corners between (a node may also be its own snapped end) */
		CHECK(res.npoints >= (size_t)cases[i].sides + 1 && res.npoints <= (size_t)cases[i].sides + 3);
		CHECK_NEAR(res.coords[0], cases[i].lon1, 1e-9);
		CHECK_NEAR(res.coords[2 * res.npoints - 1], cases[i].lat2, 1e-9);
	}
	struct route_result res;
	REQUIRE(routing_route(r, 0.001, 0, 0, 0, false, &res) == RH_OK);
	CHECK_NEAR(res.duration_s, 11.06, 0.05); /* maxspeed 36 km/h = 10 m/s */
	/* half-way along the oneway 2->3, and back: the long way round */
	REQUIRE(routing_route(r, 0.001, 0.0007, 0.001, 0.0003, false, &res) == RH_OK);
	CHECK_NEAR(res.distance_m, 0.6 * 111.3 + 3 * side, 3.0);
	routing_free(r);
	unlink(map);
	config_fini(&cfg);
}

/* The snapping grid finds what a scan of every segment finds: random points
 * over the map and a margin around it, near and far from roads. */
UNIT_TEST(routing_snap_grid_equals_brute_force)
{
	struct rh_config cfg;
	REQUIRE(defaults(&cfg, "[routing]\nsnap_max_distance = 150\n"));
	char map[256];
	struct routing *r = monaco(&cfg, "monaco-graphhopper-2012.osm.gz", map, sizeof map);
	if (!r) {
		config_fini(&cfg);
		return;
	}
	rng_state = unit_seed() ^ 0x5a5a;
	struct routing_stats st;
	routing_get_stats(r, &st);
	int found = 0;
	for (int i = 0; i < 3000; i++) {
		double lat = st.min_lat - 0.003 + rng_unit() * (st.max_lat - st.min_lat + 0.006);
		double lon = st.min_lon - 0.003 + rng_unit() * (st.max_lon - st.min_lon + 0.006);
		double a = -1, b = -1;
		rh_err ea = routing_nearest_road(r, lat, lon, false, &a);
		rh_err eb = routing_nearest_road(r, lat, lon, true, &b);
		CHECK_EQ_INT(ea, eb);
		if (ea == RH_OK) {
			found++;
			if (!(fabs(a - b) < 1e-6)) {
				unit_fail(__FILE__, __LINE__, "(%f, %f): grid %.6f m, scan %.6f m", lat, lon, a, b);
				break;
			}
		}
	}
	CHECK(found > 500);
	routing_free(r);
	unlink(map);
	config_fini(&cfg);
}

/* Every turn restriction of the Midtown Manhattan extract that the import
 * honours is walked: what it forbids is routed with each method (the
 * hierarchy, bidirectional and plain Dijkstra) and no route drives it. The
 * import must honour most of the extract's car restrictions (160 of 246
 * relations on the 2025 extract; the rest are conditional, for other
 * vehicles or off the kept roads). */
UNIT_TEST(routing_midtown_restrictions_never_taken)
{
	struct rh_config cfg;
	REQUIRE(defaults(&cfg, ""));
	char map[256];
	struct routing *r = monaco(&cfg, "nyc-midtown-2025.osm.pbf", map, sizeof map);
	if (!r) {
		config_fini(&cfg);
		return;
	}
	size_t n = routing_restriction_count(r);
	CHECK(n >= 150);
	size_t tried_all = 0, taken_all = 0;
	for (int m = 0; m < 3; m++)
		for (size_t i = 0; i < n; i++) {
			size_t tried, taken;
			REQUIRE(routing_restriction_taken(r, i, (enum route_method)m, &tried, &taken) == RH_OK);
			if (taken) {
				struct routing_restriction rr;
				REQUIRE(routing_restriction_get(r, i, &rr));
				unit_fail(__FILE__, __LINE__, "method %d drives restriction relation %lld", m, rr.osm_id);
			}
			tried_all += tried, taken_all += taken;
		}
	CHECK_EQ_INT(taken_all, 0);
	CHECK(tried_all >= 3 * n);
	routing_free(r);
	unlink(map);
	config_fini(&cfg);
}

/* Many-to-many (and many-to-one) answer what single routes answer, on the
 * turn graph: the ends of Midtown's restrictions (where turns matter) and
 * random points. */
UNIT_TEST(routing_many_to_many_equals_single_queries)
{
	struct rh_config cfg;
	REQUIRE(defaults(&cfg, ""));
	char map[256];
	struct routing *r = monaco(&cfg, "nyc-midtown-2025.osm.pbf", map, sizeof map);
	if (!r) {
		config_fini(&cfg);
		return;
	}
	rng_state = unit_seed() ^ 0x77;
	struct routing_stats st;
	routing_get_stats(r, &st);
	enum { NS = 6, ND = 5 };
	size_t nr = routing_restriction_count(r);
	for (int round = 0; round < 20; round++) {
		double slat[NS], slon[NS], tlat[ND], tlon[ND];
		for (int i = 0; i < NS; i++) {
			struct routing_restriction rr;
			if (i < 3 && nr && routing_restriction_get(r, (size_t)(rng_next() % nr), &rr)) {
				slat[i] = rr.lat[0] + 0.6 * (rr.lat[1] - rr.lat[0]);
				slon[i] = rr.lon[0] + 0.6 * (rr.lon[1] - rr.lon[0]);
			} else {
				random_point(&st, &slat[i], &slon[i]);
			}
		}
		for (int j = 0; j < ND; j++) {
			struct routing_restriction rr;
			if (j < 3 && nr && routing_restriction_get(r, (size_t)(rng_next() % nr), &rr)) {
				size_t k = rr.npoints - 1;
				tlat[j] = rr.lat[k - 1] + 0.6 * (rr.lat[k] - rr.lat[k - 1]);
				tlon[j] = rr.lon[k - 1] + 0.6 * (rr.lon[k] - rr.lon[k - 1]);
			} else {
				random_point(&st, &tlat[j], &tlon[j]);
			}
		}
		struct routing_eta mm[NS * ND], mo[NS];
		REQUIRE(routing_eta_many_to_many(r, slat, slon, NS, tlat, tlon, ND, 0, mm) == RH_OK);
		for (int j = 0; j < ND; j++) {
			rh_err eo = routing_eta_many_to_one_at(r, slat, slon, NS, tlat[j], tlon[j], 0, mo);
			for (int i = 0; i < NS; i++) {
				struct route_result one;
				rh_err e1 = routing_route_at(r, slat[i], slon[i], tlat[j], tlon[j], ROUTE_DIJKSTRA, false, 0, &one);
				CHECK_EQ_INT(mm[i * ND + j].reachable, e1 == RH_OK);
				if (eo == RH_OK)
					CHECK_EQ_INT(mo[i].reachable, e1 == RH_OK);
				if (e1 != RH_OK)
					continue;
				CHECK_NEAR(mm[i * ND + j].duration_s, one.duration_s, 0.01 + one.duration_s * 1e-6);
				CHECK_NEAR(mm[i * ND + j].distance_m, one.distance_m, 1 + one.distance_m * 0.05);
				if (eo == RH_OK)
					CHECK_NEAR(mo[i].duration_s, one.duration_s, 0.01 + one.duration_s * 1e-6);
			}
		}
	}
	routing_free(r);
	unlink(map);
	config_fini(&cfg);
}

/* Writes osm text to a temporary file, imports and loads it. */
static struct routing *import_text(struct rh_config *cfg, const char *osm, char *map, size_t maplen,
				   struct routing_stats *st)
{
	char osm_path[128], err[512];
	snprintf(osm_path, sizeof osm_path, "/tmp/ridehail-unit-osm-%d.osm", (int)getpid());
	snprintf(map, maplen, "/tmp/ridehail-unit-osm-%d.map", (int)getpid());
	FILE *f = fopen(osm_path, "w");
	if (!f)
		return NULL;
	fputs(osm, f);
	fclose(f);
	rh_err e = routing_import(osm_path, &cfg->routing, map, st, err, sizeof err);
	unlink(osm_path);
	if (e != RH_OK) {
		unit_fail(__FILE__, __LINE__, "import: %s", err);
		return NULL;
	}
	struct routing *r = NULL;
	if (routing_load(map, &cfg->routing, &r, err, sizeof err) != RH_OK)
		unit_fail(__FILE__, __LINE__, "load: %s", err);
	return r;
}

/* The roads kept around the core: a two-way square 1-2-3-4 (the core), a
 * one-way road 10 -> 11 -> 1 into it (a start fringe: it reaches the core,
 * the core does not reach it), a one-way road 2 -> 21 -> 22 out of it (an
 * end fringe) and a one-way slip road 11 -> 30 -> 21 between the fringes,
 * neither reaching the core nor reached from it. Routes from the one fringe
 * to the other take the slip road, and a route into the core's corner 1
 * comes straight along the road into it; nothing starts on the slip road. */
UNIT_TEST(routing_fringes_joined_outside_the_core)
{
	static const char osm[] =
		"<?xml version=\"1.0\"?>\n<osm version=\"0.6\">\n"
		" <node id=\"1\" lat=\"0\" lon=\"0\"/>\n <node id=\"2\" lat=\"0.001\" lon=\"0\"/>\n"
		" <node id=\"3\" lat=\"0.001\" lon=\"0.001\"/>\n <node id=\"4\" lat=\"0\" lon=\"0.001\"/>\n"
		" <node id=\"10\" lat=\"0\" lon=\"-0.003\"/>\n <node id=\"11\" lat=\"0\" lon=\"-0.002\"/>\n"
		" <node id=\"21\" lat=\"0.001\" lon=\"-0.002\"/>\n <node id=\"22\" lat=\"0.001\" lon=\"-0.003\"/>\n"
		" <node id=\"30\" lat=\"0.0005\" lon=\"-0.002\"/>\n"
		" <way id=\"40\"><nd ref=\"1\"/><nd ref=\"2\"/><nd ref=\"3\"/><nd ref=\"4\"/><nd ref=\"1\"/>"
		"<tag k=\"highway\" v=\"residential\"/></way>\n"
		" <way id=\"41\"><nd ref=\"10\"/><nd ref=\"11\"/><nd ref=\"1\"/><tag k=\"highway\" v=\"residential\"/>"
		"<tag k=\"oneway\" v=\"yes\"/></way>\n"
		" <way id=\"42\"><nd ref=\"2\"/><nd ref=\"21\"/><nd ref=\"22\"/><tag k=\"highway\" v=\"residential\"/>"
		"<tag k=\"oneway\" v=\"yes\"/></way>\n"
		" <way id=\"43\"><nd ref=\"11\"/><nd ref=\"30\"/><nd ref=\"21\"/><tag k=\"highway\" v=\"residential\"/>"
		"<tag k=\"oneway\" v=\"yes\"/></way>\n"
		"</osm>\n";
	struct rh_config cfg;
	REQUIRE(defaults(&cfg, "[routing]\nmetric = distance\n"));
	char map[128];
	struct routing_stats st;
	struct routing *r = import_text(&cfg, osm, map, sizeof map, &st);
	REQUIRE(r);
	CHECK_EQ_INT(st.nodes, 9); /* the slip road's middle node is kept */
	const double ew = 111.3, ns = 110.6; /* a 0.001-degree step east-west, north-south */
	for (int m = 0; m < 3; m++) {
		struct route_result res;
		/* 10 -> 22: 10, 11, 30, 21, 22, not on into the core and out again */
		REQUIRE(routing_route_method(r, 0, -0.003, 0.001, -0.003, (enum route_method)m, true, &res) == RH_OK);
		CHECK_NEAR(res.distance_m, ew + ns + ew, 1.0);
		CHECK_EQ_INT(res.npoints, 5);
		/* 11 -> 21: the slip road alone */
		REQUIRE(routing_route_method(r, 0, -0.002, 0.001, -0.002, (enum route_method)m, false, &res) == RH_OK);
		CHECK_NEAR(res.distance_m, ns, 0.5);
		/* 10 -> the corner 1: straight along the road into it */
		REQUIRE(routing_route_method(r, 0, -0.003, 0, 0, (enum route_method)m, false, &res) == RH_OK);
		CHECK_NEAR(res.distance_m, 3 * ew, 1.0);
		/* the corner 2 -> 22: straight along the road out of it */
		REQUIRE(routing_route_method(r, 0.001, 0, 0.001, -0.003, (enum route_method)m, false, &res) == RH_OK);
		CHECK_NEAR(res.distance_m, 3 * ew, 1.0);
	}
	/* a start on the slip road snaps to a road a route may start on (11's) */
	struct route_result res;
	REQUIRE(routing_route(r, 0.0005, -0.002, 0.001, 0.001, false, &res) == RH_OK);
	CHECK_NEAR(res.from_snap_m, ns / 2, 0.5);
	routing_free(r);
	unlink(map);
	config_fini(&cfg);
}

/* A crossing of two two-way streets, centre 5, arms 1 (south), 2 (east),
 * 3 (north), 4 (west), 111 m each, joined at their ends into a ring road
 * through corners 6..9 so every turn has a detour: no_left_turn from the
 * south arm onto the west arm (via node 5), only_straight_on from the east
 * arm (via node 5), a conditional restriction (not modelled), and
 * no_straight_on from the ring via the whole south arm onto the north arm. */
UNIT_TEST(routing_restrictions_on_a_crossing)
{
	static const char osm[] =
		"<?xml version=\"1.0\"?>\n<osm version=\"0.6\">\n"
		" <node id=\"5\" lat=\"0\" lon=\"0\"/>\n"
		" <node id=\"1\" lat=\"-0.001\" lon=\"0\"/>\n <node id=\"2\" lat=\"0\" lon=\"0.001\"/>\n"
		" <node id=\"3\" lat=\"0.001\" lon=\"0\"/>\n <node id=\"4\" lat=\"0\" lon=\"-0.001\"/>\n"
		" <node id=\"6\" lat=\"-0.001\" lon=\"0.001\"/>\n <node id=\"7\" lat=\"0.001\" lon=\"0.001\"/>\n"
		" <node id=\"8\" lat=\"0.001\" lon=\"-0.001\"/>\n <node id=\"9\" lat=\"-0.001\" lon=\"-0.001\"/>\n"
		" <way id=\"21\"><nd ref=\"1\"/><nd ref=\"5\"/><tag k=\"highway\" v=\"residential\"/></way>\n"
		" <way id=\"22\"><nd ref=\"5\"/><nd ref=\"2\"/><tag k=\"highway\" v=\"residential\"/></way>\n"
		" <way id=\"23\"><nd ref=\"5\"/><nd ref=\"3\"/><tag k=\"highway\" v=\"residential\"/></way>\n"
		" <way id=\"24\"><nd ref=\"5\"/><nd ref=\"4\"/><tag k=\"highway\" v=\"residential\"/></way>\n"
		" <way id=\"30\"><nd ref=\"1\"/><nd ref=\"6\"/><nd ref=\"2\"/><nd ref=\"7\"/><nd ref=\"3\"/><nd ref=\"8\"/>"
		"<nd ref=\"4\"/><nd ref=\"9\"/><nd ref=\"1\"/><tag k=\"highway\" v=\"residential\"/></way>\n"
		" <relation id=\"40\"><member type=\"way\" ref=\"21\" role=\"from\"/><member type=\"node\" ref=\"5\" role=\"via\"/>"
		"<member type=\"way\" ref=\"24\" role=\"to\"/><tag k=\"type\" v=\"restriction\"/><tag k=\"restriction\" v=\"no_left_turn\"/></relation>\n"
		" <relation id=\"41\"><member type=\"way\" ref=\"22\" role=\"from\"/><member type=\"node\" ref=\"5\" role=\"via\"/>"
		"<member type=\"way\" ref=\"24\" role=\"to\"/><tag k=\"type\" v=\"restriction\"/><tag k=\"restriction\" v=\"only_straight_on\"/></relation>\n"
		" <relation id=\"42\"><member type=\"way\" ref=\"23\" role=\"from\"/><member type=\"node\" ref=\"5\" role=\"via\"/>"
		"<member type=\"way\" ref=\"22\" role=\"to\"/><tag k=\"type\" v=\"restriction\"/><tag k=\"restriction:conditional\" v=\"no_left_turn @ (Mo-Fr 07:00-10:00)\"/></relation>\n"
		" <relation id=\"43\"><member type=\"way\" ref=\"30\" role=\"from\"/><member type=\"way\" ref=\"21\" role=\"via\"/>"
		"<member type=\"way\" ref=\"23\" role=\"to\"/><tag k=\"type\" v=\"restriction\"/><tag k=\"restriction\" v=\"no_straight_on\"/></relation>\n"
		"</osm>\n";
	struct rh_config cfg;
	REQUIRE(defaults(&cfg, "[routing]\nmetric = distance\n"));
	char map[128];
	struct routing_stats st;
	struct routing *r = import_text(&cfg, osm, map, sizeof map, &st);
	REQUIRE(r);
	CHECK_EQ_INT(st.restrictions, 3);         /* 40, 41, 43 */
	CHECK_EQ_INT(st.restrictions_skipped, 1); /* 42: conditional */
	const double arm = 110.6, ring_side = 110.6;
	struct route_result res;
	/* south arm -> west arm: not left at 5 but on round the ring (1 -> 9 -> 4 from the arm's start) */
	REQUIRE(routing_route(r, -0.0005, 0, 0, -0.0005, true, &res) == RH_OK);
	CHECK(res.distance_m > 0.5 * arm + 0.5 * arm + 1); /* round the ring, or a u-turn at an arm's end */
	/* east arm -> north arm: only straight on (west) at 5 */
	REQUIRE(routing_route(r, 0, 0.0005, 0.0005, 0, true, &res) == RH_OK);
	CHECK(res.distance_m > 0.5 * arm + 0.5 * arm + 1);
	/* east arm -> west arm: straight on is allowed and short */
	REQUIRE(routing_route(r, 0, 0.0005, 0, -0.0005, true, &res) == RH_OK);
	CHECK_NEAR(res.distance_m, arm, 1.5);
	/* north arm -> east arm: the conditional restriction is not modelled: left at 5 */
	REQUIRE(routing_route(r, 0.0005, 0, 0, 0.0005, true, &res) == RH_OK);
	CHECK_NEAR(res.distance_m, arm, 1.5);
	/* via way: from the ring at 1 along the south arm (via 21) straight on to the north arm is forbidden */
	REQUIRE(routing_route(r, -0.001, -0.0005, 0.0005, 0, true, &res) == RH_OK);
	CHECK(res.distance_m > 0.5 * ring_side + arm + 0.5 * arm + 1);
	/* ... but from the south arm's own start (not from the ring) it is still one way on: from the middle of 21 */
	REQUIRE(routing_route(r, -0.0005, 0, 0.0005, 0, true, &res) == RH_OK);
	CHECK(res.distance_m > 0); /* a route exists */
	for (int m = 0; m < 3; m++)
		for (size_t i = 0; i < routing_restriction_count(r); i++) {
			size_t tried, taken;
			REQUIRE(routing_restriction_taken(r, i, (enum route_method)m, &tried, &taken) == RH_OK);
			CHECK(tried >= 1);
			CHECK_EQ_INT(taken, 0);
		}
	routing_free(r);
	unlink(map);
	config_fini(&cfg);
}

/* The batch window's pickup matrix (pricing_etas_many) with a map: each
 * pair is the road ETA a single many-to-one search gives; a pickup off the
 * roads falls back to the straight line at the average speed, for the pairs
 * asked only. */
UNIT_TEST(routing_pricing_etas_many_by_road_with_a_map)
{
	struct rh_config cfg;
	REQUIRE(defaults(&cfg, "[routing]\nsnap_max_distance = 2000\n"));
	char map[256];
	struct routing *r = monaco(&cfg, "monaco-graphhopper-2012.osm.gz", map, sizeof map);
	if (!r) {
		config_fini(&cfg);
		return;
	}
	struct rh_timers *timers = rh_timers_manual(0);
	struct metrics *metrics = metrics_new();
	struct pricing_deps pd = { .timers = timers, .metrics = metrics, .surge = &cfg.surge, .payments = &cfg.payments,
				   .routing = r, .cfg = &cfg.pricing, .tariffs = cfg.tariff, .ntariffs = cfg.ntariffs,
				   .jwt_secret = "unit-test-secret-unit-test-secret" };
	struct pricing *p = pricing_new(&pd);
	rng_state = unit_seed() ^ 0xe7a5;
	struct routing_stats st;
	routing_get_stats(r, &st);
	enum { NS = 12, ND = 5 };
	double lat[NS + ND], lon[NS + ND];
	for (int i = 0; i < NS + ND; i++)
		random_point(&st, &lat[i], &lon[i]);
	lat[NS + ND - 1] = 43.70; /* the sea south of the harbour: no road near */
	lon[NS + ND - 1] = 7.425;
	uint8_t want[NS * ND];
	double eta[NS * ND], road[NS * ND];
	for (int x = 0; x < NS * ND; x++) {
		want[x] = (uint8_t)(x % 3 != 0);
		eta[x] = road[x] = -7; /* untouched */
	}
	pricing_etas_many(p, lat, lon, NS, lat + NS, lon + NS, ND, want, 1700000000, eta, road);
	int by_road = 0;
	for (int j = 0; j < ND - 1; j++) {
		struct routing_eta one[NS];
		if (routing_eta_many_to_one_at(r, lat, lon, NS, lat[NS + j], lon[NS + j], 1700000000, one) != RH_OK)
			continue; /* (a random pickup off the roads: the sea case below) */
		for (int i = 0; i < NS; i++) {
			if (!want[i * ND + j] || !one[i].reachable)
				continue;
			CHECK_NEAR(eta[i * ND + j], one[i].duration_s, 0.5 + one[i].duration_s * 0.01);
			CHECK_NEAR(road[i * ND + j], one[i].distance_m, 1 + one[i].distance_m * 0.05);
			by_road++;
		}
	}
	CHECK(by_road >= 10);
	/* off the roads: the straight line x detour at the average speed, asked pairs only */
	for (int i = 0; i < NS; i++) {
		double *e = &eta[i * ND + ND - 1], *m = &road[i * ND + ND - 1];
		if (!want[i * ND + ND - 1]) {
			CHECK(*e < 0 && *m < 0); /* the router's "no road": no line drawn for it */
			continue;
		}
		double d = geo_dist_haversine_m(lat[i], lon[i], lat[NS + ND - 1], lon[NS + ND - 1]) *
			   cfg.pricing.detour_factor;
		CHECK_NEAR(*m, d, 0.01);
		CHECK_NEAR(*e, d / (cfg.pricing.average_speed_kmh / 3.6), 0.01);
	}
	pricing_free(p);
	metrics_free(metrics);
	rh_timers_free(timers);
	routing_free(r);
	unlink(map);
	config_fini(&cfg);
}
