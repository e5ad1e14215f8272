/* cpu.c - feature detection and the kernel set in use (see cpu.h). */
#include "cpu.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/kvt.h"

static const char *const cpu_names[CPU_SET_COUNT] = {"default", "portable", "avx2",
                                                      "avx512"};

/* The features named in cpu_describe, in order; the sets need prefixes. */
static const char *const cpu_feats[] = {
    "avx2", "fma", "f16c", "bmi2", "avx512f", "avx512bw", "avx512cd",
    "avx512dq", "avx512vl", "avx512vnni", "avx512bf16",
};
enum { CPU_N_FEATS = sizeof cpu_feats / sizeof cpu_feats[0] };
enum { CPU_AVX2_FEATS = 4, CPU_AVX512_FEATS = 10 };

static int cpu_has(int i)
{
    __builtin_cpu_init();
    switch (i) { /* __builtin_cpu_supports wants a literal */
    case 0: return __builtin_cpu_supports("avx2") != 0;
    case 1: return __builtin_cpu_supports("fma") != 0;
    case 2: return __builtin_cpu_supports("f16c") != 0;
    case 3: return __builtin_cpu_supports("bmi2") != 0;
    case 4: return __builtin_cpu_supports("avx512f") != 0;
    case 5: return __builtin_cpu_supports("avx512bw") != 0;
    case 6: return __builtin_cpu_supports("avx512cd") != 0;
    case 7: return __builtin_cpu_supports("avx512dq") != 0;
    case 8: return __builtin_cpu_supports("avx512vl") != 0;
    case 9: return __builtin_cpu_supports("avx512vnni") != 0;
    case 10: return __builtin_cpu_supports("avx512bf16") != 0;
    default: return 0;
    }
}

static int cpu_has_first(int n)
{
    for (int i = 0; i < n; i++)
        if (!cpu_has(i)) return 0;
    return 1;
}

const char *cpu_set_name(int set)
{
    KVT_ASSERT(set >= 0);
    KVT_ASSERT(set < CPU_SET_COUNT);
    return cpu_names[set];
}

int cpu_set_parse(const char *name)
{
    for (int s = CPU_SET_PORTABLE; s < CPU_SET_COUNT; s++)
        if (strcmp(name, cpu_names[s]) == 0) return s;
    return -EINVAL;
}

int cpu_set_supported(int set)
{
    switch (set) {
    case CPU_SET_PORTABLE: return 1;
    case CPU_SET_AVX2: return cpu_has_first(CPU_AVX2_FEATS);
    case CPU_SET_AVX512: return cpu_has_first(CPU_AVX512_FEATS);
    default: return 0;
    }
}

int cpu_has_avx512bf16(void) { return cpu_has(10); }

static int cpu_best(void)
{
    for (int s = CPU_SET_COUNT - 1; s > CPU_SET_PORTABLE; s--)
        if (cpu_set_supported(s)) return s;
    return CPU_SET_PORTABLE;
}

int cpu_env_check(void)
{
    const char *e = getenv("KVT_CPU");
    if (!e || !*e) return 0;
    const int s = cpu_set_parse(e);
    if (s < 0) return -EINVAL;
    return cpu_set_supported(s) ? 0 : KVT_EUNSUPP;
}

/* -1 until first use; then the set. Benign race: every thread computes
 * the same value. A cache, not a switch: nothing sets it. */
static int cpu_default = -1;

int cpu_set_default(void)
{
    int s = cpu_default;
    if (s >= 0) return s;
    const char *e = getenv("KVT_CPU");
    s = e && cpu_env_check() == 0 && *e ? cpu_set_parse(e) : cpu_best();
    cpu_default = s;
    return s;
}

int cpu_set_resolve(int set)
{
    if (set < 0 || set >= CPU_SET_COUNT) return -EINVAL;
    if (set == CPU_SET_DEFAULT) return cpu_set_default();
    return cpu_set_supported(set) ? set : KVT_EUNSUPP;
}

int cpu_describe(char *buf, size_t cap)
{
    char tmp[256];
    size_t len = 0;
    for (int i = 0; i < CPU_N_FEATS; i++)
        if (cpu_has(i))
            len += (size_t)snprintf(tmp + len, sizeof tmp - len, "%s%s",
                                    len ? " " : "", cpu_feats[i]);
    if (len == 0) len = (size_t)snprintf(tmp, sizeof tmp, "baseline");
    return snprintf(buf, cap, "%s; kernels %s", tmp, cpu_set_name(cpu_set_default()));
}
