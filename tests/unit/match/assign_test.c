/* The assignment solver against brute force on small random problems (every
 * way of giving each row one of its pairs or nothing), and against a dense
 * Hungarian method on larger ones. Each problem's seed is printed when it
 * fails (UNIT_SEED reruns the lot). */
#include "../unit.h"

#include <stdlib.h>

#include "match/assign.h"

struct prob {
	size_t nr, nc;
	size_t start[65];
	uint32_t col[64 * 64];
	int64_t cost[64 * 64];
	int64_t unassigned[64];
};

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static int64_t rng_range(uint64_t *s, int64_t lo, int64_t hi)
{
	return lo + (int64_t)(rng_next(s) % (uint64_t)(hi - lo + 1));
}

/* nr x nc, each pair present with probability density/100, costs in
 * [lo, hi]; unassigned costs in [ulo, uhi]. */
static void prob_random(struct prob *p, uint64_t *s, size_t nr, size_t nc, int density, int64_t lo, int64_t hi,
			int64_t ulo, int64_t uhi)
{
	p->nr = nr;
	p->nc = nc;
	size_t n = 0;
	for (size_t i = 0; i < nr; i++) {
		p->start[i] = n;
		for (size_t j = 0; j < nc; j++)
			if (rng_range(s, 1, 100) <= density) {
				p->col[n] = (uint32_t)j;
				p->cost[n++] = rng_range(s, lo, hi);
			}
		p->unassigned[i] = rng_range(s, ulo, uhi);
	}
	p->start[nr] = n;
}

static struct assign_problem prob_view(const struct prob *p)
{
	return (struct assign_problem){ p->nr, p->nc, p->start, p->col, p->cost, p->unassigned };
}

/* The best total over every choice for rows i.. with columns `used` taken. */
static int64_t brute(const struct prob *p, size_t i, uint64_t used)
{
	if (i == p->nr)
		return 0;
	int64_t best = p->unassigned[i] + brute(p, i + 1, used);
	for (size_t k = p->start[i]; k < p->start[i + 1]; k++) {
		uint64_t bit = 1ull << p->col[k];
		if (used & bit)
			continue;
		int64_t v = p->cost[k] + brute(p, i + 1, used | bit);
		if (v < best)
			best = v;
	}
	return best;
}

/* The answer is an assignment (each row one of its own pairs or nothing,
 * no column twice) whose total is what the solver says. */
static bool check_answer(const struct prob *p, const int32_t *rc, int64_t total, uint64_t seed)
{
	int64_t sum = 0;
	uint8_t taken[64] = { 0 };
	for (size_t i = 0; i < p->nr; i++) {
		if (rc[i] < 0) {
			sum += p->unassigned[i];
			continue;
		}
		int64_t c = INT64_MAX;
		for (size_t k = p->start[i]; k < p->start[i + 1]; k++)
			if ((int32_t)p->col[k] == rc[i] && p->cost[k] < c)
				c = p->cost[k];
		if (c == INT64_MAX || taken[rc[i]]++) {
			unit_fail(__FILE__, __LINE__, "seed %" PRIu64 ": row %zu given column %d, not its or taken twice",
				  seed, i, rc[i]);
			return false;
		}
		sum += c;
	}
	if (sum != total) {
		unit_fail(__FILE__, __LINE__, "seed %" PRIu64 ": reported total %" PRId64 ", the assignment costs %" PRId64,
			  seed, total, sum);
		return false;
	}
	return true;
}

UNIT_TEST(assign_matches_brute_force_on_small_random_problems)
{
	struct assign *a = assign_new();
	static struct prob p;
	int32_t rc[64];
	int bad = 0;
	for (int t = 0; t < 4000 && bad < 5; t++) {
		uint64_t seed = unit_seed() * 1000003u + (uint64_t)t, s = seed;
		size_t nr = (size_t)rng_range(&s, 0, 6), nc = (size_t)rng_range(&s, 0, 8);
		int density = (int)rng_range(&s, 10, 100);
		/* negative costs too (dispatch's credits make some), and rows for
		 * which going without is sometimes the best */
		prob_random(&p, &s, nr, nc, density, -40, 120, t % 3 ? 0 : 1000000, t % 3 ? 150 : 1000000);
		struct assign_problem ap = prob_view(&p);
		int64_t got = assign_solve(a, &ap, rc), want = brute(&p, 0, 0);
		if (!check_answer(&p, rc, got, seed) || got != want) {
			if (got != want)
				unit_fail(__FILE__, __LINE__, "seed %" PRIu64 " (%zu x %zu): %" PRId64 ", brute force %" PRId64,
					  seed, nr, nc, got, want);
			bad++;
		}
	}
	assign_free(a);
}

/* A dense Hungarian method (potentials, O(n^2 m)) on the same problem made
 * square-ish: columns 0..nc, then one "unassigned" column per row; a pair
 * that does not exist costs more than any answer could. */
static int64_t dense_reference(const struct prob *p)
{
	const int64_t NOPE = (int64_t)1 << 46;
	size_t n = p->nr, m = p->nc + p->nr;
	int64_t *c = malloc((n + 1) * (m + 1) * sizeof *c);
	for (size_t i = 1; i <= n; i++) {
		for (size_t j = 1; j <= m; j++)
			c[i * (m + 1) + j] = j - 1 == p->nc + (i - 1) ? p->unassigned[i - 1] : NOPE;
		for (size_t k = p->start[i - 1]; k < p->start[i]; k++) {
			int64_t *x = &c[i * (m + 1) + p->col[k] + 1];
			if (p->cost[k] < *x)
				*x = p->cost[k];
		}
	}
	int64_t *u = calloc(n + 1, sizeof *u), *v = calloc(m + 1, sizeof *v), *minv = malloc((m + 1) * sizeof *minv);
	size_t *pj = calloc(m + 1, sizeof *pj), *way = calloc(m + 1, sizeof *way);
	char *used = malloc(m + 1);
	for (size_t i = 1; i <= n; i++) {
		pj[0] = i;
		size_t j0 = 0;
		for (size_t j = 0; j <= m; j++) {
			minv[j] = INT64_MAX;
			used[j] = 0;
		}
		do {
			used[j0] = 1;
			size_t i0 = pj[j0], j1 = 0;
			int64_t delta = INT64_MAX;
			for (size_t j = 1; j <= m; j++) {
				if (used[j])
					continue;
				int64_t cur = c[i0 * (m + 1) + j] - u[i0] - v[j];
				if (cur < minv[j]) {
					minv[j] = cur;
					way[j] = j0;
				}
				if (minv[j] < delta) {
					delta = minv[j];
					j1 = j;
				}
			}
			for (size_t j = 0; j <= m; j++) {
				if (used[j]) {
					u[pj[j]] += delta;
					v[j] -= delta;
				} else {
					minv[j] -= delta;
				}
			}
			j0 = j1;
		} while (pj[j0] != 0);
		do {
			size_t j1 = way[j0];
			pj[j0] = pj[j1];
			j0 = j1;
		} while (j0);
	}
	int64_t total = 0;
	for (size_t j = 1; j <= m; j++)
		if (pj[j])
			total += c[pj[j] * (m + 1) + j];
	free(c);
	free(u);
	free(v);
	free(minv);
	free(pj);
	free(way);
	free(used);
	return total;
}

UNIT_TEST(assign_matches_a_dense_hungarian_method_on_larger_problems)
{
	struct assign *a = assign_new();
	static struct prob p;
	int32_t rc[64];
	for (int t = 0; t < 300; t++) {
		uint64_t seed = unit_seed() * 7919u + (uint64_t)t, s = seed;
		size_t nr = (size_t)rng_range(&s, 1, 40), nc = (size_t)rng_range(&s, 1, 60);
		int density = (int)rng_range(&s, 3, 60);
		bool big = t % 2; /* serve as many as possible first, or trade */
		prob_random(&p, &s, nr, nc, density, -500, 5000, big ? 100000000 : 0, big ? 100000100 : 4000);
		struct assign_problem ap = prob_view(&p);
		int64_t got = assign_solve(a, &ap, rc), want = dense_reference(&p);
		if (!check_answer(&p, rc, got, seed) || got != want) {
			unit_fail(__FILE__, __LINE__, "seed %" PRIu64 " (%zu x %zu): %" PRId64 ", dense reference %" PRId64,
				  seed, nr, nc, got, want);
			break;
		}
	}
	assign_free(a);
}

UNIT_TEST(assign_the_nearest_driver_for_one_rider_is_the_only_one_for_the_next)
{
	/* Riders at 0 and 200 m on a line, drivers at 100 m and -300 m: each
	 * rider alone takes the driver at 100 m; together the first takes the
	 * one at -300 (300 + 100 < 100 + 500). */
	size_t start[] = { 0, 2, 4 };
	uint32_t col[] = { 0, 1, 0, 1 };
	int64_t cost[] = { 100, 300, 100, 500 }, un[] = { 1000000, 1000000 };
	struct assign_problem p = { 2, 2, start, col, cost, un };
	struct assign *a = assign_new();
	int32_t rc[2];
	CHECK_EQ_INT(assign_solve(a, &p, rc), 400);
	CHECK_EQ_INT(rc[0], 1);
	CHECK_EQ_INT(rc[1], 0);
	/* one driver only: as many as possible first, then the one whose going
	 * without costs more (the older request) */
	int64_t un2[] = { 1000000, 1000050 };
	struct assign_problem q = { 2, 1, start, col, cost, un2 };
	size_t start1[] = { 0, 1, 2 };
	uint32_t col1[] = { 0, 0 };
	int64_t cost1[] = { 100, 120 };
	q.row_start = start1;
	q.col = col1;
	q.cost = cost1;
	CHECK_EQ_INT(assign_solve(a, &q, rc), 1000000 + 120);
	CHECK(rc[0] == -1 && rc[1] == 0);
	/* no rows, no columns, a row with no pair */
	struct assign_problem none = { 0, 0, start, col, cost, un };
	CHECK_EQ_INT(assign_solve(a, &none, rc), 0);
	size_t start0[] = { 0, 0 };
	struct assign_problem lone = { 1, 3, start0, col, cost, un };
	CHECK_EQ_INT(assign_solve(a, &lone, rc), 1000000);
	CHECK_EQ_INT(rc[0], -1);
	assign_free(a);
}

UNIT_TEST(assign_reuses_its_space_across_sizes)
{
	struct assign *a = assign_new();
	static struct prob p;
	int32_t rc[64];
	size_t sizes[][2] = { { 40, 60 }, { 3, 2 }, { 60, 64 }, { 1, 1 }, { 64, 10 } };
	for (size_t t = 0; t < sizeof sizes / sizeof *sizes; t++) {
		uint64_t seed = unit_seed() + t, s = seed;
		prob_random(&p, &s, sizes[t][0], sizes[t][1], 20, 0, 1000, 5000, 5000);
		struct assign_problem ap = prob_view(&p);
		int64_t got = assign_solve(a, &ap, rc);
		CHECK(check_answer(&p, rc, got, seed));
		CHECK_EQ_INT(got, dense_reference(&p));
	}
	assign_free(a);
}
