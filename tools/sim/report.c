/* ridehail-sim: the report: trips.csv, streets, plots and the summary. */
#include "simtool.h"

static void sim_write_trips_csv(void);
static uint64_t sim_segment_key(const double *a, const double *b);
static void sim_write_streets_csv(void);
static void sim_write_plots(void);

static void sim_write_trips_csv(void)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/trips.csv", sim_st.out_dir);
	FILE *f = fopen(path, "w");
	if (!f)
		return;
	static const char *const out[] = { "pending", "no_quote", "refused", "no_rider", "completed", "cancelled",
					   "declined" };
	fprintf(f, "t_request,outcome,time_to_match_s,pickup_wait_s,trip_time_s,pickup_lat,pickup_lon,cancel_reason\n");
	for (size_t i = 0; i < sim_st.nrecs; i++) {
		const struct sim_trip_rec *r = &sim_st.recs[i];
		fprintf(f, "%.1f,%s,", r->t_request, out[r->outcome]);
		if (r->t_matched >= 0 && r->t_created >= 0)
			fprintf(f, "%.2f", r->t_matched - r->t_created);
		fprintf(f, ",");
		if (r->t_arrived >= 0 && r->t_created >= 0)
			fprintf(f, "%.2f", r->t_arrived - r->t_created);
		fprintf(f, ",");
		if (r->t_completed >= 0 && r->t_started >= 0)
			fprintf(f, "%.2f", r->t_completed - r->t_started);
		fprintf(f, ",%.6f,%.6f,%s\n", r->plat, r->plon, r->cancel_reason);
	}
	fclose(f);
}

bool sim_have_gnuplot(void)
{
	return system("command -v gnuplot >/dev/null 2>&1") == 0;
}

/* 64-bit FNV-1a of a road segment's two ends (micro-degrees). */
static uint64_t sim_segment_key(const double *a, const double *b)
{
	int64_t v[4] = { llround(a[0] * 1e6), llround(a[1] * 1e6), llround(b[0] * 1e6), llround(b[1] * 1e6) };
	if (v[0] > v[2] || (v[0] == v[2] && v[1] > v[3])) { /* one key for both directions */
		int64_t t0 = v[0], t1 = v[1];
		v[0] = v[2];
		v[1] = v[3];
		v[2] = t0;
		v[3] = t1;
	}
	uint64_t h = 1469598103934665603ull;
	const unsigned char *p = (const unsigned char *)v;
	for (size_t i = 0; i < sizeof v; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return h ? h : 1;
}

/* The streets drawn under map.png (streets.csv, one "lon,lat" pair per
 * line, a blank line after each segment): the road geometry of the routes
 * between neighbouring points of a grid over the area, about 60 steps on
 * its longer side, so that it runs along nearly every road of the loaded map
 * a car can use (each segment written once). */
static void sim_write_streets_csv(void)
{
	if (!sim_st.routing)
		return;
	char path[4200];
	snprintf(path, sizeof path, "%s/streets.csv", sim_st.out_dir);
	FILE *f = fopen(path, "w");
	if (!f)
		return;
	fprintf(f, "# lon,lat: road segments of the map, a blank line after each\n");
	double mid = (sim_st.box.min_lat + sim_st.box.max_lat) / 2 * M_PI / 180;
	double w = (sim_st.box.max_lon - sim_st.box.min_lon) * 111320 * cos(mid), h = (sim_st.box.max_lat - sim_st.box.min_lat) * 110574;
	double step = fmax(fmax(w, h) / 60, 40);
	int nx = (int)(w / step) + 1, ny = (int)(h / step) + 1;
	size_t cap = 1 << 16, n = 0;
	uint64_t *seen = rh_calloc(cap, sizeof *seen);
	for (int iy = 0; iy <= ny; iy++) {
		for (int ix = 0; ix <= nx; ix++) {
			double lat = sim_st.box.min_lat + (sim_st.box.max_lat - sim_st.box.min_lat) * iy / ny;
			double lon = sim_st.box.min_lon + (sim_st.box.max_lon - sim_st.box.min_lon) * ix / nx;
			for (int k = 0; k < 2; k++) {
				double tlat = k ? lat + (sim_st.box.max_lat - sim_st.box.min_lat) / ny : lat;
				double tlon = k ? lon : lon + (sim_st.box.max_lon - sim_st.box.min_lon) / nx;
				struct route_result res;
				if (routing_route(sim_st.routing, lat, lon, tlat, tlon, true, &res) != RH_OK)
					continue;
				for (size_t i = 1; i < res.npoints; i++) {
					const double *a = &res.coords[2 * (i - 1)], *b = &res.coords[2 * i];
					if (n * 2 >= cap) { /* grow: rehash */
						uint64_t *old = seen;
						size_t ocap = cap;
						cap *= 2;
						seen = rh_calloc(cap, sizeof *seen);
						for (size_t j = 0; j < ocap; j++)
							if (old[j]) {
								size_t q = old[j] & (cap - 1);
								while (seen[q])
									q = (q + 1) & (cap - 1);
								seen[q] = old[j];
							}
						rh_free(old);
					}
					uint64_t key = sim_segment_key(a, b);
					size_t q = key & (cap - 1);
					while (seen[q] && seen[q] != key)
						q = (q + 1) & (cap - 1);
					if (seen[q])
						continue;
					seen[q] = key;
					n++;
					fprintf(f, "%.6f,%.6f\n%.6f,%.6f\n\n", a[0], a[1], b[0], b[1]);
				}
			}
		}
	}
	rh_free(seen);
	fclose(f);
}

static void sim_write_plots(void)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/plots.gp", sim_st.out_dir);
	FILE *f = fopen(path, "w");
	if (!f)
		return;
	/* The map in kilometres east and north of the box's south-west corner:
	 * a degree of longitude is cos(latitude) times a degree of latitude, and
	 * plotting degrees as they are stretches the map east-west. */
	double lat0 = sim_st.box.min_lat, lon0 = sim_st.box.min_lon;
	double kx = 111.320 * cos((sim_st.box.min_lat + sim_st.box.max_lat) / 2 * M_PI / 180), ky = 110.574;
	fprintf(f,
		"# gnuplot script written by ridehail-sim; run from this directory: gnuplot plots.gp\n"
		"set datafile separator ','\nset terminal pngcairo size 900,520 noenhanced\nset key top left\nset grid\n"
		"set output 'requests_matches.png'\n"
		"set title 'Requests, matches, completions and cancellations so far (sampled every %.0f simulated s)'\n"
		"set xlabel 'simulated s'\nset ylabel 'trips (cumulative)'\nset xrange [0:*]\nset yrange [0:*]\n"
		"a=0; b=0; c=0; e=0\n"
		"plot 'timeseries.csv' every ::1 using 1:(a=a+$2) with lines lw 2 title 'requests', "
		"'' every ::1 using 1:(b=b+$4) with lines lw 2 title 'matched', "
		"'' every ::1 using 1:(c=c+$5) with lines title 'completed', "
		"'' every ::1 using 1:(e=e+$6) with lines title 'cancelled'\n"
		"set output 'utilisation.png'\nset title 'Driver utilisation: busy / online drivers at each sample'\n"
		"set ylabel 'busy fraction'\nset yrange [0:1]\n"
		"plot 'timeseries.csv' every ::1 using 1:9 with lines lw 2 title 'utilisation'\n"
		"set output 'wait_hist.png'\nset title 'Time to match and pickup wait, from the ride request (10 s bins)'\n"
		"set xlabel 'seconds after the request'\nset ylabel 'trips'\nset xrange [0:*]\nset yrange [0:*]\n"
		"bin(x) = 10*floor(x/10)+5\nset boxwidth 9\nset style fill transparent solid 0.5\n"
		"plot 'trips.csv' every ::1 using (bin($3)):(1) smooth frequency with boxes title 'time to match', "
		"'' every ::1 using (bin($4)):(1) smooth frequency with boxes title 'pickup wait'\n"
		"set style fill empty\n"
		"lat0 = %.6f; lon0 = %.6f; kx = %.5f; ky = %.5f\nX(lon) = (lon - lon0) * kx\nY(lat) = (lat - lat0) * ky\n"
		"idle(s) = s eq 'idle' || s eq 'offered' || s eq 'accepting'\n"
		"topickup(s) = s eq 'to_pickup' || s eq 'arriving' || s eq 'boarding'\n"
		"rider(s) = s eq 'starting' || s eq 'on_trip' || s eq 'completing'\n"
		"set terminal pngcairo size 1100,900 noenhanced\nset output 'map.png'\n"
		"set title 'Pickups and drivers (positions sampled every %.0f simulated s) on the roads of the map'\n"
		"set xlabel sprintf('km east of %%.4f', lon0)\nset ylabel sprintf('km north of %%.4f', lat0)\n"
		"set size ratio -1\nset xrange [0:%.4f]\nset yrange [0:%.4f]\nset key below horizontal\n"
		"plot %s"
		"'positions.csv' every ::1 using (idle(strcol(5)) ? X($4) : NaN):(Y($3)) with points pt 7 ps 0.35 "
		"lc rgb '#8a8ac8' title 'idle drivers', "
		"'' every ::1 using (topickup(strcol(5)) ? X($4) : NaN):(Y($3)) with points pt 7 ps 0.5 lc rgb '#e08a00' "
		"title 'drivers on the way to a pickup', "
		"'' every ::1 using (rider(strcol(5)) ? X($4) : NaN):(Y($3)) with points pt 7 ps 0.5 lc rgb '#1a9850' "
		"title 'drivers with a rider', "
		"'trips.csv' every ::1 using (strcol(2) eq 'completed' ? X($7) : NaN):(Y($6)) with points pt 6 ps 1.3 lw 2 "
		"lc rgb '#d7191c' title 'pickups (trip completed)', "
		"'' every ::1 using (strcol(2) ne 'completed' ? X($7) : NaN):(Y($6)) with points pt 2 ps 1.1 lw 2 "
		"lc rgb '#000000' title 'pickups (not completed)'\n",
		sim_st.interval, lat0, lon0, kx, ky, sim_st.interval, (sim_st.box.max_lon - lon0) * kx, (sim_st.box.max_lat - lat0) * ky,
		sim_st.routing ? "'streets.csv' using (X($1)):(Y($2)) with lines lw 1 lc rgb '#c8c8c8' title 'roads of the map', "
			  : "");
	fclose(f);
	sim_write_streets_csv();
	if (!sim_have_gnuplot()) {
		fprintf(stderr, "sim: gnuplot is not installed: plots skipped (apt-get install gnuplot-nox; then run "
				"`gnuplot plots.gp` in %s)\n", sim_st.out_dir);
		return;
	}
	char cmd[4200];
	snprintf(cmd, sizeof cmd, "cd '%s' && gnuplot plots.gp 2> plots.log", sim_st.out_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "sim: gnuplot failed (see %s/plots.log)\n", sim_st.out_dir);
}

/* summary.json's members beyond the figures: the run, the rider's view of
 * its driver, surge, repositioning, shared rides. */
static void sim_extra_members(char *out, size_t cap, const struct sim_report *rep)
{
	char sg[512], sh[768];
	sim_surge_summary(sg, sizeof sg);
	sim_share_summary(sh, sizeof sh, rep->deadhead_km + rep->trip_km + rep->reposition_km);
	int n = snprintf(out, cap,
		 "  \"run\": {\"seed\": %llu, \"drivers\": %d, \"riders\": %d, \"duration_s\": %.0f, \"drain_s\": %.0f, "
		 "\"speed\": %g, \"demand\": \"%s\", \"demand_rows\": %zu, \"demand_mult\": %d, \"map\": %s, "
		 "\"simulated_s\": %.1f, \"login_retries\": %d, \"straight_line_fallbacks\": %d},\n"
		 "  \"driver_location_msgs\": %zu,\n  \"track_distance_m\": {\"p50\": %.1f, \"p95\": %.1f},\n%s",
		 (unsigned long long)sim_st.seed, sim_st.ndrivers, sim_st.nriders, sim_st.duration, sim_st.drain, sim_st.speed,
		 sim_st.demand, sim_st.dem.n, sim_st.demand_mult, sim_st.routing ? "true" : "false", sim_st.now,
		 sim_st.login_retries, sim_st.route_fail, sim_st.ntrack, sim_percentile(sim_st.track, sim_st.ntrack, 50),
		 sim_percentile(sim_st.track, sim_st.ntrack, 95), sg);
	if (n < 0 || (size_t)n >= cap)
		return;
	snprintf(out + n, cap - (size_t)n,
		 ",\n  \"reposition\": {\"follow_p\": %.3f, \"suggestions\": %d, \"suggestions_idle\": %d, "
		 "\"followed\": %d, \"followed_pct\": %.2f},\n%s",
		 sim_st.follow_p, sim_st.suggestions, sim_st.suggestions_idle, sim_st.suggestions_followed,
		 sim_st.suggestions_idle ? 100.0 * sim_st.suggestions_followed / sim_st.suggestions_idle : 0, sh);
}

void sim_finish(void)
{
	if (sim_st.ending)
		return;
	sim_st.ending = true;
	sim_now();
	sim_sample();
	sim_progress(true);
	struct sim_driver_acc *acc = rh_calloc((size_t)sim_st.ndrivers + 1, sizeof *acc);
	for (int i = 0; i < sim_st.ndrivers; i++) {
		struct sim_drv *d = &sim_st.drv[i];
		acc[i] = d->acc;
		if (d->st != D_SETUP)
			acc[i].online_s = sim_st.now - d->online_since;
		if (d->busy_since >= 0)
			acc[i].busy_s += sim_st.now - d->busy_since;
	}
	struct sim_report rep;
	sim_report_compute(sim_st.recs, sim_st.nrecs, acc, (size_t)sim_st.ndrivers, sim_st.protocol_errors, sim_st.breaches, &rep);
	rh_free(acc);
	char extra[4096], path[4096];
	sim_extra_members(extra, sizeof extra, &rep);
	snprintf(path, sizeof path, "%s/summary.json", sim_st.out_dir);
	FILE *f = fopen(path, "w");
	if (f) {
		sim_report_write_json(&rep, f, extra);
		fclose(f);
	}
	fflush(sim_st.ts);
	fflush(sim_st.pos);
	sim_write_trips_csv();
	sim_write_plots();
	sim_surge_write_plots();
	sim_report_write_json(&rep, stdout, extra);
	struct sim_text_ctx tc = { .drivers = sim_st.ndrivers, .duration_s = sim_st.duration, .compress = sim_st.compress,
				   .replay = !strcmp(sim_st.demand, "replay") };
	snprintf(path, sizeof path, "%s/summary.txt", sim_st.out_dir);
	f = fopen(path, "w");
	if (f) {
		sim_report_write_text(&rep, &tc, f);
		fclose(f);
	}
	fprintf(stderr, "sim: report in %s (summary.txt, summary.json, timeseries.csv, trips.csv, positions.csv, *.png)\n",
		sim_st.out_dir);
	if (sim_st.reconnects || sim_st.resends)
		fprintf(stderr, "sim: rode through faults: %d sockets opened again, %d commands and requests sent again\n",
			sim_st.reconnects, sim_st.resends);
	if (rep.protocol_errors || rep.invariant_breaches) {
		fprintf(stderr, "sim: FAILED: %d protocol errors, %d invariant breaches\n", rep.protocol_errors,
			rep.invariant_breaches);
		sim_st.exit_code = 1;
	}
	for (int i = 0; i < sim_st.ndrivers; i++)
		simc_ws_close(sim_st.drv[i].ws);
	for (int i = 0; i < sim_st.nriders; i++)
		simc_ws_close(sim_st.rid[i].ws);
	event_base_loopbreak(sim_st.base);
}

void sim_on_sigint(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (!sim_st.running) {
		event_base_loopbreak(sim_st.base);
		sim_st.exit_code = 130;
		return;
	}
	sim_finish();
}
