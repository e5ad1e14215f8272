/* gguf.h - read-only, memory-mapped GGUF (v2, v3) files.
 *
 * File format (little-endian), as the reader checks it:
 *   u32 magic "GGUF" | u32 version (2 or 3) | u64 n_tensors | u64 n_kv
 *   n_kv x { str key | u32 value_type | value }
 *       str   = u64 len | len bytes (not NUL-terminated)
 *       value = scalar | str | array (u32 elem_type | u64 n | n x elem)
 *   n_tensors x { str name | u32 n_dims (1..4) | n_dims x u64 ne |
 *                 u32 ggml_type | u64 offset }
 *   padding to general.alignment (default 32) | tensor data
 * A tensor's data is at data_start + offset and holds
 * ggml_row_size(type, ne[0]) * ne[1] * ne[2] * ne[3] bytes; ne[0] is the
 * contiguous (row) dimension.
 *
 * Every count, length, dimension and offset is checked against the file
 * size and for overflow before use: a GGUF is untrusted input.
 */
#ifndef KVT_GGUF_H
#define KVT_GGUF_H

#include <stddef.h>
#include <stdint.h>

/* Metadata value types. */
enum gguf_vtype {
    GGUF_VT_U8 = 0, GGUF_VT_I8 = 1, GGUF_VT_U16 = 2, GGUF_VT_I16 = 3,
    GGUF_VT_U32 = 4, GGUF_VT_I32 = 5, GGUF_VT_F32 = 6, GGUF_VT_BOOL = 7,
    GGUF_VT_STR = 8, GGUF_VT_ARR = 9, GGUF_VT_U64 = 10, GGUF_VT_I64 = 11,
    GGUF_VT_F64 = 12, GGUF_VT_COUNT
};

/* Tensor element types (ggml numbering). */
enum ggml_type {
    GGML_TYPE_F32 = 0, GGML_TYPE_F16 = 1, GGML_TYPE_Q4_0 = 2,
    GGML_TYPE_Q4_1 = 3, GGML_TYPE_Q5_0 = 6, GGML_TYPE_Q5_1 = 7,
    GGML_TYPE_Q8_0 = 8, GGML_TYPE_Q8_1 = 9, GGML_TYPE_Q2_K = 10,
    GGML_TYPE_Q3_K = 11, GGML_TYPE_Q4_K = 12, GGML_TYPE_Q5_K = 13,
    GGML_TYPE_Q6_K = 14, GGML_TYPE_Q8_K = 15, GGML_TYPE_IQ2_XXS = 16,
    GGML_TYPE_IQ2_XS = 17, GGML_TYPE_IQ3_XXS = 18, GGML_TYPE_IQ1_S = 19,
    GGML_TYPE_IQ4_NL = 20, GGML_TYPE_IQ3_S = 21, GGML_TYPE_IQ2_S = 22,
    GGML_TYPE_IQ4_XS = 23, GGML_TYPE_I8 = 24, GGML_TYPE_I16 = 25,
    GGML_TYPE_I32 = 26, GGML_TYPE_I64 = 27, GGML_TYPE_F64 = 28,
    GGML_TYPE_IQ1_M = 29, GGML_TYPE_BF16 = 30, GGML_TYPE_TQ1_0 = 34,
    GGML_TYPE_TQ2_0 = 35, GGML_TYPE_COUNT = 40
};

typedef struct gguf gguf;

typedef struct gguf_tensor {
    const char *name;     /* NUL-terminated copy, owned by the gguf */
    int n_dims;           /* 1..4 */
    int64_t ne[4];        /* ne[0] = row length; unused dims are 1 */
    int type;             /* enum ggml_type */
    const void *data;     /* inside the mapping */
    size_t size;          /* bytes of data */
} gguf_tensor;

/* Open and validate PATH. On failure returns < 0 and writes a one-line
 * reason (without the path) to err[err_cap]. */
int gguf_open(const char *path, gguf **out, char *err, size_t err_cap);
void gguf_close(gguf *g); /* NULL is a no-op */

uint32_t gguf_version(const gguf *g);
size_t gguf_file_size(const gguf *g);

/* Metadata. Lookups return < 0 (KVT_EMISSING) when the key is absent and
 * KVT_ETYPE when it has a type that cannot be converted. */
int gguf_n_kv(const gguf *g);
const char *gguf_key(const gguf *g, int i);
int gguf_find(const gguf *g, const char *key); /* index or -1 */
int gguf_kv_type(const gguf *g, int i);        /* enum gguf_vtype */

int gguf_get_int(const gguf *g, const char *key, int64_t *out);  /* any int/bool */
int gguf_get_float(const gguf *g, const char *key, double *out); /* any number */
/* String value; *s is NOT NUL-terminated, length in *len. */
int gguf_get_str(const gguf *g, const char *key, const char **s, size_t *len);

/* Arrays: element type and count. */
int gguf_get_arr(const gguf *g, const char *key, int *elem_type, uint64_t *n);
/* Element I of an array of strings. */
int gguf_arr_str(const gguf *g, const char *key, uint64_t i,
                 const char **s, size_t *len);
/* Element I of a numeric array, converted. */
int gguf_arr_int(const gguf *g, const char *key, uint64_t i, int64_t *out);
int gguf_arr_float(const gguf *g, const char *key, uint64_t i, double *out);

/* Tensors. */
int gguf_n_tensors(const gguf *g);
const gguf_tensor *gguf_tensor_at(const gguf *g, int i);
const gguf_tensor *gguf_find_tensor(const gguf *g, const char *name); /* or NULL */

/* Bytes of one scalar of metadata value type T (enum gguf_vtype); 0 for
 * strings, arrays and unknown types. */
size_t gguf_vtype_size(int t);

/* Bytes of one row of N elements of TYPE, 0 if TYPE is unknown or N is
 * not a multiple of its block size. */
size_t ggml_row_size(int type, int64_t n);
int ggml_block_size(int type);      /* elements per block, 0 if unknown */
const char *ggml_type_name(int type);

#endif
