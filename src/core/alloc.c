#include "core/alloc.h"

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Atomic because the worker threads (core/worker.h) may allocate too. */
static _Atomic int64_t live_bytes;

static void alloc_oom(size_t n)
{
	fprintf(stderr, "ridehaild: out of memory allocating %zu bytes\n", n);
	abort();
}

void *rh_malloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		alloc_oom(n);
	atomic_fetch_add_explicit(&live_bytes, (int64_t)malloc_usable_size(p), memory_order_relaxed);
	return p;
}

void *rh_calloc(size_t count, size_t n)
{
	void *p = calloc(count ? count : 1, n ? n : 1);
	if (!p)
		alloc_oom(count * n);
	atomic_fetch_add_explicit(&live_bytes, (int64_t)malloc_usable_size(p), memory_order_relaxed);
	return p;
}

void *rh_realloc(void *p, size_t n)
{
	size_t old = p ? malloc_usable_size(p) : 0;
	void *q = realloc(p, n ? n : 1);
	if (!q)
		alloc_oom(n);
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

static void *cjson_malloc(size_t n) { return rh_malloc(n); }

void rh_alloc_install_hooks(void)
{
	cJSON_Hooks hooks = { .malloc_fn = cjson_malloc, .free_fn = rh_free };
	cJSON_InitHooks(&hooks);
	event_set_mem_functions(rh_malloc, rh_realloc, rh_free);
}
