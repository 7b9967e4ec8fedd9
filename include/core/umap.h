/* A hash map from UUID to pointer: open addressing, linear probing,
 * tombstones, grows at half full. Keys are copied; values are borrowed. */
#ifndef RH_CORE_UMAP_H
#define RH_CORE_UMAP_H

#include <stddef.h>

#include "core/uuid.h"

struct umap_slot {
	struct uuid key;
	void *val; /* NULL: empty; UMAP_DELETED: a tombstone */
};

struct umap {
	struct umap_slot *slots;
	size_t cap, used, count; /* used counts tombstones too */
};

void umap_init(struct umap *m);
void umap_fini(struct umap *m);
void *umap_get(const struct umap *m, const struct uuid *key);
/* Inserts or replaces; val must not be NULL. */
void umap_put(struct umap *m, const struct uuid *key, void *val);
/* Removes; returns the value that was there (or NULL). */
void *umap_del(struct umap *m, const struct uuid *key);
/* Iteration: for (size_t i = 0; umap_next(m, &i, &k, &v); ) ... (do not
 * insert while iterating; deleting the current entry is fine). */
int umap_next(const struct umap *m, size_t *i, struct uuid *key, void **val);

#endif
