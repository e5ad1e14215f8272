/* batch.h - the parts of `kvtile batch` (cmd_batch.c says what the command
 * does; each part's file says how):
 *
 *   cmd_batch.c      options, set-up, the loop over this shard's documents
 *   batch_input.c    input discovery (JSONL lines or a directory's .txt
 *                    files) and one document's inputs (struct doc_in)
 *   batch_dcache.c   cache policy: which document cache, what of it is
 *                    reusable, checkpoints (batch_cache.h: sidecar format)
 *   batch_task.c     the per-document tasks (score, generate), each giving
 *                    one JSON output line
 *   batch_journal.c  the run key, the journal of finished lines, OUT
 *
 * Every part exits through cli_die on a fatal error (disk full, I/O error,
 * out of memory); a bad document is an error line and the batch goes on.
 */
#ifndef KVT_BATCH_H
#define KVT_BATCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cli.h"
#include "engine/generate.h"
#include "kvstore/journal.h"
#include "tools/batch_cache.h"

#define BATCH_MAX_STOPS 16
#define BATCH_MAX_FIELDS 64 /* members of one JSONL record */

enum batch_task { TASK_SCORE, TASK_GENERATE };

/* A document of the input: a JSONL line (off, len, line) or a file (name). */
struct batch_doc {
    size_t off, len;
    int64_t line;
    char *name;
};

struct batch {
    struct cli_opts o;
    const char *input, *out;
    int task, resume, no_timings;
    int shard_i, shard_n;
    int64_t n_gen, bucket, checkpoint;
    const char *tmpl;
    char *tmpl_owned;          /* --template, unescaped */
    struct sample_params sample; /* --temp, --top-p, --seed (stream: the index) */
    const char *stops[BATCH_MAX_STOPS];
    int n_stops;

    /* input */
    int is_dir;
    char *in_text;             /* JSONL file contents */
    char in_dir[4096];         /* JSONL's directory, or the input directory */
    struct batch_doc *docs;
    int64_t n_docs;

    /* model */
    model *m;
    tok *tk;
    model_ctx *mc;
    gen *gen;
    struct rope_params rp;
    const struct model_hparams *hp;
    uint8_t fp[32];
    char fp_hex[65];
    char pos_key[512];         /* every setting the cached K/V bits depend on */
    int chunk;                 /* evaluation chunk C */
    struct cli_kv shared;      /* the store when there is no --cache-dir */
    float *logits;             /* (chunk, n_vocab) */

    /* journal and outputs */
    char journal[8192];
    jnl_file *jnl;
    char **lines;              /* (n_docs) finished output lines, or NULL */

    /* totals */
    int64_t n_done, n_hits, n_errors, tok_eval;
};

/* ---- batch_input.c ------------------------------------------------------- */

/* A document's inputs: text (malloc'ed), question, template, id. */
struct doc_in {
    char *text;
    size_t text_len;
    char *id, *question, *tmpl;
    struct json_t *jroot; /* owns question and tmpl */
    char src[8300];       /* where the text came from, for messages */
};

/* The documents of b->input into b->docs (exits if it cannot be read). */
void batch_load_input(struct batch *b);
/* Document I's inputs. On a bad record returns < 0 with a message in ERR
 * (the batch goes on); d->id is set when the record had one. */
int batch_load_doc(struct batch *b, int64_t i, struct doc_in *d, char *err, size_t cap);
void doc_in_free(struct doc_in *d);
/* The file document I is read from, if any: a directory's file, or the
 * "path" of a JSONL line without "text". @return 1 with PATH filled, 0. */
int batch_doc_file(const struct batch *b, int64_t i, char *path, size_t cap);
/* Tokenize TEXT (BOS when BOS and the model adds one) into a malloc'ed
 * *ids; KVT_EUTF8 is a bad record (first bad byte in *bad), anything else
 * fatal. */
int64_t batch_tokenize(struct batch *b, const char *text, size_t len, int bos,
                       int32_t **ids, size_t *bad);
char *batch_strdup(const char *s); /* exits when out of memory */

/* ---- batch_dcache.c ------------------------------------------------------ */

struct dcache {
    kvs *kv;            /* the store used for this document */
    int own;            /* 1: kv is a document cache file (close it) */
    char path[8192], side[8192];
    int sfd;            /* sidecar, -1 without --cache-dir */
    struct bc_hdr h;
    int64_t start;      /* tokens reused from the cache (chunk boundary or all) */
    int hit;            /* the whole document part is cached */
    double *nll;        /* score: (doc_tokens - 1) */
};

/* Open (or create) the cache of the token run ids[0..n) for TAG (the
 * task) and work out what is reusable. Without --cache-dir: the shared
 * store, emptied. */
void dcache_open(struct batch *b, const char *tag, const int32_t *ids, int64_t n,
                 struct dcache *dc);
/* Make tokens [0, kvs_n_tokens) durable and record them (and N_NLL
 * per-token NLLs) in the sidecar. No-op without --cache-dir. */
void dcache_checkpoint(struct dcache *dc, int64_t n_nll);
void dcache_close(struct dcache *dc);
/* The store's name for messages. */
const char *dcache_name(const struct dcache *dc);

/* ---- batch_task.c -------------------------------------------------------- */

/* Document I's output line (malloc'ed, no newline) for the task; an error
 * line for a bad document (counted, and said on stderr). */
char *batch_do_score(struct batch *b, int64_t i, struct doc_in *d, struct cli_progress *pr);
char *batch_do_generate(struct batch *b, int64_t i, struct doc_in *d, struct cli_progress *pr);
char *batch_error_line(struct batch *b, int64_t i, const char *id, const char *err);

/* ---- batch_journal.c ----------------------------------------------------- */

/* Open OUT.journal for this run (b->lines: the finished lines it keeps). */
void batch_journal_open(struct batch *b);
/* One finished line to the journal, fsynced; a failure is fatal. */
void batch_journal_append(struct batch *b, const char *line);
/* OUT in input order (atomically), then the journal removed. */
void batch_write_output(struct batch *b);

#endif
