/* ws_load: a load generator for the driver side of ridehaild, on libevent.
 *
 *   ws_load ws --ids FILE --secret S [--port 8080] [--conns N] [--src K]
 *              [--available] [--seed-ping] [--stream] [--hold SECONDS]
 *       N authenticated driver WebSockets (the first N ids of FILE, one UUID a
 *       line; tokens are signed here with the daemon's jwt secret). Each may
 *       go available, send one location in the bench city, and/or stream
 *       location updates as fast as the socket drains (fire and forget, the
 *       way apps pipeline them). Connections come from K loopback source
 *       addresses (127.0.0.2...) to get past one address's port range.
 *       Prints "connected=... failed=..." then "ready" once every connection
 *       is up, and a summary on exit (after --hold, or on SIGTERM/SIGINT).
 *
 *   ws_load http --ids FILE --secret S [--port 8080] [--conns 32] [--count N]
 *       PUT /v1/drivers/me/location once for each of the first N drivers over
 *       K keep-alive connections: how the bench puts many drivers in the grid
 *       without a socket each. Prints "seeded=... failed=...".
 *
 * The bench city is the anchors' 20x20 km box: lat 52.00-52.18, lon 5.03-5.21.
 * Pings carry the current time, a random walk position, speed and heading;
 * they are built by patching a per-connection template (no printf per ping),
 * so the generator stays cheaper than the server it loads. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
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

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define LAT0 52.00
#define LON0 5.03
#define SPAN 0.18
#define BATCH 16 /* pings queued per refill */
#define MAX_CONNECTING 512

struct conn;

static struct {
	struct event_base *base;
	const char *secret;
	int port, src, nconns;
	bool available, seed_ping, stream;
	double hold_s;
	char (*ids)[37];
	int nids;
	struct conn *conns;
	int next, connecting, up, failed, closed, done;
	bool announced;
	uint64_t sent, received, rejected, pongs;
	uint64_t rng;
	char now_str[64];
	int64_t now_ms;
	/* http mode */
	int count, seeded, http_failed;
} G;

struct conn {
	int idx;
	struct bufferevent *bev;
	bool upgraded, dead;
	uint32_t mask;
	double lat, lon;
	uint64_t seq;
	char tmpl[512];
	size_t tmpl_len, off_id, off_ts, off_lat, off_lon, off_heading;
	/* http mode */
	int driver; /* next driver index */
};

static uint64_t rnd(void)
{
	G.rng ^= G.rng << 13;
	G.rng ^= G.rng >> 7;
	G.rng ^= G.rng << 17;
	return G.rng;
}

static double urand(void) { return (double)(rnd() >> 11) / 9007199254740992.0; }

static void fail(const char *what)
{
	perror(what);
	exit(1);
}

static void tick_clock(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	if (ms == G.now_ms)
		return;
	G.now_ms = ms;
	time_t s = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&s, &tm);
	snprintf(G.now_str, sizeof G.now_str, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

static void token_for(const char *id, enum auth_role role, char *out, size_t n)
{
	struct jwt_claims c = { .role = role };
	snprintf(c.sub, sizeof c.sub, "%s", id);
	c.iat = time(NULL) - 5;
	c.exp = c.iat + 86400;
	snprintf(c.jti, sizeof c.jti, "bench-%016llx", (unsigned long long)rnd());
	if (jwt_sign((const unsigned char *)G.secret, strlen(G.secret), &c, out, n) != RH_OK) {
		fprintf(stderr, "jwt_sign failed\n");
		exit(1);
	}
}

/* Writes v (0 <= v < 10^digits) as exactly `digits` decimal digits. */
static void put_digits(char *p, uint64_t v, int digits)
{
	for (int i = digits - 1; i >= 0; i--) {
		p[i] = (char)('0' + v % 10);
		v /= 10;
	}
}

static void put_hex(char *p, uint64_t v, int digits)
{
	static const char hx[] = "0123456789abcdef";
	for (int i = digits - 1; i >= 0; i--) {
		p[i] = hx[v & 15];
		v >>= 4;
	}
}

/* The ping template: fixed-width fields patched per ping. lat is 52.xxxxxx
 * and lon 5.xxxxxx inside the bench box, so their widths never change. */
static void build_template(struct conn *c)
{
	const char *id = G.ids[c->idx];
	int n = snprintf(c->tmpl, sizeof c->tmpl,
			 "{\"event_id\":\"%.8s-0000-4000-8000-000000000000\",\"event_type\":\"driver.location.updated\","
			 "\"event_version\":1,\"timestamp\":\"2000-01-01T00:00:00.000Z\",\"producer\":\"ws-load\","
			 "\"correlation_id\":\"%s\",\"payload\":{\"driver_id\":\"%s\",\"location\":{\"lat\":52.000000,"
			 "\"lon\":5.000000},\"speed_kmh\":32,\"heading_deg\":100,\"accuracy_m\":5,\"source\":\"gps\"}}",
			 id, id, id);
	c->tmpl_len = (size_t)n;
	c->off_id = (size_t)(strstr(c->tmpl, "-0000-4000") - c->tmpl) + 16;
	c->off_ts = (size_t)(strstr(c->tmpl, "2000-01-01") - c->tmpl);
	c->off_lat = (size_t)(strstr(c->tmpl, "52.000000") - c->tmpl) + 3;
	c->off_lon = (size_t)(strstr(c->tmpl, "5.000000}") - c->tmpl) + 2;
	c->off_heading = (size_t)(strstr(c->tmpl, "\"heading_deg\":100") - c->tmpl) + 14;
}

/* A masked client frame (FIN set). */
static void add_frame(struct evbuffer *out, int opcode, const char *payload, size_t len, uint32_t mask)
{
	uint8_t buf[8 + 1024];
	size_t h = 0;
	buf[h++] = (uint8_t)(0x80 | opcode);
	if (len < 126) {
		buf[h++] = (uint8_t)(0x80 | len);
	} else {
		buf[h++] = 0x80 | 126;
		buf[h++] = (uint8_t)(len >> 8);
		buf[h++] = (uint8_t)len;
	}
	memcpy(buf + h, &mask, 4);
	h += 4;
	const uint8_t *m = (const uint8_t *)&mask;
	for (size_t i = 0; i < len; i++)
		buf[h + i] = (uint8_t)payload[i] ^ m[i & 3];
	evbuffer_add(out, buf, h + len);
}

static void add_text(struct conn *c, const char *text)
{
	add_frame(bufferevent_get_output(c->bev), 0x1, text, strlen(text), c->mask);
	G.sent++;
}

static void add_ping(struct conn *c)
{
	/* a random walk of ~5 m per ping, kept inside the box */
	c->lat += (urand() - 0.5) * 0.0001;
	c->lon += (urand() - 0.5) * 0.0001;
	if (c->lat < LAT0 + 0.001 || c->lat > LAT0 + SPAN - 0.001)
		c->lat = LAT0 + SPAN / 2;
	if (c->lon < LON0 + 0.001 || c->lon > LON0 + SPAN - 0.001)
		c->lon = LON0 + SPAN / 2;
	char *t = c->tmpl;
	put_hex(t + c->off_id, ++c->seq, 12);
	memcpy(t + c->off_ts, G.now_str, 24);
	put_digits(t + c->off_lat, (uint64_t)((c->lat - 52.0) * 1e6 + 0.5), 6);
	put_digits(t + c->off_lon, (uint64_t)((c->lon - 5.0) * 1e6 + 0.5), 6);
	put_digits(t + c->off_heading, 100 + rnd() % 260, 3); /* no leading zero: strict JSON */
	add_frame(bufferevent_get_output(c->bev), 0x1, t, c->tmpl_len, c->mask);
	G.sent++;
}

static void envelope(char *out, size_t n, struct conn *c, const char *type, const char *payload)
{
	tick_clock();
	snprintf(out, n,
		 "{\"event_id\":\"%.8s-1111-4000-8000-%012llx\",\"event_type\":\"%s\",\"event_version\":1,"
		 "\"timestamp\":\"%s\",\"producer\":\"ws-load\",\"correlation_id\":\"%s\",\"payload\":%s}",
		 G.ids[c->idx], (unsigned long long)++c->seq, type, G.now_str, G.ids[c->idx], payload);
}

static void start_next(void);

static void on_write(struct bufferevent *bev, void *arg);

static void check_ready(void)
{
	if (G.announced || G.up + G.failed < G.nconns)
		return;
	G.announced = true;
	printf("connected=%d failed=%d\nready\n", G.up, G.failed);
	fflush(stdout);
	/* Stream only once every socket is up: the figure is the steady state,
	 * not logins competing with pings. */
	for (int i = 0; G.stream && i < G.nconns; i++) {
		struct conn *c = &G.conns[i];
		if (c->upgraded && !c->dead)
			on_write(c->bev, c);
	}
}

static void conn_dead(struct conn *c)
{
	if (c->dead)
		return;
	c->dead = true;
	if (c->upgraded) {
		G.closed++;
	} else {
		G.failed++;
		G.connecting--;
	}
	bufferevent_free(c->bev);
	c->bev = NULL;
	check_ready();
	start_next();
}

static void on_write(struct bufferevent *bev, void *arg)
{
	(void)bev;
	struct conn *c = arg;
	if (!G.stream || !c->upgraded || !G.announced)
		return;
	tick_clock();
	for (int i = 0; i < BATCH; i++)
		add_ping(c);
}

static void on_upgraded(struct conn *c)
{
	c->upgraded = true;
	G.connecting--;
	G.up++;
	char msg[768], pl[256];
	if (G.available) {
		snprintf(pl, sizeof pl, "{\"driver_id\":\"%s\",\"status\":\"available\"}", G.ids[c->idx]);
		envelope(msg, sizeof msg, c, "driver.status.changed", pl);
		add_text(c, msg);
	}
	if (G.seed_ping) {
		tick_clock();
		add_ping(c);
	}
	check_ready();
	start_next();
}

/* Server frames: count texts (and rejections), answer pings, note closes. */
static void on_read(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	if (!c->upgraded) {
		struct evbuffer_ptr p = evbuffer_search(in, "\r\n\r\n", 4, NULL);
		if (p.pos < 0)
			return;
		char line[16] = "";
		evbuffer_copyout(in, line, 12);
		if (strncmp(line, "HTTP/1.1 101", 12) != 0) {
			char head[512] = "";
			evbuffer_copyout(in, head, sizeof head - 1);
			if (G.failed < 3)
				fprintf(stderr, "handshake refused: %.200s\n", head);
			conn_dead(c);
			return;
		}
		evbuffer_drain(in, (size_t)p.pos + 4);
		on_upgraded(c);
	}
	for (;;) {
		size_t avail = evbuffer_get_length(in);
		if (avail < 2)
			return;
		uint8_t h[10];
		evbuffer_copyout(in, h, avail < 10 ? avail : 10);
		size_t len = h[1] & 0x7f, hl = 2;
		if (len == 126) {
			if (avail < 4)
				return;
			len = ((size_t)h[2] << 8) | h[3];
			hl = 4;
		} else if (len == 127) {
			if (avail < 10)
				return;
			len = 0;
			for (int i = 0; i < 8; i++)
				len = (len << 8) | h[2 + i];
			hl = 10;
		}
		if (avail < hl + len)
			return;
		int op = h[0] & 0x0f;
		uint8_t *frame = evbuffer_pullup(in, (ev_ssize_t)(hl + len));
		if (op == 0x1) {
			G.received++;
			if (len > 0 && memmem(frame + hl, len, "command.rejected", 16)) {
				if (G.rejected < 3)
					fprintf(stderr, "rejected: %.*s\n", (int)(len < 400 ? len : 400), frame + hl);
				G.rejected++;
			}
		} else if (op == 0x9 && len <= 125) {
			add_frame(bufferevent_get_output(bev), 0xA, (const char *)frame + hl, len, c->mask); /* pong */
			G.pongs++;
		} else if (op == 0x8) {
			evbuffer_drain(in, hl + len);
			conn_dead(c);
			return;
		}
		evbuffer_drain(in, hl + len);
	}
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	if (what & BEV_EVENT_CONNECTED) {
		char tok[JWT_MAX_LEN], req[1600];
		token_for(G.ids[c->idx], ROLE_DRIVER, tok, sizeof tok);
		int n = snprintf(req, sizeof req,
				 "GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
				 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
				 "Authorization: Bearer %s\r\n\r\n",
				 G.port, tok);
		bufferevent_write(bev, req, (size_t)n);
		return;
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		if (!c->upgraded && G.failed < 3)
			fprintf(stderr, "connection %d: %s\n", c->idx, (what & BEV_EVENT_EOF) ? "closed" : strerror(errno));
		conn_dead(c);
	}
}

static int open_socket(int i)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (G.src > 0) {
		struct sockaddr_in a = { .sin_family = AF_INET };
		a.sin_addr.s_addr = htonl(0x7f000002u + (uint32_t)(i % G.src));
		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
		if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
			close(fd);
			return -1;
		}
	}
	return fd;
}

static void start_next(void)
{
	while (G.next < G.nconns && G.connecting < MAX_CONNECTING) {
		struct conn *c = &G.conns[G.next];
		c->idx = G.next++;
		c->mask = (uint32_t)rnd() | 1;
		c->lat = LAT0 + 0.001 + urand() * (SPAN - 0.002);
		c->lon = LON0 + 0.001 + urand() * (SPAN - 0.002);
		build_template(c);
		G.connecting++;
		int fd = open_socket(c->idx);
		if (fd < 0) {
			perror("socket");
			c->dead = true;
			G.connecting--;
			G.failed++;
			continue;
		}
		c->bev = bufferevent_socket_new(G.base, fd, BEV_OPT_CLOSE_ON_FREE);
		bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
		bufferevent_enable(c->bev, EV_READ | EV_WRITE);
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)G.port) };
		sa.sin_addr.s_addr = htonl(0x7f000001u);
		if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&sa, sizeof sa) != 0) {
			conn_dead(c);
			continue;
		}
	}
	check_ready();
}

/* ------------------------------------------------------------ http mode */

static void http_send(struct conn *c)
{
	if (c->driver >= G.count) {
		G.done++;
		bufferevent_free(c->bev);
		c->bev = NULL;
		if (G.done == G.nconns)
			event_base_loopbreak(G.base);
		return;
	}
	char tok[JWT_MAX_LEN], body[256], req[2048];
	token_for(G.ids[c->driver], ROLE_DRIVER, tok, sizeof tok);
	tick_clock();
	int bl = snprintf(body, sizeof body,
			  "{\"location\":{\"lat\":%.6f,\"lon\":%.6f},\"speed_kmh\":0,\"source\":\"gps\",\"timestamp\":\"%s\"}",
			  LAT0 + urand() * SPAN, LON0 + urand() * SPAN, G.now_str);
	int n = snprintf(req, sizeof req,
			 "PUT /v1/drivers/me/location HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
			 "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
			 tok, bl, body);
	bufferevent_write(c->bev, req, (size_t)n);
}

static void http_read(struct bufferevent *bev, void *arg)
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
		bool ok = strncmp(head, "HTTP/1.1 200", 12) == 0;
		if (!ok && G.http_failed < 3)
			fprintf(stderr, "PUT refused: %.*s\n", (int)(hl + blen < 600 ? hl + blen : 600),
				(char *)evbuffer_pullup(in, (ev_ssize_t)(hl + blen)));
		evbuffer_drain(in, hl + blen);
		if (ok)
			G.seeded++;
		else
			G.http_failed++;
		c->driver += G.nconns;
		http_send(c);
		if (!c->bev)
			return;
	}
}

static void http_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	struct conn *c = arg;
	if (what & BEV_EVENT_CONNECTED) {
		http_send(c);
		return;
	}
	fprintf(stderr, "http connection %d lost\n", c->idx);
	exit(1);
}

static void run_http(void)
{
	for (int i = 0; i < G.nconns; i++) {
		struct conn *c = &G.conns[i];
		c->idx = i;
		c->driver = i;
		int fd = open_socket(i);
		if (fd < 0)
			fail("socket");
		c->bev = bufferevent_socket_new(G.base, fd, BEV_OPT_CLOSE_ON_FREE);
		bufferevent_setcb(c->bev, http_read, NULL, http_event, c);
		bufferevent_enable(c->bev, EV_READ | EV_WRITE);
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)G.port) };
		sa.sin_addr.s_addr = htonl(0x7f000001u);
		if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&sa, sizeof sa) != 0)
			fail("connect");
	}
	event_base_dispatch(G.base);
	printf("seeded=%d failed=%d\n", G.seeded, G.http_failed);
}

/* ------------------------------------------------------------ main */

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	event_base_loopbreak(G.base);
}

static void load_ids(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		fail(path);
	int cap = 1024;
	G.ids = malloc((size_t)cap * sizeof *G.ids);
	char line[128];
	while (fgets(line, sizeof line, f)) {
		if (strlen(line) < 36)
			continue;
		if (G.nids == cap) {
			cap *= 2;
			G.ids = realloc(G.ids, (size_t)cap * sizeof *G.ids);
		}
		memcpy(G.ids[G.nids], line, 36);
		G.ids[G.nids][36] = '\0';
		G.nids++;
	}
	fclose(f);
}

static void usage(void)
{
	fprintf(stderr, "usage: ws_load ws|http --ids FILE --secret S [--port P] [--conns N] [--count N] [--src K]\n"
			"               [--available] [--seed-ping] [--stream] [--hold SECONDS] [--seed N]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	if (argc < 2)
		usage();
	const char *mode = argv[1], *ids = NULL;
	G.port = 8080;
	G.nconns = -1;
	G.count = -1;
	G.hold_s = 0;
	G.rng = 0x9e3779b97f4a7c15ull;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--available"))
			G.available = true;
		else if (!strcmp(a, "--seed-ping"))
			G.seed_ping = true;
		else if (!strcmp(a, "--stream"))
			G.stream = true;
		else if (!v)
			usage();
		else if (!strcmp(a, "--ids"))
			ids = argv[++i];
		else if (!strcmp(a, "--secret"))
			G.secret = argv[++i];
		else if (!strcmp(a, "--port"))
			G.port = atoi(argv[++i]);
		else if (!strcmp(a, "--conns"))
			G.nconns = atoi(argv[++i]);
		else if (!strcmp(a, "--count"))
			G.count = atoi(argv[++i]);
		else if (!strcmp(a, "--src"))
			G.src = atoi(argv[++i]);
		else if (!strcmp(a, "--hold"))
			G.hold_s = atof(argv[++i]);
		else if (!strcmp(a, "--seed"))
			G.rng ^= strtoull(argv[++i], NULL, 10) * 0x2545f4914f6cdd1dull;
		else
			usage();
	}
	if (!ids || !G.secret)
		usage();
	load_ids(ids);
	signal(SIGPIPE, SIG_IGN);
	G.base = event_base_new();
	tick_clock();
	if (!strcmp(mode, "http")) {
		if (G.nconns < 0)
			G.nconns = 32;
		if (G.count < 0 || G.count > G.nids)
			G.count = G.nids;
		if (G.nconns > G.count)
			G.nconns = G.count;
		G.conns = calloc((size_t)G.nconns, sizeof *G.conns);
		run_http();
		return G.http_failed ? 1 : 0;
	}
	if (strcmp(mode, "ws") != 0)
		usage();
	if (G.nconns < 0 || G.nconns > G.nids)
		G.nconns = G.nids;
	G.conns = calloc((size_t)G.nconns, sizeof *G.conns);
	struct event *sigterm = evsignal_new(G.base, SIGTERM, on_stop, NULL);
	struct event *sigint = evsignal_new(G.base, SIGINT, on_stop, NULL);
	event_add(sigterm, NULL);
	event_add(sigint, NULL);
	if (G.hold_s > 0) {
		struct timeval tv = { (time_t)G.hold_s, (suseconds_t)((G.hold_s - (double)(time_t)G.hold_s) * 1e6) };
		event_base_once(G.base, -1, EV_TIMEOUT, on_stop, NULL, &tv);
	}
	start_next();
	event_base_dispatch(G.base);
	printf("up=%d failed=%d closed=%d sent=%llu received=%llu rejected=%llu pongs=%llu\n", G.up, G.failed, G.closed,
	       (unsigned long long)G.sent, (unsigned long long)G.received, (unsigned long long)G.rejected,
	       (unsigned long long)G.pongs);
	return 0;
}
