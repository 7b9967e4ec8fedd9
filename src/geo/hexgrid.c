#include "geo/hexgrid.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "geo/geohash.h"

#define HEX_SQRT3 1.7320508075688772

void geo_hexgrid_init(struct geo_hexgrid *g, double lat0, double area_km2)
{
	if (lat0 > 80)
		lat0 = 80;
	if (lat0 < -80)
		lat0 = -80;
	g->lat0 = lat0;
	/* area = 3 sqrt(3) / 2 * size^2 */
	g->size_m = sqrt(2.0 * area_km2 * 1e6 / (3.0 * HEX_SQRT3));
	g->inv_size = 1.0 / g->size_m;
	g->ky = GEO_EARTH_RADIUS_M * M_PI / 180.0;
	g->kx = g->ky * cos(lat0 * M_PI / 180.0);
}

double geo_hexgrid_area_km2(const struct geo_hexgrid *g)
{
	return 1.5 * HEX_SQRT3 * g->size_m * g->size_m / 1e6;
}

geo_hex geo_hex_of(const struct geo_hexgrid *g, double lat, double lon)
{
	double x = lon * g->kx * g->inv_size, y = lat * g->ky * g->inv_size;
	double fq = HEX_SQRT3 / 3.0 * x - y / 3.0;
	double fr = 2.0 / 3.0 * y;
	double fs = -fq - fr;
	/* cube rounding: round all three (halves away from zero, a truncating
	 * conversion: nearbyint() is a call without -msse4.1), then fix the one
	 * that moved most */
	double q = (double)(int64_t)(fq + (fq < 0 ? -0.5 : 0.5)), r = (double)(int64_t)(fr + (fr < 0 ? -0.5 : 0.5)),
	       s = (double)(int64_t)(fs + (fs < 0 ? -0.5 : 0.5));
	double dq = fabs(q - fq), dr = fabs(r - fr), ds = fabs(s - fs);
	if (dq > dr && dq > ds)
		q = -r - s;
	else if (dr > ds)
		r = -q - s;
	return geo_hex_pack((int32_t)q, (int32_t)r);
}

void geo_hex_centre(const struct geo_hexgrid *g, geo_hex h, double *lat, double *lon)
{
	double q = geo_hex_q(h), r = geo_hex_r(h);
	double x = g->size_m * HEX_SQRT3 * (q + r / 2.0);
	double y = g->size_m * 1.5 * r;
	*lat = y / g->ky;
	*lon = x / g->kx;
}

void geo_hex_corners(const struct geo_hexgrid *g, geo_hex h, double lat[6], double lon[6])
{
	double clat, clon;
	geo_hex_centre(g, h, &clat, &clon);
	for (int i = 0; i < 6; i++) {
		double a = (30.0 + 60.0 * i) * M_PI / 180.0;
		lat[i] = clat + g->size_m * sin(a) / g->ky;
		lon[i] = clon + g->size_m * cos(a) / g->kx;
	}
}

void geo_hex_neighbours(geo_hex h, geo_hex out[6])
{
	static const int d[6][2] = { { 1, 0 }, { 0, 1 }, { -1, 1 }, { -1, 0 }, { 0, -1 }, { 1, -1 } };
	int32_t q = geo_hex_q(h), r = geo_hex_r(h);
	for (int i = 0; i < 6; i++)
		out[i] = geo_hex_pack(q + d[i][0], r + d[i][1]);
}

int geo_hex_distance(geo_hex a, geo_hex b)
{
	int64_t dq = (int64_t)geo_hex_q(a) - geo_hex_q(b), dr = (int64_t)geo_hex_r(a) - geo_hex_r(b);
	int64_t ds = -dq - dr;
	return (int)((llabs(dq) + llabs(dr) + llabs(ds)) / 2);
}

void geo_hex_format(geo_hex h, char *out)
{
	snprintf(out, GEO_HEX_ID_MAX, "h%d_%d", (int)geo_hex_q(h), (int)geo_hex_r(h));
}

/* An int32 in decimal, optionally negative: *s advanced past it. */
static bool geo_hex_int(const char **s, int32_t *out)
{
	const char *p = *s;
	bool neg = *p == '-';
	if (neg)
		p++;
	if (*p < '0' || *p > '9')
		return false;
	int64_t v = 0;
	int n = 0;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (++n > 10)
			return false;
		v = v * 10 + (*p - '0');
	}
	if (neg)
		v = -v;
	if (v < INT32_MIN || v > INT32_MAX)
		return false;
	*out = (int32_t)v;
	*s = p;
	return true;
}

bool geo_hex_parse(const char *s, geo_hex *out)
{
	int32_t q, r;
	if (!s || *s++ != 'h' || !geo_hex_int(&s, &q) || *s++ != '_' || !geo_hex_int(&s, &r) || *s)
		return false;
	*out = geo_hex_pack(q, r);
	return true;
}
