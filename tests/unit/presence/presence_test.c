/* Presence without sockets or a database: drivers loaded by hand, fixes
 * applied at chosen times, the manual timers moving the clock. */
#include "../unit.h"

#include "../../../src/presence/presence_internal.h"
#include "core/config.h"
#include "core/metrics.h"
#include "core/timer.h"
#include "trip/trip.h"

struct pres_fixture {
	struct rh_config cfg;
	struct metrics *metrics;
	struct rh_timers *timers;
	struct presence *p;
	int available;         /* the available hook's calls */
	struct uuid last_available;
};

static struct pres_fixture pf;

static void pres_available(void *ctx, const struct uuid *driver, int64_t now)
{
	(void)ctx;
	(void)now;
	pf.available++;
	pf.last_available = *driver;
}

static void pres_init(const char *extra)
{
	memset(&pf, 0, sizeof pf);
	struct cfg_errors errs;
	char text[512];
	snprintf(text, sizeof text, "[presence]\nstale_after = 30s\nevict_after = 5m\nmax_pings_per_s = 2\n%s", extra);
	if (config_load_buffer(&pf.cfg, "test", text, NULL, &errs) != RH_OK)
		unit_fail(__FILE__, __LINE__, "config: %s", errs.msg[0]);
	pf.metrics = metrics_new();
	pf.timers = rh_timers_manual(5000000);
	const struct presence_deps d = { .timers = pf.timers, .metrics = pf.metrics, .cfg = &pf.cfg.presence,
					 .tariffs = pf.cfg.tariff, .ntariffs = pf.cfg.ntariffs };
	pf.p = presence_new(&d);
	const struct presence_hooks h = { .available = pres_available };
	presence_set_hooks(pf.p, &h);
}

static void pres_fini(void)
{
	presence_free(pf.p);
	rh_timers_free(pf.timers);
	metrics_free(pf.metrics);
	config_fini(&pf.cfg);
}

static int64_t pres_now(void)
{
	return rh_timers_now(pf.timers);
}

/* A fix for driver at (lat, lon), taken and received now. */
static enum presence_fix_result pres_fix(const struct uuid *driver, double lat, double lon)
{
	const char *reason, *field;
	int64_t wall = 1780000000000 + pres_now();
	struct presence_fix fx = { .lat = lat, .lon = lon, .heading = -1, .speed = -1, .accuracy = -1,
				   .device_ms = wall };
	return presence_fix_apply(pf.p, driver, &fx, pres_now(), wall, &reason, &field);
}

UNIT_TEST(presence_stale_drivers_leave_searches_then_the_grid)
{
	pres_init("");
	struct uuid a, b;
	uuid_v4(&a);
	uuid_v4(&b);
	REQUIRE(presence_driver_load(pf.p, &a, 0, DRIVER_AVAILABLE, 3, pres_now()));
	REQUIRE(presence_driver_load(pf.p, &b, 0, DRIVER_AVAILABLE, 7, pres_now()));
	CHECK_EQ_INT(pres_fix(&a, 52.370, 4.890), PRESENCE_FIX_OK);
	CHECK_EQ_INT(pres_fix(&b, 52.371, 4.890), PRESENCE_FIX_OK);
	struct presence_hit hits[8];
	CHECK_EQ_INT(presence_nearest(pf.p, 52.37, 4.89, 1000, DRIVER_AVAILABLE, 1, pres_now(), hits, 8), 2);
	CHECK(uuid_eq(&hits[0].driver, &a));
	CHECK_EQ_INT(hits[1].version, 7);
	/* b keeps sending, a goes quiet: 30 s later a is stale (out of every
	 * search), still known */
	rh_timers_advance(pf.timers, pres_now() + 20000);
	pres_fix(&b, 52.371, 4.890);
	rh_timers_advance(pf.timers, pres_now() + 10000);
	CHECK_EQ_INT(presence_nearest(pf.p, 52.37, 4.89, 1000, DRIVER_AVAILABLE, 1, pres_now(), hits, 8), 1);
	CHECK(uuid_eq(&hits[0].driver, &b));
	CHECK(!presence_hit_of(pf.p, &a, DRIVER_AVAILABLE, pres_now(), &hits[0]));
	CHECK(presence_hit_of(pf.p, &b, DRIVER_AVAILABLE, pres_now(), &hits[0]));
	CHECK_EQ_INT(presence_count(pf.p, 52.37, 4.89, 1000, 1u << DRIVER_AVAILABLE, 1, pres_now(), 8), 1);
	/* past evict_after the sweep drops a (no session, no trip): forgotten */
	rh_timers_advance(pf.timers, pres_now() + 5 * 60000);
	CHECK(!presence_driver(pf.p, &a, &hits[0]));
	pres_fini();
}

UNIT_TEST(presence_is_the_one_writer_of_a_drivers_status)
{
	pres_init("");
	struct uuid d, trip, rider;
	uuid_v4(&d);
	uuid_v4(&trip);
	uuid_v4(&rider);
	REQUIRE(presence_driver_load(pf.p, &d, 0, DRIVER_OFFLINE, 1, pres_now()));
	pres_fix(&d, 52.37, 4.89);
	CHECK_EQ_INT(pf.available, 0);
	/* the driver is matched, then finishes: presence hears it from trips */
	struct trip_listener l;
	presence_trip_listener(pf.p, &l);
	struct trip t = { .id = trip, .rider = rider, .state = TRIP_MATCHED, .has_driver = true, .driver = d };
	struct trip_event e = { .trip = &t, .driver_version = 5 };
	l.changed(l.ctx, &e);
	struct presence_hit h;
	REQUIRE(presence_driver(pf.p, &d, &h));
	CHECK_EQ_INT(h.status, DRIVER_EN_ROUTE);
	CHECK_EQ_INT(h.version, 5);
	t.state = TRIP_COMPLETED;
	e.driver_version = 8;
	l.changed(l.ctx, &e);
	REQUIRE(presence_driver(pf.p, &d, &h));
	CHECK_EQ_INT(h.status, DRIVER_AVAILABLE);
	CHECK_EQ_INT(pf.available, 1); /* dispatch hears the driver is free */
	CHECK(uuid_eq(&pf.last_available, &d));
	/* an older answer arriving late changes nothing */
	t.state = TRIP_IN_PROGRESS;
	e.driver_version = 6;
	l.changed(l.ctx, &e);
	REQUIRE(presence_driver(pf.p, &d, &h));
	CHECK_EQ_INT(h.status, DRIVER_AVAILABLE);
	CHECK_EQ_INT(h.version, 8);
	/* a change that did not move the driver (ARRIVED) leaves the status */
	t.state = TRIP_ARRIVED;
	e.driver_version = -1;
	l.changed(l.ctx, &e);
	REQUIRE(presence_driver(pf.p, &d, &h));
	CHECK_EQ_INT(h.status, DRIVER_AVAILABLE);
	pres_fini();
}

UNIT_TEST(presence_fixes_are_refused_when_stale_or_from_the_future_and_rate_limited)
{
	pres_init("max_clock_skew = 2m\nmax_ping_age = 10m\n");
	struct uuid d;
	uuid_v4(&d);
	REQUIRE(presence_driver_load(pf.p, &d, 0, DRIVER_AVAILABLE, 1, pres_now()));
	const char *reason, *field;
	int64_t wall = 1780000000000;
	struct presence_fix fx = { .lat = 52.37, .lon = 4.89, .heading = -1, .speed = -1, .accuracy = -1 };
	fx.device_ms = wall + 3 * 60000;
	CHECK_EQ_INT(presence_fix_apply(pf.p, &d, &fx, pres_now(), wall, &reason, &field), PRESENCE_FIX_REJECTED);
	CHECK_EQ_STR(reason, "timestamp_in_future");
	fx.device_ms = wall - 11 * 60000;
	CHECK_EQ_INT(presence_fix_apply(pf.p, &d, &fx, pres_now(), wall, &reason, &field), PRESENCE_FIX_REJECTED);
	CHECK_EQ_STR(reason, "stale");
	fx.device_ms = wall;
	CHECK_EQ_INT(presence_fix_apply(pf.p, &d, &fx, pres_now(), wall, &reason, &field), PRESENCE_FIX_OK);
	fx.device_ms = wall - 1000; /* older than the last one: kept out */
	CHECK_EQ_INT(presence_fix_apply(pf.p, &d, &fx, pres_now(), wall, &reason, &field), PRESENCE_FIX_IGNORED);
	/* the token bucket: 2 a second, bursts of 4 */
	struct driver_rec *r = presence_rec_find(pf.p, &d);
	REQUIRE(r != NULL);
	int64_t t0 = pres_now();
	int ok = 0;
	for (int i = 0; i < 10; i++)
		ok += presence_ping_allowed(pf.p, r, t0);
	CHECK_EQ_INT(ok, 4);
	CHECK(!presence_ping_allowed(pf.p, r, t0 + 400));
	CHECK(presence_ping_allowed(pf.p, r, t0 + 500)); /* one more each 500 ms */
	CHECK(!presence_ping_allowed(pf.p, r, t0 + 500));
	pres_fini();
}
