"""The JSON Schemas in schemas/ against the daemon: a corpus of valid and
invalid WebSocket messages judged by both the real daemon (over a real
socket: accepted, or command.rejected naming a field and a rule) and a real
JSON Schema validator (python3-jsonschema, draft 2020-12), which must agree;
and every outbox row of a full trip validated against its schema."""
import asyncio
import copy
import json
import uuid

import pytest

from eventschemas import SCHEMAS, validator, violations
from test_presence import token_of
from test_trips import DROPOFF, UTRECHT, driver_row, outbox, place, request_ride, wait_for
from wsapp import App, Driver, envelope, now_iso, run

VALIDATION_REASONS = {"invalid_json", "validation_failed", "unknown_event_type", "unsupported_version"}
ROLE_SCHEMA = {"driver": "ws-driver-inbound.schema.json", "rider": "ws-rider-inbound.schema.json"}


class Dup(Exception):
    pass


def strict_loads(text):
    """JSON as the daemon reads it: one value, no repeated member (which JSON
    leaves undefined: the daemon refuses it as `uniqueMembers`)."""
    def pairs(items):
        keys = [k for k, _ in items]
        if len(keys) != len(set(keys)):
            raise Dup()
        return dict(items)
    return json.loads(text, object_pairs_hook=pairs)


def schema_verdict(role, text):
    """None for valid, else the set of (field, rule) the schema finds."""
    try:
        msg = strict_loads(text)
    except Dup:
        return {("*", "uniqueMembers")}
    except ValueError:
        return {("*", "invalid_json")}
    v = violations(ROLE_SCHEMA[role], msg)
    if not isinstance(msg, dict):
        v = {("", k) for _, k in v}
    return v or None


# ---------------------------------------------------------------- the corpus

def base_payloads(me):
    return {
        "driver.location.updated": {"driver_id": me, "location": {"lat": 52.09, "lon": 5.12}, "speed_kmh": 30,
                                    "heading_deg": 90, "accuracy_m": 5, "source": "gps"},
        "driver.status.changed": {"driver_id": me, "status": "available", "reason": "shift start"},
        "client.heartbeat": {"client_id": me, "client_type": "driver", "status": "alive", "latency_ms": 40},
    }


def put(d, path, value):
    """A copy of d with path (a list) set to value; value DEL removes it."""
    d = copy.deepcopy(d)
    cur = d
    for k in path[:-1]:
        cur = cur[k]
    if value is DEL:
        del cur[path[-1]]
    else:
        cur[path[-1]] = value
    return d


DEL = object()

BAD_TIMES = ["2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-01-01T25:00:00Z", "2026-01-01T00:00:00",
             "2026-01-01", "yesterday", "2026-01-01T00:00:00.Z", "2026-01-01T00:00:00+2:00", "", 1767225600,
             "2026-01-01T00:00:00Zjunk", "2026-1-01T00:00:00Z", "2026-01-01 00:00:00Z", "2026-01-01T00:00:00+24:00"]
BAD_UUIDS = ["not-a-uuid", "", "0c7e1a7e3d1f4a4e8f6a1f4c9b2d6e70", "0c7e1a7e-3d1f-4a4e-8f6a-1f4c9b2d6e7",
             "0c7e1a7e-3d1f-4a4e-8f6a-1f4c9b2d6e7g", 12, None, "{0c7e1a7e-3d1f-4a4e-8f6a-1f4c9b2d6e70}"]

# per type: payload mutations (path, value), each expected invalid
PAYLOAD_BAD = {
    "driver.location.updated": [
        (["driver_id"], DEL), (["location"], DEL), (["location", "lat"], DEL), (["location", "lon"], DEL),
        (["location", "lat"], 90.0001), (["location", "lat"], -90.5), (["location", "lon"], 180.01),
        (["location", "lon"], -181), (["location", "lat"], "52"), (["location", "lat"], None),
        (["location", "lat"], True), (["location"], [52, 5]), (["location"], "52,5"), (["location", "alt"], 3),
        (["speed_kmh"], -1), (["speed_kmh"], 400.5), (["speed_kmh"], "fast"), (["speed_kmh"], None),
        (["heading_deg"], -0.1), (["heading_deg"], 361), (["heading_deg"], False),
        (["accuracy_m"], -5), (["accuracy_m"], 100001), (["accuracy_m"], []),
        (["source"], "satellite"), (["source"], "GPS"), (["source"], ""), (["source"], 1),
        (["altitude"], 10), (["driver_id"], "nope"), (["driver_id"], 5),
    ],
    "driver.status.changed": [
        (["driver_id"], DEL), (["status"], DEL), (["status"], "busy"), (["status"], "on_trip"),
        (["status"], "Available"), (["status"], None), (["status"], 1), (["reason"], ""), (["reason"], "r" * 65),
        (["reason"], 7), (["reason"], None), (["extra"], True), (["driver_id"], "x"),
    ],
    "client.heartbeat": [
        (["client_id"], DEL), (["client_type"], DEL), (["status"], DEL), (["client_type"], "operator"),
        (["client_type"], "Driver"), (["status"], "dead"), (["status"], 0), (["latency_ms"], -1),
        (["latency_ms"], 600001), (["latency_ms"], 1.5), (["latency_ms"], "40"), (["latency_ms"], None),
        (["latency_ms"], 2 ** 60), (["client_id"], "abc"), (["client_id"], None), (["seq"], 1),
    ],
}

# per type: payload mutations expected valid (boundaries, optional members absent)
PAYLOAD_GOOD = {
    "driver.location.updated": [
        (["location", "lat"], 90), (["location", "lat"], -90), (["location", "lon"], 180),
        (["location", "lon"], -180), (["location", "lat"], 0), (["location", "lat"], 52.123456789),
        (["speed_kmh"], 0), (["speed_kmh"], 400), (["speed_kmh"], DEL), (["heading_deg"], 0), (["heading_deg"], 360),
        (["heading_deg"], DEL), (["accuracy_m"], 0), (["accuracy_m"], 100000), (["accuracy_m"], DEL),
        (["source"], "network"), (["source"], "manual"), (["source"], DEL), (["speed_kmh"], 1e2),
    ],
    "driver.status.changed": [
        (["status"], "offline"), (["reason"], DEL), (["reason"], "r" * 64), (["reason"], "é" * 64),
        (["status"], "available"),
    ],
    "client.heartbeat": [
        (["status"], "background"), (["latency_ms"], 0), (["latency_ms"], 600000), (["latency_ms"], DEL),
        (["latency_ms"], 40.0),
    ],
}


# Dispatch commands: validated like the others, then refused on their
# meaning (no such offer or trip) when valid; the trip commands answer from
# the database, after the probe (ASYNC).
U1, U2 = "0c7e1a7e-3d1f-4a4e-8f6a-1f4c9b2d6e70", "5b0f6f34-5e0b-4f5e-9a53-3d1b8d4c1e2a"
COMMANDS = {
    "offer.accept": ("driver", {"offer_id": U1, "trip_id": U2},
                     [(["offer_id"], DEL), (["offer_id"], "nope"), (["offer_id"], 5), (["trip_id"], "x"),
                      (["trip_id"], None), (["extra"], 1)],
                     [(["trip_id"], DEL)]),
    "offer.decline": ("driver", {"offer_id": U1, "reason": "too far"},
                      [(["offer_id"], DEL), (["reason"], ""), (["reason"], "r" * 65), (["reason"], 7), (["why"], "x")],
                      [(["reason"], DEL), (["reason"], "r" * 64)]),
    "trip.arrived": ("driver", {"trip_id": U1, "command_id": U2},
                     [(["trip_id"], DEL), (["command_id"], DEL), (["command_id"], "x"), (["trip_id"], 1),
                      (["distance_m"], 5)], []),
    "trip.started": ("driver", {"trip_id": U1, "command_id": U2},
                     [(["command_id"], DEL), (["trip_id"], "")], []),
    "trip.completed": ("driver", {"trip_id": U1, "command_id": U2},
                       [(["command_id"], None), (["distance_m"], 1000), (["duration_s"], 60)], []),
    "trip.cancel": ("driver", {"trip_id": U1, "command_id": U2, "reason": "flat tyre"},
                    [(["reason"], ""), (["reason"], "r" * 65), (["trip_id"], DEL)], [(["reason"], DEL)]),
    "rider.subscribe": ("rider", {"trip_id": U1, "last_seq": 3},
                        [(["trip_id"], DEL), (["last_seq"], -1), (["last_seq"], 1.5), (["last_seq"], "3"),
                         (["last_seq"], 2 ** 60), (["since"], 1)],
                        [(["last_seq"], DEL), (["last_seq"], 0)]),
}
SEMANTIC_REASONS = {"offer_expired", "not_your_trip", "not_found"}
ASYNC = {"trip.arrived", "trip.started", "trip.completed", "trip.cancel"}


def corpus(me):
    """[(role, text, label)]; the verdicts come from the schema and the daemon."""
    out = []
    bases = base_payloads(me)

    def add(msg, label, role="driver"):
        out.append((role, json.dumps(msg), label))

    for t, p in bases.items():
        good = envelope(t, p)
        add(good, f"{t}: valid")
        for path, val in PAYLOAD_GOOD[t]:
            add(envelope(t, put(p, path, val)), f"{t}: good payload {path}={val!r:.20}")
        for path, val in PAYLOAD_BAD[t]:
            add(envelope(t, put(p, path, val)), f"{t}: bad payload {path}={val!r:.20}")
        # the envelope
        for k in ("event_id", "event_type", "event_version", "timestamp", "producer", "correlation_id", "payload"):
            add(put(envelope(t, p), [k], DEL), f"{t}: no {k}")
        add(put(envelope(t, p), ["extra"], 1), f"{t}: extra envelope member")
        for val in BAD_UUIDS[:4] if t != "driver.location.updated" else BAD_UUIDS:
            add(put(envelope(t, p), ["event_id"], val), f"{t}: event_id {val!r}")
            add(put(envelope(t, p), ["correlation_id"], val), f"{t}: correlation_id {val!r}")
        for val in (0, -1, 1.5, "1", 1001, 2, None, True):
            add(put(envelope(t, p), ["event_version"], val), f"{t}: event_version {val!r}")
        for val in ("", "e" * 65, 5, None, "driver.location.update", "trip.requested", "server.heartbeat"):
            add(put(envelope(t, p), ["event_type"], val), f"{t}: event_type {val!r:.20}")
        for val in ("", "p" * 65, 3, None):
            add(put(envelope(t, p), ["producer"], val), f"{t}: producer {val!r:.20}")
        for val in ([], "x", None, 1):
            add(put(envelope(t, p), ["payload"], val), f"{t}: payload {val!r}")
        for val in BAD_TIMES if t == "client.heartbeat" else BAD_TIMES[:4]:
            add(put(envelope(t, p), ["timestamp"], val), f"{t}: timestamp {val!r}")
    # good envelopes: boundaries
    hb = bases["client.heartbeat"]
    add(envelope("client.heartbeat", hb, producer="p" * 64), "producer of 64")
    add(envelope("client.heartbeat", hb, producer="é" * 64), "producer of 64 code points")
    add(envelope("client.heartbeat", hb, producer="x"), "producer of 1")
    add(envelope("client.heartbeat", hb, timestamp=now_iso().replace("Z", "+00:00")), "timestamp +00:00")
    add(envelope("client.heartbeat", hb, timestamp="2026-06-01T12:00:00+05:30"), "timestamp +05:30")
    add(envelope("client.heartbeat", hb, timestamp="2026-06-01T12:00:00.123456Z"), "timestamp in microseconds")
    add(envelope("client.heartbeat", hb, timestamp="2026-06-01T12:00:00Z"), "timestamp without fraction")
    add(envelope("client.heartbeat", hb, timestamp="2026-06-01t12:00:00z"), "timestamp in lower case")
    add(envelope("client.heartbeat", hb, timestamp="2028-02-29T12:00:00Z"), "timestamp on a leap day")
    add(envelope("client.heartbeat", hb, event_id=str(uuid.uuid4()).upper()), "upper-case uuid")
    add(envelope("client.heartbeat", hb, event_version=1.0), "event_version 1.0")
    # the rider's socket
    rider_hb = dict(hb, client_type="rider")
    out.append(("rider", None, "rider: valid heartbeat"))  # filled in by the test (the rider's id)
    for t in ("driver.location.updated", "driver.status.changed"):
        add(envelope(t, bases[t]), f"rider sends {t}", role="rider")
    add(envelope("client.heartbeat", rider_hb, event_version=3), "rider: version 3", role="rider")
    # not an envelope at all
    for text, label in (("{", "truncated"), ("[]", "an array"), ('"hello"', "a string"), ("42", "a number"),
                        ("null", "null"), ("", "empty"), ("{} {}", "two values"), ("{'a': 1}", "single quotes"),
                        ('{"event_id": }', "missing value"), ("{}", "empty object")):
        out.append(("driver", text, "raw: " + label))
    g = json.dumps(envelope("client.heartbeat", hb))
    out.append(("driver", g[:-1] + ', "producer": "twice"}', "raw: envelope member twice"))
    out.append(("driver", g.replace('"status": "alive"', '"status": "alive", "status": "alive"'),
                "raw: payload member twice"))
    out.append(("driver", g + "  \n", "raw: trailing whitespace"))
    out.append(("driver", g + "x", "raw: trailing garbage"))
    for t, (role, p, bad, good) in COMMANDS.items():
        add(envelope(t, p), f"{t}: valid", role=role)
        for path, val in good:
            add(envelope(t, put(p, path, val)), f"{t}: good payload {path}={val!r:.20}", role=role)
        for path, val in bad:
            add(envelope(t, put(p, path, val)), f"{t}: bad payload {path}={val!r:.20}", role=role)
        add(put(envelope(t, p), ["event_version"], 2), f"{t}: event_version 2", role=role)
        other = "rider" if role == "driver" else "driver"
        add(envelope(t, p), f"{t} from a {other}", role=other)
    return out


def daemon_verdicts(d, items, tokens):
    """Sends each message, then a heartbeat probe; whatever command.rejected
    arrives before the probe's answer is the message's verdict."""
    async def go():
        apps = {}
        for role, (tok, acct) in tokens.items():
            apps[role] = await App.connect(d, tok, acct)
            if role == "driver":
                await apps[role].recv("driver.status.changed")
        verdicts = []
        for role, text, _ in items:
            app = apps[role]
            await app.send_raw(text)
            probe = await app.send("client.heartbeat", {"client_id": app.id, "client_type": role, "status": "alive"})
            got = None
            while True:
                m = await app.recv(timeout=5)
                if m["event_type"] == "server.heartbeat" and m["correlation_id"] == probe["event_id"]:
                    break
                if m["event_type"] == "command.rejected":
                    assert got is None, (text, got, m)
                    got = m["payload"]
            sent_type = None
            try:
                sent_type = json.loads(text).get("event_type")
            except Exception:
                pass
            if got is None and role == "driver" and sent_type in ASYNC:
                # passed validation: the answer comes from the database
                got = (await app.recv("command.rejected", timeout=5))["payload"]
            verdicts.append(got)
        for app in apps.values():
            await app.close()
        return verdicts
    return run(go())


def test_schema_and_daemon_agree_on_a_corpus(make_daemon):
    d = make_daemon(env={"RIDEHAIL_WS_MAX_REJECTIONS": "100000", "RIDEHAIL_PRESENCE_MAX_PINGS_PER_S": "100000",
                         "RIDEHAIL_WS_MAX_MESSAGE_BURST": "100000"})
    drv, dh = d.driver_session()
    rider, rh = d.rider_session()
    items = corpus(drv["id"])
    items = [(r, t if t is not None else json.dumps(envelope("client.heartbeat", {
        "client_id": rider["id"], "client_type": "rider", "status": "alive"})), lbl) for r, t, lbl in items]
    # rider's messages name the rider
    items = [(r, t.replace(drv["id"], rider["id"]) if r == "rider" else t, lbl) for r, t, lbl in items]
    assert len(items) >= 200, len(items)
    valid = sum(1 for r, t, _ in items if schema_verdict(r, t) is None)
    assert valid >= 30 and len(items) - valid >= 150, (valid, len(items))
    got = daemon_verdicts(d, items, {"driver": (token_of(dh), drv["id"]), "rider": (token_of(rh), rider["id"])})
    wrong = []
    for (role, text, label), rej in zip(items, got):
        want = schema_verdict(role, text)
        if rej is not None and rej["reason"] in SEMANTIC_REASONS and want is None:
            continue  # valid, refused on its meaning (no such offer, trip)
        if rej is not None and rej["reason"] not in VALIDATION_REASONS:
            wrong.append(f"{label}: refused for a reason other than validation: {rej}")
            continue
        if want is None:
            if rej is not None:
                wrong.append(f"{label}: schema accepts, daemon rejects {rej.get('field')!r}/{rej.get('rule')}")
            continue
        if rej is None:
            wrong.append(f"{label}: schema rejects {sorted(want)}, daemon accepts")
            continue
        pair = (rej.get("field"), rej.get("rule"))
        if rej["reason"] == "invalid_json":
            ok = ("*", "invalid_json") in want
        elif pair[1] == "uniqueMembers":
            ok = ("*", "uniqueMembers") in want
        else:
            ok = pair in want
        if not ok:
            wrong.append(f"{label}: daemon names {pair}, schema finds {sorted(want)}")
    assert not wrong, f"{len(wrong)} of {len(items)} verdicts differ:\n" + "\n".join(wrong)


def test_schemas_are_well_formed_and_indexed():
    import jsonschema
    index = json.loads((SCHEMAS / "index.json").read_text())
    listed = {v["schema"] for versions in index["versions"].values() for v in versions.values()}
    files = {p.name for p in SCHEMAS.glob("*.v*.schema.json")}
    assert listed == files
    for p in SCHEMAS.glob("*.schema.json"):
        doc = json.loads(p.read_text())
        jsonschema.Draft202012Validator.check_schema(doc)
        assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema" and doc["$id"].endswith(p.name)

        def walk(s, where):
            if isinstance(s, dict):
                if s.get("type") == "object" and "properties" in s:
                    assert s.get("additionalProperties") is False or where.endswith("allOf"), (p.name, where)
                if s.get("type") in ("number", "integer"):
                    assert "minimum" in s and "maximum" in s, (p.name, where)
                for k, v in s.items():
                    walk(v, where + "." + k)
            elif isinstance(s, list):
                for x in s:
                    walk(x, where)
        walk(doc, p.name)


def full_trip(d, pg):
    """A trip driven through every state over HTTP and the WebSocket, then
    rated both ways; and a second one cancelled with a driver assigned."""
    rider, rh = d.rider_session()
    drv, dh = d.driver_session()

    async def drive():
        app = await Driver.connect(d, token_of(dh), drv["id"])
        await app.recv("driver.status.changed")
        await app.go("available")
        await app.ping(*UTRECHT)
        wait_for(lambda: driver_row(d, pg, drv["id"])[0] == "available", what="available in the db")
        r = request_ride(d, rh)
        assert r.status == 201, r
        trip = r.json()
        tid = trip["id"]
        v0 = driver_row(d, pg, drv["id"])[1]
        assert d.post(f"/v1/rides/{tid}/assign", {"driver_id": drv["id"], "driver_version": v0},
                      headers=d.admin).status == 200
        assert d.post(f"/v1/rides/{tid}/arrived", headers=dh).status == 200
        assert d.post(f"/v1/rides/{tid}/start", headers=dh).status == 200
        est = trip["estimate"]
        assert d.post(f"/v1/rides/{tid}/complete", {"distance_m": est["distance_m"], "duration_s": est["duration_s"],
                                                    "end_location": place(DROPOFF)}, headers=dh).status == 200
        assert d.post(f"/v1/rides/{tid}/rating", {"stars": 5, "comment": "great"}, headers=rh).status == 201
        assert d.post(f"/v1/rides/{tid}/rating", {"stars": 4}, headers=dh).status == 201
        r = request_ride(d, rh)
        assert r.status == 201, r
        t2 = r.json()["id"]
        v1 = driver_row(d, pg, drv["id"])[1]
        assert d.post(f"/v1/rides/{t2}/assign", {"driver_id": drv["id"], "driver_version": v1},
                      headers=d.admin).status == 200
        r = d.post(f"/v1/rides/{t2}/cancel", {"reason": "changed plans"}, headers=rh)
        assert r.status == 200, r
        await app.close()
        return tid, t2
    tid, t2 = run(drive())
    return tid, t2


def as_event(row):
    """An outbox row as the relay publishes it: the envelope."""
    seq, etype, ver, producer, corr, payload, event_id, occurred = row
    return {"event_id": event_id, "event_type": etype, "event_version": ver,
            "timestamp": occurred.astimezone(__import__("datetime").timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.")
            + f"{occurred.microsecond // 1000:03d}Z",
            "producer": producer, "correlation_id": corr, "payload": payload}


def test_every_outbox_row_of_full_trips_is_schema_valid(make_daemon, pg):
    daemon = make_daemon(env={"RIDEHAIL_MATCH_AUTO": "false"})
    tid, t2 = full_trip(daemon, pg)
    done = [r[1] for r in outbox(daemon, pg, tid)]
    assert done == ["trip.requested", "price.calculated", "trip.accepted", "trip.driver_arrived", "trip.started",
                    "trip.finished", "price.calculated", "rating.submitted", "rating.submitted"], done
    assert [r[1] for r in outbox(daemon, pg, t2)][-1] == "trip.cancelled"
    seen = set()
    for t in (tid, t2):
        for row in outbox(daemon, pg, t):
            ev = as_event(row)
            errs = sorted(violations("outbox-event.schema.json", ev))
            assert not errs, (ev, errs)
            seen.add(ev["event_type"])
            # and its own versioned schema
            validator(f"{ev['event_type']}.v{ev['event_version']}.schema.json").validate(ev)
    assert seen == {"trip.requested", "price.calculated", "trip.accepted", "trip.driver_arrived", "trip.started",
                    "trip.finished", "rating.submitted", "trip.cancelled"}
