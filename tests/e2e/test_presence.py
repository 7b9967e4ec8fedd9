"""Drivers online: the WebSocket gateway, the driver protocol, the grid,
nearby search, staleness and the location history, with real WebSocket
clients against the real daemon and database."""
import asyncio
import json
import math
import re
import socket
import struct
import threading
import time
import uuid

import pytest
import websockets

from conftest import problem, wait_for
from test_auth import make_jwt
from wsapp import App, Driver, RawWS, envelope, now_iso, run

UTRECHT = (52.0907, 5.1214)


def token_of(headers):
    return headers["Authorization"].split()[1]


def haversine(a, b):
    la1, lo1, la2, lo2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = math.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    return 2 * 6371008.8 * math.asin(math.sqrt(h))


async def online_driver(d, lat=UTRECHT[0], lon=UTRECHT[1], how="header", **acct):
    drv, hdr = d.driver_session(**acct)
    app = await Driver.connect(d, token_of(hdr), drv["id"], how=how)
    hello = await app.recv("driver.status.changed")
    assert hello["payload"]["reason"] == "session_opened"
    await app.go("available")
    await app.ping(lat, lon, heading_deg=90, speed_kmh=30, accuracy_m=5, source="gps")
    return drv, app


def nearby(d, headers, lat=UTRECHT[0], lon=UTRECHT[1], **q):
    qs = "&".join(f"{k}={v}" for k, v in dict(lat=lat, lng=lon, **q).items())
    r = d.get("/v1/drivers/nearby?" + qs, headers=headers)
    assert r.status == 200, r
    return r.json()


# ---------------------------------------------------------------- handshake

@pytest.mark.parametrize("how", ["header", "subprotocol", "query"])
def test_driver_connects_with_each_token_form(daemon, how):
    async def go():
        drv, app = await online_driver(daemon, how=how)
        if how == "subprotocol":
            assert app.ws.subprotocol == "ridehail.v1"
        await app.close()
    run(go())


def test_handshake_refusals(daemon, pg):
    drv, hdr = daemon.driver_session()
    url = f"ws://{daemon.host}:{daemon.port}/v1/ws"

    async def status_of(**kw):
        try:
            ws = await websockets.connect(url, open_timeout=5, **kw)
        except websockets.exceptions.InvalidStatusCode as e:
            return e.status_code
        await ws.close()
        return 101

    async def go():
        assert await status_of() == 401
        assert await status_of(extra_headers={"Authorization": "Bearer " + token_of(hdr)[:-2] + "xx"}) == 401
        now = int(time.time())
        expired = make_jwt({"iss": "ridehail", "sub": drv["id"], "role": "driver", "iat": now - 7200,
                            "exp": now - 3600, "jti": "x"})
        assert await status_of(extra_headers={"Authorization": "Bearer " + expired}) == 401
        assert await status_of(extra_headers={"Authorization": "Bearer " + daemon.admin["Authorization"][7:]}) == 401
        op = daemon.post("/v1/admin/operators", {"email": f"o{uuid.uuid4().hex[:6]}@x.co", "name": "O",
                                                 "password": "operator-pw"}, headers=daemon.admin).json()
        op_tok = daemon.login("operator", op["email"], "operator-pw")
        # an operator's socket is the console's (console.subscribe)
        assert await status_of(extra_headers={"Authorization": "Bearer " + op_tok}) == 101
        pg.query(daemon.db, "UPDATE drivers SET disabled = true WHERE id = %s", (drv["id"],))
        assert await status_of(extra_headers={"Authorization": "Bearer " + token_of(hdr)}) == 403
        # a token for an account that does not exist
        ghost = make_jwt({"iss": "ridehail", "sub": str(uuid.uuid4()), "role": "driver", "iat": now,
                          "exp": now + 600, "jti": "x"})
        assert await status_of(extra_headers={"Authorization": "Bearer " + ghost}) == 403
    run(go())
    # the handshake is HTTP: refusals are problem+json, and no upgrade happened
    problem(daemon.get("/v1/ws"), 426, "upgrade-required")
    r = daemon.raw(b"GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   b"Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    assert r.startswith(b"HTTP/1.1 426") and b"Sec-WebSocket-Version: 13" in r
    r = daemon.raw(b"GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n\r\n")
    assert r.startswith(b"HTTP/1.1 400")


# ---------------------------------------------------------------- the grid

def test_driver_appears_in_nearby_search(daemon):
    async def go():
        drv, app = await online_driver(daemon, lat=52.1000, lon=5.1300)
        _, rider = daemon.rider_session()
        res = wait_for(lambda: nearby(daemon, rider, 52.1, 5.13)["count"] == 1 and nearby(daemon, rider, 52.1, 5.13),
                       what="the driver in a rider's nearby search")
        d0 = res["drivers"][0]
        assert "driver_id" not in d0 and "status" not in d0 and res["exact"] is False
        moved = haversine((52.1, 5.13), (d0["location"]["lat"], d0["location"]["lon"]))
        assert 40 <= moved <= 110, f"rider sees a position {moved:.0f} m from the truth"
        again = nearby(daemon, rider, 52.1, 5.13)["drivers"][0]
        assert again["location"] == d0["location"]  # stable: no averaging attack
        assert d0["vehicle_type"] == "standard" and d0["heading_deg"] == 90
        ops = nearby(daemon, daemon.admin, 52.1, 5.13)
        exact = [x for x in ops["drivers"] if x["driver_id"] == drv["id"]]
        assert exact and exact[0]["location"] == {"lat": 52.1, "lng": 5.13, "lon": 5.13} and exact[0]["status"] == "available"
        assert exact[0]["distance_m"] == 0
        # filters
        assert nearby(daemon, daemon.admin, 52.1, 5.13, vehicle_type="standard")["count"] >= 1
        assert nearby(daemon, daemon.admin, 52.2, 5.13, radius_m=1000)["count"] == 0
        # going offline takes the driver out at once
        await app.go("offline")
        assert all(x["driver_id"] != drv["id"] for x in nearby(daemon, daemon.admin, 52.1, 5.13)["drivers"])
        await app.go("available")
        await app.ping(52.1, 5.13)
        wait_for(lambda: any(x["driver_id"] == drv["id"] for x in nearby(daemon, daemon.admin, 52.1, 5.13)["drivers"]))
        # a dropped socket takes the driver out at once too
        await app.close()
        wait_for(lambda: all(x["driver_id"] != drv["id"]
                             for x in nearby(daemon, daemon.admin, 52.1, 5.13)["drivers"]), what="driver gone")
    run(go())


def test_nearby_orders_and_limits(daemon):
    async def go():
        base = (51.5, -0.12)
        apps = []
        for i in range(6):
            drv, app = await online_driver(daemon, lat=base[0] + 0.001 * i, lon=base[1])
            apps.append((drv, app))
        res = wait_for(lambda: (lambda r: r["count"] == 4 and r)(nearby(daemon, daemon.admin, *base, limit=4)))
        ids = [x["driver_id"] for x in res["drivers"]]
        assert ids == [a[0]["id"] for a in apps[:4]]
        dists = [x["distance_m"] for x in res["drivers"]]
        assert dists == sorted(dists)
        for _, app in apps:
            await app.close()
    run(go())


def test_nearby_filters_by_vehicle_type(make_daemon):
    # A second vehicle type (from the environment) so that the filter has
    # something to leave out: with one type it could not fail.
    d = make_daemon(env={"RIDEHAIL_TARIFF_XL_BASE": "500"})

    async def go():
        std, a = await online_driver(d, lat=47.37, lon=8.54)
        xl, b = await online_driver(d, lat=47.3701, lon=8.54, vehicle_type="xl")
        wait_for(lambda: nearby(d, d.admin, 47.37, 8.54)["count"] == 2, what="both drivers")
        only_xl = nearby(d, d.admin, 47.37, 8.54, vehicle_type="xl")["drivers"]
        assert [x["driver_id"] for x in only_xl] == [xl["id"]] and only_xl[0]["vehicle_type"] == "xl"
        only_std = nearby(d, d.admin, 47.37, 8.54, vehicle_type="standard")["drivers"]
        assert [x["driver_id"] for x in only_std] == [std["id"]]
        await a.close()
        await b.close()
    run(go())


@pytest.mark.parametrize("query, field, rule", [
    ("lng=5", "lat", "required"),
    ("lat=95&lng=5", "lat", "maximum"),
    ("lat=52&lng=-181", "lng", "minimum"),
    ("lat=nan&lng=5", "lat", "type"),
    ("lat=52&lng=5&radius_m=0", "radius_m", "minimum"),
    ("lat=52&lng=5&radius_m=50000", "radius_m", "maximum"),
    ("lat=52&lng=5&limit=2.5", "limit", "type"),
    # numbers as JSON spells them, nothing looser (each was taken once)
    ("lat=0x10&lng=5", "lat", "type"),
    ("lat=%2052&lng=5", "lat", "type"),
    ("lat=52.&lng=5", "lat", "type"),
    ("lat=+52&lng=5", "lat", "type"),
    ("lat=52&lng=5&radius_m=1.5", "radius_m", "type"),
    ("lat=52&lng=5&radius_m=1e3", "radius_m", "type"),
    ("lat=52&lng=5&limit=%205", "limit", "type"),
    ("lat=52&lng=5&vehicle_type=rocket", "vehicle_type", "enum"),
])
def test_nearby_validation(daemon, query, field, rule):
    _, rider = daemon.rider_session()
    body = problem(daemon.get("/v1/drivers/nearby?" + query, headers=rider), 400, "validation-failed")
    assert (body["field"], body["rule"]) == (field, rule)


def test_nearby_is_for_riders_and_operators(daemon):
    _, drv = daemon.driver_session()
    problem(daemon.get("/v1/drivers/nearby?lat=52&lng=5", headers=drv), 403, "forbidden")
    problem(daemon.get("/v1/drivers/nearby?lat=52&lng=5"), 401, "unauthorized")


def test_stale_drivers_disappear_then_are_evicted(make_daemon, pg):
    d = make_daemon(env={"RIDEHAIL_PRESENCE_STALE_AFTER": "1s", "RIDEHAIL_PRESENCE_EVICT_AFTER": "3s"})

    async def go():
        drv, app = await online_driver(d, lat=48.85, lon=2.35)
        wait_for(lambda: nearby(d, d.admin, 48.85, 2.35)["count"] == 1)
        t0 = time.time()
        wait_for(lambda: nearby(d, d.admin, 48.85, 2.35)["count"] == 0, timeout=5, what="stale driver hidden")
        assert time.time() - t0 < 2.5
        wait_for(lambda: pg.query(d.db, "SELECT status FROM drivers WHERE id = %s", (drv["id"],))[0][0] == "offline",
                 timeout=8, what="evicted driver marked offline")
        assert "evicted" in d.log()
        # a new ping brings the driver back (available again once it says so)
        await app.go("available")
        await app.ping(48.85, 2.35)
        wait_for(lambda: nearby(d, d.admin, 48.85, 2.35)["count"] == 1)
        await app.close()
    run(go())
    metrics = d.get("/metrics").body.decode()
    assert "ridehail_presence_stale_evictions_total 1" in metrics


def test_second_login_replaces_the_first(daemon):
    async def go():
        drv, hdr = daemon.driver_session()
        first = await Driver.connect(daemon, token_of(hdr), drv["id"])
        await first.recv("driver.status.changed")
        second = await Driver.connect(daemon, token_of(hdr), drv["id"])
        await second.recv("driver.status.changed")
        with pytest.raises(websockets.exceptions.ConnectionClosed) as e:
            while True:
                await asyncio.wait_for(first.ws.recv(), 3)
        assert e.value.code == 4000 and "replaced" in e.value.reason
        await second.go("available")  # the new session works
        await second.ping(40.0, -3.7)
        wait_for(lambda: any(x["driver_id"] == drv["id"] for x in nearby(daemon, daemon.admin, 40.0, -3.7)["drivers"]))
        await second.close()
    run(go())


# ---------------------------------------------------------------- bad messages

BAD = [
    # (payload change or raw text, field, rule, reason)
    ({"location": {"lat": 91, "lon": 0}}, "payload.location.lat", "maximum", "validation_failed"),
    ({"location": {"lat": 0, "lon": -180.5}}, "payload.location.lon", "minimum", "validation_failed"),
    ({"location": {"lat": "52", "lon": 5}}, "payload.location.lat", "type", "validation_failed"),
    ({"location": {"lat": 52}}, "payload.location.lon", "required", "validation_failed"),
    ({"heading_deg": 361}, "payload.heading_deg", "maximum", "validation_failed"),
    ({"heading_deg": -0.5}, "payload.heading_deg", "minimum", "validation_failed"),
    ({"speed_kmh": -1}, "payload.speed_kmh", "minimum", "validation_failed"),
    ({"source": "carrier-pigeon"}, "payload.source", "enum", "validation_failed"),
    ({"altitude_m": 3}, "payload.altitude_m", "additionalProperties", "validation_failed"),
    ({"driver_id": "not-a-uuid"}, "payload.driver_id", "format", "validation_failed"),
]


@pytest.mark.parametrize("change, field, rule, reason", BAD)
def test_bad_location_rejected_and_connection_stays(daemon, change, field, rule, reason):
    async def go():
        drv, app = await online_driver(daemon, lat=45.0, lon=7.6)
        payload = {"driver_id": drv["id"], "location": {"lat": 45.1, "lon": 7.6}}
        payload.update(change)
        sent = await app.send("driver.location.updated", payload)
        m = await app.rejected(reason, field, rule)
        assert m["correlation_id"] == sent["event_id"]
        assert m["payload"]["command_type"] == "driver.location.updated"
        # nothing changed, and the connection still works
        exact = [x for x in nearby(daemon, daemon.admin, 45.0, 7.6)["drivers"] if x["driver_id"] == drv["id"]]
        assert exact[0]["location"] == {"lat": 45.0, "lng": 7.6, "lon": 7.6}
        await app.ping(45.0005, 7.6)
        wait_for(lambda: [x for x in nearby(daemon, daemon.admin, 45.0, 7.6)["drivers"]
                          if x["driver_id"] == drv["id"]][0]["location"]["lat"] == 45.0005)
        await app.close()
    run(go())


def test_envelope_and_semantic_rejections(daemon):
    async def go():
        drv, app = await online_driver(daemon, lat=41.9, lon=12.5)
        loc = {"driver_id": drv["id"], "location": {"lat": 41.9, "lon": 12.5}}
        await app.send_raw("{not json")
        await app.rejected("invalid_json")
        await app.send_raw("[1, 2]")
        await app.rejected("validation_failed", "", "type")
        await app.send_raw('{"event_type": "driver.location.updated", "payload": {}} trailing')
        await app.rejected("invalid_json")
        await app.send("driver.location.updated", loc, event_id="nope")
        await app.rejected("validation_failed", "event_id", "format")
        await app.send("driver.location.updated", loc, timestamp="yesterday")
        await app.rejected("validation_failed", "timestamp", "format")
        await app.send("driver.location.updated", loc, event_version=3)  # versions 1 and 2 exist
        await app.rejected("unsupported_version", "event_version")
        await app.send("driver.location.updated", loc, event_version=2)  # version 1's shape as version 2
        await app.rejected("validation_failed", "payload.location.lon", "additionalProperties")
        await app.send("driver.status.changed", {"driver_id": drv["id"], "status": "available"}, event_version=2)
        await app.rejected("unsupported_version", "event_version")  # version 1 only
        m = envelope("driver.location.updated", loc)
        del m["correlation_id"]
        await app.send_raw(json.dumps(m))
        await app.rejected("validation_failed", "correlation_id", "required")
        await app.send("driver.location.updated", loc, extra=1)
        await app.rejected("validation_failed", "extra", "additionalProperties")
        await app.send("trip.teleport", {})
        await app.rejected("unknown_event_type", "event_type")
        await app.send("driver.location.updated", dict(loc, driver_id=str(uuid.uuid4())))
        await app.rejected("forbidden", "payload.driver_id")
        await app.send("driver.location.updated", loc, timestamp=now_iso(3600))
        await app.rejected("timestamp_in_future", "timestamp")
        await app.send("driver.location.updated", loc, timestamp=now_iso(-3600))
        await app.rejected("stale", "timestamp")
        await app.send("driver.status.changed", {"driver_id": drv["id"], "status": "on_trip"})
        await app.rejected("validation_failed", "payload.status", "enum")
        # an older fix arriving after a newer one is ignored, not an error
        await app.ping(41.95, 12.5)
        await app.send("driver.location.updated", dict(loc, location={"lat": 41.0, "lon": 12.0}),
                       timestamp=now_iso(-30))
        await app.no_message()
        wait_for(lambda: [x for x in nearby(daemon, daemon.admin, 41.95, 12.5)["drivers"]
                          if x["driver_id"] == drv["id"]])
        # heartbeats are answered
        hb = await app.send("client.heartbeat", {"client_id": drv["id"], "client_type": "driver", "status": "alive",
                                                "latency_ms": 40})
        m = await app.recv("server.heartbeat")
        assert m["correlation_id"] == hb["event_id"] and m["payload"]["echo"] == hb["timestamp"]
        await app.close()
    run(go())
    text = daemon.get("/metrics").body.decode()
    assert 'ridehail_gateway_rejected_total{reason="validation_failed"}' in text


def test_non_finite_coordinates_rejected(daemon):
    """JSON has no NaN or Infinity: NaN is not JSON at all, and a number too
    large for a double is refused as not a number, not clamped."""
    async def go():
        drv, app = await online_driver(daemon, lat=43.3, lon=5.37)
        base = json.dumps(envelope("driver.location.updated", {"driver_id": drv["id"],
                                                               "location": {"lat": 1, "lon": 5.37}}))
        await app.send_raw(base.replace('"lat": 1,', '"lat": NaN,'))
        await app.rejected("invalid_json")
        await app.send_raw(base.replace('"lat": 1,', '"lat": 1e999,'))
        await app.rejected("validation_failed", "payload.location.lat", "type")
        await app.send_raw(base.replace('"lat": 1,', '"lat": -Infinity,'))
        await app.rejected("invalid_json")
        exact = [x for x in nearby(daemon, daemon.admin, 43.3, 5.37)["drivers"] if x["driver_id"] == drv["id"]]
        assert exact and exact[0]["location"] == {"lat": 43.3, "lng": 5.37, "lon": 5.37}  # nothing changed
        await app.close()
    run(go())


def test_a_ping_lands_the_same_however_it_is_spelled(daemon):
    """Compact pings are read by the gateway's tree-less scan; other
    spellings (escapes, exponents) go through
    cJSON: the same position lands, and the same refusal comes back."""
    async def go():
        drv, app = await online_driver(daemon, lat=48.85, lon=2.35)

        def where():
            got = [x for x in nearby(daemon, daemon.admin, 48.85, 2.35)["drivers"] if x["driver_id"] == drv["id"]]
            return got[0]["location"] if got else None

        def spelled(lat_text, source_text='"gps"', driver_id=drv["id"]):
            m = envelope("driver.location.updated", {"driver_id": driver_id, "location": {"lat": 0, "lon": 2.35},
                                                     "heading_deg": 90, "source": "gps"})
            text = json.dumps(m, separators=(",", ":"))
            return text.replace('"lat":0,', '"lat":' + lat_text + ',').replace('"gps"', source_text)

        for lat, lat_text, source_text in ((48.851, "48.851", '"gps"'), (48.852, "4.8852e1", '"gps"'),
                                           (48.853, "48.853", '"gp\\u0073"'), (48.854, "4885.4e-2", '"gps"'),
                                           (48.855, "48.855", '"network"')):
            await app.send_raw(spelled(lat_text, source_text))
            wait_for(lambda: where() == {"lat": lat, "lng": 2.35, "lon": 2.35}, what=f"the ping spelled {lat_text} {source_text}")
        other = str(uuid.uuid4())
        await app.send_raw(spelled("48.9", driver_id=other))
        await app.rejected("forbidden", "payload.driver_id")
        await app.send_raw(spelled("48.9", driver_id=other).replace('"driver_id"', '"driver\\u005fid"'))
        await app.rejected("forbidden", "payload.driver_id")
        await app.send_raw(spelled("90.5"))
        await app.rejected("validation_failed", "payload.location.lat", "maximum")
        assert where() == {"lat": 48.855, "lng": 2.35, "lon": 2.35}  # nothing changed
        await app.close()
    run(go())


def test_ws_connection_limit(make_daemon):
    d = make_daemon(env={"RIDEHAIL_WS_MAX_CONNECTIONS": "1"})
    url = f"ws://{d.host}:{d.port}/v1/ws"

    async def go():
        drv, app = await online_driver(d)
        _, hdr = d.driver_session()
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as e:
            await websockets.connect(url, extra_headers=hdr, open_timeout=5)
        assert e.value.status_code == 503
        await app.close()
        # the freed place is taken by the next driver
        deadline = time.time() + 5
        while True:
            try:
                ws = await websockets.connect(url, extra_headers=hdr, open_timeout=5)
                break
            except websockets.exceptions.InvalidStatusCode as e2:
                assert e2.status_code == 503 and time.time() < deadline
                await asyncio.sleep(0.1)
        await ws.close()
    run(go())
    wait_for(lambda: re.search(r"^ridehail_ws_connections 0$", d.get("/metrics").body.decode(), re.M),
             what="every WebSocket counted closed")


def test_periodic_acks_count_pings(make_daemon):
    d = make_daemon(env={"RIDEHAIL_PRESENCE_ACK_INTERVAL": "1s", "RIDEHAIL_PRESENCE_MAX_PINGS_PER_S": "100"})

    async def go():
        drv, app = await online_driver(d, lat=50.85, lon=4.35)  # the first ping is acked at once
        first = await app.recv("driver.location.acked")
        assert first["payload"]["driver_id"] == drv["id"] and first["payload"]["count"] == 1
        sent = [await app.ping(50.85 + i * 1e-4, 4.35) for i in range(1, 6)]
        await app.no_message(within=0.5)  # within the interval: no ack per ping
        await asyncio.sleep(0.6)
        last = await app.ping(50.86, 4.35)
        ack = await app.recv("driver.location.acked")
        assert ack["payload"]["count"] == len(sent) + 1
        assert ack["payload"]["last_event_id"] == last["event_id"] == ack["correlation_id"]
        await app.close()
    run(go())


def test_token_expiry_closes_the_socket_with_4001(make_daemon):
    d = make_daemon(env={"RIDEHAIL_AUTH_LEEWAY": "0s"})
    drv = d.create_driver()
    now = int(time.time())
    tok = make_jwt({"iss": "ridehail", "sub": drv["id"], "role": "driver", "iat": now, "exp": now + 2, "jti": "brief"})

    async def go():
        app = await Driver.connect(d, tok, drv["id"])
        await app.recv("driver.status.changed")
        t0 = time.time()
        with pytest.raises(websockets.exceptions.ConnectionClosed) as e:
            while True:
                await asyncio.wait_for(app.ws.recv(), 6)
        assert e.value.code == 4001
        assert time.time() - t0 < 5
    run(go())


def test_flood_of_invalid_messages_closes(make_daemon):
    d = make_daemon(env={"RIDEHAIL_WS_MAX_REJECTIONS": "5"})

    async def go():
        drv, app = await online_driver(d)
        with pytest.raises(websockets.exceptions.ConnectionClosed) as e:
            for _ in range(50):
                await app.send_raw("garbage")
                await asyncio.sleep(0.01)
            while True:
                await asyncio.wait_for(app.ws.recv(), 3)
        assert e.value.code == 1008
    run(go())


def test_ping_rate_limit_then_disconnect(make_daemon):
    d = make_daemon(env={"RIDEHAIL_PRESENCE_MAX_PINGS_PER_S": "2", "RIDEHAIL_PRESENCE_FLOOD_CLOSE_AFTER": "1s"})

    async def go():
        drv, app = await online_driver(d)
        for _ in range(10):
            await app.ping(52.09, 5.12)
        await app.rejected("rate_limited")
        with pytest.raises(websockets.exceptions.ConnectionClosed) as e:
            t0 = time.time()
            while time.time() - t0 < 5:
                await app.ping(52.09, 5.12)
                await asyncio.sleep(0.02)
            await asyncio.wait_for(app.ws.recv(), 3)
        assert e.value.code == 1008
    run(go())
    assert "ridehail_presence_pings_throttled_total" in d.get("/metrics").body.decode()


# ---------------------------------------------------------------- framing

def raw_driver(d):
    drv, hdr = d.driver_session()
    c = RawWS(d, token_of(hdr))
    assert c.status == 101
    op, hello = c.read_frame()
    assert op == 1 and json.loads(hello)["event_type"] == "driver.status.changed"
    return drv, c


@pytest.mark.parametrize("frame, code", [
    (RawWS.frame(0x1, b"{}", mask=False), 1002),              # unmasked client frame
    (RawWS.frame(0x1, b"{}", rsv=4), 1002),                   # reserved bit
    (RawWS.frame(0x3, b"x"), 1002),                           # unknown opcode
    (RawWS.frame(0x9, b"p" * 126), 1002),                     # control frame too long
    (RawWS.frame(0x8, b"", fin=False), 1002),                 # fragmented control frame
    (RawWS.frame(0x0, b"x"), 1002),                           # continuation with nothing to continue
    (RawWS.frame(0x1, b"\xff\xfe"), 1007),                    # invalid UTF-8
    (RawWS.frame(0x2, b"\x00\x01"), 1003),                    # binary: not our protocol
    (RawWS.frame(0x1, b"", length=70000)[:14], 1009),         # frame over ws.max_frame_size (65536)
])
def test_malformed_frames_close_with_the_right_code(daemon, frame, code):
    drv, c = raw_driver(daemon)
    c.send(frame)
    assert c.close_code() == code
    assert c.eof()
    c.close()


def test_fragments_ping_pong_and_close_handshake(daemon):
    drv, c = raw_driver(daemon)
    msg = json.dumps(envelope("client.heartbeat", {"client_id": drv["id"], "client_type": "driver",
                                                   "status": "alive"})).encode()
    c.send(RawWS.frame(0x1, msg[:10], fin=False) + RawWS.frame(0x9, b"mid") + RawWS.frame(0x0, msg[10:20], fin=False) +
           RawWS.frame(0x0, msg[20:]))
    frames = [c.read_frame(), c.read_frame()]
    assert (0xA, b"mid") in frames  # the pong came between the fragments
    text = [json.loads(p) for op, p in frames if op == 1]
    assert text and text[0]["event_type"] == "server.heartbeat"
    c.send(RawWS.frame(0x8, struct.pack("!H", 1000) + b"bye"))
    assert c.close_code() == 1000
    assert c.eof()
    c.close()


def test_empty_fragments(daemon):
    """A message whose first fragments are empty (nothing buffered yet), and a
    message made only of empty fragments (found by the Autobahn suite, case
    6.1.2, under UBSan: memcpy from a null buffer)."""
    drv, c = raw_driver(daemon)
    msg = json.dumps(envelope("client.heartbeat", {"client_id": drv["id"], "client_type": "driver",
                                                   "status": "alive"})).encode()
    c.send(RawWS.frame(0x1, b"", fin=False) + RawWS.frame(0x0, b"", fin=False) + RawWS.frame(0x0, msg))
    op, payload = c.read_frame()
    assert op == 1 and json.loads(payload)["event_type"] == "server.heartbeat"
    c.send(RawWS.frame(0x1, b"", fin=False) + RawWS.frame(0x0, b"", fin=False) + RawWS.frame(0x0, b""))
    op, payload = c.read_frame()
    assert op == 1 and json.loads(payload)["payload"]["reason"] == "invalid_json"
    c.send(RawWS.frame(0x8, struct.pack("!H", 1000)))
    assert c.close_code() == 1000
    c.close()


def test_server_heartbeat_and_idle_timeout(make_daemon):
    d = make_daemon(env={"RIDEHAIL_WS_PING_INTERVAL": "1s", "RIDEHAIL_WS_IDLE_TIMEOUT": "3s"})
    drv, c = raw_driver(d)
    t0 = time.time()
    op, payload = c.read_frame()
    assert op == 0x9 and time.time() - t0 < 3  # the server pinged a silent client
    c.send(RawWS.frame(0xA, payload))  # answering keeps it open ...
    time.sleep(2.2)
    c.send(RawWS.frame(0xA, b"still here"))
    # ... and silence closes it with 1001
    t1 = time.time()
    assert c.close_code() == 1001
    assert time.time() - t1 < 6
    c.close()


def test_heartbeats_of_connections_opened_together_are_spread(make_daemon):
    # Sockets opened in the same instant are not all pinged in one sweep (one
    # long turn of the loop, every other message waiting behind the writes):
    # each one's heartbeat comes up to a quarter of ws.ping_interval early.
    d = make_daemon(env={"RIDEHAIL_WS_PING_INTERVAL": "4s", "RIDEHAIL_WS_IDLE_TIMEOUT": "30s"})
    toks = [token_of(d.rider_session()[1]) for _ in range(16)]
    conns = [RawWS(d, t) for t in toks]
    t0 = time.time()
    firsts = []

    def first_ping(c):  # each socket read on its own, so that one ping's wait does not delay the others
        assert c.status == 101
        while True:
            op, _ = c.read_frame()
            if op == 0x9:
                firsts.append(time.time() - t0)
                return

    readers = [threading.Thread(target=first_ping, args=(c,)) for c in conns]
    for r in readers:
        r.start()
    for r in readers:
        r.join(10)
    for c in conns:
        c.close()
    assert len(firsts) == len(conns)
    assert max(firsts) < 5.5  # none later than the interval (plus a sweep)
    assert min(firsts) < 3.6  # some well before it
    assert max(firsts) - min(firsts) >= 0.4, firsts


def test_slow_reader_is_dropped(make_daemon):
    d = make_daemon(env={"RIDEHAIL_WS_MAX_OUTPUT": "4KiB", "RIDEHAIL_WS_MAX_REJECTIONS": "100000",
                         "RIDEHAIL_WS_MAX_MESSAGE_BURST": "100000"})  # flooding is not what this measures
    drv, hdr = d.driver_session()
    c = RawWS(d, token_of(hdr), rcvbuf=4096)
    msg = json.dumps(envelope("client.heartbeat", {"client_id": drv["id"], "client_type": "driver",
                                                   "status": "alive"})).encode()
    frame = RawWS.frame(0x1, msg)
    c.s.settimeout(0.5)
    try:
        for _ in range(20000):  # each earns a reply we never read
            c.send(frame)
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        pass
    wait_for(lambda: "ridehail_ws_slow_readers_total 1" in d.get("/metrics").body.decode(), timeout=10,
             what="the slow reader to be dropped")
    c.close()
    assert d.get("/healthz").status == 200


def test_echo_endpoint_is_off_by_default_and_test_only(daemon, make_daemon):
    problem(daemon.get("/v1/ws/echo"), 404, "not-found")
    d = make_daemon(env={"RIDEHAIL_WS_ECHO": "true"})
    assert "ws.echo is on" in d.log()

    async def go():
        async with websockets.connect(f"ws://{d.host}:{d.port}/v1/ws/echo", open_timeout=5) as ws:
            await ws.send("héllo")
            assert await asyncio.wait_for(ws.recv(), 3) == "héllo"
            await ws.send(b"\x00\xffbinary")
            assert await asyncio.wait_for(ws.recv(), 3) == b"\x00\xffbinary"
            await ws.send(["frag", "mented"])
            assert await asyncio.wait_for(ws.recv(), 3) == "fragmented"
    run(go())


# ---------------------------------------------------------------- HTTP fallback and history

def test_http_location_fallback(daemon):
    drv, hdr = daemon.driver_session()
    body = {"location": {"lat": 59.33, "lon": 18.06}, "heading_deg": 10, "source": "network", "timestamp": now_iso()}
    r = daemon.request("PUT", "/v1/drivers/me/location", body=body, headers=hdr)
    assert r.status == 200 and r.json() == {"status": "ok"}
    p = problem(daemon.request("PUT", "/v1/drivers/me/location", body=dict(body, location={"lat": 99, "lon": 0}),
                               headers=hdr), 400, "validation-failed")
    assert p["field"] == "location.lat"
    p = problem(daemon.request("PUT", "/v1/drivers/me/location", body=dict(body, timestamp=now_iso(7200)),
                               headers=hdr), 400, "validation-failed")
    assert p["reason"] == "timestamp_in_future"
    _, rider = daemon.rider_session()
    problem(daemon.request("PUT", "/v1/drivers/me/location", body=body, headers=rider), 403, "forbidden")
    # offline drivers are not searchable; available ones on HTTP are
    ops = nearby(daemon, daemon.admin, 59.33, 18.06)
    assert all(x["driver_id"] != drv["id"] for x in ops["drivers"])


def test_location_history_lands_in_postgres(make_daemon, pg):
    d = make_daemon(env={"RIDEHAIL_PRESENCE_HISTORY_FLUSH_INTERVAL": "100ms"})

    async def go():
        drv, app = await online_driver(d, lat=35.68, lon=139.76)
        for i in range(1, 5):
            await app.ping(35.68 + i * 0.0001, 139.76, speed_kmh=20 + i, source="gps")
            await asyncio.sleep(0.01)
        rows = wait_for(lambda: (lambda r: len(r) == 5 and r)(pg.query(
            d.db, "SELECT ST_Y(location::geometry), ST_X(location::geometry), speed_kmh, source, trip_id,"
                  " recorded_at > now() - interval '1 minute', device_at IS NOT NULL"
                  " FROM driver_locations WHERE driver_id = %s ORDER BY recorded_at", (drv["id"],))),
            what="five history rows")
        assert abs(rows[-1][0] - 35.6804) < 1e-7 and rows[-1][1] == 139.76
        assert rows[-1][2] == 24 and rows[-1][3] == "gps" and rows[-1][4] is None and rows[-1][5] and rows[-1][6]
        parts = pg.query(d.db, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'driver_locations'::regclass")
        assert parts[0][0] >= 4  # default + today and days ahead
        assert pg.query(d.db, "SELECT count(*) FROM driver_locations_default")[0][0] == 0
        await app.close()
    run(go())


def test_history_retention_drops_old_partitions(make_daemon, pg):
    db = pg.create_db()
    d = make_daemon(db=db)  # applies the migrations
    d.stop()
    pg.query(db, "CREATE TABLE driver_locations_20200101 PARTITION OF driver_locations"
                 " FOR VALUES FROM ('2020-01-01 00:00+00') TO ('2020-01-02 00:00+00')")
    today = time.strftime("driver_locations_%Y%m%d", time.gmtime())
    d2 = make_daemon(db=db, env={"RIDEHAIL_PRESENCE_HISTORY_RETENTION": "2d"})
    wait_for(lambda: pg.query(db, "SELECT to_regclass('driver_locations_20200101')")[0][0] is None, timeout=15,
             what="the partition past retention to be dropped")
    assert pg.query(db, "SELECT to_regclass(%s)::text", (today,))[0][0] == today
    d2.stop()
    assert "dropped 1" in d2.log()


def test_history_queue_drops_oldest_when_database_is_slow(make_daemon, pg):
    d = make_daemon(env={"RIDEHAIL_PRESENCE_HISTORY_QUEUE_MAX": "100", "RIDEHAIL_PRESENCE_MAX_PINGS_PER_S": "10000",
                         "RIDEHAIL_PRESENCE_HISTORY_FLUSH_INTERVAL": "100ms"})
    locker = pg.connect(d.db)
    locker.autocommit = False
    locker.cursor().execute("LOCK TABLE driver_locations IN ACCESS EXCLUSIVE MODE")

    async def go():
        drv, app = await online_driver(d, lat=1.3, lon=103.8)
        for i in range(400):
            await app.ping(1.3 + i * 1e-5, 103.8)
        # the hot path went on while the database was blocked
        wait_for(lambda: [x for x in nearby(d, d.admin, 1.3, 103.8)["drivers"]
                          if abs(x["location"]["lat"] - (1.3 + 399e-5)) < 1e-9])
        await app.close()
        return drv
    drv = run(go())
    text = d.get("/metrics").body.decode()
    dropped = float(re.search(r"^ridehail_history_points_dropped_total (\S+)$", text, re.M).group(1))
    assert dropped > 0
    locker.rollback()
    locker.close()

    # Oldest first: of the points queued while the table was locked, the
    # newest 100 (the queue's size) survive and are written once it is free.
    def written():
        rows = pg.query(d.db, "SELECT ST_Y(location::geometry) FROM driver_locations WHERE driver_id = %s",
                        (drv["id"],))
        return {round((r[0] - 1.3) / 1e-5) for r in rows}
    got = wait_for(lambda: (lambda w: 399 in w and w)(written()), what="the newest point written")
    assert set(range(300, 400)) <= got, sorted(set(range(300, 400)) - got)
    assert len(got) < 400


def test_presence_metrics(daemon):
    text = daemon.get("/metrics").body.decode()
    for name in ("ridehail_presence_connected_drivers", "ridehail_presence_pings_total",
                 "ridehail_presence_grid_drivers", "ridehail_presence_stale_evictions_total",
                 "ridehail_history_queue_depth", "ridehail_history_lag_seconds",
                 "ridehail_history_points_dropped_total", "ridehail_ws_connections",
                 "ridehail_gateway_rejected_total"):
        assert name in text, name


def test_many_drivers_arriving_keep_connected_sessions_sound(make_daemon, pg):
    """Driver records must not move while sessions point at them: a socket
    opened first keeps working after thousands more drivers arrive (here
    through the HTTP fallback, which makes records just the same)."""
    import http.client
    d = make_daemon()
    n = 4500  # more than one block of records
    ids = [r[0] for r in pg.query(d.db, """
        INSERT INTO drivers (email, name, password_hash, vehicle_type, vehicle_make, vehicle_model,
                             vehicle_color, plate)
        SELECT 'many' || i || '@example.com', 'Many ' || i, 'unused', 'standard', 'Kia', 'Niro', 'Blue',
               'M' || i
        FROM generate_series(1, %s) i RETURNING id::text""", (n,))]

    async def go():
        first, app = await online_driver(d, 52.0, 5.0)
        conn = http.client.HTTPConnection(d.host, d.port, timeout=10)
        now = int(time.time())
        for i, drv_id in enumerate(ids):
            tok = make_jwt({"iss": "ridehail", "sub": drv_id, "role": "driver", "iat": now, "exp": now + 600,
                            "jti": uuid.uuid4().hex})
            body = json.dumps({"location": {"lat": 52.0 + (i % 100) * 0.001, "lon": 5.0 + (i // 100) * 0.001},
                               "timestamp": now_iso()})
            conn.request("PUT", "/v1/drivers/me/location", body=body,
                         headers={"Authorization": "Bearer " + tok, "Content-Type": "application/json"})
            r = conn.getresponse()
            assert r.status == 200, r.read()
            r.read()
        conn.close()
        # the first driver's session still works and still moves its own record
        await app.ping(52.3, 5.3)
        await app.go("offline")
        await app.go("available")
        await app.ping(52.31, 5.31)
        ops = wait_for(lambda: [x for x in nearby(d, d.admin, 52.31, 5.31, radius_m=500)["drivers"]
                                if x["driver_id"] == first["id"]], what="the first driver at its new place")
        assert ops[0]["location"] == {"lat": 52.31, "lng": 5.31, "lon": 5.31}
        await app.close()

    run(go())
    m = d.get("/metrics").body.decode()
    assert re.search(r"^ridehail_presence_driver_records (\d+)", m, re.M).group(1) == str(n + 1)
