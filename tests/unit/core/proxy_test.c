#include "../unit.h"

#include <string.h>

#include "core/proxy.h"

static const char *client(const struct proxy_list *l, const char *peer, const char *xff)
{
	static char out[64];
	proxy_client(l, peer, xff, out, sizeof out);
	return out;
}

UNIT_TEST(proxy_list_parse_and_match)
{
	struct proxy_list l;
	char err[128] = "";
	CHECK(proxy_list_parse("", &l, err, sizeof err) == RH_OK && l.n == 0);
	REQUIRE(proxy_list_parse("127.0.0.2, 10.0.0.0/8 ::1\tfd00::/8", &l, err, sizeof err) == RH_OK);
	CHECK_EQ_INT(l.n, 4);
	CHECK(proxy_list_contains(&l, "127.0.0.2", 9));
	CHECK(!proxy_list_contains(&l, "127.0.0.3", 9));
	CHECK(proxy_list_contains(&l, "10.255.1.2", 10));
	CHECK(!proxy_list_contains(&l, "11.0.0.1", 8));
	CHECK(proxy_list_contains(&l, "::1", 3));
	CHECK(proxy_list_contains(&l, "[::1]", 5));
	CHECK(proxy_list_contains(&l, "fd12:3456::9", 12));
	CHECK(!proxy_list_contains(&l, "fe80::1", 7));
	CHECK(!proxy_list_contains(&l, "not-an-ip", 9));
	/* a prefix that is not a whole number of bytes */
	REQUIRE(proxy_list_parse("192.168.0.0/23", &l, err, sizeof err) == RH_OK);
	CHECK(proxy_list_contains(&l, "192.168.1.200", 13));
	CHECK(!proxy_list_contains(&l, "192.168.2.1", 11));
	/* refusals name the entry */
	CHECK(proxy_list_parse("127.0.0.1, nginx", &l, err, sizeof err) == RH_EINVAL);
	CHECK(strstr(err, "\"nginx\"") != NULL);
	CHECK(proxy_list_parse("10.0.0.0/33", &l, err, sizeof err) == RH_EINVAL);
	CHECK(proxy_list_parse("10.0.0.0/", &l, err, sizeof err) == RH_EINVAL);
	CHECK(proxy_list_parse("::/129", &l, err, sizeof err) == RH_EINVAL);
	CHECK(proxy_list_parse("10.0.0.0/8x", &l, err, sizeof err) == RH_EINVAL);
}

UNIT_TEST(proxy_client_from_forwarded_for)
{
	struct proxy_list l;
	char err[128];
	REQUIRE(proxy_list_parse("127.0.0.2, 10.0.0.0/8", &l, err, sizeof err) == RH_OK);
	/* from the proxy: the address it names */
	CHECK_EQ_STR(client(&l, "127.0.0.2:51000", "203.0.113.7"), "203.0.113.7:0");
	/* a chain: the rightmost hop that is not a trusted proxy; what the
	 * client itself wrote on the left is not believed */
	CHECK_EQ_STR(client(&l, "127.0.0.2:51000", "6.6.6.6, 203.0.113.7, 10.1.2.3"), "203.0.113.7:0");
	/* every hop trusted: the leftmost */
	CHECK_EQ_STR(client(&l, "127.0.0.2:51000", "10.0.0.5,10.0.0.6"), "10.0.0.5:0");
	/* IPv6, bracketed or not */
	CHECK_EQ_STR(client(&l, "127.0.0.2:51000", "[2001:db8::7]"), "2001:db8::7:0");
	CHECK_EQ_STR(client(&l, "127.0.0.2:51000", "2001:db8::7"), "2001:db8::7:0");
	/* garbage stops the walk at the last address to its right */
	CHECK_EQ_STR(client(&l, "127.0.0.2:51000", "203.0.113.7, unknown, 10.0.0.9"), "10.0.0.9:0");
	CHECK_EQ_STR(client(&l, "127.0.0.2:51000", "unknown"), "127.0.0.2:51000");
	CHECK_EQ_STR(client(&l, "127.0.0.2:51000", ""), "127.0.0.2:51000");
	CHECK_EQ_STR(client(&l, "127.0.0.2:51000", NULL), "127.0.0.2:51000");
	/* from anyone else the header is the client's own claim: ignored */
	CHECK_EQ_STR(client(&l, "127.0.0.3:40000", "203.0.113.7"), "127.0.0.3:40000");
	struct proxy_list none = { 0 };
	CHECK_EQ_STR(client(&none, "127.0.0.2:51000", "203.0.113.7"), "127.0.0.2:51000");
	/* an IPv6 peer ("host:port" with the host's own colons) */
	REQUIRE(proxy_list_parse("::1", &l, err, sizeof err) == RH_OK);
	CHECK_EQ_STR(client(&l, "::1:443", "198.51.100.1"), "198.51.100.1:0");
}
