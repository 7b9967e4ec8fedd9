/* Incremental UTF-8 validation (RFC 3629), for text that arrives in pieces
 * (WebSocket fragments, streamed bodies). Rejects overlong forms, surrogates
 * (U+D800..U+DFFF), code points above U+10FFFF and stray continuation bytes,
 * and fails on the first byte that no valid continuation could follow, not
 * at the end of the text. ASCII runs go 8 bytes at a time.
 *
 *   struct utf8_state u;
 *   utf8_state_init(&u);
 *   ok = utf8_state_feed(&u, piece1, n1) && utf8_state_feed(&u, piece2, n2)
 *        && utf8_state_is_complete(&u);
 *
 * The state is a plain value: copy it to try a piece without committing. */
#ifndef RH_NET_UTF8_H
#define RH_NET_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct utf8_state {
	uint8_t need;   /* continuation bytes still expected in this character */
	uint8_t lo, hi; /* allowed range of the next continuation byte */
	bool bad;       /* an invalid byte was seen; sticky */
};

void utf8_state_init(struct utf8_state *u);
/* Validates s[0..n) after what was fed before. Returns false once the text is
 * invalid (and every later call returns false too). */
bool utf8_state_feed(struct utf8_state *u, const uint8_t *s, size_t n);
/* True when no character is cut off (and nothing invalid was seen). */
bool utf8_state_is_complete(const struct utf8_state *u);
/* The whole of s[0..n) is valid UTF-8. */
bool utf8_is_valid(const uint8_t *s, size_t n);
/* The longest prefix of s[0..n) that ends on a character boundary, at most n
 * bytes, for truncating valid text (close reasons). */
size_t utf8_boundary_before(const uint8_t *s, size_t n);

#endif
