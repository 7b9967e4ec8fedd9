#include "net/http_parse.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

static bool http_is_tchar(unsigned char c)
{
	/* RFC 9110 token characters. */
	return isalnum(c) || strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static const struct { const char *name; enum http_method m; } methods[] = {
	{ "GET", HTTP_GET }, { "HEAD", HTTP_HEAD }, { "POST", HTTP_POST }, { "PUT", HTTP_PUT },
	{ "PATCH", HTTP_PATCH }, { "DELETE", HTTP_DELETE }, { "OPTIONS", HTTP_OPTIONS },
};

const char *http_head_get(const struct http_head *h, const char *lower_name)
{
	for (int i = 0; i < h->nheaders; i++)
		if (strcmp(h->headers[i].name, lower_name) == 0)
			return h->headers[i].value;
	return NULL;
}

static int http_count_header(const struct http_head *h, const char *lower_name)
{
	int n = 0;
	for (int i = 0; i < h->nheaders; i++)
		n += strcmp(h->headers[i].name, lower_name) == 0;
	return n;
}

/* Does the comma-separated token list contain tok (case-insensitive)? */
static bool http_list_has(const char *list, const char *tok)
{
	size_t tl = strlen(tok);
	const char *p = list;
	while (*p) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		const char *start = p;
		while (*p && *p != ',')
			p++;
		const char *end = p;
		while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
			end--;
		if ((size_t)(end - start) == tl && strncasecmp(start, tok, tl) == 0)
			return true;
	}
	return false;
}

#define FAIL(status, detail)                  \
	do {                                  \
		*err_status = (status);       \
		*err_detail = (detail);       \
		return HTTP_PARSE_ERROR;      \
	} while (0)

/* Finds the end of the head: returns the offset just past the blank line,
 * or 0 if not there yet. Accepts CRLF and bare LF. */
static size_t http_find_head_end(const char *buf, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++) {
		if (buf[i] != '\n')
			continue;
		if (buf[i + 1] == '\n')
			return i + 2;
		if (buf[i + 1] == '\r' && i + 2 < len && buf[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

/* Terminates the line starting at *p; returns it and advances *p. */
static char *http_next_line(char **p, char *end)
{
	char *line = *p, *nl = memchr(line, '\n', (size_t)(end - line));
	if (!nl)
		return NULL;
	*nl = '\0';
	if (nl > line && nl[-1] == '\r')
		nl[-1] = '\0';
	*p = nl + 1;
	return line;
}

static enum http_parse_status http_parse_request_line(char *line, struct http_head *out, int *err_status,
						      const char **err_detail)
{
	char *sp1 = strchr(line, ' ');
	if (!sp1)
		FAIL(400, "malformed request line");
	*sp1 = '\0';
	char *target = sp1 + 1;
	char *sp2 = strchr(target, ' ');
	if (!sp2)
		FAIL(400, "malformed request line");
	*sp2 = '\0';
	char *version = sp2 + 1;

	if (!*line)
		FAIL(400, "empty method");
	for (char *c = line; *c; c++)
		if (!http_is_tchar((unsigned char)*c))
			FAIL(400, "invalid character in method");
	out->method = HTTP_UNKNOWN;
	for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
		if (strcmp(line, methods[i].name) == 0)
			out->method = methods[i].m;
	out->method_str = line;

	if (!*target)
		FAIL(400, "empty request target");
	for (char *c = target; *c; c++)
		if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f)
			FAIL(400, "invalid character in request target");
	if (target[0] != '/' && !(target[0] == '*' && target[1] == '\0' && out->method == HTTP_OPTIONS))
		FAIL(400, "request target must be an absolute path");
	out->target = target;

	if (strncmp(version, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)version[7]) || version[8])
		FAIL(strncmp(version, "HTTP/", 5) == 0 ? 505 : 400, "unsupported HTTP version");
	out->version_minor = version[7] - '0';
	return HTTP_PARSE_OK;
}

static enum http_parse_status http_parse_header_line(char *line, struct http_head *out, int *err_status,
						     const char **err_detail)
{
	if (*line == ' ' || *line == '\t')
		FAIL(400, "obsolete header line folding");
	char *colon = strchr(line, ':');
	if (!colon || colon == line)
		FAIL(400, "malformed header line");
	for (char *c = line; c < colon; c++) {
		if (!http_is_tchar((unsigned char)*c))
			FAIL(400, "invalid character in header name");
		*c = (char)tolower((unsigned char)*c);
	}
	*colon = '\0';
	char *v = colon + 1;
	while (*v == ' ' || *v == '\t')
		v++;
	char *e = v + strlen(v);
	while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
		*--e = '\0';
	for (char *c = v; *c; c++) {
		unsigned char u = (unsigned char)*c;
		if ((u < 0x20 && u != '\t') || u == 0x7f)
			FAIL(400, "invalid character in header value");
	}
	if (out->nheaders == HTTP_MAX_HEADERS)
		FAIL(431, "too many header fields");
	out->headers[out->nheaders].name = line;
	out->headers[out->nheaders].value = v;
	out->nheaders++;
	return HTTP_PARSE_OK;
}

static enum http_parse_status http_derive(struct http_head *out, int *err_status, const char **err_detail)
{
	const char *conn = http_head_get(out, "connection");
	const char *te = http_head_get(out, "transfer-encoding");

	if (out->version_minor >= 1 && http_count_header(out, "host") != 1)
		FAIL(400, "HTTP/1.1 request needs exactly one Host header");

	out->content_length = -1;
	for (int i = 0; i < out->nheaders; i++) {
		if (strcmp(out->headers[i].name, "content-length") != 0)
			continue;
		const char *v = out->headers[i].value;
		size_t n = strlen(v);
		if (n == 0 || n > 15 || strspn(v, "0123456789") != n)
			FAIL(400, "invalid Content-Length");
		int64_t cl = 0;
		for (size_t k = 0; k < n; k++)
			cl = cl * 10 + (v[k] - '0');
		if (out->content_length >= 0 && out->content_length != cl)
			FAIL(400, "conflicting Content-Length headers");
		out->content_length = cl;
	}
	out->chunked = false;
	if (te) {
		if (http_count_header(out, "transfer-encoding") != 1)
			FAIL(400, "repeated Transfer-Encoding");
		if (out->version_minor == 0)
			FAIL(400, "Transfer-Encoding in an HTTP/1.0 request");
		if (out->content_length >= 0)
			FAIL(400, "both Content-Length and Transfer-Encoding");
		if (strcasecmp(te, "chunked") != 0)
			FAIL(501, "only Transfer-Encoding: chunked is supported");
		out->chunked = true;
	}
	if (out->version_minor >= 1)
		out->keep_alive = !(conn && http_list_has(conn, "close"));
	else
		out->keep_alive = conn && http_list_has(conn, "keep-alive");

	const char *expect = http_head_get(out, "expect");
	out->expect_continue = false;
	if (expect) {
		if (strcasecmp(expect, "100-continue") != 0)
			FAIL(417, "unsupported Expect");
		out->expect_continue = out->version_minor >= 1;
	}
	const char *upgrade = http_head_get(out, "upgrade");
	out->upgrade_websocket = upgrade && conn && http_list_has(upgrade, "websocket") && http_list_has(conn, "upgrade");
	return HTTP_PARSE_OK;
}

enum http_parse_status http_parse_head(char *buf, size_t len, size_t max_head, struct http_head *out,
				       int *err_status, const char **err_detail)
{
	size_t skip = 0;
	/* RFC 9112 2.2: ignore empty lines before the request line. */
	while (skip < len && (buf[skip] == '\r' || buf[skip] == '\n') && skip < 8)
		skip++;
	size_t scan = len < max_head + skip + 4 ? len : max_head + skip + 4;
	size_t end = http_find_head_end(buf + skip, scan - skip);
	if (!end) {
		if (len - skip <= max_head)
			return HTTP_PARSE_INCOMPLETE;
		if (!memchr(buf + skip, '\n', max_head))
			FAIL(414, "request line too long");
		FAIL(431, "request header fields too large");
	}
	if (end > max_head + 4) {
		if (!memchr(buf + skip, '\n', max_head))
			FAIL(414, "request line too long");
		FAIL(431, "request header fields too large");
	}
	if (memchr(buf + skip, '\0', end))
		FAIL(400, "NUL byte in request head");

	memset(out, 0, sizeof *out);
	char *p = buf + skip, *stop = buf + skip + end;
	char *line = http_next_line(&p, stop);
	enum http_parse_status st = http_parse_request_line(line, out, err_status, err_detail);
	if (st != HTTP_PARSE_OK)
		return st;
	while ((line = http_next_line(&p, stop)) != NULL && *line) {
		st = http_parse_header_line(line, out, err_status, err_detail);
		if (st != HTTP_PARSE_OK)
			return st;
	}
	st = http_derive(out, err_status, err_detail);
	if (st != HTTP_PARSE_OK)
		return st;
	out->head_len = skip + end;
	return HTTP_PARSE_OK;
}

/* ------------------------------------------------------------ chunked */

enum {
	CH_SIZE,       /* hex digits of the chunk size */
	CH_EXT,        /* the rest of the size line: extensions, ignored */
	CH_EXT_QUOTED, /* inside a quoted-string of an extension */
	CH_EXT_ESCAPE, /* after a backslash inside it */
	CH_SIZE_LF,    /* the size line's CR was read: LF must follow */
	CH_DATA,
	CH_DATA_CR,    /* the CRLF after a chunk's data */
	CH_DATA_LF,
	CH_TRAILER,    /* a trailer field line, or the empty line that ends the body */
	CH_TRAILER_LF,
	CH_DONE,
};

#define CH_MAX_LINE 4096        /* a size line with its extensions, or one trailer line */
#define CH_MAX_TRAILERS 8192    /* the whole trailer section */
#define CH_MAX_DIGITS 15        /* significant hex digits of a size: < 2^60 */

void http_chunked_init(struct http_chunked *c)
{
	memset(c, 0, sizeof *c);
	c->state = CH_SIZE;
}

static int http_hexval(unsigned char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	ch = (unsigned char)tolower(ch);
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	return -1;
}

/* A byte allowed inside a chunk extension or a trailer line: HTAB, visible
 * ASCII, space, and obs-text; never another control byte (CR and LF end the
 * line, a bare CR or NUL is an error). */
static bool http_is_line_byte(unsigned char ch)
{
	return ch == '\t' || (ch >= 0x20 && ch != 0x7f);
}

/* The end of a size line: a chunk of data follows, or the trailer section. */
static enum http_chunked_status http_chunk_size_done(struct http_chunked *c, size_t max_body)
{
	c->line_len = 0;
	c->digits = 0;
	if (c->remaining == 0) {
		c->state = CH_TRAILER;
		return HTTP_CHUNKED_MORE;
	}
	if (c->body_len + c->remaining > max_body)
		return HTTP_CHUNKED_TOO_LARGE;
	c->state = CH_DATA;
	return HTTP_CHUNKED_MORE;
}

/* The size line: hex digits, extensions, CRLF. Returns HTTP_CHUNKED_MORE to
 * go on, or how the body ends at *i. */
static enum http_chunked_status http_chunked_size_byte(struct http_chunked *c, unsigned char ch, size_t *i,
							size_t max_body)
{
	switch (c->state) {
	case CH_SIZE: {
		int h = http_hexval(ch);
		if (h >= 0) {
			if (c->digits || h) /* leading zeros do not count */
				c->digits++;
			if (c->digits > CH_MAX_DIGITS)
				return HTTP_CHUNKED_TOO_LARGE;
			c->remaining = c->remaining * 16 + (uint64_t)h;
			(*i)++;
			return HTTP_CHUNKED_MORE;
		}
		if (c->line_len == 1) /* no digit at all */
			return HTTP_CHUNKED_ERROR;
		c->line_len--; /* read again in CH_EXT */
		c->state = CH_EXT;
		return HTTP_CHUNKED_MORE;
	}
	case CH_EXT:
		/* *( BWS ";" BWS name [ BWS "=" BWS value ] ): read loosely,
		 * since it is ignored, but a quoted string is followed so
		 * that a quoted CR or semicolon is not misread */
		(*i)++;
		if (ch == '\r') {
			c->state = CH_SIZE_LF;
		} else if (ch == '\n') {
			return http_chunk_size_done(c, max_body);
		} else if (ch == '"') {
			c->state = CH_EXT_QUOTED;
		} else if (!http_is_line_byte(ch)) {
			(*i)--;
			return HTTP_CHUNKED_ERROR;
		}
		return HTTP_CHUNKED_MORE;
	case CH_EXT_QUOTED:
		if (!http_is_line_byte(ch))
			return HTTP_CHUNKED_ERROR;
		(*i)++;
		if (ch == '"')
			c->state = CH_EXT;
		else if (ch == '\\')
			c->state = CH_EXT_ESCAPE;
		return HTTP_CHUNKED_MORE;
	case CH_EXT_ESCAPE:
		if (!http_is_line_byte(ch))
			return HTTP_CHUNKED_ERROR;
		(*i)++;
		c->state = CH_EXT_QUOTED;
		return HTTP_CHUNKED_MORE;
	default: /* CH_SIZE_LF */
		if (ch != '\n')
			return HTTP_CHUNKED_ERROR;
		(*i)++;
		return http_chunk_size_done(c, max_body);
	}
}

/* A chunk's data (handed to sink as it comes) and the CRLF after it. */
static enum http_chunked_status http_chunked_data(struct http_chunked *c, const char *in, size_t len, size_t *i,
						   void (*sink)(void *arg, const char *p, size_t n), void *arg)
{
	switch (c->state) {
	case CH_DATA: {
		size_t n = len - *i;
		if (n > c->remaining)
			n = (size_t)c->remaining;
		if (sink)
			sink(arg, in + *i, n);
		c->body_len += n;
		c->remaining -= n;
		*i += n;
		if (c->remaining == 0)
			c->state = CH_DATA_CR;
		return HTTP_CHUNKED_MORE;
	}
	case CH_DATA_CR:
		c->state = CH_DATA_LF;
		if (in[*i] == '\r')
			(*i)++;
		return HTTP_CHUNKED_MORE;
	default: /* CH_DATA_LF */
		if (in[*i] != '\n')
			return HTTP_CHUNKED_ERROR;
		(*i)++;
		c->state = CH_SIZE;
		c->line_len = 0;
		return HTTP_CHUNKED_MORE;
	}
}

/* The trailer section: field lines read and dropped; an empty line ends the
 * body. */
static enum http_chunked_status http_chunked_trailer_byte(struct http_chunked *c, unsigned char ch, size_t *i)
{
	if (c->state == CH_TRAILER) {
		if (++c->trailer_len > CH_MAX_TRAILERS)
			return HTTP_CHUNKED_ERROR;
		(*i)++;
		if (ch == '\r') {
			c->state = CH_TRAILER_LF;
		} else if (ch == '\n') {
			if (c->line_len == 0) {
				c->state = CH_DONE;
				return HTTP_CHUNKED_DONE;
			}
			c->line_len = 0;
		} else if (!http_is_line_byte(ch) || (c->line_len == 0 && (ch == ' ' || ch == '\t'))) {
			/* control bytes, or obs-fold (a line starting blank) */
			(*i)--;
			return HTTP_CHUNKED_ERROR;
		} else {
			c->line_len++;
		}
		return HTTP_CHUNKED_MORE;
	}
	/* CH_TRAILER_LF */
	if (ch != '\n')
		return HTTP_CHUNKED_ERROR;
	(*i)++;
	if (c->line_len == 0) {
		c->state = CH_DONE;
		return HTTP_CHUNKED_DONE;
	}
	c->line_len = 0;
	c->state = CH_TRAILER;
	return HTTP_CHUNKED_MORE;
}

enum http_chunked_status http_chunked_feed(struct http_chunked *c, const char *in, size_t len,
					   size_t *consumed, size_t max_body,
					   void (*sink)(void *arg, const char *p, size_t n), void *arg)
{
	size_t i = 0;
	enum http_chunked_status st = HTTP_CHUNKED_MORE;
	while (i < len && st == HTTP_CHUNKED_MORE) {
		unsigned char ch = (unsigned char)in[i];
		if (c->state <= CH_EXT_ESCAPE && ++c->line_len > CH_MAX_LINE) {
			st = HTTP_CHUNKED_ERROR;
			break;
		}
		switch (c->state) {
		case CH_SIZE:
		case CH_EXT:
		case CH_EXT_QUOTED:
		case CH_EXT_ESCAPE:
		case CH_SIZE_LF:
			st = http_chunked_size_byte(c, ch, &i, max_body);
			break;
		case CH_DATA:
		case CH_DATA_CR:
		case CH_DATA_LF:
			st = http_chunked_data(c, in, len, &i, sink, arg);
			break;
		case CH_TRAILER:
		case CH_TRAILER_LF:
			st = http_chunked_trailer_byte(c, ch, &i);
			break;
		default:
			st = HTTP_CHUNKED_DONE;
		}
	}
	*consumed = i;
	if (st != HTTP_CHUNKED_MORE)
		return st;
	return c->state == CH_DONE ? HTTP_CHUNKED_DONE : HTTP_CHUNKED_MORE;
}

int http_url_decode(const char *s, size_t n, char *out, size_t outlen, bool plus)
{
	size_t o = 0;
	if (outlen == 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (ch == '%') {
			int hi = i + 2 < n ? http_hexval((unsigned char)s[i + 1]) : -1;
			int lo = hi >= 0 ? http_hexval((unsigned char)s[i + 2]) : -1;
			if (hi < 0 || lo < 0 || (hi | lo) == 0)
				goto fail; /* malformed, cut short, or %00 */
			ch = (char)(hi * 16 + lo);
			i += 2;
		} else if (plus && ch == '+') {
			ch = ' ';
		}
		if (o + 1 >= outlen)
			goto fail;
		out[o++] = ch;
	}
	out[o] = '\0';
	return (int)o;
fail:
	/* Never leave the output without its terminator: callers print it. */
	out[0] = '\0';
	return -1;
}

size_t http_target_bufsize(const char *target)
{
	/* Decoding never lengthens; the path's copy as sent (on an error) and
	 * each string's NUL come on top. */
	return 2 * strlen(target) + 2 * HTTP_MAX_QUERY + 4;
}

/* Appends the decoding of s[0..n) to the buffer; NULL if malformed. */
static const char *http_target_put(char *buf, size_t buflen, size_t *used, const char *s, size_t n, bool plus)
{
	int k = http_url_decode(s, n, buf + *used, buflen - *used, plus);
	if (k < 0)
		return NULL;
	const char *out = buf + *used;
	*used += (size_t)k + 1;
	return out;
}

enum http_target_status http_target_decode(const char *target, char *buf, size_t buflen, struct http_target *t)
{
	const char *q = strchr(target, '?');
	size_t plen = q ? (size_t)(q - target) : strlen(target);
	memset(t, 0, sizeof *t);
	t->path = http_target_put(buf, buflen, &t->used, target, plen, false);
	if (!t->path) {
		/* The raw path, for the reply to name (it held only printable
		 * ASCII, or the head parser would have refused it). */
		if (plen + 1 > buflen)
			plen = buflen - 1;
		memcpy(buf, target, plen);
		buf[plen] = '\0';
		t->path = buf;
		t->used = plen + 1;
		return HTTP_TARGET_BAD_PATH;
	}
	if (!q)
		return HTTP_TARGET_OK;
	for (const char *p = q + 1; *p;) {
		size_t n = strcspn(p, "&");
		if (n > 0) {
			const char *eq = memchr(p, '=', n);
			size_t kl = eq ? (size_t)(eq - p) : n;
			if (t->nquery == HTTP_MAX_QUERY)
				return HTTP_TARGET_TOO_MANY;
			const char *k = http_target_put(buf, buflen, &t->used, p, kl, true);
			const char *v = k ? http_target_put(buf, buflen, &t->used, eq ? eq + 1 : p + n, eq ? n - kl - 1 : 0, true)
					  : NULL;
			if (!v)
				return HTTP_TARGET_BAD_QUERY;
			t->keys[t->nquery] = k;
			t->vals[t->nquery++] = v;
		}
		p += n;
		if (*p == '&')
			p++;
	}
	return HTTP_TARGET_OK;
}

const char *http_status_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 406: return "Not Acceptable";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 410: return "Gone";
	case 411: return "Length Required";
	case 412: return "Precondition Failed";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 417: return "Expectation Failed";
	case 422: return "Unprocessable Content";
	case 426: return "Upgrade Required";
	case 428: return "Precondition Required";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	}
	return "Unknown";
}
