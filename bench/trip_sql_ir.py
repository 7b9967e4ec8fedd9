#!/usr/bin/env python3
"""The inputs of bench/trip_sql_ir.sh (see there).

  trip_sql_ir.py prepare DATABASE_URL DIR
      fills a migrated, empty database: riders, available drivers, SEARCHING
      trips (made by trip_requests() itself), trips already matched and moved
      on for the other steps (by trip_transitions()), and the peer's two
      tables; writes
      DIR/<case>.<n>.sql for every case, n = 0 (the warm-up batch alone) and
      n = BATCHES[case] (the warm-up, then the measured batches)

A case's file has one statement per line, each its own transaction, as a
single-user backend reads them. Every measured batch names trips, riders and
drivers of its own, so each one does the full work (no repeats); the files
of one case share their warm-up batch, so their difference is the measured
batches alone.
"""
import json
import sys

import psycopg2

# case: (kind, batch size, measured batches)
# steps: the transitions after MATCHED, a quarter each in every batch: ARRIVED,
# IN_PROGRESS, COMPLETED (metered as estimated) and CANCELLED by the rider
CASES = {"request_b32": ("request", 32, 3), "match_b32": ("match", 32, 3), "steps_b32": ("steps", 32, 3),
         "request_b1": ("request", 1, 8), "match_b1": ("match", 1, 8), "peer": ("peer", 1, 16)}
# what each of the four kinds of step asks, and the states its trip is
# moved through beforehand (after MATCHED)
STEPS = [("ARRIVED", "driver", {}, []),
         ("IN_PROGRESS", "driver", {}, ["ARRIVED"]),
         ("COMPLETED", "driver", {"distance_m": 6000, "duration_s": 700}, ["ARRIVED", "IN_PROGRESS"]),
         ("CANCELLED", "rider", {"reason": "changed_mind"}, [])]
FARE = {"total": 1234, "base": 300, "distance": 600, "time": 234, "booking_fee": 100, "minimum": 500,
        "surge_multiplier": 1, "per_km": 100, "per_min": 20, "distance_m": 6000, "duration_s": 700,
        "method": "straight_line"}
POLICY = {"cancel_grace_s": 120, "cancel_fee": 500, "no_show_wait_s": 300, "no_show_fee": 500,
          "fare_tolerance": 0.25}


def need(kind):
    return sum((n + 1) * b for k, b, n in CASES.values() if k == kind)


def request_items(riders):
    return [{"rider": r, "hash": "h", "vehicle": "standard", "plat": 52.0907, "plng": 5.1214,
             "dlat": 52.1, "dlng": 5.13, "cur": "EUR", "fare": FARE, "policy": POLICY} for r in riders]


def transitions(q, items):
    for k in range(0, len(items), 250):
        q.execute("SELECT status, body FROM trip_transitions(%s::jsonb, false) ORDER BY i",
                  (json.dumps(items[k:k + 250]),))
        rows = q.fetchall()
        if any(r[0] != 200 for r in rows):
            sys.exit(f"trip_sql_ir: trip_transitions answered {[r for r in rows if r[0] != 200][:1]}")


def literal(items):
    return "'" + json.dumps(items).replace("'", "''") + "'::jsonb"


def main():
    url, out = sys.argv[2], sys.argv[3]
    c = psycopg2.connect(url)
    c.autocommit = True
    q = c.cursor()
    n_match, n_steps, n_req = need("match"), need("steps"), need("request")
    n_trips = n_match + n_steps
    n = n_trips + n_req
    q.execute("INSERT INTO riders (email, name, password_hash)"
              " SELECT 'rider' || i || '@example.com', 'Rider ' || i, 'unused' FROM generate_series(1, %s) i", (n,))
    q.execute("INSERT INTO drivers (email, name, password_hash, vehicle_type, vehicle_make, vehicle_model,"
              " vehicle_color, plate, status)"
              " SELECT 'driver' || i || '@example.com', 'Driver ' || i, 'unused', 'standard', 'Toyota', 'Prius',"
              " 'White', 'T' || i, 'available' FROM generate_series(1, %s) i", (n_trips,))
    q.execute("SELECT id::text FROM riders ORDER BY email")
    riders = [r[0] for r in q.fetchall()]
    q.execute("SELECT id::text FROM drivers ORDER BY email")
    drivers = [r[0] for r in q.fetchall()]
    # the trips to match and to step: requested through trip_requests(), as
    # the daemon does
    trips = []
    for k in range(0, n_trips, 250):
        q.execute("SELECT status, body FROM trip_requests(%s::jsonb, false) ORDER BY i",
                  (json.dumps(request_items(riders[k:min(k + 250, n_trips)])),))
        rows = q.fetchall()
        if any(r[0] != 201 for r in rows):
            sys.exit(f"trip_sql_ir: trip_requests answered {rows[:1]}")
        trips += [r[1]["trip_row"][0] for r in rows]
    free_riders = riders[n_trips:]
    # the steps' trips: matched, then moved on to where their step starts
    # (trip i of the case takes step i % 4)
    base = n_match
    transitions(q, [{"trip_id": trips[i], "to": "MATCHED", "role": "driver", "actor": drivers[i],
                     "args": {"driver_id": drivers[i]}} for i in range(base, n_trips)])
    for stage in ("ARRIVED", "IN_PROGRESS"):
        transitions(q, [{"trip_id": trips[i], "to": stage, "role": "driver", "actor": drivers[i]}
                        for i in range(base, n_trips) if stage in STEPS[(i - base) % 4][3]])
    # the peer: a state change and its outbox row, the least a transition
    # with an outbox can be (one row, one statement, one commit)
    q.execute("CREATE TABLE peer_trips (id integer PRIMARY KEY, state text NOT NULL, version integer NOT NULL)")
    q.execute("INSERT INTO peer_trips SELECT i, 'SEARCHING', 1 FROM generate_series(1, %s) i", (need("peer"),))
    q.execute("CREATE TABLE peer_outbox (id bigserial PRIMARY KEY, event_type text NOT NULL, payload jsonb NOT NULL,"
              " created_at timestamptz NOT NULL DEFAULT now(), published_at timestamptz)")
    q.execute("VACUUM ANALYZE")
    at = {"match": 0, "steps": base, "request": 0, "peer": 1}
    for case, (kind, b, nb) in CASES.items():
        lines = []
        for _ in range(nb + 1):
            k = at[kind]
            at[kind] += b
            if kind == "match":
                items = [{"trip_id": trips[i], "to": "MATCHED", "role": "driver", "actor": drivers[i],
                          "args": {"driver_id": drivers[i], "eta_s": 120, "distance_m": 900, "score": 0.8}}
                         for i in range(k, k + b)]
                lines.append(f"SELECT count(*) FROM trip_transitions({literal(items)}, false) WHERE status <> 200")
            elif kind == "steps":
                items = []
                for i in range(k, k + b):
                    to, role, args, _ = STEPS[(i - base) % 4]
                    items.append({"trip_id": trips[i], "to": to, "role": role,
                                  "actor": drivers[i] if role == "driver" else riders[i], "args": args})
                lines.append(f"SELECT count(*) FROM trip_transitions({literal(items)}, false) WHERE status <> 200")
            elif kind == "request":
                items = request_items(free_riders[k:k + b])
                lines.append(f"SELECT count(*) FROM trip_requests({literal(items)}, false) WHERE status <> 201")
            else:
                lines.append("WITH t AS (UPDATE peer_trips SET state = 'MATCHED', version = version + 1"
                             f" WHERE id = {k} AND state = 'SEARCHING' RETURNING id, version)"
                             " INSERT INTO peer_outbox (event_type, payload)"
                             " SELECT 'trip.accepted', jsonb_build_object('trip_id', id, 'version', version) FROM t")
        for m in (0, nb):
            with open(f"{out}/{case}.{m}.sql", "w") as f:
                f.write("\n".join(lines[:m + 1]) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "prepare":
        sys.exit(__doc__)
    main()
