/* The pricing book: what fares are computed from, as PostgreSQL holds it
 * (sql/015_pricing_book.sql, read and changed through
 * sql/functions/20_pricing_book.sql) and the daemon keeps it in memory: the service
 * area and named zones (polygons), each vehicle type's tariff (current and
 * recently replaced versions: their quotes are still honoured), time-of-day
 * bands and zone rules, and the operator's surge overrides per zone.
 *
 * A book is immutable once parsed: a change in the database is a new book
 * (pricing.c reloads on the ridehail_pricing notification and swaps it in
 * between two events of the loop). Everything here is pure: no I/O, no
 * clock (the time of day is passed in). */
#ifndef RH_PRICING_BOOK_H
#define RH_PRICING_BOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pricing/surge.h"

struct tariff_cfg;
struct fare;

#define BOOK_NAME_MAX 64
#define BOOK_BANDS_MAX 8
#define BOOK_RULES_MAX 32

struct book_zone {
	int id;
	char name[BOOK_NAME_MAX];
	bool service_area;    /* kind service_area (else a named zone) */
	int priority;
	double min_lat, min_lon, max_lat, max_lon;
	size_t nrings;
	size_t *ring;         /* nrings + 1 offsets into pts (pairs) */
	double *pts;          /* lon, lat, lon, lat... every ring of every polygon */
	bool has_override;
	struct surge_override override;
};

/* Members a band sets instead of the tariff's. */
enum { BAND_BASE = 1, BAND_PER_KM = 2, BAND_PER_MIN = 4, BAND_MINIMUM = 8 };
struct book_band {
	char name[16];
	int start_min, end_min; /* minutes of the day; end <= start wraps past midnight */
	unsigned set;
	int64_t base, per_km, per_min, minimum;
};

enum book_rule_kind { RULE_PICKUP_FEE, RULE_DROPOFF_FEE, RULE_FIXED };
struct book_rule {
	enum book_rule_kind kind;
	char zone[BOOK_NAME_MAX], to[BOOK_NAME_MAX]; /* fixed: from zone to `to` */
	int64_t amount;
	bool both_ways;
};

struct book_tariff {
	char vehicle[32];
	int version;
	bool current;
	char currency[4];
	int64_t base, per_km, per_min, minimum, booking_fee, cancel_fee, no_show_fee, waiting_free_s, waiting_per_min;
	struct book_band bands[BOOK_BANDS_MAX];
	int nbands;
	struct book_rule rules[BOOK_RULES_MAX];
	int nrules;
};

struct book {
	int64_t version;        /* pricing_book.version; 0: the configuration's, not loaded yet */
	struct book_zone *zones;
	size_t nzones;
	bool has_service_area;
	size_t noverrides;
	struct book_tariff *tariffs;
	size_t ntariffs;
};

/* The book of the configuration alone (version 0, every tariff at version
 * 0, no zones): what prices until the database's is read. */
struct book *book_from_config(const struct tariff_cfg *t, int n);
/* Parses pricing_book_json(); NULL (and why in err) when malformed. */
struct book *book_parse(const char *json, char *err, size_t errlen);
void book_free(struct book *b);

/* Vehicle type `vehicle`'s tariff at version (0: the current one); NULL
 * when the book has none (a version replaced long ago). */
const struct book_tariff *book_tariff(const struct book *b, const char *vehicle, int version);
/* The band holding minute_of_day (0..1439), or -1. */
int book_band_at(const struct book_tariff *t, int minute_of_day);
/* The named zone of a point: the one of highest priority holding it; -1. */
int book_zone_at(const struct book *b, double lat, double lon);
/* Inside the service area (true when the book has none). */
bool book_in_service_area(const struct book *b, double lat, double lon);
/* The operator's surge override of a point: that of the highest-priority
 * zone holding it that has one (named zones before service areas). */
bool book_override_at(const struct book *b, double lat, double lon, struct surge_override *out);
/* The override of the highest-priority zone with one that a surge cell
 * touches: the cell's centre or a corner inside the zone, or a vertex of
 * the zone inside the cell (lat[0]/lon[0] the centre, [1..6] the corners in
 * order), so that a zone smaller than a cell is covered too. */
bool book_override_for_cell(const struct book *b, const double *lat, const double *lon, struct surge_override *out);
/* Whether the point is inside the zone's polygons (even-odd over every
 * ring: holes count). */
bool book_zone_contains(const struct book_zone *z, double lat, double lon);

/* The fare of a trip of distance_m / duration_s on tariff t, in band `band`
 * (-1: none), from zone pz to zone dz (names, NULL: none), at surge
 * multiplier `surge` (pure):
 *   a fixed rule between pz and dz: fixed amount (no surge, no minimum)
 *   else max((base + per_km x km + per_min x min) x surge, minimum)
 *   plus the booking fee, plus the pickup fee of pz and the dropoff fee of
 *   dz (zone fees are not surged).
 * Fills every member of *out, the tariff's fees and version included. */
void book_price(const struct book_tariff *t, int band, const char *pz, const char *dz, int64_t distance_m,
		int64_t duration_s, double surge, struct fare *out);

#endif
