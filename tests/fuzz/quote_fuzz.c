/* Fuzz the quote reader (pricing/pricing.c), which reads the quote_id a
 * client sends with POST /v1/rides.
 *
 * Input: any bytes, taken as the quote id. Oracles: it never reads out of
 * bounds; anything accepted (valid or expired) was signed with the key, so
 * signing what was read must give back exactly the input (the format is
 * canonical and a forged one cannot pass; for an older q1 quote, exactly its
 * fields, and a q2's, its fields and the book's defaults); and the reader agrees with itself
 * on an input it has already judged. The corpus holds quotes signed with
 * this target's key, so the mutations start from real ones. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "pricing/pricing.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_SECRET "fuzz-quote-secret-0123456789abcdef"

/* The signed fields of a quote id, decoded. */
static int fuzz_fields(const char *id, char *out, size_t cap)
{
	const char *dot = strrchr(id, '.');
	size_t n = 0;
	if (!dot || dot < id + 3 ||
	    sodium_base642bin((unsigned char *)out, cap - 1, id + 3, (size_t)(dot - id - 3), NULL, &n, NULL,
			      sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
		return 0;
	out[n] = '\0';
	return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct quote_key key;
	static int ready;
	if (!ready) {
		if (sodium_init() < 0)
			abort();
		pricing_quote_key(FUZZ_SECRET, &key);
		ready = 1;
	}
	if (size > 4096)
		return 0;
	char *id = malloc(size + 1);
	memcpy(id, data, size);
	id[size] = '\0';
	struct quote q;
	enum quote_check c = pricing_quote_open(&key, id, 0, &q);
	if (c == QUOTE_OK || c == QUOTE_EXPIRED) {
		char again[QUOTE_ID_MAX];
		pricing_quote_sign(&key, &q, again, sizeof again);
		if (id[1] == '3' && strcmp(again, id) != 0)
			abort(); /* accepted something we did not sign */
		if (id[1] != '3') {
			/* an older quote (q1: another MAC; q1, q2: without the book's
			 * fields): the same fields, then the book's defaults */
			char f_old[400], f_new[400];
			if (!fuzz_fields(id, f_old, sizeof f_old) || !fuzz_fields(again, f_new, sizeof f_new))
				abort();
			size_t n = strlen(f_old);
			if (strncmp(f_new, f_old, n) != 0 || strcmp(f_new + n, "|0|-1|0|0") != 0)
				abort();
		}
	}
	struct quote q2;
	if (pricing_quote_open(&key, id, 0, &q2) != c)
		abort();
	free(id);
	return 0;
}
