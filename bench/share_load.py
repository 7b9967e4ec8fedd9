#!/usr/bin/env python3
"""The load of `make bench-share` (bench/share.sh), one phase per call.

  tokens   N rider tokens (HS256, as the daemon issues them) for the riders
           in the database, one per line
  cards    a rate card per rider (POST /v1/share/rate-card over keep-alive
           connections), "token card" per line
  insert   share_insert_p99_ms: DRIVERS drivers online over WebSockets, one
           shared trip opened per driver (a booking each), then MEASURE more
           bookings near open trips, one at a time; the decision latency of
           each is the client's time from sending POST /v1/share/bookings to
           its 202, plus the database's confirmed_at (or cancelled_at) minus
           requested_at (0 for a booking decided in its own transaction, so
           before its 202; the matching after it for the others)
"""
import argparse
import asyncio
import base64
import hashlib
import hmac
import http.client
import json
import math
import random
import subprocess
import sys
import threading
import time
import uuid

import websockets

CITY = (52.09, 5.12)


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def token(secret, sub, role):
    now = int(time.time())
    h = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    p = b64(json.dumps({"iss": "ridehail", "sub": sub, "role": role, "iat": now, "exp": now + 7200,
                        "jti": uuid.uuid4().hex}).encode())
    s = b64(hmac.new(secret.encode(), f"{h}.{p}".encode(), hashlib.sha256).digest())
    return f"{h}.{p}.{s}"


def off(p, n, e):
    return (p[0] + n / 111320.0, p[1] + e / (111320.0 * math.cos(math.radians(p[0]))))


def psql(dburl, q):
    return subprocess.run(["psql", "-Atq", dburl, "-c", q], check=True, capture_output=True, text=True).stdout.split("\n")


def cards(args):
    rng = random.Random(7)
    riders = [l.split()[0] for l in psql(args.db, "SELECT id FROM riders ORDER BY email") if l]
    out = [None] * len(riders)

    def work(k):
        c = http.client.HTTPConnection("127.0.0.1", args.port)
        for i in range(k, len(riders), args.threads):
            t = token(args.secret, riders[i], "rider")
            p = off(CITY, rng.uniform(-8000, 8000), rng.uniform(-8000, 8000))
            d = off(p, rng.uniform(-3000, 3000), rng.uniform(-3000, 3000))
            body = json.dumps({"pickup": {"lat": p[0], "lng": p[1]}, "dropoff": {"lat": d[0], "lng": d[1]}})
            c.request("POST", "/v1/share/rate-card", body, {"Authorization": "Bearer " + t,
                                                              "Content-Type": "application/json"})
            r = c.getresponse()
            b = r.read()
            if r.status != 200:
                sys.exit(f"rate card: {r.status} {b[:200]}")
            out[i] = f"{t} {json.loads(b)['rate_card_id']}"
    ts = [threading.Thread(target=work, args=(k,)) for k in range(args.threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print("\n".join(out))


def tokens(args):
    for l in psql(args.db, "SELECT id FROM riders ORDER BY email"):
        if l:
            print(token(args.secret, l, "rider"))


async def insert(args):
    rng = random.Random(11)
    url = f"ws://127.0.0.1:{args.port}/v1/ws"
    drivers = [l for l in psql(args.db, "SELECT id FROM drivers ORDER BY email") if l][:args.drivers]
    riders = [l for l in psql(args.db, "SELECT id FROM riders ORDER BY email") if l]
    conns = []
    where = {}
    side = int(math.ceil(math.sqrt(len(drivers))))

    def env(t, payload):
        return json.dumps({"event_id": str(uuid.uuid4()), "event_type": t, "event_version": 1,
                           "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                           "producer": "bench", "correlation_id": str(uuid.uuid4()), "payload": payload})

    async def drain(ws):
        try:
            async for _ in ws:
                pass
        except Exception:
            pass
    for i, d in enumerate(drivers):
        # a grid 1.2 km apart over the city: each car far from the others' routes
        p = off(CITY, (i // side - side / 2) * 1200, (i % side - side / 2) * 1200)
        where[d] = p
        ws = await websockets.connect(url, extra_headers={"Authorization": "Bearer " + token(args.secret, d, "driver")},
                                      max_size=2 ** 22)
        await ws.send(env("driver.location.updated", {"driver_id": d, "location": {"lat": p[0], "lon": p[1]},
                                                      "accuracy_m": 5}))
        await ws.send(env("driver.status.changed", {"driver_id": d, "status": "available"}))
        conns.append(ws)
        asyncio.ensure_future(drain(ws))
    await asyncio.sleep(1.0)
    c = http.client.HTTPConnection("127.0.0.1", args.port)
    answered_ms = {}

    def book(rider, p, d):
        t = token(args.secret, rider, "rider")
        h = {"Authorization": "Bearer " + t, "Content-Type": "application/json"}
        c.request("POST", "/v1/share/rate-card", json.dumps({"pickup": {"lat": p[0], "lng": p[1]},
                                                             "dropoff": {"lat": d[0], "lng": d[1]}}), h)
        r = c.getresponse()
        rc = json.loads(r.read())
        t = time.perf_counter()
        c.request("POST", "/v1/share/bookings", json.dumps({"rate_card_id": rc["rate_card_id"],
                                                            "choice": {"seats": 1, "mode": "normal",
                                                                       "corporate": False}}), h)
        r = c.getresponse()
        b = r.read()
        if r.status != 202:
            sys.exit(f"booking: {r.status} {b[:300]}")
        bid = json.loads(b)["id"]
        answered_ms[bid] = (time.perf_counter() - t) * 1000
        return bid
    # one trip per car: a rider at the car, going 2 km east
    k = 0
    for d in drivers:
        p = off(where[d], 30, 0)
        book(riders[k], p, off(p, 0, 2000))
        k += 1
    await asyncio.sleep(2.0)
    opened = int(psql(args.db, "SELECT count(*) FROM share_trips WHERE state = 'OPEN'")[0])
    # the measured bookings: near a random car, the same way, so most are
    # inserted; one at a time, so each is a booking to its decision alone
    first = k
    t0 = psql(args.db, "SELECT now()")[0]
    m0 = match_metric(args.metrics)
    for _ in range(args.measure):
        d = rng.choice(drivers)
        p = off(where[d], rng.uniform(50, 300), rng.uniform(50, 300))
        book(riders[k], p, off(p, rng.uniform(-100, 100), 1700))
        k += 1
        await asyncio.sleep(0.02)
    await asyncio.sleep(2.0)
    m1 = match_metric(args.metrics)
    ids = ",".join(f"'{r}'" for r in riders[first:k])
    rows = psql(args.db, f"""SELECT state, extract(epoch FROM coalesce(confirmed_at, cancelled_at) - requested_at) * 1000, id
        FROM share_bookings WHERE rider_id IN ({ids}) AND requested_at >= '{t0}'""")
    rows = [l.split("|") for l in rows if l]
    lat = sorted(float(r[1]) + answered_ms[r[2]] for r in rows if r[1])
    states = [r[0] for r in rows]
    inserted = sum(1 for s in states if s == "confirmed")
    undecided = sum(1 for s in states if s == "pending")
    p99 = lat[min(len(lat) - 1, int(math.ceil(0.99 * len(lat))) - 1)]
    p50 = lat[len(lat) // 2]
    print(f"share_open_trips={opened}")
    print(f"share_insert_measured={len(states)}")
    print(f"share_insert_confirmed={inserted}")
    print(f"share_insert_undecided={undecided}")
    print(f"share_insert_p50_ms={p50:.2f}")
    print(f"share_insert_p99_ms={p99:.2f}")
    # the loop's part: the match histogram over the measured bookings' calls
    n = m1["count"] - m0["count"]
    if n > 0:
        print(f"share_match_mean_us={(m1['sum'] - m0['sum']) / n * 1e6:.1f}")
        need = 0.99 * n
        for le in sorted(k for k in m1["buckets"]):
            if m1["buckets"][le] - m0["buckets"].get(le, 0) >= need:
                print(f"share_match_p99_le_us={le * 1e6:.0f}")
                break
    for ws in conns:
        await ws.close()


def match_metric(url):
    """ridehail_share_match_seconds: count, sum and cumulative buckets."""
    import urllib.request
    text = urllib.request.urlopen(url).read().decode()
    out = {"count": 0, "sum": 0.0, "buckets": {}}
    for l in text.splitlines():
        if l.startswith("ridehail_share_match_seconds_count"):
            out["count"] = float(l.split()[-1])
        elif l.startswith("ridehail_share_match_seconds_sum"):
            out["sum"] = float(l.split()[-1])
        elif l.startswith("ridehail_share_match_seconds_bucket"):
            le = l.split('le="')[1].split('"')[0]
            if le != "+Inf":
                out["buckets"][float(le)] = float(l.split()[-1])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("phase", choices=["tokens", "cards", "insert"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--drivers", type=int, default=500)
    ap.add_argument("--measure", type=int, default=300)
    ap.add_argument("--metrics", default="")
    args = ap.parse_args()
    if args.phase == "tokens":
        tokens(args)
    elif args.phase == "cards":
        cards(args)
    else:
        asyncio.run(insert(args))


if __name__ == "__main__":
    main()
