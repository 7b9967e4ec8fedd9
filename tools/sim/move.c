/* ridehail-sim: trips seen at drivers, where things are placed and how cars move. */
#include "simtool.h"

static bool sim_on_road(double *lat, double *lon);
static bool sim_move_onto_road(struct sim_rng *r, const struct sim_bbox *box, double *lat, double *lon);

int sim_tmap_find(const char *trip)
{
	for (size_t i = sim_st.ntmap; i-- > 0;)
		if (strcmp(sim_st.tmap[i].id, trip) == 0)
			return (int)i;
	return -1;
}

void sim_tmap_assign(const char *trip, int driver)
{
	int i = sim_tmap_find(trip);
	if (i >= 0) {
		if (sim_st.tmap[i].driver != driver)
			sim_breach("trip %s matched twice: to driver %d and to driver %d", trip, sim_st.tmap[i].driver, driver);
		return;
	}
	if (sim_st.ntmap == sim_st.cap_tmap) {
		sim_st.cap_tmap = sim_st.cap_tmap ? sim_st.cap_tmap * 2 : 256;
		sim_st.tmap = rh_realloc(sim_st.tmap, sim_st.cap_tmap * sizeof *sim_st.tmap);
	}
	snprintf(sim_st.tmap[sim_st.ntmap].id, sizeof sim_st.tmap[sim_st.ntmap].id, "%s", trip);
	sim_st.tmap[sim_st.ntmap++].driver = driver;
}

struct sim_trip_rec *sim_rec_new(void)
{
	if (sim_st.nrecs == sim_st.cap_recs) {
		sim_st.cap_recs = sim_st.cap_recs ? sim_st.cap_recs * 2 : 256;
		sim_st.recs = rh_realloc(sim_st.recs, sim_st.cap_recs * sizeof *sim_st.recs);
	}
	struct sim_trip_rec *r = &sim_st.recs[sim_st.nrecs++];
	memset(r, 0, sizeof *r);
	r->t_request = r->t_created = r->t_matched = r->t_arrived = r->t_started = r->t_completed = r->t_cancelled = -1;
	return r;
}

/* ------------------------------------------------------------ movement */

/* With a map: true when a car can start and end at (lat, lon), i.e. routes
 * join it to the anchor both ways; then (lat, lon) becomes the point on the
 * road the route starts from (where the daemon snaps it too). */
static bool sim_on_road(double *lat, double *lon)
{
	struct route_result res;
	if (routing_route(sim_st.routing, *lat, *lon, sim_st.anchor_lat, sim_st.anchor_lon, true, &res) != RH_OK || res.npoints < 1)
		return false;
	double slat = res.coords[1], slon = res.coords[0];
	if (routing_route(sim_st.routing, sim_st.anchor_lat, sim_st.anchor_lon, slat, slon, false, &res) != RH_OK)
		return false;
	*lat = slat;
	*lon = slon;
	return true;
}

/* (lat, lon) onto the nearest road a car can use, searched in rings of
 * growing radius inside box; false (unchanged) when none within 2 km. */
static bool sim_move_onto_road(struct sim_rng *r, const struct sim_bbox *box, double *lat, double *lon)
{
	double la = *lat, lo = *lon;
	if (sim_on_road(&la, &lo))
		goto found;
	for (double radius = 20; radius <= 2000; radius *= 1.5) {
		for (int k = 0; k < 12; k++) {
			double a = sim_rng_range(r, 0, 2 * M_PI), d = radius * sim_rng_range(r, 0.7, 1.0);
			la = *lat + d * cos(a) / 111320.0;
			lo = *lon + d * sin(a) / (111320.0 * cos(*lat * M_PI / 180));
			if (sim_bbox_contains(box, la, lo) && sim_on_road(&la, &lo))
				goto found;
		}
	}
	return false;
found:
	*lat = la;
	*lon = lo;
	return true;
}

/* A random point of the area; with a map, one a car can reach and leave. */
void sim_random_point(struct sim_rng *r, double *lat, double *lon)
{
	struct sim_bbox inner = sim_bbox_shrink(sim_st.box, sim_st.margin);
	for (int tries = 0;; tries++) {
		*lat = sim_rng_range(r, inner.min_lat, inner.max_lat);
		*lon = sim_rng_range(r, inner.min_lon, inner.max_lon);
		if (!sim_st.have_anchor || tries >= 50 || sim_on_road(lat, lon))
			return;
	}
}

/* The anchor: the point of the box whose routes reach (both ways) the most
 * of a few random others, i.e. one inside the map's strongly connected core. */
void sim_find_anchor(void)
{
	struct sim_rng r;
	sim_rng_seed(&r, sim_st.seed, 0xa4c);
	struct sim_bbox inner = sim_bbox_shrink(sim_st.box, sim_st.margin);
	double pl[16], pn[16];
	for (int i = 0; i < 16; i++) {
		pl[i] = sim_rng_range(&r, inner.min_lat, inner.max_lat);
		pn[i] = sim_rng_range(&r, inner.min_lon, inner.max_lon);
	}
	int best = -1, best_n = 0;
	for (int i = 0; i < 16; i++) {
		int n = 0;
		struct route_result res;
		for (int j = 0; j < 16; j++)
			n += j != i && routing_route(sim_st.routing, pl[i], pn[i], pl[j], pn[j], false, &res) == RH_OK &&
			     routing_route(sim_st.routing, pl[j], pn[j], pl[i], pn[i], false, &res) == RH_OK;
		if (n > best_n) {
			best = i;
			best_n = n;
		}
	}
	if (best >= 0) {
		sim_st.anchor_lat = pl[best];
		sim_st.anchor_lon = pn[best];
		sim_st.have_anchor = true;
	}
}

/* Every pickup and dropoff of the demand onto a road a car can use, so that
 * every request can be quoted (a point off the roads gets 422 point-off-map
 * or no-route from the daemon). */
void sim_demand_onto_roads(void)
{
	if (!sim_st.have_anchor)
		return;
	struct sim_rng r;
	sim_rng_seed(&r, sim_st.seed, 0x60ad);
	for (size_t i = 0; i < sim_st.dem.n; i++) {
		struct sim_request *q = &sim_st.dem.req[i];
		double la = q->plat, lo = q->plon;
		if (sim_move_onto_road(&r, &sim_st.box, &q->plat, &q->plon))
			sim_st.moved_onto_roads += la != q->plat || lo != q->plon;
		else
			sim_st.unroutable++;
		if (!q->has_dropoff)
			continue;
		la = q->dlat;
		lo = q->dlon;
		if (sim_move_onto_road(&r, &sim_st.box, &q->dlat, &q->dlon))
			sim_st.moved_onto_roads += la != q->dlat || lo != q->dlon;
		else
			sim_st.unroutable++;
		/* ends that came together on the same road: a dropoff 0.8-3.5 km
		 * away instead, as a rider draws one (the daemon refuses a trip
		 * shorter than trip.min_distance) */
		for (int tries = 0; tries < 20 && sim_dist_m(q->plat, q->plon, q->dlat, q->dlon) < 500; tries++) {
			double dl, dn;
			sim_random_point(&r, &dl, &dn);
			double dd = sim_dist_m(q->plat, q->plon, dl, dn);
			if (dd > 800 && dd < 3500) {
				q->dlat = dl;
				q->dlon = dn;
			}
		}
	}
}

/* A route from the driver's position to (lat, lon): along the roads with a
 * map (at the roads' speeds times --traffic), else a straight line at --kmh. */
bool sim_drive_to_route(struct sim_drv *d, double lat, double lon, enum sim_drv_mode mode, bool may_fall_back)
{
	sim_path_clear(&d->path);
	d->path_pos = 0;
	d->mode = mode;
	d->moving = true;
	d->speed_mps = sim_st.kmh / 3.6;
	if (sim_st.routing) {
		struct route_result res;
		if (routing_route(sim_st.routing, d->lat, d->lon, lat, lon, true, &res) == RH_OK && res.npoints >= 2) {
			sim_path_add(&d->path, d->lat, d->lon);
			for (size_t i = 0; i < res.npoints; i++)
				sim_path_add(&d->path, res.coords[2 * i + 1], res.coords[2 * i]);
			sim_path_add(&d->path, lat, lon);
			if (res.duration_s > 1 && res.distance_m > 1)
				d->speed_mps = res.distance_m / res.duration_s * sim_st.traffic;
			if (d->speed_mps < 2)
				d->speed_mps = 2;
			return true;
		}
		if (!may_fall_back) {
			d->moving = false;
			return false;
		}
		sim_st.route_fail++;
	}
	sim_path_add(&d->path, d->lat, d->lon);
	sim_path_add(&d->path, lat, lon);
	return true;
}

void sim_drive_to(struct sim_drv *d, double lat, double lon, enum sim_drv_mode mode)
{
	(void)sim_drive_to_route(d, lat, lon, mode, true);
}

/* Cruising: to a random point of the area that a road reaches (a few tries;
 * standing still rather than driving through buildings). */
void sim_drv_cruise(struct sim_drv *d)
{
	for (int tries = 0; tries < 5; tries++) {
		double lat, lon;
		sim_random_point(&d->rng, &lat, &lon);
		if (sim_drive_to_route(d, lat, lon, MODE_IDLE, false))
			return;
	}
}

/* Moves d by dt simulated seconds; true when it reached the end of its path. */
bool sim_drv_advance(struct sim_drv *d, double dt)
{
	if (!d->moving)
		return false;
	double len = sim_path_length(&d->path), step = d->speed_mps * dt;
	if (d->path_pos + step > len)
		step = len - d->path_pos;
	d->path_pos += step;
	double km = step / 1000.0;
	if (d->mode == MODE_TRIP)
		d->acc.trip_km += km;
	else if (d->mode == MODE_DEADHEAD)
		d->acc.deadhead_km += km;
	else if (d->mode == MODE_REPOSITION)
		d->acc.reposition_km += km;
	else
		d->acc.idle_km += km;
	sim_path_at(&d->path, d->path_pos, &d->lat, &d->lon, &d->heading);
	if (d->path_pos >= len - 1e-6) {
		d->moving = false;
		return true;
	}
	return false;
}

void sim_drv_ping(struct sim_drv *d)
{
	if (!d->up) { /* (reconnecting: the next one when back) */
		d->next_ping = sim_st.now + sim_st.ping_s;
		return;
	}
	cJSON *p = cJSON_CreateObject();
	cJSON_AddStringToObject(p, "driver_id", d->id);
	cJSON *loc = cJSON_AddObjectToObject(p, "location");
	cJSON_AddNumberToObject(loc, "lat", round(d->lat * 1e6) / 1e6);
	cJSON_AddNumberToObject(loc, "lon", round(d->lon * 1e6) / 1e6);
	double kmh = d->moving ? d->speed_mps * 3.6 * sim_st.speed : 0;
	cJSON_AddNumberToObject(p, "speed_kmh", round(fmin(kmh, 399) * 10) / 10);
	cJSON_AddNumberToObject(p, "heading_deg", round(d->heading));
	cJSON_AddNumberToObject(p, "accuracy_m", 5);
	cJSON_AddStringToObject(p, "source", "gps");
	sim_send_envelope(d->ws, d->id, "driver.location.updated", p);
	d->next_ping = sim_st.now + sim_st.ping_s + sim_rng_range(&d->rng, -sim_st.ping_jitter, sim_st.ping_jitter);
}
