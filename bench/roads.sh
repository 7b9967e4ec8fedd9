#!/usr/bin/env bash
# make bench-roads: routing on a real city, in one run.
#
#   import    `map import` of the extract; map_load_ms to load the prepared
#             map (validation, reverse graph and snapping grid included);
#             bytes_per_node of the loaded graph.
#   route     single queries between random points that snap onto the map
#             (route_p50_us, route_p99_us: snapping, search and geometry, as
#             GET /v1/route does it) and the plain Dijkstra reference;
#             eta16_*: 16 drivers to one pickup in one many-to-one query.
#   http      GET /v1/route under wrk (daemon on CPU 0, load on CPU 1) through
#             the same pairs: route_http_rps, and route_http_vs_nginx against
#             the nginx ceiling (../shared/anchors/nginx_http.sh).
#   pgrouting pgr_dijkstra on the same extract imported with osm2pgrouting
#             into a throwaway PostgreSQL, PGR_PAIRS (default 200) random
#             vertex pairs: pgrouting_p50_us per query (as a client sees it),
#             route_vs_pgrouting = that / route_p50_us; and
#             pgrouting_max_diff_pct, the largest gap between its shortest
#             distances and ours (GET /v1/route, metric distance). pgRouting
#             is given no turn restrictions (osm2pgrouting imports none), so
#             on an extract that has them the gap includes routes it takes
#             through a forbidden turn (Midtown: 6th Avenue left onto West
#             33rd Street, 1,261 m for our 2,052 m); on Monaco 2012, which
#             has none, it is the e2e test's within 0.1%.
#
#   turns     turn_restrictions_honoured_pct: of what the extract's turn
#             restrictions forbid (each no_* turn, each way on an only_* does
#             not name), the share no route drives (goal 100).
#   times     with TRIPS (default the NYC taxi files in ../shared/data/trips)
#             the map is calibrated first (`map calibrate`) and the route
#             timings run with the profile on: eta_mape_pct (median absolute
#             error of the duration on held-out trips; free flow:
#             eta_mape_freeflow_pct) and eta_range_cover_pct (held-out trips
#             inside the p10-p90 range).
# CITY (default ../shared/data/osm/nyc-midtown-2025.osm.pbf), PAIRS, SEED,
# RUNS (default 3: each in-process figure is the median of RUNS runs), WINDOW
# (wrk, 5 s), NGINX_SECONDS (the nginx peer's window, WINDOW). QUICK=1 (make
# bench QUICK=1): 1,000 pairs, 20 pgRouting pairs, one run, 2 s windows.
#   estimates GET /v1/estimate with the same pairs as pickup and drop-off,
#             when the daemon has it (another module): estimates_routed_rps
#             and estimates_routed_vs_nginx; left out (with a note) before.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
. bench/lib/anchor.sh
if [ "${QUICK:-0}" = 1 ]; then
	: "${PAIRS:=1000}" "${PGR_PAIRS:=20}" "${RUNS:=1}" "${WINDOW:=2}" "${NGINX_SECONDS:=2}"
fi
CITY=${CITY:-$repo/../shared/data/osm/nyc-midtown-2025.osm.pbf}
PAIRS=${PAIRS:-10000}
SEED=${SEED:-$(date +%s)}
PGR_PAIRS=${PGR_PAIRS:-200}
RUNS=${RUNS:-3}
if [ -z "${TRIPS+x}" ]; then
	TRIPS=""
	for t in "$repo"/../shared/data/trips/nyc-taxi-2016-statsmaths-10k.csv "$repo"/../shared/data/trips/nyc-yellow-2015-01-head.csv; do
		[ -f "$t" ] && TRIPS="$TRIPS $t"
	done
fi
if [ ! -f "$CITY" ]; then
	echo "bench-roads: $CITY is absent: skipped (set CITY= to an .osm.pbf)"
	exit 0
fi
make -s all build/release/bench/roads_micro
tmp=$(mktemp -d /tmp/ridehail-bench-roads.XXXXXX)
chmod 755 "$tmp"
dbport=""
daemon_pid=""
cleanup() {
	[ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null || true
	[ -n "$dbport" ] && LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$dbport scripts/localdb.sh destroy >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT
echo "city=$(basename "$CITY")"
# RUNS runs (seeds SEED, SEED+1...); each figure is the median of its runs.
for i in $(seq "$RUNS"); do
	# shellcheck disable=SC2086 # TRIPS is a list of paths
	build/release/bench/roads_micro "$CITY" "$PAIRS" $((SEED + i - 1)) "$tmp/pairs.csv" $TRIPS > "$tmp/micro.$i.txt"
done
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
for k in $(awk -F= '$1 != "seed" {print $1}' "$tmp/micro.1.txt"); do
	echo "$k=$(cat "$tmp"/micro.*.txt | awk -F= -v k="$k" '$1 == k {print $2}' | median)"
done | tee "$tmp/micro.txt"
echo "seed=$SEED runs=$RUNS"
mem_kb=$( { /usr/bin/time -f "%M" bin/ridehaild map import "$CITY" -o "$tmp/city.map" >/dev/null; } 2>&1 | tail -1)
echo "import_peak_rss_mb=$((mem_kb / 1024))"
[ -z "$TRIPS" ] && echo "# note: no trip files: the map is not calibrated, eta_* figures left out"
# the HTTP runs (routes, estimates) use the calibrated map like the in-process ones
if [ -n "$TRIPS" ]; then
	cal_args=""
	for t in $TRIPS; do cal_args="$cal_args --trips $t"; done
	# shellcheck disable=SC2086
	bin/ridehaild map calibrate "$tmp/city.map" --tz America/New_York $cal_args >/dev/null
fi

p50=$(awk -F= '$1 == "route_p50_us" {print $2}' "$tmp/micro.txt")
if command -v osm2pgrouting >/dev/null && [ -f /usr/share/postgresql/15/extension/pgrouting.control ] &&
	command -v osmium >/dev/null; then
	dbport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$dbport scripts/localdb.sh start >/dev/null
	dburl=$(LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$dbport scripts/localdb.sh url)
	# extensions are the superuser's; osm2pgrouting finds the password in the file
	psql -q "$(LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$dbport scripts/localdb.sh admin-url ridehail)" \
		-c "CREATE EXTENSION IF NOT EXISTS postgis; CREATE EXTENSION IF NOT EXISTS pgrouting; CREATE EXTENSION IF NOT EXISTS hstore"
	export PGPASSFILE=$(LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$dbport scripts/localdb.sh passfile)
	case "$CITY" in
	*.pbf) osmium cat --no-progress -o "$tmp/city.osm" "$CITY" ;;
	*.gz) gunzip -c "$CITY" > "$tmp/city.osm" ;;
	*.bz2) bunzip2 -c "$CITY" > "$tmp/city.osm" ;;
	*) cp "$CITY" "$tmp/city.osm" ;;
	esac
	osm2pgrouting -f "$tmp/city.osm" -c /usr/share/osm2pgrouting/mapconfig_for_cars.xml -d ridehail -U ridehail \
		-h 127.0.0.1 -p "$dbport" --addnodes --tags --clean > "$tmp/osm2pgrouting.log" 2>&1
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	RIDEHAIL_ROUTING_MAP=$tmp/city.map RIDEHAIL_ROUTING_METRIC=distance RIDEHAIL_HTTP_LISTEN=127.0.0.1:$port \
		RIDEHAIL_DATABASE_URL=$dburl RIDEHAIL_LOG_LEVEL=warn bin/ridehaild --config conf/ridehaild.conf 2>>"$tmp/daemon.log" &
	daemon_pid=$!
	for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
	/usr/bin/python3 tests/pgrouting/compare.py --db "$dburl" --route "http://127.0.0.1:$port" --pairs "$PGR_PAIRS" \
		--seed "$SEED" | tee "$tmp/pgr.txt"
	kill "$daemon_pid"
	wait "$daemon_pid" 2>/dev/null || true
	pgr=$(awk -F= '$1 == "pgrouting_p50_us" {print $2}' "$tmp/pgr.txt")
	awk -v a="$pgr" -v b="$p50" 'BEGIN { printf "route_vs_pgrouting=%.0f\n", a / b }'
else
	echo "route_vs_pgrouting=n/a (pgRouting, osm2pgrouting or osmium-tool not installed: scripts/deps.sh install)"
fi
# ---- GET /v1/route over HTTP: daemon on CPU 0, wrk on CPU 1 cycling through
# the benchmark's pairs (geometry and GeoJSON included), vs the nginx ceiling.
command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
RIDEHAIL_ROUTING_MAP=$tmp/city.map RIDEHAIL_HTTP_LISTEN=127.0.0.1:$port RIDEHAIL_LOG_LEVEL=error \
	RIDEHAIL_DATABASE_URL=postgres://ridehail@127.0.0.1:1/none \
	taskset -c 0 bin/ridehaild --config conf/ridehaild.conf 2>>"$tmp/daemon.log" &
daemon_pid=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
cat >"$tmp/route.lua" <<LUA
local paths = {}
for line in io.lines("$tmp/pairs.csv") do
  local a, b, c, d = line:match("([^,]+),([^,]+),([^,]+),([^,]+)")
  paths[#paths + 1] = "/v1/route?from_lat=" .. a .. "&from_lng=" .. b .. "&to_lat=" .. c .. "&to_lng=" .. d
end
local i = 0
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
LUA
# wrk_rps <lua>: median requests/s of RUNS windows against the daemon
wrk_rps() {
	local runs="" out
	for _ in $(seq "$RUNS"); do
		out=$(taskset -c 1 wrk -t1 -c50 -d"${WINDOW:-5}s" --latency -s "$1" "http://127.0.0.1:$port/")
		runs="$runs $(echo "$out" | awk '/Requests\/sec/ {print $2}')"
	done
	echo $runs | tr ' ' '\n' | median
}
route_rps=$(wrk_rps "$tmp/route.lua")
echo "route_http_rps=$route_rps"
# Fare estimates with routing on, once GET /v1/estimate exists (another
# module's work): the same pairs as pickup and drop-off.
est_status=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v1/estimate?pickup_lat=$(head -1 "$tmp/pairs.csv" | cut -d, -f1)&pickup_lng=$(head -1 "$tmp/pairs.csv" | cut -d, -f2)&dropoff_lat=$(head -1 "$tmp/pairs.csv" | cut -d, -f3)&dropoff_lng=$(head -1 "$tmp/pairs.csv" | cut -d, -f4)")
est_rps=""
if [ "$est_status" = 200 ]; then
	sed 's|"/v1/route?from_lat=" .. a .. "&from_lng=" .. b .. "&to_lat=" .. c .. "&to_lng=" .. d|"/v1/estimate?pickup_lat=" .. a .. "\&pickup_lng=" .. b .. "\&dropoff_lat=" .. c .. "\&dropoff_lng=" .. d|' \
		"$tmp/route.lua" > "$tmp/estimate.lua"
	est_rps=$(wrk_rps "$tmp/estimate.lua")
	echo "estimates_routed_rps=$est_rps"
fi
kill "$daemon_pid"
wait "$daemon_pid" 2>/dev/null || true
daemon_pid=""
ANCHORS=${ANCHORS:-$repo/../shared/anchors}
nginx=""
if [ -x "$ANCHORS/nginx_http.sh" ]; then
	nginx=$(anchor nginx_http.sh "${NGINX_SECONDS:-${WINDOW:-5}}" 50 | awk -F= '$1 == "nginx_rps" {print $2}') || true
	echo "nginx_rps=$nginx"
	awk -v a="$route_rps" -v b="$nginx" 'BEGIN { if (b > 0) printf "route_http_vs_nginx=%.2f\n", a / b; else print "route_http_vs_nginx=n/a" }'
else
	echo "# note: nginx anchor absent ($ANCHORS/nginx_http.sh); its ratios are skipped"
fi
if [ -n "$est_rps" ] && [ -n "$nginx" ]; then
	awk -v a="$est_rps" -v b="$nginx" 'BEGIN { printf "estimates_routed_vs_nginx=%.2f\n", a / b }'
else
	echo "# note: GET /v1/estimate answered $est_status: estimates_routed_vs_nginx left out until it exists"
fi
