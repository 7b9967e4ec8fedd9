/* Accounts and access: riders, drivers and operators, argon2id passwords
 * (hashed on worker threads, never on the loop), HS256 access tokens, login
 * rate limits, the admin endpoints that create accounts, and the checks other
 * modules call to learn who is asking.
 *
 * Endpoints: POST /v1/auth/login, POST /v1/riders (sign-up), GET /v1/me,
 * POST /v1/admin/{drivers,riders,operators}, GET /v1/admin/drivers[/{id}]. */
#ifndef RH_AUTH_AUTH_H
#define RH_AUTH_AUTH_H

#include <stdbool.h>
#include <stdint.h>

#include "auth/jwt.h"
#include "core/err.h"

struct event_base;
struct metrics;
struct db;
struct http_server;
struct http_req;
struct auth_cfg;
struct rh_config;
struct auth;

struct auth_principal {
	enum auth_role role;
	char id[40];      /* account UUID; "admin" for the admin.token credential */
	int64_t exp;      /* token expiry, seconds since the epoch (0: admin.token) */
	char jti[40];
	int64_t cv;       /* the credential version the token was issued under */
};

struct auth_deps {
	struct event_base *base;
	struct metrics *metrics;
	struct db *db;
	struct http_server *http;
	const struct auth_cfg *cfg;
	const char *admin_token;        /* admin.token: the operator's credential ("": none) */
	const struct rh_config *rhcfg;  /* the vehicle types a driver account may have */
};
struct auth *auth_new(const struct auth_deps *d);
void auth_free(struct auth *a);

/* Who is asking: a valid Bearer token whose role is in `roles` (a mask of
 * enum auth_role). Otherwise replies 401 (no or bad token) or 403 (wrong
 * role) and returns false. */
bool auth_require_or_reply(struct auth *a, struct http_req *req, unsigned roles, struct auth_principal *out);
/* The operator: the admin.token credential or an operator's token. */
bool auth_operator_or_reply(struct auth *a, struct http_req *req, struct auth_principal *out);
/* For the WebSocket handshake and other non-REST paths. A valid signature is
 * not enough: the account must stand (not disabled or deleted, the token
 * issued under its current credential version), checked in memory against
 * what the database announced (sql/013). RH_OK; or RH_EINVAL (invalid,
 * expired, revoked), RH_ENOTFOUND (account deleted), RH_ECONFLICT (account
 * disabled), RH_EAGAIN (the accounts' standing is not loaded yet), with *why. */
rh_err auth_verify_token(struct auth *a, const char *token, struct auth_principal *out, const char **why);
/* Is the accounts' standing loaded (until then account tokens get 503)? */
bool auth_standing_loaded(const struct auth *a);
/* When an account's tokens stop standing (disabled, deleted, password
 * changed), its open sessions are closed with a WebSocket code and reason:
 * the daemon ties this to the gateway, which auth does not see. Returns how
 * many were closed. */
typedef int (*auth_standing_lost_fn)(void *ctx, const char *account_id, uint16_t code, const char *reason);
void auth_on_standing_lost(struct auth *a, auth_standing_lost_fn fn, void *ctx);
/* The same, replying 401 / 403 / 503 itself (with WWW-Authenticate) when the
 * token does not stand. */
bool auth_verify_token_or_reply(struct auth *a, struct http_req *req, const char *token, struct auth_principal *out);
/* Signs a token for an account under its credential version cv (also used
 * by `ridehaild admin token`). */
rh_err auth_issue_token(const unsigned char *key, size_t keylen, enum auth_role role, const char *id, int64_t cv,
			int64_t now_s, int64_t ttl_s, char *out, size_t outlen, int64_t *exp);
/* Is `type` one of the configured vehicle types ([tariff.<type>])? If not,
 * err says so (path vehicle.type, keyword enum). */
struct rh_config;
struct jv_error;
bool auth_vehicle_type_check(const struct rh_config *cfg, const char *type, struct jv_error *err);

/* `ridehaild admin ...` (blocking; talks to the database directly). */
int auth_admin_cli(const struct rh_config *cfg, int argc, char **argv);

#endif
