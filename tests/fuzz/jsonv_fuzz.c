/* Fuzz the message validator (net/jsonv.c), which guards every WebSocket
 * message and REST body.
 *
 * Input: any bytes, parsed by cJSON. Objects are checked against the real
 * event envelope (gw_envelope_fields) and against a table that uses every
 * jv type, flag and bound. The oracle is an independent re-check written
 * here: an accepted object must really satisfy its table (required members
 * present, no unknown members, numbers finite and in range, integers whole,
 * strings valid UTF-8 within their length and enum, nested objects valid),
 * and a refusal must name a known JSON Schema keyword. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/gateway.h"
#include "net/jsonv.h"
#include "net/utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const colours[] = { "red", "green", "ü", NULL };

static const struct jv_field inner[] = {
	{ "lat", JV_NUMBER, JV_REQUIRED, -90, 90 },
	{ "lon", JV_NUMBER, JV_REQUIRED, -180, 180 },
	{ 0 },
};

static const struct jv_field table[] = {
	{ "id", JV_UUID, JV_REQUIRED },
	{ "at", JV_DATETIME, 0 },
	{ "name", JV_STRING, JV_NULLABLE, 1, 5 },
	{ "colour", JV_STRING, 0, 0, 0, colours },
	{ "n", JV_INTEGER, 0, -3, 1000 },
	{ "x", JV_NUMBER, JV_NULLABLE, 0, 360 },
	{ "ok", JV_BOOL, 0 },
	{ "where", JV_OBJECT, 0, 0, 0, NULL, inner },
	{ "mail", JV_EMAIL, 0 },
	{ "any", JV_ANY_OBJECT, 0 },
	{ 0 },
};

static size_t utf8_chars(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += ((unsigned char)*s & 0xc0) != 0x80;
	return n;
}

static const struct jv_field *find(const struct jv_field *fields, const char *name)
{
	for (const struct jv_field *f = fields; f->name; f++)
		if (strcmp(f->name, name) == 0)
			return f;
	return NULL;
}

/* The independent oracle: abort() when an accepted object breaks its table. */
static void recheck(const cJSON *obj, const struct jv_field *fields)
{
	if (!cJSON_IsObject(obj))
		abort();
	for (const struct jv_field *f = fields; f->name; f++) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, f->name);
		if (!v || cJSON_IsNull(v)) {
			if ((f->flags & JV_REQUIRED) && !(v && (f->flags & JV_NULLABLE)))
				abort();
			if (v && !(f->flags & JV_NULLABLE))
				abort();
			continue;
		}
		switch (f->type) {
		case JV_NUMBER:
		case JV_INTEGER:
			if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < f->min ||
			    v->valuedouble > f->max)
				abort();
			if (f->type == JV_INTEGER && v->valuedouble != floor(v->valuedouble))
				abort();
			break;
		case JV_BOOL:
			if (!cJSON_IsBool(v))
				abort();
			break;
		case JV_OBJECT:
			recheck(v, f->fields);
			break;
		case JV_ANY_OBJECT:
			if (!cJSON_IsObject(v))
				abort();
			break;
		case JV_UUID:
			if (!cJSON_IsString(v) || strlen(v->valuestring) != 36 || !jv_is_uuid(v->valuestring))
				abort();
			break;
		case JV_STRING:
		case JV_DATETIME:
		case JV_EMAIL:
			if (!cJSON_IsString(v) || !utf8_is_valid((const uint8_t *)v->valuestring, strlen(v->valuestring)))
				abort();
			if (f->type == JV_STRING && f->max > 0 &&
			    (utf8_chars(v->valuestring) < f->min || utf8_chars(v->valuestring) > f->max))
				abort();
			if (f->type == JV_STRING && f->enum_values) {
				bool in = false;
				for (const char *const *e = f->enum_values; *e; e++)
					in |= strcmp(*e, v->valuestring) == 0;
				if (!in)
					abort();
			}
			if (f->type == JV_EMAIL && (!strchr(v->valuestring, '@') || strchr(v->valuestring, ' ')))
				abort();
			break;
		}
	}
	for (const cJSON *m = obj->child; m; m = m->next)
		if (!m->string || !find(fields, m->string))
			abort();
}

static void check(const cJSON *obj, const struct jv_field *fields)
{
	static const char *const keywords[] = { "required", "type", "minimum", "maximum", "minLength",
						"maxLength", "enum", "format", "additionalProperties", "uniqueMembers",
						NULL };
	struct jv_error err;
	memset(&err, 0x5a, sizeof err);
	if (jv_check(obj, fields, &err)) {
		recheck(obj, fields);
		return;
	}
	bool known = false;
	for (const char *const *k = keywords; *k; k++)
		known |= strcmp(*k, err.keyword) == 0;
	if (!known || !memchr(err.path, 0, sizeof err.path) || !memchr(err.message, 0, sizeof err.message))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *end = NULL;
	cJSON *j = cJSON_ParseWithLengthOpts((const char *)data, size, &end, false);
	if (!j)
		return 0;
	if (cJSON_IsObject(j)) {
		check(j, table);
		check(j, gw_envelope_fields);
		const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "payload");
		if (cJSON_IsObject(p))
			check(p, table);
	}
	cJSON_Delete(j);
	return 0;
}
