#include "match/assign.h"

#include <stdbool.h>
#include <string.h>

#include "core/alloc.h"

#define ASSIGN_INF INT64_MAX

/* Columns are the drivers (0..ncols) and then one "unassigned" column per
 * row (ncols + i, which only row i can take). Node potentials make every
 * pair's reduced cost, cost + row_pot - col_pot, non-negative, and zero on
 * the pairs taken: a path search is then Dijkstra's. */
struct assign {
	size_t cap_rows, cap_cols; /* ncols + nrows */
	int64_t *row_pot, *row_cost;
	int32_t *row_of; /* the column each row holds (any column), -1 */
	int64_t *col_pot, *dist, *pred_cost;
	int32_t *col_of; /* the row holding each column, -1 */
	int32_t *pred;   /* the row a column was reached from, this search */
	int32_t *heap, *pos; /* binary heap of columns by dist; pos -1: not in it */
	uint8_t *done;   /* settled this search */
	int32_t *touched;
	size_t nheap, ntouched;
};

struct assign *assign_new(void)
{
	return RH_NEW(struct assign);
}

void assign_free(struct assign *a)
{
	if (!a)
		return;
	rh_free(a->row_pot);
	rh_free(a->row_cost);
	rh_free(a->row_of);
	rh_free(a->col_pot);
	rh_free(a->dist);
	rh_free(a->pred_cost);
	rh_free(a->col_of);
	rh_free(a->pred);
	rh_free(a->heap);
	rh_free(a->pos);
	rh_free(a->done);
	rh_free(a->touched);
	rh_free(a);
}

static void assign_reserve(struct assign *a, size_t nrows, size_t ncols)
{
	if (nrows > a->cap_rows) {
		a->cap_rows = nrows;
		a->row_pot = rh_realloc(a->row_pot, nrows * sizeof *a->row_pot);
		a->row_cost = rh_realloc(a->row_cost, nrows * sizeof *a->row_cost);
		a->row_of = rh_realloc(a->row_of, nrows * sizeof *a->row_of);
	}
	if (ncols > a->cap_cols) {
		a->cap_cols = ncols;
		a->col_pot = rh_realloc(a->col_pot, ncols * sizeof *a->col_pot);
		a->dist = rh_realloc(a->dist, ncols * sizeof *a->dist);
		a->pred_cost = rh_realloc(a->pred_cost, ncols * sizeof *a->pred_cost);
		a->col_of = rh_realloc(a->col_of, ncols * sizeof *a->col_of);
		a->pred = rh_realloc(a->pred, ncols * sizeof *a->pred);
		a->heap = rh_realloc(a->heap, ncols * sizeof *a->heap);
		a->pos = rh_realloc(a->pos, ncols * sizeof *a->pos);
		a->done = rh_realloc(a->done, ncols * sizeof *a->done);
		a->touched = rh_realloc(a->touched, ncols * sizeof *a->touched);
	}
}

/* ------------------------------------------------------------ the heap */

static bool assign_less(const struct assign *a, int32_t x, int32_t y)
{
	return a->dist[x] < a->dist[y] || (a->dist[x] == a->dist[y] && x < y);
}

static void assign_heap_set(struct assign *a, size_t i, int32_t c)
{
	a->heap[i] = c;
	a->pos[c] = (int32_t)i;
}

static void assign_heap_up(struct assign *a, size_t i)
{
	int32_t c = a->heap[i];
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (!assign_less(a, c, a->heap[parent]))
			break;
		assign_heap_set(a, i, a->heap[parent]);
		i = parent;
	}
	assign_heap_set(a, i, c);
}

static int32_t assign_heap_pop(struct assign *a)
{
	int32_t top = a->heap[0], last = a->heap[--a->nheap];
	a->pos[top] = -1;
	if (a->nheap == 0)
		return top;
	size_t i = 0;
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		int32_t mc = last;
		if (l < a->nheap && assign_less(a, a->heap[l], mc)) {
			m = l;
			mc = a->heap[l];
		}
		if (r < a->nheap && assign_less(a, a->heap[r], mc))
			m = r;
		if (m == i)
			break;
		assign_heap_set(a, i, a->heap[m]);
		i = m;
	}
	assign_heap_set(a, i, last);
	return top;
}

/* ------------------------------------------------------------ one path */

/* Column c reached from row r at distance d through a pair costing cost. */
static void assign_reach(struct assign *a, int32_t c, int32_t r, int64_t d, int64_t cost)
{
	if (a->done[c])
		return;
	if (a->dist[c] == ASSIGN_INF)
		a->touched[a->ntouched++] = c;
	else if (d >= a->dist[c])
		return;
	a->dist[c] = d;
	a->pred[c] = r;
	a->pred_cost[c] = cost;
	if (a->pos[c] < 0) {
		a->pos[c] = (int32_t)a->nheap;
		a->heap[a->nheap++] = c;
	}
	assign_heap_up(a, (size_t)a->pos[c]);
}

/* Every pair of row r, reached at distance d. */
static void assign_relax(struct assign *a, const struct assign_problem *p, int32_t r, int64_t d)
{
	for (size_t k = p->row_start[r]; k < p->row_start[r + 1]; k++) {
		uint32_t c = p->col[k];
		if (c < p->ncols)
			assign_reach(a, (int32_t)c, r, d + p->cost[k] + a->row_pot[r] - a->col_pot[c], p->cost[k]);
	}
	int32_t u = (int32_t)(p->ncols + (size_t)r); /* its own "unassigned" */
	assign_reach(a, u, r, d + p->unassigned[r] + a->row_pot[r] - a->col_pot[u], p->unassigned[r]);
}

/* The shortest augmenting path from the free row r0: Dijkstra until a free
 * column is settled, then the potentials move so that every pair stays
 * non-negative and the path's pairs become zero, and the path flips. */
static void assign_row(struct assign *a, const struct assign_problem *p, int32_t r0)
{
	a->nheap = a->ntouched = 0;
	assign_relax(a, p, r0, 0);
	int32_t sink = -1;
	while (a->nheap > 0) {
		int32_t c = assign_heap_pop(a);
		a->done[c] = 1;
		if (a->col_of[c] < 0) {
			sink = c;
			break;
		}
		assign_relax(a, p, a->col_of[c], a->dist[c]);
	}
	/* (sink is always found: r0's own "unassigned" column is free) */
	int64_t len = a->dist[sink];
	for (size_t i = 0; i < a->ntouched; i++) {
		int32_t c = a->touched[i];
		if (a->done[c] && c != sink) {
			int64_t delta = a->dist[c] - len; /* <= 0 */
			a->col_pot[c] += delta;
			a->row_pot[a->col_of[c]] += delta;
		}
	}
	a->row_pot[r0] -= len;
	for (int32_t c = sink;;) {
		int32_t r = a->pred[c], prev = a->row_of[r];
		a->row_of[r] = c;
		a->row_cost[r] = a->pred_cost[c];
		a->col_of[c] = r;
		if (r == r0)
			break;
		c = prev;
	}
	for (size_t i = 0; i < a->ntouched; i++) {
		int32_t c = a->touched[i];
		a->dist[c] = ASSIGN_INF;
		a->done[c] = 0;
		a->pos[c] = -1;
	}
}

int64_t assign_solve(struct assign *a, const struct assign_problem *p, int32_t *row_col)
{
	size_t nr = p->nrows, nc = p->ncols + nr;
	assign_reserve(a, nr, nc);
	for (size_t c = 0; c < nc; c++) {
		a->col_pot[c] = 0;
		a->dist[c] = ASSIGN_INF;
		a->col_of[c] = -1;
		a->pos[c] = -1;
		a->done[c] = 0;
	}
	for (size_t r = 0; r < nr; r++) {
		/* potentials start at each row's cheapest choice: reduced costs >= 0 */
		int64_t lo = p->unassigned[r];
		for (size_t k = p->row_start[r]; k < p->row_start[r + 1]; k++)
			if (p->col[k] < p->ncols && p->cost[k] < lo)
				lo = p->cost[k];
		a->row_pot[r] = -lo;
		a->row_of[r] = -1;
	}
	for (size_t r = 0; r < nr; r++)
		assign_row(a, p, (int32_t)r);
	int64_t total = 0;
	for (size_t r = 0; r < nr; r++) {
		total += a->row_cost[r];
		row_col[r] = (size_t)a->row_of[r] < p->ncols ? a->row_of[r] : -1;
	}
	return total;
}
