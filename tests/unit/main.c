#include "unit.h"

#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

#define UNIT_MAX 1024

static struct { const char *name; unit_fn fn; } tests[UNIT_MAX];
static int ntests;
static bool failed;
static uint64_t seed;

void unit_register(const char *name, unit_fn fn)
{
	if (ntests == UNIT_MAX) {
		fprintf(stderr, "unit: too many tests\n");
		exit(2);
	}
	tests[ntests].name = name;
	tests[ntests].fn = fn;
	ntests++;
}

void unit_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "  %s:%d: ", file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	failed = true;
}

bool unit_current_failed(void) { return failed; }
uint64_t unit_seed(void) { return seed; }

void unit_skip(const char *why)
{
	fprintf(stderr, "  SKIP: %s\n", why);
}

const char *unit_shared_data(void)
{
	static char path[4096];
	const char *env = getenv("SHARED_DATA");
	struct stat st;
	if (env && *env) {
		snprintf(path, sizeof path, "%s", env);
	} else {
		snprintf(path, sizeof path, "../shared/data");
	}
	if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
		return NULL;
	return path;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int main(int argc, char **argv)
{
	const char *filter = argc > 1 ? argv[1] : NULL;
	const char *s = getenv("UNIT_SEED");
	int passed = 0, nfailed = 0;

	seed = s && *s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL);
	printf("unit: seed %" PRIu64 " (rerun with UNIT_SEED=%" PRIu64 ")\n", seed, seed);
	qsort(tests, (size_t)ntests, sizeof tests[0], cmp_name);
	for (int i = 0; i < ntests; i++) {
		if (filter && !strstr(tests[i].name, filter))
			continue;
		failed = false;
		tests[i].fn();
		if (failed) {
			printf("FAIL %s\n", tests[i].name);
			nfailed++;
		} else {
			passed++;
		}
	}
	printf("%d passed, %d failed\n", passed, nfailed);
	return nfailed ? 1 : 0;
}
