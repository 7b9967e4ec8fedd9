#include "../unit.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "events/natsauth.h"

UNIT_TEST(natsauth_origin_signs_what_the_relay_published_only)
{
	unsigned char key[EVENTS_ORIGIN_KEYBYTES], other[EVENTS_ORIGIN_KEYBYTES];
	CHECK(!events_origin_key("", key));
	CHECK(!events_origin_key(NULL, key));
	REQUIRE(events_origin_key("webhook-secret-0123456789", key));
	REQUIRE(events_origin_key("another-secret-0123456789", other));
	const char *id = "5b0f6f34-5e0b-4f5e-9a53-3d1b8d4c1e2a", *subj = "ridehail.trip.finished";
	const char *body = "{\"event_type\":\"trip.finished\"}";
	char sig[EVENTS_ORIGIN_LEN];
	events_origin_sign(key, id, subj, body, strlen(body), sig);
	CHECK(strncmp(sig, "v1=", 3) == 0 && strlen(sig) == EVENTS_ORIGIN_LEN - 1);
	CHECK(events_origin_check(key, id, subj, body, strlen(body), sig));
	CHECK(!events_origin_check(key, id, subj, body, strlen(body), NULL));
	CHECK(!events_origin_check(key, id, subj, body, strlen(body), "v1=00"));
	CHECK(!events_origin_check(other, id, subj, body, strlen(body), sig));
	CHECK(!events_origin_check(key, id, "ridehail.trip.cancelled", body, strlen(body), sig));
	CHECK(!events_origin_check(key, "6b0f6f34-5e0b-4f5e-9a53-3d1b8d4c1e2a", subj, body, strlen(body), sig));
	CHECK(!events_origin_check(key, id, subj, "{}", 2, sig));
	sig[10] ^= 1;
	CHECK(!events_origin_check(key, id, subj, body, strlen(body), sig));
}

static void write_file(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
	chmod(path, mode);
}

UNIT_TEST(natsauth_credentials_file)
{
	char dir[] = "/tmp/rh-natsauth-XXXXXX";
	REQUIRE(mkdtemp(dir));
	char path[256], err[300];
	snprintf(path, sizeof path, "%s/creds", dir);
	natsOptions *o = NULL;
	REQUIRE(natsOptions_Create(&o) == NATS_OK);
	CHECK(events_nats_credentials(o, "", err, sizeof err) == RH_OK); /* none */
	CHECK(events_nats_credentials(o, path, err, sizeof err) != RH_OK); /* missing */
	write_file(path, "ridehail:s3cret\n", 0644);
	CHECK(events_nats_credentials(o, path, err, sizeof err) != RH_OK);
	CHECK(strstr(err, "chmod 600") != NULL);
	write_file(path, "ridehail:s3cret\n", 0600);
	CHECK(events_nats_credentials(o, path, err, sizeof err) == RH_OK);
	write_file(path, "a-token-only\n", 0600);
	CHECK(events_nats_credentials(o, path, err, sizeof err) == RH_OK);
	write_file(path, "\n", 0600);
	CHECK(events_nats_credentials(o, path, err, sizeof err) != RH_OK);
	natsOptions_Destroy(o);
	unlink(path);
	rmdir(dir);
}
