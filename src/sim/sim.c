/* The simulator's pure parts: randomness, demand, movement, the report
 * (see include/sim/sim.h). */
#include "sim/sim.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/alloc.h"
#include "geo/geohash.h"

#define SIM_M_PER_DEG_LAT 111320.0
#define SIM_PI 3.14159265358979323846

/* ------------------------------------------------------------ randomness */

void sim_rng_seed(struct sim_rng *r, uint64_t seed, uint64_t stream)
{
	r->s = seed * 0x9e3779b97f4a7c15ULL ^ (stream + 1) * 0xd1b54a32d192ed03ULL;
	(void)sim_rng_next(r);
}

uint64_t sim_rng_next(struct sim_rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

double sim_rng_unit(struct sim_rng *r) { return (double)(sim_rng_next(r) >> 11) / 9007199254740992.0; }

double sim_rng_exp(struct sim_rng *r, double mean) { return -mean * log(1.0 - sim_rng_unit(r)); }

double sim_rng_range(struct sim_rng *r, double lo, double hi) { return lo + (hi - lo) * sim_rng_unit(r); }

/* A standard normal (Box-Muller). */
static double sim_rng_normal(struct sim_rng *r)
{
	double u = 1.0 - sim_rng_unit(r), v = sim_rng_unit(r);
	return sqrt(-2.0 * log(u)) * cos(2.0 * SIM_PI * v);
}

/* ------------------------------------------------------------ boxes */

static double sim_m_per_deg_lon(double lat) { return SIM_M_PER_DEG_LAT * cos(lat * SIM_PI / 180.0); }

struct sim_bbox sim_bbox_shrink(struct sim_bbox b, double margin_m)
{
	double dlat = margin_m / SIM_M_PER_DEG_LAT, dlon = margin_m / sim_m_per_deg_lon((b.min_lat + b.max_lat) / 2);
	b.min_lat += dlat;
	b.max_lat -= dlat;
	b.min_lon += dlon;
	b.max_lon -= dlon;
	return b;
}

bool sim_bbox_contains(const struct sim_bbox *b, double lat, double lon)
{
	return lat >= b->min_lat && lat <= b->max_lat && lon >= b->min_lon && lon <= b->max_lon;
}

void sim_bbox_clamp(const struct sim_bbox *b, double *lat, double *lon)
{
	*lat = *lat < b->min_lat ? b->min_lat : *lat > b->max_lat ? b->max_lat : *lat;
	*lon = *lon < b->min_lon ? b->min_lon : *lon > b->max_lon ? b->max_lon : *lon;
}

bool sim_bbox_parse(const char *s, struct sim_bbox *out)
{
	struct sim_bbox b;
	char tail;
	if (sscanf(s, "%lf,%lf,%lf,%lf%c", &b.min_lon, &b.min_lat, &b.max_lon, &b.max_lat, &tail) != 4)
		return false;
	if (!(b.min_lat < b.max_lat && b.min_lon < b.max_lon) || b.min_lat < -90 || b.max_lat > 90 ||
	    b.min_lon < -180 || b.max_lon > 180)
		return false;
	*out = b;
	return true;
}

/* ------------------------------------------------------------ demand */

void sim_demand_init(struct sim_demand *d) { memset(d, 0, sizeof *d); }

void sim_demand_fini(struct sim_demand *d)
{
	rh_free(d->req);
	memset(d, 0, sizeof *d);
}

void sim_demand_add(struct sim_demand *d, const struct sim_request *r)
{
	if (d->n == d->cap) {
		d->cap = d->cap ? d->cap * 2 : 256;
		d->req = rh_realloc(d->req, d->cap * sizeof *d->req);
	}
	d->req[d->n++] = *r;
}

static int sim_req_cmp(const void *a, const void *b)
{
	const struct sim_request *x = a, *y = b;
	if (x->t_s != y->t_s)
		return x->t_s < y->t_s ? -1 : 1;
	/* equal times: by position, so the order does not depend on qsort */
	if (x->plat != y->plat)
		return x->plat < y->plat ? -1 : 1;
	return (x->plon > y->plon) - (x->plon < y->plon);
}

/* Sorts by time (stable for equal times). */
static void sim_demand_sort(struct sim_demand *d)
{
	if (d->n > 1)
		qsort(d->req, d->n, sizeof *d->req, sim_req_cmp);
}

bool sim_parse_time(const char *s, int64_t *out)
{
	while (*s == ' ' || *s == '"')
		s++;
	int y, mo, da, h = 0, mi = 0, se = 0;
	char sep1, sep2;
	int n = sscanf(s, "%d%c%d%c%d %d:%d:%d", &y, &sep1, &mo, &sep2, &da, &h, &mi, &se);
	if (n >= 5 && (sep1 == '/' || sep1 == '-') && sep2 == sep1) {
		if (n == 5) { /* maybe "2014-04-01T18:00:00" */
			const char *t = strchr(s, 'T');
			if (t && sscanf(t + 1, "%d:%d:%d", &h, &mi, &se) < 2)
				return false;
		} else if (n < 7) {
			return false;
		}
		if (y < 1970 || mo < 1 || mo > 12 || da < 1 || da > 31 || h < 0 || h > 23 || mi < 0 || mi > 59 || se < 0 ||
		    se > 60)
			return false;
		struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = da, .tm_hour = h, .tm_min = mi, .tm_sec = se };
		*out = (int64_t)timegm(&tm);
		return true;
	}
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (end == s || errno != 0 || !isfinite(v))
		return false;
	while (*end == ' ' || *end == '"' || *end == '\r' || *end == '\n')
		end++;
	if (*end)
		return false;
	*out = (int64_t)floor(v);
	return true;
}

#define SIM_CSV_MAX_COLS 64

/* Splits one CSV line in place (no quoted commas in these files: quotes are
 * stripped). Returns the number of fields. */
static int sim_csv_split(char *line, char **f, int max)
{
	int n = 0;
	char *p = line;
	for (;;) {
		if (n == max)
			return n;
		while (*p == ' ')
			p++;
		if (*p == '"')
			p++;
		f[n++] = p;
		char *c = strchr(p, ',');
		char *e = c ? c : p + strlen(p);
		while (e > p && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == '"' || e[-1] == ' '))
			e--;
		char *next = c ? c + 1 : NULL;
		*e = '\0';
		if (!next)
			return n;
		p = next;
	}
}

static int sim_col(char **f, int n, const char *const *names)
{
	for (const char *const *nm = names; *nm; nm++)
		for (int i = 0; i < n; i++)
			if (strcasecmp(f[i], *nm) == 0)
				return i;
	return -1;
}

static bool sim_num(const char *s, double *out)
{
	char *end;
	if (!*s)
		return false;
	double v = strtod(s, &end);
	if (end == s || *end || !isfinite(v))
		return false;
	*out = v;
	return true;
}

/* The requests read from out->req[first] on, whose t_s is still their
 * epoch time: with times, shifted to seconds after the window's start
 * (start, or the earliest, t0, when negative) and compressed, those past
 * the window dropped; without, all at 0. */
static void sim_demand_window(struct sim_demand *out, size_t first, const struct sim_replay_opts *o, int64_t start,
			      int64_t t0)
{
	if (!o->need_time) {
		for (size_t i = first; i < out->n; i++)
			out->req[i].t_s = 0;
		return;
	}
	double compress = o->compress > 0 ? o->compress : 1.0;
	if (start < 0)
		start = out->n > first ? t0 : 0;
	out->window_start = start;
	size_t w = first;
	for (size_t i = first; i < out->n; i++) {
		double dt = out->req[i].t_s - (double)start;
		if (o->window_s > 0 && dt >= o->window_s) {
			out->rows_outside_window++;
			continue;
		}
		out->req[i].t_s = dt / compress;
		out->req[w++] = out->req[i];
	}
	out->n = w;
}

rh_err sim_demand_parse_csv(const char *text, size_t len, const struct sim_replay_opts *o, struct sim_demand *out,
			    char *err, size_t errlen)
{
	static const char *const c_time[] = { "Date/Time", "time", "pickup_datetime", "tpep_pickup_datetime", "t", NULL };
	static const char *const c_plat[] = { "Lat", "pickup_lat", "pickup_latitude", NULL };
	static const char *const c_plon[] = { "Lon", "pickup_lon", "pickup_lng", "pickup_longitude", NULL };
	static const char *const c_dlat[] = { "dropoff_lat", "dropoff_latitude", NULL };
	static const char *const c_dlon[] = { "dropoff_lon", "dropoff_lng", "dropoff_longitude", NULL };
	char *buf = rh_malloc(len + 1);
	memcpy(buf, text, len);
	buf[len] = '\0';
	char *save = NULL, *line = strtok_r(buf, "\n", &save);
	char *f[SIM_CSV_MAX_COLS];
	if (!line) {
		snprintf(err, errlen, "empty file");
		rh_free(buf);
		return RH_EINVAL;
	}
	int nf = sim_csv_split(line, f, SIM_CSV_MAX_COLS);
	int ct = sim_col(f, nf, c_time), cpa = sim_col(f, nf, c_plat), cpo = sim_col(f, nf, c_plon);
	int cda = sim_col(f, nf, c_dlat), cdo = sim_col(f, nf, c_dlon);
	if ((o->need_time && ct < 0) || cpa < 0 || cpo < 0) {
		snprintf(err, errlen, "the header names no %s column", cpa < 0 || cpo < 0 ? "pickup latitude/longitude" : "time");
		rh_free(buf);
		return RH_EINVAL;
	}
	int64_t start = o->start;
	size_t first = out->n;
	/* First pass not needed: rows are kept with their epoch time in t_s, then
	 * shifted once the window start is known. */
	int64_t t0 = INT64_MAX;
	while ((line = strtok_r(NULL, "\n", &save))) {
		if (line[0] == '\r' || line[0] == '\0')
			continue;
		out->rows_read++;
		nf = sim_csv_split(line, f, SIM_CSV_MAX_COLS);
		struct sim_request r = { 0 };
		int64_t t = 0;
		int need = cpa > cpo ? cpa : cpo;
		if (ct > need)
			need = ct;
		if (nf <= need || !sim_num(f[cpa], &r.plat) || !sim_num(f[cpo], &r.plon) ||
		    (o->need_time && !sim_parse_time(f[ct], &t)) || r.plat < -90 || r.plat > 90 || r.plon < -180 || r.plon > 180) {
			out->rows_bad++;
			continue;
		}
		if (o->use_box && !sim_bbox_contains(&o->box, r.plat, r.plon)) {
			out->rows_outside++;
			continue;
		}
		if (cda >= 0 && cdo >= 0 && cda < nf && cdo < nf && sim_num(f[cda], &r.dlat) && sim_num(f[cdo], &r.dlon))
			r.has_dropoff = !o->use_box || sim_bbox_contains(&o->box, r.dlat, r.dlon);
		if (o->need_time) {
			if (start >= 0 && (t < start || (o->window_s > 0 && (double)(t - start) >= o->window_s))) {
				out->rows_outside_window++;
				continue;
			}
			if (t < t0)
				t0 = t;
		}
		r.t_s = (double)t; /* epoch for now */
		sim_demand_add(out, &r);
	}
	rh_free(buf);
	sim_demand_window(out, first, o, start, t0);
	sim_demand_sort(out);
	return RH_OK;
}

rh_err sim_demand_load_csv(const char *path, const struct sim_replay_opts *o, struct sim_demand *out, char *err,
			   size_t errlen)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return RH_EIO;
	}
	size_t cap = 1 << 20, n = 0;
	char *buf = rh_malloc(cap);
	size_t got;
	while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
		n += got;
		if (n == cap) {
			cap *= 2;
			buf = rh_realloc(buf, cap);
		}
	}
	bool bad = ferror(f);
	fclose(f);
	if (bad) {
		rh_free(buf);
		snprintf(err, errlen, "%s: read error", path);
		return RH_EIO;
	}
	rh_err e = sim_demand_parse_csv(buf, n, o, out, err, errlen);
	rh_free(buf);
	return e;
}

static void sim_point_in(struct sim_rng *r, const struct sim_bbox *b, double *lat, double *lon)
{
	*lat = sim_rng_range(r, b->min_lat, b->max_lat);
	*lon = sim_rng_range(r, b->min_lon, b->max_lon);
}

void sim_demand_uniform(struct sim_demand *d, struct sim_rng *r, const struct sim_bbox *box, double duration_s,
			double rate_per_h)
{
	if (rate_per_h <= 0)
		return;
	double mean = 3600.0 / rate_per_h;
	for (double t = sim_rng_exp(r, mean); t < duration_s; t += sim_rng_exp(r, mean)) {
		struct sim_request q = { .t_s = t, .has_dropoff = true };
		sim_point_in(r, box, &q.plat, &q.plon);
		sim_point_in(r, box, &q.dlat, &q.dlon);
		sim_demand_add(d, &q);
	}
}

void sim_demand_hotspots(struct sim_demand *d, struct sim_rng *r, const struct sim_bbox *box, double duration_s,
			 double rate_per_h, int k, double sigma_m)
{
	if (rate_per_h <= 0 || k <= 0)
		return;
	double *hl = rh_malloc((size_t)k * 2 * sizeof *hl);
	for (int i = 0; i < k; i++)
		sim_point_in(r, box, &hl[2 * i], &hl[2 * i + 1]);
	double mean = 3600.0 / rate_per_h;
	for (double t = sim_rng_exp(r, mean); t < duration_s; t += sim_rng_exp(r, mean)) {
		struct sim_request q = { .t_s = t, .has_dropoff = true };
		int h = (int)(sim_rng_next(r) % (uint64_t)k);
		for (int tries = 0; tries < 20; tries++) {
			q.plat = hl[2 * h] + sim_rng_normal(r) * sigma_m / SIM_M_PER_DEG_LAT;
			q.plon = hl[2 * h + 1] + sim_rng_normal(r) * sigma_m / sim_m_per_deg_lon(hl[2 * h]);
			if (sim_bbox_contains(box, q.plat, q.plon))
				break;
			q.plat = hl[2 * h];
			q.plon = hl[2 * h + 1];
		}
		sim_point_in(r, box, &q.dlat, &q.dlon);
		sim_demand_add(d, &q);
	}
	rh_free(hl);
}

void sim_demand_multiply(struct sim_demand *d, struct sim_rng *r, int mult, double jitter_s, double jitter_m)
{
	size_t n0 = d->n;
	for (int m = 1; m < mult; m++)
		for (size_t i = 0; i < n0; i++) {
			struct sim_request q = d->req[i];
			q.t_s += sim_rng_range(r, -jitter_s, jitter_s);
			if (q.t_s < 0)
				q.t_s = -q.t_s;
			q.plat += sim_rng_range(r, -jitter_m, jitter_m) / SIM_M_PER_DEG_LAT;
			q.plon += sim_rng_range(r, -jitter_m, jitter_m) / sim_m_per_deg_lon(q.plat);
			sim_demand_add(d, &q);
		}
	sim_demand_sort(d);
}

void sim_demand_fill_dropoffs(struct sim_demand *d, const struct sim_demand *od, struct sim_rng *r)
{
	if (od->n == 0)
		return;
	for (size_t i = 0; i < d->n; i++) {
		struct sim_request *q = &d->req[i];
		if (q->has_dropoff)
			continue;
		size_t best[5];
		double bd[5];
		int nb = 0;
		for (size_t j = 0; j < od->n; j++) {
			if (!od->req[j].has_dropoff)
				continue;
			double dd = sim_dist_m(q->plat, q->plon, od->req[j].plat, od->req[j].plon);
			int at = nb < 5 ? nb++ : 5;
			if (at == 5 && dd >= bd[4])
				continue;
			if (at == 5)
				at = 4;
			while (at > 0 && bd[at - 1] > dd) {
				bd[at] = bd[at - 1];
				best[at] = best[at - 1];
				at--;
			}
			bd[at] = dd;
			best[at] = j;
		}
		if (nb == 0)
			return;
		const struct sim_request *o = &od->req[best[sim_rng_next(r) % (uint64_t)nb]];
		q->dlat = o->dlat;
		q->dlon = o->dlon;
		q->has_dropoff = true;
	}
}

/* ------------------------------------------------------------ movement */

double sim_dist_m(double lat1, double lon1, double lat2, double lon2)
{
	return geo_dist_haversine_m(lat1, lon1, lat2, lon2);
}

void sim_path_init(struct sim_path *p) { memset(p, 0, sizeof *p); }

void sim_path_fini(struct sim_path *p)
{
	rh_free(p->lat);
	rh_free(p->lon);
	rh_free(p->cum);
	memset(p, 0, sizeof *p);
}

void sim_path_clear(struct sim_path *p) { p->n = 0; }

void sim_path_add(struct sim_path *p, double lat, double lon)
{
	if (p->n == p->cap) {
		p->cap = p->cap ? p->cap * 2 : 16;
		p->lat = rh_realloc(p->lat, p->cap * sizeof *p->lat);
		p->lon = rh_realloc(p->lon, p->cap * sizeof *p->lon);
		p->cum = rh_realloc(p->cum, p->cap * sizeof *p->cum);
	}
	p->lat[p->n] = lat;
	p->lon[p->n] = lon;
	p->cum[p->n] = p->n ? p->cum[p->n - 1] + sim_dist_m(p->lat[p->n - 1], p->lon[p->n - 1], lat, lon) : 0;
	p->n++;
}

double sim_path_length(const struct sim_path *p) { return p->n ? p->cum[p->n - 1] : 0; }

static double sim_bearing(double lat1, double lon1, double lat2, double lon2)
{
	double f1 = lat1 * SIM_PI / 180, f2 = lat2 * SIM_PI / 180, dl = (lon2 - lon1) * SIM_PI / 180;
	double y = sin(dl) * cos(f2), x = cos(f1) * sin(f2) - sin(f1) * cos(f2) * cos(dl);
	double b = atan2(y, x) * 180 / SIM_PI;
	if (b < 0)
		b += 360;
	return b >= 360 ? 0 : b;
}

void sim_path_at(const struct sim_path *p, double d, double *lat, double *lon, double *heading)
{
	*heading = 0;
	if (p->n == 0) {
		*lat = *lon = 0;
		return;
	}
	if (p->n == 1 || d <= 0) {
		*lat = p->lat[0];
		*lon = p->lon[0];
		if (p->n > 1)
			*heading = sim_bearing(p->lat[0], p->lon[0], p->lat[1], p->lon[1]);
		return;
	}
	if (d >= p->cum[p->n - 1]) {
		*lat = p->lat[p->n - 1];
		*lon = p->lon[p->n - 1];
		*heading = sim_bearing(p->lat[p->n - 2], p->lon[p->n - 2], p->lat[p->n - 1], p->lon[p->n - 1]);
		return;
	}
	/* binary search: the segment [i, i+1] with cum[i] <= d < cum[i+1] */
	size_t lo = 0, hi = p->n - 1;
	while (hi - lo > 1) {
		size_t mid = (lo + hi) / 2;
		if (p->cum[mid] <= d)
			lo = mid;
		else
			hi = mid;
	}
	double seg = p->cum[hi] - p->cum[lo], f = seg > 0 ? (d - p->cum[lo]) / seg : 0;
	*lat = p->lat[lo] + (p->lat[hi] - p->lat[lo]) * f;
	*lon = p->lon[lo] + (p->lon[hi] - p->lon[lo]) * f;
	*heading = sim_bearing(p->lat[lo], p->lon[lo], p->lat[hi], p->lon[hi]);
}

/* ------------------------------------------------------------ report */

static int sim_dbl_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

double sim_percentile(double *v, size_t n, double p)
{
	if (n == 0)
		return 0;
	qsort(v, n, sizeof *v, sim_dbl_cmp);
	double rank = ceil(p / 100.0 * (double)n);
	size_t i = rank < 1 ? 0 : (size_t)rank - 1;
	return v[i < n ? i : n - 1];
}

/* The fleet's sums: time online and busy, kilometres, offers. */
static void sim_report_add_fleet(const struct sim_driver_acc *d, size_t nd, struct sim_report *out)
{
	double online = 0, busy = 0;
	for (size_t i = 0; i < nd; i++) {
		online += d[i].online_s;
		busy += d[i].busy_s;
		out->idle_km += d[i].idle_km;
		out->deadhead_km += d[i].deadhead_km;
		out->trip_km += d[i].trip_km;
		out->reposition_km += d[i].reposition_km;
		out->offers += d[i].offers;
		out->accepts += d[i].accepts;
		out->declines += d[i].declines;
		out->timeouts += d[i].timeouts;
		out->withdrawn += d[i].withdrawn;
	}
	out->utilisation = online > 0 ? busy / online : 0;
	out->deadhead_km_per_trip = out->completed ? (out->deadhead_km + out->reposition_km) / out->completed : 0;
}

void sim_report_compute(const struct sim_trip_rec *t, size_t nt, const struct sim_driver_acc *d, size_t nd,
			int protocol_errors, int invariant_breaches, struct sim_report *out)
{
	memset(out, 0, sizeof *out);
	double *ttm = rh_calloc(nt + 1, sizeof *ttm), *wait = rh_calloc(nt + 1, sizeof *wait),
	       *trip = rh_calloc(nt + 1, sizeof *trip);
	size_t nttm = 0, nwait = 0, ntrip = 0;
	double trip_sum = 0, wait_done_sum = 0;
	int wait_done = 0;
	for (size_t i = 0; i < nt; i++) {
		const struct sim_trip_rec *r = &t[i];
		out->requests++;
		switch (r->outcome) {
		case SIM_OUT_NO_QUOTE: out->no_quote++; continue;
		case SIM_OUT_REFUSED: out->refused++; continue;
		case SIM_OUT_NO_RIDER: out->no_rider++; continue;
		case SIM_OUT_DECLINED: out->declined++; continue;
		case SIM_OUT_COMPLETED: out->completed++; break;
		case SIM_OUT_CANCELLED: out->cancelled++; break;
		case SIM_OUT_PENDING: out->pending++; break;
		}
		if (r->t_created < 0) /* pending before the POST answered */
			continue;
		out->created++;
		if (r->t_matched >= 0) {
			out->matched++;
			ttm[nttm++] = r->t_matched - r->t_created;
		}
		if (r->t_arrived >= 0) {
			out->arrived++;
			wait[nwait++] = r->t_arrived - r->t_created;
		}
		if (r->outcome == SIM_OUT_COMPLETED && r->t_started >= 0 && r->t_completed >= 0) {
			trip[ntrip++] = r->t_completed - r->t_started;
			trip_sum += r->t_completed - r->t_started;
			if (r->t_arrived >= 0) {
				wait_done_sum += r->t_arrived - r->t_created;
				wait_done++;
			}
		}
		if (r->outcome == SIM_OUT_CANCELLED) {
			int k;
			for (k = 0; k < out->nreasons; k++)
				if (strcmp(out->reason[k], r->cancel_reason) == 0)
					break;
			if (k == out->nreasons && k < SIM_MAX_REASONS) {
				snprintf(out->reason[k], sizeof out->reason[k], "%s", r->cancel_reason);
				out->nreasons++;
			}
			if (k < SIM_MAX_REASONS)
				out->reason_count[k]++;
		}
	}
	out->matched_pct = out->created ? 100.0 * out->matched / out->created : 0;
	out->ttm_p50 = sim_percentile(ttm, nttm, 50);
	out->ttm_p95 = sim_percentile(ttm, nttm, 95);
	out->ttm_p99 = sim_percentile(ttm, nttm, 99);
	out->wait_p50 = sim_percentile(wait, nwait, 50);
	out->wait_p95 = sim_percentile(wait, nwait, 95);
	out->trip_p50 = sim_percentile(trip, ntrip, 50);
	out->trip_p95 = sim_percentile(trip, ntrip, 95);
	out->trip_mean = ntrip ? trip_sum / (double)ntrip : 0;
	out->wait_mean = wait_done ? wait_done_sum / wait_done : 0;
	out->completed_pct = out->requests ? 100.0 * out->completed / out->requests : 0;
	sim_report_add_fleet(d, nd, out);
	out->offers_per_match = out->matched ? (double)out->offers / out->matched : 0;
	out->protocol_errors = protocol_errors;
	out->invariant_breaches = invariant_breaches;
	rh_free(ttm);
	rh_free(wait);
	rh_free(trip);
}

void sim_report_write_json(const struct sim_report *r, FILE *f, const char *extra_members)
{
	fprintf(f, "{\n");
	if (extra_members && *extra_members)
		fprintf(f, "%s,\n", extra_members);
	fprintf(f,
		"  \"requests\": %d,\n  \"no_quote\": %d,\n  \"refused\": %d,\n  \"no_rider\": %d,\n  \"created\": %d,\n"
		"  \"matched\": %d,\n  \"matched_pct\": %.2f,\n  \"arrived\": %d,\n  \"completed\": %d,\n"
		"  \"cancelled\": %d,\n  \"pending_at_end\": %d,\n  \"declined\": %d,\n  \"cancelled_by_reason\": {",
		r->requests, r->no_quote, r->refused, r->no_rider, r->created, r->matched, r->matched_pct, r->arrived,
		r->completed, r->cancelled, r->pending, r->declined);
	for (int i = 0; i < r->nreasons; i++)
		fprintf(f, "%s\"%s\": %d", i ? ", " : "", r->reason[i], r->reason_count[i]);
	fprintf(f,
		"},\n  \"time_to_match_s\": {\"p50\": %.2f, \"p95\": %.2f, \"p99\": %.2f},\n"
		"  \"pickup_wait_s\": {\"p50\": %.2f, \"p95\": %.2f, \"mean\": %.2f},\n  \"completed_pct\": %.2f,\n"
		"  \"trip_time_s\": {\"p50\": %.2f, \"p95\": %.2f, \"mean\": %.2f},\n"
		"  \"driver_utilisation\": %.4f,\n  \"idle_km\": %.3f,\n  \"deadhead_km\": %.3f,\n  \"trip_km\": %.3f,\n"
		"  \"reposition_km\": %.3f,\n  \"deadhead_km_per_trip\": %.3f,\n"
		"  \"offers\": %d,\n  \"accepts\": %d,\n  \"declines\": %d,\n  \"timeouts\": %d,\n  \"withdrawn\": %d,\n"
		"  \"offers_per_match\": %.3f,\n  \"protocol_errors\": %d,\n  \"invariant_breaches\": %d\n}\n",
		r->ttm_p50, r->ttm_p95, r->ttm_p99, r->wait_p50, r->wait_p95, r->wait_mean, r->completed_pct, r->trip_p50,
		r->trip_p95, r->trip_mean, r->utilisation, r->idle_km, r->deadhead_km, r->trip_km, r->reposition_km,
		r->deadhead_km_per_trip, r->offers, r->accepts, r->declines, r->timeouts,
		r->withdrawn, r->offers_per_match, r->protocol_errors, r->invariant_breaches);
}

void sim_share_compute(const struct sim_trip_rec *t, size_t nt, double vkm, struct sim_share_figs *out)
{
	memset(out, 0, sizeof *out);
	double *detour = rh_calloc(nt + 1, sizeof *detour), *wait = rh_calloc(nt + 1, sizeof *wait);
	size_t ndetour = 0, nwait = 0;
	for (size_t i = 0; i < nt; i++) {
		const struct sim_trip_rec *r = &t[i];
		if (r->outcome == SIM_OUT_COMPLETED)
			out->pkm += r->direct_km;
		if (!r->shared || r->t_created < 0)
			continue;
		out->booked++;
		out->confirmed += r->t_matched >= 0;
		out->cancelled += r->outcome == SIM_OUT_CANCELLED;
		if (r->t_arrived >= 0)
			wait[nwait++] = r->t_arrived - r->t_created;
		if (r->outcome != SIM_OUT_COMPLETED)
			continue;
		out->dropped_off++;
		if (r->direct_s > 0 && r->t_started >= 0) {
			double d = 100.0 * ((r->t_completed - r->t_started) / r->direct_s - 1);
			detour[ndetour++] = d;
			if (d > out->detour_max)
				out->detour_max = d;
		}
	}
	out->vkm_per_pkm = out->pkm > 0 ? vkm / out->pkm : 0;
	out->detour_p50 = sim_percentile(detour, ndetour, 50);
	out->detour_p95 = sim_percentile(detour, ndetour, 95);
	out->wait_p50 = sim_percentile(wait, nwait, 50);
	out->wait_p95 = sim_percentile(wait, nwait, 95);
	rh_free(detour);
	rh_free(wait);
}

static double sim_pct(int a, int b)
{
	return b > 0 ? 100.0 * a / b : 0;
}

void sim_report_write_text(const struct sim_report *r, const struct sim_text_ctx *c, FILE *f)
{
	fprintf(f, "Served: %d of %d requests completed (%.0f%%), %d cancelled, %d still open at the end",
		r->completed, r->requests, sim_pct(r->completed, r->requests), r->cancelled, r->pending);
	if (r->no_quote || r->refused || r->no_rider)
		fprintf(f, "; %d got no quote, %d were refused, %d found no free simulated rider", r->no_quote, r->refused,
			r->no_rider);
	fprintf(f, ".\n");
	if (r->nreasons) {
		fprintf(f, "        Cancellations:");
		for (int i = 0; i < r->nreasons; i++)
			fprintf(f, "%s %d %s", i ? "," : "", r->reason_count[i], r->reason[i]);
		fprintf(f, ".\n");
	}
	if (r->matched)
		fprintf(f, "Waits:  a driver accepted %.0f s after the request (median; 95%% within %.0f s); the car was at "
			   "the pickup after %.0f s (median; 95%% within %.0f s).\n",
			r->ttm_p50, r->ttm_p95, r->wait_p50, r->wait_p95);
	else
		fprintf(f, "Waits:  no trip was matched.\n");
	double km = r->idle_km + r->deadhead_km + r->trip_km;
	fprintf(f, "Fleet:  %d drivers, busy %.0f%% of their time online; of %.1f km driven, %.0f%% with a rider, %.0f%% "
		   "to pickups, %.0f%% cruising.\n",
		c->drivers, 100 * r->utilisation, km, km > 0 ? 100 * r->trip_km / km : 0,
		km > 0 ? 100 * r->deadhead_km / km : 0, km > 0 ? 100 * r->idle_km / km : 0);
	if (c->replay && c->compress > 1.0001)
		fprintf(f, "Demand: compressed %gx: %.0f min of recorded requests arrived in %.0f simulated min, %g times "
			   "their real rate.\n",
			c->compress, c->duration_s * c->compress / 60, c->duration_s / 60, c->compress);
	const char *reading;
	if (r->created == 0)
		reading = "no trip was created: is the daemon's map the one the simulator drives on?";
	else if (r->utilisation >= 0.8 || r->ttm_p50 > 60 || (r->created >= 4 && r->matched_pct < 70))
		reading = "the fleet is saturated: requests wait for a driver to come free, so waits and cancellations "
			  "grow with the queue; more drivers (or less demand) would shorten them";
	else if (r->utilisation < 0.5)
		reading = "drivers are idle most of the time: a rider's wait is mostly the drive to the pickup, not a queue";
	else
		reading = "the fleet is busy but keeps up: most requests find a driver at once";
	fprintf(f, "Reading: %s.\n", reading);
	fprintf(f, "Look at: requests_matches.png (do matches keep up with requests?), wait_hist.png (how long riders "
		   "waited), utilisation.png (the fleet's load over time), map.png (where the pickups were and where idle "
		   "and busy drivers drove).\n");
}
