/* mm_avx2.c - the avx2 kernel set (x86-64-v3: AVX2, FMA, F16C; mm_kern.h):
 * vector unpackers (mm_unpack_avx2, which the avx512 set uses too), f32 /
 * f16 / bf16 row dots and dequantization; the int8 decode dots are
 * mm_x8.c's. */
#include "mm_gemm2.h"
#include "mm_x8.h"

#include "base/cpu.h"

#if !defined(__AVX2__) || !defined(__FMA__) || !defined(__F16C__)
#error "mm_avx2.c needs -march=x86-64-v3 (Makefile)"
#endif

/* ---- unpackers: the code extractors of mm_unpack.h ----------------------- */

static void codes_q4_0(const uint8_t *qs, int8_t *q)
{
    const __m128i m4 = _mm_set1_epi8(0xF), k8 = _mm_set1_epi8(8);
    const __m128i v = _mm_loadu_si128((const __m128i *)qs);
    _mm_storeu_si128((__m128i *)q, _mm_sub_epi8(_mm_and_si128(v, m4), k8));
    _mm_storeu_si128((__m128i *)(q + 16),
                     _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(v, 4), m4), k8));
}

static void codes_q4_K(const uint8_t *qs, int8_t *q)
{
    const __m256i m4 = _mm256_set1_epi8(0xF);
    for (int j = 0; j < 4; j++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * j));
        _mm256_storeu_si256((__m256i *)(q + 64 * j), _mm256_and_si256(v, m4));
        _mm256_storeu_si256((__m256i *)(q + 64 * j + 32),
                            _mm256_and_si256(_mm256_srli_epi16(v, 4), m4));
    }
}

static void codes_q5_K(const blk_q5_K *x, int8_t *q)
{
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
}

static void codes_q6_K(const blk_q6_K *x, int8_t *q)
{
    const __m256i m4 = _mm256_set1_epi8(0xF), m30 = _mm256_set1_epi8(0x30);
    const __m256i k32 = _mm256_set1_epi8(32);
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = x->ql + 64 * h, *qh = x->qh + 32 * h;
        int8_t *o = q + 128 * h;
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
    }
}

static void codes_2bits(const uint8_t *qs, int8_t *q)
{
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m256i v = _mm256_loadu_si256((const __m256i *)qs);
    for (int j = 0; j < 4; j++)
        _mm256_storeu_si256((__m256i *)(q + 32 * j),
                            _mm256_and_si256(_mm256_srli_epi16(v, 2 * j), m3));
}

static void codes_q3_K_high(const uint8_t *hmask, int8_t *q)
{
    const __m256i hm = _mm256_loadu_si256((const __m256i *)hmask);
    const __m256i k4 = _mm256_set1_epi8(4);
    for (int j = 0; j < 8; j++) {
        const __m256i bit = _mm256_set1_epi8((char)(1 << j));
        const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(hm, bit), bit);
        const __m256i v = _mm256_loadu_si256((const __m256i *)(q + 32 * j));
        _mm256_storeu_si256((__m256i *)(q + 32 * j),
                            _mm256_sub_epi8(v, _mm256_andnot_si256(set, k4)));
    }
}

static void codes_iq4_32(const uint8_t *qs, int8_t *q)
{
    const __m128i tbl = _mm_loadu_si128((const __m128i *)mm_iq4_levels);
    const __m128i m4 = _mm_set1_epi8(0xF);
    const __m128i v = _mm_loadu_si128((const __m128i *)qs);
    _mm_storeu_si128((__m128i *)q, _mm_shuffle_epi8(tbl, _mm_and_si128(v, m4)));
    _mm_storeu_si128((__m128i *)(q + 16),
                     _mm_shuffle_epi8(tbl, _mm_and_si128(_mm_srli_epi16(v, 4), m4)));
}

#define MM_UNPACK_TABLE mm_unpack_avx2
#include "mm_unpack.h"

/* ---- the avx2 set's float kernels (as mm_portable.c's, 8 lanes) --------- */

static void affine_store(const int8_t *q, const float *sc, const float *bi, int bias,
                         float *y, int n_groups)
{
    for (int g = 0; g < n_groups; g++, q += 16, y += 16) {
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
    }
}

static void dq_f16(const uint16_t *x, float *y, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
    for (; i < n; i++) y[i] = MM_H2F(x[i]);
}

static float dot_groups(const int8_t *q, const float *sc, const float *bi, const float *x,
                        int n_groups)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (int g = 0; g < n_groups; g++) {
        __m128i b = _mm_loadu_si128((const __m128i *)(q + 16 * g));
        __m256 q0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
        __m256 q1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(b, 8)));
        __m256 s = _mm256_set1_ps(sc[g]), c = _mm256_set1_ps(bi[g]);
        a0 = _mm256_fmadd_ps(_mm256_fmadd_ps(q0, s, c), _mm256_loadu_ps(x + 16 * g), a0);
        a1 = _mm256_fmadd_ps(_mm256_fmadd_ps(q1, s, c), _mm256_loadu_ps(x + 16 * g + 8), a1);
    }
    return mm_hsum8(_mm256_add_ps(a0, a1));
}

static float dot_f32(const float *w, const float *x, int64_t n)
{
    int64_t i = 0;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
    }
    float acc = mm_hsum8(_mm256_add_ps(a0, a1));
    for (; i < n; i++) acc += w[i] * x[i];
    return acc;
}

static float dot_f16(const uint16_t *w, const float *x, int64_t n)
{
    int64_t i = 0;
    /* 4 accumulators in registers (an array here stayed on the stack): FMA
     * latency, not the load port, bounds one chain */
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(),
           a3 = _mm256_setzero_ps();
    for (; i + 32 <= n; i += 32) {
        const __m128i *h = (const __m128i *)(w + i);
        a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128(h)), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128(h + 1)),
                             _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128(h + 2)),
                             _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128(h + 3)),
                             _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i))),
                             _mm256_loadu_ps(x + i), a0);
    float acc = mm_hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) acc += MM_H2F(w[i]) * x[i];
    return acc;
}

static float dot_bf16(const uint16_t *w, const float *x, int64_t n)
{
    int64_t i = 0;
    float acc = 0;
    __m256 a0 = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) {
        __m256i u0 = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(w + i)));
        a0 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(u0, 16)),
                             _mm256_loadu_ps(x + i), a0);
    }
    float t[8];
    _mm256_storeu_ps(t, a0);
    for (int k = 0; k < 8; k++) acc += t[k];
    for (; i < n; i++) acc += numfmt_bf16_to_f32(w[i]) * x[i];
    return acc;
}

#define MM_ROWS_UNPACK mm_unpack_avx2
#define MM_ROWS_F32
#include "mm_rows.h"

const struct mm_kernels mm_kernels_avx2 = {
    .set = CPU_SET_AVX2,
    .unpack = mm_unpack_avx2,
    .dequant = dequant,
    .dot_rows = dot_rows,
    .dot_rows_x8 = mm_dot_rows_x8_avx2,
    .quant_x8 = mm_quant_x8_avx2,
    .gemm_i8_rows = mm_gemm_i8_rows_avx2,
};
