/* bench_prefill.c - prompt processing of a whole model, and its weight
 * products against plain cblas_sgemm, measured in the same run.
 *
 *   bench_prefill [MODEL.gguf] [-t THREADS] [-n TOKENS] [-r REPS]
 *     MODEL    default models/tiny-kjv-f32.gguf; for TinyLlama-1.1B shapes:
 *              build/bench/gen_model /tmp/tl.gguf --shape tinyllama
 *                  --type bf16 --layers 2
 *     THREADS  default: online CPUs (KVT_THREADS)
 *     TOKENS   batch of the forward pass, default 512
 *     REPS     repetitions of every measurement, default 3 (medians)
 *
 * 1. Forward pass: model_eval of TOKENS random tokens from an empty RAM KV
 *    store, logits of the last token only (as llama.cpp's prompt
 *    processing); tokens/s from the median time. For BF16/F16 models the
 *    direct GEMM (bf16 or int8) and dequantize + sgemm (set_direct(0)) are
 *    run alternately.
 * 2. Products: FLOP = 2 * m * n_in * n_out summed over every mm_matmul of
 *    a forward pass (layers at m = TOKENS, the output layer at m = 1).
 *    Every layer weight of up to 2 layers (the rest scaled by n_layer / 2)
 *    is timed with the model's own weights on random X (m = TOKENS), in
 *    rounds that alternate:
 *      mm      mm_matmul as the model calls it (default path)
 *      dq      mm_matmul with the direct GEMM off (BF16/F16/Q8_0/Q4_0/Q4_K)
 *      mm-f32  mm_matmul on an f32 copy of the weight (our thread split)
 *      sgemm   one cblas_sgemm on the f32 copy, OpenBLAS with THREADS
 *    GFLOP/s = FLOP / median seconds. Ratios are of times in one run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>

#include "engine/gguf.h"
#include "engine/matmul.h"
#include "engine/model.h"
#include "engine/pool.h"
#include "base/kvt.h"
#include "kvstore/kvs.h"

void openblas_set_num_threads(int num_threads);

#define MAX_REPS 64
#define LAYERS_TIMED 2

enum { V_MM, V_DQ, V_F32, V_SGEMM, N_V }; /* see the top */


/* The direct paths (BF16 GEMM for BF16/F16 weights, int8 VNNI GEMM for
 * Q8_0/Q4_0/Q4_K) on (the defaults) or off together, against dequantize
 * + sgemm: the kernel choices of the "off" contexts. */
static const struct mm_params direct_off = {.bf16_gemm_off = 1, .int8_gemm_off = 1};

static int direct_used(const mm_ctx *c, int type, int64_t n_in, int m)
{
    return mm_bf16_gemm_used(c, type, n_in, m) || mm_int8_gemm_used(c, type, n_in, m);
}

static _Noreturn void die(const char *what, int rc)
{
    fprintf(stderr, "bench_prefill: %s: %s\n", what, kvt_strerror(rc));
    exit(1);
}

static uint64_t rng = 0x9E3779B97F4A7C15u;
static uint64_t next_u64(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Seconds per forward pass of N tokens from an empty store, median of
 * REPS; with TOGGLE the direct GEMM alternates on (mc[0]) and off (mc[1])
 * per round and t[1] gets the "off" median. */
static void time_forward(model_ctx *const mc[2], kvs *kv, const int32_t *tok, int n,
                         float *logits, int reps, int toggle, double t[2])
{
    double s[2][MAX_REPS];
    for (int r = 0; r < reps; r++)
        for (int v = 0; v < 1 + toggle; v++) {
            int rc = kvs_truncate(kv, 0);
            if (rc < 0) die("kvs_truncate", rc);
            double t0 = kvt_now_s();
            rc = model_eval(mc[v], kv, tok, n, 0, logits, 0);
            s[v][r] = kvt_now_s() - t0;
            if (rc < 0) die("model_eval", rc);
        }
    t[0] = median(s[0], reps);
    t[1] = toggle ? median(s[1], reps) : 0;
}

struct prod {
    const char *role;
    double flop;      /* one call at m tokens, times layers represented */
    double sec[N_V];  /* medians, summed over the timed layers, scaled */
};

/* Time the products of weight W (m rows of X) in alternating rounds and
 * add medians * SCALE to P: C with the defaults, C_OFF without the
 * direct paths. W32 is room for the f32 copy. */
static void time_weight(mm_ctx *c, mm_ctx *c_off, int n_threads, const gguf_tensor *w,
                        const float *x, int m, float *y, float *w32, int reps,
                        double scale, struct prod *p)
{
    const int64_t n_in = w->ne[0], n_out = w->ne[1];
    mm_dequant(w->type, w->data, w32, n_in * n_out);
    gguf_tensor wf = *w;
    wf.type = GGML_TYPE_F32;
    wf.data = w32;
    wf.size = (size_t)(n_in * n_out) * sizeof(float);
    const int direct = direct_used(c, w->type, n_in, m);
    /* calls per sample: at least ~20 ms of work, so small shapes are not
     * timed at the clock's and the scheduler's grain */
    double t0 = kvt_now_s();
    mm_matmul(c, w, x, m, y);
    const int n_call = (int)KVT_MIN(100.0, KVT_MAX(1.0, 0.02 / (kvt_now_s() - t0)));
    double s[N_V][MAX_REPS];
    for (int r = 0; r < reps; r++)
        for (int v = 0; v < N_V; v++) {
            if (v == V_DQ && !direct) continue;
            t0 = kvt_now_s();
            for (int it = 0; it < n_call; it++) switch (v) {
            case V_MM: mm_matmul(c, w, x, m, y); break;
            case V_DQ: mm_matmul(c_off, w, x, m, y); break;
            case V_F32: mm_matmul(c, &wf, x, m, y); break;
            case V_SGEMM:
                openblas_set_num_threads(n_threads);
                if (it == 0) t0 = kvt_now_s();
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, (int)n_out,
                            (int)n_in, 1.0f, x, (int)n_in, w32, (int)n_in, 0.0f,
                            y, (int)n_out);
                break;
            }
            s[v][r] = (kvt_now_s() - t0) / n_call;
            openblas_set_num_threads(1); /* mm_matmul's setting */
        }
    p->flop += 2.0 * m * (double)n_in * (double)n_out * scale;
    for (int v = 0; v < N_V; v++)
        if (v != V_DQ || direct) p->sec[v] += median(s[v], reps) * scale;
}

static void print_prod(const char *type, const struct prod *p, int has_dq)
{
    printf("  %-8s %-6s %8.2f GFLOP  mm %7.1f", p->role, type, p->flop * 1e-9,
           p->flop / p->sec[V_MM] * 1e-9);
    if (has_dq) printf("  dq %7.1f", p->flop / p->sec[V_DQ] * 1e-9);
    else printf("  dq %7s", "-");
    printf("  mm-f32 %7.1f  sgemm %7.1f GFLOP/s   mm/sgemm %5.2f",
           p->flop / p->sec[V_F32] * 1e-9, p->flop / p->sec[V_SGEMM] * 1e-9,
           p->sec[V_SGEMM] / p->sec[V_MM]);
    if (has_dq) printf("  mm/dq %5.2f", p->sec[V_DQ] / p->sec[V_MM]);
    printf("\n");
}

int main(int argc, char **argv)
{
    const char *path = "models/tiny-kjv-f32.gguf";
    int n_threads = (int)sysconf(_SC_NPROCESSORS_ONLN), n_tok = 512, reps = 3;
    const char *env = getenv("KVT_THREADS");
    if (env) n_threads = atoi(env);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) n_threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-n") && i + 1 < argc) n_tok = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (argv[i][0] != '-') path = argv[i];
        else {
            fprintf(stderr, "usage: bench_prefill [MODEL.gguf] [-t THREADS] "
                            "[-n TOKENS] [-r REPS]\n");
            return 2;
        }
    }
    if (n_threads < 1) n_threads = 1;
    if (n_tok < 9 || n_tok > 8192) n_tok = 512;
    if (reps < 1 || reps > MAX_REPS) reps = 3;

    char err[256];
    model *m;
    int rc = model_open(path, &m, err, sizeof err);
    if (rc < 0) { fprintf(stderr, "bench_prefill: %s: %s\n", path, err); return 1; }
    const struct model_hparams *hp = model_hparams(m);
    struct model_ctx_params mp = {
        .n_batch = n_tok, .n_threads = n_threads, .tile_tokens = 256,
    };
    model_ctx *mc[2];
    if ((rc = model_ctx_create(m, &mp, &mc[0])) < 0) die("model_ctx_create", rc);
    mp.mm = direct_off;
    if ((rc = model_ctx_create(m, &mp, &mc[1])) < 0) die("model_ctx_create", rc);
    for (int v = 0; v < 2; v++)
        if ((rc = model_ctx_set_rope(mc[v], &hp->rope, n_tok)) < 0)
            die("model_ctx_set_rope", rc);
    struct kvs_config kc = {
        .n_layer = hp->n_layer, .kv_dim = hp->kv_dim, .tile_tokens = 256,
        .backing = KVS_RAM, .type = KVS_F32,
    };
    model_fingerprint(m, kc.model_fp);
    kvs *kv;
    if ((rc = kvs_open(&kc, &kv)) < 0) die("kvs_open", rc);

    /* Weights of the timed layers, by role. */
    const int n_timed = KVT_MIN(hp->n_layer, LAYERS_TIMED);
    const double scale = (double)hp->n_layer / n_timed;
    const char *roles[8] = {"attn_qkv", "attn_q", "attn_k", "attn_v",
                            "attn_out", "ffn_gate", "ffn_up", "ffn_down"};
    int64_t max_in = 1, max_w = 1, max_out = 1;
    for (int il = 0; il < n_timed; il++) {
        const struct layer_weights *L = model_layer(m, il);
        const gguf_tensor *ws[8] = {L->wqkv, L->wq, L->wk, L->wv, L->wo,
                                    L->w_gate, L->w_up, L->w_down};
        for (int k = 0; k < 8; k++)
            if (ws[k]) {
                max_in = KVT_MAX(max_in, ws[k]->ne[0]);
                max_w = KVT_MAX(max_w, ws[k]->ne[0] * ws[k]->ne[1]);
                max_out = KVT_MAX(max_out, ws[k]->ne[1]);
            }
    }
    const gguf_tensor *out_w = gguf_find_tensor(model_gguf(m), "output.weight");
    if (!out_w) out_w = gguf_find_tensor(model_gguf(m), "token_embd.weight");
    KVT_ASSERT(out_w != NULL);
    max_out = KVT_MAX(max_out, out_w->ne[1]);
    max_in = KVT_MAX(max_in, out_w->ne[0]);

    int32_t *tok = malloc((size_t)n_tok * sizeof *tok);
    float *logits = malloc((size_t)hp->n_vocab * sizeof *logits);
    float *x = malloc((size_t)n_tok * (size_t)max_in * sizeof *x);
    float *y = malloc((size_t)n_tok * (size_t)max_out * sizeof *y);
    float *w32 = malloc((size_t)max_w * sizeof *w32);
    if (!tok || !logits || !x || !y || !w32) die("malloc", -12);
    for (int i = 0; i < n_tok; i++)
        tok[i] = (int32_t)(3 + next_u64() % (uint64_t)(hp->n_vocab - 3));
    tok[0] = 1;
    for (size_t i = 0; i < (size_t)n_tok * (size_t)max_in; i++)
        x[i] = (float)((double)(next_u64() >> 40) * 0x1p-23 - 1.0);

    const gguf_tensor *w0 = model_layer(m, 0)->wq ? model_layer(m, 0)->wq
                                                  : model_layer(m, 0)->wqkv;
    const char *wtype = ggml_type_name(w0->type);
    mm_ctx *c;
    pool *p;
    if ((rc = pool_create(n_threads, &p)) < 0) die("pool_create", rc);
    mm_ctx *c_off;
    if ((rc = mm_ctx_create(p, max_in, NULL, &c)) < 0) die("mm_ctx_create", rc);
    if ((rc = mm_ctx_create(p, max_in, &direct_off, &c_off)) < 0) die("mm_ctx_create", rc);
    const int toggle = direct_used(c, w0->type, w0->ne[0], n_tok);
    printf("bench_prefill: %s  (%s, dim %d, %d layers, ffn %d, %d/%d heads, vocab %d; "
           "weights %s)  %d threads, %d tokens, %d reps (medians)\n",
           path, hp->arch_name, hp->n_embd, hp->n_layer, hp->n_ff, hp->n_head,
           hp->n_head_kv, hp->n_vocab, wtype, n_threads, n_tok, reps);

    /* 1. forward passes (one warm-up, which also faults the weights in) */
    double tf[2];
    time_forward(mc, kv, tok, n_tok, logits, 1, toggle, tf);
    time_forward(mc, kv, tok, n_tok, logits, reps, toggle, tf);

    /* 2. products */
    struct prod pr[8];
    memset(pr, 0, sizeof pr);
    for (int k = 0; k < 8; k++) pr[k].role = roles[k];
    for (int il = 0; il < n_timed; il++) {
        const struct layer_weights *L = model_layer(m, il);
        const gguf_tensor *ws[8] = {L->wqkv, L->wq, L->wk, L->wv, L->wo,
                                    L->w_gate, L->w_up, L->w_down};
        for (int k = 0; k < 8; k++)
            if (ws[k])
                time_weight(c, c_off, n_threads, ws[k], x, n_tok, y, w32, reps, scale, &pr[k]);
    }
    /* the output layer at m = 1 (last-token logits): mm only */
    double s1[MAX_REPS];
    for (int r = 0; r < reps; r++) {
        double t0 = kvt_now_s();
        mm_matmul(c, out_w, x, 1, y);
        s1[r] = kvt_now_s() - t0;
    }
    const double t_out = median(s1, reps);
    const double flop_out = 2.0 * (double)out_w->ne[0] * (double)out_w->ne[1];

    struct prod tot = {.role = "total"};
    printf("products (m = %d; %d of %d layers timed, scaled):\n", n_tok, n_timed,
           hp->n_layer);
    for (int k = 0; k < 8; k++) {
        if (pr[k].flop == 0) continue;
        print_prod(wtype, &pr[k], toggle);
        tot.flop += pr[k].flop;
        for (int v = 0; v < N_V; v++) tot.sec[v] += pr[k].sec[v];
    }
    print_prod(wtype, &tot, toggle);
    const double flop_fwd = tot.flop + flop_out;
    printf("forward: %.1f tokens/s (%.3f s per %d tokens); weight products %.2f GFLOP "
           "per pass (output layer at m = 1: %.3f GFLOP, %.2f ms)\n",
           n_tok / tf[0], tf[0], n_tok, flop_fwd * 1e-9, flop_out * 1e-9, t_out * 1e3);
    printf("forward: products alone %.3f s = %.0f%% of the pass; effective rate "
           "%.1f GFLOP/s over the whole pass\n", tot.sec[V_MM] + t_out,
           100 * (tot.sec[V_MM] + t_out) / tf[0], flop_fwd / tf[0] * 1e-9);
    if (toggle)
        printf("forward with dequantize + sgemm: %.1f tokens/s (%.3f s); direct "
               "GEMM speed-up %.2fx\n", n_tok / tf[1], tf[1], tf[1] / tf[0]);
    printf("summary %s %s: mm %.1f GFLOP/s, sgemm %.1f GFLOP/s, mm/sgemm %.2f, "
           "mm/mm-f32 %.2f", path, wtype, tot.flop / tot.sec[V_MM] * 1e-9,
           tot.flop / tot.sec[V_SGEMM] * 1e-9, tot.sec[V_SGEMM] / tot.sec[V_MM],
           tot.sec[V_F32] / tot.sec[V_MM]);
    if (toggle)
        printf(", direct/dequant+sgemm %.2f (products) %.2f (forward)",
               tot.sec[V_DQ] / tot.sec[V_MM], tf[1] / tf[0]);
    printf("\n");

    mm_ctx_free(c);
    mm_ctx_free(c_off);
    pool_free(p);
    free(tok);
    free(logits);
    free(x);
    free(y);
    free(w32);
    kvs_close(kv);
    model_ctx_free(mc[0]);
    model_ctx_free(mc[1]);
    model_close(m);
    return 0;
}
