#!/usr/bin/env bash
# make bench-matching: batched assignment (docs/dispatch.md), in one run.
#
#   solver    bench/matching_micro: the assignment solver on windows of 200
#             requests x 1,000 drivers and 1,000 x 5,000 (2 km pairs), CPU
#             time per solve: assign_solve_ms_p99 (goal <= 20 ms for the
#             first) and assign_solve_ms_p99_1000x5000.
#   m2m       the same binary with the Midtown map: one many-to-many search
#             for 200 pickups x 1,000 drivers, many_to_many_ms (p99, CPU).
#   sim       bench/matching_sim: the daemon's dispatch on a simulated clock
#             over the Midtown replay (the busiest hour of the Uber April 2014
#             pickups in the box of docs/simulator.md) at 10x and 100x the
#             recorded demand, greedy then batch with the same seed, demand
#             and fleet (DRIVERS_PER_MULT x the multiple: 15), window
#             SIM_WINDOW_MS (500, match.batch_window's default):
#             pickup_wait_mean_s_{greedy,batch}_{10x,100x},
#             batch_wait_gain_pct_*, match_time_p95_s_*, completed_pct_*,
#             deadhead_km_per_trip_* (to pickups, and repositioning), the
#             rider's estimate error (estimate_pickup_mae_s_*); then both
#             modes again with repositioning on (match.reposition, every 60
#             s, each suggestion followed with probability 0.7):
#             *_greedy_reposition, *_batch_reposition,
#             reposition_wait_gain_pct_* (greedy with against without).
#             DRIVERS_PER_MULT leaves about 60% of the fleet free at any
#             request (free_drivers_at_request_*): each rider's nearest car
#             is nobody else's, and batching has little to decide. The same
#             runs with TIGHT_DRIVERS_PER_MULT (8: riders queue for cars)
#             print their figures with _tight: where batching does help.
#   bookings  bench/dispatch.sh's bookings phase with the daemon in greedy
#             mode, then in batch mode (RIDEHAIL_MATCH_MODE=batch, window
#             BOOK_WINDOW, 250ms), at BOOK_INFLIGHT (1024) in flight:
#             bookings_per_s_greedy, bookings_per_s_batch and each against
#             pgbench's TPC-B measured in the same run of dispatch.sh
#             (bookings_{greedy,batch}_vs_tpcb). A closed loop of N bookings in flight with a window W
#             cannot pass N / W a second: the figure is the daemon's
#             throughput with batching on, not a latency. The other phases
#             of dispatch.sh run at a token size (16 tracking pairs, a 1 s
#             offer window); BOOK_RUNS runs (1).
#
# Without ../shared/data the map parts are skipped (said so); the solver
# runs anyway. QUICK=1: fewer solver rounds, the bookings phase at its
# QUICK size.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
DATA=${DATA:-$repo/../shared/data}
ROUNDS=${ROUNDS:-200}
DRIVERS_PER_MULT=${DRIVERS_PER_MULT:-15}
TIGHT_DRIVERS_PER_MULT=${TIGHT_DRIVERS_PER_MULT:-8}
SIM_WINDOW_MS=${SIM_WINDOW_MS:-500}
BOOK_WINDOW=${BOOK_WINDOW:-250ms}
BOOK_INFLIGHT=${BOOK_INFLIGHT:-1024}
SEED=${SEED:-23}
if [ "${QUICK:-0}" = 1 ]; then
	ROUNDS=${ROUNDS_QUICK:-40}
fi
BBOX=-74.0140,40.7360,-73.9630,40.7590
make -s all build/release/bench/matching_micro build/release/bench/matching_sim
tmp=$(mktemp -d /tmp/ridehail-bench-matching.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

pbf=$DATA/osm/nyc-midtown-2025.osm.pbf
csv=$DATA/trips/uber-nyc-pickups-apr14-first65k.csv
od=$DATA/trips/nyc-taxi-2016-statsmaths-10k.csv
map=""
if [ -r "$pbf" ] && [ -r "$csv" ]; then
	map=$tmp/midtown.map
	bin/ridehaild map import "$pbf" -o "$map" >/dev/null
else
	echo "# note: $DATA (the Midtown map and the Uber pickups) absent: many_to_many_ms and the simulator are skipped"
fi

fig() { awk -F= -v k="$1" '$1 == k {print $2}' "$2"; }

# ---- the solver and the router's many-to-many (one core)
echo "# matching_micro: $ROUNDS solver rounds a size; CPU time of the solving thread"
taskset -c 1 build/release/bench/matching_micro --rounds "$ROUNDS" ${map:+--map "$map" --bbox "$BBOX"} >"$tmp/micro"
grep -v '^assign_solve_ms_p99=' "$tmp/micro"
echo "assign_solve_ms_p99=$(fig assign_solve_ms_p99 "$tmp/micro")" # 200 x 1,000

# ---- the simulator, greedy vs batch; its names get the demand's multiple
# (and _tight with the smaller fleet)
sim() { # mult drivers suffix
	taskset -c 1 build/release/bench/matching_sim --map "$map" --bbox "$BBOX" --csv "$csv" \
		${od:+--od "$od"} --mult "$1" --drivers "$2" --seed "$SEED" \
		--batch-window "$SIM_WINDOW_MS" >"$tmp/sim.$1$3"
	grep -Ev '^(batch|reposition|reposition_batch)_wait_gain_pct=' "$tmp/sim.$1$3" | sed -E "s/^([a-z0-9_]+)=/\1_${1}x$3=/"
}
if [ -n "$map" ]; then
	for mult in 10 100; do
		sim "$mult" $((DRIVERS_PER_MULT * mult)) ""
		sim "$mult" $((TIGHT_DRIVERS_PER_MULT * mult)) _tight
	done
	echo "batch_wait_gain_pct_10x=$(fig batch_wait_gain_pct "$tmp/sim.10")"
	echo "batch_wait_gain_pct_100x=$(fig batch_wait_gain_pct "$tmp/sim.100")"
	echo "reposition_wait_gain_pct_10x=$(fig reposition_wait_gain_pct "$tmp/sim.10")"
	echo "reposition_wait_gain_pct_100x=$(fig reposition_wait_gain_pct "$tmp/sim.100")"
	echo "batch_wait_gain_pct_10x_tight=$(fig batch_wait_gain_pct "$tmp/sim.10_tight")"
	echo "batch_wait_gain_pct_100x_tight=$(fig batch_wait_gain_pct "$tmp/sim.100_tight")"
	echo "reposition_wait_gain_pct_10x_tight=$(fig reposition_wait_gain_pct "$tmp/sim.10_tight")"
	echo "reposition_wait_gain_pct_100x_tight=$(fig reposition_wait_gain_pct "$tmp/sim.100_tight")"
fi

# ---- bookings, greedy then batch, each vs TPC-B of its own run
book() { # mode
	echo "# bookings: bench/dispatch.sh with RIDEHAIL_MATCH_MODE=$1 (a batch window is $BOOK_WINDOW), $BOOK_INFLIGHT in flight"
	if ! RIDEHAIL_MATCH_MODE=$1 RIDEHAIL_MATCH_BATCH_WINDOW=$BOOK_WINDOW BOOK_INFLIGHT=$BOOK_INFLIGHT \
		RUNS=${BOOK_RUNS:-1} TRACK_PAIRS=16 WINDOW=1 OFFER_RATE=50 bench/dispatch.sh >"$tmp/dispatch.$1" 2>"$tmp/dispatch.err"; then
		echo "# note: bench/dispatch.sh in $1 mode failed:"
		sed 's/^/#   /' "$tmp/dispatch.err" | tail -20
		exit 1
	fi
	[ -n "$(fig pg_tpcb_tps "$tmp/dispatch.$1")" ] ||
		echo "# note: no TPC-B figure in $1 mode (the PostgreSQL anchor is absent): its ratio is skipped"
}
book greedy
echo "bookings_per_s_greedy=$(fig bookings_per_s "$tmp/dispatch.greedy")"
if [ -n "$(fig pg_tpcb_tps "$tmp/dispatch.greedy")" ]; then
	echo "pg_tpcb_tps_greedy=$(fig pg_tpcb_tps "$tmp/dispatch.greedy")"
	echo "bookings_greedy_vs_tpcb=$(fig bookings_vs_tpcb "$tmp/dispatch.greedy")"
fi
book batch
echo "bookings_per_s_batch=$(fig bookings_per_s "$tmp/dispatch.batch")"
if [ -n "$(fig pg_tpcb_tps "$tmp/dispatch.batch")" ]; then
	echo "pg_tpcb_tps=$(fig pg_tpcb_tps "$tmp/dispatch.batch")"
	echo "bookings_batch_vs_tpcb=$(fig bookings_vs_tpcb "$tmp/dispatch.batch")"
fi
