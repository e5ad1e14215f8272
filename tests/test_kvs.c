/* test_kvs.c - the KV store: RAM spans, disk spans, reopen, crashes, faults. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "io/io.h"
#include "base/kvt.h"
#include "kvstore/kvs.h"
#include "kvstore/tile.h"
#include "tests/t.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    return rng_state = x;
}
static float rngf(void) { return (float)((double)(rng() >> 11) / 9007199254740992.0) * 2.0f - 1.0f; }

/* Deterministic K/V for (layer, token, i): lets tests check any span. */
static float kval(int l, int64_t t, int i) { return (float)(l * 1000 + (int)t) + 0.001f * (float)i; }
static float vval(int l, int64_t t, int i) { return -(float)(l * 1000 + (int)t) - 0.002f * (float)i; }

static void fill(int l, int64_t t0, int n, int D, float *k, float *v)
{
    for (int t = 0; t < n; t++)
        for (int i = 0; i < D; i++) {
            k[(size_t)t * D + i] = kval(l, t0 + t, i);
            v[(size_t)t * D + i] = vval(l, t0 + t, i);
        }
}

static struct kvs_config ram_cfg(int n_layer, int D, int T, int type)
{
    struct kvs_config c;
    memset(&c, 0, sizeof c);
    c.n_layer = n_layer; c.kv_dim = D; c.tile_tokens = T;
    c.backing = KVS_RAM; c.type = type; c.queue_depth = 4;
    return c;
}

/* Stream a layer and check spans are cut at tile boundaries and hold the
 * values (exact for f32). @return number of spans, -1 on mismatch. */
static int check_layer(kvs *s, int l, int64_t n, int D, int T, double tol)
{
    int rc = kvs_read_begin(s, l, n);
    if (rc < 0) return -1;
    struct kvs_span sp;
    int64_t pos = 0;
    int spans = 0, bad = 0;
    while ((rc = kvs_read_next(s, &sp)) == 1) {
        if (sp.pos0 != pos || sp.pos0 % T != 0) bad = 1;
        if (sp.n != (int)KVT_MIN((int64_t)T, n - pos)) bad = 1;
        for (int t = 0; t < sp.n && !bad; t++)
            for (int i = 0; i < D; i++) {
                double dk = sp.k[(size_t)t * D + i] - kval(l, pos + t, i);
                double dv = sp.v[(size_t)t * D + i] - vval(l, pos + t, i);
                if (dk > tol || dk < -tol || dv > tol || dv < -tol) { bad = 1; break; }
            }
        pos += sp.n;
        spans++;
    }
    kvs_read_end(s);
    if (rc != 0 || pos != n || bad) return -1;
    return spans;
}

static void test_ram_f32(void)
{
    const int L = 3, D = 64, T = 16;
    struct kvs_config c = ram_cfg(L, D, T, KVS_F32);
    kvs *s;
    T_CHECK(kvs_open(&c, &s) == 0);
    float *k = malloc(100 * D * sizeof(float)), *v = malloc(100 * D * sizeof(float));
    int64_t have[3] = {0, 0, 0};
    int chunks[] = {1, 5, 16, 17, 3, 40, 2};
    for (int r = 0; r < 7; r++)
        for (int l = 0; l < L; l++) {
            int n = chunks[(r + l) % 7];
            fill(l, have[l], n, D, k, v);
            T_CHECK(kvs_append(s, l, k, v, n) == 0);
            have[l] += n;
        }
    for (int l = 0; l < L; l++) {
        T_CHECK(kvs_layer_tokens(s, l) == have[l]);
        T_CHECK(check_layer(s, l, have[l], D, T, 0.0) == (int)((have[l] + T - 1) / T));
        T_CHECK(check_layer(s, l, 20, D, T, 0.0) == 2);
        T_CHECK(check_layer(s, l, 0, D, T, 0.0) == 0);
    }
    int64_t mn = KVT_MIN(have[0], KVT_MIN(have[1], have[2]));
    T_CHECK(kvs_n_tokens(s) == mn);
    T_CHECK(kvs_read_begin(s, 0, have[0] + 1) < 0);
    T_CHECK(kvs_truncate(s, 37) == 0);
    T_CHECK(kvs_n_tokens(s) == 37);
    for (int l = 0; l < L; l++) T_CHECK(check_layer(s, l, 37, D, T, 0.0) == 3);
    /* append after truncate overwrites the tail */
    fill(1, 37, 30, D, k, v);
    T_CHECK(kvs_append(s, 1, k, v, 30) == 0);
    T_CHECK(check_layer(s, 1, 67, D, T, 0.0) == 5);
    T_CHECK(kvs_truncate(s, 0) == 0);
    T_CHECK(kvs_n_tokens(s) == 0);
    T_CHECK(kvs_sync(s) == 0);
    kvs_close(s);
    kvs_close(NULL);
    free(k); free(v);
}

/* f16/bf16/q8_0: values within the type's error; spans equal the type's
 * round trip of each value exactly. */
static void test_ram_types(void)
{
    const int L = 2, D = 64, T = 8;
    for (int type = KVS_F16; type < KVS_NTYPES; type++) {
        struct kvs_config c = ram_cfg(L, D, T, type);
        kvs *s;
        T_CHECK(kvs_open(&c, &s) == 0);
        if (!s) continue;
        float k[21 * 64], v[21 * 64], kr[21 * 64], vr[21 * 64];
        for (int i = 0; i < 21 * 64; i++) { k[i] = rngf() * 3; v[i] = rngf(); }
        uint8_t pk[21 * 64 * 4], pv[21 * 64 * 4];
        tile_pack(type, D, k, 21, pk); tile_unpack(type, D, pk, 21, kr);
        tile_pack(type, D, v, 21, pv); tile_unpack(type, D, pv, 21, vr);
        for (int l = 0; l < L; l++) {
            T_CHECK(kvs_append(s, l, k, v, 5) == 0);
            T_CHECK(kvs_append(s, l, k + 5 * D, v + 5 * D, 16) == 0);
        }
        for (int l = 0; l < L; l++) {
            T_CHECK(kvs_read_begin(s, l, 21) == 0);
            struct kvs_span sp;
            int64_t pos = 0;
            while (kvs_read_next(s, &sp) == 1) {
                T_CHECK(sp.pos0 == pos);
                T_CHECK(memcmp(sp.k, kr + pos * D, (size_t)sp.n * D * 4) == 0);
                T_CHECK(memcmp(sp.v, vr + pos * D, (size_t)sp.n * D * 4) == 0);
                pos += sp.n;
            }
            kvs_read_end(s);
            T_CHECK(pos == 21);
        }
        double tol = type == KVS_F16 ? 3 * 2e-3 : type == KVS_BF16 ? 3 * 8e-3 : 3.0 / 127;
        for (int i = 0; i < 21 * 64; i++) T_NEAR(kr[i], k[i], tol);
        kvs_close(s);
    }
}

static void test_bad_config(void)
{
    struct kvs_config c = ram_cfg(2, 48, 8, KVS_Q8_0); /* 48 % 32 != 0 */
    kvs *s = (kvs *)1;
    T_CHECK(kvs_open(&c, &s) < 0);
    T_CHECK(s == NULL);
    c = ram_cfg(0, 64, 8, KVS_F32);
    T_CHECK(kvs_open(&c, &s) < 0);
    c = ram_cfg(2, 64, 0, KVS_F32);
    T_CHECK(kvs_open(&c, &s) < 0);
}


/* ---- disk ---------------------------------------------------------------- */

static char path[256], path2[256];

static struct kvs_config disk_cfg(int n_layer, int D, int T, int type, int codec, int io)
{
    struct kvs_config c = ram_cfg(n_layer, D, T, type);
    c.backing = KVS_DISK;
    c.codec = codec;
    c.io = io;
    c.queue_depth = 3;
    c.path = path;
    for (int i = 0; i < 32; i++) c.model_fp[i] = (uint8_t)(i * 7 + 1);
    c.ram_budget_bytes = kvs_ram_min(&c); /* window of 1: the smallest prefetch */
    return c;
}

/* Spans of two stores are identical (bits) for every layer. */
static int same_spans(kvs *a, kvs *b, int L, int D)
{
    for (int l = 0; l < L; l++) {
        int64_t n = kvs_layer_tokens(a, l);
        if (n != kvs_layer_tokens(b, l)) return 0;
        if (kvs_read_begin(a, l, n) != 0) return 0;
        if (kvs_read_begin(b, l, n) != 0) { kvs_read_end(a); return 0; }
        struct kvs_span x, y;
        int ok = 1, ra, rb;
        for (;;) {
            ra = kvs_read_next(a, &x);
            rb = kvs_read_next(b, &y);
            if (ra != rb || ra != 1) break;
            if (x.pos0 != y.pos0 || x.n != y.n ||
                memcmp(x.k, y.k, (size_t)x.n * D * 4) != 0 ||
                memcmp(x.v, y.v, (size_t)x.n * D * 4) != 0) { ok = 0; break; }
        }
        kvs_read_end(a);
        kvs_read_end(b);
        if (!ok || ra != 0 || rb != 0) return 0;
    }
    return 1;
}

static void ram_vs_disk(int type, int codec, int io)
{
    const int L = 3, D = 64, T = 16;
    struct kvs_config rc_ = ram_cfg(L, D, T, type);
    struct kvs_config dc = disk_cfg(L, D, T, type, codec, io);
    if (io == IO_MMAP) dc.ram_budget_bytes = 0; /* default: full window */
    kvs *r = NULL, *d = NULL;
    T_CHECK(kvs_open(&rc_, &r) == 0);
    T_CHECK(kvs_open(&dc, &d) == 0);
    if (!r || !d) { kvs_close(r); kvs_close(d); return; }
    float *k = malloc(64 * D * 4), *v = malloc(64 * D * 4);
    for (int round = 0; round < 12; round++)
        for (int l = 0; l < L; l++) {
            int n = (int)(rng() % 40);
            for (int i = 0; i < n * D; i++) { k[i] = rngf() * (1 + i % 7); v[i] = rngf(); }
            T_CHECK(kvs_append(r, l, k, v, n) == 0);
            T_CHECK(kvs_append(d, l, k, v, n) == 0);
            if (round == 6 && l == 2) {
                int64_t cut = kvs_n_tokens(r) - 21; /* into sealed tiles */
                T_CHECK(kvs_truncate(r, cut) == 0);
                T_CHECK(kvs_truncate(d, cut) == 0);
            }
        }
    T_CHECK(kvs_n_tokens(r) == kvs_n_tokens(d));
    T_CHECK(same_spans(r, d, L, D));
    /* partial reads end inside a sealed tile */
    T_CHECK(kvs_read_begin(d, 1, 37) == 0);
    struct kvs_span sp;
    int spans = 0;
    while (kvs_read_next(d, &sp) == 1) spans++;
    kvs_read_end(d);
    T_CHECK(spans == 3 && sp.pos0 == 32 && sp.n == 5);
    kvs_close(d);
    dc.reopen = 1;
    T_CHECK(kvs_open(&dc, &d) == 0);
    if (d) {
        T_CHECK(same_spans(r, d, L, D));
        /* keep going after the reopen, then again */
        for (int l = 0; l < L; l++) {
            for (int i = 0; i < 20 * D; i++) { k[i] = rngf(); v[i] = rngf(); }
            T_CHECK(kvs_append(r, l, k, v, 20) == 0);
            T_CHECK(kvs_append(d, l, k, v, 20) == 0);
        }
        T_CHECK(kvs_truncate(r, kvs_n_tokens(r) - 3) == 0);
        T_CHECK(kvs_truncate(d, kvs_n_tokens(d) - 3) == 0);
        kvs_close(d);
        T_CHECK(kvs_open(&dc, &d) == 0);
        if (d) T_CHECK(same_spans(r, d, L, D));
        kvs_close(d);
    }
    kvs_close(r);
    free(k); free(v);
    unlink(path);
}

static void test_disk_uring(void)
{
    for (int c = 0; c < TILE_NCODECS; c++) ram_vs_disk(KVS_F16, c, IO_URING);
    ram_vs_disk(KVS_F32, TILE_XPOSE_LZ4, IO_URING);
    ram_vs_disk(KVS_BF16, TILE_SHUF_LZ4, IO_URING);
    ram_vs_disk(KVS_Q8_0, TILE_XPOSE_LZ4, IO_URING);
}
static void test_disk_pread(void)
{
    for (int t = 0; t < KVS_NTYPES; t++) ram_vs_disk(t, TILE_LZ4, IO_PREAD);
}
static void test_disk_mmap(void)
{
    for (int t = 0; t < KVS_NTYPES; t++) ram_vs_disk(t, TILE_XPOSE_LZ4, IO_MMAP);
}

static void test_no_uring(void)
{
    setenv("KVT_NO_URING", "1", 1);
    struct kvs_config c = disk_cfg(1, 32, 8, KVS_F32, TILE_LZ4, IO_URING);
    kvs *s = NULL;
    T_CHECK(kvs_open(&c, &s) == 0);
    if (s) {
        T_CHECK(kvs_io_info(s) & IO_INFO_NO_URING);
        float k[20 * 32], v[20 * 32];
        fill(0, 0, 20, 32, k, v);
        T_CHECK(kvs_append(s, 0, k, v, 20) == 0);
        T_CHECK(check_layer(s, 0, 20, 32, 8, 0.0) == 3);
        kvs_close(s);
    }
    unsetenv("KVT_NO_URING");
    unlink(path);
}

/* L layers of f32 tiles, codec none: each record's size is known. */
enum { CL = 2, CD = 64, CT = 16, CFULL = 3, CTAIL = 7 };
static void build_file(void)
{
    struct kvs_config c = disk_cfg(CL, CD, CT, KVS_F32, TILE_NONE, IO_PREAD);
    kvs *s = NULL;
    T_CHECK(kvs_open(&c, &s) == 0);
    if (!s) return;
    float k[(CFULL * CT + CTAIL) * CD], v[(CFULL * CT + CTAIL) * CD];
    for (int l = 0; l < CL; l++) {
        fill(l, 0, CFULL * CT + CTAIL, CD, k, v);
        T_CHECK(kvs_append(s, l, k, v, CFULL * CT + CTAIL) == 0);
    }
    kvs_close(s); /* tails L0, L1, sync marker */
}

static int64_t file_size(const char *p)
{
    FILE *f = fopen(p, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

static void copy_prefix(const char *src, const char *dst, int64_t n)
{
    FILE *a = fopen(src, "rb"), *b = fopen(dst, "wb");
    char buf[4096];
    while (a && b && n > 0) {
        size_t r = fread(buf, 1, (size_t)KVT_MIN(n, (int64_t)sizeof buf), a);
        if (r == 0) break;
        fwrite(buf, 1, r, b);
        n -= (int64_t)r;
    }
    if (a) fclose(a);
    if (b) fclose(b);
}

#define FULLREC (12288 + 4096)

static void test_truncated_file(void)
{
    build_file();
    int64_t size = file_size(path);
    /* a full tile: its record (12288) and its summary record (4096) */
    const int64_t full = FULLREC, tailrec = 4096;
    T_CHECK(size == 4096 + 2 * CFULL * full + 2 * tailrec + 4096);
    struct kvs_config c = disk_cfg(CL, CD, CT, KVS_F32, TILE_NONE, IO_URING);
    c.path = path2;
    c.reopen = 1;
    int bad = 0;
    /* cuts: every 389 bytes, and around every 4 KiB boundary and every
     * record's payload end */
    int64_t cuts[4096];
    int nc = 0;
    for (int64_t x = 0; x <= size && nc < 3000; x += 389) cuts[nc++] = x;
    for (int64_t b = 0; b <= size; b += 4096)
        for (int d = -1; d <= 0; d++) {
            cuts[nc++] = b + d;
            cuts[nc++] = b + 64 + 8192 + d; /* full tile payload end */
            cuts[nc++] = b + 64 + 2 * CTAIL * CD * 4 + d; /* tail end */
        }
    for (int ci = 0; ci < nc; ci++) {
        int64_t cut = cuts[ci];
        if (cut < 0 || cut > size) continue;
        copy_prefix(path, path2, cut);
        kvs *s = NULL;
        int rc = kvs_open(&c, &s);
        if (cut < 4096) { bad += rc != KVT_ETRUNC; continue; }
        if (rc != 0 || !s) { bad++; continue; }
        /* expected: records wholly present (header + payload) */
        int64_t want[CL] = {0, 0};
        for (int i = 0; i < 2 * CFULL; i++)
            if (4096 + i * full + 64 + 8192 <= cut) want[i / CFULL] += CT;
        for (int l = 0; l < CL; l++) {
            int64_t off = 4096 + 2 * CFULL * full + l * tailrec;
            if (off + 64 + 2 * CTAIL * CD * 4 <= cut) want[l] += CTAIL;
        }
        for (int l = 0; l < CL; l++) {
            if (kvs_layer_tokens(s, l) != want[l]) bad++;
            if (check_layer(s, l, want[l], CD, CT, 0.0) < 0) bad++;
        }
        kvs_close(s);
        /* reopening again (after the cut-back) gives the same */
        T_CHECK(kvs_open(&c, &s) == 0);
        if (s) for (int l = 0; l < CL; l++) bad += kvs_layer_tokens(s, l) != want[l];
        kvs_close(s);
    }
    T_CHECK(bad == 0);
    unlink(path2);
    unlink(path);
}

static void patch(const char *p, long off, const void *b, size_t n)
{
    int fd = open(p, O_WRONLY);
    T_CHECK(fd >= 0);
    T_CHECK(pwrite(fd, b, n, off) == (ssize_t)n);
    close(fd);
}

static void test_bad_files(void)
{
    build_file();
    struct kvs_config c = disk_cfg(CL, CD, CT, KVS_F32, TILE_NONE, IO_PREAD);
    c.reopen = 1;
    kvs *s = NULL;
    c.model_fp[5] ^= 1;
    T_CHECK(kvs_open(&c, &s) == KVT_EMODEL && s == NULL);
    c.model_fp[5] ^= 1;
    c.tile_tokens = 32;
    c.ram_budget_bytes = kvs_ram_min(&c);
    T_CHECK(kvs_open(&c, &s) == KVT_EUNSUPP);
    c.tile_tokens = CT;
    c.ram_budget_bytes = kvs_ram_min(&c);
    /* corrupt the payload of L0's third tile (before the sync marker) */
    uint8_t x = 0x5a;
    patch(path, 4096 + 2 * FULLREC + 64 + 100, &x, 1);
    T_CHECK(kvs_open(&c, &s) == 0);
    if (s) {
        T_CHECK(kvs_layer_tokens(s, 0) == CFULL * CT + CTAIL);
        T_CHECK(kvs_read_begin(s, 0, CFULL * CT + CTAIL) == 0);
        struct kvs_span sp;
        T_CHECK(kvs_read_next(s, &sp) == 1);
        T_CHECK(kvs_read_next(s, &sp) == 1);
        T_CHECK(kvs_read_next(s, &sp) == KVT_ECHECKSUM);
        T_CHECK(kvs_read_next(s, &sp) == KVT_ECHECKSUM);
        kvs_read_end(s);
        T_CHECK(check_layer(s, 1, CFULL * CT + CTAIL, CD, CT, 0.0) == CFULL + 1);
        kvs_close(s);
    }
    /* a damaged record header in the middle fails the open */
    patch(path, 4096 + FULLREC + 20, &x, 1);
    T_CHECK(kvs_open(&c, &s) == KVT_ECHECKSUM);
    uint16_t ver = 9;
    patch(path, 4, &ver, 2);
    T_CHECK(kvs_open(&c, &s) == KVT_EVERSION);
    patch(path, 0, "XXXX", 4);
    T_CHECK(kvs_open(&c, &s) == KVT_EFORMAT);
    c.reopen = 0; /* create over it */
    T_CHECK(kvs_open(&c, &s) == 0);
    kvs_close(s);
    c.reopen = 1;
    T_CHECK(kvs_open(&c, &s) == 0);
    if (s) T_CHECK(kvs_n_tokens(s) == 0);
    kvs_close(s);
    unlink(path);
}

static void test_enospc(void)
{
    const int D = 64, T = 16;
    struct kvs_config c = disk_cfg(1, D, T, KVS_F32, TILE_LZ4, IO_URING);
    kvs *s = NULL;
    T_CHECK(kvs_open(&c, &s) == 0);
    if (!s) return;
    float k[100 * 64], v[100 * 64];
    fill(0, 0, 100, D, k, v);
    /* the third tile (each tile record is followed by its summary's) */
    io_sys_set_fault(IO_OP_WRITE, 5, ENOSPC);
    int rc = kvs_append(s, 0, k, v, 100);
    T_CHECK(rc == -ENOSPC);
    T_CHECK(kvs_layer_tokens(s, 0) == 48); /* kept in the tail */
    /* "crash" now: a copy of the file as it is reopens to 2 tiles */
    copy_prefix(path, path2, file_size(path));
    struct kvs_config c2 = c;
    c2.path = path2;
    c2.reopen = 1;
    kvs *s2 = NULL;
    T_CHECK(kvs_open(&c2, &s2) == 0);
    if (s2) {
        T_CHECK(kvs_layer_tokens(s2, 0) == 32);
        T_CHECK(check_layer(s2, 0, 32, D, T, 0.0) == 2);
        kvs_close(s2);
    }
    /* the store goes on: the failed tile is written by the next append */
    T_CHECK(kvs_append(s, 0, k + 48 * D, v + 48 * D, 52) == 0);
    T_CHECK(check_layer(s, 0, 100, D, T, 0.0) == 7);
    /* sync failing on fsync reports it */
    io_sys_set_fault(IO_OP_FSYNC, 1, EIO);
    T_CHECK(kvs_sync(s) == -EIO);
    kvs_close(s);
    c.reopen = 1;
    T_CHECK(kvs_open(&c, &s) == 0);
    if (s) {
        T_CHECK(check_layer(s, 0, 100, D, T, 0.0) == 7);
        /* EIO on the second read of a stream; short reads absorbed */
        io_sys_set_fault(IO_OP_READ, 2, EIO);
        T_CHECK(kvs_read_begin(s, 0, 100) == 0);
        struct kvs_span sp;
        int r, got_eio = 0, n_ok = 0;
        while ((r = kvs_read_next(s, &sp)) != 0) {
            if (r == -EIO) { got_eio = 1; break; }
            if (r == 1) n_ok++; else break;
        }
        kvs_read_end(s);
        T_CHECK(got_eio && n_ok == 1);
        io_sys_set_fault(IO_OP_READ, 3, 0);
        T_CHECK(check_layer(s, 0, 100, D, T, 0.0) == 7);
        kvs_close(s);
    }
    unlink(path);
    unlink(path2);
}

/* ---- the fault matrix (README "Faults") ---------------------------------- */

/* Layout of build_file(): header block, L0 tiles 0-2, L1 tiles 0-2 (12288
 * bytes each, each followed by its 4096-byte summary record), tail L0, tail
 * L1 (4096 each), sync marker. */
#define FM_REC(i) (4096 + (int64_t)(i) * FULLREC)
#define FM_TAIL1 (FM_REC(6) + 4096)
#define FM_TAIL_BYTES (64 + 2 * CTAIL * CD * 4)
#define FM_TOTAL (CFULL * CT + CTAIL)

static void flip_bit(const char *p, int64_t bit)
{
    int fd = open(p, O_RDWR);
    uint8_t b = 0;
    T_CHECK(fd >= 0 && pread(fd, &b, 1, (off_t)(bit / 8)) == 1);
    b ^= (uint8_t)(1u << (bit % 8));
    T_CHECK(pwrite(fd, &b, 1, (off_t)(bit / 8)) == 1);
    close(fd);
}

static void zero_from(const char *p, int64_t from, int64_t to)
{
    int fd = open(p, O_RDWR);
    static const uint8_t z[4096];
    for (int64_t o = from; fd >= 0 && o < to;) {
        size_t n = (size_t)KVT_MIN((int64_t)sizeof z, to - o);
        T_CHECK(pwrite(fd, z, n, (off_t)o) == (ssize_t)n);
        o += (int64_t)n;
    }
    if (fd >= 0) close(fd);
}

/* Open PATH2; @return 0 and the layer counts, or the open's error. */
static int open_counts(int io, int64_t n[CL], int check)
{
    struct kvs_config c = disk_cfg(CL, CD, CT, KVS_F32, TILE_NONE, io);
    c.path = path2;
    c.reopen = 1;
    kvs *s = NULL;
    int rc = kvs_open(&c, &s);
    if (rc < 0) return rc;
    for (int l = 0; l < CL; l++) {
        n[l] = kvs_layer_tokens(s, l);
        if (check && check_layer(s, l, n[l], CD, CT, 0.0) < 0) n[l] = -1;
    }
    kvs_close(s);
    return 0;
}

/* A write torn at every byte of the last data record (tail of L1) and at
 * every 64 bytes of the sync marker after it: the file cut there, or kept
 * at full size with zeros from there on (what a power cut can leave).
 * Every reopen succeeds with all earlier records and their values. */
static void test_torn_last_record(void)
{
    build_file();
    int64_t size = file_size(path);
    T_CHECK(size == FM_TAIL1 + 2 * 4096);
    int bad = 0, n_cuts = 0;
    for (int64_t x = FM_TAIL1; x <= size; x += x < FM_TAIL1 + FM_TAIL_BYTES + 1 ? 1 : 64)
        for (int zero = 0; zero < 2; zero++) {
            copy_prefix(path, path2, zero ? size : x);
            if (zero) zero_from(path2, x, size);
            int64_t n[CL];
            int check = x % 97 == 0 || x >= FM_TAIL1 + FM_TAIL_BYTES - 1; /* values: sampled */
            int rc = open_counts(IO_MMAP, n, check);
            int64_t want1 = x >= FM_TAIL1 + FM_TAIL_BYTES ? FM_TOTAL : CFULL * CT;
            if (rc != 0 || n[0] != FM_TOTAL || n[1] != want1) {
                if (bad++ < 5)
                    fprintf(stderr, "  torn at %lld (%s): rc %d, L0 %lld, L1 %lld (want %lld)\n",
                            (long long)x, zero ? "zeros" : "cut", rc, (long long)n[0],
                            (long long)n[1], (long long)want1);
            }
            n_cuts++;
        }
    fprintf(stderr, "  %d torn files reopened\n", n_cuts);
    T_CHECK(bad == 0);
    unlink(path2);
    unlink(path);
}

/* A flipped bit anywhere in the file header (the cache's shape and model
 * binding) or in a record header before others: the open fails, and the
 * file is left as it was (nothing cut). A flipped bit in a payload: that
 * tile reads back as KVT_ECHECKSUM, every other tile intact. A flipped bit
 * in the last record (the sync marker): a torn tail, all data kept. */
static void test_flipped_bits(void)
{
    build_file();
    int64_t size = file_size(path), n[CL];
    int bad = 0;
    for (int64_t bit = 0; bit < 64 * 8; bit++) { /* file header */
        copy_prefix(path, path2, size);
        flip_bit(path2, bit);
        bad += open_counts(IO_PREAD, n, 0) == 0;
        bad += file_size(path2) != size;
    }
    T_CHECK(bad == 0);
    bad = 0;
    for (int64_t bit = 0; bit < 64 * 8; bit++) { /* header of L0 tile 1 */
        copy_prefix(path, path2, size);
        flip_bit(path2, FM_REC(1) * 8 + bit);
        int rc = open_counts(IO_PREAD, n, 0);
        bad += rc != KVT_ECHECKSUM;
        bad += file_size(path2) != size;
    }
    T_CHECK(bad == 0);
    bad = 0;
    for (int64_t bit = 0; bit < 8192 * 8; bit += 509) { /* payload of L0 tile 1 */
        copy_prefix(path, path2, size);
        flip_bit(path2, (FM_REC(1) + 64) * 8 + bit);
        struct kvs_config c = disk_cfg(CL, CD, CT, KVS_F32, TILE_NONE, IO_PREAD);
        c.path = path2;
        c.reopen = 1;
        kvs *s = NULL;
        if (kvs_open(&c, &s) != 0) { bad++; continue; }
        struct kvs_span sp;
        T_CHECK(kvs_read_begin(s, 0, FM_TOTAL) == 0);
        bad += kvs_read_next(s, &sp) != 1;
        bad += kvs_read_next(s, &sp) != KVT_ECHECKSUM;
        kvs_read_end(s);
        bad += check_layer(s, 1, FM_TOTAL, CD, CT, 0.0) != CFULL + 1;
        kvs_close(s);
    }
    T_CHECK(bad == 0);
    bad = 0;
    for (int64_t bit = 0; bit < 64 * 8; bit += 7) { /* the sync marker, last */
        copy_prefix(path, path2, size);
        flip_bit(path2, (FM_TAIL1 + 4096) * 8 + bit);
        bad += open_counts(IO_PREAD, n, 1) != 0 || n[0] != FM_TOTAL || n[1] != FM_TOTAL;
    }
    T_CHECK(bad == 0);
    unlink(path2);
    unlink(path);
}

/* EINTR on every call kind is retried; EIO on a write and ENOSPC / EIO on
 * fsync are returned, the store goes on, and what was written before stays
 * readable (also after a reopen). */
static void test_syscall_faults(void)
{
    const int D = 64, T = 16;
    for (int io = 0; io < IO_NKINDS; io++) {
        struct kvs_config c = disk_cfg(1, D, T, KVS_F32, TILE_LZ4, io);
        kvs *s = NULL;
        T_CHECK(kvs_open(&c, &s) == 0);
        if (!s) continue;
        float k[100 * 64], v[100 * 64];
        fill(0, 0, 100, D, k, v);
        io_sys_set_fault(IO_OP_WRITE, 1, EINTR);
        T_CHECK(kvs_append(s, 0, k, v, 40) == 0);
        io_sys_set_fault(IO_OP_WRITE, 1, 0); /* short write */
        T_CHECK(kvs_append(s, 0, k + 40 * D, v + 40 * D, 10) == 0);
        io_sys_set_fault(IO_OP_FSYNC, 1, EINTR);
        T_CHECK(kvs_sync(s) == 0);
        if (io != IO_MMAP) io_sys_set_fault(IO_OP_READ, 1, EINTR); /* mmap: no syscall */
        T_CHECK(check_layer(s, 0, 50, D, T, 0.0) == 4);
        io_sys_set_fault(IO_OP_WRITE, 1, EIO); /* the next tile */
        /* the append stops at the failed tile, which stays in the tail */
        T_CHECK(kvs_append(s, 0, k + 50 * D, v + 50 * D, 20) == -EIO);
        T_CHECK(kvs_layer_tokens(s, 0) == 64);
        T_CHECK(check_layer(s, 0, 64, D, T, 0.0) == 4);
        io_sys_set_fault(IO_OP_FSYNC, 1, ENOSPC);
        T_CHECK(kvs_sync(s) == -ENOSPC);
        io_sys_set_fault(IO_OP_FSYNC, 1, EIO);
        T_CHECK(kvs_sync(s) == -EIO);
        T_CHECK(check_layer(s, 0, 64, D, T, 0.0) == 4);
        T_CHECK(kvs_append(s, 0, k + 64 * D, v + 64 * D, 36) == 0);
        T_CHECK(kvs_sync(s) == 0);
        T_CHECK(check_layer(s, 0, 100, D, T, 0.0) == 7);
        kvs_close(s);
        c.reopen = 1;
        T_CHECK(kvs_open(&c, &s) == 0);
        if (s) T_CHECK(check_layer(s, 0, 100, D, T, 0.0) == 7);
        kvs_close(s);
        io_sys_set_fault(IO_OP_READ, 0, 0);
        io_sys_set_fault(IO_OP_WRITE, 0, 0);
        io_sys_set_fault(IO_OP_FSYNC, 0, 0);
        unlink(path);
    }
}

/* The decode-ahead helper: reads stopped early (the helper is ahead and
 * must be cancelled), appends while a read is in progress (the index
 * grows under the helper), a new read right after, every io backend and a
 * wide prefetch window. */
static void test_read_ahead(void)
{
    const int D = 32, T = 8, L = 2;
    for (int io = 0; io < IO_NKINDS; io++) {
        struct kvs_config c = disk_cfg(L, D, T, KVS_F32, TILE_PLANE_HUF, io);
        c.ram_budget_bytes = 0; /* default budget: window = queue depth */
        c.queue_depth = 4;
        kvs *s = NULL;
        T_CHECK(kvs_open(&c, &s) == 0);
        if (!s) continue;
        float k[200 * 32], v[200 * 32];
        for (int l = 0; l < L; l++) {
            fill(l, 0, 100, D, k, v);
            T_CHECK(kvs_append(s, l, k, v, 100) == 0);
        }
        for (int stop = 0; stop < 13; stop += 3) { /* stop after `stop` spans */
            T_CHECK(kvs_read_begin(s, 1, 100) == 0);
            struct kvs_span sp;
            int got = 0;
            while (got < stop && kvs_read_next(s, &sp) == 1) {
                T_CHECK(sp.pos0 == (int64_t)got * T);
                T_CHECK(sp.k[3] == kval(1, sp.pos0, 3));
                got++;
            }
            kvs_read_end(s);
        }
        /* append to layer 0 while its sealed tiles are being read: 100
         * more tokens (13 more tiles sealed, the index grows) between
         * spans. (The RAM tail is not read here: an append rewrites it.) */
        T_CHECK(kvs_read_begin(s, 0, 96) == 0);
        struct kvs_span sp;
        int spans = 0, bad = 0, r;
        while ((r = kvs_read_next(s, &sp)) == 1) {
            for (int t = 0; t < sp.n; t++)
                if (sp.k[(size_t)t * D + 5] != kval(0, sp.pos0 + t, 5) ||
                    sp.v[(size_t)t * D + 7] != vval(0, sp.pos0 + t, 7))
                    bad = 1;
            if (spans == 2) {
                fill(0, 100, 100, D, k, v);
                T_CHECK(kvs_append(s, 0, k, v, 100) == 0);
            }
            spans++;
        }
        kvs_read_end(s);
        T_CHECK(r == 0 && !bad && spans == 12);
        T_CHECK(check_layer(s, 0, 200, D, T, 0.0) == 25);
        T_CHECK(check_layer(s, 1, 100, D, T, 0.0) == 13);
        kvs_close(s);
    }
    unlink(path);
}

/* Windows one after another (reset with a tag, small batches, a sync
 * after each): the file never grows past what one window needs, every
 * window reads back exactly, and a reopen finds the last window and its
 * tag. A crash copy taken after any sync reopens to a prefix of that
 * window's tokens with the right values. */
static void test_space_reused(void)
{
    const int L = 3, D = 64, T = 16, N = 40, B = 7;
    struct kvs_config c = disk_cfg(L, D, T, KVS_F32, TILE_NONE, IO_PREAD);
    kvs *s = NULL;
    T_CHECK(kvs_open(&c, &s) == 0);
    if (!s) return;
    float k[N * 64], v[N * 64];
    int64_t peak5 = 0, peak50 = 0;
    int bad = 0;
    for (int w = 0; w < 50; w++) {
        T_CHECK(kvs_reset(s, 1000 + (uint64_t)w) == 0);
        for (int p0 = 0; p0 < N; p0 += B) {
            int n = KVT_MIN(B, N - p0);
            for (int l = 0; l < L; l++) {
                fill(l, p0, n, D, k, v);
                bad += kvs_append(s, l, k, v, n) != 0;
            }
            bad += kvs_sync(s) != 0;
            if (w == 7 && p0 == 21) { /* a crash copy after this sync */
                copy_prefix(path, path2, file_size(path));
                struct kvs_config c2 = c;
                c2.path = path2;
                c2.reopen = 1;
                kvs *s2 = NULL;
                T_CHECK(kvs_open(&c2, &s2) == 0);
                if (s2) {
                    T_CHECK(kvs_tag(s2) == 1007 && kvs_n_tokens(s2) == 28);
                    for (int l = 0; l < L; l++) T_CHECK(check_layer(s2, l, 28, D, T, 0.0) == 2);
                    kvs_close(s2);
                }
                unlink(path2);
            }
        }
        for (int l = 0; l < L; l++) bad += check_layer(s, l, N, D, T, 0.0) != 3;
        int64_t peak;
        kvs_file_bytes(s, &peak);
        if (w == 4) peak5 = peak;
        peak50 = peak;
    }
    T_CHECK(bad == 0);
    /* live: 2 tiles x 3 layers (12 KiB records) + 3 tails; the rest is
     * the header, the tag, markers and at most one superseded tail group
     * per tile sealed */
    int64_t live = 6 * 12288 + 3 * 12288;
    fprintf(stderr, "  peak after 5 windows %lld B, after 50 %lld B (live records %lld B)\n",
            (long long)peak5, (long long)peak50, (long long)live);
    T_CHECK(peak50 == peak5 && peak50 <= 2 * live + 8 * 4096);
    kvs_close(s);
    c.reopen = 1;
    T_CHECK(kvs_open(&c, &s) == 0);
    if (s) {
        T_CHECK(kvs_tag(s) == 1049 && kvs_n_tokens(s) == N);
        for (int l = 0; l < L; l++) T_CHECK(check_layer(s, l, N, D, T, 0.0) == 3);
        /* a truncate gives the space back */
        int64_t before = kvs_file_bytes(s, NULL);
        T_CHECK(kvs_truncate(s, 5) == 0 && kvs_sync(s) == 0);
        T_CHECK(kvs_file_bytes(s, NULL) < before);
        kvs_close(s);
        /* header, tag, 3 tail records of 5 tokens, sync marker */
        T_CHECK(file_size(path) == 4096 * 2 + 3 * 4096 + 4096);
        T_CHECK(kvs_open(&c, &s) == 0);
        if (s) {
            T_CHECK(kvs_n_tokens(s) == 5 && kvs_tag(s) == 1049);
            for (int l = 0; l < L; l++) T_CHECK(check_layer(s, l, 5, D, T, 0.0) == 1);
            kvs_close(s);
        }
    }
    unlink(path);
}

/* A cache file has one writer: a second open fails at once with -EBUSY,
 * and creating over a locked file does not truncate it. */
static void test_lock(void)
{
    struct kvs_config c = disk_cfg(1, 64, 16, KVS_F32, TILE_NONE, IO_PREAD);
    kvs *a = NULL, *b = NULL;
    T_CHECK(kvs_open(&c, &a) == 0);
    float k[32 * 64], v[32 * 64];
    fill(0, 0, 32, 64, k, v);
    if (a) T_CHECK(kvs_append(a, 0, k, v, 32) == 0 && kvs_sync(a) == 0);
    int64_t size = file_size(path);
    T_CHECK(kvs_open(&c, &b) == -EBUSY && b == NULL);
    T_CHECK(file_size(path) == size);
    c.reopen = 1;
    T_CHECK(kvs_open(&c, &b) == -EBUSY);
    kvs_close(a);
    T_CHECK(kvs_open(&c, &b) == 0);
    if (b) T_CHECK(kvs_n_tokens(b) == 32);
    kvs_close(b);
    unlink(path);
}

/* io_uring: a failed submit leaves no SQE behind (the next reads complete
 * normally, slot for slot); a failed wait ends the read with the error
 * instead of spinning, and the store closes. */
static void test_uring_faults(void)
{
    const int D = 64, T = 16, N = 400;
    struct kvs_config c = disk_cfg(1, D, T, KVS_F32, TILE_NONE, IO_URING);
    c.queue_depth = 4;
    kvs *s = NULL;
    T_CHECK(kvs_open(&c, &s) == 0);
    if (!s) return;
    if (kvs_io_info(s) & IO_INFO_NO_URING) {
        kvs_close(s);
        unlink(path);
        T_SKIP("no io_uring");
    }
    float *k = malloc((size_t)N * D * 4), *v = malloc((size_t)N * D * 4);
    fill(0, 0, N, D, k, v);
    T_CHECK(kvs_append(s, 0, k, v, N) == 0 && kvs_sync(s) == 0);
    T_CHECK(check_layer(s, 0, N, D, T, 0.0) == 25);
    for (int nth = 1; nth <= 6; nth++) {
        io_sys_set_fault(IO_OP_SUBMIT, nth, EIO);
        T_CHECK(check_layer(s, 0, N, D, T, 0.0) == -1); /* the error reached the reader */
        io_sys_set_fault(IO_OP_SUBMIT, 0, 0);
        T_CHECK(check_layer(s, 0, N, D, T, 0.0) == 25);
        T_CHECK(check_layer(s, 0, N, D, T, 0.0) == 25);
    }
    alarm(60); /* a spinning drain would hang here */
    io_sys_set_fault(IO_OP_WAIT, 3, EIO);
    struct kvs_span sp;
    int rc = kvs_read_begin(s, 0, N), got = 0;
    while (rc >= 0 && (rc = kvs_read_next(s, &sp)) == 1) got++;
    kvs_read_end(s);
    T_CHECK(rc == -EIO && got < 25);
    kvs_close(s);
    alarm(0);
    io_sys_set_fault(IO_OP_WAIT, 0, 0);
    free(k);
    free(v);
    unlink(path);
}

int main(void)
{
    snprintf(path, sizeof path, "/tmp/kvt-test-kvs-%d.cache", (int)getpid());
    snprintf(path2, sizeof path2, "/tmp/kvt-test-kvs-%d-b.cache", (int)getpid());
    /* the fault matrix reopens thousands of copies: on tmpfs when there is one
     * (fsync free), the same code paths (O_DIRECT falls back to buffered) */
    if (access("/dev/shm", W_OK) == 0)
        snprintf(path2, sizeof path2, "/dev/shm/kvt-test-kvs-%d-b.cache", (int)getpid());
    T_RUN(test_ram_f32);
    T_RUN(test_ram_types);
    T_RUN(test_bad_config);
    T_RUN(test_disk_uring);
    T_RUN(test_disk_pread);
    T_RUN(test_disk_mmap);
    T_RUN(test_no_uring);
    T_RUN(test_truncated_file);
    T_RUN(test_bad_files);
    T_RUN(test_enospc);
    T_RUN(test_read_ahead);
    T_RUN(test_torn_last_record);
    T_RUN(test_flipped_bits);
    T_RUN(test_syscall_faults);
    T_RUN(test_space_reused);
    T_RUN(test_lock);
    T_RUN(test_uring_faults);
    unlink(path);
    return t_done();
}
