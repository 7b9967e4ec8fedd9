#include "presence/history.h"

#include <event2/event.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/settings.h"
#include "core/strbuf.h"
#include "core/uuid.h"
#include "store/db.h"

#define PARTITION_EVERY_MS (3600 * 1000) /* check partitions hourly */
#define PARTITION_AHEAD_DAYS 3

static struct db_stmt st_insert = {
	"history_insert",
	"INSERT INTO driver_locations (driver_id, trip_id, recorded_at, device_at, location, heading_deg, speed_kmh,"
	" accuracy_m, source)"
	" SELECT d, t, to_timestamp(r / 1000.0), to_timestamp(dv / 1000.0),"
	"  ST_SetSRID(ST_MakePoint(lo, la), 4326)::geography, h, s, a, src"
	" FROM unnest($1::uuid[], $2::uuid[], $3::float8[], $4::float8[], $5::float8[], $6::float8[],"
	"  $7::real[], $8::real[], $9::real[], $10::text[]) AS x(d, t, r, dv, la, lo, h, s, a, src)",
	10,
};
static struct db_stmt st_partitions = {
	"history_partitions", "SELECT created, dropped FROM ridehail_location_partitions($1::interval, $2)", 2,
};

static const char *const source_names[] = { "gps", "network", "manual" };

#define HISTORY_RETRY_MIN_MS 250
#define HISTORY_RETRY_MAX_MS 2000

struct batch {
	struct history *h;
	int n;
	int64_t start_ns;
	struct history_point *pts; /* kept: they go back to the queue if the database did not take them */
};

struct history {
	struct db *db;
	const struct presence_cfg *cfg;
	struct history_point *ring;
	int cap, head, count; /* ring: oldest at head */
	int inflight;
	bool partitions_ok;   /* the current partitions exist: safe to write */
	int64_t retry_ms;     /* after a batch the database did not take: the wait, growing */
	int64_t retry_at_ns;  /* no batch before this (monotonic) */
	struct event *flush_timer, *partition_timer;
	struct metric_cell *m_queued, *m_dropped, *m_written, *m_failed, *m_retried, *m_depth, *m_lag, *m_batch_latency;
	struct metric_family *f_batch_latency;
};

/* ------------------------------------------------------------ queue */

void history_push(struct history *h, const struct history_point *p)
{
	if (!h)
		return;
	if (h->count == h->cap) {
		/* full: the oldest point makes room (drop-oldest keeps what is fresh) */
		h->head = (h->head + 1) % h->cap;
		h->count--;
		metric_inc(h->m_dropped);
	}
	h->ring[(h->head + h->count) % h->cap] = *p;
	h->count++;
	metric_inc(h->m_queued);
	if (h->count >= h->cfg->history_batch_max && h->inflight < h->cfg->history_inflight_max)
		event_active(h->flush_timer, EV_TIMEOUT, 0);
}

int history_depth(const struct history *h) { return h ? h->count : 0; }

/* ------------------------------------------------------------ writing */

/* One decimal is plenty for heading, speed and accuracy; < 0 is unknown. */
static void history_put_real(struct strbuf *sb, double v)
{
	if (v < 0 || !isfinite(v))
		sb_puts(sb, "NULL");
	else
		sb_printf(sb, "%.1f", v);
}

/* A batch the database did not take goes back to the front of the queue
 * (its points are older than any queued since); what does not fit drops,
 * oldest first, as the queue always does. */
static void history_requeue(struct history *h, const struct history_point *pts, int n)
{
	int room = h->cap - h->count;
	int keep = n < room ? n : room;
	if (n > keep)
		metric_add(h->m_dropped, n - keep);
	for (int i = n - 1; i >= n - keep; i--) {
		h->head = (h->head + h->cap - 1) % h->cap;
		h->ring[h->head] = pts[i];
		h->count++;
	}
}

static void history_batch_done(void *arg, const struct db_result *res)
{
	struct batch *b = arg;
	struct history *h = b->h;
	h->inflight--;
	rh_err e = db_result_err(res);
	bool no_partition = res->err != RH_OK && strstr(res->message, "no partition");
	if (res->err == RH_OK) {
		metric_add(h->m_written, (double)db_affected(res));
		metric_observe(h->f_batch_latency, h->m_batch_latency, (double)(rh_mono_ns() - b->start_ns) / 1e9);
		h->retry_ms = 0;
	} else if (e == RH_EAGAIN || no_partition) {
		/* The database is away (or the day's partition is not there yet):
		 * the points wait for it, bounded by the queue. (A batch lost in
		 * flight may have been written: a point written twice is the same
		 * point, which the meter reads as no distance.) */
		if (!h->retry_ms)
			log_warn(NULL, "history: %d points wait for the database: %s", b->n, res->message);
		history_requeue(h, b->pts, b->n);
		metric_inc(h->m_retried);
		h->retry_ms = h->retry_ms ? h->retry_ms * 2 : HISTORY_RETRY_MIN_MS;
		if (h->retry_ms > HISTORY_RETRY_MAX_MS)
			h->retry_ms = HISTORY_RETRY_MAX_MS;
		h->retry_at_ns = rh_mono_ns() + h->retry_ms * 1000000;
		if (no_partition)
			h->partitions_ok = false;
	} else {
		/* Refused (a value it will never take): dropped and counted. */
		metric_add(h->m_failed, b->n);
		log_warn(NULL, "history: a batch of %d points was refused: %s", b->n, res->message);
	}
	rh_free(b->pts);
	rh_free(b);
	if (h->count >= h->cfg->history_batch_max && !h->retry_ms)
		event_active(h->flush_timer, EV_TIMEOUT, 0);
}

/* Takes up to batch_max points off the ring into one INSERT. */
static void history_flush_batch(struct history *h)
{
	int n = h->count < h->cfg->history_batch_max ? h->count : (int)h->cfg->history_batch_max;
	struct strbuf col[10];
	size_t per = (size_t)n * 40 + 16;
	for (int c = 0; c < 10; c++) {
		sb_init(&col[c], per * 2 + 64);
		sb_putc(&col[c], '{');
	}
	for (int i = 0; i < n; i++) {
		const struct history_point *p = &h->ring[(h->head + i) % h->cap];
		char id[37];
		const char *sep = i ? "," : "";
		for (int c = 0; c < 10; c++)
			sb_puts(&col[c], sep);
		uuid_format((const struct uuid *)p->driver, id);
		sb_puts(&col[0], id);
		if (p->has_trip) {
			uuid_format((const struct uuid *)p->trip, id);
			sb_puts(&col[1], id);
		} else {
			sb_puts(&col[1], "NULL");
		}
		sb_printf(&col[2], "%lld", (long long)p->recv_ms);
		if (p->device_ms > 0)
			sb_printf(&col[3], "%lld", (long long)p->device_ms);
		else
			sb_puts(&col[3], "NULL");
		sb_printf(&col[4], "%.7f", p->lat);
		sb_printf(&col[5], "%.7f", p->lon);
		history_put_real(&col[6], p->heading);
		history_put_real(&col[7], p->speed);
		history_put_real(&col[8], p->accuracy);
		sb_puts(&col[9], source_names[p->source < 3 ? p->source : 0]);
	}
	struct batch *b = RH_NEW(struct batch);
	b->h = h;
	b->n = n;
	b->pts = rh_calloc((size_t)n, sizeof *b->pts);
	for (int i = 0; i < n; i++)
		b->pts[i] = h->ring[(h->head + i) % h->cap];
	h->head = (h->head + n) % h->cap;
	h->count -= n;
	const char *params[10];
	for (int c = 0; c < 10; c++) {
		sb_putc(&col[c], '}');
		params[c] = col[c].buf;
	}
	b->start_ns = rh_mono_ns();
	h->inflight++;
	db_query(h->db, &st_insert, params, history_batch_done, b);
	for (int c = 0; c < 10; c++)
		sb_fini(&col[c]);
}

static void history_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct history *h = arg;
	if (h->retry_ms && rh_mono_ns() < h->retry_at_ns)
		return; /* the database did not take the last batch: not yet */
	while (h->count > 0 && h->inflight < h->cfg->history_inflight_max && h->partitions_ok)
		history_flush_batch(h);
}

void history_flush_now(struct history *h)
{
	if (h)
		history_flush_cb(-1, 0, h);
}

/* ------------------------------------------------------------ partitions */

static void history_partitions_done(void *arg, const struct db_result *res)
{
	struct history *h = arg;
	if (res->err != RH_OK) {
		log_warn(NULL, "history: partition maintenance failed (retrying): %s", res->message);
		struct timeval tv = { 5, 0 };
		evtimer_add(h->partition_timer, &tv);
		return;
	}
	const char *created = db_get(res, 0, 0), *dropped = db_get(res, 0, 1);
	if ((created && strcmp(created, "0") != 0) || (dropped && strcmp(dropped, "0") != 0))
		log_info(NULL, "history: partitions created %s, dropped %s", created, dropped);
	h->partitions_ok = true;
	struct timeval tv = { PARTITION_EVERY_MS / 1000, 0 };
	evtimer_add(h->partition_timer, &tv);
}

static void history_partition_cb(evutil_socket_t fd, short what, void *arg)
{
	struct history *h = arg;
	char keep[48], ahead[8];
	snprintf(keep, sizeof keep, "%lld milliseconds", (long long)h->cfg->history_retention_ms);
	snprintf(ahead, sizeof ahead, "%d", PARTITION_AHEAD_DAYS);
	const char *params[] = { keep, ahead };
	db_query(h->db, &st_partitions, params, history_partitions_done, h);
}

/* ------------------------------------------------------------ setup */

static void history_collect(void *arg)
{
	struct history *h = arg;
	metric_set(h->m_depth, h->count);
	double lag = 0;
	if (h->count > 0)
		lag = (double)(rh_wall_ms() - h->ring[h->head].recv_ms) / 1000.0;
	metric_set(h->m_lag, lag > 0 ? lag : 0);
}

struct history *history_new(struct event_base *base, struct metrics *m, struct db *db,
			    const struct presence_cfg *cfg)
{
	if (!cfg->history || !db)
		return NULL;
	struct history *h = RH_NEW(struct history);
	h->db = db;
	h->cfg = cfg;
	h->cap = (int)h->cfg->history_queue_max;
	h->ring = rh_calloc((size_t)h->cap, sizeof *h->ring);
	/* Its pages now, not as the head first reaches each: the queue is a
	 * bound the daemon may use at any time, and resident memory that
	 * creeps up for the first minutes of service (17 MB at the default
	 * size, about 7 minutes at 500 points/s) hides any real growth. */
	for (size_t off = 0; off < (size_t)h->cap * sizeof *h->ring; off += 4096)
		((volatile char *)h->ring)[off] = 0;
	h->flush_timer = event_new(base, -1, EV_PERSIST, history_flush_cb, h);
	h->partition_timer = evtimer_new(base, history_partition_cb, h);
	struct timeval tv = { h->cfg->history_flush_ms / 1000, (h->cfg->history_flush_ms % 1000) * 1000 };
	event_add(h->flush_timer, &tv);
	struct timeval now = { 0, 0 };
	evtimer_add(h->partition_timer, &now);

	h->m_queued = metric_cell(metrics_counter(m, "ridehail_history_points_queued_total", "Location points queued for the history table.", NULL), NULL);
	h->m_dropped = metric_cell(metrics_counter(m, "ridehail_history_points_dropped_total", "Points dropped because the history queue was full (database slow or away).", NULL), NULL);
	h->m_failed = metric_cell(metrics_counter(m, "ridehail_history_points_failed_total", "Points lost because the database refused their batch (not for being away: those wait).", NULL), NULL);
	h->m_retried = metric_cell(metrics_counter(m, "ridehail_history_batches_retried_total", "Batches the database did not take (away, or no partition yet), put back in the queue to be written later.", NULL), NULL);
	h->m_written = metric_cell(metrics_counter(m, "ridehail_history_points_written_total", "Points written to driver_locations.", NULL), NULL);
	h->m_depth = metric_cell(metrics_gauge(m, "ridehail_history_queue_depth", "Points waiting in memory for the database.", NULL), NULL);
	h->m_lag = metric_cell(metrics_gauge(m, "ridehail_history_lag_seconds", "Age of the oldest point waiting in the history queue.", NULL), NULL);
	h->f_batch_latency = metrics_histogram(m, "ridehail_history_batch_duration_seconds", "Time to write one history batch.", NULL,
					       metrics_latency_bounds, metrics_latency_nbounds);
	h->m_batch_latency = metric_cell(h->f_batch_latency, NULL);
	metrics_on_collect(m, history_collect, h);
	db_register(db, &st_insert);
	db_register(db, &st_partitions);
	return h;
}

void history_free(struct history *h)
{
	if (!h)
		return;
	event_free(h->flush_timer);
	event_free(h->partition_timer);
	rh_free(h->ring);
	rh_free(h);
}
