#include "geo/geohash.h"

#include <math.h>

#define DEG2RAD (M_PI / 180.0)

static const char geo_base32[] = "0123456789bcdefghjkmnpqrstuvwxyz";

bool geo_coord_is_valid(double lat, double lon)
{
	/* Written so that NaN fails every comparison. */
	return lat >= -90.0 && lat <= 90.0 && lon >= -180.0 && lon <= 180.0;
}

/* Spreads the low 32 bits of x to the even bit positions of the result. */
static inline uint64_t geo_bits_spread(uint32_t v)
{
	uint64_t x = v;
	x = (x | (x << 16)) & 0x0000ffff0000ffffULL;
	x = (x | (x << 8)) & 0x00ff00ff00ff00ffULL;
	x = (x | (x << 4)) & 0x0f0f0f0f0f0f0f0fULL;
	x = (x | (x << 2)) & 0x3333333333333333ULL;
	x = (x | (x << 1)) & 0x5555555555555555ULL;
	return x;
}

/* The inverse: gathers the even bit positions of x into 32 bits. */
static inline uint32_t geo_bits_gather(uint64_t x)
{
	x &= 0x5555555555555555ULL;
	x = (x | (x >> 1)) & 0x3333333333333333ULL;
	x = (x | (x >> 2)) & 0x0f0f0f0f0f0f0f0fULL;
	x = (x | (x >> 4)) & 0x00ff00ff00ff00ffULL;
	x = (x | (x >> 8)) & 0x0000ffff0000ffffULL;
	x = (x | (x >> 16)) & 0x00000000ffffffffULL;
	return (uint32_t)x;
}

/* The most significant bit of a hash is a longitude bit. With an even number
 * of bits longitude therefore sits on the odd positions, with an odd number
 * on the even ones. */
uint64_t geo_hash_from_index(uint32_t lat_idx, uint32_t lon_idx, unsigned bits)
{
	unsigned lon_shift = (bits & 1) ? 0 : 1;
	return geo_bits_spread(lon_idx) << lon_shift | geo_bits_spread(lat_idx) << (1 - lon_shift);
}

void geo_hash_to_index(uint64_t hash, unsigned bits, uint32_t *lat_idx, uint32_t *lon_idx)
{
	unsigned lon_shift = (bits & 1) ? 0 : 1;
	*lon_idx = geo_bits_gather(hash >> lon_shift);
	*lat_idx = geo_bits_gather(hash >> (1 - lon_shift));
}

/* Row of v in [lo, lo + span] split into 2^n rows (n <= 32), exactly as the
 * bisection "v >= mid" would give it. The first estimate can be one off
 * because (v - lo) rounds; the cell edges lo + span*q/2^n are exact in double
 * (span is 180 or 360 = 45*2^k, q < 2^32), so one comparison each way fixes
 * it. */
static inline uint32_t geo_quantize(double v, double lo, double span, unsigned n)
{
	uint64_t cells = 1ULL << n;
	double scale = (double)cells / span;
	double step = span / (double)cells;
	double f = (v - lo) * scale;
	uint64_t q = f <= 0.0 ? 0 : (uint64_t)f;
	if (q >= cells)
		q = cells - 1;
	if (q > 0 && v < lo + step * (double)q)
		q--;
	else if (q + 1 < cells && v >= lo + step * (double)(q + 1))
		q++;
	return (uint32_t)q;
}

void geo_hash_index_of(double lat, double lon, unsigned bits, uint32_t *lat_idx, uint32_t *lon_idx)
{
	*lat_idx = geo_quantize(lat, -90.0, 180.0, geo_hash_lat_bits(bits));
	*lon_idx = geo_quantize(lon, -180.0, 360.0, geo_hash_lon_bits(bits));
}

static bool geo_bits_is_valid(unsigned bits)
{
	return bits >= 1 && bits <= GEO_HASH_MAX_BITS;
}

rh_err geo_hash_encode(double lat, double lon, unsigned bits, uint64_t *out)
{
	uint32_t i, j;
	if (!geo_bits_is_valid(bits) || !geo_coord_is_valid(lat, lon))
		return RH_EINVAL;
	geo_hash_index_of(lat, lon, bits, &i, &j);
	*out = geo_hash_from_index(i, j, bits);
	return RH_OK;
}

rh_err geo_hash_decode(uint64_t hash, unsigned bits, struct geo_cell *out)
{
	uint32_t i, j;
	if (!geo_bits_is_valid(bits) || (hash >> bits) != 0)
		return RH_EINVAL;
	geo_hash_to_index(hash, bits, &i, &j);
	double lat_step = 180.0 / (double)(1ULL << geo_hash_lat_bits(bits));
	double lon_step = 360.0 / (double)(1ULL << geo_hash_lon_bits(bits));
	out->lat_min = -90.0 + lat_step * i;
	out->lat_max = -90.0 + lat_step * (i + 1.0);
	out->lon_min = -180.0 + lon_step * j;
	out->lon_max = -180.0 + lon_step * (j + 1.0);
	return RH_OK;
}

void geo_cell_centre(const struct geo_cell *c, double *lat, double *lon)
{
	*lat = (c->lat_min + c->lat_max) / 2;
	*lon = (c->lon_min + c->lon_max) / 2;
}

uint64_t geo_hash_neighbour(uint64_t hash, unsigned bits, int dlat, int dlon)
{
	uint32_t i, j;
	int64_t rows = (int64_t)1 << geo_hash_lat_bits(bits);
	uint64_t cols = 1ULL << geo_hash_lon_bits(bits);
	geo_hash_to_index(hash, bits, &i, &j);
	int64_t ni = (int64_t)i + dlat;
	if (ni < 0 || ni >= rows)
		return GEO_HASH_NONE;
	/* Columns wrap: unsigned arithmetic modulo a power of two. */
	uint64_t nj = ((uint64_t)j + (uint64_t)(int64_t)dlon) & (cols - 1);
	return geo_hash_from_index((uint32_t)ni, (uint32_t)nj, bits);
}

void geo_hash_neighbours(uint64_t hash, unsigned bits, uint64_t out[8])
{
	static const int8_t d[8][2] = {
		{ 1, 0 }, { 1, 1 }, { 0, 1 }, { -1, 1 }, { -1, 0 }, { -1, -1 }, { 0, -1 }, { 1, -1 },
	};
	for (int k = 0; k < 8; k++)
		out[k] = geo_hash_neighbour(hash, bits, d[k][0], d[k][1]);
}

rh_err geo_hash_to_string(uint64_t hash, unsigned bits, char *out, size_t cap)
{
	unsigned n = bits / GEO_HASH_BITS_PER_CHAR;
	if (!geo_bits_is_valid(bits) || bits % GEO_HASH_BITS_PER_CHAR || cap <= n || (hash >> bits) != 0)
		return RH_EINVAL;
	for (unsigned k = 0; k < n; k++)
		out[k] = geo_base32[(hash >> (bits - GEO_HASH_BITS_PER_CHAR * (k + 1))) & 31];
	out[n] = '\0';
	return RH_OK;
}

static int geo_base32_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		c = (char)(c - 'A' + 'a');
	for (int v = 0; v < 32; v++)
		if (geo_base32[v] == c)
			return v;
	return -1;
}

rh_err geo_hash_from_string(const char *s, size_t len, uint64_t *hash, unsigned *bits)
{
	uint64_t h = 0;
	if (len == 0 || len > GEO_HASH_MAX_CHARS)
		return RH_EINVAL;
	for (size_t k = 0; k < len; k++) {
		int v = geo_base32_value(s[k]);
		if (v < 0)
			return RH_EINVAL;
		h = h << GEO_HASH_BITS_PER_CHAR | (uint64_t)v;
	}
	*hash = h;
	*bits = (unsigned)len * GEO_HASH_BITS_PER_CHAR;
	return RH_OK;
}

double geo_dist_haversine_m(double lat1, double lon1, double lat2, double lon2)
{
	double p1 = lat1 * DEG2RAD, p2 = lat2 * DEG2RAD;
	double sdlat = sin((p2 - p1) / 2);
	double sdlon = sin((lon2 - lon1) * DEG2RAD / 2);
	double a = sdlat * sdlat + cos(p1) * cos(p2) * sdlon * sdlon;
	if (a > 1.0)
		a = 1.0; /* rounding near the antipode */
	return 2 * GEO_EARTH_RADIUS_M * asin(sqrt(a));
}

double geo_dist_equirect_m(double lat1, double lon1, double lat2, double lon2)
{
	double dlon = lon2 - lon1;
	if (dlon > 180.0)
		dlon -= 360.0;
	else if (dlon < -180.0)
		dlon += 360.0;
	double x = dlon * DEG2RAD * cos((lat1 + lat2) * (DEG2RAD / 2));
	double y = (lat2 - lat1) * DEG2RAD;
	return GEO_EARTH_RADIUS_M * sqrt(x * x + y * y);
}
