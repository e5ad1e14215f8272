/* io.h - one file, three read backends, one syscall table.
 *
 * An io_file is a file opened for appending writes at explicit offsets
 * (synchronous, all-or-error) and for asynchronous reads into a fixed set
 * of read slots owned by the io_file:
 *
 *   io_open(path, &opts, &f, &info)     slots allocated here, aligned
 *   io_submit(f, slot, off, len)        read [off, off+len) into slot
 *   io_wait(f, &slot)                   one completion: bytes read (short
 *                                       only at end of file) or -errno
 *
 * Backends (enum io_kind):
 *   IO_URING  liburing, slots registered as fixed buffers, queue depth =
 *             opts.queue_depth. If the ring cannot be set up (ENOSYS,
 *             EPERM, ...) or KVT_NO_URING=1 is set in the environment,
 *             io_open falls back to IO_PREAD and sets IO_INFO_NO_URING.
 *   IO_PREAD  one worker thread doing preads from a request queue.
 *   IO_MMAP   reads copy from a read-only mapping of the file, remapped
 *             when the file has grown; the copy happens in io_wait.
 *
 * O_DIRECT (IO_DIRECT): buffers, lengths and offsets of writes must be
 * multiples of IO_ALIGN (slots and io_alloc() memory are aligned). If the
 * filesystem refuses O_DIRECT, io_open opens buffered and sets
 * IO_INFO_NO_DIRECT.
 *
 * Every read, write and fsync goes through the table io_sys (also the
 * completions of io_uring, which consult the fault injector), so tests can
 * replace a call or make the Nth one fail with io_sys_set_fault().
 * Short reads/writes and EINTR are retried here; callers see all-or-error,
 * except reads that hit end of file.
 *
 * Errors: -errno. Not thread-safe per io_file: one caller at a time.
 */
#ifndef KVT_IO_H
#define KVT_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define IO_ALIGN 4096

enum io_kind { IO_URING, IO_PREAD, IO_MMAP, IO_NKINDS };

enum io_flags {
    IO_CREATE = 1 << 0, /* create if missing */
    IO_TRUNC = 1 << 1,  /* truncate to 0 at open */
    IO_DIRECT = 1 << 2, /* O_DIRECT if the filesystem allows */
    IO_LOCK = 1 << 3,   /* exclusive flock, taken before IO_TRUNC truncates;
                           held by another open file: -EBUSY at once */
};

enum io_info {
    IO_INFO_NO_URING = 1 << 0,  /* asked for IO_URING, got IO_PREAD */
    IO_INFO_NO_DIRECT = 1 << 1, /* asked for O_DIRECT, got buffered I/O */
};

struct io_opts {
    int kind;          /* enum io_kind */
    int flags;         /* enum io_flags */
    int queue_depth;   /* read slots = requests in flight (1 .. 1024) */
    size_t slot_bytes; /* bytes per read slot (rounded up to IO_ALIGN) */
};

typedef struct io_file io_file;

/* @return 0 and *out, or -errno. *info gets IO_INFO_* (may be NULL). */
int io_open(const char *path, const struct io_opts *opts, io_file **out,
            int *info);
void io_close(io_file *f); /* NULL is a no-op; waits for reads in flight */

const char *io_kind_name(int kind);  /* "uring", "pread", "mmap" */
int io_kind_parse(const char *name); /* id or -EINVAL */
int io_kind_of(const io_file *f);    /* backend actually in use */
int io_is_direct(const io_file *f);  /* 1 if opened O_DIRECT */

/* Slot I's buffer: slot_bytes, IO_ALIGN-aligned, owned by f. */
void *io_slot(io_file *f, int slot);
size_t io_slot_bytes(const io_file *f);
int io_queue_depth(const io_file *f);

/* Start reading [off, off+len) into slot (len <= slot bytes; slot not in
 * flight). Under O_DIRECT off and len must be IO_ALIGN multiples. */
int io_submit(io_file *f, int slot, uint64_t off, size_t len);
/* Wait for one completion. @return bytes read (< len only at end of file)
 * or -errno; *slot = the slot it was for. -EAGAIN if nothing in flight.
 * io_uring: a failed submit leaves nothing queued (its SQE becomes a
 * no-op whose completion is dropped); a failed wait (other than EINTR)
 * means completions can no longer be trusted: every read in flight is
 * abandoned (*slot untouched, io_in_flight() drops to 0) and later
 * submits fail with the same error. */
int io_wait(io_file *f, int *slot);
int io_in_flight(const io_file *f);

/* Synchronous, all-or-error (bytes read < len only at end of file). */
int64_t io_read(io_file *f, void *buf, size_t len, uint64_t off);
int io_write(io_file *f, const void *buf, size_t len, uint64_t off);
int io_fsync(io_file *f);
int io_size(io_file *f, uint64_t *size);
int io_truncate(io_file *f, uint64_t size);

/* The same syscall table (and faults) for plain descriptors: journals,
 * sidecars. read: until len or end of file, bytes or -errno; write:
 * all-or-error; fsync: 0 or -errno. EINTR and short counts are retried. */
int64_t io_fd_read(int fd, void *buf, size_t len, uint64_t off);
int io_fd_write(int fd, const void *buf, size_t len, uint64_t off);
int io_fd_fsync(int fd);

/* IO_ALIGN-aligned allocation for write buffers; free with io_free. */
void *io_alloc(size_t bytes);
void io_free(void *p);

/* ---- the syscall table and fault injection (tests) ---------------------- */

struct io_sys {
    ssize_t (*pread)(int fd, void *buf, size_t len, off_t off);
    ssize_t (*pwrite)(int fd, const void *buf, size_t len, off_t off);
    int (*fsync)(int fd);
};
extern struct io_sys io_sys; /* defaults: the libc calls */

enum io_op { IO_OP_READ, IO_OP_WRITE, IO_OP_FSYNC,
             IO_OP_SUBMIT, /* io_uring_submit (uring backend) */
             IO_OP_WAIT,   /* io_uring_wait_cqe (uring backend) */
             IO_NOPS };

/* Arm a one-shot fault: the NTH call (1 = the next) of OP, counted from
 * now, fails with -ERR (ERR > 0) or, with ERR == 0, transfers only half
 * the bytes (a short count the retry loops must absorb). nth == 0 disarms.
 * Reads count every pread and every io_uring/mmap completion. */
void io_sys_set_fault(int op, int nth, int err);
/* Calls of OP seen since the process started (for tests). */
uint64_t io_sys_calls(int op);

#endif
