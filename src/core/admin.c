#include "core/admin.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "core/server.h"
#include "net/http.h"

/* Hashing both sides first makes the comparison constant-time even when
 * the lengths differ. */
static bool token_equal(const char *given, const char *want)
{
	unsigned char a[32], b[32];
	crypto_generichash(a, sizeof a, (const unsigned char *)given, strlen(given), NULL, 0);
	crypto_generichash(b, sizeof b, (const unsigned char *)want, strlen(want), NULL, 0);
	return sodium_memcmp(a, b, sizeof a) == 0;
}

bool admin_authorized_or_reply(struct server *srv, struct http_req *req)
{
	const char *want = srv->cfg.admin.token;
	const char *auth = http_req_header(req, "authorization");
	if (!want || !*want) {
		http_reply_problem(req, PROBLEM_FORBIDDEN, NULL, "the admin API is disabled (admin.token is empty)");
		return false;
	}
	if (!auth || strncasecmp(auth, "Bearer ", 7) != 0 || !auth[7]) {
		http_reply_header(req, "WWW-Authenticate", "Bearer realm=\"ridehail-admin\"");
		http_reply_problem(req, PROBLEM_UNAUTHORIZED, NULL, "an operator credential is required: Authorization: Bearer <admin.token>");
		return false;
	}
	if (!token_equal(auth + 7, want)) {
		log_warn(http_req_logid(req), "admin: wrong operator credential from %s", http_req_peer(req));
		http_reply_problem(req, PROBLEM_FORBIDDEN, NULL, "wrong operator credential");
		return false;
	}
	return true;
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
