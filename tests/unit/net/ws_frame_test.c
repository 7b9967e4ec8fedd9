#include "net/ws_frame.h"

#include <stdlib.h>

#include "net/sha1.h"
#include "net/utf8.h"

#include "../unit.h"

static const struct ws_limits server_lim = { .max_frame = 1 << 20, .max_message = 4 << 20, .expect_masked = true };
static const struct ws_limits client_lim = { .max_frame = 1 << 20, .max_message = 4 << 20, .expect_masked = false };

/* Parses exactly one frame that fills buf; checks it is accepted whole and
 * that every shorter prefix asks for more. */
static enum ws_status parse_whole(struct ws_parser *p, uint8_t *buf, size_t len, struct ws_frame *f)
{
	for (size_t n = 0; n < len; n++) {
		struct ws_parser before = *p;
		enum ws_status st = ws_parser_next(p, buf, n, f);
		if (st == WS_ERROR)
			return st; /* an early error: fine, the caller checks which */
		if (st != WS_MORE || f->need <= n || f->need > len || memcmp(&before, p, sizeof before) != 0) {
			unit_fail(__FILE__, __LINE__, "prefix %zu of %zu: status %d need %zu", n, len, st, f->need);
			return WS_ERROR;
		}
	}
	return ws_parser_next(p, buf, len, f);
}

UNIT_TEST(ws_rfc6455_examples)
{
	/* RFC 6455 5.7. */
	struct ws_parser p;
	struct ws_frame f;
	{
		uint8_t b[] = { 0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f }; /* unmasked text "Hello" */
		ws_parser_init(&p, &client_lim);
		REQUIRE(parse_whole(&p, b, sizeof b, &f) == WS_OK);
		CHECK_EQ_INT(f.opcode, WS_OP_TEXT);
		CHECK(f.fin && f.message_end && f.message_opcode == WS_OP_TEXT);
		CHECK_EQ_INT(f.frame_len, 7);
		CHECK(f.payload_len == 5 && memcmp(f.payload, "Hello", 5) == 0);
		/* A server refuses it: client frames must be masked. */
		ws_parser_init(&p, &server_lim);
		CHECK_EQ_INT(ws_parser_next(&p, b, sizeof b, &f), WS_ERROR);
		CHECK_EQ_INT(f.error_code, 1002);
	}
	{
		/* masked text "Hello" */
		uint8_t b[] = { 0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58 };
		ws_parser_init(&p, &server_lim);
		REQUIRE(parse_whole(&p, b, sizeof b, &f) == WS_OK);
		CHECK(f.payload_len == 5 && memcmp(f.payload, "Hello", 5) == 0);
		CHECK_EQ_INT(f.frame_len, 11);
		CHECK(f.payload == b + 6);
		/* A client refuses a masked frame from a server. */
		uint8_t c[] = { 0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58 };
		ws_parser_init(&p, &client_lim);
		CHECK_EQ_INT(ws_parser_next(&p, c, sizeof c, &f), WS_ERROR);
		CHECK_EQ_INT(f.error_code, 1002);
	}
	{
		/* fragmented unmasked text "Hel" + "lo" */
		uint8_t b[] = { 0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f };
		ws_parser_init(&p, &client_lim);
		REQUIRE(parse_whole(&p, b, 5, &f) == WS_OK);
		CHECK(!f.fin && !f.message_end && f.opcode == WS_OP_TEXT && f.message_opcode == WS_OP_TEXT);
		CHECK(f.payload_len == 3 && memcmp(f.payload, "Hel", 3) == 0);
		REQUIRE(parse_whole(&p, b + 5, 4, &f) == WS_OK);
		CHECK(f.fin && f.message_end && f.opcode == WS_OP_CONT && f.message_opcode == WS_OP_TEXT);
		CHECK(f.payload_len == 2 && memcmp(f.payload, "lo", 2) == 0);
	}
	{
		/* unmasked ping "Hello", then masked pong "Hello" */
		uint8_t ping[] = { 0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f };
		uint8_t pong[] = { 0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58 };
		ws_parser_init(&p, &client_lim);
		REQUIRE(parse_whole(&p, ping, sizeof ping, &f) == WS_OK);
		CHECK(f.opcode == WS_OP_PING && f.payload_len == 5 && memcmp(f.payload, "Hello", 5) == 0);
		ws_parser_init(&p, &server_lim);
		REQUIRE(parse_whole(&p, pong, sizeof pong, &f) == WS_OK);
		CHECK(f.opcode == WS_OP_PONG && f.payload_len == 5 && memcmp(f.payload, "Hello", 5) == 0);
	}
	{
		/* 256 bytes binary (16-bit length), 64 KiB binary (64-bit length) */
		static uint8_t b[10 + 65536];
		b[0] = 0x82, b[1] = 0x7e, b[2] = 0x01, b[3] = 0x00;
		ws_parser_init(&p, &client_lim);
		REQUIRE(parse_whole(&p, b, 4 + 256, &f) == WS_OK);
		CHECK(f.opcode == WS_OP_BINARY && f.payload_len == 256 && f.frame_len == 260 && f.payload == b + 4);
		memset(b, 0, sizeof b);
		b[0] = 0x82, b[1] = 0x7f, b[7] = 0x01; /* 0x0000000000010000 */
		REQUIRE(ws_parser_next(&p, b, 10, &f) == WS_MORE);
		CHECK_EQ_INT(f.need, 10 + 65536);
		REQUIRE(ws_parser_next(&p, b, sizeof b, &f) == WS_OK);
		CHECK(f.payload_len == 65536 && f.message_opcode == WS_OP_BINARY && f.message_end);
	}
}

UNIT_TEST(ws_handshake_accept_rfc_example)
{
	/* RFC 6455 1.3 */
	char out[WS_ACCEPT_LEN + 1];
	const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
	CHECK_EQ_INT(ws_handshake_accept(key, strlen(key), out), RH_OK);
	CHECK_EQ_STR(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
	/* RFC 6455 4.2.1: the key decodes to 16 bytes. */
	CHECK_EQ_INT(ws_handshake_accept("dGhlIHNhbXBsZSBub25jZQ", 22, out), RH_EINVAL);
	CHECK_EQ_INT(ws_handshake_accept("dGhlIHNhbXBsZSBub25jZQ=!", 24, out), RH_EINVAL);
	CHECK_EQ_INT(ws_handshake_accept("dGhlIHNhbXBsZSBub25jZXh4", 24, out), RH_EINVAL); /* 18 bytes */
	CHECK_EQ_INT(ws_handshake_accept("", 0, out), RH_EINVAL);
}

static const char *hex(const uint8_t *d, size_t n)
{
	static char s[2 * 64 + 1];
	for (size_t i = 0; i < n; i++)
		snprintf(s + 2 * i, 3, "%02x", d[i]);
	return s;
}

UNIT_TEST(ws_sha1_fips_vectors)
{
	/* FIPS 180-2 appendix A and the usual empty/million-a vectors. */
	uint8_t d[20];
	sha1_digest("abc", 3, d);
	CHECK_EQ_STR(hex(d, 20), "a9993e364706816aba3e25717850c26c9cd0d89d");
	sha1_digest("", 0, d);
	CHECK_EQ_STR(hex(d, 20), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
	const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	sha1_digest(m, strlen(m), d);
	CHECK_EQ_STR(hex(d, 20), "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
	struct sha1_ctx c;
	uint8_t a[1001];
	memset(a, 'a', sizeof a);
	sha1_init(&c);
	for (int i = 0; i < 1000; i++)
		sha1_update(&c, a, i % 2 ? 999 : 1001); /* odd split points, 10^6 bytes */
	sha1_final(&c, d);
	CHECK_EQ_STR(hex(d, 20), "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
}

/* Builds a masked client frame (as a client would) into b; returns its length. */
static size_t client_frame(uint8_t *b, size_t cap, uint8_t b0, const void *payload, size_t len)
{
	static const uint8_t key[4] = { 0xa1, 0xb2, 0xc3, 0xd4 };
	size_t n = ws_frame_build(b, cap, b0 & 0xf, (b0 & 0x80) != 0, payload, len, key);
	b[0] = b0; /* keep any RSV bits the test wants */
	return n;
}

static uint16_t expect_error(const struct ws_limits *lim, uint8_t *b, size_t n)
{
	struct ws_parser p;
	struct ws_frame f;
	ws_parser_init(&p, lim);
	enum ws_status st = ws_parser_next(&p, b, n, &f);
	if (st != WS_ERROR) {
		unit_fail(__FILE__, __LINE__, "status %d, expected an error", st);
		return 0;
	}
	CHECK(f.error != NULL);
	return f.error_code;
}

UNIT_TEST(ws_header_protocol_errors)
{
	uint8_t b[80000];
	/* RSV bits without an extension, each of them. */
	for (int r = 1; r < 8; r++) {
		size_t n = client_frame(b, sizeof b, (uint8_t)(0x81 | r << 4), "x", 1);
		CHECK_EQ_INT(expect_error(&server_lim, b, n), 1002);
		CHECK_EQ_INT(expect_error(&server_lim, b, 1), 1002); /* found from the first byte */
	}
	/* Reserved opcodes 3-7 and 0xB-0xF. */
	for (int op = 3; op < 16; op++) {
		if (op >= 8 && op <= 10)
			continue;
		size_t n = client_frame(b, sizeof b, (uint8_t)(0x80 | op), "", 0);
		CHECK_EQ_INT(expect_error(&server_lim, b, n), 1002);
	}
	/* Fragmented control frames; control frames over 125 bytes. */
	size_t n = client_frame(b, sizeof b, 0x09, "hi", 2);
	CHECK_EQ_INT(expect_error(&server_lim, b, n), 1002);
	uint8_t big[126] = { 0 };
	n = ws_frame_write_header(b, WS_OP_PING, true, 126, (const uint8_t *)"abcd");
	memcpy(b + n, big, 126);
	CHECK_EQ_INT(expect_error(&server_lim, b, n + 126), 1002);
	CHECK_EQ_INT(expect_error(&server_lim, b, 2), 1002); /* found from the second byte */
	CHECK_EQ_INT(ws_frame_build(b, sizeof b, WS_OP_PING, true, big, 126, NULL), 0); /* never built */
	/* Non-minimal lengths: 16-bit form for 125, 64-bit form for 65535. */
	uint8_t nm16[] = { 0x82, 0xfe, 0x00, 0x7d, 1, 2, 3, 4 };
	CHECK_EQ_INT(expect_error(&server_lim, nm16, sizeof nm16), 1002);
	uint8_t nm64[] = { 0x82, 0xff, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4 };
	CHECK_EQ_INT(expect_error(&server_lim, nm64, sizeof nm64), 1002);
	/* ... but 126 in 16 bits and 65536 in 64 bits are fine. */
	struct ws_parser p;
	struct ws_frame f;
	uint8_t ok16[4 + 126] = { 0x82, 0x7e, 0x00, 0x7e };
	ws_parser_init(&p, &client_lim);
	CHECK_EQ_INT(ws_parser_next(&p, ok16, sizeof ok16, &f), WS_OK);
	/* The 64-bit length's top bit must be clear. */
	uint8_t top[] = { 0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4 };
	CHECK_EQ_INT(expect_error(&server_lim, top, sizeof top), 1002);
}

UNIT_TEST(ws_size_limits)
{
	struct ws_limits lim = { .max_frame = 1000, .max_message = 2500, .expect_masked = true };
	uint8_t b[4096], pay[1001] = { 0 };
	struct ws_parser p;
	struct ws_frame f;
	/* A frame over max_frame fails from its header alone, before the payload. */
	size_t n = client_frame(b, sizeof b, 0x82, pay, 1001);
	CHECK_EQ_INT(expect_error(&lim, b, 8), 1009);
	CHECK_EQ_INT(expect_error(&lim, b, n), 1009);
	/* A huge declared length: refused, never "need 2^62 bytes". */
	uint8_t huge[] = { 0x82, 0xff, 0x3f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4 };
	CHECK_EQ_INT(expect_error(&lim, huge, sizeof huge), 1009);
	/* A message of fragments over max_message fails at the fragment that
	 * crosses it; exactly max_message passes. */
	ws_parser_init(&p, &lim);
	n = client_frame(b, sizeof b, 0x02, pay, 1000);
	REQUIRE(ws_parser_next(&p, b, n, &f) == WS_OK);
	n = client_frame(b, sizeof b, 0x00, pay, 1000);
	REQUIRE(ws_parser_next(&p, b, n, &f) == WS_OK);
	n = client_frame(b, sizeof b, 0x80, pay, 501);
	CHECK_EQ_INT(ws_parser_next(&p, b, n, &f), WS_ERROR);
	CHECK_EQ_INT(f.error_code, 1009);
	n = client_frame(b, sizeof b, 0x80, pay, 500);
	REQUIRE(ws_parser_next(&p, b, n, &f) == WS_OK);
	CHECK(f.message_end && f.message_opcode == WS_OP_BINARY);
	/* The count restarts with the next message. */
	n = client_frame(b, sizeof b, 0x82, pay, 1000);
	CHECK_EQ_INT(ws_parser_next(&p, b, n, &f), WS_OK);
	/* Control frames do not count towards the message. */
	ws_parser_init(&p, &lim);
	n = client_frame(b, sizeof b, 0x02, pay, 1000);
	REQUIRE(ws_parser_next(&p, b, n, &f) == WS_OK);
	for (int i = 0; i < 5; i++) {
		n = client_frame(b, sizeof b, 0x89, pay, 125);
		REQUIRE(ws_parser_next(&p, b, n, &f) == WS_OK);
		CHECK(f.opcode == WS_OP_PING && f.payload_len == 125);
	}
	n = client_frame(b, sizeof b, 0x80, pay, 1000);
	CHECK_EQ_INT(ws_parser_next(&p, b, n, &f), WS_OK);
}

UNIT_TEST(ws_fragmentation_state_machine)
{
	uint8_t b[256];
	struct ws_parser p;
	struct ws_frame f;
	size_t n;
	/* A continuation with no message open. */
	n = client_frame(b, sizeof b, 0x80, "x", 1);
	CHECK_EQ_INT(expect_error(&server_lim, b, n), 1002);
	/* A new data frame while a message is open. */
	ws_parser_init(&p, &server_lim);
	n = client_frame(b, sizeof b, 0x01, "ab", 2);
	REQUIRE(ws_parser_next(&p, b, n, &f) == WS_OK);
	n = client_frame(b, sizeof b, 0x82, "cd", 2);
	CHECK_EQ_INT(ws_parser_next(&p, b, n, &f), WS_ERROR);
	CHECK_EQ_INT(f.error_code, 1002);
	CHECK_EQ_INT(ws_parser_next(&p, b, 1, &f), WS_ERROR); /* from the first byte */
	/* Ping, pong and even close between fragments; then the message ends. */
	ws_parser_init(&p, &server_lim);
	n = client_frame(b, sizeof b, 0x01, "fra", 3);
	REQUIRE(ws_parser_next(&p, b, n, &f) == WS_OK);
	n = client_frame(b, sizeof b, 0x89, "p", 1);
	REQUIRE(ws_parser_next(&p, b, n, &f) == WS_OK);
	CHECK_EQ_INT(f.opcode, WS_OP_PING);
	n = client_frame(b, sizeof b, 0x8a, "", 0);
	REQUIRE(ws_parser_next(&p, b, n, &f) == WS_OK);
	CHECK_EQ_INT(f.opcode, WS_OP_PONG);
	n = client_frame(b, sizeof b, 0x00, "gme", 3);
	REQUIRE(ws_parser_next(&p, b, n, &f) == WS_OK);
	CHECK(f.message_opcode == WS_OP_TEXT && !f.message_end);
	n = client_frame(b, sizeof b, 0x80, "nts", 3);
	REQUIRE(ws_parser_next(&p, b, n, &f) == WS_OK);
	CHECK(f.message_opcode == WS_OP_TEXT && f.message_end && f.opcode == WS_OP_CONT);
	/* Empty frames are fine: an empty text message, empty fragments. */
	n = client_frame(b, sizeof b, 0x81, "", 0);
	REQUIRE(ws_parser_next(&p, b, n, &f) == WS_OK);
	CHECK(f.message_end && f.payload_len == 0);
	n = client_frame(b, sizeof b, 0x02, "", 0);
	REQUIRE(ws_parser_next(&p, b, n, &f) == WS_OK);
	n = client_frame(b, sizeof b, 0x80, "", 0);
	REQUIRE(ws_parser_next(&p, b, n, &f) == WS_OK);
	CHECK(f.message_end && f.message_opcode == WS_OP_BINARY);
	/* After a close frame nothing more is accepted. */
	n = client_frame(b, sizeof b, 0x88, "\x03\xe8", 2);
	REQUIRE(ws_parser_next(&p, b, n, &f) == WS_OK);
	CHECK_EQ_INT(f.close_code, 1000);
	n = client_frame(b, sizeof b, 0x89, "", 0);
	CHECK_EQ_INT(ws_parser_next(&p, b, n, &f), WS_ERROR);
	CHECK_EQ_INT(f.error_code, 1002);
}

UNIT_TEST(ws_text_utf8_across_fragments)
{
	uint8_t b[256];
	struct ws_parser p;
	struct ws_frame f;
	size_t n;
	/* "κόσμε" split inside its characters across three fragments. */
	const char *s = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5";
	ws_parser_init(&p, &server_lim);
	n = client_frame(b, sizeof b, 0x01, s, 1);
	REQUIRE(ws_parser_next(&p, b, n, &f) == WS_OK);
	n = client_frame(b, sizeof b, 0x00, s + 1, 3);
	REQUIRE(ws_parser_next(&p, b, n, &f) == WS_OK);
	n = client_frame(b, sizeof b, 0x80, s + 4, 7);
	REQUIRE(ws_parser_next(&p, b, n, &f) == WS_OK);
	CHECK(f.message_end);
	/* A message that ends inside a character: 1007 at the last fragment. */
	ws_parser_init(&p, &server_lim);
	n = client_frame(b, sizeof b, 0x01, s, 3);
	REQUIRE(ws_parser_next(&p, b, n, &f) == WS_OK);
	n = client_frame(b, sizeof b, 0x80, "", 0);
	CHECK_EQ_INT(ws_parser_next(&p, b, n, &f), WS_ERROR);
	CHECK_EQ_INT(f.error_code, 1007);
	/* Invalid bytes fail at their own fragment, before the message ends
	 * (fail fast): an overlong '/', then a surrogate. */
	ws_parser_init(&p, &server_lim);
	n = client_frame(b, sizeof b, 0x01, "ok", 2);
	REQUIRE(ws_parser_next(&p, b, n, &f) == WS_OK);
	n = client_frame(b, sizeof b, 0x00, "\xc0\xaf", 2);
	CHECK_EQ_INT(ws_parser_next(&p, b, n, &f), WS_ERROR);
	CHECK_EQ_INT(f.error_code, 1007);
	n = client_frame(b, sizeof b, 0x81, "\xed\xa0\x80", 3);
	CHECK_EQ_INT(expect_error(&server_lim, b, n), 1007);
	/* Binary messages are not checked. */
	n = client_frame(b, sizeof b, 0x82, "\xc0\xaf\xff", 3);
	ws_parser_init(&p, &server_lim);
	CHECK_EQ_INT(ws_parser_next(&p, b, n, &f), WS_OK);
}

UNIT_TEST(ws_close_frames)
{
	uint8_t b[256];
	struct ws_parser p;
	struct ws_frame f;
	size_t n;
	static const uint16_t good[] = { 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999 };
	static const uint16_t bad[] = { 0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535 };
	for (size_t i = 0; i < RH_ARRAY_LEN(good); i++) {
		uint8_t body[2] = { (uint8_t)(good[i] >> 8), (uint8_t)good[i] };
		ws_parser_init(&p, &server_lim);
		n = client_frame(b, sizeof b, 0x88, body, 2);
		REQUIRE(ws_parser_next(&p, b, n, &f) == WS_OK);
		CHECK_EQ_INT(f.close_code, good[i]);
		CHECK_EQ_INT(f.close_reason_len, 0);
		CHECK(ws_close_code_is_valid(good[i]));
	}
	for (size_t i = 0; i < RH_ARRAY_LEN(bad); i++) {
		uint8_t body[2] = { (uint8_t)(bad[i] >> 8), (uint8_t)bad[i] };
		n = client_frame(b, sizeof b, 0x88, body, 2);
		CHECK_EQ_INT(expect_error(&server_lim, b, n), 1002);
		CHECK(!ws_close_code_is_valid(bad[i]));
	}
	/* Empty close: no status. One byte: protocol error. */
	ws_parser_init(&p, &server_lim);
	n = client_frame(b, sizeof b, 0x88, "", 0);
	REQUIRE(ws_parser_next(&p, b, n, &f) == WS_OK);
	CHECK_EQ_INT(f.close_code, WS_CLOSE_NO_STATUS);
	n = client_frame(b, sizeof b, 0x88, "\x03", 1);
	CHECK_EQ_INT(expect_error(&server_lim, b, n), 1002);
	/* A reason: UTF-8 or 1007. */
	ws_parser_init(&p, &server_lim);
	n = client_frame(b, sizeof b, 0x88, "\x03\xe9going \xc3\xa0 bed", 14);
	REQUIRE(ws_parser_next(&p, b, n, &f) == WS_OK);
	CHECK_EQ_INT(f.close_code, 1001);
	CHECK(f.close_reason_len == 12 && memcmp(f.close_reason, "going \xc3\xa0 bed", 12) == 0);
	n = client_frame(b, sizeof b, 0x88, "\x03\xe8\xff", 3);
	CHECK_EQ_INT(expect_error(&server_lim, b, n), 1007);
}

UNIT_TEST(ws_build_server_frames)
{
	uint8_t b[70000];
	struct ws_parser p;
	struct ws_frame f;
	/* Server frames are unmasked, with minimal lengths; a client parses them. */
	static const size_t sizes[] = { 0, 1, 125, 126, 65535, 65536, 69000 };
	static uint8_t pay[69000];
	for (size_t i = 0; i < sizeof pay; i++)
		pay[i] = (uint8_t)(i * 7);
	for (size_t i = 0; i < RH_ARRAY_LEN(sizes); i++) {
		size_t n = ws_frame_build(b, sizeof b, WS_OP_BINARY, true, pay, sizes[i], NULL);
		size_t hl = sizes[i] < 126 ? 2 : sizes[i] < 65536 ? 4 : 10;
		CHECK_EQ_INT(n, hl + sizes[i]);
		CHECK_EQ_INT(b[1] & 0x80, 0);
		ws_parser_init(&p, &client_lim);
		REQUIRE(ws_parser_next(&p, b, n, &f) == WS_OK);
		CHECK(f.payload_len == sizes[i] && memcmp(f.payload, pay, sizes[i]) == 0);
	}
	CHECK_EQ_INT(ws_frame_build(b, 100, WS_OP_BINARY, true, pay, 99, NULL), 0); /* no room */
	/* Text, ping, pong. */
	size_t n = ws_frame_build(b, sizeof b, WS_OP_TEXT, true, "hi", 2, NULL);
	CHECK(n == 4 && b[0] == 0x81 && b[1] == 0x02 && memcmp(b + 2, "hi", 2) == 0);
	n = ws_frame_build(b, sizeof b, WS_OP_PING, true, "", 0, NULL);
	CHECK(n == 2 && b[0] == 0x89 && b[1] == 0x00);
	n = ws_frame_build(b, sizeof b, WS_OP_PONG, true, "x", 1, NULL);
	CHECK(n == 3 && b[0] == 0x8a && b[1] == 0x01);
	/* Close with code and reason; the reason is cut at a character boundary. */
	n = ws_frame_build_close(b, 1013, "slow reader", NULL);
	CHECK(n == 2 + 2 + 11 && b[0] == 0x88 && b[1] == 13 && b[2] == 0x03 && b[3] == 0xf5);
	char longr[200];
	memset(longr, 'a', sizeof longr);
	memcpy(longr + 121, "\xe2\x82\xac", 3); /* a euro sign across byte 123 */
	longr[199] = '\0';
	n = ws_frame_build_close(b, 1000, longr, NULL);
	CHECK_EQ_INT(n, 2 + 2 + 121);
	ws_parser_init(&p, &client_lim);
	REQUIRE(ws_parser_next(&p, b, n, &f) == WS_OK);
	CHECK(f.close_code == 1000 && f.close_reason_len == 121);
	CHECK_EQ_INT(ws_frame_build_close(b, 1005, NULL, NULL), 0); /* never sent */
	CHECK_EQ_INT(ws_frame_build_close(b, 1000, "\xff", NULL), 0);
	n = ws_frame_build_close(b, 0, NULL, NULL);
	CHECK(n == 2 && b[0] == 0x88 && b[1] == 0x00);
	CHECK_EQ_STR(ws_opcode_name(WS_OP_CLOSE), "close");
	CHECK_EQ_STR(ws_opcode_name(3), "unknown");
}

UNIT_TEST(ws_mask_offsets_and_word_path)
{
	/* Masking in pieces at any offset equals masking at once, and twice is
	 * the identity; lengths around the 8-byte word path. */
	uint8_t a[67], c[67], key[4] = { 0x12, 0x34, 0x56, 0x78 };
	for (size_t len = 0; len <= 67; len++) {
		for (size_t i = 0; i < len; i++)
			a[i] = c[i] = (uint8_t)(i * 13 + 1);
		ws_mask_apply(a, len, key, 0);
		for (size_t i = 0; i < len; i++)
			CHECK_EQ_INT(a[i], c[i] ^ key[i & 3]);
		size_t cut = len / 3;
		ws_mask_apply(c, cut, key, 0);
		ws_mask_apply(c + cut, len - cut, key, cut);
		CHECK(memcmp(a, c, len) == 0);
		ws_mask_apply(a + 1, len ? len - 1 : 0, key, 1); /* unaligned start */
		if (len)
			a[0] ^= key[0];
		for (size_t i = 0; i < len; i++)
			CHECK_EQ_INT(a[i], (uint8_t)(i * 13 + 1));
	}
}

UNIT_TEST(ws_parse_header_stateless)
{
	struct ws_frame_header h;
	size_t need = 0;
	uint16_t code = 0;
	const char *why = NULL;
	uint8_t b[] = { 0x82, 0xfe, 0x01, 0x00, 9, 8, 7, 6 };
	CHECK_EQ_INT(ws_frame_parse_header(b, 0, &h, &need, &code, &why), WS_MORE);
	CHECK_EQ_INT(need, 2);
	CHECK_EQ_INT(ws_frame_parse_header(b, 3, &h, &need, &code, &why), WS_MORE);
	CHECK_EQ_INT(need, 8);
	CHECK_EQ_INT(ws_frame_parse_header(b, 8, &h, &need, &code, &why), WS_OK);
	CHECK(h.fin && h.opcode == WS_OP_BINARY && h.masked && h.payload_len == 256 && h.header_len == 8);
	CHECK(h.mask[0] == 9 && h.mask[3] == 6 && h.rsv == 0);
	b[0] = 0xc2;
	CHECK_EQ_INT(ws_frame_parse_header(b, 8, &h, &need, &code, &why), WS_ERROR);
	CHECK_EQ_INT(code, 1002);
	CHECK_EQ_STR(why, "reserved bits set");
}

/* ---------------------------------------------------------------- UTF-8 */

UNIT_TEST(utf8_validator_cases)
{
	static const struct { const char *s; size_t n; bool ok; } cases[] = {
		{ "", 0, true },
		{ "plain ascii, longer than one word", 33, true },
		{ "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 11, true }, /* κόσμε */
		{ "\x7f", 1, true },
		{ "\xc2\x80", 2, true },             /* U+0080 */
		{ "\xdf\xbf", 2, true },             /* U+07FF */
		{ "\xe0\xa0\x80", 3, true },         /* U+0800 */
		{ "\xef\xbf\xbf", 3, true },         /* U+FFFF */
		{ "\xed\x9f\xbf", 3, true },         /* U+D7FF */
		{ "\xee\x80\x80", 3, true },         /* U+E000 */
		{ "\xf0\x90\x80\x80", 4, true },     /* U+10000 */
		{ "\xf4\x8f\xbf\xbf", 4, true },     /* U+10FFFF */
		{ "\x80", 1, false },                /* lone continuation */
		{ "\xbf", 1, false },
		{ "\xc0\xaf", 2, false },            /* overlong '/' */
		{ "\xc1\xbf", 2, false },
		{ "\xe0\x80\xaf", 3, false },        /* overlong 3-byte */
		{ "\xe0\x9f\xbf", 3, false },
		{ "\xf0\x80\x80\xaf", 4, false },    /* overlong 4-byte */
		{ "\xf0\x8f\xbf\xbf", 4, false },
		{ "\xed\xa0\x80", 3, false },        /* U+D800 */
		{ "\xed\xbf\xbf", 3, false },        /* U+DFFF */
		{ "\xf4\x90\x80\x80", 4, false },    /* U+110000 */
		{ "\xf5\x80\x80\x80", 4, false },
		{ "\xff", 1, false },
		{ "\xfe", 1, false },
		{ "\xc2", 1, false },                /* truncated */
		{ "\xe2\x82", 2, false },
		{ "\xf0\x9f\x98", 3, false },
		{ "\xc2\x41", 2, false },            /* continuation missing */
		{ "abcdefg\xc3\xa9xyz", 12, true },
		{ "abcdefgh\x80", 9, false },        /* bad byte right after a word */
	};
	for (size_t i = 0; i < RH_ARRAY_LEN(cases); i++) {
		const uint8_t *s = (const uint8_t *)cases[i].s;
		size_t n = cases[i].n;
		if (utf8_is_valid(s, n) != cases[i].ok)
			unit_fail(__FILE__, __LINE__, "case %zu: expected %s", i, cases[i].ok ? "valid" : "invalid");
		/* Any split gives the same verdict. */
		for (size_t cut = 0; cut <= n; cut++) {
			struct utf8_state u;
			utf8_state_init(&u);
			bool ok = utf8_state_feed(&u, s, cut) && utf8_state_feed(&u, s + cut, n - cut) &&
				  utf8_state_is_complete(&u);
			CHECK_EQ_INT(ok, cases[i].ok);
		}
	}
	/* Truncated text is a valid prefix (feed succeeds) but not complete. */
	struct utf8_state u;
	utf8_state_init(&u);
	CHECK(utf8_state_feed(&u, (const uint8_t *)"\xf0\x9f\x98", 3));
	CHECK(!utf8_state_is_complete(&u));
	CHECK(utf8_state_feed(&u, (const uint8_t *)"\x80", 1));
	CHECK(utf8_state_is_complete(&u));
	/* Fail fast: an impossible second byte fails at once, and stays failed. */
	utf8_state_init(&u);
	CHECK(!utf8_state_feed(&u, (const uint8_t *)"\xed\xa0", 2));
	CHECK(!utf8_state_feed(&u, (const uint8_t *)"a", 1));
	CHECK(!utf8_state_is_complete(&u));
}

UNIT_TEST(utf8_boundary_before_cases)
{
	const uint8_t *s = (const uint8_t *)"ab\xe2\x82\xac"; /* "ab€" */
	CHECK_EQ_INT(utf8_boundary_before(s, 5), 5);
	CHECK_EQ_INT(utf8_boundary_before(s, 4), 2);
	CHECK_EQ_INT(utf8_boundary_before(s, 3), 2);
	CHECK_EQ_INT(utf8_boundary_before(s, 2), 2);
	CHECK_EQ_INT(utf8_boundary_before(s, 0), 0);
	const uint8_t *e = (const uint8_t *)"\xf0\x9f\x98\x80"; /* U+1F600 */
	CHECK_EQ_INT(utf8_boundary_before(e, 4), 4);
	CHECK_EQ_INT(utf8_boundary_before(e, 3), 0);
	CHECK_EQ_INT(utf8_boundary_before(e, 1), 0);
}
