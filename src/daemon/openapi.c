#include "daemon/openapi.h"

#include "daemon/server.h"
#include "net/http.h"

static void health_openapi_get(struct http_req *req, void *ctx)
{
	(void)ctx;
	http_reply_header(req, "Cache-Control", "public, max-age=3600");
	http_reply(req, 200, "application/json", rh_openapi_json, rh_openapi_json_len);
}

static const struct http_route openapi_routes[] = {
	{ HTTP_GET, "/openapi.json", health_openapi_get, 0 },
	{ 0 },
};

void health_openapi_init(struct server *srv)
{
	http_server_add_routes(srv->http, openapi_routes, NULL);
}
