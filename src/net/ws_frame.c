#include "net/ws_frame.h"

#include <sodium.h>
#include <string.h>

#include "net/sha1.h"

void ws_parser_init(struct ws_parser *p, const struct ws_limits *lim)
{
	*p = (struct ws_parser){ .lim = *lim };
	utf8_state_init(&p->utf8);
}

const char *ws_opcode_name(uint8_t opcode)
{
	switch (opcode) {
	case WS_OP_CONT: return "continuation";
	case WS_OP_TEXT: return "text";
	case WS_OP_BINARY: return "binary";
	case WS_OP_CLOSE: return "close";
	case WS_OP_PING: return "ping";
	case WS_OP_PONG: return "pong";
	}
	return "unknown";
}

static bool ws_opcode_is_known(uint8_t op)
{
	return op <= WS_OP_BINARY || (op >= WS_OP_CLOSE && op <= WS_OP_PONG);
}

static bool ws_opcode_is_control(uint8_t op)
{
	return (op & 0x8) != 0;
}

bool ws_close_code_is_valid(uint16_t code)
{
	return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

#define WS_FAIL(code, why)            \
	do {                          \
		*error_code = (code); \
		*error = (why);       \
		return WS_ERROR;      \
	} while (0)

#define WS_NEED(n)               \
	do {                     \
		*need = (n);     \
		return WS_MORE;  \
	} while (0)

/* The rules that depend on the connection (p may be NULL for the stateless
 * parse): checked from the first byte, so that the same frame fails the same
 * way however its bytes are split. */
static enum ws_status ws_check_state(const struct ws_parser *p, uint8_t opcode, uint16_t *error_code,
				     const char **error)
{
	if (!p)
		return WS_OK;
	if (p->closed)
		WS_FAIL(WS_CLOSE_PROTOCOL, "frame after close");
	if (opcode == WS_OP_CONT && !p->in_message)
		WS_FAIL(WS_CLOSE_PROTOCOL, "continuation without a message");
	if ((opcode == WS_OP_TEXT || opcode == WS_OP_BINARY) && p->in_message)
		WS_FAIL(WS_CLOSE_PROTOCOL, "new message inside a fragmented one");
	return WS_OK;
}

static enum ws_status ws_check_size(const struct ws_parser *p, const struct ws_frame_header *h,
				    uint16_t *error_code, const char **error)
{
	if (!p)
		return WS_OK;
	if (h->payload_len > p->lim.max_frame)
		WS_FAIL(WS_CLOSE_TOO_BIG, "frame too big");
	if (!ws_opcode_is_control(h->opcode)) {
		size_t before = h->opcode == WS_OP_CONT ? p->msg_len : 0;
		if (before > p->lim.max_message || h->payload_len > p->lim.max_message - before)
			WS_FAIL(WS_CLOSE_TOO_BIG, "message too big");
	}
	return WS_OK;
}

static enum ws_status ws_header_decode(const struct ws_parser *p, const uint8_t *buf, size_t len,
				       struct ws_frame_header *h, size_t *need, uint16_t *error_code,
				       const char **error)
{
	if (len < 1)
		WS_NEED(2);
	h->fin = buf[0] >> 7;
	h->rsv = (buf[0] >> 4) & 7;
	h->opcode = buf[0] & 0xf;
	if (h->rsv)
		WS_FAIL(WS_CLOSE_PROTOCOL, "reserved bits set");
	if (!ws_opcode_is_known(h->opcode))
		WS_FAIL(WS_CLOSE_PROTOCOL, "unknown opcode");
	if (ws_opcode_is_control(h->opcode) && !h->fin)
		WS_FAIL(WS_CLOSE_PROTOCOL, "fragmented control frame");
	if (ws_check_state(p, h->opcode, error_code, error) != WS_OK)
		return WS_ERROR;
	if (len < 2)
		WS_NEED(2);

	h->masked = buf[1] >> 7;
	uint8_t len7 = buf[1] & 0x7f;
	if (ws_opcode_is_control(h->opcode) && len7 > WS_CONTROL_MAX)
		WS_FAIL(WS_CLOSE_PROTOCOL, "control frame too long");
	if (p && h->masked != p->lim.expect_masked)
		WS_FAIL(WS_CLOSE_PROTOCOL, h->masked ? "masked frame from a server" : "unmasked frame from a client");
	size_t ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
	h->header_len = 2 + ext + (h->masked ? 4 : 0);
	if (len < h->header_len)
		WS_NEED(h->header_len);

	if (ext == 2) {
		h->payload_len = (uint64_t)buf[2] << 8 | buf[3];
		if (h->payload_len < 126)
			WS_FAIL(WS_CLOSE_PROTOCOL, "length not minimally encoded");
	} else if (ext == 8) {
		h->payload_len = 0;
		for (int i = 0; i < 8; i++)
			h->payload_len = h->payload_len << 8 | buf[2 + i];
		if (h->payload_len >> 63)
			WS_FAIL(WS_CLOSE_PROTOCOL, "length has its top bit set");
		if (h->payload_len <= 0xffff)
			WS_FAIL(WS_CLOSE_PROTOCOL, "length not minimally encoded");
	} else {
		h->payload_len = len7;
	}
	if (h->masked)
		memcpy(h->mask, buf + 2 + ext, 4);
	else
		memset(h->mask, 0, 4);
	return ws_check_size(p, h, error_code, error);
}

enum ws_status ws_frame_parse_header(const uint8_t *buf, size_t len, struct ws_frame_header *h, size_t *need,
				     uint16_t *error_code, const char **error)
{
	return ws_header_decode(NULL, buf, len, h, need, error_code, error);
}

void ws_mask_apply(uint8_t *data, size_t n, const uint8_t mask[4], size_t offset)
{
	uint8_t m[8];
	for (int i = 0; i < 8; i++)
		m[i] = mask[(offset + (size_t)i) & 3];
	uint64_t m64;
	memcpy(&m64, m, 8);
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t w;
		memcpy(&w, data + i, 8);
		w ^= m64;
		memcpy(data + i, &w, 8);
	}
	for (; i < n; i++)
		data[i] ^= m[i & 3];
}

#undef WS_FAIL
#define WS_FAIL(code, why)               \
	do {                             \
		f->error_code = (code);  \
		f->error = (why);        \
		return WS_ERROR;         \
	} while (0)

static enum ws_status ws_frame_close_payload(struct ws_frame *f)
{
	if (f->payload_len == 0) {
		f->close_code = WS_CLOSE_NO_STATUS;
		f->close_reason = f->payload;
		f->close_reason_len = 0;
		return WS_OK;
	}
	if (f->payload_len == 1)
		WS_FAIL(WS_CLOSE_PROTOCOL, "close payload of one byte");
	f->close_code = (uint16_t)(f->payload[0] << 8 | f->payload[1]);
	if (!ws_close_code_is_valid(f->close_code))
		WS_FAIL(WS_CLOSE_PROTOCOL, "invalid close code");
	f->close_reason = f->payload + 2;
	f->close_reason_len = f->payload_len - 2;
	if (!utf8_is_valid(f->close_reason, f->close_reason_len))
		WS_FAIL(WS_CLOSE_INVALID_PAYLOAD, "close reason is not UTF-8");
	return WS_OK;
}

/* A data frame: validates text and advances the message state. */
static enum ws_status ws_frame_data(struct ws_parser *p, struct ws_frame *f)
{
	bool cont = f->opcode == WS_OP_CONT;
	struct utf8_state u = p->utf8;
	f->message_opcode = cont ? p->msg_opcode : f->opcode;
	f->message_end = f->fin;
	if (f->message_opcode == WS_OP_TEXT) {
		if (!cont)
			utf8_state_init(&u);
		if (!utf8_state_feed(&u, f->payload, f->payload_len))
			WS_FAIL(WS_CLOSE_INVALID_PAYLOAD, "text is not UTF-8");
		if (f->fin && !utf8_state_is_complete(&u))
			WS_FAIL(WS_CLOSE_INVALID_PAYLOAD, "text ends inside a character");
	}
	if (f->fin) {
		p->in_message = false;
		p->msg_len = 0;
		utf8_state_init(&p->utf8);
	} else {
		p->in_message = true;
		p->msg_opcode = f->message_opcode;
		p->msg_len = (cont ? p->msg_len : 0) + f->payload_len;
		p->utf8 = u;
	}
	return WS_OK;
}

enum ws_status ws_parser_next(struct ws_parser *p, uint8_t *buf, size_t len, struct ws_frame *f)
{
	struct ws_frame_header h;
	memset(f, 0, sizeof *f);
	enum ws_status st = ws_header_decode(p, buf, len, &h, &f->need, &f->error_code, &f->error);
	if (st != WS_OK)
		return st;
	/* payload_len <= max_frame here, so this cannot wrap with sane limits;
	 * refuse rather than wrap with insane ones. */
	if (h.payload_len > SIZE_MAX - h.header_len)
		WS_FAIL(WS_CLOSE_TOO_BIG, "frame too big");
	size_t total = h.header_len + (size_t)h.payload_len;
	if (len < total) {
		f->need = total;
		return WS_MORE;
	}
	f->opcode = h.opcode;
	f->fin = h.fin;
	f->payload = buf + h.header_len;
	f->payload_len = (size_t)h.payload_len;
	if (h.masked)
		ws_mask_apply(f->payload, f->payload_len, h.mask, 0);
	if (!ws_opcode_is_control(h.opcode))
		st = ws_frame_data(p, f);
	else if (h.opcode == WS_OP_CLOSE && (st = ws_frame_close_payload(f)) == WS_OK)
		p->closed = true;
	if (st == WS_OK)
		f->frame_len = total;
	return st;
}

/* ------------------------------------------------------------ building */

size_t ws_frame_write_header(uint8_t *out, uint8_t opcode, bool fin, uint64_t payload_len, const uint8_t *mask)
{
	uint8_t mbit = mask ? 0x80 : 0;
	size_t n;
	out[0] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0xf));
	if (payload_len < 126) {
		out[1] = (uint8_t)(mbit | payload_len);
		n = 2;
	} else if (payload_len <= 0xffff) {
		out[1] = mbit | 126;
		out[2] = (uint8_t)(payload_len >> 8);
		out[3] = (uint8_t)payload_len;
		n = 4;
	} else {
		out[1] = mbit | 127;
		for (int i = 0; i < 8; i++)
			out[2 + i] = (uint8_t)(payload_len >> (56 - 8 * i));
		n = 10;
	}
	if (mask) {
		memcpy(out + n, mask, 4);
		n += 4;
	}
	return n;
}

size_t ws_frame_build(uint8_t *out, size_t cap, uint8_t opcode, bool fin, const void *payload, size_t len,
		      const uint8_t *mask)
{
	uint8_t hdr[WS_HEADER_MAX];
	if (ws_opcode_is_control(opcode) && len > WS_CONTROL_MAX)
		return 0;
	size_t hl = ws_frame_write_header(hdr, opcode, fin, len, mask);
	if (cap < hl || cap - hl < len)
		return 0;
	memcpy(out, hdr, hl);
	if (len)
		memcpy(out + hl, payload, len);
	if (mask)
		ws_mask_apply(out + hl, len, mask, 0);
	return hl + len;
}

size_t ws_frame_build_close(uint8_t *out, uint16_t code, const char *reason, const uint8_t *mask)
{
	uint8_t body[WS_CONTROL_MAX];
	size_t n = 0;
	if (code != 0) {
		size_t rlen = reason ? strlen(reason) : 0;
		if (!ws_close_code_is_valid(code) || !utf8_is_valid((const uint8_t *)reason, rlen))
			return 0;
		if (rlen > WS_CLOSE_REASON_MAX)
			rlen = utf8_boundary_before((const uint8_t *)reason, WS_CLOSE_REASON_MAX);
		body[0] = (uint8_t)(code >> 8);
		body[1] = (uint8_t)code;
		if (rlen)
			memcpy(body + 2, reason, rlen);
		n = 2 + rlen;
	}
	return ws_frame_build(out, WS_CLOSE_FRAME_MAX, WS_OP_CLOSE, true, body, n, mask);
}

rh_err ws_handshake_accept(const char *key, size_t key_len, char out[WS_ACCEPT_LEN + 1])
{
	uint8_t nonce[16], digest[SHA1_DIGEST_LEN];
	size_t bin_len = 0;
	const char *end = NULL;
	if (key_len != 24 ||
	    sodium_base642bin(nonce, sizeof nonce, key, key_len, NULL, &bin_len, &end,
			      sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    bin_len != sizeof nonce || end != key + key_len)
		return RH_EINVAL;
	struct sha1_ctx c;
	sha1_init(&c);
	sha1_update(&c, key, key_len);
	sha1_update(&c, WS_GUID, sizeof WS_GUID - 1);
	sha1_final(&c, digest);
	sodium_bin2base64(out, WS_ACCEPT_LEN + 1, digest, sizeof digest, sodium_base64_VARIANT_ORIGINAL);
	return RH_OK;
}
