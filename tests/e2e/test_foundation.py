"""The foundation: HTTP edge behaviour, health, metrics, database resilience,
lifecycle and configuration errors, against the real daemon and PostgreSQL."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import RIDEHAILD, ROOT, SANITIZE, Daemon, PgCluster, free_port, problem, wait_for

ADMIN = "admin-token-for-tests-0123456789"


def latest_migration():
    return max(int(p.name.split("_")[0]) for p in (ROOT / "sql").glob("[0-9]*.sql"))


# ---------------------------------------------------------------- health

def test_healthz(daemon):
    r = daemon.get("/healthz")
    assert r.status == 200
    assert r.json() == {"status": "ok"}
    assert r.headers["content-type"] == "application/json"
    assert re.fullmatch(r"[0-9a-f]{16}", r.headers["x-request-id"])


def test_readyz_reports_schema(daemon):
    r = daemon.get("/readyz")
    assert r.status == 200, r
    body = r.json()
    assert body["status"] == "ready"
    assert body["checks"]["schema_version"] == latest_migration()


def test_migrations_recorded_once(daemon, pg):
    rows = pg.query(daemon.db, "SELECT version, name, checksum FROM schema_migrations ORDER BY version")
    files = sorted((ROOT / "sql").glob("[0-9]*.sql"))
    assert [r[0] for r in rows] == [int(p.name.split("_")[0]) for p in files]
    assert all(len(r[2]) == 16 for r in rows)
    assert pg.query(daemon.db, "SELECT extname FROM pg_extension WHERE extname = 'postgis'") == [("postgis",)]


def test_metrics_parse_as_prometheus(daemon):
    daemon.get("/healthz")
    daemon.get("/no/such/thing")
    r = daemon.get("/metrics")
    assert r.status == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(r.body.decode())}
    for name in ("ridehail_build_info", "ridehail_uptime_seconds", "ridehail_http_connections",
                 "ridehail_http_requests", "ridehail_http_request_duration_seconds", "ridehail_db_pool_connections",
                 "ridehail_db_queries", "ridehail_db_queue_depth", "ridehail_http_requests_in_flight",
                 "ridehail_memory_allocated_bytes", "ridehail_resident_memory_bytes"):
        assert name in families, name
    samples = [s for s in families["ridehail_http_requests"].samples if s.name == "ridehail_http_requests_total"]
    assert any(s.labels == {"route": "/healthz", "method": "GET", "status": "200"} and s.value >= 1 for s in samples)
    assert any(s.labels["route"] == "unmatched" and s.labels["status"] == "404" for s in samples)
    ready = [s for s in families["ridehail_db_pool_connections"].samples if s.labels.get("state") == "ready"]
    assert ready and ready[0].value >= 1
    build = families["ridehail_build_info"].samples[0]
    assert build.labels["version"] == (ROOT / "VERSION").read_text().strip()


# ---------------------------------------------------------------- HTTP edge

def test_unknown_route_404(daemon):
    body = problem(daemon.get("/v1/nothing-here"), 404, "not-found")
    assert body["instance"] == "/v1/nothing-here"


def test_wrong_method_405_with_allow(daemon):
    r = daemon.request("DELETE", "/healthz")
    problem(r, 405, "method-not-allowed")
    assert r.headers["allow"] == "GET, HEAD"


def test_head_and_options(daemon):
    r = daemon.request("HEAD", "/healthz")
    assert r.status == 200 and r.body == b""
    assert int(r.headers["content-length"]) == len(b'{"status":"ok"}')
    r = daemon.request("OPTIONS", "/healthz")
    assert r.status == 204 and r.headers["allow"] == "GET, HEAD"


def test_unknown_method_501(daemon):
    out = daemon.raw(b"BREW /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 501 ")
    assert b"not-implemented" in out


def test_malformed_request_line_400(daemon):
    out = daemon.raw(b"GET /healthz\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 ")
    assert b"application/problem+json" in out and b"Connection: close" in out


def test_smuggling_attempt_refused(daemon):
    out = daemon.raw(b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 ")
    assert out.count(b"HTTP/1.1") == 1


def test_missing_host_400(daemon):
    assert daemon.raw(b"GET /healthz HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400 ")


def test_oversized_body_413(daemon):
    big = b"x" * (64 * 1024 + 1)
    r = daemon.request("PUT", "/v1/admin/log", body=big, headers={"Content-Type": "application/json"})
    body = problem(r, 413, "body-too-large")
    assert "65536" in body["detail"]


def test_oversized_chunked_body_413(daemon):
    chunk = b"%x\r\n" % 40000 + b"y" * 40000 + b"\r\n"
    out = daemon.raw(b"PUT /v1/admin/log HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 2 +
                     b"0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 413 "), out[:200]


def test_oversized_headers_431(daemon):
    out = daemon.raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 431 "), out[:100]


def test_long_request_line_414(daemon):
    out = daemon.raw(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 414 "), out[:100]


def test_bad_percent_encoding_400(daemon):
    problem(daemon.get("/healthz?x=%zz"), 400, "bad-request")


def test_keepalive_and_pipelining(daemon):
    reqs = b"".join(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: pipe-%d\r\n\r\n" % i for i in range(5))
    with socket.create_connection((daemon.host, daemon.port), timeout=3) as s:
        s.sendall(reqs)
        out = b""
        while out.count(b"HTTP/1.1 200") < 5:
            chunk = s.recv(65536)
            assert chunk, out
            out += chunk
    ids = re.findall(rb"X-Request-Id: (pipe-\d)", out)
    assert ids == [b"pipe-%d" % i for i in range(5)]  # in order


def test_chunked_body_and_expect_continue(daemon):
    with socket.create_connection((daemon.host, daemon.port), timeout=3) as s:
        s.sendall(b"PUT /v1/admin/log HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Expect: 100-continue\r\nContent-Length: 17\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 100 Continue")
        s.sendall(b'{"level": "info"}')
        # no credential: the body was read and the request refused with 401
        assert s.recv(4096).startswith(b"HTTP/1.1 401 ")


def test_request_timeout_408(make_daemon):
    d = make_daemon(env={"RIDEHAIL_HTTP_REQUEST_TIMEOUT": "300ms"})
    with socket.create_connection((d.host, d.port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finished
        t0 = time.time()
        out = s.recv(4096)
        assert out.startswith(b"HTTP/1.1 408 "), out
        assert time.time() - t0 < 3


def test_connection_limit_503(make_daemon):
    d = make_daemon(env={"RIDEHAIL_HTTP_MAX_CONNECTIONS": "3"})
    held = [socket.create_connection((d.host, d.port)) for _ in range(3)]
    try:
        time.sleep(0.2)
        out = d.raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 503 "), out
        assert b"overloaded" in out
    finally:
        for s in held:
            s.close()
    time.sleep(0.2)
    assert d.get("/healthz").status == 200  # recovers once connections close


# ---------------------------------------------------------------- admin API and JSON bodies

def test_admin_auth_and_json_validation(make_daemon):
    d = make_daemon(env={"RIDEHAIL_ADMIN_TOKEN": ADMIN})
    auth = {"Authorization": "Bearer " + ADMIN}
    problem(d.request("PUT", "/v1/admin/log", body={"level": "debug"}), 401, "unauthorized")
    problem(d.request("PUT", "/v1/admin/log", body={"level": "debug"},
                      headers={"Authorization": "Bearer wrong-token-xxxxxxxxxxxx"}), 403, "forbidden")
    body = problem(d.request("PUT", "/v1/admin/log", body=b'{"level": "debug",', headers=dict(auth, **{
        "Content-Type": "application/json"})), 400, "invalid-json")
    assert "offset" in body
    problem(d.request("PUT", "/v1/admin/log", body=b'{"level": "debug"} trailing', headers=dict(auth, **{
        "Content-Type": "application/json"})), 400, "invalid-json")
    problem(d.request("PUT", "/v1/admin/log", body=b"[1,2]", headers=dict(auth, **{
        "Content-Type": "application/json"})), 400, "invalid-json")
    problem(d.request("PUT", "/v1/admin/log", body=b"level=debug", headers=dict(auth, **{
        "Content-Type": "application/x-www-form-urlencoded"})), 415, "unsupported-media-type")
    body = problem(d.request("PUT", "/v1/admin/log", body={"level": "loud"}, headers=auth), 400, "validation-failed")
    assert body["field"] == "level"
    body = problem(d.request("PUT", "/v1/admin/log", body={"level": "warn", "x": 1}, headers=auth), 400,
                   "validation-failed")
    assert body["field"] == "x"
    r = d.request("PUT", "/v1/admin/log", body={"level": "warn"}, headers=auth)
    assert r.status == 200 and r.json() == {"level": "warn"}
    r = d.get("/v1/admin/config", headers=auth)
    assert r.status == 200
    assert "level = warn" in r.body.decode()
    assert ADMIN not in r.body.decode() and "<redacted>" in r.body.decode()


def test_admin_disabled_without_token(make_daemon):
    d = make_daemon(env={"RIDEHAIL_ADMIN_TOKEN": ""})
    body = problem(d.get("/v1/admin/config", headers={"Authorization": "Bearer anything-at-all-here"}), 403,
                   "forbidden")
    assert "admin.token is not set" in body["detail"]


# ---------------------------------------------------------------- database resilience

def test_database_down_at_start_then_up(tmp_path):
    cluster = PgCluster()
    cluster.create_db("rh")
    cluster.stop()
    d = Daemon(tmp_path, db_url=cluster.url("rh"), env={"RIDEHAIL_DATABASE_RECONNECT_MAX": "300ms"})
    try:
        d.start(wait_ready=False)
        body = problem(d.get("/readyz"), 503, "unavailable")
        assert "database" in body["checks"]
        assert d.get("/healthz").status == 200  # alive though not ready
        cluster.start()
        d.wait_ready(timeout=10)
        d.stop()
    finally:
        if d.proc and d.proc.poll() is None:
            d.proc.kill()
        cluster.destroy()


def test_database_killed_and_restarted(tmp_path):
    cluster = PgCluster()
    cluster.create_db("rh")
    d = Daemon(tmp_path, db_url=cluster.url("rh"), env={"RIDEHAIL_DATABASE_RECONNECT_MAX": "500ms"})
    try:
        d.start()
        cluster.stop("immediate")
        t0 = time.time()
        d.wait_ready(timeout=5, want=503)
        assert time.time() - t0 < 5
        cluster.start()
        t0 = time.time()
        d.wait_ready(timeout=10)
        assert time.time() - t0 < 10
        assert "lost" in d.log()
        d.stop()
    finally:
        if d.proc and d.proc.poll() is None:
            d.proc.kill()
        cluster.destroy()


def test_local_default_database_is_created_once_then_reused(tmp_path):
    """`make run` with no database configured: scripts/run.sh creates a
    PostgreSQL + PostGIS cluster (here in a temp dir instead of var/pg), the
    daemon comes up ready on it, and a second run reuses the same cluster."""
    base = Path(tempfile.mkdtemp(prefix="rh-localdb-"))
    os.chmod(base, 0o755)  # the cluster belongs to `postgres` when run as root
    env = {"LOCALDB_DIR": str(base / "pg"), "LOCALDB_PORT": str(free_port()), "RIDEHAILD": RIDEHAILD,
           # its own nats-server too, on a free port, stopped at the end
           "LOCALNATS_DIR": str(base / "nats"), "LOCALNATS_PORT": str(free_port())}
    try:
        for run in (1, 2):
            d = Daemon(tmp_path / f"run{run}", env=env, command=[str(ROOT / "scripts" / "run.sh")])
            assert "RIDEHAIL_DATABASE_URL" not in d.env
            d.start(timeout=60)
            body = d.wait_ready(timeout=30).json()
            assert body["checks"]["schema_version"] == latest_migration()
            families = {f.name for f in text_string_to_metric_families(d.get("/metrics").body.decode())}
            assert "ridehail_build_info" in families
            d.stop()
            created = "localdb: creating a PostgreSQL cluster" in d.log()
            assert created == (run == 1), d.log()[-2000:]
            assert f"using the local database postgres://ridehail@127.0.0.1:{env['LOCALDB_PORT']}/" in d.log()
        # `make clean-db` removes it
        r = subprocess.run([str(ROOT / "scripts" / "localdb.sh"), "destroy"], env=dict(os.environ, **env),
                           capture_output=True, text=True)
        assert r.returncode == 0 and not (base / "pg").exists(), r.stderr
    finally:
        subprocess.run([str(ROOT / "scripts" / "localdb.sh"), "destroy"], env=dict(os.environ, **env),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run([str(ROOT / "scripts" / "localnats.sh"), "destroy"], env=dict(os.environ, **env),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(base, ignore_errors=True)


def test_migration_changed_after_apply_is_refused(make_daemon, pg):
    db = pg.create_db()
    d = make_daemon(db=db)
    d.stop()
    pg.query(db, "UPDATE schema_migrations SET checksum = '0000000000000000' WHERE version = 1")
    d2 = make_daemon(db=db, wait_ready=False)
    wait_for(lambda: "was changed after it was applied" in d2.get("/readyz").json()["detail"],
             what="readyz to name the changed migration")
    assert d2.get("/readyz").status == 503


def test_migrate_command(pg, tmp_path):
    db = pg.create_db()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIDEHAIL_")}
    env["RIDEHAIL_DATABASE_URL"] = pg.url(db)
    st = subprocess.run([RIDEHAILD, "migrate", "--status"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert st.returncode == 1 and "needs" in st.stdout + st.stderr
    run = subprocess.run([RIDEHAILD, "migrate"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert f"schema at version {latest_migration()}" in run.stdout
    again = subprocess.run([RIDEHAILD, "migrate"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert again.returncode == 0
    rows = pg.query(db, "SELECT count(*) FROM schema_migrations")
    assert rows[0][0] == len(list((ROOT / "sql").glob("[0-9]*.sql")))
    # With migrate = false the daemon does not touch a fresh schema: it says what to do.
    fresh = pg.create_db()
    d = Daemon(tmp_path, db_url=pg.url(fresh), env={"RIDEHAIL_DATABASE_MIGRATE": "false"})
    d.start(wait_ready=False)
    try:
        wait_for(lambda: "ridehaild migrate" in d.get("/readyz").json()["detail"],
                 what="readyz to say: run ridehaild migrate")
    finally:
        d.stop()


# ---------------------------------------------------------------- lifecycle

def test_graceful_shutdown_finishes_in_flight_request(make_daemon, pg):
    d = make_daemon()
    locker = pg.connect(d.db)
    locker.autocommit = False
    cur = locker.cursor()
    cur.execute("LOCK TABLE schema_migrations IN ACCESS EXCLUSIVE MODE")  # /readyz's query now waits
    result = {}

    def slow():
        result["r"] = d.get("/readyz", timeout=10)

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)
    d.signal(signal.SIGTERM)
    time.sleep(0.3)
    assert d.proc.poll() is None  # still finishing the request
    with pytest.raises(OSError):  # no longer accepting
        socket.create_connection((d.host, d.port), timeout=1).close()
        d.get("/healthz", timeout=1)
    locker.rollback()
    locker.close()
    t.join(5)
    assert result["r"].status == 200
    assert d.proc.wait(5) == 0
    assert "shutdown" in d.log()


def test_sighup_reopens_log(pg, tmp_path):
    log = tmp_path / "daemon.log"
    d = Daemon(tmp_path, db_url=pg.url(pg.create_db()), env={"RIDEHAIL_LOG_FILE": str(log)})
    d.log_path = log
    d.start()
    rotated = tmp_path / "daemon.log.1"
    log.rename(rotated)
    d.signal(signal.SIGHUP)
    deadline = time.time() + 5
    while not log.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert log.exists()
    d.get("/healthz")
    d.stop()
    assert "log reopened" in log.read_text()
    assert "listening on" in rotated.read_text()


def test_sighup_reloads_the_log_level_and_says_what_needs_a_restart(pg, tmp_path):
    """ExecReload: SIGHUP reads the configuration file again; log.level
    changes at once, and a file that does not load changes nothing."""
    conf = tmp_path / "ridehaild.conf"
    base = (ROOT / "conf" / "ridehaild.conf").read_text()
    conf.write_text(base)
    d = Daemon(tmp_path, db_url=pg.url(pg.create_db()), config=str(conf), env={"RIDEHAIL_LOG_LEVEL": ""})
    d.env.pop("RIDEHAIL_LOG_LEVEL", None)
    d.start()
    d.get("/healthz")
    assert "GET /healthz ->" not in d.log()  # (a debug line: the level is info)
    assert "\nlevel = info\n" in base
    conf.write_text(base.replace("\nlevel = info\n", "\nlevel = debug\n", 1))
    d.signal(signal.SIGHUP)
    wait_for(lambda: "reload: log.level info -> debug" in d.log(), what="the level reloaded")
    d.get("/healthz")
    wait_for(lambda: "GET /healthz ->" in d.log(), what="a debug line")
    conf.write_text(base.replace("\nlevel = info\n", "\nlevel = loud\n", 1))
    d.signal(signal.SIGHUP)
    wait_for(lambda: "not loaded; nothing changed" in d.log(), what="the bad file refused")
    d.get("/healthz")
    assert d.get("/healthz").status == 200
    d.stop()


def test_json_log_lines_carry_the_request_id(make_daemon):
    d = make_daemon(env={"RIDEHAIL_LOG_FORMAT": "json"})
    assert d.get("/healthz", headers={"X-Request-Id": "json-log-check-1"}).status == 200
    d.stop()
    lines = [ln for ln in d.log().splitlines() if ln.strip()]
    assert len(lines) > 3
    records = []
    for ln in lines:
        if SANITIZE and not ln.startswith("{"):
            continue  # sanitizer output, which stop() has already checked
        rec = json.loads(ln)  # every line the daemon writes is one JSON object
        assert {"ts", "level", "msg"} <= set(rec), rec
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", rec["ts"]), rec
        assert rec["level"] in ("debug", "info", "warn", "error"), rec
        records.append(rec)
    mine = [r for r in records if r.get("req") == "json-log-check-1"]
    assert mine and "GET /healthz -> 200" in mine[0]["msg"], records[-10:]
    assert any("listening on" in r["msg"] for r in records)


def test_database_notices_reach_the_daemon_log(make_daemon, pg):
    # The history partition maintenance (run at start) calls a SQL function:
    # one that raises a WARNING shows that server messages reach our log.
    db = pg.create_db()
    make_daemon(db=db).stop()
    pg.query(db, """CREATE OR REPLACE FUNCTION ridehail_location_partitions(keep interval, ahead integer,
                        OUT created integer, OUT dropped integer) LANGUAGE plpgsql AS $$
                    BEGIN RAISE WARNING 'partition check from the test'; created := 0; dropped := 0; END $$""")
    d = make_daemon(db=db)
    line = wait_for(lambda: next((ln for ln in d.log().splitlines() if "partition check from the test" in ln), None),
                    what="the server's WARNING in the daemon log")
    assert "level=info" in line and "notice:" in line, line


# ---------------------------------------------------------------- configuration

def run_check(text=None, env=None, path=None, tmp_path=None):
    if text is not None:
        path = tmp_path / "bad.conf"
        path.write_text(text)
    e = {k: v for k, v in os.environ.items() if not k.startswith("RIDEHAIL_")}
    e.update(env or {})
    return subprocess.run([RIDEHAILD, "--check-config", "--config", str(path)], cwd=ROOT, env=e,
                          capture_output=True, text=True)


def test_check_config_accepts_shipped_file(tmp_path):
    r = run_check(path=ROOT / "conf" / "ridehaild.conf")
    assert r.returncode == 0, r.stderr
    assert "valid" in r.stdout


@pytest.mark.parametrize("text, line, message", [
    ("[http]\nlisten = 127.0.0.1:8080\nbogus = 1\n", 3, 'unknown key "bogus" in [http]'),
    ("[http]\nbacklog = 10\nbacklog = 20\n", 3, "http.backlog is set twice"),
    ("[http]\nmax_body_size = lots\n", 2, 'is not a size'),
    ("[database]\npool_size = 500\n", 2, "500 is out of range 1..64"),
    ("[http]\nrequest_timeout = 10\n", 2, "is not a duration"),
    ("[log]\nformat = xml\n", 2, 'is not one of logfmt json'),
    ("[nosuch]\n", 1, "unknown section [nosuch]"),
    ("\n\n[http]\nlisten = nowhere\n", 4, "is not host:port"),
    ("[http]\nbacklog = many\n", 2, '"many" is not an integer'),
    ("[database]\nmigrate = maybe\n", 2, '"maybe" is not a boolean'),
    ("listen = 127.0.0.1:8080\n", 1, 'key "listen" outside any [section]'),
    ("[http\n", 1, "malformed section header"),
    ("[http]\njust words\n", 2, 'expected "key = value"'),
    ("[database]\nurl = \"open\n", 2, "unterminated quoted value"),
])
def test_check_config_error_classes(tmp_path, text, line, message):
    r = run_check(text, tmp_path=tmp_path)
    assert r.returncode == 1
    assert f"bad.conf:{line}: " in r.stderr and message in r.stderr, r.stderr


def test_check_config_cross_key_and_env_errors(tmp_path):
    r = run_check("[admin]\ntoken = short\n", tmp_path=tmp_path)
    assert r.returncode == 1 and "at least 16 characters" in r.stderr
    r = run_check(path=ROOT / "conf" / "ridehaild.conf", env={"RIDEHAIL_HTTP_LISTNE": "x"})
    assert r.returncode == 1 and "RIDEHAIL_HTTP_LISTNE: no such configuration key" in r.stderr
    r = run_check(path=ROOT / "conf" / "ridehaild.conf", env={"RIDEHAIL_DATABASE_POOL_SIZE": "1000"})
    assert r.returncode == 1 and "RIDEHAIL_DATABASE_POOL_SIZE: 1000 is out of range 1..64" in r.stderr
    r = run_check(path=ROOT / "conf" / "ridehaild.conf", env={"RIDEHAIL_LOG_FORMAT": "xml"})
    assert r.returncode == 1 and "RIDEHAIL_LOG_FORMAT" in r.stderr and "is not one of" in r.stderr
    r = run_check(path=tmp_path / "missing.conf")
    assert r.returncode == 1 and "cannot open" in r.stderr


def test_check_config_reports_every_error(tmp_path):
    r = run_check("[http]\nbogus = 1\nbacklog = 0\n[log]\nlevel = loud\n", tmp_path=tmp_path)
    assert r.returncode == 1
    for line in (2, 3, 5):
        assert f"bad.conf:{line}: " in r.stderr, r.stderr


def test_bad_config_never_starts(tmp_path):
    bad = tmp_path / "bad.conf"
    bad.write_text("[http]\nlisten = 127.0.0.1:0\nmax_connections = -5\n")
    r = subprocess.run([RIDEHAILD, "--config", str(bad)], cwd=ROOT, capture_output=True, text=True, timeout=10)
    assert r.returncode == 1
    assert "bad.conf:3:" in r.stderr


def test_env_override_reaches_daemon(make_daemon):
    d = make_daemon(env={"RIDEHAIL_HTTP_MAX_BODY_SIZE": "10", "RIDEHAIL_ADMIN_TOKEN": ADMIN})
    problem(d.request("PUT", "/v1/admin/log", body={"level": "info"}, headers={"Authorization": "Bearer " + ADMIN}),
            413, "body-too-large")


def test_configuration_doc_is_generated_from_the_table():
    out = subprocess.run([RIDEHAILD, "--help-config"], capture_output=True, text=True, check=True).stdout
    assert (ROOT / "docs" / "configuration.md").read_text() == out, \
        "docs/configuration.md is stale: regenerate with bin/ridehaild --help-config > docs/configuration.md"


def test_problem_types_are_documented():
    header = (ROOT / "include" / "net" / "problem.h").read_text()
    slugs = re.findall(r'X\(PROBLEM_\w+,\s*\d+,\s*"([a-z-]+)"', header)
    assert len(slugs) > 10
    doc = (ROOT / "docs" / "api.md").read_text()
    for slug in slugs:
        assert f"`{slug}`" in doc, f"problem type {slug} missing from docs/api.md"


def test_version_and_help():
    v = subprocess.run([RIDEHAILD, "--version"], capture_output=True, text=True, check=True).stdout
    assert v.startswith("ridehaild " + (ROOT / "VERSION").read_text().strip())
    h = subprocess.run([RIDEHAILD, "--help"], capture_output=True, text=True, check=True).stdout
    assert "--check-config" in h and "migrate" in h
    bad = subprocess.run([RIDEHAILD, "--frobnicate"], capture_output=True, text=True)
    assert bad.returncode == 2


def test_every_metric_is_documented(daemon):
    doc = (ROOT / "docs" / "operations.md").read_text()
    text = daemon.get("/metrics").body.decode()
    names = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    assert names
    missing = [n for n in sorted(names) if f"`{n}`" not in doc and f"`{n}_total`" not in doc]
    assert not missing, f"metrics missing from docs/operations.md: {missing}"
