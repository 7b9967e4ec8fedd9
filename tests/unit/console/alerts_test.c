#include "../unit.h"

#include <stdlib.h>

#include "../../../src/console/console_internal.h"
#include "core/log.h"
#include "core/metrics.h"

/* Hysteresis: a cause that flickers faster than clear_after keeps one alert
 * raised (one raise, then one clear once it stays gone), whatever the
 * pattern; checked against a brute-force reading of the same rule. */
UNIT_TEST(console_alert_raised_once_cleared_once)
{
	struct metrics *m = metrics_new();
	struct console_alerts *al = console_alerts_new(NULL, m, 1000);
	enum log_level was = log_min_level;
	log_min_level = LOG_ERROR;
	int64_t wall0 = 1700000000000;
	/* on at 0..400, off 500..900 (a gap shorter than clear_after), on at
	 * 1000, then off for good from 1100: cleared at 2100, said as 1100 */
	for (int64_t t = 0; t <= 3000; t += 100) {
		bool cause = t <= 400 || t == 1000;
		console_alerts_judge(al, CONSOLE_ALERT_DATABASE, cause, wall0 + t, t, "down");
		if (t < 2100)
			CHECK(al->since[CONSOLE_ALERT_DATABASE] == wall0);
		else
			CHECK(al->since[CONSOLE_ALERT_DATABASE] == 0);
	}
	REQUIRE(al->nqueued == 2);
	CHECK(!al->queue[0].cleared && al->queue[0].at == wall0);
	CHECK(al->queue[1].cleared && al->queue[1].at == wall0 + 1100);
	CHECK(uuid_eq(&al->queue[0].id, &al->queue[1].id));
	console_alerts_free(al);
	metrics_free(m);
	log_min_level = was;
}

UNIT_TEST(console_alert_events_match_brute_force)
{
	srand((unsigned)unit_seed()); /* printed by the runner */
	enum log_level was = log_min_level;
	log_min_level = LOG_ERROR; /* every raise and clear is logged */
	for (int round = 0; round < 200; round++) {
		struct metrics *m = metrics_new();
		int64_t hold = 100 * (1 + rand() % 10);
		struct console_alerts *al = console_alerts_new(NULL, m, hold);
		int n = 40 + rand() % 40;
		bool cause[80];
		for (int i = 0; i < n; i++)
			cause[i] = rand() % 3 == 0;
		for (int i = n - 12; i < n; i++)
			cause[i] = false; /* long enough for the last clear, whatever hold is */
		/* the rule read directly: raised at the first cause while not
		 * raised; cleared at the first tick that is hold past the last
		 * cause seen, and then only */
		int expect = 0;
		bool raised = false;
		int64_t last_off_start = -1;
		for (int i = 0; i < n; i++) {
			int64_t t = (int64_t)i * 100;
			console_alerts_judge(al, CONSOLE_ALERT_MATCH_RATE, cause[i], t + 1, t, "x");
			if (cause[i]) {
				last_off_start = -1;
				if (!raised) {
					raised = true;
					expect++;
				}
			} else if (raised) {
				if (last_off_start < 0)
					last_off_start = t;
				if (t - last_off_start >= hold) {
					raised = false;
					expect++;
					last_off_start = -1;
				}
			}
			CHECK((al->since[CONSOLE_ALERT_MATCH_RATE] != 0) == raised);
		}
		CHECK(!raised);
		CHECK_EQ_INT(al->nqueued, expect > CONSOLE_ALERT_QUEUE ? CONSOLE_ALERT_QUEUE : expect);
		for (size_t i = 0; i < al->nqueued; i++) /* raised, cleared, raised, cleared... */
			CHECK(al->queue[i].cleared == (i % 2 == 1));
		console_alerts_free(al);
		metrics_free(m);
	}
	log_min_level = was;
}
