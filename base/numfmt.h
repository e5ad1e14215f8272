/* numfmt.h - the numeric formats kvtile stores and multiplies: IEEE half
 * (f16), bfloat16 (bf16) and ggml's Q8_0 blocks. One definition each, used
 * by the tile packer (kvstore/tile.c) and the matmul kernels (engine/).
 *
 * Conversions, all bit-exact and the same on every CPU:
 *   f32 -> f16   round to nearest, ties to even; |x| >= 65520 -> inf; a
 *                NaN stays NaN with its sign, quiet, and the top 10 bits
 *                of its payload (x86 F16C's vcvtps2ph, imm 0, bit for
 *                bit: a build with F16C uses that instruction).
 *   f16 -> f32   exact; a NaN comes out quiet with its payload (as
 *                F16C's vcvtph2ps).
 *   f32 -> bf16  round to nearest, ties to even (may round up to inf); a
 *                NaN keeps sign and top payload bits and is made quiet.
 *   bf16 -> f32  exact (the 16 bits become the high half).
 *
 * Q8_0 block (34 bytes, little-endian, as ggml's block_q8_0):
 *   off 0  u16 d      f16 scale
 *   off 2  i8 q[32]   codes, x ~= q * d
 * Quantization as ggml's quantize_row_q8_0_ref: amax = max |x| over the
 * block, d = amax / 127, id = d != 0 ? 1 / d : 0, q = roundf(x * id) (ties
 * away from zero), d stored as f16(d). x must be finite.
 *
 * Scalar conversions are static inline (the hot loops call them per
 * element); the row functions live in numfmt.c. None allocates.
 */
#ifndef KVT_NUMFMT_H
#define KVT_NUMFMT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#ifdef __F16C__
#include <immintrin.h>
#endif

#define NUMFMT_QK8_0 32      /* values per Q8_0 block */
#define NUMFMT_Q8_0_BYTES 34 /* bytes per Q8_0 block */

static inline uint32_t numfmt_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float numfmt_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint16_t numfmt_f32_to_f16(float f)
{
#ifdef __F16C__
    return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
#else
    uint32_t u = numfmt_f32_bits(f);
    uint32_t sign = u & 0x80000000u, o;
    u ^= sign;
    if (u > 0x7f800000u) {                   /* NaN: quiet, top payload bits */
        o = 0x7e00u | ((u >> 13) & 0x3ffu);
    } else if (u >= 0x477ff000u) {           /* >= 65520: inf */
        o = 0x7c00u;
    } else if (u < (113u << 23)) {           /* f16 subnormal or zero */
        const uint32_t magic = 126u << 23;   /* 0.5f: the add rounds (RNE) */
        o = numfmt_f32_bits(numfmt_bits_f32(u) + numfmt_bits_f32(magic)) - magic;
    } else {                                 /* normal: rebias, round RNE */
        uint32_t mant_odd = (u >> 13) & 1u;
        u += ((uint32_t)(15 - 127) << 23) + 0xfffu + mant_odd;
        o = u >> 13;
    }
    return (uint16_t)(o | (sign >> 16));
#endif
}

static inline float numfmt_f16_to_f32(uint16_t h)
{
#ifdef __F16C__
    return _cvtsh_ss(h);
#else
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t em = h & 0x7fffu;
    if (em > 0x7c00u) /* NaN: quiet */
        return numfmt_bits_f32(sign | 0x7fc00000u | ((em & 0x3ffu) << 13));
    if (em == 0x7c00u) return numfmt_bits_f32(sign | 0x7f800000u);
    if (em >= 0x0400u) return numfmt_bits_f32(sign | ((em << 13) + (112u << 23)));
    /* zero or subnormal: em * 2^-24, exact */
    return numfmt_bits_f32(sign | numfmt_f32_bits((float)em * 5.9604644775390625e-8f));
#endif
}

static inline uint16_t numfmt_f32_to_bf16(float f)
{
    uint32_t u = numfmt_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float numfmt_bf16_to_f32(uint16_t h)
{
    return numfmt_bits_f32((uint32_t)h << 16);
}

/* Rows of n values; the 16-bit side is little-endian bytes at any
 * alignment. */
void numfmt_f32_to_f16_row(const float *src, size_t n, void *dst);
void numfmt_f32_to_bf16_row(const float *src, size_t n, void *dst);
void numfmt_bf16_to_f32_row(const void *src, size_t n, float *dst);
/* f16c != 0: the caller has checked the CPU has F16C (and AVX) and the
 * vector instruction is used; same results either way. */
void numfmt_f16_to_f32_row(const void *src, size_t n, float *dst, int f16c);

/* n values (a multiple of NUMFMT_QK8_0) <-> n / 32 Q8_0 blocks. */
void numfmt_q8_0_quantize(const float *src, size_t n, void *dst);
void numfmt_q8_0_dequantize(const void *src, size_t n, float *dst);

#endif
