/* Shared rides: where a new rider's pickup and dropoff go in a car's stop
 * list (pure: no I/O, no clock; times in seconds from now).
 *
 * The search is exact over insertion positions: every pickup position i and
 * dropoff position j >= i of the current list is tried (O(n^2) candidates,
 * each checked in O(n)); the current stops keep their order. A candidate is
 * feasible when
 *   - the car's load never exceeds its seats;
 *   - the new rider is picked up before their wait deadline and rides at
 *     most (1 + bound) x their direct time;
 *   - no rider already in the list is made worse than both their bound and
 *     what the current list already gives them (a list that time has
 *     pushed past a bound is not made worse, and not refused outright).
 * Its score (lower is better, docs/sharing.md):
 *   added_s + w_detour x the new rider's detour_s + w_fair x the largest
 *   delay it imposes on one rider already in the list. */
#ifndef RH_SHARE_PLAN_H
#define RH_SHARE_PLAN_H

#include <stdbool.h>
#include <stddef.h>

#define SHARE_PLAN_MAX_STOPS 32

struct share_stop {
	int rider;   /* index into the riders (the new rider is nriders) */
	bool pickup; /* else the dropoff */
};

struct share_rider {
	double direct_s;   /* their route alone */
	double bound;      /* detour allowed, a fraction of direct_s (0.15) */
	int seats;
	bool onboard;      /* picked up: only their dropoff is in the list */
	double ridden_s;   /* onboard: seconds since the pickup */
	double wait_by_s;  /* not onboard: the pickup must come by then (from now) */
};

struct share_plan_in {
	const struct share_stop *stops; /* the current list, in order */
	size_t nstops;                  /* <= SHARE_PLAN_MAX_STOPS - 2 */
	const struct share_rider *riders;
	size_t nriders;
	struct share_rider add;         /* the new rider (not onboard) */
	int capacity;
	/* Travel times between the nodes: node 0 the car, 1..nstops the
	 * stops, nstops + 1 the new pickup, nstops + 2 the new dropoff;
	 * tt[a * (nstops + 3) + b] from a to b, < 0 unreachable. */
	const double *tt;
	double w_detour, w_fair;
};

struct share_plan_out {
	size_t pickup_at, dropoff_at; /* positions in the new list (pickup_at < dropoff_at) */
	double score;
	double added_s;       /* the list's total time, after minus before */
	double pickup_eta_s;  /* the new rider's pickup, from now */
	double detour_pct;    /* the new rider's ride over their direct time, minus 1, x 100 */
	double max_delay_s;   /* the most one rider already in the list is delayed */
	size_t tried;         /* candidates looked at */
};

/* The best feasible insertion into out; false when none is. */
bool share_plan_insert(const struct share_plan_in *in, struct share_plan_out *out);

/* Walks a list of nodes (indices as in tt, 0 the car first) and checks it:
 * the times of each rider's pickup and dropoff (-1 when not in the list)
 * into pick_s / drop_s (nriders + 1 entries), the total into *total_s;
 * false when a leg is unreachable or the load exceeds capacity. */
bool share_plan_walk(const struct share_plan_in *in, const size_t *nodes, size_t n, double *pick_s, double *drop_s,
		     double *total_s);

#endif
