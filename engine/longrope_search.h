/* longrope_search.h - the LongRoPE paper's evolutionary search for per-pair
 * RoPE rescale factors and the unscaled prefix n_hat, without the model:
 * the caller evaluates candidates through a callback.
 *
 * A candidate is q_i = 100 lambda_i for each of the n_pairs pairs (the
 * 0.01 grid, integers so that equality, hashing and journals are exact),
 * in [qmin, qmax], non-decreasing in i, n_hat, one of the candidate
 * set nhat[] (one value = fixed), and mscale, 100 x a multiplier of the
 * magnitude (rope_params.mscale_mult), in [mscale_min, mscale_max] (equal:
 * fixed; 0: the gene is absent). Lower fitness (mean NLL) is better.
 *
 * Per iteration (P = population): iteration 0 evaluates the seeds and
 * mutations of them up to P. Each later iteration takes the best ceil(P/2)
 * candidates evaluated so far as parents and makes P children: half by
 * mutation (each pair, with probability 0.3, resampled uniformly on the
 * grid between its neighbours' values, which keeps the order; n_hat, with
 * the same probability, redrawn from the set; mscale, with the same
 * probability, half the time redrawn on its grid, else moved by 1..5
 * steps either way within it), half by crossover (each pair, n_hat and
 * mscale from one of two parents; children that break the order
 * are rejected). Candidates seen before are rejected too. The search
 * stops after max_iter iterations, after `patience` iterations without a
 * better best, or when `budget` candidates have been evaluated (the last
 * generation is cut to fit).
 *
 * Refinement (refine > 0 rounds after the evolutionary iterations, off by
 * default): a local coordinate search on the best so far. A round moves
 * each pair of the best up and down by d = max(1, round(rel x q_i)) on its
 * own (a move up raises later pairs below the new value to it, a move down
 * lowers earlier pairs above it to it, so the order holds and plateaus can
 * move), n_hat to its neighbours in the set, and mscale by max(1, round(rel
 * x mscale)) either way; the first candidate of a round after one that
 * gained combines every single move of it that beat its base. rel starts
 * at LRS_REFINE_REL0 and is halved after a round without a better best;
 * after a round with every step at 1 without one (a local optimum of the
 * grid for these moves) the refinement stops. No random numbers: the rounds
 * are a function of the candidates evaluated so far. Rounds are iterations
 * numbered on from the last evolutionary one (lrs_iter.refine = round);
 * they run however the iterations stopped, and `budget` bounds the
 * iterations only (a round evaluates at most 2 n_pairs + 5 candidates).
 *
 * Determinism: one xoshiro256** stream seeded by `seed` makes every
 * decision before a generation is evaluated, and results are taken in
 * generation order, so the result does not depend on n_workers or on
 * which worker evaluated what. Resume: lrs_known() preloads fitness values
 * (a journal); the run then replays, evaluating only the unknown ones.
 *
 * Threads: with n_workers > 1, lrs_run() evaluates a generation on
 * n_workers threads; eval() is called concurrently with distinct worker
 * indices 0..n_workers-1 (each must own its model context). on_eval() and
 * on_iter() are called from the calling thread only.
 */
#ifndef KVT_LONGROPE_SEARCH_H
#define KVT_LONGROPE_SEARCH_H

#include <stdint.h>

#include "rope.h"

#define LRS_MAX_NHAT 32
#define LRS_REFINE_REL0 0.04 /* the refinement's first relative step */

struct lrs_cand {
    int16_t q[ROPE_MAX_PAIRS]; /* 100 lambda_i, n_pairs used */
    int32_t n_hat;
    int16_t mscale; /* 100 x magnitude multiplier; 0 when the gene is absent */
};

/* One finished iteration. */
struct lrs_iter {
    int iter;
    int best;              /* index into the evaluated candidates */
    double best_nll, median_nll; /* median of this iteration's new ones */
    int n_new, n_eval;     /* this iteration's, all so far */
    int64_t n_computed;    /* evaluated by eval() (not from lrs_known) */
    int refine;            /* 0: an evolutionary iteration; k: refinement round k */
    double refine_rel;     /* its relative step (0 for evolutionary ones) */
    uint64_t rng[4];       /* the RNG state after it (journal check) */
};

/* @return 0 with *nll set, or a negative error that stops the search. */
typedef int (*lrs_eval_fn)(void *user, int worker, const struct lrs_cand *c, double *nll);
/* A newly computed candidate, in generation order. @return 0 or an error. */
typedef int (*lrs_on_eval_fn)(void *user, const struct lrs_cand *c, double nll, int iter);
/* @return 0 to go on, or an error that stops the search. */
typedef int (*lrs_on_iter_fn)(void *user, const struct lrs_iter *it);

struct lrs_config {
    int n_pairs;           /* 1..ROPE_MAX_PAIRS */
    int qmin, qmax;        /* grid range, 1 <= qmin <= qmax */
    int domain;            /* mixed into hashes (0 long, 1 short factors) */
    int population;        /* >= 2 */
    int max_iter;          /* iterations after the initial one */
    int patience;          /* 0 = off */
    int refine;            /* refinement rounds after the iterations (0 = none) */
    int64_t budget;        /* max candidates evaluated by the iterations, 0 = no limit */
    uint64_t seed;
    int n_nhat;            /* 1..LRS_MAX_NHAT */
    int32_t nhat[LRS_MAX_NHAT];
    int mscale_min, mscale_max; /* 0 <= min <= max <= 1000; searched if min < max */
    int n_seeds;           /* 1..8, each valid (in range, monotone, n_hat in the set,
                              mscale in range) */
    struct lrs_cand seeds[8];
    int n_workers;         /* >= 1 */
    lrs_eval_fn eval;
    lrs_on_eval_fn on_eval; /* may be NULL */
    lrs_on_iter_fn on_iter; /* may be NULL */
    void *user;
};

typedef struct lrs lrs;

/* The paper's n_hat candidates {0,1,2,4,8,12,16,20,24,28,32,64,128,256}
 * up to orig_ctx, into out (LRS_MAX_NHAT). @return how many. */
int lrs_nhat_paper_set(int64_t orig_ctx, int32_t *out);

/* Round LAM (n_pairs) to the grid, clamp to [qmin, qmax], force the order. */
void lrs_q_from_lambda(const double *lam, int n_pairs, int qmin, int qmax, int16_t *q);

/* The usual starts as factors for scale s: PI (all s), NTK-equivalent
 * (lambda_i = (s^(d/(d-2)))^(2i/d)), YaRN-equivalent (1/lambda_i =
 * (1-r_i)/s + r_i, r_i the ramp of beta_fast 32, beta_slow 1), each with
 * the given n_hat. out: 3 candidates. */
void lrs_seeds_standard(const struct rope_params *rp, double s, int qmin, int qmax,
                        int32_t n_hat, struct lrs_cand out[3]);

/* A previous result LAM (searched for scale s_from) seeded for scale s:
 * out[0] lambda * s / s_from, out[1] lambda^(ln s / ln s_from) (keeps
 * the extrapolated pairs at 1); both on the grid, with n_hat. */
void lrs_seeds_from(const float *lam, int n_pairs, double s_from, double s, int qmin, int qmax,
                    int32_t n_hat, struct lrs_cand out[2]);

/* 1 if c is in range, monotone, its n_hat is in the set and its mscale in range. */
int lrs_cand_valid(const struct lrs_config *cfg, const struct lrs_cand *c);

/* @return 0, -EINVAL for a bad configuration, -ENOMEM. */
int lrs_create(const struct lrs_config *cfg, lrs **out);
void lrs_free(lrs *s); /* NULL: no-op */

/* A known fitness (from a journal). @return 0 or -ENOMEM. */
int lrs_known(lrs *s, const struct lrs_cand *c, double nll);

/* Run the search. @return 0, or the first error of eval/on_eval/on_iter,
 * or -ENOMEM. */
int lrs_run(lrs *s);

/* After lrs_run: the evaluated candidates in order, and the iterations. */
int lrs_n_cands(const lrs *s);
const struct lrs_cand *lrs_cand_at(const lrs *s, int i, double *nll);
int lrs_best(const lrs *s); /* index of the best (ties: the earliest), -1 if none */
const struct lrs_iter *lrs_iters(const lrs *s, int *n);
/* 1 if the refinement stopped at a local optimum of the grid (before its
 * rounds ran out), else 0. */
int lrs_refine_converged(const lrs *s);

#endif
