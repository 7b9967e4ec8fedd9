/* Inside dispatch: the searches, offers and the demand queue (dispatch.c),
 * shared with batch mode (batch.c), which gathers the searches of a window
 * and hands each its drivers through the same offers. */
#ifndef RH_MATCH_DISPATCH_INTERNAL_H
#define RH_MATCH_DISPATCH_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "core/umap.h"
#include "match/dispatch.h"

#define DISPATCH_MAX_TRIED 128     /* drivers one search remembers (offered, declined, lost) */
#define DISPATCH_MAX_CANDIDATES 256

struct dispatch_search;
struct dispatch_batch;

struct dispatch_offer_rec {
	struct dispatch_offer pub;
	struct dispatch *d;
	struct dispatch_search *s; /* NULL once its search stopped (reserving or accepting) */
	TAILQ_ENTRY(dispatch_offer_rec) link;
	struct rh_timer *timer;    /* expiry */
};
TAILQ_HEAD(dispatch_offer_list, dispatch_offer_rec);

struct dispatch_search {
	struct dispatch *d;
	struct dispatch_trip t;
	bool waiting, giving_up;
	bool pooled;                       /* batch: in the window being gathered */
	int radius_step, round;
	int64_t started, deadline;
	int64_t first_offer_at, waited_at; /* the first offer made, the demand queue entered; -1: not yet */
	struct uuid tried[DISPATCH_MAX_TRIED];
	int ntried;
	struct dispatch_offer_list offers; /* out for this trip, any state */
	int live;                          /* how many */
	struct rh_timer *timer;            /* the waiting trip's next look */
	TAILQ_ENTRY(dispatch_search) wait_link;
	TAILQ_ENTRY(dispatch_search) pool_link;
};
TAILQ_HEAD(dispatch_queue, dispatch_search);

/* What dispatch has seen its searches come to, for the rider's estimate:
 * means weighted 1/DISPATCH_STATS_WEIGHT to each new trip. */
#define DISPATCH_STATS_WEIGHT 20
struct dispatch_stats {
	double offer_to_match_ms; /* a trip's first offer to its MATCHED */
	double wait_to_match_ms;  /* entering the demand queue to MATCHED; < 0: none seen yet */
	double pickup_eta_s;      /* the matched offer's pickup ETA; < 0: none seen yet */
};

struct dispatch {
	const struct match_cfg *cfg;
	struct rh_timers *timers;
	struct dispatch_world w;
	struct umap searches; /* trip -> search */
	struct umap offers;   /* offer -> offer */
	struct umap offer_of; /* driver -> their offer */
	struct dispatch_queue waiting; /* the demand queue, oldest first */
	int nwaiting, nsearching;
	bool open;
	struct dispatch_batch *batch;  /* batch mode (match.mode), else NULL */
	struct dispatch_stats stats;
};

/* dispatch.c, for batch.c */
double dispatch_radius_max(const struct dispatch *d);
bool dispatch_tried(const struct dispatch_search *s, const struct uuid *driver);
/* Reserves c for s (an offer on its way); score goes with the trip's MATCHED. */
void dispatch_offer_make(struct dispatch_search *s, const struct dispatch_cand *c, double score);
void dispatch_wait_leave(struct dispatch_search *s);
void dispatch_wait_enter(struct dispatch_search *s, int64_t now);
void dispatch_give_up(struct dispatch_search *s);
/* The rider told how the search stands (progress), with the estimate. */
void dispatch_tell(struct dispatch_search *s, bool waiting, int64_t now);

/* batch.c */
struct dispatch_batch *dispatch_batch_new(struct dispatch *d);
void dispatch_batch_free(struct dispatch_batch *b);
/* s needs drivers: it joins the window being gathered (opening one). */
void dispatch_batch_add(struct dispatch_search *s, int64_t now);
/* s stopped: out of the window. */
void dispatch_batch_remove(struct dispatch_search *s);
/* A driver became free: the waiting trips within reach of them join the
 * window (the solver gives the driver to one of them, the older first when
 * the pickups are alike). */
void dispatch_batch_driver_free(struct dispatch *d, const struct uuid *driver, int64_t now);
/* When the window being gathered closes (monotonic ms), or -1. */
int64_t dispatch_batch_closes_at(const struct dispatch_batch *b);

#endif
