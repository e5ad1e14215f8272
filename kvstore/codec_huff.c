/* codec_huff.c - plane-huf: each section split into byte planes, each
 * plane stored raw or order-0 Huffman coded (4 interleaved streams,
 * canonical codes of at most 11 bits, table-driven decoder), the top
 * plane optionally after a per-column bias. See codec.h; payload format
 * in tile.h. */
#include "kvstore/codec.h"

#include <string.h>
#include <immintrin.h>

#include "base/kvt.h"

#define HUF_MAX_LEN 11
#define HUF_TAB (1u << HUF_MAX_LEN)
#define HUF_LEN_BYTES 128  /* 256 code lengths, 4 bits each */
#define HUF_STREAMS 4
#define HUF_MIN_COL_N 16   /* fewer tokens: no column bias (tables cost more) */

enum { PLANE_RAW = 0, PLANE_HUF = 1, PLANE_HUF_COL = 2 };

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
    for (int j = 0; j < HUF_STREAMS; j++, o += 4) codec_put_le32(o, (uint32_t)sb[j]);
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
        uint32_t b = codec_get_le32(sz + 4 * j);
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
size_t codec_huf_encode_section(const uint8_t *in, size_t n, size_t rb, size_t es,
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
int64_t codec_huf_decode_section(const uint8_t *src, size_t size, size_t n, size_t rb,
                                 size_t es, uint8_t *sc, uint8_t *out)
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

/* ---- the codec: K's section, then V's ------------------------------------ */

static size_t huf_bound(size_t raw) { return raw; /* larger: stored raw */ }
static size_t huf_scratch(const struct codec_geom *g) { return codec_raw_bytes(g); }

static size_t huf_encode(const struct codec_geom *g, const uint8_t *k, const uint8_t *v,
                         uint8_t *dst, size_t dst_cap, uint8_t *sc)
{
    size_t ek = codec_huf_encode_section(k, g->n, g->rb, g->es, sc, dst, dst_cap);
    if (ek == 0) return 0;
    size_t ev = codec_huf_encode_section(v, g->n, g->rb, g->es, sc, dst + ek, dst_cap - ek);
    return ev ? ek + ev : 0;
}

static int huf_decode(const struct codec_geom *g, const uint8_t *src, size_t size,
                      uint8_t *raw, uint8_t *sc)
{
    int64_t uk = codec_huf_decode_section(src, size, g->n, g->rb, g->es, sc, raw);
    if (uk < 0) return (int)uk;
    int64_t uv = codec_huf_decode_section(src + uk, size - (size_t)uk, g->n, g->rb, g->es,
                                          sc, raw + g->n * g->rb);
    if (uv < 0) return (int)uv;
    return (size_t)(uk + uv) == size ? 0 : KVT_EFORMAT;
}

const struct codec_ops codec_plane_huf = {
    .id = TILE_PLANE_HUF, .name = "plane-huf", .enc_bound = huf_bound,
    .enc_scratch = huf_scratch, .dec_scratch = 1, .encode = huf_encode,
    .decode = huf_decode,
};
