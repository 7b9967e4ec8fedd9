#include "geo/grid.h"

#include <stdlib.h>

#include "core/alloc.h"
#include "geo/geohash.h"

#include "../unit.h"

static uint64_t rng_state;
static uint64_t rng_next(void)
{
	/* splitmix64 */
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}
static double rng_unit(void) { return (double)(rng_next() >> 11) / 9007199254740992.0; }

static double wrap_lon(double lon)
{
	while (lon > 180.0)
		lon -= 360.0;
	while (lon < -180.0)
		lon += 360.0;
	return lon;
}

static double clamp_lat(double lat)
{
	return lat > 90.0 ? 90.0 : lat < -90.0 ? -90.0 : lat;
}

/* The test's own copy of every driver, the reference for brute force. */
struct model {
	size_t n;
	bool *present;
	struct geo_grid_driver *d;
};

static void model_init(struct model *m, size_t n)
{
	m->n = n;
	m->present = calloc(n, sizeof *m->present);
	m->d = calloc(n, sizeof *m->d);
}

static void model_fini(struct model *m)
{
	free(m->present);
	free(m->d);
}

static bool model_accepts(const struct geo_grid_driver *d, const struct geo_grid_filter *f)
{
	if (!((f->status_mask >> d->status) & 1) || !(d->vehicle & f->vehicle_mask))
		return false;
	if (f->stale_after_ms == GEO_GRID_NO_STALE)
		return true;
	return d->ping_ms > f->now_ms - f->stale_after_ms;
}

struct ref_hit {
	uint32_t slot;
	double d;
};

static int ref_cmp(const void *a, const void *b)
{
	double x = ((const struct ref_hit *)a)->d, y = ((const struct ref_hit *)b)->d;
	return x < y ? -1 : x > y;
}

/* Brute force: every accepted driver within the radius by haversine. */
static size_t brute_nearest(const struct model *m, double lat, double lon, double radius,
			    const struct geo_grid_filter *f, struct ref_hit *out)
{
	size_t n = 0;
	for (size_t s = 0; s < m->n; s++) {
		if (!m->present[s] || !model_accepts(&m->d[s], f))
			continue;
		double d = geo_dist_haversine_m(lat, lon, m->d[s].lat, m->d[s].lon);
		if (d <= radius)
			out[n++] = (struct ref_hit){ (uint32_t)s, d };
	}
	qsort(out, n, sizeof *out, ref_cmp);
	return n;
}

/* Compares one query with brute force; returns false (after reporting) on a
 * mismatch. Distances must agree to 1e-6 m; ties may come in any order, so
 * each hit is checked against the driver's own distance and the sequence of
 * distances against the reference. Drivers within 1e-6 m of the radius may
 * go either way. */
static bool check_query(struct geo_grid *g, const struct model *m, double lat, double lon, double radius,
			const struct geo_grid_filter *f, size_t k, struct ref_hit *ref, struct geo_grid_hit *hits)
{
	size_t nref = brute_nearest(m, lat, lon, radius, f, ref), n = 99999;
	if (geo_grid_nearest(g, lat, lon, radius, f, hits, k, &n) != RH_OK) {
		unit_fail(__FILE__, __LINE__, "query (%.9f, %.9f, %g m) failed", lat, lon, radius);
		return false;
	}
	size_t want = nref < k ? nref : k;
	bool edge = nref > n && fabs(ref[n].d - radius) < 1e-6;
	if (n != want && !edge) {
		unit_fail(__FILE__, __LINE__, "query (%.9f, %.9f, %g m, k=%zu): %zu hits, brute force %zu", lat, lon,
			  radius, k, n, want);
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		uint32_t s = hits[i].slot;
		double own = s < m->n && m->present[s] ? geo_dist_haversine_m(lat, lon, m->d[s].lat, m->d[s].lon) : -1;
		bool ok = s < m->n && m->present[s] && model_accepts(&m->d[s], f) && fabs(own - hits[i].dist_m) < 1e-6 &&
			  fabs(ref[i].d - hits[i].dist_m) < 1e-6 && hits[i].lat == m->d[s].lat &&
			  hits[i].lon == m->d[s].lon && (i == 0 || hits[i - 1].dist_m <= hits[i].dist_m);
		for (size_t j = 0; ok && j < i; j++)
			ok = hits[j].slot != s;
		if (!ok) {
			unit_fail(__FILE__, __LINE__,
				  "query (%.9f, %.9f, %g m, k=%zu) hit %zu: slot %u at %.9f m, brute force %.9f m (own %.9f)",
				  lat, lon, radius, k, i, s, hits[i].dist_m, ref[i].d, own);
			return false;
		}
	}
	return true;
}

static struct geo_grid *grid_make(unsigned bits, uint32_t max_slots)
{
	struct geo_grid *g = NULL;
	struct geo_grid_config cfg = { .bits = bits, .max_slots = max_slots, .initial_slots = 8 };
	if (geo_grid_new(&cfg, &g) != RH_OK)
		return NULL;
	return g;
}

static void random_driver(struct geo_grid_driver *d, double clat, double clon, double half_deg, int64_t now)
{
	double lon_scale = cos(clat * M_PI / 180);
	if (lon_scale < 0.01)
		lon_scale = 0.01;
	d->lat = clamp_lat(clat + (rng_unit() * 2 - 1) * half_deg);
	d->lon = wrap_lon(clon + (rng_unit() * 2 - 1) * half_deg / lon_scale);
	d->ping_ms = now - (int64_t)(rng_next() % 60000);
	d->status = (uint8_t)(rng_next() % 4);
	d->vehicle = (uint16_t)(1u << (rng_next() % 3));
}

static void random_filter(struct geo_grid_filter *f, int64_t now)
{
	f->now_ms = now;
	switch (rng_next() % 4) {
	case 0:
		f->status_mask = UINT32_MAX, f->vehicle_mask = UINT16_MAX, f->stale_after_ms = GEO_GRID_NO_STALE;
		break;
	case 1:
		f->status_mask = 1u << 1, f->vehicle_mask = UINT16_MAX, f->stale_after_ms = 30000;
		break;
	case 2:
		f->status_mask = (1u << 1) | (1u << 2), f->vehicle_mask = 1u << 2, f->stale_after_ms = 30000;
		break;
	default:
		f->status_mask = (uint32_t)rng_next(), f->vehicle_mask = (uint16_t)rng_next();
		f->stale_after_ms = (int64_t)(rng_next() % 70000);
		break;
	}
}

/* One random city: drivers inserted, moved (small steps and jumps), removed,
 * re-inserted, and queried against brute force after each round. Returns the
 * number of queries answered by a full scan, so callers can check that the
 * ring search did the work. */
static uint64_t run_city(unsigned bits, double clat, double clon, double half_deg, size_t ndrivers, int rounds,
			 int queries)
{
	struct geo_grid *g = grid_make(bits, (uint32_t)ndrivers);
	struct model m;
	struct ref_hit *ref = malloc(sizeof *ref * ndrivers);
	struct geo_grid_hit hits[64];
	int64_t now = 1700000000000LL;
	if (!g || !ref) {
		unit_fail(__FILE__, __LINE__, "setup");
		return 0;
	}
	model_init(&m, ndrivers);
	for (size_t s = 0; s < ndrivers; s++) {
		if (rng_next() % 8 == 0)
			continue; /* leave holes in the slot space */
		random_driver(&m.d[s], clat, clon, half_deg, now);
		if (geo_grid_insert(g, (uint32_t)s, &m.d[s]) != RH_OK) {
			unit_fail(__FILE__, __LINE__, "insert %zu", s);
			goto out;
		}
		m.present[s] = true;
	}
	for (int round = 0; round < rounds; round++) {
		now += 5000;
		for (size_t s = 0; s < ndrivers; s++) {
			unsigned what = (unsigned)(rng_next() % 16);
			if (!m.present[s]) {
				if (what < 2) {
					random_driver(&m.d[s], clat, clon, half_deg, now);
					CHECK_EQ_INT(geo_grid_insert(g, (uint32_t)s, &m.d[s]), RH_OK);
					m.present[s] = true;
				}
				continue;
			}
			if (what == 0) {
				CHECK_EQ_INT(geo_grid_remove(g, (uint32_t)s), RH_OK);
				m.present[s] = false;
			} else if (what < 10) {
				/* A ping a few metres to a few hundred metres away. */
				double step = (rng_unit() * 2 - 1) * 0.004;
				m.d[s].lat = clamp_lat(m.d[s].lat + step);
				m.d[s].lon = wrap_lon(m.d[s].lon + (rng_unit() * 2 - 1) * 0.004);
				m.d[s].ping_ms = now;
				CHECK_EQ_INT(geo_grid_move(g, (uint32_t)s, m.d[s].lat, m.d[s].lon, now), RH_OK);
			} else if (what == 10) {
				struct geo_grid_driver d;
				random_driver(&d, clat, clon, half_deg, now);
				m.d[s].lat = d.lat, m.d[s].lon = d.lon, m.d[s].ping_ms = now;
				CHECK_EQ_INT(geo_grid_move(g, (uint32_t)s, d.lat, d.lon, now), RH_OK);
			} else if (what == 11) {
				m.d[s].status = (uint8_t)(rng_next() % 4);
				CHECK_EQ_INT(geo_grid_set_status(g, (uint32_t)s, m.d[s].status), RH_OK);
			} else if (what == 12) {
				m.d[s].vehicle = (uint16_t)(1u << (rng_next() % 3));
				CHECK_EQ_INT(geo_grid_set_vehicle(g, (uint32_t)s, m.d[s].vehicle), RH_OK);
			}
		}
		size_t present = 0;
		for (size_t s = 0; s < ndrivers; s++)
			present += m.present[s];
		CHECK_EQ_U64(geo_grid_count(g), present);
		for (int qn = 0; qn < queries; qn++) {
			struct geo_grid_filter f;
			random_filter(&f, now);
			double lat = clamp_lat(clat + (rng_unit() * 2 - 1) * half_deg * 1.2);
			double lon = wrap_lon(clon + (rng_unit() * 2 - 1) * half_deg * 1.2 /
						     fmax(cos(clat * M_PI / 180), 0.01));
			double radius = rng_next() % 10 == 0 ? rng_unit() * 50000 : rng_unit() * 3000;
			size_t k = (size_t)(rng_next() % 65);
			if (!check_query(g, &m, lat, lon, radius, &f, k, ref, hits))
				goto out;
		}
	}
	/* Everything the model holds, the grid returns as stored. */
	for (size_t s = 0; s < ndrivers; s++) {
		struct geo_grid_driver d;
		if (!m.present[s]) {
			CHECK(!geo_grid_has(g, (uint32_t)s));
			continue;
		}
		CHECK_EQ_INT(geo_grid_get(g, (uint32_t)s, &d), RH_OK);
		CHECK(d.lat == m.d[s].lat && d.lon == m.d[s].lon && d.ping_ms == m.d[s].ping_ms &&
		      d.status == m.d[s].status && d.vehicle == m.d[s].vehicle);
	}
out:;
	struct geo_grid_stats st;
	geo_grid_stats_get(g, &st);
	geo_grid_free(g);
	model_fini(&m);
	free(ref);
	return st.full_scans;
}

UNIT_TEST(grid_nearest_matches_brute_force_random_cities)
{
	rng_state = unit_seed();
	for (int city = 0; city < 6; city++) {
		double clat = rng_unit() * 120 - 60, clon = rng_unit() * 360 - 180;
		unsigned bits = city == 0 ? 0 : 26 + (unsigned)(rng_next() % 10);
		/* A 20 x 20 km city (half-width 0.09 degrees). */
		uint64_t full = run_city(bits, clat, clon, 0.09, 3000, 4, 150);
		/* Ring search answers the ordinary queries; only the rare huge
		 * radius may fall back to scanning every cell. (With cells much
		 * finer than the default 32 bits, a 3 km radius spans more cells
		 * than are occupied, and scanning them all is the cheaper way,
		 * rightly: the claim holds for cells of 300 m or more.) */
		if (bits == 0 || bits <= 32)
			CHECK(full < 4 * 150 / 4);
	}
}

UNIT_TEST(grid_nearest_antimeridian_and_poles)
{
	rng_state = unit_seed() ^ 0xa17;
	/* A city straddling the antimeridian (Fiji-like), one at each pole, one
	 * 50 km from the north pole where cells are slivers. */
	run_city(0, -17.0, 180.0, 0.09, 1500, 2, 150);
	run_city(30, 10.0, -180.0, 0.09, 1500, 2, 150);
	run_city(0, 89.99, 0.0, 0.05, 1500, 2, 150);
	run_city(0, -90.0, 45.0, 0.05, 1500, 2, 150);
	run_city(0, 89.5, 179.99, 0.09, 1500, 2, 150);
}

UNIT_TEST(grid_empty_and_invalid)
{
	struct geo_grid *g = grid_make(0, 100);
	struct geo_grid_hit hits[4];
	struct geo_grid_filter f = { UINT32_MAX, UINT16_MAX, 0, GEO_GRID_NO_STALE };
	struct geo_grid_driver d = { .lat = 52.1, .lon = 5.1, .ping_ms = 0, .status = 1, .vehicle = 1 };
	size_t n = 7;
	REQUIRE(g);
	CHECK_EQ_INT(geo_grid_bits(g), GEO_GRID_DEFAULT_BITS);
	CHECK_EQ_INT(geo_grid_nearest(g, 52.1, 5.1, 2000, &f, hits, 4, &n), RH_OK);
	CHECK_EQ_INT(n, 0);
	CHECK_EQ_INT(geo_grid_nearest(g, 91, 5.1, 2000, &f, hits, 4, &n), RH_EINVAL);
	CHECK_EQ_INT(geo_grid_nearest(g, 52.1, NAN, 2000, &f, hits, 4, &n), RH_EINVAL);
	CHECK_EQ_INT(geo_grid_nearest(g, 52.1, 5.1, -1, &f, hits, 4, &n), RH_EINVAL);
	CHECK_EQ_INT(geo_grid_nearest(g, 52.1, 5.1, NAN, &f, hits, 4, &n), RH_EINVAL);
	CHECK_EQ_INT(geo_grid_count(g), 0);
	CHECK_EQ_INT(geo_grid_cell_count(g), 0);
	CHECK_EQ_INT(geo_grid_remove(g, 3), RH_ENOTFOUND);
	CHECK_EQ_INT(geo_grid_move(g, 3, 52.1, 5.1, 0), RH_ENOTFOUND);
	CHECK_EQ_INT(geo_grid_set_status(g, 3, 1), RH_ENOTFOUND);
	CHECK_EQ_INT(geo_grid_get(g, 99999, &d), RH_ENOTFOUND);
	CHECK_EQ_INT(geo_grid_insert(g, 100, &d), RH_EINVAL); /* slot >= max_slots */
	d.status = 32;
	CHECK_EQ_INT(geo_grid_insert(g, 1, &d), RH_EINVAL);
	d.status = 1;
	d.lat = NAN;
	CHECK_EQ_INT(geo_grid_insert(g, 1, &d), RH_EINVAL);
	d.lat = 52.1;
	CHECK_EQ_INT(geo_grid_insert(g, 99, &d), RH_OK);
	CHECK_EQ_INT(geo_grid_insert(g, 99, &d), RH_ECONFLICT);
	CHECK_EQ_INT(geo_grid_move(g, 99, 52.1, 180.5, 0), RH_EINVAL);
	CHECK_EQ_INT(geo_grid_set_status(g, 99, 32), RH_EINVAL);
	CHECK_EQ_INT(geo_grid_get(g, 99, &d), RH_OK);
	CHECK(d.lat == 52.1 && d.lon == 5.1); /* the failed move changed nothing */
	/* k = 0: nothing, even with a match. */
	n = 7;
	CHECK_EQ_INT(geo_grid_nearest(g, 52.1, 5.1, 2000, &f, hits, 0, &n), RH_OK);
	CHECK_EQ_INT(n, 0);
	CHECK(geo_grid_memory_bytes(g) > 0);
	geo_grid_free(g);
	geo_grid_free(NULL);

	struct geo_grid_config bad = { .bits = 7, .max_slots = 10 };
	g = NULL;
	CHECK_EQ_INT(geo_grid_new(&bad, &g), RH_EINVAL);
	bad.bits = 51;
	CHECK_EQ_INT(geo_grid_new(&bad, &g), RH_EINVAL);
	bad.bits = 32;
	bad.max_slots = 0;
	CHECK_EQ_INT(geo_grid_new(&bad, &g), RH_EINVAL);
	CHECK(g == NULL);
}

UNIT_TEST(grid_k_larger_than_matches_and_radius_edges)
{
	struct geo_grid *g = grid_make(0, 16);
	struct geo_grid_hit hits[16];
	struct geo_grid_filter f = { UINT32_MAX, UINT16_MAX, 0, GEO_GRID_NO_STALE };
	size_t n = 0;
	REQUIRE(g);
	/* Three drivers due north of the query at 100, 200 and 300 m. */
	double lat0 = 52.0, lon0 = 5.0, mdeg = 180.0 / (M_PI * GEO_EARTH_RADIUS_M);
	for (uint32_t s = 0; s < 3; s++) {
		struct geo_grid_driver d = { lat0 + 100.0 * (s + 1) * mdeg, lon0, 0, 1, 1 };
		REQUIRE(geo_grid_insert(g, 5 - s, &d) == RH_OK);
	}
	CHECK_EQ_INT(geo_grid_nearest(g, lat0, lon0, 1000, &f, hits, 16, &n), RH_OK);
	REQUIRE(n == 3);
	CHECK_EQ_INT(hits[0].slot, 5);
	CHECK_EQ_INT(hits[1].slot, 4);
	CHECK_EQ_INT(hits[2].slot, 3);
	CHECK_NEAR(hits[0].dist_m, 100.0, 1e-6);
	CHECK_NEAR(hits[2].dist_m, 300.0, 1e-6);
	/* The radius is inclusive, to rounding. */
	CHECK_EQ_INT(geo_grid_nearest(g, lat0, lon0, 200.000001, &f, hits, 16, &n), RH_OK);
	CHECK_EQ_INT(n, 2);
	CHECK_EQ_INT(geo_grid_nearest(g, lat0, lon0, 199.999999, &f, hits, 16, &n), RH_OK);
	CHECK_EQ_INT(n, 1);
	/* Radius 0 finds a driver exactly at the point, and only it. */
	struct geo_grid_driver here = { lat0, lon0, 0, 1, 1 };
	REQUIRE(geo_grid_insert(g, 9, &here) == RH_OK);
	CHECK_EQ_INT(geo_grid_nearest(g, lat0, lon0, 0, &f, hits, 16, &n), RH_OK);
	CHECK_EQ_INT(n, 1);
	CHECK_EQ_INT(hits[0].slot, 9);
	CHECK_EQ_INT(hits[0].dist_m == 0.0, 1);
	/* k smaller than the matches keeps the nearest. */
	CHECK_EQ_INT(geo_grid_nearest(g, lat0, lon0, 1000, &f, hits, 2, &n), RH_OK);
	REQUIRE(n == 2);
	CHECK_EQ_INT(hits[0].slot, 9);
	CHECK_EQ_INT(hits[1].slot, 5);
	/* A radius beyond half the circumference covers the globe. */
	struct geo_grid_driver far = { -52.0, -175.0, 0, 1, 1 };
	REQUIRE(geo_grid_insert(g, 10, &far) == RH_OK);
	CHECK_EQ_INT(geo_grid_nearest(g, lat0, lon0, 1e9, &f, hits, 16, &n), RH_OK);
	CHECK_EQ_INT(n, 5);
	CHECK_EQ_INT(hits[4].slot, 10);
	CHECK_NEAR(hits[4].dist_m, geo_dist_haversine_m(lat0, lon0, -52.0, -175.0), 1e-6);
	geo_grid_free(g);
}

UNIT_TEST(grid_staleness_filter_and_sweep)
{
	struct geo_grid *g = grid_make(0, 1000);
	struct geo_grid_hit hits[8];
	uint32_t ev[1000];
	size_t n = 0;
	int64_t now = 1000000;
	REQUIRE(g);
	/* Slot s pinged s seconds ago. */
	for (uint32_t s = 0; s < 60; s++) {
		struct geo_grid_driver d = { 40.75 + (s + 1) * 1e-5, -73.98, now - 1000 * (int64_t)s, 1, 1 };
		REQUIRE(geo_grid_insert(g, s * 10, &d) == RH_OK);
	}
	/* Fresh means ping_ms > now - stale_after: 30 s ago is stale. */
	struct geo_grid_filter f = { UINT32_MAX, UINT16_MAX, now, 30000 };
	size_t total = 0;
	CHECK_EQ_INT(geo_grid_nearest(g, 40.75, -73.98, 5000, &f, hits, 8, &n), RH_OK);
	CHECK_EQ_INT(n, 8);
	for (size_t i = 0; i < n; i++)
		CHECK(hits[i].slot < 300);
	struct geo_grid_hit all[64];
	CHECK_EQ_INT(geo_grid_nearest(g, 40.75, -73.98, 5000, &f, all, 64, &n), RH_OK);
	CHECK_EQ_INT(n, 30); /* slots 0..290, pings 0..29 s old */
	f.stale_after_ms = 30001;
	CHECK_EQ_INT(geo_grid_nearest(g, 40.75, -73.98, 5000, &f, all, 64, &n), RH_OK);
	CHECK_EQ_INT(n, 31);
	/* A fresh ping brings a stale driver back. */
	REQUIRE(geo_grid_move(g, 590, 40.75, -73.98, now) == RH_OK);
	CHECK_EQ_INT(geo_grid_nearest(g, 40.75, -73.98, 5000, &f, hits, 1, &n), RH_OK);
	CHECK_EQ_INT(n, 1);
	CHECK_EQ_INT(hits[0].slot, 590);

	/* Sweeping: bounded work per call, resumes where it stopped. Evict
	 * pings at or before now - 45 s: slots 450..580 (14 drivers). */
	size_t got = geo_grid_sweep_stale(g, now, 45000, 100, ev, 1000);
	for (size_t i = 0; i < got; i++)
		CHECK(ev[i] < 100 && ev[i] >= 450); /* nothing below slot 100 is stale */
	CHECK_EQ_INT(got, 0);
	total = 0;
	for (int calls = 0; calls < 20; calls++) {
		got = geo_grid_sweep_stale(g, now, 45000, 100, ev, 3);
		CHECK(got <= 3);
		for (size_t i = 0; i < got; i++) {
			CHECK(ev[i] >= 450 && ev[i] <= 580 && ev[i] % 10 == 0);
			CHECK(!geo_grid_has(g, ev[i]));
		}
		total += got;
	}
	CHECK_EQ_INT(total, 14);
	CHECK_EQ_INT(geo_grid_count(g), 46);
	CHECK(geo_grid_has(g, 590));
	CHECK(geo_grid_has(g, 440));
	struct geo_grid_stats st;
	geo_grid_stats_get(g, &st);
	CHECK_EQ_U64(st.evictions, 14);
	/* No freshness filter: everything left is visible. */
	f.stale_after_ms = GEO_GRID_NO_STALE;
	CHECK_EQ_INT(geo_grid_nearest(g, 40.75, -73.98, 5000, &f, all, 64, &n), RH_OK);
	CHECK_EQ_INT(n, 46);
	/* Extreme clocks do not overflow. */
	f.now_ms = INT64_MIN + 5;
	f.stale_after_ms = 30000;
	CHECK_EQ_INT(geo_grid_nearest(g, 40.75, -73.98, 5000, &f, all, 64, &n), RH_OK);
	CHECK_EQ_INT(n, 46);
	f.now_ms = INT64_MAX;
	CHECK_EQ_INT(geo_grid_nearest(g, 40.75, -73.98, 5000, &f, all, 64, &n), RH_OK);
	CHECK_EQ_INT(n, 0);
	geo_grid_free(g);
}

UNIT_TEST(grid_moves_across_cells_keep_cells_consistent)
{
	/* One driver walks east across many cell edges (and the antimeridian);
	 * another shares its cell at times. Each step: found at the new place,
	 * not at the old, and empty cells are released. */
	struct geo_grid *g = grid_make(30, 4);
	struct geo_grid_hit hits[4];
	struct geo_grid_filter f = { UINT32_MAX, UINT16_MAX, 0, GEO_GRID_NO_STALE };
	size_t n;
	REQUIRE(g);
	struct geo_grid_driver a = { 0.5, 179.0, 0, 1, 1 }, b = { 0.5, 179.0, 0, 1, 2 };
	REQUIRE(geo_grid_insert(g, 0, &a) == RH_OK);
	REQUIRE(geo_grid_insert(g, 1, &b) == RH_OK);
	CHECK_EQ_INT(geo_grid_cell_count(g), 1);
	double lon = 179.0;
	for (int step = 0; step < 400; step++) {
		double old = lon;
		lon = wrap_lon(lon + 0.005);
		REQUIRE(geo_grid_move(g, 0, 0.5, lon, step) == RH_OK);
		f.vehicle_mask = 1;
		CHECK_EQ_INT(geo_grid_nearest(g, 0.5, lon, 1, &f, hits, 4, &n), RH_OK);
		CHECK(n == 1 && hits[0].slot == 0);
		CHECK_EQ_INT(geo_grid_nearest(g, 0.5, old, 1, &f, hits, 4, &n), RH_OK);
		CHECK_EQ_INT(n, 0);
		uint64_t ka, kb;
		REQUIRE(geo_hash_encode(0.5, lon, 30, &ka) == RH_OK);
		REQUIRE(geo_hash_encode(0.5, 179.0, 30, &kb) == RH_OK);
		CHECK_EQ_INT(geo_grid_cell_count(g), ka == kb ? 1 : 2);
	}
	struct geo_grid_stats st;
	geo_grid_stats_get(g, &st);
	CHECK(st.cell_changes > 10);
	REQUIRE(geo_grid_remove(g, 0) == RH_OK);
	REQUIRE(geo_grid_remove(g, 1) == RH_OK);
	CHECK_EQ_INT(geo_grid_cell_count(g), 0);
	CHECK_EQ_INT(geo_grid_count(g), 0);
	geo_grid_free(g);
}

UNIT_TEST(grid_dense_cell_swap_remove)
{
	/* Many drivers in one cell, removed in random order: the swap-remove
	 * back-indices must stay right (get returns each driver's own data). */
	rng_state = unit_seed() ^ 0xce11;
	struct geo_grid *g = grid_make(20, 500);
	REQUIRE(g);
	bool in[500] = { false };
	for (uint32_t s = 0; s < 500; s++) {
		struct geo_grid_driver d = { 10.0 + s * 1e-7, 20.0, s, (uint8_t)(s % 32), (uint16_t)s };
		REQUIRE(geo_grid_insert(g, s, &d) == RH_OK);
		in[s] = true;
	}
	CHECK_EQ_INT(geo_grid_cell_count(g), 1);
	for (int k = 0; k < 2000; k++) {
		uint32_t s = (uint32_t)(rng_next() % 500);
		if (in[s]) {
			REQUIRE(geo_grid_remove(g, s) == RH_OK);
		} else {
			struct geo_grid_driver d = { 10.0 + s * 1e-7, 20.0, s, (uint8_t)(s % 32), (uint16_t)s };
			REQUIRE(geo_grid_insert(g, s, &d) == RH_OK);
		}
		in[s] = !in[s];
	}
	for (uint32_t s = 0; s < 500; s++) {
		struct geo_grid_driver d;
		if (!in[s]) {
			CHECK(!geo_grid_has(g, s));
			continue;
		}
		REQUIRE(geo_grid_get(g, s, &d) == RH_OK);
		CHECK(d.lat == 10.0 + s * 1e-7 && d.ping_ms == s && d.status == s % 32 && d.vehicle == s);
	}
	geo_grid_free(g);
}

UNIT_TEST(grid_memory_is_released)
{
	int64_t before = rh_alloc_live_bytes();
	struct geo_grid *g = grid_make(0, 20000);
	REQUIRE(g);
	rng_state = unit_seed() ^ 0x3e3;
	for (uint32_t s = 0; s < 20000; s++) {
		struct geo_grid_driver d;
		random_driver(&d, 48.85, 2.35, 0.09, 0);
		REQUIRE(geo_grid_insert(g, s, &d) == RH_OK);
	}
	size_t mem = geo_grid_memory_bytes(g);
	/* Entries (40 B), slot records (24 B) and cells: well under 200 B/driver. */
	CHECK(mem > 20000 * 64 && mem < 20000 * 200);
	CHECK(rh_alloc_live_bytes() - before >= (int64_t)mem - 4096);
	geo_grid_free(g);
	CHECK_EQ_INT(rh_alloc_live_bytes(), before);
}
