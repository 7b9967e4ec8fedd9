#!/usr/bin/env bash
# make soak: whole trips for SOAK_MINUTES (30) at SOAK_FRACTION (0.5) of the
# booking capacity measured first, and what the daemon's process does over
# that time.
#
#   capacity  bench/ws_load dispatch --phase cycle --rate 0: a closed loop of
#             128 whole trips in flight (booked, assigned, arrived, started,
#             completed), SOAK_CAPACITY_COUNT of them: the bookings per second
#             this workload sustains, in this soak's configuration (location
#             history written, events published to a local nats-server -js).
#             A booking here is a whole trip, four more commits than the
#             POST -> trip.assigned that bench-dispatch's bookings_per_s
#             measures; SOAK_CAPACITY (bookings/s, e.g. that figure) replaces
#             the measurement, SOAK_RATE sets the rate outright.
#   soak      ws_load dispatch --phase cycle: POSTs at the rate, open loop;
#             each driver (SOAK_DRIVERS, 2,000 across the 20x20 km bench
#             city) arrives, starts and completes the trip it is assigned and
#             is free again; riders book again in turn. Every SOAK_INTERVAL s
#             (60) the load prints the interval's p50/p99 of POST ->
#             trip.assigned and its errors, and this script samples the
#             daemon's resident memory and open descriptors, and from
#             /metrics its heap, the events backlog and the history queue.
#
# Figures (name=value): soak_capacity_per_s, soak_rate_per_s, soak_minutes,
# soak_bookings, soak_completed, soak_errors (non-201 answers, rejected
# commands, trips not completed, error lines in the daemon's log; goal 0),
# soak_rss_mb_start / _end and soak_rss_drift_pct (goal <= 5: the end
# against the first sample after SOAK_WARMUP_MINUTES, 5, in which pools,
# caches and the history ring fill), soak_fds_start / _end / _max,
# soak_p99_ms_start / _end (medians of the p99 of the first three intervals
# after the warm-up and of the last three) and soak_p99_drift_pct. Exits 1
# when a goal is missed.
#
# The daemon runs pinned to CPU 0 and the load to CPU 1 (when there are two),
# PostgreSQL in a throwaway cluster. The machine is shared: other work moves
# the latencies, which is why the p99 drift has no goal, only a figure.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
SOAK_MINUTES=${SOAK_MINUTES:-30}
SOAK_FRACTION=${SOAK_FRACTION:-0.5}
SOAK_RATE=${SOAK_RATE:-}
SOAK_WARMUP_MINUTES=${SOAK_WARMUP_MINUTES:-5}
SOAK_INTERVAL=${SOAK_INTERVAL:-60}
SOAK_DRIVERS=${SOAK_DRIVERS:-2000}
SOAK_CAPACITY_COUNT=${SOAK_CAPACITY_COUNT:-2000}
RSS_DRIFT_GOAL=5

make -s all build/release/bench/ws_load
LOAD=$repo/build/release/bench/ws_load
fdmax=$(ulimit -Hn)
ulimit -n "$fdmax"
cpus=$(nproc)
pin0=""
pin1=""
if [ "$cpus" -ge 2 ] && command -v taskset >/dev/null; then
	pin0="taskset -c 0"
	pin1="taskset -c 1"
fi

tmp=$(mktemp -d /tmp/ridehail-soak.XXXXXX)
chmod 755 "$tmp"
daemon_pid=""
nats_pid=""
sampler_pid=""
cleanup() {
	[ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null || true
	[ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null || true
	[ -n "$nats_pid" ] && kill "$nats_pid" 2>/dev/null && wait "$nats_pid" 2>/dev/null || true
	LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$dbport scripts/localdb.sh destroy >/dev/null 2>&1 || true
	if [ -n "${SOAK_KEEP:-}" ]; then echo "# soak: files kept in $tmp"; else rm -rf "$tmp"; fi
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR) print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2; else print 0}'; }
field() { awk -F= -v k="$1" '$1 == k {print $2}' "$2"; }

dbport=$(free_port)
trap cleanup EXIT
LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$dbport scripts/localdb.sh start
LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$dbport scripts/localdb.sh warm
dburl=$(LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$dbport scripts/localdb.sh url)
natsport=$(free_port)
nats-server -js -a 127.0.0.1 -p "$natsport" -sd "$tmp/nats" >"$tmp/nats.log" 2>&1 &
nats_pid=$!
secret=$(head -c 32 /dev/urandom | base64 | tr -d '/+=' | head -c 40)
port=$(free_port)
env RIDEHAIL_DATABASE_URL="$dburl" RIDEHAIL_HTTP_LISTEN="127.0.0.1:$port" RIDEHAIL_AUTH_JWT_SECRET="$secret" \
	RIDEHAIL_LOG_LEVEL=warn RIDEHAIL_TRIP_RIDES_PER_MINUTE=100000 RIDEHAIL_EVENTS_URL="nats://127.0.0.1:$natsport" \
	$pin0 bin/ridehaild --config conf/ridehaild.conf 2>>"$tmp/daemon.log" &
daemon_pid=$!
for _ in $(seq 200); do
	curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
	sleep 0.1
done
curl -sf "http://127.0.0.1:$port/readyz" >/dev/null || { echo "soak: the daemon did not become ready" >&2; tail -20 "$tmp/daemon.log" >&2; exit 1; }

# ---- accounts straight into the tables: the capacity's and the soak's
cap_drivers=$((SOAK_CAPACITY_COUNT + SOAK_CAPACITY_COUNT / 5))
ndrivers=$((cap_drivers + SOAK_DRIVERS))
psql -q "$dburl" -c "INSERT INTO drivers (email, name, password_hash, vehicle_type, vehicle_make, vehicle_model, vehicle_color, plate)
	SELECT 'soak' || i || '@example.com', 'Soak ' || i, 'unused', 'standard', 'Toyota', 'Prius', 'White', 'S' || i
	FROM generate_series(1, $ndrivers) i" >/dev/null
psql -Atq "$dburl" -c "SELECT id FROM drivers ORDER BY id" >"$tmp/drivers"
head -n "$cap_drivers" "$tmp/drivers" >"$tmp/cap.d"
tail -n "$SOAK_DRIVERS" "$tmp/drivers" >"$tmp/soak.d"
riders_for() { psql -q "$dburl" -c "INSERT INTO riders (email, name, password_hash)
	SELECT 'rider' || i || '-$1@example.com', 'Rider ' || i, 'unused' FROM generate_series(1, $2) i" >/dev/null
	psql -Atq "$dburl" -c "SELECT id FROM riders WHERE email LIKE '%-$1@example.com' ORDER BY id" >"$tmp/$1.r"; }

# ---- the capacity, in this configuration
rate=$SOAK_RATE
capacity=${SOAK_CAPACITY:-}
if [ -z "$rate" ] && [ -z "$capacity" ]; then
	riders_for cap "$cap_drivers"
	$pin1 "$LOAD" dispatch --port "$port" --secret "$secret" --src 8 --phase cycle --rate 0 --ids "$tmp/cap.d" \
		--riders "$tmp/cap.r" --conns "$cap_drivers" --count "$SOAK_CAPACITY_COUNT" --inflight 128 --hconns 128 \
		>"$tmp/cap" 2>"$tmp/cap.err" || { echo "soak: the capacity run failed:" >&2; cat "$tmp/cap" "$tmp/cap.err" >&2; exit 1; }
	capacity=$(field cycle_per_s "$tmp/cap")
fi
if [ -z "$rate" ]; then
	rate=$(awk -v c="$capacity" -v f="$SOAK_FRACTION" 'BEGIN { printf "%.0f", c * f }')
	echo "# soak: capacity $capacity whole trips/s; soaking at $rate/s for $SOAK_MINUTES minutes"
fi
# riders enough that each books again a minute or more later
riders_for soak "$(awk -v r="$rate" 'BEGIN { n = int(r * 90); print (n < 1000) ? 1000 : n }')"

# ---- the soak, sampled
seconds=$((SOAK_MINUTES * 60))
(
	while kill -0 "$daemon_pid" 2>/dev/null; do
		rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$daemon_pid/status" 2>/dev/null || echo 0)
		fds=$(ls "/proc/$daemon_pid/fd" 2>/dev/null | wc -l)
		m=$(curl -s --max-time 5 "http://127.0.0.1:$port/metrics" | awk '
			$1 == "ridehail_memory_allocated_bytes" {heap = $2}
			$1 == "ridehail_events_backlog" {backlog = $2}
			$1 == "ridehail_history_queue_depth" {hist = $2}
			$1 == "ridehail_match_searching" {search = $2}
			END {printf "heap=%.0f backlog=%.0f history=%.0f searching=%.0f", heap, backlog, hist, search}')
		echo "$(date +%s) $rss $fds $m"
		sleep "$SOAK_INTERVAL"
	done
) >"$tmp/samples" &
sampler_pid=$!
t0=$(date +%s)
$pin1 "$LOAD" dispatch --port "$port" --secret "$secret" --src 8 --phase cycle --ids "$tmp/soak.d" \
	--riders "$tmp/soak.r" --conns "$SOAK_DRIVERS" --rate "$rate" --seconds "$seconds" --interval "$SOAK_INTERVAL" \
	--hconns 64 >"$tmp/cycle" 2>"$tmp/cycle.err" || { echo "soak: the load failed:" >&2; tail -20 "$tmp/cycle" "$tmp/cycle.err" >&2; exit 1; }
kill "$sampler_pid" 2>/dev/null || true
sampler_pid=""

# ---- figures
warm=$((t0 + SOAK_WARMUP_MINUTES * 60))
rss_start=$(awk -v w="$warm" '$1 >= w {print $2; exit}' "$tmp/samples")
rss_end=$(tail -1 "$tmp/samples" | awk '{print $2}')
fds_start=$(awk -v w="$warm" '$1 >= w {print $3; exit}' "$tmp/samples")
fds_end=$(tail -1 "$tmp/samples" | awk '{print $3}')
fds_max=$(awk 'BEGIN {m = 0} $3 > m {m = $3} END {print m}' "$tmp/samples")
skip=$((SOAK_WARMUP_MINUTES * 60 / SOAK_INTERVAL))
p99s=$(awk '$1 == "cycle" {for (i = 2; i <= NF; i++) if ($i ~ /^p99_ms=/) {sub("p99_ms=", "", $i); print $i}}' "$tmp/cycle")
p99_start=$(echo "$p99s" | tail -n +"$((skip + 1))" | head -3 | median)
p99_end=$(echo "$p99s" | tail -3 | median)
posted=$(field cycle_posted "$tmp/cycle")
completed=$(field cycle_completed "$tmp/cycle")
errors=$(($(field cycle_http_errors "$tmp/cycle") + $(field cycle_rejected "$tmp/cycle") + $(field cycle_unfinished "$tmp/cycle")))
log_errors=$(grep -c 'level=error' "$tmp/daemon.log" || true)
errors=$((errors + log_errors))
drift() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0) printf "%.2f", (b - a) * 100 / a; else print "n/a" }'; }
rss_drift=$(drift "${rss_start:-0}" "${rss_end:-0}")
[ -n "$capacity" ] && echo "soak_capacity_per_s=$capacity"
echo "soak_rate_per_s=$rate"
echo "soak_minutes=$SOAK_MINUTES"
echo "soak_bookings=$posted"
echo "soak_completed=$completed"
echo "soak_errors=$errors"
echo "soak_rss_mb_start=$(awk -v k="${rss_start:-0}" 'BEGIN { printf "%.1f", k / 1024 }')"
echo "soak_rss_mb_end=$(awk -v k="${rss_end:-0}" 'BEGIN { printf "%.1f", k / 1024 }')"
echo "soak_rss_drift_pct=$rss_drift"
echo "soak_fds_start=${fds_start:-0}"
echo "soak_fds_end=${fds_end:-0}"
echo "soak_fds_max=$fds_max"
echo "soak_p99_ms_start=$p99_start"
echo "soak_p99_ms_end=$p99_end"
echo "soak_p99_drift_pct=$(drift "$p99_start" "$p99_end")"
echo "# soak: per interval (t, posted, assigned, completed, errors, p50, p99), and the daemon's samples (time, RSS kB, fds, from /metrics):"
grep '^cycle ' "$tmp/cycle" | sed 's/^/#   /'
sed 's/^/#   /' "$tmp/samples"
ok=1
[ "$errors" = 0 ] || { echo "# soak: goal missed: $errors errors (goal 0)"; ok=0; }
if [ "$rss_drift" = n/a ] || awk -v d="$rss_drift" -v g="$RSS_DRIFT_GOAL" 'BEGIN { exit !(d > g) }'; then
	echo "# soak: goal missed: resident memory drifted $rss_drift % (goal <= $RSS_DRIFT_GOAL; too short a soak has no sample after the warm-up)"
	ok=0
fi
[ "$ok" = 1 ] && echo "# soak: goals met (the machine is shared: the latencies are as measured under its load)"
[ "$ok" = 1 ]
