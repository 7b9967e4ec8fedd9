#!/usr/bin/env bash
# `make run`: the daemon on the local default. When database.url is the
# built-in default (the local default database,
# postgres://ridehail@127.0.0.1:54329/ridehail), create (once) and start the
# local cluster under var/pg (scripts/localdb.sh; LOCALDB_DIR, LOCALDB_PORT
# and LOCALDB_NAME move it) and point the daemon there, with the password
# file its URL names (var/pg/pgpass). Any other database.url (or
# RIDEHAIL_DATABASE_URL) is used as it is. When no NATS server is configured,
# the local one under var/nats, with its generated credential. Without
# routing.map, the West Oakland map (scripts/localmap.sh).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
conf=${CONFIG:-conf/ridehaild.conf}
bin=${RIDEHAILD:-bin/ridehaild}

url=$("$bin" --config "$conf" --get database.url)
# the default as localdb.sh builds it with none of its LOCALDB_* overrides
default=$(env -u LOCALDB_DIR -u LOCALDB_PORT -u LOCALDB_NAME scripts/localdb.sh url)
default=${default%%\?*} # without its password file
if [ "$url" = "$default" ]; then
	scripts/localdb.sh start
	export RIDEHAIL_DATABASE_URL=$(scripts/localdb.sh url)
	echo "run: using the local database $RIDEHAIL_DATABASE_URL (make stop-db stops it, make clean-db removes it)" >&2
fi
sink=$("$bin" --config "$conf" --get events.sink)
nats=$("$bin" --config "$conf" --get events.url)
if [ "$sink" = nats ] && [ -z "$nats" ]; then
	scripts/localnats.sh start
	export RIDEHAIL_EVENTS_URL=$(scripts/localnats.sh url)
	# its generated credential (the local server takes no anonymous client)
	export RIDEHAIL_EVENTS_CREDENTIALS=$(scripts/localnats.sh credentials)
	echo "run: publishing events to the local nats-server $RIDEHAIL_EVENTS_URL (make stop-nats stops it)" >&2
fi
token=$("$bin" --config "$conf" --get admin.token)
if [ -z "$token" ]; then
	mkdir -p var
	if [ ! -s var/admin.token ]; then
		(umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > var/admin.token)
	fi
	export RIDEHAIL_ADMIN_TOKEN=$(cat var/admin.token)
	echo "run: admin API token in var/admin.token" >&2
fi
secret=$("$bin" --config "$conf" --get auth.jwt_secret)
if [ -z "$secret" ]; then
	mkdir -p var
	# (the daemon, and every command run from here, read it by themselves)
	(umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > var/jwt.secret)
	echo "run: access tokens signed with the key in var/jwt.secret" >&2
fi
map=$("$bin" --config "$conf" --get routing.map)
if [ -z "$map" ]; then
	export RIDEHAIL_ROUTING_MAP=$(scripts/localmap.sh)
	echo "run: road map $RIDEHAIL_ROUTING_MAP (West Oakland, from Debian's python-osmnx-doc)" >&2
fi
exec "$bin" --config "$conf" "$@"
