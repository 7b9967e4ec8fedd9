"""The schema's rules on single columns live in domains (sql/010), the ones
across columns in table CHECKs: each refuses what it refused before, on
INSERT, on UPDATE and through the trip functions, and leaves the row as it
was."""
import psycopg2
import psycopg2.errors
import pytest


def rows(pg, d):
    drv = pg.query(d.db, "INSERT INTO drivers (email, name, password_hash, vehicle_type, vehicle_make,"
                         " vehicle_model, vehicle_color, plate) VALUES ('c1@example.com', 'C', 'x', 'standard',"
                         " 'Toyota', 'Prius', 'White', 'C1') RETURNING id::text")[0][0]
    rid = pg.query(d.db, "INSERT INTO riders (email, name, password_hash) VALUES ('r1@example.com', 'R', 'x')"
                         " RETURNING id::text")[0][0]
    trip = pg.query(d.db, "INSERT INTO trips (id, rider_id, vehicle_type, pickup, dropoff, currency, fare_quoted,"
                          " estimate, policy) VALUES (gen_random_uuid(), %s, 'standard',"
                          " 'SRID=4326;POINT(5.12 52.09)', 'SRID=4326;POINT(5.13 52.1)', 'EUR', 1000, '{}', '{}')"
                          " RETURNING id::text", (rid,))[0][0]
    return drv, rid, trip


def refused(pg, d, sql, params=None):
    with pytest.raises(psycopg2.errors.CheckViolation):
        pg.query(d.db, sql, params)


BAD_DRIVER = [
    ("status", "'parked'"), ("email", "'ab'"), ("name", "''"), ("phone", "'12'"), ("plate", "repeat('P', 17)"),
    ("vehicle_type", "'Standard'"), ("vehicle_make", "''"), ("vehicle_model", "repeat('m', 51)"),
    ("vehicle_color", "repeat('c', 31)"), ("rating_sum", "-1"), ("rating_count", "-1"),
]
BAD_TRIP = [
    ("currency", "'eur'"), ("fare_quoted", "-1"), ("version", "0"), ("event_seq", "-1"), ("cancel_fee", "-5"),
    ("cancel_reason", "repeat('r', 65)"), ("cancelled_by", "'robot'"), ("pickup_address", "repeat('a', 201)"),
    ("quote_id", "repeat('q', 401)"), ("vehicle_type", "''"), ("metered_distance_m", "-1"),
    # across columns, or naming state: table CHECKs
    ("state", "'LOST'"), ("state", "'MATCHED'"), ("state", "'CANCELLED'"),
]


def test_single_column_rules_refuse_on_update_and_leave_the_row(make_daemon, pg):
    d = make_daemon(env={"RIDEHAIL_MATCH_AUTO": "false"})
    drv, rid, trip = rows(pg, d)
    before = pg.query(d.db, "SELECT to_jsonb(x) FROM drivers x WHERE id = %s", (drv,))
    for col, val in BAD_DRIVER:
        refused(pg, d, f"UPDATE drivers SET {col} = {val} WHERE id = %s", (drv,))
    assert pg.query(d.db, "SELECT to_jsonb(x) FROM drivers x WHERE id = %s", (drv,)) == before
    before = pg.query(d.db, "SELECT to_jsonb(x) FROM trips x WHERE id = %s", (trip,))
    for col, val in BAD_TRIP:
        refused(pg, d, f"UPDATE trips SET {col} = {val} WHERE id = %s", (trip,))
    assert pg.query(d.db, "SELECT to_jsonb(x) FROM trips x WHERE id = %s", (trip,)) == before
    # a parameter is checked as the literal is (prepared statements send them)
    refused(pg, d, "UPDATE drivers SET status = %s WHERE id = %s", ("parked", drv))
    # good values pass
    pg.query(d.db, "UPDATE drivers SET status = 'available', phone = '+31612345678' WHERE id = %s", (drv,))


def test_single_column_rules_refuse_on_insert(make_daemon, pg):
    d = make_daemon(env={"RIDEHAIL_MATCH_AUTO": "false"})
    drv, rid, trip = rows(pg, d)
    refused(pg, d, "INSERT INTO riders (email, name, password_hash) VALUES ('x', 'R', 'x')")
    refused(pg, d, "INSERT INTO operators (email, name, password_hash) VALUES ('o@example.com', '', 'x')")
    refused(pg, d, "INSERT INTO trip_events (trip_id, seq, from_state, to_state, actor_role, actor_id, at)"
                   " VALUES (%s, 9, 'SEARCHING', 'CANCELLED', 'robot', 'x', now())", (trip,))
    refused(pg, d, "INSERT INTO outbox (event_type, producer, correlation_id, aggregate_id, aggregate_seq, payload)"
                   " VALUES ('Trip.Requested', 'test', %s, %s, 9, '{}')", (trip, trip))
    refused(pg, d, "INSERT INTO outbox (event_type, event_version, producer, correlation_id, aggregate_id,"
                   " aggregate_seq, payload) VALUES ('trip.requested', 0, 'test', %s, %s, 9, '{}')", (trip, trip))
    refused(pg, d, "INSERT INTO ride_idempotency (rider_id, key, body_hash, trip_id) VALUES (%s, '', 'h', %s)",
            (rid, trip))
    refused(pg, d, "INSERT INTO trip_ratings (trip_id, by_role, stars) VALUES (%s, 'rider', 6)", (trip,))
    assert pg.query(d.db, "SELECT count(*) FROM trip_events WHERE seq = 9")[0][0] == 0


def test_the_state_machine_meets_the_rules_too(make_daemon, pg):
    # trip_apply() assigns its row variables; a value breaking a domain
    # fails the batch there, before anything is written
    d = make_daemon(env={"RIDEHAIL_MATCH_AUTO": "false"})
    drv, rid, trip = rows(pg, d)
    items = ('[{"trip_id": "%s", "to": "CANCELLED", "role": "operator", "actor": "op",'
             ' "args": {"reason": "%s"}}]' % (trip, "x" * 65))
    refused(pg, d, "SELECT * FROM trip_transitions(%s::jsonb, false)", (items,))
    assert pg.query(d.db, "SELECT state, version FROM trips WHERE id = %s", (trip,)) == [("SEARCHING", 1)]
    items = items.replace("x" * 65, "fraud")
    assert pg.query(d.db, "SELECT status FROM trip_transitions(%s::jsonb, false)", (items,)) == [(200,)]
    assert pg.query(d.db, "SELECT state, cancel_reason FROM trips WHERE id = %s", (trip,)) == [("CANCELLED", "fraud")]
