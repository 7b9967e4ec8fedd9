#include "../unit.h"

#include <stdlib.h>
#include <time.h>

#include "geo/geohash.h"
#include "presence/gps_check.h"

static const struct gps_check_cfg CFG = { .max_speed_kmh = 250, .max_jump_m = 100000, .recover_fixes = 3 };

static enum gps_verdict fix(struct gps_track *t, double lat, double lon, double acc, int64_t ms)
{
	struct gps_fix f = { lat, lon, acc, ms };
	return gps_check_fix(&CFG, t, &f, NULL);
}

UNIT_TEST(gps_check_oakland_to_paris_in_a_second_then_consistent)
{
	struct gps_track t = { 0 };
	int64_t ms = 1700000000000;
	CHECK(fix(&t, 37.8044, -122.2712, 10, ms) == GPS_OK);
	CHECK(fix(&t, 37.8050, -122.2705, 10, ms += 1000) == GPS_OK);
	struct gps_fix paris = { 48.8566, 2.3522, 10, ms += 1000 };
	struct gps_jump j;
	CHECK(gps_check_fix(&CFG, &t, &paris, &j) == GPS_SUSPECT);
	CHECK(j.too_far && j.distance_m > 8e6 && j.seconds == 1.0);
	/* it keeps saying Paris, consistently: believed after 3 such fixes */
	CHECK(fix(&t, 48.8567, 2.3523, 10, ms += 1000) == GPS_STILL_SUSPECT);
	CHECK(fix(&t, 48.8568, 2.3524, 10, ms += 1000) == GPS_STILL_SUSPECT);
	CHECK(fix(&t, 48.8569, 2.3525, 10, ms += 1000) == GPS_RECOVERED);
	CHECK(fix(&t, 48.8570, 2.3526, 10, ms += 1000) == GPS_OK);
}

UNIT_TEST(gps_check_a_glitch_that_passes_is_forgiven_at_once)
{
	struct gps_track t = { 0 };
	int64_t ms = 1000;
	CHECK(fix(&t, 52.0907, 5.1214, 8, ms) == GPS_OK);
	CHECK(fix(&t, 52.2907, 5.1214, 8, ms += 1000) == GPS_SUSPECT); /* 22 km in 1 s */
	CHECK(fix(&t, 52.0908, 5.1215, 8, ms += 1000) == GPS_RECOVERED); /* back where it was */
	/* jumping back and forth never builds a run of consistent fixes */
	CHECK(fix(&t, 52.2907, 5.1214, 8, ms += 1000) == GPS_SUSPECT);
	for (int i = 0; i < 10; i++) {
		CHECK(fix(&t, 52.2907, 5.3214, 8, ms += 1000) == GPS_STILL_SUSPECT);
		CHECK(fix(&t, 52.2907, 5.1214, 8, ms += 1000) == GPS_STILL_SUSPECT);
	}
}

UNIT_TEST(gps_check_accuracy_claims_and_long_silences)
{
	struct gps_track t = { 0 };
	/* a claimed accuracy of 100 km does not excuse a 20 km jump in 2 s */
	CHECK(fix(&t, 52.0907, 5.1214, 100000, 0) == GPS_OK);
	CHECK(fix(&t, 52.2707, 5.1214, 100000, 2000) == GPS_SUSPECT);
	/* a driver back 3 hours and 150 km later: slow enough, but farther than
	 * a drive between two fixes; believed once consistent */
	struct gps_track u = { 0 };
	int64_t ms = 0;
	CHECK(fix(&u, 52.0907, 5.1214, 10, ms) == GPS_OK);
	struct gps_fix far = { 53.4400, 5.1214, 10, ms += 3 * 3600 * 1000 };
	struct gps_jump j;
	CHECK(gps_check_fix(&CFG, &u, &far, &j) == GPS_SUSPECT);
	CHECK(j.too_far && j.speed_kmh < 60);
	CHECK(fix(&u, 53.4401, 5.1214, 10, ms += 5000) == GPS_STILL_SUSPECT);
	CHECK(fix(&u, 53.4402, 5.1214, 10, ms += 5000) == GPS_STILL_SUSPECT);
	CHECK(fix(&u, 53.4403, 5.1214, 10, ms += 5000) == GPS_RECOVERED);
	/* standing still with jitter, two fixes in the same millisecond: fine */
	struct gps_track w = { 0 };
	CHECK(fix(&w, 52.0907, 5.1214, 15, 5000) == GPS_OK);
	CHECK(fix(&w, 52.09072, 5.12142, 15, 5000) == GPS_OK);
	/* off: everything believed */
	struct gps_check_cfg off = CFG;
	off.max_speed_kmh = 0;
	struct gps_track x = { 0 };
	struct gps_fix a = { 37.8, -122.27, 5, 0 }, b = { 48.85, 2.35, 5, 1000 };
	CHECK(gps_check_fix(&off, &x, &a, NULL) == GPS_OK);
	CHECK(gps_check_fix(&off, &x, &b, NULL) == GPS_OK);
}

/* A car driving a city for hours at up to 130 km/h, fixes every 1-5 s with
 * GPS noise: never suspect. */
UNIT_TEST(gps_check_no_false_alarm_on_a_random_drive)
{
	uint64_t seed = unit_seed();
	srand((unsigned)seed);
	struct gps_track t = { 0 };
	double lat = 37.80, lon = -122.27, heading = 0;
	int64_t ms = 0;
	int suspects = 0;
	for (int i = 0; i < 20000; i++) {
		int64_t dt = 1000 + rand() % 4000;
		double v = (rand() % 1301) / 10.0 / 3.6; /* m/s, 0..130 km/h */
		heading += ((rand() % 61) - 30) * M_PI / 180;
		double d = v * (double)dt / 1000.0;
		lat += d * cos(heading) / 111320.0;
		lon += d * sin(heading) / (111320.0 * cos(lat * M_PI / 180));
		double acc = 5 + rand() % 26;
		double nlat = lat + ((rand() % 2001) - 1000) / 1000.0 * acc / 111320.0;
		double nlon = lon + ((rand() % 2001) - 1000) / 1000.0 * acc / (111320.0 * cos(lat * M_PI / 180));
		ms += dt;
		suspects += fix(&t, nlat, nlon, acc, ms) != GPS_OK;
	}
	if (suspects)
		unit_fail(__FILE__, __LINE__, "seed %" PRIu64 ": %d fixes of a plausible drive were suspect", seed, suspects);
}

/* Real trips: New York yellow cabs, January 2015 (../shared/data), each
 * pickup and dropoff taken as two fixes. No real trip in the city is
 * suspect; those with a broken position (0, 0 in the data) are. */
UNIT_TEST(gps_check_real_taxi_trips)
{
	const char *dir = unit_shared_data();
	if (!dir) {
		unit_skip("../shared/data absent: the real-trip check is skipped");
		return;
	}
	char path[4200];
	snprintf(path, sizeof path, "%s/trips/nyc-yellow-2015-01-head.csv", dir);
	FILE *f = fopen(path, "r");
	if (!f) {
		unit_skip("nyc-yellow-2015-01-head.csv absent: skipped");
		return;
	}
	char line[1024];
	int trips = 0, real = 0, broken = 0, real_suspect = 0, broken_caught = 0;
	if (!fgets(line, sizeof line, f)) /* the header */
		line[0] = 0;
	while (fgets(line, sizeof line, f)) {
		char *col[20];
		int n = 0;
		for (char *p = line, *tok; n < 20 && (tok = strsep(&p, ",")) != NULL;)
			col[n++] = tok;
		if (n < 11)
			continue;
		struct tm a = { 0 }, b = { 0 };
		if (!strptime(col[1], "%Y-%m-%d %H:%M:%S", &a) || !strptime(col[2], "%Y-%m-%d %H:%M:%S", &b))
			continue;
		int64_t t0 = (int64_t)timegm(&a) * 1000, t1 = (int64_t)timegm(&b) * 1000;
		double plon = atof(col[5]), plat = atof(col[6]), dlon = atof(col[9]), dlat = atof(col[10]);
		if (t1 - t0 < 60000)
			continue; /* a minute at least: the clocks are to the second */
		trips++;
		struct gps_track t = { 0 };
		fix(&t, plat, plon, 20, t0);
		bool suspect = fix(&t, dlat, dlon, 20, t1) != GPS_OK;
		bool in_city = plat > 40.4 && plat < 41.0 && dlat > 40.4 && dlat < 41.0 && plon > -74.3 && plon < -73.6 &&
			       dlon > -74.3 && dlon < -73.6;
		bool zero = (plat == 0 && plon == 0) != (dlat == 0 && dlon == 0);
		real += in_city;
		real_suspect += in_city && suspect;
		broken += zero;
		broken_caught += zero && suspect;
	}
	fclose(f);
	printf("  gps_check: %d real trips, %d in the city (%d suspect), %d with one end at (0, 0) (%d caught)\n", trips,
	       real, real_suspect, broken, broken_caught);
	CHECK(real > 1500);
	CHECK_EQ_INT(real_suspect, 0);
	CHECK(broken > 0);
	CHECK_EQ_INT(broken_caught, broken);
}
