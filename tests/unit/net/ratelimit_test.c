#include "../unit.h"

#include "net/ratelimit.h"

UNIT_TEST(ratelimit_burst_then_rate)
{
	struct ratelimit *rl = ratelimit_new(60, 5, 100); /* 1/s, burst 5 */
	int64_t retry = 0;
	for (int i = 0; i < 5; i++)
		CHECK(ratelimit_allow(rl, "a", 1000, &retry));
	CHECK(!ratelimit_allow(rl, "a", 1000, &retry));
	CHECK(retry > 0 && retry <= 1001);
	CHECK(ratelimit_allow(rl, "b", 1000, &retry)); /* keys are independent */
	CHECK(!ratelimit_allow(rl, "a", 1500, &retry));
	CHECK(ratelimit_allow(rl, "a", 2001, &retry)); /* one interval later */
	CHECK(!ratelimit_allow(rl, "a", 2001, &retry));
	/* after a long pause the whole burst is back, not more */
	int n = 0;
	while (ratelimit_allow(rl, "a", 100000, &retry))
		n++;
	CHECK_EQ_INT(n, 5);
	ratelimit_free(rl);
}

UNIT_TEST(ratelimit_table_stays_bounded)
{
	struct ratelimit *rl = ratelimit_new(10, 2, 64);
	char key[32];
	for (int i = 0; i < 10000; i++) {
		snprintf(key, sizeof key, "k%d", i);
		ratelimit_allow(rl, key, i, NULL);
	}
	CHECK(ratelimit_size(rl) <= 64);
	/* a fresh key is still counted correctly after evictions */
	CHECK(ratelimit_allow(rl, "fresh", 20000, NULL));
	CHECK(ratelimit_allow(rl, "fresh", 20000, NULL));
	CHECK(!ratelimit_allow(rl, "fresh", 20000, NULL));
	ratelimit_free(rl);
}

UNIT_TEST(ratelimit_check_counts_nothing_and_refund_gives_back)
{
	struct ratelimit *rl = ratelimit_new(60, 3, 100); /* 1/s, burst 3 */
	CHECK(ratelimit_check(rl, "a", 1000));
	for (int i = 0; i < 3; i++)
		CHECK(ratelimit_allow(rl, "a", 1000, NULL));
	CHECK(!ratelimit_check(rl, "a", 1000));
	CHECK(!ratelimit_check(rl, "a", 1000)); /* still: checking spent nothing */
	/* an event refused for overload is given back: room for one more */
	ratelimit_refund(rl, "a", 1000);
	CHECK(ratelimit_check(rl, "a", 1000));
	CHECK(ratelimit_allow(rl, "a", 1000, NULL));
	CHECK(!ratelimit_allow(rl, "a", 1000, NULL));
	/* refunds never bank more than the burst */
	for (int i = 0; i < 10; i++)
		ratelimit_refund(rl, "a", 1000);
	int n = 0;
	while (ratelimit_allow(rl, "a", 1000, NULL))
		n++;
	CHECK_EQ_INT(n, 3);
	ratelimit_refund(rl, "unknown", 1000); /* no entry: nothing to do */
	ratelimit_free(rl);
}
