"""Accounts from the operator's desk (issue 25): search every kind of account a
page at a time, edit a driver and the vehicle, disable (sessions closed and
tokens refused at once), one-time password-reset links, delete under the
data-protection rule; the same through `ridehaild admin`."""
import json
import os
import subprocess
import uuid

from conftest import ADMIN_TOKEN, JWT_SECRET, RIDEHAILD, ROOT, problem
from wsapp import RawWS


def bearer(tok):
    return {"Authorization": "Bearer " + tok}


def close_code(c, timeout=5):
    """The code and reason of the server's close frame, skipping other frames."""
    c.s.settimeout(timeout)
    while True:
        f = c.read_frame()
        assert f is not None, "the server closed without a close frame"
        if f[0] == 0x8:
            return int.from_bytes(f[1][:2], "big"), f[1][2:].decode()


def pages(d, path, limit, **query):
    """Every item of a paged admin list, following next_cursor."""
    items, cursor = [], None
    while True:
        q = dict(query, limit=limit)
        if cursor:
            q["cursor"] = cursor
        qs = "&".join(f"{k}={v}" for k, v in q.items())
        r = d.get(f"{path}?{qs}", headers=d.admin)
        assert r.status == 200, r
        body = r.json()
        assert len(body["items"]) <= limit
        items += body["items"]
        cursor = body["next_cursor"]
        if not cursor:
            return items


def operator_token(d):
    email = f"ops-{uuid.uuid4().hex[:8]}@example.com"
    r = d.post("/v1/admin/operators", {"email": email, "name": "Olive Ops", "password": "operator-pass"},
               headers=d.admin)
    assert r.status == 201, r
    return r.json(), d.login("operator", email, "operator-pass")


def test_search_every_kind_of_account_paged(daemon):
    d = daemon
    tag = uuid.uuid4().hex[:6]
    drivers = [d.create_driver(email=f"pg-{tag}-{i}@example.com", name=f"Paged {tag} {i}") for i in range(7)]
    riders = [d.create_rider(email=f"rp-{tag}-{i}@example.com", phone=f"+1 (555) 77{i} {tag[:2]}00")
              for i in range(3)]
    # by name, over pages of 3: all seven, each once, in id order
    got = pages(d, "/v1/admin/drivers", 3, q=tag)
    assert [x["id"] for x in got] == sorted(x["id"] for x in drivers)
    # by plate (case-insensitive), by id, by phone digits whatever the formatting
    plate = drivers[4]["vehicle"]["plate"]
    assert [x["id"] for x in pages(d, "/v1/admin/drivers", 50, q=plate.lower())] == [drivers[4]["id"]]
    assert [x["id"] for x in pages(d, "/v1/admin/drivers", 50, q=drivers[2]["id"])] == [drivers[2]["id"]]
    digits = "".join(ch for ch in riders[1]["phone"] if ch.isdigit())
    assert [x["id"] for x in pages(d, "/v1/admin/riders", 50, q=digits[-7:])] == [riders[1]["id"]]
    # a LIKE wildcard in the search is taken literally
    assert pages(d, "/v1/admin/riders", 50, q="%25") == []
    # operators too; the standing filter
    op, _ = operator_token(d)
    assert [x["id"] for x in pages(d, "/v1/admin/operators", 50, q=op["email"])] == [op["id"]]
    r = d.request("PATCH", f"/v1/admin/drivers/{drivers[0]['id']}", {"disabled": True}, headers=d.admin)
    assert r.status == 200
    assert [x["id"] for x in pages(d, "/v1/admin/drivers", 50, q=tag, disabled="true")] == [drivers[0]["id"]]
    assert len(pages(d, "/v1/admin/drivers", 50, q=tag, disabled="false")) == 6
    # refusals
    problem(d.get("/v1/admin/riders?disabled=maybe", headers=d.admin), 400, "validation-failed")
    problem(d.get("/v1/admin/riders?cursor=nope", headers=d.admin), 400, "validation-failed")
    problem(d.get("/v1/admin/riders?limit=501", headers=d.admin), 400, "validation-failed")
    problem(d.get("/v1/admin/riders?q=" + "x" * 101, headers=d.admin), 400, "validation-failed")
    problem(d.get("/v1/admin/riders"), 401, "unauthorized")
    _, rh = d.rider_session()
    problem(d.get("/v1/admin/riders", headers=rh), 403, "forbidden")


def test_edit_a_driver_and_the_vehicle(daemon, pg):
    d = daemon
    drv = d.create_driver(name="Before")
    other = d.create_driver()
    _, otok = operator_token(d)
    body = {"name": "After Name", "phone": "+1 555 0199",
            "vehicle": {"make": "Skoda", "model": "Octavia", "color": "Blue", "plate": "ED1T" + uuid.uuid4().hex[:4]}}
    r = d.request("PATCH", f"/v1/admin/drivers/{drv['id']}", body, headers=bearer(otok))
    assert r.status == 200, r
    got = r.json()
    assert got["name"] == "After Name" and got["phone"] == "+1 555 0199" and got["email"] == drv["email"]
    assert got["vehicle"] == dict(body["vehicle"], type="standard")
    row = pg.query(d.db, "SELECT name, vehicle_make, plate FROM drivers WHERE id = %s", (drv["id"],))[0]
    assert row == ("After Name", "Skoda", body["vehicle"]["plate"])
    # phone cleared with null; the driver can still log in (no credential change)
    r = d.request("PATCH", f"/v1/admin/drivers/{drv['id']}", {"phone": None}, headers=d.admin)
    assert r.status == 200 and r.json()["phone"] is None
    assert d.login("driver", drv["email"], "driver-pass-1")
    # another driver's plate (any case) or email: 409 naming the field
    p = problem(d.request("PATCH", f"/v1/admin/drivers/{drv['id']}",
                          {"vehicle": {"plate": other["vehicle"]["plate"].lower()}}, headers=d.admin), 409, "conflict")
    assert p["field"] == "vehicle.plate"
    p = problem(d.request("PATCH", f"/v1/admin/drivers/{drv['id']}", {"email": other["email"].upper()},
                          headers=d.admin), 409, "conflict")
    assert p["field"] == "email"
    # validation: an unknown vehicle type, a rider given a vehicle, a too-long name, an unknown member
    p = problem(d.request("PATCH", f"/v1/admin/drivers/{drv['id']}", {"vehicle": {"type": "hovercraft"}},
                          headers=d.admin), 400, "validation-failed")
    assert p["field"] == "vehicle.type"
    rider = d.create_rider()
    problem(d.request("PATCH", f"/v1/admin/riders/{rider['id']}", {"vehicle": {"plate": "X"}}, headers=d.admin), 400)
    problem(d.request("PATCH", f"/v1/admin/drivers/{drv['id']}", {"name": "n" * 101}, headers=d.admin), 400)
    problem(d.request("PATCH", f"/v1/admin/drivers/{drv['id']}", {"password": "x" * 10}, headers=d.admin), 400)
    problem(d.request("PATCH", f"/v1/admin/drivers/{uuid.uuid4()}", {"name": "Nobody"}, headers=d.admin), 404)
    r = d.request("PATCH", f"/v1/admin/riders/{rider['id']}", {"name": "Renamed Rider"}, headers=d.admin)
    assert r.status == 200 and r.json()["name"] == "Renamed Rider"


def test_disable_closes_the_socket_and_refuses_the_token_at_once(daemon):
    d = daemon
    drv, dh = d.driver_session()
    tok = dh["Authorization"].split()[1]
    c = RawWS(d, tok)
    assert c.status == 101
    _, otok = operator_token(d)
    r = d.request("PATCH", f"/v1/admin/drivers/{drv['id']}", {"disabled": True}, headers=bearer(otok))
    assert r.status == 200 and r.json()["disabled"] is True
    assert close_code(c) == (4003, "account disabled")
    c.close()
    problem(d.get("/v1/me", headers=dh), 403, "forbidden")
    assert RawWS(d, tok).status == 403
    assert d.request("PATCH", f"/v1/admin/drivers/{drv['id']}", {"disabled": False}, headers=d.admin).status == 200
    # enabling does not bring the old token back
    problem(d.get("/v1/me", headers=dh), 401, "unauthorized")
    assert d.login("driver", drv["email"], "driver-pass-1")


def test_password_reset_link_works_once(daemon):
    d = daemon
    drv, dh = d.driver_session()
    op, otok = operator_token(d)
    r = d.post(f"/v1/admin/drivers/{drv['id']}/password-reset", headers=bearer(otok))
    assert r.status == 201, r
    first = r.json()
    assert len(first["token"]) == 43 and first["path"] == "/console#reset=" + first["token"]
    assert r.headers.get("cache-control") == "no-store"
    # a second link voids the first
    second = d.post(f"/v1/admin/drivers/{drv['id']}/password-reset", headers=d.admin).json()
    p = problem(d.post("/v1/auth/password-reset", {"token": first["token"], "password": "new-pass-123"}), 403)
    assert p["field"] == "token"
    # too short a password: 400, and the link still works after
    problem(d.post("/v1/auth/password-reset", {"token": second["token"], "password": "short"}), 400)
    assert d.post("/v1/auth/password-reset", {"token": second["token"], "password": "new-pass-123"}).status == 204
    # the old password and the tokens under it end; the new one logs in
    problem(d.get("/v1/me", headers=dh), 401, "unauthorized")
    problem(d.post("/v1/auth/login", {"role": "driver", "email": drv["email"], "password": "driver-pass-1"}), 401)
    assert d.login("driver", drv["email"], "new-pass-123")
    # once only
    problem(d.post("/v1/auth/password-reset", {"token": second["token"], "password": "again-pass-123"}), 403)
    problem(d.post("/v1/auth/password-reset", {"token": "A" * 43, "password": "again-pass-123"}), 403)
    problem(d.post("/v1/auth/password-reset", {"token": "A" * 12, "password": "again-pass-123"}), 400)
    problem(d.post(f"/v1/admin/drivers/{uuid.uuid4()}/password-reset", headers=d.admin), 404, "not-found")
    problem(d.post(f"/v1/admin/riders/{drv['id']}/password-reset", headers=d.admin), 404, "not-found")
    problem(d.post(f"/v1/admin/drivers/{drv['id']}/password-reset", headers=dh), 401)


def test_delete_keeps_the_trips_and_erases_the_person(daemon, pg):
    d = daemon
    rider, rh = d.rider_session(phone="+1 555 0142")
    r = d.post("/v1/admin/riders/" + rider["id"] + "/password-reset", headers=d.admin)
    token = r.json()["token"]
    assert d.request("DELETE", f"/v1/admin/riders/{rider['id']}", headers=d.admin).status == 204
    row = pg.query(d.db, "SELECT email, name, phone, password_hash FROM riders WHERE id = %s", (rider["id"],))[0]
    assert row == (f"deleted-{rider['id']}@deleted.invalid", "deleted", None, "!")
    # gone from the search, and its reset link is dead
    assert pages(d, "/v1/admin/riders", 50, q=rider["id"]) == []
    problem(d.post("/v1/auth/password-reset", {"token": token, "password": "revived-pass-1"}), 403)


def cli(d, pg, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIDEHAIL_")}
    env.update({"RIDEHAIL_DATABASE_URL": pg.url(d.db), "RIDEHAIL_AUTH_JWT_SECRET": JWT_SECRET,
                "RIDEHAIL_ADMIN_TOKEN": ADMIN_TOKEN})
    return subprocess.run([RIDEHAILD, "admin"] + list(args), cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=30)


def test_the_same_from_the_cli(daemon, pg):
    d = daemon
    tag = uuid.uuid4().hex[:6]
    drivers = [d.create_driver(name=f"Cli {tag} {i}") for i in range(3)]
    other = d.create_driver()
    # list: one JSON per line, a page at a time
    r = cli(d, pg, "list", "--role", "driver", "--q", tag, "--limit", "2")
    assert r.returncode == 0, r.stderr
    first = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(first) == 2 and r.stderr.startswith("more: --cursor ")
    r = cli(d, pg, "list", "--role", "driver", "--q", tag, "--limit", "2", "--cursor", r.stderr.split()[-1])
    rest = [json.loads(line) for line in r.stdout.splitlines()]
    assert sorted(x["id"] for x in first + rest) == sorted(x["id"] for x in drivers) and r.stderr == ""
    assert cli(d, pg, "list", "--role", "pilot").returncode == 2
    assert cli(d, pg, "list", "--role", "driver", "--limit", "0").returncode == 2
    # edit: the daemon's validation and conflicts
    target = drivers[0]
    r = cli(d, pg, "edit", "--role", "driver", "--id", target["id"], "--plate", "CLI" + tag, "--color", "Red")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["vehicle"]["plate"] == "CLI" + tag
    assert d.get(f"/v1/admin/drivers/{target['id']}", headers=d.admin).json()["vehicle"]["color"] == "Red"
    r = cli(d, pg, "edit", "--role", "driver", "--id", target["id"], "--plate", other["vehicle"]["plate"])
    assert r.returncode == 1 and "another account has this plate" in r.stderr
    r = cli(d, pg, "edit", "--role", "driver", "--id", target["id"], "--vehicle-type", "hovercraft")
    assert r.returncode == 2 and "vehicle.type" in r.stderr
    assert cli(d, pg, "edit", "--role", "driver", "--id", target["id"]).returncode == 2
    assert cli(d, pg, "edit", "--role", "rider", "--id", target["id"], "--name", "X").returncode == 1
    # reset-password: a link the account holder redeems through the running daemon
    drv, dh = d.driver_session()
    c = RawWS(d, dh["Authorization"].split()[1])
    assert c.status == 101
    r = cli(d, pg, "reset-password", "--role", "driver", "--id", drv["id"])
    assert r.returncode == 0, r.stderr
    lines = dict(line.split(" ", 1) for line in r.stdout.splitlines())
    assert d.post("/v1/auth/password-reset", {"token": lines["token"], "password": "from-cli-pass"}).status == 204
    assert close_code(c) == (4001, "credentials changed; log in again")
    c.close()
    assert d.login("driver", drv["email"], "from-cli-pass")
    # disable from the CLI: the running daemon closes the socket
    drv2, dh2 = d.driver_session()
    c = RawWS(d, dh2["Authorization"].split()[1])
    assert c.status == 101
    r = cli(d, pg, "disable", "--role", "driver", "--id", drv2["id"])
    assert r.returncode == 0, r.stderr
    assert close_code(c) == (4003, "account disabled")
    c.close()
