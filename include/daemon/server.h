/* The server: one struct holding the configuration, the event loop, the
 * metrics registry and every module's root (no other mutable globals). It
 * owns the lifecycle: start, signals, graceful shutdown. */
#ifndef RH_CORE_SERVER_H
#define RH_CORE_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/err.h"
#include "core/settings.h"

struct event_base;
struct event;
struct rh_timers;
struct metrics;
struct http_server;
struct db;
struct health;
struct auth;
struct gateway;
struct presence;
struct share;
struct pricing;
struct trips;
struct matcher;
struct routing;
struct routing_api;
struct events;

struct server {
	struct rh_config cfg;
	const char *config_path;
	struct event_base *base;
	struct rh_timers *timers;   /* the loop's clock and timers, for the modules */
	struct metrics *metrics;
	struct http_server *http;
	struct db *db;
	struct health *health;
	struct auth *auth;
	struct gateway *gateway;
	struct presence *presence;
	struct pricing *pricing;
	struct trips *trips;
	struct matcher *matcher;
	struct share *share;
	struct console *console;
	struct routing *routing;      /* NULL when routing.map is empty */
	struct routing_api *routing_api;
	struct events *events;
	char listen_addr[80];  /* as bound (port 0 resolved) */
	int64_t started_wall_ms;
	int64_t started_mono_ns;
	bool stopping;
	int exit_code;
	struct event *sig_term, *sig_int, *sig_hup, *shutdown_timer, *drain_check;
};

/* Builds every module on a loaded configuration (cfg is moved into srv). */
rh_err server_init(struct server *srv, struct rh_config *cfg, const char *config_path) RH_MUST_CHECK;
/* Listens, connects to the database, runs until shut down. Returns the exit code. */
int server_run(struct server *srv);
/* Begin a graceful shutdown (as SIGTERM does). */
void server_stop(struct server *srv);
void server_fini(struct server *srv);

#endif
