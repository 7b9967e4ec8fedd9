#include "../unit.h"

#include "core/fdbudget.h"
#include "core/settings.h"

static void base_cfg(struct rh_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->database.pool_size = 4;
	cfg->events.sink = EVENTS_SINK_NONE;
}

UNIT_TEST(fdbudget_derived_caps_leave_the_daemon_its_descriptors)
{
	struct rh_config cfg;
	struct fd_budget b;
	base_cfg(&cfg);
	fd_budget_plan(&cfg, 20000, &b);
	/* 18 fixed + 2 per pool connection + the migrator + the 503 slack + 32 */
	CHECK_EQ_INT(b.reserved, 18 + 8 + 1 + FD_BUDGET_REJECT_SLACK + 32);
	CHECK_EQ_INT(b.clients, 20000 - (int64_t)b.reserved);
	CHECK_EQ_INT(b.http_max, b.clients);
	CHECK_EQ_INT(b.ws_max, b.clients - b.clients / 10);
	CHECK(!b.http_short && !b.ws_short);

	/* NATS and two webhook endpoints: 2 per NATS connection, 1 per delivery */
	struct fd_budget b2;
	char url[] = "nats://127.0.0.1:4222", hooks[] = "http://a/x, http://b/y";
	cfg.events.sink = EVENTS_SINK_NATS;
	cfg.events.url = url;
	cfg.webhooks.urls = hooks;
	fd_budget_plan(&cfg, 20000, &b2);
	CHECK_EQ_INT(b2.reserved - b.reserved, 2 * 3 + 2);
}

UNIT_TEST(fdbudget_configured_caps_that_do_not_fit_are_lowered)
{
	struct rh_config cfg;
	struct fd_budget b;
	base_cfg(&cfg);
	cfg.http.max_connections = 20000; /* the old default: the limit itself */
	cfg.ws.max_connections = 200000;
	fd_budget_plan(&cfg, 20000, &b);
	CHECK(b.http_short && b.ws_short);
	CHECK(b.http_max < 20000 - 100);
	CHECK(b.ws_max < b.http_max);
	/* ones that fit are kept */
	cfg.http.max_connections = 500;
	cfg.ws.max_connections = 300;
	fd_budget_plan(&cfg, 20000, &b);
	CHECK(!b.http_short && !b.ws_short);
	CHECK_EQ_INT(b.http_max, 500);
	CHECK_EQ_INT(b.ws_max, 300);
}

UNIT_TEST(fdbudget_tiny_and_unlimited_limits)
{
	struct rh_config cfg;
	struct fd_budget b;
	base_cfg(&cfg);
	fd_budget_plan(&cfg, 64, &b);
	CHECK_EQ_INT(b.clients, 0);
	CHECK_EQ_INT(b.http_max, 1);
	CHECK_EQ_INT(b.ws_max, 1);
	fd_budget_plan(&cfg, UINT64_MAX, &b);
	CHECK_EQ_INT(b.clients, 1000000);
}
