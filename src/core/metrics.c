#include "core/metrics.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"

#define METRICS_MAX_LABELS 4

struct metrics_cell_entry {
	struct metric_cell cell;
	char *labels[METRICS_MAX_LABELS];
	struct metrics_cell_entry *next;
};

struct metric_family {
	enum metric_type type;
	char *name, *help;
	int nlabels;
	char *label_names[METRICS_MAX_LABELS];
	double *bounds;
	int nbounds;
	struct metrics_cell_entry *cells, **tail;
	struct metric_family *next;
};

struct metrics_collector {
	metrics_collect_fn fn;
	void *arg;
	struct metrics_collector *next;
};

struct metrics {
	struct metric_family *families, **tail;
	struct metrics_collector *collectors;
};

const double metrics_latency_bounds[] = {
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};
const int metrics_latency_nbounds = (int)RH_ARRAY_LEN(metrics_latency_bounds);

struct metrics *metrics_new(void)
{
	struct metrics *m = RH_NEW(struct metrics);
	m->tail = &m->families;
	return m;
}

void metrics_free(struct metrics *m)
{
	if (!m)
		return;
	struct metric_family *f = m->families;
	while (f) {
		struct metric_family *fn = f->next;
		struct metrics_cell_entry *c = f->cells;
		while (c) {
			struct metrics_cell_entry *cn = c->next;
			for (int i = 0; i < f->nlabels; i++)
				rh_free(c->labels[i]);
			rh_free(c->cell.buckets);
			rh_free(c);
			c = cn;
		}
		for (int i = 0; i < f->nlabels; i++)
			rh_free(f->label_names[i]);
		rh_free(f->name);
		rh_free(f->help);
		rh_free(f->bounds);
		rh_free(f);
		f = fn;
	}
	struct metrics_collector *c = m->collectors;
	while (c) {
		struct metrics_collector *cn = c->next;
		rh_free(c);
		c = cn;
	}
	rh_free(m);
}

static struct metric_family *metrics_family_new(struct metrics *m, enum metric_type type, const char *name,
					const char *help, const char *const *label_names)
{
	struct metric_family *f = RH_NEW(struct metric_family);
	f->type = type;
	f->name = rh_strdup(name);
	f->help = rh_strdup(help);
	for (int i = 0; label_names && label_names[i] && i < METRICS_MAX_LABELS; i++)
		f->label_names[f->nlabels++] = rh_strdup(label_names[i]);
	f->tail = &f->cells;
	*m->tail = f;
	m->tail = &f->next;
	return f;
}

struct metric_family *metrics_counter(struct metrics *m, const char *name, const char *help,
				      const char *const *label_names)
{
	return metrics_family_new(m, METRIC_COUNTER, name, help, label_names);
}

struct metric_family *metrics_gauge(struct metrics *m, const char *name, const char *help,
				    const char *const *label_names)
{
	return metrics_family_new(m, METRIC_GAUGE, name, help, label_names);
}

struct metric_family *metrics_histogram(struct metrics *m, const char *name, const char *help,
					const char *const *label_names, const double *bounds, int n)
{
	struct metric_family *f = metrics_family_new(m, METRIC_HISTOGRAM, name, help, label_names);
	f->bounds = rh_malloc(sizeof(double) * (size_t)n);
	memcpy(f->bounds, bounds, sizeof(double) * (size_t)n);
	f->nbounds = n;
	return f;
}

struct metric_cell *metric_cell(struct metric_family *f, const char *const *label_values)
{
	for (struct metrics_cell_entry *c = f->cells; c; c = c->next) {
		int i = 0;
		while (i < f->nlabels && strcmp(c->labels[i], label_values[i]) == 0)
			i++;
		if (i == f->nlabels)
			return &c->cell;
	}
	struct metrics_cell_entry *c = RH_NEW(struct metrics_cell_entry);
	for (int i = 0; i < f->nlabels; i++)
		c->labels[i] = rh_strdup(label_values[i]);
	if (f->type == METRIC_HISTOGRAM)
		c->cell.buckets = rh_calloc((size_t)f->nbounds + 1, sizeof(uint64_t));
	*f->tail = c;
	f->tail = &c->next;
	return &c->cell;
}

void metric_observe(struct metric_family *f, struct metric_cell *c, double v)
{
	int i = 0;
	while (i < f->nbounds && v > f->bounds[i])
		i++;
	c->buckets[i]++;
	c->count++;
	c->value += v; /* the sum */
}

void metrics_on_collect(struct metrics *m, metrics_collect_fn fn, void *arg)
{
	struct metrics_collector *c = RH_NEW(struct metrics_collector);
	c->fn = fn;
	c->arg = arg;
	c->next = m->collectors;
	m->collectors = c;
}

static void metrics_put_escaped(struct strbuf *out, const char *s, bool label)
{
	for (; *s; s++) {
		if (*s == '\\')
			sb_puts(out, "\\\\");
		else if (*s == '\n')
			sb_puts(out, "\\n");
		else if (label && *s == '"')
			sb_puts(out, "\\\"");
		else
			sb_putc(out, *s);
	}
}

static void metrics_put_value(struct strbuf *out, double v)
{
	if (isnan(v))
		sb_puts(out, "NaN");
	else if (isinf(v))
		sb_puts(out, v > 0 ? "+Inf" : "-Inf");
	else if (v == floor(v) && fabs(v) < 1e15)
		sb_printf(out, "%.0f", v);
	else
		sb_printf(out, "%.9g", v);
}

/* {a="x",b="y"[,extra]} or nothing when there is no label at all. */
static void metrics_put_labels(struct strbuf *out, const struct metric_family *f, const struct metrics_cell_entry *c,
		       const char *extra_name, const char *extra_value)
{
	if (f->nlabels == 0 && !extra_name)
		return;
	sb_putc(out, '{');
	for (int i = 0; i < f->nlabels; i++) {
		sb_printf(out, "%s%s=\"", i ? "," : "", f->label_names[i]);
		metrics_put_escaped(out, c->labels[i], true);
		sb_putc(out, '"');
	}
	if (extra_name)
		sb_printf(out, "%s%s=\"%s\"", f->nlabels ? "," : "", extra_name, extra_value);
	sb_putc(out, '}');
}

void metrics_expose(struct metrics *m, struct strbuf *out)
{
	static const char *type_names[] = { "counter", "gauge", "histogram" };
	for (struct metrics_collector *c = m->collectors; c; c = c->next)
		c->fn(c->arg);
	for (struct metric_family *f = m->families; f; f = f->next) {
		sb_printf(out, "# HELP %s ", f->name);
		metrics_put_escaped(out, f->help, false);
		sb_printf(out, "\n# TYPE %s %s\n", f->name, type_names[f->type]);
		for (struct metrics_cell_entry *c = f->cells; c; c = c->next) {
			if (f->type != METRIC_HISTOGRAM) {
				sb_puts(out, f->name);
				metrics_put_labels(out, f, c, NULL, NULL);
				sb_putc(out, ' ');
				metrics_put_value(out, c->cell.value);
				sb_putc(out, '\n');
				continue;
			}
			uint64_t cum = 0;
			for (int i = 0; i <= f->nbounds; i++) {
				char le[32];
				cum += c->cell.buckets[i];
				if (i < f->nbounds)
					snprintf(le, sizeof le, "%g", f->bounds[i]);
				else
					snprintf(le, sizeof le, "+Inf");
				sb_printf(out, "%s_bucket", f->name);
				metrics_put_labels(out, f, c, "le", le);
				sb_printf(out, " %llu\n", (unsigned long long)cum);
			}
			sb_printf(out, "%s_sum", f->name);
			metrics_put_labels(out, f, c, NULL, NULL);
			sb_putc(out, ' ');
			metrics_put_value(out, c->cell.value);
			sb_printf(out, "\n%s_count", f->name);
			metrics_put_labels(out, f, c, NULL, NULL);
			sb_printf(out, " %llu\n", (unsigned long long)c->cell.count);
		}
	}
}
