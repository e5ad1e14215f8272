/* ref_model.h - the naive oracle of the forward pass, for tests.
 *
 * Written independently of engine/attn.c and engine/rope.c: plain loops in
 * double over the F32 weights of a llama-layout model, token by token, the
 * full causal attention row with one softmax, RoPE from its formula with
 * per-pair frequencies and a magnitude given by the test. Positions may
 * change as the sequence grows (a table per length); cached keys are then
 * either all re-rotated with the current table (kvtile's pre-rotation
 * cache) or kept as rotated when computed ("mixed", a post-rotation cache).
 * SelfExtend builds the merged logits (neighbour where q - k < W, grouped
 * positions floor(p/G) and floor(q/G) + W - floor(W/G) elsewhere).
 * Q/K/V biases (qwen2: blk.N.attn_{q,k,v}.bias) are added after the
 * projections when the file has them; NeoX (half-split) pairs when the
 * ref_rope says so.
 */
#ifndef KVT_REF_MODEL_H
#define KVT_REF_MODEL_H

#include <stdint.h>

#include "engine/model.h"

struct ref_rope {
    int n_rot, neox;
    double freq[256];  /* radians per position, per pair */
    double mscale;     /* multiplies cos and sin */
};

/* The table in force when the sequence has LEN tokens. */
typedef const struct ref_rope *(*ref_rope_fn)(int64_t len, void *ctx);

struct ref_opts {
    ref_rope_fn rope;
    void *rope_ctx;
    int mixed;         /* 1: keys keep the rotation of their own step */
    int se_g, se_w;    /* SelfExtend, 0 = off */
};

/* Logits (n, n_vocab) of tokens[0..n), evaluated one token at a time from
 * position 0. The model must be llama-layout with F32 weights. */
void ref_forward(const model *m, const int32_t *tokens, int n,
                 const struct ref_opts *o, double *logits);

/* Plain RoPE of base B for n_rot dims, magnitude 1, adjacent pairs. */
void ref_rope_plain(struct ref_rope *r, int n_rot, double base);

#endif
