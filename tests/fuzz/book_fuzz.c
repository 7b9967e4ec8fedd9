/* Fuzz the pricing book's reader (pricing/book.c), which reads what
 * pricing_book_json() answers into zones, tariffs and overrides.
 *
 * Input: any bytes, taken as the book's JSON text. Oracles: it never reads
 * out of bounds or leaks; a book it accepts answers every question (a point
 * in the service area, the zone of a point, a tariff, a band, a fare) for
 * points inside and outside every zone's bounding box without fault, and
 * reading the same text again gives the same version and counts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pricing/book.h"
#include "pricing/pricing.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 65536)
		return 0;
	char *text = malloc(size + 1);
	memcpy(text, data, size);
	text[size] = '\0';
	char err[160];
	struct book *b = book_parse(text, err, sizeof err);
	if (b) {
		for (size_t i = 0; i < b->nzones; i++) {
			const struct book_zone *z = &b->zones[i];
			double pts[3][2] = { { z->min_lat, z->min_lon }, { (z->min_lat + z->max_lat) / 2, (z->min_lon + z->max_lon) / 2 },
					     { z->max_lat + 1, z->max_lon + 1 } };
			for (int k = 0; k < 3; k++) {
				struct surge_override o;
				(void)book_in_service_area(b, pts[k][0], pts[k][1]);
				(void)book_zone_at(b, pts[k][0], pts[k][1]);
				(void)book_override_at(b, pts[k][0], pts[k][1], &o);
				double lat[7], lon[7];
				for (int c = 0; c < 7; c++) {
					lat[c] = pts[k][0] + (c ? 0.5 * (c % 2 ? 1 : -1) : 0);
					lon[c] = pts[k][1] + (c ? 0.3 * (c - 3.5) : 0);
				}
				(void)book_override_for_cell(b, lat, lon, &o);
			}
		}
		for (size_t i = 0; i < b->ntariffs; i++) {
			const struct book_tariff *t = &b->tariffs[i];
			struct fare f;
			int band = book_band_at(t, 23 * 60);
			book_price(t, band, b->nzones ? b->zones[0].name : NULL, NULL, 5000, 600, 1.3, &f);
			if (book_tariff(b, t->vehicle, t->version) == NULL)
				abort(); /* every tariff read is found by its version */
		}
		struct book *again = book_parse(text, err, sizeof err);
		if (!again || again->version != b->version || again->nzones != b->nzones || again->ntariffs != b->ntariffs)
			abort();
		book_free(again);
		book_free(b);
	}
	free(text);
	return 0;
}
