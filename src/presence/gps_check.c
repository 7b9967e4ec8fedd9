#include "presence/gps_check.h"

#include <math.h>

#include "geo/geohash.h"

static double gps_check_capped_accuracy(double a)
{
	return a < 0 ? 0 : a > GPS_CHECK_MAX_ACCURACY_M ? GPS_CHECK_MAX_ACCURACY_M : a;
}

static bool gps_check_plausible(const struct gps_check_cfg *cfg, const struct gps_fix *a, const struct gps_fix *b,
				struct gps_jump *j)
{
	/* the equirectangular distance is a fraction of haversine's cost (this
	 * runs on every ping) and within 10 m of it up to 100 km at |lat| <= 70;
	 * past that the answer (implausible) does not hang on metres, and the
	 * reported distance is haversine's */
	double d = geo_dist_equirect_m(a->lat, a->lon, b->lat, b->lon);
	if (d > 50000 || fabs(a->lat) > 70 || fabs(b->lat) > 70)
		d = geo_dist_haversine_m(a->lat, a->lon, b->lat, b->lon);
	double slack = gps_check_capped_accuracy(a->accuracy_m) + gps_check_capped_accuracy(b->accuracy_m) +
		       GPS_CHECK_JITTER_M;
	double s = (double)(b->device_ms - a->device_ms) / 1000.0;
	double moved = d > slack ? d - slack : 0;
	j->distance_m = d;
	j->seconds = s;
	j->speed_kmh = s > 0 ? moved / s * 3.6 : moved > 0 ? INFINITY : 0;
	j->too_far = d > cfg->max_jump_m;
	return !j->too_far && (moved == 0 || (s > 0 && j->speed_kmh <= cfg->max_speed_kmh));
}

enum gps_verdict gps_check_fix(const struct gps_check_cfg *cfg, struct gps_track *t, const struct gps_fix *fix,
			       struct gps_jump *why)
{
	struct gps_jump scratch, *j = why ? why : &scratch;
	enum gps_verdict v = GPS_OK;
	if (cfg->max_speed_kmh <= 0 || !t->has_last) {
		t->suspect = false;
	} else if (!t->suspect) {
		if (!gps_check_plausible(cfg, &t->last, fix, j)) {
			t->suspect = true;
			t->consistent = 0;
			v = GPS_SUSPECT;
		}
	} else {
		struct gps_jump ignored;
		if (t->has_believed && gps_check_plausible(cfg, &t->believed, fix, &ignored)) {
			t->suspect = false; /* back where we believed it: a glitch passed */
		} else if (gps_check_plausible(cfg, &t->last, fix, &ignored)) {
			if (++t->consistent >= cfg->recover_fixes)
				t->suspect = false; /* it really is there now */
		} else {
			t->consistent = 0;
		}
		v = t->suspect ? GPS_STILL_SUSPECT : GPS_RECOVERED;
	}
	t->last = *fix;
	t->has_last = true;
	if (!t->suspect) {
		t->believed = *fix;
		t->has_believed = true;
	}
	return v;
}

const char *gps_check_verdict_name(enum gps_verdict v)
{
	switch (v) {
	case GPS_OK: return "ok";
	case GPS_SUSPECT: return "suspect";
	case GPS_STILL_SUSPECT: return "still_suspect";
	case GPS_RECOVERED: return "recovered";
	}
	return "?";
}
