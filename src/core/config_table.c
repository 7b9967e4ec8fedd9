/* The configuration table: every key the daemon reads, with its default,
 * range, unit and meaning. conf/ridehaild.conf and docs/configuration.md are
 * checked against it by the tests. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "core/config.h"
#include "core/settings.h"
#include "core/proxy.h"

#define K(sect, field) offsetof(struct sect, field)
#define MS(x) ((double)(x))
#define SEC(x) ((double)(x) * 1000.0)
#define KIB(x) ((double)(x) * 1024.0)
#define MIB(x) ((double)(x) * 1048576.0)

static const char *const log_levels[] = { "debug", "info", "warn", "error", NULL };
static const char *const log_formats[] = { "logfmt", "json", NULL };

static const struct cfg_key server_keys[] = {
	{ "shutdown_timeout", CFG_DURATION, K(server_cfg, shutdown_timeout_ms), "10s", 0, SEC(600), "s", NULL,
	  "After SIGTERM/SIGINT: how long in-flight requests may take to finish before the daemon exits anyway." },
	{ "pid_file", CFG_STR, K(server_cfg, pid_file), "", 0, 1024, NULL, NULL,
	  "Write the process id here at start (empty: no pid file)." },
	{ 0 }
};

static const struct cfg_key log_keys[] = {
	{ "level", CFG_ENUM, K(log_cfg, level), "info", 0, 0, NULL, log_levels,
	  "Lowest level written." },
	{ "format", CFG_ENUM, K(log_cfg, format), "logfmt", 0, 0, NULL, log_formats,
	  "One line per event: logfmt (key=value) or JSON lines." },
	{ "file", CFG_STR, K(log_cfg, file), "-", 0, 1024, NULL, NULL,
	  "Log file path; - is standard error. SIGHUP reopens it (for logrotate)." },
	{ 0 }
};

static const struct cfg_key http_keys[] = {
	{ "listen", CFG_ADDR, K(http_cfg, listen), "127.0.0.1:8080", 0, 0, NULL, NULL,
	  "Address for HTTP and WebSocket clients; port 0 picks a free port (logged)." },
	{ "backlog", CFG_INT, K(http_cfg, backlog), "1024", 1, 65535, "connections", NULL,
	  "listen(2) backlog." },
	{ "max_connections", CFG_INT, K(http_cfg, max_connections), "0", 0, 1000000, "connections", NULL,
	  "Open client connections (HTTP and WebSocket together); past it the least recently active idle one is closed to make room, or the new one gets 503. 0: as many as the open-file limit leaves after the descriptors kept for the database pool, NATS, webhooks, the map and logs (a larger value is lowered to that, with a warning)." },
	{ "max_connections_per_address", CFG_INT, K(http_cfg, max_connections_per_address), "256", 0, 1000000, "connections", NULL,
	  "Open connections from one client address (an IPv4 address, or an IPv6 /64), HTTP and WebSocket together; past it new ones get 503. 0: no per-address cap (behind a reverse proxy, which is one address: cap per client there)." },
	{ "max_header_size", CFG_SIZE, K(http_cfg, max_header_size), "8KiB", KIB(1), MIB(1), "bytes", NULL,
	  "Request line plus headers; larger requests get 431 (414 for a long request line)." },
	{ "max_body_size", CFG_SIZE, K(http_cfg, max_body_size), "64KiB", 0, MIB(64), "bytes", NULL,
	  "Request body; larger bodies get 413." },
	{ "request_timeout", CFG_DURATION, K(http_cfg, request_timeout_ms), "10s", MS(100), SEC(3600), "s", NULL,
	  "Time allowed to receive one whole request once it has started; then 408 and close." },
	{ "header_timeout", CFG_DURATION, K(http_cfg, header_timeout_ms), "5s", MS(100), SEC(3600), "s", NULL,
	  "Time allowed to receive a request's line and headers, from its first byte (or, on a new connection, from the accept); then 408 and close (at most request_timeout, which also bounds the whole request). A client trickling a head holds its connection no longer than this." },
	{ "idle_timeout", CFG_DURATION, K(http_cfg, idle_timeout_ms), "60s", MS(100), SEC(86400), "s", NULL,
	  "A keep-alive connection with no request in progress is closed after this." },
	{ "max_requests_per_conn", CFG_INT, K(http_cfg, max_requests_per_conn), "10000", 1, 1e9, "requests", NULL,
	  "Requests served on one keep-alive connection before it is closed." },
	{ "trusted_proxies", CFG_STR, K(http_cfg, trusted_proxies), "", 0, 1024, NULL, NULL,
	  "Addresses (or CIDR ranges) of the reverse proxies in front of the daemon, e.g. 127.0.0.1 for nginx on the same host. A request from one of them is taken to come from the client its X-Forwarded-For names (logs and per-address rate limits key on it); from anyone else that header is ignored. Empty: no proxy is trusted." },
	{ 0 }
};

static bool cfg_http_validate(const void *section, char *err, size_t errlen)
{
	const struct http_cfg *h = section;
	struct proxy_list l;
	char why[160];
	if (proxy_list_parse(h->trusted_proxies, &l, why, sizeof why) != RH_OK) {
		snprintf(err, errlen, "trusted_proxies: %s", why);
		return false;
	}
	return true;
}

static const struct cfg_key database_keys[] = {
	{ "url", CFG_STR, K(database_cfg, url), "postgres://ridehail@127.0.0.1:54329/ridehail", 0, 4096, NULL, NULL,
	  "libpq connection string or postgres:// URI. The default is the local default database that `make run` creates under var/pg and starts (scripts/localdb.sh), so every command run from a clone finds it; empty: libpq's defaults (PGHOST, PGDATABASE...).",
	  CFG_F_SECRET },
	{ "pool_size", CFG_INT, K(database_cfg, pool_size), "4", 1, 64, "connections", NULL,
	  "PostgreSQL connections kept open (each pipelines many queries)." },
	{ "connect_timeout", CFG_DURATION, K(database_cfg, connect_timeout_ms), "5s", SEC(1), SEC(600), "s", NULL,
	  "Give up one connection attempt after this, then back off and retry." },
	{ "query_timeout", CFG_DURATION, K(database_cfg, query_timeout_ms), "10s", MS(100), SEC(3600), "s", NULL,
	  "A query waiting for a connection longer than this fails (the request gets 503)." },
	{ "statement_timeout", CFG_DURATION, K(database_cfg, statement_timeout_ms), "30s", 0, SEC(86400), "s", NULL,
	  "Server-side statement_timeout for the daemon's sessions (0: none)." },
	{ "reconnect_max", CFG_DURATION, K(database_cfg, reconnect_max_ms), "5s", MS(100), SEC(600), "s", NULL,
	  "Cap of the exponential backoff between reconnect attempts (it starts at 100 ms)." },
	{ "queue_max", CFG_INT, K(database_cfg, queue_max), "20000", 1, 10000000, "queries", NULL,
	  "Queries waiting for a connection; past it new queries fail at once (503)." },
	{ "pipeline_depth", CFG_INT, K(database_cfg, pipeline_depth), "64", 1, 4096, "queries", NULL,
	  "Queries in flight on one connection (libpq pipeline mode)." },
	{ "migrate", CFG_BOOL, K(database_cfg, migrate), "true", 0, 0, NULL, NULL,
	  "Apply pending migrations when the database is first reached (else: `ridehaild migrate`)." },
	{ 0 }
};

static const struct cfg_key admin_keys[] = {
	{ "token", CFG_STR, K(admin_cfg, token), "", 0, 256, NULL, NULL,
	  "Operator credential for /v1/admin/... (Authorization: Bearer <token>); empty disables the admin API. `make run` generates one into var/admin.token.",
	  CFG_F_SECRET },
	{ 0 }
};

static bool cfg_admin_validate(const void *section, char *err, size_t errlen)
{
	const struct admin_cfg *a = section;
	if (a->token[0] && strlen(a->token) < 16) {
		snprintf(err, errlen, "token must be at least 16 characters (or empty to disable the admin API)");
		return false;
	}
	return true;
}

static const struct cfg_key auth_keys[] = {
	{ "jwt_secret", CFG_STR, K(auth_cfg, jwt_secret), "", 0, 1024, NULL, NULL,
	  "HMAC-SHA-256 key signing access tokens (at least 32 characters). Empty: the key in var/jwt.secret when that file exists, readable by its owner only (`make run` generates it there, so every command run from the clone signs as the daemon does), else a random key per process, so tokens die with it.",
	  CFG_F_SECRET },
	{ "token_ttl", CFG_DURATION, K(auth_cfg, token_ttl_ms), "12h", SEC(60), SEC(30 * 86400), "s", NULL,
	  "Lifetime of an access token from POST /v1/auth/login." },
	{ "leeway", CFG_DURATION, K(auth_cfg, leeway_ms), "30s", 0, SEC(600), "s", NULL,
	  "Clock skew tolerated when checking a token's expiry and issue time." },
	{ "password_opslimit", CFG_INT, K(auth_cfg, password_opslimit), "2", 1, 10, "passes", NULL,
	  "argon2id passes for password hashes (libsodium crypto_pwhash; 2 = INTERACTIVE). Existing hashes keep their own parameters." },
	{ "password_memlimit", CFG_SIZE, K(auth_cfg, password_memlimit), "64MiB", KIB(8), MIB(1024), "bytes", NULL,
	  "argon2id memory per hash (64MiB = INTERACTIVE). Each hashing thread uses this much while it works." },
	{ "hash_threads", CFG_INT, K(auth_cfg, hash_threads), "1", 1, 16, "threads", NULL,
	  "Threads hashing and checking passwords, off the event loop." },
	{ "hash_queue_max", CFG_INT, K(auth_cfg, hash_queue_max), "64", 1, 100000, "jobs", NULL,
	  "Password jobs waiting for a thread, in each of two queues (logins from addresses that failed lately, or with another login being checked, wait in the second); past it logins and sign-ups get 503." },
	{ "login_per_account", CFG_DBL, K(auth_cfg, login_per_account), "5", 0.1, 10000, "per minute", NULL,
	  "Login attempts per minute per account (bursts of the same size); past it: 429." },
	{ "login_per_address", CFG_DBL, K(auth_cfg, login_per_address), "30", 0.1, 100000, "per minute", NULL,
	  "Login attempts per minute per client address (bursts of the same size); past it: 429." },
	{ "signup_per_address", CFG_DBL, K(auth_cfg, signup_per_address), "10", 0.1, 100000, "per minute", NULL,
	  "Rider sign-ups per minute per client address; past it: 429." },
	{ "rider_signup", CFG_BOOL, K(auth_cfg, rider_signup), "true", 0, 0, NULL, NULL,
	  "Riders may create their own accounts with POST /v1/riders." },
	{ 0 }
};

static bool cfg_auth_validate(const void *section, char *err, size_t errlen)
{
	const struct auth_cfg *a = section;
	if (a->jwt_secret[0] && strlen(a->jwt_secret) < 32) {
		snprintf(err, errlen, "jwt_secret must be at least 32 characters (or empty for a per-process key)");
		return false;
	}
	return true;
}

static const struct cfg_key ws_keys[] = {
	{ "max_connections", CFG_INT, K(ws_cfg, max_connections), "0", 0, 10000000, "connections", NULL,
	  "Open WebSocket connections; past it the upgrade gets 503. 0: nine tenths of the connection cap (http.max_connections), so that drivers never starve REST clients; a larger value is lowered to that, with a warning." },
	{ "max_frame_size", CFG_SIZE, K(ws_cfg, max_frame_size), "64KiB", 125, MIB(16), "bytes", NULL,
	  "Payload of one frame; a larger frame closes the connection with 1009." },
	{ "max_message_size", CFG_SIZE, K(ws_cfg, max_message_size), "64KiB", 125, MIB(64), "bytes", NULL,
	  "One message, all fragments together; larger closes with 1009." },
	{ "max_output", CFG_SIZE, K(ws_cfg, max_output), "256KiB", KIB(4), MIB(64), "bytes", NULL,
	  "Bytes waiting for a client that does not read; past it the connection is dropped (a slow reader never grows memory)." },
	{ "ping_interval", CFG_DURATION, K(ws_cfg, ping_interval_ms), "20s", SEC(1), SEC(3600), "s", NULL,
	  "The server pings a connection that has been silent this long (each connection up to a quarter earlier, so that connections opened together are not pinged in the same instant)." },
	{ "idle_timeout", CFG_DURATION, K(ws_cfg, idle_timeout_ms), "60s", SEC(2), SEC(86400), "s", NULL,
	  "A connection with nothing received (not even a pong) for this long is closed with 1001." },
	{ "close_timeout", CFG_DURATION, K(ws_cfg, close_timeout_ms), "2s", MS(100), SEC(60), "s", NULL,
	  "After sending a close frame, wait this long for the peer's before dropping the connection." },
	{ "max_rejections", CFG_INT, K(ws_cfg, max_rejections), "30", 1, 100000, "per minute", NULL,
	  "Invalid messages a client may send per minute (each gets command.rejected); past it the connection is closed with 1008." },
	{ "max_messages_per_s", CFG_DBL, K(ws_cfg, max_messages_per_s), "50", 1, 1e6, "per second", NULL,
	  "Data frames (messages and their fragments) one connection may send per second, in bursts of up to max_message_burst; past it the connection is closed with 1008 (too many messages)." },
	{ "max_message_burst", CFG_INT, K(ws_cfg, max_message_burst), "500", 1, 1e7, "frames", NULL,
	  "Data frames one connection may send at once (a phone sending the fixes it queued in a tunnel) before max_messages_per_s applies." },
	{ "max_pings_per_s", CFG_DBL, K(ws_cfg, max_pings_per_s), "5", 0.1, 1e6, "per second", NULL,
	  "Ping and pong frames one connection may send per second (bursts of four times that); past it the connection is closed with 1008 (ping flood)." },
	{ "echo", CFG_BOOL, K(ws_cfg, echo), "false", 0, 0, NULL, NULL,
	  "Test-only: GET /v1/ws/echo, without a token, echoes every text and binary message (for WebSocket conformance suites). Never turn it on in production." },
	{ 0 }
};

static const struct cfg_key presence_keys[] = {
	{ "stale_after", CFG_DURATION, K(presence_cfg, stale_after_ms), "30s", SEC(1), SEC(3600), "s", NULL,
	  "A driver with no ping for this long is not offered rides and not shown in nearby searches." },
	{ "evict_after", CFG_DURATION, K(presence_cfg, evict_after_ms), "5m", SEC(1), SEC(86400), "s", NULL,
	  "A driver with no ping for this long is dropped from the grid and marked offline." },
	{ "grid_bits", CFG_INT, K(presence_cfg, grid_bits), "32", 8, 50, "bits", NULL,
	  "Geohash bits of a grid cell: 32 gives cells of about 305 x 376 m at 52 degrees; fewer bits for sparse cities, more for dense ones." },
	{ "max_drivers", CFG_INT, K(presence_cfg, max_drivers), "1000000", 1, 100000000, "drivers", NULL,
	  "Driver records held in memory (connected or recently seen)." },
	{ "max_pings_per_s", CFG_DBL, K(presence_cfg, max_pings_per_s), "5", 0.1, 100000, "per second", NULL,
	  "Location updates one driver may send per second (bursts of twice that); faster ones are dropped with command.rejected rate_limited." },
	{ "flood_close_after", CFG_DURATION, K(presence_cfg, flood_close_after_ms), "10s", SEC(1), SEC(3600), "s", NULL,
	  "A driver kept over max_pings_per_s for this long is disconnected (1008)." },
	{ "max_clock_skew", CFG_DURATION, K(presence_cfg, max_clock_skew_ms), "2m", SEC(1), SEC(86400), "s", NULL,
	  "A location stamped further than this in the future is refused." },
	{ "max_ping_age", CFG_DURATION, K(presence_cfg, max_ping_age_ms), "10m", SEC(1), SEC(86400), "s", NULL,
	  "A location stamped further than this in the past is refused (stale)." },
	{ "ack_interval", CFG_DURATION, K(presence_cfg, ack_interval_ms), "0s", 0, SEC(3600), "s", NULL,
	  "Acknowledge a driver's location updates at most this often (driver.location.acked); 0s: never (fire and forget)." },
	{ "fuzz", CFG_INT, K(presence_cfg, fuzz_m), "100", 0, 5000, "m", NULL,
	  "Riders see drivers' positions moved by up to this many metres (stable per driver for 5 minutes), for the drivers' privacy." },
	{ "gps_max_speed", CFG_DBL, K(presence_cfg, gps_max_speed_kmh), "250", 0, 1e6, "km/h", NULL,
	  "A fix implying more than this speed from the one before (less both accuracies, each counted up to 100 m) is not believed: the driver leaves search and offers until its fixes are consistent again, and a driver.location.suspect event is written. 0: no check." },
	{ "gps_max_jump", CFG_INT, K(presence_cfg, gps_max_jump_m), "100000", 100, 20000000, "m", NULL,
	  "Nor is a fix farther than this from the one before, however long between them." },
	{ "gps_recover_fixes", CFG_INT, K(presence_cfg, gps_recover_fixes), "3", 1, 100, "fixes", NULL,
	  "Fixes in a row, each plausible from the one before, after which a suspect driver is believed again (at once if one is plausible from where it was last believed)." },
	{ "nearby_max_radius", CFG_INT, K(presence_cfg, nearby_max_radius_m), "20000", 10, 1000000, "m", NULL,
	  "Largest radius_m a nearby search accepts." },
	{ "nearby_max_limit", CFG_INT, K(presence_cfg, nearby_max_limit), "50", 1, 10000, "drivers", NULL,
	  "Largest limit a nearby search accepts." },
	{ "history", CFG_BOOL, K(presence_cfg, history), "true", 0, 0, NULL, NULL,
	  "Write drivers' location history to PostgreSQL (driver_locations)." },
	{ "history_queue_max", CFG_INT, K(presence_cfg, history_queue_max), "200000", 100, 1e8, "points", NULL,
	  "Points held in memory waiting for the database; when full the oldest are dropped (and counted)." },
	{ "history_batch_max", CFG_INT, K(presence_cfg, history_batch_max), "2000", 1, 100000, "points", NULL,
	  "Points written per INSERT." },
	{ "history_flush_interval", CFG_DURATION, K(presence_cfg, history_flush_ms), "500ms", MS(10), SEC(60), "s", NULL,
	  "Queued points are written at least this often (sooner when a batch fills)." },
	{ "history_inflight_max", CFG_INT, K(presence_cfg, history_inflight_max), "2", 1, 64, "batches", NULL,
	  "Batches being written at once; a slow database makes the queue fill instead of piling up queries." },
	{ "history_retention", CFG_DURATION, K(presence_cfg, history_retention_ms), "7d", SEC(86400), SEC(3650.0 * 86400), "d", NULL,
	  "Location history older than this is dropped (whole daily partitions)." },
	{ 0 }
};

static const char *const match_modes[] = { "greedy", "batch", NULL };

static const struct cfg_key match_keys[] = {
	{ "auto", CFG_BOOL, K(match_cfg, automatic), "true", 0, 0, NULL, NULL,
	  "Dispatch automatically: offer each new trip to nearby drivers over the WebSocket. false: trips wait in SEARCHING for an operator (POST /v1/rides/{id}/assign), and requests are taken even with no driver online." },
	{ "parallel_offers", CFG_INT, K(match_cfg, parallel_offers), "1", 1, 5, "drivers", NULL,
	  "Drivers offered one trip at the same time (1: a sequential cascade; 2-3: the hybrid most operators use). The first to accept gets it; the others are withdrawn." },
	{ "offer_timeouts", CFG_LIST, K(match_cfg, offer_timeouts), "15,10,8", 1, 300, "s", NULL,
	  "Seconds a driver has to answer an offer, per round of offers for a trip; the last one repeats.", CFG_F_INTEGER },
	{ "radius_steps", CFG_LIST, K(match_cfg, radius_steps), "3000,5000,8000", 100, 100000, "m", NULL,
	  "Search radius around the pickup, widened step by step when no candidate is left within one.",
	  CFG_F_INTEGER | CFG_F_ASCENDING },
	{ "max_search", CFG_DURATION, K(match_cfg, max_search_ms), "120s", SEC(5), SEC(3600), "s", NULL,
	  "A trip with no driver found waits this long (first in line for drivers freed nearby), then is cancelled with reason no_drivers." },
	{ "booking_max_wait", CFG_DURATION, K(match_cfg, booking_max_wait_ms), "2h", SEC(5), SEC(86400), "s", NULL,
	  "A dispatcher's booking (an operator's POST /v1/rides for a rider) is kept and searched as drivers come online for this long, instead of match.max_search, then is cancelled with reason no_drivers." },
	{ "schedule_lead", CFG_DURATION, K(match_cfg, schedule_lead_ms), "15m", 0, SEC(86400), "s", NULL,
	  "A scheduled ride (scheduled_at) moves from SCHEDULED to SEARCHING this long before its time; until then its rider may cancel it free." },
	{ "candidates", CFG_INT, K(match_cfg, candidates), "16", 1, 256, "drivers", NULL,
	  "Nearest available drivers scored at each search step." },
	{ "weight_eta", CFG_DBL, K(match_cfg, weight_eta), "0.6", 0, 1, "weight", NULL,
	  "Score weight of a short pickup ETA (exp(-eta / 5 min))." },
	{ "weight_idle", CFG_DBL, K(match_cfg, weight_idle), "0.25", 0, 1, "weight", NULL,
	  "Score weight of fairness: time the driver has been waiting for a ride (saturates at 10 min)." },
	{ "weight_acceptance", CFG_DBL, K(match_cfg, weight_acceptance), "0.15", 0, 1, "weight", NULL,
	  "Score weight of the driver's predicted acceptance (offers accepted so far, smoothed)." },
	{ "waiting_retry", CFG_DURATION, K(match_cfg, waiting_retry_ms), "2s", MS(100), SEC(60), "s", NULL,
	  "A trip waiting for a driver looks around again this often (drivers freed nearby get it at once)." },
	{ "meter_max_accuracy", CFG_INT, K(match_cfg, meter_max_accuracy_m), "50", 1, 10000, "m", NULL,
	  "Pings reporting a worse accuracy are not metered." },
	{ "meter_max_speed", CFG_DBL, K(match_cfg, meter_max_speed_kmh), "200", 10, 1000, "km/h", NULL,
	  "A jump between pings implying more than this speed is not metered." },
	{ "replay_messages", CFG_INT, K(match_cfg, replay_messages), "64", 1, 4096, "messages", NULL,
	  "Messages to a rider kept per trip, so a rider reconnecting with last_seq gets what it missed." },
	{ "mode", CFG_ENUM, K(match_cfg, mode), "greedy", 0, 0, NULL, match_modes,
	  "greedy: each trip is offered to its best driver as it arrives. batch: the trips arriving within match.batch_window are assigned together, the least total pickup time over all of them (docs/dispatch.md)." },
	{ "batch_window", CFG_DURATION, K(match_cfg, batch_window_ms), "500ms", MS(50), SEC(30), "s", NULL,
	  "Batch mode: how long requests are collected before they are assigned together (a trip waits at most this long for its first offer)." },
	{ "reposition", CFG_BOOL, K(match_cfg, reposition), "false", 0, 0, NULL, NULL,
	  "Suggest to idle drivers in cells with more drivers than recent demand a cell nearby where demand exceeds supply (driver.reposition.suggested; drivers may ignore it)." },
	{ "reposition_interval", CFG_DURATION, K(match_cfg, reposition_interval_ms), "60s", SEC(1), SEC(3600), "s", NULL,
	  "How often suggestions are worked out; a driver gets at most one per interval." },
	{ "reposition_half_life", CFG_DURATION, K(match_cfg, reposition_half_life_ms), "10m", SEC(10), SEC(86400), "s", NULL,
	  "Recent demand decays with this half-life: a request counts 1 when made, 1/2 this long after." },
	{ "reposition_cell", CFG_INT, K(match_cfg, reposition_cell_m), "500", 100, 10000, "m", NULL,
	  "Side of the square cells demand and supply are counted in." },
	{ "reposition_radius", CFG_INT, K(match_cfg, reposition_radius_m), "3000", 100, 100000, "m", NULL,
	  "A driver is sent no farther than this (straight line to the target cell's centre)." },
	{ 0 }
};
static const char *const routing_metrics[] = { "time", "distance", NULL };

#define SPEED(cls, def) \
	{ "speed_" #cls, CFG_INT, K(routing_cfg, speed_##cls), def, 5, 200, "km/h", NULL, \
	  "Speed on highway=" #cls " (and its _link) without a usable maxspeed tag; read by `ridehaild map import`." }
static const struct cfg_key routing_keys[] = {
	{ "map", CFG_STR, K(routing_cfg, map), "", 0, 4096, NULL, NULL,
	  "Prepared road map (`ridehaild map import city.osm.pbf -o var/city.map`); empty: no routing (GET /v1/route answers 503). A map that fails validation stops the daemon at start." },
	{ "metric", CFG_ENUM, K(routing_cfg, metric), "time", 0, 0, NULL, routing_metrics,
	  "What a route minimises: time (fastest) or distance (shortest)." },
	{ "snap_max_distance", CFG_INT, K(routing_cfg, snap_max_distance_m), "300", 1, 100000, "m", NULL,
	  "A point farther than this from every road of the map gets 422 (off the map)." },
	SPEED(motorway, "100"),
	SPEED(trunk, "80"),
	SPEED(primary, "60"),
	SPEED(secondary, "50"),
	SPEED(tertiary, "40"),
	SPEED(unclassified, "30"),
	SPEED(residential, "30"),
	SPEED(living_street, "10"),
	SPEED(service, "15"),
	{ "use_maxspeed", CFG_BOOL, K(routing_cfg, use_maxspeed), "true", 0, 0, NULL, NULL,
	  "Use a way's maxspeed tag (km/h or mph) instead of its class speed; read by `ridehaild map import`." },
	{ 0 }
};
#undef SPEED

#define T(field) offsetof(struct tariff_cfg, field)
static const struct cfg_key tariff_keys[] = {
	{ "currency", CFG_STR, T(currency), "USD", 3, 3, NULL, NULL,
	  "ISO 4217 code of every amount of this tariff." },
	{ "base", CFG_INT, T(base), "250", 0, 1e9, "minor units", NULL,
	  "Flag fall: charged once per trip." },
	{ "per_km", CFG_INT, T(per_km), "156", 0, 1e9, "minor units per km", NULL,
	  "Distance rate." },
	{ "per_min", CFG_INT, T(per_min), "30", 0, 1e9, "minor units per minute", NULL,
	  "Time rate." },
	{ "minimum", CFG_INT, T(minimum), "700", 0, 1e9, "minor units", NULL,
	  "Minimum fare (before the booking fee)." },
	{ "booking_fee", CFG_INT, T(booking_fee), "0", 0, 1e9, "minor units", NULL,
	  "Added to every fare, after surge and the minimum." },
	{ "seats", CFG_INT, T(seats), "4", 1, 60, "passengers", NULL,
	  "Passenger seats of this vehicle type." },
	{ "cancel_fee", CFG_INT, T(cancel_fee), "500", 0, 1e9, "minor units", NULL,
	  "Charged when the rider cancels after trip.cancel_grace has passed since the driver was assigned." },
	{ "no_show_fee", CFG_INT, T(no_show_fee), "500", 0, 1e9, "minor units", NULL,
	  "Charged when the driver cancels after waiting at the pickup for trip.no_show_wait." },
	{ "waiting_free", CFG_DURATION, T(waiting_free_ms), "3m", 0, SEC(3600), "s", NULL,
	  "A driver waits at the pickup this long for free; after it the rider pays waiting_per_min (added to the final fare)." },
	{ "waiting_per_min", CFG_INT, T(waiting_per_min), "30", 0, 1e9, "minor units per minute", NULL,
	  "Waiting fee per started minute past waiting_free, from the driver's arrival to the start of the trip." },
	{ 0 }
};

static const struct cfg_key pricing_keys[] = {
	{ "quote_ttl", CFG_DURATION, K(pricing_cfg, quote_ttl_ms), "5m", SEC(10), SEC(3600), "s", NULL,
	  "A fare quote is honoured this long; after it the rider must ask for a new estimate." },
	{ "detour_factor", CFG_DBL, K(pricing_cfg, detour_factor), "1.3", 1, 5, "factor", NULL,
	  "Without a road map: road distance = straight-line distance x this." },
	{ "average_speed", CFG_DBL, K(pricing_cfg, average_speed_kmh), "25", 1, 200, "km/h", NULL,
	  "Without a road map: duration = road distance / this speed." },
	{ "quote_match_distance", CFG_INT, K(pricing_cfg, quote_match_m), "150", 0, 10000, "m", NULL,
	  "A ride request's pickup and dropoff may be this far from its quote's and still get the quoted price." },
	{ "eta_radius", CFG_INT, K(pricing_cfg, eta_radius_m), "5000", 100, 100000, "m", NULL,
	  "The nearest available driver is looked for this far around the pickup for the estimate's pickup ETA." },
	{ "timezone", CFG_STR, K(pricing_cfg, timezone), "UTC", 1, 64, NULL, NULL,
	  "IANA time zone (Europe/Amsterdam, America/New_York) in which the tariffs' time-of-day bands (a night rate from 22:00) are read." },
	{ 0 }
};

static const struct cfg_key surge_keys[] = {
	{ "enabled", CFG_BOOL, K(surge_cfg, enabled), "true", 0, 0, NULL, NULL,
	  "Price by demand and supply per cell; false: every multiplier is 1 (GET /v1/surge still answers)." },
	{ "interval", CFG_DURATION, K(surge_cfg, interval_ms), "30s", MS(100), SEC(3600), "s", NULL,
	  "Multipliers are recomputed this often, on the event loop; a multiplier shown is valid until the next recompute." },
	{ "window", CFG_DURATION, K(surge_cfg, window_ms), "5m", SEC(1), SEC(86400), "s", NULL,
	  "Demand is the ride requests of the last window (those refused for want of a driver included), per cell and vehicle type." },
	{ "cell_area", CFG_DBL, K(surge_cfg, cell_area_km2), "5.16", 0.01, 1000, "km2", NULL,
	  "Area of one hexagonal cell (5.16 km2: neighbourhood-sized, the size of an H3 resolution-7 cell)." },
	{ "latitude", CFG_DBL, K(surge_cfg, latitude), "0", -80, 80, "degrees", NULL,
	  "Reference latitude of the cells' local projection (true scale along it). 0: the latitude of the first point priced or seen, rounded to a whole degree; set it to keep cell names the same across restarts." },
	{ "curve_ratio", CFG_LIST, K(surge_cfg, curve_ratio), "1,2,5,8", 0, 1000, "ratio", NULL,
	  "Demand/supply ratios at which the piecewise-linear curve has a knot (ascending); supply counts at least 1.",
	  CFG_F_ASCENDING },
	{ "curve_multiplier", CFG_LIST, K(surge_cfg, curve_multiplier), "1,1.5,2.5,3", 1, 10, "multiplier", NULL,
	  "The raw multiplier at each knot of curve_ratio (as many, not decreasing); linear between knots, flat before the first and after the last." },
	{ "ema_alpha", CFG_DBL, K(surge_cfg, ema_alpha), "0.5", 0.01, 1, "weight", NULL,
	  "Exponential moving average: smoothed = alpha x raw + (1 - alpha) x previous smoothed (1: no smoothing)." },
	{ "max_step", CFG_DBL, K(surge_cfg, max_step), "0.3", 0.01, 10, "multiplier", NULL,
	  "A cell's multiplier moves by at most this much per recompute." },
	{ "min_dwell", CFG_DURATION, K(surge_cfg, min_dwell_ms), "90s", 0, SEC(86400), "s", NULL,
	  "After a multiplier moved up (down) it does not move down (up) for this long: no whip-saw." },
	{ "cap", CFG_DBL, K(surge_cfg, cap), "3", 1, 10, "multiplier", NULL,
	  "The highest multiplier (the lowest is 1). An operator may cap a zone lower (PUT /v1/admin/surge/overrides/{zone})." },
	{ "neighbour_max_diff", CFG_DBL, K(surge_cfg, neighbour_max_diff), "0.5", 0.05, 10, "multiplier", NULL,
	  "Adjacent cells never differ by more than this: a cell next to a higher one is raised to that one minus this (no block-by-block prices)." },
	{ "quote_ttl", CFG_DURATION, K(surge_cfg, quote_ttl_ms), "60s", SEC(1), SEC(3600), "s", NULL,
	  "A quote with a multiplier above 1 is honoured this long (pricing.quote_ttl if that is shorter); then the rider must ask again." },
	{ "event_min_interval", CFG_DURATION, K(surge_cfg, event_min_interval_ms), "60s", 0, SEC(86400), "s", NULL,
	  "A cell's surge.updated event is written at most this often." },
	{ "event_min_change", CFG_DBL, K(surge_cfg, event_min_change), "0.1", 0.01, 10, "multiplier", NULL,
	  "... and only when its multiplier moved at least this much since the last one (a return to 1 always counts)." },
	{ "events_per_interval", CFG_INT, K(surge_cfg, events_per_interval), "500", 1, 1000000, "events", NULL,
	  "surge.updated rows written per recompute at most; the rest wait for the next." },
	{ "max_cells", CFG_INT, K(surge_cfg, max_cells), "100000", 16, 10000000, "cells", NULL,
	  "Cells tracked at once; demand and supply falling in a new cell past it are not counted (and counted in a metric)." },
	{ 0 }
};

static const struct cfg_key payments_keys[] = {
	{ "secret", CFG_STR, K(payments_cfg, secret), "", 0, 1024, NULL, NULL,
	  "Key of the payment provider's callbacks (POST /v1/payments/{trip_id}/result): Ridehail-Signature: v1=hex(HMAC-SHA-256(secret, \"<Ridehail-Timestamp>.<body>\")). Empty: the endpoint answers 503.",
	  CFG_F_SECRET },
	{ "max_skew", CFG_DURATION, K(payments_cfg, max_skew_ms), "5m", SEC(1), SEC(86400), "s", NULL,
	  "A callback whose Ridehail-Timestamp is further than this from now is refused (a replay of an old one)." },
	{ "hold", CFG_BOOL, K(payments_cfg, hold), "true", 0, 0, NULL, NULL,
	  "A rider whose payment failed gets 402 payment-required on the next ride request, until a later payment succeeds or an operator clears it." },
	{ 0 }
};

static const struct cfg_key trip_keys[] = {
	{ "cancel_grace", CFG_DURATION, K(trip_cfg, cancel_grace_ms), "2m", 0, SEC(3600), "s", NULL,
	  "A rider may cancel free for this long after a driver is assigned (always free while searching)." },
	{ "no_show_wait", CFG_DURATION, K(trip_cfg, no_show_wait_ms), "5m", 0, SEC(3600), "s", NULL,
	  "A driver who has waited at the pickup this long may cancel, and the rider pays the tariff's no_show_fee." },
	{ "fare_tolerance", CFG_DBL, K(trip_cfg, fare_tolerance), "0.25", 0, 10, "fraction", NULL,
	  "The upfront fare is charged unless the metered distance or duration differs from the estimate by more than this fraction; then the metered fare is charged and the trip flagged for review." },
	{ "rides_per_minute", CFG_DBL, K(trip_cfg, rides_per_minute), "10", 0.1, 100000, "per minute", NULL,
	  "Ride requests per rider (bursts of the same size); past it: 429 + Retry-After." },
	{ "min_distance", CFG_INT, K(trip_cfg, min_trip_m), "50", 0, 10000, "m", NULL,
	  "A pickup and dropoff closer than this are refused (422)." },
	{ "batch_max", CFG_INT, K(trip_cfg, batch_max), "256", 1, 10000, "items", NULL,
	  "Trip transitions (or ride requests) that arrive together are committed in one transaction, up to this many." },
	{ "driver_lost_after", CFG_DURATION, K(trip_cfg, driver_lost_after_ms), "5m", SEC(2), SEC(86400), "s", NULL,
	  "A live trip whose driver has had no session and sent no location for this long is flagged (event trip.driver_lost, metric ridehail_match_drivers_lost): its rider may then end it, even in progress, as may an operator, reason driver_lost (docs/api.md has the fare). The flag is cleared if the driver comes back first." },
	{ "schedule_horizon", CFG_DURATION, K(trip_cfg, schedule_horizon_ms), "7d", SEC(60), SEC(90 * 86400), "s", NULL,
	  "A ride request's scheduled_at may be at most this far ahead (further: 400 naming scheduled_at)." },
	{ "batch_lanes", CFG_INT, K(trip_cfg, batch_lanes), "2", 1, 8, "batches", NULL,
	  "Batches at the database at once, transitions and ride requests together; trips are spread over lanes by id (requests by rider), so one trip's transitions stay in order. About the database's cores; at most database.pool_size is useful." },
	{ 0 }
};

static const char *const events_sinks[] = { "none", "nats", NULL };
static const char *const events_retentions[] = { "limits", "interest", "workqueue", NULL };
static const char *const events_storages[] = { "file", "memory", NULL };

static const struct cfg_key events_keys[] = {
	{ "sink", CFG_ENUM, K(events_cfg, sink), "nats", 0, 0, NULL, events_sinks,
	  "Where committed outbox events are published: nats (JetStream), or none (the relay is off and the outbox accumulates)." },
	{ "url", CFG_STR, K(events_cfg, url), "", 0, 4096, NULL, NULL,
	  "NATS server URL(s), comma-separated (nats://host:4222). Empty: the relay stays off; `make run` starts a local nats-server -js under var/nats and sets this." },
	{ "credentials", CFG_STR, K(events_cfg, credentials), "", 0, 1024, NULL, NULL,
	  "A file with the NATS credentials, readable by its owner only: a .creds file (user JWT and NKey seed), or one line user:password, or one line holding a token. Empty: none. `make run` points it at the local server's generated one." },
	{ "subject_prefix", CFG_STR, K(events_cfg, subject_prefix), "ridehail", 1, 128, NULL, NULL,
	  "Events are published on <subject_prefix>.<event_type>, e.g. ridehail.trip.finished." },
	{ "stream", CFG_STR, K(events_cfg, stream), "RIDEHAIL", 1, 64, NULL, NULL,
	  "JetStream stream holding <subject_prefix>.>; created if missing (an existing one is used as it is)." },
	{ "retention", CFG_ENUM, K(events_cfg, retention), "limits", 0, 0, NULL, events_retentions,
	  "Retention policy of a stream the relay creates: limits (by max_age), interest or workqueue." },
	{ "storage", CFG_ENUM, K(events_cfg, storage), "file", 0, 0, NULL, events_storages,
	  "Storage of a stream the relay creates." },
	{ "max_age", CFG_DURATION, K(events_cfg, max_age_ms), "7d", 0, SEC(3650.0 * 86400), "s", NULL,
	  "A created stream keeps messages this long (0: no age limit)." },
	{ "duplicate_window", CFG_DURATION, K(events_cfg, duplicate_window_ms), "10m", SEC(1), SEC(86400), "s", NULL,
	  "JetStream drops a message whose id (the event_id) it has seen within this window: it must cover a crash between publish and mark, and a restart." },
	{ "batch_size", CFG_INT, K(events_cfg, batch_size), "256", 1, 4096, "events", NULL,
	  "Outbox rows claimed and published together (at most one per trip at a time, so per-trip order holds)." },
	{ "poll_interval", CFG_DURATION, K(events_cfg, poll_interval_ms), "10ms", MS(1), SEC(60), "s", NULL,
	  "How often an idle relay looks for newly committed rows (a busy one goes on at once)." },
	{ "ack_timeout", CFG_DURATION, K(events_cfg, ack_timeout_ms), "5s", MS(100), SEC(600), "s", NULL,
	  "A publish JetStream has not acknowledged by then counts as failed; the row is published again later." },
	{ "connect_timeout", CFG_DURATION, K(events_cfg, connect_timeout_ms), "2s", MS(100), SEC(600), "s", NULL,
	  "Connecting to NATS (each attempt)." },
	{ "retry_min", CFG_DURATION, K(events_cfg, retry_min_ms), "100ms", MS(1), SEC(600), "s", NULL,
	  "After a failure the relay waits this long, doubling on each further failure..." },
	{ "retry_max", CFG_DURATION, K(events_cfg, retry_max_ms), "5s", MS(1), SEC(3600), "s", NULL,
	  "...up to this." },
	{ "lease_ttl", CFG_DURATION, K(events_cfg, lease_ttl_ms), "15s", SEC(1), SEC(3600), "s", NULL,
	  "Daemons sharing a database publish through one relay at a time, the holder of a lease renewed with every batch; another takes over once it has expired. Keep it above ack_timeout." },
	{ "stats_interval", CFG_DURATION, K(events_cfg, stats_interval_ms), "1s", MS(100), SEC(3600), "s", NULL,
	  "How often the backlog metrics are read from the outbox." },
	{ "outbox_retention", CFG_DURATION, K(events_cfg, outbox_retention_ms), "7d", 0, SEC(3650.0 * 86400), "s", NULL,
	  "Published outbox rows older than this are deleted, in batches (trip_events keeps every trip's history for good; unpublished rows are never deleted). 0: keep them all. Keep it above events.duplicate_window." },
	{ "prune_batch", CFG_INT, K(events_cfg, prune_batch), "1000", 1, 100000, "rows", NULL,
	  "Published outbox rows deleted per statement; the next batch follows at once while there are more." },
	{ 0 }
};

static const struct cfg_key webhooks_keys[] = {
	{ "urls", CFG_STR, K(webhooks_cfg, urls), "", 0, 4096, NULL, NULL,
	  "http:// endpoints every published event is POSTed to, comma-separated (at most 8). Empty: no webhooks. They are fed from the event stream, so they need events.sink = nats." },
	{ "secret", CFG_STR, K(webhooks_cfg, secret), "", 0, 1024, NULL, NULL,
	  "Key of the Ridehail-Signature header: v1=hex(HMAC-SHA-256(secret, \"<Ridehail-Timestamp>.<body>\")). Required with urls.",
	  CFG_F_SECRET },
	{ "timeout", CFG_DURATION, K(webhooks_cfg, timeout_ms), "5s", MS(100), SEC(300), "s", NULL,
	  "One delivery, connect to response status; past it the delivery has failed." },
	{ "max_attempts", CFG_INT, K(webhooks_cfg, max_attempts), "8", 1, 1000, "attempts", NULL,
	  "Failed deliveries of one event before it is given up and written to webhook_dead_letters." },
	{ "retry_min", CFG_DURATION, K(webhooks_cfg, retry_min_ms), "1s", MS(10), SEC(3600), "s", NULL,
	  "Delay before the second attempt, doubling with each further failure..." },
	{ "retry_max", CFG_DURATION, K(webhooks_cfg, retry_max_ms), "5m", MS(10), SEC(86400), "s", NULL,
	  "...up to this." },
	{ 0 }
};

static const struct cfg_key console_keys[] = {
	{ "update_interval", CFG_DURATION, K(console_cfg, update_interval_ms), "1s", MS(100), SEC(60), "s", NULL,
	  "One console.update per this to every subscribed console: a driver's move reaches a console within it (docs/console.md)." },
	{ "alert_request_wait", CFG_DURATION, K(console_cfg, alert_request_wait_ms), "90s", 0, SEC(86400), "s", NULL,
	  "Alert request_wait while a trip has been searching longer than this; 0: off." },
	{ "alert_match_rate", CFG_DBL, K(console_cfg, alert_match_rate), "0.8", 0, 1, "share", NULL,
	  "Alert match_rate while the share of searches matched over the last 15 minutes is below this; 0: off." },
	{ "alert_min_outcomes", CFG_INT, K(console_cfg, alert_min_outcomes), "10", 1, 1000000, "searches", NULL,
	  "... judged once this many searches ended in those 15 minutes." },
	{ 0 }
};

static bool cfg_tariff_validate(const void *section, char *err, size_t errlen)
{
	const struct tariff_cfg *t = section;
	for (const char *c = t->currency; *c; c++) {
		if (*c < 'A' || *c > 'Z') {
			snprintf(err, errlen, "currency must be three capital letters (ISO 4217), not \"%s\"", t->currency);
			return false;
		}
	}
	return true;
}

static const struct cfg_key share_keys[] = {
	{ "vehicle_type", CFG_STR, K(share_cfg, vehicle_type), "standard", 1, 31, NULL, NULL,
	  "The vehicle type (a [tariff.<name>]) shared cars run on: its fare prices the rate card, its seats are the car's." },
	{ "max_detour", CFG_DBL, K(share_cfg, max_detour), "0.15", 0, 2, "fraction", NULL,
	  "Every rider of a shared trip rides at most (1 + this) x the time of their direct route; a booking is inserted into a trip only if that holds for everyone in it." },
	{ "express_detour", CFG_DBL, K(share_cfg, express_detour), "0.05", 0, 2, "fraction", NULL,
	  "The detour bound of an express booking (it pays share.express_premium for it)." },
	{ "max_wait", CFG_DURATION, K(share_cfg, max_wait_ms), "5m", SEC(10), SEC(3600), "s", NULL,
	  "A rider not yet picked up is picked up at most this long after booking; an insertion that would make anyone wait longer is not made." },
	{ "rate_card_ttl", CFG_DURATION, K(share_cfg, rate_card_ttl_ms), "2m", SEC(1), SEC(3600), "s", NULL,
	  "A rate card may be booked this long after it was issued." },
	{ "discount", CFG_DBL, K(share_cfg, discount), "0.3", 0, 1, "fraction", NULL,
	  "One seat, normal: the tariff's fare for the trip alone less this fraction." },
	{ "express_premium", CFG_DBL, K(share_cfg, express_premium), "0.15", 0, 10, "fraction", NULL,
	  "Express (a tighter detour bound) costs this fraction more than normal." },
	{ "second_seat", CFG_DBL, K(share_cfg, second_seat), "0.6", 0, 10, "fraction", NULL,
	  "A second seat adds this fraction of the one-seat price." },
	{ "corporate_discount", CFG_DBL, K(share_cfg, corporate_discount), "0.05", 0, 1, "fraction", NULL,
	  "Corporate options (a card asked with corporate: true) cost this fraction less." },
	{ "search_radius", CFG_INT, K(share_cfg, search_radius_m), "3000", 100, 100000, "m", NULL,
	  "Open shared trips whose car is this close to a pickup are tried for an insertion, and drivers this close for a new trip." },
	{ "weight_detour", CFG_DBL, K(share_cfg, weight_detour), "1", 0, 100, NULL, NULL,
	  "The insertion score (lower wins) is added seconds + weight_detour x the new rider's detour seconds + weight_fairness x the largest delay imposed on one rider already in the car." },
	{ "weight_fairness", CFG_DBL, K(share_cfg, weight_fairness), "0.5", 0, 100, NULL, NULL,
	  "See weight_detour." },
	{ 0 }
};

static const char *const default_vehicle_types[] = { "standard", NULL };

static const struct cfg_section server_section = {
	.name = "server", .keys = server_keys, .offset = offsetof(struct rh_config, server),
	.help = "Process lifecycle.",
};
static const struct cfg_section log_section = {
	.name = "log", .keys = log_keys, .offset = offsetof(struct rh_config, log),
	.help = "Logging.",
};
static const struct cfg_section http_section = {
	.name = "http", .keys = http_keys, .offset = offsetof(struct rh_config, http),
	.help = "The HTTP listener (REST and the WebSocket upgrade share it).", .validate = cfg_http_validate,
};
static const struct cfg_section database_section = {
	.name = "database", .keys = database_keys, .offset = offsetof(struct rh_config, database),
	.help = "PostgreSQL + PostGIS, the source of truth.",
};

static const struct cfg_section admin_section = {
	.name = "admin", .keys = admin_keys, .offset = offsetof(struct rh_config, admin),
	.help = "The operator's admin API.", .validate = cfg_admin_validate,
};

static const struct cfg_section auth_section = {
	.name = "auth", .keys = auth_keys, .offset = offsetof(struct rh_config, auth),
	.help = "Accounts, passwords and access tokens.", .validate = cfg_auth_validate,
};
static const struct cfg_section ws_section = {
	.name = "ws", .keys = ws_keys, .offset = offsetof(struct rh_config, ws),
	.help = "WebSocket connections (GET /v1/ws on the HTTP listener).",
};
static const struct cfg_section presence_section = {
	.name = "presence", .keys = presence_keys, .offset = offsetof(struct rh_config, presence),
	.help = "Drivers online: the in-memory grid (hot path) and location history (cold path).",
};
/* The time zone must be one the C library can read: "UTC", or a zone file
 * of the system's tz database. */
static bool cfg_pricing_validate(const void *section, char *err, size_t errlen)
{
	const struct pricing_cfg *c = section;
	const char *tz = c->timezone;
	if (strcmp(tz, "UTC") == 0)
		return true;
	char path[160];
	snprintf(path, sizeof path, "/usr/share/zoneinfo/%s", tz);
	FILE *f = strstr(tz, "..") || tz[0] == '/' ? NULL : fopen(path, "rb");
	char magic[4] = { 0 };
	bool ok = f && fread(magic, 1, 4, f) == 4 && memcmp(magic, "TZif", 4) == 0;
	if (f)
		fclose(f);
	if (!ok)
		snprintf(err, errlen, "timezone \"%s\" is not a zone of the tz database (/usr/share/zoneinfo)", tz);
	return ok;
}
static const struct cfg_section pricing_section = {
	.name = "pricing", .keys = pricing_keys, .offset = offsetof(struct rh_config, pricing),
	.help = "Fare estimates and quotes.", .validate = cfg_pricing_validate,
};
static bool cfg_surge_validate(const void *section, char *err, size_t errlen)
{
	const struct surge_cfg *c = section;
	if (c->curve_ratio.n != c->curve_multiplier.n) {
		snprintf(err, errlen, "curve_ratio has %d knots, curve_multiplier %d: give one multiplier per ratio",
			 c->curve_ratio.n, c->curve_multiplier.n);
		return false;
	}
	for (int i = 1; i < c->curve_multiplier.n; i++) {
		if (c->curve_multiplier.v[i] < c->curve_multiplier.v[i - 1]) {
			snprintf(err, errlen, "curve_multiplier must not decrease (%g after %g)", c->curve_multiplier.v[i],
				 c->curve_multiplier.v[i - 1]);
			return false;
		}
	}
	return true;
}
static const struct cfg_section surge_section = {
	.name = "surge", .keys = surge_keys, .offset = offsetof(struct rh_config, surge),
	.help = "Surge pricing: demand and supply per hexagonal cell, a multiplier of their ratio, smoothed and capped (docs/pricing.md).",
	.validate = cfg_surge_validate,
};
static const struct cfg_section payments_section = {
	.name = "payments", .keys = payments_keys, .offset = offsetof(struct rh_config, payments),
	.help = "The payment hand-off: payment.requested out, the provider's signed result in.",
};
static const struct cfg_section trip_section = {
	.name = "trip", .keys = trip_keys, .offset = offsetof(struct rh_config, trip),
	.help = "Ride requests, the trip state machine, cancellation and final-fare rules.",
};
static const struct cfg_section match_section = {
	.name = "match", .keys = match_keys, .offset = offsetof(struct rh_config, match),
	.help = "Dispatch: candidates, offers, timeouts, radius widening and the demand queue.",
};
static const struct cfg_section share_section = {
	.name = "share", .keys = share_keys, .offset = offsetof(struct rh_config, share),
	.help = "Shared rides: several riders in one car, their detour and wait bounded, the eight-way rate card.",
};
static const struct cfg_section routing_section = {
	.name = "routing", .keys = routing_keys, .offset = offsetof(struct rh_config, routing),
	.help = "Roads: the OpenStreetMap car graph behind GET /v1/route and road ETAs.",
};
static const struct cfg_section events_section = {
	.name = "events", .keys = events_keys, .offset = offsetof(struct rh_config, events),
	.help = "The outbox relay: committed trip events published in order to NATS JetStream.",
};
static const struct cfg_section webhooks_section = {
	.name = "webhooks", .keys = webhooks_keys, .offset = offsetof(struct rh_config, webhooks),
	.help = "Signed webhooks: every published event POSTed to HTTP endpoints, with retries, backoff and a dead letter.",
};
static const struct cfg_section console_section = {
	.name = "console", .keys = console_keys, .offset = offsetof(struct rh_config, console),
	.help = "The operator's console (/console): its live feed and alert thresholds; the database being unavailable is always an alert.",
};
static const struct cfg_section tariff_section = {
	.name = "tariff", .keys = tariff_keys, .offset = offsetof(struct rh_config, tariff),
	.help = "Fares per vehicle type: one [tariff.<type>] section per type the operator runs; the section names are the vehicle types drivers and riders may use. Each is written to the pricing book as its type's tariff (a new version when it changes) until an operator writes one through the admin API; then the database's stands (docs/pricing.md).",
	.max_instances = TARIFF_MAX, .instance_size = sizeof(struct tariff_cfg),
	.count_offset = offsetof(struct rh_config, ntariffs), .default_instances = default_vehicle_types,
	.validate = cfg_tariff_validate,
};

const struct cfg_section *const cfg_sections[] = {
	&server_section,
	&log_section,
	&http_section,
	&database_section,
	&admin_section,
	&auth_section,
	&ws_section,
	&presence_section,
	&pricing_section,
	&surge_section,
	&payments_section,
	&trip_section,
	&match_section,
	&share_section,
	&routing_section,
	&events_section,
	&webhooks_section,
	&console_section,
	&tariff_section,
	NULL,
};
