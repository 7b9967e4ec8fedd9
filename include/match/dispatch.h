/* Dispatch: the search for a driver, as a state machine that does no I/O.
 *
 * For every trip it searches for, it offers the best candidates
 * (match.parallel_offers at once), each reserved first; the cascade goes on
 * when an offer is declined, expires or is lost, widening the radius step by
 * step (match.radius_steps). With no candidate anywhere the trip waits in the
 * demand queue, first in line for drivers freed nearby, up to
 * match.max_search, then dispatch gives up (the trip is cancelled no_drivers).
 *
 * What it needs of the world (drivers near a point, pickup ETAs, the
 * database's reservations, messages to drivers and riders, the trip's
 * cancellation) it asks through struct dispatch_world; answers come back
 * through the dispatch_* calls below. Time comes in as `now` (monotonic ms)
 * and from the timers source, so tests drive it without sockets or a
 * database (tests/unit/match/dispatch_test.c).
 *
 * Ownership: dispatch owns its searches and offers; a search ends with
 * dispatch_stop; an offer ends with its search, its answer or its timer.
 * Offers are borrowed by the world's callbacks for the call only. */
#ifndef RH_MATCH_DISPATCH_H
#define RH_MATCH_DISPATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/uuid.h"

struct rh_timers;
struct match_cfg;
struct dispatch;

/* A trip to find a driver for. */
struct dispatch_trip {
	struct uuid id;
	double lat, lon; /* the pickup */
	int vehicle;     /* vehicle type index */
	int64_t max_search_ms; /* how long it may wait for a driver; 0: match.max_search */
};

/* A driver the world found: where, of which type, at which version, and
 * what the score weighs. eta_s < 0: no road from them to the pickup. */
struct dispatch_cand {
	struct uuid driver;
	double lat, lon;
	int vehicle;
	int64_t version;
	int64_t idle_ms;
	uint32_t offers, accepts;
	double eta_s, road_m;
};

enum dispatch_offer_state {
	DISPATCH_RESERVING, /* the database is reserving the driver */
	DISPATCH_LIVE,      /* out to the driver, until it expires */
	DISPATCH_ACCEPTING, /* accepted: the trip's MATCHED is on its way */
};

struct dispatch_offer {
	struct uuid id, driver, trip;
	enum dispatch_offer_state state;
	int64_t version;    /* the driver's: as found; once reserved, the new one */
	int64_t expires_at; /* monotonic ms (LIVE) */
	double road_m, score;
	int eta_s, round;
	bool maybe_matched; /* an accept of it got no answer and may have committed */
};

/* The rider's estimate while searching: seconds from now until a driver is
 * expected to have accepted, and until the car is expected at the pickup;
 * has_* false when dispatch has nothing to go on yet (docs/dispatch.md). */
struct dispatch_estimate {
	bool has_match, has_pickup;
	double match_s, pickup_s;
};

struct dispatch_world {
	/* Up to k drivers AVAILABLE with an open session within radius_m of the
	 * trip's pickup, of its vehicle type, nearest first, pickup ETAs filled. */
	size_t (*candidates)(void *ctx, const struct dispatch_trip *t, double radius_m, int64_t now,
			     struct dispatch_cand *out, size_t k);
	/* Whether any such driver is within radius_m (a waiting trip's look). */
	bool (*any_free)(void *ctx, const struct dispatch_trip *t, double radius_m, int64_t now);
	/* One driver as candidates() would list them, ETA not filled; false if not. */
	bool (*driver)(void *ctx, const struct uuid *driver, int64_t now, struct dispatch_cand *out);
	/* The pickup ETA of c for t into c (false: no road). */
	bool (*eta)(void *ctx, struct dispatch_cand *c, const struct dispatch_trip *t);
	/* Batch mode: up to k drivers as candidates() lists them, without their
	 * pickup ETAs (eta_s -1, road_m the straight line). */
	size_t (*nearby)(void *ctx, const struct dispatch_trip *t, double radius_m, int64_t now, struct dispatch_cand *out,
			 size_t k);
	/* Batch mode: the pickup ETAs of a window's candidate pairs, at once:
	 * eta_s[i * nt + j] from drivers[i] to trips[j] (< 0: no road), road_m
	 * likewise, for each pair with want[i * nt + j] set (the others are
	 * not read; they may be left alone). */
	void (*etas)(void *ctx, const struct dispatch_cand *drivers, size_t nd, const struct dispatch_trip *trips, size_t nt,
		     const uint8_t *want, double *eta_s, double *road_m);
	/* Reserve o's driver; answer with dispatch_reserved(). */
	void (*reserve)(void *ctx, const struct dispatch_offer *o);
	/* o is live: send it (false: the driver cannot be reached). */
	bool (*offer)(void *ctx, const struct dispatch_offer *o, const struct dispatch_trip *t);
	/* o ended without a match: release the driver if reserved (reserved),
	 * and tell them when told. reason names the outcome for the metrics
	 * and the trip's history (declined, expired, lost_race, ...). */
	void (*ended)(void *ctx, const struct dispatch_offer *o, const char *reason, bool reserved, bool told);
	/* The rider's view of the search: offered or wider (searching), or
	 * waiting; est: what the rider may expect. */
	void (*progress)(void *ctx, const struct uuid *trip, bool waiting, double radius_m, int offers,
			 const struct dispatch_estimate *est);
	/* Nobody within match.max_search: cancel the trip; answer with
	 * dispatch_gave_up(). */
	void (*give_up)(void *ctx, const struct uuid *trip);
	void *ctx;
};

struct dispatch *dispatch_new(const struct match_cfg *cfg, struct rh_timers *timers, const struct dispatch_world *w);
void dispatch_free(struct dispatch *d);

/* Offers may go out from now on (after the last run's reservations were
 * released at start); searches started before wait for this. */
void dispatch_open(struct dispatch *d, int64_t now);
/* Searches a driver for t; started: when its search began (monotonic ms;
 * earlier than now for a trip read back after a restart). Nothing when it
 * is searched already or dispatch is manual (match.automatic off). */
void dispatch_search(struct dispatch *d, const struct dispatch_trip *t, int64_t started, int64_t now);
/* The trip no longer searches: matched to `keep` (whose offer, if any,
 * ends without a release: the driver is the trip's), or it ended (keep
 * NULL). Its other offers are withdrawn with `reason`; keep's live offer for
 * another trip is withdrawn too (driver_assigned). */
void dispatch_stop(struct dispatch *d, const struct uuid *trip, const struct uuid *keep, const char *reason,
		   int64_t now);
/* The database's answer to a reservation: the driver reserved (at
 * version), taken by someone else (not tried again for this trip), or no
 * answer (the driver may be tried again once free). */
enum dispatch_reserve_answer { DISPATCH_RESERVED, DISPATCH_TAKEN, DISPATCH_UNANSWERED };
void dispatch_reserved(struct dispatch *d, const struct uuid *offer, enum dispatch_reserve_answer answer,
		       int64_t version, int64_t now);
/* The answer to give_up: saved, or not (the trip waits and tries again). */
void dispatch_gave_up(struct dispatch *d, const struct uuid *trip, bool saved, int64_t now);
/* A driver became free: the oldest waiting trip near them gets them. */
void dispatch_driver_free(struct dispatch *d, const struct uuid *driver, int64_t now);

/* A driver's answer to an offer. trip may be NULL (not named). */
enum dispatch_refusal {
	DISPATCH_OK = 0,
	DISPATCH_NO_OFFER,   /* no live offer with this id: expired or withdrawn */
	DISPATCH_NOT_YOURS,  /* made to another driver */
	DISPATCH_DUPLICATE,  /* being accepted already */
	DISPATCH_NOT_LIVE,   /* not out yet */
	DISPATCH_OTHER_TRIP, /* the offer is for another trip */
};
/* Accepting: on DISPATCH_OK the offer waits for the trip's MATCHED (a copy
 * in *out); dispatch_stop settles it, or dispatch_accept_failed. */
enum dispatch_refusal dispatch_accept(struct dispatch *d, const struct uuid *offer, const struct uuid *driver,
				      const struct uuid *trip, struct dispatch_offer *out);
/* The MATCHED of an accepted offer was refused: the offer ends (released)
 * and the search, if any, goes on. */
void dispatch_accept_failed(struct dispatch *d, const struct uuid *offer, int64_t now);
/* The MATCHED of an accepted offer got no answer (the database is away):
 * the offer is live again, until its expiry or at least its round's timeout
 * from now (*expires_at), so that the driver can send the accept again;
 * maybe_applied: it may have committed all the same (the offer says so when
 * it ends). false: its search stopped meanwhile, so the offer ended
 * (released, the driver told). */
bool dispatch_accept_unanswered(struct dispatch *d, const struct uuid *offer, bool maybe_applied, int64_t now,
				int64_t *expires_at);
enum dispatch_refusal dispatch_decline(struct dispatch *d, const struct uuid *offer, const struct uuid *driver,
				       const struct uuid *trip, struct uuid *trip_out, int64_t now);

/* ------------------------------------------------------------ questions */

bool dispatch_is_searching(const struct dispatch *d, const struct uuid *trip);
/* When the trip's search began (monotonic ms), or -1. */
int64_t dispatch_search_started(const struct dispatch *d, const struct uuid *trip);
/* The driver's live offer, or NULL. */
const struct dispatch_offer *dispatch_offer_of(const struct dispatch *d, const struct uuid *driver);
/* Drivers with an offer out (any state), up to max into out; the count. */
size_t dispatch_offered_drivers(const struct dispatch *d, struct uuid *out, size_t max);
void dispatch_counts(const struct dispatch *d, int *searching, int *waiting);
/* The trip's estimate as the rider would be told it now; false when the
 * trip is not searching. */
bool dispatch_estimate(const struct dispatch *d, const struct uuid *trip, int64_t now, struct dispatch_estimate *out);
/* Higher is better: a short pickup, a driver who has waited long, one who
 * tends to accept (smoothed so a new driver is not shut out). Pure. */
double dispatch_score(const struct match_cfg *cfg, const struct dispatch_cand *c);
/* Batch mode's cost of giving c the trip (ms, lower is better): the pickup
 * ETA less the score's idle and acceptance terms in seconds, at the rate the
 * score trades them for a short pickup (docs/dispatch.md). Pure. */
int64_t dispatch_pair_cost_ms(const struct match_cfg *cfg, const struct dispatch_cand *c);

#endif
