#include "daemon/admin.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/auth.h"
#include "core/log.h"
#include "daemon/server.h"
#include "net/http.h"

bool admin_authorized_or_reply(struct server *srv, struct http_req *req)
{
	struct auth_principal p;
	return auth_operator_or_reply(srv->auth, req, &p);
}

static void admin_put_log(struct http_req *req, void *ctx)
{
	struct server *srv = ctx;
	if (!admin_authorized_or_reply(srv, req))
		return;
	cJSON *body = http_req_json_or_reply(req);
	if (!body)
		return;
	static const char *const levels[] = { "debug", "info", "warn", "error" };
	const cJSON *level = cJSON_GetObjectItemCaseSensitive(body, "level");
	for (const cJSON *it = body->child; it; it = it->next) {
		if (strcmp(it->string, "level") != 0) {
			cJSON *ext = cJSON_CreateObject();
			cJSON_AddStringToObject(ext, "field", it->string);
			http_reply_problem(req, PROBLEM_VALIDATION, ext, "unknown field \"%s\"", it->string);
			cJSON_Delete(body);
			return;
		}
	}
	int found = -1;
	for (int i = 0; i < 4 && cJSON_IsString(level); i++)
		if (strcmp(level->valuestring, levels[i]) == 0)
			found = i;
	cJSON_Delete(body);
	if (found < 0) {
		cJSON *ext = cJSON_CreateObject();
		cJSON_AddStringToObject(ext, "field", "level");
		http_reply_problem(req, PROBLEM_VALIDATION, ext, "level must be one of debug, info, warn, error");
		return;
	}
	log_min_level = (enum log_level)found;
	srv->cfg.log.level = found;
	log_warn(http_req_logid(req), "log level set to %s by the operator", levels[found]);
	cJSON *j = cJSON_CreateObject();
	cJSON_AddStringToObject(j, "level", levels[found]);
	http_reply_json(req, 200, j);
}

static void admin_get_config(struct http_req *req, void *ctx)
{
	struct server *srv = ctx;
	if (!admin_authorized_or_reply(srv, req))
		return;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	config_print(&srv->cfg, f);
	fclose(f);
	http_reply(req, 200, "text/plain; charset=utf-8", buf, len);
	free(buf);
}

static const struct http_route admin_routes[] = {
	{ HTTP_PUT, "/v1/admin/log", admin_put_log, 0 },
	{ HTTP_GET, "/v1/admin/config", admin_get_config, 0 },
	{ 0 },
};

void admin_init(struct server *srv)
{
	http_server_add_routes(srv->http, admin_routes, srv);
}
