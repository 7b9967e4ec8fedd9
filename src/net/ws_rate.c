#include "net/ws_rate.h"

bool ws_rate_take(struct ws_rate *r, double per_s, double burst, int64_t now_ms)
{
	if (r->last_ms == 0) {
		r->tokens = burst;
	} else if (now_ms > r->last_ms) {
		r->tokens += (double)(now_ms - r->last_ms) * per_s / 1000.0;
		if (r->tokens > burst)
			r->tokens = burst;
	}
	if (now_ms > r->last_ms || r->last_ms == 0)
		r->last_ms = now_ms ? now_ms : 1;
	if (r->tokens < 1)
		return false;
	r->tokens -= 1;
	return true;
}
