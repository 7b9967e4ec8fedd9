/* LISTEN/NOTIFY: a connection of its own (the pool's are pipelined and
 * shared) that listens on a few channels and calls back on each
 * notification, on the event loop. (db_listen() in db.h listens on one
 * channel on one of the pool's connections; the pricing book and the
 * payment holds follow two channels, which it does not take yet.)
 *
 * The connection is made with the pool's settings (database.url,
 * connect_timeout) and made again, with a doubling backoff up to
 * database.reconnect_max, whenever it breaks. Notifications sent while it
 * was down are lost, so each time it is (again) listening `ready` runs: the
 * owner reads what it follows afresh then.
 *
 * Contract: callbacks run from the loop, never from inside db_listener_new();
 * the listener may be freed from inside one of its callbacks only by
 * scheduling (it is not: owners free it at shutdown). */
#ifndef RH_STORE_LISTEN_H
#define RH_STORE_LISTEN_H

#include <stdbool.h>

struct event_base;
struct database_cfg;
struct db_listener;

struct db_listen_hooks {
	/* A notification on one of the channels (payload "" when none). */
	void (*notify)(void *arg, const char *channel, const char *payload);
	/* Listening (at first, and again after a reconnect). */
	void (*ready)(void *arg);
	void *arg;
};

/* Listens on channels (NULL-terminated, at most 8, plain identifiers). */
struct db_listener *db_listener_new(struct event_base *base, const struct database_cfg *cfg, const char *const *channels,
			      const struct db_listen_hooks *h);
bool db_listener_listening(const struct db_listener *l);
void db_listener_free(struct db_listener *l);

#endif
