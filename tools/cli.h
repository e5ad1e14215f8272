/* cli.h - what the kvtile subcommands share: option parsing for the model,
 * the KV store and positions; file reading; progress; errors.
 *
 * The CLI is the only place that prints or exits. Every error is one line
 * "kvtile: FILE: problem" on stderr and a non-zero exit.
 */
#ifndef KVT_CLI_H
#define KVT_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "engine/gguf.h"
#include "engine/model.h"
#include "engine/rope.h"
#include "engine/tok.h"
#include "kvstore/kvs.h"
#include "tools/opt.h"

/* Options common to the subcommands that run the model. */
struct cli_opts {
    const char *model_path;
    int n_threads;          /* -t */
    int n_batch;            /* --batch */
    int64_t n_ctx;          /* -c */
    int json, quiet;
    /* KV store */
    int kv_backing;         /* --kv-store disk|ram */
    const char *cache_dir;  /* --cache-dir */
    int keep_cache;         /* --keep-cache */
    int cache_type;         /* --cache-type f32|f16|bf16|q8_0 */
    int codec;              /* --codec */
    int io;                 /* --io uring|pread|mmap */
    int queue_depth;        /* --queue-depth */
    int tile_tokens;        /* --tile-tokens */
    size_t ram_budget;      /* --ram-budget */
    /* positions overrides (< 0 / NULL: from the file) */
    const char *rope_scaling;
    double rope_scale, rope_freq_base, yarn_beta_fast, yarn_beta_slow;
    const char *longrope_factors;
    int64_t longrope_n_hat; /* --longrope-n-hat: first positions unscaled */
    double longrope_mscale; /* --longrope-mscale: magnitude multiplier (0: 1) */
    int se_group, se_window;
    int rotate_k_on_write;  /* --k-rotation write: store rotated K (compare) */
    struct sel_policy sel;  /* --attend all | sink:S,recent:R,top:K|P% */
};

/* The same defaults for every command (kv-store disk, f32 tiles, lz4, ...). */
void cli_opts_default(struct cli_opts *o);

/* Option-table rows (opt.h) of the common options, in groups, so each
 * command takes exactly the groups it uses:
 *   CLI_OPTS_RUN     -t, --batch, --quiet
 *   CLI_OPT_JSON     --json
 *   CLI_OPTS_TILES   --cache-type, --tile-tokens (how K/V are kept, any backing)
 *   CLI_OPTS_DISK    --kv-store, --cache-dir, --keep-cache, --codec, --io,
 *                    --queue-depth, --ram-budget (the disk store)
 *   CLI_OPTS_POS     positions (--rope-*, --yarn-*, --longrope-factors,
 *                    --self-extend, --k-rotation)
 *   CLI_OPT_ATTEND   --attend (decode-step tile selection, select.h) */
extern const char *const cli_backing_names[], *const cli_type_names[],
                  *const cli_io_names[], *const cli_krot_names[];
void cli_opt_codec(void *field, const char *name, const char *v);
void cli_opt_rope_scaling(void *field, const char *name, const char *v);
void cli_opt_self_extend(void *field, const char *name, const char *v);
void cli_opt_attend(void *field, const char *name, const char *v);

#define CLI_OPT_ATTEND(o) \
    OPT_FN("--attend", NULL, "P", &(o)->sel, cli_opt_attend, \
           "decode steps: every tile (exact), or sink:S,recent:R,top:K|top:P%:\n" \
           "the tiles of the first S and last R tokens and K more (or P% of them)\n" \
           "taken in turn from each KV head's ranking by a score bound from the\n" \
           "tiles' key summaries", .def = "all")
#define CLI_OPTS_RUN(o) \
    OPT_INT("--threads", "-t", "N", &(o)->n_threads, 1, 1024, "threads", .def = "all cores"), \
    OPT_INT("--batch", "-b", "N", &(o)->n_batch, 1, 65536, "tokens per forward pass"), \
    OPT_FLAG("--quiet", "-q", &(o)->quiet, "no progress on stderr")
#define CLI_OPT_JSON(o) \
    OPT_FLAG("--json", NULL, &(o)->json, "one JSON object on stdout instead of text")
#define CLI_OPTS_TILES(o) \
    OPT_GROUP("KV cache:"), \
    OPT_CHOICE("--cache-type", NULL, &(o)->cache_type, cli_type_names, "element type of K/V"), \
    OPT_INT("--tile-tokens", NULL, "N", &(o)->tile_tokens, 1, 65536, "tokens per tile")
#define CLI_OPTS_DISK(o) \
    OPT_CHOICE("--kv-store", NULL, &(o)->kv_backing, cli_backing_names, "where K/V tiles live"), \
    OPT_STR("--cache-dir", NULL, "DIR", &(o)->cache_dir, "directory of the cache file", \
            .def = "a temporary directory removed at exit"), \
    OPT_FLAG("--keep-cache", NULL, &(o)->keep_cache, "keep the cache file at exit"), \
    OPT_FN("--codec", NULL, "C", &(o)->codec, cli_opt_codec, \
           "none|lz4|shuf-lz4|lz4hc|xpose-lz4|plane-huf|dedup-huf", .def = "lz4"), \
    OPT_CHOICE("--io", NULL, &(o)->io, cli_io_names, "I/O backend of the disk store"), \
    OPT_INT("--queue-depth", NULL, "N", &(o)->queue_depth, 1, KVS_MAX_QUEUE_DEPTH, \
            "tile reads in flight"), \
    OPT_BYTES("--ram-budget", NULL, "BYTES", &(o)->ram_budget, \
              "bound on the disk store's buffers: tails, decode ring, reads in flight (e.g. 64M)", \
              .def = "no bound: reads in flight up to the queue depth and 64 MiB")
/* Text options (every command that reads text): process-wide, since a
 * process has one tokenizer; cli_open_tok and cli_encode read them. */
struct cli_text_opts {
    int utf8_replace;   /* --utf8 replace */
    int parse_special;  /* --parse-special */
    const char *pre;    /* --pre-tokenizer NAME */
};
extern struct cli_text_opts cli_text;
extern const char *const cli_utf8_names[];
#define CLI_OPTS_TEXT \
    OPT_GROUP("Text:"), \
    OPT_CHOICE("--utf8", NULL, &cli_text.utf8_replace, cli_utf8_names, \
               "invalid UTF-8: stop naming its byte offset, or replace\n" \
               "each bad byte (U+FFFD; byte pieces <0xNN> in SentencePiece)"), \
    OPT_FLAG("--parse-special", NULL, &cli_text.parse_special, \
             "match control pieces (\"<|eot_id|>\", ...) inside the text"), \
    CLI_OPT_PRE
#define CLI_OPT_PRE \
    OPT_STR("--pre-tokenizer", NULL, "NAME", &cli_text.pre, \
            "split byte-level BPE text as NAME, not as the file's\n" \
            "tokenizer.ggml.pre says (warns)", .def = "from the file")
/* The sampler's options (engine/sample.h) into SP (struct sample_params *). */
#define CLI_OPTS_SAMPLE(sp) \
    OPT_DOUBLE("--temp", NULL, "T", &(sp)->temp, 0, 1e3, "temperature (0: greedy)"), \
    OPT_DOUBLE("--top-p", NULL, "P", &(sp)->top_p, 1e-9, 1, "nucleus sampling mass"), \
    OPT_U64("--seed", NULL, "S", &(sp)->seed, "sampler seed")
/* Every shared option of a command that runs the model over a KV store
 * and prints results (generate, passkey, ppl). */
#define CLI_OPTS_MODEL_RUN(o) \
    CLI_OPTS_RUN(o), CLI_OPT_JSON(o), CLI_OPTS_TILES(o), CLI_OPTS_DISK(o), \
    CLI_OPTS_POS(o), CLI_OPT_ATTEND(o), CLI_OPTS_TEXT
#define CLI_OPTS_POS(o) \
    OPT_GROUP("Positions:"), \
    OPT_FN("--rope-scaling", NULL, "S", &(o)->rope_scaling, cli_opt_rope_scaling, \
           "none|linear|ntk|dynamic-ntk|yarn|longrope", .def = "from the file"), \
    OPT_DOUBLE("--rope-scale", NULL, "S", &(o)->rope_scale, 1, 1e9, "scale factor s", \
               .def = "from the file"), \
    OPT_DOUBLE("--rope-freq-base", NULL, "B", &(o)->rope_freq_base, 1.0000001, 1e30, \
               "RoPE base frequency", .def = "from the file"), \
    OPT_DOUBLE("--yarn-beta-fast", NULL, "F", &(o)->yarn_beta_fast, 0, 1e9, "YaRN beta_fast", \
               .def = "from the file"), \
    OPT_DOUBLE("--yarn-beta-slow", NULL, "F", &(o)->yarn_beta_slow, 0, 1e9, "YaRN beta_slow", \
               .def = "from the file"), \
    OPT_STR("--longrope-factors", NULL, "FILE", &(o)->longrope_factors, \
            "per-pair LongRoPE factors (one per line or a list)"), \
    OPT_I64("--longrope-n-hat", NULL, "N", &(o)->longrope_n_hat, 0, 1e12, \
            "LongRoPE: the first N positions keep the unscaled angles"), \
    OPT_DOUBLE("--longrope-mscale", NULL, "M", &(o)->longrope_mscale, 0.01, 100, \
               "LongRoPE: multiply the magnitude (cos/sin scale,\n" \
               "sqrt(1 + ln s / ln L) or the file's attn_factor) by M", .def = "1"), \
    OPT_FN("--self-extend", NULL, "G:W", (o), cli_opt_self_extend, \
           "SelfExtend group size G, neighbour window W"), \
    OPT_CHOICE("--k-rotation", NULL, &(o)->rotate_k_on_write, cli_krot_names, \
               "rotate cached K as tiles are read, or before they are\n" \
               "written as llama.cpp does (comparisons: cached keys then\n" \
               "keep their old positions)")

/* Error exit (status 1) after removing what cli_cleanup_add registered. */
_Noreturn void cli_die(const char *fmt, ...);
void cli_warn(const char *fmt, ...);

/* Files and directories that must not outlive the process: a temporary
 * cache directory and its file, an output's temporary file. They are
 * removed (files first, newest first) at exit, in cli_die, and on SIGINT,
 * SIGTERM and SIGHUP, which then exit with status 128 + the signal
 * number. Kept caches are never registered, so they stay as a crash would
 * leave them: valid and resumable. cli_cleanup_forget: keep PATH after
 * all (it was committed, or removed by its owner). */
void cli_cleanup_add(const char *path, int is_dir);
/* Install the exit and signal handlers (main does, first thing). */
void cli_exit_init(void);
void cli_cleanup_forget(const char *path);

/* Open the progress journal PATH of run KEY (kvstore/journal.h), keeping
 * its records with RESUME; exits with one line when it belongs to another
 * run (WHAT: what differs), is not a journal, or is locked by another
 * process; says so on stderr when a torn last record was cut off. */
struct jnl_file *cli_journal_open(const char *path, const char *key, int resume,
                                  const char *what);

/* An output written whole or not at all: cli_out_open returns a stream
 * on PATH.tmp (registered for cleanup); cli_out_commit flushes, fsyncs and
 * renames it over PATH and fsyncs the directory. Both exit on errors. */
struct cli_out {
    FILE *f;
    char path[4096], tmp[4200];
};
FILE *cli_out_open(struct cli_out *out, const char *path);
void cli_out_commit(struct cli_out *out);

/* Parse "123", "4k", "2M" (k = 1024). Exits on junk. */
int64_t cli_parse_count(const char *what, const char *s);
/* Parse "64M", "1G", bytes. */
size_t cli_parse_bytes(const char *what, const char *s);

/* Whole file into a malloc'ed NUL-terminated buffer; exits naming PATH. */
char *cli_read_file(const char *path, size_t *len);

/* Open model + tokenizer; exits with "kvtile: PATH: reason". */
void cli_load(const char *path, model **m, tok **t);
/* The tokenizer of G (from PATH) with the tokenizer options; warns when
 * the pre-tokenizer is forced or the file names none; exits on error. */
tok *cli_open_tok(const gguf *g, const char *path);


/* Positions for this run: the file's scheme with the overrides applied. */
void cli_rope_params(const struct cli_opts *o, const model *m,
                     struct rope_params *rp);

/* tok_encode_ex with the tokenizer options: ADD_SPECIAL adds BOS (if the
 * vocabulary has one) and EOS when the model asks for it. */
int64_t cli_encode(const tok *t, const char *text, size_t len, int add_special,
                   int32_t *ids, size_t cap, size_t *bad_off);

/* Tokenize text (cli_encode); exits naming SRC and the byte offset on
 * invalid UTF-8. Returns a malloc'ed array. */
int32_t *cli_tokenize(tok *t, const char *src, const char *text, size_t len,
                      int add_bos, int64_t *n_out);

/* A KV store for this run. For the disk backing without --cache-dir, a
 * temporary directory is made and removed by cli_kv_close unless
 * --keep-cache. NAME: file name inside the cache directory. REOPEN: 0
 * create (empty), 1 reopen the existing file, 2 reopen it, or start it
 * over (with a warning) when it is damaged, cut short or another model's.
 * Exits with one line on any other error; -EBUSY (another process holds
 * the file) says so. */
struct cli_kv {
    kvs *kv;
    char dir[4096], path[8192];
    int tmp_dir, keep;
};
/* Note the I/O a freshly opened store got (one stderr line per process the
 * first time io_uring or O_DIRECT was not available; KVT_NO_URING=1
 * simulates it) and remember it for cli_json_io. */
void cli_note_io(const char *path, const struct cli_opts *o, const kvs *kv);
/* JSON fields (no braces, no leading comma) of the KV store in use:
 * "kv_store", "io_backend" (uring | pread | mmap | none), "o_direct". */
void cli_json_io(FILE *f);
void cli_kv_open(const struct cli_opts *o, const model *m, const char *name,
                 int reopen, struct cli_kv *ck);
void cli_kv_close(struct cli_kv *ck);

/* Peak resident set of this process so far, bytes. */
int64_t cli_peak_rss_bytes(void);

/* Make directory DIR if it does not exist; exits naming it on failure. */
void cli_mkdir(const char *dir);

/* A model context for this run. */
model_ctx *cli_model_ctx(const struct cli_opts *o, const model *m);

/* Close what cli_kv_open (CK, NULL: none), cli_model_ctx and cli_load
 * opened, in that order. */
void cli_unload(struct cli_kv *ck, model_ctx *mc, tok *tk, model *m);

/* After gen_run (engine/generate.h) returned RC: nothing when RC >= 0,
 * else exit with one line naming MODEL_PATH (positions) or KVNAME (the
 * KV store) as r->fail says. */
struct gen_result;
void cli_gen_check(int rc, const struct gen_result *r, const char *model_path,
                   const char *kvname);

/* Progress on stderr, only when stderr is a terminal and not quiet. */
struct cli_progress {
    int on;
    double t0, last;
    const char *unit;
};
void cli_progress_start(struct cli_progress *p, int quiet, const char *unit);
void cli_progress(struct cli_progress *p, int64_t done, int64_t total,
                  int64_t tokens, const char *extra);
void cli_progress_end(struct cli_progress *p);

/* The decode-step read counters as JSON members (each preceded by ", "):
 * "attend", "decode_steps" (tokens), "tiles_per_token", "tiles_read_per_token",
 * "bytes_read_per_token", "cache_fraction" (tiles read / tiles held). */
void cli_json_attend(FILE *f, const struct cli_opts *o, const model *m,
                     const struct attn_stats *st);

/* JSON string to F, quoted and escaped by jansson (json_dumpf): \" \\ \b
 * \f \n \r \t, other controls as \u00XX, everything else raw UTF-8. Bytes
 * that are not strict UTF-8 (a generated text can end inside a character)
 * become U+FFFD first, one per byte, so the output is always valid JSON. */
void cli_json_str(FILE *f, const char *s);
/* `"cpu": "FEATURES; kernels SET", ` (cpu_describe) for a JSON object. */
void cli_json_cpu(FILE *f);

int cmd_info(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_ppl(int argc, char **argv);
int cmd_longrope(int argc, char **argv);
int cmd_passkey(int argc, char **argv);
int cmd_batch(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_cache(int argc, char **argv);
int cmd_iobench(int argc, char **argv);

#endif
