/* Inside src/match: the rides it follows and what its files share.
 *
 *   match.c     the module: the rides it follows (one per active trip), what
 *               trips and presence tell it, and the world dispatch asks
 *   dispatch.c  the search for a driver, without I/O (include/match/dispatch.h)
 *   batch.c     dispatch's batch mode: a window's trips assigned together
 *   assign.c    the assignment solver batch mode uses (include/match/assign.h)
 *   reposition.c, suggest.c  repositioning: its arithmetic, without I/O
 *               (include/match/reposition.h), and the daemon's side
 *   feed.c      the rider's live feed: numbered messages, replay, snapshot
 *   commands.c  the driver's commands over the WebSocket (offers, trip steps)
 *   meter.c     the fare meter: distance from the driver's own fixes
 *   recover.c   at start: the last run's reservations, the active trips
 *   lost.c      live trips whose driver is gone: flagged for the operator
 *   schedule.c  rides for later: when each one's search is due, one timer */
#ifndef RH_MATCH_INTERNAL_H
#define RH_MATCH_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "core/settings.h"
#include "core/strbuf.h"
#include "core/umap.h"
#include "match/dispatch.h"
#include "match/match.h"
#include "trip/trip.h"

struct session;
struct strbuf;
struct metric_family;
struct metric_cell;
struct rh_timer;
struct gw_message_type;
struct cJSON;
struct match_check;
struct match_feed_asks;
struct ride;

/* ------------------------------------------------------------ meter.c */

/* The fare meter of a trip in progress: distance from the driver's fixes,
 * a fix too inaccurate or implying an impossible speed (a jump) left out.
 * Pure: the fixes and the times come in. */
struct match_meter {
	bool running;
	bool resuming;      /* read back after a restart: the distance so far is on its way */
	bool has_last;
	double lat, lon;    /* the last fix counted */
	int64_t device_ms;  /* its device time */
	double dist_m;
	int64_t started_at; /* monotonic ms */
	bool has_first;     /* the first fix counted, to join a resumed meter to */
	double first_lat, first_lon;
	int64_t first_ms;
};
void match_meter_start(struct match_meter *mt, int64_t now);
/* Carries on after a restart: started `elapsed_ms` ago, dist_m driven up to
 * the last fix the history recorded (has_last false: none), joined to what
 * the meter counted since it was read back. */
void match_meter_resume(struct match_meter *mt, const struct match_cfg *cfg, int64_t now, int64_t elapsed_ms,
			double dist_m, bool has_last, double lat, double lon, int64_t device_ms);
void match_meter_fix(struct match_meter *mt, const struct match_cfg *cfg, double lat, double lon, float accuracy_m,
		     int64_t device_ms);
int64_t match_meter_duration_s(const struct match_meter *mt, int64_t now);

/* ------------------------------------------------------------ schedule.c */

/* SCHEDULED trips by the wall-clock time their search is due, and a timer
 * for the soonest: due() hears each trip when its time comes (taken out
 * first). Both clocks are passed in: the timers source the timer runs on,
 * and wall_ms (scheduled_at's clock). */
struct match_schedule_hooks {
	int64_t (*wall_ms)(void *ctx);
	void (*due)(void *ctx, const struct uuid *trip);
	void *ctx;
};
struct match_schedule;
struct match_schedule *match_schedule_new(struct rh_timers *timers, const struct match_schedule_hooks *h);
void match_schedule_free(struct match_schedule *s);
/* trip's search is due at `due` (wall ms; past: at the next loop turn);
 * a trip put again moves. */
void match_schedule_put(struct match_schedule *s, const struct uuid *trip, int64_t due);
/* false: it was not there. */
bool match_schedule_del(struct match_schedule *s, const struct uuid *trip);
size_t match_schedule_count(const struct match_schedule *s);
/* The soonest due time (wall ms), or -1 when none. */
int64_t match_schedule_next(const struct match_schedule *s);
/* The matcher's scheduler (m->schedule): a due trip is moved to SEARCHING
 * through the trip module (the listener then starts its search). */
void match_scheduled_init(struct matcher *m);
/* r (SCHEDULED) searched match.schedule_lead before its scheduled_at. */
void match_scheduled_add(struct matcher *m, const struct ride *r);

/* ------------------------------------------------------------ feed.c */

/* A message kept for a rider's replay. */
struct match_feed_msg {
	int64_t seq;
	char type[32];
	struct strbuf payload; /* JSON text, version 1; its buffer kept for the
				* message that takes the slot next */
	int lon_at;    /* where its "lon" key is, which version 2 spells "lng"; -1: none */
};
/* A message waiting for its number: its payload without trip_id and seq. */
struct match_feed_held {
	char type[32];
	char *body;
	int lon_at; /* as in match_feed_msg */
};
/* A trip's messages to its rider, numbered; the last few kept. Numbers only
 * go forward, across restarts too: they are given up to a ceiling reserved
 * in the database (rider_feed_seq) a block at a time, and a trip read back
 * after a restart starts from its last ceiling, a number no rider has seen;
 * messages wait (held) while a ceiling is on its way. */
struct match_feed {
	int64_t seq;       /* the last number given */
	int64_t ceiling;   /* numbers up to this may be given */
	bool known;        /* false: read back, its ceiling not known yet */
	bool asking;       /* a ceiling is being reserved */
	bool stored;       /* the database has a row for it */
	bool gap;          /* held messages were dropped: a snapshot goes first */
	struct match_feed_held *held;
	int nheld;
	struct match_feed_msg *ring;
	int len, next;
};

/* ------------------------------------------------------------ rides */

/* A trip the matcher follows, from its request to its end. */
struct ride {
	struct matcher *m;
	struct uuid trip, rider, driver;
	char trip_s[37], rider_s[37], driver_s[37];
	bool has_driver;
	enum trip_state state;
	bool booked;        /* an operator's booking: waits match.booking_max_wait */
	int64_t scheduled_at; /* wall ms, a ride for later; 0: for now */
	int vehicle;
	double plat, plng, dlat, dlng;
	int64_t fare_total; /* minor units */
	char currency[4];
	struct match_meter meter;
	struct match_feed feed;
	enum { MATCH_LOST_NO = 0, MATCH_LOST_YES, MATCH_LOST_UNKNOWN } lost; /* as the database has it */
	bool lost_asking;  /* the flag is being written */
};

struct matcher {
	struct matcher_deps deps;
	const struct match_cfg *cfg;
	struct dispatch *dispatch;
	struct umap rides;     /* trip -> ride */
	struct umap by_driver; /* driver -> ride (assigned) */
	struct umap by_rider;  /* rider -> ride (active) */
	bool recovered;        /* the active trips are read back */
	struct gw_message_type *msg_types; /* what the matcher takes over the WebSocket */
	struct match_feed_asks *asks;      /* feed.c: ceilings on their way to the database */
	int nmsg_types;
	struct rh_timer *recover_timer;
	LIST_HEAD(, match_check) checks; /* commands.c: accepts whose answer was lost */
	struct rh_timer *lost_timer;     /* lost.c: the sweep */
	struct metric_family *f_offers, *f_match_time;
	struct metric_cell *m_searching, *m_waiting, *m_match_time, *m_no_drivers, *m_rider_msgs, *m_lost, *m_suggestions;
	struct reposition *repo;      /* match.reposition: demand and the plan (suggest.c), else NULL */
	struct rh_timer *repo_timer;
	struct match_schedule *schedule; /* SCHEDULED trips' searches to start */
	struct metric_cell *m_scheduled, *m_schedule_started;
};

int64_t match_now(const struct matcher *m);
void match_count_offer(struct matcher *m, const char *result);
struct session *match_session(const struct matcher *m, const struct uuid *account);
/* The ride of a trip, made from it if new (*fresh says so). */
struct ride *match_ride_get(struct matcher *m, const struct trip *t, bool *fresh);
/* Seconds from (lat, lon) to (tlat, tlon), by road when a map is loaded (0
 * when there is no road: the app shows "arriving"). */
double match_eta(const struct matcher *m, double lat, double lon, double tlat, double tlon);
/* Money as ride.offer and trip.assigned carry it: version 1 in major units,
 * version 2 in minor units (as the REST API). */
struct cJSON *match_money_json(int64_t minor, const char *currency, int version);
/* A point: {lat, lon} in version 1, {lat, lng} in version 2 (as the REST API). */
struct cJSON *match_point_json(double lat, double lon, int version);
/* trip.assigned: the trip a driver is on, sent when it is theirs and when
 * they reconnect. */
void match_send_assigned(struct matcher *m, const struct ride *r, struct session *s);

/* suggest.c: repositioning (match.reposition) */
void match_suggest_init(struct matcher *m);
void match_suggest_free(struct matcher *m);
/* A ride request at (lat, lon): demand there. */
void match_suggest_demand(struct matcher *m, double lat, double lon, int64_t now);

/* feed.c */
void match_feed_init(struct matcher *m);
void match_feed_fini(struct matcher *m);
/* A ride made in this run: numbers from 1, the first block needs no write. */
void match_feed_start(struct ride *r);
/* A ride read back after a restart: its numbers go on above everything the
 * last run could have sent (the rider gets a snapshot once they are known). */
void match_feed_resume(struct ride *r);
/* The ride ended: its feed's row goes. */
void match_feed_end(struct ride *r);
/* The feed's buffer for the next message, empty: its memory is kept from
 * one message to the next (valid until the next match_feed_send*). */
struct strbuf *match_feed_buf(struct matcher *m);
/* Numbers the message, keeps it for replay and sends it if the rider is
 * connected. sb (match_feed_buf()'s) holds the payload's opening brace and
 * its members, if any; trip_id and seq go last; its text is copied into the
 * kept message, or taken while the message waits for its number, and sb
 * is left empty. */
void match_feed_send_sb(struct ride *r, const char *type, struct strbuf *sb);
/* The same for a message whose version 2 differs by a point's "lon" key,
 * at lon_at in sb (driver.location). */
void match_feed_send_lon_sb(struct ride *r, const char *type, struct strbuf *sb, int lon_at);
/* The same with a cJSON payload, consumed. */
void match_feed_send(struct ride *r, const char *type, struct cJSON *payload);
void match_feed_free(struct match_feed *f);
/* The search's progress for the rider (trip.search_progress), with what
 * the rider may expect (est may be NULL). */
void match_feed_progress(struct ride *r, bool waiting, double radius_m, int offers, const struct dispatch_estimate *est);

/* Registers a message type with the gateway (a copy, with the matcher as
 * its context). */
void match_register_type(struct matcher *m, const struct gw_message_type *t);

/* commands.c */
void match_commands_init(struct matcher *m);
/* An offer whose accept may have committed unseen ended: the database tells
 * whether the trip is the driver's after all. */
void match_accept_check(struct matcher *m, const struct dispatch_offer *o);
/* Shutdown: the checks still waiting for the database. */
void match_checks_free(struct matcher *m);

/* lost.c */
void match_lost_init(struct matcher *m);
void match_lost_fini(struct matcher *m);
/* Live trips whose driver is flagged lost (the metric). */
int match_lost_count(struct matcher *m);

/* recover.c */
void match_recover_start(struct matcher *m);
/* A trip read back at start: dispatch and the meter carry on. */
void match_recover_ride(struct matcher *m, struct ride *r, const struct trip *t);

#endif
