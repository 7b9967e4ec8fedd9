#!/usr/bin/env bash
# make bench-dispatch: booking, offers and live tracking, in one run.
#
#   bookings  simulated drivers (bench/ws_load dispatch) go available across
#             the 20x20 km city and accept every ride.offer; riders POST
#             /v1/rides from random points, each rider and driver once, in a
#             closed loop at each number of bookings in flight in
#             BOOK_INFLIGHT ("128 1024"): BOOK_COUNT bookings (5,000), or 8
#             per booking in flight when that is more (the ramp up and down
#             of the loop is then a small part). The rate at each is
#             trip.assigned frames over the time from the first POST to the
#             last of them; bookings_per_s is the highest of those medians
#             (the capacity; bookings_inflight says where), and
#             bookings_per_s_by_inflight shows them all. The drivers here
#             accept at once: in a city, where a driver takes seconds to
#             accept, 2,000 bookings a second means thousands in flight, so
#             128 in flight measures the latency of a booking more than the
#             capacity. Each rate is checked against the daemon's
#             MATCHED transitions (ridehail_trip_transitions_total) and the
#             database (every MATCHED has its trip.accepted outbox row); vs
#             pgbench's TPC-B from ../shared/anchors/postgis.sh. The POSTs
#             start once the daemon has answered every driver's going
#             available (logins are not what is measured), each booking in
#             flight on a connection of its own (riders are separate phones).
#             bookings_{created,offered,assigned}_ms say where the time went
#             at bookings_inflight (means): POST -> 201, POST -> ride.offer,
#             ride.offer -> trip.assigned; bookings_ms_by_inflight is POST ->
#             trip.assigned at each.
#   offers    POST /v1/rides at a steady OFFER_RATE per second for WINDOW s:
#             the time from sending the POST to the ride.offer frame on the
#             driver's socket, p50 and p99; offer_created_p99_ms, the part
#             up to the POST's 201 (the rest: the driver's reservation).
#             disk_fsync_{p50,p99,max}_ms: the cluster's disk making an 8 KiB
#             write durable, alone for 3 s before the runs (bench/
#             fsync_probe): a commit waits for one, so a stall of the disk
#             is a stall of every offer behind it.
#   tracking  TRACK_PAIRS drivers on trips, each rider holding a socket; each
#             driver pings once a second: the time from the ping to the
#             driver.location frame at its rider, p99. The goal is 10,000 pairs;
#             a pair is four descriptors on this machine (two per process), so
#             the file-descriptor limit may allow fewer: track_pairs says.
#             Drivers wait where riders ask from, but the nearest are taken
#             first, so the last requests may find no free driver within the
#             largest radius: they wait (a few dozen), and track_pairs counts
#             the trips matched.
#
# The daemon runs pinned to CPU 0, the load on CPU 1, PostgreSQL in a
# throwaway cluster. Figures are medians of RUNS runs, each with drivers and
# riders of its own. Knobs: BOOK_COUNT, BOOK_INFLIGHT (a list), OFFER_RATE,
# WINDOW (s), TRACK_PAIRS, TRACK_INFLIGHT (the tracking phase's bookings in
# flight, 128), RUNS, PG_ANCHOR_SECONDS (pgbench's window, 10). QUICK=1 (make
# bench QUICK=1) lowers the defaults: 2,000 bookings at 128 and 4,096 at
# 512 in flight, 2 s offer window, 1,000 tracking pairs, one run, a 1 s pgbench
# window.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
. bench/lib/anchor.sh
if [ "${QUICK:-0}" = 1 ]; then
	: "${BOOK_COUNT:=2000}" "${BOOK_INFLIGHT:=128 512}" "${WINDOW:=2}" "${TRACK_PAIRS:=1000}" "${RUNS:=1}" "${PG_ANCHOR_SECONDS:=1}"
fi
BOOK_COUNT=${BOOK_COUNT:-5000}
BOOK_INFLIGHT=${BOOK_INFLIGHT:-128 1024}
TRACK_INFLIGHT=${TRACK_INFLIGHT:-128}
OFFER_RATE=${OFFER_RATE:-500}
WINDOW=${WINDOW:-5}
TRACK_PAIRS=${TRACK_PAIRS:-10000}
RUNS=${RUNS:-3}
PG_ANCHOR_SECONDS=${PG_ANCHOR_SECONDS:-10}
ANCHORS=${ANCHORS:-$repo/../shared/anchors}

fdmax=$(ulimit -Hn)
ulimit -n "$fdmax"
if [ "$fdmax" != unlimited ] && [ $(((fdmax - 1000) / 2)) -lt "$TRACK_PAIRS" ]; then
	echo "# note: the process file-descriptor limit is $fdmax here: $(((fdmax - 1000) / 2)) driver/rider pairs instead of $TRACK_PAIRS"
	TRACK_PAIRS=$(((fdmax - 1000) / 2))
fi
make -s all build/release/bench/ws_load build/release/bench/fsync_probe
LOAD=$repo/build/release/bench/ws_load

tmp=$(mktemp -d /tmp/ridehail-bench-dispatch.XXXXXX)
chmod 755 "$tmp"
daemon_pid=""
load_pids=()
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
field() { awk -F= -v k="$1" '$1 == k {print $2}' "$2"; }
matched() { v=$(metric 'ridehail_trip_transitions_total{to="MATCHED",result="ok"}'); echo "${v:-0}"; }
sqlv() { psql -Atq "$dburl" -c "$1"; }

# ---- the peer, while nothing else runs: first, and again at the end (on
# this shared machine, TPC-B windows minutes apart have read anything from
# 1,200 to 3,400 transactions a second): pg_tpcb_tps is the mean of the two,
# pg_tpcb_runs both. When make bench QUICK=1 shares the peer between areas
# (BENCH_ANCHOR_CACHE), it is measured once.
tpcb_once() {
	[ -x "$ANCHORS/postgis.sh" ] || return 0
	PG_ANCHOR_PORT=$(free_port) anchor postgis.sh 50000 "$PG_ANCHOR_SECONDS" | awk -F= '$1 == "pg_tpcb_tps" {print $2}' || true
}
tpcb1=$(tpcb_once)
[ -n "$tpcb1" ] || echo "# note: PostgreSQL anchor absent or failed ($ANCHORS/postgis.sh); bookings_vs_tpcb is skipped"

dbport=$(free_port)
trap cleanup EXIT
LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$dbport scripts/localdb.sh start
LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$dbport scripts/localdb.sh warm # WAL as in service: see localdb.sh
# The disk the cluster commits to, alone for 3 s: one stall of its flush
# holds up every commit behind it (bench/fsync_probe.c)
"$repo/build/release/bench/fsync_probe" "$(readlink -f "$tmp/pg")" 3 >"$tmp/fsync" || true
dburl=$(LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$dbport scripts/localdb.sh url)
secret=$(head -c 32 /dev/urandom | base64 | tr -d '/+=' | head -c 40)
port=$(free_port)

start_daemon() {
	env RIDEHAIL_DATABASE_URL="$dburl" RIDEHAIL_HTTP_LISTEN="127.0.0.1:$port" \
		RIDEHAIL_AUTH_JWT_SECRET="$secret" RIDEHAIL_LOG_LEVEL=warn \
		RIDEHAIL_TRIP_RIDES_PER_MINUTE=100000 RIDEHAIL_PRESENCE_HISTORY=false \
		RIDEHAIL_HTTP_MAX_CONNECTIONS_PER_ADDRESS=0 "$@" \
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
# One phase of ws_load dispatch on CPU 1, in the foreground; its output in $1.
load() {
	local out=$1
	shift
	taskset -c 1 "$LOAD" dispatch --port "$port" --secret "$secret" --src 8 "$@" >"$out" 2>"$out.err" &
	load_pids+=($!)
	wait $! || { echo "bench: ws_load failed:" >&2; cat "$out" "$out.err" >&2; exit 1; }
	if [ -n "${WS_LOAD_TIMELINE:-}" ]; then cat "$out.err" >&2; fi
}

# ---- accounts straight into the tables, each run with its own
book_count() { local c=$((8 * $1)); echo $((c > BOOK_COUNT ? c : BOOK_COUNT)); } # inflight
book_drivers() { local c; c=$(book_count "$1"); echo $((c + c / 5)); }
offer_drivers=$((OFFER_RATE * WINDOW * 6 / 5 + 200))
per_run=$((offer_drivers + TRACK_PAIRS))
for inf in $BOOK_INFLIGHT; do
	if [ "$fdmax" != unlimited ] && [ $(($(book_drivers "$inf") + inf + 1000)) -gt "$fdmax" ]; then
		echo "bench: $(book_drivers "$inf") drivers and $inf bookings in flight need more descriptors than the limit, $fdmax: lower BOOK_COUNT or BOOK_INFLIGHT" >&2
		exit 1
	fi
	per_run=$((per_run + $(book_drivers "$inf")))
done
n=$((RUNS * per_run))
start_daemon
psql -q "$dburl" -c "INSERT INTO drivers (email, name, password_hash, vehicle_type, vehicle_make, vehicle_model, vehicle_color, plate)
	SELECT 'bench' || i || '@example.com', 'Bench ' || i, 'unused', 'standard', 'Toyota', 'Prius', 'White', 'B' || i
	FROM generate_series(1, $n) i" >/dev/null
psql -q "$dburl" -c "INSERT INTO riders (email, name, password_hash)
	SELECT 'rider' || i || '@example.com', 'Rider ' || i, 'unused' FROM generate_series(1, $n) i" >/dev/null
psql -Atq "$dburl" -c "SELECT id FROM drivers ORDER BY id" >"$tmp/drivers"
psql -Atq "$dburl" -c "SELECT id FROM riders ORDER BY id" >"$tmp/riders"
# The trips of a run still searching at its end (the last requests of the
# tracking phase may find no free driver in reach) are cancelled by their
# riders, through the API, before the next run: a trip left waiting would
# take the next run's drivers as they go available, and each run is to have
# drivers and riders of its own.
cancel_one() { # trip rider
	local tok
	tok=$(RIDEHAIL_AUTH_JWT_SECRET="$secret" RIDEHAIL_DATABASE_URL="$dburl" bin/ridehaild --config conf/ridehaild.conf admin token --role rider --id "$2") &&
		curl -s -o /dev/null -w '%{http_code}\n' -X POST -H "Authorization: Bearer $tok" \
			-H 'Content-Type: application/json' -d '{}' "http://127.0.0.1:$port/v1/rides/$1/cancel"
}
export -f cancel_one
cancel_waiting() {
	local codes
	codes=$(sqlv "SELECT id, rider_id FROM trips WHERE state = 'SEARCHING'" | tr '|' ' ' |
		secret=$secret port=$port dburl=$dburl xargs -r -n 2 -P 4 bash -c 'cancel_one "$0" "$1"' | sort | uniq -c | tr -s ' ')
	[ -z "$codes" ] || echo "# note: run $1: trips still searching, cancelled by their riders (count, status):$codes"
}
# ids for run r of a phase: lines [from, from + count) of both files
slice() { # file from count out
	sed -n "$(($2 + 1)),$(($2 + $3))p" "$1" >"$4"
}

declare -A book_runs bcreated_runs boffered_runs bassigned_runs btotal_runs
offer50_runs=""
offer99_runs=""
ocreated99_runs=""
track50_runs=""
track99_runs=""
at=0
for r in $(seq "$RUNS"); do
	# bookings, at each number in flight
	for inf in $BOOK_INFLIGHT; do
		nd=$(book_drivers "$inf")
		slice "$tmp/drivers" $at $nd "$tmp/d"
		slice "$tmp/riders" $at $nd "$tmp/r"
		at=$((at + nd))
		m0=$(matched)
		b=$tmp/book.$r.$inf
		load "$b" --phase book --ids "$tmp/d" --riders "$tmp/r" --conns $nd \
			--count "$(book_count "$inf")" --inflight "$inf" --hconns "$inf"
		sleep 0.5
		m1=$(matched)
		# the load's own count: trips left waiting by an earlier phase may take
		# some of this run's drivers before the first POST, which the metric counts
		got=$(sed -n 's/.* assigned=\([0-9]*\) .*/\1/p' "$b")
		if [ $((m1 - m0)) -lt "$got" ]; then
			echo "bench: the daemon counted $((m1 - m0)) MATCHED transitions, the drivers $got assignments" >&2
			exit 1
		fi
		book_runs[$inf]="${book_runs[$inf]:-} $(field book_per_s "$b")"
		bcreated_runs[$inf]="${bcreated_runs[$inf]:-} $(field book_created_ms "$b")"
		boffered_runs[$inf]="${boffered_runs[$inf]:-} $(field book_offered_ms "$b")"
		bassigned_runs[$inf]="${bassigned_runs[$inf]:-} $(field book_assigned_ms "$b")"
		btotal_runs[$inf]="${btotal_runs[$inf]:-} $(awk -v a="$(field book_offered_ms "$b")" -v b="$(field book_assigned_ms "$b")" 'BEGIN { print a + b }')"
	done
	# offers
	slice "$tmp/drivers" $at $offer_drivers "$tmp/d"
	slice "$tmp/riders" $at $offer_drivers "$tmp/r"
	at=$((at + offer_drivers))
	load "$tmp/offer.$r" --phase offer --ids "$tmp/d" --riders "$tmp/r" --conns $offer_drivers \
		--rate "$OFFER_RATE" --seconds "$WINDOW" --hconns 64
	offer50_runs="$offer50_runs $(field offer_p50_ms "$tmp/offer.$r")"
	offer99_runs="$offer99_runs $(field offer_p99_ms "$tmp/offer.$r")"
	ocreated99_runs="$ocreated99_runs $(field offer_created_p99_ms "$tmp/offer.$r")"
	# tracking
	slice "$tmp/drivers" $at $TRACK_PAIRS "$tmp/d"
	slice "$tmp/riders" $at $TRACK_PAIRS "$tmp/r"
	at=$((at + TRACK_PAIRS))
	load "$tmp/track.$r" --phase track --ids "$tmp/d" --riders "$tmp/r" --conns $TRACK_PAIRS \
		--seconds $((WINDOW * 2)) --inflight "$TRACK_INFLIGHT"
	track50_runs="$track50_runs $(field track_p50_ms "$tmp/track.$r")"
	track99_runs="$track99_runs $(field track_p99_ms "$tmp/track.$r")"
	cancel_waiting "$r"
done

# every MATCHED transition committed with its outbox row, no driver twice
db_matched=$(sqlv "SELECT count(*) FROM trip_events WHERE to_state = 'MATCHED'")
db_outbox=$(sqlv "SELECT count(*) FROM outbox WHERE event_type = 'trip.accepted'")
db_double=$(sqlv "SELECT count(*) FROM (SELECT driver_id FROM trips WHERE driver_id IS NOT NULL
	AND state NOT IN ('COMPLETED', 'CANCELLED') GROUP BY driver_id HAVING count(*) > 1) x")
if [ "$db_matched" != "$db_outbox" ] || [ "$db_double" != 0 ]; then
	echo "bench: the database disagrees: $db_matched MATCHED, $db_outbox trip.accepted outbox rows, $db_double drivers on two trips" >&2
	exit 1
fi
kill "$daemon_pid" && wait "$daemon_pid" 2>/dev/null || true
daemon_pid=""
tpcb=""
if [ -n "$tpcb1" ]; then
	# (a peer shared between areas, make bench QUICK=1, is one measurement)
	tpcb2=""
	[ -n "${BENCH_ANCHOR_CACHE:-}" ] || tpcb2=$(tpcb_once)
	tpcb=$(echo "$tpcb1 ${tpcb2:-}" | tr ' ' '\n' | grep . | median | xargs printf "%.0f\\n")
	tpcb_runs=$(echo "$tpcb1 ${tpcb2:-}" | xargs | tr ' ' ',')
fi

med() { echo "$1" | tr ' ' '\n' | grep . | median; }
bookings=0
best=""
by_rate=""
by_ms=""
for inf in $BOOK_INFLIGHT; do
	v=$(med "${book_runs[$inf]}")
	by_rate="$by_rate,$inf:$v"
	by_ms="$by_ms,$inf:$(med "${btotal_runs[$inf]}")"
	if awk -v a="$v" -v b="$bookings" 'BEGIN { exit !(a > b) }'; then
		bookings=$v
		best=$inf
	fi
done
echo "bookings_per_s=$bookings"
echo "bookings_inflight=$best"
echo "bookings_runs=$(echo ${book_runs[$best]} | tr ' ' ',')"
echo "bookings_per_s_by_inflight=${by_rate#,}"
echo "bookings_ms_by_inflight=${by_ms#,}"
echo "bookings_created_ms=$(med "${bcreated_runs[$best]}")"
echo "bookings_offered_ms=$(med "${boffered_runs[$best]}")"
echo "bookings_assigned_ms=$(med "${bassigned_runs[$best]}")"
if [ -n "$tpcb" ]; then
	echo "pg_tpcb_tps=$tpcb"
	echo "pg_tpcb_runs=$tpcb_runs"
	echo "bookings_vs_tpcb=$(ratio "$bookings" "$tpcb")"
fi
echo "db_matched=$db_matched"
echo "db_accepted_outbox=$db_outbox"
echo "offer_rate=$(field offer_rate "$tmp/offer.$RUNS")"
grep '^disk_fsync_.*_ms=' "$tmp/fsync" || true
echo "offer_p50_ms=$(echo "$offer50_runs" | tr ' ' '\n' | grep . | median)"
echo "offer_p99_ms=$(echo "$offer99_runs" | tr ' ' '\n' | grep . | median)"
echo "offer_created_p99_ms=$(echo "$ocreated99_runs" | tr ' ' '\n' | grep . | median)"
echo "track_pairs=$(field track_pairs "$tmp/track.$RUNS")"
echo "track_p50_ms=$(echo "$track50_runs" | tr ' ' '\n' | grep . | median)"
echo "track_p99_ms=$(echo "$track99_runs" | tr ' ' '\n' | grep . | median)"
for f in "$tmp"/book.* "$tmp"/offer.* "$tmp"/track.*; do
	case $f in *.err) ;; *) errs=$(sed -n 's/.*http_errors=\([0-9]*\) rejected=\([0-9]*\).*/\1 \2/p' "$f") ;; esac
	case $f in *.err) ;; *) [ "$errs" = "0 0" ] || echo "# note: $(basename "$f"): http_errors rejected = $errs" ;; esac
done
