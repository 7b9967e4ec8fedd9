#!/usr/bin/python3
"""make chaos: a simulated city rides through faults, and nothing is lost.

bin/ridehail-sim runs a city (Midtown Manhattan's roads and recorded demand
when ../shared/data has them, else a box without a map) against the real
daemon, its own PostgreSQL cluster and a nats-server -js, while this script:

  * SIGKILLs the daemon at random moments (--kills, 20) and starts it again
    on the same address at once, as a service manager would;
  * stops PostgreSQL for --pg-outage seconds (30), once fast and once
    immediate (a crash);
  * stops NATS for --nats-outage seconds (30).

After each fault it measures the recovery: /readyz back, the first ride
booked after it, and (after a database outage or a restart) the time until
every connected driver is, in the daemon's memory, where the database says it
is (GET /v1/admin/presence against drivers.status/version): a driver the
daemon holds as offered, or not at all available, while the database says
available, gets no offer. A divergence that outlives --idle-bound seconds (20)
is a driver stuck.

When the simulator has finished, it checks, in PostgreSQL and on JetStream:
  trips_lost          rides the daemon answered 201 (its log) missing from the
                      database, or fewer trips than the simulator got 201s
  double_dispatch     a driver or a rider with two trips active at once, or a
                      trip matched twice
  history_breaks      a trip whose history is not gapless (seq 1..version, each
                      step from where the last one left, legal edges) or does not
                      end in its current state
  drivers_stuck       drivers stuck after a fault (above), and at the end any
                      driver offered (in memory or in the database) once every
                      offer has timed out, any driver en_route or on_trip
                      without an active trip, any record at odds with the database
  events_lost         outbox rows not on the stream (by event_id)
  events_duplicated   event_ids on the stream more than once
  events_out_of_order a trip's events on the stream not in aggregate_seq order
  sim_protocol_errors, sim_invariant_breaches: what the simulator saw

and prints every figure as name=value, then exits 1 if any of those is not 0,
if the simulator failed, or if the daemon was not ready within --ready-bound
seconds after a fault. --short is the version make check runs: 3 kills and
one 5 s database outage (fast), no map, about two minutes.
"""
import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from conftest import ADMIN_TOKEN, Daemon, NatsServer, PgCluster, free_port  # noqa: E402

SHARED_DATA = Path(os.environ.get("SHARED_DATA", str(ROOT.parent / "shared" / "data")))
MIDTOWN = SHARED_DATA / "osm" / "nyc-midtown-2025.osm.pbf"
UBER = SHARED_DATA / "trips" / "uber-nyc-pickups-apr14-first65k.csv"
TAXI = SHARED_DATA / "trips" / "nyc-taxi-2016-statsmaths-10k.csv"
MIDTOWN_BOX = "-74.0140,40.7360,-73.9630,40.7590"
SMALL_BOX = "-122.3050,37.8060,-122.2930,37.8170"  # West Oakland, straight lines


def log(msg):
    print(f"# chaos {time.strftime('%H:%M:%S')}: {msg}", flush=True)


class City:
    """The daemon (started again after each kill), its database, NATS."""

    def __init__(self, args, work):
        self.args = args
        self.work = work
        self.pg = PgCluster()  # (its own directory under /tmp: the cluster may run as another user)
        self.db = self.pg.create_db("chaos")
        self.nats = NatsServer().start()
        self.port = free_port()
        self.env = {
            "RIDEHAIL_HTTP_LISTEN": f"127.0.0.1:{self.port}",
            "RIDEHAIL_LOG_LEVEL": "info",
            "RIDEHAIL_EVENTS_URL": self.nats.url,
            "RIDEHAIL_DATABASE_RECONNECT_MAX": "1s",
            "RIDEHAIL_PRESENCE_NEARBY_MAX_LIMIT": "10000",
            "RIDEHAIL_TRIP_RIDES_PER_MINUTE": "60",
            # the simulated clock runs faster than the wall's: pings report
            # that much speed
            "RIDEHAIL_MATCH_METER_MAX_SPEED": "1000",
        }
        if args.map:
            self.env["RIDEHAIL_ROUTING_MAP"] = str(args.map)
        self.daemon = None
        self.runs = []

    def start(self):
        d = Daemon(self.work / "daemon", env=self.env, db_url=self.pg.url(self.db))
        d.start(wait_ready=False, timeout=30)
        d.db = self.db
        self.daemon = d
        self.runs.append(d)
        return d

    def kill(self):
        self.daemon.proc.kill()
        self.daemon.proc.wait()
        self.daemon.logf.close()

    def get(self, path, timeout=2):
        return self.daemon.request("GET", path, headers={"Authorization": "Bearer " + ADMIN_TOKEN}, timeout=timeout)

    def ready(self):
        try:
            return self.daemon.get("/readyz", timeout=1).status == 200
        except OSError:
            return False

    def sql(self, q, params=None):
        return self.pg.query(self.db, q, params)

    def stop(self):
        if self.daemon and self.daemon.proc and self.daemon.proc.poll() is None:
            self.daemon.stop(expect_code=None)
        self.nats.destroy()
        self.pg.destroy()


def wait_until(pred, timeout, interval=0.1):
    t0 = time.time()
    while time.time() - t0 < timeout:
        v = pred()
        if v:
            return time.time() - t0
        time.sleep(interval)
    return None


# ---------------------------------------------------------------- drivers in memory and in the database

def divergence(city):
    """Connected drivers whose record in the daemon's memory is at odds with
    the database (status, version); (driver -> database version)."""
    try:
        r = city.get("/v1/admin/presence?limit=100000")
        if r.status != 200:
            return None
        mem = r.json()["drivers"]
    except (OSError, ValueError):
        return None
    try:
        db = {i: (s, v) for i, s, v in city.sql("SELECT id::text, status, version FROM drivers")}
    except Exception:  # the database away
        return None
    out = {}
    for m in mem:
        if not m["connected"]:
            continue
        st, ver = db.get(m["driver_id"], (None, None))
        if st is not None and (m["status"], m["version"]) != (st, ver):
            out[m["driver_id"]] = (m["status"], m["version"], st, ver)
    return out


def drivers_back(city, bound):
    """Seconds until no connected driver is at odds with the database in two
    polls in a row (a reservation in flight is, for a moment); the drivers
    still at odds after `bound` s are stuck."""
    t0 = time.time()
    prev = None
    while time.time() - t0 < bound:
        cur = divergence(city)
        if cur is not None:
            lasting = {k: v for k, v in cur.items() if prev is not None and prev.get(k) == v}
            if prev is not None and not lasting:
                return time.time() - t0, {}
            prev = cur
        time.sleep(1.0)
    cur = divergence(city) or {}
    return None, {k: v for k, v in cur.items() if prev and prev.get(k) == v}


# ---------------------------------------------------------------- the run

def sim_command(args, city, out):
    sim = [str(args.bindir / "ridehail-sim"), "--addr", f"127.0.0.1:{city.port}", "--admin-token", ADMIN_TOKEN,
           "--out", str(out), "--quiet", "--seed", str(args.seed), "--drivers", str(args.drivers),
           "--riders", str(args.riders), "--duration", str(args.duration), "--drain", str(args.drain),
           "--speed", str(args.speed), "--patience", "900"]
    if args.map:
        sim += ["--map", str(args.map), "--bbox", MIDTOWN_BOX, "--margin", "250", "--cruise"]
        if UBER.exists():
            sim += ["--demand", "replay", "--csv", str(UBER), "--start", "2014-04-30 18:00:00",
                    "--window", "3600", "--compress", str(3600 / args.duration), "--demand-mult",
                    str(args.demand_mult)]
            if TAXI.exists():
                sim += ["--od", str(TAXI)]
        else:
            sim += ["--demand", "hotspots", "--rate", str(args.rate)]
    else:
        sim += ["--bbox", SMALL_BOX, "--demand", "hotspots", "--rate", str(args.rate), "--hotspots", "2",
                "--kmh", "30", "--cruise"]
    return sim


def schedule(args, rnd, span):
    """(at, kind) over the first `span` wall seconds of the run: the
    outages at fixed points, the kills at random moments between them (each
    clear of an outage and its recovery)."""
    events = []
    outages = []
    if args.pg_outage:
        outages += [("pg_fast", args.pg_outage)]
        if not args.short:
            outages += [("pg_immediate", args.pg_outage)]
    if args.nats_outage:
        outages += [("nats", args.nats_outage)]
    busy = []
    before, after = (5, 10) if args.short else (15, 35)
    for i, (kind, secs) in enumerate(outages):
        at = span * (i + 1) / (len(outages) + 1)
        events.append((at, kind, secs))
        busy.append((at - before, at + secs + after))
    kills = []
    tries = 0
    while len(kills) < args.kills and tries < 100000:
        tries += 1
        at = rnd.uniform(10, span)
        if any(a <= at <= b for a, b in busy) or any(abs(at - k) < args.kill_gap for k in kills):
            continue
        kills.append(at)
    events += [(at, "kill", 0) for at in kills]
    return sorted(events)


class Figures:
    def __init__(self):
        self.v = {}
        self.lists = {}

    def add(self, name, value):
        self.lists.setdefault(name, []).append(value)

    def put(self, name, value):
        self.v[name] = value

    def summary(self):
        out = dict(self.v)
        for name, vals in self.lists.items():
            vals = [x for x in vals if x is not None]
            if not vals:
                continue
            vals.sort()
            if len(vals) == 1:
                out[name] = vals[0]
            else:
                out[name + "_p50"] = vals[len(vals) // 2]
                out[name + "_max"] = vals[-1]
        return out


def first_booking_after(city, t0):
    """Seconds from t0 (wall) to the first trip requested after it (read
    once the run is over), or None."""
    r = city.sql("SELECT extract(epoch FROM min(requested_at)) FROM trips WHERE requested_at > to_timestamp(%s)", (t0,))
    return None if r[0][0] is None else round(float(r[0][0]) - t0, 2)


def run_fault(args, city, fig, kind, secs, stuck, ends):
    """One fault, and the recovery that can be measured at once; ends gets
    (kind, when it ended) for the first booking after it."""
    if kind == "kill":
        t0 = time.time()
        city.kill()
        city.start()
    elif kind.startswith("pg"):
        city.pg.stop("fast" if kind == "pg_fast" else "immediate")
        time.sleep(secs)
        t0 = time.time()
        city.pg.start()
    else:  # nats
        city.nats.stop()
        time.sleep(secs)
        t0 = time.time()
        city.nats.start()
    ends.append((kind, t0))
    name = "kill" if kind == "kill" else kind
    if kind == "nats":
        def caught_up():
            try:
                r = city.sql("SELECT COALESCE(extract(epoch FROM now() - min(occurred_at)), 0) FROM outbox"
                             " WHERE published_at IS NULL")
                return float(r[0][0]) < 2
            except Exception:
                return False
        took = wait_until(caught_up, 120, 0.25)
        fig.add("events_caught_up_after_nats_s", None if took is None else round(took, 2))
        return
    back = wait_until(city.ready, args.ready_bound)
    fig.add(f"readyz_back_after_{name}_s", None if back is None else round(time.time() - t0, 2))
    if back is None:
        fig.put("not_ready_after_fault", fig.v.get("not_ready_after_fault", 0) + 1)
        return
    took, left = drivers_back(city, args.idle_bound)
    fig.add(f"drivers_back_after_{name}_s", None if took is None else round(took, 2))
    stuck.update(left)


# ---------------------------------------------------------------- the checks afterwards

def check_trips(city, sim_created):
    ids = set()
    for d in city.runs:
        ids |= set(re.findall(r"trip ([0-9a-f-]{36}) requested", d.log()))
    have = {r[0] for r in city.sql("SELECT id::text FROM trips")}
    lost = len(ids - have)
    if sim_created is not None and sim_created > len(have):
        lost = max(lost, sim_created - len(have))
    return lost, len(ids), len(have)


def check_double(city):
    drivers = city.sql(
        "SELECT count(*) FROM (SELECT matched_at, lag(COALESCE(completed_at, cancelled_at, 'infinity'))"
        " OVER (PARTITION BY driver_id ORDER BY matched_at) AS prev_end FROM trips"
        " WHERE driver_id IS NOT NULL AND matched_at IS NOT NULL) x WHERE matched_at < prev_end")[0][0]
    riders = city.sql(
        "SELECT count(*) FROM (SELECT requested_at, lag(COALESCE(completed_at, cancelled_at, 'infinity'))"
        " OVER (PARTITION BY rider_id ORDER BY requested_at) AS prev_end FROM trips) x"
        " WHERE requested_at < prev_end")[0][0]
    twice = city.sql("SELECT count(*) FROM (SELECT trip_id FROM trip_events WHERE to_state = 'MATCHED'"
                     " GROUP BY trip_id HAVING count(*) > 1) x")[0][0]
    return drivers + riders + twice


LEGAL = {None: {"SEARCHING"}, "SEARCHING": {"MATCHED", "CANCELLED"}, "MATCHED": {"ARRIVED", "CANCELLED"},
         "ARRIVED": {"IN_PROGRESS", "CANCELLED"}, "IN_PROGRESS": {"COMPLETED", "CANCELLED"}}


def check_histories(city):
    trips = {i: (s, v) for i, s, v in city.sql("SELECT id::text, state, version FROM trips")}
    hist = {}
    for tid, seq, frm, to in city.sql("SELECT trip_id::text, seq, from_state, to_state FROM trip_events"
                                      " ORDER BY trip_id, seq"):
        hist.setdefault(tid, []).append((seq, frm, to))
    breaks = 0
    for tid, (state, version) in trips.items():
        h = hist.get(tid, [])
        prev, ok = None, len(h) == version
        for k, (seq, frm, to) in enumerate(h):
            if seq != k + 1 or frm != prev or to not in LEGAL.get(prev, set()):
                ok = False
            prev = to
        if prev != state:
            ok = False
        breaks += not ok
    return breaks, len(trips)


def check_drivers_at_end(city):
    stuck = {}
    for i, in city.sql("SELECT id::text FROM drivers WHERE status = 'offered'"):
        stuck[i] = "offered in the database with every offer over"
    for i, st in city.sql("SELECT d.id::text, d.status FROM drivers d WHERE d.status IN ('en_route', 'on_trip')"
                          " AND NOT EXISTS (SELECT 1 FROM trips t WHERE t.driver_id = d.id"
                          " AND t.state IN ('MATCHED', 'ARRIVED', 'IN_PROGRESS'))"):
        stuck[i] = f"{st} without an active trip"
    try:
        mem = city.get("/v1/admin/presence?limit=100000").json()["drivers"]
    except (OSError, ValueError):
        mem = []
    db = {i: (s, v) for i, s, v in city.sql("SELECT id::text, status, version FROM drivers")}
    for m in mem:
        st, ver = db.get(m["driver_id"], (None, None))
        if m["status"] == "offered" or m["unsure"] or m["reserving"]:
            stuck[m["driver_id"]] = f"held {m['status']} in memory with every offer over"
        elif st is not None and m["status"] != "offline" and (m["status"], m["version"]) != (st, ver):
            stuck[m["driver_id"]] = f"{m['status']}/{m['version']} in memory, {st}/{ver} in the database"
    return stuck


def check_events(city, bindir):
    wait_until(lambda: city.sql("SELECT count(*) FROM outbox WHERE published_at IS NULL")[0][0] == 0, 120, 0.5)
    rows = city.sql("SELECT event_id::text, aggregate_id::text, aggregate_seq FROM outbox")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIDEHAIL_")}
    env["RIDEHAIL_EVENTS_URL"] = city.nats.url
    r = subprocess.run([str(bindir / "ridehaild"), "--config", str(ROOT / "conf" / "ridehaild.conf"), "events", "tail",
                        "--all", "--idle-exit", "3s"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    got = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    seen = {}
    for e in got:
        seen[e["event_id"]] = seen.get(e["event_id"], 0) + 1
    want = {r[0]: (r[1], r[2]) for r in rows}
    lost = sum(1 for i in want if i not in seen)
    dup = sum(n - 1 for n in seen.values() if n > 1)
    last, order = {}, 0
    for e in got:
        agg, seq = want.get(e["event_id"], (None, None))
        if agg is None:
            continue
        if seq <= last.get(agg, 0):
            order += 1
        last[agg] = max(seq, last.get(agg, 0))
    return lost, dup, order, len(want), len(got), r.returncode


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--short", action="store_true", help="3 kills, one 5 s database outage, no map (make check)")
    ap.add_argument("--bindir", type=Path, default=ROOT / "bin")
    ap.add_argument("--out", type=Path, help="where logs and the simulator's report go (default: a temporary dir)")
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    ap.add_argument("--kills", type=int)
    ap.add_argument("--pg-outage", type=float)
    ap.add_argument("--nats-outage", type=float)
    ap.add_argument("--idle-bound", type=float, default=20.0,
                    help="seconds after a fault within which every connected driver is back in step (20)")
    ap.add_argument("--ready-bound", type=float, default=30.0, help="seconds within which /readyz answers 200 again")
    ap.add_argument("--drivers", type=int)
    ap.add_argument("--riders", type=int)
    ap.add_argument("--speed", type=float)
    ap.add_argument("--duration", type=float, help="simulated seconds of demand")
    ap.add_argument("--drain", type=float)
    ap.add_argument("--rate", type=float, help="requests per simulated hour (without the recorded demand)")
    ap.add_argument("--demand-mult", type=int, default=4)
    ap.add_argument("--kill-gap", type=float, help="wall seconds at least between two kills")
    ap.add_argument("--no-map", action="store_true")
    args = ap.parse_args()
    short = args.short
    defaults = dict(kills=3 if short else 20, pg_outage=5 if short else 30, nats_outage=0 if short else 30,
                    drivers=12 if short else 120, riders=24 if short else 240, speed=8 if short else 2,
                    duration=560 if short else 1320, drain=160 if short else 240, rate=300 if short else 600,
                    kill_gap=6 if short else 10)
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    args.map = None
    work = args.out or Path(tempfile.mkdtemp(prefix="rh-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    log(f"seed {args.seed}, work in {work}; the machine is shared: times are as measured under its load")
    rnd = random.Random(args.seed)
    if not short and not args.no_map:
        if MIDTOWN.exists():
            args.map = work / "midtown.map"
            r = subprocess.run([str(args.bindir / "ridehaild"), "-c", str(ROOT / "conf" / "ridehaild.conf"), "map",
                                "import", str(MIDTOWN), "-o", str(args.map)], capture_output=True, text=True, cwd=ROOT)
            if r.returncode != 0:
                sys.exit(f"chaos: map import failed: {r.stderr}")
        else:
            log(f"{MIDTOWN} is absent: the city runs without a map (straight lines in a box)")
    city = City(args, work)
    fig = Figures()
    stuck = {}
    ends = []
    sim = None
    code = 0
    try:
        city.start()
        if wait_until(city.ready, 60) is None:
            sys.exit("chaos: the daemon did not become ready:\n" + city.daemon.log()[-3000:])
        out = work / "sim"
        cmd = sim_command(args, city, out)
        simlog = open(work / "sim.log", "w")
        sim = subprocess.Popen(cmd, stdout=simlog, stderr=subprocess.STDOUT, cwd=ROOT)
        # the run starts once every account is online
        if wait_until(lambda: city.sql("SELECT count(*) FROM trips")[0][0] > 0 or sim.poll() is not None, 180) is None:
            sys.exit("chaos: the simulated city never booked a ride")
        t_run = time.time()
        span = args.duration / args.speed - 10
        plan = schedule(args, rnd, span)
        log("plan: " + ", ".join(f"{k}{'' if k == 'kill' else f' {s:.0f}s'} at {a:.0f}s" for a, k, s in plan))
        for at, kind, secs in plan:
            delay = t_run + at - time.time()
            if delay > 0:
                time.sleep(delay)
            if sim.poll() is not None:
                log("the simulator ended before the faults did")
                break
            log(f"{kind} {'' if kind == 'kill' else f'for {secs:.0f}s'}")
            run_fault(args, city, fig, kind, secs, stuck, ends)
        fig.put("kills", sum(1 for k, _ in ends if k == "kill"))
        rc = sim.wait(timeout=args.duration / args.speed + args.drain / args.speed + 600)
        simlog.close()
        summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
        fig.put("sim_exit", rc)
        fig.put("sim_protocol_errors", summary.get("protocol_errors", -1))
        fig.put("sim_invariant_breaches", summary.get("invariant_breaches", -1))
        fig.put("sim_created", summary.get("created", -1))
        fig.put("sim_completed", summary.get("completed", -1))
        # every offer times out (the longest, 15 s), then nothing is offered
        time.sleep(20)
        for kind, t0 in ends:
            fig.add(f"first_booking_after_{kind}_s", first_booking_after(city, t0))
        lost, logged, in_db = check_trips(city, summary.get("created"))
        fig.put("trips_lost", lost)
        fig.put("trips_in_database", in_db)
        fig.put("double_dispatch", check_double(city))
        breaks, ntrips = check_histories(city)
        fig.put("history_breaks", breaks)
        end = check_drivers_at_end(city)
        for k, v in end.items():
            stuck.setdefault(k, v)
        fig.put("drivers_stuck", len(stuck))
        elost, edup, eorder, nrows, nmsgs, tail_rc = check_events(city, args.bindir)
        fig.put("events_lost", elost)
        fig.put("events_duplicated", edup)
        fig.put("events_out_of_order", eorder)
        fig.put("events_in_outbox", nrows)
        if tail_rc != 0:
            fig.put("events_tail_failed", 1)
        for d in city.runs:
            d.check_log()
        s = fig.summary()
        for k in sorted(s):
            v = s[k]
            print(f"{k}={round(v, 2) if isinstance(v, float) else ('n/a' if v is None else v)}")
        for k, v in stuck.items():
            log(f"stuck: driver {k}: {v}")
        breach = [k for k in ("trips_lost", "double_dispatch", "history_breaks", "drivers_stuck", "events_lost",
                              "events_duplicated", "events_out_of_order", "sim_protocol_errors",
                              "sim_invariant_breaches", "sim_exit", "not_ready_after_fault", "events_tail_failed")
                  if s.get(k, 0) not in (0, None)]
        missing = [k for k, v in s.items() if k.startswith("readyz_back") and v is None]
        if breach or missing:
            log("FAILED: " + ", ".join(breach + missing) + f" (logs and the simulator's report in {work})")
            code = 1
        else:
            log(f"passed (logs in {work})")
    finally:
        if sim and sim.poll() is None:
            sim.send_signal(signal.SIGTERM)
            try:
                sim.wait(timeout=30)
            except subprocess.TimeoutExpired:
                sim.kill()
        city.stop()
        if not args.out and code == 0:
            shutil.rmtree(work, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
