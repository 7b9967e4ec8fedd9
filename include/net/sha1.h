/* SHA-1 (FIPS 180-4), only for the WebSocket handshake's
 * Sec-WebSocket-Accept, where RFC 6455 fixes the hash; it protects nothing
 * there. libsodium has no SHA-1 and libcrypto is not worth a dependency for
 * one 60-byte digest per connection. Never use it for security. */
#ifndef RH_NET_SHA1_H
#define RH_NET_SHA1_H

#include <stddef.h>
#include <stdint.h>

#define SHA1_DIGEST_LEN 20

struct sha1_ctx {
	uint32_t h[5];
	uint64_t len; /* bytes hashed so far */
	uint8_t buf[64];
	size_t nbuf;
};

void sha1_init(struct sha1_ctx *c);
void sha1_update(struct sha1_ctx *c, const void *data, size_t n);
void sha1_final(struct sha1_ctx *c, uint8_t out[SHA1_DIGEST_LEN]);
void sha1_digest(const void *data, size_t n, uint8_t out[SHA1_DIGEST_LEN]);

#endif
