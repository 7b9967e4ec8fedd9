/* The accounts whose access tokens no longer all stand: disabled, deleted,
 * or with a credential version above 0 (a password changed, a disable
 * lifted: tokens issued before are void). Every other account is in good
 * standing, so the table holds only these, and every request is checked
 * against it in memory (sql/013 says where its contents come from).
 *
 * Until the first full load the table does not know: callers refuse then
 * (fail closed) rather than believe a token it might void. Pure: no
 * database, no clock. */
#ifndef RH_AUTH_REVOKE_H
#define RH_AUTH_REVOKE_H

#include <stdbool.h>
#include <stdint.h>

#include "auth/jwt.h"
#include "core/uuid.h"

enum revoke_verdict {
	REVOKE_OK = 0,
	REVOKE_UNKNOWN,   /* not loaded yet */
	REVOKE_STALE,     /* issued under an older credential version: log in again */
	REVOKE_DISABLED,
	REVOKE_DELETED,
};

struct revoke_table;

struct revoke_table *revoke_new(void);
void revoke_free(struct revoke_table *t);

/* An account's state as the database has it. An account in good standing
 * (version 0, enabled, not deleted) is dropped from the table. Returns true
 * when the change ends what was allowed before (a higher version, or newly
 * disabled or deleted): open sessions should close. A lower version than
 * the table holds is ignored (an older notification arriving late). */
bool revoke_set(struct revoke_table *t, const struct uuid *id, enum auth_role role, int64_t cv, bool disabled,
		bool deleted);
/* A full reload: begin, revoke_set every account the database lists, end.
 * Accounts not listed are in good standing again (the table is replaced at
 * end); the table is "loaded" from the first end on. */
void revoke_reload_begin(struct revoke_table *t);
void revoke_reload_end(struct revoke_table *t);
bool revoke_is_loaded(const struct revoke_table *t);

/* May a token of this account, issued under credential version cv, act? */
enum revoke_verdict revoke_check(const struct revoke_table *t, const struct uuid *id, int64_t cv);
const char *revoke_verdict_name(enum revoke_verdict v);
int revoke_count(const struct revoke_table *t);

#endif
