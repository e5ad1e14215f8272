/* cmd_iobench.c - `kvtile iobench`: how fast the KV store streams tiles
 * back from disk, per I/O backend x codec x element type x queue depth x
 * tile size, against the raw bandwidth of the device in the same run.
 *
 * For every (type, codec, tile size) a synthetic cache of --size raw K/V
 * bytes is written with the real writer (kvs_append, kvs_sync) into a fresh
 * directory under --dir, then:
 *   1. probe: the file read sequentially by (a) 1 MiB O_DIRECT reads, 32 in
 *      flight, through io_uring and (b) a buffered 1 MiB pread loop after
 *      dropping the page cache; the device bandwidth of the file is the
 *      faster of the two;
 *   2. one row per queue depth x backend: the store reopened, the page
 *      cache dropped (fdatasync + POSIX_FADV_DONTNEED; the store reads
 *      O_DIRECT except through mmap), every layer streamed with
 *      kvs_read_begin/next/end (tiles decoded and their checksums verified);
 *   3. the probe again (the reference is the mean of both probes).
 * The file is deleted before the next one is written (at most one cache on
 * disk at a time; removed on exit and on SIGINT/SIGTERM).
 * --cache FILE streams an existing cache instead (shape, type, tile size
 * and fingerprint from its header; never modified or deleted).
 *
 * Synthetic K/V (tools/synth.h, SYNTH_SEED_DEFAULT): per channel an
 * offset and a scale (a few outlier channels 8x larger, as real K has), a
 * smooth AR(1) drift across tokens plus small noise, so codecs see data
 * shaped like real caches. The probe is tools/probe.h.
 *
 * Row numbers: raw_bytes = the K/V bytes of the cache in its element type
 * (what decoding must produce), decoded_bytes = bytes of the spans actually
 * streamed, read_bytes = record bytes read from the device (headers and
 * 4 KiB padding included), enc_bytes = payload bytes; device GB/s =
 * read_bytes / s, effective GB/s = decoded_bytes / s, ratio = raw_bytes /
 * enc_bytes, cpu_s = user + system seconds of the process (all threads),
 * frac = device GB/s / probe GB/s. GB = 1e9 bytes.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "io/io.h"
#include "base/kvt.h"
#include "tools/probe.h"
#include "tools/synth.h"
#include "kvstore/tile.h"

#define IB_MAX_LIST 16
#define IB_GEN_TOKENS 256 /* tokens generated per append */

/* ---- options ---------------------------------------------------------- */

struct ib_list {
    int v[IB_MAX_LIST];
    int n;
};

struct ib_opts {
    const char *dir, *model_path, *cache;
    size_t size;
    int kv_dim, n_layer, json;
    struct ib_list backends, codecs, types, qds, tiles;
};

typedef int (*ib_parse_fn)(const char *s);

static int parse_backend(const char *s) { return io_kind_parse(s); }
static int parse_codec(const char *s) { return tile_codec_parse(s); }
static int parse_type(const char *s) { return tile_type_parse(s); }
static int parse_qd(const char *s)
{
    int64_t v = cli_parse_count("--qd", s);
    return v >= 1 && v <= KVS_MAX_QUEUE_DEPTH ? (int)v : -1;
}
static int parse_tile(const char *s)
{
    int64_t v = cli_parse_count("--tile-tokens", s);
    return v >= 1 && v <= TILE_MAX_TOKENS ? (int)v : -1;
}

static void parse_list(const char *opt, const char *s, ib_parse_fn fn,
                       struct ib_list *l)
{
    char buf[512];
    if (strlen(s) >= sizeof buf) cli_die("%s: list too long", opt);
    strcpy(buf, s);
    l->n = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t;
         t = strtok_r(NULL, ",", &save)) {
        int id = fn(t);
        if (id < 0) cli_die("%s: '%s' is not valid here", opt, t);
        if (l->n == IB_MAX_LIST) cli_die("%s: more than %d values", opt, IB_MAX_LIST);
        l->v[l->n++] = id;
    }
    if (l->n == 0) cli_die("%s: empty list", opt);
}

static void parse_args(int argc, char **argv, struct ib_opts *o)
{
    memset(o, 0, sizeof *o);
    o->dir = "/tmp";
    o->size = (size_t)512 << 20;
    parse_list("--backends", "uring,pread,mmap", parse_backend, &o->backends);
    parse_list("--codecs", "none,plane-huf", parse_codec, &o->codecs);
    parse_list("--types", "f16", parse_type, &o->types);
    parse_list("--qd", "1,16", parse_qd, &o->qds);
    parse_list("--tile-tokens", "256,1024", parse_tile, &o->tiles);
    const char *lists[5] = { NULL };
    struct opt tab[] = {
        OPT_STR("--dir", NULL, "DIR", &o->dir, "where the synthetic caches go (one at a\n"
                "time, removed at exit)"),
        OPT_BYTES("--size", NULL, "BYTES", &o->size, "raw K/V bytes per cache", .def = "512M"),
        OPT_STR("--model", NULL, "MODEL", &o->model_path, "cache shape (layers, kv_dim) of a GGUF model"),
        OPT_INT("--kv-dim", NULL, "N", &o->kv_dim, 1, TILE_MAX_KV_DIM, "cache shape: floats per token",
                .def = "1024"),
        OPT_INT("--layers", NULL, "L", &o->n_layer, 1, 4096, "cache shape: layers", .def = "32"),
        OPT_STR("--backends", NULL, "LIST", &lists[0], "uring,pread,mmap", .def = "all three"),
        OPT_STR("--codecs", NULL, "LIST", &lists[1],
                "none,lz4,shuf-lz4,lz4hc,xpose-lz4,plane-huf,dedup-huf", .def = "none,plane-huf"),
        OPT_STR("--types", NULL, "LIST", &lists[2], "f32,f16,bf16,q8_0", .def = "f16"),
        OPT_STR("--qd", NULL, "LIST", &lists[3], "queue depths", .def = "1,16"),
        OPT_STR("--tile-tokens", NULL, "LIST", &lists[4], "tokens per tile", .def = "256,1024"),
        OPT_STR("--cache", NULL, "FILE", &o->cache, "stream an existing cache file instead\n"
                "(e.g. kept by ppl --keep-cache --cache-dir D)"),
        OPT_FLAG("--json", NULL, &o->json, "one JSON object on stdout (a row per line)"),
        OPT_GROUP("Full grid (about 40 minutes on a 1 GB/s disk):\n"
                  "  kvtile iobench --size 4G --codecs none,lz4,shuf-lz4,xpose-lz4,plane-huf \\\n"
                  "      --types f32,f16,q8_0 --qd 1,4,16,64 --tile-tokens 64,256,1024"),
        OPT_END(),
    };
    opt_parse("iobench", "[options]", tab, argc, argv, NULL, 0);
    if (lists[0]) parse_list("--backends", lists[0], parse_backend, &o->backends);
    if (lists[1]) parse_list("--codecs", lists[1], parse_codec, &o->codecs);
    if (lists[2]) parse_list("--types", lists[2], parse_type, &o->types);
    if (lists[3]) parse_list("--qd", lists[3], parse_qd, &o->qds);
    if (lists[4]) parse_list("--tile-tokens", lists[4], parse_tile, &o->tiles);
    if (o->model_path && (o->kv_dim || o->n_layer))
        cli_die("--model and --kv-dim/--layers exclude each other");
    if (o->model_path) {
        model *m;
        char err[256];
        int rc = model_open(o->model_path, &m, err, sizeof err);
        if (rc < 0) cli_die("%s: %s", o->model_path, err);
        o->kv_dim = model_hparams(m)->kv_dim;
        o->n_layer = model_hparams(m)->n_layer;
        model_close(m);
    }
    if (!o->kv_dim) o->kv_dim = 1024;
    if (!o->n_layer) o->n_layer = 32;
    if (o->n_layer < 1 || o->n_layer > 4096) cli_die("--layers: out of range");
}

/* ---- cleanup: the synthetic cache is removed on every exit path -------- */

static char ib_tmp_dir[4096];  /* "" when none */
static char ib_tmp_file[8192]; /* "" when none */

static void ib_cleanup(void)
{
    if (ib_tmp_file[0]) unlink(ib_tmp_file);
    if (ib_tmp_dir[0]) rmdir(ib_tmp_dir);
    ib_tmp_file[0] = 0;
    ib_tmp_dir[0] = 0;
}

static void ib_on_signal(int sig)
{
    /* unlink and rmdir are async-signal-safe */
    if (ib_tmp_file[0]) unlink(ib_tmp_file);
    if (ib_tmp_dir[0]) rmdir(ib_tmp_dir);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* ---- page cache, fallbacks ---------------------------------------------- */

static void drop_or_die(const char *path)
{
    int rc = probe_drop_cache(path);
    if (rc < 0) cli_die("%s: cannot drop from the page cache: %s", path, kvt_strerror(rc));
}

static int ib_info_all; /* IO_INFO_* seen in this run */

/* Say once per kind what io_open fell back from. */
static void note_info(const char *path, int info)
{
    int fresh = info & ~ib_info_all;
    ib_info_all |= info;
    if (fresh & IO_INFO_NO_URING)
        cli_warn("%s: io_uring unavailable, falling back to pread (IO_INFO_NO_URING)", path);
    if (fresh & IO_INFO_NO_DIRECT)
        cli_warn("%s: O_DIRECT refused, reads are buffered (IO_INFO_NO_DIRECT)", path);
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

/* ---- probe: plain sequential reads of the whole file (tools/probe.h) ----- */

/* O_DIRECT reads, PROBE_QD in flight, via io_uring. @return GB/s. */
static double gbps_direct(const char *path)
{
    struct probe_result pr;
    int rc = probe_direct(path, &pr);
    if (rc < 0) cli_die("%s: probe: %s", path, kvt_strerror(rc));
    note_info(path, pr.info);
    return pr.bytes_per_s / 1e9;
}

/* Buffered pread loop after dropping the page cache. @return GB/s. */
static double gbps_buffered(const char *path)
{
    struct probe_result pr;
    int rc = probe_buffered(path, &pr);
    if (rc < 0) cli_die("%s: probe: %s", path, kvt_strerror(rc));
    return pr.bytes_per_s / 1e9;
}

/* ---- caches ------------------------------------------------------------- */

struct ib_cache {
    char path[8192];
    int n_layer, kv_dim, type, codec, tile_tokens;
    uint8_t model_fp[32];
    int64_t tokens;          /* streamed per layer: whole tiles */
    uint64_t raw_bytes, enc_bytes, read_bytes, file_bytes;
    double write_gbps;       /* raw bytes / s of generating + writing */
};

static struct kvs_config cache_config(const struct ib_cache *c, int io, int qd)
{
    struct kvs_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.n_layer = c->n_layer;
    cfg.kv_dim = c->kv_dim;
    cfg.tile_tokens = c->tile_tokens;
    cfg.backing = KVS_DISK;
    cfg.type = c->type;
    cfg.codec = c->codec;
    cfg.io = io;
    cfg.queue_depth = qd;
    size_t rec = (tile_encode_bound(c->type, c->kv_dim, c->tile_tokens) +
                  IO_ALIGN - 1) / IO_ALIGN * IO_ALIGN;
    cfg.path = c->path;
    /* the window is the queue depth: the fixed buffers and qd records */
    cfg.ram_budget_bytes = kvs_ram_min(&cfg) + rec * (size_t)(qd - 1);
    memcpy(cfg.model_fp, c->model_fp, sizeof cfg.model_fp);
    return cfg;
}

static void build_cache(struct ib_cache *c)
{
    struct kvs_config cfg = cache_config(c, IO_PREAD, 1);
    kvs *s;
    int rc = kvs_open(&cfg, &s);
    if (rc < 0) cli_die("%s: %s", c->path, kvt_strerror(rc));
    note_info(c->path, kvs_io_info(s));
    synth *g;
    rc = synth_create(c->n_layer, c->kv_dim, SYNTH_SEED_DEFAULT, &g);
    if (rc < 0) cli_die("synthetic K/V: %s", kvt_strerror(rc));
    size_t gen = (size_t)IB_GEN_TOKENS * (size_t)c->kv_dim;
    float *k = malloc(gen * sizeof *k), *v = malloc(gen * sizeof *v);
    if (!k || !v) cli_die("out of memory");
    double t0 = kvt_now_s();
    for (int64_t t = 0; t < c->tokens; t += IB_GEN_TOKENS) {
        int n = (int)KVT_MIN((int64_t)IB_GEN_TOKENS, c->tokens - t);
        for (int L = 0; L < c->n_layer; L++) {
            synth_next(g, L, n, k, v);
            rc = kvs_append(s, L, k, v, n);
            if (rc < 0) cli_die("%s: %s", c->path, kvt_strerror(rc));
        }
    }
    rc = kvs_sync(s);
    if (rc < 0) cli_die("%s: %s", c->path, kvt_strerror(rc));
    kvs_close(s);
    c->write_gbps = (double)c->raw_bytes / (kvt_now_s() - t0) / 1e9;
    synth_free(g);
    free(k);
    free(v);
}

/* Header of an existing cache: shape, type, tile size, fingerprint. */
static void read_file_hdr(struct ib_cache *c)
{
    struct io_opts op = { IO_PREAD, 0, 1, KVS_FILE_HDR_BYTES };
    io_file *f;
    int rc = io_open(c->path, &op, &f, NULL);
    if (rc < 0) cli_die("%s: %s", c->path, kvt_strerror(rc));
    struct kvs_file_hdr h;
    int64_t got = io_read(f, &h, sizeof h, 0);
    io_close(f);
    if (got < 0) cli_die("%s: %s", c->path, kvt_strerror((int)got));
    if ((size_t)got < sizeof h || h.magic != KVS_FILE_MAGIC)
        cli_die("%s: not a kvtile cache file", c->path);
    if (tile_hash(&h, offsetof(struct kvs_file_hdr, hdr_xxh)) != h.hdr_xxh)
        cli_die("%s: %s", c->path, kvt_strerror(KVT_ECHECKSUM));
    c->n_layer = (int)h.n_layer;
    c->kv_dim = (int)h.kv_dim;
    c->tile_tokens = (int)h.tile_tokens;
    c->type = h.type;
    c->codec = h.codec;
    memcpy(c->model_fp, h.model_fp, sizeof c->model_fp);
    if (c->n_layer < 1 || c->n_layer > 4096 || c->tile_tokens < 1 ||
        c->tile_tokens > TILE_MAX_TOKENS || tile_check_dims(c->type, c->kv_dim) < 0 ||
        c->codec >= TILE_NCODECS)
        cli_die("%s: %s", c->path, kvt_strerror(KVT_EFORMAT));
}

/* Tokens streamed per layer (whole tiles present in every layer), then the
 * live records' sizes: for each (layer, tile) the last record in file order
 * is the live one (the replay rule of tile.h). */
static void scan_cache(struct ib_cache *c)
{
    struct kvs_config cfg = cache_config(c, IO_PREAD, 1);
    cfg.reopen = 1;
    kvs *s;
    int rc = kvs_open(&cfg, &s);
    if (rc < 0) cli_die("%s: %s", c->path, kvt_strerror(rc));
    note_info(c->path, kvs_io_info(s));
    const int T = c->tile_tokens;
    int64_t tiles = kvs_n_tokens(s) / T;
    kvs_close(s);
    if (tiles == 0) cli_die("%s: no whole tile to read", c->path);
    c->tokens = tiles * T;
    size_t n = (size_t)c->n_layer * (size_t)tiles;
    uint32_t *enc = calloc(n, sizeof *enc), *rec = calloc(n, sizeof *rec);
    if (!enc || !rec) cli_die("out of memory");

    struct io_opts op = { IO_PREAD, 0, 1, IO_ALIGN };
    io_file *f;
    rc = io_open(c->path, &op, &f, NULL);
    if (rc < 0) cli_die("%s: %s", c->path, kvt_strerror(rc));
    uint64_t size;
    rc = io_size(f, &size);
    if (rc < 0) cli_die("%s: %s", c->path, kvt_strerror(rc));
    c->file_bytes = size;
    for (uint64_t off = KVS_FILE_HDR_BYTES; off + sizeof(struct tile_hdr) <= size;) {
        struct tile_hdr h;
        int64_t got = io_read(f, &h, sizeof h, off);
        if (got < 0) cli_die("%s: %s", c->path, kvt_strerror((int)got));
        if ((size_t)got < sizeof h || tile_hdr_check(&h) < 0) break;
        uint64_t len = (sizeof h + (uint64_t)h.enc_size + IO_ALIGN - 1) / IO_ALIGN * IO_ALIGN;
        if (!(h.flags & (TILE_F_MARK | TILE_F_TAIL | TILE_F_SUM)) && h.layer < (uint32_t)c->n_layer &&
            h.n == (uint32_t)T && h.pos0 / (uint64_t)T < (uint64_t)tiles) {
            size_t i = (size_t)h.layer * (size_t)tiles + (size_t)(h.pos0 / (uint64_t)T);
            enc[i] = h.enc_size;
            rec[i] = (uint32_t)len;
        }
        off += len;
    }
    io_close(f);
    c->enc_bytes = c->read_bytes = 0;
    for (size_t i = 0; i < n; i++) {
        if (rec[i] == 0) cli_die("%s: a tile of the index has no record", c->path);
        c->enc_bytes += enc[i];
        c->read_bytes += rec[i];
    }
    c->raw_bytes = (uint64_t)n * tile_raw_bytes(c->type, c->kv_dim, T);
    free(enc);
    free(rec);
}

/* ---- rows --------------------------------------------------------------- */

struct ib_row {
    int type, codec, tile_tokens, backend, used, direct, qd;
    uint64_t raw_bytes, decoded_bytes, read_bytes, enc_bytes;
    double secs, cpu_s, dev_gbps, eff_gbps, ratio, frac, probe_gbps;
};

static void run_row(const struct ib_cache *c, int backend, int qd,
                    struct ib_row *r)
{
    struct kvs_config cfg = cache_config(c, backend, qd);
    cfg.reopen = 1;
    kvs *s;
    int rc = kvs_open(&cfg, &s);
    if (rc < 0) cli_die("%s: %s", c->path, kvt_strerror(rc));
    int info = kvs_io_info(s);
    note_info(c->path, info);
    memset(r, 0, sizeof *r);
    r->type = c->type;
    r->codec = c->codec;
    r->tile_tokens = c->tile_tokens;
    r->backend = backend;
    r->used = backend == IO_URING && (info & IO_INFO_NO_URING) ? IO_PREAD : backend;
    r->direct = backend != IO_MMAP && !(info & IO_INFO_NO_DIRECT);
    r->qd = qd;
    size_t row_bytes = tile_row_bytes(c->type, c->kv_dim);
    drop_or_die(c->path);
    double cpu0 = cpu_seconds(), t0 = kvt_now_s();
    for (int L = 0; L < c->n_layer; L++) {
        rc = kvs_read_begin(s, L, c->tokens);
        struct kvs_span sp;
        while (rc >= 0 && (rc = kvs_read_next(s, &sp)) > 0)
            r->decoded_bytes += 2 * (uint64_t)sp.n * row_bytes;
        kvs_read_end(s);
        if (rc < 0) cli_die("%s: layer %d: %s", c->path, L, kvt_strerror(rc));
    }
    r->secs = kvt_now_s() - t0;
    r->cpu_s = cpu_seconds() - cpu0;
    kvs_close(s);
    r->raw_bytes = c->raw_bytes;
    r->read_bytes = c->read_bytes;
    r->enc_bytes = c->enc_bytes;
    r->dev_gbps = (double)r->read_bytes / r->secs / 1e9;
    r->eff_gbps = (double)r->decoded_bytes / r->secs / 1e9;
    r->ratio = c->enc_bytes ? (double)c->raw_bytes / (double)c->enc_bytes : 0.0;
}

/* ---- output -------------------------------------------------------------- */

static void print_head(void)
{
    printf("%-5s %-9s %5s %-7s %-3s %4s %9s %9s %6s %7s %5s %6s\n", "type", "codec",
           "tile", "io", "dir", "qd", "dev GB/s", "eff GB/s", "ratio", "cpu s", "cpu%",
           "%dev");
}

static void print_row(const struct ib_row *r)
{
    char io[16];
    snprintf(io, sizeof io, "%s%s", io_kind_name(r->used), r->used != r->backend ? "*" : "");
    printf("%-5s %-9s %5d %-7s %-3s %4d %9.3f %9.3f %6.3f %7.2f %4.0f%% %5.1f%%\n",
           tile_type_name(r->type), tile_codec_name(r->codec), r->tile_tokens, io,
           r->direct ? "yes" : "no", r->qd, r->dev_gbps, r->eff_gbps, r->ratio,
           r->cpu_s, 100.0 * r->cpu_s / r->secs, 100.0 * r->frac);
    fflush(stdout);
}

static void json_row(const struct ib_row *r, int first)
{
    printf("%s\n  {\"type\": \"%s\", \"codec\": \"%s\", \"tile_tokens\": %d, "
           "\"backend\": \"%s\", \"backend_used\": \"%s\", \"direct\": %s, \"qd\": %d, "
           "\"raw_bytes\": %llu, \"decoded_bytes\": %llu, \"read_bytes\": %llu, "
           "\"enc_bytes\": %llu, \"seconds\": %.6f, \"device_gbps\": %.4f, "
           "\"effective_gbps\": %.4f, \"ratio\": %.4f, \"cpu_s\": %.4f, "
           "\"probe_gbps\": %.4f, \"frac_device\": %.4f}",
           first ? "" : ",", tile_type_name(r->type), tile_codec_name(r->codec),
           r->tile_tokens, io_kind_name(r->backend), io_kind_name(r->used),
           r->direct ? "true" : "false", r->qd, (unsigned long long)r->raw_bytes,
           (unsigned long long)r->decoded_bytes, (unsigned long long)r->read_bytes,
           (unsigned long long)r->enc_bytes, r->secs, r->dev_gbps, r->eff_gbps, r->ratio,
           r->cpu_s, r->probe_gbps, r->frac);
}

struct ib_probe {
    char file[64];
    double uring_gbps[2], buffered_gbps, ref_gbps;
};

/* The io_uring row reaching >= 90% of the probe with the smallest queue
 * depth, then the smallest tile, then the highest fraction; else the row
 * with the highest fraction. NULL if no row used io_uring. */
static const struct ib_row *best_uring(const struct ib_row *rows, int n, int *reached)
{
    const struct ib_row *best = NULL, *top = NULL;
    for (int i = 0; i < n; i++) {
        const struct ib_row *r = &rows[i];
        if (r->used != IO_URING) continue;
        if (!top || r->frac > top->frac) top = r;
        if (r->frac < 0.9) continue;
        if (!best || r->qd < best->qd ||
            (r->qd == best->qd && r->tile_tokens < best->tile_tokens) ||
            (r->qd == best->qd && r->tile_tokens == best->tile_tokens &&
             r->frac > best->frac))
            best = r;
    }
    *reached = best != NULL;
    return best ? best : top;
}

/* ---- main ---------------------------------------------------------------- */

struct ib_run {
    struct ib_opts o;
    struct ib_row *rows;
    int n_rows, cap_rows;
    struct ib_probe *probes;
    int n_probes;
};

static struct ib_row *new_row(struct ib_run *R)
{
    if (R->n_rows == R->cap_rows) {
        R->cap_rows = R->cap_rows ? 2 * R->cap_rows : 64;
        struct ib_row *p = realloc(R->rows, (size_t)R->cap_rows * sizeof *p);
        if (!p) cli_die("out of memory");
        R->rows = p;
    }
    return &R->rows[R->n_rows++];
}

/* Probe, every qd x backend row, probe again; fractions against the mean. */
static void bench_cache(struct ib_run *R, const struct ib_cache *c, const char *label)
{
    struct ib_probe *p = &R->probes[R->n_probes++];
    snprintf(p->file, sizeof p->file, "%s", label);
    p->uring_gbps[0] = gbps_direct(c->path);
    p->buffered_gbps = gbps_buffered(c->path);
    int first = R->n_rows;
    for (int q = 0; q < R->o.qds.n; q++)
        for (int b = 0; b < R->o.backends.n; b++)
            run_row(c, R->o.backends.v[b], R->o.qds.v[q], new_row(R));
    p->uring_gbps[1] = gbps_direct(c->path);
    double u = 0.5 * (p->uring_gbps[0] + p->uring_gbps[1]);
    p->ref_gbps = KVT_MAX(u, p->buffered_gbps);
    if (!R->o.json) {
        printf("# %s: %.1f MB on disk (%lld tokens x %d layers", label,
               (double)c->file_bytes / 1e6, (long long)c->tokens, c->n_layer);
        if (c->write_gbps > 0) printf(", written at %.3f GB/s", c->write_gbps);
        printf("); probe: uring O_DIRECT qd %d %.3f / %.3f GB/s, buffered pread %.3f GB/s\n",
               PROBE_QD, p->uring_gbps[0], p->uring_gbps[1], p->buffered_gbps);
    }
    for (int i = first; i < R->n_rows; i++) {
        R->rows[i].probe_gbps = p->ref_gbps;
        R->rows[i].frac = R->rows[i].dev_gbps / p->ref_gbps;
        if (!R->o.json) print_row(&R->rows[i]);
    }
}

static void synthetic_runs(struct ib_run *R)
{
    const struct ib_opts *o = &R->o;
    snprintf(ib_tmp_dir, sizeof ib_tmp_dir, "%s/kvtile-iobench.XXXXXX", o->dir);
    if (!mkdtemp(ib_tmp_dir)) {
        int e = errno;
        ib_tmp_dir[0] = 0;
        cli_die("%s: %s", o->dir, strerror(e));
    }
    int tmax = 0;
    for (int i = 0; i < o->tiles.n; i++) tmax = KVT_MAX(tmax, o->tiles.v[i]);
    for (int ti = 0; ti < o->types.n; ti++) {
        int type = o->types.v[ti];
        int rc = tile_check_dims(type, o->kv_dim);
        if (rc < 0) cli_die("--types %s with kv_dim %d: %s", tile_type_name(type),
                            o->kv_dim, kvt_strerror(rc));
        uint64_t tok_bytes = 2 * (uint64_t)tile_row_bytes(type, o->kv_dim) * (uint64_t)o->n_layer;
        int64_t tokens = (int64_t)(o->size / tok_bytes) / tmax * tmax;
        if (tokens == 0)
            cli_die("--size %zu: too small for one tile of %d tokens x %d layers (%s)",
                    o->size, tmax, o->n_layer, tile_type_name(type));
        for (int ci = 0; ci < o->codecs.n; ci++)
            for (int k = 0; k < o->tiles.n; k++) {
                struct ib_cache c;
                memset(&c, 0, sizeof c);
                c.n_layer = o->n_layer;
                c.kv_dim = o->kv_dim;
                c.type = type;
                c.codec = o->codecs.v[ci];
                c.tile_tokens = o->tiles.v[k];
                c.tokens = tokens / c.tile_tokens * c.tile_tokens;
                c.raw_bytes = (uint64_t)c.tokens * tok_bytes;
                memcpy(c.model_fp, "kvtile iobench synthetic cache", 30);
                char label[64];
                snprintf(label, sizeof label, "%s-%s-t%d", tile_type_name(type),
                         tile_codec_name(c.codec), c.tile_tokens);
                snprintf(c.path, sizeof c.path, "%s/%s.kvt", ib_tmp_dir, label);
                snprintf(ib_tmp_file, sizeof ib_tmp_file, "%s", c.path);
                build_cache(&c);
                int64_t want = c.tokens;
                scan_cache(&c);
                KVT_ASSERT(c.tokens == want);
                bench_cache(R, &c, label);
                unlink(c.path);
                ib_tmp_file[0] = 0;
            }
    }
}

int cmd_iobench(int argc, char **argv)
{
    struct ib_run R;
    memset(&R, 0, sizeof R);
    parse_args(argc, argv, &R.o);
    const struct ib_opts *o = &R.o;
    atexit(ib_cleanup);
    signal(SIGINT, ib_on_signal);
    signal(SIGTERM, ib_on_signal);
    size_t n_files = o->cache ? 1 : (size_t)o->types.n * (size_t)o->codecs.n * (size_t)o->tiles.n;
    R.probes = calloc(n_files, sizeof *R.probes);
    if (!R.probes) cli_die("out of memory");

    if (!o->json) {
        if (o->cache)
            printf("# iobench: %s\n", o->cache);
        else
            printf("# iobench: %.2f GB raw K/V per cache, %d layers x kv_dim %d, in %s\n",
                   (double)o->size / 1e9, o->n_layer, o->kv_dim, o->dir);
        print_head();
    }
    if (o->cache) {
        struct ib_cache c;
        memset(&c, 0, sizeof c);
        snprintf(c.path, sizeof c.path, "%s", o->cache);
        read_file_hdr(&c);
        scan_cache(&c);
        R.o.n_layer = c.n_layer;
        R.o.kv_dim = c.kv_dim;
        R.o.size = (size_t)c.raw_bytes;
        const char *base = strrchr(o->cache, '/');
        bench_cache(&R, &c, base ? base + 1 : o->cache);
    } else {
        synthetic_runs(&R);
    }
    ib_cleanup();

    int reached;
    const struct ib_row *best = best_uring(R.rows, R.n_rows, &reached);
    int uring_used = 0, uring_asked = 0;
    for (int i = 0; i < R.n_rows; i++) {
        uring_asked |= R.rows[i].backend == IO_URING;
        uring_used |= R.rows[i].used == IO_URING;
    }
    if (o->json) {
        printf("{");
        cli_json_cpu(stdout);
        printf("\"size_bytes\": %zu, \"n_layer\": %d, \"kv_dim\": %d, "
               "\"io_info\": %d, \"uring_in_use\": %s, \"uring_fallback\": %s, "
               "\"direct_fallback\": %s,\n \"probes\": [",
               o->size, o->n_layer, o->kv_dim,
               ib_info_all, uring_used ? "true" : "false",
               ib_info_all & IO_INFO_NO_URING ? "true" : "false",
               ib_info_all & IO_INFO_NO_DIRECT ? "true" : "false");
        for (int i = 0; i < R.n_probes; i++) {
            const struct ib_probe *p = &R.probes[i];
            printf("%s\n  {\"file\": ", i ? "," : "");
            cli_json_str(stdout, p->file);
            printf(", \"uring_direct_gbps\": [%.4f, %.4f], \"buffered_gbps\": %.4f, "
                   "\"ref_gbps\": %.4f}", p->uring_gbps[0], p->uring_gbps[1],
                   p->buffered_gbps, p->ref_gbps);
        }
        printf("],\n \"rows\": [");
        for (int i = 0; i < R.n_rows; i++) json_row(&R.rows[i], i == 0);
        printf("],\n \"best_uring\": ");
        if (best)
            printf("{\"qd\": %d, \"tile_tokens\": %d, \"type\": \"%s\", \"codec\": \"%s\", "
                   "\"frac_device\": %.4f, \"reached_90\": %s}}\n",
                   best->qd, best->tile_tokens, tile_type_name(best->type),
                   tile_codec_name(best->codec), best->frac, reached ? "true" : "false");
        else
            printf("null}\n");
    } else {
        printf("# dev = record bytes read / s; eff = decoded bytes / s; ratio = raw / payload;"
               " cpu%% = cpu s / wall s (100%% = one core: CPU-bound);\n"
               "# %%dev = dev / probe of the same file; io* = fell back to pread\n");
        if (uring_asked)
            printf("# io_uring: %s (IO_INFO bits 0x%x)\n",
                   uring_used ? "in use" : "NOT in use, pread fallback", ib_info_all);
        if (best && reached)
            printf("# io_uring reaches >= 90%% of the device at qd %d, tile %d tokens "
                   "(%s %s: %.1f%%)\n", best->qd, best->tile_tokens,
                   tile_type_name(best->type), tile_codec_name(best->codec), 100.0 * best->frac);
        else if (best)
            printf("# io_uring stays below 90%% of the device; best: qd %d, tile %d tokens "
                   "(%s %s: %.1f%%)\n", best->qd, best->tile_tokens,
                   tile_type_name(best->type), tile_codec_name(best->codec), 100.0 * best->frac);
    }
    free(R.rows);
    free(R.probes);
    return 0;
}
