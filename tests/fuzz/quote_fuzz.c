/* Fuzz the quote reader (pricing/pricing.c), which reads the quote_id a
 * client sends with POST /v1/rides.
 *
 * Input: any bytes, taken as the quote id. Oracles: it never reads out of
 * bounds; anything accepted (valid or expired) was signed with the key, so
 * signing what was read must give back exactly the input (the format is
 * canonical and a forged one cannot pass; for an older q1 quote, exactly its
 * fields); and the reader agrees with itself
 * on an input it has already judged. The corpus holds quotes signed with
 * this target's key, so the mutations start from real ones. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "pricing/pricing.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_SECRET "fuzz-quote-secret-0123456789abcdef"

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
		if (id[1] == '2' && strcmp(again, id) != 0)
			abort(); /* accepted something we did not sign */
		if (id[1] == '1') { /* an older quote (another MAC): the same fields */
			const char *a = strrchr(again, '.'), *b = strrchr(id, '.');
			if (a - again != b - id || memcmp(again + 3, id + 3, (size_t)(a - again) - 3) != 0)
				abort();
		}
	}
	struct quote q2;
	if (pricing_quote_open(&key, id, 0, &q2) != c)
		abort();
	free(id);
	return 0;
}
