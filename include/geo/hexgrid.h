/* Hexagonal cells on a local projection: the surge grid (docs/pricing.md).
 *
 * The projection is equirectangular about a reference latitude lat0:
 *   x = R * lon * pi/180 * cos(lat0),   y = R * lat * pi/180   (metres)
 * which is true to scale along lat0 and off by cos(lat)/cos(lat0) east-west
 * elsewhere: 0.4% at 0.25 degrees (28 km) from lat0 at 40 degrees north, so
 * for one city the cells are all the same size to well under a percent. The
 * plane is tiled with pointy-top hexagons of circumradius `size_m` (centre to
 * corner), in axial coordinates (q, r): centre x = size * sqrt(3) * (q + r/2),
 * y = size * 3/2 * r. Every cell has six neighbours, all at the same
 * distance (size * sqrt(3) between centres): a multiplier smoothed over
 * neighbours spreads the same way in every direction, which square cells
 * (four at 1, four at sqrt(2)) do not.
 *
 * A point belongs to the cell whose centre is nearest in the plane (the
 * Voronoi property of a hexagonal tiling); a point exactly on an edge goes
 * to the cell cube rounding picks, always the same one. The grid does not
 * wrap at the antimeridian: a city straddling longitude 180 is not served.
 *
 * Pure maths: no I/O, no allocation, no clock. */
#ifndef RH_GEO_HEXGRID_H
#define RH_GEO_HEXGRID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct geo_hexgrid {
	double lat0;       /* reference latitude, degrees */
	double size_m;     /* circumradius: centre to corner */
	double kx, ky;     /* metres per degree of longitude (at lat0) and latitude */
	double inv_size;
};

/* A cell: axial (q, r) packed into 64 bits. */
typedef uint64_t geo_hex;
#define GEO_HEX_NONE UINT64_MAX

static inline geo_hex geo_hex_pack(int32_t q, int32_t r)
{
	return ((uint64_t)(uint32_t)q << 32) | (uint32_t)r;
}
static inline int32_t geo_hex_q(geo_hex h) { return (int32_t)(uint32_t)(h >> 32); }
static inline int32_t geo_hex_r(geo_hex h) { return (int32_t)(uint32_t)h; }

/* A grid of cells of area_km2 each (on the projection) about lat0
 * (|lat0| <= 80). */
void geo_hexgrid_init(struct geo_hexgrid *g, double lat0, double area_km2);
/* The cell's area in km2 on the projection; the edge (= circumradius) in m. */
double geo_hexgrid_area_km2(const struct geo_hexgrid *g);

/* The cell of a point (valid coordinates). */
geo_hex geo_hex_of(const struct geo_hexgrid *g, double lat, double lon);
/* The cell's centre, and its six corners (counter-clockwise from the one
 * east of north: the order of a GeoJSON ring, not closed). */
void geo_hex_centre(const struct geo_hexgrid *g, geo_hex h, double *lat, double *lon);
void geo_hex_corners(const struct geo_hexgrid *g, geo_hex h, double lat[6], double lon[6]);
/* The six neighbours, in a fixed order (east, then counter-clockwise). */
void geo_hex_neighbours(geo_hex h, geo_hex out[6]);
/* Steps from a to b through neighbours. */
int geo_hex_distance(geo_hex a, geo_hex b);

/* The cell's name, "h<q>_<r>" ("h-5123_2210"): at least GEO_HEX_ID_MAX
 * bytes. geo_hex_parse reads one back (false: not a cell name). */
#define GEO_HEX_ID_MAX 28
void geo_hex_format(geo_hex h, char *out);
bool geo_hex_parse(const char *s, geo_hex *out);

#endif
