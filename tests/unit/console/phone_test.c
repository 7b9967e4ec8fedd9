#include "../unit.h"

#include "console/console.h"

UNIT_TEST(console_phone_normalise_cases)
{
	static const struct {
		const char *in, *out; /* out NULL: refused */
	} cases[] = {
		{ "+1 (555) 010-0200", "+15550100200" },
		{ "555.0100", "5550100" },
		{ "+44 20 7946 0958", "+442079460958" },
		{ "123", "123" },
		{ "12", NULL },                    /* too few digits */
		{ "123456789012345678901", NULL }, /* 21 */
		{ "12345678901234567890", "12345678901234567890" },
		{ "++15550100", NULL },            /* a + only first */
		{ "1+5550100", NULL },
		{ "+1 555 abc", NULL },
		{ "555/0100", NULL },
		{ "", NULL },
		{ " - ( ) ", NULL },
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		char out[40];
		bool ok = console_phone_normalise(cases[i].in, out, sizeof out);
		CHECK_EQ_INT(ok, cases[i].out != NULL);
		if (ok && cases[i].out)
			CHECK_EQ_STR(out, cases[i].out);
	}
	char small[5]; /* "+1234" needs 6 bytes with its NUL: refused, not cut */
	CHECK(!console_phone_normalise("+1234", small, sizeof small));
	CHECK(console_phone_normalise("1234", small, sizeof small));
	CHECK_EQ_STR(small, "1234");
}
