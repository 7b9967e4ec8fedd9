/* ridehail-sim: a city in a box. Simulated drivers and riders use
 * ridehaild's public protocol only (REST and the WebSocket; accounts are
 * created with the operator's admin API), and the run ends with a report:
 * summary.json, CSV time series and gnuplot plots in --out. See
 * docs/simulator.md for every flag and how each figure is computed.
 *
 * Time: the simulated clock runs --speed times the wall clock; everything
 * the simulator decides (demand, driving, waits, patience) is in simulated
 * seconds, while the daemon's own timers (offer timeouts, max_search) stay
 * on the wall clock. One timer ticks every 100 ms and moves every driver,
 * sends the pings that are due, issues due requests and runs due actions.
 *
 * Faults: an app rides through them as a real one would. A socket the
 * server dropped (a restart, a crash) is opened again with backoff and the
 * agent catches up with where it stands (the driver from the server's
 * status and trip.assigned, the rider from trip.snapshot and its trip read
 * back); a command refused `unavailable` is sent again; a request that
 * failed on the way or was answered 503 database-unavailable is sent again
 * (a ride request with the same Idempotency-Key). */
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

enum drv_state {
	D_SETUP = 0, D_IDLE, D_OFFERED, D_ACCEPTING, D_TO_PICKUP, D_ARRIVING, D_BOARDING, D_STARTING, D_ON_TRIP,
	D_COMPLETING, D_DEAD,
};

static const char *drv_state_name(enum drv_state s)
{
	static const char *const n[] = { "setup", "idle", "offered", "accepting", "to_pickup", "arriving", "boarding",
					 "starting", "on_trip", "completing", "dead" };
	return n[s];
}

enum drv_mode { MODE_IDLE = 0, MODE_DEADHEAD, MODE_TRIP };

struct driver {
	int idx;
	char email[96], id[40], token[1024];
	struct simc_ws *ws;
	struct sim_rng rng;
	enum drv_state st;
	double lat, lon, heading, speed_mps;
	struct sim_path path;
	double path_pos;
	bool moving;
	enum drv_mode mode;
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
};

enum rider_state { R_SETUP = 0, R_FREE, R_QUOTING, R_POSTING, R_SEARCHING, R_MATCHED, R_ARRIVED, R_ONTRIP, R_RATING, R_DEAD };

struct rider {
	int idx;
	char email[96], id[40], token[1024];
	struct simc_ws *ws;
	struct sim_rng rng;
	enum rider_state st;
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
};

/* Trip ids seen at drivers: which driver holds each (a trip matched twice). */
struct tripmap {
	char id[40];
	int driver;
};

static struct {
	/* options */
	char host[64];
	int port;
	const char *admin_token, *map_path, *out_dir, *demand, *csv, *od, *start_str;
	int ndrivers, nriders, hotspots, demand_mult, http_conns;
	double duration, speed, rate, sigma_m, compress, window, margin, kmh, traffic;
	double ping_s, ping_jitter, accept_p, ignore_p, accept_delay, board_s, patience_s, interval, drain;
	uint64_t seed;
	bool cruise, quiet, have_box, tty, dry_run;
	struct sim_bbox box;
	/* run */
	struct event_base *base;
	struct simc_pool *pool;
	struct routing *routing;
	struct rh_config cfg;
	char run_id[24];
	struct driver *drv;
	struct rider *rid;
	struct sim_demand dem;
	size_t next_req;
	struct sim_trip_rec *recs;
	size_t nrecs, cap_recs;
	struct tripmap *tmap;
	size_t ntmap, cap_tmap;
	int ready_drivers, ready_riders, setup_failed;
	bool running, ending;
	int64_t t0_ns;
	double now;
	double next_sample, next_progress_wall;
	int protocol_errors, breaches, login_retries;
	int route_fail;
	int reconnects, resends; /* rode through faults */
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
} S;

/* Surge (docs/simulator.md, "Surge"): riders' price sensitivity, idle
 * drivers drifting to higher multipliers, and the surge map over time. */
static struct {
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
} SG;

/* ------------------------------------------------------------ clock, errors */

static double sim_now(void)
{
	if (!S.running)
		return 0;
	S.now = (double)(rh_mono_ns() - S.t0_ns) / 1e9 * S.speed;
	return S.now;
}

static void progress_clear(void)
{
	if (!S.quiet && S.tty)
		fprintf(stderr, "\r\033[K");
}

/* Counts one problem and prints the first MAX_ERRORS_SHOWN of its kind. */
static void problem(int *count, const char *label, const char *fmt, va_list ap)
{
	if (++*count > MAX_ERRORS_SHOWN)
		return;
	progress_clear();
	fprintf(stderr, "sim: %s: ", label);
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
}

RH_PRINTF(1, 2) static void protocol_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	problem(&S.protocol_errors, "protocol error", fmt, ap);
	va_end(ap);
}

RH_PRINTF(1, 2) static void breach(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	problem(&S.breaches, "INVARIANT BREACH", fmt, ap);
	va_end(ap);
}

/* ------------------------------------------------------------ messages */

/* Sends one message; false when the socket is closed (its close callback
 * tells why, and the agent sends again once it is back). */
static bool send_envelope(struct simc_ws *ws, const char *corr, const char *type, cJSON *payload)
{
	struct uuid u;
	char eid[37], ts[32];
	uuid_v4(&u);
	uuid_format(&u, eid);
	rh_format_rfc3339(rh_wall_ms(), ts);
	cJSON *m = cJSON_CreateObject();
	cJSON_AddStringToObject(m, "event_id", eid);
	cJSON_AddStringToObject(m, "event_type", type);
	cJSON_AddNumberToObject(m, "event_version", 1);
	cJSON_AddStringToObject(m, "timestamp", ts);
	cJSON_AddStringToObject(m, "producer", "ridehail-sim/" RH_VERSION);
	cJSON_AddStringToObject(m, "correlation_id", corr);
	cJSON_AddItemToObject(m, "payload", payload);
	char *text = cJSON_PrintUnformatted(m);
	bool sent = simc_ws_send(ws, text, strlen(text));
	cJSON_free(text);
	cJSON_Delete(m);
	return sent;
}

static void new_uuid(char out[37])
{
	struct uuid u;
	uuid_v4(&u);
	uuid_format(&u, out);
}

static const char *jstr(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool jnum(const cJSON *o, const char *k, double *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	if (!cJSON_IsNumber(v))
		return false;
	*out = v->valuedouble;
	return true;
}

static bool jpoint(const cJSON *o, const char *k, double *lat, double *lon)
{
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, k);
	if (!cJSON_IsObject(p) || !jnum(p, "lat", lat))
		return false;
	return jnum(p, "lon", lon) || jnum(p, "lng", lon);
}

/* The envelope's payload and type, or NULL (a protocol error). */
static cJSON *parse_envelope(const char *who, const char *text, size_t len, const char **type, cJSON **root)
{
	*root = cJSON_ParseWithLength(text, len);
	if (!*root) {
		protocol_error("%s: malformed frame: %.120s", who, text);
		return NULL;
	}
	*type = jstr(*root, "event_type");
	cJSON *pl = cJSON_GetObjectItemCaseSensitive(*root, "payload");
	if (!*type || !cJSON_IsObject(pl) || !jstr(*root, "event_id") || !jstr(*root, "timestamp")) {
		protocol_error("%s: not an envelope: %.120s", who, text);
		cJSON_Delete(*root);
		*root = NULL;
		return NULL;
	}
	return pl;
}

/* ------------------------------------------------------------ riding through faults */

/* What waits: a socket to open again, a command refused `unavailable` to
 * send again, an HTTP request that failed on the way (or 503) to repeat. */
enum later_kind {
	LATER_DRIVER_SOCKET, LATER_RIDER_SOCKET, LATER_DRIVER_WATCH, LATER_RIDER_WATCH, LATER_DRIVER_COMMAND,
	LATER_DRIVER_RATE, LATER_RIDER_QUOTE, LATER_RIDER_POST, LATER_RIDER_CANCEL, LATER_RIDER_RATE,
	LATER_RIDER_READ,
};
struct later {
	enum later_kind kind;
	int idx, gen, tries;
	char trip[40], what[32];
};

static void later_cb(evutil_socket_t fd, short what, void *arg);

static void later(enum later_kind kind, int idx, const char *trip, const char *what, int tries, int ms)
{
	struct later *l = rh_calloc(1, sizeof *l);
	l->kind = kind;
	l->idx = idx;
	l->tries = tries;
	snprintf(l->trip, sizeof l->trip, "%s", trip ? trip : "");
	snprintf(l->what, sizeof l->what, "%s", what ? what : "");
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	event_base_once(S.base, -1, EV_TIMEOUT, later_cb, l, &tv);
}

/* A close that means the server went away (a restart, a crash, a refused
 * upgrade while it cannot load the account): open again. */
static bool server_away(int code, int http_status)
{
	if (code == 0)
		return http_status == 0 || http_status == 502 || http_status == 503;
	return code == 1001 || code == 1006 || code == 1011 || code == 1012 || code == 1013 || code == 1014;
}

/* The next reconnect's wait: 250 ms doubling to 4 s, with jitter. */
static int reconnect_wait(int *backoff_ms, struct sim_rng *r)
{
	*backoff_ms = *backoff_ms ? (*backoff_ms * 2 > 4000 ? 4000 : *backoff_ms * 2) : 250;
	return (int)(*backoff_ms * sim_rng_range(r, 0.75, 1.25));
}

/* A failed HTTP request to send again: the connection failed (0) or the
 * database was away (503 database-unavailable). */
static bool http_retryable(const struct simc_reply *r)
{
	return r->status == 0 || (r->status == 503 && r->body && strstr(r->body, "database-unavailable"));
}

static int http_wait_ms(const struct simc_reply *r)
{
	return r->retry_after_s > 0 && r->retry_after_s < 30 ? r->retry_after_s * 1000 : 1000;
}

/* ------------------------------------------------------------ trips seen */

static int tmap_find(const char *trip)
{
	for (size_t i = S.ntmap; i-- > 0;)
		if (strcmp(S.tmap[i].id, trip) == 0)
			return (int)i;
	return -1;
}

static void tmap_assign(const char *trip, int driver)
{
	int i = tmap_find(trip);
	if (i >= 0) {
		if (S.tmap[i].driver != driver)
			breach("trip %s matched twice: to driver %d and to driver %d", trip, S.tmap[i].driver, driver);
		return;
	}
	if (S.ntmap == S.cap_tmap) {
		S.cap_tmap = S.cap_tmap ? S.cap_tmap * 2 : 256;
		S.tmap = rh_realloc(S.tmap, S.cap_tmap * sizeof *S.tmap);
	}
	snprintf(S.tmap[S.ntmap].id, sizeof S.tmap[S.ntmap].id, "%s", trip);
	S.tmap[S.ntmap++].driver = driver;
}

static struct sim_trip_rec *rec_new(void)
{
	if (S.nrecs == S.cap_recs) {
		S.cap_recs = S.cap_recs ? S.cap_recs * 2 : 256;
		S.recs = rh_realloc(S.recs, S.cap_recs * sizeof *S.recs);
	}
	struct sim_trip_rec *r = &S.recs[S.nrecs++];
	memset(r, 0, sizeof *r);
	r->t_request = r->t_created = r->t_matched = r->t_arrived = r->t_started = r->t_completed = r->t_cancelled = -1;
	return r;
}

/* ------------------------------------------------------------ movement */

/* With a map: true when a car can start and end at (lat, lon), i.e. routes
 * join it to the anchor both ways; then (lat, lon) becomes the point on the
 * road the route starts from (where the daemon snaps it too). */
static bool on_road(double *lat, double *lon)
{
	struct route_result res;
	if (routing_route(S.routing, *lat, *lon, S.anchor_lat, S.anchor_lon, true, &res) != RH_OK || res.npoints < 1)
		return false;
	double slat = res.coords[1], slon = res.coords[0];
	if (routing_route(S.routing, S.anchor_lat, S.anchor_lon, slat, slon, false, &res) != RH_OK)
		return false;
	*lat = slat;
	*lon = slon;
	return true;
}

/* (lat, lon) onto the nearest road a car can use, searched in rings of
 * growing radius inside box; false (unchanged) when none within 2 km. */
static bool move_onto_road(struct sim_rng *r, const struct sim_bbox *box, double *lat, double *lon)
{
	double la = *lat, lo = *lon;
	if (on_road(&la, &lo))
		goto found;
	for (double radius = 20; radius <= 2000; radius *= 1.5) {
		for (int k = 0; k < 12; k++) {
			double a = sim_rng_range(r, 0, 2 * M_PI), d = radius * sim_rng_range(r, 0.7, 1.0);
			la = *lat + d * cos(a) / 111320.0;
			lo = *lon + d * sin(a) / (111320.0 * cos(*lat * M_PI / 180));
			if (sim_bbox_contains(box, la, lo) && on_road(&la, &lo))
				goto found;
		}
	}
	return false;
found:
	*lat = la;
	*lon = lo;
	return true;
}

/* A random point of the area; with a map, one a car can reach and leave. */
static void random_point(struct sim_rng *r, double *lat, double *lon)
{
	struct sim_bbox inner = sim_bbox_shrink(S.box, S.margin);
	for (int tries = 0;; tries++) {
		*lat = sim_rng_range(r, inner.min_lat, inner.max_lat);
		*lon = sim_rng_range(r, inner.min_lon, inner.max_lon);
		if (!S.have_anchor || tries >= 50 || on_road(lat, lon))
			return;
	}
}

/* The anchor: the point of the box whose routes reach (both ways) the most
 * of a few random others, i.e. one inside the map's strongly connected core. */
static void find_anchor(void)
{
	struct sim_rng r;
	sim_rng_seed(&r, S.seed, 0xa4c);
	struct sim_bbox inner = sim_bbox_shrink(S.box, S.margin);
	double pl[16], pn[16];
	for (int i = 0; i < 16; i++) {
		pl[i] = sim_rng_range(&r, inner.min_lat, inner.max_lat);
		pn[i] = sim_rng_range(&r, inner.min_lon, inner.max_lon);
	}
	int best = -1, best_n = 0;
	for (int i = 0; i < 16; i++) {
		int n = 0;
		struct route_result res;
		for (int j = 0; j < 16; j++)
			n += j != i && routing_route(S.routing, pl[i], pn[i], pl[j], pn[j], false, &res) == RH_OK &&
			     routing_route(S.routing, pl[j], pn[j], pl[i], pn[i], false, &res) == RH_OK;
		if (n > best_n) {
			best = i;
			best_n = n;
		}
	}
	if (best >= 0) {
		S.anchor_lat = pl[best];
		S.anchor_lon = pn[best];
		S.have_anchor = true;
	}
}

/* Every pickup and dropoff of the demand onto a road a car can use, so that
 * every request can be quoted (a point off the roads gets 422 point-off-map
 * or no-route from the daemon). */
static void demand_onto_roads(void)
{
	if (!S.have_anchor)
		return;
	struct sim_rng r;
	sim_rng_seed(&r, S.seed, 0x60ad);
	for (size_t i = 0; i < S.dem.n; i++) {
		struct sim_request *q = &S.dem.req[i];
		double la = q->plat, lo = q->plon;
		if (move_onto_road(&r, &S.box, &q->plat, &q->plon))
			S.moved_onto_roads += la != q->plat || lo != q->plon;
		else
			S.unroutable++;
		if (!q->has_dropoff)
			continue;
		la = q->dlat;
		lo = q->dlon;
		if (move_onto_road(&r, &S.box, &q->dlat, &q->dlon))
			S.moved_onto_roads += la != q->dlat || lo != q->dlon;
		else
			S.unroutable++;
		/* ends that came together on the same road: a dropoff 0.8-3.5 km
		 * away instead, as a rider draws one (the daemon refuses a trip
		 * shorter than trip.min_distance) */
		for (int tries = 0; tries < 20 && sim_dist_m(q->plat, q->plon, q->dlat, q->dlon) < 500; tries++) {
			double dl, dn;
			random_point(&r, &dl, &dn);
			double dd = sim_dist_m(q->plat, q->plon, dl, dn);
			if (dd > 800 && dd < 3500) {
				q->dlat = dl;
				q->dlon = dn;
			}
		}
	}
}

/* A route from the driver's position to (lat, lon): along the roads with a
 * map (at the roads' speeds times --traffic), else a straight line at --kmh. */
static bool drive_to_route(struct driver *d, double lat, double lon, enum drv_mode mode, bool may_fall_back)
{
	sim_path_clear(&d->path);
	d->path_pos = 0;
	d->mode = mode;
	d->moving = true;
	d->speed_mps = S.kmh / 3.6;
	if (S.routing) {
		struct route_result res;
		if (routing_route(S.routing, d->lat, d->lon, lat, lon, true, &res) == RH_OK && res.npoints >= 2) {
			sim_path_add(&d->path, d->lat, d->lon);
			for (size_t i = 0; i < res.npoints; i++)
				sim_path_add(&d->path, res.coords[2 * i + 1], res.coords[2 * i]);
			sim_path_add(&d->path, lat, lon);
			if (res.duration_s > 1 && res.distance_m > 1)
				d->speed_mps = res.distance_m / res.duration_s * S.traffic;
			if (d->speed_mps < 2)
				d->speed_mps = 2;
			return true;
		}
		if (!may_fall_back) {
			d->moving = false;
			return false;
		}
		S.route_fail++;
	}
	sim_path_add(&d->path, d->lat, d->lon);
	sim_path_add(&d->path, lat, lon);
	return true;
}

static void drive_to(struct driver *d, double lat, double lon, enum drv_mode mode)
{
	(void)drive_to_route(d, lat, lon, mode, true);
}

/* Cruising: to a random point of the area that a road reaches (a few tries;
 * standing still rather than driving through buildings). */
static void drv_cruise(struct driver *d)
{
	for (int tries = 0; tries < 5; tries++) {
		double lat, lon;
		random_point(&d->rng, &lat, &lon);
		if (drive_to_route(d, lat, lon, MODE_IDLE, false))
			return;
	}
}

/* Moves d by dt simulated seconds; true when it reached the end of its path. */
static bool drv_advance(struct driver *d, double dt)
{
	if (!d->moving)
		return false;
	double len = sim_path_length(&d->path), step = d->speed_mps * dt;
	if (d->path_pos + step > len)
		step = len - d->path_pos;
	d->path_pos += step;
	double km = step / 1000.0;
	if (d->mode == MODE_TRIP)
		d->acc.trip_km += km;
	else if (d->mode == MODE_DEADHEAD)
		d->acc.deadhead_km += km;
	else
		d->acc.idle_km += km;
	sim_path_at(&d->path, d->path_pos, &d->lat, &d->lon, &d->heading);
	if (d->path_pos >= len - 1e-6) {
		d->moving = false;
		return true;
	}
	return false;
}

static void drv_ping(struct driver *d)
{
	if (!d->up) { /* (reconnecting: the next one when back) */
		d->next_ping = S.now + S.ping_s;
		return;
	}
	cJSON *p = cJSON_CreateObject();
	cJSON_AddStringToObject(p, "driver_id", d->id);
	cJSON *loc = cJSON_AddObjectToObject(p, "location");
	cJSON_AddNumberToObject(loc, "lat", round(d->lat * 1e6) / 1e6);
	cJSON_AddNumberToObject(loc, "lon", round(d->lon * 1e6) / 1e6);
	double kmh = d->moving ? d->speed_mps * 3.6 * S.speed : 0;
	cJSON_AddNumberToObject(p, "speed_kmh", round(fmin(kmh, 399) * 10) / 10);
	cJSON_AddNumberToObject(p, "heading_deg", round(d->heading));
	cJSON_AddNumberToObject(p, "accuracy_m", 5);
	cJSON_AddStringToObject(p, "source", "gps");
	send_envelope(d->ws, d->id, "driver.location.updated", p);
	d->next_ping = S.now + S.ping_s + sim_rng_range(&d->rng, -S.ping_jitter, S.ping_jitter);
}

/* ------------------------------------------------------------ drivers */

static void drv_command(struct driver *d, const char *type)
{
	if (!d->up)
		return; /* sent again once the socket is back (drv_resume) */
	char cid[37];
	new_uuid(cid);
	cJSON *p = cJSON_CreateObject();
	cJSON_AddStringToObject(p, "trip_id", d->trip_id);
	cJSON_AddStringToObject(p, "command_id", cid);
	send_envelope(d->ws, d->id, type, p);
}

static void drv_to_idle(struct driver *d)
{
	if (d->trip_id[0])
		snprintf(d->last_trip, sizeof d->last_trip, "%s", d->trip_id);
	if (d->busy_since >= 0) {
		d->acc.busy_s += S.now - d->busy_since;
		d->busy_since = -1;
	}
	d->st = D_IDLE;
	d->trip_id[0] = '\0';
	d->offer_id[0] = '\0';
	d->moving = false;
	d->mode = MODE_IDLE;
}

/* A rating on its way (sent again after a failure on the way or a 503). */
struct http_try {
	int idx, tries;
	char trip[40];
};

static struct http_try *http_try_new(int idx, const char *trip, int tries)
{
	struct http_try *c = rh_calloc(1, sizeof *c);
	c->idx = idx;
	c->tries = tries;
	snprintf(c->trip, sizeof c->trip, "%s", trip);
	return c;
}

static void drv_rated(void *arg, const struct simc_reply *r)
{
	struct http_try *c = arg;
	if (http_retryable(r) && c->tries < 60 && !S.ending) {
		S.resends++;
		later(LATER_DRIVER_RATE, c->idx, c->trip, NULL, c->tries + 1, http_wait_ms(r));
	} else if (r->status != 201 && !(r->status == 409 && c->tries > 0)) {
		/* (409 already_rated after a retry: the first try's answer was lost) */
		protocol_error("driver %d: POST rating: %d %.200s", c->idx, r->status, r->body);
	}
	rh_free(c);
}

static void drv_rate_try(int idx, const char *trip, int tries)
{
	char path[96];
	snprintf(path, sizeof path, "/v1/rides/%s/rating", trip);
	simc_http(S.pool, "POST", path, S.drv[idx].token, NULL, "{\"stars\":5}", drv_rated, http_try_new(idx, trip, tries));
}

static void drv_rate(struct driver *d, const char *trip)
{
	drv_rate_try(d->idx, trip, 0);
}

static void drv_clear_offer(struct driver *d)
{
	d->offer_id[0] = '\0';
	d->offer_trip[0] = '\0';
	if (d->st == D_OFFERED || d->st == D_ACCEPTING)
		d->st = D_IDLE;
}

static void drv_on_offer(struct driver *d, const cJSON *pl)
{
	const char *oid = jstr(pl, "offer_id"), *tid = jstr(pl, "trip_id");
	if (!oid || !tid) {
		protocol_error("driver %d: ride.offer without ids", d->idx);
		return;
	}
	if (strcmp(oid, d->offer_id) == 0)
		return; /* told again */
	if (d->offer_id[0])
		breach("driver %d offered two rides at once: %s while %s stands", d->idx, tid, d->offer_trip);
	else if (d->st != D_IDLE)
		breach("driver %d offered trip %s while %s (trip %s)", d->idx, tid, drv_state_name(d->st), d->trip_id);
	int m = tmap_find(tid);
	if (m >= 0)
		breach("driver %d offered trip %s, already matched to driver %d", d->idx, tid, S.tmap[m].driver);
	d->acc.offers++;
	snprintf(d->offer_id, sizeof d->offer_id, "%s", oid);
	snprintf(d->offer_trip, sizeof d->offer_trip, "%s", tid);
	if (d->st == D_IDLE)
		d->st = D_OFFERED;
	double u = sim_rng_unit(&d->rng);
	d->decision = u < S.ignore_p ? 2 : u < S.ignore_p + (1 - S.ignore_p) * S.accept_p ? 0 : 1;
	d->decide_at = S.now + fmin(sim_rng_exp(&d->rng, S.accept_delay), 4 * S.accept_delay);
}

static void drv_accept(struct driver *d)
{
	cJSON *p = cJSON_CreateObject();
	cJSON_AddStringToObject(p, "offer_id", d->offer_id);
	snprintf(d->accepted, sizeof d->accepted, "%s", d->offer_trip);
	send_envelope(d->ws, d->id, "offer.accept", p);
}

static void drv_decide(struct driver *d)
{
	if (!d->up)
		return; /* (reconnecting: decided once back, if the offer still stands) */
	if (d->decision == 2) {
		d->decide_at = INFINITY; /* let it expire */
		return;
	}
	if (d->decision == 0) {
		drv_accept(d);
		d->st = D_ACCEPTING;
	} else {
		cJSON *p = cJSON_CreateObject();
		cJSON_AddStringToObject(p, "offer_id", d->offer_id);
		cJSON_AddStringToObject(p, "reason", "simulated decline");
		send_envelope(d->ws, d->id, "offer.decline", p);
		d->acc.declines++;
		drv_clear_offer(d);
	}
	d->decide_at = INFINITY;
}

static void drv_on_assigned(struct driver *d, const cJSON *pl)
{
	const char *tid = jstr(pl, "trip_id"), *state = jstr(pl, "state");
	double plat, plon, dlat, dlon;
	if (!tid || !state || !jpoint(pl, "pickup", &plat, &plon) || !jpoint(pl, "dropoff", &dlat, &dlon)) {
		protocol_error("driver %d: trip.assigned without trip_id, state, pickup or dropoff", d->idx);
		return;
	}
	if (d->trip_id[0] && strcmp(d->trip_id, tid) == 0)
		return;
	if (d->trip_id[0])
		breach("driver %d assigned trip %s while on trip %s", d->idx, tid, d->trip_id);
	if (strcmp(tid, d->offer_trip) != 0 && strcmp(tid, d->accepted) != 0)
		protocol_error("driver %d: assigned trip %s it did not accept (offer for %s)", d->idx, tid, d->offer_trip);
	tmap_assign(tid, d->idx);
	d->acc.accepts++;
	snprintf(d->trip_id, sizeof d->trip_id, "%s", tid);
	d->offer_id[0] = '\0';
	d->plat = plat;
	d->plon = plon;
	d->dlat = dlat;
	d->dlon = dlon;
	d->busy_since = S.now;
	d->st = D_TO_PICKUP;
	drive_to(d, plat, plon, MODE_DEADHEAD);
}

static void drv_on_ack(struct driver *d, const cJSON *pl)
{
	const char *ct = jstr(pl, "command_type"), *tid = jstr(pl, "trip_id");
	if (!ct || !tid) {
		protocol_error("driver %d: command.acknowledged without command_type or trip_id", d->idx);
		return;
	}
	if (!strcmp(ct, "offer.accept") || !strcmp(ct, "offer.decline"))
		return; /* trip.assigned follows an accept */
	if (strcmp(tid, d->trip_id) != 0) {
		if (strcmp(tid, d->last_trip) != 0) /* (a command sent again: the repeat's answer) */
			protocol_error("driver %d: %s acknowledged for trip %s, not its trip %s", d->idx, ct, tid, d->trip_id);
		return;
	}
	if (!strcmp(ct, "trip.arrived") && d->st == D_ARRIVING) {
		d->st = D_BOARDING;
		d->board_until = S.now + S.board_s * sim_rng_range(&d->rng, 0.5, 1.5);
	} else if (!strcmp(ct, "trip.started") && d->st == D_STARTING) {
		d->st = D_ON_TRIP;
		drive_to(d, d->dlat, d->dlon, MODE_TRIP);
	} else if (!strcmp(ct, "trip.completed") && d->st == D_COMPLETING) {
		d->acc.trips++;
		drv_rate(d, d->trip_id);
		drv_to_idle(d);
	}
}

static void drv_on_rejected(struct driver *d, const cJSON *pl)
{
	const char *ct = jstr(pl, "command_type"), *reason = jstr(pl, "reason");
	ct = ct ? ct : "(none)";
	reason = reason ? reason : "(none)";
	/* Races the protocol allows: an accept after the offer ended, a trip
	 * command after the rider cancelled. */
	if (!strcmp(ct, "offer.accept") &&
	    (!strcmp(reason, "offer_expired") || !strcmp(reason, "already_matched") || !strcmp(reason, "trip_cancelled"))) {
		drv_clear_offer(d);
		return;
	}
	if (!strncmp(ct, "trip.", 5) && !strcmp(reason, "trip_finished")) {
		/* trip.state_changed CANCELLED says the rest, unless it came while
		 * the socket was down: then this is how the driver learns */
		if (d->st >= D_TO_PICKUP && d->st <= D_COMPLETING) {
			drv_to_idle(d);
			if (S.cruise)
				drv_cruise(d);
		}
		return;
	}
	if (!strcmp(reason, "unavailable")) { /* the database could not take it now: send it again */
		S.resends++;
		later(LATER_DRIVER_COMMAND, d->idx, d->trip_id, ct, 0, 1000);
		return;
	}
	if (!strcmp(ct, "offer.accept") && !strcmp(reason, "duplicate"))
		return; /* sent again while the first is being applied: its answer comes */
	protocol_error("driver %d: %s rejected (%s): %s", d->idx, ct, reason, jstr(pl, "details") ? jstr(pl, "details") : "");
}

/* The command the driver's state waits on, sent (again). */
static void drv_send_pending(struct driver *d)
{
	switch (d->st) {
	case D_ACCEPTING:
		if (d->offer_id[0])
			drv_accept(d);
		break;
	case D_ARRIVING:
		drv_command(d, "trip.arrived");
		break;
	case D_STARTING:
		drv_command(d, "trip.started");
		break;
	case D_COMPLETING:
		drv_command(d, "trip.completed");
		break;
	default:
		break;
	}
}

/* The socket is back and the server says where the driver stands: a trip
 * that ended meanwhile is over here too, an offline driver goes available
 * again, and the trip command it waited on is sent again (trip.assigned or
 * ride.offer follows from the server for a trip or a live offer). */
static void drv_resume(struct driver *d, const char *status)
{
	/* An offer stands only on the socket it came on: a live one is sent
	 * again on this one (and answered afresh); one the server no longer
	 * has (offers do not survive a restart) is over. An accept whose answer
	 * was lost: trip.assigned follows if it was applied (d->accepted). */
	if (d->st == D_OFFERED || d->st == D_ACCEPTING)
		drv_clear_offer(d);
	bool on_trip = d->st >= D_TO_PICKUP && d->st <= D_COMPLETING;
	if (on_trip && (!strcmp(status, "available") || !strcmp(status, "offline"))) {
		drv_to_idle(d);
		if (S.cruise)
			drv_cruise(d);
	}
	if (!strcmp(status, "offline") && (d->st == D_IDLE || d->st == D_OFFERED)) {
		cJSON *p = cJSON_CreateObject();
		cJSON_AddStringToObject(p, "driver_id", d->id);
		cJSON_AddStringToObject(p, "status", "available");
		cJSON_AddStringToObject(p, "reason", "simulated shift");
		send_envelope(d->ws, d->id, "driver.status.changed", p);
	}
	drv_send_pending(d);
}

static void drv_text(void *arg, const char *text, size_t len)
{
	struct driver *d = arg;
	sim_now();
	const char *type;
	cJSON *root, *pl = parse_envelope("driver", text, len, &type, &root);
	if (!pl)
		return;
	if (!strcmp(type, "driver.status.changed")) {
		const char *st = jstr(pl, "status"), *reason = jstr(pl, "reason");
		if (d->st == D_SETUP && st && !strcmp(st, "available") && reason && !strcmp(reason, "driver_request")) {
			d->st = D_IDLE;
			d->online_since = S.now;
			S.ready_drivers++;
		} else if (st && reason && !strcmp(reason, "session_opened") && d->st != D_SETUP) {
			drv_resume(d, st);
		} else if (st && (!strcmp(st, "offline") || !strcmp(st, "unreachable")) && d->st != D_SETUP) {
			protocol_error("driver %d: the server set it %s", d->idx, st);
		}
	} else if (!strcmp(type, "ride.offer")) {
		drv_on_offer(d, pl);
	} else if (!strcmp(type, "offer.withdrawn")) {
		const char *oid = jstr(pl, "offer_id"), *reason = jstr(pl, "reason");
		if (oid && !strcmp(oid, d->offer_id)) {
			if (reason && !strcmp(reason, "expired"))
				d->acc.timeouts++;
			else
				d->acc.withdrawn++;
			drv_clear_offer(d);
		}
	} else if (!strcmp(type, "trip.assigned")) {
		drv_on_assigned(d, pl);
	} else if (!strcmp(type, "command.acknowledged")) {
		drv_on_ack(d, pl);
	} else if (!strcmp(type, "command.rejected")) {
		drv_on_rejected(d, pl);
	} else if (!strcmp(type, "trip.state_changed")) {
		const char *tid = jstr(pl, "trip_id"), *state = jstr(pl, "state");
		if (tid && state && !strcmp(tid, d->trip_id) && !strcmp(state, "CANCELLED")) {
			drv_to_idle(d);
			if (S.cruise)
				drv_cruise(d);
		}
	} else if (strcmp(type, "server.heartbeat") != 0 && strcmp(type, "driver.location.acked") != 0) {
		protocol_error("driver %d: unexpected %s", d->idx, type);
	}
	cJSON_Delete(root);
}

static void drv_closed(void *arg, int code, int http_status, const char *why)
{
	struct driver *d = arg;
	if (S.ending)
		return;
	if (d->st != D_SETUP && d->st != D_DEAD && server_away(code, http_status)) {
		d->up = false;
		later(LATER_DRIVER_SOCKET, d->idx, NULL, NULL, 0, reconnect_wait(&d->backoff_ms, &d->rng));
		return;
	}
	if (d->st != D_DEAD)
		protocol_error("driver %d: socket closed (code %d, HTTP %d): %s", d->idx, code, http_status, why);
	if (d->st == D_SETUP)
		S.setup_failed++;
	d->st = D_DEAD;
}

static void drv_open(void *arg)
{
	struct driver *d = arg;
	d->up = true;
	if (d->st != D_SETUP) { /* back after a fault: the server tells where it stands (drv_resume) */
		d->backoff_ms = 0;
		S.reconnects++;
		drv_ping(d);
		return;
	}
	/* a position first: going available needs one */
	drv_ping(d);
	cJSON *p = cJSON_CreateObject();
	cJSON_AddStringToObject(p, "driver_id", d->id);
	cJSON_AddStringToObject(p, "status", "available");
	cJSON_AddStringToObject(p, "reason", "simulated shift");
	send_envelope(d->ws, d->id, "driver.status.changed", p);
}

static const struct simc_ws_cbs drv_cbs = { drv_open, drv_text, drv_closed };

/* ------------------------------------------------------------ riders */

static void rider_free(struct rider *r)
{
	if (r->trip_id[0]) {
		snprintf(r->prev_trip, sizeof r->prev_trip, "%s", r->trip_id);
		r->prev_seq = r->last_seq;
	}
	r->st = R_FREE;
	r->trip_id[0] = '\0';
	r->rec = -1;
	r->cancel_sent = false;
	r->got_matched = false;
	r->last_seq = 0;
	r->tries = 0;
}

static void rider_rate_try(struct rider *r, const char *trip, int tries);

static void rider_rated(void *arg, const struct simc_reply *rep)
{
	struct http_try *c = arg;
	struct rider *r = &S.rid[c->idx];
	if (http_retryable(rep) && c->tries < 60 && !S.ending) {
		S.resends++;
		later(LATER_RIDER_RATE, c->idx, c->trip, NULL, c->tries + 1, http_wait_ms(rep));
		rh_free(c);
		return;
	}
	/* (409 already_rated after a retry: the first try's answer was lost) */
	if (rep->status != 201 && !(rep->status == 409 && c->tries > 0))
		protocol_error("rider %d: POST rating: %d %.200s", r->idx, rep->status, rep->body);
	if (r->st == R_RATING && !strcmp(r->trip_id, c->trip))
		rider_free(r);
	rh_free(c);
}

static void rider_rate_try(struct rider *r, const char *trip, int tries)
{
	char path[96], body[32];
	snprintf(path, sizeof path, "/v1/rides/%s/rating", trip);
	snprintf(body, sizeof body, "{\"stars\":%d}", 4 + (int)(sim_rng_next(&r->rng) % 2));
	simc_http(S.pool, "POST", path, r->token, NULL, body, rider_rated, http_try_new(r->idx, trip, tries));
}

static void rider_cancel_try(struct rider *r, int tries);

static void rider_cancelled(void *arg, const struct simc_reply *rep)
{
	struct http_try *c = arg;
	struct rider *r = &S.rid[c->idx];
	bool still = !strcmp(r->trip_id, c->trip) && (r->st == R_SEARCHING || r->st == R_MATCHED || r->st == R_POSTING);
	if (http_retryable(rep) && c->tries < 60 && !S.ending) {
		if (still) {
			S.resends++;
			later(LATER_RIDER_CANCEL, c->idx, c->trip, NULL, c->tries + 1, http_wait_ms(rep));
		}
	} else if (rep->status != 200 && rep->status != 409) {
		/* 409 trip-state: the driver arrived (or the trip ended) meanwhile */
		protocol_error("rider %d: POST cancel: %d %.200s", r->idx, rep->status, rep->body);
	}
	rh_free(c);
}

static void rider_cancel_try(struct rider *r, int tries)
{
	char path[96];
	snprintf(path, sizeof path, "/v1/rides/%s/cancel", r->trip_id);
	simc_http(S.pool, "POST", path, r->token, NULL, "{\"reason\":\"rider_patience\"}", rider_cancelled,
		  http_try_new(r->idx, r->trip_id, tries));
}

/* Where the rider's trip stands, from a message, a snapshot or the trip read
 * back: the rider's state and its record follow. by_msg: a trip.state_changed
 * (else the state was caught up with after a fault). */
static void rider_apply_state(struct rider *r, const char *state, const cJSON *pl, bool by_msg)
{
	struct sim_trip_rec *rec = r->rec >= 0 ? &S.recs[r->rec] : NULL;
	if (!rec)
		return;
	bool past_match = strcmp(state, "SEARCHING") != 0 && strcmp(state, "CANCELLED") != 0;
	if (!by_msg && past_match && rec->t_matched < 0) { /* matched while the socket was down */
		rec->t_matched = S.now;
		S.iv_matched++;
	}
	if (!strcmp(state, "MATCHED")) {
		if (r->st == R_SEARCHING || r->st == R_POSTING)
			r->st = R_MATCHED;
	} else if (!strcmp(state, "ARRIVED")) {
		if (rec->t_arrived < 0)
			rec->t_arrived = S.now;
		r->st = R_ARRIVED;
	} else if (!strcmp(state, "IN_PROGRESS")) {
		if (rec->t_arrived < 0)
			rec->t_arrived = S.now;
		if (rec->t_started < 0)
			rec->t_started = S.now;
		r->st = R_ONTRIP;
	} else if (!strcmp(state, "COMPLETED")) {
		rec->t_completed = S.now;
		rec->outcome = SIM_OUT_COMPLETED;
		S.iv_completed++;
		r->st = R_RATING;
		r->prev_caught_up = !by_msg;
		rider_rate_try(r, r->trip_id, 0);
	} else if (!strcmp(state, "CANCELLED")) {
		const cJSON *c = cJSON_GetObjectItemCaseSensitive(pl, "cancellation");
		const char *by = c ? jstr(c, "by") : NULL, *why = c ? jstr(c, "reason") : NULL;
		rec->t_cancelled = S.now;
		rec->outcome = SIM_OUT_CANCELLED;
		snprintf(rec->cancel_reason, sizeof rec->cancel_reason, "%s:%s", by ? by : "?", why ? why : "?");
		S.iv_cancelled++;
		rider_free(r);
		r->prev_caught_up = !by_msg;
	}
}

static void rider_on_trip_msg(struct rider *r, const char *type, const cJSON *pl)
{
	const char *tid = jstr(pl, "trip_id");
	double seq;
	if (!tid || !jnum(pl, "seq", &seq)) {
		protocol_error("rider %d: %s without trip_id or seq", r->idx, type);
		return;
	}
	if (r->st == R_POSTING && !r->trip_id[0])
		snprintf(r->trip_id, sizeof r->trip_id, "%s", tid); /* before the 201 */
	if (r->prev_trip[0] && strcmp(tid, r->prev_trip) == 0 && strcmp(tid, r->trip_id) != 0) {
		if (r->prev_caught_up && (long long)seq > r->prev_seq)
			return; /* its end was read back first: the message says the same */
		protocol_error("rider %d: %s (seq %lld) for trip %s after the trip ended (its last message was seq %lld)",
			       r->idx, type, (long long)seq, tid, r->prev_seq);
		return;
	}
	if (strcmp(tid, r->trip_id) != 0) {
		protocol_error("rider %d: %s for trip %s, not its trip %s", r->idx, type, tid, r->trip_id[0] ? r->trip_id : "(none)");
		return;
	}
	if ((long long)seq != r->last_seq + 1)
		protocol_error("rider %d: %s seq %lld after %lld", r->idx, type, (long long)seq, r->last_seq);
	r->last_seq = (long long)seq;
	if (!strcmp(type, "driver.location")) {
		double lat, lon;
		int m = tmap_find(tid);
		if (!jpoint(pl, "location", &lat, &lon)) {
			protocol_error("rider %d: driver.location without a location", r->idx);
		} else if (m >= 0) {
			if (S.ntrack == S.cap_track) {
				S.cap_track = S.cap_track ? S.cap_track * 2 : 1024;
				S.track = rh_realloc(S.track, S.cap_track * sizeof *S.track);
			}
			const struct driver *d = &S.drv[S.tmap[m].driver];
			S.track[S.ntrack++] = sim_dist_m(lat, lon, d->lat, d->lon);
		}
	}
	if (r->rec < 0)
		return;
	struct sim_trip_rec *rec = &S.recs[r->rec];
	if (rec->t_created < 0)
		rec->t_created = S.now;
	if (!strcmp(type, "trip.matched")) {
		if (r->got_matched)
			breach("rider %d: trip %s matched twice", r->idx, tid);
		r->got_matched = true;
		if (rec->t_matched < 0) {
			rec->t_matched = S.now;
			S.iv_matched++;
		}
		if (r->st == R_SEARCHING || r->st == R_POSTING)
			r->st = R_MATCHED;
	} else if (!strcmp(type, "trip.state_changed")) {
		const char *state = jstr(pl, "state");
		if (!state)
			protocol_error("rider %d: trip.state_changed without state", r->idx);
		else
			rider_apply_state(r, state, pl, true);
	}
}

/* After a reconnect: where the trip stands now. Its numbers go on from the
 * snapshot's (never below what the rider has: that would be numbering gone
 * backwards). */
static void rider_on_snapshot(struct rider *r, const cJSON *pl)
{
	const char *tid = jstr(pl, "trip_id"), *state = jstr(pl, "state");
	double seq;
	if (!tid || !state || !jnum(pl, "seq", &seq)) {
		protocol_error("rider %d: trip.snapshot without trip_id, seq or state", r->idx);
		return;
	}
	if (r->st == R_POSTING && !r->trip_id[0])
		snprintf(r->trip_id, sizeof r->trip_id, "%s", tid);
	if (strcmp(tid, r->trip_id) != 0) {
		protocol_error("rider %d: a snapshot of trip %s, not its trip %s", r->idx, tid, r->trip_id[0] ? r->trip_id : "(none)");
		return;
	}
	if ((long long)seq < r->last_seq)
		protocol_error("rider %d: numbering went backwards: a snapshot at seq %lld after %lld", r->idx, (long long)seq,
			       r->last_seq);
	else
		r->last_seq = (long long)seq;
	rider_apply_state(r, state, pl, false);
}

static void rider_read_try(struct rider *r, int tries);

/* The trip read back after a reconnect (messages sent while the socket was
 * down are gone; a trip that ended meanwhile sends no snapshot). */
static void rider_read(void *arg, const struct simc_reply *rep)
{
	struct http_try *c = arg;
	struct rider *r = &S.rid[c->idx];
	if (strcmp(r->trip_id, c->trip) != 0 || r->st == R_RATING || r->st == R_FREE) {
		rh_free(c); /* it moved on meanwhile */
		return;
	}
	if (http_retryable(rep) && c->tries < 60 && !S.ending) {
		later(LATER_RIDER_READ, c->idx, c->trip, NULL, c->tries + 1, http_wait_ms(rep));
	} else if (rep->status == 200) {
		cJSON *j = cJSON_Parse(rep->body);
		const char *state = j ? jstr(j, "state") : NULL;
		if (state)
			rider_apply_state(r, state, j, false);
		else
			protocol_error("rider %d: GET /v1/rides/%s: no state", r->idx, c->trip);
		cJSON_Delete(j);
	} else {
		protocol_error("rider %d: GET /v1/rides/%s: %d %.200s", r->idx, c->trip, rep->status, rep->body);
	}
	rh_free(c);
}

static void rider_read_try(struct rider *r, int tries)
{
	char path[96];
	snprintf(path, sizeof path, "/v1/rides/%s", r->trip_id);
	simc_http(S.pool, "GET", path, r->token, NULL, NULL, rider_read, http_try_new(r->idx, r->trip_id, tries));
}

static void rider_text(void *arg, const char *text, size_t len)
{
	struct rider *r = arg;
	sim_now();
	const char *type;
	cJSON *root, *pl = parse_envelope("rider", text, len, &type, &root);
	if (!pl)
		return;
	if (!strcmp(type, "trip.search_progress") || !strcmp(type, "trip.matched") || !strcmp(type, "driver.location") ||
	    !strcmp(type, "trip.state_changed")) {
		rider_on_trip_msg(r, type, pl);
	} else if (!strcmp(type, "trip.snapshot")) {
		if (r->reconnected)
			rider_on_snapshot(r, pl);
		else
			protocol_error("rider %d: a snapshot on a fresh account", r->idx);
	} else if (!strcmp(type, "command.rejected")) {
		protocol_error("rider %d: rejected: %.200s", r->idx, text);
	} else if (strcmp(type, "server.heartbeat") != 0) {
		protocol_error("rider %d: unexpected %s", r->idx, type);
	}
	cJSON_Delete(root);
}

static void rider_open(void *arg)
{
	struct rider *r = arg;
	r->up = true;
	if (r->st != R_SETUP) { /* back after a fault */
		r->backoff_ms = 0;
		r->reconnected = true;
		S.reconnects++;
		if (r->trip_id[0] && r->st >= R_POSTING && r->st <= R_ONTRIP)
			rider_read_try(r, 0);
		return;
	}
	rider_free(r);
	S.ready_riders++;
}

static void rider_closed(void *arg, int code, int http_status, const char *why)
{
	struct rider *r = arg;
	if (S.ending)
		return;
	if (r->st != R_SETUP && r->st != R_DEAD && server_away(code, http_status)) {
		r->up = false;
		later(LATER_RIDER_SOCKET, r->idx, NULL, NULL, 0, reconnect_wait(&r->backoff_ms, &r->rng));
		return;
	}
	protocol_error("rider %d: socket closed (code %d, HTTP %d): %s", r->idx, code, http_status, why);
	if (r->st == R_SETUP)
		S.setup_failed++;
	r->st = R_DEAD;
}

static const struct simc_ws_cbs rider_cbs = { rider_open, rider_text, rider_closed };

static void rider_posted(void *arg, const struct simc_reply *rep);

static void rider_post(struct rider *r)
{
	simc_http(S.pool, "POST", "/v1/rides", r->token, r->posted_key, r->posted_body, rider_posted, r);
}

/* POST /v1/rides answered. */
/* ------------------------------------------------------------ surge */

static bool have_gnuplot(void);

/* The quote's multiplier, counted; true when the rider walks away from it
 * (a price-sensitive rider, the multiplier above the most they pay). */
static bool surge_rider_declines(struct rider *r, const cJSON *quote)
{
	double m = 1.0;
	const cJSON *fare = cJSON_GetObjectItemCaseSensitive(quote, "fare");
	jnum(fare, "surge_multiplier", &m);
	SG.quotes++;
	SG.iv_quotes++;
	SG.quoted_sum += m;
	if (m > 1.0 + 1e-9) {
		SG.quotes_surged++;
		SG.iv_surged++;
	}
	if (SG.sensitive <= 0 || sim_rng_unit(&r->rng) >= SG.sensitive)
		return false;
	if (!sim_surge_declines(m, sim_rng_range(&r->rng, SG.max_lo, SG.max_hi)))
		return false;
	SG.declined++;
	SG.iv_declined++;
	return true;
}

/* An idle driver drifts: now and then (--surge-drift per simulated
 * minute) it looks at the surge map and heads for the highest cell within
 * reach that beats its own. */
static void surge_drift(struct driver *d, double dt)
{
	if (SG.drift <= 0 || d->moving || sim_rng_unit(&d->rng) >= SG.drift * dt / 60.0)
		return;
	int c = sim_surge_drift_target(&SG.map, d->lat, d->lon, SG.drift_radius_m, SG.drift_gain);
	if (c < 0)
		return;
	if (drive_to_route(d, SG.map.cell[c].lat, SG.map.cell[c].lon, MODE_IDLE, false))
		SG.drifts++;
}

static void surge_polled(void *arg, const struct simc_reply *rep)
{
	(void)arg;
	SG.polling = false;
	if (rep->status != 200 || !sim_surge_map_parse(&SG.map, rep->body)) {
		protocol_error("GET /v1/surge/cells: %d %.200s", rep->status, rep->body);
		return;
	}
	size_t surged;
	double max, mean;
	sim_surge_map_stats(&SG.map, &surged, &max, &mean);
	if (max > SG.max_seen)
		SG.max_seen = max;
	if (SG.ts)
		fprintf(SG.ts, "%.0f,%zu,%zu,%.2f,%.3f,%d,%d,%d\n", S.now, SG.map.n, surged, max, mean, SG.iv_quotes,
			SG.iv_surged, SG.iv_declined);
	SG.iv_quotes = SG.iv_surged = SG.iv_declined = 0;
	for (size_t i = 0; SG.cells && i < SG.map.n; i++) {
		const struct sim_cell *c = &SG.map.cell[i];
		fprintf(SG.cells, "%.0f,%s,%.6f,%.6f,%.2f,%d,%d\n", S.now, c->id, c->lat, c->lon, c->m, c->demand,
			c->supply);
	}
}

/* The surge map every --interval (the drivers' and the report's). */
static void surge_tick(void)
{
	if (SG.polling || S.now < SG.next_poll)
		return;
	SG.next_poll = S.now + S.interval;
	SG.polling = true;
	simc_http(S.pool, "GET", "/v1/surge/cells?vehicle_type=standard", NULL, NULL, NULL, surge_polled, NULL);
}

static void surge_open_files(void)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/surge.csv", S.out_dir);
	SG.ts = fopen(path, "w");
	snprintf(path, sizeof path, "%s/surge_cells.csv", S.out_dir);
	SG.cells = fopen(path, "w");
	if (SG.ts)
		fprintf(SG.ts, "t_s,cells,surged_cells,max_multiplier,mean_multiplier,quotes,quotes_surged,declined\n");
	if (SG.cells)
		fprintf(SG.cells, "t_s,cell,lat,lon,multiplier,demand,supply\n");
}

/* summary.json's "surge" member. */
static void surge_summary(char *out, size_t cap)
{
	snprintf(out, cap,
		 "  \"surge\": {\"quotes\": %d, \"quotes_surged\": %d, \"quotes_surged_pct\": %.2f, "
		 "\"mean_quoted_multiplier\": %.3f, \"max_multiplier\": %.2f, \"declined\": %d, \"drifts\": %d, "
		 "\"price_sensitive\": %g, \"max_accepted\": [%g, %g], \"drift_per_min\": %g}",
		 SG.quotes, SG.quotes_surged, SG.quotes ? 100.0 * SG.quotes_surged / SG.quotes : 0,
		 SG.quotes ? SG.quoted_sum / SG.quotes : 1.0, SG.max_seen > 1 ? SG.max_seen : 1.0, SG.declined, SG.drifts,
		 SG.sensitive, SG.max_lo, SG.max_hi, SG.drift);
}

/* surge.png (the multipliers over time) and surge_map.png (each cell at
 * the highest multiplier it reached), from surge.csv and surge_cells.csv. */
static void surge_write_plots(void)
{
	if (SG.ts)
		fflush(SG.ts);
	if (SG.cells)
		fflush(SG.cells);
	/* each cell's hexagon at its highest multiplier, for the map */
	char path[4200];
	snprintf(path, sizeof path, "%s/surge_hex.csv", S.out_dir);
	FILE *hex = fopen(path, "w");
	snprintf(path, sizeof path, "%s/surge_cells.csv", S.out_dir);
	FILE *in = fopen(path, "r");
	if (hex && in) {
		/* the last map's ring per cell id, at the highest multiplier seen */
		char line[256];
		struct sim_surge_map best;
		sim_surge_map_init(&best);
		if (fgets(line, sizeof line, in)) {
			while (fgets(line, sizeof line, in)) {
				char id[28];
				double t, lat, lon, m;
				if (sscanf(line, "%lf,%27[^,],%lf,%lf,%lf", &t, id, &lat, &lon, &m) != 5)
					continue;
				size_t k;
				for (k = 0; k < best.n && strcmp(best.cell[k].id, id) != 0; k++)
					;
				if (k == best.n) {
					if (best.n == best.cap) {
						best.cap = best.cap ? 2 * best.cap : 256;
						best.cell = rh_realloc(best.cell, best.cap * sizeof *best.cell);
					}
					memset(&best.cell[k], 0, sizeof best.cell[k]);
					snprintf(best.cell[k].id, sizeof best.cell[k].id, "%s", id);
					best.n++;
				}
				if (m >= best.cell[k].m) {
					best.cell[k].m = m;
					best.cell[k].lat = lat;
					best.cell[k].lon = lon;
				}
			}
		}
		for (size_t k = 0; k < best.n; k++) {
			/* the ring, if the last map still had the cell; else a
			 * hexagon of the grid's size around its centre */
			const struct sim_cell *c = NULL;
			for (size_t i = 0; i < SG.map.n && !c; i++)
				if (!strcmp(SG.map.cell[i].id, best.cell[k].id))
					c = &SG.map.cell[i];
			for (int i = 0; i <= 6; i++) {
				double lat = c ? c->ring_lat[i % 6] : best.cell[k].lat + 0.0127 * sin((30 + 60 * (i % 6)) * M_PI / 180);
				double lon = c ? c->ring_lon[i % 6] : best.cell[k].lon + 0.0168 * cos((30 + 60 * (i % 6)) * M_PI / 180);
				fprintf(hex, "%.6f,%.6f,%.2f\n", lon, lat, best.cell[k].m);
			}
			fprintf(hex, "\n");
		}
		sim_surge_map_fini(&best);
	}
	if (in)
		fclose(in);
	if (hex)
		fclose(hex);
	snprintf(path, sizeof path, "%s/surge.gp", S.out_dir);
	FILE *f = fopen(path, "w");
	if (!f)
		return;
	fprintf(f,
		"# gnuplot script written by ridehail-sim; run from this directory: gnuplot surge.gp\n"
		"set datafile separator ','\nset terminal pngcairo size 900,520 noenhanced\nset key top left\nset grid\n"
		"set output 'surge.png'\nset title 'Surge over time (GET /v1/surge/cells every %.0f s)'\n"
		"set xlabel 'simulated s'\nset ylabel 'multiplier'\nset y2label 'cells'\nset ytics nomirror\n"
		"set y2tics\nset yrange [1:*]\n"
		"plot 'surge.csv' every ::1 using 1:4 with lines lw 2 title 'highest multiplier', "
		"'' every ::1 using 1:5 with lines lw 2 title 'mean over cells', "
		"'' every ::1 using 1:3 axes x1y2 with steps title 'cells above 1'\n"
		"unset y2tics\nunset y2label\nset yrange [*:*]\n"
		"set terminal pngcairo size 1100,800 noenhanced\nset output 'surge_map.png'\n"
		"set title 'Surge per cell: the highest multiplier each reached, with the pickups'\n"
		"set xlabel 'lon'\nset ylabel 'lat'\nset size ratio -1\nset xrange [%.5f:%.5f]\nset yrange [%.5f:%.5f]\n"
		"set format x '%%.3f'\nset xtics rotate by -45\nset key below\n"
		"set palette defined (1 '#f7f7f7', 1.5 '#fdd49e', 2 '#fc8d59', 3 '#b30000')\nset cbrange [1:*]\n"
		"set cblabel 'multiplier'\n"
		"plot 'surge_hex.csv' using 1:2:3 with filledcurves closed fillcolor palette z notitle, "
		"'' using 1:2 with lines lc rgb '#777777' title 'cells', "
		"'trips.csv' every ::1 using 7:6 with points pt 7 ps 0.3 lc rgb '#333333' title 'pickups'\n",
		S.interval, S.box.min_lon, S.box.max_lon, S.box.min_lat, S.box.max_lat);
	fclose(f);
	if (!have_gnuplot())
		return;
	char cmd[4300];
	snprintf(cmd, sizeof cmd, "cd '%s' && gnuplot surge.gp 2> surge_plots.log", S.out_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "sim: gnuplot failed on surge.gp (see %s/surge_plots.log)\n", S.out_dir);
}

static void rider_posted(void *arg, const struct simc_reply *rep)
{
	struct rider *r = arg;
	sim_now();
	struct sim_trip_rec *rec = &S.recs[r->rec];
	if (rep->status == 201) {
		cJSON *j = cJSON_Parse(rep->body);
		const char *id = j ? jstr(j, "id") : NULL, *state = j ? jstr(j, "state") : NULL;
		if (!id || !state) {
			protocol_error("rider %d: POST /v1/rides 201 without id/state", r->idx);
			rider_free(r);
		} else {
			if (r->trip_id[0] && strcmp(r->trip_id, id) != 0)
				protocol_error("rider %d: messages for %s, the POST created %s", r->idx, r->trip_id, id);
			snprintf(r->trip_id, sizeof r->trip_id, "%s", id);
			if (rec->t_created < 0)
				rec->t_created = S.now;
			S.iv_created++;
			if (r->st == R_POSTING)
				r->st = R_SEARCHING;
			r->patience_at = rec->t_created + S.patience_s * sim_rng_range(&r->rng, 0.5, 1.5);
			r->tries = 0;
		}
		cJSON_Delete(j);
		return;
	}
	/* Lost on the way, or the database away: the same request again, with
	 * the same Idempotency-Key (a first try that did commit answers 201
	 * again with the same trip). */
	if (http_retryable(rep) && r->tries < 60 && !S.ending) {
		r->tries++;
		S.resends++;
		later(LATER_RIDER_POST, r->idx, NULL, NULL, r->tries, http_wait_ms(rep));
		return;
	}
	/* 503: no driver of the type online at all; 429: this rider's
	 * rides_per_minute. Anything else is unexpected. */
	if (rep->status != 503 && rep->status != 429)
		protocol_error("rider %d: POST /v1/rides: %d %.200s", r->idx, rep->status, rep->body);
	rec->outcome = SIM_OUT_REFUSED;
	rider_free(r);
}

static void rider_ask_estimate(struct rider *r);

static void rider_quoted(void *arg, const struct simc_reply *rep)
{
	struct rider *r = arg;
	sim_now();
	struct sim_trip_rec *rec = &S.recs[r->rec];
	if (rep->status == 0 && r->tries < 60 && !S.ending) { /* the daemon away: ask again */
		r->tries++;
		S.resends++;
		later(LATER_RIDER_QUOTE, r->idx, NULL, NULL, r->tries, 1000);
		return;
	}
	cJSON *j = rep->status == 200 ? cJSON_Parse(rep->body) : NULL;
	const char *quote = j ? jstr(j, "quote_id") : NULL;
	if (!quote) {
		/* 422: a point off the map, no route, or pickup and dropoff too close */
		if (rep->status != 422)
			protocol_error("rider %d: GET /v1/estimate: %d %.200s", r->idx, rep->status, rep->body);
		rec->outcome = SIM_OUT_NO_QUOTE;
		cJSON_Delete(j);
		rider_free(r);
		return;
	}
	if (surge_rider_declines(r, j)) {
		rec->outcome = SIM_OUT_DECLINED;
		cJSON_Delete(j);
		rider_free(r);
		return;
	}
	snprintf(r->posted_body, sizeof r->posted_body,
		 "{\"pickup\":{\"lat\":%.6f,\"lng\":%.6f},\"dropoff\":{\"lat\":%.6f,\"lng\":%.6f},\"vehicle_type\":\"standard\","
		 "\"quote_id\":\"%s\"}",
		 rec->plat, rec->plon, r->dlat, r->dlon, quote);
	snprintf(r->posted_key, sizeof r->posted_key, "Idempotency-Key: sim-%s-%zu", S.run_id, (size_t)(rec - S.recs));
	cJSON_Delete(j);
	r->st = R_POSTING;
	r->tries = 0;
	rec->t_request = rec->t_request < 0 ? S.now : rec->t_request;
	rider_post(r);
}

static void rider_ask_estimate(struct rider *r)
{
	const struct sim_trip_rec *rec = &S.recs[r->rec];
	char path[256];
	snprintf(path, sizeof path,
		 "/v1/estimate?pickup_lat=%.6f&pickup_lng=%.6f&dropoff_lat=%.6f&dropoff_lng=%.6f&vehicle_type=standard",
		 rec->plat, rec->plon, r->dlat, r->dlon);
	simc_http(S.pool, "GET", path, NULL, NULL, NULL, rider_quoted, r);
}

/* A request of the demand is due: a free rider quotes it. */
static void issue_request(const struct sim_request *q)
{
	struct sim_trip_rec *rec = rec_new();
	rec->t_request = S.now;
	rec->plat = q->plat;
	rec->plon = q->plon;
	S.iv_requests++;
	struct rider *r = NULL;
	for (int k = 0; k < S.nriders; k++) {
		struct rider *c = &S.rid[(S.nrecs + (size_t)k) % (size_t)S.nriders];
		if (c->st == R_FREE) {
			r = c;
			break;
		}
	}
	if (!r) {
		rec->outcome = SIM_OUT_NO_RIDER;
		return;
	}
	r->rec = (int)(rec - S.recs);
	r->st = R_QUOTING;
	r->trip_id[0] = '\0';
	r->last_seq = 0;
	r->cancel_sent = false;
	r->got_matched = false;
	r->tries = 0;
	if (q->has_dropoff) {
		r->dlat = q->dlat;
		r->dlon = q->dlon;
	} else { /* 1-3 km away, inside the box */
		for (int tries = 0; tries < 20; tries++) {
			random_point(&r->rng, &r->dlat, &r->dlon);
			double dd = sim_dist_m(q->plat, q->plon, r->dlat, r->dlon);
			if (dd > 800 && dd < 3500)
				break;
		}
	}
	rider_ask_estimate(r);
}

/* ------------------------------------------------------------ what waits */

static void later_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct later *l = arg;
	if (S.ending) {
		rh_free(l);
		return;
	}
	struct driver *d = l->idx < S.ndrivers ? &S.drv[l->idx] : NULL;
	struct rider *r = l->idx < S.nriders ? &S.rid[l->idx] : NULL;
	switch (l->kind) {
	case LATER_DRIVER_SOCKET:
		if (!d->up && d->st != D_DEAD) {
			simc_ws_free(d->ws);
			d->ws = simc_ws_open(S.base, S.host, S.port, d->token, &drv_cbs, d);
			later(LATER_DRIVER_WATCH, d->idx, NULL, NULL, ++d->gen, 10000);
		}
		break;
	case LATER_DRIVER_WATCH: /* no answer at all to the last attempt: again */
		if (!d->up && d->st != D_DEAD && d->gen == l->tries)
			later(LATER_DRIVER_SOCKET, d->idx, NULL, NULL, 0, 0);
		break;
	case LATER_RIDER_SOCKET:
		if (!r->up && r->st != R_DEAD) {
			simc_ws_free(r->ws);
			r->ws = simc_ws_open(S.base, S.host, S.port, r->token, &rider_cbs, r);
			later(LATER_RIDER_WATCH, r->idx, NULL, NULL, ++r->gen, 10000);
		}
		break;
	case LATER_RIDER_WATCH:
		if (!r->up && r->st != R_DEAD && r->gen == l->tries)
			later(LATER_RIDER_SOCKET, r->idx, NULL, NULL, 0, 0);
		break;
	case LATER_DRIVER_COMMAND:
		/* (only what the driver still waits on: a trip command of its
		 * trip, an accept of its offer, its first availability) */
		if (!strcmp(l->what, "driver.status.changed") && d->st == D_SETUP) {
			drv_open(d);
		} else if (!strcmp(l->what, "offer.accept") && d->st == D_ACCEPTING) {
			drv_send_pending(d);
		} else if (!strncmp(l->what, "trip.", 5) && !strcmp(l->trip, d->trip_id) &&
			   ((d->st == D_ARRIVING && !strcmp(l->what, "trip.arrived")) ||
			    (d->st == D_STARTING && !strcmp(l->what, "trip.started")) ||
			    (d->st == D_COMPLETING && !strcmp(l->what, "trip.completed")))) {
			drv_send_pending(d);
		}
		break;
	case LATER_DRIVER_RATE:
		drv_rate_try(l->idx, l->trip, l->tries);
		break;
	case LATER_RIDER_QUOTE:
		if (r->st == R_QUOTING)
			rider_ask_estimate(r);
		break;
	case LATER_RIDER_POST:
		if (r->st == R_POSTING)
			rider_post(r);
		break;
	case LATER_RIDER_CANCEL:
		if (!strcmp(r->trip_id, l->trip))
			rider_cancel_try(r, l->tries);
		break;
	case LATER_RIDER_RATE:
		if (r->st == R_RATING && !strcmp(r->trip_id, l->trip))
			rider_rate_try(r, l->trip, l->tries);
		break;
	case LATER_RIDER_READ:
		if (!strcmp(r->trip_id, l->trip))
			rider_read_try(r, l->tries);
		break;
	}
	rh_free(l);
}


/* ------------------------------------------------------------ the tick */

static int count_state(enum drv_state lo, enum drv_state hi)
{
	int n = 0;
	for (int i = 0; i < S.ndrivers; i++)
		n += S.drv[i].st >= lo && S.drv[i].st <= hi;
	return n;
}

static void sample(void)
{
	int idle = count_state(D_IDLE, D_ACCEPTING), busy = count_state(D_TO_PICKUP, D_COMPLETING);
	int waiting = 0;
	for (int i = 0; i < S.nriders; i++)
		waiting += S.rid[i].st == R_SEARCHING || S.rid[i].st == R_POSTING || S.rid[i].st == R_MATCHED;
	fprintf(S.ts, "%.0f,%d,%d,%d,%d,%d,%d,%d,%.4f,%d,%d\n", S.now, S.iv_requests, S.iv_created, S.iv_matched,
		S.iv_completed, S.iv_cancelled, idle, busy, idle + busy ? (double)busy / (idle + busy) : 0, waiting,
		S.protocol_errors);
	S.iv_requests = S.iv_created = S.iv_matched = S.iv_completed = S.iv_cancelled = 0;
	for (int i = 0; i < S.ndrivers; i++) {
		struct driver *d = &S.drv[i];
		if (d->st != D_DEAD && d->st != D_SETUP)
			fprintf(S.pos, "%.0f,%d,%.6f,%.6f,%s\n", S.now, i, d->lat, d->lon, drv_state_name(d->st));
	}
}

static void progress(bool final)
{
	if (S.quiet)
		return;
	int idle = count_state(D_IDLE, D_ACCEPTING), busy = count_state(D_TO_PICKUP, D_COMPLETING);
	int matched = 0, completed = 0, cancelled = 0;
	for (size_t i = 0; i < S.nrecs; i++) {
		matched += S.recs[i].t_matched >= 0;
		completed += S.recs[i].outcome == SIM_OUT_COMPLETED;
		cancelled += S.recs[i].outcome == SIM_OUT_CANCELLED;
	}
	fprintf(stderr, "%s[sim %5.0f/%.0f s] drivers %d idle %d busy | requests %zu matched %d completed %d "
			"cancelled %d | errors %d%s",
		S.tty ? "\r\033[K" : "", S.now, S.duration + S.drain, idle, busy, S.nrecs, matched, completed, cancelled,
		S.protocol_errors + S.breaches, final || !S.tty ? "\n" : "");
}

static void finish(void);

static void drv_tick(struct driver *d, double dt)
{
	if (d->st == D_SETUP || d->st == D_DEAD)
		return;
	bool arrived = drv_advance(d, dt);
	if (d->st == D_OFFERED && S.now >= d->decide_at)
		drv_decide(d);
	switch (d->st) {
	case D_TO_PICKUP:
		if (arrived || !d->moving) {
			drv_command(d, "trip.arrived");
			d->st = D_ARRIVING;
		}
		break;
	case D_BOARDING:
		if (S.now >= d->board_until) {
			drv_command(d, "trip.started");
			d->st = D_STARTING;
		}
		break;
	case D_ON_TRIP:
		if (arrived || !d->moving) {
			drv_command(d, "trip.completed");
			d->st = D_COMPLETING;
		}
		break;
	case D_IDLE:
		surge_drift(d, dt);
		if (S.cruise && !d->moving && sim_rng_unit(&d->rng) < dt / 60.0)
			drv_cruise(d);
		break;
	default:
		break;
	}
	if (S.now >= d->next_ping)
		drv_ping(d);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	double prev = S.now, now = sim_now(), dt = now - prev;
	if (dt < 0)
		dt = 0;
	while (S.next_req < S.dem.n && S.dem.req[S.next_req].t_s <= now && now < S.duration)
		issue_request(&S.dem.req[S.next_req++]);
	for (int i = 0; i < S.ndrivers; i++)
		drv_tick(&S.drv[i], dt);
	for (int i = 0; i < S.nriders; i++) {
		struct rider *r = &S.rid[i];
		if ((r->st == R_SEARCHING || r->st == R_MATCHED) && !r->cancel_sent && now >= r->patience_at) {
			rider_cancel_try(r, 0);
			r->cancel_sent = true;
		}
	}
	while (now >= S.next_sample) {
		sample();
		S.next_sample += S.interval;
	}
	surge_tick();
	double wall = (double)rh_mono_ns() / 1e9;
	if (wall >= S.next_progress_wall) {
		progress(false);
		S.next_progress_wall = wall + (S.tty ? 1 : 10);
	}
	if (now >= S.duration + S.drain)
		finish();
}

/* ------------------------------------------------------------ setup */

static void start_run(void)
{
	S.running = true;
	S.t0_ns = rh_mono_ns();
	S.now = 0;
	for (int i = 0; i < S.ndrivers; i++) {
		S.drv[i].online_since = 0;
		S.drv[i].next_ping = sim_rng_range(&S.drv[i].rng, 0, S.ping_s);
	}
	progress_clear();
	if (!S.quiet)
		fprintf(stderr, "sim: %d drivers online, %d riders ready: running %.0f simulated s at %gx\n", S.ready_drivers,
			S.ready_riders, S.duration, S.speed);
}

static void check_setup(void)
{
	if (S.running)
		return;
	if (S.setup_failed > 0) {
		fprintf(stderr, "sim: setup failed (%d accounts could not be made ready)\n", S.setup_failed);
		S.exit_code = 3;
		event_base_loopbreak(S.base);
		return;
	}
	if (S.ready_drivers == S.ndrivers && S.ready_riders == S.nriders)
		start_run();
}

struct login_ctx {
	bool is_driver;
	int idx;
	const char *password;
};

static void logged_in(void *arg, const struct simc_reply *rep);

static void login_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct login_ctx *c = arg;
	const char *email = c->is_driver ? S.drv[c->idx].email : S.rid[c->idx].email;
	char body[256];
	snprintf(body, sizeof body, "{\"role\":\"%s\",\"email\":\"%s\",\"password\":\"%s\"}", c->is_driver ? "driver" : "rider",
		 email, c->password);
	simc_http(S.pool, "POST", "/v1/auth/login", NULL, NULL, body, logged_in, c);
}

static void logged_in(void *arg, const struct simc_reply *rep)
{
	struct login_ctx *c = arg;
	if (rep->status == 429) { /* auth.login_per_address: wait as told */
		S.login_retries++;
		struct timeval tv = { rep->retry_after_s > 0 ? rep->retry_after_s : 1, 0 };
		event_base_once(S.base, -1, EV_TIMEOUT, login_retry, c, &tv);
		return;
	}
	cJSON *j = rep->status == 200 ? cJSON_Parse(rep->body) : NULL;
	const char *tok = j ? jstr(j, "token") : NULL, *sub = j ? jstr(j, "subject") : NULL;
	if (!tok || !sub) {
		protocol_error("login: %d %.200s", rep->status, rep->body);
		S.setup_failed++;
		cJSON_Delete(j);
		rh_free(c);
		check_setup();
		return;
	}
	if (c->is_driver) {
		struct driver *d = &S.drv[c->idx];
		snprintf(d->token, sizeof d->token, "%s", tok);
		snprintf(d->id, sizeof d->id, "%s", sub);
		d->ws = simc_ws_open(S.base, S.host, S.port, d->token, &drv_cbs, d);
	} else {
		struct rider *r = &S.rid[c->idx];
		snprintf(r->token, sizeof r->token, "%s", tok);
		snprintf(r->id, sizeof r->id, "%s", sub);
		r->ws = simc_ws_open(S.base, S.host, S.port, r->token, &rider_cbs, r);
	}
	cJSON_Delete(j);
	rh_free(c);
}

static void account_created(void *arg, const struct simc_reply *rep)
{
	struct login_ctx *c = arg;
	if (rep->status != 201) {
		fprintf(stderr, "sim: creating an account: %d %.300s\n", rep->status, rep->body);
		if (rep->status == 401 || rep->status == 403)
			fprintf(stderr, "sim: the admin token is missing or wrong (--admin-token, RIDEHAIL_ADMIN_TOKEN, var/admin.token)\n");
		if (rep->status == 0)
			fprintf(stderr, "sim: is ridehaild listening on %s:%d?\n", S.host, S.port);
		S.setup_failed++;
		rh_free(c);
		check_setup();
		return;
	}
	login_retry(-1, 0, c);
}

static void create_accounts(void)
{
	static const char pw[] = "sim-password-1";
	static const char *const makes[] = { "Toyota", "Honda", "Ford", "Hyundai", "Kia", "Nissan" };
	static const char *const colors[] = { "Silver", "Black", "White", "Blue", "Grey", "Red" };
	char hdr[600], body[1024];
	snprintf(hdr, sizeof hdr, "Authorization: Bearer %s", S.admin_token);
	for (int i = 0; i < S.ndrivers; i++) {
		struct driver *d = &S.drv[i];
		snprintf(d->email, sizeof d->email, "sim-%s-d%d@example.com", S.run_id, i);
		snprintf(body, sizeof body,
			 "{\"email\":\"%s\",\"name\":\"Sim Driver %d\",\"password\":\"%s\",\"vehicle\":{\"type\":\"standard\","
			 "\"make\":\"%s\",\"model\":\"Sim\",\"color\":\"%s\",\"plate\":\"S%.8s%d\"}}",
			 d->email, i, pw, makes[i % 6], colors[i % 6], S.run_id + strlen(S.run_id) - 6, i);
		struct login_ctx *c = rh_calloc(1, sizeof *c);
		*c = (struct login_ctx){ true, i, pw };
		simc_http(S.pool, "POST", "/v1/admin/drivers", NULL, hdr, body, account_created, c);
	}
	for (int i = 0; i < S.nriders; i++) {
		struct rider *r = &S.rid[i];
		snprintf(r->email, sizeof r->email, "sim-%s-r%d@example.com", S.run_id, i);
		snprintf(body, sizeof body, "{\"email\":\"%s\",\"name\":\"Sim Rider %d\",\"password\":\"%s\"}", r->email, i, pw);
		struct login_ctx *c = rh_calloc(1, sizeof *c);
		*c = (struct login_ctx){ false, i, pw };
		simc_http(S.pool, "POST", "/v1/admin/riders", NULL, hdr, body, account_created, c);
	}
}

/* Re-checks the setup every tick until the run starts. */
static void on_setup_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (S.running) {
		on_tick(-1, 0, NULL);
		return;
	}
	check_setup();
	if (!S.quiet && !S.running && S.tty) {
		fprintf(stderr, "\r\033[Ksim: setting up: %d/%d drivers online, %d/%d riders ready", S.ready_drivers, S.ndrivers,
			S.ready_riders, S.nriders);
	}
}

/* ------------------------------------------------------------ the report */

static void write_trips_csv(void)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/trips.csv", S.out_dir);
	FILE *f = fopen(path, "w");
	if (!f)
		return;
	static const char *const out[] = { "pending", "no_quote", "refused", "no_rider", "completed", "cancelled",
					   "declined" };
	fprintf(f, "t_request,outcome,time_to_match_s,pickup_wait_s,trip_time_s,pickup_lat,pickup_lon,cancel_reason\n");
	for (size_t i = 0; i < S.nrecs; i++) {
		const struct sim_trip_rec *r = &S.recs[i];
		fprintf(f, "%.1f,%s,", r->t_request, out[r->outcome]);
		if (r->t_matched >= 0 && r->t_created >= 0)
			fprintf(f, "%.2f", r->t_matched - r->t_created);
		fprintf(f, ",");
		if (r->t_arrived >= 0 && r->t_created >= 0)
			fprintf(f, "%.2f", r->t_arrived - r->t_created);
		fprintf(f, ",");
		if (r->t_completed >= 0 && r->t_started >= 0)
			fprintf(f, "%.2f", r->t_completed - r->t_started);
		fprintf(f, ",%.6f,%.6f,%s\n", r->plat, r->plon, r->cancel_reason);
	}
	fclose(f);
}

static bool have_gnuplot(void)
{
	return system("command -v gnuplot >/dev/null 2>&1") == 0;
}

/* 64-bit FNV-1a of a road segment's two ends (micro-degrees). */
static uint64_t segment_key(const double *a, const double *b)
{
	int64_t v[4] = { llround(a[0] * 1e6), llround(a[1] * 1e6), llround(b[0] * 1e6), llround(b[1] * 1e6) };
	if (v[0] > v[2] || (v[0] == v[2] && v[1] > v[3])) { /* one key for both directions */
		int64_t t0 = v[0], t1 = v[1];
		v[0] = v[2];
		v[1] = v[3];
		v[2] = t0;
		v[3] = t1;
	}
	uint64_t h = 1469598103934665603ull;
	const unsigned char *p = (const unsigned char *)v;
	for (size_t i = 0; i < sizeof v; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return h ? h : 1;
}

/* The streets drawn under map.png (streets.csv, one "lon,lat" pair per
 * line, a blank line after each segment): the road geometry of the routes
 * between neighbouring points of a grid over the area, about 60 steps on
 * its longer side, so that it runs along nearly every road of the loaded map
 * a car can use (each segment written once). */
static void write_streets_csv(void)
{
	if (!S.routing)
		return;
	char path[4200];
	snprintf(path, sizeof path, "%s/streets.csv", S.out_dir);
	FILE *f = fopen(path, "w");
	if (!f)
		return;
	fprintf(f, "# lon,lat: road segments of the map, a blank line after each\n");
	double mid = (S.box.min_lat + S.box.max_lat) / 2 * M_PI / 180;
	double w = (S.box.max_lon - S.box.min_lon) * 111320 * cos(mid), h = (S.box.max_lat - S.box.min_lat) * 110574;
	double step = fmax(fmax(w, h) / 60, 40);
	int nx = (int)(w / step) + 1, ny = (int)(h / step) + 1;
	size_t cap = 1 << 16, n = 0;
	uint64_t *seen = rh_calloc(cap, sizeof *seen);
	for (int iy = 0; iy <= ny; iy++) {
		for (int ix = 0; ix <= nx; ix++) {
			double lat = S.box.min_lat + (S.box.max_lat - S.box.min_lat) * iy / ny;
			double lon = S.box.min_lon + (S.box.max_lon - S.box.min_lon) * ix / nx;
			for (int k = 0; k < 2; k++) {
				double tlat = k ? lat + (S.box.max_lat - S.box.min_lat) / ny : lat;
				double tlon = k ? lon : lon + (S.box.max_lon - S.box.min_lon) / nx;
				struct route_result res;
				if (routing_route(S.routing, lat, lon, tlat, tlon, true, &res) != RH_OK)
					continue;
				for (size_t i = 1; i < res.npoints; i++) {
					const double *a = &res.coords[2 * (i - 1)], *b = &res.coords[2 * i];
					if (n * 2 >= cap) { /* grow: rehash */
						uint64_t *old = seen;
						size_t ocap = cap;
						cap *= 2;
						seen = rh_calloc(cap, sizeof *seen);
						for (size_t j = 0; j < ocap; j++)
							if (old[j]) {
								size_t q = old[j] & (cap - 1);
								while (seen[q])
									q = (q + 1) & (cap - 1);
								seen[q] = old[j];
							}
						rh_free(old);
					}
					uint64_t key = segment_key(a, b);
					size_t q = key & (cap - 1);
					while (seen[q] && seen[q] != key)
						q = (q + 1) & (cap - 1);
					if (seen[q])
						continue;
					seen[q] = key;
					n++;
					fprintf(f, "%.6f,%.6f\n%.6f,%.6f\n\n", a[0], a[1], b[0], b[1]);
				}
			}
		}
	}
	rh_free(seen);
	fclose(f);
}

static void write_plots(void)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/plots.gp", S.out_dir);
	FILE *f = fopen(path, "w");
	if (!f)
		return;
	/* The map in kilometres east and north of the box's south-west corner:
	 * a degree of longitude is cos(latitude) times a degree of latitude, and
	 * plotting degrees as they are stretches the map east-west. */
	double lat0 = S.box.min_lat, lon0 = S.box.min_lon;
	double kx = 111.320 * cos((S.box.min_lat + S.box.max_lat) / 2 * M_PI / 180), ky = 110.574;
	fprintf(f,
		"# gnuplot script written by ridehail-sim; run from this directory: gnuplot plots.gp\n"
		"set datafile separator ','\nset terminal pngcairo size 900,520 noenhanced\nset key top left\nset grid\n"
		"set output 'requests_matches.png'\n"
		"set title 'Requests, matches, completions and cancellations so far (sampled every %.0f simulated s)'\n"
		"set xlabel 'simulated s'\nset ylabel 'trips (cumulative)'\nset xrange [0:*]\nset yrange [0:*]\n"
		"a=0; b=0; c=0; e=0\n"
		"plot 'timeseries.csv' every ::1 using 1:(a=a+$2) with lines lw 2 title 'requests', "
		"'' every ::1 using 1:(b=b+$4) with lines lw 2 title 'matched', "
		"'' every ::1 using 1:(c=c+$5) with lines title 'completed', "
		"'' every ::1 using 1:(e=e+$6) with lines title 'cancelled'\n"
		"set output 'utilisation.png'\nset title 'Driver utilisation: busy / online drivers at each sample'\n"
		"set ylabel 'busy fraction'\nset yrange [0:1]\n"
		"plot 'timeseries.csv' every ::1 using 1:9 with lines lw 2 title 'utilisation'\n"
		"set output 'wait_hist.png'\nset title 'Time to match and pickup wait, from the ride request (10 s bins)'\n"
		"set xlabel 'seconds after the request'\nset ylabel 'trips'\nset xrange [0:*]\nset yrange [0:*]\n"
		"bin(x) = 10*floor(x/10)+5\nset boxwidth 9\nset style fill transparent solid 0.5\n"
		"plot 'trips.csv' every ::1 using (bin($3)):(1) smooth frequency with boxes title 'time to match', "
		"'' every ::1 using (bin($4)):(1) smooth frequency with boxes title 'pickup wait'\n"
		"set style fill empty\n"
		"lat0 = %.6f; lon0 = %.6f; kx = %.5f; ky = %.5f\nX(lon) = (lon - lon0) * kx\nY(lat) = (lat - lat0) * ky\n"
		"idle(s) = s eq 'idle' || s eq 'offered' || s eq 'accepting'\n"
		"topickup(s) = s eq 'to_pickup' || s eq 'arriving' || s eq 'boarding'\n"
		"rider(s) = s eq 'starting' || s eq 'on_trip' || s eq 'completing'\n"
		"set terminal pngcairo size 1100,900 noenhanced\nset output 'map.png'\n"
		"set title 'Pickups and drivers (positions sampled every %.0f simulated s) on the roads of the map'\n"
		"set xlabel sprintf('km east of %%.4f', lon0)\nset ylabel sprintf('km north of %%.4f', lat0)\n"
		"set size ratio -1\nset xrange [0:%.4f]\nset yrange [0:%.4f]\nset key below horizontal\n"
		"plot %s"
		"'positions.csv' every ::1 using (idle(strcol(5)) ? X($4) : NaN):(Y($3)) with points pt 7 ps 0.35 "
		"lc rgb '#8a8ac8' title 'idle drivers', "
		"'' every ::1 using (topickup(strcol(5)) ? X($4) : NaN):(Y($3)) with points pt 7 ps 0.5 lc rgb '#e08a00' "
		"title 'drivers on the way to a pickup', "
		"'' every ::1 using (rider(strcol(5)) ? X($4) : NaN):(Y($3)) with points pt 7 ps 0.5 lc rgb '#1a9850' "
		"title 'drivers with a rider', "
		"'trips.csv' every ::1 using (strcol(2) eq 'completed' ? X($7) : NaN):(Y($6)) with points pt 6 ps 1.3 lw 2 "
		"lc rgb '#d7191c' title 'pickups (trip completed)', "
		"'' every ::1 using (strcol(2) ne 'completed' ? X($7) : NaN):(Y($6)) with points pt 2 ps 1.1 lw 2 "
		"lc rgb '#000000' title 'pickups (not completed)'\n",
		S.interval, lat0, lon0, kx, ky, S.interval, (S.box.max_lon - lon0) * kx, (S.box.max_lat - lat0) * ky,
		S.routing ? "'streets.csv' using (X($1)):(Y($2)) with lines lw 1 lc rgb '#c8c8c8' title 'roads of the map', "
			  : "");
	fclose(f);
	write_streets_csv();
	if (!have_gnuplot()) {
		fprintf(stderr, "sim: gnuplot is not installed: plots skipped (apt-get install gnuplot-nox; then run "
				"`gnuplot plots.gp` in %s)\n", S.out_dir);
		return;
	}
	char cmd[4200];
	snprintf(cmd, sizeof cmd, "cd '%s' && gnuplot plots.gp 2> plots.log", S.out_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "sim: gnuplot failed (see %s/plots.log)\n", S.out_dir);
}

static void finish(void)
{
	if (S.ending)
		return;
	S.ending = true;
	sim_now();
	sample();
	progress(true);
	struct sim_driver_acc *acc = rh_calloc((size_t)S.ndrivers + 1, sizeof *acc);
	for (int i = 0; i < S.ndrivers; i++) {
		struct driver *d = &S.drv[i];
		acc[i] = d->acc;
		if (d->st != D_SETUP)
			acc[i].online_s = S.now - d->online_since;
		if (d->busy_since >= 0)
			acc[i].busy_s += S.now - d->busy_since;
	}
	struct sim_report rep;
	sim_report_compute(S.recs, S.nrecs, acc, (size_t)S.ndrivers, S.protocol_errors, S.breaches, &rep);
	rh_free(acc);
	char extra[3072], path[4096], sg[512];
	surge_summary(sg, sizeof sg);
	snprintf(extra, sizeof extra,
		 "  \"run\": {\"seed\": %llu, \"drivers\": %d, \"riders\": %d, \"duration_s\": %.0f, \"drain_s\": %.0f, "
		 "\"speed\": %g, \"demand\": \"%s\", \"demand_rows\": %zu, \"demand_mult\": %d, \"map\": %s, "
		 "\"simulated_s\": %.1f, \"login_retries\": %d, \"straight_line_fallbacks\": %d},\n"
		 "  \"driver_location_msgs\": %zu,\n  \"track_distance_m\": {\"p50\": %.1f, \"p95\": %.1f},\n%s",
		 (unsigned long long)S.seed, S.ndrivers, S.nriders, S.duration, S.drain, S.speed, S.demand, S.dem.n,
		 S.demand_mult, S.routing ? "true" : "false", S.now, S.login_retries, S.route_fail, S.ntrack,
		 sim_percentile(S.track, S.ntrack, 50), sim_percentile(S.track, S.ntrack, 95), sg);
	snprintf(path, sizeof path, "%s/summary.json", S.out_dir);
	FILE *f = fopen(path, "w");
	if (f) {
		sim_report_write_json(&rep, f, extra);
		fclose(f);
	}
	fflush(S.ts);
	fflush(S.pos);
	write_trips_csv();
	write_plots();
	surge_write_plots();
	sim_report_write_json(&rep, stdout, extra);
	struct sim_text_ctx tc = { .drivers = S.ndrivers, .duration_s = S.duration, .compress = S.compress,
				   .replay = !strcmp(S.demand, "replay") };
	snprintf(path, sizeof path, "%s/summary.txt", S.out_dir);
	f = fopen(path, "w");
	if (f) {
		sim_report_write_text(&rep, &tc, f);
		fclose(f);
	}
	fprintf(stderr, "sim: report in %s (summary.txt, summary.json, timeseries.csv, trips.csv, positions.csv, *.png)\n",
		S.out_dir);
	if (S.reconnects || S.resends)
		fprintf(stderr, "sim: rode through faults: %d sockets opened again, %d commands and requests sent again\n",
			S.reconnects, S.resends);
	if (rep.protocol_errors || rep.invariant_breaches) {
		fprintf(stderr, "sim: FAILED: %d protocol errors, %d invariant breaches\n", rep.protocol_errors,
			rep.invariant_breaches);
		S.exit_code = 1;
	}
	for (int i = 0; i < S.ndrivers; i++)
		simc_ws_close(S.drv[i].ws);
	for (int i = 0; i < S.nriders; i++)
		simc_ws_close(S.rid[i].ws);
	event_base_loopbreak(S.base);
}

static void on_sigint(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (!S.running) {
		event_base_loopbreak(S.base);
		S.exit_code = 130;
		return;
	}
	finish();
}

/* ------------------------------------------------------------ main */

static void usage(void)
{
	fprintf(stderr,
		"usage: ridehail-sim [--addr 127.0.0.1:8080] [--admin-token T | --admin-token-file F]\n"
		"         [--drivers 20] [--riders 40] [--duration 600] [--drain 0] [--speed 1] [--seed 1]\n"
		"         [--demand uniform|hotspots|replay] [--rate 120] [--hotspots 4] [--hotspot-sigma 400]\n"
		"         [--csv FILE --start 'YYYY-MM-DD HH:MM:SS' --window S --compress F] [--od FILE] [--demand-mult M]\n"
		"         [--map FILE] [--bbox minlon,minlat,maxlon,maxlat] [--margin 200] [--kmh 25] [--traffic 0.8]\n"
		"         [--ping 4] [--ping-jitter 1] [--accept 0.9] [--ignore 0.03] [--accept-delay 3] [--board 20]\n"
		"         [--patience 420] [--cruise] [--interval 30] [--http-conns 8] [--out DIR] [--quiet] [--dry-run]\n"
		"         [--price-sensitive 0] [--max-surge 1.3,2.5] [--surge-drift 0] [--drift-radius 3000] [--drift-gain 0.2]\n"
		"See docs/simulator.md.\n");
	exit(2);
}

static double num_arg(const char *flag, const char *v, double lo, double hi)
{
	char *end;
	double x = strtod(v, &end);
	if (end == v || *end || !(x >= lo && x <= hi)) {
		fprintf(stderr, "ridehail-sim: %s wants a number in %g..%g, not '%s'\n", flag, lo, hi, v);
		exit(2);
	}
	return x;
}

static char *read_token_file(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	char buf[512] = "";
	if (!fgets(buf, sizeof buf, f))
		buf[0] = '\0';
	fclose(f);
	buf[strcspn(buf, "\r\n")] = '\0';
	return buf[0] ? rh_strdup(buf) : NULL;
}

/* --price-sensitive P, --max-surge LO,HI, --surge-drift P,
 * --drift-radius M, --drift-gain G. */
static bool surge_arg(const char *a, const char *v)
{
	if (!strcmp(a, "--price-sensitive")) {
		SG.sensitive = num_arg(a, v, 0, 1);
	} else if (!strcmp(a, "--max-surge")) {
		if (sscanf(v, "%lf,%lf", &SG.max_lo, &SG.max_hi) != 2 || SG.max_lo < 1 || SG.max_hi < SG.max_lo) {
			fprintf(stderr, "ridehail-sim: --max-surge wants LO,HI with 1 <= LO <= HI\n");
			exit(2);
		}
	} else if (!strcmp(a, "--surge-drift")) {
		SG.drift = num_arg(a, v, 0, 60);
	} else if (!strcmp(a, "--drift-radius")) {
		SG.drift_radius_m = num_arg(a, v, 100, 1e5);
	} else if (!strcmp(a, "--drift-gain")) {
		SG.drift_gain = num_arg(a, v, 0, 10);
	} else {
		return false;
	}
	return true;
}

static void parse_args(int argc, char **argv)
{
	SG.max_lo = 1.3;
	SG.max_hi = 2.5;
	SG.drift_radius_m = 3000;
	SG.drift_gain = 0.2;
	snprintf(S.host, sizeof S.host, "127.0.0.1");
	S.port = 8080;
	S.ndrivers = 20;
	S.nriders = 40;
	S.duration = 600;
	S.speed = 1;
	S.seed = 1;
	S.demand = "uniform";
	S.rate = 120;
	S.hotspots = 4;
	S.sigma_m = 400;
	S.compress = 1;
	S.window = 0;
	S.margin = 200;
	S.kmh = 25;
	S.traffic = 0.8;
	S.ping_s = 4;
	S.ping_jitter = 1;
	S.accept_p = 0.9;
	S.ignore_p = 0.03;
	S.accept_delay = 3;
	S.board_s = 20;
	S.patience_s = 420;
	S.interval = 30;
	S.http_conns = 8;
	S.demand_mult = 1;
	const char *token_file = NULL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--cruise")) {
			S.cruise = true;
			continue;
		}
		if (!strcmp(a, "--quiet")) {
			S.quiet = true;
			continue;
		}
		if (!strcmp(a, "--dry-run")) {
			S.dry_run = true;
			continue;
		}
		if (!strcmp(a, "-h") || !strcmp(a, "--help"))
			usage();
		if (!v) {
			fprintf(stderr, "ridehail-sim: %s needs a value\n", a);
			usage();
		}
		i++;
		if (surge_arg(a, v))
			continue;
		if (!strcmp(a, "--addr")) {
			const char *c = strrchr(v, ':');
			if (!c || (size_t)(c - v) >= sizeof S.host)
				usage();
			snprintf(S.host, sizeof S.host, "%.*s", (int)(c - v), v);
			S.port = (int)num_arg(a, c + 1, 1, 65535);
		} else if (!strcmp(a, "--admin-token")) {
			S.admin_token = v;
		} else if (!strcmp(a, "--admin-token-file")) {
			token_file = v;
		} else if (!strcmp(a, "--drivers")) {
			S.ndrivers = (int)num_arg(a, v, 1, 100000);
		} else if (!strcmp(a, "--riders")) {
			S.nriders = (int)num_arg(a, v, 1, 100000);
		} else if (!strcmp(a, "--duration")) {
			S.duration = num_arg(a, v, 1, 1e7);
		} else if (!strcmp(a, "--drain")) {
			S.drain = num_arg(a, v, 0, 1e7);
		} else if (!strcmp(a, "--speed")) {
			S.speed = num_arg(a, v, 0.01, 1000);
		} else if (!strcmp(a, "--seed")) {
			S.seed = (uint64_t)num_arg(a, v, 0, 1e18);
		} else if (!strcmp(a, "--demand")) {
			S.demand = v;
		} else if (!strcmp(a, "--rate")) {
			S.rate = num_arg(a, v, 0, 1e7);
		} else if (!strcmp(a, "--hotspots")) {
			S.hotspots = (int)num_arg(a, v, 1, 1000);
		} else if (!strcmp(a, "--hotspot-sigma")) {
			S.sigma_m = num_arg(a, v, 1, 1e5);
		} else if (!strcmp(a, "--csv")) {
			S.csv = v;
		} else if (!strcmp(a, "--od")) {
			S.od = v;
		} else if (!strcmp(a, "--start")) {
			S.start_str = v;
		} else if (!strcmp(a, "--window")) {
			S.window = num_arg(a, v, 0, 1e9);
		} else if (!strcmp(a, "--compress")) {
			S.compress = num_arg(a, v, 0.001, 1e6);
		} else if (!strcmp(a, "--demand-mult")) {
			S.demand_mult = (int)num_arg(a, v, 1, 1000);
		} else if (!strcmp(a, "--map")) {
			S.map_path = v;
		} else if (!strcmp(a, "--bbox")) {
			if (!sim_bbox_parse(v, &S.box)) {
				fprintf(stderr, "ridehail-sim: --bbox wants minlon,minlat,maxlon,maxlat\n");
				exit(2);
			}
			S.have_box = true;
		} else if (!strcmp(a, "--margin")) {
			S.margin = num_arg(a, v, 0, 1e5);
		} else if (!strcmp(a, "--kmh")) {
			S.kmh = num_arg(a, v, 1, 200);
		} else if (!strcmp(a, "--traffic")) {
			S.traffic = num_arg(a, v, 0.05, 2);
		} else if (!strcmp(a, "--ping")) {
			S.ping_s = num_arg(a, v, 0.5, 25);
		} else if (!strcmp(a, "--ping-jitter")) {
			S.ping_jitter = num_arg(a, v, 0, 10);
		} else if (!strcmp(a, "--accept")) {
			S.accept_p = num_arg(a, v, 0, 1);
		} else if (!strcmp(a, "--ignore")) {
			S.ignore_p = num_arg(a, v, 0, 1);
		} else if (!strcmp(a, "--accept-delay")) {
			S.accept_delay = num_arg(a, v, 0, 60);
		} else if (!strcmp(a, "--board")) {
			S.board_s = num_arg(a, v, 0, 3600);
		} else if (!strcmp(a, "--patience")) {
			S.patience_s = num_arg(a, v, 1, 1e6);
		} else if (!strcmp(a, "--interval")) {
			S.interval = num_arg(a, v, 1, 1e6);
		} else if (!strcmp(a, "--http-conns")) {
			S.http_conns = (int)num_arg(a, v, 1, 256);
		} else if (!strcmp(a, "--out")) {
			S.out_dir = v;
		} else {
			fprintf(stderr, "ridehail-sim: unknown option %s\n", a);
			usage();
		}
	}
	if (S.ping_jitter >= S.ping_s)
		S.ping_jitter = S.ping_s / 2;
	if (!S.admin_token)
		S.admin_token = getenv("RIDEHAIL_ADMIN_TOKEN");
	if (!S.admin_token || !*S.admin_token)
		S.admin_token = read_token_file(token_file ? token_file : "var/admin.token");
	if (!S.admin_token && !S.dry_run) {
		fprintf(stderr, "ridehail-sim: no admin token (--admin-token, --admin-token-file, RIDEHAIL_ADMIN_TOKEN or "
				"var/admin.token)\n");
		exit(2);
	}
	if (strcmp(S.demand, "uniform") && strcmp(S.demand, "hotspots") && strcmp(S.demand, "replay")) {
		fprintf(stderr, "ridehail-sim: --demand is uniform, hotspots or replay\n");
		exit(2);
	}
	if (!strcmp(S.demand, "replay") && !S.csv) {
		fprintf(stderr, "ridehail-sim: --demand replay needs --csv FILE\n");
		exit(2);
	}
}

static void build_demand(void)
{
	struct sim_rng r;
	sim_rng_seed(&r, S.seed, 0xdead);
	struct sim_bbox inner = sim_bbox_shrink(S.box, S.margin);
	char err[512];
	sim_demand_init(&S.dem);
	if (!strcmp(S.demand, "replay")) {
		/* rows in the box are kept, then moved --margin inside it (snapped
		 * onto the served area rather than dropped) */
		struct sim_replay_opts o = { .box = S.box, .use_box = true, .start = -1, .compress = S.compress,
					     .need_time = true };
		if (S.start_str && !sim_parse_time(S.start_str, &o.start)) {
			fprintf(stderr, "ridehail-sim: --start: not a time: %s\n", S.start_str);
			exit(2);
		}
		o.window_s = S.window > 0 ? S.window : S.duration * S.compress;
		if (sim_demand_load_csv(S.csv, &o, &S.dem, err, sizeof err) != RH_OK) {
			fprintf(stderr, "ridehail-sim: %s: %s\n", S.csv, err);
			exit(2);
		}
		if (!S.quiet)
			fprintf(stderr, "sim: replay %s: %zu rows read, %zu outside the box, %zu outside the window, %zu bad: %zu "
					"requests\n", S.csv, S.dem.rows_read, S.dem.rows_outside, S.dem.rows_outside_window,
				S.dem.rows_bad, S.dem.n);
	} else if (!strcmp(S.demand, "hotspots")) {
		sim_demand_hotspots(&S.dem, &r, &inner, S.duration, S.rate, S.hotspots, S.sigma_m);
	} else {
		sim_demand_uniform(&S.dem, &r, &inner, S.duration, S.rate);
	}
	if (S.demand_mult > 1)
		sim_demand_multiply(&S.dem, &r, S.demand_mult, 60 / S.compress, 150);
	if (S.od) {
		struct sim_demand od;
		sim_demand_init(&od);
		struct sim_replay_opts o = { .box = inner, .use_box = true, .start = -1, .compress = 1, .need_time = false };
		if (sim_demand_load_csv(S.od, &o, &od, err, sizeof err) != RH_OK) {
			fprintf(stderr, "ridehail-sim: %s: %s\n", S.od, err);
			exit(2);
		}
		size_t w = 0;
		for (size_t i = 0; i < od.n; i++)
			if (od.req[i].has_dropoff && sim_dist_m(od.req[i].plat, od.req[i].plon, od.req[i].dlat, od.req[i].dlon) > 300)
				od.req[w++] = od.req[i];
		od.n = w;
		if (!S.quiet)
			fprintf(stderr, "sim: %zu origin-destination pairs inside the box from %s\n", od.n, S.od);
		sim_demand_fill_dropoffs(&S.dem, &od, &r);
		sim_demand_fini(&od);
	}
	for (size_t i = 0; i < S.dem.n; i++) {
		sim_bbox_clamp(&inner, &S.dem.req[i].plat, &S.dem.req[i].plon);
		if (S.dem.req[i].has_dropoff)
			sim_bbox_clamp(&inner, &S.dem.req[i].dlat, &S.dem.req[i].dlon);
	}
}

/* The requests the run will issue: those planned before --duration (a
 * replay window or --demand-mult's jitter can put rows past it). */
static size_t planned_requests(void)
{
	size_t n = 0;
	for (size_t i = 0; i < S.dem.n; i++)
		n += S.dem.req[i].t_s < S.duration;
	return n;
}

/* The plan: every request of the demand, as the run will issue it. */
static void write_demand_csv(void)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/demand.csv", S.out_dir);
	FILE *f = fopen(path, "w");
	if (!f)
		return;
	fprintf(f, "t_s,pickup_lat,pickup_lon,dropoff_lat,dropoff_lon\n");
	for (size_t i = 0; i < S.dem.n; i++) {
		const struct sim_request *q = &S.dem.req[i];
		fprintf(f, "%.3f,%.6f,%.6f,", q->t_s, q->plat, q->plon);
		if (q->has_dropoff)
			fprintf(f, "%.6f,%.6f", q->dlat, q->dlon);
		fputc('\n', f);
	}
	fclose(f);
}

static void mkdir_p(const char *dir)
{
	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s", dir);
	for (char *p = tmp + 1; *p; p++)
		if (*p == '/') {
			*p = '\0';
			mkdir(tmp, 0755);
			*p = '/';
		}
	mkdir(tmp, 0755);
}

int main(int argc, char **argv)
{
	parse_args(argc, argv);
	S.tty = isatty(2);
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	snprintf(S.run_id, sizeof S.run_id, "%lx%04x", (unsigned long)time(NULL), (unsigned)getpid() & 0xffff);
	if (S.map_path) {
		struct cfg_errors errs;
		static char *const no_env[] = { NULL };
		if (config_load_buffer(&S.cfg, "sim", "", no_env, &errs) != RH_OK) {
			fprintf(stderr, "ridehail-sim: default configuration refused\n");
			return 2;
		}
		char err[512];
		if (routing_load(S.map_path, &S.cfg.routing, &S.routing, err, sizeof err) != RH_OK) {
			fprintf(stderr, "ridehail-sim: %s: %s\n", S.map_path, err);
			return 2;
		}
		struct routing_stats st;
		routing_get_stats(S.routing, &st);
		if (!S.have_box) {
			S.box = (struct sim_bbox){ st.min_lat, st.min_lon, st.max_lat, st.max_lon };
			S.have_box = true;
		}
		if (!S.quiet)
			fprintf(stderr, "sim: map %s: %zu nodes, %zu edges; box %.4f,%.4f,%.4f,%.4f\n", S.map_path, st.nodes,
				st.edges, S.box.min_lon, S.box.min_lat, S.box.max_lon, S.box.max_lat);
	}
	if (!S.have_box) {
		fprintf(stderr, "ridehail-sim: give --map or --bbox (the area to simulate)\n");
		return 2;
	}
	if (S.routing)
		find_anchor();
	build_demand();
	demand_onto_roads();
	if (!S.quiet && S.have_anchor)
		fprintf(stderr, "sim: %d demand points moved onto the nearest usable road, %d with none within 2 km\n",
			S.moved_onto_roads, S.unroutable);
	char outbuf[4096];
	if (!S.out_dir) {
		snprintf(outbuf, sizeof outbuf, "var/sim/%s", S.run_id);
		S.out_dir = outbuf;
	}
	mkdir_p(S.out_dir);
	write_demand_csv();
	if (S.dry_run) {
		fprintf(stderr, "sim: %zu requests planned over %.0f simulated s: %s/demand.csv\n", planned_requests(), S.duration,
			S.out_dir);
		routing_free(S.routing);
		if (S.map_path)
			config_fini(&S.cfg);
		sim_demand_fini(&S.dem);
		return 0;
	}
	char path[4200];
	snprintf(path, sizeof path, "%s/timeseries.csv", S.out_dir);
	S.ts = fopen(path, "w");
	snprintf(path, sizeof path, "%s/positions.csv", S.out_dir);
	S.pos = fopen(path, "w");
	if (!S.ts || !S.pos) {
		fprintf(stderr, "ridehail-sim: cannot write into %s: %s\n", S.out_dir, strerror(errno));
		return 2;
	}
	fprintf(S.ts, "t_s,requests,created,matched,completed,cancelled,drivers_idle,drivers_busy,utilisation,"
		      "riders_waiting,protocol_errors\n");
	fprintf(S.pos, "t_s,driver,lat,lon,state\n");
	surge_open_files();

	S.base = event_base_new();
	S.pool = simc_pool_new(S.base, S.host, S.port, S.http_conns);
	S.drv = rh_calloc((size_t)S.ndrivers, sizeof *S.drv);
	S.rid = rh_calloc((size_t)S.nriders, sizeof *S.rid);
	for (int i = 0; i < S.ndrivers; i++) {
		struct driver *d = &S.drv[i];
		d->idx = i;
		sim_rng_seed(&d->rng, S.seed, 1000 + (uint64_t)i);
		sim_path_init(&d->path);
		d->busy_since = -1;
		random_point(&d->rng, &d->lat, &d->lon); /* on a road a car can use, with a map */
		d->decide_at = INFINITY;
	}
	for (int i = 0; i < S.nriders; i++) {
		S.rid[i].idx = i;
		S.rid[i].rec = -1;
		sim_rng_seed(&S.rid[i].rng, S.seed, 1000000 + (uint64_t)i);
	}
	if (!S.quiet)
		fprintf(stderr, "sim: %zu requests planned over %.0f simulated s (%s demand); creating %d drivers and %d riders "
				"on %s:%d\n", planned_requests(), S.duration, S.demand, S.ndrivers, S.nriders, S.host, S.port);
	create_accounts();
	S.tick = event_new(S.base, -1, EV_PERSIST, on_setup_tick, NULL);
	struct timeval tv = { 0, TICK_MS * 1000 };
	event_add(S.tick, &tv);
	S.sigint = evsignal_new(S.base, SIGINT, on_sigint, NULL);
	event_add(S.sigint, NULL);
	struct event *sigterm = evsignal_new(S.base, SIGTERM, on_sigint, NULL);
	event_add(sigterm, NULL);
	event_base_dispatch(S.base);

	for (int i = 0; i < S.ndrivers; i++) {
		simc_ws_free(S.drv[i].ws);
		sim_path_fini(&S.drv[i].path);
	}
	for (int i = 0; i < S.nriders; i++)
		simc_ws_free(S.rid[i].ws);
	simc_pool_free(S.pool);
	event_free(S.tick);
	event_free(S.sigint);
	event_free(sigterm);
	event_base_free(S.base);
	if (S.ts)
		fclose(S.ts);
	if (S.pos)
		fclose(S.pos);
	if (SG.ts)
		fclose(SG.ts);
	if (SG.cells)
		fclose(SG.cells);
	sim_surge_map_fini(&SG.map);
	rh_free(S.drv);
	rh_free(S.rid);
	rh_free(S.recs);
	rh_free(S.tmap);
	rh_free(S.track);
	sim_demand_fini(&S.dem);
	routing_free(S.routing);
	if (S.map_path)
		config_fini(&S.cfg);
	return S.exit_code;
}
