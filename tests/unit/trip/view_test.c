#include "../unit.h"

#include <cjson/cJSON.h>
#include <stdlib.h>

#include "trip/trip.h"

/* A row as trip_view() gives it (its columns: include/trip/trip_row.def): a
 * CANCELLED trip, no driver, no addresses, nulls where the trip has nothing. */
#define ROW_CANCELLED                                                                                         \
	"[\"7c2a3c1e-0000-4000-8000-000000000001\",\"CANCELLED\",3,\"7c2a3c1e-0000-4000-8000-000000000002\"," \
	"\"standard\",52.0907123,5.1214988,null,52.1,5.13,null,\"EUR\",1234,null,null,null,"                  \
	"{\"base\":300,\"per_km\":100,\"per_min\":20,\"distance_m\":6000,\"duration_s\":700,"                 \
	"\"method\":\"straight_line\",\"total\":1234,\"x\":null},false,null,null,\"rider\",\"changed_mind\",0," \
	"\"2026-12-02T05:00:00.123Z\",null,null,null,null,\"2026-12-02T05:01:00.000Z\","                       \
	"null,null,null,null,null,null,null,null,null,null,null,false]"

static char *render(const char *json)
{
	char *out = trip_view_text(json);
	char *copy = out ? strdup(out) : NULL;
	cJSON_free(out);
	return copy;
}

UNIT_TEST(trip_view_renders_the_row_in_jsonb_order_without_nulls)
{
	char *out = render("{\"trip_row\":" ROW_CANCELLED ",\"repeated\":true}");
	REQUIRE(out != NULL);
	CHECK_EQ_STR(out,
		     "{\"id\":\"7c2a3c1e-0000-4000-8000-000000000001\",\"fare\":{\"quoted\":1234,\"currency\":\"EUR\","
		     "\"breakdown\":{\"base\":300,\"total\":1234},\"needs_review\":false},\"state\":\"CANCELLED\","
		     "\"pickup\":{\"lat\":52.0907123,\"lng\":5.1214988},\"dropoff\":{\"lat\":52.1,\"lng\":5.13},"
		     "\"version\":3,\"estimate\":{\"method\":\"straight_line\",\"distance_m\":6000,\"duration_s\":700},"
		     "\"repeated\":true,\"rider_id\":\"7c2a3c1e-0000-4000-8000-000000000002\","
		     "\"cancellation\":{\"by\":\"rider\",\"fee\":0,\"reason\":\"changed_mind\"},"
		     "\"cancelled_at\":\"2026-12-02T05:01:00.000Z\",\"requested_at\":\"2026-12-02T05:00:00.123Z\","
		     "\"vehicle_type\":\"standard\"}");
	free(out);
}

UNIT_TEST(trip_view_leaves_other_bodies_and_refuses_malformed_rows)
{
	char *out = render("{\"reason\":\"not_found\"}");
	REQUIRE(out != NULL);
	CHECK_EQ_STR(out, "{\"reason\":\"not_found\"}");
	free(out);
	/* too short, too long, not an array, no id: refused, not read past */
	const char *bad[] = { "{\"trip_row\":[\"a\",\"SEARCHING\"]}", "{\"trip_row\":{}}", "{\"trip_row\":null}",
			      "{\"trip_row\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,"
			      "27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42]}",
			      "{\"trip_row\":[null,null,null,null,null,null,null,null,null,null,null,null,null,null,"
			      "null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,"
			      "null,null,null,null,null,null,null,null,null,null,null]}",
			      "not json" };
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		char *o = trip_view_text(bad[i]);
		CHECK(o == NULL);
		cJSON_free(o);
	}
	/* a good row with one column more than the daemon knows */
	char *o = trip_view_text("{\"trip_row\":" ROW_CANCELLED "}");
	CHECK(o != NULL);
	cJSON_free(o);
	static const char longer[] = "{\"trip_row\":[\"7c2a3c1e-0000-4000-8000-000000000001\",\"CANCELLED\",3,"
		"\"r\",\"standard\",1,2,null,3,4,null,\"EUR\",1,null,null,null,{},false,null,null,null,null,0,"
		"\"t\",null,null,null,null,\"t\",null,null,null,null,null,null,null,null,null,null,null,false,\"extra\"]}";
	o = trip_view_text(longer);
	CHECK(o == NULL);
	cJSON_free(o);
}
