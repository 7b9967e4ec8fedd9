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
static bool fail(struct jv_error *err, const char *path, const char *keyword, const char *what)
{
	snprintf(err->path, sizeof err->path, "%s", path);
	snprintf(err->keyword, sizeof err->keyword, "%s", keyword);
	snprintf(err->message, sizeof err->message, "%.100s %.80s", path[0] ? path : "body", what);
	return false;
}

static void fmt_num(char *out, size_t n, double x)
{
	if (x == floor(x) && fabs(x) < 1e15)
		snprintf(out, n, "%.0f", x);
	else
		snprintf(out, n, "%g", x);
}

bool jv_valid_utf8(const char *s)
{
	return utf8_is_valid((const uint8_t *)s, strlen(s));
}

static size_t utf8_len(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += ((unsigned char)*s & 0xc0) != 0x80;
	return n;
}

bool jv_is_uuid(const char *s)
{
	static const int dash[] = { 8, 13, 18, 23 };
	if (strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		bool want_dash = i == dash[0] || i == dash[1] || i == dash[2] || i == dash[3];
		if (want_dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
			return false;
	}
	return true;
}

static bool is_email(const char *s)
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

static const char *type_word(enum jv_type t)
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
static bool fail_in(struct jv_error *err, const char *parent, const char *name, const char *keyword, const char *what)
{
	char sub[128];
	snprintf(sub, sizeof sub, "%s%s%s", parent, parent[0] ? "." : "", name);
	return fail(err, sub, keyword, what);
}

#define JV_MAX_FIELDS 64

static bool check_value(const cJSON *v, const struct jv_field *f, const char *parent, struct jv_error *err);

static bool check_object(const cJSON *obj, const struct jv_field *fields, const char *path, struct jv_error *err)
{
	if (!cJSON_IsObject(obj)) {
		return fail(err, path, "type", "must be an object");
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
			return fail_in(err, path, m->string, "additionalProperties", "is not a known field");
		}
		if (found[i]) {
			return fail_in(err, path, m->string, "uniqueMembers", "appears twice");
		}
		found[i] = m;
	}
	for (size_t i = 0; i < nf; i++) {
		const struct jv_field *f = &fields[i];
		const cJSON *v = found[i];
		if (!v || (cJSON_IsNull(v) && (f->flags & JV_NULLABLE))) {
			if (f->flags & JV_REQUIRED) {
				return fail_in(err, path, f->name, "required", "is required");
			}
			continue;
		}
		if (!check_value(v, f, path, err))
			return false;
	}
	return true;
}

static bool check_value(const cJSON *v, const struct jv_field *f, const char *parent, struct jv_error *err)
{
	switch (f->type) {
	case JV_NUMBER:
	case JV_INTEGER: {
		if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) {
			char what[48];
			snprintf(what, sizeof what, "must be %s", type_word(f->type));
			return fail_in(err, parent, f->name, "type", what);
		}
		double d = v->valuedouble;
		/* A whole number out of range is a range violation, as a JSON
		 * Schema validator reports it, even past 2^53. */
		if (f->type == JV_INTEGER && d != floor(d)) {
			return fail_in(err, parent, f->name, "type", "must be an integer");
		}
		char what[64], num[32];
		if (d < f->min) {
			fmt_num(num, sizeof num, f->min);
			snprintf(what, sizeof what, "must be at least %s", num);
			return fail_in(err, parent, f->name, "minimum", what);
		}
		if (d > f->max) {
			fmt_num(num, sizeof num, f->max);
			snprintf(what, sizeof what, "must be at most %s", num);
			return fail_in(err, parent, f->name, "maximum", what);
		}
		if (f->type == JV_INTEGER && fabs(d) > MAX_SAFE_INTEGER) {
			return fail_in(err, parent, f->name, "type", "must be an integer");
		}
		return true;
	}
	case JV_BOOL:
		if (!cJSON_IsBool(v)) {
			return fail_in(err, parent, f->name, "type", "must be a boolean");
		}
		return true;
	case JV_OBJECT: {
		char sub[128];
		snprintf(sub, sizeof sub, "%s%s%s", parent, parent[0] ? "." : "", f->name);
		return check_object(v, f->fields, sub, err);
	}
	case JV_ANY_OBJECT:
		if (!cJSON_IsObject(v)) {
			return fail_in(err, parent, f->name, "type", "must be an object");
		}
		return true;
	case JV_STRING:
	case JV_UUID:
	case JV_DATETIME:
	case JV_EMAIL:
		break;
	}
	if (!cJSON_IsString(v)) {
		return fail_in(err, parent, f->name, "type", "must be a string");
	}
	const char *s = v->valuestring;
	if (!jv_valid_utf8(s)) {
		return fail_in(err, parent, f->name, "format", "is not valid UTF-8");
	}
	size_t len = utf8_len(s);
	if (f->type == JV_STRING) {
		char what[96];
		if ((double)len < f->min) {
			snprintf(what, sizeof what, "must have at least %.0f characters", f->min);
			return fail_in(err, parent, f->name, "minLength", what);
		}
		if (f->max > 0 && (double)len > f->max) {
			snprintf(what, sizeof what, "must have at most %.0f characters", f->max);
			return fail_in(err, parent, f->name, "maxLength", what);
		}
		if (f->enum_values) {
			for (int i = 0; f->enum_values[i]; i++)
				if (strcmp(s, f->enum_values[i]) == 0)
					return true;
			size_t n = (size_t)snprintf(what, sizeof what, "must be one of");
			for (int i = 0; f->enum_values[i] && n < sizeof what; i++)
				n += (size_t)snprintf(what + n, sizeof what - n, "%s %s", i ? "," : "", f->enum_values[i]);
			return fail_in(err, parent, f->name, "enum", what);
		}
		return true;
	}
	if (f->type == JV_UUID && !jv_is_uuid(s)) {
		return fail_in(err, parent, f->name, "format", "must be a UUID");
	}
	if (f->type == JV_DATETIME) {
		int64_t ms;
		/* RFC 3339 lets applications use a space for the T, but JSON
		 * Schema's date-time does not: neither do we at the edge. */
		if (rh_parse_rfc3339(s, &ms) != 0 || s[10] == ' ') {
			return fail_in(err, parent, f->name, "format", "must be an RFC 3339 date-time");
		}
	}
	if (f->type == JV_EMAIL && (!is_email(s) || len > 254)) {
		return fail_in(err, parent, f->name, "format", "must be an email address");
	}
	return true;
}

bool jv_check(const cJSON *obj, const struct jv_field *fields, struct jv_error *err)
{
	memset(err, 0, sizeof *err);
	return check_object(obj, fields, "", err);
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
