/* How the daemon authenticates to NATS, and how it knows what it published.
 *
 * Credentials: events.credentials names a file, readable by its owner only
 * (as libpq's passfile and ssh keys are; a file others can read is refused):
 * a NATS user JWT with its NKey seed (a .creds file, "-----BEGIN NATS USER
 * JWT-----"), or one line "user:password", or one line holding a token.
 * Empty: no credentials (a server that takes anonymous clients). A URL may
 * also carry user:password@ as libnats reads it, but then the secret sits
 * in the configuration.
 *
 * Origin: each event the relay publishes carries Ridehail-Origin: v1=<hex
 * HMAC-SHA-256 of "<event id>.<subject>.<body>"> under a key derived from
 * webhooks.secret; the webhook dispatcher signs and POSTs only messages
 * whose origin checks, so a message someone else published on the stream's
 * subjects is never delivered as ours. */
#ifndef RH_EVENTS_NATSAUTH_H
#define RH_EVENTS_NATSAUTH_H

#include <nats/nats.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/err.h"

#define EVENTS_ORIGIN_HEADER "Ridehail-Origin"
#define EVENTS_ORIGIN_KEYBYTES 32
#define EVENTS_ORIGIN_LEN 68 /* "v1=" + 64 hex digits, with the NUL */

/* Applies events.credentials (path, may be empty) to the options; on error
 * err says why (a missing file, one others can read, a bad line). */
rh_err events_nats_credentials(natsOptions *o, const char *path, char *err, size_t errlen) RH_MUST_CHECK;

/* The origin key from webhooks.secret; false when it is empty (nothing is
 * signed then, and webhooks are off anyway). */
bool events_origin_key(const char *webhooks_secret, unsigned char key[EVENTS_ORIGIN_KEYBYTES]);
void events_origin_sign(const unsigned char key[EVENTS_ORIGIN_KEYBYTES], const char *event_id, const char *subject,
			const char *body, size_t len, char out[EVENTS_ORIGIN_LEN]);
/* Constant time. header may be NULL (absent: false). */
bool events_origin_check(const unsigned char key[EVENTS_ORIGIN_KEYBYTES], const char *event_id, const char *subject,
			 const char *body, size_t len, const char *header);

#endif
