#!/usr/bin/env bash
# make bench-trips: fare estimates and the trip state machine against their
# peers, in one run.
#
#   estimates    wrk asking GET /v1/estimate (straight-line distance, no
#                token) for random pickup/dropoff pairs in the 20x20 km bench
#                city; vs nginx returning a fixed JSON body (the ceiling for
#                one HTTP request on one core).
#   transitions  TRIPS trips per window, requested over HTTP (not timed),
#                then driven assign -> arrived -> start -> complete over
#                TRIP_CONNS keep-alive connections (bench/trip_load; dispatch
#                is manual here, match.auto=false: the operator's assign is
#                the MATCHED edge, and bench-dispatch measures offers): 2xx
#                transitions per second of wall time, vs pgbench's trip
#                transition + outbox row (../shared/anchors/postgis.sh). The
#                outbox and trip_events must hold exactly the rows the
#                answered transitions imply. transitions_batch_mean is the
#                daemon's own group-commit batch size
#                (ridehail_trip_batch_size); the _cpu_pct figures say where
#                the time went (daemon process vs the cluster's backends).
#   trip_sql     the database's batch functions alone (bench/trip_sql.py):
#                backend CPU per new trip and per MATCHED transition in
#                batches of 1, 16 and 64 (trip_sql_{request,match}_b<N>_us),
#                and per driver status update, presence's one-row UPDATE
#                (trip_sql_driver_status_us).
#   trip_sql_ir  the same functions' instructions per item, counted by
#                callgrind on a single-user backend (bench/trip_sql_ir.sh),
#                which the machine's noise does not move; a lone MATCHED
#                against one row's state change with its outbox row
#                (trip_sql_ir_match_b1_vs_peer).
#
# The daemon runs pinned to CPU 0, the load on CPU 1, PostgreSQL in a
# throwaway cluster (not pinned). Figures are medians of RUNS windows. Peers
# come from ../shared/anchors/ when present (their ratios are skipped, with a
# note, when not). Knobs: TRIPS, TRIP_CONNS, WINDOW (s, for wrk), RUNS,
# PG_ANCHOR_SECONDS, NGINX_SECONDS (the peers' windows, 10 s each). QUICK=1
# (make bench QUICK=1) lowers the defaults: 1,000 trips over 64 connections,
# one 2 s window, a 1 s pgbench window, a 2 s nginx window.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
. bench/lib/anchor.sh
if [ "${QUICK:-0}" = 1 ]; then
	: "${TRIPS:=1000}" "${TRIP_CONNS:=64}" "${WINDOW:=2}" "${RUNS:=1}" "${PG_ANCHOR_SECONDS:=1}" "${NGINX_SECONDS:=2}"
fi
TRIPS=${TRIPS:-5000}
TRIP_CONNS=${TRIP_CONNS:-256}
WINDOW=${WINDOW:-5}
RUNS=${RUNS:-3}
PG_ANCHOR_SECONDS=${PG_ANCHOR_SECONDS:-10}
NGINX_SECONDS=${NGINX_SECONDS:-10}
ANCHORS=${ANCHORS:-$repo/../shared/anchors}

command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
make -s all build/release/bench/trip_load
LOAD=$repo/build/release/bench/trip_load

tmp=$(mktemp -d /tmp/ridehail-bench-trips.XXXXXX)
chmod 755 "$tmp"
daemon_pid=""
load_pid=""
cleanup() {
	[ -n "$load_pid" ] && kill "$load_pid" 2>/dev/null
	[ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
	LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$dbport scripts/localdb.sh destroy >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
med() { echo "$1" | tr ' ' '\n' | grep . | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f\n", a / b; else print "n/a" }'; }
metric() { curl -s "http://127.0.0.1:$port/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
ms() { awk -v p="$1" '$1==p {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}'; }
# CPU seconds (user + system) of one process, or of all children of one.
tck=$(getconf CLK_TCK)
cpu_of() { awk -v t="$tck" '{print ($14 + $15) / t}' "/proc/$1/stat" 2>/dev/null || echo 0; }
cpu_children() {
	local sum=0 c
	for c in $(pgrep -P "$1"); do sum=$(awk -v a="$sum" -v b="$(cpu_of "$c")" 'BEGIN {print a + b}'); done
	echo "$sum"
}
psqlq() { psql -Atq "$dburl" -c "$1"; }

dbport=$(free_port)
trap cleanup EXIT
LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$dbport scripts/localdb.sh start
LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$dbport scripts/localdb.sh warm # WAL as in service: see localdb.sh
dburl=$(LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$dbport scripts/localdb.sh url)
secret=$(head -c 32 /dev/urandom | base64 | tr -d '/+=' | head -c 40)
admin=$(head -c 32 /dev/urandom | base64 | tr -d '/+=' | head -c 32)
port=$(free_port)

start_daemon() { # extra env as arguments
	env RIDEHAIL_DATABASE_URL="$dburl" RIDEHAIL_HTTP_LISTEN="127.0.0.1:$port" \
		RIDEHAIL_AUTH_JWT_SECRET="$secret" RIDEHAIL_ADMIN_TOKEN="$admin" RIDEHAIL_LOG_LEVEL=warn \
		RIDEHAIL_MATCH_AUTO=false RIDEHAIL_HTTP_MAX_CONNECTIONS_PER_ADDRESS=0 "$@" \
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

# ---- accounts: riders and available drivers straight into the tables
# (hashing passwords is not what is measured); rider i rides with driver i.
start_daemon # applies the migrations
psqlq "INSERT INTO riders (email, name, password_hash)
	SELECT 'rider' || i || '@example.com', 'Rider ' || i, 'unused' FROM generate_series(1, $TRIPS) i" >/dev/null
psqlq "INSERT INTO drivers (email, name, password_hash, vehicle_type, vehicle_make, vehicle_model, vehicle_color, plate, status)
	SELECT 'driver' || i || '@example.com', 'Driver ' || i, 'unused', 'standard', 'Toyota', 'Prius', 'White', 'T' || i, 'available'
	FROM generate_series(1, $TRIPS) i" >/dev/null
psqlq "SELECT r.id || ' ' || d.id FROM riders r JOIN drivers d ON substr(d.email, 7) = substr(r.email, 6)
	ORDER BY r.email" >"$tmp/pairs"
[ "$(wc -l <"$tmp/pairs")" -eq "$TRIPS" ] || { echo "bench: expected $TRIPS rider/driver pairs" >&2; exit 1; }
stop_daemon

# ---- peers (on ports free now: their fixed defaults may be held by
# another run's connections in TIME_WAIT)
nginx=""
pg_tr=""
if [ -x "$ANCHORS/nginx_http.sh" ]; then
	nginx=$(NGINX_ANCHOR_PORT=$(free_port) anchor nginx_http.sh "$NGINX_SECONDS" 50 | awk -F= '$1 == "nginx_rps" {print $2}') || true
fi
if [ -x "$ANCHORS/postgis.sh" ]; then
	pg_tr=$(PG_ANCHOR_PORT=$(free_port) anchor postgis.sh 50000 "$PG_ANCHOR_SECONDS" | awk -F= '$1 == "pg_transition_outbox_tps" {print $2}') || true
fi
[ -n "$nginx" ] || echo "# note: nginx anchor absent or failed ($ANCHORS/nginx_http.sh); its ratio is skipped"
[ -n "$pg_tr" ] || echo "# note: PostgreSQL anchor absent or failed ($ANCHORS/postgis.sh); its ratio is skipped"

# ---- estimates: wrk, 50 connections like the nginx anchor.
start_daemon
got=$(curl -s "http://127.0.0.1:$port/v1/estimate?pickup_lat=52.05&pickup_lng=5.08&dropoff_lat=52.12&dropoff_lng=5.15&vehicle_type=standard" |
	python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["method"], d["fare"] is not None)')
[ "$got" = "straight_line True" ] || { echo "bench: unexpected estimate answer: $got" >&2; exit 1; }
cat >"$tmp/estimate.lua" <<'LUA'
math.randomseed(11)
request = function()
  local plat = 52.0 + math.random() * 0.18
  local plng = 5.03 + math.random() * 0.18
  local dlat = 52.0 + math.random() * 0.18
  local dlng = 5.03 + math.random() * 0.18
  return wrk.format("GET", string.format(
    "/v1/estimate?pickup_lat=%.6f&pickup_lng=%.6f&dropoff_lat=%.6f&dropoff_lng=%.6f&vehicle_type=standard",
    plat, plng, dlat, dlng))
end
LUA
rps_runs=""
p99_runs=""
for _ in $(seq "$RUNS"); do
	out=$(taskset -c 1 wrk -t1 -c50 -d"${WINDOW}s" --latency -s "$tmp/estimate.lua" "http://127.0.0.1:$port/")
	# (a random pair closer than trip.min_distance is a 422: one in ~10^5)
	bad=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
	total=$(echo "$out" | awk '/requests in/ {print $1}')
	if [ -n "$bad" ] && [ "$bad" -gt $((total / 10000 + 1)) ]; then
		echo "bench: estimates answered $bad errors of $total:" >&2
		echo "$out" >&2
		exit 1
	fi
	rps_runs="$rps_runs $(echo "$out" | awk '/Requests\/sec/ {print int($2)}')"
	p99_runs="$p99_runs $(echo "$out" | ms 99%)"
done
stop_daemon
estimates=$(med "$rps_runs")
echo "estimates_rps=$estimates"
echo "estimates_p99_ms=$(med "$p99_runs")"
echo "estimates_runs=$(echo $rps_runs | tr ' ' ',')"
if [ -n "$nginx" ]; then
	echo "nginx_rps=$nginx"
	echo "estimates_vs_nginx=$(ratio "$estimates" "$nginx")"
fi

# ---- transitions: TRIPS fresh trips per window; the same riders and drivers
# each window (the previous window left them idle and available).
start_daemon RIDEHAIL_TRIP_RIDES_PER_MINUTE=100000 RIDEHAIL_HTTP_MAX_REQUESTS_PER_CONN=1000000
postmaster=$(head -1 "$tmp/pg/data/postmaster.pid")
tr_runs=""
p50_runs=""
p99_runs=""
dcpu_runs=""
pcpu_runs=""
for r in $(seq "$RUNS"); do
	ob0=$(psqlq "SELECT count(*) FROM outbox")
	ev0=$(psqlq "SELECT count(*) FROM trip_events")
	taskset -c 1 "$LOAD" --pairs "$tmp/pairs" --secret "$secret" --admin "$admin" --port "$port" \
		--conns "$TRIP_CONNS" --count "$TRIPS" --seed "$r" >"$tmp/load.out" 2>"$tmp/load.err" &
	load_pid=$!
	# CPU is sampled once creation is over: wait for the first transition.
	for _ in $(seq 600); do
		[ -n "$(metric ridehail_trip_batch_size_count)" ] && [ "$(metric ridehail_trip_batch_size_count)" != "${bc0:-0}" ] && break
		kill -0 "$load_pid" 2>/dev/null || break
		sleep 0.05
	done
	d0=$(cpu_of "$daemon_pid")
	p0=$(cpu_children "$postmaster")
	t0=$(date +%s.%N)
	rc=0
	wait "$load_pid" || rc=$?
	load_pid=""
	t1=$(date +%s.%N)
	d1=$(cpu_of "$daemon_pid")
	p1=$(cpu_children "$postmaster")
	bc0=$(metric ridehail_trip_batch_size_count)
	if [ "$rc" -ne 0 ]; then
		echo "bench: trip_load failed:" >&2
		cat "$tmp/load.out" "$tmp/load.err" >&2
		exit 1
	fi
	line=$(cat "$tmp/load.out")
	field() { echo "$line" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k {print $2}'; }
	created=$(field created)
	done_tr=$(field transitions)
	ob=$(($(psqlq "SELECT count(*) FROM outbox") - ob0))
	ev=$(($(psqlq "SELECT count(*) FROM trip_events") - ev0))
	# per trip: requested 2 outbox rows + 1 event; assign, arrived, start 1 + 1
	# each; complete 2 + 1.
	if [ "$created" -ne "$TRIPS" ] || [ "$done_tr" -ne $((4 * TRIPS)) ] || [ "$ob" -ne $((7 * TRIPS)) ] || [ "$ev" -ne $((5 * TRIPS)) ]; then
		echo "bench: run $r: $line; outbox +$ob (want $((7 * TRIPS))), trip_events +$ev (want $((5 * TRIPS)))" >&2
		exit 1
	fi
	tr_runs="$tr_runs $(field per_s)"
	p50_runs="$p50_runs $(field p50_ms)"
	p99_runs="$p99_runs $(field p99_ms)"
	wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')
	dcpu_runs="$dcpu_runs $(awk -v a="$d0" -v b="$d1" -v w="$wall" 'BEGIN {printf "%.0f", (b - a) / w * 100}')"
	pcpu_runs="$pcpu_runs $(awk -v a="$p0" -v b="$p1" -v w="$wall" 'BEGIN {printf "%.0f", (b - a) / w * 100}')"
done
bsum=$(metric ridehail_trip_batch_size_sum)
bcount=$(metric ridehail_trip_batch_size_count)
active=$(psqlq "SELECT count(*) FROM trips WHERE state <> 'COMPLETED'")
stop_daemon
[ "$active" -eq 0 ] || { echo "bench: $active trips did not end COMPLETED" >&2; exit 1; }
transitions=$(med "$tr_runs")
echo "transitions_trips=$TRIPS"
echo "transitions_conns=$TRIP_CONNS"
echo "transitions_per_s=$transitions"
echo "transitions_runs=$(echo $tr_runs | tr ' ' ',')"
echo "transitions_p50_ms=$(med "$p50_runs")"
echo "transitions_p99_ms=$(med "$p99_runs")"
echo "transitions_batch_mean=$(awk -v s="$bsum" -v c="$bcount" 'BEGIN { if (c > 0) printf "%.1f\n", s / c; else print "n/a" }')"
echo "transitions_daemon_cpu_pct=$(med "$dcpu_runs")"
echo "transitions_pg_cpu_pct=$(med "$pcpu_runs")"
if [ -n "$pg_tr" ]; then
	echo "pg_transition_outbox_tps=$pg_tr"
	echo "transitions_vs_pgbench=$(ratio "$transitions" "$pg_tr")"
fi

# ---- the database's batch functions alone: backend CPU per item
# (bench/trip_sql.py; it empties the tables, which are done with by now)
"${PYTHON:-/usr/bin/python3}" bench/trip_sql.py "$dburl"

# ---- the same functions' instructions per item: callgrind on a single-user
# backend of a cluster of their own (bench/trip_sql_ir.sh), which the
# machine's noise does not move
bash bench/trip_sql_ir.sh
