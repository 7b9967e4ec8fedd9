/* The realtime gateway: GET /v1/ws. Authenticates the upgrade, keeps one
 * session per WebSocket, validates every incoming message at the edge (the
 * seed-000 envelope, then the payload of its event_type) and hands it to the
 * module that registered that type. Invalid messages get a command.rejected
 * frame naming the field and the rule; the connection stays open unless the
 * client floods (ws.max_rejections a minute).
 *
 * Modules register message types (gateway_register) and per-role hooks
 * (admission at the handshake, session opened/closed). A session belongs to
 * the gateway; `owner` is for the module that admitted it. After the closed
 * hook returns the session is gone. */
#ifndef RH_GATEWAY_GATEWAY_H
#define RH_GATEWAY_GATEWAY_H

#include <cjson/cJSON.h>
#include <stdbool.h>

#include "auth/auth.h"
#include "net/jsonv.h"

struct event_base;
struct metrics;
struct http_server;
struct ws_cfg;
struct uuid;
struct gateway;
struct gw_pending;
struct ws_conn;

struct session {
	struct gateway *gw;
	struct ws_conn *ws; /* NULL once closed */
	struct auth_principal who;
	void *owner;        /* the admitting module's record (e.g. presence's driver) */
	int protocol;       /* 1 or 2: the message versions the app asked for (ridehail.v1, ridehail.v2) */
	int64_t reject_window_ms;
	int rejections;
};

/* Why a message was refused: becomes the command.rejected payload. */
struct gw_reject {
	const char *reason;   /* machine-readable: validation_failed, rate_limited, invalid_state... */
	char field[128];      /* the offending field ("payload.location.lat"), or "" */
	char rule[32];        /* the JSON Schema keyword that failed, or "" */
	char details[256];    /* for humans */
};

/* A handler accepts (returns true) or fills rej and returns false.
 * `msg` is the whole validated envelope; `payload` its payload. */
typedef bool (*gw_handler)(struct session *s, void *ctx, const cJSON *msg, const cJSON *payload, struct gw_reject *rej);

/* The same from the tree-less scan (net/jsonv.h jv_scan): `env` holds the
 * envelope's values (indexed by enum gw_envelope_field), `payload` the
 * payload's (indexed like the type's table). Optional: a type with one gets
 * the messages the scan reads (its commonest shape), the tree handler gets
 * the rest; both must behave the same. */
typedef bool (*gw_scan_handler)(struct session *s, void *ctx, const struct jv_value *env,
				const struct jv_value *payload, struct gw_reject *rej);

struct gw_message_type {
	const char *event_type;
	unsigned roles;               /* mask of enum auth_role that may send it */
	const struct jv_field *payload; /* the payload's fields (additionalProperties: false) */
	gw_handler handler;
	void *ctx;
	gw_scan_handler scan;         /* may be NULL */
	/* Version 2 of the payload, when the type has one (event_version 2);
	 * NULL: version 1 only. Handlers read the version from the envelope. */
	const struct jv_field *payload_v2;
};

struct gw_role_hooks {
	/* At the handshake, after the token was verified: decide (now or later)
	 * with gateway_admit / gateway_refuse. NULL admits at once. */
	void (*admit)(struct gw_pending *p, const struct auth_principal *who, void *ctx);
	void (*opened)(struct session *s, void *ctx);
	void (*closed)(struct session *s, void *ctx, uint16_t code);
	void *ctx;
	/* One session per account (an app's): a new one replaces the old,
	 * which is closed (WS_CLOSE_REPLACED) and loses its owner. */
	bool one_session;
};

struct gateway_deps {
	struct event_base *base;
	struct metrics *metrics;
	struct http_server *http;
	struct auth *auth;
	const struct ws_cfg *ws;
	int64_t leeway_ms;       /* a session lives until its token's expiry plus this */
};
struct gateway *gateway_new(const struct gateway_deps *d);
void gateway_free(struct gateway *gw);
/* Shutdown: close every session with 1001. */
void gateway_close_all(struct gateway *gw);
int gateway_sessions(const struct gateway *gw);
/* The open session of an account (roles with one_session), or NULL: every
 * module finds sessions here (gateway/registry.h). */
struct session *gateway_session_of(const struct gateway *gw, const struct uuid *account);

/* `t` must outlive the gateway (a static table). */
void gateway_register(struct gateway *gw, const struct gw_message_type *t);
void gateway_set_role_hooks(struct gateway *gw, enum auth_role role, const struct gw_role_hooks *h);
/* Another module's ear on opened sessions of the roles in the mask (enum
 * auth_role bits): called after the role's own hook (which admitted the
 * session and told the app where it stands), in registration order. At
 * most GW_MAX_OPENED. */
#define GW_MAX_OPENED 4
typedef void (*gw_opened_fn)(struct session *s, void *ctx);
void gateway_on_opened(struct gateway *gw, unsigned roles, gw_opened_fn fn, void *ctx);

/* Completes a pending handshake: `owner` becomes session->owner. */
void gateway_admit(struct gw_pending *p, void *owner);
/* Refuses it with an HTTP problem (e.g. PROBLEM_FORBIDDEN). */
void gateway_refuse(struct gw_pending *p, int problem, const char *detail);

/* Sends a server event in the envelope; payload is consumed. `correlation`
 * may be NULL (a new id is used). false if the session cannot take it. */
bool gateway_send(struct session *s, const char *event_type, cJSON *payload, const char *correlation);
/* The same with the payload already serialised (a JSON object's text). */
bool gateway_send_text(struct session *s, const char *event_type, const char *payload, const char *correlation);
/* The same as a given version of the message type (event_version). */
bool gateway_send_v(struct session *s, const char *event_type, int version, cJSON *payload, const char *correlation);
bool gateway_send_text_v(struct session *s, const char *event_type, int version, const char *payload,
			 const char *correlation);
/* Sends command.rejected for a message of type command_type (may be NULL). */
void gateway_reject(struct session *s, const char *command_type, const char *correlation, const struct gw_reject *rej);
/* Closes a session (e.g. WS_CLOSE_REPLACED when another one takes over). */
void gateway_close(struct session *s, uint16_t code, const char *reason);
/* Closes every open session of an account with code and reason (its
 * standing changed: disabled, deleted, password changed); returns how many. */
int gateway_close_account(struct gateway *gw, const char *account_id, uint16_t code, const char *reason);

/* Helpers for handlers. */
void gw_reject_set(struct gw_reject *rej, const char *reason, const char *field, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* The rejection for a failure (the one mapping, net/problem.h err_reply_of:
 * RH_EAGAIN is "unavailable", send it again); `what` completes "cannot %s". */
void gw_reject_err(struct gw_reject *rej, rh_err e, const char *what);

/* The envelope every message carries (seed 000), and its members' indices. */
enum gw_envelope_field {
	GW_ENV_EVENT_ID,
	GW_ENV_EVENT_TYPE,
	GW_ENV_EVENT_VERSION,
	GW_ENV_TIMESTAMP,
	GW_ENV_PRODUCER,
	GW_ENV_CORRELATION_ID,
	GW_ENV_PAYLOAD,
};
extern const struct jv_field gw_envelope_fields[];

#endif
