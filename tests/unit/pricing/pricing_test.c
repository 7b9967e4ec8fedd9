#include "../unit.h"

#include <sodium.h>
#include <stdlib.h>

#include "core/settings.h"
#include "pricing/pricing.h"

static struct tariff_cfg tariff(void)
{
	struct tariff_cfg t = { .currency = "USD", .base = 250, .per_km = 156, .per_min = 30, .minimum = 700,
				.booking_fee = 0, .seats = 4 };
	snprintf(t.name, sizeof t.name, "standard");
	return t;
}

UNIT_TEST(pricing_fare_formula)
{
	struct tariff_cfg t = tariff();
	struct fare f;
	/* 10 km, 20 min: 250 + 1560 + 600 = 2410 */
	pricing_fare(&t, 10000, 1200, 1.0, &f);
	CHECK_EQ_INT(f.distance, 1560);
	CHECK_EQ_INT(f.time, 600);
	CHECK_EQ_INT(f.total, 2410);
	CHECK_EQ_STR(f.currency, "USD");
	/* rounding halves up: 156 x 2.5 m = 0.39 -> 0; 156 x 1.0 km = 156 */
	pricing_fare(&t, 3, 1, 1.0, &f);
	CHECK_EQ_INT(f.distance, 0);
	CHECK_EQ_INT(f.time, 1); /* 30 x 1 s / 60 = 0.5 -> 1 */
	CHECK_EQ_INT(f.total, 700); /* the minimum */
	/* surge multiplies before the minimum and the booking fee */
	t.booking_fee = 99;
	pricing_fare(&t, 10000, 1200, 1.5, &f);
	CHECK_EQ_INT(f.total, 3615 + 99);
	pricing_fare(&t, 1000, 60, 2.0, &f); /* (250+156+30) x 2 = 872 */
	CHECK_EQ_INT(f.total, 872 + 99);
	pricing_fare(&t, 100, 10, 3.0, &f); /* (250+16+5) x 3 = 813 */
	CHECK_EQ_INT(f.total, 813 + 99);
	pricing_fare(&t, 100, 10, 1.0, &f); /* 271 < 700 */
	CHECK_EQ_INT(f.total, 700 + 99);
}

static void sample(struct quote *q)
{
	struct tariff_cfg t = tariff();
	memset(q, 0, sizeof *q);
	pricing_fare(&t, 4321, 654, 1.2, &q->fare);
	q->pickup_lat = 52.090712;
	q->pickup_lng = -5.121433;
	q->dropoff_lat = -33.9;
	q->dropoff_lng = 151.2;
	q->expires_ms = 1800000000000LL;
}

UNIT_TEST(pricing_quote_roundtrip)
{
	REQUIRE(sodium_init() >= 0);
	struct quote_key k;
	pricing_quote_key("a-secret-of-at-least-thirty-two-chars", &k);
	struct quote q, back;
	sample(&q);
	char id[QUOTE_ID_MAX];
	pricing_quote_sign(&k, &q, id, sizeof id);
	CHECK(strncmp(id, "q3.", 3) == 0);
	CHECK(pricing_quote_open(&k, id, q.expires_ms, &back) == QUOTE_OK);
	CHECK_EQ_INT(back.fare.total, q.fare.total);
	CHECK_EQ_INT(back.fare.distance_m, 4321);
	CHECK_EQ_INT(back.fare.duration_s, 654);
	CHECK_EQ_STR(back.fare.vehicle_type, "standard");
	CHECK_EQ_STR(back.fare.method, "straight_line");
	CHECK_NEAR(back.fare.surge, 1.2, 1e-9);
	CHECK_NEAR(back.pickup_lat, q.pickup_lat, 1e-9);
	CHECK_NEAR(back.pickup_lng, q.pickup_lng, 1e-9);
	CHECK_NEAR(back.dropoff_lat, q.dropoff_lat, 1e-9);
	CHECK_EQ_INT(back.expires_ms, q.expires_ms);
	/* re-signing what was read gives the same id: the format is canonical */
	char again[QUOTE_ID_MAX];
	pricing_quote_sign(&k, &back, again, sizeof again);
	CHECK_EQ_STR(again, id);
	/* one millisecond late */
	CHECK(pricing_quote_open(&k, id, q.expires_ms + 1, &back) == QUOTE_EXPIRED);
	/* the same secret gives the same key; another does not verify */
	struct quote_key k2, k3;
	pricing_quote_key("a-secret-of-at-least-thirty-two-chars", &k2);
	pricing_quote_key("another-secret-of-at-least-thirty-two", &k3);
	CHECK(pricing_quote_open(&k2, id, 0, &back) == QUOTE_OK);
	CHECK(pricing_quote_open(&k3, id, 0, &back) == QUOTE_INVALID);
	/* q3 carries the pricing book's fields */
	q.fare.tariff_version = 7;
	q.fare.band = 1;
	q.fare.zone_fee = 550;
	q.fare.fixed = 5200;
	pricing_quote_sign(&k, &q, id, sizeof id);
	REQUIRE(pricing_quote_open(&k, id, 0, &back) == QUOTE_OK);
	CHECK_EQ_INT(back.fare.tariff_version, 7);
	CHECK_EQ_INT(back.fare.band, 1);
	CHECK_EQ_INT(back.fare.zone_fee, 550);
	CHECK_EQ_INT(back.fare.fixed, 5200);
	/* a q1 quote (HMAC-SHA-256) and a q2 one (no book fields), given out
	 * before an upgrade, still open, without a band; the version fixes the
	 * MAC, so q3's MAC under q1 does not */
	char v1[QUOTE_ID_MAX], v2[QUOTE_ID_MAX];
	{
		/* the q2 text: the first 19 fields */
		const char *d0 = strrchr(id, '.');
		unsigned char raw[400];
		size_t rawlen = 0;
		REQUIRE(sodium_base642bin(raw, sizeof raw, id + 3, (size_t)(d0 - id - 3), NULL, &rawlen, NULL,
					  sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 0);
		int bars = 0;
		size_t cut = 0;
		for (size_t i = 0; i < rawlen && !cut; i++)
			if (raw[i] == '|' && ++bars == 19)
				cut = i;
		REQUIRE(cut > 0);
		memcpy(v2, "q2.", 3);
		sodium_bin2base64(v2 + 3, sizeof v2 - 3, raw, cut, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
		size_t sl = strlen(v2);
		unsigned char m2[32];
		crypto_generichash(m2, sizeof m2, (const unsigned char *)v2, sl, k.k, sizeof k.k);
		v2[sl] = '.';
		sodium_bin2base64(v2 + sl + 1, sizeof v2 - sl - 1, m2, sizeof m2, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
		REQUIRE(pricing_quote_open(&k, v2, 0, &back) == QUOTE_OK);
		CHECK_EQ_INT(back.fare.total, q.fare.total);
		CHECK_EQ_INT(back.fare.tariff_version, 0);
		CHECK_EQ_INT(back.fare.band, -1);
		CHECK_EQ_INT(back.fare.fixed, 0);
	}
	const char *dot = strrchr(v2, '.');
	size_t signed_len = (size_t)(dot - v2);
	memcpy(v1, v2, signed_len);
	v1[1] = '1';
	unsigned char mac[crypto_auth_hmacsha256_BYTES];
	crypto_auth_hmacsha256(mac, (const unsigned char *)v1, signed_len, k.k);
	v1[signed_len] = '.';
	sodium_bin2base64(v1 + signed_len + 1, sizeof v1 - signed_len - 1, mac, sizeof mac,
			  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	CHECK(pricing_quote_open(&k, v1, 0, &back) == QUOTE_OK);
	CHECK_EQ_INT(back.fare.total, q.fare.total);
	memcpy(v1 + signed_len, dot, strlen(dot) + 1);
	CHECK(pricing_quote_open(&k, v1, 0, &back) == QUOTE_INVALID);
}

UNIT_TEST(pricing_quote_tampering_refused)
{
	REQUIRE(sodium_init() >= 0);
	struct quote_key k;
	pricing_quote_key("a-secret-of-at-least-thirty-two-chars", &k);
	struct quote q, back;
	sample(&q);
	char id[QUOTE_ID_MAX];
	pricing_quote_sign(&k, &q, id, sizeof id);
	size_t len = strlen(id);
	const char *mac = strrchr(id, '.');
	/* every character of the signed part, changed, breaks the signature */
	for (size_t i = 0; i < (size_t)(mac - id); i++) {
		char t[QUOTE_ID_MAX];
		memcpy(t, id, len + 1);
		t[i] = t[i] == 'A' ? 'B' : 'A';
		if (pricing_quote_open(&k, t, 0, &back) != QUOTE_INVALID)
			unit_fail(__FILE__, __LINE__, "changed byte %zu accepted", i);
	}
	char t[QUOTE_ID_MAX];
	memcpy(t, id, len + 1);
	t[len - 5] = t[len - 5] == 'A' ? 'B' : 'A';
	CHECK(pricing_quote_open(&k, t, 0, &back) == QUOTE_INVALID);
	for (size_t n = 0; n < len; n += 7) { /* truncated */
		memcpy(t, id, n);
		t[n] = '\0';
		CHECK(pricing_quote_open(&k, t, 0, &back) == QUOTE_INVALID);
	}
	CHECK(pricing_quote_open(&k, "", 0, &back) == QUOTE_INVALID);
	CHECK(pricing_quote_open(&k, "q1..", 0, &back) == QUOTE_INVALID);
	CHECK(pricing_quote_open(&k, "q1.x", 0, &back) == QUOTE_INVALID);
	CHECK(pricing_quote_open(&k, "q2..", 0, &back) == QUOTE_INVALID);
	CHECK(pricing_quote_open(&k, "q3.x.y", 0, &back) == QUOTE_INVALID);
}
