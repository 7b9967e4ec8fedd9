#include "presence/suspect.h"

#include <math.h>
#include <stdio.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/strbuf.h"
#include "store/db.h"

#define SUSPECT_EVENT_EVERY_MS 60000 /* per driver */

/* An event of the driver as its own aggregate: the next number of its
 * sequence (a driver turns suspect a few times a day at most, one daemon
 * holding it). */
static struct db_stmt presence_st_suspect_event = {
	"presence_location_suspect",
	"INSERT INTO outbox (event_type, producer, correlation_id, aggregate_id, aggregate_seq, payload)"
	" SELECT 'driver.location.suspect', 'ridehaild', $1::uuid, $1::uuid,"
	"        coalesce(max(aggregate_seq), 0) + 1, $2::jsonb FROM outbox WHERE aggregate_id = $1::uuid",
	2,
};

struct presence_suspect {
	struct db *db; /* NULL: no events (tests) */
	struct metric_cell *m_suspect, *m_recovered, *m_events;
};

struct presence_suspect *presence_suspect_new(struct metrics *m, struct db *db)
{
	struct presence_suspect *ps = RH_NEW(struct presence_suspect);
	ps->db = db;
	ps->m_suspect = metric_cell(metrics_counter(m, "ridehail_presence_locations_suspect_total",
						    "Drivers whose fix implied an impossible speed or jump: out of search "
						    "and offers until their fixes are consistent again.", NULL), NULL);
	ps->m_recovered = metric_cell(metrics_counter(m, "ridehail_presence_locations_recovered_total",
						      "Suspect drivers whose fixes are believed again.", NULL), NULL);
	ps->m_events = metric_cell(metrics_counter(m, "ridehail_presence_suspect_events_total",
						   "driver.location.suspect events written to the outbox.", NULL), NULL);
	if (db)
		db_register(db, &presence_st_suspect_event);
	return ps;
}

void presence_suspect_free(struct presence_suspect *ps)
{
	rh_free(ps);
}

static void presence_suspect_written(void *arg, const struct db_result *res)
{
	if (res->err != RH_OK)
		log_warn(NULL, "presence: cannot write driver.location.suspect: %s", res->message);
}

void presence_suspect_report(struct presence_suspect *ps, const struct uuid *driver, const struct gps_fix *from,
			     const struct gps_fix *to, const struct gps_jump *jump, int64_t wall_ms,
			     int64_t *last_event_ms)
{
	char id[37], at_from[32], at_to[32];
	uuid_format(driver, id);
	metric_inc(ps->m_suspect);
	log_info(NULL, "driver %s: location not believed: %.0f m in %.1f s (%s); out of search until consistent", id,
		 jump->distance_m, jump->seconds, jump->too_far ? "too far" : "too fast");
	if (*last_event_ms && wall_ms - *last_event_ms < SUSPECT_EVENT_EVERY_MS)
		return;
	*last_event_ms = wall_ms;
	rh_format_rfc3339(from->device_ms, at_from);
	rh_format_rfc3339(to->device_ms, at_to);
	double kmh = isfinite(jump->speed_kmh) && jump->speed_kmh < 1e6 ? jump->speed_kmh : 1e6;
	struct strbuf sb;
	sb_init(&sb, 1024);
	sb_printf(&sb,
		  "{\"driver_id\":\"%s\",\"from\":{\"lat\":%.7f,\"lon\":%.7f},\"from_at\":\"%s\","
		  "\"to\":{\"lat\":%.7f,\"lon\":%.7f},\"to_at\":\"%s\",\"distance_m\":%.0f,\"seconds\":%.3f,"
		  "\"speed_kmh\":%.1f,\"reason\":\"%s\"}",
		  id, from->lat, from->lon, at_from, to->lat, to->lon, at_to, jump->distance_m,
		  jump->seconds > 0 ? jump->seconds : 0, kmh, jump->too_far ? "too_far" : "too_fast");
	const char *params[] = { id, sb.buf };
	if (ps->db) {
		db_query(ps->db, &presence_st_suspect_event, params, presence_suspect_written, NULL);
		metric_inc(ps->m_events);
	}
	sb_fini(&sb);
}

void presence_suspect_recovered(struct presence_suspect *ps, const struct uuid *driver)
{
	char id[37];
	uuid_format(driver, id);
	metric_inc(ps->m_recovered);
	log_info(NULL, "driver %s: locations consistent again; back in search", id);
}
