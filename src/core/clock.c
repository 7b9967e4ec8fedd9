#include "core/clock.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/strbuf.h"

static void rh_clock_put2(char *p, int v)
{
	p[0] = (char)('0' + v / 10);
	p[1] = (char)('0' + v % 10);
}

/* Every envelope and reply carries one of these: digits put in place,
 * not printed (snprintf cost more than the rest of a location relay). */
void rh_format_rfc3339(int64_t wall_ms, char out[32])
{
	time_t secs = (time_t)(wall_ms / 1000);
	int ms = (int)(wall_ms % 1000);
	struct tm tm;
	if (ms < 0) {
		ms += 1000;
		secs -= 1;
	}
	if (!gmtime_r(&secs, &tm)) {
		rh_copy(out, 32, "0000-01-01T00:00:00.000Z");
		return;
	}
	if (tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999) { /* never on a live path */
		char buf[96];
		snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
			 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
		rh_copy(out, 32, buf);
		return;
	}
	int year = tm.tm_year + 1900;
	/* YYYY-MM-DDThh:mm:ss.mmmZ */
	rh_clock_put2(out, year / 100);
	rh_clock_put2(out + 2, year % 100);
	out[4] = '-';
	rh_clock_put2(out + 5, tm.tm_mon + 1);
	out[7] = '-';
	rh_clock_put2(out + 8, tm.tm_mday);
	out[10] = 'T';
	rh_clock_put2(out + 11, tm.tm_hour);
	out[13] = ':';
	rh_clock_put2(out + 14, tm.tm_min);
	out[16] = ':';
	rh_clock_put2(out + 17, tm.tm_sec);
	out[19] = '.';
	out[20] = (char)('0' + ms / 100);
	rh_clock_put2(out + 21, ms % 100);
	out[23] = 'Z';
	out[24] = '\0';
}

static int rh_clock_digits(const char *s, int n)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian). */
static int64_t rh_clock_days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

int rh_parse_rfc3339(const char *s, int64_t *wall_ms)
{
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	if (strlen(s) < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
	    s[13] != ':' || s[16] != ':')
		return -1;
	int y = rh_clock_digits(s, 4), mo = rh_clock_digits(s + 5, 2), d = rh_clock_digits(s + 8, 2);
	int h = rh_clock_digits(s + 11, 2), mi = rh_clock_digits(s + 14, 2), se = rh_clock_digits(s + 17, 2);
	if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 ||
	    se > 60 || h < 0 || mi < 0 || se < 0)
		return -1;
	if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return -1;
	const char *p = s + 19;
	int ms = 0;
	if (*p == '.') {
		int n = 0;
		p++;
		while (isdigit((unsigned char)*p)) {
			if (n < 3)
				ms = ms * 10 + (*p - '0');
			n++;
			p++;
		}
		if (n == 0)
			return -1;
		for (; n < 3; n++)
			ms *= 10;
	}
	int offset_min = 0;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		/* "+hh:mm": check each byte in order, so a string that ends early
		 * is never read past its terminator */
		int oh = rh_clock_digits(p + 1, 2);
		int om = oh >= 0 && p[3] == ':' ? rh_clock_digits(p + 4, 2) : -1;
		if (oh < 0 || om < 0 || oh > 23 || om > 59)
			return -1;
		offset_min = (oh * 60 + om) * (*p == '+' ? 1 : -1);
		p += 6;
	} else {
		return -1;
	}
	if (*p)
		return -1;
	if (se == 60)
		se = 59; /* leap second: close enough */
	int64_t days = rh_clock_days_from_civil(y, mo, d);
	int64_t secs = days * 86400 + h * 3600 + mi * 60 + se - (int64_t)offset_min * 60;
	*wall_ms = secs * 1000 + ms;
	return 0;
}
