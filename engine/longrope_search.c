/* longrope_search.c - the LongRoPE evolutionary search (longrope_search.h).
 * No I/O: candidates are evaluated, journaled and reported through the
 * caller's callbacks. */
#include "longrope_search.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "../base/kvt.h"

#define LRS_MUT_PROB 0.3
#define LRS_MAX_TRIES 2000

/* ---- PRNG: xoshiro256**, seeded by splitmix64 ---------------------------- */

struct rng { uint64_t s[4]; };

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(struct rng *r)
{
    uint64_t *s = r->s, res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t; s[3] = rotl(s[3], 45);
    return res;
}

static void rng_seed(struct rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) {
        uint64_t z = (seed += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        r->s[i] = z ^ (z >> 31);
    }
}

static double rng_unif(struct rng *r) { return (double)(rng_next(r) >> 11) / 9007199254740992.0; }
/* Uniform integer in [lo, hi]. */
static int rng_int(struct rng *r, int lo, int hi)
{
    return lo + (int)(rng_next(r) % (uint64_t)(hi - lo + 1));
}

/* ---- a set of 64-bit hashes (0 = empty) with values ------------------------ */

struct hset {
    uint64_t *k;
    double *v;
    size_t cap, n;
};

static double *hset_find(const struct hset *h, uint64_t key)
{
    if (!h->cap) return NULL;
    for (size_t i = key & (h->cap - 1);; i = (i + 1) & (h->cap - 1)) {
        if (h->k[i] == key) return &h->v[i];
        if (h->k[i] == 0) return NULL;
    }
}

static int hset_put(struct hset *h, uint64_t key, double v)
{
    if ((h->n + 1) * 2 > h->cap) {
        struct hset g = { NULL, NULL, h->cap ? 2 * h->cap : 1024, 0 };
        g.k = calloc(g.cap, sizeof *g.k);
        g.v = calloc(g.cap, sizeof *g.v);
        if (!g.k || !g.v) { free(g.k); free(g.v); return -ENOMEM; }
        for (size_t i = 0; i < h->cap; i++)
            if (h->k[i]) (void)hset_put(&g, h->k[i], h->v[i]); /* fits: no growth */
        free(h->k);
        free(h->v);
        *h = g;
    }
    size_t i = key & (h->cap - 1);
    while (h->k[i] && h->k[i] != key) i = (i + 1) & (h->cap - 1);
    if (!h->k[i]) h->n++;
    h->k[i] = key;
    h->v[i] = v;
    return 0;
}

static void hset_free(struct hset *h) { free(h->k); free(h->v); memset(h, 0, sizeof *h); }

/* ---- the search state ------------------------------------------------------- */

/* One refinement move: pair idx to val, n_hat to val, mscale to val, or a
 * combination of moves. */
enum { MV_PAIR, MV_NHAT, MV_MSCALE, MV_COMBO };
struct lrs_move { int kind, idx, val; };

struct lrs {
    struct lrs_config cfg;
    struct rng rng;
    struct lrs_cand *c;    /* every candidate evaluated, in order */
    double *nll;
    int n_c, cap_c;
    struct hset seen;      /* hashes of c[] and of this generation */
    struct hset known;     /* preloaded: hash -> NLL */
    struct lrs_iter *it;
    int n_it, cap_it;
    int64_t n_computed;
    int refine_converged;
    /* one generation (cap_gen: population, or a refinement round) */
    int cap_gen;
    struct lrs_cand *gen;
    double *gen_nll;
    int *gen_todo;         /* 1: to evaluate */
    int *par;
    struct lrs_move *mv;   /* a refinement round: the move of each gen[] */
};

static uint64_t cand_hash(const struct lrs *s, const struct lrs_cand *c)
{
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)s->cfg.domain;
    for (int i = 0; i < s->cfg.n_pairs; i++) {
        h ^= (uint16_t)c->q[i];
        h *= 1099511628211ULL;
        h ^= h >> 29;
    }
    if (s->cfg.n_nhat > 1 || c->n_hat != 0) { /* fixed n_hat 0: the old hashes */
        h ^= (uint64_t)(uint32_t)c->n_hat + 0x9e37ULL;
        h *= 1099511628211ULL;
        h ^= h >> 29;
    }
    if (c->mscale != 0) { /* no magnitude gene: the old hashes */
        h ^= (uint64_t)(uint16_t)c->mscale + 0x7f4a0000ULL;
        h *= 1099511628211ULL;
        h ^= h >> 29;
    }
    return h ? h : 1;
}

int lrs_nhat_paper_set(int64_t orig_ctx, int32_t *out)
{
    static const int32_t paper[] = { 0, 1, 2, 4, 8, 12, 16, 20, 24, 28, 32, 64, 128, 256 };
    int n = 0;
    for (size_t i = 0; i < sizeof paper / sizeof paper[0]; i++)
        if (paper[i] <= orig_ctx) out[n++] = paper[i];
    return n;
}

void lrs_q_from_lambda(const double *lam, int n_pairs, int qmin, int qmax, int16_t *q)
{
    for (int i = 0; i < n_pairs; i++) {
        long v = lround(lam[i] * 100.0);
        v = v < qmin ? qmin : v > qmax ? qmax : v;
        if (i && v < q[i - 1]) v = q[i - 1];
        q[i] = (int16_t)v;
    }
}

void lrs_seeds_standard(const struct rope_params *rp, double s, int qmin, int qmax,
                        int32_t n_hat, struct lrs_cand out[3])
{
    double lam[ROPE_MAX_PAIRS] = { 0 };
    const int np = rp->n_rot / 2;
    const double d = (double)rp->n_rot;
    memset(out, 0, 3 * sizeof *out);
    for (int i = 0; i < np; i++) lam[i] = s; /* PI */
    lrs_q_from_lambda(lam, np, qmin, qmax, out[0].q);
    for (int i = 0; i < np; i++) lam[i] = pow(pow(s, d / (d - 2.0)), 2.0 * i / d); /* NTK */
    lrs_q_from_lambda(lam, np, qmin, qmax, out[1].q);
    double corr[2];
    rope_yarn_corr_dims(rp->n_rot, rp->orig_ctx, rp->freq_base, 32.0, 1.0, corr);
    for (int i = 0; i < np; i++) { /* YaRN: the ramp r = 1 extrapolates */
        double y = ((double)i - corr[0]) / KVT_MAX(0.001, corr[1] - corr[0]);
        double r = 1.0 - KVT_MIN(1.0, KVT_MAX(0.0, y));
        lam[i] = 1.0 / ((1.0 - r) / s + r);
    }
    lrs_q_from_lambda(lam, np, qmin, qmax, out[2].q);
    for (int k = 0; k < 3; k++) out[k].n_hat = n_hat;
}

void lrs_seeds_from(const float *lam, int n_pairs, double s_from, double s, int qmin, int qmax,
                    int32_t n_hat, struct lrs_cand out[2])
{
    KVT_ASSERT(s_from > 1.0);
    double l1[ROPE_MAX_PAIRS], l2[ROPE_MAX_PAIRS];
    const double ex = log(s) / log(s_from);
    for (int i = 0; i < n_pairs; i++) {
        l1[i] = (double)lam[i] * s / s_from;
        l2[i] = pow((double)lam[i], ex);
    }
    memset(out, 0, 2 * sizeof *out);
    lrs_q_from_lambda(l1, n_pairs, qmin, qmax, out[0].q);
    lrs_q_from_lambda(l2, n_pairs, qmin, qmax, out[1].q);
    out[0].n_hat = out[1].n_hat = n_hat;
}

int lrs_cand_valid(const struct lrs_config *cfg, const struct lrs_cand *c)
{
    for (int i = 0; i < cfg->n_pairs; i++) {
        if (c->q[i] < cfg->qmin || c->q[i] > cfg->qmax) return 0;
        if (i && c->q[i] < c->q[i - 1]) return 0;
    }
    if (c->mscale < cfg->mscale_min || c->mscale > cfg->mscale_max) return 0;
    for (int k = 0; k < cfg->n_nhat; k++)
        if (cfg->nhat[k] == c->n_hat) return 1;
    return 0;
}

void lrs_free(lrs *s)
{
    if (!s) return;
    free(s->c); free(s->nll); free(s->it);
    free(s->gen); free(s->gen_nll); free(s->gen_todo); free(s->par); free(s->mv);
    hset_free(&s->seen);
    hset_free(&s->known);
    free(s);
}

int lrs_create(const struct lrs_config *cfg, lrs **out)
{
    *out = NULL;
    if (cfg->n_pairs < 1 || cfg->n_pairs > ROPE_MAX_PAIRS || cfg->qmin < 1 ||
        cfg->qmax < cfg->qmin || cfg->qmax > 32767 || cfg->population < 2 || cfg->max_iter < 0 ||
        cfg->patience < 0 || cfg->refine < 0 || cfg->budget < 0 || cfg->n_nhat < 1 || cfg->n_nhat > LRS_MAX_NHAT ||
        cfg->n_seeds < 1 || cfg->n_seeds > 8 || cfg->n_workers < 1 || !cfg->eval ||
        cfg->mscale_min < 0 || cfg->mscale_max < cfg->mscale_min || cfg->mscale_max > 1000)
        return -EINVAL;
    for (int i = 0; i < cfg->n_seeds; i++)
        if (!lrs_cand_valid(cfg, &cfg->seeds[i])) return -EINVAL;
    lrs *s = calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    s->cfg = *cfg;
    const size_t P = (size_t)cfg->population;
    /* a refinement round: a combination, 2 moves per pair, n_hat and mscale */
    const size_t G = KVT_MAX(P, (size_t)(2 * cfg->n_pairs + 5));
    s->cap_gen = (int)G;
    s->gen = malloc(G * sizeof *s->gen);
    s->gen_nll = malloc(G * sizeof *s->gen_nll);
    s->gen_todo = malloc(G * sizeof *s->gen_todo);
    s->par = malloc(P * sizeof *s->par);
    s->mv = malloc(G * sizeof *s->mv);
    if (!s->gen || !s->gen_nll || !s->gen_todo || !s->par || !s->mv) { lrs_free(s); return -ENOMEM; }
    rng_seed(&s->rng, cfg->seed);
    *out = s;
    return 0;
}

int lrs_known(lrs *s, const struct lrs_cand *c, double nll)
{
    return hset_put(&s->known, cand_hash(s, c), nll);
}

int lrs_n_cands(const lrs *s) { return s->n_c; }

const struct lrs_cand *lrs_cand_at(const lrs *s, int i, double *nll)
{
    KVT_ASSERT(i >= 0 && i < s->n_c);
    if (nll) *nll = s->nll[i];
    return &s->c[i];
}

const struct lrs_iter *lrs_iters(const lrs *s, int *n)
{
    *n = s->n_it;
    return s->it;
}

int lrs_refine_converged(const lrs *s) { return s->refine_converged; }

/* ---- operators ----------------------------------------------------------------- */

static void mutate(lrs *s, const struct lrs_cand *parent, struct lrs_cand *c)
{
    const struct lrs_config *g = &s->cfg;
    *c = *parent;
    for (int i = 0; i < g->n_pairs; i++) {
        if (rng_unif(&s->rng) >= LRS_MUT_PROB) continue;
        int lo = i ? c->q[i - 1] : g->qmin;
        int hi = i + 1 < g->n_pairs ? c->q[i + 1] : g->qmax;
        c->q[i] = (int16_t)rng_int(&s->rng, lo, hi);
    }
    if (g->n_nhat > 1 && rng_unif(&s->rng) < LRS_MUT_PROB)
        c->n_hat = g->nhat[rng_int(&s->rng, 0, g->n_nhat - 1)];
    if (g->mscale_min < g->mscale_max && rng_unif(&s->rng) < LRS_MUT_PROB) {
        int m;
        if (rng_unif(&s->rng) < 0.5) {
            m = rng_int(&s->rng, g->mscale_min, g->mscale_max);
        } else { /* a local step of 1..5 either way */
            int step = rng_int(&s->rng, 1, 5);
            m = c->mscale + (rng_unif(&s->rng) < 0.5 ? -step : step);
            m = KVT_MAX(g->mscale_min, KVT_MIN(g->mscale_max, m));
        }
        c->mscale = (int16_t)m;
    }
}

static void crossover(lrs *s, const struct lrs_cand *a, const struct lrs_cand *b, struct lrs_cand *c)
{
    memset(c, 0, sizeof *c);
    for (int i = 0; i < s->cfg.n_pairs; i++) c->q[i] = rng_unif(&s->rng) < 0.5 ? a->q[i] : b->q[i];
    c->n_hat = a->n_hat;
    if (s->cfg.n_nhat > 1 && rng_unif(&s->rng) < 0.5) c->n_hat = b->n_hat;
    c->mscale = a->mscale;
    if (s->cfg.mscale_min < s->cfg.mscale_max && rng_unif(&s->rng) < 0.5) c->mscale = b->mscale;
}

/* Accept c into the generation if it is valid and unseen. @return 1, 0, or -ENOMEM. */
static int accept(lrs *s, const struct lrs_cand *c, int *n_gen)
{
    if (!lrs_cand_valid(&s->cfg, c)) return 0;
    uint64_t h = cand_hash(s, c);
    if (hset_find(&s->seen, h)) return 0;
    if (hset_put(&s->seen, h, 0.0) < 0) return -ENOMEM;
    s->gen[(*n_gen)++] = *c;
    return 1;
}

/* Order of c[]: by NLL, ties by order of evaluation. */
static int cmp_idx(const lrs *s, int a, int b)
{
    if (s->nll[a] != s->nll[b]) return s->nll[a] < s->nll[b] ? -1 : 1;
    return a < b ? -1 : a > b;
}

/* The k best indices of c[], sorted. */
static void top_k(const lrs *s, int *idx, int k)
{
    int n = 0;
    for (int i = 0; i < s->n_c; i++) {
        int j = n < k ? n++ : k;
        if (j == k && cmp_idx(s, i, idx[k - 1]) >= 0) continue;
        if (j == k) j = k - 1;
        while (j > 0 && cmp_idx(s, i, idx[j - 1]) < 0) { idx[j] = idx[j - 1]; j--; }
        idx[j] = i;
    }
}

int lrs_best(const lrs *s)
{
    if (s->n_c == 0) return -1;
    int b;
    top_k(s, &b, 1);
    return b;
}

static int cmp_dbl(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

/* ---- evaluation of one generation -------------------------------------------------- */

struct gen_job {
    lrs *s;
    int n;
    atomic_int next;
    atomic_int err;
};

struct worker_arg { struct gen_job *j; int worker; };

static void *gen_worker(void *p)
{
    struct worker_arg *w = p;
    struct gen_job *j = w->j;
    for (;;) {
        int i = atomic_fetch_add(&j->next, 1);
        if (i >= j->n || atomic_load(&j->err)) break;
        if (!j->s->gen_todo[i]) continue;
        int rc = j->s->cfg.eval(j->s->cfg.user, w->worker, &j->s->gen[i], &j->s->gen_nll[i]);
        if (rc < 0) {
            int z = 0;
            atomic_compare_exchange_strong(&j->err, &z, rc);
        }
    }
    return NULL;
}

static int grow(lrs *s)
{
    if (s->n_c < s->cap_c) return 0;
    int cap = s->cap_c ? 2 * s->cap_c : 64;
    struct lrs_cand *c = realloc(s->c, (size_t)cap * sizeof *c);
    if (!c) return -ENOMEM;
    s->c = c;
    double *v = realloc(s->nll, (size_t)cap * sizeof *v);
    if (!v) return -ENOMEM;
    s->nll = v;
    s->cap_c = cap;
    return 0;
}

/* Evaluate gen[0..n) (known ones from the table), append them to c[] in
 * order and report the computed ones. */
static int eval_gen(lrs *s, int n, int iter)
{
    int todo = 0;
    for (int i = 0; i < n; i++) {
        const double *kn = hset_find(&s->known, cand_hash(s, &s->gen[i]));
        s->gen_todo[i] = !kn;
        s->gen_nll[i] = kn ? *kn : NAN;
        todo += !kn;
    }
    struct gen_job j = { .s = s, .n = n };
    atomic_init(&j.next, 0);
    atomic_init(&j.err, 0);
    int nw = KVT_MIN(s->cfg.n_workers, todo);
    if (nw <= 1) {
        struct worker_arg w = { &j, 0 };
        gen_worker(&w);
    } else {
        pthread_t th[16];
        struct worker_arg wa[16];
        nw = KVT_MIN(nw, 16);
        int started = 0;
        for (int w = 1; w < nw; w++) {
            wa[w] = (struct worker_arg){ &j, w };
            if (pthread_create(&th[w], NULL, gen_worker, &wa[w]) != 0) break;
            started = w;
        }
        wa[0] = (struct worker_arg){ &j, 0 };
        gen_worker(&wa[0]);
        for (int w = 1; w <= started; w++) pthread_join(th[w], NULL);
    }
    int rc = atomic_load(&j.err);
    if (rc < 0) return rc;
    for (int i = 0; i < n; i++) {
        if ((rc = grow(s)) < 0) return rc;
        s->c[s->n_c] = s->gen[i];
        s->nll[s->n_c++] = s->gen_nll[i];
        if (!s->gen_todo[i]) continue;
        s->n_computed++;
        if (s->cfg.on_eval && (rc = s->cfg.on_eval(s->cfg.user, &s->gen[i], s->gen_nll[i], iter)) < 0)
            return rc;
    }
    return 0;
}

/* Bookkeeping after iteration IT whose candidates are c[first..n_c)
 * (refinement round REFINE with step REL, or 0). */
static int end_iter(lrs *s, int iter, int first, int refine, double rel)
{
    if (s->n_it == s->cap_it) {
        int cap = s->cap_it ? 2 * s->cap_it : 32;
        struct lrs_iter *p = realloc(s->it, (size_t)cap * sizeof *p);
        if (!p) return -ENOMEM;
        s->it = p;
        s->cap_it = cap;
    }
    int n = s->n_c - first;
    double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    if (!v) return -ENOMEM;
    memcpy(v, s->nll + first, (size_t)n * sizeof *v);
    qsort(v, (size_t)n, sizeof *v, cmp_dbl);
    struct lrs_iter *it = &s->it[s->n_it++];
    it->iter = iter;
    it->best = lrs_best(s);
    it->best_nll = s->nll[it->best];
    it->median_nll = n == 0 ? NAN : n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    free(v);
    it->n_new = n;
    it->n_eval = s->n_c;
    it->n_computed = s->n_computed;
    it->refine = refine;
    it->refine_rel = rel;
    memcpy(it->rng, s->rng.s, sizeof it->rng);
    return s->cfg.on_iter ? s->cfg.on_iter(s->cfg.user, it) : 0;
}

/* Room left in the budget for a generation of P. */
static int gen_size(const lrs *s)
{
    int64_t P = s->cfg.population;
    if (s->cfg.budget > 0) P = KVT_MIN(P, s->cfg.budget - s->n_c);
    return (int)KVT_MAX((int64_t)0, P);
}

/* ---- local refinement ---------------------------------------------------------------- */

/* Accept c with its move while the round has room. @return as accept(). */
static int accept_move(lrs *s, const struct lrs_cand *c, struct lrs_move m, int *n_gen, int want)
{
    if (*n_gen >= want) return 0;
    int rc = accept(s, c, n_gen);
    if (rc == 1) s->mv[*n_gen - 1] = m;
    return rc;
}

/* The n_hat values of the set next below and above v (v when none). */
static void nhat_neighbours(const struct lrs_config *g, int32_t v, int32_t nb[2])
{
    nb[0] = nb[1] = v;
    for (int k = 0; k < g->n_nhat; k++) {
        int32_t x = g->nhat[k];
        if (x < v && (nb[0] == v || x > nb[0])) nb[0] = x;
        if (x > v && (nb[1] == v || x < nb[1])) nb[1] = x;
    }
}

/* One round's single moves of base at relative step rel into gen[]. *unit:
 * 1 if every step was 1 (the finest level). @return 0 or -ENOMEM. */
static int refine_moves(lrs *s, const struct lrs_cand *base, double rel, int *n_gen, int want, int *unit)
{
    const struct lrs_config *g = &s->cfg;
    struct lrs_cand c;
    int rc;
    *unit = 1;
    for (int i = 0; i < g->n_pairs; i++) {
        int d = (int)KVT_MAX(1L, lround(base->q[i] * rel));
        if (d > 1) *unit = 0;
        for (int dir = 1; dir >= -1; dir -= 2) {
            int v = KVT_MAX(g->qmin, KVT_MIN(g->qmax, base->q[i] + dir * d));
            if (v == base->q[i]) continue;
            c = *base;
            c.q[i] = (int16_t)v;
            for (int j = i + 1; dir > 0 && j < g->n_pairs && c.q[j] < v; j++) c.q[j] = (int16_t)v;
            for (int j = i - 1; dir < 0 && j >= 0 && c.q[j] > v; j--) c.q[j] = (int16_t)v;
            if ((rc = accept_move(s, &c, (struct lrs_move){ MV_PAIR, i, v }, n_gen, want)) < 0) return rc;
        }
    }
    if (g->n_nhat > 1) {
        int32_t nb[2];
        nhat_neighbours(g, base->n_hat, nb);
        for (int k = 0; k < 2; k++) {
            if (nb[k] == base->n_hat) continue;
            c = *base;
            c.n_hat = nb[k];
            if ((rc = accept_move(s, &c, (struct lrs_move){ MV_NHAT, 0, nb[k] }, n_gen, want)) < 0) return rc;
        }
    }
    if (g->mscale_min < g->mscale_max) {
        int d = (int)KVT_MAX(1L, lround(base->mscale * rel));
        if (d > 1) *unit = 0;
        for (int dir = -1; dir <= 1; dir += 2) {
            int v = KVT_MAX(g->mscale_min, KVT_MIN(g->mscale_max, base->mscale + dir * d));
            if (v == base->mscale) continue;
            c = *base;
            c.mscale = (int16_t)v;
            if ((rc = accept_move(s, &c, (struct lrs_move){ MV_MSCALE, 0, v }, n_gen, want)) < 0) return rc;
        }
    }
    return 0;
}

/* The combination of the single moves of the round c[first..first+n) that
 * beat base_nll (per pair, n_hat and mscale the better of its two moves),
 * applied to base; the order is restored by raising. @return how many moves
 * it combines. */
static int refine_combo(const lrs *s, const struct lrs_cand *base, double base_nll, int first, int n,
                        struct lrs_cand *out)
{
    const struct lrs_config *g = &s->cfg;
    double bq[ROPE_MAX_PAIRS + 2];
    int vq[ROPE_MAX_PAIRS + 2], slot, count = 0;
    for (int k = 0; k < g->n_pairs + 2; k++) bq[k] = base_nll;
    for (int k = 0; k < n; k++) {
        const struct lrs_move *m = &s->mv[k];
        double v = s->nll[first + k];
        if (m->kind == MV_COMBO) continue;
        slot = m->kind == MV_PAIR ? m->idx : m->kind == MV_NHAT ? g->n_pairs : g->n_pairs + 1;
        if (v < bq[slot]) {
            count += bq[slot] == base_nll;
            bq[slot] = v;
            vq[slot] = m->val;
        }
    }
    *out = *base;
    for (int i = 0; i < g->n_pairs; i++) {
        if (bq[i] < base_nll) out->q[i] = (int16_t)vq[i];
        if (i && out->q[i] < out->q[i - 1]) out->q[i] = out->q[i - 1];
    }
    if (bq[g->n_pairs] < base_nll) out->n_hat = vq[g->n_pairs];
    if (bq[g->n_pairs + 1] < base_nll) out->mscale = (int16_t)vq[g->n_pairs + 1];
    return count;
}

/* cfg.refine rounds of coordinate moves on the best (longrope_search.h). */
static int refine(lrs *s)
{
    const struct lrs_config *g = &s->cfg;
    double rel = LRS_REFINE_REL0, prev_nll = 0.0;
    struct lrs_cand prev_base, q;
    int rc, prev_first = -1, prev_n = 0, it = s->it[s->n_it - 1].iter + 1;
    for (int round = 1; round <= g->refine;) {
        int want = s->cap_gen, n_gen = 0, unit; /* the budget is the iterations' */
        int bi = lrs_best(s);
        const struct lrs_cand base = s->c[bi];
        const double base_nll = s->nll[bi];
        /* the combination of the last round's gains (its moves are still in mv[]) */
        if (prev_first >= 0 && refine_combo(s, &prev_base, prev_nll, prev_first, prev_n, &q) >= 2) {
            struct lrs_move m = { MV_COMBO, 0, 0 };
            if ((rc = accept(s, &q, &n_gen)) < 0) return rc;
            if (rc == 1) s->mv[0] = m;
        }
        if ((rc = refine_moves(s, &base, rel, &n_gen, want, &unit)) < 0) return rc;
        prev_first = -1;
        if (n_gen == 0) { /* every move seen: a finer step, or done */
            if (unit) { s->refine_converged = 1; break; }
            rel *= 0.5;
            continue;
        }
        int first = s->n_c;
        if ((rc = eval_gen(s, n_gen, it)) < 0) return rc;
        if ((rc = end_iter(s, it, first, round, rel)) < 0) return rc;
        prev_first = first;
        prev_n = n_gen;
        prev_base = base;
        prev_nll = base_nll;
        if (!(s->nll[lrs_best(s)] < base_nll)) {
            if (unit) { s->refine_converged = 1; break; }
            rel *= 0.5;
        }
        round++;
        it++;
    }
    return 0;
}

int lrs_run(lrs *s)
{
    const struct lrs_config *g = &s->cfg;
    struct lrs_cand q;
    int rc, n_gen = 0, want = gen_size(s);
    for (int i = 0; i < g->n_seeds && n_gen < want; i++)
        if ((rc = accept(s, &g->seeds[i], &n_gen)) < 0) return rc;
    for (int tries = 0; n_gen < want && tries < LRS_MAX_TRIES; tries++) {
        mutate(s, &g->seeds[tries % g->n_seeds], &q);
        if ((rc = accept(s, &q, &n_gen)) < 0) return rc;
    }
    if ((rc = eval_gen(s, n_gen, 0)) < 0) return rc;
    if ((rc = end_iter(s, 0, 0, 0, 0.0)) < 0) return rc;
    int last_better = 0;
    double best = s->it[0].best_nll;
    for (int it = 1; it <= g->max_iter; it++) {
        if (g->patience > 0 && it - 1 - last_better >= g->patience) break;
        if ((want = gen_size(s)) == 0) break;
        int k = KVT_MIN((g->population + 1) / 2, s->n_c);
        top_k(s, s->par, k);
        n_gen = 0;
        int n_mut = KVT_MIN(want, g->population / 2 + g->population % 2);
        for (int tries = 0; n_gen < n_mut && tries < LRS_MAX_TRIES; tries++) {
            mutate(s, &s->c[s->par[rng_int(&s->rng, 0, k - 1)]], &q);
            if ((rc = accept(s, &q, &n_gen)) < 0) return rc;
        }
        for (int tries = 0; n_gen < want && tries < LRS_MAX_TRIES && k >= 2; tries++) {
            int a = rng_int(&s->rng, 0, k - 1), b = rng_int(&s->rng, 0, k - 2);
            if (b >= a) b++;
            crossover(s, &s->c[s->par[a]], &s->c[s->par[b]], &q);
            if ((rc = accept(s, &q, &n_gen)) < 0) return rc;
        }
        int first = s->n_c;
        if ((rc = eval_gen(s, n_gen, it)) < 0) return rc;
        if ((rc = end_iter(s, it, first, 0, 0.0)) < 0) return rc;
        if (s->it[s->n_it - 1].best_nll < best) {
            best = s->it[s->n_it - 1].best_nll;
            last_better = it;
        }
    }
    return g->refine > 0 ? refine(s) : 0;
}
