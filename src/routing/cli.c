/* `ridehaild map import|calibrate`: the command line over routing_import()
 * and routing_calibrate(). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/settings.h"
#include "graph.h"

/* Same file (an existing output that is the input itself)? */
static bool import_same_file(const char *a, const char *b)
{
	struct stat sa, sb;
	return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static int import_cli(const struct routing_cfg *cfg, int argc, char **argv)
{
	const char *in = NULL, *out = NULL;
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "-o") == 0 && i + 1 < argc)
			out = argv[++i];
		else if (!in && argv[i][0] != '-')
			in = argv[i];
		else
			return -1;
	}
	if (!in || !out)
		return -1;
	if (import_same_file(in, out)) {
		fprintf(stderr, "ridehaild map import: %s is the extract itself: choose another output file\n", out);
		return 2;
	}
	char err[512];
	struct routing_stats st;
	if (routing_import(in, cfg, out, &st, err, sizeof err) != RH_OK) {
		fprintf(stderr, "ridehaild map import: %s\n", err);
		return 1;
	}
	printf("ridehaild map import: %s -> %s: %zu nodes, %zu edges kept (around the largest strongly connected "
	       "component), from %zu OSM nodes, %zu ways (%zu drivable); %zu turn restrictions honoured, %zu not "
	       "(conditional, not for cars, or off the kept roads); turn graph %zu nodes, %zu turns\n",
	       in, out, st.nodes, st.edges, st.osm_nodes, st.osm_ways, st.road_ways, st.restrictions,
	       st.restrictions_skipped, st.turn_nodes, st.turn_arcs);
	return 0;
}

static int calibrate_cli(const struct routing_cfg *cfg, int argc, char **argv)
{
	const char *map = NULL, *out = NULL, *tz = getenv("TZ");
	const char *trips[16];
	size_t ntrips = 0;
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--trips") == 0 && i + 1 < argc && ntrips < RH_ARRAY_LEN(trips))
			trips[ntrips++] = argv[++i];
		else if (strcmp(argv[i], "--tz") == 0 && i + 1 < argc)
			tz = argv[++i];
		else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc)
			out = argv[++i];
		else if (!map && argv[i][0] != '-')
			map = argv[i];
		else
			return -1;
	}
	if (!map)
		map = cfg->map;
	if (!map || !*map || ntrips == 0) {
		if (ntrips && (!map || !*map))
			fprintf(stderr, "ridehaild map calibrate: no map: name one, or set [routing] map\n");
		return ntrips ? 2 : -1;
	}
	if (!tz || !*tz)
		tz = "UTC";
	if (tz[0] == ':')
		tz++;
	if (!out)
		out = map;
	for (size_t i = 0; i < ntrips; i++)
		if (import_same_file(trips[i], out)) {
			fprintf(stderr, "ridehaild map calibrate: %s is a trip file: choose another output file\n", out);
			return 2;
		}
	char err[512];
	printf("ridehaild map calibrate: %s -> %s, trip times read as %s local time\n", map, out, tz);
	if (routing_calibrate(map, trips, ntrips, tz, cfg, out, stdout, err, sizeof err) != RH_OK) {
		fprintf(stderr, "ridehaild map calibrate: %s\n", err);
		return 1;
	}
	return 0;
}

int routing_map_cli(const struct routing_cfg *cfg, int argc, char **argv)
{
	int rc = -1;
	if (argc >= 2 && strcmp(argv[1], "import") == 0)
		rc = import_cli(cfg, argc, argv);
	else if (argc >= 2 && strcmp(argv[1], "calibrate") == 0)
		rc = calibrate_cli(cfg, argc, argv);
	if (rc >= 0)
		return rc;
	fprintf(stderr, "usage: ridehaild [-c conf] map import <extract.osm|.osm.pbf|.osm.gz|.osm.bz2> -o <file.map>\n"
			"       ridehaild [-c conf] map calibrate [<file.map>] --trips <trips.csv> [--trips ...] "
			"[--tz Area/City] [-o <out.map>]\n");
	return 2;
}
