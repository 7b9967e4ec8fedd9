/* The trip as the API shows it, built from the row the database gives
 * (trip_view(), sql/functions/30_trip_view.sql: {"trip_row": [...]}, its
 * columns by position as include/trip/trip_row.def lists them).
 *
 * Building the nested view in the database as jsonb cost a third of a
 * MATCHED transition's work there; here it is a few allocations. The
 * object is the one the old SQL view gave, member for member: nulls are
 * left out (as jsonb_strip_nulls() did), and members come in jsonb's order
 * (shorter keys first, then bytewise), so a client sees what it saw. */
#include "trip/trip.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "trip_internal.h"

/* the row's columns by position: R_ID, R_STATE, ... R_DRATINGS */
enum {
#define TRIP_ROW(c, name, sql) R_##c,
#include "trip/trip_row.def"
#undef TRIP_ROW
	R_N
};

/* v, moved from its parent (the row, the estimate) to o under name, unless
 * v is absent or null. */
static void trip_view_put(cJSON *o, const char *name, cJSON *parent, cJSON *v)
{
	if (v && !cJSON_IsNull(v))
		cJSON_AddItemToObject(o, name, cJSON_DetachItemViaPointer(parent, v));
}

/* jsonb_strip_nulls(): object members whose value is null go, at every depth. */
static void trip_view_strip_nulls(cJSON *v)
{
	cJSON *c = v ? v->child : NULL;
	while (c) {
		cJSON *next = c->next;
		if (cJSON_IsObject(v) && cJSON_IsNull(c))
			cJSON_Delete(cJSON_DetachItemViaPointer(v, c));
		else
			trip_view_strip_nulls(c);
		c = next;
	}
}

static int trip_view_key_cmp(const void *a, const void *b)
{
	const char *x = (*(const cJSON *const *)a)->string, *y = (*(const cJSON *const *)b)->string;
	size_t lx = strlen(x), ly = strlen(y);
	if (lx != ly)
		return lx < ly ? -1 : 1;
	return memcmp(x, y, lx);
}

/* Every object's members in jsonb's order, at every depth. */
static void trip_view_sort_keys(cJSON *v)
{
	if (!v)
		return;
	for (cJSON *c = v->child; c; c = c->next)
		trip_view_sort_keys(c);
	if (!cJSON_IsObject(v) || !v->child)
		return;
	int n = cJSON_GetArraySize(v);
	cJSON **kids = rh_calloc((size_t)n, sizeof *kids);
	int i = 0;
	for (cJSON *c = v->child; c; c = c->next)
		kids[i++] = c;
	qsort(kids, (size_t)n, sizeof *kids, trip_view_key_cmp);
	for (i = 0; i < n; i++) {
		kids[i]->next = i + 1 < n ? kids[i + 1] : NULL;
		kids[i]->prev = i > 0 ? kids[i - 1] : kids[n - 1]; /* cJSON: the first's prev is the last */
	}
	v->child = kids[0];
	rh_free(kids);
}

static cJSON *trip_view_point(cJSON *row, cJSON *const *r, int lat, int lng, int addr)
{
	cJSON *p = cJSON_CreateObject();
	trip_view_put(p, "lat", row, r[lat]);
	trip_view_put(p, "lng", row, r[lng]);
	trip_view_put(p, "address", row, r[addr]);
	return p;
}

/* v into o under name, unless absent or null: moved out of its parent when
 * take, else copied (the row stays as it is). */
static void trip_view_member(cJSON *o, const char *name, cJSON *parent, cJSON *v, bool take)
{
	if (take)
		trip_view_put(o, name, parent, v);
	else if (v && !cJSON_IsNull(v))
		cJSON_AddItemToObject(o, name, cJSON_Duplicate(v, 1));
}

/* The trip's driver: who, in what, rated how. */
static cJSON *trip_view_driver(cJSON *row, cJSON *const *r, bool take)
{
	cJSON *d = cJSON_CreateObject();
	trip_view_member(d, "id", row, r[R_DID], take);
	trip_view_member(d, "name", row, r[R_DNAME], take);
	cJSON *v = cJSON_AddObjectToObject(d, "vehicle");
	trip_view_member(v, "type", row, r[R_DTYPE], take);
	trip_view_member(v, "make", row, r[R_DMAKE], take);
	trip_view_member(v, "model", row, r[R_DMODEL], take);
	trip_view_member(v, "color", row, r[R_DCOLOR], take);
	trip_view_member(v, "plate", row, r[R_DPLATE], take);
	if (!cJSON_IsNull(r[R_DRATING])) {
		cJSON *g = cJSON_AddObjectToObject(d, "rating");
		trip_view_member(g, "average", row, r[R_DRATING], take);
		trip_view_member(g, "count", row, r[R_DRATINGS], take);
	}
	return d;
}

/* Builds the view in place of body's trip_row; body's other members stay. A
 * body without trip_row is left as it is; false: a malformed row. */
static bool trip_view_render(cJSON *body)
{
	cJSON *row = cJSON_DetachItemFromObjectCaseSensitive(body, "trip_row");
	if (!row)
		return true; /* not a trip (a refusal): as it is */
	cJSON *r[R_N];
	int n = 0;
	for (cJSON *c = cJSON_IsArray(row) ? row->child : NULL; c; c = c->next, n++)
		if (n < R_N)
			r[n] = c;
	if (n != R_N || !cJSON_IsString(r[R_ID]) || !cJSON_IsString(r[R_STATE])) {
		cJSON_Delete(row);
		return false;
	}
	trip_view_put(body, "id", row, r[R_ID]);
	trip_view_put(body, "state", row, r[R_STATE]);
	trip_view_put(body, "version", row, r[R_VERSION]);
	trip_view_put(body, "rider_id", row, r[R_RIDER]);
	trip_view_put(body, "vehicle_type", row, r[R_VEHICLE]);
	cJSON_AddItemToObject(body, "pickup", trip_view_point(row, r, R_PLAT, R_PLNG, R_PADDR));
	cJSON_AddItemToObject(body, "dropoff", trip_view_point(row, r, R_DLAT, R_DLNG, R_DADDR));
	if (!cJSON_IsNull(r[R_DID]))
		cJSON_AddItemToObject(body, "driver", trip_view_driver(row, r, true));
	/* the estimate's distance, duration and method show as "estimate", the
	 * rest of the tariff as quoted as the fare's breakdown */
	cJSON *est = cJSON_IsObject(r[R_ESTIMATE]) ? cJSON_DetachItemViaPointer(row, r[R_ESTIMATE]) : NULL;
	cJSON *e = cJSON_CreateObject();
	trip_view_put(e, "distance_m", est, cJSON_GetObjectItemCaseSensitive(est, "distance_m"));
	trip_view_put(e, "duration_s", est, cJSON_GetObjectItemCaseSensitive(est, "duration_s"));
	trip_view_put(e, "method", est, cJSON_GetObjectItemCaseSensitive(est, "method"));
	trip_view_strip_nulls(e);
	cJSON_DeleteItemFromObjectCaseSensitive(est, "per_km");
	cJSON_DeleteItemFromObjectCaseSensitive(est, "per_min");
	cJSON_DeleteItemFromObjectCaseSensitive(est, "distance_m"); /* (left when null) */
	cJSON_DeleteItemFromObjectCaseSensitive(est, "duration_s");
	cJSON_DeleteItemFromObjectCaseSensitive(est, "method");
	trip_view_strip_nulls(est);
	cJSON *fare = cJSON_AddObjectToObject(body, "fare");
	trip_view_put(fare, "currency", row, r[R_CURRENCY]);
	trip_view_put(fare, "quoted", row, r[R_QUOTED]);
	trip_view_put(fare, "final", row, r[R_FINAL]);
	trip_view_put(fare, "metered", row, r[R_METERED]);
	trip_view_put(fare, "quote_id", row, r[R_QUOTE_ID]);
	if (est)
		cJSON_AddItemToObject(fare, "breakdown", est);
	trip_view_put(fare, "needs_review", row, r[R_REVIEW]);
	cJSON_AddItemToObject(body, "estimate", e);
	if (!cJSON_IsNull(r[R_MDIST])) {
		cJSON *m = cJSON_AddObjectToObject(body, "metered");
		trip_view_put(m, "distance_m", row, r[R_MDIST]);
		trip_view_put(m, "duration_s", row, r[R_MDUR]);
	}
	if (strcmp(r[R_STATE]->valuestring, "CANCELLED") == 0) {
		cJSON *c = cJSON_AddObjectToObject(body, "cancellation");
		trip_view_put(c, "by", row, r[R_CBY]);
		trip_view_put(c, "reason", row, r[R_CREASON]);
		trip_view_put(c, "fee", row, r[R_CFEE]);
	}
	trip_view_put(body, "requested_at", row, r[R_REQUESTED]);
	trip_view_put(body, "scheduled_at", row, r[R_SCHEDULED]);
	trip_view_put(body, "search_started_at", row, r[R_SEARCH_STARTED]);
	trip_view_put(body, "matched_at", row, r[R_MATCHED]);
	trip_view_put(body, "arrived_at", row, r[R_ARRIVED]);
	trip_view_put(body, "started_at", row, r[R_STARTED]);
	trip_view_put(body, "completed_at", row, r[R_COMPLETED]);
	trip_view_put(body, "cancelled_at", row, r[R_CANCELLED]);
	cJSON_Delete(row);
	trip_view_sort_keys(body);
	return true;
}

char *trip_view_text(const char *json)
{
	cJSON *b = cJSON_Parse(json);
	if (!b)
		return NULL;
	char *out = trip_view_render(b) ? cJSON_PrintUnformatted(b) : NULL;
	cJSON_Delete(b);
	return out;
}

/* ------------------------------------------------------------ typed */

/* The row, as the database gave it: {"trip_row": [...]}. */
struct trip_row {
	cJSON *body;
};

static const char *trip_row_str(cJSON *const *r, int i)
{
	return cJSON_IsString(r[i]) ? r[i]->valuestring : NULL;
}

static double trip_row_num(cJSON *const *r, int i)
{
	return cJSON_IsNumber(r[i]) ? r[i]->valuedouble : 0;
}

/* The typed members of t from the row's columns; false when one is missing
 * or malformed. */
static bool trip_from_columns(cJSON *const *r, struct trip *t)
{
	const char *id = trip_row_str(r, R_ID), *rider = trip_row_str(r, R_RIDER), *vt = trip_row_str(r, R_VEHICLE);
	int st = trip_state_parse(trip_row_str(r, R_STATE));
	if (!id || !rider || !vt || st < 0 || !uuid_parse(id, &t->id) || !uuid_parse(rider, &t->rider) ||
	    !cJSON_IsNumber(r[R_VERSION]) || !cJSON_IsNumber(r[R_PLAT]) || !cJSON_IsNumber(r[R_DLAT]))
		return false;
	t->state = (enum trip_state)st;
	t->version = (int64_t)r[R_VERSION]->valuedouble;
	snprintf(t->vehicle_type, sizeof t->vehicle_type, "%s", vt);
	t->pickup_lat = trip_row_num(r, R_PLAT);
	t->pickup_lng = trip_row_num(r, R_PLNG);
	t->dropoff_lat = trip_row_num(r, R_DLAT);
	t->dropoff_lng = trip_row_num(r, R_DLNG);
	const char *cur = trip_row_str(r, R_CURRENCY);
	snprintf(t->currency, sizeof t->currency, "%s", cur ? cur : "XXX");
	t->fare_quoted = (int64_t)trip_row_num(r, R_QUOTED);
	const char *req = trip_row_str(r, R_REQUESTED), *started = trip_row_str(r, R_STARTED);
	const char *sched = trip_row_str(r, R_SCHEDULED), *search = trip_row_str(r, R_SEARCH_STARTED);
	if (req)
		rh_parse_rfc3339(req, &t->requested_at);
	if (started)
		rh_parse_rfc3339(started, &t->started_at);
	if (sched)
		rh_parse_rfc3339(sched, &t->scheduled_at);
	if (search)
		rh_parse_rfc3339(search, &t->search_started_at);
	t->booked = cJSON_IsTrue(r[R_BOOKED]);
	const char *d = trip_row_str(r, R_DID);
	t->has_driver = d && uuid_parse(d, &t->driver);
	return !d || t->has_driver;
}

/* Takes body ({"trip_row": [...], ...}) into *out. */
static bool trip_from_body(cJSON *body, struct trip *out)
{
	memset(out, 0, sizeof *out);
	cJSON *row = cJSON_GetObjectItemCaseSensitive(body, "trip_row");
	cJSON *r[R_N];
	int n = 0;
	for (cJSON *c = cJSON_IsArray(row) ? row->child : NULL; c; c = c->next, n++)
		if (n < R_N)
			r[n] = c;
	if (n != R_N || !trip_from_columns(r, out)) {
		cJSON_Delete(body);
		return false;
	}
	struct trip_row *tr = RH_NEW(struct trip_row);
	tr->body = body;
	out->row = tr;
	return true;
}

bool trip_from_row_json(const char *json, struct trip *out)
{
	cJSON *b = cJSON_Parse(json);
	return b && trip_from_body(b, out);
}

bool trip_from_answer(cJSON *body, struct trip *out)
{
	cJSON *row = cJSON_DetachItemFromObjectCaseSensitive(body, "trip_row");
	if (!row)
		return false;
	cJSON *b = cJSON_CreateObject();
	cJSON_AddItemToObject(b, "trip_row", row);
	return trip_from_body(b, out);
}

void trip_fini(struct trip *t)
{
	if (!t || !t->row)
		return;
	cJSON_Delete(t->row->body);
	rh_free((void *)t->row);
	t->row = NULL;
}

cJSON *trip_view_driver_json(const struct trip *t)
{
	cJSON *row = t->row ? cJSON_GetObjectItemCaseSensitive(t->row->body, "trip_row") : NULL;
	cJSON *r[R_N];
	int n = 0;
	for (cJSON *c = cJSON_IsArray(row) ? row->child : NULL; c; c = c->next, n++)
		if (n < R_N)
			r[n] = c;
	if (n != R_N || cJSON_IsNull(r[R_DID]))
		return NULL;
	cJSON *d = trip_view_driver(row, r, false);
	trip_view_sort_keys(d);
	return d;
}

cJSON *trip_view_take(struct trip *t)
{
	if (!t->row)
		return NULL;
	cJSON *b = t->row->body;
	rh_free((void *)t->row);
	t->row = NULL;
	if (!trip_view_render(b)) {
		cJSON_Delete(b);
		return NULL;
	}
	return b;
}

cJSON *trip_view_json(const struct trip *t)
{
	if (!t->row)
		return NULL;
	cJSON *b = cJSON_Duplicate(t->row->body, 1);
	if (!trip_view_render(b)) {
		cJSON_Delete(b);
		return NULL;
	}
	return b;
}
