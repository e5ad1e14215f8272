/* test_model.c - the forward pass against a naive oracle.
 *
 * The oracle (below) is written independently of engine/: plain loops in
 * double over the F32 weights of tiny-kjv, RoPE from its textbook formula,
 * the full causal attention matrix, one softmax per row; SelfExtend builds
 * the full merged logit matrix (neighbour logits where q - k < W, grouped
 * logits elsewhere). The engine runs with small tiles and batches so that
 * the streamed, online-softmax path crosses many span boundaries.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gguf.h"
#include "engine/model.h"
#include "engine/rope.h"
#include "kvstore/kvs.h"
#include "io/kvt.h"
#include "t.h"

#define MODEL_F32 T_MODEL("tiny-kjv-f32.gguf")

struct oracle {
    const gguf *g;
    int E, L, H, HKV, D, F, V;
    double eps;
    int se_g, se_w;         /* SelfExtend, 0 = off */
};

static const float *W(const struct oracle *o, const char *name)
{
    const gguf_tensor *t = gguf_find_tensor(o->g, name);
    KVT_ASSERT(t && t->type == GGML_TYPE_F32);
    return t->data;
}

static const float *WL(const struct oracle *o, int il, const char *suffix)
{
    char name[96];
    snprintf(name, sizeof name, "blk.%d.%s", il, suffix);
    return W(o, name);
}

static void rms(const struct oracle *o, const double *x, const float *w, double *out)
{
    double ss = 0;
    for (int i = 0; i < o->E; i++) ss += x[i] * x[i];
    double s = 1.0 / sqrt(ss / o->E + o->eps);
    for (int i = 0; i < o->E; i++) out[i] = x[i] * s * w[i];
}

/* y (n_out) = W (n_out rows of n_in) x */
static void mv(const float *w, const double *x, int n_in, int n_out, double *y)
{
    for (int r = 0; r < n_out; r++) {
        double s = 0;
        for (int c = 0; c < n_in; c++) s += (double)w[(size_t)r * n_in + c] * x[c];
        y[r] = s;
    }
}

/* Adjacent-pair rotation of one head by position p (plain RoPE, base 1e4). */
static void rot(double *x, int d, double p)
{
    for (int i = 0; i < d / 2; i++) {
        double th = p * pow(10000.0, -2.0 * i / d);
        double a = x[2 * i], b = x[2 * i + 1];
        x[2 * i] = a * cos(th) - b * sin(th);
        x[2 * i + 1] = a * sin(th) + b * cos(th);
    }
}

/* logits (n, V) of tokens[0..n) evaluated from position 0. */
static void oracle_run(const struct oracle *o, const int32_t *tokens, int n, double *logits)
{
    int E = o->E, D = o->D, H = o->H, HKV = o->HKV, KV = HKV * D, F = o->F;
    double *x = calloc((size_t)n * E, sizeof *x), *xn = malloc(sizeof(double) * E);
    double *q = malloc(sizeof(double) * (size_t)n * E), *k = malloc(sizeof(double) * (size_t)n * KV);
    double *v = malloc(sizeof(double) * (size_t)n * KV), *att = malloc(sizeof(double) * E);
    double *tmp = malloc(sizeof(double) * (F > E ? F : E)), *g = malloc(sizeof(double) * F);
    double *u = malloc(sizeof(double) * F), *sc = malloc(sizeof(double) * n);
    double *qa = malloc(sizeof(double) * D), *ka = malloc(sizeof(double) * D);
    const float *emb = W(o, "token_embd.weight");
    for (int t = 0; t < n; t++)
        for (int i = 0; i < E; i++) x[(size_t)t * E + i] = emb[(size_t)tokens[t] * E + i];
    for (int il = 0; il < o->L; il++) {
        for (int t = 0; t < n; t++) {
            rms(o, x + (size_t)t * E, WL(o, il, "attn_norm.weight"), xn);
            mv(WL(o, il, "attn_q.weight"), xn, E, E, q + (size_t)t * E);
            mv(WL(o, il, "attn_k.weight"), xn, E, KV, k + (size_t)t * KV);
            mv(WL(o, il, "attn_v.weight"), xn, E, KV, v + (size_t)t * KV);
        }
        double *xo = malloc(sizeof(double) * (size_t)n * E);
        for (int t = 0; t < n; t++) {
            for (int h = 0; h < H; h++) {
                int hk = h / (H / HKV);
                double mx = -INFINITY;
                for (int s = 0; s <= t; s++) {
                    double pq = t, pk = s;
                    if (o->se_g && t - s >= o->se_w) {
                        pq = t / o->se_g + o->se_w - o->se_w / o->se_g;
                        pk = s / o->se_g;
                    }
                    memcpy(qa, q + (size_t)t * E + (size_t)h * D, sizeof(double) * D);
                    memcpy(ka, k + (size_t)s * KV + (size_t)hk * D, sizeof(double) * D);
                    rot(qa, D, pq);
                    rot(ka, D, pk);
                    double dot = 0;
                    for (int i = 0; i < D; i++) dot += qa[i] * ka[i];
                    sc[s] = dot / sqrt((double)D);
                    if (sc[s] > mx) mx = sc[s];
                }
                double sum = 0;
                for (int s = 0; s <= t; s++) { sc[s] = exp(sc[s] - mx); sum += sc[s]; }
                for (int i = 0; i < D; i++) {
                    double a = 0;
                    for (int s = 0; s <= t; s++) a += sc[s] * v[(size_t)s * KV + (size_t)hk * D + i];
                    att[h * D + i] = a / sum;
                }
            }
            mv(WL(o, il, "attn_output.weight"), att, E, E, xo + (size_t)t * E);
        }
        for (size_t i = 0; i < (size_t)n * E; i++) x[i] += xo[i];
        free(xo);
        for (int t = 0; t < n; t++) {
            rms(o, x + (size_t)t * E, WL(o, il, "ffn_norm.weight"), xn);
            mv(WL(o, il, "ffn_gate.weight"), xn, E, F, g);
            mv(WL(o, il, "ffn_up.weight"), xn, E, F, u);
            for (int i = 0; i < F; i++) g[i] = g[i] / (1 + exp(-g[i])) * u[i];
            mv(WL(o, il, "ffn_down.weight"), g, F, E, tmp);
            for (int i = 0; i < E; i++) x[(size_t)t * E + i] += tmp[i];
        }
    }
    for (int t = 0; t < n; t++) {
        rms(o, x + (size_t)t * E, W(o, "output_norm.weight"), xn);
        mv(W(o, "output.weight"), xn, E, o->V, logits + (size_t)t * o->V);
    }
    free(x); free(xn); free(q); free(k); free(v); free(att); free(tmp);
    free(g); free(u); free(sc); free(qa); free(ka);
}

static void oracle_init(struct oracle *o, const model *m)
{
    const struct model_hparams *hp = model_hparams(m);
    memset(o, 0, sizeof *o);
    o->g = model_gguf(m);
    o->E = hp->n_embd; o->L = hp->n_layer; o->H = hp->n_head;
    o->HKV = hp->n_head_kv; o->D = hp->head_dim; o->F = hp->n_ff;
    o->V = hp->n_vocab; o->eps = hp->rms_eps;
}

/* Engine logits for all positions, with the given batch, tile, backing. */
static int engine_run(const model *m, const int32_t *tokens, int n, int batch,
                      int tile, int threads, int se_g, int se_w, float *logits)
{
    const struct model_hparams *hp = model_hparams(m);
    struct model_ctx_params p = { .n_batch = batch, .n_threads = threads,
                                  .tile_tokens = tile, .se_group = se_g,
                                  .se_window = se_w };
    model_ctx *c;
    int rc = model_ctx_create(m, &p, &c);
    if (rc < 0) return rc;
    struct rope_params rp = hp->rope;
    if ((rc = model_ctx_set_rope(c, &rp, n)) < 0) return rc;
    struct kvs_config cfg = { .n_layer = hp->n_layer, .kv_dim = hp->kv_dim,
                              .tile_tokens = tile, .backing = KVS_RAM,
                              .type = KVS_F32 };
    kvs *kv;
    if ((rc = kvs_open(&cfg, &kv)) < 0) return rc;
    for (int p0 = 0; p0 < n && rc >= 0; p0 += batch) {
        int nb = n - p0 < batch ? n - p0 : batch;
        rc = model_eval(c, kv, tokens + p0, nb, p0, logits + (size_t)p0 * hp->n_vocab, 1);
    }
    kvs_close(kv);
    model_ctx_free(c);
    return rc;
}

static double max_abs_diff(const float *a, const double *b, size_t n)
{
    double mx = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= mx)) mx = d; /* NaN propagates as failure */
    }
    return mx;
}

static void make_tokens(int32_t *t, int n)
{
    t[0] = 1;
    for (int i = 1; i < n; i++) t[i] = 3 + (int32_t)((i * 7919u + 13u) % 1000u);
}

static void test_forward_matches_oracle(void)
{
    char err[256];
    model *m;
    T_CHECK(model_open(MODEL_F32, &m, err, sizeof err) == 0);
    if (!m) return;
    enum { N = 45 };
    int32_t tok[N];
    make_tokens(tok, N);
    struct oracle o;
    oracle_init(&o, m);
    double *ref = malloc(sizeof(double) * N * o.V);
    float *got = malloc(sizeof(float) * N * o.V);
    oracle_run(&o, tok, N, ref);
    /* one batch, one tile; then many ragged spans and batches; threads 1, 2 */
    const int cfg[][3] = { { 64, 64, 1 }, { 16, 8, 2 }, { 7, 5, 2 }, { 1, 3, 1 } };
    for (size_t i = 0; i < sizeof cfg / sizeof cfg[0]; i++) {
        T_CHECK(engine_run(m, tok, N, cfg[i][0], cfg[i][1], cfg[i][2], 0, 0, got) == 0);
        double d = max_abs_diff(got, ref, (size_t)N * o.V);
        if (d > 2e-3) fprintf(stderr, "  batch %d tile %d: max |diff| %.3g\n", cfg[i][0], cfg[i][1], d);
        T_CHECK(d <= 2e-3);
    }
    free(ref);
    free(got);
    model_close(m);
}

static void test_self_extend_matches_oracle(void)
{
    char err[256];
    model *m;
    T_CHECK(model_open(MODEL_F32, &m, err, sizeof err) == 0);
    if (!m) return;
    enum { N = 60 };
    int32_t tok[N];
    make_tokens(tok, N);
    struct oracle o;
    oracle_init(&o, m);
    o.se_g = 4;
    o.se_w = 16;
    double *ref = malloc(sizeof(double) * N * o.V);
    float *got = malloc(sizeof(float) * N * o.V);
    oracle_run(&o, tok, N, ref);
    const int cfg[][2] = { { 64, 64 }, { 16, 8 }, { 5, 7 } };
    for (size_t i = 0; i < sizeof cfg / sizeof cfg[0]; i++) {
        T_CHECK(engine_run(m, tok, N, cfg[i][0], cfg[i][1], 2, 4, 16, got) == 0);
        double d = max_abs_diff(got, ref, (size_t)N * o.V);
        if (d > 2e-3) fprintf(stderr, "  SE batch %d tile %d: max |diff| %.3g\n", cfg[i][0], cfg[i][1], d);
        T_CHECK(d <= 2e-3);
    }
    /* and SelfExtend really changes the result once q - k >= W */
    oracle_init(&o, m);
    double *plain = malloc(sizeof(double) * N * o.V);
    oracle_run(&o, tok, N, plain);
    double dmax = 0;
    for (size_t i = (size_t)20 * o.V; i < (size_t)N * o.V; i++)
        dmax = fmax(dmax, fabs(plain[i] - ref[i]));
    T_CHECK(dmax > 1e-2);
    free(plain);
    free(ref);
    free(got);
    model_close(m);
}

static void test_bad_models(void)
{
    char err[256] = "";
    model *m = NULL;
    T_CHECK(model_open("tests/data/does-not-exist.gguf", &m, err, sizeof err) == -ENOENT);
    T_CHECK(model_open(T_DATA("vocab/ggml-vocab-gpt-2.gguf"), &m, err, sizeof err) < 0);
    T_CHECK(err[0] != 0);
}

int main(void)
{
    T_RUN(test_forward_matches_oracle);
    T_RUN(test_self_extend_matches_oracle);
    T_RUN(test_bad_models);
    return t_done();
}
