#include "net/utf8.h"

#include <string.h>

void utf8_state_init(struct utf8_state *u)
{
	*u = (struct utf8_state){ .lo = 0x80, .hi = 0xbf };
}

/* Skips the ASCII bytes at the start of s[0..n), 8 at a time. */
static size_t utf8_ascii_run(const uint8_t *s, size_t n)
{
	size_t i = 0;
	while (i + 8 <= n) {
		uint64_t w;
		memcpy(&w, s + i, 8);
		if (w & 0x8080808080808080ULL)
			break;
		i += 8;
	}
	while (i < n && s[i] < 0x80)
		i++;
	return i;
}

/* The first continuation byte carries every restriction beyond "10xxxxxx":
 * E0 needs A0..BF (no overlong 3-byte forms), ED needs 80..9F (no
 * surrogates), F0 needs 90..BF (no overlong 4-byte forms), F4 needs 80..8F
 * (nothing above U+10FFFF). C0, C1 and F5..FF never start a character. */
static bool utf8_lead(uint8_t c, struct utf8_state *u)
{
	u->lo = 0x80;
	u->hi = 0xbf;
	if (c >= 0xc2 && c <= 0xdf) {
		u->need = 1;
	} else if (c >= 0xe0 && c <= 0xef) {
		u->need = 2;
		if (c == 0xe0)
			u->lo = 0xa0;
		else if (c == 0xed)
			u->hi = 0x9f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		u->need = 3;
		if (c == 0xf0)
			u->lo = 0x90;
		else if (c == 0xf4)
			u->hi = 0x8f;
	} else {
		return false;
	}
	return true;
}

bool utf8_state_feed(struct utf8_state *u, const uint8_t *s, size_t n)
{
	size_t i = 0;
	if (u->bad)
		return false;
	while (i < n) {
		if (u->need == 0) {
			i += utf8_ascii_run(s + i, n - i);
			if (i == n)
				break;
			if (!utf8_lead(s[i++], u))
				goto bad;
			continue;
		}
		uint8_t c = s[i++];
		if (c < u->lo || c > u->hi)
			goto bad;
		u->need--;
		u->lo = 0x80;
		u->hi = 0xbf;
	}
	return true;
bad:
	u->bad = true;
	return false;
}

bool utf8_state_is_complete(const struct utf8_state *u)
{
	return !u->bad && u->need == 0;
}

bool utf8_is_valid(const uint8_t *s, size_t n)
{
	struct utf8_state u;
	utf8_state_init(&u);
	return utf8_state_feed(&u, s, n) && utf8_state_is_complete(&u);
}

size_t utf8_boundary_before(const uint8_t *s, size_t n)
{
	/* Back up over at most 3 continuation bytes to the lead byte; keep the
	 * character only if it is complete. */
	size_t i = n;
	while (i > 0 && n - i < 4 && (s[i - 1] & 0xc0) == 0x80)
		i--;
	if (i == 0 || n - i == 4)
		return n; /* not valid UTF-8 anyway; leave it to the validator */
	uint8_t lead = s[i - 1];
	size_t len = lead < 0x80 ? 1 : lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
	return (n - (i - 1)) >= len ? n : i - 1;
}
