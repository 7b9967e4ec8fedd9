#!/usr/bin/env python3
"""daemon_ir_load: the deterministic load of bench/daemon_ir.sh.

The bench load generator (bench/ws_load) is driven by the clock: its drivers
keep fresh with a ping every 2 ms, the tracking phase pings once a second
for a number of seconds. Under callgrind the daemon runs ~50x slower, so the
amount of work would depend on how slow it is. This client speaks the same
wire messages (the envelope and ping template of ws_load, v1) but in exact
counts and closed loops, and brackets each measured phase with
callgrind_control: zero before, dump after (after a settle pause).

Phases (in this order, one daemon process):
  book      K sequential bookings: rider POST /v1/rides at driver i's
            position, the offered driver answers offer.accept, done at
            trip.assigned (one keep-alive HTTP connection for the riders).
  pings     R rounds; per round each of the NA available drivers and NT
            drivers on a MATCHED trip (whose riders hold a socket) sends one
            driver.location.updated; a round ends when every rider got its
            driver.location (the daemon has drained the round).
  estimate  E sequential GET /v1/estimate (no token) on one connection.
  nearby    E sequential GET /v1/drivers/nearby (rider token), 2 km, 10.
  idle      the same daemon, all sockets held, nothing sent, IDLE s: the
            time-driven work (sweeps, timers) per second.
Before each measured phase a few warm-up items of the same kind run outside
the measurement (first use of a prepared statement on each pool connection).
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import random
import selectors
import socket
import struct
import subprocess
import sys
import time

LAT0, LON0, SPAN = 52.00, 5.03, 0.18


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def token(secret, sub, role, n):
    iat = int(time.time()) - 5
    payload = ('{"iss":"ridehail","sub":"%s","role":"%s","iat":%d,"exp":%d,"jti":"cg-%016x"}'
               % (sub, role, iat, iat + 86400, n))
    signing = b64u(b'{"alg":"HS256","typ":"JWT"}') + "." + b64u(payload.encode())
    mac = hmac.new(secret.encode(), signing.encode(), hashlib.sha256).digest()
    return signing + "." + b64u(mac)


def now_str(ms):
    s = time.gmtime(ms // 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", s) + ".%03dZ" % (ms % 1000)


class Ctx:
    def __init__(self, a):
        self.a = a
        self.sel = selectors.DefaultSelector()
        self.rng = random.Random(20261207)
        self.seq = 0
        self.counts = {}  # frames received by type, this phase

    def uuid(self, prefix):
        self.seq += 1
        return "%s-1111-4000-8000-%012x" % (prefix[:8], self.seq)


class WS:
    """One client WebSocket (driver or rider)."""

    def __init__(self, ctx, acct, role):
        self.ctx, self.acct, self.role = ctx, acct, role
        self.buf = b""
        self.frames = []  # parsed text messages not yet consumed
        self.s = socket.create_connection(("127.0.0.1", ctx.a.port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tok = token(ctx.a.secret, acct, role, ctx.rng.getrandbits(60))
        req = ("GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
               "Authorization: Bearer %s\r\n\r\n" % (ctx.a.port, tok))
        self.s.sendall(req.encode())
        while b"\r\n\r\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise SystemExit("ws handshake: connection closed")
            self.buf += d
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise SystemExit("ws handshake refused: %r" % head[:300])
        self.s.setblocking(False)
        ctx.sel.register(self.s, selectors.EVENT_READ, self)
        self.parse()
        self.lat = self.lon = 0.0

    def send(self, text):
        p = text.encode()
        n = len(p)
        h = bytes([0x81])
        if n < 126:
            h += bytes([0x80 | n])
        else:
            h += bytes([0x80 | 126]) + struct.pack("!H", n)
        mask = b"\x37\xa1\x5c\x09"
        body = bytes(b ^ mask[i & 3] for i, b in enumerate(p))
        self.s.setblocking(True)
        self.s.sendall(h + mask + body)
        self.s.setblocking(False)

    def parse(self):
        while len(self.buf) >= 2:
            b0, b1 = self.buf[0], self.buf[1]
            n, hl = b1 & 0x7F, 2
            if n == 126:
                if len(self.buf) < 4:
                    return
                n, hl = struct.unpack("!H", self.buf[2:4])[0], 4
            elif n == 127:
                if len(self.buf) < 10:
                    return
                n, hl = struct.unpack("!Q", self.buf[2:10])[0], 10
            if len(self.buf) < hl + n:
                return
            payload, self.buf = self.buf[hl:hl + n], self.buf[hl + n:]
            op = b0 & 0x0F
            if op == 1:
                m = json.loads(payload)
                t = m.get("event_type")
                self.ctx.counts[t] = self.ctx.counts.get(t, 0) + 1
                if t == "command.rejected":
                    print("rejected (%s): %s" % (self.role, payload[:300]), file=sys.stderr)
                self.frames.append(m)
            elif op == 9:  # server ping: pong (the run sets ping_interval to 1 h)
                self.s.setblocking(True)
                self.s.sendall(bytes([0x8A, 0x80 | n]) + b"\0\0\0\0" + payload)
                self.s.setblocking(False)
            elif op == 8:
                raise SystemExit("ws closed by server (%s %s): %r" % (self.role, self.acct, payload[:100]))

    def envelope(self, etype, payload):
        return ('{"event_id":"%s","event_type":"%s","event_version":1,"timestamp":"%s",'
                '"producer":"cg-load","correlation_id":"%s","payload":%s}'
                % (self.ctx.uuid(self.acct), etype, now_str(int(time.time() * 1000)), self.acct, payload))

    def ping(self, ms=None):
        # ws_load's template: fixed widths, a ~5 m random walk
        r = self.ctx.rng
        self.lat += (r.random() - 0.5) * 0.0001
        self.lon += (r.random() - 0.5) * 0.0001
        ms = ms or int(time.time() * 1000)
        self.last_ms = max(ms, getattr(self, "last_ms", 0) + 1)
        text = ('{"event_id":"%s","event_type":"driver.location.updated","event_version":1,'
                '"timestamp":"%s","producer":"ws-load","correlation_id":"%s","payload":{"driver_id":"%s",'
                '"location":{"lat":%.6f,"lon":%.6f},"speed_kmh":32,"heading_deg":%d,"accuracy_m":5,'
                '"source":"gps"}}'
                % (self.ctx.uuid(self.acct), now_str(self.last_ms), self.acct, self.acct, self.lat, self.lon,
                   100 + r.randrange(260)))
        self.send(text)

    def take(self, etype):
        for i, m in enumerate(self.frames):
            if m.get("event_type") == etype:
                return self.frames.pop(i)
        return None


def pump(ctx, timeout):
    for key, _ in ctx.sel.select(timeout):
        w = key.data
        if isinstance(w, WS):
            try:
                d = w.s.recv(262144)
            except BlockingIOError:
                continue
            if not d:
                raise SystemExit("connection closed by server (%s %s)" % (w.role, w.acct))
            w.buf += d
            w.parse()


def wait_until(ctx, cond, what, limit=600):
    t0 = time.time()
    while not cond():
        if time.time() - t0 > limit:
            raise SystemExit("timeout waiting for " + what)
        pump(ctx, 0.05)


class HTTP:
    def __init__(self, ctx):
        self.ctx = ctx
        self.s = socket.create_connection(("127.0.0.1", ctx.a.port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def request(self, method, path, tok=None, body=None):
        h = "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n" % (method, path)
        if tok:
            h += "Authorization: Bearer %s\r\n" % tok
        if body is not None:
            h += "Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        h += "\r\n"
        self.s.sendall(h.encode() + (body.encode() if body else b""))
        # the reply, while the WebSockets are served too (offers may come first)
        self.s.setblocking(False)
        try:
            while True:
                if b"\r\n\r\n" in self.buf:
                    head, rest = self.buf.split(b"\r\n\r\n", 1)
                    cl = 0
                    for line in head.split(b"\r\n")[1:]:
                        k, _, v = line.partition(b":")
                        if k.strip().lower() == b"content-length":
                            cl = int(v)
                    if len(rest) >= cl:
                        self.buf = rest[cl:]
                        status = int(head.split(b" ")[1])
                        return status, rest[:cl]
                try:
                    d = self.s.recv(262144)
                    if not d:
                        raise SystemExit("http connection closed")
                    self.buf += d
                    continue
                except BlockingIOError:
                    pass
                if self.ctx.sel.get_map():
                    self.ctx.sel.register(self.s, selectors.EVENT_READ, self)
                    try:
                        pump(self.ctx, 1.0)
                    finally:
                        self.ctx.sel.unregister(self.s)
                else:
                    time.sleep(0.001)
        finally:
            self.s.setblocking(True)


def cg(ctx, what, phase=None):
    """zero, or dump and name the file after the phase"""
    a = ctx.a
    if not a.vgpid:
        return
    if what == "zero":
        subprocess.run(["callgrind_control", "-z", str(a.vgpid)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return
    before = set(os.listdir(a.outdir))
    subprocess.run(["callgrind_control", "--dump=" + phase, str(a.vgpid)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        new = [f for f in set(os.listdir(a.outdir)) - before if f.startswith("callgrind.out")]
        if new:
            time.sleep(0.5)
            os.rename(os.path.join(a.outdir, new[0]), os.path.join(a.outdir, "%s.cg" % phase))
            return
        time.sleep(0.1)
    raise SystemExit("no dump for " + phase)


def settle(ctx, s):
    t0 = time.time()
    while time.time() - t0 < s:
        pump(ctx, 0.05)


def phase(ctx, name, fn, n, summary):
    settle(ctx, ctx.a.settle)
    ctx.counts = {}
    cg(ctx, "zero")
    t0 = time.time()
    fn()
    t1 = time.time()
    settle(ctx, ctx.a.settle)
    cg(ctx, "dump", name)
    summary[name] = {"items": n, "seconds": round(t1 - t0 + ctx.a.settle, 2),
                     "frames_received": dict(sorted(ctx.counts.items()))}
    print("phase %s: %d items in %.1f s; frames %s" % (name, n, t1 - t0, ctx.counts), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--drivers", required=True)  # ids, one a line
    p.add_argument("--riders", required=True)
    p.add_argument("--extra-count", type=int, default=0)  # drivers seeded over HTTP (by the run script)
    p.add_argument("--bookings", type=int, default=200)
    p.add_argument("--avail", type=int, default=150)  # available drivers pinging
    p.add_argument("--ontrip", type=int, default=50)  # of the booked drivers, with rider sockets
    p.add_argument("--rounds", type=int, default=50)
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--warm", type=int, default=8)
    p.add_argument("--idle", type=float, default=20)
    p.add_argument("--settle", type=float, default=1.0)
    p.add_argument("--vgpid", type=int, default=0)
    p.add_argument("--outdir", default=".")
    p.add_argument("--seed-extra", default="")  # a command that seeds the extra drivers (ws_load http)
    a = p.parse_args()
    ctx = Ctx(a)
    drivers = [l.strip() for l in open(a.drivers) if len(l.strip()) == 36]
    riders = [l.strip() for l in open(a.riders) if len(l.strip()) == 36]
    W, K, NA = a.warm, a.bookings, a.avail
    assert len(drivers) >= W + K + NA and len(riders) >= W + K
    summary = {}
    rng = ctx.rng

    def point():
        return LAT0 + 0.01 + rng.random() * (SPAN - 0.04), LON0 + 0.01 + rng.random() * (SPAN - 0.02)

    # ---- drivers for the bookings (warm-up ones first): connect, position, available
    def go_available(ws_list):
        for w in ws_list:
            w.lat, w.lon = w.pickup
            w.ping()
            w.send(w.envelope("driver.status.changed",
                              '{"driver_id":"%s","status":"available"}' % w.acct))
        for w in ws_list:
            wait_until(ctx, lambda: any(m["event_type"] == "driver.status.changed" and
                                        m["payload"].get("reason") == "driver_request" for m in w.frames),
                       "available ack")
            w.frames.clear()

    book_drv = []
    for i in range(W + K):
        w = WS(ctx, drivers[i], "driver")
        w.pickup = point()
        book_drv.append(w)
    wait_until(ctx, lambda: all(w.take("driver.status.changed") for w in book_drv) or True, "session")
    go_available(book_drv)
    by_acct = {w.acct: w for w in book_drv}
    http = HTTP(ctx)
    trips = {}  # trip id -> (rider index, driver ws)

    def book(i):
        lat, lon = book_drv[i].pickup
        rtok = token(a.secret, riders[i], "rider", rng.getrandbits(60))
        body = '{"pickup":{"lat":%.6f,"lng":%.6f},"dropoff":{"lat":%.6f,"lng":%.6f}}' % (lat, lon, lat + 0.02, lon)
        st, resp = http.request("POST", "/v1/rides", rtok, body)
        if st != 201:
            raise SystemExit("POST /v1/rides: %d %r" % (st, resp[:300]))
        tid = json.loads(resp)["id"]
        state = {"drv": None}

        def offered():
            for w in book_drv:
                m = w.take("ride.offer")
                if m:
                    if m["payload"]["trip_id"] != tid:
                        raise SystemExit("an offer for another trip")
                    w.send(w.envelope("offer.accept", '{"offer_id":"%s"}' % m["payload"]["offer_id"]))
                    state["drv"] = w
                    return True
            return False
        wait_until(ctx, offered, "ride.offer")
        w = state["drv"]
        wait_until(ctx, lambda: any(m["event_type"] == "trip.assigned" for m in w.frames), "trip.assigned")
        w.frames.clear()
        trips[tid] = (i, w)

    for i in range(W):
        book(i)
    phase(ctx, "book", lambda: [book(i) for i in range(W, W + K)], K, summary)
    for w in book_drv:
        w.frames.clear()

    # ---- pings: NA more drivers available; riders of NT booked trips hold sockets
    avail = []
    for i in range(NA):
        w = WS(ctx, drivers[W + K + i], "driver")
        w.pickup = point()
        avail.append(w)
    go_available(avail)
    booked = [(i, w) for (i, w) in trips.values() if i >= W]
    booked.sort(key=lambda x: x[0])
    ontrip = []
    for i, w in booked[:a.ontrip]:
        r = WS(ctx, riders[i], "rider")
        ontrip.append((w, r))
    settle(ctx, 1.0)
    for w, r in ontrip:
        r.frames.clear()

    def round_():
        for w in avail:
            w.ping()
        for w, r in ontrip:
            w.ping()
        wait_until(ctx, lambda: all(any(m["event_type"] == "driver.location" for m in r.frames)
                                    for _, r in ontrip), "driver.location")
        for w, r in ontrip:
            r.frames.clear()
    round_()  # warm-up
    phase(ctx, "pings", lambda: [round_() for _ in range(a.rounds)], a.rounds * (NA + len(ontrip)), summary)

    # ---- estimates and nearby, with the extra drivers in the grid
    if a.seed_extra:
        subprocess.run(a.seed_extra, shell=True, check=True)
    settle(ctx, 1.0)

    def est_path():
        plat, plng = LAT0 + rng.random() * SPAN, LON0 + rng.random() * SPAN
        dlat, dlng = LAT0 + rng.random() * SPAN, LON0 + rng.random() * SPAN
        return ("/v1/estimate?pickup_lat=%.6f&pickup_lng=%.6f&dropoff_lat=%.6f&dropoff_lng=%.6f"
                "&vehicle_type=standard" % (plat, plng, dlat, dlng))

    def estimates(n):
        for _ in range(n):
            st, body = http.request("GET", est_path())
            if st != 200:
                raise SystemExit("estimate: %d %r" % (st, body[:300]))
    estimates(W)
    phase(ctx, "estimate", lambda: estimates(a.requests), a.requests, summary)

    ntok = token(a.secret, riders[0], "rider", 1)
    found = [0]

    def nearby(n):
        for _ in range(n):
            lat, lng = LAT0 + rng.random() * SPAN, LON0 + rng.random() * SPAN
            st, body = http.request("GET", "/v1/drivers/nearby?lat=%.6f&lng=%.6f&radius_m=2000&limit=10"
                                    % (lat, lng), ntok)
            if st != 200:
                raise SystemExit("nearby: %d %r" % (st, body[:300]))
            found[0] += json.loads(body)["count"]
    nearby(W)
    found[0] = 0
    phase(ctx, "nearby", lambda: nearby(a.requests), a.requests, summary)
    summary["nearby"]["drivers_listed_mean"] = round(found[0] / a.requests, 3)

    # ---- idle: the time-driven work
    settle(ctx, a.settle)
    ctx.counts = {}
    cg(ctx, "zero")
    settle(ctx, a.idle)
    cg(ctx, "dump", "idle")
    summary["idle"] = {"items": 0, "seconds": a.idle, "frames_received": ctx.counts}
    json.dump(summary, open(os.path.join(a.outdir, "summary.json"), "w"), indent=1)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
