/* The simulator's surge: the map from GET /v1/surge/cells, the multiplier
 * at a point, a drifting driver's choice and a rider's price sensitivity. */
#include "../unit.h"

#include "sim/surge.h"

/* Three cells on a line, 2.4 km apart: 1.0, 1.8, 2.6 (the last 4.8 km away). */
static const char *CELLS =
	"{\"type\":\"FeatureCollection\",\"vehicle_type\":\"standard\",\"features\":["
	"{\"type\":\"Feature\",\"id\":\"h0_0\",\"geometry\":{\"type\":\"Polygon\",\"coordinates\":[[[0.01,0],[0,0.01],[-0.01,0],[-0.01,-0.005],[0,-0.01],[0.01,-0.005],[0.01,0]]]},"
	" \"properties\":{\"cell\":\"h0_0\",\"multiplier\":1.0,\"demand\":1,\"supply\":3}},"
	"{\"type\":\"Feature\",\"id\":\"h1_0\",\"geometry\":{\"type\":\"Polygon\",\"coordinates\":[[[0.032,0],[0.022,0.01],[0.012,0],[0.012,-0.005],[0.022,-0.01],[0.032,-0.005],[0.032,0]]]},"
	" \"properties\":{\"cell\":\"h1_0\",\"multiplier\":1.8,\"demand\":9,\"supply\":1}},"
	"{\"type\":\"Feature\",\"id\":\"h2_0\",\"geometry\":{\"type\":\"Polygon\",\"coordinates\":[[[0.054,0],[0.044,0.01],[0.034,0],[0.034,-0.005],[0.044,-0.01],[0.054,-0.005],[0.054,0]]]},"
	" \"properties\":{\"cell\":\"h2_0\",\"multiplier\":2.6,\"demand\":20,\"supply\":0}},"
	"{\"type\":\"Feature\",\"id\":\"bad\",\"geometry\":{\"type\":\"Polygon\",\"coordinates\":[[[0,0]]]},"
	" \"properties\":{\"cell\":\"bad\",\"multiplier\":9}}]}";

UNIT_TEST(sim_surge_map_reads_cells_and_answers_points)
{
	struct sim_surge_map m;
	sim_surge_map_init(&m);
	REQUIRE(sim_surge_map_parse(&m, CELLS));
	CHECK_EQ_INT(m.n, 3); /* the malformed one left out */
	CHECK_EQ_STR(m.cell[1].id, "h1_0");
	CHECK_EQ_INT(m.cell[2].demand, 20);
	CHECK_NEAR(m.cell[0].lat, -0.0016667, 1e-6);
	size_t surged;
	double max, mean;
	sim_surge_map_stats(&m, &surged, &max, &mean);
	CHECK_EQ_INT(surged, 2);
	CHECK_NEAR(max, 2.6, 1e-12);
	CHECK_NEAR(mean, (1.0 + 1.8 + 2.6) / 3, 1e-12);
	CHECK_NEAR(sim_surge_at(&m, 0, 0.0215, 2000), 1.8, 1e-12);
	CHECK_NEAR(sim_surge_at(&m, 5, 5, 2000), 1.0, 1e-12); /* no cell near */
	/* not a collection: the map stays */
	CHECK(!sim_surge_map_parse(&m, "{\"type\":\"Feature\"}"));
	CHECK(!sim_surge_map_parse(&m, "nonsense"));
	CHECK_EQ_INT(m.n, 3);
	sim_surge_map_fini(&m);
}

UNIT_TEST(sim_surge_drift_goes_to_the_highest_cell_in_reach)
{
	struct sim_surge_map m;
	sim_surge_map_init(&m);
	REQUIRE(sim_surge_map_parse(&m, CELLS));
	/* from the quiet cell: 2.6 is 6 km away, out of a 3 km reach: 1.8 */
	CHECK_EQ_INT(sim_surge_drift_target(&m, 0, 0, 3000, 0.2), 1);
	CHECK_EQ_INT(sim_surge_drift_target(&m, 0, 0, 7000, 0.2), 2);
	/* already in the 1.8 cell: only 2.6 beats it by 0.2 */
	CHECK_EQ_INT(sim_surge_drift_target(&m, -0.0017, 0.022, 3000, 0.2), 2);
	/* in the best cell: stay */
	CHECK_EQ_INT(sim_surge_drift_target(&m, -0.0017, 0.044, 7000, 0.2), -1);
	/* a gain too small to move for */
	CHECK_EQ_INT(sim_surge_drift_target(&m, 0, 0, 3000, 0.9), -1);
	sim_surge_map_fini(&m);
	CHECK(sim_surge_declines(1.6, 1.5));
	CHECK(!sim_surge_declines(1.5, 1.5));
	CHECK(!sim_surge_declines(1.0, 1.2));
}
