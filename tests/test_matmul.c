/* test_matmul.c - engine/matmul against the naive oracles of ref_quant.c:
 * bit-exact dequantization of every type, products
 * against a double-precision triple loop, real GGUF weights, the direct
 * bf16 GEMM (its error bound, its edges, and kvtile ppl of a BF16 copy of
 * tiny-kjv against the F32 original) and the int8 GEMMs of every set (the
 * error bound against an oracle that quantizes X the same way, the edges,
 * the same bits on every set), the int8
 * decode path (single tokens). The dequantization and product tests run
 * once per kernel set the host has (contexts made with that set, cpu.h),
 * the portable set last; test_sets runs two sets side by side. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../base/numfmt.h"
#include "../base/cpu.h"
#include "../engine/gguf.h"
#include "../engine/gguf_write.h"
#include "../engine/matmul.h"
#include "../engine/mm_kern.h"
#include "../engine/model.h"
#include "../engine/pool.h"
#include "../base/kvt.h"
#include "ref_quant.h"
#include "t.h"
#include "tproc.h"

static const int all_types[] = {
    GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16, GGML_TYPE_Q8_0,
    GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1,
    GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K, GGML_TYPE_Q2_K,
    GGML_TYPE_Q3_K, GGML_TYPE_IQ4_NL, GGML_TYPE_IQ4_XS,
};
#define N_TYPES ((int)(sizeof all_types / sizeof all_types[0]))

static uint32_t bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* Same float, NaNs counted equal to NaNs. */
static int same(float a, float b)
{
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    return bits(a) == bits(b);
}

/* The kernel choices under test (main: each set the host has). */
static struct mm_params prm;

/* mm_int8_gemm_used (INT8) or mm_bf16_gemm_used of a context made with
 * MP, for a product of TYPE, N_IN inputs, M rows. */
static int used(const struct mm_params *mp, int int8, int type, int64_t n_in, int m)
{
    pool *p;
    mm_ctx *c;
    KVT_ASSERT(pool_create(1, &p) == 0);
    KVT_ASSERT(mm_ctx_create(p, n_in, mp, &c) == 0);
    const int r = int8 ? mm_int8_gemm_used(c, type, n_in, m)
                       : mm_bf16_gemm_used(c, type, n_in, m);
    mm_ctx_free(c);
    pool_free(p);
    return r;
}

static void test_supported(void)
{
    for (int i = 0; i < N_TYPES; i++) T_CHECK(mm_type_supported(all_types[i]));
    T_CHECK(!mm_type_supported(GGML_TYPE_Q8_K));
    T_CHECK(!mm_type_supported(GGML_TYPE_IQ2_XXS));
    T_CHECK(!mm_type_supported(GGML_TYPE_TQ2_0));
    T_CHECK(!mm_type_supported(-1));
    T_CHECK(!mm_type_supported(GGML_TYPE_COUNT));
}

/* A random weight tensor of TYPE with N_OUT rows of N_IN; owns its data. */
typedef struct {
    gguf_tensor t;
    void *buf;
    float *deq; /* (n_out, n_in), oracle-dequantized */
} rand_w;

static void rand_w_make_scaled(rand_w *r, int type, int64_t n_in, int64_t n_out,
                               float scale, uint64_t *seed)
{
    int64_t nb = n_in * n_out / ref_block_elems(type);
    size_t size = (size_t)nb * (size_t)ref_block_bytes(type);
    r->buf = malloc(size);
    r->deq = malloc((size_t)(n_in * n_out) * sizeof(float));
    KVT_ASSERT(r->buf && r->deq);
    ref_random_blocks(type, r->buf, nb, scale, seed);
    KVT_ASSERT(ref_dequant(type, r->buf, r->deq, n_in * n_out) == 0);
    memset(&r->t, 0, sizeof r->t);
    r->t.name = "w";
    r->t.n_dims = 2;
    r->t.ne[0] = n_in;
    r->t.ne[1] = n_out;
    r->t.ne[2] = r->t.ne[3] = 1;
    r->t.type = type;
    r->t.data = r->buf;
    r->t.size = size;
}

static void rand_w_make(rand_w *r, int type, int64_t n_in, int64_t n_out,
                        uint64_t *seed)
{
    rand_w_make_scaled(r, type, n_in, n_out, 0.05f, seed);
}

static void rand_w_free(rand_w *r)
{
    free(r->buf);
    free(r->deq);
}

static void test_dequant_exact(void)
{
    uint64_t seed = 777;
    for (int ti = 0; ti < N_TYPES; ti++) {
        int type = all_types[ti];
        const int64_t n = 4 * 256;
        rand_w r;
        rand_w_make(&r, type, n, 1, &seed);
        float *got = malloc(n * sizeof(float));
        mm_dequant_on(prm.cpu_set, type, r.buf, got, n);
        int bad = 0;
        for (int64_t i = 0; i < n; i++) bad += !same(got[i], r.deq[i]);
        if (bad) fprintf(stderr, "  %s: %d of %d elements differ\n",
                         ggml_type_name(type), bad, (int)n);
        T_CHECK(bad == 0);
        /* The data must not be degenerate: many distinct values. */
        int distinct = 0;
        for (int64_t i = 1; i < n; i++) distinct += r.deq[i] != r.deq[i - 1];
        T_CHECK(distinct > n / 2);
        free(got);
        rand_w_free(&r);
    }
}

/* Extreme fp16 scales: near the largest half (65504: products far above
 * any half, still finite in f32), subnormal halves (1e-6), and both signs.
 * Dequantization must stay bit-exact, and the fused dot (single tokens)
 * must match the oracle's double-precision dot to f32 accumulation. */
static void test_dequant_extreme(void)
{
    pool *p;
    mm_ctx *c;
    T_CHECK(pool_create(2, &p) == 0);
    T_CHECK(mm_ctx_create(p, 512, &prm, &c) == 0);
    static const float scales[] = {65504.0f, 1e-6f, 3e-8f};
    uint64_t seed = 8080;
    for (int ti = 0; ti < N_TYPES; ti++)
        for (int si = 0; si < 3; si++) {
            const int type = all_types[ti];
            if (ref_block_elems(type) == 1) continue;
            const int64_t n_in = 512, n_out = 5;
            rand_w r;
            rand_w_make_scaled(&r, type, n_in, n_out, scales[si], &seed);
            float *got = malloc((size_t)(n_in * n_out) * sizeof(float));
            mm_dequant_on(prm.cpu_set, type, r.buf, got, n_in * n_out);
            int bad = 0, finite = 1;
            for (int64_t i = 0; i < n_in * n_out; i++) {
                bad += !same(got[i], r.deq[i]);
                finite &= isfinite(r.deq[i]) != 0;
            }
            float x[512], y[5], xd[512 / 32], xa[512 / 32];
            int8_t xq[512];
            for (int k = 0; k < n_in; k++) x[k] = ref_rand_f32(&seed);
            mm_matmul(c, &r.t, x, 1, y);
            /* int8 decode: against the oracle on the quantized X, and the
             * exact product within the int8 bound (see check_product_x) */
            const int ig = mm_int8_gemm_used(c, type, n_in, 1);
            ref_quant_x8(x, n_in, xq, xd, xa);
            for (int64_t o = 0; o < n_out; o++) {
                double sd = 0, sa = 0, sq = 0, eb = 0;
                for (int k = 0; k < n_in; k++) {
                    const double wv = r.deq[o * n_in + k];
                    sd += (double)x[k] * wv;
                    sa += fabs((double)x[k] * wv);
                    sq += (double)xd[k / 32] * xq[k] * wv;
                    eb += (double)xa[k / 32] / 254 * fabs(wv);
                }
                const double tol = 2e-6 * sqrt((double)n_in) * sa + 1e-37;
                if (!(fabs(y[o] - (ig ? sq : sd)) <= tol)) bad++;
                if (ig && !(fabs(y[o] - sd) <= eb * (1 + 1e-5) + tol)) bad++;
            }
            if (bad || !finite)
                fprintf(stderr, "  %s scale %g: %d bad%s\n", ggml_type_name(type),
                        scales[si], bad, finite ? "" : ", oracle not finite");
            T_CHECK(bad == 0);
            T_CHECK(finite);
            free(got);
            rand_w_free(&r);
        }
    mm_ctx_free(c);
    pool_free(p);
}

static void test_get_row(void)
{
    uint64_t seed = 4242;
    const int types[] = {GGML_TYPE_F16, GGML_TYPE_Q4_0, GGML_TYPE_Q6_K};
    for (int ti = 0; ti < 3; ti++) {
        rand_w r;
        rand_w_make(&r, types[ti], 512, 7, &seed);
        float row[512];
        int bad = 0;
        for (int64_t i = 0; i < 7; i++) {
            mm_get_row(&r.t, i, row);
            for (int k = 0; k < 512; k++) bad += !same(row[k], r.deq[i * 512 + k]);
        }
        T_CHECK(bad == 0);
        rand_w_free(&r);
    }
}

/* Y = X . W^T with mm_matmul vs the double-precision triple loop over the
 * oracle weights; error bounded relative to sum |x w| per output.
 * f32 paths: f32 accumulation, 2e-6 sqrt(n_in). The direct bf16 path
 * (mm_bf16_gemm_used) is checked twice: against the oracle fed with X (and
 * F16 weights) rounded to bf16 by ref_f32_to_bf16, to the same f32
 * accumulation tolerance, so the rounding must be exactly RNE and every
 * pair in its place; and against the exact product, to the documented
 * bound 2^-8 sum|x w| (2^-7 for F16 weights, rounded once more). The
 * int8 path (mm_int8_gemm_used) likewise: against the oracle fed with X
 * quantized by ref_quant_x8, to the f32 tolerance, and against the exact
 * product, to its bound sum over blocks of amax(x)/254 * sum |w|. */
static int check_product_x(mm_ctx *c, int type, int64_t n_in, int64_t n_out,
                           int m, const float *x, uint64_t *seed)
{
    rand_w r;
    rand_w_make(&r, type, n_in, n_out, seed);
    float *y = malloc((size_t)(m * n_out) * sizeof(float));
    for (int64_t i = 0; i < m * n_out; i++) y[i] = NAN; /* every y is written */
    mm_matmul(c, &r.t, x, m, y);
    const int bg = mm_bf16_gemm_used(c, type, n_in, m);
    const int ig = mm_int8_gemm_used(c, type, n_in, m);
    int8_t *xq = NULL;
    float *xd = NULL, *xa = NULL;
    if (ig) {
        xq = malloc((size_t)(m * n_in));
        xd = malloc((size_t)(m * n_in / 32) * sizeof(float));
        xa = malloc((size_t)(m * n_in / 32) * sizeof(float));
        KVT_ASSERT(xq && xd && xa);
        ref_quant_x8(x, m * n_in, xq, xd, xa);
    }
    const double tol = 2e-6 * sqrt((double)n_in);
    const double bound = type == GGML_TYPE_F16 ? 0x1p-7 : 0x1p-8;
    int bad = 0;
    double worst = 0;
    for (int i = 0; i < m; i++)
        for (int64_t o = 0; o < n_out; o++) {
            double s = 0, sa = 0, sb = 0, eb = 0;
            for (int64_t k = 0; k < n_in; k++) {
                const float xv = x[i * n_in + k], wv = r.deq[o * n_in + k];
                double p = (double)xv * wv;
                s += p;
                sa += fabs(p);
                if (bg)
                    sb += (double)ref_bf16_to_f32(ref_f32_to_bf16(xv)) *
                          ref_bf16_to_f32(ref_f32_to_bf16(wv));
                if (ig) {
                    const int64_t b = (i * n_in + k) / 32;
                    sb += (double)xd[b] * xq[i * n_in + k] * wv;
                    eb += (double)xa[b] / 254 * fabs(wv);
                }
            }
            const double got = y[i * n_out + o];
            double err = fabs(got - s) / (sa + 1e-30);
            if (bg) {
                if (!(err <= bound + tol)) bad++;
                err = fabs(got - sb) / (sa + 1e-30);
            }
            if (ig) {
                if (!(fabs(got - s) <= eb * (1 + 1e-5) + tol * sa)) bad++;
                err = fabs(got - sb) / (sa + 1e-30);
            }
            if (!(err <= tol)) bad++;
            if (err > worst || isnan(err)) worst = err;
        }
    if (bad) fprintf(stderr, "  %s n_in %d n_out %d m %d%s: %d bad, worst rel %g\n",
                     ggml_type_name(type), (int)n_in, (int)n_out, m,
                     bg ? " (bf16 gemm)" : ig ? " (int8 gemm)" : "", bad, worst);
    free(xq);
    free(xd);
    free(xa);
    free(y);
    rand_w_free(&r);
    return bad;
}

/* check_product_x on X uniform in [-1, 1). */
static int check_product(mm_ctx *c, int type, int64_t n_in, int64_t n_out,
                         int m, uint64_t *seed)
{
    float *x = malloc((size_t)(m * n_in) * sizeof(float));
    KVT_ASSERT(x != NULL);
    for (int64_t i = 0; i < m * n_in; i++) x[i] = ref_rand_f32(seed);
    const int bad = check_product_x(c, type, n_in, n_out, m, x, seed);
    free(x);
    return bad;
}

static void test_matmul_types(void)
{
    pool *p;
    mm_ctx *c;
    T_CHECK(pool_create(3, &p) == 0);
    T_CHECK(mm_ctx_create(p, 1024, &prm, &c) == 0);
    uint64_t seed = 99;
    const int ms[] = {1, 3, 8, 9, 64}; /* fused up to 8, sgemm from 9 */
    for (int ti = 0; ti < N_TYPES; ti++)
        for (int mi = 0; mi < 5; mi++) {
            int type = all_types[ti];
            /* a whole number of 256-blocks, then a tail chunk for 32-blocks */
            T_CHECK(check_product(c, type, 256, 67, ms[mi], &seed) == 0);
            int64_t odd = ref_block_elems(type) == 256 ? 768
                        : ref_block_elems(type) == 32 ? 352 : 691;
            T_CHECK(check_product(c, type, odd, 37, ms[mi], &seed) == 0);
        }
    /* 688-like shapes for the float types, n_out not a multiple of 3 */
    T_CHECK(check_product(c, GGML_TYPE_F16, 688, 256, 64, &seed) == 0);
    T_CHECK(check_product(c, GGML_TYPE_F16, 256, 688, 3, &seed) == 0);
    T_CHECK(check_product(c, GGML_TYPE_BF16, 688, 100, 1, &seed) == 0);
    T_CHECK(check_product(c, GGML_TYPE_F32, 1024, 301, 65, &seed) == 0);
    T_CHECK(check_product(c, GGML_TYPE_Q4_K, 1024, 301, 65, &seed) == 0);
    mm_ctx_free(c);
    pool_free(p);
}

/* One thread and a single output row: the edges of the task split. */
static void test_matmul_edges(void)
{
    pool *p;
    mm_ctx *c;
    T_CHECK(pool_create(1, &p) == 0);
    T_CHECK(mm_ctx_create(p, 256, &prm, &c) == 0);
    uint64_t seed = 5;
    T_CHECK(check_product(c, GGML_TYPE_Q8_0, 256, 1, 1, &seed) == 0);
    T_CHECK(check_product(c, GGML_TYPE_Q8_0, 256, 1, 2, &seed) == 0);
    T_CHECK(check_product(c, GGML_TYPE_Q6_K, 256, 129, 2, &seed) == 0);
    T_CHECK(check_product(c, GGML_TYPE_F32, 1, 3, 2, &seed) == 0);
    mm_ctx_free(c);
    pool_free(p);
    mm_ctx_free(NULL);
}

/* The direct bf16 GEMM at its edges: W row groups of 12 with a tail, X
 * blocks of 32 and passes of 256 rows with tails, row lengths with a tail
 * of the 32-element conversion, odd n_in (falls back to sgemm), one and
 * three threads; then the switch: off gives the f32 path. */
static void test_bf16_gemm(void)
{
    if (!used(&prm, 0, GGML_TYPE_BF16, 256, 64))
        T_SKIP("this set or CPU has no direct bf16 GEMM (avx512 + AVX512-BF16)");
    T_CHECK(!used(&prm, 0, GGML_TYPE_BF16, 256, 8));
    T_CHECK(!used(&prm, 0, GGML_TYPE_BF16, 255, 64));
    T_CHECK(!used(&prm, 0, GGML_TYPE_F32, 256, 64));
    T_CHECK(!used(&prm, 0, GGML_TYPE_Q8_0, 256, 64));
    uint64_t seed = 2024;
    for (int nt = 1; nt <= 3; nt += 2) {
        pool *p;
        mm_ctx *c;
        T_CHECK(pool_create(nt, &p) == 0);
        T_CHECK(mm_ctx_create(p, 1100, &prm, &c) == 0);
        static const struct { int64_t n_in, n_out; int m; } sh[] = {
            {2, 1, 9}, {34, 13, 31}, {64, 12, 32}, {258, 25, 33},
            {688, 37, 300}, {1024, 100, 257}, {1100, 5, 512}, {63, 7, 40},
        };
        for (size_t i = 0; i < sizeof sh / sizeof sh[0]; i++) {
            T_CHECK(check_product(c, GGML_TYPE_BF16, sh[i].n_in, sh[i].n_out,
                                  sh[i].m, &seed) == 0);
            T_CHECK(check_product(c, GGML_TYPE_F16, sh[i].n_in, sh[i].n_out,
                                  sh[i].m, &seed) == 0);
        }
        mm_ctx_free(c);
        pool_free(p);
    }
    struct mm_params off = prm;
    off.bf16_gemm_off = 1;
    T_CHECK(!used(&off, 0, GGML_TYPE_BF16, 256, 64));
    T_CHECK(used(&off, 1, GGML_TYPE_Q8_0, 256, 64) == used(&prm, 1, GGML_TYPE_Q8_0, 256, 64));
    pool *p;
    mm_ctx *c;
    T_CHECK(pool_create(2, &p) == 0);
    T_CHECK(mm_ctx_create(p, 512, &off, &c) == 0);
    T_CHECK(check_product(c, GGML_TYPE_BF16, 512, 40, 70, &seed) == 0);
    mm_ctx_free(c);
    pool_free(p);
}

/* The int8 GEMM at its edges: W row groups of 6 with a tail, X blocks of
 * 32 and passes of 256 rows with tails, blocks of X that are all zero,
 * tiny, huge, or hold a single value (ties of the rounding), one and three
 * threads; then the switch: off gives the f32 path. */
/* Int8 decode (m <= 8, every quantized type, every kernel set): X
 * quantized per block of 32 once per product; check_product_x holds it to
 * the oracle on the quantized X and to the int8 bound. Special X blocks
 * as in test_int8_gemm, one kind per row; the switch turns it off. */
static void test_int8_decode(void)
{
    for (int m = 1; m <= 8; m++) {
        T_CHECK(used(&prm, 1, GGML_TYPE_Q4_0, 2048, m));
        T_CHECK(used(&prm, 1, GGML_TYPE_Q8_0, 2048, m));
        T_CHECK(used(&prm, 1, GGML_TYPE_Q4_K, 2048, m));
        T_CHECK(used(&prm, 1, GGML_TYPE_Q5_K, 2048, m));
        T_CHECK(used(&prm, 1, GGML_TYPE_Q6_K, 2048, m));
        T_CHECK(!used(&prm, 1, GGML_TYPE_F16, 2048, m));
        T_CHECK(!used(&prm, 1, GGML_TYPE_BF16, 2048, m));
        T_CHECK(!used(&prm, 1, GGML_TYPE_F32, 2048, m));
    }
    pool *p;
    mm_ctx *c;
    T_CHECK(pool_create(2, &p) == 0);
    T_CHECK(mm_ctx_create(p, 2208, &prm, &c) == 0);
    uint64_t seed = 4242;
    const int m = 6, n_in = 2048;
    float *x = malloc((size_t)(m * n_in) * sizeof(float));
    T_CHECK(x != NULL);
    for (int i = 0; i < m * n_in; i++) {
        const int b = i / n_in;
        const float u = ref_rand_f32(&seed);
        x[i] = b == 0 ? 0.0f : b == 1 ? 1e-30f * u : b == 2 ? 1e30f * u
             : b == 3 ? (i % 4 == 0 ? 127.0f : i % 4 == 1 ? 2.5f : i % 4 == 2 ? -0.5f : 1.5f)
             : b == 4 ? (i % 32 ? 0.01f * u : 3.0f)
             : u;
    }
    for (int ti = 0; ti < N_TYPES; ti++) {
        if (ref_block_elems(all_types[ti]) == 1) continue;
        for (int mm = 1; mm <= m; mm += 5) /* 1 row; all 6 kinds */
            T_CHECK(check_product_x(c, all_types[ti], n_in, 19, mm, x, &seed) == 0);
        T_CHECK(check_product(c, all_types[ti], n_in, 67, 1, &seed) == 0);
    }
    /* 69 blocks of 32: the per-32 fused dots' steps of 8 blocks (Q4_0's
     * scales gathered 8 at a time), then a tail of 5 blocks */
    T_CHECK(check_product(c, GGML_TYPE_Q4_0, 2208, 21, 1, &seed) == 0);
    T_CHECK(check_product(c, GGML_TYPE_Q4_0, 2208, 9, 3, &seed) == 0);
    T_CHECK(check_product(c, GGML_TYPE_Q8_0, 2208, 21, 1, &seed) == 0);
    T_CHECK(check_product(c, GGML_TYPE_IQ4_NL, 2208, 9, 2, &seed) == 0);
    free(x);
    mm_ctx_free(c);
    struct mm_params off = prm;
    off.int8_gemm_off = 1;
    T_CHECK(mm_ctx_create(p, 512, &off, &c) == 0);
    T_CHECK(!mm_int8_gemm_used(c, GGML_TYPE_Q4_0, 2048, 1));
    T_CHECK(check_product(c, GGML_TYPE_Q4_0, 512, 40, 1, &seed) == 0);
    mm_ctx_free(c);
    pool_free(p);
}

static void test_int8_gemm(void)
{
    if (!used(&prm, 1, GGML_TYPE_Q8_0, 256, 64))
        T_SKIP("this context has no int8 GEMM");
    T_CHECK(used(&prm, 1, GGML_TYPE_Q4_0, 256, 9));
    T_CHECK(used(&prm, 1, GGML_TYPE_Q4_K, 256, 9));
    T_CHECK(used(&prm, 1, GGML_TYPE_IQ4_NL, 32, 9));
    T_CHECK(used(&prm, 1, GGML_TYPE_IQ4_XS, 256, 9));
    T_CHECK(used(&prm, 1, GGML_TYPE_Q2_K, 256, 9));
    T_CHECK(used(&prm, 1, GGML_TYPE_Q3_K, 256, 9));
    T_CHECK(used(&prm, 1, GGML_TYPE_Q6_K, 256, 64));
    T_CHECK(used(&prm, 1, GGML_TYPE_Q5_K, 256, 64));
    T_CHECK(!used(&prm, 1, GGML_TYPE_Q5_0, 256, 64));
    T_CHECK(!used(&prm, 1, GGML_TYPE_F32, 256, 64));
    T_CHECK(!used(&prm, 1, GGML_TYPE_BF16, 256, 64));
    static const int types[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q4_K,
                                GGML_TYPE_IQ4_NL, GGML_TYPE_IQ4_XS, GGML_TYPE_Q2_K,
                                GGML_TYPE_Q3_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K};
    const int n_types = (int)(sizeof types / sizeof types[0]);
    uint64_t seed = 31337;
    for (int nt = 1; nt <= 3; nt += 2) {
        pool *p;
        mm_ctx *c;
        T_CHECK(pool_create(nt, &p) == 0);
        T_CHECK(mm_ctx_create(p, 1100, &prm, &c) == 0);
        static const struct { int64_t n_in, n_out; int m; } sh[] = {
            {32, 1, 9}, {64, 5, 31}, {96, 6, 32}, {256, 13, 33},
            {672, 37, 300}, {1024, 100, 257}, {1088, 7, 512},
        };
        for (size_t i = 0; i < sizeof sh / sizeof sh[0]; i++)
            for (int ti = 0; ti < n_types; ti++) {
                if (sh[i].n_in % ref_block_elems(types[ti])) continue;
                T_CHECK(check_product(c, types[ti], sh[i].n_in, sh[i].n_out,
                                      sh[i].m, &seed) == 0);
            }
        mm_ctx_free(c);
        pool_free(p);
    }
    /* Special blocks: zeros, 1e-30, 1e30-ish, exact ties (amax 127, so
     * x * id = x: 2.5 -> 2, -0.5 -> 0, 1.5 -> 2), one outlier. */
    pool *p;
    mm_ctx *c;
    T_CHECK(pool_create(2, &p) == 0);
    T_CHECK(mm_ctx_create(p, 512, &prm, &c) == 0);
    const int m = 40, n_in = 512;
    float *x = malloc((size_t)(m * n_in) * sizeof(float));
    T_CHECK(x != NULL);
    for (int i = 0; i < m * n_in; i++) {
        /* kind of block: one kind per row in rows 0-5, mixed after */
        const int row = i / n_in, b = row < 6 ? row : (row + i / 32) % 6;
        const float u = ref_rand_f32(&seed);
        x[i] = b == 0 ? 0.0f : b == 1 ? 1e-30f * u : b == 2 ? 1e30f * u
             : b == 3 ? (i % 4 == 0 ? 127.0f : i % 4 == 1 ? 2.5f : i % 4 == 2 ? -0.5f : 1.5f)
             : b == 4 ? (i % 32 ? 0.01f * u : 3.0f)
             : u;
    }
    for (int ti = 0; ti < n_types; ti++)
        T_CHECK(check_product_x(c, types[ti], n_in, 45, m, x, &seed) == 0);
    free(x);
    mm_ctx_free(c);
    struct mm_params off = prm;
    off.int8_gemm_off = 1;
    T_CHECK(mm_ctx_create(p, 512, &off, &c) == 0);
    T_CHECK(!mm_int8_gemm_used(c, GGML_TYPE_Q8_0, 256, 64));
    T_CHECK(check_product(c, GGML_TYPE_Q8_0, 512, 40, 70, &seed) == 0);
    mm_ctx_free(c);
    pool_free(p);
}

/* The int8 GEMMs of all sets take the same f32 steps in the same order
 * (mm_gemm512.c, mm_gemm2.c, mm_portable.c): every set the host has gives
 * the bits of the first (the best), for each type, with row-group and
 * X-row tails, 1 and 3 threads, and m past one pass of X (avx2 and
 * portable: 512 rows; avx512: 256). test_int8_gemm holds each set to the
 * double-precision oracle. */
static void test_int8_gemm_sets(void)
{
    static const int types[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q4_K,
                                GGML_TYPE_IQ4_NL, GGML_TYPE_IQ4_XS, GGML_TYPE_Q2_K,
                                GGML_TYPE_Q3_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K};
    static const struct { int64_t n_in, n_out; int m; } sh[] = {
        {256, 13, 9}, {512, 37, 70}, {768, 19, 600},
    };
    int n_sets = 0;
    for (int s = CPU_SET_PORTABLE; s < CPU_SET_COUNT; s++) n_sets += cpu_set_supported(s);
    if (n_sets < 2) T_SKIP("one kernel set on this host");
    uint64_t seed = 8088;
    for (size_t k = 0; k < sizeof sh / sizeof sh[0]; k++)
        for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
            const int64_t n_in = sh[k].n_in, n_out = sh[k].n_out;
            const int m = sh[k].m;
            rand_w r;
            rand_w_make(&r, types[ti], n_in, n_out, &seed);
            float *x = malloc((size_t)(m * n_in) * sizeof(float));
            float *y0 = malloc((size_t)(m * n_out) * sizeof(float));
            float *y = malloc((size_t)(m * n_out) * sizeof(float));
            T_CHECK(x && y0 && y);
            for (int64_t i = 0; i < m * n_in; i++)
                x[i] = ref_rand_f32(&seed) * (i % 97 == 0 ? 40.0f : 1.0f);
            int first = 1, bad = 0;
            for (int s = CPU_SET_COUNT - 1; s >= CPU_SET_PORTABLE; s--) {
                if (!cpu_set_supported(s)) continue;
                pool *p;
                mm_ctx *c;
                const struct mm_params mp = {.cpu_set = s};
                T_CHECK(pool_create(s == CPU_SET_AVX2 ? 3 : 1, &p) == 0);
                T_CHECK(mm_ctx_create(p, n_in, &mp, &c) == 0);
                T_CHECK(mm_int8_gemm_used(c, types[ti], n_in, m));
                mm_matmul(c, &r.t, x, m, first ? y0 : y);
                if (!first)
                    for (int64_t i = 0; i < m * n_out; i++) bad += !same(y[i], y0[i]);
                if (bad) fprintf(stderr, "  %s n_in %d m %d: set %s differs\n",
                                 ggml_type_name(types[ti]), (int)n_in, m, cpu_set_name(s));
                first = 0;
                mm_ctx_free(c);
                pool_free(p);
            }
            T_CHECK(bad == 0);
            free(x);
            free(y0);
            free(y);
            rand_w_free(&r);
        }
}

/* Fill for gguf_w_add_tensor_fn: the F32 tensor CTX rounded to bf16. */
static int fill_bf16(void *ctx, void *dst, size_t size)
{
    const gguf_tensor *t = ctx;
    const float *f = t->data;
    uint16_t *h = dst;
    KVT_ASSERT(size == t->size / 2);
    for (size_t i = 0; i < size / 2; i++) h[i] = numfmt_f32_to_bf16(f[i]);
    return 0;
}

/* Fill for gguf_w_add_tensor_fn: the F32 tensor CTX as IQ4_NL blocks. */
static int fill_iq4_nl(void *ctx, void *dst, size_t size)
{
    const gguf_tensor *t = ctx;
    const int64_t n = t->ne[0] * t->ne[1];
    KVT_ASSERT(size == (size_t)(n / 32) * 18);
    ref_quantize_iq4_nl(t->data, n, dst);
    return 0;
}

/* Fill: the F32 tensor CTX rounded to f16. */
static int fill_f16(void *ctx, void *dst, size_t size)
{
    const gguf_tensor *t = ctx;
    const float *f = t->data;
    uint16_t *h = dst;
    KVT_ASSERT(size == t->size / 2);
    for (size_t i = 0; i < size / 2; i++) h[i] = ref_f32_to_f16(f[i]);
    return 0;
}

/* models/tiny-kjv-iq4_nl.gguf as it was made: tiny-kjv-f32 with every
 * 2-D weight whose rows are a multiple of 32 quantized to IQ4_NL by
 * ref_quantize_iq4_nl, ffn_down (688 columns) rounded to F16, norms F32,
 * general.file_type 25 (llama.cpp's MOSTLY_IQ4_NL). Written to PATH;
 * returns the number of IQ4_NL tensors or < 0. */
static int make_iq4_nl_model(const char *path)
{
    char err[256];
    gguf *g;
    int rc = gguf_open(T_MODEL("tiny-kjv-f32.gguf"), &g, err, sizeof err);
    if (rc < 0) return rc;
    gguf_w *w;
    if ((rc = gguf_w_init(&w)) < 0) { gguf_close(g); return rc; }
    int n_nl = 0;
    if ((rc = gguf_w_copy_from(w, g)) == 0)
        rc = gguf_w_set_u32(w, "general.file_type", 25);
    for (int i = 0; rc == 0 && i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        if (t->type != GGML_TYPE_F32 || t->n_dims != 2) continue;
        if (t->ne[0] % 32 == 0) {
            rc = gguf_w_add_tensor_fn(w, t->name, GGML_TYPE_IQ4_NL, 2, t->ne,
                                      t->size / 4 / 32 * 18, fill_iq4_nl, (void *)t);
            n_nl++;
        } else {
            rc = gguf_w_add_tensor_fn(w, t->name, GGML_TYPE_F16, 2, t->ne,
                                      t->size / 2, fill_f16, (void *)t);
        }
    }
    if (rc == 0) rc = gguf_w_write(w, path);
    gguf_w_free(w);
    gguf_close(g);
    return rc < 0 ? rc : n_nl;
}

/* Perplexity of kvtile ppl on PATH over the first 64 windows of 256. */
static double ppl_of(const char *path)
{
    char cmd[512], out[4096], err[2048];
    snprintf(cmd, sizeof cmd, "ppl %s -f tests/data/kjv-nt.txt -c 256 --chunks 64 "
             "--kv-store ram --json --quiet", path);
    int rc = t_run(cmd, out, sizeof out, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "  kvtile %s: exit %d: %s\n", cmd, rc, err);
        return NAN;
    }
    return t_json_num(out, "ppl");
}

/* End to end: every 2-D weight of tiny-kjv rounded to BF16 (what a
 * llama.cpp BF16 conversion does); kvtile ppl must stay within 0.5% of
 * the F32 model's, with the direct bf16 GEMM doing the prompt products.
 * The F16 model (F16 weights through the same path) within 0.2%. */
static void test_bf16_ppl(void)
{
    char err[256], dir[256], path[300];
    gguf *g;
    T_REQUIRE(gguf_open(T_MODEL("tiny-kjv-f32.gguf"), &g, err, sizeof err) == 0,
              "models/tiny-kjv-f32.gguf not readable");
    T_CHECK(t_tmpdir(dir, sizeof dir) != NULL);
    snprintf(path, sizeof path, "%s/tiny-kjv-bf16.gguf", dir);
    gguf_w *w;
    T_CHECK(gguf_w_init(&w) == 0);
    T_CHECK(gguf_w_copy_from(w, g) == 0);
    int n_bf16 = 0;
    for (int i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        if (t->type != GGML_TYPE_F32 || t->n_dims != 2) continue;
        T_CHECK(gguf_w_add_tensor_fn(w, t->name, GGML_TYPE_BF16, 2, t->ne,
                                     t->size / 2, fill_bf16, (void *)t) == 0);
        n_bf16++;
    }
    T_CHECK(n_bf16 >= 7);
    T_CHECK(gguf_w_write(w, path) == 0);
    gguf_w_free(w);
    gguf_close(g);
    const double p32 = ppl_of(T_MODEL("tiny-kjv-f32.gguf"));
    const double pbf = ppl_of(path);
    const double p16 = ppl_of(T_MODEL("tiny-kjv-f16.gguf"));
    fprintf(stderr, "  ppl (64 x 256): f32 %.5f, bf16 %.5f (%+.4f%%), f16 %.5f (%+.4f%%)%s\n",
            p32, pbf, 100 * (pbf / p32 - 1), p16, 100 * (p16 / p32 - 1),
            used(&prm, 0, GGML_TYPE_BF16, 256, 256) ? ", direct bf16 GEMM" : "");
    T_CHECK(fabs(pbf / p32 - 1) < 0.005);
    T_CHECK(fabs(p16 / p32 - 1) < 0.002);
    remove(path);
    rmdir(dir);
}

/* The shipped IQ4_NL model is exactly what make_iq4_nl_model writes
 * (KVT_IQ4NL_OUT=PATH writes it there instead of a temporary file), and
 * scores within 1% of the F32 model on 64 windows (its whole-text
 * reference from llama.cpp is checked in test_parity.c). */
static void test_iq4_nl_model(void)
{
    char dir[256], path[300];
    const char *keep = getenv("KVT_IQ4NL_OUT");
    if (access(T_MODEL("tiny-kjv-f32.gguf"), R_OK) != 0)
        T_SKIP("models/tiny-kjv-f32.gguf not readable");
    dir[0] = 0;
    if (keep) {
        snprintf(path, sizeof path, "%s", keep);
    } else {
        T_CHECK(t_tmpdir(dir, sizeof dir) != NULL);
        snprintf(path, sizeof path, "%s/tiny-kjv-iq4_nl.gguf", dir);
    }
    const int n_nl = make_iq4_nl_model(path);
    T_CHECK(n_nl == 26); /* 4 x (q, k, v, o, gate, up) + embedding + output */
    char cmd[700];
    snprintf(cmd, sizeof cmd, "cmp -s %s %s", path, T_MODEL("tiny-kjv-iq4_nl.gguf"));
    const int same_bytes = system(cmd) == 0;
    if (!same_bytes) fprintf(stderr, "  %s differs from the shipped tiny-kjv-iq4_nl.gguf\n", path);
    T_CHECK(same_bytes);
    const double p32 = ppl_of(T_MODEL("tiny-kjv-f32.gguf"));
    const double pnl = ppl_of(T_MODEL("tiny-kjv-iq4_nl.gguf"));
    fprintf(stderr, "  ppl (64 x 256): f32 %.5f, iq4_nl %.5f (%+.3f%%)%s\n", p32, pnl,
            100 * (pnl / p32 - 1),
            used(&prm, 1, GGML_TYPE_IQ4_NL, 256, 256) ? ", int8 GEMM" : "");
    T_CHECK(fabs(pnl / p32 - 1) < 0.01);
    if (!keep) {
        remove(path);
        rmdir(dir);
    }
}

/* Quantized real weights must dequantize close to the F32 original: a
 * wrong block layout gives errors of the order of the weights themselves.
 * Every tensor of every file is checked, against the F32 model and
 * bit-exactly against the oracle. */
static void test_real_weights(void)
{
    static const char *const files[] = {
        "tiny-kjv-f16.gguf", "tiny-kjv-q8_0.gguf", "tiny-kjv-q6_k.gguf",
        "tiny-kjv-q4_k_m.gguf", "tiny-kjv-q4_0.gguf", "tiny-kjv-q5_k_m.gguf",
        "tiny-kjv-q3_k_m.gguf", "tiny-kjv-q2_k.gguf", "tiny-kjv-iq4_xs.gguf",
        "tiny-kjv-iq4_nl.gguf",
    };
    char err[256];
    gguf *ref;
    T_REQUIRE(gguf_open(T_MODEL("tiny-kjv-f32.gguf"), &ref, err, sizeof err) == 0,
              "models/tiny-kjv-f32.gguf not readable");
    int seen[GGML_TYPE_COUNT] = {0};
    for (size_t fi = 0; fi < sizeof files / sizeof files[0]; fi++) {
        char path[128];
        snprintf(path, sizeof path, "models/%s", files[fi]);
        gguf *g;
        int rc = gguf_open(path, &g, err, sizeof err);
        T_CHECK(rc >= 0);
        if (rc < 0) continue;
        for (int ti = 0; ti < gguf_n_tensors(g); ti++) {
            const gguf_tensor *w = gguf_tensor_at(g, ti);
            const gguf_tensor *w32 = gguf_find_tensor(ref, w->name);
            T_CHECK(w32 != NULL);
            if (!w32 || w->type == GGML_TYPE_F32) continue;
            T_CHECK(w32->type == GGML_TYPE_F32);
            T_CHECK(w->ne[0] == w32->ne[0] && w->ne[1] == w32->ne[1]);
            T_CHECK(mm_type_supported(w->type));
            if (!mm_type_supported(w->type)) continue;
            int64_t n = w->ne[0] * w->ne[1] * w->ne[2] * w->ne[3];
            float *d = malloc((size_t)n * sizeof(float));
            float *o = malloc((size_t)n * sizeof(float));
            mm_dequant_on(prm.cpu_set, w->type, w->data, d, n);
            T_CHECK(ref_dequant(w->type, w->data, o, n) == 0);
            const float *f = w32->data;
            double sum_err = 0, sum_abs = 0;
            int oracle_bad = 0;
            for (int64_t i = 0; i < n; i++) {
                sum_err += fabs((double)d[i] - f[i]);
                sum_abs += fabs((double)f[i]);
                oracle_bad += !same(d[i], o[i]);
            }
            double rel = sum_err / sum_abs;
            /* Measured: f16 2e-4, q8_0 6e-3, q6_K 2e-2, q4 ~0.09, q3_K
             * 0.16, q2_K 0.30; a layout bug gives ~1. */
            int t = w->type;
            double lim = t == GGML_TYPE_F16 || t == GGML_TYPE_BF16 ? 1e-3
                       : t == GGML_TYPE_Q8_0 ? 0.02
                       : t == GGML_TYPE_Q6_K || t == GGML_TYPE_Q5_K ? 0.05
                       : t == GGML_TYPE_Q2_K ? 0.4 : 0.2;
            if (getenv("KVT_TEST_VERBOSE") || !(rel <= lim))
                fprintf(stderr, "  %s %s (%s): mean|err|/mean|w| = %.3g (limit %g)\n",
                        files[fi], w->name, ggml_type_name(t), rel, lim);
            T_CHECK(rel <= lim);
            T_CHECK(oracle_bad == 0);
            seen[t]++;
            free(d);
            free(o);
        }
        gguf_close(g);
    }
    const int want[] = {GGML_TYPE_F16, GGML_TYPE_Q8_0, GGML_TYPE_Q6_K,
                        GGML_TYPE_Q4_K, GGML_TYPE_Q4_0, GGML_TYPE_Q5_K,
                        GGML_TYPE_Q3_K, GGML_TYPE_Q2_K, GGML_TYPE_IQ4_XS,
                        GGML_TYPE_IQ4_NL};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) T_CHECK(seen[want[i]] > 0);
    for (int t = 0; t < GGML_TYPE_COUNT; t++)
        if (seen[t] && getenv("KVT_TEST_VERBOSE"))
            fprintf(stderr, "  %d tensors of %s\n", seen[t], ggml_type_name(t));
    gguf_close(ref);
}

/* Kernel sets are per context: a portable context and one of the host's
 * best set work side by side, each keeping its own kernels (the portable
 * f32 row dot is the plain sequential sum, bit for bit); requests for a
 * set out of range fail, CPU_SET_DEFAULT means cpu_set_default(). */
static void test_sets(void)
{
    T_CHECK(cpu_set_resolve(CPU_SET_DEFAULT) == cpu_set_default());
    T_CHECK(cpu_set_supported(cpu_set_default()));
    T_CHECK(!cpu_set_supported(CPU_SET_DEFAULT));
    T_CHECK(cpu_set_resolve(CPU_SET_COUNT) == -EINVAL);
    T_CHECK(cpu_set_resolve(-1) == -EINVAL);
    T_CHECK(cpu_set_parse("avx2") == CPU_SET_AVX2);
    T_CHECK(cpu_set_parse("default") == -EINVAL);
    T_CHECK(cpu_set_parse("sse9") == -EINVAL);
    for (int s = CPU_SET_PORTABLE; s < CPU_SET_COUNT; s++)
        if (!cpu_set_supported(s)) T_CHECK(cpu_set_resolve(s) == KVT_EUNSUPP);
    int best = CPU_SET_PORTABLE;
    for (int s = CPU_SET_PORTABLE; s < CPU_SET_COUNT; s++)
        if (cpu_set_supported(s)) best = s;
    pool *p;
    mm_ctx *cp, *cb, *bad = NULL;
    T_CHECK(pool_create(2, &p) == 0);
    const struct mm_params pp = {.cpu_set = CPU_SET_PORTABLE}, pb = {.cpu_set = best};
    const struct mm_params pbad = {.cpu_set = CPU_SET_COUNT};
    T_CHECK(mm_ctx_create(p, 1000, &pbad, &bad) == -EINVAL);
    T_CHECK(bad == NULL);
    T_CHECK(mm_ctx_create(p, 1000, &pp, &cp) == 0);
    T_CHECK(mm_ctx_create(p, 1000, &pb, &cb) == 0);
    T_CHECK(mm_ctx_cpu_set(cp) == CPU_SET_PORTABLE);
    T_CHECK(mm_ctx_cpu_set(cb) == best);
    uint64_t seed = 1234;
    rand_w r;
    rand_w_make(&r, GGML_TYPE_F32, 1000, 9, &seed);
    float x[1000], yp[9], yb[9], yp2[9], yb2[9];
    for (int k = 0; k < 1000; k++) x[k] = ref_rand_f32(&seed);
    mm_matmul(cp, &r.t, x, 1, yp);
    mm_matmul(cb, &r.t, x, 1, yb);
    mm_matmul(cp, &r.t, x, 1, yp2);
    mm_matmul(cb, &r.t, x, 1, yb2);
    int bad_seq = 0;
    for (int o = 0; o < 9; o++) {
        float acc = 0;
        for (int k = 0; k < 1000; k++) acc += r.deq[o * 1000 + k] * x[k];
        bad_seq += bits(acc) != bits(yp[o]);
        T_CHECK(bits(yp[o]) == bits(yp2[o]));
        T_CHECK(bits(yb[o]) == bits(yb2[o]));
    }
    T_CHECK(bad_seq == 0);
    rand_w_free(&r);
    mm_ctx_free(cp);
    mm_ctx_free(cb);
    pool_free(p);
}

/* A model context takes its kernel set from model_ctx_params.mm: out of
 * range is refused, every set the host has is accepted. */
static void test_model_ctx_set(void)
{
    char err[256];
    model *m;
    T_REQUIRE(model_open(T_MODEL("tiny-kjv-f32.gguf"), &m, err, sizeof err) == 0,
              "models/tiny-kjv-f32.gguf not readable");
    struct model_ctx_params mp = {.n_batch = 4, .n_threads = 1, .tile_tokens = 64};
    model_ctx *mc = NULL;
    mp.mm.cpu_set = CPU_SET_COUNT;
    T_CHECK(model_ctx_create(m, &mp, &mc) == -EINVAL);
    for (int s = CPU_SET_DEFAULT; s < CPU_SET_COUNT; s++) {
        if (s != CPU_SET_DEFAULT && !cpu_set_supported(s)) continue;
        mp.mm.cpu_set = s;
        T_CHECK(model_ctx_create(m, &mp, &mc) == 0);
        model_ctx_free(mc);
    }
    model_close(m);
}

/* The set's vector X quantization for the int8 decode path (quant_x8)
 * gives the bits of the oracle ref_quant_x8: codes, d per block, and the
 * per-16 / per-32 sums d * sum(q). Blocks: random, ties of the rounding
 * (amax 127: id = 1), zero, tiny, huge, one value. */
static void test_quant_x8(void)
{
    const struct mm_kernels *k = prm.cpu_set == CPU_SET_AVX512 ? &mm_kernels_avx512
                               : prm.cpu_set == CPU_SET_AVX2 ? &mm_kernels_avx2
                               : &mm_kernels_portable;
    if (!k->quant_x8) {
        T_SKIP("this set quantizes X with matmul.c's scalar loop");
        return;
    }
    enum { NB = 12, N = 32 * NB };
    float x[N], xd[N / 16], xs[N / 16], xd32[NB], xs32[NB], rd[NB], ra[NB];
    int8_t q[N], rq[N];
    uint64_t seed = 77;
    for (int i = 0; i < N; i++) {
        const int b = i / 32;
        const float u = ref_rand_f32(&seed);
        x[i] = b == 1 ? (i % 32 == 0 ? 127.0f : (float)(i % 7) - 3.5f)
             : b == 2 ? 0.0f : b == 3 ? 1e-30f * u : b == 4 ? 1e30f * u
             : b == 5 ? -2.0f : b == 6 ? (i % 32 == 5 ? -127.0f : 0.5f * (float)(i % 5))
             : u;
    }
    ref_quant_x8(x, N, rq, rd, ra);
    k->quant_x8(x, N, q, xd, xs, xd32, xs32);
    T_CHECK(memcmp(q, rq, N) == 0);
    int bad = 0;
    for (int b = 0; b < NB; b++) {
        int32_t s[2] = {0, 0};
        for (int j = 0; j < 32; j++) s[j >> 4] += rq[32 * b + j];
        bad += !same(xd32[b], rd[b]) || !same(xd[2 * b], rd[b]) || !same(xd[2 * b + 1], rd[b]);
        bad += !same(xs[2 * b], rd[b] * (float)s[0]) || !same(xs[2 * b + 1], rd[b] * (float)s[1]);
        bad += !same(xs32[b], rd[b] * (float)(s[0] + s[1]));
    }
    T_CHECK(bad == 0);
}

int main(void)
{
    T_RUN(test_supported);
    T_RUN(test_sets);
    T_RUN(test_model_ctx_set);
    /* every kernel set this host has, the portable one last (cpu.h) */
    for (int set = CPU_SET_COUNT - 1; set >= CPU_SET_PORTABLE; set--) {
        if (!cpu_set_supported(set)) {
            fprintf(stderr, "  kernel set %s: not on this host\n", cpu_set_name(set));
            continue;
        }
        prm.cpu_set = set;
        fprintf(stderr, "  kernel set %s\n", cpu_set_name(set));
        T_RUN(test_dequant_exact);
        T_RUN(test_dequant_extreme);
        T_RUN(test_matmul_types);
        T_RUN(test_matmul_edges);
        T_RUN(test_bf16_gemm);
        T_RUN(test_quant_x8);
        T_RUN(test_int8_decode);
        T_RUN(test_int8_gemm);
        T_RUN(test_real_weights);
    }
    /* the defaults (what the CLI uses) */
    prm.cpu_set = CPU_SET_DEFAULT;
    T_RUN(test_int8_gemm_sets);
    T_RUN(test_get_row);
    T_RUN(test_bf16_ppl);
    T_RUN(test_iq4_nl_model);
    return t_done();
}
