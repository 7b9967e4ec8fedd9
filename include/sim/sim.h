/* The simulator's pure parts, free of I/O on the network so the unit tests
 * can check them alone: demand (CSV replay with a bounding box and time
 * compression, uniform and hot-spot generators), movement along a polyline
 * (a road route or a straight line), and the report's arithmetic.
 *
 * Units: seconds of simulated time, metres, WGS 84 degrees. Ownership: each
 * struct owns its arrays; _fini frees them. */
#ifndef RH_SIM_SIM_H
#define RH_SIM_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/err.h"

/* ------------------------------------------------------------ randomness */

/* splitmix64: one stream per purpose (demand, each driver, each rider), so
 * one seed gives the same demand and the same decisions whatever the order
 * in which the network delivers answers. */
struct sim_rng {
	uint64_t s;
};
void sim_rng_seed(struct sim_rng *r, uint64_t seed, uint64_t stream);
uint64_t sim_rng_next(struct sim_rng *r);
double sim_rng_unit(struct sim_rng *r);            /* [0, 1) */
double sim_rng_exp(struct sim_rng *r, double mean); /* exponential */
double sim_rng_range(struct sim_rng *r, double lo, double hi);

/* ------------------------------------------------------------ demand */

struct sim_bbox {
	double min_lat, min_lon, max_lat, max_lon;
};

/* The box shrunk by margin_m on every side (points kept a little inside the
 * map, so they snap to a road of it). */
struct sim_bbox sim_bbox_shrink(struct sim_bbox b, double margin_m);
bool sim_bbox_contains(const struct sim_bbox *b, double lat, double lon);
/* Moves (lat, lon) to the nearest point of the box (a no-op inside it). */
void sim_bbox_clamp(const struct sim_bbox *b, double *lat, double *lon);
/* "min_lon,min_lat,max_lon,max_lat" (the GeoJSON order). */
bool sim_bbox_parse(const char *s, struct sim_bbox *out);

struct sim_request {
	double t_s;               /* simulated seconds from the start of the run */
	double plat, plon;        /* pickup */
	bool has_dropoff;
	double dlat, dlon;
};

struct sim_demand {
	struct sim_request *req;
	size_t n, cap;
	size_t rows_read, rows_outside, rows_outside_window, rows_bad; /* CSV counts */
	int64_t window_start;     /* epoch seconds of t_s = 0 (a replay) */
};

struct sim_replay_opts {
	struct sim_bbox box;      /* rows outside are dropped */
	bool use_box;
	int64_t start;            /* epoch seconds; < 0: the first row's time */
	double window_s;          /* CSV seconds kept from start; <= 0: all */
	double compress;          /* CSV seconds per simulated second (>= 1 speeds up) */
	bool need_time;           /* false: an origin-destination file, times ignored */
};

void sim_demand_init(struct sim_demand *d);
void sim_demand_fini(struct sim_demand *d);
void sim_demand_add(struct sim_demand *d, const struct sim_request *r);

/* Reads a CSV with a header naming its columns: a time (Date/Time, time,
 * pickup_datetime, tpep_pickup_datetime: "2014/4/1 00:11:00",
 * "2014-04-01 00:11:00" or seconds), the pickup (Lat/Lon, pickup_lat/
 * pickup_lon, pickup_latitude/pickup_longitude) and optionally the dropoff
 * (dropoff_lat/dropoff_lon, dropoff_latitude/dropoff_longitude). A row with
 * a dropoff outside the box loses its dropoff (the pickup is what counts).
 * RH_EINVAL (message in err) when a required column is missing; RH_EIO when
 * the file cannot be read. */
rh_err sim_demand_load_csv(const char *path, const struct sim_replay_opts *o, struct sim_demand *out, char *err,
			   size_t errlen) RH_MUST_CHECK;
/* The same from text in memory (tests). */
rh_err sim_demand_parse_csv(const char *text, size_t len, const struct sim_replay_opts *o, struct sim_demand *out,
			    char *err, size_t errlen) RH_MUST_CHECK;
/* "2014/4/30 18:05:00" and friends into epoch seconds (UTC); false if not one. */
bool sim_parse_time(const char *s, int64_t *out);

/* Demand models: requests over [0, duration_s) at rate_per_h (Poisson),
 * uniform in the box or around k hot spots (a Gaussian of sigma_m each, the
 * spots drawn uniformly in the box); dropoffs uniform in the box. */
void sim_demand_uniform(struct sim_demand *d, struct sim_rng *r, const struct sim_bbox *box, double duration_s,
			double rate_per_h);
void sim_demand_hotspots(struct sim_demand *d, struct sim_rng *r, const struct sim_bbox *box, double duration_s,
			 double rate_per_h, int k, double sigma_m);
/* Each request copied (mult - 1) more times, moved by up to jitter_s and
 * jitter_m (demand at mult times the recorded level). */
void sim_demand_multiply(struct sim_demand *d, struct sim_rng *r, int mult, double jitter_s, double jitter_m);
/* Gives every request without a dropoff one from od (origin-destination
 * pairs): the destination of one of the 5 pairs whose origin is nearest the
 * pickup, chosen at random. Does nothing when od is empty. */
void sim_demand_fill_dropoffs(struct sim_demand *d, const struct sim_demand *od, struct sim_rng *r);

/* ------------------------------------------------------------ movement */

struct sim_path {
	size_t n, cap;
	double *lat, *lon;
	double *cum;              /* metres from the first point */
};

void sim_path_init(struct sim_path *p);
void sim_path_fini(struct sim_path *p);
void sim_path_clear(struct sim_path *p);
void sim_path_add(struct sim_path *p, double lat, double lon);
double sim_path_length(const struct sim_path *p);
/* The point d metres along (clamped to the ends) and the heading there
 * (degrees clockwise from north, 0..360). */
void sim_path_at(const struct sim_path *p, double d, double *lat, double *lon, double *heading);

double sim_dist_m(double lat1, double lon1, double lat2, double lon2);

/* ------------------------------------------------------------ report */

enum sim_outcome {
	SIM_OUT_PENDING = 0,      /* still open when the run ended */
	SIM_OUT_NO_QUOTE,         /* GET /v1/estimate refused (point off the map...) */
	SIM_OUT_REFUSED,          /* POST /v1/rides refused (503 no drivers, 409, 429) */
	SIM_OUT_NO_RIDER,         /* every simulated rider was busy */
	SIM_OUT_COMPLETED,
	SIM_OUT_CANCELLED,
	SIM_OUT_DECLINED,         /* the rider walked away from a surged quote */
};

/* One rider request, times in simulated seconds, < 0 when not reached. */
struct sim_trip_rec {
	double t_request, t_created, t_matched, t_arrived, t_started, t_completed, t_cancelled;
	enum sim_outcome outcome;
	char cancel_reason[48];   /* "<by>:<reason>" */
	double plat, plon;
	bool shared;              /* booked as a shared ride (t_created: 202, t_matched: confirmed,
				   * t_started: picked_up, t_completed: dropped_off) */
	double direct_s, direct_km; /* the pickup to the dropoff alone, as the simulated car drives it; 0 unknown */
};

struct sim_driver_acc {
	double online_s, busy_s;  /* busy: from matched to completed or cancelled */
	double idle_km, deadhead_km, trip_km;
	double reposition_km;     /* driven idle towards a reposition suggestion */
	int offers, accepts, declines, timeouts, withdrawn, trips;
};

#define SIM_MAX_REASONS 12

struct sim_report {
	int requests, no_quote, refused, no_rider, created, matched, arrived, completed, cancelled, pending;
	int declined;             /* surged quotes a price-sensitive rider walked away from */
	double matched_pct;       /* matched / created */
	int nreasons;
	char reason[SIM_MAX_REASONS][48];
	int reason_count[SIM_MAX_REASONS];
	double ttm_p50, ttm_p95, ttm_p99;       /* created -> matched, s */
	double wait_p50, wait_p95;              /* created -> driver arrived, s */
	double wait_mean;                        /* the same, mean over completed trips */
	double completed_pct;                    /* completed / requests */
	double trip_p50, trip_p95, trip_mean;   /* started -> completed, s */
	double utilisation;                      /* sum busy / sum online */
	double idle_km, deadhead_km, trip_km, reposition_km;
	double deadhead_km_per_trip;             /* (deadhead + reposition km) / completed */
	int offers, accepts, declines, timeouts, withdrawn;
	double offers_per_match;
	int protocol_errors, invariant_breaches;
};

/* Nearest-rank percentile (p in 0..100) of v[0..n), sorted in place; 0 when n = 0. */
double sim_percentile(double *v, size_t n, double p);
void sim_report_compute(const struct sim_trip_rec *t, size_t nt, const struct sim_driver_acc *d, size_t nd,
			int protocol_errors, int invariant_breaches, struct sim_report *out);
void sim_report_write_json(const struct sim_report *r, FILE *f, const char *extra_members);

/* Shared rides against the trips the fleet drove (docs/simulator.md,
 * "Shared rides"). */
struct sim_share_figs {
	int booked, confirmed, dropped_off, cancelled;
	double pkm;               /* sum of direct_km over completed trips, shared or not */
	double vkm_per_pkm;       /* vkm / pkm */
	double detour_p50, detour_p95, detour_max; /* shared riders: ride / direct - 1, in % */
	double wait_p50, wait_p95;                 /* shared riders: booked -> the car at the pickup, s */
};
/* vkm: the kilometres the fleet drove serving (to pickups, with riders, to
 * suggested cells). */
void sim_share_compute(const struct sim_trip_rec *t, size_t nt, double vkm, struct sim_share_figs *out);

/* What the written summary needs beyond the figures. */
struct sim_text_ctx {
	int drivers;
	double duration_s;        /* simulated seconds of demand */
	double compress;          /* a replay's CSV seconds per simulated second (1: real time) */
	bool replay;
};
/* A short written summary (summary.txt): what was served, the waits, the
 * fleet's utilisation, a one-line reading of them and which plot shows what. */
void sim_report_write_text(const struct sim_report *r, const struct sim_text_ctx *c, FILE *f);

#endif
