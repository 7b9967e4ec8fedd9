"""Accounts, passwords and access tokens against the real daemon and database."""
import base64
import hashlib
import hmac
import json
import os
import subprocess
import threading
import time
import uuid

import pytest

from conftest import ADMIN_TOKEN, JWT_SECRET, RIDEHAILD, ROOT, problem


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(claims, secret=JWT_SECRET, header=None):
    header = header or {"alg": "HS256", "typ": "JWT"}
    signing = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    sig = hmac.new(secret.encode(), signing.encode(), hashlib.sha256).digest()
    return signing + "." + b64(sig)


def decode(token):
    parts = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)
    return (json.loads(base64.urlsafe_b64decode(pad(parts[0]))), json.loads(base64.urlsafe_b64decode(pad(parts[1]))))


def bearer(tok):
    return {"Authorization": "Bearer " + tok}


# ---------------------------------------------------------------- creating accounts

def test_admin_creates_driver(daemon, pg):
    d = daemon.create_driver(email="Maria.Lopez@Example.com", name="Maria", phone="+1 555 0100", plate="ABC1234")
    assert uuid.UUID(d["id"])
    assert d["role"] == "driver" and d["status"] == "offline" and d["version"] == 0
    assert d["vehicle"] == {"type": "standard", "make": "Toyota", "model": "Prius", "color": "Silver",
                            "plate": "ABC1234"}
    assert d["rating"] is None and d["disabled"] is False
    assert "password" not in json.dumps(d) and "hash" not in json.dumps(d)
    stored = pg.query(daemon.db, "SELECT password_hash FROM drivers WHERE id = %s", (d["id"],))[0][0]
    assert stored.startswith("$argon2id$")


def test_duplicates_are_conflicts(daemon):
    d = daemon.create_driver(plate="DUP0001")
    body = problem(daemon.post("/v1/admin/drivers", {
        "email": d["email"].upper(), "name": "X", "password": "long-enough",
        "vehicle": {"type": "standard", "make": "a", "model": "b", "color": "c", "plate": "NEW0001"}},
        headers=daemon.admin), 409, "conflict")
    assert body["field"] == "email"
    body = problem(daemon.post("/v1/admin/drivers", {
        "email": "other-" + d["email"], "name": "X", "password": "long-enough",
        "vehicle": {"type": "standard", "make": "a", "model": "b", "color": "c", "plate": "dup0001"}},
        headers=daemon.admin), 409, "conflict")
    assert body["field"] == "vehicle.plate"


GOOD_DRIVER = {"email": "v@example.com", "name": "V", "password": "long-enough",
               "vehicle": {"type": "standard", "make": "a", "model": "b", "color": "c", "plate": "P1"}}


@pytest.mark.parametrize("change, field, rule", [
    ({"email": "not-an-email"}, "email", "format"),
    ({"email": None}, "email", "required"),
    ({"password": "short"}, "password", "minLength"),
    ({"name": "n" * 101}, "name", "maxLength"),
    ({"name": 42}, "name", "type"),
    ({"extra": 1}, "extra", "additionalProperties"),
    ({"vehicle": {"type": "spaceship", "make": "a", "model": "b", "color": "c", "plate": "P1"}}, "vehicle.type",
     "enum"),
    ({"vehicle": {"type": "standard", "make": "a", "model": "b", "color": "c"}}, "vehicle.plate", "required"),
    ({"vehicle": "car"}, "vehicle", "type"),
])
def test_create_driver_validation(daemon, pg, change, field, rule):
    body = dict(GOOD_DRIVER)
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    before = pg.query(daemon.db, "SELECT count(*) FROM drivers")[0][0]
    p = problem(daemon.post("/v1/admin/drivers", body, headers=daemon.admin), 400, "validation-failed")
    assert (p["field"], p["rule"]) == (field, rule), p
    assert pg.query(daemon.db, "SELECT count(*) FROM drivers")[0][0] == before  # nothing written


def test_rider_signup(daemon):
    r = daemon.post("/v1/riders", {"email": "new.rider@example.com", "name": "New", "password": "sign-me-up"})
    assert r.status == 201, r
    assert r.json()["role"] == "rider"
    problem(daemon.post("/v1/riders", {"email": "NEW.rider@example.com", "name": "N", "password": "sign-me-up"}),
            409, "conflict")
    tok = daemon.login("rider", "new.rider@example.com", "sign-me-up")
    me = daemon.get("/v1/me", headers=bearer(tok)).json()
    assert me["email"] == "new.rider@example.com"


def test_signup_closed(make_daemon):
    d = make_daemon(env={"RIDEHAIL_AUTH_RIDER_SIGNUP": "false"})
    problem(d.post("/v1/riders", {"email": "x@example.com", "name": "x", "password": "12345678"}), 403, "forbidden")
    assert d.create_rider()["role"] == "rider"  # the operator still can


# ---------------------------------------------------------------- logging in

def test_login_token_and_me(daemon):
    d = daemon.create_driver(password="s3cret-pass")
    r = daemon.post("/v1/auth/login", {"role": "driver", "email": d["email"].upper(), "password": "s3cret-pass"})
    assert r.status == 200, r
    body = r.json()
    assert body["token_type"] == "Bearer" and body["role"] == "driver" and body["subject"] == d["id"]
    header, claims = decode(body["token"])
    assert header == {"alg": "HS256", "typ": "JWT"}
    assert claims["sub"] == d["id"] and claims["role"] == "driver" and claims["iss"] == "ridehail"
    assert claims["exp"] - claims["iat"] == 12 * 3600
    assert abs(claims["iat"] - time.time()) < 60
    me = daemon.get("/v1/me", headers=bearer(body["token"]))
    assert me.status == 200 and me.json()["id"] == d["id"]
    assert me.headers["cache-control"] == "no-store"


def test_bad_credentials_look_the_same(daemon):
    d = daemon.create_driver(password="right-password")
    wrong = problem(daemon.post("/v1/auth/login", {"role": "driver", "email": d["email"], "password": "wrong"}),
                    401, "unauthorized")
    unknown = problem(daemon.post("/v1/auth/login", {"role": "driver", "email": "nobody@example.com",
                                                     "password": "wrong"}), 401, "unauthorized")
    assert wrong["detail"] == unknown["detail"] == "invalid email or password"
    # the right password for the wrong role
    problem(daemon.post("/v1/auth/login", {"role": "rider", "email": d["email"], "password": "right-password"}),
            401, "unauthorized")


def test_disabled_account(daemon, pg):
    d = daemon.create_driver(password="pw-12345678")
    pg.query(daemon.db, "UPDATE drivers SET disabled = true WHERE id = %s", (d["id"],))
    problem(daemon.post("/v1/auth/login", {"role": "driver", "email": d["email"], "password": "pw-12345678"}),
            403, "forbidden")


@pytest.mark.parametrize("body, field", [
    ({"role": "pilot", "email": "a@b.co", "password": "x"}, "role"),
    ({"role": "driver", "email": "a@b.co"}, "password"),
    ({"role": "driver", "email": "a@b.co", "password": "x" * 1025}, "password"),
])
def test_login_validation(daemon, body, field):
    assert problem(daemon.post("/v1/auth/login", body), 400, "validation-failed")["field"] == field


def test_tokens_are_checked(daemon):
    d = daemon.create_driver()
    now = int(time.time())
    good = {"iss": "ridehail", "sub": d["id"], "role": "driver", "iat": now, "exp": now + 600, "jti": "x"}
    assert daemon.get("/v1/me", headers=bearer(make_jwt(good))).status == 200
    cases = {
        "expired": dict(good, iat=now - 7200, exp=now - 3600),
        "future": dict(good, iat=now + 3600),
        "wrong issuer": dict(good, iss="someone-else"),
        "no subject": {k: v for k, v in good.items() if k != "sub"},
        "bad role": dict(good, role="admin"),
    }
    for name, claims in cases.items():
        problem(daemon.get("/v1/me", headers=bearer(make_jwt(claims))), 401, "unauthorized")
    problem(daemon.get("/v1/me", headers=bearer(make_jwt(good, secret="x" * 40))), 401, "unauthorized")
    problem(daemon.get("/v1/me", headers=bearer(make_jwt(good, header={"alg": "none"}).rsplit(".", 1)[0] + ".")),
            401, "unauthorized")
    problem(daemon.get("/v1/me", headers=bearer(make_jwt(good, header={"alg": "HS512", "typ": "JWT"}))), 401,
            "unauthorized")
    tok = make_jwt(good)
    tampered = tok.split(".")
    tampered[1] = b64(json.dumps(dict(good, role="operator")).encode())
    problem(daemon.get("/v1/me", headers=bearer(".".join(tampered))), 401, "unauthorized")
    problem(daemon.get("/v1/me"), 401, "unauthorized")
    problem(daemon.get("/v1/me", headers={"Authorization": "Basic Zm9vOmJhcg=="}), 401, "unauthorized")
    # a valid token for the wrong role is 403, not 401
    problem(daemon.post("/v1/admin/drivers", GOOD_DRIVER, headers=bearer(tok)), 403, "forbidden")


def test_recently_verified_tokens_still_expire_and_forgeries_still_fail(make_daemon):
    """Verified tokens are remembered for speed: a remembered token must still
    expire on time, and a forgery that differs from it in one byte, or that
    is the same token under another secret, must still be refused."""
    d = make_daemon(env={"RIDEHAIL_AUTH_LEEWAY": "0s"})
    drv = d.create_driver()
    now = int(time.time())
    claims = {"iss": "ridehail", "sub": drv["id"], "role": "driver", "iat": now, "exp": now + 2, "jti": "short"}
    tok = make_jwt(claims)
    for _ in range(3):  # verified once, then answered from memory
        assert d.get("/v1/me", headers=bearer(tok)).status == 200
    sig = tok.rsplit(".", 1)[1]
    flipped = tok[: -len(sig)] + ("A" if sig[0] != "A" else "B") + sig[1:]
    problem(d.get("/v1/me", headers=bearer(flipped)), 401, "unauthorized")
    problem(d.get("/v1/me", headers=bearer(make_jwt(claims, secret="y" * 40))), 401, "unauthorized")
    time.sleep(max(0, now + 3.2 - time.time()))
    p = problem(d.get("/v1/me", headers=bearer(tok)), 401, "unauthorized")
    assert "expired" in p["detail"]


def test_operator_accounts(daemon):
    r = daemon.post("/v1/admin/operators", {"email": "ops@example.com", "name": "Ops", "password": "operator-pw"},
                    headers=daemon.admin)
    assert r.status == 201, r
    tok = daemon.login("operator", "ops@example.com", "operator-pw")
    d = daemon.post("/v1/admin/drivers", dict(GOOD_DRIVER, email="by-op@example.com",
                                               vehicle=dict(GOOD_DRIVER["vehicle"], plate="OPS1")),
                    headers=bearer(tok))
    assert d.status == 201, d
    assert daemon.get("/v1/admin/drivers/" + d.json()["id"], headers=bearer(tok)).status == 200


def test_driver_lookup_and_list(daemon):
    ids = {daemon.create_driver()["id"] for _ in range(5)}
    problem(daemon.get("/v1/admin/drivers/not-a-uuid", headers=daemon.admin), 400, "validation-failed")
    problem(daemon.get("/v1/admin/drivers/" + str(uuid.uuid4()), headers=daemon.admin), 404, "not-found")
    seen, cursor = set(), None
    while True:
        r = daemon.get("/v1/admin/drivers?limit=2" + (f"&cursor={cursor}" if cursor else ""), headers=daemon.admin)
        assert r.status == 200, r
        page = r.json()
        assert len(page["items"]) <= 2
        seen |= {d["id"] for d in page["items"]}
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert ids <= seen
    problem(daemon.get("/v1/admin/drivers?limit=0", headers=daemon.admin), 400, "validation-failed")
    problem(daemon.get("/v1/admin/drivers?cursor=zzz", headers=daemon.admin), 400, "validation-failed")


# ---------------------------------------------------------------- abuse

def test_login_rate_limited_per_account(daemon):
    d = daemon.create_driver(password="the-real-one")
    for _ in range(5):
        daemon.post("/v1/auth/login", {"role": "driver", "email": d["email"], "password": "guess"})
    r = daemon.post("/v1/auth/login", {"role": "driver", "email": d["email"], "password": "the-real-one"})
    body = problem(r, 429, "rate-limited")
    assert int(r.headers["retry-after"]) >= 1 and body["retry_after_s"] >= 1
    # other accounts are unaffected
    other = daemon.create_driver(password="pw-other-1")
    assert daemon.login("driver", other["email"], "pw-other-1")


def test_login_rate_limited_per_address(make_daemon):
    d = make_daemon(env={"RIDEHAIL_AUTH_LOGIN_PER_ADDRESS": "3"})
    for i in range(3):
        d.post("/v1/auth/login", {"role": "rider", "email": f"u{i}@example.com", "password": "x"})
    problem(d.post("/v1/auth/login", {"role": "rider", "email": "u9@example.com", "password": "x"}), 429,
            "rate-limited")


def test_production_cost_hashing_does_not_block_the_loop(make_daemon, pg):
    # argon2id well above the INTERACTIVE cost, so that each hash takes a good
    # fraction of a second even on a fast machine (4 passes took under 0.2 s)
    d = make_daemon(env={"RIDEHAIL_AUTH_PASSWORD_OPSLIMIT": "8", "RIDEHAIL_AUTH_PASSWORD_MEMLIMIT": "128MiB"})
    t0 = time.time()
    drv = d.create_driver(password="heavy-password")
    hash_time = time.time() - t0
    result = {}
    th = threading.Thread(target=lambda: result.setdefault(
        "r", d.post("/v1/auth/login", {"role": "driver", "email": drv["email"], "password": "heavy-password"})))
    th.start()
    time.sleep(hash_time / 4)
    worst = 0.0
    while th.is_alive():
        t = time.time()
        assert d.get("/healthz").status == 200
        worst = max(worst, time.time() - t)
    th.join()
    assert result["r"].status == 200
    assert hash_time > 0.2, f"hash took {hash_time:.3f}s: not a meaningful check"
    assert worst < hash_time / 3, f"/healthz took {worst:.3f}s while a {hash_time:.3f}s hash ran"
    stored = pg.query(d.db, "SELECT password_hash FROM drivers WHERE id = %s", (drv["id"],))[0][0]
    assert "$m=131072,t=8," in stored


# ---------------------------------------------------------------- the CLI

def cli(args, env_extra, input=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIDEHAIL_")}
    env.update(env_extra)
    return subprocess.run([RIDEHAILD, "admin"] + args, cwd=ROOT, env=env, capture_output=True, text=True,
                          input=input, timeout=30)


def test_cli_creates_accounts_and_mints_tokens(daemon, pg):
    env = {"RIDEHAIL_DATABASE_URL": pg.url(daemon.db), "RIDEHAIL_AUTH_JWT_SECRET": JWT_SECRET,
           "RIDEHAIL_AUTH_PASSWORD_OPSLIMIT": "1", "RIDEHAIL_AUTH_PASSWORD_MEMLIMIT": "8KiB"}
    r = cli(["create-driver", "--email", "cli@example.com", "--name", "Cli", "--password-stdin",
             "--vehicle-type", "standard", "--make", "Ford", "--model", "Focus", "--color", "Blue", "--plate", "CLI1"],
            env, input="from-stdin-pw\n")
    assert r.returncode == 0, r.stderr
    drv = json.loads(r.stdout)
    assert drv["vehicle"]["plate"] == "CLI1"
    assert daemon.login("driver", "cli@example.com", "from-stdin-pw")
    bad = cli(["create-driver", "--email", "x@example.com", "--name", "X", "--password", "long-enough",
               "--vehicle-type", "boat", "--make", "a", "--model", "b", "--color", "c", "--plate", "Z"], env)
    assert bad.returncode == 2 and "vehicle.type must be one of standard" in bad.stderr
    dup = cli(["create-rider", "--email", "CLI@example.com", "--name", "C", "--password", "long-enough"], env)
    assert dup.returncode == 0  # riders and drivers are separate
    dup2 = cli(["create-rider", "--email", "cli@EXAMPLE.com", "--name", "C", "--password", "long-enough"], env)
    assert dup2.returncode == 1 and "already exists" in dup2.stderr
    tok = cli(["token", "--role", "driver", "--id", drv["id"], "--ttl", "5m"], env)
    assert tok.returncode == 0, tok.stderr
    me = daemon.get("/v1/me", headers=bearer(tok.stdout.strip()))
    assert me.status == 200 and me.json()["id"] == drv["id"]
    _, claims = decode(tok.stdout.strip())
    assert claims["exp"] - claims["iat"] == 300
