/* tile.c - tile element packing, the tile format (header, checksums,
 * stored-raw fallback) over the codec table (codec.h), key summaries.
 * See tile.h. */
#include "kvstore/tile.h"

#include "kvstore/codec.h"

#include <lz4.h>
#include <math.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#define XXH_INLINE_ALL /* compiled here with this build's vector ISA */
#include <xxhash.h>

#include "base/cpu.h"
#include "base/kvt.h"
#include "base/numfmt.h"
#include "kvstore/tile_hash.h"

/* The checksums' XXH3: the avx2 set's build when the default kernel set
 * has AVX2 (tile_hash.h), else this file's baseline build. -1 until first
 * use; a benign race (every thread computes the same value). */
static int hash_avx2 = -1;

static int use_avx2(void)
{
    if (hash_avx2 < 0) hash_avx2 = cpu_set_default() >= CPU_SET_AVX2;
    return hash_avx2;
}

static uint64_t xxh3(const void *p, size_t n)
{
    return use_avx2() ? tile_xxh3_avx2(p, n) : XXH3_64bits(p, n);
}

static void xxh3_update(XXH3_state_t *st, const void *p, size_t n)
{
    if (use_avx2()) tile_xxh3_update_avx2(st, p, n);
    else (void)XXH3_64bits_update(st, p, n);
}

static const char *const tile_type_names[KVS_NTYPES] = {
    "f32", "f16", "bf16", "q8_0",
};
_Static_assert(sizeof tile_type_names / sizeof tile_type_names[0] ==
                   KVS_NTYPES,
               "type name table length");

const char *tile_codec_name(int codec)
{
    if (codec < 0 || codec >= TILE_NCODECS) return "?";
    return codec_table[codec]->name;
}

int tile_codec_parse(const char *name)
{
    for (int i = 0; i < TILE_NCODECS; i++)
        if (strcmp(name, codec_table[i]->name) == 0) return i;
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

/* ---- element packing ------------------------------------------------------ */

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

static struct codec_geom tile_geom(int type, int kv_dim, size_t n)
{
    struct codec_geom g = { .n = n, .rb = tile_row_bytes(type, kv_dim),
                            .es = tile_elem_bytes(type) };
    return g;
}

/* Largest payload any codec may write for raw bytes (the LZ4 bound). */
static size_t tile_payload_bound(size_t raw)
{
    size_t b = 0;
    for (int c = 0; c < TILE_NCODECS; c++) b = KVT_MAX(b, codec_table[c]->enc_bound(raw));
    return b;
}

size_t tile_encode_bound(int type, int kv_dim, int n)
{
    return sizeof(struct tile_hdr) + tile_payload_bound(tile_raw_bytes(type, kv_dim, n));
}

size_t tile_scratch_bound(int type, int kv_dim, int n)
{
    KVT_ASSERT(n >= 0);
    struct codec_geom g = tile_geom(type, kv_dim, (size_t)n);
    size_t b = 0;
    for (int c = 0; c < TILE_NCODECS; c++) b = KVT_MAX(b, codec_table[c]->enc_scratch(&g));
    return b;
}

void tile_pack(int type, int kv_dim, const float *src, int n, void *dst)
{
    KVT_ASSERT(tile_check_dims(type, kv_dim) == 0);
    size_t count = (size_t)n * (size_t)kv_dim;
    switch (type) {
    case KVS_F32: memcpy(dst, src, count * 4); break;
    case KVS_F16: numfmt_f32_to_f16_row(src, count, dst); break;
    case KVS_BF16: numfmt_f32_to_bf16_row(src, count, dst); break;
    default: numfmt_q8_0_quantize(src, count, dst); break; /* rows of whole blocks */
    }
}

void tile_unpack(int type, int kv_dim, const void *src, int n, float *dst)
{
    KVT_ASSERT(tile_check_dims(type, kv_dim) == 0);
    size_t count = (size_t)n * (size_t)kv_dim;
    switch (type) {
    case KVS_F32: memcpy(dst, src, count * 4); break;
    /* F16C on the avx2 and avx512 kernel sets (cpu.h) */
    case KVS_F16: numfmt_f16_to_f32_row(src, count, dst, cpu_set_default() >= CPU_SET_AVX2); break;
    case KVS_BF16: numfmt_bf16_to_f32_row(src, count, dst); break;
    default: numfmt_q8_0_dequantize(src, count, dst); break;
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
    const struct codec_ops *codec = codec_table[h.codec];
    struct codec_geom g = tile_geom(h.type, (int)h.kv_dim, h.n);
    size_t half = g.n * g.rb, raw = 2 * half;
    if (raw > LZ4_MAX_INPUT_SIZE) return KVT_ERANGE;
    if (dst_cap < tile_encode_bound(h.type, (int)h.kv_dim, (int)h.n)) return KVT_ERANGE;
    if (scratch_cap < codec->enc_scratch(&g)) return KVT_ERANGE;

    {
        XXH3_state_t st; /* raw hash over K then V without copying */
        XXH3_64bits_reset(&st);
        xxh3_update(&st, k_raw, half);
        xxh3_update(&st, v_raw, half);
        h.raw_xxh = XXH3_64bits_digest(&st);
    }
    uint8_t *payload = (uint8_t *)dst + sizeof h;
    size_t enc = codec->encode(&g, k_raw, v_raw, payload, dst_cap - sizeof h, scratch);
    if (enc == 0 || enc >= raw) { /* nothing gained: stored raw */
        h.codec = TILE_NONE;
        memcpy(payload, k_raw, half);
        memcpy(payload + half, v_raw, half);
        enc = raw;
    }
    h.magic = TILE_MAGIC;
    h.version = TILE_VERSION;
    h.raw_size = (uint32_t)raw;
    h.enc_size = (uint32_t)enc;
    h.enc_xxh = xxh3(payload, enc);
    h.hdr_xxh = hdr_hash(&h);
    memcpy(dst, &h, sizeof h);
    return (int64_t)(sizeof h + enc);
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
    if (h->enc_size == 0 || h->enc_size > tile_payload_bound(raw))
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

uint64_t tile_hash(const void *p, size_t n) { return xxh3(p, n); }

int tile_payload_check(const struct tile_hdr *h, const void *payload)
{
    return xxh3(payload, h->enc_size) == h->enc_xxh ? 0 : KVT_ECHECKSUM;
}

/* The header of a data tile held in src[0..src_size): checked, not a
 * marker or a summary record, and its payload inside the buffer. */
static int data_hdr(const void *src, size_t src_size, struct tile_hdr *h)
{
    if (src_size < sizeof *h) return KVT_EFORMAT;
    memcpy(h, src, sizeof *h);
    int rc = tile_hdr_check(h);
    if (rc < 0) return rc;
    if (h->flags & (TILE_F_MARK | TILE_F_SUM)) return KVT_EFORMAT;
    if (src_size - sizeof *h < h->enc_size) return KVT_EFORMAT;
    return 0;
}

int64_t tile_decode_raw(const void *src, size_t src_size, void *raw_out,
                        size_t raw_cap, void *scratch, size_t scratch_cap,
                        struct tile_hdr *hdr_out)
{
    struct tile_hdr h;
    int rc = data_hdr(src, src_size, &h);
    if (rc < 0) return rc;
    if (raw_cap < h.raw_size) return KVT_ERANGE;
    const uint8_t *payload = (const uint8_t *)src + sizeof h;
    if (tile_payload_check(&h, payload) != 0) return KVT_ECHECKSUM;

    const struct codec_ops *codec = codec_table[h.codec];
    struct codec_geom g = tile_geom(h.type, (int)h.kv_dim, h.n);
    size_t raw = h.raw_size;
    if (codec->dec_scratch && scratch_cap < raw) return KVT_ERANGE;
    rc = codec->decode(&g, payload, h.enc_size, raw_out, scratch);
    if (rc < 0) return rc;
    if (xxh3(raw_out, raw) != h.raw_xxh) return KVT_ECHECKSUM;
    if (hdr_out) *hdr_out = h;
    return (int64_t)raw;
}

/* Hash RAW (2 * T rows of row_bytes: K rows then V rows) into ST block by
 * block, unpacking the first n_use rows of each half into k and v while
 * the block is in cache. */
static void hash_unpack(XXH3_state_t *st, int type, int kv_dim, const uint8_t *raw,
                        int T, int n_use, float *k, float *v)
{
    size_t rb = tile_row_bytes(type, kv_dim);
    int block = (int)KVT_MAX((size_t)1, ((size_t)32 << 10) / rb); /* rows per 32 KiB */
    for (int half = 0; half < 2; half++) {
        const uint8_t *base = raw + (size_t)half * (size_t)T * rb;
        float *dst = half ? v : k;
        for (int r = 0; r < T; r += block) {
            int m = KVT_MIN(block, T - r);
            xxh3_update(st, base + (size_t)r * rb, (size_t)m * rb);
            int u = KVT_MIN(m, n_use - r);
            if (u > 0)
                tile_unpack(type, kv_dim, base + (size_t)r * rb, u,
                            dst + (size_t)r * (size_t)kv_dim);
        }
    }
}

int tile_decode_unpack(const void *src, size_t src_size, const struct tile_hdr *want,
                       int n_use, float *k, float *v, void *raw, size_t raw_cap,
                       void *scratch, size_t scratch_cap)
{
    struct tile_hdr h;
    int rc = data_hdr(src, src_size, &h);
    if (rc < 0) return rc;
    if (h.layer != want->layer || h.pos0 != want->pos0 || h.n != want->n ||
        h.type != want->type || h.kv_dim != want->kv_dim)
        return KVT_EFORMAT;
    KVT_ASSERT(n_use >= 0 && (uint32_t)n_use <= h.n);
    const uint8_t *payload = (const uint8_t *)src + sizeof h;
    XXH3_state_t st;
    (void)XXH3_64bits_reset(&st);
    if (h.codec == TILE_NONE) { /* the payload is the raw tile */
        if (h.raw_xxh != h.enc_xxh) return KVT_ECHECKSUM;
        hash_unpack(&st, h.type, (int)h.kv_dim, payload, (int)h.n, n_use, k, v);
        return XXH3_64bits_digest(&st) == h.enc_xxh ? 0 : KVT_ECHECKSUM;
    }
    if (raw_cap < h.raw_size) return KVT_ERANGE;
    if (tile_payload_check(&h, payload) != 0) return KVT_ECHECKSUM;
    const struct codec_ops *codec = codec_table[h.codec];
    struct codec_geom g = tile_geom(h.type, (int)h.kv_dim, h.n);
    if (codec->dec_scratch && scratch_cap < h.raw_size) return KVT_ERANGE;
    rc = codec->decode(&g, payload, h.enc_size, raw, scratch);
    if (rc < 0) return rc;
    hash_unpack(&st, h.type, (int)h.kv_dim, raw, (int)h.n, n_use, k, v);
    return XXH3_64bits_digest(&st) == h.raw_xxh ? 0 : KVT_ECHECKSUM;
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
    codec_put_le32(p, (uint32_t)pr->head_dim);
    codec_put_le32(p + 4, (uint32_t)pr->neox_rot);
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
    if (codec_get_le32(p) != (uint32_t)pr->head_dim || codec_get_le32(p + 4) != (uint32_t)pr->neox_rot)
        return 0;
    memcpy(sum, p + 8, h->enc_size - 8);
    return 1;
}
