#include "daemon/server.h"

#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "auth/auth.h"
#include "console/console.h"
#include "events/events.h"
#include "daemon/admin.h"
#include "gateway/gateway.h"
#include "presence/presence.h"
#include "pricing/pricing.h"
#include "trip/trip.h"
#include "match/match.h"
#include "share/share.h"
#include "routing/routing.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/fdbudget.h"
#include "daemon/health.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/prio.h"
#include "core/timer.h"
#include "net/http.h"
#include "store/db.h"

static void server_collect(void *arg)
{
	(void)arg;
}

/* The road map, when one is configured (routing.map). */
static rh_err server_routing_load(struct server *srv)
{
	if (!srv->cfg.routing.map || !*srv->cfg.routing.map)
		return RH_OK;
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
	return RH_OK;
}

/* The estimate's question to presence: the nearest available drivers. */
static size_t server_drivers_near(void *ctx, double lat, double lng, double radius_m, int vehicle, double *lat_out,
				  double *lon_out, size_t k)
{
	struct server *srv = ctx;
	struct presence_hit hits[8];
	size_t n = presence_nearest(srv->presence, lat, lng, radius_m, DRIVER_AVAILABLE, 1u << vehicle,
				    rh_timers_now(srv->timers), hits, k < 8 ? k : 8);
	for (size_t i = 0; i < n; i++) {
		lat_out[i] = hits[i].lat;
		lon_out[i] = hits[i].lon;
	}
	return n;
}

/* Surge's question to presence: every available driver with a fresh
 * position (presence is made after pricing: asked at each recompute). */
static bool server_supply(void *ctx, int64_t now, void (*add)(void *acc, double lat, double lon, int vehicle),
			  void *acc)
{
	struct server *srv = ctx;
	if (!srv->presence)
		return false;
	presence_each(srv->presence, DRIVER_AVAILABLE, now, add, acc);
	return true;
}

/* An account's tokens stopped standing (auth): its sessions end. */
static int server_close_account(void *ctx, const char *account_id, uint16_t code, const char *reason)
{
	struct server *srv = ctx;
	return gateway_close_account(srv->gateway, account_id, code, reason);
}

/* Each module gets what it needs, lower ones first; the listeners and hooks
 * that tie them are set here, in the order they must hear. */
static void server_modules_init(struct server *srv)
{
	const struct rh_config *cfg = &srv->cfg;
	const struct auth_deps ad = { .base = srv->base, .metrics = srv->metrics, .db = srv->db, .http = srv->http,
				      .cfg = &cfg->auth, .admin_token = cfg->admin.token, .rhcfg = cfg };
	srv->auth = auth_new(&ad);
	const struct gateway_deps gd = { .base = srv->base, .metrics = srv->metrics, .http = srv->http,
					 .auth = srv->auth, .ws = &cfg->ws, .leeway_ms = cfg->auth.leeway_ms };
	srv->gateway = gateway_new(&gd);
	auth_on_standing_lost(srv->auth, server_close_account, srv);
	srv->routing_api = routing_api_new(srv->http, srv->metrics, srv->routing, &cfg->routing);
	const struct pricing_deps pd = {
		.base = srv->base, .timers = srv->timers, .db = srv->db, .dbcfg = &cfg->database, .auth = srv->auth,
		.surge = &cfg->surge, .payments = &cfg->payments, .supply = server_supply, .supply_ctx = srv,
		.metrics = srv->metrics, .http = srv->http, .routing = srv->routing, .cfg = &cfg->pricing,
		.tariffs = cfg->tariff, .ntariffs = cfg->ntariffs, .jwt_secret = cfg->auth.jwt_secret,
		.min_trip_m = cfg->trip.min_trip_m, .drivers_near = server_drivers_near, .drivers_ctx = srv,
	};
	srv->pricing = pricing_new(&pd);
	const struct trips_deps td = { .base = srv->base, .metrics = srv->metrics, .db = srv->db, .http = srv->http,
				       .auth = srv->auth, .pricing = srv->pricing, .cfg = cfg };
	srv->trips = trips_new(&td);
	const struct presence_deps prd = {
		.base = srv->base, .timers = srv->timers, .metrics = srv->metrics, .db = srv->db, .http = srv->http,
		.auth = srv->auth, .gateway = srv->gateway, .cfg = &cfg->presence, .tariffs = cfg->tariff,
		.ntariffs = cfg->ntariffs,
	};
	srv->presence = presence_new(&prd);
	struct trip_listener pl;
	presence_trip_listener(srv->presence, &pl);
	trips_listen(srv->trips, &pl); /* first: drivers' status before dispatch hears */
	const struct matcher_deps md = { .timers = srv->timers, .metrics = srv->metrics, .db = srv->db,
					 .gateway = srv->gateway, .presence = srv->presence, .trips = srv->trips,
					 .pricing = srv->pricing, .cfg = &cfg->match,
					 .driver_lost_after_ms = cfg->trip.driver_lost_after_ms,
					 .wall_ms = rh_wall_ms };
	srv->matcher = matcher_new(&md);
	struct trip_supply supply;
	matcher_supply(srv->matcher, &supply);
	trips_set_supply(srv->trips, &supply);
	const struct share_deps sd = {
		.timers = srv->timers, .metrics = srv->metrics, .db = srv->db, .http = srv->http, .auth = srv->auth,
		.gateway = srv->gateway, .presence = srv->presence, .pricing = srv->pricing, .routing = srv->routing,
		.cfg = &cfg->share, .pricing_cfg = &cfg->pricing, .tariffs = cfg->tariff, .ntariffs = cfg->ntariffs,
		.after_release = cfg->match.automatic,
	};
	srv->share = share_new(&sd);
	share_start(srv->share);
	const struct console_deps cd = { .timers = srv->timers, .metrics = srv->metrics, .http = srv->http,
					 .gateway = srv->gateway, .presence = srv->presence, .db = srv->db,
					 .auth = srv->auth, .currency = cfg->ntariffs ? cfg->tariff[0].currency : NULL,
					 .presence_cfg = &cfg->presence, .cfg = &cfg->console,
					 .interval_ms = cfg->console.update_interval_ms,
					 .window_ms = 15 * 60 * 1000, .wall_ms = rh_wall_ms };
	srv->console = console_new(&cd);
	struct trip_listener cl;
	console_trip_listener(srv->console, &cl);
	trips_listen(srv->trips, &cl); /* after presence and the matcher: the console shows what they made of it */
	const struct events_deps ed = { .base = srv->base, .metrics = srv->metrics, .db = srv->db, .cfg = &cfg->events,
					.webhooks = &cfg->webhooks };
	srv->events = events_new(&ed);
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
	srv->timers = rh_timers_loop(srv->base);
	srv->http = http_server_new(srv->base, &srv->cfg.http, srv->metrics);
	srv->db = db_new(srv->base, &srv->cfg.database, srv->metrics);
	health_init(srv);
	if (server_routing_load(srv) != RH_OK)
		return RH_EINVAL;
	server_modules_init(srv);
	admin_init(srv);
	return RH_OK;
}

/* ------------------------------------------------------------ shutdown */

static void server_exit_now(struct server *srv, const char *why)
{
	log_info(NULL, "shutdown: %s", why);
	event_base_loopexit(srv->base, NULL);
}

static void server_db_closed(void *arg)
{
	struct server *srv = arg;
	server_exit_now(srv, "database closed, exiting");
}

/* Polled while draining: once no request is in flight, close the database. */
static void server_drain_check(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;
	if (http_server_inflight(srv->http) > 0 || gateway_sessions(srv->gateway) > 0)
		return;
	presence_stop(srv->presence); /* last history batch, before the pool closes */
	pricing_stop(srv->pricing);
	events_stop(srv->events);
	event_del(srv->drain_check);
	db_close(srv->db, server_db_closed, srv);
}

static void server_shutdown_timeout(evutil_socket_t fd, short what, void *arg)
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
	server_drain_check(-1, 0, srv);
}

/* SIGHUP (systemd's ExecReload): the configuration file is read again and
 * what can change while running is applied (log.level); a file that does
 * not load changes nothing. Every other key is read at start: a change of
 * one is logged as needing a restart, so an operator is not left believing
 * it took effect. */
static void server_reload(struct server *srv)
{
	struct rh_config cfg;
	struct cfg_errors errs;
	if (config_load(&cfg, srv->config_path, environ, &errs) != RH_OK) {
		for (int i = 0; i < errs.n; i++)
			log_error(NULL, "reload: %s", errs.msg[i]);
		log_error(NULL, "reload: %s not loaded; nothing changed", srv->config_path);
		config_fini(&cfg);
		return;
	}
	if (cfg.log.level != srv->cfg.log.level) {
		log_info(NULL, "reload: log.level %s -> %s", log_level_name((enum log_level)srv->cfg.log.level),
			 log_level_name((enum log_level)cfg.log.level));
		srv->cfg.log.level = cfg.log.level;
		log_min_level = (enum log_level)cfg.log.level;
	}
	log_info(NULL, "reload: %s read again; keys other than log.level take effect at the next start",
		 srv->config_path);
	config_fini(&cfg);
}

static void server_signal(evutil_socket_t sig, short what, void *arg)
{
	struct server *srv = arg;
	if (sig == SIGHUP) {
		log_reopen();
		server_reload(srv);
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

static void server_write_pid_file(const char *path)
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
	srv->sig_term = evsignal_new(srv->base, SIGTERM, server_signal, srv);
	srv->sig_int = evsignal_new(srv->base, SIGINT, server_signal, srv);
	srv->sig_hup = evsignal_new(srv->base, SIGHUP, server_signal, srv);
	srv->shutdown_timer = evtimer_new(srv->base, server_shutdown_timeout, srv);
	srv->drain_check = event_new(srv->base, -1, EV_PERSIST, server_drain_check, srv);
	event_add(srv->sig_term, NULL);
	event_add(srv->sig_int, NULL);
	event_add(srv->sig_hup, NULL);

	if (http_server_listen(srv->http, srv->listen_addr, sizeof srv->listen_addr) != RH_OK)
		return 1;
	server_write_pid_file(srv->cfg.server.pid_file);
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
	gateway_free(srv->gateway); /* sessions close: presence's and the console's hooks still run */
	console_free(srv->console);
	share_free(srv->share);
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
	rh_timers_free(srv->timers);
	if (srv->base)
		event_base_free(srv->base);
	if (srv->cfg.server.pid_file && *srv->cfg.server.pid_file)
		unlink(srv->cfg.server.pid_file);
	config_fini(&srv->cfg);
}
