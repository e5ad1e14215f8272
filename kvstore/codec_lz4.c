/* codec_lz4.c - the LZ4 family: lz4, lz4hc, and the two filters in front
 * of LZ4, shuf-lz4 (byte planes) and xpose-lz4 (channel planes). See
 * codec.h; payload formats in tile.h. */
#include "kvstore/codec.h"

#include <lz4.h>
#include <lz4hc.h>
#include <string.h>

#include "base/kvt.h"

/* ---- filters ------------------------------------------------------------ */

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

/* ---- LZ4 on the (filtered) raw bytes ------------------------------------ */

static size_t lz4_bound(size_t raw) { return raw + raw / 255 + 16; /* LZ4_COMPRESSBOUND */ }
static size_t lz4_scratch(const struct codec_geom *g) { return codec_raw_bytes(g); }

/* LZ4 block (hc: LZ4HC at the default level) of src[0, raw) into dst.
 * @return payload bytes or 0 (did not fit). */
static size_t lz4_block(const uint8_t *src, size_t raw, uint8_t *dst, size_t dst_cap, int hc)
{
    int cap = dst_cap > (size_t)INT32_MAX ? INT32_MAX : (int)dst_cap;
    int enc = hc ? LZ4_compress_HC((const char *)src, (char *)dst, (int)raw, cap,
                                   LZ4HC_CLEVEL_DEFAULT)
                 : LZ4_compress_default((const char *)src, (char *)dst, (int)raw, cap);
    return enc > 0 ? (size_t)enc : 0;
}

/* Inverse of lz4_block: exactly raw bytes into dst, else KVT_EFORMAT. */
static int lz4_unblock(const uint8_t *src, size_t size, uint8_t *dst, size_t raw)
{
    int got = LZ4_decompress_safe((const char *)src, (char *)dst, (int)size, (int)raw);
    return got == (int)raw ? 0 : KVT_EFORMAT;
}

/* K then V, contiguous, in scratch (the LZ4 block is of both together). */
static size_t lz4_encode_either(const struct codec_geom *g, const uint8_t *k, const uint8_t *v,
                                uint8_t *dst, size_t dst_cap, uint8_t *sc, int hc)
{
    size_t half = g->n * g->rb;
    memcpy(sc, k, half);
    memcpy(sc + half, v, half);
    return lz4_block(sc, 2 * half, dst, dst_cap, hc);
}

static size_t lz4_encode(const struct codec_geom *g, const uint8_t *k, const uint8_t *v,
                         uint8_t *dst, size_t dst_cap, uint8_t *sc)
{
    return lz4_encode_either(g, k, v, dst, dst_cap, sc, 0);
}

static size_t lz4hc_encode(const struct codec_geom *g, const uint8_t *k, const uint8_t *v,
                           uint8_t *dst, size_t dst_cap, uint8_t *sc)
{
    return lz4_encode_either(g, k, v, dst, dst_cap, sc, 1);
}

static int lz4_decode(const struct codec_geom *g, const uint8_t *src, size_t size,
                      uint8_t *raw, uint8_t *sc)
{
    (void)sc;
    return lz4_unblock(src, size, raw, codec_raw_bytes(g));
}

/* Byte planes over the whole tile (K and V together). */
static size_t shuf_encode(const struct codec_geom *g, const uint8_t *k, const uint8_t *v,
                          uint8_t *dst, size_t dst_cap, uint8_t *sc)
{
    size_t half = g->n * g->rb, raw = 2 * half;
    memcpy(dst, k, half); /* dst (>= raw bytes) as the unfiltered tile */
    memcpy(dst + half, v, half);
    shuf_fwd(dst, raw, g->es, sc);
    return lz4_block(sc, raw, dst, dst_cap, 0);
}

static int shuf_decode(const struct codec_geom *g, const uint8_t *src, size_t size,
                       uint8_t *raw, uint8_t *sc)
{
    size_t rs = codec_raw_bytes(g);
    int rc = lz4_unblock(src, size, sc, rs);
    if (rc == 0) shuf_inv(sc, rs, g->es, raw);
    return rc;
}

/* Channel planes of K, then of V. */
static size_t xpose_encode(const struct codec_geom *g, const uint8_t *k, const uint8_t *v,
                           uint8_t *dst, size_t dst_cap, uint8_t *sc)
{
    size_t half = g->n * g->rb, m = g->rb / g->es;
    xpose_fwd(k, (int)g->n, m, g->es, sc);
    xpose_fwd(v, (int)g->n, m, g->es, sc + half);
    return lz4_block(sc, 2 * half, dst, dst_cap, 0);
}

static int xpose_decode(const struct codec_geom *g, const uint8_t *src, size_t size,
                        uint8_t *raw, uint8_t *sc)
{
    size_t half = g->n * g->rb, m = g->rb / g->es;
    int rc = lz4_unblock(src, size, sc, 2 * half);
    if (rc < 0) return rc;
    xpose_inv(sc, (int)g->n, m, g->es, raw);
    xpose_inv(sc + half, (int)g->n, m, g->es, raw + half);
    return 0;
}

const struct codec_ops codec_lz4 = {
    .id = TILE_LZ4, .name = "lz4", .enc_bound = lz4_bound, .enc_scratch = lz4_scratch,
    .dec_scratch = 0, .encode = lz4_encode, .decode = lz4_decode,
};
const struct codec_ops codec_lz4hc = {
    .id = TILE_LZ4HC, .name = "lz4hc", .enc_bound = lz4_bound, .enc_scratch = lz4_scratch,
    .dec_scratch = 0, .encode = lz4hc_encode, .decode = lz4_decode,
};
const struct codec_ops codec_shuf_lz4 = {
    .id = TILE_SHUF_LZ4, .name = "shuf-lz4", .enc_bound = lz4_bound, .enc_scratch = lz4_scratch,
    .dec_scratch = 1, .encode = shuf_encode, .decode = shuf_decode,
};
const struct codec_ops codec_xpose_lz4 = {
    .id = TILE_XPOSE_LZ4, .name = "xpose-lz4", .enc_bound = lz4_bound,
    .enc_scratch = lz4_scratch, .dec_scratch = 1, .encode = xpose_encode,
    .decode = xpose_decode,
};
