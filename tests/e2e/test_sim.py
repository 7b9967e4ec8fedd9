"""The simulator end to end: bin/ridehail-sim runs a short simulated city
against the real daemon (and its real database) and must finish with zero
protocol errors, sane counts, the report files, and trips in the database
that agree with its report. A daemon that rate-limits the simulated pings
must make it fail."""
import json
import subprocess

import pytest

from conftest import ADMIN_TOKEN, BINDIR, RIDEHAILD, ROOT, SHARED_DATA

SIM = BINDIR / "ridehail-sim"
WEST_OAKLAND = SHARED_DATA / "osm" / "west-oakland.osm.bz2"
MIDTOWN = SHARED_DATA / "osm" / "nyc-midtown-2025.osm.pbf"
UBER = SHARED_DATA / "trips" / "uber-nyc-pickups-apr14-first65k.csv"
TAXI = SHARED_DATA / "trips" / "nyc-taxi-2016-statsmaths-10k.csv"

# A small box in West Oakland (straight-line driving when no map is given).
BOX = "-122.3050,37.8060,-122.2930,37.8170"

FAST_DAEMON = {
    # the simulated clock runs 12x: pings report 12x the speed driven
    "RIDEHAIL_MATCH_METER_MAX_SPEED": "1000",
    "RIDEHAIL_LOG_LEVEL": "info",
}


def run_sim(daemon, out, *args, timeout=240):
    cmd = [str(SIM), "--addr", f"{daemon.host}:{daemon.port}", "--admin-token", ADMIN_TOKEN, "--out", str(out),
           "--quiet"] + [str(a) for a in args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    summary = None
    if (out / "summary.json").exists():
        summary = json.loads((out / "summary.json").read_text())
    return r, summary


def import_map(src, out):
    r = subprocess.run([RIDEHAILD, "-c", str(ROOT / "conf" / "ridehaild.conf"), "map", "import", str(src),
                        "-o", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return out


def check_sane(r, s, planned_min=1):
    assert s is not None, r.stderr
    assert r.returncode == 0, f"sim exited {r.returncode}:\n{r.stderr[-4000:]}"
    assert s["protocol_errors"] == 0 and s["invariant_breaches"] == 0, s
    assert s["requests"] >= planned_min, s
    assert s["requests"] == (s["no_quote"] + s["refused"] + s["no_rider"] + s["completed"] + s["cancelled"]
                             + s["pending_at_end"] + s["declined"]), s
    assert s["created"] >= 1 and s["matched"] >= 1 and s["completed"] >= 1, s
    assert s["matched"] <= s["created"] and s["completed"] <= s["matched"], s
    assert abs(s["accepts"] - s["matched"]) <= 1, s  # each assignment is the rider's match (one may be in flight at the end)
    assert s["offers"] >= s["matched"], s
    assert 0 < s["driver_utilisation"] <= 1, s
    assert s["trip_km"] > 0 and s["deadhead_km"] >= 0, s
    assert s["time_to_match_s"]["p50"] <= s["time_to_match_s"]["p95"] <= s["time_to_match_s"]["p99"], s
    assert s["trip_time_s"]["p50"] > 0, s


def db_trips(pg, daemon):
    rows = pg.query(daemon.db, "SELECT state, count(*) FROM trips GROUP BY state")
    return {state: n for state, n in rows}


def test_sim_small_city_straight_lines(make_daemon, pg, tmp_path):
    d = make_daemon(env=FAST_DAEMON)
    out = tmp_path / "sim"
    r, s = run_sim(d, out, "--bbox", BOX, "--drivers", 8, "--riders", 16, "--duration", 240, "--drain", 180,
                   "--speed", 12, "--seed", 3, "--demand", "hotspots", "--rate", 180, "--hotspots", 2,
                   "--patience", 600, "--kmh", 30, "--cruise")
    check_sane(r, s, planned_min=5)
    assert s["run"]["map"] is False
    for f in ("summary.json", "timeseries.csv", "trips.csv", "positions.csv", "plots.gp"):
        assert (out / f).exists(), f
    lines = (out / "timeseries.csv").read_text().splitlines()
    assert lines[0].startswith("t_s,requests,created,matched")
    assert len(lines) >= 10
    assert sum(int(l.split(",")[1]) for l in lines[1:]) == s["requests"]
    trips = (out / "trips.csv").read_text().splitlines()
    assert len(trips) == s["requests"] + 1
    # the daemon's own record agrees with the report
    states = db_trips(pg, d)
    assert sum(states.values()) == s["created"], (states, s)
    assert s["completed"] <= states.get("COMPLETED", 0) <= s["completed"] + 8, (states, s)
    assert states.get("CANCELLED", 0) >= s["cancelled"], (states, s)
    # both sides rated every completed trip (the last ratings may be in flight at the end)
    ratings = pg.query(d.db, "SELECT count(*) FROM trip_ratings")[0][0]
    assert ratings >= 2 * s["completed"] - 4, (ratings, s)


def test_sim_fails_on_protocol_errors(make_daemon, tmp_path):
    """Pings above the daemon's limit are rejected (rate_limited): the
    simulator must count them and exit non-zero."""
    d = make_daemon(env=dict(FAST_DAEMON, RIDEHAIL_PRESENCE_MAX_PINGS_PER_S="0.1"))
    out = tmp_path / "sim"
    r, s = run_sim(d, out, "--bbox", BOX, "--drivers", 2, "--riders", 2, "--duration", 40, "--speed", 4,
                   "--ping", 1, "--ping-jitter", 0, "--rate", 0)
    assert r.returncode == 1, r
    assert s["protocol_errors"] > 0, s
    assert "rate_limited" in r.stderr


@pytest.mark.skipif(not (MIDTOWN.exists() and UBER.exists()),
                    reason=f"{MIDTOWN} or {UBER} is absent: the Midtown replay end-to-end test skipped")
def test_sim_midtown_replay(make_daemon, pg, tmp_path):
    m = import_map(MIDTOWN, tmp_path / "midtown.map")
    d = make_daemon(env=dict(FAST_DAEMON, RIDEHAIL_ROUTING_MAP=str(m)))
    out = tmp_path / "sim"
    extra = ["--od", TAXI] if TAXI.exists() else []
    # the first 15 minutes of the busiest hour in 6 simulated minutes, at 12x
    r, s = run_sim(d, out, "--map", m, "--bbox", "-74.0140,40.7360,-73.9630,40.7590", "--margin", 250,
                   "--demand", "replay", "--csv", UBER, "--start", "2014-04-30 18:00:00", "--window", 900,
                   "--compress", 2.5, "--duration", 360, "--drain", 240, "--speed", 12, "--drivers", 15, "--riders", 30,
                   "--seed", 5, "--patience", 900, *extra)
    check_sane(r, s, planned_min=10)
    assert s["run"]["map"] is True and s["run"]["straight_line_fallbacks"] <= 2, s
    assert s["no_quote"] == 0, s   # snapped inside the box: every pickup is on the map
    states = db_trips(pg, d)
    assert sum(states.values()) == s["created"], (states, s)


def test_sim_plan_is_deterministic(tmp_path):
    """--seed fixes the demand: the same seed plans the same requests, another seed others."""
    def plan(seed, name):
        out = tmp_path / name
        r = subprocess.run([str(SIM), "--dry-run", "--quiet", "--bbox", BOX, "--demand", "hotspots", "--rate", "600",
                            "--duration", "600", "--demand-mult", "3", "--seed", str(seed), "--out", str(out)],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return (out / "demand.csv").read_text()
    a, b, c = plan(7, "a"), plan(7, "b"), plan(8, "c")
    assert a == b
    assert a != c
    rows = a.splitlines()[1:]
    assert 200 < len(rows) < 400  # Poisson(100) x 3
    times = [float(r.split(",")[0]) for r in rows]
    assert times == sorted(times) and 0 <= times[0] and times[-1] < 700


def test_sim_surge_price_sensitive_riders_and_drifting_drivers(make_daemon, pg, tmp_path):
    """Few drivers for much demand, surge recomputed every second: quotes
    carry multipliers above 1, price-sensitive riders walk away from some
    (declined: nothing is requested for them), idle drivers drift towards
    the surging cells, and the report has the surge over time and per cell."""
    d = make_daemon(env=dict(FAST_DAEMON, RIDEHAIL_SURGE_INTERVAL="1s", RIDEHAIL_SURGE_WINDOW="30s",
                             RIDEHAIL_SURGE_MIN_DWELL="0s", RIDEHAIL_SURGE_QUOTE_TTL="5s"))
    out = tmp_path / "sim"
    r, s = run_sim(d, out, "--bbox", BOX, "--drivers", 3, "--riders", 40, "--duration", 240, "--drain", 60,
                   "--speed", 8, "--seed", 4, "--demand", "hotspots", "--rate", 900, "--hotspots", 1,
                   "--hotspot-sigma", 150, "--patience", 300, "--kmh", 30, "--interval", 10,
                   "--price-sensitive", "0.5", "--max-surge", "1.0,1.4", "--surge-drift", "6", "--drift-radius", "5000",
                   "--drift-gain", "0.01")
    check_sane(r, s, planned_min=20)
    g = s["surge"]
    assert g["quotes"] >= 20 and g["quotes_surged"] >= 1 and g["max_multiplier"] > 1.0, g
    assert 1 <= s["declined"] == g["declined"] <= g["quotes_surged"], (s["declined"], g)
    # nobody requested a ride after walking away: the database has no more trips than were created
    assert sum(db_trips(pg, d).values()) == s["created"]
    lines = (out / "surge.csv").read_text().splitlines()
    assert lines[0] == "t_s,cells,surged_cells,max_multiplier,mean_multiplier,quotes,quotes_surged,declined"
    assert len(lines) >= 10 and max(float(x.split(",")[3]) for x in lines[1:]) > 1.0
    cells = (out / "surge_cells.csv").read_text().splitlines()
    assert cells[0] == "t_s,cell,lat,lon,multiplier,demand,supply" and len(cells) > 1
    assert (out / "surge.gp").exists() and (out / "surge_hex.csv").exists()
    assert "declined" in (out / "trips.csv").read_text()
