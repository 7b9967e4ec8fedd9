#!/usr/bin/env bash
# `make bench` runs every benchmark area; `make bench-<area>` one of them.
# Each area is bench/<area>.sh, printing one name=value line per figure and
# its ratio against a peer measured in the same run (../shared/anchors/).
#
# Each area's output goes to the terminal as it comes; then one summary
# table (figure, value, peer value, ratio, goal, met or not: bench/goals.tsv
# says which is which) is printed and written as JSON to
# bench/results/<UTC time>.json (`make bench` also to bench/results/latest.json).
# An area that fails is shown as FAILED, the others still run, and the exit
# status is non-zero at the end.
#
# QUICK=1 (make bench QUICK=1): each area runs its reduced knobs (see the
# top of each bench/<area>.sh), and the PostgreSQL peer measured with the
# same arguments by an earlier area of the run is reused (bench/lib/anchor.sh).
#
# BENCH_DIR (default bench) and BENCH_RESULTS (default bench/results) point
# elsewhere for the summary's own test (tests/bench).
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
area=${1:-all}
QUICK=${QUICK:-0}
export QUICK
bdir=${BENCH_DIR:-bench}
results=${BENCH_RESULTS:-bench/results}
shopt -s nullglob
if [ "$area" = all ]; then
	areas=()
	for s in "$bdir"/*.sh; do areas+=("$(basename "$s" .sh)"); done
	if [ ${#areas[@]} -eq 0 ]; then
		echo "bench: no benchmark areas yet"
		exit 0
	fi
else
	if [ ! -x "$bdir/$area.sh" ]; then
		echo "bench: no benchmark area \"$area\" (have: $(ls "$bdir"/*.sh 2>/dev/null | xargs -n1 basename 2>/dev/null | sed 's/\.sh$//' | tr '\n' ' '))" >&2
		exit 2
	fi
	areas=("$area")
fi

stamp=$(date -u +%Y%m%dT%H%M%SZ)
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
load_start=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || true)
out=$(mktemp -d /tmp/ridehail-bench-run.XXXXXX)
trap 'rm -rf "$out"' EXIT
if [ "$QUICK" = 1 ]; then
	mkdir -p "$out/anchors"
	export BENCH_ANCHOR_CACHE=$out/anchors BENCH_ANCHOR_SHARE=${BENCH_ANCHOR_SHARE:-postgis.sh}
fi

for a in "${areas[@]}"; do
	echo "== $a$([ "$QUICK" = 1 ] && echo " (quick)")"
	t0=$(date +%s.%N)
	# stdout to the terminal and to the summary; stderr to the terminal only
	"$bdir/$a.sh" | tee "$out/$a.out"
	echo "${PIPESTATUS[0]}" >"$out/$a.rc"
	awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f\n", b - a}' >"$out/$a.seconds"
	[ "$(cat "$out/$a.rc")" = 0 ] || echo "bench: $a exited $(cat "$out/$a.rc")" >&2
done

if [ "$area" = all ]; then
	json=$results/$stamp.json
	latest=(--latest "$results/latest.json")
else
	json=$results/$stamp-$area.json
	latest=()
fi
echo
echo "== summary$([ "$QUICK" = 1 ] && echo " (QUICK=1: reduced knobs; ratios against peers measured in this run)")"
/usr/bin/python3 scripts/bench_summary.py --goals "$bdir/goals.tsv" --dir "$out" --json "$json" "${latest[@]}" \
	--quick "$QUICK" --started "$started" --load-start "$load_start" --peers-dir "${BENCH_ANCHOR_CACHE:-}" "${areas[@]}"
