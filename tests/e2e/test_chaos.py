"""make chaos, the short version: a simulated city while the daemon is
SIGKILLed three times and PostgreSQL is stopped for 5 s; afterwards no ride
that got a 201 is lost, nobody was dispatched twice, every trip's history is
whole, no driver is stuck, every event is on the stream once, and the
simulator saw no protocol error (tests/chaos/chaos.py)."""
import subprocess
import sys

from conftest import BINDIR, ROOT


def test_chaos_short(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "chaos" / "chaos.py"), "--short", "--bindir", str(BINDIR),
                        "--out", str(tmp_path / "chaos")], capture_output=True, text=True, timeout=900, cwd=ROOT)
    figures = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line and not line.startswith("#"))
    assert r.returncode == 0, f"chaos failed:\n{r.stdout[-4000:]}\n{r.stderr[-3000:]}"
    for k in ("trips_lost", "double_dispatch", "history_breaks", "drivers_stuck", "events_lost", "events_duplicated",
              "sim_protocol_errors", "sim_invariant_breaches"):
        assert figures.get(k) == "0", (k, figures)
    assert figures["kills"] == "3", figures
    assert int(figures["sim_created"]) > 0 and int(figures["trips_in_database"]) >= int(figures["sim_created"]), figures
    assert "readyz_back_after_pg_fast_s" in figures and "readyz_back_after_kill_s_max" in figures, figures
