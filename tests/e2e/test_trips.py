"""Trips: fare estimates and quotes, ride requests, the state machine with its
history and outbox rows, cancellation fees, final fares, receipts, ratings,
reading — against the real daemon and a real PostgreSQL."""
import base64
import hashlib
import hmac
import json
import math
import re
import threading
import time
import uuid
from pathlib import Path

import psycopg2
import pytest

from conftest import JWT_SECRET, Daemon, problem, wait_for
from test_presence import online_driver, token_of
from wsapp import Driver, run

UTRECHT = (52.0907, 5.1214)
# The state machine is exercised by hand here (the operator assigns drivers):
# automatic dispatch is tested in test_dispatch.py.
MANUAL = {"RIDEHAIL_MATCH_AUTO": "false"}


@pytest.fixture(scope="module")
def daemon(pg, tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("daemon"), db_url=pg.url(pg.create_db()), env=MANUAL)
    d.start()
    d.db = d.env["RIDEHAIL_DATABASE_URL"].rsplit("/", 1)[1]
    yield d
    d.stop()

DROPOFF = (52.1000, 5.1300)
ACTIVE = ("SEARCHING", "MATCHED", "ARRIVED", "IN_PROGRESS")


def place(p):
    return {"lat": p[0], "lng": p[1]}


def ride_body(pickup=UTRECHT, dropoff=DROPOFF, **extra):
    b = {"pickup": place(pickup), "dropoff": place(dropoff)}
    b.update(extra)
    return b


def estimate(d, pickup=UTRECHT, dropoff=DROPOFF, **q):
    qs = dict(pickup_lat=pickup[0], pickup_lng=pickup[1], dropoff_lat=dropoff[0], dropoff_lng=dropoff[1], **q)
    return d.get("/v1/estimate?" + "&".join(f"{k}={v}" for k, v in qs.items()))


def request_ride(d, rider_hdr, key=None, **body):
    h = dict(rider_hdr)
    if key:
        h["Idempotency-Key"] = key
    return d.post("/v1/rides", ride_body(**body), headers=h)


def sql(d, pg, query, params=None):
    return pg.query(d.db, query, params)


# The database answers a trip as the row its view is made of (trip_view():
# {"trip_row": [...]}); the daemon renders it. Its columns by name and
# position, from their one definition:
ROW = {m.group(1): i for i, m in enumerate(re.finditer(
    r"^TRIP_ROW\(\w+, (\w+), ", (Path(__file__).resolve().parents[2] / "include" / "trip" / "trip_row.def").read_text(),
    re.M))}


def col(body, name):
    """A column of the trip row in one of the database's answers (a refusal
    has no row: its own member of that name, {state, version...})."""
    return body["trip_row"][ROW[name]] if "trip_row" in body else body.get(name)


def make_available(d, pg, driver_id):
    """Setup shortcut: the driver as the WebSocket 'available' leaves it in the
    database (the walk test below does it through the real socket)."""
    sql(d, pg, "UPDATE drivers SET status = 'available', version = version + 1 WHERE id = %s", (driver_id,))


def outbox(d, pg, trip_id):
    return sql(d, pg, "SELECT aggregate_seq, event_type, event_version, producer, correlation_id::text, payload,"
                      " event_id::text, occurred_at FROM outbox WHERE aggregate_id = %s ORDER BY aggregate_seq",
               (trip_id,))


def history(d, pg, trip_id):
    return sql(d, pg, "SELECT seq, from_state, to_state, actor_role, actor_id FROM trip_events WHERE trip_id = %s"
                      " ORDER BY seq", (trip_id,))


def counts(d, pg, trip_id):
    return (len(outbox(d, pg, trip_id)), len(history(d, pg, trip_id)))


def driver_row(d, pg, driver_id):
    return sql(d, pg, "SELECT status, version FROM drivers WHERE id = %s", (driver_id,))[0]


def new_trip(d, pg, **body):
    """A rider with a SEARCHING trip: (rider, rider headers, trip)."""
    rider, rh = d.rider_session()
    r = request_ride(d, rh, **body)
    assert r.status == 201, r
    return rider, rh, r.json()


def matched_trip(d, pg):
    rider, rh, trip = new_trip(d, pg)
    drv, dh = d.driver_session()
    make_available(d, pg, drv["id"])
    r = d.post(f"/v1/rides/{trip['id']}/assign", {"driver_id": drv["id"]}, headers=d.admin)
    assert r.status == 200, r
    return rider, rh, drv, dh, r.json()


def fare_of(est):
    f = est["fare"]
    sub = round((f["base"] + f["distance"] + f["time"]) * f["surge_multiplier"])
    return max(sub, f["minimum"]) + f["booking_fee"]


# ---------------------------------------------------------------- estimates

def test_estimate_straight_line(daemon):
    r = estimate(daemon)
    assert r.status == 200, r
    e = r.json()
    assert e["method"] == "straight_line" and e["vehicle_type"] == "standard"
    line = haversine(UTRECHT, DROPOFF)
    assert abs(e["distance_m"] - round(line * 1.3)) <= 1
    assert abs(e["duration_s"] - e["distance_m"] / (25 / 3.6)) <= 1
    f = e["fare"]
    assert f["currency"] == "USD" and f["base"] == 250 and f["minimum"] == 700 and f["surge_multiplier"] == 1
    assert f["distance"] == (156 * e["distance_m"] + 500) // 1000
    assert f["time"] == (30 * e["duration_s"] + 30) // 60
    assert f["total"] == fare_of(e)
    assert e["quote_id"].startswith("q2.") and e["expires_at"].endswith("Z")
    # no driver online: both members are there, null (as docs/api.md says)
    assert "nearest_driver_m" in e and e["nearest_driver_m"] is None and e["pickup_eta_s"] is None
    # a longer trip is above the minimum: the formula shows
    far = estimate(daemon, dropoff=(52.20, 5.25)).json()
    assert far["fare"]["total"] == fare_of(far) > 700


def haversine(a, b):
    la1, lo1, la2, lo2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = math.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    return 2 * 6371008.8 * math.asin(math.sqrt(h))


def test_estimate_has_pickup_eta_of_nearest_available_driver(daemon):
    async def go():
        near = (UTRECHT[0] + 0.005, UTRECHT[1])
        drv, app = await online_driver(daemon, lat=near[0], lon=near[1])
        e = wait_for(lambda: (lambda j: j if j["pickup_eta_s"] is not None else None)(estimate(daemon).json()),
                     what="an ETA")
        dist = haversine(near, UTRECHT)
        assert abs(e["nearest_driver_m"] - dist * 1.3) < 5
        assert abs(e["pickup_eta_s"] - dist * 1.3 / (25 / 3.6)) <= 2
        await app.close()
    run(go())


@pytest.mark.parametrize("query,field,rule", [
    ("pickup_lng=5.1&dropoff_lat=52.1&dropoff_lng=5.13", "pickup_lat", "required"),
    ("pickup_lat=91&pickup_lng=5.1&dropoff_lat=52.1&dropoff_lng=5.13", "pickup_lat", "maximum"),
    ("pickup_lat=52&pickup_lng=-181&dropoff_lat=52.1&dropoff_lng=5.13", "pickup_lng", "minimum"),
    ("pickup_lat=NaN&pickup_lng=5.1&dropoff_lat=52.1&dropoff_lng=5.13", "pickup_lat", "type"),
    ("pickup_lat=52&pickup_lng=5.1&dropoff_lat=x&dropoff_lng=5.13", "dropoff_lat", "type"),
    ("pickup_lat=52&pickup_lng=5.1&dropoff_lat=52.1&dropoff_lng=5.13&vehicle_type=limo", "vehicle_type", "enum"),
])
def test_estimate_validation(daemon, query, field, rule):
    body = problem(daemon.get("/v1/estimate?" + query), 400, "validation-failed")
    assert body["field"] == field and body["rule"] == rule


def test_estimate_same_place_is_unprocessable(daemon):
    body = problem(estimate(daemon, dropoff=(UTRECHT[0] + 0.0001, UTRECHT[1])), 422, "unprocessable")
    assert body["field"] == "dropoff"


# ---------------------------------------------------------------- quotes

def quote_key():
    """The daemon derives its quote key from the token secret (BLAKE2b-256 of
    a context string and the secret): tests can forge only because they know
    the secret."""
    return hashlib.blake2b(b"ridehail quote key v1\0" + JWT_SECRET.encode(), digest_size=32).digest()


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def unb64(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def resign(quote_id, edit):
    """Decodes a quote, applies edit to its fields, signs it again."""
    _, body, _ = quote_id.split(".")
    fields = unb64(body).decode().split("|")
    edit(fields)
    signed = "q2." + b64("|".join(fields).encode())
    return signed + "." + b64(hashlib.blake2b(signed.encode(), key=quote_key(), digest_size=32).digest())


def test_quote_is_honoured_and_tamper_proof(daemon, pg):
    e = estimate(daemon, dropoff=(52.20, 5.25)).json()
    assert resign(e["quote_id"], lambda f: None) == e["quote_id"]  # we understand the format
    rider, rh = daemon.rider_session()
    # tampered total with the old signature
    _, body, sig = e["quote_id"].split(".")
    fields = unb64(body).decode().split("|")
    fields[12] = "1"
    forged = "q2." + b64("|".join(fields).encode()) + "." + sig
    # (a signature's last two characters replaced by others: "AA", or "QA"
    # when it ends in "AA", one time in 1,024, when "AA" would be itself)
    resigned = e["quote_id"][:-2] + ("QA" if e["quote_id"].endswith("AA") else "AA")
    for bad in (forged, "q1." + body + "." + sig, "q2.abc.def", "nonsense", resigned):
        b = problem(request_ride(daemon, rh, dropoff=(52.20, 5.25), quote_id=bad), 422, "quote-invalid")
        assert b["field"] == "quote_id"
    # expired (signed with the real key, so only the expiry is wrong)
    expired = resign(e["quote_id"], lambda f: f.__setitem__(18, str(int(time.time() * 1000) - 1000)))
    problem(request_ride(daemon, rh, dropoff=(52.20, 5.25), quote_id=expired), 422, "quote-expired")
    # another trip or vehicle type
    b = problem(request_ride(daemon, rh, dropoff=(52.30, 5.25), quote_id=e["quote_id"]), 422, "quote-mismatch")
    assert b["field"] == "dropoff"
    other = resign(e["quote_id"], lambda f: f.__setitem__(0, "premium"))
    b = problem(request_ride(daemon, rh, dropoff=(52.20, 5.25), quote_id=other), 422, "quote-mismatch")
    assert b["field"] == "vehicle_type"
    assert sql(daemon, pg, "SELECT count(*) FROM trips WHERE rider_id = %s", (rider["id"],))[0][0] == 0
    # the real one: the quoted price, even if the tariff said otherwise now
    cheap = resign(e["quote_id"], lambda f: f.__setitem__(12, "1234"))
    r = request_ride(daemon, rh, dropoff=(52.2001, 5.2501), quote_id=cheap)
    assert r.status == 201, r
    t = r.json()
    assert t["fare"]["quoted"] == 1234 and t["fare"]["quote_id"] == cheap
    # a quote of the older format (HMAC-SHA-256, given out before an upgrade)
    # is honoured too, but only with its own MAC (refused above with q2's)
    v1 = "q1." + b64("|".join(unb64(body).decode().split("|")[:12] + ["987"] +
                              unb64(body).decode().split("|")[13:]).encode())
    v1 += "." + b64(hmac.new(quote_key(), v1.encode(), hashlib.sha256).digest())
    _, rh2 = daemon.rider_session()
    r = request_ride(daemon, rh2, dropoff=(52.2001, 5.2501), quote_id=v1)
    assert r.status == 201, r
    assert r.json()["fare"]["quoted"] == 987


# ---------------------------------------------------------------- requests

def test_ride_request_creates_a_searching_trip_with_its_events(daemon, pg):
    rider, rh = daemon.rider_session()
    e = estimate(daemon).json()
    r = request_ride(daemon, rh, quote_id=e["quote_id"],
                     pickup=UTRECHT, dropoff=DROPOFF)
    assert r.status == 201, r
    t = r.json()
    assert r.headers["location"] == f"/v1/rides/{t['id']}"
    assert t["state"] == "SEARCHING" and t["version"] == 1 and t["rider_id"] == rider["id"]
    assert t["fare"]["quoted"] == e["fare"]["total"] and t["estimate"]["method"] == "straight_line"
    assert t["pickup"] == place(UTRECHT) and t["dropoff"] == place(DROPOFF)
    assert history(daemon, pg, t["id"]) == [(1, None, "SEARCHING", "rider", rider["id"])]
    ev = outbox(daemon, pg, t["id"])
    assert [(x[0], x[1]) for x in ev] == [(1, "trip.requested"), (2, "price.calculated")]
    for seq, etype, ver, producer, corr, payload, event_id, _ in ev:
        assert ver == 1 and producer == "ridehaild" and corr == t["id"] and uuid.UUID(event_id)
    req = ev[0][5]
    assert req["trip_id"] == t["id"] and req["passenger_id"] == rider["id"]
    assert req["pickup_location"] == {"lat": UTRECHT[0], "lon": UTRECHT[1]}
    assert req["fare"] == {"currency": "USD", "amount": e["fare"]["total"] / 100}
    price = ev[1][5]
    assert price["total_fare"] == e["fare"]["total"] / 100 and price["surge_multiplier"] == 1


def test_idempotency_key(daemon, pg):
    rider, rh = daemon.rider_session()
    key = str(uuid.uuid4())
    first = request_ride(daemon, rh, key=key)
    assert first.status == 201, first
    again = request_ride(daemon, rh, key=key)
    assert again.status == 201 and again.headers.get("idempotent-replayed") == "true"
    assert again.json()["id"] == first.json()["id"]
    assert sql(daemon, pg, "SELECT count(*) FROM trips WHERE rider_id = %s", (rider["id"],))[0][0] == 1
    assert counts(daemon, pg, first.json()["id"]) == (2, 1)
    b = problem(request_ride(daemon, rh, key=key, dropoff=(52.2, 5.2)), 422, "idempotency-key-reused")
    assert b["field"] == "Idempotency-Key"
    # another key while the trip is active: the one-active-trip rule
    b = problem(request_ride(daemon, rh, key="other-key"), 409, "active-trip")
    assert b["active_trip_id"] == first.json()["id"]
    for bad in ("", "x" * 256, "has space"):
        b = problem(daemon.post("/v1/rides", ride_body(), headers=dict(rh, **{"Idempotency-Key": bad})),
                    400, "validation-failed")
        assert b["field"] == "Idempotency-Key"


def parallel(n, fn):
    out = [None] * n
    barrier = threading.Barrier(n)

    def one(i):
        barrier.wait()
        out[i] = fn(i)
    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


def test_one_active_trip_per_rider_under_concurrency(daemon, pg):
    rider, rh = daemon.rider_session()
    res = parallel(8, lambda i: request_ride(daemon, rh, key=f"k{i}"))
    assert sorted(r.status for r in res) == [201] + [409] * 7, res
    # the same key from many threads: one trip, every answer that trip
    rider2, rh2 = daemon.rider_session()
    res = parallel(8, lambda i: request_ride(daemon, rh2, key="same"))
    assert {r.status for r in res} == {201}, res
    assert len({r.json()["id"] for r in res}) == 1
    for who in (rider, rider2):
        assert sql(daemon, pg, "SELECT count(*) FROM trips WHERE rider_id = %s", (who["id"],))[0][0] == 1


@pytest.mark.parametrize("body,field,rule", [
    ({"dropoff": {"lat": 52.1, "lng": 5.13}}, "pickup", "required"),
    ({"pickup": {"lat": 91, "lng": 5.1}, "dropoff": {"lat": 52.1, "lng": 5.13}}, "pickup.lat", "maximum"),
    ({"pickup": {"lat": 52, "lng": 5.1}, "dropoff": {"lat": 52.1, "lng": 181}}, "dropoff.lng", "maximum"),
    ({"pickup": {"lat": "52", "lng": 5.1}, "dropoff": {"lat": 52.1, "lng": 5.1}}, "pickup.lat", "type"),
    ({"pickup": {"lat": 52, "lng": 5.1}, "dropoff": {"lat": 52.1, "lng": 5.13}, "vehicle_type": "limo"},
     "vehicle_type", "enum"),
    ({"pickup": {"lat": 52, "lng": 5.1}, "dropoff": {"lat": 52.1, "lng": 5.13}, "fare": 1}, "fare",
     "additionalProperties"),
    ({"pickup": {"lat": 52, "lng": 5.1, "address": "x" * 201}, "dropoff": {"lat": 52.1, "lng": 5.13}},
     "pickup.address", "maxLength"),
])
def test_ride_request_validation(daemon, pg, body, field, rule):
    rider, rh = daemon.rider_session()
    b = problem(daemon.post("/v1/rides", body, headers=rh), 400, "validation-failed")
    assert b["field"] == field and b["rule"] == rule
    assert sql(daemon, pg, "SELECT count(*) FROM trips WHERE rider_id = %s", (rider["id"],))[0][0] == 0


def test_ride_request_refusals(daemon, pg):
    rider, rh = daemon.rider_session()
    b = problem(request_ride(daemon, rh, dropoff=(UTRECHT[0], UTRECHT[1] + 0.0001)), 422, "unprocessable")
    assert b["field"] == "dropoff"
    problem(daemon.post("/v1/rides", ride_body()), 401, "unauthorized")
    drv, dh = daemon.driver_session()
    problem(daemon.post("/v1/rides", ride_body(), headers=dh), 403, "forbidden")
    problem(daemon.post("/v1/rides", b"{", headers=dict(rh, **{"Content-Type": "application/json"})), 400,
            "invalid-json")
    assert sql(daemon, pg, "SELECT count(*) FROM trips WHERE rider_id = %s", (rider["id"],))[0][0] == 0


def test_ride_requests_are_rate_limited(make_daemon):
    d = make_daemon(env=dict(MANUAL, RIDEHAIL_TRIP_RIDES_PER_MINUTE="3"))
    rider, rh = d.rider_session()
    codes = [request_ride(d, rh, key=f"k{i}").status for i in range(3)]
    assert codes == [201, 409, 409]
    r = request_ride(d, rh, key="k9")
    problem(r, 429, "rate-limited")
    assert int(r.headers["retry-after"]) >= 1
    # another rider is not affected
    other, oh = d.rider_session()
    assert request_ride(d, oh).status == 201


# ---------------------------------------------------------------- the state machine

def check_step(d, pg, trip_id, before, from_state, to_state, role, actor, etypes):
    """Exactly one history row and the expected outbox rows since `before`."""
    ob, hi = counts(d, pg, trip_id)
    assert hi == before[1] + 1, history(d, pg, trip_id)
    assert ob == before[0] + len(etypes), outbox(d, pg, trip_id)
    last = history(d, pg, trip_id)[-1]
    assert last[1:] == (from_state, to_state, role, actor), last
    ev = outbox(d, pg, trip_id)
    assert [x[1] for x in ev[before[0]:]] == etypes
    assert [x[0] for x in ev] == list(range(1, ob + 1))  # per-trip sequence without gaps
    return (ob, hi), ev[before[0]:]


def test_walk_every_legal_edge_to_completion(daemon, pg):
    rider, rh, trip = new_trip(daemon, pg)
    drv, dh = daemon.driver_session()

    async def walk():
        tok = token_of(dh)
        app = await Driver.connect(daemon, tok, drv["id"])
        await app.recv("driver.status.changed")
        await app.go("available")
        await app.ping(*UTRECHT, heading_deg=0, speed_kmh=0, accuracy_m=5, source="gps")
        wait_for(lambda: driver_row(daemon, pg, drv["id"])[0] == "available", what="available in the db")
        tid = trip["id"]
        state = counts(daemon, pg, tid)
        v0 = driver_row(daemon, pg, drv["id"])[1]

        r = daemon.post(f"/v1/rides/{tid}/assign", {"driver_id": drv["id"], "driver_version": v0}, headers=daemon.admin)
        assert r.status == 200, r
        t = r.json()
        assert t["state"] == "MATCHED" and t["version"] == 2 and t["driver"]["id"] == drv["id"]
        assert t["driver"]["vehicle"]["plate"] == drv["vehicle"]["plate"] and t["matched_at"]
        assert driver_row(daemon, pg, drv["id"]) == ("en_route", v0 + 1)
        state, ev = check_step(daemon, pg, tid, state, "SEARCHING", "MATCHED", "operator", "admin",
                               ["trip.accepted"])
        assert ev[0][5]["driver_id"] == drv["id"] and ev[0][5]["trip_id"] == tid
        # presence took the driver out of the available pool at once
        near = daemon.get(f"/v1/drivers/nearby?lat={UTRECHT[0]}&lng={UTRECHT[1]}", headers=daemon.admin).json()
        assert drv["id"] not in [x.get("driver_id") for x in near["drivers"]]

        r = daemon.post(f"/v1/rides/{tid}/arrived", headers=dh)
        assert r.status == 200 and r.json()["state"] == "ARRIVED", r
        state, _ = check_step(daemon, pg, tid, state, "MATCHED", "ARRIVED", "driver", drv["id"],
                              ["trip.driver_arrived"])
        # the same transition again: the same answer, nothing written
        again = daemon.post(f"/v1/rides/{tid}/arrived", headers=dh)
        assert again.status == 200 and again.headers.get("idempotent-replayed") == "true"
        assert again.json() == r.json()
        assert counts(daemon, pg, tid) == state

        r = daemon.post(f"/v1/rides/{tid}/start", {"expected_version": 3}, headers=dh)
        assert r.status == 200 and r.json()["state"] == "IN_PROGRESS", r
        assert driver_row(daemon, pg, drv["id"]) == ("on_trip", v0 + 2)
        state, ev = check_step(daemon, pg, tid, state, "ARRIVED", "IN_PROGRESS", "driver", drv["id"],
                               ["trip.started"])
        assert ev[0][5]["start_location"] == {"lat": UTRECHT[0], "lon": UTRECHT[1]}

        est = trip["estimate"]
        r = daemon.post(f"/v1/rides/{tid}/complete", {"distance_m": est["distance_m"], "duration_s": est["duration_s"],
                                                       "end_location": place(DROPOFF)}, headers=dh)
        assert r.status == 200, r
        t = r.json()
        assert t["state"] == "COMPLETED" and t["fare"]["final"] == trip["fare"]["quoted"]
        assert t["fare"]["metered"] == trip["fare"]["quoted"]  # metered as estimated: exactly the quote
        assert t["fare"]["needs_review"] is False
        assert driver_row(daemon, pg, drv["id"]) == ("available", v0 + 3)
        state, ev = check_step(daemon, pg, tid, state, "IN_PROGRESS", "COMPLETED", "driver", drv["id"],
                               ["trip.finished", "price.calculated"])
        fin = ev[0][5]
        assert fin["fare"] == {"currency": "USD", "amount": trip["fare"]["quoted"] / 100}
        assert fin["duration_sec"] == est["duration_s"] and fin["distance_km"] == round(est["distance_m"] / 1000, 3)
        assert fin["end_location"] == {"lat": DROPOFF[0], "lon": DROPOFF[1]}
        # and available in the grid again
        wait_for(lambda: drv["id"] in [x.get("driver_id") for x in daemon.get(
            f"/v1/drivers/nearby?lat={UTRECHT[0]}&lng={UTRECHT[1]}", headers=daemon.admin).json()["drivers"]],
            what="back in the grid")

        # reading it back: the timeline
        g = daemon.get(f"/v1/rides/{tid}", headers=rh).json()
        assert [x["to"] for x in g["timeline"]] == ["SEARCHING", "MATCHED", "ARRIVED", "IN_PROGRESS", "COMPLETED"]
        assert all(x["at"].endswith("Z") for x in g["timeline"])
        rec = daemon.get(f"/v1/rides/{tid}/receipt", headers=rh)
        assert rec.status == 200, rec
        rec = rec.json()
        assert rec["total"] == trip["fare"]["quoted"] and sum(x["amount"] for x in rec["lines"]) == rec["total"]
        await app.close()
    run(walk())


def test_illegal_transitions_are_refused_and_change_nothing(daemon, pg):
    rider, rh, trip = new_trip(daemon, pg)
    tid = trip["id"]
    before = counts(daemon, pg, tid)
    for step in ("arrived", "start", "complete"):
        # a driver not assigned to the trip cannot even see it
        drv, dh = daemon.driver_session()
        problem(daemon.post(f"/v1/rides/{tid}/{step}", {"distance_m": 1, "duration_s": 1} if step == "complete"
                            else None, headers=dh), 404, "not-found")
        # the operator can, and is told the state
        b = problem(daemon.post(f"/v1/rides/{tid}/{step}", {"distance_m": 1, "duration_s": 1} if step == "complete"
                                else None, headers=daemon.admin), 409, "trip-state")
        assert b["state"] == "SEARCHING" and b["reason"] == "illegal_transition"
    assert counts(daemon, pg, tid) == before

    rider, rh, drv, dh, t = matched_trip(daemon, pg)
    tid = t["id"]
    before = counts(daemon, pg, tid)
    b = problem(daemon.post(f"/v1/rides/{tid}/start", headers=dh), 409, "trip-state")
    assert b["state"] == "MATCHED"
    b = problem(daemon.post(f"/v1/rides/{tid}/complete", {"distance_m": 1, "duration_s": 1}, headers=dh),
                409, "trip-state")
    other, _ = daemon.driver_session()
    make_available(daemon, pg, other["id"])
    b = problem(daemon.post(f"/v1/rides/{tid}/assign", {"driver_id": other["id"]}, headers=daemon.admin),
                409, "trip-state")
    assert b["reason"] == "already_matched"
    b = problem(daemon.post(f"/v1/rides/{tid}/arrived", {"expected_version": 1}, headers=dh), 409, "conflict")
    assert b["reason"] == "version_conflict" and b["version"] == 2
    assert counts(daemon, pg, tid) == before
    assert driver_row(daemon, pg, other["id"])[0] == "available"

    # in progress: the rider cannot cancel, the operator can
    assert daemon.post(f"/v1/rides/{tid}/arrived", headers=dh).status == 200
    assert daemon.post(f"/v1/rides/{tid}/start", headers=dh).status == 200
    b = problem(daemon.post(f"/v1/rides/{tid}/cancel", headers=rh), 409, "trip-state")
    assert b["reason"] == "trip_in_progress" and b["state"] == "IN_PROGRESS"
    b = problem(daemon.post(f"/v1/rides/{tid}/cancel", headers=dh), 409, "trip-state")
    r = daemon.post(f"/v1/rides/{tid}/cancel", {"reason": "safety_incident"}, headers=daemon.admin)
    assert r.status == 200 and r.json()["cancellation"] == {"by": "operator", "reason": "safety_incident", "fee": 0}
    assert driver_row(daemon, pg, drv["id"])[0] == "available"
    # finished is final
    for step, body in (("arrived", None), ("start", None), ("complete", {"distance_m": 1, "duration_s": 1})):
        b = problem(daemon.post(f"/v1/rides/{tid}/{step}", body, headers=daemon.admin), 409, "trip-state")
        assert b["state"] == "CANCELLED" and b["reason"] == "trip_finished"
    # a cancellation repeated by the same hand is the idempotent no-op
    again = daemon.post(f"/v1/rides/{tid}/cancel", headers=daemon.admin)
    assert again.status == 200 and again.headers.get("idempotent-replayed") == "true"


def test_no_driver_is_dispatched_twice(daemon, pg):
    """Two trips race for one driver, and two drivers for one trip: one wins each time."""
    drv, dh = daemon.driver_session()
    make_available(daemon, pg, drv["id"])
    trips = [new_trip(daemon, pg)[2]["id"] for _ in range(6)]
    res = parallel(6, lambda i: daemon.post(f"/v1/rides/{trips[i]}/assign", {"driver_id": drv["id"]},
                                            headers=daemon.admin))
    assert sorted(r.status for r in res) == [200] + [409] * 5, res
    assert all(r.json()["type"].endswith("/driver-unavailable") for r in res if r.status == 409)
    assert sql(daemon, pg, "SELECT count(*) FROM trips WHERE driver_id = %s", (drv["id"],))[0][0] == 1

    _, _, trip = new_trip(daemon, pg)
    drivers = [daemon.driver_session()[0] for _ in range(6)]
    for x in drivers:
        make_available(daemon, pg, x["id"])
    res = parallel(6, lambda i: daemon.post(f"/v1/rides/{trip['id']}/assign", {"driver_id": drivers[i]["id"]},
                                            headers=daemon.admin))
    assert sorted(r.status for r in res) == [200] + [409] * 5, res
    winner = [drivers[i]["id"] for i, r in enumerate(res) if r.status == 200][0]
    statuses = {x["id"]: driver_row(daemon, pg, x["id"])[0] for x in drivers}
    assert statuses.pop(winner) == "en_route" and set(statuses.values()) == {"available"}
    assert len(history(daemon, pg, trip["id"])) == 2  # SEARCHING, MATCHED: once


def test_assign_checks_the_driver(daemon, pg):
    _, _, trip = new_trip(daemon, pg)
    drv, _ = daemon.driver_session()  # offline
    b = problem(daemon.post(f"/v1/rides/{trip['id']}/assign", {"driver_id": drv["id"]}, headers=daemon.admin),
                409, "driver-unavailable")
    make_available(daemon, pg, drv["id"])
    v = driver_row(daemon, pg, drv["id"])[1]
    problem(daemon.post(f"/v1/rides/{trip['id']}/assign", {"driver_id": drv["id"], "driver_version": v - 1},
                        headers=daemon.admin), 409, "driver-unavailable")
    problem(daemon.post(f"/v1/rides/{trip['id']}/assign", {"driver_id": "nope"}, headers=daemon.admin),
            400, "validation-failed")
    problem(daemon.post(f"/v1/rides/{trip['id']}/assign", {}, headers=daemon.admin), 400, "validation-failed")
    rider, rh = daemon.rider_session()
    problem(daemon.post(f"/v1/rides/{trip['id']}/assign", {"driver_id": drv["id"]}, headers=rh), 403, "forbidden")
    assert counts(daemon, pg, trip["id"]) == (2, 1)
    assert daemon.post(f"/v1/rides/{trip['id']}/assign", {"driver_id": drv["id"], "driver_version": v},
                       headers=daemon.admin).status == 200
    # the same assignment again (however the id is spelled) is the no-op
    again = daemon.post(f"/v1/rides/{trip['id']}/assign", {"driver_id": drv["id"].upper()}, headers=daemon.admin)
    assert again.status == 200 and again.headers.get("idempotent-replayed") == "true", again
    assert counts(daemon, pg, trip["id"]) == (3, 2)


# ---------------------------------------------------------------- cancellation and fees

def test_cancellation_is_free_while_searching_and_in_grace(daemon, pg):
    rider, rh, trip = new_trip(daemon, pg)
    before = counts(daemon, pg, trip["id"])
    r = daemon.post(f"/v1/rides/{trip['id']}/cancel", {"reason": "changed_mind"}, headers=rh)
    assert r.status == 200, r
    assert r.json()["cancellation"] == {"by": "rider", "reason": "changed_mind", "fee": 0}
    _, ev = check_step(daemon, pg, trip["id"], before, "SEARCHING", "CANCELLED", "rider", rider["id"],
                       ["trip.cancelled"])
    assert ev[0][5]["fee"] == {"currency": "USD", "amount": 0} and ev[0][5]["state_before"] == "SEARCHING"
    problem(daemon.get(f"/v1/rides/{trip['id']}/receipt", headers=rh), 409, "trip-state")  # nothing charged
    # the rider can ride again
    assert request_ride(daemon, rh).status == 201

    rider, rh, drv, dh, t = matched_trip(daemon, pg)  # default grace: 2 minutes
    r = daemon.post(f"/v1/rides/{t['id']}/cancel", headers=rh)
    assert r.status == 200 and r.json()["cancellation"]["fee"] == 0
    assert driver_row(daemon, pg, drv["id"])[0] == "available"


def test_cancellation_fees(make_daemon, pg):
    d = make_daemon(env={**MANUAL, "RIDEHAIL_TRIP_CANCEL_GRACE": "0s", "RIDEHAIL_TRIP_NO_SHOW_WAIT": "0s",
                         "RIDEHAIL_TARIFF_STANDARD_CANCEL_FEE": "450", "RIDEHAIL_TARIFF_STANDARD_NO_SHOW_FEE": "650"})
    rider, rh, drv, dh, t = matched_trip(d, pg)
    before = counts(d, pg, t["id"])
    r = d.post(f"/v1/rides/{t['id']}/cancel", headers=rh)
    assert r.status == 200 and r.json()["cancellation"] == {"by": "rider", "reason": "rider_cancelled", "fee": 450}
    _, ev = check_step(d, pg, t["id"], before, "MATCHED", "CANCELLED", "rider", rider["id"], ["trip.cancelled"])
    assert ev[0][5]["fee"] == {"currency": "USD", "amount": 4.5}
    rec = d.get(f"/v1/rides/{t['id']}/receipt", headers=rh)
    assert rec.status == 200 and rec.json()["total"] == 450, rec
    assert rec.json()["lines"] == [{"item": "cancellation_fee", "amount": 450, "reason": "rider_cancelled"}]

    # the driver waited at the pickup: a no-show
    rider, rh, drv, dh, t = matched_trip(d, pg)
    assert d.post(f"/v1/rides/{t['id']}/arrived", headers=dh).status == 200
    r = d.post(f"/v1/rides/{t['id']}/cancel", headers=dh)
    assert r.status == 200
    assert r.json()["cancellation"] == {"by": "driver", "reason": "rider_no_show", "fee": 650}

    # a driver cancelling before arriving costs the rider nothing
    rider, rh, drv, dh, t = matched_trip(d, pg)
    r = d.post(f"/v1/rides/{t['id']}/cancel", {"reason": "vehicle_problem"}, headers=dh)
    assert r.json()["cancellation"] == {"by": "driver", "reason": "vehicle_problem", "fee": 0}


# ---------------------------------------------------------------- final fare

def drive_to_completion(d, pg, body):
    rider, rh, drv, dh, t = matched_trip(d, pg)
    assert d.post(f"/v1/rides/{t['id']}/arrived", headers=dh).status == 200
    assert d.post(f"/v1/rides/{t['id']}/start", headers=dh).status == 200
    r = d.post(f"/v1/rides/{t['id']}/complete", body(t), headers=dh)
    assert r.status == 200, r
    return rider, rh, drv, dh, r.json()


def test_final_fare_upfront_within_tolerance_metered_beyond(daemon, pg):
    # a bit longer than estimated (within 25 %): the upfront price
    _, rh, _, _, t = drive_to_completion(daemon, pg, lambda t: {
        "distance_m": int(t["estimate"]["distance_m"] * 1.2), "duration_s": int(t["estimate"]["duration_s"] * 1.2)})
    assert t["fare"]["final"] == t["fare"]["quoted"] and not t["fare"]["needs_review"]
    # far longer: the metered fare, flagged for review
    _, rh, _, _, t = drive_to_completion(daemon, pg, lambda t: {"distance_m": 9000, "duration_s": 1800})
    metered = max(250 + (156 * 9000 + 500) // 1000 + (30 * 1800 + 30) // 60, 700)
    assert t["fare"]["metered"] == metered == t["fare"]["final"] and t["fare"]["needs_review"] is True
    rec = daemon.get(f"/v1/rides/{t['id']}/receipt", headers=rh).json()
    assert rec["total"] == metered and sum(x["amount"] for x in rec["lines"]) == metered
    assert rec["needs_review"] is True and rec["upfront_fare"] == t["fare"]["quoted"]


@pytest.mark.parametrize("body,field,rule", [
    ({}, "distance_m", "required"),
    ({"distance_m": -1, "duration_s": 10}, "distance_m", "minimum"),
    ({"distance_m": 1.5, "duration_s": 10}, "distance_m", "type"),
    ({"distance_m": 10, "duration_s": 10, "end_location": {"lat": 100, "lng": 0}}, "end_location.lat", "maximum"),
])
def test_complete_validation(daemon, pg, body, field, rule):
    rider, rh, drv, dh, t = matched_trip(daemon, pg)
    b = problem(daemon.post(f"/v1/rides/{t['id']}/complete", body, headers=dh), 400, "validation-failed")
    assert b["field"] == field and b["rule"] == rule


# ---------------------------------------------------------------- reading

def test_who_sees_which_trip(daemon, pg):
    rider, rh, drv, dh, t = matched_trip(daemon, pg)
    tid = t["id"]
    assert daemon.get(f"/v1/rides/{tid}", headers=rh).status == 200
    assert daemon.get(f"/v1/rides/{tid}", headers=dh).status == 200
    assert daemon.get(f"/v1/rides/{tid}", headers=daemon.admin).status == 200
    other_rider, orh = daemon.rider_session()
    other_driver, odh = daemon.driver_session()
    for h in (orh, odh):
        problem(daemon.get(f"/v1/rides/{tid}", headers=h), 404, "not-found")
        problem(daemon.post(f"/v1/rides/{tid}/cancel", headers=h), 404, "not-found")
    problem(daemon.get(f"/v1/rides/{uuid.uuid4()}", headers=rh), 404, "not-found")
    b = problem(daemon.get("/v1/rides/not-a-uuid", headers=rh), 400, "validation-failed")
    assert b["field"] == "id"
    problem(daemon.get(f"/v1/rides/{tid}"), 401, "unauthorized")
    assert counts(daemon, pg, tid) == (3, 2)


def test_listing_newest_first_with_cursor(daemon, pg):
    rider, rh = daemon.rider_session()
    ids = []
    for _ in range(5):
        r = request_ride(daemon, rh)
        assert r.status == 201, r
        ids.append(r.json()["id"])
        assert daemon.post(f"/v1/rides/{ids[-1]}/cancel", headers=rh).status == 200
    seen, cursor = [], None
    while True:
        r = daemon.get("/v1/rides?limit=2" + (f"&cursor={cursor}" if cursor else ""), headers=rh)
        assert r.status == 200, r
        page = r.json()
        seen += [x["id"] for x in page["items"]]
        assert len(page["items"]) <= 2
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ids[::-1]
    # operators see everyone's; another rider sees none of these
    other, oh = daemon.rider_session()
    assert daemon.get("/v1/rides", headers=oh).json() == {"items": [], "next_cursor": None}
    for q, field in (("limit=0", "limit"), ("limit=101", "limit"), ("limit=1.5", "limit"), ("cursor=abc", "cursor"),
                     ("cursor=123.x", "cursor")):
        b = problem(daemon.get("/v1/rides?" + q, headers=rh), 400, "validation-failed")
        assert b["field"] == field


# ---------------------------------------------------------------- ratings

def test_ratings(daemon, pg):
    rider, rh, drv, dh, t = matched_trip(daemon, pg)
    tid = t["id"]
    b = problem(daemon.post(f"/v1/rides/{tid}/rating", {"stars": 5}, headers=rh), 409, "trip-state")
    assert b["state"] == "MATCHED"
    for step, body in (("arrived", None), ("start", None), ("complete", {"distance_m": 1000, "duration_s": 200})):
        assert daemon.post(f"/v1/rides/{tid}/{step}", body, headers=dh).status == 200
    for body, field, rule in (({"stars": 0}, "stars", "minimum"), ({"stars": 6}, "stars", "maximum"),
                              ({"stars": 4.5}, "stars", "type"), ({}, "stars", "required"),
                              ({"stars": 5, "comment": "x" * 501}, "comment", "maxLength")):
        b = problem(daemon.post(f"/v1/rides/{tid}/rating", body, headers=rh), 400, "validation-failed")
        assert (b["field"], b["rule"]) == (field, rule)
    before = len(outbox(daemon, pg, tid))
    r = daemon.post(f"/v1/rides/{tid}/rating", {"stars": 4, "comment": "smooth"}, headers=rh)
    assert r.status == 201 and r.json() == {"trip_id": tid, "by": "rider", "stars": 4}, r
    problem(daemon.post(f"/v1/rides/{tid}/rating", {"stars": 1}, headers=rh), 409, "conflict")
    assert daemon.post(f"/v1/rides/{tid}/rating", {"stars": 5}, headers=dh).status == 201
    other, oh = daemon.rider_session()
    problem(daemon.post(f"/v1/rides/{tid}/rating", {"stars": 1}, headers=oh), 404, "not-found")
    ev = outbox(daemon, pg, tid)[before:]
    assert [x[1] for x in ev] == ["rating.submitted", "rating.submitted"]
    assert ev[0][5] == {"trip_id": tid, "rated_by": "rider", "rater_id": rider["id"], "ratee_id": drv["id"],
                        "stars": 4, "comment": "smooth"}
    me = daemon.get(f"/v1/admin/drivers/{drv['id']}", headers=daemon.admin).json()
    assert me["rating"] == {"average": 4, "count": 1}
    assert sql(daemon, pg, "SELECT rating_sum, rating_count FROM riders WHERE id = %s", (rider["id"],))[0] == (5, 1)


def test_batch_answers_show_each_step(daemon, pg):
    """trip_transitions() builds the answers' trips after the steps: each
    answer is the trip as its own step left it (a trip named twice in one
    batch too), the same object trip_json() gives, with a rated driver's
    rating, and each step left its history and outbox rows."""
    rider, rh, drv, dh, t = matched_trip(daemon, pg)
    tid = t["id"]
    sql(daemon, pg, "UPDATE drivers SET rating_sum = 9, rating_count = 2 WHERE id = %s", (drv["id"],))
    _, _, other = new_trip(daemon, pg)
    done = {"distance_m": t["estimate"]["distance_m"], "duration_s": t["estimate"]["duration_s"]}
    items = [{"trip_id": tid, "to": "ARRIVED", "role": "driver", "actor": drv["id"]},
             {"trip_id": other["id"], "to": "CANCELLED", "role": "operator", "actor": "admin"},
             {"trip_id": tid, "to": "ARRIVED", "role": "driver", "actor": drv["id"]},
             {"trip_id": tid, "to": "IN_PROGRESS", "role": "driver", "actor": drv["id"]},
             {"trip_id": tid, "to": "COMPLETED", "role": "driver", "actor": drv["id"], "args": done},
             {"trip_id": tid, "to": "ARRIVED", "role": "driver", "actor": drv["id"]},
             {"trip_id": str(uuid.uuid4()), "to": "ARRIVED", "role": "operator", "actor": "admin"}]
    for safe in (False, True):
        before = counts(daemon, pg, tid)
        rows = sql(daemon, pg, "SELECT i, status, body FROM trip_transitions(%s::jsonb, %s) ORDER BY i",
                   (json.dumps(items), safe))
        assert [r[0] for r in rows] == list(range(len(items)))
        if not safe:
            assert [r[1] for r in rows] == [200, 200, 200, 200, 200, 409, 404]
            assert [col(r[2], "state") for r in rows[:6]] == ["ARRIVED", "CANCELLED", "ARRIVED", "IN_PROGRESS",
                                                             "COMPLETED", "COMPLETED"]
            assert [col(r[2], "version") for r in rows[:5]] == [3, 2, 3, 4, 5]
            assert rows[2][2]["repeated"] is True and "repeated" not in rows[0][2]
            assert rows[3][2]["driver_version"] > 0 and col(rows[4][2], "fare_final") == t["fare"]["quoted"]
            assert (col(rows[0][2], "rating_average"), col(rows[0][2], "rating_count")) == (4.5, 2)
            assert col(rows[1][2], "driver_id") is None
            assert counts(daemon, pg, tid) == (before[0] + 4, before[1] + 3)
        else:  # the same again: repeats and refusals, nothing written
            assert [r[1] for r in rows] == [409, 200, 409, 409, 200, 409, 404]
            assert counts(daemon, pg, tid) == before
        now = sql(daemon, pg, "SELECT trip_json(t, false) FROM trips t WHERE id = %s", (tid,))[0][0]
        assert {k: v for k, v in rows[4][2].items() if k not in ("repeated", "driver_version")} == now
        now = sql(daemon, pg, "SELECT trip_json(t, false) FROM trips t WHERE id = %s", (other["id"],))[0][0]
        assert {k: v for k, v in rows[1][2].items() if k not in ("repeated", "driver_version")} == now


def pairs(text):
    """JSON with every object as its list of (key, value) pairs: equal only
    if the members come in the same order too."""
    return json.loads(text, object_pairs_hook=lambda kv: [(k, v) for k, v in kv if k != "timeline"])


def test_the_daemon_renders_the_view_the_database_used_to_build(daemon, pg):
    """Since schema version 11 the database answers a trip as the row its
    view is made of, and the daemon builds the view. Held to the view as the
    database built it before (version 7's trip_view(), loaded from that
    migration's text, kept in tests/e2e/legacy_sql/, as a temporary
    function), member for member and in the same order, for trips of every
    shape: searching with an address and unrounded coordinates, matched to a
    rated driver, cancelled, completed with a metered fare; as POST
    /v1/rides, a transition's answer, GET /v1/rides/{id} and the list show
    them."""
    text = (Path(__file__).resolve().parent / "legacy_sql" / "007_trip_view.sql").read_text()
    start = text.index("CREATE FUNCTION trip_view(")
    old_view = text[start:text.index("$$;", start) + 3].replace(
        "CREATE FUNCTION trip_view(", "CREATE FUNCTION pg_temp.trip_view_007(", 1)
    conn = pg.connect(daemon.db)

    def oracle(trip_id):
        with conn.cursor() as cur:
            cur.execute("SELECT pg_temp.trip_view_007(t, d)::text FROM trips t"
                        " LEFT JOIN drivers d ON d.id = t.driver_id WHERE t.id = %s", (trip_id,))
            return pairs(cur.fetchone()[0])

    def shown(body_text):
        return [(k, v) for k, v in pairs(body_text) if k not in ("driver_version", "repeated")]
    try:
        with conn.cursor() as cur:
            cur.execute(old_view)
        rider, rh = daemon.rider_session()
        body = ride_body(pickup=(52.09071234567, 5.12149876543), dropoff=(52.1000000001, 5.13))
        body["pickup"]["address"] = "Stationsplein 1, \u00e9 \"quoted\""
        r = daemon.post("/v1/rides", body, headers=rh)
        assert r.status == 201, r
        searching = r.json()["id"]
        assert shown(r.body) == oracle(searching)
        assert dict(shown(r.body))["pickup"] == [("lat", 52.0907123), ("lng", 5.1214988),
                                                 ("address", "Stationsplein 1, \u00e9 \"quoted\"")]
        _, _, drv, _, m = matched_trip(daemon, pg)
        matched = m["id"]
        sql(daemon, pg, "UPDATE drivers SET rating_sum = 14, rating_count = 3 WHERE id = %s", (drv["id"],))
        _, crh, c = new_trip(daemon, pg)
        r = daemon.post(f"/v1/rides/{c['id']}/cancel", {"reason": "changed_mind"}, headers=crh)
        assert r.status == 200, r
        assert shown(r.body) == oracle(c["id"])
        _, _, _, _, done = drive_to_completion(daemon, pg, lambda t: {"distance_m": 9000, "duration_s": 1800})
        trips = [searching, matched, c["id"], done["id"]]
        listed = {dict(x)["id"]: x for x in pairs(daemon.get("/v1/rides?limit=50", headers=daemon.admin).body)[0][1]}
        for tid in trips:
            want = oracle(tid)
            got = daemon.get(f"/v1/rides/{tid}", headers=daemon.admin)
            assert got.status == 200 and shown(got.body) == want, (tid, got.body, want)
            assert listed[tid] == want
        # the shapes the trips were meant to have
        assert dict(oracle(matched))["driver"][2] == ("rating", [("count", 3), ("average", 4.67)])
        assert "cancellation" in dict(oracle(c["id"])) and "metered" in dict(oracle(done["id"]))
    finally:
        conn.close()


def test_a_batch_whose_rows_changed_meanwhile_fails_whole_and_runs_again_locked(daemon, pg):
    """trip_apply() reads a batch's rows without locks and checks each write
    against what it read. A driver whose row changes between the batch's read
    and its write (another session's reservation, uncommitted while the batch
    reads, committed while it waits) fails the whole batch with
    serialization_failure and nothing of it is written; item by item with the
    rows locked (what the daemon sends next) the step sees the new version:
    the MATCHED at the old one is refused, the other item stands."""
    _, _, trip = new_trip(daemon, pg)
    _, _, other = new_trip(daemon, pg)
    drv, _ = daemon.driver_session()
    make_available(daemon, pg, drv["id"])
    _, ver = driver_row(daemon, pg, drv["id"])
    items = [{"trip_id": trip["id"], "to": "MATCHED", "role": "operator", "actor": "admin",
              "args": {"driver_id": drv["id"], "driver_version": ver}},
             {"trip_id": other["id"], "to": "CANCELLED", "role": "operator", "actor": "admin"}]
    before = (counts(daemon, pg, trip["id"]), counts(daemon, pg, other["id"]))
    holder = pg.connect(daemon.db)
    holder.autocommit = False
    try:
        with holder.cursor() as cur:
            cur.execute("UPDATE drivers SET version = version + 1 WHERE id = %s", (drv["id"],))
        out = {}

        def batch():
            try:
                out["rows"] = sql(daemon, pg, "SELECT i, status, body FROM trip_transitions(%s::jsonb, false)",
                                  (json.dumps(items),))
            except psycopg2.Error as e:
                out["error"] = e
        t = threading.Thread(target=batch)
        t.start()
        for _ in range(100):  # the batch has read and waits for the driver's row
            if sql(daemon, pg, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")[0][0]:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the batch never waited for the driver's row")
        holder.commit()
        t.join(10)
    finally:
        holder.close()
    assert "error" in out and out["error"].pgcode == "40001", out
    assert (counts(daemon, pg, trip["id"]), counts(daemon, pg, other["id"])) == before
    assert sql(daemon, pg, "SELECT state FROM trips WHERE id = %s", (other["id"],))[0][0] == "SEARCHING"
    rows = sql(daemon, pg, "SELECT i, status, body FROM trip_transitions(%s::jsonb, true) ORDER BY i",
               (json.dumps(items),))
    assert [r[1] for r in rows] == [409, 200], rows
    assert rows[0][2]["reason"] == "driver_unavailable" and col(rows[1][2], "state") == "CANCELLED"
    assert driver_row(daemon, pg, drv["id"]) == ("available", ver + 1)


def test_no_server_errors_were_logged(daemon):
    """Every client mistake above got a 4xx: the daemon logged no error."""
    assert "level=error" not in daemon.log(), [l for l in daemon.log().splitlines() if "level=error" in l][:5]


def test_idempotency_with_the_longest_addresses(daemon, pg):
    """Addresses of 200 four-byte characters each and a long quote: the
    request's fingerprint covers all of it (it once hashed past its buffer)."""
    rider, rh = daemon.rider_session()
    e = estimate(daemon).json()
    body = ride_body(quote_id=e["quote_id"])
    body["pickup"]["address"] = "\U0001F695" * 200
    body["dropoff"]["address"] = "\U0001F3E0" * 200
    h = dict(rh, **{"Idempotency-Key": "emoji"})
    first = daemon.post("/v1/rides", body, headers=h)
    assert first.status == 201, first
    again = daemon.post("/v1/rides", body, headers=h)
    assert again.status == 201 and again.json()["id"] == first.json()["id"], again
    body["dropoff"]["address"] = "\U0001F3E0" * 199 + "x"
    problem(daemon.post("/v1/rides", body, headers=h), 422, "idempotency-key-reused")


def test_ride_requests_commit_in_groups_and_a_failing_member_fails_alone(make_daemon, pg):
    """Ride requests waiting together go to the database as one statement
    (trip_requests(), one commit). With one lane and a slow first request,
    the rest gather into one batch; one of them fails in the database (a
    test trigger refuses its address): the batch rolls back, every member
    runs again alone, and each gets its own answer: the failing one a 500,
    the others 201 with exactly one trip, history row and two outbox rows
    each."""
    d = make_daemon(env=dict(MANUAL, RIDEHAIL_DATABASE_POOL_SIZE="1", RIDEHAIL_TRIP_BATCH_LANES="1"))
    sql(d, pg, """CREATE FUNCTION test_trip_trap() RETURNS trigger LANGUAGE plpgsql AS $$
                  BEGIN
                      IF NEW.pickup_address = 'slow' THEN PERFORM pg_sleep(0.5); END IF;
                      IF NEW.pickup_address = 'boom' THEN RAISE EXCEPTION 'test trap'; END IF;
                      RETURN NEW;
                  END $$""")
    sql(d, pg, "CREATE TRIGGER test_trip_trap BEFORE INSERT ON trips FOR EACH ROW EXECUTE FUNCTION test_trip_trap()")
    riders = [d.rider_session() for _ in range(9)]

    def metric(name):
        for line in d.get("/metrics").body.decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return 0.0

    reruns0 = metric('ridehail_trip_batch_reruns_total{kind="request"}')
    slow = threading.Thread(target=lambda: d.post(
        "/v1/rides", {"pickup": dict(place(UTRECHT), address="slow"), "dropoff": place(DROPOFF)},
        headers=riders[0][1]))
    slow.start()
    time.sleep(0.15)

    def one(i):
        addr = "boom" if i == 4 else f"street {i}"
        return d.post("/v1/rides", {"pickup": dict(place(UTRECHT), address=addr), "dropoff": place(DROPOFF)},
                      headers=riders[i][1])
    res = parallel(8, lambda i: one(i + 1))
    slow.join()
    statuses = [r.status for r in res]
    assert statuses == [201, 201, 201, 500, 201, 201, 201, 201], res
    assert metric('ridehail_trip_batch_reruns_total{kind="request"}') > reruns0
    assert metric("ridehail_ride_request_batch_size_count") >= 2
    for i, (rider, _) in enumerate(riders):
        trips = sql(d, pg, "SELECT id::text FROM trips WHERE rider_id = %s", (rider["id"],))
        assert len(trips) == (0 if i == 4 else 1), (i, trips)
        if trips:
            assert counts(d, pg, trips[0][0]) == (2, 1)
    # the 500 was logged as the error it is
    assert "test trap" in d.log()
