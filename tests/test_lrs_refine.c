/* test_lrs_refine.c - the refinement stage of engine/longrope_search.c
 * (coordinate moves on the best after the evolutionary iterations) on
 * synthetic fitness functions, no model: the first rounds of a
 * two-pair case against hand-computed candidates (moves, pushes, the
 * combination of a round's gains, rejection of seen candidates), exact
 * convergence to the optimum of a separable quadratic with an order-
 * respecting target (also over n_hat and the magnitude), validity of every
 * candidate, independence of the worker count, replay from known values
 * (a journal), and that --budget bounds the iterations only. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/longrope_search.h"
#include "base/kvt.h"
#include "tests/t.h"

/* f = sum w_i (q_i - t_i)^2 + (set index of n_hat - tn)^2 + (mscale - tm)^2 */
struct quad {
    int np;
    double w[ROPE_MAX_PAIRS];
    int t[ROPE_MAX_PAIRS];
    int tn, tm;            /* targets; tm used when mscale != 0 */
    const struct lrs_config *cfg;
    int n_calls, n_invalid;
};

static int nhat_index(const struct lrs_config *g, int32_t v)
{
    for (int k = 0; k < g->n_nhat; k++)
        if (g->nhat[k] == v) return k;
    return -1;
}

static int quad_eval(void *user, int worker, const struct lrs_cand *c, double *nll)
{
    (void)worker;
    struct quad *q = user;
    double f = 0;
    for (int i = 0; i < q->np; i++) f += q->w[i] * (c->q[i] - q->t[i]) * (double)(c->q[i] - q->t[i]);
    int k = nhat_index(q->cfg, c->n_hat);
    f += (double)(k - q->tn) * (k - q->tn);
    if (c->mscale) f += (double)(c->mscale - q->tm) * (c->mscale - q->tm);
    __atomic_add_fetch(&q->n_calls, 1, __ATOMIC_RELAXED);
    if (!lrs_cand_valid(q->cfg, c)) __atomic_add_fetch(&q->n_invalid, 1, __ATOMIC_RELAXED);
    *nll = f;
    return 0;
}

static void base_cfg(struct lrs_config *g, struct quad *q, int np)
{
    memset(g, 0, sizeof *g);
    g->n_pairs = np;
    g->qmin = 100;
    g->qmax = 200;
    g->population = 2;
    g->max_iter = 0;
    g->seed = 3;
    g->n_nhat = 1;
    g->n_seeds = 1;
    g->n_workers = 1;
    g->eval = quad_eval;
    g->user = q;
    q->np = np;
    q->cfg = g;
}

/* Two pairs, seed (100, 150), target (110, 170), unit weights: hand-computed
 * rounds (see the comments). */
static void test_hand_rounds(void)
{
    struct lrs_config g;
    struct quad q = { 0 };
    base_cfg(&g, &q, 2);
    q.w[0] = q.w[1] = 1;
    q.t[0] = 110;
    q.t[1] = 170;
    g.population = 2; /* iteration 0: the two seeds, no mutation */
    g.n_seeds = 2;
    g.seeds[0].q[0] = 100;
    g.seeds[0].q[1] = 150;
    g.seeds[1].q[0] = g.seeds[1].q[1] = 200; /* f = 8100 + 900 */
    g.refine = 2;
    lrs *s;
    T_CHECK(lrs_create(&g, &s) == 0);
    T_CHECK(lrs_run(s) == 0);
    int n = lrs_n_cands(s);
    /* round 1 from (100,150), d = 4 and 6: pair 0 up (104,150); pair 0 down
       clamps to 100 (no move); pair 1 up (100,156), down (100,144).
       f: 436, 296, 776: best (100,156).
       round 2: the combination of the gains (104,156) = 232 first, then
       from (100,156), d = 4 and lround(6.24) = 6: pair 0 up (104,156) seen,
       pair 1 up (100,162) = 164, pair 1 down (100,150) seen (the seed). */
    static const int want[][2] = { { 104, 150 }, { 100, 156 }, { 100, 144 }, { 104, 156 }, { 100, 162 } };
    static const double wf[] = { 436, 296, 776, 232, 164 };
    T_CHECK(n == 2 + 5);
    for (int k = 0; k < 5 && k + 2 < n; k++) {
        double f;
        const struct lrs_cand *c = lrs_cand_at(s, 2 + k, &f);
        T_CHECK(c->q[0] == want[k][0] && c->q[1] == want[k][1]);
        T_NEAR(f, wf[k], 0);
    }
    int n_it;
    const struct lrs_iter *it = lrs_iters(s, &n_it);
    T_CHECK(n_it == 3);
    T_CHECK(it[0].refine == 0 && it[1].refine == 1 && it[2].refine == 2);
    T_CHECK(it[1].iter == 1 && it[2].iter == 2 && it[1].n_new == 3 && it[2].n_new == 2);
    T_NEAR(it[1].refine_rel, LRS_REFINE_REL0, 0);
    T_NEAR(it[2].best_nll, 164, 0);
    T_CHECK(!lrs_refine_converged(s)); /* the rounds ran out */
    lrs_free(s);
}

/* 12 pairs far from a monotone target with plateaus, n_hat and the
 * magnitude searched: the rounds reach the exact optimum and stop there. */
static void setup_big(struct lrs_config *g, struct quad *q)
{
    base_cfg(g, q, 12);
    static const int t[12] = { 100, 103, 111, 111, 111, 140, 152, 188, 188, 188, 190, 200 };
    for (int i = 0; i < 12; i++) {
        q->t[i] = t[i];
        q->w[i] = 1.0 + 0.25 * i;
    }
    g->n_nhat = lrs_nhat_paper_set(256, g->nhat);
    q->tn = 6;  /* n_hat 16 */
    g->mscale_min = 70;
    g->mscale_max = 130;
    q->tm = 93;
    for (int i = 0; i < 12; i++) g->seeds[0].q[i] = (int16_t)(150 + 2 * i);
    g->seeds[0].n_hat = 64;
    g->seeds[0].mscale = 110;
    g->population = 4;
    g->max_iter = 2;
    g->refine = 1000;
}

static void test_converges_exactly(void)
{
    struct lrs_config g;
    struct quad q = { 0 };
    setup_big(&g, &q);
    lrs *s;
    T_CHECK(lrs_create(&g, &s) == 0);
    T_CHECK(lrs_run(s) == 0);
    T_CHECK(lrs_refine_converged(s));
    double f;
    const struct lrs_cand *b = lrs_cand_at(s, lrs_best(s), &f);
    T_NEAR(f, 0, 0);
    for (int i = 0; i < 12; i++) T_CHECK(b->q[i] == q.t[i]);
    T_CHECK(b->n_hat == 16 && b->mscale == 93);
    T_CHECK(q.n_invalid == 0);
    T_CHECK(q.n_calls == lrs_n_cands(s));
    int n_it;
    const struct lrs_iter *it = lrs_iters(s, &n_it);
    T_CHECK(n_it < 3 + 1000 && it[n_it - 1].refine > 0);
    /* every round at most 2 x 12 + 5 candidates; steps halve down to 1 */
    for (int i = 3; i < n_it; i++) T_CHECK(it[i].n_new <= 29 && it[i].refine == i - 2);
    T_CHECK(lround(it[n_it - 1].refine_rel * 200) <= 1); /* the last round had unit steps */
    lrs_free(s);
}

/* Same sequence with one worker or three, and replayed from known values
 * (the first half preloaded, as a journal does) with eval called for the
 * rest only. */
static void test_workers_and_replay(void)
{
    struct lrs_config g1, g3, gr;
    struct quad q1 = { 0 }, q3 = { 0 }, qr = { 0 };
    setup_big(&g1, &q1);
    setup_big(&g3, &q3);
    setup_big(&gr, &qr);
    g1.refine = g3.refine = gr.refine = 20;
    g3.n_workers = 3;
    lrs *a, *b, *r;
    T_CHECK(lrs_create(&g1, &a) == 0 && lrs_create(&g3, &b) == 0 && lrs_create(&gr, &r) == 0);
    T_CHECK(lrs_run(a) == 0 && lrs_run(b) == 0);
    int n = lrs_n_cands(a);
    T_CHECK(n == lrs_n_cands(b) && n > 100);
    int same = 1;
    for (int i = 0; i < n && i < lrs_n_cands(b); i++) {
        double fa, fb;
        const struct lrs_cand *ca = lrs_cand_at(a, i, &fa), *cb = lrs_cand_at(b, i, &fb);
        same &= !memcmp(ca, cb, sizeof *ca) && fa == fb;
    }
    T_CHECK(same);
    for (int i = 0; i < n / 2; i++) {
        double f;
        const struct lrs_cand *c = lrs_cand_at(a, i, &f);
        T_CHECK(lrs_known(r, c, f) == 0);
    }
    T_CHECK(lrs_run(r) == 0);
    T_CHECK(lrs_n_cands(r) == n && qr.n_calls == n - n / 2);
    same = 1;
    for (int i = 0; i < n && i < lrs_n_cands(r); i++)
        same &= !memcmp(lrs_cand_at(a, i, NULL), lrs_cand_at(r, i, NULL), sizeof(struct lrs_cand));
    T_CHECK(same);
    int na, nr;
    const struct lrs_iter *ia = lrs_iters(a, &na), *ir = lrs_iters(r, &nr);
    T_CHECK(na == nr && na > 3);
    for (int i = 0; i < na && i < nr; i++) T_CHECK(!memcmp(ia[i].rng, ir[i].rng, sizeof ia[i].rng));
    lrs_free(a);
    lrs_free(b);
    lrs_free(r);
}

/* --budget stops the iterations; the rounds still run. Without rounds the
 * search is the evolutionary one, unchanged. */
static void test_budget_and_off(void)
{
    struct lrs_config g, g0;
    struct quad q = { 0 }, q0 = { 0 };
    setup_big(&g, &q);
    setup_big(&g0, &q0);
    g.max_iter = g0.max_iter = 10;
    g.budget = g0.budget = 10; /* iteration 0 (4), 1 (4), 2 cut to 2 */
    g.refine = 3;
    g0.refine = 0;
    lrs *s, *s0;
    T_CHECK(lrs_create(&g, &s) == 0 && lrs_create(&g0, &s0) == 0);
    T_CHECK(lrs_run(s) == 0 && lrs_run(s0) == 0);
    T_CHECK(lrs_n_cands(s0) == 10);
    int n_it, n0;
    const struct lrs_iter *it = lrs_iters(s, &n_it), *i0 = lrs_iters(s0, &n0);
    T_CHECK(n0 == 3 && n_it == 6);
    T_CHECK(lrs_n_cands(s) > 10 + 2 * 12);
    for (int i = 0; i < n0; i++)
        T_CHECK(it[i].iter == i0[i].iter && it[i].best == i0[i].best && it[i].n_eval == i0[i].n_eval &&
                it[i].best_nll == i0[i].best_nll && it[i].refine == 0 && i0[i].refine == 0 &&
                !memcmp(it[i].rng, i0[i].rng, sizeof it[i].rng));
    T_CHECK(it[3].refine == 1 && it[5].refine == 3 && it[3].iter == 3);
    lrs_free(s);
    lrs_free(s0);
}

int main(void)
{
    T_RUN(test_hand_rounds);
    T_RUN(test_converges_exactly);
    T_RUN(test_workers_and_replay);
    T_RUN(test_budget_and_off);
    return t_done();
}
