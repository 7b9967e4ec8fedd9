/* The payment hand-off (tables: sql/016_payments.sql; functions and the
 * trigger that requests a payment: sql/functions/20_payments.sql): payment.requested leaves
 * with the trip's end; the provider's result comes back on
 * POST /v1/payments/{trip_id}/result, signed like our webhooks
 * (Ridehail-Signature: v1=hex(HMAC-SHA-256(payments.secret,
 * "<Ridehail-Timestamp>.<body>"))) and taken once per provider event id;
 * riders whose payment failed are held (402 payment-required on their next
 * ride request) until a later payment succeeds or an operator clears it
 * (POST /v1/admin/payments/{trip_id}/clear).
 *
 * Holds are kept in memory (read at start and again whenever the listening
 * connection comes back, changed by each ridehail_payments notification and
 * by the answers of this daemon's own calls), so a ride request asks no
 * database. */
#include <cjson/cJSON.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/settings.h"
#include "core/timer.h"
#include "core/umap.h"
#include "net/http.h"
#include "pricing_internal.h"
#include "store/db.h"

struct payments {
	struct umap holds;         /* rider -> struct uuid * (the trip of the failed payment) */
	bool loading, load_again;
	struct rh_timer *retry;    /* the holds read again after a failure */
	struct metric_family *f_results;
};

static struct db_stmt pricing_pay_st_holds = {
	"payments_holds",
	"SELECT DISTINCT ON (rider_id) rider_id::text, paid_for::text FROM payments "
	"WHERE state = 'failed' AND cleared_at IS NULL ORDER BY rider_id, requested_at DESC",
	0, 0 };
static struct db_stmt pricing_pay_st_result = {
	"payments_result",
	"SELECT status, body::text FROM payment_result($1::uuid, $2, $3, $4, $5, $6, $7::bigint, $8, $9)", 9, 0 };
static struct db_stmt pricing_pay_st_clear = {
	"payments_clear", "SELECT status, body::text FROM payment_clear($1::uuid, $2, $3)", 3, 0 };
static struct db_stmt pricing_pay_st_get = {
	"payments_get", "SELECT payment_json(p)::text FROM payments p WHERE p.paid_for = $1::uuid", 1, 0 };

/* ------------------------------------------------------------ holds */

static void pricing_pay_hold_set(struct payments *y, const struct uuid *rider, const struct uuid *trip)
{
	struct uuid *t = umap_get(&y->holds, rider);
	if (!trip) {
		rh_free(umap_del(&y->holds, rider));
		return;
	}
	if (!t) {
		t = RH_NEW(struct uuid);
		umap_put(&y->holds, rider, t);
	}
	*t = *trip;
}

static void pricing_pay_holds_clear(struct payments *y)
{
	struct uuid k;
	void *v;
	for (size_t i = 0; umap_next(&y->holds, &i, &k, &v);)
		rh_free(v);
	umap_fini(&y->holds);
	umap_init(&y->holds);
}

static void pricing_pay_load(struct pricing *p);

static void pricing_pay_loaded(void *arg, const struct db_result *res)
{
	struct pricing *p = arg;
	struct payments *y = p->payments;
	y->loading = false;
	if (res->err != RH_OK) {
		log_warn(NULL, "payments: the holds could not be read (%s); the last known stand, asking again", res->message);
		rh_timer_at(y->retry, rh_timers_now(p->deps.timers) + 1000);
		return;
	}
	pricing_pay_holds_clear(y);
	for (int i = 0; i < db_rows(res); i++) {
		struct uuid r, t;
		if (uuid_parse(db_get(res, i, 0), &r) && uuid_parse(db_get(res, i, 1), &t))
			pricing_pay_hold_set(y, &r, &t);
	}
	if (y->load_again) {
		y->load_again = false;
		pricing_pay_load(p);
	}
}

static void pricing_pay_load(struct pricing *p)
{
	struct payments *y = p->payments;
	if (y->loading) {
		y->load_again = true;
		return;
	}
	y->loading = true;
	db_query(p->deps.db, &pricing_pay_st_holds, NULL, pricing_pay_loaded, p);
}

static void pricing_pay_retry(void *arg, int64_t now)
{
	pricing_pay_load(arg);
}

/* "<rider>:held:<trip>" or "<rider>:free"; "" reads them all again. */
void pricing_payments_notified(struct pricing *p, const char *payload)
{
	struct payments *y = p->payments;
	if (!y || !p->deps.db)
		return;
	struct uuid rider, trip;
	if (!*payload || strlen(payload) < 37 || payload[36] != ':' || !uuid_parse_n(payload, 36, &rider)) {
		pricing_pay_load(p);
		return;
	}
	const char *what = payload + 37;
	if (strncmp(what, "held:", 5) == 0 && uuid_parse(what + 5, &trip))
		pricing_pay_hold_set(y, &rider, &trip);
	else if (strcmp(what, "free") == 0)
		pricing_pay_hold_set(y, &rider, NULL);
	else
		pricing_pay_load(p);
}

bool pricing_payment_held(const struct pricing *p, const char *rider_id, char trip_out[37])
{
	struct uuid r;
	if (!p->payments || !p->deps.payments->hold || !uuid_parse(rider_id, &r))
		return false;
	const struct uuid *t = umap_get(&p->payments->holds, &r);
	if (t && trip_out)
		uuid_format(t, trip_out);
	return t != NULL;
}

void pricing_reply_payment_required(struct http_req *req, const char *trip_id)
{
	cJSON *ext = cJSON_CreateObject();
	cJSON_AddStringToObject(ext, "trip_id", trip_id);
	http_reply_problem(req, PROBLEM_PAYMENT_REQUIRED, ext,
			   "the payment of trip %s failed: no new ride until it is paid or an operator clears it", trip_id);
}

/* A payment's answer: the rider's hold as it now stands. */
static void pricing_pay_note_answer(struct pricing *p, const cJSON *body)
{
	struct uuid rider, trip;
	if (!uuid_parse(jv_str(body, "rider_id") ? jv_str(body, "rider_id") : "", &rider) ||
	    !uuid_parse(jv_str(body, "trip_id") ? jv_str(body, "trip_id") : "", &trip))
		return;
	bool held = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "rider_held"));
	const char *state = jv_str(body, "state");
	if (!held)
		pricing_pay_hold_set(p->payments, &rider, NULL);
	else if (state && strcmp(state, "failed") == 0 && !jv_has(body, "cleared_at"))
		pricing_pay_hold_set(p->payments, &rider, &trip);
	/* held by another payment: the notification names it */
}

/* ------------------------------------------------------------ the provider's callback */

struct pricing_pay_call {
	struct pricing *p;
	struct http_req *req;
	const char *what;
};

static struct pricing_pay_call *pricing_pay_call_new(struct pricing *p, struct http_req *req, const char *what);

static void pricing_pay_reply_refusal(struct http_req *req, int status, const cJSON *body)
{
	const char *reason = jv_str(body, "reason") ? jv_str(body, "reason") : "refused";
	const char *field = jv_str(body, "field");
	cJSON *ext = cJSON_CreateObject();
	cJSON_AddStringToObject(ext, "reason", reason);
	if (field)
		cJSON_AddStringToObject(ext, "field", field);
	if (jv_str(body, "state"))
		cJSON_AddStringToObject(ext, "state", jv_str(body, "state"));
	if (status == 404)
		http_reply_problem(req, PROBLEM_NOT_FOUND, ext, "no payment for this trip");
	else if (status == 422)
		http_reply_problem(req, PROBLEM_UNPROCESSABLE, ext, "the %s is not the payment's", field ? field : "result");
	else if (strcmp(reason, "event_reused") == 0)
		http_reply_problem(req, PROBLEM_CONFLICT, ext, "this event_id was taken with another result");
	else if (strcmp(reason, "already_succeeded") == 0)
		http_reply_problem(req, PROBLEM_CONFLICT, ext, "the payment has succeeded already");
	else
		http_reply_problem(req, PROBLEM_CONFLICT, ext, "the payment is not in a state that allows this");
}

static void pricing_pay_answered(void *arg, const struct db_result *res)
{
	struct pricing_pay_call *c = arg;
	struct http_req *req = c->req;
	cJSON *body = res->err == RH_OK && db_rows(res) == 1 ? cJSON_Parse(db_get(res, 0, 1)) : NULL;
	int status = body ? atoi(db_get(res, 0, 0)) : 0;
	if (!body) {
		http_reply_err(req, res->err != RH_OK ? db_result_err(res) : RH_EDB, c->what, res->message);
	} else if (status != 200) {
		pricing_pay_reply_refusal(req, status, body);
	} else {
		pricing_pay_note_answer(c->p, body);
		bool replayed = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "replayed"));
		cJSON_DeleteItemFromObjectCaseSensitive(body, "replayed");
		if (replayed)
			http_reply_header(req, "Idempotent-Replayed", "true");
		http_reply_header(req, "Cache-Control", "no-store");
		http_reply_json(req, 200, body);
		body = NULL;
		if (c->p->payments->f_results) {
			const char *lv[] = { replayed ? "replayed" : "taken" };
			metric_inc(metric_cell(c->p->payments->f_results, lv));
		}
	}
	cJSON_Delete(body);
	rh_free(c);
}

static const char *const pricing_pay_statuses[] = { "succeeded", "failed", NULL };
static const struct jv_field pricing_pay_amount_fields[] = {
	{ "currency", JV_STRING, JV_REQUIRED, 3, 3 },
	{ "amount", JV_NUMBER, JV_REQUIRED, 0, 1e7 },
	{ 0 }
};
static const struct jv_field pricing_pay_result_fields[] = {
	{ "idempotency_key", JV_STRING, JV_REQUIRED, 1, 100 },
	{ "event_id", JV_STRING, JV_REQUIRED, 1, 100 },
	{ "status", JV_STRING, JV_REQUIRED, 1, 16, pricing_pay_statuses },
	{ "provider_ref", JV_STRING, JV_NULLABLE, 1, 200 },
	{ "failure_reason", JV_STRING, JV_NULLABLE, 1, 200 },
	{ "amount", JV_OBJECT, JV_NULLABLE, 0, 0, NULL, pricing_pay_amount_fields },
	{ 0 }
};

static void pricing_pay_reply_unsigned(struct http_req *req, const char *field, const char *why)
{
	http_reply_field_problem(req, PROBLEM_SIGNATURE_INVALID, field, NULL, "%s", why);
}

/* The callback's signature, checked before its body is read. */
static bool pricing_pay_signature_ok(struct pricing *p, struct http_req *req, const char *body, size_t len)
{
	const char *ts = http_req_header(req, "ridehail-timestamp");
	const char *sig = http_req_header(req, "ridehail-signature");
	char *end = NULL;
	long long t = ts ? strtoll(ts, &end, 10) : 0;
	if (!ts || !*ts || *end || t <= 0) {
		pricing_pay_reply_unsigned(req, "Ridehail-Timestamp", "Ridehail-Timestamp: the unix time (seconds) the callback was signed at");
		return false;
	}
	int64_t skew = rh_wall_ms() / 1000 - t;
	if (llabs(skew) * 1000 > p->deps.payments->max_skew_ms) {
		pricing_pay_reply_unsigned(req, "Ridehail-Timestamp", "Ridehail-Timestamp is too far from now: an old callback is not taken again");
		return false;
	}
	unsigned char want[crypto_auth_hmacsha256_BYTES], got[crypto_auth_hmacsha256_BYTES];
	size_t gotlen = 0;
	if (!sig || strncmp(sig, "v1=", 3) != 0 ||
	    sodium_hex2bin(got, sizeof got, sig + 3, strlen(sig + 3), NULL, &gotlen, NULL) != 0 || gotlen != sizeof got) {
		pricing_pay_reply_unsigned(req, "Ridehail-Signature", "Ridehail-Signature: v1=<hex of HMAC-SHA-256(payments.secret, \"<timestamp>.<body>\")>");
		return false;
	}
	crypto_auth_hmacsha256_state st;
	const char *secret = p->deps.payments->secret;
	crypto_auth_hmacsha256_init(&st, (const unsigned char *)secret, strlen(secret));
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)ts, strlen(ts));
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)".", 1);
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)body, len);
	crypto_auth_hmacsha256_final(&st, want);
	if (sodium_memcmp(want, got, sizeof want) != 0) {
		pricing_pay_reply_unsigned(req, "Ridehail-Signature", "the signature does not verify");
		return false;
	}
	return true;
}

static void pricing_pay_api_result(struct http_req *req, void *ctx)
{
	struct pricing *p = ctx;
	const char *secret = p->deps.payments->secret;
	if (!secret || !*secret) {
		http_reply_problem(req, PROBLEM_UNAVAILABLE, NULL, "payments are not configured (payments.secret)");
		return;
	}
	const char *trip = http_req_param(req, "trip_id");
	if (!jv_is_uuid(trip)) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, "trip_id", "format", "a trip id is a UUID");
		return;
	}
	size_t len = 0;
	const char *raw = http_req_body(req, &len);
	if (!pricing_pay_signature_ok(p, req, raw ? raw : "", raw ? len : 0))
		return;
	cJSON *body = http_req_json_valid_or_reply(req, pricing_pay_result_fields);
	if (!body)
		return;
	const char *status = jv_str(body, "status");
	bool failed = strcmp(status, "failed") == 0;
	if (failed != jv_has(body, "failure_reason")) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, "failure_reason", failed ? "required" : "additionalProperties",
					 failed ? "a failed payment says why (failure_reason)" : "failure_reason goes with status failed only");
		cJSON_Delete(body);
		return;
	}
	char amount[32] = "", hash[65];
	const cJSON *am = cJSON_GetObjectItemCaseSensitive(body, "amount");
	const char *cur = NULL;
	if (cJSON_IsObject(am)) {
		double major = jv_num(am, "amount", 0);
		double minor = round(major * 100);
		if (fabs(major * 100 - minor) > 1e-6) {
			http_reply_field_problem(req, PROBLEM_VALIDATION, "amount.amount", "multipleOf",
						 "an amount in major units with at most two decimals");
			cJSON_Delete(body);
			return;
		}
		snprintf(amount, sizeof amount, "%.0f", minor);
		cur = jv_str(am, "currency");
	}
	unsigned char h[32];
	crypto_generichash(h, sizeof h, (const unsigned char *)raw, len, NULL, 0);
	sodium_bin2hex(hash, sizeof hash, h, sizeof h);
	const char *params[] = { trip, jv_str(body, "idempotency_key"), jv_str(body, "event_id"), status,
				 jv_str(body, "provider_ref"), jv_str(body, "failure_reason"), amount[0] ? amount : NULL, cur,
				 hash };
	db_query(p->deps.db, &pricing_pay_st_result, params, pricing_pay_answered,
		 pricing_pay_call_new(p, req, "take the payment result"));
	cJSON_Delete(body);
}

/* ------------------------------------------------------------ the operator */

static const struct jv_field pricing_pay_clear_fields[] = {
	{ "reason", JV_STRING, JV_NULLABLE, 1, 200 },
	{ 0 }
};

/* The operator, and the trip id of the path; NULL after a reply. */
static const char *pricing_pay_operator_trip_or_reply(struct pricing *p, struct http_req *req,
						       struct auth_principal *who)
{
	if (!auth_operator_or_reply(p->deps.auth, req, who))
		return NULL;
	const char *trip = http_req_param(req, "trip_id");
	if (!jv_is_uuid(trip)) {
		http_reply_field_problem(req, PROBLEM_VALIDATION, "trip_id", "format", "a trip id is a UUID");
		return NULL;
	}
	return trip;
}

static struct pricing_pay_call *pricing_pay_call_new(struct pricing *p, struct http_req *req, const char *what)
{
	struct pricing_pay_call *c = RH_NEW(struct pricing_pay_call);
	c->p = p;
	c->req = req;
	c->what = what;
	return c;
}

static void pricing_pay_api_clear(struct http_req *req, void *ctx)
{
	struct pricing *p = ctx;
	struct auth_principal who;
	const char *trip = pricing_pay_operator_trip_or_reply(p, req, &who);
	if (!trip)
		return;
	size_t len = 0;
	http_req_body(req, &len);
	cJSON *body = len ? http_req_json_valid_or_reply(req, pricing_pay_clear_fields) : cJSON_CreateObject();
	if (!body)
		return;
	const char *params[] = { trip, who.id, jv_str(body, "reason") };
	db_query(p->deps.db, &pricing_pay_st_clear, params, pricing_pay_answered,
		 pricing_pay_call_new(p, req, "clear the payment"));
	cJSON_Delete(body);
	log_info(http_req_logid(req), "payments: %s clears the hold of trip %s", who.id, trip);
}

static void pricing_pay_got(void *arg, const struct db_result *res)
{
	struct pricing_pay_call *c = arg;
	if (res->err != RH_OK)
		http_reply_err(c->req, db_result_err(res), c->what, res->message);
	else if (db_rows(res) != 1)
		http_reply_field_problem(c->req, PROBLEM_NOT_FOUND, "trip_id", NULL, "no payment for this trip");
	else {
		const char *s = db_get(res, 0, 0);
		http_reply_header(c->req, "Cache-Control", "no-store");
		http_reply(c->req, 200, "application/json", s, strlen(s));
	}
	rh_free(c);
}

static void pricing_pay_api_get(struct http_req *req, void *ctx)
{
	struct pricing *p = ctx;
	struct auth_principal who;
	const char *trip = pricing_pay_operator_trip_or_reply(p, req, &who);
	if (!trip)
		return;
	const char *params[] = { trip };
	db_query(p->deps.db, &pricing_pay_st_get, params, pricing_pay_got,
		 pricing_pay_call_new(p, req, "read the payment"));
}

static const struct http_route pricing_pay_routes[] = {
	{ HTTP_POST, "/v1/payments/{trip_id}/result", pricing_pay_api_result, 0 },
	{ HTTP_GET, "/v1/admin/payments/{trip_id}", pricing_pay_api_get, 0 },
	{ HTTP_POST, "/v1/admin/payments/{trip_id}/clear", pricing_pay_api_clear, 0 },
	{ 0 },
};

void pricing_payments_init(struct pricing *p)
{
	if (!p->deps.db)
		return;
	struct payments *y = RH_NEW(struct payments);
	umap_init(&y->holds);
	p->payments = y;
	db_register(p->deps.db, &pricing_pay_st_holds);
	db_register(p->deps.db, &pricing_pay_st_result);
	db_register(p->deps.db, &pricing_pay_st_clear);
	db_register(p->deps.db, &pricing_pay_st_get);
	if (p->deps.metrics) {
		static const char *const lbl[] = { "result", NULL };
		y->f_results = metrics_counter(p->deps.metrics, "ridehail_payment_results_total",
					       "Payment provider callbacks taken, by result: taken (recorded), replayed (a doubled callback: nothing changed).",
					       lbl);
	}
	if (p->deps.http)
		http_server_add_routes(p->deps.http, pricing_pay_routes, p);
	/* read at the first turn of the loop (and again whenever the listening
	 * connection comes back: pricing_payments_notified) */
	y->retry = rh_timer_new(p->deps.timers, pricing_pay_retry, p);
	rh_timer_at(y->retry, rh_timers_now(p->deps.timers));
}

void pricing_payments_fini(struct pricing *p)
{
	if (!p->payments)
		return;
	rh_timer_free(p->payments->retry);
	pricing_pay_holds_clear(p->payments);
	umap_fini(&p->payments->holds);
	rh_free(p->payments);
	p->payments = NULL;
}
