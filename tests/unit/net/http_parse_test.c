#include "../unit.h"

#include <stdlib.h>

#include "net/http_parse.h"

struct parsed {
	enum http_parse_status st;
	int status;
	const char *detail;
	struct http_head h;
	char buf[4096];
};

static void parse(struct parsed *p, const char *req, size_t max)
{
	size_t n = strlen(req);
	memcpy(p->buf, req, n + 1);
	p->status = 0;
	p->detail = NULL;
	p->st = http_parse_head(p->buf, n, max, &p->h, &p->status, &p->detail);
}

UNIT_TEST(http_parse_simple_get)
{
	struct parsed p;
	const char *head = "GET /v1/rides?limit=5 HTTP/1.1\r\nHost: x\r\nX-Thing:  a b  \r\n\r\n";
	char req[256];
	snprintf(req, sizeof req, "%sextra", head);
	parse(&p, req, 8192);
	REQUIRE(p.st == HTTP_PARSE_OK);
	CHECK(p.h.method == HTTP_GET);
	CHECK_EQ_STR(p.h.target, "/v1/rides?limit=5");
	CHECK_EQ_INT(p.h.version_minor, 1);
	CHECK_EQ_STR(http_head_get(&p.h, "x-thing"), "a b");
	CHECK_EQ_STR(http_head_get(&p.h, "host"), "x");
	CHECK(p.h.keep_alive);
	CHECK_EQ_INT(p.h.content_length, -1);
	CHECK_EQ_INT(p.h.head_len, strlen(head)); /* up to the blank line, not "extra" */
}

UNIT_TEST(http_parse_incomplete_then_complete)
{
	struct parsed p;
	parse(&p, "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n", 8192);
	CHECK(p.st == HTTP_PARSE_INCOMPLETE);
	parse(&p, "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n", 8192);
	REQUIRE(p.st == HTTP_PARSE_OK);
	CHECK_EQ_INT(p.h.content_length, 3);
	CHECK(p.h.method == HTTP_POST);
}

UNIT_TEST(http_parse_bare_lf_and_http10)
{
	struct parsed p;
	parse(&p, "GET / HTTP/1.0\nConnection: Keep-Alive\n\n", 8192);
	REQUIRE(p.st == HTTP_PARSE_OK);
	CHECK_EQ_INT(p.h.version_minor, 0);
	CHECK(p.h.keep_alive);
	parse(&p, "GET / HTTP/1.0\r\n\r\n", 8192);
	REQUIRE(p.st == HTTP_PARSE_OK);
	CHECK(!p.h.keep_alive);
	parse(&p, "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", 8192);
	REQUIRE(p.st == HTTP_PARSE_OK);
	CHECK(!p.h.keep_alive);
}

UNIT_TEST(http_parse_upgrade_and_expect)
{
	struct parsed p;
	parse(&p, "GET /v1/ws HTTP/1.1\r\nHost: h\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n\r\n", 8192);
	REQUIRE(p.st == HTTP_PARSE_OK);
	CHECK(p.h.upgrade_websocket);
	parse(&p, "POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", 8192);
	REQUIRE(p.st == HTTP_PARSE_OK);
	CHECK(p.h.expect_continue);
	parse(&p, "POST / HTTP/1.1\r\nHost: h\r\nExpect: magic\r\n\r\n", 8192);
	CHECK(p.st == HTTP_PARSE_ERROR && p.status == 417);
}

/* Everything that could smuggle a second request or confuse a proxy is refused. */
UNIT_TEST(http_parse_rejections)
{
	static const struct { const char *req; int status; } cases[] = {
		{ "GET / HTTP/1.1\r\n\r\n", 400 },                                     /* no Host */
		{ "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400 },               /* two Hosts */
		{ "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505 },
		{ "GET / FOO/1.1\r\nHost: a\r\n\r\n", 400 },
		{ "GET /\r\nHost: a\r\n\r\n", 400 },
		{ "GET http://x/ HTTP/1.1\r\nHost: a\r\n\r\n", 400 },
		{ "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400 },
		{ "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400 },                         /* space before colon */
		{ "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400 },               /* obs-fold */
		{ "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", 400 },
		{ "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400 },
		{ "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400 },
		{ "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1e3\r\n\r\n", 400 },
		{ "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400 },
		{ "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501 },
		{ "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400 },
		{ "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\r\nHost: a\r\n: empty\r\n\r\n", 400 },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct parsed p;
		parse(&p, cases[i].req, 8192);
		if (p.st != HTTP_PARSE_ERROR || p.status != cases[i].status)
			unit_fail(__FILE__, __LINE__, "case %zu: st=%d status=%d, want error %d", i, p.st, p.status,
				  cases[i].status);
	}
}

UNIT_TEST(http_parse_limits)
{
	struct parsed p;
	char req[4000];
	/* A request line longer than the limit: 414 as soon as it is known. */
	snprintf(req, sizeof req, "GET /%0600d", 0);
	parse(&p, req, 512);
	CHECK(p.st == HTTP_PARSE_ERROR && p.status == 414);
	/* Headers over the limit: 431. */
	snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: a\r\nX: %0600d\r\n\r\n", 0);
	parse(&p, req, 512);
	CHECK(p.st == HTTP_PARSE_ERROR && p.status == 431);
	/* Too many header lines. */
	size_t n = (size_t)snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: a\r\n");
	for (int i = 0; i < HTTP_MAX_HEADERS + 1; i++)
		n += (size_t)snprintf(req + n, sizeof req - n, "X%d: v\r\n", i);
	snprintf(req + n, sizeof req - n, "\r\n");
	parse(&p, req, 8192);
	CHECK(p.st == HTTP_PARSE_ERROR && p.status == 431);
}

static void sink(void *arg, const char *p, size_t n)
{
	strncat(arg, p, n);
}

UNIT_TEST(http_chunked_decoding)
{
	const char *body = "4\r\nWiki\r\n5;ext=1\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nTrailer: x\r\n\r\nNEXT";
	/* Fed whole, then byte by byte: same result. */
	for (int mode = 0; mode < 2; mode++) {
		struct http_chunked c;
		char out[128] = "";
		size_t used = 0, total = 0, len = strlen(body);
		enum http_chunked_status st = HTTP_CHUNKED_MORE;
		http_chunked_init(&c);
		while (total < len && st == HTTP_CHUNKED_MORE) {
			size_t step = mode == 0 ? len - total : 1;
			st = http_chunked_feed(&c, body + total, step, &used, 1024, sink, out);
			total += used;
		}
		CHECK(st == HTTP_CHUNKED_DONE);
		CHECK_EQ_STR(out, "Wikipedia in\r\n\r\nchunks.");
		CHECK_EQ_STR(body + total, "NEXT");
	}
}

UNIT_TEST(http_chunked_errors)
{
	struct http_chunked c;
	size_t used;
	http_chunked_init(&c);
	CHECK(http_chunked_feed(&c, "zz\r\n", 4, &used, 1024, NULL, NULL) == HTTP_CHUNKED_ERROR);
	http_chunked_init(&c);
	CHECK(http_chunked_feed(&c, "400\r\n", 5, &used, 1000, NULL, NULL) == HTTP_CHUNKED_TOO_LARGE);
	http_chunked_init(&c);
	CHECK(http_chunked_feed(&c, "FFFFFFFFFFFFFFFFFF\r\n", 20, &used, 1000, NULL, NULL) == HTTP_CHUNKED_TOO_LARGE);
	http_chunked_init(&c);
	CHECK(http_chunked_feed(&c, "3\r\nabcX", 7, &used, 1000, NULL, NULL) == HTTP_CHUNKED_ERROR);
}

UNIT_TEST(http_url_decoding)
{
	char out[64];
	CHECK_EQ_INT(http_url_decode("a%20b+c", 7, out, sizeof out, true), 5);
	CHECK_EQ_STR(out, "a b c");
	CHECK_EQ_INT(http_url_decode("a+b", 3, out, sizeof out, false), 3);
	CHECK_EQ_STR(out, "a+b");
	CHECK_EQ_INT(http_url_decode("%4", 2, out, sizeof out, false), -1);
	CHECK_EQ_INT(http_url_decode("%zz", 3, out, sizeof out, false), -1);
	CHECK_EQ_INT(http_url_decode("%00", 3, out, sizeof out, false), -1);
	CHECK_EQ_INT(http_url_decode("abcdef", 6, out, 4, false), -1);
}

/* Feeds body whole, then byte by byte; both must agree. Returns the status
 * and fills out with the body. */
static enum http_chunked_status chunked_both_ways(const char *body, char *out, size_t *consumed)
{
	enum http_chunked_status first = HTTP_CHUNKED_MORE;
	for (int mode = 0; mode < 2; mode++) {
		struct http_chunked c;
		size_t used = 0, total = 0, len = strlen(body);
		enum http_chunked_status st = HTTP_CHUNKED_MORE;
		out[0] = '\0';
		http_chunked_init(&c);
		while (total < len && st == HTTP_CHUNKED_MORE) {
			size_t step = mode == 0 ? len - total : 1;
			st = http_chunked_feed(&c, body + total, step, &used, 1024, sink, out);
			total += used;
		}
		if (mode == 0)
			first = st;
		else
			CHECK(st == first);
		*consumed = total;
	}
	return first;
}

/* RFC 9112 7.1: chunk extensions with optional blanks (spaces or tabs) and
 * quoted values, a size with leading zeros, a last chunk with extensions,
 * trailer fields. Each was refused with a 400 (or 413) before. */
UNIT_TEST(http_chunked_rfc9112_grammar)
{
	static const char *const ok[] = {
		"7\t;a=b\r\n{\"a\":1}\r\n0\r\n\r\n",
		"7;\ta=b\r\n{\"a\":1}\r\n0\r\n\r\n",
		"7 ; a = b ; c\r\n{\"a\":1}\r\n0\r\n\r\n",
		"0000000000000000000007\r\n{\"a\":1}\r\n0\r\n\r\n",
		"7\r\n{\"a\":1}\r\n0;done=\"yes\"\r\n\r\n",
		"7\r\n{\"a\":1}\r\n000\r\nX-A: 1\r\nX-B:\t2\r\n\r\n",
		"7\n{\"a\":1}\n0\nX-A: 1\n\n",
	};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		char out[128];
		size_t used;
		enum http_chunked_status st = chunked_both_ways(ok[i], out, &used);
		if (st != HTTP_CHUNKED_DONE)
			unit_fail(__FILE__, __LINE__, "case %zu: status %d", i, (int)st);
		CHECK_EQ_STR(out, "{\"a\":1}");
		CHECK_EQ_INT(used, strlen(ok[i]));
	}
	char out[128];
	size_t used;
	CHECK(chunked_both_ways("7;a=\"x;y \\\"z\\\"\"\r\n{\"a\":1}\r\n0\r\n\r\n", out, &used) == HTTP_CHUNKED_DONE);
	CHECK_EQ_STR(out, "{\"a\":1}");
}

UNIT_TEST(http_chunked_rfc9112_refusals)
{
	static const char *const bad[] = {
		";a\r\n",                     /* no size */
		"7;a=\"x\ry\"\r\n",           /* CR inside a quoted string */
		"7;a\rb\r\n",                 /* bare CR in an extension */
		"7;a\x01\r\n",                /* control byte */
		"3\r\nabc\r\n0\r\n folded\r\n\r\n", /* obs-fold in the trailers */
		"3\r\nabc\r\n0\r\nX: a\rb\r\n\r\n",  /* bare CR in a trailer */
		"3\r\nabc\r\n0\r\nX: \x7f\r\n\r\n",  /* DEL in a trailer */
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char out[128];
		size_t used;
		enum http_chunked_status st = chunked_both_ways(bad[i], out, &used);
		if (st != HTTP_CHUNKED_ERROR)
			unit_fail(__FILE__, __LINE__, "case %zu: status %d, not an error", i, (int)st);
	}
	/* the sizes: 15 significant digits at most, leading zeros aside */
	struct http_chunked c;
	size_t u;
	http_chunked_init(&c);
	CHECK(http_chunked_feed(&c, "1000000000000000\r\n", 18, &u, SIZE_MAX, NULL, NULL) == HTTP_CHUNKED_TOO_LARGE);
	/* an endless extension or trailer section is cut off */
	char big[6000];
	memset(big, 'a', sizeof big);
	big[0] = '1';
	big[1] = ';';
	http_chunked_init(&c);
	CHECK(http_chunked_feed(&c, big, sizeof big, &u, 1024, NULL, NULL) == HTTP_CHUNKED_ERROR);
	http_chunked_init(&c);
	enum http_chunked_status st = http_chunked_feed(&c, "0\r\n", 3, &u, 1024, NULL, NULL);
	for (int i = 0; i < 2000 && st == HTTP_CHUNKED_MORE; i++)
		st = http_chunked_feed(&c, "X: y\r\n", 6, &u, 1024, NULL, NULL);
	CHECK(st == HTTP_CHUNKED_ERROR);
}

UNIT_TEST(http_url_decoding_always_terminates)
{
	/* A failed decode leaves a string behind (the reply printed whatever
	 * followed the bytes decoded so far). */
	char out[16];
	memset(out, 'X', sizeof out);
	CHECK_EQ_INT(http_url_decode("/v1/rides/%zz", 13, out, sizeof out, false), -1);
	CHECK_EQ_STR(out, "");
	memset(out, 'X', sizeof out);
	CHECK_EQ_INT(http_url_decode("abc%", 4, out, sizeof out, false), -1);
	CHECK_EQ_STR(out, "");
}

UNIT_TEST(http_target_decoding)
{
	char buf[512];
	struct http_target t;
	const char *tg = "/v1/a%20b/c?x=1&y=%41+b&&z&=v";
	REQUIRE(http_target_bufsize(tg) <= sizeof buf);
	REQUIRE(http_target_decode(tg, buf, sizeof buf, &t) == HTTP_TARGET_OK);
	CHECK_EQ_STR(t.path, "/v1/a b/c");
	REQUIRE(t.nquery == 4);
	CHECK_EQ_STR(t.keys[0], "x");
	CHECK_EQ_STR(t.vals[0], "1");
	CHECK_EQ_STR(t.keys[1], "y");
	CHECK_EQ_STR(t.vals[1], "A b");
	CHECK_EQ_STR(t.keys[2], "z");
	CHECK_EQ_STR(t.vals[2], "");
	CHECK_EQ_STR(t.keys[3], "");
	CHECK_EQ_STR(t.vals[3], "v");
	/* refusals keep the raw path for the reply */
	static const char *const bad_path[] = { "/v1/rides/%zz", "/v1/rides/%00", "/v1/rides/abc%", "/v1/%4" };
	for (size_t i = 0; i < sizeof bad_path / sizeof bad_path[0]; i++) {
		CHECK(http_target_decode(bad_path[i], buf, http_target_bufsize(bad_path[i]), &t) == HTTP_TARGET_BAD_PATH);
		CHECK_EQ_STR(t.path, bad_path[i]);
	}
	CHECK(http_target_decode("/v1/x?a=%zz", buf, sizeof buf, &t) == HTTP_TARGET_BAD_QUERY);
	CHECK_EQ_STR(t.path, "/v1/x");
	char many[512];
	size_t n = (size_t)snprintf(many, sizeof many, "/q?");
	for (int i = 0; i <= HTTP_MAX_QUERY; i++)
		n += (size_t)snprintf(many + n, sizeof many - n, "k%d=%d&", i, i);
	char big[1024];
	REQUIRE(http_target_bufsize(many) <= sizeof big);
	CHECK(http_target_decode(many, big, sizeof big, &t) == HTTP_TARGET_TOO_MANY);
}
