#include "../unit.h"

#include <sodium.h>

#include "auth/jwt.h"

static const unsigned char key[] = "0123456789abcdef0123456789abcdef";
#define KEYLEN (sizeof key - 1)

static void make(char *tok, size_t n, int64_t iat, int64_t exp)
{
	struct jwt_claims c = { .role = ROLE_DRIVER, .iat = iat, .exp = exp };
	snprintf(c.sub, sizeof c.sub, "6f1c1b8e-8a5b-4c43-9a52-0f5e7c1d2a3b");
	snprintf(c.jti, sizeof c.jti, "abc");
	if (jwt_sign(key, KEYLEN, &c, tok, n) != RH_OK)
		unit_fail(__FILE__, __LINE__, "sign failed");
}

UNIT_TEST(jwt_roundtrip)
{
	char tok[JWT_MAX_LEN];
	struct jwt_claims c;
	const char *why = NULL;
	REQUIRE(sodium_init() >= 0);
	make(tok, sizeof tok, 1000, 2000);
	CHECK(jwt_verify(key, KEYLEN, tok, 1500, 30, &c, &why) == RH_OK);
	CHECK_EQ_STR(c.sub, "6f1c1b8e-8a5b-4c43-9a52-0f5e7c1d2a3b");
	CHECK(c.role == ROLE_DRIVER);
	CHECK_EQ_INT(c.exp, 2000);
	CHECK_EQ_STR(c.jti, "abc");
	/* leeway */
	CHECK(jwt_verify(key, KEYLEN, tok, 2029, 30, &c, &why) == RH_OK);
	CHECK(jwt_verify(key, KEYLEN, tok, 2031, 30, &c, &why) == RH_EINVAL);
	CHECK_EQ_STR(why, "expired");
	CHECK(jwt_verify(key, KEYLEN, tok, 900, 30, &c, &why) == RH_EINVAL);
	CHECK_EQ_STR(why, "issued in the future");
}

UNIT_TEST(jwt_tampering_refused)
{
	char tok[JWT_MAX_LEN], bad[JWT_MAX_LEN];
	struct jwt_claims c;
	const char *why;
	REQUIRE(sodium_init() >= 0);
	make(tok, sizeof tok, 1000, 2000);
	/* every single-character change anywhere is caught */
	for (size_t i = 0; tok[i]; i++) {
		if (tok[i] == '.')
			continue;
		snprintf(bad, sizeof bad, "%s", tok);
		bad[i] = bad[i] == 'A' ? 'B' : 'A';
		why = NULL;
		if (jwt_verify(key, KEYLEN, bad, 1500, 30, &c, &why) == RH_OK)
			unit_fail(__FILE__, __LINE__, "tampered token accepted at %zu", i);
	}
	/* the wrong key */
	CHECK(jwt_verify((const unsigned char *)"another key of thirty-two bytes!", 32, tok, 1500, 30, &c, &why) ==
	      RH_EINVAL);
	CHECK_EQ_STR(why, "bad signature");
	/* alg "none" with no signature, and HS512 */
	char none[512];
	char hdr[128], body[256];
	size_t hl, bl;
	sodium_bin2base64(hdr, sizeof hdr, (const unsigned char *)"{\"alg\":\"none\",\"typ\":\"JWT\"}", 26,
			  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	const char *claims = "{\"iss\":\"ridehail\",\"sub\":\"6f1c1b8e-8a5b-4c43-9a52-0f5e7c1d2a3b\",\"role\":\"operator\",\"iat\":1000,\"exp\":9000}";
	sodium_bin2base64(body, sizeof body, (const unsigned char *)claims, strlen(claims),
			  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	hl = strlen(hdr);
	bl = strlen(body);
	snprintf(none, sizeof none, "%.*s.%.*s.", (int)hl, hdr, (int)bl, body);
	CHECK(jwt_verify(key, KEYLEN, none, 1500, 30, &c, &why) == RH_EINVAL);
	CHECK_EQ_STR(why, "unsupported algorithm");
	/* garbage shapes */
	const char *junk[] = { "", "a", "a.b", "a.b.c.d", "...", "eyJhbGciOiJIUzI1NiJ9..", tok + 1 };
	for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++)
		CHECK(jwt_verify(key, KEYLEN, junk[i], 1500, 30, &c, &why) == RH_EINVAL);
}
