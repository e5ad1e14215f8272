/* kvs.h - the KV store attention reads from, in RAM or as tiles on disk.
 *
 * Attention never knows where K/V live: it appends the K (pre-rotation)
 * and V rows of each layer as they are computed and streams them back as
 * spans. Spans are cut at tile boundaries (pos0 a multiple of tile_tokens,
 * the last span may be the partial tail), in the same way for every
 * backing, so a RAM store and a disk store with a lossless codec give
 * bit-identical spans and therefore bit-identical attention.
 *
 * Shapes: one token's K is kv_dim floats (n_kv_head x head_dim, head-major),
 * same for V. k/v arguments and span pointers are (n, kv_dim) row-major f32;
 * the tile element type (f32, f16, bf16, q8_0) is how they are kept.
 *
 * Lifetime: kvs_open .. kvs_close; kvs_open allocates everything (tail
 * buffers, decode pool, I/O buffers); append and read allocate nothing.
 */
#ifndef KVT_KVS_H
#define KVT_KVS_H

#include <stddef.h>
#include <stdint.h>

typedef struct kvs kvs;

enum kvs_backing { KVS_RAM, KVS_DISK };
#define KVS_MAX_QUEUE_DEPTH 1024 /* largest kvs_config.queue_depth accepted */
/* The defaults every front end (CLI, library) offers. */
#define KVS_DEFAULT_QUEUE_DEPTH 8
#define KVS_DEFAULT_TILE_TOKENS 256
enum kvs_type { KVS_F32, KVS_F16, KVS_BF16, KVS_Q8_0, KVS_NTYPES };

struct kvs_config {
    int n_layer;
    int kv_dim;              /* floats per token, K and V each */
    int tile_tokens;         /* tokens per tile (> 0) */
    int backing;             /* enum kvs_backing */
    int type;                /* enum kvs_type */
    int codec;               /* kvstore codec id (tile.h); RAM: ignored */
    int io;                  /* io backend id (io.h); RAM: ignored */
    int queue_depth;         /* I/O requests in flight (disk) */
    size_t ram_budget_bytes; /* disk: bound on the store's buffers (see
                                kvs_ram_min); 0 = reads in flight up to
                                64 MiB of records, no bound asked */
    const char *path;        /* cache file (disk) */
    int reopen;              /* 1: open an existing cache at path */
    int ephemeral;           /* disk: the file will never be reopened (a
                                temporary cache): cuts skip their fsync */
    uint8_t model_fp[32];    /* binds the cache to the model */
    /* key summaries (tile.h): the rotation pairs of the model */
    int head_dim;            /* channels per KV head; 0: kv_dim (one head) */
    int neox_rot;            /* 0: adjacent pairs; R: NeoX pairs of the first R */
};

/* One run of consecutive tokens of one layer; valid through the next
 * kvs_read_next (the store keeps the last two spans, so a caller may work
 * on one while the next is read), until the one after, kvs_read_end or an
 * append on the same store. */
struct kvs_span {
    int64_t pos0;            /* first token */
    int n;                   /* tokens */
    const float *k, *v;      /* (n, kv_dim) each */
};

/* Errors: -errno from I/O, -EBUSY (another open handle, in this or another
 * process, holds the file: disk files are single-writer, flock), KVT_EMODEL
 * (fingerprint differs), KVT_EFORMAT,
 * KVT_ECHECKSUM, KVT_EVERSION, KVT_EUNSUPP. */
int kvs_open(const struct kvs_config *cfg, kvs **out);
void kvs_close(kvs *s); /* NULL is a no-op; flushes; keeps the file */

/* The disk backing's RAM, apart from the per-tile index and summaries
 * (16 + kvs_summary_ram_bytes bytes per sealed tile and layer): one raw
 * tail tile per layer, the write buffer (one record), decode buffers for
 * the writer and the read helper, the span buffers, the decoded ring
 * (KVS_RING f32 spans of K and V), and the I/O window of W records in
 * flight. A non-zero ram_budget_bytes is a bound on all of it:
 * W = min(queue_depth, 1 + (budget - kvs_ram_min) / record); kvs_open
 * refuses a budget below kvs_ram_min (the fixed part and one record)
 * with KVT_ERANGE. kvs_ram_min of a RAM config is 0. */
size_t kvs_ram_min(const struct kvs_config *cfg);
/* What kvs_open allocated of that (disk), bytes; 0 for RAM. */
size_t kvs_ram_bytes(const kvs *s);

/* Disk backing: IO_INFO_* bits (io.h) of what io_open had to fall back
 * from (io_uring -> pread, O_DIRECT -> buffered), so the CLI can say so
 * once. 0 for RAM. */
int kvs_io_info(const kvs *s);

/* Tokens present in every layer. */
int64_t kvs_n_tokens(const kvs *s);
/* Tokens present in layer L. */
int64_t kvs_layer_tokens(const kvs *s, int layer);

/* Append n tokens to LAYER (k pre-rotation). Layers fill independently. */
int kvs_append(kvs *s, int layer, const float *k, const float *v, int n);

/* Forget tokens at and beyond n_tokens in every layer (0: empty store).
 * Disk: the file is cut back to the last record still needed (and the cut
 * fsynced before anything is written past it), so the space of what was
 * forgotten is reused; truncating to 0 leaves the file header and the tag. */
int kvs_truncate(kvs *s, int64_t n_tokens);

/* Empty the store and label what it will hold with TAG (callers use it to
 * bind a cache to one unit of work, e.g. a ppl window of one run). Disk:
 * the file is cut to its header and the tag written as its first record;
 * a reopened store reports the tag of its last reset (0: never reset). */
int kvs_reset(kvs *s, uint64_t tag);
uint64_t kvs_tag(const kvs *s);

/* Make everything appended so far durable (full tiles and, for the disk
 * backing, the partial tails). A sync that follows another with no tile
 * sealed in between replaces the previous sync's tail records in place of
 * appending new ones (the cut is fsynced first); a crash during it reopens
 * to an earlier prefix (the sealed tiles), never to other tokens.
 *
 * Disk bound: the file holds the header, the live tiles, at most one group
 * of superseded tail records per tile sealed since the last truncate, and
 * one marker per sync that sealed something: <= 2 x the live tiles + one
 * tile per layer + 4 KiB per marker. */
int kvs_sync(kvs *s);

/* Disk: bytes of the cache file now and the most it held since open
 * (logical size; the file is written densely, so allocation matches).
 * RAM: 0. */
int64_t kvs_file_bytes(const kvs *s, int64_t *peak);

/* Stream LAYER's tokens [0, n_tokens): begin, then next until it returns 0.
 * @return 1 with *sp filled, 0 at the end, < 0 on error. */
int kvs_read_begin(kvs *s, int layer, int64_t n_tokens);
/* The same, but only the full tiles tiles[0..n_sel) (strictly ascending,
 * each < n_tokens / tile_tokens), then the tokens after the last full
 * tile, [n_tokens / T * T, n_tokens), if any. The disk reads of the whole
 * selection are issued as fast as the I/O window allows. TILES must stay
 * valid and unchanged until kvs_read_end. */
int kvs_read_begin_tiles(kvs *s, int layer, int64_t n_tokens,
                         const int64_t *tiles, int64_t n_sel);
int kvs_read_next(kvs *s, struct kvs_span *sp);
void kvs_read_end(kvs *s);
/* Read ahead across layers: start streaming LAYER's tokens [0, n_tokens)
 * now (disk reads in flight, the ring decoded ahead) while the caller
 * still works on something else, e.g. the rest of the layer before. A
 * kvs_read_begin(s, layer, n_tokens) that follows takes it over where it
 * got (when no tile of the range was sealed in between); any other read,
 * and truncate, reset, sync's tail rewrite, summary rebuild and close,
 * drop it first. No read may be in progress. RAM: nothing to do.
 * @return 0, or KVT_ERANGE (n_tokens above the layer's tokens). */
int kvs_read_ahead(kvs *s, int layer, int64_t n_tokens);

/* Bytes of tiles handed out by reads so far (disk: records read, header
 * and padding included; RAM and the disk tail: raw packed bytes). */
uint64_t kvs_bytes_read(const kvs *s);

/* Where the disk reads' time went, summed since open (seconds of wall
 * time on the reading thread; RAM: zeros): waiting for reads to complete
 * (io_wait_s) and checking, decoding and unpacking tiles (decode_s).
 * tiles: tiles read from the disk. */
struct kvs_read_stats {
    int64_t tiles;
    double io_wait_s, decode_s;
};
void kvs_get_read_stats(const kvs *s, struct kvs_read_stats *st);

/* ---- key summaries (tile.h) ---------------------------------------------
 * Every full tile of a layer gets a summary when it fills (both
 * backings); the disk backing writes it as a summary record right after
 * the tile (floats, as tile.h specifies), and replays it on reopen. In RAM
 * each is packed to kvs_summary_ram_bytes: per KV head its largest pair
 * norm (a float) and one byte per pair, a code on a log scale (steps of
 * 2^(1/32)) rounded up, so an unpacked norm is never below the true one
 * and at most 2.2% above it (or 2^(-255/32) of the head's largest). */

/* LAYER's full tile TILE (< kvs_layer_tokens / tile_tokens): its summary,
 * kv_dim/2 floats (per KV head, head_dim/2 pair norms), unpacked into out.
 * @return 1, or 0 if it has none (a cache written before summaries, or a
 * record that failed its checksum; kvs_summary_rebuild makes them). */
int kvs_summary(const kvs *s, int layer, int64_t tile, float *out);
/* RAM per full tile and layer that the summaries take (packed row + its
 * presence flag), bytes. */
size_t kvs_summary_ram_bytes(const kvs *s);
/* The packed form, for one summary of kv_dim/2 floats (per KV head of
 * head_dim channels, head_dim/2 pair norms M[p] >= 0): per head, H = the
 * largest M[p] (a float; +inf if any is not finite), then per pair one byte
 * c, the largest code with H * 2^(-c/32) >= M[p] (float products, the
 * same when unpacked). kvs_sum_packed_bytes = 4 * heads + kv_dim/2. */
size_t kvs_sum_packed_bytes(int kv_dim, int head_dim);
void kvs_sum_pack(int kv_dim, int head_dim, const float *sum, uint8_t *out);
void kvs_sum_unpack(int kv_dim, int head_dim, const uint8_t *in, float *sum);
/* The summaries' pairing: channels per KV head, NeoX rotated channels
 * (0: adjacent pairs). */
void kvs_summary_pairing(const kvs *s, int *head_dim, int *neox_rot);
/* Full tiles without a summary, all layers. */
int64_t kvs_summary_missing(const kvs *s);
/* Read every full tile without a summary, summarize it and (disk) append
 * its summary record. @return tiles rebuilt, or < 0 (a read, checksum or
 * write error). */
int64_t kvs_summary_rebuild(kvs *s);

#endif
