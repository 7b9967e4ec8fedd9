/* ridehail-sim: surge: price-sensitive riders, drifting drivers, the surge map over time. */
#include "simtool.h"

static void sim_surge_polled(void *arg, const struct simc_reply *rep);


/* The quote's multiplier, counted; true when the rider walks away from it
 * (a price-sensitive rider, the multiplier above the most they pay). */
bool sim_surge_rider_declines(struct sim_rider *r, const cJSON *quote)
{
	double m = 1.0;
	const cJSON *fare = cJSON_GetObjectItemCaseSensitive(quote, "fare");
	sim_jnum(fare, "surge_multiplier", &m);
	sim_sg.quotes++;
	sim_sg.iv_quotes++;
	sim_sg.quoted_sum += m;
	if (m > 1.0 + 1e-9) {
		sim_sg.quotes_surged++;
		sim_sg.iv_surged++;
	}
	if (sim_sg.sensitive <= 0 || sim_rng_unit(&r->rng) >= sim_sg.sensitive)
		return false;
	if (!sim_surge_declines(m, sim_rng_range(&r->rng, sim_sg.max_lo, sim_sg.max_hi)))
		return false;
	sim_sg.declined++;
	sim_sg.iv_declined++;
	return true;
}

/* An idle driver drifts: now and then (--surge-drift per simulated
 * minute) it looks at the surge map and heads for the highest cell within
 * reach that beats its own. */
void sim_surge_drift(struct sim_drv *d, double dt)
{
	if (sim_sg.drift <= 0 || d->moving || sim_rng_unit(&d->rng) >= sim_sg.drift * dt / 60.0)
		return;
	int c = sim_surge_drift_target(&sim_sg.map, d->lat, d->lon, sim_sg.drift_radius_m, sim_sg.drift_gain);
	if (c < 0)
		return;
	if (sim_drive_to_route(d, sim_sg.map.cell[c].lat, sim_sg.map.cell[c].lon, MODE_IDLE, false))
		sim_sg.drifts++;
}

static void sim_surge_polled(void *arg, const struct simc_reply *rep)
{
	(void)arg;
	sim_sg.polling = false;
	if (rep->status != 200 || !sim_surge_map_parse(&sim_sg.map, rep->body)) {
		sim_protocol_error("GET /v1/surge/cells: %d %.200s", rep->status, rep->body);
		return;
	}
	size_t surged;
	double max, mean;
	sim_surge_map_stats(&sim_sg.map, &surged, &max, &mean);
	if (max > sim_sg.max_seen)
		sim_sg.max_seen = max;
	if (sim_sg.ts)
		fprintf(sim_sg.ts, "%.0f,%zu,%zu,%.2f,%.3f,%d,%d,%d\n", sim_st.now, sim_sg.map.n, surged, max, mean, sim_sg.iv_quotes,
			sim_sg.iv_surged, sim_sg.iv_declined);
	sim_sg.iv_quotes = sim_sg.iv_surged = sim_sg.iv_declined = 0;
	for (size_t i = 0; sim_sg.cells && i < sim_sg.map.n; i++) {
		const struct sim_cell *c = &sim_sg.map.cell[i];
		fprintf(sim_sg.cells, "%.0f,%s,%.6f,%.6f,%.2f,%d,%d\n", sim_st.now, c->id, c->lat, c->lon, c->m, c->demand,
			c->supply);
	}
}

/* The surge map every --interval (the drivers' and the report's). */
void sim_surge_tick(void)
{
	if (sim_sg.polling || sim_st.now < sim_sg.next_poll)
		return;
	sim_sg.next_poll = sim_st.now + sim_st.interval;
	sim_sg.polling = true;
	simc_http(sim_st.pool, "GET", "/v1/surge/cells?vehicle_type=standard", NULL, NULL, NULL, sim_surge_polled, NULL);
}

void sim_surge_open_files(void)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/surge.csv", sim_st.out_dir);
	sim_sg.ts = fopen(path, "w");
	snprintf(path, sizeof path, "%s/surge_cells.csv", sim_st.out_dir);
	sim_sg.cells = fopen(path, "w");
	if (sim_sg.ts)
		fprintf(sim_sg.ts, "t_s,cells,surged_cells,max_multiplier,mean_multiplier,quotes,quotes_surged,declined\n");
	if (sim_sg.cells)
		fprintf(sim_sg.cells, "t_s,cell,lat,lon,multiplier,demand,supply\n");
}

/* summary.json's "surge" member. */
void sim_surge_summary(char *out, size_t cap)
{
	snprintf(out, cap,
		 "  \"surge\": {\"quotes\": %d, \"quotes_surged\": %d, \"quotes_surged_pct\": %.2f, "
		 "\"mean_quoted_multiplier\": %.3f, \"max_multiplier\": %.2f, \"declined\": %d, \"drifts\": %d, "
		 "\"price_sensitive\": %g, \"max_accepted\": [%g, %g], \"drift_per_min\": %g}",
		 sim_sg.quotes, sim_sg.quotes_surged, sim_sg.quotes ? 100.0 * sim_sg.quotes_surged / sim_sg.quotes : 0,
		 sim_sg.quotes ? sim_sg.quoted_sum / sim_sg.quotes : 1.0, sim_sg.max_seen > 1 ? sim_sg.max_seen : 1.0, sim_sg.declined, sim_sg.drifts,
		 sim_sg.sensitive, sim_sg.max_lo, sim_sg.max_hi, sim_sg.drift);
}

/* The highest multiplier each cell reached, read back from surge_cells.csv
 * (past its header line) into best. */
static void sim_surge_best_cells(FILE *in, struct sim_surge_map *best)
{
	char line[256];
	if (!fgets(line, sizeof line, in))
		return;
	while (fgets(line, sizeof line, in)) {
		char id[28];
		double t, lat, lon, m;
		if (sscanf(line, "%lf,%27[^,],%lf,%lf,%lf", &t, id, &lat, &lon, &m) != 5)
			continue;
		size_t k;
		for (k = 0; k < best->n && strcmp(best->cell[k].id, id) != 0; k++)
			;
		if (k == best->n) {
			if (best->n == best->cap) {
				best->cap = best->cap ? 2 * best->cap : 256;
				best->cell = rh_realloc(best->cell, best->cap * sizeof *best->cell);
			}
			memset(&best->cell[k], 0, sizeof best->cell[k]);
			snprintf(best->cell[k].id, sizeof best->cell[k].id, "%s", id);
			best->n++;
		}
		if (m >= best->cell[k].m) {
			best->cell[k].m = m;
			best->cell[k].lat = lat;
			best->cell[k].lon = lon;
		}
	}
}

/* surge_hex.csv: each cell's hexagon at its highest multiplier, for the map. */
static void sim_surge_write_hex(void)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/surge_hex.csv", sim_st.out_dir);
	FILE *hex = fopen(path, "w");
	snprintf(path, sizeof path, "%s/surge_cells.csv", sim_st.out_dir);
	FILE *in = fopen(path, "r");
	if (hex && in) {
		/* the last map's ring per cell id, at the highest multiplier seen */
		struct sim_surge_map best;
		sim_surge_map_init(&best);
		sim_surge_best_cells(in, &best);
		for (size_t k = 0; k < best.n; k++) {
			/* the ring, if the last map still had the cell; else a
			 * hexagon of the grid's size around its centre */
			const struct sim_cell *c = NULL;
			for (size_t i = 0; i < sim_sg.map.n && !c; i++)
				if (!strcmp(sim_sg.map.cell[i].id, best.cell[k].id))
					c = &sim_sg.map.cell[i];
			for (int i = 0; i <= 6; i++) {
				double lat = c ? c->ring_lat[i % 6] : best.cell[k].lat + 0.0127 * sin((30 + 60 * (i % 6)) * M_PI / 180);
				double lon = c ? c->ring_lon[i % 6] : best.cell[k].lon + 0.0168 * cos((30 + 60 * (i % 6)) * M_PI / 180);
				fprintf(hex, "%.6f,%.6f,%.2f\n", lon, lat, best.cell[k].m);
			}
			fprintf(hex, "\n");
		}
		sim_surge_map_fini(&best);
	}
	if (in)
		fclose(in);
	if (hex)
		fclose(hex);
}

/* surge.png (the multipliers over time) and surge_map.png (each cell at
 * the highest multiplier it reached), from surge.csv and surge_cells.csv. */
void sim_surge_write_plots(void)
{
	if (sim_sg.ts)
		fflush(sim_sg.ts);
	if (sim_sg.cells)
		fflush(sim_sg.cells);
	sim_surge_write_hex();
	char path[4200];
	snprintf(path, sizeof path, "%s/surge.gp", sim_st.out_dir);
	FILE *f = fopen(path, "w");
	if (!f)
		return;
	fprintf(f,
		"# gnuplot script written by ridehail-sim; run from this directory: gnuplot surge.gp\n"
		"set datafile separator ','\nset terminal pngcairo size 900,520 noenhanced\nset key top left\nset grid\n"
		"set output 'surge.png'\nset title 'Surge over time (GET /v1/surge/cells every %.0f s)'\n"
		"set xlabel 'simulated s'\nset ylabel 'multiplier'\nset y2label 'cells'\nset ytics nomirror\n"
		"set y2tics\nset yrange [1:*]\n"
		"plot 'surge.csv' every ::1 using 1:4 with lines lw 2 title 'highest multiplier', "
		"'' every ::1 using 1:5 with lines lw 2 title 'mean over cells', "
		"'' every ::1 using 1:3 axes x1y2 with steps title 'cells above 1'\n"
		"unset y2tics\nunset y2label\nset yrange [*:*]\n"
		"set terminal pngcairo size 1100,800 noenhanced\nset output 'surge_map.png'\n"
		"set title 'Surge per cell: the highest multiplier each reached, with the pickups'\n"
		"set xlabel 'lon'\nset ylabel 'lat'\nset size ratio -1\nset xrange [%.5f:%.5f]\nset yrange [%.5f:%.5f]\n"
		"set format x '%%.3f'\nset xtics rotate by -45\nset key below\n"
		"set palette defined (1 '#f7f7f7', 1.5 '#fdd49e', 2 '#fc8d59', 3 '#b30000')\nset cbrange [1:*]\n"
		"set cblabel 'multiplier'\n"
		"plot 'surge_hex.csv' using 1:2:3 with filledcurves closed fillcolor palette z notitle, "
		"'' using 1:2 with lines lc rgb '#777777' title 'cells', "
		"'trips.csv' every ::1 using 7:6 with points pt 7 ps 0.3 lc rgb '#333333' title 'pickups'\n",
		sim_st.interval, sim_st.box.min_lon, sim_st.box.max_lon, sim_st.box.min_lat, sim_st.box.max_lat);
	fclose(f);
	if (!sim_have_gnuplot())
		return;
	char cmd[4300];
	snprintf(cmd, sizeof cmd, "cd '%s' && gnuplot surge.gp 2> surge_plots.log", sim_st.out_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "sim: gnuplot failed on surge.gp (see %s/surge_plots.log)\n", sim_st.out_dir);
}
