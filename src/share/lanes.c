/* Shared rides: changes go to the database in batches, one lane per kind
 * (share_internal.h). */
#include "share_internal.h"

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
#include "core/strbuf.h"
#include "core/timer.h"
#include "core/umap.h"
#include "core/uuid.h"
#include "gateway/gateway.h"
#include "geo/geohash.h"
#include "net/http.h"
#include "presence/presence.h"
#include "pricing/pricing.h"
#include "routing/routing.h"
#include "share/card.h"
#include "share/plan.h"
#include "store/db.h"

/* ------------------------------------------------------------ the database's answers */


/* Changes go to the database in batches, one lane per kind of change
 * (book, confirm, cancel, leg): one batch at the database at a time (two
 * for bookings: each rider's are independent of every other's, and the
 * database orders one rider's by its unique indexes), the next gathering
 * meanwhile, each one share_batch() call, one transaction,
 * one commit for all its items (at rest a batch is one item and waits for
 * nothing). Every item is answered on its own: refusals are answers. A
 * batch that failed as a whole is sent again item by item, so a failure is
 * that item's only. */
#define SHARE_BATCH_MAX 64

struct share_batch_ctx {
	struct share_lane *lane;
	struct share_item *items;
	size_t n;
};

static struct db_stmt share_st_batch = { "share_batch", "SELECT share_batch($1, $2::jsonb)", 2 };

static void share_batch_send(struct share_lane *l, struct share_item *items, size_t n);
static void share_lane_send(struct share_lane *l);

/* The lane is free once its batch is answered, and after a failed batch
 * once every item sent again alone is (l->busy counts what is out). */
static void share_lane_answered(struct share_lane *l)
{
	l->busy--;
	share_lane_send(l);
}

static void share_batch_done(void *arg, const struct db_result *res)
{
	struct share_batch_ctx *c = arg;
	struct share_lane *l = c->lane;
	cJSON *arr = res->err == RH_OK && db_rows(res) == 1 ? cJSON_Parse(db_get(res, 0, 0)) : NULL;
	bool whole = cJSON_IsArray(arr) && (size_t)cJSON_GetArraySize(arr) == c->n;
	if (!whole && c->n > 1) {
		log_warn(NULL, "share: a %s batch of %zu failed (%s); sending its items one by one", l->kind, c->n,
			 res->message);
		cJSON_Delete(arr);
		struct share_item *it = c->items;
		rh_free(c);
		while (it) {
			struct share_item *next = it->next;
			it->next = NULL;
			share_batch_send(l, it, 1);
			it = next;
		}
		share_lane_answered(l);
		return;
	}
	if (!whole)
		log_warn(NULL, "share: share_%s failed: %s", l->kind, res->message);
	struct share_reply r = { NULL, res->err == RH_OK ? RH_EDB : db_result_err(res), res->unknown };
	size_t i = 0;
	for (struct share_item *it = c->items, *next; it; it = next, i++) {
		next = it->next;
		r.a = whole ? cJSON_GetArrayItem(arr, (int)i) : NULL;
		it->done(it->arg, &r);
		rh_free(it->json);
		rh_free(it);
	}
	cJSON_Delete(arr);
	rh_free(c);
	share_lane_answered(l);
}

static void share_batch_send(struct share_lane *l, struct share_item *items, size_t n)
{
	struct strbuf sb;
	sb_init(&sb, 1u << 26);
	sb_putc(&sb, '[');
	for (struct share_item *it = items; it; it = it->next) {
		if (it != items)
			sb_putc(&sb, ',');
		sb_puts(&sb, it->json);
	}
	sb_putc(&sb, ']');
	struct share_batch_ctx *c = RH_NEW(struct share_batch_ctx);
	c->lane = l;
	c->items = items;
	c->n = n;
	l->busy++;
	const char *params[] = { l->kind, sb.buf };
	db_query(l->s->deps.db, &share_st_batch, params, share_batch_done, c);
	sb_fini(&sb);
}

static void share_lane_send(struct share_lane *l)
{
	if (l->busy >= l->max_out || !l->head)
		return;
	struct share_item *items = l->head, *last = items;
	size_t n = 1;
	while (last->next && n < SHARE_BATCH_MAX) {
		last = last->next;
		n++;
	}
	l->head = last->next;
	last->next = NULL;
	if (!l->head)
		l->tail = &l->head;
	share_batch_send(l, items, n);
}

/* Queues one call of share_<kind>(json). */
void share_lane_push(struct share_lane *l, const char *json, share_done_fn done, void *arg)
{
	struct share_item *it = RH_NEW(struct share_item);
	it->json = rh_strdup(json);
	it->done = done;
	it->arg = arg;
	*l->tail = it;
	l->tail = &it->next;
	share_lane_send(l);
}

/* The jsonb answer of a query of one row (share_active()); NULL when it failed. */
cJSON *share_answer(const struct db_result *r, const char *what)
{
	if (r->err != RH_OK || db_rows(r) != 1) {
		log_warn(NULL, "share: %s failed: %s", what, r->message);
		return NULL;
	}
	return cJSON_Parse(db_get(r, 0, 0));
}

int share_status(const cJSON *a)
{
	return (int)jv_num(a, "status", 500);
}


void share_lanes_init(struct share *s)
{
	struct share_lane *lanes[] = { &s->lane_book, &s->lane_confirm, &s->lane_cancel, &s->lane_leg };
	const char *kinds[] = { "book", "confirm", "cancel", "leg" };
	for (int i = 0; i < 4; i++) {
		lanes[i]->s = s;
		lanes[i]->kind = kinds[i];
		lanes[i]->tail = &lanes[i]->head;
		lanes[i]->max_out = lanes[i] == &s->lane_book ? 2 : 1;
	}
	if (s->deps.db)
		db_register(s->deps.db, &share_st_batch);
}
