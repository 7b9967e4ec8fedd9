#include "net/stream.h"

#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/alloc.h"

#define STREAM_READ_BITE (64u * 1024) /* bytes read per wake-up at most */
#define STREAM_ROOM_MIN 1024u           /* free room a held input buffer grows to */

static void stream_destroy(struct stream *s)
{
	if (s->rev)
		event_free(s->rev);
	if (s->wev)
		event_free(s->wev);
	if (s->fd >= 0)
		close(s->fd);
	if (s->counts)
		conn_counts_release(s->counts, s->has_addr ? &s->addr : NULL);
	rh_free(s->in);
	rh_free(s->out);
	rh_free(s);
}

void stream_free(struct stream *s)
{
	if (!s)
		return;
	if (s->in_cb) {
		/* inside one of our callbacks: stop everything now, free on return */
		s->dead = true;
		event_del(s->rev);
		event_del(s->wev);
		return;
	}
	stream_destroy(s);
}

/* EOF (err 0): reading stops, writing may go on (a client that half-closes
 * still gets its reply). An error: nothing more can be sent either. */
static void stream_report_close(struct stream *s, int err)
{
	if (s->closed || (s->eof && err == 0))
		return;
	s->eof = true;
	event_del(s->rev);
	s->reading = false;
	if (err) {
		s->closed = true;
		event_del(s->wev);
	}
	s->ops->on_close(s, s->arg, err);
}

/* Keeps whatever the owner left unconsumed in the stream's own buffer. */
static void stream_keep_leftover(struct stream *s)
{
	if (s->view_len == 0) {
		s->in_len = 0;
		if (s->in && s->in_cap > 4096) { /* give big buffers back when idle */
			rh_free(s->in);
			s->in = NULL;
			s->in_cap = 0;
		}
		s->view = s->in;
		return;
	}
	if (s->in && s->view >= s->in && s->view < s->in + s->in_cap) {
		/* already in our buffer: move it to the front */
		memmove(s->in, s->view, s->view_len);
	} else {
		if (s->view_len > s->in_cap) {
			s->in = rh_realloc(s->in, s->view_len);
			s->in_cap = s->view_len;
		}
		memcpy(s->in, s->view, s->view_len);
	}
	s->in_len = s->view_len;
	s->view = s->in;
}

static void stream_update_reading(struct stream *s)
{
	bool want = !s->paused && !s->eof && !s->dead && s->in_len < s->in_max;
	if (want && !s->reading)
		event_add(s->rev, NULL);
	else if (!want && s->reading)
		event_del(s->rev);
	s->reading = want;
}

static void stream_run_on_read(struct stream *s)
{
	s->in_cb = true;
	s->ops->on_read(s, s->arg);
	s->in_cb = false;
}

/* Where the next read goes: the shared scratch buffer when nothing is held,
 * else after what is held (the stream's own buffer, grown if need be).
 * Returns the room there. */
static size_t stream_read_room(struct stream *s, char **dst)
{
	if (s->in_len == 0) {
		*dst = s->scratch->buf;
		return s->scratch->size < s->in_max ? s->scratch->size : s->in_max;
	}
	/* Grow only when the room left is small, and then by what is held
	 * (doubling, for a large body) or a kilobyte: a partial head
	 * trickled in byte by byte holds about what was sent, not the most
	 * a request may take (a few bytes grew it to 136 KiB before). */
	if (s->in_cap - s->in_len < STREAM_ROOM_MIN && s->in_cap < s->in_max) {
		size_t cap = s->in_cap * 2 > s->in_len + STREAM_ROOM_MIN ? s->in_cap * 2 : s->in_len + STREAM_ROOM_MIN;
		if (cap > s->in_max)
			cap = s->in_max;
		s->in = rh_realloc(s->in, cap);
		s->in_cap = cap;
	}
	*dst = s->in + s->in_len;
	return s->in_cap - s->in_len;
}

/* The read saw the end of the stream (err 0) or an error. */
static void stream_read_ended(struct stream *s, int err)
{
	s->in_cb = true;
	stream_report_close(s, err);
	s->in_cb = false;
	if (s->dead)
		stream_destroy(s);
}

/* Hands the n bytes just read, after what was held, to the owner; keeps
 * what it leaves. Returns false if the stream is gone. */
static bool stream_read_deliver(struct stream *s, size_t n)
{
	if (s->in_len == 0) {
		s->view = s->scratch->buf;
		s->view_len = n;
	} else {
		s->in_len += n;
		s->view = s->in;
		s->view_len = s->in_len;
	}
	stream_run_on_read(s);
	/* A new owner took the stream over inside the callback (stream_set_ops):
	 * it gets the bytes that came with the hand-over at once. */
	while (!s->dead && s->rerun && s->view_len > 0) {
		s->rerun = false;
		stream_run_on_read(s);
	}
	s->rerun = false;
	if (s->dead) {
		stream_destroy(s);
		return false;
	}
	stream_keep_leftover(s);
	stream_update_reading(s);
	return true;
}

static void stream_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct stream *s = arg;
	char *dst;
	size_t room = stream_read_room(s, &dst);
	if (room == 0) {
		stream_update_reading(s);
		return;
	}
	/* One bounded bite per wake-up: a client streaming flat out must not
	 * hold the loop while others (and the database) wait. */
	if (room > STREAM_READ_BITE)
		room = STREAM_READ_BITE;
	ssize_t n = read(s->fd, dst, room);
	if (n < 0) {
		if (errno == EINTR)
			event_active(s->rev, EV_READ, 1); /* edge-triggered: no new edge will come */
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		stream_read_ended(s, errno);
		return;
	}
	if (n == 0) {
		stream_read_ended(s, 0);
		return;
	}
	if (!stream_read_deliver(s, (size_t)n))
		return;
	/* The watch is edge-triggered (a level-triggered epoll polls every
	 * ready socket twice per read: a third of the loop's time with 10k busy
	 * sockets). A full bite may have left bytes behind, which no new edge
	 * announces: come back on a later turn, after the others (the loop runs
	 * at most 64 callbacks between polls). */
	if ((size_t)n == room && s->reading)
		event_active(s->rev, EV_READ, 1);
	/* The peer's FIN came with this data (EV_CLOSED: EPOLLRDHUP): no new
	 * edge will announce it, and a short read does not show it. Read once
	 * more to see the end of the stream, or a client that sent its
	 * request and closed would hold its connection until a timeout. */
	else if ((what & EV_CLOSED) && s->reading)
		event_active(s->rev, EV_READ | EV_CLOSED, 1);
}

void stream_replay(struct stream *s)
{
	if (s->closed || s->dead || s->view_len == 0)
		return;
	s->view = s->in;
	s->view_len = s->in_len;
	bool nested = s->in_cb;
	stream_run_on_read(s);
	s->in_cb = nested;
	if (s->dead && !nested) {
		stream_destroy(s);
		return;
	}
	if (!nested) {
		stream_keep_leftover(s);
		stream_update_reading(s);
	}
}

void stream_consume(struct stream *s, size_t n)
{
	if (n > s->view_len)
		n = s->view_len;
	s->view += n;
	s->view_len -= n;
	if (!s->in_cb) {
		stream_keep_leftover(s);
		stream_update_reading(s);
	}
}

void stream_pause(struct stream *s)
{
	s->paused = true;
	stream_update_reading(s);
}

void stream_resume(struct stream *s)
{
	s->paused = false;
	stream_update_reading(s);
}

static void stream_write_pending(struct stream *s)
{
	while (s->out_off < s->out_len) {
		ssize_t n = write(s->fd, s->out + s->out_off, s->out_len - s->out_off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				event_add(s->wev, NULL);
				return;
			}
			s->in_cb = true;
			stream_report_close(s, errno);
			s->in_cb = false;
			return;
		}
		s->out_off += (size_t)n;
	}
	/* drained */
	rh_free(s->out);
	s->out = NULL;
	s->out_off = s->out_len = s->out_cap = 0;
	event_del(s->wev);
	if (s->want_shut && !s->shut_wr) {
		shutdown(s->fd, SHUT_WR);
		s->shut_wr = true;
	}
}

static void stream_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct stream *s = arg;
	stream_write_pending(s);
	if (s->dead) {
		stream_destroy(s);
		return;
	}
	if (s->out_len == 0 && !s->closed && s->ops->on_drain) {
		s->in_cb = true;
		s->ops->on_drain(s, s->arg);
		s->in_cb = false;
		if (s->dead)
			stream_destroy(s);
	}
}

static void stream_queue_bytes(struct stream *s, const struct iovec *iov, int n, size_t skip)
{
	for (int i = 0; i < n; i++) {
		const char *p = iov[i].iov_base;
		size_t len = iov[i].iov_len;
		if (skip >= len) {
			skip -= len;
			continue;
		}
		p += skip;
		len -= skip;
		skip = 0;
		if (s->out_len + len > s->out_cap) {
			size_t cap = s->out_cap ? s->out_cap : 4096;
			while (cap < s->out_len + len)
				cap *= 2;
			s->out = rh_realloc(s->out, cap);
			s->out_cap = cap;
		}
		memcpy(s->out + s->out_len, p, len);
		s->out_len += len;
	}
}

bool stream_writev(struct stream *s, const struct iovec *iov, int n)
{
	size_t total = 0;
	if (s->closed || s->dead || s->shut_wr)
		return false;
	for (int i = 0; i < n; i++)
		total += iov[i].iov_len;
	if (stream_pending(s) > 0) {
		if (stream_pending(s) + total > s->out_max)
			return false;
		if (s->out_off > 0 && s->out_off == s->out_len) {
			s->out_off = s->out_len = 0;
		}
		stream_queue_bytes(s, iov, n, 0);
		return true;
	}
	ssize_t w;
	do {
		w = writev(s->fd, iov, n);
	} while (w < 0 && errno == EINTR);
	if (w < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			/* reported by the read side (EOF/error) soon; nothing queued */
			return false;
		}
		w = 0;
	}
	if ((size_t)w == total)
		return true;
	if (total - (size_t)w > s->out_max)
		return false;
	stream_queue_bytes(s, iov, n, (size_t)w);
	event_add(s->wev, NULL);
	return true;
}

bool stream_write(struct stream *s, const void *data, size_t len)
{
	struct iovec v = { .iov_base = (void *)data, .iov_len = len };
	return stream_writev(s, &v, 1);
}

void stream_shutdown_write(struct stream *s)
{
	s->want_shut = true;
	if (stream_pending(s) == 0 && !s->shut_wr) {
		shutdown(s->fd, SHUT_WR);
		s->shut_wr = true;
	}
}

size_t stream_buffered(const struct stream *s)
{
	return s->in_cap + s->out_cap;
}

struct stream *stream_new(struct event_base *base, int fd, struct stream_scratch *scratch, size_t in_max,
			  size_t out_max, const struct stream_ops *ops, void *arg)
{
	struct stream *s = RH_NEW(struct stream);
	s->fd = fd;
	s->scratch = scratch;
	s->in_max = in_max;
	s->out_max = out_max;
	s->ops = ops;
	s->arg = arg;
	/* Edge-triggered both (libevent refuses a mix on one socket): reads
	 * come back by themselves after a full bite (stream_read_cb), writes run until
	 * EAGAIN before they wait; re-arming a watch reports a socket already
	 * ready (epoll_ctl polls it). */
	s->rev = event_new(base, fd, EV_READ | EV_PERSIST | EV_ET | EV_CLOSED, stream_read_cb, s);
	s->wev = event_new(base, fd, EV_WRITE | EV_ET, stream_write_cb, s);
	stream_update_reading(s);
	return s;
}

void stream_count(struct stream *s, struct conn_counts *counts, const struct conn_addr *addr)
{
	s->counts = counts;
	s->has_addr = addr != NULL;
	if (addr)
		s->addr = *addr;
}

void stream_set_ops(struct stream *s, const struct stream_ops *ops, void *arg, size_t in_max, size_t out_max)
{
	s->ops = ops;
	s->arg = arg;
	s->in_max = in_max;
	s->out_max = out_max;
	s->rerun = true;
	stream_update_reading(s);
}
