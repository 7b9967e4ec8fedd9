#!/usr/bin/env bash
# make bench-share: shared rides (docs/sharing.md) against their peers, in
# one run.
#
#   rate_card    wrk POSTing /v1/share/rate-card (random trips in the bench
#                city, a rider's token each) vs nginx returning a fixed body.
#   confirm      wrk POSTing /v1/share/bookings, a rider and a rate card of
#                theirs per request over RIDERS riders: share_confirm_rps is
#                the bookings committed (rows in share_bookings, each with its
#                history and outbox rows, answered 202) per second of the
#                window, vs pgbench's TPC-B (../shared/anchors/postgis.sh) in
#                the same run. No driver is online: every booking is then
#                decided (cancelled, no_driver) by the matcher, which runs
#                meanwhile as it would.
#   insert       share_insert_p99_ms: DRIVERS drivers online over WebSockets,
#                a shared trip opened for each, then MEASURE bookings near open
#                trips one at a time: the client's POST to its 202, plus the
#                database's confirmed_at (or cancelled_at) minus requested_at
#                when decided after the 202 (bench/share_load.py).
#                Straight-line travel times (no map is loaded).
#   simulator    bench/sim.sh share: the Midtown replay at 10x through the real
#                daemon, all solo then half the requests booked shared, the
#                same seed: share_vkm_saved_pct, share_detour_p95_pct,
#                share_wait_p95_s beside share.max_detour and share.max_wait
#                (its knobs at the top of bench/sim.sh; SIM=0 skips it).
#
# The daemon runs pinned to CPU 0, the load on CPU 1, PostgreSQL in a
# throwaway cluster; every socket comes from one address, so the per-address
# cap and per-socket message rates are lifted (bench-abuse measures those).
# Knobs: RIDERS, WINDOW, RUNS, DRIVERS, MEASURE,
# PG_ANCHOR_SECONDS, NGINX_SECONDS. QUICK=1 lowers them.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
. bench/lib/anchor.sh
if [ "${QUICK:-0}" = 1 ]; then
	: "${RIDERS:=2000}" "${WINDOW:=2}" "${RUNS:=1}" "${DRIVERS:=500}" "${MEASURE:=100}" "${PG_ANCHOR_SECONDS:=1}" "${NGINX_SECONDS:=2}"
fi
RIDERS=${RIDERS:-10000}
WINDOW=${WINDOW:-5}
RUNS=${RUNS:-3}
DRIVERS=${DRIVERS:-500}
MEASURE=${MEASURE:-300}
PG_ANCHOR_SECONDS=${PG_ANCHOR_SECONDS:-5}
NGINX_SECONDS=${NGINX_SECONDS:-5}
ANCHORS=${ANCHORS:-$repo/../shared/anchors}

command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
make -s all

tmp=$(mktemp -d /tmp/ridehail-bench-share.XXXXXX)
chmod 755 "$tmp"
daemon_pid=""
cleanup() {
	[ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
	LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$dbport scripts/localdb.sh destroy >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
med() { echo "$1" | tr ' ' '\n' | grep . | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f\n", a / b; else print "n/a" }'; }
ms() { awk -v p="$1" '$1==p {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}'; }
psqlq() { psql -Atq "$dburl" -c "$1"; }

dbport=$(free_port)
trap cleanup EXIT
LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$dbport scripts/localdb.sh start
LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$dbport scripts/localdb.sh warm
dburl=$(LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$dbport scripts/localdb.sh url)
secret=$(head -c 32 /dev/urandom | base64 | tr -d '/+=' | head -c 40)
port=$(free_port)

start_daemon() {
	env RIDEHAIL_DATABASE_URL="$dburl" RIDEHAIL_HTTP_LISTEN="127.0.0.1:$port" RIDEHAIL_AUTH_JWT_SECRET="$secret" \
		RIDEHAIL_LOG_LEVEL=warn RIDEHAIL_HTTP_MAX_REQUESTS_PER_CONN=1000000 RIDEHAIL_MATCH_AUTO=false \
		RIDEHAIL_SHARE_SEARCH_RADIUS=1000 RIDEHAIL_HTTP_MAX_CONNECTIONS_PER_ADDRESS=0 \
		RIDEHAIL_WS_MAX_MESSAGES_PER_S=1000000 RIDEHAIL_WS_MAX_MESSAGE_BURST=10000000 "$@" \
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

start_daemon
psqlq "INSERT INTO riders (email, name, password_hash)
	SELECT 'rider' || lpad(i::text, 6, '0') || '@example.com', 'Rider ' || i, 'unused' FROM generate_series(1, $RIDERS) i" >/dev/null
psqlq "INSERT INTO drivers (email, name, password_hash, vehicle_type, vehicle_make, vehicle_model, vehicle_color, plate)
	SELECT 'driver' || lpad(i::text, 6, '0') || '@example.com', 'Driver ' || i, 'unused', 'standard', 'Toyota', 'Prius', 'White', 'S' || i
	FROM generate_series(1, $DRIVERS) i" >/dev/null
stop_daemon

# ---- peers
nginx=""
tpcb=""
if [ -x "$ANCHORS/nginx_http.sh" ]; then
	nginx=$(NGINX_ANCHOR_PORT=$(free_port) anchor nginx_http.sh "$NGINX_SECONDS" 50 | awk -F= '$1 == "nginx_rps" {print $2}') || true
fi
if [ -x "$ANCHORS/postgis.sh" ]; then
	tpcb=$(PG_ANCHOR_PORT=$(free_port) anchor postgis.sh 50000 "$PG_ANCHOR_SECONDS" | awk -F= '$1 == "pg_tpcb_tps" {print $2}') || true
fi
[ -n "$nginx" ] || echo "# note: nginx anchor absent or failed ($ANCHORS/nginx_http.sh); its ratio is skipped"
[ -n "$tpcb" ] || echo "# note: PostgreSQL anchor absent or failed ($ANCHORS/postgis.sh); its ratio is skipped"

start_daemon
load() { "${PYTHON:-/usr/bin/python3}" bench/share_load.py "$@" --port "$port" --secret "$secret" --db "$dburl"; }

# ---- rate cards
load tokens >"$tmp/tokens"
cat >"$tmp/card.lua" <<LUA
local toks = {}
for l in io.lines("$tmp/tokens") do toks[#toks + 1] = l end
local i = 0
math.randomseed(5)
request = function()
  i = i % #toks + 1
  local plat = 52.02 + math.random() * 0.14
  local plng = 5.05 + math.random() * 0.14
  local body = string.format('{"pickup":{"lat":%.6f,"lng":%.6f},"dropoff":{"lat":%.6f,"lng":%.6f}}',
    plat, plng, plat + 0.02, plng + 0.02)
  return wrk.format("POST", "/v1/share/rate-card",
    {["Authorization"] = "Bearer " .. toks[i], ["Content-Type"] = "application/json"}, body)
end
LUA
rc_runs=""
p99_runs=""
for _ in $(seq "$RUNS"); do
	out=$(taskset -c 1 wrk -t1 -c50 -d"${WINDOW}s" --latency -s "$tmp/card.lua" "http://127.0.0.1:$port/")
	if echo "$out" | grep -q "Non-2xx"; then
		echo "bench: rate cards answered errors:" >&2
		echo "$out" >&2
		exit 1
	fi
	rc_runs="$rc_runs $(echo "$out" | awk '/Requests\/sec/ {print int($2)}')"
	p99_runs="$p99_runs $(echo "$out" | ms 99%)"
done
rate_card=$(med "$rc_runs")
echo "rate_card_rps=$rate_card"
echo "rate_card_p99_ms=$(med "$p99_runs")"
echo "rate_card_runs=$(echo $rc_runs | tr ' ' ',')"
if [ -n "$nginx" ]; then
	echo "nginx_rps=$nginx"
	echo "rate_card_vs_nginx=$(ratio "$rate_card" "$nginx")"
fi

# ---- confirmations: a card per rider, then bookings cycling over them
load cards >"$tmp/cards"
cat >"$tmp/book.lua" <<LUA
local rows = {}
for l in io.lines("$tmp/cards") do
  local t, c = l:match("^(%S+) (%S+)$")
  rows[#rows + 1] = {t, c}
end
local i = 0
request = function()
  i = i % #rows + 1
  local body = '{"rate_card_id":"' .. rows[i][2] .. '","choice":{"seats":1,"mode":"normal","corporate":false}}'
  return wrk.format("POST", "/v1/share/bookings",
    {["Authorization"] = "Bearer " .. rows[i][1], ["Content-Type"] = "application/json"}, body)
end
LUA
cf_runs=""
for _ in $(seq "$RUNS"); do
	n0=$(psqlq "SELECT count(*) FROM share_bookings")
	t0=$(date +%s.%N)
	out=$(taskset -c 1 wrk -t1 -c64 -d"${WINDOW}s" -s "$tmp/book.lua" "http://127.0.0.1:$port/")
	t1=$(date +%s.%N)
	n1=$(psqlq "SELECT count(*) FROM share_bookings")
	cf_runs="$cf_runs $(awk -v a="$n0" -v b="$n1" -v s="$t0" -v e="$t1" 'BEGIN {printf "%.0f", (b - a) / (e - s)}')"
	sleep 1 # the last bookings decided
done
# every booking has its history and outbox rows, and none is left undecided
ev=$(psqlq "SELECT count(*) FROM share_bookings b WHERE NOT EXISTS (SELECT 1 FROM share_events e WHERE e.booking_id = b.id AND e.seq = 1)
	OR NOT EXISTS (SELECT 1 FROM outbox o WHERE o.aggregate_id = b.id AND o.event_type = 'share.booking.requested')")
pend=$(psqlq "SELECT count(*) FROM share_bookings WHERE state = 'pending'")
[ "$ev" = 0 ] || { echo "bench: $ev bookings without their history or outbox row" >&2; exit 1; }
[ "$pend" = 0 ] || echo "# note: $pend bookings still pending after the window"
confirm=$(med "$cf_runs")
echo "share_confirm_rps=$confirm"
echo "share_confirm_runs=$(echo $cf_runs | tr ' ' ',')"
if [ -n "$tpcb" ]; then
	echo "pg_tpcb_tps=$tpcb"
	echo "share_confirm_vs_tpcb=$(ratio "$confirm" "$tpcb")"
fi

# ---- insertion with DRIVERS shared trips open; the loop's own part of each
# decision from ridehail_share_match_seconds (the measured bookings' calls)

load insert --drivers "$DRIVERS" --measure "$MEASURE" --metrics "http://127.0.0.1:$port/metrics"
stop_daemon

# ---- the simulator: shared demand against all solo, same seed and fleet
if [ "${SIM:-1}" != 0 ]; then
	bench/sim.sh share
else
	echo "# note: SIM=0: the simulator's share figures are skipped"
fi
