#include "core/strbuf.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"

void sb_init(struct strbuf *sb, size_t max)
{
	memset(sb, 0, sizeof *sb);
	sb->max = max;
}

void sb_fini(struct strbuf *sb)
{
	rh_free(sb->buf);
	memset(sb, 0, sizeof *sb);
}

static bool sb_reserve(struct strbuf *sb, size_t n)
{
	if (sb->len + n + 1 > sb->max) {
		sb->overflow = true;
		return false;
	}
	if (sb->len + n + 1 > sb->cap) {
		size_t cap = sb->cap ? sb->cap : 256;
		while (cap < sb->len + n + 1)
			cap *= 2;
		if (cap > sb->max)
			cap = sb->max;
		sb->buf = rh_realloc(sb->buf, cap);
		sb->cap = cap;
	}
	return true;
}

void sb_expect(struct strbuf *sb, size_t n)
{
	if (sb->len + n + 1 > sb->cap && sb->len + n + 1 <= sb->max)
		sb_reserve(sb, n);
}

void sb_append(struct strbuf *sb, const void *data, size_t n)
{
	if (!sb_reserve(sb, n))
		return;
	memcpy(sb->buf + sb->len, data, n);
	sb->len += n;
	sb->buf[sb->len] = '\0';
}

void sb_puts(struct strbuf *sb, const char *s) { sb_append(sb, s, strlen(s)); }
void sb_putc(struct strbuf *sb, char c) { sb_append(sb, &c, 1); }

void sb_int(struct strbuf *sb, long long v)
{
	char buf[24];
	int i = sizeof buf;
	unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
	do {
		buf[--i] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		buf[--i] = '-';
	sb_append(sb, buf + i, sizeof buf - (size_t)i);
}

void sb_fixed(struct strbuf *sb, double v, int decimals)
{
	static const double pow10[] = { 1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9 };
	if (decimals < 0 || decimals > 9 || !(fabs(v) < 9e9)) {
		sb_printf(sb, "%.*f", decimals < 0 ? 0 : decimals > 9 ? 9 : decimals, v);
		return;
	}
	double scaled = fabs(v) * pow10[decimals];
	unsigned long long x = (unsigned long long)(scaled + 0.5);
	unsigned long long scale = (unsigned long long)pow10[decimals];
	if (v < 0 && x != 0)
		sb_putc(sb, '-');
	sb_int(sb, (long long)(x / scale));
	if (decimals == 0)
		return;
	char frac[10];
	unsigned long long f = x % scale;
	for (int i = decimals - 1; i >= 0; i--) {
		frac[i] = (char)('0' + f % 10);
		f /= 10;
	}
	sb_putc(sb, '.');
	sb_append(sb, frac, (size_t)decimals);
}

void sb_printf(struct strbuf *sb, const char *fmt, ...)
{
	va_list ap;
	char small[256];
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof small, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof small) {
		sb_append(sb, small, (size_t)n);
		return;
	}
	if (!sb_reserve(sb, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(sb->buf + sb->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	sb->len += (size_t)n;
}

void sb_reset(struct strbuf *sb)
{
	sb->len = 0;
	sb->overflow = false;
	if (sb->buf)
		sb->buf[0] = '\0';
}

char *sb_take(struct strbuf *sb, size_t *len)
{
	char *b = sb->buf;
	if (len)
		*len = sb->len;
	if (!b)
		b = rh_strdup("");
	sb->buf = NULL;
	sb->len = sb->cap = 0;
	sb->overflow = false;
	return b;
}

size_t rh_copy(char *dst, size_t cap, const char *src)
{
	size_t n = strnlen(src, cap - 1);
	memcpy(dst, src, n);
	dst[n] = '\0';
	return n;
}
