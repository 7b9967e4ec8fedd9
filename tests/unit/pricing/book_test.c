/* The pricing book alone: parsing what pricing_book_json() answers,
 * polygons (holes, priorities, the service area, cells touching a zone),
 * time-of-day bands and the fare of zone rules. */
#include "../unit.h"

#include <stdlib.h>

#include "core/settings.h"
#include "geo/hexgrid.h"
#include "pricing/book.h"
#include "pricing/pricing.h"

/* A city: a service area with a hole (a lake), an airport (priority 10)
 * inside a borough (priority 0), an override on the airport; two versions
 * of the standard tariff, the current with a night band and zone rules. */
static const char *BOOK_JSON =
	"{\"version\": 9,"
	" \"zones\": ["
	"  {\"id\": 1, \"name\": \"city\", \"kind\": \"service_area\", \"priority\": 0, \"override\": null,"
	"   \"geometry\": {\"type\": \"MultiPolygon\", \"coordinates\": [[[[0,0],[10,0],[10,10],[0,10],[0,0]],"
	"                                                              [[4,4],[6,4],[6,6],[4,6],[4,4]]]]}},"
	"  {\"id\": 2, \"name\": \"borough\", \"kind\": \"zone\", \"priority\": 0, \"override\": null,"
	"   \"geometry\": {\"type\": \"MultiPolygon\", \"coordinates\": [[[[1,1],[3,1],[3,3],[1,3],[1,1]]]]}},"
	"  {\"id\": 3, \"name\": \"airport\", \"kind\": \"zone\", \"priority\": 10,"
	"   \"override\": {\"mode\": \"cap\", \"cap\": 1.5},"
	"   \"geometry\": {\"type\": \"MultiPolygon\", \"coordinates\": [[[[2,2],[2.5,2],[2.5,2.5],[2,2.5],[2,2]]]]}},"
	"  {\"id\": 4, \"name\": \"docks\", \"kind\": \"zone\", \"priority\": 0, \"override\": null,"
	"   \"geometry\": {\"type\": \"MultiPolygon\", \"coordinates\": [[[[7,7],[9,7],[9,9],[7,9],[7,7]]]]}}"
	" ],"
	" \"tariffs\": ["
	"  {\"vehicle_type\": \"standard\", \"version\": 1, \"currency\": \"USD\", \"base\": 250, \"per_km\": 156,"
	"   \"per_min\": 30, \"minimum\": 700, \"booking_fee\": 0, \"cancel_fee\": 500, \"no_show_fee\": 500,"
	"   \"waiting_free_s\": 180, \"waiting_per_min\": 30, \"bands\": [], \"zone_rules\": []},"
	"  {\"vehicle_type\": \"standard\", \"version\": 2, \"currency\": \"USD\", \"base\": 300, \"per_km\": 200,"
	"   \"per_min\": 40, \"minimum\": 800, \"booking_fee\": 100, \"cancel_fee\": 600, \"no_show_fee\": 700,"
	"   \"waiting_free_s\": 60, \"waiting_per_min\": 50,"
	"   \"bands\": [{\"name\": \"night\", \"start\": \"22:00\", \"end\": \"06:00\", \"per_km\": 300, \"minimum\": 1500}],"
	"   \"zone_rules\": [{\"kind\": \"pickup_fee\", \"zone\": \"airport\", \"amount\": 450},"
	"                  {\"kind\": \"dropoff_fee\", \"zone\": \"airport\", \"amount\": 550},"
	"                  {\"kind\": \"fixed\", \"from\": \"borough\", \"to\": \"docks\", \"amount\": 5200, \"both_ways\": false}]}"
	" ]}";

static struct book *book_sample(void)
{
	char err[160];
	struct book *b = book_parse(BOOK_JSON, err, sizeof err);
	if (!b)
		unit_fail(__FILE__, __LINE__, "book_parse: %s", err);
	return b;
}

UNIT_TEST(book_parses_zones_tariffs_and_the_current_version)
{
	struct book *b = book_sample();
	REQUIRE(b);
	CHECK_EQ_INT(b->version, 9);
	CHECK_EQ_INT(b->nzones, 4);
	CHECK(b->has_service_area);
	CHECK_EQ_INT(b->noverrides, 1);
	const struct book_tariff *cur = book_tariff(b, "standard", 0), *v1 = book_tariff(b, "standard", 1);
	REQUIRE(cur && v1);
	CHECK_EQ_INT(cur->version, 2);
	CHECK_EQ_INT(v1->base, 250);
	CHECK(!book_tariff(b, "standard", 3));
	CHECK(!book_tariff(b, "premium", 0));
	CHECK_EQ_INT(cur->nbands, 1);
	CHECK_EQ_INT(cur->bands[0].start_min, 22 * 60);
	CHECK_EQ_INT(cur->bands[0].end_min, 6 * 60);
	CHECK_EQ_INT(cur->nrules, 3);
	book_free(b);
	char err[160];
	const char *bad[] = { "", "[]", "{\"zones\": []}", /* no version */
			      "{\"version\": 1, \"zones\": [{\"name\": \"x\", \"kind\": \"zone\"}]}",
			      "{\"version\": 1, \"tariffs\": [{\"vehicle_type\": \"s\", \"currency\": \"USD\", "
			      "\"bands\": [{\"name\": \"n\", \"start\": \"9\", \"end\": \"10:00\"}]}]}",
			      "{\"version\": 1, \"tariffs\": [{\"vehicle_type\": \"s\", \"currency\": \"USD\", "
			      "\"zone_rules\": [{\"kind\": \"toll\", \"zone\": \"a\", \"amount\": 1}]}]}" };
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		struct book *x = book_parse(bad[i], err, sizeof err);
		if (x) {
			unit_fail(__FILE__, __LINE__, "parsed: %s", bad[i]);
			book_free(x);
		}
	}
}

UNIT_TEST(book_polygons_holes_priorities_and_the_service_area)
{
	struct book *b = book_sample();
	REQUIRE(b);
	/* lat, lon: the GeoJSON's [lon, lat] read the right way round */
	CHECK(book_in_service_area(b, 1, 9));
	CHECK(!book_in_service_area(b, 5, 5)); /* the lake */
	CHECK(!book_in_service_area(b, 11, 5));
	CHECK(!book_in_service_area(b, -0.01, 5));
	CHECK_EQ_STR(b->zones[book_zone_at(b, 2.2, 2.2)].name, "airport"); /* priority 10 over the borough */
	CHECK_EQ_STR(b->zones[book_zone_at(b, 1.5, 1.5)].name, "borough");
	CHECK_EQ_INT(book_zone_at(b, 5, 5), -1); /* service areas are not named zones */
	CHECK_EQ_INT(book_zone_at(b, 0.5, 0.5), -1);
	struct surge_override o;
	CHECK(book_override_at(b, 2.2, 2.2, &o));
	CHECK_EQ_INT(o.mode, SURGE_OVERRIDE_CAP);
	CHECK_NEAR(o.cap, 1.5, 1e-12);
	CHECK(!book_override_at(b, 1.5, 1.5, &o));
	/* a cell is covered when its centre or a corner is in the zone, or the
	 * zone lies inside it */
	/* a hexagon of radius 0.6 around the airport, no corner in it */
	double lat[7] = { 1.0, 2.55, 2.85, 2.55, 1.95, 1.65, 1.95 };
	double lon[7] = { 1.0, 2.77, 2.25, 1.73, 1.73, 2.25, 2.77 };
	/* (its centre moved outside the airport too) */
	CHECK(book_override_for_cell(b, lat, lon, &o)); /* ... the airport inside the hexagon */
	double far_lat[7] = { 8, 8.5, 9, 8.5, 7.5, 7, 7.5 }, far_lon[7] = { 8, 8.8, 8, 7.2, 7.2, 8, 8.8 };
	CHECK(!book_override_for_cell(b, far_lat, far_lon, &o));
	book_free(b);
	/* without a service area, everywhere is served */
	struct tariff_cfg t = { .currency = "USD", .base = 1 };
	snprintf(t.name, sizeof t.name, "standard");
	struct book *c = book_from_config(&t, 1);
	CHECK(book_in_service_area(c, 5, 5));
	CHECK_EQ_INT(c->version, 0);
	CHECK_EQ_INT(book_tariff(c, "standard", 0)->base, 1);
	book_free(c);
}

UNIT_TEST(book_bands_wrap_past_midnight)
{
	struct book *b = book_sample();
	REQUIRE(b);
	const struct book_tariff *t = book_tariff(b, "standard", 0);
	CHECK_EQ_INT(book_band_at(t, 21 * 60 + 59), -1);
	CHECK_EQ_INT(book_band_at(t, 22 * 60), 0);
	CHECK_EQ_INT(book_band_at(t, 0), 0);
	CHECK_EQ_INT(book_band_at(t, 5 * 60 + 59), 0);
	CHECK_EQ_INT(book_band_at(t, 6 * 60), -1);
	CHECK_EQ_INT(book_band_at(t, 12 * 60), -1);
	book_free(b);
}

UNIT_TEST(book_fares_of_bands_zone_fees_and_fixed_fares)
{
	struct book *b = book_sample();
	REQUIRE(b);
	const struct book_tariff *t = book_tariff(b, "standard", 0);
	struct fare f;
	/* 10 km, 20 min, day, no zones, surge 1.5: (300 + 2000 + 800) x 1.5 + 100 */
	book_price(t, -1, NULL, NULL, 10000, 1200, 1.5, &f);
	CHECK_EQ_INT(f.total, 4650 + 100);
	CHECK_EQ_INT(f.tariff_version, 2);
	CHECK_EQ_INT(f.cancel_fee, 600);
	CHECK_EQ_INT(f.waiting_per_min, 50);
	CHECK_EQ_INT(f.band, -1);
	/* night: per_km 300, minimum 1500 */
	book_price(t, 0, NULL, NULL, 10000, 1200, 1.0, &f);
	CHECK_EQ_INT(f.per_km, 300);
	CHECK_EQ_INT(f.total, 300 + 3000 + 800 + 100);
	CHECK_EQ_STR(f.band_name, "night");
	book_price(t, 0, NULL, NULL, 100, 10, 1.0, &f);
	CHECK_EQ_INT(f.total, 1500 + 100);
	/* airport pickup and dropoff fees, not surged */
	book_price(t, -1, "airport", "airport", 10000, 1200, 2.0, &f);
	CHECK_EQ_INT(f.zone_fee, 1000);
	CHECK_EQ_INT(f.total, 6200 + 100 + 1000);
	/* the fixed fare one way only: no surge, no minimum */
	book_price(t, -1, "borough", "docks", 10000, 1200, 2.0, &f);
	CHECK_EQ_INT(f.fixed, 5200);
	CHECK_NEAR(f.surge, 1.0, 1e-12);
	CHECK_EQ_INT(f.total, 5200 + 100);
	book_price(t, -1, "docks", "borough", 10000, 1200, 2.0, &f);
	CHECK_EQ_INT(f.fixed, 0);
	CHECK_EQ_INT(f.total, 6200 + 100);
	book_free(b);
}
