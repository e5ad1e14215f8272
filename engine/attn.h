/* attn.h - causal attention streamed tile by tile from the KV store.
 *
 * For a chunk of n queries at positions pos0 .. pos0+n-1:
 *   1. Q (pre-rotation) is rotated for its positions (rope.h);
 *   2. the store's spans of tokens [0, pos0) arrive one by one (kvs.h);
 *      each span's pre-rotation K is rotated for the span's positions with
 *      one cos/sin table shared by all heads; per KV head g and block of
 *      queries, S = Q_g K_g^T / sqrt(d), the online softmax (running max
 *      m and sum l, the flash-attention recurrence) rescales the
 *      accumulator, and acc += P V_g. Prompt chunks (>= 16 queries) on the
 *      avx2 and avx512 sets compute it transposed with the kernels of
 *      attn_kern.h (query rows in vector lanes); decode steps, short
 *      chunks and the portable set with cblas_sgemm for both products;
 *   3. the chunk's own K/V (from RAM) are attended the same way with the
 *      causal mask;
 *   4. out = acc / l.
 * The query heads sharing a KV head (GQA) are stacked into one matrix.
 * Optional: a sliding window (keys older than `window` positions are
 * masked) and SelfExtend (group G, neighbour window W: keys at distance
 * < W use normal positions, farther keys grouped positions floor(p / G)
 * with the query at floor(q / G) + W - floor(W / G); both logit sets are
 * merged before one softmax).
 * Decode steps (n == 1) with a selection policy (select.h, sel.on): per
 * KV head, the full tiles are bounded from the store's key summaries; the
 * tiles chosen from the heads' rankings are read (kvs_read_begin_tiles)
 * and every head attends, with the same online softmax, over them, the
 * tokens past the last full tile and the chunk itself.
 * Prompt chunks (n > 1) and sel.on == 0 attend over everything, exactly
 * as without selection.
 * Deterministic: every (head, query block) is computed by one thread in a
 * fixed order, so results do not depend on the thread count or on where
 * the spans came from.
 */
#ifndef KVT_ATTN_H
#define KVT_ATTN_H

#include <stdint.h>

#include "pool.h"
#include "rope.h"
#include "select.h"
#include "kvstore/kvs.h"

struct attn_params {
    int n_head, n_head_kv, head_dim;
    int max_q;              /* max queries per call (the batch) */
    int tile_tokens;        /* span length of the store */
    int64_t window;         /* sliding window, 0 = none */
    int se_group, se_window; /* SelfExtend, 0 = off */
    int k_rotated;          /* 1: K arrives already rotated (the store keeps
                               post-rotation K, as llama.cpp does); no K
                               rotation here. Incompatible with SelfExtend. */
    struct sel_policy sel;  /* decode-step tile selection (sel.on = 0: off) */
    int cpu_set;            /* kernel set of the softmax exp (enum cpu_set;
                               CPU_SET_DEFAULT = cpu_set_default()) */
    size_t rope_cache_bytes; /* cos/sin rows of the stream's tiles kept
                               across layers and steps (rope_cache, sized
                               by attn_reserve); 0: ATTN_ROPE_CACHE_DEFAULT */
};
#define ATTN_ROPE_CACHE_DEFAULT ((size_t)16 << 20)

/* What decode steps (n == 1 with a cached past) read, summed over calls. */
struct attn_stats {
    int64_t steps;          /* attn_forward calls (one layer each) */
    int64_t tiles;          /* tiles the past held (partial last counted) */
    int64_t tiles_read;     /* spans read */
    uint64_t bytes_read;    /* kvs_bytes_read of those reads */
};

typedef struct attn_ctx attn_ctx;

int attn_ctx_create(const struct attn_params *ap, pool *p, attn_ctx **out);
void attn_ctx_free(attn_ctx *a);

/* Size the decode-step selection buffers (sel.on) for a cache of up to
 * n_tokens, so that decode steps below it allocate nothing: about
 * (12 n_head_kv + 9) bytes per tile; exactly on the first call, at least
 * doubling on later ones that need more. Also sizes the cos/sin cache
 * for positions [0, n_tokens) (head_dim * 4 bytes per position, up to
 * rope_cache_bytes; without a call nothing is cached).
 * @return 0 or -ENOMEM. */
int attn_reserve(attn_ctx *a, int64_t n_tokens);

/* q: (n, n_head*head_dim) pre-rotation (clobbered);
 * k_new, v_new: (n, kv_dim) the chunk's own K/V (K pre-rotation unless
 * k_rotated);
 * out: (n, n_head*head_dim).
 * Reads layer LAYER of KV for tokens [0, pos0); does not append.
 * @return 0 or a store error. */
int attn_forward(attn_ctx *a, kvs *kv, int layer, const struct rope_table *rt,
                 float *q, const float *k_new, const float *v_new, int n,
                 int64_t pos0, float *out);

/* Decode-step counters since attn_ctx_create. */
void attn_get_stats(const attn_ctx *a, struct attn_stats *st);

#endif
