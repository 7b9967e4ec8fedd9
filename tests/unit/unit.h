/* A tiny unit-test harness: tests register themselves, main() runs them
 * all (or those whose name contains argv[1]) and prints "N passed, M failed".
 *
 *   UNIT_TEST(geohash_encode_known_vectors) {
 *       CHECK_EQ_INT(geohash_encode(...), 0x1234);
 *   }
 *
 * A failed CHECK prints file:line and the values, marks the test failed and
 * goes on; REQUIRE stops the test. Randomised tests take their seed from
 * unit_seed() (printed, and settable with UNIT_SEED=...). */
#ifndef RH_TESTS_UNIT_H
#define RH_TESTS_UNIT_H

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef void (*unit_fn)(void);
void unit_register(const char *name, unit_fn fn);
void unit_fail(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
bool unit_current_failed(void);
uint64_t unit_seed(void);
/* Directory of ../shared/data, or NULL when absent (the test then skips
 * with a visible message via unit_skip). */
const char *unit_shared_data(void);
void unit_skip(const char *why);

#define UNIT_TEST(name)                                                     \
	static void unit_##name(void);                                      \
	__attribute__((constructor)) static void unit_reg_##name(void)      \
	{ unit_register(#name, unit_##name); }                              \
	static void unit_##name(void)

#define CHECK(cond) do { if (!(cond)) unit_fail(__FILE__, __LINE__, "CHECK(%s)", #cond); } while (0)
#define REQUIRE(cond) do { if (!(cond)) { unit_fail(__FILE__, __LINE__, "REQUIRE(%s)", #cond); return; } } while (0)
#define CHECK_EQ_INT(a, b) do { long long a_ = (long long)(a), b_ = (long long)(b); \
	if (a_ != b_) unit_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, a_, b_); } while (0)
#define CHECK_EQ_U64(a, b) do { uint64_t a_ = (uint64_t)(a), b_ = (uint64_t)(b); \
	if (a_ != b_) unit_fail(__FILE__, __LINE__, "%s == %s: %" PRIu64 " != %" PRIu64, #a, #b, a_, b_); } while (0)
#define CHECK_EQ_STR(a, b) do { const char *a_ = (a), *b_ = (b); \
	if (!a_ || !b_ || strcmp(a_, b_) != 0) unit_fail(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)"); } while (0)
#define CHECK_NEAR(a, b, eps) do { double a_ = (a), b_ = (b); \
	if (!(fabs(a_ - b_) <= (eps))) unit_fail(__FILE__, __LINE__, "%s ~= %s: %.9g vs %.9g (eps %g)", #a, #b, a_, b_, (double)(eps)); } while (0)

#endif
