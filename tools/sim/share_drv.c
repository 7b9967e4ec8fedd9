/* ridehail-sim: the driver's side of a shared trip (docs/sharing.md, "The
 * driver's stop list"). The daemon reserves an idle driver and sends
 * share.stops at every change; the driver always works the first stop of
 * the list it holds: drives there, then per rider share.leg.update arrived,
 * a boarding time, picked_up, or dropped_off at a drop-off, each at the
 * list's version. A stop done leaves the list (here at the answer, at the
 * daemon with the next share.stops); the last drop-off ends the trip. Every
 * leg sent is a row of share_legs.csv, with where its stop stood in the list. */
#include "simtool.h"

static void sim_share_next(struct sim_drv *d);

static struct sim_stop *sim_share_stop_of(struct sim_share_drv *s, const char *booking, bool pickup, int *at)
{
	for (int i = 0; i < s->nstops; i++)
		if (s->stops[i].pickup == pickup && !strcmp(s->stops[i].booking, booking)) {
			*at = i;
			return &s->stops[i];
		}
	*at = -1;
	return NULL;
}

static void sim_share_drop_stop(struct sim_share_drv *s, const char *booking, bool pickup)
{
	int at;
	if (!sim_share_stop_of(s, booking, pickup, &at))
		return;
	memmove(&s->stops[at], &s->stops[at + 1], (size_t)(s->nstops - at - 1) * sizeof s->stops[0]);
	s->nstops--;
}

/* Sends the leg for the stop being worked, at the version held. */
static void sim_share_send_leg(struct sim_drv *d, const char *action)
{
	struct sim_share_drv *s = &d->share;
	s->leg_action = action;
	s->leg_ver = s->ver;
	s->leg_resend = false;
	d->st = D_SHARE_LEG;
	if (!d->up)
		return; /* sent again once the socket is back (sim_share_resend) */
	int at;
	sim_share_stop_of(s, s->leg_booking, s->leg_pickup, &at);
	if (sim_st.legs)
		fprintf(sim_st.legs, "%.3f,%d,%s,%lld,%s,%s,%s,%d\n", sim_st.now, d->idx, s->trip, s->ver, s->leg_booking,
			s->leg_pickup ? "pickup" : "dropoff", action, at);
	char cid[37];
	sim_new_uuid(cid);
	cJSON *p = cJSON_CreateObject();
	cJSON_AddStringToObject(p, "trip_id", s->trip);
	cJSON_AddStringToObject(p, "booking_id", s->leg_booking);
	cJSON_AddStringToObject(p, "action", action);
	cJSON_AddNumberToObject(p, "stops_version", (double)s->ver);
	cJSON_AddStringToObject(p, "command_id", cid);
	sim_send_envelope(d->ws, d->id, "share.leg.update", p);
}

/* The socket is back, or a stale version was refused: the leg again. */
void sim_share_resend(struct sim_drv *d)
{
	if (d->st == D_SHARE_LEG && d->share.leg_action)
		sim_share_send_leg(d, d->share.leg_action);
}

/* The trip is over: the driver is free again (the daemon released it with
 * the last drop-off). */
static void sim_share_over(struct sim_drv *d)
{
	if (d->share.aboard != 0)
		sim_breach("driver %d: shared trip %s over with %d riders aboard", d->idx, d->share.trip, d->share.aboard);
	memset(&d->share, 0, sizeof d->share);
	d->acc.trips++;
	sim_drv_to_idle(d);
	if (sim_st.cruise)
		sim_drv_cruise(d);
}

/* On to the first stop of the list (unless already driving there). */
static void sim_share_next(struct sim_drv *d)
{
	struct sim_share_drv *s = &d->share;
	if (s->nstops == 0) {
		sim_share_over(d);
		return;
	}
	const struct sim_stop *st = &s->stops[0];
	bool same = !strcmp(st->booking, s->leg_booking) && st->pickup == s->leg_pickup;
	if (same && d->st == D_SHARE_DRIVING && d->moving)
		return;
	snprintf(s->leg_booking, sizeof s->leg_booking, "%s", st->booking);
	s->leg_pickup = st->pickup;
	d->st = D_SHARE_DRIVING;
	sim_drive_to(d, st->lat, st->lon, s->aboard > 0 ? MODE_TRIP : MODE_DEADHEAD);
}

/* Reads share.stops' list into s; false on a malformed one. */
static bool sim_share_read_stops(struct sim_share_drv *s, const cJSON *list)
{
	int n = 0;
	const cJSON *e;
	cJSON_ArrayForEach(e, list) {
		const char *b = sim_jstr(e, "booking_id"), *kind = sim_jstr(e, "kind");
		double lat, lon;
		if (!b || !kind || !sim_jpoint(e, "location", &lat, &lon) || n == SIM_MAX_STOPS)
			return false;
		struct sim_stop *st = &s->stops[n++];
		snprintf(st->booking, sizeof st->booking, "%s", b);
		st->pickup = !strcmp(kind, "pickup");
		st->lat = lat;
		st->lon = lon;
	}
	s->nstops = n;
	return true;
}

void sim_share_on_stops(struct sim_drv *d, const cJSON *pl)
{
	struct sim_share_drv *s = &d->share;
	const char *trip = sim_jstr(pl, "trip_id");
	double ver;
	const cJSON *list = cJSON_GetObjectItemCaseSensitive(pl, "stops");
	if (!trip || !sim_jnum(pl, "stops_version", &ver) || !cJSON_IsArray(list)) {
		sim_protocol_error("driver %d: share.stops without trip_id, stops_version or stops", d->idx);
		return;
	}
	bool sharing = d->st >= D_SHARE_DRIVING && d->st <= D_SHARE_BOARDING;
	if (sharing && strcmp(trip, s->trip) != 0) {
		sim_breach("driver %d: stops of trip %s while on shared trip %s", d->idx, trip, s->trip);
		return;
	}
	if (sharing && (long long)ver < s->ver)
		return; /* an older list than the one held */
	if (!sharing) {
		if (d->st != D_IDLE)
			sim_breach("driver %d: a shared trip %s while %s", d->idx, trip, sim_drv_state_name(d->st));
		if (d->st == D_OFFERED || d->st == D_ACCEPTING)
			return;
		memset(s, 0, sizeof *s);
		snprintf(s->trip, sizeof s->trip, "%s", trip);
		d->busy_since = sim_st.now;
		d->st = D_SHARE_DRIVING;
		d->moving = false;
		sim_st.share_trips++;
	}
	if (!sim_share_read_stops(s, list)) {
		sim_protocol_error("driver %d: share.stops: a malformed stop (or more than %d)", d->idx, SIM_MAX_STOPS);
		return;
	}
	s->ver = (long long)ver;
	if (d->st == D_SHARE_LEG && s->leg_resend)
		sim_share_resend(d);
	else if (d->st == D_SHARE_DRIVING)
		sim_share_next(d);
}

/* share.leg.updated: the leg in flight applied. */
void sim_share_on_leg_updated(struct sim_drv *d, const cJSON *pl)
{
	struct sim_share_drv *s = &d->share;
	const char *b = sim_jstr(pl, "booking_id"), *state = sim_jstr(pl, "state");
	if (d->st != D_SHARE_LEG || !s->leg_action || !b || !state || strcmp(b, s->leg_booking) != 0 ||
	    strcmp(state, s->leg_action) != 0) {
		sim_protocol_error("driver %d: share.leg.updated %s %s, not the leg in flight (%s %s)", d->idx,
				   b ? b : "?", state ? state : "?", s->leg_booking, s->leg_action ? s->leg_action : "none");
		return;
	}
	s->leg_action = NULL;
	if (!strcmp(state, "arrived")) {
		d->board_until = sim_st.now + sim_st.board_s * sim_rng_range(&d->rng, 0.5, 1.5);
		d->st = D_SHARE_BOARDING;
		return;
	}
	if (!strcmp(state, "picked_up")) {
		s->aboard++;
		sim_share_drop_stop(s, b, true);
	} else {
		s->aboard--;
		sim_share_drop_stop(s, b, false);
	}
	d->st = D_SHARE_DRIVING;
	d->moving = false;
	sim_share_next(d);
}

/* A leg refused: a list changed meanwhile is the race the protocol
 * allows (the leg goes again at the new version); anything else is an
 * error, and the driver goes on with the list. */
void sim_share_on_rejected(struct sim_drv *d, const char *reason)
{
	struct sim_share_drv *s = &d->share;
	if (d->st != D_SHARE_LEG || !s->leg_action) {
		sim_protocol_error("driver %d: share.leg.update rejected (%s) with none in flight", d->idx, reason);
		return;
	}
	if (!strcmp(reason, "version_conflict")) {
		sim_st.resends++;
		if (s->ver > s->leg_ver) {
			sim_share_resend(d);
		} else { /* with the next list */
			s->leg_resend = true;
			s->resend_at = INFINITY;
		}
		return;
	}
	if (!strcmp(reason, "unavailable")) { /* the database could not take it now: a wall second later */
		sim_st.resends++;
		s->leg_resend = true;
		s->resend_at = sim_st.now + sim_st.speed;
		return;
	}
	sim_protocol_error("driver %d: share.leg.update %s for %s rejected: %s", d->idx, s->leg_action, s->leg_booking,
			   reason);
	s->leg_action = NULL;
	d->st = D_SHARE_DRIVING;
	d->moving = false;
	sim_share_next(d);
}

/* Every tick of a driver on a shared trip; arrived: it reached the end of
 * its path. */
void sim_share_drv_tick(struct sim_drv *d, bool arrived)
{
	switch (d->st) {
	case D_SHARE_DRIVING:
		if (arrived || !d->moving)
			sim_share_send_leg(d, d->share.leg_pickup ? "arrived" : "dropped_off");
		break;
	case D_SHARE_BOARDING:
		if (sim_st.now >= d->board_until)
			sim_share_send_leg(d, "picked_up");
		break;
	case D_SHARE_LEG:
		if (d->share.leg_resend && sim_st.now >= d->share.resend_at)
			sim_share_resend(d);
		break;
	default:
		break;
	}
}
