#!/usr/bin/env bash
# The local default database: a PostgreSQL 15 + PostGIS cluster under var/pg,
# listening on 127.0.0.1 only, created on first use and reused after.
#
# It trusts no one on the machine: every connection logs in with a password
# (scram-sha-256); the daemon's role, ridehail, owns its database and is not
# a superuser (it cannot read other roles' secrets or run programs on the
# server); the superuser, postgres, is for this script. Both passwords are
# generated at creation into var/pg/pgpass (libpq's password file, readable
# by its owner only), which the URLs below name, so no password is ever on a
# command line. A cluster made by an earlier version of this script (trust
# authentication, ridehail a superuser) is converted at its next start.
#
#   scripts/localdb.sh start     create (once) and start; prints nothing on success
#   scripts/localdb.sh url       the libpq URL of the local database (as ridehail)
#   scripts/localdb.sh admin-url [DB]  the same as the superuser (default database postgres)
#   scripts/localdb.sh passfile  the password file (for PGPASSFILE)
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
super=postgres
passfile=$dir/pgpass

# PostgreSQL refuses to run as root: then the cluster belongs to the
# `postgres` system user (created by the Debian package).
as_owner() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

url() { echo "postgres://$user@127.0.0.1:$port/$dbname?passfile=$passfile"; }
admin_url() { echo "postgres://$super@127.0.0.1:$port/${1:-postgres}?passfile=$passfile"; }

running() { [ -f "$data/postmaster.pid" ] && as_owner "$pgbin/pg_ctl" -D "$data" status >/dev/null 2>&1; }

new_password() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
password_of() { awk -F: -v u="$1" '$4 == u {print $5}' "$passfile"; }

# The password file: one line per role, any port (LOCALDB_PORT may change).
write_passfile() { # superuser-password app-password
	(
		umask 077
		printf '127.0.0.1:*:*:%s:%s\n127.0.0.1:*:*:%s:%s\n' "$super" "$1" "$user" "$2" >"$passfile.tmp"
	)
	mv "$passfile.tmp" "$passfile"
}

# Password authentication only, over TCP on 127.0.0.1 (no Unix socket).
write_hba() {
	as_owner tee "$data/pg_hba.conf" >/dev/null <<HBA
# ridehail local default (scripts/localdb.sh): every connection logs in with
# a password; the passwords are in $passfile.
local all all scram-sha-256
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
HBA
}

# SQL on stdin as the superuser (never on a command line: passwords).
as_super() { psql "$(admin_url "${1:-postgres}")" -qAt -v ON_ERROR_STOP=1 >/dev/null; }

# The daemon's role and database, owned by it, PostGIS created by the
# superuser (the extension is not one an owner may create).
app_role() {
	local pw
	pw=$(password_of "$user")
	as_super <<SQL
DO \$\$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$user') THEN
        CREATE ROLE $user LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
    END IF;
END \$\$;
ALTER ROLE $user WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD '$pw';
SQL
	if ! psql "$(admin_url)" -Atqc "SELECT 1 FROM pg_database WHERE datname = '$dbname'" | grep -q 1; then
		echo "CREATE DATABASE $dbname OWNER $user" | as_super
	fi
	echo "CREATE EXTENSION IF NOT EXISTS postgis" | as_super "$dbname"
}

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
	write_passfile "$(new_password)" "$(new_password)"
	# initdb reads the superuser's password from a file: one the cluster's
	# owner can read, gone once it has
	local pwfile
	pwfile=$(mktemp "$dir/.pw.XXXXXX")
	password_of "$super" >"$pwfile"
	[ "$(id -u)" -eq 0 ] && chown postgres "$pwfile"
	as_owner "$pgbin/initdb" -D "$data" -U "$super" --pwfile="$pwfile" -A scram-sha-256 \
		--encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
		{ rm -f "$pwfile"; cat "$dir/initdb.log" >&2; exit 1; }
	rm -f "$pwfile"
	cat <<CONF | as_owner tee -a "$data/postgresql.conf" >/dev/null
# ridehail local default
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = ''
max_connections = 100
shared_buffers = 128MB
logging_collector = off
password_encryption = scram-sha-256
CONF
	write_hba
}

# A cluster made before: trust on 127.0.0.1, its bootstrap superuser named
# ridehail and owning everything. While it still trusts: a superuser named
# postgres takes the bootstrap role's place (renamed, with a password), a new
# ridehail role (no superuser) gets the database and every object of the
# daemon's schema; then passwords are required.
secure_old_cluster() {
	echo "localdb: securing the cluster in $dir (made by an older localdb.sh): passwords, and ridehail no longer a superuser" >&2
	running || as_owner "$pgbin/pg_ctl" -D "$data" -l "$dir/postgres.log" -w -t 30 start >/dev/null
	local su_pw app_pw trust="postgres://%s@127.0.0.1:$port/%s"
	su_pw=$(new_password)
	app_pw=$(new_password)
	# shellcheck disable=SC2059
	psql "$(printf "$trust" "$user" postgres)" -qAt -v ON_ERROR_STOP=1 \
		-c "CREATE ROLE ridehail_upgrade SUPERUSER LOGIN" >/dev/null
	# shellcheck disable=SC2059
	psql "$(printf "$trust" ridehail_upgrade postgres)" -qAt -v ON_ERROR_STOP=1 >/dev/null <<SQL
ALTER ROLE $user RENAME TO $super;
ALTER ROLE $super PASSWORD '$su_pw';
CREATE ROLE $user LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD '$app_pw';
SQL
	# shellcheck disable=SC2059
	if psql "$(printf "$trust" ridehail_upgrade postgres)" -Atqc \
		"SELECT 1 FROM pg_database WHERE datname = '$dbname'" | grep -q 1; then
		# shellcheck disable=SC2059
		psql "$(printf "$trust" ridehail_upgrade "$dbname")" -qAt -v ON_ERROR_STOP=1 >/dev/null <<SQL
ALTER DATABASE $dbname OWNER TO $user;
-- every object of the daemon's schema the old superuser owned, but the
-- extensions' own (PostGIS stays the superuser's); a sequence owned by a
-- table, a table's index and row type follow their table
DO \$\$
DECLARE
    o record;
BEGIN
    FOR o IN SELECT c.oid::regclass AS name,
                    CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW'
                                   WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END AS kind
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = 'public' AND c.relowner = '$super'::regrole
                AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
                AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                                   AND d.objid = c.oid
                                   AND (d.deptype = 'e' OR (c.relkind = 'S' AND d.deptype IN ('a', 'i'))))
    LOOP
        EXECUTE format('ALTER %s %s OWNER TO $user', o.kind, o.name);
    END LOOP;
    FOR o IN SELECT p.oid::regprocedure AS name,
                    CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END AS kind
               FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname = 'public' AND p.proowner = '$super'::regrole
                AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                                   AND d.objid = p.oid AND d.deptype = 'e')
    LOOP
        EXECUTE format('ALTER %s %s OWNER TO $user', o.kind, o.name);
    END LOOP;
    FOR o IN SELECT t.oid::regtype AS name
               FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
              WHERE n.nspname = 'public' AND t.typowner = '$super'::regrole AND t.typtype IN ('d', 'e', 'r')
                AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass
                                   AND d.objid = t.oid AND d.deptype = 'e')
    LOOP
        EXECUTE format('ALTER TYPE %s OWNER TO $user', o.name);
    END LOOP;
END
\$\$;
SQL
	fi
	# shellcheck disable=SC2059
	psql "$(printf "$trust" "$super" postgres)" -qAt -v ON_ERROR_STOP=1 -c "DROP ROLE ridehail_upgrade" >/dev/null
	write_passfile "$su_pw" "$app_pw"
	write_hba
	echo "password_encryption = scram-sha-256" | as_owner tee -a "$data/postgresql.conf" >/dev/null
	as_owner "$pgbin/pg_ctl" -D "$data" reload >/dev/null
}

start() {
	[ -f "$data/PG_VERSION" ] || create
	[ -s "$passfile" ] || secure_old_cluster
	if ! running; then
		as_owner "$pgbin/pg_ctl" -D "$data" -l "$dir/postgres.log" -w -t 30 start >/dev/null ||
			{ echo "localdb: PostgreSQL did not start; its log:" >&2; tail -n 20 "$dir/postgres.log" >&2; exit 1; }
	fi
	app_role
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
# minutes after initdb. (As the superuser: CHECKPOINT is not the owner's.)
warm() {
	local mb=${1:-1024}
	[[ $mb =~ ^[0-9]+$ ]] || { echo "localdb: warm takes a size in MB, not '$mb'" >&2; exit 2; }
	psql "$(admin_url "$dbname")" -Atq \
		-c "SELECT count(pg_logical_emit_message(false, 'localdb.warm', repeat('x', 1048576))) FROM generate_series(1, $mb)" \
		-c "CHECKPOINT" >/dev/null
}

case "${1:-start}" in
start) start ;;
fresh)
	start
	echo "DROP DATABASE IF EXISTS $dbname WITH (FORCE)" | as_super
	start ;;
warm) warm "${2:-}" ;;
url) url ;;
admin-url) admin_url "${2:-}" ;;
passfile) echo "$passfile" ;;
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
*) echo "usage: $0 start|fresh|url|admin-url [DB]|passfile|warm [MB]|status|stop|destroy" >&2; exit 2 ;;
esac
