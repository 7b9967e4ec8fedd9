"""Roads that match the street: `map calibrate` on the NYC taxi files and the
ranges routes and estimates carry with the profile (none without), and the
map tools' handling of bad input (import onto itself, unreadable extracts,
no configuration file, a point near a road the import dropped)."""
import subprocess

import pytest

from conftest import RIDEHAILD, ROOT, SHARED_DATA, problem

MIDTOWN = SHARED_DATA / "osm" / "nyc-midtown-2025.osm.pbf"
TRIPS = [SHARED_DATA / "trips" / "nyc-taxi-2016-statsmaths-10k.csv",
         SHARED_DATA / "trips" / "nyc-yellow-2015-01-head.csv"]

# A square of two-way streets 111 m a side, and 2 km away a street that joins
# nothing: the import keeps the square and drops the lone street.
SQUARE = """<?xml version="1.0"?>
<osm version="0.6">
 <node id="1" lat="0" lon="0"/> <node id="2" lat="0.001" lon="0"/>
 <node id="3" lat="0.001" lon="0.001"/> <node id="4" lat="0" lon="0.001"/>
 <node id="5" lat="0.02" lon="0.02"/> <node id="6" lat="0.021" lon="0.02"/>
 <way id="10"><nd ref="1"/><nd ref="2"/><nd ref="3"/><nd ref="4"/><nd ref="1"/><tag k="highway" v="residential"/></way>
 <way id="11"><nd ref="5"/><nd ref="6"/><tag k="highway" v="residential"/><tag k="oneway" v="yes"/></way>
</osm>
"""


def run(*args, cwd=ROOT):
    return subprocess.run([str(RIDEHAILD), *map(str, args)], capture_output=True, text=True, cwd=cwd)


@pytest.fixture
def square(tmp_path):
    p = tmp_path / "square.osm"
    p.write_text(SQUARE)
    return p


def test_import_onto_its_own_input_is_refused(tmp_path, square):
    before = square.read_bytes()
    r = run("map", "import", square, "-o", square)
    assert r.returncode == 2 and "is the extract itself" in r.stderr
    assert square.read_bytes() == before
    # through another name for the same file, too
    link = tmp_path / "link.osm"
    link.symlink_to(square)
    r = run("map", "import", square, "-o", link)
    assert r.returncode == 2 and square.read_bytes() == before


def test_map_tools_run_outside_the_repository(tmp_path, square):
    # no -c, run from elsewhere: the default configuration is found beside the binary
    r = run("map", "import", square, "-o", tmp_path / "sq.map", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "sq.map").exists()
    # a missing configuration says why (not "Success")
    r = run("-c", tmp_path / "none.conf", "map", "import", square, "-o", tmp_path / "x.map", cwd=tmp_path)
    assert r.returncode == 1
    assert "No such file or directory" in r.stderr and "Success" not in r.stderr


def test_unreadable_extracts_are_told_apart(tmp_path):
    (tmp_path / "dir.osm").mkdir()
    (tmp_path / "empty.osm.pbf").write_bytes(b"")
    (tmp_path / "text.osm").write_text("hello\n")
    (tmp_path / "cut.osm").write_text('<osm><node id="1" lat="0" lon="0"')
    (tmp_path / "notpbf.osm.pbf").write_bytes(b"\x00\x00\x00\x0dgarbage" * 10)
    cases = {"missing.osm.pbf": "No such file or directory", "dir.osm": "is a directory",
             "empty.osm.pbf": "empty", "text.osm": "not OpenStreetMap XML",
             "cut.osm": "not well-formed", "notpbf.osm.pbf": "not an OpenStreetMap PBF file"}
    if MIDTOWN.exists():
        (tmp_path / "trunc.osm.pbf").write_bytes(MIDTOWN.read_bytes()[:5000])
        cases["trunc.osm.pbf"] = "truncated or corrupt"
    seen = set()
    for name, want in cases.items():
        r = run("map", "import", tmp_path / name, "-o", tmp_path / "x.map")
        assert r.returncode == 1, (name, r.stderr)
        assert want in r.stderr, (name, r.stderr)
        seen.add(r.stderr.split(": ", 2)[-1])
    assert len(seen) == len(cases)
    assert not (tmp_path / "x.map").exists()


def test_point_near_a_dropped_road_is_told_so(make_daemon, tmp_path, square):
    r = run("map", "import", square, "-o", tmp_path / "sq.map")
    assert r.returncode == 0, r.stderr
    d = make_daemon(env={"RIDEHAIL_ROUTING_MAP": str(tmp_path / "sq.map")})
    # beside the lone street (dropped): not "more than 300 m from any road"
    body = problem(d.get("/v1/route?from_lat=0.0205&from_lng=0.0201&to_lat=0&to_lng=0.0005"), 422, "point-off-map")
    assert body["point"] == "from" and body["reason"] == "disconnected"
    assert "not connected" in body["detail"]
    # far from every road: as before
    body = problem(d.get("/v1/route?from_lat=0.05&from_lng=0.05&to_lat=0&to_lng=0.0005"), 422, "point-off-map")
    assert "reason" not in body and "more than" in body["detail"]
    # on the square: a route, and no range without a profile
    ok = d.get("/v1/route?from_lat=0&from_lng=0.0005&to_lat=0.001&to_lng=0.0005")
    assert ok.status == 200, ok
    assert "duration_low_s" not in ok.json()["properties"]


@pytest.fixture(scope="module")
def midtown_maps(tmp_path_factory):
    if not MIDTOWN.exists() or not all(t.exists() for t in TRIPS):
        pytest.skip(f"{MIDTOWN} or the taxi trips are absent: calibration end-to-end tests skipped")
    d = tmp_path_factory.mktemp("midtown")
    r = run("map", "import", MIDTOWN, "-o", d / "free.map")
    assert r.returncode == 0, r.stderr
    assert "turn restrictions honoured" in r.stdout
    args = ["map", "calibrate", d / "free.map", "-o", d / "cal.map", "--tz", "America/New_York"]
    for t in TRIPS:
        args += ["--trips", t]
    r = run(*args)
    assert r.returncode == 0, r.stderr
    figures = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line and " " not in line.split("=")[0])
    return d / "free.map", d / "cal.map", figures


def test_calibration_beats_free_flow_on_held_out_trips(midtown_maps):
    _, _, f = midtown_maps
    assert int(f["trips_held"]) >= 300 and int(f["trips_fit"]) >= 1200
    assert float(f["eta_mape_freeflow_pct"]) > 50        # the free-flow router is far off real trips
    assert float(f["eta_mape_pct"]) <= 25                # the calibrated one is not
    assert 70 <= float(f["eta_range_cover_pct"]) <= 90   # a p10-p90 range holds about 80%
    assert float(f["range_lo"]) < 1 < float(f["range_hi"])


def test_calibrated_routes_and_estimates_carry_ranges(make_daemon, midtown_maps):
    free, cal, _ = midtown_maps
    q = "from_lat=40.7484&from_lng=-73.9857&to_lat=40.7527&to_lng=-73.9772"
    plain = make_daemon(env={"RIDEHAIL_ROUTING_MAP": str(free)})
    p = plain.get("/v1/route?" + q).json()["properties"]
    assert "duration_low_s" not in p and "duration_high_s" not in p
    e = plain.get("/v1/estimate?pickup_lat=40.7484&pickup_lng=-73.9857&dropoff_lat=40.7527&dropoff_lng=-73.9772")
    assert e.status == 200 and "duration_low_s" not in e.json()
    d = make_daemon(env={"RIDEHAIL_ROUTING_MAP": str(cal)})
    c = d.get("/v1/route?" + q).json()["properties"]
    assert c["duration_low_s"] < c["duration_s"] < c["duration_high_s"]
    assert c["duration_s"] > 1.5 * p["duration_s"]       # real Midtown traffic, not free flow
    assert abs(c["distance_m"] - p["distance_m"]) < 0.3 * p["distance_m"]
    e = d.get("/v1/estimate?pickup_lat=40.7484&pickup_lng=-73.9857&dropoff_lat=40.7527&dropoff_lng=-73.9772")
    assert e.status == 200, e
    e = e.json()
    assert e["duration_low_s"] <= e["duration_s"] <= e["duration_high_s"]
    assert e["duration_s"] > 1.5 * p["duration_s"]
    assert e["fare"]["time"] == (30 * e["duration_s"] + 30) // 60
