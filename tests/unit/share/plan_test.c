/* The insertion search against brute force, and the rate card. */
#include <stdlib.h>

#include "../unit.h"
#include "share/card.h"
#include "share/plan.h"

static double rnd(uint64_t *s)
{
	*s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
	return (double)(*s >> 11) / (double)(1ULL << 53);
}

/* The brute force's own reading of a list: nodes in order, every rule
 * checked by walking it again, without the planner's helpers. Returns the
 * score (which may be negative: the random times break the triangle
 * inequality), or NAN when infeasible. */
static double share_test_eval(const struct share_plan_in *in, const size_t *nodes, size_t m, double total0,
			      const double *pick0, const double *drop0)
{
	size_t N = in->nstops + 3, R = in->nriders + 1;
	double pick[40], drop[40], t = 0;
	for (size_t r = 0; r < R; r++)
		pick[r] = drop[r] = -1;
	int load = 0;
	for (size_t r = 0; r < in->nriders; r++)
		load += in->riders[r].onboard ? in->riders[r].seats : 0;
	if (load > in->capacity) /* more aboard than seats: no list is feasible */
		return NAN;
	size_t at = 0;
	for (size_t k = 0; k < m; k++) {
		t += in->tt[at * N + nodes[k]];
		at = nodes[k];
		int r = nodes[k] > in->nstops ? (int)in->nriders : in->stops[nodes[k] - 1].rider;
		bool pu = nodes[k] > in->nstops ? nodes[k] == in->nstops + 1 : in->stops[nodes[k] - 1].pickup;
		int seats = (size_t)r == in->nriders ? in->add.seats : in->riders[r].seats;
		if (pu) {
			pick[r] = t;
			load += seats;
		} else {
			drop[r] = t;
			load -= seats;
		}
		if (load > in->capacity)
			return NAN;
	}
	double ride = drop[in->nriders] - pick[in->nriders];
	if (pick[in->nriders] > in->add.wait_by_s || ride > (1 + in->add.bound) * in->add.direct_s + 1e-6)
		return NAN;
	double delay = 0;
	for (size_t r = 0; r < in->nriders; r++) {
		const struct share_rider *sr = &in->riders[r];
		if (!sr->onboard && pick[r] > fmax(sr->wait_by_s, pick0[r]) + 1e-6)
			return NAN;
		double was = sr->onboard ? sr->ridden_s + drop0[r] : drop0[r] - pick0[r];
		double now = sr->onboard ? sr->ridden_s + drop[r] : drop[r] - pick[r];
		if (now > fmax((1 + sr->bound) * sr->direct_s, was) + 1e-6)
			return NAN;
		delay = fmax(delay, drop[r] - drop0[r]);
	}
	return (t - total0) + in->w_detour * fmax(0, ride - in->add.direct_s) + in->w_fair * delay;
}

UNIT_TEST(share_plan_insert_matches_brute_force)
{
	uint64_t seed = unit_seed();
	int found = 0, none = 0;
	for (int round = 0; round < 3000; round++) {
		uint64_t s = seed + (uint64_t)round * 7919;
		size_t nr = (size_t)(rnd(&s) * 5);
		double x[40], y[40];
		struct share_rider riders[8];
		struct share_stop stops[20];
		size_t n = 0;
		/* riders' stops: onboard ones have only their dropoff; the rest
		 * a pickup then a dropoff, interleaved at random */
		size_t order[20];
		for (size_t r = 0; r < nr; r++) {
			riders[r].seats = 1 + (rnd(&s) < 0.3);
			riders[r].onboard = rnd(&s) < 0.4;
			riders[r].bound = 0.15 + rnd(&s) * 0.5;
			riders[r].ridden_s = riders[r].onboard ? rnd(&s) * 300 : 0;
			riders[r].wait_by_s = 100 + rnd(&s) * 900;
			if (!riders[r].onboard)
				stops[n++] = (struct share_stop){ (int)r, true };
			stops[n++] = (struct share_stop){ (int)r, false };
		}
		/* shuffle keeping each pickup before its dropoff */
		for (size_t k = 0; k < n; k++)
			order[k] = k;
		for (size_t k = n; k > 1; k--) {
			size_t j = (size_t)(rnd(&s) * (double)k);
			size_t tmp = order[k - 1];
			order[k - 1] = order[j];
			order[j] = tmp;
		}
		struct share_stop sorted[20];
		bool seen[8] = { 0 };
		size_t m = 0;
		for (size_t k = 0; k < n; k++) { /* pickups first when their dropoff comes earlier */
			struct share_stop st = stops[order[k]];
			if (!st.pickup && !riders[st.rider].onboard && !seen[st.rider]) {
				sorted[m++] = (struct share_stop){ st.rider, true };
				seen[st.rider] = true;
			}
			if (st.pickup && seen[st.rider])
				continue;
			if (st.pickup)
				seen[st.rider] = true;
			sorted[m++] = st;
		}
		n = m;
		size_t N = n + 3;
		for (size_t k = 0; k < N; k++) {
			x[k] = rnd(&s) * 3000;
			y[k] = rnd(&s) * 3000;
		}
		double tt[40 * 40];
		for (size_t a = 0; a < N; a++)
			for (size_t b = 0; b < N; b++)
				tt[a * N + b] = hypot(x[a] - x[b], y[a] - y[b]) * (1 + 0.3 * (a != b) * rnd(&s)) / 8.0;
		/* riders' direct times: the straight pickup-dropoff time, or a
		 * guess for those onboard */
		for (size_t r = 0; r < nr; r++)
			riders[r].direct_s = 200 + rnd(&s) * 400;
		struct share_plan_in in = {
			.stops = sorted, .nstops = n, .riders = riders, .nriders = nr, .capacity = 2 + (int)(rnd(&s) * 3),
			.tt = tt, .w_detour = rnd(&s) * 2, .w_fair = rnd(&s) * 2,
		};
		in.add = (struct share_rider){ .direct_s = tt[(N - 2) * N + N - 1], .bound = 0.1 + rnd(&s),
					       .seats = 1 + (rnd(&s) < 0.3), .wait_by_s = 100 + rnd(&s) * 900 };
		/* brute force */
		size_t cur[20], nodes[22];
		for (size_t k = 0; k < n; k++)
			cur[k] = k + 1;
		double pick0[40], drop0[40], total0 = 0;
		if (!share_plan_walk(&in, cur, n, pick0, drop0, &total0))
			total0 = 0;
		double best = NAN;
		for (size_t i = 0; i <= n; i++)
			for (size_t j = i; j <= n; j++) {
				size_t q = 0;
				for (size_t k = 0; k <= n; k++) {
					if (k == i)
						nodes[q++] = n + 1;
					if (k == j)
						nodes[q++] = n + 2;
					if (k < n)
						nodes[q++] = cur[k];
				}
				double sc = share_test_eval(&in, nodes, q, total0, pick0, drop0);
				if (!isnan(sc) && (isnan(best) || sc < best))
					best = sc;
			}
		struct share_plan_out out;
		bool ok = share_plan_insert(&in, &out);
		if (ok != !isnan(best)) {
			unit_fail(__FILE__, __LINE__, "seed %" PRIu64 " round %d: planner %d, brute force %g", seed, round,
				  ok, best);
			return;
		}
		if (ok) {
			CHECK_NEAR(out.score, best, 1e-6);
			CHECK_EQ_INT(out.tried, (n + 1) * (n + 2) / 2);
			CHECK(out.pickup_at < out.dropoff_at && out.dropoff_at <= n + 1);
			CHECK(out.detour_pct <= in.add.bound * 100 + 1e-6);
			found++;
		} else {
			none++;
		}
	}
	/* both outcomes were exercised */
	CHECK(found > 100 && none > 100);
}

UNIT_TEST(share_plan_respects_seats_and_wait)
{
	/* one rider onboard with 2 seats of a 2-seat car: nobody can board
	 * before their dropoff */
	struct share_stop stops[] = { { 0, false } };
	struct share_rider riders[] = { { .direct_s = 600, .bound = 0.5, .seats = 2, .onboard = true } };
	/* nodes: car, D0, P, D */
	double tt[16] = { 0, 300, 10, 320, 300, 0, 290, 20, 10, 290, 0, 300, 320, 20, 300, 0 };
	struct share_plan_in in = { .stops = stops, .nstops = 1, .riders = riders, .nriders = 1, .capacity = 2, .tt = tt };
	in.add = (struct share_rider){ .direct_s = 300, .bound = 5, .seats = 1, .wait_by_s = 1000 };
	struct share_plan_out out;
	REQUIRE(share_plan_insert(&in, &out));
	CHECK_EQ_INT(out.pickup_at, 1); /* after the dropoff */
	CHECK_NEAR(out.pickup_eta_s, 590, 1e-9);
	in.add.wait_by_s = 500; /* ... which is too late now */
	CHECK(!share_plan_insert(&in, &out));
	in.capacity = 3;        /* a third seat: picked up on the way */
	REQUIRE(share_plan_insert(&in, &out));
	CHECK_EQ_INT(out.pickup_at, 0);
}

UNIT_TEST(share_card_prices_and_signature)
{
	struct share_prices p = { 0.3, 0.15, 0.6, 0.05 };
	int64_t pr[SHARE_CARD_OPTIONS];
	share_card_prices(1000, &p, pr);
	CHECK_EQ_INT(pr[share_card_option(1, false, false)], 700);
	CHECK_EQ_INT(pr[share_card_option(1, true, false)], 805);
	CHECK_EQ_INT(pr[share_card_option(2, false, false)], 1120);
	CHECK_EQ_INT(pr[share_card_option(2, true, true)], 1224); /* 1000 x .7 x 1.15 x 1.6 x .95 = 1223.6 */
	CHECK_EQ_INT(pr[share_card_option(1, false, true)], 665);
	unsigned char qk[32] = { 1, 2, 3 };
	struct share_card_key key, other;
	share_card_key(qk, &key);
	qk[0] = 9;
	share_card_key(qk, &other);
	struct share_card c = { .rider = "0b9e0d2c-1111-4222-8333-444455556666", .vehicle = "standard", .currency = "EUR",
				.plat = 52.09, .plng = 5.12, .dlat = 52.12, .dlng = 5.13, .corp = true,
				.expires_ms = 2000, .solo = 1000, .direct_s = 420, .direct_m = 3100 };
	memcpy(c.price, pr, sizeof pr);
	char id[SHARE_CARD_ID_MAX];
	share_card_sign(&key, &c, id, sizeof id);
	struct share_card back;
	CHECK_EQ_INT(share_card_open(&key, id, 1999, &back), SHARE_CARD_OK);
	CHECK_EQ_STR(back.rider, c.rider);
	CHECK(back.corp && back.solo == 1000 && back.direct_m == 3100 && back.price[7] == pr[7]);
	CHECK_NEAR(back.dlng, 5.13, 1e-7);
	CHECK_EQ_INT(share_card_open(&key, id, 2000, &back), SHARE_CARD_EXPIRED);
	CHECK_EQ_INT(share_card_open(&other, id, 0, &back), SHARE_CARD_INVALID);
	for (size_t i = 4; i < strlen(id); i += 7) { /* any byte changed */
		char t[SHARE_CARD_ID_MAX];
		strcpy(t, id);
		t[i] = t[i] == 'A' ? 'B' : 'A';
		if (share_card_open(&key, t, 0, &back) != SHARE_CARD_INVALID)
			unit_fail(__FILE__, __LINE__, "position %zu of %s", i, id);
	}
	CHECK_EQ_INT(share_card_open(&key, "rc1.", 0, &back), SHARE_CARD_INVALID);
	CHECK_EQ_INT(share_card_open(&key, "", 0, &back), SHARE_CARD_INVALID);
}
