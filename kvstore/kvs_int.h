/* kvs_int.h - the KV store's internals, shared by its files (kvs.c: the
 * store API, appends and summaries; kvs_file.c: the cache file's records,
 * open and replay; kvs_read.c: reads). Not a
 * public header: only kvstore/kvs*.c include it. */
#ifndef KVT_KVS_INT_H
#define KVT_KVS_INT_H

#include <stddef.h>
#include <stdint.h>

#include "io/io.h"
#include "kvstore/kvs.h"
#include "kvstore/tile.h"

#define KVS_DEFAULT_BUDGET ((size_t)64 << 20)
#define KVS_DEFAULT_QD 8
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
    float *span_k, *span_v; /* (2, T, kv_dim) each: the last two spans */
    int span_i;            /* which of the two the next span fills */
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
    uint8_t *raw;          /* (tile_raw) decoded raw tile (writer, replay, reads) */
    uint8_t *scratch;      /* (tile_scratch_bound) codec scratch (the same) */
    int window;            /* reads in flight at most */
    size_t ram_bytes;      /* kvs_ram_bytes */
    int *slot_res;         /* (window) completion result, INT32_MIN: pending */

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
    int64_t rd_sub;        /* entries [0, rd_sub) were submitted (disk) */
    int rd_sub_err;        /* the submit of entry rd_sub failed with it */
    /* read-ahead (kvs_read_ahead): its first reads are in flight */
    int ahead;             /* 1: a read-ahead was started */
    int ah_layer;
    int64_t ah_end, ah_disk; /* its n_tokens and disk entries */
    struct kvs_read_stats rst; /* kvs_get_read_stats */
};

static inline size_t align_up(size_t n) { return (n + IO_ALIGN - 1) / IO_ALIGN * IO_ALIGN; }

/* kvs.c */
/* Room for CAP sealed tiles in L's index and summaries (exactly). */
int kvs_idx_grow(kvs *s, struct kvs_layer *ly, int64_t cap);
/* Room for N sealed tiles, growing by doubling. */
int kvs_idx_reserve(kvs *s, struct kvs_layer *ly, int64_t n);
/* Tokens of layer L sealed on disk (the tail holds the rest). */
int64_t kvs_sealed(const kvs *s, const struct kvs_layer *ly);

/* kvs_file.c: records at the file end, all through s->wbuf */
/* Write wbuf[0, len) as a record at the file end (*rec: where, if REC). */
int kvs_put_record(kvs *s, size_t len, struct kvs_rec *rec);
/* Cut the file back to END and make the cut durable. */
int kvs_cut_file(kvs *s, uint64_t end);
/* A header-only marker record (TILE_MARK_*). */
int kvs_put_marker(kvs *s, uint32_t kind, int64_t pos0);
/* The first n tokens of L's tail as a record at pos0 (flags: TILE_F_*). */
int kvs_put_tile(kvs *s, int layer, int64_t pos0, int n, uint32_t flags, struct kvs_rec *rec);
/* Read record REC (layer L, tile at pos0), decoded into s->raw.
 * @return tokens in the record or < 0. */
int kvs_load_raw(kvs *s, const struct kvs_rec *rec, int layer, int64_t pos0);
/* Copy n tokens of s->raw (a record of rec_n tokens) into L's tail. */
void kvs_raw_to_tail(kvs *s, struct kvs_layer *ly, int rec_n, int n);
/* Write the file header (version KVS_FILE_VERSION) at offset 0. */
int kvs_write_file_hdr(kvs *s);
/* The disk backing's part of kvs_open: buffers, the file (replayed if
 * reopened). */
int kvs_open_disk(kvs *s);

/* kvs_file.c: the fixed part of kvs_ram_min (without the one record) */
size_t kvs_ram_fixed(const struct kvs_config *c);

/* kvs_read.c */
/* Drop a read-ahead, if any (its reads drained). */
void kvs_ahead_stop(kvs *s);

#endif
