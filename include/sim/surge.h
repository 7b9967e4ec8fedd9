/* The simulator's view of surge, free of I/O so the unit tests can check it:
 * the surge map as GET /v1/surge/cells answers it, the rider's price
 * sensitivity and the idle driver's choice of a cell to drift to.
 *
 * Units: WGS 84 degrees, metres, multipliers (>= 1). */
#ifndef RH_SIM_SURGE_H
#define RH_SIM_SURGE_H

#include <stdbool.h>
#include <stddef.h>

struct sim_cell {
	char id[28];
	double lat, lon;             /* centre (the mean of its corners) */
	double ring_lat[6], ring_lon[6];
	double m;                    /* the multiplier now */
	int demand, supply;
};

struct sim_surge_map {
	struct sim_cell *cell;
	size_t n, cap;
};

void sim_surge_map_init(struct sim_surge_map *m);
void sim_surge_map_fini(struct sim_surge_map *m);
/* Replaces the map with the GeoJSON FeatureCollection of GET
 * /v1/surge/cells; false (the map unchanged) when it is not one. */
bool sim_surge_map_parse(struct sim_surge_map *m, const char *json);
/* Cells with a multiplier above 1, the highest multiplier, and the mean
 * multiplier over all cells (1 when there are none). */
void sim_surge_map_stats(const struct sim_surge_map *m, size_t *surged, double *max, double *mean);
/* The multiplier at a point: its cell's (the cell whose centre is nearest,
 * within `radius_m`), or 1. */
double sim_surge_at(const struct sim_surge_map *m, double lat, double lon, double radius_m);

/* Where an idle driver at (lat, lon) drifts: the cell within radius_m whose
 * multiplier beats the driver's own by at least min_gain, the highest (the
 * nearest among equals); -1 to stay. */
int sim_surge_drift_target(const struct sim_surge_map *m, double lat, double lon, double radius_m, double min_gain);

/* A price-sensitive rider's answer to a quote: true (declines) when the
 * quote's multiplier is above the most they accept. */
static inline bool sim_surge_declines(double multiplier, double max_accepted)
{
	return multiplier > max_accepted + 1e-9;
}

#endif
