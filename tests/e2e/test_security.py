"""What a hostile client tried: each test here failed on the daemon before
the fix it guards (the docstring says how)."""
import json

import pytest

from conftest import problem


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
