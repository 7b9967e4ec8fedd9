/* RFC 6455 WebSocket framing over byte buffers: no sockets, no allocation.
 * The session code feeds it what arrived; the fuzz targets feed it anything.
 *
 * Reading (a server parses client frames):
 *
 *   struct ws_parser p;                         one per connection, embedded
 *   ws_parser_init(&p, &(struct ws_limits){ .max_frame = 64 << 10,
 *                  .max_message = 256 << 10, .expect_masked = true });
 *
 *   bufferevent read callback (or after any read):
 *   struct evbuffer *in = bufferevent_get_input(bev);
 *   size_t want = WS_HEADER_MAX;
 *   for (;;) {
 *       size_t avail = evbuffer_get_length(in), n = want < avail ? want : avail;
 *       uint8_t *buf = evbuffer_pullup(in, (ev_ssize_t)n);
 *       struct ws_frame f;
 *       enum ws_status st = ws_parser_next(&p, buf, n, &f);
 *       if (st == WS_MORE) {
 *           if (f.need > avail)
 *               break;              wait for more bytes (f.need is bounded by
 *                                   max_frame + WS_HEADER_MAX)
 *           want = f.need;          the whole frame is there: pull it up
 *           continue;
 *       }
 *       if (st == WS_ERROR) {
 *           uint8_t c[WS_CLOSE_FRAME_MAX];
 *           evbuffer_add(out, c, ws_frame_build_close(c, f.error_code,
 *                        f.error, NULL));
 *           stop reading, close once the output drains (or on a timer);
 *           count f.error in metrics
 *           break;
 *       }
 *       handle(&f);                 f.payload points into buf, unmasked;
 *                                   copy what must outlive the drain
 *       evbuffer_drain(in, f.frame_len);
 *       want = WS_HEADER_MAX;
 *   }
 *
 * A call never changes the buffer or the parser unless it returns WS_OK or
 * WS_ERROR, so calling again with more bytes is always safe. Errors are found
 * as early as the bytes allow: a 2^40-byte length is refused from the header,
 * before any payload is buffered.
 *
 * Strictness (decided here, all per RFC 6455): no extensions are negotiated,
 * so RSV1..3 must be 0; unknown opcodes fail; client frames must be masked and
 * server frames must not be; lengths must use the minimal encoding (5.2:
 * "the minimal number of bytes MUST be used") and the 64-bit form must have
 * its top bit clear; control frames carry <= 125 bytes and are never
 * fragmented, but may come between the fragments of a message; text is
 * validated per fragment (failing fast, like Autobahn expects), and a text
 * message must end on a character boundary. After a close frame nothing more
 * is accepted. Every error names the close code it deserves: 1002 protocol
 * error, 1007 invalid payload (bad UTF-8), 1009 too big. */
#ifndef RH_NET_WS_FRAME_H
#define RH_NET_WS_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "net/utf8.h"

#define WS_HEADER_MAX 14  /* 2 + 8 (64-bit length) + 4 (mask) */
#define WS_CONTROL_MAX 125 /* payload bytes of a control frame */
#define WS_CLOSE_REASON_MAX 123
#define WS_CLOSE_FRAME_MAX (6 + WS_CONTROL_MAX) /* a whole close frame, masked */
#define WS_ACCEPT_LEN 28  /* base64 of a SHA-1 digest */
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

enum ws_opcode {
	WS_OP_CONT = 0x0,
	WS_OP_TEXT = 0x1,
	WS_OP_BINARY = 0x2,
	WS_OP_CLOSE = 0x8,
	WS_OP_PING = 0x9,
	WS_OP_PONG = 0xa,
};

/* RFC 6455 7.4.1 and the IANA registry. */
enum ws_close_code {
	WS_CLOSE_NORMAL = 1000,
	WS_CLOSE_GOING_AWAY = 1001,
	WS_CLOSE_PROTOCOL = 1002,
	WS_CLOSE_UNSUPPORTED = 1003,
	WS_CLOSE_NO_STATUS = 1005,  /* reported for a close frame without a code; never sent */
	WS_CLOSE_ABNORMAL = 1006,   /* connection dropped without a close; never sent */
	WS_CLOSE_INVALID_PAYLOAD = 1007,
	WS_CLOSE_POLICY = 1008,
	WS_CLOSE_TOO_BIG = 1009,
	WS_CLOSE_MANDATORY_EXT = 1010,
	WS_CLOSE_INTERNAL = 1011,
	WS_CLOSE_RESTART = 1012,
	WS_CLOSE_TRY_AGAIN = 1013,
	WS_CLOSE_BAD_GATEWAY = 1014,
};

enum ws_status {
	WS_OK = 0, /* one frame parsed: see struct ws_frame */
	WS_MORE,   /* need f.need bytes in the buffer (more than given) */
	WS_ERROR,  /* fail the connection with f.error_code */
};

struct ws_limits {
	size_t max_frame;   /* payload bytes of one frame (>= WS_CONTROL_MAX is sensible) */
	size_t max_message; /* payload bytes of one data message, all fragments */
	bool expect_masked; /* a server: true (client frames are masked); a client: false */
};

/* One per connection; the state between frames: an open fragmented message,
 * its length so far and its UTF-8 state. Plain value, no resources. */
struct ws_parser {
	struct ws_limits lim;
	bool in_message;
	bool closed;
	uint8_t msg_opcode; /* WS_OP_TEXT or WS_OP_BINARY while in_message */
	size_t msg_len;
	struct utf8_state utf8;
};

/* The fixed part of a frame, as on the wire. */
struct ws_frame_header {
	bool fin;
	uint8_t rsv;    /* RSV1..3 as bits 2..0 */
	uint8_t opcode;
	bool masked;
	uint8_t mask[4];
	uint64_t payload_len;
	size_t header_len; /* 2..14 */
};

struct ws_frame {
	size_t need;      /* WS_MORE: bytes the buffer must hold for progress */
	size_t frame_len; /* WS_OK: bytes to consume (header + payload) */

	/* WS_OK: the frame. */
	uint8_t opcode;   /* as sent: WS_OP_CONT for a continuation */
	bool fin;
	uint8_t *payload; /* inside the caller's buffer, unmasked in place */
	size_t payload_len;
	/* Data frames (TEXT, BINARY, CONT): the message they belong to. */
	uint8_t message_opcode; /* WS_OP_TEXT or WS_OP_BINARY */
	bool message_end;       /* this frame completes the message */
	/* CLOSE: the peer's code (WS_CLOSE_NO_STATUS when the payload is empty)
	 * and its reason (valid UTF-8, may be empty, points into payload). */
	uint16_t close_code;
	const uint8_t *close_reason;
	size_t close_reason_len;

	/* WS_ERROR: the close code to send and a short reason for logs and
	 * metrics (a static string, also fit as a close reason). */
	uint16_t error_code;
	const char *error;
};

void ws_parser_init(struct ws_parser *p, const struct ws_limits *lim);

/* Parses the frame at the start of buf[0..len). On WS_OK the payload has been
 * unmasked in place and the parser's message state advanced; the caller
 * consumes f->frame_len bytes. WS_MORE and WS_ERROR leave the parser as it
 * was (after WS_ERROR the connection is to be failed anyway). */
enum ws_status ws_parser_next(struct ws_parser *p, uint8_t *buf, size_t len, struct ws_frame *f);

/* The stateless first step: decodes and checks a header on its own (RSV,
 * opcode, control-frame rules, minimal length). WS_MORE with *need set when
 * len is too short; on WS_ERROR *error_code and *error say why. */
enum ws_status ws_frame_parse_header(const uint8_t *buf, size_t len, struct ws_frame_header *h, size_t *need,
				     uint16_t *error_code, const char **error);

/* XORs data[0..n) with the mask, as bytes offset.. of a payload (offset lets
 * a payload be unmasked in pieces). Word-at-a-time; its own inverse. */
void ws_mask_apply(uint8_t *data, size_t n, const uint8_t mask[4], size_t offset);

/* A close code a peer may send (RFC 6455 7.4: 1000-1003, 1007-1014,
 * 3000-4999); 1004-1006, 1015 and everything else are refused. */
bool ws_close_code_is_valid(uint16_t code);

/* Writes a frame header into out (WS_HEADER_MAX bytes of room) and returns
 * its length. Server frames pass mask = NULL; a client passes its 4-byte key
 * (and masks the payload with ws_mask_apply). */
size_t ws_frame_write_header(uint8_t *out, uint8_t opcode, bool fin, uint64_t payload_len, const uint8_t *mask);
/* A whole frame into out[0..cap): header, then the payload copied and masked
 * when mask != NULL. Returns the bytes written, 0 when cap is too small or a
 * control frame's payload exceeds WS_CONTROL_MAX. */
size_t ws_frame_build(uint8_t *out, size_t cap, uint8_t opcode, bool fin, const void *payload, size_t len,
		      const uint8_t *mask);
/* A close frame into out (WS_CLOSE_FRAME_MAX bytes): code 0 sends no code
 * (an empty close), else code must satisfy ws_close_code_is_valid; the reason
 * (UTF-8, may be NULL) is cut at a character boundary to
 * WS_CLOSE_REASON_MAX bytes. Returns the frame length, 0 for an invalid code
 * or a reason that is not UTF-8. */
size_t ws_frame_build_close(uint8_t *out, uint16_t code, const char *reason, const uint8_t *mask);

/* Sec-WebSocket-Accept for a client's Sec-WebSocket-Key:
 * base64(SHA-1(key + WS_GUID)), NUL-terminated in out. The key must be the
 * base64 form of 16 bytes (24 characters, blanks already trimmed), as RFC
 * 6455 4.2.1 requires; RH_EINVAL otherwise (answer 400). */
RH_MUST_CHECK rh_err ws_handshake_accept(const char *key, size_t key_len, char out[WS_ACCEPT_LEN + 1]);

const char *ws_opcode_name(uint8_t opcode);

#endif
