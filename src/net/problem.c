#include "net/problem.h"

static const struct {
	int status;
	const char *slug, *title;
} problems[] = {
#define X(e, status, slug, title) { status, slug, title },
	PROBLEM_LIST(X)
#undef X
};

int problem_status(enum problem p) { return problems[p].status; }
const char *problem_slug(enum problem p) { return problems[p].slug; }
const char *problem_title(enum problem p) { return problems[p].title; }

enum problem problem_for_status(int status)
{
	switch (status) {
	case 408: return PROBLEM_REQUEST_TIMEOUT;
	case 411: return PROBLEM_LENGTH_REQUIRED;
	case 413: return PROBLEM_BODY_TOO_LARGE;
	case 414: return PROBLEM_URI_TOO_LONG;
	case 417: return PROBLEM_EXPECTATION_FAILED;
	case 431: return PROBLEM_HEADERS_TOO_LARGE;
	case 501: return PROBLEM_NOT_IMPLEMENTED;
	case 505: return PROBLEM_HTTP_VERSION;
	default: return PROBLEM_BAD_REQUEST;
	}
}

int problem_retry_after_s(enum problem p)
{
	switch (p) {
	case PROBLEM_DB_UNAVAILABLE:
	case PROBLEM_UNAVAILABLE:
		return 1;
	case PROBLEM_OVERLOADED:
		return 5;
	default:
		return 0;
	}
}

const struct err_reply *err_reply_of(rh_err e)
{
	static const struct err_reply replies[] = {
		[RH_OK] = { PROBLEM_INTERNAL, "internal_error", "" },
		[RH_EINVAL] = { PROBLEM_BAD_REQUEST, "validation_failed", ": the input is not valid" },
		[RH_ENOTFOUND] = { PROBLEM_NOT_FOUND, "not_found", ": no such thing" },
		[RH_ECONFLICT] = { PROBLEM_CONFLICT, "invalid_state", " in the current state" },
		[RH_EAGAIN] = { PROBLEM_DB_UNAVAILABLE, "unavailable", " now; it was not saved, and sending it again is safe" },
		[RH_ENOMEM] = { PROBLEM_OVERLOADED, "unavailable", " now: a limit is reached; retry later" },
		[RH_EDB] = { PROBLEM_INTERNAL, "internal_error", "" },
		[RH_EIO] = { PROBLEM_INTERNAL, "internal_error", "" },
	};
	return (unsigned)e < sizeof replies / sizeof *replies ? &replies[e] : &replies[RH_EDB];
}
