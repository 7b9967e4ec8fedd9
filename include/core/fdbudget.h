/* The descriptor budget: how many client sockets the open-file limit
 * leaves once the daemon's own descriptors are set aside (the database
 * pool, NATS connections, webhook deliveries, the log, the listener and the
 * loop's own, the map while it loads, and the spare the HTTP server keeps
 * to refuse clients politely when descriptors run out). The connection caps
 * derive from it, so that clients alone can never exhaust the limit: past
 * the cap they get 503, and the database, NATS and the log keep working.
 *
 * http.max_connections = 0 (the default) takes every client socket the
 * limit leaves; ws.max_connections = 0 nine tenths of that, so that drivers'
 * sockets never starve REST clients. A configured value the limit cannot
 * carry is lowered to what it can, with a warning saying what to raise. */
#ifndef RH_CORE_FDBUDGET_H
#define RH_CORE_FDBUDGET_H

#include <stdbool.h>
#include <stdint.h>

struct rh_config;

struct fd_budget {
	uint64_t nofile;      /* the soft open-file limit */
	uint64_t reserved;    /* descriptors set aside for the daemon's own use */
	int64_t clients;      /* client sockets the limit leaves (HTTP and WebSocket) */
	int64_t http_max;     /* effective http.max_connections */
	int64_t ws_max;       /* effective ws.max_connections */
	bool http_short;      /* the configured http.max_connections did not fit */
	bool ws_short;        /* the configured ws.max_connections did not fit */
};

/* Pure: the plan for a limit of `nofile` descriptors (UINT64_MAX: none). */
void fd_budget_plan(const struct rh_config *cfg, uint64_t nofile, struct fd_budget *out);
/* Raises the soft limit to the hard one, plans, writes the effective caps
 * into cfg and logs them (a warning when a configured cap did not fit). */
void fd_budget_apply(struct rh_config *cfg, struct fd_budget *out);

/* Client sockets over the cap still get a 503 before they are closed: up
 * to this many at once, counted in the reserve. */
#define FD_BUDGET_REJECT_SLACK 64

#endif
