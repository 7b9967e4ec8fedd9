/* Fuzz the tree-less scan (jv_scan, net/jsonv.c) against the tree walk it
 * stands in for on the hot path (cJSON + jv_check, as the gateway runs it).
 *
 * The scan may decline anything (the tree walk then decides), but whatever
 * it accepts the tree walk must accept too, with the same values: strings
 * equal, numbers the same double bit for bit (strtod's), date-times the same
 * instant, the same members present. Checked for whole inputs against a
 * table of every jv type and against the driver.location.updated payload,
 * and for inputs in the event envelope with their payload scanned again, the
 * way the gateway does it. abort() on any disagreement. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "gateway/gateway.h"
#include "net/jsonv.h"
#include "presence/presence.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const colours[] = { "red", "green", "ü", NULL };

static const struct jv_field inner[] = {
	{ "lat", JV_NUMBER, JV_REQUIRED, -90, 90 },
	{ "lon", JV_NUMBER, JV_REQUIRED, -180, 180 },
	{ 0 },
};

/* Every type but JV_ANY_OBJECT (only delimited by the scan: the envelope
 * case below covers it). */
static const struct jv_field table[] = {
	{ "id", JV_UUID, JV_REQUIRED },
	{ "at", JV_DATETIME, 0 },
	{ "name", JV_STRING, JV_NULLABLE, 1, 5 },
	{ "colour", JV_STRING, 0, 0, 0, colours },
	{ "n", JV_INTEGER, 0, -3, 1000 },
	{ "x", JV_NUMBER, JV_NULLABLE, 0, 360 },
	{ "big", JV_NUMBER, 0, -1e300, 1e300 },
	{ "ok", JV_BOOL, 0 },
	{ "where", JV_OBJECT, 0, 0, 0, NULL, inner },
	{ "mail", JV_EMAIL, 0 },
	{ 0 },
};

/* The tree walk's verdict on a whole text, as the gateway reaches it. */
static cJSON *tree(const uint8_t *data, size_t size)
{
	const char *end = NULL;
	cJSON *j = cJSON_ParseWithLengthOpts((const char *)data, size, &end, false);
	if (!j)
		return NULL;
	for (const char *p = end; p < (const char *)data + size; p++)
		if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
			cJSON_Delete(j);
			return NULL;
		}
	return j;
}

/* The scanned values must be the tree's. */
static void same(const struct jv_value *v, const cJSON *obj, const struct jv_field *fields)
{
	struct jv_error err;
	if (!cJSON_IsObject(obj) || !jv_check(obj, fields, &err))
		abort();
	for (size_t i = 0; fields[i].name; i++) {
		const struct jv_field *f = &fields[i];
		const cJSON *m = cJSON_GetObjectItemCaseSensitive(obj, f->name);
		if (v[i].present != (m != NULL))
			abort();
		if (!m)
			continue;
		switch (f->type) {
		case JV_NUMBER:
		case JV_INTEGER:
			if (!cJSON_IsNumber(m) || memcmp(&v[i].num, &m->valuedouble, sizeof(double)) != 0)
				abort();
			break;
		case JV_BOOL:
			if (v[i].num != (cJSON_IsTrue(m) ? 1 : 0))
				abort();
			break;
		case JV_OBJECT:
			same(v[i].sub, m, f->fields);
			break;
		case JV_ANY_OBJECT:
			if (!cJSON_IsObject(m) || v[i].len == 0 || v[i].str[0] != '{' || v[i].str[v[i].len - 1] != '}')
				abort();
			break;
		case JV_DATETIME: {
			int64_t ms;
			if (!cJSON_IsString(m) || rh_parse_rfc3339(m->valuestring, &ms) != 0 || ms != v[i].ms)
				abort();
		}
			/* fall through */
		case JV_STRING:
		case JV_UUID:
		case JV_EMAIL:
			if (!cJSON_IsString(m) || strcmp(m->valuestring, v[i].str) != 0 || strlen(v[i].str) != v[i].len)
				abort();
			break;
		}
	}
}

static void whole(const uint8_t *data, size_t size, const struct jv_field *fields)
{
	struct jv_scan sc;
	jv_scan_init(&sc);
	const struct jv_value *v = jv_scan(&sc, (const char *)data, size, fields);
	if (!v)
		return;
	cJSON *j = tree(data, size);
	if (!j)
		abort();
	same(v, j, fields);
	cJSON_Delete(j);
}

/* As the gateway names the payload's table once event_type is read. */
static const struct jv_field *payload_table(void *arg, const struct jv_value *env)
{
	return env[GW_ENV_EVENT_TYPE].present ? arg : NULL;
}

static void envelope(const uint8_t *data, size_t size, const struct jv_field *payload_fields, bool one_pass)
{
	struct jv_scan sc;
	jv_scan_init(&sc);
	if (one_pass) {
		sc.any_fields = payload_table;
		sc.any_arg = (void *)(uintptr_t)payload_fields;
	}
	const struct jv_value *env = jv_scan(&sc, (const char *)data, size, gw_envelope_fields);
	if (!env)
		return;
	const struct jv_value *pl = env[GW_ENV_PAYLOAD].sub;
	if (!pl) {
		sc.any_fields = NULL;
		pl = jv_scan(&sc, env[GW_ENV_PAYLOAD].str, env[GW_ENV_PAYLOAD].len, payload_fields);
	}
	if (!pl)
		return;
	cJSON *j = tree(data, size);
	if (!j)
		abort();
	same(env, j, gw_envelope_fields);
	same(pl, cJSON_GetObjectItemCaseSensitive(j, "payload"), payload_fields);
	cJSON_Delete(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	whole(data, size, table);
	whole(data, size, presence_location_fields);
	envelope(data, size, presence_location_fields, false);
	envelope(data, size, presence_location_fields, true);
	envelope(data, size, table, false);
	envelope(data, size, table, true);
	return 0;
}
