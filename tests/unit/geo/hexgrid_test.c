#include "geo/hexgrid.h"

#include <stdlib.h>

#include "geo/geohash.h"

#include "../unit.h"

static uint64_t hex_rng;
static double hex_unit(void)
{
	uint64_t z = (hex_rng += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	z ^= z >> 31;
	return (double)(z >> 11) / 9007199254740992.0;
}

/* Distance on the projection, metres. */
static double plane_d(const struct geo_hexgrid *g, double lat1, double lon1, double lat2, double lon2)
{
	double dx = (lon1 - lon2) * g->kx, dy = (lat1 - lat2) * g->ky;
	return sqrt(dx * dx + dy * dy);
}

/* Brute force: the cell whose centre is nearest, among every cell within
 * four steps of the answer, is the answer (ties within a micrometre aside). */
UNIT_TEST(hexgrid_point_goes_to_the_nearest_centre)
{
	hex_rng = unit_seed();
	for (int city = 0; city < 20; city++) {
		struct geo_hexgrid g;
		double lat0 = -70 + 140 * hex_unit(), lon0 = -170 + 340 * hex_unit();
		geo_hexgrid_init(&g, lat0, 0.5 + 8 * hex_unit());
		for (int i = 0; i < 500; i++) {
			double lat = lat0 + (hex_unit() - 0.5) * 0.5, lon = lon0 + (hex_unit() - 0.5) * 0.5;
			geo_hex h = geo_hex_of(&g, lat, lon);
			double clat, clon;
			geo_hex_centre(&g, h, &clat, &clon);
			double best = plane_d(&g, lat, lon, clat, clon);
			CHECK(best <= g.size_m * (1 + 1e-9)); /* inside the circumcircle */
			for (int dq = -4; dq <= 4; dq++) {
				for (int dr = -4; dr <= 4; dr++) {
					geo_hex o = geo_hex_pack(geo_hex_q(h) + dq, geo_hex_r(h) + dr);
					if (o == h)
						continue;
					double olat, olon;
					geo_hex_centre(&g, o, &olat, &olon);
					double d = plane_d(&g, lat, lon, olat, olon);
					if (d < best - 1e-6)
						unit_fail(__FILE__, __LINE__, "(%.7f, %.7f): cell h%d_%d at %.3f m, h%d_%d nearer at %.3f m",
							  lat, lon, geo_hex_q(h), geo_hex_r(h), best, geo_hex_q(o), geo_hex_r(o), d);
				}
			}
			/* the centre of a cell is in that cell */
			CHECK(geo_hex_of(&g, clat, clon) == h);
		}
	}
}

UNIT_TEST(hexgrid_cells_have_the_asked_area_and_six_equidistant_neighbours)
{
	struct geo_hexgrid g;
	geo_hexgrid_init(&g, 40.75, 5.16);
	CHECK_NEAR(geo_hexgrid_area_km2(&g), 5.16, 1e-9);
	CHECK_NEAR(g.size_m, 1409.3, 0.1); /* H3 resolution 7: edge 1.22 km on average, area 5.16 km2 */
	geo_hex h = geo_hex_of(&g, 40.7549, -73.9840); /* Times Square */
	double clat, clon;
	geo_hex_centre(&g, h, &clat, &clon);
	geo_hex nb[6];
	geo_hex_neighbours(h, nb);
	for (int i = 0; i < 6; i++) {
		double nlat, nlon;
		geo_hex_centre(&g, nb[i], &nlat, &nlon);
		/* on the ground, not only on the projection: within 0.2% near lat0 */
		CHECK_NEAR(geo_dist_haversine_m(clat, clon, nlat, nlon), g.size_m * sqrt(3.0), g.size_m * sqrt(3.0) * 0.002);
		CHECK_EQ_INT(geo_hex_distance(h, nb[i]), 1);
		for (int j = 0; j < i; j++)
			CHECK(nb[i] != nb[j]);
	}
	/* the corners: at the circumradius, counter-clockwise (GeoJSON's right-hand rule) */
	double lat[6], lon[6], area2 = 0;
	geo_hex_corners(&g, h, lat, lon);
	for (int i = 0; i < 6; i++) {
		CHECK_NEAR(plane_d(&g, clat, clon, lat[i], lon[i]), g.size_m, 1e-6);
		int j = (i + 1) % 6;
		area2 += (lon[i] - clon) * g.kx * (lat[j] - clat) * g.ky - (lon[j] - clon) * g.kx * (lat[i] - clat) * g.ky;
	}
	CHECK(area2 > 0);
	CHECK_NEAR(area2 / 2 / 1e6, 5.16, 1e-6);
}

UNIT_TEST(hexgrid_distance_is_the_breadth_first_distance)
{
	/* BFS from the origin over neighbours up to 6 steps */
	enum { R = 7, W = 2 * R + 1 };
	int dist[W][W];
	for (int i = 0; i < W; i++)
		for (int j = 0; j < W; j++)
			dist[i][j] = -1;
	geo_hex queue[W * W];
	int head = 0, tail = 0;
	geo_hex o = geo_hex_pack(0, 0);
	dist[R][R] = 0;
	queue[tail++] = o;
	while (head < tail) {
		geo_hex h = queue[head++];
		int d = dist[geo_hex_q(h) + R][geo_hex_r(h) + R];
		geo_hex nb[6];
		geo_hex_neighbours(h, nb);
		for (int k = 0; k < 6; k++) {
			int q = geo_hex_q(nb[k]) + R, r = geo_hex_r(nb[k]) + R;
			if (q < 0 || q >= W || r < 0 || r >= W || dist[q][r] >= 0 || d + 1 > R - 1)
				continue;
			dist[q][r] = d + 1;
			queue[tail++] = nb[k];
		}
	}
	for (int q = 0; q < W; q++)
		for (int r = 0; r < W; r++)
			if (dist[q][r] >= 0)
				CHECK_EQ_INT(geo_hex_distance(o, geo_hex_pack(q - R, r - R)), dist[q][r]);
	/* a ring k has 6k cells */
	int ring[R] = { 0 };
	for (int q = 0; q < W; q++)
		for (int r = 0; r < W; r++)
			if (dist[q][r] >= 0)
				ring[dist[q][r]]++;
	CHECK_EQ_INT(ring[0], 1);
	for (int k = 1; k < R; k++)
		CHECK_EQ_INT(ring[k], 6 * k);
}

UNIT_TEST(hexgrid_names_round_trip)
{
	char id[GEO_HEX_ID_MAX];
	const int32_t v[][2] = { { 0, 0 }, { -5123, 2210 }, { INT32_MIN, INT32_MAX }, { 7, -1 } };
	for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
		geo_hex h = geo_hex_pack(v[i][0], v[i][1]), back;
		geo_hex_format(h, id);
		REQUIRE(geo_hex_parse(id, &back));
		CHECK(back == h);
	}
	geo_hex_format(geo_hex_pack(-5123, 2210), id);
	CHECK_EQ_STR(id, "h-5123_2210");
	const char *bad[] = { "", "h", "h1", "h1_", "h_1", "x1_2", "h1_2x", "h1__2", "h99999999999_1", "h1_2 ", "h--1_2",
			      "H1_2" };
	geo_hex out;
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		if (geo_hex_parse(bad[i], &out))
			unit_fail(__FILE__, __LINE__, "\"%s\" parsed", bad[i]);
}
