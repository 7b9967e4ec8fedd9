#include "gateway/registry.h"

void gw_registry_init(struct gw_registry *r)
{
	umap_init(&r->by_account);
}

void gw_registry_fini(struct gw_registry *r)
{
	umap_fini(&r->by_account);
}

struct session *gw_registry_get(const struct gw_registry *r, const struct uuid *account)
{
	return umap_get(&r->by_account, account);
}

struct session *gw_registry_put(struct gw_registry *r, const struct uuid *account, struct session *s)
{
	struct session *old = umap_get(&r->by_account, account);
	umap_put(&r->by_account, account, s);
	return old == s ? NULL : old;
}

bool gw_registry_remove(struct gw_registry *r, const struct uuid *account, const struct session *s)
{
	if (umap_get(&r->by_account, account) != s)
		return false;
	umap_del(&r->by_account, account);
	return true;
}

int gw_registry_count(const struct gw_registry *r)
{
	return (int)r->by_account.count;
}
