/* GET /healthz (the process answers), GET /readyz (database reachable and
 * schema current, else 503 naming why) and GET /metrics (Prometheus text);
 * health_init also registers GET /openapi.json (daemon/openapi.h). */
#ifndef RH_CORE_HEALTH_H
#define RH_CORE_HEALTH_H

struct server;

void health_init(struct server *srv);
void health_fini(struct server *srv);

#endif
