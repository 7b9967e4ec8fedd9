#include "core/server.h"

#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "auth/auth.h"
#include "events/events.h"
#include "core/admin.h"
#include "gateway/gateway.h"
#include "presence/presence.h"
#include "pricing/pricing.h"
#include "trip/trip.h"
#include "match/match.h"
#include "routing/routing.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/fdbudget.h"
#include "core/health.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/prio.h"
#include "net/http.h"
#include "store/db.h"

static void server_collect(void *arg)
{
	(void)arg;
}

rh_err server_init(struct server *srv, struct rh_config *cfg, const char *config_path)
{
	memset(srv, 0, sizeof *srv);
	srv->cfg = *cfg;
	memset(cfg, 0, sizeof *cfg);
	srv->config_path = config_path;
	srv->started_wall_ms = rh_wall_ms();
	srv->started_mono_ns = rh_mono_ns();

	struct event_config *ec = event_config_new();
	/* Timers are compared against the cached monotonic clock each loop turn. */
	event_config_set_flag(ec, EVENT_BASE_FLAG_PRECISE_TIMER);
	/* Two priorities: the database's sockets (RH_PRIO_HIGH) and everything
	 * else. After 64 client callbacks the loop looks for ready
	 * high-priority events again, so logins and trip writes keep moving
	 * while thousands of drivers stream pings. */
	event_config_set_max_dispatch_interval(ec, NULL, 64, RH_PRIO_NORMAL);
	srv->base = event_base_new_with_config(ec);
	event_config_free(ec);
	if (!srv->base || event_base_priority_init(srv->base, RH_PRIO_COUNT) != 0) {
		log_error(NULL, "cannot create the event loop");
		return RH_EIO;
	}
	srv->metrics = metrics_new();
	metrics_on_collect(srv->metrics, server_collect, srv);
	srv->http = http_server_new(srv->base, &srv->cfg.http, srv->metrics);
	srv->db = db_new(srv->base, &srv->cfg.database, srv->metrics);
	health_init(srv);
	srv->auth = auth_new(srv);
	srv->gateway = gateway_new(srv);
	srv->presence = presence_new(srv);
	if (srv->cfg.routing.map && *srv->cfg.routing.map) {
		char err[512];
		int64_t t0 = rh_mono_ns();
		if (routing_load(srv->cfg.routing.map, &srv->cfg.routing, &srv->routing, err, sizeof err) != RH_OK) {
			log_error(NULL, "routing: %s", err);
			return RH_EINVAL;
		}
		struct routing_stats st;
		routing_get_stats(srv->routing, &st);
		log_info(NULL, "routing: map %s loaded in %.1f ms: %zu nodes, %zu edges", srv->cfg.routing.map,
			 (double)(rh_mono_ns() - t0) / 1e6, st.nodes, st.edges);
	}
	routing_api_init(srv);
	srv->pricing = pricing_new(srv);
	srv->trips = trips_new(srv);
	srv->matcher = matcher_new(srv);
	srv->events = events_new(srv);
	admin_init(srv);
	return RH_OK;
}

/* ------------------------------------------------------------ shutdown */

static void server_exit_now(struct server *srv, const char *why)
{
	log_info(NULL, "shutdown: %s", why);
	event_base_loopexit(srv->base, NULL);
}

static void db_closed(void *arg)
{
	struct server *srv = arg;
	server_exit_now(srv, "database closed, exiting");
}

/* Polled while draining: once no request is in flight, close the database. */
static void drain_check_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;
	if (http_server_inflight(srv->http) > 0 || gateway_sessions(srv->gateway) > 0)
		return;
	presence_stop(srv->presence); /* last history batch, before the pool closes */
	events_stop(srv->events);
	event_del(srv->drain_check);
	db_close(srv->db, db_closed, srv);
}

static void shutdown_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;
	log_warn(NULL, "shutdown: %d requests still in flight after %lld ms; exiting anyway",
		 http_server_inflight(srv->http), (long long)srv->cfg.server.shutdown_timeout_ms);
	server_exit_now(srv, "deadline passed");
}

void server_stop(struct server *srv)
{
	if (srv->stopping)
		return;
	srv->stopping = true;
	log_info(NULL, "shutdown: stop accepting, finishing %d in-flight requests (deadline %lld ms)",
		 http_server_inflight(srv->http), (long long)srv->cfg.server.shutdown_timeout_ms);
	http_server_drain(srv->http);
	gateway_close_all(srv->gateway);
	int64_t ms = srv->cfg.server.shutdown_timeout_ms;
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	evtimer_add(srv->shutdown_timer, &tv);
	struct timeval poll = { 0, 10000 };
	event_add(srv->drain_check, &poll);
	drain_check_cb(-1, 0, srv);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct server *srv = arg;
	if (sig == SIGHUP) {
		log_reopen();
		return;
	}
	if (srv->stopping) {
		log_warn(NULL, "second %s: exiting at once", sig == SIGINT ? "SIGINT" : "SIGTERM");
		event_base_loopbreak(srv->base);
		return;
	}
	log_info(NULL, "%s received", sig == SIGINT ? "SIGINT" : "SIGTERM");
	server_stop(srv);
}

/* ------------------------------------------------------------ run */

static void write_pid_file(const char *path)
{
	if (!path || !*path)
		return;
	FILE *f = fopen(path, "w");
	if (!f) {
		log_warn(NULL, "cannot write pid file %s", path);
		return;
	}
	fprintf(f, "%d\n", (int)getpid());
	fclose(f);
}

int server_run(struct server *srv)
{
	signal(SIGPIPE, SIG_IGN);
	struct fd_budget fds;
	fd_budget_apply(&srv->cfg, &fds); /* the connection caps, from the open-file limit */
	srv->sig_term = evsignal_new(srv->base, SIGTERM, signal_cb, srv);
	srv->sig_int = evsignal_new(srv->base, SIGINT, signal_cb, srv);
	srv->sig_hup = evsignal_new(srv->base, SIGHUP, signal_cb, srv);
	srv->shutdown_timer = evtimer_new(srv->base, shutdown_timeout_cb, srv);
	srv->drain_check = event_new(srv->base, -1, EV_PERSIST, drain_check_cb, srv);
	event_add(srv->sig_term, NULL);
	event_add(srv->sig_int, NULL);
	event_add(srv->sig_hup, NULL);

	if (http_server_listen(srv->http, srv->listen_addr, sizeof srv->listen_addr) != RH_OK)
		return 1;
	write_pid_file(srv->cfg.server.pid_file);
	log_info(NULL, "ridehaild %s (%s) listening on %s", RH_VERSION, RH_GIT_REV, srv->listen_addr);
	if (!srv->cfg.database.url || !*srv->cfg.database.url)
		log_warn(NULL, "database.url is empty: libpq defaults apply (PGHOST, PGDATABASE...)");
	db_start(srv->db);
	event_base_dispatch(srv->base);
	log_info(NULL, "stopped");
	return srv->exit_code;
}

void server_fini(struct server *srv)
{
	/* Modules first (their pending work may still answer requests), then the
	 * HTTP server, then the pool. */
	gateway_free(srv->gateway); /* sessions close: presence's hooks still run */
	matcher_free(srv->matcher);
	events_free(srv->events);
	trips_free(srv->trips);
	pricing_free(srv->pricing);
	presence_free(srv->presence);
	routing_api_free(srv->routing_api);
	routing_free(srv->routing);
	auth_free(srv->auth);
	http_server_free(srv->http);
	db_free(srv->db);
	health_fini(srv);
	if (srv->sig_term) {
		event_free(srv->sig_term);
		event_free(srv->sig_int);
		event_free(srv->sig_hup);
		event_free(srv->shutdown_timer);
		event_free(srv->drain_check);
	}
	metrics_free(srv->metrics);
	if (srv->base)
		event_base_free(srv->base);
	if (srv->cfg.server.pid_file && *srv->cfg.server.pid_file)
		unlink(srv->cfg.server.pid_file);
	config_fini(&srv->cfg);
}
