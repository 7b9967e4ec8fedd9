/* A small pool of threads for work that would block the event loop
 * (password hashing with argon2id takes ~100 ms and tens of MiB).
 *
 * A job's `run` executes on a worker thread and must touch nothing but the
 * job's own data; its `done` then runs on the loop thread. The loop never
 * waits on a lock a worker holds for long: the queue lock guards only the
 * list operations. The queue is bounded (callers get RH_EAGAIN when full). */
#ifndef RH_CORE_WORKER_H
#define RH_CORE_WORKER_H

#include <stdbool.h>

#include "core/err.h"

struct event_base;
struct worker_pool;

struct worker_job {
	void (*run)(struct worker_job *job);  /* worker thread */
	void (*done)(struct worker_job *job); /* loop thread, once run returned */
	struct worker_job *next;
	int lane;
};

/* Two lanes: a thread takes lane 0's jobs before any of lane 1's, and each
 * lane is bounded by max_queued on its own, so work that must not wait
 * (e.g. logins from clients in good standing) is not stuck behind a flood
 * of the other kind. */
#define WORKER_LANES 2

struct worker_pool *worker_pool_new(struct event_base *base, int threads, int max_queued);
/* Lane 0. */
rh_err worker_submit(struct worker_pool *p, struct worker_job *job) RH_MUST_CHECK;
rh_err worker_submit_lane(struct worker_pool *p, struct worker_job *job, int lane) RH_MUST_CHECK;
/* A lane served newest first: when it backs up, the job just submitted
 * (whose client is still waiting) goes before those queued long ago. */
void worker_lane_lifo(struct worker_pool *p, int lane, bool lifo);
/* At free, jobs still queued are not run, only handed to done (which must
 * then cope with a job that did nothing): a queue of password checks at
 * shutdown would otherwise hold the exit for its whole length. */
void worker_pool_skip_on_stop(struct worker_pool *p);
int worker_queued(const struct worker_pool *p);
/* Joins the threads; queued jobs still run (unless worker_pool_skip_on_stop:
 * then only those already running finish), and every done callback runs
 * before this returns. */
void worker_pool_free(struct worker_pool *p);

#endif
