/* The fare meter alone: what counts as driven. */
#include "../unit.h"

#include "../../../src/match/match_internal.h"
#include "core/config.h"
#include "geo/geohash.h"

static struct rh_config meter_cfg;

static void meter_cfg_load(void)
{
	struct cfg_errors errs;
	if (config_load_buffer(&meter_cfg, "test", "[match]\nmeter_max_accuracy = 50\nmeter_max_speed = 200\n", NULL,
			       &errs) != RH_OK)
		unit_fail(__FILE__, __LINE__, "config: %s", errs.msg[0]);
}

/* A point d metres north of (52, 5). */
static double north(double d)
{
	return 52.0 + d / 111195.0;
}

UNIT_TEST(meter_sums_good_fixes_and_leaves_out_jumps_and_inaccurate_ones)
{
	meter_cfg_load();
	struct match_meter mt;
	match_meter_start(&mt, 1000);
	match_meter_fix(&mt, &meter_cfg.match, north(0), 5, 10, 100000);
	match_meter_fix(&mt, &meter_cfg.match, north(100), 5, 10, 110000);   /* 100 m in 10 s */
	match_meter_fix(&mt, &meter_cfg.match, north(5000), 5, 10, 111000);  /* 4.9 km in 1 s: a jump */
	match_meter_fix(&mt, &meter_cfg.match, north(300), 5, 500, 120000);  /* 500 m accuracy: not counted */
	match_meter_fix(&mt, &meter_cfg.match, north(250), 5, -1, 130000);   /* no accuracy given: counted */
	CHECK_NEAR(mt.dist_m, 250, 0.5);
	CHECK_NEAR(mt.lat, north(250), 1e-9);
	CHECK_EQ_INT(match_meter_duration_s(&mt, 61000), 60);
	config_fini(&meter_cfg);
}

UNIT_TEST(meter_resumed_after_a_restart_joins_the_leg_driven_while_away)
{
	meter_cfg_load();
	struct match_meter mt;
	memset(&mt, 0, sizeof mt);
	mt.running = mt.resuming = true;
	/* read back: fixes arrive before the history's distance does */
	match_meter_fix(&mt, &meter_cfg.match, north(1200), 5, 10, 200000);
	match_meter_fix(&mt, &meter_cfg.match, north(1300), 5, 10, 210000);
	/* the history: 1,000 m driven up to a last fix at 1,000 m, 15 s before
	 * the first fix after the restart (200 m in 15 s: plausible) */
	match_meter_resume(&mt, &meter_cfg.match, 500000, 120000, 1000, true, north(1000), 5, 185000);
	CHECK(!mt.resuming && mt.running);
	CHECK_NEAR(mt.dist_m, 1300, 0.5); /* 1,000 before + 200 across the restart + 100 after */
	CHECK_NEAR(mt.lat, north(1300), 1e-9);
	CHECK_EQ_INT(match_meter_duration_s(&mt, 500000), 120);
	match_meter_fix(&mt, &meter_cfg.match, north(1400), 5, 10, 220000);
	CHECK_NEAR(mt.dist_m, 1400, 0.5);
	/* no history at all (nothing flushed before the kill): what came after */
	memset(&mt, 0, sizeof mt);
	mt.running = mt.resuming = true;
	match_meter_fix(&mt, &meter_cfg.match, north(0), 5, 10, 1000);
	match_meter_fix(&mt, &meter_cfg.match, north(50), 5, 10, 6000);
	match_meter_resume(&mt, &meter_cfg.match, 10000, 5000, 0, false, 0, 0, 0);
	CHECK_NEAR(mt.dist_m, 50, 0.5);
	config_fini(&meter_cfg);
}
