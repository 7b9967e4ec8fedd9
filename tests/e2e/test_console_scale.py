"""The console's first (full) update with a city of drivers: 5,000 on the map
make it ~400 kB, past ws.max_output (256 KiB). A console on a slow link (here:
a socket with a small receive buffer that does not read for a moment) must
still get it whole, not be dropped as a slow reader: an operator's socket has
its own cap (ws.max_output_operator) while drivers' keep ws.max_output (set to
64 KiB here). On loopback the kernel's socket buffers take most of the update
at once, so this checks the delivery at that size, not the cap alone."""
import json
import socket
import threading
import time
import uuid
from http.client import HTTPConnection

from conftest import JWT_SECRET, wait_for
from test_auth import make_jwt
from test_console import operator_token
from wsapp import RawWS, envelope, now_iso

N = 5000


def token(role, sub):
    now = int(time.time())
    return make_jwt({"iss": "ridehail", "sub": sub, "role": role, "iat": now, "exp": now + 3600,
                     "jti": uuid.uuid4().hex, "cv": 0})


def seed_drivers(d, pg, n):
    """n available drivers in the grid over the HTTP fallback (a socket each
    would test the machine's descriptors, not the console)."""
    pg.query(d.db, "INSERT INTO drivers (email, name, password_hash, vehicle_type, vehicle_make, vehicle_model,"
                   " vehicle_color, plate, status) SELECT 'scale' || i || '@example.com', 'Scale ' || i, '!',"
                   " 'standard', 'Toyota', 'Prius', 'White', 'S' || i, 'available' FROM generate_series(1, %s) i",
             (n,))
    ids = [r[0] for r in pg.query(d.db, "SELECT id::text FROM drivers WHERE email LIKE 'scale%%' ORDER BY email")]
    assert len(ids) == n
    failed = []

    def put(chunk, k):
        c = HTTPConnection(d.host, d.port, timeout=30)
        for i, did in chunk:
            body = json.dumps({"location": {"lat": 52.0 + (i % 100) * 0.0018, "lng": 5.03 + (i // 100) * 0.0036},
                               "accuracy_m": 5, "timestamp": now_iso()})
            c.request("PUT", "/v1/drivers/me/location", body,
                      {"Authorization": "Bearer " + token("driver", did), "Content-Type": "application/json"})
            r = c.getresponse()
            r.read()
            if r.status != 200:
                failed.append((did, r.status))
        c.close()
    chunks = [[] for _ in range(8)]
    for i, did in enumerate(ids):
        chunks[i % 8].append((i, did))
    threads = [threading.Thread(target=put, args=(c, k)) for k, c in enumerate(chunks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failed, failed[:5]
    return ids


def test_a_slow_console_gets_the_full_update_of_5000_drivers(make_daemon, pg):
    # drivers' sockets capped low (64 KiB): the full update is six times that
    d = make_daemon(env={"RIDEHAIL_PRESENCE_MAX_DRIVERS": str(N + 100), "RIDEHAIL_MATCH_AUTO": "false",
                         "RIDEHAIL_WS_MAX_OUTPUT": "64KiB",
                         "RIDEHAIL_PRESENCE_STALE_AFTER": "600s", "RIDEHAIL_PRESENCE_EVICT_AFTER": "600s"})
    ids = seed_drivers(d, pg, N)
    tok, _ = operator_token(d)
    # every driver on the console's map before it subscribes
    wait_for(lambda: d.get("/v1/admin/presence?status=available&limit=1", headers=d.admin).json()["total"] == N,
             timeout=20, what="5,000 drivers in presence")
    time.sleep(1.5)  # a console tick or two: the console's own list holds them all
    c = RawWS(d, tok, timeout=30, rcvbuf=4096)
    assert c.status == 101
    c.send(RawWS.frame(0x1, json.dumps(envelope("console.subscribe", {})).encode()))
    time.sleep(2.0)  # a slow link: nothing read while the daemon writes the update
    got = None
    deadline = time.time() + 30
    while got is None:
        assert time.time() < deadline, "no full console.update"
        f = c.read_frame()
        assert f is not None, "the console's socket was closed"
        assert f[0] != 0x8, f"closed: {f[1][:2].hex()} {f[1][2:]!r}"
        m = json.loads(f[1])
        if m["event_type"] == "console.update" and m["payload"]["full"]:
            got = m["payload"]
    size = len(f[1])
    shown = {uid for _, uid in got["driver_ids"]}
    assert shown == set(ids), (len(shown), N)
    assert len(got["drivers"]) == N
    assert size > 256 * 1024, size  # past the default cap too
    # and it keeps getting updates after
    f = c.read_frame()
    assert f is not None and json.loads(f[1])["event_type"] == "console.update"
    c.close()
    slow = [line for line in d.get("/metrics").body.decode().splitlines()
            if line.startswith("ridehail_ws_slow_readers_total")]
    assert slow == ["ridehail_ws_slow_readers_total 0"], slow
    print(f"\nfull update with {N} drivers: {size} bytes")
