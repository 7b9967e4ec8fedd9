/* Fuzz target for the strict number parsers (net/numparse.h), differential:
 * whatever they take, strtod must read whole to the same value, and the text
 * must hold only JSON number characters; an integer must print back to the
 * same text (less a "-0"'s sign). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/numparse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char s[64];
	if (size >= sizeof s)
		return 0;
	memcpy(s, data, size);
	s[size] = 0;
	double d;
	if (num_parse_decimal(s, &d)) {
		char *end;
		double r = strtod(s, &end);
		if (*end || r != d || strspn(s, "0123456789-+.eE") != strlen(s) || s[0] == '+')
			abort();
	}
	int64_t n;
	if (num_parse_integer(s, &n)) {
		char back[32];
		snprintf(back, sizeof back, "%" PRId64, n);
		if (strcmp(back, strcmp(s, "-0") == 0 ? "0" : s) != 0)
			abort();
		if (!num_parse_decimal(s, &d) || d != (double)n)
			abort();
	}
	return 0;
}
