/* ref_quant.c - naive oracles, see ref_quant.h. Every block is read as
 * raw bytes at the byte offsets of the ggml definition. */
#include "ref_quant.h"

#include <math.h>
#include <string.h>

#include "../engine/gguf.h"

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

float ref_f16_to_f32(uint16_t h)
{
    int sign = h >> 15, exp = (h >> 10) & 31, mant = h & 1023;
    double v;
    if (exp == 31) v = mant ? NAN : INFINITY;
    else if (exp == 0) v = ldexp((double)mant, -24);
    else v = ldexp(1.0 + mant / 1024.0, exp - 15);
    return (float)(sign ? -v : v);
}

uint16_t ref_f32_to_f16(float f)
{
    uint16_t sign = signbit(f) ? 0x8000 : 0;
    if (isnan(f)) return sign | 0x7E00;
    double a = fabs((double)f);
    if (a >= 65520.0) return sign | 0x7C00; /* 65504 + half an ulp, tie -> inf */
    /* Largest finite half <= a, by binary search over 0 .. 0x7BFF. */
    int lo = 0, hi = 0x7BFF;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if ((double)ref_f16_to_f32((uint16_t)mid) <= a) lo = mid;
        else hi = mid - 1;
    }
    double below = ref_f16_to_f32((uint16_t)lo);
    if (below == a) return sign | (uint16_t)lo;
    double above = ref_f16_to_f32((uint16_t)(lo + 1)); /* lo+1 may be inf */
    if (lo == 0x7BFF) above = 65536.0;
    double d0 = a - below, d1 = above - a;
    int pick = d0 < d1 ? lo : d1 < d0 ? lo + 1 : (lo % 2 == 0 ? lo : lo + 1);
    return sign | (uint16_t)pick;
}

float ref_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t ref_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if (isnan(f)) return (uint16_t)((u >> 16) | 0x40);
    uint16_t lo = (uint16_t)(u >> 16), hi = (uint16_t)(lo + 1);
    if ((u & 0xFFFF) == 0) return lo;
    double a = fabs((double)f);
    double b0 = fabs((double)ref_bf16_to_f32(lo));
    /* The next bf16 away from zero; past the largest finite one the
     * midpoint rule still applies with the value 2^128. */
    double b1 = ((hi & 0x7FFF) == 0x7F80) ? ldexp(1.0, 128)
                                          : fabs((double)ref_bf16_to_f32(hi));
    double d0 = a - b0, d1 = b1 - a;
    if (d0 < d1) return lo;
    if (d1 < d0) return hi;
    return (lo & 1) ? hi : lo;
}

int ref_block_elems(int type)
{
    switch (type) {
    case GGML_TYPE_F32: case GGML_TYPE_F16: case GGML_TYPE_BF16: return 1;
    case GGML_TYPE_Q8_0: case GGML_TYPE_Q4_0: case GGML_TYPE_Q4_1:
    case GGML_TYPE_Q5_0: case GGML_TYPE_Q5_1: case GGML_TYPE_IQ4_NL: return 32;
    case GGML_TYPE_Q2_K: case GGML_TYPE_Q3_K: case GGML_TYPE_Q4_K:
    case GGML_TYPE_Q5_K: case GGML_TYPE_Q6_K: case GGML_TYPE_IQ4_XS: return 256;
    default: return 0;
    }
}

int ref_block_bytes(int type)
{
    switch (type) {
    case GGML_TYPE_F32: return 4;
    case GGML_TYPE_F16: case GGML_TYPE_BF16: return 2;
    case GGML_TYPE_Q8_0: return 2 + 32;
    case GGML_TYPE_Q4_0: return 2 + 16;
    case GGML_TYPE_Q4_1: return 2 + 2 + 16;
    case GGML_TYPE_Q5_0: return 2 + 4 + 16;
    case GGML_TYPE_Q5_1: return 2 + 2 + 4 + 16;
    case GGML_TYPE_Q4_K: return 2 + 2 + 12 + 128;
    case GGML_TYPE_Q5_K: return 2 + 2 + 12 + 32 + 128;
    case GGML_TYPE_Q6_K: return 128 + 64 + 16 + 2;
    case GGML_TYPE_Q2_K: return 16 + 64 + 2 + 2;
    case GGML_TYPE_Q3_K: return 32 + 64 + 12 + 2;
    case GGML_TYPE_IQ4_NL: return 2 + 16;
    case GGML_TYPE_IQ4_XS: return 2 + 2 + 4 + 128;
    default: return 0;
    }
}

/* 4-bit code of element E (0..31) of a 32-block: qs[E % 16], low nibble
 * for the first 16 elements, high nibble for the last 16. */
static int nib32(const uint8_t *qs, int e)
{
    return e < 16 ? (qs[e] & 15) : (qs[e - 16] >> 4);
}

/* Bit E of the little-endian 32-bit qh. */
static int bit32(const uint8_t *qh, int e) { return (qh[e / 8] >> (e % 8)) & 1; }

/* 6-bit scale and min of sub-block S (0..7) from the 12 packed bytes:
 * bytes 0-3 hold scales 0-3 (low 6 bits), bytes 4-7 mins 0-3 (low 6 bits);
 * bytes 8-11 hold scale 4-7 (low nibble) and min 4-7 (high nibble), whose
 * top 2 bits are the top 2 bits of bytes 0-3 (scales) and 4-7 (mins). */
static void k_scale_min(const uint8_t *s, int sub, int *sc, int *mn)
{
    if (sub < 4) {
        *sc = s[sub] & 63;
        *mn = s[sub + 4] & 63;
    } else {
        *sc = (s[sub + 4] & 15) | ((s[sub - 4] >> 6) << 4);
        *mn = (s[sub + 4] >> 4) | ((s[sub] >> 6) << 4);
    }
}

/* Q2_K / Q3_K: element E (0..255) takes 2 bits of qs: byte
 * 32 * (E / 128) + E % 32, bits 2 * ((E % 128) / 32) and up. */
static int two_bits(const uint8_t *qs, int e)
{
    return (qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
}

/* Q3_K: 6-bit scale K (0..15) from its 12 packed bytes: low nibble of
 * byte K (K < 8) or high nibble of byte K - 8; top 2 bits from byte
 * 8 + K % 4 at bit 2 * (K / 4). */
static int q3_scale(const uint8_t *s, int k)
{
    int lo = k < 8 ? (s[k] & 15) : (s[k - 8] >> 4);
    int hi = (s[8 + k % 4] >> (2 * (k / 4))) & 3;
    return lo | hi << 4;
}

/* The 16 non-linear levels of IQ4_NL / IQ4_XS (ggml's kvalues_iq4nl). */
static const int iq4_levels[16] = {
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
};

static void ref_block(int type, const uint8_t *b, float *y)
{
    switch (type) {
    case GGML_TYPE_F32: memcpy(y, b, 4); break;
    case GGML_TYPE_F16: y[0] = ref_f16_to_f32(rd16(b)); break;
    case GGML_TYPE_BF16: y[0] = ref_bf16_to_f32(rd16(b)); break;
    case GGML_TYPE_Q8_0: {
        float d = ref_f16_to_f32(rd16(b));
        for (int e = 0; e < 32; e++) y[e] = (float)(int8_t)b[2 + e] * d;
        break;
    }
    case GGML_TYPE_Q4_0: {
        float d = ref_f16_to_f32(rd16(b));
        for (int e = 0; e < 32; e++) y[e] = (float)(nib32(b + 2, e) - 8) * d;
        break;
    }
    case GGML_TYPE_Q4_1: {
        float d = ref_f16_to_f32(rd16(b)), m = ref_f16_to_f32(rd16(b + 2));
        for (int e = 0; e < 32; e++) y[e] = (float)nib32(b + 4, e) * d + m;
        break;
    }
    case GGML_TYPE_Q5_0: {
        float d = ref_f16_to_f32(rd16(b));
        for (int e = 0; e < 32; e++) {
            int q = nib32(b + 6, e) + 16 * bit32(b + 2, e);
            y[e] = (float)(q - 16) * d;
        }
        break;
    }
    case GGML_TYPE_Q5_1: {
        float d = ref_f16_to_f32(rd16(b)), m = ref_f16_to_f32(rd16(b + 2));
        for (int e = 0; e < 32; e++) {
            int q = nib32(b + 8, e) + 16 * bit32(b + 4, e);
            y[e] = (float)q * d + m;
        }
        break;
    }
    case GGML_TYPE_Q4_K:
    case GGML_TYPE_Q5_K: {
        int q5 = type == GGML_TYPE_Q5_K;
        float d = ref_f16_to_f32(rd16(b)), dmin = ref_f16_to_f32(rd16(b + 2));
        const uint8_t *scales = b + 4, *qh = b + 16, *qs = b + (q5 ? 48 : 16);
        for (int e = 0; e < 256; e++) {
            int pair = e / 64, sub = e / 32, l = e % 32;
            uint8_t byte = qs[32 * pair + l];
            int q = (sub % 2 == 0) ? (byte & 15) : (byte >> 4);
            if (q5) q += 16 * ((qh[l] >> sub) & 1);
            int sc, mn;
            k_scale_min(scales, sub, &sc, &mn);
            float dsc = d * (float)sc, mmn = dmin * (float)mn;
            y[e] = dsc * (float)q - mmn;
        }
        break;
    }
    case GGML_TYPE_Q6_K: {
        const uint8_t *ql = b, *qh = b + 128;
        const int8_t *scales = (const int8_t *)(b + 192);
        float d = ref_f16_to_f32(rd16(b + 208));
        for (int e = 0; e < 256; e++) {
            int half = e / 128, r = e % 128, quarter = r / 32, l = r % 32;
            uint8_t lb = ql[64 * half + 32 * (quarter % 2) + l];
            int lo4 = quarter < 2 ? (lb & 15) : (lb >> 4);
            int hi2 = (qh[32 * half + l] >> (2 * quarter)) & 3;
            int q = (lo4 | hi2 << 4) - 32;
            float dsc = d * (float)scales[8 * half + 2 * quarter + l / 16];
            y[e] = dsc * (float)q;
        }
        break;
    }
    case GGML_TYPE_Q2_K: { /* scales[16] | qs[64] | half d | half dmin */
        const uint8_t *scales = b, *qs = b + 16;
        float d = ref_f16_to_f32(rd16(b + 80)), dmin = ref_f16_to_f32(rd16(b + 82));
        for (int e = 0; e < 256; e++) {
            int sc = scales[e / 16] & 15, mn = scales[e / 16] >> 4;
            float dsc = d * (float)sc, mmn = dmin * (float)mn;
            y[e] = dsc * (float)two_bits(qs, e) - mmn;
        }
        break;
    }
    case GGML_TYPE_Q3_K: { /* hmask[32] | qs[64] | scales[12] | half d */
        const uint8_t *hmask = b, *qs = b + 32, *scales = b + 96;
        float d = ref_f16_to_f32(rd16(b + 108));
        for (int e = 0; e < 256; e++) {
            /* the high bit of E is bit (E / 32) of hmask[E % 32]; a clear
             * bit subtracts 4 */
            int high = (hmask[e % 32] >> (e / 32)) & 1;
            int q = two_bits(qs, e) - (high ? 0 : 4);
            float dsc = d * (float)(q3_scale(scales, e / 16) - 32);
            y[e] = dsc * (float)q;
        }
        break;
    }
    case GGML_TYPE_IQ4_NL: { /* half d | qs[16] */
        float d = ref_f16_to_f32(rd16(b));
        for (int e = 0; e < 32; e++) y[e] = d * (float)iq4_levels[nib32(b + 2, e)];
        break;
    }
    case GGML_TYPE_IQ4_XS: { /* half d | u16 scales_h | scales_l[4] | qs[128] */
        float d = ref_f16_to_f32(rd16(b));
        int scales_h = rd16(b + 2);
        const uint8_t *scales_l = b + 4, *qs = b + 8;
        for (int e = 0; e < 256; e++) {
            int sub = e / 32; /* 32-element sub-block, 16 bytes of qs each */
            int ls = ((scales_l[sub / 2] >> (4 * (sub % 2))) & 15) |
                     (((scales_h >> (2 * sub)) & 3) << 4);
            float dsc = d * (float)(ls - 32);
            y[e] = dsc * (float)iq4_levels[nib32(qs + 16 * sub, e % 32)];
        }
        break;
    }
    }
}

int ref_dequant(int type, const void *src, float *dst, int64_t n)
{
    int be = ref_block_elems(type), bb = ref_block_bytes(type);
    if (be == 0 || n % be) return -1;
    for (int64_t i = 0; i < n / be; i++)
        ref_block(type, (const uint8_t *)src + i * bb, dst + i * be);
    return 0;
}

uint64_t ref_rand_u64(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

float ref_rand_f32(uint64_t *s)
{
    return (float)((double)(ref_rand_u64(s) >> 11) * 0x1p-52 - 1.0);
}

static void wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

void ref_random_blocks(int type, void *dst, int64_t n_blocks, float scale,
                       uint64_t *seed)
{
    int bb = ref_block_bytes(type);
    uint8_t *p = dst;
    for (int64_t i = 0; i < n_blocks * bb; i++) p[i] = (uint8_t)ref_rand_u64(seed);
    for (int64_t i = 0; i < n_blocks; i++, p += bb) {
        float r1 = scale * ref_rand_f32(seed), r2 = scale * ref_rand_f32(seed);
        switch (type) {
        case GGML_TYPE_F32: memcpy(p, &r1, 4); break;
        case GGML_TYPE_F16: wr16(p, ref_f32_to_f16(r1)); break;
        case GGML_TYPE_BF16: wr16(p, ref_f32_to_bf16(r1)); break;
        case GGML_TYPE_Q8_0: case GGML_TYPE_Q4_0: case GGML_TYPE_Q5_0:
        case GGML_TYPE_IQ4_NL: case GGML_TYPE_IQ4_XS:
            wr16(p, ref_f32_to_f16(r1));
            break;
        case GGML_TYPE_Q4_1: case GGML_TYPE_Q5_1:
        case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K:
            wr16(p, ref_f32_to_f16(r1));
            wr16(p + 2, ref_f32_to_f16(r2));
            break;
        case GGML_TYPE_Q6_K: wr16(p + 208, ref_f32_to_f16(r1)); break;
        case GGML_TYPE_Q2_K:
            wr16(p + 80, ref_f32_to_f16(r1));
            wr16(p + 82, ref_f32_to_f16(r2));
            break;
        case GGML_TYPE_Q3_K: wr16(p + 108, ref_f32_to_f16(r1)); break;
        }
    }
}

/* Nearest level of V / D (D != 0); ties to the lower index. */
static int iq4_nearest(float v, float d)
{
    int best = 0;
    float be = fabsf(v - d * (float)iq4_levels[0]);
    for (int i = 1; i < 16; i++) {
        float e = fabsf(v - d * (float)iq4_levels[i]);
        if (e < be) { be = e; best = i; }
    }
    return best;
}

/* Squared error of block X (32) quantized with the f16 scale H. */
static float iq4_block_err(const float *x, uint16_t h)
{
    float d = ref_f16_to_f32(h), err = 0;
    for (int k = 0; k < 32; k++) {
        float e = d != 0 ? x[k] - d * (float)iq4_levels[iq4_nearest(x[k], d)] : x[k];
        err += e * e;
    }
    return err;
}

void ref_quantize_iq4_nl(const float *x, int64_t n, void *dst)
{
    uint8_t *b = dst;
    for (int64_t blk = 0; blk < n / 32; blk++, x += 32, b += 18) {
        float vmax = 0; /* the element of largest magnitude, signed */
        for (int k = 0; k < 32; k++)
            if (fabsf(x[k]) > fabsf(vmax)) vmax = x[k];
        uint16_t best = 0;
        float best_err = iq4_block_err(x, 0);
        for (int t = -8; t <= 8; t++) {
            const float f = 1.0f + 0.01f * (float)t;
            const float cand[2] = {vmax / -127.0f * f, vmax / 113.0f * f};
            for (int c = 0; c < 2; c++) {
                uint16_t h = ref_f32_to_f16(cand[c]);
                float e = iq4_block_err(x, h);
                if (e < best_err) { best_err = e; best = h; }
            }
        }
        wr16(b, best);
        float d = ref_f16_to_f32(best);
        memset(b + 2, 0, 16);
        for (int k = 0; k < 32 && d != 0; k++) {
            int q = iq4_nearest(x[k], d);
            b[2 + k % 16] |= (uint8_t)(k < 16 ? q : q << 4);
        }
    }
}

void ref_quant_x8(const float *x, int64_t n, int8_t *q, float *d, float *amax)
{
    for (int64_t b = 0; b < n / 32; b++) {
        float a = 0;
        for (int k = 0; k < 32; k++) a = fmaxf(a, fabsf(x[32 * b + k]));
        const float id = a != 0 ? 127.0f / a : 0.0f;
        for (int k = 0; k < 32; k++) {
            const float v = x[32 * b + k] * id; /* one f32 rounding */
            q[32 * b + k] = (int8_t)nearbyintf(v); /* ties to even */
        }
        d[b] = a / 127.0f;
        amax[b] = a;
    }
}
