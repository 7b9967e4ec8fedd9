#!/usr/bin/env bash
# Dependencies of ridehail on Debian 12, from apt.
#   scripts/deps.sh check     exit 0 if everything is installed
#   scripts/deps.sh install   install what is missing (uses sudo when not root)
#   scripts/deps.sh list      print the package names
# When another apt or dpkg holds the package lock (usual on a fresh cloud
# machine while unattended-upgrades runs), install waits for it, up to
# DEPS_LOCK_WAIT seconds (default 600), and says so.
set -euo pipefail

BUILD="make gcc pkg-config libevent-dev libpq-dev libcjson-dev libsodium-dev libreadosm-dev zlib1g-dev libbz2-dev python3 python3-yaml" # (python3-yaml: docs/openapi.yaml -> /openapi.json)
DB="postgresql-15 postgresql-client-15 postgresql-15-postgis-3"
TEST="python3-pytest python3-websockets python3-jsonschema python3-psycopg2 python3-prometheus-client util-linux procps curl chromium" # (chromium: the console in a real browser, tests/e2e/test_console_browser.py)
# Optional packages that later modules use are added here, one line each.
ROADS="postgresql-15-pgrouting osm2pgrouting osmium-tool" # pgRouting cross-check of routing (tests, bench-roads)
EVENTS="libnats-dev nats-server" # the outbox relay (src/events) and its tests
SIM="gnuplot-nox" # the simulator's plots (bin/ridehail-sim, make demo)
DEPLOY="nginx-light openssl systemd" # the TLS front of docs/operations.md, its test certificate, the unit's check (tests/e2e/test_deploy.py)
ALL="$BUILD $DB $TEST $ROADS $EVENTS $SIM $DEPLOY"
FUZZ="clang libclang-rt-14-dev" # scripts/fuzz.sh (make fuzz) only: `deps.sh install fuzz`

missing() {
	local p out=""
	for p in $ALL; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || out="$out $p"
	done
	echo "$out"
}

# "command (pid)" of whoever holds dpkg's or apt's lock, empty when free
# (lslocks is util-linux, on every Debian system).
lock_holder() {
	lslocks -n -o COMMAND,PID,PATH 2>/dev/null |
		awk '$3 ~ "^/var/lib/dpkg/lock|^/var/lib/apt/lists/lock|^/var/cache/apt/archives/lock" { print $1 " (" $2 ")"; exit }'
}

[ "${2:-}" = fuzz ] && ALL="$FUZZ"
case "${1:-check}" in
list)
	echo $ALL
	;;
check)
	m=$(missing)
	if [ -n "$m" ]; then
		echo "missing packages:$m" >&2
		exit 1
	fi
	;;
install)
	m=$(missing)
	[ -z "$m" ] && exit 0
	SUDO=""
	[ "$(id -u)" -ne 0 ] && SUDO="sudo"
	# Do not let the postgresql package create and start a system-wide
	# cluster: ridehail runs its own under var/pg and in the tests.
	if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
		$SUDO mkdir -p /etc/postgresql-common
		echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.conf >/dev/null
	fi
	echo "installing:$m"
	export DEBIAN_FRONTEND=noninteractive
	wait_s=${DEPS_LOCK_WAIT:-600}
	holder=$(lock_holder)
	[ -n "$holder" ] && echo "deps: the dpkg lock is held by $holder: waiting for it (at most $wait_s s)" >&2
	apt=($SUDO apt-get -o DPkg::Lock::Timeout="$wait_s" -y -q)
	if ! "${apt[@]}" install --no-install-recommends $m; then
		[ -n "$(lock_holder)" ] && { echo "deps: the dpkg lock was still held after $wait_s s (DEPS_LOCK_WAIT)" >&2; exit 1; }
		"${apt[@]}" update
		"${apt[@]}" install --no-install-recommends $m
	fi
	;;
*)
	echo "usage: $0 check|install|list" >&2
	exit 2
	;;
esac
