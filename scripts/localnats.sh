#!/usr/bin/env bash
# The local default event bus: a `nats-server -js` under var/nats, listening
# on 127.0.0.1 only, its JetStream store kept across runs. It takes no
# anonymous clients: a user and password generated at its first start live
# in var/nats/nats.conf (the server's) and var/nats/client.credentials (the
# daemon's, events.credentials), both readable by their owner only.
#   scripts/localnats.sh start        start unless running; prints nothing on success
#   scripts/localnats.sh url          the NATS URL of the local server
#   scripts/localnats.sh credentials  the client credentials file (for events.credentials)
#   scripts/localnats.sh status | stop | destroy
# LOCALNATS_DIR (default <repo>/var/nats) and LOCALNATS_PORT (default 14222) override.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
dir=${LOCALNATS_DIR:-$repo/var/nats}
port=${LOCALNATS_PORT:-14222}
pidf=$dir/nats-server.pid
conf=$dir/nats.conf
creds=$dir/client.credentials

url() { echo "nats://127.0.0.1:$port"; }

running() { [ -s "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; }

# The client's credential, made once; the server's configuration, written
# from it at every start (the port may have changed). A server started by an
# earlier version of this script (no configuration: anonymous clients) is
# restarted with it.
configure() {
	mkdir -p "$dir"
	chmod 700 "$dir"
	if [ ! -s "$creds" ]; then
		(umask 077; printf 'ridehail:%s\n' "$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$creds.tmp")
		mv "$creds.tmp" "$creds"
	fi
	local pw
	pw=$(cut -d: -f2- "$creds")
	(
		umask 077
		cat >"$conf.tmp" <<CONF
# ridehail local default: written by scripts/localnats.sh at each start from
# client.credentials (the daemon's events.credentials)
listen: 127.0.0.1:$port
jetstream { store_dir: "$dir/store" }
authorization { user: ridehail, password: "$pw" }
CONF
	)
	mv "$conf.tmp" "$conf"
	if running && ! tr '\0' ' ' <"/proc/$(cat "$pidf")/cmdline" 2>/dev/null | grep -q -- "-c $conf"; then
		echo "localnats: restarting the local nats-server with a credential (it took anonymous clients)" >&2
		stop
	fi
}

start() {
	command -v nats-server >/dev/null || { echo "localnats: nats-server is not installed (make deps)" >&2; exit 1; }
	configure
	running && return 0
	# its own session, as pg_ctl does for the database: it outlives the run
	setsid nats-server -c "$conf" -P "$pidf" -l "$dir/nats-server.log" </dev/null >/dev/null 2>&1 &
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
credentials) echo "$creds" ;;
status) if running; then echo "running on $(url)"; else echo "stopped"; exit 1; fi ;;
destroy) stop; rm -rf "$dir" ;;
*) echo "usage: $0 start|url|credentials|status|stop|destroy" >&2; exit 2 ;;
esac
