/* gen_model.c - write a random-weight Llama GGUF of a known shape, for
 * benchmarks at sizes the bundled model does not reach.
 *
 *   gen_model OUT.gguf --shape tinyllama|tiny-kjv|llama3-8b-layer
 *             --type f32|f16|bf16|q8_0|q4_0 [--layers N] [--seed S]
 *
 * Shapes (architecture "llama", adjacent-pair RoPE):
 *   tinyllama        TinyLlama-1.1B: dim 2048, 22 layers, 32 heads, 4 KV
 *                    heads, FFN 5632, vocab 32000, context 2048, base 10000
 *   tiny-kjv         the bundled model's shape: dim 256, 4 layers, 4 heads,
 *                    2 KV heads, FFN 688, vocab 1024, context 256
 *   llama3-8b-layer  Llama-3-8B layers: dim 4096, 32 heads, 8 KV heads,
 *                    FFN 14336, context 8192, base 500000; 1 layer by
 *                    default, and a 32000-piece vocabulary with tied output
 *                    (the real 128256 x 4096 embedding alone is 2 GB f32;
 *                    the layers are what a benchmark of one layer needs)
 * Weights: i.i.d. N(0, 0.02) (Box-Muller on a seeded splitmix64 stream per
 * tensor, so a tensor does not depend on the order of generation); norm
 * weights 1. Matrices are stored as --type; rows whose length is not a
 * multiple of 32 fall back to F16 for q8_0/q4_0 (as llama.cpp does);
 * norms are F32. Quantizers are ggml's reference ones (round to nearest).
 *
 * Vocabulary: a minimal valid SentencePiece ("llama") vocabulary of the
 * shape's size: <unk> <s> </s>, the 256 byte pieces <0x00>..<0xFF> (so
 * any text tokenizes), then printable ASCII characters, "\u2581"+letter,
 * letter pairs, ... with decreasing scores. Tensors are generated while
 * the file is written (gguf_w_add_tensor_fn): RAM stays at one tensor.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gguf.h"
#include "engine/gguf_write.h"
#include "base/numfmt.h"
#include "base/kvt.h"

struct shape {
    const char *name;
    int dim, n_layer, n_head, n_head_kv, n_ff, n_vocab, n_ctx;
    double freq_base;
    int tied;
};

static const struct shape shapes[] = {
    { "tinyllama", 2048, 22, 32, 4, 5632, 32000, 2048, 10000.0, 0 },
    { "tiny-kjv", 256, 4, 4, 2, 688, 1024, 256, 10000.0, 0 },
    { "llama3-8b-layer", 4096, 1, 32, 8, 14336, 32000, 8192, 500000.0, 1 },
};

static _Noreturn void die(const char *fmt, const char *a)
{
    fprintf(stderr, "gen_model: ");
    fprintf(stderr, fmt, a);
    fputc('\n', stderr);
    exit(1);
}

/* ---- random numbers ------------------------------------------------------ */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in (0, 1). */
static double unif(uint64_t *s)
{
    return ((double)(splitmix64(s) >> 11) + 0.5) / 9007199254740992.0;
}

static void gauss_fill(uint64_t seed, float sigma, float *x, size_t n)
{
    uint64_t s = seed;
    for (size_t i = 0; i < n; i += 2) {
        double r = sqrt(-2.0 * log(unif(&s))), a = 2.0 * M_PI * unif(&s);
        x[i] = (float)(sigma * r * cos(a));
        if (i + 1 < n) x[i + 1] = (float)(sigma * r * sin(a));
    }
}

/* ---- ggml reference quantizers (quantize_row_q8_0_ref / q4_0_ref) ------- */

static void quant_q8_0(const float *x, uint8_t *out, size_t n)
{
    for (size_t b = 0; b < n / 32; b++, x += 32, out += 34) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
        uint16_t h = numfmt_f32_to_f16(d);
        memcpy(out, &h, 2);
        for (int j = 0; j < 32; j++) out[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
    }
}

static void quant_q4_0(const float *x, uint8_t *out, size_t n)
{
    for (size_t b = 0; b < n / 32; b++, x += 32, out += 18) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 32; j++)
            if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); max = x[j]; }
        const float d = max / -8.0f, id = d ? 1.0f / d : 0.0f;
        uint16_t h = numfmt_f32_to_f16(d);
        memcpy(out, &h, 2);
        for (int j = 0; j < 16; j++) {
            int q0 = (int)(int8_t)(x[j] * id + 8.5f);
            int q1 = (int)(int8_t)(x[j + 16] * id + 8.5f);
            q0 = q0 < 15 ? q0 : 15;
            q1 = q1 < 15 ? q1 : 15;
            out[2 + j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

/* ---- tensors ------------------------------------------------------------- */

struct gen {
    uint64_t seed;  /* per tensor */
    int type;
    int64_t ne0, ne1;
    int ones;       /* norm weights */
    float *tmp;     /* (ne0) f32 scratch for one row, shared */
};

static int fill(void *ctx, void *dst, size_t size)
{
    struct gen *g = ctx;
    size_t row = ggml_row_size(g->type, g->ne0);
    KVT_ASSERT(row * (size_t)g->ne1 == size);
    for (int64_t r = 0; r < g->ne1; r++) {
        float *x = g->tmp;
        if (g->ones) for (int64_t i = 0; i < g->ne0; i++) x[i] = 1.0f;
        else gauss_fill(g->seed ^ ((uint64_t)r * 0x2545f4914f6cdd1dULL), 0.02f, x, (size_t)g->ne0);
        uint8_t *o = (uint8_t *)dst + (size_t)r * row;
        switch (g->type) {
        case GGML_TYPE_F32: memcpy(o, x, row); break;
        case GGML_TYPE_F16:
            for (int64_t i = 0; i < g->ne0; i++) {
                uint16_t h = numfmt_f32_to_f16(x[i]);
                memcpy(o + 2 * i, &h, 2);
            }
            break;
        case GGML_TYPE_BF16:
            for (int64_t i = 0; i < g->ne0; i++) {
                uint16_t h = numfmt_f32_to_bf16(x[i]);
                memcpy(o + 2 * i, &h, 2);
            }
            break;
        case GGML_TYPE_Q8_0: quant_q8_0(x, o, (size_t)g->ne0); break;
        case GGML_TYPE_Q4_0: quant_q4_0(x, o, (size_t)g->ne0); break;
        default: KVT_ASSERT(0);
        }
    }
    return 0;
}

#define MAX_TENSORS 1024
static struct gen gens[MAX_TENSORS];
static int n_gens;

static void add(gguf_w *w, const char *name, int type, int64_t ne0, int64_t ne1,
                int ones, uint64_t seed, float *tmp)
{
    if (n_gens == MAX_TENSORS) die("%s: too many tensors", name);
    if ((type == GGML_TYPE_Q8_0 || type == GGML_TYPE_Q4_0) && ne0 % 32 != 0)
        type = GGML_TYPE_F16; /* llama.cpp's fall-back */
    struct gen *g = &gens[n_gens];
    *g = (struct gen){ seed ^ ((uint64_t)(n_gens + 1) * 0x9e3779b97f4a7c15ULL),
                       type, ne0, ne1, ones, tmp };
    uint64_t s = g->seed;
    g->seed = splitmix64(&s);
    n_gens++;
    const int64_t ne[2] = { ne0, ne1 };
    size_t size = ggml_row_size(type, ne0) * (size_t)ne1;
    int rc = gguf_w_add_tensor_fn(w, name, type, ne1 > 1 ? 2 : 1, ne, size, fill, g);
    if (rc < 0) die("%s: cannot add tensor", name);
}

/* ---- vocabulary ---------------------------------------------------------- */

/* Piece number K (0-based) after the specials and byte pieces. */
static void filler_piece(int k, char *out, size_t cap)
{
    static const char letters[] = "abcdefghijklmnopqrstuvwxyz";
    if (k < 94) { snprintf(out, cap, "%c", 0x21 + k); return; }
    k -= 94;
    if (k < 1) { snprintf(out, cap, "\xe2\x96\x81"); return; }
    k -= 1;
    if (k < 26) { snprintf(out, cap, "\xe2\x96\x81%c", letters[k]); return; }
    k -= 26;
    int len = 2, space = 0;
    for (;;) {
        int64_t n = 1;
        for (int i = 0; i < len; i++) n *= 26;
        if (k < n) {
            char *p = out;
            if (space) p += snprintf(p, cap, "\xe2\x96\x81");
            for (int i = len - 1; i >= 0; i--) {
                p[i] = letters[k % 26];
                k /= 26;
            }
            p[len] = '\0';
            return;
        }
        k -= (int)n;
        if (space) len++;
        space = !space;
    }
}

static void add_vocab(gguf_w *w, int n_vocab)
{
    char **tok = calloc((size_t)n_vocab, sizeof *tok);
    float *score = malloc((size_t)n_vocab * sizeof *score);
    int32_t *type = malloc((size_t)n_vocab * sizeof *type);
    if (!tok || !score || !type) die("%s", "out of memory");
    char buf[32];
    for (int i = 0; i < n_vocab; i++) {
        if (i == 0) snprintf(buf, sizeof buf, "<unk>");
        else if (i == 1) snprintf(buf, sizeof buf, "<s>");
        else if (i == 2) snprintf(buf, sizeof buf, "</s>");
        else if (i < 259) snprintf(buf, sizeof buf, "<0x%02X>", i - 3);
        else filler_piece(i - 259, buf, sizeof buf);
        tok[i] = strdup(buf);
        if (!tok[i]) die("%s", "out of memory");
        score[i] = i < 259 ? 0.0f : -(float)(i - 259);
        type[i] = i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1;
    }
    int rc = 0;
    if (rc >= 0) rc = gguf_w_set_str(w, "tokenizer.ggml.model", "llama");
    if (rc >= 0) rc = gguf_w_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)tok, NULL, (uint64_t)n_vocab);
    if (rc >= 0) rc = gguf_w_set_arr(w, "tokenizer.ggml.scores", GGUF_VT_F32, score, (uint64_t)n_vocab);
    if (rc >= 0) rc = gguf_w_set_arr(w, "tokenizer.ggml.token_type", GGUF_VT_I32, type, (uint64_t)n_vocab);
    if (rc >= 0) rc = gguf_w_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    if (rc >= 0) rc = gguf_w_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    if (rc >= 0) rc = gguf_w_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    if (rc >= 0) rc = gguf_w_set_bool(w, "tokenizer.ggml.add_bos_token", 1);
    if (rc < 0) die("%s", "cannot build the vocabulary metadata");
    for (int i = 0; i < n_vocab; i++) free(tok[i]);
    free(tok);
    free(score);
    free(type);
}

static void usage(void)
{
    fprintf(stderr, "usage: gen_model OUT.gguf --shape tinyllama|tiny-kjv|llama3-8b-layer\n"
                    "                 --type f32|f16|bf16|q8_0|q4_0 [--layers N] [--seed S]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *out = NULL, *shape_name = NULL, *type_name = "f32";
    int layers = -1;
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--shape") && i + 1 < argc) shape_name = argv[++i];
        else if (!strcmp(a, "--type") && i + 1 < argc) type_name = argv[++i];
        else if (!strcmp(a, "--layers") && i + 1 < argc) layers = atoi(argv[++i]);
        else if (!strcmp(a, "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 10);
        else if (a[0] == '-') usage();
        else if (!out) out = a;
        else usage();
    }
    if (!out || !shape_name) usage();
    const struct shape *sh = NULL;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        if (!strcmp(shapes[i].name, shape_name)) sh = &shapes[i];
    if (!sh) die("--shape: unknown shape '%s'", shape_name);
    static const struct { const char *n; int t; } types[] = {
        { "f32", GGML_TYPE_F32 }, { "f16", GGML_TYPE_F16 }, { "bf16", GGML_TYPE_BF16 },
        { "q8_0", GGML_TYPE_Q8_0 }, { "q4_0", GGML_TYPE_Q4_0 },
    };
    int type = -1;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (!strcmp(types[i].n, type_name)) type = types[i].t;
    if (type < 0) die("--type: unknown type '%s'", type_name);
    int n_layer = layers > 0 ? layers : sh->n_layer;
    if (layers == 0 || layers > 512) die("--layers: '%s' (1..512)", "out of range");

    const int E = sh->dim, F = sh->n_ff, KV = sh->dim / sh->n_head * sh->n_head_kv;
    float *tmp = malloc((size_t)(E > F ? E : F) * sizeof *tmp);
    gguf_w *w;
    if (!tmp || gguf_w_init(&w) < 0) die("%s", "out of memory");
    int rc = 0;
    char name[64];
    snprintf(name, sizeof name, "random %s", sh->name);
    if (rc >= 0) rc = gguf_w_set_str(w, "general.architecture", "llama");
    if (rc >= 0) rc = gguf_w_set_str(w, "general.name", name);
    if (rc >= 0) rc = gguf_w_set_u32(w, "general.alignment", 32);
    if (rc >= 0) rc = gguf_w_set_u32(w, "llama.context_length", (uint32_t)sh->n_ctx);
    if (rc >= 0) rc = gguf_w_set_u32(w, "llama.embedding_length", (uint32_t)E);
    if (rc >= 0) rc = gguf_w_set_u32(w, "llama.block_count", (uint32_t)n_layer);
    if (rc >= 0) rc = gguf_w_set_u32(w, "llama.feed_forward_length", (uint32_t)F);
    if (rc >= 0) rc = gguf_w_set_u32(w, "llama.attention.head_count", (uint32_t)sh->n_head);
    if (rc >= 0) rc = gguf_w_set_u32(w, "llama.attention.head_count_kv", (uint32_t)sh->n_head_kv);
    if (rc >= 0) rc = gguf_w_set_u32(w, "llama.rope.dimension_count", (uint32_t)(E / sh->n_head));
    if (rc >= 0) rc = gguf_w_set_f32(w, "llama.rope.freq_base", (float)sh->freq_base);
    if (rc >= 0) rc = gguf_w_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    if (rc < 0) die("%s", "cannot build the metadata");
    add_vocab(w, sh->n_vocab);

    add(w, "token_embd.weight", type, E, sh->n_vocab, 0, seed, tmp);
    add(w, "output_norm.weight", GGML_TYPE_F32, E, 1, 1, seed, tmp);
    if (!sh->tied) add(w, "output.weight", type, E, sh->n_vocab, 0, seed, tmp);
    for (int il = 0; il < n_layer; il++) {
        static const char *const nm[] = { "attn_norm", "ffn_norm", "attn_q", "attn_k", "attn_v",
                                           "attn_output", "ffn_gate", "ffn_up", "ffn_down" };
        const int64_t ne0[] = { E, E, E, E, E, E, E, E, F };
        const int64_t ne1[] = { 1, 1, E, KV, KV, E, F, F, E };
        for (int k = 0; k < 9; k++) {
            char tn[96];
            snprintf(tn, sizeof tn, "blk.%d.%s.weight", il, nm[k]);
            add(w, tn, k < 2 ? GGML_TYPE_F32 : type, ne0[k], ne1[k], k < 2, seed, tmp);
        }
    }
    rc = gguf_w_write(w, out);
    if (rc < 0) {
        fprintf(stderr, "gen_model: %s: %s\n", out, kvt_strerror(rc));
        return 1;
    }
    gguf_w_free(w);
    free(tmp);
    return 0;
}
