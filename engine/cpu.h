/* cpu.h - the CPU's features and the kernel set chosen from them.
 *
 * One binary runs on every x86-64 host: the library's SIMD kernels are
 * compiled once per kernel set (engine/matmul.c three times, see the
 * Makefile; other modules use __attribute__((target))), and the set is
 * chosen at run time from cpuid:
 *   avx512    x86-64-v4 (AVX-512 F, BW, CD, DQ, VL) + AVX512-VNNI; the
 *             direct bf16 GEMM also needs AVX512-BF16 (checked apart)
 *   avx2      x86-64-v3 (AVX2, FMA, F16C, BMI2)
 *   portable  plain C (baseline x86-64-v2 code, any compiler vectorising)
 * The environment variable KVT_CPU=portable|avx2|avx512 forces a set (for
 * tests and benchmarks); cpu_env_check tells the CLI whether its value is
 * usable. Without it, or with an unusable value, the best set the host has
 * is used.
 */
#ifndef KVT_CPU_H
#define KVT_CPU_H

#include <stddef.h>

enum cpu_set { CPU_SET_PORTABLE, CPU_SET_AVX2, CPU_SET_AVX512, CPU_SET_COUNT };

/* "portable", "avx2", "avx512"; SET must be < CPU_SET_COUNT. */
const char *cpu_set_name(int set);
/* The set called NAME, or -EINVAL. */
int cpu_set_parse(const char *name);
/* 1 if the host can run kernel set SET. */
int cpu_set_supported(int set);
/* The set in use: cpu_set_force's, else KVT_CPU's if usable, else the
 * best the host supports. */
int cpu_set_active(void);
/* Use SET from now on (mm_ctx objects made later; an mm_ctx keeps the set
 * it was made with). KVT_EUNSUPP if the host lacks it, -EINVAL if SET is
 * out of range. Process-wide; call it while no product is running. */
int cpu_set_force(int set);
/* 0 if KVT_CPU is unset or names a set this host supports; -EINVAL for
 * an unknown name, KVT_EUNSUPP for a set the host lacks. */
int cpu_env_check(void);
/* 1 if the host has AVX512-BF16 (the direct bf16 GEMM). */
int cpu_has_avx512bf16(void);
/* "FEATURES; kernels SET" into BUF (cap bytes, NUL-terminated, cut if
 * short), e.g. "avx2 fma f16c avx512f avx512bw avx512vl avx512vnni
 * avx512bf16; kernels avx512". @return the length it wanted. */
int cpu_describe(char *buf, size_t cap);

#endif
