/* What becomes of a suspect location (presence/gps_check.h): the count of
 * drivers turned suspect, and a driver.location.suspect event written to
 * the outbox for an operator (schemas/driver.location.suspect.v1), at most
 * one per driver a minute. presence.c decides; this only records. */
#ifndef RH_PRESENCE_SUSPECT_H
#define RH_PRESENCE_SUSPECT_H

#include <stdint.h>

#include "core/uuid.h"
#include "presence/gps_check.h"

struct db;
struct metrics;
struct presence_suspect;

/* db NULL: counted and logged, no event (tests). */
struct presence_suspect *presence_suspect_new(struct metrics *m, struct db *db);
void presence_suspect_free(struct presence_suspect *ps);
/* A driver's fix from `from` to `to` started a suspicion. wall_ms: now.
 * *last_event_ms (the driver's own, kept by the caller) paces the events. */
void presence_suspect_report(struct presence_suspect *ps, const struct uuid *driver, const struct gps_fix *from,
			     const struct gps_fix *to, const struct gps_jump *jump, int64_t wall_ms,
			     int64_t *last_event_ms);
/* Its fixes are believed again. */
void presence_suspect_recovered(struct presence_suspect *ps, const struct uuid *driver);

#endif
