#include "core/uuid.h"

#include <sodium.h>

static int uuid_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

bool uuid_parse_n(const char *s, size_t n, struct uuid *out)
{
	if (n != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-')
		return false;
	int k = 0;
	for (size_t i = 0; i < 36; i += 2) {
		if (s[i] == '-')
			i++;
		int hi = uuid_hexval(s[i]), lo = uuid_hexval(s[i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		out->b[k++] = (unsigned char)(hi << 4 | lo);
	}
	return k == 16;
}

bool uuid_parse(const char *s, struct uuid *out)
{
	return uuid_parse_n(s, strnlen(s, 37), out);
}

void uuid_format(const struct uuid *u, char out[37])
{
	static const char hex[] = "0123456789abcdef";
	int o = 0;
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[u->b[i] >> 4];
		out[o++] = hex[u->b[i] & 15];
	}
	out[o] = '\0';
}

void uuid_v4(struct uuid *out)
{
	randombytes_buf(out->b, 16);
	out->b[6] = (unsigned char)((out->b[6] & 0x0f) | 0x40);
	out->b[8] = (unsigned char)((out->b[8] & 0x3f) | 0x80);
}
