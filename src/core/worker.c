#include "core/worker.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"

struct worker_pool {
	struct event_base *base;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	/* waiting for a thread, per lane: lane 0 is always taken first */
	struct worker_job *todo_head[WORKER_LANES], *todo_tail[WORKER_LANES];
	struct worker_job *done_head, *done_tail; /* run; done() pending on the loop */
	int queued, max_queued;
	int lane_queued[WORKER_LANES];            /* submitted, done() not yet run */
	bool lane_lifo[WORKER_LANES];
	bool skip_on_stop; /* jobs still queued at free are not run (done() still is) */
	bool stopping;
	int nthreads;
	pthread_t *threads;
	int efd;                                  /* wakes the loop when done grows */
	struct event *ev;
};

static void *worker_main(void *arg)
{
	struct worker_pool *p = arg;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->todo_head[0] && !p->todo_head[1] && !p->stopping)
			pthread_cond_wait(&p->cond, &p->lock);
		int lane = p->todo_head[0] ? 0 : 1;
		if (!p->todo_head[lane] && p->stopping)
			break;
		struct worker_job *job = p->todo_head[lane];
		p->todo_head[lane] = job->next;
		if (!p->todo_head[lane])
			p->todo_tail[lane] = NULL;
		bool skip = p->stopping && p->skip_on_stop;
		pthread_mutex_unlock(&p->lock);

		if (!skip)
			job->run(job);

		pthread_mutex_lock(&p->lock);
		job->next = NULL;
		if (p->done_tail)
			p->done_tail->next = job;
		else
			p->done_head = job;
		p->done_tail = job;
		uint64_t one = 1;
		ssize_t w = write(p->efd, &one, sizeof one);
		(void)w; /* the counter cannot overflow in practice; a failed wake is retried by the next job */
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* Runs done() for every finished job; on the loop thread. */
static void worker_drain(struct worker_pool *p)
{
	pthread_mutex_lock(&p->lock);
	struct worker_job *job = p->done_head;
	p->done_head = p->done_tail = NULL;
	pthread_mutex_unlock(&p->lock);
	while (job) {
		struct worker_job *next = job->next;
		p->queued--;
		p->lane_queued[job->lane]--;
		job->done(job);
		job = next;
	}
}

static void worker_wake_cb(evutil_socket_t fd, short what, void *arg)
{
	uint64_t n;
	ssize_t r = read(fd, &n, sizeof n);
	(void)r;
	worker_drain(arg);
}

struct worker_pool *worker_pool_new(struct event_base *base, int threads, int max_queued)
{
	struct worker_pool *p = RH_NEW(struct worker_pool);
	p->base = base;
	p->max_queued = max_queued;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (p->efd < 0) {
		log_error(NULL, "eventfd: %s", strerror(errno));
		abort();
	}
	p->ev = event_new(base, p->efd, EV_READ | EV_PERSIST, worker_wake_cb, p);
	event_add(p->ev, NULL);
	p->threads = rh_calloc((size_t)threads, sizeof(pthread_t));
	for (int i = 0; i < threads; i++) {
		if (pthread_create(&p->threads[i], NULL, worker_main, p) != 0) {
			log_error(NULL, "cannot start worker thread %d", i);
			abort();
		}
		p->nthreads++;
	}
	return p;
}

rh_err worker_submit_lane(struct worker_pool *p, struct worker_job *job, int lane)
{
	if (lane < 0 || lane >= WORKER_LANES)
		lane = WORKER_LANES - 1;
	if (p->lane_queued[lane] >= p->max_queued || p->stopping)
		return RH_EAGAIN;
	p->queued++;
	p->lane_queued[lane]++;
	job->next = NULL;
	job->lane = lane;
	pthread_mutex_lock(&p->lock);
	if (p->lane_lifo[lane] && p->todo_head[lane]) {
		job->next = p->todo_head[lane];
		p->todo_head[lane] = job;
	} else {
		if (p->todo_tail[lane])
			p->todo_tail[lane]->next = job;
		else
			p->todo_head[lane] = job;
		p->todo_tail[lane] = job;
	}
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	return RH_OK;
}

void worker_pool_skip_on_stop(struct worker_pool *p)
{
	pthread_mutex_lock(&p->lock);
	p->skip_on_stop = true;
	pthread_mutex_unlock(&p->lock);
}

void worker_lane_lifo(struct worker_pool *p, int lane, bool lifo)
{
	if (lane >= 0 && lane < WORKER_LANES)
		p->lane_lifo[lane] = lifo;
}

rh_err worker_submit(struct worker_pool *p, struct worker_job *job)
{
	return worker_submit_lane(p, job, 0);
}

int worker_queued(const struct worker_pool *p) { return p->queued; }

void worker_pool_free(struct worker_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	for (int i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	worker_drain(p);
	event_free(p->ev);
	close(p->efd);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	rh_free(p->threads);
	rh_free(p);
}
