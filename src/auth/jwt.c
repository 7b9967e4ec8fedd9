#include "auth/jwt.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "net/jsonv.h"

#define B64 sodium_base64_VARIANT_URLSAFE_NO_PADDING
static const char header_b64_json[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

const char *auth_role_name(enum auth_role r)
{
	switch (r) {
	case ROLE_RIDER: return "rider";
	case ROLE_DRIVER: return "driver";
	case ROLE_OPERATOR: return "operator";
	default: return "none";
	}
}

enum auth_role auth_role_parse(const char *s)
{
	if (!s)
		return ROLE_NONE;
	if (strcmp(s, "rider") == 0)
		return ROLE_RIDER;
	if (strcmp(s, "driver") == 0)
		return ROLE_DRIVER;
	if (strcmp(s, "operator") == 0)
		return ROLE_OPERATOR;
	return ROLE_NONE;
}

static size_t jwt_b64_encode(char *out, size_t outlen, const void *in, size_t inlen)
{
	if (sodium_base64_encoded_len(inlen, B64) > outlen)
		return 0;
	sodium_bin2base64(out, outlen, in, inlen, B64);
	return strlen(out);
}

rh_err jwt_sign(const unsigned char *key, size_t keylen, const struct jwt_claims *c, char *out, size_t outlen)
{
	char payload[512], signing[1024];
	unsigned char mac[crypto_auth_hmacsha256_BYTES];
	int n = snprintf(payload, sizeof payload,
			 "{\"iss\":\"ridehail\",\"sub\":\"%s\",\"role\":\"%s\",\"iat\":%lld,\"exp\":%lld,\"jti\":\"%s\","
			 "\"cv\":%lld}",
			 c->sub, auth_role_name(c->role), (long long)c->iat, (long long)c->exp, c->jti, (long long)c->cv);
	if (n < 0 || (size_t)n >= sizeof payload)
		return RH_EINVAL;
	size_t len = jwt_b64_encode(signing, sizeof signing, header_b64_json, strlen(header_b64_json));
	signing[len++] = '.';
	size_t pl = jwt_b64_encode(signing + len, sizeof signing - len, payload, (size_t)n);
	if (!pl)
		return RH_EINVAL;
	len += pl;
	crypto_auth_hmacsha256_state st;
	crypto_auth_hmacsha256_init(&st, key, keylen);
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)signing, len);
	crypto_auth_hmacsha256_final(&st, mac);
	char sig[64];
	jwt_b64_encode(sig, sizeof sig, mac, sizeof mac);
	if (len + 1 + strlen(sig) + 1 > outlen)
		return RH_EINVAL;
	snprintf(out, outlen, "%.*s.%s", (int)len, signing, sig);
	return RH_OK;
}

static rh_err jwt_refuse(const char **why, const char *reason)
{
	if (why)
		*why = reason;
	return RH_EINVAL;
}

/* Decodes one base64url part into a NUL-terminated buffer. */
static bool jwt_b64_decode(const char *in, size_t inlen, unsigned char *out, size_t outcap, size_t *outlen)
{
	const char *end;
	if (sodium_base642bin(out, outcap - 1, in, inlen, NULL, outlen, &end, B64) != 0 || end != in + inlen)
		return false;
	out[*outlen] = '\0';
	return true;
}

static bool jwt_get_int(const cJSON *o, const char *name, int64_t *v)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, name);
	if (!cJSON_IsNumber(j) || j->valuedouble != floor(j->valuedouble) || fabs(j->valuedouble) > 1e15)
		return false;
	*v = (int64_t)j->valuedouble;
	return true;
}

rh_err jwt_verify(const unsigned char *key, size_t keylen, const char *token, int64_t now_s, int64_t leeway_s,
		  struct jwt_claims *out, const char **why)
{
	size_t tl = strnlen(token, JWT_MAX_LEN + 1);
	if (tl > JWT_MAX_LEN)
		return jwt_refuse(why, "token too long");
	const char *d1 = memchr(token, '.', tl);
	const char *d2 = d1 ? memchr(d1 + 1, '.', tl - (size_t)(d1 + 1 - token)) : NULL;
	if (!d1 || !d2 || memchr(d2 + 1, '.', tl - (size_t)(d2 + 1 - token)))
		return jwt_refuse(why, "malformed token");

	/* 1. the algorithm, before believing anything else */
	unsigned char header[256];
	size_t hl;
	if (!jwt_b64_decode(token, (size_t)(d1 - token), header, sizeof header, &hl))
		return jwt_refuse(why, "malformed header");
	cJSON *h = cJSON_ParseWithLength((const char *)header, hl);
	const cJSON *alg = cJSON_GetObjectItemCaseSensitive(h, "alg");
	const cJSON *typ = cJSON_GetObjectItemCaseSensitive(h, "typ");
	bool alg_ok = cJSON_IsString(alg) && strcmp(alg->valuestring, "HS256") == 0 &&
		      (!typ || (cJSON_IsString(typ) && strcmp(typ->valuestring, "JWT") == 0)) &&
		      !cJSON_GetObjectItemCaseSensitive(h, "crit");
	cJSON_Delete(h);
	if (!alg_ok)
		return jwt_refuse(why, "unsupported algorithm");

	/* 2. the MAC, in constant time */
	unsigned char sig[64];
	size_t sl;
	if (!jwt_b64_decode(d2 + 1, tl - (size_t)(d2 + 1 - token), sig, sizeof sig, &sl) ||
	    sl != crypto_auth_hmacsha256_BYTES)
		return jwt_refuse(why, "bad signature");
	crypto_auth_hmacsha256_state st;
	unsigned char mac[crypto_auth_hmacsha256_BYTES];
	crypto_auth_hmacsha256_init(&st, key, keylen);
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)token, (size_t)(d2 - token));
	crypto_auth_hmacsha256_final(&st, mac);
	if (sodium_memcmp(mac, sig, sizeof mac) != 0)
		return jwt_refuse(why, "bad signature");

	/* 3. the claims */
	unsigned char payload[768];
	size_t pl;
	if (!jwt_b64_decode(d1 + 1, (size_t)(d2 - d1 - 1), payload, sizeof payload, &pl))
		return jwt_refuse(why, "malformed claims");
	cJSON *p = cJSON_ParseWithLength((const char *)payload, pl);
	struct jwt_claims c;
	memset(&c, 0, sizeof c);
	const char *iss = jv_str(p, "iss"), *sub = jv_str(p, "sub"), *role = jv_str(p, "role"), *jti = jv_str(p, "jti");
	bool ok = cJSON_IsObject(p) && iss && strcmp(iss, "ridehail") == 0 && sub && jv_is_uuid(sub) &&
		  (c.role = auth_role_parse(role)) != ROLE_NONE && jwt_get_int(p, "exp", &c.exp) &&
		  jwt_get_int(p, "iat", &c.iat) &&
		  (!cJSON_GetObjectItemCaseSensitive(p, "cv") || (jwt_get_int(p, "cv", &c.cv) && c.cv >= 0));
	if (ok) {
		snprintf(c.sub, sizeof c.sub, "%s", sub);
		snprintf(c.jti, sizeof c.jti, "%s", jti ? jti : "");
	}
	cJSON_Delete(p);
	if (!ok)
		return jwt_refuse(why, "malformed claims");
	if (now_s > c.exp + leeway_s)
		return jwt_refuse(why, "expired");
	if (c.iat > now_s + leeway_s)
		return jwt_refuse(why, "issued in the future");
	*out = c;
	return RH_OK;
}
