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
 * fills. Reads are streamed by a helper thread (one per disk store,
 * started at open, idle between reads): it keeps up to W records in
 * flight through io.h, W = min(queue_depth, ram_budget_bytes / record
 * slot), and decodes and unpacks tiles in order into a ring of KVS_RING
 * f32 spans, so decoding overlaps the caller's work on the previous span.
 * kvs_read_next hands out ring spans in order and frees the one it handed
 * out before; kvs_read_end stops the helper (in-flight reads drained)
 * before it returns. Only the helper touches the io reads and its own
 * decode buffers during a read; the index it reads (idx) is grown under
 * the store's mutex, so appends may go on while a read is in progress.
 *
 * Errors during append leave the tokens appended so far in place
 * (kvs_layer_tokens tells); a tile that could not be written stays in the
 * tail and is written by the next append or kvs_sync.
 */
#include "kvstore/kvs.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "io/io.h"
#include "base/kvt.h"
#include "kvstore/tile.h"

#define KVS_DEFAULT_BUDGET ((size_t)64 << 20)
#define KVS_DEFAULT_QD 8
#define KVS_RING 3 /* decoded spans: one held by the reader, two ahead */

enum { RING_FREE, RING_BUSY, RING_READY, RING_HELD };

struct kvs_ring_slot {
    float *k, *v;          /* (tile_tokens, kv_dim) each */
    int64_t tile;          /* tile index it holds (READY/HELD) */
    int state;             /* RING_* */
    int rc;                /* 0, or the error producing this tile met */
};

struct kvs_rec {
    uint64_t off;   /* record start, multiple of IO_ALIGN */
    uint32_t size;  /* record bytes read back (header + payload, aligned) */
    uint32_t n;     /* tokens usable from it (tail refs during replay) */
};

struct kvs_layer {
    int64_t n_tokens;      /* tokens appended (sealed + tail) */
    /* RAM backing */
    uint8_t *ram;          /* (ram_cap, tile_raw) tiles */
    int64_t ram_cap;
    /* DISK backing */
    uint8_t *tail;         /* (tile_raw): T K rows, then T V rows */
    int tail_dirty;        /* tail changed since its last tail record */
    struct kvs_rec *idx;   /* (idx_cap) sealed tiles: tile i at idx[i] */
    int64_t idx_cap;
    struct kvs_rec tail_ref; /* replay: record holding the tail (n = 0: none) */
    int64_t replay_tiles;  /* replay: full-tile records in the file */
    /* key summaries of full tiles (both backings), packed (sum_pack),
     * capacity = idx_cap (disk) or ram_cap (RAM) */
    uint8_t *sum;          /* (cap, sum_rb) */
    uint8_t *sum_ok;       /* (cap) 1: sum row i is tile i's summary */
};

struct kvs {
    struct kvs_config cfg;
    size_t row_bytes;      /* one packed row of kv_dim elements */
    size_t tile_raw;       /* 2 * T * row_bytes */
    struct kvs_layer *layers; /* (n_layer) */
    float *span_k, *span_v; /* (T, kv_dim) each: unpacked span */
    struct tile_pairing pair; /* summaries */
    size_t sum_n;          /* floats per summary: kv_dim/2 */
    size_t sum_rb;         /* bytes of a packed summary in RAM */
    float *sum_row;        /* (kv_dim) summarize scratch */
    float *sum_f;          /* (sum_n) one summary as floats */
    uint64_t bytes_read;   /* kvs_bytes_read */
    int file_version;      /* disk: of the file header on disk */

    /* disk */
    io_file *io;
    int io_info;
    uint64_t file_end;     /* next record offset */
    uint64_t peak_end;     /* largest file_end since open */
    uint64_t tag;          /* kvs_reset's label (0: none) */
    uint64_t tag_end;      /* end of the TAG record (file header end: none) */
    uint64_t sync_end;     /* end of this handle's last SYNC marker (0: none) */
    uint64_t tails_off;    /* start of the tail records that sync wrote */
    int unsynced;          /* records written since the last kvs_sync */
    size_t rec_cap;        /* slot bytes: aligned tile_encode_bound(T) */
    uint8_t *wbuf;         /* (rec_cap) aligned: records to write/replay */
    uint8_t *raw;          /* (tile_raw) decoded raw tile */
    uint8_t *scratch;      /* (tile_scratch_bound) codec scratch */
    int window;            /* reads in flight at most */
    int *slot_res;         /* (window) completion result, INT32_MIN: pending */

    /* decode-ahead helper (disk); mu guards everything below and idx growth */
    pthread_t th;
    int th_started, sync_init;
    pthread_mutex_t mu;
    pthread_cond_t cv_helper; /* to the helper: job, free slot, cancel, quit */
    pthread_cond_t cv_reader; /* to the reader: slot ready, job over */
    int job, cancel, quit;
    int h_layer;           /* job: layer, tiles [0, h_tiles), tokens < h_end */
    int64_t h_tiles, h_end;
    struct kvs_ring_slot ring[KVS_RING];
    int held;              /* ring slot the reader holds, -1: none */
    uint8_t *h_raw, *h_scratch; /* the helper's decode buffers */

    /* read state */
    int rd_layer;          /* -1: no read in progress */
    int64_t rd_end;        /* tokens to stream */
    int64_t rd_tiles;      /* tiles [0, rd_tiles) come from disk */
    int rd_err;            /* sticky error of this read */
    const int64_t *rd_list; /* tiles to stream (NULL: every tile) */
    int64_t rd_n;          /* entries of the stream (list + remainder) */
    int64_t rd_nlist;      /* entries of rd_list */
    int64_t rd_j;          /* next entry */
    int64_t rd_disk;       /* entries [0, rd_disk) come from disk */
    const int64_t *h_list; /* the helper's copy of rd_list, rd_nlist (mu) */
    int64_t h_nlist;
};

static size_t align_up(size_t n) { return (n + IO_ALIGN - 1) / IO_ALIGN * IO_ALIGN; }

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
    }
    return 0;
}

/* ---- disk: records ---------------------------------------------------- */

/* Write wbuf[0, len) as a record at the file end. */
static int kvs_put_record(kvs *s, size_t len, struct kvs_rec *rec)
{
    size_t size = align_up(len);
    memset(s->wbuf + len, 0, size - len);
    int rc = io_write(s->io, s->wbuf, size, s->file_end);
    if (rc < 0) return rc;
    if (rec) {
        rec->off = s->file_end;
        rec->size = (uint32_t)size;
    }
    s->file_end += size;
    s->peak_end = KVT_MAX(s->peak_end, s->file_end);
    s->unsynced = 1;
    return 0;
}

/* Cut the file back to END (< file_end) and make the cut durable before
 * anything is written past it: records beyond END must never come back
 * after a crash, since new records will be written over their place. */
static int kvs_cut_file(kvs *s, uint64_t end)
{
    int rc = io_truncate(s->io, end);
    if (rc == 0 && !s->cfg.ephemeral) rc = io_fsync(s->io);
    if (rc < 0) return rc;
    s->file_end = end;
    s->sync_end = 0;
    return 0;
}

static int kvs_put_marker(kvs *s, uint32_t kind, int64_t pos0)
{
    struct tile_hdr h;
    memset(&h, 0, sizeof h);
    h.layer = kind;
    h.pos0 = (uint64_t)pos0;
    h.flags = TILE_F_MARK;
    tile_hdr_seal(&h);
    memcpy(s->wbuf, &h, sizeof h);
    return kvs_put_record(s, sizeof h, NULL);
}

/* Encode the first n tokens of layer L's tail as a record at pos0. */
static int kvs_put_tile(kvs *s, int layer, int64_t pos0, int n, uint32_t flags,
                        struct kvs_rec *rec)
{
    struct kvs_layer *ly = &s->layers[layer];
    struct tile_hdr h;
    memset(&h, 0, sizeof h);
    h.type = (uint8_t)s->cfg.type;
    h.codec = (uint8_t)s->cfg.codec;
    h.layer = (uint32_t)layer;
    h.n = (uint32_t)n;
    h.pos0 = (uint64_t)pos0;
    h.kv_dim = (uint32_t)s->cfg.kv_dim;
    h.flags = flags;
    size_t half = (size_t)s->cfg.tile_tokens * s->row_bytes;
    int64_t len = tile_encode(&h, ly->tail, ly->tail + half, s->wbuf,
                              s->rec_cap, s->scratch,
                              tile_scratch_bound(s->cfg.type, s->cfg.kv_dim,
                                                 s->cfg.tile_tokens));
    if (len < 0) return (int)len;
    int rc = kvs_put_record(s, (size_t)len, rec);
    if (rc == 0 && rec) rec->n = (uint32_t)n;
    return rc;
}

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
static int kvs_idx_grow(kvs *s, struct kvs_layer *ly, int64_t cap)
{
    int rc = kvs_sum_grow(s, ly, ly->idx_cap, cap);
    if (rc < 0) return rc;
    struct kvs_rec *p = realloc(ly->idx, (size_t)cap * sizeof *p);
    if (!p) return -ENOMEM;
    ly->idx = p;
    ly->idx_cap = cap;
    return 0;
}

static int kvs_idx_reserve(kvs *s, struct kvs_layer *ly, int64_t n)
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

static int kvs_write_file_hdr(kvs *s);

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
    if (s->th_started) pthread_mutex_lock(&s->mu); /* the helper reads idx */
    int rc = kvs_idx_reserve(s, ly, ti + 1);
    if (s->th_started) pthread_mutex_unlock(&s->mu);
    if (rc < 0) return rc;
    kvs_summarize(s, ly, ti, ly->tail);
    struct kvs_rec rec;
    rc = kvs_put_tile(s, layer, ti * T, T, 0, &rec);
    if (rc < 0) return rc;
    if (s->th_started) pthread_mutex_lock(&s->mu);
    ly->idx[ti] = rec;
    if (s->th_started) pthread_mutex_unlock(&s->mu);
    ly->tail_dirty = 0;
    return kvs_put_sum(s, layer, ti); /* a failure leaves it missing on disk */
}

/* Tokens of layer L sealed on disk (the tail holds the rest). */
static int64_t kvs_sealed(const kvs *s, const struct kvs_layer *ly)
{
    const int T = s->cfg.tile_tokens;
    int64_t full = ly->n_tokens / T * T;
    /* a full tail not yet written (write failed) is still the tail */
    if (full == ly->n_tokens && full > 0 && ly->tail_dirty) full -= T;
    return full;
}

/* Read record REC (layer L, tile at pos0) and decode its raw bytes into
 * s->raw. @return tokens in the record or < 0. */
static int kvs_load_raw(kvs *s, const struct kvs_rec *rec, int layer,
                        int64_t pos0)
{
    int64_t got = io_read(s->io, s->wbuf, rec->size, rec->off);
    if (got < 0) return (int)got;
    struct tile_hdr h;
    int64_t rc = tile_decode_raw(s->wbuf, (size_t)got, s->raw, s->tile_raw,
                                 s->scratch,
                                 tile_scratch_bound(s->cfg.type, s->cfg.kv_dim,
                                                    s->cfg.tile_tokens),
                                 &h);
    if (rc < 0) return (int)(rc == KVT_EFORMAT && (size_t)got < rec->size
                                 ? KVT_ETRUNC : rc);
    if (h.layer != (uint32_t)layer || h.pos0 != (uint64_t)pos0 ||
        h.type != s->cfg.type || h.kv_dim != (uint32_t)s->cfg.kv_dim)
        return KVT_EFORMAT;
    return (int)h.n;
}

/* Copy n tokens of s->raw (a record of rec_n tokens) into L's tail. */
static void kvs_raw_to_tail(kvs *s, struct kvs_layer *ly, int rec_n, int n)
{
    size_t half = (size_t)s->cfg.tile_tokens * s->row_bytes;
    memcpy(ly->tail, s->raw, (size_t)n * s->row_bytes);
    memcpy(ly->tail + half, s->raw + (size_t)rec_n * s->row_bytes,
           (size_t)n * s->row_bytes);
}

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
    struct tile_hdr h;
    int64_t rc = tile_decode_raw(io_slot(s->io, slot), (size_t)res, s->h_raw,
                                 s->tile_raw, s->h_scratch,
                                 tile_scratch_bound(s->cfg.type, s->cfg.kv_dim,
                                                    s->cfg.tile_tokens),
                                 &h);
    if (rc < 0) return (int)rc;
    const int T = s->cfg.tile_tokens;
    if (h.layer != (uint32_t)layer || h.pos0 != (uint64_t)(ti * T) ||
        h.n != (uint32_t)T || h.type != s->cfg.type ||
        h.kv_dim != (uint32_t)s->cfg.kv_dim)
        return KVT_EFORMAT;
    tile_unpack(s->cfg.type, s->cfg.kv_dim, s->h_raw, n, r->k);
    tile_unpack(s->cfg.type, s->cfg.kv_dim, s->h_raw + (size_t)T * s->row_bytes,
                n, r->v);
    return 0;
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

static int kvs_helper_start(kvs *s)
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
static void kvs_helper_stop(kvs *s)
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

/* ---- disk: open and replay -------------------------------------------- */

static int kvs_write_file_hdr(kvs *s)
{
    struct kvs_file_hdr fh;
    memset(&fh, 0, sizeof fh);
    fh.magic = KVS_FILE_MAGIC;
    fh.version = KVS_FILE_VERSION;
    fh.hdr_size = sizeof fh;
    fh.n_layer = (uint32_t)s->cfg.n_layer;
    fh.kv_dim = (uint32_t)s->cfg.kv_dim;
    fh.tile_tokens = (uint32_t)s->cfg.tile_tokens;
    fh.type = (uint8_t)s->cfg.type;
    fh.codec = (uint8_t)s->cfg.codec;
    memcpy(fh.model_fp, s->cfg.model_fp, sizeof fh.model_fp);
    fh.hdr_xxh = tile_hash(&fh, offsetof(struct kvs_file_hdr, hdr_xxh));
    memset(s->wbuf, 0, KVS_FILE_HDR_BYTES);
    memcpy(s->wbuf, &fh, sizeof fh);
    int rc = io_write(s->io, s->wbuf, KVS_FILE_HDR_BYTES, 0);
    if (rc < 0) return rc;
    s->file_end = s->peak_end = s->tag_end = KVS_FILE_HDR_BYTES;
    s->file_version = KVS_FILE_VERSION;
    return 0;
}

static int kvs_check_file_hdr(kvs *s, uint64_t size)
{
    if (size < sizeof(struct kvs_file_hdr)) return KVT_ETRUNC;
    int64_t got = io_read(s->io, s->wbuf, KVS_FILE_HDR_BYTES, 0);
    if (got < 0) return (int)got;
    if ((size_t)got < sizeof(struct kvs_file_hdr)) return KVT_ETRUNC;
    struct kvs_file_hdr fh;
    memcpy(&fh, s->wbuf, sizeof fh);
    if (fh.magic != KVS_FILE_MAGIC) return KVT_EFORMAT;
    if (fh.version != 2 && fh.version != KVS_FILE_VERSION) return KVT_EVERSION;
    s->file_version = fh.version;
    if (fh.hdr_size != sizeof fh) return KVT_EFORMAT;
    if (tile_hash(&fh, offsetof(struct kvs_file_hdr, hdr_xxh)) != fh.hdr_xxh)
        return KVT_ECHECKSUM;
    if (memcmp(fh.model_fp, s->cfg.model_fp, sizeof fh.model_fp) != 0)
        return KVT_EMODEL;
    if (fh.n_layer != (uint32_t)s->cfg.n_layer ||
        fh.kv_dim != (uint32_t)s->cfg.kv_dim)
        return KVT_EFORMAT;
    if (fh.tile_tokens != (uint32_t)s->cfg.tile_tokens ||
        fh.type != (uint8_t)s->cfg.type)
        return KVT_EUNSUPP; /* reopen with the tile size and type it has */
    if (size < KVS_FILE_HDR_BYTES) return KVT_ETRUNC;
    return 0;
}

/* Replay: truncate layer L (index and tail ref) to n tokens. */
static void kvs_replay_cut(kvs *s, struct kvs_layer *ly, int64_t n)
{
    const int T = s->cfg.tile_tokens;
    if (n >= ly->n_tokens) return;
    int64_t full = ly->n_tokens - ly->tail_ref.n; /* sealed tokens */
    if (n >= full) {
        ly->tail_ref.n = (uint32_t)(n - full);
    } else {
        int64_t ti = n / T;
        ly->tail_ref = ly->idx[ti];
        ly->tail_ref.n = (uint32_t)(n % T);
    }
    ly->n_tokens = n;
}

/* The log ends before OFF - IO_ALIGN: @return 0 if no good record header
 * starts at a 4 KiB boundary in [off, size), KVT_ECHECKSUM if one does
 * (records after a damaged one: not a torn tail), or < 0 on a read error. */
static int kvs_good_after(kvs *s, uint64_t off, uint64_t size)
{
    for (; off + sizeof(struct tile_hdr) <= size; off += IO_ALIGN) {
        int64_t got = io_read(s->io, s->wbuf, IO_ALIGN, off);
        if (got < 0) return (int)got;
        struct tile_hdr h;
        if ((size_t)got < sizeof h) return 0;
        memcpy(&h, s->wbuf, sizeof h);
        if (tile_hdr_check(&h) == 0) return KVT_ECHECKSUM;
    }
    return 0;
}

/* Read the header block at off into wbuf. @return 1 (a record header:
 * *h filled), 0 (end of log here), or < 0. A header that is not a record
 * or fails its checksum is the end of the log only if no good record
 * header follows it (a torn last write); otherwise the file is damaged in
 * the middle and the open fails with KVT_ECHECKSUM, cutting nothing. */
static int kvs_replay_hdr(kvs *s, uint64_t off, uint64_t size,
                          struct tile_hdr *h)
{
    if (off + sizeof *h > size) return 0;
    int64_t got = io_read(s->io, s->wbuf, IO_ALIGN, off);
    if (got < 0) return (int)got;
    if ((size_t)got < sizeof *h) return 0;
    memcpy(h, s->wbuf, sizeof *h);
    int rc = tile_hdr_check(h);
    if (rc < 0) return kvs_good_after(s, off + IO_ALIGN, size);
    if (off + sizeof *h + h->enc_size > size) return 0; /* cut short */
    return 1;
}

/* A summary record (payload at PAYLOAD, NULL if it failed its checksum):
 * the summary of L's full tile at pos0 if L has that tile. */
static int kvs_replay_sum(kvs *s, const struct tile_hdr *h, const void *payload)
{
    const int T = s->cfg.tile_tokens;
    if (h->layer >= (uint32_t)s->cfg.n_layer || h->kv_dim != (uint32_t)s->cfg.kv_dim ||
        h->n != (uint32_t)T || h->pos0 % (uint64_t)T != 0 || h->pos0 > INT64_MAX)
        return 0;
    struct kvs_layer *ly = &s->layers[h->layer];
    int64_t full = ly->n_tokens - ly->tail_ref.n;
    if (!payload || (int64_t)h->pos0 + T > full) return 1; /* ignored */
    int64_t ti = (int64_t)h->pos0 / T;
    int rc = tile_sum_decode(h, payload, &s->pair, s->sum_f);
    if (rc == 1) kvs_sum_pack(s->cfg.kv_dim, s->pair.head_dim, s->sum_f, ly->sum + (size_t)ti * s->sum_rb);
    ly->sum_ok[ti] = rc == 1;
    return 1;
}

/* Apply one record; @return 1 applied, 0 stop the scan here, < 0 error.
 * PAYLOAD: a summary record's verified payload (NULL otherwise). */
static int kvs_replay_one(kvs *s, const struct tile_hdr *h, uint64_t off,
                          const void *payload)
{
    const int T = s->cfg.tile_tokens;
    if (h->flags & TILE_F_SUM) return kvs_replay_sum(s, h, payload);
    if (h->flags & TILE_F_MARK) {
        if (h->layer == TILE_MARK_TRUNC) {
            if (h->pos0 > INT64_MAX) return 0;
            for (int l = 0; l < s->cfg.n_layer; l++)
                kvs_replay_cut(s, &s->layers[l], (int64_t)h->pos0);
            return 1;
        }
        if (h->layer == TILE_MARK_TAG) {
            for (int l = 0; l < s->cfg.n_layer; l++)
                kvs_replay_cut(s, &s->layers[l], 0);
            s->tag = h->pos0;
            s->tag_end = off + IO_ALIGN;
            return 1;
        }
        return h->layer == TILE_MARK_SYNC;
    }
    if (h->layer >= (uint32_t)s->cfg.n_layer || h->type != s->cfg.type ||
        h->kv_dim != (uint32_t)s->cfg.kv_dim || h->n > (uint32_t)T ||
        h->pos0 % (uint64_t)T != 0)
        return 0;
    int tail = (h->flags & TILE_F_TAIL) != 0;
    if (tail == (h->n == (uint32_t)T)) return 0;
    struct kvs_layer *ly = &s->layers[h->layer];
    int64_t full = ly->n_tokens - ly->tail_ref.n;
    if (h->pos0 > (uint64_t)full) return 0; /* a gap: not written by us */
    kvs_replay_cut(s, ly, (int64_t)h->pos0);
    struct kvs_rec rec = { off, (uint32_t)align_up(sizeof *h + h->enc_size),
                           h->n };
    if (tail) {
        ly->tail_ref = rec;
    } else {
        int64_t ti = (int64_t)h->pos0 / T;
        int rc = kvs_idx_reserve(s, ly, ti + 1);
        if (rc < 0) return rc;
        ly->idx[ti] = rec;
        ly->sum_ok[ti] = 0;
        ly->tail_ref.n = 0;
    }
    ly->n_tokens = (int64_t)h->pos0 + h->n;
    return 1;
}

static int kvs_replay(kvs *s)
{
    uint64_t size;
    int rc = io_size(s->io, &size);
    if (rc < 0) return rc;
    rc = kvs_check_file_hdr(s, size);
    if (rc < 0) return rc;
    /* pass 1: headers only, to find the end of the last SYNC marker and
     * count each layer's full-tile records (at least its live tiles: the
     * index and summaries are sized once, not grown by doubling) */
    uint64_t off = KVS_FILE_HDR_BYTES, synced = off;
    struct tile_hdr h;
    while ((rc = kvs_replay_hdr(s, off, size, &h)) == 1) {
        off += align_up(sizeof h + h.enc_size);
        if ((h.flags & TILE_F_MARK) && h.layer == TILE_MARK_SYNC) synced = off;
        if (!(h.flags & (TILE_F_MARK | TILE_F_SUM | TILE_F_TAIL)) &&
            h.layer < (uint32_t)s->cfg.n_layer)
            s->layers[h.layer].replay_tiles++;
    }
    if (rc < 0) return rc;
    for (int l = 0; l < s->cfg.n_layer; l++) {
        struct kvs_layer *ly = &s->layers[l];
        int64_t n = ly->replay_tiles;
        if (n > ly->idx_cap && (rc = kvs_idx_grow(s, ly, n)) < 0) return rc;
    }
    /* pass 2: apply; verify payloads past the last sync, and summaries' */
    off = KVS_FILE_HDR_BYTES;
    s->tag_end = off;
    while ((rc = kvs_replay_hdr(s, off, size, &h)) == 1) {
        size_t len = align_up(sizeof h + h.enc_size);
        int sum = (h.flags & TILE_F_SUM) != 0, good = 1;
        if ((off >= synced || sum) && h.enc_size > 0) {
            if (len > s->rec_cap) break;
            int64_t got = io_read(s->io, s->wbuf, len, off);
            if (got < 0) return (int)got;
            good = (size_t)got >= sizeof h + h.enc_size &&
                   tile_payload_check(&h, s->wbuf + sizeof h) == 0;
            if (!good && off >= synced) {
                /* torn record: the log ends before it, unless good
                 * records follow (damage in the middle: refuse) */
                rc = kvs_good_after(s, off + len, size);
                break;
            }
        }
        rc = kvs_replay_one(s, &h, off, sum && good ? s->wbuf + sizeof h : NULL);
        if (rc < 0) return rc;
        if (rc == 0) break;
        off += len;
    }
    if (rc < 0) return rc;
    s->file_end = s->peak_end = off;
    if (size != off) {
        rc = io_truncate(s->io, off);
        if (rc < 0) return rc;
    }
    /* tails: load their tokens into RAM */
    for (int l = 0; l < s->cfg.n_layer; l++) {
        struct kvs_layer *ly = &s->layers[l];
        if (ly->tail_ref.n == 0) continue;
        int64_t pos0 = ly->n_tokens - ly->tail_ref.n;
        int n = kvs_load_raw(s, &ly->tail_ref, l, pos0);
        if (n < 0) return n;
        if ((uint32_t)n < ly->tail_ref.n) return KVT_EFORMAT;
        kvs_raw_to_tail(s, ly, n, (int)ly->tail_ref.n);
        ly->tail_dirty = 0;
        ly->tail_ref.n = 0;
    }
    return 0;
}

static int kvs_open_disk(kvs *s)
{
    const struct kvs_config *c = &s->cfg;
    size_t budget = c->ram_budget_bytes ? c->ram_budget_bytes : KVS_DEFAULT_BUDGET;
    int qd = c->queue_depth > 0 ? c->queue_depth : KVS_DEFAULT_QD;
    s->rec_cap = align_up(tile_encode_bound(c->type, c->kv_dim, c->tile_tokens));
    size_t w = budget / s->rec_cap;
    s->window = (int)KVT_MAX((size_t)1, KVT_MIN((size_t)qd, w));
    size_t scratch = tile_scratch_bound(c->type, c->kv_dim, c->tile_tokens);
    s->wbuf = io_alloc(s->rec_cap);
    s->raw = malloc(s->tile_raw);
    s->scratch = malloc(scratch);
    s->slot_res = calloc((size_t)s->window, sizeof *s->slot_res);
    if (!s->wbuf || !s->raw || !s->scratch || !s->slot_res) return -ENOMEM;
    for (int l = 0; l < c->n_layer; l++) {
        s->layers[l].tail = malloc(s->tile_raw);
        if (!s->layers[l].tail) return -ENOMEM;
    }
    size_t span = (size_t)c->tile_tokens * (size_t)c->kv_dim * sizeof(float);
    s->h_raw = malloc(s->tile_raw);
    s->h_scratch = malloc(scratch);
    if (!s->h_raw || !s->h_scratch) return -ENOMEM;
    for (int r = 0; r < KVS_RING; r++) {
        s->ring[r].k = malloc(span);
        s->ring[r].v = malloc(span);
        if (!s->ring[r].k || !s->ring[r].v) return -ENOMEM;
    }
    struct io_opts o = { c->io, IO_DIRECT | IO_LOCK | (c->reopen ? 0 : IO_CREATE | IO_TRUNC),
                         s->window, s->rec_cap };
    int rc = io_open(c->path, &o, &s->io, &s->io_info);
    if (rc < 0) return rc;
    rc = c->reopen ? kvs_replay(s) : kvs_write_file_hdr(s);
    if (rc < 0) return rc;
    return kvs_helper_start(s);
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
    s->span_k = malloc(span * sizeof(float));
    s->span_v = malloc(span * sizeof(float));
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
    kvs_helper_stop(s);
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
    free(s->h_raw);
    free(s->h_scratch);
    for (int r = 0; r < KVS_RING; r++) {
        free(s->ring[r].k);
        free(s->ring[r].v);
    }
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

int kvs_read_begin(kvs *s, int layer, int64_t n_tokens)
{
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
    if (s->th_started) {
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
    s->rd_layer = -1;
}

uint64_t kvs_bytes_read(const kvs *s) { return s->bytes_read; }

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
