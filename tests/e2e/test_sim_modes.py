"""The simulator's modes end to end, each against the real daemon and its
database: drivers following the daemon's reposition suggestions at the
configured rate, the same seed run greedy and batch side by side
(bench/sim_compare.py), and shared rides booked through the share API with
the drivers working their stop lists rider by rider."""
import csv
import math
import re
import subprocess
import sys

from conftest import ROOT
from test_sim import FAST_DAEMON, check_sane, run_sim

# 3 x 3 km of Oakland, straight-line driving (no map): room for several
# reposition cells of 500 m.
BIG_BOX = "-122.3100,37.7950,-122.2760,37.8220"


def metric(d, name):
    for line in d.get("/metrics").body.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_sim_follows_reposition_suggestions_at_the_configured_rate(make_daemon, tmp_path):
    # a plan every wall second (6 simulated s at --speed 6); demand on one hot
    # spot, drivers spread over the box: the cells without demand have drivers
    # to give
    d = make_daemon(env=dict(FAST_DAEMON, RIDEHAIL_MATCH_REPOSITION="true", RIDEHAIL_MATCH_REPOSITION_INTERVAL="1s"))
    out = tmp_path / "sim"
    p = 0.5
    r, s = run_sim(d, out, "--bbox", BIG_BOX, "--drivers", 16, "--riders", 30, "--duration", 300, "--drain", 120,
                   "--speed", 6, "--seed", 7, "--demand", "hotspots", "--rate", 240, "--hotspots", 1,
                   "--hotspot-sigma", 250, "--patience", 900, "--kmh", 30, "--follow-suggestions", p)
    check_sane(r, s, planned_min=10)
    rep = s["reposition"]
    sent = metric(d, "ridehail_match_reposition_suggestions_total")
    # the suggestions counted came from the daemon's plans
    assert 20 <= rep["suggestions"] <= sent, (rep, sent)
    n = rep["suggestions_idle"]
    assert n >= 20 and n <= rep["suggestions"], rep
    # followed at the configured rate: within 3 standard deviations of n draws
    tol = 3 * math.sqrt(p * (1 - p) / n)
    assert abs(rep["followed"] / n - p) <= tol, (rep, tol)
    assert abs(rep["followed_pct"] - 100.0 * rep["followed"] / n) < 0.01, rep
    # the drives to suggested cells were made, and counted apart
    assert s["reposition_km"] > 0, s
    assert abs(s["deadhead_km_per_trip"] - (s["deadhead_km"] + s["reposition_km"]) / s["completed"]) < 0.01, s


def test_sim_never_follows_with_probability_zero(make_daemon, tmp_path):
    d = make_daemon(env=dict(FAST_DAEMON, RIDEHAIL_MATCH_REPOSITION="true", RIDEHAIL_MATCH_REPOSITION_INTERVAL="1s"))
    out = tmp_path / "sim"
    r, s = run_sim(d, out, "--bbox", BIG_BOX, "--drivers", 10, "--riders", 20, "--duration", 180, "--drain", 240,
                   "--speed", 6, "--seed", 7, "--demand", "hotspots", "--rate", 240, "--hotspots", 1,
                   "--hotspot-sigma", 250, "--patience", 900, "--kmh", 30)
    check_sane(r, s, planned_min=5)
    assert s["reposition"]["suggestions_idle"] >= 5, s["reposition"]
    assert s["reposition"]["followed"] == 0 and s["reposition_km"] == 0, s


def test_sim_same_seed_greedy_and_batch_side_by_side(make_daemon, tmp_path):
    args = ["--bbox", BIG_BOX, "--drivers", 10, "--riders", 20, "--duration", 180, "--drain", 120, "--speed", 6,
            "--seed", 11, "--demand", "hotspots", "--rate", 300, "--hotspots", 2, "--patience", 900, "--kmh", 30]
    summaries = {}
    for mode in ("greedy", "batch"):
        d = make_daemon(env=dict(FAST_DAEMON, RIDEHAIL_MATCH_MODE=mode))
        r, s = run_sim(d, tmp_path / mode, *args)
        check_sane(r, s, planned_min=5)
        summaries[mode] = s
        d.stop()
    # the same demand, request by request, for both
    assert (tmp_path / "greedy" / "demand.csv").read_text() == (tmp_path / "batch" / "demand.csv").read_text()
    assert summaries["greedy"]["requests"] == summaries["batch"]["requests"]
    table = tmp_path / "table.txt"
    c = subprocess.run([sys.executable, str(ROOT / "bench" / "sim_compare.py"), "--table", str(table),
                        "--gain", "batch_wait_gain_pct=pickup_wait_mean_s:greedy,batch",
                        f"greedy={tmp_path / 'greedy' / 'summary.json'}",
                        f"batch={tmp_path / 'batch' / 'summary.json'}"], capture_output=True, text=True)
    assert c.returncode == 0, c.stderr
    figs = dict(l.split("=", 1) for l in c.stdout.splitlines())
    for name in ("pickup_wait_mean_s", "match_time_p95_s", "completed_pct", "deadhead_km_per_trip"):
        for mode in ("greedy", "batch"):
            assert f"{name}_{mode}" in figs, (name, mode, c.stdout)
    g, b = (summaries[m]["pickup_wait_s"]["mean"] for m in ("greedy", "batch"))
    assert g > 0 and b > 0
    assert abs(float(figs["batch_wait_gain_pct"]) - 100.0 * (g - b) / g) < 0.1, (figs, g, b)
    assert abs(float(figs["completed_pct_batch"]) - 100.0 * summaries["batch"]["completed"]
               / summaries["batch"]["requests"]) < 0.1
    lines = table.read_text().splitlines()
    assert re.split(r"\s+", lines[0].strip()) == ["figure", "greedy", "batch"], lines


def legs_of(out):
    with open(out / "share_legs.csv") as f:
        return list(csv.DictReader(f))


def test_sim_shared_riders_follow_the_stop_lists(make_daemon, pg, tmp_path):
    # a lenient detour bound, so that cars do take several riders at once
    # with one hot spot of pickups and dropoffs anywhere in the box
    d = make_daemon(env=dict(FAST_DAEMON, RIDEHAIL_SHARE_MAX_DETOUR="1.5", RIDEHAIL_SHARE_MAX_WAIT="20m"))
    out = tmp_path / "sim"
    r, s = run_sim(d, out, "--bbox", BIG_BOX, "--drivers", 5, "--riders", 30, "--duration", 240, "--drain", 900,
                   "--speed", 6, "--seed", 5, "--demand", "hotspots", "--rate", 360, "--hotspots", 1,
                   "--hotspot-sigma", 200, "--patience", 900, "--kmh", 30, "--share-fraction", 0.6)
    assert s is not None, r.stderr
    assert r.returncode == 0, f"sim exited {r.returncode}:\n{r.stderr[-4000:]}"
    assert s["protocol_errors"] == 0 and s["invariant_breaches"] == 0, s
    sh = s["share"]
    # about 60 % of the requests booked shared (the draw is per request)
    assert s["requests"] >= 15, s
    assert 0.3 * s["requests"] <= sh["booked"] <= 0.9 * s["requests"], (sh, s["requests"])
    assert sh["dropped_off"] >= 5 and sh["dropped_off"] <= sh["confirmed"] <= sh["booked"], sh
    # solo rides went on beside them
    assert s["completed"] > sh["dropped_off"], s
    legs = legs_of(out)
    by_booking, by_trip = {}, {}
    for row in legs:
        by_booking.setdefault(row["booking"], []).append(row)
        by_trip.setdefault(row["trip"], set()).add(row["booking"])
        # each leg was for the first stop of the list the driver held
        assert row["stop_index"] == "0", row
        assert row["action"] in ("arrived", "picked_up", "dropped_off"), row
    # every rider: arrived, picked up, dropped off, in that order, at their
    # own stops, by one driver on one trip
    done = set()
    for b, rows in by_booking.items():
        actions = [x["action"] for x in rows]
        dedup = [a for i, a in enumerate(actions) if i == 0 or a != actions[i - 1]]  # a leg sent again
        assert dedup in (["arrived"], ["arrived", "picked_up"], ["arrived", "picked_up", "dropped_off"]), (b, rows)
        assert [x["stop"] for x in rows if x["action"] != "dropped_off"] == ["pickup"] * (len(rows) - actions.count("dropped_off"))
        assert all(x["stop"] == "dropoff" for x in rows if x["action"] == "dropped_off"), rows
        assert len({x["driver"] for x in rows}) == 1 and len({x["trip"] for x in rows}) == 1, rows
        if dedup[-1] == "dropped_off":
            done.add(b)
    assert len(done) == sh["dropped_off"], (len(done), sh)
    # some cars carried several riders, their legs interleaved along the list
    pooled = [t for t, bs in by_trip.items() if len(bs) >= 2]
    assert pooled, by_trip
    assert sh["trips"] >= len(by_trip) and sh["riders_per_trip"] > 1, (sh, by_trip)
    # the daemon's record agrees: each of them dropped off, with its times in order
    rows = pg.query(d.db, "SELECT id::text, state, picked_up_at, dropped_off_at FROM share_bookings"
                          " WHERE state = 'dropped_off'")
    assert {x[0] for x in rows} == done, (rows, done)
    for _, _, up, off in rows:
        assert up is not None and off is not None and up < off
    # no shared trip left open with a driver after the last drop-off of each
    open_trips = pg.query(d.db, "SELECT count(*) FROM share_trips WHERE state <> 'FINISHED'"
                                " AND NOT EXISTS (SELECT 1 FROM share_bookings b WHERE b.trip_id = share_trips.id"
                                " AND b.state IN ('confirmed', 'arrived', 'picked_up'))")[0][0]
    assert open_trips == 0
