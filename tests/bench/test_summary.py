"""The `make bench` summary (scripts/bench_summary.py, scripts/bench.sh) on
canned area output: the table's verdicts, the JSON, the exit status, and
that bench/goals.tsv names figures the areas really print. No daemon, no
database: `make check-bench-summary` (part of `make check`)."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import bench_summary  # noqa: E402

GOALS = """# a comment
area\tfigure\tunit\tbetter\tgoal\tpeer\tratio\tratio_goal\tquick\tsource
alpha\tspeed_per_s\t/s\thigher\t>=1000\tpeer_per_s\tspeed_vs_peer\t>=1.0\tyes\ttest
alpha\tlag_ms\tms\tlower\t<=5\t-\t-\t-\tno\ttest
alpha\tinfo_ms\tms\tlower\t-\t-\t-\t-\tyes\ttest
beta\tevents_per_s\t/s\thigher\t>=5000\t-\t-\t-\tyes\ttest
beta\trps\t/s\thigher\t-\tnginx_rps\trps_vs_nginx\t>=0.5\tyes\ttest
"""


def write_area(d, name, out, rc):
    (d / f"{name}.out").write_text(out)
    (d / f"{name}.rc").write_text(f"{rc}\n")


def run_summary(tmp_path, areas, *extra):
    goals = tmp_path / "goals.tsv"
    goals.write_text(GOALS)
    js = tmp_path / "results" / "run.json"
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_summary.py"), "--goals", str(goals),
                        "--dir", str(tmp_path), "--json", str(js), "--load-start", "0.5 0.4 0.3",
                        *extra, *areas], capture_output=True, text=True)
    return p, (json.loads(js.read_text()) if js.exists() else None)


def rows_by(doc):
    return {(r["area"], r["figure"], r["ratio_name"]): r for r in doc["summary"]}


def test_verdicts_and_json(tmp_path):
    write_area(tmp_path, "alpha", "localdb: starting\nspeed_per_s=1200\npeer_per_s=1500\nspeed_vs_peer=0.80\n"
               "lag_ms=4.5\ninfo_ms=n/a (not measured)\n# note: something worth saying\n", 0)
    write_area(tmp_path, "beta", "events_per_s=6000\nnginx_rps=100000\nrps=60000\nrps_vs_nginx=0.60\n", 0)
    p, doc = run_summary(tmp_path, ["alpha", "beta"])
    assert p.returncode == 0, p.stdout + p.stderr
    rows = rows_by(doc)
    # absolute goal met, ratio goal missed: not met
    r = rows[("alpha", "speed_per_s", "speed_vs_peer")]
    assert (r["value"], r["peer_value"], r["ratio"], r["status"]) == (1200, 1500, 0.8, "not met")
    assert rows[("alpha", "lag_ms", None)]["status"] == "met"
    assert rows[("alpha", "info_ms", None)]["status"] == "missing"  # "n/a" is not a number
    assert rows[("beta", "events_per_s", None)]["status"] == "met"
    assert rows[("beta", "rps", "rps_vs_nginx")]["status"] == "met"
    assert doc["failed_areas"] == []
    assert doc["areas"]["alpha"]["figures"]["speed_per_s"] == 1200
    assert doc["areas"]["alpha"]["figures"]["info_ms"] == "n/a (not measured)"
    assert "something worth saying" in doc["areas"]["alpha"]["notes"]
    m = doc["machine"]
    assert m["nproc"] == os.cpu_count() and m["loadavg_start"] == [0.5, 0.4, 0.3]
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", m["git_rev"])
    # the table: one line per registry row, under a header
    lines = p.stdout.splitlines()
    assert lines[0].split()[:3] == ["area", "figure", "value"]
    speed = next(line for line in lines if "speed_per_s" in line)
    assert "1,200 /s" in speed and "1,500" in speed and "0.80" in speed and speed.rstrip().endswith("not met")
    assert "≥ 1,000, ≥ 1.00×" in speed or "≥ 1,000, ≥ 1×" in speed


def test_failed_area_and_absent_peer(tmp_path):
    # alpha failed after printing one figure; beta's peer is absent
    write_area(tmp_path, "alpha", "speed_per_s=5000\n", 1)
    write_area(tmp_path, "beta", "events_per_s=100\nrps=60000\n# note: nginx anchor absent\n", 0)
    p, doc = run_summary(tmp_path, ["alpha", "beta"])
    assert p.returncode == 1
    assert doc["failed_areas"] == ["alpha"]
    rows = rows_by(doc)
    assert rows[("alpha", "speed_per_s", "speed_vs_peer")]["status"] == "FAILED"
    assert rows[("alpha", "lag_ms", None)]["status"] == "FAILED"
    assert rows[("beta", "events_per_s", None)]["status"] == "not met"
    r = rows[("beta", "rps", "rps_vs_nginx")]
    assert r["status"] == "peer absent" and r["peer_absent"] and r["ratio"] is None
    rps = next(line for line in p.stdout.splitlines() if " rps " in line)
    assert "peer absent" in rps
    assert "area alpha FAILED" in p.stdout


def test_area_that_did_not_finish_is_failed(tmp_path):
    (tmp_path / "alpha.out").write_text("speed_per_s=5000\n")  # no .rc: killed
    write_area(tmp_path, "beta", "bench-beta: data absent: skipped\n", 0)
    p, doc = run_summary(tmp_path, ["alpha", "beta"])
    assert p.returncode == 1
    assert doc["areas"]["alpha"]["status"] == "failed"
    assert doc["areas"]["beta"]["status"] == "skipped"
    assert rows_by(doc)[("beta", "events_per_s", None)]["status"] == "absent"
    assert "data absent: skipped" in p.stdout


def test_quick_run_leaves_scale_goals_unjudged(tmp_path):
    write_area(tmp_path, "alpha", "speed_per_s=1200\npeer_per_s=1000\nspeed_vs_peer=1.2\nlag_ms=9\n", 0)
    p, doc = run_summary(tmp_path, ["alpha"], "--quick", "1")
    assert p.returncode == 0 and doc["quick"] is True
    rows = rows_by(doc)
    assert rows[("alpha", "lag_ms", None)]["status"] == "not judged (quick)"
    assert rows[("alpha", "speed_per_s", "speed_vs_peer")]["status"] == "met"
    p, doc = run_summary(tmp_path, ["alpha"])
    assert rows_by(doc)[("alpha", "lag_ms", None)]["status"] == "not met"


def test_goal_syntax_is_checked(tmp_path):
    bad = tmp_path / "goals.tsv"
    bad.write_text(GOALS.replace(">=1000", "at least 1000"))
    with pytest.raises(SystemExit, match="not like"):
        bench_summary.read_goals(str(bad))


def test_meets():
    assert bench_summary.meets(5, "<=5") and not bench_summary.meets(5.01, "<=5")
    assert bench_summary.meets(2000, ">=2000") and not bench_summary.meets(1999, ">=2000")
    assert not bench_summary.meets(1000, "<1000") and bench_summary.meets(1001, ">1000")


def test_bench_sh_runs_every_area_and_exits_nonzero(tmp_path):
    """scripts/bench.sh all: a failing area is reported, the next still runs,
    the exit status says so, and the JSON lands in the results directory."""
    areas = tmp_path / "areas"
    areas.mkdir()
    (areas / "goals.tsv").write_text(GOALS)
    (areas / "alpha.sh").write_text("#!/bin/sh\necho speed_per_s=900\necho oops >&2\nexit 3\n")
    (areas / "beta.sh").write_text("#!/bin/sh\necho events_per_s=7000\necho rps=1\n")
    for f in ("alpha.sh", "beta.sh"):
        (areas / f).chmod(0o755)
    results = tmp_path / "results"
    env = dict(os.environ, BENCH_DIR=str(areas), BENCH_RESULTS=str(results), QUICK="1")
    p = subprocess.run([str(ROOT / "scripts" / "bench.sh"), "all"], capture_output=True, text=True, env=env)
    assert p.returncode != 0, p.stdout + p.stderr
    assert "== alpha (quick)" in p.stdout and "== beta (quick)" in p.stdout
    assert "events_per_s=7000" in p.stdout  # tee'd to the terminal
    latest = json.loads((results / "latest.json").read_text())
    assert latest["quick"] is True and latest["failed_areas"] == ["alpha"]
    assert latest["areas"]["alpha"]["exit_code"] == 3
    assert len(list(results.glob("2*.json"))) == 1
    # one area: its own part of the table, exit 0, no latest.json rewrite
    (results / "latest.json").unlink()
    p = subprocess.run([str(ROOT / "scripts" / "bench.sh"), "beta"], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "events_per_s" in p.stdout and "speed_per_s" not in p.stdout.split("== summary")[1]
    assert not (results / "latest.json").exists()


def test_registry_names_figures_the_areas_print():
    """Every row of bench/goals.tsv names an area that exists and figures its
    script (or the C program it runs) prints, so a renamed figure cannot
    silently leave the summary empty."""
    goals = bench_summary.read_goals(str(ROOT / "bench" / "goals.tsv"))
    assert goals
    sources = {p.name: p.read_text() for p in (ROOT / "bench").glob("*.c")}
    sources.update({p.name: p.read_text() for p in (ROOT / "tests" / "pgrouting").glob("*.py")})
    sources.update({p.name: p.read_text() for p in (ROOT / "bench").glob("*.py")})
    # (an area's script may hand part of its figures to a helper script)
    sources.update({p.name: p.read_text() for p in (ROOT / "bench").glob("*.sh")})
    for g in goals:
        script = ROOT / "bench" / f"{g['area']}.sh"
        assert script.exists(), g
        text = script.read_text() + "".join(sources.values())
        for k in ("figure", "peer", "ratio"):
            name = g[k]
            if name is None:
                continue
            # printed as "name=" by the script, a C printf or the comparison script,
            # or passed through from a peer's output (awk '$1 == "name"'), or by
            # a C printf("%s_p50_us=", "route")
            parts = name.split("_")
            composed = any(f'"{"_".join(parts[:i])}"' in text and f'%s_{"_".join(parts[i:])}=' in text
                           for i in range(1, len(parts)))
            # or by a Python f-string with a number in it (f"x_b{b}_us=")
            fstring = re.sub(r"\d+", r"\\{\\w+\\}", name) + "="
            assert composed or re.search(rf'\b{name}=|"{name}"|{fstring}', text), f"{g['area']}: {name} printed nowhere"


def test_anchor_shares_only_listed_peers(tmp_path):
    """bench/lib/anchor.sh: with a cache, a listed peer runs once per make bench
    and the second caller gets the same figures; an unlisted one runs each time."""
    anchors = tmp_path / "anchors"
    anchors.mkdir()
    for name in ("slow.sh", "fast.sh"):
        (anchors / name).write_text(f'#!/bin/sh\necho run >>"{tmp_path}/{name}.count"\necho "x_tps=$1"\n')
        (anchors / name).chmod(0o755)
    cache = tmp_path / "cache"
    cache.mkdir()
    script = (f'. "{ROOT}/bench/lib/anchor.sh"; anchor slow.sh 7; anchor slow.sh 7; anchor slow.sh 8; '
              'anchor fast.sh 1; anchor fast.sh 1; anchor absent.sh || echo absent')
    env = dict(os.environ, ANCHORS=str(anchors), BENCH_ANCHOR_CACHE=str(cache), BENCH_ANCHOR_SHARE="slow.sh")
    p = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["x_tps=7", "x_tps=7", "x_tps=8", "x_tps=1", "x_tps=1", "absent"]
    assert (tmp_path / "slow.sh.count").read_text().count("run") == 2  # 7 once, 8 once
    assert (tmp_path / "fast.sh.count").read_text().count("run") == 2
    assert "measured earlier in this run" in p.stderr
