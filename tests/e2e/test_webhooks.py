"""Signed webhooks against a real nats-server and a real HTTP receiver:
every event delivered in stream order with a valid HMAC signature; failures
retried with backoff; an endpoint that keeps failing dead-letters after
max_attempts and moves on."""
import hashlib
import hmac
import http.server
import json
import threading
import time

from conftest import free_port, wait_for
from eventschemas import violations
from test_events import check_stream, metric, relay_env, riders, unpublished
from test_schemas import full_trip
from test_trips import request_ride

SECRET = "webhook-secret-for-tests-0123456789"


class Receiver:
    """An HTTP endpoint recording each POST; `policy(n_for_this_event)`
    gives the status to answer."""

    def __init__(self, policy=lambda n: 200):
        self.policy = policy
        self.got = []
        self.attempts = {}
        self.lock = threading.Lock()
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                eid = self.headers.get("Ridehail-Event-Id")
                with outer.lock:
                    n = outer.attempts[eid] = outer.attempts.get(eid, 0) + 1
                    outer.got.append((dict(self.headers), body))
                code = outer.policy(n)
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.port = free_port()
        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), H)
        self.t = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.t.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/hooks/ridehail"

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def verify(headers, body):
    ts = headers["Ridehail-Timestamp"]
    want = "v1=" + hmac.new(SECRET.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["Ridehail-Signature"], want), headers
    assert abs(int(ts) - time.time()) < 60
    ev = json.loads(body)
    assert headers["Ridehail-Event-Id"] == ev["event_id"] and headers["Ridehail-Event-Type"] == ev["event_type"]
    assert headers["Content-Type"] == "application/json"
    return ev


def hook_env(nats, rx, **extra):
    e = relay_env(nats, RIDEHAIL_WEBHOOKS_URLS=rx.url, RIDEHAIL_WEBHOOKS_SECRET=SECRET,
                  RIDEHAIL_WEBHOOKS_RETRY_MIN="50ms", RIDEHAIL_WEBHOOKS_RETRY_MAX="200ms",
                  RIDEHAIL_WEBHOOKS_TIMEOUT="1s")
    e.update(extra)
    return e


def wait_consumer(d):
    wait_for(lambda: "webhooks: delivering events to" in d.log(), what="the webhook consumer")
    # the consumer is created by the first job: give it a moment to exist
    time.sleep(0.5)


def test_every_event_delivered_signed_in_order(make_daemon, pg, nats):
    rx = Receiver()
    try:
        d = make_daemon(env=hook_env(nats, rx))
        wait_consumer(d)
        tid, t2 = full_trip(d, pg)
        stream = check_stream(pg, d, nats)
        wait_for(lambda: len(rx.got) >= len(stream), timeout=30, what="every event delivered")
        time.sleep(0.3)
        evs = [verify(h, b) for h, b in rx.got]
        assert [e["event_id"] for e in evs] == [e["event_id"] for e in stream]  # once each, stream order
        for e in evs:
            assert not violations("outbox-event.schema.json", e)
        assert all(h["Ridehail-Attempt"] == "1" for h, _ in rx.got)
        assert metric(d, f'ridehail_webhooks_delivered_total{{endpoint="{rx.url}"}}') == len(stream)
    finally:
        rx.close()


def test_failures_are_retried_with_backoff(make_daemon, pg, nats):
    rx = Receiver(policy=lambda n: 503 if n <= 2 else 204)
    try:
        d = make_daemon(env=hook_env(nats, rx))
        wait_consumer(d)
        h = riders(d, 1)[0]
        assert request_ride(d, h).status == 201
        wait_for(lambda: sum(1 for v in rx.attempts.values() if v >= 3) == 2, timeout=30, what="both delivered")
        time.sleep(0.3)
        assert sorted(rx.attempts.values()) == [3, 3]
        for hd, b in rx.got:
            verify(hd, b)
        assert sorted({hd["Ridehail-Attempt"] for hd, _ in rx.got}) == ["1", "2", "3"]
        # in order: the first event's three attempts all come before the second's
        ids = [hd["Ridehail-Event-Id"] for hd, _ in rx.got]
        assert ids[:3] == [ids[0]] * 3 and ids[3:] == [ids[3]] * 3
        assert metric(d, f'ridehail_webhooks_failed_total{{endpoint="{rx.url}"}}') == 4
        assert pg.query(d.db, "SELECT count(*) FROM webhook_dead_letters")[0][0] == 0
    finally:
        rx.close()


def test_dead_letter_after_max_attempts_then_moves_on(make_daemon, pg, nats):
    rx = Receiver(policy=lambda n: 500)
    try:
        d = make_daemon(env=hook_env(nats, rx, RIDEHAIL_WEBHOOKS_MAX_ATTEMPTS="3"))
        wait_consumer(d)
        h = riders(d, 1)[0]
        assert request_ride(d, h).status == 201
        wait_for(lambda: pg.query(d.db, "SELECT count(*) FROM webhook_dead_letters")[0][0] == 2, timeout=30,
                 what="two dead letters")
        rows = pg.query(d.db, "SELECT endpoint, event_id::text, event_type, attempts, last_error, body"
                              " FROM webhook_dead_letters ORDER BY id")
        assert [r[2] for r in rows] == ["trip.requested", "price.calculated"]
        for ep, eid, et, att, err, body in rows:
            assert ep == rx.url and att == 3 and err == "HTTP 500" and body["event_id"] == eid
        assert sorted(rx.attempts.values()) == [3, 3]
        assert metric(d, f'ridehail_webhooks_dead_total{{endpoint="{rx.url}"}}') == 2
        # the endpoint recovers: later events go through
        rx.policy = lambda n: 200
        h2 = riders(d, 1)[0]
        assert request_ride(d, h2).status == 201
        wait_for(lambda: metric(d, f'ridehail_webhooks_delivered_total{{endpoint="{rx.url}"}}') == 2,
                 timeout=30, what="delivered after recovery")
        assert unpublished(pg, d) == 0
    finally:
        rx.close()


def test_unreachable_endpoint_does_not_hold_up_rides(make_daemon, pg, nats):
    port = free_port()  # nothing listens there
    e = relay_env(nats, RIDEHAIL_WEBHOOKS_URLS=f"http://127.0.0.1:{port}/x", RIDEHAIL_WEBHOOKS_SECRET=SECRET,
                  RIDEHAIL_WEBHOOKS_RETRY_MIN="50ms", RIDEHAIL_WEBHOOKS_RETRY_MAX="100ms",
                  RIDEHAIL_WEBHOOKS_MAX_ATTEMPTS="2")
    d = make_daemon(env=e)
    wait_consumer(d)
    for h in riders(d, 3):
        assert request_ride(d, h).status == 201
    check_stream(pg, d, nats)
    wait_for(lambda: pg.query(d.db, "SELECT count(*) FROM webhook_dead_letters")[0][0] == 6, timeout=30,
             what="six dead letters")
    errs = {r[0] for r in pg.query(d.db, "SELECT last_error FROM webhook_dead_letters")}
    assert all("refused" in e for e in errs), errs
    assert unpublished(pg, d) == 0  # the stream never waited for the endpoint
