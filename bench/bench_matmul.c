/* bench_matmul.c - mm_matmul per weight type against plain cblas_sgemm.
 *
 * For each shape (m = 512 prompt chunks of tiny-kjv and TinyLlama-1.1B)
 * and weight type: GFLOP/s of mm_matmul, GFLOP/s of cblas_sgemm on f32
 * weights of the same shape (OpenBLAS given the same thread count),
 * their ratio, and single-token (m = 1) throughput in GB/s of weight
 * bytes; for types on the int8 path, also the same product with that
 * path switched off (dequantize + sgemm) and the speed-up. Weights are
 * random; no model file is needed.
 *
 * usage: bench_matmul [n_threads]   (default: online CPUs; KVT_THREADS)
 *        bench_matmul --decode MODEL.gguf [n_threads [n_tokens]]
 * The second form times only the single-token products of a model file:
 * every 2-D weight but token_embd, in file order, m = 1, as a decode step
 * does (default 16 steps after one warm-up step): tokens/s of the
 * products alone and GB/s of weights read, per weight type and in all.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cblas.h>

#include "engine/gguf.h"
#include "engine/matmul.h"
#include "engine/pool.h"
#include "base/kvt.h"
#include "base/numfmt.h"

void openblas_set_num_threads(int num_threads);

static uint64_t rng = 0x2545F4914F6CDD1Du;

static uint64_t next_u64(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static float next_f32(void) /* [-1, 1) */
{
    return (float)((double)(next_u64() >> 40) * 0x1p-23 - 1.0);
}

static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }

struct btype { int type, blck, bytes; };
static const struct btype types[] = {
    {GGML_TYPE_F32, 1, 4},      {GGML_TYPE_F16, 1, 2},
    {GGML_TYPE_BF16, 1, 2},     {GGML_TYPE_Q8_0, 32, 34},
    {GGML_TYPE_Q4_0, 32, 18},
    {GGML_TYPE_Q4_K, 256, 144}, {GGML_TYPE_Q6_K, 256, 210},
    {GGML_TYPE_Q5_K, 256, 176}, {GGML_TYPE_Q3_K, 256, 110},
    {GGML_TYPE_Q2_K, 256, 84},  {GGML_TYPE_IQ4_XS, 256, 136},
};

/* Random weights of type T with sane scales; returns the byte size. */
static size_t fill_weights(const struct btype *t, uint8_t *buf, int64_t n)
{
    const int64_t nb = n / t->blck;
    const size_t size = (size_t)nb * (size_t)t->bytes;
    for (size_t i = 0; i < size; i++) buf[i] = (uint8_t)next_u64();
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *p = buf + (size_t)b * (size_t)t->bytes;
        const float v = 0.02f * next_f32();
        switch (t->type) {
        case GGML_TYPE_F32: memcpy(p, &v, 4); break;
        case GGML_TYPE_F16: put16(p, numfmt_f32_to_f16(v)); break;
        case GGML_TYPE_BF16: put16(p, numfmt_f32_to_bf16(v)); break;
        case GGML_TYPE_Q8_0: put16(p, numfmt_f32_to_f16(v / 64)); break;
        case GGML_TYPE_Q4_0: put16(p, numfmt_f32_to_f16(v / 8)); break;
        case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K:
            put16(p, numfmt_f32_to_f16(v / 512));
            put16(p + 2, numfmt_f32_to_f16(v / 512));
            break;
        case GGML_TYPE_Q2_K:
            put16(p + 80, numfmt_f32_to_f16(v / 32));
            put16(p + 82, numfmt_f32_to_f16(v / 32));
            break;
        case GGML_TYPE_Q3_K: put16(p + 108, numfmt_f32_to_f16(v / 128)); break;
        case GGML_TYPE_IQ4_XS: put16(p, numfmt_f32_to_f16(v / 4096)); break;
        case GGML_TYPE_Q6_K: put16(p + 208, numfmt_f32_to_f16(v / 1024)); break;
        }
    }
    return size;
}

/* Best seconds per call of mm_matmul over ~BUDGET_S seconds. */
static double time_mm(mm_ctx *c, const gguf_tensor *w, const float *x, int m,
                      float *y, double budget_s)
{
    double best = 1e30, t_end = kvt_now_s() + budget_s;
    int reps = 0;
    do {
        double t0 = kvt_now_s();
        mm_matmul(c, w, x, m, y);
        double dt = kvt_now_s() - t0;
        if (dt < best) best = dt;
        reps++;
    } while (kvt_now_s() < t_end || reps < 2);
    return best;
}

static double time_sgemm(int n_threads, const float *x, const float *w, int m,
                         int n_in, int n_out, float *y, double budget_s)
{
    openblas_set_num_threads(n_threads);
    double best = 1e30, t_end = kvt_now_s() + budget_s;
    int reps = 0;
    do {
        double t0 = kvt_now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n_out, n_in,
                    1.0f, x, n_in, w, n_in, 0.0f, y, n_out);
        double dt = kvt_now_s() - t0;
        if (dt < best) best = dt;
        reps++;
    } while (kvt_now_s() < t_end || reps < 2);
    openblas_set_num_threads(1); /* mm_matmul's setting */
    return best;
}

/* CPU seconds of the whole process (every pool thread). */
static double cpu_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* --decode: the m = 1 products of a model file, step after step. */
static int bench_decode(const char *path, int n_threads, int n_steps)
{
    char err[256];
    gguf *g;
    int rc = gguf_open(path, &g, err, sizeof err);
    if (rc < 0) { fprintf(stderr, "bench_matmul: %s: %s\n", path, err); return 1; }
    const int nt = gguf_n_tensors(g);
    int64_t max_in = 0, max_out = 0;
    for (int i = 0; i < nt; i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        if (t->n_dims != 2 || !mm_type_supported(t->type)) continue;
        max_in = KVT_MAX(max_in, t->ne[0]);
        max_out = KVT_MAX(max_out, t->ne[1]);
    }
    pool *p;
    mm_ctx *c;
    if ((rc = pool_create(n_threads, &p)) < 0 || (rc = mm_ctx_create(p, max_in, NULL, &c)) < 0) {
        fprintf(stderr, "bench_matmul: %s\n", kvt_strerror(rc));
        return 1;
    }
    float *x = malloc((size_t)max_in * sizeof(float)), *y = malloc((size_t)max_out * sizeof(float));
    if (!x || !y) { fprintf(stderr, "out of memory\n"); return 1; }
    for (int64_t i = 0; i < max_in; i++) x[i] = next_f32();
    double sec[GGML_TYPE_COUNT] = {0}, bytes[GGML_TYPE_COUNT] = {0}, wall = 0, cpu = 0;
    for (int s = -1; s < n_steps; s++) {
        const double w0 = kvt_now_s(), c0 = cpu_now_s();
        for (int i = 0; i < nt; i++) {
            const gguf_tensor *t = gguf_tensor_at(g, i);
            if (t->n_dims != 2 || !mm_type_supported(t->type) ||
                strcmp(t->name, "token_embd.weight") == 0)
                continue;
            const double t0 = kvt_now_s();
            mm_matmul(c, t, x, 1, y);
            if (s < 0) continue;
            sec[t->type] += kvt_now_s() - t0;
            bytes[t->type] += (double)t->size;
        }
        if (s >= 0) {
            wall += kvt_now_s() - w0;
            cpu += cpu_now_s() - c0;
        }
    }
    double st = 0, bt = 0;
    printf("bench_matmul --decode %s: %d threads, %d steps, kernel set %d\n", path,
           n_threads, n_steps, mm_ctx_cpu_set(c));
    for (int ty = 0; ty < GGML_TYPE_COUNT; ty++) {
        if (bytes[ty] == 0) continue;
        printf("  %-7s %7.1f MB/step %8.2f ms/step %6.2f GB/s\n", ggml_type_name(ty),
               bytes[ty] / n_steps * 1e-6, sec[ty] / n_steps * 1e3, bytes[ty] / sec[ty] * 1e-9);
        st += sec[ty];
        bt += bytes[ty];
    }
    printf("  all     %7.1f MB/step %8.2f ms/step %6.2f GB/s  %.2f steps/s; "
           "%.2f GB per CPU-second\n", bt / n_steps * 1e-6, st / n_steps * 1e3,
           bt / st * 1e-9, n_steps / wall, bt / cpu * 1e-9);
    free(x);
    free(y);
    mm_ctx_free(c);
    pool_free(p);
    gguf_close(g);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[1], "--decode") == 0) {
        const int t = argc > 3 ? atoi(argv[3]) : 1, n = argc > 4 ? atoi(argv[4]) : 16;
        return bench_decode(argv[2], t < 1 ? 1 : t, n < 1 ? 1 : n);
    }
    int n_threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    const char *env = getenv("KVT_THREADS");
    if (env) n_threads = atoi(env);
    if (argc > 1) n_threads = atoi(argv[1]);
    if (n_threads < 1) n_threads = 1;

    static const struct { const char *model; int m, n_in, n_out; } shapes[] = {
        {"tiny-kjv", 512, 256, 256},    {"tiny-kjv", 512, 256, 688},
        {"tiny-kjv", 512, 256, 1024},   {"tinyllama", 512, 2048, 2048},
        {"tinyllama", 512, 2048, 5632}, {"tinyllama", 512, 2048, 256},
    };
    const int n_shapes = (int)(sizeof shapes / sizeof shapes[0]);
    const int n_types = (int)(sizeof types / sizeof types[0]);
    int max_in = 0, max_out = 0, max_m = 0;
    for (int s = 0; s < n_shapes; s++) {
        max_in = KVT_MAX(max_in, shapes[s].n_in);
        max_out = KVT_MAX(max_out, shapes[s].n_out);
        max_m = KVT_MAX(max_m, shapes[s].m);
    }

    pool *p;
    mm_ctx *c;
    int rc = pool_create(n_threads, &p);
    if (rc < 0) { fprintf(stderr, "pool: %s\n", kvt_strerror(rc)); return 1; }
    rc = mm_ctx_create(p, max_in, NULL, &c);
    if (rc < 0) { fprintf(stderr, "mm_ctx: %s\n", kvt_strerror(rc)); return 1; }
    /* the same kernels with the int8 paths off, for the int8x column */
    const struct mm_params no_int8 = {.int8_gemm_off = 1};
    mm_ctx *c_dq;
    rc = mm_ctx_create(p, max_in, &no_int8, &c_dq);
    if (rc < 0) { fprintf(stderr, "mm_ctx: %s\n", kvt_strerror(rc)); return 1; }

    const size_t n_w = (size_t)max_in * (size_t)max_out;
    uint8_t *wbuf = malloc(n_w * 4);
    float *w32 = malloc(n_w * sizeof(float));
    float *x = malloc((size_t)max_m * (size_t)max_in * sizeof(float));
    float *y = malloc((size_t)max_m * (size_t)max_out * sizeof(float));
    if (!wbuf || !w32 || !x || !y) { fprintf(stderr, "out of memory\n"); return 1; }
    for (size_t i = 0; i < (size_t)max_m * (size_t)max_in; i++) x[i] = next_f32();
    for (size_t i = 0; i < n_w; i++) w32[i] = 0.02f * next_f32();

    printf("bench_matmul: %d threads; GFLOP/s = 2*m*n_in*n_out / best time; "
           "sgemm = cblas_sgemm on f32 weights, %d threads\n", n_threads, n_threads);
    printf("%-10s %4s %5s %5s  %-6s %9s %9s %6s   %9s %8s   %9s %6s\n", "model", "m",
           "n_in", "n_out", "type", "mm GF/s", "sgemm", "ratio", "m=1 GB/s",
           "m=1 us", "deq GF/s", "int8x");
    for (int s = 0; s < n_shapes; s++) {
        const int m = shapes[s].m, n_in = shapes[s].n_in, n_out = shapes[s].n_out;
        const double flop = 2.0 * m * n_in * n_out;
        const double big = flop > 1e9 ? 0.6 : 0.25; /* seconds per measure */
        const double t_ref = time_sgemm(n_threads, x, w32, m, n_in, n_out, y, big);
        for (int ti = 0; ti < n_types; ti++) {
            const struct btype *t = &types[ti];
            gguf_tensor w = {
                .name = "w", .n_dims = 2, .ne = {n_in, n_out, 1, 1},
                .type = t->type, .data = wbuf,
            };
            w.size = fill_weights(t, wbuf, (int64_t)n_in * n_out);
            const double t_mm = time_mm(c, &w, x, m, y, big);
            const double t_1 = time_mm(c, &w, x, 1, y, 0.1);
            printf("%-10s %4d %5d %5d  %-6s %9.1f %9.1f %6.2f   %9.2f %8.1f",
                   shapes[s].model, m, n_in, n_out, ggml_type_name(t->type),
                   flop / t_mm * 1e-9, flop / t_ref * 1e-9, t_ref / t_mm,
                   (double)w.size / t_1 * 1e-9, t_1 * 1e6);
            if (mm_int8_gemm_used(c, t->type, n_in, m)) {
                const double t_dq = time_mm(c_dq, &w, x, m, y, big);
                printf("   %9.1f %6.2f", flop / t_dq * 1e-9, t_dq / t_mm);
            }
            printf("\n");
            fflush(stdout);
        }
    }
    free(wbuf);
    free(w32);
    free(x);
    free(y);
    mm_ctx_free(c);
    mm_ctx_free(c_dq);
    pool_free(p);
    return 0;
}
