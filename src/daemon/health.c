#include "daemon/health.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/auth.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/metrics.h"
#include "daemon/openapi.h"
#include "daemon/server.h"
#include "net/http.h"
#include "store/db.h"
#include "store/migrations.h"

#define READYZ_TIMEOUT_MS 2000

static struct db_stmt stmt_schema_version = {
	.name = "health_schema_version",
	.sql = "SELECT coalesce(max(version), 0) FROM schema_migrations",
	.nparams = 0,
};

struct health {
	struct server *srv;
	struct metric_cell *uptime, *alloc, *rss; /* cells live in the server's registry */
};

static void health_collect(void *arg)
{
	struct health *hm = arg;
	struct server *srv = hm->srv;
	metric_set(hm->uptime, (double)(rh_mono_ns() - srv->started_mono_ns) / 1e9);
	metric_set(hm->alloc, (double)rh_alloc_live_bytes());
	long pages = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f) {
		if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
			rss = 0;
		fclose(f);
	}
	metric_set(hm->rss, (double)rss * (double)sysconf(_SC_PAGESIZE));
}

static void health_healthz(struct http_req *req, void *ctx)
{
	cJSON *j = cJSON_CreateObject();
	cJSON_AddStringToObject(j, "status", "ok");
	http_reply_json(req, 200, j);
}

static void health_readyz_not_ready(struct http_req *req, const char *why)
{
	cJSON *ext = cJSON_CreateObject();
	cJSON *checks = cJSON_AddObjectToObject(ext, "checks");
	cJSON_AddStringToObject(checks, "database", why);
	http_reply_problem(req, PROBLEM_UNAVAILABLE, ext, "not ready: %s", why);
}

static void health_readyz_done(void *arg, const struct db_result *res)
{
	struct http_req *req = arg;
	if (res->err != RH_OK) {
		health_readyz_not_ready(req, *res->message ? res->message : "database query failed");
		return;
	}
	const char *v = db_get(res, 0, 0);
	int version = v ? atoi(v) : 0;
	if (version < migrations_latest()) {
		char why[128];
		snprintf(why, sizeof why, "schema at version %d, this binary needs %d", version, migrations_latest());
		health_readyz_not_ready(req, why);
		return;
	}
	cJSON *j = cJSON_CreateObject();
	cJSON_AddStringToObject(j, "status", "ready");
	cJSON *checks = cJSON_AddObjectToObject(j, "checks");
	cJSON_AddStringToObject(checks, "database", "ok");
	cJSON_AddNumberToObject(checks, "schema_version", version);
	http_reply_json(req, 200, j);
}

static void health_readyz(struct http_req *req, void *ctx)
{
	struct server *srv = ctx;
	char why[256];
	if (srv->stopping) {
		health_readyz_not_ready(req, "shutting down");
		return;
	}
	if (!db_is_ready(srv->db, why, sizeof why)) {
		health_readyz_not_ready(req, why);
		return;
	}
	if (!auth_standing_loaded(srv->auth)) { /* tokens cannot be checked until then */
		health_readyz_not_ready(req, "loading the accounts' standing");
		return;
	}
	/* The pool thinks it is up; prove it with a round trip. */
	db_query_timeout(srv->db, &stmt_schema_version, NULL, READYZ_TIMEOUT_MS, health_readyz_done, req);
}

static void health_metrics_page(struct http_req *req, void *ctx)
{
	struct server *srv = ctx;
	struct strbuf sb;
	sb_init(&sb, 64u << 20);
	metrics_expose(srv->metrics, &sb);
	http_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", sb.buf ? sb.buf : "", sb.len);
	sb_fini(&sb);
}

static const struct http_route health_routes[] = {
	{ HTTP_GET, "/healthz", health_healthz, 0 },
	{ HTTP_GET, "/readyz", health_readyz, 0 },
	{ HTTP_GET, "/metrics", health_metrics_page, 0 },
	{ 0 },
};

void health_init(struct server *srv)
{
	static const char *const build_labels[] = { "version", "revision", NULL };
	const char *bv[] = { RH_VERSION, RH_GIT_REV };
	metric_set(metric_cell(metrics_gauge(srv->metrics, "ridehail_build_info", "Build version and revision (always 1).",
					     build_labels), bv), 1);
	struct health *hm = RH_NEW(struct health);
	hm->srv = srv;
	srv->health = hm;
	hm->uptime = metric_cell(metrics_gauge(srv->metrics, "ridehail_uptime_seconds", "Seconds since the daemon started.", NULL), NULL);
	hm->alloc = metric_cell(metrics_gauge(srv->metrics, "ridehail_memory_allocated_bytes", "Heap bytes allocated by the daemon (its own allocations, libevent's and cJSON's).", NULL), NULL);
	hm->rss = metric_cell(metrics_gauge(srv->metrics, "ridehail_resident_memory_bytes", "Resident set size of the process.", NULL), NULL);
	metrics_on_collect(srv->metrics, health_collect, hm);
	db_register(srv->db, &stmt_schema_version);
	http_server_add_routes(srv->http, health_routes, srv);
	health_openapi_init(srv); /* the API's description beside the operations endpoints */
}

void health_fini(struct server *srv)
{
	rh_free(srv->health);
	srv->health = NULL;
}
