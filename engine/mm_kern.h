/* mm_kern.h - private: the per-kernel-set builds of engine/matmul.c.
 *
 * matmul.c is compiled once per kernel set of cpu.h, with that set's
 * compiler flags and -DMM_ISA=portable|avx2|avx512 (see the Makefile).
 * With MM_ISA defined, the public names of matmul.h are renamed to
 * NAME_<isa> below, and the build exports one table, mm_kernels_<isa>.
 * engine/mm_dispatch.c defines the public functions: it picks the table
 * of cpu_set_active() (mm_ctx_create: once per context; the others per
 * call). Every mm_ctx starts with a pointer to the table that made it.
 */
#ifndef KVT_MM_KERN_H
#define KVT_MM_KERN_H

#include <stdint.h>

#include "gguf.h"
#include "pool.h"

typedef struct mm_ctx mm_ctx;

struct mm_kernels {
    int set; /* enum cpu_set */
    int (*ctx_create)(pool *p, int64_t max_n_in, mm_ctx **out);
    void (*ctx_free)(mm_ctx *c);
    void (*matmul)(mm_ctx *c, const gguf_tensor *w, const float *x, int m, float *y);
    void (*set_bf16_gemm)(int enable);
    int (*bf16_gemm_used)(int type, int64_t n_in, int m);
    void (*set_int8_gemm)(int enable);
    int (*int8_gemm_used)(int type, int64_t n_in, int m);
    void (*get_row)(const gguf_tensor *w, int64_t r, float *dst);
    void (*dequant)(int type, const void *src, float *dst, int64_t n);
    float (*f16_to_f32)(uint16_t h);
    uint16_t (*f32_to_f16)(float f);
};

extern const struct mm_kernels mm_kernels_portable, mm_kernels_avx2, mm_kernels_avx512;
/* Plain C in every set: the portable build's. */
int mm_type_supported_portable(int type);
float mm_bf16_to_f32_portable(uint16_t h);
uint16_t mm_f32_to_bf16_portable(float f);

#ifdef MM_ISA
#define MM_CAT_(a, b) a##_##b
#define MM_CAT(a, b) MM_CAT_(a, b)
#define mm_type_supported MM_CAT(mm_type_supported, MM_ISA)
#define mm_ctx_create MM_CAT(mm_ctx_create, MM_ISA)
#define mm_ctx_free MM_CAT(mm_ctx_free, MM_ISA)
#define mm_matmul MM_CAT(mm_matmul, MM_ISA)
#define mm_set_bf16_gemm MM_CAT(mm_set_bf16_gemm, MM_ISA)
#define mm_bf16_gemm_used MM_CAT(mm_bf16_gemm_used, MM_ISA)
#define mm_set_int8_gemm MM_CAT(mm_set_int8_gemm, MM_ISA)
#define mm_int8_gemm_used MM_CAT(mm_int8_gemm_used, MM_ISA)
#define mm_get_row MM_CAT(mm_get_row, MM_ISA)
#define mm_dequant MM_CAT(mm_dequant, MM_ISA)
#define mm_f16_to_f32 MM_CAT(mm_f16_to_f32, MM_ISA)
#define mm_f32_to_f16 MM_CAT(mm_f32_to_f16, MM_ISA)
#define mm_bf16_to_f32 MM_CAT(mm_bf16_to_f32, MM_ISA)
#define mm_f32_to_bf16 MM_CAT(mm_f32_to_bf16, MM_ISA)
#define MM_KERNELS MM_CAT(mm_kernels, MM_ISA)
#endif

#endif
