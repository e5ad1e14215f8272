/* cli.c - shared plumbing of the kvtile subcommands (see cli.h). */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/cpu.h"
#include "io/kvt.h"
#include "kvstore/tile.h"

static const char *const io_names[] = { "uring", "pread", "mmap" };
static const char *const type_names[] = { "f32", "f16", "bf16", "q8_0" };
_Static_assert(sizeof type_names / sizeof type_names[0] == KVS_NTYPES, "kv types");

static void vwarn(const char *fmt, va_list ap)
{
    fputs("kvtile: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void cli_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vwarn(fmt, ap);
    va_end(ap);
    exit(1);
}

void cli_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vwarn(fmt, ap);
    va_end(ap);
}

void cli_opts_default(struct cli_opts *o)
{
    memset(o, 0, sizeof *o);
    long nproc = sysconf(_SC_NPROCESSORS_ONLN);
    o->n_threads = nproc > 0 ? (int)nproc : 1;
    o->n_batch = 512;
    o->n_ctx = 0;
    o->kv_backing = KVS_DISK;
    o->cache_type = KVS_F32;
    o->codec = TILE_LZ4;
    o->io = 0; /* uring */
    o->queue_depth = 8;
    o->tile_tokens = 256;
    o->ram_budget = 0;
    o->rope_scale = -1;
    o->rope_freq_base = -1;
    o->yarn_beta_fast = -1;
    o->yarn_beta_slow = -1;
}

const char cli_common_help[] =
    "  -t N                 threads (default: all cores)\n"
    "  --batch N            tokens per forward pass (default 512)\n"
    "  --json               machine-readable output on stdout\n"
    "  --quiet              no progress on stderr\n"
    "KV store:\n"
    "  --kv-store disk|ram  where K/V tiles live (default disk)\n"
    "  --cache-dir DIR      directory of the cache file (default: a temporary\n"
    "                       directory removed at exit)\n"
    "  --keep-cache         keep the cache file at exit\n"
    "  --cache-type T       f32 | f16 | bf16 | q8_0 (default f32)\n"
    "  --codec C            none | lz4 | shuf-lz4 | lz4hc | xpose-lz4 | plane-huf |\n"
    "                       dedup-huf\n"
    "                       (default lz4)\n"
    "  --io B               uring | pread | mmap (default uring)\n"
    "  --queue-depth N      reads in flight (default 8)\n"
    "  --tile-tokens N      tokens per tile (default 256)\n"
    "  --ram-budget BYTES   prefetch window + decoded tiles (e.g. 64M)\n"
    "Positions:\n"
    "  --rope-scaling S     none | linear | ntk | dynamic-ntk | yarn | longrope\n"
    "  --rope-scale S       scale factor s\n"
    "  --rope-freq-base B   RoPE base frequency\n"
    "  --yarn-beta-fast F, --yarn-beta-slow F\n"
    "  --longrope-factors FILE   per-pair factors (one per line or a list)\n"
    "  --self-extend G:W    SelfExtend group size G, neighbour window W\n"
    "  --k-rotation read|write  rotate cached K as tiles are read (default), or\n"
    "                       before they are written, as llama.cpp does (for\n"
    "                       comparisons: cached keys then keep their old positions)\n";

static int lookup(const char *const *names, int n, const char *s)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(names[i], s)) return i;
    return -1;
}

int64_t cli_parse_count(const char *what, const char *s)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno) cli_die("%s: '%s' is not a number", what, s);
    if (*end == 'k' || *end == 'K') { v *= 1024; end++; }
    else if (*end == 'm' || *end == 'M') { v *= 1024 * 1024; end++; }
    if (*end || v < 0 || v > 9e15 || v != floor(v))
        cli_die("%s: '%s' is not a whole count", what, s);
    return (int64_t)v;
}

size_t cli_parse_bytes(const char *what, const char *s)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || v < 0) cli_die("%s: '%s' is not a size", what, s);
    switch (*end) {
    case 'k': case 'K': v *= 1024.0; end++; break;
    case 'm': case 'M': v *= 1024.0 * 1024; end++; break;
    case 'g': case 'G': v *= 1024.0 * 1024 * 1024; end++; break;
    default: break;
    }
    if (*end == 'i' || *end == 'B') end++;
    if (*end == 'B') end++;
    if (*end) cli_die("%s: '%s' is not a size", what, s);
    return (size_t)v;
}

static const char *val(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) cli_die("option %s needs a value", argv[*i]);
    return argv[++*i];
}

int cli_common_opt(struct cli_opts *o, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
        o->n_threads = (int)cli_parse_count(a, val(argc, argv, i));
        if (o->n_threads < 1 || o->n_threads > 1024) cli_die("%s: 1..1024", a);
    } else if (!strcmp(a, "--batch") || !strcmp(a, "-b")) {
        o->n_batch = (int)cli_parse_count(a, val(argc, argv, i));
        if (o->n_batch < 1 || o->n_batch > 65536) cli_die("%s: 1..65536", a);
    } else if (!strcmp(a, "--json")) {
        o->json = 1;
    } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
        o->quiet = 1;
    } else if (!strcmp(a, "--kv-store")) {
        const char *v = val(argc, argv, i);
        if (!strcmp(v, "disk")) o->kv_backing = KVS_DISK;
        else if (!strcmp(v, "ram")) o->kv_backing = KVS_RAM;
        else cli_die("--kv-store: '%s' (expected disk or ram)", v);
    } else if (!strcmp(a, "--cache-dir")) {
        o->cache_dir = val(argc, argv, i);
    } else if (!strcmp(a, "--keep-cache")) {
        o->keep_cache = 1;
    } else if (!strcmp(a, "--cache-type")) {
        const char *v = val(argc, argv, i);
        o->cache_type = lookup(type_names, KVS_NTYPES, v);
        if (o->cache_type < 0) cli_die("--cache-type: '%s' (expected f32, f16, bf16, q8_0)", v);
    } else if (!strcmp(a, "--codec")) {
        const char *v = val(argc, argv, i);
        o->codec = tile_codec_parse(v);
        if (o->codec < 0) cli_die("--codec: unknown codec '%s'", v);
    } else if (!strcmp(a, "--io")) {
        const char *v = val(argc, argv, i);
        o->io = lookup(io_names, 3, v);
        if (o->io < 0) cli_die("--io: '%s' (expected uring, pread, mmap)", v);
    } else if (!strcmp(a, "--queue-depth")) {
        o->queue_depth = (int)cli_parse_count(a, val(argc, argv, i));
        if (o->queue_depth < 1 || o->queue_depth > 4096) cli_die("%s: 1..4096", a);
    } else if (!strcmp(a, "--tile-tokens")) {
        o->tile_tokens = (int)cli_parse_count(a, val(argc, argv, i));
        if (o->tile_tokens < 1 || o->tile_tokens > 65536) cli_die("%s: 1..65536", a);
    } else if (!strcmp(a, "--ram-budget")) {
        o->ram_budget = cli_parse_bytes(a, val(argc, argv, i));
    } else if (!strcmp(a, "--rope-scaling")) {
        o->rope_scaling = val(argc, argv, i);
        if (rope_scheme_parse(o->rope_scaling) < 0)
            cli_die("--rope-scaling: unknown scheme '%s'", o->rope_scaling);
    } else if (!strcmp(a, "--rope-scale")) {
        o->rope_scale = atof(val(argc, argv, i));
        if (!(o->rope_scale >= 1.0)) cli_die("--rope-scale must be >= 1");
    } else if (!strcmp(a, "--rope-freq-base")) {
        o->rope_freq_base = atof(val(argc, argv, i));
        if (!(o->rope_freq_base > 1.0)) cli_die("--rope-freq-base must be > 1");
    } else if (!strcmp(a, "--yarn-beta-fast")) {
        o->yarn_beta_fast = atof(val(argc, argv, i));
    } else if (!strcmp(a, "--yarn-beta-slow")) {
        o->yarn_beta_slow = atof(val(argc, argv, i));
    } else if (!strcmp(a, "--longrope-factors")) {
        o->longrope_factors = val(argc, argv, i);
    } else if (!strcmp(a, "--k-rotation")) {
        const char *v = val(argc, argv, i);
        if (!strcmp(v, "read")) o->rotate_k_on_write = 0;
        else if (!strcmp(v, "write")) o->rotate_k_on_write = 1;
        else cli_die("--k-rotation: '%s' (expected read or write)", v);
    } else if (!strcmp(a, "--self-extend")) {
        const char *v = val(argc, argv, i);
        if (sscanf(v, "%d:%d", &o->se_group, &o->se_window) != 2 ||
            o->se_group < 2 || o->se_window < 1)
            cli_die("--self-extend: '%s' (expected G:W, G >= 2, W >= 1)", v);
    } else {
        return 0;
    }
    return 1;
}

char *cli_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) cli_die("%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        cli_die("%s: not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) cli_die("%s: out of memory (%zu bytes)", path, n);
    if (n && fread(buf, 1, n, f) != n) cli_die("%s: read error", path);
    fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

void cli_load(const char *path, model **m, tok **t)
{
    char err[512] = "";
    int rc = model_open(path, m, err, sizeof err);
    if (rc < 0) cli_die("%s: %s", path, err[0] ? err : kvt_strerror(rc));
    if (t) {
        rc = tok_open(model_gguf(*m), t, err, sizeof err);
        if (rc < 0) cli_die("%s: tokenizer: %s", path, err[0] ? err : kvt_strerror(rc));
    }
}

void cli_rope_params(const struct cli_opts *o, const model *m, struct rope_params *rp)
{
    *rp = model_hparams(m)->rope;
    if (o->rope_scaling) {
        rp->scheme = rope_scheme_parse(o->rope_scaling);
        if (rp->scheme == ROPE_LONGROPE && !rp->have_factors && !o->longrope_factors)
            cli_die("--rope-scaling longrope: the model has no LongRoPE factors; give --longrope-factors FILE");
    }
    if (o->rope_scale > 0) rp->scale = o->rope_scale;
    if (o->rope_freq_base > 0) rp->freq_base = o->rope_freq_base;
    if (o->yarn_beta_fast >= 0) rp->beta_fast = o->yarn_beta_fast;
    if (o->yarn_beta_slow >= 0) rp->beta_slow = o->yarn_beta_slow;
    if (o->longrope_factors) {
        size_t len;
        char *text = cli_read_file(o->longrope_factors, &len);
        int n = 0, half = rp->n_rot / 2;
        int rc = rope_factors_parse(text, len, rp->factors_long, ROPE_MAX_PAIRS, &n);
        free(text);
        if (rc < 0) cli_die("%s: %s", o->longrope_factors, kvt_strerror(rc));
        if (n != half)
            cli_die("%s: %d factors, the model rotates %d pairs", o->longrope_factors, n, half);
        if (!rp->have_factors)
            for (int i = 0; i < half; i++) rp->factors_short[i] = 1.0f;
        rp->have_factors = 1;
        if (!o->rope_scaling) rp->scheme = ROPE_LONGROPE;
        if (rp->scale <= 1.0 && o->n_ctx > rp->orig_ctx)
            rp->scale = (double)o->n_ctx / (double)rp->orig_ctx;
    }
}

int32_t *cli_tokenize(tok *t, const char *src, const char *text, size_t len,
                      int add_bos, int64_t *n_out)
{
    size_t cap = tok_encode_bound(len);
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) cli_die("%s: out of memory", src);
    int64_t n = tok_encode(t, text, len, add_bos, ids, cap);
    if (n == KVT_EUTF8) cli_die("%s: text is not valid UTF-8", src);
    if (n < 0) cli_die("%s: tokenizer: %s", src, kvt_strerror((int)n));
    *n_out = n;
    return ids;
}

void cli_mkdir(const char *dir)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) cli_die("%s: %s", dir, strerror(errno));
}

void cli_kv_open(const struct cli_opts *o, const model *m, const char *name,
                 int reopen, struct cli_kv *ck)
{
    const struct model_hparams *hp = model_hparams(m);
    memset(ck, 0, sizeof *ck);
    struct kvs_config cfg = {
        .n_layer = hp->n_layer, .kv_dim = hp->kv_dim,
        .tile_tokens = o->tile_tokens, .backing = o->kv_backing,
        .type = o->cache_type, .codec = o->codec, .io = o->io,
        .queue_depth = o->queue_depth, .ram_budget_bytes = o->ram_budget,
        .reopen = reopen,
    };
    model_fingerprint(m, cfg.model_fp);
    if (o->kv_backing == KVS_DISK) {
        if (o->cache_dir) {
            snprintf(ck->dir, sizeof ck->dir, "%s", o->cache_dir);
            cli_mkdir(ck->dir);
        } else {
            const char *tmp = getenv("TMPDIR");
            snprintf(ck->dir, sizeof ck->dir, "%s/kvtile.XXXXXX", tmp && *tmp ? tmp : "/tmp");
            if (!mkdtemp(ck->dir)) cli_die("%s: %s", ck->dir, strerror(errno));
            ck->tmp_dir = 1;
        }
        snprintf(ck->path, sizeof ck->path, "%s/%s", ck->dir, name);
        cfg.path = ck->path;
        ck->keep = o->keep_cache || o->cache_dir;
    }
    int rc = kvs_open(&cfg, &ck->kv);
    if (rc < 0) {
        if (ck->tmp_dir) rmdir(ck->dir);
        cli_die("%s: %s", o->kv_backing == KVS_DISK ? ck->path : "KV store", kvt_strerror(rc));
    }
}

void cli_kv_close(struct cli_kv *ck)
{
    kvs_close(ck->kv);
    ck->kv = NULL;
    if (ck->path[0] && !ck->keep) unlink(ck->path);
    if (ck->tmp_dir && !ck->keep) rmdir(ck->dir);
}

model_ctx *cli_model_ctx(const struct cli_opts *o, const model *m)
{
    struct model_ctx_params p = {
        .n_batch = o->n_batch, .n_threads = o->n_threads,
        .tile_tokens = o->tile_tokens, .se_group = o->se_group,
        .se_window = o->se_window, .rotate_k_on_write = o->rotate_k_on_write,
    };
    if (o->rotate_k_on_write && o->se_group)
        cli_die("--k-rotation write cannot serve SelfExtend (it needs two rotations of each key)");
    model_ctx *c;
    int rc = model_ctx_create(m, &p, &c);
    if (rc < 0) cli_die("%s: %s", o->model_path, kvt_strerror(rc));
    return c;
}

void cli_reevaluate(model_ctx *mc, kvs *kv, const int32_t *ids, int64_t n,
                    int batch, const char *kvname)
{
    int rc = kvs_truncate(kv, 0);
    for (int64_t p0 = 0; rc >= 0 && p0 < n; p0 += batch) {
        int nb = (int)KVT_MIN((int64_t)batch, n - p0);
        rc = model_eval(mc, kv, ids + p0, nb, p0, NULL, 0);
    }
    if (rc < 0) cli_die("%s: %s", kvname, kvt_strerror(rc));
}

void cli_progress_start(struct cli_progress *p, int quiet, const char *unit)
{
    p->on = !quiet && isatty(2);
    p->t0 = p->last = kvt_now_s();
    p->unit = unit;
}

void cli_progress(struct cli_progress *p, int64_t done, int64_t total,
                  int64_t tokens, const char *extra)
{
    if (!p->on) return;
    double now = kvt_now_s();
    if (now - p->last < 0.25 && done < total) return;
    p->last = now;
    double el = now - p->t0;
    double tps = el > 0 ? (double)tokens / el : 0;
    double eta = done > 0 ? el * (double)(total - done) / (double)done : 0;
    fprintf(stderr, "\r%lld/%lld %s, %lld tokens, %.0f tok/s, ETA %.0fs %s\033[K",
            (long long)done, (long long)total, p->unit, (long long)tokens, tps,
            eta, extra ? extra : "");
}

void cli_progress_end(struct cli_progress *p)
{
    if (p->on) fputc('\n', stderr);
}

double cli_nll(const float *logits, int n_vocab, int target)
{
    float mx = logits[0];
    for (int i = 1; i < n_vocab; i++) mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0.0;
    for (int i = 0; i < n_vocab; i++) sum += exp((double)(logits[i] - mx));
    return -((double)(logits[target] - mx) - log(sum));
}

void cli_json_cpu(FILE *f)
{
    char d[256];
    cpu_describe(d, sizeof d);
    fputs("\"cpu\": ", f);
    cli_json_str(f, d);
    fputs(", ", f);
}

void cli_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\') fprintf(f, "\\%c", *c);
        else if (*c == '\n') fputs("\\n", f);
        else if (*c == '\t') fputs("\\t", f);
        else if (*c < 0x20) fprintf(f, "\\u%04x", *c);
        else fputc(*c, f);
    }
    fputc('"', f);
}
