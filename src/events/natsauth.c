#include "events/natsauth.h"

#include <errno.h>
#include <nats/nats.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define CREDS_MARK "-----BEGIN NATS USER JWT-----"

rh_err events_nats_credentials(natsOptions *o, const char *path, char *err, size_t errlen)
{
	if (!path || !*path)
		return RH_OK;
	FILE *f = fopen(path, "r");
	if (!f) {
		snprintf(err, errlen, "events.credentials %s: %s", path, strerror(errno));
		return RH_EINVAL;
	}
	struct stat st;
	if (fstat(fileno(f), &st) != 0 || (st.st_mode & (S_IRWXG | S_IRWXO))) {
		fclose(f);
		snprintf(err, errlen, "events.credentials %s: readable by others; it holds a secret (chmod 600)", path);
		return RH_EINVAL;
	}
	char line[1024];
	bool got = fgets(line, sizeof line, f) != NULL;
	fclose(f);
	line[got ? strcspn(line, "\r\n") : 0] = '\0';
	natsStatus s;
	if (strncmp(line, CREDS_MARK, strlen(CREDS_MARK)) == 0) {
		s = natsOptions_SetUserCredentialsFromFiles(o, path, NULL);
	} else if (!line[0]) {
		snprintf(err, errlen, "events.credentials %s: empty", path);
		sodium_memzero(line, sizeof line);
		return RH_EINVAL;
	} else {
		char *colon = strchr(line, ':');
		if (colon) {
			*colon = '\0';
			s = natsOptions_SetUserInfo(o, line, colon + 1);
		} else {
			s = natsOptions_SetToken(o, line);
		}
	}
	sodium_memzero(line, sizeof line);
	if (s != NATS_OK) {
		snprintf(err, errlen, "events.credentials %s: %s", path, natsStatus_GetText(s));
		return RH_EINVAL;
	}
	return RH_OK;
}

bool events_origin_key(const char *webhooks_secret, unsigned char key[EVENTS_ORIGIN_KEYBYTES])
{
	if (!webhooks_secret || !*webhooks_secret)
		return false;
	/* a key of its own, not the secret receivers check signatures with */
	static const char context[] = "ridehail outbox origin v1";
	crypto_auth_hmacsha256_state st;
	crypto_auth_hmacsha256_init(&st, (const unsigned char *)webhooks_secret, strlen(webhooks_secret));
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)context, sizeof context - 1);
	crypto_auth_hmacsha256_final(&st, key);
	return true;
}

static void events_origin_mac(const unsigned char key[EVENTS_ORIGIN_KEYBYTES], const char *event_id, const char *subject,
			      const char *body, size_t len, unsigned char mac[crypto_auth_hmacsha256_BYTES])
{
	crypto_auth_hmacsha256_state st;
	crypto_auth_hmacsha256_init(&st, key, EVENTS_ORIGIN_KEYBYTES);
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)event_id, strlen(event_id));
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)".", 1);
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)subject, strlen(subject));
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)".", 1);
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)body, len);
	crypto_auth_hmacsha256_final(&st, mac);
}

void events_origin_sign(const unsigned char key[EVENTS_ORIGIN_KEYBYTES], const char *event_id, const char *subject,
			const char *body, size_t len, char out[EVENTS_ORIGIN_LEN])
{
	unsigned char mac[crypto_auth_hmacsha256_BYTES];
	events_origin_mac(key, event_id, subject, body, len, mac);
	memcpy(out, "v1=", 3);
	sodium_bin2hex(out + 3, EVENTS_ORIGIN_LEN - 3, mac, sizeof mac);
}

bool events_origin_check(const unsigned char key[EVENTS_ORIGIN_KEYBYTES], const char *event_id, const char *subject,
			 const char *body, size_t len, const char *header)
{
	char want[EVENTS_ORIGIN_LEN];
	if (!header || strlen(header) != EVENTS_ORIGIN_LEN - 1)
		return false;
	events_origin_sign(key, event_id, subject, body, len, want);
	return sodium_memcmp(want, header, EVENTS_ORIGIN_LEN - 1) == 0;
}
