/* Fuzz the HTTP/1.1 head parser and the chunked decoder: no input may crash,
 * read out of bounds or leave a header pointing outside the buffer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/http_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void sink(void *arg, const char *p, size_t n)
{
	size_t *total = arg;
	for (size_t i = 0; i < n; i++)
		*total += (unsigned char)p[i] != 0xff; /* touch every byte */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size + 1);
	memcpy(buf, data, size);
	buf[size] = '\0';
	struct http_head h;
	int status = 0;
	const char *detail = NULL;
	/* A small limit too, so both limit paths are reached. */
	size_t limits[] = { 8192, 64 };
	for (int l = 0; l < 2; l++) {
		memcpy(buf, data, size);
		enum http_parse_status st = http_parse_head(buf, size, limits[l], &h, &status, &detail);
		if (st == HTTP_PARSE_OK) {
			if (h.head_len > size)
				abort();
			for (int i = 0; i < h.nheaders; i++)
				if (h.headers[i].name < buf || h.headers[i].name >= buf + size ||
				    strlen(h.headers[i].value) > size)
					abort();
			if (h.chunked) {
				struct http_chunked c;
				size_t used = 0, total = 0;
				http_chunked_init(&c);
				http_chunked_feed(&c, buf + h.head_len, size - h.head_len, &used, 4096, sink, &total);
				if (used > size - h.head_len)
					abort();
			}
		} else if (st == HTTP_PARSE_ERROR) {
			if (status < 400 || status > 505 || !detail)
				abort();
		}
	}
	/* The raw input as a chunked body and as a URL. */
	struct http_chunked c;
	size_t used = 0, total = 0;
	http_chunked_init(&c);
	http_chunked_feed(&c, (const char *)data, size, &used, 1 << 20, sink, &total);
	char out[256];
	http_url_decode((const char *)data, size, out, sizeof out, true);
	free(buf);
	return 0;
}
