"""What a hostile client tried: each test here failed on the daemon before
the fix it guards (the docstring says how)."""
import json
import socket
import struct

import pytest

from conftest import problem
from wsapp import RawWS, envelope


def reply_body(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    return head.decode(errors="replace"), body


# ---------------------------------------------------------------- the request target

@pytest.mark.parametrize("path", ["/v1/rides/%zz", "/v1/rides/%00", "/v1/rides/abc%", "/v1/rides/%4",
                                  "/v1/drivers/%", "/%e"])
def test_bad_percent_escape_names_the_path_as_sent(daemon, path):
    """A bad escape left the decoded path without its NUL, and the 400's
    `instance` copied the heap bytes after it into the reply (AddressSanitizer
    aborted on the first). Now the reply names the path exactly as sent, the
    same every time."""
    for _ in range(40):
        out = daemon.raw(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        head, body = reply_body(out)
        assert head.startswith("HTTP/1.1 400 "), out
        j = json.loads(body)
        assert j["instance"] == path, j
        assert j["type"].endswith("/bad-request")
        assert "path" in j["detail"]


def test_bad_escape_in_the_query_is_400_naming_the_path(daemon):
    r = daemon.get("/v1/drivers/nearby?lat=%zz&lng=1")
    body = problem(r, 400, "bad-request")
    assert body["instance"] == "/v1/drivers/nearby"
    assert "query" in body["detail"]


# ---------------------------------------------------------------- chunked bodies (RFC 9112 7.1)

LOGIN_HEAD = (b"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Connection: close\r\n")
BODY = b'{"role":"rider","email":"nobody@example.com","password":"wrong-password"}'


@pytest.mark.parametrize("te,framing", [
    (b"chunked", b"%x\t;ext=1\r\n%s\r\n0\r\n\r\n"),                 # a tab before the extension
    (b"chunked", b"%x;\tname = \"quoted; value\"\r\n%s\r\n0\r\n\r\n"),  # blanks and a quoted value
    (b"chunked", b"0000000000000000%x\r\n%s\r\n0\r\n\r\n"),         # a size with leading zeros
    (b"chunked", b"%x\r\n%s\r\n0;last=1\r\nX-Checksum: abc\r\nX-Other:\t1\r\n\r\n"),  # trailers
    (b"CHUNKED", b"%x\r\n%s\r\n0\r\n\r\n"),
])
def test_chunked_bodies_rfc9112_allows(daemon, te, framing):
    """Chunk extensions (with blanks, tabs, quoted values), leading zeros in a
    size, trailer fields and the coding's name in capitals are all RFC 9112;
    a tab before an extension and the leading zeros got 400/413 before. The
    body must reach the handler: the login answers 401 for the unknown
    account, not a framing error."""
    chunked = framing % (len(BODY), BODY) if framing.count(b"%") == 2 else framing
    out = daemon.raw(LOGIN_HEAD + b"Transfer-Encoding: " + te + b"\r\n\r\n" + chunked)
    head, body = reply_body(out)
    assert head.startswith("HTTP/1.1 401 "), out


def test_chunked_trailer_flood_is_refused(daemon):
    """Trailer fields are read and dropped, so their total is bounded."""
    chunked = b"%x\r\n%s\r\n0\r\n" % (len(BODY), BODY) + b"X-Pad: " + b"a" * 100 + b"\r\n"
    out = daemon.raw(LOGIN_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunked + b"X: y\r\n" * 2000 + b"\r\n")
    head, _ = reply_body(out)
    assert head.startswith("HTTP/1.1 400 "), out


# ---------------------------------------------------------------- login replies

def test_login_reply_is_not_cached(daemon):
    """The login reply carries a bearer token: no cache may keep it."""
    rider = daemon.create_rider(password="rider-pass-1")
    r = daemon.post("/v1/auth/login", {"role": "rider", "email": rider["email"], "password": "rider-pass-1"})
    assert r.status == 200, r
    assert r.headers.get("cache-control") == "no-store", r.headers


# ---------------------------------------------------------------- WebSocket floods

def raw_session(daemon):
    drv, hdr = daemon.driver_session()
    c = RawWS(daemon, hdr["Authorization"].split(" ", 1)[1], timeout=5)
    assert c.status == 101
    op, hello = c.read_frame()
    assert op == 1 and json.loads(hello)["event_type"] == "driver.status.changed"
    return drv, c


def read_until_close(c):
    """(frames of each opcode before the close, the close code, its reason);
    the close code is None when the server never closed."""
    counts = {}
    try:
        while True:
            f = c.read_frame()
            if f is None:
                return counts, None, ""
            if f[0] == 0x8:
                code = struct.unpack("!H", f[1][:2])[0] if len(f[1]) >= 2 else 1005
                return counts, code, f[1][2:].decode()
            counts[f[0]] = counts.get(f[0], 0) + 1
    except (socket.timeout, ConnectionResetError):
        return counts, None, ""


def test_ws_ping_flood_is_closed_1008(daemon):
    """docs/websocket.md promised a 1008 for a ping flood; 300,000 pings in
    5 s were answered one by one. Now a burst past ws.max_pings_per_s (5/s,
    bursts of 20) closes the connection with 1008, after a bounded number of
    pongs."""
    _, c = raw_session(daemon)
    c.send(RawWS.frame(0x9, b"p") * 3000)
    counts, code, reason = read_until_close(c)
    assert code == 1008, (counts, code)
    assert reason == "ping flood"
    assert counts.get(0xA, 0) <= 20, counts
    c.close()
    text = daemon.get("/metrics").body.decode()
    assert 'ridehail_ws_closes_total{code="1008"}' in text


def test_ws_message_flood_is_closed_1008(daemon):
    """Valid messages had no rate limit at all: every one was parsed, checked
    and answered. Past ws.max_message_burst (500) at once the connection is
    closed with 1008, and the server answered at most that many."""
    drv, c = raw_session(daemon)
    hb = json.dumps(envelope("client.heartbeat", {"client_id": drv["id"], "client_type": "driver",
                                                  "status": "alive"})).encode()
    c.send(RawWS.frame(0x1, hb) * 1500)
    counts, code, reason = read_until_close(c)
    assert code == 1008, (counts, code)
    assert reason == "too many messages"
    assert 400 <= counts.get(0x1, 0) <= 500, counts
    c.close()


def test_ws_message_burst_under_the_limit_is_served(daemon):
    """A phone's queued messages (a few hundred at once) are all served."""
    drv, c = raw_session(daemon)
    hb = json.dumps(envelope("client.heartbeat", {"client_id": drv["id"], "client_type": "driver",
                                                  "status": "alive"})).encode()
    c.send(RawWS.frame(0x1, hb) * 300 + RawWS.frame(0x9, b"p") * 10)
    got = {}
    while got.get(0x1, 0) < 300 or got.get(0xA, 0) < 10:
        op, _ = c.read_frame()
        assert op != 0x8
        got[op] = got.get(op, 0) + 1
    c.close()
