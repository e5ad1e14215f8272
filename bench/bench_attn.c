/* bench_attn.c - streamed attention from disk tiles vs the same attention
 * with the KV in RAM, at long context.
 *
 * One layer of tiny-kjv shape (n_head 4, n_head_kv 2, head_dim 64; -H and
 * -G change the head counts) holds CTX tokens (default 65536) in each
 * store:
 *   ram-f32      RAM, f32 (zero-copy spans: the reference)
 *   ram-f16      RAM, f16 (spans unpacked from RAM tiles)
 *   disk-f16-C   cache file, f16 + codec C for each C of -c (default
 *                plane-huf,lz4)
 *   disk-f32-lz4 cache file, f32 + lz4
 * K/V come from a real cache file (-f: its layer 1, repeated to fill CTX)
 * or are synthetic (per-channel scale and offset plus noise).
 * Then attn_forward for NQ queries at pos0 = CTX (default 512; prefill of a
 * chunk) and for 1 query (decode) is timed on every store, interleaved
 * (store order rotated each repetition), REPS times, wall clock. Reported:
 * median ms per store and the median over repetitions of the paired time
 * ratio store / reference (disk-f16-* against ram-f16, disk-f32-* against
 * ram-f32; target <= 1.053, i.e. streamed at >= 95% of RAM speed), and the
 * attention GFLOP/s (4 * n_head * head_dim * keys per query) next to plain
 * "read only": the stream alone (kvs_read_begin/next over CTX tokens, no
 * attention): I/O, decode and unpack. Also
 * cblas_sgemm doing the same two products (Q K^T and P V, per KV head and
 * tile, no softmax, no rotation) with the same thread count, timed in
 * every repetition right after ram-f32's chunk, and the median over repetitions of
 * the paired ratio of the RAM f32 store's attention GFLOP/s to it; and
 * the process CPU time of that chunk and of the sgemm (the pool's threads
 * sleep when idle, so with -t 2 the chunk's is the work, not the waiting:
 * about the 1-thread figure when the split costs nothing; on a loaded
 * machine the ratio in CPU time at 1 thread is the steadier figure). The kernel set is
 * the default one (KVT_CPU=avx2 forces AVX2 on an AVX-512 host).
 *
 * usage: bench_attn [-n CTX] [-q NQ] [-t threads] [-r reps] [-d dir]
 *                   [-f cache.kvt] [-c codec,codec] [-H n_head] [-G n_head_kv]
 *                   [-Q queue_depth] [--io uring|pread|mmap] [--keep]
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "engine/attn.h"
#include "engine/pool.h"
#include "engine/rope.h"
#include "io/io.h"
#include "base/cpu.h"
#include "base/kvt.h"
#include "kvstore/kvs.h"
#include "kvstore/tile.h"
#include "tools/probe.h"

void openblas_set_num_threads(int num_threads);

#define MAX_STORES 8

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_attn: %s: %s\n", what, kvt_strerror(rc));
    exit(1);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) die("malloc", -12);
    return p;
}

static uint64_t rs = 0x9e3779b97f4a7c15ull;
static float gauss(void)
{
    float s = 0;
    for (int i = 0; i < 4; i++) {
        rs ^= rs << 13;
        rs ^= rs >> 7;
        rs ^= rs << 17;
        s += (float)((double)(rs >> 11) / 9007199254740992.0);
    }
    return (s - 2.0f) * 1.7320508f;
}

/* Layer 1 (or the last layer) of a cache file as f32 rows; *n tokens. */
static float *load_layer(const char *path, int kv_dim, int64_t *n, float **v_out)
{
    FILE *f = fopen(path, "rb");
    if (!f) die(path, -2);
    struct kvs_file_hdr fh;
    size_t got = fread(&fh, sizeof fh, 1, f);
    fclose(f);
    if (got != 1 || fh.magic != KVS_FILE_MAGIC) die(path, KVT_EFORMAT);
    if ((int)fh.kv_dim != kv_dim) die("cache kv_dim differs from -H/-G shape", KVT_ESHAPE);
    struct kvs_config c;
    memset(&c, 0, sizeof c);
    c.n_layer = (int)fh.n_layer;
    c.kv_dim = kv_dim;
    c.tile_tokens = (int)fh.tile_tokens;
    c.backing = KVS_DISK;
    c.type = fh.type;
    c.codec = fh.codec;
    c.io = IO_PREAD;
    c.path = path;
    c.reopen = 1;
    memcpy(c.model_fp, fh.model_fp, sizeof c.model_fp);
    kvs *s;
    int rc = kvs_open(&c, &s);
    if (rc < 0) die(path, rc);
    int layer = c.n_layer > 1 ? 1 : 0;
    *n = kvs_layer_tokens(s, layer);
    size_t row = (size_t)kv_dim * sizeof(float);
    float *k = xmalloc((size_t)*n * row), *v = xmalloc((size_t)*n * row);
    rc = kvs_read_begin(s, layer, *n);
    struct kvs_span sp;
    while (rc >= 0 && (rc = kvs_read_next(s, &sp)) > 0) {
        memcpy((char *)k + (size_t)sp.pos0 * row, sp.k, (size_t)sp.n * row);
        memcpy((char *)v + (size_t)sp.pos0 * row, sp.v, (size_t)sp.n * row);
    }
    kvs_read_end(s);
    kvs_close(s);
    if (rc < 0 || *n == 0) die(path, rc < 0 ? rc : KVT_ERANGE);
    *v_out = v;
    return k;
}

struct store {
    char name[40];
    kvs *s;
    int ref;          /* index of the store it is compared with */
    double *t_pre, *t_dec, *t_read; /* (reps) seconds */
    double *c_dec;                  /* (reps) process CPU seconds of the decode step */
    long csw_dec;                   /* context switches (all threads) over the decode steps */
    struct kvs_read_stats rs_dec;   /* summed over the decode steps */
};

/* CPU seconds of the whole process (every thread) */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* voluntary + involuntary context switches of the process (all threads) */
static long csw(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_nvcsw + ru.ru_nivcsw;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *v, int n)
{
    double *c = xmalloc((size_t)n * sizeof *c);
    memcpy(c, v, (size_t)n * sizeof *c);
    qsort(c, (size_t)n, sizeof *c, cmp_dbl);
    double m = n % 2 ? c[n / 2] : 0.5 * (c[n / 2 - 1] + c[n / 2]);
    free(c);
    return m;
}

static double paired_ratio(const double *a, const double *b, int n)
{
    double *r = xmalloc((size_t)n * sizeof *r);
    for (int i = 0; i < n; i++) r[i] = a[i] / b[i];
    double m = median(r, n);
    free(r);
    return m;
}

int main(int argc, char **argv)
{
    int64_t ctx = 65536;
    int nq = 512, n_threads = 1, reps = 5, n_head = 4, n_head_kv = 2, hd = 64;
    int T = 256, io = IO_URING, keep = 0, qdepth = 8;
    const char *dir = "/tmp", *real = NULL, *codecs = "plane-huf,lz4";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--keep")) { keep = 1; continue; }
        if (!v) { fprintf(stderr, "bench_attn: %s needs a value\n", a); return 2; }
        i++;
        if (!strcmp(a, "-n")) ctx = atoll(v);
        else if (!strcmp(a, "-q")) nq = atoi(v);
        else if (!strcmp(a, "-t")) n_threads = atoi(v);
        else if (!strcmp(a, "-r")) reps = atoi(v);
        else if (!strcmp(a, "-d")) dir = v;
        else if (!strcmp(a, "-f")) real = v;
        else if (!strcmp(a, "-c")) codecs = v;
        else if (!strcmp(a, "-H")) n_head = atoi(v);
        else if (!strcmp(a, "-Q")) qdepth = atoi(v);
        else if (!strcmp(a, "-G")) n_head_kv = atoi(v);
        else if (!strcmp(a, "--io")) io = !strcmp(v, "pread") ? IO_PREAD : !strcmp(v, "mmap") ? IO_MMAP : IO_URING;
        else { fprintf(stderr, "bench_attn: unknown option %s\n", a); return 2; }
    }
    if (strlen(dir) > 900 || qdepth < 1 || qdepth > 1024 || ctx < T || nq < 1 || n_threads < 1 || reps < 1 || n_head_kv < 1 ||
        n_head % n_head_kv) {
        fprintf(stderr, "bench_attn: bad arguments\n");
        return 2;
    }
    const int D = n_head_kv * hd, qd = n_head * hd;
    openblas_set_num_threads(1); /* attention runs sgemm inside pool tasks */

    /* K/V source rows: real (repeated) or synthetic */
    int64_t n_src;
    float *ksrc, *vsrc;
    if (real) {
        ksrc = load_layer(real, D, &n_src, &vsrc);
    } else {
        n_src = 4096;
        ksrc = xmalloc((size_t)n_src * D * sizeof(float));
        vsrc = xmalloc((size_t)n_src * D * sizeof(float));
        for (int c = 0; c < D; c++) {
            float sc = expf(0.8f * gauss()), off = 2.0f * gauss();
            for (int64_t t = 0; t < n_src; t++) {
                ksrc[(size_t)t * D + c] = off + sc * gauss();
                vsrc[(size_t)t * D + c] = 0.2f * sc * gauss();
            }
        }
    }

    /* stores */
    struct store st[MAX_STORES];
    int ns = 0;
    memset(st, 0, sizeof st);
    struct kvs_config base;
    memset(&base, 0, sizeof base);
    base.n_layer = 1;
    base.kv_dim = D;
    base.tile_tokens = T;
    base.io = io;
    base.queue_depth = qdepth;
    base.ram_budget_bytes = (size_t)256 << 20; /* the window is -Q */
    char paths[MAX_STORES][1024];
    struct { int backing, type, codec; } spec[MAX_STORES];
    spec[ns].backing = KVS_RAM; spec[ns].type = KVS_F32; spec[ns].codec = 0;
    snprintf(st[ns].name, sizeof st[ns].name, "ram-f32"); st[ns].ref = -1; ns++;
    spec[ns].backing = KVS_RAM; spec[ns].type = KVS_F16; spec[ns].codec = 0;
    snprintf(st[ns].name, sizeof st[ns].name, "ram-f16"); st[ns].ref = 0; ns++;
    char list[256];
    snprintf(list, sizeof list, "%s", codecs);
    for (char *tok = strtok(list, ","); tok && ns < MAX_STORES - 1; tok = strtok(NULL, ",")) {
        int c = tile_codec_parse(tok);
        if (c < 0) die(tok, c);
        spec[ns].backing = KVS_DISK; spec[ns].type = KVS_F16; spec[ns].codec = c;
        snprintf(st[ns].name, sizeof st[ns].name, "disk-f16-%s", tok);
        st[ns].ref = 1;
        ns++;
    }
    spec[ns].backing = KVS_DISK; spec[ns].type = KVS_F32; spec[ns].codec = TILE_LZ4;
    snprintf(st[ns].name, sizeof st[ns].name, "disk-f32-lz4"); st[ns].ref = 0; ns++;

    int info_all = 0;
    for (int i = 0; i < ns; i++) {
        struct kvs_config c = base;
        c.backing = spec[i].backing;
        c.type = spec[i].type;
        c.codec = spec[i].codec;
        if (c.backing == KVS_DISK) {
            snprintf(paths[i], sizeof paths[i], "%s/bench_attn.%d.%s.kvt", dir,
                     (int)getpid(), st[i].name);
            c.path = paths[i];
        }
        int rc = kvs_open(&c, &st[i].s);
        if (rc < 0) die(st[i].name, rc);
        info_all |= kvs_io_info(st[i].s);
        for (int64_t t = 0; t < ctx; t += T) {
            int64_t o = t % n_src;
            int n = (int)KVT_MIN((int64_t)T, KVT_MIN(ctx - t, n_src - o));
            rc = kvs_append(st[i].s, 0, ksrc + (size_t)o * D, vsrc + (size_t)o * D, n);
            if (rc < 0) die(st[i].name, rc);
            t -= T - n; /* a short run at the source's end: continue there */
        }
        rc = kvs_sync(st[i].s);
        if (rc < 0) die(st[i].name, rc);
        st[i].t_pre = xmalloc((size_t)reps * sizeof(double));
        st[i].t_dec = xmalloc((size_t)reps * sizeof(double));
        st[i].t_read = xmalloc((size_t)reps * sizeof(double));
        st[i].c_dec = xmalloc((size_t)reps * sizeof(double));
    }

    pool *pl;
    int rc = pool_create(n_threads, &pl);
    if (rc < 0) die("pool", rc);
    struct attn_params ap;
    memset(&ap, 0, sizeof ap);
    ap.n_head = n_head;
    ap.n_head_kv = n_head_kv;
    ap.head_dim = hd;
    ap.max_q = nq;
    ap.tile_tokens = T;
    attn_ctx *actx;
    rc = attn_ctx_create(&ap, pl, &actx);
    if (rc < 0) die("attn_ctx_create", rc);
    struct rope_params rp;
    rope_params_default(&rp, hd, 10000.0);
    struct rope_table rt;
    rc = rope_prepare(&rp, ctx + nq, &rt);
    if (rc < 0) die("rope_prepare", rc);
    rc = attn_reserve(actx, ctx + nq); /* the cos/sin cache, as model_ctx_set_rope sizes it */
    if (rc < 0) die("attn_reserve", rc);

    float *q0 = xmalloc((size_t)nq * qd * sizeof(float));
    float *q = xmalloc((size_t)nq * qd * sizeof(float));
    float *kn = xmalloc((size_t)nq * D * sizeof(float));
    float *vn = xmalloc((size_t)nq * D * sizeof(float));
    float *out = xmalloc((size_t)nq * qd * sizeof(float));
    for (size_t i = 0; i < (size_t)nq * qd; i++) q0[i] = gauss();
    for (size_t i = 0; i < (size_t)nq * D; i++) {
        kn[i] = ksrc[i % ((size_t)n_src * D)];
        vn[i] = vsrc[i % ((size_t)n_src * D)];
    }

    /* warm-up, and a check: lossless disk stores give their RAM store's
     * outputs bit for bit (kvs.h) */
    size_t out_n = (size_t)nq * qd;
    float *outs = xmalloc((size_t)ns * out_n * sizeof(float));
    for (int i = 0; i < ns; i++) {
        memcpy(q, q0, out_n * sizeof(float));
        rc = attn_forward(actx, st[i].s, 0, &rt, q, kn, vn, nq, ctx, outs + (size_t)i * out_n);
        if (rc < 0) die(st[i].name, rc);
        int ref = st[i].ref;
        if (ref >= 0 && spec[i].type == spec[ref].type &&
            memcmp(outs + (size_t)i * out_n, outs + (size_t)ref * out_n,
                   out_n * sizeof(float)) != 0) {
            fprintf(stderr, "bench_attn: %s output differs from %s\n", st[i].name,
                    st[ref].name);
            return 1;
        }
    }
    free(outs);

    /* plain sgemm: the same two products per KV head and tile, timed in
     * each repetition right after ram-f32's prompt chunk (a paired ratio) */
    int grp = n_head / n_head_kv, M = nq * grp;
    float *A = xmalloc((size_t)M * hd * sizeof(float));
    float *S = xmalloc((size_t)M * T * sizeof(float));
    float *C = xmalloc((size_t)M * hd * sizeof(float));
    for (size_t i = 0; i < (size_t)M * hd; i++) A[i] = gauss();
    for (size_t i = 0; i < (size_t)M * T; i++) S[i] = 0.001f * gauss();
    double *t_gemm = xmalloc((size_t)reps * sizeof(double));
    double *cpu_pre = xmalloc((size_t)reps * sizeof(double)); /* ram-f32's CPU seconds */
    double *cpu_gemm = xmalloc((size_t)reps * sizeof(double));

    for (int r = 0; r < reps; r++) {
        for (int k = 0; k < ns; k++) {
            int i = (k + r) % ns; /* rotate the order */
            memcpy(q, q0, (size_t)nq * qd * sizeof(float));
            double c0 = cpu_s(), t0 = kvt_now_s();
            rc = attn_forward(actx, st[i].s, 0, &rt, q, kn, vn, nq, ctx, out);
            st[i].t_pre[r] = kvt_now_s() - t0;
            if (i == 0) cpu_pre[r] = cpu_s() - c0;
            if (rc < 0) die(st[i].name, rc);
            if (i == 0) { /* right after the reference store: the paired sgemm */
                openblas_set_num_threads(n_threads);
                c0 = cpu_s();
                t0 = kvt_now_s();
                for (int64_t t = 0; t < ctx; t += T)
                    for (int g = 0; g < n_head_kv; g++) {
                        const float *kb = ksrc + (size_t)(t % (n_src - T + 1)) * D + (size_t)g * hd;
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, T, hd, 0.125f,
                                    A, hd, kb, D, 0.0f, S, T);
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, hd, T, 1.0f,
                                    S, T, kb, D, 1.0f, C, hd);
                    }
                t_gemm[r] = kvt_now_s() - t0;
                cpu_gemm[r] = cpu_s() - c0;
                openblas_set_num_threads(1);
            }
            memcpy(q, q0, (size_t)qd * sizeof(float));
            struct kvs_read_stats rs0, rs1;
            kvs_get_read_stats(st[i].s, &rs0);
            long sw0 = csw();
            c0 = cpu_s();
            t0 = kvt_now_s();
            rc = attn_forward(actx, st[i].s, 0, &rt, q, kn, vn, 1, ctx, out);
            st[i].t_dec[r] = kvt_now_s() - t0;
            st[i].c_dec[r] = cpu_s() - c0;
            st[i].csw_dec += csw() - sw0;
            kvs_get_read_stats(st[i].s, &rs1);
            st[i].rs_dec.tiles += rs1.tiles - rs0.tiles;
            st[i].rs_dec.io_wait_s += rs1.io_wait_s - rs0.io_wait_s;
            st[i].rs_dec.decode_s += rs1.decode_s - rs0.decode_s;
            if (rc < 0) die(st[i].name, rc);
            t0 = kvt_now_s(); /* the stream alone: I/O + decode + unpack */
            rc = kvs_read_begin(st[i].s, 0, ctx);
            struct kvs_span sp;
            while (rc >= 0 && (rc = kvs_read_next(st[i].s, &sp)) > 0) {}
            kvs_read_end(st[i].s);
            st[i].t_read[r] = kvt_now_s() - t0;
            if (rc < 0) die(st[i].name, rc);
        }
    }

    double flop_pre = 4.0 * n_head * hd * (double)nq * (double)ctx;
    double flop_dec = 4.0 * n_head * hd * (double)ctx;
    double g_gemm = flop_pre / median(t_gemm, reps) / 1e9;

    printf("# ctx %lld tokens, n_head %d, n_head_kv %d, head_dim %d, tile %d, "
           "%d thread(s), %d reps, K/V %s, io %s, queue depth %d%s\n",
           (long long)ctx, n_head, n_head_kv, hd, T, n_threads, reps,
           real ? real : "synthetic", io == IO_URING ? "uring" : io == IO_PREAD ? "pread" : "mmap",
           qdepth, info_all ? " (fell back: see kvs_io_info)" : "");
    printf("| store | vs | %d q: ms | ratio | GFLOP/s | 1 q: ms | ratio | read only: ms |\n", nq);
    printf("|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < ns; i++) {
        double mp = median(st[i].t_pre, reps), md = median(st[i].t_dec, reps);
        char rp_s[16] = "-", rd_s[16] = "-";
        if (st[i].ref >= 0) {
            snprintf(rp_s, sizeof rp_s, "%.3f", paired_ratio(st[i].t_pre, st[st[i].ref].t_pre, reps));
            snprintf(rd_s, sizeof rd_s, "%.3f", paired_ratio(st[i].t_dec, st[st[i].ref].t_dec, reps));
        }
        printf("| %s | %s | %.1f | %s | %.1f | %.2f | %s | %.2f |\n", st[i].name,
               st[i].ref >= 0 ? st[st[i].ref].name : "-", mp * 1e3, rp_s,
               flop_pre / mp / 1e9, md * 1e3, rd_s, median(st[i].t_read, reps) * 1e3);
        (void)flop_dec;
    }
    /* the decode steps' disk time by thread (means per step) and the
     * device: the file's bytes over its O_DIRECT rate, probed now */
    printf("decode step, per disk store (mean ms per step): waiting for reads / check+decode+unpack / "
           "the rest (rotation, products, submits); device bound of the file\n");
    for (int i = 0; i < ns; i++) {
        if (spec[i].backing != KVS_DISK) continue;
        const struct kvs_read_stats *x = &st[i].rs_dec;
        double sum_dec = 0;
        for (int r = 0; r < reps; r++) sum_dec += st[i].t_dec[r];
        struct probe_result pr;
        int prc = probe_direct(paths[i], &pr);
        int64_t fb = 0;
        kvs_file_bytes(st[i].s, &fb);
        char dev[96] = "probe failed";
        if (prc == 0)
            snprintf(dev, sizeof dev, "%.2f GB/s: %.2f ms for %.1f MB", pr.bytes_per_s / 1e9,
                     (double)fb / pr.bytes_per_s * 1e3, (double)fb / 1e6);
        printf("  %s: %.2f / %.2f / %.2f; %s (%lld tiles)\n", st[i].name,
               x->io_wait_s / reps * 1e3, x->decode_s / reps * 1e3,
               (sum_dec - x->io_wait_s - x->decode_s) / reps * 1e3, dev,
               (long long)(x->tiles / reps));
    }
    printf("decode step, CPU time of the process (median ms) and context switches per step:");
    for (int i = 0; i < ns; i++)
        printf(" %s %.2f, %.0f;", st[i].name, median(st[i].c_dec, reps) * 1e3,
               (double)st[i].csw_dec / reps);
    printf("\n");
    printf("plain cblas_sgemm, same products (M %d, tiles of %d keys, k %d): %.1f ms, "
           "%.1f GFLOP/s\n", M, T, hd, median(t_gemm, reps) * 1e3, g_gemm);
    char cpu[256];
    cpu_describe(cpu, sizeof cpu);
    printf("attention (ram-f32, %d queries) / plain sgemm, GFLOP/s, median of the paired "
           "repetitions: %.3f (cpu: %s)\n", nq, paired_ratio(t_gemm, st[0].t_pre, reps), cpu);
    printf("CPU time (all threads): ram-f32 chunk %.1f ms (%.2f CPU s per wall s), sgemm %.1f ms "
           "(%.2f); attention / sgemm in GFLOP per CPU s, paired: %.3f%s\n",
           median(cpu_pre, reps) * 1e3, median(cpu_pre, reps) / median(st[0].t_pre, reps),
           median(cpu_gemm, reps) * 1e3, median(cpu_gemm, reps) / median(t_gemm, reps),
           paired_ratio(cpu_gemm, cpu_pre, reps),
           n_threads > 1 ? " (OpenBLAS's threads spin: its CPU time counts waiting)" : "");

    for (int i = 0; i < ns; i++) {
        kvs_close(st[i].s);
        if (spec[i].backing == KVS_DISK && !keep) unlink(paths[i]);
        free(st[i].t_pre);
        free(st[i].t_dec);
        free(st[i].t_read);
        free(st[i].c_dec);
    }
    attn_ctx_free(actx);
    pool_free(pl);
    free(q0); free(q); free(kn); free(vn); free(out);
    free(A); free(S); free(C); free(t_gemm); free(cpu_pre); free(cpu_gemm); free(ksrc); free(vsrc);
    return 0;
}
