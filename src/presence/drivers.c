/* A driver's WebSocket sessions as presence sees them: admission (the
 * account is loaded: usable? which vehicle type? where does it stand?), the
 * session opening and closing, and the driver's own availability
 * (driver.status.changed: available or offline), written to the database
 * before it counts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "net/problem.h"
#include "net/ws.h"
#include "net/ws_frame.h"
#include "presence_internal.h"
#include "store/db.h"

struct db_stmt presence_st_driver_load = {
	"presence_driver_load", "SELECT vehicle_type, status, version, disabled FROM drivers WHERE id = $1", 1,
};
static struct db_stmt presence_st_driver_status = {
	"presence_driver_status",
	"UPDATE drivers SET status = $2, version = version + 1, updated_at = now()"
	" WHERE id = $1 AND status IN ('offline', 'available') RETURNING version",
	2,
};

void presence_rec_load_row(struct presence *p, struct driver_rec *r, const char *vehicle, const char *status,
			   const char *version, int64_t now)
{
	int v = presence_vehicle_index(p, vehicle);
	int st = driver_status_parse(status);
	r->vehicle = v < 0 ? 0 : v;
	if (st >= 0 && !r->status_pending && !r->reserving)
		presence_rec_set_status(p, r, (enum driver_status)st, strtoll(version, NULL, 10), now);
}

/* ------------------------------------------------------------ admission */

struct presence_admit {
	struct presence *p;
	struct gw_pending *pending;
	struct uuid id;
};

static void presence_admit_loaded(void *arg, const struct db_result *res)
{
	struct presence_admit *a = arg;
	struct presence *p = a->p;
	if (res->err != RH_OK) {
		gateway_refuse(a->pending, PROBLEM_DB_UNAVAILABLE, "cannot load the driver now; retry");
	} else if (db_rows(res) == 0) {
		gateway_refuse(a->pending, PROBLEM_FORBIDDEN, "no such driver");
	} else if (db_get(res, 0, 3)[0] == 't') {
		gateway_refuse(a->pending, PROBLEM_FORBIDDEN, "this driver account is disabled");
	} else {
		struct driver_rec *r = presence_rec_get(p, &a->id);
		if (!r) {
			gateway_refuse(a->pending, PROBLEM_OVERLOADED, "too many drivers online");
		} else {
			presence_rec_load_row(p, r, db_get(res, 0, 0), db_get(res, 0, 1), db_get(res, 0, 2), presence_now(p));
			gateway_admit(a->pending, NULL);
		}
	}
	rh_free(a);
}

static void presence_driver_admit(struct gw_pending *pending, const struct auth_principal *who, void *ctx)
{
	struct presence *p = ctx;
	struct presence_admit *a = RH_NEW(struct presence_admit);
	a->p = p;
	a->pending = pending;
	if (!uuid_parse(who->id, &a->id)) {
		rh_free(a);
		gateway_refuse(pending, PROBLEM_FORBIDDEN, "malformed subject");
		return;
	}
	const char *params[] = { who->id };
	db_query(p->deps.db, &presence_st_driver_load, params, presence_admit_loaded, a);
}

static void presence_driver_opened(struct session *s, void *ctx)
{
	struct presence *p = ctx;
	struct uuid id;
	uuid_parse(s->who.id, &id);
	struct driver_rec *r = presence_rec_get(p, &id); /* (evicted since admission: made again) */
	if (!r) {
		gateway_close(s, WS_CLOSE_TRY_AGAIN, "too many drivers online");
		return;
	}
	s->owner = r;
	presence_rec_set_connected(p, r, true);
	presence_tell_status(p, r, "session_opened", NULL); /* where the app stands */
	if (p->hooks.opened)
		p->hooks.opened(p->hooks.ctx, &r->id, presence_now(p));
}

static void presence_driver_closed(struct session *s, void *ctx, uint16_t code)
{
	struct presence *p = ctx;
	struct driver_rec *r = s->owner;
	(void)code;
	/* A session replaced by a newer one has lost its owner: the newer one
	 * holds the driver. */
	if (r)
		presence_rec_set_connected(p, r, false);
}

/* ------------------------------------------------------------ availability */

static const char *const presence_settable[] = { "available", "offline", NULL };

static const struct jv_field presence_status_fields[] = {
	{ "driver_id", JV_UUID, JV_REQUIRED },
	{ "status", JV_STRING, JV_REQUIRED, 0, 0, presence_settable },
	{ "reason", JV_STRING, 0, 1, 64 },
	{ 0 },
};

struct presence_status_ctx {
	struct presence *p;
	struct uuid id;
	enum driver_status want;
	char correlation[37];
};

static void presence_status_written(void *arg, const struct db_result *res)
{
	struct presence_status_ctx *c = arg;
	struct presence *p = c->p;
	struct driver_rec *r = presence_rec_find(p, &c->id);
	if (r)
		r->status_pending = false;
	if (r && res->err == RH_OK && db_rows(res) == 1) {
		char id[37];
		uuid_format(&c->id, id);
		presence_rec_set_status(p, r, c->want, strtoll(db_get(res, 0, 0), NULL, 10), presence_now(p));
		log_info(NULL, "driver %s is %s (version %lld)", id, driver_status_name(r->status), (long long)r->version);
		presence_tell_status(p, r, "driver_request", c->correlation);
	} else if (r) {
		struct session *s = gateway_session_of(p->deps.gateway, &c->id);
		struct gw_reject rej;
		if (res->err != RH_OK)
			gw_reject_err(&rej, db_result_err(res), "save the change");
		else
			gw_reject_set(&rej, "invalid_state", "payload.status", "not now: you are %s", driver_status_name(r->status));
		if (s)
			gateway_reject(s, "driver.status.changed", c->correlation, &rej);
	}
	rh_free(c);
}

static bool presence_on_status(struct session *s, void *ctx, const cJSON *msg, const cJSON *pl, struct gw_reject *rej)
{
	struct presence *p = ctx;
	struct driver_rec *r = s->owner;
	if (!r)
		return true;
	if (strcmp(jv_str(pl, "driver_id"), s->who.id) != 0) {
		gw_reject_set(rej, "forbidden", "payload.driver_id", "driver_id must be your own id");
		return false;
	}
	enum driver_status want = (enum driver_status)driver_status_parse(jv_str(pl, "status"));
	if ((r->status != DRIVER_OFFLINE && r->status != DRIVER_AVAILABLE) || r->reserving) {
		gw_reject_set(rej, "invalid_state", "payload.status", "you are %s: finish or cancel first",
			      driver_status_name(r->reserving ? DRIVER_OFFERED : r->status));
		return false;
	}
	struct presence_status_ctx *c = RH_NEW(struct presence_status_ctx);
	c->p = p;
	c->id = r->id;
	c->want = want;
	snprintf(c->correlation, sizeof c->correlation, "%s", jv_str(msg, "event_id"));
	r->status_pending = true;
	const char *params[] = { s->who.id, driver_status_name(want) };
	db_query(p->deps.db, &presence_st_driver_status, params, presence_status_written, c);
	return true;
}

static const struct gw_message_type presence_status_type = {
	"driver.status.changed", ROLE_DRIVER, presence_status_fields, presence_on_status, NULL, NULL,
};

void presence_drivers_init(struct presence *p)
{
	db_register(p->deps.db, &presence_st_driver_status);
	p->status_type = presence_status_type;
	p->status_type.ctx = p;
	gateway_register(p->deps.gateway, &p->status_type);
	struct gw_role_hooks hooks = { .admit = presence_driver_admit, .opened = presence_driver_opened,
				       .closed = presence_driver_closed, .ctx = p, .one_session = true };
	gateway_set_role_hooks(p->deps.gateway, ROLE_DRIVER, &hooks);
}
