/* mm_gemm2.h - private: the int8 prompt GEMM of the avx2 kernel set
 * (engine/mm_gemm2.c, AVX2 vpmaddubsw; no VNNI), an entry of
 * mm_kernels_avx2. */
#ifndef KVT_MM_GEMM2_H
#define KVT_MM_GEMM2_H

#include "mm_kern.h"

/* gemm_i8_rows of struct mm_kernels: Y columns [r0, r1) of the pass J
 * (X quantized by matmul.c), W rows unpacked into the scratch of THREAD.
 * Types: Q8_0, Q4_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS. */
void mm_gemm_i8_rows_avx2(const struct mm_g8_job *j, int64_t r0, int64_t r1, int thread);

#endif
