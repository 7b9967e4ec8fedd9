/* Repositioning: where idle drivers are worth more than where they stand.
 *
 * Demand is counted per square cell of match.reposition_cell metres (on a
 * local plane from the tenth of a degree below the first point seen), each ride request counting 1
 * when made and decaying with match.reposition_half_life. Every
 * match.reposition_interval the daemon hands the idle drivers it knows to
 * reposition_plan(), which answers at most one move per driver: from a cell
 * whose drivers outnumber its demand (surplus) to the nearest cell within
 * match.reposition_radius whose demand outnumbers its drivers (deficit),
 * the largest deficits served first, each by the nearest surplus drivers,
 * never more drivers to a cell than its deficit. Drivers are free to
 * ignore a suggestion (docs/dispatch.md).
 *
 * Pure: no I/O, time passed in; the daemon (src/match/match.c) and the
 * simulator (bench/matching_sim.c) drive it. Ownership: struct reposition
 * owns its cells. */
#ifndef RH_MATCH_REPOSITION_H
#define RH_MATCH_REPOSITION_H

#include <stddef.h>
#include <stdint.h>

#include "core/uuid.h"

struct match_cfg;
struct reposition;

struct reposition_driver {
	struct uuid id;
	double lat, lon;
};

struct reposition_move {
	size_t driver;            /* index into the drivers handed in */
	double lat, lon;          /* the target cell's centre */
	double demand;            /* its decayed demand */
	int drivers;              /* idle drivers there before the plan */
	double dist_m;            /* straight line from the driver */
};

struct reposition *reposition_new(const struct match_cfg *cfg);
void reposition_free(struct reposition *rp);
/* A ride request at (lat, lon), at now (ms, any clock the caller keeps). */
void reposition_demand(struct reposition *rp, double lat, double lon, int64_t now);
/* The cell's demand at now (tests). */
double reposition_demand_at(const struct reposition *rp, double lat, double lon, int64_t now);
/* The centres of the cells whose demand is 1 or more at now, up to max
 * (where moves may go: the daemon looks for idle drivers within
 * match.reposition_radius of each); their count. */
size_t reposition_hot_cells(const struct reposition *rp, int64_t now, double *lat, double *lon, size_t max);
/* The moves for these idle drivers (at most one each, up to max): their
 * count. Cells whose demand decayed below 0.05 are forgotten. */
size_t reposition_plan(struct reposition *rp, const struct reposition_driver *drivers, size_t n, int64_t now,
		       struct reposition_move *out, size_t max);

#endif
