"""Roads end to end: `ridehaild map import`, the daemon loading the map, and
GET /v1/route on Monaco (../shared/data; skipped with a message when absent)."""
import json
import subprocess

import pytest

from conftest import RIDEHAILD, ROOT, SHARED_DATA, problem

MONACO = SHARED_DATA / "osm" / "monaco-graphhopper-2012.osm.gz"

needs_monaco = pytest.mark.skipif(not MONACO.exists(),
                                  reason=f"{MONACO} is absent: routing end-to-end tests skipped")


def import_map(src, out):
    r = subprocess.run([RIDEHAILD, "-c", str(ROOT / "conf" / "ridehaild.conf"), "map", "import", str(src),
                        "-o", str(out)], capture_output=True, text=True, cwd=ROOT)
    return r


@pytest.fixture(scope="module")
def monaco_map(tmp_path_factory):
    if not MONACO.exists():
        pytest.skip(f"{MONACO} is absent: routing end-to-end tests skipped")
    out = tmp_path_factory.mktemp("map") / "monaco.map"
    r = import_map(MONACO, out)
    assert r.returncode == 0, r.stderr
    assert "nodes" in r.stdout
    return out


@needs_monaco
def test_route_geojson(make_daemon, monaco_map):
    d = make_daemon(env={"RIDEHAIL_ROUTING_MAP": str(monaco_map)})
    assert "routing: map" in d.log()
    r = d.get("/v1/route?from_lat=43.727687&from_lng=7.418737&to_lat=43.74958&to_lng=7.436566")
    assert r.status == 200, r
    assert r.headers["content-type"] == "application/geo+json"
    f = r.json()
    assert f["type"] == "Feature"
    assert f["geometry"]["type"] == "LineString"
    coords = f["geometry"]["coordinates"]
    assert len(coords) >= 2
    lng, lat = coords[0]
    assert abs(lat - 43.727687) < 0.001 and abs(lng - 7.418737) < 0.001  # [lng, lat] order
    p = f["properties"]
    assert 3000 < p["distance_m"] < 6000
    assert p["duration_s"] > 60
    # one-way pair: there and back differ
    a = d.get("/v1/route?from_lat=43.729445&from_lng=7.415063&to_lat=43.728856&to_lng=7.41472").json()
    b = d.get("/v1/route?from_lat=43.728856&from_lng=7.41472&to_lat=43.729445&to_lng=7.415063").json()
    assert a["properties"]["distance_m"] != b["properties"]["distance_m"]
    metrics = d.get("/metrics").body.decode()
    assert 'ridehail_routing_queries_total{result="ok"} 3' in metrics


@needs_monaco
def test_route_errors(make_daemon, monaco_map):
    d = make_daemon(env={"RIDEHAIL_ROUTING_MAP": str(monaco_map)})
    body = problem(d.get("/v1/route?from_lat=43.7307&from_lng=7.4213&to_lat=48.85&to_lng=2.35"), 422,
                   "point-off-map")
    assert body["point"] == "to"
    body = problem(d.get("/v1/route?from_lat=0&from_lng=0&to_lat=43.7307&to_lng=7.4213"), 422, "point-off-map")
    assert body["point"] == "from"
    body = problem(d.get("/v1/route?from_lat=43.7307&from_lng=7.4213&to_lat=43.73"), 400, "validation-failed")
    assert body["field"] == "to_lng"
    body = problem(d.get("/v1/route?from_lat=91&from_lng=7.4213&to_lat=43.73&to_lng=7.42"), 400,
                   "validation-failed")
    assert body["field"] == "from_lat"
    problem(d.get("/v1/route?from_lat=x&from_lng=7.4213&to_lat=43.73&to_lng=7.42"), 400, "validation-failed")
    # numbers as JSON spells them: no hexadecimal, no leading spaces
    for bad in ("0x2B", "%2043.73", "43.", "inf"):
        body = problem(d.get(f"/v1/route?from_lat=43.7307&from_lng=7.4213&to_lat={bad}&to_lng=7.42"), 400,
                       "validation-failed")
        assert (body["field"], body["rule"]) == ("to_lat", "type")


def test_route_without_map(daemon):
    problem(daemon.get("/v1/route?from_lat=1&from_lng=1&to_lat=1&to_lng=1"), 503, "unavailable")


@needs_monaco
def test_damaged_map_stops_the_daemon(make_daemon, monaco_map, tmp_path):
    data = monaco_map.read_bytes()
    for name, body in (("truncated", data[: len(data) // 2]), ("corrupt", data[:-10] + b"x" * 10)):
        bad = tmp_path / f"{name}.map"
        bad.write_bytes(body)
        with pytest.raises(AssertionError) as e:
            make_daemon(env={"RIDEHAIL_ROUTING_MAP": str(bad)})
        assert name in str(e.value)


def test_import_refuses_bad_input(tmp_path):
    bad = tmp_path / "bad.osm.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00garbage")
    r = import_map(bad, tmp_path / "x.map")
    assert r.returncode == 1 and "map import" in r.stderr
    assert not (tmp_path / "x.map").exists()
    r = import_map(tmp_path / "missing.osm.pbf", tmp_path / "x.map")
    assert r.returncode == 1
    r = subprocess.run([RIDEHAILD, "map", "import"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "usage" in r.stderr


@needs_monaco
def test_estimates_and_rides_use_the_road_graph(make_daemon, monaco_map, pg):
    d = make_daemon(env={"RIDEHAIL_ROUTING_MAP": str(monaco_map), "RIDEHAIL_MATCH_AUTO": "false"})
    q = "pickup_lat=43.727687&pickup_lng=7.418737&dropoff_lat=43.74958&dropoff_lng=7.436566"
    e = d.get("/v1/estimate?" + q)
    assert e.status == 200, e
    e = e.json()
    route = d.get("/v1/route?from_lat=43.727687&from_lng=7.418737&to_lat=43.74958&to_lng=7.436566").json()
    assert e["method"] == "road"
    assert e["distance_m"] == round(route["properties"]["distance_m"])
    assert e["duration_s"] == round(route["properties"]["duration_s"])
    f = e["fare"]
    assert f["distance"] == (156 * e["distance_m"] + 500) // 1000 and f["time"] == (30 * e["duration_s"] + 30) // 60
    # off the map: the point is named, nothing is written
    body = problem(d.get("/v1/estimate?pickup_lat=43.7307&pickup_lng=7.4213&dropoff_lat=48.85&dropoff_lng=2.35"),
                   422, "point-off-map")
    assert body["field"] == "dropoff"
    rider, rh = d.rider_session()
    body = problem(d.post("/v1/rides", {"pickup": {"lat": 0.5, "lng": 0.5}, "dropoff": {"lat": 43.7307, "lng": 7.4213}},
                          headers=rh), 422, "point-off-map")
    assert body["field"] == "pickup"
    r = d.post("/v1/rides", {"pickup": {"lat": 43.727687, "lng": 7.418737},
                             "dropoff": {"lat": 43.74958, "lng": 7.436566}, "quote_id": e["quote_id"]}, headers=rh)
    assert r.status == 201, r
    t = r.json()
    assert t["estimate"] == {"distance_m": e["distance_m"], "duration_s": e["duration_s"], "method": "road"}
    assert pg.query(d.db, "SELECT count(*) FROM trips")[0][0] == 1


@needs_monaco
def test_dispatch_ranks_by_road_eta(make_daemon, monaco_map):
    """Two drivers near a pickup: the offer goes to the one quicker by road
    (GET /v1/route says which), with its road ETA as pickup_eta_s."""
    import asyncio  # noqa: F401 (the websockets client runs on asyncio)
    from test_presence import token_of
    from wsapp import Driver, App, run
    d = make_daemon(env={"RIDEHAIL_ROUTING_MAP": str(monaco_map)})
    pickup = (43.7307, 7.4213)

    async def go():
        apps = []
        for at in ((43.7350, 7.4240), (43.7290, 7.4180)):
            drv, hdr = d.driver_session()
            app = await Driver.connect(d, token_of(hdr), drv["id"])
            await app.recv("driver.status.changed")
            await app.ping(*at, accuracy_m=5)
            await app.go("available")
            apps.append(app)
        etas = []
        for at in ((43.7350, 7.4240), (43.7290, 7.4180)):
            r = d.get(f"/v1/route?from_lat={at[0]}&from_lng={at[1]}&to_lat={pickup[0]}&to_lng={pickup[1]}").json()
            etas.append(r["properties"]["duration_s"])
        best = 0 if etas[0] <= etas[1] else 1
        rider, rh = d.rider_session()
        r = d.post("/v1/rides", {"pickup": {"lat": pickup[0], "lng": pickup[1]},
                                 "dropoff": {"lat": 43.74958, "lng": 7.436566}}, headers=rh)
        assert r.status == 201, r
        offer = (await apps[best].recv("ride.offer", timeout=5))["payload"]
        assert abs(offer["pickup_eta_s"] - etas[best]) <= 1, (offer, etas)
        for a in apps:
            await a.close()
    run(go())
