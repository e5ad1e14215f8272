/* cmd_longrope.c - `kvtile longrope-search`: the LongRoPE paper's
 * evolutionary search for per-pair RoPE rescale factors, on the CPU.
 *
 * Candidates: lambda_i for each of the n_rot/2 pairs, on a 0.01 grid in
 * [1, 1.25 s] (s = L / original context), non-decreasing in i. Kept as
 * integers q_i = 100 lambda_i so that equality, hashing and the journal are
 * exact. The angle of pair i becomes theta_i / lambda_i (ROPE_LONGROPE,
 * rope.h), with its magnitude (the file's attn_factor, else
 * sqrt(1 + ln s / ln L_orig)); positions < n_hat stay unscaled.
 *
 * Fitness: mean NLL over K windows of L tokens of TEXT, evaluated exactly as
 * `kvtile ppl MODEL -c L --longrope-factors F --rope-scaling longrope`
 * evaluates a chunk (first token replaced by BOS, empty RAM KV store,
 * positions prepared for length L), scoring the llama-perplexity second
 * half (positions L/2 .. L-2) by default or every token after the first
 * with --score all. Windows are spread evenly over the selected token
 * range (--skip, --text-range, --text-before) and do not overlap when the
 * range holds K windows.
 *
 * Search (per iteration, P = population): iteration 0 evaluates PI (all
 * s), NTK-equivalent (lambda_i = (s^(d/(d-2)))^(2i/d)), YaRN-equivalent
 * (1/lambda_i = (1-r_i)/s + r_i, r_i the YaRN ramp with beta_fast 32,
 * beta_slow 1) and mutations of them up to P. Each later iteration takes
 * the best ceil(P/2) candidates evaluated so far as parents and makes P
 * children: half by mutation (each pair, with probability 0.3, resampled
 * uniformly on the grid between its neighbours' values, which keeps the
 * order), half by crossover (each pair from one of two parents; children
 * that break the order are rejected). Children seen before (a set of
 * 64-bit hashes of every candidate) are rejected too.
 *
 * Determinism and resume: one xoshiro256** stream seeded by --seed drives
 * everything. The journal (append-only text) gets a header with the
 * search's configuration, one "eval" line per evaluated candidate (its
 * exact NLL in %.17g) and one "iter" line per finished iteration with the
 * RNG state. --resume replays the search from the start, taking the NLL of
 * every candidate found in the journal instead of evaluating it and
 * checking each recorded RNG state: the replay makes the same decisions,
 * so an interrupted search ends exactly as an uninterrupted one (more
 * --iterations than before simply continue it).
 *
 * Output: OUT.factors.txt (one factor per line), OUT.log.json (every
 * iteration's best and median perplexity and best factors), OUT.gguf:
 *   llama (and qwen2) files: rope_freqs.weight (F32, n_rot/2) = the factors,
 *     {arch}.context_length = L, {arch}.rope.scaling.original_context_length
 *     = the original context, {arch}.rope.scaling.attn_factor = the
 *     magnitude used in the search, {arch}.rope.scaling.type/.factor
 *     removed. llama.cpp (and engine/model.c) divide theta by rope_freqs at
 *     EVERY length: the file is meant for contexts near L. Not carried by
 *     this form: n_hat (no such key) and short factors.
 *   phi3 files: rope_factors_long.weight (and rope_factors_short.weight:
 *     the searched set with --short, else the file's or ones),
 *     phi3.rope.scaling.original_context_length, .attn_factor, context L.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "kvstore/journal.h"
#include "engine/gguf_write.h"
#include "base/kvt.h"

#define LR_MUT_PROB 0.3
#define LR_MAX_TRIES 2000

/* ---- PRNG: xoshiro256**, seeded by splitmix64 --------------------------- */

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

/* ---- candidates ----------------------------------------------------------- */

typedef int16_t qvec[ROPE_MAX_PAIRS]; /* 100 * lambda_i */

struct cand {
    qvec q;
    double nll;
    int iter;
};

static uint64_t q_hash(const int16_t *q, int np, int set)
{
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)set;
    for (int i = 0; i < np; i++) {
        h ^= (uint16_t)q[i];
        h *= 1099511628211ULL;
        h ^= h >> 29;
    }
    return h ? h : 1;
}

/* Fingerprint of an RNG state at the end of iteration IT of SET. */
static uint64_t rng_mark(const uint64_t st[4], int set, int it)
{
    uint64_t h = 0x243f6a8885a308d3ULL ^ ((uint64_t)set << 32) ^ (uint64_t)it;
    for (int i = 0; i < 4; i++) {
        h ^= st[i];
        h *= 1099511628211ULL;
        h ^= h >> 31;
    }
    return h;
}

/* A set of 64-bit hashes (0 = empty slot) with values (NLL). */
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

static void hset_put(struct hset *h, uint64_t key, double v)
{
    if ((h->n + 1) * 2 > h->cap) {
        struct hset g = { NULL, NULL, h->cap ? 2 * h->cap : 1024, 0 };
        g.k = calloc(g.cap, sizeof *g.k);
        g.v = calloc(g.cap, sizeof *g.v);
        if (!g.k || !g.v) cli_die("out of memory");
        for (size_t i = 0; i < h->cap; i++)
            if (h->k[i]) hset_put(&g, h->k[i], h->v[i]);
        free(h->k);
        free(h->v);
        *h = g;
    }
    size_t i = key & (h->cap - 1);
    while (h->k[i] && h->k[i] != key) i = (i + 1) & (h->cap - 1);
    if (!h->k[i]) h->n++;
    h->k[i] = key;
    h->v[i] = v;
}

/* ---- the search ------------------------------------------------------------ */

struct iter_log {
    double best_nll, median_nll;
    int best, n_new, n_eval;
};

struct search {
    /* problem */
    const char *model_path;
    model_ctx *mc;
    kvs *kv;
    struct rope_params rp; /* LONGROPE, factors set per candidate */
    int set;               /* 0 = long factors, 1 = short factors */
    int np, qmin, qmax;
    int64_t len;           /* evaluation length */
    int n_win;
    const int32_t *const *win;
    int32_t *chunk;
    float *logits;
    int n_batch, n_vocab, bos, score_all;
    /* search */
    int P, T;
    struct rng rng;
    struct cand *c;        /* every candidate evaluated, in order */
    int n_c, cap_c;
    struct hset seen;      /* hashes of c[] and of this generation */
    struct hset known;     /* journal: hash -> NLL (resume) */
    struct iter_log *log;  /* T + 1 */
    jnl_file *journal;
    const char *journal_path;
    const struct hset *rng_marks; /* journal: iteration -> rng hash */
    int quiet;
    double t0;
    int64_t n_computed;
};


/* Mean NLL of the windows with factors q. */
static double evaluate(struct search *S, const int16_t *q)
{
    struct rope_params rp = S->rp;
    float *f = S->set ? rp.factors_short : rp.factors_long;
    for (int i = 0; i < S->np; i++) f[i] = (float)q[i] / 100.0f;
    int rc = model_ctx_set_rope(S->mc, &rp, S->len);
    if (rc < 0) cli_die("%s: positions: %s", S->model_path, kvt_strerror(rc));
    int64_t L = S->len, first = S->score_all ? 0 : L / 2, n = 0;
    double sum = 0.0;
    for (int w = 0; w < S->n_win; w++) {
        memcpy(S->chunk, S->win[w], (size_t)L * sizeof *S->chunk);
        if (S->bos >= 0) S->chunk[0] = S->bos;
        if ((rc = kvs_truncate(S->kv, 0)) < 0) cli_die("KV store: %s", kvt_strerror(rc));
        for (int64_t p0 = 0; p0 < L; p0 += S->n_batch) {
            int nb = (int)KVT_MIN((int64_t)S->n_batch, L - p0);
            int from = (int)KVT_MIN((int64_t)nb, KVT_MAX((int64_t)0, first - p0));
            rc = model_eval_rows(S->mc, S->kv, S->chunk + p0, nb, p0,
                                 from < nb ? S->logits : NULL, from);
            if (rc < 0) cli_die("KV store: %s", kvt_strerror(rc));
            for (int t = from; t < nb; t++) {
                int64_t pos = p0 + t;
                if (pos > L - 2) continue;
                sum += cli_nll(S->logits + (size_t)(t - from) * S->n_vocab, S->n_vocab,
                               S->chunk[pos + 1]);
                n++;
            }
        }
    }
    return sum / (double)n;
}

/* One record (LINE without its '\n'), durable on return. */
static void journal_line(struct search *S, const char *line)
{
    if (!S->journal) return;
    size_t len = strlen(line);
    if (len && line[len - 1] == '\n') len--;
    int rc = jnl_append(S->journal, line, len);
    if (rc < 0) cli_die("%s: %s", S->journal_path, kvt_strerror(rc));
}

static int q_format(const int16_t *q, int np, char *out, size_t cap)
{
    size_t p = 0;
    for (int i = 0; i < np && p < cap; i++)
        p += (size_t)snprintf(out + p, cap - p, "%s%d", i ? "," : "", q[i]);
    return p < cap ? 0 : -1;
}

/* Fitness of q (from the journal if known), recorded in c[]. */
static void eval_cand(struct search *S, const int16_t *q, int iter)
{
    uint64_t h = q_hash(q, S->np, S->set);
    const double *kn = hset_find(&S->known, h);
    double nll = kn ? *kn : evaluate(S, q);
    if (!kn) {
        S->n_computed++;
        char line[ROPE_MAX_PAIRS * 7 + 96];
        int off = snprintf(line, sizeof line, "eval %d %d %.17g ", S->set, iter, nll);
        if (q_format(q, S->np, line + off, sizeof line - (size_t)off - 1) < 0) cli_die("journal line too long");
        strcat(line, "\n");
        journal_line(S, line);
    }
    if (S->n_c == S->cap_c) {
        S->cap_c = S->cap_c ? 2 * S->cap_c : 64;
        S->c = realloc(S->c, (size_t)S->cap_c * sizeof *S->c);
        if (!S->c) cli_die("out of memory");
    }
    struct cand *c = &S->c[S->n_c++];
    memset(c, 0, sizeof *c);
    memcpy(c->q, q, (size_t)S->np * sizeof *q);
    c->nll = nll;
    c->iter = iter;
}

static int monotone_in_range(const struct search *S, const int16_t *q)
{
    for (int i = 0; i < S->np; i++) {
        if (q[i] < S->qmin || q[i] > S->qmax) return 0;
        if (i && q[i] < q[i - 1]) return 0;
    }
    return 1;
}

/* Round lambda to the grid, clamp to the range, force the order. */
static void q_from_lambda(const struct search *S, const double *lam, int16_t *q)
{
    for (int i = 0; i < S->np; i++) {
        long v = lround(lam[i] * 100.0);
        v = v < S->qmin ? S->qmin : v > S->qmax ? S->qmax : v;
        if (i && v < q[i - 1]) v = q[i - 1];
        q[i] = (int16_t)v;
    }
}

static void mutate(struct search *S, const int16_t *parent, int16_t *q)
{
    memcpy(q, parent, (size_t)S->np * sizeof *q);
    for (int i = 0; i < S->np; i++) {
        if (rng_unif(&S->rng) >= LR_MUT_PROB) continue;
        int lo = i ? q[i - 1] : S->qmin;
        int hi = i + 1 < S->np ? q[i + 1] : S->qmax;
        q[i] = (int16_t)rng_int(&S->rng, lo, hi);
    }
}

static void crossover(struct search *S, const int16_t *a, const int16_t *b, int16_t *q)
{
    for (int i = 0; i < S->np; i++) q[i] = rng_unif(&S->rng) < 0.5 ? a[i] : b[i];
}

static int cmp_nll(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

/* Accept q as a new child of this generation if it is valid and unseen. */
static int accept(struct search *S, const int16_t *q, int16_t (*gen)[ROPE_MAX_PAIRS], int *n_gen)
{
    if (!monotone_in_range(S, q)) return 0;
    uint64_t h = q_hash(q, S->np, S->set);
    if (hset_find(&S->seen, h)) return 0;
    hset_put(&S->seen, h, 0.0);
    memcpy(gen[*n_gen], q, (size_t)S->np * sizeof *q);
    (*n_gen)++;
    return 1;
}

/* Indices of c[] sorted by NLL (stable: ties by order of evaluation). */
static int cmp_idx_ctx_nll(const struct search *S, int a, int b)
{
    if (S->c[a].nll != S->c[b].nll) return S->c[a].nll < S->c[b].nll ? -1 : 1;
    return a < b ? -1 : a > b;
}

static void top_k(const struct search *S, int *idx, int k)
{
    int n = 0;
    for (int i = 0; i < S->n_c; i++) {
        /* insertion into the sorted prefix idx[0..n) of at most k */
        int j = n < k ? n++ : k;
        if (j == k && cmp_idx_ctx_nll(S, i, idx[k - 1]) >= 0) continue;
        if (j == k) j = k - 1;
        while (j > 0 && cmp_idx_ctx_nll(S, i, idx[j - 1]) < 0) { idx[j] = idx[j - 1]; j--; }
        idx[j] = i;
    }
}

static void initial_seeds(const struct search *S, double s, int16_t (*seed)[ROPE_MAX_PAIRS], int *n_seed)
{
    double lam[ROPE_MAX_PAIRS] = { 0 };
    const int np = S->np;
    const double d = (double)S->rp.n_rot;
    *n_seed = 0;
    if (S->set == 1) { /* short: identity */
        for (int i = 0; i < np; i++) lam[i] = 1.0;
        q_from_lambda(S, lam, seed[(*n_seed)++]);
    }
    for (int i = 0; i < np; i++) lam[i] = s; /* PI */
    q_from_lambda(S, lam, seed[(*n_seed)++]);
    for (int i = 0; i < np; i++) lam[i] = pow(pow(s, d / (d - 2.0)), 2.0 * i / d); /* NTK */
    q_from_lambda(S, lam, seed[(*n_seed)++]);
    double corr[2];
    rope_yarn_corr_dims(S->rp.n_rot, S->rp.orig_ctx, S->rp.freq_base, 32.0, 1.0, corr);
    for (int i = 0; i < np; i++) { /* YaRN: the ramp r = 1 extrapolates */
        double y = ((double)i - corr[0]) / KVT_MAX(0.001, corr[1] - corr[0]);
        double r = 1.0 - KVT_MIN(1.0, KVT_MAX(0.0, y));
        lam[i] = 1.0 / ((1.0 - r) / s + r);
    }
    q_from_lambda(S, lam, seed[(*n_seed)++]);
}

static double median_of(double *v, int n)
{
    if (n == 0) return NAN;
    qsort(v, (size_t)n, sizeof *v, cmp_nll);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void fmt_time(double s, char *out, size_t cap)
{
    if (s < 120) snprintf(out, cap, "%.0fs", s);
    else if (s < 7200) snprintf(out, cap, "%.0fm%02.0fs", floor(s / 60), fmod(s, 60));
    else snprintf(out, cap, "%.0fh%02.0fm", floor(s / 3600), fmod(s / 60, 60));
}

/* One iteration's bookkeeping: log, journal "iter" line, progress. */
static void end_iter(struct search *S, int it, int first_c)
{
    int best;
    top_k(S, &best, 1);
    int n = S->n_c - first_c;
    double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    if (!v) cli_die("out of memory");
    for (int i = 0; i < n; i++) v[i] = S->c[first_c + i].nll;
    struct iter_log *lg = &S->log[it];
    lg->best = best;
    lg->best_nll = S->c[best].nll;
    lg->median_nll = median_of(v, n);
    lg->n_new = n;
    lg->n_eval = S->n_c;
    free(v);
    /* RNG check on replay, then the journal line */
    char line[256];
    snprintf(line, sizeof line, "iter %d %d rng %016llx%016llx%016llx%016llx best %.17g\n", S->set, it,
             (unsigned long long)S->rng.s[0], (unsigned long long)S->rng.s[1],
             (unsigned long long)S->rng.s[2], (unsigned long long)S->rng.s[3], lg->best_nll);
    uint64_t mark = rng_mark(S->rng.s, S->set, it);
    const double *rec = S->rng_marks ? hset_find(S->rng_marks, (uint64_t)(S->set * 100000 + it + 1)) : NULL;
    if (rec) {
        uint64_t got;
        memcpy(&got, rec, 8);
        if (got != mark)
            cli_die("journal: iteration %d does not replay to the recorded state (different model, text, options or build?)", it);
    } else {
        journal_line(S, line);
    }
    if (!S->quiet && isatty(2)) {
        double el = kvt_now_s() - S->t0;
        double rate = el > 0 ? (double)S->n_computed / el : 0.0;
        double eta = rate > 0 ? (double)(S->T - it) * S->P / rate : 0.0;
        char e1[32], e2[32];
        fmt_time(el, e1, sizeof e1);
        fmt_time(eta, e2, sizeof e2);
        fprintf(stderr, "%s iter %d/%d: best ppl %.4f, median %.4f, %d evaluated, %.2f evals/s, %s, ETA %s\n",
                S->set ? "short" : "long", it, S->T, exp(lg->best_nll), exp(lg->median_nll),
                S->n_c, rate, e1, e2);
    }
}

/* Run the whole search (iterations 0..T). @return index of the best. */
static int run_search(struct search *S, double s)
{
    int16_t(*gen)[ROPE_MAX_PAIRS] = malloc((size_t)(S->P + 8) * sizeof *gen);
    int *par = malloc((size_t)S->P * sizeof *par);
    if (!gen || !par) cli_die("out of memory");
    int16_t q[ROPE_MAX_PAIRS];
    /* iteration 0 */
    int n_seed, n_gen = 0;
    int16_t seeds[4][ROPE_MAX_PAIRS];
    initial_seeds(S, s, seeds, &n_seed);
    for (int i = 0; i < n_seed && n_gen < S->P; i++) accept(S, seeds[i], gen, &n_gen);
    for (int tries = 0; n_gen < S->P && tries < LR_MAX_TRIES; tries++) {
        mutate(S, seeds[tries % n_seed], q);
        accept(S, q, gen, &n_gen);
    }
    int first = S->n_c;
    for (int i = 0; i < n_gen; i++) eval_cand(S, gen[i], 0);
    end_iter(S, 0, first);
    for (int it = 1; it <= S->T; it++) {
        int k = (S->P + 1) / 2;
        if (k > S->n_c) k = S->n_c;
        top_k(S, par, k);
        n_gen = 0;
        int n_mut = S->P / 2 + S->P % 2;
        for (int tries = 0; n_gen < n_mut && tries < LR_MAX_TRIES; tries++) {
            mutate(S, S->c[par[rng_int(&S->rng, 0, k - 1)]].q, q);
            accept(S, q, gen, &n_gen);
        }
        for (int tries = 0; n_gen < S->P && tries < LR_MAX_TRIES && k >= 2; tries++) {
            int a = rng_int(&S->rng, 0, k - 1), b = rng_int(&S->rng, 0, k - 2);
            if (b >= a) b++;
            crossover(S, S->c[par[a]].q, S->c[par[b]].q, q);
            accept(S, q, gen, &n_gen);
        }
        first = S->n_c;
        for (int i = 0; i < n_gen; i++) eval_cand(S, gen[i], it);
        end_iter(S, it, first);
    }
    free(gen);
    free(par);
    int best;
    top_k(S, &best, 1);
    return best;
}

/* ---- journal ------------------------------------------------------------------ */

/* Take the records of journal J (at PATH): evals go to KNOWN[set],
 * iteration marks to MARKS. (The journal module has checked the key and
 * cut a torn tail.) */
static void journal_load(jnl_file *j, const char *path, int np, struct hset known[2],
                         struct hset *marks)
{
    for (int64_t r = 0; r < jnl_count(j); r++) {
        const char *p = jnl_record(j, r, NULL);
        int set, it;
        double nll;
        if (sscanf(p, "eval %d %d %lf", &set, &it, &nll) == 3 && (set == 0 || set == 1)) {
            const char *rest = strrchr(p, ' ');
            int16_t q[ROPE_MAX_PAIRS];
            int n = 0;
            for (const char *t = rest + 1; *t && n < ROPE_MAX_PAIRS;) {
                char *e;
                long v = strtol(t, &e, 10);
                if (e == t || v < 0 || v > 32767) break;
                q[n++] = (int16_t)v;
                t = *e == ',' ? e + 1 : e;
                if (*e != ',' && *e) break;
            }
            if (n != np) cli_die("%s: bad eval record %lld", path, (long long)r + 1);
            hset_put(&known[set], q_hash(q, np, set), nll);
        } else if (!strncmp(p, "iter ", 5)) {
            unsigned long long rv[4];
            char hex[65];
            if (sscanf(p, "iter %d %d rng %64s", &set, &it, hex) != 3 || strlen(hex) != 64 ||
                (set != 0 && set != 1) || it < 0 || it >= 100000)
                cli_die("%s: bad iter record %lld", path, (long long)r + 1);
            for (int i = 0; i < 4; i++) {
                char part[17];
                memcpy(part, hex + 16 * i, 16);
                part[16] = '\0';
                rv[i] = strtoull(part, NULL, 16);
            }
            uint64_t s4[4] = { rv[0], rv[1], rv[2], rv[3] };
            uint64_t mark = rng_mark(s4, set, it);
            double v;
            memcpy(&v, &mark, 8);
            hset_put(marks, (uint64_t)(set * 100000 + it + 1), v);
        } else {
            cli_die("%s: unexpected record '%.40s'", path, p);
        }
    }
}

/* ---- text windows ----------------------------------------------------------- */

/* The text before the first line that starts with MARK. */
static size_t cut_before(const char *text, size_t len, const char *mark)
{
    size_t ml = strlen(mark);
    for (size_t i = 0; i + ml <= len; i++)
        if ((i == 0 || text[i - 1] == '\n') && !memcmp(text + i, mark, ml)) return i;
    cli_die("--text-before: no line starts with '%s'", mark);
}

/* ---- output ------------------------------------------------------------------ */

static void write_factors(const char *path, const int16_t *q, int np, const char *what)
{
    struct cli_out out;
    FILE *f = cli_out_open(&out, path);
    fprintf(f, "# %s\n", what);
    for (int i = 0; i < np; i++) fprintf(f, "%.2f\n", (double)q[i] / 100.0);
    cli_out_commit(&out);
}

static void json_factors(FILE *f, const int16_t *q, int np)
{
    fputc('[', f);
    for (int i = 0; i < np; i++) fprintf(f, "%s%.2f", i ? ", " : "", (double)q[i] / 100.0);
    fputc(']', f);
}

static void write_log(const char *path, const struct search *S, const char *model_path,
                      int64_t L, double s, double mscale, double secs, int set)
{
    struct cli_out out;
    FILE *f = cli_out_open(&out, path);
    fprintf(f, "{\"model\": ");
    cli_json_str(f, model_path);
    fprintf(f, ", \"factors\": \"%s\", \"eval_ctx\": %lld, \"target_ctx\": %lld, \"scale\": %.6g, "
               "\"magnitude\": %.9g, \"n_hat\": %lld, \"population\": %d, \"samples\": %d, "
               "\"evaluations\": %d, \"seconds\": %.3f,\n \"iterations\": [\n",
            set ? "short" : "long", (long long)S->len, (long long)L, s, mscale,
            (long long)S->rp.n_hat, S->P, S->n_win, S->n_c, secs);
    for (int it = 0; it <= S->T; it++) {
        const struct iter_log *lg = &S->log[it];
        fprintf(f, "  {\"iter\": %d, \"evaluated\": %d, \"new\": %d, \"best_ppl\": %.6f, \"median_ppl\": %.6f, "
                   "\"best_nll\": %.17g, \"best_factors\": ",
                it, lg->n_eval, lg->n_new, exp(lg->best_nll), exp(lg->median_nll), lg->best_nll);
        json_factors(f, S->c[lg->best].q, S->np);
        fprintf(f, "}%s\n", it < S->T ? "," : "");
    }
    fprintf(f, " ]}\n");
    cli_out_commit(&out);
}

static void write_gguf(const char *path, const model *m, const char *model_path, int64_t L,
                       int64_t orig, double mscale, const float *lf, const float *sf, int np)
{
    const struct model_hparams *hp = model_hparams(m);
    gguf_w *w;
    if (gguf_w_init(&w) < 0) cli_die("out of memory");
    int rc = gguf_w_copy_from(w, model_gguf(m));
    if (rc < 0) cli_die("%s: copy: %s", model_path, kvt_strerror(rc));
    char k[160];
    const char *a = hp->arch_name;
    const int64_t ne[1] = { np };
#define KEY(s) (snprintf(k, sizeof k, "%s." s, a), k)
    if (rc >= 0) rc = gguf_w_set_u32(w, KEY("context_length"), (uint32_t)L);
    if (rc >= 0) rc = gguf_w_set_u32(w, KEY("rope.scaling.original_context_length"), (uint32_t)orig);
    if (rc >= 0) rc = gguf_w_set_f32(w, KEY("rope.scaling.attn_factor"), (float)mscale);
    if (hp->arch == ARCH_PHI3) {
        if (rc >= 0) rc = gguf_w_set_str(w, KEY("rope.scaling.type"), "longrope");
        if (rc >= 0) rc = gguf_w_add_tensor(w, "rope_factors_long.weight", GGML_TYPE_F32, 1, ne, lf, (size_t)np * 4);
        if (rc >= 0) rc = gguf_w_add_tensor(w, "rope_factors_short.weight", GGML_TYPE_F32, 1, ne, sf, (size_t)np * 4);
    } else {
        gguf_w_remove(w, KEY("rope.scaling.type"));
        gguf_w_remove(w, KEY("rope.scaling.factor"));
        if (rc >= 0) rc = gguf_w_add_tensor(w, "rope_freqs.weight", GGML_TYPE_F32, 1, ne, lf, (size_t)np * 4);
    }
#undef KEY
    char tmp[4400];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    cli_cleanup_add(tmp, 0);
    if (rc >= 0) rc = gguf_w_write(w, tmp);
    if (rc >= 0) rc = jnl_commit(tmp, path);
    if (rc < 0) cli_die("%s: %s", path, kvt_strerror(rc));
    cli_cleanup_forget(tmp);
    gguf_w_free(w);
}

/* ---- the command -------------------------------------------------------------- */

static const char *const lr_score_names[] = { "half", "all", NULL };

/* --text-range A:B into int64_t[2]. */
static void parse_range(void *field, const char *name, const char *v)
{
    int64_t *r = field;
    const char *c = strchr(v, ':');
    if (!c) cli_die("%s: '%s' (expected A:B)", name, v);
    char buf[64];
    snprintf(buf, sizeof buf, "%.*s", (int)(c - v), v);
    r[0] = cli_parse_count(name, buf);
    r[1] = cli_parse_count(name, c + 1);
    if (r[1] <= r[0]) cli_die("%s: empty range '%s'", name, v);
}

int cmd_longrope(int argc, char **argv)
{
    struct cli_opts o;
    cli_opts_default(&o);
    const char *file = NULL, *out = NULL, *journal_path = NULL, *before = NULL;
    int64_t L = 0, n_hat = 0, skip = 0, ra = -1, rb = -1;
    int K = 4, P = 16, T = 10, do_short = 0, resume = 0, score_all = 0;
    uint64_t seed = 1;
    int64_t range[2] = { -1, -1 };
    struct opt tab[] = {
        OPT_STR("--file", "-f", "FILE", &file, "text the windows are taken from"),
        OPT_I64("--target-ctx", NULL, "L", &L, 1, 1e9, "length to search factors for"),
        OPT_STR("--out", "-o", "OUT", &out, "writes OUT.factors.txt, OUT.log.json, OUT.gguf"),
        OPT_INT("--samples", NULL, "K", &K, 1, 1024, "windows of L tokens per evaluation"),
        OPT_INT("--population", NULL, "P", &P, 2, 4096, "candidates per iteration"),
        OPT_INT("--iterations", NULL, "T", &T, 0, 100000, "iterations after the initial one"),
        OPT_U64("--seed", NULL, "S", &seed, "random seed"),
        OPT_I64("--n-hat", NULL, "N", &n_hat, 0, 1e12, "first N positions not interpolated"),
        OPT_FLAG("--short", NULL, &do_short,
                 "also search short factors at the original context\n(phi3 files only)"),
        OPT_CHOICE("--score", NULL, &score_all, lr_score_names,
                   "NLL of the second half of each window or of all tokens"),
        OPT_I64("--skip", NULL, "N", &skip, 0, 1e12, "ignore the first N tokens of the text"),
        OPT_FN("--text-range", NULL, "A:B", range, parse_range, "use tokens [A, B) only"),
        OPT_STR("--text-before", NULL, "S", &before, "use the text before the first line starting with S"),
        OPT_STR("--journal", NULL, "FILE", &journal_path, "journal", .def = "OUT.journal"),
        OPT_FLAG("--resume", NULL, &resume, "continue the search recorded in the journal"),
        CLI_OPTS_RUN(&o),
        CLI_OPT_JSON(&o),
        /* candidates are scored with a RAM store: the disk options do not apply */
        CLI_OPTS_TILES(&o),
        CLI_OPTS_POS(&o),
        CLI_OPTS_TEXT,
        OPT_END(),
    };
    const char *usage = "MODEL -f TEXT --target-ctx L -o OUT [options]";
    if (opt_parse("longrope-search", usage, tab, argc, argv, &o.model_path, 1) < 1 ||
        !file || !out || L <= 0)
        opt_usage("longrope-search", usage);
    ra = range[0];
    rb = range[1];
    o.kv_backing = KVS_RAM;

    model *m;
    tok *tk;
    cli_load(o.model_path, &m, &tk);
    const struct model_hparams *hp = model_hparams(m);
    struct rope_params rp;
    cli_rope_params(&o, m, &rp);
    const int np = rp.n_rot / 2;
    const int64_t orig = rp.orig_ctx;
    if (L <= orig)
        cli_die("--target-ctx %lld: not beyond the original context %lld", (long long)L, (long long)orig);
    if (do_short && hp->arch != ARCH_PHI3)
        cli_die("--short: not applicable to '%s' files (rope_freqs.weight has one set of factors, applied at every length); phi3 only", hp->arch_name);
    /* positions exactly as `ppl -c L --longrope-factors F --rope-scaling longrope` */
    rp.scheme = ROPE_LONGROPE;
    if (!rp.have_factors)
        for (int i = 0; i < np; i++) rp.factors_short[i] = rp.factors_long[i] = 1.0f;
    rp.have_factors = 1;
    if (rp.scale <= 1.0) rp.scale = (double)L / (double)orig;
    rp.n_hat = n_hat;
    const double s = (double)L / (double)orig;
    struct rope_table rt;
    int rc = rope_prepare(&rp, L, &rt);
    if (rc < 0) cli_die("%s: positions: %s", o.model_path, kvt_strerror(rc));
    const double mscale = rt.mscale;

    /* the windows */
    size_t len;
    char *text = cli_read_file(file, &len);
    if (before) len = cut_before(text, len, before);
    int64_t n_tok;
    int32_t *ids = cli_tokenize(tk, file, text, len, tok_add_bos(tk), &n_tok);
    free(text);
    int64_t lo = skip, hi = n_tok;
    if (ra >= 0) { lo = KVT_MAX(lo, ra); hi = KVT_MIN(hi, rb); }
    if (hi - lo < L)
        cli_die("%s: %lld tokens in the selected range, a window needs %lld", file, (long long)KVT_MAX(0, hi - lo), (long long)L);
    const int32_t **win = malloc((size_t)K * sizeof *win);
    if (!win) cli_die("out of memory");
    for (int w = 0; w < K; w++)
        win[w] = ids + lo + (K > 1 ? (hi - lo - L) * w / (K - 1) : 0);

    /* the journal header binds it to this search */
    uint8_t fp[32];
    model_fingerprint(m, fp);
    uint64_t th = 1469598103934665603ULL;
    for (int64_t i = 0; i < hi - lo; i++) { th ^= (uint32_t)ids[lo + i]; th *= 1099511628211ULL; }
    char header[512];
    int hn = snprintf(header, sizeof header, "kvtile-longrope-search 2 config model ");
    for (int i = 0; i < 32; i++) hn += snprintf(header + hn, sizeof header - (size_t)hn, "%02x", fp[i]);
    snprintf(header + hn, sizeof header - (size_t)hn,
             " text %016llx target %lld samples %d population %d seed %llu n_hat %lld score %s short %d",
             (unsigned long long)th, (long long)L, K, P, (unsigned long long)seed, (long long)n_hat,
             score_all ? "all" : "half", do_short);
    char jdef[4200], path[4200];
    if (!journal_path) {
        snprintf(jdef, sizeof jdef, "%s.journal", out);
        journal_path = jdef;
    }
    struct hset known[2] = { { 0 }, { 0 } }, marks = { 0 };
    if (!resume && access(journal_path, F_OK) == 0)
        cli_die("%s: journal exists (use --resume to continue it, or remove it)", journal_path);
    jnl_file *jf = cli_journal_open(journal_path, header, resume,
                                    "model, text, target, samples, population, seed, n_hat or score");
    journal_load(jf, journal_path, np, known, &marks);

    if (o.n_batch > L) o.n_batch = (int)L;
    model_ctx *mc = cli_model_ctx(&o, m);
    struct cli_kv ck;
    cli_kv_open(&o, m, "longrope.kvt", 0, &ck);

    struct search S = { 0 };
    S.model_path = o.model_path;
    S.mc = mc;
    S.kv = ck.kv;
    S.rp = rp;
    S.np = np;
    S.n_win = K;
    S.win = win;
    S.n_batch = o.n_batch;
    S.n_vocab = hp->n_vocab;
    S.bos = tok_add_bos(tk) ? tok_bos(tk) : -1;
    S.score_all = score_all;
    S.P = P;
    S.T = T;
    S.journal = jf;
    S.journal_path = journal_path;
    S.quiet = o.quiet;
    S.chunk = malloc((size_t)L * sizeof *S.chunk);
    S.logits = malloc((size_t)o.n_batch * (size_t)hp->n_vocab * sizeof *S.logits);
    S.log = calloc((size_t)T + 1, sizeof *S.log);
    if (!S.chunk || !S.logits || !S.log) cli_die("out of memory");
    S.t0 = kvt_now_s();

    /* long factors at L */
    S.set = 0;
    S.len = L;
    S.qmin = 100;
    S.qmax = (int)floor(125.0 * s + 1e-9);
    if (S.qmax > 32767) cli_die("--target-ctx: scale %.1f too large for the 0.01 grid", s);
    S.known = known[0];
    S.rng_marks = &marks;
    rng_seed(&S.rng, seed);
    int best = run_search(&S, s);
    double secs = kvt_now_s() - S.t0;
    float lf[ROPE_MAX_PAIRS], sf[ROPE_MAX_PAIRS];
    for (int i = 0; i < np; i++) {
        lf[i] = (float)S.c[best].q[i] / 100.0f;
        sf[i] = rp.factors_short[i];
    }
    snprintf(path, sizeof path, "%s.factors.txt", out);
    char what[256];
    snprintf(what, sizeof what, "LongRoPE long factors for %lld tokens (s = %.4g), search ppl %.4f",
             (long long)L, s, exp(S.c[best].nll));
    write_factors(path, S.c[best].q, np, what);
    snprintf(path, sizeof path, "%s.log.json", out);
    write_log(path, &S, o.model_path, L, s, mscale, secs, 0);
    double best_nll = S.c[best].nll;
    int n_evals = S.n_c;

    if (do_short) { /* short factors at the original context, from identity */
        struct search S2 = S;
        S2.set = 1;
        S2.len = orig;
        S2.qmax = (int)floor(100.0 * s + 1e-9);
        memcpy(S2.rp.factors_long, lf, sizeof lf);
        S2.c = NULL;
        S2.n_c = S2.cap_c = 0;
        memset(&S2.seen, 0, sizeof S2.seen);
        S2.known = known[1];
        S2.log = calloc((size_t)T + 1, sizeof *S2.log);
        if (!S2.log) cli_die("out of memory");
        S2.t0 = kvt_now_s();
        S2.n_computed = 0;
        int b2 = run_search(&S2, s);
        for (int i = 0; i < np; i++) sf[i] = (float)S2.c[b2].q[i] / 100.0f;
        snprintf(path, sizeof path, "%s.short-factors.txt", out);
        snprintf(what, sizeof what, "LongRoPE short factors (up to %lld tokens), search ppl %.4f",
                 (long long)orig, exp(S2.c[b2].nll));
        write_factors(path, S2.c[b2].q, np, what);
        snprintf(path, sizeof path, "%s.short.log.json", out);
        write_log(path, &S2, o.model_path, L, s, mscale, kvt_now_s() - S2.t0, 1);
        free(S2.c);
        free(S2.log);
        free(S2.seen.k);
        free(S2.seen.v);
    }

    if (rp.have_freq_factors) /* the file's rope_freqs stay in effect: fold them in */
        for (int i = 0; i < np && hp->arch != ARCH_PHI3; i++) lf[i] *= rp.freq_factors[i];
    snprintf(path, sizeof path, "%s.gguf", out);
    write_gguf(path, m, o.model_path, L, orig, mscale, lf, sf, np);

    if (o.json) {
        printf("{");
        cli_json_cpu(stdout);
        printf("\"best_ppl\": %.6f, \"best_nll\": %.17g, \"evaluations\": %d, \"computed\": %lld, "
               "\"seconds\": %.3f, \"factors\": ",
               exp(best_nll), best_nll, n_evals, (long long)S.n_computed, secs);
        json_factors(stdout, S.c[best].q, np);
        printf(", ");
        cli_json_io(stdout);
        printf("}\n");
    } else {
        printf("best ppl %.4f at %lld tokens after %d iterations, %d candidates (%lld computed) in %.1f s\n",
               exp(best_nll), (long long)L, T, n_evals, (long long)S.n_computed, secs);
        printf("wrote %s.factors.txt, %s.log.json, %s.gguf\n", out, out, out);
    }
    jnl_close(jf);
    free(S.c);
    free(S.log);
    free(S.seen.k);
    free(S.seen.v);
    free(S.chunk);
    free(S.logits);
    for (int i = 0; i < 2; i++) { free(known[i].k); free(known[i].v); }
    free(marks.k);
    free(marks.v);
    free(win);
    free(ids);
    cli_kv_close(&ck);
    model_ctx_free(mc);
    tok_free(tk);
    model_close(m);
    return 0;
}
