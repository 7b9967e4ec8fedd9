/* Inside src/console: what the files share.
 *
 *   console.c  the feed: subscriptions, the update built once per interval
 *   figures.c  the figures' samples (pure)
 *   files.c    the page's static files, compiled in, at /console
 *   bookings.c POST /v1/dispatch/riders: the rider named by a phone number
 *   reports.c  GET /v1/admin/reports/{daily,drivers}.csv
 *   alerts.c   the alerts: judged with hysteresis, written as outbox events */
#ifndef RH_CONSOLE_INTERNAL_H
#define RH_CONSOLE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/uuid.h"

struct http_server;
struct db;
struct auth;
struct metrics;
struct metric_cell;
struct strbuf;

/* One update's payload at most (the gateway's envelope adds a little). */
#define CONSOLE_FRAME_MAX (1000u * 1000u)

/* build-aux/console_files.py's output: terminated by name NULL. */
struct console_file {
	const char *name, *type;
	const unsigned char *data;
	size_t len;
	const char *etag;
};
extern const struct console_file console_files[];

void console_files_init(struct http_server *http);

/* The database-backed endpoints: bookings.c, reports.c. */
struct console_bookings {
	struct http_server *http;
	struct db *db;
	struct auth *auth;
	int64_t (*wall_ms)(void);
	const char *currency; /* of the report's days without trips */
};
void console_bookings_init(struct console_bookings *b);
void console_reports_init(struct console_bookings *b);

/* ------------------------------------------------------------ alerts.c */

enum console_alert { CONSOLE_ALERT_REQUEST_WAIT, CONSOLE_ALERT_MATCH_RATE, CONSOLE_ALERT_DATABASE, CONSOLE_ALERTS };
extern const char *const console_alert_names[CONSOLE_ALERTS];

/* An alert.raised or alert.cleared waiting to be written. */
struct console_alert_event {
	enum console_alert alert;
	bool cleared;
	struct uuid id; /* the raise's: the events' aggregate */
	int64_t at;     /* wall ms it happened */
	char detail[192];
};
#define CONSOLE_ALERT_QUEUE 64

struct console_alerts {
	struct db *db; /* NULL: no events, only the feed and the log */
	int64_t clear_after_ms;
	int64_t since[CONSOLE_ALERTS];      /* wall ms raised; 0: not raised */
	int64_t calm_since[CONSOLE_ALERTS]; /* monotonic ms the cause went (raised only); 0: present */
	int64_t calm_wall[CONSOLE_ALERTS];  /* the same, wall clock: the clear's time */
	struct uuid id[CONSOLE_ALERTS];
	char detail[CONSOLE_ALERTS][192];
	struct console_alert_event queue[CONSOLE_ALERT_QUEUE];
	size_t qhead, nqueued;
	bool writing, orphaned;
	struct metric_cell *m_raised[CONSOLE_ALERTS], *m_active[CONSOLE_ALERTS], *m_written;
};
struct console_alerts *console_alerts_new(struct db *db, struct metrics *m, int64_t clear_after_ms);
void console_alerts_free(struct console_alerts *al);
/* One alert against its cause now (clocks passed in: wall for what is
 * shown and written, monotonic for the hysteresis). */
void console_alerts_judge(struct console_alerts *al, enum console_alert a, bool cause, int64_t wall, int64_t mono,
			  const char *detail);
/* Writes the waiting events, one at a time, in order. */
void console_alerts_flush(struct console_alerts *al);
/* ,"alerts":[...] of console.update. */
void console_alerts_put(const struct console_alerts *al, struct strbuf *sb);

#endif
