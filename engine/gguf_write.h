/* gguf_write.h - build and write GGUF v3 files (the reader is gguf.h).
 *
 * A gguf_w collects metadata KVs and tensor descriptions in memory, then
 * gguf_w_write() lays the file out exactly as gguf.h specifies:
 *   u32 "GGUF" | u32 3 | u64 n_tensors | u64 n_kv | KVs (insertion order) |
 *   tensor infos (insertion order) | zero padding to the alignment |
 *   tensor data, each tensor at an offset that is a multiple of the
 *   alignment, zero-padded in between.
 * The alignment is the value of "general.alignment" if the builder holds
 * that key (u32, a power of two), else 32.
 *
 * Ownership: keys, strings and arrays are copied into the builder. Tensor
 * DATA is borrowed: the pointer must stay valid until gguf_w_write()
 * returns (e.g. a gguf opened with gguf_open() whose tensors were copied
 * with gguf_w_copy_from()).
 *
 * Atomicity: gguf_w_write() writes PATH.tmp.XXXXXX in the same directory,
 * fsyncs it and renames it over PATH, so PATH is either the old file or
 * the complete new one. Writes go through io_sys (io/io.h), so tests can
 * inject faults; on error the temporary file is removed.
 *
 * Setting a key that exists replaces its value in place (its position in
 * the file is kept); adding a tensor whose name exists replaces it.
 *
 * Errors: -ENOMEM, -errno from the file system, KVT_ERANGE (bad sizes,
 * a tensor whose data size does not match its type and shape, a
 * non-power-of-two alignment), KVT_ETYPE (unknown value or tensor type),
 * KVT_EMISSING (removing an absent key or tensor).
 */
#ifndef KVT_GGUF_WRITE_H
#define KVT_GGUF_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

typedef struct gguf_w gguf_w;

/* @return 0 and *out, or -ENOMEM. */
int gguf_w_init(gguf_w **out);
void gguf_w_free(gguf_w *w); /* NULL is a no-op */

/* Scalars. KEY is a NUL-terminated string (copied). */
int gguf_w_set_u8(gguf_w *w, const char *key, uint8_t v);
int gguf_w_set_i8(gguf_w *w, const char *key, int8_t v);
int gguf_w_set_u16(gguf_w *w, const char *key, uint16_t v);
int gguf_w_set_i16(gguf_w *w, const char *key, int16_t v);
int gguf_w_set_u32(gguf_w *w, const char *key, uint32_t v);
int gguf_w_set_i32(gguf_w *w, const char *key, int32_t v);
int gguf_w_set_u64(gguf_w *w, const char *key, uint64_t v);
int gguf_w_set_i64(gguf_w *w, const char *key, int64_t v);
int gguf_w_set_f32(gguf_w *w, const char *key, float v);
int gguf_w_set_f64(gguf_w *w, const char *key, double v);
int gguf_w_set_bool(gguf_w *w, const char *key, int v);
/* String of LEN bytes (need not be NUL-terminated). */
int gguf_w_set_strn(gguf_w *w, const char *key, const char *s, size_t len);
int gguf_w_set_str(gguf_w *w, const char *key, const char *s);

/* Array of N numbers (or bools) of ELEM_TYPE (a scalar enum gguf_vtype,
 * not STR or ARR) stored at DATA in the host's (little-endian) layout. */
int gguf_w_set_arr(gguf_w *w, const char *key, int elem_type,
                   const void *data, uint64_t n);
/* Array of N strings; LENS may be NULL (then strlen of each). */
int gguf_w_set_arr_str(gguf_w *w, const char *key, const char *const *s,
                       const size_t *lens, uint64_t n);

/* Remove KEY. @return 0 or KVT_EMISSING. */
int gguf_w_remove(gguf_w *w, const char *key);
int gguf_w_n_kv(const gguf_w *w);

/* Add (or replace, by name) a tensor: N_DIMS (1..4) dims NE (ne[0] is the
 * row), TYPE an enum ggml_type, SIZE bytes at DATA (borrowed). SIZE must
 * equal ggml_row_size(type, ne[0]) * ne[1] * ... */
int gguf_w_add_tensor(gguf_w *w, const char *name, int type, int n_dims,
                      const int64_t *ne, const void *data, size_t size);
/* Same, but the data is produced at write time: FILL(CTX, dst, size) must
 * write all SIZE bytes of the tensor to dst (a buffer owned by the writer,
 * allocated once for the largest such tensor) and return 0 or < 0 (which
 * aborts the write). For files larger than RAM (generated weights). */
typedef int (*gguf_w_fill_fn)(void *ctx, void *dst, size_t size);
int gguf_w_add_tensor_fn(gguf_w *w, const char *name, int type, int n_dims,
                         const int64_t *ne, size_t size, gguf_w_fill_fn fill,
                         void *ctx);
int gguf_w_remove_tensor(gguf_w *w, const char *name);
int gguf_w_n_tensors(const gguf_w *w);

/* Copy every KV and every tensor of G into W (after what W already holds;
 * same-named keys/tensors are replaced). Tensor data stays in G's
 * mapping: keep G open until gguf_w_write() has returned.
 * @return 0; KVT_ETYPE for a value the reader cannot hand out exactly
 * (arrays of arrays, u64 above INT64_MAX); -ENOMEM. */
int gguf_w_copy_from(gguf_w *w, const gguf *g);

/* Write the file (see the top of this header). @return 0 or < 0. */
int gguf_w_write(const gguf_w *w, const char *path);

#endif
