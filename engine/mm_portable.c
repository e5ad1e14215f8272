/* mm_portable.c - plain C kernels (mm_kern.h): the unpackers of every
 * quantized type, the row dots and dequantization of the portable kernel
 * set (half / bfloat values: base/numfmt.h). Built for the x86-64-v2
 * baseline; any compiler vectorising keeps the f32 order (no
 * -ffast-math, no FMA contraction under -std=c11). */
#include "mm_kern.h"

#include <math.h>

#include "base/cpu.h"

/* ---- unpackers ------------------------------------------------------------ */

const int8_t mm_iq4_levels[16] = {
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
};


static void codes_q4_0(const uint8_t *qs, int8_t *q)
{
    for (int j = 0; j < 16; j++) {
        q[j] = (int8_t)((qs[j] & 0xF) - 8);
        q[j + 16] = (int8_t)((qs[j] >> 4) - 8);
    }
}

static void codes_q4_K(const uint8_t *qs, int8_t *q)
{
    for (int j = 0; j < 4; j++)
        for (int l = 0; l < 32; l++) {
            q[64 * j + l] = (int8_t)(qs[32 * j + l] & 0xF);
            q[64 * j + 32 + l] = (int8_t)(qs[32 * j + l] >> 4);
        }
}

static void codes_q5_K(const blk_q5_K *x, int8_t *q)
{
    for (int j = 0; j < 4; j++)
        for (int l = 0; l < 32; l++) {
            const uint8_t b = x->qs[32 * j + l], h = x->qh[l];
            q[64 * j + l] = (int8_t)((b & 0xF) | (((h >> (2 * j)) & 1) << 4));
            q[64 * j + 32 + l] = (int8_t)((b >> 4) | (((h >> (2 * j + 1)) & 1) << 4));
        }
}

static void codes_q6_K(const blk_q6_K *x, int8_t *q)
{
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = x->ql + 64 * h, *qh = x->qh + 32 * h;
        int8_t *o = q + 128 * h;
        for (int l = 0; l < 32; l++) {
            o[l] = (int8_t)(((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32);
            o[l + 32] = (int8_t)(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
            o[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
            o[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
        }
    }
}

static void codes_2bits(const uint8_t *qs, int8_t *q)
{
    for (int j = 0; j < 4; j++)
        for (int l = 0; l < 32; l++) q[32 * j + l] = (int8_t)((qs[l] >> (2 * j)) & 3);
}

static void codes_q3_K_high(const uint8_t *hmask, int8_t *q)
{
    for (int e = 0; e < 256; e++)
        if (!((hmask[e % 32] >> (e / 32)) & 1)) q[e] = (int8_t)(q[e] - 4);
}

static void codes_iq4_32(const uint8_t *qs, int8_t *q)
{
    for (int j = 0; j < 16; j++) {
        q[j] = mm_iq4_levels[qs[j] & 0xF];
        q[j + 16] = mm_iq4_levels[qs[j] >> 4];
    }
}

#define MM_UNPACK_TABLE mm_unpack_portable
#include "mm_unpack.h"

/* ---- the portable set's kernels ------------------------------------------- */

/* y[i] = q[i] * sc[i/16] (+ bi[i/16]) for N_GROUPS groups of 16, as a
 * separate multiply and add: the same roundings as ggml's d*q (+ m) or
 * d1*q - m1 (x - m == x + (-m) exactly). No add at all without a bias,
 * so that -0 stays -0. (Every set does these two roundings.) */
static void affine_store(const int8_t *q, const float *sc, const float *bi, int bias,
                         float *y, int n_groups)
{
    for (int g = 0; g < n_groups; g++, q += 16, y += 16)
        for (int i = 0; i < 16; i++) {
            float v = (float)q[i] * sc[g];
            y[i] = bias ? v + bi[g] : v;
        }
}

static void dq_f16(const uint16_t *x, float *y, int64_t n)
{
    numfmt_f16_to_f32_row(x, (size_t)n, y, 0);
}

/* sum over N_GROUPS groups of 16 of (q*sc[g] + bi[g]) * x. */
static float dot_groups(const int8_t *q, const float *sc, const float *bi, const float *x,
                        int n_groups)
{
    float acc = 0;
    for (int g = 0; g < n_groups; g++) {
        float part = 0;
        for (int i = 0; i < 16; i++)
            part += ((float)q[16 * g + i] * sc[g] + bi[g]) * x[16 * g + i];
        acc += part;
    }
    return acc;
}

static float dot_f32(const float *w, const float *x, int64_t n)
{
    float acc = 0;
    for (int64_t i = 0; i < n; i++) acc += w[i] * x[i];
    return acc;
}

static float dot_f16(const uint16_t *w, const float *x, int64_t n)
{
    float acc = 0;
    for (int64_t i = 0; i < n; i++) acc += MM_H2F(w[i]) * x[i];
    return acc;
}

static float dot_bf16(const uint16_t *w, const float *x, int64_t n)
{
    float acc = 0;
    for (int64_t i = 0; i < n; i++) acc += numfmt_bf16_to_f32(w[i]) * x[i];
    return acc;
}

/* sum over N_GROUPS groups g of 16 of sc[g] * xd[g] * sum(q * xq)
 * (+ bi[g] * xs[g] if BIAS): a row chunk unpacked as for dot_groups
 * against one int8 X row. Integer sums are exact; the rest is f32. */
static float dot_groups_x8(const int8_t *q, const float *sc, const float *bi, int bias,
                           const int8_t *xq, const float *xd, const float *xs, int n_groups)
{
    return mm_groups_x8_tail(q, sc, bi, bias, xq, xd, xs, 0, n_groups, 0);
}

#define MM_ROWS_UNPACK mm_unpack_portable
#define MM_ROWS_F32
#define MM_ROWS_X8
#include "mm_rows.h"

/* ---- the int8 GEMM ------------------------------------------------------- */

/* gemm_i8_rows (struct mm_kernels): each W row unpacked once per pass
 * into the thread's scratch, then dotted with every quantized X row of
 * the pass: exact integer sums per block (per half block for Q2_K, Q3_K,
 * Q6_K), scaled in f32 with the steps and order of the avx512 set's VNNI
 * GEMM (mm_gemm512.c), fmaf for its fused multiply-adds, so the same
 * bits (speed is secondary here). */
static inline int32_t g8_dot16(const int8_t *a, const int8_t *b)
{
    int32_t s = 0;
    for (int k = 0; k < 16; k++) s += (int32_t)a[k] * b[k];
    return s;
}

static void gemm_i8_rows(const struct mm_g8_job *j, int64_t r0, int64_t r1, int thread)
{
    const mm_ctx *c = j->c;
    const int type = j->w->type, bias = mm_has_bias(type);
    const int split = type == GGML_TYPE_Q2_K || type == GGML_TYPE_Q3_K ||
                      type == GGML_TYPE_Q6_K;
    const int64_t n = j->n_in, ng = n / 16, nb = n / 32;
    const int blck = mm_types[type].blck, bytes = mm_types[type].bytes;
    const int per_chunk = MM_QK_K / blck;
    const int64_t n_tb = n / blck;
    /* scratch: n codes, then ng scales and ng biases (1.5 n bytes) */
    int8_t *q = (int8_t *)(c->gw + (size_t)thread * (size_t)(c->max_n_in / 32 + 1));
    float *sc = (float *)(q + n), *bi = sc + ng;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)j->w->data + (size_t)r * j->row_bytes;
        for (int64_t tb = 0; tb < n_tb; tb += per_chunk) {
            const int64_t k0 = tb * blck;
            mm_unpack_portable[type](row + tb * bytes, (int)KVT_MIN((int64_t)per_chunk, n_tb - tb),
                                     q + k0, sc + k0 / 16, bi + k0 / 16);
        }
        for (int64_t i = 0; i < j->mc; i++) {
            const int8_t *xq = c->gq + i * n;
            const float *xd = c->gd32 + i * nb;
            const float *xs = split ? c->gs16 + i * ng : c->gs32 + i * nb;
            float f = 0;
            for (int64_t b = 0; b < nb; b++)
                for (int h = 0; h < (split ? 2 : 1); h++) {
                    const int64_t g = split ? 2 * b + h : b, k0 = split ? 16 * g : 32 * b;
                    int32_t isum = g8_dot16(q + k0, xq + k0);
                    if (!split) isum += g8_dot16(q + k0 + 16, xq + k0 + 16);
                    f = fmaf((float)isum, xd[b] * sc[k0 / 16], f);
                    if (bias) f = fmaf(bi[k0 / 16], xs[g], f);
                }
            j->y[(size_t)(j->i0 + i) * (size_t)j->n_out + (size_t)r] = f;
        }
    }
}

const struct mm_kernels mm_kernels_portable = {
    .set = CPU_SET_PORTABLE,
    .unpack = mm_unpack_portable,
    .dequant = dequant,
    .dot_rows = dot_rows,
    .dot_rows_x8 = dot_rows_x8_chunks,
    .gemm_i8_rows = gemm_i8_rows,
};
