#!/usr/bin/env bash
# Instructions per item of the database's batch functions, counted with
# callgrind on a single-user backend: trip_requests() creating trips and
# trip_transitions() matching them, in batches of 32 and alone. Unlike CPU
# time, an instruction count does not move with the machine's other load, so
# it compares two versions of the SQL on a shared machine to the percent.
#
# A throwaway cluster is migrated and filled once (bench/trip_sql_ir.py:
# riders, drivers, trips made by trip_requests()), then stopped; each case
# runs twice on a fresh copy of it, under valgrind in `postgres --single`:
# its warm-up batch alone, then the warm-up and N batches. The difference,
# over the items, is what one item costs once plans and caches are warm. Each
# line is its own transaction and a plain query (its JSON parsed as a
# literal, as the daemon's parameter is), so "alone" includes a commit and
# the statement's parse. What the kernel does (the WAL's fsync) is not
# counted.
#
#   trip_sql_ir_{request,match}_b{32,1}   instructions per new trip / MATCHED
#   trip_sql_ir_steps_b32                 per transition after MATCHED (a
#                                         quarter each ARRIVED, IN_PROGRESS,
#                                         COMPLETED and CANCELLED)
#   trip_sql_ir_peer                      the peer: one row's state change and
#                                         its outbox row (UPDATE ... RETURNING
#                                         feeding an INSERT, one commit), the
#                                         least a transition with an outbox is
#   trip_sql_ir_match_b1_vs_peer          how many peers one lone MATCHED costs
#
# IR_PROFILE=DIR keeps each run's callgrind file there (<case>.<n>.cg, n = 0
# the warm-up alone), for callgrind_annotate: where a case's instructions go.
#
# Needs valgrind (skipped with a note without it); takes about a minute.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
pgbin=/usr/lib/postgresql/15/bin
if ! command -v valgrind >/dev/null; then
	echo "# note: valgrind is not installed: the trip_sql_ir figures are skipped"
	exit 0
fi
make -s all
tmp=$(mktemp -d /tmp/ridehail-bench-ir.XXXXXX)
chmod 755 "$tmp"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() {
	LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$port scripts/localdb.sh destroy >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT
LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$port scripts/localdb.sh start
url=$(LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$port scripts/localdb.sh url)
RIDEHAIL_DATABASE_URL=$url RIDEHAIL_LOG_LEVEL=warn bin/ridehaild migrate >/dev/null
mkdir "$tmp/cases"
"${PYTHON:-/usr/bin/python3}" bench/trip_sql_ir.py prepare "$url" "$tmp/cases"
LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$port scripts/localdb.sh stop >/dev/null
data=$(readlink -f "$tmp/pg")/data
owner=$(stat -c %U "$data")
as_owner() { if [ "$(id -u)" -eq 0 ] && [ "$owner" != root ]; then runuser -u "$owner" -- "$@"; else "$@"; fi; }

# instructions of one file's statements (and of the backend's start and end)
count() { # file
	local cg=/dev/null
	if [ -n "${IR_PROFILE:-}" ]; then
		mkdir -p "$IR_PROFILE"
		cg=$(readlink -f "$IR_PROFILE")/$(basename "$1" .sql).cg
		touch "$cg" && chmod 666 "$cg"
	fi
	rm -rf "$tmp/w"
	cp -a "$data" "$tmp/w"
	chown -R "$owner" "$tmp/w"
	as_owner valgrind --tool=callgrind --callgrind-out-file="$cg" "$pgbin/postgres" --single -D "$tmp/w" \
		ridehail <"$1" >"$tmp/out" 2>"$tmp/err"
	if grep -q 'ERROR' "$tmp/out" "$tmp/err" || grep -q 'count = "[1-9]' "$tmp/out"; then
		echo "bench: $(basename "$1") did not run cleanly:" >&2
		grep -m3 -A2 'ERROR\|count = "[1-9]' "$tmp/out" "$tmp/err" >&2
		exit 1
	fi
	sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$tmp/err"
}
declare -A per
for c in request_b32 match_b32 steps_b32 request_b1 match_b1 peer; do
	n=$(ls "$tmp/cases/$c".*.sql | sed 's/.*\.\([0-9]*\)\.sql/\1/' | sort -n | tail -1)
	b=${c##*_b}
	[ "$c" = peer ] && b=1
	a=$(count "$tmp/cases/$c.0.sql")
	z=$(count "$tmp/cases/$c.$n.sql")
	per[$c]=$(((z - a) / (n * b)))
done
echo "trip_sql_ir_request_b32=${per[request_b32]}"
echo "trip_sql_ir_match_b32=${per[match_b32]}"
echo "trip_sql_ir_steps_b32=${per[steps_b32]}"
echo "trip_sql_ir_request_b1=${per[request_b1]}"
echo "trip_sql_ir_match_b1=${per[match_b1]}"
echo "trip_sql_ir_peer=${per[peer]}"
echo "trip_sql_ir_match_b1_vs_peer=$(awk -v a="${per[match_b1]}" -v b="${per[peer]}" 'BEGIN { printf "%.2f\n", a / b }')"
