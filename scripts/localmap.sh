#!/usr/bin/env bash
# The local default road map: West Oakland, the small real OpenStreetMap
# extract Debian ships in python-osmnx-doc. Fetched with apt-get download and
# unpacked with dpkg -x under var/ (never committed), imported once into
# var/west-oakland.map; later runs reuse it (re-imported after a rebuild, in
# case the map format changed: it takes milliseconds). Prints the map's path.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
bin=${RIDEHAILD:-bin/ridehaild}
conf=${CONFIG:-conf/ridehaild.conf}
map=var/west-oakland.map
osm=var/osmnx/usr/share/doc/python-osmnx-doc/examples/tests/input_data/West-Oakland.osm.bz2
if [ ! -s "$map" ] || [ "$bin" -nt "$map" ]; then # a new build may read a new map format
	if [ ! -s "$osm" ]; then
		mkdir -p var/osmnx
		(cd var/osmnx && rm -f python-osmnx-doc_*.deb && apt-get download -q python-osmnx-doc >&2 &&
			dpkg -x python-osmnx-doc_*.deb .)
	fi
	"$bin" --config "$conf" map import "$osm" -o "$map" >&2
fi
echo "$map"
