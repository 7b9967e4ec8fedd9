/* The rider's live feed: every message to a rider about their trip
 * (trip.matched, driver.location, trip.state_changed, trip.search_progress)
 * numbered per trip and the last match.replay_messages kept, so that a
 * rider who reconnects gets a snapshot and what they missed
 * (rider.subscribe with last_seq). The rider's session is the gateway's,
 * found by account.
 *
 * Numbers only go forward, across restarts too. They are given up to a
 * ceiling reserved in the database (rider_feed_seq), MATCH_FEED_BLOCK at a
 * time: the first block of a trip needs no write, the next is reserved when
 * half of the current one is used (one write per MATCH_FEED_BLOCK messages,
 * batched with the other trips' of the loop turn). A trip read back after a
 * restart starts from its last ceiling, which no rider can have seen past,
 * once the next block is reserved; its rider then gets a snapshot at that
 * number. Messages that have no number yet wait (held, at most
 * match.replay_messages; past that the oldest location goes first, and a
 * snapshot follows the rest). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/strbuf.h"
#include "core/timer.h"
#include "gateway/gateway.h"
#include "match_internal.h"
#include "store/db.h"

#define MATCH_FEED_BLOCK 256
#define MATCH_FEED_RETRY_MS 1000

/* Ceilings for a batch of trips: $1 the trips, $2 what each wants (> 0: at
 * least this, for a feed that runs; 0: a block past the stored one, for a
 * feed read back after a restart, 2 blocks for a trip with no row yet, its
 * first block being implicit), $3 the block. A row (trip, ceiling) for each
 * trip done; one missing is asked again. */
static struct db_stmt match_st_feed_reserve = {
	"match_feed_reserve",
	"WITH u AS (SELECT id, want FROM unnest($1::uuid[], $2::bigint[]) AS u (id, want)),"
	" up AS (UPDATE rider_feed_seq f SET seq_max = CASE WHEN u.want > 0 THEN GREATEST(f.seq_max, u.want)"
	"        ELSE f.seq_max + $3::bigint END FROM u WHERE f.trip_id = u.id RETURNING f.trip_id, f.seq_max),"
	" ins AS (INSERT INTO rider_feed_seq (trip_id, seq_max)"
	"         SELECT u.id, CASE WHEN u.want > 0 THEN u.want ELSE 2 * $3::bigint END FROM u"
	"         WHERE NOT EXISTS (SELECT 1 FROM up WHERE up.trip_id = u.id)"
	"         ON CONFLICT (trip_id) DO NOTHING RETURNING trip_id, seq_max)"
	" SELECT trip_id, seq_max FROM up UNION ALL SELECT trip_id, seq_max FROM ins",
	3,
};
static struct db_stmt match_st_feed_forget = {
	"match_feed_forget", "DELETE FROM rider_feed_seq WHERE trip_id = $1", 1,
};

/* Trips whose feed waits for a ceiling: the next batch, and the one at the
 * database. */
struct match_feed_ask {
	struct uuid trip;
	int64_t want;
};
struct match_feed_asks {
	struct matcher *m;
	struct match_feed_ask *q;
	int n, cap;
	bool inflight;
	struct rh_timer *flush;
	/* The message being made (match_feed_buf()) and a version 2 copy of
	 * one being sent: buffers kept from one message to the next, so that a
	 * driver.location allocates nothing once they have grown. */
	struct strbuf msg, v2;
};

static void match_feed_snapshot(const struct ride *r, struct session *s);

void match_feed_free(struct match_feed *f)
{
	for (int i = 0; i < f->len; i++)
		sb_fini(&f->ring[i].payload);
	rh_free(f->ring);
	f->ring = NULL;
	f->len = f->next = 0;
	for (int i = 0; i < f->nheld; i++)
		rh_free(f->held[i].body);
	rh_free(f->held);
	f->held = NULL;
	f->nheld = 0;
}

/* The slot the next message goes into (the oldest one when full). */
static struct match_feed_msg *match_feed_slot(struct match_feed *f, int cap)
{
	if (!f->ring)
		f->ring = rh_calloc((size_t)cap, sizeof *f->ring);
	if (f->len < cap) {
		struct match_feed_msg *slot = &f->ring[f->len++];
		sb_init(&slot->payload, 1u << 20);
		return slot;
	}
	struct match_feed_msg *slot = &f->ring[f->next];
	f->next = (f->next + 1) % cap;
	return slot;
}

/* Sends a kept message in the version the rider's app speaks. */
static bool match_feed_deliver(struct matcher *m, struct session *s, const struct match_feed_msg *msg,
			       const char *trip)
{
	if (msg->lon_at < 0 || s->protocol < 2)
		return gateway_send_text(s, msg->type, msg->payload.buf, trip);
	/* (the copy is made into a kept buffer; gateway_send_text_v copies it
	 * into the frame before anything else can send) */
	struct strbuf *v2 = &m->asks->v2;
	sb_reset(v2);
	sb_append(v2, msg->payload.buf, msg->payload.len);
	if (v2->overflow)
		return false;
	memcpy(v2->buf + msg->lon_at, "lng", 3);
	return gateway_send_text_v(s, msg->type, 2, v2->buf, trip);
}

struct strbuf *match_feed_buf(struct matcher *m)
{
	sb_reset(&m->asks->msg);
	return &m->asks->msg;
}

/* ------------------------------------------------------------ ceilings */

static void match_feed_ask(struct ride *r, int64_t want)
{
	struct match_feed_asks *a = r->m->asks;
	r->feed.asking = true;
	if (a->n == a->cap) {
		a->cap = a->cap ? 2 * a->cap : 16;
		a->q = rh_realloc(a->q, (size_t)a->cap * sizeof *a->q);
	}
	a->q[a->n++] = (struct match_feed_ask){ r->trip, want };
	if (!a->inflight && !rh_timer_is_armed(a->flush))
		rh_timer_at(a->flush, match_now(r->m));
}

/* Half the block used: the next one is reserved before it is needed. */
static void match_feed_ask_ahead(struct ride *r)
{
	struct match_feed *f = &r->feed;
	if (f->known && !f->asking && f->ceiling - f->seq <= MATCH_FEED_BLOCK / 2)
		match_feed_ask(r, f->ceiling + MATCH_FEED_BLOCK);
}

static void match_feed_number(struct ride *r, const char *type, struct strbuf *sb, int lon_at);
static void match_feed_got(struct ride *r, int64_t ceiling);

struct match_feed_batch {
	struct match_feed_asks *a;
	struct match_feed_ask *q;
	int n;
};

static void match_feed_forgotten(void *arg, const struct db_result *res)
{
	(void)arg;
	(void)res; /* a row left behind is harmless: the trip is over */
}

static void match_feed_forget(struct matcher *m, const struct uuid *trip)
{
	char id[37];
	uuid_format(trip, id);
	const char *params[] = { id };
	db_query(m->deps.db, &match_st_feed_forget, params, match_feed_forgotten, NULL);
}

static void match_feed_reserved(void *arg, const struct db_result *res)
{
	struct match_feed_batch *b = arg;
	struct match_feed_asks *a = b->a;
	struct matcher *m = a->m;
	a->inflight = false;
	bool again = false;
	if (res->err == RH_OK) {
		for (int i = 0; i < db_rows(res); i++) {
			struct uuid id;
			if (!uuid_parse(db_get(res, i, 0), &id))
				continue;
			struct ride *r = umap_get(&m->rides, &id);
			if (!r) {
				match_feed_forget(m, &id); /* the trip ended meanwhile */
				continue;
			}
			if (r->feed.asking)
				match_feed_got(r, atoll(db_get(res, i, 1)));
		}
	} else {
		log_warn(NULL, "match: %d rider feeds wait for their numbers: %s", b->n, res->message);
	}
	/* what is still asking was not answered: again, later */
	for (int i = 0; i < b->n; i++) {
		struct ride *r = umap_get(&m->rides, &b->q[i].trip);
		if (r && r->feed.asking) {
			r->feed.asking = false;
			match_feed_ask(r, b->q[i].want);
			again = true;
		}
	}
	rh_free(b->q);
	rh_free(b);
	if (again)
		rh_timer_at(a->flush, match_now(m) + MATCH_FEED_RETRY_MS);
	else if (a->n)
		rh_timer_at(a->flush, match_now(m));
}

static void match_feed_flush(void *arg, int64_t now)
{
	struct match_feed_asks *a = arg;
	(void)now;
	if (a->inflight || a->n == 0)
		return;
	struct match_feed_batch *b = RH_NEW(struct match_feed_batch);
	b->a = a;
	b->q = a->q;
	b->n = a->n;
	a->q = NULL;
	a->n = a->cap = 0;
	struct strbuf ids, wants;
	sb_init(&ids, 1u << 24);
	sb_init(&wants, 1u << 24);
	sb_putc(&ids, '{');
	sb_putc(&wants, '{');
	for (int i = 0; i < b->n; i++) {
		char id[37];
		uuid_format(&b->q[i].trip, id);
		if (i) {
			sb_putc(&ids, ',');
			sb_putc(&wants, ',');
		}
		sb_puts(&ids, id);
		sb_int(&wants, b->q[i].want);
	}
	sb_putc(&ids, '}');
	sb_putc(&wants, '}');
	char block[16];
	snprintf(block, sizeof block, "%d", MATCH_FEED_BLOCK);
	const char *params[] = { ids.buf, wants.buf, block };
	a->inflight = true;
	db_query(a->m->deps.db, &match_st_feed_reserve, params, match_feed_reserved, b);
	sb_fini(&ids);
	sb_fini(&wants);
}

/* Numbers the held messages while the ceiling allows. */
static void match_feed_release(struct ride *r)
{
	struct match_feed *f = &r->feed;
	int done = 0;
	while (done < f->nheld && f->seq < f->ceiling) {
		struct match_feed_held *h = &f->held[done++];
		struct strbuf *sb = match_feed_buf(r->m);
		sb_puts(sb, h->body);
		rh_free(h->body);
		match_feed_number(r, h->type, sb, h->lon_at);
	}
	if (done) {
		memmove(f->held, f->held + done, (size_t)(f->nheld - done) * sizeof *f->held);
		f->nheld -= done;
	}
	if (f->gap && f->nheld == 0) {
		/* some were dropped: where the trip stands now */
		struct session *s = match_session(r->m, &r->rider);
		if (s)
			match_feed_snapshot(r, s);
		f->gap = false;
	}
}

static void match_feed_got(struct ride *r, int64_t ceiling)
{
	struct match_feed *f = &r->feed;
	f->asking = false;
	f->stored = true;
	if (!f->known) {
		/* read back after a restart: on from the last run's ceiling, which
		 * this answer moved a block up; the rider hears where it stands */
		f->seq = ceiling - MATCH_FEED_BLOCK;
		f->ceiling = ceiling;
		f->known = true;
		struct session *s = match_session(r->m, &r->rider);
		if (s)
			match_feed_snapshot(r, s);
	} else if (ceiling > f->ceiling) {
		f->ceiling = ceiling;
	}
	match_feed_release(r);
	if (f->nheld && !f->asking)
		match_feed_ask(r, f->ceiling + MATCH_FEED_BLOCK);
	else
		match_feed_ask_ahead(r);
}

void match_feed_start(struct ride *r)
{
	r->feed.seq = 0;
	r->feed.ceiling = MATCH_FEED_BLOCK;
	r->feed.known = true;
}

void match_feed_resume(struct ride *r)
{
	r->feed.known = false;
	if (!r->feed.asking)
		match_feed_ask(r, 0);
}

void match_feed_end(struct ride *r)
{
	if (r->feed.stored && !r->feed.asking)
		match_feed_forget(r->m, &r->trip);
	/* (asking: the answer finds no ride and forgets the row then) */
}

/* ------------------------------------------------------------ messages */

/* Gives the message its number, keeps it for replay and sends it. */
static void match_feed_number(struct ride *r, const char *type, struct strbuf *sb, int lon_at)
{
	struct matcher *m = r->m;
	struct match_feed *f = &r->feed;
	sb_puts(sb, sb->len > 1 ? ",\"trip_id\":\"" : "\"trip_id\":\"");
	sb_puts(sb, r->trip_s);
	sb_puts(sb, "\",\"seq\":");
	sb_int(sb, ++f->seq);
	sb_putc(sb, '}');
	struct match_feed_msg *slot = match_feed_slot(f, (int)m->cfg->replay_messages);
	slot->seq = f->seq;
	size_t tl = strnlen(type, sizeof slot->type - 1);
	memcpy(slot->type, type, tl);
	slot->type[tl] = '\0';
	/* formatted once: sent and kept, in the slot's own buffer */
	sb_reset(&slot->payload);
	sb_append(&slot->payload, sb->buf ? sb->buf : "", sb->len);
	sb_reset(sb);
	slot->lon_at = lon_at;
	metric_inc(m->m_rider_msgs);
	struct session *s = match_session(m, &r->rider);
	if (s)
		match_feed_deliver(m, s, slot, r->trip_s);
}

/* Keeps a message until it can have a number. */
static void match_feed_hold(struct ride *r, const char *type, struct strbuf *sb, int lon_at)
{
	struct match_feed *f = &r->feed;
	int cap = (int)r->m->cfg->replay_messages;
	if (!f->held)
		f->held = rh_calloc((size_t)cap, sizeof *f->held);
	if (f->nheld == cap) {
		/* full: the oldest location goes (a newer one follows), else the oldest */
		int drop = 0;
		for (int i = 0; i < f->nheld; i++)
			if (strcmp(f->held[i].type, "driver.location") == 0) {
				drop = i;
				break;
			}
		rh_free(f->held[drop].body);
		memmove(f->held + drop, f->held + drop + 1, (size_t)(f->nheld - drop - 1) * sizeof *f->held);
		f->nheld--;
		f->gap = true;
	}
	struct match_feed_held *h = &f->held[f->nheld++];
	snprintf(h->type, sizeof h->type, "%s", type);
	h->body = sb_take(sb, NULL);
	h->lon_at = lon_at;
}

void match_feed_send_sb(struct ride *r, const char *type, struct strbuf *sb)
{
	match_feed_send_lon_sb(r, type, sb, -1);
}

void match_feed_send_lon_sb(struct ride *r, const char *type, struct strbuf *sb, int lon_at)
{
	struct match_feed *f = &r->feed;
	if (f->known && f->nheld == 0 && f->seq < f->ceiling) {
		match_feed_number(r, type, sb, lon_at);
		match_feed_ask_ahead(r);
		return;
	}
	match_feed_hold(r, type, sb, lon_at);
	if (f->known && !f->asking)
		match_feed_ask(r, f->ceiling + MATCH_FEED_BLOCK);
}

void match_feed_send(struct ride *r, const char *type, cJSON *payload)
{
	char *p = cJSON_PrintUnformatted(payload);
	cJSON_Delete(payload);
	size_t n = p ? strlen(p) : 0;
	struct strbuf *sb = match_feed_buf(r->m);
	if (n >= 2)
		sb_append(sb, p, n - 1); /* without its closing brace */
	else
		sb_putc(sb, '{');
	cJSON_free(p);
	match_feed_send_sb(r, type, sb);
}

/* Whole seconds, 0 to a day (the schema's range). */
static double match_feed_eta_s(double s)
{
	return s <= 0 ? 0 : s >= 86400 ? 86400 : (double)llround(s);
}

void match_feed_progress(struct ride *r, bool waiting, double radius_m, int offers, const struct dispatch_estimate *est)
{
	cJSON *p = cJSON_CreateObject();
	cJSON_AddStringToObject(p, "status", waiting ? "waiting" : "searching");
	cJSON_AddNumberToObject(p, "radius_m", radius_m);
	cJSON_AddNumberToObject(p, "offers", offers);
	if (est && est->has_match)
		cJSON_AddNumberToObject(p, "match_eta_s", match_feed_eta_s(est->match_s));
	if (est && est->has_pickup)
		cJSON_AddNumberToObject(p, "pickup_eta_s", match_feed_eta_s(est->pickup_s));
	match_feed_send(r, "trip.search_progress", p);
}

static void match_feed_snapshot(const struct ride *r, struct session *s)
{
	cJSON *p = cJSON_CreateObject();
	cJSON_AddStringToObject(p, "trip_id", r->trip_s);
	cJSON_AddNumberToObject(p, "seq", (double)r->feed.seq);
	cJSON_AddStringToObject(p, "state", trip_state_name(r->state));
	if (r->has_driver)
		cJSON_AddStringToObject(p, "driver_id", r->driver_s);
	gateway_send(s, "trip.snapshot", p, r->trip_s);
}

/* Sends what the rider missed after last_seq, in order (a snapshot first
 * when some of it is no longer kept). */
static void match_feed_replay(const struct ride *r, struct session *s, int64_t last_seq)
{
	const struct match_feed *f = &r->feed;
	bool full = f->len == (int)r->m->cfg->replay_messages;
	int64_t oldest = f->len ? f->ring[full ? f->next : 0].seq : f->seq + 1;
	if (last_seq + 1 < oldest)
		match_feed_snapshot(r, s);
	/* (a send that fails has dropped a slow reader: stop there) */
	for (int i = 0; i < f->len; i++) {
		const struct match_feed_msg *msg = &f->ring[full ? (f->next + i) % f->len : i];
		if (msg->seq > last_seq && !match_feed_deliver(r->m, s, msg, r->trip_s))
			return;
	}
}

/* ------------------------------------------------------------ the rider's side */

static void match_rider_opened(struct session *s, void *ctx)
{
	struct matcher *m = ctx;
	struct uuid id;
	struct ride *r = uuid_parse(s->who.id, &id) ? umap_get(&m->by_rider, &id) : NULL;
	if (r && r->feed.known) /* (not known yet: the snapshot comes when it is) */
		match_feed_snapshot(r, s);
}

static const struct jv_field match_subscribe_fields[] = {
	{ "trip_id", JV_UUID, JV_REQUIRED },
	{ "last_seq", JV_INTEGER, 0, 0, 9007199254740991.0 },
	{ 0 },
};

static bool match_on_subscribe(struct session *s, void *ctx, const cJSON *msg, const cJSON *pl, struct gw_reject *rej)
{
	struct matcher *m = ctx;
	struct uuid trip;
	(void)msg;
	uuid_parse(jv_str(pl, "trip_id"), &trip);
	struct ride *r = umap_get(&m->rides, &trip);
	if (!r || strcmp(r->rider_s, s->who.id) != 0) {
		gw_reject_set(rej, "not_found", "payload.trip_id",
			      "no active trip of yours with this id (a finished one: GET /v1/rides/{id})");
		return false;
	}
	if (r->feed.known) /* (not known yet: a snapshot comes when it is) */
		match_feed_replay(r, s, (int64_t)jv_num(pl, "last_seq", 0));
	return true;
}

static const struct gw_message_type match_subscribe_type = {
	"rider.subscribe", ROLE_RIDER, match_subscribe_fields, match_on_subscribe, NULL, NULL,
};

void match_feed_init(struct matcher *m)
{
	struct match_feed_asks *a = RH_NEW(struct match_feed_asks);
	a->m = m;
	a->flush = rh_timer_new(m->deps.timers, match_feed_flush, a);
	sb_init(&a->msg, 1u << 20);
	sb_init(&a->v2, 1u << 20);
	m->asks = a;
	db_register(m->deps.db, &match_st_feed_reserve);
	db_register(m->deps.db, &match_st_feed_forget);
	match_register_type(m, &match_subscribe_type);
	const struct gw_role_hooks hooks = { .opened = match_rider_opened, .ctx = m, .one_session = true };
	gateway_set_role_hooks(m->deps.gateway, ROLE_RIDER, &hooks);
}

void match_feed_fini(struct matcher *m)
{
	struct match_feed_asks *a = m->asks;
	if (!a)
		return;
	rh_timer_free(a->flush);
	rh_free(a->q);
	sb_fini(&a->msg);
	sb_fini(&a->v2);
	rh_free(a);
}
