#!/usr/bin/env bash
# `make bench` runs every benchmark area; `make bench-<area>` one of them.
# Each area is bench/<area>.sh, printing one name=value line per figure and
# its ratio against a peer measured in the same run (../shared/anchors/).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
area=${1:-all}
shopt -s nullglob
if [ "$area" = all ]; then
	scripts=(bench/*.sh)
	if [ ${#scripts[@]} -eq 0 ]; then
		echo "bench: no benchmark areas yet"
		exit 0
	fi
	for s in "${scripts[@]}"; do
		echo "== $(basename "$s" .sh)"
		"$s"
	done
	exit 0
fi
if [ ! -x "bench/$area.sh" ]; then
	echo "bench: no benchmark area \"$area\" (have: $(ls bench/*.sh 2>/dev/null | xargs -n1 basename 2>/dev/null | sed 's/\.sh$//' | tr '\n' ' '))" >&2
	exit 2
fi
exec "bench/$area.sh"
