/* batch_cache.h - persisted document caches of `kvtile batch`.
 *
 * A document cache is two files in the cache directory:
 *
 *   FP-HASH.kvt   the KV store of the document's tokens (kvs.h disk file)
 *   FP-HASH.kvm   the sidecar (below)
 *
 * FP is the model fingerprint (64 hex digits), HASH the XXH3-64 (16 hex
 * digits) of a key string (task, positions scheme and its parameters,
 * SelfExtend, cache element type, tile size, evaluation chunk: everything
 * the stored K/V bits depend on) followed by the document's token ids
 * (int32, host order). Same document + same settings = same file.
 *
 * Sidecar format (little-endian, 128-byte header then the NLLs):
 *    0 char     magic[4] "KVTM"
 *    4 uint32   version (1)
 *    8 uint8    model_fp[32]
 *   40 uint64   doc_hash        (HASH above)
 *   48 int64    doc_tokens      tokens of the document part
 *   56 int64    cached_tokens   tokens of the .kvt that were durable
 *                               (kvs_sync'ed) when this header was written
 *   64 int64    n_nll           per-token NLLs that follow (score task:
 *                               nll[p] = -log P(token p+1 | tokens 0..p))
 *   72 uint64   nll_xxh         XXH3-64 of the n_nll doubles
 *   80 uint8    reserved[40]    zero
 *  120 uint64   hdr_xxh         XXH3-64 of bytes 0..119
 *  128 double   nll[n_nll]
 * Update rule: the .kvt is synced first, then the NLLs are written and
 * fsynced, then the header and fsynced; so a header never claims more than
 * is durable. A header that fails its checks means "no progress".
 * "Last use" of a cache is the sidecar's mtime (touched on every use).
 */
#ifndef KVT_BATCH_CACHE_H
#define KVT_BATCH_CACHE_H

#include <stddef.h>
#include <stdint.h>

#define BC_MAGIC "KVTM"
#define BC_VERSION 1u
#define BC_HDR_BYTES 128

struct bc_hdr {
    uint8_t model_fp[32];
    uint64_t doc_hash;
    int64_t doc_tokens, cached_tokens, n_nll;
};

/* Encode / decode the 128-byte header. bc_hdr_decode: 0, or KVT_EFORMAT /
 * KVT_ECHECKSUM / KVT_EVERSION. The nll_xxh goes in and out separately. */
void bc_hdr_encode(const struct bc_hdr *h, uint64_t nll_xxh, uint8_t out[BC_HDR_BYTES]);
int bc_hdr_decode(const uint8_t in[BC_HDR_BYTES], struct bc_hdr *h, uint64_t *nll_xxh);

/* Read the header of the sidecar at PATH. @return 0, -errno, or a decode
 * error. */
int bc_read_hdr(const char *path, struct bc_hdr *h);

/* Read header and NLLs (a malloc'ed array in *nll, caller frees; NULL when
 * n_nll is 0). The NLLs are checked against nll_xxh and the file size.
 * @return 0, -errno, KVT_ETRUNC, KVT_ECHECKSUM, or a decode error. */
int bc_read(const char *path, struct bc_hdr *h, double **nll);

/* Write nll[from, h->n_nll) and then the header to the open sidecar FD,
 * each followed by fsync (the update rule above). @return 0 or -errno. */
int bc_write(int fd, const struct bc_hdr *h, const double *nll, int64_t from);

#endif
