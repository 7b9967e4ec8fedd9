#include "core/proxy.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

/* An address literal of len bytes (IPv4, IPv6, [IPv6]) into family/addr. */
static bool proxy_parse_addr(const char *s, size_t len, int *family, uint8_t addr[16])
{
	char buf[64];
	if (len >= 2 && s[0] == '[' && s[len - 1] == ']') {
		s++;
		len -= 2;
	}
	if (len == 0 || len >= sizeof buf)
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	memset(addr, 0, 16);
	if (inet_pton(AF_INET, buf, addr) == 1) {
		*family = 4;
		return true;
	}
	if (inet_pton(AF_INET6, buf, addr) == 1) {
		*family = 6;
		return true;
	}
	return false;
}

static bool proxy_is_sep(char c)
{
	return c == ',' || c == ' ' || c == '\t';
}

rh_err proxy_list_parse(const char *spec, struct proxy_list *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof *out);
	const char *p = spec ? spec : "";
	while (*p) {
		while (proxy_is_sep(*p))
			p++;
		if (!*p)
			break;
		const char *start = p;
		while (*p && !proxy_is_sep(*p))
			p++;
		size_t len = (size_t)(p - start);
		const char *slash = memchr(start, '/', len);
		size_t alen = slash ? (size_t)(slash - start) : len;
		struct proxy_net n = { 0 };
		if (out->n == PROXY_MAX) {
			snprintf(err, errlen, "more than %d trusted proxies", PROXY_MAX);
			return RH_EINVAL;
		}
		if (!proxy_parse_addr(start, alen, &n.family, n.addr)) {
			snprintf(err, errlen, "\"%.*s\" is not an IPv4 or IPv6 address", (int)alen, start);
			return RH_EINVAL;
		}
		int max = n.family == 4 ? 32 : 128;
		n.prefix = max;
		if (slash) {
			int bits = 0;
			const char *q = slash + 1;
			if (q == p) {
				snprintf(err, errlen, "\"%.*s\": a prefix length follows the /", (int)len, start);
				return RH_EINVAL;
			}
			for (; q < p; q++) {
				if (*q < '0' || *q > '9' || (bits = bits * 10 + (*q - '0')) > max) {
					snprintf(err, errlen, "\"%.*s\": the prefix length is 0..%d", (int)len, start, max);
					return RH_EINVAL;
				}
			}
			n.prefix = bits;
		}
		out->net[out->n++] = n;
	}
	return RH_OK;
}

static bool proxy_net_contains(const struct proxy_net *n, int family, const uint8_t addr[16])
{
	if (n->family != family)
		return false;
	int full = n->prefix / 8, rest = n->prefix % 8;
	if (memcmp(n->addr, addr, (size_t)full) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return (n->addr[full] & mask) == (addr[full] & mask);
}

bool proxy_list_contains(const struct proxy_list *l, const char *s, size_t len)
{
	int family;
	uint8_t addr[16];
	if (!l || l->n == 0 || !proxy_parse_addr(s, len, &family, addr))
		return false;
	for (int i = 0; i < l->n; i++)
		if (proxy_net_contains(&l->net[i], family, addr))
			return true;
	return false;
}

bool proxy_client(const struct proxy_list *l, const char *peer, const char *xff, char *out, size_t outlen)
{
	snprintf(out, outlen, "%s", peer);
	const char *colon = strrchr(peer, ':');
	size_t host_len = colon ? (size_t)(colon - peer) : strlen(peer);
	if (!xff || !l || l->n == 0 || !proxy_list_contains(l, peer, host_len))
		return false;
	/* right to left: skip the trusted hops, stop at the first other one */
	const char *end = xff + strlen(xff), *found = NULL;
	size_t found_len = 0;
	while (end > xff) {
		while (end > xff && proxy_is_sep(end[-1]))
			end--;
		const char *start = end;
		while (start > xff && !proxy_is_sep(start[-1]))
			start--;
		size_t len = (size_t)(end - start);
		if (len == 0)
			break;
		int family;
		uint8_t addr[16];
		if (!proxy_parse_addr(start, len, &family, addr))
			break; /* not an address: trust nothing left of it */
		found = start;
		found_len = len;
		if (!proxy_list_contains(l, start, len))
			break;
		end = start;
	}
	if (!found)
		return false;
	if (found_len >= 2 && found[0] == '[') { /* [v6] -> v6 */
		found++;
		found_len -= 2;
	}
	snprintf(out, outlen, "%.*s:0", (int)found_len, found);
	return true;
}
