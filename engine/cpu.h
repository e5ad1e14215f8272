/* cpu.h - the CPU's features and the kernel sets they allow.
 *
 * One binary runs on every x86-64 host: the library's SIMD kernels are
 * compiled once per kernel set (engine/mm_*.c with each set's flags, see
 * the Makefile and engine/mm_kern.h; other modules use
 * __attribute__((target))), and a set is chosen at run time from cpuid:
 *   avx512    x86-64-v4 (AVX-512 F, BW, CD, DQ, VL) + AVX512-VNNI; the
 *             direct bf16 GEMM also needs AVX512-BF16 (checked apart)
 *   avx2      x86-64-v3 (AVX2, FMA, F16C, BMI2)
 *   portable  plain C (baseline x86-64-v2 code, any compiler vectorising)
 * Each product context picks its set (struct mm_params, model_ctx_params):
 * CPU_SET_DEFAULT there means cpu_set_default(), the set the environment
 * variable KVT_CPU=portable|avx2|avx512 names (for tests and benchmarks;
 * cpu_env_check tells the CLI whether its value is usable), else the best
 * the host has. Nothing here is a switch: the default is read once.
 */
#ifndef KVT_CPU_H
#define KVT_CPU_H

#include <stddef.h>

/* CPU_SET_DEFAULT is a request (cpu_set_default()), not a set. */
enum cpu_set { CPU_SET_DEFAULT, CPU_SET_PORTABLE, CPU_SET_AVX2, CPU_SET_AVX512,
               CPU_SET_COUNT };

/* "default", "portable", "avx2", "avx512"; SET must be < CPU_SET_COUNT. */
const char *cpu_set_name(int set);
/* The set called NAME (not "default"), or -EINVAL. */
int cpu_set_parse(const char *name);
/* 1 if the host can run kernel set SET; 0 for CPU_SET_DEFAULT and
 * values out of range. */
int cpu_set_supported(int set);
/* KVT_CPU's set if usable, else the best the host supports (computed on
 * first use). */
int cpu_set_default(void);
/* The set a request SET stands for: cpu_set_default() for
 * CPU_SET_DEFAULT, else SET; KVT_EUNSUPP if the host lacks it, -EINVAL
 * if SET is out of range. */
int cpu_set_resolve(int set);
/* 0 if KVT_CPU is unset or names a set this host supports; -EINVAL for
 * an unknown name, KVT_EUNSUPP for a set the host lacks. */
int cpu_env_check(void);
/* 1 if the host has AVX512-BF16 (the direct bf16 GEMM). */
int cpu_has_avx512bf16(void);
/* "FEATURES; kernels SET" into BUF (cap bytes, NUL-terminated, cut if
 * short), SET being what CPU_SET_DEFAULT stands for, e.g. "avx2 fma f16c
 * avx512f avx512bw avx512vl avx512vnni avx512bf16; kernels avx512".
 * @return the length it wanted. */
int cpu_describe(char *buf, size_t cap);

#endif
