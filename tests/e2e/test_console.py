"""The operator's console: GET /v1/map/roads (the road graph drawn), the page
at /console, and the live feed an operator's socket gets after
console.subscribe (drivers by state, open trips, figures), against the real
daemon and database."""
import asyncio
import math
import time
import uuid

import pytest

from conftest import problem, wait_for
from test_presence import token_of
from test_routing import MONACO, import_map
from wsapp import App, Driver, run

UTRECHT = (52.0907, 5.1214)
DROPOFF = (52.1100, 5.1400)


@pytest.fixture(scope="module")
def monaco_map(tmp_path_factory):
    if not MONACO.exists():
        pytest.skip(f"{MONACO} is absent: the road map tests are skipped")
    out = tmp_path_factory.mktemp("map") / "monaco.map"
    r = import_map(MONACO, out)
    assert r.returncode == 0, r.stderr
    return out


def metres(a, b):
    """Equirectangular distance (lat, lng) -> metres: fine over a city."""
    k = math.pi / 180 * 6371008.8
    x = (b[1] - a[1]) * k * math.cos(math.radians((a[0] + b[0]) / 2))
    y = (b[0] - a[0]) * k
    return math.hypot(x, y)


def point_segment_m(p, a, b):
    k = math.pi / 180 * 6371008.8
    c = math.cos(math.radians(p[0]))
    ax, ay = (a[1] - p[1]) * k * c, (a[0] - p[0]) * k
    bx, by = (b[1] - p[1]) * k * c, (b[0] - p[0]) * k
    dx, dy = bx - ax, by - ay
    l2 = dx * dx + dy * dy
    t = 0 if l2 == 0 else max(0, min(1, -(ax * dx + ay * dy) / l2))
    return math.hypot(ax + t * dx, ay + t * dy)


def test_map_roads_draws_every_road_a_route_takes(make_daemon, monaco_map):
    d = make_daemon(env={"RIDEHAIL_ROUTING_MAP": str(monaco_map)})
    r = d.get("/v1/map/roads")
    assert r.status == 200, r
    assert r.headers["content-type"] == "application/geo+json"
    fc = r.json()
    assert fc["type"] == "FeatureCollection"
    w, s, e, n = fc["bbox"]
    assert 7.40 < w < e < 7.45 and 43.72 < s < n < 43.76, fc["bbox"]
    classes = [f["properties"]["class"] for f in fc["features"]]
    assert len(classes) == len(set(classes)) and {"primary", "residential"} <= set(classes), classes
    segs, points = [], 0
    for f in fc["features"]:
        for line in f["geometry"]["coordinates"]:
            assert len(line) >= 2
            points += len(line)
            for (lng1, lat1), (lng2, lat2) in zip(line, line[1:]):
                assert w - 1e-5 <= lng1 <= e + 1e-5 and s - 1e-5 <= lat1 <= n + 1e-5
                segs.append(((lat1, lng1), (lat2, lng2)))
    # simplified: fewer points than the graph's 2,973 nodes appear in it
    # (each node once per line through it)
    assert 500 < points < 2973 * 2, points
    # every point of real routes lies on a drawn road (3 m simplification,
    # 5-decimal coordinates: within 5 m)
    pairs = [((43.727687, 7.418737), (43.74958, 7.436566)), ((43.7307, 7.4213), (43.7398, 7.4270)),
             ((43.7465, 7.4310), (43.7292, 7.4160))]
    checked = 0
    for a, b in pairs:
        route = d.get(f"/v1/route?from_lat={a[0]}&from_lng={a[1]}&to_lat={b[0]}&to_lng={b[1]}")
        assert route.status == 200, route
        coords = route.json()["geometry"]["coordinates"]
        for lng, lat in coords[1:-1]:  # the ends are the snapped points, on a segment's middle
            near = min(point_segment_m((lat, lng), p, q) for p, q in segs
                       if abs(p[0] - lat) < 0.003 and abs(p[1] - lng) < 0.004)
            assert near < 5, (lat, lng, near)
            checked += 1
    assert checked > 50, checked
    # cached, revalidated by ETag
    etag = r.headers["etag"]
    assert etag.startswith('"') and len(etag) == 34
    again = d.get("/v1/map/roads")
    assert again.body == r.body and again.headers["etag"] == etag
    nm = d.get("/v1/map/roads", headers={"If-None-Match": etag})
    assert nm.status == 304 and nm.body == b"" and nm.headers["etag"] == etag
    assert d.get("/v1/map/roads", headers={"If-None-Match": '"other"'}).status == 200
    assert "routing: road map drawn" in d.log()


def test_map_roads_without_a_map(daemon):
    problem(daemon.get("/v1/map/roads"), 503, "unavailable")


def test_console_page_is_served(daemon):
    r = daemon.get("/console")
    assert r.status == 200 and r.headers["content-type"].startswith("text/html"), r
    page = r.body.decode()
    assert '<script src="/console/console.js"' in page and 'id="signin-form"' in page
    assert "default-src 'self'" in r.headers["content-security-policy"]
    js = daemon.get("/console/console.js")
    assert js.status == 200 and js.headers["content-type"].startswith("text/javascript")
    assert b"console.subscribe" in js.body
    css = daemon.get("/console/console.css")
    assert css.status == 200 and css.headers["content-type"].startswith("text/css")
    nm = daemon.get("/console/console.js", headers={"If-None-Match": js.headers["etag"]})
    assert nm.status == 304 and nm.body == b""
    problem(daemon.get("/console/nope.js"), 404, "not-found")
    problem(daemon.get("/console/..%2fconf"), 404)


def operator_token(d):
    email = f"ops-{uuid.uuid4().hex[:8]}@example.com"
    r = d.post("/v1/admin/operators", {"email": email, "name": "Ops", "password": "operator-pw"}, headers=d.admin)
    assert r.status == 201, r
    return d.login("operator", email, "operator-pw"), r.json()["id"]


class Console(App):
    """An operator's socket holding what console.update says, as the page does."""

    async def subscribe(self):
        self.drivers, self.ids, self.trips, self.figures, self.seq = {}, {}, {}, None, None
        await self.send("console.subscribe", {})
        m = await self.recv("console.update")
        assert m["payload"]["full"] is True, m
        self.apply(m["payload"])
        return m["payload"]

    def apply(self, u):
        if u["full"]:
            self.drivers.clear()
            self.trips.clear()
        elif self.seq is not None:
            assert u["seq"] == self.seq + 1, (u["seq"], self.seq)
        self.seq = u["seq"]
        for slot, uid in u["driver_ids"]:
            self.ids[slot] = uid
        for slot, lat, lng, code in u["drivers"]:
            assert slot in self.ids, f"slot {slot} sent before its id"
            self.drivers[self.ids[slot]] = (lat, lng, code)
        for slot in u["drivers_gone"]:
            self.drivers.pop(self.ids[slot], None)
        for t in u["trips"]:
            self.trips[t["id"]] = t
        for tid in u["trips_gone"]:
            self.trips.pop(tid, None)
        self.figures = u["figures"]

    async def until(self, pred, timeout=6.0, what="condition"):
        deadline = asyncio.get_event_loop().time() + timeout
        while not pred(self):
            left = deadline - asyncio.get_event_loop().time()
            assert left > 0, f"console: no {what} within {timeout}s; drivers {self.drivers} trips {self.trips} " \
                             f"figures {self.figures}"
            m = await self.recv("console.update", timeout=left)
            self.apply(m["payload"])


def test_console_feed_shows_drivers_trips_and_figures(make_daemon, pg):
    d = make_daemon(env={"RIDEHAIL_MATCH_AUTO": "false"})
    tok, _ = operator_token(d)
    rider, rh = d.rider_session()
    drv, dh = d.driver_session()

    async def go():
        con = await Console.connect(d, tok, "operator", how="subprotocol", protocol=2)
        first = await con.subscribe()
        assert first["drivers"] == [] and first["trips"] == [] and first["figures"]["online"] == 0
        assert first["figures"]["match_rate"] is None and first["figures"]["time_to_match_s"] is None

        app = await Driver.connect(d, token_of(dh), drv["id"])
        await app.recv("driver.status.changed")
        await app.ping(*UTRECHT, accuracy_m=5)
        await app.go("available")
        await con.until(lambda c: c.drivers.get(drv["id"], (0, 0, 0))[2] == 1, what="the driver available")
        lat, lng, _ = con.drivers[drv["id"]]
        assert abs(lat - UTRECHT[0]) < 1e-5 and abs(lng - UTRECHT[1]) < 1e-5
        assert con.figures["online"] == 1 and con.figures["available"] == 1

        # the driver moves: the console sees the new position, within a second or two
        moved = (UTRECHT[0] + 0.001, UTRECHT[1] + 0.002)
        await app.ping(*moved, accuracy_m=5)
        await con.until(lambda c: abs(c.drivers[drv["id"]][0] - moved[0]) < 1e-5
                        and abs(c.drivers[drv["id"]][1] - moved[1]) < 1e-5, what="the move")

        # a ride request: an open trip, an open request
        r = d.post("/v1/rides", {"pickup": {"lat": moved[0], "lng": moved[1]},
                                 "dropoff": {"lat": DROPOFF[0], "lng": DROPOFF[1]}}, headers=rh)
        assert r.status == 201, r
        tid = r.json()["id"]
        await con.until(lambda c: tid in c.trips, what="the trip")
        t = con.trips[tid]
        assert t["state"] == "SEARCHING" and "driver_id" not in t
        assert t["pickup"] == [round(moved[0], 5), round(moved[1], 5)]
        assert t["dropoff"] == [DROPOFF[0], DROPOFF[1]] and t["vehicle_type"] == "standard"
        assert con.figures["open_requests"] == 1 and con.figures["open_trips"] == 1

        # the operator assigns it: the driver goes en route, the trip has them,
        # and the figures count one match
        v = pg.query(d.db, "SELECT version FROM drivers WHERE id = %s", (drv["id"],))[0][0]
        a = d.post(f"/v1/rides/{tid}/assign", {"driver_id": drv["id"], "driver_version": v},
                   headers={"Authorization": "Bearer " + tok})
        assert a.status == 200, a
        await con.until(lambda c: c.trips[tid]["state"] == "MATCHED" and c.drivers[drv["id"]][2] == 3,
                        what="the match")
        assert con.trips[tid]["driver_id"] == drv["id"]
        f = con.figures
        assert f["open_requests"] == 0 and f["en_route"] == 1 and f["available"] == 0
        assert f["match_rate"] == 1 and f["time_to_match_s"]["n"] == 1 and f["utilisation"] == 1
        assert 0 <= f["time_to_match_s"]["p50"] < 30

        # arrived: a pickup wait; then cancelled: the trip leaves the console
        assert d.post(f"/v1/rides/{tid}/arrived", headers=dh).status == 200
        await con.until(lambda c: c.figures["pickup_wait_s"] is not None, what="the pickup wait")
        assert con.figures["pickup_wait_s"]["n"] == 1
        assert d.post(f"/v1/rides/{tid}/cancel", {"reason": "test"}, headers=rh).status == 200
        await con.until(lambda c: tid not in c.trips and c.drivers[drv["id"]][2] == 1, what="the trip gone")
        assert con.figures["open_trips"] == 0

        # a second console gets everything at once
        other = await Console.connect(d, tok, "operator")
        full = await other.subscribe()
        assert other.drivers == con.drivers and full["figures"]["online"] == 1
        await other.ws.close()

        # the driver goes offline: off the map
        await app.go("offline")
        await con.until(lambda c: drv["id"] not in c.drivers, what="the driver gone")
        assert con.figures["online"] == 0
        await app.close()
        await con.ws.close()
    run(go())
    assert 'ridehail_console_subscribers 0' in d.get("/metrics").body.decode()


def test_console_subscribe_is_for_operators(daemon):
    drv, dh = daemon.driver_session()
    rider, rh = daemon.rider_session()

    async def go():
        for hdr, who in ((dh, drv["id"]), (rh, rider["id"])):
            app = await App.connect(daemon, token_of(hdr), who)
            await app.send("console.subscribe", {})
            m = await app.rejected(reason="unknown_event_type", field="event_type")
            assert "cannot send \"console.subscribe\"" in m["payload"]["details"], m
            await app.ws.close()
        tok, _ = operator_token(daemon)
        con = await Console.connect(daemon, tok, "operator")
        await con.send("console.subscribe", {"extra": 1})
        await con.rejected(reason="validation_failed", field="payload.extra")
        await con.ws.close()
    run(go())


def test_console_alerts_rise_and_clear(make_daemon):
    """[console] thresholds: a trip searching too long raises request_wait,
    searches ending unmatched raise match_rate; both clear when the cause
    goes, each logged and counted."""
    d = make_daemon(env={"RIDEHAIL_MATCH_AUTO": "false", "RIDEHAIL_CONSOLE_ALERT_REQUEST_WAIT": "2s",
                         "RIDEHAIL_CONSOLE_ALERT_MATCH_RATE": "0.5", "RIDEHAIL_CONSOLE_ALERT_MIN_OUTCOMES": "1",
                         "RIDEHAIL_CONSOLE_ALERT_CLEAR_AFTER": "0s"})
    tok, _ = operator_token(d)
    rider, rh = d.rider_session()
    drv, dh = d.driver_session()

    async def go():
        con = await Console.connect(d, tok, "operator")
        first = await con.subscribe()
        assert first["alerts"] == []
        app = await Driver.connect(d, token_of(dh), drv["id"])
        await app.recv("driver.status.changed")
        await app.ping(*UTRECHT, accuracy_m=5)
        await app.go("available")
        r = d.post("/v1/rides", {"pickup": {"lat": UTRECHT[0], "lng": UTRECHT[1]},
                                 "dropoff": {"lat": DROPOFF[0], "lng": DROPOFF[1]}}, headers=rh)
        assert r.status == 201, r
        tid = r.json()["id"]
        alerts = {}

        async def until_alerts(pred, what):
            deadline = asyncio.get_event_loop().time() + 8
            while True:
                m = await con.recv("console.update", timeout=3)
                con.apply(m["payload"])
                alerts.clear()
                alerts.update({a["name"]: a for a in m["payload"]["alerts"]})
                if pred():
                    return
                assert asyncio.get_event_loop().time() < deadline, f"no {what}: {alerts}"
        # nothing before 2 s of searching, then request_wait
        await until_alerts(lambda: "request_wait" in alerts, "request_wait")
        assert alerts["request_wait"]["detail"].startswith("1 trip searching for more than 2 s"), alerts
        assert "match_rate" not in alerts
        # the rider gives up: the search ended unmatched (rate 0 < 0.5), the wait is over
        assert d.post(f"/v1/rides/{tid}/cancel", {"reason": "too long"}, headers=rh).status == 200
        await until_alerts(lambda: "request_wait" not in alerts and "match_rate" in alerts, "match_rate alone")
        assert alerts["match_rate"]["detail"] == "0% of the last 1 searches matched (below 50%)", alerts
        # a match: one of two (50%) is not below 50%: cleared
        r = d.post("/v1/rides", {"pickup": {"lat": UTRECHT[0], "lng": UTRECHT[1]},
                                 "dropoff": {"lat": DROPOFF[0], "lng": DROPOFF[1]}}, headers=rh)
        tid2 = r.json()["id"]
        await until_alerts(lambda: tid2 in con.trips, "the second trip")
        a = d.post(f"/v1/rides/{tid2}/assign", {"driver_id": drv["id"]}, headers={"Authorization": "Bearer " + tok})
        assert a.status == 200, a
        await until_alerts(lambda: not alerts, "every alert cleared")
        await app.close()
        await con.ws.close()
    run(go())
    log = d.log()
    assert "console alert raised: request_wait: 1 trip searching for more than 2 s" in log
    assert "console alert cleared: request_wait" in log and "console alert cleared: match_rate" in log
    metrics = d.get("/metrics").body.decode()
    assert 'ridehail_console_alerts_total{alert="request_wait"} 1' in metrics
    assert 'ridehail_console_alerts_total{alert="match_rate"} 1' in metrics
    assert 'ridehail_console_alert_active{alert="match_rate"} 0' in metrics
    assert 'ridehail_console_alerts_total{alert="database"} 0' in metrics


def test_the_database_alert_is_raised_on_the_feed_and_written_as_events_after(make_daemon):
    """PostgreSQL stopped under the daemon: the console's feed shows the
    database alert at once and keeps the same one raised through the outage
    (no flapping); after recovery and console.alert_clear_after it clears,
    and the outbox holds exactly one alert.raised and one alert.cleared for
    it, in order, dated when they happened, valid against their schemas."""
    from conftest import PgCluster
    from eventschemas import validator, violations
    from test_schemas import as_event
    cluster = PgCluster()
    try:
        db = cluster.create_db()
        d = make_daemon(env={"RIDEHAIL_DATABASE_RECONNECT_MAX": "300ms", "RIDEHAIL_CONSOLE_ALERT_CLEAR_AFTER": "2s",
                             "RIDEHAIL_CONSOLE_UPDATE_INTERVAL": "200ms"}, db_url=cluster.url(db))
        tok, _ = operator_token(d)

        async def go():
            con = await Console.connect(d, tok, "operator")
            assert (await con.subscribe())["alerts"] == []

            async def next_alerts():
                m = await con.recv("console.update", timeout=5)
                con.apply(m["payload"])
                return {a["name"]: a for a in m["payload"]["alerts"]}
            cluster.stop("fast")
            down_at = time.time()
            while "database" not in (alerts := await next_alerts()):
                assert time.time() - down_at < 30, "no database alert"
            raised = alerts["database"]
            assert raised["detail"].startswith("the database is not ready"), raised
            # the same alert all through the outage
            for _ in range(10):
                assert (await next_alerts())["database"]["id"] == raised["id"]
            cluster.start()
            d.wait_ready(timeout=20)
            back_at = time.time()
            while "database" in (alerts := await next_alerts()):
                assert alerts["database"]["id"] == raised["id"]
                assert time.time() - back_at < 15, "the database alert never cleared"
            # not before clear_after had passed since the database was back
            assert time.time() - back_at >= 1.5
            await con.ws.close()
            return raised
        raised = run(go())
        rows = wait_for(lambda: (r := cluster.query(
            db, "SELECT aggregate_seq, event_type, event_version, producer, correlation_id::text, payload,"
                " event_id::text, occurred_at FROM outbox WHERE event_type LIKE 'alert.%%' ORDER BY id")) and
            len(r) >= 2 and r, timeout=10, what="the alert's events")
        assert [(r[0], r[1]) for r in rows] == [(1, "alert.raised"), (2, "alert.cleared")], rows
        for r in rows:
            ev = as_event(r)
            assert not sorted(violations("outbox-event.schema.json", ev)), ev
            validator(f"{ev['event_type']}.v1.schema.json").validate(ev)
            assert ev["correlation_id"] == raised["id"] and ev["payload"]["alert_id"] == raised["id"]
            assert ev["payload"]["alert"] == "database"
        up, down = rows[0][5], rows[1][5]
        assert up["raised_at"] == raised["since"] == as_event(rows[0])["timestamp"]
        assert down["raised_at"] == raised["since"] and down["cleared_at"] > raised["since"]
        assert 0 < down["duration_s"] < 60
        row = cluster.query(db, "SELECT alert, cleared_at IS NOT NULL FROM console_alerts")
        assert row == [("database", True)], row
        metrics = d.get("/metrics").body.decode()
        assert 'ridehail_console_alerts_total{alert="database"} 1' in metrics
        assert "ridehail_console_alert_events_total 2" in metrics
    finally:
        cluster.destroy()


def inside(pt, ring):
    """Whether (lat, lng) is inside the polygon (ray casting)."""
    y, x = pt
    hit = False
    for i in range(len(ring)):
        (y1, x1), (y2, x2) = ring[i], ring[i - 1]
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            hit = not hit
    return hit


def test_surge_cells_are_drawn_live(make_daemon):
    """Pricing's surge cells reach the console as they change: none in the
    first update of a quiet city; demand with one driver raises the cell of
    the pickup (and its neighbours), and the console's update carries it (its
    multiplier as /v1/surge says, the pickup inside its ring)."""
    from test_pricing import P, demand, driver_at, fast, surge
    d = make_daemon(env=fast(SURGE_MAX_STEP="5"))
    tok, _ = operator_token(d)

    async def go():
        con = await Console.connect(d, tok, "operator")
        first = await con.subscribe()
        assert first["surge"] == [], first["surge"]
        _, app = await driver_at(d)
        demand(d, 6)
        deadline = asyncio.get_event_loop().time() + 15
        cells = []
        while not cells:
            assert asyncio.get_event_loop().time() < deadline, "no surge cell on the console"
            m = await con.recv("console.update", timeout=5)
            con.apply(m["payload"])
            cells = m["payload"].get("surge") or []
        s = surge(d)
        assert s["multiplier"] > 1, s
        mine = [c for c in cells if inside(P, c["ring"])]
        assert len(mine) == 1, cells
        assert abs(mine[0]["m"] - s["multiplier"]) < 0.011, (mine, s)
        # its neighbours share the demand (surge.neighbours), none above it
        assert all(1 < c["m"] <= mine[0]["m"] for c in cells), cells
        # a second console's first update has them too
        con2 = await Console.connect(d, tok, "operator")
        again = (await con2.subscribe())["surge"]
        assert [c["m"] for c in again if inside(P, c["ring"])] == [mine[0]["m"]], again
        await app.close()
        await con.ws.close()
        await con2.ws.close()
    run(go())


def test_shared_bookings_are_drawn_live(make_daemon):
    """Shared rides on the console: a booking appears as it is made (its
    pickup and dropoff), shows its trip and driver once confirmed, and leaves
    the map when the rider cancels it."""
    from test_share import A, book, card, confirmed, off, online, rider_app
    d = make_daemon()
    tok, _ = operator_token(d)

    async def go():
        con = await Console.connect(d, tok, "operator")
        assert (await con.subscribe())["shares"] == []

        async def until(pred, what):
            deadline = asyncio.get_event_loop().time() + 10
            while True:
                m = await con.recv("console.update", timeout=5)
                con.apply(m["payload"])
                if "shares" in m["payload"]:
                    con.shares = {b["id"]: b for b in m["payload"]["shares"]}
                if pred():
                    return
                assert asyncio.get_event_loop().time() < deadline, f"no {what}: {getattr(con, 'shares', None)}"
        drv, dapp = await online(d, at=off(A, -300))
        rider, rapp = await rider_app(d)
        rc = card(d, rapp.hdr, A, off(A, 3000))
        r = book(d, rapp.hdr, rc)
        assert r.status == 202, r
        bid = r.json()["id"]
        c = await confirmed(rapp, bid)
        await until(lambda: bid in con.shares and con.shares[bid]["state"] == "confirmed", "the booking confirmed")
        b = con.shares[bid]
        assert b["trip_id"] == c["trip_id"] and b["driver_id"] == drv["id"] and b["seats"] == 1, b
        assert abs(b["pickup"][0] - A[0]) < 1e-4 and abs(b["dropoff"][0] - off(A, 3000)[0]) < 1e-4, b
        # a second console's first update shows it too
        con2 = await Console.connect(d, tok, "operator")
        assert [x["id"] for x in (await con2.subscribe())["shares"]] == [bid]
        await con2.ws.close()
        r = d.post(f"/v1/share/bookings/{bid}/cancel", {"reason": "changed plans"}, headers=rapp.hdr)
        assert r.status == 200, r
        await until(lambda: bid not in con.shares, "the booking gone")
        await dapp.close()
        await rapp.close()
        await con.ws.close()
    run(go())
