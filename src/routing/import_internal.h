/* What the import's two files share (import.c reads the extract and builds
 * the road graph, turns.c the turn restrictions and the turn graph): the
 * extract as read and the restrictions in road edges. Internal to
 * src/routing/. */
#ifndef RH_ROUTING_IMPORT_INTERNAL_H
#define RH_ROUTING_IMPORT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "graph.h"

#define NONE UINT32_MAX

struct osm_node {
	long long id;
	int32_t lat_e7, lon_e7;
};

struct osm_way {
	long long id;
	size_t first, count; /* into refs */
	uint8_t fwd, bwd, cls;
	float kmh;
};

/* A restriction relation as read: its members' ids, resolved once every
 * node and way is in. */
struct osm_restr {
	long long id;
	uint8_t kind; /* RMAP_NO, RMAP_ONLY */
	bool u_turn;
	size_t first, nfrom, nvia, nto; /* into rrefs: from ways, via (node or ways), to ways */
	bool via_node;
};

struct importer {
	const struct routing_cfg *cfg;
	struct osm_node *nodes;
	size_t nnodes, capnodes;
	long long *refs;
	size_t nrefs, caprefs;
	struct osm_way *ways;
	size_t nways, capways;
	size_t all_ways;
	struct osm_restr *restr;
	size_t nrestr, caprestr;
	long long *rrefs;
	size_t nrrefs, caprrefs;
	size_t restr_other; /* relations of type restriction not for cars or conditional */
};

#define GROW(arr, n, cap)                                                        \
	do {                                                                     \
		if ((n) == (cap)) {                                              \
			(cap) = (cap) ? (cap) * 2 : 4096;                        \
			(arr) = rh_realloc((arr), (cap) * sizeof *(arr));        \
		}                                                                \
	} while (0)

/* A growable list of 32-bit numbers. */
struct u32_list {
	uint32_t *v;
	uint32_t n, cap;
};

/* The restrictions in road edges (records as in the map file) and the
 * counts the import reports. */
struct import_turns {
	struct mapfile_restriction *rs;
	size_t nrs, caprs;
	struct u32_list via;
	size_t relations_applied, relations_skipped;
};

/* The index of OSM node id in im->nodes (sorted by id), or SIZE_MAX. */
size_t import_node_find(const struct importer *im, long long id);

/* turns.c: each restriction relation -> records in road edges (final: OSM
 * node index -> node of d, NONE if left out), then the turn graph of d's
 * roads under them, stored in d. */
void import_restrictions(const struct importer *im, const uint32_t *final, const struct mapfile_data *d,
			 struct import_turns *t);
void import_turn_graph(struct mapfile_data *d, struct import_turns *t);
void import_turns_fini(struct import_turns *t);

#endif
