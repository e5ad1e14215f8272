/* probe.h - the raw sequential read bandwidth of a file on its device,
 * the yardstick benches hold the KV store's read path against.
 *
 *   probe_direct    the whole file by PROBE_READ_BYTES O_DIRECT reads,
 *                   PROBE_QD in flight, through io_uring (io.h falls back
 *                   to pread / buffered I/O and says so in info)
 *   probe_buffered  the whole file by a buffered PROBE_READ_BYTES pread loop
 *
 * Each drops the file from the page cache first (probe_drop_cache), so the
 * reads hit the device; the clock starts after the drop. Nothing is
 * printed. Errors: -errno or KVT_E* (kvt_strerror).
 */
#ifndef KVT_PROBE_H
#define KVT_PROBE_H

#include <stddef.h>
#include <stdint.h>

#define PROBE_QD 32                          /* reads in flight (probe_direct) */
#define PROBE_READ_BYTES ((size_t)1 << 20)   /* bytes per read */

struct probe_result {
    uint64_t file_bytes; /* size of the file at open */
    uint64_t read_bytes; /* bytes read (== file_bytes) */
    double secs;         /* wall time of the reads */
    double bytes_per_s;  /* read_bytes / secs */
    int info;            /* IO_INFO_* of the open (io.h): fallbacks taken */
};

/* @return 0 and *out; KVT_ETRUNC if fewer bytes than the file's size came
 * back (the file shrank); -errno. */
int probe_direct(const char *path, struct probe_result *out);
/* @return 0 and *out (info is 0; read_bytes is what the loop read before
 * end of file); -errno. */
int probe_buffered(const char *path, struct probe_result *out);

/* Flush PATH to the device (fdatasync) and drop it from the page cache
 * (POSIX_FADV_DONTNEED). @return 0 or -errno. */
int probe_drop_cache(const char *path);

#endif
