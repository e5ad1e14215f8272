/* probe.c - raw sequential read bandwidth of a file (see probe.h). */
#include "tools/probe.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "io/io.h"
#include "base/kvt.h"

int probe_drop_cache(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    int rc = 0;
    if (fdatasync(fd) != 0) rc = -errno;
    int a = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    if (rc == 0 && a != 0) rc = -a;
    close(fd);
    return rc;
}

/* Keep PROBE_QD reads in flight until the whole file is read; *got = bytes. */
static int probe_stream(io_file *f, uint64_t size, uint64_t *got)
{
    uint64_t next = 0;
    int rc;
    *got = 0;
    for (int slot = 0; slot < PROBE_QD && next < size; slot++, next += PROBE_READ_BYTES)
        if ((rc = io_submit(f, slot, next, PROBE_READ_BYTES)) < 0) return rc;
    while (io_in_flight(f) > 0) {
        int slot, r = io_wait(f, &slot);
        if (r < 0) return r;
        *got += (uint64_t)r;
        if (next < size) {
            if ((rc = io_submit(f, slot, next, PROBE_READ_BYTES)) < 0) return rc;
            next += PROBE_READ_BYTES;
        }
    }
    return 0;
}

int probe_direct(const char *path, struct probe_result *out)
{
    memset(out, 0, sizeof *out);
    struct io_opts op = { IO_URING, IO_DIRECT, PROBE_QD, PROBE_READ_BYTES };
    io_file *f;
    int rc = io_open(path, &op, &f, &out->info);
    if (rc < 0) return rc;
    if ((rc = io_size(f, &out->file_bytes)) < 0 || (rc = probe_drop_cache(path)) < 0) {
        io_close(f);
        return rc;
    }
    double t0 = kvt_now_s();
    rc = probe_stream(f, out->file_bytes, &out->read_bytes);
    out->secs = kvt_now_s() - t0;
    io_close(f); /* waits for what an error left in flight */
    if (rc < 0) return rc;
    if (out->read_bytes != out->file_bytes) return KVT_ETRUNC;
    out->bytes_per_s = (double)out->read_bytes / out->secs;
    return 0;
}

int probe_buffered(const char *path, struct probe_result *out)
{
    memset(out, 0, sizeof *out);
    struct io_opts op = { IO_PREAD, 0, 1, PROBE_READ_BYTES };
    io_file *f;
    int rc = io_open(path, &op, &f, NULL);
    if (rc < 0) return rc;
    if ((rc = io_size(f, &out->file_bytes)) < 0 || (rc = probe_drop_cache(path)) < 0) {
        io_close(f);
        return rc;
    }
    double t0 = kvt_now_s();
    for (;;) {
        int64_t r = io_read(f, io_slot(f, 0), PROBE_READ_BYTES, out->read_bytes);
        if (r < 0) {
            io_close(f);
            return (int)r;
        }
        out->read_bytes += (uint64_t)r;
        if ((size_t)r < PROBE_READ_BYTES) break;
    }
    out->secs = kvt_now_s() - t0;
    io_close(f);
    out->bytes_per_s = (double)out->read_bytes / out->secs;
    return 0;
}
