/* A growable byte string with a hard cap: appends past the cap are dropped
 * and remembered (sb->overflow), so a caller building output from untrusted
 * sizes can never grow memory without bound. */
#ifndef RH_CORE_STRBUF_H
#define RH_CORE_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

#include "core/err.h"

struct strbuf {
	char *buf;   /* always NUL-terminated when non-NULL */
	size_t len, cap, max;
	bool overflow;
};

void sb_init(struct strbuf *sb, size_t max);
void sb_fini(struct strbuf *sb);
/* Room for n more bytes at once (one allocation for an answer whose size is
 * known roughly); nothing when past max. */
void sb_expect(struct strbuf *sb, size_t n);
void sb_append(struct strbuf *sb, const void *data, size_t n);
void sb_puts(struct strbuf *sb, const char *s);
void sb_putc(struct strbuf *sb, char c);
void sb_printf(struct strbuf *sb, const char *fmt, ...) RH_PRINTF(2, 3);
/* A finite number with exactly `decimals` (0-9) digits after the point,
 * rounded half away from zero: what "%.*f" prints for |v| < 9e9, without
 * printf's cost on hot paths, and never a negative zero ("-0.0"). Larger or
 * non-finite values fall back to printf. */
void sb_fixed(struct strbuf *sb, double v, int decimals);
void sb_int(struct strbuf *sb, long long v);
/* Copies src into dst[cap] (cap > 0), truncated and always NUL-terminated,
 * without snprintf's cost; returns the length copied. */
size_t rh_copy(char *dst, size_t cap, const char *src);
/* Empties sb and keeps its buffer, so that a buffer used again for every
 * message of a hot path allocates only while it grows to its largest. */
void sb_reset(struct strbuf *sb);
/* Hands the buffer to the caller (free with rh_free) and resets sb. */
char *sb_take(struct strbuf *sb, size_t *len);

#endif
