/* Group commit: changes and ride requests queue on lanes and go to the
 * database as batches, one statement and one commit each.
 *
 * Items are spread over lanes by key (the trip id; the rider for requests):
 * each lane has one batch at the database at a time (the next one gathers
 * meanwhile), so one trip's changes stay in order and never race each
 * other, nor one rider's requests, while lanes use several connections of
 * the pool. At rest a batch is one item and waits for nothing. */
#include <event2/event.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/strbuf.h"
#include "store/db.h"
#include "trip_internal.h"

struct tx_item {
	TAILQ_ENTRY(tx_item) link;
	char *json; /* one item of the batch's JSON array */
	tx_done_fn done;
	void *arg;
};

struct tx_batch {
	struct trips *t;
	struct tx_lane *lane;
	int n;
	struct tx_item **items;
	char *json; /* the items as sent (kept to send again) */
	bool safe;  /* sent with one subtransaction per item */
};

static struct db_stmt trip_st_requests = {
	"trip_requests", "SELECT i, status, body FROM trip_requests($1::jsonb, $2::boolean) ORDER BY i", 2,
};
static struct db_stmt trip_st_transitions = {
	"trip_transitions", "SELECT i, status, body FROM trip_transitions($1::jsonb, $2::boolean) ORDER BY i", 2,
};
const struct tx_kind trip_tx_changes = { "transitions", &trip_st_transitions };
const struct tx_kind trip_tx_requests = { "ride requests", &trip_st_requests };

static void trip_batch_flush(struct tx_lane *l);

static void trip_batch_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tx_lane *l = arg;
	(void)fd;
	(void)what;
	l->scheduled = false;
	trip_batch_flush(l);
}

static void trip_batch_schedule(struct tx_lane *l)
{
	if (l->inflight || l->scheduled || l->queued == 0 || l->t->inflight >= l->t->nlanes)
		return;
	l->scheduled = true;
	event_active(l->flush_ev, EV_TIMEOUT, 0);
}

/* A slot is free: every lane with items waiting may take it, starting
 * with the one after the last to look first. */
static void trip_batch_schedule_all(struct trips *t)
{
	int n = 2 * t->nlanes;
	for (int k = 0; k < n; k++) {
		int i = (t->next_lane + k) % n;
		trip_batch_schedule(i < t->nlanes ? &t->lanes[i] : &t->rlanes[i - t->nlanes]);
	}
	t->next_lane = (t->next_lane + 1) % n;
}

static void trip_batch_send(struct tx_batch *b);

/* The answer of item i: its row's status and body, or the batch's failure. */
static struct tx_answer trip_batch_answer(const struct tx_batch *b, const struct db_result *res, int i)
{
	struct tx_answer a = { .status = 503, .unknown = res->unknown };
	int rows = res->err == RH_OK ? db_rows(res) : 0;
	if (i < rows) {
		a.status = atoi(db_get(res, i, 1));
		a.body = cJSON_Parse(db_get(res, i, 2));
		if (a.status == 500 || !a.body)
			log_error(NULL, "trip: %s failed in the database: %s", b->lane->kind->what, db_get(res, i, 2));
		if (!a.body)
			a.status = 500;
	} else if (res->err == RH_OK) {
		a.status = 500; /* fewer rows than items: a bug */
	}
	return a;
}

static void trip_batch_done(void *arg, const struct db_result *res)
{
	struct tx_batch *b = arg;
	struct trips *t = b->t;
	struct tx_lane *l = b->lane;
	if (res->err != RH_OK && res->pg && !res->unknown && !b->safe && b->n > 1) {
		/* One item raised (a race the unique indexes caught, a row changed
		 * since it was read, a bug): the whole batch rolled back. Again,
		 * each item on its own. */
		log_info(NULL, "trip: a batch of %d %s failed (%s); sending it again item by item", b->n, l->kind->what,
			 res->message);
		metric_inc(l->m_reruns);
		b->safe = true;
		trip_batch_send(b);
		return;
	}
	l->inflight = false;
	t->inflight--;
	if (res->err != RH_OK)
		log_warn(NULL, "trip: a batch of %d %s failed: %s%s", b->n, l->kind->what, res->message,
			 res->unknown ? " (lost in flight: it may have committed; retrying is safe)" : "");
	for (int i = 0; i < b->n; i++) {
		struct tx_item *it = b->items[i];
		struct tx_answer a = trip_batch_answer(b, res, i);
		it->done(t, it->arg, &a);
		cJSON_Delete(a.body);
		cJSON_free(it->json);
		rh_free(it);
	}
	rh_free(b->items);
	rh_free(b->json);
	rh_free(b);
	trip_batch_schedule_all(t);
}

static void trip_batch_send(struct tx_batch *b)
{
	const char *params[] = { b->json, b->safe ? "true" : "false" };
	db_query(b->t->deps.db, b->lane->kind->stmt, params, trip_batch_done, b);
}

static void trip_batch_flush(struct tx_lane *l)
{
	struct trips *t = l->t;
	if (l->inflight || l->queued == 0 || t->inflight >= t->nlanes)
		return;
	t->inflight++;
	int max = (int)t->cfg->batch_max;
	int n = l->queued < max ? l->queued : max;
	struct tx_batch *b = RH_NEW(struct tx_batch);
	b->t = t;
	b->lane = l;
	b->n = n;
	b->items = rh_calloc((size_t)n, sizeof *b->items);
	struct strbuf sb;
	sb_init(&sb, 64u << 20);
	sb_putc(&sb, '[');
	for (int i = 0; i < n; i++) {
		struct tx_item *it = TAILQ_FIRST(&l->queue);
		TAILQ_REMOVE(&l->queue, it, link);
		l->queued--;
		b->items[i] = it;
		if (i)
			sb_putc(&sb, ',');
		sb_puts(&sb, it->json);
	}
	sb_putc(&sb, ']');
	metric_observe(l->f_batch, l->m_batch, n);
	l->inflight = true;
	b->json = sb_take(&sb, NULL);
	b->safe = n == 1; /* alone, its error is its own answer anyway */
	trip_batch_send(b);
}

void trip_batch_enqueue(struct trips *t, const struct tx_kind *kind, const char *key, char *json, tx_done_fn done,
			void *arg)
{
	struct tx_item *it = RH_NEW(struct tx_item);
	it->json = json;
	it->done = done;
	it->arg = arg;
	uint32_t h = 2166136261u; /* FNV-1a of the key: a key always takes the same lane */
	for (const char *c = key; *c; c++)
		h = (h ^ (unsigned char)*c) * 16777619u;
	struct tx_lane *lanes = kind == &trip_tx_requests ? t->rlanes : t->lanes;
	struct tx_lane *l = &lanes[h % (uint32_t)t->nlanes];
	TAILQ_INSERT_TAIL(&l->queue, it, link);
	l->queued++;
	trip_batch_schedule(l);
}

void trip_batch_init(struct trips *t)
{
	static const char *const kind_labels[] = { "kind", NULL };
	static const double bounds[] = { 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024 };
	struct metrics *m = t->deps.metrics;
	int nb = (int)(sizeof bounds / sizeof *bounds);
	struct metric_family *f_tb = metrics_histogram(
		m, "ridehail_trip_batch_size", "Transitions committed together in one transaction (group commit).", NULL,
		bounds, nb);
	struct metric_family *f_rb = metrics_histogram(
		m, "ridehail_ride_request_batch_size", "Ride requests committed together in one transaction (group commit).",
		NULL, bounds, nb);
	struct metric_family *f_reruns = metrics_counter(
		m, "ridehail_trip_batch_reruns_total",
		"Batches run again item by item because one item failed or a row changed since it was read, by kind (transition, request).",
		kind_labels);
	const char *lv_tr[] = { "transition" }, *lv_rq[] = { "request" };
	for (int i = 0; i < 2 * t->nlanes; i++) {
		bool req = i >= t->nlanes;
		struct tx_lane *l = req ? &t->rlanes[i - t->nlanes] : &t->lanes[i];
		l->t = t;
		l->kind = req ? &trip_tx_requests : &trip_tx_changes;
		l->f_batch = req ? f_rb : f_tb;
		l->m_batch = metric_cell(l->f_batch, NULL);
		l->m_reruns = metric_cell(f_reruns, req ? lv_rq : lv_tr);
		TAILQ_INIT(&l->queue);
		l->flush_ev = evtimer_new(t->deps.base, trip_batch_flush_cb, l);
	}
	db_register(t->deps.db, &trip_st_requests);
	db_register(t->deps.db, &trip_st_transitions);
}

void trip_batch_fini(struct trips *t)
{
	for (int i = 0; i < 2 * t->nlanes; i++) {
		struct tx_lane *l = i >= t->nlanes ? &t->rlanes[i - t->nlanes] : &t->lanes[i];
		struct tx_item *it;
		while ((it = TAILQ_FIRST(&l->queue))) {
			TAILQ_REMOVE(&l->queue, it, link);
			cJSON_free(it->json);
			rh_free(it);
		}
		if (l->flush_ev)
			event_free(l->flush_ev);
	}
}
