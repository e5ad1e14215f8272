/* bench_decode2m.c - single-token decode steps over a huge disk KV cache.
 *
 * For each shape and cache length N (tokens), a synthetic f16 cache of N
 * tokens (tools/synth.h, the data kvtile iobench writes) is written
 * with the real writer (kvs_append) into --dir, or
 * reused if a cache with the same parameters is already there; then each
 * decode step runs, for every layer, one query token (random q, k, v)
 * through attn_forward (n = 1, pos0 = N), which streams all N cached
 * tokens of the layer from disk (io_uring, O_DIRECT); with the full scan
 * each layer's reads start while the layer before finishes
 * (kvs_read_ahead, as model_eval does). Reported per row:
 *   step s      mean wall time of one decode step (all layers)
 *   GB/s        cache file bytes / step time
 *   probe GB/s  raw device bandwidth of the same file in the same run:
 *               1 MiB O_DIRECT reads, 32 in flight, via io_uring (mean
 *               of a probe before and after the steps; tools/probe.h)
 *   bound s     file bytes / probe GB/s: the I/O lower bound of a step
 *   x bound     step s / bound s (1.0 = the step runs at device speed)
 *   RSS MiB     peak RSS during the steps (VmHWM reset through
 *               /proc/self/clear_refs before them; caches are written by a
 *               child process, so the writer's heap never counts); must not
 *               grow with N beyond the tile index and the packed summaries
 *               (16 + 4 * KV heads + kv_dim/2 + 1 bytes per tile and layer)
 * With --attend P1,P2,.. (select.h policies, "all" = the full scan), each
 * policy runs its steps on the same cache, page cache dropped before
 * each, and the row also gives the tiles and bytes read per step and the
 * step time over the full scan's (the first policy should be "all").
 *
 * Shapes: tiny = tiny-kjv (4 layers, 4 heads, 2 KV heads x 64 = kv_dim
 * 128, ~2 KiB per token: 4 GB at 2M tokens); llama8b = one layer of
 * Llama-3-8B (32 heads, 8 KV heads x 128 = kv_dim 1024, 4 KiB per token:
 * 8 GB at 2M tokens).
 *
 * usage: bench_decode2m [--tokens 64K,256K] [--shapes tiny,llama8b]
 *        [--dir /tmp] [--clean] [--steps 3] [--io uring] [--qd 16]
 *        [--tile-tokens 1024] [--codec none] [-t THREADS]
 *        [--attend all;sink:1024,recent:1024,top:1%;...]  (';'-separated)
 *   full run: bench_decode2m --tokens 256K,2M --dir DIR   (12 GB on disk)
 *   --clean deletes the caches at the end (make bench passes it).
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "engine/attn.h"
#include "engine/select.h"
#include "engine/pool.h"
#include "engine/rope.h"
#include "io/io.h"
#include "base/kvt.h"
#include "tools/probe.h"
#include "kvstore/kvs.h"
#include "tools/synth.h"
#include "kvstore/tile.h"

void openblas_set_num_threads(int num_threads);

#define MAX_LIST 8
#define GEN_TOKENS 256

struct shape {
    const char *name;
    int n_layer, n_head, n_head_kv, head_dim;
    double freq_base;
};

static const struct shape shapes[] = {
    { "tiny", 4, 4, 2, 64, 10000.0 },
    { "llama8b", 1, 32, 8, 128, 500000.0 },
};
#define N_SHAPES ((int)(sizeof shapes / sizeof shapes[0]))

struct opts {
    int64_t tokens[MAX_LIST];
    int n_tokens;
    int shape_on[N_SHAPES];
    const char *dir;
    int clean, steps, io, qd, tile, codec, threads;
    struct sel_policy pol[MAX_LIST];
    int n_pol;
};

static _Noreturn void die(const char *fmt, ...)
{
    va_list ap;
    fputs("bench_decode2m: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static int64_t parse_count(const char *what, const char *s)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno) die("%s: '%s' is not a number", what, s);
    if (*end == 'k' || *end == 'K') { v *= 1024; end++; }
    else if (*end == 'm' || *end == 'M') { v *= 1024 * 1024; end++; }
    if (*end || v < 1 || v > 1e12 || v != floor(v))
        die("%s: '%s' is not a positive whole count", what, s);
    return (int64_t)v;
}

static void parse_args(int argc, char **argv, struct opts *o)
{
    memset(o, 0, sizeof *o);
    o->tokens[0] = 64 * 1024;
    o->tokens[1] = 256 * 1024;
    o->n_tokens = 2;
    for (int i = 0; i < N_SHAPES; i++) o->shape_on[i] = 1;
    o->dir = "/tmp";
    o->steps = 3;
    o->io = IO_URING;
    o->qd = 16;
    o->tile = 1024;
    o->codec = TILE_NONE;
    long nproc = sysconf(_SC_NPROCESSORS_ONLN);
    o->threads = nproc > 0 ? (int)nproc : 1;
    o->n_pol = 1; /* "all" */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--clean")) { o->clean = 1; continue; }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fprintf(stderr, "usage: bench_decode2m [--tokens 64K,256K] [--shapes tiny,llama8b] "
                            "[--dir /tmp] [--clean] [--steps 3] [--io uring|pread|mmap] "
                            "[--qd 16] [--tile-tokens 1024] [--codec none] [-t N]\n");
            exit(2);
        }
        if (i + 1 >= argc) die("option %s needs a value", a);
        char *v = argv[++i];
        if (!strcmp(a, "--tokens") || !strcmp(a, "--shapes")) {
            char buf[256];
            snprintf(buf, sizeof buf, "%s", v);
            int shapes_opt = !strcmp(a, "--shapes");
            if (shapes_opt) memset(o->shape_on, 0, sizeof o->shape_on);
            else o->n_tokens = 0;
            for (char *sv = NULL, *t = strtok_r(buf, ",", &sv); t; t = strtok_r(NULL, ",", &sv)) {
                if (shapes_opt) {
                    int k = 0;
                    while (k < N_SHAPES && strcmp(shapes[k].name, t)) k++;
                    if (k == N_SHAPES) die("--shapes: unknown shape '%s' (tiny, llama8b)", t);
                    o->shape_on[k] = 1;
                } else {
                    if (o->n_tokens == MAX_LIST) die("--tokens: too many values");
                    o->tokens[o->n_tokens++] = parse_count(a, t);
                }
            }
        } else if (!strcmp(a, "--attend")) {
            char buf[512];
            snprintf(buf, sizeof buf, "%s", v);
            o->n_pol = 0;
            for (char *sv = NULL, *t = strtok_r(buf, ";", &sv); t; t = strtok_r(NULL, ";", &sv)) {
                if (o->n_pol == MAX_LIST) die("--attend: too many policies");
                if (sel_parse(t, &o->pol[o->n_pol++]) < 0) die("--attend: bad policy '%s'", t);
            }
            if (o->n_pol == 0) die("--attend: empty list");
        } else if (!strcmp(a, "--dir")) o->dir = v;
        else if (!strcmp(a, "--steps")) o->steps = (int)parse_count(a, v);
        else if (!strcmp(a, "--qd")) o->qd = (int)parse_count(a, v);
        else if (!strcmp(a, "--tile-tokens")) o->tile = (int)parse_count(a, v);
        else if (!strcmp(a, "-t")) o->threads = (int)parse_count(a, v);
        else if (!strcmp(a, "--io")) {
            if ((o->io = io_kind_parse(v)) < 0) die("--io: unknown backend '%s'", v);
        } else if (!strcmp(a, "--codec")) {
            if ((o->codec = tile_codec_parse(v)) < 0) die("--codec: unknown codec '%s'", v);
        } else die("unknown option '%s'", a);
    }
    if (o->qd > 1024) die("--qd: at most 1024");
    if (o->tile > TILE_MAX_TOKENS) die("--tile-tokens: at most %d", TILE_MAX_TOKENS);
    if (o->n_tokens == 0) die("--tokens: empty list");
}

/* ---- cache ---------------------------------------------------------------- */

static int info_seen;

static void note_info(const char *path, int info)
{
    int fresh = info & ~info_seen;
    info_seen |= info;
    if (fresh & IO_INFO_NO_URING)
        fprintf(stderr, "bench_decode2m: %s: io_uring unavailable, falling back to pread\n", path);
    if (fresh & IO_INFO_NO_DIRECT)
        fprintf(stderr, "bench_decode2m: %s: O_DIRECT refused, reads are buffered\n", path);
}

static struct kvs_config cache_config(const struct opts *o, const struct shape *sh,
                                      const char *path, const char *key)
{
    struct kvs_config c;
    memset(&c, 0, sizeof c);
    c.n_layer = sh->n_layer;
    c.kv_dim = sh->n_head_kv * sh->head_dim;
    c.tile_tokens = o->tile;
    c.backing = KVS_DISK;
    c.type = KVS_F16;
    c.codec = o->codec;
    c.io = o->io;
    c.queue_depth = o->qd;
    size_t rec = (tile_encode_bound(c.type, c.kv_dim, c.tile_tokens) + IO_ALIGN - 1) /
                 IO_ALIGN * IO_ALIGN;
    c.path = path;
    c.head_dim = sh->head_dim; /* llama: adjacent rotation pairs */
    c.ram_budget_bytes = kvs_ram_min(&c) + rec * (size_t)(o->qd - 1); /* window = qd */
    for (int i = 0; i < 4; i++) { /* the parameters, as the "model" */
        char salted[300];
        snprintf(salted, sizeof salted, "%d %s", i, key);
        uint64_t h = tile_hash(salted, strlen(salted));
        memcpy(c.model_fp + 8 * i, &h, 8);
    }
    return c;
}

static void write_cache(const struct kvs_config *rc_cfg, int64_t tokens)
{
    struct kvs_config c = *rc_cfg;
    c.io = IO_PREAD;
    c.queue_depth = 1;
    c.ram_budget_bytes = 0;
    kvs *s;
    int rc = kvs_open(&c, &s);
    if (rc < 0) die("%s: %s", c.path, kvt_strerror(rc));
    synth *g;
    if ((rc = synth_create(c.n_layer, c.kv_dim, SYNTH_SEED_DEFAULT, &g)) < 0)
        die("synthetic K/V: %s", kvt_strerror(rc));
    size_t gen = (size_t)GEN_TOKENS * (size_t)c.kv_dim;
    float *k = malloc(gen * sizeof *k), *v = malloc(gen * sizeof *v);
    if (!k || !v) die("out of memory");
    double t0 = kvt_now_s();
    for (int64_t t = 0; t < tokens; t += GEN_TOKENS) {
        int n = (int)KVT_MIN((int64_t)GEN_TOKENS, tokens - t);
        for (int L = 0; L < c.n_layer; L++) {
            synth_next(g, L, n, k, v);
            if ((rc = kvs_append(s, L, k, v, n)) < 0)
                die("%s: %s", c.path, kvt_strerror(rc));
        }
    }
    if ((rc = kvs_sync(s)) < 0) die("%s: %s", c.path, kvt_strerror(rc));
    kvs_close(s);
    fprintf(stderr, "bench_decode2m: wrote %s (%lld tokens) in %.1f s\n", c.path,
            (long long)tokens, kvt_now_s() - t0);
    synth_free(g);
    free(k);
    free(v);
}

/* write_cache in a child process, so that nothing the writer allocated
 * (and the allocator kept) counts in the peak RSS of the steps: a cache
 * written in this run and one reused from an earlier run give the same. */
static void write_cache_apart(const struct kvs_config *c, int64_t tokens)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) die("fork: %s", strerror(errno));
    if (pid == 0) {
        write_cache(c, tokens);
        fflush(NULL);
        _exit(0);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) die("waitpid: %s", strerror(errno));
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) exit(1); /* the child said why */
}

/* Open the cache for reading; write it first unless a cache with the same
 * parameters and length is there. */
static kvs *open_cache(const struct kvs_config *c, int64_t tokens)
{
    struct kvs_config r = *c;
    r.reopen = 1;
    kvs *s = NULL;
    if (access(c->path, F_OK) == 0) {
        int rc = kvs_open(&r, &s);
        if (rc == 0 && kvs_n_tokens(s) == tokens && kvs_summary_missing(s) > 0) {
            double t0 = kvt_now_s(); /* a cache from before summaries */
            int64_t nb = kvs_summary_rebuild(s);
            if (nb < 0) die("%s: rebuilding summaries: %s", c->path, kvt_strerror((int)nb));
            fprintf(stderr, "bench_decode2m: %s: %lld tile summaries rebuilt in %.1f s\n",
                    c->path, (long long)nb, kvt_now_s() - t0);
        }
        if (rc == 0 && kvs_n_tokens(s) == tokens) return s;
        kvs_close(s);
        s = NULL;
    }
    write_cache_apart(c, tokens);
    int rc = kvs_open(&r, &s);
    if (rc < 0) die("%s: %s", c->path, kvt_strerror(rc));
    if (kvs_n_tokens(s) != tokens) die("%s: reopened with a different length", c->path);
    return s;
}

/* ---- probe, RSS ------------------------------------------------------------ */

/* The whole file by O_DIRECT reads, PROBE_QD in flight (tools/probe.h).
 * @return GB/s; *size_out = the file's bytes. */
static double device_gbps(const char *path, uint64_t *size_out)
{
    struct probe_result pr;
    int rc = probe_direct(path, &pr);
    if (rc < 0) die("%s: %s", path, kvt_strerror(rc));
    note_info(path, pr.info);
    *size_out = pr.file_bytes;
    return pr.bytes_per_s / 1e9;
}

/* Reset the peak RSS (VmHWM) to the current RSS. @return 0 or -errno. */
static int rss_reset(void)
{
    int fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    int rc = write(fd, "5", 1) == 1 ? 0 : -errno;
    close(fd);
    return rc;
}

/* VmHWM in bytes, or the getrusage peak if /proc is not there. */
static int64_t rss_peak(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %lld kB", &kb) == 1) break;
    if (f) fclose(f);
    return kb >= 0 ? (int64_t)kb * 1024 : kvt_peak_rss_bytes();
}

/* ---- decode steps ------------------------------------------------------------ */

struct result {
    double step_s, probe_gbps, bound_s;
    uint64_t file_bytes;
    int64_t rss;
    double tiles_step, bytes_step; /* read per step (all layers) */
    double cpu_step;               /* process CPU seconds per step (all threads) */
    double io_wait_step, dec_step; /* kvs_read_stats per step: waiting for reads, decoding */
};

/* CPU seconds of the whole process (every thread) */
static double cpu_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Steps of one policy on an open cache. */
static void run_policy(const struct opts *o, const struct shape *sh, int64_t tokens,
                       kvs *kv, const struct sel_policy *pol, pool *pl, const char *path,
                       struct result *res)
{
    const int kv_dim = sh->n_head_kv * sh->head_dim;
    const int q_dim = sh->n_head * sh->head_dim;
    struct attn_params ap = { .n_head = sh->n_head, .n_head_kv = sh->n_head_kv,
                              .head_dim = sh->head_dim, .max_q = 1,
                              .tile_tokens = o->tile, .sel = *pol };
    attn_ctx *a;
    int rc = attn_ctx_create(&ap, pl, &a);
    if (rc == 0) rc = attn_reserve(a, tokens + 1);
    if (rc < 0) die("attention: %s", kvt_strerror(rc));
    struct rope_params rp;
    rope_params_default(&rp, sh->head_dim, sh->freq_base);
    struct rope_table rt;
    if ((rc = rope_prepare(&rp, tokens + 1, &rt)) < 0) die("rope: %s", kvt_strerror(rc));
    float *q = malloc((size_t)q_dim * sizeof *q), *out = malloc((size_t)q_dim * sizeof *out);
    float *kn = malloc((size_t)kv_dim * sizeof *kn), *vn = malloc((size_t)kv_dim * sizeof *vn);
    if (!q || !out || !kn || !vn) die("out of memory");
    uint64_t rng = 0x1234567ull + (uint64_t)tokens;

    malloc_trim(0); /* what writing the cache freed must not count below */
    if ((rc = probe_drop_cache(path)) < 0) die("%s: %s", path, kvt_strerror(rc));
    int have_reset = rss_reset() == 0;
    uint64_t b0 = kvs_bytes_read(kv);
    struct kvs_read_stats rs0, rs1;
    kvs_get_read_stats(kv, &rs0);
    double c0 = cpu_now_s();
    double t0 = kvt_now_s();
    for (int s = 0; s < o->steps; s++)
        for (int L = 0; L < sh->n_layer; L++) {
            for (int i = 0; i < q_dim; i++) q[i] = synth_noise(synth_rand(&rng), 0);
            for (int i = 0; i < kv_dim; i++) {
                kn[i] = synth_noise(synth_rand(&rng), 0);
                vn[i] = synth_noise(synth_rand(&rng), 1);
            }
            rc = attn_forward(a, kv, L, &rt, q, kn, vn, 1, tokens, out);
            if (rc < 0) die("%s: layer %d: %s", path, L, kvt_strerror(rc));
            if (!isfinite(out[0])) die("%s: attention output is not finite", path);
            /* the next layer's (or step's) reads, as model_eval starts
             * them; none after the last, so nothing runs past the clock */
            int last = s + 1 == o->steps && L + 1 == sh->n_layer;
            if (!pol->on && !last &&
                (rc = kvs_read_ahead(kv, (L + 1) % sh->n_layer, tokens)) < 0)
                die("%s: %s", path, kvt_strerror(rc));
        }
    res->step_s = (kvt_now_s() - t0) / o->steps;
    res->cpu_step = (cpu_now_s() - c0) / o->steps;
    kvs_get_read_stats(kv, &rs1);
    res->io_wait_step = (rs1.io_wait_s - rs0.io_wait_s) / o->steps;
    res->dec_step = (rs1.decode_s - rs0.decode_s) / o->steps;
    res->rss = have_reset ? rss_peak() : kvt_peak_rss_bytes();
    struct attn_stats st;
    attn_get_stats(a, &st);
    res->tiles_step = (double)st.tiles_read / o->steps;
    res->bytes_step = (double)(kvs_bytes_read(kv) - b0) / o->steps;
    attn_ctx_free(a);
    free(q); free(out); free(kn); free(vn);
}

/* Every policy on the cache of (shape, tokens): res[0 .. n_pol). */
static void run_one(const struct opts *o, const struct shape *sh, int64_t tokens,
                    pool *pl, struct result *res)
{
    char key[256], path[4096];
    snprintf(key, sizeof key, "kvtile-decode2m-%s-%lld-t%d-f16-%s", sh->name,
             (long long)tokens, o->tile, tile_codec_name(o->codec));
    snprintf(path, sizeof path, "%s/%s.kvt", o->dir, key);
    struct kvs_config cfg = cache_config(o, sh, path, key);
    kvs *kv = open_cache(&cfg, tokens);
    note_info(path, kvs_io_info(kv));
    uint64_t file_bytes;
    double p0 = device_gbps(path, &file_bytes);
    for (int i = 0; i < o->n_pol; i++) run_policy(o, sh, tokens, kv, &o->pol[i], pl, path, &res[i]);
    double p1 = device_gbps(path, &file_bytes);
    for (int i = 0; i < o->n_pol; i++) {
        res[i].file_bytes = file_bytes;
        res[i].probe_gbps = 0.5 * (p0 + p1);
        res[i].bound_s = (double)file_bytes / (res[i].probe_gbps * 1e9);
    }
    kvs_close(kv);
    if (o->clean && unlink(path) != 0) die("%s: %s", path, strerror(errno));
}

int main(int argc, char **argv)
{
    struct opts o;
    parse_args(argc, argv, &o);
    openblas_set_num_threads(1); /* the pool runs the heads, as the model does */
    pool *pl;
    int rc = pool_create(o.threads, &pl);
    if (rc < 0) die("threads: %s", kvt_strerror(rc));
    printf("decode steps over a disk KV cache: f16, %s, tile %d, %s qd %d, %d threads, "
           "%d steps, cache in %s\n", tile_codec_name(o.codec), o.tile, io_kind_name(o.io),
           o.qd, o.threads, o.steps, o.dir);
    printf("%-8s %9s %6s %8s %-26s %9s %10s %9s %8s %9s %8s %9s %8s\n", "shape", "tokens",
           "layers", "file GB", "attend", "tiles/st", "GB/step", "step s", "x full", "probe",
           "bound s", "x bound", "RSS MiB");
    for (int si = 0; si < N_SHAPES; si++) {
        if (!o.shape_on[si]) continue;
        int64_t rss_first = 0, rss_last = 0;
        for (int ti = 0; ti < o.n_tokens; ti++) {
            struct result r[MAX_LIST];
            run_one(&o, &shapes[si], o.tokens[ti], pl, r);
            int64_t rss_max = 0;
            for (int pi = 0; pi < o.n_pol; pi++) {
                char spec[128];
                sel_format(&o.pol[pi], spec, sizeof spec);
                printf("%-8s %9lld %6d %8.3f %-26s %9.1f %10.4f %9.3f %8.3f %9.3f %8.3f %9.2f %8.1f\n",
                       shapes[si].name, (long long)o.tokens[ti], shapes[si].n_layer,
                       (double)r[pi].file_bytes / 1e9, spec, r[pi].tiles_step,
                       r[pi].bytes_step / 1e9, r[pi].step_s, r[pi].step_s / r[0].step_s,
                       r[pi].probe_gbps, r[pi].bound_s, r[pi].step_s / r[pi].bound_s,
                       (double)r[pi].rss / 1048576.0);
                printf("    per step: CPU %.3f s (all threads), waiting for reads %.3f s, "
                       "check+unpack %.3f s\n", r[pi].cpu_step, r[pi].io_wait_step, r[pi].dec_step);
                rss_max = KVT_MAX(rss_max, r[pi].rss);
            }
            fflush(stdout);
            if (ti == 0) rss_first = rss_max;
            rss_last = rss_max;
        }
        if (o.n_tokens > 1)
            printf("%-8s peak RSS at %lld / %lld tokens: %.2fx\n", shapes[si].name,
                   (long long)o.tokens[o.n_tokens - 1], (long long)o.tokens[0],
                   (double)rss_last / (double)rss_first);
    }
    printf("io_uring: %s\n", o.io != IO_URING ? "not asked for"
                             : info_seen & IO_INFO_NO_URING ? "NOT in use (pread fallback)"
                                                            : "in use");
    pool_free(pl);
    return 0;
}
