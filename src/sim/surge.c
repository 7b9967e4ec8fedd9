#include "sim/surge.h"

#include <cjson/cJSON.h>
#include <string.h>

#include "core/alloc.h"
#include "core/strbuf.h"
#include "sim/sim.h"

void sim_surge_map_init(struct sim_surge_map *m)
{
	memset(m, 0, sizeof *m);
}

void sim_surge_map_fini(struct sim_surge_map *m)
{
	rh_free(m->cell);
	memset(m, 0, sizeof *m);
}

static bool sim_surge_feature(const cJSON *f, struct sim_cell *c)
{
	const cJSON *props = cJSON_GetObjectItemCaseSensitive(f, "properties");
	const cJSON *geom = cJSON_GetObjectItemCaseSensitive(f, "geometry");
	const cJSON *rings = cJSON_GetObjectItemCaseSensitive(geom, "coordinates");
	const cJSON *ring = cJSON_GetArrayItem(rings, 0);
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(props, "cell");
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(props, "multiplier");
	if (!cJSON_IsString(id) || !cJSON_IsNumber(m) || cJSON_GetArraySize(ring) != 7)
		return false;
	memset(c, 0, sizeof *c);
	rh_copy(c->id, sizeof c->id, id->valuestring);
	c->m = m->valuedouble;
	c->demand = cJSON_GetObjectItemCaseSensitive(props, "demand") ? cJSON_GetObjectItemCaseSensitive(props, "demand")->valueint : 0;
	c->supply = cJSON_GetObjectItemCaseSensitive(props, "supply") ? cJSON_GetObjectItemCaseSensitive(props, "supply")->valueint : 0;
	for (int i = 0; i < 6; i++) {
		const cJSON *pt = cJSON_GetArrayItem(ring, i);
		const cJSON *lon = cJSON_GetArrayItem(pt, 0), *lat = cJSON_GetArrayItem(pt, 1);
		if (!cJSON_IsNumber(lon) || !cJSON_IsNumber(lat))
			return false;
		c->ring_lat[i] = lat->valuedouble;
		c->ring_lon[i] = lon->valuedouble;
		c->lat += lat->valuedouble / 6;
		c->lon += lon->valuedouble / 6;
	}
	return true;
}

bool sim_surge_map_parse(struct sim_surge_map *m, const char *json)
{
	cJSON *j = cJSON_Parse(json);
	const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "type");
	const cJSON *feats = cJSON_GetObjectItemCaseSensitive(j, "features");
	if (!cJSON_IsString(type) || strcmp(type->valuestring, "FeatureCollection") != 0 || !cJSON_IsArray(feats)) {
		cJSON_Delete(j);
		return false;
	}
	size_t n = (size_t)cJSON_GetArraySize(feats);
	if (n > m->cap) {
		m->cap = n;
		m->cell = rh_realloc(m->cell, m->cap * sizeof *m->cell);
	}
	m->n = 0;
	const cJSON *f;
	cJSON_ArrayForEach(f, feats) {
		if (sim_surge_feature(f, &m->cell[m->n]))
			m->n++;
	}
	cJSON_Delete(j);
	return true;
}

void sim_surge_map_stats(const struct sim_surge_map *m, size_t *surged, double *max, double *mean)
{
	*surged = 0;
	*max = 1.0;
	double sum = 0;
	for (size_t i = 0; i < m->n; i++) {
		const struct sim_cell *c = &m->cell[i];
		*surged += c->m > 1.0 + 1e-9;
		if (c->m > *max)
			*max = c->m;
		sum += c->m;
	}
	*mean = m->n ? sum / (double)m->n : 1.0;
}

double sim_surge_at(const struct sim_surge_map *m, double lat, double lon, double radius_m)
{
	double best = radius_m, v = 1.0;
	for (size_t i = 0; i < m->n; i++) {
		double d = sim_dist_m(lat, lon, m->cell[i].lat, m->cell[i].lon);
		if (d < best) {
			best = d;
			v = m->cell[i].m;
		}
	}
	return v;
}

int sim_surge_drift_target(const struct sim_surge_map *m, double lat, double lon, double radius_m, double min_gain)
{
	/* here: the nearest cell's multiplier, within a cell's reach (2 km) */
	double here = sim_surge_at(m, lat, lon, 2000);
	int best = -1;
	double best_m = here + min_gain - 1e-9, best_d = 0;
	for (size_t i = 0; i < m->n; i++) {
		const struct sim_cell *c = &m->cell[i];
		double d = sim_dist_m(lat, lon, c->lat, c->lon);
		if (d > radius_m || c->m < best_m)
			continue;
		if (best >= 0 && c->m == best_m && d >= best_d)
			continue;
		best = (int)i;
		best_m = c->m;
		best_d = d;
	}
	return best;
}
