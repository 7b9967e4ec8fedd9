/* `ridehaild map calibrate`: travel times learned from completed trips.
 *
 * Each trip (pickup and drop-off place, local hour of the week, real
 * duration T) is routed on the map at the imported (free-flow) speeds,
 * which gives the seconds t_c it spends on each road class c. The model:
 *
 *     T ~ H[h] * (sum_c f_c * t_c + b)
 *
 * f_c: how much slower than free flow class c drives; b: a fixed overhead
 * per trip (lights at the ends, pulling in and out); H[h]: the hour of the
 * week, a multiplier of the whole route. The f_c and b are fitted by
 * least squares on relative errors with a ridge that holds a class with few
 * trips near the overall ratio; H by the mean log residual of each hour of
 * the week, shrunk toward its hour of a weekday / Saturday / Sunday, itself
 * shrunk toward all hours (168 hours from a few thousand trips would
 * otherwise fit noise); the two alternate. A fifth of the trips (fixed by
 * their position) are held out and never fitted: the figures printed and
 * kept in the profile are measured on them, through the same code the
 * daemon answers with. The range [range_lo, range_hi] x duration is the
 * 10th and 90th percentile of T / predicted on the fitted trips.
 *
 * Because H multiplies the whole route, the fastest route does not depend
 * on the hour: the hierarchy is rebuilt once on f_c-weighted edges and the
 * hour applies to the total at request time. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/settings.h"
#include "graph.h"
#include "trips.h"

#define CAL_C RMAP_CLASSES
#define CAL_HELD_MOD 5

struct calibrate_trip {
	struct trips_csv_row t;
	double cls_s[CAL_C]; /* free-flow seconds per road class */
	double ff_s, dist_m;
	bool held;
};

struct calibrate_model {
	double f[CAL_C], b, h[RMAP_HOURS];
};

static uint64_t calibrate_mix(uint64_t z)
{
	z += 0x9e3779b97f4a7c15ULL;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static int calibrate_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double calibrate_quantile(double *v, size_t n, double q)
{
	if (n == 0)
		return NAN;
	qsort(v, n, sizeof *v, calibrate_cmp);
	double pos = q * (double)(n - 1);
	size_t i = (size_t)pos;
	double frac = pos - (double)i;
	return i + 1 < n ? v[i] * (1 - frac) + v[i + 1] * frac : v[i];
}

static double calibrate_base(const struct calibrate_model *m, const struct calibrate_trip *c)
{
	double s = m->b;
	for (int k = 0; k < CAL_C; k++)
		s += m->f[k] * c->cls_s[k];
	return s;
}

/* Solves A x = y (n x n, in place) by Gaussian elimination with pivoting. */
static bool calibrate_solve(double *a, double *y, int n)
{
	for (int i = 0; i < n; i++) {
		int p = i;
		for (int r = i + 1; r < n; r++)
			if (fabs(a[r * n + i]) > fabs(a[p * n + i]))
				p = r;
		if (fabs(a[p * n + i]) < 1e-12)
			return false;
		if (p != i) {
			for (int c = 0; c < n; c++) {
				double t = a[i * n + c];
				a[i * n + c] = a[p * n + c];
				a[p * n + c] = t;
			}
			double t = y[i];
			y[i] = y[p];
			y[p] = t;
		}
		for (int r = i + 1; r < n; r++) {
			double k = a[r * n + i] / a[i * n + i];
			for (int c = i; c < n; c++)
				a[r * n + c] -= k * a[i * n + c];
			y[r] -= k * y[i];
		}
	}
	for (int i = n - 1; i >= 0; i--) {
		for (int c = i + 1; c < n; c++)
			y[i] -= a[i * n + c] * y[c];
		y[i] /= a[i * n + i];
	}
	return true;
}

static int calibrate_daytype(int how)
{
	int dow = how / 24;
	return dow < 5 ? 0 : dow == 5 ? 1 : 2;
}

static void calibrate_fit(const struct calibrate_trip *v, size_t n, struct calibrate_model *m)
{
	double *ratio = rh_malloc((n + 1) * sizeof *ratio);
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (!v[i].held)
			ratio[k++] = v[i].t.duration_s / v[i].ff_s;
	double prior = calibrate_quantile(ratio, k, 0.5);
	rh_free(ratio);
	for (int c = 0; c < CAL_C; c++)
		m->f[c] = prior;
	m->b = 0;
	for (int h = 0; h < RMAP_HOURS; h++)
		m->h[h] = 1;
	enum { N = CAL_C + 1 };
	for (int iter = 0; iter < 25; iter++) {
		/* f and b given H: weighted least squares on relative error, ridge to the prior */
		double a[N * N] = { 0 }, y[N] = { 0 };
		for (size_t i = 0; i < n; i++) {
			if (v[i].held)
				continue;
			double target = v[i].t.duration_s / m->h[v[i].t.how], w = 1 / (target * target);
			double x[N];
			for (int c = 0; c < CAL_C; c++)
				x[c] = v[i].cls_s[c];
			x[CAL_C] = 1;
			for (int r = 0; r < N; r++) {
				y[r] += w * x[r] * target;
				for (int c = 0; c < N; c++)
					a[r * N + c] += w * x[r] * x[c];
			}
		}
		const double pseudo = 20 / (prior * prior); /* about 20 trips' worth at the prior */
		for (int c = 0; c < CAL_C; c++) {
			a[c * N + c] += pseudo;
			y[c] += pseudo * prior;
		}
		a[CAL_C * N + CAL_C] += 1e-6;
		if (calibrate_solve(a, y, N)) {
			for (int c = 0; c < CAL_C; c++)
				m->f[c] = fmin(fmax(y[c], 1.0), 50.0);
			m->b = fmin(fmax(y[CAL_C], 0.0), 600.0);
		}
		/* H given f and b: mean log residuals, shrunk hour -> day type and hour -> all */
		double sum_all = 0, sum_g[3][24] = { { 0 } }, sum_h[RMAP_HOURS] = { 0 };
		double cnt_all = 0, cnt_g[3][24] = { { 0 } }, cnt_h[RMAP_HOURS] = { 0 };
		for (size_t i = 0; i < n; i++) {
			if (v[i].held)
				continue;
			int h = v[i].t.how;
			double r = log(v[i].t.duration_s / calibrate_base(m, &v[i]));
			sum_all += r, cnt_all++;
			sum_g[calibrate_daytype(h)][h % 24] += r, cnt_g[calibrate_daytype(h)][h % 24]++;
			sum_h[h] += r, cnt_h[h]++;
		}
		double g = cnt_all ? sum_all / cnt_all : 0;
		for (int h = 0; h < RMAP_HOURS; h++) {
			int d = calibrate_daytype(h);
			double grp = (sum_g[d][h % 24] + 30 * g) / (cnt_g[d][h % 24] + 30);
			double own = (sum_h[h] + 15 * grp) / (cnt_h[h] + 15);
			m->h[h] = exp(own);
		}
		/* the scale lives in f and b: H averages 1 in log over the trips */
		double mean = 0;
		for (size_t i = 0; i < n; i++)
			if (!v[i].held)
				mean += log(m->h[v[i].t.how]);
		mean = cnt_all ? mean / cnt_all : 0;
		for (int h = 0; h < RMAP_HOURS; h++)
			m->h[h] = fmin(fmax(m->h[h] / exp(mean), 0.2), 5.0);
		for (int c = 0; c < CAL_C; c++)
			m->f[c] = fmin(m->f[c] * exp(mean), 50.0);
		m->b = fmin(m->b * exp(mean), 600.0);
	}
}

/* Reads and routes the trips; t_c per class at free flow. */
static rh_err calibrate_collect(struct routing *ff, const struct trips_csv *tl, struct calibrate_trip **out, size_t *nout,
			  size_t *off_map)
{
	struct calibrate_trip *v = rh_calloc(tl->n + 1, sizeof *v);
	size_t n = 0;
	*off_map = 0;
	for (size_t i = 0; i < tl->n; i++) {
		const struct trips_csv_row *t = &tl->v[i];
		struct calibrate_trip c = { .t = *t, .held = calibrate_mix(i) % CAL_HELD_MOD == 0 };
		if (t->duration_s < 60 || t->duration_s > 3 * 3600)
			continue;
		if (graph_route_split(ff, t->plat, t->plon, t->dlat, t->dlon, c.cls_s, &c.dist_m) != RH_OK) {
			(*off_map)++;
			continue;
		}
		for (int k = 0; k < CAL_C; k++)
			c.ff_s += c.cls_s[k];
		double speed = c.dist_m / t->duration_s;
		if (c.dist_m < 300 || c.ff_s <= 0 || speed < 0.5 || speed > 30)
			continue;
		/* the meter and the route disagree: a detour, a stop, or a bad fix */
		if (t->meter_m > 0 && (c.dist_m / t->meter_m < 0.6 || c.dist_m / t->meter_m > 1.6))
			continue;
		v[n++] = c;
	}
	*out = v;
	*nout = n;
	return RH_OK;
}

struct calibrate_figures {
	size_t n;
	double mape_ff, mape, cover, bias;
};

/* Held-out trips through the calibrated map, as the daemon answers. */
static void calibrate_validate(struct routing *cal, const struct calibrate_trip *v, size_t n, struct calibrate_figures *f)
{
	double *ape = rh_malloc((n + 1) * sizeof *ape), *ape_ff = rh_malloc((n + 1) * sizeof *ape_ff);
	double *bias = rh_malloc((n + 1) * sizeof *bias);
	size_t k = 0, in = 0;
	for (size_t i = 0; i < n; i++) {
		if (!v[i].held)
			continue;
		struct route_result res;
		if (routing_route_at(cal, v[i].t.plat, v[i].t.plon, v[i].t.dlat, v[i].t.dlon, ROUTE_FAST, false, 0, &res) !=
		    RH_OK)
			continue;
		double dur, lo, hi, real = v[i].t.duration_s;
		graph_timing_how(cal, res.edges_s, v[i].t.how, &dur, &lo, &hi);
		ape[k] = fabs(dur - real) / real * 100;
		ape_ff[k] = fabs(v[i].ff_s - real) / real * 100;
		bias[k] = (dur - real) / real * 100;
		in += real >= lo && real <= hi;
		k++;
	}
	f->n = k;
	f->mape = calibrate_quantile(ape, k, 0.5);
	f->mape_ff = calibrate_quantile(ape_ff, k, 0.5);
	f->bias = calibrate_quantile(bias, k, 0.5);
	f->cover = k ? 100.0 * (double)in / (double)k : NAN;
	rh_free(ape);
	rh_free(ape_ff);
	rh_free(bias);
}

static rh_err calibrate_write(const char *map_path, const char *out_path, const struct mapfile_profile *p, bool rebuild,
			char *err, size_t errlen)
{
	uint8_t *buf;
	size_t len;
	rh_err e = graph_read_file(map_path, &buf, &len, err, errlen);
	if (e != RH_OK)
		return e;
	struct mapfile_data d;
	e = mapfile_parse(buf, len, &d, 0, true, err, errlen);
	rh_free(buf);
	if (e != RH_OK)
		return e;
	d.has_profile = true;
	d.profile = *p;
	if (rebuild && mapfile_build_ch(&d) != RH_OK) {
		snprintf(err, errlen, "cannot build the contraction hierarchy");
		mapfile_data_fini(&d);
		return RH_EINVAL;
	}
	e = mapfile_write(out_path, &d, err, errlen);
	mapfile_data_fini(&d);
	return e;
}

/* Every trip file's records into tl. */
static rh_err calibrate_trips_read(const char *const *trip_paths, size_t ntrips, struct trips_csv *tl, char *err,
				   size_t errlen)
{
	for (size_t i = 0; i < ntrips; i++) {
		uint8_t *buf;
		size_t len;
		char why[256];
		if (graph_read_file(trip_paths[i], &buf, &len, why, sizeof why) != RH_OK) {
			snprintf(err, errlen, "trips: %s", why);
			return RH_EIO;
		}
		rh_err e = trips_csv_parse((const char *)buf, len, tl, why, sizeof why);
		rh_free(buf);
		if (e != RH_OK) {
			snprintf(err, errlen, "%s: %s", trip_paths[i], why);
			return e;
		}
	}
	return RH_OK;
}

/* The profile of the fitted model m: its factors, and the range that the
 * middle 80% of the fitted trips' durations fall in around it. */
static void calibrate_profile(const struct calibrate_model *m, const struct calibrate_trip *v, size_t n, const char *tz,
			      struct mapfile_profile *p)
{
	memset(p, 0, sizeof *p);
	snprintf(p->tz, sizeof p->tz, "%s", tz);
	for (int c = 0; c < CAL_C; c++)
		p->class_factor[c] = (float)m->f[c];
	for (int h = 0; h < RMAP_HOURS; h++)
		p->hour_factor[h] = (float)m->h[h];
	p->overhead_s = (float)m->b;
	double *q = rh_malloc((n + 1) * sizeof *q);
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (!v[i].held)
			q[k++] = v[i].t.duration_s / (m->h[v[i].t.how] * calibrate_base(m, &v[i]));
	p->range_lo = (float)fmin(fmax(calibrate_quantile(q, k, 0.10), 0.01), 1.0);
	p->range_hi = (float)fmin(fmax(calibrate_quantile(q, k, 0.90), 1.0), 100.0);
	p->range_share = 0.8f;
	rh_free(q);
}

/* The figures of a calibration, one `name=value` a line. */
static void calibrate_report(FILE *report, const struct trips_csv *tl, size_t off_map, size_t nfit, size_t nheld,
			     const struct calibrate_model *m, const struct mapfile_profile *p,
			     const struct calibrate_figures *fig)
{
	static const char *const names[CAL_C] = { "motorway", "trunk", "primary", "secondary", "tertiary",
						  "unclassified", "residential", "service" };
	fprintf(report, "trips_rows=%zu\ntrips_unparsed=%zu\ntrips_off_map=%zu\ntrips_fit=%zu\ntrips_held=%zu\n",
		tl->rows, tl->bad, off_map, nfit, nheld);
	fprintf(report, "time_zone=%s\n", p->tz);
	for (int c = 0; c < CAL_C; c++)
		fprintf(report, "class_factor_%s=%.2f\n", names[c], m->f[c]);
	fprintf(report, "overhead_s=%.1f\n", m->b);
	double hmin = 1e9, hmax = 0;
	int amin = 0, amax = 0;
	for (int h = 0; h < RMAP_HOURS; h++) {
		if (m->h[h] < hmin)
			hmin = m->h[h], amin = h;
		if (m->h[h] > hmax)
			hmax = m->h[h], amax = h;
	}
	static const char *const days[7] = { "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun" };
	fprintf(report, "hour_factor_min=%.2f (%s %02d:00)\nhour_factor_max=%.2f (%s %02d:00)\n", hmin,
		days[amin / 24], amin % 24, hmax, days[amax / 24], amax % 24);
	fprintf(report, "range_lo=%.3f\nrange_hi=%.3f\n", p->range_lo, p->range_hi);
	fprintf(report, "held_out_trips=%zu\neta_mape_freeflow_pct=%.1f\neta_mape_pct=%.1f\neta_bias_pct=%.1f\n"
			"eta_range_cover_pct=%.1f\n",
		fig->n, fig->mape_ff, fig->mape, fig->bias, fig->cover);
}

rh_err routing_calibrate(const char *map_path, const char *const *trip_paths, size_t ntrips, const char *tz,
			 const struct routing_cfg *cfg, const char *out_path, FILE *report, char *err, size_t errlen)
{
	struct trips_csv tl = { 0 };
	rh_err e = calibrate_trips_read(trip_paths, ntrips, &tl, err, errlen);
	if (e != RH_OK) {
		trips_csv_fini(&tl);
		return e;
	}
	if (strlen(tz) >= sizeof((struct mapfile_profile *)0)->tz) {
		snprintf(err, errlen, "time zone name too long: %s", tz);
		trips_csv_fini(&tl);
		return RH_EINVAL;
	}
	struct routing *ff = NULL;
	e = graph_load(map_path, cfg, true, &ff, err, errlen);
	if (e != RH_OK) {
		trips_csv_fini(&tl);
		return e;
	}
	struct calibrate_trip *v;
	size_t n, off_map;
	calibrate_collect(ff, &tl, &v, &n, &off_map);
	routing_free(ff);
	size_t nfit = 0, nheld = 0;
	for (size_t i = 0; i < n; i++)
		*(v[i].held ? &nheld : &nfit) += 1;
	if (nfit < 50 || nheld < 10) {
		snprintf(err, errlen,
			 "too few usable trips on this map: %zu to fit and %zu to hold out (of %zu rows, %zu off the map)",
			 nfit, nheld, tl.rows, off_map);
		rh_free(v);
		trips_csv_fini(&tl);
		return RH_EINVAL;
	}
	struct calibrate_model m;
	calibrate_fit(v, n, &m);
	struct mapfile_profile p;
	calibrate_profile(&m, v, n, tz, &p);
	p.trips_fit = (uint32_t)nfit, p.trips_held = (uint32_t)nheld;
	e = calibrate_write(map_path, out_path, &p, true, err, errlen);
	struct calibrate_figures fig = { 0 };
	if (e == RH_OK) {
		struct routing *cal = NULL;
		e = graph_load(out_path, cfg, false, &cal, err, errlen);
		if (e == RH_OK) {
			calibrate_validate(cal, v, n, &fig);
			routing_free(cal);
			p.held_mape_pct = (float)fig.mape, p.held_mape_freeflow_pct = (float)fig.mape_ff;
			p.held_cover_pct = (float)fig.cover, p.held_bias_pct = (float)fig.bias;
			e = calibrate_write(out_path, out_path, &p, false, err, errlen);
		}
	}
	if (e == RH_OK && report)
		calibrate_report(report, &tl, off_map, nfit, nheld, &m, &p, &fig);
	rh_free(v);
	trips_csv_fini(&tl);
	return e;
}
