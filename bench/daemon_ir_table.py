#!/usr/bin/env python3
"""daemon_ir_table.py RUN [--base BASE_RUN]: bench/daemon_ir.sh's figures.

Each run directory holds one callgrind dump per phase (<phase>.cg) and the
load's summary.json (items per phase). For each phase:
  total     the dump's instructions (everything the daemon executed between
            callgrind_control -z and --dump, all threads)
  periodic  the inclusive instructions of the clock-driven sweeps (the
            presence grid's, the WebSocket hub's, the database queue's, the
            relay's statistics): how many ran depends on how long the phase
            took under valgrind, not on the load
  per item  (total - periodic) / items
The idle phase is printed per second, sweeps included (that is its load).

  daemon_ir_table.py RUN [--base BASE]         name=value lines
  daemon_ir_table.py --diff A.cg B.cg NA NB [N]  the functions whose exclusive
                                               instructions per item changed most
"""
import argparse
import collections
import json
import os
import re
import subprocess
import sys

# a clock-driven sweep, whatever its module calls it
PERIODIC = re.compile(r"(^|_)(sweep|sweep_cb|stats_cb)$")
LINE = re.compile(r"^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(\S.*?):(\S+?)(?: \[(.*)\])?$")
PHASES = (("book", "daemon_ir_book"), ("pings", "daemon_ir_ping"), ("estimate", "daemon_ir_estimate"),
          ("nearby", "daemon_ir_nearby"))


def annotate(path, inclusive):
    out = subprocess.run(["callgrind_annotate", "--inclusive=" + ("yes" if inclusive else "no"),
                          "--threshold=100", "--auto=no", path], capture_output=True, text=True,
                         check=True).stdout
    d = collections.Counter()
    body = out.split("file:function", 1)[1]
    for line in body.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        ir = int(m.group(1).replace(",", ""))
        f, fn = os.path.basename(m.group(2)), re.sub(r"'\d+$", "", m.group(3))  # recursion levels
        if inclusive:
            d[(f, fn)] = max(d[(f, fn)], ir)
        else:
            d[(f, fn)] += ir
    return d


def total(path):
    with open(path) as fh:
        for line in fh:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    raise SystemExit("daemon_ir: no total in " + path)


def periodic(path):
    # by name over every file: a static callback's inlined helpers are
    # charged to their header but belong to it
    inc = annotate(path, True)
    return sum(v for k, v in inc.items() if PERIODIC.search(k[1]) and k[0].endswith(".c"))


def figures(run):
    s = json.load(open(os.path.join(run, "summary.json")))
    fig = {}
    for phase, name in PHASES:
        p = os.path.join(run, phase + ".cg")
        n = s[phase]["items"]
        fig[name] = (total(p) - periodic(p)) / n
    fig["daemon_ir_idle_per_s"] = total(os.path.join(run, "idle.cg")) / s["idle"]["seconds"]
    return fig


def exclusive(path):
    # a dump taken mid-run charges the frames on the stack at that moment
    # (main ... event_base_dispatch) with the whole: not theirs
    e = annotate(path, False)
    t = total(path)
    return collections.Counter({k: v for k, v in e.items() if v < 0.9 * t and not PERIODIC.search(k[1])})


def diff(a, b, na, nb, top):
    ea, eb = exclusive(a), exclusive(b)
    rows = sorted(((eb[k] / nb - ea[k] / na, k) for k in set(ea) | set(eb)), key=lambda x: -abs(x[0]))
    print("| function (file) | A per item | B per item | change |")
    print("|---|---:|---:|---:|")
    for delta, k in rows[:top]:
        print("| `%s` (%s) | %.0f | %.0f | %+.0f |" % (k[1], k[0], ea[k] / na, eb[k] / nb, delta))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--diff":
        diff(sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5]),
             int(sys.argv[6]) if len(sys.argv) > 6 else 25)
        return
    p = argparse.ArgumentParser()
    p.add_argument("run")
    p.add_argument("--base")
    a = p.parse_args()
    this = figures(a.run)
    base = figures(a.base) if a.base else None
    for k, v in this.items():
        print("%s=%.0f" % (k, v))
        if base:
            print("%s_base=%.0f" % (k, base[k]))
            print("%s_vs_base=%.3f" % (k, v / base[k]))


if __name__ == "__main__":
    main()
