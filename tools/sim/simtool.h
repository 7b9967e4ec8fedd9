/* The simulator's shared state and the functions its files call in each
 * other (bin/ridehail-sim; docs/simulator.md). One run per process: the
 * state is the two globals below, sim_st and sim_sg. */
#ifndef RIDEHAIL_TOOLS_SIM_SIMTOOL_H
#define RIDEHAIL_TOOLS_SIM_SIMTOOL_H

#include <cjson/cJSON.h>
#include <errno.h>
#include <event2/event.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/settings.h"
#include "core/uuid.h"
#include "routing/routing.h"
#include "sim/client.h"
#include "sim/sim.h"
#include "sim/surge.h"

#define TICK_MS 100
#define MAX_ERRORS_SHOWN 20

enum sim_drv_state {
	D_SETUP = 0, D_IDLE, D_OFFERED, D_ACCEPTING, D_TO_PICKUP, D_ARRIVING, D_BOARDING, D_STARTING, D_ON_TRIP,
	D_SHARE_DRIVING, D_SHARE_LEG, D_SHARE_BOARDING, /* a shared trip: to the next stop, a leg sent, boarding */
	D_COMPLETING, D_DEAD,
};

static inline const char *sim_drv_state_name(enum sim_drv_state s)
{
	static const char *const n[] = { "setup", "idle", "offered", "accepting", "to_pickup", "arriving", "boarding",
					 "starting", "on_trip", "share_driving", "share_leg", "share_boarding",
					 "completing", "dead" };
	return n[s];
}

enum sim_drv_mode { MODE_IDLE = 0, MODE_DEADHEAD, MODE_TRIP, MODE_REPOSITION };

/* One stop of a driver's shared trip, as share.stops lists it. */
struct sim_stop {
	char booking[40];
	bool pickup;
	double lat, lon;
};
#define SIM_MAX_STOPS 32

/* A driver's shared trip (docs/sharing.md, "The driver's stop list"): the
 * list as last sent, and the leg being worked. */
struct sim_share_drv {
	char trip[40];
	long long ver;               /* stops_version of the list held */
	struct sim_stop stops[SIM_MAX_STOPS];
	int nstops, aboard;
	char leg_booking[40];        /* the stop driven to or worked */
	bool leg_pickup;
	const char *leg_action;      /* the share.leg.update in flight, or NULL */
	long long leg_ver;           /* the version it was sent at */
	bool leg_resend;             /* refused: sent again with the next list, or at resend_at */
	double resend_at;
};

struct sim_drv {
	int idx;
	char email[96], id[40], token[1024];
	struct simc_ws *ws;
	struct sim_rng rng;
	enum sim_drv_state st;
	double lat, lon, heading, speed_mps;
	struct sim_path path;
	double path_pos;
	bool moving;
	enum sim_drv_mode mode;
	double next_ping;
	char offer_id[40], offer_trip[40];
	int decision; /* 0 accept, 1 decline, 2 ignore */
	double decide_at;
	char trip_id[40];
	double plat, plon, dlat, dlon;
	double board_until;
	double online_since, busy_since;
	struct sim_driver_acc acc;
	bool up;          /* the socket is open (after setup: down while reconnecting) */
	int backoff_ms;   /* the next reconnect's wait */
	int gen;          /* reconnect attempts so far (a watchdog's ticket) */
	char accepted[40]; /* the trip of the last offer it accepted (trip.assigned may follow late) */
	char last_trip[40]; /* its trip before, over (a late answer about it is no error) */
	struct sim_share_drv share; /* its shared trip, if any */
};

enum sim_rider_state { R_SETUP = 0, R_FREE, R_QUOTING, R_POSTING, R_SEARCHING, R_MATCHED, R_ARRIVED, R_ONTRIP, R_RATING, R_DEAD };

struct sim_rider {
	int idx;
	char email[96], id[40], token[1024];
	struct simc_ws *ws;
	struct sim_rng rng;
	enum sim_rider_state st;
	char trip_id[40];
	int rec;              /* index into S.recs, -1 when none */
	double patience_at;
	bool cancel_sent;
	long long last_seq;
	double dlat, dlon;
	char prev_trip[40];   /* the trip before, ended */
	long long prev_seq;
	bool up;              /* the socket is open (after setup: down while reconnecting) */
	bool reconnected;     /* a snapshot may come: the socket was opened again */
	bool got_matched;     /* trip.matched received for its trip */
	bool prev_caught_up;  /* the trip before ended as read back: its own last message may still come */
	int backoff_ms;
	int gen;
	int tries;            /* of the request in flight (retries after failures) */
	char posted_key[96];  /* the ride request's Idempotency-Key and body, kept to send again */
	char posted_body[1024];
	bool shared;          /* the request in hand is a shared booking */
	char booking_id[40];
	char card_id[1024];   /* the rate card it books on */
};

/* Trip ids seen at drivers: which driver holds each (a trip matched twice). */
struct sim_tripmap {
	char id[40];
	int driver;
};

struct sim_state {
	/* options */
	char host[64];
	int port;
	const char *admin_token, *map_path, *out_dir, *demand, *csv, *od, *start_str;
	int ndrivers, nriders, hotspots, demand_mult, http_conns;
	double duration, speed, rate, sigma_m, compress, window, margin, kmh, traffic;
	double ping_s, ping_jitter, accept_p, ignore_p, accept_delay, board_s, patience_s, interval, drain;
	uint64_t seed;
	bool cruise, quiet, have_box, tty, dry_run;
	double share_fraction; /* --share-fraction: the share of requests booked as shared rides */
	FILE *legs;            /* share_legs.csv */
	int share_trips;       /* shared trips driven (distinct share.stops trip ids) */
	double follow_p;      /* --follow-suggestions: chance an idle driver follows a reposition suggestion */
	struct sim_bbox box;
	/* run */
	struct event_base *base;
	struct simc_pool *pool;
	struct routing *routing;
	struct rh_config cfg;
	char run_id[24];
	struct sim_drv *drv;
	struct sim_rider *rid;
	struct sim_demand dem;
	size_t next_req;
	struct sim_trip_rec *recs;
	size_t nrecs, cap_recs;
	struct sim_tripmap *tmap;
	size_t ntmap, cap_tmap;
	int ready_drivers, ready_riders, setup_failed;
	bool running, ending;
	int64_t t0_ns;
	double now;
	double next_sample, next_progress_wall;
	int protocol_errors, breaches, login_retries;
	int route_fail;
	int reconnects, resends; /* rode through faults */
	int suggestions, suggestions_idle, suggestions_followed; /* driver.reposition.suggested: received, while idle, followed */
	double anchor_lat, anchor_lon; /* a point on the map's core: routes join it to every usable point */
	bool have_anchor;
	int moved_onto_roads, unroutable; /* demand points moved onto a road; none found */
	double *track;        /* rider's view of its driver vs where the driver is, m */
	size_t ntrack, cap_track;
	FILE *ts, *pos;
	struct event *tick, *sigint;
	int exit_code;
	/* per-interval counters for the time series */
	int iv_requests, iv_created, iv_matched, iv_completed, iv_cancelled;
	double busy_time_iv_start;
};
extern struct sim_state sim_st;

/* Surge (docs/simulator.md, "Surge"): riders' price sensitivity, idle
 * drivers drifting to higher multipliers, and the surge map over time. */
struct sim_surge_state {
	double sensitive;            /* share of quotes asked by a price-sensitive rider */
	double max_lo, max_hi;       /* the most such a rider pays: uniform in [lo, hi] */
	double drift;                /* chance per simulated minute that an idle driver looks at the map */
	double drift_radius_m, drift_gain;
	struct sim_surge_map map;
	bool polling;
	double next_poll;
	FILE *ts, *cells;            /* surge.csv, surge_cells.csv */
	int quotes, quotes_surged, declined, drifts;
	double quoted_sum, max_seen;
	int iv_quotes, iv_surged, iv_declined;
};
extern struct sim_surge_state sim_sg;

/* What waits: a socket to open again, a command refused `unavailable` to
 * send again, an HTTP request that failed on the way (or 503) to repeat. */
enum sim_later_kind {
	LATER_DRIVER_SOCKET, LATER_RIDER_SOCKET, LATER_DRIVER_WATCH, LATER_RIDER_WATCH, LATER_DRIVER_COMMAND,
	LATER_DRIVER_RATE, LATER_RIDER_QUOTE, LATER_RIDER_POST, LATER_RIDER_CANCEL, LATER_RIDER_RATE,
	LATER_RIDER_READ, LATER_RIDER_CARD, LATER_RIDER_BOOK,
};
struct sim_later {
	enum sim_later_kind kind;
	int idx, gen, tries;
	char trip[40], what[32];
};

/* A rating on its way (sent again after a failure on the way or a 503). */
struct sim_http_try {
	int idx, tries;
	char trip[40];
};

RH_PRINTF(1, 2) void sim_protocol_error(const char *fmt, ...);
RH_PRINTF(1, 2) void sim_breach(const char *fmt, ...);


/* proto.c */
double sim_now(void);
void sim_progress_clear(void);
bool sim_send_envelope(struct simc_ws *ws, const char *corr, const char *type, cJSON *payload);
void sim_new_uuid(char out[37]);
const char *sim_jstr(const cJSON *o, const char *k);
bool sim_jnum(const cJSON *o, const char *k, double *out);
bool sim_jpoint(const cJSON *o, const char *k, double *lat, double *lon);
cJSON *sim_parse_envelope(const char *who, const char *text, size_t len, const char **type, cJSON **root);
void sim_later(enum sim_later_kind kind, int idx, const char *trip, const char *what, int tries, int ms);
bool sim_server_away(int code, int http_status);
int sim_reconnect_wait(int *backoff_ms, struct sim_rng *r);
bool sim_http_retryable(const struct simc_reply *r);
int sim_http_wait_ms(const struct simc_reply *r);

/* move.c */
int sim_tmap_find(const char *trip);
void sim_tmap_assign(const char *trip, int driver);
struct sim_trip_rec *sim_rec_new(void);
void sim_random_point(struct sim_rng *r, double *lat, double *lon);
void sim_find_anchor(void);
void sim_demand_onto_roads(void);
bool sim_drive_to_route(struct sim_drv *d, double lat, double lon, enum sim_drv_mode mode, bool may_fall_back);
void sim_drive_to(struct sim_drv *d, double lat, double lon, enum sim_drv_mode mode);
void sim_drv_cruise(struct sim_drv *d);
bool sim_drv_advance(struct sim_drv *d, double dt);
void sim_drv_ping(struct sim_drv *d);

/* driver.c */
void sim_drv_command(struct sim_drv *d, const char *type);
struct sim_http_try *sim_http_try_new(int idx, const char *trip, int tries);
void sim_drv_rate_try(int idx, const char *trip, int tries);
void sim_drv_decide(struct sim_drv *d);
void sim_drv_send_pending(struct sim_drv *d);
void sim_drv_open(void *arg);

/* rider.c */
void sim_rider_rate_try(struct sim_rider *r, const char *trip, int tries);
void sim_rider_cancel_try(struct sim_rider *r, int tries);
void sim_rider_read_try(struct sim_rider *r, int tries);
void sim_rider_post(struct sim_rider *r);
void sim_rider_ask_estimate(struct sim_rider *r);
void sim_issue_request(const struct sim_request *q);

/* surge_run.c */
bool sim_surge_rider_declines(struct sim_rider *r, const cJSON *quote);
void sim_surge_drift(struct sim_drv *d, double dt);
void sim_surge_tick(void);
void sim_surge_open_files(void);
void sim_surge_summary(char *out, size_t cap);
void sim_surge_write_plots(void);

/* run.c */
void sim_later_cb(evutil_socket_t fd, short what, void *arg);
void sim_sample(void);
void sim_progress(bool final);
void sim_create_accounts(void);
void sim_on_setup_tick(evutil_socket_t fd, short what, void *arg);

/* report.c */
bool sim_have_gnuplot(void);
void sim_finish(void);
void sim_on_sigint(evutil_socket_t fd, short what, void *arg);

/* args.c */
void sim_parse_args(int argc, char **argv);

extern const struct simc_ws_cbs sim_drv_cbs, sim_rider_cbs;

void sim_rider_free(struct sim_rider *r);
void sim_drv_to_idle(struct sim_drv *d);

/* share_drv.c: the driver's side of a shared trip */
void sim_share_on_stops(struct sim_drv *d, const cJSON *pl);
void sim_share_on_leg_updated(struct sim_drv *d, const cJSON *pl);
void sim_share_on_rejected(struct sim_drv *d, const char *reason);
void sim_share_drv_tick(struct sim_drv *d, bool arrived);
void sim_share_resend(struct sim_drv *d);
/* share_rider.c: the rider's side */
bool sim_share_wanted(size_t request);
void sim_share_direct(struct sim_trip_rec *rec, double dlat, double dlon);
void sim_share_ask_card(struct sim_rider *r);
void sim_share_book(struct sim_rider *r);
void sim_share_on_booking(struct sim_rider *r, const cJSON *pl);
void sim_share_open_files(void);
void sim_share_summary(char *out, size_t cap, double vkm);

#endif
