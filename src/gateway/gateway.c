#include "gateway/gateway.h"

#include <event2/event.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/settings.h"
#include "core/strbuf.h"
#include "core/uuid.h"
#include "net/http.h"
#include "net/ws.h"
#include "net/ws_frame.h"
#include "gateway/registry.h"

#define GW_MAX_TYPES 64
/* The subprotocols: the message shapes an app speaks. ridehail.v2 gets the
 * second version of the server messages that have one (docs/websocket.md,
 * "Versions"); ridehail.v1, or none, the first. */
#define SUBPROTOCOL_V1 "ridehail.v1"
#define SUBPROTOCOL_V2 "ridehail.v2"

const struct jv_field gw_envelope_fields[] = {
	[GW_ENV_EVENT_ID] = { "event_id", JV_UUID, JV_REQUIRED },
	[GW_ENV_EVENT_TYPE] = { "event_type", JV_STRING, JV_REQUIRED, 1, 64 },
	[GW_ENV_EVENT_VERSION] = { "event_version", JV_INTEGER, JV_REQUIRED, 1, 1000 },
	[GW_ENV_TIMESTAMP] = { "timestamp", JV_DATETIME, JV_REQUIRED },
	[GW_ENV_PRODUCER] = { "producer", JV_STRING, JV_REQUIRED, 1, 64 },
	[GW_ENV_CORRELATION_ID] = { "correlation_id", JV_UUID, JV_REQUIRED },
	[GW_ENV_PAYLOAD] = { "payload", JV_ANY_OBJECT, JV_REQUIRED },
	{ 0 },
};

struct gw_session {
	struct session pub;
	TAILQ_ENTRY(gw_session) link;
	enum auth_role role;
	struct gw_session *next_dead;
};
TAILQ_HEAD(session_list, gw_session);

struct gw_pending {
	struct gateway *gw;
	struct http_req *req;
	struct auth_principal who;
	int protocol; /* 1 or 2; 0: none asked */
};

struct gateway {
	struct gateway_deps deps;
	struct gw_registry registry;
	struct ws_hub *hub;
	/* Closed sessions are freed on the next loop turn, not inside the close:
	 * a close can happen inside a send (a slow reader), and the code that
	 * sent still holds the session (it sees ws == NULL). */
	struct gw_session *dead;
	struct event *reap_ev;
	const struct gw_message_type *types[GW_MAX_TYPES];
	struct metric_cell *m_messages[GW_MAX_TYPES]; /* by type, made on its first message */
	int ntypes;
	struct gw_role_hooks hooks[3]; /* rider, driver, operator */
	struct gw_opened_listener {
		unsigned roles;
		gw_opened_fn fn;
		void *ctx;
	} opened[GW_MAX_OPENED];
	int nopened;
	struct session_list sessions;
	int nsessions;
	struct metric_family *f_rejected, *f_messages, *f_sessions;
	struct metric_cell *m_sessions[3];
};

static int gw_role_slot(enum auth_role r) { return r == ROLE_RIDER ? 0 : r == ROLE_DRIVER ? 1 : 2; }

/* ------------------------------------------------------------ sending */

static void gw_envelope_open(struct strbuf *sb, const char *event_type, int version, const char *correlation)
{
	struct uuid id;
	char ids[37], ts[32], corr[37];
	uuid_v4(&id);
	uuid_format(&id, ids);
	rh_format_rfc3339(rh_wall_ms(), ts);
	if (!correlation) {
		struct uuid c;
		uuid_v4(&c);
		uuid_format(&c, corr);
		correlation = corr;
	}
	sb_printf(sb, "{\"event_id\":\"%s\",\"event_type\":\"%s\",\"event_version\":%d,\"timestamp\":\"%s\","
		      "\"producer\":\"ridehaild\",\"correlation_id\":\"%s\",\"payload\":",
		  ids, event_type, version, ts, correlation);
}

bool gateway_send_text(struct session *s, const char *event_type, const char *payload, const char *correlation)
{
	return gateway_send_text_v(s, event_type, 1, payload, correlation);
}

bool gateway_send_text_v(struct session *s, const char *event_type, int version, const char *payload,
			 const char *correlation)
{
	if (!s->ws)
		return false;
	struct strbuf sb;
	sb_init(&sb, 1u << 20);
	gw_envelope_open(&sb, event_type, version, correlation);
	sb_puts(&sb, payload);
	sb_putc(&sb, '}');
	bool ok = !sb.overflow && ws_send_text(s->ws, sb.buf, sb.len);
	sb_fini(&sb);
	return ok;
}

bool gateway_send(struct session *s, const char *event_type, cJSON *payload, const char *correlation)
{
	return gateway_send_v(s, event_type, 1, payload, correlation);
}

bool gateway_send_v(struct session *s, const char *event_type, int version, cJSON *payload, const char *correlation)
{
	if (!s->ws) {
		cJSON_Delete(payload);
		return false;
	}
	char *p = cJSON_PrintUnformatted(payload);
	cJSON_Delete(payload);
	bool ok = gateway_send_text_v(s, event_type, version, p, correlation);
	cJSON_free(p);
	return ok;
}

void gw_reject_set(struct gw_reject *rej, const char *reason, const char *field, const char *fmt, ...)
{
	va_list ap;
	memset(rej, 0, sizeof *rej);
	rej->reason = reason;
	snprintf(rej->field, sizeof rej->field, "%s", field ? field : "");
	va_start(ap, fmt);
	vsnprintf(rej->details, sizeof rej->details, fmt, ap);
	va_end(ap);
}

void gateway_reject(struct session *s, const char *command_type, const char *correlation, const struct gw_reject *rej)
{
	struct gateway *gw = s->gw;
	const char *lv[] = { rej->reason };
	metric_inc(metric_cell(gw->f_rejected, lv));
	cJSON *p = cJSON_CreateObject();
	if (command_type)
		cJSON_AddStringToObject(p, "command_type", command_type);
	else
		cJSON_AddNullToObject(p, "command_type");
	cJSON_AddStringToObject(p, "reason", rej->reason);
	if (rej->field[0] || rej->rule[0])
		cJSON_AddStringToObject(p, "field", rej->field); /* "" is the message itself */
	if (rej->rule[0])
		cJSON_AddStringToObject(p, "rule", rej->rule);
	cJSON_AddStringToObject(p, "details", rej->details);
	gateway_send(s, "command.rejected", p, correlation);
}

void gateway_close(struct session *s, uint16_t code, const char *reason)
{
	if (s->ws)
		ws_close(s->ws, code, reason);
}

int gateway_close_account(struct gateway *gw, const char *account_id, uint16_t code, const char *reason)
{
	int n = 0;
	struct gw_session *gs, *next;
	for (gs = TAILQ_FIRST(&gw->sessions); gs; gs = next) {
		next = TAILQ_NEXT(gs, link);
		if (gs->pub.ws && strcmp(gs->pub.who.id, account_id) == 0) {
			log_info(ws_logid(gs->pub.ws), "closing the session of %s: %s", account_id, reason);
			ws_close(gs->pub.ws, code, reason);
			n++;
		}
	}
	return n;
}

/* ------------------------------------------------------------ receiving */

/* Counts a rejection; true when the client has now sent too many (now: when
 * the message was read). */
static bool gw_too_many_rejections(struct session *s)
{
	int64_t now, wall;
	ws_rx_time(s->ws, &now, &wall);
	if (now - s->reject_window_ms >= 60000) {
		s->reject_window_ms = now;
		s->rejections = 0;
	}
	return ++s->rejections > s->gw->deps.ws->max_rejections;
}

static void gw_reject_counted(struct session *s, const char *type, const char *corr, const struct gw_reject *rej)
{
	if (gw_too_many_rejections(s)) {
		log_info(ws_logid(s->ws), "closing: more than %lld invalid messages a minute",
			 (long long)s->gw->deps.ws->max_rejections);
		gateway_reject(s, type, corr, rej);
		if (s->ws) /* (the reject itself may have dropped a slow reader) */
			ws_close(s->ws, WS_CLOSE_POLICY, "too many invalid messages");
		return;
	}
	gateway_reject(s, type, corr, rej);
}

static void gw_reject_invalid(struct session *s, const char *type, const char *corr, const struct jv_error *e,
			   const char *prefix)
{
	struct gw_reject rej;
	gw_reject_set(&rej, "validation_failed", NULL, "%s%s", prefix, e->message);
	snprintf(rej.field, sizeof rej.field, "%s%s", prefix, e->path);
	snprintf(rej.rule, sizeof rej.rule, "%s", e->keyword);
	gw_reject_counted(s, type, corr, &rej);
}

static int gw_find_type(struct gateway *gw, const char *type)
{
	for (int i = 0; i < gw->ntypes; i++)
		if (strcmp(gw->types[i]->event_type, type) == 0)
			return i;
	return -1;
}

static void gw_count_message(struct gateway *gw, int i)
{
	if (!gw->m_messages[i]) {
		const char *lv[] = { gw->types[i]->event_type };
		gw->m_messages[i] = metric_cell(gw->f_messages, lv);
	}
	metric_inc(gw->m_messages[i]);
}

/* The hot path: a message the scan reads whole (jv_scan: the commonest
 * shape of the commonest types, driver.location.updated) is handled from
 * its scanned values, with no tree. false leaves the message untouched for
 * the tree walk, which accepts it the same way or words the refusal. */
/* The newest version of a type this server takes. */
static int gw_type_max_version(const struct gw_message_type *t)
{
	return t->payload_v2 ? 2 : 1;
}

/* The payload's table for a version of the type. */
static const struct jv_field *gw_type_fields(const struct gw_message_type *t, int version)
{
	return version >= 2 && t->payload_v2 ? t->payload_v2 : t->payload;
}

struct scan_ctx {
	struct gateway *gw;
	const struct gw_message_type *t; /* the type whose table read the payload */
	const struct jv_field *fields;   /* the table */
};

/* The payload's table, when event_type (and event_version, if it matters)
 * came before it (the usual order). */
static const struct jv_field *gw_payload_fields(void *arg, const struct jv_value *env)
{
	struct scan_ctx *c = arg;
	if (!env[GW_ENV_EVENT_TYPE].present)
		return NULL;
	int i = gw_find_type(c->gw, env[GW_ENV_EVENT_TYPE].str);
	c->t = i >= 0 && c->gw->types[i]->scan ? c->gw->types[i] : NULL;
	c->fields = c->t ? gw_type_fields(c->t, env[GW_ENV_EVENT_VERSION].present ? (int)env[GW_ENV_EVENT_VERSION].num : 1)
			 : NULL;
	return c->fields;
}

static bool gw_on_message_scanned(struct session *s, const char *text, size_t len)
{
	struct gateway *gw = s->gw;
	struct scan_ctx ctx = { gw, NULL, NULL };
	struct jv_scan sc;
	jv_scan_init(&sc);
	sc.any_fields = gw_payload_fields;
	sc.any_arg = &ctx;
	const struct jv_value *env = jv_scan(&sc, text, len, gw_envelope_fields);
	if (!env)
		return false;
	int i = gw_find_type(gw, env[GW_ENV_EVENT_TYPE].str);
	if (i < 0)
		return false;
	const struct gw_message_type *t = gw->types[i];
	int version = (int)env[GW_ENV_EVENT_VERSION].num;
	if (!t->scan || !(t->roles & s->who.role) || version > gw_type_max_version(t))
		return false;
	const struct jv_value *pl = env[GW_ENV_PAYLOAD].sub;
	const struct jv_field *fields = gw_type_fields(t, version);
	if (ctx.t != t || ctx.fields != fields || !pl) { /* the payload came first: read it now */
		sc.any_fields = NULL;
		pl = jv_scan(&sc, env[GW_ENV_PAYLOAD].str, env[GW_ENV_PAYLOAD].len, fields);
	}
	if (!pl)
		return false;
	gw_count_message(gw, i);
	struct gw_reject rej;
	memset(&rej, 0, sizeof rej);
	if (!t->scan(s, t->ctx, env, pl, &rej) && s->ws) {
		char corr[37];
		struct uuid u;
		uuid_parse(env[GW_ENV_EVENT_ID].str, &u); /* a UUID: the scan checked */
		uuid_format(&u, corr);
		gw_reject_counted(s, t->event_type, corr, &rej);
	}
	return true;
}

static void gw_on_message(struct ws_conn *c, void *arg, const char *text, size_t len)
{
	struct gw_session *gs = arg;
	struct session *s = &gs->pub;
	struct gateway *gw = s->gw;
	struct gw_reject rej;
	const char *end = NULL;

	if (gw_on_message_scanned(s, text, len))
		return;
	/* The message lives for this callback only: its tree is parsed into the
	 * arena (no malloc per node; a fifth of a ping's cost otherwise). */
	rh_json_arena_begin();
	cJSON *msg = cJSON_ParseWithLengthOpts(text, len, &end, false);
	rh_json_arena_end();
	bool trailing = false;
	for (const char *p = end; msg && p < text + len; p++)
		trailing |= *p != ' ' && *p != '\t' && *p != '\r' && *p != '\n';
	if (!msg || trailing) {
		size_t at = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
		gw_reject_set(&rej, "invalid_json", NULL, "not one JSON value: syntax error near byte %zu", at);
		gw_reject_counted(s, NULL, NULL, &rej);
		cJSON_Delete(msg);
		return;
	}
	/* What we can learn before validation, to label the rejection. */
	const char *type = jv_str(msg, "event_type");
	const char *corr = jv_str(msg, "event_id");
	char corr_ok[37] = "";
	struct uuid u;
	if (corr && uuid_parse(corr, &u))
		uuid_format(&u, corr_ok);
	const char *correlation = corr_ok[0] ? corr_ok : NULL;
	if (!cJSON_IsObject(msg)) {
		gw_reject_set(&rej, "validation_failed", "", "a message is a JSON object (the event envelope)");
		snprintf(rej.rule, sizeof rej.rule, "type");
		gw_reject_counted(s, NULL, NULL, &rej);
		cJSON_Delete(msg);
		return;
	}
	struct jv_error err;
	if (!jv_check(msg, gw_envelope_fields, &err)) {
		gw_reject_invalid(s, type, correlation, &err, "");
		cJSON_Delete(msg);
		return;
	}
	int ti = gw_find_type(gw, type);
	const struct gw_message_type *t = ti >= 0 ? gw->types[ti] : NULL;
	if (!t || !(t->roles & s->who.role)) {
		gw_reject_set(&rej, "unknown_event_type", "event_type", "a %s cannot send \"%s\"",
			      auth_role_name(s->who.role), type);
		snprintf(rej.rule, sizeof rej.rule, "enum");
		gw_reject_counted(s, type, correlation, &rej);
		cJSON_Delete(msg);
		return;
	}
	int version = (int)jv_num(msg, "event_version", 0);
	if (version > gw_type_max_version(t)) {
		gw_reject_set(&rej, "unsupported_version", "event_version", "this server knows versions up to %d of %s",
			      gw_type_max_version(t), type);
		snprintf(rej.rule, sizeof rej.rule, "maximum");
		gw_reject_counted(s, type, correlation, &rej);
		cJSON_Delete(msg);
		return;
	}
	const cJSON *payload = cJSON_GetObjectItemCaseSensitive(msg, "payload");
	if (!jv_check(payload, gw_type_fields(t, version), &err)) {
		gw_reject_invalid(s, type, correlation, &err, "payload.");
		cJSON_Delete(msg);
		return;
	}
	gw_count_message(gw, ti);
	memset(&rej, 0, sizeof rej);
	if (!t->handler(s, t->ctx, msg, payload, &rej) && s->ws)
		gw_reject_counted(s, type, correlation, &rej);
	cJSON_Delete(msg);
}

static void gw_on_close(struct ws_conn *c, void *arg, uint16_t code, const char *reason)
{
	struct gw_session *gs = arg;
	struct gateway *gw = gs->pub.gw;
	const struct gw_role_hooks *h = &gw->hooks[gw_role_slot(gs->role)];
	struct uuid account;
	if (uuid_parse(gs->pub.who.id, &account))
		gw_registry_remove(&gw->registry, &account, &gs->pub);
	if (h->closed)
		h->closed(&gs->pub, h->ctx, code);
	gs->pub.ws = NULL;
	TAILQ_REMOVE(&gw->sessions, gs, link);
	gw->nsessions--;
	metric_add(gw->m_sessions[gw_role_slot(gs->role)], -1);
	gs->next_dead = gw->dead;
	gw->dead = gs;
	if (gw->reap_ev)
		event_active(gw->reap_ev, EV_TIMEOUT, 0);
}

static void gw_reap_dead(struct gateway *gw)
{
	while (gw->dead) {
		struct gw_session *gs = gw->dead;
		gw->dead = gs->next_dead;
		rh_free(gs);
	}
}

static void gw_reap_cb(evutil_socket_t fd, short what, void *arg)
{
	gw_reap_dead(arg);
}

static const struct ws_handlers gw_ws_handlers = {
	.on_message = gw_on_message,
	.on_close = gw_on_close,
};

/* ------------------------------------------------------------ handshake */

void gateway_admit(struct gw_pending *p, void *owner)
{
	struct gateway *gw = p->gw;
	struct gw_session *gs = RH_NEW(struct gw_session);
	gs->pub.gw = gw;
	gs->pub.who = p->who;
	gs->pub.owner = owner;
	gs->role = p->who.role;
	gs->pub.reject_window_ms = rh_mono_ns() / 1000000;
	int64_t expires = p->who.exp ? (p->who.exp + gw->deps.leeway_ms / 1000) * 1000 : 0;
	gs->pub.protocol = p->protocol ? p->protocol : 1;
	const char *sub = p->protocol == 2 ? SUBPROTOCOL_V2 : p->protocol == 1 ? SUBPROTOCOL_V1 : NULL;
	struct ws_conn *c = ws_accept(gw->hub, p->req, sub, expires,
				      &gw_ws_handlers, gs);
	rh_free(p);
	if (!c) { /* the client left during admission */
		const struct gw_role_hooks *h = &gw->hooks[gw_role_slot(gs->role)];
		if (h->closed)
			h->closed(&gs->pub, h->ctx, WS_CLOSE_ABNORMAL);
		rh_free(gs);
		return;
	}
	gs->pub.ws = c;
	TAILQ_INSERT_TAIL(&gw->sessions, gs, link);
	gw->nsessions++;
	metric_add(gw->m_sessions[gw_role_slot(gs->role)], 1);
	log_info(ws_logid(c), "%s %s connected from %s", auth_role_name(gs->role), gs->pub.who.id, ws_peer(c));
	const struct gw_role_hooks *h = &gw->hooks[gw_role_slot(gs->role)];
	struct uuid account;
	if (h->one_session && uuid_parse(gs->pub.who.id, &account)) {
		struct session *old = gw_registry_put(&gw->registry, &account, &gs->pub);
		if (old) {
			log_info(ws_logid(c), "%s %s: a new session replaces the old one", auth_role_name(gs->role),
				 gs->pub.who.id);
			old->owner = NULL; /* what it still sends acts on nothing */
			gateway_close(old, WS_CLOSE_REPLACED, "replaced by a new session");
		}
	}
	if (h->opened)
		h->opened(&gs->pub, h->ctx);
	for (int i = 0; i < gw->nopened && gs->pub.ws; i++)
		if (gw->opened[i].roles & (unsigned)gs->role)
			gw->opened[i].fn(&gs->pub, gw->opened[i].ctx);
}

void gateway_refuse(struct gw_pending *p, int problem, const char *detail)
{
	http_reply_problem(p->req, (enum problem)problem, NULL, "%s", detail);
	rh_free(p);
}

/* The access token: Authorization: Bearer, a "bearer.<token>" subprotocol
 * (browsers cannot set headers), or ?access_token=; and the protocol asked
 * for (*protocol: 2 for ridehail.v2, 1 for ridehail.v1, 0 for neither; the
 * newest wins when both are offered). */
static const char *gw_handshake_token(struct http_req *req, char *buf, size_t buflen, int *protocol)
{
	const char *auth = http_req_header(req, "authorization");
	const char *protos = http_req_header(req, "sec-websocket-protocol");
	const char *tok = NULL;
	*protocol = 0;
	if (protos) {
		const char *p = protos;
		while (*p) {
			while (*p == ' ' || *p == ',')
				p++;
			size_t n = strcspn(p, ", ");
			if (n == strlen(SUBPROTOCOL_V2) && strncmp(p, SUBPROTOCOL_V2, n) == 0)
				*protocol = 2;
			else if (n == strlen(SUBPROTOCOL_V1) && strncmp(p, SUBPROTOCOL_V1, n) == 0 && *protocol == 0)
				*protocol = 1;
			if (n > 7 && strncmp(p, "bearer.", 7) == 0 && n - 7 < buflen) {
				memcpy(buf, p + 7, n - 7);
				buf[n - 7] = '\0';
				tok = buf;
			}
			p += n;
		}
	}
	if (auth && strncasecmp(auth, "Bearer ", 7) == 0)
		tok = auth + 7;
	if (!tok)
		tok = http_req_query(req, "access_token");
	return tok && *tok ? tok : NULL;
}

static void gw_upgrade(struct http_req *req, void *ctx)
{
	struct gateway *gw = ctx;
	char buf[JWT_MAX_LEN + 1];
	int protocol;
	if (ws_check_upgrade_or_reply(gw->hub, req) != RH_OK)
		return;
	const char *tok = gw_handshake_token(req, buf, sizeof buf, &protocol);
	struct auth_principal who;
	if (!tok) {
		http_reply_header(req, "WWW-Authenticate", "Bearer realm=\"ridehail\"");
		http_reply_problem(req, PROBLEM_UNAUTHORIZED, NULL,
				   "an access token is required: Authorization: Bearer, a bearer.<token> subprotocol, or ?access_token=");
		return;
	}
	if (!auth_verify_token_or_reply(gw->deps.auth, req, tok, &who))
		return;
	/* an operator's socket is the console's, when the daemon has one */
	if (who.role == ROLE_OPERATOR && !gw->hooks[gw_role_slot(ROLE_OPERATOR)].opened) {
		http_reply_problem(req, PROBLEM_FORBIDDEN, NULL, "the WebSocket is for drivers and riders");
		return;
	}
	struct gw_pending *p = RH_NEW(struct gw_pending);
	p->gw = gw;
	p->req = req;
	p->who = who;
	p->protocol = protocol;
	const struct gw_role_hooks *h = &gw->hooks[gw_role_slot(who.role)];
	if (h->admit)
		h->admit(p, &who, h->ctx);
	else
		gateway_admit(p, NULL);
}

static const struct http_route gw_routes[] = {
	{ HTTP_GET, "/v1/ws", gw_upgrade, HTTP_ROUTE_UPGRADE },
	{ 0 },
};

/* ------------------------------------------------------------ echo (test-only)
 * ws.echo = true adds GET /v1/ws/echo: no token, no sessions, every text
 * and binary message sent straight back. It exists for WebSocket
 * conformance suites, which need an echo server; it is off by default. */

static void gw_echo_text(struct ws_conn *c, void *arg, const char *text, size_t len)
{
	ws_send_text(c, text, len);
}

static void gw_echo_binary(struct ws_conn *c, void *arg, const void *data, size_t len)
{
	ws_send_binary(c, data, len);
}

static void gw_echo_closed(struct ws_conn *c, void *arg, uint16_t code, const char *reason)
{
}

static const struct ws_handlers echo_handlers = { gw_echo_text, gw_echo_closed, gw_echo_binary };

static void gw_echo_upgrade(struct http_req *req, void *ctx)
{
	struct gateway *gw = ctx;
	if (ws_check_upgrade_or_reply(gw->hub, req) != RH_OK)
		return;
	ws_accept(gw->hub, req, NULL, 0, &echo_handlers, NULL);
}

static const struct http_route echo_routes[] = {
	{ HTTP_GET, "/v1/ws/echo", gw_echo_upgrade, HTTP_ROUTE_UPGRADE },
	{ 0 },
};

/* ------------------------------------------------------------ setup */

void gateway_register(struct gateway *gw, const struct gw_message_type *t)
{
	if (gw->ntypes == GW_MAX_TYPES) {
		log_error(NULL, "gateway: too many message types");
		abort();
	}
	gw->types[gw->ntypes++] = t;
}

void gateway_set_role_hooks(struct gateway *gw, enum auth_role role, const struct gw_role_hooks *h)
{
	gw->hooks[gw_role_slot(role)] = *h;
}

void gateway_on_opened(struct gateway *gw, unsigned roles, gw_opened_fn fn, void *ctx)
{
	if (gw->nopened == GW_MAX_OPENED) {
		log_error(NULL, "gateway: too many listeners of opened sessions");
		abort();
	}
	gw->opened[gw->nopened++] = (struct gw_opened_listener){ roles, fn, ctx };
}

/* client.heartbeat: liveness and a round-trip measure; answered with
 * server.heartbeat carrying the server's clock. */
static const char *const client_types[] = { "driver", "rider", NULL };
static const char *const heartbeat_status[] = { "alive", "background", NULL };
static const struct jv_field heartbeat_fields[] = {
	{ "client_id", JV_UUID, JV_REQUIRED },
	{ "client_type", JV_STRING, JV_REQUIRED, 0, 0, client_types },
	{ "status", JV_STRING, JV_REQUIRED, 0, 0, heartbeat_status },
	{ "latency_ms", JV_INTEGER, 0, 0, 600000 },
	{ 0 },
};

static bool gw_on_heartbeat(struct session *s, void *ctx, const cJSON *msg, const cJSON *payload, struct gw_reject *rej)
{
	if (strcmp(jv_str(payload, "client_id"), s->who.id) != 0) {
		gw_reject_set(rej, "forbidden", "payload.client_id", "client_id must be your own account id");
		return false;
	}
	if (strcmp(jv_str(payload, "client_type"), auth_role_name(s->who.role)) != 0) {
		gw_reject_set(rej, "validation_failed", "payload.client_type", "client_type must be %s",
			      auth_role_name(s->who.role));
		return false;
	}
	cJSON *p = cJSON_CreateObject();
	char ts[32];
	rh_format_rfc3339(rh_wall_ms(), ts);
	cJSON_AddStringToObject(p, "server_time", ts);
	cJSON_AddStringToObject(p, "echo", jv_str(msg, "timestamp"));
	gateway_send(s, "server.heartbeat", p, jv_str(msg, "event_id"));
	return true;
}

static const struct gw_message_type heartbeat_type = {
	"client.heartbeat", ROLE_DRIVER | ROLE_RIDER, heartbeat_fields, gw_on_heartbeat, NULL,
};

struct gateway *gateway_new(const struct gateway_deps *d)
{
	static const char *const reason_label[] = { "reason", NULL };
	static const char *const type_label[] = { "type", NULL };
	static const char *const role_label[] = { "role", NULL };
	struct gateway *gw = RH_NEW(struct gateway);
	gw->deps = *d;
	gw_registry_init(&gw->registry);
	TAILQ_INIT(&gw->sessions);
	gw->hub = ws_hub_new(d->base, d->http, d->ws, d->metrics);
	gw->reap_ev = evtimer_new(d->base, gw_reap_cb, gw);
	gw->f_rejected = metrics_counter(d->metrics, "ridehail_gateway_rejected_total",
					 "Messages answered with command.rejected, by reason.", reason_label);
	gw->f_messages = metrics_counter(d->metrics, "ridehail_gateway_messages_total",
					 "Valid messages received, by event type.", type_label);
	gw->f_sessions = metrics_gauge(d->metrics, "ridehail_gateway_sessions", "Open sessions, by role.", role_label);
	for (int i = 0; i < 3; i++) {
		const char *lv[] = { auth_role_name(i == 0 ? ROLE_RIDER : i == 1 ? ROLE_DRIVER : ROLE_OPERATOR) };
		gw->m_sessions[i] = metric_cell(gw->f_sessions, lv);
	}
	gateway_register(gw, &heartbeat_type);
	http_server_add_routes(d->http, gw_routes, gw);
	if (d->ws->echo) {
		http_server_add_routes(d->http, echo_routes, gw);
		log_warn(NULL, "ws.echo is on: GET /v1/ws/echo echoes messages without a token (test-only)");
	}
	return gw;
}

void gateway_close_all(struct gateway *gw)
{
	ws_hub_close_all(gw->hub, WS_CLOSE_GOING_AWAY, "server shutting down");
}

int gateway_sessions(const struct gateway *gw) { return gw ? ws_hub_count(gw->hub) : 0; }

struct session *gateway_session_of(const struct gateway *gw, const struct uuid *account)
{
	return gw_registry_get(&gw->registry, account);
}

void gw_reject_err(struct gw_reject *rej, rh_err e, const char *what)
{
	const struct err_reply *er = err_reply_of(e);
	gw_reject_set(rej, er->ws_reason, NULL, "cannot %s%s", what, er->suffix);
}

void gateway_free(struct gateway *gw)
{
	if (!gw)
		return;
	ws_hub_free(gw->hub); /* on_close of each session retires it */
	gw_reap_dead(gw);
	gw_registry_fini(&gw->registry);
	if (gw->reap_ev)
		event_free(gw->reap_ev);
	rh_free(gw);
}
