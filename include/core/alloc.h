/* One allocation wrapper for the whole daemon (libevent and cJSON included):
 * it counts live bytes for /metrics and aborts loudly on real out-of-memory,
 * so callers never handle NULL. Limits on what a peer can make us allocate are
 * enforced where the data arrives (frame, body, queue caps), not here. */
#ifndef RH_CORE_ALLOC_H
#define RH_CORE_ALLOC_H

#include <stddef.h>
#include <stdint.h>

void *rh_malloc(size_t n);
void *rh_calloc(size_t count, size_t n);
void *rh_realloc(void *p, size_t n);
char *rh_strdup(const char *s);
char *rh_strndup(const char *s, size_t n);
void rh_free(void *p);

/* Route libevent's and cJSON's allocations through the wrapper. Call once,
 * before any event_base exists. */
void rh_alloc_install_hooks(void);
/* Live bytes allocated through the wrapper (approximate: usable sizes). */
int64_t rh_alloc_live_bytes(void);

#define RH_NEW(type) ((type *)rh_calloc(1, sizeof(type)))

#endif
