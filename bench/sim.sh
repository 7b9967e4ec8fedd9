#!/usr/bin/env bash
# make bench-sim: the simulator (bin/ridehail-sim, docs/simulator.md) on the
# Midtown Manhattan replay against the real daemon, the same replay run
# several ways side by side: the same seed (so the same demand, the same
# fleet starting at the same points, the same drivers' and riders' draws),
# the daemon restarted between runs on a fresh database with only the
# setting compared changed.
#
#   bench/sim.sh [matching|share|all]     (default matching)
#
#   matching  greedy, batch (match.mode), then both with repositioning on
#             (match.reposition; drivers follow a suggestion with probability
#             FOLLOW, 0.7): pickup_wait_mean_s_{greedy,batch,greedy_reposition,
#             batch_reposition} (the ride request to the car at the pickup,
#             mean over completed trips), match_time_p95_s_*, completed_pct_*
#             (completed / requests), deadhead_km_per_trip_* (to pickups and
#             to suggested cells, per completed trip), batch_wait_gain_pct
#             (how much lower batch's mean pickup wait is than greedy's, %),
#             reposition_wait_gain_pct (greedy with repositioning against
#             without), reposition_batch_wait_gain_pct, and
#             suggestions_followed_pct_* (followed / received while idle).
#   share     all solo, then SHARE_FRACTION (0.5) of the requests booked as
#             shared rides (docs/sharing.md): share_vkm_saved_pct (how much
#             less the fleet drove per passenger-km than all solo, %; goal
#             >= 20), share_detour_p95_pct (a shared rider's ride against
#             the direct route, %; goal <= share.max_detour) and
#             share_wait_p95_s (booking to the car at the pickup; goal <=
#             share.max_wait), beside the configured bounds. The simulated
#             cars drive the roads' own speeds here (--traffic 1), the
#             travel times the daemon plans with.
#
# Each run is the first SIM_DURATION simulated seconds (900) of the busiest
# hour of the Uber April 2014 pickups in the Midtown box (2014-04-30 18:00)
# at MULT (10) times the recorded demand, then SIM_DRAIN (600) for trips
# to end; DRIVERS_PER_MULT (15) x MULT drivers, SIM_SPEED (10) simulated
# seconds a wall second, SIM_SEED (23). The daemon's own timers are on the
# wall clock: its repositioning interval and half-life are divided by
# SIM_SPEED (the simulated 60 s and 10 min), its batch window (500 ms) and
# offer timeout are not (5 s and 150 simulated s at 10x). The side-by-side
# table goes to stderr (and SIM_KEEP, if set, keeps every run's report).
# Needs ../shared/data (skipped with a note without it). QUICK=1: 600
# simulated seconds.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
phase=${1:-matching}
if [ "${QUICK:-0}" = 1 ]; then
	: "${SIM_DURATION:=600}"
fi
DATA=${DATA:-$repo/../shared/data}
SIM_DURATION=${SIM_DURATION:-900}
SIM_SPEED=${SIM_SPEED:-10}
SIM_DRAIN=${SIM_DRAIN:-600}
SIM_SEED=${SIM_SEED:-23}
MULT=${MULT:-10}
DRIVERS_PER_MULT=${DRIVERS_PER_MULT:-15}
DRIVERS=${DRIVERS:-$((DRIVERS_PER_MULT * MULT))}
RIDERS=${RIDERS:-$((DRIVERS * 2))}
FOLLOW=${FOLLOW:-0.7}
SHARE_FRACTION=${SHARE_FRACTION:-0.5}
MAP_SRC=$DATA/osm/nyc-midtown-2025.osm.pbf
UBER=$DATA/trips/uber-nyc-pickups-apr14-first65k.csv
TAXI=$DATA/trips/nyc-taxi-2016-statsmaths-10k.csv
if [ ! -f "$MAP_SRC" ] || [ ! -f "$UBER" ] || [ ! -f "$TAXI" ]; then
	echo "# note: $DATA (the Midtown extract and the NYC trip files) is absent: the simulator's figures are skipped"
	exit 0
fi
make -s all

tmp=$(mktemp -d /tmp/ridehail-bench-sim.XXXXXX)
chmod 755 "$tmp"
daemon_pid=""
dbport=""
cleanup() {
	[ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
	[ -n "$dbport" ] && LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$dbport scripts/localdb.sh destroy >/dev/null 2>&1
	rm -rf "$tmp"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
dbport=$(free_port)
LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$dbport scripts/localdb.sh start >/dev/null
secret=$(head -c 32 /dev/urandom | base64 | tr -d '/+=' | head -c 40)
admin=$(head -c 32 /dev/urandom | base64 | tr -d '/+=' | head -c 32)
port=$(free_port)
bin/ridehaild -c conf/ridehaild.conf map import "$MAP_SRC" -o "$tmp/midtown.map" >/dev/null 2>&1
scale() { awk -v s="$1" -v k="$SIM_SPEED" 'BEGIN { v = s / k; if (v < 1) printf "%dms\n", v * 1000; else printf "%.1fs\n", v }'; }

start_daemon() { # a database of its own (made anew), then extra env
	LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$dbport LOCALDB_NAME=$1 scripts/localdb.sh fresh >/dev/null
	local url
	url=$(LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$dbport LOCALDB_NAME=$1 scripts/localdb.sh url)
	shift
	env RIDEHAIL_DATABASE_URL="$url" RIDEHAIL_HTTP_LISTEN="127.0.0.1:$port" RIDEHAIL_AUTH_JWT_SECRET="$secret" \
		RIDEHAIL_ADMIN_TOKEN="$admin" RIDEHAIL_LOG_LEVEL=warn RIDEHAIL_EVENTS_SINK=none \
		RIDEHAIL_AUTH_PASSWORD_OPSLIMIT=1 RIDEHAIL_AUTH_PASSWORD_MEMLIMIT=8KiB RIDEHAIL_AUTH_LOGIN_PER_ADDRESS=100000 \
		RIDEHAIL_AUTH_SIGNUP_PER_ADDRESS=100000 RIDEHAIL_TRIP_RIDES_PER_MINUTE=100000 \
		RIDEHAIL_HTTP_MAX_CONNECTIONS_PER_ADDRESS=0 \
		RIDEHAIL_ROUTING_MAP="$tmp/midtown.map" RIDEHAIL_MATCH_METER_MAX_SPEED=1000 \
		RIDEHAIL_PRESENCE_GPS_MAX_SPEED="$(awk -v s="$SIM_SPEED" 'BEGIN { print 250 * s }')" \
		RIDEHAIL_MATCH_REPOSITION_INTERVAL="$(scale 60)" RIDEHAIL_MATCH_REPOSITION_HALF_LIFE="$(scale 600)" "$@" \
		bin/ridehaild --config conf/ridehaild.conf 2>>"$tmp/daemon.log" &
	daemon_pid=$!
	for _ in $(seq 300); do
		curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && return 0
		sleep 0.1
	done
	echo "bench-sim: the daemon did not become ready; its log:" >&2
	tail -20 "$tmp/daemon.log" >&2
	exit 1
}
stop_daemon() {
	kill "$daemon_pid"
	wait "$daemon_pid" 2>/dev/null || true
	daemon_pid=""
}

run_sim() { # name, simulator flags..., --, daemon env...
	local name=$1
	shift
	local flags=()
	while [ $# -gt 0 ] && [ "$1" != -- ]; do flags+=("$1"); shift; done
	[ $# -gt 0 ] && shift
	start_daemon "sim_$name" "$@"
	bin/ridehail-sim --addr "127.0.0.1:$port" --admin-token "$admin" --quiet --out "$tmp/sim_$name" \
		--map "$tmp/midtown.map" --bbox -74.0140,40.7360,-73.9630,40.7590 --margin 250 \
		--demand replay --csv "$UBER" --start '2014-04-30 18:00:00' --window "$SIM_DURATION" --compress 1 \
		--duration "$SIM_DURATION" --drain "$SIM_DRAIN" --speed "$SIM_SPEED" --demand-mult "$MULT" --od "$TAXI" \
		--drivers "$DRIVERS" --riders "$RIDERS" --seed "$SIM_SEED" "${flags[@]}" \
		>"$tmp/sim_$name.json" 2>"$tmp/sim_$name.err" || {
		echo "bench-sim: the $name simulation failed:" >&2
		tail -20 "$tmp/sim_$name.err" >&2
		exit 1
	}
	stop_daemon
	if [ -n "${SIM_KEEP:-}" ]; then
		mkdir -p "$SIM_KEEP"
		cp -r "$tmp/sim_$name" "$SIM_KEEP/"
	fi
}

echo "sim_replay=uber-2014-04-30T18:00 x$MULT ${SIM_DURATION}s drivers=$DRIVERS riders=$RIDERS seed=$SIM_SEED speed=$SIM_SPEED"
if [ "$phase" = matching ] || [ "$phase" = all ]; then
	run_sim greedy -- RIDEHAIL_MATCH_MODE=greedy
	run_sim batch -- RIDEHAIL_MATCH_MODE=batch
	run_sim greedy_reposition --follow-suggestions "$FOLLOW" -- RIDEHAIL_MATCH_MODE=greedy RIDEHAIL_MATCH_REPOSITION=true
	run_sim batch_reposition --follow-suggestions "$FOLLOW" -- RIDEHAIL_MATCH_MODE=batch RIDEHAIL_MATCH_REPOSITION=true
	python3 bench/sim_compare.py --table "$tmp/matching.txt" \
		--gain batch_wait_gain_pct=pickup_wait_mean_s:greedy,batch \
		--gain reposition_wait_gain_pct=pickup_wait_mean_s:greedy,greedy_reposition \
		--gain reposition_batch_wait_gain_pct=pickup_wait_mean_s:batch,batch_reposition \
		greedy="$tmp/sim_greedy/summary.json" batch="$tmp/sim_batch/summary.json" \
		greedy_reposition="$tmp/sim_greedy_reposition/summary.json" \
		batch_reposition="$tmp/sim_batch_reposition/summary.json"
	cat "$tmp/matching.txt" >&2
fi
if [ "$phase" = share ] || [ "$phase" = all ]; then
	run_sim solo --traffic 1
	run_sim shared --traffic 1 --share-fraction "$SHARE_FRACTION"
	python3 bench/sim_compare.py --table "$tmp/share.txt" --gain share_vkm_saved_pct=vkm_per_pkm:solo,shared \
		solo="$tmp/sim_solo/summary.json" shared="$tmp/sim_shared/summary.json" | grep -Ev '^share_.*_(solo|shared)='
	python3 - "$tmp/sim_shared/summary.json" "$(bin/ridehaild -c conf/ridehaild.conf --get share.max_detour)" \
		"$(bin/ridehaild -c conf/ridehaild.conf --get share.max_wait)" <<'PY'
import json, re, sys
s = json.load(open(sys.argv[1]))["share"]
m = re.fullmatch(r"([0-9.]+)(ms|s|m|h)?", sys.argv[3])
wait = float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]
print(f"share_detour_p95_pct={s['detour_pct']['p95']:.1f}")
print(f"share_wait_p95_s={s['wait_s']['p95']:.1f}")
print(f"share_max_detour_pct={100 * float(sys.argv[2]):.0f}")
print(f"share_max_wait_s={wait:.0f}")
print(f"share_riders_per_trip={s['riders_per_trip']:.2f}")
PY
	cat "$tmp/share.txt" >&2
fi
