/* Signed webhooks: the published events POSTed to each configured endpoint.
 *
 * Each endpoint is a durable JetStream pull consumer on the events stream
 * (one message in flight, so an endpoint receives events in stream order),
 * which keeps the delivery state where the events already are: JetStream
 * redelivers what was not acknowledged, counts deliveries, and survives
 * restarts. A job on the module's worker threads (one per endpoint, one
 * job at a time each) fetches the next event, POSTs it with a timeout, and
 * acks it (2xx), naks it with a backoff delay, or, after
 * webhooks.max_attempts failed deliveries, terminates it and hands it to
 * the loop, which writes it to webhook_dead_letters. The loop only
 * schedules jobs, writes dead letters and counts; it never waits on NATS or
 * on an endpoint.
 *
 * Signature: Ridehail-Signature: v1=<hex HMAC-SHA-256 of "<timestamp>.<body>">
 * under webhooks.secret, with Ridehail-Timestamp: <unix seconds>, so that a
 * receiver can refuse replays outside its tolerance. Only what the relay
 * published is signed: a message on the stream without the relay's
 * Ridehail-Origin (events/natsauth.h) -- someone else's publish on our
 * subjects -- is terminated, counted and logged, never sent. */
#include "events/events.h"
#include "events/webhook.h"
#include "events/natsauth.h"

#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <nats/nats.h>
#include <netdb.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/settings.h"
#include "core/worker.h"
#include "store/db.h"

#define WH_MAX 8

static struct db_stmt st_dead = {
	"webhook_dead",
	"INSERT INTO webhook_dead_letters (endpoint, event_id, event_type, attempts, last_error, body)"
	" VALUES ($1, $2::uuid, $3, $4::integer, $5, $6::jsonb)",
	6,
};

struct endpoint;

struct wh_job {
	struct worker_job job;
	struct endpoint *ep;
	/* results, for the loop */
	int outcome;          /* 0 idle, 1 delivered, 2 retry later, 3 dead, 4 not ours, -1 NATS trouble */
	int attempts;
	int status;           /* HTTP status, 0 if none */
	char error[200];
	char event_id[40];
	char event_type[72];
	char *body;           /* dead letters only */
};

struct endpoint {
	struct webhooks *wh;
	char url[512];
	char host[256], port[8], path[256];
	char durable[40];
	natsConnection *nc;
	jsCtx *js;
	natsSubscription *sub;
	struct worker_pool *pool;
	struct event *timer;
	bool busy;
	int failures;
	struct metric_cell *m_delivered, *m_failed, *m_dead, *m_foreign;
};

struct webhooks {
	struct events_deps deps;
	const struct webhooks_cfg *cfg;
	struct endpoint ep[WH_MAX];
	int n;
	bool stopping;
	int64_t started_ms;
	natsOptions *opts;
	unsigned char origin_key[EVENTS_ORIGIN_KEYBYTES];
};

/* ------------------------------------------------------------ worker thread */

/* Writes the parts (head, then body) to the non-blocking socket fd by the
 * deadline (monotonic ms); false with err set if it cannot. */
static bool webhook_post_send(int fd, const char *const parts[2], const size_t plen[2], int64_t deadline,
			      char *err, size_t errlen)
{
	size_t off = 0;
	int part = 0;
	while (part < 2) {
		int64_t left = deadline - rh_mono_ns() / 1000000;
		struct pollfd p = { fd, POLLOUT, 0 };
		if (left <= 0 || poll(&p, 1, (int)left) <= 0) {
			snprintf(err, errlen, "timed out sending");
			return false;
		}
		ssize_t w = send(fd, parts[part] + off, plen[part] - off, MSG_NOSIGNAL);
		if (w < 0 && errno != EAGAIN && errno != EINTR) {
			snprintf(err, errlen, "send: %s", strerror(errno));
			return false;
		}
		if (w > 0)
			off += (size_t)w;
		if (off == plen[part]) {
			part++;
			off = 0;
		}
	}
	return true;
}

/* Reads the response's status line by the deadline; its status, or -1
 * with err set. A status outside 2xx sets err too. */
static int webhook_post_status(int fd, int64_t deadline, char *err, size_t errlen)
{
	char resp[512];
	size_t got = 0;
	while (got < sizeof resp - 1 && !memchr(resp, '\n', got)) {
		int64_t left = deadline - rh_mono_ns() / 1000000;
		struct pollfd p = { fd, POLLIN, 0 };
		if (left <= 0 || poll(&p, 1, (int)left) <= 0) {
			snprintf(err, errlen, "timed out waiting for the response");
			return -1;
		}
		ssize_t r = recv(fd, resp + got, sizeof resp - 1 - got, 0);
		if (r == 0)
			break;
		if (r < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			snprintf(err, errlen, "recv: %s", strerror(errno));
			return -1;
		}
		got += (size_t)r;
	}
	resp[got] = '\0';
	int code;
	if (sscanf(resp, "HTTP/1.%*d %d", &code) != 1) {
		snprintf(err, errlen, "not an HTTP response");
		return -1;
	}
	if (code < 200 || code > 299)
		snprintf(err, errlen, "HTTP %d", code);
	return code;
}

/* A blocking HTTP/1.1 POST with a deadline; returns the status or -1. */
static int webhook_post(const struct endpoint *ep, const char *const *headers, const char *body, size_t len,
			int64_t timeout_ms, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai = NULL;
	int rc = getaddrinfo(ep->host, ep->port, &hints, &ai);
	if (rc != 0) {
		snprintf(err, errlen, "resolving %.120s: %.60s", ep->host, gai_strerror(rc));
		return -1;
	}
	int64_t deadline = rh_mono_ns() / 1000000 + timeout_ms;
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		freeaddrinfo(ai);
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	int status = -1;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
		snprintf(err, errlen, "connect: %s", strerror(errno));
		goto out;
	}
	char head[2048];
	int hn = snprintf(head, sizeof head, "POST %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\n"
			  "Content-Length: %zu\r\nConnection: close\r\nUser-Agent: ridehaild\r\n",
			  ep->path, ep->host, ep->port, len);
	for (int i = 0; headers[i] && hn < (int)sizeof head; i++)
		hn += snprintf(head + hn, sizeof head - (size_t)hn, "%s\r\n", headers[i]);
	if (hn + 2 >= (int)sizeof head) {
		snprintf(err, errlen, "headers too long");
		goto out;
	}
	memcpy(head + hn, "\r\n", 2);
	hn += 2;
	const char *const parts[2] = { head, body };
	const size_t plen[2] = { (size_t)hn, len };
	if (webhook_post_send(fd, parts, plen, deadline, err, errlen))
		status = webhook_post_status(fd, deadline, err, errlen);
out:
	close(fd);
	freeaddrinfo(ai);
	return status;
}

static void webhook_ep_reset(struct endpoint *ep)
{
	natsSubscription_Destroy(ep->sub);
	jsCtx_Destroy(ep->js);
	natsConnection_Destroy(ep->nc);
	ep->sub = NULL;
	ep->js = NULL;
	ep->nc = NULL;
}

static bool webhook_ep_connect(struct endpoint *ep, struct wh_job *j)
{
	const struct webhooks_cfg *cfg = ep->wh->cfg;
	const struct events_cfg *ecfg = ep->wh->deps.cfg;
	if (ep->nc && natsConnection_IsClosed(ep->nc))
		webhook_ep_reset(ep);
	if (ep->sub)
		return true;
	natsStatus s = NATS_OK;
	if (!ep->nc)
		s = natsConnection_Connect(&ep->nc, ep->wh->opts);
	if (s == NATS_OK && !ep->js)
		s = natsConnection_JetStream(&ep->js, ep->nc, NULL);
	if (s == NATS_OK) {
		char subject[160];
		snprintf(subject, sizeof subject, "%s.>", ecfg->subject_prefix);
		jsSubOptions so;
		jsSubOptions_Init(&so);
		so.Stream = ecfg->stream;
		so.Config.Durable = ep->durable;
		so.Config.AckPolicy = js_AckExplicit;
		/* a new endpoint gets the events published since this daemon
		 * started with it configured; an existing consumer resumes */
		so.Config.DeliverPolicy = js_DeliverByStartTime;
		so.Config.OptStartTime = ep->wh->started_ms * 1000000;
		so.Config.AckWait = (cfg->timeout_ms + 5000) * 1000000;
		so.Config.MaxAckPending = 1; /* one at a time: stream order */
		so.Config.MaxDeliver = -1;   /* we dead-letter ourselves, and say so */
		jsErrCode jerr = 0;
		s = js_PullSubscribe(&ep->sub, ep->js, subject, ep->durable, NULL, &so, &jerr);
		if (s != NATS_OK)
			snprintf(j->error, sizeof j->error, "consumer %s: %s (JetStream error %d)", ep->durable,
				 natsStatus_GetText(s), (int)jerr);
	} else {
		snprintf(j->error, sizeof j->error, "NATS: %s", natsStatus_GetText(s));
	}
	if (s != NATS_OK) {
		webhook_ep_reset(ep);
		return false;
	}
	return true;
}

static int64_t webhook_retry_delay(const struct webhooks_cfg *cfg, int attempts)
{
	int64_t d = cfg->retry_min_ms;
	for (int i = 1; i < attempts && d < cfg->retry_max_ms; i++)
		d *= 2;
	return d > cfg->retry_max_ms ? cfg->retry_max_ms : d;
}

static void webhook_job_run(struct worker_job *job)
{
	struct wh_job *j = (struct wh_job *)job;
	struct endpoint *ep = j->ep;
	const struct webhooks_cfg *cfg = ep->wh->cfg;
	if (!webhook_ep_connect(ep, j)) {
		j->outcome = -1;
		return;
	}
	natsMsgList list = { 0 };
	natsStatus s = natsSubscription_Fetch(&list, ep->sub, 1, 1000, NULL);
	if (s == NATS_TIMEOUT || (s == NATS_OK && list.Count == 0)) {
		natsMsgList_Destroy(&list);
		j->outcome = 0;
		return;
	}
	if (s != NATS_OK) {
		snprintf(j->error, sizeof j->error, "fetch: %s", natsStatus_GetText(s));
		natsMsgList_Destroy(&list);
		webhook_ep_reset(ep);
		j->outcome = -1;
		return;
	}
	natsMsg *m = list.Msgs[0];
	const char *body = natsMsg_GetData(m);
	size_t len = (size_t)natsMsg_GetDataLength(m);
	const char *id = NULL;
	natsMsgHeader_Get(m, "Nats-Msg-Id", &id);
	snprintf(j->event_id, sizeof j->event_id, "%s", id ? id : "");
	const char *subj = natsMsg_GetSubject(m);
	size_t pl = strlen(ep->wh->deps.cfg->subject_prefix) + 1;
	snprintf(j->event_type, sizeof j->event_type, "%s", strlen(subj) > pl ? subj + pl : subj);
	jsMsgMetaData *meta = NULL;
	j->attempts = natsMsg_GetMetaData(&meta, m) == NATS_OK ? (int)meta->NumDelivered : 1;
	jsMsgMetaData_Destroy(meta);
	const char *origin = NULL;
	natsMsgHeader_Get(m, EVENTS_ORIGIN_HEADER, &origin);
	if (!id || !events_origin_check(ep->wh->origin_key, id, subj, body, len, origin)) {
		/* not published by our relay: never signed, never sent */
		snprintf(j->error, sizeof j->error, "%s", origin ? "a wrong origin signature" : "no origin signature");
		natsMsg_Term(m, NULL);
		natsMsgList_Destroy(&list);
		j->outcome = 4;
		return;
	}

	char ts[24], sig[80], hdr_ts[48], hdr_sig[120], hdr_id[80], hdr_type[100], hdr_attempt[40];
	snprintf(ts, sizeof ts, "%lld", (long long)time(NULL));
	unsigned char mac[crypto_auth_hmacsha256_BYTES];
	crypto_auth_hmacsha256_state st;
	crypto_auth_hmacsha256_init(&st, (const unsigned char *)cfg->secret, strlen(cfg->secret));
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)ts, strlen(ts));
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)".", 1);
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)body, len);
	crypto_auth_hmacsha256_final(&st, mac);
	sodium_bin2hex(sig, sizeof sig, mac, sizeof mac);
	snprintf(hdr_ts, sizeof hdr_ts, "Ridehail-Timestamp: %s", ts);
	snprintf(hdr_sig, sizeof hdr_sig, "Ridehail-Signature: v1=%s", sig);
	snprintf(hdr_id, sizeof hdr_id, "Ridehail-Event-Id: %s", j->event_id);
	snprintf(hdr_type, sizeof hdr_type, "Ridehail-Event-Type: %s", j->event_type);
	snprintf(hdr_attempt, sizeof hdr_attempt, "Ridehail-Attempt: %d", j->attempts);
	const char *headers[] = { hdr_ts, hdr_sig, hdr_id, hdr_type, hdr_attempt, NULL };
	j->status = webhook_post(ep, headers, body, len, cfg->timeout_ms, j->error, sizeof j->error);
	if (j->status >= 200 && j->status <= 299) {
		natsMsg_Ack(m, NULL);
		j->outcome = 1;
	} else if (j->attempts >= cfg->max_attempts) {
		j->body = rh_strndup(body, len);
		natsMsg_Term(m, NULL);
		j->outcome = 3;
	} else {
		natsMsg_NakWithDelay(m, webhook_retry_delay(cfg, j->attempts), NULL);
		j->outcome = 2;
	}
	natsMsgList_Destroy(&list);
}

/* ------------------------------------------------------------ loop */

static void webhook_ep_schedule(struct endpoint *ep, int64_t ms)
{
	if (ep->wh->stopping)
		return;
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	evtimer_add(ep->timer, &tv);
}

static void webhook_dead_written(void *arg, const struct db_result *res)
{
	if (res->err != RH_OK)
		log_error(NULL, "webhooks: cannot record a dead letter: %s", res->message);
}

static void webhook_job_done(struct worker_job *job)
{
	struct wh_job *j = (struct wh_job *)job;
	struct endpoint *ep = j->ep;
	const struct webhooks_cfg *cfg = ep->wh->cfg;
	ep->busy = false;
	int64_t next = 0;
	switch (j->outcome) {
	case 0:
		break;
	case 1:
		metric_inc(ep->m_delivered);
		if (ep->failures)
			log_info(NULL, "webhooks: %s answers again", ep->url);
		ep->failures = 0;
		break;
	case 2:
		metric_inc(ep->m_failed);
		if (ep->failures++ == 0)
			log_warn(NULL, "webhooks: %s: %s (event %s, attempt %d of %lld); retrying with backoff", ep->url,
				 j->error, j->event_id, j->attempts, (long long)cfg->max_attempts);
		break;
	case 3: {
		metric_inc(ep->m_failed);
		metric_inc(ep->m_dead);
		log_warn(NULL, "webhooks: %s: event %s dead-lettered after %d attempts: %s", ep->url, j->event_id,
			 j->attempts, j->error);
		if (!ep->wh->stopping) {
			char att[16];
			snprintf(att, sizeof att, "%d", j->attempts);
			const char *params[] = { ep->url, j->event_id, j->event_type, att, j->error, j->body };
			db_query(ep->wh->deps.db, &st_dead, params, webhook_dead_written, NULL);
		}
		break;
	}
	case 4:
		metric_inc(ep->m_foreign);
		log_warn(NULL, "webhooks: %s: a message on %s.%s (id %s) that our relay did not publish (%s): dropped, not sent",
			 ep->url, ep->wh->deps.cfg->subject_prefix, j->event_type, j->event_id[0] ? j->event_id : "none",
			 j->error);
		break;
	default:
		if (ep->failures++ % 50 == 0)
			log_warn(NULL, "webhooks: %s: %s; retrying with backoff (%d failures in a row)", ep->url, j->error,
				 ep->failures);
		next = webhook_retry_delay(cfg, ep->failures);
		break;
	}
	rh_free(j->body);
	rh_free(j);
	webhook_ep_schedule(ep, next);
}

static void webhook_ep_tick(evutil_socket_t fd, short what, void *arg)
{
	struct endpoint *ep = arg;
	if (ep->busy || ep->wh->stopping)
		return;
	struct wh_job *j = RH_NEW(struct wh_job);
	j->ep = ep;
	j->job.run = webhook_job_run;
	j->job.done = webhook_job_done;
	ep->busy = true;
	if (worker_submit(ep->pool, &j->job) != RH_OK) {
		ep->busy = false;
		rh_free(j);
		webhook_ep_schedule(ep, ep->wh->cfg->retry_min_ms);
	}
}

static bool webhook_url_parse(struct endpoint *ep, const char *url)
{
	if (strncmp(url, "http://", 7) != 0)
		return false;
	const char *h = url + 7, *slash = strchr(h, '/');
	size_t hl = slash ? (size_t)(slash - h) : strlen(h);
	char hostport[sizeof ep->host];
	if (hl == 0 || hl >= sizeof hostport)
		return false;
	memcpy(hostport, h, hl);
	hostport[hl] = '\0';
	char *colon = strrchr(hostport, ':');
	snprintf(ep->port, sizeof ep->port, "%s", colon ? colon + 1 : "80");
	if (colon)
		*colon = '\0';
	snprintf(ep->host, sizeof ep->host, "%s", hostport);
	snprintf(ep->path, sizeof ep->path, "%s", slash ? slash : "/");
	snprintf(ep->url, sizeof ep->url, "%s", url);
	return ep->host[0] != '\0';
}

struct webhooks *webhooks_new(const struct events_deps *d)
{
	static const char *const ep_label[] = { "endpoint", NULL };
	const struct webhooks_cfg *cfg = d->webhooks;
	struct metrics *m = d->metrics;
	struct metric_family *f_del = metrics_counter(m, "ridehail_webhooks_delivered_total",
			"Events an endpoint acknowledged with 2xx, by endpoint.", ep_label);
	struct metric_family *f_fail = metrics_counter(m, "ridehail_webhooks_failed_total",
			"Failed deliveries (error, timeout, non-2xx), by endpoint; each is retried or dead-lettered.", ep_label);
	struct metric_family *f_dead = metrics_counter(m, "ridehail_webhooks_dead_total",
			"Events given up after webhooks.max_attempts failed deliveries (in webhook_dead_letters), by endpoint.",
			ep_label);
	struct metric_family *f_foreign = metrics_counter(m, "ridehail_webhooks_foreign_total",
			"Messages on the stream that the relay did not publish (no or a wrong Ridehail-Origin): dropped, "
			"never signed nor sent, by endpoint.", ep_label);
	db_register(d->db, &st_dead);
	if (!cfg->urls || !*cfg->urls)
		return NULL;
	if (d->cfg->sink != EVENTS_SINK_NATS || !d->cfg->url || !*d->cfg->url) {
		log_warn(NULL, "webhooks: they are fed from the event stream, which is off (events.sink, events.url)");
		return NULL;
	}
	if (!cfg->secret || !*cfg->secret) {
		log_error(NULL, "webhooks: webhooks.secret is empty: webhooks are off (nothing unsigned is sent)");
		return NULL;
	}
	struct webhooks *wh = RH_NEW(struct webhooks);
	wh->deps = *d;
	wh->cfg = cfg;
	wh->started_ms = rh_wall_ms();
	char why[300] = "";
	events_origin_key(cfg->secret, wh->origin_key);
	if (natsOptions_Create(&wh->opts) != NATS_OK || natsOptions_SetURL(wh->opts, d->cfg->url) != NATS_OK ||
	    natsOptions_SetTimeout(wh->opts, d->cfg->connect_timeout_ms) != NATS_OK ||
	    natsOptions_SetMaxReconnect(wh->opts, -1) != NATS_OK ||
	    events_nats_credentials(wh->opts, d->cfg->credentials, why, sizeof why) != RH_OK) {
		log_error(NULL, "webhooks: NATS options failed%s%s: webhooks are off", why[0] ? ": " : "", why);
		natsOptions_Destroy(wh->opts);
		rh_free(wh);
		return NULL;
	}
	char *list = rh_strdup(cfg->urls), *save = NULL;
	for (char *u = strtok_r(list, ", ", &save); u && wh->n < WH_MAX; u = strtok_r(NULL, ", ", &save)) {
		struct endpoint *ep = &wh->ep[wh->n];
		if (!webhook_url_parse(ep, u)) {
			log_error(NULL, "webhooks: \"%s\" is not an http:// URL: skipped", u);
			continue;
		}
		ep->wh = wh;
		/* the consumer's name follows the URL, so a restart resumes where it was */
		unsigned char h[8];
		crypto_generichash(h, sizeof h, (const unsigned char *)u, strlen(u), NULL, 0);
		char hex[17];
		sodium_bin2hex(hex, sizeof hex, h, sizeof h);
		snprintf(ep->durable, sizeof ep->durable, "ridehail-webhook-%s", hex);
		const char *lv[] = { ep->url };
		ep->m_delivered = metric_cell(f_del, lv);
		ep->m_failed = metric_cell(f_fail, lv);
		ep->m_dead = metric_cell(f_dead, lv);
		ep->m_foreign = metric_cell(f_foreign, lv);
		ep->pool = worker_pool_new(d->base, 1, 2);
		ep->timer = evtimer_new(d->base, webhook_ep_tick, ep);
		log_info(NULL, "webhooks: delivering events to %s (consumer %s)", ep->url, ep->durable);
		wh->n++;
		webhook_ep_schedule(ep, 0);
	}
	rh_free(list);
	return wh;
}

void webhooks_stop(struct webhooks *wh)
{
	if (!wh)
		return;
	wh->stopping = true;
	for (int i = 0; i < wh->n; i++)
		event_del(wh->ep[i].timer);
}

void webhooks_free(struct webhooks *wh)
{
	if (!wh)
		return;
	wh->stopping = true;
	for (int i = 0; i < wh->n; i++) {
		struct endpoint *ep = &wh->ep[i];
		worker_pool_free(ep->pool);
		webhook_ep_reset(ep);
		event_free(ep->timer);
	}
	natsOptions_Destroy(wh->opts);
	rh_free(wh);
}
