/* Inside src/console: what the files share.
 *
 *   console.c  the feed: subscriptions, the update built once per interval
 *   figures.c  the figures' samples (pure)
 *   files.c    the page's static files, compiled in, at /console
 *   bookings.c POST /v1/dispatch/riders: the rider named by a phone number
 *   reports.c  GET /v1/admin/reports/{daily,drivers}.csv */
#ifndef RH_CONSOLE_INTERNAL_H
#define RH_CONSOLE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

struct http_server;
struct db;
struct auth;

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

#endif
