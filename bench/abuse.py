"""The hostile clients of `make bench-abuse` (bench/abuse.sh): each
subcommand plays one attack against a server on 127.0.0.1 and prints
name=value lines. Sources are spread over 127.0.x.y addresses, as an attack
from many hosts would be (Linux routes all of 127/8 to loopback).

  slowloris   N connections each trickling a request head, never finishing
              it; prints `ready` once all are open and holds them for
              --hold seconds (the caller measures the server meanwhile).
  flood       keeps as many idle connections open as the server lets it (up
              to --target), reopening what is closed, while a prober asks
              GET /healthz on a new connection every --probe-every seconds;
              prints the probes answered 200.
  loginflood  wrong passwords from --srcs addresses, each at --per-min (under
              the per-address limit), sent without waiting for the answer,
              while a real user logs in --tries times, once a second.
"""
import argparse
import json
import random
import selectors
import socket
import threading
import time


def src_addr(i):
    return f"127.0.{1 + i // 250}.{1 + i % 250}"


def connect(host, port, src, timeout=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((src, 0))
    if timeout is not None:
        s.settimeout(timeout)
    s.connect((host, port))
    return s


def slowloris(a):
    socks = []
    head = b"GET /healthz HTTP/1.1\r\nHost: bench\r\nX-Slow: "
    for i in range(a.conns):
        try:
            s = connect(a.host, a.port, src_addr(i % a.srcs), timeout=5)
            s.sendall(head)
            s.setblocking(False)
            socks.append(s)
        except OSError:
            pass
    print("ready", flush=True)
    t_end = time.time() + a.hold
    alive = len(socks)
    while time.time() < t_end:
        time.sleep(0.5)
        alive = 0
        for s in socks:
            try:
                s.send(b"a")  # one more byte of a header that never ends
                alive += 1
            except OSError:
                pass
    print(f"slowloris_conns={len(socks)}")
    print(f"slowloris_alive={alive}")
    for s in socks:
        s.close()


def status_of(host, port, src, request, timeout):
    """Sends one request on a new connection; the reply's status (None if none)."""
    s = connect(host, port, src, timeout=timeout)
    try:
        s.sendall(request)
        buf = b""
        while b"\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
        return int(buf.split(b" ")[1]) if buf.startswith(b"HTTP/1.1 ") else None
    finally:
        s.close()


def login_request(body):
    return (f"POST /v1/auth/login HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


def flood(a):
    stop = threading.Event()
    held = {"now": 0, "max": 0, "opened": 0}

    def attacker():
        sel = selectors.DefaultSelector()
        socks = set()
        i = 0
        per_tick = max(1, int(a.rate / 100))
        while not stop.is_set():
            # open what is missing, at most --rate a second
            for _ in range(per_tick):
                if len(socks) >= a.target:
                    break
                s = socket.socket()
                s.setblocking(False)
                try:
                    s.bind((src_addr(i % a.srcs), 0))
                    s.connect_ex((a.host, a.port))
                    sel.register(s, selectors.EVENT_READ)
                    socks.add(s)
                    held["opened"] += 1
                except OSError:
                    s.close()
                i += 1
            # drop what the server closed (or answered 503 and closed)
            for key, _ in sel.select(timeout=0.01):
                s = key.fileobj
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(s)
                    socks.discard(s)
                    s.close()
            held["now"] = len(socks)
            held["max"] = max(held["max"], len(socks))
        for s in socks:
            s.close()

    t = threading.Thread(target=attacker, daemon=True)
    t.start()
    time.sleep(a.warmup)
    ok = total = 0
    held_at_probe = []
    t_end = time.time() + a.seconds
    while time.time() < t_end:
        t0 = time.time()
        total += 1
        held_at_probe.append(held["now"])
        try:
            ok += status_of(a.host, a.port, "127.0.0.1", b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n",
                            a.probe_timeout) == 200
        except OSError:
            pass
        time.sleep(max(0.0, a.probe_every - (time.time() - t0)))
    stop.set()
    t.join(5)
    print(f"flood_probes={total}")
    print(f"flood_healthz_ok_pct={100.0 * ok / total:.1f}")
    print(f"flood_held_conns={sorted(held_at_probe)[len(held_at_probe) // 2]}")
    print(f"flood_held_max={held['max']}")
    print(f"flood_opened={held['opened']}")


def loginflood(a):
    stop = threading.Event()
    sent = [0]

    def attacker(i):
        src, n = src_addr(i), 0
        every = 60.0 / a.per_min
        stop.wait(random.random() * every)
        while not stop.is_set():
            body = json.dumps({"role": "rider", "email": f"guess{i}-{n}@example.com",
                               "password": "wrong-guess"}).encode()
            n += 1
            try:  # send, and do not wait for the answer
                with connect(a.host, a.port, src, timeout=2) as s:
                    s.sendall(login_request(body))
                sent[0] += 1
            except OSError:
                pass
            stop.wait(every)

    threads = [threading.Thread(target=attacker, args=(i,), daemon=True) for i in range(a.srcs)]
    for t in threads:
        t.start()
    time.sleep(a.warmup)
    body = json.dumps({"role": "rider", "email": a.email, "password": a.password}).encode()
    ok, times = 0, []
    for _ in range(a.tries):
        t0 = time.time()
        try:
            st = status_of(a.host, a.port, "127.0.0.1", login_request(body), a.timeout)
        except OSError:
            st = None
        dt = time.time() - t0
        if st == 200:
            ok += 1
            times.append(dt * 1000)
        time.sleep(max(0.0, 1.0 - dt))
    stop.set()
    for t in threads:
        t.join(3)
    times.sort()
    print(f"login_tries={a.tries}")
    print(f"login_ok_pct_under_flood={100.0 * ok / a.tries:.1f}")
    print(f"login_user_p50_ms={times[len(times) // 2]:.0f}" if times else "login_user_p50_ms=n/a")
    print(f"login_user_max_ms={times[-1]:.0f}" if times else "login_user_max_ms=n/a")
    print(f"login_flood_sent={sent[0]}")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("slowloris", "flood", "loginflood"):
        s = sub.add_parser(name)
        s.add_argument("--host", default="127.0.0.1")
        s.add_argument("--port", type=int, required=True)
        s.add_argument("--srcs", type=int, default=16)
    sub.choices["slowloris"].add_argument("--conns", type=int, default=3000)
    sub.choices["slowloris"].add_argument("--hold", type=float, default=4)
    f = sub.choices["flood"]
    f.add_argument("--target", type=int, default=6000)
    f.add_argument("--rate", type=float, default=2000)
    f.add_argument("--warmup", type=float, default=4)
    f.add_argument("--seconds", type=float, default=10)
    f.add_argument("--probe-every", type=float, default=0.1)
    f.add_argument("--probe-timeout", type=float, default=2)
    lf = sub.choices["loginflood"]
    lf.add_argument("--per-min", type=float, default=25)
    lf.add_argument("--warmup", type=float, default=5)
    lf.add_argument("--tries", type=int, default=20)
    lf.add_argument("--timeout", type=float, default=10)
    lf.add_argument("--email", required=True)
    lf.add_argument("--password", required=True)
    a = p.parse_args()
    {"slowloris": slowloris, "flood": flood, "loginflood": loginflood}[a.cmd](a)


if __name__ == "__main__":
    main()
