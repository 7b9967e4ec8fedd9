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

/* A bump arena for JSON trees that live for one callback (a WebSocket
 * message: parsed, validated, handled, deleted). Between begin and end every
 * cJSON allocation comes from the arena (malloc past its end); cJSON_Delete
 * of such a tree frees nothing; the next begin reuses the memory, so no tree
 * parsed in the arena may outlive the callback that parsed it (under
 * AddressSanitizer the old contents are poisoned at begin, so a tree kept by
 * mistake is caught). Loop thread only. */
void rh_json_arena_begin(void);
void rh_json_arena_end(void);

#define RH_NEW(type) ((type *)rh_calloc(1, sizeof(type)))

#endif
