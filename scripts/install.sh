#!/usr/bin/env bash
# `make install`: the daemon, its tools, data and a service around them, in the
# usual places under DESTDIR (for packaging; empty installs for real).
#   $PREFIX/sbin/ridehaild          reads $SYSCONFDIR/ridehail/ridehaild.conf by default
#   $PREFIX/bin/ridehail-sim
#   $PREFIX/share/ridehail/         sql/ (the migrations, and in sql/functions/ every function
#                                   as the binary applies it; both compiled into the binary),
#                                   schemas/ (event JSON Schemas), openapi.yaml, asyncapi.yaml,
#                                   nginx/ridehail.conf (the TLS front, docs/operations.md)
#   $PREFIX/share/doc/ridehail/     README.md and docs/*.md
#   $SYSCONFDIR/ridehail/ridehaild.conf   the commented configuration, set up for a service
#                                   (kept if present: the new one goes beside it as .dist)
#   $SYSCONFDIR/ridehail/ridehaild.env    secrets as RIDEHAIL_* variables, mode 0600 (kept if present)
#   $UNITDIR/ridehaild.service      the systemd unit
#   $SYSUSERSDIR/ridehail.conf      the ridehail system user (systemd-sysusers)
# The Makefile passes every variable; see its install target.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
: "${DESTDIR:=}" "${PREFIX:?}" "${SYSCONFDIR:?}" "${UNITDIR:?}" "${SYSUSERSDIR:?}" "${DAEMON:?}" "${SIM:?}" "${FUNCTIONS:?}"
sbindir=$PREFIX/sbin
bindir=$PREFIX/bin
datadir=$PREFIX/share/ridehail
docdir=$PREFIX/share/doc/ridehail
confdir=$SYSCONFDIR/ridehail
d=$DESTDIR

install -d "$d$sbindir" "$d$bindir" "$d$datadir/sql/functions" "$d$datadir/schemas" "$d$datadir/nginx" "$d$docdir" \
	"$d$confdir" "$d$UNITDIR" "$d$SYSUSERSDIR"
install -m 0755 "$DAEMON" "$d$sbindir/ridehaild"
install -m 0755 "$SIM" "$d$bindir/ridehail-sim"
install -m 0644 sql/[0-9]*.sql "$d$datadir/sql/"
install -m 0644 "$FUNCTIONS"/[0-9]*.sql "$d$datadir/sql/functions/"
install -m 0644 schemas/*.json "$d$datadir/schemas/"
install -m 0644 docs/openapi.yaml docs/asyncapi.yaml "$d$datadir/"
install -m 0644 conf/nginx/ridehail.conf "$d$datadir/nginx/ridehail.conf"
install -m 0644 README.md docs/*.md "$d$docdir/"

subst() {
	sed -e "s|@SBINDIR@|$sbindir|g" -e "s|@SYSCONFDIR@|$SYSCONFDIR|g" -e "s|@DOCDIR@|$docdir|g" "$1"
}
subst conf/systemd/ridehaild.service.in > "$d$UNITDIR/ridehaild.service"
chmod 0644 "$d$UNITDIR/ridehaild.service"
install -m 0644 conf/systemd/ridehail.sysusers "$d$SYSUSERSDIR/ridehail.conf"

# The configuration: conf/ridehaild.conf (every key, its default and what it
# does) with what a service needs instead of make run's local default.
conf=$(mktemp)
trap 'rm -f "$conf"' EXIT
{
	cat <<HEAD
# Installed by make install from conf/ridehaild.conf. Secrets do not go here:
# put them in $confdir/ridehaild.env (mode 0600, read by systemd as root) as
#   RIDEHAIL_ADMIN_TOKEN=...  RIDEHAIL_AUTH_JWT_SECRET=...  RIDEHAIL_WEBHOOKS_SECRET=...
# Check a change with: ridehaild --check-config; apply it: systemctl restart ridehaild.
#
HEAD
	sed -e 's|^url = postgres://ridehail@127.0.0.1:54329/ridehail$|# Installed: the local PostgreSQL over its Unix socket, as the ridehail\n# system user (peer authentication; docs/operations.md, Installing).\nurl = postgresql:///ridehail?host=/var/run/postgresql|' \
		-e 's|^map =$|# A service keeps its map in its state directory, e.g. /var/lib/ridehail/city.map.\nmap =|' \
		conf/ridehaild.conf
} > "$conf"
grep -q '^url = postgresql:///ridehail' "$conf" || { echo "install: conf/ridehaild.conf has no default database.url line to set" >&2; exit 1; }
if [ -e "$d$confdir/ridehaild.conf" ] && ! cmp -s "$conf" "$d$confdir/ridehaild.conf"; then
	install -m 0644 "$conf" "$d$confdir/ridehaild.conf.dist"
	echo "install: $d$confdir/ridehaild.conf kept; the new one is ridehaild.conf.dist" >&2
else
	install -m 0644 "$conf" "$d$confdir/ridehaild.conf"
fi
if [ ! -e "$d$confdir/ridehaild.env" ]; then
	(umask 077; cat > "$d$confdir/ridehaild.env" <<'ENV'
# Secrets of ridehaild, as environment variables (systemd's EnvironmentFile=).
# Generate each with: head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'
#RIDEHAIL_ADMIN_TOKEN=
#RIDEHAIL_AUTH_JWT_SECRET=
#RIDEHAIL_WEBHOOKS_SECRET=
ENV
	)
fi
echo "install: ridehaild in $d$sbindir, configuration in $d$confdir, unit in $d$UNITDIR/ridehaild.service" >&2
