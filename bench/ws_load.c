/* ws_load: a load generator for the driver side of ridehaild, on libevent.
 *
 *   ws_load ws --ids FILE --secret S [--port 8080] [--conns N] [--src K]
 *              [--available] [--seed-ping] [--stream] [--every MS] [--hold SECONDS]
 *       N authenticated driver WebSockets (the first N ids of FILE, one UUID a
 *       line; tokens are signed here with the daemon's jwt secret). Each may
 *       go available, send one location in the bench city, and/or stream
 *       location updates as fast as the socket drains (fire and forget, the
 *       way apps pipeline them), or (--every MS) each send one every MS
 *       milliseconds, spread evenly, the way moving cars report. Connections come from K loopback source
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
	int every_ms; /* > 0: each connection pings once per every_ms, once all are up */
	int every_next;
	struct event *every_tick;
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
	/* dispatch mode */
	bool dispatch;
	int ndrivers; /* conns [0, ndrivers) are drivers, the rest riders */
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
	/* dispatch mode */
	bool rider;
	bool available_acked; /* the daemon answered its driver.status.changed */
	double last_ping_ms;  /* monotonic time of the last ping sent */
};

static void dispatch_ready(void);
static void maybe_start(void);
static void dispatch_text(struct conn *c, const char *text, size_t len);

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

/* A masked client frame (FIN set) to c. Outside the stream mode (which
 * refills from the bufferevent's write callback) a frame goes straight to
 * the socket when nothing is queued before it: through the bufferevent
 * each frame cost two epoll_ctl calls and a loop turn, and with 17,000
 * sockets the generator, not the daemon, set the tracking latency. What
 * the socket does not take is queued behind, in order. */
static void add_frame(struct conn *c, int opcode, const char *payload, size_t len)
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
	memcpy(buf + h, &c->mask, 4);
	h += 4;
	const uint8_t *m = (const uint8_t *)&c->mask;
	for (size_t i = 0; i < len; i++)
		buf[h + i] = (uint8_t)payload[i] ^ m[i & 3];
	size_t n = h + len, done = 0;
	struct evbuffer *out = bufferevent_get_output(c->bev);
	if (!G.stream && evbuffer_get_length(out) == 0) {
		ssize_t w = send(bufferevent_getfd(c->bev), buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w > 0)
			done = (size_t)w;
		if (done == n)
			return;
	}
	/* the rest (or an error, which the bufferevent's own write reports) */
	evbuffer_add(out, buf + done, n - done);
}

static void add_text(struct conn *c, const char *text)
{
	add_frame(c, 0x1, text, strlen(text));
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
	add_frame(c, 0x1, t, c->tmpl_len);
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
	if (G.dispatch)
		dispatch_ready();
	/* Stream only once every socket is up: the figure is the steady state,
	 * not logins competing with pings. */
	for (int i = 0; G.stream && i < G.nconns; i++) {
		struct conn *c = &G.conns[i];
		if (c->upgraded && !c->dead)
			on_write(c->bev, c);
	}
	if (G.every_ms > 0) {
		struct timeval tv = { 0, 2000 };
		event_add(G.every_tick, &tv);
	}
}

/* --every: every 2 ms, the connections whose turn it is ping once. */
static void every_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what, (void)arg;
	int n = G.nconns * 2 / G.every_ms + 1;
	tick_clock();
	for (int i = 0; i < n; i++) {
		struct conn *c = &G.conns[G.every_next];
		G.every_next = (G.every_next + 1) % G.nconns;
		if (c->upgraded && !c->dead)
			add_ping(c);
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
	if ((G.dispatch || G.every_ms > 0) && !c->rider) { /* a position first: available needs one */
		tick_clock();
		add_ping(c);
	}
	if (G.available && !c->rider) {
		snprintf(pl, sizeof pl, "{\"driver_id\":\"%s\",\"status\":\"available\"}", G.ids[c->idx]);
		envelope(msg, sizeof msg, c, "driver.status.changed", pl);
		add_text(c, msg);
	}
	if (G.seed_ping && !G.dispatch) {
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
			if (G.dispatch)
				dispatch_text(c, (const char *)frame + hl, len);
			if (len > 0 && memmem(frame + hl, len, "command.rejected", 16)) {
				if (G.rejected < 3)
					fprintf(stderr, "rejected: %.*s\n", (int)(len < 400 ? len : 400), frame + hl);
				G.rejected++;
			}
		} else if (op == 0x9 && len <= 125) {
			add_frame(c, 0xA, (const char *)frame + hl, len); /* pong */
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
		token_for(G.ids[c->idx], c->rider ? ROLE_RIDER : ROLE_DRIVER, tok, sizeof tok);
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

/* Where riders ask from (the dropoff is 0.02 degrees north of it, inside
 * the box), and, in dispatch mode, where drivers wait: the same area, or
 * the drivers outside it are the last ones free, out of reach of the last
 * requests, which then wait and hold the closed loop up. */
static void pickup_point(double *lat, double *lon)
{
	*lat = LAT0 + 0.01 + urand() * (SPAN - 0.04);
	*lon = LON0 + 0.01 + urand() * (SPAN - 0.02);
}

static void start_next(void)
{
	while (G.next < G.nconns && G.connecting < MAX_CONNECTING) {
		struct conn *c = &G.conns[G.next];
		c->idx = G.next++;
		c->rider = G.dispatch && c->idx >= G.ndrivers;
		c->mask = (uint32_t)rnd() | 1;
		if (G.dispatch) {
			pickup_point(&c->lat, &c->lon);
		} else {
			c->lat = LAT0 + 0.001 + urand() * (SPAN - 0.002);
			c->lon = LON0 + 0.001 + urand() * (SPAN - 0.002);
		}
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

/* ------------------------------------------------------------ dispatch mode
 *
 * Drivers (the first --conns ids) go available at a random point and accept
 * every ride.offer; riders (--riders FILE) book over HTTP keep-alive
 * connections, each rider once. Phases:
 *   book   closed loop, --inflight bookings between POST and trip.assigned;
 *          stops after --count bookings: book_per_s from the first POST to
 *          the last trip.assigned.
 *   offer  open loop at --rate POSTs per second for --seconds: the time from
 *          sending the POST to the ride.offer frame on the driver's socket.
 *   track  --conns driver/rider pairs: riders hold a socket too, every rider
 *          books, then each driver pings once a second for --seconds: the time
 *          from a ping to driver.location at its rider's socket.
 *   cycle  whole trips (make soak): each driver, once assigned, sends
 *          trip.arrived, trip.started and trip.completed, each on the last
 *          one's acknowledgement, and is free again; riders book again in
 *          turn. Open loop at --rate POSTs per second for --seconds; every
 *          --interval seconds a line "cycle t=... posted=... assigned=...
 *          completed=... errors=... p50_ms=... p99_ms=..." (POST ->
 *          trip.assigned in that interval), and totals at the end. With
 *          --rate 0, a closed loop of --inflight whole trips until --count
 *          are completed: cycle_per_s, the capacity for whole trips. */

#define TRIPS_CAP (1u << 17)

struct samples {
	double *v;
	size_t n, cap;
};

struct trip_slot {
	char id[37];
	double t_send, t_offer; /* ms, monotonic; 0 = not seen yet */
	double t_created;       /* ms, monotonic: the POST's 201 */
	double t_assigned;      /* ms, monotonic: trip.assigned (cycle) */
	int driver;
};

struct hconn {
	struct bufferevent *bev;
	bool busy;
	double t_send;
};

static struct {
	const char *phase;
	int inflight, count, hconns;
	double rate, seconds;
	struct trip_slot *trips;
	struct hconn *h;
	int next_rider, nriders, outstanding, posted, assigned, offers, http_errors, matched_msgs;
	/* cycle phase */
	double interval, t_next_report, t_last_done;
	int completed, iv_posted, iv_assigned, iv_completed, iv_errors, reported_rejected;
	bool cycle;
	double t0, t_last_assigned, t_ping0;
	struct samples lat;     /* the phase's latency samples, ms */
	struct samples created; /* offer phase: POST -> 201, ms */
	struct samples lat_at;  /* track phase: when each lat sample came (WS_LOAD_TRACE) */
	struct event *tick;
	uint64_t ticks;
	int ping_next;
	bool pinging, done;
	bool trace; /* WS_LOAD_TRACE is set: lat_at is kept */
	int available_acks;  /* drivers whose going available was answered */
	/* book phase, where the time goes (means, ms): POST -> 201, POST ->
	 * ride.offer, ride.offer -> trip.assigned */
	double sum_created, sum_offered, sum_assigned;
	int n_created, n_offered, n_assigned;
	bool all_up, started;
} D;

static double mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static uint32_t trip_home(const char *id)
{
	uint64_t h = 1469598103934665603ull;
	for (int i = 0; i < 36; i++)
		h = (h ^ (uint8_t)id[i]) * 1099511628211ull;
	return (uint32_t)h & (TRIPS_CAP - 1);
}

/* A trip done with (the cycle phase runs hundreds of thousands through the
 * table): linear probing's backward shift keeps every other one findable. */
static void trip_slot_del(struct trip_slot *t)
{
	uint32_t mask = TRIPS_CAP - 1, i = (uint32_t)(t - D.trips), j = i;
	for (;;) {
		j = (j + 1) & mask;
		if (!D.trips[j].id[0])
			break;
		uint32_t k = trip_home(D.trips[j].id);
		if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
			continue; /* its home is between: it stays */
		D.trips[i] = D.trips[j];
		i = j;
	}
	memset(&D.trips[i], 0, sizeof D.trips[i]);
}

static struct trip_slot *trip_slot(const char *id)
{
	for (uint32_t i = trip_home(id);; i = (i + 1) & (TRIPS_CAP - 1)) {
		struct trip_slot *t = &D.trips[i];
		if (!t->id[0]) {
			memcpy(t->id, id, 36);
			t->driver = -1;
			return t;
		}
		if (memcmp(t->id, id, 36) == 0)
			return t;
	}
}

static void sample_to(struct samples *l, double ms)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 4096;
		l->v = realloc(l->v, l->cap * sizeof *l->v);
	}
	l->v[l->n++] = ms;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void print_samples(const char *name, struct samples *l)
{
	qsort(l->v, l->n, sizeof *l->v, cmp_double);
	printf("%s_samples=%zu\n", name, l->n);
	if (l->n == 0)
		return;
	printf("%s_p50_ms=%.2f\n%s_p99_ms=%.2f\n%s_max_ms=%.2f\n", name, l->v[l->n / 2], name,
	       l->v[(size_t)((double)l->n * 0.99)], name, l->v[l->n - 1]);
}

/* The 36 characters after "key":" in text, or false. */
static bool field36(const char *text, size_t len, const char *key, char out[37])
{
	char pat[48];
	int n = snprintf(pat, sizeof pat, "\"%s\":\"", key);
	const char *p = memmem(text, len, pat, (size_t)n);
	if (!p || (size_t)(p - text) + (size_t)n + 36 > len)
		return false;
	memcpy(out, p + n, 36);
	out[36] = '\0';
	return true;
}

static void post_ride(struct hconn *hc)
{
	if (D.cycle)
		D.next_rider %= D.nriders; /* riders book again in turn */
	const char *rider = G.ids[G.ndrivers + D.next_rider++];
	char tok[JWT_MAX_LEN], body[256], req[2048];
	token_for(rider, ROLE_RIDER, tok, sizeof tok);
	double lat, lng;
	pickup_point(&lat, &lng);
	int bl = snprintf(body, sizeof body,
			  "{\"pickup\":{\"lat\":%.6f,\"lng\":%.6f},\"dropoff\":{\"lat\":%.6f,\"lng\":%.6f}}", lat, lng,
			  lat + 0.02, lng);
	int n = snprintf(req, sizeof req,
			 "POST /v1/rides HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
			 "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
			 tok, bl, body);
	hc->busy = true;
	hc->t_send = mono_ms();
	if (D.posted == 0)
		D.t0 = hc->t_send;
	D.posted++;
	D.iv_posted++;
	D.outstanding++;
	bufferevent_write(hc->bev, req, (size_t)n);
}

static struct hconn *idle_hconn(void)
{
	for (int i = 0; i < D.hconns; i++)
		if (!D.h[i].busy && D.h[i].bev)
			return &D.h[i];
	return NULL;
}

/* The closed loop of the book and track phases. */
static void pump(void)
{
	if (strcmp(D.phase, "offer") == 0 || D.cycle || D.done || !D.h)
		return;
	int limit = strcmp(D.phase, "book") == 0 ? D.count : D.nriders;
	while (D.outstanding < D.inflight && D.posted < limit && D.next_rider < D.nriders) {
		struct hconn *hc = idle_hconn();
		if (!hc)
			return;
		post_ride(hc);
	}
}

/* WS_LOAD_TRACE=prefix: <prefix>.<phase> gets one line per sample, to see
 * where the slow ones fall in the run (a stall, a steady queue). offer:
 * "sent created offered" per trip, ms from the phase's start (-1: not
 * seen); track: "at latency" per driver.location, ms. */
static FILE *trace_file(void)
{
	const char *prefix = getenv("WS_LOAD_TRACE");
	char path[512];
	if (!prefix)
		return NULL;
	snprintf(path, sizeof path, "%s.%s", prefix, D.phase);
	return fopen(path, "w");
}

static void trace_trips(void)
{
	FILE *f = trace_file();
	if (!f)
		return;
	for (uint32_t i = 0; i < TRIPS_CAP; i++) {
		const struct trip_slot *t = &D.trips[i];
		if (t->id[0] && t->t_send > 0)
			fprintf(f, "%.3f %.3f %.3f\n", t->t_send - D.t0, t->t_created > 0 ? t->t_created - D.t0 : -1,
			        t->t_offer > 0 ? t->t_offer - D.t0 : -1);
	}
	fclose(f);
}

static void finish(void)
{
	if (D.done)
		return;
	D.done = true;
	printf("posted=%d assigned=%d offers=%d http_errors=%d rejected=%llu\n", D.posted, D.assigned, D.offers,
	       D.http_errors, (unsigned long long)G.rejected);
	if (strcmp(D.phase, "book") == 0) {
		double s = (D.t_last_assigned - D.t0) / 1e3;
		printf("book_elapsed_s=%.3f\nbook_per_s=%.0f\nbook_unassigned=%d\n", s, s > 0 ? D.assigned / s : 0,
		       D.posted - D.http_errors - D.assigned);
		printf("book_created_ms=%.2f\nbook_offered_ms=%.2f\nbook_assigned_ms=%.2f\n",
		       D.n_created ? D.sum_created / D.n_created : 0, D.n_offered ? D.sum_offered / D.n_offered : 0,
		       D.n_assigned ? D.sum_assigned / D.n_assigned : 0);
	} else if (D.cycle) {
		printf("cycle_posted=%d\ncycle_assigned=%d\ncycle_completed=%d\ncycle_http_errors=%d\ncycle_rejected=%llu\n"
		       "cycle_unfinished=%d\n",
		       D.posted, D.assigned, D.completed, D.http_errors, (unsigned long long)G.rejected,
		       D.posted - D.http_errors - D.completed);
		if (D.rate <= 0) {
			double s = (D.t_last_done - D.t0) / 1e3;
			printf("cycle_per_s=%.0f\n", s > 0 ? D.completed / s : 0);
		}
	} else if (strcmp(D.phase, "offer") == 0) {
		printf("offer_rate=%.0f\n", D.posted / D.seconds);
		print_samples("offer", &D.lat);
		print_samples("offer_created", &D.created);
		trace_trips();
	} else {
		printf("track_pairs=%d\ntrack_matched_msgs=%d\n", D.assigned, D.matched_msgs);
		FILE *f = trace_file();
		for (size_t i = 0; f && i < D.lat_at.n; i++)
			fprintf(f, "%.3f %.3f\n", D.lat_at.v[i], D.lat.v[i]);
		if (f)
			fclose(f);
		print_samples("track", &D.lat);
	}
	fflush(stdout);
	event_base_loopbreak(G.base);
}

static void http_reply(struct bufferevent *bev, void *arg)
{
	struct hconn *hc = arg;
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
		char *all = (char *)evbuffer_pullup(in, (ev_ssize_t)(hl + blen));
		hc->busy = false;
		char id[37];
		const char *q = memmem(all + hl, blen, "\"id\"", 4);
		const char *v = q ? memchr(q + 4, '"', blen - (size_t)(q + 4 - (all + hl))) : NULL;
		if (strncmp(all, "HTTP/1.1 201", 12) == 0 && v && (size_t)(v + 37 - (all + hl)) <= blen) {
			memcpy(id, v + 1, 36);
			id[36] = '\0';
			struct trip_slot *t = trip_slot(id);
			t->t_send = hc->t_send;
			t->t_created = mono_ms();
			double created = t->t_created - hc->t_send;
			D.sum_created += created;
			D.n_created++;
			if (strcmp(D.phase, "offer") == 0)
				sample_to(&D.created, created);
			if (t->t_offer > 0) { /* the offer came before the 201 */
				D.sum_offered += t->t_offer - t->t_send;
				D.n_offered++;
			}
			if (t->t_offer > 0 && strcmp(D.phase, "offer") == 0)
				sample_to(&D.lat, t->t_offer - t->t_send);
			if (D.cycle && t->t_assigned > 0) /* (assigned before the 201 came) */
				sample_to(&D.lat, t->t_assigned - t->t_send);
		} else {
			D.iv_errors++;
			if (D.http_errors++ < 3)
				fprintf(stderr, "POST /v1/rides: %.*s\n", (int)(hl + blen < 600 ? hl + blen : 600), all);
			D.outstanding--;
		}
		evbuffer_drain(in, hl + blen);
		pump();
	}
}

static void http_connect(struct hconn *hc, int i);

/* The daemon may close a keep-alive connection (max_requests_per_conn, an
 * error): the request in flight counts as failed, and a new one replaces it. */
static void http_conn_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	struct hconn *hc = arg;
	if (what & BEV_EVENT_CONNECTED)
		return;
	if (hc->busy) {
		D.http_errors++;
		D.outstanding--;
	}
	bufferevent_free(hc->bev);
	hc->bev = NULL;
	http_connect(hc, (int)(hc - D.h));
	pump();
}

static void http_connect(struct hconn *hc, int i)
{
	hc->busy = false;
	int s = open_socket(i);
	if (s < 0)
		fail("socket");
	hc->bev = bufferevent_socket_new(G.base, s, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(hc->bev, http_reply, NULL, http_conn_event, hc);
	bufferevent_enable(hc->bev, EV_READ | EV_WRITE);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)G.port) };
	sa.sin_addr.s_addr = htonl(0x7f000001u);
	if (bufferevent_socket_connect(hc->bev, (struct sockaddr *)&sa, sizeof sa) != 0)
		fail("connect");
}

/* The next step of a trip, from its driver (cycle phase). */
static void cycle_command(struct conn *c, const char *trip, const char *type)
{
	char pl[160], msg[768];
	snprintf(pl, sizeof pl, "{\"trip_id\":\"%s\",\"command_id\":\"%08x-2222-4000-8000-%012llx\"}", trip,
		 (unsigned)c->idx, (unsigned long long)rnd() & 0xffffffffffffull);
	envelope(msg, sizeof msg, c, type, pl);
	add_text(c, msg);
}

/* Every --interval: what the last one saw (cycle phase). */
static void cycle_report(double now)
{
	qsort(D.lat.v, D.lat.n, sizeof *D.lat.v, cmp_double);
	printf("cycle t=%.0f posted=%d assigned=%d completed=%d errors=%d rejected=%llu p50_ms=%.2f p99_ms=%.2f\n",
	       (now - D.t0) / 1e3, D.iv_posted, D.iv_assigned, D.iv_completed, D.iv_errors,
	       (unsigned long long)G.rejected - (unsigned long long)D.reported_rejected,
	       D.lat.n ? D.lat.v[D.lat.n / 2] : 0, D.lat.n ? D.lat.v[(size_t)((double)D.lat.n * 0.99)] : 0);
	fflush(stdout);
	D.reported_rejected = (int)G.rejected;
	D.iv_posted = D.iv_assigned = D.iv_completed = D.iv_errors = 0;
	D.lat.n = 0;
}

static void dispatch_text(struct conn *c, const char *text, size_t len)
{
	char tid[37], oid[37], msg[768], pl[128];
	double now = mono_ms();
	if (!c->rider && memmem(text, len, "\"ride.offer\"", 12)) {
		if (!field36(text, len, "trip_id", tid) || !field36(text, len, "offer_id", oid))
			return;
		D.offers++;
		struct trip_slot *t = trip_slot(tid);
		if (t->t_offer == 0) {
			t->t_offer = now;
			if (t->t_send > 0) {
				D.sum_offered += now - t->t_send;
				D.n_offered++;
			}
			if (t->t_send > 0 && strcmp(D.phase, "offer") == 0)
				sample_to(&D.lat, now - t->t_send);
		}
		snprintf(pl, sizeof pl, "{\"offer_id\":\"%s\"}", oid);
		envelope(msg, sizeof msg, c, "offer.accept", pl);
		add_text(c, msg);
	} else if (!c->rider && !c->available_acked && memmem(text, len, "\"driver.status.changed\"", 23)) {
		c->available_acked = true;
		D.available_acks++;
		maybe_start();
	} else if (!c->rider && memmem(text, len, "\"trip.assigned\"", 15)) {
		if (!field36(text, len, "trip_id", tid) || !D.h)
			return; /* not before the phase: a trip left over from an earlier run */
		struct trip_slot *t = trip_slot(tid);
		t->driver = c->idx;
		if (t->t_offer > 0) {
			D.sum_assigned += now - t->t_offer;
			D.n_assigned++;
		}
		D.assigned++;
		D.outstanding--;
		D.t_last_assigned = now;
		if (D.cycle) {
			t->t_assigned = now;
			if (t->t_send > 0)
				sample_to(&D.lat, now - t->t_send);
			D.iv_assigned++;
			cycle_command(c, tid, "trip.arrived");
			return;
		}
		if (strcmp(D.phase, "book") == 0 && D.assigned >= D.count)
			finish();
		pump();
	} else if (D.cycle && !c->rider && memmem(text, len, "\"command.acknowledged\"", 22)) {
		if (!field36(text, len, "trip_id", tid))
			return;
		if (memmem(text, len, "\"state\":\"ARRIVED\"", 17)) {
			cycle_command(c, tid, "trip.started");
		} else if (memmem(text, len, "\"state\":\"IN_PROGRESS\"", 21)) {
			cycle_command(c, tid, "trip.completed");
		} else if (memmem(text, len, "\"state\":\"COMPLETED\"", 19)) {
			D.completed++;
			D.t_last_done = now;
			D.iv_completed++;
			trip_slot_del(trip_slot(tid));
		}
	} else if (c->rider && memmem(text, len, "\"trip.matched\"", 14)) {
		D.matched_msgs++;
	} else if (c->rider && D.pinging && memmem(text, len, "\"driver.location\"", 17)) {
		if (!field36(text, len, "trip_id", tid))
			return;
		struct trip_slot *t = trip_slot(tid);
		if (t->driver >= 0 && G.conns[t->driver].last_ping_ms > 0) {
			sample_to(&D.lat, now - G.conns[t->driver].last_ping_ms);
			if (D.trace)
				sample_to(&D.lat_at, now - D.t0);
		}
	}
}

/* Drivers that wait for an offer still ping, as apps do (every 10 s, well
 * inside presence.stale_after), or they stop being candidates. */
static void keep_fresh(void)
{
	int n = G.ndrivers / 5000 + 1; /* per 2 ms tick */
	tick_clock();
	for (int i = 0; i < n; i++) {
		struct conn *c = &G.conns[D.ping_next];
		D.ping_next = (D.ping_next + 1) % G.ndrivers;
		if (c->upgraded && !c->dead)
			add_ping(c);
	}
}

/* Every 2 ms: the open loop's POSTs that are due, or a slice of the pings. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	double now = mono_ms();
	if (!D.pinging)
		keep_fresh();
	if (!D.h)
		return; /* still connecting */
	if (strcmp(D.phase, "book") == 0) {
		/* WS_LOAD_TIMELINE=1: progress every 100 ms on stderr (where a
		 * run slowed down, or stalled) */
		static double last_tl;
		static int timeline = -1;
		if (timeline < 0)
			timeline = getenv("WS_LOAD_TIMELINE") != NULL;
		if (timeline && now - last_tl >= 100) {
			last_tl = now;
			fprintf(stderr, "t=%.0f posted=%d assigned=%d offers=%d outstanding=%d\n", now - D.t0, D.posted, D.assigned, D.offers, D.outstanding);
		}
		/* a trip left waiting must not hold the figure up */
		if (D.t_last_assigned > 0 && now - D.t_last_assigned > 3000)
			finish();
		return;
	}
	if (D.cycle && D.rate <= 0) { /* closed loop: the capacity */
		int open = D.posted - D.completed - D.http_errors;
		if (D.completed + D.http_errors >= D.count || (D.t_last_done > 0 && now - D.t_last_done > 5000)) {
			finish();
			return;
		}
		while (open++ < D.inflight && D.posted < D.count) {
			struct hconn *hc = idle_hconn();
			if (!hc)
				break;
			post_ride(hc);
		}
		return;
	}
	if (D.cycle) {
		double el = now - D.t0;
		if (D.posted > 0 && now >= D.t_next_report) {
			cycle_report(now);
			D.t_next_report += D.interval * 1e3;
		}
		if (D.posted > 0 && el >= D.seconds * 1e3) {
			/* the last trips finish (or 10 s pass) */
			if (D.completed >= D.posted - D.http_errors || el >= D.seconds * 1e3 + 10000)
				finish();
			return;
		}
		int due = D.posted == 0 ? 1 : (int)(el * D.rate / 1e3) + 1 - D.posted;
		while (due-- > 0) {
			struct hconn *hc = idle_hconn();
			if (!hc)
				break;
			post_ride(hc);
		}
		if (D.posted == 1)
			D.t_next_report = D.t0 + D.interval * 1e3;
		return;
	}
	if (strcmp(D.phase, "offer") == 0) {
		double el = now - D.t0;
		if (D.posted > 0 && el >= D.seconds * 1e3) {
			if (el >= D.seconds * 1e3 + 2000)
				finish();
			return;
		}
		int due = D.posted == 0 ? 1 : (int)(el * D.rate / 1e3) + 1 - D.posted;
		while (due-- > 0 && D.next_rider < D.nriders) {
			struct hconn *hc = idle_hconn();
			if (!hc)
				break;
			post_ride(hc);
		}
		return;
	}
	if (strcmp(D.phase, "track") != 0)
		return;
	if (!D.pinging) {
		/* every rider booked, or no booking for 3 s (a trip left waiting
		 * must not hold the figure up), then a second for the trip.matched
		 * frames to land */
		if (D.t_last_assigned == 0 || now - D.t_last_assigned < 1000 ||
		    ((D.assigned < D.nriders) && now - D.t_last_assigned < 3000))
			return;
		D.pinging = true;
		D.t_ping0 = now;
		printf("booked=%d pinging\n", D.assigned);
		fflush(stdout);
	}
	if (now - D.t_ping0 >= D.seconds * 1e3) {
		if (now - D.t_ping0 >= D.seconds * 1e3 + 1000)
			finish();
		return;
	}
	/* each driver once a second: 1/500 of them per 2 ms tick */
	int n = G.ndrivers / 500 + 1;
	tick_clock();
	for (int i = 0; i < n; i++) {
		struct conn *c = &G.conns[D.ping_next];
		D.ping_next = (D.ping_next + 1) % G.ndrivers;
		if (!c->upgraded || c->dead)
			continue;
		add_ping(c);
		c->last_ping_ms = mono_ms();
	}
}

static void start_phase(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	D.h = calloc((size_t)D.hconns, sizeof *D.h);
	for (int i = 0; i < D.hconns; i++)
		http_connect(&D.h[i], i);
	pump();
}

/* The phase starts once every driver's going available has been answered
 * (the figures are the steady state, not logins competing with bookings),
 * half a second later for the seed pings; or after 60 s whatever the count,
 * said on stderr. */
static void start_soon(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (D.started)
		return;
	if (D.available_acks < G.ndrivers)
		fprintf(stderr, "ws_load: starting with %d of %d drivers available\n", D.available_acks, G.ndrivers);
	D.started = true;
	struct timeval tv = { 0, 500000 };
	event_base_once(G.base, -1, EV_TIMEOUT, start_phase, NULL, &tv);
}

static void maybe_start(void)
{
	if (D.all_up && !D.started && D.available_acks >= G.ndrivers)
		start_soon(-1, 0, NULL);
}

static void dispatch_ready(void)
{
	D.all_up = true;
	struct timeval tv = { 60, 0 };
	event_base_once(G.base, -1, EV_TIMEOUT, start_soon, NULL, &tv);
	maybe_start();
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
	int cap = G.nids > 1024 ? G.nids : 1024; /* appends to what is loaded */
	G.ids = realloc(G.ids, (size_t)cap * sizeof *G.ids);
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
			"               [--available] [--seed-ping] [--stream] [--every MS] [--hold SECONDS] [--seed N]\n"
			"       ws_load dispatch --ids DRIVERS --riders RIDERS --secret S --conns N --phase book|offer|track|cycle\n"
			"               [--inflight 64] [--count 5000] [--rate 500] [--seconds 5] [--hconns 32] [--interval 60]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	if (argc < 2)
		usage();
	const char *mode = argv[1], *ids = NULL, *riders = NULL;
	D.phase = "book";
	D.trace = getenv("WS_LOAD_TRACE") != NULL;
	D.inflight = 64;
	D.count = 5000;
	D.hconns = 32;
	D.rate = 500;
	D.seconds = 5;
	D.interval = 60;
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
		else if (!strcmp(a, "--every"))
			G.every_ms = atoi(argv[++i]);
		else if (!strcmp(a, "--hold"))
			G.hold_s = atof(argv[++i]);
		else if (!strcmp(a, "--riders"))
			riders = argv[++i];
		else if (!strcmp(a, "--phase"))
			D.phase = argv[++i];
		else if (!strcmp(a, "--inflight"))
			D.inflight = atoi(argv[++i]);
		else if (!strcmp(a, "--rate"))
			D.rate = atof(argv[++i]);
		else if (!strcmp(a, "--seconds"))
			D.seconds = atof(argv[++i]);
		else if (!strcmp(a, "--hconns"))
			D.hconns = atoi(argv[++i]);
		else if (!strcmp(a, "--interval"))
			D.interval = atof(argv[++i]);
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
	if (!strcmp(mode, "dispatch")) {
		if (!riders || G.nconns <= 0 || G.nconns > G.nids)
			usage();
		G.dispatch = true;
		G.available = true;
		G.seed_ping = true;
		G.ndrivers = G.nids = G.nconns;
		load_ids(riders);
		D.nriders = G.nids - G.ndrivers;
		if (G.count > 0)
			D.count = G.count;
		bool track = !strcmp(D.phase, "track");
		if (track) {
			if (D.nriders < G.ndrivers) {
				fprintf(stderr, "track: need as many riders as drivers\n");
				return 2;
			}
			D.nriders = G.ndrivers;
			G.nconns = 2 * G.ndrivers;
		} else if (strcmp(D.phase, "book") && strcmp(D.phase, "offer") && strcmp(D.phase, "cycle")) {
			usage();
		}
		D.cycle = !strcmp(D.phase, "cycle");
		D.trips = calloc(TRIPS_CAP, sizeof *D.trips);
		G.conns = calloc((size_t)G.nconns, sizeof *G.conns);
		struct event *sig = evsignal_new(G.base, SIGTERM, on_stop, NULL);
		event_add(sig, NULL);
		/* from the first connection on: the pings that keep drivers fresh */
		D.tick = event_new(G.base, -1, EV_PERSIST, on_tick, NULL);
		struct timeval tv = { 0, 2000 };
		event_add(D.tick, &tv);
		start_next();
		event_base_dispatch(G.base);
		if (!D.done)
			finish();
		return 0;
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
	if (G.every_ms > 0)
		G.every_tick = event_new(G.base, -1, EV_PERSIST, every_tick, NULL);
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
