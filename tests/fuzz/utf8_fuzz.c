/* Fuzz target for the incremental UTF-8 validator, differential against a
 * deliberately naive reference written from RFC 3629's definition: decode
 * each sequence by its bit pattern, then refuse overlongs, surrogates and
 * code points above U+10FFFF by value. The validator must agree on the
 * verdict, fail at exactly the first byte after which no valid text could
 * follow (byte by byte), and give the same answer for any split. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Sequence length announced by a lead byte's bit pattern; 0 if none. */
static int ref_seq_len(uint8_t c)
{
	if (c < 0x80)
		return 1;
	if ((c >> 5) == 0x6)
		return 2;
	if ((c >> 4) == 0xe)
		return 3;
	if ((c >> 3) == 0x1e)
		return 4;
	return 0;
}

/* A complete sequence of len bytes: continuation bytes, then the value. */
static bool ref_decode_ok(const uint8_t *s, int len)
{
	static const uint32_t min_cp[5] = { 0, 0, 0x80, 0x800, 0x10000 };
	static const uint8_t lead_mask[5] = { 0, 0x7f, 0x1f, 0x0f, 0x07 };
	uint32_t cp = s[0] & lead_mask[len];
	for (int k = 1; k < len; k++) {
		if ((s[k] & 0xc0) != 0x80)
			return false;
		cp = cp << 6 | (s[k] & 0x3f);
	}
	return cp >= min_cp[len] && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff);
}

/* Can the first `have` bytes of a len-byte sequence still be completed?
 * Only the second byte's range ever matters, and every allowed range
 * contains one of these values; later bytes can be anything 80..BF. */
static bool ref_completable(const uint8_t *s, int have, int len)
{
	static const uint8_t second[] = { 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf };
	uint8_t t[4];
	for (size_t c = 0; c < sizeof second; c++) {
		memcpy(t, s, (size_t)have);
		for (int k = have; k < len; k++)
			t[k] = k == 1 ? second[c] : 0x80;
		if (ref_decode_ok(t, len))
			return true;
	}
	return false;
}

/* Index of the first byte after which the text cannot be valid, or n; and
 * whether the text ends on a character boundary. */
static size_t ref_first_bad(const uint8_t *s, size_t n, bool *complete)
{
	size_t i = 0;
	while (i < n) {
		int len = ref_seq_len(s[i]);
		if (len == 0)
			return i;
		for (int have = 1; have <= len; have++) {
			if (i + (size_t)have > n) {
				*complete = false;
				return n;
			}
			bool ok = have < len ? ref_completable(s + i, have, len) : ref_decode_ok(s + i, len);
			if (!ok)
				return i + (size_t)have - 1;
		}
		i += (size_t)len;
	}
	*complete = true;
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	bool complete = false;
	size_t bad = ref_first_bad(data, size, &complete);
	bool valid = bad == size && complete;

	if (utf8_is_valid(data, size) != valid)
		abort();

	/* Byte by byte: the first refused byte is the reference's. */
	struct utf8_state u;
	utf8_state_init(&u);
	size_t first_fail = size;
	for (size_t i = 0; i < size; i++) {
		if (!utf8_state_feed(&u, data + i, 1)) {
			first_fail = i;
			break;
		}
	}
	if (first_fail != bad)
		abort();
	if (bad == size && utf8_state_is_complete(&u) != complete)
		abort();

	/* Random pieces (lengths taken from the data itself, so long ASCII runs
	 * cross the word path at every alignment): the piece that fails is the
	 * one holding the first bad byte. */
	utf8_state_init(&u);
	size_t off = 0, k = 0;
	while (off < size) {
		size_t piece = 1 + (size ? data[k++ % size] % 23 : 0);
		if (piece > size - off)
			piece = size - off;
		bool ok = utf8_state_feed(&u, data + off, piece);
		if (ok != (bad >= off + piece))
			abort();
		if (!ok)
			break;
		off += piece;
	}
	if (off == size && utf8_state_is_complete(&u) != valid)
		abort();

	/* Truncation to a boundary keeps valid text valid, and as much of it as
	 * possible. */
	if (valid && size <= 512) {
		for (size_t n = size > 8 ? size - 8 : 0; n <= size; n++) {
			size_t m = utf8_boundary_before(data, n);
			if (m > n || n - m > 3 || !utf8_is_valid(data, m))
				abort();
			for (size_t j = m + 1; j <= n; j++)
				if (utf8_is_valid(data, j))
					abort();
		}
	}
	return 0;
}
