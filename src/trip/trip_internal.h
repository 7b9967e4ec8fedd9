/* Inside src/trip: the module's state and what its files share.
 *
 *   trip.c      the module, its listeners, changes in and results out
 *   batch.c     lanes: group commit of changes and of ride requests
 *   rides_api.c POST /v1/rides and the transitions over HTTP
 *   read_api.c  GET /v1/rides[/{id}[/receipt]] and ratings
 *   view.c      the database's trip row: typed, and as the API shows it */
#ifndef RH_TRIP_INTERNAL_H
#define RH_TRIP_INTERNAL_H

#include <cjson/cJSON.h>
#include <sys/queue.h>

#include "core/settings.h"
#include "core/umap.h"
#include "trip/trip.h"

struct db_stmt;
struct http_req;
struct metric_family;
struct metric_cell;
struct event;
struct tx_item;

/* ------------------------------------------------------------ batch.c */

/* The database's answer to one item of a batch: its status (as the SQL
 * functions answer: 200, 201, 404, 409, 422, 500; 503 when the database did
 * not answer) and its body (owned by the batch; NULL when there was none).
 * unknown: the batch was lost in flight and may have committed. */
struct tx_answer {
	int status;
	cJSON *body;
	bool unknown;
};
typedef void (*tx_done_fn)(struct trips *t, void *arg, struct tx_answer *a);

/* What a lane batches: changes (trip_transitions()) or ride requests
 * (trip_requests()). Both statements take the items as one JSON array and a
 * "safe" flag (item by item, one subtransaction each) and answer one row
 * (i, status, body) per item. */
struct tx_kind {
	const char *what; /* for the log */
	struct db_stmt *stmt;
};
extern const struct tx_kind trip_tx_changes, trip_tx_requests;

#define TRIP_LANES_MAX 8
struct tx_lane {
	struct trips *t;
	const struct tx_kind *kind;
	struct metric_family *f_batch; /* batch sizes */
	struct metric_cell *m_batch;
	struct metric_cell *m_reruns;  /* batches sent again item by item */
	TAILQ_HEAD(tx_queue, tx_item) queue;
	int queued;
	bool inflight;
	bool scheduled;
	struct event *flush_ev;
};

void trip_batch_init(struct trips *t);
void trip_batch_fini(struct trips *t);
/* Queues one item (json taken) on the lane of key (changes: the trip id;
 * requests: the rider), answered through done exactly once. */
void trip_batch_enqueue(struct trips *t, const struct tx_kind *kind, const char *key, char *json, tx_done_fn done,
			void *arg);

/* ------------------------------------------------------------ trip.c */

#define TRIP_LISTENERS_MAX 4

struct trips {
	struct trips_deps deps;
	const struct trip_cfg *cfg;
	struct tx_lane lanes[TRIP_LANES_MAX];  /* changes */
	struct tx_lane rlanes[TRIP_LANES_MAX]; /* ride requests */
	int nlanes;
	/* Batches at the database, both kinds: at most nlanes. Under load a
	 * lane waits for a free slot and its batch grows meanwhile, so the
	 * database runs as many batches at once as it has lanes, each as big
	 * as the load makes it, whichever kinds are busy. */
	int inflight;
	int next_lane; /* where the next free slot looks first (round robin) */
	struct trip_listener listeners[TRIP_LISTENERS_MAX];
	int nlisteners;
	struct trip_supply supply;
	struct umap *ended_while_loading; /* trips that ended while trips_load_active read */
	struct ratelimit *rl_rides;
	struct metric_family *f_transitions, *f_requests;
};

/* Tells every listener. */
void trip_notify(struct trips *t, const struct trip_event *e);
/* The typed parts of a database answer's body (reason, state, version...)
 * into res; the trip's row, if any, into *trip (trip_fini it). */
void trip_answer_read(struct tx_answer *a, struct trip_result *res, struct trip *trip);
/* The vehicle type's index in cfg.tariff, or -1. */
int trip_vehicle_index(const struct trips *t, const char *name);

/* ------------------------------------------------------------ the endpoints */

void trip_rides_api_init(struct trips *t);
void trip_read_api_init(struct trips *t);
/* A change's result as the HTTP reply (200 with the trip, or the problem). */
void trip_reply_result(struct http_req *req, const struct trip_result *res);
/* An id path parameter that must be a UUID, or a 404 (an id of another
 * shape names no trip). */
bool trip_id_or_reply(struct http_req *req, const char **id);

/* ------------------------------------------------------------ view.c */

/* Takes the trip_row out of an answer's body into *out. */
bool trip_from_answer(cJSON *body, struct trip *out);

#endif
