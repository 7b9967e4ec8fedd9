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

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

/* the row's columns by position: R_ID, R_STATE, ... R_DRATINGS */
enum {
#define TRIP_ROW(c, name, sql) R_##c,
#include "trip/trip_row.def"
#undef TRIP_ROW
	R_N
};

/* v, moved from its parent (the row, the estimate) to o under name, unless
 * v is absent or null. */
static void put(cJSON *o, const char *name, cJSON *parent, cJSON *v)
{
	if (v && !cJSON_IsNull(v))
		cJSON_AddItemToObject(o, name, cJSON_DetachItemViaPointer(parent, v));
}

/* jsonb_strip_nulls(): object members whose value is null go, at every depth. */
static void strip_nulls(cJSON *v)
{
	cJSON *c = v ? v->child : NULL;
	while (c) {
		cJSON *next = c->next;
		if (cJSON_IsObject(v) && cJSON_IsNull(c))
			cJSON_Delete(cJSON_DetachItemViaPointer(v, c));
		else
			strip_nulls(c);
		c = next;
	}
}

static int jsonb_key_cmp(const void *a, const void *b)
{
	const char *x = (*(const cJSON *const *)a)->string, *y = (*(const cJSON *const *)b)->string;
	size_t lx = strlen(x), ly = strlen(y);
	if (lx != ly)
		return lx < ly ? -1 : 1;
	return memcmp(x, y, lx);
}

/* Every object's members in jsonb's order, at every depth. */
static void sort_keys(cJSON *v)
{
	if (!v)
		return;
	for (cJSON *c = v->child; c; c = c->next)
		sort_keys(c);
	if (!cJSON_IsObject(v) || !v->child)
		return;
	int n = cJSON_GetArraySize(v);
	cJSON **kids = rh_calloc((size_t)n, sizeof *kids);
	int i = 0;
	for (cJSON *c = v->child; c; c = c->next)
		kids[i++] = c;
	qsort(kids, (size_t)n, sizeof *kids, jsonb_key_cmp);
	for (i = 0; i < n; i++) {
		kids[i]->next = i + 1 < n ? kids[i + 1] : NULL;
		kids[i]->prev = i > 0 ? kids[i - 1] : kids[n - 1]; /* cJSON: the first's prev is the last */
	}
	v->child = kids[0];
	rh_free(kids);
}

static cJSON *point(cJSON *row, cJSON *const *r, int lat, int lng, int addr)
{
	cJSON *p = cJSON_CreateObject();
	put(p, "lat", row, r[lat]);
	put(p, "lng", row, r[lng]);
	put(p, "address", row, r[addr]);
	return p;
}

bool trip_view_render(cJSON *body)
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
	put(body, "id", row, r[R_ID]);
	put(body, "state", row, r[R_STATE]);
	put(body, "version", row, r[R_VERSION]);
	put(body, "rider_id", row, r[R_RIDER]);
	put(body, "vehicle_type", row, r[R_VEHICLE]);
	cJSON_AddItemToObject(body, "pickup", point(row, r, R_PLAT, R_PLNG, R_PADDR));
	cJSON_AddItemToObject(body, "dropoff", point(row, r, R_DLAT, R_DLNG, R_DADDR));
	if (!cJSON_IsNull(r[R_DID])) {
		cJSON *d = cJSON_AddObjectToObject(body, "driver");
		put(d, "id", row, r[R_DID]);
		put(d, "name", row, r[R_DNAME]);
		cJSON *v = cJSON_AddObjectToObject(d, "vehicle");
		put(v, "type", row, r[R_DTYPE]);
		put(v, "make", row, r[R_DMAKE]);
		put(v, "model", row, r[R_DMODEL]);
		put(v, "color", row, r[R_DCOLOR]);
		put(v, "plate", row, r[R_DPLATE]);
		if (!cJSON_IsNull(r[R_DRATING])) {
			cJSON *g = cJSON_AddObjectToObject(d, "rating");
			put(g, "average", row, r[R_DRATING]);
			put(g, "count", row, r[R_DRATINGS]);
		}
	}
	/* the estimate's distance, duration and method show as "estimate", the
	 * rest of the tariff as quoted as the fare's breakdown */
	cJSON *est = cJSON_IsObject(r[R_ESTIMATE]) ? cJSON_DetachItemViaPointer(row, r[R_ESTIMATE]) : NULL;
	cJSON *e = cJSON_CreateObject();
	put(e, "distance_m", est, cJSON_GetObjectItemCaseSensitive(est, "distance_m"));
	put(e, "duration_s", est, cJSON_GetObjectItemCaseSensitive(est, "duration_s"));
	put(e, "method", est, cJSON_GetObjectItemCaseSensitive(est, "method"));
	strip_nulls(e);
	cJSON_DeleteItemFromObjectCaseSensitive(est, "per_km");
	cJSON_DeleteItemFromObjectCaseSensitive(est, "per_min");
	cJSON_DeleteItemFromObjectCaseSensitive(est, "distance_m"); /* (left when null) */
	cJSON_DeleteItemFromObjectCaseSensitive(est, "duration_s");
	cJSON_DeleteItemFromObjectCaseSensitive(est, "method");
	strip_nulls(est);
	cJSON *fare = cJSON_AddObjectToObject(body, "fare");
	put(fare, "currency", row, r[R_CURRENCY]);
	put(fare, "quoted", row, r[R_QUOTED]);
	put(fare, "final", row, r[R_FINAL]);
	put(fare, "metered", row, r[R_METERED]);
	put(fare, "quote_id", row, r[R_QUOTE_ID]);
	if (est)
		cJSON_AddItemToObject(fare, "breakdown", est);
	put(fare, "needs_review", row, r[R_REVIEW]);
	cJSON_AddItemToObject(body, "estimate", e);
	if (!cJSON_IsNull(r[R_MDIST])) {
		cJSON *m = cJSON_AddObjectToObject(body, "metered");
		put(m, "distance_m", row, r[R_MDIST]);
		put(m, "duration_s", row, r[R_MDUR]);
	}
	if (strcmp(r[R_STATE]->valuestring, "CANCELLED") == 0) {
		cJSON *c = cJSON_AddObjectToObject(body, "cancellation");
		put(c, "by", row, r[R_CBY]);
		put(c, "reason", row, r[R_CREASON]);
		put(c, "fee", row, r[R_CFEE]);
	}
	put(body, "requested_at", row, r[R_REQUESTED]);
	put(body, "matched_at", row, r[R_MATCHED]);
	put(body, "arrived_at", row, r[R_ARRIVED]);
	put(body, "started_at", row, r[R_STARTED]);
	put(body, "completed_at", row, r[R_COMPLETED]);
	put(body, "cancelled_at", row, r[R_CANCELLED]);
	cJSON_Delete(row);
	sort_keys(body);
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
