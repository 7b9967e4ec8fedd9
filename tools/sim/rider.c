/* ridehail-sim: the simulated riders: quotes, ride requests, the trip as the rider sees it. */
#include "simtool.h"

static void sim_rider_rated(void *arg, const struct simc_reply *rep);
static void sim_rider_cancelled(void *arg, const struct simc_reply *rep);
static void sim_rider_apply_state(struct sim_rider *r, const char *state, const cJSON *pl, bool by_msg);
static void sim_rider_on_trip_msg(struct sim_rider *r, const char *type, const cJSON *pl);
static void sim_rider_on_snapshot(struct sim_rider *r, const cJSON *pl);
static void sim_rider_read(void *arg, const struct simc_reply *rep);
static void sim_rider_text(void *arg, const char *text, size_t len);
static void sim_rider_open(void *arg);
static void sim_rider_closed(void *arg, int code, int http_status, const char *why);
static void sim_rider_posted(void *arg, const struct simc_reply *rep);
static void sim_rider_quoted(void *arg, const struct simc_reply *rep);

void sim_rider_free(struct sim_rider *r)
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


static void sim_rider_rated(void *arg, const struct simc_reply *rep)
{
	struct sim_http_try *c = arg;
	struct sim_rider *r = &sim_st.rid[c->idx];
	if (sim_http_retryable(rep) && c->tries < 60 && !sim_st.ending) {
		sim_st.resends++;
		sim_later(LATER_RIDER_RATE, c->idx, c->trip, NULL, c->tries + 1, sim_http_wait_ms(rep));
		rh_free(c);
		return;
	}
	/* (409 already_rated after a retry: the first try's answer was lost) */
	if (rep->status != 201 && !(rep->status == 409 && c->tries > 0))
		sim_protocol_error("rider %d: POST rating: %d %.200s", r->idx, rep->status, rep->body);
	if (r->st == R_RATING && !strcmp(r->trip_id, c->trip))
		sim_rider_free(r);
	rh_free(c);
}

void sim_rider_rate_try(struct sim_rider *r, const char *trip, int tries)
{
	char path[96], body[32];
	snprintf(path, sizeof path, "/v1/rides/%s/rating", trip);
	snprintf(body, sizeof body, "{\"stars\":%d}", 4 + (int)(sim_rng_next(&r->rng) % 2));
	simc_http(sim_st.pool, "POST", path, r->token, NULL, body, sim_rider_rated, sim_http_try_new(r->idx, trip, tries));
}


static void sim_rider_cancelled(void *arg, const struct simc_reply *rep)
{
	struct sim_http_try *c = arg;
	struct sim_rider *r = &sim_st.rid[c->idx];
	bool still = !strcmp(r->trip_id, c->trip) && (r->st == R_SEARCHING || r->st == R_MATCHED || r->st == R_POSTING);
	if (sim_http_retryable(rep) && c->tries < 60 && !sim_st.ending) {
		if (still) {
			sim_st.resends++;
			sim_later(LATER_RIDER_CANCEL, c->idx, c->trip, NULL, c->tries + 1, sim_http_wait_ms(rep));
		}
	} else if (rep->status != 200 && rep->status != 409) {
		/* 409 trip-state: the driver arrived (or the trip ended) meanwhile */
		sim_protocol_error("rider %d: POST cancel: %d %.200s", r->idx, rep->status, rep->body);
	}
	rh_free(c);
}

void sim_rider_cancel_try(struct sim_rider *r, int tries)
{
	char path[96];
	snprintf(path, sizeof path, "/v1/rides/%s/cancel", r->trip_id);
	simc_http(sim_st.pool, "POST", path, r->token, NULL, "{\"reason\":\"rider_patience\"}", sim_rider_cancelled,
		  sim_http_try_new(r->idx, r->trip_id, tries));
}

/* Where the rider's trip stands, from a message, a snapshot or the trip read
 * back: the rider's state and its record follow. by_msg: a trip.state_changed
 * (else the state was caught up with after a fault). */
static void sim_rider_apply_state(struct sim_rider *r, const char *state, const cJSON *pl, bool by_msg)
{
	struct sim_trip_rec *rec = r->rec >= 0 ? &sim_st.recs[r->rec] : NULL;
	if (!rec)
		return;
	bool past_match = strcmp(state, "SEARCHING") != 0 && strcmp(state, "CANCELLED") != 0;
	if (!by_msg && past_match && rec->t_matched < 0) { /* matched while the socket was down */
		rec->t_matched = sim_st.now;
		sim_st.iv_matched++;
	}
	if (!strcmp(state, "MATCHED")) {
		if (r->st == R_SEARCHING || r->st == R_POSTING)
			r->st = R_MATCHED;
	} else if (!strcmp(state, "ARRIVED")) {
		if (rec->t_arrived < 0)
			rec->t_arrived = sim_st.now;
		r->st = R_ARRIVED;
	} else if (!strcmp(state, "IN_PROGRESS")) {
		if (rec->t_arrived < 0)
			rec->t_arrived = sim_st.now;
		if (rec->t_started < 0)
			rec->t_started = sim_st.now;
		r->st = R_ONTRIP;
	} else if (!strcmp(state, "COMPLETED")) {
		rec->t_completed = sim_st.now;
		rec->outcome = SIM_OUT_COMPLETED;
		sim_st.iv_completed++;
		r->st = R_RATING;
		r->prev_caught_up = !by_msg;
		sim_rider_rate_try(r, r->trip_id, 0);
	} else if (!strcmp(state, "CANCELLED")) {
		const cJSON *c = cJSON_GetObjectItemCaseSensitive(pl, "cancellation");
		const char *by = c ? sim_jstr(c, "by") : NULL, *why = c ? sim_jstr(c, "reason") : NULL;
		rec->t_cancelled = sim_st.now;
		rec->outcome = SIM_OUT_CANCELLED;
		snprintf(rec->cancel_reason, sizeof rec->cancel_reason, "%s:%s", by ? by : "?", why ? why : "?");
		sim_st.iv_cancelled++;
		sim_rider_free(r);
		r->prev_caught_up = !by_msg;
	}
}

static void sim_rider_on_trip_msg(struct sim_rider *r, const char *type, const cJSON *pl)
{
	const char *tid = sim_jstr(pl, "trip_id");
	double seq;
	if (!tid || !sim_jnum(pl, "seq", &seq)) {
		sim_protocol_error("rider %d: %s without trip_id or seq", r->idx, type);
		return;
	}
	if (r->st == R_POSTING && !r->trip_id[0])
		snprintf(r->trip_id, sizeof r->trip_id, "%s", tid); /* before the 201 */
	if (r->prev_trip[0] && strcmp(tid, r->prev_trip) == 0 && strcmp(tid, r->trip_id) != 0) {
		if (r->prev_caught_up && (long long)seq > r->prev_seq)
			return; /* its end was read back first: the message says the same */
		sim_protocol_error("rider %d: %s (seq %lld) for trip %s after the trip ended (its last message was seq %lld)",
			       r->idx, type, (long long)seq, tid, r->prev_seq);
		return;
	}
	if (strcmp(tid, r->trip_id) != 0) {
		sim_protocol_error("rider %d: %s for trip %s, not its trip %s", r->idx, type, tid, r->trip_id[0] ? r->trip_id : "(none)");
		return;
	}
	if ((long long)seq != r->last_seq + 1)
		sim_protocol_error("rider %d: %s seq %lld after %lld", r->idx, type, (long long)seq, r->last_seq);
	r->last_seq = (long long)seq;
	if (!strcmp(type, "driver.location")) {
		double lat, lon;
		int m = sim_tmap_find(tid);
		if (!sim_jpoint(pl, "location", &lat, &lon)) {
			sim_protocol_error("rider %d: driver.location without a location", r->idx);
		} else if (m >= 0) {
			if (sim_st.ntrack == sim_st.cap_track) {
				sim_st.cap_track = sim_st.cap_track ? sim_st.cap_track * 2 : 1024;
				sim_st.track = rh_realloc(sim_st.track, sim_st.cap_track * sizeof *sim_st.track);
			}
			const struct sim_drv *d = &sim_st.drv[sim_st.tmap[m].driver];
			sim_st.track[sim_st.ntrack++] = sim_dist_m(lat, lon, d->lat, d->lon);
		}
	}
	if (r->rec < 0)
		return;
	struct sim_trip_rec *rec = &sim_st.recs[r->rec];
	if (rec->t_created < 0)
		rec->t_created = sim_st.now;
	if (!strcmp(type, "trip.matched")) {
		if (r->got_matched)
			sim_breach("rider %d: trip %s matched twice", r->idx, tid);
		r->got_matched = true;
		if (rec->t_matched < 0) {
			rec->t_matched = sim_st.now;
			sim_st.iv_matched++;
		}
		if (r->st == R_SEARCHING || r->st == R_POSTING)
			r->st = R_MATCHED;
	} else if (!strcmp(type, "trip.state_changed")) {
		const char *state = sim_jstr(pl, "state");
		if (!state)
			sim_protocol_error("rider %d: trip.state_changed without state", r->idx);
		else
			sim_rider_apply_state(r, state, pl, true);
	}
}

/* After a reconnect: where the trip stands now. Its numbers go on from the
 * snapshot's (never below what the rider has: that would be numbering gone
 * backwards). */
static void sim_rider_on_snapshot(struct sim_rider *r, const cJSON *pl)
{
	const char *tid = sim_jstr(pl, "trip_id"), *state = sim_jstr(pl, "state");
	double seq;
	if (!tid || !state || !sim_jnum(pl, "seq", &seq)) {
		sim_protocol_error("rider %d: trip.snapshot without trip_id, seq or state", r->idx);
		return;
	}
	if (r->st == R_POSTING && !r->trip_id[0])
		snprintf(r->trip_id, sizeof r->trip_id, "%s", tid);
	if (strcmp(tid, r->trip_id) != 0) {
		sim_protocol_error("rider %d: a snapshot of trip %s, not its trip %s", r->idx, tid, r->trip_id[0] ? r->trip_id : "(none)");
		return;
	}
	if ((long long)seq < r->last_seq)
		sim_protocol_error("rider %d: numbering went backwards: a snapshot at seq %lld after %lld", r->idx, (long long)seq,
			       r->last_seq);
	else
		r->last_seq = (long long)seq;
	sim_rider_apply_state(r, state, pl, false);
}


/* The trip read back after a reconnect (messages sent while the socket was
 * down are gone; a trip that ended meanwhile sends no snapshot). */
static void sim_rider_read(void *arg, const struct simc_reply *rep)
{
	struct sim_http_try *c = arg;
	struct sim_rider *r = &sim_st.rid[c->idx];
	if (strcmp(r->trip_id, c->trip) != 0 || r->st == R_RATING || r->st == R_FREE) {
		rh_free(c); /* it moved on meanwhile */
		return;
	}
	if (sim_http_retryable(rep) && c->tries < 60 && !sim_st.ending) {
		sim_later(LATER_RIDER_READ, c->idx, c->trip, NULL, c->tries + 1, sim_http_wait_ms(rep));
	} else if (rep->status == 200) {
		cJSON *j = cJSON_Parse(rep->body);
		const char *state = j ? sim_jstr(j, "state") : NULL;
		if (state)
			sim_rider_apply_state(r, state, j, false);
		else
			sim_protocol_error("rider %d: GET /v1/rides/%s: no state", r->idx, c->trip);
		cJSON_Delete(j);
	} else {
		sim_protocol_error("rider %d: GET /v1/rides/%s: %d %.200s", r->idx, c->trip, rep->status, rep->body);
	}
	rh_free(c);
}

void sim_rider_read_try(struct sim_rider *r, int tries)
{
	char path[96];
	snprintf(path, sizeof path, "/v1/rides/%s", r->trip_id);
	simc_http(sim_st.pool, "GET", path, r->token, NULL, NULL, sim_rider_read, sim_http_try_new(r->idx, r->trip_id, tries));
}

static void sim_rider_text(void *arg, const char *text, size_t len)
{
	struct sim_rider *r = arg;
	sim_now();
	const char *type;
	cJSON *root, *pl = sim_parse_envelope("rider", text, len, &type, &root);
	if (!pl)
		return;
	if (!strcmp(type, "trip.search_progress") || !strcmp(type, "trip.matched") || !strcmp(type, "driver.location") ||
	    !strcmp(type, "trip.state_changed")) {
		sim_rider_on_trip_msg(r, type, pl);
	} else if (!strcmp(type, "share.booking.updated")) {
		sim_share_on_booking(r, pl);
	} else if (!strcmp(type, "trip.snapshot")) {
		if (r->reconnected)
			sim_rider_on_snapshot(r, pl);
		else
			sim_protocol_error("rider %d: a snapshot on a fresh account", r->idx);
	} else if (!strcmp(type, "command.rejected")) {
		sim_protocol_error("rider %d: rejected: %.200s", r->idx, text);
	} else if (strcmp(type, "server.heartbeat") != 0) {
		sim_protocol_error("rider %d: unexpected %s", r->idx, type);
	}
	cJSON_Delete(root);
}

static void sim_rider_open(void *arg)
{
	struct sim_rider *r = arg;
	r->up = true;
	if (r->st != R_SETUP) { /* back after a fault */
		r->backoff_ms = 0;
		r->reconnected = true;
		sim_st.reconnects++;
		if (r->trip_id[0] && r->st >= R_POSTING && r->st <= R_ONTRIP)
			sim_rider_read_try(r, 0);
		return;
	}
	sim_rider_free(r);
	sim_st.ready_riders++;
}

static void sim_rider_closed(void *arg, int code, int http_status, const char *why)
{
	struct sim_rider *r = arg;
	if (sim_st.ending)
		return;
	if (r->st != R_SETUP && r->st != R_DEAD && sim_server_away(code, http_status)) {
		r->up = false;
		sim_later(LATER_RIDER_SOCKET, r->idx, NULL, NULL, 0, sim_reconnect_wait(&r->backoff_ms, &r->rng));
		return;
	}
	sim_protocol_error("rider %d: socket closed (code %d, HTTP %d): %s", r->idx, code, http_status, why);
	if (r->st == R_SETUP)
		sim_st.setup_failed++;
	r->st = R_DEAD;
}

const struct simc_ws_cbs sim_rider_cbs = { sim_rider_open, sim_rider_text, sim_rider_closed };


void sim_rider_post(struct sim_rider *r)
{
	simc_http(sim_st.pool, "POST", "/v1/rides", r->token, r->posted_key, r->posted_body, sim_rider_posted, r);
}

/* POST /v1/rides answered. */
static void sim_rider_posted(void *arg, const struct simc_reply *rep)
{
	struct sim_rider *r = arg;
	sim_now();
	struct sim_trip_rec *rec = &sim_st.recs[r->rec];
	if (rep->status == 201) {
		cJSON *j = cJSON_Parse(rep->body);
		const char *id = j ? sim_jstr(j, "id") : NULL, *state = j ? sim_jstr(j, "state") : NULL;
		if (!id || !state) {
			sim_protocol_error("rider %d: POST /v1/rides 201 without id/state", r->idx);
			sim_rider_free(r);
		} else {
			if (r->trip_id[0] && strcmp(r->trip_id, id) != 0)
				sim_protocol_error("rider %d: messages for %s, the POST created %s", r->idx, r->trip_id, id);
			snprintf(r->trip_id, sizeof r->trip_id, "%s", id);
			if (rec->t_created < 0)
				rec->t_created = sim_st.now;
			sim_st.iv_created++;
			if (r->st == R_POSTING)
				r->st = R_SEARCHING;
			r->patience_at = rec->t_created + sim_st.patience_s * sim_rng_range(&r->rng, 0.5, 1.5);
			r->tries = 0;
		}
		cJSON_Delete(j);
		return;
	}
	/* Lost on the way, or the database away: the same request again, with
	 * the same Idempotency-Key (a first try that did commit answers 201
	 * again with the same trip). */
	if (sim_http_retryable(rep) && r->tries < 60 && !sim_st.ending) {
		r->tries++;
		sim_st.resends++;
		sim_later(LATER_RIDER_POST, r->idx, NULL, NULL, r->tries, sim_http_wait_ms(rep));
		return;
	}
	/* 503: no driver of the type online at all; 429: this rider's
	 * rides_per_minute. Anything else is unexpected. */
	if (rep->status != 503 && rep->status != 429)
		sim_protocol_error("rider %d: POST /v1/rides: %d %.200s", r->idx, rep->status, rep->body);
	rec->outcome = SIM_OUT_REFUSED;
	sim_rider_free(r);
}


static void sim_rider_quoted(void *arg, const struct simc_reply *rep)
{
	struct sim_rider *r = arg;
	sim_now();
	struct sim_trip_rec *rec = &sim_st.recs[r->rec];
	if (rep->status == 0 && r->tries < 60 && !sim_st.ending) { /* the daemon away: ask again */
		r->tries++;
		sim_st.resends++;
		sim_later(LATER_RIDER_QUOTE, r->idx, NULL, NULL, r->tries, 1000);
		return;
	}
	cJSON *j = rep->status == 200 ? cJSON_Parse(rep->body) : NULL;
	const char *quote = j ? sim_jstr(j, "quote_id") : NULL;
	if (!quote) {
		/* 422: a point off the map, no route, or pickup and dropoff too close */
		if (rep->status != 422)
			sim_protocol_error("rider %d: GET /v1/estimate: %d %.200s", r->idx, rep->status, rep->body);
		rec->outcome = SIM_OUT_NO_QUOTE;
		cJSON_Delete(j);
		sim_rider_free(r);
		return;
	}
	if (sim_surge_rider_declines(r, j)) {
		rec->outcome = SIM_OUT_DECLINED;
		cJSON_Delete(j);
		sim_rider_free(r);
		return;
	}
	snprintf(r->posted_body, sizeof r->posted_body,
		 "{\"pickup\":{\"lat\":%.6f,\"lng\":%.6f},\"dropoff\":{\"lat\":%.6f,\"lng\":%.6f},\"vehicle_type\":\"standard\","
		 "\"quote_id\":\"%s\"}",
		 rec->plat, rec->plon, r->dlat, r->dlon, quote);
	snprintf(r->posted_key, sizeof r->posted_key, "Idempotency-Key: sim-%s-%zu", sim_st.run_id, (size_t)(rec - sim_st.recs));
	cJSON_Delete(j);
	r->st = R_POSTING;
	r->tries = 0;
	rec->t_request = rec->t_request < 0 ? sim_st.now : rec->t_request;
	sim_rider_post(r);
}

void sim_rider_ask_estimate(struct sim_rider *r)
{
	const struct sim_trip_rec *rec = &sim_st.recs[r->rec];
	char path[256];
	snprintf(path, sizeof path,
		 "/v1/estimate?pickup_lat=%.6f&pickup_lng=%.6f&dropoff_lat=%.6f&dropoff_lng=%.6f&vehicle_type=standard",
		 rec->plat, rec->plon, r->dlat, r->dlon);
	simc_http(sim_st.pool, "GET", path, NULL, NULL, NULL, sim_rider_quoted, r);
}

/* A request of the demand is due: a free rider quotes it. */
void sim_issue_request(const struct sim_request *q)
{
	struct sim_trip_rec *rec = sim_rec_new();
	rec->t_request = sim_st.now;
	rec->plat = q->plat;
	rec->plon = q->plon;
	sim_st.iv_requests++;
	struct sim_rider *r = NULL;
	for (int k = 0; k < sim_st.nriders; k++) {
		struct sim_rider *c = &sim_st.rid[(sim_st.nrecs + (size_t)k) % (size_t)sim_st.nriders];
		if (c->st == R_FREE) {
			r = c;
			break;
		}
	}
	if (!r) {
		rec->outcome = SIM_OUT_NO_RIDER;
		return;
	}
	r->rec = (int)(rec - sim_st.recs);
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
			sim_random_point(&r->rng, &r->dlat, &r->dlon);
			double dd = sim_dist_m(q->plat, q->plon, r->dlat, r->dlon);
			if (dd > 800 && dd < 3500)
				break;
		}
	}
	sim_share_direct(rec, r->dlat, r->dlon);
	r->shared = rec->shared = sim_share_wanted((size_t)(rec - sim_st.recs));
	r->booking_id[0] = '\0';
	if (r->shared) {
		r->patience_at = INFINITY; /* the daemon's share.max_wait bounds the wait */
		sim_share_ask_card(r);
		return;
	}
	sim_rider_ask_estimate(r);
}
