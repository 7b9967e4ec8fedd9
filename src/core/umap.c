#include "core/umap.h"

#include <stdint.h>
#include <string.h>

#include "core/alloc.h"

static char deleted_marker;
#define UMAP_DELETED ((void *)&deleted_marker)

static size_t umap_hash(const struct uuid *u)
{
	uint64_t a, b;
	memcpy(&a, u->b, 8);
	memcpy(&b, u->b + 8, 8);
	uint64_t h = (a ^ (b * 0x9e3779b97f4a7c15ull)) * 0xff51afd7ed558ccdull;
	return (size_t)(h ^ (h >> 32));
}

void umap_init(struct umap *m)
{
	memset(m, 0, sizeof *m);
}

void umap_fini(struct umap *m)
{
	rh_free(m->slots);
	memset(m, 0, sizeof *m);
}

static struct umap_slot *umap_find(const struct umap *m, const struct uuid *key)
{
	if (!m->cap)
		return NULL;
	size_t mask = m->cap - 1;
	for (size_t i = umap_hash(key) & mask;; i = (i + 1) & mask) {
		struct umap_slot *s = &m->slots[i];
		if (!s->val)
			return NULL;
		if (s->val != UMAP_DELETED && uuid_eq(&s->key, key))
			return s;
	}
}

void *umap_get(const struct umap *m, const struct uuid *key)
{
	struct umap_slot *s = umap_find(m, key);
	return s ? s->val : NULL;
}

static void umap_grow(struct umap *m)
{
	struct umap_slot *old = m->slots;
	size_t oldcap = m->cap;
	m->cap = oldcap ? (m->count * 4 > oldcap ? oldcap * 2 : oldcap) : 64;
	m->slots = rh_calloc(m->cap, sizeof *m->slots);
	m->used = m->count = 0;
	for (size_t i = 0; i < oldcap; i++)
		if (old[i].val && old[i].val != UMAP_DELETED)
			umap_put(m, &old[i].key, old[i].val);
	rh_free(old);
}

void umap_put(struct umap *m, const struct uuid *key, void *val)
{
	struct umap_slot *s = umap_find(m, key);
	if (s) {
		s->val = val;
		return;
	}
	if ((m->used + 1) * 2 > m->cap)
		umap_grow(m);
	size_t mask = m->cap - 1;
	size_t i = umap_hash(key) & mask;
	while (m->slots[i].val && m->slots[i].val != UMAP_DELETED)
		i = (i + 1) & mask;
	if (!m->slots[i].val)
		m->used++;
	m->slots[i].key = *key;
	m->slots[i].val = val;
	m->count++;
}

void *umap_del(struct umap *m, const struct uuid *key)
{
	struct umap_slot *s = umap_find(m, key);
	if (!s)
		return NULL;
	void *v = s->val;
	s->val = UMAP_DELETED;
	m->count--;
	return v;
}

int umap_next(const struct umap *m, size_t *i, struct uuid *key, void **val)
{
	for (; *i < m->cap; (*i)++) {
		struct umap_slot *s = &m->slots[*i];
		if (s->val && s->val != UMAP_DELETED) {
			if (key)
				*key = s->key;
			*val = s->val;
			(*i)++;
			return 1;
		}
	}
	return 0;
}
