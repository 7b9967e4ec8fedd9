"""The SQL's layout and its upgrade path: migrations hold the schema, every
function body lives once in sql/functions/ (applied after the migrations,
recorded with a checksum, applied again only when the binary's text
differs), and a database that a binary of schema version 11 left (when the
migrations still defined the functions) upgrades by starting today's daemon
on it, to the same schema a new database gets, its trips still read and
moving on."""
import json
import re
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from conftest import PGBIN, RIDEHAILD, ROOT, Daemon, wait_for
from test_auth import make_jwt

SQL = ROOT / "sql"
LEGACY = Path(__file__).resolve().parent / "legacy_sql"
MANUAL = {"RIDEHAIL_MATCH_AUTO": "false"}
FUNCTION_DEF = re.compile(r"^CREATE\s+(OR\s+REPLACE\s+)?FUNCTION\s+(\w+)\s*\(", re.I | re.M)
# a trigger: (OR REPLACE, name, table, function)
TRIGGER_DEF = re.compile(r"^CREATE\s+(OR\s+REPLACE\s+)?(?:CONSTRAINT\s+)?TRIGGER\s+(\w+)\s.*?\bON\s+(\w+)\s.*?"
                         r"EXECUTE\s+(?:FUNCTION|PROCEDURE)\s+(\w+)\s*\(", re.I | re.M | re.S)


def migrations():
    return sorted(SQL.glob("[0-9]*.sql"))


def function_files():
    return sorted((SQL / "functions").glob("[0-9]*.sql"))


def latest_migration():
    return max(int(p.name.split("_")[0]) for p in migrations())


def fnv1a64(data):
    """The checksum src/store/migrate.c records (FNV-1a, 64 bits, over the
    text as build-aux/embed carries it: without carriage returns)."""
    h = 1469598103934665603
    for c in data:
        if c != 13:
            h = ((h ^ c) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def sql_functions(pg, db):
    """The functions of the schema (not an extension's): {name: [arguments]}."""
    rows = pg.query(db, "SELECT p.proname, pg_get_function_identity_arguments(p.oid) FROM pg_proc p"
                        " JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'"
                        " AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass"
                        " AND d.objid = p.oid AND d.deptype = 'e')")
    out = {}
    for name, args in rows:
        out.setdefault(name, []).append(args)
    return out


def schema_dump(pg, db):
    """pg_dump --schema-only, without the lines that differ between two dumps
    of one database (\\restrict's random key)."""
    r = subprocess.run([str(PGBIN / "pg_dump"), "--schema-only", "--no-owner", pg.url(db)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return [l for l in r.stdout.splitlines() if not l.startswith(("\\restrict", "\\unrestrict"))]


def bearer(role, account_id):
    now = int(time.time())
    tok = make_jwt({"iss": "ridehail", "sub": account_id, "role": role, "iat": now, "exp": now + 600,
                    "jti": uuid.uuid4().hex})
    return {"Authorization": "Bearer " + tok}


# ---------------------------------------------------------------- the layout

def file_triggers():
    """The triggers the function files define: {name: (table, function, file)}."""
    out = {}
    for f in function_files():
        for m in TRIGGER_DEF.finditer(re.sub(r"--[^\n]*", "", f.read_text())):
            assert m.group(2) not in out, f"trigger {m.group(2)} is defined in {out[m.group(2)][2]} and {f.name}"
            out[m.group(2)] = (m.group(3), m.group(4), f.name)
    return out


def test_migrations_hold_the_schema_and_every_function_is_defined_once():
    """No migration defines a function (dropping one is a schema change) nor
    a trigger (its function does not exist yet when a new database's
    migrations run); each function is defined in exactly one function file,
    as CREATE OR REPLACE, and the files hold nothing but functions and the
    triggers that run them, each as CREATE OR REPLACE after its function in
    the same file."""
    for f in migrations():
        text = f.read_text()
        assert not FUNCTION_DEF.search(text), f"{f.name} defines a function: its body belongs in sql/functions/"
        assert not TRIGGER_DEF.search(text), f"{f.name} defines a trigger: it belongs beside its function"
        assert not re.search(r"^\s*(CREATE\s+(OR\s+REPLACE\s+)?PROCEDURE|DO\s)", text, re.I | re.M), f.name
    seen = {}
    for f in function_files():
        text = f.read_text()
        for m in FUNCTION_DEF.finditer(text):
            assert m.group(1), f"{f.name}: {m.group(2)} is not CREATE OR REPLACE"
            assert m.group(2) not in seen, f"{m.group(2)} is defined in {seen.get(m.group(2))} and {f.name}"
            seen[m.group(2)] = f.name
        # every statement of the file starts a function or a trigger
        # (comments and bodies aside)
        outside = re.sub(r"\$\$.*?\$\$", "", re.sub(r"--[^\n]*", "", text), flags=re.S)
        for stmt in (s.strip() for s in outside.split(";")):
            assert not stmt or re.match(r"CREATE OR REPLACE (FUNCTION|TRIGGER)\b", stmt), (f.name, stmt[:80])
        code = re.sub(r"--[^\n]*", "", text)
        for m in TRIGGER_DEF.finditer(code):
            assert m.group(1), f"{f.name}: trigger {m.group(2)} is not CREATE OR REPLACE"
            defs = [d.group(2) for d in FUNCTION_DEF.finditer(code[:m.start()])]
            assert m.group(4) in defs, f"{f.name}: trigger {m.group(2)} runs {m.group(4)}, not defined before it here"
    file_triggers()
    assert {"trip_apply", "trip_transitions", "trip_requests", "trip_view", "trip_json"} <= set(seen)


def test_a_migrated_database_has_the_functions_of_the_files_and_no_other(make_daemon, pg):
    d = make_daemon(env=MANUAL)
    defined = set()
    for f in function_files():
        defined |= {m.group(2) for m in FUNCTION_DEF.finditer(f.read_text())}
    have = sql_functions(pg, d.db)
    assert set(have) == defined
    assert all(len(v) == 1 for v in have.values()), {k: v for k, v in have.items() if len(v) > 1}
    # and the triggers of the files, on their tables, running their functions
    triggers = pg.query(d.db, "SELECT t.tgname, c.relname, p.proname FROM pg_trigger t"
                              " JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_proc p ON p.oid = t.tgfoid"
                              " JOIN pg_namespace n ON n.oid = c.relnamespace"
                              " WHERE NOT t.tgisinternal AND n.nspname = 'public'")
    assert {name: (table, fn) for name, table, fn in triggers} == \
        {name: (table, fn) for name, (table, fn, _) in file_triggers().items()}
    rows = pg.query(d.db, "SELECT name, checksum, schema_version FROM schema_functions ORDER BY name")
    assert [r[0] for r in rows] == [f.stem for f in function_files()]
    assert all(r[2] == latest_migration() and re.fullmatch(r"[0-9a-f]{16}", r[1]) for r in rows)


# ---------------------------------------------------------------- function files

def restart(make_daemon, d):
    d.stop()
    return make_daemon(db=d.db, env=MANUAL)


def test_function_files_are_applied_again_only_when_they_differ(make_daemon, pg):
    """A restart with the same binary applies nothing. A file whose recorded
    checksum differs from the binary's text (an upgrade that changed it), a
    function missing with it, or a migration run since it was applied: every
    file is applied again, in one transaction, and recorded."""
    d = make_daemon(env=MANUAL)
    q = "SELECT name, checksum, schema_version, applied_at FROM schema_functions ORDER BY name"
    first = pg.query(d.db, q)
    d = restart(make_daemon, d)
    assert pg.query(d.db, q) == first
    assert "applying the" not in d.log()
    # what an older binary would have left: another text of one file, and
    # a function that file now defines missing
    pg.query(d.db, "UPDATE schema_functions SET checksum = '0123456789abcdef' WHERE name = '40_trip_rate'")
    pg.query(d.db, "DROP FUNCTION trip_rate(uuid, text, uuid, integer, text)")
    d = restart(make_daemon, d)
    again = pg.query(d.db, q)
    assert [r[:3] for r in again] == [r[:3] for r in first]
    assert all(a[3] > f[3] for a, f in zip(again, first)), "every file is applied again, not only the one"
    assert "applying the" in d.log() and "40_trip_rate" in d.log()
    assert "trip_rate" in sql_functions(pg, d.db)
    # a schema version other than the one they were applied on: again
    pg.query(d.db, "UPDATE schema_functions SET schema_version = schema_version - 1")
    d = restart(make_daemon, d)
    assert [r[2] for r in pg.query(d.db, q)] == [latest_migration()] * len(first)


def test_migrate_status_names_the_files_that_differ(make_daemon, pg):
    d = make_daemon(env=MANUAL)
    d.stop()
    env = {k: v for k, v in d.env.items() if not k.startswith("RIDEHAIL_")}
    env["RIDEHAIL_DATABASE_URL"] = pg.url(d.db)

    def migrate(*args):
        return subprocess.run([RIDEHAILD, "migrate", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    st = migrate("--status")
    assert st.returncode == 0, st
    assert f"functions: {len(function_files())} files, as this binary has them" in st.stdout
    pg.query(d.db, "UPDATE schema_functions SET checksum = '0123456789abcdef' WHERE name IN ('30_trip_view', '10_format')")
    st = migrate("--status")
    assert st.returncode == 1
    assert f"functions: 2 of {len(function_files())} files differ from this binary's (10_format, 30_trip_view)" \
        in st.stdout, st
    # the daemon with migrate = false is not ready, and says what to do
    d2 = make_daemon(db=d.db, env=dict(MANUAL, RIDEHAIL_DATABASE_MIGRATE="false"), wait_ready=False)
    body = wait_for(lambda: (lambda r: r.status == 503 and "function files differ" in r.json()["detail"] and r.json())(
        d2.get("/readyz")), what="readyz to name the files")
    assert "(10_format, 30_trip_view): run `ridehaild migrate`" in body["detail"], body
    assert pg.query(d.db, "SELECT count(*) FROM schema_functions WHERE checksum = '0123456789abcdef'") == [(2,)]
    d2.stop()
    run = migrate()
    assert run.returncode == 0 and "functions: " in run.stdout and "applied" in run.stdout, run
    assert migrate("--status").returncode == 0


def test_a_database_newer_than_the_binary_keeps_its_functions(make_daemon, pg):
    """A newer binary migrated the database (a version this one does not
    know) and applied its own function files: this one starts (with a
    warning) and leaves them as they are."""
    d = make_daemon(env=MANUAL)
    pg.query(d.db, "INSERT INTO schema_migrations (version, name, checksum) VALUES (999, 'future', 'ffffffffffffffff')")
    pg.query(d.db, "UPDATE schema_functions SET checksum = 'ffffffffffffffff', schema_version = 999")
    before = pg.query(d.db, "SELECT name, checksum, applied_at FROM schema_functions ORDER BY name")
    d = restart(make_daemon, d)
    assert pg.query(d.db, "SELECT name, checksum, applied_at FROM schema_functions ORDER BY name") == before
    assert "newer than this binary" in d.log()


def test_two_daemons_starting_at_once_migrate_once(pg, tmp_path):
    db = pg.create_db()
    ds = [Daemon(tmp_path / str(i), db_url=pg.url(db), env=MANUAL) for i in range(2)]
    threads = [threading.Thread(target=d.start) for d in ds]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for d in ds:
            assert d.wait_ready().json()["checks"]["schema_version"] == latest_migration()
        assert pg.query(db, "SELECT count(*), count(DISTINCT version) FROM schema_migrations")[0] == \
            (len(migrations()), len(migrations()))
        assert pg.query(db, "SELECT count(*) FROM schema_functions")[0][0] == len(function_files())
        applied = [d.log().count("applying the") for d in ds]
        assert sorted(applied) == [0, 1], applied
    finally:
        for d in ds:
            d.stop()


# ---------------------------------------------------------------- the upgrade from version 11

FARE = {"total": 1234, "base": 250, "distance": 700, "time": 184, "booking_fee": 100, "minimum": 700,
        "surge_multiplier": 1, "per_km": 156, "per_min": 30, "distance_m": 4500, "duration_s": 370,
        "method": "straight_line"}
POLICY = {"cancel_grace_s": 120.0, "cancel_fee": 500, "no_show_wait_s": 300.0, "no_show_fee": 500,
          "fare_tolerance": 0.25}


def build_version_11(pg, db):
    """The database as a binary of schema version 11 left it: its migrator's
    statements, file by file (each with its schema_migrations row, in one
    implicit transaction, checksummed as it did)."""
    conn = pg.connect(db)
    try:
        with conn.cursor() as cur:
            cur.execute("SET client_min_messages = warning;"
                        "CREATE TABLE IF NOT EXISTS schema_migrations ("
                        " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                        " applied_at timestamptz NOT NULL DEFAULT now())")
            for f in sorted(LEGACY.glob("[0-9]*.sql")):
                raw = f.read_bytes()
                version, name = f.stem.split("_", 1)
                cur.execute(raw.decode() + f";\nINSERT INTO schema_migrations (version, name, checksum)"
                            f" VALUES ({int(version)}, '{name}', '{fnv1a64(raw)}')")
    finally:
        conn.close()


def legacy_trips(pg, db):
    """Riders, drivers and trips in every state, made by that version's own
    functions (trip_requests(), trip_transitions(), trip_rate())."""
    def one(sql, params=None):
        return pg.query(db, sql, params)
    riders = [one("INSERT INTO riders (email, name, password_hash) VALUES (%s, 'Old Rider', 'x') RETURNING id::text",
                  (f"old-r{i}@example.com",))[0][0] for i in range(5)]
    drivers = [one("INSERT INTO drivers (email, name, password_hash, vehicle_type, vehicle_make, vehicle_model,"
                   " vehicle_color, plate, status) VALUES (%s, 'Old Driver', 'x', 'standard', 'Toyota', 'Prius',"
                   " 'Blue', %s, 'available') RETURNING id::text", (f"old-d{i}@example.com", f"OLD{i}"))[0][0]
               for i in range(4)]
    items = [{"rider": r, "hash": "h" + r[:8], "vehicle": "standard", "plat": 52.0907 + i / 1000, "plng": 5.1214,
              "dlat": 52.1, "dlng": 5.13, "pa": f"Old street {i}", "cur": "USD", "fare": FARE, "policy": POLICY}
             for i, r in enumerate(riders)]
    rows = one("SELECT status, body FROM trip_requests(%s::jsonb, false) ORDER BY i", (json.dumps(items),))
    assert [r[0] for r in rows] == [201] * 5, rows
    trips = [r[1]["trip_row"][0] for r in rows]
    names = ["searching", "matched", "in_progress", "completed", "cancelled"]
    t = dict(zip(names, trips))

    def step(trip, to, role="operator", actor="admin", **args):
        items = [{"trip_id": trip, "to": to, "role": role, "actor": actor, "args": args}]
        r = one("SELECT status, body FROM trip_transitions(%s::jsonb, false)", (json.dumps(items),))
        assert r[0][0] == 200, r
    for name, drv in (("matched", 0), ("in_progress", 1), ("completed", 2)):
        step(t[name], "MATCHED", driver_id=drivers[drv])
    for name, drv in (("in_progress", 1), ("completed", 2)):
        step(t[name], "ARRIVED", "driver", drivers[drv])
        step(t[name], "IN_PROGRESS", "driver", drivers[drv])
    step(t["completed"], "COMPLETED", "driver", drivers[2], distance_m=4600, duration_s=380)
    step(t["cancelled"], "CANCELLED", reason="operator_test")
    r = one("SELECT status FROM trip_rate(%s, 'rider', %s, 4, 'fine')", (t["completed"], riders[3]))
    assert r == [(201,)]
    return riders, drivers, t


def trip_state(pg, db, trip):
    return {
        "json": pg.query(db, "SELECT trip_json(t, true) FROM trips t WHERE id = %s", (trip,))[0][0],
        "receipt": pg.query(db, "SELECT trip_receipt(t) FROM trips t WHERE id = %s", (trip,))[0][0],
        "outbox": pg.query(db, "SELECT aggregate_seq, event_type, payload FROM outbox WHERE aggregate_id = %s"
                               " ORDER BY aggregate_seq", (trip,)),
    }


def sequences_have_no_gaps(pg, db, trip):
    seqs = [r[0] for r in pg.query(db, "SELECT aggregate_seq FROM outbox WHERE aggregate_id = %s ORDER BY 1",
                                   (trip,))]
    hist = [r[0] for r in pg.query(db, "SELECT seq FROM trip_events WHERE trip_id = %s ORDER BY 1", (trip,))]
    ver, evseq = pg.query(db, "SELECT version, event_seq FROM trips WHERE id = %s", (trip,))[0]
    return seqs == list(range(1, evseq + 1)) and hist == list(range(1, ver + 1))


def test_a_database_left_by_version_11_upgrades_by_starting_the_daemon(make_daemon, pg):
    """Built as a binary of schema version 11 left it, with trips in every
    state: today's daemon starts on it with no manual step. The rewritten
    migrations are taken as applied (their earlier checksums stay
    recorded), 012 and the function files are applied; every trip reads as
    it did (the same row, timeline, receipt and events), and moves on over
    the API with its history and events continuing in sequence."""
    db = pg.create_db()
    build_version_11(pg, db)
    riders, drivers, t = legacy_trips(pg, db)
    before = {name: trip_state(pg, db, tid) for name, tid in t.items()}
    recorded = pg.query(db, "SELECT version, checksum FROM schema_migrations ORDER BY version")
    assert [r[0] for r in recorded] == list(range(1, 12))[:2] + list(range(4, 12))

    d = make_daemon(db=db, env=MANUAL)
    assert d.get("/readyz").json()["checks"]["schema_version"] == latest_migration()
    now = pg.query(db, "SELECT version, checksum FROM schema_migrations ORDER BY version")
    assert now[:len(recorded)] == recorded and [r[0] for r in now[len(recorded):]] == \
        [v for v in sorted(int(p.name[:3]) for p in migrations()) if v > 11]
    assert "trip_step" not in sql_functions(pg, db) and "match_release" not in sql_functions(pg, db)
    for name, tid in t.items():
        now_state = trip_state(pg, db, tid)
        # the row's columns added since (scheduled_at, search_started_at,
        # booked: 018) come last and say nothing of these trips
        row = now_state["json"]["trip_row"]
        n = len(before[name]["json"]["trip_row"])
        assert row[n:] == [None, None, False], (name, row[n:])
        del row[n:]
        assert now_state == before[name], name
        r = d.get(f"/v1/rides/{tid}", headers=d.admin)
        assert r.status == 200 and r.json()["id"] == tid, r
        assert r.json()["pickup"]["address"].startswith("Old street")

    admin = d.admin
    # SEARCHING: assigned to a driver made back then, driven to the end
    r = d.post(f"/v1/rides/{t['searching']}/assign", {"driver_id": drivers[3]}, headers=admin)
    assert r.status == 200 and r.json()["state"] == "MATCHED", r
    dh = bearer("driver", drivers[3])
    for step in ("arrived", "start"):
        assert d.post(f"/v1/rides/{t['searching']}/{step}", headers=dh).status == 200
    r = d.post(f"/v1/rides/{t['searching']}/complete", {"distance_m": 4500, "duration_s": 370}, headers=dh)
    assert r.status == 200 and r.json()["state"] == "COMPLETED" and r.json()["fare"]["final"] == 1234, r
    # MATCHED: its rider cancels (inside the grace period: no fee)
    r = d.post(f"/v1/rides/{t['matched']}/cancel", {"reason": "changed_mind"}, headers=bearer("rider", riders[1]))
    assert r.status == 200 and r.json()["cancellation"] == {"by": "rider", "reason": "changed_mind", "fee": 0}, r
    # IN_PROGRESS: its driver completes it, far beyond the estimate: metered
    r = d.post(f"/v1/rides/{t['in_progress']}/complete", {"distance_m": 9000, "duration_s": 1800},
               headers=bearer("driver", drivers[1]))
    assert r.status == 200 and r.json()["fare"]["needs_review"] is True, r
    # COMPLETED: the driver rates it too (the rider did back then); again: 409
    dh2 = bearer("driver", drivers[2])
    assert d.post(f"/v1/rides/{t['completed']}/rating", {"stars": 5}, headers=dh2).status == 201
    assert d.post(f"/v1/rides/{t['completed']}/rating", {"stars": 5}, headers=dh2).status == 409
    # CANCELLED stays so
    r = d.post(f"/v1/rides/{t['cancelled']}/arrived", headers=dh)
    assert r.status in (404, 409), r
    for name, tid in t.items():
        assert sequences_have_no_gaps(pg, db, tid), name
        old = before[name]["outbox"]
        assert pg.query(db, "SELECT aggregate_seq, event_type, payload FROM outbox WHERE aggregate_id = %s"
                            " ORDER BY aggregate_seq", (tid,))[:len(old)] == old
    events = [r[0] for r in pg.query(db, "SELECT event_type FROM outbox WHERE aggregate_id = %s ORDER BY"
                                         " aggregate_seq", (t["completed"],))]
    assert events[-2:] == ["rating.submitted", "rating.submitted"], events
    assert "level=error" not in d.log()


def test_an_upgraded_database_has_the_schema_of_a_new_one(make_daemon, pg):
    """pg_dump --schema-only of a database upgraded from version 11 and of
    one made new by the daemon: the same tables, constraints, indexes,
    domains and functions, definition for definition."""
    old = pg.create_db()
    build_version_11(pg, old)
    up = make_daemon(db=old, env=MANUAL)
    new = make_daemon(env=MANUAL)
    a, b = schema_dump(pg, up.db), schema_dump(pg, new.db)
    assert len(a) > 1000 and any("FUNCTION public.trip_apply(" in l for l in a)
    assert a == b, "\n".join(l for l in __import__("difflib").unified_diff(a, b, "upgraded", "new", lineterm=""))
