/* tile.h - one tile of the KV cache: format, element types, codecs.
 *
 * A tile holds K (pre-rotation) and V for a run of n consecutive tokens of
 * one layer, all KV heads. Elements are kept as one of enum kvs_type
 * (kvs.h); a token's K row is kv_dim elements, packed as tile_row_bytes().
 *
 * Raw layout (the bytes the codecs compress, the bytes checksummed as raw):
 *
 *   K rows: n x tile_row_bytes(type, kv_dim)   token-major
 *   V rows: n x tile_row_bytes(type, kv_dim)   token-major
 *
 * Row packing per type (little-endian; conversions of base/numfmt.h):
 *   KVS_F32   kv_dim x float32
 *   KVS_F16   kv_dim x IEEE half (round to nearest even)
 *   KVS_BF16  kv_dim x bfloat16 (round to nearest even, NaN kept quiet)
 *   KVS_Q8_0  kv_dim/32 blocks { half d; int8 q[32]; } = 34 bytes, as ggml
 *             Q8_0: d = max|x| / 127, q = round(x / d); kv_dim % 32 == 0.
 *
 * Encoded tile = header (struct tile_hdr, 64 bytes) + payload:
 *
 *   off size field
 *    0   4   magic      "KVTL" (0x4c54564b little-endian)
 *    4   2   version    TILE_VERSION
 *    6   1   type       enum kvs_type
 *    7   1   codec      enum tile_codec
 *    8   4   layer
 *   12   4   n          tokens in the tile (1 .. TILE_MAX_TOKENS)
 *   16   8   pos0       first token
 *   24   4   kv_dim     (1 .. TILE_MAX_KV_DIM)
 *   28   4   raw_size   2 * n * tile_row_bytes(type, kv_dim), must match
 *   32   4   enc_size   payload bytes following the header
 *   36   4   flags      TILE_F_* (kvs record kind)
 *   40   8   raw_xxh    XXH3_64bits(raw bytes)
 *   48   8   enc_xxh    XXH3_64bits(payload)
 *   56   8   hdr_xxh    XXH3_64bits(header bytes 0..55)
 *
 * Codecs (payload = codec(filter(raw))):
 *   TILE_NONE      payload = raw
 *   TILE_LZ4       LZ4 block of raw
 *   TILE_SHUF_LZ4  byte planes: byte j of every element together, then LZ4
 *   TILE_LZ4HC     LZ4HC block of raw (slow encode, archival; same decoder)
 *   TILE_XPOSE_LZ4 "channel planes": for K then V, each channel's values
 *                  across the n tokens are put side by side, each value
 *                  XORed with the same channel of the previous token (the
 *                  first token kept as is), then split into byte planes
 *                  (most significant plane = sign/exponent first), LZ4.
 *                  For Q8_0 the "element" is one byte of the 34-byte block.
 *   TILE_PLANE_HUF "byte planes, order-0 Huffman" (no LZ4): K's section,
 *                  then V's, each es plane records (es = element bytes: 4
 *                  f32, 2 f16/bf16, 1 q8_0 whose "element" is one byte of
 *                  the row), most significant byte first. A section is n
 *                  rows x m elements (m = row bytes / es); plane byte i =
 *                  byte of element i, token-major. Plane record:
 *                    u8 kind
 *                    kind 0 (raw):   n*m bytes
 *                    kind 1 (huf):   lens[128] | sizes u32 LE [4] | streams
 *                    kind 2 (huf+col): bias[m] | as kind 1; the coded
 *                                    bytes are byte - bias[column] (mod
 *                                    256), bias = the column's most
 *                                    frequent byte (only the top plane)
 *                  lens: 256 code lengths (0 = unused, 1..11), 4 bits
 *                  each, symbol 2i in the low nibble of byte i; canonical
 *                  codes (shorter first, then by symbol value), MSB-first
 *                  bit order. The plane's n*m symbols are cut into 4 runs
 *                  of q = ceil(n*m/4) (the last shorter), run j coded as
 *                  stream j of sizes[j] bytes, zero padded to a byte.
 *                  Decoding is table-driven, 4 streams interleaved; the
 *                  low mantissa planes, close to random, stay raw.
 *   TILE_DEDUP_HUF "exact row de-duplication, then plane-huf": K's
 *                  section, then V's (n rows of rb = tile_row_bytes bytes
 *                  each). Layer 0's K and V depend on the token id alone,
 *                  so a repeated token repeats its rows byte for byte.
 *                  Section:
 *                    u8 mode
 *                    mode 0 (no repeats): plane-huf section of the n rows
 *                    mode 1 (repeats):    bitmap[ceil(n/8)] | refs | plane-
 *                                         huf section of the u unique rows
 *                  bitmap: bit i (byte i/8, LSB first) set if row i equals
 *                  an earlier row; bits past n are zero. u = n - (bits
 *                  set). refs: one per set bit, in row order, w bytes LE
 *                  (w = 1 if u <= 256, 2 if u <= 65536, else 3): the
 *                  ordinal among the unique rows (0 .. u-1, counted in row
 *                  order) of the first earlier row equal to it, so always
 *                  below the count of unique rows before it. The unique
 *                  rows, in row order, form an u-row section coded exactly
 *                  as TILE_PLANE_HUF codes one (column bias only if u >=
 *                  16). The encoder picks mode 1 only when the repeated
 *                  rows' raw bytes exceed the bitmap and refs.
 *   A payload that would not shrink is stored as TILE_NONE (the header says
 *   which codec was actually used).
 *   The codecs sit behind one interface in a table indexed by enum
 *   tile_codec (kvstore/codec.h), one file per family: codec.c (none),
 *   codec_lz4.c (lz4, lz4hc, shuf-lz4, xpose-lz4), codec_huff.c
 *   (plane-huf), codec_dedup.c (dedup-huf). tile.c owns the header, the
 *   checksums and the stored-raw fallback.
 *
 * Cache file (kvs.c, backing KVS_DISK): one append-only file per sequence.
 *
 *   [0, 4096)   struct kvs_file_hdr (64 bytes, zero padded)
 *   then records, each starting at a multiple of 4096 (O_DIRECT), zero
 *   padded to a multiple of 4096:
 *     tile record    tile header + payload, n == tile_tokens, pos0 a
 *                    multiple of tile_tokens, flags 0
 *     tail record    same, flags TILE_F_TAIL, 0 < n < tile_tokens: the
 *                    partial tail at kvs_sync/kvs_close
 *     summary record header + payload, flags TILE_F_SUM (file version 3):
 *                    the key summary (below) of layer L's full tile at
 *                    pos0, written right after that tile's record; type
 *                    KVS_F32, codec TILE_NONE, n = tile_tokens, raw_size
 *                    = enc_size = tile_sum_bytes(kv_dim), raw_xxh =
 *                    enc_xxh
 *     marker         header only, flags TILE_F_MARK, n = sizes = 0,
 *                    layer = TILE_MARK_TRUNC (pos0 = token count the store
 *                    was truncated to), TILE_MARK_SYNC (everything
 *                    before it was fsynced) or TILE_MARK_TAG (pos0 = the
 *                    caller's tag; empties every layer: kvs_reset)
 *   Replay rule on reopen, in file order: a tile or tail record of layer L
 *   at pos0 first truncates L to pos0, then adds itself (a tail record
 *   becomes L's tail) without a summary; a summary record gives the full
 *   tile of L at pos0, if L has it, its summary (a summary whose payload
 *   fails its checksum, or whose pairing differs from the store's, is
 *   ignored: the tile is then "missing" one); a TRUNC marker truncates
 *   every layer; a TAG marker empties every layer and sets the tag. The
 *   scan stops
 *   at the first header that is missing, cut short, not a record or fails
 *   its checksum, and at a record after the last SYNC marker whose payload
 *   fails its checksum (payloads before it are verified when read:
 *   KVT_ECHECKSUM). Where it stops is the end of the log only if no good
 *   record header starts at a later 4 KiB boundary (a torn last write):
 *   the file is then cut back to the end of the last good record, so a
 *   crash at any moment reopens to the last complete tile of each layer
 *   (plus the tails of the last sync). If a good record follows, the file
 *   is damaged in the middle: the open fails with KVT_ECHECKSUM and cuts
 *   nothing.
 *   Space is reused, never left behind: kvs_truncate and kvs_reset cut the
 *   file back (ftruncate, then fsync, before the next write past the cut,
 *   so no stale record can follow the log end), and a sync with nothing
 *   sealed since the previous one cuts back over the previous sync's tails
 *   (kvs.h states the bound).
 *
 * Key summary of a tile (query-aware tile selection, attn.h): for each KV
 * head h and each rotation pair p of the head (head_dim/2 pairs), the
 * largest Euclidean norm over the tile's tokens of the stored pre-rotation
 * K pair (the values tile_unpack gives), computed in double and rounded up
 * to float. Rotation is a rotation (times the table's magnitude), so for
 * any position scheme |q_p . R k_p| <= |q_p| * mscale * max |k_p|: a bound
 * on every score in the tile, whatever positions the keys get later.
 * Layout: kv_dim/2 floats, index h * head_dim/2 + p. Pairing (struct
 * tile_pairing): neox_rot = 0: pair p = channels (2p, 2p+1) of the head
 * (llama); neox_rot = R > 0: pair p < R/2 = channels (p, p + R/2), pair
 * p >= R/2 = channels (R + 2(p - R/2), +1) (NeoX rotates the first R).
 * Payload on disk: u32 head_dim, u32 neox_rot, kv_dim/2 x f32 (LE).
 *
 * All functions work in caller buffers; none allocates, none prints.
 */
#ifndef KVT_TILE_H
#define KVT_TILE_H

#include <stddef.h>
#include <stdint.h>

#include "kvstore/kvs.h"

#define TILE_MAGIC 0x4c54564bu /* "KVTL" */
#define TILE_VERSION 1
#define TILE_MAX_TOKENS (1 << 20)
#define TILE_MAX_KV_DIM (1 << 16)
#define TILE_QK 32 /* Q8_0 block length (NUMFMT_QK8_0) */

enum tile_codec {
    TILE_NONE,
    TILE_LZ4,
    TILE_SHUF_LZ4,
    TILE_LZ4HC,
    TILE_XPOSE_LZ4,
    TILE_PLANE_HUF,
    TILE_DEDUP_HUF,
    TILE_NCODECS
};

/* Header flags, used by kvs to tell record kinds apart. */
enum {
    TILE_F_TAIL = 1u << 0, /* partial tail written at sync (superseded later) */
    TILE_F_MARK = 1u << 1, /* header-only marker (kvs truncate/sync), n = 0 */
    TILE_F_SUM = 1u << 2,  /* key summary of the full tile at pos0 */
};

#define TILE_MARK_TRUNC 0xffffffffu /* marker layer ids */
#define TILE_MARK_SYNC 0xfffffffeu
#define TILE_MARK_TAG 0xfffffffdu

/* Cache file header (first 64 bytes of the file; all integers LE). */
#define KVS_FILE_MAGIC 0x4353564bu /* "KVSC" */
#define KVS_FILE_VERSION 3 /* 2: TAG markers, cut-back truncation; 3: summary
                                records (2 is read, its summaries rebuilt) */
#define KVS_FILE_HDR_BYTES 4096   /* header block; records start here */
struct kvs_file_hdr {
    uint32_t magic;       /*  0 KVS_FILE_MAGIC */
    uint16_t version;     /*  4 KVS_FILE_VERSION */
    uint16_t hdr_size;    /*  6 sizeof(struct kvs_file_hdr) */
    uint32_t n_layer;     /*  8 */
    uint32_t kv_dim;      /* 12 */
    uint32_t tile_tokens; /* 16 */
    uint8_t type;         /* 20 enum kvs_type */
    uint8_t codec;        /* 21 codec at creation (records say their own) */
    uint8_t pad[2];       /* 22 zero */
    uint8_t model_fp[32]; /* 24 */
    uint64_t hdr_xxh;     /* 56 XXH3_64bits of bytes 0..55 */
};
_Static_assert(sizeof(struct kvs_file_hdr) == 64, "file header is 64 bytes");

struct tile_hdr {
    uint32_t magic;
    uint16_t version;
    uint8_t type;
    uint8_t codec;
    uint32_t layer;
    uint32_t n;
    uint64_t pos0;
    uint32_t kv_dim;
    uint32_t raw_size;
    uint32_t enc_size;
    uint32_t flags;
    uint64_t raw_xxh;
    uint64_t enc_xxh;
    uint64_t hdr_xxh;
};
_Static_assert(sizeof(struct tile_hdr) == 64, "tile header is 64 bytes on disk");

/* Names for the CLI ("none", "lz4", "shuf-lz4", "lz4hc", "xpose-lz4",
 * "plane-huf", "dedup-huf");
 * tile_codec_parse returns the id or KVT_ERANGE. */
const char *tile_codec_name(int codec);
int tile_codec_parse(const char *name);
const char *tile_type_name(int type);
int tile_type_parse(const char *name);

/* 0 if (type, kv_dim) can be stored, else KVT_ETYPE / KVT_ERANGE. */
int tile_check_dims(int type, int kv_dim);

/* Bytes of one packed row of kv_dim elements. */
size_t tile_row_bytes(int type, int kv_dim);
/* Raw bytes of a tile of n tokens: 2 * n * tile_row_bytes. */
size_t tile_raw_bytes(int type, int kv_dim, int n);
/* Largest encoded tile (header + payload) for n tokens, any codec. */
size_t tile_encode_bound(int type, int kv_dim, int n);
/* Scratch bytes tile_encode/tile_decode need for n tokens: the raw bytes
 * plus, for dedup-huf's encoder, a row hash table (about 24 bytes a row). */
size_t tile_scratch_bound(int type, int kv_dim, int n);

/* Pack n rows (n, kv_dim) f32 -> type; unpack type -> f32. */
void tile_pack(int type, int kv_dim, const float *src, int n, void *dst);
void tile_unpack(int type, int kv_dim, const void *src, int n, float *dst);

/* Encode: hdr supplies type, codec, layer, n, pos0, kv_dim, flags; the rest
 * is filled in. k_raw and v_raw are n packed rows each. Writes header +
 * payload to dst.
 * @return total bytes written (> 0), KVT_ERANGE if dst_cap or scratch_cap
 * is too small, KVT_ETYPE on a bad type/codec. */
int64_t tile_encode(const struct tile_hdr *hdr, const void *k_raw,
                    const void *v_raw, void *dst, size_t dst_cap,
                    void *scratch, size_t scratch_cap);

/* Validate a header read from disk (magic, version, type, codec, sizes,
 * header checksum); does not look at the payload.
 * @return 0, KVT_EFORMAT, KVT_EVERSION or KVT_ECHECKSUM. */
int tile_hdr_check(const struct tile_hdr *hdr);

/* Fill magic, version and hdr_xxh of a header built by hand (markers). */
void tile_hdr_seal(struct tile_hdr *hdr);

/* XXH3_64bits of n bytes (the hash every checksum here uses). */
uint64_t tile_hash(const void *p, size_t n);

/* 0 if XXH3(payload) equals hdr->enc_xxh, else KVT_ECHECKSUM. */
int tile_payload_check(const struct tile_hdr *hdr, const void *payload);

/* Decode src (header + payload, src_size bytes) into raw_out (packed K rows
 * then V rows, raw_cap >= hdr.raw_size). Checks the header, the payload
 * checksum and the raw checksum. hdr_out may be NULL.
 * @return raw bytes, or KVT_EFORMAT / KVT_EVERSION / KVT_ECHECKSUM /
 * KVT_ERANGE (buffer too small). */
int64_t tile_decode_raw(const void *src, size_t src_size, void *raw_out,
                        size_t raw_cap, void *scratch, size_t scratch_cap,
                        struct tile_hdr *hdr_out);

/* tile_decode_raw then unpack: k and v get (n, kv_dim) f32 rows each, with
 * room for k_cap/v_cap floats. @return n tokens, or an error as above. */
int tile_decode(const void *src, size_t src_size, float *k, size_t k_cap,
                float *v, size_t v_cap, void *raw, size_t raw_cap,
                void *scratch, size_t scratch_cap, struct tile_hdr *hdr_out);

/* The reading path's form of tile_decode: checks the header against
 * WANT (layer, pos0, n, type, kv_dim: KVT_EFORMAT if any differs) before
 * anything is written, then unpacks the first n_use (<= n) tokens of K
 * and V into k and v ((n_use, kv_dim) f32 each), verifying both
 * checksums as tile_decode does, in one pass over the bytes: each block
 * of rows is hashed and unpacked while it is in cache. Codec none reads
 * the payload in place (no copy into raw; its raw checksum must equal
 * its payload checksum, the bytes being the same). On an error k and v
 * hold garbage. @return 0 or the errors of tile_decode_raw. */
int tile_decode_unpack(const void *src, size_t src_size, const struct tile_hdr *want,
                       int n_use, float *k, float *v, void *raw, size_t raw_cap,
                       void *scratch, size_t scratch_cap);

/* Rotation pairing of the key summaries (see the top of this file). */
struct tile_pairing {
    int head_dim;  /* channels per KV head (even, divides kv_dim) */
    int neox_rot;  /* 0: adjacent pairs; R > 0: NeoX pairs of the first R */
};

/* 0 if the pairing fits kv_dim, else KVT_ERANGE. */
int tile_pairing_check(const struct tile_pairing *pr, int kv_dim);
/* Channels (within the head) of pair p. */
void tile_pair_channels(const struct tile_pairing *pr, int p, int *c0, int *c1);

/* Payload bytes of a summary record: 8 + 4 * kv_dim/2. */
size_t tile_sum_bytes(int kv_dim);

/* Summary of n packed K rows (type, kv_dim) into sum (kv_dim/2 floats);
 * row: room for kv_dim floats (scratch). */
void tile_summarize(int type, int kv_dim, const struct tile_pairing *pr,
                    const void *k_raw, int n, float *sum, float *row);

/* Summary record of the full tile (layer, pos0, n tokens) into dst
 * (header + payload). @return bytes written, KVT_ERANGE if dst_cap is
 * too small. */
int64_t tile_sum_encode(int layer, int64_t pos0, int n, int kv_dim,
                        const struct tile_pairing *pr, const float *sum,
                        void *dst, size_t dst_cap);
/* Read the payload of a summary record whose header H passed
 * tile_hdr_check: checksum, then pairing. @return 1 with sum filled
 * (kv_dim/2 floats), 0 if its pairing is not PR, KVT_ECHECKSUM. */
int tile_sum_decode(const struct tile_hdr *h, const void *payload,
                    const struct tile_pairing *pr, float *sum);

#endif
