/* Fuzz target for the WebSocket frame parser.
 *
 * Input: byte 0 picks the limits and the role (bit 0: max_frame 200 instead
 * of 64 KiB, bit 1: max_message 300 instead of 256 KiB, bit 2: client role,
 * i.e. unmasked frames expected), byte 1 seeds the arrival pattern, the rest
 * is the byte stream from the peer.
 *
 * The stream is parsed twice: once as one contiguous buffer, once arriving
 * in random pieces through the pull-up loop documented in ws_frame.h. Both
 * must give the same frames and the same verdict. Every accepted frame must
 * rebuild byte-for-byte with ws_frame_build (lengths are minimal, so there is
 * exactly one encoding), every completed text message must be valid UTF-8,
 * and every error must carry 1002, 1007 or 1009. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/utf8.h"
#include "net/ws_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_EVENTS 4096

struct event {
	int status;
	uint8_t opcode, message_opcode;
	bool fin, message_end;
	size_t payload_len, frame_len, need;
	uint64_t payload_hash;
	uint16_t close_code, error_code;
};

struct trace {
	struct event ev[MAX_EVENTS];
	size_t n;
};

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ULL;
	return h;
}

/* Reassembles messages the way a session would, to check UTF-8 and size. */
struct reasm {
	uint8_t *msg;
	size_t len;
};

static void check_frame(const struct ws_limits *lim, const struct ws_frame *f, const uint8_t *buf,
			const uint8_t *orig, size_t avail, struct reasm *r)
{
	if (f->frame_len < 2 || f->frame_len > avail || f->payload < buf || f->payload + f->payload_len != buf + f->frame_len ||
	    f->payload_len > lim->max_frame)
		abort();
	bool control = f->opcode & 8;
	if (control && (!f->fin || f->payload_len > WS_CONTROL_MAX))
		abort();
	/* Rebuild: the same header (mask from the original bytes) and payload. */
	static uint8_t rebuilt[WS_HEADER_MAX + (1 << 16)];
	const uint8_t *mask = NULL;
	if (lim->expect_masked)
		mask = orig + (f->frame_len - f->payload_len - 4);
	size_t n = ws_frame_build(rebuilt, sizeof rebuilt, f->opcode, f->fin, f->payload, f->payload_len, mask);
	if (n != f->frame_len || memcmp(rebuilt, orig, n) != 0)
		abort();
	if (f->opcode == WS_OP_CLOSE) {
		if (f->close_code != WS_CLOSE_NO_STATUS && !ws_close_code_is_valid(f->close_code))
			abort();
		if (!utf8_is_valid(f->close_reason, f->close_reason_len))
			abort();
		return;
	}
	if (control)
		return;
	if (r->len + f->payload_len > lim->max_message)
		abort();
	memcpy(r->msg + r->len, f->payload, f->payload_len);
	r->len += f->payload_len;
	if (f->message_end) {
		if (f->message_opcode == WS_OP_TEXT && !utf8_is_valid(r->msg, r->len))
			abort();
		r->len = 0;
	}
}

static void record(struct trace *t, enum ws_status st, const struct ws_frame *f)
{
	if (t->n == MAX_EVENTS)
		return;
	struct event *e = &t->ev[t->n++];
	memset(e, 0, sizeof *e);
	e->status = st;
	if (st == WS_OK) {
		e->opcode = f->opcode;
		e->message_opcode = f->message_opcode;
		e->fin = f->fin;
		e->message_end = f->message_end;
		e->payload_len = f->payload_len;
		e->frame_len = f->frame_len;
		e->payload_hash = fnv1a(f->payload, f->payload_len);
		e->close_code = f->close_code;
	} else if (st == WS_MORE) {
		e->need = f->need;
	} else {
		e->error_code = f->error_code;
		if (!f->error || (f->error_code != 1002 && f->error_code != 1007 && f->error_code != 1009))
			abort();
	}
}

/* The whole stream at once. */
static void run_contiguous(const struct ws_limits *lim, const uint8_t *in, size_t n, struct trace *t,
			   uint8_t *msgbuf)
{
	uint8_t *buf = malloc(n ? n : 1);
	struct ws_parser p;
	struct reasm r = { msgbuf, 0 };
	size_t off = 0;
	memcpy(buf, in, n);
	ws_parser_init(&p, lim);
	for (;;) {
		struct ws_frame f;
		enum ws_status st = ws_parser_next(&p, buf + off, n - off, &f);
		record(t, st, &f);
		if (st == WS_MORE && (f.need <= n - off || f.need > lim->max_frame + WS_HEADER_MAX))
			abort();
		if (st != WS_OK)
			break;
		check_frame(lim, &f, buf + off, in + off, n - off, &r);
		off += f.frame_len;
	}
	free(buf);
}

/* The same bytes arriving in pieces, through the documented pull-up loop. */
static void run_pieces(const struct ws_limits *lim, const uint8_t *in, size_t n, uint32_t seed, struct trace *t)
{
	uint8_t *buf = malloc(n ? n : 1);
	struct ws_parser p;
	size_t off = 0, arrived = 0, want = WS_HEADER_MAX;
	memcpy(buf, in, n);
	ws_parser_init(&p, lim);
	for (;;) {
		size_t avail = arrived - off, len = want < avail ? want : avail;
		struct ws_frame f;
		struct ws_parser before = p;
		enum ws_status st = ws_parser_next(&p, buf + off, len, &f);
		if (st == WS_MORE) {
			if (memcmp(&before, &p, sizeof p) != 0)
				abort();
			if (f.need <= avail) {
				want = f.need;
				continue;
			}
			if (arrived == n) {
				record(t, st, &f);
				break;
			}
			seed = seed * 1103515245u + 12345u;
			size_t piece = 1 + (seed >> 16) % 97;
			arrived = arrived + piece < n ? arrived + piece : n;
			continue;
		}
		record(t, st, &f);
		if (st == WS_ERROR)
			break;
		off += f.frame_len;
		want = WS_HEADER_MAX;
	}
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct trace a, b;
	static uint8_t msgbuf[1 << 18];
	if (size < 2)
		return 0;
	struct ws_limits lim = {
		.max_frame = (data[0] & 1) ? 200 : 1 << 16,
		.max_message = (data[0] & 2) ? 300 : 1 << 18,
		.expect_masked = !(data[0] & 4),
	};
	a.n = b.n = 0;
	run_contiguous(&lim, data + 2, size - 2, &a, msgbuf);
	run_pieces(&lim, data + 2, size - 2, data[1], &b);
	if (a.n != b.n || memcmp(a.ev, b.ev, sizeof a.ev[0] * a.n) != 0) {
		fprintf(stderr, "contiguous and piecewise parses differ (%zu vs %zu events)\n", a.n, b.n);
		abort();
	}
	return 0;
}
