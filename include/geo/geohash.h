/* Integer geohashes and great-circle distances. Pure maths: no I/O, no
 * allocation, no server state.
 *
 * A geohash of `bits` bits (1..GEO_HASH_MAX_BITS) is a uint64_t whose low
 * `bits` bits hold the interleaved cell indices, most significant bit first,
 * longitude first: exactly the bit string behind the base-32 geohash text
 * ("u4pruydqqvj"), so the first 5*n bits of a hash are its n-character string
 * and a shorter hash is a prefix (h >> k) of a longer one. With an odd number
 * of bits longitude gets the extra bit: lon_bits = ceil(bits/2),
 * lat_bits = floor(bits/2).
 *
 * Cells are half-open: a point on a cell edge belongs to the cell to its north
 * / east (the cell whose minimum is the edge); lat = 90 and lon = 180 belong
 * to the last row / column. Encoding is exact: it gives the same cell as the
 * textbook bisection with `>=` at every step, without its floating-point drift.
 *
 * Units: degrees for coordinates (WGS84 latitude/longitude), metres for
 * distances. The Earth is a sphere of radius GEO_EARTH_RADIUS_M for every
 * distance here; that differs from the WGS84 ellipsoid by up to ~0.5%. */
#ifndef RH_GEO_GEOHASH_H
#define RH_GEO_GEOHASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

#define GEO_HASH_MAX_BITS 60     /* 12 base-32 characters, cells ~3.7 cm x 1.9 cm */
#define GEO_HASH_BITS_PER_CHAR 5
#define GEO_HASH_MAX_CHARS (GEO_HASH_MAX_BITS / GEO_HASH_BITS_PER_CHAR)
#define GEO_HASH_NONE UINT64_MAX /* "no such cell" (beyond a pole); never a valid hash */

#define GEO_EARTH_RADIUS_M 6371008.8 /* IUGG mean radius R1 */

/* A cell's bounds in degrees: [lat_min, lat_max) x [lon_min, lon_max). */
struct geo_cell {
	double lat_min, lat_max;
	double lon_min, lon_max;
};

/* Neighbour order of geo_hash_neighbours(). */
enum geo_dir {
	GEO_DIR_N = 0, GEO_DIR_NE, GEO_DIR_E, GEO_DIR_SE, GEO_DIR_S, GEO_DIR_SW, GEO_DIR_W, GEO_DIR_NW,
};

/* |lat| <= 90 and |lon| <= 180, neither NaN. */
bool geo_coord_is_valid(double lat, double lon);

static inline unsigned geo_hash_lon_bits(unsigned bits) { return (bits + 1) / 2; }
static inline unsigned geo_hash_lat_bits(unsigned bits) { return bits / 2; }

/* Encodes a point. RH_EINVAL when the coordinates are invalid (see
 * geo_coord_is_valid) or bits is outside 1..GEO_HASH_MAX_BITS. */
RH_MUST_CHECK rh_err geo_hash_encode(double lat, double lon, unsigned bits, uint64_t *out);

/* The cell of a hash. RH_EINVAL when bits is out of range or the hash has
 * bits set above `bits`. */
RH_MUST_CHECK rh_err geo_hash_decode(uint64_t hash, unsigned bits, struct geo_cell *out);
void geo_cell_centre(const struct geo_cell *c, double *lat, double *lon);

/* The cell dlat rows north and dlon columns east of `hash` (negative: south,
 * west). Longitude wraps across the antimeridian; a row beyond a pole does not
 * exist and gives GEO_HASH_NONE. The hash must be valid for `bits`. */
uint64_t geo_hash_neighbour(uint64_t hash, unsigned bits, int dlat, int dlon);
/* The 8 neighbours in enum geo_dir order; GEO_HASH_NONE beyond a pole. In the
 * first or last row the three cells across the pole are missing. At 1 bit
 * (one row, two columns) E and W are the same cell. */
void geo_hash_neighbours(uint64_t hash, unsigned bits, uint64_t out[8]);

/* Index level: a cell is row lat_idx (0 = southernmost, < 2^lat_bits) and
 * column lon_idx (0 = starting at -180, < 2^lon_bits). */
uint64_t geo_hash_from_index(uint32_t lat_idx, uint32_t lon_idx, unsigned bits);
void geo_hash_to_index(uint64_t hash, unsigned bits, uint32_t *lat_idx, uint32_t *lon_idx);
/* Row and column of a valid point (caller checked geo_coord_is_valid and
 * bits), the fast path behind geo_hash_encode. */
void geo_hash_index_of(double lat, double lon, unsigned bits, uint32_t *lat_idx, uint32_t *lon_idx);

/* Base-32 text ("0123456789bcdefghjkmnpqrstuvwxyz"). to_string writes
 * bits/5 characters and a NUL; it needs bits to be a multiple of 5 and
 * cap > bits/5 (RH_EINVAL otherwise). from_string accepts 1..12 characters,
 * either case, and returns the hash with *bits = 5 * len; RH_EINVAL on any
 * other character (a, i, l, o included). */
RH_MUST_CHECK rh_err geo_hash_to_string(uint64_t hash, unsigned bits, char *out, size_t cap);
RH_MUST_CHECK rh_err geo_hash_from_string(const char *s, size_t len, uint64_t *hash, unsigned *bits);

/* Great-circle distance in metres by the haversine formula. Rounding error is
 * below a millimetre up to ~10,000 km and grows to ~0.1 m at the antipode
 * (asin near 1). */
double geo_dist_haversine_m(double lat1, double lon1, double lat2, double lon2);

/* Equirectangular approximation: R * sqrt((dlon * cos(mean lat))^2 + dlat^2),
 * the longitude difference taken the short way round the antimeridian. One
 * cos and one sqrt instead of haversine's sin, sin, cos, cos, asin, sqrt.
 * Error bound against haversine, both points within the latitude limit
 * (a unit test samples random pairs and checks it):
 *   distance <= 20 km,  |lat| <= 80 degrees: relative error < 3e-5 (<= 0.6 m)
 *   distance <= 100 km, |lat| <= 70 degrees: relative error < 1e-4 (<= 10 m)
 * The error grows as (distance/R)^2 * tan^2(lat): do not use it across
 * hundreds of kilometres or near a pole. */
double geo_dist_equirect_m(double lat1, double lon1, double lat2, double lon2);

#endif
