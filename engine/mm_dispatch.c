/* mm_dispatch.c - matmul.h's functions, dispatched to the kernel set of
 * cpu_set_active() (see mm_kern.h). */
#include "matmul.h"

#include "cpu.h"
#include "base/kvt.h"
#include "mm_kern.h"

static const struct mm_kernels *const mm_sets[CPU_SET_COUNT] = {
    [CPU_SET_PORTABLE] = &mm_kernels_portable,
    [CPU_SET_AVX2] = &mm_kernels_avx2,
    [CPU_SET_AVX512] = &mm_kernels_avx512,
};

static const struct mm_kernels *mm_active(void) { return mm_sets[cpu_set_active()]; }

/* The table of the set that made C (its first member). */
static const struct mm_kernels *mm_of(const mm_ctx *c)
{
    return *(const struct mm_kernels *const *)(const void *)c;
}

int mm_type_supported(int type) { return mm_type_supported_portable(type); }

int mm_ctx_create(pool *p, int64_t max_n_in, mm_ctx **out)
{
    return mm_active()->ctx_create(p, max_n_in, out);
}

void mm_ctx_free(mm_ctx *c)
{
    if (c) mm_of(c)->ctx_free(c);
}

void mm_matmul(mm_ctx *c, const gguf_tensor *w, const float *x, int m, float *y)
{
    mm_of(c)->matmul(c, w, x, m, y);
}

void mm_set_bf16_gemm(int enable)
{
    for (int s = 0; s < CPU_SET_COUNT; s++) mm_sets[s]->set_bf16_gemm(enable);
}

int mm_bf16_gemm_used(int type, int64_t n_in, int m)
{
    return mm_active()->bf16_gemm_used(type, n_in, m);
}

void mm_set_int8_gemm(int enable)
{
    for (int s = 0; s < CPU_SET_COUNT; s++) mm_sets[s]->set_int8_gemm(enable);
}

int mm_int8_gemm_used(int type, int64_t n_in, int m)
{
    return mm_active()->int8_gemm_used(type, n_in, m);
}

void mm_get_row(const gguf_tensor *w, int64_t r, float *dst)
{
    mm_active()->get_row(w, r, dst);
}

void mm_dequant(int type, const void *src, float *dst, int64_t n)
{
    mm_active()->dequant(type, src, dst, n);
}

float mm_f16_to_f32(uint16_t h) { return mm_active()->f16_to_f32(h); }
uint16_t mm_f32_to_f16(float f) { return mm_active()->f32_to_f16(f); }
float mm_bf16_to_f32(uint16_t h) { return mm_bf16_to_f32_portable(h); }
uint16_t mm_f32_to_bf16(float f) { return mm_f32_to_bf16_portable(f); }
