/* The configuration table: every key the daemon reads, with its default,
 * range, unit and meaning. conf/ridehaild.conf and docs/configuration.md are
 * checked against it by the tests. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "core/config.h"
#include "core/settings.h"

#define K(sect, field) offsetof(struct sect, field)
#define MS(x) ((double)(x))
#define SEC(x) ((double)(x) * 1000.0)
#define KIB(x) ((double)(x) * 1024.0)
#define MIB(x) ((double)(x) * 1048576.0)

static const char *const log_levels[] = { "debug", "info", "warn", "error", NULL };
static const char *const log_formats[] = { "logfmt", "json", NULL };

static const struct cfg_key server_keys[] = {
	{ "shutdown_timeout", CFG_DURATION, K(server_cfg, shutdown_timeout_ms), "10s", 0, SEC(600), "s", NULL,
	  "After SIGTERM/SIGINT: how long in-flight requests may take to finish before the daemon exits anyway." },
	{ "pid_file", CFG_STR, K(server_cfg, pid_file), "", 0, 1024, NULL, NULL,
	  "Write the process id here at start (empty: no pid file)." },
	{ 0 }
};

static const struct cfg_key log_keys[] = {
	{ "level", CFG_ENUM, K(log_cfg, level), "info", 0, 0, NULL, log_levels,
	  "Lowest level written." },
	{ "format", CFG_ENUM, K(log_cfg, format), "logfmt", 0, 0, NULL, log_formats,
	  "One line per event: logfmt (key=value) or JSON lines." },
	{ "file", CFG_STR, K(log_cfg, file), "-", 0, 1024, NULL, NULL,
	  "Log file path; - is standard error. SIGHUP reopens it (for logrotate)." },
	{ 0 }
};

static const struct cfg_key http_keys[] = {
	{ "listen", CFG_ADDR, K(http_cfg, listen), "127.0.0.1:8080", 0, 0, NULL, NULL,
	  "Address for HTTP and WebSocket clients; port 0 picks a free port (logged)." },
	{ "backlog", CFG_INT, K(http_cfg, backlog), "1024", 1, 65535, "connections", NULL,
	  "listen(2) backlog." },
	{ "max_connections", CFG_INT, K(http_cfg, max_connections), "20000", 1, 1000000, "connections", NULL,
	  "Open client connections (HTTP and WebSocket together); past it new ones get 503 and are closed." },
	{ "max_header_size", CFG_SIZE, K(http_cfg, max_header_size), "8KiB", KIB(1), MIB(1), "bytes", NULL,
	  "Request line plus headers; larger requests get 431 (414 for a long request line)." },
	{ "max_body_size", CFG_SIZE, K(http_cfg, max_body_size), "64KiB", 0, MIB(64), "bytes", NULL,
	  "Request body; larger bodies get 413." },
	{ "request_timeout", CFG_DURATION, K(http_cfg, request_timeout_ms), "10s", MS(100), SEC(3600), "s", NULL,
	  "Time allowed to receive one whole request once it has started; then 408 and close." },
	{ "idle_timeout", CFG_DURATION, K(http_cfg, idle_timeout_ms), "60s", MS(100), SEC(86400), "s", NULL,
	  "A keep-alive connection with no request in progress is closed after this." },
	{ "max_requests_per_conn", CFG_INT, K(http_cfg, max_requests_per_conn), "10000", 1, 1e9, "requests", NULL,
	  "Requests served on one keep-alive connection before it is closed." },
	{ 0 }
};

static const struct cfg_key database_keys[] = {
	{ "url", CFG_STR, K(database_cfg, url), "", 0, 4096, NULL, NULL,
	  "libpq connection string or postgres:// URI. Empty: `make run` starts a local cluster under var/pg and sets this.",
	  CFG_F_SECRET },
	{ "pool_size", CFG_INT, K(database_cfg, pool_size), "4", 1, 64, "connections", NULL,
	  "PostgreSQL connections kept open (each pipelines many queries)." },
	{ "connect_timeout", CFG_DURATION, K(database_cfg, connect_timeout_ms), "5s", SEC(1), SEC(600), "s", NULL,
	  "Give up one connection attempt after this, then back off and retry." },
	{ "query_timeout", CFG_DURATION, K(database_cfg, query_timeout_ms), "10s", MS(100), SEC(3600), "s", NULL,
	  "A query waiting for a connection longer than this fails (the request gets 503)." },
	{ "statement_timeout", CFG_DURATION, K(database_cfg, statement_timeout_ms), "30s", 0, SEC(86400), "s", NULL,
	  "Server-side statement_timeout for the daemon's sessions (0: none)." },
	{ "reconnect_max", CFG_DURATION, K(database_cfg, reconnect_max_ms), "5s", MS(100), SEC(600), "s", NULL,
	  "Cap of the exponential backoff between reconnect attempts (it starts at 100 ms)." },
	{ "queue_max", CFG_INT, K(database_cfg, queue_max), "20000", 1, 10000000, "queries", NULL,
	  "Queries waiting for a connection; past it new queries fail at once (503)." },
	{ "pipeline_depth", CFG_INT, K(database_cfg, pipeline_depth), "64", 1, 4096, "queries", NULL,
	  "Queries in flight on one connection (libpq pipeline mode)." },
	{ "migrate", CFG_BOOL, K(database_cfg, migrate), "true", 0, 0, NULL, NULL,
	  "Apply pending migrations when the database is first reached (else: `ridehaild migrate`)." },
	{ 0 }
};

static const struct cfg_key admin_keys[] = {
	{ "token", CFG_STR, K(admin_cfg, token), "", 0, 256, NULL, NULL,
	  "Operator credential for /v1/admin/... (Authorization: Bearer <token>); empty disables the admin API. `make run` generates one into var/admin.token.",
	  CFG_F_SECRET },
	{ 0 }
};

static bool admin_validate(const void *section, char *err, size_t errlen)
{
	const struct admin_cfg *a = section;
	if (a->token[0] && strlen(a->token) < 16) {
		snprintf(err, errlen, "token must be at least 16 characters (or empty to disable the admin API)");
		return false;
	}
	return true;
}

static const struct cfg_section server_section = {
	.name = "server", .keys = server_keys, .offset = offsetof(struct rh_config, server),
	.help = "Process lifecycle.",
};
static const struct cfg_section log_section = {
	.name = "log", .keys = log_keys, .offset = offsetof(struct rh_config, log),
	.help = "Logging.",
};
static const struct cfg_section http_section = {
	.name = "http", .keys = http_keys, .offset = offsetof(struct rh_config, http),
	.help = "The HTTP listener (REST and the WebSocket upgrade share it).",
};
static const struct cfg_section database_section = {
	.name = "database", .keys = database_keys, .offset = offsetof(struct rh_config, database),
	.help = "PostgreSQL + PostGIS, the source of truth.",
};

static const struct cfg_section admin_section = {
	.name = "admin", .keys = admin_keys, .offset = offsetof(struct rh_config, admin),
	.help = "The operator's admin API.", .validate = admin_validate,
};

const struct cfg_section *const cfg_sections[] = {
	&server_section,
	&log_section,
	&http_section,
	&database_section,
	&admin_section,
	NULL,
};
