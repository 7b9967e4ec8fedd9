/* The insertion search (include/share/plan.h). */
#include "share/plan.h"

#include <math.h>

static const struct share_rider *share_plan_rider(const struct share_plan_in *in, int r)
{
	return (size_t)r == in->nriders ? &in->add : &in->riders[r];
}

/* The node of a stop of the new list: current stops keep their node, the
 * new pickup and dropoff are the last two. */
bool share_plan_walk(const struct share_plan_in *in, const size_t *nodes, size_t n, double *pick_s, double *drop_s,
		     double *total_s)
{
	size_t N = in->nstops + 3;
	int load = 0;
	for (size_t r = 0; r < in->nriders; r++)
		if (in->riders[r].onboard)
			load += in->riders[r].seats;
	for (size_t r = 0; r <= in->nriders; r++)
		pick_s[r] = drop_s[r] = -1;
	if (load > in->capacity)
		return false;
	double t = 0;
	size_t at = 0; /* the car */
	for (size_t k = 0; k < n; k++) {
		size_t node = nodes[k];
		double leg = in->tt[at * N + node];
		if (leg < 0)
			return false;
		t += leg;
		at = node;
		bool pickup;
		int r;
		if (node == in->nstops + 1 || node == in->nstops + 2) {
			r = (int)in->nriders;
			pickup = node == in->nstops + 1;
		} else {
			r = in->stops[node - 1].rider;
			pickup = in->stops[node - 1].pickup;
		}
		const struct share_rider *sr = share_plan_rider(in, r);
		if (pickup) {
			pick_s[r] = t;
			load += sr->seats;
			if (load > in->capacity)
				return false;
		} else {
			drop_s[r] = t;
			load -= sr->seats;
		}
	}
	*total_s = t;
	return true;
}

/* The time rider r rides in a walked list (-1 when not dropped in it). */
static double share_plan_ride(const struct share_rider *sr, double pick, double drop)
{
	if (drop < 0)
		return -1;
	return sr->onboard ? sr->ridden_s + drop : drop - pick;
}

bool share_plan_insert(const struct share_plan_in *in, struct share_plan_out *out)
{
	size_t n = in->nstops;
	if (n + 2 > SHARE_PLAN_MAX_STOPS || in->add.seats > in->capacity)
		return false;
	size_t cur[SHARE_PLAN_MAX_STOPS], nodes[SHARE_PLAN_MAX_STOPS];
	double pick0[SHARE_PLAN_MAX_STOPS + 1], drop0[SHARE_PLAN_MAX_STOPS + 1];
	double pick[SHARE_PLAN_MAX_STOPS + 1], drop[SHARE_PLAN_MAX_STOPS + 1];
	double total0 = 0;
	if (in->nriders > SHARE_PLAN_MAX_STOPS)
		return false;
	for (size_t k = 0; k < n; k++)
		cur[k] = k + 1;
	if (!share_plan_walk(in, cur, n, pick0, drop0, &total0))
		total0 = 0; /* the current list is over capacity (it cannot be): no baseline */
	bool found = false;
	out->tried = 0;
	for (size_t i = 0; i <= n; i++) {
		for (size_t j = i; j <= n; j++) {
			/* the new list: cur[0..i), P, cur[i..j), D, cur[j..n) */
			size_t m = 0;
			for (size_t k = 0; k < n + 1; k++) {
				if (k == i)
					nodes[m++] = n + 1;
				if (k == j)
					nodes[m++] = n + 2;
				if (k < n)
					nodes[m++] = cur[k];
			}
			out->tried++;
			double total;
			if (!share_plan_walk(in, nodes, m, pick, drop, &total))
				continue;
			const struct share_rider *a = &in->add;
			double ride = drop[in->nriders] - pick[in->nriders];
			if (pick[in->nriders] > a->wait_by_s || ride > (1 + a->bound) * a->direct_s + 1e-6)
				continue;
			bool ok = true;
			double max_delay = 0;
			for (size_t r = 0; r < in->nriders && ok; r++) {
				const struct share_rider *sr = &in->riders[r];
				if (!sr->onboard && pick0[r] >= 0) {
					double lim = fmax(sr->wait_by_s, pick0[r]);
					if (pick[r] > lim + 1e-6)
						ok = false;
				}
				double was = share_plan_ride(sr, pick0[r], drop0[r]);
				double now = share_plan_ride(sr, pick[r], drop[r]);
				if (now >= 0) {
					double lim = fmax((1 + sr->bound) * sr->direct_s, was);
					if (now > lim + 1e-6)
						ok = false;
				}
				if (drop0[r] >= 0 && drop[r] - drop0[r] > max_delay)
					max_delay = drop[r] - drop0[r];
			}
			if (!ok)
				continue;
			double detour = fmax(0, ride - a->direct_s);
			double score = (total - total0) + in->w_detour * detour + in->w_fair * max_delay;
			if (!found || score < out->score) {
				found = true;
				out->pickup_at = i;
				out->dropoff_at = j + 1;
				out->score = score;
				out->added_s = total - total0;
				out->pickup_eta_s = pick[in->nriders];
				out->detour_pct = a->direct_s > 0 ? (ride / a->direct_s - 1) * 100 : 0;
				out->max_delay_s = max_delay;
			}
		}
	}
	return found;
}
