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

/* Incremental chunked-body decoder (RFC 9112 7.1). Feed it bytes; it
 * appends body bytes to `body` (up to max_body) and reports how many input
 * bytes it consumed. Chunk extensions (with blanks, tabs and quoted strings)
 * and trailer fields are read and discarded, bounded in size; a chunk size
 * may have leading zeros. */
struct http_chunked {
	int state;
	uint64_t remaining;  /* of the current chunk */
	int digits;          /* significant hex digits of the size read */
	size_t line_len;     /* bytes of the current size/trailer line seen */
	size_t trailer_len;  /* bytes of the trailer section seen */
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
 * the decoded length, or -1 with out holding "" (when outlen > 0): out is a
 * string either way. */
int http_url_decode(const char *s, size_t n, char *out, size_t outlen, bool plus);

/* The request target (origin-form, RFC 9112 3.2.1) split into its path and
 * query and percent-decoded (RFC 3986 2.1; '+' is a space in the query, as
 * forms send it). Every string is NUL-terminated inside the caller's buffer
 * (http_target_bufsize bytes), never containing a NUL of its own (%00 is
 * refused). On an error `path` still points at a string: the raw path, as
 * sent (printable ASCII, since the head parser refused anything else), for
 * the reply to name. */
#define HTTP_MAX_QUERY 32

enum http_target_status {
	HTTP_TARGET_OK = 0,
	HTTP_TARGET_BAD_PATH,  /* a malformed escape or %00 in the path */
	HTTP_TARGET_BAD_QUERY, /* the same in the query */
	HTTP_TARGET_TOO_MANY,  /* more than HTTP_MAX_QUERY parameters */
};

struct http_target {
	const char *path;
	int nquery;
	const char *keys[HTTP_MAX_QUERY], *vals[HTTP_MAX_QUERY];
	size_t used; /* bytes of the buffer used; what follows is free */
};

size_t http_target_bufsize(const char *target);
enum http_target_status http_target_decode(const char *target, char *buf, size_t buflen, struct http_target *t);

const char *http_status_reason(int status);

#endif
