#!/usr/bin/env bash
# make bench-presence: the driver hot path against its peers, in one run.
#
#   pings     N=10,000 driver WebSockets stream location updates (bench/ws_load);
#             pings absorbed into the grid per second, from the daemon's own
#             ridehail_presence_pings_total, vs Redis GEOADD pipelined (p16).
#   nearby    50,000 available drivers in a 20x20 km city (put there through
#             PUT /v1/drivers/me/location), wrk asking GET /v1/drivers/nearby
#             (2 km, 10 nearest, a rider token: the fuzzed rider path) from
#             random points; vs Redis GEOSEARCH and the nginx ceiling.
#   idle      as many idle authenticated driver sockets as the process may
#             open (goal 100,000); resident memory per connection.
#
# The daemon runs pinned to CPU 0, the load on CPU 1, PostgreSQL in a
# throwaway cluster. Figures are medians of RUNS windows. Peers come from
# ../shared/anchors/ when present (their ratios are skipped, with a note,
# when not). Knobs: PINGS_CONNS, NEARBY_DRIVERS, IDLE_CONNS, WINDOW (s), RUNS,
# NGINX_SECONDS (the nginx peer's window, 10). QUICK=1 (make bench QUICK=1)
# lowers the defaults: 2,000 ping sockets, 2,000 nearby drivers (Redis gets
# the same city), 2,000 idle sockets, one 2 s window.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
. bench/lib/anchor.sh
if [ "${QUICK:-0}" = 1 ]; then
	: "${PINGS_CONNS:=2000}" "${NEARBY_DRIVERS:=2000}" "${IDLE_CONNS:=2000}" "${WINDOW:=2}" "${RUNS:=1}" "${NGINX_SECONDS:=2}"
fi
PINGS_CONNS=${PINGS_CONNS:-10000}
NEARBY_DRIVERS=${NEARBY_DRIVERS:-50000}
IDLE_CONNS=${IDLE_CONNS:-100000}
WINDOW=${WINDOW:-5}
RUNS=${RUNS:-3}
NGINX_SECONDS=${NGINX_SECONDS:-10}
ANCHORS=${ANCHORS:-$repo/../shared/anchors}

fdmax=$(ulimit -Hn) # sockets are descriptors: take all we may
ulimit -n "$fdmax"
command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
make -s all build/release/bench/ws_load
LOAD=$repo/build/release/bench/ws_load

tmp=$(mktemp -d /tmp/ridehail-bench-presence.XXXXXX)
chmod 755 "$tmp"
daemon_pid=""
load_pids=() # every ws_load this script started, so that cleanup stops only those
cleanup() {
	[ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
	for p in "${load_pids[@]}"; do kill "$p" 2>/dev/null || true; done
	LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$dbport scripts/localdb.sh destroy >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f\n", a / b; else print "n/a" }'; }
metric() { curl -s "http://127.0.0.1:$port/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

dbport=$(free_port)
trap cleanup EXIT
LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$dbport scripts/localdb.sh start
dburl=$(LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$dbport scripts/localdb.sh url)
secret=$(head -c 32 /dev/urandom | base64 | tr -d '/+=' | head -c 40)
port=$(free_port)

start_daemon() { # extra env as arguments
	env RIDEHAIL_DATABASE_URL="$dburl" RIDEHAIL_HTTP_LISTEN="127.0.0.1:$port" \
		RIDEHAIL_AUTH_JWT_SECRET="$secret" RIDEHAIL_LOG_LEVEL=warn RIDEHAIL_HTTP_MAX_CONNECTIONS_PER_ADDRESS=0 "$@" \
		taskset -c 0 bin/ridehaild --config conf/ridehaild.conf 2>>"$tmp/daemon.log" &
	daemon_pid=$!
	for _ in $(seq 100); do
		curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && return 0
		sleep 0.1
	done
	echo "bench: the daemon did not become ready; its log:" >&2
	tail -20 "$tmp/daemon.log" >&2
	exit 1
}
stop_daemon() {
	kill "$daemon_pid"
	wait "$daemon_pid" 2>/dev/null || true
	daemon_pid=""
}
# Starts ws_load in the background on CPU 1 and waits for its "ready".
load_ws() { # out-file, then ws_load arguments
	local out=$1
	shift
	taskset -c 1 "$LOAD" ws --port "$port" --secret "$secret" "$@" >"$out" 2>"$out.err" &
	load_pids+=($!)
	for _ in $(seq 1800); do
		grep -qs '^ready' "$out" && return 0
		kill -0 $! 2>/dev/null || break
		sleep 0.1
	done
	echo "bench: ws_load did not get its connections up:" >&2
	cat "$out" "$out.err" >&2
	exit 1
}

# ---- accounts: drivers straight into the table (hashing 50k passwords is
# not what is measured), then their ids for the load generator.
ndrivers=$((NEARBY_DRIVERS > PINGS_CONNS ? NEARBY_DRIVERS : PINGS_CONNS))
ndrivers=$((IDLE_CONNS > ndrivers ? IDLE_CONNS : ndrivers))
start_daemon # applies the migrations
psql -q "$dburl" -c "INSERT INTO drivers (email, name, password_hash, vehicle_type, vehicle_make, vehicle_model, vehicle_color, plate)
	SELECT 'bench' || i || '@example.com', 'Bench ' || i, 'unused', 'standard', 'Toyota', 'Prius', 'White', 'B' || i
	FROM generate_series(1, $ndrivers) i" >/dev/null
psql -Atq "$dburl" -c "SELECT id FROM drivers ORDER BY email" >"$tmp/ids"
rider=$(psql -Atq "$dburl" -c "INSERT INTO riders (email, name, password_hash) VALUES ('bench-rider@example.com', 'Bench', 'unused') RETURNING id" | head -1)
stop_daemon

# ---- peers
redis_add=""
redis_search=""
nginx=""
if [ -x "$ANCHORS/redis_geo.sh" ]; then
	anchor redis_geo.sh "$NEARBY_DRIVERS" >"$tmp/redis" || true
	redis_add=$(awk -F= '$1 == "redis_geoadd_p16_per_s" {print $2}' "$tmp/redis")
	redis_search=$(awk -F= '$1 == "redis_geosearch_per_s" {print $2}' "$tmp/redis")
	redis_search_p99=$(awk -F= '$1 == "redis_geosearch_p99_ms" {print $2}' "$tmp/redis")
fi
if [ -x "$ANCHORS/nginx_http.sh" ]; then
	nginx=$(anchor nginx_http.sh "$NGINX_SECONDS" 50 | awk -F= '$1 == "nginx_rps" {print $2}') || true
fi
[ -n "$redis_add" ] || echo "# note: Redis anchor absent ($ANCHORS/redis_geo.sh); its ratios are skipped"
[ -n "$nginx" ] || echo "# note: nginx anchor absent ($ANCHORS/nginx_http.sh); its ratio is skipped"

# ---- pings: N sockets streaming; the grid alone (history off: it is the
# cold path, measured by its own metrics), the per-driver and per-socket
# limits lifted so that 10k sockets can carry 500k pings/s.
start_daemon RIDEHAIL_PRESENCE_MAX_PINGS_PER_S=100000 RIDEHAIL_PRESENCE_HISTORY=false \
	RIDEHAIL_WS_MAX_MESSAGES_PER_S=1000000 RIDEHAIL_WS_MAX_MESSAGE_BURST=10000000
load_ws "$tmp/pings" --ids "$tmp/ids" --conns "$PINGS_CONNS" --src 4 --available --stream
load_pid=$!
sleep 2
rates=""
for _ in $(seq "$RUNS"); do
	a=$(metric ridehail_presence_pings_total)
	t0=$(date +%s.%N)
	sleep "$WINDOW"
	b=$(metric ridehail_presence_pings_total)
	t1=$(date +%s.%N)
	rates="$rates $(awk -v a="$a" -v b="$b" -v t0="$t0" -v t1="$t1" 'BEGIN {printf "%.0f", (b - a) / (t1 - t0)}')"
done
ignored=$(metric 'ridehail_presence_pings_ignored_total{reason="out_of_order"}')
throttled=$(metric ridehail_presence_pings_throttled_total)
kill "$load_pid"
wait "$load_pid" 2>/dev/null || true
stop_daemon
pings=$(echo "$rates" | tr ' ' '\n' | grep . | median)
echo "pings_conns=$PINGS_CONNS"
echo "pings_per_s=$pings"
echo "pings_runs=$(echo $rates | tr ' ' ',')"
echo "pings_ignored=${ignored:-0} pings_throttled=${throttled:-0} pings_rejected=$(sed -n 's/.*rejected=\([0-9]*\).*/\1/p' "$tmp/pings")" | tr ' ' '\n'
if [ -n "$redis_add" ]; then
	echo "redis_geoadd_p16_per_s=$redis_add"
	echo "pings_vs_redis_geoadd_p16=$(ratio "$pings" "$redis_add")"
fi

# ---- nearby: 50k available drivers placed over HTTP, then wrk.
psql -q "$dburl" -c "UPDATE drivers SET status = 'available'" >/dev/null
start_daemon RIDEHAIL_PRESENCE_STALE_AFTER=1h RIDEHAIL_PRESENCE_EVICT_AFTER=2h RIDEHAIL_PRESENCE_MAX_DRIVERS=1000000
taskset -c 1 "$LOAD" http --port "$port" --secret "$secret" --ids "$tmp/ids" --count "$NEARBY_DRIVERS" --conns 32 >"$tmp/seed"
in_grid=$(metric ridehail_presence_grid_drivers)
token=$(RIDEHAIL_AUTH_JWT_SECRET="$secret" RIDEHAIL_DATABASE_URL="$dburl" bin/ridehaild --config conf/ridehaild.conf admin token --role rider --id "$rider")
got=$(curl -s -H "Authorization: Bearer $token" "http://127.0.0.1:$port/v1/drivers/nearby?lat=52.09&lng=5.12&radius_m=2000&limit=10" |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])')
[ "$got" = 10 ] || { echo "bench: nearby found $got drivers, expected 10" >&2; exit 1; }
cat >"$tmp/nearby.lua" <<LUA
math.randomseed(7)
local hdr = { ["Authorization"] = "Bearer $token" }
request = function()
  local lat = 52.0 + math.random() * 0.18
  local lng = 5.03 + math.random() * 0.18
  return wrk.format("GET", string.format("/v1/drivers/nearby?lat=%.6f&lng=%.6f&radius_m=2000&limit=10", lat, lng), hdr)
end
LUA
ms() { awk -v p="$1" '$1==p {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}'; }
rps_runs=""
p50_runs=""
p99_runs=""
for _ in $(seq "$RUNS"); do
	out=$(taskset -c 1 wrk -t1 -c50 -d"${WINDOW}s" --latency -s "$tmp/nearby.lua" "http://127.0.0.1:$port/")
	if echo "$out" | grep -q "Non-2xx"; then
		echo "bench: nearby answered errors:" >&2
		echo "$out" >&2
		exit 1
	fi
	rps_runs="$rps_runs $(echo "$out" | awk '/Requests\/sec/ {print int($2)}')"
	p50_runs="$p50_runs $(echo "$out" | ms 50%)"
	p99_runs="$p99_runs $(echo "$out" | ms 99%)"
done
stop_daemon
nearby=$(echo "$rps_runs" | tr ' ' '\n' | grep . | median)
echo "nearby_drivers=$in_grid"
echo "nearby_rps=$nearby"
echo "nearby_p50_ms=$(echo "$p50_runs" | tr ' ' '\n' | grep . | median)"
echo "nearby_p99_ms=$(echo "$p99_runs" | tr ' ' '\n' | grep . | median)"
if [ -n "$redis_search" ]; then
	echo "redis_geosearch_per_s=$redis_search"
	echo "redis_geosearch_p99_ms=$redis_search_p99"
	echo "nearby_vs_redis_geosearch=$(ratio "$nearby" "$redis_search")"
fi
if [ -n "$nginx" ]; then
	echo "nginx_rps=$nginx"
	echo "nearby_vs_nginx=$(ratio "$nearby" "$nginx")"
fi

# ---- idle: the file-descriptor limit of one process bounds this test
# (ulimit -Hn); the load is spread over several processes of ws_load.
want=$IDLE_CONNS
[ "$fdmax" != unlimited ] && [ $((fdmax - 200)) -lt "$want" ] && want=$((fdmax - 200))
if [ "$want" -lt "$IDLE_CONNS" ]; then
	echo "# note: the process file-descriptor limit is $fdmax here (raising it needs CAP_SYS_RESOURCE);"
	echo "#       holding $want idle connections instead of $IDLE_CONNS"
fi
start_daemon RIDEHAIL_WS_MAX_CONNECTIONS=$((want + 100))
sleep 1
pid=$daemon_pid
rss0=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
per=15000
loaders=()
i=0
while [ $((i * per)) -lt "$want" ]; do
	n=$((want - i * per))
	[ "$n" -gt "$per" ] && n=$per
	sed -n "$((i * per + 1)),$((i * per + n))p" "$tmp/ids" >"$tmp/ids.$i"
	load_ws "$tmp/idle.$i" --ids "$tmp/ids.$i" --conns "$n" --src 8 --available --seed-ping --seed "$i"
	loaders+=($!)
	i=$((i + 1))
done
sleep 2
held=$(metric ridehail_ws_connections)
rss1=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
for l in "${loaders[@]}"; do kill "$l" 2>/dev/null || true; done
wait "${loaders[@]}" 2>/dev/null || true
stop_daemon
echo "idle_conns=$held"
echo "idle_conns_goal=$IDLE_CONNS"
echo "idle_rss_mib=$((rss1 / 1024))"
echo "idle_rss_base_mib=$((rss0 / 1024))"
echo "kib_per_conn=$(awk -v a="$rss0" -v b="$rss1" -v n="$held" 'BEGIN { if (n > 0) printf "%.2f\n", (b - a) / n; else print "n/a" }')"
