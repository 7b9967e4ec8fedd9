/* Who is connected: the open WebSocket session of each account, one per
 * account for the roles that allow one (a rider's app, a driver's app: a new
 * session replaces the old). The gateway keeps it; every module finds a
 * session here, by account, instead of keeping its own list. Pure: no
 * sockets, no clock (tests/unit/gateway/registry_test.c). */
#ifndef RH_GATEWAY_REGISTRY_H
#define RH_GATEWAY_REGISTRY_H

#include <stdbool.h>

#include "core/umap.h"
#include "core/uuid.h"

struct session;

struct gw_registry {
	struct umap by_account; /* account -> its session */
};

void gw_registry_init(struct gw_registry *r);
void gw_registry_fini(struct gw_registry *r);
/* The account's session, or NULL. */
struct session *gw_registry_get(const struct gw_registry *r, const struct uuid *account);
/* s becomes the account's session; returns the one it replaces (to be
 * closed by the caller), or NULL. */
struct session *gw_registry_put(struct gw_registry *r, const struct uuid *account, struct session *s);
/* s is gone: forgotten if it is still the account's session (a session
 * replaced earlier is not, and the newer one stays). True if it was. */
bool gw_registry_remove(struct gw_registry *r, const struct uuid *account, const struct session *s);
int gw_registry_count(const struct gw_registry *r);

#endif
