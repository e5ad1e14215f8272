/* matmul.c - weight products in the stored GGUF type (see matmul.h): the
 * public API and the dispatch. The kernels are per instruction set
 * (mm_kern.h: mm_portable.c, mm_avx2.c, mm_x8.c, mm_gemm2.c, mm_avx512.c,
 * mm_gemm512.c); this file is built once, for the x86-64-v2 baseline.
 *
 * A product takes one of these paths (mm_matmul):
 *   m <= MM_FUSED_M_MAX (single tokens): rows of W split over threads,
 *     each dotted with the m rows of X: with X quantized to int8 once per
 *     product (mm_x8_quant) for quantized weights, unless the context's
 *     int8 paths are off; f32 X for F32/F16/BF16 weights;
 *   larger m: the set's direct bf16 GEMM (BF16/F16 weights) or int8 GEMM
 *     (the types of mm_ig_type; avx512: mm_gemm512.c, the other sets:
 *     X quantized here, mm_gemm_i8, rows by gemm_i8_rows) where the
 *     context allows and the CPU has them; else per-thread row blocks of W dequantized and handed to
 *     cblas_sgemm (F32 weights in place).
 */
#include "matmul.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "base/cpu.h"
#include "mm_kern.h"

/* OpenBLAS: our pool does the threading. */
void openblas_set_num_threads(int num_threads);

const struct mm_type_info mm_types[GGML_TYPE_COUNT] = {
    [GGML_TYPE_F32] = {1, 4},    [GGML_TYPE_F16] = {1, 2},
    [GGML_TYPE_BF16] = {1, 2},   [GGML_TYPE_Q8_0] = {32, 34},
    [GGML_TYPE_Q4_0] = {32, 18}, [GGML_TYPE_Q4_1] = {32, 20},
    [GGML_TYPE_Q5_0] = {32, 22}, [GGML_TYPE_Q5_1] = {32, 24},
    [GGML_TYPE_Q4_K] = {256, 144}, [GGML_TYPE_Q5_K] = {256, 176},
    [GGML_TYPE_Q6_K] = {256, 210}, [GGML_TYPE_Q2_K] = {256, 84},
    [GGML_TYPE_Q3_K] = {256, 110}, [GGML_TYPE_IQ4_NL] = {32, 18},
    [GGML_TYPE_IQ4_XS] = {256, 136},
};

static const struct mm_kernels *const mm_sets[CPU_SET_COUNT] = {
    [CPU_SET_PORTABLE] = &mm_kernels_portable,
    [CPU_SET_AVX2] = &mm_kernels_avx2,
    [CPU_SET_AVX512] = &mm_kernels_avx512,
};

int mm_type_supported(int type)
{
    return type >= 0 && type < GGML_TYPE_COUNT && mm_types[type].blck > 0;
}

/* ---- which path ---------------------------------------------------------- */

/* Types on the int8 GEMM, where it was measured faster than dequantize +
 * sgemm: one scale (and bias) per 32 elements, or per 16. */
static int mm_ig_type(int type)
{
    return type == GGML_TYPE_Q8_0 || type == GGML_TYPE_Q4_0 || type == GGML_TYPE_Q4_K ||
           type == GGML_TYPE_Q5_K || type == GGML_TYPE_IQ4_NL || type == GGML_TYPE_IQ4_XS ||
           type == GGML_TYPE_Q2_K || type == GGML_TYPE_Q3_K || type == GGML_TYPE_Q6_K;
}

/* Types on the int8 decode path (m <= MM_FUSED_M_MAX): all quantized. */
static int mm_x8_type(int type)
{
    return type != GGML_TYPE_F32 && type != GGML_TYPE_F16 && type != GGML_TYPE_BF16;
}

int mm_int8_gemm_used(const mm_ctx *c, int type, int64_t n_in, int m)
{
    if (!c->int8_gemm || n_in % 32 != 0) return 0;
    if (m <= MM_FUSED_M_MAX) return mm_x8_type(type);
    return (c->ixp != NULL || c->gq != NULL) && mm_ig_type(type) &&
           n_in % mm_types[type].blck == 0;
}

int mm_bf16_gemm_used(const mm_ctx *c, int type, int64_t n_in, int m)
{
    return c->bf16_gemm && c->xp != NULL && m > MM_FUSED_M_MAX &&
           (type == GGML_TYPE_BF16 || type == GGML_TYPE_F16) && n_in % 2 == 0;
}

/* ---- contexts ------------------------------------------------------------ */

int mm_ctx_create(pool *p, int64_t max_n_in, const struct mm_params *mp, mm_ctx **out)
{
    KVT_ASSERT(p != NULL);
    KVT_ASSERT(max_n_in > 0);
    static const struct mm_params defaults;
    if (!mp) mp = &defaults;
    const int set = cpu_set_resolve(mp->cpu_set);
    if (set < 0) return set;
    openblas_set_num_threads(1);
    mm_ctx *c = calloc(1, sizeof *c);
    if (!c) return -ENOMEM;
    c->k = mm_sets[set];
    c->p = p;
    c->n_threads = pool_threads(p);
    c->max_n_in = max_n_in;
    c->bf16_gemm = !mp->bf16_gemm_off;
    c->int8_gemm = !mp->int8_gemm_off;
    if ((size_t)max_n_in > SIZE_MAX / sizeof(float) / MM_ROWS_MAX /
                               (size_t)c->n_threads) {
        free(c);
        return KVT_ERANGE;
    }
    const size_t per = (size_t)MM_ROWS_MAX * (size_t)max_n_in;
    const size_t n_kp = (size_t)(max_n_in + 1) / 2;
    c->scratch = malloc(per * (size_t)c->n_threads * sizeof(float));
    c->x8q = malloc((size_t)MM_FUSED_M_MAX * (size_t)max_n_in);
    c->x8d = malloc((size_t)MM_FUSED_M_MAX * (size_t)(max_n_in / 16 + 1) * sizeof(float));
    c->x8s = malloc((size_t)MM_FUSED_M_MAX * (size_t)(max_n_in / 16 + 1) * sizeof(float));
    c->x8s32 = malloc((size_t)MM_FUSED_M_MAX * (size_t)(max_n_in / 32 + 1) * sizeof(float));
    c->x8d32 = malloc((size_t)MM_FUSED_M_MAX * (size_t)(max_n_in / 32 + 1) * sizeof(float));
    c->x8qr = malloc((size_t)MM_FUSED_M_MAX * (size_t)max_n_in);
    int fail = !c->scratch || !c->x8q || !c->x8d || !c->x8s || !c->x8s32 || !c->x8d32 ||
               !c->x8qr;
    if (c->k->gemm_bf16 && c->bf16_gemm && cpu_has_avx512bf16()) {
        c->xp = malloc((size_t)MM_BG_XCHUNK * n_kp * sizeof *c->xp);
        c->wconv = malloc((size_t)c->n_threads * MM_BG_NW * (size_t)max_n_in *
                          sizeof *c->wconv);
        fail |= !c->xp || !c->wconv;
    }
    if (c->k->gemm_int8 && c->int8_gemm) {
        const size_t n_blk = (size_t)(max_n_in + 31) / 32;
        c->ixp = malloc((size_t)(MM_IG_XCHUNK / MM_IG_NX) * n_blk * sizeof *c->ixp);
        c->iwp = malloc((size_t)c->n_threads * n_blk * sizeof *c->iwp);
        fail |= !c->ixp || !c->iwp;
    }
    if (c->k->gemm_i8_rows && c->int8_gemm) {
        const size_t rows = MM_G8_XCHUNK, n = (size_t)max_n_in;
        c->gq = malloc(rows * n);
        c->gd16 = malloc(rows * (n / 16 + 1) * sizeof(float));
        c->gs16 = malloc(rows * (n / 16 + 1) * sizeof(float));
        c->gd32 = malloc(rows * (n / 32 + 1) * sizeof(float));
        c->gs32 = malloc(rows * (n / 32 + 1) * sizeof(float));
        c->gi16 = malloc(rows * (n / 16 + 1) * sizeof(int32_t));
        c->gi32 = malloc(rows * (n / 32 + 1) * sizeof(int32_t));
        c->gw = malloc((size_t)c->n_threads * (n / 32 + 1) * sizeof *c->gw);
        fail |= !c->gq || !c->gd16 || !c->gs16 || !c->gd32 || !c->gs32 || !c->gi16 ||
                !c->gi32 || !c->gw;
    }
    if (fail) {
        mm_ctx_free(c);
        return -ENOMEM;
    }
    *out = c;
    return 0;
}

void mm_ctx_free(mm_ctx *c)
{
    if (!c) return;
    free(c->scratch);
    free(c->xp);
    free(c->wconv);
    free(c->ixp);
    free(c->iwp);
    free(c->x8q);
    free(c->x8d);
    free(c->x8s);
    free(c->x8s32);
    free(c->x8d32);
    free(c->x8qr);
    free(c->gq);
    free(c->gd16);
    free(c->gs16);
    free(c->gd32);
    free(c->gs32);
    free(c->gi16);
    free(c->gi32);
    free(c->gw);
    free(c);
}

int mm_ctx_cpu_set(const mm_ctx *c) { return c->k->set; }

/* ---- dequantization -------------------------------------------------------- */

void mm_dequant_on(int set, int type, const void *src, float *dst, int64_t n)
{
    KVT_ASSERT(cpu_set_supported(set));
    KVT_ASSERT(mm_type_supported(type));
    KVT_ASSERT(n >= 0);
    KVT_ASSERT(n % mm_types[type].blck == 0);
    mm_sets[set]->dequant(type, src, dst, n);
}

void mm_dequant(int type, const void *src, float *dst, int64_t n)
{
    mm_dequant_on(cpu_set_default(), type, src, dst, n);
}

void mm_get_row(const gguf_tensor *w, int64_t r, float *dst)
{
    KVT_ASSERT(mm_type_supported(w->type));
    KVT_ASSERT(r >= 0);
    KVT_ASSERT(r < w->ne[1]);
    const size_t rb = mm_row_bytes(w->type, w->ne[0]);
    mm_dequant(w->type, (const uint8_t *)w->data + (size_t)r * rb, dst, w->ne[0]);
}

/* ---- products ---------------------------------------------------------------- */

/* X row (n elements, n % 32 == 0) quantized as the int8 GEMM's X (ggml's
 * q8_0 activations, the oracle is ref_quant_x8): per block of 32,
 * d = amax/127, q = rint(x * (127/amax)). Per group g of 16: xd[g] = d of
 * its block, xs[g] = d * sum(q of the group); per block xd32 = d and
 * xs32 = d * sum(q). */
static void mm_x8_quant(const float *x, int64_t n, int8_t *q, float *xd, float *xs,
                        float *xd32, float *xs32)
{
    for (int64_t b = 0; b < n / 32; b++, x += 32, q += 32) {
        float a = 0;
        for (int k = 0; k < 32; k++) {
            const float v = x[k] < 0 ? -x[k] : x[k];
            a = v > a ? v : a;
        }
        const float d = a / 127.0f, id = a != 0 ? 127.0f / a : 0.0f;
        int32_t s[2] = {0, 0};
        for (int k = 0; k < 32; k++) {
            const int v = (int)nearbyintf(x[k] * id); /* ties to even */
            q[k] = (int8_t)v;
            s[k >> 4] += v;
        }
        xd[2 * b] = xd[2 * b + 1] = d;
        xs[2 * b] = d * (float)s[0];
        xs[2 * b + 1] = d * (float)s[1];
        xd32[b] = d;
        xs32[b] = d * (float)(s[0] + s[1]);
    }
}

struct mm_job {
    const mm_ctx *c;
    const gguf_tensor *w;
    const float *x;
    float *y;
    int m;
    int64_t n_in, n_out;
    size_t row_bytes;
    int64_t rows_per_task;
    int x8; /* m <= MM_FUSED_M_MAX: X quantized in c->x8q/x8d/x8s */
};

/* m <= MM_FUSED_M_MAX: columns [r0, r1) of Y = X . W^T, fused. */
static void mm_task_vec(void *ctx, int task, int thread)
{
    (void)thread;
    const struct mm_job *j = ctx;
    const int64_t r0 = (int64_t)task * j->rows_per_task;
    const int64_t r1 = KVT_MIN(r0 + j->rows_per_task, j->n_out);
    const uint8_t *base = j->w->data;
    float acc[MM_FUSED_M_MAX];
    for (int64_t r = r0; r < r1; r++) {
        if (j->x8)
            j->c->k->dot_rows_x8(j->w->type, base + (size_t)r * j->row_bytes, j->c,
                                 j->n_in, j->m, acc);
        else
            j->c->k->dot_rows(j->w->type, base + (size_t)r * j->row_bytes, j->x,
                              j->n_in, j->m, acc);
        for (int i = 0; i < j->m; i++) j->y[i * j->n_out + r] = acc[i];
    }
}

/* m > MM_FUSED_M_MAX: columns [r0, r1) of Y = X . W^T through sgemm. */
static void mm_task_gemm(void *ctx, int task, int thread)
{
    const struct mm_job *j = ctx;
    const int64_t r0 = (int64_t)task * j->rows_per_task;
    const int64_t nr = KVT_MIN(r0 + j->rows_per_task, j->n_out) - r0;
    const uint8_t *rows = (const uint8_t *)j->w->data + (size_t)r0 * j->row_bytes;
    const float *b;
    if (j->w->type == GGML_TYPE_F32) {
        b = (const float *)rows;
    } else {
        float *s = j->c->scratch + (size_t)thread * MM_ROWS_MAX * (size_t)j->c->max_n_in;
        j->c->k->dequant(j->w->type, rows, s, nr * j->n_in);
        b = s;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->m, (int)nr,
                (int)j->n_in, 1.0f, j->x, (int)j->n_in, b, (int)j->n_in, 0.0f,
                j->y + r0, (int)j->n_out);
}

/* ---- the int8 GEMM of the sets with gemm_i8_rows ---------------------------- */

/* Quantize X rows [i0 + 16 t, i0 + 16 t + 16) of the pass into c->gq etc.
 * (mm_x8_quant, the set's quant_x8) with their integer sums; rows past
 * the pass, up to a multiple of MM_G8_NX, are zero. */
static void mm_g8_quant_task(void *ctx, int task, int thread)
{
    (void)thread;
    const struct mm_g8_job *j = ctx;
    const mm_ctx *c = j->c;
    const int64_t n = j->n_in, ng = n / 16, nb = n / 32;
    const int64_t pad = (j->mc + MM_G8_NX - 1) / MM_G8_NX * MM_G8_NX;
    const int64_t e = KVT_MIN((int64_t)(task + 1) * 16, pad);
    for (int64_t i = (int64_t)task * 16; i < e; i++) {
        int8_t *q = c->gq + i * n;
        int32_t *s16 = c->gi16 + i * ng, *s32 = c->gi32 + i * nb;
        if (i >= j->mc) {
            memset(q, 0, (size_t)n);
            memset(s16, 0, (size_t)ng * sizeof *s16);
            memset(s32, 0, (size_t)nb * sizeof *s32);
            memset(c->gd16 + i * ng, 0, (size_t)ng * sizeof(float));
            memset(c->gs16 + i * ng, 0, (size_t)ng * sizeof(float));
            memset(c->gd32 + i * nb, 0, (size_t)nb * sizeof(float));
            memset(c->gs32 + i * nb, 0, (size_t)nb * sizeof(float));
            continue;
        }
        (c->k->quant_x8 ? c->k->quant_x8 : mm_x8_quant)(
            j->x + (j->i0 + i) * n, n, q, c->gd16 + i * ng, c->gs16 + i * ng,
            c->gd32 + i * nb, c->gs32 + i * nb);
        for (int64_t g = 0; g < ng; g++) {
            int32_t t = 0;
            for (int k = 0; k < 16; k++) t += q[16 * g + k];
            s16[g] = t;
        }
        for (int64_t b = 0; b < nb; b++) s32[b] = s16[2 * b] + s16[2 * b + 1];
    }
}

static void mm_g8_task(void *ctx, int task, int thread)
{
    const struct mm_g8_job *j = ctx;
    const int64_t r0 = (int64_t)task * j->rows_per_task;
    j->c->k->gemm_i8_rows(j, r0, KVT_MIN(r0 + j->rows_per_task, j->n_out), thread);
}

/* Y = X . W^T by the set's gemm_i8_rows, MM_G8_XCHUNK rows of X a pass. */
static void mm_gemm_i8(mm_ctx *c, const gguf_tensor *w, const float *x, int m, float *y)
{
    struct mm_g8_job j = {
        .c = c, .w = w, .x = x, .y = y, .n_in = w->ne[0], .n_out = w->ne[1],
        .row_bytes = mm_row_bytes(w->type, w->ne[0]),
    };
    j.rows_per_task = mm_rows_per_task(j.n_out, c->n_threads, MM_G8_NW);
    const int64_t n_tasks = (j.n_out + j.rows_per_task - 1) / j.rows_per_task;
    for (j.i0 = 0; j.i0 < m; j.i0 += MM_G8_XCHUNK) {
        j.mc = KVT_MIN((int64_t)MM_G8_XCHUNK, (int64_t)m - j.i0);
        pool_run(c->p, mm_g8_quant_task, &j, (int)((j.mc + 15) / 16));
        pool_run(c->p, mm_g8_task, &j, (int)n_tasks);
    }
}

void mm_matmul(mm_ctx *c, const gguf_tensor *w, const float *x, int m, float *y)
{
    KVT_ASSERT(mm_type_supported(w->type));
    KVT_ASSERT(m >= 1);
    const int64_t n_in = w->ne[0], n_out = w->ne[1];
    KVT_ASSERT(n_in > 0);
    KVT_ASSERT(n_out > 0);
    KVT_ASSERT(w->ne[2] == 1);
    KVT_ASSERT(w->ne[3] == 1);
    KVT_ASSERT(n_in <= c->max_n_in);
    KVT_ASSERT(n_in <= INT32_MAX);
    KVT_ASSERT(n_out <= INT32_MAX);
    struct mm_job j = {
        .c = c, .w = w, .x = x, .y = y, .m = m, .n_in = n_in,
        .n_out = n_out, .row_bytes = mm_row_bytes(w->type, n_in),
    };
    KVT_ASSERT(w->size >= j.row_bytes * (size_t)n_out);
    /* About 4 tasks per thread, so uneven finishing times even out. */
    const int64_t want = 4 * (int64_t)c->n_threads;
    if (m <= MM_FUSED_M_MAX) {
        if (mm_int8_gemm_used(c, w->type, n_in, m)) {
            for (int i = 0; i < m; i++) {
                (c->k->quant_x8 ? c->k->quant_x8 : mm_x8_quant)(x + i * n_in, n_in, c->x8q + i * n_in,
                            c->x8d + i * (n_in / 16), c->x8s + i * (n_in / 16),
                            c->x8d32 + i * (n_in / 32), c->x8s32 + i * (n_in / 32));
                if (w->type == GGML_TYPE_Q4_0)
                    mm_x8_q4_order(c->x8q + i * n_in, n_in, c->x8qr + i * n_in);
                else if (w->type == GGML_TYPE_Q4_K && n_in % MM_QK_K == 0)
                    mm_x8_k4_order(c->x8q + i * n_in, n_in, c->x8qr + i * n_in);
            }
            j.x8 = 1;
        }
        j.rows_per_task = KVT_MAX((int64_t)1, (n_out + want - 1) / want);
        const int64_t n_tasks = (n_out + j.rows_per_task - 1) / j.rows_per_task;
        pool_run(c->p, mm_task_vec, &j, (int)n_tasks);
        return;
    }
    if (mm_bf16_gemm_used(c, w->type, n_in, m)) {
        c->k->gemm_bf16(c, w, x, m, y);
        return;
    }
    if (mm_int8_gemm_used(c, w->type, n_in, m)) {
        if (c->k->gemm_int8) c->k->gemm_int8(c, w, x, m, y);
        else mm_gemm_i8(c, w, x, m, y);
        return;
    }
    int64_t rpt = (n_out + want - 1) / want;
    rpt = (rpt + 15) / 16 * 16;
    j.rows_per_task = KVT_MIN((int64_t)MM_ROWS_MAX, rpt);
    const int64_t n_tasks = (n_out + j.rows_per_task - 1) / j.rows_per_task;
    pool_run(c->p, mm_task_gemm, &j, (int)n_tasks);
}
