"""From a clone to a service, as docs/operations.md has it: `make install`
into a DESTDIR and the installed binary on the test database, the systemd
unit it installs, the nginx TLS front of conf/nginx/ridehail.conf with a ride
driven through it (REST over HTTPS, the WebSocket over wss://), the client's
address passed by the proxy and believed from it only, and a pg_dump
restored into a fresh cluster that the daemon starts on with every trip
intact."""
import asyncio
import http.client
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from conftest import ADMIN_TOKEN, JWT_SECRET, PGBIN, ROOT, SANITIZE, Daemon, PgCluster, as_pg, free_port, problem, \
    wait_for
from test_dispatch import DROPOFF, PICKUP, accept, command, north, offer_for
from test_foundation import latest_migration
from test_presence import token_of
from wsapp import App, Driver, run


def clean_env(**extra):
    """The environment of a command run the way an operator would: no
    RIDEHAIL_* overrides, and none of the outer make's job server."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RIDEHAIL_") and k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    env.update(extra)
    return env


# ---------------------------------------------------------------- make install

@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    dest = tmp_path_factory.mktemp("destdir")
    r = subprocess.run(["make", "-s", "install", f"DESTDIR={dest}", "PREFIX=/usr", f"SANITIZE={int(SANITIZE)}"],
                       cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    return dest


def test_make_install_puts_everything_in_place(installed):
    d = installed
    for rel in ["usr/sbin/ridehaild", "usr/bin/ridehail-sim", "usr/share/ridehail/sql/001_init.sql",
                "usr/share/ridehail/schemas/trip.matched.v1.schema.json", "usr/share/ridehail/openapi.yaml",
                "usr/share/ridehail/nginx/ridehail.conf", "usr/share/doc/ridehail/operations.md",
                "etc/ridehail/ridehaild.conf", "etc/ridehail/ridehaild.env",
                "usr/lib/systemd/system/ridehaild.service", "usr/lib/sysusers.d/ridehail.conf"]:
        assert (d / rel).is_file(), rel
    assert os.access(d / "usr/sbin/ridehaild", os.X_OK)
    assert (d / "etc/ridehail/ridehaild.env").stat().st_mode & 0o077 == 0, "the secrets file is readable by others"
    assert sorted(p.name for p in (d / "usr/share/ridehail/sql").iterdir() if p.is_file()) == \
        sorted(p.name for p in (ROOT / "sql").glob("[0-9]*.sql"))
    # the function files as the binary applies them: the trip row written out
    installed_fn = d / "usr/share/ridehail/sql/functions"
    assert sorted(p.name for p in installed_fn.iterdir()) == \
        sorted(p.name for p in (ROOT / "sql" / "functions").glob("[0-9]*.sql"))
    view = (installed_fn / "30_trip_view.sql").read_text()
    assert "@TRIP_ROW@" not in view and "d.rating_count, -- 37 rating_count" in view \
        and "t.booked_by IS NOT NULL -- 40 booked" in view
    # the installed binary reads the installed configuration by default
    h = subprocess.run([d / "usr/sbin/ridehaild", "--help"], capture_output=True, text=True)
    assert "(default /etc/ridehail/ridehaild.conf)" in h.stdout, h.stdout
    conf = (d / "etc/ridehail/ridehaild.conf").read_text()
    assert "\nurl = postgresql:///ridehail?host=/var/run/postgresql\n" in conf
    # a second install keeps an edited configuration
    (d / "etc/ridehail/ridehaild.conf").write_text(conf.replace("level = info", "level = warn"))
    r = subprocess.run(["make", "-s", "install", f"DESTDIR={d}", "PREFIX=/usr", f"SANITIZE={int(SANITIZE)}"],
                       cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    assert "level = warn" in (d / "etc/ridehail/ridehaild.conf").read_text()
    assert (d / "etc/ridehail/ridehaild.conf.dist").read_text() == conf


def unit_lines(installed, key):
    text = (installed / "usr/lib/systemd/system/ridehaild.service").read_text()
    return [l.split("=", 1)[1] for l in text.splitlines() if l.startswith(key + "=")]


def in_destdir(installed, argv):
    """A unit's command line with its absolute paths moved under DESTDIR."""
    return [str(installed / a.lstrip("/")) if a.startswith("/usr/") or a.startswith("/etc/") else a
            for a in argv.split()]


def test_installed_daemon_runs_the_units_commands_against_the_test_database(installed, pg, tmp_path):
    db = pg.create_db()
    env = clean_env(RIDEHAIL_DATABASE_URL=pg.url(db), RIDEHAIL_ADMIN_TOKEN=ADMIN_TOKEN,
                    RIDEHAIL_AUTH_JWT_SECRET=JWT_SECRET, RIDEHAIL_HTTP_LISTEN="127.0.0.1:0")
    # ExecStartPre: the configuration check
    (pre,) = unit_lines(installed, "ExecStartPre")
    r = subprocess.run(in_destdir(installed, pre), env=env, capture_output=True, text=True)
    assert r.returncode == 0 and "is valid" in r.stdout, r.stdout + r.stderr
    bad = subprocess.run(in_destdir(installed, pre), env=dict(env, RIDEHAIL_HTTP_LISTEN="nowhere"),
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "LISTEN" in bad.stderr, bad.stderr
    # ExecStart: the daemon, logging to standard error (the journal under systemd)
    (start,) = unit_lines(installed, "ExecStart")
    argv = in_destdir(installed, start)
    d = Daemon(tmp_path, env={k: v for k, v in env.items() if k.startswith("RIDEHAIL_")},
               db_url=pg.url(db), command=argv)
    d.start()
    try:
        assert d.wait_ready().json()["checks"]["schema_version"] == latest_migration()
        assert d.get("/openapi.json").json()["openapi"] == "3.1.0"
        # the installed CLI on the same database
        cli = in_destdir(installed, "/usr/sbin/ridehaild") + ["--config", str(installed / "etc/ridehail/ridehaild.conf")]
        r = subprocess.run(cli + ["admin", "create-driver", "--email", "inst@example.com", "--name", "Ina",
                                  "--password-stdin", "--vehicle-type", "standard", "--make", "Kia", "--model",
                                  "Niro", "--color", "Blue", "--plate", "INST1"],
                           input="installed-pass-1\n", env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["email"] == "inst@example.com"
        d.login("driver", "inst@example.com", "installed-pass-1")
        st = subprocess.run(cli + ["migrate", "--status"], env=env, capture_output=True, text=True)
        assert st.returncode == 0, st.stdout + st.stderr
        # ExecReload: SIGHUP reopens the log, and the daemon goes on
        (reload,) = unit_lines(installed, "ExecReload")
        assert reload == "/bin/kill -HUP $MAINPID"
        d.signal(1)
        time.sleep(0.3)
        assert d.get("/healthz").status == 200
    finally:
        d.stop()


def test_systemd_unit_is_valid_and_hardened(installed, tmp_path):
    exe = shutil.which("systemd-analyze")
    assert exe, "systemd-analyze is missing: scripts/deps.sh installs systemd"
    unit = (installed / "usr/lib/systemd/system/ridehaild.service").read_text()
    for want in ["User=ridehail", "NoNewPrivileges=yes", "ProtectSystem=strict", "LimitNOFILE=",
                 "StandardError=journal", "StateDirectory=ridehail"]:
        assert want in unit, want
    # verify checks every key and that the commands exist: point them at the DESTDIR
    local = tmp_path / "ridehaild.service"
    local.write_text(unit.replace("/usr/sbin/ridehaild", str(installed / "usr/sbin/ridehaild")))
    r = subprocess.run([exe, "verify", str(local)], capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr.strip(), r.stdout + r.stderr
    sec = subprocess.run([exe, "security", "--offline=yes", str(local)], capture_output=True, text=True)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", sec.stdout + sec.stderr)
    assert m, sec.stdout + sec.stderr
    assert float(m.group(1)) <= 2.5, sec.stdout  # systemd: <= 2.9 is "OK", >= 9 "UNSAFE"
    users = (installed / "usr/lib/sysusers.d/ridehail.conf").read_text()
    assert re.search(r"^u ridehail ", users, re.M)


# ---------------------------------------------------------------- nginx, TLS

class Front(Daemon):
    """The daemon as a client reaches it through the nginx front: HTTPS from
    a chosen source address (127.0.0.x); Daemon.request holds every answer
    to docs/openapi.yaml as for direct requests."""

    def __init__(self, daemon, port, ca, source="127.0.0.3"):
        self.daemon = daemon
        self.host, self.port = "127.0.0.1", port
        self.source = source
        self.ctx = ssl.create_default_context(cafile=str(ca))
        self.ws_url = f"wss://127.0.0.1:{port}/v1/ws"
        self.ws_connect_kw = {"ssl": self.ctx, "local_addr": (source, 0)}

    def via(self, source):
        f = Front.__new__(Front)
        f.__dict__.update(self.__dict__)
        f.source = source
        f.ws_connect_kw = {"ssl": self.ctx, "local_addr": (source, 0)}
        return f

    def connection(self, timeout):
        return http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=self.ctx,
                                           source_address=(self.source, 0))


def nginx_site(daemon, http_port, tls_port, cert, key):
    """conf/nginx/ridehail.conf as shipped, with only its addresses, ports
    and certificate paths set for this test."""
    site = (ROOT / "conf" / "nginx" / "ridehail.conf").read_text()
    subs = [(r"server 127\.0\.0\.1:8080;", f"server {daemon.host}:{daemon.port};"),
            (r"listen 80;", f"listen 127.0.0.1:{http_port};"),
            (r"listen 443 ssl;", f"listen 127.0.0.1:{tls_port} ssl;"),
            (r"\n\s*listen \[::\]:\d+( ssl)?;", ""),
            (r"/etc/ssl/ridehail/fullchain\.pem", str(cert)),
            (r"/etc/ssl/ridehail/privkey\.pem", str(key))]
    for pat, rep in subs:
        site, n = re.subn(pat, rep, site)
        assert n >= 1, f"conf/nginx/ridehail.conf no longer has {pat}"
    return site


@pytest.fixture
def nginx_front(make_daemon, tmp_path):
    exe = shutil.which("nginx") or "/usr/sbin/nginx"
    assert os.path.exists(exe), "nginx is missing: scripts/deps.sh installs nginx-light"
    d = make_daemon(env={"RIDEHAIL_HTTP_TRUSTED_PROXIES": "127.0.0.2", "RIDEHAIL_AUTH_LOGIN_PER_ADDRESS": "3"})
    ngx = Path(tempfile.mkdtemp(prefix="rh-nginx-"))
    cert, key = ngx / "cert.pem", ngx / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    http_port, tls_port = free_port(), free_port()
    (ngx / "site.conf").write_text(nginx_site(d, http_port, tls_port, cert, key))
    (ngx / "nginx.conf").write_text(f"""
daemon off;
master_process off;
worker_processes 1;
pid {ngx}/nginx.pid;
error_log {ngx}/error.log info;
events {{ worker_connections 512; }}
http {{
    access_log {ngx}/access.log;
    client_body_temp_path {ngx}/body;
    proxy_temp_path {ngx}/proxy;
    # the proxy's own address towards the daemon, apart from the clients'
    proxy_bind 127.0.0.2;
    include {ngx}/site.conf;
}}
""")
    t = subprocess.run([exe, "-t", "-p", str(ngx), "-c", str(ngx / "nginx.conf")], capture_output=True, text=True)
    assert t.returncode == 0, t.stderr
    proc = subprocess.Popen([exe, "-p", str(ngx), "-c", str(ngx / "nginx.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def up():
            try:
                socket.create_connection(("127.0.0.1", tls_port), timeout=0.5).close()
                return True
            except OSError:
                assert proc.poll() is None, (ngx / "error.log").read_text()
                return False
        wait_for(up, timeout=10, what="nginx to listen")
        f = Front(d, tls_port, cert)
        f.http_port, f.dir = http_port, ngx
        yield f
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(ngx, ignore_errors=True)


def test_a_ride_through_nginx_over_tls(nginx_front, pg):
    f = nginx_front
    d = f.daemon
    # plain HTTP is sent to HTTPS
    c = http.client.HTTPConnection("127.0.0.1", f.http_port, timeout=5)
    c.request("GET", "/v1/estimate")
    r = c.getresponse()
    assert r.status == 301 and r.getheader("Location", "").startswith("https://"), r.status
    c.close()
    assert f.get("/readyz").status == 200

    async def go():
        drv, dhdr = f.driver_session()
        dapp = await Driver.connect(f, token_of(dhdr), drv["id"])  # wss:// through nginx
        await dapp.recv("driver.status.changed")
        await dapp.ping(*north(PICKUP, 600), accuracy_m=5)
        await dapp.go("available")
        rider, rhdr = f.rider_session()
        rapp = await App.connect(f, token_of(rhdr), rider["id"])
        est = f.get(f"/v1/estimate?pickup_lat={PICKUP[0]}&pickup_lng={PICKUP[1]}"
                    f"&dropoff_lat={DROPOFF[0]}&dropoff_lng={DROPOFF[1]}").json()
        r = f.post("/v1/rides", {"pickup": {"lat": PICKUP[0], "lng": PICKUP[1]},
                                 "dropoff": {"lat": DROPOFF[0], "lng": DROPOFF[1]}, "quote_id": est["quote_id"]},
                   headers=dict(rhdr, **{"Idempotency-Key": str(uuid.uuid4())}))
        assert r.status == 201, r
        trip = r.json()
        offer = await offer_for(dapp, trip["id"])
        await accept(dapp, offer)
        assert (await rapp.recv("trip.matched"))["payload"]["driver"]["id"] == drv["id"]
        await command(dapp, "trip.arrived", trip["id"])
        await command(dapp, "trip.started", trip["id"])
        ack, _ = await command(dapp, "trip.completed", trip["id"])
        assert ack["state"] == "COMPLETED"
        # the driver's socket stays up across a quiet spell (nginx passes the
        # daemon's pings and does not time it out first)
        await asyncio.sleep(2.5)
        await dapp.ping(*north(PICKUP, 100), accuracy_m=5)
        done = f.get(f"/v1/rides/{trip['id']}", headers=rhdr).json()
        assert done["state"] == "COMPLETED" and done["fare"]["quoted"] == est["fare"]["total"]
        assert f.get(f"/v1/rides/{trip['id']}/receipt", headers=rhdr).json()["total"] == done["fare"]["final"]
        assert f.post(f"/v1/rides/{trip['id']}/rating", {"stars": 5}, headers=rhdr).status == 201
        await dapp.close()
        await rapp.close()
    run(go())
    # the daemon saw the clients' address, not the proxy's
    assert "127.0.0.3" in d.log()
    assert pg.query(d.db, "SELECT state FROM trips")[0][0] == "COMPLETED"


def test_client_address_is_taken_from_the_proxy_only(nginx_front):
    """auth.login_per_address (3 a minute here) keys on the client nginx
    names: one client using up its attempts does not lock another out,
    though both come through the same proxy; a client that reaches the daemon
    directly cannot pick its address with X-Forwarded-For, nor can one
    behind nginx."""
    f = nginx_front
    d = f.daemon
    bad = {"role": "driver", "email": "nobody@example.com", "password": "wrong-password"}
    a, b = f.via("127.0.0.4"), f.via("127.0.0.5")
    for _ in range(3):
        problem(a.post("/v1/auth/login", bad), 401, "unauthorized")
    problem(a.post("/v1/auth/login", bad), 429, "rate-limited")
    # another client through the same proxy is not limited
    problem(b.post("/v1/auth/login", bad), 401, "unauthorized")
    # a claimed address through nginx is replaced by the real one
    problem(a.post("/v1/auth/login", bad, headers={"X-Forwarded-For": "198.51.100.9"}), 429, "rate-limited")
    # straight to the daemon (not a trusted proxy), the header is ignored
    direct = http.client.HTTPConnection(d.host, d.port, timeout=5, source_address=("127.0.0.6", 0))
    for _ in range(4):
        direct.request("POST", "/v1/auth/login", body=json.dumps(bad),
                       headers={"Content-Type": "application/json", "X-Forwarded-For": "198.51.100.10"})
        r = direct.getresponse()
        body = r.read()
    direct.close()
    assert r.status == 429, body
    log = d.log()
    assert "from 127.0.0.4:0" in log and "from 127.0.0.5:0" in log
    assert "198.51.100" not in log.replace("X-Forwarded-For", "")


# ---------------------------------------------------------------- backups

def test_pg_dump_restored_into_a_fresh_cluster_keeps_every_trip(make_daemon, pg, tmp_path):
    """docs/operations.md's backup of a small city: pg_dump --format=custom,
    then pg_restore into a new cluster; the daemon starts on the restored
    database (schema checked, no migration to run) and every trip reads back
    as it was, in every state, with its history and outbox."""
    d = make_daemon(env={"RIDEHAIL_MATCH_AUTO": "false"})
    admin = {"Authorization": "Bearer " + ADMIN_TOKEN}
    trips = []
    for i, fate in enumerate(["completed", "cancelled", "in_progress", "matched", "searching"]):
        rider, rhdr = d.rider_session()
        r = d.post("/v1/rides", {"pickup": {"lat": PICKUP[0], "lng": PICKUP[1], "address": f"stop {i}"},
                                 "dropoff": {"lat": DROPOFF[0], "lng": DROPOFF[1]}}, headers=rhdr)
        assert r.status == 201, r
        t = r.json()["id"]
        trips.append(t)
        if fate == "cancelled":
            assert d.post(f"/v1/rides/{t}/cancel", {"reason": "changed_mind"}, headers=rhdr).status == 200
            continue
        if fate == "searching":
            continue
        drv = d.create_driver()
        # (as the WebSocket's "available" leaves the driver; test_trips.make_available)
        pg.query(d.db, "UPDATE drivers SET status = 'available', version = version + 1 WHERE id = %s", (drv["id"],))
        r = d.post(f"/v1/rides/{t}/assign", {"driver_id": drv["id"]}, headers=admin)
        assert r.status == 200, r
        if fate == "matched":
            continue
        for step in ("arrived", "start"):
            assert d.post(f"/v1/rides/{t}/{step}", {}, headers=admin).status == 200
        if fate == "completed":
            r = d.post(f"/v1/rides/{t}/complete", {"distance_m": 2500, "duration_s": 400}, headers=admin)
            assert r.status == 200, r
            assert d.post(f"/v1/rides/{t}/rating", {"stars": 4}, headers=rhdr).status == 201
    before = {t: d.get(f"/v1/rides/{t}", headers=admin).json() for t in trips}
    counts_sql = ("SELECT (SELECT count(*) FROM trips), (SELECT count(*) FROM trip_events), "
                  "(SELECT count(*) FROM outbox), (SELECT count(*) FROM drivers), (SELECT count(*) FROM riders)")
    counts = pg.query(d.db, counts_sql)[0]
    d.stop()

    # the backup, as the operations guide takes it
    # (a directory the postgres user can write to: pytest's is private to us)
    dumpdir = Path(tempfile.mkdtemp(prefix="rh-dump-"))
    os.chmod(dumpdir, 0o777)
    dump = dumpdir / "ridehail.dump"
    subprocess.run(as_pg([str(PGBIN / "pg_dump"), "--format=custom", "--file", str(dump),
                          pg.url(d.db)]), check=True, capture_output=True)
    assert dump.stat().st_size > 0

    # a fresh cluster, as after losing the machine: restore, start, compare
    fresh = PgCluster()
    try:
        fresh.query("postgres", "CREATE DATABASE ridehail TEMPLATE template0")
        r = subprocess.run(as_pg([str(PGBIN / "pg_restore"), "--exit-on-error", "--dbname",
                                  fresh.url("ridehail"), str(dump)]), capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert fresh.query("ridehail", counts_sql)[0] == counts
        d2 = make_daemon(db_url=fresh.url("ridehail"), env={"RIDEHAIL_MATCH_AUTO": "false"})
        ready = d2.get("/readyz").json()
        assert ready["checks"]["schema_version"] == latest_migration()
        assert "applying migration" not in d2.log()
        after = {t: d2.get(f"/v1/rides/{t}", headers=admin).json() for t in trips}
        assert after == before
        # and the city goes on: the trip in progress completes on the restored database
        t = trips[2]
        r = d2.post(f"/v1/rides/{t}/complete", {"distance_m": 1000, "duration_s": 200}, headers=admin)
        assert r.status == 200 and r.json()["state"] == "COMPLETED", r
        d2.stop()
    finally:
        fresh.destroy()
        shutil.rmtree(dumpdir, ignore_errors=True)
