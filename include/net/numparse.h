/* Strict numbers for query parameters (and anything else that is text from
 * a client): the JSON number grammar (RFC 8259 section 6) and nothing else,
 * so that a query parameter means what the same value in a JSON body means.
 * strtod alone takes hexadecimal ("0x10"), leading spaces, "inf", "nan" and
 * a trailing "." ("1."); these refuse them. Pure: no locale, no errno. */
#ifndef RH_NET_NUMPARSE_H
#define RH_NET_NUMPARSE_H

#include <stdbool.h>
#include <stdint.h>

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, the whole string, and
 * finite once converted; false otherwise (*out untouched). */
bool num_parse_decimal(const char *s, double *out);
/* -?(0|[1-9][0-9]*), the whole string, at most 18 digits; false otherwise. */
bool num_parse_integer(const char *s, int64_t *out);

#endif
