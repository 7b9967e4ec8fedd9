/* The surge engine: a multiplier per hexagonal cell and vehicle type from
 * demand and supply, recomputed every surge.interval on the event loop
 * (docs/pricing.md has the formula and every knob).
 *
 * Per cell c and vehicle type v, each recompute:
 *   demand  D = ride requests of the last surge.window (refused ones too)
 *   supply  S = available drivers with a fresh position, now
 *   raw     = curve(D / max(S, 1))            piecewise linear, surge.curve_*
 *   ema     = alpha * raw + (1 - alpha) * ema
 *   m       = m' + clamp(ema - m', +-max_step)   (m' the multiplier shown)
 *             held at m' while min_dwell has not passed since m' last moved
 *             the other way
 *   m       = clamp(m, 1, cap), rounded to 0.01
 *   then over neighbours: m = max(m, max(neighbour) - neighbour_max_diff)
 *   then the operator's override for a zone the cell touches (its centre or
 *   a corner in the zone, or the zone in the cell): disable (1), cap (min),
 *   freeze (m')
 * The new values are checked (finite, within [1, cap]) and swapped in all
 * at once; a recompute that fails (supply could not be counted, a value out
 * of range) leaves every last good value in place. A cell with no demand,
 * no supply, a multiplier of 1 and no event owed is dropped.
 *
 * The engine reads no clock: demand and questions take `now` (monotonic
 * ms), and it arms its timer through deps.timers (manual in the tests). It
 * owns its cells; what it needs from the rest of the daemon comes through
 * the hooks in surge_deps (supply from presence, overrides from the zones,
 * changed cells to the event writer). */
#ifndef RH_PRICING_SURGE_H
#define RH_PRICING_SURGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "geo/hexgrid.h"

struct rh_timers;
struct metrics;
struct surge_cfg;
struct surge;

#define SURGE_VEHICLES_MAX 16

/* An operator's override of a zone's multipliers. */
enum surge_override_mode { SURGE_OVERRIDE_NONE = 0, SURGE_OVERRIDE_CAP, SURGE_OVERRIDE_FREEZE, SURGE_OVERRIDE_DISABLE };
const char *surge_override_name(enum surge_override_mode m);
/* -1 when not a mode name ("cap", "freeze", "disable"). */
int surge_override_parse(const char *s);
struct surge_override {
	enum surge_override_mode mode;
	double cap; /* SURGE_OVERRIDE_CAP: >= 1 */
};

/* A cell whose multiplier moved enough to be told (surge.updated). */
struct surge_change {
	geo_hex cell;
	int vehicle;
	double multiplier, previous;
	uint32_t demand, supply;
	double lat, lon; /* the cell's centre */
};

/* What the engine is told about a point. */
struct surge_point {
	double multiplier;        /* >= 1 */
	geo_hex cell;
	char cell_id[GEO_HEX_ID_MAX];
	uint32_t demand, supply;  /* as of the last recompute */
	double ratio;             /* demand / max(supply, 1) */
	enum surge_override_mode override;
	bool enabled;
};

struct surge_deps {
	struct rh_timers *timers;
	struct metrics *metrics;   /* NULL: no metrics */
	const struct surge_cfg *cfg;
	int nvehicles;             /* vehicle types: indexes 0..nvehicles-1 */
	/* Supply: calls add(acc, lat, lon, vehicle) once per available driver
	 * with a fresh position; false when it could not count (the recompute
	 * fails and the last good values stay). */
	bool (*supply)(void *ctx, int64_t now, void (*add)(void *acc, double lat, double lon, int vehicle), void *acc);
	void *supply_ctx;
	/* The operator's override of a zone the cell touches, or false when
	 * none (NULL: never); the cell is given as its centre then its six
	 * corners (lat[0..6], lon[0..6]). Asked for each cell at each recompute. */
	bool (*override_at)(void *ctx, const double *lat, const double *lon, struct surge_override *out);
	void *override_ctx;
	/* Cells to tell (after a successful recompute, rate-limited per cell by
	 * surge.event_min_interval and event_min_change, at most
	 * surge.events_per_interval at once). NULL: none. */
	void (*changed)(void *ctx, const struct surge_change *c, size_t n, int64_t now);
	void *changed_ctx;
};

struct surge *surge_new(const struct surge_deps *d);
void surge_free(struct surge *s);

/* A ride request at (lat, lon) for vehicle type `vehicle`: counted as
 * demand in its cell for surge.window. */
void surge_demand(struct surge *s, double lat, double lon, int vehicle, int64_t now);
/* The multiplier at (lat, lon) for vehicle type `vehicle` as of the last
 * good recompute (1 in a cell never computed, or with surge off). */
void surge_at(struct surge *s, double lat, double lon, int vehicle, struct surge_point *out);
/* When the values answered now stop holding: the next recompute
 * (monotonic ms). */
int64_t surge_next_ms(const struct surge *s);
/* Recomputes now (the timer calls it; tests and the benchmark too). false:
 * the recompute failed and the last good values stand. */
bool surge_recompute(struct surge *s, int64_t now);

/* Every cell tracked, for maps: fn(ctx, cell, vehicle values) once per
 * cell; m[v], demand[v], supply[v] for v < nvehicles. */
typedef void (*surge_cell_fn)(void *ctx, geo_hex cell, const double *m, const uint32_t *demand,
			      const uint32_t *supply);
size_t surge_each_cell(struct surge *s, surge_cell_fn fn, void *ctx);
/* The grid (its reference latitude is fixed by the first point seen unless
 * surge.latitude sets it; false while not yet fixed). */
bool surge_grid(const struct surge *s, struct geo_hexgrid *out);
/* Statistics of the last recompute. */
struct surge_stats {
	size_t cells;
	int64_t recomputes, failures;
	int64_t last_ok_ms;        /* monotonic; 0: never */
	double last_duration_ms;
	size_t dropped_points;     /* demand or supply past surge.max_cells */
};
void surge_get_stats(const struct surge *s, struct surge_stats *out);

/* The piecewise-linear curve of surge.curve_ratio / curve_multiplier at
 * ratio (pure). */
double surge_curve(const struct surge_cfg *c, double ratio);

#endif
