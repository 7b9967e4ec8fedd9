#include "../unit.h"

#include "core/metrics.h"

UNIT_TEST(metrics_exposition_format)
{
	struct metrics *m = metrics_new();
	static const char *const lbl[] = { "route", "status", NULL };
	struct metric_family *c = metrics_counter(m, "t_requests_total", "Requests.\nSecond line \\ here.", lbl);
	metric_add(metric_cell(c, (const char *[]){ "/a", "200" }), 3);
	metric_inc(metric_cell(c, (const char *[]){ "/a\"b", "500" }));
	/* the same labels give the same cell */
	CHECK(metric_cell(c, (const char *[]){ "/a", "200" })->value == 3);
	struct metric_family *g = metrics_gauge(m, "t_gauge", "A gauge.", NULL);
	metric_set(metric_cell(g, NULL), 2.5);
	double bounds[] = { 0.1, 1 };
	struct metric_family *h = metrics_histogram(m, "t_seconds", "Latency.", NULL, bounds, 2);
	struct metric_cell *hc = metric_cell(h, NULL);
	metric_observe(h, hc, 0.05);
	metric_observe(h, hc, 0.5);
	metric_observe(h, hc, 7);
	struct strbuf sb;
	sb_init(&sb, 1 << 20);
	metrics_expose(m, &sb);
	const char *want =
		"# HELP t_requests_total Requests.\\nSecond line \\\\ here.\n"
		"# TYPE t_requests_total counter\n"
		"t_requests_total{route=\"/a\",status=\"200\"} 3\n"
		"t_requests_total{route=\"/a\\\"b\",status=\"500\"} 1\n"
		"# HELP t_gauge A gauge.\n"
		"# TYPE t_gauge gauge\n"
		"t_gauge 2.5\n"
		"# HELP t_seconds Latency.\n"
		"# TYPE t_seconds histogram\n"
		"t_seconds_bucket{le=\"0.1\"} 1\n"
		"t_seconds_bucket{le=\"1\"} 2\n"
		"t_seconds_bucket{le=\"+Inf\"} 3\n"
		"t_seconds_sum 7.55\n"
		"t_seconds_count 3\n";
	CHECK_EQ_STR(sb.buf, want);
	sb_fini(&sb);
	metrics_free(m);
}
