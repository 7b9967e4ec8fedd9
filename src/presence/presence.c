/* Driver records: made on a driver's first session or fix, found by id
 * (open addressing over slot numbers), kept in chunks that never move; their
 * status, written here and only here; what searches ask of them; eviction of
 * drivers who stopped sending; and what trips did to their drivers. */
#include "presence_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/timer.h"
#include "geo/grid.h"
#include "presence/suspect.h"
#include "store/db.h"
#include "trip/trip.h"

#define PRESENCE_SWEEP_MS 1000
#define PRESENCE_SWEEP_BUDGET 20000 /* slots examined per sweep tick */

static const char *const presence_status_names[] = { "offline", "available", "offered", "en_route", "on_trip",
						     "unreachable" };

const char *driver_status_name(enum driver_status s)
{
	return (unsigned)s < RH_ARRAY_LEN(presence_status_names) ? presence_status_names[s] : "?";
}

int driver_status_parse(const char *s)
{
	for (int i = 0; i < DRIVER_UNREACHABLE; i++)
		if (s && strcmp(s, presence_status_names[i]) == 0)
			return i;
	return -1;
}

int presence_vehicle_index(const struct presence *p, const char *type)
{
	return tariff_find(p->deps.tariffs, p->deps.ntariffs, type);
}

int64_t presence_now(const struct presence *p)
{
	return rh_timers_now(p->deps.timers);
}

/* ------------------------------------------------------------ records */

#define REC_CHUNK_BITS 12
#define REC_CHUNK (1u << REC_CHUNK_BITS)

struct driver_rec *presence_rec_at(const struct presence *p, uint32_t slot)
{
	return &p->chunks[slot >> REC_CHUNK_BITS][slot & (REC_CHUNK - 1)];
}

static uint32_t presence_uuid_hash(const struct uuid *u)
{
	uint32_t h;
	memcpy(&h, u->b + 12, 4); /* random bits of a v4 uuid; mixed anyway */
	h ^= (uint32_t)u->b[0] << 24 | (uint32_t)u->b[5] << 16 | (uint32_t)u->b[9] << 8 | u->b[3];
	h *= 0x9e3779b1u;
	return h;
}

struct driver_rec *presence_rec_find(struct presence *p, const struct uuid *id)
{
	if (!p->index_cap)
		return NULL;
	uint32_t mask = p->index_cap - 1;
	for (uint32_t i = presence_uuid_hash(id) & mask;; i = (i + 1) & mask) {
		uint32_t e = p->index[i];
		if (e == 0)
			return NULL;
		if (e != UINT32_MAX && uuid_eq(&presence_rec_at(p, e - 1)->id, id))
			return presence_rec_at(p, e - 1);
	}
}

static void presence_index_insert(struct presence *p, uint32_t slot);

static void presence_index_grow(struct presence *p)
{
	uint32_t *old = p->index, oldcap = p->index_cap;
	p->index_cap = oldcap ? oldcap * 2 : 1024;
	p->index = rh_calloc(p->index_cap, sizeof *p->index);
	p->index_used = 0;
	for (uint32_t i = 0; i < oldcap; i++)
		if (old[i] && old[i] != UINT32_MAX)
			presence_index_insert(p, old[i] - 1);
	rh_free(old);
}

static void presence_index_insert(struct presence *p, uint32_t slot)
{
	if ((p->index_used + 1) * 2 > p->index_cap)
		presence_index_grow(p);
	uint32_t mask = p->index_cap - 1;
	uint32_t i = presence_uuid_hash(&presence_rec_at(p, slot)->id) & mask;
	while (p->index[i] != 0 && p->index[i] != UINT32_MAX)
		i = (i + 1) & mask;
	if (p->index[i] == 0)
		p->index_used++;
	p->index[i] = slot + 1;
}

static void presence_index_remove(struct presence *p, uint32_t slot)
{
	uint32_t mask = p->index_cap - 1;
	for (uint32_t i = presence_uuid_hash(&presence_rec_at(p, slot)->id) & mask;; i = (i + 1) & mask) {
		if (p->index[i] == slot + 1) {
			p->index[i] = UINT32_MAX;
			return;
		}
		if (p->index[i] == 0)
			return;
	}
}

struct driver_rec *presence_rec_new(struct presence *p, const struct uuid *id)
{
	uint32_t slot;
	if (p->nfree) {
		slot = p->free_slots[--p->nfree];
	} else {
		if (p->nrecs == p->cfg->max_drivers)
			return NULL;
		if (p->nrecs == p->cap) {
			uint32_t n = p->cap >> REC_CHUNK_BITS;
			p->chunks = rh_realloc(p->chunks, (size_t)(n + 1) * sizeof *p->chunks);
			p->chunks[n] = rh_calloc(REC_CHUNK, sizeof **p->chunks);
			p->cap += REC_CHUNK;
			p->free_slots = rh_realloc(p->free_slots, (size_t)p->cap * sizeof *p->free_slots);
		}
		slot = p->nrecs++;
	}
	struct driver_rec *r = presence_rec_at(p, slot);
	memset(r, 0, sizeof *r);
	r->id = *id;
	r->slot = slot;
	r->used = true;
	r->heading = r->speed = r->accuracy = -1;
	r->last_heard_ms = presence_now(p);
	presence_index_insert(p, slot);
	metric_add(p->m_records, 1);
	return r;
}

struct driver_rec *presence_rec_get(struct presence *p, const struct uuid *id)
{
	struct driver_rec *r = presence_rec_find(p, id);
	return r ? r : presence_rec_new(p, id);
}

static void presence_rec_free(struct presence *p, struct driver_rec *r)
{
	if (r->in_grid && geo_grid_remove(p->grid, r->slot) == RH_OK)
		r->in_grid = false;
	presence_index_remove(p, r->slot);
	r->used = false;
	p->free_slots[p->nfree++] = r->slot;
	metric_add(p->m_records, -1);
}

/* What the grid filters on: the database status while the driver can be
 * reached (an open socket, or an app on the HTTP fallback that keeps sending
 * locations: staleness covers it when it stops). */
static uint8_t presence_grid_status(const struct driver_rec *r)
{
	return r->connected || r->http_mode ? (uint8_t)r->status : DRIVER_UNREACHABLE;
}

void presence_rec_sync_grid(struct presence *p, struct driver_rec *r)
{
	if (r->in_grid && geo_grid_set_status(p->grid, r->slot, presence_grid_status(r)) != RH_OK)
		log_error(NULL, "presence: grid status update failed");
}

bool presence_rec_set_status(struct presence *p, struct driver_rec *r, enum driver_status st, int64_t version,
			     int64_t now)
{
	if (version < r->version)
		return false; /* an older answer arriving late */
	bool freed = st == DRIVER_AVAILABLE && r->status != DRIVER_AVAILABLE;
	if (freed)
		r->available_since_ms = now;
	r->status = st;
	r->version = version;
	presence_rec_sync_grid(p, r);
	if (freed && p->hooks.available)
		p->hooks.available(p->hooks.ctx, &r->id, now);
	return true;
}

void presence_rec_set_connected(struct presence *p, struct driver_rec *r, bool connected)
{
	if (r->connected == connected)
		return;
	r->connected = connected;
	r->last_heard_ms = presence_now(p);
	if (connected) {
		p->connected++;
		r->http_mode = false;
	} else {
		p->connected--;
	}
	metric_set(p->m_connected, p->connected);
	/* Out of searches at once without a socket (no offers); the position
	 * stays so a reconnect within evict_after is seamless. */
	presence_rec_sync_grid(p, r);
}

void presence_tell_status(struct presence *p, const struct driver_rec *r, const char *reason, const char *correlation)
{
	struct session *s = p->deps.gateway ? gateway_session_of(p->deps.gateway, &r->id) : NULL;
	if (!s)
		return;
	char id[37];
	uuid_format(&r->id, id);
	cJSON *pl = cJSON_CreateObject();
	cJSON_AddStringToObject(pl, "driver_id", id);
	cJSON_AddStringToObject(pl, "status", driver_status_name(r->status));
	cJSON_AddNumberToObject(pl, "version", (double)r->version);
	cJSON_AddStringToObject(pl, "reason", reason);
	gateway_send(s, "driver.status.changed", pl, correlation);
}

bool presence_driver_load(struct presence *p, const struct uuid *driver, int vehicle, enum driver_status st,
			  int64_t version, int64_t now)
{
	struct driver_rec *r = presence_rec_get(p, driver);
	if (!r)
		return false;
	r->vehicle = vehicle;
	r->http_mode = !r->connected;
	presence_rec_set_status(p, r, st, version, now);
	return true;
}

/* ------------------------------------------------------------ what trips did */

/* A trip changed: where its driver stands now. The state machine moved the
 * driver in the same transaction (driver_version says to which version);
 * presence follows, and remembers the trip they are on (their fixes go to
 * the location hook, their history rows carry the trip). */
static void presence_trip_changed(void *ctx, const struct trip_event *e)
{
	struct presence *p = ctx;
	const struct trip *t = e->trip;
	bool active = trip_state_is_active(t->state);
	/* A driver on a trip has a record even before they connect (read
	 * back at start): their first fix must reach the trip's meter. */
	struct driver_rec *r = !t->has_driver ? NULL
			     : active	   ? presence_rec_get(p, &t->driver)
					   : presence_rec_find(p, &t->driver);
	if (!r)
		return;
	if (active) {
		r->has_trip = true;
		r->trip = t->id;
	} else if (r->has_trip && uuid_eq(&r->trip, &t->id)) {
		r->has_trip = false;
		memset(&r->trip, 0, sizeof r->trip);
	}
	if (e->driver_version >= 0) {
		enum driver_status st = t->state == TRIP_MATCHED || t->state == TRIP_ARRIVED ? DRIVER_EN_ROUTE
				      : t->state == TRIP_IN_PROGRESS			 ? DRIVER_ON_TRIP
											 : DRIVER_AVAILABLE;
		presence_rec_set_status(p, r, st, e->driver_version, presence_now(p));
	}
	if (!active && !r->connected && !r->in_grid && !r->http_mode && !r->reserving && !r->unsure)
		presence_rec_free(p, r); /* never came back: nothing left to know */
}


void presence_trip_listener(struct presence *p, struct trip_listener *out)
{
	out->changed = presence_trip_changed;
	out->ctx = p;
}

/* ------------------------------------------------------------ eviction */

static struct db_stmt presence_st_evict = {
	"presence_driver_evict",
	"UPDATE drivers SET status = 'offline', version = version + 1, updated_at = now()"
	" WHERE id = $1 AND status = 'available' RETURNING version",
	1,
};

static void presence_evicted_written(void *arg, const struct db_result *res)
{
	(void)arg;
	(void)res; /* best effort: the next login reloads the row anyway */
}

/* The driver's account stopped standing (disabled or deleted, auth): out of
 * the grid (off the console's map, out of searches) at once, and offline in
 * the database when it was only available. A driver with a trip or a
 * reservation under way keeps it (docs/api.md): the trip module ends it. */
void presence_driver_withdraw(struct presence *p, const struct uuid *driver)
{
	struct driver_rec *r = presence_rec_find(p, driver);
	if (!r || r->has_trip || r->reserving || (r->status != DRIVER_AVAILABLE && r->status != DRIVER_OFFLINE))
		return;
	char id[37];
	uuid_format(&r->id, id);
	if (r->in_grid && geo_grid_remove(p->grid, r->slot) == RH_OK)
		r->in_grid = false;
	if (r->status == DRIVER_AVAILABLE) {
		const char *params[] = { id };
		if (p->deps.db)
			db_query(p->deps.db, &presence_st_evict, params, presence_evicted_written, NULL);
		r->status = DRIVER_OFFLINE;
	}
	log_info(NULL, "driver %s withdrawn: the account no longer stands", id);
	if (!r->connected && !r->unsure)
		presence_rec_free(p, r);
}

static void presence_sweep(void *arg, int64_t now)
{
	struct presence *p = arg;
	uint32_t evicted[1024];
	size_t n = geo_grid_sweep_stale(p->grid, now, p->cfg->evict_after_ms, PRESENCE_SWEEP_BUDGET, evicted,
					RH_ARRAY_LEN(evicted));
	for (size_t i = 0; i < n; i++) {
		struct driver_rec *r = presence_rec_at(p, evicted[i]);
		char id[37];
		r->in_grid = false;
		metric_inc(p->m_evictions);
		uuid_format(&r->id, id);
		if (r->status == DRIVER_AVAILABLE) {
			const char *params[] = { id };
			if (p->deps.db)
				db_query(p->deps.db, &presence_st_evict, params, presence_evicted_written, NULL);
			r->status = DRIVER_OFFLINE;
		}
		log_info(NULL, "driver %s evicted: no location for %lld s", id, (long long)(p->cfg->evict_after_ms / 1000));
		if (!r->connected && !r->has_trip && !r->reserving && !r->unsure)
			presence_rec_free(p, r);
	}
	metric_set(p->m_grid, (double)geo_grid_count(p->grid));
	metric_set(p->m_cells, (double)geo_grid_cell_count(p->grid));
	rh_timer_at(p->sweep, now + PRESENCE_SWEEP_MS);
}

/* ------------------------------------------------------------ questions */

/* The grid's k nearest fresh drivers in any status of status_mask. */
static size_t presence_grid_nearest(struct presence *p, double lat, double lon, double radius_m, uint32_t status_mask,
				    uint32_t vehicle_mask, int64_t now, struct geo_grid_hit *hits, size_t k)
{
	struct geo_grid_filter f = {
		.status_mask = status_mask,
		.vehicle_mask = (uint16_t)vehicle_mask,
		.now_ms = now,
		.stale_after_ms = p->cfg->stale_after_ms,
	};
	size_t n = 0;
	if (geo_grid_nearest(p->grid, lat, lon, radius_m, &f, hits, k, &n) != RH_OK)
		return 0;
	return n;
}

static struct presence_hit presence_hit_make(const struct driver_rec *r, double dist_m, int64_t now)
{
	return (struct presence_hit){
		.driver = r->id, .dist_m = dist_m, .lat = r->lat, .lon = r->lon, .heading = r->heading,
		.vehicle = r->vehicle, .status = r->status, .version = r->version, .ping_age_ms = now - r->last_ping_ms,
		.idle_ms = r->status == DRIVER_AVAILABLE ? now - r->available_since_ms : 0,
		.offers = r->offers, .accepts = r->accepts, .slot = r->slot, .accuracy_m = r->accuracy,
	};
}

size_t presence_nearest(struct presence *p, double lat, double lon, double radius_m, enum driver_status status,
			uint32_t vehicle_mask, int64_t now, struct presence_hit *out, size_t k)
{
	struct geo_grid_hit hits[256];
	if (k > RH_ARRAY_LEN(hits))
		k = RH_ARRAY_LEN(hits);
	size_t n = presence_grid_nearest(p, lat, lon, radius_m, 1u << status, vehicle_mask, now, hits, k);
	for (size_t i = 0; i < n; i++)
		out[i] = presence_hit_make(presence_rec_at(p, hits[i].slot), hits[i].dist_m, now);
	return n;
}

bool presence_hit_of(struct presence *p, const struct uuid *driver, enum driver_status status, int64_t now,
		     struct presence_hit *out)
{
	const struct driver_rec *r = presence_rec_find(p, driver);
	/* the grid's own filter (geo_knn_scan_cell) on this one record */
	if (!r || !r->in_grid || presence_grid_status(r) != status || now - r->last_ping_ms >= p->cfg->stale_after_ms)
		return false;
	*out = presence_hit_make(r, 0, now);
	return true;
}

size_t presence_count(struct presence *p, double lat, double lon, double radius_m, uint32_t status_mask,
		      uint32_t vehicle_mask, int64_t now, size_t max)
{
	struct geo_grid_hit hits[64];
	if (max > RH_ARRAY_LEN(hits))
		max = RH_ARRAY_LEN(hits);
	return presence_grid_nearest(p, lat, lon, radius_m, status_mask, vehicle_mask, now, hits, max);
}

size_t presence_each(struct presence *p, enum driver_status status, int64_t now,
		     void (*fn)(void *ctx, double lat, double lon, int vehicle), void *ctx)
{
	size_t n = 0;
	for (uint32_t slot = 0; slot < p->nrecs; slot++) {
		const struct driver_rec *r = presence_rec_at(p, slot);
		/* as presence_hit_of() asks of one record */
		if (!r->used || !r->in_grid || presence_grid_status(r) != status ||
		    now - r->last_ping_ms >= p->cfg->stale_after_ms)
			continue;
		fn(ctx, r->lat, r->lon, r->vehicle);
		n++;
	}
	return n;
}

bool presence_driver(struct presence *p, const struct uuid *driver, struct presence_hit *out)
{
	struct driver_rec *r = presence_rec_find(p, driver);
	if (!r)
		return false;
	*out = presence_hit_make(r, 0, r->last_ping_ms);
	return true;
}

int64_t presence_gone_ms(struct presence *p, const struct uuid *driver, int64_t now)
{
	const struct driver_rec *r = presence_rec_find(p, driver);
	if (!r)
		return -1;
	if (r->connected)
		return 0;
	int64_t heard = r->last_ping_ms > r->last_heard_ms ? r->last_ping_ms : r->last_heard_ms;
	return now > heard ? now - heard : 0;
}

size_t presence_list(struct presence *p, int64_t now, struct presence_hit *out, size_t max)
{
	size_t n = 0;
	for (uint32_t slot = 0; slot < p->nrecs && n < max; slot++) {
		const struct driver_rec *r = presence_rec_at(p, slot);
		if (r->used && r->in_grid && r->status != DRIVER_OFFLINE)
			out[n++] = presence_hit_make(r, 0, now);
	}
	return n;
}

size_t presence_records(const struct presence *p)
{
	return p->nrecs;
}

void presence_note_offer(struct presence *p, const struct uuid *driver, bool accepted)
{
	struct driver_rec *r = presence_rec_find(p, driver);
	if (!r)
		return;
	if (accepted)
		r->accepts++;
	else
		r->offers++;
}

/* ------------------------------------------------------------ setup */

void presence_set_hooks(struct presence *p, const struct presence_hooks *h)
{
	p->hooks = *h;
}

static void presence_collect(void *arg)
{
	struct presence *p = arg;
	metric_set(p->m_grid, (double)geo_grid_count(p->grid));
	metric_set(p->m_cells, (double)geo_grid_cell_count(p->grid));
}

static void presence_metrics_init(struct presence *p, struct metrics *m)
{
	static const char *const reason_label[] = { "reason", NULL };
	p->m_pings = metric_cell(metrics_counter(m, "ridehail_presence_pings_total", "Location updates applied to the grid.", NULL), NULL);
	p->f_ignored = metrics_counter(m, "ridehail_presence_pings_ignored_total", "Valid location updates not applied, by reason (out_of_order, implausible).", reason_label);
	p->m_throttled = metric_cell(metrics_counter(m, "ridehail_presence_pings_throttled_total", "Location updates dropped for exceeding presence.max_pings_per_s.", NULL), NULL);
	p->m_connected = metric_cell(metrics_gauge(m, "ridehail_presence_connected_drivers", "Drivers with an open WebSocket session.", NULL), NULL);
	p->m_grid = metric_cell(metrics_gauge(m, "ridehail_presence_grid_drivers", "Drivers in the grid (with a recent position).", NULL), NULL);
	p->m_cells = metric_cell(metrics_gauge(m, "ridehail_presence_grid_cells", "Non-empty grid cells.", NULL), NULL);
	p->m_records = metric_cell(metrics_gauge(m, "ridehail_presence_driver_records", "Driver records held in memory.", NULL), NULL);
	p->m_evictions = metric_cell(metrics_counter(m, "ridehail_presence_stale_evictions_total", "Drivers dropped from the grid after presence.evict_after without a location.", NULL), NULL);
	metrics_on_collect(m, presence_collect, p);
}

struct presence *presence_new(const struct presence_deps *d)
{
	struct presence *p = RH_NEW(struct presence);
	p->deps = *d;
	p->cfg = d->cfg;
	struct geo_grid_config gc = { .bits = (unsigned)p->cfg->grid_bits, .max_slots = (uint32_t)p->cfg->max_drivers,
				      .initial_slots = 1024 };
	if (geo_grid_new(&gc, &p->grid) != RH_OK) {
		log_error(NULL, "presence: cannot create the grid");
		abort();
	}
	randombytes_buf(p->fuzz_key, sizeof p->fuzz_key);
	presence_metrics_init(p, d->metrics);
	p->gps_cfg = (struct gps_check_cfg){ .max_speed_kmh = p->cfg->gps_max_speed_kmh,
					     .max_jump_m = (double)p->cfg->gps_max_jump_m,
					     .recover_fixes = (int)p->cfg->gps_recover_fixes };
	p->suspect = presence_suspect_new(d->metrics, d->db);
	p->history = d->base ? history_new(d->base, d->metrics, d->db, p->cfg) : NULL;
	p->sweep = rh_timer_new(d->timers, presence_sweep, p);
	rh_timer_at(p->sweep, presence_now(p) + PRESENCE_SWEEP_MS);
	if (d->db) {
		db_register(d->db, &presence_st_evict);
		db_register(d->db, &presence_st_driver_load);
	}
	presence_reserve_init(p);
	if (d->gateway) {
		presence_pings_init(p);
		presence_drivers_init(p);
	}
	if (d->http)
		presence_api_init(p);
	return p;
}

void presence_stop(struct presence *p)
{
	if (p)
		history_flush_now(p->history);
}

void presence_free(struct presence *p)
{
	if (!p)
		return;
	presence_reserve_fini(p);
	rh_timer_free(p->sweep);
	history_free(p->history);
	presence_suspect_free(p->suspect);
	geo_grid_free(p->grid);
	for (uint32_t i = 0; i < p->cap >> REC_CHUNK_BITS; i++)
		rh_free(p->chunks[i]);
	rh_free(p->chunks);
	rh_free(p->free_slots);
	rh_free(p->index);
	rh_free(p);
}
