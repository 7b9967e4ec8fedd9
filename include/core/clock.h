/* Clocks. Monotonic nanoseconds for durations and deadlines; wall-clock
 * milliseconds for timestamps that leave the process. */
#ifndef RH_CORE_CLOCK_H
#define RH_CORE_CLOCK_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

static inline int64_t rh_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int64_t rh_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* RFC 3339 UTC with milliseconds: "2026-02-04T12:34:56.789Z" (25 bytes + NUL). */
void rh_format_rfc3339(int64_t wall_ms, char out[32]);
/* Parses RFC 3339 date-time (any offset, optional fraction) into wall ms.
 * Returns 0 on success, -1 if malformed or out of range. */
int rh_parse_rfc3339(const char *s, int64_t *wall_ms);

#endif
