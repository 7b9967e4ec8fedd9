#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../unit.h"

#include "core/clock.h"

UNIT_TEST(clock_rfc3339_roundtrip)
{
	char out[32];
	int64_t ms;
	rh_format_rfc3339(1770208496789LL, out);
	CHECK_EQ_STR(out, "2026-02-04T12:34:56.789Z");
	CHECK_EQ_INT(rh_parse_rfc3339(out, &ms), 0);
	CHECK_EQ_INT(ms, 1770208496789LL);
	CHECK_EQ_INT(rh_parse_rfc3339("2026-02-04T12:34:56Z", &ms), 0);
	CHECK_EQ_INT(ms, 1770208496000LL);
	CHECK_EQ_INT(rh_parse_rfc3339("2026-02-04T14:34:56.5+02:00", &ms), 0);
	CHECK_EQ_INT(ms, 1770208496500LL);
	CHECK_EQ_INT(rh_parse_rfc3339("2024-02-29T00:00:00Z", &ms), 0);
}

/* The formatter puts digits in place: it must print exactly what printf would. */
UNIT_TEST(clock_rfc3339_matches_printf)
{
	uint64_t x = 88172645463325252ull;
	for (int i = 0; i < 20000; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		int64_t ms = (int64_t)(x % 253402300800000ull); /* 1970 .. 9999 */
		if (i < 4)
			ms = (int64_t[]){ 0, 999, 1000, 253402300799999LL }[i];
		char got[32], want[64];
		rh_format_rfc3339(ms, got);
		time_t secs = (time_t)(ms / 1000);
		struct tm tm;
		gmtime_r(&secs, &tm);
		snprintf(want, sizeof want, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
			 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
		if (strcmp(got, want) != 0) {
			unit_fail(__FILE__, __LINE__, "%lld: \"%s\", printf \"%s\"", (long long)ms, got, want);
			return;
		}
		int64_t back;
		CHECK_EQ_INT(rh_parse_rfc3339(got, &back), 0);
		CHECK_EQ_INT(back, ms);
	}
	char out[32];
	rh_format_rfc3339(-1, out); /* before the epoch: the millisecond part stays positive */
	CHECK_EQ_STR(out, "1969-12-31T23:59:59.999Z");
}

UNIT_TEST(clock_rfc3339_rejects)
{
	int64_t ms;
	const char *bad[] = { "", "2026-02-04", "2026-13-04T00:00:00Z", "2026-02-30T00:00:00Z",
			      "2025-02-29T00:00:00Z", "2026-02-04T24:00:00Z", "2026-02-04T12:34:56",
			      "2026-02-04T12:34:56.Z", "2026-02-04T12:34:56+0200", "1969-12-31T23:59:59Z",
			      "2026-02-04T12:34:56Zjunk", "abcd-ef-ghTij:kl:mnZ" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (rh_parse_rfc3339(bad[i], &ms) == 0)
			unit_fail(__FILE__, __LINE__, "accepted \"%s\"", bad[i]);
}

/* Strings that end inside the zone offset (found by fuzzing): each is
 * copied to an allocation of its exact size, so ASan sees any read past it. */
UNIT_TEST(clock_rfc3339_truncated_offsets)
{
	static const char *const bad[] = {
		"2026-11-24T18:04:05.726-", "2026-11-24T18:04:05+", "2026-11-24T18:04:05+0", "2026-11-24T18:04:05+01",
		"2026-11-24T18:04:05+01:", "2026-11-24T18:04:05+01:3", "2026-11-24T18:04:05-01-30",
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		size_t n = strlen(bad[i]) + 1;
		char *s = malloc(n);
		memcpy(s, bad[i], n);
		int64_t ms;
		CHECK_EQ_INT(rh_parse_rfc3339(s, &ms), -1);
		free(s);
	}
}
