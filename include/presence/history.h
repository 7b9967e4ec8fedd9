/* Location history, the cold path: points go into a bounded ring in memory
 * (O(1), never blocks, never allocates) and a timer writes them to
 * PostgreSQL in batches (one multi-row INSERT per batch). When the database
 * is slow or away, points wait in the ring (a batch it did not take goes
 * back in front); only when the ring is full are the oldest dropped, and
 * counted: the hot path never waits, and an outage shorter than the ring
 * loses nothing (the meter rebuilt after a restart reads these points).
 *
 * Also owns the daily partitions of driver_locations: created days ahead,
 * dropped after presence.history_retention. */
#ifndef RH_PRESENCE_HISTORY_H
#define RH_PRESENCE_HISTORY_H

#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct metrics;
struct db;
struct presence_cfg;
struct history;

enum history_source { SOURCE_GPS = 0, SOURCE_NETWORK, SOURCE_MANUAL };

struct history_point {
	unsigned char driver[16];
	unsigned char trip[16];
	bool has_trip;
	int64_t recv_ms;   /* server wall clock */
	int64_t device_ms; /* device timestamp; 0 if unknown */
	double lat, lon;
	float heading, speed, accuracy; /* < 0: unknown */
	uint8_t source;
};

/* NULL when presence.history is off (or there is no database). */
struct history *history_new(struct event_base *base, struct metrics *m, struct db *db,
			    const struct presence_cfg *cfg);
void history_push(struct history *h, const struct history_point *p);
/* Points waiting, and the age in ms of the oldest (0 if none). */
int history_depth(const struct history *h);
/* Shutdown: one last flush of what is queued (bounded by the pool's own
 * shutdown), then stop the timers. */
void history_flush_now(struct history *h);
void history_free(struct history *h);

#endif
