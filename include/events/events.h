/* The outbox relay: committed outbox rows (sql/005, sql/006) published in
 * order to NATS JetStream, one subject per event type
 * (<events.subject_prefix>.<event_type>), with the event_id as the message
 * id so that JetStream drops a re-publish. A row is marked published only
 * once JetStream has acknowledged it.
 *
 * The relay's control lives on the event loop: claiming a batch of rows
 * (which renews the relay lease, so daemons sharing a database never publish
 * at once), marking the acknowledged rows, backoff, metrics. Everything that
 * talks to NATS — connecting, creating the stream, publishing the batch and
 * waiting for its acks — runs as one job at a time on the relay's own worker
 * thread (core/worker.h), because libnats' connect, stream management and ack
 * delivery block or call back on threads of their own. The loop therefore
 * never waits for NATS, and a NATS outage only makes the outbox wait. */
#ifndef RH_EVENTS_EVENTS_H
#define RH_EVENTS_EVENTS_H

#include <stdbool.h>

struct event_base;
struct metrics;
struct db;
struct events_cfg;
struct webhooks_cfg;
struct events;
struct rh_config;

struct events_deps {
	struct event_base *base;
	struct metrics *metrics;
	struct db *db;
	const struct events_cfg *cfg;
	const struct webhooks_cfg *webhooks;
};
struct events *events_new(const struct events_deps *d);
/* Shutdown, before the database closes: no new batch; the lease is given up. */
void events_stop(struct events *ev);
void events_free(struct events *ev);

/* `ridehaild events tail [--subject S] [--all] [--count N] [--idle-exit D]`:
 * a JetStream consumer printing each event as one JSON line. */
int events_cli(const struct rh_config *cfg, int argc, char **argv);

#endif
