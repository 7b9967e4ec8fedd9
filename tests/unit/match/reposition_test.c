/* Repositioning's arithmetic alone: demand decays, moves go from surplus to
 * deficit, never more than a cell wants or a cell can spare, within reach,
 * one per driver. */
#include "../unit.h"

#include "core/config.h"
#include "core/settings.h"
#include "geo/geohash.h"
#include "match/reposition.h"

static struct rh_config rp_cfg;

/* 500 m cells, 3 km reach, a 10-minute half-life */
static struct reposition *rp_new(void)
{
	struct cfg_errors errs;
	if (config_load_buffer(&rp_cfg, "test",
			       "[match]\nreposition_cell = 500\nreposition_radius = 3000\nreposition_half_life = 10m\n", NULL,
			       &errs) != RH_OK)
		unit_fail(__FILE__, __LINE__, "config: %s", errs.msg[0]);
	return reposition_new(&rp_cfg.match);
}

static const double LAT0 = 52.0, LON0 = 5.0;

/* A point e metres east and n metres north of (LAT0, LON0). */
static void at(double e, double n, double *lat, double *lon)
{
	*lat = LAT0 + n / 111320.0;
	*lon = LON0 + e / (111320.0 * cos(LAT0 * 3.14159265358979323846 / 180));
}

static struct reposition_driver drv_at(double e, double n)
{
	struct reposition_driver d;
	uuid_v4(&d.id);
	at(e, n, &d.lat, &d.lon);
	return d;
}

static void demand_at(struct reposition *rp, double e, double n, int count, int64_t now)
{
	double lat, lon;
	at(e, n, &lat, &lon);
	for (int i = 0; i < count; i++)
		reposition_demand(rp, lat, lon, now);
}

UNIT_TEST(reposition_demand_halves_every_half_life)
{
	struct reposition *rp = rp_new();
	double lat, lon;
	at(100, 100, &lat, &lon);
	demand_at(rp, 100, 100, 4, 0);
	CHECK_NEAR(reposition_demand_at(rp, lat, lon, 0), 4, 1e-9);
	CHECK_NEAR(reposition_demand_at(rp, lat, lon, 600000), 2, 1e-9);
	demand_at(rp, 120, 130, 1, 600000); /* the same cell: 2 + 1 */
	CHECK_NEAR(reposition_demand_at(rp, lat, lon, 1200000), 1.5, 1e-9);
	at(900, 100, &lat, &lon); /* another cell */
	CHECK_NEAR(reposition_demand_at(rp, lat, lon, 1200000), 0, 0);
	reposition_free(rp);
	config_fini(&rp_cfg);
}

UNIT_TEST(reposition_sends_surplus_drivers_to_the_deficit_nearest_first)
{
	struct reposition *rp = rp_new();
	/* demand 3 in the cell at (250, 250); one driver already there: it wants 2 */
	demand_at(rp, 250, 250, 3, 0);
	struct reposition_driver d[6] = {
		drv_at(260, 240),    /* in the hot cell: stays */
		drv_at(1750, 250),   /* 1.5 km east, alone in a cell without demand: spare */
		drv_at(1250, 250),   /* 1 km east, the nearest spare */
		drv_at(2750, 250),   /* 2.5 km east: spare, but the cell wants only two */
		drv_at(9250, 250),   /* 9 km: out of reach */
		drv_at(1240, 260),   /* the nearest's cell-mate: spare too */
	};
	struct reposition_move mv[6];
	size_t n = reposition_plan(rp, d, 6, 0, mv, 6);
	REQUIRE(n == 2);
	CHECK(mv[0].driver == 2 || mv[0].driver == 5);
	CHECK(mv[1].driver == 2 || mv[1].driver == 5);
	CHECK(mv[0].driver != mv[1].driver);
	double lat, lon;
	at(250, 250, &lat, &lon);
	CHECK(geo_dist_haversine_m(mv[0].lat, mv[0].lon, lat, lon) < 1);
	CHECK_EQ_INT(mv[0].drivers, 1);
	CHECK_NEAR(mv[0].demand, 3, 1e-9);
	CHECK(mv[0].dist_m > 900 && mv[0].dist_m < 1100);
	reposition_free(rp);
	config_fini(&rp_cfg);
}

UNIT_TEST(reposition_leaves_a_cell_its_own_demand_and_keeps_to_the_reach)
{
	struct reposition *rp = rp_new();
	demand_at(rp, 250, 250, 5, 0);   /* wants 5 */
	demand_at(rp, 1250, 250, 2, 0);  /* 1 km east: demand 2, three drivers: one spare */
	struct reposition_driver d[5] = { drv_at(1240, 240), drv_at(1260, 260), drv_at(1250, 250),
					  drv_at(4250, 250), /* 4 km: too far */
					  drv_at(3000, 3000) };
	struct reposition_move mv[5];
	size_t n = reposition_plan(rp, d, 5, 0, mv, 5);
	REQUIRE(n == 1);
	CHECK(mv[0].driver <= 2);
	/* an hour later the demand has faded below one: nobody is sent */
	CHECK_EQ_INT(reposition_plan(rp, d, 5, 3600000, mv, 5), 0);
	double lat[4], lon[4];
	CHECK_EQ_INT(reposition_hot_cells(rp, 3600000, lat, lon, 4), 0);
	reposition_free(rp);
	config_fini(&rp_cfg);
}

UNIT_TEST(reposition_without_demand_or_drivers_plans_nothing)
{
	struct reposition *rp = rp_new();
	struct reposition_driver d = drv_at(0, 0);
	struct reposition_move mv[1];
	CHECK_EQ_INT(reposition_plan(rp, &d, 1, 0, mv, 1), 0);
	demand_at(rp, 0, 0, 3, 0);
	CHECK_EQ_INT(reposition_plan(rp, NULL, 0, 0, mv, 1), 0);
	double lat[2], lon[2];
	CHECK_EQ_INT(reposition_hot_cells(rp, 0, lat, lon, 2), 1);
	reposition_free(rp);
	config_fini(&rp_cfg);
}
