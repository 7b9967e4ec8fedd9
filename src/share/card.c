/* The rate card's prices and its signed id (include/share/card.h). */
#include "share/card.h"

#include <inttypes.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void share_card_prices(int64_t solo, const struct share_prices *p, int64_t out[SHARE_CARD_OPTIONS])
{
	for (int seats = 1; seats <= 2; seats++)
		for (int ex = 0; ex <= 1; ex++)
			for (int corp = 0; corp <= 1; corp++) {
				double v = (double)solo * (1 - p->discount);
				if (ex)
					v *= 1 + p->express_premium;
				if (seats == 2)
					v *= 1 + p->second_seat;
				if (corp)
					v *= 1 - p->corporate_discount;
				out[share_card_option(seats, ex, corp)] = (int64_t)llround(fmax(v, 0));
			}
}

void share_card_key(const unsigned char quote_key[32], struct share_card_key *out)
{
	static const char ctx[] = "ridehail share rate card v1";
	crypto_generichash(out->k, sizeof out->k, (const unsigned char *)ctx, sizeof ctx - 1, quote_key, 32);
}

/* The signed text: every member, '|' between them (none may hold one). */
static int share_card_text(const struct share_card *c, char *buf, size_t len)
{
	return snprintf(buf, len,
			"1|%s|%s|%s|%.7f|%.7f|%.7f|%.7f|%d|%" PRId64 "|%" PRId64 "|%" PRId64 "|%" PRId64
			"|%" PRId64 "|%" PRId64 "|%" PRId64 "|%" PRId64 "|%" PRId64 "|%" PRId64 "|%" PRId64 "|%" PRId64,
			c->rider, c->vehicle, c->currency, c->plat, c->plng, c->dlat, c->dlng, c->corp ? 1 : 0,
			c->expires_ms, c->solo, c->direct_s, c->direct_m, c->price[0], c->price[1], c->price[2],
			c->price[3], c->price[4], c->price[5], c->price[6], c->price[7]);
}

void share_card_sign(const struct share_card_key *key, const struct share_card *c, char *id, size_t idlen)
{
	char text[320];
	int n = share_card_text(c, text, sizeof text);
	unsigned char mac[32];
	crypto_generichash(mac, sizeof mac, (const unsigned char *)text, (size_t)n, key->k, sizeof key->k);
	char b64[sodium_base64_ENCODED_LEN(320, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
	char m64[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
	sodium_bin2base64(b64, sizeof b64, (const unsigned char *)text, (size_t)n,
			  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_bin2base64(m64, sizeof m64, mac, sizeof mac, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	snprintf(id, idlen, "rc1.%s.%s", b64, m64);
}

enum share_card_check share_card_open(const struct share_card_key *key, const char *id, int64_t now_ms,
				      struct share_card *out)
{
	memset(out, 0, sizeof *out);
	if (strncmp(id, "rc1.", 4) != 0 || strlen(id) >= SHARE_CARD_ID_MAX)
		return SHARE_CARD_INVALID;
	const char *b64 = id + 4, *dot = strchr(b64, '.');
	if (!dot)
		return SHARE_CARD_INVALID;
	char text[321];
	unsigned char mac[32], want[32];
	size_t n = 0, mn = 0;
	if (sodium_base642bin((unsigned char *)text, sizeof text - 1, b64, (size_t)(dot - b64), NULL, &n, NULL,
			      sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
	    sodium_base642bin(mac, sizeof mac, dot + 1, strlen(dot + 1), NULL, &mn, NULL,
			      sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
	    mn != sizeof mac)
		return SHARE_CARD_INVALID;
	crypto_generichash(want, sizeof want, (const unsigned char *)text, n, key->k, sizeof key->k);
	if (sodium_memcmp(mac, want, sizeof mac) != 0)
		return SHARE_CARD_INVALID;
	/* one spelling per card: base64's spare bits set another way are
	 * another id for the same card, refused */
	char b64c[sodium_base64_ENCODED_LEN(320, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
	char m64c[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
	sodium_bin2base64(b64c, sizeof b64c, (const unsigned char *)text, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_bin2base64(m64c, sizeof m64c, mac, sizeof mac, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	if (strlen(b64c) != (size_t)(dot - b64) || memcmp(b64c, b64, strlen(b64c)) != 0 || strcmp(m64c, dot + 1) != 0)
		return SHARE_CARD_INVALID;
	text[n] = 0;
	int corp = 0, used = 0;
	int got = sscanf(text,
			 "1|%36[^|]|%31[^|]|%3[^|]|%lf|%lf|%lf|%lf|%d|%" SCNd64 "|%" SCNd64 "|%" SCNd64 "|%" SCNd64
			 "|%" SCNd64 "|%" SCNd64 "|%" SCNd64 "|%" SCNd64 "|%" SCNd64 "|%" SCNd64 "|%" SCNd64
			 "|%" SCNd64 "%n",
			 out->rider, out->vehicle, out->currency, &out->plat, &out->plng, &out->dlat, &out->dlng, &corp,
			 &out->expires_ms, &out->solo, &out->direct_s, &out->direct_m, &out->price[0], &out->price[1],
			 &out->price[2], &out->price[3], &out->price[4], &out->price[5], &out->price[6], &out->price[7],
			 &used);
	if (got != 20 || (size_t)used != n)
		return SHARE_CARD_INVALID; /* (signed by us: cannot happen) */
	out->corp = corp != 0;
	return out->expires_ms <= now_ms ? SHARE_CARD_EXPIRED : SHARE_CARD_OK;
}
