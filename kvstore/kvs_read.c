/* kvs_read.c - the KV store's reads: spans from RAM or the disk, and the
 * disk's decode-ahead helper thread. See kvs.c. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "io/io.h"
#include "base/kvt.h"
#include "kvstore/tile.h"
#include "kvstore/kvs_int.h"

/* ---- disk: the decode-ahead helper ------------------------------------ */

/* Helper: wait for the read of stream entry j (disk tile ti, io slot
 * j % window), decode it and unpack its first n tokens into ring slot R. */
static int kvs_decode_tile(kvs *s, int layer, int64_t j, int64_t ti, int n,
                           struct kvs_ring_slot *r)
{
    int slot = (int)(j % s->window);
    while (s->slot_res[slot] == INT32_MIN) {
        int done = -1;
        int res = io_wait(s->io, &done);
        if (done < 0) return res < 0 ? res : -EIO;
        s->slot_res[done] = res;
    }
    int res = s->slot_res[slot];
    if (res < 0) return res;
    const int T = s->cfg.tile_tokens;
    struct tile_hdr want;
    memset(&want, 0, sizeof want);
    want.layer = (uint32_t)layer;
    want.pos0 = (uint64_t)(ti * T);
    want.n = (uint32_t)T;
    want.type = (uint8_t)s->cfg.type;
    want.kv_dim = (uint32_t)s->cfg.kv_dim;
    return tile_decode_unpack(io_slot(s->io, slot), (size_t)res, &want, n, r->k, r->v,
                              s->h_raw, s->tile_raw, s->h_scratch,
                              tile_scratch_bound(s->cfg.type, s->cfg.kv_dim, T));
}

/* Helper, unlocked: produce stream entries [0, nt) of LAYER (disk tile
 * list[j], or j without a list) into the ring in order, keeping up to
 * `window` reads in flight; stops at the first error (handed to the reader
 * with its entry) or when the reader cancels. */
static void kvs_produce(kvs *s, int layer, const int64_t *list, int64_t nlist,
                        int64_t nt, int64_t end)
{
    const int T = s->cfg.tile_tokens;
    int64_t next_submit = 0;
    int err = 0;
#define KVS_ENTRY(j) (!list ? (j) : (j) < nlist ? list[j] : end / T)
    for (int64_t j = 0; j < nt; j++) {
        int64_t ti = KVS_ENTRY(j);
        while (err == 0 && next_submit < nt && next_submit < j + s->window) {
            int64_t si = KVS_ENTRY(next_submit);
            pthread_mutex_lock(&s->mu);
            struct kvs_rec rec = s->layers[layer].idx[si];
            pthread_mutex_unlock(&s->mu);
            int slot = (int)(next_submit % s->window);
            err = io_submit(s->io, slot, rec.off, rec.size);
            if (err < 0) break;
            s->slot_res[slot] = INT32_MIN;
            next_submit++;
        }
        struct kvs_ring_slot *r = &s->ring[j % KVS_RING];
        pthread_mutex_lock(&s->mu);
        while (r->state != RING_FREE && !s->cancel)
            pthread_cond_wait(&s->cv_helper, &s->mu);
        int stop = s->cancel;
        if (!stop) r->state = RING_BUSY;
        pthread_mutex_unlock(&s->mu);
        if (stop) return;
        int n = (int)KVT_MIN((int64_t)T, end - ti * T);
        int rc = j < next_submit ? kvs_decode_tile(s, layer, j, ti, n, r) : err;
        pthread_mutex_lock(&s->mu);
        r->tile = j;
        r->rc = rc;
        r->state = RING_READY;
        pthread_cond_broadcast(&s->cv_reader);
        pthread_mutex_unlock(&s->mu);
        if (rc < 0) return;
    }
#undef KVS_ENTRY
}

static void *kvs_helper(void *arg)
{
    kvs *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->job && !s->quit) pthread_cond_wait(&s->cv_helper, &s->mu);
        if (s->quit) break;
        int layer = s->h_layer;
        int64_t nt = s->h_tiles, end = s->h_end;
        const int64_t *list = s->h_list;
        int64_t nlist = s->h_nlist;
        pthread_mutex_unlock(&s->mu);
        kvs_produce(s, layer, list, nlist, nt, end);
        while (io_in_flight(s->io) > 0) { /* drain: slots are reused next job */
            int slot = -1;
            io_wait(s->io, &slot);
            if (slot < 0) break; /* nothing completed (the ring failed) */
        }
        pthread_mutex_lock(&s->mu);
        s->job = 0;
        pthread_cond_broadcast(&s->cv_reader);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int kvs_helper_start(kvs *s)
{
    if (pthread_mutex_init(&s->mu, NULL) != 0) return -ENOMEM;
    if (pthread_cond_init(&s->cv_helper, NULL) != 0) {
        pthread_mutex_destroy(&s->mu);
        return -ENOMEM;
    }
    if (pthread_cond_init(&s->cv_reader, NULL) != 0) {
        pthread_cond_destroy(&s->cv_helper);
        pthread_mutex_destroy(&s->mu);
        return -ENOMEM;
    }
    s->sync_init = 1;
    s->held = -1;
    int rc = pthread_create(&s->th, NULL, kvs_helper, s);
    if (rc != 0) return -rc;
    s->th_started = 1;
    return 0;
}

/* Stop and join the helper (idle: no read in progress). */
void kvs_helper_stop(kvs *s)
{
    if (s->th_started) {
        pthread_mutex_lock(&s->mu);
        s->quit = 1;
        pthread_cond_broadcast(&s->cv_helper);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->th, NULL);
        s->th_started = 0;
    }
    if (s->sync_init) {
        pthread_cond_destroy(&s->cv_reader);
        pthread_cond_destroy(&s->cv_helper);
        pthread_mutex_destroy(&s->mu);
        s->sync_init = 0;
    }
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

/* Start the helper on stream entries [0, rd_disk). */
static void kvs_read_kick(kvs *s)
{
    if (s->rd_disk <= 0) return;
    pthread_mutex_lock(&s->mu);
    for (int r = 0; r < KVS_RING; r++) s->ring[r].state = RING_FREE;
    s->held = -1;
    s->h_layer = s->rd_layer;
    s->h_tiles = s->rd_disk;
    s->h_end = s->rd_end;
    s->h_list = s->rd_list;
    s->h_nlist = s->rd_nlist;
    s->job = 1;
    pthread_cond_broadcast(&s->cv_helper);
    pthread_mutex_unlock(&s->mu);
}

/* Stop the helper's job (in-flight reads drained) and free the ring. */
static void kvs_job_cancel(kvs *s)
{
    pthread_mutex_lock(&s->mu);
    if (s->held >= 0) s->ring[s->held].state = RING_FREE;
    s->held = -1;
    if (s->job) {
        s->cancel = 1;
        pthread_cond_broadcast(&s->cv_helper);
        while (s->job) pthread_cond_wait(&s->cv_reader, &s->mu);
        s->cancel = 0;
    }
    for (int r = 0; r < KVS_RING; r++) s->ring[r].state = RING_FREE;
    pthread_mutex_unlock(&s->mu);
}

void kvs_ahead_stop(kvs *s)
{
    if (!s->ahead) return;
    s->ahead = 0;
    kvs_job_cancel(s);
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
    if (rc == 0) kvs_read_kick(s);
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
    if (rc == 0) kvs_read_kick(s);
    return rc;
}

/* Take stream entry j from the ring (waiting for the helper); the span
 * handed out before goes back to the helper. */
static int kvs_read_disk(kvs *s, int64_t j, struct kvs_span *sp)
{
    struct kvs_ring_slot *r = &s->ring[j % KVS_RING];
    pthread_mutex_lock(&s->mu);
    if (s->held >= 0) {
        s->ring[s->held].state = RING_FREE;
        s->held = -1;
        pthread_cond_broadcast(&s->cv_helper);
    }
    while (!(r->state == RING_READY && r->tile == j))
        pthread_cond_wait(&s->cv_reader, &s->mu);
    int rc = r->rc;
    if (rc == 0) {
        r->state = RING_HELD;
        s->held = (int)(j % KVS_RING);
    }
    pthread_mutex_unlock(&s->mu);
    sp->k = r->k;
    sp->v = r->v;
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
    sp->k = s->span_k;
    sp->v = s->span_v;
    if (s->cfg.backing == KVS_RAM) {
        const uint8_t *tile = ly->ram + (size_t)ti * s->tile_raw;
        if (s->cfg.type == KVS_F32) { /* zero copy: raw rows are floats */
            sp->k = (const float *)(const void *)tile;
            sp->v = (const float *)(const void *)(tile + half);
        } else {
            tile_unpack(s->cfg.type, D, tile, n, s->span_k);
            tile_unpack(s->cfg.type, D, tile + half, n, s->span_v);
        }
        s->bytes_read += 2 * (uint64_t)n * s->row_bytes;
    } else if (j < s->rd_disk) {
        int rc = kvs_read_disk(s, j, sp);
        if (rc < 0) {
            s->rd_err = rc;
            return rc;
        }
        s->bytes_read += ly->idx[ti].size; /* only this thread grows idx */
    } else {
        tile_unpack(s->cfg.type, D, ly->tail, n, s->span_k);
        tile_unpack(s->cfg.type, D, ly->tail + half, n, s->span_v);
        s->bytes_read += 2 * (uint64_t)n * s->row_bytes;
    }
    s->rd_j++;
    return 1;
}

void kvs_read_end(kvs *s)
{
    if (s->th_started) kvs_job_cancel(s);
    s->rd_layer = -1;
}

uint64_t kvs_bytes_read(const kvs *s) { return s->bytes_read; }
