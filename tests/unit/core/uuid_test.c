#include "../unit.h"

#include "core/uuid.h"

UNIT_TEST(uuid_roundtrip_and_rejects)
{
	struct uuid u, v;
	char out[37];
	REQUIRE(uuid_parse("6F1C1B8E-8a5b-4c43-9a52-0f5e7c1d2a3b", &u));
	uuid_format(&u, out);
	CHECK_EQ_STR(out, "6f1c1b8e-8a5b-4c43-9a52-0f5e7c1d2a3b");
	CHECK(uuid_parse(out, &v) && uuid_eq(&u, &v));
	const char *bad[] = { "", "6f1c1b8e8a5b4c439a520f5e7c1d2a3b", "6f1c1b8e-8a5b-4c43-9a52-0f5e7c1d2a3",
			      "6f1c1b8e-8a5b-4c43-9a52-0f5e7c1d2a3bb", "6f1c1b8e-8a5b-4c43-9a52_0f5e7c1d2a3b",
			      "gf1c1b8e-8a5b-4c43-9a52-0f5e7c1d2a3b", "6f1c1b8e--a5b-4c43-9a52-0f5e7c1d2a3b" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (uuid_parse(bad[i], &v))
			unit_fail(__FILE__, __LINE__, "accepted \"%s\"", bad[i]);
	uuid_v4(&u);
	uuid_format(&u, out);
	CHECK(out[14] == '4');
	CHECK(out[19] == '8' || out[19] == '9' || out[19] == 'a' || out[19] == 'b');
	CHECK(!uuid_is_nil(&u));
}
