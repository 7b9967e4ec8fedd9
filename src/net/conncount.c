#include "net/conncount.h"

#include <netinet/in.h>
#include <sodium.h>
#include <string.h>
#include <sys/socket.h>

#include "core/alloc.h"

/* Linear probing with backward-shift deletion: no tombstones, so a table
 * churned by a flood of short connections never fills up with them. */
struct cc_slot {
	struct conn_addr addr;
	int count; /* 0: empty */
};

struct conn_counts {
	struct cc_slot *slots;
	uint32_t cap, used; /* cap: a power of two; used: slots with count > 0 */
	int total;
	unsigned char key[crypto_shorthash_KEYBYTES];
};

#define CC_MIN_CAP 64

struct conn_counts *conn_counts_new(void)
{
	struct conn_counts *cc = RH_NEW(struct conn_counts);
	cc->cap = CC_MIN_CAP;
	cc->slots = rh_calloc(cc->cap, sizeof *cc->slots);
	crypto_shorthash_keygen(cc->key);
	return cc;
}

void conn_counts_free(struct conn_counts *cc)
{
	if (!cc)
		return;
	rh_free(cc->slots);
	rh_free(cc);
}

bool conn_counts_addr_of(const struct sockaddr *sa, struct conn_addr *out)
{
	memset(out, 0, sizeof *out);
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		out->b[10] = out->b[11] = 0xff;
		memcpy(out->b + 12, &in->sin_addr, 4);
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		memcpy(out->b, &in6->sin6_addr, 16);
		if (!IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
			memset(out->b + 8, 0, 8); /* the /64 */
		return true;
	}
	return false;
}

static uint32_t conn_counts_hash(const struct conn_counts *cc, const struct conn_addr *a)
{
	uint64_t h;
	crypto_shorthash((unsigned char *)&h, a->b, sizeof a->b, cc->key);
	return (uint32_t)h;
}

/* The slot holding addr, or the empty slot where it would go. */
static struct cc_slot *conn_counts_find(const struct conn_counts *cc, const struct conn_addr *a)
{
	uint32_t mask = cc->cap - 1;
	for (uint32_t i = conn_counts_hash(cc, a) & mask;; i = (i + 1) & mask) {
		struct cc_slot *s = &cc->slots[i];
		if (s->count == 0 || memcmp(&s->addr, a, sizeof *a) == 0)
			return s;
	}
}

static void conn_counts_grow(struct conn_counts *cc)
{
	struct cc_slot *old = cc->slots;
	uint32_t n = cc->cap;
	cc->cap *= 2;
	cc->slots = rh_calloc(cc->cap, sizeof *cc->slots);
	for (uint32_t i = 0; i < n; i++)
		if (old[i].count)
			*conn_counts_find(cc, &old[i].addr) = old[i];
	rh_free(old);
}

int conn_counts_acquire(struct conn_counts *cc, const struct conn_addr *addr)
{
	cc->total++;
	if (!addr)
		return cc->total;
	if ((cc->used + 1) * 2 > cc->cap)
		conn_counts_grow(cc);
	struct cc_slot *s = conn_counts_find(cc, addr);
	if (s->count == 0) {
		s->addr = *addr;
		cc->used++;
	}
	return ++s->count;
}

/* Empties slot i and moves later entries of its run back, so that every
 * entry stays reachable from its home slot without tombstones. */
static void conn_counts_remove_at(struct conn_counts *cc, uint32_t i)
{
	uint32_t mask = cc->cap - 1;
	for (uint32_t j = (i + 1) & mask; cc->slots[j].count; j = (j + 1) & mask) {
		uint32_t home = conn_counts_hash(cc, &cc->slots[j].addr) & mask;
		/* j's entry may move to i unless its home lies cyclically in (i, j] */
		bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
		if (!stays) {
			cc->slots[i] = cc->slots[j];
			i = j;
		}
	}
	cc->slots[i].count = 0;
	cc->used--;
}

void conn_counts_release(struct conn_counts *cc, const struct conn_addr *addr)
{
	if (cc->total > 0)
		cc->total--;
	if (!addr)
		return;
	struct cc_slot *s = conn_counts_find(cc, addr);
	if (s->count == 0)
		return; /* never counted: a bug, but not one to crash on */
	if (--s->count == 0)
		conn_counts_remove_at(cc, (uint32_t)(s - cc->slots));
}

int conn_counts_total(const struct conn_counts *cc) { return cc->total; }

int conn_counts_of(const struct conn_counts *cc, const struct conn_addr *addr)
{
	return conn_counts_find(cc, addr)->count;
}

int conn_counts_addresses(const struct conn_counts *cc) { return (int)cc->used; }
