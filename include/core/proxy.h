/* Trusted proxies (http.trusted_proxies) and the client's address behind
 * them. A request that arrives from a trusted proxy (nginx in front of the
 * daemon, docs/operations.md) names its client in X-Forwarded-For; from
 * anyone else that header is the client's own claim and is ignored. Pure:
 * no sockets, no configuration; http.c applies it to every request.
 *
 * Addresses are IPv4 or IPv6 literals; a list entry may carry a prefix
 * length (CIDR: 10.0.0.0/8, fd00::/8). */
#ifndef RH_CORE_PROXY_H
#define RH_CORE_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

#define PROXY_MAX 16

struct proxy_net {
	int family; /* 4 or 6 */
	uint8_t addr[16];
	int prefix; /* bits */
};

struct proxy_list {
	int n;
	struct proxy_net net[PROXY_MAX];
};

/* "127.0.0.1, 10.0.0.0/8, ::1": comma- or space-separated; "" is the empty
 * list. RH_EINVAL with a message naming the bad entry. */
rh_err proxy_list_parse(const char *spec, struct proxy_list *out, char *err, size_t errlen) RH_MUST_CHECK;

/* An address literal (IPv4, IPv6, or [IPv6]) in the list? */
bool proxy_list_contains(const struct proxy_list *l, const char *addr, size_t len);

/* The client of a request: peer is the TCP peer as "host:port". When peer's
 * host is a trusted proxy and xff (the X-Forwarded-For value, may be NULL)
 * names addresses, the client is the rightmost of them that is not itself a
 * trusted proxy (all trusted: the leftmost), written as "address:0" (the
 * port is not known) and true is returned; an entry that is not an address
 * ends the walk at the last address to its right (or the peer). Otherwise
 * out is peer and false. */
bool proxy_client(const struct proxy_list *l, const char *peer, const char *xff, char *out, size_t outlen);

#endif
