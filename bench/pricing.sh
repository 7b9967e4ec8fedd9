#!/usr/bin/env bash
# make bench-pricing: surge and the pricing book, in one run.
#
#   recompute  one surge recompute (bench/surge_micro.c, pinned to CPU 0):
#              10,000 active cells and 50,000 available drivers in steady
#              state (demand in every cell, 20 hot spots, the drivers
#              moving), the daemon's own code; surge_recompute_ms is the
#              median CPU time of ROUNDS recomputes (the thread's: the work on
#              one core, not the time other processes of this shared machine
#              hold it), per run, then the median of RUNS runs (goal <= 5 ms:
#              the event loop never stalls); surge_recompute_wall_ms the same
#              in wall time.
#   estimates  GET /v1/estimate under wrk (daemon on CPU 0, wrk on CPU 1,
#              50 connections) with surge and zones on: a service area, an
#              airport and a midtown zone, a tariff with a night band and
#              zone rules, and ride requests of 60 riders at random points
#              (surge above 1 where they fell); estimates_surge_rps, and
#              estimates_surge_vs_nginx against nginx measured in the same
#              run (../shared/anchors/nginx_http.sh).
#   simulator  bin/ridehail-sim on the Midtown Manhattan replay (the busiest
#              hour of the Uber April 2014 pickups, 2014-04-30 18:00, at
#              --demand-mult 100) twice with the same seed: surge on, then
#              off (surge.enabled = false), each against a fresh database;
#              riders price-sensitive (SIM_SENSITIVE of them walk away from
#              a multiplier above what they pay, uniform in 1.3..2.5), idle
#              drivers drifting to higher surge. completed_pct_{surge,flat}
#              (completed trips / requests) and pickup_wait_p50_s_{surge,flat}
#              (created -> driver arrived, over trips that got one). The
#              daemon's surge clock is scaled to the simulated one (interval,
#              window, dwell and quote lifetime divided by SIM_SPEED). Needs
#              ../shared/data (skipped with a note without it).
#
# Knobs: RUNS (3), ROUNDS (40), WINDOW (wrk, 5 s), NGINX_SECONDS (10),
# SIM_DURATION (3600 simulated s), SIM_SPEED (6), SIM_DRIVERS (200),
# SIM_RIDERS (1500), SIM_SEED (22), SIM_SENSITIVE (0.6), SIM=0 (skip the
# simulator). QUICK=1 (make bench QUICK=1): one run of 20 rounds, 2 s
# windows, and a 600 s simulation at 10x.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
. bench/lib/anchor.sh
if [ "${QUICK:-0}" = 1 ]; then
	: "${RUNS:=1}" "${ROUNDS:=20}" "${WINDOW:=2}" "${NGINX_SECONDS:=2}" "${SIM_DURATION:=600}" "${SIM_SPEED:=10}"
fi
RUNS=${RUNS:-3}
ROUNDS=${ROUNDS:-40}
WINDOW=${WINDOW:-5}
NGINX_SECONDS=${NGINX_SECONDS:-10}
SIM_DURATION=${SIM_DURATION:-3600}
SIM_SPEED=${SIM_SPEED:-6}
SIM_DRIVERS=${SIM_DRIVERS:-200}
SIM_RIDERS=${SIM_RIDERS:-1500}
SIM_SEED=${SIM_SEED:-22}
SIM_SENSITIVE=${SIM_SENSITIVE:-0.6}
SIM=${SIM:-1}
DATA=${DATA:-$repo/../shared/data}

command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
make -s all build/release/bench/surge_micro

tmp=$(mktemp -d /tmp/ridehail-bench-pricing.XXXXXX)
chmod 755 "$tmp"
daemon_pid=""
dbport=""
cleanup() {
	[ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
	[ -n "$dbport" ] && LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$dbport scripts/localdb.sh destroy >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
med() { echo "$1" | tr ' ' '\n' | grep . | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f\n", a / b; else print "n/a" }'; }
ms() { awk -v p="$1" '$1==p {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}'; }

# ---- recompute
rec_runs=""
p99_runs=""
wall_runs=""
for r in $(seq "$RUNS"); do
	out=$(taskset -c 0 build/release/bench/surge_micro --cells 10000 --drivers 50000 --rounds "$ROUNDS" --seed "$r")
	rec_runs="$rec_runs $(echo "$out" | awk -F= '$1 == "surge_recompute_ms" {print $2}')"
	p99_runs="$p99_runs $(echo "$out" | awk -F= '$1 == "surge_recompute_p99_ms" {print $2}')"
	wall_runs="$wall_runs $(echo "$out" | awk -F= '$1 == "surge_recompute_wall_ms" {print $2}')"
	cells=$(echo "$out" | awk -F= '$1 == "surge_recompute_cells" {print $2}')
done
echo "surge_recompute_ms=$(med "$rec_runs")"
echo "surge_recompute_p99_ms=$(med "$p99_runs")"
echo "surge_recompute_wall_ms=$(med "$wall_runs")"
echo "surge_recompute_runs=$(echo $rec_runs | tr ' ' ',')"
echo "surge_recompute_cells=$cells"
echo "surge_recompute_drivers=50000"

# ---- the database, the peer
dbport=$(free_port)
LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$dbport scripts/localdb.sh start >/dev/null
dburl=$(LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$dbport scripts/localdb.sh url)
secret=$(head -c 32 /dev/urandom | base64 | tr -d '/+=' | head -c 40)
admin=$(head -c 32 /dev/urandom | base64 | tr -d '/+=' | head -c 32)
port=$(free_port)
nginx=""
if [ -x "${ANCHORS:-$repo/../shared/anchors}/nginx_http.sh" ]; then
	nginx=$(NGINX_ANCHOR_PORT=$(free_port) anchor nginx_http.sh "$NGINX_SECONDS" 50 | awk -F= '$1 == "nginx_rps" {print $2}') || true
fi
[ -n "$nginx" ] || echo "# note: nginx anchor absent or failed; estimates_surge_vs_nginx is skipped"

start_daemon() { # database url, then extra env
	local url=$1
	shift
	env RIDEHAIL_DATABASE_URL="$url" RIDEHAIL_HTTP_LISTEN="127.0.0.1:$port" RIDEHAIL_AUTH_JWT_SECRET="$secret" \
		RIDEHAIL_ADMIN_TOKEN="$admin" RIDEHAIL_LOG_LEVEL=warn RIDEHAIL_EVENTS_SINK=none \
		RIDEHAIL_AUTH_PASSWORD_OPSLIMIT=1 RIDEHAIL_AUTH_PASSWORD_MEMLIMIT=8KiB RIDEHAIL_AUTH_LOGIN_PER_ADDRESS=100000 \
		RIDEHAIL_AUTH_SIGNUP_PER_ADDRESS=100000 "$@" \
		taskset -c 0 bin/ridehaild --config conf/ridehaild.conf 2>>"$tmp/daemon.log" &
	daemon_pid=$!
	for _ in $(seq 200); do
		curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && return 0
		sleep 0.1
	done
	echo "bench-pricing: the daemon did not become ready; its log:" >&2
	tail -20 "$tmp/daemon.log" >&2
	exit 1
}
stop_daemon() {
	kill "$daemon_pid"
	wait "$daemon_pid" 2>/dev/null || true
	daemon_pid=""
}
api() { # method path [body]
	curl -sf -X "$1" -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
		${3:+--data "$3"} "http://127.0.0.1:$port$2"
}
newdb() {
	psql -Atq "$dburl" -c "CREATE DATABASE $1" >/dev/null
	echo "${dburl%/*}/$1"
}

# ---- estimates with surge and zones on
start_daemon "$(newdb estimates)" RIDEHAIL_SURGE_INTERVAL=1s RIDEHAIL_SURGE_LATITUDE=41 RIDEHAIL_MATCH_AUTO=false
box() { echo "{\"type\":\"Polygon\",\"coordinates\":[[[$2,$1],[$4,$1],[$4,$3],[$2,$3],[$2,$1]]]}"; }
api PUT /v1/admin/zones/manhattan "{\"kind\":\"service_area\",\"geometry\":$(box 40.70 -74.03 40.88 -73.90)}" >/dev/null
api PUT /v1/admin/zones/airport "{\"kind\":\"zone\",\"priority\":10,\"geometry\":$(box 40.762 -73.990 40.772 -73.960)}" >/dev/null
api PUT /v1/admin/zones/midtown "{\"kind\":\"zone\",\"geometry\":$(box 40.745 -73.995 40.760 -73.970)}" >/dev/null
api POST /v1/admin/tariffs/standard '{"bands":[{"name":"night","start":"22:00","end":"06:00","per_km":210}],
	"zone_rules":[{"kind":"pickup_fee","zone":"airport","amount":450},{"kind":"dropoff_fee","zone":"airport","amount":550},
	{"kind":"fixed","from":"midtown","to":"airport","amount":5200,"both_ways":true}]}' >/dev/null
python3 - "$port" "$admin" <<'PY'
import http.client, json, random, sys
port, admin = int(sys.argv[1]), sys.argv[2]
c = http.client.HTTPConnection("127.0.0.1", port)
def call(method, path, body=None, token=admin):
    c.request(method, path, json.dumps(body) if body is not None else None,
              {"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    r = c.getresponse()
    return r.status, r.read()
random.seed(3)
for i in range(60):
    email = f"bench-{i}@example.com"
    assert call("POST", "/v1/admin/riders", {"email": email, "name": "Bench", "password": "bench-pass-1"})[0] == 201
    st, body = call("POST", "/v1/auth/login", {"role": "rider", "email": email, "password": "bench-pass-1"})
    tok = json.loads(body)["token"]
    lat, lng = random.choice([(40.7549, -73.9840), (40.7128, -74.0060), (40.7831, -73.9712)])
    lat += random.uniform(-0.004, 0.004)
    lng += random.uniform(-0.004, 0.004)
    st, body = call("POST", "/v1/rides", {"pickup": {"lat": lat, "lng": lng},
                                          "dropoff": {"lat": lat + 0.02, "lng": lng + 0.01}}, tok)
    assert st == 201, body
PY
sleep 2.5 # a recompute or two
hot=$(curl -s "http://127.0.0.1:$port/v1/surge?lat=40.7549&lng=-73.9840" | python3 -c 'import json,sys; print(json.load(sys.stdin)["multiplier"])')
awk -v m="$hot" 'BEGIN { exit !(m > 1) }' || { echo "bench-pricing: no surge where the requests were ($hot)" >&2; exit 1; }
echo "estimates_surge_hot_multiplier=$hot"
cat >"$tmp/estimate.lua" <<'LUA'
math.randomseed(11)
request = function()
  local plat = 40.71 + math.random() * 0.16
  local plng = -74.02 + math.random() * 0.11
  return wrk.format("GET", string.format(
    "/v1/estimate?pickup_lat=%.6f&pickup_lng=%.6f&dropoff_lat=%.6f&dropoff_lng=%.6f&vehicle_type=standard",
    plat, plng, plat + 0.005 + math.random() * 0.03, plng + (math.random() - 0.5) * 0.06))
end
LUA
rps_runs=""
p99_runs=""
for _ in $(seq "$RUNS"); do
	out=$(taskset -c 1 wrk -t1 -c50 -d"${WINDOW}s" --latency -s "$tmp/estimate.lua" "http://127.0.0.1:$port/")
	bad=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
	total=$(echo "$out" | awk '/requests in/ {print $1}')
	if [ -n "$bad" ] && [ "$bad" -gt $((total / 10000 + 1)) ]; then
		echo "bench-pricing: estimates answered $bad errors of $total:" >&2
		echo "$out" >&2
		exit 1
	fi
	rps_runs="$rps_runs $(echo "$out" | awk '/Requests\/sec/ {print int($2)}')"
	p99_runs="$p99_runs $(echo "$out" | ms 99%)"
done
stop_daemon
estimates=$(med "$rps_runs")
echo "estimates_surge_rps=$estimates"
echo "estimates_surge_p99_ms=$(med "$p99_runs")"
echo "estimates_surge_runs=$(echo $rps_runs | tr ' ' ',')"
if [ -n "$nginx" ]; then
	echo "nginx_rps=$nginx"
	echo "estimates_surge_vs_nginx=$(ratio "$estimates" "$nginx")"
fi

# ---- the simulator: the Midtown replay at 100x, surge on and off
MAP_SRC=$DATA/osm/nyc-midtown-2025.osm.pbf
UBER=$DATA/trips/uber-nyc-pickups-apr14-first65k.csv
TAXI=$DATA/trips/nyc-taxi-2016-statsmaths-10k.csv
if [ "$SIM" = 0 ]; then
	echo "# note: SIM=0: the simulator's figures are skipped"
	exit 0
fi
if [ ! -f "$MAP_SRC" ] || [ ! -f "$UBER" ] || [ ! -f "$TAXI" ]; then
	echo "# note: $DATA (the Midtown extract and the NYC trip files) is absent: the simulator's figures are skipped"
	exit 0
fi
bin/ridehaild -c conf/ridehaild.conf map import "$MAP_SRC" -o "$tmp/midtown.map" >/dev/null 2>&1
scale() { awk -v s="$1" -v k="$SIM_SPEED" 'BEGIN { v = s / k; if (v < 1) printf "%dms\n", v * 1000; else printf "%.1fs\n", v }'; }
run_sim() { # name, then extra daemon env
	local name=$1
	shift
	start_daemon "$(newdb "sim_$name")" RIDEHAIL_ROUTING_MAP="$tmp/midtown.map" RIDEHAIL_MATCH_METER_MAX_SPEED=1000 \
		RIDEHAIL_SURGE_INTERVAL="$(scale 30)" RIDEHAIL_SURGE_WINDOW="$(scale 300)" RIDEHAIL_SURGE_MIN_DWELL="$(scale 90)" \
		RIDEHAIL_SURGE_QUOTE_TTL="$(scale 60)" RIDEHAIL_SURGE_LATITUDE=41 RIDEHAIL_TRIP_RIDES_PER_MINUTE=100000 "$@"
	taskset -c 1 bin/ridehail-sim --addr "127.0.0.1:$port" --admin-token "$admin" --quiet --out "$tmp/sim_$name" \
		--map "$tmp/midtown.map" --bbox -74.0140,40.7360,-73.9630,40.7590 --margin 250 \
		--demand replay --csv "$UBER" --start '2014-04-30 18:00:00' --window "$SIM_DURATION" --compress 1 \
		--duration "$SIM_DURATION" --drain 600 --speed "$SIM_SPEED" --demand-mult 100 --od "$TAXI" \
		--drivers "$SIM_DRIVERS" --riders "$SIM_RIDERS" --seed "$SIM_SEED" --cruise \
		--price-sensitive "$SIM_SENSITIVE" --max-surge 1.3,2.5 --surge-drift 1 --drift-radius 3000 \
		>"$tmp/sim_$name.json" 2>"$tmp/sim_$name.err" || {
		echo "bench-pricing: the $name simulation failed:" >&2
		tail -20 "$tmp/sim_$name.err" >&2
		exit 1
	}
	stop_daemon
	python3 - "$tmp/sim_$name/summary.json" >"$tmp/sim_$name.fig" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"completed_pct={100.0 * s['completed'] / max(s['requests'], 1):.2f}")
print(f"pickup_wait_p50_s={s['pickup_wait_s']['p50']:.1f}")
for k in ("requests", "created", "completed", "declined", "cancelled", "no_rider", "refused"):
    print(f"sim_{k}={s[k]}")
print(f"sim_utilisation={s['driver_utilisation']:.3f}")
print(f"sim_quotes_surged_pct={s['surge']['quotes_surged_pct']:.1f}")
print(f"sim_mean_quoted_multiplier={s['surge']['mean_quoted_multiplier']:.2f}")
print(f"sim_drifts={s['surge']['drifts']}")
PY
	if [ -n "${SIM_KEEP:-}" ]; then
		mkdir -p "$SIM_KEEP"
		cp -r "$tmp/sim_$name" "$SIM_KEEP/"
	fi
}
echo "sim_replay=uber-2014-04-30T18:00 x100 ${SIM_DURATION}s drivers=$SIM_DRIVERS riders=$SIM_RIDERS seed=$SIM_SEED speed=$SIM_SPEED"
run_sim surge
run_sim flat RIDEHAIL_SURGE_ENABLED=false
fig() { awk -F= -v k="$2" '$1 == k {print $2}' "$tmp/sim_$1.fig"; }
echo "completed_pct_surge=$(fig surge completed_pct)"
echo "completed_pct_flat=$(fig flat completed_pct)"
echo "pickup_wait_p50_s_surge=$(fig surge pickup_wait_p50_s)"
echo "pickup_wait_p50_s_flat=$(fig flat pickup_wait_p50_s)"
for name in surge flat; do # the rest, for the reading
	grep '^sim_' "$tmp/sim_$name.fig" | sed "s/=/_$name=/"
done
