/* Shared rides: the rate card (pure but for libsodium).
 *
 * Eight options, from the tariff's fare for the trip alone (pricing
 * computes it, docs/pricing.md): 1 or 2 seats x normal or express x
 * corporate or not. One seat normal is the solo fare less share.discount;
 * express adds share.express_premium; a second seat adds share.second_seat
 * of the one-seat price; corporate takes share.corporate_discount off. Each
 * is rounded to a minor unit. Coupons would be applied to these prices (not
 * built: the card's `applied_coupons` is always empty).
 *
 * The card is stateless: its id carries the rider, the trip, the vehicle
 * type, the prices, the direct route and the expiry, signed with a keyed
 * BLAKE2b-256 MAC, so asking for a card writes nothing and a booking is
 * checked without a read. */
#ifndef RH_SHARE_CARD_H
#define RH_SHARE_CARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHARE_CARD_OPTIONS 8
#define SHARE_CARD_ID_MAX 400

struct share_prices {
	double discount, express_premium, second_seat, corporate_discount;
};

struct share_card {
	char rider[37];
	char vehicle[32];
	char currency[4];
	double plat, plng, dlat, dlng;
	bool corp;              /* asked for a corporate account: corporate options may be booked */
	int64_t expires_ms;     /* wall clock */
	int64_t solo;           /* the tariff's fare alone, minor units */
	int64_t direct_s, direct_m;
	int64_t price[SHARE_CARD_OPTIONS];
};

/* Option index of a choice: seats 1..2, express, corporate. */
static inline int share_card_option(int seats, bool express, bool corp)
{
	return (seats - 1) * 4 + (express ? 2 : 0) + (corp ? 1 : 0);
}

/* The eight prices from the solo fare. */
void share_card_prices(int64_t solo, const struct share_prices *p, int64_t out[SHARE_CARD_OPTIONS]);

struct share_card_key {
	unsigned char k[32];
};
/* The card key, derived from the quote key (pricing_key()). */
void share_card_key(const unsigned char quote_key[32], struct share_card_key *out);
/* The id of a card (at least SHARE_CARD_ID_MAX bytes). */
void share_card_sign(const struct share_card_key *key, const struct share_card *c, char *id, size_t idlen);

enum share_card_check { SHARE_CARD_OK, SHARE_CARD_INVALID, SHARE_CARD_EXPIRED };
/* Verifies and decodes an id; now_ms is the wall clock. */
enum share_card_check share_card_open(const struct share_card_key *key, const char *id, int64_t now_ms,
				      struct share_card *out);

#endif
