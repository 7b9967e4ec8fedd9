/* The driver's commands over the WebSocket: answers to offers (offer.accept,
 * offer.decline) and the steps of their trip (trip.arrived, trip.started,
 * trip.completed, trip.cancel). Each becomes a dispatch call or a trip
 * change; the command's own answer (command.acknowledged or
 * command.rejected) is all that comes back here: what the change did reaches
 * everyone through the trip module's listeners. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/queue.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/timer.h"
#include "gateway/gateway.h"
#include "match_internal.h"
#include "presence/presence.h"

/* A command on its way to the trip module. */
struct match_cmd {
	struct matcher *m;
	struct uuid driver, offer;
	char type[32], command_id[37], correlation[37];
	struct trip_change change; /* kept to ask again */
	int tries;
	bool unknown; /* an attempt was lost in flight: it may have committed */
};

static void match_cmd_ack(struct session *s, const struct match_cmd *c, const char *state)
{
	char trip[37];
	uuid_format(&c->change.trip, trip);
	cJSON *p = cJSON_CreateObject();
	cJSON_AddStringToObject(p, "command_type", c->type);
	if (c->command_id[0])
		cJSON_AddStringToObject(p, "command_id", c->command_id);
	cJSON_AddStringToObject(p, "trip_id", trip);
	if (state)
		cJSON_AddStringToObject(p, "state", state);
	gateway_send(s, "command.acknowledged", p, c->correlation);
}

static struct match_cmd *match_cmd_new(struct matcher *m, struct session *s, const cJSON *msg, const cJSON *pl)
{
	struct match_cmd *c = RH_NEW(struct match_cmd);
	c->m = m;
	uuid_parse(s->who.id, &c->driver);
	snprintf(c->type, sizeof c->type, "%s", jv_str(msg, "event_type"));
	snprintf(c->correlation, sizeof c->correlation, "%s", jv_str(msg, "event_id"));
	const char *cid = jv_str(pl, "command_id");
	if (cid)
		snprintf(c->command_id, sizeof c->command_id, "%s", cid);
	return c;
}

/* ------------------------------------------------------------ offers */

static const struct jv_field match_accept_fields[] = {
	{ "offer_id", JV_UUID, JV_REQUIRED },
	{ "trip_id", JV_UUID, 0 },
	{ 0 },
};

static const struct jv_field match_decline_fields[] = {
	{ "offer_id", JV_UUID, JV_REQUIRED },
	{ "trip_id", JV_UUID, 0 },
	{ "reason", JV_STRING, 0, 1, 64 },
	{ 0 },
};

/* A dispatch refusal as the rejection the driver's app gets. */
static void match_offer_reject(struct gw_reject *rej, enum dispatch_refusal r)
{
	switch (r) {
	case DISPATCH_NOT_YOURS:
		gw_reject_set(rej, "not_your_offer", "payload.offer_id", "this offer was made to another driver");
		break;
	case DISPATCH_DUPLICATE:
		gw_reject_set(rej, "duplicate", "payload.offer_id", "already accepting this offer");
		break;
	case DISPATCH_OTHER_TRIP:
		gw_reject_set(rej, "validation_failed", "payload.trip_id", "the offer is for another trip");
		break;
	case DISPATCH_NOT_LIVE:
		gw_reject_set(rej, "offer_expired", "payload.offer_id", "the offer is not live");
		break;
	default:
		gw_reject_set(rej, "offer_expired", "payload.offer_id", "no live offer with this id (expired or withdrawn)");
		break;
	}
}

/* The offer's ids from the payload (the trip's only if named). */
static void match_offer_ids(const cJSON *pl, struct uuid *offer, struct uuid *trip, bool *has_trip)
{
	uuid_parse(jv_str(pl, "offer_id"), offer);
	const char *tid = jv_str(pl, "trip_id");
	*has_trip = tid && uuid_parse(tid, trip);
}

static void match_accept_done(void *arg, const struct trip_result *res)
{
	struct match_cmd *c = arg;
	struct matcher *m = c->m;
	c->unknown = c->unknown || (res->err == RH_EAGAIN && res->unknown);
	if (res->err == RH_EAGAIN && c->tries++ < 3) {
		/* The answer was lost, or the database was away: the change is
		 * idempotent, so ask again (a repeat tells us if it did commit). */
		trip_change(m->deps.trips, &c->change, match_accept_done, c);
		return;
	}
	struct session *s = match_session(m, &c->driver);
	if (res->err == RH_OK) {
		presence_note_offer(m->deps.presence, &c->driver, true);
		match_count_offer(m, "accepted");
		struct ride *r = umap_get(&m->rides, &c->change.trip);
		if (s)
			match_cmd_ack(s, c, "MATCHED");
		if (s && r) /* the trip is theirs: after the answer to their accept */
			match_send_assigned(m, r, s);
	} else if (res->err == RH_EAGAIN) {
		/* The database did not take it: the offer stands again for the
		 * documented resend (or, if its trip stopped searching meanwhile,
		 * it is withdrawn, and the driver told). */
		struct gw_reject rej;
		int64_t until;
		if (dispatch_accept_unanswered(m->dispatch, &c->offer, c->unknown, match_now(m), &until)) {
			char exp[32];
			rh_format_rfc3339(rh_wall_ms() + (until - match_now(m)), exp);
			gw_reject_set(&rej, "unavailable", NULL, "not saved now; send it again (the offer stands until %s)", exp);
		} else {
			gw_reject_set(&rej, "offer_expired", "payload.offer_id", "the offer was withdrawn meanwhile");
		}
		if (s)
			gateway_reject(s, "offer.accept", c->correlation, &rej);
	} else {
		/* Lost: the trip was cancelled, or matched by someone else. */
		struct gw_reject rej;
		if (res->err == RH_ECONFLICT && res->refusal == TRIP_REFUSAL_FINISHED)
			gw_reject_set(&rej, "trip_cancelled", "payload.offer_id", "the rider cancelled");
		else if (res->err == RH_ECONFLICT && res->refusal == TRIP_REFUSAL_ALREADY_MATCHED)
			gw_reject_set(&rej, "already_matched", "payload.offer_id", "another driver has this trip");
		else
			gw_reject_set(&rej, "offer_expired", "payload.offer_id", "the offer is no longer valid");
		if (s)
			gateway_reject(s, "offer.accept", c->correlation, &rej);
		dispatch_accept_failed(m->dispatch, &c->offer, match_now(m));
	}
	rh_free(c);
}

static bool match_on_accept(struct session *s, void *ctx, const cJSON *msg, const cJSON *pl, struct gw_reject *rej)
{
	struct matcher *m = ctx;
	struct match_cmd *c = match_cmd_new(m, s, msg, pl);
	struct uuid trip;
	bool has_trip;
	struct dispatch_offer o;
	match_offer_ids(pl, &c->offer, &trip, &has_trip);
	enum dispatch_refusal r = dispatch_accept(m->dispatch, &c->offer, &c->driver, has_trip ? &trip : NULL, &o);
	if (r != DISPATCH_OK) {
		match_offer_reject(rej, r);
		rh_free(c);
		return false;
	}
	trip_change_init(&c->change, &o.trip, TRIP_MATCHED, TRIP_ROLE_DRIVER, s->who.id);
	c->change.driver = o.driver;
	c->change.driver_version = o.version;
	c->change.eta_s = o.eta_s;
	c->change.pickup_m = (int)llround(o.road_m);
	c->change.score = o.score;
	trip_change(m->deps.trips, &c->change, match_accept_done, c);
	return true;
}

static bool match_on_decline(struct session *s, void *ctx, const cJSON *msg, const cJSON *pl, struct gw_reject *rej)
{
	struct matcher *m = ctx;
	struct match_cmd *c = match_cmd_new(m, s, msg, pl);
	struct uuid trip;
	bool has_trip;
	match_offer_ids(pl, &c->offer, &trip, &has_trip);
	enum dispatch_refusal r = dispatch_decline(m->dispatch, &c->offer, &c->driver, has_trip ? &trip : NULL,
						   &c->change.trip, match_now(m));
	if (r == DISPATCH_OK)
		match_cmd_ack(s, c, NULL);
	else
		match_offer_reject(rej, r);
	rh_free(c);
	return r == DISPATCH_OK;
}

/* An offer whose accept may have committed unseen ended without a match in
 * memory: the MATCHED again, allowed only from MATCHED, tells which. A repeat
 * (it did commit) is heard by every listener as a change, so the trip goes on
 * with its driver; SEARCHING (it did not) or another driver: nothing
 * happens. Asked until the database answers. */
struct match_check {
	LIST_ENTRY(match_check) link; /* matcher.checks: freed at shutdown if still waiting */
	struct matcher *m;
	struct trip_change change;
	struct rh_timer *timer;
};

static void match_check_free(struct match_check *k)
{
	LIST_REMOVE(k, link);
	rh_timer_free(k->timer);
	rh_free(k);
}

void match_checks_free(struct matcher *m)
{
	while (!LIST_EMPTY(&m->checks))
		match_check_free(LIST_FIRST(&m->checks));
}

static void match_accept_check_send(void *arg, int64_t now);

static void match_accept_checked(void *arg, const struct trip_result *res)
{
	struct match_check *k = arg;
	if (res->err == RH_EAGAIN) {
		rh_timer_at(k->timer, match_now(k->m) + 1000);
		return;
	}
	if (res->err == RH_OK) {
		char id[37];
		uuid_format(&k->change.trip, id);
		log_info(NULL, "match: trip %s was matched by an accept whose answer was lost; it goes on", id);
		/* (a change the driver made: the listeners leave trip.assigned to
		 * the answer to it, which this is) */
		struct ride *r = umap_get(&k->m->rides, &k->change.trip);
		struct session *s = match_session(k->m, &k->change.driver);
		if (r && s)
			match_send_assigned(k->m, r, s);
	}
	match_check_free(k);
}

static void match_accept_check_send(void *arg, int64_t now)
{
	struct match_check *k = arg;
	(void)now;
	trip_change(k->m->deps.trips, &k->change, match_accept_checked, k);
}

void match_accept_check(struct matcher *m, const struct dispatch_offer *o)
{
	struct match_check *k = RH_NEW(struct match_check);
	char d[37];
	uuid_format(&o->driver, d);
	k->m = m;
	trip_change_init(&k->change, &o->trip, TRIP_MATCHED, TRIP_ROLE_DRIVER, d);
	k->change.driver = o->driver;
	k->change.only_from = TRIP_MATCHED;
	k->timer = rh_timer_new(m->deps.timers, match_accept_check_send, k);
	LIST_INSERT_HEAD(&m->checks, k, link);
	match_accept_check_send(k, 0);
}

/* ------------------------------------------------------------ the trip's steps */

static const struct jv_field match_trip_cmd_fields[] = {
	{ "trip_id", JV_UUID, JV_REQUIRED },
	{ "command_id", JV_UUID, JV_REQUIRED },
	{ 0 },
};

static const struct jv_field match_trip_cancel_fields[] = {
	{ "trip_id", JV_UUID, JV_REQUIRED },
	{ "command_id", JV_UUID, JV_REQUIRED },
	{ "reason", JV_STRING, 0, 1, 64 },
	{ 0 },
};

static void match_trip_cmd_done(void *arg, const struct trip_result *res)
{
	struct match_cmd *c = arg;
	struct session *s = match_session(c->m, &c->driver);
	if (s && res->err == RH_OK) {
		match_cmd_ack(s, c, trip_state_name(res->trip->state));
	} else if (s) {
		struct gw_reject rej;
		if (res->err == RH_ENOTFOUND)
			gw_reject_set(&rej, "not_your_trip", "payload.trip_id", "this trip is not assigned to you");
		else if (res->err == RH_ECONFLICT)
			gw_reject_set(&rej, trip_refusal_name(res->refusal), NULL, "the trip is %s", trip_state_name(res->state));
		else
			gw_reject_err(&rej, res->err, "save the step");
		gateway_reject(s, c->type, c->correlation, &rej);
	}
	rh_free(c);
}

/* The fare is metered here, from the driver's own fixes. */
static bool match_trip_metered(struct matcher *m, const struct ride *r, struct trip_change *c, struct gw_reject *rej)
{
	if (r && r->meter.resuming) {
		/* the meter is not back yet: billing now would bill too little */
		gw_reject_set(rej, "unavailable", NULL, "the server is starting and loading trips; send it again");
		return false;
	}
	if (!r && !m->recovered) {
		gw_reject_set(rej, "unavailable", NULL, "the server is starting and loading trips; send it again");
		return false;
	}
	c->distance_m = r ? llround(r->meter.dist_m) : 0;
	c->duration_s = r ? match_meter_duration_s(&r->meter, match_now(m)) : 0;
	if (r && r->meter.has_last) {
		c->has_end = true;
		c->end_lat = r->meter.lat;
		c->end_lng = r->meter.lon;
	}
	return true;
}

static bool match_trip_command(struct session *s, struct matcher *m, const cJSON *msg, const cJSON *pl,
			       enum trip_state to, struct gw_reject *rej)
{
	struct match_cmd *c = match_cmd_new(m, s, msg, pl);
	struct uuid trip;
	uuid_parse(jv_str(pl, "trip_id"), &trip);
	trip_change_init(&c->change, &trip, to, TRIP_ROLE_DRIVER, s->who.id);
	/* Not (or no longer) theirs in memory: the state machine answers, it
	 * knows finished trips and repeats (a resend after the end). */
	struct ride *r = umap_get(&m->rides, &trip);
	if (r && (!r->has_driver || !uuid_eq(&r->driver, &c->driver)))
		r = NULL;
	if (to == TRIP_CANCELLED && jv_str(pl, "reason"))
		snprintf(c->change.reason, sizeof c->change.reason, "%s", jv_str(pl, "reason"));
	if (to == TRIP_COMPLETED && !match_trip_metered(m, r, &c->change, rej)) {
		rh_free(c);
		return false;
	}
	trip_change(m->deps.trips, &c->change, match_trip_cmd_done, c);
	return true;
}

static bool match_on_arrived(struct session *s, void *ctx, const cJSON *msg, const cJSON *pl, struct gw_reject *rej)
{
	return match_trip_command(s, ctx, msg, pl, TRIP_ARRIVED, rej);
}

static bool match_on_started(struct session *s, void *ctx, const cJSON *msg, const cJSON *pl, struct gw_reject *rej)
{
	return match_trip_command(s, ctx, msg, pl, TRIP_IN_PROGRESS, rej);
}

static bool match_on_completed(struct session *s, void *ctx, const cJSON *msg, const cJSON *pl, struct gw_reject *rej)
{
	return match_trip_command(s, ctx, msg, pl, TRIP_COMPLETED, rej);
}

static bool match_on_cancel(struct session *s, void *ctx, const cJSON *msg, const cJSON *pl, struct gw_reject *rej)
{
	return match_trip_command(s, ctx, msg, pl, TRIP_CANCELLED, rej);
}

static const struct gw_message_type match_command_types[] = {
	{ "offer.accept", ROLE_DRIVER, match_accept_fields, match_on_accept, NULL, NULL },
	{ "offer.decline", ROLE_DRIVER, match_decline_fields, match_on_decline, NULL, NULL },
	{ "trip.arrived", ROLE_DRIVER, match_trip_cmd_fields, match_on_arrived, NULL, NULL },
	{ "trip.started", ROLE_DRIVER, match_trip_cmd_fields, match_on_started, NULL, NULL },
	{ "trip.completed", ROLE_DRIVER, match_trip_cmd_fields, match_on_completed, NULL, NULL },
	{ "trip.cancel", ROLE_DRIVER, match_trip_cancel_fields, match_on_cancel, NULL, NULL },
};

void match_commands_init(struct matcher *m)
{
	for (size_t i = 0; i < sizeof match_command_types / sizeof *match_command_types; i++)
		match_register_type(m, &match_command_types[i]);
}
