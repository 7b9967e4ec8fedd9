#include "../unit.h"

#include "auth/revoke.h"

static struct uuid id_of(int n)
{
	struct uuid u;
	memset(&u, 0, sizeof u);
	u.b[0] = (uint8_t)n;
	u.b[15] = (uint8_t)(n >> 8);
	return u;
}

UNIT_TEST(revoke_fails_closed_until_loaded)
{
	struct revoke_table *t = revoke_new();
	struct uuid a = id_of(1);
	CHECK(revoke_check(t, &a, 0) == REVOKE_UNKNOWN);
	revoke_reload_begin(t);
	revoke_reload_end(t);
	CHECK(revoke_check(t, &a, 0) == REVOKE_OK);
	revoke_free(t);
}

UNIT_TEST(revoke_versions_disable_delete)
{
	struct revoke_table *t = revoke_new();
	revoke_reload_begin(t);
	revoke_reload_end(t);
	struct uuid a = id_of(1), b = id_of(2);
	/* a password change: tokens under version 0 end, a new one (1) acts */
	CHECK(revoke_set(t, &a, ROLE_RIDER, 1, false, false));
	CHECK(revoke_check(t, &a, 0) == REVOKE_STALE);
	CHECK(revoke_check(t, &a, 1) == REVOKE_OK);
	CHECK(revoke_check(t, &b, 0) == REVOKE_OK);
	/* disabled: nothing acts */
	CHECK(revoke_set(t, &a, ROLE_RIDER, 2, true, false));
	CHECK(revoke_check(t, &a, 2) == REVOKE_DISABLED);
	/* enabled again: only tokens issued after */
	CHECK(revoke_set(t, &a, ROLE_RIDER, 3, false, false));
	CHECK(revoke_check(t, &a, 2) == REVOKE_STALE);
	CHECK(revoke_check(t, &a, 3) == REVOKE_OK);
	/* an older notification arriving late changes nothing */
	CHECK(!revoke_set(t, &a, ROLE_RIDER, 2, true, false));
	CHECK(revoke_check(t, &a, 3) == REVOKE_OK);
	/* the same state again ends nothing new */
	CHECK(!revoke_set(t, &a, ROLE_RIDER, 3, false, false));
	/* deleted: final */
	CHECK(revoke_set(t, &b, ROLE_DRIVER, 1, true, true));
	CHECK(revoke_check(t, &b, 99) == REVOKE_DELETED);
	CHECK(!revoke_set(t, &b, ROLE_DRIVER, 5, false, false));
	CHECK(revoke_check(t, &b, 99) == REVOKE_DELETED);
	CHECK_EQ_INT(revoke_count(t), 2);
	revoke_free(t);
}

UNIT_TEST(revoke_reload_replaces_and_keeps_changes_made_meanwhile)
{
	struct revoke_table *t = revoke_new();
	revoke_reload_begin(t);
	struct uuid a = id_of(1), b = id_of(2), c = id_of(3);
	revoke_set(t, &a, ROLE_RIDER, 1, true, false);
	revoke_reload_end(t);
	CHECK(revoke_check(t, &a, 1) == REVOKE_DISABLED);
	/* the next reload no longer lists a (enabled by hand, version back to
	 * 0): it is in good standing again; b changed while the reload ran */
	revoke_reload_begin(t);
	revoke_set(t, &c, ROLE_RIDER, 4, false, false); /* listed by the reload */
	revoke_set(t, &b, ROLE_DRIVER, 2, false, false); /* a notification meanwhile */
	revoke_reload_end(t);
	CHECK(revoke_check(t, &a, 0) == REVOKE_OK);
	CHECK(revoke_check(t, &b, 1) == REVOKE_STALE);
	CHECK(revoke_check(t, &c, 3) == REVOKE_STALE);
	CHECK_EQ_INT(revoke_count(t), 2);
	revoke_free(t);
}
