"""Marketplace pricing against the real daemon and a real PostgreSQL +
PostGIS: surge driven by real ride requests and real drivers on the
WebSocket (the rise, the cap, the step limit, the fall, quotes honoured until
they expire, GET /v1/surge and its GeoJSON cells, surge.updated), zones and
versioned tariffs changed through the admin API without a restart (the
service area, an airport fee, a fixed fare, a night band, a change under
load, another daemon hearing of it by NOTIFY), operator overrides, the
waiting fee, the payment hand-off, and the bad input each refuses with
nothing written."""
import asyncio
import hashlib
import hmac
import json
import math
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from conftest import problem, wait_for
from eventschemas import validator
from test_presence import token_of
from wsapp import Driver, run

# Midtown Manhattan: the hot spot, a dropoff 2 km north-east, a point 2.5 km
# east (another cell), and one far away (Brooklyn).
P = (40.7549, -73.9840)
DROP = (40.7680, -73.9680)
EAST = (40.7549, -73.9540)
FAR = (40.6782, -73.9442)

# Surge recomputed every second, no EMA lag or dwell unless a test asks, a
# long demand window, drivers fresh for the whole test, dispatch by hand (the
# trips stay SEARCHING: demand stays put), the projection fixed.
FAST = {"RIDEHAIL_MATCH_AUTO": "false", "RIDEHAIL_SURGE_INTERVAL": "1s", "RIDEHAIL_SURGE_WINDOW": "10m",
        "RIDEHAIL_SURGE_EMA_ALPHA": "1", "RIDEHAIL_SURGE_MIN_DWELL": "0s", "RIDEHAIL_SURGE_LATITUDE": "41",
        "RIDEHAIL_PRESENCE_STALE_AFTER": "10m", "RIDEHAIL_TRIP_RIDES_PER_MINUTE": "100000",
        "RIDEHAIL_SURGE_EVENT_MIN_INTERVAL": "0s"}
PAY_SECRET = "payment-secret-for-tests-0123456789"


def fast(**extra):
    env = dict(FAST)
    env.update({"RIDEHAIL_" + k: v for k, v in extra.items()})
    return env


def qs(**q):
    return "&".join(f"{k}={v}" for k, v in q.items())


def estimate(d, pickup=P, dropoff=DROP, **q):
    return d.get("/v1/estimate?" + qs(pickup_lat=pickup[0], pickup_lng=pickup[1], dropoff_lat=dropoff[0],
                                       dropoff_lng=dropoff[1], **q))


def surge(d, at=P, **q):
    r = d.get("/v1/surge?" + qs(lat=at[0], lng=at[1], **q))
    assert r.status == 200, r
    return r.json()


def ride(d, hdr, pickup=P, dropoff=DROP, **extra):
    body = {"pickup": {"lat": pickup[0], "lng": pickup[1]}, "dropoff": {"lat": dropoff[0], "lng": dropoff[1]}}
    body.update(extra)
    return d.post("/v1/rides", body, headers=hdr)


def sql(d, pg, query, params=None):
    return pg.query(d.db, query, params)


async def driver_at(d, at=P):
    drv, hdr = d.driver_session()
    app = await Driver.connect(d, token_of(hdr), drv["id"])
    await app.recv("driver.status.changed")
    await app.ping(at[0], at[1], accuracy_m=5)
    await app.go("available")
    app.hdr = hdr
    return drv, app


def demand(d, n, at=P):
    """n ride requests at `at` from n riders (each stays SEARCHING)."""
    for _ in range(n):
        _, rh = d.rider_session()
        r = ride(d, rh, pickup=at)
        assert r.status == 201, r


def ticks(d, at=P, seconds=8.0, until=None):
    """GET /v1/surge every 50 ms: one sample per recompute seen (its
    computed_at), as (computed_at, multiplier, demand, supply)."""
    seen = {}
    deadline = time.time() + seconds
    while time.time() < deadline:
        s = surge(d, at)
        if s["computed_at"]:
            seen[s["computed_at"]] = (s["multiplier"], s["demand"]["requests"], s["supply"]["drivers"])
        if until and until(s):
            break
        time.sleep(0.05)
    return [(k,) + v for k, v in sorted(seen.items())]


def parse_ts(s):
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


def steps_within(samples, max_step, interval_s=1.0):
    """Samples one recompute apart moved at most max_step."""
    checked = 0
    for a, b in zip(samples, samples[1:]):
        gap = (parse_ts(b[0]) - parse_ts(a[0])).total_seconds()
        if gap < 1.5 * interval_s:
            assert abs(b[1] - a[1]) <= max_step + 1e-9, (a, b)
            checked += 1
    return checked


# ---------------------------------------------------------------- surge

def test_surge_rises_with_demand_and_falls_as_drivers_come(make_daemon, pg):
    d = make_daemon(env=fast(SURGE_MAX_STEP="0.3"))
    assert surge(d)["multiplier"] == 1.0

    async def go():
        apps = [await driver_at(d)]
        demand(d, 6)  # 6 requests, 1 driver: ratio 6, raw 2.5 + 0.5 x (6 - 5) / 3 = 2.67
        up = ticks(d, seconds=15, until=lambda s: s["multiplier"] >= 2.67)
        assert up[-1][1] == 2.67 and up[-1][2] == 6 and up[-1][3] == 1, up
        assert steps_within(up, 0.3) >= 3, up  # it climbed by steps, seen between recomputes
        assert [m for _, m, _, _ in up] == sorted(m for _, m, _, _ in up)  # never down on the way
        # the quote given now carries the surge
        e = estimate(d).json()
        assert e["fare"]["surge_multiplier"] == 2.67 and e["fare"]["surge_cell"] == surge(d)["cell"]
        # drivers arrive on the WebSocket: 7 for 6 requests, ratio below 1
        for _ in range(6):
            apps.append(await driver_at(d))
        down = ticks(d, seconds=20, until=lambda s: s["multiplier"] == 1.0)
        assert down[-1][1] == 1.0 and down[-1][3] == 7, down
        assert steps_within(down, 0.3) >= 3, down
        for _, app in apps:
            await app.close()
    run(go())


def test_surge_is_capped(make_daemon):
    d = make_daemon(env=fast(SURGE_CAP="1.6", SURGE_MAX_STEP="1"))

    async def go():
        drv, app = await driver_at(d)
        demand(d, 10)
        s = ticks(d, seconds=6)
        assert max(m for _, m, _, _ in s) == 1.6 and s[-1][1] == 1.6, s
        assert estimate(d).json()["fare"]["surge_multiplier"] == 1.6
        await app.close()
    run(go())


def test_surge_moves_by_at_most_max_step_per_recompute(make_daemon):
    d = make_daemon(env=fast(SURGE_MAX_STEP="0.1"))

    async def go():
        drv, app = await driver_at(d)
        demand(d, 10)  # raw 2.83: far away, so every recompute moves exactly 0.1
        s = ticks(d, seconds=5)
        ms = [m for _, m, _, _ in s]
        assert len(ms) >= 3 and ms[-1] > 1.0, s
        for a, b in zip(s, s[1:]):
            gap = round((parse_ts(b[0]) - parse_ts(a[0])).total_seconds())
            assert abs((b[1] - a[1]) - 0.1 * gap) < 1e-9, (a, b)
        await app.close()
    run(go())


def test_quoted_surge_is_honoured_until_it_expires(make_daemon, pg):
    d = make_daemon(env=fast(SURGE_QUOTE_TTL="3s", SURGE_MAX_STEP="1", SURGE_CAP="2"))

    async def go():
        drv, app = await driver_at(d)
        flat = estimate(d).json()  # surge 1: the pricing.quote_ttl (5 min)
        exp = parse_ts(flat["expires_at"]) - datetime.now(timezone.utc)
        assert timedelta(minutes=4) < exp <= timedelta(minutes=5)
        demand(d, 10)
        ticks(d, seconds=5, until=lambda s: s["multiplier"] == 2.0)
        hot = estimate(d).json()
        assert hot["fare"]["surge_multiplier"] == 2.0
        exp = parse_ts(hot["expires_at"]) - datetime.now(timezone.utc)
        assert timedelta(0) < exp <= timedelta(seconds=3)  # surge.quote_ttl
        # the flat quote is honoured while the city surges: the rider pays 1.0
        _, rh = d.rider_session()
        t = ride(d, rh, quote_id=flat["quote_id"])
        assert t.status == 201, t
        t = t.json()
        assert t["fare"]["quoted"] == flat["fare"]["total"] and t["fare"]["breakdown"]["surge_multiplier"] == 1
        # the surged quote is honoured too, then it expires: re-quote
        _, rh2 = d.rider_session()
        r = ride(d, rh2, quote_id=hot["quote_id"])
        assert r.status == 201 and r.json()["fare"]["quoted"] == hot["fare"]["total"], r
        r3, rh3 = d.rider_session()
        time.sleep(max(0.0, (parse_ts(hot["expires_at"]) - datetime.now(timezone.utc)).total_seconds()) + 0.3)
        b = problem(ride(d, rh3, quote_id=hot["quote_id"]), 422, "quote-expired")
        assert b["reason"] == "quote_expired" and b["field"] == "quote_id" and b["surge_multiplier"] == 2.0
        assert sql(d, pg, "SELECT count(*) FROM trips WHERE rider_id = %s", (r3["id"],))[0][0] == 0
        await app.close()
    run(go())


def test_surge_cells_geojson_neighbours_and_events(make_daemon, pg):
    d = make_daemon(env=fast(SURGE_MAX_STEP="1", SURGE_NEIGHBOUR_MAX_DIFF="0.5",
                             SURGE_EVENT_MIN_INTERVAL="2s", SURGE_EVENT_MIN_CHANGE="0.1"))

    async def go():
        drv, app = await driver_at(d)
        demand(d, 20)  # raw 3
        ticks(d, seconds=5, until=lambda s: s["multiplier"] == 3.0)
        hot = surge(d)
        assert hot["demand"]["level"] == "very_high" and hot["supply"]["level"] == "low"
        # the cell next door (its centre sqrt(3) x 1,409 m east) is raised to
        # within neighbour_max_diff
        c = hot["cell_centre"]
        east = surge(d, (c["lat"], c["lng"] + 2441.0 / (111195.0 * math.cos(math.radians(41)))))
        assert east["cell"] != hot["cell"] and east["multiplier"] == 2.5, east
        g = d.get("/v1/surge/cells")
        assert g.status == 200 and g.headers["content-type"] == "application/geo+json"
        g = g.json()
        assert g["type"] == "FeatureCollection" and g["vehicle_type"] == "standard"
        cells = {f["id"]: f for f in g["features"]}
        f = cells[hot["cell"]]
        ring = f["geometry"]["coordinates"][0]
        assert f["geometry"]["type"] == "Polygon" and len(ring) == 7 and ring[0] == ring[-1]
        assert f["properties"] == {"cell": hot["cell"], "multiplier": 3.0, "demand": 20, "supply": 1}
        lons, lats = [x for x, _ in ring], [y for _, y in ring]
        assert min(lons) < P[1] < max(lons) and min(lats) < P[0] < max(lats)
        assert len(cells) == 1 + 6 + 12 + 18  # the hot cell and three rings (2.5, 2.0, 1.5)
        for c in cells.values():
            assert 1.0 <= c["properties"]["multiplier"] <= 3.0
        time.sleep(2.5)
        # surge.updated: schema-valid, at most one per cell every 2 s
        rows = sql(d, pg, "SELECT aggregate_id::text, aggregate_seq, payload, occurred_at, event_id::text, "
                          "correlation_id::text FROM outbox WHERE event_type = 'surge.updated' ORDER BY id")
        mine = [r for r in rows if r[2]["cell"] == hot["cell"]]
        assert mine and mine[-1][2]["multiplier"] == 3.0 and mine[0][2]["previous_multiplier"] == 1.0, mine
        assert [r[1] for r in mine] == list(range(1, len(mine) + 1))
        for a, b in zip(mine, mine[1:]):
            assert (b[3] - a[3]).total_seconds() >= 1.9, (a, b)
        for agg, seq, payload, at, eid, corr in rows:
            validator("surge.updated.v1.schema.json").validate({
                "event_id": eid, "event_type": "surge.updated", "event_version": 1,
                "timestamp": at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z",
                "producer": "ridehaild", "correlation_id": corr, "payload": payload})
        await app.close()
    run(go())


def test_surge_off_is_always_one(make_daemon):
    d = make_daemon(env=fast(SURGE_ENABLED="false"))

    async def go():
        drv, app = await driver_at(d)
        demand(d, 10)
        time.sleep(1.5)
        s = surge(d)
        assert s["multiplier"] == 1.0 and s["enabled"] is False and s["computed_at"] is None
        assert estimate(d).json()["fare"]["surge_multiplier"] == 1.0
        await app.close()
    run(go())


# ---------------------------------------------------------------- zones and tariffs

def box(lat0, lon0, lat1, lon1):
    return {"type": "Polygon", "coordinates": [[[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1], [lon0, lat0]]]}


MANHATTAN = box(40.70, -74.02, 40.88, -73.90)
AIRPORT = box(40.762, -73.990, 40.772, -73.960)   # holds DROP
MIDTOWN = box(40.750, -73.990, 40.760, -73.975)   # holds P


def put_zone(d, name, geometry, kind="zone", priority=0, headers=None):
    return d.request("PUT", f"/v1/admin/zones/{name}", {"kind": kind, "priority": priority, "geometry": geometry},
                     headers=headers or d.admin)


def put_tariff(d, body, vehicle="standard"):
    r = d.post(f"/v1/admin/tariffs/{vehicle}", body, headers=d.admin)
    assert r.status == 201, r
    return r.json()


def test_service_area_refuses_pickups_outside(make_daemon, pg):
    d = make_daemon(env=FAST)
    assert estimate(d, pickup=FAR).status == 200  # no service area yet: everywhere
    r = put_zone(d, "manhattan", MANHATTAN, kind="service_area")
    assert r.status == 201, r
    z = r.json()
    assert z["name"] == "manhattan" and z["kind"] == "service_area" and 150 < z["area_km2"] < 250
    b = problem(estimate(d, pickup=FAR), 422, "outside-service-area")
    assert b["field"] == "pickup"
    assert estimate(d).status == 200
    assert estimate(d, dropoff=FAR).status == 200  # the dropoff may leave it
    _, rh = d.rider_session()
    b = problem(ride(d, rh, pickup=FAR, dropoff=DROP), 422, "outside-service-area")
    assert sql(d, pg, "SELECT count(*) FROM trips")[0][0] == 0
    # the area grows without a restart: Brooklyn is in
    r = put_zone(d, "manhattan", {"type": "MultiPolygon", "coordinates": [MANHATTAN["coordinates"],
                                                                          box(40.60, -74.05, 40.695, -73.85)["coordinates"]]},
                 kind="service_area")
    assert r.status == 200, r
    assert estimate(d, pickup=FAR).status == 200
    log = d.get("/v1/admin/pricing/log", headers=d.admin).json()["entries"]
    assert [(e["action"], e["subject"], e["actor"]) for e in log[:2]] == [("zone.put", "manhattan", "admin")] * 2


def test_airport_fee_and_fixed_fare_between_zones(make_daemon, pg):
    d = make_daemon(env=FAST)
    assert put_zone(d, "airport", AIRPORT, priority=10).status == 201
    assert put_zone(d, "midtown", MIDTOWN).status == 201
    before = estimate(d).json()["fare"]
    t = put_tariff(d, {"zone_rules": [{"kind": "dropoff_fee", "zone": "airport", "amount": 550},
                                      {"kind": "pickup_fee", "zone": "airport", "amount": 450}]})
    assert t["version"] == 2 and t["base"] == 250  # the rest kept from version 1
    f = estimate(d).json()["fare"]  # midtown -> airport: the dropoff fee
    assert f["zone_fee"] == 550 and f["tariff_version"] == 2
    assert f["total"] == before["total"] + 550
    back = estimate(d, pickup=DROP, dropoff=P).json()["fare"]
    assert back["zone_fee"] == 450
    other = estimate(d, pickup=EAST, dropoff=FAR).json()["fare"]
    assert "zone_fee" not in other
    # a fixed fare between the two, both ways: no metered parts, no surge
    put_tariff(d, {"zone_rules": [{"kind": "dropoff_fee", "zone": "airport", "amount": 550},
                                  {"kind": "fixed", "from": "midtown", "to": "airport", "amount": 5200,
                                   "both_ways": True}]})
    f = estimate(d).json()["fare"]
    assert f["fixed_fare"] == 5200 and f["total"] == 5200 + 550 and f["surge_multiplier"] == 1
    assert estimate(d, pickup=DROP, dropoff=P).json()["fare"]["total"] == 5200
    # a trip priced so records the version and pays the airport fee in the end
    _, rh = d.rider_session()
    e = estimate(d).json()
    t = ride(d, rh, quote_id=e["quote_id"])
    assert t.status == 201, t
    t = t.json()
    assert t["fare"]["breakdown"]["zone_fee"] == 550 and t["fare"]["breakdown"]["tariff_version"] == 3
    assert t["fare"]["breakdown"]["pickup_zone"] == "midtown" and t["fare"]["breakdown"]["dropoff_zone"] == "airport"
    assert sql(d, pg, "SELECT tariff_version FROM trips WHERE id = %s", (t["id"],))[0][0] == 3
    drv, dh = d.driver_session()
    sql(d, pg, "UPDATE drivers SET status = 'available', version = version + 1 WHERE id = %s", (drv["id"],))
    tid = t["id"]
    assert d.post(f"/v1/rides/{tid}/assign", {"driver_id": drv["id"]}, headers=d.admin).status == 200
    assert d.post(f"/v1/rides/{tid}/arrived", headers=dh).status == 200
    assert d.post(f"/v1/rides/{tid}/start", headers=dh).status == 200
    # metered 3x longer than estimated: the metered fare, still fixed + fee
    r = d.post(f"/v1/rides/{tid}/complete", {"distance_m": e["distance_m"] * 3, "duration_s": e["duration_s"] * 3},
               headers=dh)
    assert r.status == 200, r
    assert r.json()["fare"]["final"] == 5750 and r.json()["fare"]["needs_review"] is True
    rc = d.get(f"/v1/rides/{tid}/receipt", headers=rh).json()
    assert rc["total"] == 5750 and rc["tariff_version"] == 3


def test_night_band_applies_in_its_hours(make_daemon):
    d = make_daemon(env=FAST)
    now = datetime.now(timezone.utc)
    hm = lambda t: t.strftime("%H:%M")
    day = estimate(d).json()["fare"]
    # a band holding now (the daemon reads pricing.timezone, UTC here), and
    # one that does not: the first holding the time applies
    put_tariff(d, {"bands": [{"name": "early", "start": hm(now + timedelta(hours=2)),
                              "end": hm(now + timedelta(hours=3)), "per_km": 999},
                             {"name": "night", "start": hm(now - timedelta(hours=1)),
                              "end": hm(now + timedelta(hours=1)), "base": 400, "per_km": 300, "minimum": 1500}]})
    e = estimate(d).json()
    f = e["fare"]
    assert f["band"] == "night" and f["base"] == 400 and f["minimum"] == 1500
    assert f["distance"] == (300 * e["distance_m"] + 500) // 1000
    assert f["total"] > day["total"]
    # a band that does not hold now changes nothing
    put_tariff(d, {"bands": [{"name": "night", "start": hm(now + timedelta(hours=2)),
                              "end": hm(now + timedelta(hours=3)), "per_km": 300}]})
    f = estimate(d).json()["fare"]
    assert "band" not in f and f["total"] == day["total"]


def test_tariff_changed_under_load_without_restart(make_daemon, pg):
    d = make_daemon(env=FAST)
    pid = d.proc.pid
    seen, errors, stop = [], [], threading.Event()

    def load():
        while not stop.is_set():
            sent = time.time()
            r = estimate(d)
            if r.status != 200:
                errors.append(r)
            else:
                f = r.json()["fare"]
                seen.append((sent, time.time(), f["tariff_version"], f["base"]))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    _, rh = d.rider_session()
    t0 = time.time()
    changed = put_tariff(d, {"base": 999})
    t1 = time.time()
    r = ride(d, rh)  # a request right after the change is priced by it
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert changed["version"] == 2
    assert r.status == 201 and r.json()["fare"]["breakdown"]["base"] == 999, r
    assert r.json()["fare"]["breakdown"]["tariff_version"] == 2
    # answered before the change was asked for / sent after it was answered
    before = [s for s in seen if s[1] < t0]
    after = [s for s in seen if s[0] > t1]
    assert len(before) > 20 and len(after) > 20
    assert {(v, b) for _, _, v, b in before} == {(1, 250)}
    assert {(v, b) for _, _, v, b in after} == {(2, 999)}
    assert d.proc.pid == pid and d.proc.poll() is None
    assert sql(d, pg, "SELECT tariff_version FROM trips")[0][0] == 2


def test_another_daemon_hears_the_change_by_notification(make_daemon, pg):
    a = make_daemon(env=FAST)
    b = make_daemon(env=FAST, db=a.db)
    assert estimate(b).json()["fare"]["tariff_version"] == 1
    put_tariff(a, {"base": 777})
    wait_for(lambda: estimate(b).json()["fare"]["base"] == 777, timeout=5, what="daemon b reloading")
    assert put_zone(a, "manhattan", MANHATTAN, kind="service_area").status == 201
    wait_for(lambda: estimate(b, pickup=FAR).status == 422, timeout=5, what="daemon b's service area")
    # a change written straight into the database, as another tool would
    sql(a, pg, "SELECT tariff_put('standard', tariff_json(t) || '{\"base\": 555}', 'operator', 'psql') "
               "FROM tariffs t WHERE vehicle_type = 'standard' ORDER BY version DESC LIMIT 1")
    for x in (a, b):
        wait_for(lambda: estimate(x).json()["fare"]["base"] == 555, timeout=5, what="the psql change")


# ---------------------------------------------------------------- overrides

def test_operator_overrides_cap_freeze_and_disable_with_who(make_daemon, pg):
    d = make_daemon(env=fast(SURGE_MAX_STEP="1", SURGE_CAP="2.5"))
    assert put_zone(d, "midtown", MIDTOWN).status == 201
    op = d.post("/v1/admin/operators", {"email": f"op-{uuid.uuid4().hex[:8]}@example.com", "name": "Olive Operator",
                                       "password": "operator-pass-1"}, headers=d.admin)
    assert op.status == 201, op
    tok = d.login("operator", op.json()["email"], "operator-pass-1")
    oph = {"Authorization": "Bearer " + tok}

    async def go():
        drv, app = await driver_at(d)
        demand(d, 10)
        ticks(d, seconds=5, until=lambda s: s["multiplier"] == 2.5)
        r = d.request("PUT", "/v1/admin/surge/overrides/midtown", {"mode": "cap", "cap": 1.3, "reason": "storm"},
                      headers=oph)
        assert r.status == 200 and r.json()["set_by"] == op.json()["id"], r
        s = surge(d)
        assert s["multiplier"] == 1.3 and s["override"] == "cap" and s["zone"] == "midtown"
        assert estimate(d).json()["fare"]["surge_multiplier"] == 1.3  # at once, at price time
        r = d.request("PUT", "/v1/admin/surge/overrides/midtown", {"mode": "disable"}, headers=d.admin)
        assert r.status == 200, r
        assert surge(d)["multiplier"] == 1.0 and estimate(d).json()["fare"]["surge_multiplier"] == 1.0
        # lifted: back up by max_step, not at once
        assert d.request("DELETE", "/v1/admin/surge/overrides/midtown", headers=d.admin).status == 200
        s = ticks(d, seconds=4, until=lambda s: s["multiplier"] == 2.5)
        assert s[-1][1] == 2.5
        # frozen: more drivers come, the multiplier holds
        r = d.request("PUT", "/v1/admin/surge/overrides/midtown", {"mode": "freeze"}, headers=d.admin)
        assert r.status == 200, r
        more = [await driver_at(d) for _ in range(12)]
        time.sleep(2.5)
        s = surge(d)
        assert s["multiplier"] == 2.5 and s["supply"]["drivers"] == 13 and s["override"] == "freeze"
        ov = d.get("/v1/admin/surge/overrides", headers=d.admin).json()["overrides"]
        assert ov == [{"zone": "midtown", "mode": "freeze", "set_by": "admin", "set_at": ov[0]["set_at"]}]
        log = sql(d, pg, "SELECT actor, action, subject, detail FROM pricing_log "
                         "WHERE action LIKE 'surge.%%' ORDER BY id")
        assert [(a, b, c) for a, b, c, _ in log] == [
            (op.json()["id"], "surge.override.put", "midtown"), ("admin", "surge.override.put", "midtown"),
            ("admin", "surge.override.delete", "midtown"), ("admin", "surge.override.put", "midtown")]
        assert log[0][3] == {"mode": "cap", "cap": 1.3, "reason": "storm"}
        for _, a in [(drv, app)] + more:
            await a.close()
    run(go())


# ---------------------------------------------------------------- fees on the way

def test_waiting_fee_is_charged_past_the_free_time(make_daemon, pg):
    d = make_daemon(env=FAST)
    put_tariff(d, {"waiting_free_s": 1, "waiting_per_min": 120})
    _, rh = d.rider_session()
    e = estimate(d).json()
    t = ride(d, rh, quote_id=e["quote_id"]).json()
    drv, dh = d.driver_session()
    sql(d, pg, "UPDATE drivers SET status = 'available', version = version + 1 WHERE id = %s", (drv["id"],))
    tid = t["id"]
    assert d.post(f"/v1/rides/{tid}/assign", {"driver_id": drv["id"]}, headers=d.admin).status == 200
    assert d.post(f"/v1/rides/{tid}/arrived", headers=dh).status == 200
    time.sleep(2.2)  # one started minute past the free second
    assert d.post(f"/v1/rides/{tid}/start", headers=dh).status == 200
    r = d.post(f"/v1/rides/{tid}/complete", {"distance_m": e["distance_m"], "duration_s": e["duration_s"]},
               headers=dh)
    assert r.status == 200, r
    assert r.json()["fare"]["final"] == e["fare"]["total"] + 120
    rc = d.get(f"/v1/rides/{tid}/receipt", headers=rh).json()
    assert rc["lines"] == [{"item": "upfront_fare", "amount": e["fare"]["total"]}, {"item": "waiting", "amount": 120}]
    assert sum(x["amount"] for x in rc["lines"]) == rc["total"]


# ---------------------------------------------------------------- payments

def signed(d, trip_id, body, secret=PAY_SECRET, ts=None):
    raw = json.dumps(body).encode()
    ts = str(int(time.time()) if ts is None else ts)
    sig = hmac.new(secret.encode(), ts.encode() + b"." + raw, hashlib.sha256).hexdigest()
    return d.post(f"/v1/payments/{trip_id}/result", raw, headers={
        "Content-Type": "application/json", "Ridehail-Timestamp": ts, "Ridehail-Signature": "v1=" + sig})


def completed_trip(d, pg, rh):
    e = estimate(d).json()
    t = ride(d, rh, quote_id=e["quote_id"])
    assert t.status == 201, t
    tid = t.json()["id"]
    drv, dh = d.driver_session()
    sql(d, pg, "UPDATE drivers SET status = 'available', version = version + 1 WHERE id = %s", (drv["id"],))
    assert d.post(f"/v1/rides/{tid}/assign", {"driver_id": drv["id"]}, headers=d.admin).status == 200
    assert d.post(f"/v1/rides/{tid}/arrived", headers=dh).status == 200
    assert d.post(f"/v1/rides/{tid}/start", headers=dh).status == 200
    r = d.post(f"/v1/rides/{tid}/complete", {"distance_m": e["distance_m"], "duration_s": e["duration_s"]},
               headers=dh)
    assert r.status == 200, r
    return tid, r.json()["fare"]["final"]


def payment_rows(d, pg, tid):
    return sql(d, pg, "SELECT o.event_type, o.aggregate_seq, o.payload, o.correlation_id::text FROM outbox o "
                      "JOIN payments p ON p.id = o.aggregate_id WHERE p.trip_id = %s ORDER BY o.aggregate_seq", (tid,))


def test_payment_hand_off_doubled_callback_and_the_hold(make_daemon, pg):
    d = make_daemon(env=fast(PAYMENTS_SECRET=PAY_SECRET))
    rider, rh = d.rider_session()
    tid, fare = completed_trip(d, pg, rh)
    rows = payment_rows(d, pg, tid)
    assert [r[0] for r in rows] == ["payment.requested"]
    req = rows[0][2]
    assert req["trip_id"] == tid and req["rider_id"] == rider["id"] and req["kind"] == "fare"
    assert req["amount"] == {"currency": "USD", "amount": fare / 100} and rows[0][3] == tid
    key = req["idempotency_key"]
    # the provider: declined
    fail = {"idempotency_key": key, "event_id": "evt_1", "status": "failed", "failure_reason": "card_declined",
            "provider_ref": "ch_1", "amount": {"currency": "USD", "amount": fare / 100}}
    r = signed(d, tid, fail)
    assert r.status == 200 and r.json()["state"] == "failed" and r.json()["rider_held"] is True, r
    assert "idempotent-replayed" not in r.headers
    # the same callback again: 200, nothing changes, nothing written
    before = (len(payment_rows(d, pg, tid)), sql(d, pg, "SELECT count(*) FROM payment_results")[0][0])
    r2 = signed(d, tid, fail)
    assert r2.status == 200 and r2.headers["idempotent-replayed"] == "true", r2
    assert r2.json()["attempts"] == 1 and r2.json()["state"] == "failed"
    assert (len(payment_rows(d, pg, tid)), sql(d, pg, "SELECT count(*) FROM payment_results")[0][0]) == before
    # the same event id with another body: refused
    problem(signed(d, tid, dict(fail, failure_reason="other")), 409, "conflict")
    # the rider is held: 402 naming the trip, nothing written
    n = sql(d, pg, "SELECT count(*) FROM trips")[0][0]
    b = problem(ride(d, rh), 402, "payment-required")
    assert b["trip_id"] == tid
    assert sql(d, pg, "SELECT count(*) FROM trips")[0][0] == n
    # a later payment succeeds: free again
    ok = {"idempotency_key": key, "event_id": "evt_2", "status": "succeeded", "provider_ref": "ch_2"}
    r = signed(d, tid, ok)
    assert r.status == 200 and r.json()["state"] == "succeeded" and r.json()["rider_held"] is False, r
    assert ride(d, rh).status == 201
    types = [x[0] for x in payment_rows(d, pg, tid)]
    assert types == ["payment.requested", "payment.failed", "payment.succeeded"]
    for etype, seq, payload, corr in payment_rows(d, pg, tid):
        ev = {"event_id": str(uuid.uuid4()), "event_type": etype, "event_version": 1,
              "timestamp": "2026-01-01T00:00:00.000Z", "producer": "ridehaild", "correlation_id": corr,
              "payload": payload}
        validator(f"{etype}.v1.schema.json").validate(ev)
    # a failure after the success: refused; the success again: a no-op
    problem(signed(d, tid, dict(fail, event_id="evt_3")), 409, "conflict")
    r = signed(d, tid, dict(ok, event_id="evt_4"))
    assert r.status == 200 and r.headers["idempotent-replayed"] == "true"
    assert [x[0] for x in payment_rows(d, pg, tid)] == types


def test_an_operator_clears_a_failed_payment_and_another_daemon_hears(make_daemon, pg):
    a = make_daemon(env=fast(PAYMENTS_SECRET=PAY_SECRET))
    b = make_daemon(env=fast(PAYMENTS_SECRET=PAY_SECRET), db=a.db)
    rider, rh = a.rider_session()
    tid, fare = completed_trip(a, pg, rh)
    key = payment_rows(a, pg, tid)[0][2]["idempotency_key"]
    assert signed(a, tid, {"idempotency_key": key, "event_id": "e1", "status": "failed",
                           "failure_reason": "expired_card"}).status == 200
    # (an empty body: refused either way, 402 first while held, so polling writes nothing)
    wait_for(lambda: b.post("/v1/rides", {}, headers=rh).status == 402, timeout=5, what="daemon b holding the rider")
    r = b.post(f"/v1/admin/payments/{tid}/clear", {"reason": "paid in cash"}, headers=b.admin)
    assert r.status == 200 and r.json()["cleared_by"] == "admin" and r.json()["rider_held"] is False, r
    assert ride(b, rh).status == 201
    # clearing again changes nothing (and logs nothing)
    r = b.post(f"/v1/admin/payments/{tid}/clear", headers=b.admin)
    assert r.status == 200 and r.headers["idempotent-replayed"] == "true" and r.json()["cleared_by"] == "admin", r
    # a payment that never failed cannot be cleared
    tid2, _ = completed_trip(a, pg, a.rider_session()[1])
    problem(b.post(f"/v1/admin/payments/{tid2}/clear", headers=b.admin), 409, "conflict")
    log = sql(a, pg, "SELECT actor, action, subject, detail FROM pricing_log WHERE action = 'payment.hold.clear'")
    assert log == [("admin", "payment.hold.clear", tid, {"rider_id": rider["id"], "amount": fare,
                                                         "reason": "paid in cash"})]


def test_a_cancellation_fee_is_requested_too(make_daemon, pg):
    d = make_daemon(env=fast(TRIP_CANCEL_GRACE="0s"))
    _, rh = d.rider_session()
    t = ride(d, rh).json()
    drv, dh = d.driver_session()
    sql(d, pg, "UPDATE drivers SET status = 'available', version = version + 1 WHERE id = %s", (drv["id"],))
    assert d.post(f"/v1/rides/{t['id']}/assign", {"driver_id": drv["id"]}, headers=d.admin).status == 200
    time.sleep(0.1)
    r = d.post(f"/v1/rides/{t['id']}/cancel", headers=rh)
    assert r.status == 200 and r.json()["cancellation"]["fee"] == 500, r
    rows = payment_rows(d, pg, t["id"])
    assert [(x[0], x[2]["kind"], x[2]["amount"]["amount"]) for x in rows] == [("payment.requested", "cancellation_fee", 5.0)]
    # a free cancellation asks for nothing
    t2 = ride(d, rh).json()
    assert d.post(f"/v1/rides/{t2['id']}/cancel", headers=rh).status == 200
    assert payment_rows(d, pg, t2["id"]) == []


# ---------------------------------------------------------------- bad input

def test_bad_input_is_refused_naming_the_field_with_nothing_written(make_daemon, pg):
    d = make_daemon(env=fast(PAYMENTS_SECRET=PAY_SECRET))
    written = lambda: sql(d, pg, "SELECT (SELECT count(*) FROM zones), (SELECT count(*) FROM tariffs), "
                                 "(SELECT count(*) FROM surge_overrides), (SELECT count(*) FROM pricing_log), "
                                 "(SELECT version FROM pricing_book), (SELECT count(*) FROM payment_results)")[0]
    assert put_zone(d, "airport", AIRPORT).status == 201
    start = written()
    # unknown vehicle type
    for r in (estimate(d, vehicle_type="hovercraft"), d.get("/v1/surge?lat=40.75&lng=-73.98&vehicle_type=hovercraft"),
              d.get("/v1/surge/cells?vehicle_type=hovercraft"),
              d.post("/v1/admin/tariffs/hovercraft", {"base": 100}, headers=d.admin)):
        b = problem(r, 400, "validation-failed")
        assert b["field"] == "vehicle_type" and b["rule"] == "enum"
    # polygons: self-intersecting (a bow tie), not closed, not a polygon, out of range
    bowtie = {"type": "Polygon", "coordinates": [[[-73.99, 40.75], [-73.97, 40.76], [-73.97, 40.75],
                                                  [-73.99, 40.76], [-73.99, 40.75]]]}
    b = problem(put_zone(d, "bowtie", bowtie), 422, "geometry-invalid")
    assert b["field"] == "geometry" and "Self-intersection" in b["reason"]
    open_ring = {"type": "Polygon", "coordinates": [[[-73.99, 40.75], [-73.97, 40.76], [-73.97, 40.75],
                                                     [-73.98, 40.70]]]}
    assert problem(put_zone(d, "open", open_ring), 400, "validation-failed")["field"] == "geometry.coordinates[0]"
    b = problem(put_zone(d, "line", {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}), 400, "validation-failed")
    assert b["field"] == "geometry.type"
    far = {"type": "Polygon", "coordinates": [[[-73.99, 40.75], [-73.97, 95], [-73.97, 40.75], [-73.99, 40.75]]]}
    assert problem(put_zone(d, "far", far), 400, "validation-failed")["field"] == "geometry.coordinates[0][1]"
    assert problem(put_zone(d, "Bad_Name", AIRPORT), 400, "validation-failed")["field"] == "name"
    # overlapping zones of one priority (another priority is fine)
    over = box(40.765, -73.980, 40.780, -73.950)
    b = problem(put_zone(d, "overlap", over), 422, "zone-overlap")
    assert b["field"] == "priority" and b["zone"] == "airport"
    # a tariff with negative amounts, a bad band, a rule naming no zone
    for body, field, rule in (({"base": -1}, "base", "minimum"), ({"per_km": -5}, "per_km", "minimum"),
                              ({"waiting_per_min": 1.5}, "waiting_per_min", "type"),
                              ({"bands": [{"name": "night", "start": "25:00", "end": "06:00"}]}, "bands[0].start", "pattern"),
                              ({"bands": [{"name": "night", "start": "22:00", "end": "06:00", "base": -3}]},
                               "bands[0].base", "minimum"),
                              ({"zone_rules": [{"kind": "pickup_fee", "zone": "airport", "amount": -1}]},
                               "zone_rules[0].amount", "minimum"),
                              ({"zone_rules": [{"kind": "fixed", "from": "airport", "amount": 10}]},
                               "zone_rules[0].to", "required"),
                              ({"currency": "usd"}, "currency", "pattern")):
        b = problem(d.post("/v1/admin/tariffs/standard", body, headers=d.admin), 400, "validation-failed")
        assert (b["field"], b["rule"]) == (field, rule), (body, b)
    b = problem(d.post("/v1/admin/tariffs/standard", {"zone_rules": [{"kind": "pickup_fee", "zone": "nowhere",
                                                                      "amount": 1}]}, headers=d.admin),
                422, "unprocessable")
    assert b["field"] == "zone_rules[0].zone" and b["zone"] == "nowhere"
    # a surge cap below 1, a cap without its mode, an override of no zone
    for body, field, rule in (({"mode": "cap", "cap": 0.5}, "cap", "minimum"), ({"mode": "cap"}, "cap", "required"),
                              ({"mode": "freeze", "cap": 2}, "cap", "additionalProperties"),
                              ({"mode": "boost"}, "mode", "enum")):
        b = problem(d.request("PUT", "/v1/admin/surge/overrides/airport", body, headers=d.admin), 400,
                    "validation-failed")
        assert (b["field"], b["rule"]) == (field, rule), (body, b)
    b = problem(d.request("PUT", "/v1/admin/surge/overrides/nowhere", {"mode": "disable"}, headers=d.admin), 404,
                "not-found")
    assert b["field"] == "zone"
    # payment results: an unknown trip, a bad signature, an old timestamp, no timestamp
    body = {"idempotency_key": "pay_x", "event_id": "e1", "status": "succeeded"}
    unknown = str(uuid.uuid4())
    assert problem(signed(d, unknown, body), 404, "not-found")["field"] == "trip_id"
    assert problem(signed(d, unknown, body, secret="wrong-secret"), 401, "signature-invalid")["field"] == \
        "Ridehail-Signature"
    assert problem(signed(d, unknown, body, ts=int(time.time()) - 3600), 401, "signature-invalid")["field"] == \
        "Ridehail-Timestamp"
    r = d.post(f"/v1/payments/{unknown}/result", body)
    assert problem(r, 401, "signature-invalid")["field"] == "Ridehail-Timestamp"
    assert problem(signed(d, "not-a-uuid", body), 400, "validation-failed")["field"] == "trip_id"
    b = problem(signed(d, unknown, {"idempotency_key": "k", "event_id": "e", "status": "failed"}), 400,
                "validation-failed")
    assert (b["field"], b["rule"]) == ("failure_reason", "required")
    # no admin credential
    assert d.request("PUT", "/v1/admin/zones/x", {"kind": "zone", "geometry": AIRPORT}).status == 401
    assert written() == start
