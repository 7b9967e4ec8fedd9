/* HTTP/1.1 request parsing over byte buffers (RFC 9112), no sockets: the
 * server feeds it what arrived, the fuzz target feeds it anything.
 *
 * Strict where leniency invites request smuggling (Content-Length together
 * with Transfer-Encoding, conflicting lengths, obs-fold, whitespace before the
 * colon, control bytes), lenient where clients differ harmlessly (bare LF line
 * ends, header name case). */
#ifndef RH_NET_HTTP_PARSE_H
#define RH_NET_HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_HEADERS 64

enum http_method {
	HTTP_UNKNOWN = 0, HTTP_GET, HTTP_HEAD, HTTP_POST, HTTP_PUT, HTTP_PATCH, HTTP_DELETE, HTTP_OPTIONS,
};

struct http_header {
	const char *name; /* lower-cased in place */
	const char *value; /* leading/trailing blanks removed */
};

struct http_head {
	enum http_method method;
	const char *method_str;
	const char *target;   /* request-target as sent (origin-form) */
	int version_minor;    /* HTTP/1.<minor> */
	int nheaders;
	struct http_header headers[HTTP_MAX_HEADERS];
	/* Derived from the headers. */
	int64_t content_length; /* -1 when absent */
	bool chunked;
	bool keep_alive;
	bool expect_continue;
	bool upgrade_websocket; /* Upgrade: websocket with Connection: upgrade */
	size_t head_len;        /* bytes of request line + headers + blank line */
};

enum http_parse_status {
	HTTP_PARSE_OK = 0,
	HTTP_PARSE_INCOMPLETE, /* need more bytes */
	HTTP_PARSE_ERROR,      /* see *err_status and *err_detail */
};

/* Parses the head at buf[0..len). On OK, buf[0..head_len) has been modified
 * in place (NUL-terminators) and `out` points into it. max_head bounds the
 * request line + headers: a longer head is an error (414 for the request
 * line alone, 431 otherwise), detected as soon as the bytes arrive. */
enum http_parse_status http_parse_head(char *buf, size_t len, size_t max_head, struct http_head *out,
				       int *err_status, const char **err_detail);

const char *http_head_get(const struct http_head *h, const char *lower_name);

/* Incremental chunked-body decoder. Feed it bytes; it appends body bytes to
 * `body` (up to max_body) and reports how many input bytes it consumed. */
struct http_chunked {
	int state;
	uint64_t remaining; /* of the current chunk */
	size_t line_len;    /* bytes of the current size/trailer line seen */
	size_t body_len;
};

enum http_chunked_status {
	HTTP_CHUNKED_MORE = 0, /* consumed everything; body not complete */
	HTTP_CHUNKED_DONE,     /* body complete; *consumed bytes used */
	HTTP_CHUNKED_ERROR,    /* malformed (400) */
	HTTP_CHUNKED_TOO_LARGE, /* over max_body (413) */
};

void http_chunked_init(struct http_chunked *c);
/* `sink` receives body bytes; it may be NULL to only validate. */
enum http_chunked_status http_chunked_feed(struct http_chunked *c, const char *in, size_t len,
					   size_t *consumed, size_t max_body,
					   void (*sink)(void *arg, const char *p, size_t n), void *arg);

/* Percent-decodes s[0..n) into out (capacity outlen incl. NUL); `plus` turns
 * '+' into ' ' (query strings). Refuses %00 and malformed escapes. Returns
 * the decoded length or -1. */
int http_url_decode(const char *s, size_t n, char *out, size_t outlen, bool plus);

const char *http_status_reason(int status);

#endif
