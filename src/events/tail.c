/* `ridehaild events tail`: a small JetStream consumer for operators and
 * tests. An ordered (ephemeral, push) consumer on the stream prints each
 * event as one JSON line, in stream order. This runs outside the daemon, so
 * plain blocking calls are fine here. */
#include <inttypes.h>
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/settings.h"
#include "events/events.h"
#include "events/natsauth.h"

static int tail_usage(FILE *out)
{
	fprintf(out,
		"usage: ridehaild events tail [--subject SUBJECT] [--all] [--count N] [--idle-exit DURATION]\n"
		"  --subject S       what to follow (default <events.subject_prefix>.>, e.g. ridehail.trip.>)\n"
		"  --all             from the start of the stream (default: only new events)\n"
		"  --count N         exit after N events\n"
		"  --idle-exit D     exit once nothing has arrived for D (e.g. 2s)\n"
		"Each event is printed as one JSON line: the envelope as published.\n"
		"The NATS URL is events.url (RIDEHAIL_EVENTS_URL).\n");
	return out == stdout ? 0 : 2;
}

/* What to follow and for how long. */
struct tail_args {
	char subject[256];
	bool all;
	long long count;
	int64_t idle_ms;
};

/* Reads `events tail`'s arguments: -1 to go on, else the exit code. */
static int tail_parse_args(const struct rh_config *cfg, int argc, char **argv, struct tail_args *t)
{
	snprintf(t->subject, sizeof t->subject, "%s.>", cfg->events.subject_prefix);
	t->all = false;
	t->count = -1;
	t->idle_ms = -1;
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--subject") == 0 && i + 1 < argc) {
			snprintf(t->subject, sizeof t->subject, "%s", argv[++i]);
		} else if (strcmp(argv[i], "--all") == 0) {
			t->all = true;
		} else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc) {
			t->count = strtoll(argv[++i], NULL, 10);
		} else if (strcmp(argv[i], "--idle-exit") == 0 && i + 1 < argc) {
			if (!cfg_parse_duration_ms(argv[++i], &t->idle_ms)) {
				fprintf(stderr, "ridehaild events tail: bad duration \"%s\"\n", argv[i]);
				return 2;
			}
		} else if (strcmp(argv[i], "--help") == 0) {
			return tail_usage(stdout);
		} else {
			fprintf(stderr, "ridehaild events tail: unknown argument \"%s\"\n", argv[i]);
			return tail_usage(stderr);
		}
	}
	return -1;
}

/* Prints each event as it comes, until the count or the idle time: the exit
 * code. */
static int tail_print(natsSubscription *sub, const struct tail_args *t)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	long long seen = 0;
	while (t->count < 0 || seen < t->count) {
		natsMsg *m = NULL;
		natsStatus s = natsSubscription_NextMsg(&m, sub, t->idle_ms >= 0 ? t->idle_ms : 3600000);
		if (s == NATS_TIMEOUT) {
			if (t->idle_ms >= 0)
				break;
			continue;
		}
		if (s != NATS_OK) {
			fprintf(stderr, "ridehaild events tail: %s\n", natsStatus_GetText(s));
			return 1;
		}
		fwrite(natsMsg_GetData(m), 1, (size_t)natsMsg_GetDataLength(m), stdout);
		fputc('\n', stdout);
		natsMsg_Destroy(m);
		seen++;
	}
	return 0;
}

int events_cli(const struct rh_config *cfg, int argc, char **argv)
{
	/* argv[0] is "events" */
	if (argc < 2 || strcmp(argv[1], "tail") != 0)
		return tail_usage(argc >= 2 && strcmp(argv[1], "--help") == 0 ? stdout : stderr);
	struct tail_args t;
	int rc = tail_parse_args(cfg, argc, argv, &t);
	if (rc >= 0)
		return rc;
	if (!cfg->events.url || !*cfg->events.url) {
		fprintf(stderr, "ridehaild events tail: events.url is empty (set RIDEHAIL_EVENTS_URL; "
				"make run's local server is nats://127.0.0.1:14222)\n");
		return 1;
	}
	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	natsSubscription *sub = NULL;
	natsOptions *o = NULL;
	jsErrCode jerr = 0;
	rc = 1;
	natsStatus s = natsOptions_Create(&o);
	if (s == NATS_OK)
		s = natsOptions_SetURL(o, cfg->events.url);
	if (s == NATS_OK)
		s = natsOptions_SetTimeout(o, cfg->events.connect_timeout_ms);
	char why[300];
	if (s == NATS_OK && events_nats_credentials(o, cfg->events.credentials, why, sizeof why) != RH_OK) {
		fprintf(stderr, "ridehaild events tail: %s\n", why);
		goto out;
	}
	if (s == NATS_OK)
		s = natsConnection_Connect(&nc, o);
	if (s != NATS_OK) {
		fprintf(stderr, "ridehaild events tail: cannot connect to %s: %s\n", cfg->events.url,
			natsStatus_GetText(s));
		goto out;
	}
	s = natsConnection_JetStream(&js, nc, NULL);
	jsSubOptions so;
	jsSubOptions_Init(&so);
	so.Stream = cfg->events.stream;
	so.Ordered = true;
	so.Config.DeliverPolicy = t.all ? js_DeliverAll : js_DeliverNew;
	if (s == NATS_OK)
		s = js_SubscribeSync(&sub, js, t.subject, NULL, &so, &jerr);
	if (s != NATS_OK) {
		fprintf(stderr, "ridehaild events tail: cannot follow %s on stream %s: %s (JetStream error %d)\n",
			t.subject, cfg->events.stream, natsStatus_GetText(s), (int)jerr);
		goto out;
	}
	rc = tail_print(sub, &t);
out:
	natsSubscription_Destroy(sub);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	natsOptions_Destroy(o);
	nats_Close();
	return rc;
}
