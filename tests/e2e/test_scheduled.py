"""Scheduled rides and bookings that wait for drivers, against the real daemon
and database: a ride for later is SCHEDULED, searched match.schedule_lead
before its time (the rider told on their feed), cancelled free until then,
started at once after a restart that slept through its time; bad times are
refused naming the field; a dispatcher's booking waits match.booking_max_wait
for a driver instead of match.max_search, across a restart too."""
import asyncio
import datetime
import time
import uuid

from conftest import problem, wait_for
from eventschemas import validator, violations
from test_console_booking import RIDE, operator
from test_dispatch import PICKUP, accept, north, offer_for, online, rider_app, trip_state
from test_presence import token_of
from test_schemas import as_event
from test_trips import history, outbox
from wsapp import App, Driver, run


def at(seconds):
    """RFC 3339, `seconds` from now."""
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def parse(ts):
    return datetime.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def state_of(d, pg, trip_id):
    return pg.query(d.db, "SELECT state FROM trips WHERE id = %s", (trip_id,))[0][0]


def schema_valid(d, pg, trip_id):
    rows = outbox(d, pg, trip_id)
    for row in rows:
        ev = as_event(row)
        assert not sorted(violations("outbox-event.schema.json", ev)), ev
        validator(f"{ev['event_type']}.v{ev['event_version']}.schema.json").validate(ev)
    return [r[1] for r in rows]


def test_scheduled_ride_is_searched_at_lead_time_and_matched(make_daemon, pg):
    d = make_daemon(env={"RIDEHAIL_MATCH_SCHEDULE_LEAD": "2s"})

    async def go():
        drv, app = await online(d, north(PICKUP, 300))
        rider, rapp = await rider_app(d)
        when = at(6)
        r = d.post("/v1/rides", dict(RIDE, scheduled_at=when), headers=rapp.hdr)
        assert r.status == 201, r
        trip = r.json()
        assert trip["state"] == "SCHEDULED" and abs(parse(trip["scheduled_at"]) - parse(when)) < 0.002, trip
        assert "search_started_at" not in trip and "driver" not in trip
        due = parse(when) - 2
        # nothing is offered before the lead time, though a driver is right there
        early = None
        try:
            early = await app.recv("ride.offer", timeout=max(0.1, due - time.time() - 0.5))
        except (AssertionError, TimeoutError, asyncio.TimeoutError):
            pass
        assert early is None, f"offered before the lead time: {early}"
        assert state_of(d, pg, trip["id"]) == "SCHEDULED"
        # at the lead time: the rider hears the search start, the driver gets the offer
        started = await rapp.recv("trip.state_changed", timeout=5)
        assert started["payload"]["state"] == "SEARCHING", started
        assert abs(parse(started["payload"]["scheduled_at"]) - parse(when)) < 0.002, started
        offer = await offer_for(app, trip["id"], timeout=5)
        assert time.time() >= due - 0.05
        await accept(app, offer)
        matched = await rapp.recv("trip.matched", timeout=5)
        assert matched["payload"]["driver"]["id"] == drv["id"]
        for x in (app, rapp):
            await x.close()
        return trip, rider

    trip, rider = run(go())
    hist = history(d, pg, trip["id"])
    assert [(h[1], h[2], h[3], h[4]) for h in hist] == [
        (None, "SCHEDULED", "rider", rider["id"]), ("SCHEDULED", "SEARCHING", "system", "scheduler"),
        ("SEARCHING", "MATCHED", "driver", hist[2][4])], hist
    started_at = pg.query(d.db, "SELECT extract(epoch FROM search_started_at), extract(epoch FROM scheduled_at)"
                                " FROM trips WHERE id = %s", (trip["id"],))[0]
    assert 1.9 <= float(started_at[1]) - float(started_at[0]) <= 2.5, started_at
    assert schema_valid(d, pg, trip["id"]) == ["trip.scheduled", "price.calculated", "trip.requested",
                                               "trip.accepted"]


def test_cancel_before_the_search_is_free_and_a_failed_search_is_told(make_daemon, pg):
    d = make_daemon(env={"RIDEHAIL_MATCH_SCHEDULE_LEAD": "1s", "RIDEHAIL_MATCH_MAX_SEARCH": "5s"})

    async def go():
        # no driver online: a ride for later is taken all the same (not 503)
        rider, rapp = await rider_app(d)
        problem(d.post("/v1/rides", RIDE, headers=rapp.hdr), 503, "unavailable")
        first = d.post("/v1/rides", dict(RIDE, scheduled_at=at(3)), headers=rapp.hdr)
        assert first.status == 201 and first.json()["state"] == "SCHEDULED", first
        tid = first.json()["id"]
        # it is the rider's open trip: one at a time
        r = problem(d.post("/v1/rides", dict(RIDE, scheduled_at=at(600)), headers=rapp.hdr), 409, "active-trip")
        assert r["active_trip_id"] == tid
        c = d.post(f"/v1/rides/{tid}/cancel", {"reason": "plans_changed"}, headers=rapp.hdr)
        assert c.status == 200, c
        canc = c.json()["cancellation"]
        assert c.json()["state"] == "CANCELLED" and canc == {"by": "rider", "reason": "plans_changed", "fee": 0}, c
        # its time passes: nothing starts
        time.sleep(3.5)
        assert state_of(d, pg, tid) == "CANCELLED"
        assert [h[2] for h in history(d, pg, tid)] == ["SCHEDULED", "CANCELLED"]
        kinds = schema_valid(d, pg, tid)
        assert kinds == ["trip.scheduled", "price.calculated", "trip.cancelled"], kinds
        cancelled = outbox(d, pg, tid)[-1][5]
        assert cancelled["state_before"] == "SCHEDULED" and cancelled["fee"]["amount"] == 0, cancelled

        # another, left to its time with nobody online: searched, then given up
        # after match.max_search, and the rider hears both
        second = d.post("/v1/rides", dict(RIDE, scheduled_at=at(2)), headers=rapp.hdr).json()
        msgs = []
        while True:
            m = await rapp.recv("trip.state_changed", timeout=12)
            if m["payload"]["trip_id"] == second["id"]:
                msgs.append(m["payload"])
                if m["payload"]["state"] == "CANCELLED":
                    break
        assert [m["state"] for m in msgs] == ["SEARCHING", "CANCELLED"], msgs
        assert msgs[1]["cancellation"] == {"by": "system", "reason": "no_drivers", "fee": 0}, msgs
        await rapp.close()
        return second

    second = run(go())
    assert [h[2] for h in history(d, pg, second["id"])] == ["SCHEDULED", "SEARCHING", "CANCELLED"]


def test_restart_while_scheduled(make_daemon, pg):
    env = {"RIDEHAIL_MATCH_SCHEDULE_LEAD": "1s"}
    d = make_daemon(env=env)
    _, rh1 = d.rider_session()
    rider2, rh2 = d.rider_session()
    soon = d.post("/v1/rides", dict(RIDE, scheduled_at=at(3)), headers=rh1).json()
    later = d.post("/v1/rides", dict(RIDE, scheduled_at=at(3600)), headers=rh2).json()
    assert soon["state"] == later["state"] == "SCHEDULED"
    d.stop()
    time.sleep(3)  # the first one's search was due while the daemon was down
    down_until = time.time()
    d2 = make_daemon(env=env, db=d.db)
    # searched at once on start; the other one keeps its time
    assert wait_for(lambda: state_of(d2, pg, soon["id"]) == "SEARCHING", timeout=10, what="searched on start")
    started = pg.query(d2.db, "SELECT extract(epoch FROM search_started_at) FROM trips WHERE id = %s",
                       (soon["id"],))[0][0]
    assert float(started) >= down_until - 0.5
    assert state_of(d2, pg, later["id"]) == "SCHEDULED"
    m = d2.get("/metrics").body.decode()
    assert "\nridehail_match_scheduled 1\n" in m, [x for x in m.splitlines() if "scheduled" in x]

    async def go():
        drv, dh = d2.driver_session()
        app = await Driver.connect(d2, token_of(dh), drv["id"])
        await app.recv("driver.status.changed")
        await app.ping(*north(PICKUP, 200), accuracy_m=5)
        await app.send("driver.status.changed", {"driver_id": drv["id"], "status": "available"})
        # the waiting trip takes them at once: the answer may already say offered
        m = await app.recv("driver.status.changed")
        assert m["payload"]["status"] in ("available", "offered"), m
        offer = await offer_for(app, soon["id"], timeout=8)
        await accept(app, offer)
        await app.close()
        # the other's rider, connecting, is told where their ride stands
        rapp = await App.connect(d2, token_of(rh2), rider2["id"])
        snap = await rapp.recv("trip.snapshot", timeout=5)
        assert snap["payload"]["trip_id"] == later["id"] and snap["payload"]["state"] == "SCHEDULED", snap
        await rapp.close()
    run(go())
    assert trip_state(d2, pg, soon["id"])[0] == "MATCHED"
    # the other one can still be cancelled free
    c = d2.post(f"/v1/rides/{later['id']}/cancel", headers=rh2)
    assert c.status == 200 and c.json()["cancellation"]["fee"] == 0, c
    assert "\nridehail_match_scheduled 0\n" in d2.get("/metrics").body.decode()


def test_bad_scheduled_times_are_refused_naming_the_field(make_daemon):
    d = make_daemon(env={"RIDEHAIL_TRIP_SCHEDULE_HORIZON": "1h"})
    _, rh = d.rider_session()
    cases = [
        (at(-60), "minimum"),                      # in the past
        (at(7200), "maximum"),                     # beyond trip.schedule_horizon
        ("tomorrow at six", "format"),
        ("2026-13-01T10:00:00Z", "format"),
        ("2026-12-08T10:00:00", "format"),         # no zone
        (1765188000, "type"),
    ]
    for value, rule in cases:
        r = problem(d.post("/v1/rides", dict(RIDE, scheduled_at=value), headers=rh), 400, "validation-failed")
        assert r["field"] == "scheduled_at" and r.get("rule") == rule, (value, r)
    # seed designs' spelling: told which member this API takes
    r = problem(d.post("/v1/rides", dict(RIDE, scheduledTime=at(600)), headers=rh), 400, "validation-failed")
    assert r["field"] == "scheduledTime" and "scheduled_at" in r["detail"], r
    # null: a ride for now (no driver online here: 503, as any)
    problem(d.post("/v1/rides", dict(RIDE, scheduled_at=None), headers=rh), 503, "unavailable")
    # within the horizon: taken, and the same Idempotency-Key with another time is another request
    when = at(1800)
    key = {"Idempotency-Key": str(uuid.uuid4())}
    ok = d.post("/v1/rides", dict(RIDE, scheduled_at=when), headers=dict(rh, **key))
    assert ok.status == 201 and ok.json()["state"] == "SCHEDULED", ok
    again = d.post("/v1/rides", dict(RIDE, scheduled_at=when), headers=dict(rh, **key))
    assert again.status == 201 and again.json()["id"] == ok.json()["id"], again
    problem(d.post("/v1/rides", dict(RIDE, scheduled_at=at(1900)), headers=dict(rh, **key)), 422)


def test_dispatchers_booking_waits_past_max_search_and_across_a_restart(make_daemon, pg):
    env = {"RIDEHAIL_MATCH_MAX_SEARCH": "5s", "RIDEHAIL_MATCH_BOOKING_MAX_WAIT": "14s"}
    d = make_daemon(env=env)
    _, oh = operator(d)
    rider = d.post("/v1/dispatch/riders", {"phone": f"+4420{uuid.uuid4().int % 10 ** 8:08d}"}, headers=oh).json()
    booked_at = time.time()
    b = d.post("/v1/rides", dict(RIDE, rider_id=rider["id"]), headers=oh)
    assert b.status == 201 and b.json()["state"] == "SEARCHING", b
    tid = b.json()["id"]
    # a scheduled booking for another rider, too: booked and scheduled
    other = d.post("/v1/dispatch/riders", {"phone": f"+4420{uuid.uuid4().int % 10 ** 8:08d}"}, headers=oh).json()
    s = d.post("/v1/rides", dict(RIDE, rider_id=other["id"], scheduled_at=at(1800)), headers=oh)
    assert s.status == 201 and s.json()["state"] == "SCHEDULED", s
    assert history(d, pg, s.json()["id"])[0][3] == "operator"
    time.sleep(6.5)  # past match.max_search: still searching
    assert state_of(d, pg, tid) == "SEARCHING"
    d.stop()
    d2 = make_daemon(env=env, db=d.db)
    # read back, it is still a booking: not given up for being older than max_search
    time.sleep(2)
    assert state_of(d2, pg, tid) == "SEARCHING"
    # match.booking_max_wait from the booking: cancelled no_drivers, not before
    assert wait_for(lambda: state_of(d2, pg, tid) == "CANCELLED", timeout=15, what="given up")
    assert time.time() - booked_at >= 13.5
    row = pg.query(d2.db, "SELECT cancelled_by, cancel_reason, cancel_fee FROM trips WHERE id = %s", (tid,))[0]
    assert row == ("system", "no_drivers", 0), row
    assert state_of(d2, pg, s.json()["id"]) == "SCHEDULED"
