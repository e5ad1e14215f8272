/* test_gguf_write.c - the GGUF writer, checked through the independent
 * reader (engine/gguf.c): every value type, string arrays, tensors of
 * F32/F16/Q8_0 with odd shapes, alignment, atomic replacement under an
 * injected ENOSPC, and a copy of the real tiny model that must hold the
 * same metadata and tensors and load with model_open. */
#include "engine/gguf_write.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/gguf.h"
#include "engine/model.h"
#include "io/io.h"
#include "base/kvt.h"
#include "tests/t.h"

static char g_dir[64];

static void path_in(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", g_dir, name);
}

static gguf *open_ok(const char *path)
{
    gguf *g = NULL;
    char err[256] = "";
    int rc = gguf_open(path, &g, err, sizeof err);
    if (rc < 0) fprintf(stderr, "  gguf_open(%s): %s\n", path, err);
    T_CHECK(rc == 0);
    return rc == 0 ? g : NULL;
}

static int str_is(const gguf *g, const char *key, const char *want, size_t wlen)
{
    const char *s;
    size_t len;
    if (gguf_get_str(g, key, &s, &len) < 0) return 0;
    return len == wlen && !memcmp(s, want, len);
}

static void test_scalars_and_strings(void)
{
    char path[128];
    path_in(path, sizeof path, "scalars.gguf");
    gguf_w *w;
    T_CHECK(gguf_w_init(&w) == 0);
    T_CHECK(gguf_w_set_u8(w, "t.u8", 250) == 0);
    T_CHECK(gguf_w_set_i8(w, "t.i8", -120) == 0);
    T_CHECK(gguf_w_set_u16(w, "t.u16", 65000) == 0);
    T_CHECK(gguf_w_set_i16(w, "t.i16", -32000) == 0);
    T_CHECK(gguf_w_set_u32(w, "t.u32", 4000000000u) == 0);
    T_CHECK(gguf_w_set_i32(w, "t.i32", -2000000000) == 0);
    T_CHECK(gguf_w_set_u64(w, "t.u64", 0x123456789abcdefULL) == 0);
    T_CHECK(gguf_w_set_i64(w, "t.i64", -0x123456789abcdefLL) == 0);
    T_CHECK(gguf_w_set_f32(w, "t.f32", 0.1f) == 0);
    T_CHECK(gguf_w_set_f64(w, "t.f64", 1.0 / 3.0) == 0);
    T_CHECK(gguf_w_set_bool(w, "t.bool", 7) == 0);
    T_CHECK(gguf_w_set_str(w, "t.str", "hello") == 0);
    T_CHECK(gguf_w_set_strn(w, "t.bin", "a\0b", 3) == 0);
    T_CHECK(gguf_w_set_str(w, "t.empty", "") == 0);
    /* replace keeps the position; remove drops the key */
    T_CHECK(gguf_w_set_str(w, "t.gone", "x") == 0);
    T_CHECK(gguf_w_set_u32(w, "t.u8", 99) == 0);
    T_CHECK(gguf_w_remove(w, "t.gone") == 0);
    T_CHECK(gguf_w_remove(w, "t.gone") == KVT_EMISSING);
    T_CHECK(gguf_w_n_kv(w) == 14);
    T_CHECK(gguf_w_write(w, path) == 0);
    gguf_w_free(w);

    gguf *g = open_ok(path);
    if (!g) return;
    T_CHECK(gguf_version(g) == 3);
    T_CHECK(gguf_n_kv(g) == 14);
    T_CHECK(gguf_n_tensors(g) == 0);
    T_CHECK(gguf_find(g, "t.u8") == 0);
    T_CHECK(gguf_find(g, "t.gone") == -1);
    static const struct { const char *k; int t; int64_t v; } ints[] = {
        { "t.u8", GGUF_VT_U32, 99 }, { "t.i8", GGUF_VT_I8, -120 },
        { "t.u16", GGUF_VT_U16, 65000 }, { "t.i16", GGUF_VT_I16, -32000 },
        { "t.u32", GGUF_VT_U32, 4000000000LL }, { "t.i32", GGUF_VT_I32, -2000000000 },
        { "t.u64", GGUF_VT_U64, 0x123456789abcdefLL },
        { "t.i64", GGUF_VT_I64, -0x123456789abcdefLL }, { "t.bool", GGUF_VT_BOOL, 1 },
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        int64_t v = 0;
        int k = gguf_find(g, ints[i].k);
        T_CHECK(k >= 0);
        if (k < 0) continue;
        T_CHECK(gguf_kv_type(g, k) == ints[i].t);
        T_CHECK(gguf_get_int(g, ints[i].k, &v) == 0);
        T_CHECK(v == ints[i].v);
    }
    double f = 0;
    T_CHECK(gguf_kv_type(g, gguf_find(g, "t.f32")) == GGUF_VT_F32);
    T_CHECK(gguf_get_float(g, "t.f32", &f) == 0 && f == (double)0.1f);
    T_CHECK(gguf_kv_type(g, gguf_find(g, "t.f64")) == GGUF_VT_F64);
    T_CHECK(gguf_get_float(g, "t.f64", &f) == 0 && f == 1.0 / 3.0);
    T_CHECK(str_is(g, "t.str", "hello", 5));
    T_CHECK(str_is(g, "t.bin", "a\0b", 3));
    T_CHECK(str_is(g, "t.empty", "", 0));
    gguf_close(g);
}

static void test_arrays(void)
{
    char path[128];
    path_in(path, sizeof path, "arrays.gguf");
    gguf_w *w;
    T_CHECK(gguf_w_init(&w) == 0);
    const uint8_t a8[3] = { 1, 2, 255 };
    const int16_t a16[4] = { -1, 2, -300, 32767 };
    const uint32_t a32[2] = { 7, 4000000000u };
    const int64_t a64[3] = { INT64_MIN, 0, INT64_MAX };
    const float af[5] = { 0.5f, -1.25f, 1e-30f, 3e30f, 0.0f };
    const double ad[2] = { 1e300, -2.5 };
    const uint8_t ab[3] = { 1, 0, 1 };
    const char *strs[4] = { "<unk>", "", "\xe2\x96\x81the", "<0x0A>" };
    T_CHECK(gguf_w_set_arr(w, "a.u8", GGUF_VT_U8, a8, 3) == 0);
    T_CHECK(gguf_w_set_arr(w, "a.i16", GGUF_VT_I16, a16, 4) == 0);
    T_CHECK(gguf_w_set_arr(w, "a.u32", GGUF_VT_U32, a32, 2) == 0);
    T_CHECK(gguf_w_set_arr(w, "a.i64", GGUF_VT_I64, a64, 3) == 0);
    T_CHECK(gguf_w_set_arr(w, "a.f32", GGUF_VT_F32, af, 5) == 0);
    T_CHECK(gguf_w_set_arr(w, "a.f64", GGUF_VT_F64, ad, 2) == 0);
    T_CHECK(gguf_w_set_arr(w, "a.bool", GGUF_VT_BOOL, ab, 3) == 0);
    T_CHECK(gguf_w_set_arr(w, "a.empty", GGUF_VT_I32, NULL, 0) == 0);
    T_CHECK(gguf_w_set_arr_str(w, "a.str", strs, NULL, 4) == 0);
    T_CHECK(gguf_w_set_arr(w, "a.bad", GGUF_VT_STR, strs, 1) == KVT_ETYPE);
    T_CHECK(gguf_w_set_arr(w, "a.bad", GGUF_VT_ARR, a8, 1) == KVT_ETYPE);
    T_CHECK(gguf_w_write(w, path) == 0);
    gguf_w_free(w);

    gguf *g = open_ok(path);
    if (!g) return;
    int et;
    uint64_t n;
    int64_t iv;
    double fv;
    T_CHECK(gguf_get_arr(g, "a.u8", &et, &n) == 0 && et == GGUF_VT_U8 && n == 3);
    for (uint64_t i = 0; i < 3; i++)
        T_CHECK(gguf_arr_int(g, "a.u8", i, &iv) == 0 && iv == a8[i]);
    T_CHECK(gguf_get_arr(g, "a.i16", &et, &n) == 0 && et == GGUF_VT_I16 && n == 4);
    for (uint64_t i = 0; i < 4; i++)
        T_CHECK(gguf_arr_int(g, "a.i16", i, &iv) == 0 && iv == a16[i]);
    T_CHECK(gguf_get_arr(g, "a.u32", &et, &n) == 0 && et == GGUF_VT_U32 && n == 2);
    T_CHECK(gguf_arr_int(g, "a.u32", 1, &iv) == 0 && iv == 4000000000LL);
    T_CHECK(gguf_get_arr(g, "a.i64", &et, &n) == 0 && et == GGUF_VT_I64 && n == 3);
    for (uint64_t i = 0; i < 3; i++)
        T_CHECK(gguf_arr_int(g, "a.i64", i, &iv) == 0 && iv == a64[i]);
    T_CHECK(gguf_get_arr(g, "a.f32", &et, &n) == 0 && et == GGUF_VT_F32 && n == 5);
    for (uint64_t i = 0; i < 5; i++)
        T_CHECK(gguf_arr_float(g, "a.f32", i, &fv) == 0 && fv == (double)af[i]);
    T_CHECK(gguf_get_arr(g, "a.f64", &et, &n) == 0 && et == GGUF_VT_F64 && n == 2);
    for (uint64_t i = 0; i < 2; i++)
        T_CHECK(gguf_arr_float(g, "a.f64", i, &fv) == 0 && fv == ad[i]);
    T_CHECK(gguf_get_arr(g, "a.bool", &et, &n) == 0 && et == GGUF_VT_BOOL && n == 3);
    T_CHECK(gguf_arr_int(g, "a.bool", 1, &iv) == 0 && iv == 0);
    T_CHECK(gguf_get_arr(g, "a.empty", &et, &n) == 0 && et == GGUF_VT_I32 && n == 0);
    T_CHECK(gguf_get_arr(g, "a.str", &et, &n) == 0 && et == GGUF_VT_STR && n == 4);
    for (uint64_t i = 0; i < 4; i++) {
        const char *s;
        size_t len;
        T_CHECK(gguf_arr_str(g, "a.str", i, &s, &len) == 0);
        T_CHECK(len == strlen(strs[i]) && !memcmp(s, strs[i], len));
    }
    T_CHECK(gguf_find(g, "a.bad") == -1);
    gguf_close(g);
}

/* fp16 bits of small integers / 8 (exact). */
static uint16_t h_of(int i) { return (uint16_t)(0x3000 + i); }

static void check_tensors(size_t align, int set_align)
{
    char path[128];
    path_in(path, sizeof path, "tensors.gguf");
    enum { NA = 3 * 5 * 7, NB = 13, NQ = 3 * 2 };
    float a[NA];
    uint16_t b[NB];
    uint8_t q[NQ * 34]; /* Q8_0 block: f16 scale + 32 x i8 */
    for (int i = 0; i < NA; i++) a[i] = (float)i * 0.5f - 7.0f;
    for (int i = 0; i < NB; i++) b[i] = h_of(i);
    for (size_t i = 0; i < sizeof q; i++) q[i] = (uint8_t)(i * 37 + 11);
    gguf_w *w;
    T_CHECK(gguf_w_init(&w) == 0);
    if (set_align) T_CHECK(gguf_w_set_u32(w, "general.alignment", (uint32_t)align) == 0);
    const int64_t na[3] = { 3, 5, 7 }, nb[2] = { 13, 1 }, nq[4] = { 64, 3, 1, 1 };
    T_CHECK(gguf_w_add_tensor(w, "a", GGML_TYPE_F32, 3, na, a, sizeof a) == 0);
    T_CHECK(gguf_w_add_tensor(w, "b", GGML_TYPE_F16, 2, nb, b, sizeof b) == 0);
    T_CHECK(gguf_w_add_tensor(w, "q", GGML_TYPE_Q8_0, 4, nq, q, sizeof q) == 0);
    /* wrong sizes and shapes are refused */
    T_CHECK(gguf_w_add_tensor(w, "x", GGML_TYPE_F32, 3, na, a, sizeof a - 4) == KVT_ERANGE);
    const int64_t bad_q[1] = { 33 };
    T_CHECK(gguf_w_add_tensor(w, "x", GGML_TYPE_Q8_0, 1, bad_q, q, 34) == KVT_ERANGE);
    T_CHECK(gguf_w_add_tensor(w, "x", GGML_TYPE_F32, 5, na, a, sizeof a) == KVT_ERANGE);
    T_CHECK(gguf_w_add_tensor(w, "x", 4, 1, na, a, 12) == KVT_ETYPE);
    T_CHECK(gguf_w_n_tensors(w) == 3);
    T_CHECK(gguf_w_write(w, path) == 0);
    gguf_w_free(w);

    struct stat st;
    T_CHECK(stat(path, &st) == 0 && (size_t)st.st_size % align == 0);
    gguf *g = open_ok(path);
    if (!g) return;
    T_CHECK(gguf_n_tensors(g) == 3);
    const gguf_tensor *ta = gguf_find_tensor(g, "a");
    const gguf_tensor *tb = gguf_find_tensor(g, "b");
    const gguf_tensor *tq = gguf_find_tensor(g, "q");
    T_CHECK(ta && tb && tq);
    if (!ta || !tb || !tq) { gguf_close(g); return; }
    T_CHECK(ta->n_dims == 3 && ta->ne[0] == 3 && ta->ne[1] == 5 && ta->ne[2] == 7 && ta->ne[3] == 1);
    T_CHECK(ta->type == GGML_TYPE_F32 && ta->size == sizeof a && !memcmp(ta->data, a, sizeof a));
    T_CHECK(tb->n_dims == 2 && tb->ne[0] == 13 && tb->ne[1] == 1);
    T_CHECK(tb->type == GGML_TYPE_F16 && tb->size == sizeof b && !memcmp(tb->data, b, sizeof b));
    T_CHECK(tq->n_dims == 4 && tq->ne[0] == 64 && tq->ne[1] == 3);
    T_CHECK(tq->type == GGML_TYPE_Q8_0 && tq->size == sizeof q && !memcmp(tq->data, q, sizeof q));
    /* the mapping is page-aligned, so data addresses show the alignment */
    T_CHECK((uintptr_t)ta->data % align == 0);
    T_CHECK((uintptr_t)tb->data % align == 0);
    T_CHECK((uintptr_t)tq->data % align == 0);
    gguf_close(g);
}

static void test_tensors_default_alignment(void) { check_tensors(32, 0); }
static void test_tensors_alignment_256(void) { check_tensors(256, 1); }

static void test_bad_alignment(void)
{
    char path[128];
    path_in(path, sizeof path, "badalign.gguf");
    gguf_w *w;
    T_CHECK(gguf_w_init(&w) == 0);
    T_CHECK(gguf_w_set_u32(w, "general.alignment", 48) == 0);
    T_CHECK(gguf_w_write(w, path) == KVT_ERANGE);
    T_CHECK(access(path, F_OK) != 0);
    gguf_w_free(w);
}

static int n_tmp_files(void)
{
    DIR *d = opendir(g_dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) n++;
    if (d) closedir(d);
    return n;
}

/* A replacement pwrite: call number g_fail_at fails with ENOSPC; every
 * call writes at most g_max_len bytes (short writes). */
static ssize_t (*g_real_pwrite)(int, const void *, size_t, off_t);
static int g_calls, g_fail_at;
static size_t g_max_len = SIZE_MAX;

static ssize_t fake_pwrite(int fd, const void *buf, size_t len, off_t off)
{
    if (++g_calls == g_fail_at) { errno = ENOSPC; return -1; }
    if (len > g_max_len) len = g_max_len;
    return g_real_pwrite(fd, buf, len, off);
}

/* ENOSPC in the middle: the old file stays whole, no temporary is left. */
static void test_atomic_replace(void)
{
    char path[128];
    path_in(path, sizeof path, "atomic.gguf");
    static float big[4096];
    for (int i = 0; i < 4096; i++) big[i] = (float)i;
    const int64_t ne[1] = { 4096 };
    gguf_w *w;
    T_CHECK(gguf_w_init(&w) == 0);
    T_CHECK(gguf_w_set_str(w, "v", "old") == 0);
    T_CHECK(gguf_w_write(w, path) == 0);
    T_CHECK(gguf_w_set_str(w, "v", "new") == 0);
    T_CHECK(gguf_w_add_tensor(w, "big", GGML_TYPE_F32, 1, ne, big, sizeof big) == 0);
    g_real_pwrite = io_sys.pwrite;
    io_sys.pwrite = fake_pwrite;
    g_calls = 0;
    g_fail_at = 2;
    T_CHECK(gguf_w_write(w, path) == -ENOSPC);
    T_CHECK(g_calls == 2);
    T_CHECK(n_tmp_files() == 0);
    gguf *g = open_ok(path);
    if (g) {
        T_CHECK(str_is(g, "v", "old", 3));
        T_CHECK(gguf_n_tensors(g) == 0);
        gguf_close(g);
    }
    /* short writes are absorbed */
    g_calls = 0;
    g_fail_at = 0;
    g_max_len = 1000;
    T_CHECK(gguf_w_write(w, path) == 0);
    T_CHECK(g_calls > (int)(sizeof big / 1000));
    io_sys.pwrite = g_real_pwrite;
    g_max_len = SIZE_MAX;
    g = open_ok(path);
    if (g) {
        T_CHECK(str_is(g, "v", "new", 3));
        T_CHECK(gguf_n_tensors(g) == 1);
        const gguf_tensor *t = gguf_find_tensor(g, "big");
        T_CHECK(t && t->size == sizeof big && !memcmp(t->data, big, sizeof big));
        gguf_close(g);
    }
    T_CHECK(gguf_w_write(w, "/nonexistent-dir-kvt/x.gguf") == -ENOENT);
    gguf_w_free(w);
}

static int fill_ramp(void *ctx, void *dst, size_t size)
{
    int *calls = ctx;
    (*calls)++;
    float *f = dst;
    for (size_t i = 0; i < size / sizeof *f; i++) f[i] = (float)i * 0.25f;
    return 0;
}

static int fill_fail(void *ctx, void *dst, size_t size)
{
    (void)ctx;
    memset(dst, 0, size);
    return -EIO;
}

/* Tensors produced at write time: the bytes of the callback land in the
 * file; a failing callback aborts the write and leaves no file. */
static void test_fill_callback(void)
{
    char path[128];
    path_in(path, sizeof path, "fill.gguf");
    gguf_w *w;
    T_CHECK(gguf_w_init(&w) == 0);
    int calls = 0;
    const int64_t ne[2] = { 100, 3 };
    T_CHECK(gguf_w_add_tensor_fn(w, "r", GGML_TYPE_F32, 2, ne, 1200, fill_ramp, &calls) == 0);
    T_CHECK(gguf_w_add_tensor_fn(w, "bad", GGML_TYPE_F32, 2, ne, 1199, fill_ramp, &calls) == KVT_ERANGE);
    T_CHECK(gguf_w_write(w, path) == 0);
    T_CHECK(calls == 1);
    gguf *g = open_ok(path);
    if (g) {
        const gguf_tensor *t = gguf_find_tensor(g, "r");
        T_CHECK(t && t->size == 1200);
        if (t) {
            const float *f = t->data;
            T_CHECK(f[0] == 0.0f && f[299] == 299 * 0.25f);
        }
        gguf_close(g);
    }
    char path2[128];
    path_in(path2, sizeof path2, "fill-fail.gguf");
    T_CHECK(gguf_w_add_tensor_fn(w, "r2", GGML_TYPE_F32, 2, ne, 1200, fill_fail, NULL) == 0);
    T_CHECK(gguf_w_write(w, path2) == -EIO);
    T_CHECK(access(path2, F_OK) != 0);
    T_CHECK(n_tmp_files() == 0);
    gguf_w_free(w);
}

/* Same key set, same types, same values, compared through the reader. */
static int same_kv(const gguf *a, const gguf *b, int i)
{
    const char *key = gguf_key(a, i);
    int j = gguf_find(b, key);
    if (j < 0 || gguf_kv_type(b, j) != gguf_kv_type(a, i)) return 0;
    int t = gguf_kv_type(a, i);
    if (t == GGUF_VT_STR) {
        const char *s;
        size_t len;
        return gguf_get_str(a, key, &s, &len) == 0 && str_is(b, key, s, len);
    }
    if (t == GGUF_VT_ARR) {
        int ea, eb;
        uint64_t na, nb;
        if (gguf_get_arr(a, key, &ea, &na) < 0 || gguf_get_arr(b, key, &eb, &nb) < 0)
            return 0;
        if (ea != eb || na != nb) return 0;
        for (uint64_t k = 0; k < na; k++) {
            const char *sa, *sb;
            size_t la, lb;
            double fa, fb;
            int64_t ia, ib;
            if (ea == GGUF_VT_STR) {
                if (gguf_arr_str(a, key, k, &sa, &la) < 0 || gguf_arr_str(b, key, k, &sb, &lb) < 0 ||
                    la != lb || memcmp(sa, sb, la))
                    return 0;
            } else if (ea == GGUF_VT_F32 || ea == GGUF_VT_F64) {
                if (gguf_arr_float(a, key, k, &fa) < 0 || gguf_arr_float(b, key, k, &fb) < 0 ||
                    memcmp(&fa, &fb, sizeof fa))
                    return 0;
            } else if (gguf_arr_int(a, key, k, &ia) < 0 || gguf_arr_int(b, key, k, &ib) < 0 || ia != ib) {
                return 0;
            }
        }
        return 1;
    }
    double fa, fb;
    int64_t ia, ib;
    if (t == GGUF_VT_F32 || t == GGUF_VT_F64)
        return gguf_get_float(a, key, &fa) == 0 && gguf_get_float(b, key, &fb) == 0 &&
               !memcmp(&fa, &fb, sizeof fa);
    return gguf_get_int(a, key, &ia) == 0 && gguf_get_int(b, key, &ib) == 0 && ia == ib;
}

static void test_copy_tiny_model(void)
{
    const char *src = T_MODEL("tiny-kjv-f32.gguf");
    char path[128];
    path_in(path, sizeof path, "copy.gguf");
    gguf *a = open_ok(src);
    if (!a) return;
    gguf_w *w;
    T_CHECK(gguf_w_init(&w) == 0);
    T_CHECK(gguf_w_copy_from(w, a) == 0);
    T_CHECK(gguf_w_n_kv(w) == gguf_n_kv(a));
    T_CHECK(gguf_w_n_tensors(w) == gguf_n_tensors(a));
    T_CHECK(gguf_w_write(w, path) == 0);
    gguf_w_free(w);

    gguf *b = open_ok(path);
    if (b) {
        T_CHECK(gguf_n_kv(b) == gguf_n_kv(a));
        int bad = 0;
        for (int i = 0; i < gguf_n_kv(a); i++) {
            if (!same_kv(a, b, i)) { bad++; fprintf(stderr, "  key %s differs\n", gguf_key(a, i)); }
            if (i < gguf_n_kv(b) && strcmp(gguf_key(a, i), gguf_key(b, i))) bad++;
        }
        T_CHECK(bad == 0);
        T_CHECK(gguf_n_tensors(b) == gguf_n_tensors(a));
        for (int i = 0; i < gguf_n_tensors(a) && i < gguf_n_tensors(b); i++) {
            const gguf_tensor *x = gguf_tensor_at(a, i), *y = gguf_tensor_at(b, i);
            T_CHECK(!strcmp(x->name, y->name));
            T_CHECK(x->type == y->type && x->n_dims == y->n_dims);
            T_CHECK(!memcmp(x->ne, y->ne, sizeof x->ne));
            T_CHECK(x->size == y->size && !memcmp(x->data, y->data, x->size));
        }
        gguf_close(b);
    }
    gguf_close(a);

    model *m = NULL, *m0 = NULL;
    char err[256] = "";
    T_CHECK(model_open(path, &m, err, sizeof err) == 0);
    T_CHECK(model_open(src, &m0, err, sizeof err) == 0);
    if (m && m0) {
        uint8_t f1[32], f2[32];
        model_fingerprint(m, f1);
        model_fingerprint(m0, f2);
        T_CHECK(!memcmp(f1, f2, 32));
        T_CHECK(model_hparams(m)->n_vocab == 1024);
    }
    model_close(m);
    model_close(m0);
}

/* A copy with edits: a replaced KV, a removed KV, an added and a replaced
 * tensor; the rest unchanged. */
static void test_copy_with_edits(void)
{
    const char *src = T_MODEL("tiny-kjv-f32.gguf");
    char path[128];
    path_in(path, sizeof path, "edit.gguf");
    gguf *a = open_ok(src);
    if (!a) return;
    gguf_w *w;
    T_CHECK(gguf_w_init(&w) == 0);
    T_CHECK(gguf_w_copy_from(w, a) == 0);
    float freqs[32], norm[256];
    for (int i = 0; i < 32; i++) freqs[i] = 1.0f + (float)i / 8.0f;
    for (int i = 0; i < 256; i++) norm[i] = 2.0f;
    const int64_t nf[1] = { 32 }, nn[1] = { 256 };
    T_CHECK(gguf_w_set_u32(w, "llama.context_length", 2048) == 0);
    int had_name = gguf_find(a, "general.name") >= 0;
    T_CHECK(had_name);
    T_CHECK(gguf_w_remove(w, "general.name") == 0);
    T_CHECK(gguf_w_add_tensor(w, "rope_freqs.weight", GGML_TYPE_F32, 1, nf, freqs, sizeof freqs) == 0);
    T_CHECK(gguf_w_add_tensor(w, "output_norm.weight", GGML_TYPE_F32, 1, nn, norm, sizeof norm) == 0);
    T_CHECK(gguf_w_write(w, path) == 0);
    gguf_w_free(w);
    gguf *b = open_ok(path);
    if (b) {
        int64_t v;
        T_CHECK(gguf_get_int(b, "llama.context_length", &v) == 0 && v == 2048);
        T_CHECK(gguf_find(b, "general.name") == -1);
        T_CHECK(gguf_n_tensors(b) == gguf_n_tensors(a) + 1);
        const gguf_tensor *t = gguf_find_tensor(b, "rope_freqs.weight");
        T_CHECK(t && t->size == sizeof freqs && !memcmp(t->data, freqs, sizeof freqs));
        t = gguf_find_tensor(b, "output_norm.weight");
        T_CHECK(t && !memcmp(t->data, norm, sizeof norm));
        const gguf_tensor *x = gguf_find_tensor(a, "token_embd.weight");
        t = gguf_find_tensor(b, "token_embd.weight");
        T_CHECK(x && t && x->size == t->size && !memcmp(x->data, t->data, x->size));
        gguf_close(b);
    }
    gguf_close(a);
    model *m = NULL;
    char err[256] = "";
    T_CHECK(model_open(path, &m, err, sizeof err) == 0);
    if (m) {
        const struct model_hparams *hp = model_hparams(m);
        T_CHECK(hp->n_ctx_train == 2048);
        T_CHECK(hp->rope.have_freq_factors == 1);
        T_CHECK(hp->rope.freq_factors[31] == freqs[31]);
    }
    model_close(m);
}

int main(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/kvt_gguf_w.XXXXXX");
    if (!mkdtemp(g_dir)) { perror("mkdtemp"); return 1; }
    T_RUN(test_scalars_and_strings);
    T_RUN(test_arrays);
    T_RUN(test_tensors_default_alignment);
    T_RUN(test_tensors_alignment_256);
    T_RUN(test_bad_alignment);
    T_RUN(test_atomic_replace);
    T_RUN(test_fill_callback);
    T_RUN(test_copy_tiny_model);
    T_RUN(test_copy_with_edits);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "  could not remove %s\n", g_dir);
    return t_done();
}
