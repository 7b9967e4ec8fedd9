/* Every error a client can get, with a stable RFC 9457 `type`. The type URI is
 * "https://ridehail.dev/problems/<slug>"; docs/api.md lists them all (a test
 * keeps the list and this table equal). Add new problems at the end of their
 * group; never change a slug once shipped. */
#ifndef RH_NET_PROBLEM_H
#define RH_NET_PROBLEM_H

#define PROBLEM_TYPE_BASE "https://ridehail.dev/problems/"

/*        enum name                 status  slug                       title */
#define PROBLEM_LIST(X)                                                                          \
	X(PROBLEM_BAD_REQUEST,          400, "bad-request",             "Malformed request")      \
	X(PROBLEM_INVALID_JSON,         400, "invalid-json",            "Body is not valid JSON") \
	X(PROBLEM_VALIDATION,           400, "validation-failed",       "A field is invalid")     \
	X(PROBLEM_UNAUTHORIZED,         401, "unauthorized",            "Authentication required") \
	X(PROBLEM_FORBIDDEN,            403, "forbidden",               "Not allowed")            \
	X(PROBLEM_NOT_FOUND,            404, "not-found",               "No such resource")       \
	X(PROBLEM_METHOD_NOT_ALLOWED,   405, "method-not-allowed",      "Method not allowed")     \
	X(PROBLEM_REQUEST_TIMEOUT,      408, "request-timeout",         "Request not received in time") \
	X(PROBLEM_CONFLICT,             409, "conflict",                "Conflicts with the current state") \
	X(PROBLEM_TRIP_STATE,           409, "trip-state",              "Not allowed in the trip's current state") \
	X(PROBLEM_ACTIVE_TRIP,          409, "active-trip",             "The rider already has an active trip") \
	X(PROBLEM_DRIVER_UNAVAILABLE,   409, "driver-unavailable",      "The driver cannot take this trip") \
	X(PROBLEM_ACTIVE_BOOKING,       409, "active-booking",          "The rider already has an active shared booking") \
	X(PROBLEM_LENGTH_REQUIRED,      411, "length-required",         "Content-Length required") \
	X(PROBLEM_BODY_TOO_LARGE,       413, "body-too-large",          "Request body too large") \
	X(PROBLEM_URI_TOO_LONG,         414, "uri-too-long",            "Request line too long")  \
	X(PROBLEM_UNSUPPORTED_MEDIA,    415, "unsupported-media-type",  "Unsupported Content-Type") \
	X(PROBLEM_EXPECTATION_FAILED,   417, "expectation-failed",      "Unsupported Expect")     \
	X(PROBLEM_UNPROCESSABLE,        422, "unprocessable",           "Request cannot be served") \
	X(PROBLEM_QUOTE_INVALID,        422, "quote-invalid",           "Not a quote this service issued") \
	X(PROBLEM_QUOTE_EXPIRED,        422, "quote-expired",           "The quote has expired") \
	X(PROBLEM_QUOTE_MISMATCH,       422, "quote-mismatch",          "The quote is for another trip") \
	X(PROBLEM_IDEMPOTENCY_REUSED,   422, "idempotency-key-reused",  "Idempotency-Key reused with another request") \
	X(PROBLEM_POINT_OFF_MAP,        422, "point-off-map",           "Point is not near a road of the map") \
	X(PROBLEM_NO_ROUTE,             422, "no-route",                "No road route between the points") \
	X(PROBLEM_RATE_CARD_INVALID,    422, "rate-card-invalid",       "Not a rate card issued to this rider") \
	X(PROBLEM_RATE_CARD_EXPIRED,    422, "rate-card-expired",       "The rate card no longer stands") \
	X(PROBLEM_CHOICE_NOT_ON_CARD,   422, "choice-not-on-card",      "The choice is not on the rate card") \
	X(PROBLEM_UPGRADE_REQUIRED,     426, "upgrade-required",        "Upgrade required")       \
	X(PROBLEM_RATE_LIMITED,         429, "rate-limited",            "Too many requests")      \
	X(PROBLEM_HEADERS_TOO_LARGE,    431, "headers-too-large",       "Request header fields too large") \
	X(PROBLEM_INTERNAL,             500, "internal",                "Internal error")         \
	X(PROBLEM_NOT_IMPLEMENTED,      501, "not-implemented",         "Not implemented")        \
	X(PROBLEM_UNAVAILABLE,          503, "unavailable",             "Service unavailable")    \
	X(PROBLEM_DB_UNAVAILABLE,       503, "database-unavailable",    "Database unavailable")   \
	X(PROBLEM_OVERLOADED,           503, "overloaded",              "Too many connections")   \
	X(PROBLEM_HTTP_VERSION,         505, "http-version",            "HTTP version not supported")

enum problem {
#define X(e, status, slug, title) e,
	PROBLEM_LIST(X)
#undef X
	PROBLEM_COUNT
};

int problem_status(enum problem p);
const char *problem_slug(enum problem p);
const char *problem_title(enum problem p);
/* The problem matching an HTTP status produced by the parser. */
enum problem problem_for_status(int status);
/* Seconds a client should wait before retrying after p (the reply's
 * Retry-After unless the caller set one), or 0 when retrying does not help. */
int problem_retry_after_s(enum problem p);

/* The one mapping from a failure (rh_err) to what a client is told: the
 * problem of an HTTP reply, and the reason of a WebSocket command.rejected
 * (docs/websocket.md). Nothing of the failure's own text (a database's
 * message) reaches the client: `what` names what could not be done. */
#include "core/err.h"
struct err_reply {
	enum problem problem;
	const char *ws_reason;
	const char *suffix; /* the detail is "cannot <what>" and this */
};
const struct err_reply *err_reply_of(rh_err e);

#endif
