/* Time for stateful modules: a clock and one-shot timers behind one handle,
 * so that a module never reads the clock itself and a test can drive time.
 *
 * The daemon's source (rh_timers_loop) is the monotonic clock in
 * milliseconds and libevent timers (a min-heap) on the event loop; a test's
 * (rh_timers_manual) stands still until rh_timers_advance() moves it, firing
 * what falls due in order of due time, each callback seeing its own due time
 * as `now`. A module takes `now` from its callers (a message's receive time,
 * a timer's due time) and arms timers at absolute times.
 *
 * Ownership: the timers source outlives every timer made from it; a timer
 * belongs to whoever made it (rh_timer_free, which also cancels it). */
#ifndef RH_CORE_TIMER_H
#define RH_CORE_TIMER_H

#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct rh_timers;
struct rh_timer;

/* A due timer: now is the time it fired at (monotonic ms). */
typedef void (*rh_timer_fn)(void *arg, int64_t now_ms);

/* The loop's: monotonic milliseconds, libevent timers on base. */
struct rh_timers *rh_timers_loop(struct event_base *base);
/* A test's: time starts at start_ms and moves only by rh_timers_advance. */
struct rh_timers *rh_timers_manual(int64_t start_ms);
void rh_timers_free(struct rh_timers *t);

/* Now, monotonic milliseconds. */
int64_t rh_timers_now(const struct rh_timers *t);
/* Manual source only: fires every timer due at or before to_ms, in order of
 * due time (timers armed by a callback fire too when they fall due before
 * to_ms), then sets now to to_ms. */
void rh_timers_advance(struct rh_timers *t, int64_t to_ms);
/* Manual source only: the due time of the next armed timer, or -1. */
int64_t rh_timers_next(const struct rh_timers *t);

struct rh_timer *rh_timer_new(struct rh_timers *t, rh_timer_fn fn, void *arg);
/* Arms (or re-arms) the timer to fire at at_ms (monotonic; a time already
 * past fires on the next loop turn, never inside this call). */
void rh_timer_at(struct rh_timer *tm, int64_t at_ms);
void rh_timer_cancel(struct rh_timer *tm);
bool rh_timer_is_armed(const struct rh_timer *tm);
/* Cancels and frees; NULL does nothing. */
void rh_timer_free(struct rh_timer *tm);

#endif
