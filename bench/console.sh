#!/usr/bin/env bash
# make bench-console: the operator's console with a city of moving drivers.
#
#   feed    DRIVERS=5,000 driver WebSockets (bench/ws_load --every 1000), each
#           reporting a new position once a second (a ~5 m random walk: every
#           driver moves every second, the feed's worst case); one console
#           subscribed (bench/console_probe.py): console_frame_kb_s, the
#           bytes a second one console is sent, against the naive feed
#           (every driver as GeoJSON every second, measured from the same
#           view: naive_geojson_kb_s); console_update_p50/p99_ms, from a probe
#           driver's ping to the console.update showing it (goal p99 <= 1,000
#           ms with updates batched once a second).
#   page    headless Chromium opens /console on the Midtown Manhattan map
#           (../shared/data) with the drivers streaming (bench/console_page.py):
#           console_load_ms, navigation to the first frame drawn with the
#           roads and the drivers, cache off, against the sign-in page's own
#           load (console_page_load_ms), medians of RUNS.
#
# The daemon runs pinned to CPU 0, the load on CPU 1, PostgreSQL in a
# throwaway cluster. QUICK=1: 1,000 drivers, a 6 s window, 2 page runs.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
if [ "${QUICK:-0}" = 1 ]; then
	: "${DRIVERS:=1000}" "${SECONDS_FEED:=6}" "${RUNS:=2}"
fi
DRIVERS=${DRIVERS:-5000}
SECONDS_FEED=${SECONDS_FEED:-20}
RUNS=${RUNS:-5}
PY=${PYTHON:-/usr/bin/python3}
MIDTOWN=${MIDTOWN:-$repo/../shared/data/osm/nyc-midtown-2025.osm.pbf}

fdmax=$(ulimit -Hn)
ulimit -n "$fdmax"
make -s all build/release/bench/ws_load
LOAD=$repo/build/release/bench/ws_load

tmp=$(mktemp -d /tmp/ridehail-bench-console.XXXXXX)
chmod 755 "$tmp"
daemon_pid=""
load_pid=""
cleanup() {
	[ -n "$load_pid" ] && kill "$load_pid" 2>/dev/null && wait "$load_pid" 2>/dev/null
	[ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
	LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$dbport scripts/localdb.sh destroy >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

dbport=$(free_port)
trap cleanup EXIT
LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$dbport scripts/localdb.sh start
dburl=$(LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$dbport scripts/localdb.sh url)
secret=$(head -c 32 /dev/urandom | base64 | tr -d '/+=' | head -c 40)
port=$(free_port)
map=""
if [ -f "$MIDTOWN" ]; then
	bin/ridehaild --config conf/ridehaild.conf map import "$MIDTOWN" -o "$tmp/midtown.map" >/dev/null
	map=$tmp/midtown.map
else
	echo "# note: $MIDTOWN is absent: the page is measured without a road map"
fi

# history off (its own metrics measure it) and the ping limit lifted for
# the probe; every driver socket from one address, so the per-address cap
# and the per-socket message rates lifted (bench-abuse measures those); one
# console update a second as shipped
env RIDEHAIL_DATABASE_URL="$dburl" RIDEHAIL_HTTP_LISTEN="127.0.0.1:$port" RIDEHAIL_AUTH_JWT_SECRET="$secret" \
	RIDEHAIL_LOG_LEVEL=warn RIDEHAIL_PRESENCE_HISTORY=false RIDEHAIL_ROUTING_MAP="$map" \
	RIDEHAIL_PRESENCE_MAX_DRIVERS=$((DRIVERS + 1000)) \
	RIDEHAIL_HTTP_MAX_CONNECTIONS_PER_ADDRESS=0 RIDEHAIL_WS_MAX_MESSAGES_PER_S=1000000 \
	RIDEHAIL_WS_MAX_MESSAGE_BURST=10000000 \
	taskset -c 0 bin/ridehaild --config conf/ridehaild.conf 2>>"$tmp/daemon.log" &
daemon_pid=$!
for _ in $(seq 100); do
	curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
	sleep 0.1
done
curl -sf "http://127.0.0.1:$port/readyz" >/dev/null || { echo "bench: the daemon did not become ready:" >&2; tail -20 "$tmp/daemon.log" >&2; exit 1; }

psql -q "$dburl" -c "INSERT INTO drivers (email, name, password_hash, vehicle_type, vehicle_make, vehicle_model, vehicle_color, plate)
	SELECT 'bench' || i || '@example.com', 'Bench ' || i, 'unused', 'standard', 'Toyota', 'Prius', 'White', 'B' || i
	FROM generate_series(1, $((DRIVERS + 1))) i" >/dev/null
psql -Atq "$dburl" -c "SELECT id FROM drivers ORDER BY email" >"$tmp/all"
head -n "$DRIVERS" "$tmp/all" >"$tmp/ids"
probe=$(tail -n 1 "$tmp/all")
op=$(psql -Atq "$dburl" -c "INSERT INTO operators (email, name, password_hash) VALUES ('bench-ops@example.com', 'Ops', 'unused') RETURNING id" | head -1)
token() { RIDEHAIL_AUTH_JWT_SECRET="$secret" RIDEHAIL_DATABASE_URL="$dburl" bin/ridehaild --config conf/ridehaild.conf admin token --role "$1" --id "$2"; }
optok=$(token operator "$op")
probetok=$(token driver "$probe")

taskset -c 1 "$LOAD" ws --port "$port" --secret "$secret" --ids "$tmp/ids" --conns "$DRIVERS" --src 2 \
	--available --every 1000 >"$tmp/load" 2>"$tmp/load.err" &
load_pid=$!
for _ in $(seq 1200); do
	grep -qs '^ready' "$tmp/load" && break
	kill -0 "$load_pid" 2>/dev/null || break
	sleep 0.1
done
grep -qs '^ready' "$tmp/load" || { echo "bench: ws_load did not get its connections up:" >&2; cat "$tmp/load" "$tmp/load.err" >&2; exit 1; }
echo "console_drivers=$DRIVERS"
grep '^connected' "$tmp/load" | tr ' ' '\n' | sed 's/^/load_/'
taskset -c 1 "$PY" bench/console_probe.py --port "$port" --operator-token "$optok" --driver-token "$probetok" \
	--driver-id "$probe" --seconds "$SECONDS_FEED"
if command -v chromium >/dev/null; then
	taskset -c 1 "$PY" bench/console_page.py --port "$port" --operator-token "$optok" --runs "$RUNS"
else
	echo "# note: chromium is not installed (scripts/deps.sh install): console_load_ms is skipped"
fi
build=$(curl -s "http://127.0.0.1:$port/metrics" | awk '$1 ~ /^ridehail_console_update_seconds_(sum|count)$/ {print $2}' | paste -sd' ')
echo "console_build_ms_mean=$(echo "$build" | awk '{ if ($2 > 0) printf "%.2f\n", $1 / $2 * 1000; else print "n/a" }')"
slow=$(curl -s "http://127.0.0.1:$port/metrics" | awk '$1 == "ridehail_ws_slow_readers_total" {print $2}')
echo "console_slow_readers=${slow:-0}"
