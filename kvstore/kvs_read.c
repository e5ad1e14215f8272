/* kvs_read.c - the KV store's reads: spans from RAM or the disk (reads
 * kept in flight, each tile decoded by the reader when it is taken). See
 * kvs.c. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "io/io.h"
#include "base/kvt.h"
#include "kvstore/tile.h"
#include "kvstore/kvs_int.h"

/* ---- disk: reads in flight, decoded by the reader ---------------------- */

/* Keep stream entries [rd_sub, min(rd_disk, rd_j + window)) submitted
 * (disk tile rd_list[e], or e without a list, into io slot e % window).
 * A failed submit is kept in rd_sub_err and handed to the reader when it
 * reaches that entry. */
static void kvs_submit(kvs *s)
{
    const int T = s->cfg.tile_tokens;
    const struct kvs_layer *ly = &s->layers[s->rd_layer];
    while (s->rd_sub_err == 0 && s->rd_sub < s->rd_disk && s->rd_sub < s->rd_j + s->window) {
        int64_t e = s->rd_sub;
        int64_t ti = !s->rd_list ? e : e < s->rd_nlist ? s->rd_list[e] : s->rd_end / T;
        int slot = (int)(e % s->window);
        int rc = io_submit(s->io, slot, ly->idx[ti].off, ly->idx[ti].size);
        if (rc < 0) {
            s->rd_sub_err = rc;
            break;
        }
        s->slot_res[slot] = INT32_MIN;
        s->rd_sub++;
    }
}

/* Wait for all reads in flight (their slots are reused by the next read). */
static void kvs_drain(kvs *s)
{
    while (io_in_flight(s->io) > 0) {
        int slot = -1;
        io_wait(s->io, &slot);
        if (slot < 0) break; /* nothing completed (the ring failed) */
    }
    s->rd_sub = 0;
    s->rd_sub_err = 0;
}

/* Stream entry j (disk tile ti, its first n tokens): wait for its read,
 * then check, decode and unpack it into k and v. */
static int kvs_read_disk(kvs *s, int64_t j, int64_t ti, int n, float *k, float *v)
{
    if (j >= s->rd_sub) return s->rd_sub_err < 0 ? s->rd_sub_err : -EIO;
    int slot = (int)(j % s->window);
    double t0 = kvt_now_s();
    while (s->slot_res[slot] == INT32_MIN) {
        int done = -1;
        int res = io_wait(s->io, &done);
        if (done < 0) return res < 0 ? res : -EIO;
        s->slot_res[done] = res;
    }
    double t1 = kvt_now_s();
    int res = s->slot_res[slot];
    if (res < 0) return res;
    const int T = s->cfg.tile_tokens;
    struct tile_hdr want;
    memset(&want, 0, sizeof want);
    want.layer = (uint32_t)s->rd_layer;
    want.pos0 = (uint64_t)(ti * T);
    want.n = (uint32_t)T;
    want.type = (uint8_t)s->cfg.type;
    want.kv_dim = (uint32_t)s->cfg.kv_dim;
    int rc = tile_decode_unpack(io_slot(s->io, slot), (size_t)res, &want, n, k, v,
                                s->raw, s->tile_raw, s->scratch,
                                tile_scratch_bound(s->cfg.type, s->cfg.kv_dim, T));
    s->rst.tiles++;
    s->rst.io_wait_s += t1 - t0;
    s->rst.decode_s += kvt_now_s() - t1;
    return rc;
}

/* ---- reads ------------------------------------------------------------ */

static int kvs_read_start(kvs *s, int layer, int64_t n_tokens,
                          const int64_t *tiles, int64_t n_sel)
{
    KVT_ASSERT(layer >= 0 && layer < s->cfg.n_layer);
    KVT_ASSERT(n_tokens >= 0);
    KVT_ASSERT(s->rd_layer < 0);
    struct kvs_layer *ly = &s->layers[layer];
    if (n_tokens > ly->n_tokens) return KVT_ERANGE;
    const int T = s->cfg.tile_tokens;
    int64_t n_all = (n_tokens + T - 1) / T;
    s->rd_layer = layer;
    s->rd_end = n_tokens;
    s->rd_err = 0;
    s->rd_j = 0;
    s->rd_list = tiles;
    s->rd_nlist = tiles ? n_sel : 0;
    s->rd_n = tiles ? n_sel + (n_tokens % T != 0) : n_all;
    s->rd_tiles = 0;
    s->rd_disk = 0;
    if (s->cfg.backing == KVS_DISK) {
        int64_t sealed = kvs_sealed(s, ly) / T;
        s->rd_tiles = KVT_MIN(sealed, n_all);
        /* stream entries on disk: a prefix, the entries are ascending */
        if (!tiles) s->rd_disk = s->rd_tiles;
        else {
            while (s->rd_disk < n_sel && tiles[s->rd_disk] < s->rd_tiles) s->rd_disk++;
            /* the remainder is the head of a sealed tile (a prefix read) */
            if (s->rd_disk == n_sel && n_tokens % T != 0 && n_tokens / T < s->rd_tiles)
                s->rd_disk++;
        }
    }
    return 0;
}

/* Submit the first reads of stream entries [0, rd_disk). */
static void kvs_read_kick(kvs *s)
{
    KVT_ASSERT(s->rd_sub == 0 && io_in_flight(s->io) == 0);
    if (s->rd_disk > 0) kvs_submit(s);
}

void kvs_ahead_stop(kvs *s)
{
    if (!s->ahead) return;
    s->ahead = 0;
    kvs_drain(s);
}

int kvs_read_ahead(kvs *s, int layer, int64_t n_tokens)
{
    KVT_ASSERT(layer >= 0 && layer < s->cfg.n_layer);
    KVT_ASSERT(s->rd_layer < 0);
    if (s->cfg.backing != KVS_DISK) return n_tokens > s->layers[layer].n_tokens ? KVT_ERANGE : 0;
    kvs_ahead_stop(s);
    int rc = kvs_read_start(s, layer, n_tokens, NULL, 0);
    if (rc < 0) return rc;
    kvs_read_kick(s);
    s->ahead = 1;
    s->ah_layer = layer;
    s->ah_end = n_tokens;
    s->ah_disk = s->rd_disk;
    s->rd_layer = -1; /* no read in progress until it is taken over */
    return 0;
}

/* A read of LAYER's [0, n_tokens) begins: take the read-ahead over if it
 * is that read with the same tiles on disk (1), else drop it (0). */
static int kvs_ahead_take(kvs *s, int layer, int64_t n_tokens)
{
    if (!s->ahead) return 0;
    if (s->ah_layer == layer && s->ah_end == n_tokens &&
        kvs_read_start(s, layer, n_tokens, NULL, 0) == 0) {
        if (s->rd_disk == s->ah_disk) {
            s->ahead = 0;
            return 1;
        }
        s->rd_layer = -1;
    }
    kvs_ahead_stop(s);
    return 0;
}

int kvs_read_begin(kvs *s, int layer, int64_t n_tokens)
{
    if (kvs_ahead_take(s, layer, n_tokens)) return 0;
    int rc = kvs_read_start(s, layer, n_tokens, NULL, 0);
    if (rc == 0 && s->cfg.backing == KVS_DISK) kvs_read_kick(s);
    return rc;
}

int kvs_read_begin_tiles(kvs *s, int layer, int64_t n_tokens,
                         const int64_t *tiles, int64_t n_sel)
{
    KVT_ASSERT(n_sel >= 0);
    const int T = s->cfg.tile_tokens;
    for (int64_t i = 0; i < n_sel; i++) {
        KVT_ASSERT(tiles[i] >= 0 && tiles[i] < n_tokens / T);
        KVT_ASSERT(i == 0 || tiles[i] > tiles[i - 1]);
    }
    kvs_ahead_stop(s);
    int rc = kvs_read_start(s, layer, n_tokens, tiles, n_sel);
    if (rc == 0 && s->cfg.backing == KVS_DISK) kvs_read_kick(s);
    return rc;
}

int kvs_read_next(kvs *s, struct kvs_span *sp)
{
    KVT_ASSERT(s->rd_layer >= 0);
    if (s->rd_err < 0) return s->rd_err;
    if (s->rd_j >= s->rd_n) return 0;
    const int T = s->cfg.tile_tokens, D = s->cfg.kv_dim;
    struct kvs_layer *ly = &s->layers[s->rd_layer];
    int64_t j = s->rd_j;
    int64_t ti = !s->rd_list ? j : j < s->rd_nlist ? s->rd_list[j] : s->rd_end / T;
    int n = (int)KVT_MIN((int64_t)T, s->rd_end - ti * T);
    size_t half = (size_t)T * s->row_bytes;
    sp->pos0 = ti * T;
    sp->n = n;
    size_t span = (size_t)T * (size_t)D;
    float *k = s->span_k + (size_t)s->span_i * span, *v = s->span_v + (size_t)s->span_i * span;
    sp->k = k;
    sp->v = v;
    if (s->cfg.backing == KVS_RAM) {
        const uint8_t *tile = ly->ram + (size_t)ti * s->tile_raw;
        if (s->cfg.type == KVS_F32) { /* zero copy: raw rows are floats */
            sp->k = (const float *)(const void *)tile;
            sp->v = (const float *)(const void *)(tile + half);
        } else {
            tile_unpack(s->cfg.type, D, tile, n, k);
            tile_unpack(s->cfg.type, D, tile + half, n, v);
            s->span_i ^= 1;
        }
        s->bytes_read += 2 * (uint64_t)n * s->row_bytes;
    } else if (j < s->rd_disk) {
        int rc = kvs_read_disk(s, j, ti, n, k, v);
        if (rc < 0) {
            s->rd_err = rc;
            return rc;
        }
        s->bytes_read += ly->idx[ti].size;
        s->rd_j++;
        s->span_i ^= 1;
        kvs_submit(s); /* entry j's slot is free again */
        return 1;
    } else {
        tile_unpack(s->cfg.type, D, ly->tail, n, k);
        tile_unpack(s->cfg.type, D, ly->tail + half, n, v);
        s->span_i ^= 1;
        s->bytes_read += 2 * (uint64_t)n * s->row_bytes;
    }
    s->rd_j++;
    return 1;
}

void kvs_read_end(kvs *s)
{
    if (s->cfg.backing == KVS_DISK) kvs_drain(s);
    s->rd_layer = -1;
}

uint64_t kvs_bytes_read(const kvs *s) { return s->bytes_read; }

void kvs_get_read_stats(const kvs *s, struct kvs_read_stats *st)
{
    *st = s->rst;
}
