/* A session's message rate: a token bucket per WebSocket connection, one
 * for data frames and one for control frames (pings and pongs), so that a
 * client sending flat out costs a bounded share of the loop. Pure: the
 * clock is passed in (monotonic ms). */
#ifndef RH_NET_WS_RATE_H
#define RH_NET_WS_RATE_H

#include <stdbool.h>
#include <stdint.h>

struct ws_rate {
	double tokens;
	int64_t last_ms; /* 0: not used yet (starts full) */
};

/* One event at `per_s` sustained, bursts of `burst`: true if allowed (and
 * counted), false when the bucket is empty (nothing counted). */
bool ws_rate_take(struct ws_rate *r, double per_s, double burst, int64_t now_ms);

#endif
