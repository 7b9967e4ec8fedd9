/* The rider's live feed: every message to a rider about their trip
 * (trip.matched, driver.location, trip.state_changed, trip.search_progress)
 * numbered per trip and the last match.replay_messages kept, so that a
 * rider who reconnects gets a snapshot and what they missed
 * (rider.subscribe with last_seq). The rider's session is the gateway's,
 * found by account. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/metrics.h"
#include "core/strbuf.h"
#include "gateway/gateway.h"
#include "match_internal.h"

void match_feed_free(struct match_feed *f)
{
	for (int i = 0; i < f->len; i++)
		rh_free(f->ring[i].payload);
	rh_free(f->ring);
	f->ring = NULL;
	f->len = f->next = 0;
}

/* The slot the next message goes into (the oldest one when full). */
static struct match_feed_msg *match_feed_slot(struct match_feed *f, int cap)
{
	if (!f->ring)
		f->ring = rh_calloc((size_t)cap, sizeof *f->ring);
	if (f->len < cap)
		return &f->ring[f->len++];
	struct match_feed_msg *slot = &f->ring[f->next];
	f->next = (f->next + 1) % cap;
	rh_free(slot->payload);
	return slot;
}

/* Sends a kept message in the version the rider's app speaks. */
static bool match_feed_deliver(struct session *s, const struct match_feed_msg *msg, const char *trip)
{
	if (msg->lon_at < 0 || s->protocol < 2)
		return gateway_send_text(s, msg->type, msg->payload, trip);
	char *v2 = rh_strdup(msg->payload);
	memcpy(v2 + msg->lon_at, "lng", 3);
	bool ok = gateway_send_text_v(s, msg->type, 2, v2, trip);
	rh_free(v2);
	return ok;
}

void match_feed_send_sb(struct ride *r, const char *type, struct strbuf *sb)
{
	match_feed_send_lon_sb(r, type, sb, -1);
}

void match_feed_send_lon_sb(struct ride *r, const char *type, struct strbuf *sb, int lon_at)
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
	slot->payload = sb_take(sb, NULL); /* formatted once: sent and kept */
	slot->lon_at = lon_at;
	metric_inc(m->m_rider_msgs);
	struct session *s = match_session(m, &r->rider);
	if (s)
		match_feed_deliver(s, slot, r->trip_s);
}

void match_feed_send(struct ride *r, const char *type, cJSON *payload)
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
	match_feed_send_sb(r, type, &sb);
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
		if (msg->seq > last_seq && !match_feed_deliver(s, msg, r->trip_s))
			return;
	}
}

/* ------------------------------------------------------------ the rider's side */

static void match_rider_opened(struct session *s, void *ctx)
{
	struct matcher *m = ctx;
	struct uuid id;
	struct ride *r = uuid_parse(s->who.id, &id) ? umap_get(&m->by_rider, &id) : NULL;
	if (r)
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
	match_feed_replay(r, s, (int64_t)jv_num(pl, "last_seq", 0));
	return true;
}

static const struct gw_message_type match_subscribe_type = {
	"rider.subscribe", ROLE_RIDER, match_subscribe_fields, match_on_subscribe, NULL, NULL,
};

void match_feed_init(struct matcher *m)
{
	match_register_type(m, &match_subscribe_type);
	const struct gw_role_hooks hooks = { .opened = match_rider_opened, .ctx = m, .one_session = true };
	gateway_set_role_hooks(m->deps.gateway, ROLE_RIDER, &hooks);
}
