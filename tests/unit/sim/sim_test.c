/* The simulator's pure parts: demand CSV parsing (columns, the box, the
 * window, time compression), the demand models, movement along a path and
 * along the road graph, and the report's arithmetic on a hand-checked run. */
#include "sim/sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/settings.h"
#include "routing/routing.h"

#include "../unit.h"

static const struct sim_bbox midtown = { 40.7360, -74.0140, 40.7590, -73.9630 };

UNIT_TEST(sim_parse_time_formats)
{
	int64_t t;
	REQUIRE(sim_parse_time("2014/4/30 18:05:00", &t));
	CHECK_EQ_INT(t, 1398881100);
	REQUIRE(sim_parse_time("2014-04-30 18:05:00", &t));
	CHECK_EQ_INT(t, 1398881100);
	REQUIRE(sim_parse_time("2014-04-30T18:05:00", &t));
	CHECK_EQ_INT(t, 1398881100);
	REQUIRE(sim_parse_time("125.5", &t));
	CHECK_EQ_INT(t, 125);
	CHECK(!sim_parse_time("2014/13/30 18:05:00", &t));
	CHECK(!sim_parse_time("yesterday", &t));
	CHECK(!sim_parse_time("2014/4/30", &t) || t == 1398816000);
}

UNIT_TEST(sim_bbox_parse_shrink_clamp)
{
	struct sim_bbox b;
	REQUIRE(sim_bbox_parse("-74.0140,40.7360,-73.9630,40.7590", &b));
	CHECK_NEAR(b.min_lat, 40.7360, 1e-9);
	CHECK_NEAR(b.max_lon, -73.9630, 1e-9);
	CHECK(!sim_bbox_parse("-73.9630,40.7360,-74.0140,40.7590", &b)); /* min > max */
	CHECK(!sim_bbox_parse("1,2,3", &b));
	struct sim_bbox in = sim_bbox_shrink(midtown, 200);
	CHECK_NEAR(sim_dist_m(midtown.min_lat, -74.0, in.min_lat, -74.0), 200, 0.5);
	CHECK_NEAR(sim_dist_m(40.75, midtown.min_lon, 40.75, in.min_lon), 200, 2);
	double lat = 40.70, lon = -73.99;
	sim_bbox_clamp(&in, &lat, &lon);
	CHECK_NEAR(lat, in.min_lat, 1e-12);
	CHECK_NEAR(lon, -73.99, 1e-12);
}

/* Uber's columns: the box drops rows, the window drops rows, and time is
 * compressed: CSV seconds / compress = simulated seconds. */
UNIT_TEST(sim_demand_csv_box_window_compression)
{
	static const char csv[] =
		"Date/Time,Lat,Lon,Base\n"
		"2014/4/30 17:59:00,40.7500,-73.9900,B02512\n" /* before the window */
		"2014/4/30 18:10:00,40.7500,-73.9900,B02512\n"
		"2014/4/30 18:00:00,40.7400,-74.0000,B02512\n"
		"2014/4/30 18:30:00,40.7700,-73.9900,B02512\n" /* north of the box */
		"2014/4/30 18:30:00,40.7450,-73.9500,B02512\n" /* east of the box */
		"2014/4/30 18:59:59,40.7580,-73.9700,B02512\n"
		"2014/4/30 19:00:00,40.7500,-73.9900,B02512\n" /* the window is [18:00, 19:00) */
		"2014/4/30 18:20:00,not-a-number,-73.99,B02512\r\n"
		"2014/4/30 18:40:00,40.7501,-73.9901,B02512\r\n";
	struct sim_demand d;
	sim_demand_init(&d);
	struct sim_replay_opts o = { .box = midtown, .use_box = true, .window_s = 3600, .compress = 6, .need_time = true };
	REQUIRE(sim_parse_time("2014/4/30 18:00:00", &o.start));
	char err[256];
	REQUIRE(sim_demand_parse_csv(csv, sizeof csv - 1, &o, &d, err, sizeof err) == RH_OK);
	CHECK_EQ_INT(d.rows_read, 9);
	CHECK_EQ_INT(d.rows_outside, 2);
	CHECK_EQ_INT(d.rows_outside_window, 2);
	CHECK_EQ_INT(d.rows_bad, 1);
	REQUIRE(d.n == 4);
	/* sorted by time: 18:00, 18:10, 18:40, 18:59:59, each / 6 */
	CHECK_NEAR(d.req[0].t_s, 0, 1e-9);
	CHECK_NEAR(d.req[0].plat, 40.74, 1e-9);
	CHECK_NEAR(d.req[1].t_s, 600.0 / 6, 1e-9);
	CHECK_NEAR(d.req[2].t_s, 2400.0 / 6, 1e-9);
	CHECK_NEAR(d.req[2].plon, -73.9901, 1e-9);
	CHECK_NEAR(d.req[3].t_s, 3599.0 / 6, 1e-9);
	CHECK(!d.req[0].has_dropoff);
	CHECK_EQ_INT(d.window_start, 1398880800);
	sim_demand_fini(&d);

	/* no start given: the first kept row starts the clock */
	sim_demand_init(&d);
	o.start = -1;
	o.window_s = 0;
	o.compress = 1;
	REQUIRE(sim_demand_parse_csv(csv, sizeof csv - 1, &o, &d, err, sizeof err) == RH_OK);
	REQUIRE(d.n == 6);
	CHECK_NEAR(d.req[0].t_s, 0, 1e-9);      /* 17:59 */
	CHECK_NEAR(d.req[5].t_s, 3660, 1e-9);   /* 19:00 */
	sim_demand_fini(&d);
}

UNIT_TEST(sim_demand_csv_od_pairs_and_missing_columns)
{
	static const char od[] =
		"obs_id,train_id,duration,day,hour,minute,weekday,pickup_longitude,pickup_latitude,dropoff_longitude,"
		"dropoff_latitude,trip_distance\n"
		"id_1,train,1183,5,10,48,5,-73.99,40.75,-73.98,40.745,2.1\n"
		"id_2,train,629,12,14,22,5,-73.99,40.75,-73.90,40.80,0.8\n"; /* dropoff outside: kept without it */
	struct sim_demand d;
	sim_demand_init(&d);
	struct sim_replay_opts o = { .box = midtown, .use_box = true, .start = -1, .compress = 1, .need_time = false };
	char err[256];
	REQUIRE(sim_demand_parse_csv(od, sizeof od - 1, &o, &d, err, sizeof err) == RH_OK);
	REQUIRE(d.n == 2);
	int with = d.req[0].has_dropoff + d.req[1].has_dropoff;
	CHECK_EQ_INT(with, 1);
	/* fill: a pickup near the first pair's origin gets that pair's destination */
	struct sim_demand q;
	sim_demand_init(&q);
	sim_demand_add(&q, &(struct sim_request){ .t_s = 1, .plat = 40.7501, .plon = -73.9899 });
	struct sim_rng r;
	sim_rng_seed(&r, 7, 0);
	sim_demand_fill_dropoffs(&q, &d, &r);
	CHECK(q.req[0].has_dropoff);
	CHECK_NEAR(q.req[0].dlat, 40.745, 1e-9);
	CHECK_NEAR(q.req[0].dlon, -73.98, 1e-9);
	sim_demand_fini(&q);
	sim_demand_fini(&d);

	sim_demand_init(&d);
	o.need_time = true;
	CHECK(sim_demand_parse_csv(od, sizeof od - 1, &o, &d, err, sizeof err) == RH_EINVAL); /* no time column */
	CHECK(strstr(err, "time") != NULL);
	static const char nolat[] = "time,x,y\n1,2,3\n";
	CHECK(sim_demand_parse_csv(nolat, sizeof nolat - 1, &o, &d, err, sizeof err) == RH_EINVAL);
	sim_demand_fini(&d);
}

/* The real file: the busiest hour in the Midtown box has 95 pickups. */
UNIT_TEST(sim_demand_uber_busiest_hour)
{
	const char *data = unit_shared_data();
	if (!data) {
		unit_skip("../shared/data is absent: the Uber replay check skipped");
		return;
	}
	char path[4096], err[256];
	snprintf(path, sizeof path, "%s/trips/uber-nyc-pickups-apr14-first65k.csv", data);
	if (access(path, R_OK) != 0) {
		unit_skip("uber-nyc-pickups-apr14-first65k.csv is absent: skipped");
		return;
	}
	struct sim_demand d;
	sim_demand_init(&d);
	struct sim_replay_opts o = { .box = midtown, .use_box = true, .window_s = 3600, .compress = 10, .need_time = true };
	REQUIRE(sim_parse_time("2014-04-30 18:00:00", &o.start));
	REQUIRE(sim_demand_load_csv(path, &o, &d, err, sizeof err) == RH_OK);
	CHECK_EQ_INT(d.n, 95);
	CHECK_EQ_INT(d.rows_read, 65535);
	REQUIRE(d.n > 0);
	CHECK(d.req[d.n - 1].t_s < 360.0); /* an hour in six minutes */
	for (size_t i = 1; i < d.n; i++)
		CHECK(d.req[i].t_s >= d.req[i - 1].t_s);
	sim_demand_fini(&d);
}

UNIT_TEST(sim_demand_models_deterministic)
{
	struct sim_bbox in = sim_bbox_shrink(midtown, 200);
	struct sim_demand a, b;
	sim_demand_init(&a);
	sim_demand_init(&b);
	struct sim_rng ra, rb;
	sim_rng_seed(&ra, 42, 0);
	sim_rng_seed(&rb, 42, 0);
	sim_demand_hotspots(&a, &ra, &in, 3600, 600, 3, 300);
	sim_demand_hotspots(&b, &rb, &in, 3600, 600, 3, 300);
	REQUIRE(a.n == b.n);
	CHECK(a.n > 450 && a.n < 750); /* Poisson, mean 600 */
	CHECK(memcmp(a.req, b.req, a.n * sizeof *a.req) == 0);
	for (size_t i = 0; i < a.n; i++) {
		CHECK(sim_bbox_contains(&in, a.req[i].plat, a.req[i].plon));
		CHECK(a.req[i].t_s >= 0 && a.req[i].t_s < 3600);
	}
	size_t n0 = a.n;
	sim_demand_multiply(&a, &ra, 10, 30, 100);
	CHECK_EQ_INT(a.n, n0 * 10);
	for (size_t i = 1; i < a.n; i++)
		CHECK(a.req[i].t_s >= a.req[i - 1].t_s);
	sim_demand_fini(&a);
	sim_demand_fini(&b);
	sim_demand_init(&a);
	sim_rng_seed(&ra, 1, 0);
	sim_demand_uniform(&a, &ra, &in, 600, 0);
	CHECK_EQ_INT(a.n, 0);
	sim_demand_fini(&a);
}

UNIT_TEST(sim_path_walk)
{
	struct sim_path p;
	sim_path_init(&p);
	/* an L: 0.001 deg north (~111 m), then east */
	sim_path_add(&p, 40.750, -73.990);
	sim_path_add(&p, 40.751, -73.990);
	sim_path_add(&p, 40.751, -73.989);
	double leg1 = sim_dist_m(40.750, -73.990, 40.751, -73.990), leg2 = sim_dist_m(40.751, -73.990, 40.751, -73.989);
	CHECK_NEAR(leg1, 111.2, 0.3);
	CHECK_NEAR(sim_path_length(&p), leg1 + leg2, 1e-9);
	double lat, lon, h;
	sim_path_at(&p, leg1 / 2, &lat, &lon, &h);
	CHECK_NEAR(lat, 40.7505, 1e-9);
	CHECK_NEAR(lon, -73.990, 1e-12);
	CHECK_NEAR(h, 0, 1e-6);
	sim_path_at(&p, leg1 + leg2 / 2, &lat, &lon, &h);
	CHECK_NEAR(lat, 40.751, 1e-9);
	CHECK_NEAR(lon, -73.9895, 1e-9);
	CHECK_NEAR(h, 90, 0.01);
	sim_path_at(&p, -5, &lat, &lon, &h); /* clamped */
	CHECK_NEAR(lat, 40.750, 1e-12);
	sim_path_at(&p, 1e9, &lat, &lon, &h);
	CHECK_NEAR(lon, -73.989, 1e-12);
	sim_path_clear(&p);
	CHECK_NEAR(sim_path_length(&p), 0, 0);
	sim_path_fini(&p);
}

/* Along the roads: a route's geometry (the road nodes the route runs
 * through) walked in 5 m steps: each step lies on the segment between the
 * two road nodes around it, every node is passed exactly and in order, the
 * walk is as long as the route, and it ends at the snapped destination. */
UNIT_TEST(sim_movement_along_the_graph)
{
	const char *data = unit_shared_data();
	if (!data) {
		unit_skip("../shared/data is absent: movement along West Oakland's roads skipped");
		return;
	}
	char osm[4096], map[256], err[512];
	snprintf(osm, sizeof osm, "%s/osm/west-oakland.osm.bz2", data);
	if (access(osm, R_OK) != 0) {
		unit_skip("west-oakland.osm.bz2 is absent: skipped");
		return;
	}
	struct rh_config cfg;
	struct cfg_errors errs;
	static char *const no_env[] = { NULL };
	REQUIRE(config_load_buffer(&cfg, "test.conf", "", no_env, &errs) == RH_OK);
	snprintf(map, sizeof map, "/tmp/ridehail-sim-unit-%d.map", (int)getpid());
	struct routing *r = NULL;
	if (routing_import(osm, &cfg.routing, map, NULL, err, sizeof err) != RH_OK ||
	    routing_load(map, &cfg.routing, &r, err, sizeof err) != RH_OK) {
		unit_fail(__FILE__, __LINE__, "map: %s", err);
		unlink(map);
		config_fini(&cfg);
		return;
	}
	unlink(map);
	struct routing_stats st;
	routing_get_stats(r, &st);
	struct sim_rng rng;
	sim_rng_seed(&rng, unit_seed(), 3);
	int routes = 0;
	for (int k = 0; k < 40 && routes < 10; k++) {
		double a_lat = sim_rng_range(&rng, st.min_lat, st.max_lat), a_lon = sim_rng_range(&rng, st.min_lon, st.max_lon);
		double b_lat = sim_rng_range(&rng, st.min_lat, st.max_lat), b_lon = sim_rng_range(&rng, st.min_lon, st.max_lon);
		struct route_result res;
		if (routing_route(r, a_lat, a_lon, b_lat, b_lon, true, &res) != RH_OK || res.npoints < 2 || res.distance_m < 100)
			continue;
		routes++;
		struct sim_path p;
		sim_path_init(&p);
		for (size_t i = 0; i < res.npoints; i++)
			sim_path_add(&p, res.coords[2 * i + 1], res.coords[2 * i]);
		CHECK_NEAR(sim_path_length(&p), res.distance_m, res.distance_m * 0.01 + 1);
		size_t seg = 0;
		for (double d = 0; d <= sim_path_length(&p); d += 5) {
			double lat, lon, h;
			sim_path_at(&p, d, &lat, &lon, &h);
			while (seg + 2 < p.n && p.cum[seg + 1] < d)
				seg++;
			/* on the segment: the two legs add up to the segment's length */
			double a = sim_dist_m(p.lat[seg], p.lon[seg], lat, lon), b = sim_dist_m(lat, lon, p.lat[seg + 1], p.lon[seg + 1]);
			double len = p.cum[seg + 1] - p.cum[seg];
			if (fabs(a + b - len) > 0.05 || fabs(a - (d - p.cum[seg])) > 0.05) {
				unit_fail(__FILE__, __LINE__, "%.0f m along: off the segment (%.3f + %.3f vs %.3f)", d, a, b, len);
				break;
			}
		}
		double lat, lon, h;
		for (size_t i = 0; i < p.n; i++) {
			sim_path_at(&p, p.cum[i], &lat, &lon, &h);
			CHECK_NEAR(lat, res.coords[2 * i + 1], 1e-9);
			CHECK_NEAR(lon, res.coords[2 * i], 1e-9);
		}
		sim_path_at(&p, 1e9, &lat, &lon, &h);
		CHECK_NEAR(lat, res.coords[2 * res.npoints - 1], 1e-12);
		sim_path_fini(&p);
	}
	CHECK(routes >= 5);
	routing_free(r);
	config_fini(&cfg);
}

/* A tiny run worked out by hand: 6 requests, 2 drivers. */
UNIT_TEST(sim_report_arithmetic)
{
	struct sim_trip_rec t[6];
	for (int i = 0; i < 6; i++) {
		memset(&t[i], 0, sizeof t[i]);
		t[i].t_request = t[i].t_created = t[i].t_matched = t[i].t_arrived = t[i].t_started = t[i].t_completed =
			t[i].t_cancelled = -1;
	}
	/* 0: completed: created 10, matched 14 (4), arrived 70 (60), started 90, completed 390 (300) */
	t[0] = (struct sim_trip_rec){ 10, 10, 14, 70, 90, 390, -1, SIM_OUT_COMPLETED, "", 0, 0 };
	/* 1: completed: created 20, matched 30 (10), arrived 140 (120), trip 200 */
	t[1] = (struct sim_trip_rec){ 20, 20, 30, 140, 150, 350, -1, SIM_OUT_COMPLETED, "", 0, 0 };
	/* 2: cancelled by the rider after a match (time to match 2) */
	t[2] = (struct sim_trip_rec){ 30, 30, 32, -1, -1, -1, 400, SIM_OUT_CANCELLED, "rider:rider_patience", 0, 0 };
	/* 3: cancelled by the system, never matched */
	t[3] = (struct sim_trip_rec){ 40, 40, -1, -1, -1, -1, 160, SIM_OUT_CANCELLED, "system:no_drivers", 0, 0 };
	/* 4: no quote; 5: still searching at the end */
	t[4] = (struct sim_trip_rec){ 50, -1, -1, -1, -1, -1, -1, SIM_OUT_NO_QUOTE, "", 0, 0 };
	t[5] = (struct sim_trip_rec){ 60, 61, -1, -1, -1, -1, -1, SIM_OUT_PENDING, "", 0, 0 };
	struct sim_driver_acc d[2] = {
		{ .online_s = 600, .busy_s = 380, .idle_km = 1, .deadhead_km = 0.5, .trip_km = 2, .reposition_km = 0.5,
		  .offers = 3, .accepts = 2, .declines = 1, .trips = 1 },
		{ .online_s = 400, .busy_s = 220, .idle_km = 0.25, .deadhead_km = 1.5, .trip_km = 1, .offers = 2, .accepts = 1,
		  .timeouts = 1, .withdrawn = 0, .trips = 1 },
	};
	struct sim_report r;
	sim_report_compute(t, 6, d, 2, 0, 0, &r);
	CHECK_EQ_INT(r.requests, 6);
	CHECK_EQ_INT(r.no_quote, 1);
	CHECK_EQ_INT(r.created, 5);
	CHECK_EQ_INT(r.matched, 3);
	CHECK_NEAR(r.matched_pct, 60.0, 1e-9);
	CHECK_EQ_INT(r.arrived, 2);
	CHECK_EQ_INT(r.completed, 2);
	CHECK_EQ_INT(r.cancelled, 2);
	CHECK_EQ_INT(r.pending, 1);
	REQUIRE(r.nreasons == 2);
	CHECK_EQ_STR(r.reason[0], "rider:rider_patience");
	CHECK_EQ_INT(r.reason_count[0], 1);
	CHECK_EQ_STR(r.reason[1], "system:no_drivers");
	/* time to match {2, 4, 10}: nearest rank p50 = 4, p95 = p99 = 10 */
	CHECK_NEAR(r.ttm_p50, 4, 1e-9);
	CHECK_NEAR(r.ttm_p95, 10, 1e-9);
	CHECK_NEAR(r.ttm_p99, 10, 1e-9);
	/* pickup wait {60, 120}: p50 = 60, p95 = 120 */
	CHECK_NEAR(r.wait_p50, 60, 1e-9);
	CHECK_NEAR(r.wait_p95, 120, 1e-9);
	/* the mean over completed trips (both arrived): 90; 2 of 6 requests completed */
	CHECK_NEAR(r.wait_mean, 90, 1e-9);
	CHECK_NEAR(r.completed_pct, 100.0 * 2 / 6, 1e-9);
	/* empty kilometres per completed trip: (0.5 + 1.5 to pickups + 0.5 to a suggested cell) / 2 */
	CHECK_NEAR(r.reposition_km, 0.5, 1e-12);
	CHECK_NEAR(r.deadhead_km_per_trip, 1.25, 1e-12);
	/* trips {300, 200} */
	CHECK_NEAR(r.trip_p50, 200, 1e-9);
	CHECK_NEAR(r.trip_mean, 250, 1e-9);
	/* (380 + 220) / (600 + 400) */
	CHECK_NEAR(r.utilisation, 0.6, 1e-12);
	CHECK_NEAR(r.idle_km, 1.25, 1e-12);
	CHECK_NEAR(r.deadhead_km, 2.0, 1e-12);
	CHECK_NEAR(r.trip_km, 3.0, 1e-12);
	CHECK_EQ_INT(r.offers, 5);
	CHECK_EQ_INT(r.declines, 1);
	CHECK_EQ_INT(r.timeouts, 1);
	CHECK_NEAR(r.offers_per_match, 5.0 / 3, 1e-12);
	/* the JSON carries them */
	char buf[4096] = "";
	FILE *f = fmemopen(buf, sizeof buf - 1, "w");
	REQUIRE(f);
	sim_report_write_json(&r, f, "  \"run\": {}");
	fclose(f);
	CHECK(strstr(buf, "\"matched_pct\": 60.00") != NULL);
	CHECK(strstr(buf, "\"cancelled_by_reason\": {\"rider:rider_patience\": 1, \"system:no_drivers\": 1}") != NULL);
	CHECK(strstr(buf, "\"time_to_match_s\": {\"p50\": 4.00, \"p95\": 10.00, \"p99\": 10.00}") != NULL);
	CHECK(strstr(buf, "\"driver_utilisation\": 0.6000") != NULL);

	/* the written summary says the same figures in words */
	char txt[4096] = "";
	f = fmemopen(txt, sizeof txt - 1, "w");
	REQUIRE(f);
	struct sim_text_ctx tc = { .drivers = 2, .duration_s = 600, .compress = 6, .replay = true };
	sim_report_write_text(&r, &tc, f);
	fclose(f);
	CHECK(strstr(txt, "Served: 2 of 6 requests completed (33%), 2 cancelled, 1 still open at the end; 1 got no quote") != NULL);
	CHECK(strstr(txt, "1 rider:rider_patience, 1 system:no_drivers") != NULL);
	CHECK(strstr(txt, "a driver accepted 4 s after the request (median; 95% within 10 s)") != NULL);
	CHECK(strstr(txt, "busy 60% of their time online; of 6.2 km driven, 48% with a rider") != NULL);
	CHECK(strstr(txt, "compressed 6x: 60 min of recorded requests arrived in 10 simulated min") != NULL);
	CHECK(strstr(txt, "Reading: the fleet is saturated") != NULL); /* 60% of trips matched */
	CHECK(strstr(txt, "map.png") != NULL);

	double v[] = { 5, 1, 4, 2, 3 };
	CHECK_NEAR(sim_percentile(v, 5, 50), 3, 0);
	CHECK_NEAR(sim_percentile(v, 5, 99), 5, 0);
	CHECK_NEAR(sim_percentile(v, 5, 0), 1, 0);
	CHECK_NEAR(sim_percentile(v, 0, 50), 0, 0);
}

/* Shared rides worked out by hand: two shared riders dropped off, one
 * cancelled, one solo trip, one shared rider still riding. */
UNIT_TEST(sim_share_figures)
{
	struct sim_trip_rec t[5];
	for (int i = 0; i < 5; i++) {
		memset(&t[i], 0, sizeof t[i]);
		t[i].t_request = t[i].t_created = t[i].t_matched = t[i].t_arrived = t[i].t_started = t[i].t_completed =
			t[i].t_cancelled = -1;
	}
	/* 0: shared: booked 10, confirmed 11, car at the pickup 100 (wait 90), aboard 120, off 420: 300 s
	 * against 250 alone (+20 %), 2 km */
	t[0] = (struct sim_trip_rec){ .t_request = 10, .t_created = 10, .t_matched = 11, .t_arrived = 100, .t_started = 120,
				      .t_completed = 420, .t_cancelled = -1, .outcome = SIM_OUT_COMPLETED, .shared = true,
				      .direct_s = 250, .direct_km = 2 };
	/* 1: shared: wait 30, 200 s against 200 (+0 %), 1.5 km */
	t[1] = (struct sim_trip_rec){ .t_request = 20, .t_created = 20, .t_matched = 21, .t_arrived = 50, .t_started = 60,
				      .t_completed = 260, .t_cancelled = -1, .outcome = SIM_OUT_COMPLETED, .shared = true,
				      .direct_s = 200, .direct_km = 1.5 };
	/* 2: shared, cancelled no_driver */
	t[2] = (struct sim_trip_rec){ .t_request = 30, .t_created = 30, .t_matched = -1, .t_arrived = -1, .t_started = -1,
				      .t_completed = -1, .t_cancelled = 31, .outcome = SIM_OUT_CANCELLED, .shared = true,
				      .direct_s = 100, .direct_km = 1 };
	/* 3: solo, completed, 0.5 km: passenger-km, not a shared figure */
	t[3] = (struct sim_trip_rec){ .t_request = 40, .t_created = 40, .t_matched = 41, .t_arrived = 100, .t_started = 110,
				      .t_completed = 200, .t_cancelled = -1, .outcome = SIM_OUT_COMPLETED, .direct_s = 90,
				      .direct_km = 0.5 };
	/* 4: shared, aboard at the end: wait 60 counts, no detour */
	t[4] = (struct sim_trip_rec){ .t_request = 50, .t_created = 50, .t_matched = 51, .t_arrived = 110, .t_started = 130,
				      .t_completed = -1, .t_cancelled = -1, .outcome = SIM_OUT_PENDING, .shared = true,
				      .direct_s = 100, .direct_km = 1 };
	struct sim_share_figs f;
	sim_share_compute(t, 5, 6.0, &f);
	CHECK_EQ_INT(f.booked, 4);
	CHECK_EQ_INT(f.confirmed, 3);
	CHECK_EQ_INT(f.dropped_off, 2);
	CHECK_EQ_INT(f.cancelled, 1);
	CHECK_NEAR(f.pkm, 4.0, 1e-12);
	CHECK_NEAR(f.vkm_per_pkm, 1.5, 1e-12);
	/* detours {20, 0}: p50 0, p95 20 */
	CHECK_NEAR(f.detour_p50, 0, 1e-9);
	CHECK_NEAR(f.detour_p95, 20, 1e-9);
	CHECK_NEAR(f.detour_max, 20, 1e-9);
	/* waits {90, 30, 60}: p50 60, p95 90 */
	CHECK_NEAR(f.wait_p50, 60, 1e-9);
	CHECK_NEAR(f.wait_p95, 90, 1e-9);
}
