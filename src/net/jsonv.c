#include "net/jsonv.h"

#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "net/utf8.h"

#define MAX_SAFE_INTEGER 9007199254740992.0

/* Records the violation; `what` completes "<path> ..." for humans. */
static bool jv_fail(struct jv_error *err, const char *path, const char *keyword, const char *what)
{
	snprintf(err->path, sizeof err->path, "%s", path);
	snprintf(err->keyword, sizeof err->keyword, "%s", keyword);
	snprintf(err->message, sizeof err->message, "%.100s %.80s", path[0] ? path : "body", what);
	return false;
}

static void jv_format_number(char *out, size_t n, double x)
{
	if (x == floor(x) && fabs(x) < 1e15)
		snprintf(out, n, "%.0f", x);
	else
		snprintf(out, n, "%g", x);
}

static size_t jv_utf8_length(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += ((unsigned char)*s & 0xc0) != 0x80;
	return n;
}

static const bool hex_digit[256] = {
	['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
	['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,
	['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1,
};

static bool jv_is_uuid_n(const char *s, size_t n)
{
	if (n != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-')
		return false;
	const unsigned char *u = (const unsigned char *)s;
	unsigned ok = 1; /* the dashes were checked: the 32 digits around them */
	for (int i = 0; i < 8; i++)
		ok &= hex_digit[u[i]] & hex_digit[u[24 + i]];
	for (int i = 0; i < 4; i++)
		ok &= hex_digit[u[9 + i]] & hex_digit[u[14 + i]] & hex_digit[u[19 + i]] & hex_digit[u[32 + i]];
	return ok;
}

bool jv_is_uuid(const char *s)
{
	return jv_is_uuid_n(s, strnlen(s, 37));
}

static bool jv_is_email(const char *s)
{
	const char *at = strchr(s, '@');
	if (!at || at == s || strchr(at + 1, '@'))
		return false;
	const char *dot = strrchr(at, '.');
	if (!dot || dot == at + 1 || !dot[1])
		return false;
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p <= 0x20 || *p == 0x7f)
			return false;
	return true;
}

static const char *jv_type_word(enum jv_type t)
{
	switch (t) {
	case JV_NUMBER: return "a number";
	case JV_INTEGER: return "an integer";
	case JV_BOOL: return "a boolean";
	case JV_OBJECT:
	case JV_ANY_OBJECT: return "an object";
	default: return "a string";
	}
}

/* Paths are joined only when something fails: the happy path (every
 * location update) must not pay for building strings it never shows. */
static bool jv_fail_in(struct jv_error *err, const char *parent, const char *name, const char *keyword, const char *what)
{
	char sub[128];
	snprintf(sub, sizeof sub, "%s%s%s", parent, parent[0] ? "." : "", name);
	return jv_fail(err, sub, keyword, what);
}

#define JV_MAX_FIELDS 64

static bool jv_check_value(const cJSON *v, const struct jv_field *f, const char *parent, struct jv_error *err);

static bool jv_check_object(const cJSON *obj, const struct jv_field *fields, const char *path, struct jv_error *err)
{
	if (!cJSON_IsObject(obj)) {
		return jv_fail(err, path, "type", "must be an object");
	}
	size_t nf = 0;
	while (fields[nf].name)
		nf++;
	if (nf > JV_MAX_FIELDS)
		abort(); /* a table this large is a programming error */
	const cJSON *found[JV_MAX_FIELDS];
	memset(found, 0, nf * sizeof *found);
	/* unknown or repeated members first: they are never silently ignored */
	for (const cJSON *m = obj->child; m; m = m->next) {
		size_t i = 0;
		while (i < nf && strcmp(fields[i].name, m->string) != 0)
			i++;
		if (i == nf) {
			return jv_fail_in(err, path, m->string, "additionalProperties", "is not a known field");
		}
		if (found[i]) {
			return jv_fail_in(err, path, m->string, "uniqueMembers", "appears twice");
		}
		found[i] = m;
	}
	for (size_t i = 0; i < nf; i++) {
		const struct jv_field *f = &fields[i];
		const cJSON *v = found[i];
		if (!v || (cJSON_IsNull(v) && (f->flags & JV_NULLABLE))) {
			if (f->flags & JV_REQUIRED) {
				return jv_fail_in(err, path, f->name, "required", "is required");
			}
			continue;
		}
		if (!jv_check_value(v, f, path, err))
			return false;
	}
	return true;
}

/* The rules on a number and on a string, shared by the tree walk and the
 * tree-less scan (jv_scan), so that both apply exactly the same ones. */
static bool jv_check_number(double d, const struct jv_field *f, const char *parent, struct jv_error *err)
{
	if (!isfinite(d)) {
		char what[48];
		snprintf(what, sizeof what, "must be %s", jv_type_word(f->type));
		return jv_fail_in(err, parent, f->name, "type", what);
	}
	/* A whole number out of range is a range violation, as a JSON
	 * Schema validator reports it, even past 2^53. */
	if (f->type == JV_INTEGER && d != floor(d)) {
		return jv_fail_in(err, parent, f->name, "type", "must be an integer");
	}
	char what[64], num[32];
	if (d < f->min) {
		jv_format_number(num, sizeof num, f->min);
		snprintf(what, sizeof what, "must be at least %s", num);
		return jv_fail_in(err, parent, f->name, "minimum", what);
	}
	if (d > f->max) {
		jv_format_number(num, sizeof num, f->max);
		snprintf(what, sizeof what, "must be at most %s", num);
		return jv_fail_in(err, parent, f->name, "maximum", what);
	}
	if (f->type == JV_INTEGER && fabs(d) > MAX_SAFE_INTEGER) {
		return jv_fail_in(err, parent, f->name, "type", "must be an integer");
	}
	return true;
}

/* s is NUL-terminated, n bytes; ascii: no byte >= 0x80 (then it is valid
 * UTF-8 and its length in characters is n). *ms gets a date-time's value. */
static bool jv_check_string(const char *s, size_t n, bool ascii, const struct jv_field *f, const char *parent,
			 struct jv_error *err, int64_t *ms)
{
	if (!ascii && !utf8_is_valid((const uint8_t *)s, n)) {
		return jv_fail_in(err, parent, f->name, "format", "is not valid UTF-8");
	}
	size_t len = ascii ? n : jv_utf8_length(s);
	if (f->type == JV_STRING) {
		char what[96];
		if ((double)len < f->min) {
			snprintf(what, sizeof what, "must have at least %.0f characters", f->min);
			return jv_fail_in(err, parent, f->name, "minLength", what);
		}
		if (f->max > 0 && (double)len > f->max) {
			snprintf(what, sizeof what, "must have at most %.0f characters", f->max);
			return jv_fail_in(err, parent, f->name, "maxLength", what);
		}
		if (f->enum_values) {
			for (int i = 0; f->enum_values[i]; i++)
				if (strcmp(s, f->enum_values[i]) == 0)
					return true;
			size_t k = (size_t)snprintf(what, sizeof what, "must be one of");
			for (int i = 0; f->enum_values[i] && k < sizeof what; i++)
				k += (size_t)snprintf(what + k, sizeof what - k, "%s %s", i ? "," : "", f->enum_values[i]);
			return jv_fail_in(err, parent, f->name, "enum", what);
		}
		return true;
	}
	if (f->type == JV_UUID && !jv_is_uuid_n(s, n)) {
		return jv_fail_in(err, parent, f->name, "format", "must be a UUID");
	}
	if (f->type == JV_DATETIME) {
		/* RFC 3339 lets applications use a space for the T, but JSON
		 * Schema's date-time does not: neither do we at the edge. */
		if (rh_parse_rfc3339(s, ms) != 0 || s[10] == ' ') {
			return jv_fail_in(err, parent, f->name, "format", "must be an RFC 3339 date-time");
		}
	}
	if (f->type == JV_EMAIL && (!jv_is_email(s) || len > 254)) {
		return jv_fail_in(err, parent, f->name, "format", "must be an email address");
	}
	return true;
}

static bool jv_check_value(const cJSON *v, const struct jv_field *f, const char *parent, struct jv_error *err)
{
	switch (f->type) {
	case JV_NUMBER:
	case JV_INTEGER:
		if (!cJSON_IsNumber(v)) {
			char what[48];
			snprintf(what, sizeof what, "must be %s", jv_type_word(f->type));
			return jv_fail_in(err, parent, f->name, "type", what);
		}
		return jv_check_number(v->valuedouble, f, parent, err);
	case JV_BOOL:
		if (!cJSON_IsBool(v)) {
			return jv_fail_in(err, parent, f->name, "type", "must be a boolean");
		}
		return true;
	case JV_OBJECT: {
		char sub[128];
		snprintf(sub, sizeof sub, "%s%s%s", parent, parent[0] ? "." : "", f->name);
		return jv_check_object(v, f->fields, sub, err);
	}
	case JV_ANY_OBJECT:
		if (!cJSON_IsObject(v)) {
			return jv_fail_in(err, parent, f->name, "type", "must be an object");
		}
		return true;
	case JV_STRING:
	case JV_UUID:
	case JV_DATETIME:
	case JV_EMAIL:
		break;
	}
	if (!cJSON_IsString(v)) {
		return jv_fail_in(err, parent, f->name, "type", "must be a string");
	}
	int64_t ms;
	return jv_check_string(v->valuestring, strlen(v->valuestring), false, f, parent, err, &ms);
}

bool jv_check(const cJSON *obj, const struct jv_field *fields, struct jv_error *err)
{
	memset(err, 0, sizeof *err);
	return jv_check_object(obj, fields, "", err);
}

const char *jv_str(const cJSON *obj, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

double jv_num(const cJSON *obj, const char *name, double def)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
	return cJSON_IsNumber(v) ? v->valuedouble : def;
}

bool jv_has(const cJSON *obj, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
	return v && !cJSON_IsNull(v);
}

/* ------------------------------------------------------------ the scan */

static bool jv_is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static const char *jv_skip_ws(const char *p, const char *end)
{
	while (p < end && jv_is_ws(*p))
		p++;
	return p;
}

/* A string token with printable ASCII only (no escapes): its bytes
 * [*s, *s + *n); returns the position after the closing quote, NULL to defer. */
static const char *jv_scan_plain_string(const char *p, const char *end, const char **s, size_t *n)
{
	if (p >= end || *p != '"')
		return NULL;
	const char *q = ++p;
	/* eight bytes at a time while none is a quote, a backslash, a control
	 * character or past ASCII (the exact "is there any" SWAR tests) */
	while (end - q >= 8) {
		const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
		uint64_t w, quote, bslash;
		memcpy(&w, q, 8);
		quote = w ^ (ones * '"');
		bslash = w ^ (ones * '\\');
		uint64_t special = ((quote - ones) & ~quote) | ((bslash - ones) & ~bslash) | ((w - ones * 0x20) & ~w) |
				   ((w + ones * (0x7f - 0x7e)) | w);
		if (special & high)
			break;
		q += 8;
	}
	while (q < end && *q != '"') {
		unsigned char c = (unsigned char)*q;
		if (c < 0x20 || c >= 0x7f || c == '\\')
			return NULL;
		q++;
	}
	if (q >= end)
		return NULL;
	*s = p;
	*n = (size_t)(q - p);
	return q + 1;
}

static bool jv_is_delim(const char *p, const char *end)
{
	return p < end && (*p == ',' || *p == '}' || jv_is_ws(*p));
}

/* -?(0|[1-9][0-9]*)(.[0-9]+)? with at most 19 significant digits whose value
 * stays below 2^53 and at most 22 decimals: then the value and the power of
 * ten are exact doubles and one division rounds correctly, which is what
 * strtod (behind cJSON) returns. Anything else defers. */
static const char *jv_scan_number(const char *p, const char *end, double *out)
{
	static const double pow10[] = { 1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
					1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22 };
	bool neg = p < end && *p == '-';
	if (neg)
		p++;
	if (p >= end || (unsigned)(*p - '0') > 9)
		return NULL;
	uint64_t w = 0;
	int digits = 0, decimals = 0;
	if (*p == '0') {
		p++;
	} else {
		while (p < end && (unsigned)(*p - '0') <= 9 && digits < 19) {
			w = w * 10 + (uint64_t)(*p++ - '0');
			digits++;
		}
	}
	if (p < end && *p == '.') {
		p++;
		if (p >= end || (unsigned)(*p - '0') > 9)
			return NULL;
		while (p < end && (unsigned)(*p - '0') <= 9 && digits < 19 && decimals < 22) {
			w = w * 10 + (uint64_t)(*p++ - '0');
			digits += w != 0;
			decimals++;
		}
	}
	if (!jv_is_delim(p, end) || w > (1ull << 53))
		return NULL;
	double d = decimals ? (double)w / pow10[decimals] : (double)w;
	*out = neg ? -d : d;
	return p;
}

/* The end of a JSON object starting at p ('{'), found by nesting and
 * strings alone: its members are scanned again when it matters. */
static const char *jv_skip_object(const char *p, const char *end)
{
	int depth = 0;
	while (p < end) {
		unsigned char c = (unsigned char)*p;
		if (c == '"') {
			for (p++; p < end && *p != '"'; p++) {
				if ((unsigned char)*p < 0x20)
					return NULL;
				if (*p == '\\' && ++p == end)
					return NULL;
			}
			if (p >= end)
				return NULL;
		} else if (c == '{' || c == '[') {
			depth++;
		} else if (c == '}' || c == ']') {
			if (--depth == 0)
				return p + 1;
		} else if (c < 0x20 && !jv_is_ws((char)c)) {
			return NULL;
		}
		p++;
	}
	return NULL;
}

static const char *jv_scan_object(struct jv_scan *sc, const char *p, const char *end, const struct jv_field *fields,
			       struct jv_value **vals_out);

static bool jv_name_is(const char *name, const char *k, size_t kn)
{
	return strncmp(name, k, kn) == 0 && name[kn] == '\0';
}

/* p at "<name>" (a table's names are plain ASCII): the position after it;
 * NULL when the text holds another key there. */
static const char *jv_quoted_name(const char *p, const char *end, const char *name)
{
	if (p >= end || *p++ != '"')
		return NULL;
	for (; *name; name++, p++)
		if (p >= end || *p != *name)
			return NULL;
	return p < end && *p == '"' ? p + 1 : NULL;
}

/* vals: the values of the object being scanned, v among them. */
static const char *jv_scan_value(struct jv_scan *sc, const char *p, const char *end, const struct jv_field *f,
			      const struct jv_value *vals, struct jv_value *v)
{
	struct jv_error err; /* a failed rule defers: the tree walk words it */
	switch (f->type) {
	case JV_NUMBER:
	case JV_INTEGER:
		p = jv_scan_number(p, end, &v->num);
		return p && jv_check_number(v->num, f, "", &err) ? p : NULL;
	case JV_BOOL:
		if (end - p >= 4 && memcmp(p, "true", 4) == 0) {
			v->num = 1;
			p += 4;
		} else if (end - p >= 5 && memcmp(p, "false", 5) == 0) {
			v->num = 0;
			p += 5;
		} else {
			return NULL;
		}
		return jv_is_delim(p, end) ? p : NULL;
	case JV_OBJECT: {
		struct jv_value *sub = NULL;
		p = jv_scan_object(sc, p, end, f->fields, &sub);
		v->sub = sub;
		return p;
	}
	case JV_ANY_OBJECT: {
		if (p >= end || *p != '{')
			return NULL;
		const struct jv_field *inner = sc->any_fields && sc->depth == 1 ? sc->any_fields(sc->any_arg, vals) : NULL;
		const char *q;
		if (inner) { /* its table is known already: one pass */
			struct jv_value *sub = NULL;
			q = jv_scan_object(sc, p, end, inner, &sub);
			v->sub = sub;
		} else {
			q = jv_skip_object(p, end);
		}
		if (!q)
			return NULL;
		v->str = p;
		v->len = (size_t)(q - p);
		return q;
	}
	case JV_STRING:
	case JV_UUID:
	case JV_DATETIME:
	case JV_EMAIL:
		break;
	}
	const char *s;
	size_t n;
	p = jv_scan_plain_string(p, end, &s, &n);
	if (!p || n + 1 > sizeof sc->text - sc->ntext)
		return NULL;
	char *copy = sc->text + sc->ntext;
	memcpy(copy, s, n);
	copy[n] = '\0';
	sc->ntext += n + 1;
	v->str = copy;
	v->len = n;
	return jv_check_string(copy, n, true, f, "", &err, &v->ms) ? p : NULL;
}

static const char *jv_scan_members(struct jv_scan *sc, const char *p, const char *end, const struct jv_field *fields,
				struct jv_value **vals_out);

static const char *jv_scan_object(struct jv_scan *sc, const char *p, const char *end, const struct jv_field *fields,
			       struct jv_value **vals_out)
{
	sc->depth++;
	p = jv_scan_members(sc, p, end, fields, vals_out);
	sc->depth--;
	return p;
}

static const char *jv_scan_members(struct jv_scan *sc, const char *p, const char *end, const struct jv_field *fields,
				struct jv_value **vals_out)
{
	size_t nf = 0;
	while (fields[nf].name)
		nf++;
	if (nf > sizeof sc->v / sizeof sc->v[0] - sc->nv)
		return NULL;
	struct jv_value *vals = sc->v + sc->nv;
	sc->nv += (unsigned)nf;
	memset(vals, 0, nf * sizeof *vals);
	if (p >= end || *p != '{')
		return NULL;
	p = jv_skip_ws(p + 1, end);
	if (p < end && *p == '}') {
		p++;
	} else {
		size_t next = 0; /* members usually come in table order: try that one first */
		for (;;) {
			const char *k;
			size_t kn, i;
			const char *q = next < nf ? jv_quoted_name(p, end, fields[next].name) : NULL;
			if (q) { /* the expected member: its key is that name exactly */
				i = next;
				p = q;
			} else {
				p = jv_scan_plain_string(p, end, &k, &kn);
				if (!p)
					return NULL;
				for (i = 0; i < nf && !jv_name_is(fields[i].name, k, kn); i++)
					;
			}
			if (i == nf || vals[i].present) /* unknown or repeated: the tree walk says so */
				return NULL;
			next = i + 1;
			p = jv_skip_ws(p, end);
			if (p >= end || *p != ':')
				return NULL;
			p = jv_scan_value(sc, jv_skip_ws(p + 1, end), end, &fields[i], vals, &vals[i]);
			if (!p)
				return NULL;
			vals[i].present = true;
			p = jv_skip_ws(p, end);
			if (p < end && *p == ',') {
				p = jv_skip_ws(p + 1, end);
				continue;
			}
			if (p < end && *p == '}') {
				p++;
				break;
			}
			return NULL;
		}
	}
	for (size_t i = 0; i < nf; i++)
		if ((fields[i].flags & JV_REQUIRED) && !vals[i].present)
			return NULL;
	*vals_out = vals;
	return p;
}

void jv_scan_init(struct jv_scan *sc)
{
	sc->nv = 0;
	sc->ntext = 0;
	sc->any_fields = NULL;
	sc->any_arg = NULL;
}

const struct jv_value *jv_scan(struct jv_scan *sc, const char *text, size_t len, const struct jv_field *fields)
{
	const char *end = text + len;
	struct jv_value *vals;
	sc->depth = 0;
	const char *p = jv_scan_object(sc, jv_skip_ws(text, end), end, fields, &vals);
	return p && jv_skip_ws(p, end) == end ? vals : NULL;
}
