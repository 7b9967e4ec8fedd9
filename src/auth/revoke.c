#include "auth/revoke.h"

#include "core/alloc.h"
#include "core/umap.h"

struct revoke_entry {
	int64_t cv;
	uint8_t role;
	bool disabled, deleted;
};

struct revoke_table {
	struct umap live;     /* uuid -> struct revoke_entry */
	struct umap next;     /* being reloaded */
	bool loaded, reloading;
};

struct revoke_table *revoke_new(void)
{
	struct revoke_table *t = RH_NEW(struct revoke_table);
	umap_init(&t->live);
	umap_init(&t->next);
	return t;
}

static void revoke_map_clear(struct umap *m)
{
	struct uuid k;
	void *v;
	for (size_t i = 0; umap_next(m, &i, &k, &v);)
		rh_free(v);
	umap_fini(m);
	umap_init(m);
}

void revoke_free(struct revoke_table *t)
{
	if (!t)
		return;
	revoke_map_clear(&t->live);
	revoke_map_clear(&t->next);
	umap_fini(&t->live);
	umap_fini(&t->next);
	rh_free(t);
}

static bool revoke_map_set(struct umap *m, const struct uuid *id, enum auth_role role, int64_t cv, bool disabled,
			   bool deleted)
{
	struct revoke_entry *e = umap_get(m, id);
	if (e && (cv < e->cv || e->deleted))
		return false; /* older news, or after the end */
	bool ends = e ? cv > e->cv || (disabled && !e->disabled) || (deleted && !e->deleted) : cv > 0 || disabled || deleted;
	if (cv == 0 && !disabled && !deleted) {
		rh_free(umap_del(m, id));
		return false;
	}
	if (!e) {
		e = RH_NEW(struct revoke_entry);
		umap_put(m, id, e);
	}
	e->cv = cv;
	e->role = (uint8_t)role;
	e->disabled = disabled;
	e->deleted = e->deleted || deleted; /* a deletion is final */
	return ends;
}

bool revoke_set(struct revoke_table *t, const struct uuid *id, enum auth_role role, int64_t cv, bool disabled,
		bool deleted)
{
	/* a change landing during a reload goes to both: the reload may have
	 * read the row before it */
	if (t->reloading)
		revoke_map_set(&t->next, id, role, cv, disabled, deleted);
	return revoke_map_set(&t->live, id, role, cv, disabled, deleted);
}

void revoke_reload_begin(struct revoke_table *t)
{
	revoke_map_clear(&t->next);
	t->reloading = true;
}

void revoke_reload_end(struct revoke_table *t)
{
	struct umap old = t->live;
	t->live = t->next;
	t->next = old;
	revoke_map_clear(&t->next);
	t->reloading = false;
	t->loaded = true;
}

bool revoke_is_loaded(const struct revoke_table *t) { return t->loaded; }

enum revoke_verdict revoke_check(const struct revoke_table *t, const struct uuid *id, int64_t cv)
{
	if (!t->loaded)
		return REVOKE_UNKNOWN;
	const struct revoke_entry *e = umap_get(&t->live, id);
	if (!e)
		return REVOKE_OK;
	if (e->deleted)
		return REVOKE_DELETED;
	if (e->disabled)
		return REVOKE_DISABLED;
	return cv < e->cv ? REVOKE_STALE : REVOKE_OK;
}

const char *revoke_verdict_name(enum revoke_verdict v)
{
	switch (v) {
	case REVOKE_OK: return "ok";
	case REVOKE_UNKNOWN: return "account states not loaded yet";
	case REVOKE_STALE: return "revoked";
	case REVOKE_DISABLED: return "account disabled";
	case REVOKE_DELETED: return "account deleted";
	}
	return "?";
}

int revoke_count(const struct revoke_table *t) { return (int)t->live.count; }
