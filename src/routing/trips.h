/* Inside the routing module: trip records read for `map calibrate`. */
#ifndef RH_ROUTING_TRIPS_H
#define RH_ROUTING_TRIPS_H

#include <stdbool.h>
#include <stddef.h>

#include "core/err.h"

struct trips_csv_row {
	double plat, plon, dlat, dlon;
	double duration_s;
	double meter_m; /* the meter's distance, -1 when the file has none */
	int how;        /* hour of the week of the pickup, Monday 00:00 = 0, local time */
};

struct trips_csv {
	struct trips_csv_row *v;
	size_t n, cap;
	size_t rows, bad; /* data rows seen, rows that did not parse */
};

/* Appends the records of one CSV file (header first) to out; RH_EINVAL
 * with a message when the header names no usable columns. */
rh_err trips_csv_parse(const char *buf, size_t len, struct trips_csv *out, char *err, size_t errlen) RH_MUST_CHECK;
void trips_csv_fini(struct trips_csv *l);

#endif
