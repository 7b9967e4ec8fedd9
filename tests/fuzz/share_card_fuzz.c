/* Fuzz the rate card reader (share/card.c), which reads the rate_card_id a
 * rider sends with POST /v1/share/bookings.
 *
 * Input: any bytes, taken as the id. Oracles: it never reads out of bounds;
 * anything accepted (valid or expired) was signed with the key, so signing
 * what was read gives back exactly the input (one spelling per card); the
 * reader agrees with itself. The corpus holds cards signed with this
 * target's key. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "share/card.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct share_card_key key;
	static int ready;
	if (!ready) {
		if (sodium_init() < 0)
			abort();
		unsigned char qk[32];
		memset(qk, 7, sizeof qk);
		share_card_key(qk, &key);
		ready = 1;
	}
	if (size > 4096)
		return 0;
	char *id = malloc(size + 1);
	memcpy(id, data, size);
	id[size] = '\0';
	struct share_card c;
	enum share_card_check r = share_card_open(&key, id, 1000, &c);
	if (r != SHARE_CARD_INVALID) {
		char again[SHARE_CARD_ID_MAX];
		share_card_sign(&key, &c, again, sizeof again);
		if (strcmp(again, id) != 0)
			abort(); /* accepted something we did not sign */
	}
	struct share_card c2;
	if (share_card_open(&key, id, 1000, &c2) != r)
		abort();
	free(id);
	return 0;
}
