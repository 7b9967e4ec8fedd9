#!/usr/bin/env python3
"""The console's live feed as one console sees it (make bench-console).

    console_probe.py --port P --operator-token T --driver-token T --driver-id ID [--seconds S]

One operator socket subscribes (console.subscribe); one probe driver, beside
the load's drivers, pings a new position every 250 ms. For every probe ping,
the time until a console.update shows it (or a later one of its pings) is
one sample of console_update_ms; every byte of every console.update counts
toward console_frame_kb_s (1 kB = 1000 bytes). The same drivers as one
GeoJSON FeatureCollection a second (the naive feed: every driver, every
second, ids and states spelled out) is measured from the console's own view
of them, as the peer of console_frame_kb_s. Prints name=value lines."""
import argparse
import asyncio
import json
import random
import time
import uuid

import websockets


def envelope(event_type, payload):
    now = time.time()
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + ".%03dZ" % int(now % 1 * 1000)
    return json.dumps({"event_id": str(uuid.uuid4()), "event_type": event_type, "event_version": 1,
                       "timestamp": ts, "producer": "bench-console", "correlation_id": str(uuid.uuid4()),
                       "payload": payload})


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = max(1, -(-len(xs) * p // 100))  # nearest rank
    return xs[int(k) - 1]


STATES = {1: "available", 2: "offered", 3: "en_route", 4: "on_trip", 5: "suspect"}


async def main(a):
    url = f"ws://127.0.0.1:{a.port}/v1/ws"
    con = await websockets.connect(url, extra_headers={"Authorization": "Bearer " + a.operator_token},
                                   max_size=None, open_timeout=30)
    drv = await websockets.connect(url, extra_headers={"Authorization": "Bearer " + a.driver_token},
                                   open_timeout=30)
    await drv.recv()  # driver.status.changed (session_opened)
    rnd = random.Random(11)

    def point():  # inside the load's box, a position no other ping of the probe had
        return (round(52.01 + rnd.random() * 0.16, 5), round(5.04 + rnd.random() * 0.16, 5))

    first = point()
    await drv.send(envelope("driver.location.updated",
                            {"driver_id": a.driver_id, "location": {"lat": first[0], "lon": first[1]},
                             "accuracy_m": 5}))
    await drv.send(envelope("driver.status.changed", {"driver_id": a.driver_id, "status": "available"}))
    await con.send(envelope("console.subscribe", {}))

    pings = []          # (sent at, (lat, lng))
    seen_upto = -1      # the last ping index a frame has shown
    latencies = []
    frames = sizes = 0
    nbytes = 0
    naive = []
    ids, drivers = {}, {}
    t_start = time.monotonic()
    warm = t_start + a.warmup
    end = warm + a.seconds
    slot = None
    stop = asyncio.Event()

    async def pinger():
        await asyncio.sleep(1.0)
        while not stop.is_set():
            p = point()
            pings.append((time.monotonic(), p))
            await drv.send(envelope("driver.location.updated",
                                    {"driver_id": a.driver_id, "location": {"lat": p[0], "lon": p[1]},
                                     "accuracy_m": 5}))
            # drain the driver's socket (acks, heartbeats) without waiting
            try:
                while True:
                    await asyncio.wait_for(drv.recv(), 0.001)
            except (asyncio.TimeoutError, websockets.ConnectionClosed):
                pass
            await asyncio.sleep(0.25)

    task = asyncio.ensure_future(pinger())
    online = 0
    while time.monotonic() < end:
        try:
            text = await asyncio.wait_for(con.recv(), max(0.1, end - time.monotonic()))
        except asyncio.TimeoutError:
            break
        t = time.monotonic()
        m = json.loads(text)
        if m["event_type"] != "console.update":
            continue
        u = m["payload"]
        if u["full"]:
            drivers.clear()
        for s, uid in u["driver_ids"]:
            ids[s] = uid
            if uid == a.driver_id:
                slot = s
        for s, lat, lng, code in u["drivers"]:
            drivers[s] = (lat, lng, code)
        for s in u["drivers_gone"]:
            drivers.pop(s, None)
        online = u["figures"]["online"]
        if t >= warm and not u["full"]:
            frames += 1
            nbytes += len(text.encode())
            if frames % 5 == 1:  # the naive peer, from the same view (every 5th frame: it costs)
                fc = {"type": "FeatureCollection", "features": [
                    {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lng, lat]},
                     "properties": {"driver_id": ids[s], "state": STATES[code]}}
                    for s, (lat, lng, code) in drivers.items()]}
                naive.append(len(json.dumps(fc)))
        if slot is not None and slot in drivers:
            pos = drivers[slot][:2]
            for i in range(len(pings) - 1, seen_upto, -1):
                if pings[i][1] == pos:
                    for j in range(seen_upto + 1, i + 1):
                        if pings[j][0] >= warm:
                            latencies.append((t - pings[j][0]) * 1000)
                    seen_upto = i
                    break
    stop.set()
    await task
    await drv.close()
    await con.close()
    dur = a.seconds
    print(f"console_drivers_online={online}")
    print(f"console_frames={frames}")
    print(f"console_frame_kb_s={nbytes / dur / 1000:.1f}")
    print(f"console_frame_kb_mean={nbytes / frames / 1000 if frames else 0:.1f}")
    print(f"console_update_samples={len(latencies)}")
    print(f"console_update_p50_ms={pct(latencies, 50):.0f}")
    print(f"console_update_p99_ms={pct(latencies, 99):.0f}")
    if naive:
        nk = sum(naive) / len(naive) / 1000
        print(f"naive_geojson_kb_s={nk:.1f}")
        print(f"console_frame_vs_naive_geojson={nbytes / dur / 1000 / nk:.3f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--operator-token", required=True)
    ap.add_argument("--driver-token", required=True)
    ap.add_argument("--driver-id", required=True)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--warmup", type=float, default=4)
    asyncio.run(main(ap.parse_args()))
