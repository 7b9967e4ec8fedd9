/* The console's alerts (docs/console.md, docs/events.md): each judged every
 * tick against its cause, raised at once, cleared only once the cause has
 * been gone for console.alert_clear_after (hysteresis: a cause that comes
 * and goes keeps one alert raised, not a stream of them). Every raise and
 * clear is logged, counted, and written as an outbox event (alert.raised,
 * alert.cleared; sql/functions/50_console_alerts.sql). The events wait in
 * order in a small queue while the database is away (the database alert's
 * own events are written once it is back) and are written one at a time. */
#include <stdio.h>
#include <string.h>

#include "console_internal.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/settings.h"
#include "core/strbuf.h"
#include "store/db.h"

const char *const console_alert_names[CONSOLE_ALERTS] = { "request_wait", "match_rate", "database" };

static struct db_stmt alerts_st_raised = {
	"console_alert_raised", "SELECT console_alert_raised($1::uuid, $2, $3, $4::timestamptz)", 4
};
static struct db_stmt alerts_st_cleared = {
	"console_alert_cleared", "SELECT console_alert_cleared($1::uuid, $2::timestamptz)", 2
};

static void console_alerts_enqueue(struct console_alerts *al, enum console_alert a, bool cleared, int64_t at)
{
	if (al->nqueued == CONSOLE_ALERT_QUEUE) {
		struct console_alert_event *old = &al->queue[al->qhead];
		log_warn(NULL, "console alerts: %zu events waiting for the database; the oldest (%s %s) is dropped",
			 (size_t)CONSOLE_ALERT_QUEUE, console_alert_names[old->alert], old->cleared ? "cleared" : "raised");
		al->qhead = (al->qhead + 1) % CONSOLE_ALERT_QUEUE;
		al->nqueued--;
	}
	struct console_alert_event *e = &al->queue[(al->qhead + al->nqueued) % CONSOLE_ALERT_QUEUE];
	memset(e, 0, sizeof *e);
	e->alert = a;
	e->cleared = cleared;
	e->id = al->id[a];
	e->at = at;
	rh_copy(e->detail, sizeof e->detail, al->detail[a]);
	al->nqueued++;
}

void console_alerts_judge(struct console_alerts *al, enum console_alert a, bool cause, int64_t wall, int64_t mono,
			  const char *detail)
{
	const char *name = console_alert_names[a];
	if (cause) {
		al->calm_since[a] = 0;
		rh_copy(al->detail[a], sizeof al->detail[a], detail);
		if (al->since[a])
			return;
		al->since[a] = wall;
		uuid_v4(&al->id[a]);
		log_warn(NULL, "console alert raised: %s: %s", name, detail);
		metric_inc(al->m_raised[a]);
		metric_set(al->m_active[a], 1);
		console_alerts_enqueue(al, a, false, wall);
		return;
	}
	if (!al->since[a])
		return;
	if (!al->calm_since[a]) {
		al->calm_since[a] = mono;
		al->calm_wall[a] = wall;
	}
	if (mono - al->calm_since[a] < al->clear_after_ms)
		return;
	/* cleared when the cause went, said now that it stayed gone */
	log_info(NULL, "console alert cleared: %s, raised %lld s ago", name, (long long)((wall - al->since[a]) / 1000));
	console_alerts_enqueue(al, a, true, al->calm_wall[a]);
	al->since[a] = 0;
	al->calm_since[a] = 0;
	metric_set(al->m_active[a], 0);
}

static void console_alerts_written(void *arg, const struct db_result *res)
{
	struct console_alerts *al = arg;
	al->writing = false;
	if (al->orphaned) { /* the console went while this was at the database */
		rh_free(al);
		return;
	}
	if (res->err != RH_OK)
		return; /* the database is away: the next tick tries again */
	struct console_alert_event *e = &al->queue[al->qhead];
	if (db_rows(res) == 1 && db_get(res, 0, 0) && db_get(res, 0, 0)[0] == 't')
		metric_inc(al->m_written);
	log_debug(NULL, "console alert %s %s written", console_alert_names[e->alert], e->cleared ? "cleared" : "raised");
	al->qhead = (al->qhead + 1) % CONSOLE_ALERT_QUEUE;
	al->nqueued--;
	console_alerts_flush(al);
}

void console_alerts_flush(struct console_alerts *al)
{
	if (!al->db || al->writing || !al->nqueued)
		return;
	const struct console_alert_event *e = &al->queue[al->qhead];
	char id[37], at[32];
	uuid_format(&e->id, id);
	rh_format_rfc3339(e->at, at);
	al->writing = true;
	if (e->cleared) {
		const char *params[] = { id, at };
		db_query(al->db, &alerts_st_cleared, params, console_alerts_written, al);
	} else {
		const char *params[] = { id, console_alert_names[e->alert], e->detail, at };
		db_query(al->db, &alerts_st_raised, params, console_alerts_written, al);
	}
}

static void console_alerts_put_text(struct strbuf *sb, const char *s)
{
	for (; *s; s++) {
		if (*s == '"' || *s == '\\') {
			sb_putc(sb, '\\');
			sb_putc(sb, *s);
		} else {
			sb_putc(sb, (unsigned char)*s < 0x20 ? ' ' : *s);
		}
	}
}

void console_alerts_put(const struct console_alerts *al, struct strbuf *sb)
{
	sb_puts(sb, ",\"alerts\":[");
	bool first = true;
	for (int a = 0; a < CONSOLE_ALERTS; a++) {
		if (!al->since[a])
			continue;
		char ts[32], id[37];
		rh_format_rfc3339(al->since[a], ts);
		uuid_format(&al->id[a], id);
		sb_puts(sb, first ? "{\"name\":\"" : ",{\"name\":\"");
		first = false;
		sb_puts(sb, console_alert_names[a]);
		sb_puts(sb, "\",\"id\":\"");
		sb_puts(sb, id);
		sb_puts(sb, "\",\"since\":\"");
		sb_puts(sb, ts);
		sb_puts(sb, "\",\"detail\":\"");
		console_alerts_put_text(sb, al->detail[a]);
		sb_puts(sb, "\"}");
	}
	sb_putc(sb, ']');
}

struct console_alerts *console_alerts_new(struct db *db, struct metrics *m, int64_t clear_after_ms)
{
	struct console_alerts *al = RH_NEW(struct console_alerts);
	al->db = db;
	al->clear_after_ms = clear_after_ms;
	static const char *const alert_label[] = { "alert", NULL };
	struct metric_family *fa = metrics_counter(m, "ridehail_console_alerts_total",
						   "Console alerts raised, by alert (request_wait, match_rate, database).",
						   alert_label);
	struct metric_family *fg = metrics_gauge(m, "ridehail_console_alert_active",
						 "1 while the console alert is raised, by alert.", alert_label);
	for (int a = 0; a < CONSOLE_ALERTS; a++) {
		al->m_raised[a] = metric_cell(fa, (const char *const[]){ console_alert_names[a] });
		al->m_active[a] = metric_cell(fg, (const char *const[]){ console_alert_names[a] });
	}
	al->m_written = metric_cell(metrics_counter(m, "ridehail_console_alert_events_total",
						    "alert.raised and alert.cleared events written to the outbox.", NULL),
				    NULL);
	if (db) {
		db_register(db, &alerts_st_raised);
		db_register(db, &alerts_st_cleared);
	}
	return al;
}

void console_alerts_free(struct console_alerts *al)
{
	if (al && al->writing)
		al->orphaned = true; /* freed by the answer, which the pool gives exactly once */
	else
		rh_free(al);
}
