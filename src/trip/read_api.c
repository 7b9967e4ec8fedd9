/* Reading trips (GET /v1/rides/{id}, its receipt, the lists) and rating
 * them: the database answers, this edge shows. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "core/alloc.h"
#include "core/log.h"
#include "core/strbuf.h"
#include "net/http.h"
#include "store/db.h"
#include "trip_internal.h"

static struct db_stmt trip_st_get = {
	"trip_get", "SELECT trip_json(t, true), t.rider_id, t.driver_id FROM trips t WHERE t.id = $1", 1,
};
static struct db_stmt trip_st_receipt = {
	"trip_receipt", "SELECT trip_receipt(t), t.rider_id, t.driver_id, t.state, t.cancel_fee FROM trips t WHERE t.id = $1", 1,
};
static struct db_stmt trip_st_rate = {
	"trip_rate", "SELECT status, body FROM trip_rate($1, $2, $3, $4, $5)", 5,
};
/* Newest first, keyset pagination on (requested_at, id); $2/$3 the cursor. */
#define LIST_SQL(who)                                                                                         \
	"SELECT trip_json(t, false), (extract(epoch FROM t.requested_at) * 1000000)::bigint, t.id FROM trips t" \
	" WHERE " who " AND ($2::bigint IS NULL OR (t.requested_at, t.id) <"                                  \
	" ('epoch'::timestamptz + $2::bigint * interval '1 microsecond', $3::uuid))"                          \
	" ORDER BY t.requested_at DESC, t.id DESC LIMIT $4"
static struct db_stmt trip_st_list[3] = {
	{ "trip_list_rider", LIST_SQL("t.rider_id = $1::uuid"), 4 },
	{ "trip_list_driver", LIST_SQL("t.driver_id = $1::uuid"), 4 },
	{ "trip_list_all", LIST_SQL("$1::text IS NULL"), 4 },
};

/* Replies with a JSON text from the database, as is. */
static void trip_reply_json_text(struct http_req *req, int status, const char *json)
{
	http_reply_header(req, "Cache-Control", "no-store");
	http_reply(req, status, "application/json", json, strlen(json));
}


struct read_ctx {
	struct http_req *req;
	struct auth_principal who;
	bool receipt;
};

/* Riders see their own trips, drivers the trips assigned to them,
 * operators all; anyone else is told there is no such trip. */
static bool trip_may_see(const struct auth_principal *who, const char *rider_id, const char *driver_id)
{
	if (who->role == ROLE_OPERATOR)
		return true;
	if (who->role == ROLE_RIDER)
		return rider_id && strcmp(rider_id, who->id) == 0;
	return driver_id && strcmp(driver_id, who->id) == 0;
}

static void trip_api_read_done(void *arg, const struct db_result *res)
{
	struct read_ctx *rc = arg;
	struct http_req *req = rc->req;
	if (res->err != RH_OK) {
		http_reply_err(req, db_result_err(res), "read the trip", res->message);
	} else if (db_rows(res) == 0 || !trip_may_see(&rc->who, db_get(res, 0, 1), db_get(res, 0, 2))) {
		http_reply_problem(req, PROBLEM_NOT_FOUND, NULL, "no such trip");
	} else if (rc->receipt && strcmp(db_get(res, 0, 3), "COMPLETED") != 0 &&
		   !(strcmp(db_get(res, 0, 3), "CANCELLED") == 0 && db_get(res, 0, 4) && atoll(db_get(res, 0, 4)) > 0)) {
		cJSON *ext = cJSON_CreateObject();
		cJSON_AddStringToObject(ext, "state", db_get(res, 0, 3));
		cJSON_AddStringToObject(ext, "reason", "no_receipt");
		http_reply_problem(req, PROBLEM_TRIP_STATE, ext,
				   "the trip is %s: a receipt exists once it is completed (or cancelled with a fee)",
				   db_get(res, 0, 3));
	} else if (rc->receipt) {
		trip_reply_json_text(req, 200, db_get(res, 0, 0));
	} else {
		char *view = trip_view_text(db_get(res, 0, 0));
		if (view) {
			trip_reply_json_text(req, 200, view);
		} else {
			log_error(NULL, "trip: a malformed trip row from the database: %s", db_get(res, 0, 0));
			http_reply_problem(req, PROBLEM_INTERNAL, NULL, "the trip could not be shown");
		}
		cJSON_free(view);
	}
	rh_free(rc);
}

static void trip_api_read(struct http_req *req, struct trips *t, bool receipt)
{
	struct read_ctx *rc = RH_NEW(struct read_ctx);
	const char *id;
	if (!auth_require_or_reply(t->deps.auth, req, ROLE_RIDER | ROLE_DRIVER | ROLE_OPERATOR, &rc->who) ||
	    !trip_id_or_reply(req, &id)) {
		rh_free(rc);
		return;
	}
	rc->req = req;
	rc->receipt = receipt;
	const char *params[] = { id };
	db_query(t->deps.db, receipt ? &trip_st_receipt : &trip_st_get, params, trip_api_read_done, rc);
}

static void trip_api_get(struct http_req *req, void *ctx)
{
	trip_api_read(req, ctx, false);
}

static void trip_api_receipt(struct http_req *req, void *ctx)
{
	trip_api_read(req, ctx, true);
}

struct list_ctx {
	struct http_req *req;
	int limit;
};

static void trip_api_list_done(void *arg, const struct db_result *res)
{
	struct list_ctx *lc = arg;
	struct http_req *req = lc->req;
	if (res->err != RH_OK) {
		http_reply_err(req, db_result_err(res), "list trips", res->message);
		rh_free(lc);
		return;
	}
	struct strbuf sb;
	sb_init(&sb, 64u << 20);
	sb_puts(&sb, "{\"items\":[");
	int n = db_rows(res);
	for (int i = 0; i < n; i++) {
		if (i)
			sb_putc(&sb, ',');
		char *view = trip_view_text(db_get(res, i, 0));
		if (!view) {
			log_error(NULL, "trip: a malformed trip row from the database: %s", db_get(res, i, 0));
			http_reply_problem(req, PROBLEM_INTERNAL, NULL, "a trip could not be shown");
			sb_fini(&sb);
			rh_free(lc);
			return;
		}
		sb_puts(&sb, view);
		cJSON_free(view);
	}
	sb_puts(&sb, "],\"next_cursor\":");
	if (n > 0 && n == lc->limit)
		sb_printf(&sb, "\"%s.%s\"}", db_get(res, n - 1, 1), db_get(res, n - 1, 2));
	else
		sb_puts(&sb, "null}");
	http_reply_header(req, "Cache-Control", "no-store");
	http_reply(req, 200, "application/json", sb.buf, sb.len);
	sb_fini(&sb);
	rh_free(lc);
}

/* A cursor is "<microseconds since the epoch>.<trip id>" of the last item. */
static bool trip_cursor_parse(const char *c, char *us, size_t uslen, char *id, size_t idlen)
{
	const char *dot = strchr(c, '.');
	if (!dot || dot == c || (size_t)(dot - c) >= uslen || (size_t)(dot - c) > 18 || !jv_is_uuid(dot + 1))
		return false;
	for (const char *p = c; p < dot; p++)
		if (!isdigit((unsigned char)*p))
			return false;
	snprintf(us, uslen, "%.*s", (int)(dot - c), c);
	snprintf(id, idlen, "%s", dot + 1);
	return true;
}

static void trip_api_list(struct http_req *req, void *ctx)
{
	struct trips *t = ctx;
	struct auth_principal who;
	if (!auth_require_or_reply(t->deps.auth, req, ROLE_RIDER | ROLE_DRIVER | ROLE_OPERATOR, &who))
		return;
	int64_t limit;
	if (!http_query_integer_or_reply(req, "limit", 1, 100, 20, false, &limit))
		return;
	const char *cursor = http_req_query(req, "cursor");
	char us[24] = "", cid[40] = "", ns[16];
	if (cursor && !trip_cursor_parse(cursor, us, sizeof us, cid, sizeof cid)) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, "cursor", "format",
					 "cursor must be a next_cursor value from a previous page");
		return;
	}
	snprintf(ns, sizeof ns, "%d", (int)limit);
	struct list_ctx *lc = RH_NEW(struct list_ctx);
	lc->req = req;
	lc->limit = (int)limit;
	const char *params[] = { who.role == ROLE_OPERATOR ? NULL : who.id, cursor ? us : NULL, cursor ? cid : NULL, ns };
	int which = who.role == ROLE_RIDER ? 0 : who.role == ROLE_DRIVER ? 1 : 2;
	db_query(t->deps.db, &trip_st_list[which], params, trip_api_list_done, lc);
}

/* ------------------------------------------------------------ ratings */

static const struct jv_field rating_fields[] = {
	{ "stars", JV_INTEGER, JV_REQUIRED, 1, 5 },
	{ "comment", JV_STRING, JV_NULLABLE, 0, 500 },
	{ 0 }
};

static void trip_api_rated(void *arg, const struct db_result *res)
{
	struct http_req *req = arg;
	if (res->err != RH_OK || db_rows(res) != 1) {
		http_reply_err(req, res->err == RH_OK ? RH_EDB : db_result_err(res), "record the rating", res->message);
		return;
	}
	int status = atoi(db_get(res, 0, 0));
	if (status == 201) {
		trip_reply_json_text(req, 201, db_get(res, 0, 1));
		return;
	}
	/* a refusal, answered like a change's */
	struct tx_answer a = { .status = status, .body = cJSON_Parse(db_get(res, 0, 1)) };
	struct trip_result r;
	struct trip none;
	trip_answer_read(&a, &r, &none);
	trip_reply_result(req, &r);
	trip_fini(&none);
	cJSON_Delete(a.body);
}

static void trip_api_rate(struct http_req *req, void *ctx)
{
	struct trips *t = ctx;
	struct auth_principal who;
	const char *id;
	if (!auth_require_or_reply(t->deps.auth, req, ROLE_RIDER | ROLE_DRIVER, &who) || !trip_id_or_reply(req, &id))
		return;
	cJSON *body = http_req_json_valid_or_reply(req, rating_fields);
	if (!body)
		return;
	char stars[8];
	snprintf(stars, sizeof stars, "%d", (int)jv_num(body, "stars", 0));
	const char *role = trip_role_name(who.role == ROLE_RIDER ? TRIP_ROLE_RIDER : TRIP_ROLE_DRIVER);
	const char *params[] = { id, role, who.id, stars, jv_str(body, "comment") };
	db_query(t->deps.db, &trip_st_rate, params, trip_api_rated, req);
	cJSON_Delete(body);
}

/* ------------------------------------------------------------ setup */

static const struct http_route trip_read_routes[] = {
	{ HTTP_GET, "/v1/rides", trip_api_list, 0 },
	{ HTTP_GET, "/v1/rides/{id}", trip_api_get, 0 },
	{ HTTP_GET, "/v1/rides/{id}/receipt", trip_api_receipt, 0 },
	{ HTTP_POST, "/v1/rides/{id}/rating", trip_api_rate, 0 },
	{ 0 },
};

void trip_read_api_init(struct trips *t)
{
	db_register(t->deps.db, &trip_st_get);
	db_register(t->deps.db, &trip_st_receipt);
	db_register(t->deps.db, &trip_st_rate);
	for (int i = 0; i < 3; i++)
		db_register(t->deps.db, &trip_st_list[i]);
	http_server_add_routes(t->deps.http, trip_read_routes, t);
}
