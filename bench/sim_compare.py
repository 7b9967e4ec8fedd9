#!/usr/bin/env python3
"""The simulator's runs side by side (bench/sim.sh): one name=value line per
figure and run, the gains between runs, and a table of every run's figures.

    bench/sim_compare.py [--table FILE] [--gain NAME=FIGURE:BASE,OTHER]... RUN=summary.json...

Each RUN is a name (greedy, batch, solo, shared...) and the summary.json its
run of bin/ridehail-sim wrote. For every run it prints
pickup_wait_mean_s_RUN, match_time_p95_s_RUN, completed_pct_RUN,
deadhead_km_per_trip_RUN, and with a shared demand the share figures. A gain
is how much lower FIGURE is in OTHER than in BASE, in percent of BASE:
`--gain batch_wait_gain_pct=pickup_wait_mean_s:greedy,batch`.
"""
import json
import sys

FIGURES = [
    # (name, how to read it from summary.json, format)
    ("pickup_wait_mean_s", lambda s: s["pickup_wait_s"]["mean"], "%.1f"),
    ("pickup_wait_p95_s", lambda s: s["pickup_wait_s"]["p95"], "%.1f"),
    ("match_time_p95_s", lambda s: s["time_to_match_s"]["p95"], "%.1f"),
    ("completed_pct", lambda s: s["completed_pct"], "%.1f"),
    ("deadhead_km_per_trip", lambda s: s["deadhead_km_per_trip"], "%.3f"),
    ("requests", lambda s: s["requests"], "%d"),
    ("completed", lambda s: s["completed"], "%d"),
    ("cancelled", lambda s: s["cancelled"], "%d"),
    ("utilisation", lambda s: s["driver_utilisation"], "%.3f"),
    ("suggestions", lambda s: s["reposition"]["suggestions"], "%d"),
    ("suggestions_followed_pct", lambda s: s["reposition"]["followed_pct"], "%.1f"),
    ("vkm_per_pkm", lambda s: s["share"]["vkm_per_pkm"], "%.3f"),
    ("share_booked", lambda s: s["share"]["booked"], "%d"),
    ("share_dropped_off", lambda s: s["share"]["dropped_off"], "%d"),
    ("share_detour_p95_pct", lambda s: s["share"]["detour_pct"]["p95"], "%.1f"),
    ("share_wait_p95_s", lambda s: s["share"]["wait_s"]["p95"], "%.1f"),
    ("share_riders_per_trip", lambda s: s["share"]["riders_per_trip"], "%.2f"),
]


def figure(summary, name):
    for n, get, _ in FIGURES:
        if n == name:
            try:
                return get(summary)
            except (KeyError, TypeError):
                return None
    raise SystemExit(f"sim_compare: no figure {name}")


def main(argv):
    table, gains, runs = None, [], []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--table":
            table = argv[i + 1]
            i += 2
            continue
        if a == "--gain":
            name, rest = argv[i + 1].split("=", 1)
            fig, pair = rest.split(":", 1)
            base, other = pair.split(",", 1)
            gains.append((name, fig, base, other))
            i += 2
            continue
        name, path = a.split("=", 1)
        with open(path) as f:
            runs.append((name, json.load(f)))
        i += 1
    if not runs:
        raise SystemExit(__doc__)
    got = {name: s for name, s in runs}
    rows = []
    for fname, _, fmt in FIGURES:
        vals = [figure(s, fname) for _, s in runs]
        if all(v is None for v in vals):
            continue
        if fname.startswith("share_") or fname == "vkm_per_pkm":
            if all(not v for v in vals):
                continue
        rows.append((fname, [("-" if v is None else fmt % v) for v in vals]))
        for (name, _), v in zip(runs, vals):
            if v is not None:
                print(f"{fname}_{name}={fmt % v}")
    for gname, fig, base, other in gains:
        a, b = figure(got[base], fig), figure(got[other], fig)
        v = 100.0 * (a - b) / a if a else 0.0
        print(f"{gname}={v:.1f}")
        rows.append((f"{gname} ({other} vs {base})", [f"{v:.1f}"] + [""] * (len(runs) - 1)))
    if table:
        w = max(len(r[0]) for r in rows)
        with open(table, "w") as f:
            f.write(f"{'figure':<{w}}  " + "  ".join(f"{n:>12}" for n, _ in runs) + "\n")
            for fname, vals in rows:
                f.write(f"{fname:<{w}}  " + "  ".join(f"{v:>12}" for v in vals) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
