/* trip_load: drives trips through their lifecycle over HTTP, on libevent.
 *
 *   trip_load --pairs FILE --secret S --admin TOKEN [--port 8080] [--conns 256]
 *             [--count N] [--seed K]
 *
 * FILE holds "rider_id driver_id" lines (UUIDs); the first N pairs are used,
 * each pair for one trip. Tokens are signed here with the daemon's jwt
 * secret; the operator acts with the admin token.
 *
 *   1. setup (not timed): POST /v1/rides for every rider, pickup and dropoff
 *      random in the bench city (lat 52.00-52.18, lon 5.03-5.21), 2-6 km apart.
 *   2. timed: for every trip, POST /v1/rides/{id}/assign {driver_id} as the
 *      operator, then /arrived, /start and /complete {distance_m, duration_s}
 *      as the driver. Each of the K keep-alive connections walks its share of
 *      the trips one request at a time, so up to K transitions are in flight
 *      and the daemon may commit them together.
 *
 * Only 2xx answers count; a trip whose step is refused is abandoned (the
 * first few refusals are printed). Prints on one line:
 *   created=... transitions=... failed=... seconds=... per_s=... p50_ms=... p99_ms=...
 * and exits 1 if anything failed. */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "auth/jwt.h"

#define LAT0 52.00
#define LON0 5.03
#define SPAN 0.18
#define STEPS 4

static const char *const step_path[STEPS] = { "assign", "arrived", "start", "complete" };

struct trip {
	char rider[37], driver[37], id[37];
	bool ok;
};

struct conn {
	int idx;
	struct bufferevent *bev;
	int trip; /* index into G.trips */
	int step; /* 0..STEPS-1; in setup, unused */
	double sent_at;
};

static struct {
	struct event_base *base;
	const char *secret, *admin;
	int port, nconns, count;
	struct trip *trips;
	int ntrips;
	struct conn *conns;
	int connected, done;
	bool timed;
	int created, create_failed;
	uint64_t transitions, failed;
	double *lat_ms;
	size_t nlat;
	uint64_t rng;
} G;

static uint64_t rnd(void)
{
	G.rng ^= G.rng << 13;
	G.rng ^= G.rng >> 7;
	G.rng ^= G.rng << 17;
	return G.rng;
}

static double urand(void) { return (double)(rnd() >> 11) / 9007199254740992.0; }

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fail(const char *what)
{
	perror(what);
	exit(1);
}

static void token_for(const char *id, enum auth_role role, char *out, size_t n)
{
	struct jwt_claims c = { .role = role };
	snprintf(c.sub, sizeof c.sub, "%s", id);
	c.iat = time(NULL) - 5;
	c.exp = c.iat + 86400;
	snprintf(c.jti, sizeof c.jti, "trip-%016llx", (unsigned long long)rnd());
	if (jwt_sign((const unsigned char *)G.secret, strlen(G.secret), &c, out, n) != RH_OK) {
		fprintf(stderr, "jwt_sign failed\n");
		exit(1);
	}
}

static void send_request(struct conn *c, const char *method, const char *path, const char *token, const char *body)
{
	char req[2048];
	size_t bl = body ? strlen(body) : 0;
	int n = snprintf(req, sizeof req,
			 "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
			 "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
			 method, path, token, bl, body ? body : "");
	c->sent_at = now_s();
	bufferevent_write(c->bev, req, (size_t)n);
}

static void conn_finished(struct conn *c)
{
	(void)c;
	if (++G.done == G.nconns)
		event_base_loopbreak(G.base);
}

/* ------------------------------------------------------------ setup: POST /v1/rides */

static void create_next(struct conn *c)
{
	if (c->trip >= G.ntrips) {
		conn_finished(c);
		return;
	}
	struct trip *t = &G.trips[c->trip];
	char tok[JWT_MAX_LEN], body[256];
	token_for(t->rider, ROLE_RIDER, tok, sizeof tok);
	double plat = LAT0 + 0.02 + urand() * (SPAN - 0.04), plng = LON0 + 0.02 + urand() * (SPAN - 0.04);
	double ang = urand() * 2 * M_PI, km = 2 + urand() * 4;
	double dlat = plat + km / 111.2 * sin(ang), dlng = plng + km / (111.2 * cos(plat * M_PI / 180)) * cos(ang);
	snprintf(body, sizeof body,
		 "{\"pickup\":{\"lat\":%.6f,\"lng\":%.6f},\"dropoff\":{\"lat\":%.6f,\"lng\":%.6f},\"vehicle_type\":\"standard\"}",
		 plat, plng, dlat, dlng);
	send_request(c, "POST", "/v1/rides", tok, body);
}

static void created(struct conn *c, int status, const char *body, size_t blen)
{
	struct trip *t = &G.trips[c->trip];
	cJSON *j = status == 201 ? cJSON_ParseWithLength(body, blen) : NULL;
	const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "id"));
	if (id && strlen(id) == 36) {
		memcpy(t->id, id, 37);
		t->ok = true;
		G.created++;
	} else {
		if (G.create_failed++ < 3)
			fprintf(stderr, "POST /v1/rides: %d %.*s\n", status, (int)(blen < 400 ? blen : 400), body);
	}
	cJSON_Delete(j);
	c->trip += G.nconns;
	create_next(c);
}

/* ------------------------------------------------------------ timed: the transitions */

static void step_next(struct conn *c)
{
	while (c->trip < G.ntrips && !G.trips[c->trip].ok)
		c->trip += G.nconns;
	if (c->trip >= G.ntrips) {
		conn_finished(c);
		return;
	}
	struct trip *t = &G.trips[c->trip];
	char path[128], body[128], tok[JWT_MAX_LEN];
	snprintf(path, sizeof path, "/v1/rides/%s/%s", t->id, step_path[c->step]);
	switch (c->step) {
	case 0:
		snprintf(body, sizeof body, "{\"driver_id\":\"%s\"}", t->driver);
		send_request(c, "POST", path, G.admin, body);
		return;
	case 3:
		snprintf(body, sizeof body, "{\"distance_m\":%d,\"duration_s\":%d}", 1500 + (int)(rnd() % 3000),
			 300 + (int)(rnd() % 600));
		break;
	default:
		body[0] = '\0';
	}
	token_for(t->driver, ROLE_DRIVER, tok, sizeof tok);
	send_request(c, "POST", path, tok, body[0] ? body : NULL);
}

static void stepped(struct conn *c, int status, const char *body, size_t blen)
{
	if (status >= 200 && status < 300) {
		G.transitions++;
		G.lat_ms[G.nlat++] = (now_s() - c->sent_at) * 1000;
		if (++c->step < STEPS) {
			step_next(c);
			return;
		}
	} else {
		G.failed++;
		if (G.failed <= 3)
			fprintf(stderr, "%s: %d %.*s\n", step_path[c->step], status, (int)(blen < 400 ? blen : 400), body);
	}
	c->step = 0;
	c->trip += G.nconns;
	step_next(c);
}

/* ------------------------------------------------------------ HTTP plumbing */

static void on_read(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	for (;;) {
		struct evbuffer_ptr p = evbuffer_search(in, "\r\n\r\n", 4, NULL);
		if (p.pos < 0)
			return;
		size_t hl = (size_t)p.pos + 4;
		char *head = (char *)evbuffer_pullup(in, (ev_ssize_t)hl);
		char *cl = memmem(head, hl, "Content-Length:", 15);
		if (!cl)
			cl = memmem(head, hl, "content-length:", 15);
		size_t blen = cl ? (size_t)strtoul(cl + 15, NULL, 10) : 0;
		if (evbuffer_get_length(in) < hl + blen)
			return;
		int status = hl > 12 ? atoi(head + 9) : 0;
		bool closing = memmem(head, hl, "Connection: close", 17) != NULL;
		char *all = (char *)evbuffer_pullup(in, (ev_ssize_t)(hl + blen));
		char *body = malloc(blen + 1);
		memcpy(body, all + hl, blen);
		body[blen] = '\0';
		evbuffer_drain(in, hl + blen);
		if (closing) {
			fprintf(stderr, "connection %d: the daemon closes it (raise http.max_requests_per_conn)\n", c->idx);
			exit(1);
		}
		if (G.timed)
			stepped(c, status, body, blen);
		else
			created(c, status, body, blen);
		free(body);
	}
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	struct conn *c = arg;
	if (what & BEV_EVENT_CONNECTED) {
		if (++G.connected == G.nconns)
			event_base_loopbreak(G.base);
		return;
	}
	fprintf(stderr, "connection %d lost\n", c->idx);
	exit(1);
}

static void connect_all(void)
{
	for (int i = 0; i < G.nconns; i++) {
		struct conn *c = &G.conns[i];
		c->idx = i;
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			fail("socket");
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		c->bev = bufferevent_socket_new(G.base, fd, BEV_OPT_CLOSE_ON_FREE);
		bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
		bufferevent_enable(c->bev, EV_READ | EV_WRITE);
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)G.port) };
		sa.sin_addr.s_addr = htonl(0x7f000001u);
		if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&sa, sizeof sa) != 0)
			fail("connect");
	}
	event_base_dispatch(G.base);
}

/* ------------------------------------------------------------ main */

static void load_pairs(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		fail(path);
	int cap = 1024;
	G.trips = calloc((size_t)cap, sizeof *G.trips);
	char line[256];
	while (fgets(line, sizeof line, f)) {
		char r[64], d[64];
		if (sscanf(line, "%63s %63s", r, d) != 2 || strlen(r) != 36 || strlen(d) != 36)
			continue;
		if (G.ntrips == cap) {
			cap *= 2;
			G.trips = realloc(G.trips, (size_t)cap * sizeof *G.trips);
		}
		struct trip *t = &G.trips[G.ntrips++];
		memset(t, 0, sizeof *t);
		memcpy(t->rider, r, 37);
		memcpy(t->driver, d, 37);
	}
	fclose(f);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double pct(double p)
{
	if (G.nlat == 0)
		return 0;
	size_t i = (size_t)ceil(p * (double)G.nlat) - 1;
	return G.lat_ms[i < G.nlat ? i : G.nlat - 1];
}

static void usage(void)
{
	fprintf(stderr, "usage: trip_load --pairs FILE --secret S --admin TOKEN [--port P] [--conns N] [--count N] [--seed K]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *pairs = NULL;
	G.port = 8080;
	G.nconns = 256;
	G.count = -1;
	G.rng = 0x9e3779b97f4a7c15ull;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (i + 1 >= argc)
			usage();
		const char *v = argv[++i];
		if (!strcmp(a, "--pairs"))
			pairs = v;
		else if (!strcmp(a, "--secret"))
			G.secret = v;
		else if (!strcmp(a, "--admin"))
			G.admin = v;
		else if (!strcmp(a, "--port"))
			G.port = atoi(v);
		else if (!strcmp(a, "--conns"))
			G.nconns = atoi(v);
		else if (!strcmp(a, "--count"))
			G.count = atoi(v);
		else if (!strcmp(a, "--seed"))
			G.rng ^= strtoull(v, NULL, 10) * 0x2545f4914f6cdd1dull;
		else
			usage();
	}
	if (!pairs || !G.secret || !G.admin)
		usage();
	load_pairs(pairs);
	if (G.count >= 0 && G.count < G.ntrips)
		G.ntrips = G.count;
	if (G.ntrips == 0)
		usage();
	if (G.nconns > G.ntrips)
		G.nconns = G.ntrips;
	G.conns = calloc((size_t)G.nconns, sizeof *G.conns);
	G.lat_ms = calloc((size_t)G.ntrips * STEPS, sizeof *G.lat_ms);
	signal(SIGPIPE, SIG_IGN);
	G.base = event_base_new();

	connect_all();
	G.done = 0;
	for (int i = 0; i < G.nconns; i++) {
		G.conns[i].trip = i;
		create_next(&G.conns[i]);
	}
	event_base_dispatch(G.base);

	G.timed = true;
	G.done = 0;
	double t0 = now_s();
	for (int i = 0; i < G.nconns; i++) {
		G.conns[i].trip = i;
		G.conns[i].step = 0;
		step_next(&G.conns[i]);
	}
	event_base_dispatch(G.base);
	double secs = now_s() - t0;

	qsort(G.lat_ms, G.nlat, sizeof *G.lat_ms, cmp_double);
	printf("created=%d transitions=%llu failed=%llu seconds=%.3f per_s=%.0f p50_ms=%.2f p99_ms=%.2f\n", G.created,
	       (unsigned long long)G.transitions, (unsigned long long)(G.failed + (uint64_t)G.create_failed), secs,
	       (double)G.transitions / secs, pct(0.50), pct(0.99));
	return G.failed || G.create_failed ? 1 : 0;
}
