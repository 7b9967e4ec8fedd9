#include "net/ratelimit.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"

#define KEY_MAX 96
#define PROBE 16 /* slots examined around a key's home before evicting */

struct rl_entry {
	uint64_t hash;   /* 0: empty */
	int64_t tat_ms;  /* theoretical arrival time */
	char key[KEY_MAX];
};

struct ratelimit {
	double interval_ms; /* between events at the sustained rate */
	double tolerance_ms; /* how far ahead of now the TAT may run: (burst - 1) intervals */
	int capacity;        /* power of two */
	int size;
	struct rl_entry *slots;
	/* The keys are the clients' (addresses, emails): hashed with a random
	 * key, so that no one can pick keys that land beside another's entry and
	 * evict it (which would reset that key's allowance). */
	unsigned char hkey[crypto_shorthash_KEYBYTES];
};

static uint64_t ratelimit_hash_key(const struct ratelimit *rl, const char *s)
{
	uint64_t h;
	crypto_shorthash((unsigned char *)&h, (const unsigned char *)s, strlen(s), rl->hkey);
	return h ? h : 1;
}

struct ratelimit *ratelimit_new(double per_minute, double burst, int capacity)
{
	struct ratelimit *rl = RH_NEW(struct ratelimit);
	int cap = 64;
	while (cap < capacity)
		cap *= 2;
	rl->capacity = cap;
	rl->interval_ms = 60000.0 / (per_minute > 0 ? per_minute : 1e-9);
	rl->tolerance_ms = rl->interval_ms * (burst > 1 ? burst - 1 : 0);
	rl->slots = rh_calloc((size_t)cap, sizeof *rl->slots);
	crypto_shorthash_keygen(rl->hkey);
	return rl;
}

void ratelimit_free(struct ratelimit *rl)
{
	if (!rl)
		return;
	rh_free(rl->slots);
	rh_free(rl);
}

int ratelimit_size(const struct ratelimit *rl) { return rl->size; }

/* Finds the key's slot, or a slot to put it in (empty, expired, or oldest). */
static struct rl_entry *ratelimit_slot_for(struct ratelimit *rl, const char *key, uint64_t h, int64_t now_ms)
{
	struct rl_entry *victim = NULL;
	unsigned mask = (unsigned)rl->capacity - 1;
	for (unsigned i = 0; i < PROBE; i++) {
		struct rl_entry *e = &rl->slots[(h + i) & mask];
		if (e->hash == h && strcmp(e->key, key) == 0)
			return e;
		if (e->hash == 0) {
			if (!victim || victim->hash != 0)
				victim = e;
			continue;
		}
		if (!victim || (victim->hash != 0 && e->tat_ms < victim->tat_ms))
			victim = e;
	}
	(void)now_ms;
	return victim;
}

/* The key's entry, if it has one. */
static const struct rl_entry *ratelimit_find(const struct ratelimit *rl, const char *k, uint64_t h)
{
	unsigned mask = (unsigned)rl->capacity - 1;
	for (unsigned i = 0; i < PROBE; i++) {
		const struct rl_entry *e = &rl->slots[(h + i) & mask];
		if (e->hash == h && strcmp(e->key, k) == 0)
			return e;
	}
	return NULL;
}

bool ratelimit_check(const struct ratelimit *rl, const char *key, int64_t now_ms)
{
	char k[KEY_MAX];
	snprintf(k, sizeof k, "%s", key);
	const struct rl_entry *e = ratelimit_find(rl, k, ratelimit_hash_key(rl, k));
	return !e || (double)(e->tat_ms - now_ms) <= rl->tolerance_ms;
}

void ratelimit_refund(struct ratelimit *rl, const char *key, int64_t now_ms)
{
	char k[KEY_MAX];
	snprintf(k, sizeof k, "%s", key);
	struct rl_entry *e = (struct rl_entry *)ratelimit_find(rl, k, ratelimit_hash_key(rl, k));
	if (!e)
		return;
	e->tat_ms -= (int64_t)rl->interval_ms;
	if (e->tat_ms < now_ms)
		e->tat_ms = now_ms;
}

bool ratelimit_allow(struct ratelimit *rl, const char *key, int64_t now_ms, int64_t *retry_after_ms)
{
	char k[KEY_MAX];
	snprintf(k, sizeof k, "%s", key);
	uint64_t h = ratelimit_hash_key(rl, k);
	struct rl_entry *e = ratelimit_slot_for(rl, k, h, now_ms);
	if (e->hash != h || strcmp(e->key, k) != 0) {
		if (e->hash == 0)
			rl->size++;
		e->hash = h;
		memcpy(e->key, k, sizeof k);
		e->tat_ms = now_ms;
	}
	int64_t tat = e->tat_ms > now_ms ? e->tat_ms : now_ms;
	if ((double)(tat - now_ms) > rl->tolerance_ms) {
		if (retry_after_ms)
			*retry_after_ms = (int64_t)((double)(tat - now_ms) - rl->tolerance_ms) + 1;
		return false;
	}
	e->tat_ms = tat + (int64_t)rl->interval_ms;
	return true;
}
