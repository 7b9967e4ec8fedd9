/* The operator's admin API under /v1/admin/, authorised by the bearer
 * credential admin.token: runtime log level, effective configuration. */
#ifndef RH_CORE_ADMIN_H
#define RH_CORE_ADMIN_H

#include <stdbool.h>

struct server;
struct http_req;

void admin_init(struct server *srv);
/* True when the request carries the operator credential; otherwise replies
 * 401 (none given) or 403 (wrong, or the admin API is off) and returns false. */
bool admin_authorized_or_reply(struct server *srv, struct http_req *req);

#endif
