/* test_rope_cache.c - rope_rotate_rows and the cos/sin cache (rope.h)
 * against the plain forms they must reproduce bit for bit:
 * memcpy + rope_rotate per row (checked against a naive float loop
 * written here, and in a child forced to KVT_CPU=portable), and
 * rope_cos_sin_range for every run, prefix and table. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/rope.h"
#include "base/kvt.h"
#include "tests/t.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;
static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0) * 4.0f - 2.0f;
}

static struct rope_table table(int n_rot, int neox, double base, double scale, int scheme)
{
    struct rope_params rp;
    rope_params_default(&rp, n_rot, base);
    rp.neox = neox;
    rp.scheme = scheme;
    rp.scale = scale;
    rp.orig_ctx = 256;
    struct rope_table t;
    KVT_ASSERT(rope_prepare(&rp, 4096, &t) == 0);
    return t;
}

/* Naive: pair i of each head is (i*a, i*a+b); the same float products
 * and sums as rope_rotate's contract. */
static void naive_rows(const struct rope_table *t, const float *src, float *dst, int n,
                       size_t ld, int nh, int hd, const float *cs, const float *sn)
{
    int np = t->n_rot / 2, a = t->neox ? 1 : 2, b = t->neox ? np : 1;
    for (int r = 0; r < n; r++)
        for (int h = 0; h < nh; h++) {
            const float *x = src + r * ld + (size_t)h * hd;
            float *v = dst + r * ld + (size_t)h * hd;
            for (int d = 0; d < hd; d++) v[d] = x[d];
            for (int i = 0; i < np; i++) {
                float x0 = x[i * a], x1 = x[i * a + b], c = cs[r * np + i], s = sn[r * np + i];
                v[i * a] = x0 * c - x1 * s;
                v[i * a + b] = x0 * s + x1 * c;
            }
        }
}

/* Every layout and odd size: @return the mismatches. */
static int rotate_rows_mismatches(void)
{
    static const int cfg[][4] = { /* n_rot, head_dim, heads, neox */
        { 64, 64, 2, 0 }, { 64, 64, 2, 1 }, { 128, 128, 8, 0 }, { 128, 128, 3, 1 },
        { 10, 16, 3, 0 }, { 10, 16, 3, 1 }, { 2, 6, 1, 0 }, { 34, 40, 2, 1 },
        { 24, 96, 2, 1 }, { 18, 18, 5, 0 },
    };
    int bad = 0;
    for (size_t k = 0; k < sizeof cfg / sizeof cfg[0]; k++) {
        int nr = cfg[k][0], hd = cfg[k][1], nh = cfg[k][2], neox = cfg[k][3];
        struct rope_table t = table(nr, neox, 10000.0, 1.0, ROPE_NONE);
        enum { N = 37 };
        size_t ld = (size_t)nh * hd + 3; /* rows apart by more than a row */
        float *src = malloc(N * ld * sizeof *src), *a = malloc(N * ld * sizeof *a);
        float *b = malloc(N * ld * sizeof *b), *c = malloc(N * ld * sizeof *c);
        float *cs = malloc((size_t)N * (nr / 2) * sizeof *cs);
        float *sn = malloc((size_t)N * (nr / 2) * sizeof *sn);
        KVT_ASSERT(src && a && b && c && cs && sn);
        for (size_t i = 0; i < N * ld; i++) src[i] = frand();
        rope_cos_sin_range(&t, 1000, N, cs, sn);
        memset(a, 0, N * ld * sizeof *a);
        memset(b, 0, N * ld * sizeof *b);
        rope_rotate_rows(&t, src, a, N, ld, nh, hd, cs, sn);
        naive_rows(&t, src, b, N, ld, nh, hd, cs, sn);
        memcpy(c, src, N * ld * sizeof *c); /* the form it replaces */
        for (int r = 0; r < N; r++)
            rope_rotate(&t, c + r * ld, nh, hd, cs + (size_t)r * (nr / 2), sn + (size_t)r * (nr / 2));
        for (int r = 0; r < N; r++) {
            size_t row = (size_t)nh * hd * sizeof(float);
            bad += memcmp(a + r * ld, b + r * ld, row) != 0;
            bad += memcmp(a + r * ld, c + r * ld, row) != 0;
            bad += a[r * ld + ld - 1] != 0.0f; /* the gap is not written */
        }
        free(src); free(a); free(b); free(c); free(cs); free(sn);
    }
    return bad;
}

/* The host's kernel set (AVX2 lanes where present). */
static void test_rotate_rows_exact(void)
{
    T_CHECK(rotate_rows_mismatches() == 0);
}

/* rope_cos_sin_range rows of a few tables and starts (beyond 16-row
 * blocks, odd pair counts), into out (RANGE_FLOATS). */
enum { RANGE_N = 45, RANGE_FLOATS = 6 * 2 * RANGE_N * 64 };
static void range_rows(float *out)
{
    static const int nrot[] = { 128, 64, 10, 34, 128, 6 };
    static const int64_t p0[] = { 0, 1024, 7, 123456, 2000000, 33 };
    for (int k = 0; k < 6; k++) {
        struct rope_table t = table(nrot[k], k % 2, k < 3 ? 10000.0 : 500000.0,
                                    k == 2 ? 4.0 : 1.0, k == 2 ? ROPE_YARN : ROPE_NONE);
        float *o = out + (size_t)k * 2 * RANGE_N * 64;
        rope_cos_sin_range(&t, p0[k], RANGE_N, o, o + RANGE_N * 64);
    }
}

/* The same in a child forced to plain C (cpu.h reads KVT_CPU once):
 * rotations right, and the very cos/sin floats of this process's set. */
static void test_rotate_rows_portable(void)
{
    int fd[2];
    T_CHECK(pipe(fd) == 0);
    fflush(NULL);
    pid_t pid = fork();
    T_CHECK(pid >= 0);
    if (pid == 0) {
        setenv("KVT_CPU", "portable", 1);
        static float rows[RANGE_FLOATS];
        memset(rows, 0, sizeof rows);
        range_rows(rows);
        size_t off = 0;
        while (off < sizeof rows) {
            ssize_t w = write(fd[1], (char *)rows + off, sizeof rows - off);
            if (w <= 0) _exit(2);
            off += (size_t)w;
        }
        _exit(rotate_rows_mismatches() == 0 ? 0 : 1);
    }
    close(fd[1]);
    static float child[RANGE_FLOATS], mine[RANGE_FLOATS];
    size_t off = 0;
    ssize_t r;
    while (off < sizeof child && (r = read(fd[0], (char *)child + off, sizeof child - off)) > 0)
        off += (size_t)r;
    close(fd[0]);
    int st = 0;
    T_CHECK(waitpid(pid, &st, 0) == pid);
    T_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    T_CHECK(off == sizeof child);
    memset(mine, 0, sizeof mine);
    range_rows(mine);
    T_CHECK(memcmp(child, mine, sizeof mine) == 0);
}

/* Rows from the cache = rope_cos_sin_range's for (pos0, n), in every case
 * the cache handles (a run, a prefix, repeated, a run past the cap, an
 * unaligned start, a longer n) and after the table changes. */
static int same_rows(rope_cache *c, const struct rope_table *t, int64_t pos0, int n)
{
    enum { MAXN = 200, MAXP = 64 };
    static float ecs[MAXN * MAXP], esn[MAXN * MAXP], bcs[MAXN * MAXP], bsn[MAXN * MAXP];
    KVT_ASSERT(n <= MAXN && t->n_rot / 2 <= MAXP);
    rope_cos_sin_range(t, pos0, n, ecs, esn);
    const float *cs, *sn;
    rope_cache_range(c, t, pos0, n, bcs, bsn, &cs, &sn);
    size_t bytes = (size_t)n * (size_t)(t->n_rot / 2) * sizeof(float);
    return memcmp(cs, ecs, bytes) == 0 && memcmp(sn, esn, bytes) == 0;
}

static void test_cache_exact(void)
{
    enum { SPAN = 64 };
    rope_cache *c;
    /* room for 3 runs of 32 pairs: 3 * (2 * 64 * 32 * 4 + 1) bytes */
    size_t cap = 3 * (2 * SPAN * 32 * 4 + 1);
    T_CHECK(rope_cache_create(SPAN, 64, cap, &c) == 0);
    T_CHECK(rope_cache_reserve(c, 10000) == 0);
    T_CHECK(rope_cache_bytes(c) == cap); /* capped at 3 runs */
    T_CHECK(rope_cache_reserve(c, 1) == 0); /* never shrinks */
    T_CHECK(rope_cache_bytes(c) == cap);
    struct rope_table t = table(64, 0, 10000.0, 1.0, ROPE_NONE);
    for (int rep = 0; rep < 2; rep++) { /* filled, then from the cache */
        T_CHECK(same_rows(c, &t, 0, SPAN));
        T_CHECK(same_rows(c, &t, 64, 17));   /* a prefix first */
        T_CHECK(same_rows(c, &t, 64, SPAN));
        T_CHECK(same_rows(c, &t, 128, 1));
        T_CHECK(same_rows(c, &t, 192, SPAN)); /* past the cap: computed */
        T_CHECK(same_rows(c, &t, 70, 20));    /* unaligned */
        T_CHECK(same_rows(c, &t, 0, 100));    /* longer than a run */
        T_CHECK(same_rows(c, &t, 0, 0));
    }
    /* another table of the same size: the cached rows must not be reused */
    struct rope_table t2 = table(64, 0, 10000.0, 4.0, ROPE_LINEAR);
    T_CHECK(same_rows(c, &t2, 64, SPAN));
    T_CHECK(same_rows(c, &t2, 0, 5));
    /* fewer pairs (n_rot 40 < 64), and NeoX: rows packed by the table */
    struct rope_table t3 = table(40, 1, 500000.0, 1.0, ROPE_NONE);
    T_CHECK(same_rows(c, &t3, 128, SPAN));
    T_CHECK(same_rows(c, &t3, 0, 33));
    T_CHECK(same_rows(c, &t, 128, SPAN));
    rope_cache_free(c);

    /* LongRoPE with n_hat inside a run: its rows switch frequencies */
    struct rope_params rp;
    rope_params_default(&rp, 64, 10000.0);
    rp.scheme = ROPE_LONGROPE;
    rp.scale = 8.0;
    rp.orig_ctx = 256;
    rp.n_hat = 100;
    rp.have_factors = 1;
    for (int i = 0; i < 32; i++) {
        rp.factors_short[i] = 1.0f + 0.1f * (float)i;
        rp.factors_long[i] = 1.0f + 0.3f * (float)i;
    }
    struct rope_table tl;
    T_CHECK(rope_prepare(&rp, 4096, &tl) == 0);
    T_CHECK(rope_cache_create(SPAN, 64, (size_t)1 << 20, &c) == 0);
    T_CHECK(rope_cache_reserve(c, 4096) == 0);
    for (int rep = 0; rep < 2; rep++)
        for (int64_t p = 0; p < 4096; p += SPAN) T_CHECK(same_rows(c, &tl, p, SPAN));
    T_CHECK(same_rows(c, &tl, 64, 50));
    rope_cache_free(c);

    /* no room for a run: everything computed, nothing allocated */
    T_CHECK(rope_cache_create(SPAN, 64, 100, &c) == 0);
    T_CHECK(rope_cache_reserve(c, 1 << 20) == 0);
    T_CHECK(rope_cache_bytes(c) == 0);
    T_CHECK(same_rows(c, &t, 0, SPAN));
    rope_cache_free(c);
    T_CHECK(rope_cache_create(0, 64, 100, &c) == KVT_ERANGE);
    T_CHECK(rope_cache_create(SPAN, 2 * ROPE_MAX_PAIRS + 2, 100, &c) == KVT_ERANGE);
    rope_cache_free(NULL);
}

int main(void)
{
    T_RUN(test_rotate_rows_portable); /* first: before this process reads KVT_CPU */
    T_RUN(test_rotate_rows_exact);
    T_RUN(test_cache_exact);
    return t_done();
}
