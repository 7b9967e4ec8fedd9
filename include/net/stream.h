/* A non-blocking socket with its own input and output buffers, for the HTTP
 * and WebSocket connections.
 *
 * Why not libevent's bufferevent: a bufferevent writes only from its write
 * event, so every reply costs an epoll_ctl to add EV_WRITE, a loop turn, the
 * write, and another epoll_ctl to remove it; and toggling EV_READ per request
 * costs two more. A stream keeps one persistent (edge-triggered) read
 * watch, writes replies at once with writev(), and watches for writability
 * only while output is actually pending (a slow reader). Buffers are allocated only while they
 * hold bytes, so an idle connection costs its struct and two events.
 *
 * Limits: input never grows past in_max (the owner then stops reading until
 * it consumes some), and grows only as bytes arrive (a kilobyte of room
 * beyond what is held, doubling for large bodies), so a client trickling a
 * few bytes costs a few bytes; pending output past out_max makes
 * stream_write fail, and the owner decides (HTTP: close; WebSocket: close
 * with 1008). */
#ifndef RH_NET_STREAM_H
#define RH_NET_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>

#include "net/conncount.h"

struct event_base;
struct stream;

/* Reads land in one shared scratch buffer first; only bytes the owner leaves
 * unconsumed are copied into the stream's own buffer. So a connection whose
 * messages arrive whole (the usual case) never allocates for input, and 100k
 * idle connections hold no input buffers at all. One per event loop. */
struct stream_scratch {
	char *buf;
	size_t size;
};

struct stream_ops {
	/* New bytes are in stream_in(); consume what you can with stream_consume. */
	void (*on_read)(struct stream *s, void *arg);
	/* Pending output has all been written (only called after a partial write). */
	void (*on_drain)(struct stream *s, void *arg);
	/* EOF (err 0: reading stops, replies can still be written) or an error
	 * (errno; nothing more can be written). The owner decides when to free. */
	void (*on_close)(struct stream *s, void *arg, int err);
};

struct stream {
	int fd;
	struct event *rev, *wev;
	struct stream_scratch *scratch;
	const char *view;     /* current input: scratch or `in` */
	size_t view_len;
	char *in;             /* leftover input kept between reads */
	size_t in_len, in_cap, in_max;
	char *out;
	size_t out_off, out_len, out_cap, out_max;
	const struct stream_ops *ops;
	void *arg;
	bool reading;   /* the read event is armed */
	bool paused;    /* the owner asked not to read */
	bool want_shut; /* shutdown(SHUT_WR) once the output drains */
	bool shut_wr;
	bool eof;       /* the peer will send nothing more */
	bool closed;    /* an error: nothing more can be written */
	bool in_cb;     /* a callback is on the stack */
	bool dead;      /* stream_free was called from a callback */
	bool rerun;     /* ops changed: run on_read over the remaining input */
	/* The socket's place in the connection counts, released when the
	 * descriptor is closed (stream_count). */
	struct conn_counts *counts;
	struct conn_addr addr;
	bool has_addr;
};

/* Takes ownership of fd (non-blocking); starts reading. initial/len: bytes
 * already received (e.g. after an HTTP upgrade), copied in. */
struct stream *stream_new(struct event_base *base, int fd, struct stream_scratch *scratch, size_t in_max,
			  size_t out_max, const struct stream_ops *ops, void *arg);
/* Ties the socket to its place in `counts` (taken by the caller with
 * conn_counts_acquire): released when the stream closes its descriptor,
 * whoever owns it then. addr may be NULL. */
void stream_count(struct stream *s, struct conn_counts *counts, const struct conn_addr *addr);
/* Hands the socket to a new owner: same stream, new callbacks. */
void stream_set_ops(struct stream *s, const struct stream_ops *ops, void *arg, size_t in_max, size_t out_max);
/* Closes the socket and frees everything. Safe inside the stream's own
 * callbacks (the memory goes when the callback returns); s must not be used
 * by the caller afterwards. */
void stream_free(struct stream *s);

/* The input received and not yet consumed (valid inside on_read, or after
 * stream_consume until the next read). */
static inline const char *stream_in(const struct stream *s) { return s->view; }
static inline size_t stream_in_len(const struct stream *s) { return s->view_len; }
/* Drops n bytes from the front of the input. */
void stream_consume(struct stream *s, size_t n);
/* Runs on_read again over input already received (e.g. pipelined requests
 * waiting while a handler worked). */
void stream_replay(struct stream *s);
/* Stop/start reading (backpressure, lingering close). */
void stream_pause(struct stream *s);
void stream_resume(struct stream *s);

/* Writes now what the kernel takes, queues the rest. false (nothing queued)
 * when the pending output would pass out_max, or the stream is closed. */
bool stream_writev(struct stream *s, const struct iovec *iov, int n);
bool stream_write(struct stream *s, const void *data, size_t len);
static inline size_t stream_pending(const struct stream *s) { return s->out_len - s->out_off; }
/* shutdown(SHUT_WR) once the pending output is written. */
void stream_shutdown_write(struct stream *s);
/* Bytes held in the buffers (for memory accounting). */
size_t stream_buffered(const struct stream *s);

#endif
