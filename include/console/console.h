/* The operator's console: the page at /console (static files compiled into
 * the daemon) and its live feed over the WebSocket.
 *
 * An operator's socket on /v1/ws sends console.subscribe; from then on it
 * gets console.update once per console interval: the drivers on the map that
 * moved or changed state since the last update (or left it), the open trips
 * that changed (or ended), and the figures (docs/console.md). Updates are
 * built once per interval for every console together: the feed's cost
 * grows with the drivers that moved, not with the consoles watching.
 *
 * State: the console owns what it last sent (drivers by presence slot, open
 * trips by id) and the figures' samples; it learns of trips as a trip
 * listener and asks presence for the drivers (presence_list). */
#ifndef RH_CONSOLE_CONSOLE_H
#define RH_CONSOLE_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rh_timers;
struct metrics;
struct http_server;
struct gateway;
struct presence;
struct trips;
struct trip_listener;
struct presence_cfg;
struct console_cfg;
struct db;
struct auth;
struct pricing;
struct share;

struct console_deps {
	struct rh_timers *timers;
	struct metrics *metrics;
	struct http_server *http;  /* NULL: no page */
	struct gateway *gateway;   /* NULL: no feed */
	struct presence *presence;
	struct db *db;             /* NULL: no bookings endpoint */
	struct auth *auth;
	struct pricing *pricing;   /* NULL: no surge cells on the map */
	struct share *share;       /* NULL: no shared bookings on the map */
	const struct presence_cfg *presence_cfg; /* stale_after: a driver silent this long is suspect */
	const struct console_cfg *cfg; /* the alerts' thresholds (NULL: no alerts but the database's) */
	int64_t interval_ms;       /* one update per this */
	int64_t window_ms;         /* the figures' samples span this */
	int64_t (*wall_ms)(void);  /* the wall clock (trip times are wall clock) */
	const char *currency;      /* the first tariff's: reports' days without trips */
};
struct console *console_new(const struct console_deps *d);
void console_free(struct console *c);
/* The console's ear on trips: add it with trips_listen(). */
void console_trip_listener(struct console *c, struct trip_listener *out);

/* A phone number as riders.phone keeps it (bookings.c): "+" and the digits,
 * spaces, dashes, dots and parentheses dropped; false unless 3 to 20 digits
 * with nothing else. */
bool console_phone_normalise(const char *in, char *out, size_t cap);

/* A UTC day "YYYY-MM-DD" as days since 1970-01-01 (reports.c); false
 * unless exactly that shape and a real date from 1970 on. */
bool console_day_parse(const char *s, int64_t *day);
void console_day_format(int64_t day, char out[11]);

/* ------------------------------------------------------------ figures
 * (console/figures.c: pure, clock passed in) */

/* Samples of one duration, kept window_ms: p50/p95 of those still in it. */
struct console_samples {
	int64_t *at, *value;
	size_t cap, head, n;
};
void console_samples_init(struct console_samples *s, size_t cap);
void console_samples_fini(struct console_samples *s);
void console_samples_add(struct console_samples *s, int64_t at, int64_t value);
/* Drops samples older than now - window_ms; *n the samples left; false when
 * none (p50, p95 untouched). Percentiles by nearest rank. */
bool console_samples_pct(struct console_samples *s, int64_t now, int64_t window_ms, size_t *n, int64_t *p50,
			 int64_t *p95);

/* The mean of the values still in the window (a share, when they are 0 or
 * 1); false when none. */
bool console_samples_mean(struct console_samples *s, int64_t now, int64_t window_ms, size_t *n, double *mean);

#endif
