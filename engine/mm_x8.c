/* mm_x8.c - int8 decode dots on 256-bit vectors (m <= MM_FUSED_M_MAX,
 * quantized weights, X quantized by mm_x8_quant), built once per vector
 * set (mm_x8.h): -DMM_X8_SET=avx2 or avx512. The weight codes of Q8_0,
 * Q4_0 and Q4_K stay in registers (fused, one f32 step per 32 elements);
 * the other types go through the unpacked chunks. */
#include "mm_x8.h"

#if !defined(MM_X8_SET) || !defined(__AVX2__) || !defined(__FMA__)
#error "mm_x8.c is built per vector set: -DMM_X8_SET=avx2 -march=x86-64-v3 (Makefile)"
#endif

#define MM_CAT_(a, b) a##_##b
#define MM_CAT(a, b) MM_CAT_(a, b)

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
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(MM_H2F(w[b].d) * xd[2 * b]), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1),
                             _mm256_set1_ps(MM_H2F(w[b + 1].d) * xd[2 * b + 2]), a1);
    }
    for (; b < nb; b++) {
        const __m256i p0 = mm_dot8x32(_mm256_loadu_si256((const __m256i *)w[b].qs),
                                      _mm256_loadu_si256((const __m256i *)(xq + 32 * b)));
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(MM_H2F(w[b].d) * xd[2 * b]), a0);
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

/* Q4_0 blocks one at a time (the tail after the groups of 8 below). */
static float dot_q4_0_x8_1(const blk_q4_0 *w, const int8_t *xq, const float *xd, int64_t nb)
{
    const __m256i eight = _mm256_set1_epi8(8);
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        const __m256i q0 = _mm256_sub_epi8(mm_nibbles32(w[b].qs), eight);
        const __m256i q1 = _mm256_sub_epi8(mm_nibbles32(w[b + 1].qs), eight);
        const __m256i p0 = mm_dot8x32(q0, _mm256_loadu_si256((const __m256i *)(xq + 32 * b)));
        const __m256i p1 = mm_dot8x32(q1, _mm256_loadu_si256((const __m256i *)(xq + 32 * b + 32)));
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(MM_H2F(w[b].d) * xd[2 * b]), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1),
                             _mm256_set1_ps(MM_H2F(w[b + 1].d) * xd[2 * b + 2]), a1);
    }
    for (; b < nb; b++) {
        const __m256i q0 = _mm256_sub_epi8(mm_nibbles32(w[b].qs), eight);
        const __m256i p0 = mm_dot8x32(q0, _mm256_loadu_si256((const __m256i *)(xq + 32 * b)));
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(MM_H2F(w[b].d) * xd[2 * b]), a0);
    }
    return mm_hsum8(_mm256_add_ps(a0, a1));
}

/* Q4_0, 8 blocks (144 bytes) per step against X in mm_x8_q4_order: the
 * codes enter unsigned (0..15) and the 8 of each weight go back in f32:
 *   dot = sum_b dw_b * (dx_b * sum(q x) - 8 * xs32_b)
 * (xs32 = dx * sum(x codes)). The 8 weight scales of a step are converted
 * in one instruction; the integer sums stay per block in 4 lanes each. */
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
static float dot_q4_0_x8(const blk_q4_0 *w, const int8_t *xq, const int8_t *xq4,
                         const float *xd, const float *xd32, const float *xs32, int64_t nb)
{
    const __m512i lo = _mm512_set1_epi8(0x0F);
    /* word indices into two 64-byte loads: the 8 scales of a step in bytes
     * 0..127 (9 words apart); the qs of blocks 0-3 from bytes 0..127 (block
     * j's 8 words from 9j + 1); those of blocks 4-7 from bytes 72..135 (A)
     * and 80..143 (B, words 32+): block 4+j at A word 1 + 9j, block 7's
     * last 4 words (bytes 136..143) B words 28..31 */
    static const uint16_t idx[3][32] = {
        {0, 9, 18, 27, 36, 45, 54, 63},
        {1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17,
         19, 20, 21, 22, 23, 24, 25, 26, 28, 29, 30, 31, 32, 33, 34, 35},
        {1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17,
         19, 20, 21, 22, 23, 24, 25, 26, 28, 29, 30, 31, 60, 61, 62, 63},
    };
    const __m512i id = _mm512_loadu_si512(idx[0]), iq0 = _mm512_loadu_si512(idx[1]),
                  iq1 = _mm512_loadu_si512(idx[2]);
    const __m512i sel0 = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    const __m512i sel1 = _mm512_setr_epi32(4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    __m256 cor = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 8 <= nb; b += 8) {
        const uint8_t *p = (const uint8_t *)(w + b);
        const __m512i l0 = _mm512_loadu_si512(p), l1 = _mm512_loadu_si512(p + 64);
        const __m512i a = _mm512_loadu_si512(p + 72), bb = _mm512_loadu_si512(p + 80);
        const __m256 dw = _mm256_cvtph_ps(
            _mm512_castsi512_si128(_mm512_permutex2var_epi16(l0, id, l1)));
        const __m512 s = _mm512_castps256_ps512(_mm256_mul_ps(dw, _mm256_loadu_ps(xd32 + b)));
        cor = _mm256_fmadd_ps(dw, _mm256_loadu_ps(xs32 + b), cor);
        const __m512i r0 = _mm512_permutex2var_epi16(l0, iq0, l1);
        const __m512i r1 = _mm512_permutex2var_epi16(a, iq1, bb);
        const int8_t *x = xq4 + 32 * b;
        __m512i i0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(r0, lo),
                                         _mm512_loadu_si512(x));
        __m512i i1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(r1, lo),
                                         _mm512_loadu_si512(x + 128));
        i0 = _mm512_dpbusd_epi32(i0, _mm512_and_si512(_mm512_srli_epi16(r0, 4), lo),
                                 _mm512_loadu_si512(x + 64));
        i1 = _mm512_dpbusd_epi32(i1, _mm512_and_si512(_mm512_srli_epi16(r1, 4), lo),
                                 _mm512_loadu_si512(x + 192));
        acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i0), _mm512_permutexvar_ps(sel0, s), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i1), _mm512_permutexvar_ps(sel1, s), acc1);
    }
    float r = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) - 8.0f * mm_hsum8(cor);
    if (b < nb) r += dot_q4_0_x8_1(w + b, xq + 32 * b, xd + 2 * b, nb - b);
    return r;
}
#else
/* 2 blocks per 256 bits: maddubs of the unsigned codes with X, per block
 * 4 int32 lanes. */
/* blocks 2k, 2k+1 of a step of 8 (V) against X group (k >> 1) of 4 at
 * X + 128 (k >> 1), the pair at + 32 (k & 1): 4 int32 lanes each */
static inline __attribute__((always_inline)) __m256i mm_q4_0_pair(const blk_q4_0 *v, const int8_t *x, int k)
{
    const __m256i lo = _mm256_set1_epi8(0x0F);
    const __m256i raw = _mm256_loadu2_m128i((const __m128i *)v[2 * k + 1].qs,
                                            (const __m128i *)v[2 * k].qs);
    const int8_t *xg = x + 128 * (k >> 1) + 32 * (k & 1);
    const __m256i pl = _mm256_maddubs_epi16(_mm256_and_si256(raw, lo),
                                            _mm256_loadu_si256((const __m256i *)xg));
    const __m256i ph = _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(raw, 4), lo),
                                            _mm256_loadu_si256((const __m256i *)(xg + 64)));
    return _mm256_madd_epi16(_mm256_add_epi16(pl, ph), _mm256_set1_epi16(1));
}

/* The 8 scales (halves) of blocks V[0..7] (144 bytes) in order, from 4
 * loads of 32 bytes at V + 36j: block 2j's d is word 0 of the low 128-bit
 * lane, block 2j+1's word 1 of the high lane (byte 18); each lane is
 * shifted to word 2j / 2j+1, blended, and the lanes merged. */
static inline __m128i mm_q4_0_scales8(const blk_q4_0 *v)
{
    const uint8_t *p = (const uint8_t *)v;
    const __m256i l0 = _mm256_loadu_si256((const __m256i *)p);
    const __m256i l1 = _mm256_slli_si256(_mm256_loadu_si256((const __m256i *)(p + 36)), 4);
    const __m256i l2 = _mm256_slli_si256(_mm256_loadu_si256((const __m256i *)(p + 72)), 8);
    const __m256i l3 = _mm256_slli_si256(_mm256_loadu_si256((const __m256i *)(p + 108)), 12);
    const __m256i m = _mm256_blend_epi16(
        _mm256_blend_epi16(_mm256_blend_epi16(l0, l1, 0x0C), l2, 0x30), l3, 0xC0);
    return _mm_blend_epi16(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1), 0xAA);
}

static float dot_q4_0_x8(const blk_q4_0 *w, const int8_t *xq, const int8_t *xq4,
                         const float *xd, const float *xd32, const float *xs32, int64_t nb)
{
    const __m256i sel0 = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    const __m256i sel1 = _mm256_setr_epi32(2, 2, 2, 2, 3, 3, 3, 3);
    const __m256i sel2 = _mm256_setr_epi32(4, 4, 4, 4, 5, 5, 5, 5);
    const __m256i sel3 = _mm256_setr_epi32(6, 6, 6, 6, 7, 7, 7, 7);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), cor = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 8 <= nb; b += 8) {
        const blk_q4_0 *v = w + b;
        const __m256 dw = _mm256_cvtph_ps(mm_q4_0_scales8(v));
        const __m256 s = _mm256_mul_ps(dw, _mm256_loadu_ps(xd32 + b));
        cor = _mm256_fmadd_ps(dw, _mm256_loadu_ps(xs32 + b), cor);
        const int8_t *x = xq4 + 32 * b;
        const __m256i i0 = mm_q4_0_pair(v, x, 0), i1 = mm_q4_0_pair(v, x, 1);
        const __m256i i2 = mm_q4_0_pair(v, x, 2), i3 = mm_q4_0_pair(v, x, 3);
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i0), _mm256_permutevar8x32_ps(s, sel0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i1), _mm256_permutevar8x32_ps(s, sel1), acc1);
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i2), _mm256_permutevar8x32_ps(s, sel2), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i3), _mm256_permutevar8x32_ps(s, sel3), acc1);
    }
    float r = mm_hsum8(_mm256_sub_ps(_mm256_add_ps(acc0, acc1), _mm256_mul_ps(_mm256_set1_ps(8.0f), cor)));
    if (b < nb) r += dot_q4_0_x8_1(w + b, xq + 32 * b, xd + 2 * b, nb - b);
    return r;
}
#endif

/* The 8 6-bit scales and mins of a Q4_K block as floats times its d and
 * dmin (both halves converted in one instruction): sc bytes 0-3 are
 * q[0..3] & 63, 4-7 q[8..11] low nibbles | (q[0..3] >> 6) << 4; mins
 * likewise from q[4..7] and the high nibbles (scale_min_k4). */
static inline void mm_k4_scales8(const blk_q4_K *w, __m256 *sc, __m256 *mn)
{
    const uint8_t *q = w->scales;
    uint32_t a, b, c, dd;
    memcpy(&a, q, 4);
    memcpy(&b, q + 4, 4);
    memcpy(&c, q + 8, 4);
    memcpy(&dd, &w->d, 4); /* d, dmin */
    const __m256 dm = _mm256_castps128_ps256(_mm_cvtph_ps(_mm_cvtsi32_si128((int)dd)));
    const uint64_t s8 = (uint64_t)(a & 0x3f3f3f3fu) |
                        (uint64_t)((c & 0x0f0f0f0fu) | ((a >> 2) & 0x30303030u)) << 32;
    const uint64_t m8 = (uint64_t)(b & 0x3f3f3f3fu) |
                        (uint64_t)(((c >> 4) & 0x0f0f0f0fu) | ((b >> 2) & 0x30303030u)) << 32;
    *sc = _mm256_mul_ps(_mm256_permutevar8x32_ps(dm, _mm256_setzero_si256()),
                        _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)s8))));
    *mn = _mm256_mul_ps(_mm256_permutevar8x32_ps(dm, _mm256_set1_epi32(1)),
                        _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)m8))));
}

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
/* Q4_K on 512 bits: 64 bytes of qs hold sub-blocks 0, 2 (low nibbles) and
 * 1, 3 (high) of 128 elements; X in mm_x8_k4_order meets them directly.
 * Each 256-bit half of a product is one sub-block, scaled by
 * d*sc*dx in f32; the mins as in the 256-bit version. */
static float dot_q4_K_x8(const blk_q4_K *w, const int8_t *xq, const int8_t *xqr,
                         const float *xd, const float *xd32, const float *xs32, int64_t nb)
{
    (void)xq;
    (void)xd;
    const __m512i lo = _mm512_set1_epi8(0x0F);
    const __m512i sel[4] = {
        _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2),
        _mm512_setr_epi32(1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3),
        _mm512_setr_epi32(4, 4, 4, 4, 4, 4, 4, 4, 6, 6, 6, 6, 6, 6, 6, 6),
        _mm512_setr_epi32(5, 5, 5, 5, 5, 5, 5, 5, 7, 7, 7, 7, 7, 7, 7, 7)};
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    __m256 neg = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++, xqr += 256, xd32 += 8, xs32 += 8) {
        const __m512i r0 = _mm512_loadu_si512(w[b].qs), r1 = _mm512_loadu_si512(w[b].qs + 64);
        __m512i i[4];
        i[0] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(r0, lo),
                                   _mm512_loadu_si512(xqr));
        i[1] = _mm512_dpbusd_epi32(_mm512_setzero_si512(),
                                   _mm512_and_si512(_mm512_srli_epi16(r0, 4), lo),
                                   _mm512_loadu_si512(xqr + 64));
        i[2] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(r1, lo),
                                   _mm512_loadu_si512(xqr + 128));
        i[3] = _mm512_dpbusd_epi32(_mm512_setzero_si512(),
                                   _mm512_and_si512(_mm512_srli_epi16(r1, 4), lo),
                                   _mm512_loadu_si512(xqr + 192));
        __m256 sc, mn;
        mm_k4_scales8(&w[b], &sc, &mn);
        const __m512 s = _mm512_castps256_ps512(_mm256_mul_ps(sc, _mm256_loadu_ps(xd32)));
        acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i[0]), _mm512_permutexvar_ps(sel[0], s), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i[1]), _mm512_permutexvar_ps(sel[1], s), acc1);
        acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i[2]), _mm512_permutexvar_ps(sel[2], s), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i[3]), _mm512_permutexvar_ps(sel[3], s), acc1);
        neg = _mm256_fmadd_ps(mn, _mm256_loadu_ps(xs32), neg);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) - mm_hsum8(neg);
}
#else
/* Q4_K: per 64 elements 32 bytes of qs, low nibbles = sub-block 2i, high
 * = 2i+1; w = (d*sc)*q - dmin*mn per sub-block of 32. The 8 integer sums
 * of a block land in one vector (hadd), scaled by (d*sc) * dx, minus
 * (dmin*mn) * (dx * sum(xq)) per sub-block. */
static inline __attribute__((always_inline)) float dot_q4_K_x8(const blk_q4_K *w, const int8_t *xq, const int8_t *xqr,
                         const float *xd, const float *xd32, const float *xs32, int64_t nb)
{
    (void)xqr;
    (void)xd;
    const __m256i lo = _mm256_set1_epi8(0x0F);
    __m256 acc = _mm256_setzero_ps(), neg = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++, xq += 256, xd32 += 8, xs32 += 8) {
        __m256i m[8];
        /* unrolled: m[] stays in registers (a loop kept it on the stack) */
#pragma GCC unroll 4
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
        /* h0 = [s0a s1a s2a s3a | s0b s1b s2b s3b] (a, b: 128-bit halves),
         * h1 the same for s4..s7: the a halves plus the b halves */
        const __m256i sums = _mm256_add_epi32(_mm256_permute2x128_si256(h0, h1, 0x20),
                                              _mm256_permute2x128_si256(h0, h1, 0x31));
        __m256 sc, mn;
        mm_k4_scales8(&w[b], &sc, &mn);
        /* dx of sub-blocks 0..7: xd32 (the same values as xd[0, 2, .., 14]) */
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), _mm256_mul_ps(sc, _mm256_loadu_ps(xd32)),
                              acc);
        neg = _mm256_fmadd_ps(mn, _mm256_loadu_ps(xs32), neg);
    }
    return mm_hsum8(_mm256_sub_ps(acc, neg));
}

#endif

/* Q6_K: the codes enter unsigned (0..63), 32 at a time against one X
 * block (integer sums per group of 16 in 4 lanes each), scaled in f32 by
 * d * sc[g] * dx; the -32 comes back as 32 d sum_g sc[g] xs[g] (xs: dx *
 * sum of the group's X codes). */
static inline __attribute__((always_inline)) float dot_q6_K_x8(const blk_q6_K *w, const int8_t *xq, const float *xd32,
                                                               const float *xs, int64_t nb)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    const __m256i pair = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
    const __m256i sel[4] = {_mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1),
                            _mm256_setr_epi32(2, 2, 2, 2, 3, 3, 3, 3),
                            _mm256_setr_epi32(4, 4, 4, 4, 5, 5, 5, 5),
                            _mm256_setr_epi32(6, 6, 6, 6, 7, 7, 7, 7)};
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), cor = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++, xq += 256, xd32 += 8, xs += 16) {
        const __m128i s8 = _mm_loadu_si128((const __m128i *)w[b].scales);
        const __m256 sc0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(s8));
        const __m256 sc1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(s8, 8)));
        const __m256 d = _mm256_set1_ps(MM_H2F(w[b].d));
        cor = _mm256_fmadd_ps(_mm256_fmadd_ps(sc1, _mm256_loadu_ps(xs + 8),
                                              _mm256_mul_ps(sc0, _mm256_loadu_ps(xs))), d, cor);
        const __m256 dd = _mm256_mul_ps(d, _mm256_loadu_ps(xd32)); /* per X block */
        /* both loops unrolled: constant selectors, no branch on k */
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            /* group g of this half: sc[8h + g] * d * dx[4h + g/2] */
            const __m256 sg = _mm256_mul_ps(h ? sc1 : sc0,
                _mm256_permutevar8x32_ps(dd, _mm256_add_epi32(pair, _mm256_set1_epi32(4 * h))));
            const uint8_t *ql = w[b].ql + 64 * h, *qh = w[b].qh + 32 * h;
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            const __m256i hb = _mm256_loadu_si256((const __m256i *)qh);
            __m256i u[4];
            u[0] = _mm256_or_si256(_mm256_and_si256(l0, m4),
                                   _mm256_and_si256(_mm256_slli_epi16(hb, 4), m30));
            u[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                                   _mm256_and_si256(_mm256_slli_epi16(hb, 2), m30));
            u[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                   _mm256_and_si256(hb, m30));
            u[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                   _mm256_and_si256(_mm256_srli_epi16(hb, 2), m30));
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                const __m256i i = mm_dotu8x32(
                    u[k], _mm256_loadu_si256((const __m256i *)(xq + 128 * h + 32 * k)));
                const __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(i),
                                               _mm256_permutevar8x32_ps(sg, sel[k]));
                if (k & 1) acc1 = _mm256_add_ps(acc1, f);
                else acc0 = _mm256_add_ps(acc0, f);
            }
        }
    }
    return mm_hsum8(_mm256_sub_ps(_mm256_add_ps(acc0, acc1), _mm256_mul_ps(_mm256_set1_ps(32.0f), cor)));
}

/* sum over N_GROUPS groups g of 16 of sc[g] * xd[g] * sum(q * xq)
 * (+ bi[g] * xs[g] if BIAS): a row chunk unpacked as for dot_groups
 * against one int8 X row. Integer sums are exact; the rest is f32. */
static float dot_groups_x8(const int8_t *q, const float *sc, const float *bi, int bias,
                           const int8_t *xq, const float *xd, const float *xs,
                           int n_groups)
{
    int g = 0;
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
    return mm_groups_x8_tail(q, sc, bi, bias, xq, xd, xs, g, n_groups, mm_hsum8(va));
}

#define MM_ROWS_UNPACK mm_unpack_avx2
#define MM_ROWS_X8
#include "mm_rows.h"

/* mm_x8_quant of matmul.c (the oracle is ref_quant_x8) on 8 lanes, with
 * the same bits: the same max, quotients and products, RNE rounding
 * (cvtps under the default rounding mode, as nearbyintf), exact integer
 * sums. */
void MM_CAT(mm_quant_x8, MM_X8_SET)(const float *x, int64_t n, int8_t *q, float *xd, float *xs,
                                    float *xd32, float *xs32)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t b = 0; b < n / 32; b++, x += 32, q += 32) {
        const __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8);
        const __m256 v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                                 _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        const float a = _mm_cvtss_f32(h);
        const float d = a / 127.0f, id = a != 0 ? 127.0f / a : 0.0f;
        const __m256 vid = _mm256_set1_ps(id);
        const __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, vid));
        const __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, vid));
        const __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, vid));
        const __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, vid));
        /* packs work per 128-bit lane: words 0-3 8-11 4-7 12-15 ... */
        const __m256i w01 = _mm256_packs_epi32(i0, i1), w23 = _mm256_packs_epi32(i2, i3);
        const __m256i b8 = _mm256_packs_epi16(w01, w23);
        _mm256_storeu_si256((__m256i *)q, _mm256_permutevar8x32_epi32(
                                              b8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
        const __m256i s01 = _mm256_add_epi32(i0, i1), s23 = _mm256_add_epi32(i2, i3);
        __m128i t0 = _mm_add_epi32(_mm256_castsi256_si128(s01), _mm256_extracti128_si256(s01, 1));
        __m128i t1 = _mm_add_epi32(_mm256_castsi256_si128(s23), _mm256_extracti128_si256(s23, 1));
        t0 = _mm_hadd_epi32(t0, t1); /* s0 s0 s1 s1 (partials) */
        t0 = _mm_hadd_epi32(t0, t0); /* s0 s1 s0 s1 */
        const int32_t s0 = _mm_cvtsi128_si32(t0), s1 = _mm_extract_epi32(t0, 1);
        xd[2 * b] = xd[2 * b + 1] = d;
        xs[2 * b] = d * (float)s0;
        xs[2 * b + 1] = d * (float)s1;
        xd32[b] = d;
        xs32[b] = d * (float)(s0 + s1);
    }
}

void MM_CAT(mm_dot_rows_x8, MM_X8_SET)(int type, const uint8_t *row, const mm_ctx *c,
                                       int64_t n, int m, float *acc)
{
    if (type == GGML_TYPE_Q8_0 || type == GGML_TYPE_Q4_0 || type == GGML_TYPE_Q4_K ||
        type == GGML_TYPE_Q6_K) {
        const int64_t ng = n / 16;
        for (int i = 0; i < m; i++) {
            const int8_t *xq = c->x8q + i * n;
            const float *xd = c->x8d + i * ng;
            acc[i] = type == GGML_TYPE_Q8_0 ? dot_q8_0_x8((const void *)row, xq, xd, n / 32)
                   : type == GGML_TYPE_Q4_0 ? dot_q4_0_x8((const void *)row, xq, c->x8qr + i * n, xd,
                                                      c->x8d32 + i * (n / 32),
                                                      c->x8s32 + i * (n / 32), n / 32)
                   : type == GGML_TYPE_Q6_K
                   ? dot_q6_K_x8((const void *)row, xq, c->x8d32 + i * (n / 32),
                                 c->x8s + i * ng, n / MM_QK_K)
                   : dot_q4_K_x8((const void *)row, xq, c->x8qr + i * n, xd,
                                 c->x8d32 + i * (n / 32), c->x8s32 + i * (n / 32),
                                 n / MM_QK_K);
        }
        return;
    }
    dot_rows_x8_chunks(type, row, c, n, m, acc);
}
