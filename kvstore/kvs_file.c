/* kvs_file.c - the KV store's cache file: records, the file header, open
 * and replay (the format and its replay rule: tile.h). See kvs.c. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "io/io.h"
#include "base/kvt.h"
#include "kvstore/tile.h"
#include "kvstore/kvs_int.h"

/* ---- disk: records ---------------------------------------------------- */

/* Write wbuf[0, len) as a record at the file end. */
int kvs_put_record(kvs *s, size_t len, struct kvs_rec *rec)
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
int kvs_cut_file(kvs *s, uint64_t end)
{
    int rc = io_truncate(s->io, end);
    if (rc == 0 && !s->cfg.ephemeral) rc = io_fsync(s->io);
    if (rc < 0) return rc;
    s->file_end = end;
    s->sync_end = 0;
    return 0;
}

int kvs_put_marker(kvs *s, uint32_t kind, int64_t pos0)
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
int kvs_put_tile(kvs *s, int layer, int64_t pos0, int n, uint32_t flags,
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

/* Read record REC (layer L, tile at pos0) and decode its raw bytes into
 * s->raw. @return tokens in the record or < 0. */
int kvs_load_raw(kvs *s, const struct kvs_rec *rec, int layer,
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
void kvs_raw_to_tail(kvs *s, struct kvs_layer *ly, int rec_n, int n)
{
    size_t half = (size_t)s->cfg.tile_tokens * s->row_bytes;
    memcpy(ly->tail, s->raw, (size_t)n * s->row_bytes);
    memcpy(ly->tail + half, s->raw + (size_t)rec_n * s->row_bytes,
           (size_t)n * s->row_bytes);
}

/* ---- disk: open and replay -------------------------------------------- */

int kvs_write_file_hdr(kvs *s)
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

/* Every buffer kvs_open allocates for a disk store, but the I/O window
 * and the per-tile index and summaries (kvs.h, kvs_ram_min). */
size_t kvs_ram_fixed(const struct kvs_config *c)
{
    size_t raw = tile_raw_bytes(c->type, c->kv_dim, c->tile_tokens);
    size_t rec = align_up(tile_encode_bound(c->type, c->kv_dim, c->tile_tokens));
    size_t scratch = tile_scratch_bound(c->type, c->kv_dim, c->tile_tokens);
    size_t span = (size_t)c->tile_tokens * (size_t)c->kv_dim * sizeof(float);
    size_t small = ((size_t)c->kv_dim + (size_t)c->kv_dim / 2) * sizeof(float);
    return (size_t)c->n_layer * raw  /* tails */
           + rec + raw + scratch      /* write buffer; decode buffers */
           + 4 * span + small;        /* two spans of K and V; summary scratch */
}

int kvs_open_disk(kvs *s)
{
    const struct kvs_config *c = &s->cfg;
    int qd = c->queue_depth > 0 ? c->queue_depth : KVS_DEFAULT_QD;
    s->rec_cap = align_up(tile_encode_bound(c->type, c->kv_dim, c->tile_tokens));
    size_t fixed = kvs_ram_fixed(c);
    size_t w = c->ram_budget_bytes ? 1 + (c->ram_budget_bytes - fixed - s->rec_cap) / s->rec_cap
                                   : KVS_DEFAULT_BUDGET / s->rec_cap;
    s->window = (int)KVT_MAX((size_t)1, KVT_MIN((size_t)qd, w));
    s->ram_bytes = fixed + (size_t)s->window * s->rec_cap;
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
    struct io_opts o = { c->io, IO_DIRECT | IO_LOCK | (c->reopen ? 0 : IO_CREATE | IO_TRUNC),
                         s->window, s->rec_cap };
    int rc = io_open(c->path, &o, &s->io, &s->io_info);
    if (rc < 0) return rc;
    return c->reopen ? kvs_replay(s) : kvs_write_file_hdr(s);
}
