/* The fare meter: the distance of a trip in progress, summed from the
 * driver's own fixes. A fix less accurate than match.meter_max_accuracy is
 * not counted; neither is one that would mean driving faster than
 * match.meter_max_speed from the last one counted (a jump: the last good
 * point stays). Pure: fixes and times come in. */
#include <string.h>

#include "geo/geohash.h"
#include "match_internal.h"

void match_meter_start(struct match_meter *mt, int64_t now)
{
	memset(mt, 0, sizeof *mt);
	mt->running = true;
	mt->started_at = now;
}

/* A meter read back after a restart: what was driven before (dist_m, up to
 * the last fix the history kept), joined to what it counted since (from its
 * first fix on), through the leg between the two, which was driven while
 * the daemon was away. */
void match_meter_resume(struct match_meter *mt, const struct match_cfg *cfg, int64_t now, int64_t elapsed_ms,
			double dist_m, bool has_last, double lat, double lon, int64_t device_ms)
{
	struct match_meter since = *mt;
	match_meter_start(mt, now - (elapsed_ms > 0 ? elapsed_ms : 0));
	mt->dist_m = dist_m;
	mt->has_last = has_last;
	mt->lat = lat;
	mt->lon = lon;
	mt->device_ms = device_ms;
	if (!since.has_first)
		return;
	match_meter_fix(mt, cfg, since.first_lat, since.first_lon, -1, since.first_ms); /* the leg between */
	mt->dist_m += since.dist_m;
	mt->lat = since.lat;
	mt->lon = since.lon;
	mt->device_ms = since.device_ms;
	mt->has_last = true;
}

void match_meter_fix(struct match_meter *mt, const struct match_cfg *cfg, double lat, double lon, float accuracy_m,
		     int64_t device_ms)
{
	if (!mt->running)
		return;
	bool good = accuracy_m < 0 || accuracy_m <= (float)cfg->meter_max_accuracy_m;
	if (good && mt->has_last && device_ms > mt->device_ms) {
		double d = geo_dist_haversine_m(mt->lat, mt->lon, lat, lon);
		double kmh = d / ((double)(device_ms - mt->device_ms) / 1000.0) * 3.6;
		if (kmh <= cfg->meter_max_speed_kmh)
			mt->dist_m += d;
		else
			good = false; /* a jump: keep the last good point */
	}
	if (good && !mt->has_first) {
		mt->has_first = true;
		mt->first_lat = lat;
		mt->first_lon = lon;
		mt->first_ms = device_ms;
	}
	if (good) {
		mt->lat = lat;
		mt->lon = lon;
		mt->device_ms = device_ms;
		mt->has_last = true;
	}
}

int64_t match_meter_duration_s(const struct match_meter *mt, int64_t now)
{
	return mt->running ? (now - mt->started_at) / 1000 : 0;
}
