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
#             and fleet (DRIVERS_PER_MULT x the multiple: 15, about half the
#             fleet the 1x hour needs at 30 per multiple, a market where
#             riders compete for cars), window SIM_WINDOW_MS (500, match.batch_window's default):
#             pickup_wait_mean_s_{greedy,batch}_{10x,100x},
#             batch_wait_gain_pct_*, match_time_p95_s_*, completed_pct_*,
#             deadhead_km_per_trip_* (to pickups, and repositioning), the
#             rider's estimate error (estimate_pickup_mae_s_*); then both
#             modes again with repositioning on (match.reposition, every 60
#             s, each suggestion followed with probability 0.7):
#             *_greedy_reposition, *_batch_reposition,
#             reposition_wait_gain_pct_* (greedy with against without).
#   bookings  bench/dispatch.sh's bookings phase with the daemon in batch mode
#             (RIDEHAIL_MATCH_MODE=batch, window BOOK_WINDOW, 250ms), at
#             BOOK_INFLIGHT (1024) in flight: bookings_per_s_batch and
#             bookings_batch_vs_tpcb against pgbench's TPC-B in the same
#             run. A closed loop of N bookings in flight with a window W
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
if [ -n "$map" ]; then
	for mult in 10 100; do
		taskset -c 1 build/release/bench/matching_sim --map "$map" --bbox "$BBOX" --csv "$csv" \
			${od:+--od "$od"} --mult "$mult" --drivers $((DRIVERS_PER_MULT * mult)) --seed "$SEED" \
			--batch-window "$SIM_WINDOW_MS" >"$tmp/sim.$mult"
		grep -Ev '^(batch|reposition)_wait_gain_pct=' "$tmp/sim.$mult" | sed -E "s/^([a-z0-9_]+)=/\1_${mult}x=/"
	done
	echo "batch_wait_gain_pct_10x=$(fig batch_wait_gain_pct "$tmp/sim.10")"
	echo "batch_wait_gain_pct_100x=$(fig batch_wait_gain_pct "$tmp/sim.100")"
	echo "reposition_wait_gain_pct_10x=$(fig reposition_wait_gain_pct "$tmp/sim.10")"
	echo "reposition_wait_gain_pct_100x=$(fig reposition_wait_gain_pct "$tmp/sim.100")"
fi

# ---- bookings in batch mode vs TPC-B
echo "# bookings: bench/dispatch.sh with RIDEHAIL_MATCH_MODE=batch, window $BOOK_WINDOW, $BOOK_INFLIGHT in flight"
if RIDEHAIL_MATCH_MODE=batch RIDEHAIL_MATCH_BATCH_WINDOW=$BOOK_WINDOW BOOK_INFLIGHT=$BOOK_INFLIGHT \
	RUNS=${BOOK_RUNS:-1} TRACK_PAIRS=16 WINDOW=1 OFFER_RATE=50 bench/dispatch.sh >"$tmp/dispatch.out" 2>"$tmp/dispatch.err"; then
	echo "bookings_per_s_batch=$(fig bookings_per_s "$tmp/dispatch.out")"
	tpcb=$(fig pg_tpcb_tps "$tmp/dispatch.out")
	if [ -n "$tpcb" ]; then
		echo "pg_tpcb_tps=$tpcb"
		echo "bookings_batch_vs_tpcb=$(fig bookings_vs_tpcb "$tmp/dispatch.out")"
	else
		echo "# note: no TPC-B figure (the PostgreSQL anchor is absent): bookings_batch_vs_tpcb is skipped"
	fi
else
	echo "# note: bench/dispatch.sh in batch mode failed:"
	sed 's/^/#   /' "$tmp/dispatch.err" | tail -20
	exit 1
fi
