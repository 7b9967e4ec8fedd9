/* The pricing book from PostgreSQL: seeded from the configuration's
 * tariffs at start, read whole (pricing_book_json()), and read again
 * whenever its version moves (NOTIFY ridehail_pricing, sent by every
 * change in the same transaction) or the listening connection comes back
 * (notifications may have been missed meanwhile). The new book is swapped
 * in between two events of the loop; quotes already given keep what they
 * were priced with. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/settings.h"
#include "core/timer.h"
#include "pricing_internal.h"
#include "store/db.h"
#include "store/listen.h"

struct book_waiter {
	int64_t version;
	void (*reply)(void *arg, bool ok);
	void *arg;
	struct book_waiter *next;
};

static struct db_stmt pricing_st_seed = { "pricing_seed", "SELECT tariff_seed($1::jsonb)", 1, 0 };
static struct db_stmt pricing_st_book = { "pricing_book", "SELECT pricing_book_json()::text", 0, 0 };

static void pricing_book_load(struct pricing *p);

/* Waiters whose version the book has reached (or all, on failure). */
static void pricing_book_wake(struct pricing *p, bool failed)
{
	struct book_waiter **w = &p->waiters;
	while (*w) {
		struct book_waiter *x = *w;
		if (!failed && x->version > p->book->version) {
			w = &x->next;
			continue;
		}
		*w = x->next;
		x->reply(x->arg, !failed);
		rh_free(x);
	}
}

static void pricing_book_loaded(void *arg, const struct db_result *res)
{
	struct pricing *p = arg;
	p->loading = false;
	const char *json = res->err == RH_OK && db_rows(res) == 1 ? db_get(res, 0, 0) : NULL;
	struct book *b = NULL;
	char err[160] = "";
	if (!json)
		snprintf(err, sizeof err, "the database did not answer (%s)", *res->message ? res->message : "no rows");
	else if (!(b = book_parse(json, err, sizeof err)))
		log_error(NULL, "pricing: the book of the database cannot be read: %s; the last one stands", err);
	if (!b) {
		snprintf(p->load_error, sizeof p->load_error, "pricing book not read: %.130s", err);
		metric_inc(p->m_reload_errors);
		pricing_book_wake(p, json != NULL); /* a bad book fails its waiters; an absent database, not yet */
		rh_timer_at(p->start, rh_timers_now(p->deps.timers) + 1000);
		return;
	}
	int64_t before = p->book->version;
	book_free(p->book);
	p->book = b;
	p->book_loaded = true;
	p->load_error[0] = '\0';
	metric_inc(p->m_reloads);
	metric_set(p->m_book_version, (double)b->version);
	if (b->version != before)
		log_info(NULL, "pricing: book version %lld: %zu zones (%zu overrides), %zu tariffs", (long long)b->version,
			 b->nzones, b->noverrides, b->ntariffs);
	pricing_book_wake(p, false);
	if (p->load_again || p->want_version > b->version) {
		p->load_again = false;
		pricing_book_load(p);
	}
}

static void pricing_book_load(struct pricing *p)
{
	if (p->loading) {
		p->load_again = true;
		return;
	}
	p->loading = true;
	db_query(p->deps.db, &pricing_st_book, NULL, pricing_book_loaded, p);
}

void pricing_book_reload(struct pricing *p)
{
	if (p->deps.db)
		pricing_book_load(p);
}

static void pricing_book_seeded(void *arg, const struct db_result *res)
{
	struct pricing *p = arg;
	if (res->err != RH_OK) {
		snprintf(p->load_error, sizeof p->load_error, "tariffs not seeded: %s",
			 *res->message ? res->message : "the database did not answer");
		p->seeded = false;
		rh_timer_at(p->start, rh_timers_now(p->deps.timers) + 1000);
		return;
	}
	const char *written = db_get(res, 0, 0);
	if (written && strcmp(written, "{}") != 0)
		log_info(NULL, "pricing: tariffs written from the configuration: %s", written);
	pricing_book_load(p);
}

/* The configuration's tariffs as tariff_seed() takes them. */
static char *pricing_config_tariffs(const struct pricing *p)
{
	cJSON *all = cJSON_CreateObject();
	for (int i = 0; i < p->deps.ntariffs; i++) {
		const struct tariff_cfg *t = &p->deps.tariffs[i];
		cJSON *o = cJSON_AddObjectToObject(all, t->name);
		cJSON_AddStringToObject(o, "currency", t->currency);
		cJSON_AddNumberToObject(o, "base", (double)t->base);
		cJSON_AddNumberToObject(o, "per_km", (double)t->per_km);
		cJSON_AddNumberToObject(o, "per_min", (double)t->per_min);
		cJSON_AddNumberToObject(o, "minimum", (double)t->minimum);
		cJSON_AddNumberToObject(o, "booking_fee", (double)t->booking_fee);
		cJSON_AddNumberToObject(o, "cancel_fee", (double)t->cancel_fee);
		cJSON_AddNumberToObject(o, "no_show_fee", (double)t->no_show_fee);
		cJSON_AddNumberToObject(o, "waiting_free_s", (double)(t->waiting_free_ms / 1000));
		cJSON_AddNumberToObject(o, "waiting_per_min", (double)t->waiting_per_min);
	}
	char *s = cJSON_PrintUnformatted(all);
	cJSON_Delete(all);
	return s;
}

static void pricing_book_seed(struct pricing *p)
{
	char *json = pricing_config_tariffs(p);
	const char *params[] = { json };
	p->seeded = true;
	db_query(p->deps.db, &pricing_st_seed, params, pricing_book_seeded, p);
	cJSON_free(json);
}

static void pricing_on_notify(void *arg, const char *channel, const char *payload)
{
	struct pricing *p = arg;
	if (strcmp(channel, "ridehail_payments") == 0) {
		pricing_payments_notified(p, payload);
		return;
	}
	int64_t v = strtoll(payload, NULL, 10);
	if (v > p->want_version)
		p->want_version = v;
	if (p->seeded && v > p->book->version)
		pricing_book_load(p);
}

/* At start, and after a failure: seed first, then read. */
static void pricing_book_start_cb(void *arg, int64_t now)
{
	struct pricing *p = arg;
	if (!p->seeded)
		pricing_book_seed(p);
	else
		pricing_book_load(p);
}

static void pricing_on_listening(void *arg)
{
	struct pricing *p = arg;
	pricing_book_start_cb(p, 0); /* anything missed while not listening */
	pricing_payments_notified(p, ""); /* the holds, afresh */
}

void pricing_book_wait(struct pricing *p, int64_t version, void (*reply)(void *arg, bool ok), void *arg)
{
	if (p->book->version >= version) {
		reply(arg, true);
		return;
	}
	struct book_waiter *w = RH_NEW(struct book_waiter);
	w->version = version;
	w->reply = reply;
	w->arg = arg;
	w->next = p->waiters;
	p->waiters = w;
	if (version > p->want_version)
		p->want_version = version;
	pricing_book_load(p);
}

void pricing_book_init(struct pricing *p)
{
	p->book = book_from_config(p->deps.tariffs, p->deps.ntariffs);
	snprintf(p->load_error, sizeof p->load_error, "pricing book not read yet");
	if (p->deps.metrics) {
		p->m_reloads = metric_cell(metrics_counter(p->deps.metrics, "ridehail_pricing_book_reloads_total",
							   "Times the pricing book (zones, tariffs, overrides) was read from the database.",
							   NULL),
					   NULL);
		p->m_reload_errors = metric_cell(metrics_counter(p->deps.metrics, "ridehail_pricing_book_reload_errors_total",
								 "Reads of the pricing book that failed (the last book stood).", NULL),
						 NULL);
		p->m_book_version = metric_cell(metrics_gauge(p->deps.metrics, "ridehail_pricing_book_version",
							      "Version of the pricing book in memory (0: the configuration's).", NULL),
						NULL);
	}
	if (!p->deps.db)
		return;
	db_register(p->deps.db, &pricing_st_seed);
	db_register(p->deps.db, &pricing_st_book);
	p->start = rh_timer_new(p->deps.timers, pricing_book_start_cb, p);
	/* the first read does not wait for the listener: the book is read as
	 * soon as the pool can, and again once listening */
	rh_timer_at(p->start, rh_timers_now(p->deps.timers));
	if (p->deps.base && p->deps.dbcfg) {
		static const char *const channels[] = { "ridehail_pricing", "ridehail_payments", NULL };
		struct db_listen_hooks h = { .notify = pricing_on_notify, .ready = pricing_on_listening, .arg = p };
		p->listener = db_listener_new(p->deps.base, p->deps.dbcfg, channels, &h);
	}
}

void pricing_book_fini(struct pricing *p)
{
	db_listener_free(p->listener);
	p->listener = NULL;
	rh_timer_free(p->start);
	p->start = NULL;
	while (p->waiters) {
		struct book_waiter *w = p->waiters;
		p->waiters = w->next;
		w->reply(w->arg, false);
		rh_free(w);
	}
	book_free(p->book);
	p->book = NULL;
}
