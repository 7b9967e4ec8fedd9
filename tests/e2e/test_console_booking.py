"""Dispatcher bookings (the operator's desk): a rider named by phone number,
found or made on the spot (POST /v1/dispatch/riders), and a ride booked for
them by an operator (POST /v1/rides with rider_id): kept and searched when no
driver is online (a rider's own request gets 503), recorded as the
operator's in the trip's history, against the real daemon and database."""
import concurrent.futures
import uuid

from conftest import problem, wait_for
from test_presence import token_of
from wsapp import Driver, run

PICKUP = (52.0907, 5.1214)
DROPOFF = (52.1100, 5.1400)
RIDE = {"pickup": {"lat": PICKUP[0], "lng": PICKUP[1]}, "dropoff": {"lat": DROPOFF[0], "lng": DROPOFF[1]}}


def operator(d):
    email = f"ops-{uuid.uuid4().hex[:8]}@example.com"
    r = d.post("/v1/admin/operators", {"email": email, "name": "Ops", "password": "operator-pw"}, headers=d.admin)
    assert r.status == 201, r
    return r.json()["id"], {"Authorization": "Bearer " + d.login("operator", email, "operator-pw")}


def test_booking_by_phone_is_kept_without_drivers_and_matched_when_one_comes(make_daemon, pg):
    d = make_daemon()
    op_id, oh = operator(d)
    phone = "+1 (555) 010-" + str(uuid.uuid4().int % 10000).zfill(4)
    r = d.post("/v1/dispatch/riders", {"phone": phone, "name": "Pat Caller"}, headers=oh)
    assert r.status == 201, r
    rider = r.json()
    assert rider["role"] == "rider" and rider["name"] == "Pat Caller"
    assert rider["phone"] == "+1555010" + phone[-4:]
    # the same number, spelled otherwise: the same rider
    again = d.post("/v1/dispatch/riders", {"phone": phone.replace(" ", "").replace("(", "").replace(")", "")},
                   headers=oh)
    assert again.status == 200 and again.json()["id"] == rider["id"], again
    # no password: nobody signs in as them
    assert d.post("/v1/auth/login", {"role": "rider", "email": rider["email"], "password": "!"}).status == 401

    # no driver online: a rider's own request is turned away, the booking is kept
    _, rh = d.rider_session()
    problem(d.post("/v1/rides", RIDE, headers=rh), 503, "unavailable")
    b = d.post("/v1/rides", dict(RIDE, rider_id=rider["id"]), headers=oh)
    assert b.status == 201, b
    trip = b.json()
    assert trip["rider_id"] == rider["id"] and trip["state"] == "SEARCHING"
    view = d.get(f"/v1/rides/{trip['id']}", headers=oh).json()
    assert view["timeline"][0]["to"] == "SEARCHING" and view["timeline"][0]["by"] == "operator", view
    row = pg.query(d.db, "SELECT actor_role, actor_id, detail FROM trip_events WHERE trip_id = %s AND seq = 1",
                   (trip["id"],))[0]
    assert row == ("operator", op_id, {"booked_for": rider["id"]}), row

    # a driver comes online near the pickup: the booking is offered to them
    drv, dh = d.driver_session()

    async def go():
        app = await Driver.connect(d, token_of(dh), drv["id"])
        await app.recv("driver.status.changed")
        await app.ping(*PICKUP, accuracy_m=5)
        await app.send("driver.status.changed", {"driver_id": drv["id"], "status": "available"})
        # the waiting booking takes them at once: their answer may already say offered
        m = await app.recv("driver.status.changed")
        assert m["payload"]["status"] in ("available", "offered"), m
        offer = await app.recv("ride.offer", timeout=10)
        assert offer["payload"]["trip_id"] == trip["id"], offer
        await app.send("offer.accept", {"offer_id": offer["payload"]["offer_id"]})
        ack = await app.recv("command.acknowledged")
        assert ack["payload"]["state"] == "MATCHED", ack
        await app.close()
    run(go())
    assert d.get(f"/v1/rides/{trip['id']}", headers=oh).json()["state"] == "MATCHED"


def test_booking_refusals(daemon):
    d = daemon
    _, oh = operator(d)
    rider, rh = d.rider_session()
    problem(d.post("/v1/rides", RIDE, headers=oh), 400, "validation-failed")
    r = d.post("/v1/rides", dict(RIDE, rider_id=rider["id"]), headers=rh)
    assert r.status == 403 and r.json()["field"] == "rider_id", r
    r = d.post("/v1/rides", dict(RIDE, rider_id=str(uuid.uuid4())), headers=oh)
    assert r.status == 404 and r.json()["field"] == "rider_id", r
    for bad in ("12", "+1 555 abc", "++15550100", "1" * 21):
        r = d.post("/v1/dispatch/riders", {"phone": bad}, headers=oh)
        assert r.status == 400 and r.json()["field"] == "phone", (bad, r)
    problem(d.post("/v1/dispatch/riders", {"phone": "+15550100"}, headers=rh), 403, "forbidden")
    problem(d.post("/v1/dispatch/riders", {"phone": "+15550100"}), 401, "unauthorized")
    # one active trip per rider, whoever books it
    assert d.post("/v1/rides", dict(RIDE, rider_id=rider["id"]), headers=oh).status == 201
    problem(d.post("/v1/rides", dict(RIDE, rider_id=rider["id"]), headers=oh), 409, "active-trip")


def test_bookings_together_each_recorded_as_the_operators(make_daemon, pg):
    """Several at once (on one lane they go to the database together, through
    trip_requests' set-wise path, as the load allows; alone they take the
    item-by-item one): each is the operator's, and an unknown rider among
    them is refused alone."""
    d = make_daemon(env={"RIDEHAIL_TRIP_BATCH_LANES": "1"})
    op_id, oh = operator(d)
    riders = [d.post("/v1/dispatch/riders", {"phone": f"+4420{i}{uuid.uuid4().int % 10 ** 6:06d}"},
                     headers=oh).json()["id"] for i in range(8)]
    ghost = str(uuid.uuid4())
    with concurrent.futures.ThreadPoolExecutor(9) as ex:
        answers = list(ex.map(lambda rid: d.post("/v1/rides", dict(RIDE, rider_id=rid), headers=oh), riders + [ghost]))
    assert [a.status for a in answers] == [201] * 8 + [404], answers
    ids = [a.json()["id"] for a in answers[:8]]
    rows = pg.query(d.db, "SELECT actor_role, actor_id, detail->>'booked_for' FROM trip_events "
                          "WHERE trip_id = ANY (%s::uuid[]) AND seq = 1 ORDER BY trip_id", (ids,))
    assert len(rows) == 8 and all(r[0] == "operator" and r[1] == op_id for r in rows), rows
    assert sorted(r[2] for r in rows) == sorted(riders)
