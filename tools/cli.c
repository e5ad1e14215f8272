/* cli.c - shared plumbing of the kvtile subcommands (see cli.h). */
#include "cli.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/cpu.h"
#include "engine/generate.h"
#include "io/io.h"
#include "base/kvt.h"
#include "kvstore/journal.h"
#include "kvstore/tile.h"

#include "io/io.h"

const char *const cli_type_names[] = { "f32", "f16", "bf16", "q8_0", NULL };
_Static_assert(sizeof cli_type_names / sizeof cli_type_names[0] == KVS_NTYPES + 1, "kv types");
const char *const cli_io_names[] = { "uring", "pread", "mmap", NULL };
_Static_assert(sizeof cli_io_names / sizeof cli_io_names[0] == IO_NKINDS + 1, "io kinds");
const char *const cli_backing_names[] = { [KVS_RAM] = "ram", [KVS_DISK] = "disk", NULL };
const char *const cli_krot_names[] = { "read", "write", NULL };
const char *const cli_utf8_names[] = { "error", "replace", NULL };

struct cli_text_opts cli_text; /* CLI_OPTS_TEXT; read by cli_open_tok, cli_encode */

static void vwarn(const char *fmt, va_list ap)
{
    fputs("kvtile: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

/* ---- cleanup at exit, on errors and on signals ---------------------------- */

#define CLI_MAX_CLEANUP 32
static struct cli_cleanup {
    char path[8192];
    volatile sig_atomic_t used, is_dir;
} cleanup[CLI_MAX_CLEANUP];
static volatile sig_atomic_t n_cleanup;

/* Async-signal-safe: unlink and rmdir only. */
static void cleanup_run(void)
{
    for (int i = n_cleanup - 1; i >= 0; i--) {
        struct cli_cleanup *c = &cleanup[i];
        if (!c->used) continue;
        c->used = 0;
        if (c->is_dir) rmdir(c->path);
        else unlink(c->path);
    }
}

static void on_signal(int sig)
{
    cleanup_run();
    _exit(128 + sig);
}

void cli_exit_init(void)
{
    static int done;
    if (done) return;
    done = 1;
    atexit(cleanup_run);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigfillset(&sa.sa_mask); /* one handler at a time */
    const int sigs[] = { SIGINT, SIGTERM, SIGHUP };
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        struct sigaction old;
        /* keep an inherited "ignore" (nohup) */
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN) continue;
        sigaction(sigs[i], &sa, NULL);
    }
}

void cli_cleanup_add(const char *path, int is_dir)
{
    cli_exit_init();
    int i = 0;
    while (i < n_cleanup && cleanup[i].used) i++;
    if (i == CLI_MAX_CLEANUP) cli_die("%s: too many temporary files", path);
    struct cli_cleanup *c = &cleanup[i];
    c->used = 0; /* a signal now skips the entry being filled */
    snprintf(c->path, sizeof c->path, "%s", path);
    c->is_dir = is_dir;
    c->used = 1;
    if (i == n_cleanup) n_cleanup = i + 1;
}

void cli_cleanup_forget(const char *path)
{
    for (int i = 0; i < n_cleanup; i++)
        if (cleanup[i].used && !strcmp(cleanup[i].path, path)) cleanup[i].used = 0;
}

void cli_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vwarn(fmt, ap);
    va_end(ap);
    exit(1); /* atexit: cleanup_run */
}

struct jnl_file *cli_journal_open(const char *path, const char *key, int resume,
                                  const char *what)
{
    jnl_file *j;
    int rc = jnl_open(path, key, resume ? JNL_RESUME : 0, &j);
    if (rc == KVT_EOTHERRUN)
        cli_die("%s: journal of another run (%s differ); remove it or run without --resume",
                path, what);
    if (rc == KVT_EFORMAT)
        cli_die("%s: not a kvtile journal; remove it or run without --resume", path);
    if (rc == -EBUSY)
        cli_die("%s: in use by another kvtile run (locked); wait for it to finish or use "
                "another output or --cache-dir", path);
    if (rc < 0) cli_die("%s: %s", path, kvt_strerror(rc));
    if (jnl_cut_bytes(j) > 0)
        cli_warn("%s: dropped a torn last record (%llu bytes); continuing from the one before",
                 path, (unsigned long long)jnl_cut_bytes(j));
    return j;
}

FILE *cli_out_open(struct cli_out *out, const char *path)
{
    snprintf(out->path, sizeof out->path, "%s", path);
    snprintf(out->tmp, sizeof out->tmp, "%s.tmp", path);
    cli_cleanup_add(out->tmp, 0);
    out->f = fopen(out->tmp, "w");
    if (!out->f) cli_die("%s: %s", out->tmp, strerror(errno));
    return out->f;
}

void cli_out_commit(struct cli_out *out)
{
    if (fflush(out->f) != 0 || ferror(out->f)) cli_die("%s: %s", out->tmp, strerror(errno));
    if (fclose(out->f) != 0) cli_die("%s: %s", out->tmp, strerror(errno));
    out->f = NULL;
    int rc = jnl_commit(out->tmp, out->path);
    if (rc < 0) cli_die("%s: %s", out->path, kvt_strerror(rc));
    cli_cleanup_forget(out->tmp);
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
    o->n_threads = model_default_threads();
    o->n_batch = MODEL_DEFAULT_BATCH;
    o->n_ctx = 0;
    o->kv_backing = KVS_DISK;
    o->cache_type = KVS_F32;
    o->codec = TILE_LZ4;
    o->io = 0; /* uring */
    o->queue_depth = KVS_DEFAULT_QUEUE_DEPTH;
    o->tile_tokens = KVS_DEFAULT_TILE_TOKENS;
    o->ram_budget = 0;
    o->rope_scale = -1;
    o->rope_freq_base = -1;
    o->yarn_beta_fast = -1;
    o->yarn_beta_slow = -1;
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

void cli_opt_codec(void *field, const char *name, const char *v)
{
    int c = tile_codec_parse(v);
    if (c < 0) cli_die("%s: unknown codec '%s'", name, v);
    *(int *)field = c;
}

void cli_opt_rope_scaling(void *field, const char *name, const char *v)
{
    if (rope_scheme_parse(v) < 0) cli_die("%s: unknown scheme '%s'", name, v);
    *(const char **)field = v;
}

void cli_opt_attend(void *field, const char *name, const char *v)
{
    if (sel_parse(v, field) < 0)
        cli_die("%s: '%s' (expected all, or sink:S,recent:R,top:K or top:P%%)", name, v);
}

void cli_opt_self_extend(void *field, const char *name, const char *v)
{
    struct cli_opts *o = field;
    char extra;
    if (sscanf(v, "%d:%d%c", &o->se_group, &o->se_window, &extra) != 2 ||
        o->se_group < 2 || o->se_window < 1)
        cli_die("%s: '%s' (expected G:W, G >= 2, W >= 1)", name, v);
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

tok *cli_open_tok(const gguf *g, const char *path)
{
    char err[512] = "";
    struct tok_params p = {.pre = cli_text.pre};
    tok *t;
    int rc = tok_open_with(g, &p, &t, err, sizeof err);
    if (rc < 0) cli_die("%s: tokenizer: %s", path, err[0] ? err : kvt_strerror(rc));
    const char *file_pre = NULL;
    size_t n = 0;
    if (tok_pre_name(t) && gguf_get_str(g, "tokenizer.ggml.pre", &file_pre, &n) < 0)
        file_pre = NULL;
    if (cli_text.pre && tok_pre_name(t))
        cli_warn("%s: --pre-tokenizer: splitting as '%s' (the file says '%.*s')", path,
                 tok_pre_name(t), file_pre ? (int)KVT_MIN(n, 64) : 4, file_pre ? file_pre : "none");
    else if (tok_pre_name(t) && !file_pre)
        cli_warn("%s: no tokenizer.ggml.pre; splitting as 'default' (as llama.cpp)", path);
    return t;
}

void cli_load(const char *path, model **m, tok **t)
{
    char err[512] = "";
    int rc = model_open(path, m, err, sizeof err);
    if (rc < 0) cli_die("%s: %s", path, err[0] ? err : kvt_strerror(rc));
    if (t) *t = cli_open_tok(model_gguf(*m), path);
}

void cli_rope_params(const struct cli_opts *o, const model *m, struct rope_params *rp)
{
    *rp = model_hparams(m)->rope;
    struct rope_override ov = {
        .scheme = o->rope_scaling ? rope_scheme_parse(o->rope_scaling) : -1,
        .scale = o->rope_scale, .freq_base = o->rope_freq_base,
        .beta_fast = o->yarn_beta_fast, .beta_slow = o->yarn_beta_slow, .n_ctx = o->n_ctx,
    };
    float f[ROPE_MAX_PAIRS];
    if (o->longrope_factors) {
        size_t len;
        char *text = cli_read_file(o->longrope_factors, &len);
        int rc = rope_factors_parse(text, len, f, ROPE_MAX_PAIRS, &ov.n_factors);
        free(text);
        if (rc < 0) cli_die("%s: %s", o->longrope_factors, kvt_strerror(rc));
        if (ov.n_factors != rp->n_rot / 2)
            cli_die("%s: %d factors, the model rotates %d pairs", o->longrope_factors,
                    ov.n_factors, rp->n_rot / 2);
        ov.factors_long = f;
    }
    if (rope_params_override(rp, &ov) < 0) /* (the factor count is checked above) */
        cli_die("--rope-scaling longrope: the model has no LongRoPE factors; give --longrope-factors FILE");
    if (o->longrope_n_hat > 0) rp->n_hat = o->longrope_n_hat;
    if (o->longrope_mscale > 0) rp->mscale_mult = o->longrope_mscale;
}

int64_t cli_encode(const tok *t, const char *text, size_t len, int add_special,
                   int32_t *ids, size_t cap, size_t *bad_off)
{
    unsigned fl = (add_special ? TOK_ADD_BOS : 0) |
                  (add_special && tok_add_eos(t) ? TOK_ADD_EOS : 0) |
                  (cli_text.parse_special ? TOK_PARSE_SPECIAL : 0) |
                  (cli_text.utf8_replace ? TOK_UTF8_REPLACE : 0);
    return tok_encode_ex(t, text, len, fl, ids, cap, bad_off);
}

int32_t *cli_tokenize(tok *t, const char *src, const char *text, size_t len,
                      int add_bos, int64_t *n_out)
{
    size_t cap = tok_encode_bound(len);
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) cli_die("%s: out of memory", src);
    size_t bad = 0;
    int64_t n = cli_encode(t, text, len, add_bos, ids, cap, &bad);
    if (n == KVT_EUTF8)
        cli_die("%s: invalid UTF-8 at byte %zu (--utf8 replace to substitute it)", src, bad);
    if (n < 0) cli_die("%s: tokenizer: %s", src, kvt_strerror((int)n));
    *n_out = n;
    return ids;
}

void cli_mkdir(const char *dir)
{
    if (mkdir(dir, 0755) == 0) {
        int rc = jnl_fsync_dir(dir); /* its parent: the new entry survives */
        if (rc < 0) cli_die("%s: %s", dir, kvt_strerror(rc));
    } else if (errno != EEXIST) {
        cli_die("%s: %s", dir, strerror(errno));
    }
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
    model_kv_pairing(m, &cfg.head_dim, &cfg.neox_rot);
    model_fingerprint(m, cfg.model_fp);
    if (o->kv_backing == KVS_DISK && o->ram_budget && o->ram_budget < kvs_ram_min(&cfg))
        cli_die("--ram-budget %zu: a disk store of this model's tiles needs at least %zu bytes "
                "(a tail tile per layer, the decode buffers and spans, one read)",
                o->ram_budget, kvs_ram_min(&cfg));
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
        cfg.ephemeral = !ck->keep;
        if (!ck->keep) {
            if (ck->tmp_dir) cli_cleanup_add(ck->dir, 1);
            cli_cleanup_add(ck->path, 0);
        }
    }
    int rc = kvs_open(&cfg, &ck->kv);
    if (reopen == 2 && (rc == KVT_ETRUNC || rc == KVT_EFORMAT || rc == KVT_ECHECKSUM ||
                        rc == KVT_EVERSION || rc == KVT_EMODEL || rc == KVT_EUNSUPP)) {
        cli_warn("%s: %s; starting the cache over", ck->path, kvt_strerror(rc));
        cfg.reopen = 0;
        rc = kvs_open(&cfg, &ck->kv);
    }
    if (rc == -EBUSY)
        cli_die("%s: in use by another kvtile run (locked); wait for it to finish or use "
                "another --cache-dir", ck->path);
    if (rc < 0)
        cli_die("%s: %s", o->kv_backing == KVS_DISK ? ck->path : "KV store", kvt_strerror(rc));
    if (ck->keep && !cfg.reopen && (rc = jnl_fsync_dir(ck->path)) < 0) /* the new file survives */
        cli_die("%s: %s", ck->dir, kvt_strerror(rc));
    cli_note_io(ck->path, o, ck->kv);
    /* a cache written before summaries (or with damaged ones): rebuild */
    if (cfg.reopen && o->sel.on && kvs_summary_missing(ck->kv) > 0) {
        int64_t n = kvs_summary_rebuild(ck->kv);
        if (n < 0) cli_die("%s: rebuilding tile summaries: %s", ck->path, kvt_strerror((int)n));
    }
}

void cli_json_attend(FILE *f, const struct cli_opts *o, const model *m,
                     const struct attn_stats *s)
{
    char spec[128];
    sel_format(&o->sel, spec, sizeof spec);
    struct attn_stats st = *s;
    double steps = (double)st.steps / model_hparams(m)->n_layer; /* tokens */
    double d = steps > 0 ? steps : 1;
    fprintf(f, ", \"attend\": \"%s\", \"decode_steps\": %.0f, \"tiles_per_token\": %.2f, "
               "\"tiles_read_per_token\": %.2f, \"bytes_read_per_token\": %.0f, "
               "\"cache_fraction\": %.6f",
            spec, steps, (double)st.tiles / d, (double)st.tiles_read / d,
            (double)st.bytes_read / d,
            st.tiles > 0 ? (double)st.tiles_read / (double)st.tiles : 0.0);
}

void cli_kv_close(struct cli_kv *ck)
{
    kvs_close(ck->kv);
    ck->kv = NULL;
    if (ck->path[0] && !ck->keep) unlink(ck->path);
    if (ck->tmp_dir && !ck->keep) rmdir(ck->dir);
    cli_cleanup_forget(ck->path);
    cli_cleanup_forget(ck->dir);
}

static struct { int set, disk, backend, direct; } io_used;

void cli_note_io(const char *path, const struct cli_opts *o, const kvs *kv)
{
    static int warned;
    int disk = o->kv_backing == KVS_DISK, info = disk ? kvs_io_info(kv) : 0;
    io_used.set = 1;
    io_used.disk = disk;
    io_used.backend = o->io == IO_URING && (info & IO_INFO_NO_URING) ? IO_PREAD : o->io;
    io_used.direct = disk && o->io != IO_MMAP && !(info & IO_INFO_NO_DIRECT);
    int fresh = info & ~warned;
    warned |= info;
    if (fresh & IO_INFO_NO_URING)
        cli_warn("%s: io_uring is not available here (kernel, permissions or KVT_NO_URING=1); "
                 "reading tiles with pread instead", path);
    if (fresh & IO_INFO_NO_DIRECT)
        cli_warn("%s: the filesystem refuses O_DIRECT; tile I/O goes through the page cache", path);
}

void cli_json_io(FILE *f)
{
    fprintf(f, "\"kv_store\": \"%s\", \"io_backend\": \"%s\", \"o_direct\": %s",
            !io_used.set ? "none" : io_used.disk ? "disk" : "ram",
            io_used.set && io_used.disk ? io_kind_name(io_used.backend) : "none",
            io_used.direct ? "true" : "false");
}

int64_t cli_peak_rss_bytes(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return -1;
    return (int64_t)ru.ru_maxrss * 1024;
}

model_ctx *cli_model_ctx(const struct cli_opts *o, const model *m)
{
    struct model_ctx_params p = {
        .n_batch = o->n_batch, .n_threads = o->n_threads,
        .tile_tokens = o->tile_tokens, .se_group = o->se_group,
        .se_window = o->se_window, .rotate_k_on_write = o->rotate_k_on_write,
        .sel = o->sel,
    };
    if (o->rotate_k_on_write && o->se_group)
        cli_die("--k-rotation write cannot serve SelfExtend (it needs two rotations of each key)");
    model_ctx *c;
    int rc = model_ctx_create(m, &p, &c);
    if (rc < 0) cli_die("%s: %s", o->model_path, kvt_strerror(rc));
    return c;
}

void cli_unload(struct cli_kv *ck, model_ctx *mc, tok *tk, model *m)
{
    if (ck) cli_kv_close(ck);
    model_ctx_free(mc);
    tok_free(tk);
    model_close(m);
}

void cli_gen_check(int rc, const struct gen_result *r, const char *model_path,
                   const char *kvname)
{
    if (rc >= 0) return;
    if (r->fail == GEN_FAIL_POSITIONS) cli_die("%s: positions: %s", model_path, kvt_strerror(rc));
    if (r->fail == GEN_FAIL_STORE) cli_die("%s: %s", kvname, kvt_strerror(rc));
    cli_die("generate: %s", kvt_strerror(rc));
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

void cli_json_cpu(FILE *f)
{
    char d[256];
    cpu_describe(d, sizeof d);
    fputs("\"cpu\": ", f);
    cli_json_str(f, d);
    fputs(", ", f);
}

/* Length of the valid UTF-8 sequence at s (strict: no overlongs, no
 * surrogates, <= U+10FFFF), 0 if the bytes there are not one. */
static size_t utf8_seq_len(const unsigned char *s)
{
    unsigned c = s[0], lo = 0x80, hi = 0xBF;
    size_t n;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) { n = 3; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
    else if (c >= 0xF0 && c <= 0xF4) { n = 4; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
    else return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    return n;
}

void cli_json_str(FILE *f, const char *s)
{
    /* jansson refuses a string that is not UTF-8: replace each stray byte
     * by U+FFFD (EF BF BD) first, then let it quote and escape */
    size_t n = strlen(s), k = 0;
    char *clean = malloc(3 * n + 1);
    if (!clean) cli_die("out of memory");
    for (const unsigned char *c = (const unsigned char *)s; *c;) {
        size_t m = utf8_seq_len(c);
        if (m == 0) {
            memcpy(clean + k, "\xef\xbf\xbd", 3);
            k += 3;
            c++;
            continue;
        }
        memcpy(clean + k, c, m);
        k += m;
        c += m;
    }
    json_t *j = json_stringn(clean, k);
    if (!j) cli_die("out of memory");
    /* a write error shows on F's ferror/fclose, as for the printf around it */
    (void)json_dumpf(j, f, JSON_ENCODE_ANY);
    json_decref(j);
    free(clean);
}
