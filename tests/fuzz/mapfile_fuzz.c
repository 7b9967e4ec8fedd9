/* Fuzz target for the map-file loader: any bytes either load into a graph
 * that answers queries or are refused with a message, never a crash or a
 * half graph. The checksum would stop most mutations at the door, so each
 * input is tried twice: as is, and with its checksum made to match, which
 * sends the mutated body through the structural checks and, when it passes,
 * through snapping and every search method. */
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/settings.h"
#include "routing/routing.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void exercise(struct routing *r)
{
	struct routing_stats st;
	routing_get_stats(r, &st);
	double lat[3] = { st.min_lat, st.max_lat, (st.min_lat + st.max_lat) / 2 };
	double lon[3] = { st.min_lon, st.max_lon, (st.min_lon + st.max_lon) / 2 };
	struct route_result res;
	for (int i = 0; i < 3; i++) {
		for (int j = 0; j < 3; j++) {
			/* a damaged hierarchy may disagree with Dijkstra; it must
			 * still answer, with a sane figure */
			for (int m = 0; m < 3; m++) {
				rh_err e = routing_route_method(r, lat[i], lon[i], lat[j], lon[j], (enum route_method)m,
								m == 0, &res);
				if (e == RH_OK && !(res.distance_m >= 0 && res.duration_s >= 0))
					abort();
			}
		}
	}
	struct routing_eta eta[9];
	if (routing_eta_many_to_one(r, lat, lon, 3, lat[2], lon[2], eta) == RH_OK && eta[2].distance_m < 0)
		abort();
	if (routing_eta_many_to_many(r, lat, lon, 3, lat, lon, 3, 1700000000, eta) == RH_OK)
		for (int i = 0; i < 9; i++)
			if (eta[i].reachable && !(eta[i].duration_s >= 0 && eta[i].duration_low_s <= eta[i].duration_high_s))
				abort();
	/* the restrictions' own check routes on whatever the file says */
	for (size_t i = 0; i < routing_restriction_count(r) && i < 4; i++) {
		size_t tried, taken;
		if (routing_restriction_taken(r, i, ROUTE_FAST, &tried, &taken) != RH_OK || taken > tried)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct routing_cfg cfg = { .metric = 0, .snap_max_distance_m = 1000 };
	if (sodium_init() < 0)
		abort();
	char err[256];
	struct routing *r = NULL;
	if (routing_load_buffer(data, size, &cfg, &r, err, sizeof err) == RH_OK) {
		exercise(r);
		routing_free(r);
	} else if (r != NULL || !err[0]) {
		abort();
	}
	if (size < 64)
		return 0;
	uint8_t *copy = malloc(size);
	memcpy(copy, data, size);
	crypto_generichash(copy + 32, 32, copy + 64, size - 64, NULL, 0);
	cfg.metric = size & 1;
	if (routing_load_buffer(copy, size, &cfg, &r, err, sizeof err) == RH_OK) {
		exercise(r);
		routing_free(r);
	} else if (r != NULL || !err[0]) {
		abort();
	}
	free(copy);
	return 0;
}
