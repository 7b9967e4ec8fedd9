/* Password jobs: argon2id hashing and checking on the worker threads, off
 * the loop, each job then finishing on the loop (auth_internal.h). */
#include "auth/auth.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/settings.h"
#include "core/strbuf.h"
#include "core/uuid.h"
#include "core/worker.h"
#include "net/conncount.h"
#include "net/http.h"
#include "net/ratelimit.h"
#include "store/db.h"
#include "auth_internal.h"

/* ------------------------------------------------------------ password jobs */


static void auth_pw_run(struct worker_job *job)
{
	struct pw_job *j = (struct pw_job *)job;
	size_t len = strlen(j->password);
	if (j->kind == PW_HASH)
		j->ok = crypto_pwhash_str(j->hash, j->password, len, j->opslimit, j->memlimit) == 0;
	else
		j->ok = crypto_pwhash_str_verify(j->hash, j->password, len) == 0;
	sodium_memzero(j->password, sizeof j->password);
}

void auth_pw_job_free(struct pw_job *j)
{
	sodium_memzero(j->password, sizeof j->password);
	sodium_memzero(j->hash, sizeof j->hash);
	cJSON_Delete(j->body);
	rh_free(j);
}

static void auth_pw_done(struct worker_job *job)
{
	struct pw_job *j = (struct pw_job *)job;
	j->next(j);
}


struct pw_job *auth_pw_job_new(struct auth *a, struct http_req *req, enum pw_kind kind, const char *password,
			       void (*next)(struct pw_job *))
{
	struct pw_job *j = RH_NEW(struct pw_job);
	j->job.run = auth_pw_run;
	j->job.done = auth_pw_done;
	j->auth = a;
	j->req = req;
	j->kind = kind;
	j->next = next;
	j->opslimit = (unsigned long long)a->cfg->password_opslimit;
	j->memlimit = (size_t)a->cfg->password_memlimit;
	snprintf(j->password, sizeof j->password, "%s", password);
	return j;
}

/* Hands the job to a thread, or answers 503 when the queue is full. */
void auth_pw_submit_or_reply(struct pw_job *j)
{
	if (worker_submit(j->auth->pool, &j->job) != RH_OK) {
		http_reply_header(j->req, "Retry-After", "1");
		http_reply_problem(j->req, PROBLEM_UNAVAILABLE, NULL, "too many password checks in progress; retry shortly");
		auth_pw_job_free(j);
	}
}

static void auth_pw_plain_done(struct pw_job *j)
{
	j->cb(j->cb_arg, j->ok, j->hash);
	auth_pw_job_free(j);
}

static bool auth_pw_plain(struct auth *a, enum pw_kind kind, const char *password, const char *hash, auth_pw_cb done,
			  void *arg)
{
	struct pw_job *j = auth_pw_job_new(a, NULL, kind, password, auth_pw_plain_done);
	j->cb = done;
	j->cb_arg = arg;
	if (hash)
		snprintf(j->hash, sizeof j->hash, "%s", hash);
	if (worker_submit(a->pool, &j->job) != RH_OK) {
		auth_pw_job_free(j);
		return false;
	}
	return true;
}

bool auth_pw_hash(struct auth *a, const char *password, auth_pw_cb done, void *arg)
{
	return auth_pw_plain(a, PW_HASH, password, NULL, done, arg);
}

bool auth_pw_verify(struct auth *a, const char *password, const char *hash, auth_pw_cb done, void *arg)
{
	return auth_pw_plain(a, PW_VERIFY, password, hash, done, arg);
}
