#include "../unit.h"

#include "net/ws_rate.h"

UNIT_TEST(ws_rate_burst_then_sustained)
{
	struct ws_rate r = { 0 };
	int64_t t = 1000;
	int ok = 0;
	for (int i = 0; i < 100; i++)
		ok += ws_rate_take(&r, 10, 40, t);
	CHECK_EQ_INT(ok, 40); /* the burst, at one instant */
	/* then 10 a second: over 5 s at 1 ms steps, 50 more and no more */
	ok = 0;
	for (int ms = 1; ms <= 5000; ms++)
		ok += ws_rate_take(&r, 10, 40, t + ms);
	CHECK_EQ_INT(ok, 50);
	/* a pause refills up to the burst, not past it */
	ok = 0;
	for (int i = 0; i < 100; i++)
		ok += ws_rate_take(&r, 10, 40, t + 5000 + 3600 * 1000);
	CHECK_EQ_INT(ok, 40);
}

UNIT_TEST(ws_rate_clock_going_back_grants_nothing)
{
	struct ws_rate r = { 0 };
	for (int i = 0; i < 4; i++)
		CHECK(ws_rate_take(&r, 1, 4, 10000));
	CHECK(!ws_rate_take(&r, 1, 4, 10000));
	CHECK(!ws_rate_take(&r, 1, 4, 5000)); /* earlier: no refill */
	CHECK(ws_rate_take(&r, 1, 4, 11000));
}
