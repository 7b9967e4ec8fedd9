#!/usr/bin/env bash
# The local default database: a PostgreSQL 15 + PostGIS cluster under var/pg,
# listening on 127.0.0.1 only, created on first use and reused after.
#   scripts/localdb.sh start     create (once) and start; prints nothing on success
#   scripts/localdb.sh url       the libpq URL of the local database
#   scripts/localdb.sh warm [MB] bring a new cluster's WAL to how a cluster
#                                in service has it (see warm() below)
#   scripts/localdb.sh fresh     start, and create the database anew (dropped first if there)
#   scripts/localdb.sh status | stop | destroy
# LOCALDB_DIR (default <repo>/var/pg), LOCALDB_PORT (default 54329) and
# LOCALDB_NAME (the database, default ridehail) override. The defaults are
# database.url's built-in default (src/core/config_table.c): keep them equal.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
dir=${LOCALDB_DIR:-$repo/var/pg}
port=${LOCALDB_PORT:-54329}
pgbin=/usr/lib/postgresql/15/bin
data=$dir/data
user=ridehail
dbname=${LOCALDB_NAME:-ridehail}
[[ $dbname =~ ^[a-z_][a-z0-9_]*$ ]] || { echo "localdb: LOCALDB_NAME must be a lower-case SQL name, not '$dbname'" >&2; exit 2; }

# PostgreSQL refuses to run as root: then the cluster belongs to the
# `postgres` system user (created by the Debian package).
as_owner() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

url() { echo "postgres://$user@127.0.0.1:$port/$dbname"; }

running() { [ -f "$data/postmaster.pid" ] && as_owner "$pgbin/pg_ctl" -D "$data" status >/dev/null 2>&1; }

create() {
	mkdir -p "$dir"
	if [ "$(id -u)" -eq 0 ]; then
		chown postgres "$dir"
		if ! runuser -u postgres -- test -w "$dir"; then
			# The postgres user cannot reach the repo (e.g. under /root): keep the
			# cluster in a directory it can use and link it from var/pg.
			alt=/var/tmp/ridehail-pg-$(echo "$repo" | md5sum | cut -c1-12)
			mkdir -p "$alt"
			chown postgres "$alt"
			rmdir "$dir" 2>/dev/null || true
			ln -sfn "$alt" "$dir"
		fi
	fi
	echo "localdb: creating a PostgreSQL cluster in $dir (port $port)" >&2
	as_owner "$pgbin/initdb" -D "$data" -U "$user" -A trust --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
		{ cat "$dir/initdb.log" >&2; exit 1; }
	cat >>"$data/postgresql.conf" <<CONF
# ridehail local default
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = ''
max_connections = 100
shared_buffers = 128MB
logging_collector = off
CONF
}

start() {
	[ -f "$data/PG_VERSION" ] || create
	if ! running; then
		as_owner "$pgbin/pg_ctl" -D "$data" -l "$dir/postgres.log" -w -t 30 start >/dev/null ||
			{ echo "localdb: PostgreSQL did not start; its log:" >&2; tail -n 20 "$dir/postgres.log" >&2; exit 1; }
	fi
	if ! psql -h 127.0.0.1 -p "$port" -U "$user" -d postgres -Atqc "SELECT 1 FROM pg_database WHERE datname = '$dbname'" | grep -q 1; then
		psql -h 127.0.0.1 -p "$port" -U "$user" -d postgres -qc "CREATE DATABASE $dbname" >/dev/null
	fi
}

# A new cluster has no spare WAL segments: each time the WAL reaches a new
# 16 MB segment, the backend that gets there fills the whole file with
# zeros and fsyncs it while holding the WAL write lock, and every commit
# waits meanwhile (50-80 ms seen here, every ~16 MB of WAL). A cluster that
# has been in service for a few checkpoints renames old segments for reuse
# instead, and does not stall. warm writes MB (default 1024) of WAL as
# logical messages (no table, no data pages) and checkpoints, so that the
# next MB of WAL go to recycled segments: the benchmarks run it before they
# measure, so that their figures are a database in service, not the first
# minutes after initdb.
warm() {
	local mb=${1:-1024}
	[[ $mb =~ ^[0-9]+$ ]] || { echo "localdb: warm takes a size in MB, not '$mb'" >&2; exit 2; }
	psql "$(url)" -Atq \
		-c "SELECT count(pg_logical_emit_message(false, 'localdb.warm', repeat('x', 1048576))) FROM generate_series(1, $mb)" \
		-c "CHECKPOINT" >/dev/null
}

case "${1:-start}" in
start) start ;;
fresh)
	start
	psql -h 127.0.0.1 -p "$port" -U "$user" -d postgres -qc "DROP DATABASE IF EXISTS $dbname WITH (FORCE)" >/dev/null
	start ;;
warm) warm "${2:-}" ;;
url) url ;;
status)
	if running; then echo "running on 127.0.0.1:$port ($dir)"; else echo "not running ($dir)"; exit 1; fi ;;
stop)
	running && as_owner "$pgbin/pg_ctl" -D "$data" -m fast -w stop >/dev/null
	exit 0 ;;
destroy)
	running && as_owner "$pgbin/pg_ctl" -D "$data" -m fast -w stop >/dev/null || true
	if [ -L "$dir" ]; then rm -rf "$(readlink "$dir")"; fi
	rm -rf "$dir"
	echo "localdb: removed $dir" ;;
*) echo "usage: $0 start|fresh|url|warm [MB]|status|stop|destroy" >&2; exit 2 ;;
esac
