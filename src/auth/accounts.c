/* Accounts' standing: which tokens still stand, and the endpoints that end
 * them. The table (auth/revoke.h) holds the accounts that are disabled,
 * deleted, or whose credential version moved on; it is loaded when the pool
 * starts listening on ridehail_accounts and kept current by the NOTIFY the
 * database sends for every change (sql/013), so every request is checked in
 * memory. A change that ends what was allowed closes the account's open
 * WebSocket sessions at once, with the reason.
 *
 * Endpoints (the operator credential; PATCH, which disables too, is
 * manage.c's): DELETE /v1/admin/{...}/{id} (the row stays
 * for its trips, emptied of personal data), PUT /v1/admin/{...}/{id}/password;
 * and for every account PUT /v1/me/password. */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth_internal.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "net/http.h"
#include "net/ratelimit.h"
#include "net/ws.h"

#define ACCOUNTS_CHANNEL "ridehail_accounts"

/* ------------------------------------------------------------ standing */

static struct db_stmt st_standing = {
	"auth_standing",
	"SELECT 'rider', id, credential_version, disabled, deleted_at IS NOT NULL FROM riders"
	" WHERE credential_version > 0 OR disabled OR deleted_at IS NOT NULL"
	" UNION ALL SELECT 'driver', id, credential_version, disabled, deleted_at IS NOT NULL FROM drivers"
	" WHERE credential_version > 0 OR disabled OR deleted_at IS NOT NULL"
	" UNION ALL SELECT 'operator', id, credential_version, disabled, deleted_at IS NOT NULL FROM operators"
	" WHERE credential_version > 0 OR disabled OR deleted_at IS NOT NULL"
	" UNION ALL SELECT role, id, 2147483647, true, true FROM deleted_accounts",
	0,
};

struct standing_state {
	bool inflight, again;
};
static struct standing_state standing; /* one auth per process */

void auth_account_changed(struct auth *a, enum auth_role role, const char *id, int64_t cv, bool disabled,
			  bool deleted)
{
	struct uuid u;
	if (!uuid_parse(id, &u))
		return;
	if (!revoke_set(a->revoked, &u, role, cv, disabled, deleted))
		return;
	metric_set(a->m_revoked, revoke_count(a->revoked));
	const char *reason = deleted ? "account deleted" : disabled ? "account disabled" : "credentials changed; log in again";
	uint16_t code = deleted || disabled ? WS_CLOSE_ACCOUNT : WS_CLOSE_TOKEN_EXPIRED;
	int n = a->standing_lost ? a->standing_lost(a->standing_ctx, id, code, reason) : 0;
	log_info(NULL, "account %s (%s): %s; %d session%s closed", id, auth_role_name(role), reason, n, n == 1 ? "" : "s");
}

static void auth_standing_reload(struct auth *a);

static void auth_standing_loaded_cb(void *arg, const struct db_result *res)
{
	struct auth *a = arg;
	standing.inflight = false;
	if (res->err != RH_OK) {
		log_warn(NULL, "accounts: cannot load their standing (%s); retrying in 1 s", res->message);
		struct timeval tv = { 1, 0 };
		evtimer_add(a->reload_timer, &tv);
		return;
	}
	int n = db_rows(res);
	for (int i = 0; i < n; i++)
		auth_account_changed(a, auth_role_parse(db_get(res, i, 0)), db_get(res, i, 1),
				     strtoll(db_get(res, i, 2), NULL, 10), db_get(res, i, 3)[0] == 't',
				     db_get(res, i, 4)[0] == 't');
	bool first = !revoke_is_loaded(a->revoked);
	revoke_reload_end(a->revoked);
	metric_set(a->m_revoked, revoke_count(a->revoked));
	log_info(NULL, "accounts: standing %s, %d account%s disabled, deleted or with tokens revoked",
		 first ? "loaded" : "reloaded", revoke_count(a->revoked), revoke_count(a->revoked) == 1 ? "" : "s");
	if (standing.again) {
		standing.again = false;
		auth_standing_reload(a);
	}
}

static void auth_standing_reload(struct auth *a)
{
	if (standing.inflight) {
		standing.again = true; /* after the one under way: it may have read too early */
		return;
	}
	standing.inflight = true;
	revoke_reload_begin(a->revoked);
	db_query(a->deps.db, &st_standing, NULL, auth_standing_loaded_cb, a);
}

static void auth_standing_retry(evutil_socket_t fd, short what, void *arg)
{
	auth_standing_reload(arg);
}

/* The pool (re)started listening: what was announced meanwhile was missed. */
static void auth_accounts_on_listen(void *arg)
{
	auth_standing_reload(arg);
}

static const char *const role_names[] = { "rider", "driver", "operator", NULL };
static const struct jv_field notify_fields[] = {
	{ "role", JV_STRING, JV_REQUIRED, 0, 0, role_names },
	{ "id", JV_UUID, JV_REQUIRED },
	{ "cv", JV_INTEGER, JV_REQUIRED, 0, 2147483647 },
	{ "disabled", JV_BOOL, JV_REQUIRED },
	{ "deleted", JV_BOOL, JV_REQUIRED },
	{ 0 },
};

/* {"role", "id", "cv", "disabled", "deleted"}: sql/013's trigger. */
static void auth_accounts_on_notify(void *arg, const char *payload)
{
	struct auth *a = arg;
	cJSON *j = cJSON_Parse(payload);
	struct jv_error err;
	if (!j || !jv_check(j, notify_fields, &err)) {
		log_warn(NULL, "accounts: ignoring a malformed notification: %.200s", payload);
		cJSON_Delete(j);
		return;
	}
	auth_account_changed(a, auth_role_parse(jv_str(j, "role")), jv_str(j, "id"), (int64_t)jv_num(j, "cv", 0),
			     cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "disabled")),
			     cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "deleted")));
	cJSON_Delete(j);
}

/* ------------------------------------------------------------ admin: disable, delete, password */

struct db_stmt st_set_disabled[3] = {
	{ "auth_disable_rider", "UPDATE riders r SET disabled = $2::boolean WHERE id = $1::uuid AND deleted_at IS NULL"
				" RETURNING rider_json(r), credential_version, disabled", 2 },
	{ "auth_disable_driver", "UPDATE drivers d SET disabled = $2::boolean WHERE id = $1::uuid AND deleted_at IS NULL"
				 " RETURNING driver_json(d), credential_version, disabled", 2 },
	{ "auth_disable_operator", "UPDATE operators o SET disabled = $2::boolean WHERE id = $1::uuid AND deleted_at IS NULL"
				   " RETURNING operator_json(o), credential_version, disabled", 2 },
};

/* A deleted account keeps its row (trips name it) and its id; its email,
 * name, phone, plate and password go. Not while it is in a trip: a rider's
 * trip not finished, a driver offered or on one. One row: (exists, busy,
 * the new credential version when deleted). */
struct db_stmt st_delete[3] = {
	{ "auth_delete_rider",
	  "WITH a AS (SELECT r.id, EXISTS (SELECT 1 FROM trips t WHERE t.rider_id = r.id"
	  "   AND t.state NOT IN ('COMPLETED', 'CANCELLED')) AS busy"
	  "   FROM riders r WHERE r.id = $1::uuid AND r.deleted_at IS NULL FOR UPDATE OF r),"
	  " u AS (UPDATE riders r SET deleted_at = now(), disabled = true,"
	  "   email = 'deleted-' || r.id || '@deleted.invalid', name = 'deleted', phone = NULL, password_hash = '!'"
	  "   FROM a WHERE r.id = a.id AND NOT a.busy RETURNING r.credential_version)"
	  " SELECT (SELECT count(*) FROM a), coalesce((SELECT busy FROM a), false), (SELECT credential_version FROM u)", 1 },
	{ "auth_delete_driver",
	  "WITH a AS (SELECT d.id, d.status IN ('offered', 'en_route', 'on_trip') AS busy"
	  "   FROM drivers d WHERE d.id = $1::uuid AND d.deleted_at IS NULL FOR UPDATE OF d),"
	  " u AS (UPDATE drivers d SET deleted_at = now(), disabled = true,"
	  "   email = 'deleted-' || d.id || '@deleted.invalid', name = 'deleted', phone = NULL, password_hash = '!',"
	  "   plate = '~' || substr(md5(d.id::text), 1, 15), status = 'offline',"
	  "   version = d.version + CASE WHEN d.status = 'offline' THEN 0 ELSE 1 END, updated_at = now()"
	  "   FROM a WHERE d.id = a.id AND NOT a.busy RETURNING d.credential_version)"
	  " SELECT (SELECT count(*) FROM a), coalesce((SELECT busy FROM a), false), (SELECT credential_version FROM u)", 1 },
	{ "auth_delete_operator",
	  "WITH a AS (SELECT o.id, false AS busy FROM operators o WHERE o.id = $1::uuid AND o.deleted_at IS NULL"
	  "   FOR UPDATE OF o),"
	  " u AS (UPDATE operators o SET deleted_at = now(), disabled = true,"
	  "   email = 'deleted-' || o.id || '@deleted.invalid', name = 'deleted', password_hash = '!'"
	  "   FROM a WHERE o.id = a.id RETURNING o.credential_version)"
	  " SELECT (SELECT count(*) FROM a), false, (SELECT credential_version FROM u)", 1 },
};

/* $3: the hash the change was decided on (a self-service change), or NULL. */
static struct db_stmt st_set_password[3] = {
	{ "auth_password_rider", "UPDATE riders SET password_hash = $2 WHERE id = $1::uuid AND deleted_at IS NULL"
				 " AND ($3::text IS NULL OR password_hash = $3) RETURNING credential_version, disabled", 3 },
	{ "auth_password_driver", "UPDATE drivers SET password_hash = $2 WHERE id = $1::uuid AND deleted_at IS NULL"
				  " AND ($3::text IS NULL OR password_hash = $3) RETURNING credential_version, disabled", 3 },
	{ "auth_password_operator", "UPDATE operators SET password_hash = $2 WHERE id = $1::uuid AND deleted_at IS NULL"
				    " AND ($3::text IS NULL OR password_hash = $3) RETURNING credential_version, disabled", 3 },
};

static struct db_stmt st_password_of[3] = {
	{ "auth_password_of_rider", "SELECT password_hash FROM riders WHERE id = $1::uuid AND deleted_at IS NULL", 1 },
	{ "auth_password_of_driver", "SELECT password_hash FROM drivers WHERE id = $1::uuid AND deleted_at IS NULL", 1 },
	{ "auth_password_of_operator", "SELECT password_hash FROM operators WHERE id = $1::uuid AND deleted_at IS NULL",
	  1 },
};

/* One request's work across the database and the hashing threads. */
struct acct_op {
	struct auth *a;
	struct http_req *req;
	enum auth_role role;
	char id[40];
	char old_hash[crypto_pwhash_STRBYTES];
	char password[1025]; /* the new one */
};

static void auth_acct_op_free(struct acct_op *op)
{
	sodium_memzero(op->password, sizeof op->password);
	sodium_memzero(op->old_hash, sizeof op->old_hash);
	rh_free(op);
}

static bool auth_db_failed_or_reply(struct http_req *req, const struct db_result *res)
{
	if (res->err == RH_OK)
		return false;
	http_reply_err(req, db_result_err(res), "change the account now", res->message);
	return true;
}

/* The role a /v1/admin/{riders,drivers,operators}/... path names. */
static enum auth_role auth_path_role(struct http_req *req)
{
	const char *p = http_req_path(req);
	return strncmp(p, "/v1/admin/riders/", 17) == 0	   ? ROLE_RIDER
	       : strncmp(p, "/v1/admin/drivers/", 18) == 0 ? ROLE_DRIVER
							    : ROLE_OPERATOR;
}

/* The operator, and the {id} of the path as a UUID; else replies. */
static bool auth_admin_target_or_reply(struct auth *a, struct http_req *req, struct acct_op **out)
{
	struct auth_principal who;
	if (!auth_operator_or_reply(a, req, &who))
		return false;
	const char *id = http_req_param(req, "id");
	if (!jv_is_uuid(id)) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, "id", "format", "the account id must be a UUID");
		return false;
	}
	struct acct_op *op = RH_NEW(struct acct_op);
	op->a = a;
	op->req = req;
	op->role = auth_path_role(req);
	snprintf(op->id, sizeof op->id, "%s", id);
	*out = op;
	return true;
}

static void auth_account_deleted(void *arg, const struct db_result *res)
{
	struct acct_op *op = arg;
	if (auth_db_failed_or_reply(op->req, res)) {
		auth_acct_op_free(op);
		return;
	}
	bool exists = db_rows(res) == 1 && strcmp(db_get(res, 0, 0), "0") != 0;
	bool busy = exists && db_get(res, 0, 1)[0] == 't';
	const char *cv = db_rows(res) == 1 ? db_get(res, 0, 2) : NULL;
	if (!exists) {
		http_reply_problem(op->req, PROBLEM_NOT_FOUND, NULL, "no such %s", auth_role_name(op->role));
	} else if (busy || !cv) {
		http_reply_problem(op->req, PROBLEM_CONFLICT, NULL,
				   "the %s is in a trip: finish or cancel it (or disable the account) first",
				   auth_role_name(op->role));
	} else {
		auth_account_changed(op->a, op->role, op->id, strtoll(cv, NULL, 10), true, true);
		log_warn(http_req_logid(op->req), "%s %s deleted by the operator", auth_role_name(op->role), op->id);
		http_reply(op->req, 204, NULL, NULL, 0);
	}
	auth_acct_op_free(op);
}

static void auth_admin_account_delete(struct http_req *req, void *ctx)
{
	struct auth *a = ctx;
	struct acct_op *op;
	if (!auth_admin_target_or_reply(a, req, &op))
		return;
	const char *params[] = { op->id };
	db_query(a->deps.db, &st_delete[auth_role_index(op->role)], params, auth_account_deleted, op);
}

static void auth_password_set(void *arg, const struct db_result *res);

static void auth_password_hashed(void *arg, bool ok, const char *hash)
{
	struct acct_op *op = arg;
	if (!ok) {
		http_reply_problem(op->req, PROBLEM_INTERNAL, NULL, "cannot hash the password");
		auth_acct_op_free(op);
		return;
	}
	const char *params[] = { op->id, hash, op->old_hash[0] ? op->old_hash : NULL };
	db_query(op->a->deps.db, &st_set_password[auth_role_index(op->role)], params, auth_password_set, op);
}

static bool auth_hash_or_reply(struct acct_op *op, auth_pw_cb done)
{
	if (auth_pw_hash(op->a, op->password, done, op))
		return true;
	http_reply_header(op->req, "Retry-After", "1");
	http_reply_problem(op->req, PROBLEM_UNAVAILABLE, NULL, "too many password checks in progress; retry shortly");
	auth_acct_op_free(op);
	return false;
}

static void auth_password_set(void *arg, const struct db_result *res)
{
	struct acct_op *op = arg;
	if (auth_db_failed_or_reply(op->req, res)) {
		auth_acct_op_free(op);
		return;
	}
	if (db_rows(res) == 0) {
		if (op->old_hash[0])
			http_reply_problem(op->req, PROBLEM_CONFLICT, NULL, "the password changed meanwhile; log in again");
		else
			http_reply_problem(op->req, PROBLEM_NOT_FOUND, NULL, "no such %s", auth_role_name(op->role));
		auth_acct_op_free(op);
		return;
	}
	int64_t cv = strtoll(db_get(res, 0, 0), NULL, 10);
	bool disabled = db_get(res, 0, 1)[0] == 't';
	/* every token and session issued before ends, this request's too */
	auth_account_changed(op->a, op->role, op->id, cv, disabled, false);
	if (op->old_hash[0]) {
		log_info(http_req_logid(op->req), "%s %s changed its password", auth_role_name(op->role), op->id);
		auth_reply_token(op->a, op->req, op->role, op->id, cv); /* the app goes on with a new one */
	} else {
		log_warn(http_req_logid(op->req), "password of %s %s set by the operator", auth_role_name(op->role), op->id);
		http_reply(op->req, 204, NULL, NULL, 0);
	}
	auth_acct_op_free(op);
}

static const struct jv_field admin_password_fields[] = {
	{ "password", JV_STRING, JV_REQUIRED, 8, 128 },
	{ 0 },
};

static void auth_admin_account_password(struct http_req *req, void *ctx)
{
	struct auth *a = ctx;
	struct acct_op *op;
	if (!auth_admin_target_or_reply(a, req, &op))
		return;
	cJSON *body = http_req_json_valid_or_reply(req, admin_password_fields);
	if (!body) {
		auth_acct_op_free(op);
		return;
	}
	snprintf(op->password, sizeof op->password, "%s", jv_str(body, "password"));
	cJSON_Delete(body);
	auth_hash_or_reply(op, auth_password_hashed);
}

/* ------------------------------------------------------------ self: PUT /v1/me/password */

static const struct jv_field me_password_fields[] = {
	{ "current_password", JV_STRING, JV_REQUIRED, 1, 1024 },
	{ "new_password", JV_STRING, JV_REQUIRED, 8, 128 },
	{ 0 },
};

struct auth_me_password {
	struct acct_op *op;
	char current[1025];
};

static void auth_me_current_checked(void *arg, bool ok, const char *hash)
{
	struct auth_me_password *m = arg;
	struct acct_op *op = m->op;
	sodium_memzero(m->current, sizeof m->current);
	rh_free(m);
	if (!ok) {
		http_reply_problem(op->req, PROBLEM_FORBIDDEN, NULL, "the current password is wrong");
		auth_acct_op_free(op);
		return;
	}
	auth_hash_or_reply(op, auth_password_hashed);
}

static void auth_me_hash_loaded(void *arg, const struct db_result *res)
{
	struct auth_me_password *m = arg;
	struct acct_op *op = m->op;
	if (auth_db_failed_or_reply(op->req, res) || db_rows(res) == 0) {
		if (res->err == RH_OK)
			http_reply_problem(op->req, PROBLEM_NOT_FOUND, NULL, "no such account");
		sodium_memzero(m->current, sizeof m->current);
		rh_free(m);
		auth_acct_op_free(op);
		return;
	}
	snprintf(op->old_hash, sizeof op->old_hash, "%s", db_get(res, 0, 0));
	if (!auth_pw_verify(op->a, m->current, op->old_hash, auth_me_current_checked, m)) {
		http_reply_header(op->req, "Retry-After", "1");
		http_reply_problem(op->req, PROBLEM_UNAVAILABLE, NULL, "too many password checks in progress; retry shortly");
		sodium_memzero(m->current, sizeof m->current);
		rh_free(m);
		auth_acct_op_free(op);
	}
}

static void auth_me_password(struct http_req *req, void *ctx)
{
	struct auth *a = ctx;
	struct auth_principal who;
	if (!auth_require_or_reply(a, req, ROLE_RIDER | ROLE_DRIVER | ROLE_OPERATOR, &who))
		return;
	cJSON *body = http_req_json_valid_or_reply(req, me_password_fields);
	if (!body)
		return;
	/* guessing the current password through here costs the account's
	 * login budget */
	char key[64];
	int64_t retry_ms = 0;
	snprintf(key, sizeof key, "id:%s", who.id);
	if (!ratelimit_allow(a->rl_account, key, rh_mono_ns() / 1000000, &retry_ms)) {
		cJSON_Delete(body);
		char secs[24];
		snprintf(secs, sizeof secs, "%lld", (long long)((retry_ms + 999) / 1000));
		http_reply_header(req, "Retry-After", secs);
		http_reply_problem(req, PROBLEM_RATE_LIMITED, NULL, "too many password attempts; retry in %s s", secs);
		return;
	}
	struct acct_op *op = RH_NEW(struct acct_op);
	op->a = a;
	op->req = req;
	op->role = who.role;
	snprintf(op->id, sizeof op->id, "%s", who.id);
	snprintf(op->password, sizeof op->password, "%s", jv_str(body, "new_password"));
	struct auth_me_password *m = RH_NEW(struct auth_me_password);
	m->op = op;
	snprintf(m->current, sizeof m->current, "%s", jv_str(body, "current_password"));
	cJSON_Delete(body);
	const char *params[] = { op->id };
	db_query(a->deps.db, &st_password_of[auth_role_index(op->role)], params, auth_me_hash_loaded, m);
}

/* ------------------------------------------------------------ setup */

static const struct http_route account_routes[] = {
	{ HTTP_DELETE, "/v1/admin/riders/{id}", auth_admin_account_delete, 0 },
	{ HTTP_DELETE, "/v1/admin/drivers/{id}", auth_admin_account_delete, 0 },
	{ HTTP_DELETE, "/v1/admin/operators/{id}", auth_admin_account_delete, 0 },
	{ HTTP_PUT, "/v1/admin/riders/{id}/password", auth_admin_account_password, 0 },
	{ HTTP_PUT, "/v1/admin/drivers/{id}/password", auth_admin_account_password, 0 },
	{ HTTP_PUT, "/v1/admin/operators/{id}/password", auth_admin_account_password, 0 },
	{ HTTP_PUT, "/v1/me/password", auth_me_password, 0 },
	{ 0 },
};

bool auth_standing_loaded(const struct auth *a) { return a && revoke_is_loaded(a->revoked); }

void auth_on_standing_lost(struct auth *a, auth_standing_lost_fn fn, void *ctx)
{
	a->standing_lost = fn;
	a->standing_ctx = ctx;
}

void auth_accounts_init(struct auth *a)
{
	static const char *const why_label[] = { "why", NULL };
	a->revoked = revoke_new();
	a->reload_timer = evtimer_new(a->deps.base, auth_standing_retry, a);
	memset(&standing, 0, sizeof standing);
	a->m_revoked = metric_cell(metrics_gauge(a->deps.metrics, "ridehail_auth_accounts_not_in_good_standing",
						 "Accounts disabled, deleted, or with tokens revoked (held in memory).", NULL),
				   NULL);
	struct metric_family *f = metrics_counter(a->deps.metrics, "ridehail_auth_tokens_refused_total",
						  "Validly signed tokens refused for their account's standing, by why.",
						  why_label);
	for (int v = REVOKE_UNKNOWN; v <= REVOKE_DELETED; v++)
		a->m_refused[v] = metric_cell(f, (const char *[]){ v == REVOKE_UNKNOWN ? "not_loaded"
								   : v == REVOKE_STALE	    ? "revoked"
								   : v == REVOKE_DISABLED   ? "disabled"
											    : "deleted" });
	db_register(a->deps.db, &st_standing);
	for (int i = 0; i < 3; i++) {
		db_register(a->deps.db, &st_set_disabled[i]);
		db_register(a->deps.db, &st_delete[i]);
		db_register(a->deps.db, &st_set_password[i]);
		db_register(a->deps.db, &st_password_of[i]);
	}
	db_listen(a->deps.db, ACCOUNTS_CHANNEL, auth_accounts_on_notify, auth_accounts_on_listen, a);
	http_server_add_routes(a->deps.http, account_routes, a);
}

void auth_accounts_fini(struct auth *a)
{
	if (a->reload_timer)
		event_free(a->reload_timer);
	revoke_free(a->revoked);
}
