/* Fuzz target for the trip-record reader of `map calibrate`: any bytes
 * either parse into records with finite, in-range fields or are refused
 * with a message; never a crash or an out-of-range hour. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "../../src/routing/trips.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct trips_csv l = { 0 };
	char err[256] = "";
	if (trips_csv_parse((const char *)data, size, &l, err, sizeof err) != RH_OK) {
		if (!err[0] || l.n)
			abort();
	}
	for (size_t i = 0; i < l.n; i++) {
		const struct trips_csv_row *t = &l.v[i];
		if (t->how < 0 || t->how >= 168 || !isfinite(t->duration_s) || !(fabs(t->plat) <= 90) ||
		    !(fabs(t->dlon) <= 180))
			abort();
	}
	if (l.n + l.bad > l.rows)
		abort();
	trips_csv_fini(&l);
	return 0;
}
