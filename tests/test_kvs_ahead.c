/* test_kvs_ahead.c - the disk store's RAM budget (kvs_ram_min, a true
 * bound on what the store allocates: measured on the heap) and read-ahead
 * across layers (kvs_read_ahead: the spans are a plain read's, whatever
 * happens between the hint and the read). */
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/io.h"
#include "base/kvt.h"
#include "kvstore/kvs.h"
#include "kvstore/tile.h"
#include "tests/t.h"

static char path[256];

/* Deterministic K/V of (layer, token, channel), exact in f16 and bf16
 * (multiples of 1/4 below 64 in magnitude). */
static void fill(int l, int64_t t0, int n, int D, float *k, float *v)
{
    for (int t = 0; t < n; t++)
        for (int i = 0; i < D; i++) {
            int64_t p = t0 + t;
            k[(size_t)t * D + i] = (float)((l * 7 + p * 3 + i) % 251 - 125) * 0.25f;
            v[(size_t)t * D + i] = (float)((l * 11 + p * 5 + 2 * i) % 241 - 120) * -0.25f;
        }
}

static struct kvs_config cfg(int backing, int L, int D, int T, int type, int codec, int io)
{
    struct kvs_config c;
    memset(&c, 0, sizeof c);
    c.n_layer = L;
    c.kv_dim = D;
    c.tile_tokens = T;
    c.backing = backing;
    c.type = type;
    c.codec = codec;
    c.io = io;
    c.queue_depth = 8;
    c.path = path;
    c.head_dim = D;
    for (int i = 0; i < 32; i++) c.model_fp[i] = (uint8_t)(i * 5 + 3);
    return c;
}

/* Append tokens [t0, t0 + n) to layer l of each store given. */
static int append(kvs *a, kvs *b, int l, int64_t t0, int n, int D)
{
    float *k = malloc((size_t)n * D * sizeof *k), *v = malloc((size_t)n * D * sizeof *v);
    KVT_ASSERT(k && v);
    fill(l, t0, n, D, k, v);
    int rc = kvs_append(a, l, k, v, n);
    if (rc == 0 && b) rc = kvs_append(b, l, k, v, n);
    free(k);
    free(v);
    return rc;
}

/* 1 if span SP holds layer l's tokens as fill gives them (k, v: room
 * for the expected values). */
static int span_ok(const struct kvs_span *sp, int l, int D, float *k, float *v)
{
    KVT_ASSERT(sp->n <= 4096);
    fill(l, sp->pos0, sp->n, D, k, v);
    return memcmp(sp->k, k, (size_t)sp->n * D * sizeof *k) == 0 &&
           memcmp(sp->v, v, (size_t)sp->n * D * sizeof *v) == 0;
}

/* The spans of an open read: token t of layer l has the values fill
 * gives it, [0, n) in order, and each span is still intact after the
 * next one was read (kvs.h: the last two spans stay valid). @return 1 if
 * so. */
static int check_read(kvs *s, int l, int64_t n, int D)
{
    struct kvs_span sp, prev = { 0, 0, NULL, NULL };
    int64_t next = 0;
    int rc, ok = 1;
    float *k = malloc(4096 * (size_t)D * sizeof *k), *v = malloc(4096 * (size_t)D * sizeof *v);
    KVT_ASSERT(k && v);
    while ((rc = kvs_read_next(s, &sp)) > 0) {
        if (sp.pos0 != next || !span_ok(&sp, l, D, k, v)) ok = 0;
        if (prev.n > 0 && !span_ok(&prev, l, D, k, v)) ok = 0;
        prev = sp;
        next = sp.pos0 + sp.n;
    }
    kvs_read_end(s);
    free(k);
    free(v);
    return ok && rc == 0 && next == n;
}

static int read_ok(kvs *s, int l, int64_t n, int D)
{
    if (kvs_read_begin(s, l, n) != 0) return 0;
    return check_read(s, l, n, D);
}

/* ---- the budget ---------------------------------------------------------- */

static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2(); /* every arena, and mmapped chunks */
    return mi.uordblks + mi.hblkhd;
}

/* A budget below kvs_ram_min is refused; at and above it the store's
 * count stays within it and the heap grows by no more than the budget
 * plus the index and summaries (and a little bookkeeping), reads of
 * every layer included: the span buffers and the decode buffers are in
 * the bound, not on top of it. */
static void test_budget_is_a_bound(void)
{
    const int L = 3, D = 256, T = 64, N = 40 * 64 + 17;
    for (int type = KVS_F32; type <= KVS_F16; type++) {
        struct kvs_config c = cfg(KVS_DISK, L, D, T, type, TILE_LZ4, IO_URING);
        size_t min = kvs_ram_min(&c);
        size_t rec = (tile_encode_bound(type, D, T) + IO_ALIGN - 1) / IO_ALIGN * IO_ALIGN;
        size_t spans = 2 * (size_t)T * D * sizeof(float);
        T_CHECK(min > spans + rec); /* the K and V spans and one record at least */
        kvs *s = NULL;
        c.ram_budget_bytes = min - 1;
        T_CHECK(kvs_open(&c, &s) == KVT_ERANGE && s == NULL);
        const size_t extra[] = { 0, 1, rec - 1, rec, 3 * rec + 5, 100 * rec };
        for (size_t e = 0; e < sizeof extra / sizeof extra[0]; e++) {
            c.ram_budget_bytes = min + extra[e];
            malloc_trim(0);
            size_t h0 = heap_in_use();
            T_CHECK(kvs_open(&c, &s) == 0);
            if (!s) continue;
            size_t want_w = KVT_MIN((size_t)c.queue_depth, 1 + extra[e] / rec);
            T_CHECK(kvs_ram_bytes(s) == min - rec + want_w * rec);
            T_CHECK(kvs_ram_bytes(s) <= c.ram_budget_bytes);
            for (int l = 0; l < L; l++) T_CHECK(append(s, NULL, l, 0, N, D) == 0);
            for (int l = 0; l < L; l++) T_CHECK(read_ok(s, l, N, D));
            T_CHECK(kvs_read_ahead(s, 1, N) == 0);
            T_CHECK(read_ok(s, 1, N, D));
            size_t grown = heap_in_use() - h0;
            /* index + summaries: capacity 64 tiles per layer (doubling from 64) */
            size_t idx = (size_t)L * 64 * (16 + kvs_summary_ram_bytes(s));
            size_t slack = 64 << 10; /* the handle, io arrays, layer structs */
            T_CHECK(grown <= c.ram_budget_bytes + idx + slack);
            if (grown > c.ram_budget_bytes + idx + slack)
                fprintf(stderr, "  budget %zu: heap grew %zu\n", c.ram_budget_bytes, grown);
            kvs_close(s);
            s = NULL;
            unlink(path);
        }
    }
    struct kvs_config r = cfg(KVS_RAM, L, D, T, KVS_F32, 0, 0);
    T_CHECK(kvs_ram_min(&r) == 0);
}

/* ---- read-ahead -------------------------------------------------------- */

/* Hints taken over, dropped, or overtaken by appends, truncation and
 * other reads: every read gives the tokens appended, bit for bit, and
 * the bytes a plain read would. */
static void ahead_cases(int type, int codec, int io)
{
    const int L = 4, D = 64, T = 16;
    struct kvs_config c = cfg(KVS_DISK, L, D, T, type, codec, io);
    c.queue_depth = 4;
    c.ram_budget_bytes = kvs_ram_min(&c) + 3 * (size_t)(tile_encode_bound(type, D, T) + IO_ALIGN);
    kvs *s = NULL;
    T_CHECK(kvs_open(&c, &s) == 0);
    if (!s) return;
    int64_t n = 10 * T + 5; /* ten sealed tiles and a tail */
    for (int l = 0; l < L; l++) T_CHECK(append(s, NULL, l, 0, (int)n, D) == 0);

    /* layer after layer, each read announced before the last one ends */
    for (int l = 0; l < L; l++) T_CHECK(read_ok(s, l, n, D));
    T_CHECK(kvs_read_ahead(s, 0, n) == 0);
    for (int l = 0; l < L; l++) {
        T_CHECK(kvs_read_begin(s, l, n) == 0);
        struct kvs_span sp;
        T_CHECK(kvs_read_next(s, &sp) == 1); /* mid-read: no hint allowed yet */
        kvs_read_end(s);
        T_CHECK(kvs_read_ahead(s, l, n) == 0);
        T_CHECK(read_ok(s, l, n, D));
        if (l + 1 < L) T_CHECK(kvs_read_ahead(s, l + 1, n) == 0);
    }
    /* a hint and its read: the same bytes as a plain read */
    uint64_t b0 = kvs_bytes_read(s);
    T_CHECK(read_ok(s, 2, n, D));
    uint64_t plain = kvs_bytes_read(s) - b0;
    b0 = kvs_bytes_read(s);
    T_CHECK(kvs_read_ahead(s, 2, n) == 0);
    usleep(2000); /* let the hinted reads complete */
    T_CHECK(read_ok(s, 2, n, D));
    T_CHECK(kvs_bytes_read(s) - b0 == plain);

    /* hinted one layer or length, read another */
    T_CHECK(kvs_read_ahead(s, 1, n) == 0);
    T_CHECK(read_ok(s, 2, n, D));
    T_CHECK(kvs_read_ahead(s, 1, n) == 0);
    T_CHECK(read_ok(s, 1, n - 7, D));
    T_CHECK(kvs_read_ahead(s, 3, 3 * T) == 0);
    T_CHECK(read_ok(s, 3, n, D));
    /* a hint then a tile list */
    int64_t tiles[] = { 1, 4, 9 };
    T_CHECK(kvs_read_ahead(s, 0, n) == 0);
    T_CHECK(kvs_read_begin_tiles(s, 0, n, tiles, 3) == 0);
    struct kvs_span sp;
    int got = 0;
    while (kvs_read_next(s, &sp) > 0) got++;
    kvs_read_end(s);
    T_CHECK(got == 4); /* three tiles and the tail */

    /* appends that seal the hinted range's tail tile: read anew */
    T_CHECK(kvs_read_ahead(s, 1, n) == 0);
    T_CHECK(append(s, NULL, 1, n, T, D) == 0);
    T_CHECK(read_ok(s, 1, n, D));
    T_CHECK(read_ok(s, 1, n + T, D));
    /* appends past it: taken over */
    T_CHECK(kvs_read_ahead(s, 0, n) == 0);
    T_CHECK(append(s, NULL, 0, n, 3, D) == 0);
    T_CHECK(read_ok(s, 0, n, D));
    /* out of range, and dropped by truncate, reset, sync and close */
    T_CHECK(kvs_read_ahead(s, 0, n + 4) == KVT_ERANGE);
    T_CHECK(kvs_read_ahead(s, 2, n) == 0);
    T_CHECK(kvs_truncate(s, 4 * T + 1) == 0);
    for (int l = 0; l < L; l++) T_CHECK(read_ok(s, l, 4 * T + 1, D));
    T_CHECK(kvs_read_ahead(s, 3, 4 * T) == 0);
    T_CHECK(kvs_sync(s) == 0);
    T_CHECK(kvs_sync(s) == 0);
    T_CHECK(read_ok(s, 3, 4 * T, D));
    T_CHECK(kvs_read_ahead(s, 3, 4 * T) == 0);
    T_CHECK(kvs_reset(s, 7) == 0);
    T_CHECK(kvs_n_tokens(s) == 0);
    for (int l = 0; l < L; l++) T_CHECK(append(s, NULL, l, 0, 3 * T, D) == 0);
    T_CHECK(kvs_read_ahead(s, 1, 3 * T) == 0);
    kvs_close(s); /* with a hint in flight */
    unlink(path);
}

static void test_ahead_f32_uring(void) { ahead_cases(KVS_F32, TILE_NONE, IO_URING); }
static void test_ahead_f16_lz4_pread(void) { ahead_cases(KVS_F16, TILE_LZ4, IO_PREAD); }
static void test_ahead_bf16_huf_mmap(void) { ahead_cases(KVS_BF16, TILE_PLANE_HUF, IO_MMAP); }

/* RAM stores have nothing to read ahead; the range is still checked. */
static void test_ahead_ram(void)
{
    struct kvs_config c = cfg(KVS_RAM, 2, 32, 8, KVS_F32, 0, 0);
    kvs *s = NULL;
    T_CHECK(kvs_open(&c, &s) == 0);
    if (!s) return;
    T_CHECK(append(s, NULL, 0, 0, 20, 32) == 0);
    T_CHECK(append(s, NULL, 1, 0, 20, 32) == 0);
    T_CHECK(kvs_read_ahead(s, 1, 20) == 0);
    T_CHECK(kvs_read_ahead(s, 1, 21) == KVT_ERANGE);
    T_CHECK(read_ok(s, 1, 20, 32));
    T_CHECK(kvs_ram_bytes(s) == 0);
    kvs_close(s);
    /* f16: spans unpacked into the store's two buffers, the tail too */
    c.type = KVS_F16;
    s = NULL;
    T_CHECK(kvs_open(&c, &s) == 0);
    if (!s) return;
    T_CHECK(append(s, NULL, 0, 0, 45, 32) == 0);
    T_CHECK(read_ok(s, 0, 45, 32));
    T_CHECK(read_ok(s, 0, 40, 32));
    kvs_close(s);
}

int main(void)
{
    snprintf(path, sizeof path, "/tmp/kvt-test-kvs-ahead-%d.cache", (int)getpid());
    T_RUN(test_budget_is_a_bound);
    T_RUN(test_ahead_f32_uring);
    T_RUN(test_ahead_f16_lz4_pread);
    T_RUN(test_ahead_bf16_huf_mmap);
    T_RUN(test_ahead_ram);
    unlink(path);
    return t_done();
}
