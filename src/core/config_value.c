/* One value of a configuration key: parsed from the text of the file or the
 * environment, checked against the key's type and range, and formatted back
 * the way it would be written (config_internal.h). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "config_internal.h"
#include "core/alloc.h"

/* ------------------------------------------------------------ small parsers */

const char *cfg_skip_ws(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

bool cfg_parse_bool(const char *s, bool *out)
{
	static const char *yes[] = { "true", "yes", "on", "1" };
	static const char *no[] = { "false", "no", "off", "0" };
	for (size_t i = 0; i < RH_ARRAY_LEN(yes); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return true;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return true;
		}
	}
	return false;
}

/* A finite decimal number at the start of s (no hex, no inf/nan); *rest
 * points after it. */
static bool cfg_parse_number(const char *s, const char **rest, double *out)
{
	const char *p = s;
	char *end;
	if (*p == '-' || *p == '+')
		p++;
	if (!isdigit((unsigned char)*p) && !(*p == '.' && isdigit((unsigned char)p[1])))
		return false;
	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X'))
		return false;
	errno = 0;
	double v = strtod(s, &end);
	if (end == s || errno == ERANGE || !isfinite(v))
		return false;
	*out = v;
	*rest = end;
	return true;
}

struct cfg_unit {
	const char *name;
	double mult;
};

/* A non-negative number followed by one of units (blanks between allowed),
 * as a whole number of the smallest unit. */
static bool cfg_parse_units(const char *s, const struct cfg_unit *units, size_t nunits, int64_t *out)
{
	const char *rest;
	double v;
	if (!cfg_parse_number(s, &rest, &v) || v < 0)
		return false;
	rest = cfg_skip_ws(rest);
	for (size_t i = 0; i < nunits; i++) {
		if (strcmp(rest, units[i].name) == 0) {
			double x = v * units[i].mult;
			if (x > 9.0e15 || x != floor(x))
				return false;
			*out = (int64_t)x;
			return true;
		}
	}
	return false;
}

bool cfg_parse_duration_ms(const char *s, int64_t *out)
{
	/* no "": a duration without a unit is ambiguous, refuse it */
	static const struct cfg_unit units[] = {
		{ "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 }, { "d", 86400000 },
	};
	return cfg_parse_units(s, units, RH_ARRAY_LEN(units), out);
}

bool cfg_parse_size(const char *s, int64_t *out)
{
	static const struct cfg_unit units[] = {
		{ "", 1 }, { "B", 1 }, { "KiB", 1024.0 }, { "MiB", 1048576.0 },
		{ "GiB", 1073741824.0 }, { "KB", 1000.0 }, { "MB", 1e6 }, { "GB", 1e9 },
	};
	return cfg_parse_units(s, units, RH_ARRAY_LEN(units), out);
}

bool cfg_split_addr(const char *s, char *host, size_t hostlen, int *port)
{
	const char *colon;
	size_t hl;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (!close || close[1] != ':')
			return false;
		hl = (size_t)(close - s - 1);
		s++;
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || memchr(s, ':', (size_t)(colon - s)))
			return false; /* bare IPv6 must be bracketed */
		hl = (size_t)(colon - s);
	}
	if (hl == 0 || hl >= hostlen)
		return false;
	for (size_t i = 0; i < hl; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!isalnum(c) && c != '.' && c != '-' && c != ':' && c != '_')
			return false;
	}
	const char *p = colon + 1;
	if (!*p || strlen(p) > 5)
		return false;
	long v = 0;
	for (; *p; p++) {
		if (!isdigit((unsigned char)*p))
			return false;
		v = v * 10 + (*p - '0');
	}
	if (v > 65535)
		return false;
	memcpy(host, s, hl);
	host[hl] = '\0';
	*port = (int)v;
	return true;
}

/* ------------------------------------------------------------ formatting */

const char *cfg_type_name(const struct cfg_key *k)
{
	switch (k->type) {
	case CFG_STR: return "string";
	case CFG_INT: return "integer";
	case CFG_DBL: return "number";
	case CFG_BOOL: return "boolean";
	case CFG_DURATION: return "duration";
	case CFG_SIZE: return "size";
	case CFG_ENUM: return "enum";
	case CFG_ADDR: return "host:port";
	case CFG_LIST: return (k->flags & CFG_F_INTEGER) ? "list of integers" : "list of numbers";
	}
	return "?";
}

static void cfg_format_number(char *out, size_t n, double v)
{
	if (v == floor(v) && fabs(v) < 1e15)
		snprintf(out, n, "%.0f", v);
	else
		snprintf(out, n, "%.10g", v);
}

static void cfg_format_duration(char *out, size_t n, int64_t ms)
{
	if (ms != 0 && ms % 3600000 == 0)
		snprintf(out, n, "%lldh", (long long)(ms / 3600000));
	else if (ms != 0 && ms % 60000 == 0)
		snprintf(out, n, "%lldm", (long long)(ms / 60000));
	else if (ms % 1000 == 0)
		snprintf(out, n, "%llds", (long long)(ms / 1000));
	else
		snprintf(out, n, "%lldms", (long long)ms);
}

static void cfg_format_size(char *out, size_t n, int64_t b)
{
	if (b != 0 && b % 1073741824 == 0)
		snprintf(out, n, "%lldGiB", (long long)(b / 1073741824));
	else if (b != 0 && b % 1048576 == 0)
		snprintf(out, n, "%lldMiB", (long long)(b / 1048576));
	else if (b != 0 && b % 1024 == 0)
		snprintf(out, n, "%lldKiB", (long long)(b / 1024));
	else
		snprintf(out, n, "%lld", (long long)b);
}

void cfg_format_range(char *out, size_t n, const struct cfg_key *k)
{
	char a[48], b[48];
	switch (k->type) {
	case CFG_DURATION:
		cfg_format_duration(a, sizeof a, (int64_t)k->min);
		cfg_format_duration(b, sizeof b, (int64_t)k->max);
		break;
	case CFG_SIZE:
		cfg_format_size(a, sizeof a, (int64_t)k->min);
		cfg_format_size(b, sizeof b, (int64_t)k->max);
		break;
	default:
		cfg_format_number(a, sizeof a, k->min);
		cfg_format_number(b, sizeof b, k->max);
	}
	snprintf(out, n, "%s..%s", a, b);
}

/* ------------------------------------------------------------ one value */

void *cfg_field(void *base, const struct cfg_key *k) { return (char *)base + k->offset; }
static const void *cfg_field_const(const void *base, const struct cfg_key *k) { return (const char *)base + k->offset; }

/* "<what><shown> is out of range <min..max>"; false. */
static bool cfg_range_error(const struct cfg_key *k, const char *what, const char *shown, char *err, size_t errlen)
{
	char range[128];
	cfg_format_range(range, sizeof range, k);
	snprintf(err, errlen, "%s%s is out of range %s", what, shown, range);
	return false;
}

/* CFG_STR and CFG_ADDR: the field owns a copy. */
static void cfg_string_set(void *f, const char *value)
{
	rh_free(*(char **)f);
	*(char **)f = rh_strdup(value);
}

static bool cfg_value_set_str(void *f, const struct cfg_key *k, const char *value, char *err, size_t errlen)
{
	if (k->max > 0 && strlen(value) > (size_t)k->max) {
		snprintf(err, errlen, "longer than %.0f characters", k->max);
		return false;
	}
	cfg_string_set(f, value);
	return true;
}

static bool cfg_value_set_addr(void *f, const char *value, char *err, size_t errlen)
{
	char host[256];
	int port;
	if (!cfg_split_addr(value, host, sizeof host, &port)) {
		snprintf(err, errlen, "\"%s\" is not host:port (IPv6 as [addr]:port, port 0-65535)", value);
		return false;
	}
	cfg_string_set(f, value);
	return true;
}

static bool cfg_value_set_int(void *f, const struct cfg_key *k, const char *value, char *err, size_t errlen)
{
	const char *rest;
	double v;
	if (!cfg_parse_number(value, &rest, &v) || *rest || v != floor(v)) {
		snprintf(err, errlen, "\"%s\" is not an integer", value);
		return false;
	}
	if (v < k->min || v > k->max)
		return cfg_range_error(k, "", value, err, errlen);
	*(int64_t *)f = (int64_t)v;
	return true;
}

static bool cfg_value_set_dbl(void *f, const struct cfg_key *k, const char *value, char *err, size_t errlen)
{
	const char *rest;
	double v;
	if (!cfg_parse_number(value, &rest, &v) || *rest) {
		snprintf(err, errlen, "\"%s\" is not a number", value);
		return false;
	}
	if (v < k->min || v > k->max)
		return cfg_range_error(k, "", value, err, errlen);
	*(double *)f = v;
	return true;
}

/* CFG_DURATION and CFG_SIZE: an int64_t with a unit, read by parse; `what`
 * completes "... is not ". */
static bool cfg_value_set_units(void *f, const struct cfg_key *k, const char *value,
				bool (*parse)(const char *s, int64_t *out), const char *what, char *err, size_t errlen)
{
	int64_t v;
	if (!parse(value, &v)) {
		snprintf(err, errlen, "\"%s\" is not %s", value, what);
		return false;
	}
	if (v < (int64_t)k->min || v > (int64_t)k->max)
		return cfg_range_error(k, "", value, err, errlen);
	*(int64_t *)f = v;
	return true;
}

static bool cfg_value_set_enum(void *f, const struct cfg_key *k, const char *value, char *err, size_t errlen)
{
	for (int i = 0; k->enum_values[i]; i++) {
		if (strcmp(value, k->enum_values[i]) == 0) {
			*(int *)f = i;
			return true;
		}
	}
	size_t len = (size_t)snprintf(err, errlen, "\"%s\" is not one of", value);
	for (int i = 0; k->enum_values[i] && len < errlen; i++)
		len += (size_t)snprintf(err + len, errlen - len, " %s", k->enum_values[i]);
	return false;
}

/* Appends the list element p[0..n) (blanks around it allowed) to list. */
static bool cfg_list_element_add(const struct cfg_key *k, const char *p, size_t n, struct cfg_list *list,
				 char *err, size_t errlen)
{
	char item[64];
	if (n >= sizeof item) {
		snprintf(err, errlen, "list element too long");
		return false;
	}
	memcpy(item, p, n);
	item[n] = '\0';
	char *s = item, *e = item + n;
	while (*s == ' ' || *s == '\t')
		s++;
	while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
		*--e = '\0';
	const char *rest;
	double v;
	if (!cfg_parse_number(s, &rest, &v) || *rest) {
		snprintf(err, errlen, "list element \"%s\" is not a number", s);
		return false;
	}
	if ((k->flags & CFG_F_INTEGER) && v != floor(v)) {
		snprintf(err, errlen, "list element %s is not an integer", s);
		return false;
	}
	if (v < k->min || v > k->max)
		return cfg_range_error(k, "list element ", s, err, errlen);
	if (list->n == CFG_LIST_MAX) {
		snprintf(err, errlen, "more than %d elements", CFG_LIST_MAX);
		return false;
	}
	if ((k->flags & CFG_F_ASCENDING) && list->n > 0 && v <= list->v[list->n - 1]) {
		snprintf(err, errlen, "list must be strictly ascending");
		return false;
	}
	list->v[list->n++] = v;
	return true;
}

/* Comma-separated; an empty value is the empty list. */
static bool cfg_value_set_list(void *f, const struct cfg_key *k, const char *value, char *err, size_t errlen)
{
	struct cfg_list list = { 0 };
	const char *p = value;
	if (*cfg_skip_ws(p)) {
		for (;;) {
			size_t n = strcspn(p, ",");
			if (!cfg_list_element_add(k, p, n, &list, err, errlen))
				return false;
			if (!p[n])
				break;
			p += n + 1;
		}
	}
	*(struct cfg_list *)f = list;
	return true;
}

bool cfg_value_set(void *base, const struct cfg_key *k, const char *value, char *err, size_t errlen)
{
	void *f = cfg_field(base, k);
	switch (k->type) {
	case CFG_STR:
		return cfg_value_set_str(f, k, value, err, errlen);
	case CFG_ADDR:
		return cfg_value_set_addr(f, value, err, errlen);
	case CFG_INT:
		return cfg_value_set_int(f, k, value, err, errlen);
	case CFG_DBL:
		return cfg_value_set_dbl(f, k, value, err, errlen);
	case CFG_BOOL:
		if (!cfg_parse_bool(value, (bool *)f)) {
			snprintf(err, errlen, "\"%s\" is not a boolean (true/false, yes/no, on/off)", value);
			return false;
		}
		return true;
	case CFG_DURATION:
		return cfg_value_set_units(f, k, value, cfg_parse_duration_ms,
					   "a duration (a number with unit ms, s, m, h or d)", err, errlen);
	case CFG_SIZE:
		return cfg_value_set_units(f, k, value, cfg_parse_size,
					   "a size (bytes, or a number with B, KiB, MiB, GiB)", err, errlen);
	case CFG_ENUM:
		return cfg_value_set_enum(f, k, value, err, errlen);
	case CFG_LIST:
		return cfg_value_set_list(f, k, value, err, errlen);
	}
	return false;
}

void cfg_value_format(const void *base, const struct cfg_key *k, char *out, size_t n)
{
	const void *f = cfg_field_const(base, k);
	switch (k->type) {
	case CFG_STR:
	case CFG_ADDR:
		snprintf(out, n, "%s", *(char *const *)f ? *(char *const *)f : "");
		break;
	case CFG_INT:
		snprintf(out, n, "%lld", (long long)*(const int64_t *)f);
		break;
	case CFG_DBL:
		cfg_format_number(out, n, *(const double *)f);
		break;
	case CFG_BOOL:
		snprintf(out, n, "%s", *(const bool *)f ? "true" : "false");
		break;
	case CFG_DURATION:
		cfg_format_duration(out, n, *(const int64_t *)f);
		break;
	case CFG_SIZE:
		cfg_format_size(out, n, *(const int64_t *)f);
		break;
	case CFG_ENUM:
		snprintf(out, n, "%s", k->enum_values[*(const int *)f]);
		break;
	case CFG_LIST: {
		const struct cfg_list *l = f;
		size_t len = 0;
		out[0] = '\0';
		for (int i = 0; i < l->n && len < n; i++) {
			char num[48];
			cfg_format_number(num, sizeof num, l->v[i]);
			len += (size_t)snprintf(out + len, n - len, "%s%s", i ? ", " : "", num);
		}
		break;
	}
	}
}

