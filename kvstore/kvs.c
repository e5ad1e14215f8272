/* kvs.c - the KV store: RAM tiles or a tile cache file. See kvs.h; the
 * cache file format and its replay rule are specified in tile.h.
 *
 * Both backings cut a layer's tokens into tiles of T = tile_tokens tokens;
 * tile i covers [i*T, (i+1)*T). A tile's raw bytes are packed rows of the
 * store's element type (T K rows, then T V rows). Spans are unpacked from
 * those bytes in both backings, so a RAM store and a disk store with a
 * lossless codec give bit-identical spans.
 *
 * RAM: each layer keeps its tiles in one growing array (doubling); the last
 * tile is the partial tail. The only backing whose RAM grows with input.
 *
 * DISK: each layer keeps a RAM tail (one raw tile) and an index of its
 * sealed tiles (offset, record bytes; 16 bytes per tile, doubling). A tile
 * is encoded and written (synchronously, at the file end) when its tail
 * fills. A read keeps up to W records in flight through io.h, W =
 * min(queue_depth, the records ram_budget_bytes leaves room for, kvs.h);
 * kvs_read_next waits for the next one, checks, decodes and unpacks it
 * into the span buffers on the calling thread (no hand-off to another
 * thread: on a busy machine each wake-up cost more than the decode) and
 * submits the record that takes its slot, so the device works while the
 * caller computes. kvs_read_ahead submits a read's first W records before
 * it begins (the next layer's tiles while this layer finishes);
 * kvs_read_end drains the reads still in flight. Appends may go on while
 * a read is in progress (the records in flight were located first).
 *
 * Errors during append leave the tokens appended so far in place
 * (kvs_layer_tokens tells); a tile that could not be written stays in the
 * tail and is written by the next append or kvs_sync.
 */
/* Files: kvs.c (this: open/close, append, truncate, sync, summaries),
 * kvs_file.c (the cache file's records, open and replay), kvs_read.c
 * (reads); kvs_int.h holds what they share. */
#include "kvstore/kvs.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/io.h"
#include "base/kvt.h"
#include "kvstore/tile.h"
#include "kvstore/kvs_int.h"

static int kvs_check_config(const struct kvs_config *c)
{
    if (c->n_layer <= 0 || c->tile_tokens <= 0 ||
        c->tile_tokens > TILE_MAX_TOKENS)
        return KVT_ERANGE;
    int rc = tile_check_dims(c->type, c->kv_dim);
    if (rc < 0) return rc;
    if (c->backing != KVS_RAM && c->backing != KVS_DISK) return KVT_ERANGE;
    if (tile_raw_bytes(c->type, c->kv_dim, c->tile_tokens) > INT32_MAX / 2)
        return KVT_ERANGE;
    struct tile_pairing pr = { c->head_dim ? c->head_dim : c->kv_dim, c->neox_rot };
    if (tile_pairing_check(&pr, c->kv_dim) < 0) return KVT_ERANGE;
    if (c->backing == KVS_DISK) {
        if (!c->path || c->codec < 0 || c->codec >= TILE_NCODECS)
            return KVT_ERANGE;
        if (c->io < 0 || c->io >= IO_NKINDS || c->queue_depth < 0 ||
            c->queue_depth > KVS_MAX_QUEUE_DEPTH)
            return KVT_ERANGE;
        if (c->ram_budget_bytes && c->ram_budget_bytes < kvs_ram_min(c)) return KVT_ERANGE;
    }
    return 0;
}

size_t kvs_ram_min(const struct kvs_config *c)
{
    if (c->backing != KVS_DISK) return 0;
    return kvs_ram_fixed(c) + align_up(tile_encode_bound(c->type, c->kv_dim, c->tile_tokens));
}

size_t kvs_ram_bytes(const kvs *s) { return s->cfg.backing == KVS_DISK ? s->ram_bytes : 0; }

/* Grow L's summary arrays from old_cap to cap tiles. */
static int kvs_sum_grow(kvs *s, struct kvs_layer *ly, int64_t old_cap, int64_t cap)
{
    if ((uint64_t)cap > SIZE_MAX / s->sum_rb) return -ENOMEM;
    uint8_t *p = realloc(ly->sum, (size_t)cap * s->sum_rb);
    if (!p) return -ENOMEM;
    ly->sum = p;
    uint8_t *ok = realloc(ly->sum_ok, (size_t)cap);
    if (!ok) return -ENOMEM;
    ly->sum_ok = ok;
    memset(ok + old_cap, 0, (size_t)(cap - old_cap));
    return 0;
}

/* Room for CAP sealed tiles in L's index and summaries. */
int kvs_idx_grow(kvs *s, struct kvs_layer *ly, int64_t cap)
{
    int rc = kvs_sum_grow(s, ly, ly->idx_cap, cap);
    if (rc < 0) return rc;
    struct kvs_rec *p = realloc(ly->idx, (size_t)cap * sizeof *p);
    if (!p) return -ENOMEM;
    ly->idx = p;
    ly->idx_cap = cap;
    return 0;
}

int kvs_idx_reserve(kvs *s, struct kvs_layer *ly, int64_t n)
{
    if (n <= ly->idx_cap) return 0;
    int64_t cap = ly->idx_cap ? ly->idx_cap * 2 : 64;
    while (cap < n) cap *= 2;
    return kvs_idx_grow(s, ly, cap);
}

/* ---- summaries in RAM: 8-bit codes on a log scale (kvs.h) -------------
 * Code c of a pair is the largest in 0..255 with H * sum_step[c] >= M[p]
 * in float arithmetic, and unpacking computes the same product, so an
 * unpacked norm is never below M[p]. */

static const float sum_step[256] = { /* (float)2^(-c/32) */
    0x1p+0, 0x1.f50766p-1, 0x1.ea4afap-1, 0x1.dfc974p-1, 0x1.d5818ep-1, 0x1.cb720ep-1,
    0x1.c199bep-1, 0x1.b7f77p-1, 0x1.ae89fap-1, 0x1.a5503cp-1, 0x1.9c4918p-1, 0x1.93737cp-1,
    0x1.8ace54p-1, 0x1.82589ap-1, 0x1.7a1148p-1, 0x1.71f75ep-1, 0x1.6a09e6p-1, 0x1.6247ecp-1,
    0x1.5ab07ep-1, 0x1.5342b6p-1, 0x1.4bfdaep-1, 0x1.44e086p-1, 0x1.3dea64p-1, 0x1.371a74p-1,
    0x1.306fep-1, 0x1.29e9ep-1, 0x1.2387a6p-1, 0x1.1d4874p-1, 0x1.172b84p-1, 0x1.11301ep-1,
    0x1.0b5586p-1, 0x1.059b0ep-1, 0x1p-1, 0x1.f50766p-2, 0x1.ea4afap-2, 0x1.dfc974p-2,
    0x1.d5818ep-2, 0x1.cb720ep-2, 0x1.c199bep-2, 0x1.b7f77p-2, 0x1.ae89fap-2, 0x1.a5503cp-2,
    0x1.9c4918p-2, 0x1.93737cp-2, 0x1.8ace54p-2, 0x1.82589ap-2, 0x1.7a1148p-2, 0x1.71f75ep-2,
    0x1.6a09e6p-2, 0x1.6247ecp-2, 0x1.5ab07ep-2, 0x1.5342b6p-2, 0x1.4bfdaep-2, 0x1.44e086p-2,
    0x1.3dea64p-2, 0x1.371a74p-2, 0x1.306fep-2, 0x1.29e9ep-2, 0x1.2387a6p-2, 0x1.1d4874p-2,
    0x1.172b84p-2, 0x1.11301ep-2, 0x1.0b5586p-2, 0x1.059b0ep-2, 0x1p-2, 0x1.f50766p-3,
    0x1.ea4afap-3, 0x1.dfc974p-3, 0x1.d5818ep-3, 0x1.cb720ep-3, 0x1.c199bep-3, 0x1.b7f77p-3,
    0x1.ae89fap-3, 0x1.a5503cp-3, 0x1.9c4918p-3, 0x1.93737cp-3, 0x1.8ace54p-3, 0x1.82589ap-3,
    0x1.7a1148p-3, 0x1.71f75ep-3, 0x1.6a09e6p-3, 0x1.6247ecp-3, 0x1.5ab07ep-3, 0x1.5342b6p-3,
    0x1.4bfdaep-3, 0x1.44e086p-3, 0x1.3dea64p-3, 0x1.371a74p-3, 0x1.306fep-3, 0x1.29e9ep-3,
    0x1.2387a6p-3, 0x1.1d4874p-3, 0x1.172b84p-3, 0x1.11301ep-3, 0x1.0b5586p-3, 0x1.059b0ep-3,
    0x1p-3, 0x1.f50766p-4, 0x1.ea4afap-4, 0x1.dfc974p-4, 0x1.d5818ep-4, 0x1.cb720ep-4,
    0x1.c199bep-4, 0x1.b7f77p-4, 0x1.ae89fap-4, 0x1.a5503cp-4, 0x1.9c4918p-4, 0x1.93737cp-4,
    0x1.8ace54p-4, 0x1.82589ap-4, 0x1.7a1148p-4, 0x1.71f75ep-4, 0x1.6a09e6p-4, 0x1.6247ecp-4,
    0x1.5ab07ep-4, 0x1.5342b6p-4, 0x1.4bfdaep-4, 0x1.44e086p-4, 0x1.3dea64p-4, 0x1.371a74p-4,
    0x1.306fep-4, 0x1.29e9ep-4, 0x1.2387a6p-4, 0x1.1d4874p-4, 0x1.172b84p-4, 0x1.11301ep-4,
    0x1.0b5586p-4, 0x1.059b0ep-4, 0x1p-4, 0x1.f50766p-5, 0x1.ea4afap-5, 0x1.dfc974p-5,
    0x1.d5818ep-5, 0x1.cb720ep-5, 0x1.c199bep-5, 0x1.b7f77p-5, 0x1.ae89fap-5, 0x1.a5503cp-5,
    0x1.9c4918p-5, 0x1.93737cp-5, 0x1.8ace54p-5, 0x1.82589ap-5, 0x1.7a1148p-5, 0x1.71f75ep-5,
    0x1.6a09e6p-5, 0x1.6247ecp-5, 0x1.5ab07ep-5, 0x1.5342b6p-5, 0x1.4bfdaep-5, 0x1.44e086p-5,
    0x1.3dea64p-5, 0x1.371a74p-5, 0x1.306fep-5, 0x1.29e9ep-5, 0x1.2387a6p-5, 0x1.1d4874p-5,
    0x1.172b84p-5, 0x1.11301ep-5, 0x1.0b5586p-5, 0x1.059b0ep-5, 0x1p-5, 0x1.f50766p-6,
    0x1.ea4afap-6, 0x1.dfc974p-6, 0x1.d5818ep-6, 0x1.cb720ep-6, 0x1.c199bep-6, 0x1.b7f77p-6,
    0x1.ae89fap-6, 0x1.a5503cp-6, 0x1.9c4918p-6, 0x1.93737cp-6, 0x1.8ace54p-6, 0x1.82589ap-6,
    0x1.7a1148p-6, 0x1.71f75ep-6, 0x1.6a09e6p-6, 0x1.6247ecp-6, 0x1.5ab07ep-6, 0x1.5342b6p-6,
    0x1.4bfdaep-6, 0x1.44e086p-6, 0x1.3dea64p-6, 0x1.371a74p-6, 0x1.306fep-6, 0x1.29e9ep-6,
    0x1.2387a6p-6, 0x1.1d4874p-6, 0x1.172b84p-6, 0x1.11301ep-6, 0x1.0b5586p-6, 0x1.059b0ep-6,
    0x1p-6, 0x1.f50766p-7, 0x1.ea4afap-7, 0x1.dfc974p-7, 0x1.d5818ep-7, 0x1.cb720ep-7,
    0x1.c199bep-7, 0x1.b7f77p-7, 0x1.ae89fap-7, 0x1.a5503cp-7, 0x1.9c4918p-7, 0x1.93737cp-7,
    0x1.8ace54p-7, 0x1.82589ap-7, 0x1.7a1148p-7, 0x1.71f75ep-7, 0x1.6a09e6p-7, 0x1.6247ecp-7,
    0x1.5ab07ep-7, 0x1.5342b6p-7, 0x1.4bfdaep-7, 0x1.44e086p-7, 0x1.3dea64p-7, 0x1.371a74p-7,
    0x1.306fep-7, 0x1.29e9ep-7, 0x1.2387a6p-7, 0x1.1d4874p-7, 0x1.172b84p-7, 0x1.11301ep-7,
    0x1.0b5586p-7, 0x1.059b0ep-7, 0x1p-7, 0x1.f50766p-8, 0x1.ea4afap-8, 0x1.dfc974p-8,
    0x1.d5818ep-8, 0x1.cb720ep-8, 0x1.c199bep-8, 0x1.b7f77p-8, 0x1.ae89fap-8, 0x1.a5503cp-8,
    0x1.9c4918p-8, 0x1.93737cp-8, 0x1.8ace54p-8, 0x1.82589ap-8, 0x1.7a1148p-8, 0x1.71f75ep-8,
    0x1.6a09e6p-8, 0x1.6247ecp-8, 0x1.5ab07ep-8, 0x1.5342b6p-8, 0x1.4bfdaep-8, 0x1.44e086p-8,
    0x1.3dea64p-8, 0x1.371a74p-8, 0x1.306fep-8, 0x1.29e9ep-8, 0x1.2387a6p-8, 0x1.1d4874p-8,
    0x1.172b84p-8, 0x1.11301ep-8, 0x1.0b5586p-8, 0x1.059b0ep-8,
};

static uint8_t sum_code(float h, float m)
{
    if (!(m > 0)) return 255; /* 0 (or NaN: h is +inf then) */
    float x = -32.0f * log2f(m / h); /* >= 0; +inf if m / h underflows */
    int c = x < 255.0f ? (int)x : 255;
    while (c > 0 && !(h * sum_step[c] >= m)) c--;
    while (c < 255 && h * sum_step[c + 1] >= m) c++;
    return (uint8_t)c;
}

size_t kvs_sum_packed_bytes(int kv_dim, int head_dim)
{
    return 4 * (size_t)(kv_dim / head_dim) + (size_t)kv_dim / 2;
}

void kvs_sum_pack(int kv_dim, int head_dim, const float *f, uint8_t *out)
{
    int half = head_dim / 2, heads = kv_dim / head_dim;
    uint8_t *code = out + 4 * (size_t)heads;
    for (int g = 0; g < heads; g++) {
        const float *m = f + (size_t)g * half;
        float h = 0;
        for (int p = 0; p < half; p++) h = m[p] > h || m[p] != m[p] ? m[p] : h;
        if (!(h <= FLT_MAX)) h = INFINITY; /* NaN or inf: an unbounded tile */
        memcpy(out + 4 * (size_t)g, &h, 4);
        for (int p = 0; p < half; p++)
            code[(size_t)g * half + p] = h == INFINITY ? 0 : sum_code(h, m[p]);
    }
}

void kvs_sum_unpack(int kv_dim, int head_dim, const uint8_t *in, float *f)
{
    int half = head_dim / 2, heads = kv_dim / head_dim;
    const uint8_t *code = in + 4 * (size_t)heads;
    for (int g = 0; g < heads; g++) {
        float h;
        memcpy(&h, in + 4 * (size_t)g, 4);
        for (int p = 0; p < half; p++)
            f[(size_t)g * half + p] = h * sum_step[code[(size_t)g * half + p]];
    }
}

/* Summarize full tile TI of L from its packed K rows (both backings), into
 * s->sum_f (the float form) and L's packed row. */
static void kvs_summarize(kvs *s, struct kvs_layer *ly, int64_t ti, const uint8_t *k_raw)
{
    tile_summarize(s->cfg.type, s->cfg.kv_dim, &s->pair, k_raw, s->cfg.tile_tokens,
                   s->sum_f, s->sum_row);
    kvs_sum_pack(s->cfg.kv_dim, s->pair.head_dim, s->sum_f, ly->sum + (size_t)ti * s->sum_rb);
    ly->sum_ok[ti] = 1;
}

/* Append the summary record of L's full tile TI, whose summary kvs_summarize
 * just left in s->sum_f (upgrading a version 2 file header first). */
static int kvs_put_sum(kvs *s, int layer, int64_t ti)
{
    if (s->file_version < KVS_FILE_VERSION) {
        uint64_t end = s->file_end, peak = s->peak_end, tag = s->tag_end;
        int rc = kvs_write_file_hdr(s);
        s->file_end = end;
        s->peak_end = peak;
        s->tag_end = tag;
        if (rc < 0) return rc;
    }
    const int T = s->cfg.tile_tokens;
    int64_t len = tile_sum_encode(layer, ti * T, T, s->cfg.kv_dim, &s->pair,
                                  s->sum_f, s->wbuf, s->rec_cap);
    if (len < 0) return (int)len;
    return kvs_put_record(s, (size_t)len, NULL);
}

/* Write layer L's full tail as tile record. */
static int kvs_seal(kvs *s, int layer)
{
    struct kvs_layer *ly = &s->layers[layer];
    const int T = s->cfg.tile_tokens;
    int64_t ti = ly->n_tokens / T - 1; /* the tail is full: n_tokens % T == 0 */
    int rc = kvs_idx_reserve(s, ly, ti + 1);
    if (rc < 0) return rc;
    kvs_summarize(s, ly, ti, ly->tail);
    struct kvs_rec rec;
    rc = kvs_put_tile(s, layer, ti * T, T, 0, &rec);
    if (rc < 0) return rc;
    ly->idx[ti] = rec;
    ly->tail_dirty = 0;
    return kvs_put_sum(s, layer, ti); /* a failure leaves it missing on disk */
}

/* Tokens of layer L sealed on disk (the tail holds the rest). */
int64_t kvs_sealed(const kvs *s, const struct kvs_layer *ly)
{
    const int T = s->cfg.tile_tokens;
    int64_t full = ly->n_tokens / T * T;
    /* a full tail not yet written (write failed) is still the tail */
    if (full == ly->n_tokens && full > 0 && ly->tail_dirty) full -= T;
    return full;
}

/* ---- open / close ------------------------------------------------------- */

int kvs_open(const struct kvs_config *cfg, kvs **out)
{
    *out = NULL;
    int rc = kvs_check_config(cfg);
    if (rc < 0) return rc;
    kvs *s = calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    s->cfg = *cfg;
    s->cfg.path = NULL; /* not owned; only kvs_open uses it */
    s->row_bytes = tile_row_bytes(cfg->type, cfg->kv_dim);
    s->pair.head_dim = cfg->head_dim ? cfg->head_dim : cfg->kv_dim;
    s->pair.neox_rot = cfg->neox_rot;
    s->sum_n = (size_t)cfg->kv_dim / 2;
    s->sum_rb = kvs_sum_packed_bytes(cfg->kv_dim, s->pair.head_dim);
    s->tile_raw = tile_raw_bytes(cfg->type, cfg->kv_dim, cfg->tile_tokens);
    s->rd_layer = -1;
    size_t span = (size_t)cfg->tile_tokens * (size_t)cfg->kv_dim;
    s->layers = calloc((size_t)cfg->n_layer, sizeof *s->layers);
    s->span_k = malloc(2 * span * sizeof(float));
    s->span_v = malloc(2 * span * sizeof(float));
    s->sum_row = malloc((size_t)cfg->kv_dim * sizeof(float));
    s->sum_f = malloc(s->sum_n * sizeof(float));
    rc = -ENOMEM;
    if (s->layers && s->span_k && s->span_v && s->sum_row && s->sum_f) {
        rc = 0;
        if (cfg->backing == KVS_DISK) {
            s->cfg.path = cfg->path;
            rc = kvs_open_disk(s);
            s->cfg.path = NULL;
        }
    }
    if (rc < 0) {
        io_close(s->io); /* no sync on a failed open */
        s->io = NULL;
        kvs_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

void kvs_close(kvs *s)
{
    if (!s) return;
    if (s->rd_layer >= 0) kvs_read_end(s);
    kvs_ahead_stop(s);
    if (s->io) {
        (void)kvs_sync(s); /* best effort: kvs_sync first to see errors */
        io_close(s->io);
    }
    if (s->layers)
        for (int l = 0; l < s->cfg.n_layer; l++) {
            free(s->layers[l].ram);
            free(s->layers[l].tail);
            free(s->layers[l].idx);
            free(s->layers[l].sum);
            free(s->layers[l].sum_ok);
        }
    free(s->layers);
    free(s->span_k);
    free(s->span_v);
    free(s->sum_row);
    free(s->sum_f);
    io_free(s->wbuf);
    free(s->raw);
    free(s->scratch);
    free(s->slot_res);
    free(s);
}

int kvs_io_info(const kvs *s) { return s->io_info; }

int64_t kvs_layer_tokens(const kvs *s, int layer)
{
    KVT_ASSERT(layer >= 0 && layer < s->cfg.n_layer);
    return s->layers[layer].n_tokens;
}

int64_t kvs_n_tokens(const kvs *s)
{
    int64_t n = s->layers[0].n_tokens;
    for (int l = 1; l < s->cfg.n_layer; l++)
        n = KVT_MIN(n, s->layers[l].n_tokens);
    return n;
}

/* ---- append / truncate / sync ----------------------------------------- */

static int kvs_ram_reserve(kvs *s, struct kvs_layer *ly, int64_t n_tiles)
{
    if (n_tiles <= ly->ram_cap) return 0;
    int64_t cap = ly->ram_cap ? ly->ram_cap : 4;
    while (cap < n_tiles) cap *= 2;
    if ((uint64_t)cap > SIZE_MAX / s->tile_raw) return -ENOMEM;
    int rc = kvs_sum_grow(s, ly, ly->ram_cap, cap);
    if (rc < 0) return rc;
    uint8_t *p = realloc(ly->ram, (size_t)cap * s->tile_raw);
    if (!p) return -ENOMEM;
    ly->ram = p;
    ly->ram_cap = cap;
    return 0;
}

int kvs_append(kvs *s, int layer, const float *k, const float *v, int n)
{
    KVT_ASSERT(layer >= 0 && layer < s->cfg.n_layer);
    KVT_ASSERT(n >= 0);
    struct kvs_layer *ly = &s->layers[layer];
    const int T = s->cfg.tile_tokens, D = s->cfg.kv_dim;
    const int disk = s->cfg.backing == KVS_DISK;
    size_t half = (size_t)T * s->row_bytes;
    if (!disk) {
        int rc = kvs_ram_reserve(s, ly, (ly->n_tokens + n + T - 1) / T);
        if (rc < 0) return rc;
    }
    while (n > 0) {
        if (disk && ly->tail_dirty && ly->n_tokens % T == 0 && ly->n_tokens > 0) {
            int rc = kvs_seal(s, layer); /* a full tail an error left */
            if (rc < 0) return rc;
        }
        int off = (int)(ly->n_tokens % T);
        int c = KVT_MIN(n, T - off);
        uint8_t *tile = disk ? ly->tail : ly->ram + (size_t)(ly->n_tokens / T) * s->tile_raw;
        tile_pack(s->cfg.type, D, k, c, tile + (size_t)off * s->row_bytes);
        tile_pack(s->cfg.type, D, v, c, tile + half + (size_t)off * s->row_bytes);
        ly->n_tokens += c;
        ly->tail_dirty = 1;
        k += (size_t)c * D;
        v += (size_t)c * D;
        n -= c;
        if (disk && off + c == T) {
            int rc = kvs_seal(s, layer); /* summarizes it too */
            if (rc < 0) return rc;
        } else if (off + c == T) {
            kvs_summarize(s, ly, ly->n_tokens / T - 1, tile);
        }
    }
    return 0;
}

int kvs_truncate(kvs *s, int64_t n_tokens)
{
    KVT_ASSERT(n_tokens >= 0);
    KVT_ASSERT(s->rd_layer < 0);
    kvs_ahead_stop(s);
    const int T = s->cfg.tile_tokens;
    int cut = 0;
    for (int l = 0; l < s->cfg.n_layer; l++) {
        struct kvs_layer *ly = &s->layers[l];
        if (ly->n_tokens <= n_tokens) continue;
        cut = 1;
        if (s->cfg.backing == KVS_DISK) {
            int64_t sealed = kvs_sealed(s, ly);
            if (n_tokens < sealed && n_tokens % T != 0) {
                /* the new tail is the head of a sealed tile: load it */
                int64_t ti = n_tokens / T;
                int got = kvs_load_raw(s, &ly->idx[ti], l, ti * T);
                if (got < 0) return got;
                if (got != T) return KVT_EFORMAT;
                kvs_raw_to_tail(s, ly, T, (int)(n_tokens % T));
            }
            ly->tail_dirty = n_tokens % T != 0;
        }
        ly->n_tokens = n_tokens;
    }
    if (!cut || s->cfg.backing != KVS_DISK) return 0;
    /* keep the records the remaining sealed tiles live in (and the tag);
     * the new tails stay in RAM until the next sync */
    uint64_t keep = s->tag_end;
    int64_t tiles = n_tokens / T;
    for (int l = 0; l < s->cfg.n_layer; l++) {
        const struct kvs_layer *ly = &s->layers[l];
        int64_t lt = KVT_MIN(tiles, kvs_sealed(s, ly) / T);
        for (int64_t ti = 0; ti < lt; ti++)
            keep = KVT_MAX(keep, ly->idx[ti].off + ly->idx[ti].size);
    }
    s->tails_off = UINT64_MAX;
    if (keep < s->file_end) {
        int rc = kvs_cut_file(s, keep);
        if (rc < 0) return rc;
    }
    /* records of other layers' forgotten tiles may lie before the cut */
    return keep > s->tag_end ? kvs_put_marker(s, TILE_MARK_TRUNC, n_tokens) : 0;
}

int kvs_reset(kvs *s, uint64_t tag)
{
    KVT_ASSERT(s->rd_layer < 0);
    kvs_ahead_stop(s);
    for (int l = 0; l < s->cfg.n_layer; l++) {
        s->layers[l].n_tokens = 0;
        s->layers[l].tail_dirty = 0;
    }
    s->tag = tag;
    if (s->cfg.backing != KVS_DISK) return 0;
    s->tails_off = UINT64_MAX;
    s->tag_end = KVS_FILE_HDR_BYTES;
    int rc = s->file_end > KVS_FILE_HDR_BYTES ? kvs_cut_file(s, KVS_FILE_HDR_BYTES) : 0;
    if (rc < 0) return rc;
    rc = kvs_put_marker(s, TILE_MARK_TAG, (int64_t)tag);
    if (rc < 0) return rc;
    s->tag_end = s->file_end;
    return 0;
}

uint64_t kvs_tag(const kvs *s) { return s->tag; }

int64_t kvs_file_bytes(const kvs *s, int64_t *peak)
{
    int disk = s->cfg.backing == KVS_DISK;
    if (peak) *peak = disk ? (int64_t)s->peak_end : 0;
    return disk ? (int64_t)s->file_end : 0;
}

int kvs_sync(kvs *s)
{
    if (s->cfg.backing != KVS_DISK) return 0;
    const int T = s->cfg.tile_tokens;
    int dirty = 0;
    for (int l = 0; l < s->cfg.n_layer; l++)
        dirty |= s->layers[l].tail_dirty && s->layers[l].n_tokens % T != 0;
    if (dirty && s->sync_end == s->file_end && s->tails_off < s->sync_end &&
        s->rd_layer < 0) {
        kvs_ahead_stop(s);
        /* nothing sealed since the last sync: its tails and marker are
         * the end of the file and all superseded; write over them */
        int rc = kvs_cut_file(s, s->tails_off);
        if (rc < 0) return rc;
        for (int l = 0; l < s->cfg.n_layer; l++)
            if (s->layers[l].n_tokens % T != 0) s->layers[l].tail_dirty = 1;
    }
    uint64_t start = s->file_end;
    int sealed = 0;
    for (int l = 0; l < s->cfg.n_layer; l++) {
        struct kvs_layer *ly = &s->layers[l];
        if (!ly->tail_dirty || ly->n_tokens == 0) continue;
        int off = (int)(ly->n_tokens % T);
        int rc;
        if (off == 0) {
            rc = kvs_seal(s, l); /* full tail a failed write left */
            sealed = 1;
        } else {
            rc = kvs_put_tile(s, l, ly->n_tokens - off, off, TILE_F_TAIL, NULL);
            if (rc == 0) ly->tail_dirty = 0;
        }
        if (rc < 0) return rc;
    }
    if (!s->unsynced) return 0;
    int rc = io_fsync(s->io);
    if (rc < 0) return rc;
    rc = kvs_put_marker(s, TILE_MARK_SYNC, 0);
    if (rc < 0) return rc;
    rc = io_fsync(s->io);
    if (rc < 0) return rc;
    s->unsynced = 0;
    s->sync_end = s->file_end;
    s->tails_off = sealed ? UINT64_MAX : start;
    return 0;
}

/* ---- key summaries ---------------------------------------------------- */

int kvs_summary(const kvs *s, int layer, int64_t tile, float *out)
{
    KVT_ASSERT(layer >= 0 && layer < s->cfg.n_layer);
    const struct kvs_layer *ly = &s->layers[layer];
    KVT_ASSERT(tile >= 0 && tile < ly->n_tokens / s->cfg.tile_tokens);
    if (!ly->sum_ok[tile]) return 0;
    kvs_sum_unpack(s->cfg.kv_dim, s->pair.head_dim, ly->sum + (size_t)tile * s->sum_rb, out);
    return 1;
}

size_t kvs_summary_ram_bytes(const kvs *s) { return s->sum_rb + 1; }

void kvs_summary_pairing(const kvs *s, int *head_dim, int *neox_rot)
{
    *head_dim = s->pair.head_dim;
    *neox_rot = s->pair.neox_rot;
}

int64_t kvs_summary_missing(const kvs *s)
{
    int64_t n = 0;
    for (int l = 0; l < s->cfg.n_layer; l++) {
        const struct kvs_layer *ly = &s->layers[l];
        for (int64_t t = 0; t < ly->n_tokens / s->cfg.tile_tokens; t++)
            n += !ly->sum_ok[t];
    }
    return n;
}

int64_t kvs_summary_rebuild(kvs *s)
{
    KVT_ASSERT(s->rd_layer < 0);
    kvs_ahead_stop(s);
    const int T = s->cfg.tile_tokens;
    int64_t done = 0;
    for (int l = 0; l < s->cfg.n_layer; l++) {
        struct kvs_layer *ly = &s->layers[l];
        int64_t sealed = s->cfg.backing == KVS_DISK ? kvs_sealed(s, ly) / T : 0;
        for (int64_t t = 0; t < ly->n_tokens / T; t++) {
            if (ly->sum_ok[t]) continue;
            const uint8_t *k_raw;
            if (s->cfg.backing == KVS_RAM) {
                k_raw = ly->ram + (size_t)t * s->tile_raw;
            } else if (t < sealed) {
                int got = kvs_load_raw(s, &ly->idx[t], l, t * T);
                if (got < 0) return got;
                if (got != T) return KVT_EFORMAT;
                k_raw = s->raw;
            } else {
                k_raw = ly->tail; /* a full tail a failed write left */
            }
            kvs_summarize(s, ly, t, k_raw);
            if (s->cfg.backing == KVS_DISK && t < sealed) {
                int rc = kvs_put_sum(s, l, t);
                if (rc < 0) return rc;
            }
            done++;
        }
    }
    return done;
}
