/* Creating accounts (POST /v1/riders, the admin API's riders, operators and
 * drivers) and reading them (GET /v1/me, the admin API's drivers). */
#include "auth/auth.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/settings.h"
#include "core/strbuf.h"
#include "core/uuid.h"
#include "core/worker.h"
#include "net/conncount.h"
#include "net/http.h"
#include "net/ratelimit.h"
#include "store/db.h"
#include "auth_internal.h"

struct db_stmt st_me[3] = {
	{ "auth_me_rider", "SELECT rider_json(r) FROM riders r WHERE id = $1", 1 },
	{ "auth_me_driver", "SELECT driver_json(d) FROM drivers d WHERE id = $1", 1 },
	{ "auth_me_operator", "SELECT operator_json(o) FROM operators o WHERE id = $1", 1 },
};
struct db_stmt st_driver_get = {
	"auth_driver_get", "SELECT driver_json(d) FROM drivers d WHERE id = $1 AND deleted_at IS NULL", 1
};
struct db_stmt st_driver_list = {
	"auth_driver_list",
	"SELECT driver_json(d), d.id FROM drivers d WHERE ($1::uuid IS NULL OR d.id > $1::uuid) AND d.deleted_at IS NULL"
	" ORDER BY d.id LIMIT $2", 2
};
/* ------------------------------------------------------------ creating accounts */

static void auth_reply_account_row(struct http_req *req, const struct db_result *res, int status)
{
	const char *json = db_get(res, 0, 0);
	http_reply_header(req, "Cache-Control", "no-store");
	http_reply(req, status, "application/json", json, strlen(json));
}

/* Maps a unique violation to the field it concerns. */
static void auth_reply_insert_error(struct http_req *req, const struct db_result *res)
{
	if (db_is_unique_violation(res)) {
		const char *c = db_error_constraint(res);
		const char *field = strstr(c, "plate") ? "vehicle.plate" : "email";
		cJSON *ext = cJSON_CreateObject();
		cJSON_AddStringToObject(ext, "field", field);
		http_reply_problem(req, PROBLEM_CONFLICT, ext, "an account with this %s already exists", field);
		return;
	}
	http_reply_err(req, db_result_err(res), "create the account", res->message);
}

static void auth_account_inserted(void *arg, const struct db_result *res)
{
	struct pw_job *j = arg;
	if (res->err == RH_OK && db_rows(res) == 1) {
		log_info(http_req_logid(j->req), "%s account created", auth_role_name(j->role));
		auth_reply_account_row(j->req, res, 201);
	} else {
		auth_reply_insert_error(j->req, res);
	}
	auth_pw_job_free(j);
}

static const char *auth_nullable(const cJSON *o, const char *name)
{
	return jv_str(o, name);
}

static void auth_account_hashed(struct pw_job *j)
{
	struct auth *a = j->auth;
	if (!j->ok) {
		http_reply_problem(j->req, PROBLEM_INTERNAL, NULL, "cannot hash the password");
		auth_pw_job_free(j);
		return;
	}
	const cJSON *b = j->body;
	if (j->role == ROLE_RIDER) {
		const char *p[] = { jv_str(b, "email"), jv_str(b, "name"), auth_nullable(b, "phone"), j->hash };
		db_query(a->deps.db, &st_insert_rider, p, auth_account_inserted, j);
	} else if (j->role == ROLE_OPERATOR) {
		const char *p[] = { jv_str(b, "email"), jv_str(b, "name"), j->hash };
		db_query(a->deps.db, &st_insert_operator, p, auth_account_inserted, j);
	} else {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(b, "vehicle");
		const char *p[] = { jv_str(b, "email"), jv_str(b, "name"), auth_nullable(b, "phone"), j->hash,
				    jv_str(v, "type"), jv_str(v, "make"), jv_str(v, "model"), jv_str(v, "color"),
				    jv_str(v, "plate") };
		db_query(a->deps.db, &st_insert_driver, p, auth_account_inserted, j);
	}
}

const struct jv_field auth_rider_fields[] = {
	{ "email", JV_EMAIL, JV_REQUIRED },
	{ "name", JV_STRING, JV_REQUIRED, 1, 100 },
	{ "phone", JV_STRING, JV_NULLABLE, 3, 32 },
	{ "password", JV_STRING, JV_REQUIRED, 8, 128 },
	{ 0 }
};

static const struct jv_field vehicle_fields[] = {
	{ "type", JV_STRING, JV_REQUIRED, 1, 31 },
	{ "make", JV_STRING, JV_REQUIRED, 1, 50 },
	{ "model", JV_STRING, JV_REQUIRED, 1, 50 },
	{ "color", JV_STRING, JV_REQUIRED, 1, 30 },
	{ "plate", JV_STRING, JV_REQUIRED, 1, 16 },
	{ 0 },
};

const struct jv_field auth_driver_fields[] = {
	{ "email", JV_EMAIL, JV_REQUIRED },
	{ "name", JV_STRING, JV_REQUIRED, 1, 100 },
	{ "phone", JV_STRING, JV_NULLABLE, 3, 32 },
	{ "password", JV_STRING, JV_REQUIRED, 8, 128 },
	{ "vehicle", JV_OBJECT, JV_REQUIRED, 0, 0, NULL, vehicle_fields },
	{ 0 },
};

const struct jv_field auth_operator_fields[] = {
	{ "email", JV_EMAIL, JV_REQUIRED },
	{ "name", JV_STRING, JV_REQUIRED, 1, 100 },
	{ "password", JV_STRING, JV_REQUIRED, 8, 128 },
	{ 0 }
};

bool auth_vehicle_type_check(const struct rh_config *cfg, const char *type, struct jv_error *err)
{
	for (int i = 0; i < cfg->ntariffs; i++)
		if (strcmp(cfg->tariff[i].name, type) == 0)
			return true;
	memset(err, 0, sizeof *err);
	snprintf(err->path, sizeof err->path, "vehicle.type");
	snprintf(err->keyword, sizeof err->keyword, "enum");
	size_t n = (size_t)snprintf(err->message, sizeof err->message, "vehicle.type must be one of");
	for (int i = 0; i < cfg->ntariffs && n < sizeof err->message; i++)
		n += (size_t)snprintf(err->message + n, sizeof err->message - n, "%s %s", i ? "," : "", cfg->tariff[i].name);
	return false;
}

static void auth_create_account(struct auth *a, struct http_req *req, enum auth_role role,
				const struct jv_field *fields)
{
	cJSON *body = http_req_json_valid_or_reply(req, fields);
	if (!body)
		return;
	struct jv_error err;
	if (role == ROLE_DRIVER &&
	    !auth_vehicle_type_check(a->deps.rhcfg, jv_str(cJSON_GetObjectItemCaseSensitive(body, "vehicle"), "type"), &err)) {
		cJSON_Delete(body);
		http_reply_invalid(req, &err);
		return;
	}
	struct pw_job *j = auth_pw_job_new(a, req, PW_HASH, jv_str(body, "password"), auth_account_hashed);
	j->role = role;
	j->body = body;
	auth_pw_submit_or_reply(j);
}

void auth_signup(struct http_req *req, void *ctx)
{
	struct auth *a = ctx;
	char addr[64];
	if (!a->cfg->rider_signup) {
		http_reply_problem(req, PROBLEM_FORBIDDEN, NULL, "rider sign-up is closed; ask the operator for an account");
		return;
	}
	struct conn_addr ca;
	auth_peer_address(req, addr, sizeof addr, &ca);
	if (auth_limited_or_reply(req, a->rl_signup, addr, "sign-ups from this address"))
		return;
	auth_create_account(a, req, ROLE_RIDER, auth_rider_fields);
}

void auth_admin_create_rider(struct http_req *req, void *ctx)
{
	struct auth *a = ctx;
	struct auth_principal p;
	if (auth_operator_or_reply(a, req, &p))
		auth_create_account(a, req, ROLE_RIDER, auth_rider_fields);
}

void auth_admin_create_operator(struct http_req *req, void *ctx)
{
	struct auth *a = ctx;
	struct auth_principal p;
	if (auth_operator_or_reply(a, req, &p))
		auth_create_account(a, req, ROLE_OPERATOR, auth_operator_fields);
}

void auth_admin_create_driver(struct http_req *req, void *ctx)
{
	struct auth *a = ctx;
	struct auth_principal p;
	if (auth_operator_or_reply(a, req, &p))
		auth_create_account(a, req, ROLE_DRIVER, auth_driver_fields);
}

/* ------------------------------------------------------------ reading accounts */

static void auth_row_or_404(void *arg, const struct db_result *res)
{
	struct http_req *req = arg;
	if (res->err != RH_OK) {
		http_reply_err(req, db_result_err(res), "read the account", res->message);
	} else if (db_rows(res) == 0) {
		http_reply_problem(req, PROBLEM_NOT_FOUND, NULL, "no such account");
	} else {
		auth_reply_account_row(req, res, 200);
	}
}

void auth_me(struct http_req *req, void *ctx)
{
	struct auth *a = ctx;
	struct auth_principal p;
	if (!auth_require_or_reply(a, req, ROLE_RIDER | ROLE_DRIVER | ROLE_OPERATOR, &p))
		return;
	if (!jv_is_uuid(p.id)) {
		/* admin.token is a credential, not an account */
		http_reply_problem(req, PROBLEM_NOT_FOUND, NULL, "the admin token belongs to no account");
		return;
	}
	const char *params[] = { p.id };
	db_query(a->deps.db, &st_me[auth_role_index(p.role)], params, auth_row_or_404, req);
}

void auth_admin_driver_get(struct http_req *req, void *ctx)
{
	struct auth *a = ctx;
	struct auth_principal p;
	if (!auth_operator_or_reply(a, req, &p))
		return;
	const char *id = http_req_param(req, "id");
	if (!jv_is_uuid(id)) {
		cJSON *ext = cJSON_CreateObject();
		cJSON_AddStringToObject(ext, "field", "id");
		http_reply_problem(req, PROBLEM_VALIDATION, ext, "driver id must be a UUID");
		return;
	}
	const char *params[] = { id };
	db_query(a->deps.db, &st_driver_get, params, auth_row_or_404, req);
}

static void auth_driver_list_done(void *arg, const struct db_result *res)
{
	struct http_req *req = arg;
	if (res->err != RH_OK) {
		http_reply_err(req, db_result_err(res), "list the drivers", res->message);
		return;
	}
	struct strbuf sb;
	sb_init(&sb, 64u << 20);
	sb_puts(&sb, "{\"items\":[");
	int n = db_rows(res);
	for (int i = 0; i < n; i++) {
		if (i)
			sb_putc(&sb, ',');
		sb_puts(&sb, db_get(res, i, 0));
	}
	sb_puts(&sb, "],\"next_cursor\":");
	const char *limit = http_req_query(req, "limit");
	int want = limit ? atoi(limit) : 50;
	if (n > 0 && n == want)
		sb_printf(&sb, "\"%s\"}", db_get(res, n - 1, 1));
	else
		sb_puts(&sb, "null}");
	http_reply(req, 200, "application/json", sb.buf, sb.len);
	sb_fini(&sb);
}

void auth_admin_driver_list(struct http_req *req, void *ctx)
{
	struct auth *a = ctx;
	struct auth_principal p;
	if (!auth_operator_or_reply(a, req, &p))
		return;
	const char *cursor = http_req_query(req, "cursor");
	int64_t n;
	if (!http_query_integer_or_reply(req, "limit", 1, 500, 50, false, &n))
		return; /* the one strict number parser: no " 5", "+5" or "0x5" */
	if (cursor && !jv_is_uuid(cursor)) {
		cJSON *ext = cJSON_CreateObject();
		cJSON_AddStringToObject(ext, "field", "cursor");
		http_reply_problem(req, PROBLEM_VALIDATION, ext, "cursor must be a next_cursor value from a previous page");
		return;
	}
	char ns[24];
	snprintf(ns, sizeof ns, "%lld", (long long)n);
	const char *params[] = { cursor, ns };
	db_query(a->deps.db, &st_driver_list, params, auth_driver_list_done, req);
}
