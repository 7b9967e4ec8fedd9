/* Inside the routing module: the map file layout and the in-memory graph.
 * Nothing outside src/routing includes this. */
#ifndef RH_ROUTING_GRAPH_H
#define RH_ROUTING_GRAPH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "routing/routing.h"

/* Map file: a 64-byte header, then the body, all little-endian:
 *   int32  lat_e7[n], lon_e7[n]          degrees x 1e7
 *   uint8  role[n]                       RMAP_FROM: a route may start here (reaches the
 *                                        strongly connected core); RMAP_TO: may end here
 *   uint32 first_out[n + 1]              CSR: edges of node u are first_out[u] .. first_out[u+1]-1
 *   uint32 to[m], time_ms[m], dist_mm[m]
 * then the contraction hierarchy of each metric (time, then distance):
 *   uint32 nup, ndown, rank[n], first_up[n + 1], first_down[n + 1]
 *   ch_edge up[nup], down[ndown]
 * The header carries the counts, the body's length and its BLAKE2b-256, so a
 * truncated or altered file is refused before any of it is used. */
#define RMAP_MAGIC "RHROADS\x01"
#define RMAP_VERSION 2u
#define RMAP_HEADER_SIZE 64u
#define RMAP_HASH_SIZE 32u
#define RMAP_FROM 1u
#define RMAP_TO 2u
#define RMAP_MAX_NODES (1u << 28)
#define RMAP_MAX_EDGES (1u << 30)

struct rmap_header {
	char magic[8];
	uint32_t version;
	uint32_t flags;
	uint32_t nodes;
	uint32_t edges;
	uint64_t body_len;
	uint8_t hash[RMAP_HASH_SIZE];
};

/* The graph part of the body; the hierarchies follow it. */
static inline uint64_t rmap_body_len(uint64_t n, uint64_t m)
{
	return n * 9 + (n + 1) * 4 + m * 12;
}

/* What a search minimises on an edge: milliseconds or millimetres (labels
 * are 32 bits: routes up to 49 days or 4,294 km). */
static inline uint32_t rmap_weight(int metric, uint32_t time_ms, uint32_t dist_mm)
{
	return metric == 0 ? time_ms : dist_mm;
}

/* An edge of the hierarchy: to, weight, both quantities, and the node it
 * bypasses (NONE: a road segment). In `up` of x it is x->to; in `down` of x
 * it is to->x; either way rank[to] > rank[x] and rank[mid] < rank[x]. */
struct ch_edge {
	uint32_t to, w, time_ms, dist_mm, mid;
};

struct ch_graph {
	uint32_t n, nup, ndown;
	uint32_t *rank;
	uint32_t *first_up, *first_down;
	struct ch_edge *up, *down;
};

rh_err ch_build(uint32_t n, const uint32_t *first_out, const uint32_t *to, const uint32_t *time_ms,
		const uint32_t *dist_mm, int metric, struct ch_graph *out) RH_MUST_CHECK;
void ch_graph_fini(struct ch_graph *g);

/* Writes a complete map file from arrays already in CSR order (import.c). */
rh_err rmap_write(const char *path, uint32_t n, uint32_t m, const int32_t *lat_e7, const int32_t *lon_e7,
		  const uint8_t *role, const uint32_t *first_out, const uint32_t *to, const uint32_t *time_ms, const uint32_t *dist_mm,
		  const struct ch_graph ch[2], char *err, size_t errlen) RH_MUST_CHECK;

#endif
