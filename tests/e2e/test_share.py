"""Shared rides (docs/sharing.md) against the real daemon, database and
WebSockets: the rate card, bookings (202, GET, idempotency, the rider's
feed), insertion within and beyond the bounds, two bookings racing for the
last seat, the driver's versioned stop list and per-rider commands, fares
and receipts, a shared trip through a restart, and the refusals."""
import asyncio
import threading
import time
import uuid

import pytest

from conftest import problem, wait_for
from eventschemas import violations
from test_presence import token_of
from wsapp import App, Driver, run

A = (52.0907, 5.1214)


def off(p, north_m=0.0, east_m=0.0):
    return (p[0] + north_m / 111320.0, p[1] + east_m / (111320.0 * 0.6149))


def pt(p):
    return {"lat": p[0], "lng": p[1]}


async def online(d, at=A):
    drv, hdr = d.driver_session()
    app = await Driver.connect(d, token_of(hdr), drv["id"])
    app.hdr = hdr
    await app.recv("driver.status.changed")
    await app.ping(*at, accuracy_m=5)
    await app.go("available")
    return drv, app


async def rider_app(d):
    rider, hdr = d.rider_session()
    app = await App.connect(d, token_of(hdr), rider["id"])
    app.hdr = hdr
    return rider, app


def card(d, hdr, pickup, dropoff, **extra):
    r = d.post("/v1/share/rate-card", dict(pickup=pt(pickup), dropoff=pt(dropoff), **extra), headers=hdr)
    assert r.status == 200, r
    return r.json()


def book(d, hdr, rc, seats=1, mode="normal", corporate=False, key=None, **extra):
    h = dict(hdr)
    if key:
        h["Idempotency-Key"] = key
    body = dict(rate_card_id=rc["rate_card_id"], choice={"seats": seats, "mode": mode, "corporate": corporate})
    body.update(extra)
    return d.post("/v1/share/bookings", body, headers=h)


def booking(d, hdr, bid):
    r = d.get(f"/v1/share/bookings/{bid}", headers=hdr)
    assert r.status == 200, r
    return r.json()


async def confirmed(rapp, bid, timeout=5):
    while True:
        m = await rapp.recv("share.booking.updated", timeout=timeout)
        if m["payload"]["id"] == bid and m["payload"]["state"] != "pending":
            return m["payload"]


async def leg(app, trip, bid, action, version, **extra):
    sent = await app.send("share.leg.update", dict(trip_id=trip, booking_id=bid, action=action,
                                                   stops_version=version, **extra))
    return sent


def one_transaction(pg, d, bid):
    """Whether a booking's first two changes (requested, then its decision)
    were written by one transaction (the same xmin on both history rows)."""
    rows = pg.query(d.db, "SELECT xmin::text FROM share_events WHERE booking_id = %s AND seq <= 2 ORDER BY seq",
                    (bid,))
    assert len(rows) == 2, rows
    return rows[0][0] == rows[1][0]


def test_rate_card_eight_options_from_the_tariff(make_daemon):
    d = make_daemon()
    _, hdr = d.rider_session()
    est = d.get(f"/v1/estimate?pickup_lat={A[0]}&pickup_lng={A[1]}&dropoff_lat={off(A, 3000)[0]}"
                f"&dropoff_lng={A[1]}", headers=hdr)
    assert est.status == 200, est
    solo = est.json()["fare"]["total"]
    rc = card(d, hdr, A, off(A, 3000))
    assert rc["solo_fare"] == solo
    assert rc["rate_card_id"].startswith("rc1.") and rc["applied_coupons"] == []
    opts = {(o["seats"], o["mode"], o["corporate"]): o for o in rc["options"]}
    assert len(opts) == 8
    one = round(solo * 0.7)
    assert opts[(1, "normal", False)]["price"] == one
    assert opts[(1, "express", False)]["price"] == round(solo * 0.7 * 1.15)
    assert opts[(2, "normal", False)]["price"] == round(solo * 0.7 * 1.6)
    assert opts[(1, "normal", True)]["price"] == round(solo * 0.7 * 0.95)
    assert not opts[(1, "normal", True)]["available"] and opts[(1, "normal", False)]["available"]
    assert card(d, hdr, A, off(A, 3000), corporate=True)["options"][1]["available"]
    # bad input: a precise 400
    r = d.post("/v1/share/rate-card", {"pickup": pt(A)}, headers=hdr)
    assert problem(r, 400, "validation-failed")["field"] == "dropoff"
    r = d.post("/v1/share/rate-card", {"pickup": {"lat": 91, "lng": 0}, "dropoff": pt(A)}, headers=hdr)
    assert problem(r, 400, "validation-failed")["field"] == "pickup.lat"


def test_bookings_refusals_write_nothing(make_daemon, pg):
    d = make_daemon(env={"RIDEHAIL_SHARE_RATE_CARD_TTL": "1s"})
    rider, hdr = d.rider_session()
    other, ohdr = d.rider_session()
    rc = card(d, hdr, A, off(A, 3000))
    # another rider's card
    r = book(d, ohdr, rc)
    assert problem(r, 422, "rate-card-invalid")["field"] == "rate_card_id"
    # a card that is not ours at all, or tampered with
    bad = dict(rc, rate_card_id=rc["rate_card_id"][:-3] + "AAA")
    assert problem(book(d, hdr, bad), 422, "rate-card-invalid")["field"] == "rate_card_id"
    assert problem(book(d, hdr, dict(rc, rate_card_id="rc_7f2a")), 422, "rate-card-invalid")
    # a choice not on the card
    r = book(d, hdr, rc, corporate=True)
    assert problem(r, 422, "choice-not-on-card")["field"] == "choice.corporate"
    r = book(d, hdr, rc, seats=3)
    assert problem(r, 400, "validation-failed")["field"] == "choice.seats"
    r = book(d, hdr, rc, mode="luxury")
    assert problem(r, 400, "validation-failed")["field"] == "choice.mode"
    r = d.post("/v1/share/bookings", {"rate_card_id": rc["rate_card_id"]}, headers=hdr)
    assert problem(r, 400, "validation-failed")["field"] == "choice"
    time.sleep(1.1)
    r = book(d, hdr, rc)
    assert problem(r, 422, "rate-card-expired")["field"] == "rate_card_id"
    assert pg.query(d.db, "SELECT count(*) FROM share_bookings")[0][0] == 0
    assert pg.query(d.db, "SELECT count(*) FROM outbox WHERE event_type LIKE 'share.%'")[0][0] == 0
    r = d.get(f"/v1/share/bookings/{uuid.uuid4()}", headers=hdr)
    problem(r, 404, "not-found")
    problem(d.get("/v1/share/bookings/nope", headers=hdr), 400, "validation-failed")


def test_insertion_within_bounds_then_per_rider_legs_fares_and_receipts(make_daemon, pg):
    d = make_daemon()

    async def go():
        drv, dapp = await online(d, at=off(A, -300))
        r1, a1 = await rider_app(d)
        r2, a2 = await rider_app(d)
        # rider 1: 3 km north
        rc1 = card(d, a1.hdr, A, off(A, 3000))
        b1 = book(d, a1.hdr, rc1, key="k-1")
        assert b1.status == 202, b1
        v1 = b1.json()
        assert v1["state"] == "pending" and b1.headers["location"] == f"/v1/share/bookings/{v1['id']}"
        c1 = await confirmed(a1, v1["id"])
        assert c1["state"] == "confirmed" and c1["driver"]["id"] == drv["id"]
        trip = c1["trip_id"]
        stops = (await dapp.recv("share.stops"))["payload"]
        assert stops["trip_id"] == trip and stops["stops_version"] == 1
        assert [(s["booking_id"], s["kind"]) for s in stops["stops"]] == [(v1["id"], "pickup"), (v1["id"], "dropoff")]
        # the same key again: the same booking, replayed
        again = book(d, a1.hdr, rc1, key="k-1")
        assert again.status == 200 and again.json()["id"] == v1["id"] and again.headers["idempotent-replayed"] == "true"
        r = book(d, a1.hdr, rc1, key="k-1", mode="express")
        assert problem(r, 422, "idempotency-key-reused")
        # one active booking per rider
        assert problem(book(d, a1.hdr, rc1), 409, "active-booking")["active_booking_id"] == v1["id"]
        # rider 2 along the way: 200 m east of rider 1's pickup, 2.8 km north
        rc2 = card(d, a2.hdr, off(A, 100, 150), off(A, 2800, 150))
        b2 = book(d, a2.hdr, rc2)
        assert b2.status == 202, b2
        v2 = b2.json()
        c2 = await confirmed(a2, v2["id"])
        assert c2["state"] == "confirmed" and c2["trip_id"] == trip
        # an insertion into an open trip is decided with the booking, in its
        # transaction (the 202 shows it as written first: pending)
        assert v2["state"] == "pending" and one_transaction(pg, d, v2["id"])
        stops = (await dapp.recv("share.stops"))["payload"]
        assert stops["stops_version"] == 2 and len(stops["stops"]) == 4
        order = [(s["booking_id"], s["kind"]) for s in stops["stops"]]
        for b in (v1["id"], v2["id"]):
            assert order.index((b, "pickup")) < order.index((b, "dropoff"))
        # every rider's detour within the bound, on the planner's own times
        # (straight lines: the daemon runs without a map here)
        ver = stops["stops_version"]
        # refusals: a stale list, a rider not on the trip, a state skipped
        await leg(dapp, trip, v1["id"], "picked_up", ver - 1)
        await dapp.rejected("version_conflict", "payload.stops_version")
        await leg(dapp, trip, str(uuid.uuid4()), "picked_up", ver)
        await dapp.rejected("not_found", "payload.booking_id")
        await leg(dapp, trip, v1["id"], "dropped_off", ver)
        await dapp.rejected("invalid_state", "payload.action")
        await leg(dapp, str(uuid.uuid4()), v1["id"], "arrived", ver)
        await dapp.rejected("not_found", "payload.trip_id")
        # rider by rider, along the list
        for bid, kind in order:
            action = "picked_up" if kind == "pickup" else "dropped_off"
            sent = await leg(dapp, trip, bid, action, ver)
            ack = await dapp.recv("share.leg.updated")
            assert ack["correlation_id"] == sent["event_id"] and ack["payload"]["state"] == action
            if (bid, kind) != order[-1]:
                st = (await dapp.recv("share.stops"))["payload"]
                assert st["stops_version"] == ver + 1
                ver = st["stops_version"]
        for app, v in ((a1, v1), (a2, v2)):
            rec = d.get(f"/v1/share/bookings/{v['id']}/receipt", headers=app.hdr)
            assert rec.status == 200, rec
            rec = rec.json()
            assert rec["shared"] is True and rec["total"] == v["price"] == rec["lines"][0]["amount"]
            assert rec["lines"][0]["item"] == "shared_fare" and rec["solo_fare"] > rec["total"]
            assert booking(d, app.hdr, v["id"])["fare_final"] == v["price"]
        # the trip is over: its driver free again
        wait_for(lambda: pg.query(d.db, "SELECT status FROM drivers WHERE id = %s", (drv["id"],))[0][0] == "available",
                 what="the driver released")
        assert pg.query(d.db, "SELECT state FROM share_trips WHERE id = %s", (trip,))[0][0] == "FINISHED"
        assert pg.query(d.db, "SELECT count(*) FROM share_seats")[0][0] == 0
        # history and outbox: one row per change, in order, by schema
        for v in (v1, v2):
            seqs = [r[0] for r in pg.query(d.db, "SELECT seq FROM share_events WHERE booking_id = %s ORDER BY seq",
                                           (v["id"],))]
            assert seqs == [1, 2, 3, 4]
            rows = pg.query(d.db, "SELECT event_id::text, event_type, event_version, occurred_at, producer,"
                                  " correlation_id::text, payload, aggregate_seq FROM outbox"
                                  " WHERE aggregate_id = %s ORDER BY id", (v["id"],))
            assert [r[7] for r in rows] == [1, 2, 3, 4]
            assert [r[1] for r in rows] == ["share.booking.requested"] + ["share.booking.changed"] * 3
            for r in rows:
                ev = {"event_id": r[0], "event_type": r[1], "event_version": r[2],
                      "timestamp": r[3].isoformat().replace("+00:00", "Z"), "producer": r[4],
                      "correlation_id": r[5], "payload": r[6]}
                assert not violations("outbox-event.schema.json", ev), (ev, violations("outbox-event.schema.json", ev))
        for app in (dapp, a1, a2):
            await app.close()

    run(go())


def test_beyond_the_bounds_a_new_trip_or_none(make_daemon, pg):
    d = make_daemon()

    async def go():
        drv1, d1 = await online(d, at=off(A, -200))
        r1, a1 = await rider_app(d)
        v1 = book(d, a1.hdr, card(d, a1.hdr, A, off(A, 3000))).json()
        c1 = await confirmed(a1, v1["id"])
        assert c1["driver"]["id"] == drv1["id"]
        # the other way: the first car would make rider 1 ride far beyond
        # 15%: not inserted; no other driver, so cancelled with why
        r2, a2 = await rider_app(d)
        v2 = book(d, a2.hdr, card(d, a2.hdr, off(A, 100), off(A, -3000))).json()
        c2 = await confirmed(a2, v2["id"])
        assert c2["state"] == "cancelled" and c2["cancel_reason"] == "no_driver", c2
        # known before the booking was written: decided in its transaction
        # (both history rows written by one transaction), answered 202 pending
        assert v2["state"] == "pending"
        assert one_transaction(pg, d, v2["id"]), "requested and cancelled in one transaction"
        # with a second driver near: a new trip of its own
        drv2, d2 = await online(d, at=off(A, 150))
        r3, a3 = await rider_app(d)
        v3 = book(d, a3.hdr, card(d, a3.hdr, off(A, 100), off(A, -3000))).json()
        c3 = await confirmed(a3, v3["id"])
        assert c3["state"] == "confirmed" and c3["trip_id"] != c1["trip_id"] and c3["driver"]["id"] == drv2["id"]
        # (a new trip waits for its driver's reservation: two transactions)
        assert not one_transaction(pg, d, v3["id"])
        # and a rider whose pickup the car cannot reach within max_wait
        # (5 min at 30 km/h x 1.3 is ~2.9 km; 8 km away): nobody
        r4, a4 = await rider_app(d)
        v4 = book(d, a4.hdr, card(d, a4.hdr, off(A, 8000), off(A, 11000))).json()
        c4 = await confirmed(a4, v4["id"])
        assert c4["state"] == "cancelled"
        # the solo dispatch cannot take a shared trip's driver
        assert {r[0] for r in pg.query(d.db, "SELECT status FROM drivers WHERE id IN (%s, %s)",
                                       (drv1["id"], drv2["id"]))} == {"offered"}
        for app in (d1, d2, a1, a2, a3, a4):
            await app.close()

    run(go())


def test_two_bookings_race_for_the_last_seat(make_daemon, pg):
    d = make_daemon(env={"RIDEHAIL_TARIFF_STANDARD_SEATS": "2"})

    async def go():
        drv, dapp = await online(d, at=off(A, -200))
        r1, a1 = await rider_app(d)
        v1 = book(d, a1.hdr, card(d, a1.hdr, A, off(A, 3000))).json()
        c1 = await confirmed(a1, v1["id"])
        trip = c1["trip_id"]
        riders = [await rider_app(d) for _ in range(2)]
        cards = [card(d, app.hdr, off(A, 50 + 30 * i), off(A, 2900)) for i, (_, app) in enumerate(riders)]
        out = [None, None]

        def post(i):
            out[i] = book(d, riders[i][1].hdr, cards[i])
        ts = [threading.Thread(target=post, args=(i,)) for i in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert [o.status for o in out] == [202, 202], out
        got = [await confirmed(app, o.json()["id"]) for (_, app), o in zip(riders, out)]
        states = sorted(g["state"] for g in got)
        assert states == ["cancelled", "confirmed"], [(g["id"], g["state"], g.get("trip_id"), g.get("cancel_reason")) for g in got]
        winner = next(g for g in got if g["state"] == "confirmed")
        assert winner["trip_id"] == trip
        seats = pg.query(d.db, "SELECT booking_id::text, seat_no FROM share_seats WHERE trip_id = %s ORDER BY seat_no",
                         (trip,))
        assert [s[1] for s in seats] == [1, 2] and {s[0] for s in seats} == {v1["id"], winner["id"]}
        for app in [dapp, a1] + [a for _, a in riders]:
            await app.close()

    run(go())


def test_the_database_refuses_a_seat_twice_or_beyond_the_car(make_daemon, pg):
    d = make_daemon()
    drv, _ = d.driver_session()
    rider, _ = d.rider_session()
    rider2, _ = d.rider_session()
    trip = str(uuid.uuid4())
    d.stop()  # the functions alone (a starting daemon frees stale reservations)
    pg.query(d.db, "UPDATE drivers SET status = 'offered', version = 7 WHERE id = %s", (drv["id"],))
    ids = []
    for r in (rider, rider2):
        res = pg.query(d.db, "SELECT share_book(%s::jsonb)", (
            '{"rider":"%s","hash":"h","card":"rc1.x","seats":1,"mode":"normal","corp":false,"price":100,'
            '"solo_price":150,"cur":"EUR","vehicle":"standard","plat":52.09,"plng":5.12,"dlat":52.12,"dlng":5.12,'
            '"direct_s":400,"direct_m":3000,"rules":0}' % r["id"],))[0][0]
        assert res["status"] == 202, res
        ids.append(res["booking"]["id"])
    res = pg.query(d.db, "SELECT share_confirm(%s::jsonb)", (
        '{"booking":"%s","trip":"%s","new":true,"driver":"%s","driver_version":7,"seats":1,"vehicle":"standard",'
        '"stops":[]}' % (ids[0], trip, drv["id"]),))[0][0]
    assert res["status"] == 200, res
    # the one seat is taken: the next booking is refused, nothing written
    res = pg.query(d.db, "SELECT share_confirm(%s::jsonb)", (
        '{"booking":"%s","trip":"%s","stops_version":1,"stops":[]}' % (ids[1], trip),))[0][0]
    assert res == {"status": 409, "reason": "seats"}, res
    assert pg.query(d.db, "SELECT state, trip_id FROM share_bookings WHERE id = %s", (ids[1],))[0] == ("pending", None)
    assert pg.query(d.db, "SELECT stops_version FROM share_trips WHERE id = %s", (trip,))[0][0] == 1
    # whatever a function did, the table holds: seat 1 twice, seat 2 of a 1-seat car
    with pytest.raises(Exception, match="share_seats_pkey"):
        pg.query(d.db, "INSERT INTO share_seats VALUES (%s, 1, 1, %s)", (trip, ids[1]))
    with pytest.raises(Exception, match="share_seats_check"):
        pg.query(d.db, "INSERT INTO share_seats VALUES (%s, 1, 2, %s)", (trip, ids[1]))
    with pytest.raises(Exception, match="share_seats_trip_id_trip_seats_fkey"):
        pg.query(d.db, "INSERT INTO share_seats VALUES (%s, 2, 2, %s)", (trip, ids[1]))
    # a booking past pending holds every seat it booked, or cannot be written:
    # confirmed with no seat, with a seat another booking holds, or a 2-seat
    # booking with one seat
    confirm = "UPDATE share_bookings SET state = 'confirmed', trip_id = %s, seat_no = %s, seat_no2 = %s WHERE id = %s"
    with pytest.raises(Exception, match="share_bookings_holds_seats"):
        pg.query(d.db, confirm, (trip, None, None, ids[1]))
    with pytest.raises(Exception, match="share_bookings_seat"):
        pg.query(d.db, confirm, (trip, 1, None, ids[1]))
    assert pg.query(d.db, "SELECT seat_no, seat_no2 FROM share_bookings WHERE id = %s", (ids[0],))[0] == (1, None)
    pg.query(d.db, "UPDATE share_bookings SET seats = 2 WHERE id = %s", (ids[1],))
    with pytest.raises(Exception, match="share_bookings_holds_seats"):
        pg.query(d.db, confirm, (trip, 1, None, ids[1]))
    # the function refuses a new trip smaller than the booking, nothing written
    res = pg.query(d.db, "SELECT share_confirm(%s::jsonb)", (
        '{"booking":"%s","trip":"%s","new":true,"driver":"%s","driver_version":7,"seats":1,"vehicle":"standard",'
        '"stops":[]}' % (ids[1], str(uuid.uuid4()), drv["id"]),))[0][0]
    assert res == {"status": 409, "reason": "seats"}, res
    assert pg.query(d.db, "SELECT state, seat_no FROM share_bookings WHERE id = %s", (ids[1],))[0] == ("pending", None)
    assert pg.query(d.db, "SELECT count(*) FROM share_seats WHERE booking_id = %s", (ids[1],))[0][0] == 0


def test_a_shared_trip_through_a_restart(make_daemon, pg):
    d = make_daemon()

    async def first():
        drv, dapp = await online(d, at=off(A, -200))
        r1, a1 = await rider_app(d)
        v1 = book(d, a1.hdr, card(d, a1.hdr, A, off(A, 3000))).json()
        c1 = await confirmed(a1, v1["id"])
        st = (await dapp.recv("share.stops"))["payload"]
        await leg(dapp, c1["trip_id"], v1["id"], "picked_up", st["stops_version"])
        await dapp.recv("share.leg.updated")
        st = (await dapp.recv("share.stops"))["payload"]
        for app in (dapp, a1):
            await app.close()
        return drv, r1, a1.hdr, v1, c1["trip_id"], st["stops_version"]

    drv, r1, hdr1, v1, trip, ver = run(first())
    d.stop()
    d2 = make_daemon(db=d.db)
    # the driver stays reserved for the trip (the start's release of stale
    # reservations leaves shared trips' drivers alone)
    time.sleep(0.5)
    assert pg.query(d2.db, "SELECT status FROM drivers WHERE id = %s", (drv["id"],))[0][0] == "offered"

    async def second():
        tok = d2.login("driver", drv["email"], "driver-pass-1")
        dapp = await Driver.connect(d2, tok, drv["id"])
        await dapp.recv("driver.status.changed")
        # the trip read back: its stop list again, as the last run left it
        st = (await dapp.recv("share.stops", timeout=5))["payload"]
        assert st["trip_id"] == trip and st["stops_version"] == ver
        assert [(s["booking_id"], s["kind"], s["state"]) for s in st["stops"]] == [(v1["id"], "dropoff", "picked_up")]
        await dapp.ping(*off(A, 2900), accuracy_m=5)
        # a new rider along the way is inserted into the trip read back
        r2, hdr2 = d2.rider_session()
        v2 = book(d2, hdr2, card(d2, hdr2, off(A, 2950), off(A, 3400))).json()
        v2 = wait_for(lambda: (lambda b: b if b["state"] != "pending" else None)(booking(d2, hdr2, v2["id"])),
                      what="the second booking decided")
        assert v2["state"] == "confirmed" and v2["trip_id"] == trip, v2
        st = (await dapp.recv("share.stops"))["payload"]
        assert st["stops_version"] == ver + 1
        await leg(dapp, trip, v1["id"], "dropped_off", st["stops_version"])
        ack = await dapp.recv("share.leg.updated")
        assert ack["payload"]["state"] == "dropped_off"
        await dapp.close()

    run(second())
    assert booking(d2, hdr1, v1["id"])["state"] == "dropped_off"


def test_a_rider_cancels_and_leaves_the_list(make_daemon, pg):
    d = make_daemon()

    async def go():
        drv, dapp = await online(d, at=off(A, -300))
        r1, a1 = await rider_app(d)
        r2, a2 = await rider_app(d)
        v1 = book(d, a1.hdr, card(d, a1.hdr, A, off(A, 3000))).json()
        c1 = await confirmed(a1, v1["id"])
        await dapp.recv("share.stops")
        v2 = book(d, a2.hdr, card(d, a2.hdr, off(A, 100, 150), off(A, 2800, 150))).json()
        assert (await confirmed(a2, v2["id"]))["trip_id"] == c1["trip_id"]
        st = (await dapp.recv("share.stops"))["payload"]
        assert len(st["stops"]) == 4
        # not someone else's, not a bad id
        problem(d.post(f"/v1/share/bookings/{v2['id']}/cancel", {}, headers=a1.hdr), 404, "not-found")
        problem(d.post("/v1/share/bookings/x/cancel", {}, headers=a1.hdr), 400, "validation-failed")
        r = d.post(f"/v1/share/bookings/{v2['id']}/cancel", {"reason": "changed my mind"}, headers=a2.hdr)
        assert r.status == 200 and r.json()["state"] == "cancelled", r
        st2 = (await dapp.recv("share.stops"))["payload"]
        assert st2["stops_version"] == st["stops_version"] + 1
        assert {s["booking_id"] for s in st2["stops"]} == {v1["id"]}
        assert pg.query(d.db, "SELECT count(*) FROM share_seats WHERE booking_id = %s", (v2["id"],))[0][0] == 0
        # rider 1 aboard: too late to cancel
        await leg(dapp, c1["trip_id"], v1["id"], "picked_up", st2["stops_version"])
        await dapp.recv("share.leg.updated")
        r = d.post(f"/v1/share/bookings/{v1['id']}/cancel", {}, headers=a1.hdr)
        assert problem(r, 409, "conflict")["reason"] == "booking_state"
        for app in (dapp, a1, a2):
            await app.close()

    run(go())



def test_trip_rules_stored_and_otp_enforced(make_daemon, pg):
    d = make_daemon()

    async def go():
        drv, dapp = await online(d, at=off(A, -300))
        r1, a1 = await rider_app(d)
        r = book(d, a1.hdr, card(d, a1.hdr, A, off(A, 3000)), rules={"otp": True, "cash": True})
        assert r.status == 202, r
        v1 = r.json()
        assert v1["rules"] == ["cash", "otp"] and len(v1["otp"]) == 4
        c1 = await confirmed(a1, v1["id"])
        st = (await dapp.recv("share.stops"))["payload"]
        assert pg.query(d.db, "SELECT rules FROM share_bookings WHERE id = %s", (v1["id"],))[0][0] == 3
        wrong = "0000" if v1["otp"] != "0000" else "1111"
        await leg(dapp, c1["trip_id"], v1["id"], "picked_up", st["stops_version"], otp=wrong)
        await dapp.rejected("validation_failed", "payload.otp")
        await leg(dapp, c1["trip_id"], v1["id"], "picked_up", st["stops_version"])
        await dapp.rejected("validation_failed", "payload.otp")
        assert booking(d, a1.hdr, v1["id"])["state"] == "confirmed"
        await leg(dapp, c1["trip_id"], v1["id"], "picked_up", st["stops_version"], otp=v1["otp"])
        assert (await dapp.recv("share.leg.updated"))["payload"]["state"] == "picked_up"
        for app in (dapp, a1):
            await app.close()

    run(go())


def test_shared_trips_without_automatic_dispatch(make_daemon):
    """match.auto = false: no release of the last run's reservations at
    start to wait for; shared trips are made at once."""
    d = make_daemon(env={"RIDEHAIL_MATCH_AUTO": "false"})

    async def go():
        drv, dapp = await online(d, at=off(A, -300))
        r1, a1 = await rider_app(d)
        v1 = book(d, a1.hdr, card(d, a1.hdr, A, off(A, 3000))).json()
        c1 = await confirmed(a1, v1["id"])
        assert c1["state"] == "confirmed" and c1["driver"]["id"] == drv["id"]
        for app in (dapp, a1):
            await app.close()

    run(go())



def test_apps_reconnecting_get_the_stop_list_and_the_booking_as_they_stand(make_daemon, pg):
    d = make_daemon()

    async def go():
        drv, dapp = await online(d, at=off(A, -300))
        r1, a1 = await rider_app(d)
        r2, a2 = await rider_app(d)
        v1 = book(d, a1.hdr, card(d, a1.hdr, A, off(A, 3000))).json()
        trip = (await confirmed(a1, v1["id"]))["trip_id"]
        assert (await dapp.recv("share.stops"))["payload"]["stops_version"] == 1
        v2 = book(d, a2.hdr, card(d, a2.hdr, off(A, 100, 150), off(A, 2800, 150))).json()
        assert (await confirmed(a2, v2["id"]))["trip_id"] == trip
        assert (await dapp.recv("share.stops"))["payload"]["stops_version"] == 2
        # the driver's app goes away; meanwhile rider 2 cancels (the list
        # moves to version 3 without them) and rider 1's app goes away too
        await dapp.close()
        await a1.close()
        r = d.post(f"/v1/share/bookings/{v2['id']}/cancel", {}, headers=a2.hdr)
        assert r.status == 200 and r.json()["state"] == "cancelled", r
        # the driver back: the list as it stands, without rider 2
        dapp = await Driver.connect(d, token_of(dapp.hdr), drv["id"])
        st = (await dapp.recv("share.stops", timeout=5))["payload"]
        assert st["trip_id"] == trip and st["stops_version"] == 3
        assert [(s["booking_id"], s["kind"]) for s in st["stops"]] == [(v1["id"], "pickup"), (v1["id"], "dropoff")]
        # the driver picks rider 1 up while their app is away; it comes back
        # to the booking as it stands (picked_up, its version)
        await leg(dapp, trip, v1["id"], "picked_up", 3)
        assert (await dapp.recv("share.leg.updated"))["payload"]["state"] == "picked_up"
        a1 = await App.connect(d, token_of(a1.hdr), r1["id"])
        m = (await a1.recv("share.booking.updated", timeout=5))["payload"]
        assert m["id"] == v1["id"] and m["state"] == "picked_up" and m["version"] == 3 and m["trip_id"] == trip
        assert "direct_s" not in m
        # a rider with no active booking gets nothing of shared rides
        a2b = await App.connect(d, token_of(a2.hdr), r2["id"])
        await a2b.no_message()
        for app in (dapp, a1, a2, a2b):
            await app.close()

    run(go())


def test_cash_rule_and_each_riders_payment_and_hold(make_daemon, pg):
    from test_pricing import PAY_SECRET, signed
    d = make_daemon(env={"RIDEHAIL_PAYMENTS_SECRET": PAY_SECRET})

    async def go():
        drv, dapp = await online(d, at=off(A, -300))
        r1, a1 = await rider_app(d)
        r2, a2 = await rider_app(d)
        v1 = book(d, a1.hdr, card(d, a1.hdr, A, off(A, 3000))).json()
        trip = (await confirmed(a1, v1["id"]))["trip_id"]
        v2 = book(d, a2.hdr, card(d, a2.hdr, off(A, 100, 150), off(A, 2800, 150)), rules={"cash": True}).json()
        assert (await confirmed(a2, v2["id"]))["trip_id"] == trip
        await dapp.recv("share.stops")
        ver = (await dapp.recv("share.stops"))["payload"]["stops_version"]
        for bid in (v1["id"], v2["id"]):
            await leg(dapp, trip, bid, "picked_up", ver)
            assert (await dapp.recv("share.leg.updated"))["payload"]["state"] == "picked_up"
            ver = (await dapp.recv("share.stops"))["payload"]["stops_version"]
        # the cash rider: dropped off only once the driver says the cash was
        # collected; a refusal writes nothing
        await leg(dapp, trip, v2["id"], "dropped_off", ver)
        await dapp.rejected("validation_failed", "payload.cash_collected")
        assert booking(d, a2.hdr, v2["id"])["state"] == "picked_up"
        await leg(dapp, trip, v2["id"], "dropped_off", ver, cash_collected=True)
        assert (await dapp.recv("share.leg.updated"))["payload"]["state"] == "dropped_off"
        ver = (await dapp.recv("share.stops"))["payload"]["stops_version"]
        await leg(dapp, trip, v1["id"], "dropped_off", ver)
        assert (await dapp.recv("share.leg.updated"))["payload"]["state"] == "dropped_off"
        for app in (dapp, a1, a2):
            await app.close()
        return r1, a1, a2, v1, v2

    r1, a1, a2, v1, v2 = run(go())
    # each card rider's fare is asked for (payment.requested, the booking's
    # id as its trip_id, after the booking's own drop-off event); the cash
    # rider's is not
    rows = pg.query(d.db, "SELECT p.share_booking_id::text, p.amount, o.payload, o.id > (SELECT max(id) FROM outbox"
                          " WHERE aggregate_id = p.share_booking_id) FROM payments p JOIN outbox o"
                          " ON o.aggregate_id = p.id AND o.event_type = 'payment.requested'")
    assert len(rows) == 1, rows
    bid, amount, payload, after = rows[0]
    assert bid == v1["id"] and amount == v1["price"] and after
    assert payload["trip_id"] == v1["id"] and payload["rider_id"] == r1["id"] and payload["kind"] == "fare"
    ev = {"event_id": str(uuid.uuid4()), "event_type": "payment.requested", "event_version": 1,
          "timestamp": "2026-01-01T00:00:00.000Z", "producer": "ridehaild", "correlation_id": v1["id"],
          "payload": payload}
    assert not violations("outbox-event.schema.json", ev), violations("outbox-event.schema.json", ev)
    assert d.get(f"/v1/share/bookings/{v1['id']}/receipt", headers=a1.hdr).json()["payment"] == "card"
    assert d.get(f"/v1/share/bookings/{v2['id']}/receipt", headers=a2.hdr).json()["payment"] == "cash"
    # the provider declines rider 1's card: held, as a solo rider would be;
    # their next shared booking is refused naming the booking, nothing written
    fail = {"idempotency_key": payload["idempotency_key"], "event_id": "evt_1", "status": "failed",
            "failure_reason": "card_declined"}
    r = signed(d, v1["id"], fail)
    assert r.status == 200 and r.json()["rider_held"] is True and r.json()["trip_id"] == v1["id"], r
    n = pg.query(d.db, "SELECT count(*) FROM share_bookings")[0][0]
    rc = card(d, a1.hdr, A, off(A, 2000))
    held = wait_for(lambda: (lambda r: r if r.status == 402 else None)(book(d, a1.hdr, rc)), what="the hold heard")
    assert problem(held, 402, "payment-required")["trip_id"] == v1["id"]
    assert pg.query(d.db, "SELECT count(*) FROM share_bookings")[0][0] == n
    # paid later: free again
    ok = {"idempotency_key": payload["idempotency_key"], "event_id": "evt_2", "status": "succeeded"}
    assert signed(d, v1["id"], ok).json()["rider_held"] is False
    wait_for(lambda: book(d, a1.hdr, rc).status == 202, what="the hold lifted")
