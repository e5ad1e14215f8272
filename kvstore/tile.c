/* tile.c - tile element packing, codecs, header checks. See tile.h. */
#include "kvstore/tile.h"

#include <lz4.h>
#include <lz4hc.h>
#include <math.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

#include "io/kvt.h"

static const char *const tile_codec_names[TILE_NCODECS] = {
    "none", "lz4", "shuf-lz4", "lz4hc", "xpose-lz4",
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

size_t tile_scratch_bound(int type, int kv_dim, int n)
{
    return tile_raw_bytes(type, kv_dim, n);
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
    case KVS_F16:
        for (size_t i = 0; i < count; i++) {
            uint16_t h;
            memcpy(&h, s8 + 2 * i, 2);
            dst[i] = tile_f16_to_f32(h);
        }
        break;
    case KVS_BF16:
        for (size_t i = 0; i < count; i++) {
            uint16_t h;
            memcpy(&h, s8 + 2 * i, 2);
            dst[i] = tile_bf16_to_f32(h);
        }
        break;
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

static void xpose_inv(const uint8_t *in, int n, size_t m, size_t es,
                      uint8_t *out)
{
    size_t nn = (size_t)n, plane = m * nn;
    if (es == 2) {
        const uint8_t *hi = in, *lo = in + plane;
        uint16_t *o = (uint16_t *)(void *)out;
        for (size_t c = 0; c < m; c++) {
            uint16_t prev = 0;
            const uint8_t *h = hi + c * nn, *l = lo + c * nn;
            for (size_t t = 0; t < nn; t++) {
                prev ^= (uint16_t)(h[t] << 8 | l[t]);
                o[t * m + c] = prev;
            }
        }
        return;
    }
    if (es == 4) {
        const uint8_t *p3 = in, *p2 = in + plane, *p1 = in + 2 * plane,
                      *p0 = in + 3 * plane;
        uint32_t *o = (uint32_t *)(void *)out;
        for (size_t c = 0; c < m; c++) {
            uint32_t prev = 0;
            size_t k = c * nn;
            for (size_t t = 0; t < nn; t++) {
                prev ^= (uint32_t)p3[k + t] << 24 | (uint32_t)p2[k + t] << 16 |
                        (uint32_t)p1[k + t] << 8 | p0[k + t];
                o[t * m + c] = prev;
            }
        }
        return;
    }
    for (size_t c = 0; c < m; c++) { /* es == 1 */
        uint8_t prev = 0;
        for (size_t t = 0; t < nn; t++) {
            prev ^= in[c * nn + t];
            out[t * m + c] = prev;
        }
    }
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
    if (h.codec == TILE_LZ4HC)
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
    if (h.flags & TILE_F_MARK) return KVT_EFORMAT;
    if (src_size - sizeof h < h.enc_size) return KVT_EFORMAT;
    if (raw_cap < h.raw_size) return KVT_ERANGE;
    const uint8_t *payload = (const uint8_t *)src + sizeof h;
    if (tile_payload_check(&h, payload) != 0) return KVT_ECHECKSUM;

    size_t raw = h.raw_size, half = raw / 2, es = tile_elem_bytes(h.type);
    size_t rb = tile_row_bytes(h.type, (int)h.kv_dim);
    int filtered = h.codec == TILE_SHUF_LZ4 || h.codec == TILE_XPOSE_LZ4;
    if (filtered && scratch_cap < raw) return KVT_ERANGE;
    uint8_t *dec = filtered ? scratch : raw_out;
    if (h.codec == TILE_NONE) {
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
