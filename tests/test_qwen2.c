/* test_qwen2.c - the qwen2 architecture (Q/K/V biases, NeoX half-split
 * rotation) end to end, on files built here from tiny-kjv-f32:
 *   - with nonzero biases: the engine's logits against the naive oracle
 *     (ref_model.c, which adds the biases and rotates half-split pairs),
 *     and `kvtile ppl` against llama.cpp's llama-perplexity on the same
 *     file (reference below);
 *   - with zero biases and the Q/K rows of every head permuted so that
 *     half-split pair (j, j + D/2) holds the adjacent pair (2j, 2j + 1):
 *     the same function as the llama file, so the same logits.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gguf.h"
#include "engine/gguf_write.h"
#include "engine/model.h"
#include "engine/rope.h"
#include "kvstore/kvs.h"
#include "base/kvt.h"
#include "teval.h"
#include "ref_model.h"
#include "t.h"
#include "tproc.h"

#define SRC T_MODEL("tiny-kjv-f32.gguf")

/* llama.cpp c392e50: llama-perplexity -m tiny-qwen2-bias.gguf
 * -f tests/data/kjv-nt.txt -c 256 --chunks 100 -t 2, on the file test_oracle
 * builds (kept with KVT_TEST_KEEP=1): "Final estimate: PPL = 99.8610". */
#define REF_PPL_100 99.8610

static char g_dir[256];

/* Float buffers the writer borrows until gguf_w_write returns. */
static float *g_keep[64];
static int g_n_keep;

static float *keep(size_t n)
{
    KVT_ASSERT(g_n_keep < 64);
    return g_keep[g_n_keep++] = malloc(n * sizeof(float));
}

static void rename_hparams(gguf_w *w, const gguf *g)
{
    for (int i = 0; i < gguf_n_kv(g); i++) {
        const char *k = gguf_key(g, i);
        if (strncmp(k, "llama.", 6) != 0) continue;
        char nk[128];
        snprintf(nk, sizeof nk, "qwen2.%s", k + 6);
        if (gguf_kv_type(g, i) == GGUF_VT_F32) {
            double v;
            T_CHECK(gguf_get_float(g, k, &v) == 0);
            T_CHECK(gguf_w_set_f32(w, nk, (float)v) == 0);
        } else {
            int64_t v;
            T_CHECK(gguf_kv_type(g, i) == GGUF_VT_U32);
            T_CHECK(gguf_get_int(g, k, &v) == 0);
            T_CHECK(gguf_w_set_u32(w, nk, (uint32_t)v) == 0);
        }
        T_CHECK(gguf_w_remove(w, k) == 0);
    }
}

/* Rows of a (rows, cols) matrix, per head of D rows: new row j = old 2j,
 * new row j + D/2 = old 2j + 1. A bias is a matrix with one column. */
static float *permute_rows(const float *src, int rows, int cols, int D)
{
    float *dst = keep((size_t)rows * cols);
    for (int h = 0; h < rows / D; h++)
        for (int j = 0; j < D / 2; j++)
            for (int par = 0; par < 2; par++)
                memcpy(dst + ((size_t)h * D + j + par * D / 2) * cols,
                       src + ((size_t)h * D + 2 * j + par) * cols, sizeof(float) * cols);
    return dst;
}

static void add_f32(gguf_w *w, const char *name, const float *d, int64_t ne0, int64_t ne1)
{
    int64_t ne[2] = {ne0, ne1};
    T_CHECK(gguf_w_add_tensor(w, name, GGML_TYPE_F32, ne1 > 1 ? 2 : 1, ne, d,
                              sizeof(float) * (size_t)(ne0 * ne1)) == 0);
}

/* qwen2 file at DST from tiny-kjv-f32: biases BIAS * sin(...), and with
 * PERMUTE the Q/K rows (and biases) rearranged as above. */
static void build(const char *dst, double bias, int permute)
{
    char err[256];
    gguf *g;
    gguf_w *w;
    T_CHECK(gguf_open(SRC, &g, err, sizeof err) == 0);
    T_CHECK(gguf_w_init(&w) == 0);
    T_CHECK(gguf_w_copy_from(w, g) == 0);
    T_CHECK(gguf_w_set_str(w, "general.architecture", "qwen2") == 0);
    rename_hparams(w, g);
    int64_t E, L, H, HKV;
    gguf_get_int(g, "llama.embedding_length", &E);
    gguf_get_int(g, "llama.block_count", &L);
    gguf_get_int(g, "llama.attention.head_count", &H);
    gguf_get_int(g, "llama.attention.head_count_kv", &HKV);
    int D = (int)(E / H), KV = (int)HKV * D;
    for (int il = 0; il < L; il++) {
        static const char *const part[3] = {"q", "k", "v"};
        for (int p = 0; p < 3; p++) {
            int rows = p == 0 ? (int)E : KV;
            float *b = keep((size_t)rows);
            for (int i = 0; i < rows; i++)
                b[i] = (float)(bias * sin(0.37 * i + 1.3 * il + 0.5 * p + 0.1));
            char name[64];
            snprintf(name, sizeof name, "blk.%d.attn_%s.weight", il, part[p]);
            const gguf_tensor *t = gguf_find_tensor(g, name);
            T_CHECK(t != NULL && t->type == GGML_TYPE_F32 && t->ne[1] == rows);
            if (permute && p < 2) {
                add_f32(w, name, permute_rows(t->data, rows, (int)E, D), E, rows);
                b = permute_rows(b, rows, 1, D);
            }
            snprintf(name, sizeof name, "blk.%d.attn_%s.bias", il, part[p]);
            add_f32(w, name, b, rows, 1);
        }
    }
    T_CHECK(gguf_w_write(w, dst) == 0);
    gguf_w_free(w);
    gguf_close(g);
    for (int i = 0; i < g_n_keep; i++) free(g_keep[i]);
    g_n_keep = 0;
}

static const struct ref_rope *fixed_rope(int64_t len, void *ctx)
{
    (void)len;
    return ctx;
}

/* Engine logits for tokens[0..n) in batches of BATCH, tiles of TILE. */
static int engine_logits(const model *m, const int32_t *tokens, int n, int batch,
                         int tile, float *logits)
{
    return t_engine_logits(m, tokens, n, batch, tile, 2, 0, 0, logits);
}

enum { N = 40 };

static void make_tokens(int32_t *t)
{
    t[0] = 1;
    for (int i = 1; i < N; i++) t[i] = 3 + (int32_t)((i * 7919u + 13u) % 1000u);
}

static void test_oracle(void)
{
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/tiny-qwen2-bias.gguf", g_dir);
    build(path, 0.2, 0);
    model *m, *base;
    T_CHECK(model_open(path, &m, err, sizeof err) == 0);
    T_CHECK(model_open(SRC, &base, err, sizeof err) == 0);
    if (!m || !base) return;
    const struct model_hparams *hp = model_hparams(m);
    T_CHECK(hp->arch == ARCH_QWEN2 && hp->rope.neox == 1);
    int V = hp->n_vocab;
    int32_t tok[N];
    make_tokens(tok);
    struct ref_rope r;
    ref_rope_plain(&r, hp->rope.n_rot, hp->rope.freq_base);
    r.neox = 1;
    struct ref_opts o = {.rope = fixed_rope, .rope_ctx = &r};
    double *ref = malloc(sizeof(double) * N * V);
    float *got = malloc(sizeof(float) * N * V), *llama = malloc(sizeof(float) * N * V);
    ref_forward(m, tok, N, &o, ref);
    const int cfg[][2] = {{64, 64}, {7, 5}, {1, 3}};
    for (int c = 0; c < 3; c++) {
        T_CHECK(engine_logits(m, tok, N, cfg[c][0], cfg[c][1], got) == 0);
        double d = 0;
        for (size_t i = 0; i < (size_t)N * V; i++) d = fmax(d, fabs(got[i] - ref[i]));
        fprintf(stderr, "  qwen2 (biases, NeoX), batch %d tile %d: max |engine - oracle| %.3g\n",
                cfg[c][0], cfg[c][1], d);
        T_CHECK(d <= 2e-3);
    }
    /* the biases and the rotation matter: far from the llama file's logits */
    T_CHECK(engine_logits(base, tok, N, 64, 64, llama) == 0);
    double d = 0;
    for (size_t i = 0; i < (size_t)N * V; i++) d = fmax(d, fabs(got[i] - llama[i]));
    T_CHECK(d > 0.1);
    free(ref);
    free(got);
    free(llama);
    model_close(m);
    model_close(base);
    /* llama.cpp on the same file */
    char args[1024], out[1 << 14], eo[1 << 12];
    snprintf(args, sizeof args, "ppl %s -f " T_DATA("kjv-nt.txt") " -c 256 --chunks 100 "
             "--kv-store ram --json --quiet", path);
    int rc = t_run(args, out, sizeof out, eo, sizeof eo);
    double p = rc == 0 ? t_json_num(out, "ppl") : NAN;
    fprintf(stderr, "  qwen2 (biases) ppl, 100 windows of 256: %.4f, llama.cpp %.4f\n", p,
            REF_PPL_100);
    T_CHECK(fabs(p - REF_PPL_100) <= 5e-4 * REF_PPL_100);
}

static void test_same_function(void)
{
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/tiny-qwen2-permuted.gguf", g_dir);
    build(path, 0.0, 1);
    model *m, *base;
    T_CHECK(model_open(path, &m, err, sizeof err) == 0);
    T_CHECK(model_open(SRC, &base, err, sizeof err) == 0);
    if (!m || !base) return;
    int V = model_hparams(m)->n_vocab;
    int32_t tok[N];
    make_tokens(tok);
    float *a = malloc(sizeof(float) * N * V), *b = malloc(sizeof(float) * N * V);
    T_CHECK(engine_logits(m, tok, N, 16, 8, a) == 0);
    T_CHECK(engine_logits(base, tok, N, 16, 8, b) == 0);
    double d = 0;
    for (size_t i = 0; i < (size_t)N * V; i++) d = fmax(d, fabs(a[i] - b[i]));
    fprintf(stderr, "  qwen2 permuted vs llama: max |diff| %.3g\n", d);
    T_CHECK(d <= 1e-3);
    free(a);
    free(b);
    model_close(m);
    model_close(base);
}

int main(void)
{
    if (!t_tmpdir(g_dir, sizeof g_dir)) return 1;
    char d[256];
    snprintf(d, sizeof d, "%s", g_dir);
    T_RUN(test_oracle);
    T_RUN(test_same_function);
    const char *keepdir = getenv("KVT_TEST_KEEP");
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    if (keepdir && *keepdir) fprintf(stderr, "  kept %s\n", d);
    else if (system(cmd) != 0) fprintf(stderr, "  could not remove %s\n", d);
    return t_done();
}
