/* select.h - query-aware tile selection for decode steps (Quest-style
 * bounds that hold under any rotation; attention sinks; a recent window).
 *
 * For one query token and one KV head g, every full tile t of the cache
 * gets an upper bound on the attention logit any of the group's query
 * heads can reach on any key of the tile, from the tile's key summary
 * (tile.h: per rotation pair p, M_t[p] = max over the tile of the stored
 * pre-rotation pair norm |k_p|):
 *
 *   q . R(pos) k = sum_p q_p . R_p(pos) k_p <= sum_p |q_p| * s_p * |k_p|
 *                <= sum_p |q_p| * s_p * M_t[p] =: bound_t(q)
 *
 * with s_p = the rotation table's magnitude (mscale) for rotated pairs
 * and 1 for unrotated channels. R is any rotation: every position scheme,
 * the query's own rotation (the bound takes the rotated q, whose pair
 * norms are the same under SelfExtend's grouped positions) and any key
 * position. bound(group) = max over the group's query heads.
 *
 * Policy ("--attend"): every tile (exact), or the tiles holding the first
 * `sink` tokens, the tiles holding the last `recent` tokens, the tokens
 * past the last full tile (always), and `top` more tiles (a count, or a
 * fraction of the full tiles, rounded up). Each KV head ranks the other
 * tiles by its bound (ties: earlier tile first); the top tiles are taken
 * from the heads' rankings in turn (head 0's best, head 1's best, ...,
 * then the second best of each, skipping tiles already taken) until `top`
 * distinct tiles are chosen. A tile is the unit of I/O and holds every KV
 * head, so the budget is what is read; every head attends over all of it.
 */
#ifndef KVT_SELECT_H
#define KVT_SELECT_H

#include <stddef.h>
#include <stdint.h>

#include "kvstore/tile.h"

struct sel_policy {
    int on;              /* 0: every tile (exact attention) */
    int64_t sink;        /* tokens at the start always attended */
    int64_t recent;      /* tokens before the query always attended */
    int64_t top;         /* tiles chosen by bound (top_frac == 0) */
    double top_frac;     /* > 0: top = ceil(top_frac * full tiles) */
};

/* "all", or comma-separated "sink:S", "recent:R", "top:K" | "top:P%" (S, R
 * tokens with an optional k/M suffix; K tiles; 0 < P <= 100); missing
 * parts are 0 (top is required). @return 0 or KVT_ERANGE. */
int sel_parse(const char *spec, struct sel_policy *out);
/* The policy as sel_parse reads it, into buf (cap bytes). */
void sel_format(const struct sel_policy *p, char *buf, size_t cap);

/* Tiles chosen by bound for n_full full tiles. */
int64_t sel_top_count(const struct sel_policy *p, int64_t n_full);

/* Bound weights of `rows` rotated query heads q (rows, head_dim):
 * w[r * half + p] = |q_r pair p| * (pair p rotated ? mscale : 1), pair p
 * rotated iff its first channel is < n_rot (rope.h rotates the pairs of
 * the first n_rot channels, in the layout PR names). half = head_dim/2. */
void sel_weights(const float *q, int rows, const struct tile_pairing *pr,
                 int n_rot, float mscale, float *w);

/* max over rows of sum_p w[r][p] * sum[p]; +inf if sum is NULL (a tile
 * without a summary is always a candidate). */
float sel_bound(const float *w, int rows, int half, const float *sum);

/* Choose among n_full full tiles of T tokens, the query at position
 * n_tokens (the cache holds [0, n_tokens)), from the bounds of n_heads KV
 * heads (head h's bound of tile t at bound[h * ld + t]): chosen[t] = 1 for
 * the chosen tiles, 0 otherwise. rank: scratch of n_heads * n_full
 * entries. @return tiles chosen. */
int64_t sel_choose(const struct sel_policy *p, const float *bound, int n_heads,
                   size_t ld, int64_t n_full, int T, int64_t n_tokens,
                   uint8_t *chosen, int64_t *rank);

#endif
