/* Shared inside the auth module: the daemon's account endpoints (auth.c),
 * the accounts' standing and the endpoints that change it (accounts.c), and
 * the admin CLI (cli.c), so that all validate and store accounts the same
 * way. */
#ifndef RH_AUTH_INTERNAL_H
#define RH_AUTH_INTERNAL_H

#include <sodium.h>
#include <stdbool.h>

#include "auth/auth.h"
#include "auth/revoke.h"
#include "core/worker.h"
#include "net/conncount.h"
#include "net/jsonv.h"
#include "store/db.h"

struct conn_counts;
struct event;
struct metric_cell;
struct metric_family;
struct ratelimit;
struct token_cache_entry;
struct worker_pool;

struct auth {
	struct auth_deps deps;
	const struct auth_cfg *cfg;
	struct worker_pool *pool;
	unsigned char key[1024];
	size_t keylen;
	struct ratelimit *rl_account, *rl_address, *rl_signup;
	struct ratelimit *rl_failures; /* failed logins per address: past it, the second hashing lane */
	struct conn_counts *hashing;   /* logins being hashed, per address */
	char dummy_hash[crypto_pwhash_STRBYTES]; /* verified against when the account does not exist */
	struct metric_family *f_logins;
	struct metric_cell *m_queue;
	/* Tokens verified recently: apps send the same token on every request
	 * and every reconnect, and checking a signature costs microseconds (a
	 * tenth of a nearby query). Direct-mapped by a keyed hash of the token;
	 * a hit compares the whole token in constant time and re-checks expiry
	 * (and, as every token, the account's standing). */
	unsigned char cache_key[crypto_shorthash_KEYBYTES];
	struct token_cache_entry *cache;
	/* The accounts whose tokens no longer all stand (accounts.c). */
	struct revoke_table *revoked;
	struct event *reload_timer;
	struct metric_cell *m_revoked, *m_refused[5];
	auth_standing_lost_fn standing_lost; /* closes an account's sessions (the daemon's) */
	void *standing_ctx;
};

extern const struct jv_field auth_rider_fields[];
extern const struct jv_field auth_driver_fields[];
extern const struct jv_field auth_operator_fields[];
extern struct db_stmt st_insert_rider, st_insert_driver, st_insert_operator;
/* By role index (auth_role_index): disable/enable ($1 id, $2 boolean) and
 * delete ($1 id; one row: exists, busy, new credential version or NULL). */
extern struct db_stmt st_set_disabled[3], st_delete[3];

/* The table of each role (0 rider, 1 driver, 2 operator). */
int auth_role_index(enum auth_role r);

/* argon2id on the worker threads, for accounts.c: `done` runs on the loop
 * with the outcome (a hash: the new hash; a verify: whether it matched).
 * false when the queue is full (nothing will run). */
typedef void (*auth_pw_cb)(void *arg, bool ok, const char *hash);
bool auth_pw_hash(struct auth *a, const char *password, auth_pw_cb done, void *arg);
bool auth_pw_verify(struct auth *a, const char *password, const char *hash, auth_pw_cb done, void *arg);

/* accounts.c: the standing of accounts (loaded, kept up to date by NOTIFY),
 * the endpoints that change it, and the end of their sessions. */
void auth_accounts_init(struct auth *a);
void auth_accounts_fini(struct auth *a);
/* An account's new state, from the database (a row we wrote, a
 * notification, a login): the table is updated and, when this ends what was
 * allowed, the account's open sessions are closed with the reason. */
void auth_account_changed(struct auth *a, enum auth_role role, const char *id, int64_t cv, bool disabled,
			  bool deleted);
/* The login reply's token, for a password change too. */
void auth_reply_token(struct auth *a, struct http_req *req, enum auth_role role, const char *id, int64_t cv);

/* A password job: argon2id on the worker threads, for a login (auth.c), a
 * sign-up or an account created (account_api.c), accounts.c's plain hash or
 * verify; password.c runs them. */
#define PASSWORD_MAX_BYTES 1024

enum pw_kind { PW_HASH, PW_VERIFY };

struct pw_job {
	struct worker_job job;
	struct auth *auth;
	struct http_req *req;
	enum pw_kind kind;
	bool ok;
	unsigned long long opslimit;
	size_t memlimit;
	char password[PASSWORD_MAX_BYTES + 1];
	char hash[crypto_pwhash_STRBYTES];
	/* what to do next, on the loop */
	void (*next)(struct pw_job *j);
	cJSON *body;          /* the validated request body (sign-up, create) */
	enum auth_role role;
	char account_id[40];
	int64_t cv;           /* the account's credential version */
	bool disabled, found;
	/* a login's rate-limit keys (its address's, its account's) */
	char addr[64];
	struct conn_addr ca;  /* the address, for the count of its logins being hashed */
	bool has_addr;
	int lane;
	char account_key[96];
	/* a plain hash or verify for accounts.c (auth_pw_hash/auth_pw_verify) */
	auth_pw_cb cb;
	void *cb_arg;
};

/* password.c: the argon2id jobs behind a login, a sign-up, an account created */
void auth_pw_job_free(struct pw_job *j);
struct pw_job *auth_pw_job_new(struct auth *a, struct http_req *req, enum pw_kind kind, const char *password,
			       void (*next)(struct pw_job *));
void auth_pw_submit_or_reply(struct pw_job *j);
/* auth.c: the rate limits, the client's address */
bool auth_limited_or_reply(struct http_req *req, struct ratelimit *rl, const char *key, const char *what);
bool auth_peer_address(struct http_req *req, char *out, size_t n, struct conn_addr *ca);
/* account_api.c: the endpoints that create and read accounts, and their
 * statements */
extern struct db_stmt st_me[3], st_driver_get, st_driver_list;
void auth_signup(struct http_req *req, void *ctx);
void auth_admin_create_rider(struct http_req *req, void *ctx);
void auth_admin_create_operator(struct http_req *req, void *ctx);
void auth_admin_create_driver(struct http_req *req, void *ctx);
void auth_me(struct http_req *req, void *ctx);
void auth_admin_driver_get(struct http_req *req, void *ctx);
void auth_admin_driver_list(struct http_req *req, void *ctx);

#endif
