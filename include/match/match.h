/* Dispatch: finds a driver for every SEARCHING trip and follows the trip
 * live until it ends.
 *
 * Candidates are the nearest available, fresh drivers of the trip's vehicle
 * type with an open socket, scored by pickup ETA, idle time and predicted
 * acceptance. The best (match.parallel_offers at once) get a ride.offer; a
 * driver is reserved first with an optimistic update on (status, version)
 * in PostgreSQL (zero rows: someone else has them, next one). The first
 * valid offer.accept moves the trip to MATCHED through the trip state
 * machine (which checks the driver's version again), and the other offers
 * are withdrawn. Declines and timeouts free the driver and the cascade
 * goes on, widening the radius step by step (match.radius_steps). With no
 * candidate anywhere the trip waits, first in line for drivers freed nearby,
 * up to match.max_search, then is cancelled with reason no_drivers.
 *
 * Once matched: the driver's trip commands over the WebSocket (trip.arrived,
 * trip.started, trip.completed, trip.cancel), metering of distance and time
 * from the driver's pings while IN_PROGRESS, and the rider's live view
 * (trip.matched, driver.location, trip.state_changed, trip.search_progress),
 * every message to a rider numbered per trip and replayable after a
 * reconnect (rider.subscribe with last_seq).
 *
 * Rides for later (SCHEDULED) are not searched until match.schedule_lead
 * before their time: the matcher's scheduler then moves them to SEARCHING
 * through the trip module and the search starts as for any request. A
 * dispatcher's booking waits match.booking_max_wait instead of
 * match.max_search.
 *
 * At start, once the database is ready, it recovers: drivers left reserved
 * are released, SEARCHING trips are searched again, SCHEDULED ones go back
 * on the scheduler (started at once if their time came while the daemon was
 * down), matched and running trips carry on. docs/websocket.md has the
 * messages.
 *
 * It follows trips by listening to the trip module (trips_listen) and
 * changes them only through trip_change(); drivers' status is presence's,
 * asked for (presence_reserve, presence_release); sessions are the
 * gateway's, found by account. */
#ifndef RH_MATCH_MATCH_H
#define RH_MATCH_MATCH_H

#include <stdbool.h>

struct rh_timers;
struct metrics;
struct db;
struct gateway;
struct presence;
struct trips;
struct pricing;
struct match_cfg;
struct tariff_cfg;
struct trip_supply;
struct matcher;

struct matcher_deps {
	struct rh_timers *timers;
	struct metrics *metrics;
	struct db *db;
	struct gateway *gateway;
	struct presence *presence;
	struct trips *trips;
	struct pricing *pricing; /* pickup ETAs */
	const struct match_cfg *cfg;
	int64_t driver_lost_after_ms; /* trip.driver_lost_after */
	int64_t (*wall_ms)(void);     /* the wall clock (scheduled rides are in it) */
};
struct matcher *matcher_new(const struct matcher_deps *d);
void matcher_free(struct matcher *m);
/* The trip module's question before a ride request (trips_set_supply): is
 * a driver of this type online near the pickup, within the largest search
 * radius? Busy drivers count: they will be free soon. */
void matcher_supply(struct matcher *m, struct trip_supply *out);

#endif
