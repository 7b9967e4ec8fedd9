#include "match/match.h"

#include <event2/event.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "auth/auth.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/server.h"
#include "core/strbuf.h"
#include "core/umap.h"
#include "core/uuid.h"
#include "gateway/gateway.h"
#include "geo/geohash.h"
#include "net/ws.h"
#include "presence/presence.h"
#include "pricing/pricing.h"
#include "store/db.h"
#include "trip/trip.h"

#define MAX_TRIED 128     /* drivers one search remembers (offered, declined, lost) */
#define MAX_CANDIDATES 256
#define RECOVER_POLL_MS 200

enum offer_state { OFFER_RESERVING, OFFER_LIVE, OFFER_ACCEPTING };

struct ride;

struct offer {
	struct matcher *m;
	struct uuid id, driver, trip;
	enum offer_state state;
	int64_t version;         /* the driver's version once reserved */
	int64_t expires_wall_ms;
	int64_t sent_mono_ms;
	double dist_m, score;
	int eta_s, round;
	struct event *timer;
};

struct rider_msg {
	int64_t seq;
	char type[32];
	char *payload; /* JSON text */
};

struct ride {
	struct matcher *m;
	struct uuid trip, rider, driver;
	char trip_s[37], rider_s[37], driver_s[37];
	bool has_driver;
	enum trip_state state;
	int vehicle;
	double plat, plng, dlat, dlng;
	int64_t fare_total;
	char currency[4];
	/* the search */
	bool searching, waiting, giving_up;
	int radius_step, round, live;
	int64_t search_started_ms, deadline_ms;
	struct uuid tried[MAX_TRIED];
	int ntried;
	struct event *timer; /* the waiting trip's retry */
	TAILQ_ENTRY(ride) wait_link;
	/* metering while IN_PROGRESS */
	bool meter_has_last;
	double m_lat, m_lon, meter_m;
	int64_t m_device_ms, started_mono_ms;
	/* messages to the rider, numbered; the last few kept for replay */
	int64_t seq;
	struct rider_msg *ring;
	int ring_len, ring_next;
};
TAILQ_HEAD(ride_queue, ride);

struct matcher {
	struct server *srv;
	const struct match_cfg *cfg;
	struct umap rides;      /* trip -> ride */
	struct umap by_driver;  /* driver -> ride (assigned) */
	struct umap by_rider;   /* rider -> ride (active) */
	struct umap offers;     /* offer -> offer */
	struct umap offer_of;   /* driver -> offer */
	struct umap riders;     /* rider -> session */
	struct ride_queue waiting;
	int nwaiting, nsearching;
	struct event *recover_timer;
	bool recovered;
	bool offering; /* the last run's reservations are released: offers may go out */
	bool loading;  /* the active trips are being read */
	struct umap ended; /* trips that ended while they were: not to be taken back from the read */
	/* Reservations waiting for the one in flight: they go together as the
	 * next batch (one statement, one commit). */
	struct reserve_ctx **pending;
	int npending, cap_pending;
	bool reserving;
	struct event *reserve_ev;
	struct metric_family *f_offers, *f_match_time;
	struct metric_cell *m_searching, *m_waiting, *m_match_time, *m_no_drivers, *m_rider_msgs;
};

/* ------------------------------------------------------------ statements */

/* Reserves drivers on (status, version), a batch at once: $1 the drivers,
 * $2 their versions as presence knows them; a row (n, version) for each one
 * reserved, n its place in the arrays (from 1). A driver named twice is
 * reserved once: the other gets no row, as if someone else had won.
 *
 * Its commit does not wait for the disk (synchronous_commit off for this
 * transaction alone). A reservation is atomic and seen by every other
 * transaction at once, as before; only its durability is deferred, to the
 * WAL writer (within wal_writer_delay) or to the next commit that waits,
 * which flushes it too. What a crash of the database could lose is what a
 * restart releases anyway (reserved-but-unanswered drivers go back to
 * available), and nothing durable depends on it unflushed: the MATCHED
 * that uses it checks the driver's version and waits for its own flush,
 * which covers the reservation's WAL before it. Every offer waited for
 * two flushes (the trip, then the reservation), one now. */
static struct db_stmt st_reserve = {
	"match_reserve",
	"WITH async AS (SELECT set_config('synchronous_commit', 'off', true))"
	" UPDATE drivers d SET status = 'offered', version = d.version + 1, updated_at = now()"
	" FROM async, unnest($1::uuid[], $2::bigint[]) WITH ORDINALITY AS u (id, v, n)"
	" WHERE d.id = u.id AND d.status = 'available' AND d.version = u.v AND NOT d.disabled"
	" RETURNING u.n, d.version",
	2,
};
/* Frees a driver we reserved (only if still reserved at our version) and
 * records why the offer ended as a match.rejected event of the trip. */
static struct db_stmt st_release = {
	"match_release",
	"WITH d AS (UPDATE drivers SET status = 'available', version = version + 1, updated_at = now()"
	" WHERE id = $1 AND status = 'offered' AND version = $2 RETURNING version)"
	" SELECT d.version, trip_emit(t, 'match.rejected', jsonb_build_object('trip_id', t.id, 'driver_id', $1::uuid,"
	 " 'reason', $4::text)) FROM d JOIN trips t ON t.id = $3::uuid",
	4,
};
static struct db_stmt st_driver_state = {
	"match_driver_state", "SELECT status, version FROM drivers WHERE id = $1", 1,
};
static struct db_stmt st_release_all = {
	"match_release_all",
	"UPDATE drivers SET status = 'available', version = version + 1, updated_at = now()"
	" WHERE status = 'offered' AND NOT (id = ANY ($1::uuid[])) RETURNING id, version",
	1,
};
static struct db_stmt st_active = {
	"match_active",
	"SELECT trip_json(t, false), (extract(epoch FROM now() - t.requested_at) * 1000)::bigint,"
	" COALESCE((extract(epoch FROM now() - t.started_at) * 1000)::bigint, 0),"
	" COALESCE((SELECT ST_Length(ST_MakeLine(l.location::geometry ORDER BY l.recorded_at)::geography)"
	"           FROM driver_locations l WHERE l.trip_id = t.id AND l.recorded_at >= t.started_at), 0)"
	" FROM trips t WHERE t.state IN ('SEARCHING', 'MATCHED', 'ARRIVED', 'IN_PROGRESS') ORDER BY t.requested_at",
	0,
};

/* ------------------------------------------------------------ helpers */

static int64_t mono_ms(void)
{
	return rh_mono_ns() / 1000000;
}

static void count_offer(struct matcher *m, const char *result)
{
	const char *lv[] = { result };
	metric_inc(metric_cell(m->f_offers, lv));
}

/* Seconds from (lat, lon) to (tlat, tlon), by road when a map is loaded
 * (0 when there is no road: the app shows "arriving"). */
static double eta_between(const struct matcher *m, double lat, double lon, double tlat, double tlon)
{
	double eta, road;
	pricing_etas(m->srv->pricing, &lat, &lon, 1, tlat, tlon, &eta, &road);
	return eta < 0 ? 0 : eta;
}

static cJSON *point(double lat, double lon)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "lat", lat);
	cJSON_AddNumberToObject(o, "lon", lon);
	return o;
}

static cJSON *money(int64_t minor, const char *cur)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "currency", cur);
	cJSON_AddNumberToObject(o, "amount", (double)minor / 100.0);
	return o;
}

static struct session *driver_session(struct matcher *m, const struct uuid *d)
{
	return presence_session(m->srv->presence, d);
}

/* ------------------------------------------------------------ riders */

static void ride_ring_free(struct ride *r)
{
	for (int i = 0; i < r->ring_len; i++)
		rh_free(r->ring[i].payload);
	rh_free(r->ring);
	r->ring = NULL;
	r->ring_len = r->ring_next = 0;
}

/* Numbers the message, keeps it for replay and sends it if the rider is
 * connected. sb holds the payload's opening brace and its members, if any;
 * trip_id and seq go last, and the buffer becomes the kept message. */
static void to_rider_sb(struct ride *r, const char *type, struct strbuf *sb)
{
	struct matcher *m = r->m;
	sb_puts(sb, sb->len > 1 ? ",\"trip_id\":\"" : "\"trip_id\":\"");
	sb_puts(sb, r->trip_s);
	sb_puts(sb, "\",\"seq\":");
	sb_int(sb, ++r->seq);
	sb_putc(sb, '}');
	int cap = (int)m->cfg->replay_messages;
	if (!r->ring)
		r->ring = rh_calloc((size_t)cap, sizeof *r->ring);
	struct rider_msg *slot;
	if (r->ring_len < cap) {
		slot = &r->ring[r->ring_len++];
	} else {
		slot = &r->ring[r->ring_next];
		r->ring_next = (r->ring_next + 1) % cap;
		rh_free(slot->payload);
	}
	slot->seq = r->seq;
	rh_copy(slot->type, sizeof slot->type, type);
	slot->payload = sb_take(sb, NULL); /* formatted once: sent and kept */
	struct session *s = umap_get(&m->riders, &r->rider);
	metric_inc(m->m_rider_msgs);
	if (s)
		gateway_send_text(s, type, slot->payload, r->trip_s);
}

/* The same with a cJSON payload, consumed. */
static void to_rider(struct ride *r, const char *type, cJSON *payload)
{
	char *p = cJSON_PrintUnformatted(payload);
	cJSON_Delete(payload);
	size_t n = p ? strlen(p) : 0;
	struct strbuf sb;
	sb_init(&sb, 1u << 20);
	if (n >= 2)
		sb_append(&sb, p, n - 1); /* without its closing brace */
	else
		sb_putc(&sb, '{');
	cJSON_free(p);
	to_rider_sb(r, type, &sb);
}

static void snapshot_to(struct ride *r, struct session *s)
{
	cJSON *p = cJSON_CreateObject();
	cJSON_AddStringToObject(p, "trip_id", r->trip_s);
	cJSON_AddNumberToObject(p, "seq", (double)r->seq);
	cJSON_AddStringToObject(p, "state", trip_state_name(r->state));
	if (r->has_driver)
		cJSON_AddStringToObject(p, "driver_id", r->driver_s);
	gateway_send(s, "trip.snapshot", p, r->trip_s);
}

/* Sends what the rider missed after last_seq, in order (a snapshot first
 * when some of it is no longer kept). */
static void replay_to(struct ride *r, struct session *s, int64_t last_seq)
{
	int64_t oldest = r->ring_len ? r->ring[r->ring_len < (int)r->m->cfg->replay_messages ? 0 : r->ring_next].seq
				     : r->seq + 1;
	if (last_seq + 1 < oldest)
		snapshot_to(r, s);
	/* (a send that fails has dropped a slow reader: stop there) */
	for (int i = 0; i < r->ring_len; i++) {
		int at = r->ring_len < (int)r->m->cfg->replay_messages ? i : (r->ring_next + i) % r->ring_len;
		struct rider_msg *msg = &r->ring[at];
		if (msg->seq <= last_seq)
			continue;
		if (!gateway_send_text(s, msg->type, msg->payload, r->trip_s))
			return;
	}
}

static void rider_opened(struct session *s, void *ctx)
{
	struct matcher *m = ctx;
	struct uuid id;
	if (!uuid_parse(s->who.id, &id))
		return;
	struct session *old = umap_get(&m->riders, &id);
	umap_put(&m->riders, &id, s);
	if (old && old != s)
		gateway_close(old, WS_CLOSE_REPLACED, "replaced by a new session");
	struct ride *r = umap_get(&m->by_rider, &id);
	if (r)
		snapshot_to(r, s);
}

static void rider_closed(struct session *s, void *ctx, uint16_t code)
{
	struct matcher *m = ctx;
	struct uuid id;
	if (uuid_parse(s->who.id, &id) && umap_get(&m->riders, &id) == s)
		umap_del(&m->riders, &id);
}

static const struct jv_field subscribe_fields[] = {
	{ "trip_id", JV_UUID, JV_REQUIRED },
	{ "last_seq", JV_INTEGER, 0, 0, 9007199254740991.0 },
	{ 0 },
};

static bool on_subscribe(struct session *s, void *ctx, const cJSON *msg, const cJSON *pl, struct gw_reject *rej)
{
	struct matcher *m = ctx;
	struct uuid trip;
	uuid_parse(jv_str(pl, "trip_id"), &trip);
	struct ride *r = umap_get(&m->rides, &trip);
	if (!r || strcmp(r->rider_s, s->who.id) != 0) {
		gw_reject_set(rej, "not_found", "payload.trip_id",
			      "no active trip of yours with this id (a finished one: GET /v1/rides/{id})");
		return false;
	}
	replay_to(r, s, (int64_t)jv_num(pl, "last_seq", 0));
	return true;
}

/* ------------------------------------------------------------ rides */

static void wait_leave(struct ride *r)
{
	if (!r->waiting)
		return;
	r->waiting = false;
	TAILQ_REMOVE(&r->m->waiting, r, wait_link);
	r->m->nwaiting--;
	metric_set(r->m->m_waiting, r->m->nwaiting);
	evtimer_del(r->timer);
}

static void search_stop(struct ride *r)
{
	wait_leave(r);
	if (r->searching) {
		r->searching = false;
		r->m->nsearching--;
		metric_set(r->m->m_searching, r->m->nsearching);
	}
}

static void ride_free(struct ride *r)
{
	struct matcher *m = r->m;
	search_stop(r);
	umap_del(&m->rides, &r->trip);
	if (r->has_driver && umap_get(&m->by_driver, &r->driver) == r)
		umap_del(&m->by_driver, &r->driver);
	if (umap_get(&m->by_rider, &r->rider) == r)
		umap_del(&m->by_rider, &r->rider);
	event_free(r->timer);
	ride_ring_free(r);
	rh_free(r);
}

static void wait_tick(evutil_socket_t fd, short what, void *arg);

static double num_at(const cJSON *o, const char *a, const char *b)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, a);
	if (b)
		x = cJSON_GetObjectItemCaseSensitive(x, b);
	return cJSON_IsNumber(x) ? x->valuedouble : 0;
}

static const char *str_at(const cJSON *o, const char *a, const char *b)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, a);
	if (b)
		x = cJSON_GetObjectItemCaseSensitive(x, b);
	return cJSON_GetStringValue(x);
}

/* A ride from the trip as the database shows it (trip_json); *fresh says
 * whether it was made now (else it was known already). */
static struct ride *ride_from_trip(struct matcher *m, const cJSON *t, bool *fresh)
{
	struct uuid id, rider;
	const char *ids = str_at(t, "id", NULL), *rs = str_at(t, "rider_id", NULL);
	if (fresh)
		*fresh = false;
	if (!ids || !rs || !uuid_parse(ids, &id) || !uuid_parse(rs, &rider))
		return NULL;
	struct ride *r = umap_get(&m->rides, &id);
	if (r)
		return r;
	if (fresh)
		*fresh = true;
	r = RH_NEW(struct ride);
	r->m = m;
	r->trip = id;
	r->rider = rider;
	uuid_format(&id, r->trip_s);
	uuid_format(&rider, r->rider_s);
	int st = trip_state_parse(str_at(t, "state", NULL));
	r->state = st < 0 ? TRIP_SEARCHING : (enum trip_state)st;
	const char *vt = str_at(t, "vehicle_type", NULL);
	r->vehicle = vt ? presence_vehicle_index(m->srv, vt) : 0;
	if (r->vehicle < 0)
		r->vehicle = 0;
	r->plat = num_at(t, "pickup", "lat");
	r->plng = num_at(t, "pickup", "lng");
	r->dlat = num_at(t, "dropoff", "lat");
	r->dlng = num_at(t, "dropoff", "lng");
	r->fare_total = (int64_t)num_at(t, "fare", "quoted");
	const char *cur = str_at(t, "fare", "currency");
	snprintf(r->currency, sizeof r->currency, "%s", cur ? cur : "XXX");
	const char *ds = str_at(t, "driver", "id");
	if (ds && uuid_parse(ds, &r->driver)) {
		r->has_driver = true;
		uuid_format(&r->driver, r->driver_s);
		umap_put(&m->by_driver, &r->driver, r);
	}
	r->timer = evtimer_new(m->srv->base, wait_tick, r);
	umap_put(&m->rides, &id, r);
	umap_put(&m->by_rider, &rider, r);
	return r;
}

/* ------------------------------------------------------------ offers */

static void step(struct ride *r);
static void driver_freed(struct matcher *m, const struct uuid *driver);

static void offer_free(struct offer *o)
{
	struct matcher *m = o->m;
	umap_del(&m->offers, &o->id);
	if (umap_get(&m->offer_of, &o->driver) == o)
		umap_del(&m->offer_of, &o->driver);
	event_free(o->timer);
	rh_free(o);
}

struct release_ctx {
	struct matcher *m;
	struct uuid driver, trip;
	int64_t version;
	char reason[32];
	int tries;
};

static void release_send(struct release_ctx *c);

static void release_retry(evutil_socket_t fd, short what, void *arg)
{
	release_send(arg);
}

static void released(void *arg, const struct db_result *res)
{
	struct release_ctx *c = arg;
	if (res->err == RH_OK && db_rows(res) == 1) {
		presence_set_status(c->m->srv->presence, &c->driver, DRIVER_AVAILABLE, atoll(db_get(res, 0, 0)));
		driver_freed(c->m, &c->driver);
	} else if (res->err != RH_OK && c->tries++ < 8) {
		/* the database is away: try again, 1 s, 2 s, 4 s... */
		struct timeval tv = { 1 << (c->tries - 1 < 5 ? c->tries - 1 : 5), 0 };
		event_base_once(c->m->srv->base, -1, EV_TIMEOUT, release_retry, c, &tv);
		return;
	} else if (res->err != RH_OK) {
		char id[37];
		uuid_format(&c->driver, id);
		log_warn(NULL, "match: could not release driver %s: %s (released at the next start)", id, res->message);
	}
	rh_free(c);
}

static void release_send(struct release_ctx *c)
{
	char d[37], v[24], t[37];
	uuid_format(&c->driver, d);
	uuid_format(&c->trip, t);
	snprintf(v, sizeof v, "%lld", (long long)c->version);
	const char *params[] = { d, v, t, c->reason };
	db_query(c->m->srv->db, &st_release, params, released, c);
}

static void release(struct matcher *m, const struct uuid *driver, int64_t version, const struct uuid *trip,
		    const char *reason)
{
	struct release_ctx *c = RH_NEW(struct release_ctx);
	c->m = m;
	c->driver = *driver;
	c->trip = *trip;
	c->version = version;
	snprintf(c->reason, sizeof c->reason, "%s", reason);
	release_send(c);
}

/* The offer is over (declined, expired, withdrawn, lost): the driver is
 * freed, and the search goes on. */
static void offer_end(struct offer *o, const char *reason, bool tell_driver)
{
	struct matcher *m = o->m;
	struct ride *r = umap_get(&m->rides, &o->trip);
	count_offer(m, reason);
	if (tell_driver && o->state != OFFER_RESERVING) {
		struct session *s = driver_session(m, &o->driver);
		if (s) {
			cJSON *p = cJSON_CreateObject();
			char oid[37];
			uuid_format(&o->id, oid);
			cJSON_AddStringToObject(p, "offer_id", oid);
			char tid[37];
			uuid_format(&o->trip, tid);
			cJSON_AddStringToObject(p, "trip_id", tid);
			cJSON_AddStringToObject(p, "reason", reason);
			gateway_send(s, "offer.withdrawn", p, NULL);
		}
	}
	if (o->state != OFFER_RESERVING)
		release(m, &o->driver, o->version, &o->trip, reason);
	if (r)
		r->live--;
	offer_free(o);
	if (r && r->searching) {
		r->round++;
		step(r);
	}
}

static void offer_expired(evutil_socket_t fd, short what, void *arg)
{
	struct offer *o = arg;
	if (o->state == OFFER_LIVE)
		offer_end(o, "expired", true);
}

static void send_offer(struct ride *r, struct offer *o, struct session *s)
{
	cJSON *p = cJSON_CreateObject();
	char oid[37], exp[32];
	uuid_format(&o->id, oid);
	rh_format_rfc3339(o->expires_wall_ms, exp);
	cJSON_AddStringToObject(p, "offer_id", oid);
	cJSON_AddStringToObject(p, "trip_id", r->trip_s);
	cJSON_AddItemToObject(p, "pickup", point(r->plat, r->plng));
	cJSON_AddItemToObject(p, "dropoff", point(r->dlat, r->dlng));
	cJSON_AddItemToObject(p, "fare", money(r->fare_total, r->currency));
	cJSON_AddNumberToObject(p, "pickup_eta_s", o->eta_s);
	cJSON_AddNumberToObject(p, "distance_m", llround(o->dist_m));
	cJSON_AddStringToObject(p, "expires_at", exp);
	gateway_send(s, "ride.offer", p, r->trip_s);
}

struct reserve_ctx {
	struct matcher *m;
	struct uuid offer, driver, trip;
	int64_t version; /* the driver's as presence knew it; once reserved, the new one */
	bool won;        /* the database reserved them */
};

static void driver_state_read(void *arg, const struct db_result *res)
{
	struct release_ctx *c = arg;
	if (res->err == RH_OK && db_rows(res) == 1) {
		int st = driver_status_parse(db_get(res, 0, 0));
		if (st >= 0)
			presence_set_status(c->m->srv->presence, &c->driver, (enum driver_status)st, atoll(db_get(res, 0, 1)));
	}
	rh_free(c);
}

/* The database's answer to one reservation: won, with the driver's new
 * version, or not (someone else has them, or the database said no). */
static void reserved(struct reserve_ctx *c)
{
	bool ok = c->won;
	int64_t v = c->version;
	struct matcher *m = c->m;
	struct offer *o = umap_get(&m->offers, &c->offer);
	struct ride *r = umap_get(&m->rides, &c->trip);
	if (!ok) {
		/* Someone else has the driver (or the database said no): learn
		 * where they really stand, and try the next one. */
		count_offer(m, "lost_race");
		struct release_ctx *rc = RH_NEW(struct release_ctx);
		rc->m = m;
		rc->driver = c->driver;
		char d[37];
		uuid_format(&c->driver, d);
		const char *params[] = { d };
		db_query(m->srv->db, &st_driver_state, params, driver_state_read, rc);
		if (o) {
			if (r)
				r->live--;
			offer_free(o);
		}
		if (r && r->searching)
			step(r);
		rh_free(c);
		return;
	}
	presence_set_status(m->srv->presence, &c->driver, DRIVER_OFFERED, v);
	struct session *s = driver_session(m, &c->driver);
	if (!o || !r || !r->searching || !s) {
		/* withdrawn meanwhile (matched, cancelled) or the driver left */
		release(m, &c->driver, v, &c->trip, !s ? "unreachable" : "withdrawn");
		if (o) {
			count_offer(m, !s ? "unreachable" : "withdrawn");
			if (r)
				r->live--;
			offer_free(o);
			if (r && r->searching)
				step(r);
		}
		rh_free(c);
		return;
	}
	o->version = v;
	o->state = OFFER_LIVE;
	const struct cfg_list *to = &m->cfg->offer_timeouts;
	double secs = to->v[o->round < to->n ? o->round : to->n - 1];
	o->expires_wall_ms = rh_wall_ms() + (int64_t)(secs * 1000);
	o->sent_mono_ms = mono_ms();
	struct timeval tv = { (time_t)secs, (suseconds_t)((secs - floor(secs)) * 1e6) };
	evtimer_add(o->timer, &tv);
	presence_note_offer(m->srv->presence, &c->driver, false);
	count_offer(m, "sent");
	send_offer(r, o, s);
	rh_free(c);
}

struct reserve_batch {
	struct matcher *m;
	int n;
	struct reserve_ctx **c;
};

static void reserve_flush(struct matcher *m);

static void reserve_batch_done(void *arg, const struct db_result *res)
{
	struct reserve_batch *b = arg;
	struct matcher *m = b->m;
	if (res->err != RH_OK)
		log_warn(NULL, "match: %d reservations failed: %s", b->n, res->message);
	for (int i = 0; i < db_rows(res); i++) {
		long n = atol(db_get(res, i, 0));
		if (n >= 1 && n <= b->n) {
			b->c[n - 1]->won = true;
			b->c[n - 1]->version = atoll(db_get(res, i, 1));
		}
	}
	m->reserving = false;
	for (int i = 0; i < b->n; i++)
		reserved(b->c[i]);
	rh_free(b->c);
	rh_free(b);
	reserve_flush(m);
}

/* Sends the waiting reservations as one statement, if none is in flight. */
static void reserve_flush(struct matcher *m)
{
	if (m->reserving || m->npending == 0)
		return;
	struct reserve_batch *b = RH_NEW(struct reserve_batch);
	b->m = m;
	b->n = m->npending;
	b->c = m->pending;
	m->pending = NULL;
	m->npending = m->cap_pending = 0;
	struct strbuf ids, vers;
	sb_init(&ids, 16u << 20);
	sb_init(&vers, 16u << 20);
	sb_putc(&ids, '{');
	sb_putc(&vers, '{');
	for (int i = 0; i < b->n; i++) {
		char d[37], v[24];
		uuid_format(&b->c[i]->driver, d);
		snprintf(v, sizeof v, "%lld", (long long)b->c[i]->version);
		if (i) {
			sb_putc(&ids, ',');
			sb_putc(&vers, ',');
		}
		sb_puts(&ids, d);
		sb_puts(&vers, v);
	}
	sb_putc(&ids, '}');
	sb_putc(&vers, '}');
	char *ps[] = { sb_take(&ids, NULL), sb_take(&vers, NULL) };
	const char *params[] = { ps[0], ps[1] };
	m->reserving = true;
	db_query(m->srv->db, &st_reserve, params, reserve_batch_done, b);
	rh_free(ps[0]);
	rh_free(ps[1]);
}

static void reserve_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	reserve_flush(arg);
}

static bool tried(const struct ride *r, const struct uuid *d)
{
	for (int i = 0; i < r->ntried; i++)
		if (uuid_eq(&r->tried[i], d))
			return true;
	return false;
}

static void reserve(struct ride *r, const struct presence_hit *h, double score, double eta)
{
	struct matcher *m = r->m;
	struct offer *o = RH_NEW(struct offer);
	o->m = m;
	uuid_v4(&o->id);
	o->driver = h->driver;
	o->trip = r->trip;
	o->state = OFFER_RESERVING;
	o->dist_m = h->dist_m;
	o->eta_s = (int)llround(eta);
	o->score = score;
	o->round = r->round;
	o->timer = evtimer_new(m->srv->base, offer_expired, o);
	umap_put(&m->offers, &o->id, o);
	umap_put(&m->offer_of, &o->driver, o);
	if (r->ntried < MAX_TRIED)
		r->tried[r->ntried++] = h->driver;
	r->live++;
	/* Out of every other search at once; the database decides for real. */
	presence_set_status(m->srv->presence, &h->driver, DRIVER_OFFERED, h->version);
	struct reserve_ctx *c = RH_NEW(struct reserve_ctx);
	c->m = m;
	c->offer = o->id;
	c->driver = h->driver;
	c->trip = r->trip;
	c->version = h->version;
	/* with the others of this turn of the loop, or after the one in flight */
	if (m->npending == m->cap_pending) {
		m->cap_pending = m->cap_pending ? 2 * m->cap_pending : 16;
		m->pending = rh_realloc(m->pending, (size_t)m->cap_pending * sizeof *m->pending);
	}
	m->pending[m->npending++] = c;
	if (!m->reserving)
		event_active(m->reserve_ev, EV_TIMEOUT, 0);
}

/* Higher is better: a short pickup, a driver who has waited long, one who
 * tends to accept (smoothed so a new driver is not shut out). */
static double score_of(const struct matcher *m, const struct presence_hit *h, double eta)
{
	const struct match_cfg *c = m->cfg;
	double idle = h->idle_ms / 600000.0;
	double accept = (h->accepts + 1.0) / (h->offers + 2.0);
	return c->weight_eta * exp(-eta / 300.0) + c->weight_idle * (idle > 1 ? 1 : idle) + c->weight_acceptance * accept;
}

static void give_up(struct ride *r);

/* The next look around, and the rider told it is waiting. */
static void wait_arm(struct ride *r)
{
	struct matcher *m = r->m;
	int64_t ms = m->cfg->waiting_retry_ms, left = r->deadline_ms - mono_ms();
	if (left < ms)
		ms = left > 0 ? left : 0;
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
	evtimer_add(r->timer, &tv);
	cJSON *p = cJSON_CreateObject();
	cJSON_AddStringToObject(p, "status", "waiting");
	cJSON_AddNumberToObject(p, "radius_m", m->cfg->radius_steps.v[m->cfg->radius_steps.n - 1]);
	cJSON_AddNumberToObject(p, "offers", r->round);
	to_rider(r, "trip.search_progress", p);
}

static void wait_enter(struct ride *r)
{
	if (r->waiting)
		return;
	struct matcher *m = r->m;
	r->waiting = true;
	TAILQ_INSERT_TAIL(&m->waiting, r, wait_link);
	m->nwaiting++;
	metric_set(m->m_waiting, m->nwaiting);
	wait_arm(r);
}

static void wait_tick(evutil_socket_t fd, short what, void *arg)
{
	struct ride *r = arg;
	struct matcher *m = r->m;
	const struct cfg_list *steps = &m->cfg->radius_steps;
	/* Nobody free within the largest ring (what a waiting trip mostly
	 * finds): one search instead of every ring's, and the trip keeps its
	 * place in the queue (the longest waiting gets freed drivers first). */
	if (r->searching && mono_ms() < r->deadline_ms &&
	    presence_count(m->srv->presence, r->plat, r->plng, steps->v[steps->n - 1], 1u << DRIVER_AVAILABLE,
			   1u << r->vehicle, 1) == 0) {
		wait_arm(r);
		return;
	}
	wait_leave(r);
	if (!r->searching)
		return;
	/* drivers came: look around again from the smallest ring */
	r->radius_step = 0;
	step(r);
}

/* Offers the trip to the best candidates until parallel_offers are out,
 * widening the radius when a ring has none left; with none anywhere the
 * trip waits. */
static void step(struct ride *r)
{
	struct matcher *m = r->m;
	if (!r->searching || r->giving_up || !m->offering)
		return; /* (before the release of the last run's reservations: released_all steps it) */
	if (mono_ms() >= r->deadline_ms) {
		if (r->live == 0)
			give_up(r);
		return;
	}
	const struct cfg_list *steps = &m->cfg->radius_steps;
	struct presence_hit hits[MAX_CANDIDATES];
	bool widened = false;
	while (r->live < m->cfg->parallel_offers && r->radius_step < steps->n) {
		size_t k = (size_t)m->cfg->candidates;
		size_t n = presence_nearest(m->srv->presence, r->plat, r->plng, steps->v[r->radius_step], DRIVER_AVAILABLE,
					    1u << r->vehicle, hits, k > MAX_CANDIDATES ? MAX_CANDIDATES : k);
		/* pickup ETAs of all of them at once (one search from the
		 * pickup when a road map is loaded) */
		double lat[MAX_CANDIDATES], lon[MAX_CANDIDATES], eta[MAX_CANDIDATES], road[MAX_CANDIDATES];
		for (size_t i = 0; i < n; i++) {
			lat[i] = hits[i].lat;
			lon[i] = hits[i].lon;
		}
		pricing_etas(m->srv->pricing, lat, lon, n, r->plat, r->plng, eta, road);
		int best = -1;
		double best_score = -1;
		for (size_t i = 0; i < n; i++) {
			if (eta[i] < 0 || tried(r, &hits[i].driver) || !driver_session(m, &hits[i].driver))
				continue;
			hits[i].dist_m = road[i]; /* from here on: along the road */
			double s = score_of(m, &hits[i], eta[i]);
			if (s > best_score) {
				best_score = s;
				best = (int)i;
			}
		}
		if (best < 0) {
			r->radius_step++;
			widened = true;
			continue;
		}
		reserve(r, &hits[best], best_score, eta[best]);
	}
	if (r->live == 0 && r->radius_step >= steps->n) {
		wait_enter(r);
	} else if (widened && r->radius_step < steps->n) {
		cJSON *p = cJSON_CreateObject();
		cJSON_AddStringToObject(p, "status", "searching");
		cJSON_AddNumberToObject(p, "radius_m", steps->v[r->radius_step]);
		cJSON_AddNumberToObject(p, "offers", r->round);
		to_rider(r, "trip.search_progress", p);
	}
}

static void search_start(struct ride *r, int64_t elapsed_ms)
{
	struct matcher *m = r->m;
	if (!m->cfg->automatic || r->searching)
		return;
	r->searching = true;
	m->nsearching++;
	metric_set(m->m_searching, m->nsearching);
	r->search_started_ms = mono_ms() - elapsed_ms;
	r->deadline_ms = r->search_started_ms + m->cfg->max_search_ms;
	step(r);
}

struct give_up_ctx {
	struct matcher *m;
	struct uuid trip;
};

static void gave_up(void *arg, int status, const cJSON *body)
{
	struct give_up_ctx *c = arg;
	struct ride *r = umap_get(&c->m->rides, &c->trip);
	if (status == 200) {
		metric_inc(c->m->m_no_drivers);
	} else if (r && r->searching) {
		/* not saved (the database was away): wait and try again */
		log_info(NULL, "match: the no_drivers cancellation of %s failed (%d); retrying", r->trip_s, status);
		r->giving_up = false;
		wait_enter(r);
	}
	rh_free(c);
}

static void give_up(struct ride *r)
{
	r->giving_up = true;
	wait_leave(r);
	cJSON *args = cJSON_CreateObject();
	cJSON_AddStringToObject(args, "reason", "no_drivers");
	cJSON_AddStringToObject(args, "only_from", "SEARCHING"); /* never a trip that found a driver meanwhile */
	log_info(NULL, "match: no driver for trip %s within %lld s", r->trip_s, (long long)(r->m->cfg->max_search_ms / 1000));
	struct give_up_ctx *c = RH_NEW(struct give_up_ctx);
	c->m = r->m;
	c->trip = r->trip;
	trip_transition(r->m->srv->trips, r->trip_s, TRIP_CANCELLED, "system", "matcher", args, gave_up, c);
}

/* A driver just became free (declined, timed out, finished a trip, went
 * available): the oldest waiting trip near them gets them first. One
 * lookup of the driver, then a distance per waiting trip: no search of the
 * grid per waiting trip (with a thousand trips waiting, every driver going
 * available was a thousand searches of the largest radius). */
static void driver_freed(struct matcher *m, const struct uuid *driver)
{
	struct presence_hit h;
	if (!m->cfg->automatic || m->nwaiting == 0 || !m->offering || !driver_session(m, driver) ||
	    !presence_hit_of(m->srv->presence, driver, DRIVER_AVAILABLE, &h))
		return;
	const struct cfg_list *steps = &m->cfg->radius_steps;
	double radius = steps->v[steps->n - 1];
	struct ride *r;
	TAILQ_FOREACH(r, &m->waiting, wait_link) {
		if (r->vehicle != h.vehicle || tried(r, driver) ||
		    geo_dist_haversine_m(h.lat, h.lon, r->plat, r->plng) > radius)
			continue;
		double eta, road;
		pricing_etas(m->srv->pricing, &h.lat, &h.lon, 1, r->plat, r->plng, &eta, &road);
		if (eta < 0)
			continue; /* no road from them to this pickup */
		h.dist_m = road;
		wait_leave(r);
		reserve(r, &h, score_of(m, &h, eta), eta);
		return;
	}
}

/* ------------------------------------------------------------ driver commands */

static void ack(struct session *s, const char *type, const char *command_id, const char *trip, const char *state,
		const char *correlation)
{
	cJSON *p = cJSON_CreateObject();
	cJSON_AddStringToObject(p, "command_type", type);
	if (command_id)
		cJSON_AddStringToObject(p, "command_id", command_id);
	cJSON_AddStringToObject(p, "trip_id", trip);
	if (state)
		cJSON_AddStringToObject(p, "state", state);
	gateway_send(s, "command.acknowledged", p, correlation);
}

struct cmd_ctx {
	struct matcher *m;
	struct uuid driver, offer;
	char type[32], command_id[37], correlation[37], trip[37];
	cJSON *args;  /* offer.accept: kept to ask again */
	int tries;
};

static void reject_cmd(struct cmd_ctx *c, int status, const cJSON *body)
{
	struct session *s = driver_session(c->m, &c->driver);
	if (!s)
		return;
	const char *reason = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(body, "reason"));
	const char *state = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(body, "state"));
	struct gw_reject rej;
	if (status == 503)
		gw_reject_set(&rej, "unavailable", NULL, "not saved now; send it again (it is safe to resend)");
	else if (status == 404)
		gw_reject_set(&rej, "not_your_trip", "payload.trip_id", "this trip is not assigned to you");
	else
		gw_reject_set(&rej, reason ? reason : "invalid_state", NULL, "the trip is %s", state ? state : "?");
	gateway_reject(s, c->type, c->correlation, &rej);
}

static void accept_done(void *arg, int status, const cJSON *body)
{
	struct cmd_ctx *c = arg;
	struct matcher *m = c->m;
	struct offer *o = umap_get(&m->offers, &c->offer);
	struct session *s = driver_session(m, &c->driver);
	if (status == 503 && c->tries++ < 3) {
		/* The answer was lost, or the database was away: the transition
		 * is idempotent, so ask again (a repeat tells us if it did commit). */
		char d[37];
		uuid_format(&c->driver, d);
		trip_transition(m->srv->trips, c->trip, TRIP_MATCHED, "driver", d, cJSON_Duplicate(c->args, 1), accept_done, c);
		return;
	}
	cJSON_Delete(c->args);
	c->args = NULL;
	if (status == 200) {
		presence_note_offer(m->srv->presence, &c->driver, true);
		count_offer(m, "accepted");
		if (o) {
			struct ride *r = umap_get(&m->rides, &o->trip);
			if (r)
				r->live--;
			offer_free(o); /* the driver is the trip's now: no release */
		}
		if (s)
			ack(s, "offer.accept", NULL, c->trip, "MATCHED", c->correlation);
	} else {
		/* Lost: the trip was cancelled, or matched by someone else. */
		const char *reason = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(body, "reason"));
		struct gw_reject rej;
		if (status == 409 && reason && strcmp(reason, "trip_finished") == 0)
			gw_reject_set(&rej, "trip_cancelled", "payload.offer_id", "the rider cancelled");
		else if (status == 409 && reason && strcmp(reason, "already_matched") == 0)
			gw_reject_set(&rej, "already_matched", "payload.offer_id", "another driver has this trip");
		else if (status == 503)
			gw_reject_set(&rej, "unavailable", NULL, "not saved now; the offer is withdrawn");
		else
			gw_reject_set(&rej, "offer_expired", "payload.offer_id", "the offer is no longer valid");
		if (s)
			gateway_reject(s, "offer.accept", c->correlation, &rej);
		if (o) {
			o->state = OFFER_LIVE; /* so that it is released */
			offer_end(o, "accept_failed", false);
		}
	}
	rh_free(c);
}

static const struct jv_field accept_fields[] = {
	{ "offer_id", JV_UUID, JV_REQUIRED },
	{ "trip_id", JV_UUID, 0 },
	{ 0 },
};

static const struct jv_field decline_fields[] = {
	{ "offer_id", JV_UUID, JV_REQUIRED },
	{ "trip_id", JV_UUID, 0 },
	{ "reason", JV_STRING, 0, 1, 64 },
	{ 0 },
};

/* The live offer of this driver named by the payload, or a rejection. */
static struct offer *my_offer(struct matcher *m, struct session *s, const cJSON *pl, struct gw_reject *rej)
{
	struct uuid oid, me;
	uuid_parse(jv_str(pl, "offer_id"), &oid);
	uuid_parse(s->who.id, &me);
	struct offer *o = umap_get(&m->offers, &oid);
	if (!o) {
		gw_reject_set(rej, "offer_expired", "payload.offer_id", "no live offer with this id (expired or withdrawn)");
		return NULL;
	}
	if (!uuid_eq(&o->driver, &me)) {
		gw_reject_set(rej, "not_your_offer", "payload.offer_id", "this offer was made to another driver");
		return NULL;
	}
	if (o->state == OFFER_ACCEPTING) {
		gw_reject_set(rej, "duplicate", "payload.offer_id", "already accepting this offer");
		return NULL;
	}
	if (o->state != OFFER_LIVE) {
		gw_reject_set(rej, "offer_expired", "payload.offer_id", "the offer is not live");
		return NULL;
	}
	const char *tid = jv_str(pl, "trip_id");
	struct uuid t;
	if (tid && (!uuid_parse(tid, &t) || !uuid_eq(&t, &o->trip))) {
		gw_reject_set(rej, "validation_failed", "payload.trip_id", "the offer is for another trip");
		return NULL;
	}
	return o;
}

static bool on_accept(struct session *s, void *ctx, const cJSON *msg, const cJSON *pl, struct gw_reject *rej)
{
	struct matcher *m = ctx;
	struct offer *o = my_offer(m, s, pl, rej);
	if (!o)
		return false;
	struct ride *r = umap_get(&m->rides, &o->trip);
	if (!r || !r->searching) {
		gw_reject_set(rej, r ? "already_matched" : "trip_cancelled", "payload.offer_id", "the trip is no longer searching");
		return false;
	}
	o->state = OFFER_ACCEPTING;
	evtimer_del(o->timer);
	struct cmd_ctx *c = RH_NEW(struct cmd_ctx);
	c->m = m;
	c->driver = o->driver;
	c->offer = o->id;
	snprintf(c->type, sizeof c->type, "offer.accept");
	snprintf(c->correlation, sizeof c->correlation, "%s", jv_str(msg, "event_id"));
	snprintf(c->trip, sizeof c->trip, "%s", r->trip_s);
	cJSON *args = cJSON_CreateObject();
	cJSON_AddStringToObject(args, "driver_id", s->who.id);
	cJSON_AddNumberToObject(args, "driver_version", (double)o->version);
	cJSON_AddNumberToObject(args, "eta_s", o->eta_s);
	cJSON_AddNumberToObject(args, "distance_m", llround(o->dist_m));
	cJSON_AddNumberToObject(args, "score", round(o->score * 1000) / 1000);
	c->args = cJSON_Duplicate(args, 1);
	trip_transition(m->srv->trips, r->trip_s, TRIP_MATCHED, "driver", s->who.id, args, accept_done, c);
	return true;
}

static bool on_decline(struct session *s, void *ctx, const cJSON *msg, const cJSON *pl, struct gw_reject *rej)
{
	struct matcher *m = ctx;
	struct offer *o = my_offer(m, s, pl, rej);
	if (!o)
		return false;
	char trip[37];
	uuid_format(&o->trip, trip);
	ack(s, "offer.decline", NULL, trip, NULL, jv_str(msg, "event_id"));
	offer_end(o, "declined", false);
	return true;
}

static const struct jv_field trip_cmd_fields[] = {
	{ "trip_id", JV_UUID, JV_REQUIRED },
	{ "command_id", JV_UUID, JV_REQUIRED },
	{ 0 },
};

static const struct jv_field trip_cancel_fields[] = {
	{ "trip_id", JV_UUID, JV_REQUIRED },
	{ "command_id", JV_UUID, JV_REQUIRED },
	{ "reason", JV_STRING, 0, 1, 64 },
	{ 0 },
};

static void trip_cmd_done(void *arg, int status, const cJSON *body)
{
	struct cmd_ctx *c = arg;
	if (status == 200) {
		struct session *s = driver_session(c->m, &c->driver);
		if (s)
			ack(s, c->type, c->command_id, c->trip,
			    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(body, "state")), c->correlation);
	} else {
		reject_cmd(c, status, body);
	}
	rh_free(c);
}

static bool trip_command(struct session *s, struct matcher *m, const cJSON *msg, const cJSON *pl, enum trip_state to,
			 struct gw_reject *rej)
{
	struct uuid me, trip;
	uuid_parse(s->who.id, &me);
	uuid_parse(jv_str(pl, "trip_id"), &trip);
	struct ride *r = umap_get(&m->rides, &trip);
	if (!r || !r->has_driver || !uuid_eq(&r->driver, &me)) {
		/* Not (or no longer) in memory: let the state machine answer, it
		 * knows finished trips and repeats (a resend after the end). */
		r = NULL;
	}
	if (to == TRIP_COMPLETED && !r && !m->recovered) {
		/* the meter is not back yet: billing now would bill 0 m */
		gw_reject_set(rej, "unavailable", NULL, "the server is starting and loading trips; send it again");
		return false;
	}
	struct cmd_ctx *c = RH_NEW(struct cmd_ctx);
	c->m = m;
	c->driver = me;
	snprintf(c->type, sizeof c->type, "%s", jv_str(msg, "event_type"));
	snprintf(c->command_id, sizeof c->command_id, "%s", jv_str(pl, "command_id"));
	snprintf(c->correlation, sizeof c->correlation, "%s", jv_str(msg, "event_id"));
	uuid_format(&trip, c->trip);
	cJSON *args = cJSON_CreateObject();
	if (to == TRIP_CANCELLED && jv_str(pl, "reason"))
		cJSON_AddStringToObject(args, "reason", jv_str(pl, "reason"));
	if (to == TRIP_COMPLETED) {
		/* The fare is metered here, from the driver's own pings. */
		double dist = r ? r->meter_m : 0;
		int64_t dur = r && r->started_mono_ms ? (mono_ms() - r->started_mono_ms) / 1000 : 0;
		cJSON_AddNumberToObject(args, "distance_m", llround(dist));
		cJSON_AddNumberToObject(args, "duration_s", (double)dur);
		if (r && r->meter_has_last) {
			cJSON_AddNumberToObject(args, "end_lat", r->m_lat);
			cJSON_AddNumberToObject(args, "end_lng", r->m_lon);
		}
	}
	trip_transition(m->srv->trips, c->trip, to, "driver", s->who.id, args, trip_cmd_done, c);
	return true;
}

static bool on_arrived(struct session *s, void *ctx, const cJSON *msg, const cJSON *pl, struct gw_reject *rej)
{
	return trip_command(s, ctx, msg, pl, TRIP_ARRIVED, rej);
}

static bool on_started(struct session *s, void *ctx, const cJSON *msg, const cJSON *pl, struct gw_reject *rej)
{
	return trip_command(s, ctx, msg, pl, TRIP_IN_PROGRESS, rej);
}

static bool on_completed(struct session *s, void *ctx, const cJSON *msg, const cJSON *pl, struct gw_reject *rej)
{
	return trip_command(s, ctx, msg, pl, TRIP_COMPLETED, rej);
}

static bool on_cancel(struct session *s, void *ctx, const cJSON *msg, const cJSON *pl, struct gw_reject *rej)
{
	return trip_command(s, ctx, msg, pl, TRIP_CANCELLED, rej);
}

/* ------------------------------------------------------------ trips */

static void assigned_to(struct ride *r, struct session *s)
{
	cJSON *p = cJSON_CreateObject();
	cJSON_AddStringToObject(p, "trip_id", r->trip_s);
	cJSON_AddStringToObject(p, "state", trip_state_name(r->state));
	cJSON_AddStringToObject(p, "rider_id", r->rider_s);
	cJSON_AddItemToObject(p, "pickup", point(r->plat, r->plng));
	cJSON_AddItemToObject(p, "dropoff", point(r->dlat, r->dlng));
	cJSON_AddItemToObject(p, "fare", money(r->fare_total, r->currency));
	gateway_send(s, "trip.assigned", p, r->trip_s);
}

/* The offers out for ride r, into list (room for MAX_TRIED): each is made
 * for a driver the search then remembers (r->tried) and is counted in
 * r->live, so a lookup per driver tried finds them all, instead of a walk
 * of every offer out in the city per match. When the two disagree (more
 * drivers tried than it remembers, a ride read again after a restart), the
 * walk. */
static int ride_offers(struct matcher *m, struct ride *r, struct offer **list)
{
	int n = 0;
	for (int i = 0; i < r->ntried && n <= r->live; i++) {
		struct offer *o = umap_get(&m->offer_of, &r->tried[i]);
		if (!o || !uuid_eq(&o->trip, &r->trip))
			continue;
		int j = 0;
		while (j < n && list[j] != o) /* (a driver tried twice: once) */
			j++;
		if (j == n)
			list[n++] = o;
	}
	if (n == r->live && r->ntried < MAX_TRIED)
		return n;
	size_t i = 0;
	struct uuid k;
	void *v;
	n = 0;
	while (umap_next(&m->offers, &i, &k, &v) && n < MAX_TRIED) {
		struct offer *o = v;
		if (uuid_eq(&o->trip, &r->trip))
			list[n++] = o;
	}
	return n;
}

static void withdraw_all(struct matcher *m, struct ride *r, const struct uuid *keep, const char *reason)
{
	/* collect first: offer_end changes the map */
	struct offer *list[MAX_TRIED];
	int na = ride_offers(m, r, list), n = 0;
	for (int j = 0; j < na; j++) {
		struct offer *o = list[j];
		if (keep && uuid_eq(&o->driver, keep)) {
			/* the matched driver's own offer (an operator assigned them
			 * while it was out): nothing to release, nothing to tell */
			if (o->state == OFFER_LIVE) {
				r->live--;
				offer_free(o);
			}
			continue;
		}
		list[n++] = o;
	}
	for (int j = 0; j < n; j++) {
		if (list[j]->state == OFFER_RESERVING) {
			/* the reservation's answer will see the trip has moved on */
			offer_free(list[j]);
			r->live--;
			count_offer(m, reason);
		} else if (list[j]->state == OFFER_LIVE) {
			offer_end(list[j], reason, true);
		} /* ACCEPTING: its own answer settles it */
	}
}

static void on_created(void *ctx, const cJSON *trip)
{
	struct matcher *m = ctx;
	struct ride *r = ride_from_trip(m, trip, NULL);
	if (r && r->state == TRIP_SEARCHING)
		search_start(r, 0);
}

static void on_changed(void *ctx, enum trip_state to, const cJSON *trip)
{
	struct matcher *m = ctx;
	bool fresh;
	struct ride *r = ride_from_trip(m, trip, &fresh);
	if (!r)
		return;
	if (!fresh && r->state == to)
		return; /* a repeat of what we know already */
	r->state = to;
	cJSON *p;
	switch (to) {
	case TRIP_MATCHED: {
		search_stop(r);
		const char *ds = str_at(trip, "driver", "id");
		if (ds && uuid_parse(ds, &r->driver)) {
			r->has_driver = true;
			uuid_format(&r->driver, r->driver_s);
			umap_put(&m->by_driver, &r->driver, r);
			presence_set_trip(m->srv->presence, &r->driver, &r->trip);
		}
		withdraw_all(m, r, r->has_driver ? &r->driver : NULL, "matched_elsewhere");
		/* an operator may assign a driver who had an offer for another trip */
		struct offer *other = r->has_driver ? umap_get(&m->offer_of, &r->driver) : NULL;
		if (other && !uuid_eq(&other->trip, &r->trip) && other->state == OFFER_LIVE)
			offer_end(other, "driver_assigned", true);
		if (r->search_started_ms)
			metric_observe(m->f_match_time, m->m_match_time, (double)(mono_ms() - r->search_started_ms) / 1000.0);
		p = cJSON_CreateObject();
		const cJSON *drv = cJSON_GetObjectItemCaseSensitive(trip, "driver");
		if (drv)
			cJSON_AddItemToObject(p, "driver", cJSON_Duplicate(drv, 1));
		enum driver_status st;
		int64_t ver;
		double lat, lon;
		if (r->has_driver && presence_driver(m->srv->presence, &r->driver, &st, &ver, &lat, &lon) && (lat || lon))
			cJSON_AddNumberToObject(p, "pickup_eta_s", llround(eta_between(m, lat, lon, r->plat, r->plng)));
		to_rider(r, "trip.matched", p);
		struct session *s = r->has_driver ? driver_session(m, &r->driver) : NULL;
		if (s)
			assigned_to(r, s);
		return;
	}
	case TRIP_IN_PROGRESS:
		r->started_mono_ms = mono_ms();
		r->meter_m = 0;
		r->meter_has_last = false;
		break;
	default:
		break;
	}
	p = cJSON_CreateObject();
	cJSON_AddStringToObject(p, "state", trip_state_name(to));
	const cJSON *fare = cJSON_GetObjectItemCaseSensitive(trip, "fare");
	if (to == TRIP_COMPLETED && fare)
		cJSON_AddItemToObject(p, "fare", cJSON_Duplicate(fare, 1));
	const cJSON *canc = cJSON_GetObjectItemCaseSensitive(trip, "cancellation");
	if (to == TRIP_CANCELLED && canc)
		cJSON_AddItemToObject(p, "cancellation", cJSON_Duplicate(canc, 1));
	cJSON *dp = cJSON_Duplicate(p, 1);
	to_rider(r, "trip.state_changed", p);
	struct session *s = r->has_driver ? driver_session(m, &r->driver) : NULL;
	if (s) {
		cJSON_AddStringToObject(dp, "trip_id", r->trip_s);
		gateway_send(s, "trip.state_changed", dp, r->trip_s);
	} else {
		cJSON_Delete(dp);
	}
	if (to == TRIP_COMPLETED || to == TRIP_CANCELLED) {
		search_stop(r); /* first: a withdrawn offer must not start the search again */
		if (m->loading)
			umap_put(&m->ended, &r->trip, m);
		withdraw_all(m, r, NULL, "trip_cancelled");
		struct uuid d = r->driver;
		bool had = r->has_driver;
		if (had)
			presence_set_trip(m->srv->presence, &d, NULL);
		ride_free(r);
		if (had)
			driver_freed(m, &d); /* first in line: trips waiting nearby */
	}
}

/* ------------------------------------------------------------ presence hooks */

static void on_location(void *ctx, const struct uuid *driver, double lat, double lon, float speed, float accuracy,
			int64_t device_ms)
{
	struct matcher *m = ctx;
	struct ride *r = umap_get(&m->by_driver, driver);
	if (!r)
		return;
	if (r->state == TRIP_IN_PROGRESS) {
		bool good = accuracy < 0 || accuracy <= (float)m->cfg->meter_max_accuracy_m;
		if (good && r->meter_has_last && device_ms > r->m_device_ms) {
			double d = geo_dist_haversine_m(r->m_lat, r->m_lon, lat, lon);
			double kmh = d / ((double)(device_ms - r->m_device_ms) / 1000.0) * 3.6;
			if (kmh <= m->cfg->meter_max_speed_kmh)
				r->meter_m += d;
			else
				good = false; /* a jump: keep the last good point */
		}
		if (good) {
			r->m_lat = lat;
			r->m_lon = lon;
			r->m_device_ms = device_ms;
			r->meter_has_last = true;
		}
	}
	if (r->state != TRIP_MATCHED && r->state != TRIP_ARRIVED && r->state != TRIP_IN_PROGRESS)
		return;
	/* Every ping of every driver on a trip comes here: the members are
	 * written straight, without a cJSON tree and printf's %g for each
	 * number (a third of the relay's time went there). Positions with 7
	 * decimals (1 cm), speed with 1. */
	bool to_dropoff = r->state == TRIP_IN_PROGRESS;
	double eta = eta_between(m, lat, lon, to_dropoff ? r->dlat : r->plat, to_dropoff ? r->dlng : r->plng);
	struct strbuf sb;
	sb_init(&sb, 1u << 20);
	sb_puts(&sb, "{\"location\":{\"lat\":");
	sb_fixed(&sb, lat, 7);
	sb_puts(&sb, ",\"lon\":");
	sb_fixed(&sb, lon, 7);
	sb_putc(&sb, '}');
	if (speed >= 0) {
		sb_puts(&sb, ",\"speed_kmh\":");
		sb_fixed(&sb, speed, 1);
	}
	sb_puts(&sb, ",\"eta_s\":");
	sb_int(&sb, llround(eta));
	sb_puts(&sb, to_dropoff ? ",\"eta_to\":\"dropoff\"" : ",\"eta_to\":\"pickup\"");
	to_rider_sb(r, "driver.location", &sb);
}

static void on_available(void *ctx, const struct uuid *driver)
{
	driver_freed(ctx, driver);
}

/* A driver (re)connected: tell them where they stand. */
static void on_driver_opened(void *ctx, struct session *s, const struct uuid *driver)
{
	struct matcher *m = ctx;
	struct offer *o = umap_get(&m->offer_of, driver);
	struct ride *r = umap_get(&m->by_driver, driver);
	if (r) {
		presence_set_trip(m->srv->presence, driver, &r->trip);
		assigned_to(r, s);
	} else if (o && o->state == OFFER_LIVE) {
		struct ride *or = umap_get(&m->rides, &o->trip);
		if (or)
			send_offer(or, o, s);
	}
}

/* ------------------------------------------------------------ recovery */

static void active_loaded(void *arg, const struct db_result *res)
{
	struct matcher *m = arg;
	if (res->err != RH_OK) {
		log_warn(NULL, "match: cannot load active trips (%s); retrying", res->message);
		m->recovered = false;
		struct timeval tv = { 1, 0 };
		evtimer_add(m->recover_timer, &tv);
		return;
	}
	int n = db_rows(res), searching = 0;
	for (int i = 0; i < n; i++) {
		cJSON *t = cJSON_Parse(db_get(res, i, 0));
		if (t && !trip_view_render(t)) {
			log_error(NULL, "match: a malformed trip row from the database: %s", db_get(res, i, 0));
			cJSON_Delete(t);
			t = NULL;
		}
		struct uuid id;
		const char *ids = t ? str_at(t, "id", NULL) : NULL;
		if (ids && uuid_parse(ids, &id) && umap_get(&m->ended, &id)) {
			cJSON_Delete(t); /* read before this run saw it end */
			continue;
		}
		struct ride *r = t ? ride_from_trip(m, t, NULL) : NULL;
		if (r) {
			if (r->has_driver)
				presence_set_trip(m->srv->presence, &r->driver, &r->trip);
			if (r->state == TRIP_SEARCHING) {
				searching++;
				search_start(r, atoll(db_get(res, i, 1)));
			} else if (r->state == TRIP_IN_PROGRESS) {
				r->started_mono_ms = mono_ms() - atoll(db_get(res, i, 2));
				r->meter_m = atof(db_get(res, i, 3)); /* from the location history */
			}
		}
		cJSON_Delete(t);
	}
	log_info(NULL, "match: resumed %d active trips (%d searching)", n, searching);
	m->loading = false;
	umap_fini(&m->ended);
	umap_init(&m->ended);
}

static void load_active(struct matcher *m)
{
	m->loading = true;
	db_query(m->srv->db, &st_active, NULL, active_loaded, m);
}

static void released_all(void *arg, const struct db_result *res)
{
	struct matcher *m = arg;
	if (res->err == RH_OK) {
		for (int i = 0; i < db_rows(res); i++) {
			struct uuid d;
			if (uuid_parse(db_get(res, i, 0), &d))
				presence_set_status(m->srv->presence, &d, DRIVER_AVAILABLE, atoll(db_get(res, i, 1)));
		}
		if (db_rows(res))
			log_info(NULL, "match: released %d drivers left reserved by the last run", db_rows(res));
	}
	/* Only now may this run reserve anyone: a reservation made while the
	 * release was on its way could have been released by it. Trips
	 * requested meanwhile start their search here. */
	m->offering = true;
	size_t i = 0;
	struct uuid k;
	void *v;
	while (umap_next(&m->rides, &i, &k, &v)) {
		struct ride *r = v;
		if (r->searching && r->live == 0 && !r->waiting)
			step(r);
	}
	load_active(m);
}

static void recover_tick(evutil_socket_t fd, short what, void *arg)
{
	struct matcher *m = arg;
	if (m->recovered)
		return;
	if (!db_is_ready(m->srv->db, NULL, 0)) {
		struct timeval tv = { 0, RECOVER_POLL_MS * 1000 };
		evtimer_add(m->recover_timer, &tv);
		return;
	}
	m->recovered = true;
	/* Offers do not survive a restart: their drivers are free again. (One
	 * daemon per city: a second daemon on the same drivers would need a
	 * lease here.) */
	if (m->cfg->automatic) {
		/* (minus the offers this run has made: none the first time, as
		 * step waits for released_all, but this runs again when loading
		 * the active trips failed) */
		struct strbuf sb;
		sb_init(&sb, 1u << 24);
		sb_putc(&sb, '{');
		size_t i = 0;
		struct uuid k;
		void *v;
		char id[37];
		while (umap_next(&m->offer_of, &i, &k, &v)) {
			uuid_format(&k, id);
			sb_printf(&sb, "%s%s", sb.len > 1 ? "," : "", id);
		}
		sb_putc(&sb, '}');
		const char *params[] = { sb.buf };
		m->offering = false; /* until released_all */
		db_query(m->srv->db, &st_release_all, params, released_all, m);
		sb_fini(&sb);
	} else {
		m->offering = true;
		load_active(m);
	}
}

/* ------------------------------------------------------------ setup */

static struct gw_message_type msg_types[] = {
	{ "offer.accept", ROLE_DRIVER, accept_fields, on_accept, NULL },
	{ "offer.decline", ROLE_DRIVER, decline_fields, on_decline, NULL },
	{ "trip.arrived", ROLE_DRIVER, trip_cmd_fields, on_arrived, NULL },
	{ "trip.started", ROLE_DRIVER, trip_cmd_fields, on_started, NULL },
	{ "trip.completed", ROLE_DRIVER, trip_cmd_fields, on_completed, NULL },
	{ "trip.cancel", ROLE_DRIVER, trip_cancel_fields, on_cancel, NULL },
	{ "rider.subscribe", ROLE_RIDER, subscribe_fields, on_subscribe, NULL },
};

struct matcher *matcher_new(struct server *srv)
{
	static const char *const result_label[] = { "result", NULL };
	static const double bounds[] = { 0.1, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300 };
	struct matcher *m = RH_NEW(struct matcher);
	m->srv = srv;
	m->cfg = &srv->cfg.match;
	umap_init(&m->rides);
	umap_init(&m->by_driver);
	umap_init(&m->by_rider);
	umap_init(&m->offers);
	umap_init(&m->offer_of);
	umap_init(&m->riders);
	umap_init(&m->ended);
	TAILQ_INIT(&m->waiting);
	m->f_offers = metrics_counter(srv->metrics, "ridehail_match_offers_total",
				      "Ride offers by outcome: sent, accepted, declined, expired, matched_elsewhere, trip_cancelled, lost_race, unreachable, accept_failed, withdrawn.",
				      result_label);
	m->f_match_time = metrics_histogram(srv->metrics, "ridehail_match_time_seconds",
					    "From the start of a search to MATCHED.", NULL, bounds,
					    (int)(sizeof bounds / sizeof *bounds));
	m->m_match_time = metric_cell(m->f_match_time, NULL);
	m->m_searching = metric_cell(metrics_gauge(srv->metrics, "ridehail_match_searching",
						   "Trips being searched a driver for.", NULL), NULL);
	m->m_waiting = metric_cell(metrics_gauge(srv->metrics, "ridehail_match_waiting",
						 "Trips in the demand queue: no candidate in range, waiting for a driver.", NULL),
				   NULL);
	m->m_no_drivers = metric_cell(metrics_counter(srv->metrics, "ridehail_match_no_drivers_total",
						      "Trips cancelled after match.max_search without a driver.", NULL),
				      NULL);
	m->m_rider_msgs = metric_cell(metrics_counter(srv->metrics, "ridehail_match_rider_messages_total",
						      "Live messages to riders (matched, driver.location, state changes, progress).",
						      NULL),
				      NULL);
	db_register(srv->db, &st_reserve);
	db_register(srv->db, &st_release);
	db_register(srv->db, &st_driver_state);
	db_register(srv->db, &st_release_all);
	db_register(srv->db, &st_active);
	for (size_t i = 0; i < sizeof msg_types / sizeof *msg_types; i++) {
		msg_types[i].ctx = m;
		gateway_register(srv->gateway, &msg_types[i]);
	}
	const struct gw_role_hooks rider_hooks = { .opened = rider_opened, .closed = rider_closed, .ctx = m };
	gateway_set_role_hooks(srv->gateway, ROLE_RIDER, &rider_hooks);
	const struct presence_hooks ph = { .location = on_location, .available = on_available,
					   .opened = on_driver_opened, .ctx = m };
	presence_set_hooks(srv->presence, &ph);
	const struct trip_listener tl = { .created = on_created, .changed = on_changed, .ctx = m };
	trips_set_listener(srv->trips, &tl);
	m->recover_timer = evtimer_new(srv->base, recover_tick, m);
	m->reserve_ev = evtimer_new(srv->base, reserve_flush_cb, m);
	struct timeval tv = { 0, 0 };
	evtimer_add(m->recover_timer, &tv);
	return m;
}

void matcher_free(struct matcher *m)
{
	if (!m)
		return;
	size_t i = 0;
	struct uuid k;
	void *v;
	while (umap_next(&m->offers, &i, &k, &v)) {
		struct offer *o = v;
		event_free(o->timer);
		rh_free(o);
	}
	i = 0;
	while (umap_next(&m->rides, &i, &k, &v)) {
		struct ride *r = v;
		event_free(r->timer);
		ride_ring_free(r);
		rh_free(r);
	}
	umap_fini(&m->rides);
	umap_fini(&m->by_driver);
	umap_fini(&m->by_rider);
	umap_fini(&m->offers);
	umap_fini(&m->ended);
	umap_fini(&m->offer_of);
	umap_fini(&m->riders);
	if (m->recover_timer)
		event_free(m->recover_timer);
	if (m->reserve_ev)
		event_free(m->reserve_ev);
	for (int j = 0; j < m->npending; j++)
		rh_free(m->pending[j]);
	rh_free(m->pending);
	rh_free(m);
}
