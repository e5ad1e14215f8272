/* teval.h - the engine side of the tests that compare it with the naive
 * oracle (tests/ref_model.c): all logits of a token sequence. */
#ifndef KVT_TEVAL_H
#define KVT_TEVAL_H

#include <stdint.h>

#include "engine/model.h"

/* Evaluate tokens[0..n) from an empty RAM store of f32 tiles of TILE tokens,
 * in batches of BATCH with THREADS threads and the file's positions
 * (SelfExtend G:W if se_g > 0), writing the logits of every position to
 * logits (n x n_vocab). @return 0, or the first negative code. */
int t_engine_logits(const model *m, const int32_t *tokens, int n, int batch,
                    int tile, int threads, int se_g, int se_w, float *logits);

#endif
