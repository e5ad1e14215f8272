/* tile.c - tile element packing, codecs, header checks. See tile.h. */
#include "kvstore/tile.h"

#include <lz4.h>
#include <lz4hc.h>
#include <math.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#define XXH_INLINE_ALL /* compiled here with this build's vector ISA */
#include <xxhash.h>
#include <immintrin.h>

#include "engine/cpu.h"
#include "base/kvt.h"

static const char *const tile_codec_names[TILE_NCODECS] = {
    "none", "lz4", "shuf-lz4", "lz4hc", "xpose-lz4", "plane-huf", "dedup-huf",
};
_Static_assert(sizeof tile_codec_names / sizeof tile_codec_names[0] ==
                   TILE_NCODECS,
               "codec name table length");

static const char *const tile_type_names[KVS_NTYPES] = {
    "f32", "f16", "bf16", "q8_0",
};
_Static_assert(sizeof tile_type_names / sizeof tile_type_names[0] ==
                   KVS_NTYPES,
               "type name table length");

const char *tile_codec_name(int codec)
{
    if (codec < 0 || codec >= TILE_NCODECS) return "?";
    return tile_codec_names[codec];
}

int tile_codec_parse(const char *name)
{
    for (int i = 0; i < TILE_NCODECS; i++)
        if (strcmp(name, tile_codec_names[i]) == 0) return i;
    return KVT_ERANGE;
}

const char *tile_type_name(int type)
{
    if (type < 0 || type >= KVS_NTYPES) return "?";
    return tile_type_names[type];
}

int tile_type_parse(const char *name)
{
    for (int i = 0; i < KVS_NTYPES; i++)
        if (strcmp(name, tile_type_names[i]) == 0) return i;
    return KVT_ERANGE;
}

/* ---- element conversions ------------------------------------------------ */

static uint32_t f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float u2f(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Round to nearest even; NaN -> quiet NaN, overflow -> Inf. */
uint16_t tile_f32_to_f16(float f)
{
    uint32_t u = f2u(f);
    uint32_t sign = u & 0x80000000u;
    uint32_t o;
    u ^= sign;
    if (u >= (127u + 16u) << 23) {           /* >= 65536: Inf or NaN */
        o = u > (255u << 23) ? 0x7e00u : 0x7c00u;
    } else if (u < (113u << 23)) {           /* subnormal or zero half */
        const uint32_t magic = 126u << 23;    /* 0.5f */
        o = f2u(u2f(u) + u2f(magic)) - magic;
    } else {
        uint32_t mant_odd = (u >> 13) & 1u;
        u += ((uint32_t)(15 - 127) << 23) + 0xfffu + mant_odd;
        o = u >> 13;
    }
    return (uint16_t)(o | (sign >> 16));
}

float tile_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t em = h & 0x7fffu;
    if (em >= 0x7c00u) return u2f(sign | 0x7f800000u | ((em & 0x3ffu) << 13));
    if (em >= 0x0400u) return u2f(sign | ((em << 13) + (112u << 23)));
    return u2f(sign | f2u((float)em * 5.9604644775390625e-8f)); /* em*2^-24 */
}

/* dst[i] = f16 element i of S8 for i < count rounded down to 8 (returned):
 * exact like tile_f16_to_f32 (a signalling NaN comes out quiet; tile_pack
 * never makes one). Only on CPUs with F16C. */
__attribute__((target("avx,f16c"))) static size_t tile_f16_unpack8(const uint8_t *s8,
                                                                   size_t count, float *dst)
{
    size_t i = 0;
    for (; i + 8 <= count; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(const void *)(s8 + 2 * i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
    return i;
}

uint16_t tile_f32_to_bf16(float f)
{
    uint32_t u = f2u(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float tile_bf16_to_f32(uint16_t h) { return u2f((uint32_t)h << 16); }

int tile_check_dims(int type, int kv_dim)
{
    if (type < 0 || type >= KVS_NTYPES) return KVT_ETYPE;
    if (kv_dim <= 0 || kv_dim > TILE_MAX_KV_DIM) return KVT_ERANGE;
    if (type == KVS_Q8_0 && kv_dim % TILE_QK != 0) return KVT_ESHAPE;
    return 0;
}

size_t tile_row_bytes(int type, int kv_dim)
{
    KVT_ASSERT(tile_check_dims(type, kv_dim) == 0);
    switch (type) {
    case KVS_F32: return (size_t)kv_dim * 4;
    case KVS_F16:
    case KVS_BF16: return (size_t)kv_dim * 2;
    default: return (size_t)kv_dim / TILE_QK * (2 + TILE_QK);
    }
}

size_t tile_raw_bytes(int type, int kv_dim, int n)
{
    KVT_ASSERT(n >= 0);
    return 2 * (size_t)n * tile_row_bytes(type, kv_dim);
}

size_t tile_encode_bound(int type, int kv_dim, int n)
{
    size_t raw = tile_raw_bytes(type, kv_dim, n);
    size_t lz = raw + raw / 255 + 16; /* LZ4_COMPRESSBOUND */
    return sizeof(struct tile_hdr) + (lz > raw ? lz : raw);
}

/* dedup-huf hash table slots for n rows: a power of two >= 2n. */
static size_t dedup_slots(size_t n)
{
    size_t s = 16;
    while (s < 2 * n) s *= 2;
    return s;
}

/* Bytes of dedup-huf's encoder tables past the raw bytes in the scratch:
 * 8 (alignment) + slots u32 + hash u32[n] + ref u32[n]. */
static size_t dedup_table_bytes(size_t n)
{
    return 8 + 4 * dedup_slots(n) + 8 * n;
}

size_t tile_scratch_bound(int type, int kv_dim, int n)
{
    KVT_ASSERT(n >= 0);
    return tile_raw_bytes(type, kv_dim, n) + dedup_table_bytes((size_t)n);
}

static void q8_0_pack_row(const float *x, int kv_dim, uint8_t *dst)
{
    for (int b = 0; b < kv_dim / TILE_QK; b++) {
        const float *xb = x + b * TILE_QK;
        uint8_t *yb = dst + (size_t)b * (2 + TILE_QK);
        float amax = 0.0f;
        for (int j = 0; j < TILE_QK; j++) amax = fmaxf(amax, fabsf(xb[j]));
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t dh = tile_f32_to_f16(d);
        memcpy(yb, &dh, 2);
        for (int j = 0; j < TILE_QK; j++) {
            float q = roundf(xb[j] * id);
            yb[2 + j] = (uint8_t)(int8_t)q;
        }
    }
}

static void q8_0_unpack_row(const uint8_t *src, int kv_dim, float *x)
{
    for (int b = 0; b < kv_dim / TILE_QK; b++) {
        const uint8_t *yb = src + (size_t)b * (2 + TILE_QK);
        uint16_t dh;
        memcpy(&dh, yb, 2);
        float d = tile_f16_to_f32(dh);
        for (int j = 0; j < TILE_QK; j++)
            x[b * TILE_QK + j] = (float)(int8_t)yb[2 + j] * d;
    }
}

void tile_pack(int type, int kv_dim, const float *src, int n, void *dst)
{
    KVT_ASSERT(tile_check_dims(type, kv_dim) == 0);
    size_t count = (size_t)n * (size_t)kv_dim;
    uint8_t *d8 = dst;
    switch (type) {
    case KVS_F32:
        memcpy(dst, src, count * 4);
        break;
    case KVS_F16:
        for (size_t i = 0; i < count; i++) {
            uint16_t h = tile_f32_to_f16(src[i]);
            memcpy(d8 + 2 * i, &h, 2);
        }
        break;
    case KVS_BF16:
        for (size_t i = 0; i < count; i++) {
            uint16_t h = tile_f32_to_bf16(src[i]);
            memcpy(d8 + 2 * i, &h, 2);
        }
        break;
    default:
        for (int t = 0; t < n; t++)
            q8_0_pack_row(src + (size_t)t * kv_dim, kv_dim,
                          d8 + (size_t)t * tile_row_bytes(type, kv_dim));
        break;
    }
}

void tile_unpack(int type, int kv_dim, const void *src, int n, float *dst)
{
    KVT_ASSERT(tile_check_dims(type, kv_dim) == 0);
    size_t count = (size_t)n * (size_t)kv_dim;
    const uint8_t *s8 = src;
    switch (type) {
    case KVS_F32:
        memcpy(dst, src, count * 4);
        break;
    case KVS_F16: {
        /* F16C on the avx2 and avx512 kernel sets (cpu.h) */
        size_t i = cpu_set_default() >= CPU_SET_AVX2 ? tile_f16_unpack8(s8, count, dst) : 0;
        for (; i < count; i++) {
            uint16_t h;
            memcpy(&h, s8 + 2 * i, 2);
            dst[i] = tile_f16_to_f32(h);
        }
        break;
    }
    case KVS_BF16: {
        size_t i = 0;
#ifdef __SSE2__
        for (; i + 8 <= count; i += 8) {
            __m128i h = _mm_loadu_si128((const __m128i *)(const void *)(s8 + 2 * i));
            __m128i z = _mm_setzero_si128();
            _mm_storeu_si128((__m128i *)(void *)(dst + i), _mm_unpacklo_epi16(z, h));
            _mm_storeu_si128((__m128i *)(void *)(dst + i + 4), _mm_unpackhi_epi16(z, h));
        }
#endif
        for (; i < count; i++) {
            uint16_t h;
            memcpy(&h, s8 + 2 * i, 2);
            dst[i] = tile_bf16_to_f32(h);
        }
        break;
    }
    default:
        for (int t = 0; t < n; t++)
            q8_0_unpack_row(s8 + (size_t)t * tile_row_bytes(type, kv_dim),
                            kv_dim, dst + (size_t)t * kv_dim);
        break;
    }
}

/* ---- pre-filters ---------------------------------------------------------- */

/* Element size the filters work on: Q8_0 blocks are handled as bytes. */
static size_t tile_elem_bytes(int type)
{
    switch (type) {
    case KVS_F32: return 4;
    case KVS_F16:
    case KVS_BF16: return 2;
    default: return 1;
    }
}

/* Byte planes: plane j holds byte j of every element. */
static void shuf_fwd(const uint8_t *in, size_t size, size_t es, uint8_t *out)
{
    size_t ne = size / es;
    for (size_t j = 0; j < es; j++)
        for (size_t i = 0; i < ne; i++) out[j * ne + i] = in[i * es + j];
}

static void shuf_inv(const uint8_t *in, size_t size, size_t es, uint8_t *out)
{
    size_t ne = size / es;
    if (es == 2) {
        const uint8_t *p0 = in, *p1 = in + ne;
        for (size_t i = 0; i < ne; i++) {
            out[2 * i] = p0[i];
            out[2 * i + 1] = p1[i];
        }
        return;
    }
    for (size_t j = 0; j < es; j++)
        for (size_t i = 0; i < ne; i++) out[i * es + j] = in[j * ne + i];
}

/* Channel planes of one section (n rows of m elements of es bytes):
 * out[p][c][t] = byte (es-1-p) of x[t][c] ^ x[t-1][c]. */
static void xpose_fwd(const uint8_t *in, int n, size_t m, size_t es,
                      uint8_t *out)
{
    size_t nn = (size_t)n, plane = m * nn;
    for (size_t c = 0; c < m; c++) {
        for (size_t t = 0; t < nn; t++) {
            const uint8_t *x = in + (t * m + c) * es;
            for (size_t b = 0; b < es; b++) {
                uint8_t v = x[b];
                if (t > 0) v ^= x[b - m * es];
                out[(es - 1 - b) * plane + c * nn + t] = v;
            }
        }
    }
}

/* Inverse of xpose_fwd, in blocks of 8 tokens so both the planes (8
 * bytes per channel) and the output (8 rows) stay in cache. */
#define XPOSE_BLK 8
static void xpose_inv(const uint8_t *in, int n, size_t m, size_t es,
                      uint8_t *out)
{
    size_t nn = (size_t)n, plane = m * nn;
    for (size_t t0 = 0; t0 < nn; t0 += XPOSE_BLK) {
        size_t tb = KVT_MIN((size_t)XPOSE_BLK, nn - t0);
        if (es == 2) {
            uint16_t *o = (uint16_t *)(void *)out;
            for (size_t c = 0; c < m; c++) {
                uint16_t prev = t0 ? o[(t0 - 1) * m + c] : 0;
                const uint8_t *h = in + c * nn + t0, *l = h + plane;
                for (size_t j = 0; j < tb; j++) {
                    prev ^= (uint16_t)(h[j] << 8 | l[j]);
                    o[(t0 + j) * m + c] = prev;
                }
            }
        } else if (es == 4) {
            uint32_t *o = (uint32_t *)(void *)out;
            for (size_t c = 0; c < m; c++) {
                uint32_t prev = t0 ? o[(t0 - 1) * m + c] : 0;
                const uint8_t *p3 = in + c * nn + t0, *p2 = p3 + plane,
                              *p1 = p2 + plane, *p0 = p1 + plane;
                for (size_t j = 0; j < tb; j++) {
                    prev ^= (uint32_t)p3[j] << 24 | (uint32_t)p2[j] << 16 |
                            (uint32_t)p1[j] << 8 | p0[j];
                    o[(t0 + j) * m + c] = prev;
                }
            }
        } else { /* es == 1 */
            for (size_t c = 0; c < m; c++) {
                uint8_t prev = t0 ? out[(t0 - 1) * m + c] : 0;
                const uint8_t *p = in + c * nn + t0;
                for (size_t j = 0; j < tb; j++) {
                    prev ^= p[j];
                    out[(t0 + j) * m + c] = prev;
                }
            }
        }
    }
}

/* ---- plane-huf: byte planes, order-0 Huffman or raw per plane ------------ */

#define HUF_MAX_LEN 11
#define HUF_TAB (1u << HUF_MAX_LEN)
#define HUF_LEN_BYTES 128  /* 256 code lengths, 4 bits each */
#define HUF_STREAMS 4
#define HUF_MIN_COL_N 16   /* fewer tokens: no column bias (tables cost more) */

enum { PLANE_RAW = 0, PLANE_HUF = 1, PLANE_HUF_COL = 2 };

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* Code lengths (<= HUF_MAX_LEN, 0 = unused) for the counts cnt[256]:
 * Huffman by the two-queue method on the sorted leaves; if the longest
 * code is too long, the counts are flattened and the tree rebuilt. */
static void huf_lengths(const uint32_t cnt[256], uint8_t len[256])
{
    uint32_t f[256];
    memcpy(f, cnt, sizeof f);
    for (int shift = 0;; shift++) {
        uint16_t sym[256];
        uint64_t w[511];
        int16_t parent[511];
        int k = 0;
        for (int s = 0; s < 256; s++)
            if (f[s]) sym[k++] = (uint16_t)s;
        memset(len, 0, 256);
        if (k == 0) return;
        if (k == 1) { len[sym[0]] = 1; return; }
        for (int i = 1; i < k; i++) { /* insertion sort by count, k <= 256 */
            uint16_t v = sym[i];
            int j = i;
            for (; j > 0 && f[sym[j - 1]] > f[v]; j--) sym[j] = sym[j - 1];
            sym[j] = v;
        }
        for (int i = 0; i < k; i++) w[i] = f[sym[i]];
        int li = 0, ni = k, nn = k; /* next leaf, next internal, nodes */
        for (int m = 0; m < k - 1; m++) {
            int pick[2];
            for (int q = 0; q < 2; q++) {
                if (li < k && (ni >= nn || w[li] <= w[ni])) pick[q] = li++;
                else pick[q] = ni++;
            }
            w[nn] = w[pick[0]] + w[pick[1]];
            parent[pick[0]] = parent[pick[1]] = (int16_t)nn;
            nn++;
        }
        uint8_t depth[511];
        depth[nn - 1] = 0;
        int maxl = 0;
        for (int i = nn - 2; i >= 0; i--) {
            depth[i] = (uint8_t)(depth[parent[i]] + 1);
            if (i < k && depth[i] > maxl) maxl = depth[i];
        }
        if (maxl <= HUF_MAX_LEN) {
            for (int i = 0; i < k; i++) len[sym[i]] = depth[i];
            return;
        }
        for (int s = 0; s < 256; s++)
            if (cnt[s]) f[s] = (cnt[s] >> (shift + 1)) | 1u;
    }
}

/* Canonical codes from lengths (shorter first, then by symbol).
 * @return the code space used, in units of 2^-HUF_MAX_LEN (HUF_TAB: a
 * complete code); > HUF_TAB if the lengths are invalid (codes unset). */
static uint32_t huf_codes(const uint8_t len[256], uint16_t code[256])
{
    uint32_t bl[HUF_MAX_LEN + 1] = {0}, next[HUF_MAX_LEN + 2];
    uint32_t kraft = 0;
    for (int s = 0; s < 256; s++) {
        if (len[s] > HUF_MAX_LEN) return HUF_TAB + 1;
        if (len[s]) {
            bl[len[s]]++;
            kraft += HUF_TAB >> len[s];
        }
    }
    if (kraft > HUF_TAB) return kraft;
    uint32_t c = 0;
    for (int l = 1; l <= HUF_MAX_LEN; l++) {
        c = (c + bl[l - 1]) << 1;
        next[l] = c;
    }
    for (int s = 0; s < 256; s++)
        code[s] = len[s] ? (uint16_t)next[len[s]]++ : 0;
    return kraft;
}

/* Bytes the 4 streams of plane p (ne symbols) take with lengths len. */
static size_t huf_stream_bytes(const uint8_t *p, size_t ne, const uint8_t len[256],
                               size_t out[HUF_STREAMS])
{
    size_t q = (ne + HUF_STREAMS - 1) / HUF_STREAMS, total = 0;
    for (int j = 0; j < HUF_STREAMS; j++) {
        size_t a = KVT_MIN(ne, (size_t)j * q), b = KVT_MIN(ne, a + q);
        uint64_t bits = 0;
        for (size_t i = a; i < b; i++) bits += len[p[i]];
        out[j] = (size_t)((bits + 7) / 8);
        total += out[j];
    }
    return total;
}

static size_t huf_write_stream(const uint8_t *p, size_t n, const uint8_t len[256],
                               const uint16_t code[256], uint8_t *dst)
{
    uint64_t acc = 0;
    unsigned nb = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        acc = acc << len[p[i]] | code[p[i]];
        nb += len[p[i]];
        while (nb >= 8) {
            nb -= 8;
            dst[o++] = (uint8_t)(acc >> nb);
        }
    }
    if (nb) dst[o++] = (uint8_t)(acc << (8 - nb));
    return o;
}

/* Column bias: for each of the m columns of the n x m plane p, the most
 * frequent byte; p is rewritten as p - bias[col] (mod 256). */
static void col_bias(uint8_t *p, size_t n, size_t m, uint8_t *bias)
{
    uint32_t h[256];
    for (size_t c = 0; c < m; c++) {
        memset(h, 0, sizeof h);
        for (size_t t = 0; t < n; t++) h[p[t * m + c]]++;
        int best = 0;
        for (int s = 1; s < 256; s++) best = h[s] > h[best] ? s : best;
        bias[c] = (uint8_t)best;
        for (size_t t = 0; t < n; t++) p[t * m + c] = (uint8_t)(p[t * m + c] - best);
    }
}

/* Inverse of col_bias: p += bias[col]. */
static void col_unbias(uint8_t *restrict p, size_t n, size_t m,
                       const uint8_t *restrict bias)
{
    for (size_t t = 0; t < n; t++) {
        uint8_t *row = p + t * m;
        size_t c = 0;
#ifdef __SSE2__
        for (; c + 16 <= m; c += 16) {
            __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(row + c));
            __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(bias + c));
            _mm_storeu_si128((__m128i *)(void *)(row + c), _mm_add_epi8(x, b));
        }
#endif
        for (; c < m; c++) row[c] = (uint8_t)(row[c] + bias[c]);
    }
}

/* One plane record (see tile.h) of plane p (n x m bytes, may be
 * rewritten) into dst. @return bytes, or 0 if dst_cap is too small. */
static size_t huf_put_plane(uint8_t *p, size_t n, size_t m, int top,
                            uint8_t *dst, size_t dst_cap)
{
    size_t ne = n * m;
    uint32_t cnt[256] = {0};
    uint8_t len[256];
    uint16_t code[256];
    size_t sb[HUF_STREAMS];
    for (size_t i = 0; i < ne; i++) cnt[p[i]]++;
    huf_lengths(cnt, len);
    size_t size = 1 + HUF_LEN_BYTES + 4 * HUF_STREAMS + huf_stream_bytes(p, ne, len, sb);
    int kind = PLANE_HUF;
    if (top && n >= HUF_MIN_COL_N && dst_cap > 1 + m) {
        /* try the column bias; keep it if it saves more than its table */
        uint8_t *bias = dst + 1; /* provisional, overwritten if not used */
        uint8_t len2[256];
        size_t sb2[HUF_STREAMS];
        col_bias(p, n, m, bias);
        memset(cnt, 0, sizeof cnt);
        for (size_t i = 0; i < ne; i++) cnt[p[i]]++;
        huf_lengths(cnt, len2);
        size_t size2 = 1 + m + HUF_LEN_BYTES + 4 * HUF_STREAMS +
                       huf_stream_bytes(p, ne, len2, sb2);
        if (size2 < size) {
            kind = PLANE_HUF_COL;
            size = size2;
            memcpy(len, len2, sizeof len);
            memcpy(sb, sb2, sizeof sb);
        } else {
            col_unbias(p, n, m, bias);
        }
    }
    /* Huffman only if it saves at least 1/32: otherwise raw decodes faster */
    if (size + ne / 32 >= 1 + ne) {
        if (dst_cap < 1 + ne) return 0;
        if (kind == PLANE_HUF_COL) col_unbias(p, n, m, dst + 1);
        dst[0] = PLANE_RAW;
        memcpy(dst + 1, p, ne);
        return 1 + ne;
    }
    if (dst_cap < size) return 0;
    uint8_t *o = dst;
    *o++ = (uint8_t)kind;
    if (kind == PLANE_HUF_COL) o += m; /* bias already in place */
    for (int i = 0; i < HUF_LEN_BYTES; i++)
        *o++ = (uint8_t)(len[2 * i] | len[2 * i + 1] << 4);
    for (int j = 0; j < HUF_STREAMS; j++, o += 4) put_le32(o, (uint32_t)sb[j]);
    huf_codes(len, code);
    size_t q = (ne + HUF_STREAMS - 1) / HUF_STREAMS;
    for (int j = 0; j < HUF_STREAMS; j++) {
        size_t a = KVT_MIN(ne, (size_t)j * q), b = KVT_MIN(ne, a + q);
        size_t w = huf_write_stream(p + a, b - a, len, code, o);
        KVT_ASSERT(w == sb[j]);
        o += w;
    }
    KVT_ASSERT((size_t)(o - dst) == size);
    return size;
}

static uint64_t load_be64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return __builtin_bswap64(v);
}

/* Bits at bit offset pos of src[0, avail), zero past the end, MSB first. */
static uint64_t huf_peek_safe(const uint8_t *src, size_t avail, size_t pos)
{
    size_t byte = pos >> 3;
    if (byte + 8 <= avail) return load_be64(src + byte) << (pos & 7);
    uint8_t t[8] = {0};
    if (byte < avail) memcpy(t, src + byte, avail - byte);
    return load_be64(t) << (pos & 7);
}

/* Decode table, indexed by the next HUF_MAX_LEN bits: up to two symbols
 * whose codes both fit in those bits. Entry bits: 0-7 first symbol, 8-15
 * second, 16-19 first length, 20-23 total length, 24-25 symbol count.
 * @return 0 or -1 on bad lengths. */
#define HUF_E_LEN1(e) (((e) >> 16) & 15u)
#define HUF_E_LEN(e) (((e) >> 20) & 15u)
#define HUF_E_NSYM(e) ((e) >> 24)
static int huf_table(const uint8_t *lens, uint32_t tab[HUF_TAB])
{
    uint8_t len[256];
    uint16_t code[256];
    for (int i = 0; i < HUF_LEN_BYTES; i++) {
        len[2 * i] = lens[i] & 15;
        len[2 * i + 1] = lens[i] >> 4;
    }
    uint32_t kraft = huf_codes(len, code);
    if (kraft > HUF_TAB) return -1;
    /* one[]: the first symbol and its length; code space no code uses
     * (never from our encoder) decodes as garbage of full length, which
     * the raw checksum catches */
    uint16_t one[HUF_TAB];
    if (kraft < HUF_TAB)
        for (uint32_t i = 0; i < HUF_TAB; i++) one[i] = HUF_MAX_LEN << 8;
    for (uint32_t s = 0; s < 256; s++) {
        if (!len[s]) continue;
        uint32_t a = (uint32_t)code[s] << (HUF_MAX_LEN - len[s]);
        uint32_t b = a + (HUF_TAB >> len[s]);
        for (uint32_t i = a; i < b; i++) one[i] = (uint16_t)(s | (uint32_t)len[s] << 8);
    }
    /* pair up: the bits after the first code start a second short code */
    for (uint32_t i = 0; i < HUF_TAB; i++) {
        uint32_t e = one[i], l1 = e >> 8;
        uint32_t f = one[(i << l1) & (HUF_TAB - 1)], l2 = f >> 8;
        uint32_t single = 1u << 24 | l1 << 20 | l1 << 16 | (e & 0xffu);
        uint32_t pair = 2u << 24 | (l1 + l2) << 20 | l1 << 16 | (f & 0xffu) << 8 |
                        (e & 0xffu);
        tab[i] = l1 + l2 <= HUF_MAX_LEN ? pair : single;
    }
    return 0;
}

/* Lookups per refill: 5 x 11 bits <= 57 bits available after a refill;
 * each lookup writes 2 bytes and advances by 1 or 2 symbols. */
#define HUF_PER_REFILL 5
#define HUF_SYM2(b, pos, o)                                                 \
    do {                                                                     \
        uint32_t e_ = tab[(b) >> (64 - HUF_MAX_LEN)];                       \
        uint16_t s_ = (uint16_t)e_;                                          \
        memcpy((o), &s_, 2);                                                 \
        (o) += HUF_E_NSYM(e_);                                               \
        (b) <<= HUF_E_LEN(e_);                                               \
        (pos) += HUF_E_LEN(e_);                                              \
    } while (0)

/* Decode 4 streams (starting at s[j], readable up to end) of counts
 * cnt[j] into out[j] (4 adjacent runs). Bits past a stream's end read as
 * the following bytes or zero: a bad stream gives wrong bytes (the raw
 * checksum catches them), never an out-of-bounds access. */
static void huf_decode4(const uint32_t tab[HUF_TAB], const uint8_t *s[4],
                        const uint8_t *end, const size_t cnt[4], uint8_t *out[4])
{
    const uint8_t *s0 = s[0], *s1 = s[1], *s2 = s[2], *s3 = s[3];
    size_t a0 = (size_t)(end - s0), a1 = (size_t)(end - s1),
           a2 = (size_t)(end - s2), a3 = (size_t)(end - s3);
    size_t p0 = 0, p1 = 0, p2 = 0, p3 = 0;
    uint8_t *o0 = out[0], *o1 = out[1], *o2 = out[2], *o3 = out[3];
    /* the fast loop may write 2 * HUF_PER_REFILL bytes past o_j's last
     * symbol only while that stays inside its own run */
    const size_t room = 2 * HUF_PER_REFILL;
    uint8_t *e0 = o0 + cnt[0], *e1 = o1 + cnt[1], *e2 = o2 + cnt[2], *e3 = o3 + cnt[3];
    while ((size_t)(e0 - o0) > room && (size_t)(e1 - o1) > room &&
           (size_t)(e2 - o2) > room && (size_t)(e3 - o3) > room &&
           (p0 >> 3) + 8 <= a0 && (p1 >> 3) + 8 <= a1 && (p2 >> 3) + 8 <= a2 &&
           (p3 >> 3) + 8 <= a3) {
        uint64_t b0 = load_be64(s0 + (p0 >> 3)) << (p0 & 7);
        uint64_t b1 = load_be64(s1 + (p1 >> 3)) << (p1 & 7);
        uint64_t b2 = load_be64(s2 + (p2 >> 3)) << (p2 & 7);
        uint64_t b3 = load_be64(s3 + (p3 >> 3)) << (p3 & 7);
        for (int k = 0; k < HUF_PER_REFILL; k++) {
            HUF_SYM2(b0, p0, o0);
            HUF_SYM2(b1, p1, o1);
            HUF_SYM2(b2, p2, o2);
            HUF_SYM2(b3, p3, o3);
        }
    }
    const uint8_t *ss[4] = { s0, s1, s2, s3 };
    size_t av[4] = { a0, a1, a2, a3 }, ps[4] = { p0, p1, p2, p3 };
    uint8_t *os[4] = { o0, o1, o2, o3 }, *es[4] = { e0, e1, e2, e3 };
    for (int j = 0; j < 4; j++) /* tails: one symbol per lookup */
        for (uint8_t *o = os[j]; o < es[j]; o++) {
            uint32_t e = tab[huf_peek_safe(ss[j], av[j], ps[j]) >> (64 - HUF_MAX_LEN)];
            *o = (uint8_t)e;
            ps[j] += HUF_E_LEN1(e);
        }
}

/* Parse one plane record of ne = n x m bytes at src[0, size). A raw
 * plane is returned in place (*plane = src + 1); a coded one is decoded
 * into buf (ne bytes), column bias applied. @return record bytes or < 0. */
static int64_t huf_get_plane(const uint8_t *src, size_t size, size_t n, size_t m,
                             uint8_t *buf, const uint8_t **plane)
{
    size_t ne = n * m;
    if (size < 1) return KVT_EFORMAT;
    int kind = src[0];
    if (kind == PLANE_RAW) {
        if (size - 1 < ne) return KVT_EFORMAT;
        *plane = src + 1;
        return (int64_t)(1 + ne);
    }
    if (kind != PLANE_HUF && kind != PLANE_HUF_COL) return KVT_EFORMAT;
    size_t o = 1;
    const uint8_t *bias = NULL;
    if (kind == PLANE_HUF_COL) {
        if (size - o < m) return KVT_EFORMAT;
        bias = src + o;
        o += m;
    }
    if (size - o < HUF_LEN_BYTES + 4 * HUF_STREAMS) return KVT_EFORMAT;
    uint32_t tab[HUF_TAB];
    if (huf_table(src + o, tab) < 0) return KVT_EFORMAT;
    o += HUF_LEN_BYTES;
    const uint8_t *sz = src + o;
    o += 4 * HUF_STREAMS;
    const uint8_t *st[HUF_STREAMS];
    size_t cnt[HUF_STREAMS];
    uint8_t *out[HUF_STREAMS];
    size_t q = (ne + HUF_STREAMS - 1) / HUF_STREAMS;
    for (int j = 0; j < HUF_STREAMS; j++) {
        uint32_t b = get_le32(sz + 4 * j);
        if (size - o < b) return KVT_EFORMAT;
        st[j] = src + o;
        o += b;
        size_t a = KVT_MIN(ne, (size_t)j * q);
        cnt[j] = KVT_MIN(ne, a + q) - a;
        out[j] = buf + a;
    }
    huf_decode4(tab, st, src + o, cnt, out);
    if (bias) col_unbias(buf, n, m, bias);
    *plane = buf;
    return (int64_t)o;
}

/* Encode one section (n rows of rb bytes, elements of es bytes) as es
 * plane records, most significant byte first. sc: rb*n bytes scratch.
 * @return bytes written, or 0 if dst_cap is too small. */
static size_t huf_encode_section(const uint8_t *in, size_t n, size_t rb, size_t es,
                                 uint8_t *sc, uint8_t *dst, size_t dst_cap)
{
    size_t m = rb / es, ne = n * m, o = 0;
    for (size_t pl = es; pl-- > 0;) {
        for (size_t i = 0; i < ne; i++) sc[i] = in[i * es + pl];
        size_t w = huf_put_plane(sc, n, m, pl == es - 1, dst + o, dst_cap - o);
        if (w == 0) return 0;
        o += w;
    }
    return o;
}

/* Inverse of huf_encode_section into out (n*rb bytes); sc: n*rb bytes.
 * @return payload bytes used or < 0. */
static int64_t huf_decode_section(const uint8_t *src, size_t size, size_t n,
                                  size_t rb, size_t es, uint8_t *sc, uint8_t *out)
{
    size_t m = rb / es, ne = n * m, o = 0;
    const uint8_t *pl[4];
    for (size_t k = 0; k < es; k++) { /* k = 0: most significant plane */
        int64_t r = huf_get_plane(src + o, size - o, n, m, sc + k * ne, &pl[k]);
        if (r < 0) return r;
        o += (size_t)r;
    }
    size_t i = 0;
    if (es == 1) {
        memcpy(out, pl[0], ne);
    } else if (es == 2) {
        const uint8_t *hi = pl[0], *lo = pl[1];
#ifdef __SSE2__
        for (; i + 16 <= ne; i += 16) {
            __m128i h = _mm_loadu_si128((const __m128i *)(const void *)(hi + i));
            __m128i l = _mm_loadu_si128((const __m128i *)(const void *)(lo + i));
            _mm_storeu_si128((__m128i *)(void *)(out + 2 * i), _mm_unpacklo_epi8(l, h));
            _mm_storeu_si128((__m128i *)(void *)(out + 2 * i + 16), _mm_unpackhi_epi8(l, h));
        }
#endif
        for (; i < ne; i++) {
            out[2 * i] = lo[i];
            out[2 * i + 1] = hi[i];
        }
    } else {
        const uint8_t *b3 = pl[0], *b2 = pl[1], *b1 = pl[2], *b0 = pl[3];
#ifdef __SSE2__
        for (; i + 16 <= ne; i += 16) {
            __m128i x0 = _mm_loadu_si128((const __m128i *)(const void *)(b0 + i));
            __m128i x1 = _mm_loadu_si128((const __m128i *)(const void *)(b1 + i));
            __m128i x2 = _mm_loadu_si128((const __m128i *)(const void *)(b2 + i));
            __m128i x3 = _mm_loadu_si128((const __m128i *)(const void *)(b3 + i));
            __m128i l01 = _mm_unpacklo_epi8(x0, x1), h01 = _mm_unpackhi_epi8(x0, x1);
            __m128i l23 = _mm_unpacklo_epi8(x2, x3), h23 = _mm_unpackhi_epi8(x2, x3);
            __m128i *op = (__m128i *)(void *)(out + 4 * i);
            _mm_storeu_si128(op, _mm_unpacklo_epi16(l01, l23));
            _mm_storeu_si128(op + 1, _mm_unpackhi_epi16(l01, l23));
            _mm_storeu_si128(op + 2, _mm_unpacklo_epi16(h01, h23));
            _mm_storeu_si128(op + 3, _mm_unpackhi_epi16(h01, h23));
        }
#endif
        for (; i < ne; i++) {
            out[4 * i] = b0[i];
            out[4 * i + 1] = b1[i];
            out[4 * i + 2] = b2[i];
            out[4 * i + 3] = b3[i];
        }
    }
    return (int64_t)o;
}

/* ---- dedup-huf: exact row de-duplication, then plane-huf ----------------- */

enum { DEDUP_NONE = 0, DEDUP_REFS = 1 };

/* Bytes of one ref for u unique rows. */
static size_t dedup_ref_width(size_t u) { return u <= 256 ? 1 : u <= 65536 ? 2 : 3; }

/* Find repeated rows among the n rows of rb bytes at in. tab: room for
 * dedup_slots(n) + 2n u32. On return ref[i] (= tab + slots + n) is, for
 * every row, the ordinal among the unique rows of the first row equal to
 * it, bit 31 set if row i repeats an earlier row. @return unique rows. */
static size_t dedup_find(const uint8_t *in, size_t n, size_t rb, uint32_t *tab)
{
    size_t slots = dedup_slots(n), mask = slots - 1, u = 0;
    uint32_t *hs = tab + slots, *ref = hs + n; /* hs: by row, then ordinal */
    memset(tab, 0, slots * sizeof *tab);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *row = in + i * rb;
        uint64_t h = XXH3_64bits(row, rb);
        uint32_t h32 = (uint32_t)(h >> 32);
        size_t at = (size_t)h & mask;
        ref[i] = (uint32_t)i;
        for (; tab[at]; at = (at + 1) & mask) {
            size_t r = tab[at] - 1;
            if (hs[r] == h32 && memcmp(in + r * rb, row, rb) == 0) {
                ref[i] = (uint32_t)r | 0x80000000u;
                break;
            }
        }
        hs[i] = h32;
        if (ref[i] == (uint32_t)i) tab[at] = (uint32_t)(i + 1);
    }
    for (size_t i = 0; i < n; i++) { /* first-row index -> unique ordinal */
        if (ref[i] & 0x80000000u)
            ref[i] = hs[ref[i] & 0x7fffffffu] | 0x80000000u;
        else
            ref[i] = hs[i] = (uint32_t)u++;
    }
    return u;
}

/* One dedup-huf section (see tile.h) of n rows of rb bytes at in.
 * sc: n*rb bytes (plane scratch, then the unique rows' planes); rows:
 * n*rb bytes for the unique rows; tab: dedup_table_bytes(n) - 8 bytes,
 * 4-aligned. @return bytes written, or 0 if dst_cap is too small. */
static size_t dedup_encode_section(const uint8_t *in, size_t n, size_t rb,
                                   size_t es, uint8_t *sc, uint8_t *rows,
                                   uint32_t *tab, uint8_t *dst, size_t dst_cap)
{
    if (dst_cap < 1) return 0;
    size_t u = dedup_find(in, n, rb, tab), d = n - u;
    size_t nb = (n + 7) / 8, w = dedup_ref_width(u);
    if (d * rb <= nb + d * w) { /* nothing (worth) sharing */
        dst[0] = DEDUP_NONE;
        size_t e = huf_encode_section(in, n, rb, es, sc, dst + 1, dst_cap - 1);
        return e ? 1 + e : 0;
    }
    size_t o = 1 + nb + d * w;
    if (dst_cap < o) return 0;
    const uint32_t *ref = tab + dedup_slots(n) + n;
    dst[0] = DEDUP_REFS;
    memset(dst + 1, 0, nb);
    uint8_t *rp = dst + 1 + nb;
    for (size_t i = 0; i < n; i++) {
        uint32_t r = ref[i] & 0x7fffffffu;
        if (ref[i] & 0x80000000u) {
            dst[1 + i / 8] |= (uint8_t)(1u << (i % 8));
            for (size_t b = 0; b < w; b++) *rp++ = (uint8_t)(r >> (8 * b));
        } else {
            memcpy(rows + (size_t)r * rb, in + i * rb, rb);
        }
    }
    size_t e = huf_encode_section(rows, u, rb, es, sc, dst + o, dst_cap - o);
    return e ? o + e : 0;
}

/* Inverse of dedup_encode_section into out (n*rb bytes). sc: n*rb bytes
 * plane scratch; rows: n*rb bytes for the unique rows, apart from out and
 * sc. @return payload bytes used or < 0. */
static int64_t dedup_decode_section(const uint8_t *src, size_t size, size_t n,
                                    size_t rb, size_t es, uint8_t *sc,
                                    uint8_t *rows, uint8_t *out)
{
    if (size < 1) return KVT_EFORMAT;
    if (src[0] == DEDUP_NONE) {
        int64_t r = huf_decode_section(src + 1, size - 1, n, rb, es, sc, out);
        return r < 0 ? r : 1 + r;
    }
    if (src[0] != DEDUP_REFS) return KVT_EFORMAT;
    size_t nb = (n + 7) / 8, d = 0;
    if (size - 1 < nb) return KVT_EFORMAT;
    const uint8_t *bits = src + 1;
    for (size_t i = 0; i < nb; i++) d += (size_t)__builtin_popcount(bits[i]);
    if (n % 8 && bits[nb - 1] >> (n % 8)) return KVT_EFORMAT;
    if (d >= n) return KVT_EFORMAT;
    size_t u = n - d, w = dedup_ref_width(u), o = 1 + nb;
    if ((size - o) / w < d) return KVT_EFORMAT;
    const uint8_t *rp = src + o;
    o += d * w;
    int64_t e = huf_decode_section(src + o, size - o, u, rb, es, sc, rows);
    if (e < 0) return e;
    size_t k = 0; /* unique rows so far */
    for (size_t i = 0; i < n; i++) {
        const uint8_t *from;
        if (bits[i / 8] >> (i % 8) & 1) {
            size_t r = 0;
            for (size_t b = 0; b < w; b++) r |= (size_t)rp[b] << (8 * b);
            rp += w;
            if (r >= k) return KVT_EFORMAT;
            from = rows + r * rb;
        } else {
            from = rows + k++ * rb;
        }
        memcpy(out + i * rb, from, rb);
    }
    return (int64_t)o + e;
}

/* ---- encode / decode ------------------------------------------------------ */

static uint64_t hdr_hash(const struct tile_hdr *h)
{
    return XXH3_64bits(h, offsetof(struct tile_hdr, hdr_xxh));
}

int64_t tile_encode(const struct tile_hdr *hdr, const void *k_raw,
                    const void *v_raw, void *dst, size_t dst_cap,
                    void *scratch, size_t scratch_cap)
{
    struct tile_hdr h = *hdr;
    if (tile_check_dims(h.type, (int)h.kv_dim) != 0 || h.kv_dim > INT32_MAX)
        return KVT_ETYPE;
    if (h.codec >= TILE_NCODECS) return KVT_ETYPE;
    if (h.n == 0 || h.n > TILE_MAX_TOKENS) return KVT_ERANGE;
    int n = (int)h.n;
    size_t rb = tile_row_bytes(h.type, (int)h.kv_dim);
    size_t half = (size_t)n * rb, raw = 2 * half;
    if (raw > LZ4_MAX_INPUT_SIZE) return KVT_ERANGE;
    if (dst_cap < tile_encode_bound(h.type, (int)h.kv_dim, n)) return KVT_ERANGE;
    if (scratch_cap < raw) return KVT_ERANGE;
    if (h.codec == TILE_DEDUP_HUF &&
        scratch_cap < tile_scratch_bound(h.type, (int)h.kv_dim, n))
        return KVT_ERANGE;

    uint8_t *payload = (uint8_t *)dst + sizeof h;
    uint8_t *sc = scratch;
    size_t es = tile_elem_bytes(h.type);
    const uint8_t *src = sc;
    switch (h.codec) {
    case TILE_SHUF_LZ4:
        /* shuffle K and V together: element byte planes over the tile */
        memcpy(payload, k_raw, half); /* payload as temporary raw */
        memcpy(payload + half, v_raw, half);
        shuf_fwd(payload, raw, es, sc);
        break;
    case TILE_XPOSE_LZ4:
        xpose_fwd(k_raw, n, rb / es, es, sc);
        xpose_fwd(v_raw, n, rb / es, es, sc + half);
        break;
    case TILE_PLANE_HUF:
    case TILE_DEDUP_HUF:
        break; /* the section coders read k_raw and v_raw */
    default:
        memcpy(sc, k_raw, half);
        memcpy(sc + half, v_raw, half);
        break;
    }
    {
        XXH3_state_t st; /* raw hash over K then V without copying */
        XXH3_64bits_reset(&st);
        XXH3_64bits_update(&st, k_raw, half);
        XXH3_64bits_update(&st, v_raw, half);
        h.raw_xxh = XXH3_64bits_digest(&st);
    }
    int enc = 0;
    int cap = (int)(dst_cap - sizeof h > (size_t)INT32_MAX ? INT32_MAX
                                                            : dst_cap - sizeof h);
    if (h.codec == TILE_PLANE_HUF) {
        /* K then V, each as its own planes; sc is plane scratch */
        size_t ek = huf_encode_section(k_raw, (size_t)n, rb, es, sc, payload,
                                       (size_t)cap);
        size_t ev = ek ? huf_encode_section(v_raw, (size_t)n, rb, es, sc,
                                            payload + ek, (size_t)cap - ek)
                       : 0;
        enc = ev ? (int)(ek + ev) : 0;
    } else if (h.codec == TILE_DEDUP_HUF) {
        /* sc: plane scratch | unique rows | hash tables (aligned) */
        uintptr_t ta = ((uintptr_t)(sc + raw) + 7) & ~(uintptr_t)7;
        uint32_t *tab = (uint32_t *)ta;
        size_t ek = dedup_encode_section(k_raw, (size_t)n, rb, es, sc, sc + half,
                                         tab, payload, (size_t)cap);
        size_t ev = ek ? dedup_encode_section(v_raw, (size_t)n, rb, es, sc,
                                              sc + half, tab, payload + ek,
                                              (size_t)cap - ek)
                       : 0;
        enc = ev ? (int)(ek + ev) : 0;
    } else if (h.codec == TILE_LZ4HC)
        enc = LZ4_compress_HC((const char *)src, (char *)payload, (int)raw,
                              cap, LZ4HC_CLEVEL_DEFAULT);
    else if (h.codec != TILE_NONE)
        enc = LZ4_compress_default((const char *)src, (char *)payload,
                                   (int)raw, cap);
    if (h.codec == TILE_NONE || enc <= 0 || (size_t)enc >= raw) {
        h.codec = TILE_NONE;
        memcpy(payload, k_raw, half);
        memcpy(payload + half, v_raw, half);
        enc = (int)raw;
    }
    h.magic = TILE_MAGIC;
    h.version = TILE_VERSION;
    h.raw_size = (uint32_t)raw;
    h.enc_size = (uint32_t)enc;
    h.enc_xxh = XXH3_64bits(payload, (size_t)enc);
    h.hdr_xxh = hdr_hash(&h);
    memcpy(dst, &h, sizeof h);
    return (int64_t)(sizeof h + (size_t)enc);
}

int tile_hdr_check(const struct tile_hdr *h)
{
    if (h->magic != TILE_MAGIC) return KVT_EFORMAT;
    if (hdr_hash(h) != h->hdr_xxh) return KVT_ECHECKSUM;
    if (h->version != TILE_VERSION) return KVT_EVERSION;
    if (h->flags & TILE_F_MARK) {
        if (h->n != 0 || h->raw_size != 0 || h->enc_size != 0)
            return KVT_EFORMAT;
        return 0;
    }
    if (h->flags & TILE_F_SUM) {
        if (h->type != KVS_F32 || h->codec != TILE_NONE || h->kv_dim == 0 ||
            h->kv_dim > TILE_MAX_KV_DIM || h->kv_dim % 2 != 0 || h->n == 0 ||
            h->n > TILE_MAX_TOKENS || (h->flags & TILE_F_TAIL) ||
            h->raw_size != tile_sum_bytes((int)h->kv_dim) ||
            h->enc_size != h->raw_size || h->raw_xxh != h->enc_xxh)
            return KVT_EFORMAT;
        return 0;
    }
    if (h->type >= KVS_NTYPES || h->codec >= TILE_NCODECS) return KVT_EFORMAT;
    if (h->kv_dim == 0 || h->kv_dim > TILE_MAX_KV_DIM) return KVT_EFORMAT;
    if (tile_check_dims(h->type, (int)h->kv_dim) != 0) return KVT_EFORMAT;
    if (h->n == 0 || h->n > TILE_MAX_TOKENS) return KVT_EFORMAT;
    uint64_t raw = 2 * (uint64_t)h->n * tile_row_bytes(h->type, (int)h->kv_dim);
    if (raw != h->raw_size || raw > LZ4_MAX_INPUT_SIZE) return KVT_EFORMAT;
    if (h->enc_size == 0 || h->enc_size > raw + raw / 255 + 16)
        return KVT_EFORMAT;
    if (h->codec == TILE_NONE && h->enc_size != h->raw_size)
        return KVT_EFORMAT;
    return 0;
}

void tile_hdr_seal(struct tile_hdr *h)
{
    h->magic = TILE_MAGIC;
    h->version = TILE_VERSION;
    h->hdr_xxh = hdr_hash(h);
}

uint64_t tile_hash(const void *p, size_t n) { return XXH3_64bits(p, n); }

int tile_payload_check(const struct tile_hdr *h, const void *payload)
{
    return XXH3_64bits(payload, h->enc_size) == h->enc_xxh ? 0 : KVT_ECHECKSUM;
}

int64_t tile_decode_raw(const void *src, size_t src_size, void *raw_out,
                        size_t raw_cap, void *scratch, size_t scratch_cap,
                        struct tile_hdr *hdr_out)
{
    struct tile_hdr h;
    if (src_size < sizeof h) return KVT_EFORMAT;
    memcpy(&h, src, sizeof h);
    int rc = tile_hdr_check(&h);
    if (rc < 0) return rc;
    if (h.flags & (TILE_F_MARK | TILE_F_SUM)) return KVT_EFORMAT;
    if (src_size - sizeof h < h.enc_size) return KVT_EFORMAT;
    if (raw_cap < h.raw_size) return KVT_ERANGE;
    const uint8_t *payload = (const uint8_t *)src + sizeof h;
    if (tile_payload_check(&h, payload) != 0) return KVT_ECHECKSUM;

    size_t raw = h.raw_size, half = raw / 2, es = tile_elem_bytes(h.type);
    size_t rb = tile_row_bytes(h.type, (int)h.kv_dim);
    int filtered = h.codec == TILE_SHUF_LZ4 || h.codec == TILE_XPOSE_LZ4 ||
                   h.codec == TILE_PLANE_HUF || h.codec == TILE_DEDUP_HUF;
    if (filtered && scratch_cap < raw) return KVT_ERANGE;
    uint8_t *dec = filtered ? scratch : raw_out;
    if (h.codec == TILE_PLANE_HUF) {
        int64_t uk = huf_decode_section(payload, h.enc_size, h.n, rb, es,
                                        scratch, raw_out);
        if (uk < 0) return uk;
        int64_t uv = huf_decode_section(payload + uk, h.enc_size - (size_t)uk,
                                        h.n, rb, es, scratch,
                                        (uint8_t *)raw_out + half);
        if (uv < 0) return uv;
        if ((size_t)(uk + uv) != h.enc_size) return KVT_EFORMAT;
    } else if (h.codec == TILE_DEDUP_HUF) {
        /* unique rows: K's in V's half of raw_out, V's in scratch's 2nd half */
        uint8_t *ro = raw_out, *sb = scratch;
        int64_t uk = dedup_decode_section(payload, h.enc_size, h.n, rb, es, sb,
                                          ro + half, ro);
        if (uk < 0) return uk;
        int64_t uv = dedup_decode_section(payload + uk, h.enc_size - (size_t)uk,
                                          h.n, rb, es, sb, sb + half, ro + half);
        if (uv < 0) return uv;
        if ((size_t)(uk + uv) != h.enc_size) return KVT_EFORMAT;
    } else if (h.codec == TILE_NONE) {
        memcpy(raw_out, payload, raw);
    } else {
        int got = LZ4_decompress_safe((const char *)payload, (char *)dec,
                                      (int)h.enc_size, (int)raw);
        if (got != (int)raw) return KVT_EFORMAT;
    }
    if (h.codec == TILE_SHUF_LZ4) {
        shuf_inv(dec, raw, es, raw_out);
    } else if (h.codec == TILE_XPOSE_LZ4) {
        xpose_inv(dec, (int)h.n, rb / es, es, raw_out);
        xpose_inv(dec + half, (int)h.n, rb / es, es, (uint8_t *)raw_out + half);
    }
    if (XXH3_64bits(raw_out, raw) != h.raw_xxh) return KVT_ECHECKSUM;
    if (hdr_out) *hdr_out = h;
    return (int64_t)raw;
}

int tile_decode(const void *src, size_t src_size, float *k, size_t k_cap,
                float *v, size_t v_cap, void *raw, size_t raw_cap,
                void *scratch, size_t scratch_cap, struct tile_hdr *hdr_out)
{
    struct tile_hdr h;
    int64_t rc = tile_decode_raw(src, src_size, raw, raw_cap, scratch,
                                 scratch_cap, &h);
    if (rc < 0) return (int)rc;
    size_t count = (size_t)h.n * h.kv_dim;
    if (k_cap < count || v_cap < count) return KVT_ERANGE;
    tile_unpack(h.type, (int)h.kv_dim, raw, (int)h.n, k);
    tile_unpack(h.type, (int)h.kv_dim, (const uint8_t *)raw + h.raw_size / 2,
                (int)h.n, v);
    if (hdr_out) *hdr_out = h;
    return (int)h.n;
}

/* ---- key summaries ---------------------------------------------------------- */

int tile_pairing_check(const struct tile_pairing *pr, int kv_dim)
{
    if (pr->head_dim <= 0 || pr->head_dim % 2 != 0 || kv_dim % pr->head_dim != 0)
        return KVT_ERANGE;
    if (pr->neox_rot < 0 || pr->neox_rot % 2 != 0 || pr->neox_rot > pr->head_dim)
        return KVT_ERANGE;
    return 0;
}

void tile_pair_channels(const struct tile_pairing *pr, int p, int *c0, int *c1)
{
    int r = pr->neox_rot;
    if (r == 0) {
        *c0 = 2 * p;
        *c1 = 2 * p + 1;
    } else if (p < r / 2) {
        *c0 = p;
        *c1 = p + r / 2;
    } else {
        *c0 = r + 2 * (p - r / 2);
        *c1 = *c0 + 1;
    }
}

size_t tile_sum_bytes(int kv_dim) { return 8 + 4 * (size_t)(kv_dim / 2); }

/* Smallest float >= x (x >= 0, finite or +inf). */
static float round_up_f(double x)
{
    float f = (float)x;
    if ((double)f < x) f = nextafterf(f, INFINITY);
    return f;
}

void tile_summarize(int type, int kv_dim, const struct tile_pairing *pr,
                    const void *k_raw, int n, float *sum, float *row)
{
    KVT_ASSERT(tile_pairing_check(pr, kv_dim) == 0);
    const int hd = pr->head_dim, half = hd / 2, nh = kv_dim / hd;
    size_t rb = tile_row_bytes(type, kv_dim);
    for (int i = 0; i < kv_dim / 2; i++) sum[i] = 0.0f;
    for (int t = 0; t < n; t++) {
        tile_unpack(type, kv_dim, (const uint8_t *)k_raw + (size_t)t * rb, 1, row);
        for (int h = 0; h < nh; h++) {
            const float *x = row + (size_t)h * hd;
            float *s = sum + (size_t)h * half;
            for (int p = 0; p < half; p++) {
                int c0, c1;
                tile_pair_channels(pr, p, &c0, &c1);
                double a = x[c0], b = x[c1];
                float nrm = round_up_f(sqrt(a * a + b * b));
                if (!(nrm <= s[p])) s[p] = isnan(nrm) ? INFINITY : nrm;
            }
        }
    }
}

int64_t tile_sum_encode(int layer, int64_t pos0, int n, int kv_dim,
                        const struct tile_pairing *pr, const float *sum,
                        void *dst, size_t dst_cap)
{
    KVT_ASSERT(tile_pairing_check(pr, kv_dim) == 0);
    size_t pay = tile_sum_bytes(kv_dim);
    if (dst_cap < sizeof(struct tile_hdr) + pay) return KVT_ERANGE;
    uint8_t *p = (uint8_t *)dst + sizeof(struct tile_hdr);
    put_le32(p, (uint32_t)pr->head_dim);
    put_le32(p + 4, (uint32_t)pr->neox_rot);
    memcpy(p + 8, sum, pay - 8); /* host floats are LE (x86-64, aarch64) */
    struct tile_hdr h;
    memset(&h, 0, sizeof h);
    h.type = KVS_F32;
    h.codec = TILE_NONE;
    h.layer = (uint32_t)layer;
    h.n = (uint32_t)n;
    h.pos0 = (uint64_t)pos0;
    h.kv_dim = (uint32_t)kv_dim;
    h.raw_size = h.enc_size = (uint32_t)pay;
    h.flags = TILE_F_SUM;
    h.raw_xxh = h.enc_xxh = XXH3_64bits(p, pay);
    tile_hdr_seal(&h);
    memcpy(dst, &h, sizeof h);
    return (int64_t)(sizeof h + pay);
}

int tile_sum_decode(const struct tile_hdr *h, const void *payload,
                    const struct tile_pairing *pr, float *sum)
{
    if (tile_payload_check(h, payload) != 0) return KVT_ECHECKSUM;
    const uint8_t *p = payload;
    if (get_le32(p) != (uint32_t)pr->head_dim || get_le32(p + 4) != (uint32_t)pr->neox_rot)
        return 0;
    memcpy(sum, p + 8, h->enc_size - 8);
    return 1;
}
