/* test_positions.c - positions that change as a sequence grows.
 *
 * LongRoPE switches from the short to the long factor set when the true
 * length passes the original context (256 for tiny-kjv). Fed token by token
 * past that boundary:
 *  - with the exact policy (re-evaluate the prefix at the switch) the logits
 *    equal a one-shot evaluation of the whole sequence;
 *  - without it, every cached key is rotated with the current factor set:
 *    checked against the naive oracle doing exactly that;
 *  - a post-rotation cache (rotate on write) mixes rotations: checked
 *    against the oracle's mixed mode, and shown to differ.
 * Factors: short = 1, long = models/longrope-long-factors.txt (8^(i/31)),
 * magnitude sqrt(1 + ln 8 / ln 256), on the llama-layout F32 model.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/model.h"
#include "engine/rope.h"
#include "base/kvt.h"
#include "kvstore/kvs.h"
#include "ref_model.h"
#include "t.h"

enum { N = 272, ORIG = 256 };

static float long_f[32];
static struct ref_rope ref_short, ref_long;

static const struct ref_rope *longrope_by_len(int64_t len, void *ctx)
{
    (void)ctx;
    return len > ORIG ? &ref_long : &ref_short;
}

static int load_factors(void)
{
    FILE *f = fopen(T_MODEL("longrope-long-factors.txt"), "r");
    if (!f) return -1;
    int n = 0;
    while (n < 32 && fscanf(f, "%f", &long_f[n]) == 1) n++;
    fclose(f);
    return n == 32 ? 0 : -1;
}

static void setup_rope(const model *m, struct rope_params *rp)
{
    *rp = model_hparams(m)->rope;
    rp->scheme = ROPE_LONGROPE;
    rp->have_factors = 1;
    rp->scale = 8.0;
    rp->orig_ctx = ORIG;
    rp->attn_factor = 0; /* default: sqrt(1 + ln s / ln L) */
    for (int i = 0; i < 32; i++) { rp->factors_short[i] = 1.0f; rp->factors_long[i] = long_f[i]; }
    /* the oracle's tables, from the formula */
    double ms = sqrt(1.0 + log(8.0) / log((double)ORIG));
    ref_rope_plain(&ref_short, 64, rp->freq_base);
    ref_rope_plain(&ref_long, 64, rp->freq_base);
    ref_short.mscale = ref_long.mscale = ms;
    for (int i = 0; i < 32; i++) ref_long.freq[i] /= long_f[i];
}

static void make_tokens(int32_t *t, int n)
{
    t[0] = 1;
    for (int i = 1; i < n; i++) t[i] = 3 + (int32_t)((i * 104729u + 7u) % 1000u);
}

struct run {
    model_ctx *c;
    kvs *kv;
};

static int run_open(const model *m, int batch, int rotate_on_write, struct run *r)
{
    const struct model_hparams *hp = model_hparams(m);
    struct model_ctx_params p = { .n_batch = batch, .n_threads = 2, .tile_tokens = 64,
                                  .rotate_k_on_write = rotate_on_write };
    int rc = model_ctx_create(m, &p, &r->c);
    if (rc < 0) return rc;
    struct kvs_config cfg = { .n_layer = hp->n_layer, .kv_dim = hp->kv_dim,
                              .tile_tokens = 64, .backing = KVS_RAM, .type = KVS_F32 };
    return kvs_open(&cfg, &r->kv);
}

static void run_close(struct run *r)
{
    kvs_close(r->kv);
    model_ctx_free(r->c);
}

/* Token by token; positions follow the current length. exact: re-evaluate
 * the prefix whenever the table changes. logits: (N, V). */
static int incremental(const model *m, const struct rope_params *rp, const int32_t *tok,
                       int exact, int rotate_on_write, float *logits, int *n_reeval)
{
    int V = model_hparams(m)->n_vocab;
    struct run r;
    int rc = run_open(m, N, rotate_on_write, &r);
    *n_reeval = 0;
    for (int t = 0; t < N && rc >= 0; t++) {
        int changed = model_ctx_set_rope(r.c, rp, t + 1);
        if (changed < 0) { rc = changed; break; }
        if (changed && exact && t > 0) {
            (*n_reeval)++;
            if ((rc = kvs_truncate(r.kv, 0)) < 0) break;
            if ((rc = model_eval(r.c, r.kv, tok, t, 0, logits, 1)) < 0) break;
        }
        rc = model_eval(r.c, r.kv, tok + t, 1, t, logits + (size_t)t * V, 0);
    }
    run_close(&r);
    return rc;
}

static double max_diff_from(const float *a, const double *b, int from, int V)
{
    double mx = 0;
    for (size_t i = (size_t)from * V; i < (size_t)N * V; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= mx)) mx = d;
    }
    return mx;
}

static model *m;
static int32_t tok[N];

static void test_exact_equals_one_shot(void)
{
    struct rope_params rp;
    setup_rope(m, &rp);
    int V = model_hparams(m)->n_vocab, nre = 0;
    float *inc = malloc(sizeof(float) * N * V), *one = malloc(sizeof(float) * N * V);
    T_CHECK(incremental(m, &rp, tok, 1, 0, inc, &nre) == 0);
    T_CHECK(nre == 1); /* one switch: at length 257 */
    struct run r;
    T_CHECK(run_open(m, N, 0, &r) == 0);
    T_CHECK(model_ctx_set_rope(r.c, &rp, N) == 1);
    T_CHECK(model_eval(r.c, r.kv, tok, N, 0, one, 1) == 0);
    run_close(&r);
    /* the last token's logits: the one-shot evaluation, to 1e-4 */
    double mx = 0;
    for (int i = 0; i < V; i++)
        mx = fmax(mx, fabs(inc[(size_t)(N - 1) * V + i] - one[(size_t)(N - 1) * V + i]));
    fprintf(stderr, "  exact vs one-shot: max |diff| %.3g\n", mx);
    T_CHECK(mx <= 1e-4);
    free(inc);
    free(one);
}

static void test_consistent_rotation_matches_oracle(void)
{
    struct rope_params rp;
    setup_rope(m, &rp);
    int V = model_hparams(m)->n_vocab, nre;
    float *inc = malloc(sizeof(float) * N * V);
    double *ref = malloc(sizeof(double) * N * V), *mixed = malloc(sizeof(double) * N * V);
    T_CHECK(incremental(m, &rp, tok, 0, 0, inc, &nre) == 0);
    T_CHECK(nre == 0);
    struct ref_opts o = { .rope = longrope_by_len };
    ref_forward(m, tok, N, &o, ref);
    double d = max_diff_from(inc, ref, 0, V);
    fprintf(stderr, "  consistent vs oracle: max |diff| %.3g\n", d);
    T_CHECK(d <= 2e-3);
    /* the oracle's mixed mode differs after the boundary: the test can tell */
    o.mixed = 1;
    ref_forward(m, tok, N, &o, mixed);
    double dm = 0;
    for (size_t i = (size_t)(ORIG + 1) * V; i < (size_t)N * V; i++) dm = fmax(dm, fabs(mixed[i] - ref[i]));
    T_CHECK(dm > 0.05);
    free(inc);
    free(ref);
    free(mixed);
}

static void test_rotate_on_write_mixes(void)
{
    struct rope_params rp;
    setup_rope(m, &rp);
    int V = model_hparams(m)->n_vocab, nre;
    float *inc = malloc(sizeof(float) * N * V);
    double *ref = malloc(sizeof(double) * N * V);
    T_CHECK(incremental(m, &rp, tok, 0, 1, inc, &nre) == 0);
    struct ref_opts o = { .rope = longrope_by_len, .mixed = 1 };
    ref_forward(m, tok, N, &o, ref);
    double d = max_diff_from(inc, ref, 0, V);
    fprintf(stderr, "  rotate-on-write vs mixed oracle: max |diff| %.3g\n", d);
    T_CHECK(d <= 2e-3);
    free(inc);
    free(ref);
}

int main(void)
{
    char err[256];
    if (load_factors() != 0 || model_open(T_MODEL("tiny-kjv-f32.gguf"), &m, err, sizeof err) != 0) {
        fprintf(stderr, "cannot load model or factors\n");
        return 1;
    }
    make_tokens(tok, N);
    T_RUN(test_exact_equals_one_shot);
    T_RUN(test_consistent_rotation_matches_oracle);
    T_RUN(test_rotate_on_write_mixes);
    model_close(m);
    return t_done();
}
