#include "../unit.h"

#include <stdlib.h>

#include "net/numparse.h"

UNIT_TEST(numparse_decimal_takes_json_numbers)
{
	static const struct { const char *s; double v; } ok[] = {
		{ "0", 0 }, { "-0", 0 }, { "52", 52 }, { "-122.295", -122.295 }, { "1e3", 1000 },
		{ "1E+2", 100 }, { "2.5e-1", 0.25 }, { "0.0000001", 1e-7 },
	};
	for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
		double d = -1;
		CHECK(num_parse_decimal(ok[i].s, &d));
		CHECK_NEAR(d, ok[i].v, 1e-12);
	}
}

UNIT_TEST(numparse_decimal_refuses_what_strtod_would_take)
{
	static const char *const bad[] = {
		"", " 52", "52 ", "+52", "0x10", "0X1p3", "inf", "-inf", "nan", "NaN", "52.", ".5", "-",
		"01", "1e", "1e+", "1.e3", "1,5", "52abc", "1e999", "--1", "\t1", "1\n",
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		double d = 7;
		if (num_parse_decimal(bad[i], &d))
			unit_fail(__FILE__, __LINE__, "took \"%s\" as %g", bad[i], d);
		CHECK(d == 7);
	}
	double d;
	CHECK(!num_parse_decimal(NULL, &d));
}

UNIT_TEST(numparse_integer)
{
	int64_t n = 0;
	CHECK(num_parse_integer("2000", &n) && n == 2000);
	CHECK(num_parse_integer("-7", &n) && n == -7);
	CHECK(num_parse_integer("0", &n) && n == 0);
	CHECK(num_parse_integer("999999999999999999", &n) && n == 999999999999999999LL);
	static const char *const bad[] = { "1.5", "1e3", "1.0", " 5", "5 ", "0x10", "", "-", "01", "+5",
					   "1000000000000000000" };
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		if (num_parse_integer(bad[i], &n))
			unit_fail(__FILE__, __LINE__, "took \"%s\" as an integer", bad[i]);
}

/* Every string of a small alphabet up to 5 characters: the verdict is the
 * grammar's, and what is taken converts like strtod. */
UNIT_TEST(numparse_agrees_with_a_regular_expression_walk)
{
	static const char alpha[] = "0159-+.eEx ";
	char s[6];
	int n = (int)sizeof alpha - 1;
	long total = 1;
	for (int len = 1; len <= 5; len++) {
		total *= n;
		for (long k = 0; k < total; k++) {
			long x = k;
			for (int i = 0; i < len; i++, x /= n)
				s[i] = alpha[x % n];
			s[len] = 0;
			/* the grammar, walked by hand a second way: split at e/E and '.' */
			const char *p = s;
			bool want = true;
			if (*p == '-')
				p++;
			size_t ip = strspn(p, "0123456789");
			if (ip == 0 || (ip > 1 && p[0] == '0'))
				want = false;
			p += ip;
			if (want && *p == '.') {
				size_t fp = strspn(p + 1, "0123456789");
				want = fp > 0;
				p += 1 + fp;
			}
			if (want && (*p == 'e' || *p == 'E')) {
				p++;
				if (*p == '+' || *p == '-')
					p++;
				size_t ep = strspn(p, "0123456789");
				want = ep > 0;
				p += ep;
			}
			want = want && *p == 0 && isfinite(strtod(s, NULL)); /* (9E999 overflows: refused) */
			double d = 0;
			bool got = num_parse_decimal(s, &d);
			if (got != want)
				unit_fail(__FILE__, __LINE__, "\"%s\": took %d, the grammar says %d", s, got, want);
			else if (got && d != strtod(s, NULL))
				unit_fail(__FILE__, __LINE__, "\"%s\": %g, strtod %g", s, d, strtod(s, NULL));
		}
	}
}
