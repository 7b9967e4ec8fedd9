/* ridehail-sim: what waits, the tick, and the setup of accounts. */
#include "simtool.h"

struct sim_state sim_st;
struct sim_surge_state sim_sg;

static int sim_count_state(enum sim_drv_state lo, enum sim_drv_state hi);
static void sim_drv_tick(struct sim_drv *d, double dt);
static void sim_on_tick(evutil_socket_t fd, short what, void *arg);
static void sim_start_run(void);
static void sim_check_setup(void);
static void sim_login_retry(evutil_socket_t fd, short what, void *arg);
static void sim_logged_in(void *arg, const struct simc_reply *rep);
static void sim_account_created(void *arg, const struct simc_reply *rep);

/* What waits for a rider, due. */
static void sim_later_rider(const struct sim_later *l, struct sim_rider *r)
{
	switch (l->kind) {
	case LATER_RIDER_QUOTE:
		if (r->st == R_QUOTING)
			sim_rider_ask_estimate(r);
		break;
	case LATER_RIDER_POST:
		if (r->st == R_POSTING)
			sim_rider_post(r);
		break;
	case LATER_RIDER_CANCEL:
		if (!strcmp(r->trip_id, l->trip))
			sim_rider_cancel_try(r, l->tries);
		break;
	case LATER_RIDER_RATE:
		if (r->st == R_RATING && !strcmp(r->trip_id, l->trip))
			sim_rider_rate_try(r, l->trip, l->tries);
		break;
	case LATER_RIDER_READ:
		if (!strcmp(r->trip_id, l->trip))
			sim_rider_read_try(r, l->tries);
		break;
	case LATER_RIDER_CARD:
		if (r->st == R_QUOTING && r->shared)
			sim_share_ask_card(r);
		break;
	case LATER_RIDER_BOOK:
		if (r->st == R_POSTING && r->shared)
			sim_share_book(r);
		break;
	default:
		break;
	}
}

void sim_later_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct sim_later *l = arg;
	if (sim_st.ending) {
		rh_free(l);
		return;
	}
	struct sim_drv *d = l->idx < sim_st.ndrivers ? &sim_st.drv[l->idx] : NULL;
	struct sim_rider *r = l->idx < sim_st.nriders ? &sim_st.rid[l->idx] : NULL;
	switch (l->kind) {
	case LATER_DRIVER_SOCKET:
		if (!d->up && d->st != D_DEAD) {
			simc_ws_free(d->ws);
			d->ws = simc_ws_open(sim_st.base, sim_st.host, sim_st.port, d->token, &sim_drv_cbs, d);
			sim_later(LATER_DRIVER_WATCH, d->idx, NULL, NULL, ++d->gen, 10000);
		}
		break;
	case LATER_DRIVER_WATCH: /* no answer at all to the last attempt: again */
		if (!d->up && d->st != D_DEAD && d->gen == l->tries)
			sim_later(LATER_DRIVER_SOCKET, d->idx, NULL, NULL, 0, 0);
		break;
	case LATER_RIDER_SOCKET:
		if (!r->up && r->st != R_DEAD) {
			simc_ws_free(r->ws);
			r->ws = simc_ws_open(sim_st.base, sim_st.host, sim_st.port, r->token, &sim_rider_cbs, r);
			sim_later(LATER_RIDER_WATCH, r->idx, NULL, NULL, ++r->gen, 10000);
		}
		break;
	case LATER_RIDER_WATCH:
		if (!r->up && r->st != R_DEAD && r->gen == l->tries)
			sim_later(LATER_RIDER_SOCKET, r->idx, NULL, NULL, 0, 0);
		break;
	case LATER_DRIVER_COMMAND:
		/* (only what the driver still waits on: a trip command of its
		 * trip, an accept of its offer, its first availability) */
		if (!strcmp(l->what, "driver.status.changed") && d->st == D_SETUP) {
			sim_drv_open(d);
		} else if (!strcmp(l->what, "offer.accept") && d->st == D_ACCEPTING) {
			sim_drv_send_pending(d);
		} else if (!strncmp(l->what, "trip.", 5) && !strcmp(l->trip, d->trip_id) &&
			   ((d->st == D_ARRIVING && !strcmp(l->what, "trip.arrived")) ||
			    (d->st == D_STARTING && !strcmp(l->what, "trip.started")) ||
			    (d->st == D_COMPLETING && !strcmp(l->what, "trip.completed")))) {
			sim_drv_send_pending(d);
		}
		break;
	case LATER_DRIVER_RATE:
		sim_drv_rate_try(l->idx, l->trip, l->tries);
		break;
	default:
		sim_later_rider(l, r);
		break;
	}
	rh_free(l);
}


/* ------------------------------------------------------------ the tick */

static int sim_count_state(enum sim_drv_state lo, enum sim_drv_state hi)
{
	int n = 0;
	for (int i = 0; i < sim_st.ndrivers; i++)
		n += sim_st.drv[i].st >= lo && sim_st.drv[i].st <= hi;
	return n;
}

void sim_sample(void)
{
	int idle = sim_count_state(D_IDLE, D_ACCEPTING), busy = sim_count_state(D_TO_PICKUP, D_COMPLETING);
	int waiting = 0;
	for (int i = 0; i < sim_st.nriders; i++)
		waiting += sim_st.rid[i].st == R_SEARCHING || sim_st.rid[i].st == R_POSTING || sim_st.rid[i].st == R_MATCHED;
	fprintf(sim_st.ts, "%.0f,%d,%d,%d,%d,%d,%d,%d,%.4f,%d,%d\n", sim_st.now, sim_st.iv_requests, sim_st.iv_created, sim_st.iv_matched,
		sim_st.iv_completed, sim_st.iv_cancelled, idle, busy, idle + busy ? (double)busy / (idle + busy) : 0, waiting,
		sim_st.protocol_errors);
	sim_st.iv_requests = sim_st.iv_created = sim_st.iv_matched = sim_st.iv_completed = sim_st.iv_cancelled = 0;
	for (int i = 0; i < sim_st.ndrivers; i++) {
		struct sim_drv *d = &sim_st.drv[i];
		if (d->st != D_DEAD && d->st != D_SETUP)
			fprintf(sim_st.pos, "%.0f,%d,%.6f,%.6f,%s\n", sim_st.now, i, d->lat, d->lon, sim_drv_state_name(d->st));
	}
}

void sim_progress(bool final)
{
	if (sim_st.quiet)
		return;
	int idle = sim_count_state(D_IDLE, D_ACCEPTING), busy = sim_count_state(D_TO_PICKUP, D_COMPLETING);
	int matched = 0, completed = 0, cancelled = 0;
	for (size_t i = 0; i < sim_st.nrecs; i++) {
		matched += sim_st.recs[i].t_matched >= 0;
		completed += sim_st.recs[i].outcome == SIM_OUT_COMPLETED;
		cancelled += sim_st.recs[i].outcome == SIM_OUT_CANCELLED;
	}
	fprintf(stderr, "%s[sim %5.0f/%.0f s] drivers %d idle %d busy | requests %zu matched %d completed %d "
			"cancelled %d | errors %d%s",
		sim_st.tty ? "\r\033[K" : "", sim_st.now, sim_st.duration + sim_st.drain, idle, busy, sim_st.nrecs, matched, completed, cancelled,
		sim_st.protocol_errors + sim_st.breaches, final || !sim_st.tty ? "\n" : "");
}


static void sim_drv_tick(struct sim_drv *d, double dt)
{
	if (d->st == D_SETUP || d->st == D_DEAD)
		return;
	bool arrived = sim_drv_advance(d, dt);
	if (d->st == D_OFFERED && sim_st.now >= d->decide_at)
		sim_drv_decide(d);
	switch (d->st) {
	case D_TO_PICKUP:
		if (arrived || !d->moving) {
			sim_drv_command(d, "trip.arrived");
			d->st = D_ARRIVING;
		}
		break;
	case D_BOARDING:
		if (sim_st.now >= d->board_until) {
			sim_drv_command(d, "trip.started");
			d->st = D_STARTING;
		}
		break;
	case D_ON_TRIP:
		if (arrived || !d->moving) {
			sim_drv_command(d, "trip.completed");
			d->st = D_COMPLETING;
		}
		break;
	case D_SHARE_DRIVING:
	case D_SHARE_LEG:
	case D_SHARE_BOARDING:
		sim_share_drv_tick(d, arrived);
		break;
	case D_IDLE:
		sim_surge_drift(d, dt);
		if (sim_st.cruise && !d->moving && sim_rng_unit(&d->rng) < dt / 60.0)
			sim_drv_cruise(d);
		break;
	default:
		break;
	}
	if (sim_st.now >= d->next_ping)
		sim_drv_ping(d);
}

static void sim_on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	double prev = sim_st.now, now = sim_now(), dt = now - prev;
	if (dt < 0)
		dt = 0;
	while (sim_st.next_req < sim_st.dem.n && sim_st.dem.req[sim_st.next_req].t_s <= now && now < sim_st.duration)
		sim_issue_request(&sim_st.dem.req[sim_st.next_req++]);
	for (int i = 0; i < sim_st.ndrivers; i++)
		sim_drv_tick(&sim_st.drv[i], dt);
	for (int i = 0; i < sim_st.nriders; i++) {
		struct sim_rider *r = &sim_st.rid[i];
		if ((r->st == R_SEARCHING || r->st == R_MATCHED) && !r->cancel_sent && now >= r->patience_at) {
			sim_rider_cancel_try(r, 0);
			r->cancel_sent = true;
		}
	}
	while (now >= sim_st.next_sample) {
		sim_sample();
		sim_st.next_sample += sim_st.interval;
	}
	sim_surge_tick();
	double wall = (double)rh_mono_ns() / 1e9;
	if (wall >= sim_st.next_progress_wall) {
		sim_progress(false);
		sim_st.next_progress_wall = wall + (sim_st.tty ? 1 : 10);
	}
	if (now >= sim_st.duration + sim_st.drain)
		sim_finish();
}

/* ------------------------------------------------------------ setup */

static void sim_start_run(void)
{
	sim_st.running = true;
	sim_st.t0_ns = rh_mono_ns();
	sim_st.now = 0;
	for (int i = 0; i < sim_st.ndrivers; i++) {
		sim_st.drv[i].online_since = 0;
		sim_st.drv[i].next_ping = sim_rng_range(&sim_st.drv[i].rng, 0, sim_st.ping_s);
	}
	sim_progress_clear();
	if (!sim_st.quiet)
		fprintf(stderr, "sim: %d drivers online, %d riders ready: running %.0f simulated s at %gx\n", sim_st.ready_drivers,
			sim_st.ready_riders, sim_st.duration, sim_st.speed);
}

static void sim_check_setup(void)
{
	if (sim_st.running)
		return;
	if (sim_st.setup_failed > 0) {
		fprintf(stderr, "sim: setup failed (%d accounts could not be made ready)\n", sim_st.setup_failed);
		sim_st.exit_code = 3;
		event_base_loopbreak(sim_st.base);
		return;
	}
	if (sim_st.ready_drivers == sim_st.ndrivers && sim_st.ready_riders == sim_st.nriders)
		sim_start_run();
}

struct sim_login_ctx {
	bool is_driver;
	int idx;
	const char *password;
};


static void sim_login_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct sim_login_ctx *c = arg;
	const char *email = c->is_driver ? sim_st.drv[c->idx].email : sim_st.rid[c->idx].email;
	char body[256];
	snprintf(body, sizeof body, "{\"role\":\"%s\",\"email\":\"%s\",\"password\":\"%s\"}", c->is_driver ? "driver" : "rider",
		 email, c->password);
	simc_http(sim_st.pool, "POST", "/v1/auth/login", NULL, NULL, body, sim_logged_in, c);
}

static void sim_logged_in(void *arg, const struct simc_reply *rep)
{
	struct sim_login_ctx *c = arg;
	if (rep->status == 429) { /* auth.login_per_address: wait as told */
		sim_st.login_retries++;
		struct timeval tv = { rep->retry_after_s > 0 ? rep->retry_after_s : 1, 0 };
		event_base_once(sim_st.base, -1, EV_TIMEOUT, sim_login_retry, c, &tv);
		return;
	}
	cJSON *j = rep->status == 200 ? cJSON_Parse(rep->body) : NULL;
	const char *tok = j ? sim_jstr(j, "token") : NULL, *sub = j ? sim_jstr(j, "subject") : NULL;
	if (!tok || !sub) {
		sim_protocol_error("login: %d %.200s", rep->status, rep->body);
		sim_st.setup_failed++;
		cJSON_Delete(j);
		rh_free(c);
		sim_check_setup();
		return;
	}
	if (c->is_driver) {
		struct sim_drv *d = &sim_st.drv[c->idx];
		snprintf(d->token, sizeof d->token, "%s", tok);
		snprintf(d->id, sizeof d->id, "%s", sub);
		d->ws = simc_ws_open(sim_st.base, sim_st.host, sim_st.port, d->token, &sim_drv_cbs, d);
	} else {
		struct sim_rider *r = &sim_st.rid[c->idx];
		snprintf(r->token, sizeof r->token, "%s", tok);
		snprintf(r->id, sizeof r->id, "%s", sub);
		r->ws = simc_ws_open(sim_st.base, sim_st.host, sim_st.port, r->token, &sim_rider_cbs, r);
	}
	cJSON_Delete(j);
	rh_free(c);
}

static void sim_account_created(void *arg, const struct simc_reply *rep)
{
	struct sim_login_ctx *c = arg;
	if (rep->status != 201) {
		fprintf(stderr, "sim: creating an account: %d %.300s\n", rep->status, rep->body);
		if (rep->status == 401 || rep->status == 403)
			fprintf(stderr, "sim: the admin token is missing or wrong (--admin-token, RIDEHAIL_ADMIN_TOKEN, var/admin.token)\n");
		if (rep->status == 0)
			fprintf(stderr, "sim: is ridehaild listening on %s:%d?\n", sim_st.host, sim_st.port);
		sim_st.setup_failed++;
		rh_free(c);
		sim_check_setup();
		return;
	}
	sim_login_retry(-1, 0, c);
}

void sim_create_accounts(void)
{
	static const char pw[] = "sim-password-1";
	static const char *const makes[] = { "Toyota", "Honda", "Ford", "Hyundai", "Kia", "Nissan" };
	static const char *const colors[] = { "Silver", "Black", "White", "Blue", "Grey", "Red" };
	char hdr[600], body[1024];
	snprintf(hdr, sizeof hdr, "Authorization: Bearer %s", sim_st.admin_token);
	for (int i = 0; i < sim_st.ndrivers; i++) {
		struct sim_drv *d = &sim_st.drv[i];
		snprintf(d->email, sizeof d->email, "sim-%s-d%d@example.com", sim_st.run_id, i);
		snprintf(body, sizeof body,
			 "{\"email\":\"%s\",\"name\":\"Sim Driver %d\",\"password\":\"%s\",\"vehicle\":{\"type\":\"standard\","
			 "\"make\":\"%s\",\"model\":\"Sim\",\"color\":\"%s\",\"plate\":\"S%.8s%d\"}}",
			 d->email, i, pw, makes[i % 6], colors[i % 6], sim_st.run_id + strlen(sim_st.run_id) - 6, i);
		struct sim_login_ctx *c = rh_calloc(1, sizeof *c);
		*c = (struct sim_login_ctx){ true, i, pw };
		simc_http(sim_st.pool, "POST", "/v1/admin/drivers", NULL, hdr, body, sim_account_created, c);
	}
	for (int i = 0; i < sim_st.nriders; i++) {
		struct sim_rider *r = &sim_st.rid[i];
		snprintf(r->email, sizeof r->email, "sim-%s-r%d@example.com", sim_st.run_id, i);
		snprintf(body, sizeof body, "{\"email\":\"%s\",\"name\":\"Sim Rider %d\",\"password\":\"%s\"}", r->email, i, pw);
		struct sim_login_ctx *c = rh_calloc(1, sizeof *c);
		*c = (struct sim_login_ctx){ false, i, pw };
		simc_http(sim_st.pool, "POST", "/v1/admin/riders", NULL, hdr, body, sim_account_created, c);
	}
}

/* Re-checks the setup every tick until the run starts. */
void sim_on_setup_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (sim_st.running) {
		sim_on_tick(-1, 0, NULL);
		return;
	}
	sim_check_setup();
	if (!sim_st.quiet && !sim_st.running && sim_st.tty) {
		fprintf(stderr, "\r\033[Ksim: setting up: %d/%d drivers online, %d/%d riders ready", sim_st.ready_drivers, sim_st.ndrivers,
			sim_st.ready_riders, sim_st.nriders);
	}
}
