/* Fuzz the request target's decoding (http_target_decode): the path and the
 * query split and percent-decoded. Differential against a plain reference
 * decoder written here from RFC 3986 2.1: whatever it accepts must decode to
 * the same strings, what it refuses must be refused with the raw path left
 * for the reply, and every string must end inside the caller's buffer. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/http_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int ref_hex(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* s[0..n) decoded into out (n + 1 bytes); false on a bad escape or %00. */
static bool ref_decode(const char *s, size_t n, bool plus, char *out)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)s[i];
		if (c == '%') {
			if (n - i < 3 || ref_hex(s[i + 1]) < 0 || ref_hex(s[i + 2]) < 0)
				return false;
			c = ref_hex(s[i + 1]) * 16 + ref_hex(s[i + 2]);
			if (c == 0)
				return false;
			i += 2;
		} else if (plus && c == '+') {
			c = ' ';
		}
		out[o++] = (char)c;
	}
	out[o] = 0;
	return true;
}

static void check_inside(const char *p, const char *buf, size_t len)
{
	if (p < buf || p >= buf + len || !memchr(p, 0, (size_t)(buf + len - p)))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *target = malloc(size + 1);
	memcpy(target, data, size);
	target[size] = 0; /* a target is a string: the head parser cut it at its NUL */
	size_t tlen = strlen(target);
	size_t blen = http_target_bufsize(target);
	char *buf = malloc(blen);
	char *ref = malloc(tlen + 1);
	struct http_target t;
	enum http_target_status st = http_target_decode(target, buf, blen, &t);
	if (t.used > blen)
		abort();
	check_inside(t.path, buf, blen);

	const char *q = strchr(target, '?');
	size_t plen = q ? (size_t)(q - target) : tlen;
	bool path_ok = ref_decode(target, plen, false, ref);
	if (st == HTTP_TARGET_BAD_PATH) {
		/* refused: the raw path is what the reply names */
		if (path_ok || strlen(t.path) != plen || memcmp(t.path, target, plen) != 0)
			abort();
		goto out;
	}
	if (!path_ok || strcmp(t.path, ref) != 0)
		abort();
	/* the query, pair by pair, as the reference reads it */
	int n = 0;
	bool bad = false, many = false;
	for (const char *p = q ? q + 1 : target + tlen; *p && !bad && !many;) {
		size_t len = strcspn(p, "&");
		if (len > 0) {
			const char *eq = memchr(p, '=', len);
			size_t kl = eq ? (size_t)(eq - p) : len;
			if (n == HTTP_MAX_QUERY) {
				many = true;
				break;
			}
			if (!ref_decode(p, kl, true, ref)) {
				bad = true;
				break;
			}
			if (st == HTTP_TARGET_OK) {
				check_inside(t.keys[n], buf, blen);
				if (strcmp(t.keys[n], ref) != 0)
					abort();
			}
			if (!ref_decode(eq ? eq + 1 : p + len, eq ? len - kl - 1 : 0, true, ref)) {
				bad = true;
				break;
			}
			if (st == HTTP_TARGET_OK) {
				check_inside(t.vals[n], buf, blen);
				if (strcmp(t.vals[n], ref) != 0)
					abort();
			}
			n++;
		}
		p += len;
		if (*p == '&')
			p++;
	}
	if ((st == HTTP_TARGET_BAD_QUERY) != bad || (st == HTTP_TARGET_TOO_MANY) != many)
		abort();
	if (st == HTTP_TARGET_OK && t.nquery != n)
		abort();
out:
	free(ref);
	free(buf);
	free(target);
	return 0;
}
