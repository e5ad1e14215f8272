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
 * quantized to int8 once per product (see mm_set_int8_gemm), float weights
 * with f32 X; rows split over threads; OpenBLAS is 5-10x slower per row
 * there. Kernels: the set of cpu_set_active() (engine/cpu.h) when the
 * mm_ctx was made (AVX-512, AVX2 or portable C).
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

/* Scratch for products with up to MAX_N_IN inputs, for every thread of P.
 * Allocated once; mm_matmul allocates nothing. */
int mm_ctx_create(pool *p, int64_t max_n_in, mm_ctx **out);
void mm_ctx_free(mm_ctx *c); /* NULL is a no-op */

/* Y (m, n_out) = X (m, n_in) . W^T, rows of X and Y contiguous; X and Y
 * must not overlap; W is 2-D with n_in <= max_n_in. Uses the pool and the
 * scratch of C: one product at a time per mm_ctx. */
void mm_matmul(mm_ctx *c, const gguf_tensor *w, const float *x, int m, float *y);

/* Direct bf16 GEMM for m > 8 with BF16 (and F16) weights on CPUs with
 * AVX512-BF16 (see matmul.c for its error bound): 1 = use it where
 * available (the default), 0 = dequantize + sgemm everywhere. A process-
 * wide switch for comparisons; set it while no product is running. */
void mm_set_bf16_gemm(int enable);
/* 1 if a product with weight TYPE, N_IN inputs and M rows of X takes the
 * direct bf16 path (compiled in, CPU support, switch on, shape fits). */
int mm_bf16_gemm_used(int type, int64_t n_in, int m);

/* Int8 GEMM for m > 8 with Q8_0, Q4_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K,
 * IQ4_NL and IQ4_XS weights on CPUs with AVX512-VNNI: X is quantized to
 * int8 per block of 32 (as ggml's q8_0 activations; error bound in
 * matmul.c) and multiplied with the weight codes by vpdpbusd. 1 = use it
 * where available (the default), 0 = dequantize + sgemm. The same switch
 * covers the int8 decode path (m <= 8, every quantized type, every kernel
 * set; same X quantization and error bound), 0 = f32 activations there.
 * A process-wide switch for comparisons; set it while no product is
 * running. */
void mm_set_int8_gemm(int enable);
/* 1 if a product with weight TYPE, N_IN inputs and M rows of X takes the
 * int8 path (GEMM for m > 8, decode for m <= 8; compiled in, CPU support,
 * switch on, type and shape fit). */
int mm_int8_gemm_used(int type, int64_t n_in, int m);

/* Row R of W dequantized into dst (n_in floats): embedding lookups. */
void mm_get_row(const gguf_tensor *w, int64_t r, float *dst);

/* Dequantize N elements (a multiple of the type's block size) of TYPE. */
void mm_dequant(int type, const void *src, float *dst, int64_t n);

/* fp16 / bf16 scalar conversions (round to nearest even). */
float mm_f16_to_f32(uint16_t h);
uint16_t mm_f32_to_f16(float f);
float mm_bf16_to_f32(uint16_t h);
uint16_t mm_f32_to_bf16(float f);

#endif
