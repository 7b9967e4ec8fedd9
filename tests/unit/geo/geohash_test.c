#include "geo/geohash.h"

#include <stdlib.h>

#include "../unit.h"

/* Published geohash strings for known points: the geohash.org / Wikipedia
 * example (Jutland), Chris Veness's latlon-geohash tests (Jutland, Curitiba),
 * the Mount Everest vector used by several integer-geohash libraries
 * (0xceb7f254240fd612 at 64 bits = "tuvz4p141zc1"), and strings checked in
 * other geohash libraries' test suites. */
static const struct {
	double lat, lon;
	const char *hash;
} known[] = {
	{ 57.64911, 10.40744, "u4pruydqqvj" },
	{ 57.648, 10.410, "u4pruy" },
	{ -25.38262, -49.26561, "6gkzwgjz" },
	{ 37.8324, 112.5584, "ww8p1r4t8" },
	{ 32.0, 117.0, "wte" },
	{ 31.55, 121.46, "w" },
	{ 31.55, 121.46, "wt" },
	{ 31.55, 121.46, "wtw77z" },
	{ 27.988056, 86.925278, "tuvz4p141zc1" },
	{ 44.87533558, -64.3057251, "dxfr29mc" },
	{ 46.76244305, -60.6362915, "f8kfh0y4" },
	{ 50.79204706, 61.47949219, "v358zn2j" },
	{ -82.214234, 114.257834, "n93k21252" },
	{ -21.45306863, 137.02148438, "rh1myn84b" },
};

UNIT_TEST(geohash_encode_known_vectors)
{
	for (size_t k = 0; k < RH_ARRAY_LEN(known); k++) {
		unsigned bits = (unsigned)strlen(known[k].hash) * 5;
		uint64_t h = 0, parsed = 0;
		unsigned pbits = 0;
		char s[16];
		CHECK_EQ_INT(geo_hash_encode(known[k].lat, known[k].lon, bits, &h), RH_OK);
		CHECK_EQ_INT(geo_hash_to_string(h, bits, s, sizeof s), RH_OK);
		CHECK_EQ_STR(s, known[k].hash);
		CHECK_EQ_INT(geo_hash_from_string(known[k].hash, strlen(known[k].hash), &parsed, &pbits), RH_OK);
		CHECK_EQ_U64(parsed, h);
		CHECK_EQ_INT(pbits, bits);
	}
}

UNIT_TEST(geohash_encode_everest_integer)
{
	/* The 64-bit integer geohash of Mount Everest is 0xceb7f254240fd612;
	 * our 60-bit hash is its prefix. */
	uint64_t h = 0;
	CHECK_EQ_INT(geo_hash_encode(27.988056, 86.925278, 60, &h), RH_OK);
	CHECK_EQ_U64(h, 0xceb7f254240fd612ULL >> 4);
	CHECK_EQ_INT(geo_hash_encode(27.988056, 86.925278, 32, &h), RH_OK);
	CHECK_EQ_U64(h, 0xceb7f254240fd612ULL >> 32);
}

UNIT_TEST(geohash_decode_known_cells)
{
	/* Wikipedia's decoding example: "ezs42" is 42.605 +- 0.022, -5.603 +- 0.022. */
	uint64_t h;
	unsigned bits;
	struct geo_cell c;
	double lat, lon;
	REQUIRE(geo_hash_from_string("ezs42", 5, &h, &bits) == RH_OK);
	REQUIRE(geo_hash_decode(h, bits, &c) == RH_OK);
	geo_cell_centre(&c, &lat, &lon);
	CHECK_NEAR(lat, 42.605, 0.0005);
	CHECK_NEAR(lon, -5.603, 0.0005);
	CHECK_NEAR(c.lat_max - c.lat_min, 180.0 / 4096, 1e-12);
	CHECK_NEAR(c.lon_max - c.lon_min, 360.0 / 8192, 1e-12);
	/* The exact bounds of "ezs42": 12 lat bits, 13 lon bits. */
	CHECK_EQ_INT(c.lat_min == 42.5830078125, 1);
	CHECK_EQ_INT(c.lon_min == -5.625, 1);
	/* geohash.org's example decodes back around its point. */
	REQUIRE(geo_hash_from_string("u4pruydqqvj", 11, &h, &bits) == RH_OK);
	REQUIRE(geo_hash_decode(h, bits, &c) == RH_OK);
	CHECK(c.lat_min <= 57.64911 && 57.64911 < c.lat_max);
	CHECK(c.lon_min <= 10.40744 && 10.40744 < c.lon_max);
	CHECK_EQ_INT(geo_hash_decode(h, 50, &c), RH_EINVAL); /* bits above 50 set */
	CHECK_EQ_INT(geo_hash_decode(0, 0, &c), RH_EINVAL);
	CHECK_EQ_INT(geo_hash_decode(0, 61, &c), RH_EINVAL);
}

static uint64_t hash_of(const char *s)
{
	uint64_t h = 0;
	unsigned bits = 0;
	if (geo_hash_from_string(s, strlen(s), &h, &bits) != RH_OK)
		return GEO_HASH_NONE;
	return h;
}

static const char *string_of(uint64_t h, unsigned bits)
{
	static char buf[8][16];
	static int n;
	char *s = buf[n++ & 7];
	if (h == GEO_HASH_NONE || geo_hash_to_string(h, bits, s, 16) != RH_OK)
		return "(none)";
	return s;
}

UNIT_TEST(geohash_neighbours_known_vector)
{
	/* latlon-geohash's test: the neighbours of "ezzz" straddle the equator
	 * and the prime meridian. */
	static const char *want[8] = { "gbpb", "u000", "spbp", "spbn", "ezzy", "ezzw", "ezzx", "gbp8" };
	uint64_t out[8];
	geo_hash_neighbours(hash_of("ezzz"), 20, out);
	for (int k = 0; k < 8; k++)
		CHECK_EQ_STR(string_of(out[k], 20), want[k]);
}

UNIT_TEST(geohash_neighbours_antimeridian_and_poles)
{
	uint64_t out[8], h;
	struct geo_cell c, n;
	/* A cell touching +180: its eastern neighbours start at -180. */
	REQUIRE(geo_hash_encode(10.0, 179.9999, 30, &h) == RH_OK);
	geo_hash_neighbours(h, 30, out);
	REQUIRE(geo_hash_decode(h, 30, &c) == RH_OK);
	for (int k = GEO_DIR_NE; k <= GEO_DIR_SE; k++) {
		REQUIRE(out[k] != GEO_HASH_NONE);
		REQUIRE(geo_hash_decode(out[k], 30, &n) == RH_OK);
		CHECK_EQ_INT(n.lon_min == -180.0, 1);
	}
	REQUIRE(geo_hash_decode(out[GEO_DIR_E], 30, &n) == RH_OK);
	CHECK_EQ_INT(n.lat_min == c.lat_min, 1);
	/* And the western neighbours of a cell at -180 end at +180. */
	REQUIRE(geo_hash_encode(-10.0, -180.0, 30, &h) == RH_OK);
	geo_hash_neighbours(h, 30, out);
	REQUIRE(geo_hash_decode(out[GEO_DIR_W], 30, &n) == RH_OK);
	CHECK_EQ_INT(n.lon_max == 180.0, 1);
	/* The northernmost row has no northern neighbours; the rest exist. */
	REQUIRE(geo_hash_encode(90.0, 0.0, 30, &h) == RH_OK);
	geo_hash_neighbours(h, 30, out);
	CHECK_EQ_U64(out[GEO_DIR_N], GEO_HASH_NONE);
	CHECK_EQ_U64(out[GEO_DIR_NE], GEO_HASH_NONE);
	CHECK_EQ_U64(out[GEO_DIR_NW], GEO_HASH_NONE);
	CHECK(out[GEO_DIR_S] != GEO_HASH_NONE);
	CHECK(out[GEO_DIR_E] != GEO_HASH_NONE && out[GEO_DIR_W] != GEO_HASH_NONE);
	REQUIRE(geo_hash_encode(-90.0, 0.0, 30, &h) == RH_OK);
	geo_hash_neighbours(h, 30, out);
	CHECK_EQ_U64(out[GEO_DIR_S], GEO_HASH_NONE);
	CHECK_EQ_U64(out[GEO_DIR_SE], GEO_HASH_NONE);
	CHECK_EQ_U64(out[GEO_DIR_SW], GEO_HASH_NONE);
	CHECK(out[GEO_DIR_N] != GEO_HASH_NONE);
	/* One bit: one row of two columns; east and west are the other half. */
	REQUIRE(geo_hash_encode(0.0, -10.0, 1, &h) == RH_OK);
	CHECK_EQ_U64(h, 0);
	geo_hash_neighbours(h, 1, out);
	CHECK_EQ_U64(out[GEO_DIR_E], 1);
	CHECK_EQ_U64(out[GEO_DIR_W], 1);
	CHECK_EQ_U64(out[GEO_DIR_N], GEO_HASH_NONE);
}

/* The textbook algorithm, one bisection per bit, as the reference. */
static uint64_t bisect_encode(double lat, double lon, unsigned bits)
{
	double la[2] = { -90, 90 }, lo[2] = { -180, 180 };
	uint64_t h = 0;
	for (unsigned b = 0; b < bits; b++) {
		double *r = (b & 1) ? la : lo;
		double v = (b & 1) ? lat : lon;
		double mid = (r[0] + r[1]) / 2;
		h <<= 1;
		if (v >= mid) {
			h |= 1;
			r[0] = mid;
		} else {
			r[1] = mid;
		}
	}
	return h;
}

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

UNIT_TEST(geohash_encode_matches_bisection)
{
	rng_state = unit_seed();
	for (int n = 0; n < 200000; n++) {
		unsigned bits = 1 + (unsigned)(rng_next() % GEO_HASH_MAX_BITS);
		double lat, lon;
		if (n % 3 == 0) {
			/* Exactly on a cell edge of some precision. */
			unsigned k = (unsigned)(rng_next() % 31);
			lat = -90.0 + 180.0 * (double)(rng_next() % ((1ULL << k) + 1)) / (double)(1ULL << k);
			lon = -180.0 + 360.0 * (double)(rng_next() % ((1ULL << k) + 1)) / (double)(1ULL << k);
			/* ... or one ulp either side of it, where (v - lo) rounds
			 * onto the edge. */
			int side = (int)(rng_next() % 3);
			if (side == 1 && lat > -90.0 && lon > -180.0) {
				lat = nextafter(lat, -INFINITY);
				lon = nextafter(lon, -INFINITY);
			} else if (side == 2 && lat < 90.0 && lon < 180.0) {
				lat = nextafter(lat, INFINITY);
				lon = nextafter(lon, INFINITY);
			}
		} else {
			lat = rng_unit() * 180.0 - 90.0;
			lon = rng_unit() * 360.0 - 180.0;
		}
		uint64_t h = 0;
		REQUIRE(geo_hash_encode(lat, lon, bits, &h) == RH_OK);
		uint64_t want = bisect_encode(lat, lon, bits);
		if (h != want) {
			unit_fail(__FILE__, __LINE__, "encode(%.17g, %.17g, %u) = %#" PRIx64 ", bisection %#" PRIx64,
				  lat, lon, bits, h, want);
			return;
		}
		/* The cell contains the point (edges: half-open, 90/180 in the last). */
		struct geo_cell c;
		REQUIRE(geo_hash_decode(h, bits, &c) == RH_OK);
		CHECK(c.lat_min <= lat && (lat < c.lat_max || lat == 90.0));
		CHECK(c.lon_min <= lon && (lon < c.lon_max || lon == 180.0));
		/* Shorter hashes are prefixes. */
		if (bits > 1) {
			uint64_t shorter = 0;
			REQUIRE(geo_hash_encode(lat, lon, bits - 1, &shorter) == RH_OK);
			CHECK_EQ_U64(shorter, h >> 1);
		}
	}
}

UNIT_TEST(geohash_edges_and_invalid_input)
{
	uint64_t h = 0;
	char s[16];
	/* The origin is on the first split of both axes: "s000..." under the
	 * half-open convention. */
	REQUIRE(geo_hash_encode(0.0, 0.0, 60, &h) == RH_OK);
	REQUIRE(geo_hash_to_string(h, 60, s, sizeof s) == RH_OK);
	CHECK_EQ_STR(s, "s00000000000");
	REQUIRE(geo_hash_encode(90.0, 180.0, 60, &h) == RH_OK);
	CHECK_EQ_U64(h, (1ULL << 60) - 1);
	REQUIRE(geo_hash_encode(-90.0, -180.0, 60, &h) == RH_OK);
	CHECK_EQ_U64(h, 0);
	CHECK_EQ_INT(geo_hash_encode(90.0000001, 0, 30, &h), RH_EINVAL);
	CHECK_EQ_INT(geo_hash_encode(0, -180.0000001, 30, &h), RH_EINVAL);
	CHECK_EQ_INT(geo_hash_encode(NAN, 0, 30, &h), RH_EINVAL);
	CHECK_EQ_INT(geo_hash_encode(0, NAN, 30, &h), RH_EINVAL);
	CHECK_EQ_INT(geo_hash_encode(0, INFINITY, 30, &h), RH_EINVAL);
	CHECK_EQ_INT(geo_hash_encode(0, 0, 0, &h), RH_EINVAL);
	CHECK_EQ_INT(geo_hash_encode(0, 0, 61, &h), RH_EINVAL);
	CHECK(!geo_coord_is_valid(NAN, 0));
	CHECK(geo_coord_is_valid(-90, 180));
}

UNIT_TEST(geohash_string_conversion)
{
	uint64_t h = 0;
	unsigned bits = 0;
	char s[16];
	CHECK_EQ_INT(geo_hash_from_string("U4PRUYDQQVJ", 11, &h, &bits), RH_OK);
	CHECK_EQ_INT(geo_hash_to_string(h, bits, s, sizeof s), RH_OK);
	CHECK_EQ_STR(s, "u4pruydqqvj");
	CHECK_EQ_INT(geo_hash_from_string("", 0, &h, &bits), RH_EINVAL);
	CHECK_EQ_INT(geo_hash_from_string("0123456789bcd", 13, &h, &bits), RH_EINVAL);
	CHECK_EQ_INT(geo_hash_from_string("u4pa", 4, &h, &bits), RH_EINVAL);
	CHECK_EQ_INT(geo_hash_from_string("u4pi", 4, &h, &bits), RH_EINVAL);
	CHECK_EQ_INT(geo_hash_from_string("u4pl", 4, &h, &bits), RH_EINVAL);
	CHECK_EQ_INT(geo_hash_from_string("u4po", 4, &h, &bits), RH_EINVAL);
	CHECK_EQ_INT(geo_hash_from_string("u4p\0", 4, &h, &bits), RH_EINVAL);
	CHECK_EQ_INT(geo_hash_from_string("zzzzzzzzzzzz", 12, &h, &bits), RH_OK);
	CHECK_EQ_U64(h, (1ULL << 60) - 1);
	CHECK_EQ_INT(geo_hash_to_string(h, 60, s, 12), RH_EINVAL); /* no room for NUL */
	CHECK_EQ_INT(geo_hash_to_string(1, 32, s, sizeof s), RH_EINVAL); /* not a multiple of 5 */
	CHECK_EQ_INT(geo_hash_to_string(32, 5, s, sizeof s), RH_EINVAL); /* bits above 5 */
}

UNIT_TEST(geohash_index_roundtrip)
{
	rng_state = unit_seed() ^ 0x5eed;
	for (int n = 0; n < 100000; n++) {
		unsigned bits = 1 + (unsigned)(rng_next() % GEO_HASH_MAX_BITS);
		uint64_t h = rng_next() & ((1ULL << bits) - 1);
		uint32_t i, j;
		geo_hash_to_index(h, bits, &i, &j);
		CHECK(i < (1ULL << geo_hash_lat_bits(bits)));
		CHECK(j < (1ULL << geo_hash_lon_bits(bits)));
		CHECK_EQ_U64(geo_hash_from_index(i, j, bits), h);
		/* A neighbour step and back is the identity away from the poles. */
		uint64_t e = geo_hash_neighbour(h, bits, 0, 1);
		CHECK_EQ_U64(geo_hash_neighbour(e, bits, 0, -1), h);
		uint64_t nn = geo_hash_neighbour(h, bits, 1, 0);
		if (nn != GEO_HASH_NONE)
			CHECK_EQ_U64(geo_hash_neighbour(nn, bits, -1, 0), h);
		else
			CHECK_EQ_INT(i, (1ULL << geo_hash_lat_bits(bits)) - 1);
	}
}

UNIT_TEST(geohash_haversine_known_distances)
{
	/* One degree of arc on the sphere. */
	CHECK_NEAR(geo_dist_haversine_m(0, 0, 0, 1), GEO_EARTH_RADIUS_M * M_PI / 180, 1e-6);
	CHECK_NEAR(geo_dist_haversine_m(0, 0, 1, 0), GEO_EARTH_RADIUS_M * M_PI / 180, 1e-6);
	/* Pole to pole, equator antipodes, across the antimeridian. */
	CHECK_NEAR(geo_dist_haversine_m(90, 0, -90, 0), GEO_EARTH_RADIUS_M * M_PI, 0.2);
	CHECK_NEAR(geo_dist_haversine_m(0, 0, 0, 180), GEO_EARTH_RADIUS_M * M_PI, 0.2);
	CHECK_NEAR(geo_dist_haversine_m(0, 179.5, 0, -179.5), GEO_EARTH_RADIUS_M * M_PI / 180, 1e-6);
	CHECK_NEAR(geo_dist_haversine_m(89.9, 0, 89.9, 180), GEO_EARTH_RADIUS_M * 0.2 * M_PI / 180, 1e-6);
	CHECK_EQ_INT(geo_dist_haversine_m(52.1, 5.1, 52.1, 5.1) == 0.0, 1);
	/* Paris (48.8566, 2.3522) to London (51.5074, -0.1278): 343.5 km on
	 * this sphere (a commonly quoted check of haversine calculators). */
	CHECK_NEAR(geo_dist_haversine_m(48.8566, 2.3522, 51.5074, -0.1278) / 1000, 343.56, 0.05);
}

static double max_equirect_error(double max_d, double max_lat, int samples)
{
	double worst = 0;
	for (int n = 0; n < samples; n++) {
		double lat1 = (rng_unit() * 2 - 1) * max_lat, lon1 = rng_unit() * 360 - 180;
		double d = rng_unit() * max_d, th = rng_unit() * 2 * M_PI;
		double lat2 = lat1 + d * cos(th) / 111195.0;
		double lon2 = lon1 + d * sin(th) / (111195.0 * cos(lat1 * M_PI / 180));
		if (fabs(lat2) > max_lat)
			continue;
		if (lon2 > 180)
			lon2 -= 360;
		if (lon2 < -180)
			lon2 += 360;
		double h = geo_dist_haversine_m(lat1, lon1, lat2, lon2);
		double e = geo_dist_equirect_m(lat1, lon1, lat2, lon2);
		if (h > 1.0 && fabs(e - h) / h > worst)
			worst = fabs(e - h) / h;
		if (h <= 1.0 && fabs(e - h) > 1e-4)
			worst = 1; /* tiny distances: absolute error must stay sub-mm */
	}
	return worst;
}

UNIT_TEST(geohash_equirect_error_bound)
{
	/* The bounds stated in geohash.h. */
	rng_state = unit_seed() ^ 0xe9;
	double e1 = max_equirect_error(20000, 80, 200000);
	double e2 = max_equirect_error(100000, 70, 200000);
	CHECK(e1 < 3e-5);
	CHECK(e2 < 1e-4);
	/* Across the antimeridian it is still a short distance. */
	CHECK_NEAR(geo_dist_equirect_m(0, 179.99, 0, -179.99), geo_dist_haversine_m(0, 179.99, 0, -179.99), 0.01);
}
