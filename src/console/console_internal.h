/* Inside src/console: what the files share.
 *
 *   console.c  the feed: subscriptions, the update built once per interval
 *   figures.c  the figures' samples (pure)
 *   files.c    the page's static files, compiled in, at /console */
#ifndef RH_CONSOLE_INTERNAL_H
#define RH_CONSOLE_INTERNAL_H

#include <stddef.h>

struct http_server;

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

#endif
