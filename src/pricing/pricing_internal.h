/* Inside src/pricing: the module's state and what its files share.
 *
 *   pricing.c    the fare formula of the configuration, estimates, quotes
 *   price.c      a fare from the book: tariff, band, zones, surge
 *   book.c       the pricing book (pure: parsing, polygons, the fare)
 *   book_load.c  reading the book from PostgreSQL and again on NOTIFY
 *   surge.c      the surge engine (pure: cells, multipliers)
 *   surge_api.c  GET /v1/surge, GET /v1/surge/cells, surge.updated rows
 *   admin_api.c  zones, tariffs and surge overrides through the admin API
 *   payments.c   payment.requested results, holds, the provider's callback */
#ifndef RH_PRICING_INTERNAL_H
#define RH_PRICING_INTERNAL_H

#include "pricing/book.h"
#include "pricing/pricing.h"
#include "pricing/surge.h"

struct metric_family;
struct metric_cell;
struct db_listener;
struct rh_timer;
struct book_waiter;
struct payments;

struct pricing {
	struct pricing_deps deps;
	const struct pricing_cfg *cfg;
	struct quote_key key;
	struct metric_family *f_estimates;
	/* the book: the database's once read, the configuration's until then */
	struct book *book;
	bool book_loaded;
	bool seeded;               /* the configuration's tariffs were written */
	bool loading, load_again;
	struct rh_timer *start;    /* the first read, and retries */
	int64_t want_version;      /* a notification named this version */
	char load_error[160];
	struct db_listener *listener;
	struct book_waiter *waiters; /* admin replies waiting for a version */
	struct metric_cell *m_reloads, *m_reload_errors, *m_book_version;
	struct surge *surge;
	struct payments *payments;
};

/* ------------------------------------------------------------ price.c */

/* The book, surge, payments and their endpoints (pricing_new, _free). */
void pricing_parts_init(struct pricing *p);
void pricing_parts_fini(struct pricing *p);

/* The fare of a trip of distance_m / duration_s between two points for
 * vehicle type index `vehicle`, at wall time now_ms, from the book: the
 * vehicle's current tariff, the band of the local time, the zones of both
 * ends, the pickup's surge (fixed fares aside). */
void pricing_price(const struct pricing *p, int vehicle, double plat, double plng, double dlat, double dlng,
		   int64_t distance_m, int64_t duration_s, int64_t now_ms, struct fare *out);
/* The surge multiplier at the pickup after the zone's override. */
void pricing_surge_at(const struct pricing *p, double lat, double lng, int vehicle, struct surge_point *out);
/* How long a quote of fare f is honoured (ms). */
int64_t pricing_quote_ttl(const struct pricing *p, const struct fare *f);

/* ------------------------------------------------------------ book_load.c */

void pricing_book_init(struct pricing *p);
void pricing_book_fini(struct pricing *p);
/* Replies once the book in memory is at least at `version` (at once if it
 * is): reply(arg, ok) with ok false when the reload failed. */
void pricing_book_wait(struct pricing *p, int64_t version, void (*reply)(void *arg, bool ok), void *arg);
/* Read the book again now (a notification, a change made here). */
void pricing_book_reload(struct pricing *p);

/* ------------------------------------------------------------ payments.c */

void pricing_payments_init(struct pricing *p);
void pricing_payments_fini(struct pricing *p);
/* ridehail_payments: a rider's hold changed ("" : read them all again). */
void pricing_payments_notified(struct pricing *p, const char *payload);

/* ------------------------------------------------------------ the endpoints */

void pricing_surge_api_init(struct pricing *p);
void pricing_admin_api_init(struct pricing *p);
/* The surge engine's `changed` hook: the cells' surge.updated rows. */
void pricing_surge_changed(void *ctx, const struct surge_change *c, size_t n, int64_t now);

#endif
