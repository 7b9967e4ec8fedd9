/* Fuzz target for the trusted-proxy list and X-Forwarded-For: the input is
 * "<list>\n<peer>\n<header>". Nothing may crash or overrun; the client is
 * the peer unless the peer is trusted, a forwarded client is an address
 * taken from the header with ":0" appended, and it fits the buffer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	memcpy(text, data, size);
	text[size] = '\0';
	char *peer = strchr(text, '\n');
	char *xff = peer ? strchr(peer + 1, '\n') : NULL;
	if (peer)
		*peer++ = '\0';
	if (xff)
		*xff++ = '\0';
	struct proxy_list l;
	char err[128];
	if (proxy_list_parse(text, &l, err, sizeof err) != RH_OK)
		memset(&l, 0, sizeof l);
	const char *p = peer ? peer : "127.0.0.1:1";
	char out[64];
	bool forwarded = proxy_client(&l, p, xff, out, sizeof out);
	if (strlen(out) >= sizeof out)
		abort();
	if (forwarded) {
		size_t n = strlen(out);
		if (n < 3 || strcmp(out + n - 2, ":0") != 0 || !xff)
			abort();
		out[n - 2] = '\0';
		if (!strstr(xff, out)) /* the address came from the header */
			abort();
	} else if (strncmp(out, p, sizeof out - 1) != 0) {
		abort();
	}
	free(text);
	return 0;
}
