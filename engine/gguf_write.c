/* gguf_write.c - GGUF v3 writer. See gguf_write.h for the contract.
 *
 * Every KV is kept serialized: the bytes that follow its u32 value type in
 * the file (scalar bytes | u64 len + bytes | u32 elem + u64 n + elements).
 * Writing is then a concatenation, and the copy of a reader's value is a
 * re-serialization through the reader's public API.
 */
#include "gguf_write.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/io.h"
#include "base/kvt.h"

#define GGUF_W_DEFAULT_ALIGNMENT 32

struct gguf_w_kv {
    char *key;
    int type;        /* enum gguf_vtype */
    uint8_t *val;    /* serialized value */
    size_t val_size;
};

struct gguf_w_tensor {
    char *name;
    int type, n_dims;
    int64_t ne[4];
    const void *data; /* borrowed; NULL when fill is set */
    size_t size;
    gguf_w_fill_fn fill;
    void *fill_ctx;
};

struct gguf_w {
    struct gguf_w_kv *kv;
    int n_kv, cap_kv;
    struct gguf_w_tensor *t;
    int n_t, cap_t;
};

int gguf_w_init(gguf_w **out)
{
    KVT_ASSERT(out != NULL);
    *out = calloc(1, sizeof **out);
    return *out ? 0 : -ENOMEM;
}

void gguf_w_free(gguf_w *w)
{
    if (!w) return;
    for (int i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].val);
    }
    for (int i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->kv);
    free(w->t);
    free(w);
}


static int find_kv(const gguf_w *w, const char *key)
{
    for (int i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key, key)) return i;
    return -1;
}

/* Store KEY = (TYPE, VAL[0..size)), taking ownership of VAL (freed on
 * failure too). */
static int put_kv(gguf_w *w, const char *key, int type, uint8_t *val,
                  size_t size)
{
    KVT_ASSERT(w != NULL);
    KVT_ASSERT(key != NULL);
    int i = find_kv(w, key);
    if (i >= 0) {
        free(w->kv[i].val);
        w->kv[i].type = type;
        w->kv[i].val = val;
        w->kv[i].val_size = size;
        return 0;
    }
    if (w->n_kv == w->cap_kv) {
        int cap = w->cap_kv ? 2 * w->cap_kv : 16;
        struct gguf_w_kv *p = realloc(w->kv, (size_t)cap * sizeof *p);
        if (!p) { free(val); return -ENOMEM; }
        w->kv = p;
        w->cap_kv = cap;
    }
    char *k = strdup(key);
    if (!k) { free(val); return -ENOMEM; }
    w->kv[w->n_kv++] = (struct gguf_w_kv){ k, type, val, size };
    return 0;
}

static int put_scalar(gguf_w *w, const char *key, int type, const void *v)
{
    size_t n = gguf_vtype_size(type);
    KVT_ASSERT(n > 0);
    uint8_t *val = malloc(n);
    if (!val) return -ENOMEM;
    memcpy(val, v, n);
    return put_kv(w, key, type, val, n);
}

int gguf_w_set_u8(gguf_w *w, const char *k, uint8_t v) { return put_scalar(w, k, GGUF_VT_U8, &v); }
int gguf_w_set_i8(gguf_w *w, const char *k, int8_t v) { return put_scalar(w, k, GGUF_VT_I8, &v); }
int gguf_w_set_u16(gguf_w *w, const char *k, uint16_t v) { return put_scalar(w, k, GGUF_VT_U16, &v); }
int gguf_w_set_i16(gguf_w *w, const char *k, int16_t v) { return put_scalar(w, k, GGUF_VT_I16, &v); }
int gguf_w_set_u32(gguf_w *w, const char *k, uint32_t v) { return put_scalar(w, k, GGUF_VT_U32, &v); }
int gguf_w_set_i32(gguf_w *w, const char *k, int32_t v) { return put_scalar(w, k, GGUF_VT_I32, &v); }
int gguf_w_set_u64(gguf_w *w, const char *k, uint64_t v) { return put_scalar(w, k, GGUF_VT_U64, &v); }
int gguf_w_set_i64(gguf_w *w, const char *k, int64_t v) { return put_scalar(w, k, GGUF_VT_I64, &v); }
int gguf_w_set_f32(gguf_w *w, const char *k, float v) { return put_scalar(w, k, GGUF_VT_F32, &v); }
int gguf_w_set_f64(gguf_w *w, const char *k, double v) { return put_scalar(w, k, GGUF_VT_F64, &v); }
int gguf_w_set_bool(gguf_w *w, const char *k, int v)
{
    uint8_t b = v ? 1 : 0;
    return put_scalar(w, k, GGUF_VT_BOOL, &b);
}

int gguf_w_set_strn(gguf_w *w, const char *key, const char *s, size_t len)
{
    KVT_ASSERT(s != NULL || len == 0);
    if (len > SIZE_MAX - 8) return KVT_ERANGE;
    uint8_t *val = malloc(8 + len);
    if (!val) return -ENOMEM;
    uint64_t n = len;
    memcpy(val, &n, 8);
    if (len) memcpy(val + 8, s, len);
    return put_kv(w, key, GGUF_VT_STR, val, 8 + len);
}

int gguf_w_set_str(gguf_w *w, const char *key, const char *s)
{
    KVT_ASSERT(s != NULL);
    return gguf_w_set_strn(w, key, s, strlen(s));
}

int gguf_w_set_arr(gguf_w *w, const char *key, int elem_type,
                   const void *data, uint64_t n)
{
    size_t es = gguf_vtype_size(elem_type);
    if (es == 0) return KVT_ETYPE;
    if (n > (SIZE_MAX - 12) / es) return KVT_ERANGE;
    KVT_ASSERT(data != NULL || n == 0);
    size_t size = 12 + (size_t)n * es;
    uint8_t *val = malloc(size);
    if (!val) return -ENOMEM;
    uint32_t et = (uint32_t)elem_type;
    memcpy(val, &et, 4);
    memcpy(val + 4, &n, 8);
    if (n) memcpy(val + 12, data, (size_t)n * es);
    return put_kv(w, key, GGUF_VT_ARR, val, size);
}

int gguf_w_set_arr_str(gguf_w *w, const char *key, const char *const *s,
                       const size_t *lens, uint64_t n)
{
    KVT_ASSERT(s != NULL || n == 0);
    if (n > SIZE_MAX / 8) return KVT_ERANGE;
    size_t size = 12;
    for (uint64_t i = 0; i < n; i++) {
        size_t l = lens ? lens[i] : strlen(s[i]);
        if (l > SIZE_MAX - 8 - size) return KVT_ERANGE;
        size += 8 + l;
    }
    uint8_t *val = malloc(size);
    if (!val) return -ENOMEM;
    uint32_t et = GGUF_VT_STR;
    memcpy(val, &et, 4);
    memcpy(val + 4, &n, 8);
    size_t p = 12;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t l = lens ? lens[i] : strlen(s[i]);
        memcpy(val + p, &l, 8);
        if (l) memcpy(val + p + 8, s[i], (size_t)l);
        p += 8 + (size_t)l;
    }
    KVT_ASSERT(p == size);
    return put_kv(w, key, GGUF_VT_ARR, val, size);
}

int gguf_w_remove(gguf_w *w, const char *key)
{
    int i = find_kv(w, key);
    if (i < 0) return KVT_EMISSING;
    free(w->kv[i].key);
    free(w->kv[i].val);
    memmove(w->kv + i, w->kv + i + 1, (size_t)(w->n_kv - i - 1) * sizeof *w->kv);
    w->n_kv--;
    return 0;
}

int gguf_w_n_kv(const gguf_w *w) { return w->n_kv; }
int gguf_w_n_tensors(const gguf_w *w) { return w->n_t; }

static int find_tensor(const gguf_w *w, const char *name)
{
    for (int i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name)) return i;
    return -1;
}

/* Bytes of a tensor of TYPE and shape NE[0..n_dims), 0 if invalid. */
static size_t tensor_bytes(int type, int n_dims, const int64_t *ne)
{
    for (int d = 0; d < n_dims; d++)
        if (ne[d] <= 0) return 0;
    size_t sz = ggml_row_size(type, ne[0]);
    for (int d = 1; d < n_dims && sz; d++) {
        if ((uint64_t)ne[d] > SIZE_MAX / sz) return 0;
        sz *= (size_t)ne[d];
    }
    return sz;
}

static int add_tensor(gguf_w *w, const char *name, int type, int n_dims,
                      const int64_t *ne, const void *data, size_t size,
                      gguf_w_fill_fn fill, void *fill_ctx)
{
    KVT_ASSERT(w != NULL);
    KVT_ASSERT(name != NULL);
    KVT_ASSERT(ne != NULL);
    if (type < 0 || type >= GGML_TYPE_COUNT || ggml_block_size(type) == 0)
        return KVT_ETYPE;
    if (n_dims < 1 || n_dims > 4) return KVT_ERANGE;
    size_t want = tensor_bytes(type, n_dims, ne);
    if (want == 0 || want != size) return KVT_ERANGE;
    KVT_ASSERT((data != NULL) != (fill != NULL));
    struct gguf_w_tensor t = { NULL, type, n_dims, { 1, 1, 1, 1 }, data, size,
                               fill, fill_ctx };
    for (int d = 0; d < n_dims; d++) t.ne[d] = ne[d];
    int i = find_tensor(w, name);
    if (i >= 0) {
        t.name = w->t[i].name;
        w->t[i] = t;
        return 0;
    }
    if (w->n_t == w->cap_t) {
        int cap = w->cap_t ? 2 * w->cap_t : 16;
        struct gguf_w_tensor *p = realloc(w->t, (size_t)cap * sizeof *p);
        if (!p) return -ENOMEM;
        w->t = p;
        w->cap_t = cap;
    }
    if (!(t.name = strdup(name))) return -ENOMEM;
    w->t[w->n_t++] = t;
    return 0;
}

int gguf_w_add_tensor(gguf_w *w, const char *name, int type, int n_dims,
                      const int64_t *ne, const void *data, size_t size)
{
    return add_tensor(w, name, type, n_dims, ne, data, size, NULL, NULL);
}

int gguf_w_add_tensor_fn(gguf_w *w, const char *name, int type, int n_dims,
                         const int64_t *ne, size_t size, gguf_w_fill_fn fill,
                         void *ctx)
{
    KVT_ASSERT(fill != NULL);
    return add_tensor(w, name, type, n_dims, ne, NULL, size, fill, ctx);
}

int gguf_w_remove_tensor(gguf_w *w, const char *name)
{
    int i = find_tensor(w, name);
    if (i < 0) return KVT_EMISSING;
    free(w->t[i].name);
    memmove(w->t + i, w->t + i + 1, (size_t)(w->n_t - i - 1) * sizeof *w->t);
    w->n_t--;
    return 0;
}

/* ---- copy from a reader ------------------------------------------------- */

/* Serialize a scalar of type T holding I (integers, bool) or F (floats). */
static void pack_scalar(int t, int64_t i, double f, uint8_t *p)
{
    switch (t) {
    case GGUF_VT_U8: { uint8_t v = (uint8_t)i; memcpy(p, &v, 1); break; }
    case GGUF_VT_I8: { int8_t v = (int8_t)i; memcpy(p, &v, 1); break; }
    case GGUF_VT_BOOL: { uint8_t v = i != 0; memcpy(p, &v, 1); break; }
    case GGUF_VT_U16: { uint16_t v = (uint16_t)i; memcpy(p, &v, 2); break; }
    case GGUF_VT_I16: { int16_t v = (int16_t)i; memcpy(p, &v, 2); break; }
    case GGUF_VT_U32: { uint32_t v = (uint32_t)i; memcpy(p, &v, 4); break; }
    case GGUF_VT_I32: { int32_t v = (int32_t)i; memcpy(p, &v, 4); break; }
    case GGUF_VT_U64: { uint64_t v = (uint64_t)i; memcpy(p, &v, 8); break; }
    case GGUF_VT_I64: memcpy(p, &i, 8); break;
    case GGUF_VT_F32: { float v = (float)f; memcpy(p, &v, 4); break; }
    case GGUF_VT_F64: memcpy(p, &f, 8); break;
    default: KVT_ASSERT(0);
    }
}

static int is_float_type(int t) { return t == GGUF_VT_F32 || t == GGUF_VT_F64; }

static int copy_scalar(gguf_w *w, const gguf *g, const char *key, int t)
{
    int64_t i = 0;
    double f = 0;
    int rc = is_float_type(t) ? gguf_get_float(g, key, &f) : gguf_get_int(g, key, &i);
    if (rc < 0) return rc;
    uint8_t buf[8];
    pack_scalar(t, i, f, buf);
    return put_scalar(w, key, t, buf);
}

static int copy_arr(gguf_w *w, const gguf *g, const char *key)
{
    int et;
    uint64_t n;
    int rc = gguf_get_arr(g, key, &et, &n);
    if (rc < 0) return rc;
    if (et == GGUF_VT_STR) {
        if (n > SIZE_MAX / sizeof(char *)) return KVT_ERANGE;
        const char **s = malloc((size_t)(n ? n : 1) * sizeof *s);
        size_t *l = malloc((size_t)(n ? n : 1) * sizeof *l);
        if (!s || !l) { free(s); free(l); return -ENOMEM; }
        for (uint64_t k = 0; k < n && rc >= 0; k++)
            rc = gguf_arr_str(g, key, k, &s[k], &l[k]);
        if (rc >= 0) rc = gguf_w_set_arr_str(w, key, s, l, n);
        free(s);
        free(l);
        return rc;
    }
    size_t es = gguf_vtype_size(et);
    if (es == 0) return KVT_ETYPE; /* arrays of arrays */
    if (n > SIZE_MAX / es) return KVT_ERANGE;
    uint8_t *buf = malloc((size_t)(n ? n : 1) * es);
    if (!buf) return -ENOMEM;
    for (uint64_t k = 0; k < n && rc >= 0; k++) {
        int64_t i = 0;
        double f = 0;
        rc = is_float_type(et) ? gguf_arr_float(g, key, k, &f)
                               : gguf_arr_int(g, key, k, &i);
        if (rc >= 0) pack_scalar(et, i, f, buf + (size_t)k * es);
    }
    if (rc >= 0) rc = gguf_w_set_arr(w, key, et, buf, n);
    free(buf);
    return rc;
}

int gguf_w_copy_from(gguf_w *w, const gguf *g)
{
    KVT_ASSERT(w != NULL);
    KVT_ASSERT(g != NULL);
    int rc = 0;
    for (int i = 0; i < gguf_n_kv(g) && rc >= 0; i++) {
        const char *key = gguf_key(g, i);
        int t = gguf_kv_type(g, i);
        if (t == GGUF_VT_STR) {
            const char *s;
            size_t len;
            rc = gguf_get_str(g, key, &s, &len);
            if (rc >= 0) rc = gguf_w_set_strn(w, key, s, len);
        } else if (t == GGUF_VT_ARR) {
            rc = copy_arr(w, g, key);
        } else {
            rc = copy_scalar(w, g, key, t);
        }
    }
    for (int i = 0; i < gguf_n_tensors(g) && rc >= 0; i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        rc = gguf_w_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, t->size);
    }
    return rc < 0 ? rc : 0;
}

/* ---- writing ------------------------------------------------------------ */

/* A growable byte buffer for the header part. */
struct wbuf {
    uint8_t *p;
    size_t n, cap;
    int err;
};

static void wb_put(struct wbuf *b, const void *src, size_t n)
{
    if (b->err) return;
    if (n > b->cap - b->n) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->n < n) {
            if (cap > SIZE_MAX / 2) { b->err = KVT_ERANGE; return; }
            cap *= 2;
        }
        uint8_t *q = realloc(b->p, cap);
        if (!q) { b->err = -ENOMEM; return; }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void wb_u32(struct wbuf *b, uint32_t v) { wb_put(b, &v, 4); }
static void wb_u64(struct wbuf *b, uint64_t v) { wb_put(b, &v, 8); }
static void wb_str(struct wbuf *b, const char *s)
{
    size_t l = strlen(s);
    wb_u64(b, l);
    wb_put(b, s, l);
}

static int alignment_of(const gguf_w *w, size_t *align)
{
    *align = GGUF_W_DEFAULT_ALIGNMENT;
    int i = find_kv(w, "general.alignment");
    if (i < 0) return 0;
    const struct gguf_w_kv *kv = &w->kv[i];
    if (kv->type != GGUF_VT_U32) return KVT_ETYPE;
    uint32_t a;
    memcpy(&a, kv->val, 4);
    if (a == 0 || (a & (a - 1)) != 0) return KVT_ERANGE;
    *align = a;
    return 0;
}

/* All of buf[0..len) at OFF, retrying short writes and EINTR. */
static int write_all(int fd, const void *buf, size_t len, uint64_t off)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t r = io_sys.pwrite(fd, p, len, (off_t)off);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (r == 0) return -EIO;
        p += r;
        len -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

static size_t pad_to(size_t x, size_t a) { return (x + a - 1) / a * a; }

/* Build the header (magic .. tensor infos), computing tensor offsets. */
static int build_header(const gguf_w *w, size_t align, struct wbuf *b,
                        uint64_t *data_size)
{
    wb_put(b, "GGUF", 4);
    wb_u32(b, 3);
    wb_u64(b, (uint64_t)w->n_t);
    wb_u64(b, (uint64_t)w->n_kv);
    for (int i = 0; i < w->n_kv; i++) {
        wb_str(b, w->kv[i].key);
        wb_u32(b, (uint32_t)w->kv[i].type);
        wb_put(b, w->kv[i].val, w->kv[i].val_size);
    }
    uint64_t off = 0;
    for (int i = 0; i < w->n_t; i++) {
        const struct gguf_w_tensor *t = &w->t[i];
        wb_str(b, t->name);
        wb_u32(b, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) wb_u64(b, (uint64_t)t->ne[d]);
        wb_u32(b, (uint32_t)t->type);
        wb_u64(b, off);
        if (t->size > UINT64_MAX - off - align) return KVT_ERANGE;
        off = pad_to(off + t->size, align);
    }
    *data_size = off;
    return b->err;
}

static int write_body(const gguf_w *w, int fd, size_t align)
{
    struct wbuf b = { 0 };
    uint64_t data_size;
    int rc = build_header(w, align, &b, &data_size);
    if (rc < 0) { free(b.p); return rc; }
    size_t hdr = pad_to(b.n, align);
    uint8_t zero[64] = { 0 };
    size_t fill_max = 0;
    for (int i = 0; i < w->n_t; i++)
        if (w->t[i].fill) fill_max = KVT_MAX(fill_max, w->t[i].size);
    uint8_t *fbuf = fill_max ? malloc(fill_max) : NULL;
    rc = fill_max && !fbuf ? -ENOMEM : write_all(fd, b.p, b.n, 0);
    free(b.p);
    uint64_t pos = b.n;
    uint64_t off = 0;
    for (int i = 0; i < w->n_t && rc >= 0; i++) {
        const struct gguf_w_tensor *t = &w->t[i];
        uint64_t at = hdr + off;
        while (pos < at && rc >= 0) { /* zero padding */
            size_t n = (size_t)KVT_MIN((uint64_t)sizeof zero, at - pos);
            rc = write_all(fd, zero, n, pos);
            pos += n;
        }
        const void *src = t->data;
        if (rc >= 0 && t->fill) {
            rc = t->fill(t->fill_ctx, fbuf, t->size);
            src = fbuf;
        }
        if (rc >= 0) rc = write_all(fd, src, t->size, at);
        pos = at + t->size;
        off = pad_to(off + t->size, align);
    }
    /* Pad the last tensor too: files end on an alignment boundary. */
    uint64_t end = hdr + data_size;
    while (pos < end && rc >= 0) {
        size_t n = (size_t)KVT_MIN((uint64_t)sizeof zero, end - pos);
        rc = write_all(fd, zero, n, pos);
        pos += n;
    }
    free(fbuf);
    if (rc >= 0 && io_sys.fsync(fd) < 0) rc = -errno;
    return rc;
}

int gguf_w_write(const gguf_w *w, const char *path)
{
    KVT_ASSERT(w != NULL);
    KVT_ASSERT(path != NULL);
    size_t align;
    int rc = alignment_of(w, &align);
    if (rc < 0) return rc;
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp) return -ENOMEM;
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", 12);
    int fd = mkstemp(tmp);
    if (fd < 0) { rc = -errno; free(tmp); return rc; }
    rc = fchmod(fd, 0644) < 0 ? -errno : 0; /* mkstemp makes 0600 */
    if (rc >= 0) rc = write_body(w, fd, align);
    if (close(fd) < 0 && rc >= 0) rc = -errno;
    if (rc >= 0 && rename(tmp, path) < 0) rc = -errno;
    if (rc < 0) unlink(tmp);
    free(tmp);
    return rc < 0 ? rc : 0;
}
