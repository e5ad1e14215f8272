/* io.c - file I/O: syscall table, fault injection, uring/pread/mmap reads.
 * See io.h. */
#include "io/io.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "base/kvt.h"

/* user_data of an SQE whose submit failed: its completion is dropped */
#define IO_SQE_DEAD UINT64_MAX

/* ---- syscall table and fault injection ------------------------------------ */

struct io_sys io_sys = { pread, pwrite, fsync };

static pthread_mutex_t fault_mu = PTHREAD_MUTEX_INITIALIZER;
static int fault_left[IO_NOPS]; /* calls until the fault fires; 0 = off */
static int fault_err[IO_NOPS];
static uint64_t fault_calls[IO_NOPS];

void io_sys_set_fault(int op, int nth, int err)
{
    KVT_ASSERT(op >= 0 && op < IO_NOPS);
    KVT_ASSERT(nth >= 0 && err >= 0);
    pthread_mutex_lock(&fault_mu);
    fault_left[op] = nth;
    fault_err[op] = err;
    pthread_mutex_unlock(&fault_mu);
}

uint64_t io_sys_calls(int op)
{
    KVT_ASSERT(op >= 0 && op < IO_NOPS);
    pthread_mutex_lock(&fault_mu);
    uint64_t n = fault_calls[op];
    pthread_mutex_unlock(&fault_mu);
    return n;
}

/* Count a call of OP. @return 0 (no fault), -errno (fail), or 1 (short). */
static int fault_take(int op)
{
    int r = 0;
    pthread_mutex_lock(&fault_mu);
    fault_calls[op]++;
    if (fault_left[op] > 0 && --fault_left[op] == 0)
        r = fault_err[op] ? -fault_err[op] : 1;
    pthread_mutex_unlock(&fault_mu);
    return r;
}

/* Half of len, kept a multiple of 512 when possible (O_DIRECT). */
static size_t short_len(size_t len)
{
    size_t h = (len / 2) & ~(size_t)511;
    return h ? h : len / 2;
}

static ssize_t sys_pread(int fd, void *buf, size_t len, off_t off)
{
    int f = fault_take(IO_OP_READ);
    if (f < 0) { errno = -f; return -1; }
    if (f == 1 && len > 1) len = short_len(len);
    return io_sys.pread(fd, buf, len, off);
}

static ssize_t sys_pwrite(int fd, const void *buf, size_t len, off_t off)
{
    int f = fault_take(IO_OP_WRITE);
    if (f < 0) { errno = -f; return -1; }
    if (f == 1 && len > 1) len = short_len(len);
    return io_sys.pwrite(fd, buf, len, off);
}

static int sys_fsync(int fd)
{
    int f = fault_take(IO_OP_FSYNC);
    if (f < 0) { errno = -f; return -1; }
    return io_sys.fsync(fd);
}

/* Read until len bytes or end of file. @return bytes or -errno. */
static int64_t read_full(int fd, void *buf, size_t len, uint64_t off)
{
    size_t got = 0;
    while (got < len) {
        ssize_t r = sys_pread(fd, (uint8_t *)buf + got, len - got,
                              (off_t)(off + got));
        if (r < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    return (int64_t)got;
}

static int write_full(int fd, const void *buf, size_t len, uint64_t off)
{
    size_t put = 0;
    while (put < len) {
        ssize_t r = sys_pwrite(fd, (const uint8_t *)buf + put, len - put,
                               (off_t)(off + put));
        if (r < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (r == 0) return -EIO;
        put += (size_t)r;
    }
    return 0;
}

/* ---- the file ------------------------------------------------------------- */

struct io_req {
    int slot;
    int res;
    uint64_t off;
    size_t len;
};

/* FIFO of at most qd requests. */
struct io_fifo {
    struct io_req *q;
    int head, n, cap;
};

static void fifo_push(struct io_fifo *f, struct io_req r)
{
    KVT_ASSERT(f->n < f->cap);
    f->q[(f->head + f->n) % f->cap] = r;
    f->n++;
}

static struct io_req fifo_pop(struct io_fifo *f)
{
    KVT_ASSERT(f->n > 0);
    struct io_req r = f->q[f->head];
    f->head = (f->head + 1) % f->cap;
    f->n--;
    return r;
}

struct io_file {
    int fd;
    int kind;
    int direct;
    int qd;
    int in_flight;
    size_t slot_bytes;
    uint8_t *slots;          /* (qd, slot_bytes) */
    struct io_req *sent;     /* (qd) request per slot */
    /* uring */
    struct io_uring ring;
    int ring_ok, fixed;
    int broken;              /* < 0: a wait failed, the ring is unusable */
    /* pread worker */
    pthread_t th;
    int th_ok, stop;
    pthread_mutex_t mu;
    pthread_cond_t cv_req, cv_done;
    struct io_fifo rq, cq;   /* worker requests, completions; mmap: rq */
    /* mmap */
    uint8_t *map;
    size_t map_len;
};

static const char *const io_kind_names[IO_NKINDS] = { "uring", "pread", "mmap" };
_Static_assert(sizeof io_kind_names / sizeof io_kind_names[0] == IO_NKINDS,
               "io kind name table length");

const char *io_kind_name(int kind)
{
    return kind >= 0 && kind < IO_NKINDS ? io_kind_names[kind] : "?";
}

int io_kind_parse(const char *name)
{
    for (int i = 0; i < IO_NKINDS; i++)
        if (strcmp(name, io_kind_names[i]) == 0) return i;
    return -EINVAL;
}

int io_kind_of(const io_file *f) { return f->kind; }
int io_is_direct(const io_file *f) { return f->direct; }
size_t io_slot_bytes(const io_file *f) { return f->slot_bytes; }
int io_queue_depth(const io_file *f) { return f->qd; }
int io_in_flight(const io_file *f) { return f->in_flight; }

void *io_slot(io_file *f, int slot)
{
    KVT_ASSERT(slot >= 0 && slot < f->qd);
    return f->slots + (size_t)slot * f->slot_bytes;
}

void *io_alloc(size_t bytes)
{
    void *p = NULL;
    size_t n = (bytes + IO_ALIGN - 1) / IO_ALIGN * IO_ALIGN;
    if (posix_memalign(&p, IO_ALIGN, n ? n : IO_ALIGN) != 0) return NULL;
    return p;
}

void io_free(void *p) { free(p); }

static void *pread_worker(void *arg)
{
    io_file *f = arg;
    pthread_mutex_lock(&f->mu);
    for (;;) {
        while (!f->stop && f->rq.n == 0) pthread_cond_wait(&f->cv_req, &f->mu);
        if (f->rq.n == 0) break; /* stop, queue drained */
        struct io_req r = fifo_pop(&f->rq);
        pthread_mutex_unlock(&f->mu);
        int64_t got = read_full(f->fd, f->slots + (size_t)r.slot * f->slot_bytes,
                                r.len, r.off);
        r.res = (int)got;
        pthread_mutex_lock(&f->mu);
        fifo_push(&f->cq, r);
        pthread_cond_signal(&f->cv_done);
    }
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

static int uring_setup(io_file *f)
{
    const char *no = getenv("KVT_NO_URING");
    if (no && strcmp(no, "1") == 0) return -ENOSYS;
    int rc = io_uring_queue_init((unsigned)f->qd, &f->ring, 0);
    if (rc < 0) return rc;
    f->ring_ok = 1;
    struct iovec *iov = calloc((size_t)f->qd, sizeof *iov);
    if (!iov) return -ENOMEM;
    for (int i = 0; i < f->qd; i++) {
        iov[i].iov_base = io_slot(f, i);
        iov[i].iov_len = f->slot_bytes;
    }
    /* registration may exceed RLIMIT_MEMLOCK: then plain reads */
    f->fixed = io_uring_register_buffers(&f->ring, iov, (unsigned)f->qd) == 0;
    free(iov);
    return 0;
}

static int worker_setup(io_file *f)
{
    if (pthread_mutex_init(&f->mu, NULL) != 0) return -ENOMEM;
    if (pthread_cond_init(&f->cv_req, NULL) != 0) return -ENOMEM;
    if (pthread_cond_init(&f->cv_done, NULL) != 0) return -ENOMEM;
    int rc = pthread_create(&f->th, NULL, pread_worker, f);
    if (rc != 0) return -rc;
    f->th_ok = 1;
    return 0;
}

int io_open(const char *path, const struct io_opts *o, io_file **out,
            int *info)
{
    KVT_ASSERT(o->kind >= 0 && o->kind < IO_NKINDS);
    KVT_ASSERT(o->queue_depth >= 1 && o->queue_depth <= 1024);
    *out = NULL;
    if (info) *info = 0;
    io_file *f = calloc(1, sizeof *f);
    if (!f) return -ENOMEM;
    f->fd = -1;
    f->kind = o->kind;
    f->qd = o->queue_depth;
    f->slot_bytes = (o->slot_bytes + IO_ALIGN - 1) / IO_ALIGN * IO_ALIGN;
    if (f->slot_bytes == 0) f->slot_bytes = IO_ALIGN;
    int rc = -ENOMEM;
    if ((size_t)f->qd > SIZE_MAX / f->slot_bytes) goto fail;
    f->slots = io_alloc((size_t)f->qd * f->slot_bytes);
    f->sent = calloc((size_t)f->qd, sizeof *f->sent);
    f->rq.q = calloc((size_t)f->qd, sizeof(struct io_req));
    f->cq.q = calloc((size_t)f->qd, sizeof(struct io_req));
    if (!f->slots || !f->sent || !f->rq.q || !f->cq.q) goto fail;
    f->rq.cap = f->cq.cap = f->qd;
    for (int i = 0; i < f->qd; i++) f->sent[i].slot = -1;

    int fl = O_RDWR | O_CLOEXEC;
    if (o->flags & IO_CREATE) fl |= O_CREAT;
    if ((o->flags & IO_TRUNC) && !(o->flags & IO_LOCK)) fl |= O_TRUNC;
    if (o->flags & IO_DIRECT) {
        f->fd = open(path, fl | O_DIRECT, 0644);
        if (f->fd >= 0) f->direct = 1;
        else if (errno == EINVAL && info) *info |= IO_INFO_NO_DIRECT;
        else if (errno != EINVAL) { rc = -errno; goto fail; }
    }
    if (f->fd < 0) f->fd = open(path, fl, 0644);
    if (f->fd < 0) { rc = -errno; goto fail; }
    if (o->flags & IO_LOCK) {
        while ((rc = flock(f->fd, LOCK_EX | LOCK_NB)) != 0 && errno == EINTR) {}
        if (rc != 0) { rc = errno == EWOULDBLOCK ? -EBUSY : -errno; goto fail; }
        if ((o->flags & IO_TRUNC) && (rc = io_truncate(f, 0)) < 0) goto fail;
    }

    if (f->kind == IO_URING) {
        rc = uring_setup(f);
        if (rc < 0) {
            if (f->ring_ok) io_uring_queue_exit(&f->ring);
            f->ring_ok = 0;
            f->kind = IO_PREAD;
            if (info) *info |= IO_INFO_NO_URING;
        }
    }
    if (f->kind == IO_PREAD) {
        rc = worker_setup(f);
        if (rc < 0) goto fail;
    }
    *out = f;
    return 0;
fail:
    io_close(f);
    return rc;
}

void io_close(io_file *f)
{
    if (!f) return;
    while (f->in_flight > 0) {
        int slot = -1;
        io_wait(f, &slot);
        if (slot < 0) break; /* nothing completed: nothing will */
    }
    if (f->th_ok) {
        pthread_mutex_lock(&f->mu);
        f->stop = 1;
        pthread_cond_signal(&f->cv_req);
        pthread_mutex_unlock(&f->mu);
        pthread_join(f->th, NULL);
        pthread_mutex_destroy(&f->mu);
        pthread_cond_destroy(&f->cv_req);
        pthread_cond_destroy(&f->cv_done);
    }
    if (f->ring_ok) io_uring_queue_exit(&f->ring);
    if (f->map) munmap(f->map, f->map_len);
    if (f->fd >= 0) close(f->fd);
    io_free(f->slots);
    free(f->sent);
    free(f->rq.q);
    free(f->cq.q);
    free(f);
}

int io_submit(io_file *f, int slot, uint64_t off, size_t len)
{
    KVT_ASSERT(slot >= 0 && slot < f->qd);
    KVT_ASSERT(len <= f->slot_bytes);
    KVT_ASSERT(f->sent[slot].slot < 0); /* slot not in flight */
    KVT_ASSERT(off <= INT64_MAX - len);
    struct io_req r = { slot, 0, off, len };
    if (f->kind == IO_URING) {
        if (f->broken < 0) return f->broken;
        struct io_uring_sqe *sqe = io_uring_get_sqe(&f->ring);
        if (!sqe) { /* the ring holds no-ops of failed submits: send them */
            int rc = io_uring_submit(&f->ring);
            if (rc < 0) return rc;
            sqe = io_uring_get_sqe(&f->ring);
        }
        if (!sqe) return -EBUSY;
        void *buf = io_slot(f, slot);
        if (f->fixed)
            io_uring_prep_read_fixed(sqe, f->fd, buf, (unsigned)len, off, slot);
        else
            io_uring_prep_read(sqe, f->fd, buf, (unsigned)len, off);
        io_uring_sqe_set_data64(sqe, (uint64_t)slot);
        int rc;
        do {
            rc = fault_take(IO_OP_SUBMIT);
            if (rc >= 0) rc = io_uring_submit(&f->ring);
        } while (rc == -EINTR || rc == -EAGAIN);
        if (rc < 0) {
            /* the SQE stays in the ring and would go with the next
             * submit: make it a no-op whose completion io_wait drops */
            io_uring_prep_nop(sqe);
            io_uring_sqe_set_data64(sqe, IO_SQE_DEAD);
            return rc;
        }
    } else if (f->kind == IO_PREAD) {
        pthread_mutex_lock(&f->mu);
        fifo_push(&f->rq, r);
        pthread_cond_signal(&f->cv_req);
        pthread_mutex_unlock(&f->mu);
    } else {
        fifo_push(&f->rq, r); /* mmap: copied in io_wait */
    }
    f->sent[slot] = r;
    f->in_flight++;
    return 0;
}

/* Finish an io_uring completion: injected faults, short reads, EINTR. */
static int uring_finish(io_file *f, const struct io_req *r, int res)
{
    int flt = fault_take(IO_OP_READ);
    if (flt < 0) res = flt; /* as if the completion carried it */
    if (flt == 1 && res > 1) res = (int)short_len((size_t)res);
    if (res == -EINTR || res == -EAGAIN) res = 0; /* redo synchronously */
    if (res < 0) return res;
    if ((size_t)res < r->len) {
        int64_t more = read_full(f->fd, (uint8_t *)io_slot(f, r->slot) + res,
                                 r->len - (size_t)res, r->off + (size_t)res);
        if (more < 0) return (int)more;
        res += (int)more;
    }
    return res;
}

static int mmap_copy(io_file *f, const struct io_req *r)
{
    int flt = fault_take(IO_OP_READ);
    if (flt < 0) return flt;
    if (r->off + r->len > f->map_len) {
        struct stat st;
        if (fstat(f->fd, &st) != 0) return -errno;
        size_t size = (size_t)st.st_size;
        if (size > f->map_len) {
            if (f->map) munmap(f->map, f->map_len);
            f->map = NULL;
            f->map_len = 0;
            void *p = mmap(NULL, size, PROT_READ, MAP_SHARED, f->fd, 0);
            if (p == MAP_FAILED) return -errno;
            f->map = p;
            f->map_len = size;
        }
    }
    if (r->off >= f->map_len) return 0;
    size_t n = KVT_MIN(r->len, f->map_len - (size_t)r->off);
    memcpy(io_slot(f, r->slot), f->map + r->off, n);
    return (int)n;
}

int io_wait(io_file *f, int *slot)
{
    if (f->in_flight == 0) return -EAGAIN;
    struct io_req r;
    int res;
    if (f->kind == IO_URING) {
        struct io_uring_cqe *cqe;
        uint64_t data;
        do {
            int rc;
            do {
                rc = fault_take(IO_OP_WAIT);
                if (rc >= 0) rc = io_uring_wait_cqe(&f->ring, &cqe);
            } while (rc == -EINTR || rc == -EAGAIN);
            if (rc < 0) { /* ring broken: abandon what is in flight */
                f->broken = rc;
                for (int i = 0; i < f->qd; i++) f->sent[i].slot = -1;
                f->in_flight = 0;
                return rc;
            }
            data = io_uring_cqe_get_data64(cqe);
            res = cqe->res;
            io_uring_cqe_seen(&f->ring, cqe);
        } while (data == IO_SQE_DEAD);
        int s = (int)data;
        KVT_ASSERT(s >= 0 && s < f->qd && f->sent[s].slot == s);
        r = f->sent[s];
        res = uring_finish(f, &r, res);
    } else if (f->kind == IO_PREAD) {
        pthread_mutex_lock(&f->mu);
        while (f->cq.n == 0) pthread_cond_wait(&f->cv_done, &f->mu);
        r = fifo_pop(&f->cq);
        pthread_mutex_unlock(&f->mu);
        res = r.res;
    } else {
        r = fifo_pop(&f->rq);
        res = mmap_copy(f, &r);
    }
    f->sent[r.slot].slot = -1;
    f->in_flight--;
    *slot = r.slot;
    return res;
}

int64_t io_fd_read(int fd, void *buf, size_t len, uint64_t off)
{
    return read_full(fd, buf, len, off);
}

int io_fd_write(int fd, const void *buf, size_t len, uint64_t off)
{
    return write_full(fd, buf, len, off);
}

int io_fd_fsync(int fd)
{
    for (;;) {
        if (sys_fsync(fd) == 0) return 0;
        if (errno != EINTR) return -errno;
    }
}

int64_t io_read(io_file *f, void *buf, size_t len, uint64_t off)
{
    return read_full(f->fd, buf, len, off);
}

int io_write(io_file *f, const void *buf, size_t len, uint64_t off)
{
    if (f->direct) {
        KVT_ASSERT((uintptr_t)buf % IO_ALIGN == 0);
        KVT_ASSERT(len % IO_ALIGN == 0);
        KVT_ASSERT(off % IO_ALIGN == 0);
    }
    return write_full(f->fd, buf, len, off);
}

int io_fsync(io_file *f) { return io_fd_fsync(f->fd); }

int io_size(io_file *f, uint64_t *size)
{
    struct stat st;
    if (fstat(f->fd, &st) != 0) return -errno;
    *size = (uint64_t)st.st_size;
    return 0;
}

int io_truncate(io_file *f, uint64_t size)
{
    while (ftruncate(f->fd, (off_t)size) != 0)
        if (errno != EINTR) return -errno;
    if (f->map && size < f->map_len) { /* never read past the new end */
        munmap(f->map, f->map_len);
        f->map = NULL;
        f->map_len = 0;
    }
    return 0;
}
