/* Trip records for `map calibrate`: CSV with a header naming the columns.
 * Two layouts are read:
 *   - pickup and dropoff date-times (NYC TLC: tpep_pickup_datetime,
 *     tpep_dropoff_datetime, or pickup_datetime / dropoff_datetime) as
 *     "YYYY-MM-DD HH:MM:SS" local time;
 *   - a duration in seconds with the pickup's weekday (1 = Sunday .. 7 =
 *     Saturday), hour and minute (columns duration, weekday, hour, minute);
 * and in both pickup_latitude, pickup_longitude, dropoff_latitude,
 * dropoff_longitude, and optionally trip_distance (miles, the meter).
 * Pure: a buffer in, records out; rows that do not parse are counted. */
#include "trips.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

enum { COL_PU_TIME, COL_DO_TIME, COL_DURATION, COL_WEEKDAY, COL_HOUR, COL_MINUTE, COL_PLAT, COL_PLON, COL_DLAT,
       COL_DLON, COL_DIST, COL_COUNT };

static const char *const trips_csv_names[COL_COUNT][3] = {
	[COL_PU_TIME] = { "tpep_pickup_datetime", "pickup_datetime", "lpep_pickup_datetime" },
	[COL_DO_TIME] = { "tpep_dropoff_datetime", "dropoff_datetime", "lpep_dropoff_datetime" },
	[COL_DURATION] = { "duration", "trip_duration", NULL },
	[COL_WEEKDAY] = { "weekday", NULL, NULL },
	[COL_HOUR] = { "hour", NULL, NULL },
	[COL_MINUTE] = { "minute", NULL, NULL },
	[COL_PLAT] = { "pickup_latitude", NULL, NULL },
	[COL_PLON] = { "pickup_longitude", NULL, NULL },
	[COL_DLAT] = { "dropoff_latitude", NULL, NULL },
	[COL_DLON] = { "dropoff_longitude", NULL, NULL },
	[COL_DIST] = { "trip_distance", NULL, NULL },
};

#define TRIPS_MAX_FIELDS 64
#define TRIPS_FIELD_MAX 64

/* Splits one line (no quotes in these files; a quoted field is refused)
 * into fields; returns the count, or -1. */
static int trips_csv_split(const char *line, size_t len, char fields[][TRIPS_FIELD_MAX], int max)
{
	int n = 0;
	size_t start = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && line[i] == '"')
			return -1;
		if (i < len && line[i] != ',')
			continue;
		if (n == max)
			return -1;
		size_t fl = i - start;
		while (fl > 0 && (line[start + fl - 1] == '\r' || line[start + fl - 1] == ' '))
			fl--;
		while (fl > 0 && line[start] == ' ')
			start++, fl--;
		if (fl >= TRIPS_FIELD_MAX)
			return -1;
		memcpy(fields[n], line + start, fl);
		fields[n][fl] = 0;
		n++;
		start = i + 1;
	}
	return n;
}

static bool trips_csv_num(const char *s, double lo, double hi, double *out)
{
	char *end;
	if (!*s)
		return false;
	double v = strtod(s, &end);
	if (*end || !isfinite(v) || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static int64_t trips_csv_days(int64_t y, int64_t m, int64_t d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* "YYYY-MM-DD HH:MM:SS" (or with T) -> seconds of a local clock since 1970. */
static bool trips_csv_datetime(const char *s, int64_t *out)
{
	int y, mo, d, h, mi, se;
	char sep;
	int used = 0;
	if (sscanf(s, "%4d-%2d-%2d%c%2d:%2d:%2d%n", &y, &mo, &d, &sep, &h, &mi, &se, &used) != 7 || s[used] ||
	    (sep != ' ' && sep != 'T'))
		return false;
	if (y < 1970 || y > 2100 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60 || h < 0 ||
	    mi < 0 || se < 0)
		return false;
	*out = trips_csv_days(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
	return true;
}

static int trips_csv_how_of(int64_t local)
{
	int64_t days = local / 86400;
	int dow = (int)((days + 3) % 7); /* Monday = 0; 1970-01-01 was a Thursday */
	return dow * 24 + (int)(local % 86400 / 3600);
}

rh_err trips_csv_parse(const char *buf, size_t len, struct trips_csv *out, char *err, size_t errlen)
{
	const char *p = buf, *end = buf + len;
	const char *nl = memchr(p, '\n', len);
	size_t hl = nl ? (size_t)(nl - p) : len;
	char fields[TRIPS_MAX_FIELDS][TRIPS_FIELD_MAX];
	int nf = trips_csv_split(p, hl, fields, TRIPS_MAX_FIELDS);
	int col[COL_COUNT];
	for (int c = 0; c < COL_COUNT; c++) {
		col[c] = -1;
		for (int i = 0; i < nf; i++)
			for (int k = 0; k < 3 && trips_csv_names[c][k]; k++)
				if (strcmp(fields[i], trips_csv_names[c][k]) == 0)
					col[c] = i;
	}
	bool times = col[COL_PU_TIME] >= 0 && col[COL_DO_TIME] >= 0;
	bool parts = col[COL_DURATION] >= 0 && col[COL_WEEKDAY] >= 0 && col[COL_HOUR] >= 0;
	if (nf < 0 || (!times && !parts) || col[COL_PLAT] < 0 || col[COL_PLON] < 0 || col[COL_DLAT] < 0 ||
	    col[COL_DLON] < 0) {
		snprintf(err, errlen,
			 "the header names no trip columns: want pickup_latitude, pickup_longitude, dropoff_latitude, "
			 "dropoff_longitude and either pickup/dropoff date-times or duration, weekday, hour");
		return RH_EINVAL;
	}
	p = nl ? nl + 1 : end;
	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
		const char *line = p;
		p = nl ? nl + 1 : end;
		if (ll == 0 || (ll == 1 && line[0] == '\r'))
			continue;
		out->rows++;
		int n = trips_csv_split(line, ll, fields, TRIPS_MAX_FIELDS);
		struct trips_csv_row t = { .meter_m = -1 };
		bool ok = n == nf;
		ok = ok && trips_csv_num(fields[col[COL_PLAT]], -90, 90, &t.plat) && trips_csv_num(fields[col[COL_PLON]], -180, 180, &t.plon);
		ok = ok && trips_csv_num(fields[col[COL_DLAT]], -90, 90, &t.dlat) && trips_csv_num(fields[col[COL_DLON]], -180, 180, &t.dlon);
		if (ok && times) {
			int64_t a, b;
			ok = trips_csv_datetime(fields[col[COL_PU_TIME]], &a) && trips_csv_datetime(fields[col[COL_DO_TIME]], &b);
			if (ok) {
				t.duration_s = (double)(b - a);
				t.how = trips_csv_how_of(a);
			}
		} else if (ok) {
			double wd, hr, mi = 0;
			ok = trips_csv_num(fields[col[COL_DURATION]], 0, 1e7, &t.duration_s) &&
			     trips_csv_num(fields[col[COL_WEEKDAY]], 1, 7, &wd) && trips_csv_num(fields[col[COL_HOUR]], 0, 23, &hr) &&
			     (col[COL_MINUTE] < 0 || trips_csv_num(fields[col[COL_MINUTE]], 0, 59, &mi));
			ok = ok && wd == floor(wd) && hr == floor(hr);
			if (ok)
				t.how = ((int)wd + 5) % 7 * 24 + (int)hr; /* 1 = Sunday -> 6, 2 = Monday -> 0 */
		}
		double miles;
		if (ok && col[COL_DIST] >= 0 && trips_csv_num(fields[col[COL_DIST]], 0, 1000, &miles))
			t.meter_m = miles * 1609.344;
		if (!ok) {
			out->bad++;
			continue;
		}
		if (out->n == out->cap) {
			out->cap = out->cap ? out->cap * 2 : 1024;
			out->v = rh_realloc(out->v, out->cap * sizeof *out->v);
		}
		out->v[out->n++] = t;
	}
	return RH_OK;
}

void trips_csv_fini(struct trips_csv *l)
{
	rh_free(l->v);
	memset(l, 0, sizeof *l);
}
