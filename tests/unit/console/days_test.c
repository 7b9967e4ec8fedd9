#include "../unit.h"

#include <time.h>

#include "console/console.h"

UNIT_TEST(console_day_parse_and_format)
{
	int64_t day;
	CHECK(console_day_parse("1970-01-01", &day));
	CHECK_EQ_INT(day, 0);
	CHECK(console_day_parse("2024-02-29", &day));
	CHECK_EQ_INT(day, 19782);
	char out[11];
	console_day_format(day, out);
	CHECK_EQ_STR(out, "2024-02-29");
	static const char *const bad[] = { "2023-02-29", "2026-02-30", "2026-13-01", "2026-00-10", "2026-1-01",
					   "26-01-01", "2026-01-0x", "2026/01/01", "2026-01-01T", " 2026-01-01",
					   "1969-12-31", "", "+026-01-01" };
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		if (console_day_parse(bad[i], &day))
			unit_fail(__FILE__, __LINE__, "\"%s\" parsed as day %lld", bad[i], (long long)day);
	/* every day of four years there and back, against the C library */
	for (int64_t d = 19000; d < 19000 + 4 * 366; d++) {
		console_day_format(d, out);
		time_t t = (time_t)(d * 86400);
		struct tm tm;
		gmtime_r(&t, &tm);
		char want[11];
		strftime(want, sizeof want, "%Y-%m-%d", &tm);
		CHECK_EQ_STR(out, want);
		REQUIRE(console_day_parse(out, &day));
		CHECK_EQ_INT(day, d);
	}
}
