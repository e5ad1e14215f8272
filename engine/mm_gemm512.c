/* mm_gemm512.c - the prompt GEMMs of the avx512 kernel set (mm_gemm512.h),
 * built with x86-64-v4 + AVX512-VNNI + AVX512-BF16 flags; the bf16 one
 * runs only where cpuid shows AVX512-BF16 (matmul.c checks).
 *
 * Direct bf16 GEMM (m > MM_FUSED_M_MAX, BF16 or F16 weights, even n_in):
 *   X is rounded to bf16 and packed, MM_BG_XCHUNK rows at a time, into
 *   blocks of MM_BG_NX rows: xp[block][k/2][row] is a 32-bit pair
 *   (x[row][k], x[row][k+1]) - the interleaved layout vdpbf16ps wants.
 *   W rows are read in place (BF16) or converted to bf16 per group of
 *   MM_BG_NW rows (F16); each pair w[j][k], w[j][k+1] is broadcast.
 *   The microkernel keeps an MM_BG_NW x MM_BG_NX tile of Y^T in 24 zmm
 *   accumulators over the whole row length. Threads take blocks of W rows.
 * Error: products of bf16 values are exact and accumulate in f32, so
 *   |y - x.w| <= 2^-8 sum|x w| (X's rounding, unit roundoff 2^-8)
 *   + the f32 accumulation error (n_in/32 + 2 roundings of 2^-24 each
 *   per lane, worst case); F16 weights add a further 2^-8 sum|x w|.
 *   vcvtne2ps2bf16 and vdpbf16ps treat f32/bf16 subnormals as zero.
 *
 * Int8 GEMM (m > MM_FUSED_M_MAX, weight types of mm_ig_type):
 *   X is quantized, MM_IG_XCHUNK rows at a time, in blocks of 32 along k
 *   as ggml's q8_0 activations: d = amax/127, q = rint(x * (127/amax))
 *   (f32 arithmetic, ties to even; q = 0 for an all-zero block; the
 *   oracle is ref_quant_x8 in tests/ref_quant.c). Rows are
 *   packed in blocks of MM_IG_NX: per k-block one struct mm_ig_xblk with
 *   q[s][row] = the 4 codes of k = 4s..4s+3 (the layout vpdpbusd reads),
 *   d[row], corr[row] = -128 * sum(q) and ds[row] = d * sum(q).
 *   A group of MM_IG_NW W rows is unpacked per k-block into struct
 *   mm_ig_wblk: u = code + 128 as u8 (w = code * dw + bw per 32-block).
 *   vpdpbusd sums u * q (u8 x s8) into int32 lanes that start at corr, so
 *   each block ends with the exact sum(code * q); then in f32
 *       acc += float(isum) * (dx * dw)  [+ bw * ds for types with a bias].
 *   Types with a scale (and bias) per 16 (Q2_K, Q3_K: mm_ig_split) take
 *   the same steps per half block: corr_h, ds_h and the weight's d[h],
 *   b[h] of half h = 0, 1 (k 0..15, 16..31), two f32 steps per block.
 * Error: given the int8 X, the product is exact up to f32 accumulation
 *   (about n_in/32 + 3 roundings of 2^-24 per term). X's rounding moves
 *   each x by at most d/2 = amax/254, so
 *       |y - x.w| <= sum over blocks b of (amax_b(x) / 254) * sum_b |w|
 *   (+ the f32 part): about 2^-8 of sum|x w| for a block of similar |x|.
 *   X must be finite (an inf or NaN is not propagated as in f32).
 */
#include "mm_gemm512.h"

#include <immintrin.h>

#if !defined(__AVX512BF16__) || !defined(__AVX512VNNI__) || !defined(__AVX512BW__)
#error "mm_gemm512.c needs -march=x86-64-v4 -mavx512vnni -mavx512bf16 (Makefile)"
#endif

/* ---- what both GEMMs share -------------------------------------------------- */

/* Y rows [row0, row0 + ni), columns [r, r + nr) from the tile T (nr rows of
 * LDT floats, one per X row: t[q * ldt + i] = y[row0 + i][r + q]). */
static void mm_tile_store(float *y, int64_t n_out, int64_t row0, int64_t r,
                          const float *t, int ldt, int ni, int nr)
{
    float *yb = y + (size_t)row0 * (size_t)n_out + r;
    for (int i = 0; i < ni; i++, yb += n_out)
        for (int q = 0; q < nr; q++) yb[q] = t[q * ldt + i];
}

/* The passes of a GEMM over M rows of X, XCHUNK at a time: set *I0 and
 * *MC (fields of JOB) for each, pack its X (blocks of NX rows) with PACK,
 * then run TASK over N_TASKS blocks of W rows. */
static void mm_run_passes(pool *p, int m, int64_t xchunk, int64_t nx, int64_t *i0,
                          int64_t *mc, pool_fn pack, pool_fn task, void *job,
                          int64_t n_tasks)
{
    for (*i0 = 0; *i0 < m; *i0 += xchunk) {
        *mc = KVT_MIN(xchunk, (int64_t)m - *i0);
        pool_run(p, pack, job, (int)((*mc + nx - 1) / nx));
        pool_run(p, task, job, (int)n_tasks);
    }
}

/* ---- direct bf16 GEMM ---------------------------------------------------- */

/* One pass of the direct bf16 product: rows [i0, i0 + mc) of X. */
struct mm_bg_job {
    const mm_ctx *c;
    const gguf_tensor *w;
    const float *x;  /* (m, n_in) */
    float *y;        /* (m, n_out) */
    int64_t n_in, n_out, n_kp;
    int64_t i0, mc;  /* X rows of this pass */
    int64_t rows_per_task; /* W rows, a multiple of MM_BG_NW */
};

/* Pack X rows [i0 + 32 b, i0 + 32 b + 32) into block B of c->xp, rounded
 * to bf16 (RNE); rows past the pass are zero. */
static void mm_bg_pack_x(void *ctx, int task, int thread)
{
    (void)thread;
    const struct mm_bg_job *j = ctx;
    uint32_t *dst = j->c->xp + (size_t)task * (size_t)j->n_kp * MM_BG_NX;
    for (int r = 0; r < MM_BG_NX; r++) {
        const int64_t i = (int64_t)task * MM_BG_NX + r;
        if (i >= j->mc) {
            for (int64_t kp = 0; kp < j->n_kp; kp++) dst[kp * MM_BG_NX + r] = 0;
            continue;
        }
        const float *xr = j->x + (size_t)(j->i0 + i) * (size_t)j->n_in;
        for (int64_t k = 0; k < j->n_in; k += 32) {
            const int64_t left = j->n_in - k;
            const __mmask16 m0 = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
            const __mmask16 m1 = left >= 32 ? 0xFFFF
                               : left <= 16 ? 0 : (__mmask16)((1u << (left - 16)) - 1);
            const __m512 a = _mm512_maskz_loadu_ps(m0, xr + k);
            const __m512 b = _mm512_maskz_loadu_ps(m1, xr + k + 16);
            uint32_t t[16];
            _mm512_storeu_si512(t, (__m512i)_mm512_cvtne2ps_pbh(b, a));
            const int np = (int)KVT_MIN((int64_t)16, left / 2);
            for (int p = 0; p < np; p++) dst[(k / 2 + p) * MM_BG_NX + r] = t[p];
        }
    }
}

static inline __m512bh mm_bg_bcast(const uint16_t *p)
{
    uint32_t u;
    memcpy(&u, p, 4);
    return (__m512bh)_mm512_set1_epi32((int)u);
}

/* t[r][i] = sum_k w_r[k] x_i[k] for the MM_BG_NW rows w_r = w + r*ldw
 * (bf16, n_kp pairs each) and the MM_BG_NX packed rows of XP. */
static void mm_bg_kernel(const uint32_t *xp, const uint16_t *w, size_t ldw,
                         int64_t n_kp, float t[MM_BG_NW][MM_BG_NX])
{
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00;
    __m512 c20 = c00, c21 = c00, c30 = c00, c31 = c00, c40 = c00, c41 = c00;
    __m512 c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00;
    __m512 c80 = c00, c81 = c00, c90 = c00, c91 = c00, ca0 = c00, ca1 = c00;
    __m512 cb0 = c00, cb1 = c00;
    const uint16_t *w0 = w, *w3 = w + 3 * ldw, *w6 = w + 6 * ldw, *w9 = w + 9 * ldw;
#define MM_BG_ROW(cA, cB, p)                                                  \
    do {                                                                      \
        const __m512bh a_ = mm_bg_bcast(p);                                   \
        cA = _mm512_dpbf16_ps(cA, a_, x0);                                    \
        cB = _mm512_dpbf16_ps(cB, a_, x1);                                    \
    } while (0)
    for (int64_t kp = 0; kp < n_kp; kp++, xp += MM_BG_NX) {
        const __m512bh x0 = (__m512bh)_mm512_loadu_si512(xp);
        const __m512bh x1 = (__m512bh)_mm512_loadu_si512(xp + 16);
        const int64_t k = 2 * kp;
        MM_BG_ROW(c00, c01, w0 + k);
        MM_BG_ROW(c10, c11, w0 + ldw + k);
        MM_BG_ROW(c20, c21, w0 + 2 * ldw + k);
        MM_BG_ROW(c30, c31, w3 + k);
        MM_BG_ROW(c40, c41, w3 + ldw + k);
        MM_BG_ROW(c50, c51, w3 + 2 * ldw + k);
        MM_BG_ROW(c60, c61, w6 + k);
        MM_BG_ROW(c70, c71, w6 + ldw + k);
        MM_BG_ROW(c80, c81, w6 + 2 * ldw + k);
        MM_BG_ROW(c90, c91, w9 + k);
        MM_BG_ROW(ca0, ca1, w9 + ldw + k);
        MM_BG_ROW(cb0, cb1, w9 + 2 * ldw + k);
    }
#undef MM_BG_ROW
    _mm512_storeu_ps(t[0], c00);  _mm512_storeu_ps(t[0] + 16, c01);
    _mm512_storeu_ps(t[1], c10);  _mm512_storeu_ps(t[1] + 16, c11);
    _mm512_storeu_ps(t[2], c20);  _mm512_storeu_ps(t[2] + 16, c21);
    _mm512_storeu_ps(t[3], c30);  _mm512_storeu_ps(t[3] + 16, c31);
    _mm512_storeu_ps(t[4], c40);  _mm512_storeu_ps(t[4] + 16, c41);
    _mm512_storeu_ps(t[5], c50);  _mm512_storeu_ps(t[5] + 16, c51);
    _mm512_storeu_ps(t[6], c60);  _mm512_storeu_ps(t[6] + 16, c61);
    _mm512_storeu_ps(t[7], c70);  _mm512_storeu_ps(t[7] + 16, c71);
    _mm512_storeu_ps(t[8], c80);  _mm512_storeu_ps(t[8] + 16, c81);
    _mm512_storeu_ps(t[9], c90);  _mm512_storeu_ps(t[9] + 16, c91);
    _mm512_storeu_ps(t[10], ca0); _mm512_storeu_ps(t[10] + 16, ca1);
    _mm512_storeu_ps(t[11], cb0); _mm512_storeu_ps(t[11] + 16, cb1);
}

/* W rows [r, r + MM_BG_NW) as bf16 with row stride *LDW: in place for
 * BF16 with all rows present, else converted / zero-padded into BUF
 * (MM_BG_NW rows of n_in). */
static const uint16_t *mm_bg_wrows(const struct mm_bg_job *j, int64_t r,
                                   uint16_t *buf, size_t *ldw)
{
    const int64_t nr = KVT_MIN((int64_t)MM_BG_NW, j->n_out - r);
    const uint16_t *src = (const uint16_t *)j->w->data + (size_t)r * (size_t)j->n_in;
    *ldw = (size_t)j->n_in;
    if (j->w->type == GGML_TYPE_BF16) {
        if (nr == MM_BG_NW) return src;
        memcpy(buf, src, (size_t)(nr * j->n_in) * sizeof *buf);
    } else {
        const int64_t n = nr * j->n_in;
        int64_t i = 0;
        for (; i + 32 <= n; i += 32) {
            const __m512 a = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + i)));
            const __m512 b = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + i + 16)));
            _mm512_storeu_si512(buf + i, (__m512i)_mm512_cvtne2ps_pbh(b, a));
        }
        for (; i < n; i++) buf[i] = numfmt_f32_to_bf16(MM_H2F(src[i]));
    }
    memset(buf + nr * j->n_in, 0, (size_t)((MM_BG_NW - nr) * j->n_in) * sizeof *buf);
    return buf;
}

/* W rows [r0, r0 + rows_per_task) against the packed X of this pass. */
static void mm_bg_task(void *ctx, int task, int thread)
{
    const struct mm_bg_job *j = ctx;
    const int64_t r0 = (int64_t)task * j->rows_per_task;
    const int64_t r1 = KVT_MIN(r0 + j->rows_per_task, j->n_out);
    uint16_t *buf = j->c->wconv + (size_t)thread * MM_BG_NW * (size_t)j->c->max_n_in;
    float t[MM_BG_NW][MM_BG_NX];
    for (int64_t r = r0; r < r1; r += MM_BG_NW) {
        size_t ldw;
        const uint16_t *w = mm_bg_wrows(j, r, buf, &ldw);
        const int nr = (int)KVT_MIN((int64_t)MM_BG_NW, r1 - r);
        for (int64_t b = 0; b * MM_BG_NX < j->mc; b++) {
            mm_bg_kernel(j->c->xp + (size_t)b * (size_t)j->n_kp * MM_BG_NX, w,
                         ldw, j->n_kp, t);
            const int ni = (int)KVT_MIN((int64_t)MM_BG_NX, j->mc - b * MM_BG_NX);
            mm_tile_store(j->y, j->n_out, j->i0 + b * MM_BG_NX, r, t[0], MM_BG_NX, ni, nr);
        }
    }
}

void mm_gemm_bf16(mm_ctx *c, const gguf_tensor *w, const float *x, int m, float *y)
{
    struct mm_bg_job j = {
        .c = c, .w = w, .x = x, .y = y, .n_in = w->ne[0], .n_out = w->ne[1],
        .n_kp = w->ne[0] / 2,
    };
    j.rows_per_task = mm_rows_per_task(j.n_out, c->n_threads, MM_BG_NW);
    const int64_t n_tasks = (j.n_out + j.rows_per_task - 1) / j.rows_per_task;
    mm_run_passes(c->p, m, MM_BG_XCHUNK, MM_BG_NX, &j.i0, &j.mc, mm_bg_pack_x, mm_bg_task,
                  &j, n_tasks);
}

/* ---- int8 GEMM ----------------------------------------------------------- */

/* Int8-path types with a scale (and bias) per 16 elements, not per 32. */
static int mm_ig_split(int type)
{
    return type == GGML_TYPE_Q2_K || type == GGML_TYPE_Q3_K || type == GGML_TYPE_Q6_K;
}


typedef void (*mm_ig_kernel_fn)(const struct mm_ig_xblk *xb, const struct mm_ig_wblk *wb,
                                int64_t n_blk, float t[MM_IG_NW][MM_IG_NX]);

/* One pass of the int8 product: rows [i0, i0 + mc) of X. */
struct mm_ig_job {
    const mm_ctx *c;
    const gguf_tensor *w;
    const float *x;  /* (m, n_in) */
    float *y;        /* (m, n_out) */
    int64_t n_in, n_out, n_blk;
    size_t row_bytes;
    mm_ig_kernel_fn kernel; /* per the type's scales and bias */
    int64_t i0, mc;  /* X rows of this pass */
    int64_t rows_per_task; /* W rows, a multiple of MM_IG_NW */
};

/* Quantize one row XR (n_blk blocks of 32) into lane R of the packed
 * blocks DST[0 .. n_blk). */
static void mm_ig_quant_row(const float *xr, int64_t n_blk, int r,
                            struct mm_ig_xblk *dst)
{
    const __m512 sign = _mm512_set1_ps(-0.0f);
    for (int64_t b = 0; b < n_blk; b++, xr += 32, dst++) {
        const __m512 a = _mm512_loadu_ps(xr), c = _mm512_loadu_ps(xr + 16);
        const float amax = _mm512_reduce_max_ps(
            _mm512_max_ps(_mm512_andnot_ps(sign, a), _mm512_andnot_ps(sign, c)));
        const float d = amax / 127.0f, id = amax != 0 ? 127.0f / amax : 0.0f;
        const __m512 vid = _mm512_set1_ps(id);
        const __m512i qa = _mm512_cvtps_epi32(_mm512_mul_ps(a, vid));
        const __m512i qc = _mm512_cvtps_epi32(_mm512_mul_ps(c, vid));
        const int32_t sa = _mm512_reduce_add_epi32(qa), sc = _mm512_reduce_add_epi32(qc);
        const int32_t sum = sa + sc;
        int8_t q[32];
        _mm_storeu_si128((__m128i *)q, _mm512_cvtsepi32_epi8(qa));
        _mm_storeu_si128((__m128i *)(q + 16), _mm512_cvtsepi32_epi8(qc));
        for (int s = 0; s < 8; s++) memcpy(&dst->q[s][r], q + 4 * s, 4);
        dst->d[r] = d;
        dst->corr[r] = -128 * sum;
        dst->ds[r] = d * (float)sum;
        dst->corr_h[0][r] = -128 * sa;
        dst->corr_h[1][r] = -128 * sc;
        dst->ds_h[0][r] = d * (float)sa;
        dst->ds_h[1][r] = d * (float)sc;
    }
}

/* Quantize X rows [i0 + 32 t, i0 + 32 t + 32) into block row T of c->ixp;
 * rows past the pass are zero (they contribute nothing). */
static void mm_ig_pack_x(void *ctx, int task, int thread)
{
    (void)thread;
    const struct mm_ig_job *j = ctx;
    struct mm_ig_xblk *dst = j->c->ixp + (size_t)task * (size_t)j->n_blk;
    for (int r = 0; r < MM_IG_NX; r++) {
        const int64_t i = (int64_t)task * MM_IG_NX + r;
        if (i < j->mc) {
            mm_ig_quant_row(j->x + (size_t)(j->i0 + i) * (size_t)j->n_in,
                            j->n_blk, r, dst);
            continue;
        }
        for (int64_t b = 0; b < j->n_blk; b++) {
            for (int s = 0; s < 8; s++) dst[b].q[s][r] = 0;
            dst[b].d[r] = dst[b].ds[r] = 0;
            dst[b].corr[r] = 0;
            for (int h = 0; h < 2; h++) {
                dst[b].corr_h[h][r] = 0;
                dst[b].ds_h[h][r] = 0;
            }
        }
    }
}

/* W rows [r, r + MM_IG_NW) unpacked into DST (n_blk blocks); rows past
 * n_out get code 0 and scale 0. */
static void mm_ig_pack_w(const struct mm_ig_job *j, int64_t r,
                         struct mm_ig_wblk *dst)
{
    const mm_unpack_fn unpack = j->c->k->unpack[j->w->type];
    const __m256i k80 = _mm256_set1_epi8((char)0x80);
    int8_t q[MM_QK_K];
    float sc[MM_QK_K / 16], bi[MM_QK_K / 16];
    for (int k = 0; k < MM_IG_NW; k++) {
        if (r + k >= j->n_out) {
            for (int64_t b = 0; b < j->n_blk; b++) {
                memset(dst[b].u[k], 0x80, 32);
                for (int h = 0; h < 2; h++) dst[b].d[h][k] = dst[b].b[h][k] = 0;
            }
            continue;
        }
        const uint8_t *row = (const uint8_t *)j->w->data + (size_t)(r + k) * j->row_bytes;
        const int blck = mm_types[j->w->type].blck, bytes = mm_types[j->w->type].bytes;
        const int per_chunk = MM_QK_K / blck;
        const int64_t n_tb = j->n_in / blck;
        for (int64_t tb = 0; tb < n_tb; tb += per_chunk) {
            const int nb = (int)KVT_MIN((int64_t)per_chunk, n_tb - tb);
            const int64_t b = tb * blck / 32;
            unpack(row + tb * bytes, nb, q, sc, bi);
            for (int e = 0; e < nb * blck / 32; e++) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(q + 32 * e));
                _mm256_storeu_si256((__m256i *)dst[b + e].u[k], _mm256_xor_si256(v, k80));
                for (int h = 0; h < 2; h++) {
                    dst[b + e].d[h][k] = sc[2 * e + h];
                    dst[b + e].b[h][k] = bi[2 * e + h];
                }
            }
        }
    }
}

static inline __m512i mm_ig_bcast(const uint8_t *p)
{
    int32_t u;
    memcpy(&u, p, 4);
    return _mm512_set1_epi32(u);
}

/* t[k][i] = sum over the n_blk blocks of W rows k (WB) and packed X rows
 * i (XB); BIAS adds bw * ds per block. */
static inline __attribute__((always_inline)) void
mm_ig_kernel_body(const struct mm_ig_xblk *xb, const struct mm_ig_wblk *wb,
                  int64_t n_blk, int bias, float t[MM_IG_NW][MM_IG_NX])
{
    __m512 f[MM_IG_NW][2];
#pragma GCC unroll 8
    for (int k = 0; k < MM_IG_NW; k++) f[k][0] = f[k][1] = _mm512_setzero_ps();
    for (int64_t b = 0; b < n_blk; b++, xb++, wb++) {
        __m512i acc[MM_IG_NW][2];
        const __m512i c0 = _mm512_loadu_si512(xb->corr);
        const __m512i c1 = _mm512_loadu_si512(xb->corr + 16);
#pragma GCC unroll 8
        for (int k = 0; k < MM_IG_NW; k++) { acc[k][0] = c0; acc[k][1] = c1; }
#pragma GCC unroll 8
        for (int s = 0; s < 8; s++) {
            const __m512i x0 = _mm512_loadu_si512(xb->q[s]);
            const __m512i x1 = _mm512_loadu_si512(xb->q[s] + 16);
#pragma GCC unroll 8
            for (int k = 0; k < MM_IG_NW; k++) {
                const __m512i w = mm_ig_bcast(wb->u[k] + 4 * s);
                acc[k][0] = _mm512_dpbusd_epi32(acc[k][0], w, x0);
                acc[k][1] = _mm512_dpbusd_epi32(acc[k][1], w, x1);
            }
        }
        const __m512 d0 = _mm512_loadu_ps(xb->d), d1 = _mm512_loadu_ps(xb->d + 16);
#pragma GCC unroll 8
        for (int k = 0; k < MM_IG_NW; k++) {
            const __m512 dw = _mm512_set1_ps(wb->d[0][k]);
            f[k][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[k][0]),
                                      _mm512_mul_ps(d0, dw), f[k][0]);
            f[k][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[k][1]),
                                      _mm512_mul_ps(d1, dw), f[k][1]);
        }
        if (bias) {
            const __m512 s0 = _mm512_loadu_ps(xb->ds), s1 = _mm512_loadu_ps(xb->ds + 16);
#pragma GCC unroll 8
            for (int k = 0; k < MM_IG_NW; k++) {
                const __m512 bw = _mm512_set1_ps(wb->b[0][k]);
                f[k][0] = _mm512_fmadd_ps(bw, s0, f[k][0]);
                f[k][1] = _mm512_fmadd_ps(bw, s1, f[k][1]);
            }
        }
    }
#pragma GCC unroll 8
    for (int k = 0; k < MM_IG_NW; k++) {
        _mm512_storeu_ps(t[k], f[k][0]);
        _mm512_storeu_ps(t[k] + 16, f[k][1]);
    }
}

/* As mm_ig_kernel_body for weights with a scale (BIAS: and bias) per 16:
 * each half block is summed and scaled on its own. */
static inline __attribute__((always_inline)) void
mm_ig_kernel_split_body(const struct mm_ig_xblk *xb, const struct mm_ig_wblk *wb,
                        int64_t n_blk, int bias, float t[MM_IG_NW][MM_IG_NX])
{
    __m512 f[MM_IG_NW][2];
#pragma GCC unroll 8
    for (int k = 0; k < MM_IG_NW; k++) f[k][0] = f[k][1] = _mm512_setzero_ps();
    for (int64_t b = 0; b < n_blk; b++, xb++, wb++) {
        const __m512 d0 = _mm512_loadu_ps(xb->d), d1 = _mm512_loadu_ps(xb->d + 16);
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m512i acc[MM_IG_NW][2];
            const __m512i c0 = _mm512_loadu_si512(xb->corr_h[h]);
            const __m512i c1 = _mm512_loadu_si512(xb->corr_h[h] + 16);
#pragma GCC unroll 8
            for (int k = 0; k < MM_IG_NW; k++) { acc[k][0] = c0; acc[k][1] = c1; }
#pragma GCC unroll 4
            for (int s = 4 * h; s < 4 * h + 4; s++) {
                const __m512i x0 = _mm512_loadu_si512(xb->q[s]);
                const __m512i x1 = _mm512_loadu_si512(xb->q[s] + 16);
#pragma GCC unroll 8
                for (int k = 0; k < MM_IG_NW; k++) {
                    const __m512i w = mm_ig_bcast(wb->u[k] + 4 * s);
                    acc[k][0] = _mm512_dpbusd_epi32(acc[k][0], w, x0);
                    acc[k][1] = _mm512_dpbusd_epi32(acc[k][1], w, x1);
                }
            }
#pragma GCC unroll 8
            for (int k = 0; k < MM_IG_NW; k++) {
                const __m512 dw = _mm512_set1_ps(wb->d[h][k]);
                f[k][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[k][0]),
                                          _mm512_mul_ps(d0, dw), f[k][0]);
                f[k][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[k][1]),
                                          _mm512_mul_ps(d1, dw), f[k][1]);
            }
            if (bias) {
                const __m512 s0 = _mm512_loadu_ps(xb->ds_h[h]);
                const __m512 s1 = _mm512_loadu_ps(xb->ds_h[h] + 16);
#pragma GCC unroll 8
                for (int k = 0; k < MM_IG_NW; k++) {
                    const __m512 bw = _mm512_set1_ps(wb->b[h][k]);
                    f[k][0] = _mm512_fmadd_ps(bw, s0, f[k][0]);
                    f[k][1] = _mm512_fmadd_ps(bw, s1, f[k][1]);
                }
            }
        }
    }
#pragma GCC unroll 8
    for (int k = 0; k < MM_IG_NW; k++) {
        _mm512_storeu_ps(t[k], f[k][0]);
        _mm512_storeu_ps(t[k] + 16, f[k][1]);
    }
}

static void mm_ig_kernel(const struct mm_ig_xblk *xb, const struct mm_ig_wblk *wb,
                         int64_t n_blk, float t[MM_IG_NW][MM_IG_NX])
{
    mm_ig_kernel_body(xb, wb, n_blk, 0, t);
}

static void mm_ig_kernel_bias(const struct mm_ig_xblk *xb, const struct mm_ig_wblk *wb,
                              int64_t n_blk, float t[MM_IG_NW][MM_IG_NX])
{
    mm_ig_kernel_body(xb, wb, n_blk, 1, t);
}

static void mm_ig_kernel_split(const struct mm_ig_xblk *xb, const struct mm_ig_wblk *wb,
                               int64_t n_blk, float t[MM_IG_NW][MM_IG_NX])
{
    mm_ig_kernel_split_body(xb, wb, n_blk, 0, t);
}

static void mm_ig_kernel_split_bias(const struct mm_ig_xblk *xb,
                                    const struct mm_ig_wblk *wb, int64_t n_blk,
                                    float t[MM_IG_NW][MM_IG_NX])
{
    mm_ig_kernel_split_body(xb, wb, n_blk, 1, t);
}

/* W rows [r0, r0 + rows_per_task) against the packed X of this pass. */
static void mm_ig_task(void *ctx, int task, int thread)
{
    const struct mm_ig_job *j = ctx;
    const int64_t r0 = (int64_t)task * j->rows_per_task;
    const int64_t r1 = KVT_MIN(r0 + j->rows_per_task, j->n_out);
    struct mm_ig_wblk *wb = j->c->iwp + (size_t)thread * (size_t)j->n_blk;
    float t[MM_IG_NW][MM_IG_NX];
    for (int64_t r = r0; r < r1; r += MM_IG_NW) {
        mm_ig_pack_w(j, r, wb);
        const int nr = (int)KVT_MIN((int64_t)MM_IG_NW, r1 - r);
        for (int64_t b = 0; b * MM_IG_NX < j->mc; b++) {
            const struct mm_ig_xblk *xb = j->c->ixp + (size_t)b * (size_t)j->n_blk;
            j->kernel(xb, wb, j->n_blk, t);
            const int ni = (int)KVT_MIN((int64_t)MM_IG_NX, j->mc - b * MM_IG_NX);
            mm_tile_store(j->y, j->n_out, j->i0 + b * MM_IG_NX, r, t[0], MM_IG_NX, ni, nr);
        }
    }
}

void mm_gemm_int8(mm_ctx *c, const gguf_tensor *w, const float *x, int m, float *y)
{
    struct mm_ig_job j = {
        .c = c, .w = w, .x = x, .y = y, .n_in = w->ne[0], .n_out = w->ne[1],
        .n_blk = w->ne[0] / 32, .row_bytes = mm_row_bytes(w->type, w->ne[0]),
    };
    const int bias = mm_has_bias(w->type);
    j.kernel = mm_ig_split(w->type) ? (bias ? mm_ig_kernel_split_bias : mm_ig_kernel_split)
                                    : (bias ? mm_ig_kernel_bias : mm_ig_kernel);
    j.rows_per_task = mm_rows_per_task(j.n_out, c->n_threads, MM_IG_NW);
    const int64_t n_tasks = (j.n_out + j.rows_per_task - 1) / j.rows_per_task;
    mm_run_passes(c->p, m, MM_IG_XCHUNK, MM_IG_NX, &j.i0, &j.mc, mm_ig_pack_x, mm_ig_task,
                  &j, n_tasks);
}

