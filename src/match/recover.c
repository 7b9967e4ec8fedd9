/* At start, once the database is ready: the drivers the last run left
 * reserved are released (offers do not survive a restart), then every
 * active trip is read back through the trip module (its listeners rebuild:
 * SEARCHING trips are searched again, assigned ones carry on), then the
 * meters of trips in progress resume from the location history. One daemon
 * per city: a second daemon on the same drivers would need a lease here. */
#include <stdio.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/strbuf.h"
#include "core/timer.h"
#include "match_internal.h"
#include "presence/presence.h"
#include "store/db.h"

#define MATCH_RECOVER_POLL_MS 200
#define MATCH_RECOVER_RETRY_MS 1000
#define MATCH_RECOVER_MAX_OFFERS 65536

/* The meters of trips in progress, from their location history: the time
 * since the start, the length driven, and the last fix recorded (to join the
 * fixes after the restart to). */
static struct db_stmt match_st_meters = {
	"match_meters",
	"SELECT t.id, (extract(epoch FROM now() - t.started_at) * 1000)::bigint,"
	" COALESCE((SELECT ST_Length(ST_MakeLine(l.location::geometry ORDER BY l.recorded_at)::geography)"
	"           FROM driver_locations l WHERE l.trip_id = t.id AND l.recorded_at >= t.started_at), 0),"
	" last.lat, last.lon, last.ms"
	" FROM trips t LEFT JOIN LATERAL (SELECT ST_Y(l.location::geometry) AS lat, ST_X(l.location::geometry) AS lon,"
	"   (extract(epoch FROM COALESCE(l.device_at, l.recorded_at)) * 1000)::bigint AS ms FROM driver_locations l"
	"   WHERE l.trip_id = t.id AND l.recorded_at >= t.started_at ORDER BY l.recorded_at DESC LIMIT 1) last ON true"
	" WHERE t.id = ANY ($1::uuid[]) AND t.state = 'IN_PROGRESS'",
	1,
};

static void match_recover_tick(void *arg, int64_t now);

static void match_recover_later(struct matcher *m, int64_t ms)
{
	rh_timer_at(m->recover_timer, match_now(m) + ms);
}

static void match_meters_read(void *arg, const struct db_result *res)
{
	struct matcher *m = arg;
	if (res->err != RH_OK) {
		log_warn(NULL, "match: cannot read the meters of trips in progress (%s); retrying", res->message);
		match_recover_later(m, MATCH_RECOVER_RETRY_MS);
		return;
	}
	int64_t now = match_now(m);
	for (int i = 0; i < db_rows(res); i++) {
		struct uuid id;
		struct ride *r = uuid_parse(db_get(res, i, 0), &id) ? umap_get(&m->rides, &id) : NULL;
		if (!r || !r->meter.resuming)
			continue;
		bool has_last = db_get(res, i, 3) != NULL;
		match_meter_resume(&r->meter, m->cfg, now, atoll(db_get(res, i, 1)), atof(db_get(res, i, 2)), has_last,
				   has_last ? atof(db_get(res, i, 3)) : 0, has_last ? atof(db_get(res, i, 4)) : 0,
				   has_last ? atoll(db_get(res, i, 5)) : 0);
	}
	/* (a trip that ended meanwhile was freed, or its meter restarted) */
	size_t i = 0;
	struct uuid k;
	void *v;
	while (umap_next(&m->rides, &i, &k, &v)) {
		struct ride *r = v;
		if (r->meter.resuming)
			r->meter.resuming = false;
	}
}

/* The trips in progress read back: their meters, from the history. */
static void match_meters_resume(struct matcher *m)
{
	struct strbuf sb;
	sb_init(&sb, 1u << 24);
	sb_putc(&sb, '{');
	size_t i = 0;
	struct uuid k;
	void *v;
	while (umap_next(&m->rides, &i, &k, &v)) {
		struct ride *r = v;
		if (!r->meter.resuming)
			continue;
		if (sb.len > 1)
			sb_putc(&sb, ',');
		sb_puts(&sb, r->trip_s);
	}
	sb_putc(&sb, '}');
	if (sb.len > 2) {
		const char *params[] = { sb.buf };
		db_query(m->deps.db, &match_st_meters, params, match_meters_read, m);
	}
	sb_fini(&sb);
}

static void match_active_loaded(void *arg, int n)
{
	struct matcher *m = arg;
	if (n < 0) {
		match_recover_later(m, MATCH_RECOVER_RETRY_MS);
		return;
	}
	int searching, waiting;
	dispatch_counts(m->dispatch, &searching, &waiting);
	log_info(NULL, "match: resumed %d active trips (%d searching)", n, searching);
	m->recovered = true;
	match_meters_resume(m);
}

static void match_released_stale(void *arg, bool ok)
{
	struct matcher *m = arg;
	if (!ok) {
		match_recover_later(m, MATCH_RECOVER_RETRY_MS);
		return;
	}
	/* Only now may this run reserve anyone: a reservation made while the
	 * release was on its way could have been released by it. Trips
	 * requested meanwhile start their search here. */
	dispatch_open(m->dispatch, match_now(m));
	trips_load_active(m->deps.trips, match_active_loaded, m);
}

static void match_recover_tick(void *arg, int64_t now)
{
	struct matcher *m = arg;
	(void)now;
	if (!db_is_ready(m->deps.db, NULL, 0)) {
		match_recover_later(m, MATCH_RECOVER_POLL_MS);
		return;
	}
	if (m->recovered) {
		match_meters_resume(m); /* (only the meters were left to read) */
		return;
	}
	if (!m->cfg->automatic) {
		match_released_stale(m, true);
		return;
	}
	/* minus the offers this run has made: none the first time, as
	 * dispatch waits for the release, but this runs again when loading
	 * the active trips failed */
	struct uuid *keep = rh_calloc(MATCH_RECOVER_MAX_OFFERS, sizeof *keep);
	size_t n = dispatch_offered_drivers(m->dispatch, keep, MATCH_RECOVER_MAX_OFFERS);
	presence_release_stale(m->deps.presence, keep, n, match_released_stale, m);
	rh_free(keep);
}

void match_recover_start(struct matcher *m)
{
	db_register(m->deps.db, &match_st_meters);
	m->recover_timer = rh_timer_new(m->deps.timers, match_recover_tick, m);
	match_recover_later(m, 0);
}
