/* Bookings taken by phone (docs/console.md): POST /v1/dispatch/riders finds
 * the rider with a phone number, or makes one on the spot (no password), for
 * the dispatcher's POST /v1/rides with rider_id. Operators only. */
#include <stdio.h>
#include <string.h>

#include "auth/auth.h"
#include "console/console.h"
#include "console_internal.h"
#include "net/http.h"
#include "store/db.h"

static struct db_stmt console_st_rider_for_phone = {
	"console_rider_for_phone", "SELECT created, rider FROM console_rider_for_phone($1, $2)", 2,
};

static const struct jv_field console_rider_fields[] = {
	{ "phone", JV_STRING, JV_REQUIRED, 3, 32 },
	{ "name", JV_STRING, JV_NULLABLE, 1, 100 },
	{ 0 },
};

/* A phone number as riders.phone keeps it: a leading + and the digits, the
 * usual separators (space, -, ., parentheses) dropped. false: anything
 * else, or fewer than 3 or more than 20 digits. */
bool console_phone_normalise(const char *in, char *out, size_t cap)
{
	size_t n = 0, digits = 0;
	for (const char *p = in; *p; p++) {
		if (*p == '+' && n == 0) {
			if (n + 1 >= cap)
				return false;
			out[n++] = '+';
		} else if (*p >= '0' && *p <= '9') {
			if (n + 1 >= cap)
				return false;
			out[n++] = *p;
			digits++;
		} else if (!strchr(" -.()", *p)) {
			return false;
		}
	}
	out[n] = '\0';
	return digits >= 3 && digits <= 20;
}

static void console_rider_found(void *arg, const struct db_result *res)
{
	struct http_req *req = arg;
	if (res->err != RH_OK || db_rows(res) != 1 || !db_get(res, 0, 0) || !db_get(res, 0, 1)) {
		http_reply_err(req, res->err != RH_OK ? db_result_err(res) : RH_EDB, "find the rider", res->message);
		return;
	}
	bool created = strcmp(db_get(res, 0, 0), "t") == 0;
	const char *rider = db_get(res, 0, 1);
	http_reply(req, created ? 201 : 200, "application/json", rider, strlen(rider));
}

static void console_post_rider(struct http_req *req, void *ctx)
{
	struct console_bookings *b = ctx;
	struct auth_principal who;
	if (!auth_operator_or_reply(b->auth, req, &who))
		return;
	cJSON *body = http_req_json_valid_or_reply(req, console_rider_fields);
	if (!body)
		return;
	char phone[40];
	if (!console_phone_normalise(jv_str(body, "phone"), phone, sizeof phone)) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, "phone", "pattern",
					 "phone must be 3 to 20 digits, optionally after a +, with spaces, dashes, dots "
					 "or parentheses between them");
		cJSON_Delete(body);
		return;
	}
	const char *params[] = { phone, jv_str(body, "name") };
	db_query(b->db, &console_st_rider_for_phone, params, console_rider_found, req);
	cJSON_Delete(body);
}

static const struct http_route console_booking_routes[] = {
	{ HTTP_POST, "/v1/dispatch/riders", console_post_rider, 0 },
	{ 0 },
};

void console_bookings_init(struct console_bookings *b)
{
	db_register(b->db, &console_st_rider_for_phone);
	http_server_add_routes(b->http, console_booking_routes, b);
}
