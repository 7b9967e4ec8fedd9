/* JSON Web Tokens, HS256 only (HMAC-SHA-256 from libsodium).
 *
 * Verification pins the algorithm (a token naming any other "alg", "none"
 * included, is refused before anything else is believed), checks the MAC in
 * constant time before parsing the claims, requires iss = "ridehail", a known
 * role, a subject, and exp/iat within `leeway_s` of now. Time is passed in. */
#ifndef RH_AUTH_JWT_H
#define RH_AUTH_JWT_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

#define JWT_MAX_LEN 1024

enum auth_role { ROLE_NONE = 0, ROLE_RIDER = 1, ROLE_DRIVER = 2, ROLE_OPERATOR = 4 };

struct jwt_claims {
	char sub[40];       /* account id (UUID) */
	enum auth_role role;
	int64_t iat, exp;   /* seconds since the epoch */
	char jti[40];       /* unique token id */
	int64_t cv;         /* the account's credential version it was issued under ("cv"; 0 when absent) */
};

const char *auth_role_name(enum auth_role r);
enum auth_role auth_role_parse(const char *s);

/* Writes a compact JWS into out. */
rh_err jwt_sign(const unsigned char *key, size_t keylen, const struct jwt_claims *c, char *out, size_t outlen) RH_MUST_CHECK;
/* RH_OK and *out filled, or RH_EINVAL with *why ("expired", "bad signature"...). */
rh_err jwt_verify(const unsigned char *key, size_t keylen, const char *token, int64_t now_s, int64_t leeway_s,
		  struct jwt_claims *out, const char **why) RH_MUST_CHECK;

#endif
