/* ridehail-sim: shared rides, the rider's side (docs/sharing.md): a share
 * of the requests (--share-fraction) asks POST /v1/share/rate-card and books
 * the one-seat normal option with POST /v1/share/bookings, then follows its
 * booking on the socket (share.booking.updated: confirmed, arrived,
 * picked_up, dropped_off or cancelled). Every request's direct route (the
 * pickup to the dropoff alone, as the simulated car drives it) is kept for
 * the figures: passenger-km and each shared rider's detour. */
#include "simtool.h"

/* Whether request i of the demand is booked shared: a draw of its own, so
 * the same seed books the same requests shared whatever else happens. */
bool sim_share_wanted(size_t i)
{
	if (sim_st.share_fraction <= 0)
		return false;
	struct sim_rng g;
	sim_rng_seed(&g, sim_st.seed, 0x5a4e000000ull + (uint64_t)i);
	return sim_rng_unit(&g) < sim_st.share_fraction;
}

/* The pickup to (dlat, dlon) alone: by road at the roads' speeds x
 * --traffic as cars drive here, else a straight line at --kmh. */
void sim_share_direct(struct sim_trip_rec *rec, double dlat, double dlon)
{
	struct route_result res;
	if (sim_st.routing &&
	    routing_route(sim_st.routing, rec->plat, rec->plon, dlat, dlon, false, &res) == RH_OK && res.duration_s > 0) {
		double mps = fmax(res.distance_m / res.duration_s * sim_st.traffic, 2);
		rec->direct_km = res.distance_m / 1000.0;
		rec->direct_s = res.distance_m / mps;
		return;
	}
	rec->direct_km = sim_dist_m(rec->plat, rec->plon, dlat, dlon) / 1000.0;
	rec->direct_s = rec->direct_km * 1000.0 / (sim_st.kmh / 3.6);
}

static void sim_share_carded(void *arg, const struct simc_reply *rep)
{
	struct sim_rider *r = arg;
	sim_now();
	if (r->rec < 0) /* the rider ended meanwhile (the run is ending) */
		return;
	struct sim_trip_rec *rec = &sim_st.recs[r->rec];
	if ((rep->status == 0 || rep->status == 503) && r->tries < 60 && !sim_st.ending) {
		r->tries++;
		sim_st.resends++;
		sim_later(LATER_RIDER_CARD, r->idx, NULL, NULL, r->tries, rep->status ? sim_http_wait_ms(rep) : 1000);
		return;
	}
	cJSON *j = rep->status == 200 ? cJSON_Parse(rep->body) : NULL;
	const char *card = j ? sim_jstr(j, "rate_card_id") : NULL;
	if (!card || strlen(card) >= sizeof r->card_id) {
		/* 422: a point off the map, no route; 429: the rider's rate */
		if (rep->status != 422 && rep->status != 429)
			sim_protocol_error("rider %d: POST /v1/share/rate-card: %d %.200s", r->idx, rep->status, rep->body);
		rec->outcome = rep->status == 429 ? SIM_OUT_REFUSED : SIM_OUT_NO_QUOTE;
		cJSON_Delete(j);
		sim_rider_free(r);
		return;
	}
	snprintf(r->card_id, sizeof r->card_id, "%s", card);
	cJSON_Delete(j);
	snprintf(r->posted_key, sizeof r->posted_key, "Idempotency-Key: sim-%s-s%zu", sim_st.run_id,
		 (size_t)(rec - sim_st.recs));
	r->st = R_POSTING;
	r->tries = 0;
	sim_share_book(r);
}

void sim_share_ask_card(struct sim_rider *r)
{
	const struct sim_trip_rec *rec = &sim_st.recs[r->rec];
	char body[256];
	snprintf(body, sizeof body, "{\"pickup\":{\"lat\":%.6f,\"lng\":%.6f},\"dropoff\":{\"lat\":%.6f,\"lng\":%.6f}}",
		 rec->plat, rec->plon, r->dlat, r->dlon);
	simc_http(sim_st.pool, "POST", "/v1/share/rate-card", r->token, NULL, body, sim_share_carded, r);
}

/* The booking answered 202 (or 200: the same key replayed). */
static void sim_share_booked_ok(struct sim_rider *r, struct sim_trip_rec *rec, const char *id)
{
	if (r->booking_id[0] && strcmp(r->booking_id, id) != 0)
		sim_protocol_error("rider %d: messages for booking %s, the POST made %s", r->idx, r->booking_id, id);
	snprintf(r->booking_id, sizeof r->booking_id, "%s", id);
	if (rec->t_created < 0)
		rec->t_created = sim_st.now;
	sim_st.iv_created++;
	if (r->st == R_POSTING)
		r->st = R_SEARCHING;
	r->tries = 0;
}

static void sim_share_booked(void *arg, const struct simc_reply *rep)
{
	struct sim_rider *r = arg;
	sim_now();
	/* A booking decided in its own transaction can end on the rider's feed
	 * (cancelled: no seat, no driver) before its POST answers: the rider is
	 * free again and its record gone. */
	if (r->rec < 0)
		return;
	struct sim_trip_rec *rec = &sim_st.recs[r->rec];
	if (rep->status == 202 || rep->status == 200) {
		cJSON *j = cJSON_Parse(rep->body);
		const char *id = j ? sim_jstr(j, "id") : NULL;
		if (id) {
			sim_share_booked_ok(r, rec, id);
		} else {
			sim_protocol_error("rider %d: POST /v1/share/bookings %d without id", r->idx, rep->status);
			sim_rider_free(r);
		}
		cJSON_Delete(j);
		return;
	}
	if (sim_http_retryable(rep) && r->tries < 60 && !sim_st.ending) { /* the same key again */
		r->tries++;
		sim_st.resends++;
		sim_later(LATER_RIDER_BOOK, r->idx, NULL, NULL, r->tries, sim_http_wait_ms(rep));
		return;
	}
	if (rep->status != 429)
		sim_protocol_error("rider %d: POST /v1/share/bookings: %d %.200s", r->idx, rep->status, rep->body);
	rec->outcome = SIM_OUT_REFUSED;
	sim_rider_free(r);
}

void sim_share_book(struct sim_rider *r)
{
	char body[1400];
	snprintf(body, sizeof body,
		 "{\"rate_card_id\":\"%s\",\"choice\":{\"seats\":1,\"mode\":\"normal\",\"corporate\":false}}", r->card_id);
	simc_http(sim_st.pool, "POST", "/v1/share/bookings", r->token, r->posted_key, body, sim_share_booked, r);
}

/* share.booking.updated: where the rider's booking stands. */
void sim_share_on_booking(struct sim_rider *r, const cJSON *pl)
{
	const char *id = sim_jstr(pl, "id"), *state = sim_jstr(pl, "state");
	struct sim_trip_rec *rec = r->rec >= 0 ? &sim_st.recs[r->rec] : NULL;
	if (!id || !state) {
		sim_protocol_error("rider %d: share.booking.updated without id or state", r->idx);
		return;
	}
	if (rec && r->shared && r->st == R_POSTING && !r->booking_id[0])
		snprintf(r->booking_id, sizeof r->booking_id, "%s", id); /* before the 202 */
	if (!rec || !r->shared || strcmp(id, r->booking_id) != 0) {
		sim_protocol_error("rider %d: share.booking.updated for booking %s, not its booking %s", r->idx, id,
				   r->booking_id[0] ? r->booking_id : "(none)");
		return;
	}
	if (!strcmp(state, "confirmed")) {
		if (rec->t_matched < 0) {
			rec->t_matched = sim_st.now;
			sim_st.iv_matched++;
		}
		r->st = R_MATCHED;
	} else if (!strcmp(state, "arrived")) {
		rec->t_arrived = sim_st.now;
		r->st = R_ARRIVED;
	} else if (!strcmp(state, "picked_up")) {
		if (rec->t_arrived < 0)
			rec->t_arrived = sim_st.now;
		rec->t_started = sim_st.now;
		r->st = R_ONTRIP;
	} else if (!strcmp(state, "dropped_off")) {
		rec->t_completed = sim_st.now;
		rec->outcome = SIM_OUT_COMPLETED;
		sim_st.iv_completed++;
		r->booking_id[0] = '\0';
		sim_rider_free(r);
	} else if (!strcmp(state, "cancelled")) {
		const char *why = sim_jstr(pl, "cancel_reason");
		rec->t_cancelled = sim_st.now;
		rec->outcome = SIM_OUT_CANCELLED;
		snprintf(rec->cancel_reason, sizeof rec->cancel_reason, "system:%s", why ? why : "?");
		sim_st.iv_cancelled++;
		r->booking_id[0] = '\0';
		sim_rider_free(r);
	} else if (strcmp(state, "pending") != 0) {
		sim_protocol_error("rider %d: booking %s in an unknown state %s", r->idx, id, state);
	}
}

/* share_legs.csv: every share.leg.update a driver sent. */
void sim_share_open_files(void)
{
	if (sim_st.share_fraction <= 0)
		return;
	char path[4200];
	snprintf(path, sizeof path, "%s/share_legs.csv", sim_st.out_dir);
	sim_st.legs = fopen(path, "w");
	if (sim_st.legs)
		fprintf(sim_st.legs, "t_s,driver,trip,stops_version,booking,stop,action,stop_index\n");
}

/* summary.json's "share" member; vkm: what the fleet drove serving. */
void sim_share_summary(char *out, size_t cap, double vkm)
{
	struct sim_share_figs f;
	sim_share_compute(sim_st.recs, sim_st.nrecs, vkm, &f);
	snprintf(out, cap,
		 "  \"share\": {\"fraction\": %.3f, \"booked\": %d, \"confirmed\": %d, \"dropped_off\": %d, "
		 "\"cancelled\": %d, \"trips\": %d, \"riders_per_trip\": %.3f, \"vkm\": %.3f, \"pkm\": %.3f, "
		 "\"vkm_per_pkm\": %.4f, \"detour_pct\": {\"p50\": %.2f, \"p95\": %.2f, \"max\": %.2f}, "
		 "\"wait_s\": {\"p50\": %.2f, \"p95\": %.2f}}",
		 sim_st.share_fraction, f.booked, f.confirmed, f.dropped_off, f.cancelled, sim_st.share_trips,
		 sim_st.share_trips ? (double)f.dropped_off / sim_st.share_trips : 0, vkm, f.pkm, f.vkm_per_pkm,
		 f.detour_p50, f.detour_p95, f.detour_max, f.wait_p50, f.wait_p95);
}
