/* UUIDs as 16 raw bytes in memory, canonical 8-4-4-4-12 lower-case text on
 * the wire. */
#ifndef RH_CORE_UUID_H
#define RH_CORE_UUID_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

struct uuid {
	unsigned char b[16];
};

/* Accepts the canonical form, either case. */
bool uuid_parse(const char *s, struct uuid *out);
/* Same, from a non-terminated string of length n. */
bool uuid_parse_n(const char *s, size_t n, struct uuid *out);
void uuid_format(const struct uuid *u, char out[37]);
/* Random (version 4). */
void uuid_v4(struct uuid *out);
static inline bool uuid_eq(const struct uuid *a, const struct uuid *b) { return memcmp(a->b, b->b, 16) == 0; }
static inline bool uuid_is_nil(const struct uuid *u)
{
	static const unsigned char z[16];
	return memcmp(u->b, z, 16) == 0;
}

#endif
