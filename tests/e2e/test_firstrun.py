"""A new user's first minutes, from the README: every command run from the
clone finds the database `make run` uses without being told where it is,
and `make demo` works in a database of its own, says where, and leaves
nothing running."""
import base64
import fcntl
import hashlib
import hmac
import json
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import BINDIR, RIDEHAILD, ROOT, free_port

LOCALDB = ROOT / "scripts" / "localdb.sh"


def env_without_ridehail(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RIDEHAIL_", "LOCALDB_", "LOCALNATS_", "DEMO_")) and k not in ("MAKEFLAGS", "MAKELEVEL")}
    env.update(extra)
    return env


def test_database_url_default_is_the_local_default_database():
    """The built-in database.url is the URL scripts/localdb.sh serves by
    default: the two cannot drift apart."""
    env = env_without_ridehail()
    got = subprocess.run([RIDEHAILD, "--get", "database.url"], cwd=ROOT, env=env, capture_output=True, text=True)
    want = subprocess.run([str(LOCALDB), "url"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert got.returncode == 0 and want.returncode == 0
    # localdb.sh's URL also names its password file (the cluster takes
    # passwords only), which the daemon finds at var/pg/pgpass by itself
    base, _, query = want.stdout.strip().partition("?")
    assert got.stdout.strip() == base == "postgres://ridehail@127.0.0.1:54329/ridehail"
    assert query == f"passfile={ROOT / 'var' / 'pg' / 'pgpass'}"


def port_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def test_cli_in_a_second_shell_finds_make_runs_database(tmp_path):
    """README: `make run` in one shell, `bin/ridehaild admin create-driver ...`
    in another, with nothing set. The local default's port is fixed
    (54329), so this test needs it free: another checkout's `make run` may
    hold it (then it says so and skips); a lock keeps two test runs on this
    machine from taking it at once."""
    lock = open("/tmp/ridehail-localdb-54329.lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not port_free(54329):
        pytest.skip("127.0.0.1:54329 is in use (a make run elsewhere?): the local default cannot be tried here")
    base = Path(tempfile.mkdtemp(prefix="rh-localdefault-"))
    os.chmod(base, 0o755)
    env = env_without_ridehail(LOCALDB_DIR=str(base / "pg"))  # the default port and database name
    try:
        r = subprocess.run([str(LOCALDB), "start"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        # the second shell: no RIDEHAIL_*, no LOCALDB_*, the repository's
        # configuration; the password file a clone's own var/pg/pgpass would
        # be found by itself (this cluster lives elsewhere)
        shell2 = env_without_ridehail(PGPASSFILE=str(base / "pg" / "pgpass"))
        st = subprocess.run([RIDEHAILD, "migrate"], cwd=ROOT, env=shell2, capture_output=True, text=True)
        assert st.returncode == 0, st.stdout + st.stderr
        st = subprocess.run([RIDEHAILD, "migrate", "--status"], cwd=ROOT, env=shell2, capture_output=True, text=True)
        assert st.returncode == 0, st.stdout + st.stderr
        cd = subprocess.run([RIDEHAILD, "admin", "create-driver", "--email", "dana@example.com", "--name", "Dana",
                             "--password-stdin", "--vehicle-type", "standard", "--make", "Toyota", "--model", "Prius",
                             "--color", "Silver", "--plate", "ABC123"],
                            input="driver-pass-1\n", cwd=ROOT, env=shell2, capture_output=True, text=True)
        assert cd.returncode == 0, cd.stderr
        driver = json.loads(cd.stdout)
        assert driver["email"] == "dana@example.com"
        check_admin_token_signs_with_make_runs_key(tmp_path, shell2, driver["id"])
    finally:
        subprocess.run([str(LOCALDB), "destroy"], cwd=ROOT, env=env, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
        lock.close()


def check_admin_token_signs_with_make_runs_key(tmp_path, env, driver_id):
    """README: `bin/ridehaild admin token` in the second shell signs with the
    key `make run` generated into var/jwt.secret, found from the clone as
    the daemon finds it, with nothing set; a key others can read is refused,
    and without the file the command says why it cannot sign. (A clone of
    its own: the repository's var/ is the developer's.)"""
    clone = tmp_path / "clone"
    (clone / "var").mkdir(parents=True)
    conf = str(ROOT / "conf" / "ridehaild.conf")
    mint = [RIDEHAILD, "-c", conf, "admin", "token", "--role", "driver", "--id", driver_id]
    r = subprocess.run(mint, cwd=clone, env=env, capture_output=True, text=True)
    assert r.returncode == 1 and "no var/jwt.secret here" in r.stderr, r.stderr
    key = "6b" * 32
    secret = clone / "var" / "jwt.secret"
    secret.write_text(key)
    os.chmod(secret, 0o644)
    r = subprocess.run(mint, cwd=clone, env=env, capture_output=True, text=True)
    assert r.returncode == 1 and "readable by others" in r.stderr, r.stderr
    os.chmod(secret, 0o600)
    r = subprocess.run(mint, cwd=clone, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    head, payload, mac = r.stdout.strip().split(".")
    want = hmac.new(key.encode(), (head + "." + payload).encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(mac + "=" * (-len(mac) % 4)) == want
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["sub"] == driver_id and claims["role"] == "driver"
    # and the daemon started from there takes the same key (what --get shows is
    # what it signs with: the file is read before either runs)
    got = subprocess.run([RIDEHAILD, "-c", conf, "--get", "auth.jwt_secret"], cwd=clone, env=env,
                         capture_output=True, text=True)
    assert got.returncode == 0 and got.stdout.strip() == key


def listening(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_demo_has_its_own_database_and_leaves_nothing_running(tmp_path):
    """A short West Oakland demo (no ../shared here): it names its database,
    the make run database gets none of its accounts, it prints the written
    summary, and afterwards neither the daemon nor the cluster (which the
    demo started) is running."""
    base = Path(tempfile.mkdtemp(prefix="rh-demo-"))
    os.chmod(base, 0o755)
    dbport, addr_port = free_port(), free_port()
    env = env_without_ridehail(LOCALDB_DIR=str(base / "pg"), LOCALDB_PORT=str(dbport),
                               DEMO_ADDR=f"127.0.0.1:{addr_port}", DEMO_DURATION="120", DEMO_SPEED="20",
                               DEMO_OUT=str(tmp_path / "report"), SHARED_DATA=str(base / "no-shared-data"),
                               RIDEHAILD=RIDEHAILD, PATH=f"{BINDIR}:{os.environ['PATH']}")
    try:
        # make run's database exists first, as after a `make run`
        r = subprocess.run([str(LOCALDB), "start"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        subprocess.run([str(LOCALDB), "stop"], cwd=ROOT, env=env, check=True)
        demo = subprocess.run(["scripts/demo.sh"], cwd=ROOT, env=dict(env, SIM=str(BINDIR / "ridehail-sim")),
                              capture_output=True, text=True, timeout=600)
        assert demo.returncode == 0, demo.stderr[-4000:]
        err = demo.stderr
        assert f"demo: database postgres://ridehail@127.0.0.1:{dbport}/ridehail_demo" in err, err
        assert "Served: " in err and "Look at: " in err, err
        assert (tmp_path / "report" / "summary.txt").read_text() in err
        summary = json.loads((tmp_path / "report" / "summary.json").read_text())
        assert summary["no_quote"] == 0, summary  # every request on a road a car can use
        assert summary["protocol_errors"] == 0
        # nothing left running: not the daemon, not the cluster it started
        assert not listening(addr_port)
        assert not listening(dbport)
        st = subprocess.run([str(LOCALDB), "status"], cwd=ROOT, env=env, capture_output=True, text=True)
        assert st.returncode == 1, st.stdout
        # make run's database was not touched: not even migrated
        subprocess.run([str(LOCALDB), "start"], cwd=ROOT, env=env, check=True)
        env["PGPASSFILE"] = str(base / "pg" / "pgpass")  # the cluster takes passwords only
        rows = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(dbport), "-U", "ridehail", "-d", "ridehail",
                               "-Atc", "SELECT count(*) FROM pg_class WHERE relname = 'drivers'"],
                              env=env, capture_output=True, text=True)
        assert rows.stdout.strip() == "0", rows.stdout + rows.stderr
        demo_rows = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(dbport), "-U", "ridehail", "-d",
                                    "ridehail_demo", "-Atc", "SELECT count(*) FROM drivers"],
                                   env=env, capture_output=True, text=True)
        assert int(demo_rows.stdout.strip()) == 12, demo_rows.stdout + demo_rows.stderr
    finally:
        subprocess.run([str(LOCALDB), "destroy"], cwd=ROOT, env=env, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
