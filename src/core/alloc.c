#include "core/alloc.h"

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Atomic because the worker threads (core/worker.h) may allocate too. */
static _Atomic int64_t live_bytes;

static void rh_alloc_oom(size_t n)
{
	fprintf(stderr, "ridehaild: out of memory allocating %zu bytes\n", n);
	abort();
}

void *rh_malloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		rh_alloc_oom(n);
	atomic_fetch_add_explicit(&live_bytes, (int64_t)malloc_usable_size(p), memory_order_relaxed);
	return p;
}

void *rh_calloc(size_t count, size_t n)
{
	void *p = calloc(count ? count : 1, n ? n : 1);
	if (!p)
		rh_alloc_oom(count * n);
	atomic_fetch_add_explicit(&live_bytes, (int64_t)malloc_usable_size(p), memory_order_relaxed);
	return p;
}

void *rh_realloc(void *p, size_t n)
{
	size_t old = p ? malloc_usable_size(p) : 0;
	void *q = realloc(p, n ? n : 1);
	if (!q)
		rh_alloc_oom(n);
	atomic_fetch_add_explicit(&live_bytes, (int64_t)malloc_usable_size(q) - (int64_t)old, memory_order_relaxed);
	return q;
}

void rh_free(void *p)
{
	if (!p)
		return;
	atomic_fetch_sub_explicit(&live_bytes, (int64_t)malloc_usable_size(p), memory_order_relaxed);
	free(p);
}

char *rh_strdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = rh_malloc(n);
	memcpy(d, s, n);
	return d;
}

char *rh_strndup(const char *s, size_t n)
{
	size_t len = strnlen(s, n);
	char *d = rh_malloc(len + 1);
	memcpy(d, s, len);
	d[len] = '\0';
	return d;
}

int64_t rh_alloc_live_bytes(void) { return atomic_load_explicit(&live_bytes, memory_order_relaxed); }

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RH_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define RH_ASAN 1
#endif
#ifdef RH_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define ARENA_SIZE (64 * 1024)
static _Alignas(16) unsigned char arena[ARENA_SIZE];
static size_t arena_used;
static bool arena_on;

void rh_json_arena_begin(void)
{
	arena_used = 0;
	arena_on = true;
	POISON(arena, ARENA_SIZE);
}

void rh_json_arena_end(void)
{
	arena_on = false;
}

static void *rh_alloc_json_malloc(size_t n)
{
	if (arena_on) {
		size_t need = (n + 15) & ~(size_t)15;
		if (need <= ARENA_SIZE - arena_used) {
			void *p = arena + arena_used;
			arena_used += need;
			UNPOISON(p, n);
			return p;
		}
	}
	return rh_malloc(n);
}

static void rh_alloc_json_free(void *p)
{
	if ((unsigned char *)p >= arena && (unsigned char *)p < arena + ARENA_SIZE)
		return;
	rh_free(p);
}

void rh_alloc_install_hooks(void)
{
	cJSON_Hooks hooks = { .malloc_fn = rh_alloc_json_malloc, .free_fn = rh_alloc_json_free };
	cJSON_InitHooks(&hooks);
	event_set_mem_functions(rh_malloc, rh_realloc, rh_free);
}
