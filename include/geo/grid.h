/* The in-memory driver index: a geohash grid of driver positions for
 * k-nearest queries. No I/O, no clock: time is passed in (`now_ms`, the
 * caller's millisecond clock, read once per loop turn).
 *
 * Ownership: the caller (presence) owns driver records and assigns each
 * driver a dense slot index (uint32_t, < max_slots); the grid stores per slot
 * only what search needs: position, cell, status, vehicle-type bits and the
 * last ping time. The grid owns its cells and all of its memory (allocated
 * through rh_malloc); nothing it returns points into it.
 *
 * Cost: insert, move and remove are O(1) (a move inside the same cell is a
 * few stores; a move to another cell is a swap-remove, one hash lookup and an
 * append). A query scans the query point's cell and its 8 neighbours, then
 * rings of cells outward until no unscanned cell can hold a closer match or
 * all cells beyond are outside the radius; distances are exact great-circle
 * distances on the sphere of geohash.h (the same as geo_dist_haversine_m, to
 * ~1e-9 m), computed through precomputed unit vectors. A query that would
 * have to visit more cells than the grid holds (a huge radius, a point near a
 * pole where cells are slivers) scans the occupied cells instead, so it
 * never costs more than O(cells + drivers). */
#ifndef RH_GEO_GRID_H
#define RH_GEO_GRID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

/* Cell precision in geohash bits. 32 bits = 16 latitude and 16 longitude
 * bits: cells of 305 m (north-south) by 611 m * cos(lat) (east-west), e.g.
 * 305 x 376 m at 52 degrees. Chosen with bench/geo_micro.c on 50,000 drivers
 * in a 20 x 20 km city (125 per km^2), 2 km radius, 10 nearest: 30..34 bits
 * all answer in ~2 us; 32 scans ~9 cells and ~120 candidates per query, and
 * a ping stays ~50 ns (15% of 40 m moves change cell). Sparser cities want
 * fewer bits (bigger cells), much denser ones more. */
#define GEO_GRID_DEFAULT_BITS 32
#define GEO_GRID_MIN_BITS 8
#define GEO_GRID_MAX_BITS 50
#define GEO_GRID_MAX_STATUS 31      /* statuses are 0..31, one bit each in a mask */
#define GEO_GRID_NO_STALE INT64_MAX /* stale_after_ms that disables freshness */

struct geo_grid;

struct geo_grid_config {
	unsigned bits;          /* cell precision, GEO_GRID_MIN_BITS..GEO_GRID_MAX_BITS;
	                           0 picks GEO_GRID_DEFAULT_BITS */
	uint32_t max_slots;     /* slot indices are < max_slots (a hard cap, >= 1) */
	uint32_t initial_slots; /* slot records reserved up front; grows by doubling */
};

/* What the grid knows about one driver. */
struct geo_grid_driver {
	double lat, lon;  /* degrees, WGS84 */
	int64_t ping_ms;  /* time of the last ping, caller's clock */
	uint8_t status;   /* caller-defined, 0..GEO_GRID_MAX_STATUS */
	uint16_t vehicle; /* caller-defined vehicle-type bits, usually one bit */
};

/* Which drivers a query may return. Every field counts: there is no
 * "0 means any" (use UINT32_MAX / UINT16_MAX / GEO_GRID_NO_STALE). */
struct geo_grid_filter {
	uint32_t status_mask;   /* accepted statuses: bit (1u << status) */
	uint16_t vehicle_mask;  /* accepted when (driver.vehicle & vehicle_mask) != 0 */
	int64_t now_ms;         /* the caller's clock */
	int64_t stale_after_ms; /* accepted when ping_ms > now_ms - stale_after_ms */
};

struct geo_grid_hit {
	uint32_t slot;
	double dist_m;   /* great-circle distance from the query point, metres */
	double lat, lon; /* the driver's position, degrees */
};

/* Cumulative counters for metrics and benchmarks. */
struct geo_grid_stats {
	uint64_t queries;
	uint64_t cells_visited;  /* cells looked up (present or not) by ring search */
	uint64_t candidates;     /* drivers examined by queries */
	uint64_t full_scans;     /* queries answered by scanning every cell */
	uint64_t cell_changes;   /* moves that crossed into another cell */
	uint64_t evictions;      /* drivers removed by geo_grid_sweep_stale */
};

/* Creates a grid. RH_EINVAL when the config is out of range. */
RH_MUST_CHECK rh_err geo_grid_new(const struct geo_grid_config *cfg, struct geo_grid **out);
void geo_grid_free(struct geo_grid *g);

/* Adds a driver at slot. RH_EINVAL: slot >= max_slots, invalid coordinates
 * (geo_coord_is_valid) or status > GEO_GRID_MAX_STATUS; RH_ECONFLICT: the slot
 * is already in the grid. */
RH_MUST_CHECK rh_err geo_grid_insert(struct geo_grid *g, uint32_t slot, const struct geo_grid_driver *d);
/* A ping: new position and ping time. RH_ENOTFOUND: slot not in the grid;
 * RH_EINVAL: invalid coordinates (the driver is left unchanged). */
RH_MUST_CHECK rh_err geo_grid_move(struct geo_grid *g, uint32_t slot, double lat, double lon, int64_t now_ms);
/* RH_ENOTFOUND when the slot is not in the grid. */
RH_MUST_CHECK rh_err geo_grid_remove(struct geo_grid *g, uint32_t slot);
/* RH_ENOTFOUND; RH_EINVAL when status > GEO_GRID_MAX_STATUS. */
RH_MUST_CHECK rh_err geo_grid_set_status(struct geo_grid *g, uint32_t slot, uint8_t status);
RH_MUST_CHECK rh_err geo_grid_set_vehicle(struct geo_grid *g, uint32_t slot, uint16_t vehicle);
/* Copies the slot's record out; RH_ENOTFOUND when absent. */
RH_MUST_CHECK rh_err geo_grid_get(const struct geo_grid *g, uint32_t slot, struct geo_grid_driver *out);
bool geo_grid_has(const struct geo_grid *g, uint32_t slot);

/* The k nearest drivers to (lat, lon) within radius_m metres (inclusive)
 * that pass the filter, nearest first, written to out[0..*nout). *nout < k
 * when fewer match. Ties in distance come in no particular order. RH_EINVAL:
 * invalid coordinates, radius NaN or negative. k = 0 returns no hits. */
RH_MUST_CHECK rh_err geo_grid_nearest(struct geo_grid *g, double lat, double lon, double radius_m,
				      const struct geo_grid_filter *f, struct geo_grid_hit *out, size_t k,
				      size_t *nout);

/* Incremental eviction for a timer: examines at most `budget` slot indices,
 * continuing where the previous call stopped and wrapping around, and removes
 * drivers whose last ping is at or before now_ms - evict_after_ms. Their slots
 * go to evicted[0..return value), at most `cap` of them (the sweep stops early
 * when that is full), so the caller can update its own records. */
size_t geo_grid_sweep_stale(struct geo_grid *g, int64_t now_ms, int64_t evict_after_ms, size_t budget,
			    uint32_t *evicted, size_t cap);

size_t geo_grid_count(const struct geo_grid *g);      /* drivers in the grid */
size_t geo_grid_cell_count(const struct geo_grid *g); /* non-empty cells */
size_t geo_grid_memory_bytes(const struct geo_grid *g); /* bytes held, capacity included */
unsigned geo_grid_bits(const struct geo_grid *g);
void geo_grid_stats_get(const struct geo_grid *g, struct geo_grid_stats *out);

#endif
