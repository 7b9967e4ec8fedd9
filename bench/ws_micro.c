/* Micro-benchmark of the WebSocket framing hot path, no I/O: parsing a
 * masked client text frame carrying a typical driver ping (header, in-place
 * unmask, UTF-8 check), unmasking and UTF-8 validation throughput, and
 * building a small server frame.
 *
 *   make bench-ws-micro     (or build/release/bench/ws_micro)
 *
 * Prints name=value lines. Single-threaded; pin it with taskset. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "net/utf8.h"
#include "net/ws_frame.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A driver.location.updated message in the event envelope, ~330 bytes. */
static const char ping_json[] =
	"{\"event_id\":\"0b7e6f1c-3d9a-4f5e-9a61-2c8d4b1e7f00\",\"event_type\":\"driver.location.updated\","
	"\"event_version\":1,\"timestamp\":\"2026-11-24T16:22:01.123Z\",\"producer\":\"driver-app\","
	"\"correlation_id\":\"5f1d2c3b-4a59-4e6f-8a7b-9c0d1e2f3a4b\",\"payload\":{\"lat\":52.0912345,"
	"\"lon\":5.1234567,\"heading\":181.5,\"speed\":8.3,\"accuracy\":4.0,\"source\":\"gps\","
	"\"device_ts\":\"2026-11-24T16:22:01.001Z\"}}";

int main(void)
{
	enum { N = 2000000 };
	static const uint8_t key[4] = { 0x5a, 0xc3, 0x19, 0xe7 };
	size_t plen = sizeof ping_json - 1;
	uint8_t frame[512], work[512];
	size_t flen = ws_frame_build(frame, sizeof frame, WS_OP_TEXT, true, ping_json, plen, key);
	struct ws_limits lim = { .max_frame = 65536, .max_message = 262144, .expect_masked = true };
	struct ws_parser p;
	struct ws_frame f;
	size_t sum = 0;
	ws_parser_init(&p, &lim);

	double t0 = now_s();
	for (int i = 0; i < N; i++) {
		memcpy(work, frame, flen); /* the parse unmasks in place */
		if (ws_parser_next(&p, work, flen, &f) != WS_OK)
			abort();
		sum += f.payload_len;
	}
	double t_parse = now_s() - t0;
	t0 = now_s();
	for (int i = 0; i < N; i++) {
		memcpy(work, frame, flen);
		sum += work[i & 255];
	}
	double t_copy = now_s() - t0;

	enum { BIG = 1 << 20, REPS = 400 };
	uint8_t *big = malloc(BIG);
	for (size_t i = 0; i < BIG; i++)
		big[i] = (uint8_t)(' ' + i % 90);
	t0 = now_s();
	for (int r = 0; r < REPS; r++)
		ws_mask_apply(big, BIG, key, (size_t)r);
	double t_mask = now_s() - t0;
	t0 = now_s();
	for (int r = 0; r < REPS; r++)
		sum += utf8_is_valid(big, BIG);
	double t_ascii = now_s() - t0;
	/* Mostly two- and three-byte characters. */
	for (size_t i = 0; i + 5 <= BIG; i += 5)
		memcpy(big + i, "\xc3\xa9\xe2\x82\xac", 5);
	memset(big + BIG - BIG % 5, 'x', BIG % 5);
	t0 = now_s();
	for (int r = 0; r < REPS; r++)
		sum += utf8_is_valid(big, BIG);
	double t_multi = now_s() - t0;

	uint8_t out[512];
	t0 = now_s();
	for (int i = 0; i < N; i++)
		sum += ws_frame_build(out, sizeof out, WS_OP_TEXT, true, ping_json, plen - (size_t)(i & 7), NULL);
	double t_build = now_s() - t0;

	printf("ping_frame_bytes=%zu\n", flen);
	printf("ws_parse_ping_ns=%.1f (incl. %.1f ns memcpy of the frame)\n", t_parse / N * 1e9, t_copy / N * 1e9);
	printf("ws_parse_pings_per_s=%.0f\n", N / (t_parse - t_copy));
	printf("ws_unmask_gb_per_s=%.2f\n", (double)BIG * REPS / t_mask / 1e9);
	printf("utf8_ascii_gb_per_s=%.2f\n", (double)BIG * REPS / t_ascii / 1e9);
	printf("utf8_multibyte_gb_per_s=%.2f\n", (double)BIG * REPS / t_multi / 1e9);
	printf("ws_build_text_ns=%.1f\n", t_build / N * 1e9);
	fprintf(stderr, "(checksum %zu)\n", sum);
	free(big);
	return 0;
}
