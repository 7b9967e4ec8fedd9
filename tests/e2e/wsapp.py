"""WebSocket clients for the tests: a real library client (python3-websockets)
speaking the app protocol, and a raw-socket client for sending malformed
frames on purpose."""
import asyncio
import base64
import datetime
import json
import os
import socket
import struct
import uuid

import jsonschema
import websockets
import yaml

_DOCS = os.path.join(os.path.dirname(__file__), "..", "..", "docs")
_server_schemas = None


def server_message_validator(event_type, version=1):
    """The JSON Schema docs/asyncapi.yaml gives for a server-sent message (of
    that version: x-event-version, 1 when absent): every message a test
    receives is checked against it, so the document stays true."""
    global _server_schemas
    if _server_schemas is None:
        with open(os.path.join(_DOCS, "asyncapi.yaml")) as f:
            doc = yaml.safe_load(f)
        _server_schemas = {}
        for ref in doc["channels"]["/v1/ws"]["subscribe"]["message"]["oneOf"]:
            key = ref["$ref"].rsplit("/", 1)[1]
            msg = doc["components"]["messages"][key]
            schema = {"$ref": f"#/components/messages/{key}/payload", "components": doc["components"]}
            _server_schemas[(msg["name"], msg.get("x-event-version", 1))] = jsonschema.Draft202012Validator(
                schema, format_checker=jsonschema.FormatChecker())
    v = _server_schemas.get((event_type, version))
    assert v is not None, f"server sent {event_type} version {version}, which docs/asyncapi.yaml does not list"
    return v


SERVER_SCHEMAS = {"server.heartbeat": "server.heartbeat.v1.schema.json",
                  "driver.status.changed": "driver.status.changed.v1.schema.json",
                  "driver.location.acked": "driver.location.acked.v1.schema.json",
                  "command.rejected": "command.rejected.v1.schema.json"}
SERVER_SCHEMAS.update({t: f"{t}.v1.schema.json" for t in (
    "ride.offer", "offer.withdrawn", "trip.assigned", "trip.state_changed", "command.acknowledged",
    "trip.matched", "driver.location", "trip.search_progress", "trip.snapshot", "driver.reposition.suggested",
    "console.update", "share.stops", "share.booking.updated", "share.leg.updated")})


def server_event_schema(event_type, version=1):
    from eventschemas import validator
    assert event_type in SERVER_SCHEMAS, f"server sent {event_type}, which has no schema in schemas/"
    return validator(SERVER_SCHEMAS[event_type].replace(".v1.", f".v{version}."))


def now_iso(offset_s=0.0):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=offset_s)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def envelope(event_type, payload, **override):
    msg = {"event_id": str(uuid.uuid4()), "event_type": event_type, "event_version": 1,
           "timestamp": now_iso(), "producer": "test-app", "correlation_id": str(uuid.uuid4()),
           "payload": payload}
    msg.update(override)
    return msg


class App:
    """One app's socket: send envelopes, receive server events."""

    def __init__(self, ws, account_id):
        self.ws = ws
        self.id = account_id
        self.inbox = []

    @classmethod
    async def connect(cls, daemon, token, account_id, how="header", protocol=None, **kw):
        """protocol: 2 asks for ridehail.v2 (the second version of the
        messages that have one), 1 for ridehail.v1; None asks for neither."""
        # (a front such as test_deploy.py's nginx gives its own wss:// URL
        # and TLS context)
        url = getattr(daemon, "ws_url", None) or f"ws://{daemon.host}:{daemon.port}/v1/ws"
        for k, v in getattr(daemon, "ws_connect_kw", {}).items():
            kw.setdefault(k, v)
        headers, protocols = {}, None
        if how == "header":
            headers["Authorization"] = "Bearer " + token
        elif how == "subprotocol":
            protocols = ["ridehail.v1", "bearer." + token]
        elif how == "query":
            url += "?access_token=" + token
        if protocol:
            protocols = (protocols or []) + [f"ridehail.v{protocol}"]
        ws = await websockets.connect(url, extra_headers=headers, subprotocols=protocols, max_size=2 ** 20,
                                      open_timeout=5, **kw)
        app = cls(ws, account_id)
        app.protocol = protocol or 1
        return app

    async def send(self, event_type, payload, **override):
        msg = envelope(event_type, payload, **override)
        await self.ws.send(json.dumps(msg))
        return msg

    async def send_raw(self, text):
        await self.ws.send(text)

    async def recv(self, event_type=None, timeout=3.0):
        """The next server event (of that type, keeping others for later)."""
        for i, m in enumerate(self.inbox):
            if event_type is None or m["event_type"] == event_type:
                return self.inbox.pop(i)
        deadline = asyncio.get_event_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_event_loop().time()
            if left <= 0:
                raise AssertionError(f"no {event_type or 'event'} within {timeout}s; got {self.inbox}")
            m = json.loads(await asyncio.wait_for(self.ws.recv(), left))
            assert set(m) == {"event_id", "event_type", "event_version", "timestamp", "producer",
                              "correlation_id", "payload"}, m
            server_message_validator(m["event_type"], m["event_version"]).validate(m)
            server_event_schema(m["event_type"], m["event_version"]).validate(m)  # and schemas/, the contract
            if event_type is None or m["event_type"] == event_type:
                return m
            self.inbox.append(m)

    async def rejected(self, reason=None, field=None, rule=None, timeout=3.0):
        m = await self.recv("command.rejected", timeout)
        p = m["payload"]
        if reason:
            assert p["reason"] == reason, p
        if field is not None:
            assert p.get("field") == field, p
        if rule is not None:
            assert p.get("rule") == rule, p
        return m

    async def no_message(self, within=0.3):
        try:
            m = await asyncio.wait_for(self.ws.recv(), within)
        except asyncio.TimeoutError:
            return
        raise AssertionError(f"unexpected message {m}")

    async def close(self):
        await self.ws.close()


class Driver(App):
    async def go(self, status="available"):
        sent = await self.send("driver.status.changed", {"driver_id": self.id, "status": status})
        m = await self.recv("driver.status.changed")
        assert m["payload"]["status"] == status, m
        assert m["correlation_id"] == sent["event_id"]
        return m

    async def ping(self, lat, lon, **extra):
        """A fix, in the version of the message the app's protocol speaks."""
        v2 = getattr(self, "protocol", 1) >= 2
        payload = {"driver_id": self.id, "location": {"lat": lat, "lng" if v2 else "lon": lon}}
        payload.update(extra)
        return await self.send("driver.location.updated", payload, **({"event_version": 2} if v2 else {}))


def run(coro):
    return asyncio.run(coro)


# ---------------------------------------------------------------- raw frames

class RawWS:
    """A hand-driven client: a valid handshake, then any bytes we like."""

    def __init__(self, daemon, token, timeout=5, rcvbuf=None):
        self.s = socket.socket()
        if rcvbuf:  # before connecting, so that the advertised window is small from the start
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.s.settimeout(timeout)
        self.s.connect((daemon.host, daemon.port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall((f"GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n"
                        f"Authorization: Bearer {token}\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.s.recv(4096)
            assert chunk, head
            head += chunk
        self.status = int(head.split(b" ")[1])
        self.buf = head.split(b"\r\n\r\n", 1)[1]

    @staticmethod
    def frame(opcode, payload=b"", fin=True, mask=True, rsv=0, length=None):
        b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
        n = len(payload) if length is None else length
        if n < 126:
            hdr = struct.pack("!BB", b0, (0x80 if mask else 0) | n)
        elif n < 65536:
            hdr = struct.pack("!BBH", b0, (0x80 if mask else 0) | 126, n)
        else:
            hdr = struct.pack("!BBQ", b0, (0x80 if mask else 0) | 127, n)
        if not mask:
            return hdr + payload
        key = os.urandom(4)
        return hdr + key + bytes(c ^ key[i % 4] for i, c in enumerate(payload))

    def send(self, data):
        self.s.sendall(data)

    def read_frame(self):
        """(opcode, payload) of the next server frame, or None at EOF."""
        def need(n):
            while len(self.buf) < n:
                chunk = self.s.recv(65536)
                if not chunk:
                    return False
                self.buf += chunk
            return True
        if not need(2):
            return None
        b0, b1 = self.buf[0], self.buf[1]
        assert not (b1 & 0x80), "server frames are never masked"
        n, off = b1 & 0x7f, 2
        if n == 126:
            need(4)
            n, off = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            need(10)
            n, off = struct.unpack("!Q", self.buf[2:10])[0], 10
        need(off + n)
        payload = self.buf[off:off + n]
        self.buf = self.buf[off + n:]
        return b0 & 0x0f, payload

    def close_code(self):
        """Reads until the server's close frame; returns its code."""
        while True:
            f = self.read_frame()
            if f is None:
                return None
            if f[0] == 0x8:
                return struct.unpack("!H", f[1][:2])[0] if len(f[1]) >= 2 else 1005

    def eof(self, timeout=5):
        self.s.settimeout(timeout)
        try:
            while True:
                if not self.s.recv(65536):
                    return True
        except (ConnectionResetError, socket.timeout):
            return False

    def close(self):
        self.s.close()
