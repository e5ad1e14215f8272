/* matmul.c - weight products in the stored GGUF type (see matmul.h).
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
 * mm_dequant follows ggml's arithmetic order exactly, so it is bit-equal
 * to ggml's dequantize_row_*. Builds use -std=c11, which implies
 * -ffp-contract=off: no silent FMA changes that order.
 *
 * Quantized rows are unpacked, <= 256 elements at a time, into int8 codes
 * plus one (scale, bias) per group of 16 (w = q*scale + bias). mm_dequant
 * turns those into floats. Small m (single tokens, m <= MM_FUSED_M_MAX):
 * X is quantized to int8 once per product (as the int8 GEMM's X) and each
 * W row dotted with it in integers (fused kernels for Q8_0, Q4_0, Q4_K;
 * the unpacked codes for the other types), unless the int8 switch is off;
 * F32/F16/BF16 rows (and all rows with the switch off) are dotted with the
 * f32 rows of X. This file is compiled once per kernel set (mm_kern.h):
 * the #if __AVX2__ / __AVX512F__ branches are that set's. Larger m:
 * per-thread row blocks of W are dequantized and handed to cblas_sgemm,
 * except on the direct bf16 path (BF16/F16 weights) and the int8 path
 * (the types of mm_ig_type; X quantized to int8 per block of 32, as ggml
 * does), both described where they are defined.
 */
#include "mm_kern.h" /* first: renames matmul.h's functions per MM_ISA */
#include "matmul.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "../base/kvt.h"
#include "cpu.h"

#if !defined(MM_ISA) || !defined(MM_SET)
#error "matmul.c is built once per kernel set: -DMM_ISA=avx2 -DMM_SET=CPU_SET_AVX2 (Makefile)"
#endif

#if defined(__AVX512F__) || defined(__AVX2__) || defined(__F16C__)
#include <immintrin.h>
#endif

/* OpenBLAS: our pool does the threading. */
void openblas_set_num_threads(int num_threads);

/* ---- type table ----------------------------------------------------- */

#define MM_QK_K 256

struct mm_type_info {
    int blck;  /* elements per block, 0 = unsupported */
    int bytes; /* bytes per block */
};

static const struct mm_type_info mm_types[GGML_TYPE_COUNT] = {
    [GGML_TYPE_F32] = {1, 4},    [GGML_TYPE_F16] = {1, 2},
    [GGML_TYPE_BF16] = {1, 2},   [GGML_TYPE_Q8_0] = {32, 34},
    [GGML_TYPE_Q4_0] = {32, 18}, [GGML_TYPE_Q4_1] = {32, 20},
    [GGML_TYPE_Q5_0] = {32, 22}, [GGML_TYPE_Q5_1] = {32, 24},
    [GGML_TYPE_Q4_K] = {256, 144}, [GGML_TYPE_Q5_K] = {256, 176},
    [GGML_TYPE_Q6_K] = {256, 210}, [GGML_TYPE_Q2_K] = {256, 84},
    [GGML_TYPE_Q3_K] = {256, 110}, [GGML_TYPE_IQ4_NL] = {32, 18},
    [GGML_TYPE_IQ4_XS] = {256, 136},
};

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
static const int8_t mm_iq4_levels[16] = {
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
};

int mm_type_supported(int type)
{
    return type >= 0 && type < GGML_TYPE_COUNT && mm_types[type].blck > 0;
}

/* Bytes of a row of N elements of a supported TYPE. */
static size_t mm_row_bytes(int type, int64_t n)
{
    const struct mm_type_info *t = &mm_types[type];
    KVT_ASSERT(n % t->blck == 0);
    return (size_t)(n / t->blck) * (size_t)t->bytes;
}

/* ---- fp16 / bf16 ---------------------------------------------------- */

static uint32_t mm_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float mm_bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

#ifndef __F16C__
static float mm_f16_to_f32_c(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F, mant = h & 0x3FF;
    if (exp == 0) { /* zero or subnormal: mant * 2^-24, exact */
        float v = (float)mant * 0x1p-24f;
        return mm_bits_f32(mm_f32_bits(v) | sign);
    }
    if (exp == 31) return mm_bits_f32(sign | 0x7F800000u | (mant << 13));
    return mm_bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

static uint16_t mm_f32_to_f16_c(float f)
{
    uint32_t u = mm_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    u &= 0x7FFFFFFFu;
    if (u > 0x7F800000u) /* NaN: keep the top payload bits, make it quiet */
        return (uint16_t)(sign | 0x7E00 | ((u >> 13) & 0x3FF));
    if (u >= 0x477FF000u) return (uint16_t)(sign | 0x7C00); /* >= 65520 */
    if (u < 0x38800000u) { /* below 2^-14: f16 subnormal or zero */
        if (u <= 0x33000000u) return sign; /* <= 2^-25 rounds to 0 */
        uint32_t e = u >> 23, mant = (u & 0x7FFFFFu) | 0x800000u;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t h = mant >> shift, rem = mant & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = (u - 0x38000000u) >> 13, rem = u & 0x1FFF;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}
#endif

float mm_f16_to_f32(uint16_t h)
{
#ifdef __F16C__
    return _cvtsh_ss(h);
#else
    return mm_f16_to_f32_c(h);
#endif
}

uint16_t mm_f32_to_f16(float f)
{
#ifdef __F16C__
    return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
#else
    return mm_f32_to_f16_c(f);
#endif
}

float mm_bf16_to_f32(uint16_t h) { return mm_bits_f32((uint32_t)h << 16); }

uint16_t mm_f32_to_bf16(float f)
{
    uint32_t u = mm_f32_bits(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7FFFu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

#define H2F(h) mm_f16_to_f32(h)

/* ---- float types ------------------------------------------------------ */

static void dq_f16(const uint16_t *x, float *y, int64_t n)
{
    int64_t i = 0;
#if defined(__AVX512F__)
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_cvtph_ps(
            _mm256_loadu_si256((const __m256i *)(x + i))));
#elif defined(__F16C__) && defined(__AVX__)
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(
            _mm_loadu_si128((const __m128i *)(x + i))));
#endif
    for (; i < n; i++) y[i] = H2F(x[i]);
}

static void dq_bf16(const uint16_t *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = mm_bits_f32((uint32_t)x[i] << 16);
}

static uint32_t qh_u32(const uint8_t qh[4])
{
    return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 |
           (uint32_t)qh[3] << 24;
}

/* ---- unpacking: codes and per-16 affine maps ------------------------- */

/* 6-bit scale SC and min MN of sub-block J (0..7) of Q4_K / Q5_K. */
static void scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *mn)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *mn = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* Decode NB blocks (nb * blck <= 256 elements) into int8 codes q[] and
 * one affine map per group of 16: w[i] = q[i] * sc[i/16] + bi[i/16]. */
typedef void (*mm_unpack_fn)(const void *src, int nb, int8_t *q, float *sc,
                             float *bi);

static void up_q8_0(const void *src, int nb, int8_t *q, float *sc, float *bi)
{
    const blk_q8_0 *x = src;
    for (int i = 0; i < nb; i++, q += 32) {
        memcpy(q, x[i].qs, 32);
        sc[2 * i] = sc[2 * i + 1] = H2F(x[i].d);
        bi[2 * i] = bi[2 * i + 1] = 0;
    }
}

static void up_q4_0(const void *src, int nb, int8_t *q, float *sc, float *bi)
{
    const blk_q4_0 *x = src;
    for (int i = 0; i < nb; i++, q += 32) {
#if defined(__AVX2__)
        const __m128i m4 = _mm_set1_epi8(0xF), k8 = _mm_set1_epi8(8);
        const __m128i v = _mm_loadu_si128((const __m128i *)x[i].qs);
        _mm_storeu_si128((__m128i *)q, _mm_sub_epi8(_mm_and_si128(v, m4), k8));
        _mm_storeu_si128((__m128i *)(q + 16),
                         _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(v, 4), m4), k8));
#else
        for (int j = 0; j < 16; j++) {
            q[j] = (int8_t)((x[i].qs[j] & 0xF) - 8);
            q[j + 16] = (int8_t)((x[i].qs[j] >> 4) - 8);
        }
#endif
        sc[2 * i] = sc[2 * i + 1] = H2F(x[i].d);
        bi[2 * i] = bi[2 * i + 1] = 0;
    }
}

static void up_q4_1(const void *src, int nb, int8_t *q, float *sc, float *bi)
{
    const blk_q4_1 *x = src;
    for (int i = 0; i < nb; i++, q += 32) {
        for (int j = 0; j < 16; j++) {
            q[j] = (int8_t)(x[i].qs[j] & 0xF);
            q[j + 16] = (int8_t)(x[i].qs[j] >> 4);
        }
        sc[2 * i] = sc[2 * i + 1] = H2F(x[i].d);
        bi[2 * i] = bi[2 * i + 1] = H2F(x[i].m);
    }
}

static void up_q5(const uint8_t *qs, uint32_t qh, int off, int8_t *q)
{
    for (int j = 0; j < 16; j++) {
        q[j] = (int8_t)(((qs[j] & 0xF) | (((qh >> j) & 1) << 4)) - off);
        q[j + 16] = (int8_t)(((qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - off);
    }
}

static void up_q5_0(const void *src, int nb, int8_t *q, float *sc, float *bi)
{
    const blk_q5_0 *x = src;
    for (int i = 0; i < nb; i++, q += 32) {
        up_q5(x[i].qs, qh_u32(x[i].qh), 16, q);
        sc[2 * i] = sc[2 * i + 1] = H2F(x[i].d);
        bi[2 * i] = bi[2 * i + 1] = 0;
    }
}

static void up_q5_1(const void *src, int nb, int8_t *q, float *sc, float *bi)
{
    const blk_q5_1 *x = src;
    for (int i = 0; i < nb; i++, q += 32) {
        up_q5(x[i].qs, qh_u32(x[i].qh), 0, q);
        sc[2 * i] = sc[2 * i + 1] = H2F(x[i].d);
        bi[2 * i] = bi[2 * i + 1] = H2F(x[i].m);
    }
}

/* Scales of the 8 sub-blocks of a Q4_K / Q5_K block, as 16 groups. */
static void k4_scales(const uint8_t *scales, float d, float dmin, float *sc,
                      float *bi)
{
    for (int s = 0; s < 8; s++) {
        uint8_t a, b;
        scale_min_k4(s, scales, &a, &b);
        sc[2 * s] = sc[2 * s + 1] = d * a;
        bi[2 * s] = bi[2 * s + 1] = -(dmin * b);
    }
}

static void up_q4_K(const void *src, int nb, int8_t *q, float *sc, float *bi)
{
    KVT_ASSERT(nb == 1);
    const blk_q4_K *x = src;
#if defined(__AVX2__)
    const __m256i m4 = _mm256_set1_epi8(0xF);
    for (int j = 0; j < 4; j++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * j));
        _mm256_storeu_si256((__m256i *)(q + 64 * j), _mm256_and_si256(v, m4));
        _mm256_storeu_si256((__m256i *)(q + 64 * j + 32),
                            _mm256_and_si256(_mm256_srli_epi16(v, 4), m4));
    }
#else
    for (int j = 0; j < 4; j++)
        for (int l = 0; l < 32; l++) {
            q[64 * j + l] = (int8_t)(x->qs[32 * j + l] & 0xF);
            q[64 * j + 32 + l] = (int8_t)(x->qs[32 * j + l] >> 4);
        }
#endif
    k4_scales(x->scales, H2F(x->d), H2F(x->dmin), sc, bi);
}

static void up_q5_K(const void *src, int nb, int8_t *q, float *sc, float *bi)
{
    KVT_ASSERT(nb == 1);
    const blk_q5_K *x = src;
#if defined(__AVX2__)
    const __m256i m4 = _mm256_set1_epi8(0xF), b4 = _mm256_set1_epi8(0x10);
    /* h >> 2j per 16-bit lane keeps every byte's own bits 2j, 2j+1 at
     * bits 0, 1 of that byte (2j + 1 <= 7); they are then moved to bit 4. */
    __m256i h = _mm256_loadu_si256((const __m256i *)x->qh);
    for (int j = 0; j < 4; j++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * j));
        const __m256i hl = _mm256_and_si256(_mm256_slli_epi16(h, 4), b4);
        const __m256i hh = _mm256_and_si256(_mm256_slli_epi16(h, 3), b4);
        _mm256_storeu_si256((__m256i *)(q + 64 * j),
                            _mm256_or_si256(_mm256_and_si256(v, m4), hl));
        _mm256_storeu_si256((__m256i *)(q + 64 * j + 32),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4), hh));
        h = _mm256_srli_epi16(h, 2);
    }
#else
    for (int j = 0; j < 4; j++)
        for (int l = 0; l < 32; l++) {
            const uint8_t b = x->qs[32 * j + l], h = x->qh[l];
            q[64 * j + l] = (int8_t)((b & 0xF) | (((h >> (2 * j)) & 1) << 4));
            q[64 * j + 32 + l] = (int8_t)((b >> 4) | (((h >> (2 * j + 1)) & 1) << 4));
        }
#endif
    k4_scales(x->scales, H2F(x->d), H2F(x->dmin), sc, bi);
}

static void up_q6_K(const void *src, int nb, int8_t *q, float *sc, float *bi)
{
    KVT_ASSERT(nb == 1);
    const blk_q6_K *x = src;
    const float d = H2F(x->d);
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = x->ql + 64 * h, *qh = x->qh + 32 * h;
        int8_t *o = q + 128 * h;
#if defined(__AVX2__)
        const __m256i m4 = _mm256_set1_epi8(0xF), m30 = _mm256_set1_epi8(0x30);
        const __m256i k32 = _mm256_set1_epi8(32);
        const __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
        const __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
        const __m256i hb = _mm256_loadu_si256((const __m256i *)qh);
        const __m256i q1 = _mm256_or_si256(_mm256_and_si256(l0, m4),
            _mm256_and_si256(_mm256_slli_epi16(hb, 4), m30));
        const __m256i q2 = _mm256_or_si256(_mm256_and_si256(l1, m4),
            _mm256_and_si256(_mm256_slli_epi16(hb, 2), m30));
        const __m256i q3 = _mm256_or_si256(
            _mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(hb, m30));
        const __m256i q4 = _mm256_or_si256(
            _mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
            _mm256_and_si256(_mm256_srli_epi16(hb, 2), m30));
        _mm256_storeu_si256((__m256i *)o, _mm256_sub_epi8(q1, k32));
        _mm256_storeu_si256((__m256i *)(o + 32), _mm256_sub_epi8(q2, k32));
        _mm256_storeu_si256((__m256i *)(o + 64), _mm256_sub_epi8(q3, k32));
        _mm256_storeu_si256((__m256i *)(o + 96), _mm256_sub_epi8(q4, k32));
#else
        for (int l = 0; l < 32; l++) {
            o[l] = (int8_t)(((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32);
            o[l + 32] = (int8_t)(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
            o[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
            o[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
        }
#endif
    }
    for (int g = 0; g < 16; g++) {
        sc[g] = d * x->scales[g];
        bi[g] = 0;
    }
}

/* Q2_K / Q3_K: the 2-bit fields of 128 elements from 32 bytes QS into
 * Q[0..128): element 32j + l is bits 2j..2j+1 of qs[l]. */
static void up_2bits(const uint8_t *qs, int8_t *q)
{
#if defined(__AVX2__)
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m256i v = _mm256_loadu_si256((const __m256i *)qs);
    for (int j = 0; j < 4; j++)
        _mm256_storeu_si256((__m256i *)(q + 32 * j),
                            _mm256_and_si256(_mm256_srli_epi16(v, 2 * j), m3));
#else
    for (int j = 0; j < 4; j++)
        for (int l = 0; l < 32; l++) q[32 * j + l] = (int8_t)((qs[l] >> (2 * j)) & 3);
#endif
}

static void up_q2_K(const void *src, int nb, int8_t *q, float *sc, float *bi)
{
    KVT_ASSERT(nb == 1);
    const blk_q2_K *x = src;
    up_2bits(x->qs, q);
    up_2bits(x->qs + 32, q + 128);
    const float d = H2F(x->d), dmin = H2F(x->dmin);
    for (int g = 0; g < 16; g++) {
        sc[g] = d * (float)(x->scales[g] & 0xF);
        bi[g] = -(dmin * (float)(x->scales[g] >> 4));
    }
}

static void up_q3_K(const void *src, int nb, int8_t *q, float *sc, float *bi)
{
    KVT_ASSERT(nb == 1);
    const blk_q3_K *x = src;
    up_2bits(x->qs, q);
    up_2bits(x->qs + 32, q + 128);
    /* q -= 4 where bit e/32 of hmask[e%32] is clear */
#if defined(__AVX2__)
    const __m256i hm = _mm256_loadu_si256((const __m256i *)x->hmask);
    const __m256i k4 = _mm256_set1_epi8(4);
    for (int j = 0; j < 8; j++) {
        const __m256i bit = _mm256_set1_epi8((char)(1 << j));
        const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(hm, bit), bit);
        const __m256i v = _mm256_loadu_si256((const __m256i *)(q + 32 * j));
        _mm256_storeu_si256((__m256i *)(q + 32 * j),
                            _mm256_sub_epi8(v, _mm256_andnot_si256(set, k4)));
    }
#else
    for (int e = 0; e < 256; e++)
        if (!((x->hmask[e % 32] >> (e / 32)) & 1)) q[e] = (int8_t)(q[e] - 4);
#endif
    const float d = H2F(x->d);
    const uint8_t *s = x->scales;
    for (int g = 0; g < 16; g++) {
        const int lo = g < 8 ? (s[g] & 0xF) : (s[g - 8] >> 4);
        const int hi = (s[8 + g % 4] >> (2 * (g / 4))) & 3;
        sc[g] = d * (float)((lo | hi << 4) - 32);
        bi[g] = 0;
    }
}

/* IQ4_NL / IQ4_XS: the 32 levels of one 32-block from 16 bytes QS. */
static void up_iq4_32(const uint8_t *qs, int8_t *q)
{
#if defined(__AVX2__)
    const __m128i tbl = _mm_loadu_si128((const __m128i *)mm_iq4_levels);
    const __m128i m4 = _mm_set1_epi8(0xF);
    const __m128i v = _mm_loadu_si128((const __m128i *)qs);
    _mm_storeu_si128((__m128i *)q, _mm_shuffle_epi8(tbl, _mm_and_si128(v, m4)));
    _mm_storeu_si128((__m128i *)(q + 16),
                     _mm_shuffle_epi8(tbl, _mm_and_si128(_mm_srli_epi16(v, 4), m4)));
#else
    for (int j = 0; j < 16; j++) {
        q[j] = mm_iq4_levels[qs[j] & 0xF];
        q[j + 16] = mm_iq4_levels[qs[j] >> 4];
    }
#endif
}

static void up_iq4_nl(const void *src, int nb, int8_t *q, float *sc, float *bi)
{
    const blk_iq4_nl *x = src;
    for (int i = 0; i < nb; i++, q += 32) {
        up_iq4_32(x[i].qs, q);
        sc[2 * i] = sc[2 * i + 1] = H2F(x[i].d);
        bi[2 * i] = bi[2 * i + 1] = 0;
    }
}

static void up_iq4_xs(const void *src, int nb, int8_t *q, float *sc, float *bi)
{
    KVT_ASSERT(nb == 1);
    const blk_iq4_xs *x = src;
    const float d = H2F(x->d);
    for (int s = 0; s < 8; s++) {
        up_iq4_32(x->qs + 16 * s, q + 32 * s);
        const int ls = ((x->scales_l[s / 2] >> (4 * (s % 2))) & 0xF) |
                       (((x->scales_h >> (2 * s)) & 3) << 4);
        sc[2 * s] = sc[2 * s + 1] = d * (float)(ls - 32);
        bi[2 * s] = bi[2 * s + 1] = 0;
    }
}

static mm_unpack_fn mm_unpacker(int type)
{
    switch (type) {
    case GGML_TYPE_Q8_0: return up_q8_0;
    case GGML_TYPE_Q4_0: return up_q4_0;
    case GGML_TYPE_Q4_1: return up_q4_1;
    case GGML_TYPE_Q5_0: return up_q5_0;
    case GGML_TYPE_Q5_1: return up_q5_1;
    case GGML_TYPE_Q4_K: return up_q4_K;
    case GGML_TYPE_Q5_K: return up_q5_K;
    case GGML_TYPE_Q6_K: return up_q6_K;
    case GGML_TYPE_Q2_K: return up_q2_K;
    case GGML_TYPE_Q3_K: return up_q3_K;
    case GGML_TYPE_IQ4_NL: return up_iq4_nl;
    case GGML_TYPE_IQ4_XS: return up_iq4_xs;
    default: return NULL;
    }
}

/* 1 if the type's affine map has a bias (w = q*sc + bi), 0 if w = q*sc. */
static int mm_has_bias(int type)
{
    return type == GGML_TYPE_Q4_1 || type == GGML_TYPE_Q5_1 ||
           type == GGML_TYPE_Q4_K || type == GGML_TYPE_Q5_K ||
           type == GGML_TYPE_Q2_K;
}

/* y[i] = q[i] * sc[i/16] (+ bi[i/16]) for N_GROUPS groups of 16, as a
 * separate multiply and add: the same roundings as ggml's d*q (+ m) or
 * d1*q - m1 (x - m == x + (-m) exactly). No add at all without a bias,
 * so that -0 stays -0. */
static void affine_store(const int8_t *q, const float *sc, const float *bi,
                         int bias, float *y, int n_groups)
{
    for (int g = 0; g < n_groups; g++, q += 16, y += 16) {
#if defined(__AVX512F__)
        __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                                     _mm_loadu_si128((const __m128i *)q))),
                                 _mm512_set1_ps(sc[g]));
        if (bias) v = _mm512_add_ps(v, _mm512_set1_ps(bi[g]));
        _mm512_storeu_ps(y, v);
#elif defined(__AVX2__)
        const __m128i b = _mm_loadu_si128((const __m128i *)q);
        const __m256 s8 = _mm256_set1_ps(sc[g]);
        __m256 v0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b)), s8);
        __m256 v1 = _mm256_mul_ps(
            _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(b, 8))), s8);
        if (bias) {
            v0 = _mm256_add_ps(v0, _mm256_set1_ps(bi[g]));
            v1 = _mm256_add_ps(v1, _mm256_set1_ps(bi[g]));
        }
        _mm256_storeu_ps(y, v0);
        _mm256_storeu_ps(y + 8, v1);
#else
        for (int i = 0; i < 16; i++) {
            float v = (float)q[i] * sc[g];
            y[i] = bias ? v + bi[g] : v;
        }
#endif
    }
}

void mm_dequant(int type, const void *src, float *dst, int64_t n)
{
    KVT_ASSERT(mm_type_supported(type));
    KVT_ASSERT(n >= 0);
    KVT_ASSERT(n % mm_types[type].blck == 0);
    switch (type) {
    case GGML_TYPE_F32: memcpy(dst, src, (size_t)n * sizeof(float)); return;
    case GGML_TYPE_F16: dq_f16(src, dst, n); return;
    case GGML_TYPE_BF16: dq_bf16(src, dst, n); return;
    default: break;
    }
    const int blck = mm_types[type].blck, bytes = mm_types[type].bytes;
    const mm_unpack_fn unpack = mm_unpacker(type);
    const int bias = mm_has_bias(type), per_chunk = MM_QK_K / blck;
    const int64_t n_blk = n / blck;
    const uint8_t *s = src;
    int8_t q[MM_QK_K];
    float sc[MM_QK_K / 16], bi[MM_QK_K / 16];
    for (int64_t b = 0; b < n_blk; b += per_chunk) {
        const int nb = (int)KVT_MIN((int64_t)per_chunk, n_blk - b);
        unpack(s + b * bytes, nb, q, sc, bi);
        affine_store(q, sc, bi, bias, dst + b * blck, nb * blck / 16);
    }
}

void mm_get_row(const gguf_tensor *w, int64_t r, float *dst)
{
    KVT_ASSERT(mm_type_supported(w->type));
    KVT_ASSERT(r >= 0);
    KVT_ASSERT(r < w->ne[1]);
    const size_t rb = mm_row_bytes(w->type, w->ne[0]);
    mm_dequant(w->type, (const uint8_t *)w->data + (size_t)r * rb, dst, w->ne[0]);
}

/* ---- dot kernels ------------------------------------------------------ */

#if defined(__AVX2__)
/* sum of the 8 lanes of V */
static inline float mm_hsum8(__m256 v)
{
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}
#endif

/* sum over N_GROUPS groups of 16 of (q*sc[g] + bi[g]) * x. */
static float dot_groups(const int8_t *q, const float *sc, const float *bi,
                        const float *x, int n_groups)
{
#if defined(__AVX512F__)
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int g = 0;
    for (; g + 2 <= n_groups; g += 2) {
        __m512 q0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
            _mm_loadu_si128((const __m128i *)(q + 16 * g))));
        __m512 q1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
            _mm_loadu_si128((const __m128i *)(q + 16 * g + 16))));
        __m512 w0 = _mm512_fmadd_ps(q0, _mm512_set1_ps(sc[g]), _mm512_set1_ps(bi[g]));
        __m512 w1 = _mm512_fmadd_ps(q1, _mm512_set1_ps(sc[g + 1]),
                                    _mm512_set1_ps(bi[g + 1]));
        a0 = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + 16 * g), a0);
        a1 = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + 16 * g + 16), a1);
    }
    for (; g < n_groups; g++) {
        __m512 q0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
            _mm_loadu_si128((const __m128i *)(q + 16 * g))));
        __m512 w0 = _mm512_fmadd_ps(q0, _mm512_set1_ps(sc[g]), _mm512_set1_ps(bi[g]));
        a0 = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + 16 * g), a0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
#elif defined(__AVX2__) && defined(__FMA__)
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (int g = 0; g < n_groups; g++) {
        __m128i b = _mm_loadu_si128((const __m128i *)(q + 16 * g));
        __m256 q0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
        __m256 q1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(b, 8)));
        __m256 s = _mm256_set1_ps(sc[g]), c = _mm256_set1_ps(bi[g]);
        a0 = _mm256_fmadd_ps(_mm256_fmadd_ps(q0, s, c), _mm256_loadu_ps(x + 16 * g), a0);
        a1 = _mm256_fmadd_ps(_mm256_fmadd_ps(q1, s, c), _mm256_loadu_ps(x + 16 * g + 8), a1);
    }
    __m256 a = _mm256_add_ps(a0, a1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
#else
    float acc = 0;
    for (int g = 0; g < n_groups; g++) {
        float part = 0;
        for (int i = 0; i < 16; i++)
            part += ((float)q[16 * g + i] * sc[g] + bi[g]) * x[16 * g + i];
        acc += part;
    }
    return acc;
#endif
}

static float dot_f32(const float *w, const float *x, int64_t n)
{
    int64_t i = 0;
    float acc = 0;
#if defined(__AVX512F__)
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    for (; i + 32 <= n; i += 32) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 16), _mm512_loadu_ps(x + i + 16), a1);
    }
    acc = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
#elif defined(__AVX2__) && defined(__FMA__)
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
    }
    acc = mm_hsum8(_mm256_add_ps(a0, a1));
#endif
    for (; i < n; i++) acc += w[i] * x[i];
    return acc;
}

static float dot_f16(const uint16_t *w, const float *x, int64_t n)
{
    int64_t i = 0;
    float acc = 0;
#if defined(__AVX512F__)
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    for (; i + 32 <= n; i += 32) {
        __m512 w0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + i)));
        __m512 w1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + i + 16)));
        a0 = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + i + 16), a1);
    }
    acc = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
    /* 4 accumulators: FMA latency, not the load port, bounds one chain */
    __m256 a[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 4; k++)
            a[k] = _mm256_fmadd_ps(
                _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i + 8 * k))),
                _mm256_loadu_ps(x + i + 8 * k), a[k]);
    for (; i + 8 <= n; i += 8)
        a[0] = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i))),
                               _mm256_loadu_ps(x + i), a[0]);
    acc = mm_hsum8(_mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3])));
#endif
    for (; i < n; i++) acc += H2F(w[i]) * x[i];
    return acc;
}

static float dot_bf16(const uint16_t *w, const float *x, int64_t n)
{
    int64_t i = 0;
    float acc = 0;
#if defined(__AVX512F__)
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    for (; i + 32 <= n; i += 32) {
        __m512i u0 = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(w + i)));
        __m512i u1 = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(w + i + 16)));
        a0 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(u0, 16)),
                             _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(u1, 16)),
                             _mm512_loadu_ps(x + i + 16), a1);
    }
    acc = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
#elif defined(__AVX2__) && defined(__FMA__)
    __m256 a0 = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) {
        __m256i u0 = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(w + i)));
        a0 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(u0, 16)),
                             _mm256_loadu_ps(x + i), a0);
    }
    float t[8];
    _mm256_storeu_ps(t, a0);
    for (int k = 0; k < 8; k++) acc += t[k];
#endif
    for (; i < n; i++) acc += mm_bf16_to_f32(w[i]) * x[i];
    return acc;
}

/* acc[i] = dot(row, x_i) for the M rows x_i = x + i*n of X (m, n), one
 * row of W of type TYPE: each chunk of W is unpacked once for all M. */
static void dot_rows(int type, const uint8_t *row, const float *x, int64_t n,
                     int m, float *acc)
{
    switch (type) {
    case GGML_TYPE_F32:
        for (int i = 0; i < m; i++) acc[i] = dot_f32((const float *)row, x + i * n, n);
        return;
    case GGML_TYPE_F16:
        for (int i = 0; i < m; i++) acc[i] = dot_f16((const uint16_t *)row, x + i * n, n);
        return;
    case GGML_TYPE_BF16:
        for (int i = 0; i < m; i++) acc[i] = dot_bf16((const uint16_t *)row, x + i * n, n);
        return;
    default: break;
    }
    const int blck = mm_types[type].blck, bytes = mm_types[type].bytes;
    const mm_unpack_fn unpack = mm_unpacker(type);
    const int per_chunk = MM_QK_K / blck;
    const int64_t n_blk = n / blck;
    int8_t q[MM_QK_K];
    float sc[MM_QK_K / 16], bi[MM_QK_K / 16];
    for (int i = 0; i < m; i++) acc[i] = 0;
    for (int64_t b = 0; b < n_blk; b += per_chunk) {
        const int nb = (int)KVT_MIN((int64_t)per_chunk, n_blk - b);
        unpack(row + b * bytes, nb, q, sc, bi);
        for (int i = 0; i < m; i++)
            acc[i] += dot_groups(q, sc, bi, x + i * n + b * blck, nb * blck / 16);
    }
}

/* ---- context and products --------------------------------------------- */

#define MM_ROWS_MAX 128 /* W rows dequantized per sgemm call */
/* Up to this many rows of X go through the fused path, not sgemm:
 * OpenBLAS has a large fixed cost per call for small m. */
#define MM_FUSED_M_MAX 8

/* Direct bf16 GEMM (m > MM_FUSED_M_MAX, BF16 or F16 weights, even n_in):
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
 *   vcvtne2ps2bf16 and vdpbf16ps treat f32/bf16 subnormals as zero. */
#define MM_BG_NW 12     /* W rows per microkernel (broadcast operand) */
#define MM_BG_NX 32     /* X rows per microkernel (2 zmm of 16) */
#define MM_BG_XCHUNK 256 /* X rows packed per pass, multiple of MM_BG_NX */

#if defined(__AVX512BF16__) && defined(__AVX512F__) && defined(__AVX512BW__)
#define MM_HAVE_BG 1
#else
#define MM_HAVE_BG 0
#endif

static int mm_bg_enabled = 1; /* mm_set_bf16_gemm */

/* Int8 GEMM (m > MM_FUSED_M_MAX, weight types of mm_ig_type):
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
 *   X must be finite (an inf or NaN is not propagated as in f32). */
#define MM_IG_NW 6       /* W rows per microkernel (broadcast operand) */
#define MM_IG_NX 32      /* X rows per microkernel (2 zmm of 16) */
#define MM_IG_XCHUNK 256 /* X rows packed per pass, multiple of MM_IG_NX */

#if defined(__AVX512VNNI__) && defined(__AVX512F__) && defined(__AVX512BW__)
#define MM_HAVE_IG 1
#else
#define MM_HAVE_IG 0
#endif

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

static int mm_ig_enabled = 1; /* mm_set_int8_gemm */

struct mm_ctx {
    const struct mm_kernels *k; /* first member: see mm_kern.h */
    pool *p;
    int n_threads;
    int64_t max_n_in;
    float *scratch;  /* (n_threads, MM_ROWS_MAX, max_n_in) */
    uint32_t *xp;    /* (MM_BG_XCHUNK / MM_BG_NX, n_kp, MM_BG_NX) bf16 pairs */
    uint16_t *wconv; /* (n_threads, MM_BG_NW, max_n_in) bf16 rows */
    struct mm_ig_xblk *ixp;  /* (MM_IG_XCHUNK / MM_IG_NX, n_blk32) */
    struct mm_ig_wblk *iwp;  /* (n_threads, n_blk32) */
    int8_t *x8q;             /* (MM_FUSED_M_MAX, max_n_in) int8 X, mm_x8_quant */
    float *x8d, *x8s;        /* (MM_FUSED_M_MAX, max_n_in / 16) */
    float *x8s32;            /* (MM_FUSED_M_MAX, max_n_in / 32): d * sum per 32 */
};

static int mm_cpu_bf16(void)
{
#if MM_HAVE_BG && defined(__GNUC__)
    static int have = -1; /* benign race: every thread computes the same */
    if (have < 0) {
        __builtin_cpu_init();
        have = __builtin_cpu_supports("avx512bf16") ? 1 : 0;
    }
    return have;
#else
    return 0;
#endif
}

void mm_set_bf16_gemm(int enable) { mm_bg_enabled = enable != 0; }

static int mm_cpu_vnni(void)
{
#if MM_HAVE_IG && defined(__GNUC__)
    static int have = -1; /* benign race: every thread computes the same */
    if (have < 0) {
        __builtin_cpu_init();
        have = __builtin_cpu_supports("avx512vnni") &&
               __builtin_cpu_supports("avx512bw") ? 1 : 0;
    }
    return have;
#else
    return 0;
#endif
}

/* Types on the int8 path, where it was measured faster than dequantize +
 * sgemm: one scale (and bias) per 32 elements, or per 16 (mm_ig_split). */
static int mm_ig_type(int type)
{
    return type == GGML_TYPE_Q8_0 || type == GGML_TYPE_Q4_0 || type == GGML_TYPE_Q4_K ||
           type == GGML_TYPE_Q5_K || type == GGML_TYPE_IQ4_NL || type == GGML_TYPE_IQ4_XS ||
           type == GGML_TYPE_Q2_K || type == GGML_TYPE_Q3_K || type == GGML_TYPE_Q6_K;
}

#if MM_HAVE_IG
/* Int8-path types with a scale (and bias) per 16 elements, not per 32. */
static int mm_ig_split(int type)
{
    return type == GGML_TYPE_Q2_K || type == GGML_TYPE_Q3_K || type == GGML_TYPE_Q6_K;
}
#endif

void mm_set_int8_gemm(int enable) { mm_ig_enabled = enable != 0; }

/* Types on the int8 decode path (m <= MM_FUSED_M_MAX): all quantized. */
static int mm_x8_type(int type)
{
    return type != GGML_TYPE_F32 && type != GGML_TYPE_F16 && type != GGML_TYPE_BF16;
}

int mm_int8_gemm_used(int type, int64_t n_in, int m)
{
    if (!mm_ig_enabled || n_in % 32 != 0) return 0;
    if (m <= MM_FUSED_M_MAX) return mm_x8_type(type);
    return MM_HAVE_IG && mm_ig_type(type) && mm_cpu_vnni();
}

int mm_bf16_gemm_used(int type, int64_t n_in, int m)
{
    return MM_HAVE_BG && mm_bg_enabled && m > MM_FUSED_M_MAX &&
           (type == GGML_TYPE_BF16 || type == GGML_TYPE_F16) &&
           n_in % 2 == 0 && mm_cpu_bf16();
}

int mm_ctx_create(pool *p, int64_t max_n_in, mm_ctx **out)
{
    KVT_ASSERT(p != NULL);
    KVT_ASSERT(max_n_in > 0);
    openblas_set_num_threads(1);
    mm_ctx *c = calloc(1, sizeof *c);
    if (!c) return -ENOMEM;
    c->k = &MM_KERNELS;
    c->p = p;
    c->n_threads = pool_threads(p);
    c->max_n_in = max_n_in;
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
    if (MM_HAVE_BG && mm_cpu_bf16()) {
        c->xp = malloc((size_t)MM_BG_XCHUNK * n_kp * sizeof *c->xp);
        c->wconv = malloc((size_t)c->n_threads * MM_BG_NW * (size_t)max_n_in *
                          sizeof *c->wconv);
    }
    if (MM_HAVE_IG && mm_cpu_vnni()) {
        const size_t n_blk = (size_t)(max_n_in + 31) / 32;
        c->ixp = malloc((size_t)(MM_IG_XCHUNK / MM_IG_NX) * n_blk * sizeof *c->ixp);
        c->iwp = malloc((size_t)c->n_threads * n_blk * sizeof *c->iwp);
    }
    if (!c->scratch || !c->x8q || !c->x8d || !c->x8s || !c->x8s32 || (MM_HAVE_BG && mm_cpu_bf16() && (!c->xp || !c->wconv)) ||
        (MM_HAVE_IG && mm_cpu_vnni() && (!c->ixp || !c->iwp))) {
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
    free(c);
}

/* ---- int8 decode (m <= MM_FUSED_M_MAX, quantized weights) ------------ */

/* X row (n elements, n % 32 == 0) quantized as the int8 GEMM's X (ggml's
 * q8_0 activations, the oracle is ref_quant_x8): per block of 32,
 * d = amax/127, q = rint(x * (127/amax)). Per group g of 16: xd[g] = d of
 * its block, xs[g] = d * sum(q of the group); per block xs32 = d * sum(q). */
static void mm_x8_quant(const float *x, int64_t n, int8_t *q, float *xd, float *xs,
                        float *xs32)
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
        xs32[b] = d * (float)(s[0] + s[1]);
    }
}

#if defined(__AVX2__) && defined(__FMA__)
/* 8 int32 lanes: lanes 0-3 sum to sum(w*x) over bytes 0-15, lanes 4-7
 * over bytes 16-31 (|w*x| pairs fit int16: |w| <= 128, |x| <= 127). */
static inline __m256i mm_dot8x32(__m256i w, __m256i x)
{
    const __m256i aw = _mm256_sign_epi8(w, w), sx = _mm256_sign_epi8(x, w);
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), aw, sx);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), _mm256_set1_epi16(1));
#endif
}
#endif

#if defined(__AVX2__) && defined(__FMA__)
/* As mm_dot8x32 for unsigned U (0..127) against signed X. */
static inline __m256i mm_dotu8x32(__m256i u, __m256i x)
{
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, x);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), _mm256_set1_epi16(1));
#endif
}

/* Fused single-row dots of a Q8_0 / Q4_0 / Q4_K row (NB blocks) with one
 * int8 X row (codes XQ, per-16 xd/xs as mm_x8_quant): the weight codes
 * stay in registers, one f32 step per 32 elements. Same sums as
 * dot_groups_x8 (exact integer parts, f32 scaling). */
static float dot_q8_0_x8(const blk_q8_0 *w, const int8_t *xq, const float *xd, int64_t nb)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        const __m256i p0 = mm_dot8x32(_mm256_loadu_si256((const __m256i *)w[b].qs),
                                      _mm256_loadu_si256((const __m256i *)(xq + 32 * b)));
        const __m256i p1 = mm_dot8x32(_mm256_loadu_si256((const __m256i *)w[b + 1].qs),
                                      _mm256_loadu_si256((const __m256i *)(xq + 32 * b + 32)));
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(H2F(w[b].d) * xd[2 * b]), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1),
                             _mm256_set1_ps(H2F(w[b + 1].d) * xd[2 * b + 2]), a1);
    }
    for (; b < nb; b++) {
        const __m256i p0 = mm_dot8x32(_mm256_loadu_si256((const __m256i *)w[b].qs),
                                      _mm256_loadu_si256((const __m256i *)(xq + 32 * b)));
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(H2F(w[b].d) * xd[2 * b]), a0);
    }
    return mm_hsum8(_mm256_add_ps(a0, a1));
}

/* 32 codes of a Q4_0-style block: low nibbles (elements 0-15) in the low
 * lane, high nibbles (16-31) in the high lane, as unsigned 0..15. */
static inline __m256i mm_nibbles32(const uint8_t *qs)
{
    const __m128i raw = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw),
                            _mm256_set1_epi8(0x0F));
}

static float dot_q4_0_x8(const blk_q4_0 *w, const int8_t *xq, const float *xd, int64_t nb)
{
    const __m256i eight = _mm256_set1_epi8(8);
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        const __m256i q0 = _mm256_sub_epi8(mm_nibbles32(w[b].qs), eight);
        const __m256i q1 = _mm256_sub_epi8(mm_nibbles32(w[b + 1].qs), eight);
        const __m256i p0 = mm_dot8x32(q0, _mm256_loadu_si256((const __m256i *)(xq + 32 * b)));
        const __m256i p1 = mm_dot8x32(q1, _mm256_loadu_si256((const __m256i *)(xq + 32 * b + 32)));
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(H2F(w[b].d) * xd[2 * b]), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1),
                             _mm256_set1_ps(H2F(w[b + 1].d) * xd[2 * b + 2]), a1);
    }
    for (; b < nb; b++) {
        const __m256i q0 = _mm256_sub_epi8(mm_nibbles32(w[b].qs), eight);
        const __m256i p0 = mm_dot8x32(q0, _mm256_loadu_si256((const __m256i *)(xq + 32 * b)));
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(H2F(w[b].d) * xd[2 * b]), a0);
    }
    return mm_hsum8(_mm256_add_ps(a0, a1));
}

/* 8 6-bit values (Q4_K/Q5_K scales or mins) as floats times D: sc
 * bytes 0-3 are q[0..3] & 63, 4-7 q[8..11] low nibbles | (q[0..3] >> 6) << 4;
 * mins likewise from q[4..7] and the high nibbles (scale_min_k4). */
static inline void mm_k4_scales8(const uint8_t *q, float d, float dmin, __m256 *sc,
                                 __m256 *mn)
{
    uint32_t a, b, c;
    memcpy(&a, q, 4);
    memcpy(&b, q + 4, 4);
    memcpy(&c, q + 8, 4);
    const uint64_t s8 = (uint64_t)(a & 0x3f3f3f3fu) |
                        (uint64_t)((c & 0x0f0f0f0fu) | ((a >> 2) & 0x30303030u)) << 32;
    const uint64_t m8 = (uint64_t)(b & 0x3f3f3f3fu) |
                        (uint64_t)(((c >> 4) & 0x0f0f0f0fu) | ((b >> 2) & 0x30303030u)) << 32;
    *sc = _mm256_mul_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(
                                               _mm_cvtsi64_si128((long long)s8))));
    *mn = _mm256_mul_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(
                                                  _mm_cvtsi64_si128((long long)m8))));
}

/* Q4_K: per 64 elements 32 bytes of qs, low nibbles = sub-block 2i, high
 * = 2i+1; w = (d*sc)*q - dmin*mn per sub-block of 32. The 8 integer sums
 * of a block land in one vector (hadd), scaled by (d*sc) * dx, minus
 * (dmin*mn) * (dx * sum(xq)) per sub-block. */
static float dot_q4_K_x8(const blk_q4_K *w, const int8_t *xq, const float *xd,
                         const float *xs32, int64_t nb)
{
    const __m256i lo = _mm256_set1_epi8(0x0F);
    const __m256i even = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
    __m256 acc = _mm256_setzero_ps(), neg = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++, xq += 256, xd += 16, xs32 += 8) {
        __m256i m[8];
        for (int i = 0; i < 4; i++) {
            const __m256i raw = _mm256_loadu_si256((const __m256i *)(w[b].qs + 32 * i));
            m[2 * i] = mm_dotu8x32(_mm256_and_si256(raw, lo),
                                   _mm256_loadu_si256((const __m256i *)(xq + 64 * i)));
            m[2 * i + 1] = mm_dotu8x32(_mm256_and_si256(_mm256_srli_epi16(raw, 4), lo),
                                       _mm256_loadu_si256((const __m256i *)(xq + 64 * i + 32)));
        }
        /* per sub-block j: m[j]'s 8 lanes; hadd folds them to one lane each */
        const __m256i h0 = _mm256_hadd_epi32(_mm256_hadd_epi32(m[0], m[1]),
                                             _mm256_hadd_epi32(m[2], m[3]));
        const __m256i h1 = _mm256_hadd_epi32(_mm256_hadd_epi32(m[4], m[5]),
                                             _mm256_hadd_epi32(m[6], m[7]));
        /* h0 = [s0a s1a s2a s3a | s0b s1b s2b s3b] (a, b: 128-bit halves);
         * adding the swapped halves gives s0..s3 in both */
        const __m256i s03 = _mm256_add_epi32(h0, _mm256_permute2x128_si256(h0, h0, 1));
        const __m256i s47 = _mm256_add_epi32(h1, _mm256_permute2x128_si256(h1, h1, 1));
        const __m256i sums = _mm256_blend_epi32(s03, s47, 0xF0); /* s0 .. s7 */
        __m256 sc, mn;
        mm_k4_scales8(w[b].scales, H2F(w[b].d), H2F(w[b].dmin), &sc, &mn);
        const __m256 dx = _mm256_permutevar8x32_ps(
            _mm256_loadu_ps(xd), even); /* lanes 0-3: xd[0,2,4,6] */
        const __m256 dx8 = _mm256_blend_ps(dx, _mm256_permutevar8x32_ps(
                                                   _mm256_loadu_ps(xd + 8), even), 0xF0);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), _mm256_mul_ps(sc, dx8), acc);
        neg = _mm256_fmadd_ps(mn, _mm256_loadu_ps(xs32), neg);
    }
    return mm_hsum8(_mm256_sub_ps(acc, neg));
}
#endif

/* sum over N_GROUPS groups g of 16 of sc[g] * xd[g] * sum(q * xq)
 * (+ bi[g] * xs[g] if BIAS): a row chunk unpacked as for dot_groups
 * against one int8 X row. Integer sums are exact; the rest is f32. */
static float dot_groups_x8(const int8_t *q, const float *sc, const float *bi, int bias,
                           const int8_t *xq, const float *xd, const float *xs,
                           int n_groups)
{
    int g = 0;
    float acc = 0;
#if defined(__AVX2__) && defined(__FMA__)
    __m256 va = _mm256_setzero_ps();
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (; g + 8 <= n_groups; g += 8) {
        __m256i m[4];
        for (int t = 0; t < 4; t++)
            m[t] = mm_dot8x32(_mm256_loadu_si256((const __m256i *)(q + 16 * g + 32 * t)),
                              _mm256_loadu_si256((const __m256i *)(xq + 16 * g + 32 * t)));
        /* lanes: groups g+0, 2, 4, 6 | g+1, 3, 5, 7; then in order */
        __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(m[0], m[1]),
                                      _mm256_hadd_epi32(m[2], m[3]));
        h = _mm256_permutevar8x32_epi32(h, order);
        const __m256 s = _mm256_mul_ps(_mm256_loadu_ps(sc + g), _mm256_loadu_ps(xd + g));
        va = _mm256_fmadd_ps(_mm256_cvtepi32_ps(h), s, va);
        if (bias) va = _mm256_fmadd_ps(_mm256_loadu_ps(bi + g), _mm256_loadu_ps(xs + g), va);
    }
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(va), _mm256_extractf128_ps(va, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    acc = _mm_cvtss_f32(h);
#endif
    for (; g < n_groups; g++) {
        int32_t isum = 0;
        for (int i = 0; i < 16; i++) isum += (int32_t)q[16 * g + i] * xq[16 * g + i];
        float t = (float)isum * (sc[g] * xd[g]);
        if (bias) t += bi[g] * xs[g];
        acc += t;
    }
    return acc;
}

/* dot_rows with the M rows of X quantized in C's x8 buffers. */
static void dot_rows_x8(int type, const uint8_t *row, const mm_ctx *c, int64_t n,
                        int m, float *acc)
{
    const int64_t ng = n / 16;
#if defined(__AVX2__) && defined(__FMA__)
    if (type == GGML_TYPE_Q8_0 || type == GGML_TYPE_Q4_0 || type == GGML_TYPE_Q4_K) {
        for (int i = 0; i < m; i++) {
            const int8_t *xq = c->x8q + i * n;
            const float *xd = c->x8d + i * ng;
            acc[i] = type == GGML_TYPE_Q8_0 ? dot_q8_0_x8((const void *)row, xq, xd, n / 32)
                   : type == GGML_TYPE_Q4_0 ? dot_q4_0_x8((const void *)row, xq, xd, n / 32)
                   : dot_q4_K_x8((const void *)row, xq, xd, c->x8s32 + i * (n / 32),
                                  n / MM_QK_K);
        }
        return;
    }
#endif
    const int blck = mm_types[type].blck, bytes = mm_types[type].bytes;
    const mm_unpack_fn unpack = mm_unpacker(type);
    const int bias = mm_has_bias(type);
    const int per_chunk = MM_QK_K / blck;
    const int64_t n_blk = n / blck;
    int8_t q[MM_QK_K];
    float sc[MM_QK_K / 16], bi[MM_QK_K / 16];
    for (int i = 0; i < m; i++) acc[i] = 0;
    for (int64_t b = 0; b < n_blk; b += per_chunk) {
        const int nb = (int)KVT_MIN((int64_t)per_chunk, n_blk - b);
        const int64_t k0 = b * blck;
        unpack(row + b * bytes, nb, q, sc, bi);
        for (int i = 0; i < m; i++)
            acc[i] += dot_groups_x8(q, sc, bi, bias, c->x8q + i * n + k0,
                                    c->x8d + i * ng + k0 / 16, c->x8s + i * ng + k0 / 16,
                                    nb * blck / 16);
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
            dot_rows_x8(j->w->type, base + (size_t)r * j->row_bytes, j->c, j->n_in,
                        j->m, acc);
        else
            dot_rows(j->w->type, base + (size_t)r * j->row_bytes, j->x, j->n_in,
                     j->m, acc);
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
        mm_dequant(j->w->type, rows, s, nr * j->n_in);
        b = s;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->m, (int)nr,
                (int)j->n_in, 1.0f, j->x, (int)j->n_in, b, (int)j->n_in, 0.0f,
                j->y + r0, (int)j->n_out);
}

#if MM_HAVE_BG || MM_HAVE_IG
/* Rows of W per pool task for the direct kernels: about 4 tasks per thread
 * for balance, a multiple of the kernel's row block NW, at most 8 blocks. */
static int64_t mm_rows_per_task(int64_t n_out, int n_threads, int64_t nw)
{
    const int64_t want = 4 * (int64_t)n_threads;
    int64_t rpt = (n_out + want - 1) / want;
    rpt = (rpt + nw - 1) / nw * nw;
    return KVT_MIN((int64_t)8 * nw, rpt);
}
#endif

#if MM_HAVE_BG

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
        for (; i < n; i++) buf[i] = mm_f32_to_bf16(H2F(src[i]));
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
            float *yb = j->y + (size_t)(j->i0 + b * MM_BG_NX) * (size_t)j->n_out + r;
            for (int i = 0; i < ni; i++, yb += j->n_out)
                for (int q = 0; q < nr; q++) yb[q] = t[q][i];
        }
    }
}

static void mm_matmul_bg(mm_ctx *c, const gguf_tensor *w, const float *x,
                         int m, float *y)
{
    struct mm_bg_job j = {
        .c = c, .w = w, .x = x, .y = y, .n_in = w->ne[0], .n_out = w->ne[1],
        .n_kp = w->ne[0] / 2,
    };
    j.rows_per_task = mm_rows_per_task(j.n_out, c->n_threads, MM_BG_NW);
    const int64_t n_tasks = (j.n_out + j.rows_per_task - 1) / j.rows_per_task;
    for (int64_t i0 = 0; i0 < m; i0 += MM_BG_XCHUNK) {
        j.i0 = i0;
        j.mc = KVT_MIN((int64_t)MM_BG_XCHUNK, (int64_t)m - i0);
        pool_run(c->p, mm_bg_pack_x, &j, (int)((j.mc + MM_BG_NX - 1) / MM_BG_NX));
        pool_run(c->p, mm_bg_task, &j, (int)n_tasks);
    }
}

#endif /* MM_HAVE_BG */

#if MM_HAVE_IG

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
    const mm_unpack_fn unpack = mm_unpacker(j->w->type);
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
            float *yb = j->y + (size_t)(j->i0 + b * MM_IG_NX) * (size_t)j->n_out + r;
            for (int i = 0; i < ni; i++, yb += j->n_out)
                for (int q = 0; q < nr; q++) yb[q] = t[q][i];
        }
    }
}

static void mm_matmul_ig(mm_ctx *c, const gguf_tensor *w, const float *x,
                         int m, float *y)
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
    for (int64_t i0 = 0; i0 < m; i0 += MM_IG_XCHUNK) {
        j.i0 = i0;
        j.mc = KVT_MIN((int64_t)MM_IG_XCHUNK, (int64_t)m - i0);
        pool_run(c->p, mm_ig_pack_x, &j, (int)((j.mc + MM_IG_NX - 1) / MM_IG_NX));
        pool_run(c->p, mm_ig_task, &j, (int)n_tasks);
    }
}

#endif /* MM_HAVE_IG */

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
        if (mm_int8_gemm_used(w->type, n_in, m)) {
            for (int i = 0; i < m; i++)
                mm_x8_quant(x + i * n_in, n_in, c->x8q + i * n_in,
                            c->x8d + i * (n_in / 16), c->x8s + i * (n_in / 16),
                            c->x8s32 + i * (n_in / 32));
            j.x8 = 1;
        }
        j.rows_per_task = KVT_MAX((int64_t)1, (n_out + want - 1) / want);
        const int64_t n_tasks = (n_out + j.rows_per_task - 1) / j.rows_per_task;
        pool_run(c->p, mm_task_vec, &j, (int)n_tasks);
        return;
    }
#if MM_HAVE_BG
    if (mm_bf16_gemm_used(w->type, n_in, m) && c->xp) {
        mm_matmul_bg(c, w, x, m, y);
        return;
    }
#endif
#if MM_HAVE_IG
    if (mm_int8_gemm_used(w->type, n_in, m) && c->ixp) {
        mm_matmul_ig(c, w, x, m, y);
        return;
    }
#endif
    int64_t rpt = (n_out + want - 1) / want;
    rpt = (rpt + 15) / 16 * 16;
    j.rows_per_task = KVT_MIN((int64_t)MM_ROWS_MAX, rpt);
    const int64_t n_tasks = (n_out + j.rows_per_task - 1) / j.rows_per_task;
    pool_run(c->p, mm_task_gemm, &j, (int)n_tasks);
}

/* This kernel set's table (mm_kern.h). */
const struct mm_kernels MM_KERNELS = {
    .set = MM_SET,
    .ctx_create = mm_ctx_create,
    .ctx_free = mm_ctx_free,
    .matmul = mm_matmul,
    .set_bf16_gemm = mm_set_bf16_gemm,
    .bf16_gemm_used = mm_bf16_gemm_used,
    .set_int8_gemm = mm_set_int8_gemm,
    .int8_gemm_used = mm_int8_gemm_used,
    .get_row = mm_get_row,
    .dequant = mm_dequant,
    .f16_to_f32 = mm_f16_to_f32,
    .f32_to_f16 = mm_f32_to_f16,
};
