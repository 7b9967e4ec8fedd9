#!/usr/bin/env bash
# make bench-abuse: what hostile clients cost the daemon, and whether honest
# ones still get through (bench/abuse.py plays the attacks).
#
#   slowloris  SLOW_CONNS connections (from 16 addresses), each trickling a
#              request head that never ends, held inside http.header_timeout;
#              the daemon's resident memory per such connection (KiB), vs
#              nginx (one worker, the peer's ceiling) held the same way:
#              slowloris_kib_per_conn (goal <= 8), slowloris_vs_nginx.
#   flood      the daemon under an open-file limit of FLOOD_NOFILE; a flood
#              from 64 addresses keeps open every connection it can (1.5x
#              the limit, reopening what is closed) while a prober asks
#              GET /healthz on a new connection every 100 ms for
#              FLOOD_SECONDS: flood_healthz_ok_pct (goal 100).
#   login      the production password cost (argon2id, 2 passes, 64 MiB, one
#              thread); wrong passwords from 64 addresses, each at 25 a
#              minute (under auth.login_per_address), sent without waiting,
#              while a real user logs in LOGIN_TRIES times, once a second:
#              login_ok_pct_under_flood (goal 100), with its times.
#
# The daemon runs pinned to CPU 0, the attacks on CPU 1, PostgreSQL in a
# throwaway cluster. slowloris is the median of RUNS. QUICK=1: 1,000
# slowloris connections, a 2,048 descriptor limit, 5 s of flood, 8 logins,
# one run.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
if [ "${QUICK:-0}" = 1 ]; then
	: "${SLOW_CONNS:=1000}" "${FLOOD_NOFILE:=2048}" "${FLOOD_SECONDS:=5}" "${LOGIN_TRIES:=8}" "${RUNS:=1}"
fi
SLOW_CONNS=${SLOW_CONNS:-3000}
FLOOD_NOFILE=${FLOOD_NOFILE:-4096}
FLOOD_SECONDS=${FLOOD_SECONDS:-10}
LOGIN_TRIES=${LOGIN_TRIES:-20}
RUNS=${RUNS:-3}

ulimit -n "$(ulimit -Hn)"
make -s all
PY=${PYTHON:-/usr/bin/python3}
LOAD=(taskset -c 1 "$PY" bench/abuse.py)

tmp=$(mktemp -d /tmp/ridehail-bench-abuse.XXXXXX)
chmod 755 "$tmp"
daemon_pid=""
nginx_pid=""
cleanup() {
	[ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
	[ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null && wait "$nginx_pid" 2>/dev/null
	LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$dbport scripts/localdb.sh destroy >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f\n", a / b; else print "n/a" }'; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
field() { awk -F= -v k="$1" '$1 == k {print $2}' "$2"; }

dbport=$(free_port)
trap cleanup EXIT
LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$dbport scripts/localdb.sh start
dburl=$(LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$dbport scripts/localdb.sh url)
admin=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
port=$(free_port)

start_daemon() { # [prlimit args] -- extra env
	local pre=()
	while [ $# -gt 0 ] && [ "$1" != -- ]; do pre+=("$1"); shift; done
	[ $# -gt 0 ] && shift
	env RIDEHAIL_DATABASE_URL="$dburl" RIDEHAIL_HTTP_LISTEN="127.0.0.1:$port" RIDEHAIL_ADMIN_TOKEN="$admin" \
		RIDEHAIL_AUTH_JWT_SECRET="$secret" RIDEHAIL_LOG_LEVEL=warn RIDEHAIL_EVENTS_SINK=none "$@" \
		"${pre[@]}" taskset -c 0 bin/ridehaild --config conf/ridehaild.conf 2>>"$tmp/daemon.log" &
	daemon_pid=$!
	for _ in $(seq 200); do
		curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && return 0
		sleep 0.1
	done
	echo "bench: the daemon did not become ready; its log:" >&2
	tail -20 "$tmp/daemon.log" >&2
	exit 1
}
stop_daemon() { kill "$daemon_pid" && wait "$daemon_pid" 2>/dev/null || true; daemon_pid=""; }

# held slowloris connections: KiB of resident memory each, for the process pid
slowloris_kib() { # pid port
	local pid=$1 p=$2 out=$tmp/slow.out r0 r1 n
	curl -s "http://127.0.0.1:$p/healthz" >/dev/null || true
	sleep 0.5
	r0=$(rss_kb "$pid")
	"${LOAD[@]}" slowloris --port "$p" --conns "$SLOW_CONNS" --srcs 16 --hold 3 >"$out" &
	local lp=$!
	for _ in $(seq 300); do grep -q ready "$out" && break; sleep 0.05; done
	sleep 1.5
	r1=$(rss_kb "$pid")
	wait "$lp"
	n=$(field slowloris_alive "$out")
	awk -v a="$r0" -v b="$r1" -v n="$n" 'BEGIN { if (n > 0) printf "%.2f\n", (b - a) / n; else print "n/a" }'
}

# ---- slowloris
start_daemon --
ours=()
for _ in $(seq "$RUNS"); do ours+=("$(slowloris_kib "$daemon_pid" "$port")"); sleep 6; done
stop_daemon
echo "slowloris_conns=$SLOW_CONNS"
slow=$(printf '%s\n' "${ours[@]}" | median)
echo "slowloris_kib_per_conn=$slow"
if command -v nginx >/dev/null; then
	nport=$(free_port)
	mkdir -p "$tmp/nginx"
	cat >"$tmp/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log;
worker_rlimit_nofile $((SLOW_CONNS * 2 + 100));
events { worker_connections $((SLOW_CONNS + 200)); }
http {
  access_log off;
  client_header_timeout 30s;
  server { listen 127.0.0.1:$nport; location / { return 200 'ok'; } }
}
CONF
	taskset -c 0 nginx -c "$tmp/nginx/nginx.conf" -p "$tmp/nginx" &
	nginx_pid=$!
	for _ in $(seq 50); do curl -s "http://127.0.0.1:$nport/" >/dev/null && break; sleep 0.1; done
	worker=$(pgrep -P "$nginx_pid" | head -1)
	theirs=()
	for _ in $(seq "$RUNS"); do theirs+=("$(slowloris_kib "$worker" "$nport")"); sleep 1; done
	kill "$nginx_pid" && wait "$nginx_pid" 2>/dev/null || true
	nginx_pid=""
	peer=$(printf '%s\n' "${theirs[@]}" | median)
	echo "nginx_slowloris_kib_per_conn=$peer"
	echo "slowloris_vs_nginx=$(ratio "$slow" "$peer")"
else
	echo "# note: nginx is absent; its slowloris figure and the ratio are skipped"
fi

# ---- flood: every descriptor it can get, /healthz for everyone else
start_daemon prlimit --nofile="$FLOOD_NOFILE:$FLOOD_NOFILE" --
cap=$(curl -s "http://127.0.0.1:$port/metrics" | awk '$1 == "ridehail_client_sockets_max" {print $2}')
"${LOAD[@]}" flood --port "$port" --srcs 64 --target $((FLOOD_NOFILE * 3 / 2)) --seconds "$FLOOD_SECONDS" \
	>"$tmp/flood.out"
rejected=$(curl -s "http://127.0.0.1:$port/metrics" | awk '$1 ~ /^ridehail_http_connections_rejected_total/ {s += $2} END {print s + 0}')
reclaimed=$(curl -s "http://127.0.0.1:$port/metrics" | awk '$1 == "ridehail_http_connections_reclaimed_total" {print $2}')
stop_daemon
echo "flood_nofile=$FLOOD_NOFILE"
echo "flood_conn_cap=$cap"
grep -E '^flood_' "$tmp/flood.out"
echo "flood_rejected=$rejected"
echo "flood_reclaimed=$reclaimed"
grep -q "Too many open files" "$tmp/daemon.log" && echo "# note: the daemon logged EMFILE during the flood"

# ---- login flood at the production password cost
start_daemon -- RIDEHAIL_AUTH_PASSWORD_OPSLIMIT=2 RIDEHAIL_AUTH_PASSWORD_MEMLIMIT=64MiB RIDEHAIL_AUTH_HASH_THREADS=1
email="real-user-$RANDOM@example.com"
curl -sf -o /dev/null -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
	-d "{\"email\":\"$email\",\"name\":\"Real User\",\"password\":\"the-real-password\"}" \
	"http://127.0.0.1:$port/v1/admin/riders"
"${LOAD[@]}" loginflood --port "$port" --srcs 64 --per-min 25 --tries "$LOGIN_TRIES" --email "$email" \
	--password the-real-password >"$tmp/login.out"
overloaded=$(curl -s "http://127.0.0.1:$port/metrics" | awk '$1 == "ridehail_auth_logins_total{result=\"overloaded\"}" {print $2}')
stop_daemon
cat "$tmp/login.out"
echo "login_flood_overloaded=${overloaded:-0}"
