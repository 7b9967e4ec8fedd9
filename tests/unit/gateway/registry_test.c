#include "../unit.h"

#include "gateway/registry.h"

/* Sessions are only compared by address here: the registry never looks in. */
UNIT_TEST(registry_one_session_per_account_the_newest_wins)
{
	struct gw_registry r;
	gw_registry_init(&r);
	struct uuid a, b;
	uuid_parse("11111111-1111-4111-8111-111111111111", &a);
	uuid_parse("22222222-2222-4222-8222-222222222222", &b);
	int s1, s2, s3;
	struct session *p1 = (struct session *)&s1, *p2 = (struct session *)&s2, *p3 = (struct session *)&s3;
	CHECK(gw_registry_get(&r, &a) == NULL);
	CHECK(gw_registry_put(&r, &a, p1) == NULL);
	CHECK(gw_registry_put(&r, &b, p3) == NULL);
	CHECK(gw_registry_get(&r, &a) == p1 && gw_registry_get(&r, &b) == p3);
	/* a new session of the same account replaces the old: the caller closes it */
	CHECK(gw_registry_put(&r, &a, p2) == p1);
	CHECK(gw_registry_get(&r, &a) == p2);
	CHECK(gw_registry_put(&r, &a, p2) == NULL); /* the same again: nothing to close */
	/* the replaced session closes late: the newer one stays */
	CHECK(!gw_registry_remove(&r, &a, p1));
	CHECK(gw_registry_get(&r, &a) == p2);
	CHECK_EQ_INT(gw_registry_count(&r), 2);
	CHECK(gw_registry_remove(&r, &a, p2));
	CHECK(gw_registry_get(&r, &a) == NULL);
	CHECK(!gw_registry_remove(&r, &a, p2));
	CHECK(gw_registry_get(&r, &b) == p3);
	CHECK_EQ_INT(gw_registry_count(&r), 1);
	gw_registry_fini(&r);
}
