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

#define RATELIMIT_KEYS 65536

#define TOKEN_CACHE_SLOTS 4096
#define TOKEN_CACHE_MAX_LEN 480

struct token_cache_entry {
	uint16_t len; /* 0: empty */
	char token[TOKEN_CACHE_MAX_LEN];
	struct auth_principal who;
};

/* ------------------------------------------------------------ statements */

static struct db_stmt st_login[3] = {
	{ "auth_login_rider", "SELECT id, password_hash, disabled, credential_version FROM riders"
			      " WHERE lower(email) = lower($1) AND deleted_at IS NULL", 1 },
	{ "auth_login_driver", "SELECT id, password_hash, disabled, credential_version FROM drivers"
			       " WHERE lower(email) = lower($1) AND deleted_at IS NULL", 1 },
	{ "auth_login_operator", "SELECT id, password_hash, disabled, credential_version FROM operators"
				 " WHERE lower(email) = lower($1) AND deleted_at IS NULL", 1 },
};
struct db_stmt st_insert_rider = {
	"auth_insert_rider",
	"INSERT INTO riders (email, name, phone, password_hash) VALUES ($1, $2, $3, $4) RETURNING rider_json(riders)", 4
};
struct db_stmt st_insert_operator = {
	"auth_insert_operator",
	"INSERT INTO operators (email, name, password_hash) VALUES ($1, $2, $3) RETURNING operator_json(operators)", 3
};
struct db_stmt st_insert_driver = {
	"auth_insert_driver",
	"INSERT INTO drivers (email, name, phone, password_hash, vehicle_type, vehicle_make, vehicle_model,"
	" vehicle_color, plate) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING driver_json(drivers)", 9
};

int auth_role_index(enum auth_role r)
{
	return r == ROLE_RIDER ? 0 : r == ROLE_DRIVER ? 1 : 2;
}

/* ------------------------------------------------------------ tokens */

rh_err auth_issue_token(const unsigned char *key, size_t keylen, enum auth_role role, const char *id, int64_t cv,
			int64_t now_s, int64_t ttl_s, char *out, size_t outlen, int64_t *exp)
{
	struct jwt_claims c = { .role = role, .iat = now_s, .exp = now_s + ttl_s, .cv = cv };
	unsigned char rnd[12];
	snprintf(c.sub, sizeof c.sub, "%s", id);
	randombytes_buf(rnd, sizeof rnd);
	sodium_bin2hex(c.jti, sizeof c.jti, rnd, sizeof rnd);
	if (exp)
		*exp = c.exp;
	return jwt_sign(key, keylen, &c, out, outlen);
}

/* Does the token's account still stand? (revoke.h: in memory, no database) */
static rh_err auth_standing(struct auth *a, const struct auth_principal *who, const char **why)
{
	struct uuid u;
	if (!uuid_parse(who->id, &u)) {
		*why = "malformed subject";
		return RH_EINVAL;
	}
	enum revoke_verdict v = revoke_check(a->revoked, &u, who->cv);
	if (v == REVOKE_OK)
		return RH_OK;
	metric_inc(a->m_refused[v]);
	*why = revoke_verdict_name(v);
	switch (v) {
	case REVOKE_UNKNOWN: return RH_EAGAIN;
	case REVOKE_DISABLED: return RH_ECONFLICT;
	case REVOKE_DELETED: return RH_ENOTFOUND;
	default: return RH_EINVAL;
	}
}

rh_err auth_verify_token(struct auth *a, const char *token, struct auth_principal *out, const char **why)
{
	const char *unused;
	if (!why)
		why = &unused;
	int64_t now_s = rh_wall_ms() / 1000, leeway_s = a->cfg->leeway_ms / 1000;
	size_t len = strlen(token);
	struct token_cache_entry *slot = NULL;
	if (len < TOKEN_CACHE_MAX_LEN) {
		uint64_t h;
		crypto_shorthash((unsigned char *)&h, (const unsigned char *)token, len, a->cache_key);
		slot = &a->cache[h % TOKEN_CACHE_SLOTS];
		if (slot->len == len && sodium_memcmp(slot->token, token, len) == 0 && now_s <= slot->who.exp + leeway_s) {
			*out = slot->who;
			return auth_standing(a, out, why);
		}
	}
	struct jwt_claims c;
	rh_err e = jwt_verify(a->key, a->keylen, token, now_s, leeway_s, &c, why);
	if (e != RH_OK)
		return e;
	out->role = c.role;
	snprintf(out->id, sizeof out->id, "%s", c.sub);
	snprintf(out->jti, sizeof out->jti, "%s", c.jti);
	out->exp = c.exp;
	out->cv = c.cv;
	if (slot) {
		memcpy(slot->token, token, len);
		slot->len = (uint16_t)len;
		slot->who = *out;
	}
	return auth_standing(a, out, why);
}

static const char *auth_bearer(struct http_req *req)
{
	const char *h = http_req_header(req, "authorization");
	if (!h || strncasecmp(h, "Bearer ", 7) != 0)
		return NULL;
	h += 7;
	while (*h == ' ')
		h++;
	return *h ? h : NULL;
}

static void auth_reply_unauthorized(struct http_req *req, const char *detail)
{
	http_reply_header(req, "WWW-Authenticate", "Bearer realm=\"ridehail\"");
	http_reply_problem(req, PROBLEM_UNAUTHORIZED, NULL, "%s", detail);
}

static bool auth_token_equal(const char *given, const char *want);

/* The admin.token credential, which acts as an operator. */
static bool auth_is_admin_token(struct auth *a, const char *tok, struct auth_principal *out)
{
	const char *admin = a->deps.admin_token;
	if (!tok || !admin || !*admin || strchr(tok, '.') || !auth_token_equal(tok, admin))
		return false;
	memset(out, 0, sizeof *out);
	out->role = ROLE_OPERATOR;
	snprintf(out->id, sizeof out->id, "admin");
	return true;
}

bool auth_verify_token_or_reply(struct auth *a, struct http_req *req, const char *token, struct auth_principal *out)
{
	const char *why = NULL;
	switch (auth_verify_token(a, token, out, &why)) {
	case RH_OK:
		return true;
	case RH_EAGAIN:
		http_reply_header(req, "Retry-After", "1");
		http_reply_problem(req, PROBLEM_DB_UNAVAILABLE, NULL,
				   "accounts cannot be checked until the database has been reached; retry shortly");
		return false;
	case RH_ECONFLICT:
		http_reply_problem(req, PROBLEM_FORBIDDEN, NULL, "this account is disabled");
		return false;
	case RH_ENOTFOUND:
		auth_reply_unauthorized(req, "this account no longer exists");
		return false;
	default:
		auth_reply_unauthorized(req, strcmp(why, "expired") == 0 ? "the access token has expired; log in again"
					: strcmp(why, "revoked") == 0
					   ? "the access token was revoked (the password changed, or the account was re-enabled); log in again"
					   : "the access token is invalid");
		return false;
	}
}

bool auth_require_or_reply(struct auth *a, struct http_req *req, unsigned roles, struct auth_principal *out)
{
	const char *tok = auth_bearer(req);
	if ((roles & ROLE_OPERATOR) && auth_is_admin_token(a, tok, out))
		return true;
	if (!tok) {
		auth_reply_unauthorized(req, "an access token is required: Authorization: Bearer <token> from POST /v1/auth/login");
		return false;
	}
	if (!auth_verify_token_or_reply(a, req, tok, out))
		return false;
	if (!(roles & out->role)) {
		http_reply_problem(req, PROBLEM_FORBIDDEN, NULL, "a %s may not do this", auth_role_name(out->role));
		return false;
	}
	return true;
}

/* Hashing both sides first makes the comparison constant-time even when
 * the lengths differ. */
static bool auth_token_equal(const char *given, const char *want)
{
	unsigned char x[32], y[32];
	crypto_generichash(x, sizeof x, (const unsigned char *)given, strlen(given), NULL, 0);
	crypto_generichash(y, sizeof y, (const unsigned char *)want, strlen(want), NULL, 0);
	return sodium_memcmp(x, y, sizeof x) == 0;
}

bool auth_operator_or_reply(struct auth *a, struct http_req *req, struct auth_principal *out)
{
	const char *tok = auth_bearer(req);
	const char *admin = a->deps.admin_token;
	if (auth_is_admin_token(a, tok, out))
		return true;
	if (tok && strchr(tok, '.'))
		return auth_require_or_reply(a, req, ROLE_OPERATOR, out);
	if (tok && (!admin || !*admin)) {
		http_reply_problem(req, PROBLEM_FORBIDDEN, NULL,
				   "admin.token is not set: use an operator's access token (POST /v1/auth/login)");
		return false;
	}
	if (!tok) {
		auth_reply_unauthorized(req, "an operator credential is required: Authorization: Bearer <admin.token or operator token>");
		return false;
	}
	log_warn(http_req_logid(req), "auth: wrong operator credential from %s", http_req_peer(req));
	http_reply_problem(req, PROBLEM_FORBIDDEN, NULL, "wrong operator credential");
	return false;
}

/* ------------------------------------------------------------ rate limits */

bool auth_limited_or_reply(struct http_req *req, struct ratelimit *rl, const char *key, const char *what)
{
	int64_t retry_ms = 0;
	if (ratelimit_allow(rl, key, rh_mono_ns() / 1000000, &retry_ms))
		return false;
	char secs[24];
	snprintf(secs, sizeof secs, "%lld", (long long)((retry_ms + 999) / 1000));
	http_reply_header(req, "Retry-After", secs);
	cJSON *ext = cJSON_CreateObject();
	cJSON_AddNumberToObject(ext, "retry_after_s", (double)((retry_ms + 999) / 1000));
	http_reply_problem(req, PROBLEM_RATE_LIMITED, ext, "too many %s; retry in %s s", what, secs);
	return true;
}

/* The client's address as the per-address limits key it: an IPv4 address,
 * or the /64 an IPv6 address is in (one host commonly holds a whole /64:
 * keyed by the full address, a client would get 2^64 budgets). `out` is a
 * printable key; `ca` the same as a conn_addr (false: no address). */
bool auth_peer_address(struct http_req *req, char *out, size_t n, struct conn_addr *ca)
{
	char host[64];
	snprintf(host, sizeof host, "%s", http_req_peer(req));
	char *colon = strrchr(host, ':');
	if (colon)
		*colon = '\0';
	snprintf(out, n, "%s", host);
	struct sockaddr_in in = { .sin_family = AF_INET };
	struct sockaddr_in6 in6 = { .sin6_family = AF_INET6 };
	bool ok = inet_pton(AF_INET, host, &in.sin_addr) == 1 ? conn_counts_addr_of((struct sockaddr *)&in, ca)
		  : inet_pton(AF_INET6, host, &in6.sin6_addr) == 1 ? conn_counts_addr_of((struct sockaddr *)&in6, ca)
								    : false;
	if (ok && !(ca->b[10] == 0xff && ca->b[11] == 0xff && !ca->b[0])) {
		char v6[INET6_ADDRSTRLEN];
		inet_ntop(AF_INET6, ca->b, v6, sizeof v6);
		snprintf(out, n, "%s/64", v6);
	}
	return ok;
}

/* ------------------------------------------------------------ login */

static const char *const role_names[] = { "rider", "driver", "operator", NULL };

static const struct jv_field login_fields[] = {
	{ "role", JV_STRING, JV_REQUIRED, 0, 0, role_names },
	{ "email", JV_EMAIL, JV_REQUIRED },
	{ "password", JV_STRING, JV_REQUIRED, 1, PASSWORD_MAX_BYTES },
	{ 0 }
};

static void auth_login_count(struct auth *a, const char *result)
{
	const char *lv[] = { result };
	metric_inc(metric_cell(a->f_logins, lv));
}

static int64_t auth_now_ms(void) { return rh_mono_ns() / 1000000; }

static void auth_login_verified(struct pw_job *j)
{
	struct auth *a = j->auth;
	struct http_req *req = j->req;
	conn_counts_release(a->hashing, j->has_addr ? &j->ca : NULL);
	if (!j->ok || !j->found) {
		auth_login_count(a, "bad_credentials");
		/* an address that keeps failing waits behind those that do not */
		ratelimit_allow(a->rl_failures, j->addr, auth_now_ms(), NULL);
		log_info(http_req_logid(req), "login refused for a %s account from %s", auth_role_name(j->role),
			 http_req_peer(req));
		auth_reply_unauthorized(req, "invalid email or password");
	} else if (j->disabled) {
		auth_login_count(a, "disabled");
		http_reply_problem(req, PROBLEM_FORBIDDEN, NULL, "this account is disabled");
	} else {
		auth_login_count(a, "ok");
		/* a login that succeeds does not spend the account's budget: it
		 * bounds guesses, not a user's phones and tablets */
		ratelimit_refund(a->rl_account, j->account_key, auth_now_ms());
		auth_reply_token(a, req, j->role, j->account_id, j->cv);
	}
	auth_pw_job_free(j);
}

void auth_reply_token(struct auth *a, struct http_req *req, enum auth_role role, const char *id, int64_t cv)
{
	char token[JWT_MAX_LEN], exp_str[32];
	int64_t exp, now = rh_wall_ms() / 1000;
	if (auth_issue_token(a->key, a->keylen, role, id, cv, now, a->cfg->token_ttl_ms / 1000, token,
			     sizeof token, &exp) != RH_OK) {
		http_reply_problem(req, PROBLEM_INTERNAL, NULL, "cannot sign a token");
		return;
	}
	/* a bearer credential: no cache (a proxy's, a browser's) may keep it */
	http_reply_header(req, "Cache-Control", "no-store");
	rh_format_rfc3339(exp * 1000, exp_str);
	cJSON *r = cJSON_CreateObject();
	cJSON_AddStringToObject(r, "token", token);
	cJSON_AddStringToObject(r, "token_type", "Bearer");
	cJSON_AddStringToObject(r, "expires_at", exp_str);
	cJSON_AddNumberToObject(r, "expires_in", (double)(exp - now));
	cJSON_AddStringToObject(r, "role", auth_role_name(role));
	cJSON_AddStringToObject(r, "subject", id);
	http_reply_json(req, 200, r);
	sodium_memzero(token, sizeof token);
}

/* The email of an account that does not exist, as a rate-limit key: its
 * ASCII letters lower-cased. (An account that exists is keyed by its id:
 * the database found it by its own folding, lower(), which also folds what
 * ASCII does not, K (U+212A) to k, so no spelling of an address gets a
 * budget of its own.) */
static void auth_unknown_account_key(const char *role, const char *email, char *out, size_t n)
{
	snprintf(out, n, "email:%s:%s", role, email);
	for (char *c = out; *c; c++)
		*c = (char)tolower((unsigned char)*c);
}

static void auth_login_found(void *arg, const struct db_result *res)
{
	struct pw_job *j = arg;
	struct auth *a = j->auth;
	if (res->err != RH_OK) {
		ratelimit_refund(a->rl_address, j->addr, auth_now_ms()); /* our trouble, not the client's attempt */
		http_reply_err(j->req, db_result_err(res), "check credentials", res->message);
		auth_pw_job_free(j);
		return;
	}
	if (db_rows(res) == 1) {
		j->found = true;
		snprintf(j->account_id, sizeof j->account_id, "%s", db_get(res, 0, 0));
		snprintf(j->hash, sizeof j->hash, "%s", db_get(res, 0, 1));
		j->disabled = db_get(res, 0, 2)[0] == 't';
		j->cv = strtoll(db_get(res, 0, 3), NULL, 10);
		snprintf(j->account_key, sizeof j->account_key, "id:%s", j->account_id);
		/* the row is the truth: should a notification have been missed */
		auth_account_changed(a, j->role, j->account_id, j->cv, j->disabled, false);
	} else {
		/* No such account: check against a dummy hash anyway, so the reply
		 * takes as long as for a wrong password (no account enumeration). */
		snprintf(j->hash, sizeof j->hash, "%s", a->dummy_hash);
	}
	/* the account's budget, before any hashing */
	if (auth_limited_or_reply(j->req, a->rl_account, j->account_key, "login attempts for this account")) {
		auth_login_count(a, "rate_limited");
		auth_pw_job_free(j);
		return;
	}
	/* Hashing is the scarce part (argon2id, auth.hash_threads). The first
	 * lane is for addresses that have not failed lately and have no other
	 * login being hashed: a user logs in once and waits. A flood of guesses
	 * from many addresses, each under its own limit, ends up in the second
	 * lane after one attempt per address, and waits behind users. */
	bool first = ratelimit_check(a->rl_failures, j->addr, auth_now_ms()) &&
		     (!j->has_addr || conn_counts_of(a->hashing, &j->ca) == 0);
	j->lane = first ? 0 : 1;
	if (worker_submit_lane(a->pool, &j->job, j->lane) == RH_OK) {
		conn_counts_acquire(a->hashing, j->has_addr ? &j->ca : NULL);
	} else {
		/* refused for our overload: it spends neither budget */
		ratelimit_refund(a->rl_account, j->account_key, auth_now_ms());
		ratelimit_refund(a->rl_address, j->addr, auth_now_ms());
		auth_login_count(a, "overloaded");
		http_reply_header(j->req, "Retry-After", "1");
		http_reply_problem(j->req, PROBLEM_UNAVAILABLE, NULL, "too many password checks in progress; retry shortly");
		auth_pw_job_free(j);
	}
}

static void auth_login(struct http_req *req, void *ctx)
{
	struct auth *a = ctx;
	cJSON *body = http_req_json_valid_or_reply(req, login_fields);
	if (!body)
		return;
	const char *role = jv_str(body, "role"), *email = jv_str(body, "email");
	char addr[64];
	struct conn_addr ca;
	bool has_addr = auth_peer_address(req, addr, sizeof addr, &ca);
	/* the address's budget first: it costs no database round trip */
	if (auth_limited_or_reply(req, a->rl_address, addr, "login attempts from this address")) {
		auth_login_count(a, "rate_limited");
		cJSON_Delete(body);
		return;
	}
	struct pw_job *j = auth_pw_job_new(a, req, PW_VERIFY, jv_str(body, "password"), auth_login_verified);
	j->role = auth_role_parse(role);
	snprintf(j->addr, sizeof j->addr, "%s", addr);
	j->has_addr = has_addr;
	j->ca = ca;
	auth_unknown_account_key(role, email, j->account_key, sizeof j->account_key);
	const char *params[] = { email };
	db_query(a->deps.db, &st_login[auth_role_index(j->role)], params, auth_login_found, j);
	cJSON_Delete(body);
}

/* ------------------------------------------------------------ setup */

static const struct http_route auth_routes[] = {
	{ HTTP_POST, "/v1/auth/login", auth_login, 0 },
	{ HTTP_POST, "/v1/riders", auth_signup, 0 },
	{ HTTP_GET, "/v1/me", auth_me, 0 },
	{ HTTP_POST, "/v1/admin/riders", auth_admin_create_rider, 0 },
	{ HTTP_POST, "/v1/admin/operators", auth_admin_create_operator, 0 },
	{ HTTP_POST, "/v1/admin/drivers", auth_admin_create_driver, 0 },
	{ HTTP_GET, "/v1/admin/drivers", auth_admin_driver_list, 0 },
	{ HTTP_GET, "/v1/admin/drivers/{id}", auth_admin_driver_get, 0 },
	{ 0 },
};

static void auth_collect(void *arg)
{
	struct auth *a = arg;
	metric_set(a->m_queue, worker_queued(a->pool));
}

struct auth *auth_new(const struct auth_deps *d)
{
	static const char *const result_label[] = { "result", NULL };
	struct auth *a = RH_NEW(struct auth);
	const struct auth_cfg *cfg = d->cfg;
	a->deps = *d;
	a->cfg = cfg;
	a->cache = rh_calloc(TOKEN_CACHE_SLOTS, sizeof *a->cache);
	crypto_shorthash_keygen(a->cache_key);
	if (cfg->jwt_secret && *cfg->jwt_secret) {
		a->keylen = strlen(cfg->jwt_secret);
		memcpy(a->key, cfg->jwt_secret, a->keylen);
	} else {
		a->keylen = 32;
		randombytes_buf(a->key, a->keylen);
		log_warn(NULL, "auth.jwt_secret is empty: using a random key; tokens will not survive a restart");
	}
	a->pool = worker_pool_new(d->base, (int)cfg->hash_threads, (int)cfg->hash_queue_max);
	/* the first lane (logins from addresses in good standing, accounts being
	 * created) newest first: when a flood of fresh addresses fills it, a
	 * user who has just asked is not left behind all of them */
	worker_lane_lifo(a->pool, 0, true);
	worker_pool_skip_on_stop(a->pool); /* a pw_job not run is a failed check */
	auth_accounts_init(a);
	a->rl_account = ratelimit_new(cfg->login_per_account, cfg->login_per_account, RATELIMIT_KEYS);
	a->rl_address = ratelimit_new(cfg->login_per_address, cfg->login_per_address, RATELIMIT_KEYS);
	a->rl_signup = ratelimit_new(cfg->signup_per_address, cfg->signup_per_address, RATELIMIT_KEYS);
	/* failed logins per address: after one (forgotten 5 minutes later),
	 * the address's logins wait in the second lane */
	a->rl_failures = ratelimit_new(0.2, 1, RATELIMIT_KEYS);
	a->hashing = conn_counts_new();
	/* The dummy hash uses the cheapest parameters that still take as long as
	 * a real verify would: the stored hashes carry their own cost, so we
	 * hash once with the configured cost. */
	if (crypto_pwhash_str(a->dummy_hash, "not a password", 14, (unsigned long long)cfg->password_opslimit,
			      (size_t)cfg->password_memlimit) != 0) {
		log_error(NULL, "auth: cannot compute the dummy hash (password_memlimit too large?)");
		abort();
	}
	a->f_logins = metrics_counter(d->metrics, "ridehail_auth_logins_total",
				      "Login attempts by result: ok, bad_credentials, disabled, rate_limited, overloaded.",
				      result_label);
	a->m_queue = metric_cell(metrics_gauge(d->metrics, "ridehail_auth_password_jobs",
					       "Password hashing jobs queued or running on the worker threads.", NULL), NULL);
	metrics_on_collect(d->metrics, auth_collect, a);

	for (int i = 0; i < 3; i++) {
		db_register(d->db, &st_login[i]);
		db_register(d->db, &st_me[i]);
	}
	db_register(d->db, &st_insert_rider);
	db_register(d->db, &st_insert_operator);
	db_register(d->db, &st_insert_driver);
	db_register(d->db, &st_driver_get);
	db_register(d->db, &st_driver_list);
	http_server_add_routes(d->http, auth_routes, a);
	return a;
}

void auth_free(struct auth *a)
{
	if (!a)
		return;
	worker_pool_free(a->pool);
	auth_accounts_fini(a);
	ratelimit_free(a->rl_account);
	ratelimit_free(a->rl_address);
	ratelimit_free(a->rl_signup);
	ratelimit_free(a->rl_failures);
	conn_counts_free(a->hashing);
	sodium_memzero(a->key, sizeof a->key);
	sodium_memzero(a->cache, TOKEN_CACHE_SLOTS * sizeof *a->cache);
	rh_free(a->cache);
	rh_free(a);
}
