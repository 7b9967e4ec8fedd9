"""The outbox relay against a real `nats-server -js`: every event of full
trips on the stream once, in per-trip order, schema-valid; NATS stopped and
restarted mid-run; the daemon SIGKILLed mid-burst; lost marks re-published
and de-duplicated; two daemons on one database; and the relay off. The
consumer is the daemon's own `events tail`, counting by event_id."""
import json
import os
import re
import subprocess
import threading
import time

from conftest import RIDEHAILD, ROOT, wait_for
from eventschemas import violations, validator
from test_schemas import full_trip
from test_trips import request_ride

RELAY_ENV = {"RIDEHAIL_MATCH_AUTO": "false", "RIDEHAIL_TRIP_RIDES_PER_MINUTE": "100000", "RIDEHAIL_EVENTS_RETRY_MAX": "500ms",
             "RIDEHAIL_EVENTS_STATS_INTERVAL": "100ms", "RIDEHAIL_EVENTS_ACK_TIMEOUT": "1s",
             "RIDEHAIL_EVENTS_CONNECT_TIMEOUT": "500ms", "RIDEHAIL_EVENTS_LEASE_TTL": "3s"}


def relay_env(nats, **extra):
    e = dict(RELAY_ENV, RIDEHAIL_EVENTS_URL=nats.url)
    e.update(extra)
    return e


def tail(nats, *args, idle="1500ms"):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIDEHAIL_")}
    env["RIDEHAIL_EVENTS_URL"] = nats.url
    r = subprocess.run([RIDEHAILD, "--config", str(ROOT / "conf" / "ridehaild.conf"), "events", "tail", "--all",
                        "--idle-exit", idle] + list(args), cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def outbox_rows(pg, d):
    return pg.query(d.db, "SELECT event_id::text, aggregate_id::text, aggregate_seq, event_type, correlation_id::text"
                          " FROM outbox ORDER BY id")


def unpublished(pg, d):
    return pg.query(d.db, "SELECT count(*) FROM outbox WHERE published_at IS NULL")[0][0]


def metric(d, name):
    text = d.get("/metrics").body.decode()
    m = re.search(r"^" + re.escape(name) + r" (\S+)$", text, re.M)
    assert m, f"{name} not in /metrics"
    return float(m.group(1))


def check_stream(pg, d, nats):
    """Every outbox row on the stream exactly once, each trip's events in
    order, every message valid against its schema. Returns the events."""
    wait_for(lambda: unpublished(pg, d) == 0, timeout=60, what="the outbox published")
    rows = outbox_rows(pg, d)
    got = tail(nats)
    ids = [e["event_id"] for e in got]
    dups = {i for i in ids if ids.count(i) > 1}
    assert not dups, f"{len(dups)} events twice on the stream"
    want = {r[0]: r for r in rows}
    missing = set(want) - set(ids)
    assert not missing, f"{len(missing)} of {len(want)} events missing from the stream"
    assert set(ids) == set(want)
    last = {}
    for e in got:
        _, agg, seq, etype, corr = want[e["event_id"]]
        # (a trip's events are its aggregate and correlate with it; a
        # payment's are the payment's and correlate with its trip)
        assert e["event_type"] == etype and e["correlation_id"] == corr
        assert seq == last.get(agg, 0) + 1, f"aggregate {agg}: event {seq} after {last.get(agg, 0)}"
        last[agg] = seq
        errs = violations("outbox-event.schema.json", e)
        assert not errs, (e, errs)
    return got


def riders(d, n):
    return [d.rider_session()[1] for _ in range(n)]


def burst(d, hdrs, rounds, stop=None, errors=None):
    """Each rider requests a ride and cancels it, `rounds` times, in parallel."""
    def one(h):
        for _ in range(rounds):
            if stop is not None and stop.is_set():
                return
            try:
                r = request_ride(d, h)
                if r.status == 201:
                    d.post(f"/v1/rides/{r.json()['id']}/cancel", {}, headers=h)
                elif errors is not None:
                    errors.append(r.status)
            except OSError:
                if errors is not None:
                    errors.append("down")
                if stop is not None:
                    return
    ts = [threading.Thread(target=one, args=(h,)) for h in hdrs]
    for t in ts:
        t.start()
    return ts


def test_full_trips_on_the_stream_once_in_order_schema_valid(make_daemon, pg, nats):
    d = make_daemon(env=relay_env(nats))
    tid, t2 = full_trip(d, pg)
    got = check_stream(pg, d, nats)
    agg = {r[0]: r[1] for r in outbox_rows(pg, d)}
    mine = [e["event_type"] for e in got if agg[e["event_id"]] == tid]
    assert mine == ["trip.requested", "price.calculated", "trip.accepted", "trip.driver_arrived", "trip.started",
                    "trip.finished", "price.calculated", "rating.submitted", "rating.submitted"]
    # the completed trip's payment, its own aggregate, correlated with the trip
    assert [e["event_type"] for e in got if e["correlation_id"] == tid and agg[e["event_id"]] != tid] == \
        ["payment.requested"]
    assert [e["event_type"] for e in got if agg[e["event_id"]] == t2][-1] == "trip.cancelled"
    for e in got:
        validator(f"{e['event_type']}.v{e['event_version']}.schema.json").validate(e)
    # one subject per event type
    fin = tail(nats, "--subject", "ridehail.trip.finished")
    assert [e["event_type"] for e in fin] == ["trip.finished"] and fin[0]["correlation_id"] == tid
    # the stream was created as configured
    assert metric(d, "ridehail_events_published_total") == len(got)
    assert metric(d, "ridehail_events_duplicates_total") == 0
    wait_for(lambda: metric(d, "ridehail_events_backlog") == 0, what="backlog 0")
    assert metric(d, "ridehail_events_nats_connected") == 1
    assert metric(d, "ridehail_events_lag_seconds_count") == len(got)


def test_nats_stopped_and_restarted_mid_run_loses_and_duplicates_nothing(make_daemon, pg, nats):
    d = make_daemon(env=relay_env(nats))
    hdrs = riders(d, 8)
    for t in burst(d, hdrs, 3):
        t.join()
    wait_for(lambda: unpublished(pg, d) == 0, what="first burst published")
    nats.stop()
    errors = []
    ts = burst(d, hdrs, 4, errors=errors)
    for t in ts:
        t.join()
    assert not errors, errors  # ride requests keep working without the bus
    wait_for(lambda: metric(d, "ridehail_events_backlog") > 0, what="a backlog while NATS is down")
    wait_for(lambda: metric(d, "ridehail_events_nats_connected") == 0, what="disconnected")
    assert unpublished(pg, d) == 8 * 4 * 3
    time.sleep(1.0)  # a few retries against nothing
    nats.start()
    ts = burst(d, hdrs, 2)  # and traffic while it comes back
    for t in ts:
        t.join()
    got = check_stream(pg, d, nats)
    assert len(got) == 8 * (3 + 4 + 2) * 3
    assert metric(d, "ridehail_events_publish_errors_total") >= 0
    assert "events: " in d.log() and "retrying with backoff" in d.log()


def test_nats_down_at_start(make_daemon, pg, nats):
    nats.stop()
    d = make_daemon(env=relay_env(nats))
    h = riders(d, 1)[0]
    assert request_ride(d, h).status == 201
    time.sleep(0.5)
    assert unpublished(pg, d) == 2
    nats.start()
    assert len(check_stream(pg, d, nats)) == 2


def test_daemon_sigkilled_mid_burst_then_restarted(make_daemon, pg, nats):
    d = make_daemon(env=relay_env(nats))
    hdrs = riders(d, 10)
    stop = threading.Event()
    ts = burst(d, hdrs, 1000, stop=stop, errors=[])
    wait_for(lambda: metric(d, "ridehail_events_published_total") > 100, timeout=30, what="publishing under load")
    d.proc.kill()
    d.proc.wait()
    stop.set()
    for t in ts:
        t.join()
    left = unpublished(pg, d)
    d2 = make_daemon(env=relay_env(nats), db=d.db)
    got = check_stream(pg, d2, nats)
    assert len(got) == len(outbox_rows(pg, d2)) > 100
    print(f"unpublished at the kill: {left}; re-published as duplicates: "
          f"{metric(d2, 'ridehail_events_duplicates_total')}")


def test_lost_marks_are_republished_and_deduplicated(make_daemon, pg, nats):
    """A crash between publish and mark, made certain: every mark is undone
    while the daemon is stopped; on restart each row goes again with its
    event_id as the message id, and JetStream drops every copy."""
    d = make_daemon(env=relay_env(nats))
    hdrs = riders(d, 5)
    for t in burst(d, hdrs, 4):
        t.join()
    n = len(check_stream(pg, d, nats))
    d.stop()
    pg.query(d.db, "UPDATE outbox SET published_at = NULL")
    pg.query(d.db, "DELETE FROM outbox_relay_lease")
    d2 = make_daemon(env=relay_env(nats), db=d.db)
    assert len(check_stream(pg, d2, nats)) == n
    assert metric(d2, "ridehail_events_duplicates_total") == n


def test_two_daemons_on_one_database_never_publish_at_once(make_daemon, pg, nats):
    a = make_daemon(env=relay_env(nats))
    b = make_daemon(env=relay_env(nats), db=a.db)
    ha, hb = riders(a, 5), riders(b, 5)
    ts = burst(a, ha, 6) + burst(b, hb, 6)
    for t in ts:
        t.join()
    got = check_stream(pg, a, nats)
    assert len(got) == 10 * 6 * 3
    pub = metric(a, "ridehail_events_published_total") + metric(b, "ridehail_events_published_total")
    dup = metric(a, "ridehail_events_duplicates_total") + metric(b, "ridehail_events_duplicates_total")
    assert pub == len(got) and dup == 0
    # when the holder stops, the other takes over within the lease
    holder = pg.query(a.db, "SELECT holder FROM outbox_relay_lease")[0][0]
    if f"relay {holder} " not in a.log():
        a, b, ha, hb = b, a, hb, ha
    assert f"relay {holder} " in a.log()
    a.stop()
    for t in burst(b, hb, 1):
        t.join()
    assert len(check_stream(pg, b, nats)) == 10 * 6 * 3 + 5 * 3
    if holder == pg.query(b.db, "SELECT holder FROM outbox_relay_lease")[0][0]:
        raise AssertionError("the stopped daemon still holds the lease")


def test_sink_none_leaves_the_outbox_to_accumulate(make_daemon, pg):
    d = make_daemon(env={"RIDEHAIL_EVENTS_SINK": "none", "RIDEHAIL_EVENTS_STATS_INTERVAL": "100ms",
                         "RIDEHAIL_MATCH_AUTO": "false"})
    h = riders(d, 1)[0]
    assert request_ride(d, h).status == 201
    wait_for(lambda: metric(d, "ridehail_events_backlog") == 2, what="backlog of 2")
    assert unpublished(pg, d) == 2 and "the relay is off" in d.log()


def test_a_large_backlog_is_read_from_the_ends_of_the_index(make_daemon, pg):
    # Above 1,000 unpublished rows the backlog is the span of their ids (the
    # statement's cost must not grow with the backlog); rows inserted in one
    # statement take consecutive ids, so the span is exact here, and the
    # first row's age is the oldest.
    d = make_daemon(env={"RIDEHAIL_EVENTS_SINK": "none", "RIDEHAIL_EVENTS_STATS_INTERVAL": "100ms",
                         "RIDEHAIL_MATCH_AUTO": "false"})
    pg.query(d.db, "INSERT INTO outbox (event_type, producer, correlation_id, aggregate_id, aggregate_seq,"
                   " payload, occurred_at) SELECT 'test.filler', 'test', u, u, 1, '{}', now() - interval '90 seconds'"
                   "   FROM (SELECT gen_random_uuid() AS u FROM generate_series(1, 1500)) g")
    wait_for(lambda: metric(d, "ridehail_events_backlog") == 1500, what="backlog of 1500")
    assert 90 <= metric(d, "ridehail_events_oldest_unpublished_seconds") < 200
    # the first 600 published: below 1,000, counted exactly again
    pg.query(d.db, "UPDATE outbox SET published_at = now() WHERE id IN"
                   " (SELECT id FROM outbox ORDER BY id LIMIT 600)")
    wait_for(lambda: metric(d, "ridehail_events_backlog") == 900, what="backlog of 900, counted exactly")
    pg.query(d.db, "UPDATE outbox SET published_at = now() WHERE published_at IS NULL")
    wait_for(lambda: metric(d, "ridehail_events_backlog") == 0, what="backlog 0")
    assert metric(d, "ridehail_events_oldest_unpublished_seconds") == 0
