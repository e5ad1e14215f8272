/* codec.c - the codec table and the "none" codec. See codec.h. */
#include "kvstore/codec.h"

#include <string.h>

#include "base/kvt.h"

static size_t none_bound(size_t raw) { return raw; }
static size_t none_scratch(const struct codec_geom *g) { return codec_raw_bytes(g); }

/* Nothing to gain: tile_encode stores the raw bytes itself. */
static size_t none_encode(const struct codec_geom *g, const uint8_t *k, const uint8_t *v,
                          uint8_t *dst, size_t dst_cap, uint8_t *scratch)
{
    (void)g; (void)k; (void)v; (void)dst; (void)dst_cap; (void)scratch;
    return 0;
}

static int none_decode(const struct codec_geom *g, const uint8_t *src, size_t size,
                       uint8_t *raw, uint8_t *scratch)
{
    (void)scratch;
    if (size != codec_raw_bytes(g)) return KVT_EFORMAT;
    memcpy(raw, src, size);
    return 0;
}

const struct codec_ops codec_none = {
    .id = TILE_NONE, .name = "none", .enc_bound = none_bound,
    .enc_scratch = none_scratch, .dec_scratch = 0,
    .encode = none_encode, .decode = none_decode,
};

const struct codec_ops *const codec_table[TILE_NCODECS] = {
    [TILE_NONE] = &codec_none,
    [TILE_LZ4] = &codec_lz4,
    [TILE_SHUF_LZ4] = &codec_shuf_lz4,
    [TILE_LZ4HC] = &codec_lz4hc,
    [TILE_XPOSE_LZ4] = &codec_xpose_lz4,
    [TILE_PLANE_HUF] = &codec_plane_huf,
    [TILE_DEDUP_HUF] = &codec_dedup_huf,
};
_Static_assert(sizeof codec_table / sizeof codec_table[0] == TILE_NCODECS,
               "codec table length");
