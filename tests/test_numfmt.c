/* test_numfmt.c - base/numfmt against the naive oracles of ref_quant.c
 * (arithmetic, binary search, no bit tricks) and, where the CPU has it,
 * against x86 F16C: every f16 and bf16 bit pattern, every rounding
 * boundary between adjacent values (the midpoint and the floats on either
 * side), hand-picked specials, and Q8_0 blocks against ggml's reference
 * quantizer written out here. */
#include <cpuid.h>
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "base/numfmt.h"
#include "tests/ref_quant.h"
#include "tests/t.h"

static uint32_t bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float fl(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static int is_nan16(uint16_t h) { return (h & 0x7c00) == 0x7c00 && (h & 0x3ff); }

/* Every half: f16 -> f32 exact (the oracle's value), back to the same
 * half; a NaN comes out quiet with sign and payload. */
static void test_f16_all(void)
{
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = numfmt_f16_to_f32((uint16_t)h);
        if (is_nan16((uint16_t)h)) {
            uint32_t want = (h & 0x8000u) << 16 | 0x7fc00000u | (h & 0x3ffu) << 13;
            if (bits(f) != want) bad++;
            if (numfmt_f32_to_f16(f) != (uint16_t)(h | 0x200)) bad++;
            continue;
        }
        if (bits(f) != bits(ref_f16_to_f32((uint16_t)h))) bad++;
        if (numfmt_f32_to_f16(f) != h) bad++;
    }
    T_CHECK(bad == 0);
}

/* Rounding to f16 at every boundary: for each pair of adjacent finite
 * halves of one sign, the exact midpoint (representable in f32) and its
 * neighbours, against the oracle's nearest-even search. */
static void test_f16_rounding(void)
{
    int bad = 0, n = 0;
    for (uint32_t s = 0; s < 2; s++)
        for (uint32_t h = 0; h < 0x7c00; h++) {
            double a = ref_f16_to_f32((uint16_t)h);
            double b = h == 0x7bff ? 65536.0 : ref_f16_to_f32((uint16_t)(h + 1));
            float mid = (float)((a + b) / 2); /* exact: 12 significant bits */
            float xs[3] = { nextafterf(mid, 0.0f), mid, nextafterf(mid, INFINITY) };
            for (int i = 0; i < 3; i++) {
                float x = s ? -xs[i] : xs[i];
                n++;
                if (numfmt_f32_to_f16(x) != ref_f32_to_f16(x)) bad++;
            }
        }
    T_CHECK(n == 2 * 0x7c00 * 3);
    T_CHECK(bad == 0);
}

static void test_f16_special(void)
{
    T_CHECK(numfmt_f32_to_f16(1.0f) == 0x3c00);
    T_CHECK(numfmt_f32_to_f16(-2.0f) == 0xc000);
    T_CHECK(numfmt_f32_to_f16(0.0f) == 0x0000);
    T_CHECK(numfmt_f32_to_f16(-0.0f) == 0x8000);
    T_CHECK(numfmt_f32_to_f16(0.1f) == 0x2e66);
    T_CHECK(numfmt_f32_to_f16(65504.0f) == 0x7bff);
    T_CHECK(numfmt_f32_to_f16(65519.996f) == 0x7bff);
    T_CHECK(numfmt_f32_to_f16(65520.0f) == 0x7c00); /* tie rounds to inf */
    T_CHECK(numfmt_f32_to_f16(1e30f) == 0x7c00);
    T_CHECK(numfmt_f32_to_f16(-INFINITY) == 0xfc00);
    T_CHECK(numfmt_f32_to_f16(1e-8f) == 0x0000);          /* below half of 2^-24 */
    T_CHECK(numfmt_f32_to_f16(fl(0x33000000u)) == 0x0000); /* 2^-25: tie -> 0 */
    T_CHECK(numfmt_f32_to_f16(fl(0x33000001u)) == 0x0001);
    T_CHECK(numfmt_f32_to_f16(6e-8f) == 0x0001);          /* smallest subnormal */
    T_CHECK(numfmt_f32_to_f16(fl(0x00000001u)) == 0x0000); /* f32 subnormal */
    T_CHECK(numfmt_f32_to_f16(fl(0x807fffffu)) == 0x8000);
    T_CHECK(numfmt_f32_to_f16(fl(0x387fc000u)) == 0x03ff); /* largest subnormal */
    T_CHECK(numfmt_f32_to_f16(fl(0x387fe000u)) == 0x0400); /* tie -> even (normal) */
    T_CHECK(numfmt_f32_to_f16(1.0f + 1.0f / 2048) == 0x3c00); /* tie -> even */
    T_CHECK(numfmt_f32_to_f16(1.0f + 3.0f / 2048) == 0x3c02);
    /* NaN: sign, quiet bit, top 10 payload bits */
    T_CHECK(numfmt_f32_to_f16(NAN) == 0x7e00);
    T_CHECK(numfmt_f32_to_f16(fl(0xffc00000u)) == 0xfe00); /* x86's default NaN */
    T_CHECK(numfmt_f32_to_f16(fl(0x7f800001u)) == 0x7e00); /* signalling */
    T_CHECK(numfmt_f32_to_f16(fl(0x7fa00000u)) == 0x7f00);
    T_CHECK(numfmt_f32_to_f16(fl(0xffffffffu)) == 0xffff);
    T_CHECK(numfmt_f16_to_f32(0x0001) == 5.9604644775390625e-8f);
    T_CHECK(numfmt_f16_to_f32(0x3555) == 0.333251953125f);
    T_CHECK(bits(numfmt_f16_to_f32(0x8000)) == 0x80000000u);
    T_CHECK(bits(numfmt_f16_to_f32(0xfc00)) == 0xff800000u);
    T_CHECK(bits(numfmt_f16_to_f32(0x7c01)) == 0x7fc02000u); /* sNaN made quiet */
}

/* Every bf16: exact to f32 and back; rounding at every boundary (low 16
 * bits 0x8000 and its neighbours) against the oracle; specials. */
static void test_bf16(void)
{
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = numfmt_bf16_to_f32((uint16_t)h);
        if (bits(f) != bits(ref_bf16_to_f32((uint16_t)h))) bad++;
        int nan = (h & 0x7f80) == 0x7f80 && (h & 0x7f);
        if (numfmt_f32_to_bf16(f) != (nan ? (h | 0x40) : h)) bad++;
        if ((h & 0x7f80) == 0x7f80) continue; /* inf / NaN: no midpoint above */
        for (uint32_t lo = 0x7fff; lo <= 0x8001; lo++) {
            float x = fl(h << 16 | lo);
            if (numfmt_f32_to_bf16(x) != ref_f32_to_bf16(x)) bad++;
        }
    }
    T_CHECK(bad == 0);
    T_CHECK(numfmt_f32_to_bf16(1.0f) == 0x3f80);
    T_CHECK(numfmt_f32_to_bf16(1.00390625f) == 0x3f80); /* tie -> even */
    T_CHECK(numfmt_f32_to_bf16(1.01171875f) == 0x3f82); /* tie -> even, up */
    T_CHECK(numfmt_f32_to_bf16(fl(0x7f7fffffu)) == 0x7f80); /* rounds to inf */
    T_CHECK(numfmt_f32_to_bf16(fl(0x00000001u)) == 0x0000);
    T_CHECK(numfmt_f32_to_bf16(fl(0x7f800001u)) == 0x7fc0); /* sNaN made quiet */
    T_CHECK(numfmt_f32_to_bf16(fl(0xffc00000u)) == 0xffc0);
    T_CHECK(numfmt_bf16_to_f32(0xc040) == -3.0f);
}

static int have_f16c(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    return (c & bit_F16C) && (c & bit_AVX);
}
__attribute__((target("f16c"))) static uint16_t hw_f32_to_f16(float f)
{
    return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
__attribute__((target("f16c"))) static float hw_f16_to_f32(uint16_t h) { return _cvtsh_ss(h); }

/* The C conversions equal F16C's instructions bit for bit (NaNs
 * included): every half, and every 4099th f32 bit pattern plus every
 * NaN class boundary. */
static void test_f16c_agrees(void)
{
    if (!have_f16c()) T_SKIP("no F16C");
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000; h++)
        if (bits(numfmt_f16_to_f32((uint16_t)h)) != bits(hw_f16_to_f32((uint16_t)h))) bad++;
    for (uint64_t u = 0; u <= 0xffffffffull; u += 4099) {
        float f = fl((uint32_t)u);
        if (numfmt_f32_to_f16(f) != hw_f32_to_f16(f)) bad++;
    }
    static const uint32_t edge[] = { 0x7f800001u, 0x7f801fffu, 0x7f802000u, 0x7fbfffffu,
                                     0x7fc00000u, 0x7fffe000u, 0xffffffffu, 0xff800001u };
    for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++)
        if (numfmt_f32_to_f16(fl(edge[i])) != hw_f32_to_f16(fl(edge[i]))) bad++;
    T_CHECK(bad == 0);
}

/* Rows equal the scalar conversions; the F16C row path equals the C one. */
static void test_rows(void)
{
    enum { N = 1000 };
    static float x[N], y[N], z[N];
    static uint8_t p[2 * N + 1]; /* + 1: the unaligned bf16 row below */
    uint64_t seed = 7;
    for (int i = 0; i < N; i++) x[i] = ref_rand_f32(&seed) * 70000.0f;
    x[3] = NAN; x[4] = -INFINITY; x[5] = 1e-6f;
    int bad = 0;
    numfmt_f32_to_f16_row(x, N, p);
    for (int i = 0; i < N; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        if (h != numfmt_f32_to_f16(x[i])) bad++;
    }
    numfmt_f16_to_f32_row(p, N, y, 0);
    if (have_f16c()) numfmt_f16_to_f32_row(p, N, z, 1);
    else memcpy(z, y, sizeof z);
    for (int i = 0; i < N; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        float w = numfmt_f16_to_f32(h);
        if (bits(y[i]) != bits(w) || bits(z[i]) != bits(w)) bad++;
    }
    numfmt_f32_to_bf16_row(x, N, p + 1); /* unaligned */
    numfmt_bf16_to_f32_row(p + 1, N, y);
    for (int i = 0; i < N; i++)
        if (bits(y[i]) != bits(numfmt_bf16_to_f32(numfmt_f32_to_bf16(x[i])))) bad++;
    T_CHECK(bad == 0);
}

/* Q8_0 against ggml's quantize_row_q8_0_ref written out with the oracle's
 * f16: d = amax / 127, id = 1 / d, q = roundf(x * id); dequantize
 * q * f16(d). Blocks: random, all zero, exact ties (x * id = k + 0.5). */
static void test_q8_0(void)
{
    enum { NB = 6, N = NB * 32 };
    static float x[N], y[N];
    static uint8_t q[NB * NUMFMT_Q8_0_BYTES];
    uint64_t seed = 11;
    for (int i = 0; i < N; i++) x[i] = ref_rand_f32(&seed) * 3.0f;
    for (int j = 0; j < 32; j++) x[32 + j] = 0.0f;               /* zero block */
    for (int j = 0; j < 32; j++) x[64 + j] = (float)(j - 16) * 0.5f; /* amax 8 */
    x[64 + 31] = -127.0f; /* d = 1, id = 1: halves are exact ties */
    x[96] = 1e-30f; /* tiny block: d is an f16 subnormal or zero */
    for (int j = 1; j < 32; j++) x[96 + j] = 0.0f;
    numfmt_q8_0_quantize(x, N, q);
    numfmt_q8_0_dequantize(q, N, y);
    int bad = 0;
    for (int b = 0; b < NB; b++) {
        const float *xb = x + 32 * b;
        const uint8_t *qb = q + NUMFMT_Q8_0_BYTES * b;
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(xb[j]));
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t dh = ref_f32_to_f16(d), got_dh;
        memcpy(&got_dh, qb, 2);
        if (got_dh != dh) bad++;
        for (int j = 0; j < 32; j++) {
            int want = (int)roundf(xb[j] * id);
            if ((int8_t)qb[2 + j] != want) bad++;
            float w = (float)want * ref_f16_to_f32(dh);
            if (bits(y[32 * b + j]) != bits(w)) bad++;
        }
    }
    T_CHECK(bad == 0);
    T_CHECK((int8_t)q[2 * NUMFMT_Q8_0_BYTES + 2 + 15] == -1);  /* -0.5: away from 0 */
    T_CHECK((int8_t)q[2 * NUMFMT_Q8_0_BYTES + 2 + 17] == 1);   /* 0.5 */
    T_CHECK((int8_t)q[2 * NUMFMT_Q8_0_BYTES + 2 + 31] == -127);
}

int main(void)
{
    T_RUN(test_f16_all);
    T_RUN(test_f16_rounding);
    T_RUN(test_f16_special);
    T_RUN(test_bf16);
    T_RUN(test_f16c_agrees);
    T_RUN(test_rows);
    T_RUN(test_q8_0);
    return t_done();
}
