/* mm_x8.h - private: the int8 decode row dots of engine/mm_x8.c.
 *
 * mm_x8.c is compiled twice (Makefile): for the avx2 set (x86-64-v3, 8
 * int32 lanes from maddubs + madd) and for the avx512 set (x86-64-v4 +
 * AVX512-VNNI: the same lanes from one 256-bit vpdpbusd). The integer
 * sums are exact either way, so both give the same results; MM_X8_SET
 * names the build. Also the horizontal sum both 256-bit sets use. */
#ifndef KVT_MM_X8_H
#define KVT_MM_X8_H

#include "mm_kern.h"

/* dot_rows_x8 of struct mm_kernels: fused dots for Q8_0, Q4_0 and Q4_K,
 * unpacked chunks (mm_unpack_avx2) for the other quantized types. */
void mm_dot_rows_x8_avx2(int type, const uint8_t *row, const mm_ctx *c, int64_t n, int m,
                         float *acc);
void mm_dot_rows_x8_avx512(int type, const uint8_t *row, const mm_ctx *c, int64_t n,
                           int m, float *acc);

/* quant_x8 of struct mm_kernels */
void mm_quant_x8_avx2(const float *x, int64_t n, int8_t *q, float *xd, float *xs, float *xd32,
                      float *xs32);
void mm_quant_x8_avx512(const float *x, int64_t n, int8_t *q, float *xd, float *xs,
                        float *xd32, float *xs32);

#if defined(__AVX2__)
#include <immintrin.h>

/* sum of the 8 lanes of V */
static inline float mm_hsum8(__m256 v)
{
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}
#endif

#endif
