/* ridehail-sim: the simulated drivers: offers, the trip, the socket. */
#include "simtool.h"

static void sim_drv_rated(void *arg, const struct simc_reply *r);
static void sim_drv_rate(struct sim_drv *d, const char *trip);
static void sim_drv_clear_offer(struct sim_drv *d);
static void sim_drv_on_offer(struct sim_drv *d, const cJSON *pl);
static void sim_drv_accept(struct sim_drv *d);
static void sim_drv_on_assigned(struct sim_drv *d, const cJSON *pl);
static void sim_drv_on_ack(struct sim_drv *d, const cJSON *pl);
static void sim_drv_on_rejected(struct sim_drv *d, const cJSON *pl);
static void sim_drv_resume(struct sim_drv *d, const char *status);
static void sim_drv_text(void *arg, const char *text, size_t len);
static void sim_drv_closed(void *arg, int code, int http_status, const char *why);

void sim_drv_command(struct sim_drv *d, const char *type)
{
	if (!d->up)
		return; /* sent again once the socket is back (drv_resume) */
	char cid[37];
	sim_new_uuid(cid);
	cJSON *p = cJSON_CreateObject();
	cJSON_AddStringToObject(p, "trip_id", d->trip_id);
	cJSON_AddStringToObject(p, "command_id", cid);
	sim_send_envelope(d->ws, d->id, type, p);
}

void sim_drv_to_idle(struct sim_drv *d)
{
	if (d->trip_id[0])
		snprintf(d->last_trip, sizeof d->last_trip, "%s", d->trip_id);
	if (d->busy_since >= 0) {
		d->acc.busy_s += sim_st.now - d->busy_since;
		d->busy_since = -1;
	}
	d->st = D_IDLE;
	d->trip_id[0] = '\0';
	d->offer_id[0] = '\0';
	d->moving = false;
	d->mode = MODE_IDLE;
}


struct sim_http_try *sim_http_try_new(int idx, const char *trip, int tries)
{
	struct sim_http_try *c = rh_calloc(1, sizeof *c);
	c->idx = idx;
	c->tries = tries;
	snprintf(c->trip, sizeof c->trip, "%s", trip);
	return c;
}

static void sim_drv_rated(void *arg, const struct simc_reply *r)
{
	struct sim_http_try *c = arg;
	if (sim_http_retryable(r) && c->tries < 60 && !sim_st.ending) {
		sim_st.resends++;
		sim_later(LATER_DRIVER_RATE, c->idx, c->trip, NULL, c->tries + 1, sim_http_wait_ms(r));
	} else if (r->status != 201 && !(r->status == 409 && c->tries > 0)) {
		/* (409 already_rated after a retry: the first try's answer was lost) */
		sim_protocol_error("driver %d: POST rating: %d %.200s", c->idx, r->status, r->body);
	}
	rh_free(c);
}

void sim_drv_rate_try(int idx, const char *trip, int tries)
{
	char path[96];
	snprintf(path, sizeof path, "/v1/rides/%s/rating", trip);
	simc_http(sim_st.pool, "POST", path, sim_st.drv[idx].token, NULL, "{\"stars\":5}", sim_drv_rated, sim_http_try_new(idx, trip, tries));
}

static void sim_drv_rate(struct sim_drv *d, const char *trip)
{
	sim_drv_rate_try(d->idx, trip, 0);
}

static void sim_drv_clear_offer(struct sim_drv *d)
{
	d->offer_id[0] = '\0';
	d->offer_trip[0] = '\0';
	if (d->st == D_OFFERED || d->st == D_ACCEPTING)
		d->st = D_IDLE;
}

static void sim_drv_on_offer(struct sim_drv *d, const cJSON *pl)
{
	const char *oid = sim_jstr(pl, "offer_id"), *tid = sim_jstr(pl, "trip_id");
	if (!oid || !tid) {
		sim_protocol_error("driver %d: ride.offer without ids", d->idx);
		return;
	}
	if (strcmp(oid, d->offer_id) == 0)
		return; /* told again */
	if (d->offer_id[0])
		sim_breach("driver %d offered two rides at once: %s while %s stands", d->idx, tid, d->offer_trip);
	else if (d->st != D_IDLE)
		sim_breach("driver %d offered trip %s while %s (trip %s)", d->idx, tid, sim_drv_state_name(d->st), d->trip_id);
	int m = sim_tmap_find(tid);
	if (m >= 0)
		sim_breach("driver %d offered trip %s, already matched to driver %d", d->idx, tid, sim_st.tmap[m].driver);
	d->acc.offers++;
	snprintf(d->offer_id, sizeof d->offer_id, "%s", oid);
	snprintf(d->offer_trip, sizeof d->offer_trip, "%s", tid);
	if (d->st == D_IDLE)
		d->st = D_OFFERED;
	double u = sim_rng_unit(&d->rng);
	d->decision = u < sim_st.ignore_p ? 2 : u < sim_st.ignore_p + (1 - sim_st.ignore_p) * sim_st.accept_p ? 0 : 1;
	d->decide_at = sim_st.now + fmin(sim_rng_exp(&d->rng, sim_st.accept_delay), 4 * sim_st.accept_delay);
}

static void sim_drv_accept(struct sim_drv *d)
{
	cJSON *p = cJSON_CreateObject();
	cJSON_AddStringToObject(p, "offer_id", d->offer_id);
	snprintf(d->accepted, sizeof d->accepted, "%s", d->offer_trip);
	sim_send_envelope(d->ws, d->id, "offer.accept", p);
}

void sim_drv_decide(struct sim_drv *d)
{
	if (!d->up)
		return; /* (reconnecting: decided once back, if the offer still stands) */
	if (d->decision == 2) {
		d->decide_at = INFINITY; /* let it expire */
		return;
	}
	if (d->decision == 0) {
		sim_drv_accept(d);
		d->st = D_ACCEPTING;
	} else {
		cJSON *p = cJSON_CreateObject();
		cJSON_AddStringToObject(p, "offer_id", d->offer_id);
		cJSON_AddStringToObject(p, "reason", "simulated decline");
		sim_send_envelope(d->ws, d->id, "offer.decline", p);
		d->acc.declines++;
		sim_drv_clear_offer(d);
	}
	d->decide_at = INFINITY;
}

static void sim_drv_on_assigned(struct sim_drv *d, const cJSON *pl)
{
	const char *tid = sim_jstr(pl, "trip_id"), *state = sim_jstr(pl, "state");
	double plat, plon, dlat, dlon;
	if (!tid || !state || !sim_jpoint(pl, "pickup", &plat, &plon) || !sim_jpoint(pl, "dropoff", &dlat, &dlon)) {
		sim_protocol_error("driver %d: trip.assigned without trip_id, state, pickup or dropoff", d->idx);
		return;
	}
	if (d->trip_id[0] && strcmp(d->trip_id, tid) == 0)
		return;
	if (d->trip_id[0])
		sim_breach("driver %d assigned trip %s while on trip %s", d->idx, tid, d->trip_id);
	if (strcmp(tid, d->offer_trip) != 0 && strcmp(tid, d->accepted) != 0)
		sim_protocol_error("driver %d: assigned trip %s it did not accept (offer for %s)", d->idx, tid, d->offer_trip);
	sim_tmap_assign(tid, d->idx);
	d->acc.accepts++;
	snprintf(d->trip_id, sizeof d->trip_id, "%s", tid);
	d->offer_id[0] = '\0';
	d->plat = plat;
	d->plon = plon;
	d->dlat = dlat;
	d->dlon = dlon;
	d->busy_since = sim_st.now;
	d->st = D_TO_PICKUP;
	sim_drive_to(d, plat, plon, MODE_DEADHEAD);
}

static void sim_drv_on_ack(struct sim_drv *d, const cJSON *pl)
{
	const char *ct = sim_jstr(pl, "command_type"), *tid = sim_jstr(pl, "trip_id");
	if (!ct || !tid) {
		sim_protocol_error("driver %d: command.acknowledged without command_type or trip_id", d->idx);
		return;
	}
	if (!strcmp(ct, "offer.accept") || !strcmp(ct, "offer.decline"))
		return; /* trip.assigned follows an accept */
	if (strcmp(tid, d->trip_id) != 0) {
		if (strcmp(tid, d->last_trip) != 0) /* (a command sent again: the repeat's answer) */
			sim_protocol_error("driver %d: %s acknowledged for trip %s, not its trip %s", d->idx, ct, tid, d->trip_id);
		return;
	}
	if (!strcmp(ct, "trip.arrived") && d->st == D_ARRIVING) {
		d->st = D_BOARDING;
		d->board_until = sim_st.now + sim_st.board_s * sim_rng_range(&d->rng, 0.5, 1.5);
	} else if (!strcmp(ct, "trip.started") && d->st == D_STARTING) {
		d->st = D_ON_TRIP;
		sim_drive_to(d, d->dlat, d->dlon, MODE_TRIP);
	} else if (!strcmp(ct, "trip.completed") && d->st == D_COMPLETING) {
		d->acc.trips++;
		sim_drv_rate(d, d->trip_id);
		sim_drv_to_idle(d);
	}
}

static void sim_drv_on_rejected(struct sim_drv *d, const cJSON *pl)
{
	const char *ct = sim_jstr(pl, "command_type"), *reason = sim_jstr(pl, "reason");
	ct = ct ? ct : "(none)";
	reason = reason ? reason : "(none)";
	if (!strcmp(ct, "share.leg.update")) {
		sim_share_on_rejected(d, reason);
		return;
	}
	/* Races the protocol allows: an accept after the offer ended, a trip
	 * command after the rider cancelled. */
	if (!strcmp(ct, "offer.accept") &&
	    (!strcmp(reason, "offer_expired") || !strcmp(reason, "already_matched") || !strcmp(reason, "trip_cancelled"))) {
		sim_drv_clear_offer(d);
		return;
	}
	if (!strncmp(ct, "trip.", 5) && !strcmp(reason, "trip_finished")) {
		/* trip.state_changed CANCELLED says the rest, unless it came while
		 * the socket was down: then this is how the driver learns */
		if (d->st >= D_TO_PICKUP && d->st <= D_COMPLETING) {
			sim_drv_to_idle(d);
			if (sim_st.cruise)
				sim_drv_cruise(d);
		}
		return;
	}
	if (!strcmp(reason, "unavailable")) { /* the database could not take it now: send it again */
		sim_st.resends++;
		sim_later(LATER_DRIVER_COMMAND, d->idx, d->trip_id, ct, 0, 1000);
		return;
	}
	if (!strcmp(ct, "offer.accept") && !strcmp(reason, "duplicate"))
		return; /* sent again while the first is being applied: its answer comes */
	sim_protocol_error("driver %d: %s rejected (%s): %s", d->idx, ct, reason, sim_jstr(pl, "details") ? sim_jstr(pl, "details") : "");
}

/* The command the driver's state waits on, sent (again). */
void sim_drv_send_pending(struct sim_drv *d)
{
	switch (d->st) {
	case D_ACCEPTING:
		if (d->offer_id[0])
			sim_drv_accept(d);
		break;
	case D_ARRIVING:
		sim_drv_command(d, "trip.arrived");
		break;
	case D_STARTING:
		sim_drv_command(d, "trip.started");
		break;
	case D_COMPLETING:
		sim_drv_command(d, "trip.completed");
		break;
	case D_SHARE_LEG:
		sim_share_resend(d);
		break;
	default:
		break;
	}
}

/* The socket is back and the server says where the driver stands: a trip
 * that ended meanwhile is over here too, an offline driver goes available
 * again, and the trip command it waited on is sent again (trip.assigned or
 * ride.offer follows from the server for a trip or a live offer). */
static void sim_drv_resume(struct sim_drv *d, const char *status)
{
	/* An offer stands only on the socket it came on: a live one is sent
	 * again on this one (and answered afresh); one the server no longer
	 * has (offers do not survive a restart) is over. An accept whose answer
	 * was lost: trip.assigned follows if it was applied (d->accepted). */
	if (d->st == D_OFFERED || d->st == D_ACCEPTING)
		sim_drv_clear_offer(d);
	bool on_trip = d->st >= D_TO_PICKUP && d->st <= D_COMPLETING;
	if (on_trip && (!strcmp(status, "available") || !strcmp(status, "offline"))) {
		sim_drv_to_idle(d);
		if (sim_st.cruise)
			sim_drv_cruise(d);
	}
	if (!strcmp(status, "offline") && (d->st == D_IDLE || d->st == D_OFFERED)) {
		cJSON *p = cJSON_CreateObject();
		cJSON_AddStringToObject(p, "driver_id", d->id);
		cJSON_AddStringToObject(p, "status", "available");
		cJSON_AddStringToObject(p, "reason", "simulated shift");
		sim_send_envelope(d->ws, d->id, "driver.status.changed", p);
	}
	sim_drv_send_pending(d);
}

/* driver.reposition.suggested: an idle driver follows it with probability
 * --follow-suggestions (drawn from its own stream whatever its state, so
 * the draws stay the same), driving by road to the cell's centre; an offer
 * on the way takes it from there. */
static void sim_drv_on_suggestion(struct sim_drv *d, const cJSON *pl)
{
	double lat, lon;
	if (!sim_jpoint(pl, "target", &lat, &lon)) {
		sim_protocol_error("driver %d: driver.reposition.suggested without a target", d->idx);
		return;
	}
	sim_st.suggestions++;
	bool follow = sim_rng_unit(&d->rng) < sim_st.follow_p;
	if (d->st != D_IDLE)
		return; /* an offer or a trip came first: nothing to follow */
	sim_st.suggestions_idle++;
	if (!follow)
		return;
	sim_st.suggestions_followed++;
	sim_drive_to(d, lat, lon, MODE_REPOSITION);
}

static void sim_drv_text(void *arg, const char *text, size_t len)
{
	struct sim_drv *d = arg;
	sim_now();
	const char *type;
	cJSON *root, *pl = sim_parse_envelope("driver", text, len, &type, &root);
	if (!pl)
		return;
	if (!strcmp(type, "driver.status.changed")) {
		const char *st = sim_jstr(pl, "status"), *reason = sim_jstr(pl, "reason");
		if (d->st == D_SETUP && st && !strcmp(st, "available") && reason && !strcmp(reason, "driver_request")) {
			d->st = D_IDLE;
			d->online_since = sim_st.now;
			sim_st.ready_drivers++;
		} else if (st && reason && !strcmp(reason, "session_opened") && d->st != D_SETUP) {
			sim_drv_resume(d, st);
		} else if (st && (!strcmp(st, "offline") || !strcmp(st, "unreachable")) && d->st != D_SETUP) {
			sim_protocol_error("driver %d: the server set it %s", d->idx, st);
		}
	} else if (!strcmp(type, "ride.offer")) {
		sim_drv_on_offer(d, pl);
	} else if (!strcmp(type, "offer.withdrawn")) {
		const char *oid = sim_jstr(pl, "offer_id"), *reason = sim_jstr(pl, "reason");
		if (oid && !strcmp(oid, d->offer_id)) {
			if (reason && !strcmp(reason, "expired"))
				d->acc.timeouts++;
			else
				d->acc.withdrawn++;
			sim_drv_clear_offer(d);
		}
	} else if (!strcmp(type, "trip.assigned")) {
		sim_drv_on_assigned(d, pl);
	} else if (!strcmp(type, "share.stops")) {
		sim_share_on_stops(d, pl);
	} else if (!strcmp(type, "share.leg.updated")) {
		sim_share_on_leg_updated(d, pl);
	} else if (!strcmp(type, "driver.reposition.suggested")) {
		sim_drv_on_suggestion(d, pl);
	} else if (!strcmp(type, "command.acknowledged")) {
		sim_drv_on_ack(d, pl);
	} else if (!strcmp(type, "command.rejected")) {
		sim_drv_on_rejected(d, pl);
	} else if (!strcmp(type, "trip.state_changed")) {
		const char *tid = sim_jstr(pl, "trip_id"), *state = sim_jstr(pl, "state");
		if (tid && state && !strcmp(tid, d->trip_id) && !strcmp(state, "CANCELLED")) {
			sim_drv_to_idle(d);
			if (sim_st.cruise)
				sim_drv_cruise(d);
		}
	} else if (strcmp(type, "server.heartbeat") != 0 && strcmp(type, "driver.location.acked") != 0) {
		sim_protocol_error("driver %d: unexpected %s", d->idx, type);
	}
	cJSON_Delete(root);
}

static void sim_drv_closed(void *arg, int code, int http_status, const char *why)
{
	struct sim_drv *d = arg;
	if (sim_st.ending)
		return;
	if (d->st != D_SETUP && d->st != D_DEAD && sim_server_away(code, http_status)) {
		d->up = false;
		sim_later(LATER_DRIVER_SOCKET, d->idx, NULL, NULL, 0, sim_reconnect_wait(&d->backoff_ms, &d->rng));
		return;
	}
	if (d->st != D_DEAD)
		sim_protocol_error("driver %d: socket closed (code %d, HTTP %d): %s", d->idx, code, http_status, why);
	if (d->st == D_SETUP)
		sim_st.setup_failed++;
	d->st = D_DEAD;
}

void sim_drv_open(void *arg)
{
	struct sim_drv *d = arg;
	d->up = true;
	if (d->st != D_SETUP) { /* back after a fault: the server tells where it stands (drv_resume) */
		d->backoff_ms = 0;
		sim_st.reconnects++;
		sim_drv_ping(d);
		return;
	}
	/* a position first: going available needs one */
	sim_drv_ping(d);
	cJSON *p = cJSON_CreateObject();
	cJSON_AddStringToObject(p, "driver_id", d->id);
	cJSON_AddStringToObject(p, "status", "available");
	cJSON_AddStringToObject(p, "reason", "simulated shift");
	sim_send_envelope(d->ws, d->id, "driver.status.changed", p);
}

const struct simc_ws_cbs sim_drv_cbs = { sim_drv_open, sim_drv_text, sim_drv_closed };
