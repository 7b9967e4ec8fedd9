/* Repositioning in the daemon (match.reposition): each ride request counts
 * as demand where it was made (match/reposition.h), and every
 * match.reposition_interval the idle drivers near busy cells are planned for
 * and told driver.reposition.suggested. The drivers are found through
 * presence (AVAILABLE, a live session, a fresh position), up to 256 within
 * match.reposition_radius of each cell whose demand is 1 or more: only they
 * can be sent anywhere worth going. */
#include <math.h>
#include <stdio.h>

#include <cjson/cJSON.h>
#include "core/alloc.h"
#include "core/metrics.h"
#include "core/settings.h"
#include "core/timer.h"
#include "core/umap.h"
#include "gateway/gateway.h"
#include "match/reposition.h"
#include "match_internal.h"
#include "presence/presence.h"

#define SUGGEST_MAX_CELLS 512
#define SUGGEST_PER_CELL 256

void match_suggest_demand(struct matcher *m, double lat, double lon, int64_t now)
{
	if (m->repo)
		reposition_demand(m->repo, lat, lon, now);
}

static void match_suggest_send(struct matcher *m, const struct reposition_driver *d, const struct reposition_move *mv)
{
	struct session *s = match_session(m, &d->id);
	if (!s)
		return;
	cJSON *p = cJSON_CreateObject();
	cJSON *to = cJSON_AddObjectToObject(p, "target");
	cJSON_AddNumberToObject(to, "lat", round(mv->lat * 1e7) / 1e7);
	cJSON_AddNumberToObject(to, "lon", round(mv->lon * 1e7) / 1e7);
	cJSON_AddNumberToObject(p, "cell_m", (double)m->cfg->reposition_cell_m);
	cJSON_AddNumberToObject(p, "distance_m", round(mv->dist_m));
	cJSON_AddNumberToObject(p, "expected_demand", round(mv->demand * 10) / 10);
	cJSON_AddNumberToObject(p, "drivers_there", mv->drivers);
	cJSON_AddNumberToObject(p, "valid_for_s", (double)(m->cfg->reposition_interval_ms / 1000));
	gateway_send(s, "driver.reposition.suggested", p, NULL);
	metric_inc(m->m_suggestions);
}

static void match_suggest_tick(void *arg, int64_t now)
{
	struct matcher *m = arg;
	rh_timer_at(m->repo_timer, now + m->cfg->reposition_interval_ms);
	double *clat = rh_malloc(SUGGEST_MAX_CELLS * sizeof *clat), *clon = rh_malloc(SUGGEST_MAX_CELLS * sizeof *clon);
	size_t nc = reposition_hot_cells(m->repo, now, clat, clon, SUGGEST_MAX_CELLS);
	struct presence_hit *hits = rh_malloc(SUGGEST_PER_CELL * sizeof *hits);
	struct reposition_driver *drv = NULL;
	size_t nd = 0, cap = 0;
	struct umap seen;
	umap_init(&seen);
	for (size_t c = 0; c < nc; c++) {
		size_t n = presence_nearest(m->deps.presence, clat[c], clon[c], (double)m->cfg->reposition_radius_m,
					    DRIVER_AVAILABLE, UINT32_MAX, now, hits, SUGGEST_PER_CELL);
		for (size_t i = 0; i < n; i++) {
			if (umap_get(&seen, &hits[i].driver) || !match_session(m, &hits[i].driver) ||
			    dispatch_offer_of(m->dispatch, &hits[i].driver))
				continue;
			umap_put(&seen, &hits[i].driver, (void *)1);
			if (nd == cap) {
				cap = cap ? 2 * cap : 256;
				drv = rh_realloc(drv, cap * sizeof *drv);
			}
			drv[nd++] = (struct reposition_driver){ hits[i].driver, hits[i].lat, hits[i].lon };
		}
	}
	if (nd > 0) {
		struct reposition_move *mv = rh_malloc(nd * sizeof *mv);
		size_t k = reposition_plan(m->repo, drv, nd, now, mv, nd);
		for (size_t i = 0; i < k; i++)
			match_suggest_send(m, &drv[mv[i].driver], &mv[i]);
		rh_free(mv);
	}
	umap_fini(&seen);
	rh_free(drv);
	rh_free(hits);
	rh_free(clat);
	rh_free(clon);
}

void match_suggest_init(struct matcher *m)
{
	if (!m->cfg->reposition)
		return;
	m->repo = reposition_new(m->cfg);
	m->repo_timer = rh_timer_new(m->deps.timers, match_suggest_tick, m);
	rh_timer_at(m->repo_timer, rh_timers_now(m->deps.timers) + m->cfg->reposition_interval_ms);
}

void match_suggest_free(struct matcher *m)
{
	rh_timer_free(m->repo_timer);
	reposition_free(m->repo);
}
