#include "../unit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>

#include "net/conncount.h"

static struct conn_addr v4(const char *s)
{
	struct sockaddr_in in = { .sin_family = AF_INET };
	inet_pton(AF_INET, s, &in.sin_addr);
	struct conn_addr a;
	conn_counts_addr_of((struct sockaddr *)&in, &a);
	return a;
}

static struct conn_addr v6(const char *s)
{
	struct sockaddr_in6 in6 = { .sin6_family = AF_INET6 };
	inet_pton(AF_INET6, s, &in6.sin6_addr);
	struct conn_addr a;
	conn_counts_addr_of((struct sockaddr *)&in6, &a);
	return a;
}

UNIT_TEST(conncount_per_address_and_total)
{
	struct conn_counts *cc = conn_counts_new();
	struct conn_addr a = v4("10.0.0.1"), b = v4("10.0.0.2");
	CHECK_EQ_INT(conn_counts_acquire(cc, &a), 1);
	CHECK_EQ_INT(conn_counts_acquire(cc, &a), 2);
	CHECK_EQ_INT(conn_counts_acquire(cc, &b), 1);
	CHECK_EQ_INT(conn_counts_acquire(cc, NULL), 4); /* no address: the total */
	CHECK_EQ_INT(conn_counts_total(cc), 4);
	CHECK_EQ_INT(conn_counts_addresses(cc), 2);
	conn_counts_release(cc, &a);
	CHECK_EQ_INT(conn_counts_of(cc, &a), 1);
	conn_counts_release(cc, &a);
	CHECK_EQ_INT(conn_counts_of(cc, &a), 0);
	CHECK_EQ_INT(conn_counts_addresses(cc), 1);
	CHECK_EQ_INT(conn_counts_total(cc), 2);
	conn_counts_free(cc);
}

UNIT_TEST(conncount_ipv6_counts_per_64_and_mapped_v4_as_v4)
{
	struct conn_addr x = v6("2001:db8:1:2::1"), y = v6("2001:db8:1:2:ffff::9"), z = v6("2001:db8:1:3::1");
	CHECK(memcmp(&x, &y, sizeof x) == 0);
	CHECK(memcmp(&x, &z, sizeof x) != 0);
	struct conn_addr m = v6("::ffff:192.0.2.7"), four = v4("192.0.2.7");
	CHECK(memcmp(&m, &four, sizeof m) == 0);
}

/* Against a plain array, over many random acquire/release (the deletion
 * that shifts entries back is where such tables break). */
UNIT_TEST(conncount_random_against_brute_force)
{
	uint64_t seed = unit_seed();
	srand((unsigned)seed);
	enum { N = 300 };
	int want[N] = { 0 };
	struct conn_counts *cc = conn_counts_new();
	int total = 0;
	for (int step = 0; step < 200000; step++) {
		int i = rand() % N;
		char s[32];
		snprintf(s, sizeof s, "10.%d.%d.1", i / 256, i % 256);
		struct conn_addr a = v4(s);
		if (want[i] > 0 && rand() % 2) {
			conn_counts_release(cc, &a);
			want[i]--;
			total--;
		} else if (rand() % 3) {
			CHECK_EQ_INT(conn_counts_acquire(cc, &a), ++want[i]);
			total++;
		}
		if (step % 997 == 0) {
			int addrs = 0;
			for (int k = 0; k < N; k++) {
				char t[32];
				snprintf(t, sizeof t, "10.%d.%d.1", k / 256, k % 256);
				struct conn_addr b = v4(t);
				if (conn_counts_of(cc, &b) != want[k]) {
					unit_fail(__FILE__, __LINE__, "seed %" PRIu64 " step %d: address %d counts %d, want %d",
						  seed, step, k, conn_counts_of(cc, &b), want[k]);
					conn_counts_free(cc);
					return;
				}
				addrs += want[k] > 0;
			}
			CHECK_EQ_INT(conn_counts_addresses(cc), addrs);
			CHECK_EQ_INT(conn_counts_total(cc), total);
		}
	}
	conn_counts_free(cc);
}
