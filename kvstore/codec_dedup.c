/* codec_dedup.c - dedup-huf: per section, rows equal to an earlier row
 * become references (a bitmap and 1-3-byte ordinals); the unique rows
 * are coded as plane-huf codes a section. See codec.h; payload format
 * in tile.h. */
#include "kvstore/codec.h"

#include <string.h>
#define XXH_INLINE_ALL /* compiled here with this build's vector ISA */
#include <xxhash.h>

#include "base/kvt.h"

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
        size_t e = codec_huf_encode_section(in, n, rb, es, sc, dst + 1, dst_cap - 1);
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
    size_t e = codec_huf_encode_section(rows, u, rb, es, sc, dst + o, dst_cap - o);
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
        int64_t r = codec_huf_decode_section(src + 1, size - 1, n, rb, es, sc, out);
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
    int64_t e = codec_huf_decode_section(src + o, size - o, u, rb, es, sc, rows);
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

/* ---- the codec: K's section, then V's ------------------------------------ */

static size_t dedup_bound(size_t raw) { return raw; /* larger: stored raw */ }

/* plane scratch | unique rows (raw bytes in all) | hash tables */
static size_t dedup_scratch(const struct codec_geom *g)
{
    return codec_raw_bytes(g) + dedup_table_bytes(g->n);
}

static size_t dedup_encode(const struct codec_geom *g, const uint8_t *k, const uint8_t *v,
                           uint8_t *dst, size_t dst_cap, uint8_t *sc)
{
    size_t half = g->n * g->rb;
    uintptr_t ta = ((uintptr_t)(sc + 2 * half) + 7) & ~(uintptr_t)7;
    uint32_t *tab = (uint32_t *)ta;
    size_t ek = dedup_encode_section(k, g->n, g->rb, g->es, sc, sc + half, tab, dst, dst_cap);
    if (ek == 0) return 0;
    size_t ev = dedup_encode_section(v, g->n, g->rb, g->es, sc, sc + half, tab, dst + ek,
                                     dst_cap - ek);
    return ev ? ek + ev : 0;
}

/* K's unique rows go to V's half of raw, V's to scratch's second half. */
static int dedup_decode(const struct codec_geom *g, const uint8_t *src, size_t size,
                        uint8_t *raw, uint8_t *sc)
{
    size_t half = g->n * g->rb;
    int64_t uk = dedup_decode_section(src, size, g->n, g->rb, g->es, sc, raw + half, raw);
    if (uk < 0) return (int)uk;
    int64_t uv = dedup_decode_section(src + uk, size - (size_t)uk, g->n, g->rb, g->es, sc,
                                      sc + half, raw + half);
    if (uv < 0) return (int)uv;
    return (size_t)(uk + uv) == size ? 0 : KVT_EFORMAT;
}

const struct codec_ops codec_dedup_huf = {
    .id = TILE_DEDUP_HUF, .name = "dedup-huf", .enc_bound = dedup_bound,
    .enc_scratch = dedup_scratch, .dec_scratch = 1, .encode = dedup_encode,
    .decode = dedup_decode,
};
