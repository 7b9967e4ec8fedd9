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
