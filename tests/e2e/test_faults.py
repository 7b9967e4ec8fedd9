"""Faults: the database stopped and started under the daemon, the daemon
SIGKILLed, a database answer lost on the way back. After each, nothing is lost
and nobody is stuck: idle drivers get offers again, a rider's numbering only
goes forward, an accept refused as retryable can be sent again, the location
history waits for the database, a trip whose driver never comes back can be
ended, retries a 503 invited do not count against the rider, and published
outbox rows do not pile up forever."""
import asyncio
import json
import re
import socket
import subprocess
import threading
import time
import uuid

import pytest

from conftest import ADMIN_TOKEN, ROOT, SHARED_DATA, PgCluster, problem, wait_for
from test_dispatch import PICKUP, accept, command, north, offer_for, online, request, rider_app
from test_presence import token_of
from wsapp import App, Driver, run


def sql(d, cluster, q, params=None):
    return cluster.query(d.db, q, params)


def metric(d, name):
    """The value of one unlabelled metric from GET /metrics (0 when absent)."""
    for line in d.get("/metrics").body.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{}"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


class PgProxy:
    """A TCP proxy between the daemon and PostgreSQL that can swallow what
    the server answers (the queries run and commit; the answers never come
    back) and then cut every connection, as a network that fails at the
    worst moment would."""

    def __init__(self, port):
        self.upstream = port
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.swallow = False
        self.conns = []
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            u = socket.create_connection(("127.0.0.1", self.upstream))
            with self.lock:
                self.conns.append((c, u))
            threading.Thread(target=self._pump, args=(c, u, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c, True), daemon=True).start()

    def _pump(self, src, dst, from_server):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if from_server and self.swallow:
                    continue
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        """Every connection dropped; new ones pass answers again."""
        with self.lock:
            conns, self.conns = self.conns, []
        for c, u in conns:
            for s in (c, u):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass
        self.swallow = False

    def close(self):
        self.closed = True
        self.sock.close()
        self.cut()


# ---------------------------------------------------------------- 1: idle drivers get offers again

def test_a_reservation_whose_answer_was_lost_does_not_keep_the_driver_from_offers(make_daemon, pg):
    """The reservation commits but its answer never reaches the daemon (the
    connection is cut after the database ran it): dispatch was told it failed,
    so no offer is out, and the database says the driver is OFFERED. The read
    that follows finds them OFFERED at the version that reservation made and
    frees them: the waiting trip gets them. (Before: the read copied OFFERED
    into memory and the idle, connected driver got no offer again.)"""
    db = pg.create_db()
    proxy = PgProxy(pg.port)
    env = {"RIDEHAIL_PRESENCE_STALE_AFTER": "2s", "RIDEHAIL_MATCH_WAITING_RETRY": "300ms",
           "RIDEHAIL_DATABASE_RECONNECT_MAX": "300ms", "RIDEHAIL_MATCH_OFFER_TIMEOUTS": "30"}
    d = make_daemon(env=env, db_url=f"postgres://ridehail@127.0.0.1:{proxy.port}/{db}")
    try:
        async def go():
            # B is on a trip near the pickup: a driver is online there, so
            # the next request is taken; it waits, as B is busy and A stale
            b_drv, b = await online(d, north(PICKUP, 200))
            r0, r0app = await rider_app(d)
            t0 = request(d, r0app.hdr).json()
            await accept(b, await offer_for(b, t0["id"]))
            a_drv, a = await online(d, north(PICKUP, 500))
            await asyncio.sleep(2.5)  # A is stale now: no candidate
            await b.ping(*north(PICKUP, 150), accuracy_m=5)
            rider, rapp = await rider_app(d)
            r = request(d, rapp.hdr)
            assert r.status == 201, r
            trip = r.json()
            await asyncio.sleep(0.5)
            assert sql(d, pg, "SELECT status FROM drivers WHERE id = %s", (a_drv["id"],))[0][0] == "available"
            version = sql(d, pg, "SELECT version FROM drivers WHERE id = %s", (a_drv["id"],))[0][0]
            # from here the database's answers are swallowed; A's ping makes
            # them a candidate and the waiting trip reserves them
            proxy.swallow = True
            await a.ping(*north(PICKUP, 500), accuracy_m=5)
            wait_for(lambda: sql(d, pg, "SELECT status FROM drivers WHERE id = %s", (a_drv["id"],))[0][0] == "offered",
                     timeout=5, what="the reservation committed")
            proxy.cut()  # the answer is lost with its connection
            # A gets the trip: the stray reservation was freed and A offered again
            offer = await offer_for(a, trip["id"], timeout=15)
            st, v = sql(d, pg, "SELECT status, version FROM drivers WHERE id = %s", (a_drv["id"],))[0]
            assert st == "offered" and v == version + 3, (st, v, version)  # reserved, freed, reserved
            await accept(a, offer)
            for x in (a, b, rapp, r0app):
                await x.close()
        run(go())
    finally:
        proxy.close()


def test_idle_drivers_get_offers_again_after_a_database_outage(make_daemon, pg, tmp_path):
    """Offers out when PostgreSQL stops; they expire while it is away (their
    releases fail and are asked again); once it is back every connected idle
    driver is offered a ride again within a bound."""
    cluster = PgCluster()
    try:
        db = cluster.create_db()
        env = {"RIDEHAIL_MATCH_OFFER_TIMEOUTS": "2", "RIDEHAIL_MATCH_WAITING_RETRY": "300ms",
               "RIDEHAIL_DATABASE_RECONNECT_MAX": "300ms", "RIDEHAIL_MATCH_MAX_SEARCH": "10m",
               "RIDEHAIL_PRESENCE_STALE_AFTER": "120s"}
        d = make_daemon(env=env, db_url=cluster.url(db))
        d.db = db

        async def go():
            drivers = [await online(d, north(PICKUP, 100 + 100 * i)) for i in range(3)]
            # one trip more than drivers: whichever order the drivers are
            # freed in, each has a waiting trip it was not offered yet
            riders = [await rider_app(d) for _ in range(4)]
            trips = [request(d, rapp.hdr).json() for _, rapp in riders]
            for _, app in drivers:
                await app.recv("ride.offer", timeout=5)  # out, unanswered
            cluster.stop("fast")
            await asyncio.sleep(5)  # the offers expire, their releases fail
            for _, app in drivers:
                m = await app.recv("offer.withdrawn", timeout=3)
                assert m["payload"]["reason"] == "expired", m
            cluster.start()
            d.wait_ready(timeout=15)
            t_back = time.time()
            for drv, app in drivers:
                m = await app.recv("ride.offer", timeout=10)
                assert m["payload"]["trip_id"] in {t["id"] for t in trips}
            took = time.time() - t_back
            assert took < 10, took
            # and nobody is left offered in the database without an offer out
            rows = sql(d, cluster, "SELECT count(*) FROM drivers WHERE status = 'offered'")[0][0]
            assert rows == 3, rows
            for _, app in drivers + riders:
                await app.close()
        run(go())
        d.stop()
    finally:
        cluster.destroy()


# ---------------------------------------------------------------- 3: an accept during an outage

def test_an_accept_refused_unavailable_can_be_sent_again(make_daemon):
    """offer.accept while PostgreSQL is away is refused with `unavailable`
    ("send it again") and the offer stands: the resend once the database is
    back matches the trip, and no other ride is offered meanwhile. (Before:
    the offer was ended silently, the resend got offer_expired.)"""
    cluster = PgCluster()
    try:
        db = cluster.create_db()
        env = {"RIDEHAIL_MATCH_OFFER_TIMEOUTS": "8", "RIDEHAIL_DATABASE_RECONNECT_MAX": "300ms",
               "RIDEHAIL_PRESENCE_STALE_AFTER": "120s"}
        d = make_daemon(env=env, db_url=cluster.url(db))

        async def go():
            drv, app = await online(d, north(PICKUP, 300))
            rider, rapp = await rider_app(d)
            trip = request(d, rapp.hdr).json()
            offer = await offer_for(app, trip["id"])
            cluster.stop("fast")
            sent = await app.send("offer.accept", {"offer_id": offer["offer_id"]})
            rej = await app.rejected(reason="unavailable", timeout=10)
            assert rej["correlation_id"] == sent["event_id"], rej
            assert "send it again" in rej["payload"]["details"], rej
            cluster.start()
            d.wait_ready(timeout=15)
            # nothing was withdrawn meanwhile: the resend matches
            assert not [m for m in app.inbox if m["event_type"] == "offer.withdrawn"], app.inbox
            assigned = await accept(app, offer)
            assert assigned["trip_id"] == trip["id"]
            m = await rapp.recv("trip.matched", timeout=5)
            assert m["payload"]["driver"]["id"] == drv["id"]
            assert cluster.query(db, "SELECT state, driver_id::text FROM trips WHERE id = %s",
                                 (trip["id"],))[0] == ("MATCHED", drv["id"])
            await app.close()
            await rapp.close()
        run(go())
    finally:
        cluster.destroy()


def test_an_unanswered_accept_not_sent_again_is_withdrawn_when_it_expires(make_daemon):
    """A driver who does not send the refused accept again: the offer expires
    as any other (offer.withdrawn, reason expired) and the driver is free."""
    cluster = PgCluster()
    try:
        db = cluster.create_db()
        env = {"RIDEHAIL_MATCH_OFFER_TIMEOUTS": "3", "RIDEHAIL_DATABASE_RECONNECT_MAX": "300ms",
               "RIDEHAIL_PRESENCE_STALE_AFTER": "120s"}
        d = make_daemon(env=env, db_url=cluster.url(db))

        async def go():
            drv, app = await online(d, north(PICKUP, 300))
            rider, rapp = await rider_app(d)
            trip = request(d, rapp.hdr).json()
            offer = await offer_for(app, trip["id"])
            cluster.stop("fast")
            await app.send("offer.accept", {"offer_id": offer["offer_id"]})
            await app.rejected(reason="unavailable", timeout=10)
            cluster.start()
            d.wait_ready(timeout=15)
            m = await app.recv("offer.withdrawn", timeout=8)
            assert m["payload"] == {"offer_id": offer["offer_id"], "trip_id": trip["id"], "reason": "expired"}, m
            wait_for(lambda: cluster.query(db, "SELECT status FROM drivers WHERE id = %s", (drv["id"],))[0][0]
                     == "available", timeout=10, what="the driver released")
            await app.close()
            await rapp.close()
        run(go())
    finally:
        cluster.destroy()


# ---------------------------------------------------------------- 6: retries a 503 invited

def test_retries_a_503_invited_do_not_count_against_the_ride_limit(make_daemon):
    """A rider following Retry-After: 1 through a database outage does not
    end up rate limited once it is back. (Before: every retry counted toward
    trip.rides_per_minute and the first request after the outage got 429.)"""
    cluster = PgCluster()
    try:
        db = cluster.create_db()
        env = {"RIDEHAIL_DATABASE_RECONNECT_MAX": "300ms", "RIDEHAIL_TRIP_RIDES_PER_MINUTE": "3",
               "RIDEHAIL_PRESENCE_STALE_AFTER": "120s"}
        d = make_daemon(env=env, db_url=cluster.url(db))

        async def go():
            drv, app = await online(d, north(PICKUP, 300))
            rider, hdr = d.rider_session()
            cluster.stop("fast")
            d.wait_ready(timeout=5, want=503)
            for _ in range(6):  # twice the limit, each answered 503 with Retry-After: 1
                r = request(d, hdr)
                problem(r, 503, "database-unavailable")
                assert r.headers.get("retry-after") == "1", r.headers
            cluster.start()
            d.wait_ready(timeout=15)
            r = request(d, hdr)
            assert r.status == 201, r
            # the limit itself still holds: three more are too many
            d.post(f"/v1/rides/{r.json()['id']}/cancel", headers=hdr)
            statuses = []
            for _ in range(3):
                x = request(d, hdr)
                statuses.append(x.status)
                if x.status == 201:
                    d.post(f"/v1/rides/{x.json()['id']}/cancel", headers=hdr)
            assert statuses == [201, 201, 429], statuses
            await app.close()
        run(go())
    finally:
        cluster.destroy()


# ---------------------------------------------------------------- 4: the location history waits

def test_location_history_waits_for_the_database_and_the_meter_survives_a_restart_after(make_daemon):
    """A trip in progress drives out and back while PostgreSQL is away: the
    pings go on (the hot path needs no database), their history waits in the
    bounded queue and is written once it is back; then the daemon is
    SIGKILLed, and the meter rebuilt from the history counts the whole way,
    the turn made during the outage included. (Before: the batches that
    failed were dropped, and the rebuilt meter cut the corner.)"""
    cluster = PgCluster()
    try:
        db = cluster.create_db()
        env = {"RIDEHAIL_PRESENCE_HISTORY_FLUSH_INTERVAL": "50ms", "RIDEHAIL_MATCH_METER_MAX_SPEED": "1000",
               "RIDEHAIL_DATABASE_RECONNECT_MAX": "300ms", "RIDEHAIL_PRESENCE_STALE_AFTER": "120s"}
        d = make_daemon(env=env, db_url=cluster.url(db))
        step = 40.0
        # 0 -> 400 m north, then (database away) 400 -> 800 and back to 400,
        # then (database back) 400 -> 600: 1,400 m driven
        path = [i * step for i in range(11)] + [400 + i * step for i in range(1, 11)] + \
               [800 - i * step for i in range(1, 11)] + [400 + i * step for i in range(1, 6)]
        outage = (11, 31)

        async def before():
            drv, app = await online(d, PICKUP)
            rider, rapp = await rider_app(d)
            trip = request(d, rapp.hdr).json()
            await accept(app, await offer_for(app, trip["id"]))
            await command(app, "trip.arrived", trip["id"])
            await command(app, "trip.started", trip["id"])
            for i, m in enumerate(path):
                if i == outage[0]:
                    cluster.stop("fast")
                if i == outage[1]:
                    cluster.start()
                    d.wait_ready(timeout=15)
                await app.ping(*north(PICKUP, m), accuracy_m=5)
                await asyncio.sleep(0.3)
            await app.close()
            await rapp.close()
            return drv, app.hdr, trip

        drv, hdr, trip = run(before())
        n = wait_for(lambda: (lambda c: c >= len(path) and c)(
            cluster.query(db, "SELECT count(DISTINCT recorded_at) FROM driver_locations WHERE trip_id = %s",
                          (trip["id"],))[0][0]), timeout=15, what="every point written")
        assert n == len(path), n
        d.proc.kill()  # SIGKILL
        d.proc.wait()
        d2 = make_daemon(env=env, db_url=cluster.url(db))

        async def after():
            app = await Driver.connect(d2, token_of(hdr), drv["id"])
            await app.recv("driver.status.changed")
            assert (await app.recv("trip.assigned", timeout=8))["payload"]["state"] == "IN_PROGRESS"
            await app.ping(*north(PICKUP, path[-1]), accuracy_m=5)
            for _ in range(30):  # the meter may still be reading the history back
                sent = await app.send("trip.completed", {"trip_id": trip["id"], "command_id": str(uuid.uuid4())})
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
        metered = cluster.query(db, "SELECT metered_distance_m FROM trips WHERE id = %s", (trip["id"],))[0][0]
        assert abs(metered - 1400) <= 0.02 * 1400, f"metered {metered} m of 1400 m driven"
        d2.stop()
    finally:
        cluster.destroy()


# ---------------------------------------------------------------- 7: the outbox is pruned

def test_published_outbox_rows_are_pruned_in_batches_and_the_relay_goes_on(make_daemon, pg, nats):
    """Published rows older than events.outbox_retention go, a batch at a
    time, while the relay keeps publishing; unpublished rows stay, and
    trip_events keeps the history. (Before: the outbox only grew.)"""
    from test_events import relay_env
    from test_trips import request_ride
    env = relay_env(nats, RIDEHAIL_EVENTS_OUTBOX_RETENTION="2s", RIDEHAIL_EVENTS_PRUNE_BATCH="500")
    d = make_daemon(env=env)
    rider, hdr = d.rider_session()
    # 20,000 rows published an hour ago, as a busy day leaves them
    pg.query(d.db, "INSERT INTO outbox (event_type, producer, correlation_id, aggregate_id, aggregate_seq, payload,"
                   " occurred_at, published_at)"
                   " SELECT 'trip.requested', 'test', u, u, 1, '{}', now() - interval '1 hour', now() - interval '1 hour'"
                   " FROM (SELECT gen_random_uuid() AS u FROM generate_series(1, 20000)) x")
    # while they are pruned, new events are published as usual
    t0 = time.time()
    r = request_ride(d, hdr)
    assert r.status == 201, r
    tid = r.json()["id"]
    wait_for(lambda: pg.query(d.db, "SELECT count(*) FROM outbox WHERE aggregate_id = %s AND published_at IS NULL",
                              (tid,))[0][0] == 0, timeout=5, what="the new trip's events published")
    published_in = time.time() - t0
    d.post(f"/v1/rides/{tid}/cancel", {}, headers=hdr)
    wait_for(lambda: metric(d, "ridehail_events_pruned_total") >= 20000, timeout=30, what="the old rows pruned")
    assert pg.query(d.db, "SELECT count(*) FROM outbox WHERE producer = 'test'")[0][0] == 0
    assert published_in < 5, published_in
    # the new trip's rows go once they are older than the retention; its history stays
    wait_for(lambda: pg.query(d.db, "SELECT count(*) FROM outbox WHERE aggregate_id = %s", (tid,))[0][0] == 0,
             timeout=15, what="the new trip's rows pruned")
    assert pg.query(d.db, "SELECT count(*) FROM trip_events WHERE trip_id = %s", (tid,))[0][0] == 2
    # unpublished rows are never pruned, however old
    nats.stop()
    r = request_ride(d, hdr)
    d.post(f"/v1/rides/{r.json()['id']}/cancel", {}, headers=hdr)
    time.sleep(4)
    assert pg.query(d.db, "SELECT count(*) FROM outbox WHERE aggregate_id = %s AND published_at IS NULL",
                    (r.json()["id"],))[0][0] == 3


# ---------------------------------------------------------------- 2: the rider's numbers go forward

def test_a_riders_numbering_goes_on_forward_across_sigkills(make_daemon, pg):
    """The rider's messages are numbered per trip; after a SIGKILL (twice)
    the numbers go on above every number the rider saw: the snapshot on
    reconnect carries a number no lower than the last one seen, and the
    messages after it follow it one by one. (Before: the numbering started
    again from 0 and a rider de-duplicating by seq dropped new messages.)"""
    env = {"RIDEHAIL_PRESENCE_STALE_AFTER": "120s"}
    d = make_daemon(env=env)

    async def first():
        drv, app = await online(d, north(PICKUP, 300))
        rider, rapp = await rider_app(d)
        trip = request(d, rapp.hdr).json()
        await accept(app, await offer_for(app, trip["id"]))
        seqs = [(await rapp.recv("trip.matched"))["payload"]["seq"]]
        for i in range(5):
            await app.ping(*north(PICKUP, 280 - 20 * i), accuracy_m=5)
            seqs.append((await rapp.recv("driver.location"))["payload"]["seq"])
            await asyncio.sleep(0.25)
        assert seqs == list(range(seqs[0], seqs[0] + 6)), seqs
        return drv, app.hdr, rider, rapp.hdr, trip, seqs[-1]

    drv, dhdr, rider, rhdr, trip, last = run(first())
    db = d.db
    for round_ in range(2):
        d.proc.kill()  # SIGKILL
        d.proc.wait()
        d = make_daemon(env=env, db=db)
        if round_ == 0:  # the rider reconnects once the trip is read back; the second time at once
            wait_for(lambda: "resumed 1 active trips" in d.log(), what="the trips read back")

        async def again(last):
            rapp = await App.connect(d, token_of(rhdr), rider["id"])
            snap = await rapp.recv("trip.snapshot", timeout=8)
            assert snap["payload"]["trip_id"] == trip["id"] and snap["payload"]["state"] == "MATCHED"
            assert snap["payload"]["seq"] >= last, (snap["payload"], last)
            app = await Driver.connect(d, token_of(dhdr), drv["id"])
            await app.recv("driver.status.changed")
            seqs = []
            for i in range(3):
                await app.ping(*north(PICKUP, 150 - 20 * i), accuracy_m=5)
                m = await rapp.recv("driver.location")
                seqs.append(m["payload"]["seq"])
                await asyncio.sleep(0.25)
            s0 = snap["payload"]["seq"]
            assert seqs == [s0 + 1, s0 + 2, s0 + 3], (s0, seqs)
            # a replay from the last number seen before the crash: the
            # snapshot (what was before is not kept) and the new ones, in order
            await rapp.send("rider.subscribe", {"trip_id": trip["id"], "last_seq": last})
            assert (await rapp.recv("trip.snapshot"))["payload"]["seq"] == seqs[-1]
            replayed = [(await rapp.recv("driver.location"))["payload"]["seq"] for _ in seqs]
            assert replayed == seqs, replayed
            await app.close()
            await rapp.close()
            return seqs[-1]
        last = run(again(last))


# ---------------------------------------------------------------- 5: a driver who never comes back

def test_a_trip_whose_driver_never_comes_back_is_flagged_and_the_rider_can_end_it(make_daemon, pg):
    """A trip in progress whose driver vanishes (no socket, no location) is
    flagged after trip.driver_lost_after: an event for the operator, the
    metric; its rider may then end it, reason driver_lost, paying the part
    driven (the metered fare of the recorded way, capped at the quote), and the
    driver is free. (Before: IN_PROGRESS had no way out but an operator, and
    nothing told anyone.)"""
    env = {"RIDEHAIL_TRIP_DRIVER_LOST_AFTER": "3s", "RIDEHAIL_PRESENCE_HISTORY_FLUSH_INTERVAL": "50ms",
           "RIDEHAIL_MATCH_METER_MAX_SPEED": "1000", "RIDEHAIL_PRESENCE_STALE_AFTER": "120s"}
    d = make_daemon(env=env)

    async def go():
        drv, app = await online(d, PICKUP)
        rider, rapp = await rider_app(d)
        trip = request(d, rapp.hdr, dropoff=north(PICKUP, 6000)).json()
        await accept(app, await offer_for(app, trip["id"]))
        await command(app, "trip.arrived", trip["id"])
        await command(app, "trip.started", trip["id"])
        for i in range(6):  # 500 m driven, then the phone dies
            await app.ping(*north(PICKUP, 100 * i), accuracy_m=5)
            await asyncio.sleep(0.3)
        await app.close()
        # not yet: the rider cannot end a trip in progress
        problem(d.post(f"/v1/rides/{trip['id']}/cancel", headers=rapp.hdr), 409, "trip-state")
        wait_for(lambda: sql(d, pg, "SELECT driver_lost_at IS NOT NULL FROM trips WHERE id = %s",
                             (trip["id"],))[0][0], timeout=10, what="the trip flagged")
        ev = sql(d, pg, "SELECT payload FROM outbox WHERE aggregate_id = %s AND event_type = 'trip.driver_lost'",
                 (trip["id"],))
        assert len(ev) == 1 and ev[0][0]["driver_id"] == drv["id"] and ev[0][0]["state"] == "IN_PROGRESS", ev
        assert metric(d, "ridehail_match_drivers_lost") == 1
        assert "flagged driver_lost" in d.log()
        r = d.post(f"/v1/rides/{trip['id']}/cancel", {"reason": "fed up"}, headers=rapp.hdr)
        assert r.status == 200, r
        t = r.json()
        assert t["state"] == "CANCELLED"
        assert t["cancellation"]["by"] == "rider" and t["cancellation"]["reason"] == "driver_lost", t
        driven = t["metered"]["distance_m"]
        assert abs(driven - 500) <= 10, t["metered"]
        # the part driven at the trip's own tariff (250 base + 156/km + 30/min, 700 minimum), capped at the quote
        want = min(max(250 + round(156 * driven / 1000) + round(30 * t["metered"]["duration_s"] / 60), 700),
                   t["fare"]["quoted"])
        assert abs(t["cancellation"]["fee"] - want) <= 2, (t["cancellation"], t["metered"], want)
        assert t["cancellation"]["fee"] < t["fare"]["quoted"]
        assert sql(d, pg, "SELECT status FROM drivers WHERE id = %s", (drv["id"],))[0][0] == "available"
        wait_for(lambda: metric(d, "ridehail_match_drivers_lost") == 0, what="the gauge back to 0")
        m = await rapp.recv("trip.state_changed", timeout=5)
        while m["payload"]["state"] != "CANCELLED":
            m = await rapp.recv("trip.state_changed", timeout=5)
        assert m["payload"]["cancellation"]["reason"] == "driver_lost"
        await rapp.close()
    run(go())


def test_a_driver_back_in_time_clears_the_flag_and_an_operator_ends_a_matched_trip_free(make_daemon, pg):
    env = {"RIDEHAIL_TRIP_DRIVER_LOST_AFTER": "2s", "RIDEHAIL_PRESENCE_STALE_AFTER": "120s",
           "RIDEHAIL_TRIP_CANCEL_GRACE": "0s"}
    d = make_daemon(env=env)

    async def go():
        drv, app = await online(d, north(PICKUP, 300))
        rider, rapp = await rider_app(d)
        trip = request(d, rapp.hdr).json()
        await accept(app, await offer_for(app, trip["id"]))
        await command(app, "trip.arrived", trip["id"])
        await command(app, "trip.started", trip["id"])
        await app.close()
        wait_for(lambda: sql(d, pg, "SELECT driver_lost_at IS NOT NULL FROM trips WHERE id = %s",
                             (trip["id"],))[0][0], timeout=10, what="the trip flagged")
        # the driver is back: the flag goes, and the rider may not end it any more
        app = await Driver.connect(d, token_of(app.hdr), drv["id"])
        wait_for(lambda: not sql(d, pg, "SELECT driver_lost_at IS NOT NULL FROM trips WHERE id = %s",
                                 (trip["id"],))[0][0], timeout=10, what="the flag cleared")
        types = [r[0] for r in sql(d, pg, "SELECT event_type FROM outbox WHERE aggregate_id = %s ORDER BY aggregate_seq",
                                   (trip["id"],))]
        assert types[-2:] == ["trip.driver_lost", "trip.driver_returned"], types
        problem(d.post(f"/v1/rides/{trip['id']}/cancel", headers=rapp.hdr), 409, "trip-state")
        ackp, _ = await command(app, "trip.completed", trip["id"])
        assert ackp["state"] == "COMPLETED"
        await app.close()

        # a matched trip whose driver is gone: an operator ends it, the rider pays nothing
        drv2, app2 = await online(d, north(PICKUP, 300))
        trip2 = request(d, rapp.hdr).json()
        await accept(app2, await offer_for(app2, trip2["id"]))
        await app2.close()
        wait_for(lambda: sql(d, pg, "SELECT driver_lost_at IS NOT NULL FROM trips WHERE id = %s",
                             (trip2["id"],))[0][0], timeout=10, what="the second trip flagged")
        r = d.post(f"/v1/rides/{trip2['id']}/cancel", headers=d.admin)
        assert r.status == 200, r
        c = r.json()["cancellation"]
        assert c == {"by": "operator", "reason": "driver_lost", "fee": 0}, c
        await rapp.close()
    run(go())


# ---------------------------------------------------------------- 8: the simulator rides through faults

def test_the_simulator_rides_through_a_sigkill_and_a_database_outage(make_daemon, tmp_path):
    """bin/ridehail-sim against a daemon that is SIGKILLed (and started again
    on the same address) and a database stopped for a few seconds: it opens
    its sockets again, catches up with where each trip stands, sends again
    what was refused `unavailable` or lost on the way, and ends its run with
    no protocol error and no invariant breach. (Before: any blip ended its
    run with errors.)"""
    from conftest import free_port
    from test_sim import BOX, FAST_DAEMON, SIM
    cluster = PgCluster()
    try:
        db = cluster.create_db()
        port = free_port()
        env = dict(FAST_DAEMON, RIDEHAIL_HTTP_LISTEN=f"127.0.0.1:{port}", RIDEHAIL_DATABASE_RECONNECT_MAX="300ms",
                   RIDEHAIL_MATCH_OFFER_TIMEOUTS="4")
        d = make_daemon(env=env, db_url=cluster.url(db))
        out = tmp_path / "sim"
        sim = subprocess.Popen([str(SIM), "--addr", f"127.0.0.1:{port}", "--admin-token", ADMIN_TOKEN, "--out", str(out),
                                "--quiet", "--bbox", BOX, "--drivers", "8", "--riders", "16", "--duration", "240",
                                "--drain", "240", "--speed", "8", "--seed", "4", "--demand", "hotspots", "--rate", "240",
                                "--hotspots", "2", "--patience", "900", "--kmh", "30", "--cruise"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        wait_for(lambda: cluster.query(db, "SELECT count(*) FROM trips WHERE state <> 'SEARCHING'")[0][0] >= 2,
                 timeout=90, what="the run under way")
        d.proc.kill()  # SIGKILL
        d.proc.wait()
        d = make_daemon(env=env, db_url=cluster.url(db))
        time.sleep(8)
        cluster.stop("fast")
        time.sleep(4)
        cluster.start()
        d.wait_ready(timeout=15)
        stdout, stderr = sim.communicate(timeout=240)
        s = json.loads((out / "summary.json").read_text())
        assert sim.returncode == 0, f"sim exited {sim.returncode}:\n{stderr[-4000:]}"
        assert s["protocol_errors"] == 0 and s["invariant_breaches"] == 0, s
        assert "rode through faults" in stderr, stderr[-2000:]
        assert s["completed"] >= 1, s
        # every trip it saw created is in the database
        assert cluster.query(db, "SELECT count(*) FROM trips")[0][0] == s["created"], s
    finally:
        cluster.destroy()


def test_the_simulators_plan_counts_the_requests_within_its_duration(tmp_path):
    """--demand-mult moves copies by up to a minute: rows past --duration are
    never issued and are not counted as planned. (Before: they were.)"""
    from test_sim import BOX, SIM
    out = tmp_path / "plan"
    r = subprocess.run([str(SIM), "--dry-run", "--bbox", BOX, "--demand", "hotspots", "--rate", "600",
                        "--duration", "600", "--demand-mult", "3", "--seed", "7", "--out", str(out)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    rows = [float(x.split(",")[0]) for x in (out / "demand.csv").read_text().splitlines()[1:]]
    within = sum(1 for t in rows if t < 600)
    assert within < len(rows), "the seed no longer puts a row past the duration"
    m = re.search(r"sim: (\d+) requests planned over 600 simulated s", r.stderr)
    assert m and int(m.group(1)) == within, (r.stderr, within, len(rows))


MIDTOWN = SHARED_DATA / "osm" / "nyc-midtown-2025.osm.pbf"


@pytest.mark.skipif(not MIDTOWN.exists(), reason=f"{MIDTOWN} is absent: the drivers-on-roads test skipped")
def test_the_simulator_places_its_drivers_on_roads_a_car_can_use(make_daemon, tmp_path):
    """The Midtown box takes in the Hudson: drivers are placed on roads of the
    map's core, from which a route leaves and to which one comes (the daemon
    answers both), not in the water. (Before: uniformly in the box.)"""
    from test_sim import SIM, import_map
    m = import_map(MIDTOWN, tmp_path / "midtown.map")
    d = make_daemon(env={"RIDEHAIL_ROUTING_MAP": str(m), "RIDEHAIL_LOG_LEVEL": "info"})
    out = tmp_path / "sim"
    r = subprocess.run([str(SIM), "--addr", f"{d.host}:{d.port}", "--admin-token", ADMIN_TOKEN, "--out", str(out),
                        "--quiet", "--map", str(m), "--bbox", "-74.0140,40.7360,-73.9630,40.7590", "--margin", "0",
                        "--drivers", "40", "--riders", "1", "--rate", "0", "--duration", "3", "--interval", "1",
                        "--seed", "2"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    first = {}
    for line in (out / "positions.csv").read_text().splitlines()[1:]:
        t, drv, lat, lon = line.split(",")[:4]
        first.setdefault(drv, (float(lat), float(lon)))
    assert len(first) == 40, first
    core = (40.7506, -73.9860)  # Times Square-ish: the core of the map
    bad = []
    for drv, (lat, lon) in first.items():
        to = d.get(f"/v1/route?from_lat={lat}&from_lng={lon}&to_lat={core[0]}&to_lng={core[1]}")
        back = d.get(f"/v1/route?from_lat={core[0]}&from_lng={core[1]}&to_lat={lat}&to_lng={lon}")
        if to.status != 200 or back.status != 200:
            bad.append((drv, lat, lon, to.status, back.status))
    assert not bad, bad


# ---------------------------------------------------------------- the operator's view of the driver records

def test_admin_presence_lists_the_daemons_driver_records(make_daemon, pg):
    """GET /v1/admin/presence: what dispatch sees of every driver, to hold
    against drivers.status/version (make chaos does after every fault)."""
    d = make_daemon()

    async def go():
        drv, app = await online(d, north(PICKUP, 300))
        r = d.get("/v1/admin/presence", headers=d.admin)
        assert r.status == 200, r
        body = r.json()
        mine = [x for x in body["drivers"] if x["driver_id"] == drv["id"]]
        assert len(mine) == 1 and body["count"] == body["total"] >= 1, body
        st, ver = sql(d, pg, "SELECT status, version FROM drivers WHERE id = %s", (drv["id"],))[0]
        assert mine[0]["status"] == st == "available" and mine[0]["version"] == ver, (mine, st, ver)
        assert mine[0]["connected"] and not mine[0]["unsure"] and not mine[0]["reserving"]
        assert 0 <= mine[0]["ping_age_ms"] < 10000
        assert d.get("/v1/admin/presence?status=offered", headers=d.admin).json()["total"] == 0
        assert d.get("/v1/admin/presence?status=available&limit=1", headers=d.admin).json()["count"] == 1
        problem(d.get("/v1/admin/presence?status=lost", headers=d.admin), 400, "validation-failed")
        rider, rhdr = d.rider_session()
        assert d.get("/v1/admin/presence", headers=rhdr).status == 403
        await app.close()
    run(go())
