#!/usr/bin/env bash
# `make demo`: the daemon and a simulated city on it, with live progress, then
# a short written summary and the report's path.
#
# The demo has its own database, ridehail_demo in the local cluster
# (scripts/localdb.sh, var/pg), emptied at the start of every demo, so that
# make run's database (ridehail) never sees the simulated accounts and trips.
# It leaves nothing running: the daemon stops with the run, events are not
# published (no nats-server is started), and the cluster is stopped again
# when the demo was the one that started it.
#
# With ../shared/data present: Midtown Manhattan, the busiest hour of the Uber
# April 2014 pickups (2014-04-30 18:00, 95 pickups in the box) compressed six
# times (an hour of requests in ten simulated minutes), dropoffs from the NYC
# taxi origin-destination pairs. Without it: West Oakland
# (scripts/localmap.sh) with hot-spot demand.
#
# DEMO_DURATION (simulated s, default 600), DEMO_SPEED (simulated s per wall
# s, default 5), DEMO_DRIVERS, DEMO_RIDERS, DEMO_OUT and DEMO_ADDR
# (default 127.0.0.1:18080, so a `make run` on 8080 is left alone) override;
# RIDEHAILD and SIM name the binaries (default bin/ridehaild, bin/ridehail-sim).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
bin=${RIDEHAILD:-bin/ridehaild}
sim=${SIM:-bin/ridehail-sim}
conf=${CONFIG:-conf/ridehaild.conf}
addr=${DEMO_ADDR:-127.0.0.1:18080}
duration=${DEMO_DURATION:-600}
speed=${DEMO_SPEED:-5}
out=${DEMO_OUT:-var/sim/demo-$(date -u +%Y%m%dT%H%M%S)}
data=${SHARED_DATA:-$repo/../shared/data}

midtown_osm=$data/osm/nyc-midtown-2025.osm.pbf
uber=$data/trips/uber-nyc-pickups-apr14-first65k.csv
taxi=$data/trips/nyc-taxi-2016-statsmaths-10k.csv
sim_args=()
if [ -s "$midtown_osm" ] && [ -s "$uber" ]; then
	map=var/nyc-midtown.map
	if [ ! -s "$map" ] || [ "$bin" -nt "$map" ]; then
		"$bin" --config "$conf" map import "$midtown_osm" -o "$map" >&2
	fi
	sim_args=(--map "$map" --bbox -74.0140,40.7360,-73.9630,40.7590 --margin 250 --demand replay --csv "$uber"
		--start "2014-04-30 18:00:00" --compress 6 --drivers "${DEMO_DRIVERS:-30}" --riders "${DEMO_RIDERS:-60}")
	[ -s "$taxi" ] && sim_args+=(--od "$taxi")
	cat >&2 <<MSG
demo: Midtown Manhattan, the Uber pickups of 2014-04-30 18:00-19:00 compressed 6x: the hour's
      requests arrive in 10 simulated minutes, six times the recorded rate, for ${DEMO_DRIVERS:-30} drivers.
      The city is overloaded on purpose: watch the queue build (requests outrun matches),
      utilisation pinned near 1, long pickup waits and riders cancelling out of patience.
MSG
else
	map=$(scripts/localmap.sh)
	sim_args=(--map "$map" --demand hotspots --rate 150 --hotspots 3 --hotspot-sigma 250 --margin 50
		--drivers "${DEMO_DRIVERS:-12}" --riders "${DEMO_RIDERS:-30}")
	echo "demo: West Oakland ($data is absent): 150 requests an hour around 3 hot spots for ${DEMO_DRIVERS:-12} drivers," \
		"a city that keeps up (a driver serves about 13 trips an hour here)" >&2
fi

# The demo's own database in the local cluster, emptied first.
export LOCALDB_NAME=ridehail_demo
cluster_was_running=0
scripts/localdb.sh status >/dev/null 2>&1 && cluster_was_running=1
scripts/localdb.sh fresh
export RIDEHAIL_DATABASE_URL=$(scripts/localdb.sh url)
echo "demo: database $RIDEHAIL_DATABASE_URL (the demo's own, emptied at each make demo; make run's is not touched)" >&2

# The daemon, as `make run` starts it, with a cheap password hash and no
# login limit for the simulated accounts (a demo, not production).
export RIDEHAIL_HTTP_LISTEN=$addr RIDEHAIL_ROUTING_MAP=$map
export RIDEHAIL_AUTH_PASSWORD_OPSLIMIT=${RIDEHAIL_AUTH_PASSWORD_OPSLIMIT:-1}
export RIDEHAIL_AUTH_PASSWORD_MEMLIMIT=${RIDEHAIL_AUTH_PASSWORD_MEMLIMIT:-8KiB}
export RIDEHAIL_AUTH_LOGIN_PER_ADDRESS=${RIDEHAIL_AUTH_LOGIN_PER_ADDRESS:-100000}
# the simulated city runs $speed times the wall clock: its cars cover that
# much more ground between two fixes than GPS sanity believes of a car
export RIDEHAIL_PRESENCE_GPS_MAX_SPEED=${RIDEHAIL_PRESENCE_GPS_MAX_SPEED:-$(awk -v s="$speed" 'BEGIN { print 250 * s }')}
export RIDEHAIL_LOG_LEVEL=${RIDEHAIL_LOG_LEVEL:-warn}
export RIDEHAIL_EVENTS_SINK=none # the outbox keeps the events; no nats-server to leave behind
mkdir -p var
log=var/demo-daemon.log
scripts/run.sh > "$log" 2>&1 &
daemon=$!
stop() {
	kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true
	if [ "$cluster_was_running" = 0 ]; then
		scripts/localdb.sh stop
		echo "demo: stopped the local cluster it had started (make run starts it again)" >&2
	fi
}
trap stop EXIT
for _ in $(seq 1 300); do
	curl -fs "http://$addr/readyz" >/dev/null 2>&1 && break
	kill -0 "$daemon" 2>/dev/null || { echo "demo: the daemon did not start:" >&2; tail -20 "$log" >&2; exit 1; }
	sleep 0.2
done
curl -fs "http://$addr/readyz" >/dev/null || { echo "demo: the daemon is not ready:" >&2; tail -20 "$log" >&2; exit 1; }
echo "demo: ridehaild on $addr (log $log)" >&2

token=${RIDEHAIL_ADMIN_TOKEN:-$(cat var/admin.token 2>/dev/null || true)}
rc=0
"$sim" --addr "$addr" --admin-token "$token" --duration "$duration" --speed "$speed" --drain 180 \
	--seed "${DEMO_SEED:-1}" --cruise --out "$out" "${sim_args[@]}" > /dev/null || rc=$?
[ -s "$out/summary.txt" ] && cat "$out/summary.txt" >&2
echo "demo: report in $out (summary.txt, summary.json, plots *.png: docs/simulator.md says how to read them)" >&2
exit $rc
