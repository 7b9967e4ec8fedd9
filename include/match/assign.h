/* Minimum-cost assignment of rows (ride requests) to columns (drivers) over a
 * sparse set of allowed pairs, rectangular (any number of each), where a row
 * may also stay unassigned at a cost of its own. Pure: no I/O, no clock.
 *
 * The problem: choose for each row either one of its pairs or "unassigned",
 * no column taken twice, minimising the sum of the chosen pairs' costs plus
 * the unassigned costs of the rows left out. Unassigned costs larger than
 * any path of pair costs (dispatch uses about 30 years in milliseconds) make
 * the answer serve as many rows as possible first, then the cheapest way;
 * unequal ones say which rows to leave out when not all can be served.
 *
 * The method: successive shortest augmenting paths (the Hungarian method in
 * the form of Jonker and Volgenant's shortest-path step), one row at a time,
 * each path found by Dijkstra on the costs reduced by node potentials, over
 * the pairs only; each row's "unassigned" is a column only it can take.
 * Exact on integer costs (no tolerance anywhere): after row k the assignment
 * is optimal for rows 0..k, which is the usual invariant of the method.
 * Cost: a path search visits the columns cheaper than the path it finds;
 * with more drivers than requests most rows find a free column at once.
 *
 * Ownership: the caller owns the problem's arrays; struct assign owns its
 * scratch space, reused (and grown) from one solve to the next, so a
 * dispatcher solving a window every second allocates nothing in steady
 * state. One struct assign serves one thread at a time. */
#ifndef RH_MATCH_ASSIGN_H
#define RH_MATCH_ASSIGN_H

#include <stddef.h>
#include <stdint.h>

/* |cost| and unassigned costs up to this (2^50): sums of a thousand stay
 * far inside int64. */
#define ASSIGN_COST_MAX ((int64_t)1 << 50)

/* The pairs in compressed rows: row i's pairs are pair indices
 * [row_start[i], row_start[i + 1]), each with its column (< ncols) and its
 * cost. A column named twice in one row: the cheaper pair counts. */
struct assign_problem {
	size_t nrows, ncols;
	const size_t *row_start;   /* nrows + 1 entries */
	const uint32_t *col;       /* row_start[nrows] entries */
	const int64_t *cost;       /* the same */
	const int64_t *unassigned; /* nrows entries: the cost of leaving row i out */
};

struct assign;
struct assign *assign_new(void);
void assign_free(struct assign *a);

/* Solves p: row_col[i] is the column given to row i, or -1 (unassigned).
 * Returns the total cost (pairs chosen plus rows left out). */
int64_t assign_solve(struct assign *a, const struct assign_problem *p, int32_t *row_col);

#endif
