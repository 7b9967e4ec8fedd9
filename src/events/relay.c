/* The outbox relay (see include/events/events.h for the design). */
#include "events/events.h"
#include "events/natsauth.h"
#include "events/webhook.h"

#include <event2/event.h>
#include <inttypes.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/settings.h"
#include "core/strbuf.h"
#include "core/uuid.h"
#include "core/worker.h"
#include "store/db.h"

/* The claim (outbox_relay_claim(), sql/functions/20_outbox.sql) renews the
 * lease (its table: sql/006_events.sql) and returns the next
 * batch to its holder only:
 * the lowest unpublished rows by id, at most one per trip (the trip's
 * lowest), so that a trip's next event is published only once the previous
 * one is acknowledged and per-trip order holds whatever order acks come
 * back in. A trip's rows get increasing ids in commit order (each
 * transition locks the trip row before it takes an id), so "lowest id per
 * trip" is the trip's next event. */
static struct db_stmt st_claim = {
	"events_claim",
	"WITH lease AS (SELECT outbox_relay_claim($1, $2::integer) AS mine),"
	" w AS (SELECT o.* FROM outbox o WHERE o.published_at IS NULL AND (SELECT mine FROM lease)"
	"       ORDER BY o.id LIMIT $3::integer * 4),"
	" f AS (SELECT DISTINCT ON (aggregate_id) * FROM w ORDER BY aggregate_id, id)"
	" SELECT id, event_id, event_type, aggregate_id, aggregate_seq,"
	"        (extract(epoch FROM occurred_at) * 1000)::bigint,"
	"        jsonb_build_object('event_id', event_id, 'event_type', event_type, 'event_version', event_version,"
	"                           'timestamp', rh_ts(occurred_at), 'producer', producer,"
	"                           'correlation_id', correlation_id, 'payload', payload)::text"
	" FROM f ORDER BY id LIMIT $3::integer",
	3,
};

static struct db_stmt st_mark = {
	"events_mark",
	"UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[]) AND published_at IS NULL",
	1,
};

/* One batch of published rows past events.outbox_retention, the oldest
 * publications first (a range scan of outbox_published): $1 the retention
 * in ms, $2 the batch; answers how many went. */
static struct db_stmt st_prune = {
	"events_prune",
	"WITH old AS (SELECT id FROM outbox WHERE published_at < now() - make_interval(secs => $1::float8 / 1000)"
	"             ORDER BY published_at LIMIT $2::integer),"
	" gone AS (DELETE FROM outbox o USING old WHERE o.id = old.id RETURNING 1)"
	" SELECT count(*) FROM gone",
	2,
};

static struct db_stmt st_release = {
	"events_release",
	"UPDATE outbox_relay_lease SET expires_at = now() WHERE name = 'outbox' AND holder = $1",
	1,
};

/* The backlog and the age of its head, at a cost that does not grow with
 * the backlog (it is read every stats_interval, and grows while NATS is
 * down: an exact count(*) over a day's outage would read millions of index
 * entries a second). Exact up to STATS_EXACT rows; above, the span of the
 * unpublished ids, an upper bound (ids that rolled-back transactions took
 * count too) that the relay, publishing in id order, keeps tight. The age
 * is the first row's in publishing order. All three reads are index range
 * scans of outbox_unpublished from an end. */
#define STATS_EXACT "1000"
static struct db_stmt st_stats = {
	"events_stats",
	"WITH head AS (SELECT id, occurred_at FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT 1),"
	" tail AS (SELECT id FROM outbox WHERE published_at IS NULL ORDER BY id DESC LIMIT 1),"
	" few AS (SELECT count(*) AS n FROM (SELECT 1 FROM outbox WHERE published_at IS NULL"
	"         ORDER BY id LIMIT " STATS_EXACT ") x)"
	" SELECT CASE WHEN few.n < " STATS_EXACT " THEN few.n ELSE tail.id - head.id + 1 END,"
	"        COALESCE((extract(epoch FROM now() - head.occurred_at) * 1000)::bigint, 0)"
	" FROM few LEFT JOIN head ON true LEFT JOIN tail ON true",
	0,
};

enum { ENT_PENDING, ENT_ACKED, ENT_DUPLICATE, ENT_FAILED };

struct entry {
	int64_t id;
	int64_t occurred_ms;
	int64_t acked_ms;
	char event_id[37];
	char aggregate_id[37];
	char aggregate_seq[16];
	char *subject;
	char *data;
	int len;
	int state;
};

/* One publish job: filled on the loop, run on the worker thread, read back
 * on the loop. While it runs, the loop does not touch it. */
struct batch {
	struct worker_job job;
	struct events *ev;
	struct entry *e;
	int n;
	int hint;             /* where the next ack is looked for (acks come in order) */
	bool connect_failed;
	bool connected;       /* the connection's state when the job ended */
	char error[256];
};

/* The NATS side: touched only by the running job (one at a time) and, for
 * `current`, by libnats' ack thread under `mu`. */
struct nats_link {
	pthread_mutex_t mu;
	struct batch *current;
	natsOptions *opts;
	natsConnection *nc;
	jsCtx *js;
	bool stream_ready;
};

struct events {
	struct events_deps deps;
	const struct events_cfg *cfg;
	bool on;
	bool stopping;
	bool busy;           /* a claim, a job or a mark is in flight */
	char holder[64];
	struct worker_pool *pool;
	struct nats_link link;
	struct webhooks *webhooks;
	struct event *tick, *stats_timer, *prune_timer;
	bool prune_busy;
	int64_t backoff_ms;
	int failures;        /* consecutive failed batches */
	bool stats_busy;
	bool signed_origin;  /* each message carries Ridehail-Origin (natsauth.h) */
	unsigned char origin_key[EVENTS_ORIGIN_KEYBYTES];
	struct metric_family *f_lag;
	struct metric_cell *m_published, *m_duplicates, *m_errors, *m_batches, *m_backlog, *m_oldest, *m_connected,
		*m_lag, *m_leader, *m_pruned;
};

static void relay_schedule(struct events *ev, int64_t ms)
{
	if (ev->stopping)
		return;
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	evtimer_add(ev->tick, &tv);
}

static void relay_batch_free(struct batch *b)
{
	if (!b)
		return;
	for (int i = 0; i < b->n; i++) {
		rh_free(b->e[i].subject);
		rh_free(b->e[i].data);
	}
	rh_free(b->e);
	rh_free(b);
}

/* ------------------------------------------------------------ worker thread */

/* libnats' thread: the ack (or failure) of one message. */
static void relay_ack_cb(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	struct nats_link *l = closure;
	const char *id = NULL;
	if (natsMsgHeader_Get(msg, "Nats-Msg-Id", &id) == NATS_OK && id) {
		pthread_mutex_lock(&l->mu);
		struct batch *b = l->current;
		if (b) {
			for (int k = 0; k < b->n; k++) {
				int i = (b->hint + k) % b->n;
				struct entry *e = &b->e[i];
				if (e->state == ENT_PENDING && strcmp(e->event_id, id) == 0) {
					e->state = pa ? (pa->Duplicate ? ENT_DUPLICATE : ENT_ACKED) : ENT_FAILED;
					e->acked_ms = rh_wall_ms();
					if (!pa && pae && !b->error[0])
						snprintf(b->error, sizeof b->error, "%s (%s)",
							 natsStatus_GetText(pae->Err), pae->ErrText ? pae->ErrText : "");
					b->hint = i + 1;
					break;
				}
			}
		}
		pthread_mutex_unlock(&l->mu);
	}
	natsMsg_Destroy(msg);
}

static void relay_link_reset(struct nats_link *l)
{
	if (l->js)
		jsCtx_Destroy(l->js);
	if (l->nc)
		natsConnection_Destroy(l->nc);
	l->js = NULL;
	l->nc = NULL;
	l->stream_ready = false;
}

static bool relay_link_connect(struct events *ev, struct batch *b)
{
	struct nats_link *l = &ev->link;
	const struct events_cfg *cfg = ev->cfg;
	if (l->nc && natsConnection_IsClosed(l->nc))
		relay_link_reset(l);
	if (!l->nc) {
		natsStatus s = natsConnection_Connect(&l->nc, l->opts);
		if (s != NATS_OK) {
			snprintf(b->error, sizeof b->error, "cannot connect to %s: %s", cfg->url, natsStatus_GetText(s));
			l->nc = NULL;
			b->connect_failed = true;
			return false;
		}
		jsOptions jo;
		jsOptions_Init(&jo);
		jo.Wait = cfg->ack_timeout_ms;
		jo.PublishAsync.MaxPending = cfg->batch_size * 2;
		jo.PublishAsync.AckHandler = relay_ack_cb;
		jo.PublishAsync.AckHandlerClosure = l;
		s = natsConnection_JetStream(&l->js, l->nc, &jo);
		if (s != NATS_OK) {
			snprintf(b->error, sizeof b->error, "JetStream context: %s", natsStatus_GetText(s));
			relay_link_reset(l);
			return false;
		}
	}
	if (!l->stream_ready) {
		jsStreamInfo *si = NULL;
		jsErrCode jerr = 0;
		natsStatus s = js_GetStreamInfo(&si, l->js, cfg->stream, NULL, &jerr);
		if (s == NATS_NOT_FOUND) {
			char subjects[160];
			snprintf(subjects, sizeof subjects, "%s.>", cfg->subject_prefix);
			const char *subj[] = { subjects };
			jsStreamConfig sc;
			jsStreamConfig_Init(&sc);
			sc.Name = cfg->stream;
			sc.Subjects = subj;
			sc.SubjectsLen = 1;
			sc.Retention = cfg->retention == 1 ? js_InterestPolicy
					: cfg->retention == 2 ? js_WorkQueuePolicy : js_LimitsPolicy;
			sc.Storage = cfg->storage == 1 ? js_MemoryStorage : js_FileStorage;
			sc.MaxAge = cfg->max_age_ms * 1000000;
			sc.Duplicates = cfg->duplicate_window_ms * 1000000;
			s = js_AddStream(&si, l->js, &sc, NULL, &jerr);
		}
		if (s != NATS_OK) {
			snprintf(b->error, sizeof b->error, "stream %s: %s (JetStream error %d)", cfg->stream,
				 natsStatus_GetText(s), (int)jerr);
			jsStreamInfo_Destroy(si);
			return false;
		}
		jsStreamInfo_Destroy(si);
		l->stream_ready = true;
	}
	return true;
}

static void relay_batch_run(struct worker_job *job)
{
	struct batch *b = (struct batch *)job;
	struct events *ev = b->ev;
	struct nats_link *l = &ev->link;
	if (!relay_link_connect(ev, b)) {
		b->connected = false;
		for (int i = 0; i < b->n; i++)
			b->e[i].state = ENT_FAILED;
		return;
	}
	pthread_mutex_lock(&l->mu);
	l->current = b;
	pthread_mutex_unlock(&l->mu);
	jsPubOptions po;
	int sent = 0;
	for (int i = 0; i < b->n; i++) {
		struct entry *e = &b->e[i];
		natsMsg *m = NULL;
		natsStatus s = natsMsg_Create(&m, e->subject, NULL, e->data, e->len);
		if (s == NATS_OK)
			s = natsMsgHeader_Set(m, "Ridehail-Aggregate-Id", e->aggregate_id);
		if (s == NATS_OK)
			s = natsMsgHeader_Set(m, "Ridehail-Aggregate-Seq", e->aggregate_seq);
		if (s == NATS_OK && ev->signed_origin) {
			/* what the webhook dispatcher will sign and send: ours only */
			char origin[EVENTS_ORIGIN_LEN];
			events_origin_sign(ev->origin_key, e->event_id, e->subject, e->data, e->len, origin);
			s = natsMsgHeader_Set(m, EVENTS_ORIGIN_HEADER, origin);
		}
		if (s == NATS_OK) {
			jsPubOptions_Init(&po);
			po.MsgId = e->event_id;
			po.MaxWait = ev->cfg->ack_timeout_ms;
			po.ExpectStream = ev->cfg->stream;
			s = js_PublishMsgAsync(l->js, &m, &po);
		}
		natsMsg_Destroy(m);
		if (s != NATS_OK) {
			pthread_mutex_lock(&l->mu);
			if (!b->error[0])
				snprintf(b->error, sizeof b->error, "publish: %s", natsStatus_GetText(s));
			pthread_mutex_unlock(&l->mu);
			break; /* the rest waits for the next batch */
		}
		sent++;
	}
	if (sent > 0) {
		jsPubOptions_Init(&po);
		po.MaxWait = ev->cfg->ack_timeout_ms + 1000;
		natsStatus s = js_PublishAsyncComplete(l->js, &po);
		if (s != NATS_OK) {
			pthread_mutex_lock(&l->mu);
			if (!b->error[0])
				snprintf(b->error, sizeof b->error, "waiting for acks: %s", natsStatus_GetText(s));
			pthread_mutex_unlock(&l->mu);
		}
	}
	pthread_mutex_lock(&l->mu);
	l->current = NULL; /* later acks (of this batch) are dropped: the rows go again */
	for (int i = 0; i < b->n; i++) {
		if (b->e[i].state == ENT_PENDING)
			b->e[i].state = ENT_FAILED;
		if (b->e[i].state == ENT_FAILED && strstr(b->error, "o responders"))
			l->stream_ready = false; /* the stream is gone: create it again */
	}
	pthread_mutex_unlock(&l->mu);
	b->connected = l->nc && natsConnection_Status(l->nc) == NATS_CONN_STATUS_CONNECTED;
}

/* ------------------------------------------------------------ loop */

static void relay_claim(struct events *ev);

static void relay_failed(struct events *ev, const char *why)
{
	ev->failures++;
	if (ev->failures == 1 || ev->failures % 50 == 0)
		log_warn(NULL, "events: %s; retrying with backoff (%d failures in a row)", why, ev->failures);
	ev->backoff_ms = ev->backoff_ms ? ev->backoff_ms * 2 : ev->cfg->retry_min_ms;
	if (ev->backoff_ms > ev->cfg->retry_max_ms)
		ev->backoff_ms = ev->cfg->retry_max_ms;
	relay_schedule(ev, ev->backoff_ms);
}

static void relay_succeeded(struct events *ev)
{
	if (ev->failures)
		log_info(NULL, "events: publishing again after %d failures", ev->failures);
	ev->failures = 0;
	ev->backoff_ms = 0;
}

struct mark_ctx {
	struct events *ev;
	int n;
	bool full;
	bool partial;
	char error[256];
};

static void relay_marked(void *arg, const struct db_result *res)
{
	struct mark_ctx *mc = arg;
	struct events *ev = mc->ev;
	ev->busy = false;
	if (res->err != RH_OK) {
		/* JetStream has them; they go again and are dropped as duplicates */
		relay_failed(ev, res->message[0] ? res->message : "cannot mark events published");
	} else if (mc->partial) {
		relay_failed(ev, mc->error);
	} else {
		relay_succeeded(ev);
		relay_schedule(ev, mc->full ? 0 : ev->cfg->poll_interval_ms);
	}
	rh_free(mc);
}

static void relay_batch_done(struct worker_job *job)
{
	struct batch *b = (struct batch *)job;
	struct events *ev = b->ev;
	metric_set(ev->m_connected, b->connected ? 1 : 0);
	if (ev->stopping) {
		ev->busy = false;
		relay_batch_free(b);
		return;
	}
	if (b->n == 0) { /* the first job: connect and create the stream before any event */
		ev->busy = false;
		if (b->connected) {
			relay_succeeded(ev);
			relay_schedule(ev, 0);
		} else {
			relay_failed(ev, b->error[0] ? b->error : "cannot reach NATS");
		}
		relay_batch_free(b);
		return;
	}
	struct strbuf ids;
	sb_init(&ids, 1u << 20);
	sb_putc(&ids, '{');
	int ok = 0, bad = 0;
	for (int i = 0; i < b->n; i++) {
		struct entry *e = &b->e[i];
		if (e->state == ENT_ACKED || e->state == ENT_DUPLICATE) {
			sb_printf(&ids, "%s%" PRId64, ok ? "," : "", e->id);
			ok++;
			metric_inc(ev->m_published);
			if (e->state == ENT_DUPLICATE)
				metric_inc(ev->m_duplicates);
			double lag = (double)(e->acked_ms - e->occurred_ms) / 1000.0;
			metric_observe(ev->f_lag, ev->m_lag, lag < 0 ? 0 : lag);
		} else {
			bad++;
		}
	}
	sb_putc(&ids, '}');
	if (bad)
		metric_add(ev->m_errors, bad);
	metric_inc(ev->m_batches);
	struct mark_ctx *mc = RH_NEW(struct mark_ctx);
	mc->ev = ev;
	mc->n = ok;
	mc->full = b->n == ev->cfg->batch_size;
	mc->partial = bad > 0;
	snprintf(mc->error, sizeof mc->error, "%d of %d events not acknowledged: %.200s", bad, b->n,
		 b->error[0] ? b->error : "?");
	relay_batch_free(b);
	if (ok == 0) {
		ev->busy = false;
		relay_failed(ev, mc->error);
		rh_free(mc);
		sb_fini(&ids);
		return;
	}
	const char *params[] = { ids.buf };
	db_query(ev->deps.db, &st_mark, params, relay_marked, mc);
	sb_fini(&ids);
}

static void relay_claimed(void *arg, const struct db_result *res)
{
	struct events *ev = arg;
	if (ev->stopping) {
		ev->busy = false;
		return;
	}
	if (res->err != RH_OK) {
		ev->busy = false;
		relay_failed(ev, res->message[0] ? res->message : "cannot read the outbox");
		return;
	}
	int n = db_rows(res);
	if (n == 0) {
		ev->busy = false;
		relay_schedule(ev, ev->cfg->poll_interval_ms);
		return;
	}
	struct batch *b = RH_NEW(struct batch);
	b->ev = ev;
	b->e = rh_calloc((size_t)n, sizeof *b->e);
	b->n = n;
	char subject[256];
	for (int i = 0; i < n; i++) {
		struct entry *e = &b->e[i];
		e->id = strtoll(db_get(res, i, 0), NULL, 10);
		snprintf(e->event_id, sizeof e->event_id, "%s", db_get(res, i, 1));
		snprintf(subject, sizeof subject, "%s.%s", ev->cfg->subject_prefix, db_get(res, i, 2));
		e->subject = rh_strdup(subject);
		snprintf(e->aggregate_id, sizeof e->aggregate_id, "%s", db_get(res, i, 3));
		snprintf(e->aggregate_seq, sizeof e->aggregate_seq, "%s", db_get(res, i, 4));
		e->occurred_ms = strtoll(db_get(res, i, 5), NULL, 10);
		e->data = rh_strdup(db_get(res, i, 6));
		e->len = (int)strlen(e->data);
	}
	b->job.run = relay_batch_run;
	b->job.done = relay_batch_done;
	if (worker_submit(ev->pool, &b->job) != RH_OK) {
		relay_batch_free(b);
		ev->busy = false;
		relay_failed(ev, "relay worker busy");
	}
}

static void relay_claim(struct events *ev)
{
	if (ev->busy || ev->stopping)
		return;
	ev->busy = true;
	char ttl[32], limit[32];
	snprintf(ttl, sizeof ttl, "%" PRId64, ev->cfg->lease_ttl_ms);
	snprintf(limit, sizeof limit, "%" PRId64, ev->cfg->batch_size);
	const char *params[] = { ev->holder, ttl, limit };
	db_query(ev->deps.db, &st_claim, params, relay_claimed, ev);
}

static void relay_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	relay_claim(arg);
}

static void relay_stats_done(void *arg, const struct db_result *res)
{
	struct events *ev = arg;
	ev->stats_busy = false;
	if (res->err == RH_OK && db_rows(res) == 1) {
		metric_set(ev->m_backlog, strtod(db_get(res, 0, 0), NULL));
		metric_set(ev->m_oldest, strtod(db_get(res, 0, 1), NULL) / 1000.0);
	}
}

static void relay_stats_cb(evutil_socket_t fd, short what, void *arg)
{
	struct events *ev = arg;
	if (ev->stats_busy || ev->stopping || !db_is_ready(ev->deps.db, NULL, 0))
		return;
	ev->stats_busy = true;
	db_query(ev->deps.db, &st_stats, NULL, relay_stats_done, ev);
}

/* ------------------------------------------------------------ pruning */

/* Published rows are deleted once older than events.outbox_retention, a
 * batch at a time: one short statement each (the relay's claims and marks
 * touch unpublished rows only, so nothing waits on the other), the next
 * batch at once while batches come back full, else a look every
 * min(retention, 60 s). */
#define PRUNE_IDLE_MS 60000

static void relay_prune_schedule(struct events *ev, int64_t ms)
{
	if (ev->stopping)
		return;
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	evtimer_add(ev->prune_timer, &tv);
}

static int64_t relay_prune_idle_ms(const struct events *ev)
{
	return ev->cfg->outbox_retention_ms < PRUNE_IDLE_MS ? ev->cfg->outbox_retention_ms : PRUNE_IDLE_MS;
}

static void relay_pruned(void *arg, const struct db_result *res)
{
	struct events *ev = arg;
	ev->prune_busy = false;
	if (res->err != RH_OK) {
		relay_prune_schedule(ev, relay_prune_idle_ms(ev));
		return;
	}
	int64_t n = db_rows(res) == 1 ? strtoll(db_get(res, 0, 0), NULL, 10) : 0;
	metric_add(ev->m_pruned, (double)n);
	relay_prune_schedule(ev, n >= ev->cfg->prune_batch ? 0 : relay_prune_idle_ms(ev));
}

static void relay_prune_cb(evutil_socket_t fd, short what, void *arg)
{
	struct events *ev = arg;
	if (ev->prune_busy || ev->stopping)
		return;
	if (!db_is_ready(ev->deps.db, NULL, 0)) {
		relay_prune_schedule(ev, relay_prune_idle_ms(ev));
		return;
	}
	char ret[32], lim[32];
	snprintf(ret, sizeof ret, "%" PRId64, ev->cfg->outbox_retention_ms);
	snprintf(lim, sizeof lim, "%" PRId64, ev->cfg->prune_batch);
	const char *params[] = { ret, lim };
	ev->prune_busy = true;
	db_query(ev->deps.db, &st_prune, params, relay_pruned, ev);
}

/* The relay's metrics. */
static void relay_metrics_register(struct events *ev, struct metrics *m)
{
	static const double lag_bounds[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60 };
	ev->m_published = metric_cell(metrics_counter(m, "ridehail_events_published_total",
			"Outbox events acknowledged by JetStream and marked published.", NULL), NULL);
	ev->m_duplicates = metric_cell(metrics_counter(m, "ridehail_events_duplicates_total",
			"Publishes JetStream acknowledged as duplicates (a re-publish of an event it already had).", NULL), NULL);
	ev->m_errors = metric_cell(metrics_counter(m, "ridehail_events_publish_errors_total",
			"Events whose publish failed or was not acknowledged in time (they are published again).", NULL), NULL);
	ev->m_batches = metric_cell(metrics_counter(m, "ridehail_events_batches_total",
			"Batches the relay has published.", NULL), NULL);
	ev->m_backlog = metric_cell(metrics_gauge(m, "ridehail_events_backlog",
			"Outbox rows not yet published (read every events.stats_interval; exact up to 1000, then the span of their ids).", NULL), NULL);
	ev->m_oldest = metric_cell(metrics_gauge(m, "ridehail_events_oldest_unpublished_seconds",
			"Age of the first unpublished outbox row in publishing order (0 when none).", NULL), NULL);
	ev->m_connected = metric_cell(metrics_gauge(m, "ridehail_events_nats_connected",
			"1 while the relay's last batch reached NATS, else 0.", NULL), NULL);
	ev->f_lag = metrics_histogram(m, "ridehail_events_lag_seconds",
			"From an event's commit (occurred_at) to its JetStream ack.", NULL, lag_bounds,
			(int)(sizeof lag_bounds / sizeof lag_bounds[0]));
	ev->m_lag = metric_cell(ev->f_lag, NULL);
	ev->m_pruned = metric_cell(metrics_counter(m, "ridehail_events_pruned_total",
			"Published outbox rows deleted after events.outbox_retention.", NULL), NULL);
}

/* The relay's NATS options, or NULL (said in the log) if they cannot be set. */
static natsOptions *relay_nats_options(struct events *ev)
{
	natsOptions *o = NULL;
	natsStatus s = natsOptions_Create(&o);
	if (s == NATS_OK)
		s = natsOptions_SetURL(o, ev->cfg->url);
	if (s == NATS_OK)
		s = natsOptions_SetTimeout(o, ev->cfg->connect_timeout_ms);
	if (s == NATS_OK)
		s = natsOptions_SetName(o, "ridehaild outbox relay");
	if (s == NATS_OK)
		s = natsOptions_SetAllowReconnect(o, true);
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(o, -1);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectWait(o, ev->cfg->retry_min_ms);
	char why[300] = "";
	if (s != NATS_OK || events_nats_credentials(o, ev->cfg->credentials, why, sizeof why) != RH_OK) {
		log_error(NULL, "events: NATS options: %s; the relay is off", why[0] ? why : natsStatus_GetText(s));
		natsOptions_Destroy(o);
		return NULL;
	}
	return o;
}

struct events *events_new(const struct events_deps *d)
{
	struct events *ev = RH_NEW(struct events);
	ev->deps = *d;
	ev->cfg = d->cfg;
	relay_metrics_register(ev, d->metrics);
	ev->stats_timer = event_new(d->base, -1, EV_PERSIST, relay_stats_cb, ev);
	struct timeval tv = { .tv_sec = ev->cfg->stats_interval_ms / 1000,
			      .tv_usec = (ev->cfg->stats_interval_ms % 1000) * 1000 };
	event_add(ev->stats_timer, &tv);
	db_register(d->db, &st_stats);
	db_register(d->db, &st_claim);
	db_register(d->db, &st_mark);
	db_register(d->db, &st_release);
	db_register(d->db, &st_prune);
	ev->prune_timer = evtimer_new(d->base, relay_prune_cb, ev);
	if (ev->cfg->outbox_retention_ms > 0)
		relay_prune_schedule(ev, relay_prune_idle_ms(ev));

	ev->webhooks = webhooks_new(d);
	if (ev->cfg->sink == EVENTS_SINK_NONE) {
		log_info(NULL, "events: sink = none: the relay is off, events stay in the outbox");
		return ev;
	}
	if (!ev->cfg->url || !*ev->cfg->url) {
		log_warn(NULL, "events: events.url is empty: the relay is off, events stay in the outbox");
		return ev;
	}
	struct uuid u;
	char us[37];
	uuid_v4(&u);
	uuid_format(&u, us);
	snprintf(ev->holder, sizeof ev->holder, "%s", us);
	pthread_mutex_init(&ev->link.mu, NULL);
	natsOptions *o = relay_nats_options(ev);
	if (!o) {
		pthread_mutex_destroy(&ev->link.mu);
		return ev;
	}
	ev->signed_origin = events_origin_key(d->webhooks->secret, ev->origin_key);
	ev->link.opts = o;
	ev->pool = worker_pool_new(d->base, 1, 2);
	ev->tick = evtimer_new(d->base, relay_tick_cb, ev);
	ev->on = true;
	log_info(NULL, "events: relay %s to %s, stream %s, subjects %s.<event_type>", ev->holder, ev->cfg->url,
		 ev->cfg->stream, ev->cfg->subject_prefix);
	/* connect and create the stream at once, so that consumers can
	 * subscribe before the first event */
	struct batch *b = RH_NEW(struct batch);
	b->ev = ev;
	b->job.run = relay_batch_run;
	b->job.done = relay_batch_done;
	ev->busy = true;
	if (worker_submit(ev->pool, &b->job) != RH_OK) {
		ev->busy = false;
		relay_batch_free(b);
		relay_schedule(ev, 0);
	}
	return ev;
}

static void relay_released(void *arg, const struct db_result *res)
{
	(void)arg;
	(void)res;
}

void events_stop(struct events *ev)
{
	if (!ev || ev->stopping)
		return;
	ev->stopping = true;
	webhooks_stop(ev->webhooks);
	event_del(ev->stats_timer);
	event_del(ev->prune_timer);
	if (!ev->on)
		return;
	event_del(ev->tick);
	const char *params[] = { ev->holder };
	db_query(ev->deps.db, &st_release, params, relay_released, NULL);
}

void events_free(struct events *ev)
{
	if (!ev)
		return;
	ev->stopping = true;
	webhooks_free(ev->webhooks);
	if (ev->on) {
		worker_pool_free(ev->pool); /* waits for a batch in flight; its done frees it */
		relay_link_reset(&ev->link);
		natsOptions_Destroy(ev->link.opts);
		pthread_mutex_destroy(&ev->link.mu);
		event_free(ev->tick);
	}
	event_free(ev->stats_timer);
	event_free(ev->prune_timer);
	rh_free(ev);
}
