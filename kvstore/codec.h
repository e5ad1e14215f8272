/* codec.h - the tile codecs behind one interface (private to kvstore/).
 *
 * A codec turns a tile's two sections (K rows, V rows: n rows of rb bytes
 * each, elements of es bytes) into a payload and back; tile.c owns the
 * header, checksums and the stored-raw fallback, and finds a codec by its
 * id in codec_table. The payload formats are specified in tile.h.
 *
 * Families, one file each:
 *   codec.c        the table, "none" (payload = raw bytes)
 *   codec_lz4.c    lz4, lz4hc, shuf-lz4 (byte planes), xpose-lz4
 *                  (channel planes, XOR with the previous token)
 *   codec_huff.c   plane-huf (byte planes, order-0 Huffman per plane)
 *   codec_dedup.c  dedup-huf (exact row de-duplication, then plane-huf)
 *
 * No codec allocates; all work in the caller's dst and scratch.
 */
#ifndef KVT_CODEC_H
#define KVT_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "kvstore/tile.h"

/* Shape of a tile as the codecs see it. */
struct codec_geom {
    size_t n;  /* rows (tokens) per section, >= 1 */
    size_t rb; /* bytes per row: tile_row_bytes(type, kv_dim) */
    size_t es; /* element bytes the filters work on: 4 f32, 2 f16/bf16,
                  1 q8_0 (a byte of its 34-byte blocks) */
};

/* raw bytes of the tile: K and V sections of n * rb bytes each */
static inline size_t codec_raw_bytes(const struct codec_geom *g) { return 2 * g->n * g->rb; }

struct codec_ops {
    int id;           /* enum tile_codec, its index in codec_table */
    const char *name; /* CLI name */
    /* Largest payload of this codec a tile of raw bytes may hold (the
     * maximum over the table sizes tile_encode_bound and bounds
     * tile_hdr_check); encode may use all of dst_cap. */
    size_t (*enc_bound)(size_t raw);
    /* Scratch bytes encode needs (decode needs dec_scratch ? raw : 0). */
    size_t (*enc_scratch)(const struct codec_geom *g);
    int dec_scratch;
    /* Encode sections k and v into dst (dst_cap >= raw bytes).
     * @return payload bytes, or 0: nothing gained or dst_cap too small
     * (the tile is then stored raw, TILE_NONE). */
    size_t (*encode)(const struct codec_geom *g, const uint8_t *k, const uint8_t *v,
                     uint8_t *dst, size_t dst_cap, uint8_t *scratch);
    /* Decode the payload src[0, size) into raw (K rows then V rows).
     * @return 0, or KVT_EFORMAT if the payload is malformed (a payload
     * that parses but is wrong is caught by the raw checksum). */
    int (*decode)(const struct codec_geom *g, const uint8_t *src, size_t size,
                  uint8_t *raw, uint8_t *scratch);
};

extern const struct codec_ops codec_none, codec_lz4, codec_lz4hc, codec_shuf_lz4,
    codec_xpose_lz4, codec_plane_huf, codec_dedup_huf;

/* Indexed by enum tile_codec (TILE_NCODECS entries, each ->id == index). */
extern const struct codec_ops *const codec_table[TILE_NCODECS];

/* plane-huf's section coder, which dedup-huf codes its unique rows with:
 * n rows of rb bytes as es plane records (tile.h). sc: n*rb bytes.
 * encode @return bytes written, or 0 if dst_cap is too small; decode
 * writes n*rb bytes to out, @return payload bytes used or < 0. */
size_t codec_huf_encode_section(const uint8_t *in, size_t n, size_t rb, size_t es,
                                uint8_t *sc, uint8_t *dst, size_t dst_cap);
int64_t codec_huf_decode_section(const uint8_t *src, size_t size, size_t n, size_t rb,
                                 size_t es, uint8_t *sc, uint8_t *out);

/* Little-endian u32 at p. */
static inline void codec_put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}

static inline uint32_t codec_get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

#endif
