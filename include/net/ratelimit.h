/* Keyed rate limits (GCRA, the "virtual scheduling" form of a token bucket):
 * one timestamp per key, O(1) per check, a bounded table. Used for login
 * attempts per account and per address, sign-ups, ride requests per rider.
 *
 * When the table is full, the key whose allowance expired longest ago is
 * evicted; if none has expired, the oldest is — so memory stays bounded and
 * a flood of distinct keys cannot lock out established ones for long. */
#ifndef RH_NET_RATELIMIT_H
#define RH_NET_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

struct ratelimit;

/* `per_minute` events per minute on average, bursts of up to `burst`. */
struct ratelimit *ratelimit_new(double per_minute, double burst, int capacity);
void ratelimit_free(struct ratelimit *rl);
/* true if allowed (and counted). Otherwise *retry_after_ms says when the next
 * one would be. now_ms is any monotonic millisecond clock. */
bool ratelimit_allow(struct ratelimit *rl, const char *key, int64_t now_ms, int64_t *retry_after_ms);
/* Would one more be allowed now? Counts nothing. */
bool ratelimit_check(const struct ratelimit *rl, const char *key, int64_t now_ms);
/* Gives back one event that was counted but did not happen after all (a
 * request refused for overload must not spend a client's allowance). */
void ratelimit_refund(struct ratelimit *rl, const char *key, int64_t now_ms);
int ratelimit_size(const struct ratelimit *rl);

#endif
