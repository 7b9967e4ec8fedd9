/* The operator's pricing: zones (the service area, named zones), tariffs
 * (a new version per change) and surge overrides per zone, through the
 * admin API. Bodies are checked here, field by field, and the rest where it
 * can only be checked, in PostgreSQL (a polygon's validity, overlaps,
 * zones named by rules); the change, its log line with who made it and the
 * notification that makes every daemon read the book again commit together
 * (sql/functions/20_pricing_book.sql). A reply waits until this daemon's book holds
 * the change, so a request after it is priced by it.
 *
 * GET/PUT/DELETE /v1/admin/zones[/{name}], GET /v1/admin/tariffs[/{type}],
 * POST /v1/admin/tariffs/{type}, GET/PUT/DELETE
 * /v1/admin/surge/overrides[/{zone}], GET /v1/admin/pricing/log. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "core/alloc.h"
#include "core/log.h"
#include "core/settings.h"
#include "net/http.h"
#include "pricing_internal.h"
#include "store/db.h"

static struct db_stmt pricing_admin_st_zone_put = {
	"pricing_zone_put", "SELECT status, body::text FROM zone_put($1, $2, $3::integer, $4, $5)", 5, 0 };
static struct db_stmt pricing_admin_st_zone_delete = {
	"pricing_zone_delete", "SELECT status, body::text FROM zone_delete($1, $2)", 2, 0 };
static struct db_stmt pricing_admin_st_zones = {
	"pricing_zones",
	"SELECT jsonb_build_object('zones', COALESCE((SELECT jsonb_agg(zone_json(z, true) ORDER BY z.name) FROM zones z), "
	"'[]'), 'book_version', (SELECT version FROM pricing_book))::text",
	0, 0 };
static struct db_stmt pricing_admin_st_tariff_put = {
	"pricing_tariff_put", "SELECT status, body::text FROM tariff_put($1, $2::jsonb, 'operator', $3)", 3, 0 };
static struct db_stmt pricing_admin_st_tariffs = {
	"pricing_tariffs",
	"SELECT jsonb_build_object('tariffs', COALESCE(jsonb_agg(tariff_json(t) ORDER BY t.vehicle_type, t.version DESC), "
	"'[]'), 'book_version', (SELECT version FROM pricing_book))::text FROM tariffs t "
	"WHERE CASE WHEN $1::text IS NULL THEN t.version = (SELECT max(x.version) FROM tariffs x "
	"WHERE x.vehicle_type = t.vehicle_type) ELSE t.vehicle_type = $1 END",
	1, 0 };
static struct db_stmt pricing_admin_st_override_put = {
	"pricing_override_put", "SELECT status, body::text FROM surge_override_put($1, $2, $3::numeric, $4, $5)", 5, 0 };
static struct db_stmt pricing_admin_st_override_delete = {
	"pricing_override_delete", "SELECT status, body::text FROM surge_override_delete($1, $2)", 2, 0 };
static struct db_stmt pricing_admin_st_overrides = {
	"pricing_overrides",
	"SELECT jsonb_build_object('overrides', COALESCE(jsonb_agg(jsonb_strip_nulls(jsonb_build_object("
	"'zone', z.name, 'mode', o.mode, 'cap', o.cap, 'reason', o.reason, 'set_by', o.set_by, 'set_at', rh_ts(o.set_at))) "
	"ORDER BY z.name), '[]'))::text FROM surge_overrides o JOIN zones z ON z.id = o.zone_id",
	0, 0 };
static struct db_stmt pricing_admin_st_log = {
	"pricing_log",
	"SELECT jsonb_build_object('entries', COALESCE(jsonb_agg(jsonb_build_object('id', l.id, 'at', rh_ts(l.at), "
	"'actor', l.actor, 'action', l.action, 'subject', l.subject, 'detail', l.detail, 'book_version', l.book_version) "
	"ORDER BY l.id DESC), '[]'))::text FROM (SELECT * FROM pricing_log ORDER BY id DESC LIMIT $1::integer) l",
	1, 0 };

/* One request at the database, then (a change) at the book. */
struct pricing_admin_call {
	struct pricing *p;
	struct http_req *req;
	const char *what;    /* "put the zone": for errors */
	int status;
	cJSON *body;
};

static struct pricing_admin_call *pricing_admin_call_new(struct pricing *p, struct http_req *req, const char *what)
{
	struct pricing_admin_call *c = RH_NEW(struct pricing_admin_call);
	c->p = p;
	c->req = req;
	c->what = what;
	return c;
}

static void pricing_admin_call_free(struct pricing_admin_call *c)
{
	cJSON_Delete(c->body);
	rh_free(c);
}

static void pricing_admin_booked(void *arg, bool ok)
{
	struct pricing_admin_call *c = arg;
	if (!ok)
		log_warn(http_req_logid(c->req), "pricing: the change is written, but the book could not be read again yet");
	http_reply_header(c->req, "Cache-Control", "no-store");
	http_reply_json(c->req, c->status, c->body);
	c->body = NULL;
	pricing_admin_call_free(c);
}

/* A refusal of the SQL functions as a problem. */
static void pricing_admin_reply_refusal(struct http_req *req, int status, const cJSON *body)
{
	const char *reason = jv_str(body, "reason");
	const char *zone = jv_str(body, "zone");
	const char *field = jv_str(body, "field");
	cJSON *ext = cJSON_CreateObject();
	if (zone)
		cJSON_AddStringToObject(ext, "zone", zone);
	if (reason)
		cJSON_AddStringToObject(ext, "reason", reason);
	if (status == 404) {
		if (field)
			cJSON_AddStringToObject(ext, "field", field);
		http_reply_problem(req, PROBLEM_NOT_FOUND, ext, "no such zone");
	} else if (status == 409) {
		http_reply_problem(req, PROBLEM_CONFLICT, ext, "zone %s is named by a current tariff's rules: change the tariff first",
				   zone ? zone : "?");
	} else if (reason && strcmp(reason, "geometry_invalid") == 0) {
		cJSON_DeleteItemFromObject(ext, "reason");
		cJSON_AddStringToObject(ext, "reason", jv_str(body, "detail") ? jv_str(body, "detail") : "invalid");
		cJSON_AddStringToObject(ext, "field", "geometry");
		http_reply_problem(req, PROBLEM_GEOMETRY_INVALID, ext, "the geometry is not a valid polygon: %s",
				   jv_str(body, "detail") ? jv_str(body, "detail") : "invalid");
	} else if (reason && strcmp(reason, "zone_overlap") == 0) {
		cJSON_AddStringToObject(ext, "field", "priority");
		http_reply_problem(req, PROBLEM_ZONE_OVERLAP, ext,
				   "the zone overlaps zone %s of the same priority: give one of them a higher priority",
				   zone ? zone : "?");
	} else {
		if (field)
			cJSON_AddStringToObject(ext, "field", field);
		http_reply_problem(req, PROBLEM_UNPROCESSABLE, ext, "%s names zone %s, which is not a zone (kind zone)",
				   field ? field : "a rule", zone ? zone : "?");
	}
}

/* (status, body) of a change: a success waits for the book to hold it. */
static void pricing_admin_changed(void *arg, const struct db_result *res)
{
	struct pricing_admin_call *c = arg;
	if (res->err != RH_OK || db_rows(res) != 1) {
		http_reply_err(c->req, res->err != RH_OK ? db_result_err(res) : RH_EDB, c->what, res->message);
		pricing_admin_call_free(c);
		return;
	}
	c->status = atoi(db_get(res, 0, 0));
	c->body = cJSON_Parse(db_get(res, 0, 1));
	if (c->status >= 400 || !c->body) {
		if (c->body)
			pricing_admin_reply_refusal(c->req, c->status, c->body);
		else
			http_reply_err(c->req, RH_EDB, c->what, "an unreadable answer");
		pricing_admin_call_free(c);
		return;
	}
	log_info(http_req_logid(c->req), "pricing: %s (book version %lld)", c->what,
		 (long long)jv_num(c->body, "book_version", 0));
	pricing_book_wait(c->p, (int64_t)jv_num(c->body, "book_version", 0), pricing_admin_booked, c);
}

/* A read: the one JSON text it answers. */
static void pricing_admin_read(void *arg, const struct db_result *res)
{
	struct pricing_admin_call *c = arg;
	if (res->err != RH_OK || db_rows(res) != 1 || !db_get(res, 0, 0)) {
		http_reply_err(c->req, res->err != RH_OK ? db_result_err(res) : RH_EDB, c->what, res->message);
	} else {
		http_reply_header(c->req, "Cache-Control", "no-store");
		const char *s = db_get(res, 0, 0);
		http_reply(c->req, 200, "application/json", s, strlen(s));
	}
	pricing_admin_call_free(c);
}

static bool pricing_admin_operator(struct pricing *p, struct http_req *req, struct auth_principal *who)
{
	return auth_operator_or_reply(p->deps.auth, req, who);
}

/* A path segment naming a zone: [a-z0-9][a-z0-9_-]{0,62}. */
static bool pricing_admin_zone_name_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n < 1 || n > 63 || !(islower((unsigned char)s[0]) || isdigit((unsigned char)s[0])))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '_' || s[i] == '-'))
			return false;
	return true;
}

static const char *pricing_admin_zone_or_reply(struct http_req *req, const char *param)
{
	const char *name = http_req_param(req, param);
	if (!pricing_admin_zone_name_ok(name)) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, param, "pattern",
					 "a zone's name is 1 to 63 of a-z, 0-9, _ and -, starting with a letter or digit");
		return NULL;
	}
	return name;
}

/* ------------------------------------------------------------ zones */

/* A GeoJSON Polygon or MultiPolygon of WGS 84 positions with closed rings
 * of at least four positions; false after a 400 naming the member. */
static bool pricing_admin_ring_ok(struct http_req *req, const cJSON *ring, const char *path, size_t *npts)
{
	int n = cJSON_GetArraySize(ring);
	if (!cJSON_IsArray(ring) || n < 4) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, path, "minItems",
					 "%s: a ring is an array of at least 4 positions", path);
		return false;
	}
	*npts += (size_t)n;
	if (*npts > 100000) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, path, "maxItems", "a zone has at most 100,000 positions");
		return false;
	}
	const cJSON *pt;
	int i = 0;
	cJSON_ArrayForEach(pt, ring) {
		const cJSON *lon = cJSON_GetArrayItem(pt, 0), *lat = cJSON_GetArrayItem(pt, 1);
		int np = cJSON_GetArraySize(pt);
		char p2[160];
		snprintf(p2, sizeof p2, "%s[%d]", path, i++);
		if (!cJSON_IsArray(pt) || np < 2 || np > 3 || !cJSON_IsNumber(lon) || !cJSON_IsNumber(lat)) {
			http_reply_field_problem(req, PROBLEM_VALIDATION, p2, "type",
						 "%s: a position is [longitude, latitude]", p2);
			return false;
		}
		if (lon->valuedouble < -180 || lon->valuedouble > 180 || lat->valuedouble < -90 || lat->valuedouble > 90) {
			http_reply_field_problem(req, PROBLEM_VALIDATION, p2, lon->valuedouble < -180 || lat->valuedouble < -90
									   ? "minimum"
									   : "maximum",
						 "%s: longitude within -180..180, latitude within -90..90", p2);
			return false;
		}
	}
	const cJSON *first = cJSON_GetArrayItem(ring, 0), *last = cJSON_GetArrayItem(ring, n - 1);
	if (cJSON_GetArrayItem(first, 0)->valuedouble != cJSON_GetArrayItem(last, 0)->valuedouble ||
	    cJSON_GetArrayItem(first, 1)->valuedouble != cJSON_GetArrayItem(last, 1)->valuedouble) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, path, NULL, "%s: a ring ends where it starts", path);
		return false;
	}
	return true;
}

static bool pricing_admin_polygon_ok(struct http_req *req, const cJSON *poly, const char *path, size_t *npts)
{
	if (!cJSON_IsArray(poly) || cJSON_GetArraySize(poly) < 1 || cJSON_GetArraySize(poly) > 1000) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, path, "type",
					 "%s: a polygon is an array of 1 to 1,000 rings", path);
		return false;
	}
	const cJSON *ring;
	int i = 0;
	cJSON_ArrayForEach(ring, poly) {
		char p2[140];
		snprintf(p2, sizeof p2, "%s[%d]", path, i++);
		if (!pricing_admin_ring_ok(req, ring, p2, npts))
			return false;
	}
	return true;
}

static bool pricing_admin_geometry_ok(struct http_req *req, const cJSON *g)
{
	const char *type = jv_str(g, "type");
	const cJSON *coords = cJSON_GetObjectItemCaseSensitive(g, "coordinates");
	for (const cJSON *m = g->child; m; m = m->next) {
		if (strcmp(m->string, "type") != 0 && strcmp(m->string, "coordinates") != 0 && strcmp(m->string, "bbox") != 0) {
			char p2[96];
			snprintf(p2, sizeof p2, "geometry.%.60s", m->string);
			http_reply_field_problem(req, PROBLEM_VALIDATION, p2, "additionalProperties", "unknown member %s", p2);
			return false;
		}
	}
	bool multi = type && strcmp(type, "MultiPolygon") == 0;
	if (!type || (!multi && strcmp(type, "Polygon") != 0)) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, "geometry.type", "enum",
					 "a zone is a GeoJSON Polygon or MultiPolygon");
		return false;
	}
	size_t npts = 0;
	if (!multi)
		return pricing_admin_polygon_ok(req, coords, "geometry.coordinates", &npts);
	if (!cJSON_IsArray(coords) || cJSON_GetArraySize(coords) < 1) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, "geometry.coordinates", "type",
					 "a MultiPolygon's coordinates are an array of polygons");
		return false;
	}
	const cJSON *poly;
	int i = 0;
	cJSON_ArrayForEach(poly, coords) {
		char p2[96];
		snprintf(p2, sizeof p2, "geometry.coordinates[%d]", i++);
		if (!pricing_admin_polygon_ok(req, poly, p2, &npts))
			return false;
	}
	return true;
}

static const char *const pricing_admin_zone_kinds[] = { "service_area", "zone", NULL };
static const struct jv_field pricing_admin_zone_fields[] = {
	{ "kind", JV_STRING, JV_REQUIRED, 1, 32, pricing_admin_zone_kinds },
	{ "priority", JV_INTEGER, JV_NULLABLE, -1000, 1000 },
	{ "geometry", JV_ANY_OBJECT, JV_REQUIRED },
	{ 0 }
};

static void pricing_admin_zone_put(struct http_req *req, void *ctx)
{
	struct pricing *p = ctx;
	struct auth_principal who;
	if (!pricing_admin_operator(p, req, &who))
		return;
	const char *name = pricing_admin_zone_or_reply(req, "name");
	if (!name)
		return;
	cJSON *body = http_req_json_valid_or_reply(req, pricing_admin_zone_fields);
	if (!body)
		return;
	const cJSON *g = cJSON_GetObjectItemCaseSensitive(body, "geometry");
	if (!pricing_admin_geometry_ok(req, g)) {
		cJSON_Delete(body);
		return;
	}
	char prio[16], *geo = cJSON_PrintUnformatted(g);
	snprintf(prio, sizeof prio, "%d", (int)jv_num(body, "priority", 0));
	const char *params[] = { name, jv_str(body, "kind"), prio, geo, who.id };
	db_query(p->deps.db, &pricing_admin_st_zone_put, params, pricing_admin_changed,
		 pricing_admin_call_new(p, req, "put the zone"));
	cJSON_free(geo);
	cJSON_Delete(body);
}

/* A DELETE of what the zone named by path parameter `param` has: stmt
 * takes the zone and who asks. */
static void pricing_admin_delete_of_zone(struct pricing *p, struct http_req *req, const char *param,
					 struct db_stmt *stmt,
			      const char *what)
{
	struct auth_principal who;
	if (!pricing_admin_operator(p, req, &who))
		return;
	const char *name = pricing_admin_zone_or_reply(req, param);
	if (!name)
		return;
	const char *params[] = { name, who.id };
	db_query(p->deps.db, stmt, params, pricing_admin_changed, pricing_admin_call_new(p, req, what));
}

/* A list: stmt takes nothing and answers one JSON text. */
static void pricing_admin_list(struct pricing *p, struct http_req *req, struct db_stmt *stmt, const char *what)
{
	struct auth_principal who;
	if (!pricing_admin_operator(p, req, &who))
		return;
	db_query(p->deps.db, stmt, NULL, pricing_admin_read, pricing_admin_call_new(p, req, what));
}

static void pricing_admin_zone_delete(struct http_req *req, void *ctx)
{
	pricing_admin_delete_of_zone(ctx, req, "name", &pricing_admin_st_zone_delete, "delete the zone");
}

static void pricing_admin_zones(struct http_req *req, void *ctx)
{
	pricing_admin_list(ctx, req, &pricing_admin_st_zones, "list the zones");
}

/* ------------------------------------------------------------ tariffs */

#define PA_AMOUNT(name) { name, JV_INTEGER, JV_NULLABLE, 0, 1e9 }
static const struct jv_field pricing_admin_tariff_fields[] = {
	{ "currency", JV_STRING, JV_NULLABLE, 3, 3 },
	PA_AMOUNT("base"), PA_AMOUNT("per_km"), PA_AMOUNT("per_min"), PA_AMOUNT("minimum"), PA_AMOUNT("booking_fee"),
	PA_AMOUNT("cancel_fee"), PA_AMOUNT("no_show_fee"),
	{ "waiting_free_s", JV_INTEGER, JV_NULLABLE, 0, 86400 },
	PA_AMOUNT("waiting_per_min"),
	{ 0 }
};
static const struct jv_field pricing_admin_band_fields[] = {
	{ "name", JV_STRING, JV_REQUIRED, 1, 15 },
	{ "start", JV_STRING, JV_REQUIRED, 5, 5 },
	{ "end", JV_STRING, JV_REQUIRED, 5, 5 },
	PA_AMOUNT("base"), PA_AMOUNT("per_km"), PA_AMOUNT("per_min"), PA_AMOUNT("minimum"),
	{ 0 }
};
static const char *const pricing_admin_rule_kinds[] = { "pickup_fee", "dropoff_fee", "fixed", NULL };
static const struct jv_field pricing_admin_rule_fields[] = {
	{ "kind", JV_STRING, JV_REQUIRED, 1, 16, pricing_admin_rule_kinds },
	{ "zone", JV_STRING, JV_NULLABLE, 1, 63 },
	{ "from", JV_STRING, JV_NULLABLE, 1, 63 },
	{ "to", JV_STRING, JV_NULLABLE, 1, 63 },
	{ "amount", JV_INTEGER, JV_REQUIRED, 0, 1e9 },
	{ "both_ways", JV_BOOL, JV_NULLABLE },
	{ 0 }
};

/* A jv_error inside an array member: its path prefixed with name[i]. */
static void pricing_admin_reply_item_invalid(struct http_req *req, const char *name, int i, const struct jv_error *e)
{
	char path[200];
	snprintf(path, sizeof path, "%s[%d]%s%s", name, i, e->path[0] ? "." : "", e->path);
	http_reply_field_problem(req, PROBLEM_VALIDATION, path, e->keyword, "%s: %s", path, e->message);
}

static bool pricing_admin_hhmm_ok(const char *s)
{
	return s && strlen(s) == 5 && isdigit((unsigned char)s[0]) && isdigit((unsigned char)s[1]) && s[2] == ':' &&
	       isdigit((unsigned char)s[3]) && isdigit((unsigned char)s[4]) &&
	       ((s[0] - '0') * 10 + (s[1] - '0') < 24 || strcmp(s, "24:00") == 0) && (s[3] - '0') < 6;
}

static bool pricing_admin_bands_ok(struct http_req *req, const cJSON *bands)
{
	if (!bands || cJSON_IsNull(bands))
		return true;
	if (!cJSON_IsArray(bands) || cJSON_GetArraySize(bands) > BOOK_BANDS_MAX) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, "bands", cJSON_IsArray(bands) ? "maxItems" : "type",
					 "bands is an array of at most %d time-of-day bands", BOOK_BANDS_MAX);
		return false;
	}
	const cJSON *b;
	int i = 0;
	cJSON_ArrayForEach(b, bands) {
		struct jv_error e;
		if (!cJSON_IsObject(b)) {
			snprintf(e.path, sizeof e.path, "%s", "");
			snprintf(e.keyword, sizeof e.keyword, "type");
			snprintf(e.message, sizeof e.message, "a band is an object");
			pricing_admin_reply_item_invalid(req, "bands", i, &e);
			return false;
		}
		if (!jv_check(b, pricing_admin_band_fields, &e)) {
			pricing_admin_reply_item_invalid(req, "bands", i, &e);
			return false;
		}
		const char *name = jv_str(b, "name");
		if (!pricing_admin_zone_name_ok(name)) {
			char path[64];
			snprintf(path, sizeof path, "bands[%d].name", i);
			http_reply_field_problem(req, PROBLEM_VALIDATION, path, "pattern", "%s: a-z, 0-9, _ and -", path);
			return false;
		}
		for (int k = 0; k < 2; k++) {
			const char *m = k ? "end" : "start";
			if (!pricing_admin_hhmm_ok(jv_str(b, m))) {
				char path[64];
				snprintf(path, sizeof path, "bands[%d].%s", i, m);
				http_reply_field_problem(req, PROBLEM_VALIDATION, path, "pattern", "%s: a time of day, HH:MM", path);
				return false;
			}
		}
		i++;
	}
	return true;
}

static bool pricing_admin_rules_ok(struct http_req *req, const cJSON *rules)
{
	if (!rules || cJSON_IsNull(rules))
		return true;
	if (!cJSON_IsArray(rules) || cJSON_GetArraySize(rules) > BOOK_RULES_MAX) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, "zone_rules", cJSON_IsArray(rules) ? "maxItems" : "type",
					 "zone_rules is an array of at most %d rules", BOOK_RULES_MAX);
		return false;
	}
	const cJSON *r;
	int i = 0;
	cJSON_ArrayForEach(r, rules) {
		struct jv_error e;
		if (!cJSON_IsObject(r) || !jv_check(r, pricing_admin_rule_fields, &e)) {
			if (!cJSON_IsObject(r)) {
				e.path[0] = '\0';
				snprintf(e.keyword, sizeof e.keyword, "type");
				snprintf(e.message, sizeof e.message, "a zone rule is an object");
			}
			pricing_admin_reply_item_invalid(req, "zone_rules", i, &e);
			return false;
		}
		bool fixed = strcmp(jv_str(r, "kind"), "fixed") == 0;
		const char *need[2] = { fixed ? "from" : "zone", fixed ? "to" : NULL };
		const char *not = fixed ? "zone" : "from";
		for (int k = 0; k < 2 && need[k]; k++) {
			if (!pricing_admin_zone_name_ok(jv_str(r, need[k]))) {
				char path[64];
				snprintf(path, sizeof path, "zone_rules[%d].%s", i, need[k]);
				http_reply_field_problem(req, PROBLEM_VALIDATION, path, jv_has(r, need[k]) ? "pattern" : "required",
							 "%s: a rule of kind %s names its zone%s", path, jv_str(r, "kind"),
							 fixed ? "s (from, to)" : " (zone)");
				return false;
			}
		}
		if (jv_has(r, not) || (!fixed && (jv_has(r, "to") || jv_has(r, "both_ways")))) {
			char path[64];
			snprintf(path, sizeof path, "zone_rules[%d].%s", i, jv_has(r, not) ? not : jv_has(r, "to") ? "to" : "both_ways");
			http_reply_field_problem(req, PROBLEM_VALIDATION, path, "additionalProperties",
						 "%s: not a member of a rule of kind %s", path, jv_str(r, "kind"));
			return false;
		}
		i++;
	}
	return true;
}

static void pricing_admin_tariff_put(struct http_req *req, void *ctx)
{
	struct pricing *p = ctx;
	struct auth_principal who;
	if (!pricing_admin_operator(p, req, &who))
		return;
	const char *vt = http_req_param(req, "vehicle_type");
	int vehicle = tariff_find(p->deps.tariffs, p->deps.ntariffs, vt);
	if (vehicle < 0) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, "vehicle_type", "enum",
					 "unknown vehicle_type \"%.40s\": the vehicle types are the configuration's [tariff.<type>] sections",
					 vt ? vt : "");
		return;
	}
	cJSON *body = http_req_json_or_reply(req);
	if (!body)
		return;
	cJSON *bands = cJSON_DetachItemFromObjectCaseSensitive(body, "bands");
	cJSON *rules = cJSON_DetachItemFromObjectCaseSensitive(body, "zone_rules");
	struct jv_error e;
	bool ok = true;
	if (!jv_check(body, pricing_admin_tariff_fields, &e)) {
		http_reply_invalid(req, &e);
		ok = false;
	}
	const char *cur = jv_str(body, "currency");
	if (ok && cur && !(isupper((unsigned char)cur[0]) && isupper((unsigned char)cur[1]) && isupper((unsigned char)cur[2]))) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, "currency", "pattern",
					 "currency is three capital letters (ISO 4217)");
		ok = false;
	}
	ok = ok && pricing_admin_bands_ok(req, bands) && pricing_admin_rules_ok(req, rules);
	if (!ok) {
		cJSON_Delete(bands);
		cJSON_Delete(rules);
		cJSON_Delete(body);
		return;
	}
	/* what the body leaves out stays as the current version has it */
	const struct book_tariff *t = book_tariff(p->book, vt, 0);
	const struct {
		const char *name;
		int64_t v;
	} keep[] = { { "base", t ? t->base : 0 },
		     { "per_km", t ? t->per_km : 0 },
		     { "per_min", t ? t->per_min : 0 },
		     { "minimum", t ? t->minimum : 0 },
		     { "booking_fee", t ? t->booking_fee : 0 },
		     { "cancel_fee", t ? t->cancel_fee : 0 },
		     { "no_show_fee", t ? t->no_show_fee : 0 },
		     { "waiting_free_s", t ? t->waiting_free_s : 0 },
		     { "waiting_per_min", t ? t->waiting_per_min : 0 } };
	for (size_t k = 0; k < sizeof keep / sizeof *keep; k++)
		if (!jv_has(body, keep[k].name)) {
			cJSON_DeleteItemFromObjectCaseSensitive(body, keep[k].name);
			cJSON_AddNumberToObject(body, keep[k].name, (double)keep[k].v);
		}
	if (!cur) {
		cJSON_DeleteItemFromObjectCaseSensitive(body, "currency");
		cJSON_AddStringToObject(body, "currency", t ? t->currency : p->deps.tariffs[vehicle].currency);
	}
	cJSON_AddItemToObject(body, "bands", bands && !cJSON_IsNull(bands) ? bands : cJSON_CreateArray());
	cJSON_AddItemToObject(body, "zone_rules", rules && !cJSON_IsNull(rules) ? rules : cJSON_CreateArray());
	if (bands && cJSON_IsNull(bands))
		cJSON_Delete(bands);
	if (rules && cJSON_IsNull(rules))
		cJSON_Delete(rules);
	char *json = cJSON_PrintUnformatted(body);
	const char *params[] = { vt, json, who.id };
	db_query(p->deps.db, &pricing_admin_st_tariff_put, params, pricing_admin_changed,
		 pricing_admin_call_new(p, req, "write the tariff"));
	cJSON_free(json);
	cJSON_Delete(body);
}

static void pricing_admin_tariffs(struct http_req *req, void *ctx)
{
	struct pricing *p = ctx;
	struct auth_principal who;
	if (!pricing_admin_operator(p, req, &who))
		return;
	const char *vt = http_req_param(req, "vehicle_type");
	if (vt && tariff_find(p->deps.tariffs, p->deps.ntariffs, vt) < 0) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, "vehicle_type", "enum", "unknown vehicle_type \"%.40s\"", vt);
		return;
	}
	const char *params[] = { vt };
	db_query(p->deps.db, &pricing_admin_st_tariffs, params, pricing_admin_read,
		 pricing_admin_call_new(p, req, "list the tariffs"));
}

/* ------------------------------------------------------------ surge overrides */

static const char *const pricing_admin_override_modes[] = { "cap", "freeze", "disable", NULL };
static const struct jv_field pricing_admin_override_fields[] = {
	{ "mode", JV_STRING, JV_REQUIRED, 1, 16, pricing_admin_override_modes },
	{ "cap", JV_NUMBER, JV_NULLABLE, 1, 10 },
	{ "reason", JV_STRING, JV_NULLABLE, 1, 200 },
	{ 0 }
};

static void pricing_admin_override_put(struct http_req *req, void *ctx)
{
	struct pricing *p = ctx;
	struct auth_principal who;
	if (!pricing_admin_operator(p, req, &who))
		return;
	const char *zone = pricing_admin_zone_or_reply(req, "zone");
	if (!zone)
		return;
	cJSON *body = http_req_json_valid_or_reply(req, pricing_admin_override_fields);
	if (!body)
		return;
	const char *mode = jv_str(body, "mode");
	bool cap = strcmp(mode, "cap") == 0;
	if (cap != jv_has(body, "cap")) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, "cap", cap ? "required" : "additionalProperties",
					 cap ? "mode cap needs cap, the highest multiplier (1 to 10)"
					     : "cap goes with mode cap only");
		cJSON_Delete(body);
		return;
	}
	char capv[32] = "";
	if (cap)
		snprintf(capv, sizeof capv, "%.2f", jv_num(body, "cap", 1));
	const char *params[] = { zone, mode, cap ? capv : NULL, jv_str(body, "reason"), who.id };
	db_query(p->deps.db, &pricing_admin_st_override_put, params, pricing_admin_changed,
		 pricing_admin_call_new(p, req, "set the surge override"));
	cJSON_Delete(body);
}

static void pricing_admin_override_delete(struct http_req *req, void *ctx)
{
	pricing_admin_delete_of_zone(ctx, req, "zone", &pricing_admin_st_override_delete, "lift the surge override");
}

static void pricing_admin_overrides(struct http_req *req, void *ctx)
{
	pricing_admin_list(ctx, req, &pricing_admin_st_overrides, "list the surge overrides");
}

static void pricing_admin_log(struct http_req *req, void *ctx)
{
	struct pricing *p = ctx;
	struct auth_principal who;
	int64_t limit;
	if (!pricing_admin_operator(p, req, &who) || !http_query_integer_or_reply(req, "limit", 1, 1000, 100, false, &limit))
		return;
	char lim[24];
	snprintf(lim, sizeof lim, "%lld", (long long)limit);
	const char *params[] = { lim };
	db_query(p->deps.db, &pricing_admin_st_log, params, pricing_admin_read,
		 pricing_admin_call_new(p, req, "read the pricing log"));
}

static const struct http_route pricing_admin_routes[] = {
	{ HTTP_GET, "/v1/admin/zones", pricing_admin_zones, 0 },
	{ HTTP_PUT, "/v1/admin/zones/{name}", pricing_admin_zone_put, 0 },
	{ HTTP_DELETE, "/v1/admin/zones/{name}", pricing_admin_zone_delete, 0 },
	{ HTTP_GET, "/v1/admin/tariffs", pricing_admin_tariffs, 0 },
	{ HTTP_GET, "/v1/admin/tariffs/{vehicle_type}", pricing_admin_tariffs, 0 },
	{ HTTP_POST, "/v1/admin/tariffs/{vehicle_type}", pricing_admin_tariff_put, 0 },
	{ HTTP_GET, "/v1/admin/surge/overrides", pricing_admin_overrides, 0 },
	{ HTTP_PUT, "/v1/admin/surge/overrides/{zone}", pricing_admin_override_put, 0 },
	{ HTTP_DELETE, "/v1/admin/surge/overrides/{zone}", pricing_admin_override_delete, 0 },
	{ HTTP_GET, "/v1/admin/pricing/log", pricing_admin_log, 0 },
	{ 0 },
};

void pricing_admin_api_init(struct pricing *p)
{
	if (!p->deps.db || !p->deps.http)
		return;
	struct db_stmt *st[] = { &pricing_admin_st_zone_put,	  &pricing_admin_st_zone_delete,
				 &pricing_admin_st_zones,	  &pricing_admin_st_tariff_put,
				 &pricing_admin_st_tariffs,	  &pricing_admin_st_override_put,
				 &pricing_admin_st_override_delete, &pricing_admin_st_overrides,
				 &pricing_admin_st_log };
	for (size_t i = 0; i < sizeof st / sizeof *st; i++)
		db_register(p->deps.db, st[i]);
	http_server_add_routes(p->deps.http, pricing_admin_routes, p);
}
