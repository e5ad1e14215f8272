/* matmul.h - products with weights kept in their stored GGUF type.
 *
 * A weight W is a GGUF tensor with ne[0] = n_in (row length) and
 * ne[1] = n_out rows. All products compute, in f32,
 *     Y (m, n_out) = X (m, n_in) . W^T
 * Prompt chunks (m > 8): row blocks of W are dequantized into per-thread
 * scratch and multiplied with cblas_sgemm (F32 weights are used in place);
 * F16/BF16 may use a direct bf16 kernel, some quantized types an int8
 * kernel (X quantized to 8 bits), where it beats that.
 * Single tokens and small m (m <= 8): quantized weights are dotted with X
 * quantized to int8 once per product (see mm_int8_gemm_used), float weights
 * with f32 X; rows split over threads; OpenBLAS is 5-10x slower per row
 * there. Kernels: one instruction set per mm_ctx (struct mm_params; cpu.h:
 * AVX-512, AVX2 or portable C), chosen when the context is made.
 *
 * Supported types: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K,
 * Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS.
 */
#ifndef KVT_MATMUL_H
#define KVT_MATMUL_H

#include <stdint.h>

#include "gguf.h"
#include "pool.h"

typedef struct mm_ctx mm_ctx;

/* 1 if products with this tensor type are supported. */
int mm_type_supported(int type);

/* The kernel choices of a context; all zero = the defaults. */
struct mm_params {
    int cpu_set;       /* enum cpu_set (cpu.h); CPU_SET_DEFAULT (0) =
                          cpu_set_default(): KVT_CPU, else the host's best */
    int bf16_gemm_off; /* 1: no direct bf16 GEMM (dequantize + sgemm) */
    int int8_gemm_off; /* 1: no int8 paths (f32 X everywhere) */
};

/* Scratch for products with up to MAX_N_IN inputs, for every thread of P,
 * with the kernels of MP (NULL = defaults). Allocated once; mm_matmul
 * allocates nothing. @return 0, KVT_EUNSUPP if the host lacks the set
 * asked for, -EINVAL for a set out of range, KVT_ERANGE if the scratch
 * size overflows, -ENOMEM. */
int mm_ctx_create(pool *p, int64_t max_n_in, const struct mm_params *mp, mm_ctx **out);
void mm_ctx_free(mm_ctx *c); /* NULL is a no-op */

/* The kernel set of C (enum cpu_set, never CPU_SET_DEFAULT). */
int mm_ctx_cpu_set(const mm_ctx *c);

/* Y (m, n_out) = X (m, n_in) . W^T, rows of X and Y contiguous; X and Y
 * must not overlap; W is 2-D with n_in <= max_n_in. Uses the pool and the
 * scratch of C: one product at a time per mm_ctx. */
void mm_matmul(mm_ctx *c, const gguf_tensor *w, const float *x, int m, float *y);

/* Direct bf16 GEMM for m > 8 with BF16 (and F16) weights on CPUs with
 * AVX512-BF16 (error bound in mm_gemm512.c); on unless bf16_gemm_off.
 * 1 if a product of C with weight TYPE, N_IN inputs and M rows of X takes
 * it (avx512 set, CPU support, not off, shape fits). */
int mm_bf16_gemm_used(const mm_ctx *c, int type, int64_t n_in, int m);

/* Int8 GEMM for m > 8 with Q8_0, Q4_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K,
 * IQ4_NL and IQ4_XS weights on every kernel set: X is quantized to int8
 * per block of 32 (as ggml's q8_0 activations; error bound in
 * mm_gemm512.c) and multiplied with the weight codes by vpdpbusd
 * (avx512), vpmaddubsw (avx2, mm_gemm2.c) or plain C (portable), with
 * the same bits on every set. The int8 decode path (m <= 8, every quantized type, every
 * kernel set) quantizes X the same way, with the same bound. Both on
 * unless int8_gemm_off (then dequantize + sgemm, f32 X for decode).
 * 1 if a product of C with weight TYPE, N_IN inputs and M rows of X
 * takes an int8 path (type, set and shape fit, not off). */
int mm_int8_gemm_used(const mm_ctx *c, int type, int64_t n_in, int m);

/* Row R of W dequantized into dst (n_in floats): embedding lookups
 * (cpu_set_default()'s kernels, as mm_dequant). */
void mm_get_row(const gguf_tensor *w, int64_t r, float *dst);

/* Dequantize N elements (a multiple of the type's block size) of TYPE.
 * Every kernel set gives the same bits; this uses cpu_set_default()'s. */
void mm_dequant(int type, const void *src, float *dst, int64_t n);
/* The same with kernel set SET (enum cpu_set, supported by the host): for
 * tests that compare the sets. */
void mm_dequant_on(int set, int type, const void *src, float *dst, int64_t n);

#endif
