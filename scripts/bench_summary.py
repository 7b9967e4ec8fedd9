#!/usr/bin/python3
"""The `make bench` summary: one table of figure, value, peer value, ratio and
goal over the areas of one run, and the same as JSON.

    bench_summary.py --goals bench/goals.tsv --dir DIR [--json OUT.json]
                     [--latest LATEST.json] [--quick 0|1] [--started ISO]
                     [--load-start "1.0 0.8 0.5"] area...

DIR holds, per area, <area>.out (the area's stdout: name=value lines and
"# note" lines) and <area>.rc (its exit code; absent = it did not finish),
optionally <area>.seconds. Prints the table; exits 1 when an area failed,
else 0 (a goal not met is a finding, not a failure).
"""
import argparse
import json
import math
import os
import re
import subprocess
import sys
import time

LINE = re.compile(r"^([a-z][a-z0-9_]*)=(.*)$")
GOAL = re.compile(r"^(>=|<=|>|<)\s*(-?[0-9.]+(?:e[+-]?[0-9]+)?)$")
SHOW_OP = {">=": "≥", "<=": "≤", ">": ">", "<": "<"}


def number(text):
    """A float for a numeric value, else None ("n/a (...)", "1,2,3", "")."""
    try:
        v = float(text.strip())
    except (ValueError, AttributeError):
        return None
    return v if math.isfinite(v) else None


def parse_output(text):
    """name=value lines into a dict (the last line of a name wins); "# note"
    lines and any other text (a reason for skipping, say) into a list."""
    figures, notes = {}, []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#") or not LINE.match(line):
            notes.append(line.lstrip("#").strip().removeprefix("note:").strip())
            continue
        m = LINE.match(line)
        if m:
            figures[m.group(1)] = m.group(2).strip()
    return figures, notes


def read_goals(path):
    rows = []
    with open(path) as f:
        header = None
        for n, raw in enumerate(f, 1):
            line = raw.rstrip("\n")
            if not line.strip() or line.startswith("#"):
                continue
            cols = line.split("\t")
            if header is None:
                header = cols
                continue
            if len(cols) != len(header):
                raise SystemExit(f"{path}:{n}: {len(cols)} columns, the header has {len(header)}")
            row = {k: (None if v in ("-", "") else v) for k, v in zip(header, cols)}
            for k in ("goal", "ratio_goal"):
                if row[k] is not None and not GOAL.match(row[k]):
                    raise SystemExit(f"{path}:{n}: {k} {row[k]!r} is not like >=N, <=N, >N or <N")
            if row.get("quick", "yes") not in ("yes", "no"):
                raise SystemExit(f"{path}:{n}: quick must be yes or no")
            if row["better"] not in ("higher", "lower"):
                raise SystemExit(f"{path}:{n}: better must be higher or lower")
            rows.append(row)
    return rows


def meets(value, goal):
    op, bound = GOAL.match(goal).groups()
    bound = float(bound)
    return {">=": value >= bound, "<=": value <= bound, ">": value > bound, "<": value < bound}[op]


def show_goal(goal, ratio=False):
    op, bound = GOAL.match(goal).groups()
    return f"{SHOW_OP[op]} {fmt_ratio(float(bound)) + '×' if ratio else fmt(float(bound))}"


def fmt_ratio(v):
    if v is None:
        return "-"
    return f"{v:.2f}" if abs(v) < 10 else f"{v:,.0f}"


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if v == int(v) and abs(v) >= 100:
        return f"{int(v):,}"
    return f"{v:.3g}" if abs(v) < 100 else f"{v:,.0f}"


def summarise(goals, areas, quick=False):
    """areas: {name: {"status", "figures", ...}} -> list of table rows."""
    rows = []
    for g in goals:
        a = areas.get(g["area"])
        if a is None:
            continue
        figs = a["figures"]
        value = number(figs.get(g["figure"], ""))
        peer = number(figs.get(g["peer"], "")) if g["peer"] else None
        ratio = number(figs.get(g["ratio"], "")) if g["ratio"] else None
        row = {
            "area": g["area"], "figure": g["figure"], "unit": g["unit"], "better": g["better"],
            "value": value, "peer": g["peer"], "peer_value": peer, "ratio_name": g["ratio"],
            "ratio": ratio, "goal": g["goal"], "ratio_goal": g["ratio_goal"], "source": g["source"],
        }
        verdicts = []  # True / False per goal that could be judged
        peer_absent = g["peer"] is not None and peer is None
        if value is not None and g["goal"]:
            verdicts.append(meets(value, g["goal"]))
        if g["ratio_goal"] and ratio is not None:
            verdicts.append(meets(ratio, g["ratio_goal"]))
        if a["status"] == "failed":
            status = "FAILED"
        elif a["status"] == "skipped" or value is None and not figs:
            status = "absent"
        elif value is None:
            status = "missing"
        elif quick and g.get("quick") == "no" and (g["goal"] or g["ratio_goal"]):
            status = "not judged (quick)"
        elif False in verdicts:
            status = "not met"
        elif peer_absent and g["ratio_goal"]:
            status = "peer absent"
        elif verdicts:
            status = "met"
        else:
            status = "peer absent" if peer_absent else ""
        row["status"] = status
        row["peer_absent"] = peer_absent
        rows.append(row)
    return rows


def table(rows):
    head = ["area", "figure", "value", "peer", "peer value", "ratio", "goal", "status"]
    lines = []
    for r in rows:
        goal = []
        if r["goal"]:
            goal.append(show_goal(r["goal"]))
        if r["ratio_goal"]:
            goal.append(show_goal(r["ratio_goal"], ratio=True))
        if r["peer_absent"]:
            peer_value, ratio = "peer absent", "-"
        else:
            peer_value = fmt(r["peer_value"])
            ratio = fmt_ratio(r["ratio"]) if r["ratio_name"] else "-"
        value = fmt(r["value"])
        if r["value"] is not None and r["unit"]:
            value += " " + r["unit"]
        lines.append([r["area"], r["figure"], value, r["peer"] or "-", peer_value, ratio,
                      ", ".join(goal) or "-", r["status"] or "-"])
    widths = [max(len(x) for x in col) for col in zip(head, *lines)] if lines else [len(h) for h in head]
    out = []
    for n, cells in enumerate([head] + lines):
        out.append("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def git_rev(repo):
    try:
        rev = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip() != ""
        return rev, dirty
    except (OSError, subprocess.CalledProcessError):
        return "unknown", None


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return [float(x) for x in f.read().split()[:3]]
    except OSError:
        return None


def shared_peers(path):
    """{"<script> <args>": {figures}} for each peer run kept by anchor()."""
    if not path or not os.path.isdir(path):
        return {}
    out = {}
    for name in sorted(os.listdir(path)):
        if name.endswith(".tmp"):
            continue
        with open(os.path.join(path, name), errors="replace") as f:
            figures, _ = parse_output(f.read())
        out[name] = {k: (number(v) if number(v) is not None else v) for k, v in figures.items()}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--goals", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--json")
    ap.add_argument("--latest")
    ap.add_argument("--quick", default="0")
    ap.add_argument("--started")
    ap.add_argument("--load-start")
    ap.add_argument("--peers-dir", help="QUICK=1: the peers measured once and shared (bench/lib/anchor.sh)")
    ap.add_argument("--repo", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("areas", nargs="+")
    args = ap.parse_args(argv)

    goals = read_goals(args.goals)
    areas = {}
    for name in args.areas:
        base = os.path.join(args.dir, name)
        try:
            with open(base + ".out", errors="replace") as f:
                text = f.read()
        except OSError:
            text = ""
        try:
            with open(base + ".rc") as f:
                rc = int(f.read().strip())
        except (OSError, ValueError):
            rc = None
        seconds = None
        try:
            with open(base + ".seconds") as f:
                seconds = float(f.read().strip())
        except (OSError, ValueError):
            pass
        figures, notes = parse_output(text)
        if rc != 0:
            status = "failed"
        elif not figures:
            status = "skipped"
        else:
            status = "ok"
        areas[name] = {"status": status, "exit_code": rc, "seconds": seconds,
                       "figures": {k: (number(v) if number(v) is not None else v) for k, v in figures.items()},
                       "notes": notes}
    # the registry works on the raw text of each figure
    raw = {n: {"status": a["status"], "figures": {k: str(v) for k, v in a["figures"].items()}}
           for n, a in areas.items()}
    rows = summarise(goals, raw, quick=args.quick == "1")

    print(table(rows))
    failed = [n for n, a in areas.items() if a["status"] == "failed"]
    for n, a in areas.items():
        if a["status"] == "failed":
            print(f"bench: area {n} FAILED (exit {a['exit_code']})")
        elif a["status"] == "skipped":
            print(f"bench: area {n} printed no figures (skipped: {'; '.join(a['notes']) or 'no reason given'})")

    if args.json:
        rev, dirty = git_rev(args.repo)
        doc = {
            "started": args.started,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "quick": args.quick == "1",
            "machine": {
                "nproc": os.cpu_count(),
                "loadavg_start": [float(x) for x in args.load_start.split()[:3]] if args.load_start else None,
                "loadavg_end": loadavg(),
                "git_rev": rev,
                "git_dirty": dirty,
                "kernel": os.uname().release,
            },
            "areas": areas,
            "peers_shared": shared_peers(args.peers_dir),
            "failed_areas": failed,
            "summary": rows,
        }
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json + ".tmp", "w") as f:
            json.dump(doc, f, indent=2, sort_keys=False)
            f.write("\n")
        os.replace(args.json + ".tmp", args.json)
        if args.latest:
            with open(args.latest + ".tmp", "w") as f:
                json.dump(doc, f, indent=2)
                f.write("\n")
            os.replace(args.latest + ".tmp", args.latest)
        print(f"bench: results in {os.path.relpath(args.json, args.repo)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
