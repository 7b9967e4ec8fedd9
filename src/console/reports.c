/* The operator's reports as CSV (docs/console.md):
 *
 *   GET /v1/admin/reports/daily.csv?from=YYYY-MM-DD&to=YYYY-MM-DD
 *   GET /v1/admin/reports/drivers.csv?from=...&to=...
 *
 * UTC days, both ends included; by default the last 7 days to today. The
 * figures come from the database (sql/functions/50_console_reports.sql);
 * this file checks the range and writes the CSV (RFC 4180: CRLF, fields with
 * a comma, quote or line break quoted). Operators only. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "auth/auth.h"
#include "console/console.h"
#include "console_internal.h"
#include "core/alloc.h"
#include "core/strbuf.h"
#include "net/http.h"
#include "store/db.h"

#define CONSOLE_REPORT_MAX_DAYS 366

static struct db_stmt console_st_report_daily = {
	"console_report_daily",
	"SELECT day, currency, trips, completed, cancelled, revenue FROM console_report_daily($1::date, $2::date, $3)", 3,
};
static struct db_stmt console_st_report_drivers = {
	"console_report_drivers",
	"SELECT driver_id, name, plate, currency, completed, earnings, hours_online "
	"FROM console_report_drivers($1::date, $2::date)",
	2,
};

/* A UTC day "YYYY-MM-DD" as days since 1970-01-01; false unless a real date. */
bool console_day_parse(const char *s, int64_t *day)
{
	int y, m, d, n = 0;
	if (!s || strlen(s) != 10 || sscanf(s, "%4d-%2d-%2d%n", &y, &m, &d, &n) != 3 || n != 10 || s[4] != '-' ||
	    s[7] != '-' || y < 1970 || y > 9999 || m < 1 || m > 12 || d < 1 || d > 31)
		return false;
	for (int i = 0; i < 10; i++)
		if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
			return false;
	struct tm tm = { .tm_year = y - 1900, .tm_mon = m - 1, .tm_mday = d, .tm_hour = 12 };
	time_t t = timegm(&tm);
	struct tm back;
	gmtime_r(&t, &back);
	if (back.tm_year != y - 1900 || back.tm_mon != m - 1 || back.tm_mday != d)
		return false; /* 2026-02-30 */
	*day = (int64_t)t / 86400;
	return true;
}

void console_day_format(int64_t day, char out[11])
{
	time_t t = (time_t)(day * 86400);
	struct tm tm;
	gmtime_r(&t, &tm);
	char tmp[48]; /* room for any int, though a day is years 1970..9999 */
	snprintf(tmp, sizeof tmp, "%04d-%02d-%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
	rh_copy(out, 11, tmp);
}

/* One CSV field (RFC 4180); NULL (SQL's) is empty. */
static void console_csv_field(struct strbuf *sb, const char *v, bool first)
{
	if (!v)
		v = "";
	if (!first)
		sb_putc(sb, ',');
	if (!strpbrk(v, ",\"\r\n")) {
		sb_puts(sb, v);
		return;
	}
	sb_putc(sb, '"');
	for (const char *p = v; *p; p++) {
		if (*p == '"')
			sb_putc(sb, '"');
		sb_putc(sb, *p);
	}
	sb_putc(sb, '"');
}

struct console_report {
	struct http_req *req;
	const char *kind;
	char from[11], to[11];
};

static void console_report_done(void *arg, const struct db_result *res)
{
	struct console_report *r = arg;
	struct http_req *req = r->req;
	if (res->err != RH_OK) {
		http_reply_err(req, db_result_err(res), "make the report", res->message);
		rh_free(r);
		return;
	}
	bool daily = strcmp(r->kind, "daily") == 0;
	struct strbuf sb;
	sb_init(&sb, 64u << 20);
	sb_puts(&sb, daily ? "day,currency,trips,completed,cancelled,completion_rate,cancellation_rate,revenue\r\n"
			   : "driver_id,name,plate,currency,trips_completed,earnings,hours_online\r\n");
	int rows = db_rows(res);
	for (int i = 0; i < rows; i++) {
		if (daily) {
			for (int c = 0; c < 5; c++)
				console_csv_field(&sb, db_get(res, i, c), c == 0);
			long long trips = 0, done = 0, cancelled = 0;
			const char *v[3] = { db_get(res, i, 2), db_get(res, i, 3), db_get(res, i, 4) };
			sscanf(v[0] ? v[0] : "0", "%lld", &trips);
			sscanf(v[1] ? v[1] : "0", "%lld", &done);
			sscanf(v[2] ? v[2] : "0", "%lld", &cancelled);
			char rate[32];
			for (int k = 0; k < 2; k++) {
				if (trips > 0)
					snprintf(rate, sizeof rate, "%.4f", (double)(k ? cancelled : done) / (double)trips);
				else
					rate[0] = '\0';
				console_csv_field(&sb, rate, false);
			}
			console_csv_field(&sb, db_get(res, i, 5), false);
		} else {
			for (int c = 0; c < 7; c++)
				console_csv_field(&sb, db_get(res, i, c), c == 0);
		}
		sb_puts(&sb, "\r\n");
	}
	if (sb.overflow) {
		http_reply_err(req, RH_ENOMEM, "make the report", "over 64 MiB: ask for fewer days");
	} else {
		char disp[96];
		snprintf(disp, sizeof disp, "attachment; filename=\"ridehail-%s-%s-%s.csv\"", r->kind, r->from, r->to);
		http_reply_header(req, "Content-Disposition", disp);
		http_reply_header(req, "Cache-Control", "no-store");
		http_reply(req, 200, "text/csv; charset=utf-8", sb.buf ? sb.buf : "", sb.len);
	}
	sb_fini(&sb);
	rh_free(r);
}

/* The range of the query string, or a 400. */
static bool console_report_range_or_reply(struct http_req *req, const struct console_bookings *b, int64_t *from,
					  int64_t *to)
{
	const char *f = http_req_query(req, "from"), *t = http_req_query(req, "to");
	*to = b->wall_ms() / 86400000;
	if (t && !console_day_parse(t, to)) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, "to", "format", "to must be a date, YYYY-MM-DD");
		return false;
	}
	*from = *to - 6;
	if (f && !console_day_parse(f, from)) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, "from", "format", "from must be a date, YYYY-MM-DD");
		return false;
	}
	if (*from > *to) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, "from", "maximum", "from is after to");
		return false;
	}
	if (*to - *from + 1 > CONSOLE_REPORT_MAX_DAYS) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, "from", "minimum", "a report spans at most %d days",
					 CONSOLE_REPORT_MAX_DAYS);
		return false;
	}
	return true;
}

static void console_get_report(struct http_req *req, void *ctx)
{
	struct console_bookings *b = ctx;
	struct auth_principal who;
	if (!auth_operator_or_reply(b->auth, req, &who))
		return;
	const char *name = http_req_param(req, "name");
	bool daily = name && strcmp(name, "daily.csv") == 0;
	if (!daily && !(name && strcmp(name, "drivers.csv") == 0)) {
		http_reply_problem(req, PROBLEM_NOT_FOUND, NULL, "no report %s (daily.csv, drivers.csv)", name ? name : "");
		return;
	}
	int64_t from, to;
	if (!console_report_range_or_reply(req, b, &from, &to))
		return;
	struct console_report *r = RH_NEW(struct console_report);
	r->req = req;
	r->kind = daily ? "daily" : "drivers";
	console_day_format(from, r->from);
	console_day_format(to, r->to);
	const char *params[] = { r->from, r->to, b->currency };
	db_query(b->db, daily ? &console_st_report_daily : &console_st_report_drivers, params, console_report_done, r);
}

static const struct http_route console_report_routes[] = {
	{ HTTP_GET, "/v1/admin/reports/{name}", console_get_report, 0 },
	{ 0 },
};

void console_reports_init(struct console_bookings *b)
{
	db_register(b->db, &console_st_report_daily);
	db_register(b->db, &console_st_report_drivers);
	http_server_add_routes(b->http, console_report_routes, b);
}
