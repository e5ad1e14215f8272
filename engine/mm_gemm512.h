/* mm_gemm512.h - private: the prompt GEMMs of the avx512 kernel set
 * (engine/mm_gemm512.c), entries of mm_kernels_avx512. */
#ifndef KVT_MM_GEMM512_H
#define KVT_MM_GEMM512_H

#include "mm_kern.h"

/* Y (m, n_out) = X . W^T for m > MM_FUSED_M_MAX through bf16 products
 * (BF16 or F16 W, even n_in; c->xp and c->wconv allocated; the CPU has
 * AVX512-BF16). */
void mm_gemm_bf16(mm_ctx *c, const gguf_tensor *w, const float *x, int m, float *y);
/* The same through int8 products (the types of mm_ig_type in matmul.c,
 * n_in % 32 == 0; c->ixp and c->iwp allocated). */
void mm_gemm_int8(mm_ctx *c, const gguf_tensor *w, const float *x, int m, float *y);

#endif
