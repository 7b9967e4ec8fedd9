#include "net/jsonv.h"

#include <math.h>
#include <stdlib.h>

#include "core/clock.h"
#include "gateway/gateway.h"
#include "presence/presence.h"

#include "../unit.h"

static const struct jv_field point[] = {
	{ "lat", JV_NUMBER, JV_REQUIRED, -90, 90 },
	{ "lon", JV_NUMBER, JV_REQUIRED, -180, 180 },
	{ 0 },
};

static const struct jv_field table[] = {
	{ "id", JV_UUID, JV_REQUIRED },
	{ "n", JV_INTEGER, 0, -3, 1000 },
	{ "x", JV_NUMBER, 0, -1e300, 1e300 },
	{ "ok", JV_BOOL, 0 },
	{ "at", JV_DATETIME, 0 },
	{ "where", JV_OBJECT, 0, 0, 0, NULL, point },
	{ "any", JV_ANY_OBJECT, 0 },
	{ 0 },
};

static const struct jv_value *scan(struct jv_scan *sc, const char *text, const struct jv_field *fields)
{
	jv_scan_init(sc);
	return jv_scan(sc, text, strlen(text), fields);
}

/* What cJSON (strtod) makes of a number: the scan must give the same double. */
static double tree_number(const char *text)
{
	cJSON *j = cJSON_Parse(text);
	double d = cJSON_GetObjectItemCaseSensitive(j, "x")->valuedouble;
	cJSON_Delete(j);
	return d;
}

#define ID "\"id\":\"0b7e6f1c-3d9a-4f5e-9a61-2c8d4b1e7f00\""

UNIT_TEST(jv_scan_reads_a_flat_object)
{
	struct jv_scan sc;
	const struct jv_value *v = scan(&sc, " {" ID ", \"n\" : 7,\"ok\":true,\"at\":\"2026-11-24T16:22:01.123Z\","
					     "\"where\":{\"lon\":5.123456,\"lat\":-52.5},\"any\":{\"a\":[1,{\"b\":\"}\"}]}}\r\n",
				       table);
	REQUIRE(v != NULL);
	CHECK_EQ_STR(v[0].str, "0b7e6f1c-3d9a-4f5e-9a61-2c8d4b1e7f00");
	struct jv_scan upper;
	CHECK(scan(&upper, "{\"id\":\"0B7E6F1C-3D9A-4F5E-9A61-2C8D4B1E7F00\"}", table) != NULL);
	CHECK(v[1].present && v[1].num == 7);
	CHECK(!v[2].present);
	CHECK(v[3].present && v[3].num == 1);
	int64_t ms;
	REQUIRE(rh_parse_rfc3339("2026-11-24T16:22:01.123Z", &ms) == 0);
	CHECK_EQ_INT(v[4].ms, ms);
	REQUIRE(v[5].present && v[5].sub);
	CHECK(v[5].sub[0].num == -52.5 && v[5].sub[1].num == 5.123456);
	CHECK(v[6].present && v[6].len == strlen("{\"a\":[1,{\"b\":\"}\"}]}") && v[6].str[0] == '{');
}

UNIT_TEST(jv_scan_numbers_are_strtods)
{
	static const char *const nums[] = { "0", "-0", "52.091234", "5.1234567", "-179.999999", "0.1", "0.3000000000000000",
					    "1234567890123456", "9007199254740992", "0.0000000000000000000001",
					    "4.35", "1.797693134862315", "100.5", "-0.000" };
	for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
		char text[160];
		snprintf(text, sizeof text, "{" ID ",\"x\":%s}", nums[i]);
		struct jv_scan sc;
		const struct jv_value *v = scan(&sc, text, table);
		if (!v) {
			unit_fail(__FILE__, __LINE__, "declined %s", nums[i]);
			continue;
		}
		double want = tree_number(text);
		if (memcmp(&v[2].num, &want, sizeof want) != 0)
			unit_fail(__FILE__, __LINE__, "%s: %.17g, strtod %.17g", nums[i], v[2].num, want);
	}
	/* random decimals in the shapes drivers send */
	uint64_t seed = unit_seed();
	for (int i = 0; i < 20000; i++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		char text[160];
		int places = (int)(seed >> 60) % 10;
		snprintf(text, sizeof text, "{" ID ",\"x\":%.*f}", places, (double)(int64_t)(seed >> 20) / 1e6 - 8e6);
		struct jv_scan sc;
		const struct jv_value *v = scan(&sc, text, table);
		REQUIRE(v != NULL);
		double want = tree_number(text);
		if (memcmp(&v[2].num, &want, sizeof want) != 0) {
			unit_fail(__FILE__, __LINE__, "%s: %.17g, strtod %.17g", text, v[2].num, want);
			return;
		}
	}
}

UNIT_TEST(jv_scan_declines_what_it_does_not_read)
{
	static const char *const texts[] = {
		"{" ID ",\"x\":1e5}",            /* exponent */
		"{" ID ",\"x\":01}",             /* leading zero (cJSON reads it) */
		"{" ID ",\"x\":9007199254740993}", /* past 2^53 */
		"{" ID ",\"x\":0.30000000000000004}",
		"{" ID ",\"x\":1.}",
		"{" ID ",\"x\":.5}",
		"{" ID ",\"x\":null}",
		"{" ID ",\"x\":[1]}",
		"{" ID ",\"n\":1.5}",             /* a rule fails: the tree walk words it */
		"{" ID ",\"n\":1001}",
		"{" ID ",\"n\":1,\"n\":1}",       /* repeated */
		"{" ID ",\"m\":1}",               /* unknown */
		"{\"n\":1}",                      /* required missing */
		"{\"id\":\"0b7e6f1c-3d9a-4f5e-9a61-2c8d4b1e7f0\\u0030\"}", /* escape */
		"{\"id\":\"0b7e6f1c-3d9a-4f5e-9a61-2c8d4b1e7f0\xc3\xa9\"}", /* past ASCII */
		"{" ID ",\"at\":\"2026-11-24 16:22:01Z\"}",
		"{" ID ",}",
		"{" ID "} x",
		"\xef\xbb\xbf{" ID "}",
		"[]",
		"",
		/* not a UUID: a non-digit in each group, a dash moved */
		"{\"id\":\"0b7e6f1g-3d9a-4f5e-9a61-2c8d4b1e7f00\"}",
		"{\"id\":\"0b7e6f1c-3d9z-4f5e-9a61-2c8d4b1e7f00\"}",
		"{\"id\":\"0b7e6f1c-3d9a-4f5-e9a61-2c8d4b1e7f00\"}",
		"{\"id\":\"0b7e6f1c-3d9a-4f5e-9a6 -2c8d4b1e7f00\"}",
		"{\"id\":\"0b7e6f1c-3d9a-4f5e-9a61-2c8d4b1e7f0:\"}",
		"{\"id\":\"0b7e6f1c-3d9a-4f5e-9a61-2c8d4b1e7f0\"}",
	};
	for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
		struct jv_scan sc;
		if (scan(&sc, texts[i], table))
			unit_fail(__FILE__, __LINE__, "accepted %s", texts[i]);
	}
}

UNIT_TEST(jv_scan_a_driver_ping_in_its_envelope)
{
	const char *text =
		"{\"event_id\":\"0b7e6f1c-3d9a-4f5e-9a61-2c8d4b1e7f00\",\"event_type\":\"driver.location.updated\","
		"\"event_version\":1,\"timestamp\":\"2026-11-24T16:22:01.123Z\",\"producer\":\"ws-load\","
		"\"correlation_id\":\"5f1d2c3b-4a59-4e6f-8a7b-9c0d1e2f3a4b\",\"payload\":{\"driver_id\":"
		"\"5f1d2c3b-4a59-4e6f-8a7b-9c0d1e2f3a4b\",\"location\":{\"lat\":52.091234,\"lon\":5.123456},"
		"\"speed_kmh\":32,\"heading_deg\":100,\"accuracy_m\":5,\"source\":\"gps\"}}";
	struct jv_scan sc;
	const struct jv_value *env = scan(&sc, text, gw_envelope_fields);
	REQUIRE(env != NULL);
	size_t ip = 0;
	while (strcmp(gw_envelope_fields[ip].name, "payload") != 0)
		ip++;
	const struct jv_value *pl = jv_scan(&sc, env[ip].str, env[ip].len, presence_location_fields);
	REQUIRE(pl != NULL);
	CHECK_EQ_STR(env[1].str, "driver.location.updated");
	CHECK_EQ_STR(pl[0].str, "5f1d2c3b-4a59-4e6f-8a7b-9c0d1e2f3a4b");
	CHECK(pl[1].sub[0].num == 52.091234 && pl[1].sub[1].num == 5.123456);
	/* the same bytes through the tree walk: accepted */
	cJSON *j = cJSON_Parse(text);
	struct jv_error err;
	CHECK(jv_check(j, gw_envelope_fields, &err));
	CHECK(jv_check(cJSON_GetObjectItemCaseSensitive(j, "payload"), presence_location_fields, &err));
	cJSON_Delete(j);
}
