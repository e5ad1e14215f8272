/* test_gguf.c - the GGUF reader: facts of the real tiny model, round trip
 * of a crafted file, and malformed inputs (each must give its error code,
 * never a crash). */
#include "engine/gguf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/kvt.h"
#include "tests/t.h"

static char g_dir[64];  /* temp dir for crafted files */
static char g_path[128];

/* ---- a tiny GGUF writer, independent of the reader ---------------------- */

typedef struct wbuf {
    uint8_t *p;
    size_t n, cap;
} wbuf;

static void w_bytes(wbuf *w, const void *s, size_t n)
{
    if (w->n + n > w->cap) {
        w->cap = (w->n + n) * 2 + 64;
        w->p = realloc(w->p, w->cap);
        KVT_ASSERT(w->p != NULL);
    }
    memcpy(w->p + w->n, s, n);
    w->n += n;
}
static void w_u8(wbuf *w, uint8_t v) { w_bytes(w, &v, 1); }
static void w_u32(wbuf *w, uint32_t v) { w_bytes(w, &v, 4); }
static void w_u64(wbuf *w, uint64_t v) { w_bytes(w, &v, 8); }
static void w_str(wbuf *w, const char *s)
{
    w_u64(w, strlen(s));
    w_bytes(w, s, strlen(s));
}
static void w_pad(wbuf *w, size_t align)
{
    while (w->n % align) w_u8(w, 0);
}

/* What to write; zero/NULL fields take the valid defaults. */
typedef struct spec {
    uint32_t magic, version;
    uint64_t n_tensors, n_kv;      /* overrides when != 0 */
    uint64_t key0_len;             /* override of the first key's length */
    uint64_t arr_len;              /* override of test.arr_str's count */
    uint32_t kv_type;              /* override of test.u8's value type */
    uint32_t alignment;            /* general.alignment, default 32 */
    const char *dup_key;           /* name of the last key */
    const char *b_name;            /* tensor b */
    uint32_t b_n_dims;
    uint64_t b_ne[5];
    uint32_t b_type;
    int b_type_set;
    uint64_t b_off;
    int b_off_set;
} spec;

/* Tensor a: f32 (4, 2) = 1..8 at offset 0. Tensor b: q8_0 (32) (34 bytes of
 * 0..33) at the next aligned offset. The file ends with b's data. */
static wbuf craft(const spec *s)
{
    wbuf w = {0};
    uint32_t align = s->alignment ? s->alignment : 32;
    w_u32(&w, s->magic ? s->magic : 0x46554747u);
    w_u32(&w, s->version ? s->version : 3);
    w_u64(&w, s->n_tensors ? s->n_tensors : 2);
    w_u64(&w, s->n_kv ? s->n_kv : 12);
    /* 1 */
    if (s->key0_len) {
        w_u64(&w, s->key0_len);
        w_bytes(&w, "general.architecture", 20);
    } else {
        w_str(&w, "general.architecture");
    }
    w_u32(&w, GGUF_VT_STR);
    w_str(&w, "llama");
    /* 2..8 scalars */
    w_str(&w, "test.u8");
    w_u32(&w, s->kv_type ? s->kv_type : GGUF_VT_U8);
    w_u8(&w, 200);
    w_str(&w, "test.i16");
    w_u32(&w, GGUF_VT_I16);
    int16_t i16 = -12345;
    w_bytes(&w, &i16, 2);
    w_str(&w, "test.u64big");
    w_u32(&w, GGUF_VT_U64);
    w_u64(&w, UINT64_MAX);
    w_str(&w, "test.i64");
    w_u32(&w, GGUF_VT_I64);
    w_u64(&w, (uint64_t)-5);
    w_str(&w, "test.f32");
    w_u32(&w, GGUF_VT_F32);
    float f = 0.25f;
    w_bytes(&w, &f, 4);
    w_str(&w, "test.f64");
    w_u32(&w, GGUF_VT_F64);
    double d = -1.5e300;
    w_bytes(&w, &d, 8);
    w_str(&w, "test.bool");
    w_u32(&w, GGUF_VT_BOOL);
    w_u8(&w, 1);
    /* 9: array of strings */
    w_str(&w, "test.arr_str");
    w_u32(&w, GGUF_VT_ARR);
    w_u32(&w, GGUF_VT_STR);
    w_u64(&w, s->arr_len ? s->arr_len : 3);
    w_str(&w, "zero");
    w_str(&w, "");
    w_str(&w, "two\xe2\x96\x81");
    /* 10: array of i32 */
    w_str(&w, "test.arr_i32");
    w_u32(&w, GGUF_VT_ARR);
    w_u32(&w, GGUF_VT_I32);
    w_u64(&w, 3);
    int32_t ai[3] = {7, -8, 9};
    w_bytes(&w, ai, sizeof ai);
    /* 11: nested: array of 2 arrays of strings */
    w_str(&w, "test.nested");
    w_u32(&w, GGUF_VT_ARR);
    w_u32(&w, GGUF_VT_ARR);
    w_u64(&w, 2);
    for (int i = 0; i < 2; i++) {
        w_u32(&w, GGUF_VT_STR);
        w_u64(&w, 2);
        w_str(&w, "x");
        w_str(&w, "yy");
    }
    /* 12 */
    w_str(&w, s->dup_key ? s->dup_key : "general.alignment");
    w_u32(&w, GGUF_VT_U32);
    w_u32(&w, align);
    /* tensor infos */
    w_str(&w, "a");
    w_u32(&w, 2);
    w_u64(&w, 4);
    w_u64(&w, 2);
    w_u32(&w, GGML_TYPE_F32);
    w_u64(&w, 0);
    uint64_t b_off = s->b_off_set ? s->b_off : (32 + align - 1) / align * align;
    w_str(&w, s->b_name ? s->b_name : "b");
    uint32_t nd = s->b_n_dims ? s->b_n_dims : 1;
    w_u32(&w, nd);
    for (uint32_t i = 0; i < nd && i < 5; i++)
        w_u64(&w, s->b_ne[i] || s->b_n_dims ? s->b_ne[i] : 32);
    w_u32(&w, s->b_type_set ? s->b_type : GGML_TYPE_Q8_0);
    w_u64(&w, b_off);
    w_pad(&w, align);
    for (int i = 1; i <= 8; i++) {
        float v = (float)i;
        w_bytes(&w, &v, 4);
    }
    if (!s->b_off_set) {
        while (w.n % align) w_u8(&w, 0);
        for (int i = 0; i < 34; i++) w_u8(&w, (uint8_t)i);
    }
    return w;
}

static const char *write_tmp(const void *p, size_t n)
{
    FILE *f = fopen(g_path, "wb");
    KVT_ASSERT(f != NULL);
    KVT_ASSERT(fwrite(p, 1, n, f) == n);
    fclose(f);
    return g_path;
}

/* Open bytes P[0..n) as a file; @return gguf_open's code. */
static int open_bytes(const void *p, size_t n, char *err, size_t cap)
{
    gguf *g = NULL;
    int rc = gguf_open(write_tmp(p, n), &g, err, cap);
    if (rc == 0) {
        KVT_ASSERT(g != NULL);
        gguf_close(g);
    } else {
        KVT_ASSERT(g == NULL);
    }
    return rc;
}

static int open_spec(const spec *s, char *err, size_t cap)
{
    wbuf w = craft(s);
    int rc = open_bytes(w.p, w.n, err, cap);
    free(w.p);
    return rc;
}

/* Expect code WANT for spec S; print the message on a mismatch. */
#define EXPECT(s, want)                                                      \
    do {                                                                     \
        char err_[256] = "";                                                 \
        int rc_ = open_spec(&(s), err_, sizeof err_);                        \
        if (rc_ != (want))                                                   \
            fprintf(stderr, "  got %d (%s): %s\n", rc_, kvt_strerror(rc_),   \
                    err_);                                                   \
        T_CHECK(rc_ == (want));                                              \
        T_CHECK(rc_ == 0 || err_[0] != '\0');                                \
    } while (0)

/* ---- tests --------------------------------------------------------------- */

static void test_type_table(void)
{
    T_CHECK(ggml_row_size(GGML_TYPE_F32, 256) == 1024);
    T_CHECK(ggml_row_size(GGML_TYPE_F16, 10) == 20);
    T_CHECK(ggml_row_size(GGML_TYPE_BF16, 3) == 6);
    T_CHECK(ggml_row_size(GGML_TYPE_Q4_0, 64) == 36);
    T_CHECK(ggml_row_size(GGML_TYPE_Q4_1, 32) == 20);
    T_CHECK(ggml_row_size(GGML_TYPE_Q5_0, 32) == 22);
    T_CHECK(ggml_row_size(GGML_TYPE_Q5_1, 32) == 24);
    T_CHECK(ggml_row_size(GGML_TYPE_Q8_0, 256) == 272);
    T_CHECK(ggml_row_size(GGML_TYPE_Q8_1, 32) == 36);
    T_CHECK(ggml_row_size(GGML_TYPE_Q2_K, 256) == 84);
    T_CHECK(ggml_row_size(GGML_TYPE_Q3_K, 256) == 110);
    T_CHECK(ggml_row_size(GGML_TYPE_Q4_K, 512) == 288);
    T_CHECK(ggml_row_size(GGML_TYPE_Q5_K, 256) == 176);
    T_CHECK(ggml_row_size(GGML_TYPE_Q6_K, 256) == 210);
    T_CHECK(ggml_row_size(GGML_TYPE_Q8_K, 256) == 292);
    /* sizes of ggml's block structs (ggml-common.h) */
    T_CHECK(ggml_row_size(GGML_TYPE_IQ4_NL, 64) == 36);
    T_CHECK(ggml_row_size(GGML_TYPE_IQ4_XS, 512) == 272);
    T_CHECK(ggml_row_size(GGML_TYPE_IQ2_XXS, 256) == 66);
    T_CHECK(ggml_row_size(GGML_TYPE_IQ2_XS, 256) == 74);
    T_CHECK(ggml_row_size(GGML_TYPE_IQ2_S, 256) == 82);
    T_CHECK(ggml_row_size(GGML_TYPE_IQ3_XXS, 256) == 98);
    T_CHECK(ggml_row_size(GGML_TYPE_IQ3_S, 256) == 110);
    T_CHECK(ggml_row_size(GGML_TYPE_IQ1_S, 256) == 50);
    T_CHECK(ggml_row_size(GGML_TYPE_IQ1_M, 256) == 56);
    T_CHECK(ggml_row_size(GGML_TYPE_TQ1_0, 256) == 54);
    T_CHECK(ggml_row_size(GGML_TYPE_TQ2_0, 256) == 66);
    T_CHECK(ggml_row_size(GGML_TYPE_I8, 3) == 3);
    T_CHECK(ggml_row_size(GGML_TYPE_F64, 3) == 24);
    T_CHECK(ggml_row_size(GGML_TYPE_IQ4_NL, 48) == 0);
    T_CHECK(ggml_row_size(31, 32) == 0);                /* removed types */
    T_CHECK(ggml_row_size(36, 32) == 0);
    T_CHECK(strcmp(ggml_type_name(GGML_TYPE_IQ4_XS), "iq4_xs") == 0);
    T_CHECK(strcmp(ggml_type_name(GGML_TYPE_Q3_K), "q3_K") == 0);
    T_CHECK(ggml_row_size(GGML_TYPE_Q4_0, 33) == 0);  /* not whole blocks */
    T_CHECK(ggml_row_size(GGML_TYPE_Q4_K, 128) == 0);
    T_CHECK(ggml_row_size(4, 32) == 0);                /* removed type */
    T_CHECK(ggml_row_size(99, 32) == 0);
    T_CHECK(ggml_row_size(-1, 32) == 0);
    T_CHECK(ggml_block_size(GGML_TYPE_Q6_K) == 256);
    T_CHECK(ggml_block_size(GGML_TYPE_F32) == 1);
    T_CHECK(ggml_block_size(GGML_TYPE_COUNT) == 0);
    T_CHECK(strcmp(ggml_type_name(GGML_TYPE_Q4_K), "q4_K") == 0);
    T_CHECK(strcmp(ggml_type_name(GGML_TYPE_F16), "f16") == 0);
    T_CHECK(strcmp(ggml_type_name(77), "unknown") == 0);
}

static void test_real_model(void)
{
    gguf *g;
    char err[256];
    int rc = gguf_open("models/tiny-kjv-f32.gguf", &g, err, sizeof err);
    T_CHECK(rc == 0);
    if (rc < 0) return;
    T_CHECK(gguf_version(g) == 3);
    T_CHECK(gguf_file_size(g) == 13730592);
    const char *s;
    size_t len;
    T_CHECK(gguf_get_str(g, "general.architecture", &s, &len) == 0);
    T_CHECK(len == 5 && memcmp(s, "llama", 5) == 0);
    int64_t v;
    T_CHECK(gguf_get_int(g, "llama.context_length", &v) == 0 && v == 256);
    T_CHECK(gguf_get_int(g, "llama.embedding_length", &v) == 0 && v == 256);
    T_CHECK(gguf_get_int(g, "llama.block_count", &v) == 0 && v == 4);
    T_CHECK(gguf_get_int(g, "llama.attention.head_count_kv", &v) == 0 && v == 2);
    T_CHECK(gguf_get_int(g, "tokenizer.ggml.add_bos_token", &v) == 0 && v == 1);
    double d;
    T_CHECK(gguf_get_float(g, "llama.attention.layer_norm_rms_epsilon", &d) == 0);
    T_NEAR(d, 1e-5, 1e-12);
    T_CHECK(gguf_get_float(g, "llama.rope.freq_base", &d) == 0 && d == 10000.0);
    T_CHECK(gguf_get_float(g, "llama.block_count", &d) == 0 && d == 4.0);
    T_CHECK(gguf_get_int(g, "no.such.key", &v) == KVT_EMISSING);
    T_CHECK(gguf_find(g, "no.such.key") == -1);
    T_CHECK(gguf_find(g, "general.architecture") == 0);
    T_CHECK(gguf_kv_type(g, 0) == GGUF_VT_STR);
    T_CHECK(strcmp(gguf_key(g, 0), "general.architecture") == 0);
    int et;
    uint64_t n;
    T_CHECK(gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n) == 0);
    T_CHECK(et == GGUF_VT_STR && n == 1024);
    T_CHECK(gguf_arr_str(g, "tokenizer.ggml.tokens", 1, &s, &len) == 0);
    T_CHECK(len == 3 && memcmp(s, "<s>", 3) == 0);
    T_CHECK(gguf_arr_str(g, "tokenizer.ggml.tokens", 1024, &s, &len) == KVT_ERANGE);
    T_CHECK(gguf_arr_int(g, "tokenizer.ggml.token_type", 1, &v) == 0 && v == 3);
    T_CHECK(gguf_arr_str(g, "tokenizer.ggml.scores", 0, &s, &len) == KVT_ETYPE);
    T_CHECK(gguf_get_int(g, "general.architecture", &v) == KVT_ETYPE);
    /* tensors: 2 + 9 per layer */
    T_CHECK(gguf_n_tensors(g) == 3 + 9 * 4);
    const gguf_tensor *t = gguf_find_tensor(g, "token_embd.weight");
    T_CHECK(t != NULL);
    if (t) {
        T_CHECK(t->n_dims == 2 && t->ne[0] == 256 && t->ne[1] == 1024);
        T_CHECK(t->ne[2] == 1 && t->ne[3] == 1);
        T_CHECK(t->type == GGML_TYPE_F32 && t->size == 256 * 1024 * 4);
        T_CHECK(((uintptr_t)t->data % 32) == 0);
    }
    t = gguf_find_tensor(g, "blk.3.ffn_down.weight");
    T_CHECK(t && t->ne[0] == 688 && t->ne[1] == 256);
    T_CHECK(gguf_find_tensor(g, "blk.4.ffn_down.weight") == NULL);
    /* tensors do not overlap and lie inside the file */
    int ok = 1;
    for (int i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor *a = gguf_tensor_at(g, i);
        if (gguf_find_tensor(g, a->name) != a) ok = 0;
        for (int j = i + 1; j < gguf_n_tensors(g); j++) {
            const gguf_tensor *b = gguf_tensor_at(g, j);
            const char *pa = a->data, *pb = b->data;
            if (pa < pb + b->size && pb < pa + a->size) ok = 0;
        }
    }
    T_CHECK(ok);
    gguf_close(g);
    gguf_close(NULL);
}

static float f16_to_f32(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 1023;
    float v = e == 0 ? ldexpf((float)m, -24) : ldexpf((float)(m | 1024), e - 25);
    return (h & 0x8000) ? -v : v;
}

/* The f16 model holds the f32 model's weights rounded: data offsets are
 * right if the two agree. */
static void test_f16_matches_f32(void)
{
    gguf *a, *b;
    T_CHECK(gguf_open("models/tiny-kjv-f32.gguf", &a, NULL, 0) == 0);
    T_CHECK(gguf_open("models/tiny-kjv-f16.gguf", &b, NULL, 0) == 0);
    if (!a || !b) {
        gguf_close(a);
        gguf_close(b);
        return;
    }
    const gguf_tensor *ta = gguf_find_tensor(a, "blk.2.attn_v.weight");
    const gguf_tensor *tb = gguf_find_tensor(b, "blk.2.attn_v.weight");
    T_CHECK(ta && tb && tb->type == GGML_TYPE_F16 && tb->size * 2 == ta->size);
    if (ta && tb) {
        const float *fa = ta->data;
        const uint16_t *hb = tb->data;
        double maxd = 0, maxv = 0;
        for (size_t i = 0; i < ta->size / 4; i++) {
            maxd = fmax(maxd, fabs(fa[i] - f16_to_f32(hb[i])));
            maxv = fmax(maxv, fabs(fa[i]));
        }
        T_CHECK(maxv > 0.01);
        T_CHECK(maxd <= maxv / 1024);
    }
    gguf_close(a);
    gguf_close(b);
}

static void test_all_models_open(void)
{
    static const char *const files[] = {
        "models/tiny-kjv-f16.gguf", "models/tiny-kjv-q4_0.gguf",
        "models/tiny-kjv-q4_k_m.gguf", "models/tiny-kjv-q6_k.gguf",
        "models/tiny-kjv-q8_0.gguf", "models/tiny-kjv-phi3-longrope-x8-f32.gguf",
        "tests/data/vocab/ggml-vocab-gpt-2.gguf",
    };
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        gguf *g;
        char err[256];
        int rc = gguf_open(files[i], &g, err, sizeof err);
        if (rc < 0) fprintf(stderr, "  %s: %s\n", files[i], err);
        T_CHECK(rc == 0);
        if (rc < 0) continue;
        for (int j = 0; j < gguf_n_tensors(g); j++) {
            const gguf_tensor *t = gguf_tensor_at(g, j);
            size_t rows = (size_t)(t->ne[1] * t->ne[2] * t->ne[3]);
            T_CHECK(t->size == ggml_row_size(t->type, t->ne[0]) * rows);
        }
        gguf_close(g);
    }
    const gguf_tensor *t;
    gguf *g;
    T_CHECK(gguf_open("models/tiny-kjv-q4_k_m.gguf", &g, NULL, 0) == 0);
    t = g ? gguf_find_tensor(g, "token_embd.weight") : NULL;
    T_CHECK(t && t->type == GGML_TYPE_Q4_K && t->size == 144 * 1024);
    gguf_close(g);
}

static void test_crafted_roundtrip(void)
{
    spec s = {0};
    wbuf w = craft(&s);
    gguf *g;
    char err[256];
    int rc = gguf_open(write_tmp(w.p, w.n), &g, err, sizeof err);
    if (rc < 0) fprintf(stderr, "  %s\n", err);
    T_CHECK(rc == 0);
    free(w.p);
    if (rc < 0) return;
    int64_t v;
    double d;
    const char *str;
    size_t len;
    int et;
    uint64_t n;
    T_CHECK(gguf_n_kv(g) == 12);
    T_CHECK(gguf_get_int(g, "test.u8", &v) == 0 && v == 200);
    T_CHECK(gguf_get_int(g, "test.i16", &v) == 0 && v == -12345);
    T_CHECK(gguf_get_int(g, "test.u64big", &v) == KVT_ERANGE);
    T_CHECK(gguf_get_float(g, "test.u64big", &d) == 0 && d == 18446744073709551615.0);
    T_CHECK(gguf_get_int(g, "test.i64", &v) == 0 && v == -5);
    T_CHECK(gguf_get_int(g, "test.bool", &v) == 0 && v == 1);
    T_CHECK(gguf_get_float(g, "test.bool", &d) == KVT_ETYPE);
    T_CHECK(gguf_get_int(g, "test.f32", &v) == KVT_ETYPE);
    T_CHECK(gguf_get_float(g, "test.f32", &d) == 0 && d == 0.25);
    T_CHECK(gguf_get_float(g, "test.f64", &d) == 0 && d == -1.5e300);
    T_CHECK(gguf_get_float(g, "test.i16", &d) == 0 && d == -12345.0);
    T_CHECK(gguf_get_str(g, "test.u8", &str, &len) == KVT_ETYPE);
    T_CHECK(gguf_get_arr(g, "test.u8", &et, &n) == KVT_ETYPE);
    T_CHECK(gguf_get_arr(g, "test.arr_str", &et, &n) == 0 && et == GGUF_VT_STR && n == 3);
    T_CHECK(gguf_arr_str(g, "test.arr_str", 0, &str, &len) == 0 && len == 4 &&
            memcmp(str, "zero", 4) == 0);
    T_CHECK(gguf_arr_str(g, "test.arr_str", 1, &str, &len) == 0 && len == 0);
    T_CHECK(gguf_arr_str(g, "test.arr_str", 2, &str, &len) == 0 && len == 6 &&
            memcmp(str, "two\xe2\x96\x81", 6) == 0);
    T_CHECK(gguf_arr_str(g, "test.arr_str", 3, &str, &len) == KVT_ERANGE);
    T_CHECK(gguf_arr_int(g, "test.arr_str", 0, &v) == KVT_ETYPE);
    T_CHECK(gguf_arr_int(g, "test.arr_i32", 1, &v) == 0 && v == -8);
    T_CHECK(gguf_arr_float(g, "test.arr_i32", 2, &d) == 0 && d == 9.0);
    T_CHECK(gguf_arr_int(g, "test.arr_i32", 3, &v) == KVT_ERANGE);
    T_CHECK(gguf_arr_int(g, "missing", 0, &v) == KVT_EMISSING);
    T_CHECK(gguf_get_arr(g, "test.nested", &et, &n) == 0 && et == GGUF_VT_ARR && n == 2);
    T_CHECK(gguf_arr_str(g, "test.nested", 0, &str, &len) == KVT_ETYPE);
    T_CHECK(gguf_arr_int(g, "test.nested", 0, &v) == KVT_ETYPE);
    T_CHECK(gguf_n_tensors(g) == 2);
    const gguf_tensor *a = gguf_find_tensor(g, "a"), *b = gguf_find_tensor(g, "b");
    T_CHECK(a && a->n_dims == 2 && a->ne[0] == 4 && a->ne[1] == 2 && a->size == 32);
    T_CHECK(a && ((const float *)a->data)[7] == 8.0f);
    T_CHECK(b && b->type == GGML_TYPE_Q8_0 && b->size == 34 && b->ne[1] == 1);
    T_CHECK(b && ((const uint8_t *)b->data)[33] == 33);
    T_CHECK(a && b && (const uint8_t *)b->data == (const uint8_t *)a->data + 32);
    gguf_close(g);
    /* the same with alignment 64 */
    s.alignment = 64;
    EXPECT(s, 0);
}

/* Every proper prefix of a crafted file is truncated. */
static void test_every_prefix(void)
{
    spec s = {0};
    wbuf w = craft(&s);
    int bad = 0;
    for (size_t n = 0; n < w.n; n++) {
        char err[256];
        int rc = open_bytes(w.p, n, err, sizeof err);
        if (rc != KVT_ETRUNC && bad++ < 5)
            fprintf(stderr, "  prefix %zu: %d %s\n", n, rc, err);
    }
    T_CHECK(bad == 0);
    T_CHECK(open_bytes(w.p, w.n, NULL, 0) == 0);
    free(w.p);
}

static void test_real_prefixes(void)
{
    FILE *f = fopen("models/tiny-kjv-f32.gguf", "rb");
    T_CHECK(f != NULL);
    if (!f) return;
    size_t size = 13730592;
    uint8_t *p = malloc(size);
    T_CHECK(fread(p, 1, size, f) == size);
    fclose(f);
    static const size_t cuts[] = {0, 3, 4, 8, 23, 24, 100, 1000, 5000, 20000};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++)
        T_CHECK(open_bytes(p, cuts[i], NULL, 0) == KVT_ETRUNC);
    char err[256];
    T_CHECK(open_bytes(p, size - 1, err, sizeof err) == KVT_ETRUNC);
    T_CHECK(strstr(err, "past the end of the file") != NULL);
    /* flip the version to 1 and 2 */
    p[4] = 1;
    T_CHECK(open_bytes(p, 4096, NULL, 0) == KVT_EVERSION);
    free(p);
}

static void test_malformed(void)
{
    spec s;
    char err[256];
    s = (spec){.magic = 0x4c4d4747}; /* "GGML" */
    T_CHECK(open_spec(&s, err, sizeof err) == KVT_EFORMAT);
    T_CHECK(strstr(err, "bad magic") != NULL);
    s = (spec){.version = 1};
    EXPECT(s, KVT_EVERSION);
    s = (spec){.version = 99};
    EXPECT(s, KVT_EVERSION);
    s = (spec){.version = 2}; /* v2 has the same layout */
    EXPECT(s, 0);
    s = (spec){.n_tensors = (uint64_t)1 << 62};
    EXPECT(s, KVT_EFORMAT);
    s = (spec){.n_kv = (uint64_t)1 << 62};
    EXPECT(s, KVT_EFORMAT);
    s = (spec){.n_kv = UINT64_MAX};
    EXPECT(s, KVT_EFORMAT);
    s = (spec){.key0_len = (uint64_t)1 << 62};
    EXPECT(s, KVT_EFORMAT);
    s = (spec){.key0_len = UINT64_MAX};
    EXPECT(s, KVT_EFORMAT);
    s = (spec){.key0_len = 100000}; /* plausible but past the end */
    EXPECT(s, KVT_ETRUNC);
    s = (spec){.arr_len = (uint64_t)1 << 62};
    EXPECT(s, KVT_EFORMAT);
    s = (spec){.arr_len = 1000000};
    EXPECT(s, KVT_ETRUNC);
    s = (spec){.kv_type = 13};
    EXPECT(s, KVT_EFORMAT);
    s = (spec){.dup_key = "test.u8"};
    EXPECT(s, KVT_EFORMAT);
    s = (spec){.alignment = 48};
    EXPECT(s, KVT_EFORMAT);
    s = (spec){.b_n_dims = 5, .b_ne = {32, 1, 1, 1, 1}};
    EXPECT(s, KVT_EFORMAT);
    s = (spec){0};
    {
        /* n_dims 0: craft writes 1 when 0, so patch by hand */
        wbuf w = craft(&s);
        size_t at = 0;
        for (size_t i = 0; i + 9 < w.n; i++)
            if (memcmp(w.p + i, "\x01\0\0\0\0\0\0\0b\x01\0\0\0", 13) == 0) at = i + 9;
        T_CHECK(at != 0);
        if (at) w.p[at] = 0;
        T_CHECK(open_bytes(w.p, w.n, NULL, 0) == KVT_EFORMAT);
        free(w.p);
    }
    s = (spec){.b_n_dims = 2, .b_ne = {32, 0}};
    EXPECT(s, KVT_EFORMAT);
    s = (spec){.b_n_dims = 1, .b_ne = {0}};
    EXPECT(s, KVT_EFORMAT);
    s = (spec){.b_n_dims = 3, .b_ne = {32, (uint64_t)1 << 40, (uint64_t)1 << 40}};
    EXPECT(s, KVT_EFORMAT);
    s = (spec){.b_n_dims = 2, .b_ne = {32, UINT64_MAX}};
    EXPECT(s, KVT_EFORMAT);
    s = (spec){.b_n_dims = 2, .b_ne = {32, (uint64_t)1 << 57}}; /* bytes overflow */
    EXPECT(s, KVT_EFORMAT);
    s = (spec){.b_n_dims = 1, .b_ne = {33}};   /* not whole q8_0 blocks */
    EXPECT(s, KVT_EFORMAT);
    s = (spec){.b_type = 99, .b_type_set = 1};
    EXPECT(s, KVT_ETYPE);
    s = (spec){.b_type = 4, .b_type_set = 1};  /* removed Q4_2 */
    EXPECT(s, KVT_ETYPE);
    s = (spec){.b_off = 33, .b_off_set = 1};
    EXPECT(s, KVT_EFORMAT);
    s = (spec){.b_off = 64, .b_off_set = 1};   /* data past the end */
    T_CHECK(open_spec(&s, err, sizeof err) == KVT_ETRUNC);
    T_CHECK(strstr(err, "'b'") && strstr(err, "past the end"));
    s = (spec){.b_off = (uint64_t)1 << 62, .b_off_set = 1};
    EXPECT(s, KVT_EFORMAT);
    s = (spec){.b_off = UINT64_MAX - 31, .b_off_set = 1};
    EXPECT(s, KVT_EFORMAT);
    s = (spec){.b_name = "a"};
    T_CHECK(open_spec(&s, err, sizeof err) == KVT_EFORMAT);
    T_CHECK(strstr(err, "duplicate") != NULL);
    /* missing file, directory */
    gguf *g = (gguf *)1;
    T_CHECK(gguf_open("tests/data/no-such.gguf", &g, err, sizeof err) == -ENOENT);
    T_CHECK(g == NULL);
    T_CHECK(gguf_open("tests", &g, NULL, 0) < 0);
    /* tiny err buffer: truncated message, still terminated */
    s = (spec){.version = 1};
    char small[8];
    T_CHECK(open_spec(&s, small, sizeof small) == KVT_EVERSION);
    T_CHECK(strlen(small) == 7);
}

/* Seeded random mutations of a crafted file: any outcome but a crash. */
static void test_mutations(void)
{
    spec s = {0};
    wbuf w = craft(&s);
    uint8_t *m = malloc(w.n);
    uint64_t seed = 0x9E3779B97F4A7C15ull, x = seed;
    int ok = 0, bad_code = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(m, w.p, w.n);
        int flips = 1 + (int)(x % 4);
        for (int k = 0; k < flips; k++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            size_t at = (size_t)(x % w.n);
            uint8_t v = (uint8_t)(x >> 32);
            m[at] = (x >> 40) & 1 ? v : (uint8_t)(m[at] ^ (1u << (v & 7)));
        }
        int rc = open_bytes(m, w.n, NULL, 0);
        if (rc == 0) ok++;
        else if (rc != KVT_EFORMAT && rc != KVT_ETRUNC && rc != KVT_ETYPE &&
                 rc != KVT_EVERSION) {
            if (bad_code++ < 3) fprintf(stderr, "  seed %llx it %d: rc %d\n",
                                        (unsigned long long)seed, it, rc);
        }
    }
    T_CHECK(bad_code == 0);
    T_CHECK(ok > 0 && ok < 3000);
    free(m);
    free(w.p);
}

int main(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/test_gguf.XXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(g_path, sizeof g_path, "%s/t.gguf", g_dir);
    T_RUN(test_type_table);
    T_RUN(test_real_model);
    T_RUN(test_f16_matches_f32);
    T_RUN(test_all_models_open);
    T_RUN(test_crafted_roundtrip);
    T_RUN(test_every_prefix);
    T_RUN(test_real_prefixes);
    T_RUN(test_malformed);
    T_RUN(test_mutations);
    unlink(g_path);
    rmdir(g_dir);
    return t_done();
}
