#include "net/numparse.h"

#include <math.h>
#include <stdlib.h>

static bool num_is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* The length of the JSON number at the start of s (0: none), and whether it
 * is an integer (no fraction, no exponent). */
static size_t num_scan(const char *s, bool *integer)
{
	const char *p = s;
	*integer = true;
	if (*p == '-')
		p++;
	if (*p == '0') {
		p++;
	} else if (num_is_digit(*p)) {
		while (num_is_digit(*p))
			p++;
	} else {
		return 0;
	}
	if (*p == '.') {
		p++;
		if (!num_is_digit(*p))
			return 0;
		while (num_is_digit(*p))
			p++;
		*integer = false;
	}
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '+' || *p == '-')
			p++;
		if (!num_is_digit(*p))
			return 0;
		while (num_is_digit(*p))
			p++;
		*integer = false;
	}
	return (size_t)(p - s);
}

bool num_parse_decimal(const char *s, double *out)
{
	bool integer;
	size_t n = s ? num_scan(s, &integer) : 0;
	if (n == 0 || s[n] != '\0')
		return false;
	/* The grammar is a subset of strtod's in the C locale the daemon runs in. */
	double d = strtod(s, NULL);
	if (!isfinite(d))
		return false;
	*out = d;
	return true;
}

bool num_parse_integer(const char *s, int64_t *out)
{
	bool integer;
	size_t n = s ? num_scan(s, &integer) : 0;
	if (n == 0 || s[n] != '\0' || !integer || n - (s[0] == '-') > 18)
		return false;
	int64_t v = 0;
	for (const char *p = s + (s[0] == '-'); *p; p++)
		v = v * 10 + (*p - '0');
	*out = s[0] == '-' ? -v : v;
	return true;
}
