/* ridehail-sim: the demand, the run's files and agents, main(). */
#include "simtool.h"

static void sim_build_demand(void);
static size_t sim_planned_requests(void);
static void sim_write_demand_csv(void);
static void sim_mkdir_p(const char *dir);

static void sim_build_demand(void)
{
	struct sim_rng r;
	sim_rng_seed(&r, sim_st.seed, 0xdead);
	struct sim_bbox inner = sim_bbox_shrink(sim_st.box, sim_st.margin);
	char err[512];
	sim_demand_init(&sim_st.dem);
	if (!strcmp(sim_st.demand, "replay")) {
		/* rows in the box are kept, then moved --margin inside it (snapped
		 * onto the served area rather than dropped) */
		struct sim_replay_opts o = { .box = sim_st.box, .use_box = true, .start = -1, .compress = sim_st.compress,
					     .need_time = true };
		if (sim_st.start_str && !sim_parse_time(sim_st.start_str, &o.start)) {
			fprintf(stderr, "ridehail-sim: --start: not a time: %s\n", sim_st.start_str);
			exit(2);
		}
		o.window_s = sim_st.window > 0 ? sim_st.window : sim_st.duration * sim_st.compress;
		if (sim_demand_load_csv(sim_st.csv, &o, &sim_st.dem, err, sizeof err) != RH_OK) {
			fprintf(stderr, "ridehail-sim: %s: %s\n", sim_st.csv, err);
			exit(2);
		}
		if (!sim_st.quiet)
			fprintf(stderr, "sim: replay %s: %zu rows read, %zu outside the box, %zu outside the window, %zu bad: %zu "
					"requests\n", sim_st.csv, sim_st.dem.rows_read, sim_st.dem.rows_outside, sim_st.dem.rows_outside_window,
				sim_st.dem.rows_bad, sim_st.dem.n);
	} else if (!strcmp(sim_st.demand, "hotspots")) {
		sim_demand_hotspots(&sim_st.dem, &r, &inner, sim_st.duration, sim_st.rate, sim_st.hotspots, sim_st.sigma_m);
	} else {
		sim_demand_uniform(&sim_st.dem, &r, &inner, sim_st.duration, sim_st.rate);
	}
	if (sim_st.demand_mult > 1)
		sim_demand_multiply(&sim_st.dem, &r, sim_st.demand_mult, 60 / sim_st.compress, 150);
	if (sim_st.od) {
		struct sim_demand od;
		sim_demand_init(&od);
		struct sim_replay_opts o = { .box = inner, .use_box = true, .start = -1, .compress = 1, .need_time = false };
		if (sim_demand_load_csv(sim_st.od, &o, &od, err, sizeof err) != RH_OK) {
			fprintf(stderr, "ridehail-sim: %s: %s\n", sim_st.od, err);
			exit(2);
		}
		size_t w = 0;
		for (size_t i = 0; i < od.n; i++)
			if (od.req[i].has_dropoff && sim_dist_m(od.req[i].plat, od.req[i].plon, od.req[i].dlat, od.req[i].dlon) > 300)
				od.req[w++] = od.req[i];
		od.n = w;
		if (!sim_st.quiet)
			fprintf(stderr, "sim: %zu origin-destination pairs inside the box from %s\n", od.n, sim_st.od);
		sim_demand_fill_dropoffs(&sim_st.dem, &od, &r);
		sim_demand_fini(&od);
	}
	for (size_t i = 0; i < sim_st.dem.n; i++) {
		sim_bbox_clamp(&inner, &sim_st.dem.req[i].plat, &sim_st.dem.req[i].plon);
		if (sim_st.dem.req[i].has_dropoff)
			sim_bbox_clamp(&inner, &sim_st.dem.req[i].dlat, &sim_st.dem.req[i].dlon);
	}
}

/* The requests the run will issue: those planned before --duration (a
 * replay window or --demand-mult's jitter can put rows past it). */
static size_t sim_planned_requests(void)
{
	size_t n = 0;
	for (size_t i = 0; i < sim_st.dem.n; i++)
		n += sim_st.dem.req[i].t_s < sim_st.duration;
	return n;
}

/* The plan: every request of the demand, as the run will issue it. */
static void sim_write_demand_csv(void)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/demand.csv", sim_st.out_dir);
	FILE *f = fopen(path, "w");
	if (!f)
		return;
	fprintf(f, "t_s,pickup_lat,pickup_lon,dropoff_lat,dropoff_lon\n");
	for (size_t i = 0; i < sim_st.dem.n; i++) {
		const struct sim_request *q = &sim_st.dem.req[i];
		fprintf(f, "%.3f,%.6f,%.6f,", q->t_s, q->plat, q->plon);
		if (q->has_dropoff)
			fprintf(f, "%.6f,%.6f", q->dlat, q->dlon);
		fputc('\n', f);
	}
	fclose(f);
}

static void sim_mkdir_p(const char *dir)
{
	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s", dir);
	for (char *p = tmp + 1; *p; p++)
		if (*p == '/') {
			*p = '\0';
			mkdir(tmp, 0755);
			*p = '/';
		}
	mkdir(tmp, 0755);
}

/* The road map (with --map) and the area; 0, or the exit status. */
static int sim_load_map(void)
{
	if (sim_st.map_path) {
		struct cfg_errors errs;
		static char *const no_env[] = { NULL };
		if (config_load_buffer(&sim_st.cfg, "sim", "", no_env, &errs) != RH_OK) {
			fprintf(stderr, "ridehail-sim: default configuration refused\n");
			return 2;
		}
		char err[512];
		if (routing_load(sim_st.map_path, &sim_st.cfg.routing, &sim_st.routing, err, sizeof err) != RH_OK) {
			fprintf(stderr, "ridehail-sim: %s: %s\n", sim_st.map_path, err);
			return 2;
		}
		struct routing_stats st;
		routing_get_stats(sim_st.routing, &st);
		if (!sim_st.have_box) {
			sim_st.box = (struct sim_bbox){ st.min_lat, st.min_lon, st.max_lat, st.max_lon };
			sim_st.have_box = true;
		}
		if (!sim_st.quiet)
			fprintf(stderr, "sim: map %s: %zu nodes, %zu edges; box %.4f,%.4f,%.4f,%.4f\n", sim_st.map_path, st.nodes,
				st.edges, sim_st.box.min_lon, sim_st.box.min_lat, sim_st.box.max_lon, sim_st.box.max_lat);
	}
	if (!sim_st.have_box) {
		fprintf(stderr, "ridehail-sim: give --map or --bbox (the area to simulate)\n");
		return 2;
	}
	return 0;
}

/* timeseries.csv, positions.csv and the surge files; false when the
 * folder cannot be written. */
static bool sim_open_outputs(void)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/timeseries.csv", sim_st.out_dir);
	sim_st.ts = fopen(path, "w");
	snprintf(path, sizeof path, "%s/positions.csv", sim_st.out_dir);
	sim_st.pos = fopen(path, "w");
	if (!sim_st.ts || !sim_st.pos) {
		fprintf(stderr, "ridehail-sim: cannot write into %s: %s\n", sim_st.out_dir, strerror(errno));
		return false;
	}
	fprintf(sim_st.ts, "t_s,requests,created,matched,completed,cancelled,drivers_idle,drivers_busy,utilisation,"
			   "riders_waiting,protocol_errors\n");
	fprintf(sim_st.pos, "t_s,driver,lat,lon,state\n");
	sim_surge_open_files();
	sim_share_open_files();
	return true;
}

/* The drivers and riders, each with its own random stream. */
static void sim_agents_new(void)
{
	sim_st.drv = rh_calloc((size_t)sim_st.ndrivers, sizeof *sim_st.drv);
	sim_st.rid = rh_calloc((size_t)sim_st.nriders, sizeof *sim_st.rid);
	for (int i = 0; i < sim_st.ndrivers; i++) {
		struct sim_drv *d = &sim_st.drv[i];
		d->idx = i;
		sim_rng_seed(&d->rng, sim_st.seed, 1000 + (uint64_t)i);
		sim_path_init(&d->path);
		d->busy_since = -1;
		sim_random_point(&d->rng, &d->lat, &d->lon); /* on a road a car can use, with a map */
		d->decide_at = INFINITY;
	}
	for (int i = 0; i < sim_st.nriders; i++) {
		sim_st.rid[i].idx = i;
		sim_st.rid[i].rec = -1;
		sim_rng_seed(&sim_st.rid[i].rng, sim_st.seed, 1000000 + (uint64_t)i);
	}
}

/* The event loop: setup, the run, the report. */
static void sim_loop(void)
{
	sim_st.base = event_base_new();
	sim_st.pool = simc_pool_new(sim_st.base, sim_st.host, sim_st.port, sim_st.http_conns);
	sim_agents_new();
	if (!sim_st.quiet)
		fprintf(stderr, "sim: %zu requests planned over %.0f simulated s (%s demand); creating %d drivers and %d riders "
				"on %s:%d\n", sim_planned_requests(), sim_st.duration, sim_st.demand, sim_st.ndrivers,
			sim_st.nriders, sim_st.host, sim_st.port);
	sim_create_accounts();
	sim_st.tick = event_new(sim_st.base, -1, EV_PERSIST, sim_on_setup_tick, NULL);
	struct timeval tv = { 0, TICK_MS * 1000 };
	event_add(sim_st.tick, &tv);
	sim_st.sigint = evsignal_new(sim_st.base, SIGINT, sim_on_sigint, NULL);
	event_add(sim_st.sigint, NULL);
	struct event *sigterm = evsignal_new(sim_st.base, SIGTERM, sim_on_sigint, NULL);
	event_add(sigterm, NULL);
	event_base_dispatch(sim_st.base);

	for (int i = 0; i < sim_st.ndrivers; i++) {
		simc_ws_free(sim_st.drv[i].ws);
		sim_path_fini(&sim_st.drv[i].path);
	}
	for (int i = 0; i < sim_st.nriders; i++)
		simc_ws_free(sim_st.rid[i].ws);
	simc_pool_free(sim_st.pool);
	event_free(sim_st.tick);
	event_free(sim_st.sigint);
	event_free(sigterm);
	event_base_free(sim_st.base);
}

static void sim_free_all(void)
{
	if (sim_st.ts)
		fclose(sim_st.ts);
	if (sim_st.pos)
		fclose(sim_st.pos);
	if (sim_sg.ts)
		fclose(sim_sg.ts);
	if (sim_sg.cells)
		fclose(sim_sg.cells);
	if (sim_st.legs)
		fclose(sim_st.legs);
	sim_surge_map_fini(&sim_sg.map);
	rh_free(sim_st.drv);
	rh_free(sim_st.rid);
	rh_free(sim_st.recs);
	rh_free(sim_st.tmap);
	rh_free(sim_st.track);
	sim_demand_fini(&sim_st.dem);
	routing_free(sim_st.routing);
	if (sim_st.map_path)
		config_fini(&sim_st.cfg);
}

int main(int argc, char **argv)
{
	sim_parse_args(argc, argv);
	sim_st.tty = isatty(2);
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	snprintf(sim_st.run_id, sizeof sim_st.run_id, "%lx%04x", (unsigned long)time(NULL), (unsigned)getpid() & 0xffff);
	int rc = sim_load_map();
	if (rc)
		return rc;
	if (sim_st.routing)
		sim_find_anchor();
	sim_build_demand();
	sim_demand_onto_roads();
	if (!sim_st.quiet && sim_st.have_anchor)
		fprintf(stderr, "sim: %d demand points moved onto the nearest usable road, %d with none within 2 km\n",
			sim_st.moved_onto_roads, sim_st.unroutable);
	char outbuf[4096];
	if (!sim_st.out_dir) {
		snprintf(outbuf, sizeof outbuf, "var/sim/%s", sim_st.run_id);
		sim_st.out_dir = outbuf;
	}
	sim_mkdir_p(sim_st.out_dir);
	sim_write_demand_csv();
	if (sim_st.dry_run) {
		fprintf(stderr, "sim: %zu requests planned over %.0f simulated s: %s/demand.csv\n", sim_planned_requests(),
			sim_st.duration, sim_st.out_dir);
		sim_free_all();
		return 0;
	}
	if (!sim_open_outputs())
		return 2;
	sim_loop();
	sim_free_all();
	return sim_st.exit_code;
}
