#!/usr/bin/env bash
# Instructions the daemon executes per item on its live paths, counted with
# callgrind: a booking (POST /v1/rides → ride.offer → offer.accept →
# trip.assigned), a driver's ping (a quarter of them fanned out to a rider
# holding a socket), a straight-line estimate, a nearby query (10 drivers
# listed of 2,000 in the grid), and what the clock alone costs per second.
# Unlike a rate, an instruction count hardly moves with the machine's other
# load, so on a shared machine it tells two versions of the daemon apart to
# the percent where timed runs cannot.
#
# The load (bench/daemon_ir_load.py) is closed-loop and counted, not timed:
# under valgrind the daemon is ~50x slower, and a clock-driven load would do
# a different amount of work. Each phase is bracketed by callgrind_control
# (zero before, dump after); the clock-driven sweeps inside a phase (their
# number depends on how long the phase took under valgrind) are subtracted
# before dividing by the items (bench/daemon_ir_table.py). PostgreSQL's own
# work is not in these figures: bench/trip_sql_ir.sh counts that.
#
#   daemon_ir_{book,ping,estimate,nearby}   instructions per item
#   daemon_ir_idle_per_s                    instructions per second, no load
#
# BASE=<git revision> (make bench-daemon_ir BASE=main~3): the same load is
# also run against that revision, built in a temporary worktree, and each
# figure is printed with its base (daemon_ir_<x>_base) and the ratio
# (daemon_ir_<x>_vs_base, below 1 is fewer instructions): the peer of this
# benchmark is the daemon as it was. Knobs: BOOKINGS AVAIL ONTRIP ROUNDS
# REQUESTS EXTRA IDLE (QUICK=1 halves the counts). Needs valgrind (skipped
# with a note without it); takes 5-10 minutes per tree. IR_PROFILE=DIR keeps
# this tree's callgrind dumps there (<phase>.cg), for callgrind_annotate.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
if ! command -v valgrind >/dev/null || ! command -v callgrind_control >/dev/null; then
	echo "# note: valgrind is not installed: the daemon_ir figures are skipped"
	exit 0
fi
if [ "${QUICK:-0}" = 1 ]; then
	: "${BOOKINGS:=100}" "${AVAIL:=75}" "${ONTRIP:=25}" "${ROUNDS:=25}" "${REQUESTS:=1000}" "${IDLE:=10}"
fi
BOOKINGS=${BOOKINGS:-200} AVAIL=${AVAIL:-150} ONTRIP=${ONTRIP:-50} ROUNDS=${ROUNDS:-50}
REQUESTS=${REQUESTS:-2000} EXTRA=${EXTRA:-2000} IDLE=${IDLE:-20}
WARM=8
PY=${PYTHON:-/usr/bin/python3}
tmp=$(mktemp -d /tmp/ridehail-bench-dir.XXXXXX)
chmod 755 "$tmp"
pids=()
dbs=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
	for d in "${dbs[@]}"; do
		LOCALDB_DIR=${d%%:*} LOCALDB_PORT=${d##*:} scripts/localdb.sh destroy >/dev/null 2>&1 || true
	done
	[ -d "$tmp/base" ] && git worktree remove --force "$tmp/base" >/dev/null 2>&1
	rm -rf "$tmp"
}
trap cleanup EXIT
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# measure TREE OUT: one callgrind run of TREE's bin/ridehaild, driven by this
# tree's load, against a throwaway cluster of TREE's own scripts/localdb.sh
measure() {
	local tree=$1 out=$2
	mkdir -p "$out"
	local dbport port
	dbport=$(free_port)
	port=$(free_port)
	dbs+=("$out/pg:$dbport")
	(cd "$tree" && LOCALDB_DIR=$out/pg LOCALDB_PORT=$dbport scripts/localdb.sh start >&2)
	local dburl
	dburl=$(cd "$tree" && LOCALDB_DIR=$out/pg LOCALDB_PORT=$dbport scripts/localdb.sh url)
	local secret=daemon-ir-bench-secret-0123456789abcdef0123
	local envs=(RIDEHAIL_DATABASE_URL="$dburl" RIDEHAIL_HTTP_LISTEN="127.0.0.1:$port" RIDEHAIL_AUTH_JWT_SECRET="$secret"
		RIDEHAIL_LOG_LEVEL=warn RIDEHAIL_TRIP_RIDES_PER_MINUTE=100000 RIDEHAIL_PRESENCE_HISTORY=false
		RIDEHAIL_PRESENCE_MAX_PINGS_PER_S=100000 RIDEHAIL_PRESENCE_STALE_AFTER=1h RIDEHAIL_PRESENCE_EVICT_AFTER=2h
		RIDEHAIL_WS_PING_INTERVAL=1h RIDEHAIL_WS_IDLE_TIMEOUT=2h RIDEHAIL_HTTP_IDLE_TIMEOUT=1h
		RIDEHAIL_EVENTS_STATS_INTERVAL=1h
		# one address, fast sockets, drivers placed where the load puts them:
		# the abuse limits are not what this counts (bench-abuse measures them)
		RIDEHAIL_HTTP_MAX_CONNECTIONS_PER_ADDRESS=0 RIDEHAIL_WS_MAX_MESSAGES_PER_S=1000000
		RIDEHAIL_WS_MAX_MESSAGE_BURST=10000000 RIDEHAIL_PRESENCE_GPS_MAX_SPEED=0)
	local pid
	ready() {
		for _ in $(seq 1200); do
			curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && return 0
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		echo "daemon_ir: the daemon of $tree did not become ready" >&2
		tail -20 "$out/daemon.log" >&2
		return 1
	}
	# migrations; then the accounts straight into the tables, as the other areas do
	(cd "$tree" && exec env "${envs[@]}" bin/ridehaild --config conf/ridehaild.conf 2>>"$out/daemon.log") &
	pid=$!
	pids+=("$pid")
	ready
	local nd=$((WARM + BOOKINGS + AVAIL)) nr=$((WARM + BOOKINGS))
	psql -q "$dburl" -c "INSERT INTO drivers (email, name, password_hash, vehicle_type, vehicle_make, vehicle_model, vehicle_color, plate)
		SELECT 'ir' || lpad(i::text, 6, '0') || '@example.com', 'Driver ' || i, 'unused', 'standard', 'Toyota', 'Prius', 'White', 'C' || i
		FROM generate_series(1, $nd) i" >/dev/null
	psql -q "$dburl" -c "INSERT INTO drivers (email, name, password_hash, vehicle_type, vehicle_make, vehicle_model, vehicle_color, plate, status)
		SELECT 'ix' || lpad(i::text, 6, '0') || '@example.com', 'Extra ' || i, 'unused', 'standard', 'Toyota', 'Prius', 'White', 'X' || i, 'available'
		FROM generate_series(1, $EXTRA) i" >/dev/null
	psql -q "$dburl" -c "INSERT INTO riders (email, name, password_hash)
		SELECT 'ir' || lpad(i::text, 6, '0') || '@example.com', 'Rider ' || i, 'unused' FROM generate_series(1, $nr) i" >/dev/null
	psql -Atq "$dburl" -c "SELECT id FROM drivers WHERE email LIKE 'ir%' ORDER BY email" >"$out/drivers"
	psql -Atq "$dburl" -c "SELECT id FROM drivers WHERE email LIKE 'ix%' ORDER BY email" >"$out/extra"
	psql -Atq "$dburl" -c "SELECT id FROM riders ORDER BY email" >"$out/riders"
	kill "$pid"
	wait "$pid" 2>/dev/null || true

	(cd "$tree" && exec env "${envs[@]}" valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out.%p" \
		bin/ridehaild --config conf/ridehaild.conf 2>>"$out/daemon.log") &
	pid=$!
	pids+=("$pid")
	ready
	# valgrind's pid is the daemon's (exec), which callgrind_control names
	"$PY" bench/daemon_ir_load.py --port "$port" --secret "$secret" --drivers "$out/drivers" --riders "$out/riders" \
		--bookings "$BOOKINGS" --avail "$AVAIL" --ontrip "$ONTRIP" --rounds "$ROUNDS" --requests "$REQUESTS" \
		--warm "$WARM" --idle "$IDLE" --vgpid "$pid" --outdir "$out" \
		--seed-extra "$repo/build/release/bench/ws_load http --port $port --secret $secret --ids $out/extra --count $EXTRA --conns 8 >$out/seed.txt" \
		>"$out/load.txt"
	kill "$pid"
	wait "$pid" 2>/dev/null || true
}

make -s all build/release/bench/ws_load >&2
measure "$repo" "$tmp/this"
args=("$tmp/this")
if [ -n "${BASE:-}" ]; then
	git worktree add --detach "$tmp/base" "$BASE" >/dev/null 2>&1
	echo "# base: $(git -C "$tmp/base" log --oneline -1)"
	make -s -C "$tmp/base" -j2 all >&2
	measure "$tmp/base" "$tmp/base-run"
	args+=(--base "$tmp/base-run")
fi
if [ -n "${IR_PROFILE:-}" ]; then
	mkdir -p "$IR_PROFILE"
	cp "$tmp"/this/*.cg "$tmp/this/load.txt" "$IR_PROFILE"/ 2>/dev/null || true
fi
"$PY" bench/daemon_ir_table.py "${args[@]}"
