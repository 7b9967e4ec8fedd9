/* GPS sanity: is a driver's new fix plausible after the ones before? A fix
 * implying more than a speed a car can do, or a jump farther than any
 * drive between two fixes, makes the driver suspect: its fixes are not
 * believed -- the driver stays out of search and offers -- until they are
 * consistent again: one that is plausible from the last believed fix (a
 * glitch that passed), or recover_fixes in a row each plausible from the one
 * before (the driver really is there now).
 *
 * Plausible from a to b: the distance, less both accuracies (each counted up
 * to GPS_CHECK_MAX_ACCURACY_M, so that a claimed accuracy cannot excuse a
 * jump) and GPS_CHECK_JITTER_M, covered at max_speed_kmh in the time between
 * their device timestamps, and no farther than max_jump_m.
 *
 * Pure: the fixes and their times are passed in; no clock, no I/O. */
#ifndef RH_PRESENCE_GPS_CHECK_H
#define RH_PRESENCE_GPS_CHECK_H

#include <stdbool.h>
#include <stdint.h>

#define GPS_CHECK_MAX_ACCURACY_M 100.0
#define GPS_CHECK_JITTER_M 30.0

struct gps_check_cfg {
	double max_speed_kmh; /* 0: the check is off */
	double max_jump_m;
	int recover_fixes;
};

struct gps_fix {
	double lat, lon;
	double accuracy_m; /* < 0: not given */
	int64_t device_ms;
};

/* One driver's track, as the check needs it: the fix before, the last one
 * believed, and where a suspicion stands. Zeroed: no fix yet. */
struct gps_track {
	struct gps_fix last, believed;
	bool has_last, has_believed;
	bool suspect;
	uint8_t consistent; /* consistent fixes in a row while suspect */
};

enum gps_verdict {
	GPS_OK,            /* believed */
	GPS_SUSPECT,       /* not believed: this fix starts a suspicion */
	GPS_STILL_SUSPECT, /* not believed: still inconsistent, or not consistent for long enough */
	GPS_RECOVERED,     /* believed again, from this fix on */
};

/* Why the fix that started a suspicion was implausible (for the event). */
struct gps_jump {
	double distance_m, seconds, speed_kmh;
	bool too_far; /* past max_jump_m (else: too fast) */
};

enum gps_verdict gps_check_fix(const struct gps_check_cfg *cfg, struct gps_track *t, const struct gps_fix *fix,
			       struct gps_jump *why);
const char *gps_check_verdict_name(enum gps_verdict v);

#endif
