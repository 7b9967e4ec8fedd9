#!/usr/bin/env bash
# make bench-events: the outbox relay end to end, outbox row commit ->
# JetStream ack -> row marked, against a real nats-server -js.
#
#   events_per_s       a backlog of DRAIN rows committed at once, published
#                      as fast as the relay goes (rows per second until the
#                      backlog is empty; median of RUNS)
#   event_lag_p99_ms   rows committed at RATE/s (batches of 50 every 10 ms,
#                      one trip each, so the relay can batch them) for
#                      WINDOW seconds; p99 of published_at - occurred_at,
#                      i.e. commit to mark (the ack precedes the mark)
#
# Rows are written straight into the outbox by a load generator (there is
# no booking benchmark yet whose load this could ride on). The daemon runs
# on CPU 0, PostgreSQL, NATS and the load generator wherever the kernel puts
# them. Goal: 5,000 events/s with p99 lag <= 50 ms.
# Knobs: DRAIN (20000), RATE (5000), WINDOW (10 s), RUNS (3). QUICK=1 (make
# bench QUICK=1): a 5,000-row backlog, one 2 s window at the same rate.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
if [ "${QUICK:-0}" = 1 ]; then
	: "${DRAIN:=5000}" "${WINDOW:=2}" "${RUNS:=1}"
fi
DRAIN=${DRAIN:-20000}
RATE=${RATE:-5000}
WINDOW=${WINDOW:-10}
RUNS=${RUNS:-3}
make -s all

tmp=$(mktemp -d /tmp/ridehail-bench-events.XXXXXX)
chmod 755 "$tmp"
daemon_pid=""
cleanup() {
	[ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
	LOCALNATS_DIR=$tmp/nats LOCALNATS_PORT=$natsport scripts/localnats.sh destroy >/dev/null 2>&1 || true
	LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$dbport scripts/localdb.sh destroy >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

dbport=$(free_port)
natsport=$(free_port)
trap cleanup EXIT
LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$dbport scripts/localdb.sh start
LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$dbport scripts/localdb.sh warm # WAL as in service: see localdb.sh
dburl=$(LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$dbport scripts/localdb.sh url)
LOCALNATS_DIR=$tmp/nats LOCALNATS_PORT=$natsport scripts/localnats.sh start
natsurl=$(LOCALNATS_DIR=$tmp/nats LOCALNATS_PORT=$natsport scripts/localnats.sh url)
port=$(free_port)

env RIDEHAIL_DATABASE_URL="$dburl" RIDEHAIL_HTTP_LISTEN="127.0.0.1:$port" RIDEHAIL_EVENTS_URL="$natsurl" \
	RIDEHAIL_LOG_LEVEL=warn taskset -c 0 bin/ridehaild --config conf/ridehaild.conf 2>>"$tmp/daemon.log" &
daemon_pid=$!
for _ in $(seq 100); do
	curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
	sleep 0.1
done
curl -sf "http://127.0.0.1:$port/readyz" >/dev/null || { tail -20 "$tmp/daemon.log" >&2; exit 1; }

load() { # mode drain|rate
	DBURL=$dburl MODE=$1 DRAIN=$DRAIN RATE=$RATE WINDOW=$WINDOW /usr/bin/python3 - <<'PY'
import os, time, psycopg2
conn = psycopg2.connect(os.environ["DBURL"])
conn.autocommit = False
cur = conn.cursor()
INSERT = """INSERT INTO outbox (event_type, producer, correlation_id, aggregate_id, aggregate_seq, payload)
            SELECT 'trip.bench', 'bench', a, a, 1, jsonb_build_object('n', g)
            FROM (SELECT gen_random_uuid() AS a, g FROM generate_series(1, %s) g) x"""
def wait_empty(timeout=300):
    end = time.time() + timeout
    while time.time() < end:
        cur.execute("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        n = cur.fetchone()[0]
        conn.commit()
        if n == 0:
            return
        time.sleep(0.01)
    raise SystemExit("the relay did not drain the outbox")
wait_empty()
cur.execute("SELECT COALESCE(max(id), 0) FROM outbox")
start_id = cur.fetchone()[0]
conn.commit()
if os.environ["MODE"] == "drain":
    n = int(os.environ["DRAIN"])
    cur.execute(INSERT, (n,))
    conn.commit()
    t0 = time.time()
    wait_empty()
    print(f"{n / (time.time() - t0):.0f}")
else:
    rate, window = int(os.environ["RATE"]), float(os.environ["WINDOW"])
    per = max(1, rate // 100)
    t0 = time.time()
    k = 0
    while time.time() - t0 < window:
        cur.execute(INSERT, (per,))
        conn.commit()
        k += 1
        delay = t0 + k * 0.01 - time.time()
        if delay > 0:
            time.sleep(delay)
    wait_empty()
    cur.execute("""SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM published_at - occurred_at)),
                          count(*) FROM outbox WHERE id > %s""", (start_id,))
    p99, n = cur.fetchone()
    conn.commit()
    print(f"{p99 * 1000:.1f} {n / window:.0f}")
PY
}

eps=""
lag=""
offered=""
for _ in $(seq "$RUNS"); do
	eps="$eps $(load drain)"
	read -r l o < <(load rate)
	lag="$lag $l"
	offered="$offered $o"
done
echo "events_per_s=$(echo $eps | tr ' ' '\n' | median)"
echo "event_lag_p99_ms=$(echo $lag | tr ' ' '\n' | median)"
echo "event_lag_offered_per_s=$(echo $offered | tr ' ' '\n' | median)"
