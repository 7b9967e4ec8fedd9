/* The operator's console feed: console.subscribe, then one console.update
 * per interval to every subscribed operator socket (console/console.h). */
#include "console/console.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "console_internal.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/settings.h"
#include "core/strbuf.h"
#include "core/timer.h"
#include "core/umap.h"
#include "gateway/gateway.h"
#include "presence/presence.h"
#include "store/db.h"
#include "trip/trip.h"

/* A driver as the consoles last heard of them, by presence slot. */
struct console_driver {
	struct uuid id;
	int32_t lat_e5, lng_e5;
	uint8_t code;      /* enum console_code */
	bool shown;        /* on the consoles' maps */
	uint32_t stamp;    /* the tick that last listed them */
};

/* Codes of a driver's state in console.update (docs/console.md). */
enum console_code {
	CONSOLE_AVAILABLE = 1,
	CONSOLE_OFFERED,
	CONSOLE_EN_ROUTE,
	CONSOLE_ON_TRIP,
	CONSOLE_SUSPECT,   /* silent past presence.stale_after, or no socket */
};

/* An open trip. */
struct console_trip {
	struct uuid id, driver;
	bool has_driver;
	enum trip_state state;
	char vehicle[32];
	double plat, plng, dlat, dlng;
	int64_t requested_at; /* wall ms */
	int64_t search_start; /* wall ms: trip_search_start() */
	bool dirty;           /* changed since the last update */
	bool ended;           /* finished: told as gone at the next update, then forgotten */
};

/* The alerts (docs/console.md): raised and cleared by the tick, shown in
 * every update, logged and counted when they change. */
enum console_alert { CONSOLE_ALERT_REQUEST_WAIT, CONSOLE_ALERT_MATCH_RATE, CONSOLE_ALERT_DATABASE, CONSOLE_ALERTS };
static const char *const console_alert_names[CONSOLE_ALERTS] = { "request_wait", "match_rate", "database" };

struct console_sub {
	struct session *s;
	struct console_sub *next;
};

struct console {
	struct console_deps deps;
	struct rh_timer *tick;
	struct console_driver *drv;
	size_t ndrv;
	uint32_t stamp;
	struct presence_hit *hits;
	size_t hits_cap;
	struct umap trips;
	struct console_trip **dirty;
	size_t ndirty, dirty_cap;
	struct console_sub *subs;
	size_t nsubs;
	uint64_t seq;
	/* what the last listing counted */
	size_t by_code[CONSOLE_SUSPECT + 1];
	struct console_samples ttm, wait, matched;
	struct gw_message_type subscribe_type;
	struct console_bookings bookings;
	int64_t alert_since[CONSOLE_ALERTS]; /* wall ms it was raised; 0: not raised */
	char alert_detail[CONSOLE_ALERTS][192];
	struct metric_cell *m_alerts[CONSOLE_ALERTS], *m_alert_active[CONSOLE_ALERTS];
	struct metric_cell *m_subs, *m_bytes, *m_updates;
	struct metric_family *f_build;
	struct metric_cell *m_build;
};

static const struct jv_field console_subscribe_fields[] = {
	{ 0 },
};

/* ------------------------------------------------------------ trips */

static void console_mark(struct console *c, struct console_trip *t)
{
	if (t->dirty)
		return;
	t->dirty = true;
	if (c->ndirty == c->dirty_cap) {
		c->dirty_cap = c->dirty_cap ? c->dirty_cap * 2 : 64;
		c->dirty = rh_realloc(c->dirty, c->dirty_cap * sizeof *c->dirty);
	}
	c->dirty[c->ndirty++] = t;
}

static void console_trip_changed(void *ctx, const struct trip_event *e)
{
	struct console *c = ctx;
	const struct trip *tr = e->trip;
	struct console_trip *t = umap_get(&c->trips, &tr->id);
	int64_t now = c->deps.wall_ms();
	int64_t mono = rh_timers_now(c->deps.timers);
	enum trip_state before = t ? t->state : tr->state;
	if (!e->recovered && !e->created && t && before != tr->state) {
		/* figures: what this change completes */
		if (tr->state == TRIP_MATCHED && before == TRIP_SEARCHING) {
			console_samples_add(&c->ttm, mono, now - trip_search_start(tr));
			console_samples_add(&c->matched, mono, 1);
		} else if (tr->state == TRIP_CANCELLED && before == TRIP_SEARCHING) {
			console_samples_add(&c->matched, mono, 0);
		} else if (tr->state == TRIP_ARRIVED) {
			console_samples_add(&c->wait, mono, now - trip_search_start(tr));
		}
	}
	if (!trip_state_is_active(tr->state)) {
		if (t && !t->ended) {
			t->ended = true;
			t->state = tr->state;
			console_mark(c, t);
		}
		return;
	}
	if (!t) {
		t = RH_NEW(struct console_trip);
		t->id = tr->id;
		umap_put(&c->trips, &t->id, t);
	}
	t->state = tr->state;
	t->has_driver = tr->has_driver;
	t->driver = tr->driver;
	rh_copy(t->vehicle, sizeof t->vehicle, tr->vehicle_type);
	t->plat = tr->pickup_lat, t->plng = tr->pickup_lng;
	t->dlat = tr->dropoff_lat, t->dlng = tr->dropoff_lng;
	t->requested_at = tr->requested_at;
	t->search_start = trip_search_start(tr);
	console_mark(c, t);
}

void console_trip_listener(struct console *c, struct trip_listener *out)
{
	*out = (struct trip_listener){ .changed = console_trip_changed, .ctx = c };
}

/* ------------------------------------------------------------ the frame */

static void console_put_uuid(struct strbuf *sb, const struct uuid *u)
{
	char s[37];
	uuid_format(u, s);
	sb_putc(sb, '"');
	sb_puts(sb, s);
	sb_putc(sb, '"');
}

static void console_put_trip(struct strbuf *sb, const struct console_trip *t)
{
	sb_puts(sb, "{\"id\":");
	console_put_uuid(sb, &t->id);
	sb_puts(sb, ",\"state\":\"");
	sb_puts(sb, trip_state_name(t->state));
	sb_puts(sb, "\",\"vehicle_type\":\"");
	sb_puts(sb, t->vehicle); /* a configured tariff name: no escapes needed */
	sb_puts(sb, "\",\"pickup\":[");
	sb_fixed(sb, t->plat, 5);
	sb_putc(sb, ',');
	sb_fixed(sb, t->plng, 5);
	sb_puts(sb, "],\"dropoff\":[");
	sb_fixed(sb, t->dlat, 5);
	sb_putc(sb, ',');
	sb_fixed(sb, t->dlng, 5);
	sb_putc(sb, ']');
	if (t->has_driver) {
		sb_puts(sb, ",\"driver_id\":");
		console_put_uuid(sb, &t->driver);
	}
	if (t->requested_at > 0) {
		char ts[32];
		rh_format_rfc3339(t->requested_at, ts);
		sb_puts(sb, ",\"requested_at\":\"");
		sb_puts(sb, ts);
		sb_putc(sb, '"');
	}
	sb_putc(sb, '}');
}

static void console_put_pct(struct strbuf *sb, const char *name, struct console_samples *s, int64_t mono,
			    int64_t window)
{
	size_t n;
	int64_t p50, p95;
	sb_puts(sb, ",\"");
	sb_puts(sb, name);
	sb_puts(sb, "\":");
	if (!console_samples_pct(s, mono, window, &n, &p50, &p95)) {
		sb_puts(sb, "null");
		return;
	}
	sb_puts(sb, "{\"p50\":");
	sb_fixed(sb, (double)p50 / 1000.0, 1);
	sb_puts(sb, ",\"p95\":");
	sb_fixed(sb, (double)p95 / 1000.0, 1);
	sb_puts(sb, ",\"n\":");
	sb_int(sb, (long long)n);
	sb_putc(sb, '}');
}

static void console_put_figures(struct console *c, struct strbuf *sb)
{
	int64_t mono = rh_timers_now(c->deps.timers);
	int64_t w = c->deps.window_ms;
	size_t online = 0;
	for (int k = CONSOLE_AVAILABLE; k <= CONSOLE_SUSPECT; k++)
		online += c->by_code[k];
	size_t open = 0, searching = 0;
	struct uuid k;
	void *v;
	for (size_t i = 0; umap_next(&c->trips, &i, &k, &v);) {
		const struct console_trip *t = v;
		if (t->ended)
			continue;
		open++;
		searching += t->state == TRIP_SEARCHING;
	}
	sb_puts(sb, ",\"figures\":{\"online\":");
	sb_int(sb, (long long)online);
	static const char *const names[] = { NULL, "available", "offered", "en_route", "on_trip", "suspect" };
	for (int i = CONSOLE_AVAILABLE; i <= CONSOLE_SUSPECT; i++) {
		sb_puts(sb, ",\"");
		sb_puts(sb, names[i]);
		sb_puts(sb, "\":");
		sb_int(sb, (long long)c->by_code[i]);
	}
	sb_puts(sb, ",\"open_requests\":");
	sb_int(sb, (long long)searching);
	sb_puts(sb, ",\"open_trips\":");
	sb_int(sb, (long long)open);
	size_t n;
	double rate;
	sb_puts(sb, ",\"match_rate\":");
	if (console_samples_mean(&c->matched, mono, w, &n, &rate))
		sb_fixed(sb, rate, 3);
	else
		sb_puts(sb, "null");
	console_put_pct(sb, "time_to_match_s", &c->ttm, mono, w);
	console_put_pct(sb, "pickup_wait_s", &c->wait, mono, w);
	sb_puts(sb, ",\"utilisation\":");
	size_t busy = c->by_code[CONSOLE_OFFERED] + c->by_code[CONSOLE_EN_ROUTE] + c->by_code[CONSOLE_ON_TRIP];
	if (online)
		sb_fixed(sb, (double)busy / (double)online, 3);
	else
		sb_puts(sb, "null");
	sb_puts(sb, ",\"window_s\":");
	sb_int(sb, (long long)(w / 1000));
	sb_putc(sb, '}');
}

static void console_put_driver(struct strbuf *sb, uint32_t slot, const struct console_driver *d, bool *first)
{
	if (!*first)
		sb_putc(sb, ',');
	*first = false;
	sb_putc(sb, '[');
	sb_int(sb, slot);
	sb_putc(sb, ',');
	sb_fixed(sb, d->lat_e5 / 1e5, 5);
	sb_putc(sb, ',');
	sb_fixed(sb, d->lng_e5 / 1e5, 5);
	sb_putc(sb, ',');
	sb_int(sb, d->code);
	sb_putc(sb, ']');
}

static void console_put_id(struct strbuf *sb, uint32_t slot, const struct uuid *id, bool *first)
{
	if (!*first)
		sb_putc(sb, ',');
	*first = false;
	sb_putc(sb, '[');
	sb_int(sb, slot);
	sb_putc(sb, ',');
	console_put_uuid(sb, id);
	sb_putc(sb, ']');
}

static enum console_code console_code_of(const struct console *c, const struct presence_hit *h)
{
	if (h->status == DRIVER_UNREACHABLE || h->ping_age_ms >= c->deps.presence_cfg->stale_after_ms)
		return CONSOLE_SUSPECT;
	switch (h->status) {
	case DRIVER_OFFERED: return CONSOLE_OFFERED;
	case DRIVER_EN_ROUTE: return CONSOLE_EN_ROUTE;
	case DRIVER_ON_TRIP: return CONSOLE_ON_TRIP;
	default: return CONSOLE_AVAILABLE;
	}
}

/* The table of drivers brought up to date; the delta appended to sb. */
static void console_sync_drivers(struct console *c, struct strbuf *sb)
{
	int64_t now = rh_timers_now(c->deps.timers);
	size_t cap = presence_records(c->deps.presence);
	if (cap > c->hits_cap) {
		c->hits_cap = cap;
		c->hits = rh_realloc(c->hits, cap * sizeof *c->hits);
	}
	if (cap > c->ndrv) {
		c->drv = rh_realloc(c->drv, cap * sizeof *c->drv);
		memset(c->drv + c->ndrv, 0, (cap - c->ndrv) * sizeof *c->drv);
		c->ndrv = cap;
	}
	size_t n = presence_list(c->deps.presence, now, c->hits, c->hits_cap);
	uint32_t stamp = ++c->stamp;
	memset(c->by_code, 0, sizeof c->by_code);
	struct strbuf ids;
	sb_init(&ids, sb->max);
	bool first = true, first_id = true;
	sb_puts(sb, ",\"drivers\":[");
	for (size_t i = 0; i < n; i++) {
		const struct presence_hit *h = &c->hits[i];
		struct console_driver *d = &c->drv[h->slot];
		int32_t lat = (int32_t)lround(h->lat * 1e5), lng = (int32_t)lround(h->lon * 1e5);
		uint8_t code = (uint8_t)console_code_of(c, h);
		c->by_code[code]++;
		bool same_id = d->shown && uuid_eq(&d->id, &h->driver);
		d->stamp = stamp;
		if (same_id && d->lat_e5 == lat && d->lng_e5 == lng && d->code == code)
			continue;
		if (!same_id) {
			d->id = h->driver;
			console_put_id(&ids, h->slot, &d->id, &first_id);
		}
		d->shown = true;
		d->lat_e5 = lat, d->lng_e5 = lng, d->code = code;
		console_put_driver(sb, h->slot, d, &first);
	}
	sb_puts(sb, "],\"driver_ids\":[");
	sb_append(sb, ids.buf ? ids.buf : "", ids.len);
	sb_fini(&ids);
	sb_puts(sb, "],\"drivers_gone\":[");
	first = true;
	for (size_t s = 0; s < c->ndrv; s++) {
		struct console_driver *d = &c->drv[s];
		if (!d->shown || d->stamp == stamp)
			continue;
		d->shown = false;
		if (!first)
			sb_putc(sb, ',');
		first = false;
		sb_int(sb, (long long)s);
	}
	sb_putc(sb, ']');
}

/* The trips that changed since the last update appended to sb; ended ones
 * forgotten. */
static void console_sync_trips(struct console *c, struct strbuf *sb)
{
	sb_puts(sb, ",\"trips\":[");
	bool first = true;
	for (size_t i = 0; i < c->ndirty; i++) {
		struct console_trip *t = c->dirty[i];
		if (t->ended)
			continue;
		if (!first)
			sb_putc(sb, ',');
		first = false;
		console_put_trip(sb, t);
	}
	sb_puts(sb, "],\"trips_gone\":[");
	first = true;
	for (size_t i = 0; i < c->ndirty; i++) {
		struct console_trip *t = c->dirty[i];
		t->dirty = false;
		if (!t->ended)
			continue;
		if (!first)
			sb_putc(sb, ',');
		first = false;
		console_put_uuid(sb, &t->id);
		umap_del(&c->trips, &t->id);
		rh_free(t);
	}
	c->ndirty = 0;
	sb_putc(sb, ']');
}

/* A string as a JSON string's contents (details come from logs and the
 * database: quotes and controls escaped or dropped). */
static void console_put_json_text(struct strbuf *sb, const char *s)
{
	for (; *s; s++) {
		if (*s == '"' || *s == '\\') {
			sb_putc(sb, '\\');
			sb_putc(sb, *s);
		} else if ((unsigned char)*s < 0x20) {
			sb_putc(sb, ' ');
		} else {
			sb_putc(sb, *s);
		}
	}
}

static void console_alert_set(struct console *c, enum console_alert a, bool on, int64_t wall, const char *detail)
{
	const char *name = console_alert_names[a];
	if (on) {
		rh_copy(c->alert_detail[a], sizeof c->alert_detail[a], detail);
		if (c->alert_since[a])
			return;
		c->alert_since[a] = wall;
		log_warn(NULL, "console alert raised: %s: %s", name, detail);
		metric_inc(c->m_alerts[a]);
		metric_set(c->m_alert_active[a], 1);
	} else if (c->alert_since[a]) {
		log_info(NULL, "console alert cleared: %s, raised %lld s ago", name,
			 (long long)((wall - c->alert_since[a]) / 1000));
		c->alert_since[a] = 0;
		metric_set(c->m_alert_active[a], 0);
	}
}

/* The thresholds of [console] against what the console knows now. */
static void console_alerts_check(struct console *c)
{
	int64_t wall = c->deps.wall_ms(), mono = rh_timers_now(c->deps.timers);
	const struct console_cfg *cfg = c->deps.cfg;
	char detail[192];
	int64_t wait = cfg ? cfg->alert_request_wait_ms : 0;
	size_t over = 0;
	int64_t oldest = 0;
	struct uuid k;
	void *v;
	for (size_t i = 0; wait > 0 && umap_next(&c->trips, &i, &k, &v);) {
		const struct console_trip *t = v;
		if (t->ended || t->state != TRIP_SEARCHING || t->search_start <= 0 || wall - t->search_start <= wait)
			continue;
		over++;
		if (!oldest || t->search_start < oldest)
			oldest = t->search_start;
	}
	snprintf(detail, sizeof detail, "%zu trip%s searching for more than %lld s (the oldest for %lld s)", over,
		 over == 1 ? "" : "s", (long long)(wait / 1000), (long long)((wall - oldest) / 1000));
	console_alert_set(c, CONSOLE_ALERT_REQUEST_WAIT, over > 0, wall, detail);
	size_t n = 0;
	double rate = 1;
	bool low = cfg && cfg->alert_match_rate > 0 && console_samples_mean(&c->matched, mono, c->deps.window_ms, &n, &rate) &&
		   n >= (size_t)cfg->alert_min_outcomes && rate < cfg->alert_match_rate;
	snprintf(detail, sizeof detail, "%.0f%% of the last %zu searches matched (below %.0f%%)", rate * 100, n,
		 cfg ? cfg->alert_match_rate * 100 : 0);
	console_alert_set(c, CONSOLE_ALERT_MATCH_RATE, low, wall, detail);
	char why[160] = "";
	bool down = c->deps.db && !db_is_ready(c->deps.db, why, sizeof why);
	snprintf(detail, sizeof detail, "the database is not ready: %s", why);
	console_alert_set(c, CONSOLE_ALERT_DATABASE, down, wall, detail);
}

static void console_put_alerts(struct console *c, struct strbuf *sb)
{
	sb_puts(sb, ",\"alerts\":[");
	bool first = true;
	for (int a = 0; a < CONSOLE_ALERTS; a++) {
		if (!c->alert_since[a])
			continue;
		char ts[32];
		rh_format_rfc3339(c->alert_since[a], ts);
		sb_puts(sb, first ? "{\"name\":\"" : ",{\"name\":\"");
		first = false;
		sb_puts(sb, console_alert_names[a]);
		sb_puts(sb, "\",\"since\":\"");
		sb_puts(sb, ts);
		sb_puts(sb, "\",\"detail\":\"");
		console_put_json_text(sb, c->alert_detail[a]);
		sb_puts(sb, "\"}");
	}
	sb_putc(sb, ']');
}

static void console_head(struct console *c, struct strbuf *sb, bool full)
{
	sb_puts(sb, "{\"seq\":");
	sb_int(sb, (long long)c->seq);
	sb_puts(sb, full ? ",\"full\":true" : ",\"full\":false");
	sb_puts(sb, ",\"interval_ms\":");
	sb_int(sb, (long long)c->deps.interval_ms);
}

/* Everything the consoles show now, as the last update left it. */
static void console_full(struct console *c, struct strbuf *sb)
{
	console_head(c, sb, true);
	sb_puts(sb, ",\"drivers\":[");
	bool first = true;
	for (size_t s = 0; s < c->ndrv; s++)
		if (c->drv[s].shown)
			console_put_driver(sb, (uint32_t)s, &c->drv[s], &first);
	sb_puts(sb, "],\"driver_ids\":[");
	first = true;
	for (size_t s = 0; s < c->ndrv; s++)
		if (c->drv[s].shown)
			console_put_id(sb, (uint32_t)s, &c->drv[s].id, &first);
	sb_puts(sb, "],\"drivers_gone\":[],\"trips\":[");
	first = true;
	struct uuid k;
	void *v;
	for (size_t i = 0; umap_next(&c->trips, &i, &k, &v);) {
		const struct console_trip *t = v;
		if (t->ended)
			continue;
		if (!first)
			sb_putc(sb, ',');
		first = false;
		console_put_trip(sb, t);
	}
	sb_puts(sb, "],\"trips_gone\":[]");
	console_put_figures(c, sb);
	console_put_alerts(c, sb);
	sb_putc(sb, '}');
}

static void console_send(struct console *c, struct session *s, const struct strbuf *sb)
{
	if (sb->overflow || !gateway_send_text(s, "console.update", sb->buf, NULL))
		return;
	metric_add(c->m_bytes, (double)sb->len);
	metric_inc(c->m_updates);
}

static void console_tick(void *arg, int64_t now)
{
	struct console *c = arg;
	rh_timer_at(c->tick, now + c->deps.interval_ms);
	int64_t t0 = rh_mono_ns();
	struct strbuf sb;
	sb_init(&sb, CONSOLE_FRAME_MAX);
	c->seq++;
	console_head(c, &sb, false);
	console_sync_drivers(c, &sb);
	console_sync_trips(c, &sb);
	console_alerts_check(c);
	console_put_figures(c, &sb);
	console_put_alerts(c, &sb);
	sb_putc(&sb, '}');
	if (sb.overflow)
		log_warn(NULL, "console: an update past %u bytes was not sent", (unsigned)CONSOLE_FRAME_MAX);
	for (struct console_sub *u = c->subs, *next; u; u = next) {
		next = u->next;
		console_send(c, u->s, &sb);
	}
	sb_fini(&sb);
	metric_observe(c->f_build, c->m_build, (double)(rh_mono_ns() - t0) / 1e9);
}

/* ------------------------------------------------------------ sockets */

static bool console_on_subscribe(struct session *s, void *ctx, const cJSON *msg, const cJSON *pl,
				 struct gw_reject *rej)
{
	struct console *c = ctx;
	(void)msg, (void)pl, (void)rej;
	bool known = false;
	for (struct console_sub *u = c->subs; u; u = u->next)
		known |= u->s == s;
	if (!known) {
		struct console_sub *u = RH_NEW(struct console_sub);
		u->s = s;
		u->next = c->subs;
		c->subs = u;
		c->nsubs++;
		metric_set(c->m_subs, (double)c->nsubs);
	}
	/* the alerts as they stand now, not as the last tick left them (a
	 * console opened just after the start would see the database still
	 * "applying migrations" for up to a tick) */
	console_alerts_check(c);
	struct strbuf sb;
	sb_init(&sb, CONSOLE_FRAME_MAX);
	console_full(c, &sb);
	console_send(c, s, &sb);
	sb_fini(&sb);
	return true;
}

static void console_opened(struct session *s, void *ctx)
{
	(void)s, (void)ctx;
}

static void console_closed(struct session *s, void *ctx, uint16_t code)
{
	struct console *c = ctx;
	(void)code;
	for (struct console_sub **p = &c->subs; *p; p = &(*p)->next) {
		if ((*p)->s == s) {
			struct console_sub *u = *p;
			*p = u->next;
			rh_free(u);
			c->nsubs--;
			metric_set(c->m_subs, (double)c->nsubs);
			return;
		}
	}
}

/* ------------------------------------------------------------ setup */

struct console *console_new(const struct console_deps *d)
{
	struct console *c = RH_NEW(struct console);
	c->deps = *d;
	if (c->deps.interval_ms <= 0)
		c->deps.interval_ms = 1000;
	if (c->deps.window_ms <= 0)
		c->deps.window_ms = 15 * 60 * 1000;
	umap_init(&c->trips);
	console_samples_init(&c->ttm, 4096);
	console_samples_init(&c->wait, 4096);
	console_samples_init(&c->matched, 4096);
	c->m_subs = metric_cell(metrics_gauge(d->metrics, "ridehail_console_subscribers",
					      "Operator consoles subscribed to the live feed.", NULL), NULL);
	c->m_bytes = metric_cell(metrics_counter(d->metrics, "ridehail_console_sent_bytes_total",
						 "Bytes of console.update payloads sent to consoles.", NULL), NULL);
	c->m_updates = metric_cell(metrics_counter(d->metrics, "ridehail_console_updates_total",
						   "console.update messages sent to consoles.", NULL), NULL);
	static const double bounds[] = { 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1 };
	c->f_build = metrics_histogram(d->metrics, "ridehail_console_update_seconds",
				       "Time to build one console.update (every driver and changed trip), on the loop.",
				       NULL, bounds, (int)RH_ARRAY_LEN(bounds));
	c->m_build = metric_cell(c->f_build, NULL);
	static const char *const alert_label[] = { "alert", NULL };
	struct metric_family *fa = metrics_counter(d->metrics, "ridehail_console_alerts_total",
						   "Console alerts raised, by alert (request_wait, match_rate, database).",
						   alert_label);
	struct metric_family *fg = metrics_gauge(d->metrics, "ridehail_console_alert_active",
						 "1 while the console alert is raised, by alert.", alert_label);
	for (int a = 0; a < CONSOLE_ALERTS; a++) {
		c->m_alerts[a] = metric_cell(fa, (const char *const[]){ console_alert_names[a] });
		c->m_alert_active[a] = metric_cell(fg, (const char *const[]){ console_alert_names[a] });
	}
	if (d->gateway) {
		c->subscribe_type = (struct gw_message_type){ "console.subscribe", ROLE_OPERATOR,
							      console_subscribe_fields, console_on_subscribe, c };
		gateway_register(d->gateway, &c->subscribe_type);
		const struct gw_role_hooks hooks = { .opened = console_opened, .closed = console_closed, .ctx = c };
		gateway_set_role_hooks(d->gateway, ROLE_OPERATOR, &hooks);
	}
	if (d->http)
		console_files_init(d->http);
	if (d->http && d->db && d->auth) {
		c->bookings = (struct console_bookings){ .http = d->http, .db = d->db, .auth = d->auth,
							 .wall_ms = c->deps.wall_ms,
							 .currency = d->currency ? d->currency : "USD" };
		console_bookings_init(&c->bookings);
		console_reports_init(&c->bookings);
	}
	c->tick = rh_timer_new(d->timers, console_tick, c);
	rh_timer_at(c->tick, rh_timers_now(d->timers) + c->deps.interval_ms);
	return c;
}

void console_free(struct console *c)
{
	if (!c)
		return;
	rh_timer_free(c->tick);
	while (c->subs) {
		struct console_sub *u = c->subs;
		c->subs = u->next;
		rh_free(u);
	}
	struct uuid k;
	void *v;
	for (size_t i = 0; umap_next(&c->trips, &i, &k, &v);)
		rh_free(v);
	umap_fini(&c->trips);
	rh_free(c->dirty);
	rh_free(c->drv);
	rh_free(c->hits);
	console_samples_fini(&c->ttm);
	console_samples_fini(&c->wait);
	console_samples_fini(&c->matched);
	rh_free(c);
}
