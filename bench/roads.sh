#!/usr/bin/env bash
# make bench-roads: routing on a real city, in one run.
#
#   import    `map import` of the extract; map_load_ms to load the prepared
#             map (validation, reverse graph and snapping grid included);
#             bytes_per_node of the loaded graph.
#   route     single queries between random points that snap onto the map
#             (route_p50_us, route_p99_us: snapping, search and geometry, as
#             GET /v1/route does it) and the plain Dijkstra reference;
#             eta16_*: 16 drivers to one pickup in one many-to-one query.
#   pgrouting the same pairs through pgr_dijkstra on the same extract
#             imported with osm2pgrouting (PGR_PAIRS of them, default 200)
#             in a throwaway PostgreSQL: route_vs_pgrouting is how many
#             times faster we answer; pgrouting_max_diff_pct the largest gap
#             between the two shortest distances.
#
# CITY (default ../shared/data/osm/nyc-midtown-2025.osm.pbf), PAIRS, SEED.
# estimates_routed_vs_nginx needs GET /v1/estimate, which is not built yet:
# the figure is left out until it is.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
CITY=${CITY:-$repo/../shared/data/osm/nyc-midtown-2025.osm.pbf}
PAIRS=${PAIRS:-10000}
SEED=${SEED:-$(date +%s)}
PGR_PAIRS=${PGR_PAIRS:-200}
if [ ! -f "$CITY" ]; then
	echo "bench-roads: $CITY is absent: skipped (set CITY= to an .osm.pbf)"
	exit 0
fi
make -s all build/release/bench/roads_micro
tmp=$(mktemp -d /tmp/ridehail-bench-roads.XXXXXX)
chmod 755 "$tmp"
dbport=""
cleanup() {
	[ -n "$dbport" ] && LOCALDB_DIR=$tmp/pg LOCALDB_PORT=$dbport scripts/localdb.sh destroy >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT
echo "city=$(basename "$CITY")"
build/release/bench/roads_micro "$CITY" "$PAIRS" "$SEED" "$tmp/pairs.csv" | tee "$tmp/micro.txt"
mem_kb=$( { /usr/bin/time -f "%M" bin/ridehaild map import "$CITY" -o "$tmp/city.map" >/dev/null; } 2>&1 | tail -1)
echo "import_peak_rss_mb=$((mem_kb / 1024))"

if [ -x bench/roads_pgrouting.sh ]; then
	p50=$(awk -F= '$1 == "route_p50_us" {print $2}' "$tmp/micro.txt")
	TMP=$tmp PGR_PAIRS=$PGR_PAIRS OUR_P50_US=$p50 CITY=$CITY bench/roads_pgrouting.sh || echo "route_vs_pgrouting=n/a (pgRouting run failed)"
else
	echo "route_vs_pgrouting=n/a"
fi
echo "estimates_routed_vs_nginx=n/a (GET /v1/estimate not built yet)"
