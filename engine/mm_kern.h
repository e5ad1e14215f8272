/* mm_kern.h - private: what engine/matmul.c (the dispatch) and the kernel
 * files of each instruction set share.
 *
 *   matmul.c          public API (matmul.h): contexts, the choice of path
 *                     per product, the thread split, sgemm; x86-64-v2
 *   mm_portable.c     plain C kernels: the unpackers of every type, dots,
 *                     dequantization; the portable set's table
 *   mm_avx2.c         AVX2/FMA/F16C kernels (x86-64-v3); its unpackers
 *                     serve the avx512 set too
 *   mm_x8.c           int8 decode dots on 256-bit vectors, built twice:
 *                     maddubs (avx2) and VNNI (avx512), see mm_x8.h
 *   mm_avx512.c       AVX-512 kernels (x86-64-v4); the avx512 set's table
 *   mm_gemm512.c      the direct bf16 GEMM (AVX512-BF16) and the int8
 *                     GEMM (AVX512-VNNI) for prompt chunks
 *   mm_gemm2.c        the int8 GEMM of the avx2 set (vpmaddubsw)
 *   mm_unpack.h       the unpackers' structure, included by mm_portable.c
 *                     and mm_avx2.c with their code extractors
 *   mm_rows.h         the loops over a row's 256-element chunks, included
 *                     by each set's file with its kernels
 * Each .c file is compiled with its set's flags (Makefile). Every set
 * gives bit-identical dequantized weights; products differ between sets
 * only in f32 summation order.
 *
 * Block layouts (ggml, little-endian; "half" = IEEE fp16):
 *   Q8_0  34 B / 32: half d | i8 qs[32]                 w = qs*d
 *   Q4_0  18 B / 32: half d | u8 qs[16]                 w = (q-8)*d
 *   Q4_1  20 B / 32: half d, m | u8 qs[16]              w = q*d + m
 *   Q5_0  22 B / 32: half d | u8 qh[4] | u8 qs[16]      w = (q-16)*d
 *   Q5_1  24 B / 32: half d, m | u8 qh[4] | u8 qs[16]   w = q*d + m
 *     (32-blocks: element j < 16 is the low nibble of qs[j], element
 *      j + 16 its high nibble; Q5 bit 4 of element k is bit k of qh.)
 *   Q4_K 144 B / 256: half d, dmin | u8 scales[12] | u8 qs[128]
 *   Q5_K 176 B / 256: half d, dmin | u8 scales[12] | u8 qh[32] | u8 qs[128]
 *     (8 sub-blocks of 32 with 6-bit scale sc and min mn packed in
 *      scales[12] (scale_min_k4); w = (d*sc)*q - dmin*mn; each 64 elements
 *      take 32 bytes of qs, low nibbles first; Q5_K bit 4 of element l of
 *      sub-block s is bit s of qh[l].)
 *   Q6_K 210 B / 256: u8 ql[128] | u8 qh[64] | i8 scales[16] | half d
 *     (w = (d*scales[e/16])*(q-32), q = 4 bits of ql | 2 bits of qh.)
 *   Q2_K  84 B / 256: u8 scales[16] | u8 qs[64] | half d, dmin
 *     (16 sub-blocks of 16, scales[s] = sc | mn << 4 (4 bits each);
 *      w = (d*sc)*q - dmin*mn, q = 2 bits: element l of 32-run j (0..3)
 *      of half h is bits 2j..2j+1 of qs[32h + l].)
 *   Q3_K 110 B / 256: u8 hmask[32] | u8 qs[64] | u8 scales[12] | half d
 *     (2 low bits as Q2_K; element e's high bit is bit e/32 of
 *      hmask[e%32], clear = -4: q in -4..3; 16 6-bit scales sc packed in
 *      12 bytes (low nibbles in bytes 0-7, top 2 bits in bytes 8-11);
 *      w = (d*(sc-32))*q.)
 *   IQ4_NL 18 B / 32: half d | u8 qs[16]         w = d*K[q]
 *   IQ4_XS 136 B / 256: half d | u16 scales_h | u8 scales_l[4] | u8 qs[128]
 *     (8 sub-blocks of 32 laid out as IQ4_NL's qs, 6-bit scale ls = nibble
 *      of scales_l | 2 bits of scales_h; w = (d*(ls-32))*K[q].)
 *     K = the 16 non-linear levels of mm_iq4_levels (ggml's kvalues_iq4nl).
 *
 * Quantized rows are unpacked, <= 256 elements at a time, into int8 codes
 * plus one (scale, bias) per group of 16 (w = q*scale + bias). Dequantizing
 * follows ggml's arithmetic order exactly, so it is bit-equal to ggml's
 * dequantize_row_*. Builds use -std=c11, which implies -ffp-contract=off:
 * no silent FMA changes that order.
 */
#ifndef KVT_MM_KERN_H
#define KVT_MM_KERN_H

#include <stdint.h>
#include <string.h>

#include "base/kvt.h"
#include "base/numfmt.h"
#include "gguf.h"
#include "pool.h"

/* A half's value (base/numfmt.h: F16C in the files built with it). */
#define MM_H2F(h) numfmt_f16_to_f32(h)

#define MM_QK_K 256
#define MM_ROWS_MAX 128 /* W rows dequantized per sgemm call */
/* Up to this many rows of X go through the row-dot path, not a GEMM:
 * OpenBLAS has a large fixed cost per call for small m. */
#define MM_FUSED_M_MAX 8

struct mm_type_info {
    int blck;  /* elements per block, 0 = unsupported */
    int bytes; /* bytes per block */
};
extern const struct mm_type_info mm_types[GGML_TYPE_COUNT];

/* Bytes of a row of N elements of a supported TYPE. */
static inline size_t mm_row_bytes(int type, int64_t n)
{
    const struct mm_type_info *t = &mm_types[type];
    KVT_ASSERT(n % t->blck == 0);
    return (size_t)(n / t->blck) * (size_t)t->bytes;
}

typedef struct { uint16_t d; int8_t qs[32]; } blk_q8_0;
typedef struct { uint16_t d; uint8_t qs[16]; } blk_q4_0;
typedef struct { uint16_t d, m; uint8_t qs[16]; } blk_q4_1;
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[16]; } blk_q5_0;
typedef struct { uint16_t d, m; uint8_t qh[4]; uint8_t qs[16]; } blk_q5_1;
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[128]; } blk_q4_K;
typedef struct {
    uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128];
} blk_q5_K;
typedef struct {
    uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint16_t d;
} blk_q6_K;
typedef struct { uint8_t scales[16]; uint8_t qs[64]; uint16_t d, dmin; } blk_q2_K;
typedef struct {
    uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; uint16_t d;
} blk_q3_K;
typedef struct { uint16_t d; uint8_t qs[16]; } blk_iq4_nl;
typedef struct {
    uint16_t d, scales_h; uint8_t scales_l[4]; uint8_t qs[128];
} blk_iq4_xs;
_Static_assert(sizeof(blk_q8_0) == 34, "q8_0 block");
_Static_assert(sizeof(blk_q4_0) == 18, "q4_0 block");
_Static_assert(sizeof(blk_q4_1) == 20, "q4_1 block");
_Static_assert(sizeof(blk_q5_0) == 22, "q5_0 block");
_Static_assert(sizeof(blk_q5_1) == 24, "q5_1 block");
_Static_assert(sizeof(blk_q4_K) == 144, "q4_K block");
_Static_assert(sizeof(blk_q5_K) == 176, "q5_K block");
_Static_assert(sizeof(blk_q6_K) == 210, "q6_K block");
_Static_assert(sizeof(blk_q2_K) == 84, "q2_K block");
_Static_assert(sizeof(blk_q3_K) == 110, "q3_K block");
_Static_assert(sizeof(blk_iq4_nl) == 18, "iq4_nl block");
_Static_assert(sizeof(blk_iq4_xs) == 136, "iq4_xs block");

/* The 16 levels of a 4-bit IQ4_NL / IQ4_XS code (ggml's kvalues_iq4nl). */
extern const int8_t mm_iq4_levels[16];

/* 1 if the type's affine map has a bias (w = q*sc + bi), 0 if w = q*sc. */
static inline int mm_has_bias(int type)
{
    return type == GGML_TYPE_Q4_1 || type == GGML_TYPE_Q5_1 ||
           type == GGML_TYPE_Q4_K || type == GGML_TYPE_Q5_K ||
           type == GGML_TYPE_Q2_K;
}

/* ---- unpacking: codes and per-16 affine maps --------------------------- */

/* Decode NB blocks (nb * blck <= 256 elements) into int8 codes q[] and
 * one affine map per group of 16: w[i] = q[i] * sc[i/16] + bi[i/16].
 * Indexed by type; NULL for the float types. */
typedef void (*mm_unpack_fn)(const void *src, int nb, int8_t *q, float *sc,
                             float *bi);

/* The unpacker tables (mm_unpack.h) of mm_portable.c and mm_avx2.c. */
extern const mm_unpack_fn mm_unpack_portable[GGML_TYPE_COUNT];
extern const mm_unpack_fn mm_unpack_avx2[GGML_TYPE_COUNT]; /* avx2, avx512 */

/* ---- contexts ------------------------------------------------------------ */

/* Direct bf16 GEMM and int8 GEMM blocking (mm_gemm512.c). */
#define MM_BG_NW 12      /* W rows per microkernel (broadcast operand) */
#define MM_BG_NX 32      /* X rows per microkernel (2 zmm of 16) */
#define MM_BG_XCHUNK 256 /* X rows packed per pass, multiple of MM_BG_NX */
#define MM_IG_NW 6       /* W rows per microkernel (broadcast operand) */
#define MM_IG_NX 32      /* X rows per microkernel (2 zmm of 16) */
#define MM_IG_XCHUNK 256 /* X rows packed per pass, multiple of MM_IG_NX */

struct mm_ig_xblk {
    int32_t q[8][MM_IG_NX]; /* 4 int8 codes per lane */
    float d[MM_IG_NX];
    int32_t corr[MM_IG_NX];
    float ds[MM_IG_NX];
    int32_t corr_h[2][MM_IG_NX]; /* corr and ds of each half block */
    float ds_h[2][MM_IG_NX];
};
struct mm_ig_wblk {
    uint8_t u[MM_IG_NW][32];
    float d[2][MM_IG_NW], b[2][MM_IG_NW]; /* per half; equal for per-32 types */
};

/* The int8 GEMM of the avx2 and portable sets (matmul.c quantizes X,
 * the set's gemm_i8_rows multiplies; mm_gemm2.c, mm_portable.c). */
#define MM_G8_XCHUNK 512 /* X rows quantized per pass (a multiple of MM_G8_NX) */
#define MM_G8_NW 8       /* W rows per microkernel (avx2: one 32-bit lane each) */
#define MM_G8_NX 4       /* X rows per microkernel (avx2) */

/* MM_G8_NW rows of W, one block of 32 along k: u[s] holds 4 codes
 * (k = 4s..4s+3) of each row in its 32-bit lane (row k at bytes 4k..4k+3),
 * as int8 or offset to unsigned (mm_gemm2.c); d and b the scale and bias
 * of each half block (equal for per-32 types). */
struct mm_g8_wblk {
    uint8_t u[8][32];
    float d[2][MM_G8_NW], b[2][MM_G8_NW];
};

typedef struct mm_ctx mm_ctx;

/* One pass of the int8 GEMM of matmul.c: rows [i0, i0 + mc) of X,
 * quantized in c->gq etc. (pass-local row i at i * n_in, i * n_in / 16,
 * i * n_in / 32); Y (m, n_out). */
struct mm_g8_job {
    const mm_ctx *c;
    const gguf_tensor *w;
    const float *x;
    float *y;
    int64_t n_in, n_out;
    size_t row_bytes;
    int64_t i0, mc;
    int64_t rows_per_task; /* a multiple of MM_G8_NW */
};

/* One kernel set's entry points (the dispatch calls only these). */
struct mm_kernels {
    int set;                    /* enum cpu_set */
    const mm_unpack_fn *unpack; /* [GGML_TYPE_COUNT] */
    /* mm_dequant for every supported type */
    void (*dequant)(int type, const void *src, float *dst, int64_t n);
    /* acc[i] = dot(row, x + i*n) for i < m (m <= MM_FUSED_M_MAX), f32 X */
    void (*dot_rows)(int type, const uint8_t *row, const float *x, int64_t n, int m,
                     float *acc);
    /* the same against the m rows of X quantized in C (mm_x8_quant);
     * quantized types only */
    void (*dot_rows_x8)(int type, const uint8_t *row, const mm_ctx *c, int64_t n, int m,
                        float *acc);
    /* X row (n % 32 == 0) quantized as matmul.c's mm_x8_quant, the same
     * bits; NULL: that one */
    void (*quant_x8)(const float *x, int64_t n, int8_t *q, float *xd, float *xs,
                     float *xd32, float *xs32);
    /* the direct bf16 / int8 GEMMs (m > MM_FUSED_M_MAX), NULL if the set
     * has none */
    void (*gemm_bf16)(mm_ctx *c, const gguf_tensor *w, const float *x, int m, float *y);
    void (*gemm_int8)(mm_ctx *c, const gguf_tensor *w, const float *x, int m, float *y);
    /* the int8 GEMM through matmul.c (sets without gemm_int8): Y columns
     * [r0, r1) of the pass J, with the W scratch of THREAD (c->gw); the
     * types of mm_ig_type, n_in % 32 == 0 (and % 256 for K types). The
     * same f32 steps as gemm_int8 of mm_gemm512.c, so the same bits. */
    void (*gemm_i8_rows)(const struct mm_g8_job *j, int64_t r0, int64_t r1, int thread);
};

extern const struct mm_kernels mm_kernels_portable, mm_kernels_avx2, mm_kernels_avx512;

struct mm_ctx {
    const struct mm_kernels *k;
    pool *p;
    int n_threads;
    int64_t max_n_in;
    int bf16_gemm, int8_gemm; /* mm_params: paths allowed */
    float *scratch;  /* (n_threads, MM_ROWS_MAX, max_n_in) */
    uint32_t *xp;    /* (MM_BG_XCHUNK / MM_BG_NX, n_kp, MM_BG_NX) bf16 pairs;
                        NULL without the direct bf16 GEMM */
    uint16_t *wconv; /* (n_threads, MM_BG_NW, max_n_in) bf16 rows */
    struct mm_ig_xblk *ixp;  /* (MM_IG_XCHUNK / MM_IG_NX, n_blk32); NULL
                                without the int8 GEMM */
    struct mm_ig_wblk *iwp;  /* (n_threads, n_blk32) */
    int8_t *x8q;             /* (MM_FUSED_M_MAX, max_n_in) int8 X, mm_x8_quant */
    float *x8d, *x8s;        /* (MM_FUSED_M_MAX, max_n_in / 16) */
    float *x8s32;            /* (MM_FUSED_M_MAX, max_n_in / 32): d * sum per 32 */
    float *x8d32;            /* (MM_FUSED_M_MAX, max_n_in / 32): d per 32 */
    int8_t *x8qr;            /* (MM_FUSED_M_MAX, max_n_in): x8q in the order of
                                mm_x8_q4_order (Q4_0 weights) or mm_x8_k4_order
                                (Q4_K) */
    /* gemm_i8_rows: X of one pass quantized as mm_x8_quant (NULL without
     * it); rows past the pass up to a multiple of MM_G8_NX are zero */
    int8_t *gq;              /* (MM_G8_XCHUNK, max_n_in) codes */
    float *gd16, *gs16;      /* (MM_G8_XCHUNK, max_n_in / 16): d, d * sum(q) */
    float *gd32, *gs32;      /* (MM_G8_XCHUNK, max_n_in / 32): d, d * sum(q) */
    int32_t *gi16, *gi32;    /* sum(q) per 16 and per 32, likewise */
    struct mm_g8_wblk *gw;   /* (n_threads, max_n_in / 32) W scratch */
};

/* Q4_0 decode: per group of 4 blocks of 32 (128 codes), X codes are stored
 * as the first 16 of each block, then the last 16 of each, so that the low
 * nibbles of 4 blocks' qs meet the first 64 bytes and the high nibbles the
 * next 64 (and any 2 blocks of the group, at their offsets, in 256 bits).
 * Blocks after the last whole group of 4 keep the plain order. */
static inline void mm_x8_q4_order(const int8_t *q, int64_t n, int8_t *o)
{
    int64_t b = 0;
    for (; b + 4 <= n / 32; b += 4)
        for (int j = 0; j < 4; j++) {
            memcpy(o + 32 * b + 16 * j, q + 32 * (b + j), 16);
            memcpy(o + 32 * b + 64 + 16 * j, q + 32 * (b + j) + 16, 16);
        }
    memcpy(o + 32 * b, q + 32 * b, (size_t)(n - 32 * b));
}

/* Q4_K decode on 512 bits: per 256 elements, X blocks of 32 in the order
 * 0 2 1 3 4 6 5 7 (the sub-blocks of the low, then the high nibbles of
 * each 64 bytes of qs). N is a multiple of 256. */
static inline void mm_x8_k4_order(const int8_t *q, int64_t n, int8_t *o)
{
    static const int order[8] = {0, 2, 1, 3, 4, 6, 5, 7};
    for (int64_t b = 0; b < n; b += 256)
        for (int j = 0; j < 8; j++) memcpy(o + b + 32 * j, q + b + 32 * order[j], 32);
}

/* Rows of W per pool task for the direct GEMMs: about 4 tasks per thread
 * for balance, a multiple of the kernel's row block NW, at most 8 blocks. */
static inline int64_t mm_rows_per_task(int64_t n_out, int n_threads, int64_t nw)
{
    const int64_t want = 4 * (int64_t)n_threads;
    int64_t rpt = (n_out + want - 1) / want;
    rpt = (rpt + nw - 1) / nw * nw;
    return KVT_MIN((int64_t)8 * nw, rpt);
}

/* The scalar tail of the int8 group dots (groups [g, n_groups)) added to
 * ACC in order: every set's dot_groups_x8 ends with it (inline: it runs
 * once per chunk and row, mostly with nothing left to do). */
static inline float mm_groups_x8_tail(const int8_t *q, const float *sc, const float *bi,
                                      int bias, const int8_t *xq, const float *xd,
                                      const float *xs, int g, int n_groups, float acc)
{
    for (; g < n_groups; g++) {
        int32_t isum = 0;
        for (int i = 0; i < 16; i++) isum += (int32_t)q[16 * g + i] * xq[16 * g + i];
        float t = (float)isum * (sc[g] * xd[g]);
        if (bias) t += bi[g] * xs[g];
        acc += t;
    }
    return acc;
}

#endif
