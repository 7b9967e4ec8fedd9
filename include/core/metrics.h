/* Metrics registry and Prometheus text exposition (format 0.0.4).
 *
 * A family (name, help, type, label names) owns its cells, one per label-value
 * tuple; cells never move, so hot paths look a cell up once and then bump
 * cell->value directly:
 *
 *     static const char *const lbl[] = { "reason", NULL };
 *     f = metrics_counter(m, "ridehail_gateway_rejected_total", "...", lbl);
 *     c = metric_cell(f, (const char *[]){ "invalid_json" });
 *     metric_inc(c);
 *
 * Values that are cheaper to read at scrape time than to keep current
 * (pool state, queue depth) are refreshed by a collector callback that runs
 * just before each exposition. */
#ifndef RH_CORE_METRICS_H
#define RH_CORE_METRICS_H

#include <stdint.h>

#include "core/strbuf.h"

enum metric_type { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM };

struct metric_cell {
	double value;        /* counter / gauge */
	uint64_t count;      /* histogram: observations */
	uint64_t *buckets;   /* histogram: per-bucket (not cumulative) counts */
};

struct metrics;
struct metric_family;

struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);

/* label_names: NULL-terminated, or NULL for none. Names must be unique. */
struct metric_family *metrics_counter(struct metrics *m, const char *name, const char *help,
				      const char *const *label_names);
struct metric_family *metrics_gauge(struct metrics *m, const char *name, const char *help,
				    const char *const *label_names);
/* bounds: ascending upper bounds (le), count n; +Inf is implicit. */
struct metric_family *metrics_histogram(struct metrics *m, const char *name, const char *help,
					const char *const *label_names, const double *bounds, int n);

/* The cell for these label values (as many as the family has names; NULL for
 * a family without labels). Created on first use; the pointer stays valid
 * until metrics_free. */
struct metric_cell *metric_cell(struct metric_family *f, const char *const *label_values);

static inline void metric_inc(struct metric_cell *c) { c->value += 1; }
static inline void metric_add(struct metric_cell *c, double v) { c->value += v; }
static inline void metric_set(struct metric_cell *c, double v) { c->value = v; }
void metric_observe(struct metric_family *f, struct metric_cell *c, double v);

typedef void (*metrics_collect_fn)(void *arg);
void metrics_on_collect(struct metrics *m, metrics_collect_fn fn, void *arg);

/* Runs the collectors, then writes every family into out. */
void metrics_expose(struct metrics *m, struct strbuf *out);

/* Latency buckets in seconds used by every *_seconds histogram. */
extern const double metrics_latency_bounds[];
extern const int metrics_latency_nbounds;

#endif
