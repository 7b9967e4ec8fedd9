/* Accounts managed from the operator's desk (docs/api.md, "Accounts on the
 * console"): search every kind of account a page at a time, edit one (a
 * driver's vehicle too; disabling is an edit), and hand out one-time
 * password-reset links that the account holder redeems with
 * POST /v1/auth/password-reset. The SQL is sql/functions/50_account_admin.sql,
 * shared with `ridehaild admin` (manage_cli.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth_internal.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/strbuf.h"
#include "net/http.h"

static struct db_stmt st_search = {
	"auth_account_search", "SELECT account, id FROM account_search($1, $2, $3::boolean, $4::uuid, $5::integer)", 5
};
struct db_stmt auth_st_edit = {
	"auth_account_edit", "SELECT account, credential_version, disabled FROM account_edit($1, $2::uuid, $3::jsonb)", 3
};
struct db_stmt auth_st_reset_issue = {
	"auth_reset_issue",
	"SELECT to_char(e AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
	" FROM account_reset_issue($1, $2::uuid, decode($3, 'hex'), $4::integer, $5) e", 5
};
static struct db_stmt st_reset_usable = {
	"auth_reset_usable", "SELECT account_reset_usable(decode($1, 'hex'))", 1
};
static struct db_stmt st_reset_redeem = {
	"auth_reset_redeem", "SELECT role, id, credential_version, disabled FROM account_reset_redeem(decode($1, 'hex'), $2)",
	2
};

/* ------------------------------------------------------------ what an edit may name */

static const struct jv_field manage_vehicle_fields[] = {
	{ "type", JV_STRING, 0, 1, 31 },
	{ "make", JV_STRING, 0, 1, 50 },
	{ "model", JV_STRING, 0, 1, 50 },
	{ "color", JV_STRING, 0, 1, 30 },
	{ "plate", JV_STRING, 0, 1, 16 },
	{ 0 },
};

static const struct jv_field manage_rider_edit_fields[] = {
	{ "email", JV_EMAIL, 0 },
	{ "name", JV_STRING, 0, 1, 100 },
	{ "phone", JV_STRING, JV_NULLABLE, 3, 32 },
	{ "disabled", JV_BOOL, 0 },
	{ 0 },
};

static const struct jv_field manage_driver_edit_fields[] = {
	{ "email", JV_EMAIL, 0 },
	{ "name", JV_STRING, 0, 1, 100 },
	{ "phone", JV_STRING, JV_NULLABLE, 3, 32 },
	{ "disabled", JV_BOOL, 0 },
	{ "vehicle", JV_OBJECT, 0, 0, 0, NULL, manage_vehicle_fields },
	{ 0 },
};

static const struct jv_field manage_operator_edit_fields[] = {
	{ "email", JV_EMAIL, 0 },
	{ "name", JV_STRING, 0, 1, 100 },
	{ "disabled", JV_BOOL, 0 },
	{ 0 },
};

const struct jv_field *auth_edit_fields(enum auth_role r)
{
	return r == ROLE_RIDER    ? manage_rider_edit_fields
	       : r == ROLE_DRIVER ? manage_driver_edit_fields
				  : manage_operator_edit_fields;
}

bool auth_edit_check(const struct rh_config *cfg, enum auth_role r, const cJSON *body, struct jv_error *err)
{
	if (!jv_check(body, auth_edit_fields(r), err))
		return false;
	const char *type = jv_str(cJSON_GetObjectItemCaseSensitive(body, "vehicle"), "type");
	return !type || auth_vehicle_type_check(cfg, type, err);
}

/* ------------------------------------------------------------ reset tokens */

void auth_reset_token_new(char token[AUTH_RESET_TOKEN_LEN], char hash_hex[65])
{
	unsigned char raw[32];
	randombytes_buf(raw, sizeof raw);
	sodium_bin2base64(token, AUTH_RESET_TOKEN_LEN, raw, sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_memzero(raw, sizeof raw);
	auth_reset_token_hash(token, hash_hex);
}

void auth_reset_token_hash(const char *token, char hash_hex[65])
{
	unsigned char h[32];
	crypto_generichash(h, sizeof h, (const unsigned char *)token, strlen(token), NULL, 0);
	sodium_bin2hex(hash_hex, 65, h, sizeof h);
}

/* ------------------------------------------------------------ the role a path names */

/* /v1/admin/{riders,drivers,operators}[/...]: the role, ROLE_NONE if none. */
static enum auth_role auth_manage_path_role(struct http_req *req)
{
	const char *p = http_req_path(req);
	static const struct {
		const char *prefix;
		enum auth_role role;
	} paths[] = { { "/v1/admin/riders", ROLE_RIDER }, { "/v1/admin/drivers", ROLE_DRIVER },
		      { "/v1/admin/operators", ROLE_OPERATOR } };
	for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
		size_t n = strlen(paths[i].prefix);
		if (strncmp(p, paths[i].prefix, n) == 0 && (p[n] == '\0' || p[n] == '/' || p[n] == '?'))
			return paths[i].role;
	}
	return ROLE_NONE;
}

/* ------------------------------------------------------------ GET /v1/admin/{role}s */

struct auth_manage_list {
	struct http_req *req;
	int64_t limit;
};

static void auth_manage_list_done(void *arg, const struct db_result *res)
{
	struct auth_manage_list *l = arg;
	struct http_req *req = l->req;
	int64_t limit = l->limit;
	rh_free(l);
	if (res->err != RH_OK) {
		http_reply_err(req, db_result_err(res), "list the accounts", res->message);
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
	if (n > 0 && n == limit)
		sb_printf(&sb, "\"%s\"}", db_get(res, n - 1, 1));
	else
		sb_puts(&sb, "null}");
	http_reply_header(req, "Cache-Control", "no-store");
	http_reply(req, 200, "application/json", sb.buf, sb.len);
	sb_fini(&sb);
}

/* ?q=&disabled=true|false&limit=1..500&cursor=<next_cursor> */
static void auth_manage_list(struct http_req *req, void *ctx)
{
	struct auth *a = ctx;
	struct auth_principal who;
	if (!auth_operator_or_reply(a, req, &who))
		return;
	const char *q = http_req_query(req, "q"), *cursor = http_req_query(req, "cursor");
	const char *disabled = http_req_query(req, "disabled");
	int64_t n;
	if (!http_query_integer_or_reply(req, "limit", 1, 500, 50, false, &n))
		return;
	if (cursor && !jv_is_uuid(cursor)) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, "cursor", "format",
					 "cursor must be a next_cursor value from a previous page");
		return;
	}
	if (disabled && strcmp(disabled, "true") != 0 && strcmp(disabled, "false") != 0) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, "disabled", "enum", "disabled must be true or false");
		return;
	}
	if (q && (strlen(q) > 100 || !*q)) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, "q", "maxLength", "q must be 1 to 100 characters");
		return;
	}
	struct auth_manage_list *l = RH_NEW(struct auth_manage_list);
	l->req = req;
	l->limit = n;
	char ns[24];
	snprintf(ns, sizeof ns, "%lld", (long long)n);
	const char *params[] = { auth_role_name(auth_manage_path_role(req)), q, disabled, cursor, ns };
	db_query(a->deps.db, &st_search, params, auth_manage_list_done, l);
}

/* ------------------------------------------------------------ PATCH /v1/admin/{role}s/{id} */

struct manage_op {
	struct auth *a;
	struct http_req *req;
	enum auth_role role;
	char id[40];
	char by[48];
	char token[AUTH_RESET_TOKEN_LEN];
	char password[129];
};

static void auth_manage_op_free(struct manage_op *op)
{
	sodium_memzero(op->token, sizeof op->token);
	sodium_memzero(op->password, sizeof op->password);
	rh_free(op);
}

/* The operator and the path's {id}; else replies. */
static struct manage_op *auth_manage_target_or_reply(struct auth *a, struct http_req *req)
{
	struct auth_principal who;
	if (!auth_operator_or_reply(a, req, &who))
		return NULL;
	const char *id = http_req_param(req, "id");
	if (!jv_is_uuid(id)) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, "id", "format", "the account id must be a UUID");
		return NULL;
	}
	struct manage_op *op = RH_NEW(struct manage_op);
	op->a = a;
	op->req = req;
	op->role = auth_manage_path_role(req);
	rh_copy(op->id, sizeof op->id, id);
	rh_copy(op->by, sizeof op->by, who.id);
	return op;
}

static void auth_manage_edited(void *arg, const struct db_result *res)
{
	struct manage_op *op = arg;
	if (res->err != RH_OK) {
		if (db_is_unique_violation(res)) {
			const char *field = strstr(db_error_constraint(res), "plate") ? "vehicle.plate" : "email";
			http_reply_field_problem(op->req, PROBLEM_CONFLICT, field, "unique",
						 "another account has this %s", field);
		} else {
			http_reply_err(op->req, db_result_err(res), "change the account", res->message);
		}
	} else if (db_rows(res) == 0) {
		http_reply_problem(op->req, PROBLEM_NOT_FOUND, NULL, "no such %s", auth_role_name(op->role));
	} else {
		/* at once, not when the notification comes back */
		auth_account_changed(op->a, op->role, op->id, strtoll(db_get(res, 0, 1), NULL, 10),
				     db_get(res, 0, 2)[0] == 't', false);
		log_warn(http_req_logid(op->req), "%s %s changed by operator %s", auth_role_name(op->role), op->id, op->by);
		const char *json = db_get(res, 0, 0);
		http_reply_header(op->req, "Cache-Control", "no-store");
		http_reply(op->req, 200, "application/json", json, strlen(json));
	}
	auth_manage_op_free(op);
}

static void auth_manage_edit(struct http_req *req, void *ctx)
{
	struct auth *a = ctx;
	struct manage_op *op = auth_manage_target_or_reply(a, req);
	if (!op)
		return;
	cJSON *body = http_req_json_valid_or_reply(req, auth_edit_fields(op->role));
	if (!body) {
		auth_manage_op_free(op);
		return;
	}
	struct jv_error err;
	if (!auth_edit_check(a->deps.rhcfg, op->role, body, &err)) {
		http_reply_invalid(req, &err);
		cJSON_Delete(body);
		auth_manage_op_free(op);
		return;
	}
	char *json = cJSON_PrintUnformatted(body);
	cJSON_Delete(body);
	const char *params[] = { auth_role_name(op->role), op->id, json };
	db_query(a->deps.db, &auth_st_edit, params, auth_manage_edited, op);
	cJSON_free(json);
}

/* ------------------------------------------------------------ POST /v1/admin/{role}s/{id}/password-reset */

static void auth_manage_reset_issued(void *arg, const struct db_result *res)
{
	struct manage_op *op = arg;
	if (res->err != RH_OK) {
		http_reply_err(op->req, db_result_err(res), "issue the reset link", res->message);
	} else if (db_rows(res) != 1 || !db_get(res, 0, 0)) {
		http_reply_problem(op->req, PROBLEM_NOT_FOUND, NULL, "no such %s", auth_role_name(op->role));
	} else {
		log_warn(http_req_logid(op->req), "password reset link for %s %s issued by operator %s",
			 auth_role_name(op->role), op->id, op->by);
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "token", op->token);
		cJSON_AddStringToObject(o, "expires_at", db_get(res, 0, 0));
		char path[sizeof op->token + 32];
		snprintf(path, sizeof path, "/console#reset=%s", op->token);
		cJSON_AddStringToObject(o, "path", path);
		char *json = cJSON_PrintUnformatted(o);
		cJSON_Delete(o);
		http_reply_header(op->req, "Cache-Control", "no-store");
		http_reply(op->req, 201, "application/json", json, strlen(json));
		sodium_memzero(json, strlen(json));
		cJSON_free(json);
	}
	auth_manage_op_free(op);
}

static void auth_manage_reset_issue(struct http_req *req, void *ctx)
{
	struct auth *a = ctx;
	struct manage_op *op = auth_manage_target_or_reply(a, req);
	if (!op)
		return;
	char hash[65], ttl[24];
	auth_reset_token_new(op->token, hash);
	snprintf(ttl, sizeof ttl, "%d", AUTH_RESET_TTL_S);
	const char *params[] = { auth_role_name(op->role), op->id, hash, ttl, op->by };
	db_query(a->deps.db, &auth_st_reset_issue, params, auth_manage_reset_issued, op);
}

/* ------------------------------------------------------------ POST /v1/auth/password-reset */

static const struct jv_field reset_fields[] = {
	{ "token", JV_STRING, JV_REQUIRED, 43, 43 },
	{ "password", JV_STRING, JV_REQUIRED, 8, 128 },
	{ 0 },
};

static void auth_manage_reset_refused(struct http_req *req)
{
	http_reply_field_problem(req, PROBLEM_FORBIDDEN, "token", "valid",
				 "this reset link is unknown, used or expired: ask the operator for a new one");
}

static void auth_manage_reset_redeemed(void *arg, const struct db_result *res)
{
	struct manage_op *op = arg;
	if (res->err != RH_OK) {
		http_reply_err(op->req, db_result_err(res), "set the password", res->message);
	} else if (db_rows(res) != 1) {
		auth_manage_reset_refused(op->req);
	} else {
		enum auth_role role = auth_role_parse(db_get(res, 0, 0));
		/* every token and session issued before ends */
		auth_account_changed(op->a, role, db_get(res, 0, 1), strtoll(db_get(res, 0, 2), NULL, 10),
				     db_get(res, 0, 3)[0] == 't', false);
		log_warn(http_req_logid(op->req), "%s %s set its password with a reset link", auth_role_name(role),
			 db_get(res, 0, 1));
		http_reply(op->req, 204, NULL, NULL, 0);
	}
	auth_manage_op_free(op);
}

static void auth_manage_reset_hashed(void *arg, bool ok, const char *hash)
{
	struct manage_op *op = arg;
	if (!ok) {
		http_reply_problem(op->req, PROBLEM_INTERNAL, NULL, "cannot hash the password");
		auth_manage_op_free(op);
		return;
	}
	char th[65];
	auth_reset_token_hash(op->token, th);
	const char *params[] = { th, hash };
	db_query(op->a->deps.db, &st_reset_redeem, params, auth_manage_reset_redeemed, op);
}

static void auth_manage_reset_checked(void *arg, const struct db_result *res)
{
	struct manage_op *op = arg;
	if (res->err != RH_OK) {
		http_reply_err(op->req, db_result_err(res), "check the reset link", res->message);
	} else if (db_rows(res) != 1 || db_get(res, 0, 0)[0] != 't') {
		auth_manage_reset_refused(op->req);
	} else if (auth_pw_hash(op->a, op->password, auth_manage_reset_hashed, op)) {
		return;
	} else {
		http_reply_header(op->req, "Retry-After", "1");
		http_reply_problem(op->req, PROBLEM_UNAVAILABLE, NULL, "too many password checks in progress; retry shortly");
	}
	auth_manage_op_free(op);
}

/* The token is 256 random bits: it is checked before the password is
 * hashed, so made-up tokens cost a lookup, not an argon2id hash. */
static void auth_manage_reset_redeem(struct http_req *req, void *ctx)
{
	struct auth *a = ctx;
	cJSON *body = http_req_json_valid_or_reply(req, reset_fields);
	if (!body)
		return;
	struct manage_op *op = RH_NEW(struct manage_op);
	op->a = a;
	op->req = req;
	rh_copy(op->token, sizeof op->token, jv_str(body, "token"));
	rh_copy(op->password, sizeof op->password, jv_str(body, "password"));
	cJSON_Delete(body);
	char th[65];
	auth_reset_token_hash(op->token, th);
	const char *params[] = { th };
	db_query(a->deps.db, &st_reset_usable, params, auth_manage_reset_checked, op);
}

/* ------------------------------------------------------------ setup */

static const struct http_route manage_routes[] = {
	{ HTTP_GET, "/v1/admin/riders", auth_manage_list, 0 },
	{ HTTP_GET, "/v1/admin/drivers", auth_manage_list, 0 },
	{ HTTP_GET, "/v1/admin/operators", auth_manage_list, 0 },
	{ HTTP_PATCH, "/v1/admin/riders/{id}", auth_manage_edit, 0 },
	{ HTTP_PATCH, "/v1/admin/drivers/{id}", auth_manage_edit, 0 },
	{ HTTP_PATCH, "/v1/admin/operators/{id}", auth_manage_edit, 0 },
	{ HTTP_POST, "/v1/admin/riders/{id}/password-reset", auth_manage_reset_issue, 0 },
	{ HTTP_POST, "/v1/admin/drivers/{id}/password-reset", auth_manage_reset_issue, 0 },
	{ HTTP_POST, "/v1/admin/operators/{id}/password-reset", auth_manage_reset_issue, 0 },
	{ HTTP_POST, "/v1/auth/password-reset", auth_manage_reset_redeem, 0 },
	{ 0 },
};

void auth_manage_init(struct auth *a)
{
	db_register(a->deps.db, &st_search);
	db_register(a->deps.db, &auth_st_edit);
	db_register(a->deps.db, &auth_st_reset_issue);
	db_register(a->deps.db, &st_reset_usable);
	db_register(a->deps.db, &st_reset_redeem);
	http_server_add_routes(a->deps.http, manage_routes, a);
}
