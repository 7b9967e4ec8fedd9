#include "../unit.h"

#include <stdlib.h>

#include "console/console.h"

static int figures_cmp(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

UNIT_TEST(console_samples_known_values)
{
	struct console_samples s;
	console_samples_init(&s, 16);
	size_t n;
	int64_t p50 = -1, p95 = -1;
	double mean;
	CHECK(!console_samples_pct(&s, 0, 1000, &n, &p50, &p95));
	CHECK_EQ_INT(n, 0);
	CHECK(!console_samples_mean(&s, 0, 1000, &n, &mean));
	for (int i = 1; i <= 10; i++)
		console_samples_add(&s, 100 * i, i * 1000);
	REQUIRE(console_samples_pct(&s, 1000, 10000, &n, &p50, &p95));
	CHECK_EQ_INT(n, 10);
	CHECK_EQ_INT(p50, 5000);  /* nearest rank: the 5th of 10 */
	CHECK_EQ_INT(p95, 10000); /* the 10th */
	/* at 1,250 with a 700 ms window, samples stamped before 550 have gone */
	REQUIRE(console_samples_pct(&s, 1250, 700, &n, &p50, &p95));
	CHECK_EQ_INT(n, 5);
	CHECK_EQ_INT(p50, 8000);
	console_samples_fini(&s);

	console_samples_init(&s, 4);
	for (int i = 0; i < 6; i++) /* 1, 0, 1, 0, 1, 0: the ring keeps the last 4 */
		console_samples_add(&s, i, !(i & 1));
	REQUIRE(console_samples_mean(&s, 5, 100, &n, &mean));
	CHECK_EQ_INT(n, 4);
	CHECK_NEAR(mean, 0.5, 1e-12);
	console_samples_add(&s, 6, 1);
	REQUIRE(console_samples_mean(&s, 6, 100, &n, &mean));
	CHECK_NEAR(mean, 0.5, 1e-12); /* the last four: 0, 1, 0, 1 */
	console_samples_fini(&s);
}

/* Against a brute force: every sample kept in a plain array, the window (one
 * per round) and the ring's capacity applied by hand, percentiles by sorting. */
UNIT_TEST(console_samples_match_brute_force)
{
	uint64_t seed = unit_seed();
	printf("  console_samples seed %" PRIu64 "\n", seed);
	uint64_t x = seed | 1;
	for (int round = 0; round < 50; round++) {
		size_t cap = 1 + (size_t)(x % 64);
		struct console_samples s;
		console_samples_init(&s, cap);
		int64_t at[600], val[600];
		size_t total = 0;
		int64_t now = 0;
		int64_t window = (int64_t)(x % 2000); /* one per round, as the console's */
		for (int step = 0; step < 600; step++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			now += (int64_t)(x % 50);
			int64_t v = (int64_t)(x >> 20) % 100000;
			console_samples_add(&s, now, v);
			at[total] = now, val[total] = v, total++;
			if (step % 7)
				continue;
			/* the reference: the last cap samples, of those the ones in the window */
			size_t from = total > cap ? total - cap : 0;
			int64_t keep[600];
			size_t k = 0;
			for (size_t i = from; i < total; i++)
				if (at[i] >= now - window)
					keep[k++] = val[i];
			size_t n;
			int64_t p50, p95;
			bool any = console_samples_pct(&s, now, window, &n, &p50, &p95);
			CHECK_EQ_INT(any, k > 0);
			CHECK_EQ_INT(n, k);
			if (!k)
				continue;
			qsort(keep, k, sizeof *keep, figures_cmp);
			CHECK_EQ_INT(p50, keep[(k * 50 + 99) / 100 - 1]);
			CHECK_EQ_INT(p95, keep[(k * 95 + 99) / 100 - 1]);
			if (unit_current_failed())
				break;
		}
		console_samples_fini(&s);
	}
}
