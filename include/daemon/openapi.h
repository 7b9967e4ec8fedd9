/* GET /openapi.json: docs/openapi.yaml, the REST API's OpenAPI 3.1
 * description, converted to JSON and compiled in at build time (like the
 * migrations), so the document served is the one the binary was built with. */
#ifndef RH_DAEMON_OPENAPI_H
#define RH_DAEMON_OPENAPI_H

#include <stddef.h>

struct server;

extern const char rh_openapi_json[];
extern const size_t rh_openapi_json_len;

/* Registers the route. */
void health_openapi_init(struct server *srv);

#endif
