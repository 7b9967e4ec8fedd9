/* The console's figures: durations and outcomes over a sliding window, in a
 * ring that forgets the oldest when full. Pure: the time is passed in. */
#include <stdlib.h>
#include <string.h>

#include "console/console.h"
#include "core/alloc.h"

void console_samples_init(struct console_samples *s, size_t cap)
{
	memset(s, 0, sizeof *s);
	s->cap = cap ? cap : 1;
	s->at = rh_calloc(s->cap, sizeof *s->at);
	s->value = rh_calloc(s->cap, sizeof *s->value);
}

void console_samples_fini(struct console_samples *s)
{
	rh_free(s->at);
	rh_free(s->value);
	memset(s, 0, sizeof *s);
}

void console_samples_add(struct console_samples *s, int64_t at, int64_t value)
{
	if (s->n == s->cap) { /* full: the oldest goes */
		s->head = (s->head + 1) % s->cap;
		s->n--;
	}
	size_t i = (s->head + s->n) % s->cap;
	s->at[i] = at;
	s->value[i] = value;
	s->n++;
}

/* Samples are added in time order, so the old ones are at the head. */
static void console_samples_expire(struct console_samples *s, int64_t now, int64_t window_ms)
{
	while (s->n && s->at[s->head] < now - window_ms) {
		s->head = (s->head + 1) % s->cap;
		s->n--;
	}
}

static int console_i64_cmp(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

bool console_samples_pct(struct console_samples *s, int64_t now, int64_t window_ms, size_t *n, int64_t *p50,
			 int64_t *p95)
{
	console_samples_expire(s, now, window_ms);
	*n = s->n;
	if (!s->n)
		return false;
	int64_t *v = rh_malloc(s->n * sizeof *v);
	for (size_t i = 0; i < s->n; i++)
		v[i] = s->value[(s->head + i) % s->cap];
	qsort(v, s->n, sizeof *v, console_i64_cmp);
	/* nearest rank: the smallest value with at least p% of them at or below it */
	size_t r50 = (s->n * 50 + 99) / 100, r95 = (s->n * 95 + 99) / 100;
	*p50 = v[(r50 ? r50 : 1) - 1];
	*p95 = v[(r95 ? r95 : 1) - 1];
	rh_free(v);
	return true;
}

bool console_samples_mean(struct console_samples *s, int64_t now, int64_t window_ms, size_t *n, double *mean)
{
	console_samples_expire(s, now, window_ms);
	*n = s->n;
	if (!s->n)
		return false;
	double sum = 0;
	for (size_t i = 0; i < s->n; i++)
		sum += (double)s->value[(s->head + i) % s->cap];
	*mean = sum / (double)s->n;
	return true;
}
