#include "core/fdbudget.h"

#include <string.h>
#include <sys/resource.h>

#include "core/log.h"
#include "core/settings.h"

/* Descriptors the daemon holds besides client sockets:
 *   3 standard streams, 2 for the log (a reopen holds old and new a moment),
 *   1 listener, 1 epoll, 2 for libevent's signal and wake-up, 1 spare kept
 *   for refusing clients when descriptors run out (net/http.c), 4 eventfds
 *   of worker pools, 1 for the map while it loads, 1 for the pid file or a
 *   /proc read (metrics), 2 for getaddrinfo's resolver;
 *   per database connection 2 (a reconnect may briefly hold old and new),
 *   plus 1 for the migrator's own connection;
 *   per NATS connection 2 (the relay's, and each webhook endpoint's), and 1
 *   per endpoint for its delivery socket;
 *   FD_BUDGET_REJECT_SLACK for clients being told 503;
 *   and 32 to spare (libraries' own, a debugger attaching). */
#define FIXED 18
#define SPARE 32

static int fd_budget_webhook_endpoints(const struct rh_config *cfg)
{
	const char *u = cfg->webhooks.urls;
	if (!u || !*u)
		return 0;
	int n = 1;
	for (; *u; u++)
		n += *u == ',';
	return n > 8 ? 8 : n;
}

static int64_t fd_budget_clamp_cap(int64_t configured, int64_t fits, bool *short_out)
{
	*short_out = configured > fits;
	return configured > 0 && configured < fits ? configured : fits;
}

void fd_budget_plan(const struct rh_config *cfg, uint64_t nofile, struct fd_budget *out)
{
	memset(out, 0, sizeof *out);
	out->nofile = nofile;
	int endpoints = fd_budget_webhook_endpoints(cfg);
	int nats = cfg->events.sink == EVENTS_SINK_NATS && cfg->events.url && *cfg->events.url ? 1 + endpoints : 0;
	out->reserved = FIXED + 2 * (uint64_t)cfg->database.pool_size + 1 + 2 * (uint64_t)nats + (uint64_t)endpoints +
			FD_BUDGET_REJECT_SLACK + SPARE;
	/* "no limit" (or one past what a table could count) is a million */
	uint64_t usable = nofile > 1000000 + out->reserved ? 1000000 : nofile > out->reserved ? nofile - out->reserved : 0;
	out->clients = (int64_t)usable;
	out->http_max = fd_budget_clamp_cap(cfg->http.max_connections, out->clients, &out->http_short);
	/* drivers' sockets leave a tenth to REST clients */
	int64_t ws_fits = out->http_max - (out->http_max / 10 > 1 ? out->http_max / 10 : 1);
	if (ws_fits < 1)
		ws_fits = 1;
	out->ws_max = fd_budget_clamp_cap(cfg->ws.max_connections, ws_fits, &out->ws_short);
	if (out->http_max < 1)
		out->http_max = 1; /* one client at a time: the limit is absurdly low, and we said so */
}

void fd_budget_apply(struct rh_config *cfg, struct fd_budget *out)
{
	struct rlimit rl;
	uint64_t nofile = UINT64_MAX;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		/* every socket is a descriptor: take the whole hard limit, as
		 * nginx's worker_rlimit_nofile would */
		if (rl.rlim_cur < rl.rlim_max) {
			struct rlimit want = { rl.rlim_max, rl.rlim_max };
			if (setrlimit(RLIMIT_NOFILE, &want) == 0)
				rl = want;
		}
		if (rl.rlim_cur != RLIM_INFINITY)
			nofile = (uint64_t)rl.rlim_cur;
	}
	int64_t http_cfg = cfg->http.max_connections, ws_cfg = cfg->ws.max_connections;
	fd_budget_plan(cfg, nofile, out);
	cfg->http.max_connections = out->http_max;
	cfg->ws.max_connections = out->ws_max;
	if (out->http_short || out->ws_short || out->clients < 1)
		log_warn(NULL,
			 "open-file limit is %llu: after %llu descriptors kept for the database pool, NATS, webhooks, "
			 "the map and logs it leaves %lld client connections, below http.max_connections %lld / "
			 "ws.max_connections %lld; serving up to %lld (%lld WebSocket); raise it with ulimit -n / LimitNOFILE",
			 (unsigned long long)nofile, (unsigned long long)out->reserved, (long long)out->clients,
			 (long long)http_cfg, (long long)ws_cfg, (long long)out->http_max, (long long)out->ws_max);
	else
		log_info(NULL, "connections: up to %lld (%lld WebSocket); open-file limit %llu, %llu kept for the "
			       "database pool, NATS, webhooks, the map and logs",
			 (long long)out->http_max, (long long)out->ws_max, (unsigned long long)nofile,
			 (unsigned long long)out->reserved);
}
