/* test_io.c - io backends: async reads, O_DIRECT, fallback, injected faults. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/io.h"
#include "base/kvt.h"
#include "tests/t.h"

static char path[256];

static void fill_block(uint8_t *b, size_t n, uint64_t off)
{
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)((off + i) * 2654435761u >> 13);
}

static int check_block(const uint8_t *b, size_t n, uint64_t off)
{
    for (size_t i = 0; i < n; i++)
        if (b[i] != (uint8_t)((off + i) * 2654435761u >> 13)) return 0;
    return 1;
}

/* Write 8 blocks of 4 KiB and a short unaligned tail through F. */
static int write_file(io_file *f, uint8_t *buf)
{
    for (int i = 0; i < 8; i++) {
        fill_block(buf, IO_ALIGN, (uint64_t)i * IO_ALIGN);
        int rc = io_write(f, buf, IO_ALIGN, (uint64_t)i * IO_ALIGN);
        if (rc < 0) return rc;
    }
    return 0;
}

static void run_kind(int kind, int flags)
{
    struct io_opts o = { kind, IO_CREATE | IO_TRUNC | flags, 4, 2 * IO_ALIGN };
    io_file *f = NULL;
    int info = -1;
    int rc = io_open(path, &o, &f, &info);
    T_CHECK(rc == 0);
    if (rc < 0) return;
    T_CHECK(info >= 0);
    if (kind == IO_URING && (info & IO_INFO_NO_URING)) T_CHECK(io_kind_of(f) == IO_PREAD);
    else T_CHECK(io_kind_of(f) == kind);
    uint8_t *buf = io_alloc(IO_ALIGN);
    T_CHECK(write_file(f, buf) == 0);
    uint64_t size = 0;
    T_CHECK(io_size(f, &size) == 0 && size == 8 * IO_ALIGN);
    T_CHECK(io_fsync(f) == 0);
    /* two rounds of reads, 4 in flight, out-of-order offsets */
    uint64_t offs[8] = {7, 0, 3, 5, 1, 6, 2, 4};
    int seen = 0;
    for (int round = 0; round < 2; round++) {
        for (int s = 0; s < 4; s++)
            T_CHECK(io_submit(f, s, offs[round * 4 + s] * IO_ALIGN,
                              offs[round * 4 + s] == 7 ? 2 * IO_ALIGN : IO_ALIGN) == 0);
        T_CHECK(io_in_flight(f) == 4);
        for (int i = 0; i < 4; i++) {
            int slot = -1;
            int got = io_wait(f, &slot);
            T_CHECK(slot >= 0 && slot < 4);
            if (slot < 0 || slot >= 4) continue;
            uint64_t off = offs[round * 4 + slot] * IO_ALIGN;
            T_CHECK(got == IO_ALIGN); /* block 7: short at end of file */
            T_CHECK(check_block(io_slot(f, slot), IO_ALIGN, off));
            seen |= 1 << offs[round * 4 + slot];
        }
    }
    T_CHECK(seen == 0xff);
    int slot;
    T_CHECK(io_wait(f, &slot) == -EAGAIN);

    /* injected short read: absorbed */
    io_sys_set_fault(IO_OP_READ, 1, 0);
    T_CHECK(io_submit(f, 2, 3 * IO_ALIGN, 2 * IO_ALIGN) == 0);
    T_CHECK(io_wait(f, &slot) == 2 * IO_ALIGN && slot == 2);
    T_CHECK(check_block(io_slot(f, 2), 2 * IO_ALIGN, 3 * IO_ALIGN));
    /* injected EIO on the second read */
    io_sys_set_fault(IO_OP_READ, 2, EIO);
    T_CHECK(io_submit(f, 0, 0, IO_ALIGN) == 0);
    T_CHECK(io_submit(f, 1, IO_ALIGN, IO_ALIGN) == 0);
    int r0 = io_wait(f, &slot), r1 = io_wait(f, &slot);
    T_CHECK((r0 == -EIO) + (r1 == -EIO) == 1);
    T_CHECK(r0 == IO_ALIGN || r1 == IO_ALIGN);
    /* sync read path */
    io_sys_set_fault(IO_OP_READ, 1, 0);
    T_CHECK(io_read(f, buf, IO_ALIGN, 5 * IO_ALIGN) == IO_ALIGN);
    T_CHECK(check_block(buf, IO_ALIGN, 5 * IO_ALIGN));
    io_sys_set_fault(IO_OP_READ, 1, EIO);
    T_CHECK(io_read(f, buf, IO_ALIGN, 0) == -EIO);
    /* writes: short absorbed, ENOSPC returned, fsync EIO returned */
    io_sys_set_fault(IO_OP_WRITE, 1, 0);
    fill_block(buf, IO_ALIGN, 8 * IO_ALIGN);
    T_CHECK(io_write(f, buf, IO_ALIGN, 8 * IO_ALIGN) == 0);
    T_CHECK(io_read(f, buf, IO_ALIGN, 8 * IO_ALIGN) == IO_ALIGN);
    T_CHECK(check_block(buf, IO_ALIGN, 8 * IO_ALIGN));
    io_sys_set_fault(IO_OP_WRITE, 2, ENOSPC);
    T_CHECK(io_write(f, buf, IO_ALIGN, 9 * IO_ALIGN) == 0);
    T_CHECK(io_write(f, buf, IO_ALIGN, 10 * IO_ALIGN) == -ENOSPC);
    io_sys_set_fault(IO_OP_FSYNC, 1, EIO);
    T_CHECK(io_fsync(f) == -EIO);
    T_CHECK(io_fsync(f) == 0);
    /* read past end: short; mmap remaps after growth */
    T_CHECK(io_submit(f, 3, 9 * IO_ALIGN, 2 * IO_ALIGN) == 0);
    T_CHECK(io_wait(f, &slot) == IO_ALIGN);
    T_CHECK(io_truncate(f, IO_ALIGN) == 0);
    T_CHECK(io_size(f, &size) == 0 && size == IO_ALIGN);
    T_CHECK(io_submit(f, 3, 0, 2 * IO_ALIGN) == 0);
    T_CHECK(io_wait(f, &slot) == IO_ALIGN);
    /* leave reads in flight: io_close must drain them */
    T_CHECK(io_submit(f, 0, 0, IO_ALIGN) == 0);
    T_CHECK(io_submit(f, 1, 0, IO_ALIGN) == 0);
    io_free(buf);
    io_close(f);
    io_close(NULL);
    unlink(path);
}

static void test_uring(void)
{
    struct io_opts o = { IO_URING, IO_CREATE | IO_TRUNC, 2, IO_ALIGN };
    io_file *f = NULL;
    int info = 0;
    T_CHECK(io_open(path, &o, &f, &info) == 0);
    int kind = f ? io_kind_of(f) : -1;
    io_close(f);
    if (getenv("KVT_NO_URING") || (info & IO_INFO_NO_URING))
        T_SKIP("io_uring unavailable");
    T_CHECK(kind == IO_URING);
    run_kind(IO_URING, 0);
}
static void test_pread(void) { run_kind(IO_PREAD, 0); }
static void test_mmap(void) { run_kind(IO_MMAP, 0); }

static void test_direct(void)
{
    struct io_opts o = { IO_PREAD, IO_CREATE | IO_TRUNC | IO_DIRECT, 2, IO_ALIGN };
    io_file *f = NULL;
    int info = 0;
    T_CHECK(io_open(path, &o, &f, &info) == 0);
    if (!f) return;
    int direct = io_is_direct(f);
    T_CHECK(direct == !(info & IO_INFO_NO_DIRECT));
    io_close(f);
    if (!direct) T_SKIP("filesystem refuses O_DIRECT");
    run_kind(IO_URING, IO_DIRECT);
    run_kind(IO_PREAD, IO_DIRECT);
    run_kind(IO_MMAP, IO_DIRECT);
}

static void test_no_uring_env(void)
{
    setenv("KVT_NO_URING", "1", 1);
    struct io_opts o = { IO_URING, IO_CREATE | IO_TRUNC, 2, IO_ALIGN };
    io_file *f = NULL;
    int info = 0;
    T_CHECK(io_open(path, &o, &f, &info) == 0);
    T_CHECK(info & IO_INFO_NO_URING);
    if (f) T_CHECK(io_kind_of(f) == IO_PREAD);
    io_close(f);
    run_kind(IO_URING, 0); /* the whole suite on the fallback */
    unsetenv("KVT_NO_URING");
}

static void test_names(void)
{
    for (int k = 0; k < IO_NKINDS; k++) T_CHECK(io_kind_parse(io_kind_name(k)) == k);
    T_CHECK(io_kind_parse("aio") == -EINVAL);
    io_file *f = NULL;
    struct io_opts o = { IO_PREAD, 0, 1, IO_ALIGN };
    T_CHECK(io_open("/nonexistent-dir/x", &o, &f, NULL) == -ENOENT);
    T_CHECK(f == NULL);
}

int main(void)
{
    snprintf(path, sizeof path, "/tmp/kvt-test-io-%d.bin", (int)getpid());
    T_RUN(test_uring);
    T_RUN(test_pread);
    T_RUN(test_mmap);
    T_RUN(test_direct);
    T_RUN(test_no_uring_env);
    T_RUN(test_names);
    unlink(path);
    return t_done();
}
