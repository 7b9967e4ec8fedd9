/* The daemon's configuration as C structs: one struct per [section]. The
 * table that fills them (names, defaults, ranges, help) is
 * src/core/config_table.c; keep the two in step. Durations are int64_t
 * milliseconds, sizes int64_t bytes. */
#ifndef RH_CORE_SETTINGS_H
#define RH_CORE_SETTINGS_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "core/config.h"

struct server_cfg {
	int64_t shutdown_timeout_ms; /* in-flight work gets this long after SIGTERM */
	char *pid_file;
};

struct log_cfg {
	int level;  /* enum log_level */
	int format; /* enum log_format */
	char *file;
};

struct http_cfg {
	char *listen;
	int64_t backlog;
	int64_t max_connections;  /* 0: derived from the open-file limit (core/fdbudget.h) */
	int64_t max_connections_per_address; /* 0: none */
	int64_t max_header_size;  /* request line + headers, bytes */
	int64_t max_body_size;    /* bytes */
	int64_t request_timeout_ms; /* to receive one whole request */
	int64_t header_timeout_ms;  /* to receive its line and headers (< request_timeout) */
	int64_t idle_timeout_ms;  /* keep-alive connection with no request */
	int64_t max_requests_per_conn;
	char *trusted_proxies;    /* core/proxy.h list: X-Forwarded-For believed from these */
};

struct database_cfg {
	char *url;
	int64_t pool_size;
	int64_t connect_timeout_ms;
	int64_t query_timeout_ms;   /* queued + running; past it the caller gets RH_EDB */
	int64_t statement_timeout_ms; /* sent to the server as statement_timeout */
	int64_t reconnect_max_ms;   /* cap of the exponential reconnect backoff */
	int64_t queue_max;          /* queries waiting for a connection */
	int64_t pipeline_depth;     /* queries in flight per connection */
	bool migrate;               /* apply sql/ migrations at start */
};

struct admin_cfg {
	char *token; /* bearer credential for /v1/admin/...; empty: admin API off */
};

struct auth_cfg {
	char *jwt_secret;            /* HS256 key; empty: a random one per process (tokens die with it) */
	int64_t token_ttl_ms;
	int64_t leeway_ms;           /* clock skew tolerated on exp/iat */
	int64_t password_opslimit;   /* argon2id passes (crypto_pwhash) */
	int64_t password_memlimit;   /* argon2id memory, bytes */
	int64_t hash_threads;        /* worker threads for password hashing */
	int64_t hash_queue_max;      /* hashing jobs waiting; past it: 503 */
	double login_per_account;    /* attempts per minute per account */
	double login_per_address;    /* attempts per minute per client address */
	double signup_per_address;   /* rider sign-ups per minute per address */
	bool rider_signup;           /* POST /v1/riders open to the public */
};

struct ws_cfg {
	int64_t max_connections;  /* 0: derived (core/fdbudget.h) */
	int64_t max_frame_size;   /* bytes of one frame's payload */
	int64_t max_message_size; /* bytes of one message, all fragments */
	int64_t max_output;       /* unsent bytes before a slow reader is dropped */
	int64_t ping_interval_ms;
	int64_t idle_timeout_ms;
	int64_t close_timeout_ms;
	int64_t max_rejections;   /* rejected messages per minute before the connection is closed */
	double max_messages_per_s; /* data frames per connection, sustained... */
	int64_t max_message_burst; /* ...and at once */
	double max_pings_per_s;    /* ping and pong frames per connection (bursts of 4x) */
	bool echo;                /* test-only: GET /v1/ws/echo echoes every message, no token */
};

struct presence_cfg {
	int64_t stale_after_ms;       /* no ping for this long: not offered, not shown */
	int64_t evict_after_ms;       /* ... and for this long: dropped from the grid, marked offline */
	int64_t grid_bits;            /* geohash bits of a grid cell */
	int64_t max_drivers;          /* driver records held in memory */
	double max_pings_per_s;       /* per driver; faster is throttled, then closed */
	int64_t flood_close_after_ms; /* throttled this long without pause: disconnected */
	int64_t max_clock_skew_ms;    /* a ping stamped further in the future is refused */
	int64_t max_ping_age_ms;      /* a ping stamped older than this is refused */
	int64_t ack_interval_ms;      /* 0: pings are not acknowledged */
	int64_t fuzz_m;               /* riders see positions moved by up to this */
	double gps_max_speed_kmh;     /* a fix implying more is not believed; 0: no check */
	int64_t gps_max_jump_m;       /* nor one farther than this from the one before */
	int64_t gps_recover_fixes;    /* consistent fixes in a row that end a suspicion */
	int64_t nearby_max_radius_m;
	int64_t nearby_max_limit;
	bool history;                 /* write location history at all */
	int64_t history_queue_max;    /* points held in memory waiting for the database */
	int64_t history_batch_max;    /* points per INSERT */
	int64_t history_flush_ms;     /* a batch at least this often */
	int64_t history_inflight_max; /* batches in flight at once */
	int64_t history_retention_ms; /* daily partitions older than this are dropped */
};

/* Roads (src/routing). Speeds are read at import (`ridehaild map import`)
 * and baked into the map file; map, metric and snap_max_distance at start. */
struct routing_cfg {
	char *map;                 /* prepared map file; empty: no routing */
	int metric;                /* enum: 0 fastest (time), 1 shortest (distance) */
	int64_t snap_max_distance_m;
	int64_t speed_motorway;    /* km/h, per highway class when no maxspeed */
	int64_t speed_trunk;
	int64_t speed_primary;
	int64_t speed_secondary;
	int64_t speed_tertiary;
	int64_t speed_unclassified;
	int64_t speed_residential;
	int64_t speed_living_street;
	int64_t speed_service;
	bool use_maxspeed;         /* maxspeed tags override the class speed */
};

/* One per vehicle type: [tariff.<type>]. The set of instances is the set of
 * vehicle types the operator runs. Money in minor units (cents). */
struct match_cfg {
	bool automatic;               /* false: trips wait for an operator's assignment */
	int64_t parallel_offers;      /* drivers offered a trip at once */
	struct cfg_list offer_timeouts; /* seconds an offer stands, per round (the last repeats) */
	struct cfg_list radius_steps; /* metres searched, widening when a ring is exhausted */
	int64_t max_search_ms;        /* a trip waits this long for a driver, then no_drivers */
	int64_t booking_max_wait_ms;  /* the same for an operator's booking */
	int64_t schedule_lead_ms;     /* a scheduled ride is searched this long before its time */
	int64_t candidates;           /* drivers looked at per search step */
	double weight_eta, weight_idle, weight_acceptance;
	int64_t waiting_retry_ms;     /* a waiting trip looks around again this often */
	int64_t meter_max_accuracy_m; /* pings less accurate than this are not metered */
	double meter_max_speed_kmh;   /* a jump implying more than this is not metered */
	int64_t replay_messages;      /* rider messages kept per trip for a reconnect */
	int mode;                     /* enum: 0 greedy, 1 batch (MATCH_MODE_*) */
	int64_t batch_window_ms;      /* batch: requests collected this long, then assigned together */
	bool reposition;              /* suggest idle drivers where demand exceeds supply */
	int64_t reposition_interval_ms;
	int64_t reposition_half_life_ms; /* recent demand's decay */
	int64_t reposition_cell_m;    /* side of a counting cell */
	int64_t reposition_radius_m;  /* farthest target from a driver */
};
enum { MATCH_MODE_GREEDY = 0, MATCH_MODE_BATCH = 1 };
struct tariff_cfg {
	char name[CFG_NAME_MAX];
	char *currency;
	int64_t base;
	int64_t per_km;
	int64_t per_min;
	int64_t minimum;
	int64_t booking_fee;
	int64_t seats;
	int64_t cancel_fee;  /* rider cancels after the grace period */
	int64_t no_show_fee; /* driver cancels after waiting past trip.no_show_wait */
	int64_t waiting_free_ms;  /* the driver waits at the pickup this long for free... */
	int64_t waiting_per_min;  /* ... then the rider pays this per minute */
};
struct pricing_cfg {
	int64_t quote_ttl_ms;       /* a quote is honoured this long */
	double detour_factor;       /* straight-line distance x this = road distance (no map) */
	double average_speed_kmh;   /* road distance / this = duration (no map) */
	int64_t quote_match_m;      /* a ride's pickup/dropoff may be this far from the quote's */
	int64_t eta_radius_m;       /* nearest available driver searched this far for the pickup ETA */
	char *timezone;             /* the tariffs' time-of-day bands are read in this zone (IANA name) */
};
/* Surge (src/pricing/surge.c, docs/pricing.md): demand and supply per
 * hexagonal cell, a piecewise multiplier of their ratio, smoothed. */
struct surge_cfg {
	bool enabled;                 /* false: every multiplier is 1 */
	int64_t interval_ms;          /* recomputed this often */
	int64_t window_ms;            /* demand: ride requests over this sliding window */
	double cell_area_km2;         /* hexagon area */
	double latitude;              /* reference latitude of the projection; 0: the first point seen, rounded */
	struct cfg_list curve_ratio;  /* demand/supply knots ... */
	struct cfg_list curve_multiplier; /* ... and the multiplier at each (linear between, flat past the ends) */
	double ema_alpha;             /* weight of the new raw value */
	double max_step;              /* largest change of a multiplier per recompute */
	int64_t min_dwell_ms;         /* a multiplier that moved holds this long before moving back */
	double cap;                   /* the multiplier's ceiling (the floor is 1) */
	double neighbour_max_diff;    /* adjacent cells differ by at most this */
	int64_t quote_ttl_ms;         /* a quote with a multiplier above 1 is honoured this long */
	int64_t event_min_interval_ms; /* surge.updated at most this often per cell */
	double event_min_change;      /* ... and only for a change at least this large */
	int64_t events_per_interval;  /* surge.updated rows written per recompute at most */
	int64_t max_cells;            /* cells tracked at once */
};
/* The payment hand-off (src/pricing/payments.c). */
struct payments_cfg {
	char *secret;                 /* HMAC-SHA-256 key of the provider's callbacks; empty: the endpoint is off */
	int64_t max_skew_ms;          /* a callback's Ridehail-Timestamp this far from now is refused */
	bool hold;                    /* riders with a failed payment get 402 until it is settled or cleared */
};
struct trip_cfg {
	int64_t cancel_grace_ms;    /* a rider cancels free this long after MATCHED */
	int64_t no_show_wait_ms;    /* a driver waiting this long at the pickup may cancel with a no-show fee */
	double fare_tolerance;      /* metered distance/time this far (fraction) from the estimate: metered fare, review */
	double rides_per_minute;    /* ride requests per rider (bursts of the same) */
	int64_t min_trip_m;         /* pickup and dropoff closer than this are refused */
	int64_t batch_max;          /* transitions committed together in one transaction */
	int64_t batch_lanes;        /* batches at the database at once (trips spread by id) */
	int64_t driver_lost_after_ms; /* a live trip's driver gone this long: flagged, may be ended */
	int64_t schedule_horizon_ms; /* a ride may be scheduled at most this far ahead */
};
#define TARIFF_MAX 16
/* Shared rides (src/share, docs/sharing.md). */
struct share_cfg {
	char *vehicle_type;         /* the tariff shared cars run on */
	double max_detour;          /* a rider's ride at most (1 + this) x their direct route */
	double express_detour;      /* the same for an express booking */
	int64_t max_wait_ms;        /* a pickup at most this long after the booking */
	int64_t rate_card_ttl_ms;   /* a rate card is honoured this long */
	double discount, express_premium, second_seat, corporate_discount; /* the rate card */
	int64_t search_radius_m;    /* open trips and drivers looked at around a pickup */
	double weight_detour, weight_fairness; /* the insertion score's weights */
};

/* The outbox relay (src/events): where committed events go. */
enum events_sink { EVENTS_SINK_NONE, EVENTS_SINK_NATS };
struct events_cfg {
	int sink;                   /* enum events_sink */
	char *url;                  /* nats://host:port[,...]; empty: the relay stays off */
	char *credentials;          /* file: .creds, user:password or a token; empty: none */
	char *subject_prefix;       /* <prefix>.<event_type> */
	char *stream;               /* JetStream stream, created if missing */
	int retention;              /* 0 limits, 1 interest, 2 workqueue */
	int storage;                /* 0 file, 1 memory */
	int64_t max_age_ms;         /* stream retention by age; 0: unlimited */
	int64_t duplicate_window_ms; /* JetStream de-duplication window */
	int64_t batch_size;         /* rows claimed and published at once */
	int64_t poll_interval_ms;   /* how often an idle relay looks for new rows */
	int64_t ack_timeout_ms;     /* a publish not acknowledged by then has failed */
	int64_t connect_timeout_ms;
	int64_t retry_min_ms;       /* backoff after a failure, doubling... */
	int64_t retry_max_ms;       /* ...up to this */
	int64_t lease_ttl_ms;       /* one relay among daemons sharing the database holds the lease */
	int64_t stats_interval_ms;  /* backlog metrics refresh */
	int64_t outbox_retention_ms; /* published rows older than this are deleted; 0: kept */
	int64_t prune_batch;        /* rows deleted per statement */
};
struct webhooks_cfg {
	char *urls;                 /* http:// endpoints, comma-separated; empty: no webhooks */
	char *secret;               /* HMAC-SHA-256 key of the signature */
	int64_t timeout_ms;         /* one delivery, connect to response */
	int64_t max_attempts;       /* failed deliveries before the dead letter */
	int64_t retry_min_ms;       /* redelivery delay, doubling... */
	int64_t retry_max_ms;       /* ...up to this */
};
/* The operator's console (src/console): its feed and its alerts. */
struct console_cfg {
	int64_t update_interval_ms;   /* one console.update per this */
	int64_t alert_request_wait_ms; /* a trip SEARCHING longer than this raises request_wait; 0: off */
	double alert_match_rate;      /* a match rate below this raises match_rate; 0: off */
	int64_t alert_min_outcomes;   /* ...once this many searches ended in the window */
};

struct rh_config {
	struct server_cfg server;
	struct log_cfg log;
	struct http_cfg http;
	struct database_cfg database;
	struct admin_cfg admin;
	struct auth_cfg auth;
	struct ws_cfg ws;
	struct presence_cfg presence;
	struct pricing_cfg pricing;
	struct surge_cfg surge;
	struct payments_cfg payments;
	struct trip_cfg trip;
	struct match_cfg match;
	struct share_cfg share;
	struct routing_cfg routing;
	struct events_cfg events;
	struct webhooks_cfg webhooks;
	struct console_cfg console;
	int ntariffs;
	struct tariff_cfg tariff[TARIFF_MAX];
};

/* The index of vehicle type `name` among n tariffs (its bit in vehicle
 * masks), or -1. */
static inline int tariff_find(const struct tariff_cfg *t, int n, const char *name)
{
	for (int i = 0; name && i < n; i++)
		if (strcmp(t[i].name, name) == 0)
			return i;
	return -1;
}
static inline int tariff_index(const struct rh_config *cfg, const char *name)
{
	return tariff_find(cfg->tariff, cfg->ntariffs, name);
}

#endif
