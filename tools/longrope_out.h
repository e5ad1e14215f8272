/* longrope_out.h - what `kvtile longrope-search` writes and reads back:
 * factors files, the JSON log, the convergence SVG and the GGUF.
 *
 * Factors file: one comment line, then one factor per line (the
 * --longrope-factors format):
 *   # LongRoPE long factors for L tokens (s = S), search ppl P; target_ctx L n_hat N [mscale M]
 * "target_ctx L", "n_hat N" and "mscale M" (the magnitude multiplier, when
 * one was used: give it with --longrope-mscale M) are read back by --from
 * (lr_read_from). */
#ifndef KVT_LONGROPE_OUT_H
#define KVT_LONGROPE_OUT_H

#include <stdint.h>

#include "engine/longrope_search.h"
#include "engine/model.h"

/* What one finished search reports. */
struct lr_result {
    const char *model_path;
    const char *set;       /* "long" or "short" */
    int64_t eval_ctx, target_ctx, orig_ctx;
    double scale, mscale;  /* mscale: the magnitude without the searched multiplier */
    double mscale_mult;    /* the fixed --longrope-mscale, 0: none */
    int n_pairs, population, samples, n_workers, patience, refine;
    int64_t budget;
    int search_n_hat, search_mscale;
    int se_group, se_window; /* SelfExtend during the search (0: off) */
    const char *stopped;   /* "iterations", "patience", "budget", "refine rounds" or
                              "refined" (a local optimum) */
    double seconds;
    const lrs *search;
};

/* mscale_mult: the magnitude multiplier of the factors, 0: none. */
void lr_write_factors(const char *path, const int16_t *q, int np, int64_t target_ctx,
                      double s, int64_t n_hat, double mscale_mult, double ppl, const char *set);

/* A previous result for --from: factors (np of them), its target context
 * (the file's "target_ctx", else from_ctx; none: exits), n_hat (the
 * file's, else 0) and the magnitude multiplier (the file's, else 0).
 * Exits with a message on a bad file. */
void lr_read_from(const char *path, int np, int64_t from_ctx, float *lam, int64_t *target_ctx,
                  int64_t *n_hat, double *mscale_mult);

void lr_write_log(const char *path, const struct lr_result *r);

/* Best and median perplexity per iteration. */
void lr_write_svg(const char *path, const struct lr_result *r);

/* MODEL with the factors as llama.cpp reads them, context L (see cmd_longrope.c). */
void lr_write_gguf(const char *path, const model *m, const char *model_path, int64_t L,
                   int64_t orig, double mscale, const float *lf, const float *sf, int np);

#endif
