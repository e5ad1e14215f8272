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
    int se_group, se_window;
    int rotate_k_on_write;  /* --k-rotation write: store rotated K (compare) */
};

void cli_opts_default(struct cli_opts *o);

/* If argv[*i] is a common option, consume it (and its value) and return 1;
 * return 0 if it is not one. Exits with a message on a bad value. */
int cli_common_opt(struct cli_opts *o, int argc, char **argv, int *i);
/* Help text for the common options. */
extern const char cli_common_help[];

_Noreturn void cli_die(const char *fmt, ...);
void cli_warn(const char *fmt, ...);

/* Parse "123", "4k", "2M" (k = 1024). Exits on junk. */
int64_t cli_parse_count(const char *what, const char *s);
/* Parse "64M", "1G", bytes. */
size_t cli_parse_bytes(const char *what, const char *s);

/* Whole file into a malloc'ed NUL-terminated buffer; exits naming PATH. */
char *cli_read_file(const char *path, size_t *len);

/* Open model + tokenizer; exits with "kvtile: PATH: reason". */
void cli_load(const char *path, model **m, tok **t);

/* Positions for this run: the file's scheme with the overrides applied. */
void cli_rope_params(const struct cli_opts *o, const model *m,
                     struct rope_params *rp);

/* Tokenize text (with BOS if add_bos); exits naming SRC on invalid UTF-8.
 * Returns a malloc'ed array. */
int32_t *cli_tokenize(tok *t, const char *src, const char *text, size_t len,
                      int add_bos, int64_t *n_out);

/* A KV store for this run. For the disk backing without --cache-dir, a
 * temporary directory is made and removed by cli_kv_close unless
 * --keep-cache. NAME: file name inside the cache directory. */
struct cli_kv {
    kvs *kv;
    char dir[4096], path[8192];
    int tmp_dir, keep;
};
void cli_kv_open(const struct cli_opts *o, const model *m, const char *name,
                 int reopen, struct cli_kv *ck);
void cli_kv_close(struct cli_kv *ck);

/* Make directory DIR if it does not exist; exits naming it on failure. */
void cli_mkdir(const char *dir);

/* A model context for this run. */
model_ctx *cli_model_ctx(const struct cli_opts *o, const model *m);

/* Empty KV and evaluate ids[0..n) again in batches of `batch`, without
 * logits: the prefix under a new rotation table (--longrope-exact). Exits
 * naming KVNAME on a store error. */
void cli_reevaluate(model_ctx *mc, kvs *kv, const int32_t *ids, int64_t n,
                    int batch, const char *kvname);

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

/* -log softmax(logits)[target], in double: the scored loss of one token. */
double cli_nll(const float *logits, int n_vocab, int target);

/* JSON string to F (quoted, escaped). */
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
