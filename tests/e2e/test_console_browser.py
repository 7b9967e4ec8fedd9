"""The console in a real browser: headless Chromium (Debian's `chromium`,
over the DevTools protocol) opens /console on Midtown Manhattan, signs in
with an operator account, watches a simulated driver move along a road,
books a ride taken by phone, assigns it by hand, cancels it and
downloads the day's report; the screenshots are kept in
build/test-output/console/ (printed at the end)."""
import asyncio
import csv
import io
import json
import os
import uuid

import pytest

from cdp import Browser, Page, chromium_path
from conftest import ROOT, SHARED_DATA
from test_presence import token_of
from test_routing import import_map
from wsapp import Driver

MIDTOWN = SHARED_DATA / "osm" / "nyc-midtown-2025.osm.pbf"
OUT = ROOT / "build" / ("test-output-san" if os.environ.get("SANITIZE") == "1" else "test-output") / "console"
GREEN = (0x2e, 0x7d, 0x32)  # available, as console.js draws it

pytestmark = [
    pytest.mark.skipif(not MIDTOWN.exists(), reason=f"{MIDTOWN} is absent: the browser test of the console is skipped"),
    pytest.mark.skipif(not chromium_path(), reason="chromium is not installed (scripts/deps.sh install)"),
]


@pytest.fixture(scope="module")
def midtown_map(tmp_path_factory):
    out = tmp_path_factory.mktemp("map") / "midtown.map"
    r = import_map(MIDTOWN, out)
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture
def browser():
    b = Browser().start()
    yield b
    b.stop()


def is_green(px):
    return all(abs(a - b) <= 12 for a, b in zip(px[:3], GREEN)) and px[3] > 200


def test_console_signs_in_and_shows_a_driver_moving(make_daemon, midtown_map, browser, pg):
    d = make_daemon(env={"RIDEHAIL_ROUTING_MAP": str(midtown_map), "RIDEHAIL_MATCH_AUTO": "false"})
    email = f"ops-{uuid.uuid4().hex[:8]}@example.com"
    assert d.post("/v1/admin/operators", {"email": email, "name": "Ops", "password": "operator-pw"},
                  headers=d.admin).status == 201
    drv, dh = d.driver_session()
    # the driver's way: a real route between two Midtown corners
    a, b = (40.7505, -73.9935), (40.7580, -73.9855)
    route = d.get(f"/v1/route?from_lat={a[0]}&from_lng={a[1]}&to_lat={b[0]}&to_lng={b[1]}")
    assert route.status == 200, route
    path = [(lat, lng) for lng, lat in route.json()["geometry"]["coordinates"]]
    start, end = path[0], path[-1]
    OUT.mkdir(parents=True, exist_ok=True)
    shots = []

    async def go():
        page = await Page.open(browser)
        await page.send("Emulation.setDeviceMetricsOverride",
                        {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False})
        await page.navigate(f"http://{d.host}:{d.port}/console")
        await page.until("!document.getElementById('signin').hidden && document.getElementById('desk').hidden",
                         what="the sign-in form")
        shots.append(OUT / "01-sign-in.png")
        await page.screenshot(shots[-1])

        # a wrong password is said so, and nothing opens
        await page.eval(f"""document.getElementById('email').value = {json.dumps(email)};
            document.getElementById('password').value = 'wrong-password';
            document.getElementById('signin-button').click(); true""")
        err = await page.until("document.getElementById('signin-error').textContent", what="the sign-in error")
        assert "invalid email or password" in err, err
        assert await page.eval("document.getElementById('desk').hidden") is True

        await page.eval("""document.getElementById('password').value = 'operator-pw';
            document.getElementById('signin-button').click(); true""")
        await page.until("window.ridehailConsole.connected && window.ridehailConsole.firstPaintMs !== null",
                         what="the live map")
        roads = await page.eval("window.ridehailConsole.roads.features.length")
        assert roads >= 3, roads
        # the roads are drawn: a good share of the canvas is not background
        drawn = await page.eval("""(() => { const c = document.getElementById('map');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
            for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0) n++; return n / (d.length / 4); })()""")
        assert drawn > 0.02, drawn

        # a driver comes online at the start of the route: a green dot there
        app = await Driver.connect(d, token_of(dh), drv["id"])
        await app.recv("driver.status.changed")
        await app.ping(*start, accuracy_m=5)
        await app.go("available")
        key = json.dumps(drv["id"])
        await page.until(f"[...window.ridehailConsole.drivers.values()].some(x => x.id === {key} && x.code === 1)",
                         what="the driver on the map")
        await page.until("document.getElementById('f-online').textContent === '1'", what="the figure online")
        await asyncio.sleep(0.2)  # the next animation frame
        px = await page.eval(f"window.ridehailConsole.pixelAt({start[0]}, {start[1]})")
        assert is_green(px), px
        shots.append(OUT / "02-driver-online.png")
        await page.screenshot(shots[-1])

        # it drives along the road; the console follows it to the end
        step = max(1, len(path) // 8)
        for p in path[step::step] + [end]:
            await app.ping(*p, accuracy_m=5)
            await asyncio.sleep(0.35)
        expr = (f"(() => {{ const x = [...window.ridehailConsole.drivers.values()].find(x => x.id === {key}); "
                f"return x && Math.abs(x.lat - {end[0]}) < 2e-5 && Math.abs(x.lng - {end[1]}) < 2e-5; }})()")
        await page.until(expr, what="the driver at the end of the route")
        await asyncio.sleep(0.2)
        assert is_green(await page.eval(f"window.ridehailConsole.pixelAt({end[0]}, {end[1]})"))
        assert not is_green(await page.eval(f"window.ridehailConsole.pixelAt({start[0]}, {start[1]})"))
        updates = await page.eval("window.ridehailConsole.updates")
        assert updates >= 3, updates
        shots.append(OUT / "03-driver-moved.png")
        await page.screenshot(shots[-1])

        # a booking taken by phone: the caller's number, pickup and dropoff
        # clicked on the map; the trip is listed and its details open
        phone = "+1 212 555 " + str(uuid.uuid4().int % 10000).zfill(4)
        await page.eval(f"document.getElementById('book-phone').value = {json.dumps(phone)};"
                        " document.getElementById('book-name').value = 'Pat Caller'; true")
        for which, (lat, lng) in (("pickup", b), ("dropoff", (40.7484, -73.9857))):
            await page.eval(f"document.getElementById('set-{which}').click(); true")
            x, y = await page.eval(f"window.ridehailConsole.clientOf({lat}, {lng})")
            for kind in ("mousePressed", "mouseReleased"):
                await page.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left",
                                                             "clickCount": 1})
            await page.until(f"document.getElementById('book-{which}').textContent !== 'not set'",
                             what=f"the {which} set")
        await page.eval("document.getElementById('book-button').click(); true")
        await page.until("document.getElementById('book-result').textContent.startsWith('booked for Pat Caller')",
                         what="the booking made")
        tl = await page.until("document.querySelector('#timeline li') && document.getElementById('details').textContent",
                              what="the trip's details")
        tid = await page.eval("window.ridehailConsole.selected.trip")
        assert tid in tl and "SEARCHING" in tl and "by operator" in tl, tl
        await page.until(f"document.querySelector('#trips li[data-trip=\"{tid}\"]') !== null", what="the trip listed")
        await page.until("document.getElementById('f-open').textContent === '1'", what="one open request")
        booked = d.get(f"/v1/rides/{tid}", headers=d.admin).json()
        assert abs(booked["pickup"]["lat"] - b[0]) < 2e-4 and abs(booked["pickup"]["lng"] - b[1]) < 2e-4, booked
        rider = pg.query(d.db, "SELECT name, phone FROM riders WHERE id = %s", (booked["rider_id"],))[0]
        assert rider == ("Pat Caller", "+1212555" + phone[-4:]), rider
        shots.append(OUT / "04-trip-details.png")
        await page.screenshot(shots[-1])

        # the dispatcher assigns it by hand to the nearest available driver:
        # the timeline says the operator did, the driver turns en route
        btn = f"document.querySelector('#actions button.assign[data-driver=\"{drv['id']}\"]')"
        await page.until(f"{btn} !== null", what="the assign button")
        await page.eval(f"{btn}.click(); true")
        tl = await page.until("(() => { const t = document.getElementById('details').textContent;"
                              " return t.includes('SEARCHING → MATCHED') && t; })()", what="the match in the timeline")
        assert "by operator" in tl, tl
        await page.until(f"[...window.ridehailConsole.drivers.values()].some(x => x.id === {key} && x.code === 3)",
                         what="the driver en route")
        shots.append(OUT / "05-assigned.png")
        await page.screenshot(shots[-1])

        # and cancels it with a reason: off the list, the driver free again
        await page.eval("document.getElementById('cancel-reason').value = 'rider called to cancel';"
                        " document.getElementById('cancel-trip').click(); true")
        await page.until("document.getElementById('details').textContent.includes('MATCHED → CANCELLED')",
                         what="the cancellation in the timeline")
        await page.until(f"document.querySelector('#trips li[data-trip=\"{tid}\"]') === null", what="the trip gone")
        await page.until(f"[...window.ridehailConsole.drivers.values()].some(x => x.id === {key} && x.code === 1)",
                         what="the driver available again")
        view = d.get(f"/v1/rides/{tid}", headers=d.admin).json()
        assert view["state"] == "CANCELLED" and view["cancellation"]["by"] == "operator", view
        assert view["cancellation"]["reason"] == "rider called to cancel", view

        # the day's report, downloaded from the header: the booking is in it
        await page.send("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(OUT)})
        for old in OUT.glob("ridehail-daily-*.csv"):
            old.unlink()
        await page.eval("document.getElementById('report-daily').click(); true")
        name = await page.until("window.ridehailConsole.lastReport", what="the report downloaded")
        saved = OUT / name
        deadline = asyncio.get_event_loop().time() + 10
        while not saved.exists() and asyncio.get_event_loop().time() < deadline:
            await asyncio.sleep(0.1)
        today = [r for r in csv.DictReader(io.StringIO(saved.read_text())) if r["day"] == booked["requested_at"][:10]]
        assert len(today) == 1 and today[0]["trips"] == "1" and today[0]["cancelled"] == "1", today
        shots.append(OUT / "06-report.png")
        await page.screenshot(shots[-1])

        errors = [c for c in page.console if c.startswith("exception")]
        assert not errors, errors
        await app.close()
        await page.close()

    asyncio.run(go())
    for s in shots:
        assert s.stat().st_size > 10000, s  # a real picture, not an empty page
    print("\nconsole screenshots: " + ", ".join(str(s) for s in shots))


def test_console_disables_a_driver_who_drops_off_the_map(make_daemon, midtown_map, browser):
    """Accounts on the console: the operator finds a driver by plate, disables
    them (the dot leaves the map, the driver's socket closes with 4003, the
    token is refused), enables them again, edits the vehicle, and hands out a
    reset link that the driver opens to set a new password."""
    d = make_daemon(env={"RIDEHAIL_ROUTING_MAP": str(midtown_map), "RIDEHAIL_MATCH_AUTO": "false"})
    email = f"ops-{uuid.uuid4().hex[:8]}@example.com"
    assert d.post("/v1/admin/operators", {"email": email, "name": "Ops", "password": "operator-pw"},
                  headers=d.admin).status == 201
    plate = "DSK" + uuid.uuid4().hex[:5].upper()
    drv, dh = d.driver_session(plate=plate, name="Dora Disable")
    spot = (40.7527, -73.9772)
    OUT.mkdir(parents=True, exist_ok=True)
    shots = []

    async def go():
        page = await Page.open(browser)
        await page.send("Emulation.setDeviceMetricsOverride",
                        {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False})
        await page.navigate(f"http://{d.host}:{d.port}/console")
        await page.until("!document.getElementById('signin').hidden", what="the sign-in form")
        await page.eval(f"""document.getElementById('email').value = {json.dumps(email)};
            document.getElementById('password').value = 'operator-pw';
            document.getElementById('signin-button').click(); true""")
        await page.until("window.ridehailConsole.connected && window.ridehailConsole.firstPaintMs !== null",
                         what="the live map")
        app = await Driver.connect(d, token_of(dh), drv["id"])
        await app.recv("driver.status.changed")
        await app.ping(*spot, accuracy_m=5)
        await app.go("available")
        key = json.dumps(drv["id"])
        on_map = f"[...window.ridehailConsole.drivers.values()].some(x => x.id === {key})"
        await page.until(on_map, what="the driver on the map")
        await asyncio.sleep(0.2)
        assert is_green(await page.eval(f"window.ridehailConsole.pixelAt({spot[0]}, {spot[1]})"))

        # found by plate, lower case
        await page.eval(f"""document.getElementById('acct-q').value = {json.dumps(plate.lower())};
            document.getElementById('acct-search').click(); true""")
        row = f"document.querySelector('#acct-list li[data-account=\"{drv['id']}\"]')"
        await page.until(f"{row} !== null", what="the driver found")
        assert await page.eval("document.querySelectorAll('#acct-list li').length") == 1
        await page.eval(f"{row}.click(); true")
        await page.until("document.getElementById('acct-toggle') !== null", what="the account's details")
        shots.append(OUT / "07-account.png")
        await page.screenshot(shots[-1])

        # disabled: the socket closes with the reason, the dot leaves the map
        await page.eval("document.getElementById('acct-toggle').click(); true")
        await asyncio.wait_for(app.ws.wait_closed(), 5)
        assert (app.ws.close_code, app.ws.close_reason) == (4003, "account disabled")
        await page.until(f"!{on_map}", what="the driver off the map")
        await page.until("document.getElementById('acct-said').textContent.startsWith('disabled')",
                         what="the console saying so")
        await asyncio.sleep(0.3)
        assert not is_green(await page.eval(f"window.ridehailConsole.pixelAt({spot[0]}, {spot[1]})"))
        assert d.get("/v1/me", headers=dh).status == 403
        assert d.get(f"/v1/admin/drivers/{drv['id']}", headers=d.admin).json()["disabled"] is True
        shots.append(OUT / "08-driver-disabled.png")
        await page.screenshot(shots[-1])

        # enabled again; the vehicle's colour edited in the form
        await page.eval("document.getElementById('acct-toggle').click(); true")
        await page.until("document.getElementById('acct-toggle').textContent === 'Disable'", what="enabled")
        await page.eval("""document.querySelector('#acct-edit input[name=color]').value = 'Teal';
            document.getElementById('acct-save').click(); true""")
        await page.until("document.getElementById('acct-said').textContent === 'saved'", what="the edit saved")
        got = d.get(f"/v1/admin/drivers/{drv['id']}", headers=d.admin).json()
        assert got["vehicle"]["color"] == "Teal" and got["vehicle"]["plate"] == plate and not got["disabled"], got

        # a reset link, opened as the driver would, sets a new password
        await page.eval("document.getElementById('acct-reset').click(); true")
        link = await page.until("document.getElementById('acct-link') && document.getElementById('acct-link').value",
                                what="the reset link")
        assert link.startswith(f"http://{d.host}:{d.port}/console#reset="), link
        # the driver's browser: no console session, a fresh load of the link
        await page.eval("sessionStorage.clear(); true")
        await page.navigate("about:blank")
        other = page
        await other.navigate(link)
        await other.until("!document.getElementById('reset').hidden", what="the reset page")
        await other.eval("""document.getElementById('reset-password').value = 'chosen-by-dora';
            document.getElementById('reset-again').value = 'chosen-by-dora';
            document.getElementById('reset-button').click(); true""")
        said = await other.until("document.getElementById('reset-said').textContent", what="the password set")
        assert said.startswith("Your password is set"), said
        shots.append(OUT / "09-reset-link.png")
        await other.screenshot(shots[-1])
        assert d.login("driver", drv["email"], "chosen-by-dora")

        errors = [c for c in page.console if c.startswith("exception")]
        assert not errors, errors
        await page.close()

    asyncio.run(go())
    for s in shots:
        assert s.stat().st_size > 10000, s
    print("\nconsole screenshots: " + ", ".join(str(s) for s in shots))
