"""Dispatch: offers over real WebSockets, accept/decline/timeout, the cascade,
radius widening, the demand queue, parallel offers, driver trip commands,
the rider's live view with replay, metering, restart in the middle, and a
torture run checked against the database afterwards."""
import asyncio
import math
import random
import time
import uuid

import pytest

from conftest import problem, wait_for
from test_presence import token_of
from wsapp import App, Driver, now_iso, run

PICKUP = (52.0907, 5.1214)
DROPOFF = (52.1100, 5.1400)


@pytest.fixture(params=["greedy", "batch"])
def make_daemon(request, make_daemon):
    """Every test here runs under both dispatch policies (match.mode): greedy,
    and batch with a window short enough for the tests' timings (a test's own
    setting wins)."""
    def make(env=None, **kw):
        env = dict(env or {})
        env.setdefault("RIDEHAIL_MATCH_MODE", request.param)
        if request.param == "batch":
            env.setdefault("RIDEHAIL_MATCH_BATCH_WINDOW", "200ms")
        return make_daemon(env=env, **kw)
    make.mode = request.param
    return make


def north(p, metres):
    return (p[0] + metres / 111320.0, p[1])


def hav(a, b):
    la1, lo1, la2, lo2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = math.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    return 2 * 6371008.8 * math.asin(math.sqrt(h))


def sql(d, pg, q, params=None):
    return pg.query(d.db, q, params)


async def online(d, at=PICKUP):
    drv, hdr = d.driver_session()
    app = await Driver.connect(d, token_of(hdr), drv["id"])
    await app.recv("driver.status.changed")
    await app.ping(*at, accuracy_m=5)
    await app.go("available")
    app.hdr = hdr
    return drv, app


async def rider_app(d):
    rider, hdr = d.rider_session()
    app = await App.connect(d, token_of(hdr), rider["id"])
    app.hdr = hdr
    return rider, app


def request(d, hdr, pickup=PICKUP, dropoff=DROPOFF, **extra):
    body = {"pickup": {"lat": pickup[0], "lng": pickup[1]}, "dropoff": {"lat": dropoff[0], "lng": dropoff[1]}}
    body.update(extra)
    return d.post("/v1/rides", body, headers=hdr)


async def offer_for(app, trip_id=None, timeout=5):
    m = await app.recv("ride.offer", timeout=timeout)
    if trip_id:
        assert m["payload"]["trip_id"] == trip_id, m
    return m["payload"]


async def accept(app, offer):
    sent = await app.send("offer.accept", {"offer_id": offer["offer_id"]})
    ack = await app.recv("command.acknowledged")
    assert ack["correlation_id"] == sent["event_id"] and ack["payload"]["state"] == "MATCHED", ack
    assigned = await app.recv("trip.assigned")
    assert assigned["payload"]["trip_id"] == offer["trip_id"]
    return assigned["payload"]


async def command(app, kind, trip_id, **extra):
    cid = str(uuid.uuid4())
    sent = await app.send(kind, dict(trip_id=trip_id, command_id=cid, **extra))
    ack = await app.recv("command.acknowledged")
    assert ack["correlation_id"] == sent["event_id"] and ack["payload"]["command_id"] == cid, ack
    return ack["payload"], cid


def driver_status(d, pg, driver_id):
    return sql(d, pg, "SELECT status FROM drivers WHERE id = %s", (driver_id,))[0][0]


def trip_state(d, pg, trip_id):
    return sql(d, pg, "SELECT state, driver_id::text FROM trips WHERE id = %s", (trip_id,))[0]


# ---------------------------------------------------------------- a whole trip

def test_a_whole_trip_over_websockets(make_daemon, pg):
    d = make_daemon()

    async def go():
        drv, dapp = await online(d, north(PICKUP, 800))
        rider, rapp = await rider_app(d)
        r = request(d, rapp.hdr)
        assert r.status == 201, r
        trip = r.json()
        offer = await offer_for(dapp, trip["id"])
        assert offer["fare"] == {"currency": "USD", "amount": trip["fare"]["quoted"] / 100}
        # without a road map: the straight line x pricing.detour_factor, at pricing.average_speed
        assert abs(offer["distance_m"] - 800 * 1.3) < 5 and abs(offer["pickup_eta_s"] - 800 * 1.3 / (25 / 3.6)) <= 1
        assert driver_status(d, pg, drv["id"]) == "offered"
        await accept(dapp, offer)
        m = await rapp.recv("trip.matched")
        assert m["payload"]["driver"]["id"] == drv["id"] and m["payload"]["pickup_eta_s"] > 0
        assert m["payload"]["driver"]["vehicle"]["plate"] == drv["vehicle"]["plate"]
        assert trip_state(d, pg, trip["id"]) == ("MATCHED", drv["id"])
        assert driver_status(d, pg, drv["id"]) == "en_route"

        # the rider watches the car come
        await dapp.ping(*north(PICKUP, 400), accuracy_m=5)
        loc = await rapp.recv("driver.location")
        assert loc["payload"]["eta_to"] == "pickup" and abs(loc["payload"]["location"]["lat"] - north(PICKUP, 400)[0]) < 1e-6
        await command(dapp, "trip.arrived", trip["id"])
        assert (await rapp.recv("trip.state_changed"))["payload"]["state"] == "ARRIVED"
        await command(dapp, "trip.started", trip["id"])
        assert (await rapp.recv("trip.state_changed"))["payload"]["state"] == "IN_PROGRESS"
        # drive 2 km north in 200 m steps, 10 s apart by the device clock (72 km/h; stamped ahead of
        # now, within presence.max_clock_skew, so that they are newer than the last fix); a wild
        # jump in between is not metered
        t0 = 1
        path = [north(PICKUP, 200 * i) for i in range(11)]
        for i, p in enumerate(path):
            await dapp.send("driver.location.updated", {"driver_id": drv["id"], "location": {"lat": p[0], "lon": p[1]},
                                                        "accuracy_m": 5}, timestamp=now_iso(t0 + 10 * i))
            if i == 5:  # a GPS glitch 50 km away, one second later: ignored by the meter
                await dapp.send("driver.location.updated",
                                {"driver_id": drv["id"], "location": {"lat": p[0] + 0.45, "lon": p[1]},
                                 "accuracy_m": 5}, timestamp=now_iso(t0 + 10 * i + 1))
            await asyncio.sleep(0.25)  # under presence.max_pings_per_s
        loc = await rapp.recv("driver.location")
        assert loc["payload"]["eta_to"] == "dropoff"
        ackp, cid = await command(dapp, "trip.completed", trip["id"])
        assert ackp["state"] == "COMPLETED"
        done = None
        while done is None:
            m = await rapp.recv("trip.state_changed", timeout=5)
            if m["payload"]["state"] == "COMPLETED":
                done = m["payload"]
        row = sql(d, pg, "SELECT metered_distance_m, fare_final FROM trips WHERE id = %s", (trip["id"],))[0]
        assert abs(row[0] - 2000) < 5, row  # the glitch was not counted
        assert done["fare"]["final"] == row[1]
        # a resent command is answered, not applied again
        again = await dapp.send("trip.completed", {"trip_id": trip["id"], "command_id": cid})
        ack = await dapp.recv("command.acknowledged")
        assert ack["correlation_id"] == again["event_id"] and ack["payload"]["state"] == "COMPLETED"
        assert driver_status(d, pg, drv["id"]) == "available"
        # both rate
        assert d.post(f"/v1/rides/{trip['id']}/rating", {"stars": 5}, headers=rapp.hdr).status == 201
        assert d.post(f"/v1/rides/{trip['id']}/rating", {"stars": 4}, headers=dapp.hdr).status == 201
        seqs = [x[0] for x in sql(d, pg, "SELECT aggregate_seq FROM outbox WHERE aggregate_id = %s ORDER BY id",
                                  (trip["id"],))]
        assert seqs == list(range(1, len(seqs) + 1))
        kinds = [x[0] for x in sql(d, pg, "SELECT event_type FROM outbox WHERE aggregate_id = %s ORDER BY id",
                                   (trip["id"],))]
        assert kinds == ["trip.requested", "price.calculated", "trip.accepted", "trip.driver_arrived", "trip.started",
                         "trip.finished", "price.calculated", "rating.submitted", "rating.submitted"]
        await dapp.close()
        await rapp.close()
    run(go())


# ---------------------------------------------------------------- the cascade

def test_decline_and_timeout_cascade(make_daemon, pg):
    d = make_daemon(env={"RIDEHAIL_MATCH_OFFER_TIMEOUTS": "2"})

    async def go():
        near, a = await online(d, north(PICKUP, 300))
        mid, b = await online(d, north(PICKUP, 900))
        far, c = await online(d, north(PICKUP, 1500))
        rider, rapp = await rider_app(d)
        trip = request(d, rapp.hdr).json()
        first = await offer_for(a, trip["id"])  # the nearest first
        sent = await a.send("offer.decline", {"offer_id": first["offer_id"], "reason": "too_far"})
        assert (await a.recv("command.acknowledged"))["correlation_id"] == sent["event_id"]
        second = await offer_for(b, trip["id"])
        # b lets it expire: withdrawn, and the next one gets it
        w = await b.recv("offer.withdrawn", timeout=5)
        assert w["payload"] == {"offer_id": second["offer_id"], "trip_id": trip["id"], "reason": "expired"}
        third = await offer_for(c, trip["id"])
        # a late accept of the expired offer is refused and changes nothing
        await b.send("offer.accept", {"offer_id": second["offer_id"]})
        await b.rejected("offer_expired", field="payload.offer_id")
        await accept(c, third)
        assert trip_state(d, pg, trip["id"]) == ("MATCHED", far["id"])
        for x in (near, mid):
            assert wait_for(lambda: driver_status(d, pg, x["id"]) == "available", what="released")
        rej = sql(d, pg, "SELECT payload->>'driver_id', payload->>'reason' FROM outbox WHERE aggregate_id = %s"
                         " AND event_type = 'match.rejected' ORDER BY id", (trip["id"],))
        assert rej == [(near["id"], "declined"), (mid["id"], "expired")]
        for x in (a, b, c, rapp):
            await x.close()
    run(go())


def test_radius_widens_and_the_rider_is_told(make_daemon, pg):
    d = make_daemon(env={"RIDEHAIL_MATCH_RADIUS_STEPS": "1000,3000"})

    async def go():
        drv, app = await online(d, north(PICKUP, 2000))
        rider, rapp = await rider_app(d)
        trip = request(d, rapp.hdr).json()
        offer = await offer_for(app, trip["id"])
        prog = await rapp.recv("trip.search_progress")
        assert prog["payload"]["status"] == "searching" and prog["payload"]["radius_m"] == 3000
        await accept(app, offer)
        await app.close()
        await rapp.close()
    run(go())


def test_parallel_offers_first_accept_wins(make_daemon, pg):
    d = make_daemon(env={"RIDEHAIL_MATCH_PARALLEL_OFFERS": "2"})

    async def go():
        a_drv, a = await online(d, north(PICKUP, 200))
        b_drv, b = await online(d, north(PICKUP, 400))
        c_drv, c = await online(d, north(PICKUP, 5000))
        rider, rapp = await rider_app(d)
        trip = request(d, rapp.hdr).json()
        oa, ob = await offer_for(a, trip["id"]), await offer_for(b, trip["id"])
        await c.no_message(0.3)  # only the best two
        await accept(b, ob)
        w = await a.recv("offer.withdrawn")
        assert w["payload"]["reason"] == "matched_elsewhere" and w["payload"]["offer_id"] == oa["offer_id"]
        await a.send("offer.accept", {"offer_id": oa["offer_id"]})
        await a.rejected("offer_expired")
        assert trip_state(d, pg, trip["id"]) == ("MATCHED", b_drv["id"])
        wait_for(lambda: driver_status(d, pg, a_drv["id"]) == "available", what="a released")
        assert driver_status(d, pg, c_drv["id"]) == "available"
        for x in (a, b, c, rapp):
            await x.close()
    run(go())


def test_a_batch_window_assigns_its_trips_together(make_daemon, pg):
    """d1 is the nearest driver of both trips, d2 a fair pickup for a only.
    Greedy gives a (asked first) d1, and b gets d2 from 1.7 km; a batch
    window gives a d2 and b d1: 700 + 500 m of pickups instead of 500 +
    1,700 (docs/dispatch.md)."""
    d = make_daemon(env={"RIDEHAIL_MATCH_BATCH_WINDOW": "1s"})

    async def go():
        d1_drv, d1 = await online(d, PICKUP)
        d2_drv, d2 = await online(d, north(PICKUP, 1200))
        _, ra = await rider_app(d)
        _, rb = await rider_app(d)
        t0 = time.monotonic()
        a = request(d, ra.hdr, pickup=north(PICKUP, 500)).json()
        if make_daemon.mode == "greedy":  # (two riders' requests may commit in either order)
            o1 = await offer_for(d1, a["id"])
        b = request(d, rb.hdr, pickup=north(PICKUP, -500)).json()
        if make_daemon.mode == "batch":
            o1 = await offer_for(d1)
        o2 = await offer_for(d2)
        if make_daemon.mode == "batch":
            assert (o2["trip_id"], o1["trip_id"]) == (a["id"], b["id"])
            assert time.monotonic() - t0 >= 0.9  # not before the window closed
            # the rider was told the search's state and what to expect
            prog = await ra.recv("trip.search_progress")
            assert prog["payload"]["status"] == "searching" and "match_eta_s" in prog["payload"], prog
        else:
            assert (o1["trip_id"], o2["trip_id"]) == (a["id"], b["id"])
        await accept(d1, o1)
        await accept(d2, o2)
        assert trip_state(d, pg, o1["trip_id"]) == ("MATCHED", d1_drv["id"])
        assert trip_state(d, pg, o2["trip_id"]) == ("MATCHED", d2_drv["id"])
        for x in (d1, d2, ra, rb):
            await x.close()
    run(go())


def test_idle_drivers_are_told_where_riders_wait(make_daemon, pg):
    """match.reposition: three riders ask 2 km north of two idle drivers,
    whose own cell has no demand; the one driver there is busy with an
    offer. Each idle driver gets driver.reposition.suggested towards the
    riders' cell, at most one per interval; the busy driver gets none."""
    d = make_daemon(env={"RIDEHAIL_MATCH_REPOSITION": "true", "RIDEHAIL_MATCH_REPOSITION_INTERVAL": "1s",
                         "RIDEHAIL_MATCH_RADIUS_STEPS": "800", "RIDEHAIL_MATCH_OFFER_TIMEOUTS": "60"})
    hot = north(PICKUP, 2000)

    async def go():
        _, y = await online(d, PICKUP)
        _, z = await online(d, north(PICKUP, 50))
        _, x = await online(d, hot)
        trips, riders = [], []
        for _ in range(3):
            _, rapp = await rider_app(d)
            riders.append(rapp)
            trips.append(request(d, rapp.hdr, pickup=hot).json())
        await offer_for(x)  # (to whichever trip committed first)
        firsts = []
        for app in (y, z):
            m = await app.recv("driver.reposition.suggested", timeout=4)
            firsts.append(time.monotonic())
            p = m["payload"]
            assert hav((p["target"]["lat"], p["target"]["lon"]), hot) < 400, p
            assert 1500 < p["distance_m"] < 2500 and p["drivers_there"] == 0, p
            assert 2.5 < p["expected_demand"] <= 3 and p["cell_m"] == 500 and p["valid_for_s"] == 1, p
        # the next one comes an interval later, not sooner
        await y.recv("driver.reposition.suggested", timeout=3)
        assert time.monotonic() - firsts[0] >= 0.8
        for _ in range(3):
            try:
                m = await x.recv(timeout=0.5)
            except (AssertionError, asyncio.TimeoutError):
                break
            assert m["event_type"] != "driver.reposition.suggested", m
        for tr, rapp in zip(trips, riders):
            assert d.post(f"/v1/rides/{tr['id']}/cancel", headers=rapp.hdr).status == 200
        for a in (x, y, z, *riders):
            await a.close()
    run(go())


# ---------------------------------------------------------------- nobody free

def test_no_driver_online_is_503(make_daemon, pg):
    d = make_daemon()
    rider, hdr = d.rider_session()
    r = request(d, hdr)
    problem(r, 503, "unavailable")
    assert r.headers["retry-after"]
    assert sql(d, pg, "SELECT count(*) FROM trips")[0][0] == 0


def test_demand_queue_gives_a_freed_driver_to_the_waiting_trip(make_daemon, pg):
    d = make_daemon()

    async def go():
        drv, dapp = await online(d, north(PICKUP, 500))
        r1, rapp1 = await rider_app(d)
        t1 = request(d, rapp1.hdr).json()
        await accept(dapp, await offer_for(dapp, t1["id"]))
        # everyone is busy: the second trip waits
        r2, rapp2 = await rider_app(d)
        t2 = request(d, rapp2.hdr, pickup=north(PICKUP, 1000))
        assert t2.status == 201, t2
        t2 = t2.json()
        prog = await rapp2.recv("trip.search_progress")
        assert prog["payload"]["status"] == "waiting"
        # the driver finishes nearby: offered the waiting trip at once
        await command(dapp, "trip.arrived", t1["id"])
        await command(dapp, "trip.started", t1["id"])
        await command(dapp, "trip.completed", t1["id"])
        offer = await offer_for(dapp, t2["id"], timeout=2)
        await accept(dapp, offer)
        assert (await rapp2.recv("trip.matched"))["payload"]["driver"]["id"] == drv["id"]
        for x in (dapp, rapp1, rapp2):
            await x.close()
    run(go())


def test_the_longest_waiting_trip_gets_the_freed_driver_after_retries(make_daemon, pg):
    # Two trips wait, each looking around again every 400 ms, the second
    # 200 ms after the first, and finding nobody. Looking must not move a
    # trip behind the other in the queue: the driver freed just after the
    # first trip looked (its rider is told "waiting" each time) goes to the
    # first trip still.
    d = make_daemon(env={"RIDEHAIL_MATCH_WAITING_RETRY": "400ms"})

    async def go():
        drv, dapp = await online(d, north(PICKUP, 500))
        r1, rapp1 = await rider_app(d)
        t1 = request(d, rapp1.hdr).json()
        await accept(dapp, await offer_for(dapp, t1["id"]))
        await command(dapp, "trip.arrived", t1["id"])
        await command(dapp, "trip.started", t1["id"])
        apps, trips = [], []
        for k in range(2):
            r, app = await rider_app(d)
            t = request(d, app.hdr, pickup=north(PICKUP, 800 + 100 * k))
            assert t.status == 201, t
            trips.append(t.json()["id"])
            apps.append(app)
            assert (await app.recv("trip.search_progress"))["payload"]["status"] == "waiting"
            await asyncio.sleep(0.2)
        for _ in range(2):  # the first trip looks again, twice
            assert (await apps[0].recv("trip.search_progress"))["payload"]["status"] == "waiting"
        await command(dapp, "trip.completed", t1["id"])
        offer = await offer_for(dapp, timeout=2)
        assert offer["trip_id"] == trips[0], (offer, trips)
        for x in [dapp, rapp1] + apps:
            await x.close()
    run(go())


def test_a_waiting_trip_finds_a_driver_who_drives_into_range(make_daemon, pg):
    # Not freed, already available, but out of the largest ring: no event
    # tells the queue, the next look around finds them.
    d = make_daemon(env={"RIDEHAIL_MATCH_WAITING_RETRY": "300ms"})

    async def go():
        busy, bapp = await online(d, north(PICKUP, 500))
        r1, rapp1 = await rider_app(d)
        t1 = request(d, rapp1.hdr).json()
        await accept(bapp, await offer_for(bapp, t1["id"]))
        far, fapp = await online(d, north(PICKUP, 9500))  # beyond the 8,000 m ring
        r2, rapp2 = await rider_app(d)
        t2 = request(d, rapp2.hdr).json()
        assert (await rapp2.recv("trip.search_progress"))["payload"]["status"] == "waiting"
        await asyncio.sleep(0.7)
        assert driver_status(d, pg, far["id"]) == "available"  # still out of reach
        await fapp.ping(*north(PICKUP, 600), accuracy_m=5)
        offer = await offer_for(fapp, t2["id"], timeout=3)
        await accept(fapp, offer)
        assert (await rapp2.recv("trip.matched"))["payload"]["driver"]["id"] == far["id"]
        for x in (bapp, fapp, rapp1, rapp2):
            await x.close()
    run(go())


def test_no_drivers_after_max_search(make_daemon, pg):
    d = make_daemon(env={"RIDEHAIL_MATCH_MAX_SEARCH": "5s", "RIDEHAIL_MATCH_WAITING_RETRY": "500ms"})

    async def go():
        drv, dapp = await online(d, north(PICKUP, 500))
        r1, rapp1 = await rider_app(d)
        t1 = request(d, rapp1.hdr).json()
        await accept(dapp, await offer_for(dapp, t1["id"]))
        r2, rapp2 = await rider_app(d)
        t2 = request(d, rapp2.hdr).json()
        m = None
        while m is None or m["payload"].get("state") != "CANCELLED":
            m = await rapp2.recv("trip.state_changed", timeout=8)
        assert m["payload"]["cancellation"] == {"by": "system", "reason": "no_drivers", "fee": 0}
        assert trip_state(d, pg, t2["id"])[0] == "CANCELLED"
        for x in (dapp, rapp1, rapp2):
            await x.close()
    run(go())


# ---------------------------------------------------------------- refusals

def test_commands_are_checked(make_daemon, pg):
    d = make_daemon(env={"RIDEHAIL_MATCH_PARALLEL_OFFERS": "2"})

    async def go():
        a_drv, a = await online(d, north(PICKUP, 200))
        b_drv, b = await online(d, north(PICKUP, 400))
        rider, rapp = await rider_app(d)
        trip = request(d, rapp.hdr).json()
        oa, ob = await offer_for(a, trip["id"]), await offer_for(b, trip["id"])
        await b.send("offer.accept", {"offer_id": oa["offer_id"]})  # a's offer
        await b.rejected("not_your_offer", field="payload.offer_id")
        await a.send("offer.accept", {"offer_id": str(uuid.uuid4())})
        await a.rejected("offer_expired")
        await a.send("offer.accept", {"offer_id": "nope"})
        await a.rejected("validation_failed", field="payload.offer_id", rule="format")
        await a.send("offer.accept", {"offer_id": oa["offer_id"], "trip_id": str(uuid.uuid4())})
        await a.rejected("validation_failed", field="payload.trip_id")
        # a driver's trip command for a trip that is not theirs
        await a.send("trip.arrived", {"trip_id": trip["id"], "command_id": str(uuid.uuid4())})
        await a.rejected("not_your_trip")
        await accept(a, oa)
        await b.send("trip.started", {"trip_id": trip["id"], "command_id": str(uuid.uuid4())})
        await b.rejected("not_your_trip")
        # an illegal edge over the socket
        await a.send("trip.completed", {"trip_id": trip["id"], "command_id": str(uuid.uuid4())})
        await a.rejected("illegal_transition")
        # riders cannot send driver commands, nor look at other riders' trips
        await rapp.send("offer.accept", {"offer_id": oa["offer_id"]})
        await rapp.rejected("unknown_event_type")
        other, oapp = await rider_app(d)
        await oapp.send("rider.subscribe", {"trip_id": trip["id"]})
        await oapp.rejected("not_found", field="payload.trip_id")
        assert trip_state(d, pg, trip["id"]) == ("MATCHED", a_drv["id"])
        for x in (a, b, rapp, oapp):
            await x.close()
    run(go())


def test_rider_cancel_racing_accept(make_daemon, pg):
    d = make_daemon()

    async def go():
        drv, dapp = await online(d, north(PICKUP, 300))
        rider, rapp = await rider_app(d)
        trip = request(d, rapp.hdr).json()
        offer = await offer_for(dapp, trip["id"])
        # both at once: exactly one of them wins
        await dapp.send("offer.accept", {"offer_id": offer["offer_id"]})
        r = await asyncio.get_event_loop().run_in_executor(
            None, lambda: d.post(f"/v1/rides/{trip['id']}/cancel", headers=rapp.hdr))
        assert r.status == 200, r
        m = await dapp.recv(timeout=5)
        while m["event_type"] not in ("command.acknowledged", "command.rejected"):
            m = await dapp.recv(timeout=5)
        state = trip_state(d, pg, trip["id"])[0]
        assert state == "CANCELLED"
        wait_for(lambda: driver_status(d, pg, drv["id"]) == "available", what="driver free again")
        n = sql(d, pg, "SELECT count(*) FROM trip_events WHERE trip_id = %s AND to_state = 'MATCHED'", (trip["id"],))
        assert n[0][0] == (1 if m["event_type"] == "command.acknowledged" else 0)
        await dapp.close()
        await rapp.close()
    run(go())


def test_rider_cancel_during_a_live_offer_ends_the_search(make_daemon, pg):
    # The offer is withdrawn and the search stops with the trip: nothing
    # about searching may reach the rider after its CANCELLED (a withdrawn
    # offer used to restart the search, and the rider got a
    # trip.search_progress "waiting" with the next seq).
    d = make_daemon()

    async def go():
        drv, dapp = await online(d, north(PICKUP, 300))
        rider, rapp = await rider_app(d)
        trip = request(d, rapp.hdr).json()
        await rapp.send("rider.subscribe", {"trip_id": trip["id"]})
        offer = await offer_for(dapp, trip["id"])
        r = d.post(f"/v1/rides/{trip['id']}/cancel", headers=rapp.hdr)
        assert r.status == 200, r
        w = await dapp.recv("offer.withdrawn")
        assert w["payload"]["offer_id"] == offer["offer_id"] and w["payload"]["reason"] == "trip_cancelled"
        ended = await rapp.recv("trip.state_changed")
        assert ended["payload"]["state"] == "CANCELLED"
        later = []
        try:
            while True:
                later.append(await rapp.recv(timeout=1.5))
        except (AssertionError, asyncio.TimeoutError):  # quiet for 1.5 s
            pass
        assert [m for m in later if m["payload"].get("seq", 0) > ended["payload"]["seq"]] == [], later
        wait_for(lambda: driver_status(d, pg, drv["id"]) == "available", what="driver free again")
        await dapp.close()
        await rapp.close()
    run(go())


# ---------------------------------------------------------------- the rider's replay

def test_rider_reconnects_and_gets_what_it_missed(make_daemon, pg):
    d = make_daemon()

    async def go():
        drv, dapp = await online(d, north(PICKUP, 300))
        rider, rapp = await rider_app(d)
        trip = request(d, rapp.hdr).json()
        await accept(dapp, await offer_for(dapp, trip["id"]))
        matched = await rapp.recv("trip.matched")
        last = matched["payload"]["seq"]
        await rapp.close()
        await dapp.ping(*north(PICKUP, 100), accuracy_m=5)
        await command(dapp, "trip.arrived", trip["id"])
        await asyncio.sleep(0.2)
        rapp = await App.connect(d, token_of(rapp.hdr), rider["id"])
        snap = await rapp.recv("trip.snapshot")
        assert snap["payload"]["state"] == "ARRIVED" and snap["payload"]["seq"] == last + 2
        await rapp.send("rider.subscribe", {"trip_id": trip["id"], "last_seq": last})
        got = [await rapp.recv(timeout=3) for _ in range(2)]
        assert [(m["event_type"], m["payload"]["seq"]) for m in got] == [("driver.location", last + 1),
                                                                         ("trip.state_changed", last + 2)]
        assert got[1]["payload"]["state"] == "ARRIVED"
        await dapp.close()
        await rapp.close()
    run(go())


# ---------------------------------------------------------------- restarts

def test_no_offer_before_the_last_runs_reservations_are_released(make_daemon, pg):
    # At start the matcher releases the drivers the last run left reserved.
    # A reservation this run made while that release was on its way could be
    # released by it (the driver free in the database with an offer out), so
    # no offer goes out before the release is done: here it is held up by a
    # lock on the left-over driver's row, and the new trip waits for it.
    d = make_daemon()
    old, _ = d.driver_session()
    d.stop()
    sql(d, pg, "UPDATE drivers SET status = 'offered', version = version + 1 WHERE id = %s", (old["id"],))
    lock = pg.connect(d.db)
    lock.autocommit = False
    cur = lock.cursor()
    cur.execute("SELECT 1 FROM drivers WHERE id = %s FOR UPDATE", (old["id"],))
    try:
        d2 = make_daemon(db=d.db)

        async def go():
            drv, dapp = await online(d2, north(PICKUP, 300))
            rider, rapp = await rider_app(d2)
            trip = request(d2, rapp.hdr).json()
            with pytest.raises((AssertionError, asyncio.TimeoutError)):
                await offer_for(dapp, trip["id"], timeout=1.5)  # the release is still held up
            lock.rollback()
            offer = await offer_for(dapp, trip["id"], timeout=8)
            assert driver_status(d2, pg, drv["id"]) == "offered"
            assert wait_for(lambda: driver_status(d2, pg, old["id"]) == "available", what="left-over released")
            await accept(dapp, offer)
            assert driver_status(d2, pg, drv["id"]) == "en_route"
            await dapp.close()
            await rapp.close()
        run(go())
    finally:
        lock.close()


def test_restart_while_searching_and_while_riding(make_daemon, pg):
    env = {"RIDEHAIL_MATCH_OFFER_TIMEOUTS": "30"}
    d = make_daemon(env=env)

    async def phase1():
        a_drv, a = await online(d, north(PICKUP, 300))
        rider, rapp = await rider_app(d)
        t_ride = request(d, rapp.hdr).json()
        await accept(a, await offer_for(a, t_ride["id"]))
        await command(a, "trip.arrived", t_ride["id"])
        await command(a, "trip.started", t_ride["id"])
        c_drv, c = await online(d, north(PICKUP, 900))
        r3, r3app = await rider_app(d)
        t_matched = request(d, r3app.hdr).json()
        await accept(c, await offer_for(c, t_matched["id"]))
        b_drv, b = await online(d, north(PICKUP, 600))
        r2, r2app = await rider_app(d)
        t_search = request(d, r2app.hdr).json()
        await offer_for(b, t_search["id"])  # reserved, unanswered
        assert driver_status(d, pg, b_drv["id"]) == "offered"
        for x in (a, b, c, rapp, r2app, r3app):
            await x.close()
        return a_drv, a.hdr, b_drv, b.hdr, c_drv, c.hdr, t_ride, t_search, t_matched, rapp

    a_drv, a_hdr, b_drv, b_hdr, c_drv, c_hdr, t_ride, t_search, t_matched, rapp = run(phase1())
    d.stop()
    d2 = make_daemon(env=env, db=d.db)

    async def phase2():
        # the reserved driver was released; the searching trip is searched again
        assert wait_for(lambda: driver_status(d2, pg, b_drv["id"]) == "available", what="released at start")
        b = await Driver.connect(d2, token_of(b_hdr), b_drv["id"])
        await b.recv("driver.status.changed")
        await b.ping(*north(PICKUP, 600), accuracy_m=5)
        await b.go("available")
        offer = await offer_for(b, t_search["id"], timeout=8)
        await accept(b, offer)
        # the running trip carries on: the driver is told where it stands
        a = await Driver.connect(d2, token_of(a_hdr), a_drv["id"])
        await a.recv("driver.status.changed")
        assigned = await a.recv("trip.assigned")
        assert assigned["payload"]["trip_id"] == t_ride["id"] and assigned["payload"]["state"] == "IN_PROGRESS"
        # its rider sees where the trip stands
        rider = await App.connect(d2, token_of(rapp.hdr), rapp.id)
        snap = await rider.recv("trip.snapshot")
        assert snap["payload"]["trip_id"] == t_ride["id"] and snap["payload"]["state"] == "IN_PROGRESS"
        await a.ping(*north(PICKUP, 300), accuracy_m=5)
        ackp, _ = await command(a, "trip.completed", t_ride["id"])
        assert ackp["state"] == "COMPLETED"
        assert (await rider.recv("trip.state_changed", timeout=5))["payload"]["state"] == "COMPLETED"
        # the matched one goes on where it stood
        c = await Driver.connect(d2, token_of(c_hdr), c_drv["id"])
        await c.recv("driver.status.changed")
        assigned = await c.recv("trip.assigned")
        assert assigned["payload"]["trip_id"] == t_matched["id"] and assigned["payload"]["state"] == "MATCHED"
        ackp, _ = await command(c, "trip.arrived", t_matched["id"])
        assert ackp["state"] == "ARRIVED"
        for x in (a, b, c, rider):
            await x.close()
    run(phase2())
    assert trip_state(d2, pg, t_search["id"]) == ("MATCHED", b_drv["id"])


@pytest.mark.parametrize("reconnect", ["at_once", "after_the_trips_are_read_back"])
def test_metering_survives_a_sigkill(make_daemon, pg, reconnect):
    """The distance driven across a crash is metered: before it (from the
    location history), the leg driven while the daemon was away (joined from
    the last fix the history kept to the first fix after the restart), and
    after it; whether the driver's app reconnects before the restarted daemon
    has read its trips back (it is told its trip once they are) or after."""
    env = {"RIDEHAIL_PRESENCE_HISTORY_FLUSH_INTERVAL": "50ms", "RIDEHAIL_MATCH_METER_MAX_SPEED": "1000"}
    d = make_daemon(env=env)
    step = 40.0

    async def before():
        drv, app = await online(d, PICKUP)
        rider, rapp = await rider_app(d)
        trip = request(d, rapp.hdr).json()
        await accept(app, await offer_for(app, trip["id"]))
        await command(app, "trip.arrived", trip["id"])
        await command(app, "trip.started", trip["id"])
        for i in range(11):  # 0 .. 400 m north, every 0.3 s (480 km/h at most: under the limit)
            await app.ping(*north(PICKUP, i * step), accuracy_m=5)
            await asyncio.sleep(0.3)
        return drv, app.hdr, trip

    drv, hdr, trip = run(before())
    assert wait_for(lambda: sql(d, pg, "SELECT count(*) FROM driver_locations WHERE trip_id = %s",
                                (trip["id"],))[0][0] >= 11, what="the history written")
    d.proc.kill()  # SIGKILL: no goodbye, nothing flushed on the way out
    d.proc.wait()
    time.sleep(1.0)  # driving on while the daemon is away
    d2 = make_daemon(env=env, db=d.db)

    if reconnect != "at_once":
        assert wait_for(lambda: "resumed 1 active trips" in d2.log(), what="the trips read back")

    async def after():
        app = await Driver.connect(d2, token_of(hdr), drv["id"])
        await app.recv("driver.status.changed")
        assigned = await app.recv("trip.assigned", timeout=8)
        assert assigned["payload"]["state"] == "IN_PROGRESS"
        for i in range(15, 21):  # 600 .. 800 m: the 200 m from 400 m were driven while it was away
            await app.ping(*north(PICKUP, i * step), accuracy_m=5)
            await asyncio.sleep(0.3)
        for _ in range(30):  # the meter may still be reading the history back
            cid = str(uuid.uuid4())
            sent = await app.send("trip.completed", {"trip_id": trip["id"], "command_id": cid})
            m = await app.recv(timeout=5)
            while m["event_type"] not in ("command.acknowledged", "command.rejected"):
                m = await app.recv(timeout=5)
            if m["event_type"] == "command.acknowledged":
                break
            assert m["payload"]["reason"] == "unavailable", m
            await asyncio.sleep(0.2)
        assert m["event_type"] == "command.acknowledged" and m["correlation_id"] == sent["event_id"], m
        await app.close()

    run(after())
    metered = sql(d2, pg, "SELECT metered_distance_m FROM trips WHERE id = %s", (trip["id"],))[0][0]
    assert abs(metered - 20 * step) <= 0.02 * 20 * step, f"metered {metered} m of {20 * step:.0f} m driven"


def test_the_driver_hears_the_answer_to_its_commands_then_the_trip_and_no_echo(make_daemon, pg):
    """An accept is answered command.acknowledged and then trip.assigned, in
    that order (docs/websocket.md); the driver's own trip steps are answered
    by acknowledgements, not echoed back as trip.state_changed, which the
    driver gets only for changes made by others. The rider hears the matched
    driver's rating as null until the first rating."""
    d = make_daemon()

    async def go():
        drv, app = await online(d, PICKUP)
        rider, rapp = await rider_app(d)
        trip = request(d, rapp.hdr).json()
        offer = await offer_for(app, trip["id"])
        app.inbox.clear()
        sent = await app.send("offer.accept", {"offer_id": offer["offer_id"]})
        first, second = await app.recv(), await app.recv()
        assert (first["event_type"], second["event_type"]) == ("command.acknowledged", "trip.assigned"), (first, second)
        assert first["correlation_id"] == sent["event_id"]
        matched = await rapp.recv("trip.matched")
        assert matched["payload"]["driver"]["rating"] is None, matched
        for kind, state in (("trip.arrived", "ARRIVED"), ("trip.started", "IN_PROGRESS")):
            ack, _ = await command(app, kind, trip["id"])
            assert ack["state"] == state
            assert (await rapp.recv("trip.state_changed"))["payload"]["state"] == state
        await app.no_message(within=0.5)  # no echo of its own steps
        assert not [m for m in app.inbox if m["event_type"] == "trip.state_changed"], app.inbox
        # a change made by someone else (the rider cannot cancel IN_PROGRESS: an operator can)
        r = d.post(f"/v1/rides/{trip['id']}/cancel", {"reason": "operator_test"}, headers=d.admin)
        assert r.status == 200, r.body
        m = await app.recv("trip.state_changed")
        assert m["payload"]["state"] == "CANCELLED", m
        await app.close()
        await rapp.close()
    run(go())


def test_protocol_v2_speaks_as_the_rest_api(make_daemon, pg):
    """ridehail.v2: points as {lat, lng} and money in minor units, as the REST
    API, in version 2 of ride.offer, trip.assigned, driver.location and
    driver.location.updated; a v1 app on the same trip still gets version 1."""
    d = make_daemon()

    async def go():
        drv, hdr = d.driver_session()
        app = await Driver.connect(d, token_of(hdr), drv["id"], protocol=2)
        assert app.ws.subprotocol == "ridehail.v2"
        await app.recv("driver.status.changed")
        await app.ping(*PICKUP, accuracy_m=5)
        await app.go("available")
        # the old spelling in a version 2 message is refused, naming the field
        await app.send("driver.location.updated", {"driver_id": drv["id"], "location": {"lat": 52.09, "lon": 5.12}},
                       event_version=2)
        await app.rejected(reason="validation_failed")
        rider, rhdr = d.rider_session()
        rapp = await App.connect(d, token_of(rhdr), rider["id"], protocol=2)
        trip = request(d, rhdr).json()
        offer = await app.recv("ride.offer")
        assert offer["event_version"] == 2
        assert set(offer["payload"]["pickup"]) == {"lat", "lng"}
        assert offer["payload"]["pickup"]["lng"] == pytest.approx(PICKUP[1])
        assert offer["payload"]["fare"] == {"currency": trip["fare"]["currency"], "amount": trip["fare"]["quoted"]}
        await app.send("offer.accept", {"offer_id": offer["payload"]["offer_id"]})
        await app.recv("command.acknowledged")
        assigned = await app.recv("trip.assigned")
        assert assigned["event_version"] == 2 and assigned["payload"]["fare"]["amount"] == trip["fare"]["quoted"]
        await app.ping(*north(PICKUP, 50), accuracy_m=5)
        loc = await rapp.recv("driver.location")
        assert loc["event_version"] == 2 and loc["payload"]["location"]["lng"] == pytest.approx(PICKUP[1])
        # the same rider on version 1 replays the same message as version 1
        await rapp.close()
        old = await App.connect(d, token_of(rhdr), rider["id"])
        await old.recv("trip.snapshot")
        await old.send("rider.subscribe", {"trip_id": trip["id"], "last_seq": 0})
        loc1 = await old.recv("driver.location")
        assert loc1["event_version"] == 1 and set(loc1["payload"]["location"]) == {"lat", "lon"}
        assert loc1["payload"]["seq"] == loc["payload"]["seq"]
        await old.close()
        await app.close()
    run(go())
    # REST: nearby says lng too (lon stays, as first spelled)
    _, rhdr = d.rider_session()
    body = d.get("/v1/drivers/nearby?lat=52.0907&lng=5.1214", headers=rhdr).json()
    for x in body["drivers"]:
        assert x["location"]["lng"] == x["location"]["lon"]


# ---------------------------------------------------------------- torture

def test_torture_many_riders_few_drivers(make_daemon, pg):
    """Drivers accept, decline or ignore at random, riders cancel at random,
    a driver drops mid-offer; afterwards the database must show no double
    dispatch and only legal histories, each with its outbox rows."""
    seed = int(time.time())
    print(f"torture seed {seed}")
    rnd = random.Random(seed)
    d = make_daemon(env={"RIDEHAIL_MATCH_OFFER_TIMEOUTS": "1", "RIDEHAIL_MATCH_PARALLEL_OFFERS": "2",
                         "RIDEHAIL_MATCH_MAX_SEARCH": "6s", "RIDEHAIL_MATCH_WAITING_RETRY": "300ms",
                         "RIDEHAIL_TRIP_RIDES_PER_MINUTE": "1000"})
    stop = asyncio.Event()

    async def driver_loop(i):
        drv, app = await online(d, north(PICKUP, 100 * i))
        trip = None
        while not stop.is_set():
            try:
                m = await app.recv(timeout=0.5)
            except AssertionError:
                continue
            except Exception:
                return
            t, p = m["event_type"], m["payload"]
            if t == "ride.offer":
                if i == 0 and rnd.random() < 0.3:  # drops mid-offer, comes back
                    await app.close()
                    drv_app = await Driver.connect(d, token_of(app.hdr), drv["id"])
                    drv_app.hdr = app.hdr
                    app = drv_app
                    continue
                x = rnd.random()
                await asyncio.sleep(rnd.random() * 0.2)
                if x < 0.6:
                    await app.send("offer.accept", {"offer_id": p["offer_id"]})
                elif x < 0.8:
                    await app.send("offer.decline", {"offer_id": p["offer_id"]})
            elif t == "trip.assigned":
                trip = p["trip_id"]
                for kind in ("trip.arrived", "trip.started", "trip.completed"):
                    await asyncio.sleep(rnd.random() * 0.05)
                    await app.send(kind, {"trip_id": trip, "command_id": str(uuid.uuid4())})
        await app.close()

    async def rider_loop(j):
        rider, hdr = d.rider_session()
        loop = asyncio.get_event_loop()
        for _ in range(3):
            r = await loop.run_in_executor(None, lambda: request(d, hdr, pickup=north(PICKUP, rnd.random() * 800)))
            if r.status != 201:
                await asyncio.sleep(0.2)
                continue
            tid = r.json()["id"]
            await asyncio.sleep(rnd.random() * 1.5)
            if rnd.random() < 0.3:
                await loop.run_in_executor(None, lambda: d.post(f"/v1/rides/{tid}/cancel", headers=hdr))
            for _ in range(40):
                st = (await loop.run_in_executor(None, lambda: d.get(f"/v1/rides/{tid}", headers=hdr))).json()["state"]
                if st in ("COMPLETED", "CANCELLED"):
                    break
                await asyncio.sleep(0.25)

    async def go():
        drivers = [asyncio.create_task(driver_loop(i)) for i in range(4)]
        await asyncio.sleep(0.5)
        await asyncio.gather(*[rider_loop(j) for j in range(10)])
        stop.set()
        await asyncio.gather(*drivers, return_exceptions=True)
    run(go())

    legal = {None: {"SEARCHING"}, "SEARCHING": {"MATCHED", "CANCELLED"}, "MATCHED": {"ARRIVED", "CANCELLED"},
             "ARRIVED": {"IN_PROGRESS", "CANCELLED"}, "IN_PROGRESS": {"COMPLETED", "CANCELLED"}}
    events_for = {"SEARCHING": 2, "MATCHED": 1, "ARRIVED": 1, "IN_PROGRESS": 1, "COMPLETED": 2, "CANCELLED": 1}
    trips = sql(d, pg, "SELECT id::text FROM trips")
    assert len(trips) >= 10
    for (tid,) in trips:
        hist = sql(d, pg, "SELECT seq, from_state, to_state FROM trip_events WHERE trip_id = %s ORDER BY seq", (tid,))
        prev = None
        for k, (seq, frm, to) in enumerate(hist):
            assert seq == k + 1 and frm == prev and to in legal[prev], (tid, hist)
            prev = to
        assert sum(1 for h in hist if h[2] == "MATCHED") <= 1, hist  # never two drivers
        lifecycle = sql(d, pg, "SELECT count(*) FROM outbox WHERE aggregate_id = %s AND event_type NOT IN"
                               " ('match.rejected', 'rating.submitted')", (tid,))[0][0]
        assert lifecycle == sum(events_for[h[2]] for h in hist), (tid, hist)
    # no driver ever held two active trips: every driver's trips are disjoint in time
    rows = sql(d, pg, "SELECT driver_id, matched_at, COALESCE(completed_at, cancelled_at, now()) FROM trips"
                      " WHERE driver_id IS NOT NULL ORDER BY driver_id, matched_at")
    for (d1, s1, e1), (d2, s2, e2) in zip(rows, rows[1:]):
        if d1 == d2:
            assert s2 >= e1, (d1, s1, e1, s2)
    assert "level=error" not in d.log()
