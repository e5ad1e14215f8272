/* test_parity.c - whole-text perplexity references (models/README.md:
 * llama.cpp's llama-perplexity, 1380 windows of 256 over kjv-nt.txt) for
 * every weight type and the phi3 LongRoPE file at its short factors,
 * on the default kernel set, and the quantized types of the int8 GEMM on
 * each other set the host has (KVT_CPU=avx2: q8_0, q4_0, q4_k_m;
 * portable: q8_0).
 * 20-30 s per file on a quiet machine; KVT_TEST_QUICK=1 (sanitizer
 * builds) skips them: they test numerics, which the sanitizers do not
 * change. The shorter references run in test_ppl.c in every build.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../base/cpu.h"
#include "../base/kvt.h"
#include "t.h"
#include "tproc.h"

#define NT "tests/data/kjv-nt.txt"
static char out[1 << 16], err[1 << 14];

static int quick(void)
{
    const char *q = getenv("KVT_TEST_QUICK");
    return q && *q && strcmp(q, "0");
}

/* kvtile ppl of MODEL against REF, with the kernel set SET (KVT_CPU; the
 * default set if CPU_SET_DEFAULT). */
static void check_ref_on(int set, const char *model, const char *args, double ref,
                         double tol_rel)
{
    char cmd[1280];
    T_REQUIRE(access(t_kvtile(), X_OK) == 0, "no kvtile binary");
    snprintf(cmd, sizeof cmd, "%s%s %s ppl models/%s -f " NT " %s --kv-store ram --json --quiet",
             set == CPU_SET_DEFAULT ? "" : "KVT_CPU=",
             set == CPU_SET_DEFAULT ? "" : cpu_set_name(set), t_kvtile(), model, args);
    const double t0 = kvt_now_s();
    int rc = t_sh(cmd, out, sizeof out, err, sizeof err);
    const double secs = kvt_now_s() - t0;
    if (rc != 0) fprintf(stderr, "  %s: exit %d: %s\n", cmd, rc, err);
    double p = rc == 0 ? t_json_num(out, "ppl") : NAN;
    double rel = fabs(p - ref) / ref;
    fprintf(stderr, "  %-8s %-34s %-8s ppl %.4f ref %.4f (%.4f%%, %.0f s)\n",
            cpu_set_name(set == CPU_SET_DEFAULT ? cpu_set_default() : set), model, args, p,
            ref, 100 * rel, secs);
    T_CHECK(rel <= tol_rel);
}

static void check_ref(const char *model, const char *args, double ref, double tol_rel)
{
    check_ref_on(CPU_SET_DEFAULT, model, args, ref, tol_rel);
}

static void test_reference_whole_text(void)
{
    if (quick()) T_SKIP("KVT_TEST_QUICK: whole-text references skipped");
    /* Per-model tolerances, a few times the error observed against the
     * reference (README "Perplexity parity"): f32 0.0005%, q8_0 0.0005%,
     * q4_0 0.002%, q4_k_m 0.0013%, q6_k 0.0040%, phi3 0.0005%, q5_k_m
     * 0.0056%, q3_k_m 0.0008%, q2_k 0.018%, iq4_xs 0.0058%, iq4_nl 0.0014%
     * (with the int8 path; without VNNI up to 0.025%). A uniform 0.5%
     * could not tell q4_k_m (19.4515) from f32 (19.4157, 0.18% apart), nor
     * 0.05% iq4_xs (19.4608) from iq4_nl (19.4531). */
    check_ref("tiny-kjv-f32.gguf", "-c 256", 19.4157, 3e-5);
    check_ref("tiny-kjv-q8_0.gguf", "-c 256", 19.4157, 3e-5);
    check_ref("tiny-kjv-q4_0.gguf", "-c 256", 19.6382, 1e-4);
    check_ref("tiny-kjv-q4_k_m.gguf", "-c 256", 19.4515, 3e-5);
    check_ref("tiny-kjv-q6_k.gguf", "-c 256", 19.4265, 2.5e-4);
    check_ref("tiny-kjv-q5_k_m.gguf", "-c 256", 19.4383, 2e-4);
    check_ref("tiny-kjv-q3_k_m.gguf", "-c 256", 19.6984, 2e-4);
    check_ref("tiny-kjv-q2_k.gguf", "-c 256", 20.9854, 5e-4);
    check_ref("tiny-kjv-iq4_xs.gguf", "-c 256", 19.4608, 3e-4);
    check_ref("tiny-kjv-iq4_nl.gguf", "-c 256", 19.4531, 2e-4);
    check_ref("tiny-kjv-phi3-longrope-x8-f32.gguf", "-c 256", 20.4417, 3e-5);
}

/* The int8 prompt GEMM on every other kernel set the host has (KVT_CPU):
 * each set quantizes X as llama.cpp does, so the same tolerances hold (the
 * avx2 set's dequantize + sgemm gave q8_0 19.4142, 0.008% off): q8_0,
 * q4_0 and q4_k_m on the avx2 set, q8_0 on the portable one (its plain C
 * GEMM gives the avx512 set's bits, test_matmul). F32 weights take
 * OpenBLAS on every set; the f32 file checks each set's attention kernels
 * (transposed prompt path on avx2, plain C on portable). */
static void test_reference_other_sets(void)
{
    if (quick()) T_SKIP("KVT_TEST_QUICK: whole-text references skipped");
    int n = 0;
    for (int set = CPU_SET_COUNT - 1; set >= CPU_SET_PORTABLE; set--) {
        if (!cpu_set_supported(set) || set == cpu_set_default()) continue;
        check_ref_on(set, "tiny-kjv-f32.gguf", "-c 256", 19.4157, 3e-5);
        check_ref_on(set, "tiny-kjv-q8_0.gguf", "-c 256", 19.4157, 3e-5);
        n++;
        if (set == CPU_SET_PORTABLE) continue; /* plain C: about 150 s a file */
        check_ref_on(set, "tiny-kjv-q4_0.gguf", "-c 256", 19.6382, 1e-4);
        /* 1e-4, not 3e-5: its F16 ffn_down (688 columns) takes f32 X here,
         * bf16 X on the avx512 set, f16 X in llama.cpp (observed 0.0054%) */
        check_ref_on(set, "tiny-kjv-q4_k_m.gguf", "-c 256", 19.4515, 1e-4);
    }
    if (n == 0) T_SKIP("one kernel set on this host");
}

int main(void)
{
    T_RUN(test_reference_whole_text);
    T_RUN(test_reference_other_sets);
    return t_done();
}
