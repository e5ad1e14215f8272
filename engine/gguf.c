/* gguf.c - read-only, memory-mapped GGUF reader (see gguf.h).
 *
 * Parsing walks the mapping once with a bounds-checked cursor. Error
 * classes:
 *   KVT_ETRUNC   a read (or a plausible count/length/data range) runs past
 *                the end of the file: what a cut-off download looks like;
 *   KVT_EFORMAT  bad magic, absurd counts (more than GGUF_ABSURD), bad
 *                n_dims / ne / alignment / offsets, duplicates, bad value
 *                types;
 *   KVT_EVERSION version other than 2 or 3;
 *   KVT_ETYPE    a tensor type this reader does not know;
 *   -errno       open/fstat/mmap failure.
 */
#include "engine/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "base/kvt.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf.c reads little-endian files by memcpy: little-endian hosts only"
#endif

#define GGUF_MAGIC 0x46554747u /* "GGUF" read as a little-endian u32 */
#define GGUF_DEFAULT_ALIGNMENT 32
/* Counts and lengths above this are malformed, not merely truncated. */
#define GGUF_ABSURD ((uint64_t)1 << 48)
#define GGUF_MAX_KV ((uint64_t)1 << 24)
#define GGUF_MAX_TENSORS ((uint64_t)1 << 24)
#define GGUF_MAX_ARR_DEPTH 4
#define GGUF_MAX_ALIGNMENT ((uint64_t)1 << 30)

/* ---- type table ---------------------------------------------------------- */

typedef struct ggml_type_info {
    const char *name;
    int block;      /* elements per block */
    int block_size; /* bytes per block */
} ggml_type_info;

static const ggml_type_info ggml_types[GGML_TYPE_COUNT] = {
    [GGML_TYPE_F32] = {"f32", 1, 4},      [GGML_TYPE_F16] = {"f16", 1, 2},
    [GGML_TYPE_BF16] = {"bf16", 1, 2},    [GGML_TYPE_Q4_0] = {"q4_0", 32, 18},
    [GGML_TYPE_Q4_1] = {"q4_1", 32, 20},  [GGML_TYPE_Q5_0] = {"q5_0", 32, 22},
    [GGML_TYPE_Q5_1] = {"q5_1", 32, 24},  [GGML_TYPE_Q8_0] = {"q8_0", 32, 34},
    [GGML_TYPE_Q8_1] = {"q8_1", 32, 36},  [GGML_TYPE_Q2_K] = {"q2_K", 256, 84},
    [GGML_TYPE_Q3_K] = {"q3_K", 256, 110}, [GGML_TYPE_Q4_K] = {"q4_K", 256, 144},
    [GGML_TYPE_Q5_K] = {"q5_K", 256, 176}, [GGML_TYPE_Q6_K] = {"q6_K", 256, 210},
    [GGML_TYPE_Q8_K] = {"q8_K", 256, 292},
    /* Known to the reader (so files load and errors name the type), not
     * all supported by the products (matmul.h lists those). */
    [GGML_TYPE_IQ2_XXS] = {"iq2_xxs", 256, 66}, [GGML_TYPE_IQ2_XS] = {"iq2_xs", 256, 74},
    [GGML_TYPE_IQ3_XXS] = {"iq3_xxs", 256, 98}, [GGML_TYPE_IQ1_S] = {"iq1_s", 256, 50},
    [GGML_TYPE_IQ4_NL] = {"iq4_nl", 32, 18},    [GGML_TYPE_IQ3_S] = {"iq3_s", 256, 110},
    [GGML_TYPE_IQ2_S] = {"iq2_s", 256, 82},     [GGML_TYPE_IQ4_XS] = {"iq4_xs", 256, 136},
    [GGML_TYPE_I8] = {"i8", 1, 1},   [GGML_TYPE_I16] = {"i16", 1, 2},
    [GGML_TYPE_I32] = {"i32", 1, 4}, [GGML_TYPE_I64] = {"i64", 1, 8},
    [GGML_TYPE_F64] = {"f64", 1, 8}, [GGML_TYPE_IQ1_M] = {"iq1_m", 256, 56},
    [GGML_TYPE_TQ1_0] = {"tq1_0", 256, 54}, [GGML_TYPE_TQ2_0] = {"tq2_0", 256, 66},
};

int ggml_block_size(int type)
{
    if (type < 0 || type >= GGML_TYPE_COUNT) return 0;
    return ggml_types[type].block;
}

size_t ggml_row_size(int type, int64_t n)
{
    int blk = ggml_block_size(type);
    if (blk == 0 || n < 0 || n % blk != 0) return 0;
    uint64_t nb = (uint64_t)n / (uint64_t)blk;
    uint64_t bs = (uint64_t)ggml_types[type].block_size;
    if (nb > SIZE_MAX / bs) return 0;
    return (size_t)(nb * bs);
}

const char *ggml_type_name(int type)
{
    if (ggml_block_size(type) == 0) return "unknown";
    return ggml_types[type].name;
}

/* ---- handle -------------------------------------------------------------- */

typedef struct gguf_kv {
    char *key;              /* NUL-terminated copy */
    int type;               /* enum gguf_vtype */
    const uint8_t *val;     /* scalar / string (u64 len | bytes) in the map */
    int elem_type;          /* arrays: element type */
    uint64_t n;             /* arrays: element count */
    const uint8_t *arr;     /* arrays: first element in the map */
    uint64_t *str_off;      /* string arrays: n offsets (from map) of each
                               element's u64 length prefix */
} gguf_kv;

/* Open-addressing set of indices keyed by a name; slots hold index + 1. */
typedef struct gguf_index {
    int32_t *slot;
    size_t mask;
} gguf_index;

struct gguf {
    const uint8_t *map;
    size_t size;
    uint32_t version;
    int n_kv;
    gguf_kv *kv;
    int n_tensors;
    gguf_tensor *tensors;
    gguf_index kv_index;
    gguf_index tensor_index;
    size_t alignment;
    size_t data_start;
};

/* ---- error text and cursor ---------------------------------------------- */

typedef struct gguf_cur {
    const uint8_t *p;
    size_t size;
    size_t pos;
    char *err;
    size_t err_cap;
} gguf_cur;

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int gguf_fail(gguf_cur *c, int code, const char *fmt, ...)
{
    if (c->err && c->err_cap > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err, c->err_cap, fmt, ap);
        va_end(ap);
    }
    return code;
}

static size_t gguf_left(const gguf_cur *c) { return c->size - c->pos; }

static int gguf_need(gguf_cur *c, size_t n, const char *what)
{
    if (n > gguf_left(c))
        return gguf_fail(c, KVT_ETRUNC,
                         "truncated: %s needs %zu bytes at offset %zu, "
                         "file size %zu", what, n, c->pos, c->size);
    return 0;
}

static int gguf_rd_u32(gguf_cur *c, uint32_t *v, const char *what)
{
    int rc = gguf_need(c, 4, what);
    if (rc < 0) return rc;
    memcpy(v, c->p + c->pos, 4);
    c->pos += 4;
    return 0;
}

static int gguf_rd_u64(gguf_cur *c, uint64_t *v, const char *what)
{
    int rc = gguf_need(c, 8, what);
    if (rc < 0) return rc;
    memcpy(v, c->p + c->pos, 8);
    c->pos += 8;
    return 0;
}

/* Check a count N of items at least MIN_BYTES each against the file. */
static int gguf_check_count(gguf_cur *c, uint64_t n, uint64_t limit,
                            size_t min_bytes, const char *what)
{
    if (n > limit)
        return gguf_fail(c, KVT_EFORMAT, "absurd %s %llu at offset %zu",
                         what, (unsigned long long)n, c->pos);
    if (min_bytes > 0 && n > gguf_left(c) / min_bytes)
        return gguf_fail(c, KVT_ETRUNC,
                         "truncated: %s %llu needs at least %llu bytes at "
                         "offset %zu, file size %zu", what,
                         (unsigned long long)n,
                         (unsigned long long)(n * min_bytes), c->pos,
                         c->size);
    return 0;
}

/* A string: u64 len | bytes. Returns its bytes (in the map) and length. */
static int gguf_rd_str(gguf_cur *c, const uint8_t **s, size_t *len,
                       const char *what)
{
    uint64_t n;
    int rc = gguf_rd_u64(c, &n, what);
    if (rc < 0) return rc;
    rc = gguf_check_count(c, n, GGUF_ABSURD, 1, what);
    if (rc < 0) return rc;
    *s = c->p + c->pos;
    *len = (size_t)n;
    c->pos += (size_t)n;
    return 0;
}

static char *gguf_strdup_n(const uint8_t *s, size_t len)
{
    char *d = malloc(len + 1);
    if (!d) return NULL;
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

/* Bytes of one scalar of value type T, 0 for strings/arrays/unknown. */
size_t gguf_vtype_size(int t)
{
    switch (t) {
    case GGUF_VT_U8: case GGUF_VT_I8: case GGUF_VT_BOOL: return 1;
    case GGUF_VT_U16: case GGUF_VT_I16: return 2;
    case GGUF_VT_U32: case GGUF_VT_I32: case GGUF_VT_F32: return 4;
    case GGUF_VT_U64: case GGUF_VT_I64: case GGUF_VT_F64: return 8;
    default: return 0;
    }
}

/* ---- name index ---------------------------------------------------------- */

static uint64_t gguf_hash(const char *s) { return XXH3_64bits(s, strlen(s)); }

static int gguf_index_init(gguf_index *ix, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    ix->slot = calloc(cap, sizeof *ix->slot);
    ix->mask = cap - 1;
    return ix->slot ? 0 : -ENOMEM;
}

/* Slot for NAME: holds 0 (free) or index + 1 of the entry named NAME.
 * NAMES(i) returns the name of entry i. */
static int32_t *gguf_index_slot(const gguf_index *ix, const char *name,
                                const char *(*names)(const gguf *, int),
                                const gguf *g)
{
    size_t h = (size_t)gguf_hash(name) & ix->mask;
    for (;;) {
        int32_t v = ix->slot[h];
        if (v == 0 || strcmp(names(g, v - 1), name) == 0) return &ix->slot[h];
        h = (h + 1) & ix->mask;
    }
}

static const char *gguf_kv_name(const gguf *g, int i) { return g->kv[i].key; }
static const char *gguf_tensor_name(const gguf *g, int i)
{
    return g->tensors[i].name;
}

/* ---- metadata parsing ---------------------------------------------------- */

/* Skip/validate one array body (u32 elem_type | u64 n | elems). For string
 * arrays with STR_OFF != NULL, allocate and fill *STR_OFF. */
static int gguf_parse_arr(gguf_cur *c, int depth, int *elem_type, uint64_t *n,
                          uint64_t **str_off)
{
    uint32_t et;
    uint64_t cnt;
    int rc = gguf_rd_u32(c, &et, "array element type");
    if (rc < 0) return rc;
    if (et >= GGUF_VT_COUNT)
        return gguf_fail(c, KVT_EFORMAT, "bad array element type %u at "
                         "offset %zu", et, c->pos - 4);
    rc = gguf_rd_u64(c, &cnt, "array length");
    if (rc < 0) return rc;
    *elem_type = (int)et;
    *n = cnt;
    size_t es = gguf_vtype_size((int)et);
    if (es > 0) {
        rc = gguf_check_count(c, cnt, GGUF_ABSURD, es, "array length");
        if (rc < 0) return rc;
        c->pos += (size_t)cnt * es;
        return 0;
    }
    if (et == GGUF_VT_STR) {
        rc = gguf_check_count(c, cnt, GGUF_ABSURD, 8, "string array length");
        if (rc < 0) return rc;
        uint64_t *off = NULL;
        if (str_off) {
            off = malloc((cnt ? cnt : 1) * sizeof *off);
            if (!off) return -ENOMEM;
        }
        for (uint64_t i = 0; i < cnt; i++) {
            const uint8_t *s;
            size_t len;
            if (off) off[i] = c->pos;
            rc = gguf_rd_str(c, &s, &len, "array string");
            if (rc < 0) {
                free(off);
                return rc;
            }
        }
        if (str_off) *str_off = off;
        return 0;
    }
    /* Nested arrays: validated and skipped; accessors reject them. */
    if (depth >= GGUF_MAX_ARR_DEPTH)
        return gguf_fail(c, KVT_EFORMAT, "arrays nested deeper than %d",
                         GGUF_MAX_ARR_DEPTH);
    rc = gguf_check_count(c, cnt, GGUF_ABSURD, 12, "nested array length");
    if (rc < 0) return rc;
    for (uint64_t i = 0; i < cnt; i++) {
        int et2;
        uint64_t n2;
        rc = gguf_parse_arr(c, depth + 1, &et2, &n2, NULL);
        if (rc < 0) return rc;
    }
    return 0;
}

static int gguf_parse_kv(gguf_cur *c, gguf_kv *kv)
{
    const uint8_t *ks;
    size_t klen;
    uint32_t t;
    int rc = gguf_rd_str(c, &ks, &klen, "key");
    if (rc < 0) return rc;
    if (klen == 0 || memchr(ks, 0, klen))
        return gguf_fail(c, KVT_EFORMAT, "empty key or key with a NUL byte "
                         "at offset %zu", c->pos - klen);
    kv->key = gguf_strdup_n(ks, klen);
    if (!kv->key) return -ENOMEM;
    rc = gguf_rd_u32(c, &t, "value type");
    if (rc < 0) return rc;
    if (t >= GGUF_VT_COUNT)
        return gguf_fail(c, KVT_EFORMAT, "key '%s' has bad value type %u",
                         kv->key, t);
    kv->type = (int)t;
    kv->val = c->p + c->pos;
    if (t == GGUF_VT_STR) {
        const uint8_t *s;
        size_t len;
        return gguf_rd_str(c, &s, &len, "string value");
    }
    if (t == GGUF_VT_ARR) {
        rc = gguf_parse_arr(c, 0, &kv->elem_type, &kv->n, &kv->str_off);
        if (rc < 0) return rc;
        kv->arr = kv->val + 12;
        return 0;
    }
    size_t es = gguf_vtype_size((int)t);
    if ((rc = gguf_need(c, es, "scalar value")) < 0) return rc;
    c->pos += es;
    return 0;
}

/* ---- tensor infos -------------------------------------------------------- */

static int gguf_parse_tensor(gguf_cur *c, gguf_tensor *t, uint64_t *offset)
{
    const uint8_t *ns;
    size_t nlen;
    uint32_t nd, type;
    int rc = gguf_rd_str(c, &ns, &nlen, "tensor name");
    if (rc < 0) return rc;
    if (nlen == 0 || memchr(ns, 0, nlen))
        return gguf_fail(c, KVT_EFORMAT, "empty tensor name or name with a "
                         "NUL byte at offset %zu", c->pos - nlen);
    t->name = gguf_strdup_n(ns, nlen);
    if (!t->name) return -ENOMEM;
    rc = gguf_rd_u32(c, &nd, "n_dims");
    if (rc < 0) return rc;
    if (nd < 1 || nd > 4)
        return gguf_fail(c, KVT_EFORMAT, "tensor '%s' has n_dims %u (want "
                         "1..4)", t->name, nd);
    t->n_dims = (int)nd;
    int64_t prod = 1;
    for (int i = 0; i < 4; i++) t->ne[i] = 1;
    for (uint32_t i = 0; i < nd; i++) {
        uint64_t ne;
        rc = gguf_rd_u64(c, &ne, "tensor dimension");
        if (rc < 0) return rc;
        if (ne < 1 || ne > (uint64_t)INT64_MAX)
            return gguf_fail(c, KVT_EFORMAT, "tensor '%s' ne[%u] = %llu is "
                             "out of range", t->name, i,
                             (unsigned long long)ne);
        if ((int64_t)ne > INT64_MAX / prod)
            return gguf_fail(c, KVT_EFORMAT, "tensor '%s': element count "
                             "overflows", t->name);
        prod *= (int64_t)ne;
        t->ne[i] = (int64_t)ne;
    }
    rc = gguf_rd_u32(c, &type, "tensor type");
    if (rc < 0) return rc;
    if (ggml_block_size((int)type) == 0)
        return gguf_fail(c, KVT_ETYPE, "tensor '%s' has unsupported type %u",
                         t->name, type);
    t->type = (int)type;
    if (t->ne[0] % ggml_block_size(t->type) != 0)
        return gguf_fail(c, KVT_EFORMAT, "tensor '%s': ne[0] = %lld is not "
                         "a multiple of the %s block size %d", t->name,
                         (long long)t->ne[0], ggml_type_name(t->type),
                         ggml_block_size(t->type));
    size_t row = ggml_row_size(t->type, t->ne[0]);
    uint64_t rows = (uint64_t)(prod / t->ne[0]);
    if (row == 0 || rows > SIZE_MAX / row)
        return gguf_fail(c, KVT_EFORMAT, "tensor '%s': byte size overflows",
                         t->name);
    t->size = row * (size_t)rows;
    return gguf_rd_u64(c, offset, "tensor offset");
}

/* Check tensor data ranges and point each tensor into the map. */
static int gguf_place_tensors(gguf *g, gguf_cur *c, const uint64_t *offs)
{
    if (g->n_tensors == 0) return 0;
    if (g->data_start > g->size)
        return gguf_fail(c, KVT_ETRUNC, "truncated: tensor data would start "
                         "at %zu, file size %zu", g->data_start, g->size);
    size_t avail = g->size - g->data_start;
    for (int i = 0; i < g->n_tensors; i++) {
        gguf_tensor *t = &g->tensors[i];
        uint64_t off = offs[i];
        if (off % g->alignment != 0)
            return gguf_fail(c, KVT_EFORMAT, "tensor '%s' offset %llu is not "
                             "aligned to %zu", t->name,
                             (unsigned long long)off, g->alignment);
        if (off > GGUF_ABSURD || t->size > GGUF_ABSURD)
            return gguf_fail(c, KVT_EFORMAT, "tensor '%s' data [%llu, +%zu) "
                             "is absurd", t->name, (unsigned long long)off,
                             t->size);
        if (off > avail || t->size > avail - off)
            return gguf_fail(c, KVT_ETRUNC, "tensor '%s' data [%llu, %llu) is "
                             "past the end of the file (size %zu)", t->name,
                             (unsigned long long)(g->data_start + off),
                             (unsigned long long)(g->data_start + off +
                                                  t->size), g->size);
        t->data = g->map + g->data_start + off;
    }
    return 0;
}

static int gguf_read_alignment(gguf *g, gguf_cur *c)
{
    int64_t a;
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    int rc = gguf_get_int(g, "general.alignment", &a);
    if (rc == KVT_EMISSING) return 0;
    if (rc < 0 || a <= 0 || (uint64_t)a > GGUF_MAX_ALIGNMENT ||
        (a & (a - 1)) != 0)
        return gguf_fail(c, KVT_EFORMAT, "general.alignment is not a power "
                         "of two in 1..2^30");
    g->alignment = (size_t)a;
    return 0;
}

static int gguf_parse(gguf *g, gguf_cur *c)
{
    uint32_t magic, version;
    uint64_t n_tensors, n_kv;
    int rc = gguf_rd_u32(c, &magic, "magic");
    if (rc < 0) return rc;
    if (magic != GGUF_MAGIC)
        return gguf_fail(c, KVT_EFORMAT, "bad magic 0x%08x: not a GGUF file",
                         magic);
    if ((rc = gguf_rd_u32(c, &version, "version")) < 0) return rc;
    if (version != 2 && version != 3)
        return gguf_fail(c, KVT_EVERSION, "GGUF version %u (want 2 or 3)",
                         version);
    g->version = version;
    if ((rc = gguf_rd_u64(c, &n_tensors, "n_tensors")) < 0) return rc;
    if ((rc = gguf_rd_u64(c, &n_kv, "n_kv")) < 0) return rc;
    /* Minimum bytes: kv = key len 8 + type 4 + 1; tensor = 8+4+8+4+8. */
    if ((rc = gguf_check_count(c, n_kv, GGUF_MAX_KV, 13, "n_kv")) < 0)
        return rc;
    g->kv = calloc(n_kv ? n_kv : 1, sizeof *g->kv);
    if (!g->kv) return -ENOMEM;
    if ((rc = gguf_index_init(&g->kv_index, n_kv)) < 0) return rc;
    for (uint64_t i = 0; i < n_kv; i++) {
        g->n_kv = (int)i + 1; /* so close frees a partial entry */
        if ((rc = gguf_parse_kv(c, &g->kv[i])) < 0) return rc;
        int32_t *s = gguf_index_slot(&g->kv_index, g->kv[i].key,
                                     gguf_kv_name, g);
        if (*s != 0)
            return gguf_fail(c, KVT_EFORMAT, "duplicate key '%s'",
                             g->kv[i].key);
        *s = (int32_t)i + 1;
    }
    if ((rc = gguf_read_alignment(g, c)) < 0) return rc;

    if ((rc = gguf_check_count(c, n_tensors, GGUF_MAX_TENSORS, 32,
                               "n_tensors")) < 0)
        return rc;
    g->tensors = calloc(n_tensors ? n_tensors : 1, sizeof *g->tensors);
    uint64_t *offs = malloc((n_tensors ? n_tensors : 1) * sizeof *offs);
    if (!g->tensors || !offs) {
        free(offs);
        return -ENOMEM;
    }
    if ((rc = gguf_index_init(&g->tensor_index, n_tensors)) < 0) goto out;
    for (uint64_t i = 0; i < n_tensors; i++) {
        g->n_tensors = (int)i + 1;
        gguf_tensor *t = &g->tensors[i];
        if ((rc = gguf_parse_tensor(c, t, &offs[i])) < 0) goto out;
        int32_t *s = gguf_index_slot(&g->tensor_index, t->name,
                                     gguf_tensor_name, g);
        if (*s != 0) {
            rc = gguf_fail(c, KVT_EFORMAT, "duplicate tensor name '%s'",
                           t->name);
            goto out;
        }
        *s = (int32_t)i + 1;
    }
    size_t pad = (g->alignment - c->pos % g->alignment) % g->alignment;
    g->data_start = c->pos + pad; /* c->pos <= size < SIZE_MAX - 2^30 */
    rc = gguf_place_tensors(g, c, offs);
out:
    free(offs);
    return rc;
}

int gguf_open(const char *path, gguf **out, char *err, size_t err_cap)
{
    KVT_ASSERT(path != NULL);
    KVT_ASSERT(out != NULL);
    *out = NULL;
    if (err && err_cap) err[0] = '\0';
    gguf_cur c = {.err = err, .err_cap = err_cap};

    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return gguf_fail(&c, -e, "cannot open: %s", strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return gguf_fail(&c, -e, "cannot stat: %s", strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return gguf_fail(&c, -EINVAL, "not a regular file");
    }
    if ((uint64_t)st.st_size > GGUF_ABSURD) {
        close(fd);
        return gguf_fail(&c, -EFBIG, "file is too large");
    }
    gguf *g = calloc(1, sizeof *g);
    if (!g) {
        close(fd);
        return -ENOMEM;
    }
    g->size = (size_t)st.st_size;
    if (g->size > 0) {
        void *m = mmap(NULL, g->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            free(g);
            return gguf_fail(&c, -e, "cannot mmap: %s", strerror(e));
        }
        g->map = m;
    }
    close(fd);
    c.p = g->map;
    c.size = g->size;
    int rc = gguf_parse(g, &c);
    if (rc < 0) {
        if (rc == -ENOMEM) gguf_fail(&c, rc, "out of memory");
        gguf_close(g);
        return rc;
    }
    *out = g;
    return 0;
}

void gguf_close(gguf *g)
{
    if (!g) return;
    for (int i = 0; i < g->n_kv; i++) {
        free(g->kv[i].key);
        free(g->kv[i].str_off);
    }
    free(g->kv);
    for (int i = 0; i < g->n_tensors; i++) free((char *)g->tensors[i].name);
    free(g->tensors);
    free(g->kv_index.slot);
    free(g->tensor_index.slot);
    if (g->map) munmap((void *)g->map, g->size);
    free(g);
}

uint32_t gguf_version(const gguf *g) { return g->version; }
size_t gguf_file_size(const gguf *g) { return g->size; }

/* ---- metadata access ----------------------------------------------------- */

int gguf_n_kv(const gguf *g) { return g->n_kv; }

const char *gguf_key(const gguf *g, int i)
{
    KVT_ASSERT(i >= 0 && i < g->n_kv);
    return g->kv[i].key;
}

int gguf_find(const gguf *g, const char *key)
{
    KVT_ASSERT(key != NULL);
    if (!g->kv_index.slot) return -1;
    int32_t v = *gguf_index_slot(&g->kv_index, key, gguf_kv_name, g);
    return v - 1;
}

int gguf_kv_type(const gguf *g, int i)
{
    KVT_ASSERT(i >= 0 && i < g->n_kv);
    return g->kv[i].type;
}

/* Read one scalar of type T at P. @return 0, or KVT_ETYPE if T is not a
 * number (or bool when ALLOW_BOOL). Integers go to *I (with *IS_INT = 1),
 * floats to *F. U64 above INT64_MAX -> KVT_ERANGE. */
static int gguf_scalar(int t, const uint8_t *p, int allow_bool, int64_t *i,
                       double *f, int *is_int)
{
    *is_int = 1;
    switch (t) {
    case GGUF_VT_U8: { uint8_t v; memcpy(&v, p, 1); *i = v; return 0; }
    case GGUF_VT_I8: { int8_t v; memcpy(&v, p, 1); *i = v; return 0; }
    case GGUF_VT_U16: { uint16_t v; memcpy(&v, p, 2); *i = v; return 0; }
    case GGUF_VT_I16: { int16_t v; memcpy(&v, p, 2); *i = v; return 0; }
    case GGUF_VT_U32: { uint32_t v; memcpy(&v, p, 4); *i = v; return 0; }
    case GGUF_VT_I32: { int32_t v; memcpy(&v, p, 4); *i = v; return 0; }
    case GGUF_VT_I64: { int64_t v; memcpy(&v, p, 8); *i = v; return 0; }
    case GGUF_VT_U64: {
        uint64_t v;
        memcpy(&v, p, 8);
        if (v > (uint64_t)INT64_MAX) return KVT_ERANGE;
        *i = (int64_t)v;
        return 0;
    }
    case GGUF_VT_BOOL:
        if (!allow_bool) return KVT_ETYPE;
        *i = p[0] != 0;
        return 0;
    case GGUF_VT_F32: { float v; memcpy(&v, p, 4); *f = v; *is_int = 0; return 0; }
    case GGUF_VT_F64: { double v; memcpy(&v, p, 8); *f = v; *is_int = 0; return 0; }
    default: return KVT_ETYPE;
    }
}

static const gguf_kv *gguf_lookup(const gguf *g, const char *key)
{
    int i = gguf_find(g, key);
    return i < 0 ? NULL : &g->kv[i];
}

static int gguf_to_int(int t, const uint8_t *p, int64_t *out)
{
    int64_t i;
    double f;
    int is_int;
    int rc = gguf_scalar(t, p, 1, &i, &f, &is_int);
    if (rc < 0) return rc;
    if (!is_int) return KVT_ETYPE;
    *out = i;
    return 0;
}

static int gguf_to_float(int t, const uint8_t *p, double *out)
{
    int64_t i;
    double f;
    int is_int;
    if (t == GGUF_VT_U64) { /* full range as a double */
        uint64_t v;
        memcpy(&v, p, 8);
        *out = (double)v;
        return 0;
    }
    int rc = gguf_scalar(t, p, 0, &i, &f, &is_int);
    if (rc < 0) return rc;
    *out = is_int ? (double)i : f;
    return 0;
}

int gguf_get_int(const gguf *g, const char *key, int64_t *out)
{
    const gguf_kv *kv = gguf_lookup(g, key);
    if (!kv) return KVT_EMISSING;
    return gguf_to_int(kv->type, kv->val, out);
}

int gguf_get_float(const gguf *g, const char *key, double *out)
{
    const gguf_kv *kv = gguf_lookup(g, key);
    if (!kv) return KVT_EMISSING;
    return gguf_to_float(kv->type, kv->val, out);
}

static void gguf_str_at(const uint8_t *p, const char **s, size_t *len)
{
    uint64_t n;
    memcpy(&n, p, 8);
    *s = (const char *)p + 8;
    *len = (size_t)n;
}

int gguf_get_str(const gguf *g, const char *key, const char **s, size_t *len)
{
    const gguf_kv *kv = gguf_lookup(g, key);
    if (!kv) return KVT_EMISSING;
    if (kv->type != GGUF_VT_STR) return KVT_ETYPE;
    gguf_str_at(kv->val, s, len);
    return 0;
}

int gguf_get_arr(const gguf *g, const char *key, int *elem_type, uint64_t *n)
{
    const gguf_kv *kv = gguf_lookup(g, key);
    if (!kv) return KVT_EMISSING;
    if (kv->type != GGUF_VT_ARR) return KVT_ETYPE;
    *elem_type = kv->elem_type;
    *n = kv->n;
    return 0;
}

int gguf_arr_str(const gguf *g, const char *key, uint64_t i, const char **s,
                 size_t *len)
{
    const gguf_kv *kv = gguf_lookup(g, key);
    if (!kv) return KVT_EMISSING;
    if (kv->type != GGUF_VT_ARR || kv->elem_type != GGUF_VT_STR)
        return KVT_ETYPE;
    if (i >= kv->n) return KVT_ERANGE;
    gguf_str_at(g->map + kv->str_off[i], s, len);
    return 0;
}

/* Element I of a numeric array: its type and address. */
static int gguf_arr_elem(const gguf *g, const char *key, uint64_t i, int *t,
                         const uint8_t **p)
{
    const gguf_kv *kv = gguf_lookup(g, key);
    if (!kv) return KVT_EMISSING;
    if (kv->type != GGUF_VT_ARR) return KVT_ETYPE;
    size_t es = gguf_vtype_size(kv->elem_type);
    if (es == 0) return KVT_ETYPE;
    if (i >= kv->n) return KVT_ERANGE;
    *t = kv->elem_type;
    *p = kv->arr + i * es;
    return 0;
}

int gguf_arr_int(const gguf *g, const char *key, uint64_t i, int64_t *out)
{
    int t;
    const uint8_t *p;
    int rc = gguf_arr_elem(g, key, i, &t, &p);
    if (rc < 0) return rc;
    return gguf_to_int(t, p, out);
}

int gguf_arr_float(const gguf *g, const char *key, uint64_t i, double *out)
{
    int t;
    const uint8_t *p;
    int rc = gguf_arr_elem(g, key, i, &t, &p);
    if (rc < 0) return rc;
    return gguf_to_float(t, p, out);
}

/* ---- tensors ------------------------------------------------------------- */

int gguf_n_tensors(const gguf *g) { return g->n_tensors; }

const gguf_tensor *gguf_tensor_at(const gguf *g, int i)
{
    KVT_ASSERT(i >= 0 && i < g->n_tensors);
    return &g->tensors[i];
}

const gguf_tensor *gguf_find_tensor(const gguf *g, const char *name)
{
    KVT_ASSERT(name != NULL);
    if (!g->tensor_index.slot) return NULL;
    int32_t v = *gguf_index_slot(&g->tensor_index, name, gguf_tensor_name, g);
    return v == 0 ? NULL : &g->tensors[v - 1];
}
