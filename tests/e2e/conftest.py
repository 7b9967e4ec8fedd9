"""End-to-end harness: a real PostgreSQL+PostGIS cluster started for the test
session, the real daemon on free ports, real sockets.

Fixtures:
  pg          the session's cluster (PgCluster); each daemon gets its own database
  daemon      a running daemon on a fresh database (module scope)
  make_daemon factory: make_daemon(env={...}, db=None, wait_ready=True) -> Daemon
"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psycopg2
import pytest

import openapi

ROOT = Path(__file__).resolve().parents[2]
RIDEHAILD = os.environ.get("RIDEHAILD", str(ROOT / "bin" / "ridehaild"))
BINDIR = Path(os.environ.get("BINDIR", str(ROOT / "bin")))
SANITIZE = os.environ.get("SANITIZE", "0") == "1"
PGBIN = Path("/usr/lib/postgresql/15/bin")
SHARED_DATA = Path(os.environ.get("SHARED_DATA", str(ROOT.parent / "shared" / "data")))

ADMIN_TOKEN = "admin-token-for-tests-0123456789"
JWT_SECRET = "jwt-secret-for-tests-0123456789abcdef"

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "SUMMARY: UndefinedBehaviorSanitizer")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def is_root():
    return os.geteuid() == 0


def as_pg(cmd):
    """PostgreSQL refuses to run as root: run its tools as `postgres` then."""
    return ["runuser", "-u", "postgres", "--"] + cmd if is_root() else cmd


class PgCluster:
    """A throwaway cluster: trust auth on 127.0.0.1, fsync off for speed (the
    tests check logic, not disks). synchronous_commit stays on, so a commit
    survives the server being killed, as it would in production."""

    def __init__(self, base=None):
        # Its own directory under /tmp: pytest's tmp_path is private to root,
        # and the cluster runs as `postgres` when the tests run as root.
        self.dir = Path(base or tempfile.mkdtemp(prefix="rh-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.log = self.dir / "postgres.log"
        self.dir.mkdir(parents=True, exist_ok=True)
        if is_root():
            shutil.chown(self.dir, "postgres")
        subprocess.run(as_pg([str(PGBIN / "initdb"), "-D", str(self.data), "-U", "ridehail", "-A", "trust",
                              "--encoding=UTF8", "--locale=C.UTF-8"]),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(f"""
listen_addresses = '127.0.0.1'
port = {self.port}
unix_socket_directories = ''
fsync = off
full_page_writes = off
max_connections = 300
shared_buffers = 64MB
""")
        self.start()
        self.template_ready = False

    def start(self):
        subprocess.run(as_pg([str(PGBIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30",
                              "start"]), check=True, stdout=subprocess.DEVNULL)

    def stop(self, mode="fast"):
        subprocess.run(as_pg([str(PGBIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"]),
                       check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def url(self, db="postgres"):
        return f"postgres://ridehail@127.0.0.1:{self.port}/{db}"

    def connect(self, db="postgres"):
        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="ridehail", dbname=db)
        conn.autocommit = True
        return conn

    def create_db(self, name=None):
        """A fresh database; PostGIS comes from a template so each one is quick."""
        name = name or "t_" + uuid.uuid4().hex[:12]
        # (psycopg2's "with conn" opens a transaction even in autocommit mode:
        # CREATE DATABASE cannot run in one, so no "with" here.)
        if not self.template_ready:
            if not self.query("postgres", "SELECT 1 FROM pg_database WHERE datname = 'rh_template'"):
                self.query("postgres", "CREATE DATABASE rh_template")
                self.query("rh_template", "CREATE EXTENSION postgis")
            self.template_ready = True
        self.query("postgres", f"CREATE DATABASE {name} TEMPLATE rh_template")
        return name

    def query(self, db, sql, params=None):
        conn = self.connect(db)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description else None
        finally:
            conn.close()

    def destroy(self):
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Response {self.status} {self.body[:300]!r}>"


class Daemon:
    def __init__(self, workdir, env=None, db_url=None, config=None, args=(), command=None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"ridehaild-{uuid.uuid4().hex[:6]}.log"
        self.env = dict(os.environ)
        for k in list(self.env):
            if k.startswith("RIDEHAIL_"):
                del self.env[k]
        self.env.update({
            "RIDEHAIL_HTTP_LISTEN": "127.0.0.1:0",
            "RIDEHAIL_LOG_LEVEL": "debug",
            "RIDEHAIL_SERVER_SHUTDOWN_TIMEOUT": "5s",
            "RIDEHAIL_ADMIN_TOKEN": ADMIN_TOKEN,
            "RIDEHAIL_AUTH_JWT_SECRET": JWT_SECRET,
            # argon2id at its minimum cost: the tests exercise logic, and one
            # test checks the production cost separately.
            "RIDEHAIL_AUTH_PASSWORD_OPSLIMIT": "1",
            "RIDEHAIL_AUTH_PASSWORD_MEMLIMIT": "8KiB",
            # generous login limits: tests log in many accounts from 127.0.0.1
            "RIDEHAIL_AUTH_LOGIN_PER_ADDRESS": "100000",
            "RIDEHAIL_AUTH_SIGNUP_PER_ADDRESS": "100000",
            # every test client is 127.0.0.1: the per-address connection cap
            # has its own tests (test_security.py)
            "RIDEHAIL_HTTP_MAX_CONNECTIONS_PER_ADDRESS": "0",
            # tests put drivers where they please, kilometres apart in a
            # millisecond: GPS sanity has its own tests (test_security.py)
            "RIDEHAIL_PRESENCE_GPS_MAX_SPEED": "0",
            # the console's request_wait and match_rate alerts off: every
            # request-and-cancel burst would raise one, and their events share
            # the outbox the relay tests count; they have their own tests
            # (test_console.py), the database alert stays on
            "RIDEHAIL_CONSOLE_ALERT_MATCH_RATE": "0",
            "RIDEHAIL_CONSOLE_ALERT_REQUEST_WAIT": "0s",
            "ASAN_OPTIONS": "detect_leaks=1:halt_on_error=1:abort_on_error=0",
            "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
        })
        if db_url is not None:
            self.env["RIDEHAIL_DATABASE_URL"] = db_url
        self.env.update(env or {})
        self.config = config or str(ROOT / "conf" / "ridehaild.conf")
        self.args = list(args)
        # what to run instead of the binary (e.g. scripts/run.sh, which execs it)
        self.command = list(command) if command else None
        self.proc = None
        self.addr = None

    def start(self, wait_ready=True, timeout=20):
        self.logf = open(self.log_path, "ab")
        argv = self.command or [RIDEHAILD, "--config", self.config] + self.args
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=self.env,
                                     stdout=self.logf, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = re.search(r"listening on (\S+?)\"", self.log())
            if m:
                self.addr = m.group(1)
                break
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.02)
        else:
            raise AssertionError("daemon did not listen:\n" + self.log())
        self.host, port = self.addr.rsplit(":", 1)
        self.port = int(port)
        if wait_ready:
            self.wait_ready(timeout=deadline - time.time())
        return self

    def wait_ready(self, timeout=20, want=200):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            try:
                last = self.get("/readyz")
                if last.status == want:
                    return last
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"/readyz never answered {want}; last {last}\n{self.log()[-3000:]}")

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def connection(self, timeout):
        """The client connection request() uses (a front over TLS overrides it)."""
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=10):
        conn = self.connection(timeout)
        try:
            hdrs = dict(headers or {})
            if body is not None and not isinstance(body, (bytes, str)):
                body = json.dumps(body)
                hdrs.setdefault("Content-Type", "application/json")
            conn.request(method, path, body=body, headers=hdrs)
            r = conn.getresponse()
            resp = Response(r.status, r.getheaders(), r.read())
        finally:
            conn.close()
        # every answer is held to docs/openapi.yaml (tests/e2e/openapi.py)
        openapi.check_response(method, path, resp.status, resp.headers, resp.body)
        return resp

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def raw(self, data, timeout=3, read=True):
        """Sends raw bytes, returns everything read until close or timeout."""
        with socket.create_connection((self.host, self.port), timeout=timeout) as s:
            s.sendall(data)
            if not read:
                return b""
            out = b""
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    out += chunk
            except socket.timeout:
                pass
            return out

    # ------------------------------------------------------------ accounts
    admin = {"Authorization": "Bearer " + ADMIN_TOKEN}

    def create_driver(self, email=None, password="driver-pass-1", vehicle_type="standard", **extra):
        email = email or f"d-{uuid.uuid4().hex[:10]}@example.com"
        body = {"email": email, "name": extra.pop("name", "Dana Driver"), "password": password,
                "vehicle": {"type": vehicle_type, "make": "Toyota", "model": "Prius", "color": "Silver",
                            "plate": extra.pop("plate", uuid.uuid4().hex[:8].upper())}}
        body.update(extra)
        r = self.post("/v1/admin/drivers", body, headers=self.admin)
        assert r.status == 201, r
        return r.json()

    def create_rider(self, email=None, password="rider-pass-1", **extra):
        email = email or f"r-{uuid.uuid4().hex[:10]}@example.com"
        body = {"email": email, "name": extra.pop("name", "Riley Rider"), "password": password}
        body.update(extra)
        r = self.post("/v1/admin/riders", body, headers=self.admin)
        assert r.status == 201, r
        return r.json()

    def login(self, role, email, password):
        r = self.post("/v1/auth/login", {"role": role, "email": email, "password": password})
        assert r.status == 200, r
        return r.json()["token"]

    def driver_session(self, **kw):
        """A new driver account and its bearer header."""
        pw = kw.pop("password", "driver-pass-1")
        d = self.create_driver(password=pw, **kw)
        tok = self.login("driver", d["email"], pw)
        return d, {"Authorization": "Bearer " + tok}

    def rider_session(self, **kw):
        pw = kw.pop("password", "rider-pass-1")
        r = self.create_rider(password=pw, **kw)
        tok = self.login("rider", r["email"], pw)
        return r, {"Authorization": "Bearer " + tok}

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, expect_code=0, timeout=15):
        if self.proc is None or self.proc.poll() is not None:
            code = self.proc.returncode if self.proc else 0
        else:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("daemon did not stop on SIGTERM:\n" + self.log()[-3000:])
        self.logf.close()
        self.check_log()
        if expect_code is not None:
            assert code == expect_code, f"daemon exit code {code}:\n{self.log()[-5000:]}"
        return code

    def check_log(self):
        text = self.log()
        for marker in SANITIZER_MARKERS:
            assert marker not in text, f"sanitizer report in the daemon log:\n{text[-8000:]}"


def pytest_terminal_summary(terminalreporter):
    """How much of docs/openapi.yaml the run's responses covered."""
    for line in openapi.coverage_lines():
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def pg(tmp_path_factory):
    cluster = PgCluster()
    yield cluster
    cluster.destroy()


@pytest.fixture
def make_daemon(pg, tmp_path):
    started = []

    def make(env=None, db=None, wait_ready=True, db_url=None, **kw):
        if db_url is None:
            db_url = pg.url(db or pg.create_db())
        d = Daemon(tmp_path, env=env, db_url=db_url, **kw)
        started.append(d)
        d.start(wait_ready=wait_ready)
        d.db = db_url.rsplit("/", 1)[1]
        return d

    yield make
    errors = []
    for d in started:
        try:
            if d.proc and d.proc.poll() is None:
                d.stop()
            else:
                d.check_log()
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, "\n".join(errors)


@pytest.fixture(scope="module")
def daemon(pg, tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("daemon"), db_url=pg.url(pg.create_db()))
    d.start()
    d.db = d.env["RIDEHAIL_DATABASE_URL"].rsplit("/", 1)[1]
    yield d
    d.stop()


def wait_for(pred, timeout=10, interval=0.05, what="condition"):
    """Polls pred() until it returns a truthy value; returns that value."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last value {last!r}")


def problem(resp, status, slug=None):
    """Asserts an RFC 9457 problem reply; returns its JSON."""
    assert resp.status == status, resp
    assert resp.headers.get("content-type") == "application/problem+json", resp.headers
    body = resp.json()
    assert body["status"] == status
    assert body["type"].startswith("https://ridehail.dev/problems/")
    assert body["title"] and body["detail"]
    if slug:
        assert body["type"].endswith("/" + slug), body
    return body


# ---------------------------------------------------------------- NATS

class NatsServer:
    """A throwaway `nats-server -js` on a free port; its store survives
    stop()/start(), as a real server's disk does across a restart."""

    def __init__(self, base=None):
        exe = shutil.which("nats-server")
        assert exe, "nats-server is not installed: make deps (scripts/deps.sh) installs it"
        self.exe = exe
        self.dir = Path(base or tempfile.mkdtemp(prefix="rh-nats-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc = None
        self.log = self.dir / "nats.log"

    @property
    def url(self):
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout=10):
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen([self.exe, "-js", "-a", "127.0.0.1", "-p", str(self.port),
                                      "-sd", str(self.dir / "store")],
                                     stdout=self.logf, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    if s.recv(4).startswith(b"INFO"):
                        return self
            except OSError:
                pass
            assert self.proc.poll() is None, self.log.read_text()
            time.sleep(0.05)
        raise AssertionError("nats-server did not start:\n" + self.log.read_text())

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.logf.close()
        self.proc = None

    def destroy(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def nats():
    n = NatsServer().start()
    yield n
    n.destroy()
