/* batch_cache.c - document cache sidecars (see batch_cache.h). */
#include "tools/batch_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "base/kvt.h"

_Static_assert(sizeof(double) == 8, "doubles are 8 bytes");

static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

void bc_hdr_encode(const struct bc_hdr *h, uint64_t nll_xxh, uint8_t out[BC_HDR_BYTES])
{
    memset(out, 0, BC_HDR_BYTES);
    memcpy(out, BC_MAGIC, 4);
    uint32_t v = BC_VERSION;
    memcpy(out + 4, &v, 4);
    memcpy(out + 8, h->model_fp, 32);
    put64(out + 40, h->doc_hash);
    put64(out + 48, (uint64_t)h->doc_tokens);
    put64(out + 56, (uint64_t)h->cached_tokens);
    put64(out + 64, (uint64_t)h->n_nll);
    put64(out + 72, nll_xxh);
    put64(out + 120, XXH3_64bits(out, 120));
}

int bc_hdr_decode(const uint8_t in[BC_HDR_BYTES], struct bc_hdr *h, uint64_t *nll_xxh)
{
    if (memcmp(in, BC_MAGIC, 4) != 0) return KVT_EFORMAT;
    if (get64(in + 120) != XXH3_64bits(in, 120)) return KVT_ECHECKSUM;
    uint32_t v;
    memcpy(&v, in + 4, 4);
    if (v != BC_VERSION) return KVT_EVERSION;
    memcpy(h->model_fp, in + 8, 32);
    h->doc_hash = get64(in + 40);
    h->doc_tokens = (int64_t)get64(in + 48);
    h->cached_tokens = (int64_t)get64(in + 56);
    h->n_nll = (int64_t)get64(in + 64);
    if (nll_xxh) *nll_xxh = get64(in + 72);
    if (h->doc_tokens < 0 || h->cached_tokens < 0 || h->cached_tokens > h->doc_tokens ||
        h->n_nll < 0 || h->n_nll > h->doc_tokens)
        return KVT_EFORMAT;
    return 0;
}

/* pread all of [off, off+len): 0, KVT_ETRUNC at end of file, or -errno. */
static int read_all(int fd, void *buf, size_t len, off_t off)
{
    size_t got = 0;
    while (got < len) {
        ssize_t r = pread(fd, (char *)buf + got, len - got, off + (off_t)got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -errno;
        if (r == 0) return KVT_ETRUNC;
        got += (size_t)r;
    }
    return 0;
}

static int write_all(int fd, const void *buf, size_t len, off_t off)
{
    size_t put = 0;
    while (put < len) {
        ssize_t r = pwrite(fd, (const char *)buf + put, len - put, off + (off_t)put);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -errno;
        put += (size_t)r;
    }
    return 0;
}

static int read_hdr_fd(int fd, struct bc_hdr *h, uint64_t *nll_xxh)
{
    uint8_t b[BC_HDR_BYTES];
    int rc = read_all(fd, b, sizeof b, 0);
    if (rc < 0) return rc;
    return bc_hdr_decode(b, h, nll_xxh);
}

int bc_read_hdr(const char *path, struct bc_hdr *h)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    int rc = read_hdr_fd(fd, h, NULL);
    close(fd);
    return rc;
}

int bc_read(const char *path, struct bc_hdr *h, double **nll)
{
    *nll = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    uint64_t want;
    int rc = read_hdr_fd(fd, h, &want);
    struct stat st;
    if (rc == 0 && fstat(fd, &st) != 0) rc = -errno;
    if (rc == 0 && (uint64_t)h->n_nll > ((uint64_t)st.st_size - BC_HDR_BYTES) / 8)
        rc = KVT_ETRUNC;
    if (rc == 0 && h->n_nll > 0) {
        size_t bytes = (size_t)h->n_nll * sizeof(double);
        *nll = malloc(bytes);
        if (!*nll) rc = -ENOMEM;
        if (rc == 0) rc = read_all(fd, *nll, bytes, BC_HDR_BYTES);
        if (rc == 0 && XXH3_64bits(*nll, bytes) != want) rc = KVT_ECHECKSUM;
        if (rc < 0) { free(*nll); *nll = NULL; }
    }
    close(fd);
    return rc;
}

int bc_write(int fd, const struct bc_hdr *h, const double *nll, int64_t from)
{
    KVT_ASSERT(from >= 0 && from <= h->n_nll);
    int rc = 0;
    if (h->n_nll > from) {
        rc = write_all(fd, nll + from, (size_t)(h->n_nll - from) * sizeof(double),
                       BC_HDR_BYTES + (off_t)from * 8);
        if (rc == 0 && fsync(fd) != 0) rc = -errno;
    }
    if (rc < 0) return rc;
    uint8_t b[BC_HDR_BYTES];
    bc_hdr_encode(h, XXH3_64bits(nll, (size_t)h->n_nll * sizeof(double)), b);
    rc = write_all(fd, b, sizeof b, 0);
    if (rc == 0 && fsync(fd) != 0) rc = -errno;
    return rc;
}
