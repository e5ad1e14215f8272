/* numfmt.c - row conversions and Q8_0 blocks. See numfmt.h. */
#include "base/numfmt.h"

#include <math.h>
#include <immintrin.h>

#include "base/kvt.h"

/* n values through cvt into 16-bit little-endian at dst (inlined per
 * conversion: cvt is a constant at each call). */
static inline void to16_row(const float *src, size_t n, void *dst, uint16_t (*cvt)(float))
{
    uint8_t *d8 = dst;
    for (size_t i = 0; i < n; i++) {
        uint16_t h = cvt(src[i]);
        memcpy(d8 + 2 * i, &h, 2);
    }
}

void numfmt_f32_to_f16_row(const float *src, size_t n, void *dst)
{
    to16_row(src, n, dst, numfmt_f32_to_f16);
}

void numfmt_f32_to_bf16_row(const float *src, size_t n, void *dst)
{
    to16_row(src, n, dst, numfmt_f32_to_bf16);
}

void numfmt_bf16_to_f32_row(const void *src, size_t n, float *dst)
{
    const uint8_t *s8 = src;
    size_t i = 0;
#ifdef __SSE2__
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(const void *)(s8 + 2 * i));
        __m128i z = _mm_setzero_si128();
        _mm_storeu_si128((__m128i *)(void *)(dst + i), _mm_unpacklo_epi16(z, h));
        _mm_storeu_si128((__m128i *)(void *)(dst + i + 4), _mm_unpackhi_epi16(z, h));
    }
#endif
    for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, s8 + 2 * i, 2);
        dst[i] = numfmt_bf16_to_f32(h);
    }
}

/* The first n rounded down to 8 values with F16C; @return that count. */
__attribute__((target("avx,f16c"))) static size_t f16_to_f32_f16c(const uint8_t *s8, size_t n,
                                                                  float *dst)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(const void *)(s8 + 2 * i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
    return i;
}

void numfmt_f16_to_f32_row(const void *src, size_t n, float *dst, int f16c)
{
    const uint8_t *s8 = src;
    size_t i = f16c ? f16_to_f32_f16c(s8, n, dst) : 0;
    for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, s8 + 2 * i, 2);
        dst[i] = numfmt_f16_to_f32(h);
    }
}

void numfmt_q8_0_quantize(const float *src, size_t n, void *dst)
{
    KVT_ASSERT(n % NUMFMT_QK8_0 == 0);
    for (size_t b = 0; b < n / NUMFMT_QK8_0; b++) {
        const float *x = src + b * NUMFMT_QK8_0;
        uint8_t *y = (uint8_t *)dst + b * NUMFMT_Q8_0_BYTES;
        float amax = 0.0f;
        for (int j = 0; j < NUMFMT_QK8_0; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t dh = numfmt_f32_to_f16(d);
        memcpy(y, &dh, 2);
        for (int j = 0; j < NUMFMT_QK8_0; j++) y[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
    }
}

void numfmt_q8_0_dequantize(const void *src, size_t n, float *dst)
{
    KVT_ASSERT(n % NUMFMT_QK8_0 == 0);
    for (size_t b = 0; b < n / NUMFMT_QK8_0; b++) {
        const uint8_t *y = (const uint8_t *)src + b * NUMFMT_Q8_0_BYTES;
        uint16_t dh;
        memcpy(&dh, y, 2);
        float d = numfmt_f16_to_f32(dh);
        for (int j = 0; j < NUMFMT_QK8_0; j++)
            dst[b * NUMFMT_QK8_0 + j] = (float)(int8_t)y[2 + j] * d;
    }
}
