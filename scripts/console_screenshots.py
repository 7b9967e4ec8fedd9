#!/usr/bin/python3
"""The console's screenshots in docs/, taken from the real thing (make
docs-screenshots): a throwaway PostgreSQL (scripts/localdb.sh), the daemon on
the Midtown Manhattan map, bin/ridehail-sim replaying the busiest hour of
Midtown's pickups (docs/simulator.md) with 30 drivers, and headless Chromium
signed in as an operator:

    docs/console-midtown.png    the live map a few simulated minutes in
    docs/console-trip.png       an open trip's details and timeline
    docs/console-accounts.png   the accounts panel with a driver's details

Reads ../shared/data in place (the map and the replay); exits 2 saying so
when they are absent. Usage: scripts/console_screenshots.py [--out docs]
[--warmup 75]."""
import argparse
import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from cdp import Browser, Page, chromium_path  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
MIDTOWN = DATA / "osm" / "nyc-midtown-2025.osm.pbf"
UBER = DATA / "trips" / "uber-nyc-pickups-apr14-first65k.csv"
TAXI = DATA / "trips" / "nyc-taxi-2016-statsmaths-10k.csv"
BOX = "-74.0140,40.7360,-73.9630,40.7590"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(port, method, path, body=None, token=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json",
                                          **({"Authorization": "Bearer " + token} if token else {})})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"null")


def wait_ready(port, daemon, log):
    for _ in range(300):
        if daemon.poll() is not None:
            sys.exit(f"the daemon exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"the daemon did not become ready: {log.read_text()[-2000:]}")


async def shoot(port, email, password, out, warmup):
    b = Browser().start()
    try:
        page = await Page.open(b)
        await page.send("Emulation.setDeviceMetricsOverride",
                        {"width": 1280, "height": 760, "deviceScaleFactor": 1, "mobile": False})
        await page.navigate(f"http://127.0.0.1:{port}/console")
        await page.until("!document.getElementById('signin').hidden", what="the sign-in form")
        await page.eval(f"""document.getElementById('email').value = {json.dumps(email)};
            document.getElementById('password').value = {json.dumps(password)};
            document.getElementById('signin-button').click(); true""")
        await page.until("window.ridehailConsole.connected && window.ridehailConsole.firstPaintMs !== null",
                         timeout=60, what="the live map")
        # the city busy: drivers on trips and requests open
        deadline = time.time() + warmup
        while time.time() < deadline:
            busy = await page.eval("""(() => { const s = window.ridehailConsole;
                const codes = [...s.drivers.values()].map(d => d.code);
                return codes.filter(c => c === 4).length >= 4 && s.trips.size >= 3; })()""")
            if busy and time.time() > deadline - warmup / 2:
                break
            await asyncio.sleep(1)
        await asyncio.sleep(1.5)
        await page.screenshot(out / "console-midtown.png")
        # the oldest open trip's details and timeline
        await page.eval("document.querySelector('#trips li').click(); true")
        await page.until("document.querySelector('#timeline li') !== null", what="a trip's timeline")
        await asyncio.sleep(0.5)
        await page.screenshot(out / "console-trip.png")
        # the accounts panel: drivers, one opened
        await page.eval("document.getElementById('acct-search').click(); true")
        await page.until("document.querySelector('#acct-list li') !== null", what="the drivers listed")
        await page.eval("document.querySelector('#acct-list li').click(); true")
        await page.until("document.getElementById('acct-toggle') !== null", what="a driver's details")
        await page.eval("document.getElementById('acct-detail').scrollIntoView(); true")
        await asyncio.sleep(0.5)
        await page.screenshot(out / "console-accounts.png")
        await page.close()
    finally:
        b.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "docs"))
    ap.add_argument("--warmup", type=float, default=75.0)
    a = ap.parse_args()
    missing = [p for p in (MIDTOWN, UBER) if not p.exists()]
    if missing or not chromium_path():
        print(f"console_screenshots: needs {', '.join(map(str, missing)) or 'chromium'}: nothing taken")
        return 2
    out = Path(a.out)
    tmp = Path(tempfile.mkdtemp(prefix="ridehail-shots."))
    os.chmod(tmp, 0o755)
    dbenv = dict(os.environ, LOCALDB_DIR=str(tmp / "pg"), LOCALDB_PORT=str(free_port()))
    procs = []
    try:
        subprocess.run([str(ROOT / "scripts" / "localdb.sh"), "start"], env=dbenv, check=True)
        url = subprocess.run([str(ROOT / "scripts" / "localdb.sh"), "url"], env=dbenv, check=True,
                             capture_output=True, text=True).stdout.strip()
        ridehaild = str(ROOT / "bin" / "ridehaild")
        conf = str(ROOT / "conf" / "ridehaild.conf")
        subprocess.run([ridehaild, "-c", conf, "map", "import", str(MIDTOWN), "-o", str(tmp / "midtown.map")],
                       check=True, capture_output=True)
        port, admin = free_port(), secrets.token_hex(16)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RIDEHAIL_")}
        env.update(RIDEHAIL_DATABASE_URL=url, RIDEHAIL_HTTP_LISTEN=f"127.0.0.1:{port}", RIDEHAIL_ADMIN_TOKEN=admin,
                   RIDEHAIL_AUTH_JWT_SECRET=secrets.token_hex(24), RIDEHAIL_ROUTING_MAP=str(tmp / "midtown.map"),
                   RIDEHAIL_LOG_LEVEL="warn", RIDEHAIL_MATCH_METER_MAX_SPEED="1000",
                   RIDEHAIL_HTTP_MAX_CONNECTIONS_PER_ADDRESS="0",
                   # the simulated clock runs 6x: its cars report 6x the speed driven
                   RIDEHAIL_PRESENCE_GPS_MAX_SPEED="0",
                   # a throwaway city: the 90 accounts hashed at the lowest cost, logged in from one address
                   RIDEHAIL_AUTH_PASSWORD_OPSLIMIT="1", RIDEHAIL_AUTH_PASSWORD_MEMLIMIT="8KiB",
                   RIDEHAIL_AUTH_LOGIN_PER_ADDRESS="100000", RIDEHAIL_AUTH_SIGNUP_PER_ADDRESS="100000")
        log = tmp / "daemon.log"
        daemon = subprocess.Popen([ridehaild, "-c", conf], env=env, stdout=subprocess.DEVNULL,
                                  stderr=open(log, "w"))
        procs.append(daemon)
        wait_ready(port, daemon, log)
        email, password = "dispatch@example.com", secrets.token_urlsafe(12)
        call(port, "POST", "/v1/admin/operators", {"email": email, "name": "Dispatch", "password": password}, admin)
        od = ["--od", str(TAXI)] if TAXI.exists() else []
        # the busiest hour of Midtown's pickups, compressed three times, at 6x
        sim = subprocess.Popen([str(ROOT / "bin" / "ridehail-sim"), "--addr", f"127.0.0.1:{port}", "--admin-token",
                                admin, "--out", str(tmp / "sim"), "--map", str(tmp / "midtown.map"),
                                "--bbox", BOX, "--margin", "250", "--demand", "replay", "--csv", str(UBER),
                                "--start", "2014-04-30 18:00:00", "--window", "3600", "--compress", "3",
                                "--duration", "1200", "--speed", "6", "--drivers", "30", "--riders", "60",
                                "--seed", "7", *od], stdout=subprocess.DEVNULL,
                               stderr=open(tmp / "sim.log", "w"))
        procs.append(sim)
        out.mkdir(parents=True, exist_ok=True)
        try:
            asyncio.run(shoot(port, email, password, out, a.warmup))
        except AssertionError:
            print(f"the simulator's log:\n{(tmp / 'sim.log').read_text()[-3000:]}", file=sys.stderr)
            print(f"the daemon's log:\n{log.read_text()[-3000:]}", file=sys.stderr)
            raise
        for name in ("console-midtown.png", "console-trip.png", "console-accounts.png"):
            print(f"{out / name}: {(out / name).stat().st_size // 1024} KiB")
        return 0
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
        subprocess.run([str(ROOT / "scripts" / "localdb.sh"), "destroy"], env=dbenv, capture_output=True)
        subprocess.run(["rm", "-rf", str(tmp)])


if __name__ == "__main__":
    sys.exit(main())
