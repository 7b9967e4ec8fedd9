#!/usr/bin/env python3
"""Backend CPU per item of the database's batch functions, alone (no daemon,
no HTTP): trip_requests() creating trips and trip_transitions() matching them,
in batches of each size given; and the one-row UPDATE of drivers that
presence runs when a driver goes available or offline (prepared, one
transaction each, as the daemon sends it). CPU time is the backend's own (utime + stime
from /proc), so other load on the machine moves it less than wall time.

Like the daemon's connections on a new database, the session starts on empty
tables (its plans are made then) and first creates WARM trips (20,000), so
that what is measured is a session whose tables grew since it planned.

usage: trip_sql.py [--analyzed-empty] DATABASE_URL [BATCH ...]   (default batches: 1 16 64)
--analyzed-empty: ANALYZE the emptied tables first (statistics saying "no
trips", as autovacuum leaves a table it visited while it was empty).
The database must be migrated (ridehaild migrate) and is emptied first.
Prints one name=value line per figure:
  trip_sql_request_b<B>_us   backend CPU per new trip, batches of B
  trip_sql_match_b<B>_us     backend CPU per MATCHED transition, batches of B
  trip_sql_driver_status_us  backend CPU per driver status update (one row, one commit)
"""
import json
import sys

import psycopg2

ITEMS = 1536  # per size and kind: a multiple of every default batch size
WARM = 20000


def main():
    args = sys.argv[1:]
    analyzed_empty = "--analyzed-empty" in args
    args = [a for a in args if a != "--analyzed-empty"]
    url = args[0]
    sizes = [int(a) for a in args[1:]] or [1, 16, 64]
    c = psycopg2.connect(url)
    c.autocommit = True
    q = c.cursor()
    q.execute("SELECT pg_backend_pid()")
    pid = q.fetchone()[0]

    def cpu():
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / 100.0  # utime + stime, clock ticks of 10 ms

    n = WARM + ITEMS * len(sizes)
    q.execute("TRUNCATE outbox, trip_events, ride_idempotency, trip_ratings, trips, riders, drivers CASCADE")
    q.execute("INSERT INTO riders (email, name, password_hash)"
              " SELECT 'rider' || i || '@example.com', 'Rider', 'unused' FROM generate_series(1, %s) i", (n,))
    q.execute("INSERT INTO drivers (email, name, password_hash, vehicle_type, vehicle_make, vehicle_model,"
              " vehicle_color, plate, status)"
              " SELECT 'driver' || i || '@example.com', 'Driver', 'unused', 'standard', 'Toyota', 'Prius',"
              " 'White', 'T' || i, 'available' FROM generate_series(1, %s) i", (n,))
    if analyzed_empty:
        q.execute("VACUUM ANALYZE")
    q.execute("SELECT id::text FROM riders ORDER BY email")
    riders = [r[0] for r in q.fetchall()]
    q.execute("SELECT id::text FROM drivers ORDER BY email")
    drivers = [r[0] for r in q.fetchall()]
    fare = {"total": 1234, "base": 300, "distance": 600, "time": 234, "booking_fee": 100, "minimum": 500,
            "surge_multiplier": 1, "per_km": 100, "per_min": 20, "distance_m": 6000, "duration_s": 700,
            "method": "straight_line"}
    policy = {"cancel_grace_s": 120, "cancel_fee": 500, "no_show_wait_s": 300, "no_show_fee": 500,
              "fare_tolerance": 0.25}
    def request(rs, safe):
        items = [{"rider": r, "hash": "h", "vehicle": "standard", "plat": 52.09, "plng": 5.12,
                  "dlat": 52.1, "dlng": 5.13, "cur": "EUR", "fare": fare, "policy": policy} for r in rs]
        q.execute("SELECT i, status, body FROM trip_requests(%s::jsonb, %s) ORDER BY i", (json.dumps(items), safe))
        rows = q.fetchall()
        if [r[1] for r in rows] != [201] * len(rs):
            sys.exit(f"trip_sql: trip_requests answered {rows[:2]}")
        return [r[2]["trip_row"][0] for r in rows]  # the trip's id (include/trip/trip_row.def)

    for k in range(0, WARM, 250):
        request(riders[k:k + 250], False)
    at = WARM
    for b in sizes:
        mine = range(at, at + ITEMS)
        at += ITEMS
        trips = []
        c0 = cpu()
        for k in range(mine.start, mine.stop, b):
            trips += request(riders[k:k + b], b == 1)
        print(f"trip_sql_request_b{b}_us={(cpu() - c0) / ITEMS * 1e6:.0f}")
        c0 = cpu()
        for k in range(0, ITEMS, b):
            items = [{"trip_id": trips[i], "to": "MATCHED", "role": "driver", "actor": drivers[mine.start + i],
                      "args": {"driver_id": drivers[mine.start + i]}} for i in range(k, k + b)]
            q.execute("SELECT i, status, body FROM trip_transitions(%s::jsonb, %s) ORDER BY i",
                      (json.dumps(items), b == 1))
            rows = q.fetchall()
            if [r[1] for r in rows] != [200] * b:
                sys.exit(f"trip_sql: trip_transitions answered {rows[:2]}")
        print(f"trip_sql_match_b{b}_us={(cpu() - c0) / ITEMS * 1e6:.0f}")
        sys.stdout.flush()

    # presence's status update (src/presence/presence.c, st_driver_status),
    # on drivers no trip has: offline, then available again
    q.execute("PREPARE driver_status (uuid, text) AS UPDATE drivers SET status = $2, version = version + 1,"
              " updated_at = now() WHERE id = $1 AND status IN ('offline', 'available') RETURNING version")
    free = drivers[:ITEMS]
    c0 = cpu()
    for to in ("offline", "available"):
        for d in free:
            q.execute("EXECUTE driver_status (%s, %s)", (d, to))
            if q.rowcount != 1:
                sys.exit(f"trip_sql: driver {d} did not go {to}")
    print(f"trip_sql_driver_status_us={(cpu() - c0) / (2 * len(free)) * 1e6:.0f}")


if __name__ == "__main__":
    main()
