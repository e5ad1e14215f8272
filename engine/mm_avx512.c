/* mm_avx512.c - the avx512 kernel set (x86-64-v4 + AVX512-VNNI;
 * mm_kern.h): f32 / f16 / bf16 row dots and dequantization on 16 lanes.
 * Its unpackers are mm_avx2.c's, its int8 decode dots mm_x8.c's (VNNI
 * build), its prompt GEMMs mm_gemm512.c's. */
#include "mm_x8.h"

#include "base/cpu.h"
#include "mm_gemm512.h"

#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512VL__)
#error "mm_avx512.c needs -march=x86-64-v4 (Makefile)"
#endif

/* As mm_portable.c's affine_store: a separate multiply and add. */
static void affine_store(const int8_t *q, const float *sc, const float *bi, int bias,
                         float *y, int n_groups)
{
    for (int g = 0; g < n_groups; g++, q += 16, y += 16) {
        __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                                     _mm_loadu_si128((const __m128i *)q))),
                                 _mm512_set1_ps(sc[g]));
        if (bias) v = _mm512_add_ps(v, _mm512_set1_ps(bi[g]));
        _mm512_storeu_ps(y, v);
    }
}

static void dq_f16(const uint16_t *x, float *y, int64_t n)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(x + i))));
    for (; i < n; i++) y[i] = MM_H2F(x[i]);
}

/* sum over N_GROUPS groups of 16 of (q*sc[g] + bi[g]) * x. */
static float dot_groups(const int8_t *q, const float *sc, const float *bi, const float *x,
                        int n_groups)
{
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
}

static float dot_f32(const float *w, const float *x, int64_t n)
{
    int64_t i = 0;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    for (; i + 32 <= n; i += 32) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 16), _mm512_loadu_ps(x + i + 16), a1);
    }
    float acc = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    for (; i < n; i++) acc += w[i] * x[i];
    return acc;
}

static float dot_f16(const uint16_t *w, const float *x, int64_t n)
{
    int64_t i = 0;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    for (; i + 32 <= n; i += 32) {
        __m512 w0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + i)));
        __m512 w1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + i + 16)));
        a0 = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + i + 16), a1);
    }
    float acc = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    for (; i < n; i++) acc += MM_H2F(w[i]) * x[i];
    return acc;
}

static float dot_bf16(const uint16_t *w, const float *x, int64_t n)
{
    int64_t i = 0;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    for (; i + 32 <= n; i += 32) {
        __m512i u0 = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(w + i)));
        __m512i u1 = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(w + i + 16)));
        a0 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(u0, 16)),
                             _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(u1, 16)),
                             _mm512_loadu_ps(x + i + 16), a1);
    }
    float acc = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    for (; i < n; i++) acc += numfmt_bf16_to_f32(w[i]) * x[i];
    return acc;
}

#define MM_ROWS_UNPACK mm_unpack_avx2
#define MM_ROWS_F32
#include "mm_rows.h"

const struct mm_kernels mm_kernels_avx512 = {
    .set = CPU_SET_AVX512,
    .unpack = mm_unpack_avx2,
    .dequant = dequant,
    .dot_rows = dot_rows,
    .dot_rows_x8 = mm_dot_rows_x8_avx512,
    .quant_x8 = mm_quant_x8_avx512,
    .gemm_bf16 = mm_gemm_bf16,
    .gemm_int8 = mm_gemm_int8,
};
