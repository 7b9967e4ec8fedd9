/* Inside src/share: the module's state and what its files share.
 *
 *   share.c   the memory of open trips and active bookings (as the database
 *             last answered), the stop list as sent, the start, setup
 *   lanes.c   changes to the database in batches, one lane per kind
 *   match.c   a pending booking into an open trip or a new one; the ends of
 *             bookings and trips
 *   api.c     REST: rate card, bookings, receipt, the rider's cancel
 *   driver.c  the WebSocket: the driver's commands (share.leg.update), the stop
 *             list and the rider's booking again when their app reconnects
 *   card.c, plan.c  the rate card and the insertion search (pure) */
#ifndef RH_SHARE_INTERNAL_H
#define RH_SHARE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/timer.h"
#include "core/umap.h"
#include "core/uuid.h"
#include "gateway/gateway.h"
#include "net/http.h"
#include "presence/presence.h"
#include "share/card.h"
#include "share/plan.h"
#include "share/share.h"
#include "store/db.h"

#define SHARE_KEY_MAX 255
#define SHARE_TRIES 4        /* a booking is matched again this often after a lost race */
#define SHARE_DRIVERS 8      /* drivers looked at for a new trip */

enum share_state { SB_PENDING, SB_CONFIRMED, SB_ARRIVED, SB_PICKED_UP, SB_DROPPED_OFF, SB_CANCELLED };
extern const char *const share_state_names[];

struct share_trip;

/* An active booking as the last answer of the database left it. */
struct share_booking {
	struct uuid id, rider;
	struct share_trip *trip; /* NULL while pending */
	enum share_state state;
	int seats;
	int64_t version;          /* the row's, as last answered */
	bool express;
	double plat, plng, dlat, dlng;
	double direct_s;
	int64_t requested_ms, picked_up_ms; /* wall */
	int tries;
	bool busy;                /* a change of it is at the database */
	struct share_booking *next_waiting;
};

struct share_trip_stop {
	struct share_booking *b;
	bool pickup;
};

struct share_trip {
	struct uuid id, driver;
	int64_t driver_version;
	int seats;
	int64_t stops_version;
	size_t nstops;
	struct share_trip_stop stops[SHARE_PLAN_MAX_STOPS];
	bool busy;                /* an insertion is at the database: others wait */
	bool closed;              /* finished while an insertion was out: freed when it is answered */
	struct share_booking *waiting;
};

/* What one share_*() call answered: its jsonb (NULL when the call failed:
 * err and unknown say how). */
struct share_reply {
	cJSON *a;
	rh_err err;
	bool unknown;
};
typedef void (*share_done_fn)(void *arg, const struct share_reply *r);

struct share_item {
	char *json;
	share_done_fn done;
	void *arg;
	struct share_item *next;
};

struct share_lane {
	struct share *s;
	const char *kind;
	struct share_item *head, **tail;
	int busy;                 /* batches (or items sent again alone) at the database */
	int max_out;              /* at most this many batches at once */
};

struct share {
	struct share_deps deps;
	const struct share_cfg *cfg;
	const struct tariff_cfg *tariff;
	int vehicle;
	struct share_card_key key;
	struct umap bookings, trips;
	struct umap by_rider;      /* the active booking of a rider (rider id -> booking) */
	struct gw_message_type leg_type;
	struct rh_timer *load_timer;
	struct rh_timer *defer_timer;  /* bookings waiting for the start's release of reservations */
	struct share_booking *deferred;
	struct share_lane lane_book, lane_confirm, lane_cancel, lane_leg;
	struct metric_family *f_match, *f_outcomes;
	struct metric_cell *c_match;
};


struct share_cancel_ctx {
	struct share *s;
	struct share_booking *b;  /* may be NULL: a rider's own cancel of a booking not in memory */
	struct http_req *req;
};


static inline int64_t share_now(const struct share *s)
{
	return rh_timers_now(s->deps.timers);
}

/* share.c */
void share_booking_forget(struct share *s, struct share_booking *b);
struct share_booking *share_booking_from(struct share *s, const cJSON *v);
void share_send_rider(struct share *s, const struct uuid *rider, const cJSON *view);
void share_send_stops(struct share *s, const struct share_trip *t);
char *share_stops_json(const struct share_trip *t, bool for_driver);
void share_trip_remove_stops(struct share_trip *t, const struct share_booking *b, bool pickup_only);
void share_view_strip(cJSON *v);

/* lanes.c */
cJSON *share_answer(const struct db_result *r, const char *what);
void share_lane_push(struct share_lane *l, const char *json, share_done_fn done, void *arg);
int share_status(const cJSON *a);
void share_lanes_init(struct share *s);

/* match.c */
/* A booking decided before it is written (share_decide: NULL when it
 * cannot be at once; else the decision is added to the booking's item),
 * then what its writing answered (share_decided: status, the booking's
 * view, the decision's own answer). b is the booking about to be written
 * (its id made here): the decision owns it from then on. */
struct share_decision;
struct share_decision *share_decide(struct share *s, struct share_booking *b, cJSON *item);
void share_decided(struct share *s, struct share_decision *d, int status, const cJSON *bv, const cJSON *decided);
void share_cancelled(void *arg, const struct share_reply *res);
void share_match(struct share *s, struct share_booking *b);
void share_match_waiting(struct share *s, struct share_booking **list);
void share_trip_finished(struct share *s, struct share_trip *t);

/* api.c */
void share_cancel_reply(struct http_req *req, const struct share_reply *res);
void share_api_init(struct share *s);

/* driver.c */
void share_driver_init(struct share *s);

#endif
