#!/usr/bin/env bash
# The local default event bus: a `nats-server -js` under var/nats, listening
# on 127.0.0.1 only, its JetStream store kept across runs.
#   scripts/localnats.sh start     start unless running; prints nothing on success
#   scripts/localnats.sh url       the NATS URL of the local server
#   scripts/localnats.sh status | stop | destroy
# LOCALNATS_DIR (default <repo>/var/nats) and LOCALNATS_PORT (default 14222) override.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
dir=${LOCALNATS_DIR:-$repo/var/nats}
port=${LOCALNATS_PORT:-14222}
pidf=$dir/nats-server.pid

url() { echo "nats://127.0.0.1:$port"; }

running() { [ -s "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; }

start() {
	running && return 0
	command -v nats-server >/dev/null || { echo "localnats: nats-server is not installed (make deps)" >&2; exit 1; }
	mkdir -p "$dir"
	# its own session, as pg_ctl does for the database: it outlives the run
	setsid nats-server -js -a 127.0.0.1 -p "$port" -sd "$dir/store" -P "$pidf" -l "$dir/nats-server.log" \
		</dev/null >/dev/null 2>&1 &
	for _ in $(seq 1 100); do
		if running && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	echo "localnats: nats-server did not start; see $dir/nats-server.log" >&2
	exit 1
}

stop() {
	if running; then
		kill "$(cat "$pidf")"
		for _ in $(seq 1 100); do
			running || break
			sleep 0.1
		done
	fi
	rm -f "$pidf"
}

case "${1:-status}" in
start) start ;;
stop) stop ;;
url) url ;;
status) if running; then echo "running on $(url)"; else echo "stopped"; exit 1; fi ;;
destroy) stop; rm -rf "$dir" ;;
*) echo "usage: $0 start|url|status|stop|destroy" >&2; exit 2 ;;
esac
