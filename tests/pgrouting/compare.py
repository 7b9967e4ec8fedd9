"""Our shortest distances against pgRouting's pgr_dijkstra on the same
extract: random pairs of pgRouting vertices (road junctions and way ends),
routed by ridehaild (GET /v1/route with routing.metric = distance) and by
pgr_dijkstra over tests/pgrouting/edges.sql.

  compare.py --db postgres://... --route http://127.0.0.1:8080 --pairs 1000 [--seed N]

Prints name=value lines; used by tests/e2e/test_pgrouting.py and
bench/roads.sh. The database must hold an osm2pgrouting import made with
--addnodes --tags and mapconfig_for_cars.xml."""
import argparse
import json
import random
import statistics
import time
import urllib.request
from pathlib import Path

EDGES_SQL = "\n".join(l for l in (Path(__file__).parent / "edges.sql").read_text().splitlines()
                      if not l.startswith("--"))


def ours(route, lat1, lon1, lat2, lon2):
    url = f"{route}/v1/route?from_lat={lat1}&from_lng={lon1}&to_lat={lat2}&to_lng={lon2}"
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.load(r)["properties"]
    except urllib.error.HTTPError:
        return None


def compare(conn, route, pairs, seed, fixed=()):
    """pairs random vertex pairs (seeded), after the pairs in fixed, given
    as OSM node ids (pairs that once disagreed), which count among them."""
    rnd = random.Random(seed)
    cur = conn.cursor()
    cur.execute(f"""SELECT v.id, ST_Y(v.the_geom), ST_X(v.the_geom), v.osm_id FROM ways_vertices_pgr v
                    WHERE v.id IN (SELECT source FROM ({EDGES_SQL}) e UNION SELECT target FROM ({EDGES_SQL}) e)
                    ORDER BY v.id""")
    verts = cur.fetchall()
    by_osm = {v[3]: v for v in verts}
    todo = [(by_osm[a], by_osm[b]) for a, b in fixed]
    out = {"pairs": 0, "diffs": [], "worst": None, "pgr_us": [], "only_ours": 0, "only_pgr": 0}
    tries = 0
    while out["pairs"] < pairs and tries < pairs * 5:
        tries += 1
        a, b = todo.pop(0) if todo else (rnd.choice(verts), rnd.choice(verts))
        if a[0] == b[0]:
            continue
        mine = ours(route, a[1], a[2], b[1], b[2])
        if mine is not None and (mine["from_snap_m"] > 0.5 or mine["to_snap_m"] > 0.5):
            continue  # a vertex we dropped (outside the kept component): not comparable
        t0 = time.perf_counter()
        cur.execute("SELECT max(agg_cost) FROM pgr_dijkstra(%s, %s, %s, directed => true)", (EDGES_SQL, a[0], b[0]))
        theirs = cur.fetchone()[0]
        out["pgr_us"].append((time.perf_counter() - t0) * 1e6)
        if mine is None or theirs is None:
            if mine is None and theirs is not None:
                out["only_pgr"] += 1
            elif mine is not None:
                out["only_ours"] += 1
            continue
        out["pairs"] += 1
        # our answer is given to 0.1 m
        diff = max(abs(mine["distance_m"] - theirs) - 0.05, 0.0) / max(theirs, 1.0) * 100
        out["diffs"].append(diff)
        if out["worst"] is None or diff > out["worst"][0]:
            out["worst"] = (diff, a, b, mine["distance_m"], theirs)
    return out


def main():
    import psycopg2
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True)
    ap.add_argument("--route", required=True)
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    args = ap.parse_args()
    conn = psycopg2.connect(args.db)
    r = compare(conn, args.route, args.pairs, args.seed)
    print(f"pgrouting_seed={args.seed}")
    print(f"pgrouting_pairs={r['pairs']}")
    print(f"pgrouting_max_diff_pct={max(r['diffs']) if r['diffs'] else 0:.4f}")
    print(f"pgrouting_only_ours={r['only_ours']}")
    print(f"pgrouting_only_pgr={r['only_pgr']}")
    print(f"pgrouting_p50_us={statistics.median(r['pgr_us']):.0f}")
    if r["worst"]:
        print(f"pgrouting_worst={r['worst']}")


if __name__ == "__main__":
    main()
