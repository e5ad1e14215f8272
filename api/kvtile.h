/* kvtile.h - libkvtile: a long-context LLM engine whose KV cache lives in
 * compressed tiles on disk, as a C library.
 *
 *   kvtile_model   a GGUF model and its tokenizer (read-only once open:
 *                  any number of contexts and threads may share one)
 *   kvtile_store   a KV store: K/V of a token sequence, in RAM or as tiles
 *                  in a cache file that can be kept and reopened
 *   kvtile_ctx     a model context: threads, batch, positions, attention
 *                  policy, and the work buffers of one evaluation at a time
 *
 * Conventions (as liburing and lz4):
 *   - every function that can fail returns an int (or int64_t): >= 0 on
 *     success, a negative errno (-ENOMEM, -ENOENT, -EBUSY, ...) or a
 *     KVTILE_E* code on failure; kvtile_strerror names both. Nothing is
 *     printed, nothing exits, no errno is set.
 *   - the caller owns every buffer it passes; functions that fill a buffer
 *     take its capacity and return the size needed, so a too-small buffer
 *     is retried with the returned size.
 *   - handles are opaque; *_close / *_free of NULL is a no-op.
 *   - parameter structs are filled by their *_params_default function
 *     first; fields are only ever added at the end (a minor version).
 *   - a handle is used by one thread at a time; different handles may be
 *     used from different threads.
 *
 * ABI: the shared library is libkvtile.so.KVTILE_VERSION_MAJOR and exports
 * only kvtile_* symbols. The major version changes when a function or a
 * struct changes incompatibly; the minor version when something is added.
 *
 * Link: cc app.c $(pkg-config --cflags --libs kvtile)
 */
#ifndef KVTILE_H
#define KVTILE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KVTILE_VERSION_MAJOR 0
#define KVTILE_VERSION_MINOR 1
#define KVTILE_VERSION_PATCH 0
#define KVTILE_VERSION_NUMBER \
    (KVTILE_VERSION_MAJOR * 10000 + KVTILE_VERSION_MINOR * 100 + KVTILE_VERSION_PATCH)

/* KVTILE_VERSION_NUMBER of the library actually linked (compare with the
 * header's to detect a mismatch at run time). */
int kvtile_version(void);
/* "MAJOR.MINOR.PATCH" of the library linked (static string). */
const char *kvtile_version_string(void);

/* Error codes besides negative errno values. */
enum {
    KVTILE_EFORMAT = -10001,   /* malformed file */
    KVTILE_EVERSION = -10002,  /* unsupported format version */
    KVTILE_ETYPE = -10003,     /* unsupported tensor or element type */
    KVTILE_EMISSING = -10004,  /* missing tensor or metadata key */
    KVTILE_ESHAPE = -10005,    /* tensor has the wrong shape */
    KVTILE_EARCH = -10006,     /* unsupported model architecture */
    KVTILE_ECHECKSUM = -10007, /* checksum mismatch */
    KVTILE_EMODEL = -10008,    /* cache was built by another model */
    KVTILE_ETRUNC = -10009,    /* file is truncated */
    KVTILE_EUTF8 = -10010,     /* text is not valid UTF-8 */
    KVTILE_ERANGE = -10011,    /* value out of range */
    KVTILE_EUNSUPP = -10012,   /* not supported by this machine or build */
    KVTILE_EOTHERRUN = -10013, /* journal of another run (inputs or options differ) */
};

/* A static string naming ERR (a negative errno or a KVTILE_E* code). */
const char *kvtile_strerror(int err);

/* ---- model ---------------------------------------------------------------- */

typedef struct kvtile_model kvtile_model;

struct kvtile_model_params {
    const char *pre_tokenizer; /* byte-level BPE: split text as this
                                  pre-tokenizer, not as the file says
                                  (NULL: the file's) */
};
void kvtile_model_params_default(struct kvtile_model_params *p);

/* Open the GGUF model at PATH (tensors memory-mapped) and its tokenizer.
 * P may be NULL (defaults). ERR (may be NULL): on failure, a one-line
 * reason is written there (err_cap bytes, NUL-terminated).
 * @return 0 and *out, or an error (-ENOENT, KVTILE_EFORMAT, KVTILE_EARCH,
 * KVTILE_ETYPE, KVTILE_ESHAPE, KVTILE_EMISSING, ...). */
int kvtile_model_open(const char *path, const struct kvtile_model_params *p,
                      kvtile_model **out, char *err, size_t err_cap);
void kvtile_model_close(kvtile_model *m);

struct kvtile_model_info {
    char arch[32];        /* "llama", "qwen2", "phi3", ... */
    int n_vocab;
    int64_t n_ctx_train;  /* the context the model was trained for */
    int n_layer, n_embd, n_head, n_head_kv, head_dim;
    int bos, eos;         /* token ids, -1: none */
    int add_bos;          /* 1: the model wants BOS first (tokenize with
                             KVTILE_TOK_ADD_SPECIAL) */
    char rope_scheme[16]; /* the file's position scheme: "none", "linear",
                             "ntk", "dynamic-ntk", "yarn", "longrope" */
};
void kvtile_model_info(const kvtile_model *m, struct kvtile_model_info *info);

/* ---- tokens --------------------------------------------------------------- */

enum kvtile_tok_flags {
    KVTILE_TOK_ADD_SPECIAL = 1,   /* BOS first (and EOS last) as the model asks */
    KVTILE_TOK_PARSE_SPECIAL = 2, /* match control pieces ("<|eot_id|>") in the text */
    KVTILE_TOK_UTF8_REPLACE = 4,  /* invalid UTF-8 becomes U+FFFD (or byte
                                     pieces) instead of an error */
};

/* Tokenize TEXT[0..len) (UTF-8, need not be NUL-terminated) with FLAGS
 * into ids[0..cap). @return the number of tokens (at most cap), or
 * KVTILE_EUTF8 (invalid UTF-8 without KVTILE_TOK_UTF8_REPLACE; the byte
 * offset of the first bad byte in *bad_off when not NULL), or when cap is
 * too small -ENOSPC. kvtile_tokenize_bound(len) ids always suffice. */
int64_t kvtile_tokenize(const kvtile_model *m, const char *text, size_t len, unsigned flags,
                        int32_t *ids, size_t cap, size_t *bad_off);
size_t kvtile_tokenize_bound(size_t len);

/* The text of ids[0..n) into buf[0..cap) (control tokens give nothing).
 * @return the bytes of the whole text (without a NUL); when that is < cap
 * the text is in buf, NUL-terminated; otherwise buf holds as many whole
 * pieces as fit (call again with the returned size + 1). -EINVAL for an id
 * outside the vocabulary. */
int64_t kvtile_detokenize(const kvtile_model *m, const int32_t *ids, size_t n, char *buf,
                          size_t cap);

/* A 64-bit label of the token sequence ids[0..n) (never 0): what a kept
 * cache holds (kvtile_store_reset, kvtile_store_tag). */
uint64_t kvtile_tokens_tag(const int32_t *ids, size_t n);

/* ---- KV store ------------------------------------------------------------- */

typedef struct kvtile_store kvtile_store;

enum kvtile_store_open {
    KVTILE_STORE_CREATE,   /* a new, empty cache (an existing file is replaced) */
    KVTILE_STORE_REOPEN,   /* the existing cache at path (-ENOENT if none) */
    KVTILE_STORE_ANY,      /* reopen if the file exists, else create */
};

struct kvtile_store_params {
    int disk;               /* 1: tiles in a cache file (default), 0: RAM */
    const char *path;       /* disk: the cache file; NULL: a temporary file
                               in $TMPDIR (or /tmp), removed at close */
    int keep;               /* disk with a path: keep the file at close
                               (default 1; 0: remove it) */
    int open;               /* enum kvtile_store_open (disk with a path) */
    const char *cache_type; /* element type of K/V: "f32" (default),
                               "f16", "bf16", "q8_0" */
    const char *codec;      /* "none", "lz4" (default), "shuf-lz4", "lz4hc",
                               "xpose-lz4", "plane-huf", "dedup-huf" */
    const char *io;         /* "uring" (default; falls back to pread),
                               "pread", "mmap" */
    int queue_depth;        /* tile reads in flight (default 8) */
    int tile_tokens;        /* tokens per tile (default 256; a reopened
                               cache must use its own) */
    size_t ram_budget;      /* disk: a bound on the store's buffers (a
                               tail tile per layer, decode buffers and
                               spans, reads in flight; too small a bound is
                               refused); 0: reads in flight up to the
                               queue depth and 64 MiB */
};
void kvtile_store_params_default(struct kvtile_store_params *p);

/* Open a KV store for model M. A reopened cache must have been written
 * for the same model (KVTILE_EMODEL otherwise) with the same tile size
 * and type. @return 0 and *out, -EINVAL (an unknown name in P), -EBUSY
 * (another process or handle has the file open), -ENOENT, KVTILE_EMODEL,
 * KVTILE_EFORMAT, KVTILE_ECHECKSUM, KVTILE_ETRUNC, KVTILE_EVERSION, or an
 * I/O error. */
int kvtile_store_open(const kvtile_model *m, const struct kvtile_store_params *p,
                      kvtile_store **out);
/* Flush and close; a kept file stays valid and reopenable. */
void kvtile_store_close(kvtile_store *s);

/* Tokens the store holds (positions 0 .. n-1). */
int64_t kvtile_store_n_tokens(const kvtile_store *s);
/* Forget every token from position N on (0 <= n <= n_tokens). @return 0
 * or an I/O error. */
int kvtile_store_truncate(kvtile_store *s, int64_t n);
/* Empty the store and label it TAG (e.g. kvtile_tokens_tag of what will
 * be evaluated into it). @return 0 or an I/O error. */
int kvtile_store_reset(kvtile_store *s, uint64_t tag);
/* The label of the last reset (0: never reset). */
uint64_t kvtile_store_tag(const kvtile_store *s);
/* Make everything appended so far durable (fsync). @return 0 or an error. */
int kvtile_store_sync(kvtile_store *s);
/* Bytes of the cache file (0 for RAM). */
int64_t kvtile_store_file_bytes(const kvtile_store *s);

/* ---- context -------------------------------------------------------------- */

typedef struct kvtile_ctx kvtile_ctx;

struct kvtile_ctx_params {
    int n_threads;          /* default: every online core */
    int n_batch;            /* tokens per forward pass at most (default 512) */
    int64_t n_ctx;          /* the sequence length positions are prepared
                               for (0: the model's trained context) */
    int tile_tokens;        /* attention block: the tile size of the stores
                               it evaluates into (default 256) */
    /* positions (each: the file's unless set) */
    const char *rope_scaling; /* "none", "linear", "ntk", "dynamic-ntk",
                                 "yarn", "longrope" (NULL: the file's) */
    double rope_scale;      /* scale factor s (<= 0: the file's) */
    double rope_freq_base;  /* (<= 0: the file's) */
    double yarn_beta_fast, yarn_beta_slow; /* (< 0: the file's) */
    const float *longrope_factors; /* long factors, one per rotated pair */
    int n_longrope_factors;
    int self_extend_group, self_extend_window; /* SelfExtend (0: off) */
    int rotate_k_on_write;  /* store K rotated (as llama.cpp; comparisons) */
    int grow_positions;     /* positions follow the length evaluated so far */
    int longrope_exact;     /* with grow: re-evaluate the prefix when the
                               table changes */
    const char *attend;     /* decode-step tile selection: NULL or "all"
                               (every tile), or "sink:S,recent:R,top:K" /
                               "top:P%" */
    const char *kernels;    /* matrix and attention kernel set of this
                               context: "portable", "avx2", "avx512" (NULL:
                               $KVT_CPU if set, else the best the CPU has);
                               every set gives the same results to rounding */
};
void kvtile_ctx_params_default(struct kvtile_ctx_params *p);

/* A context for M (which must outlive it). @return 0 and *out, -EINVAL
 * (a bad name or value in P), KVTILE_ERANGE (positions: LongRoPE without
 * factors, a factor count that is not the model's rotated pairs, a scale
 * < 1), KVTILE_EUNSUPP (this CPU lacks the kernel set), -ENOMEM. */
int kvtile_ctx_create(const kvtile_model *m, const struct kvtile_ctx_params *p,
                      kvtile_ctx **out);
void kvtile_ctx_free(kvtile_ctx *c);

/* Prepare positions for a sequence of SEQ_LEN tokens (what n_ctx does at
 * creation). @return 0 or KVTILE_ERANGE. */
int kvtile_ctx_set_length(kvtile_ctx *c, int64_t seq_len);

/* Evaluate tokens ids[0..n) at positions pos0 .. pos0+n-1 (pos0 must be
 * kvtile_store_n_tokens(s); 1 <= n <= n_batch), appending their K/V to S.
 * LOGITS (may be NULL: K/V only): the next-token logits of tokens
 * [from, n), (n - from) rows of n_vocab floats, row 0 = token FROM.
 * @return 0, -EINVAL (bad n, pos0, from or id; a store whose tile size is
 * not the context's), or a store error. */
int kvtile_eval(kvtile_ctx *c, kvtile_store *s, const int32_t *ids, int n, int64_t pos0,
                float *logits, int from);

/* Evaluate ids[k..n) into S without logits, in batches of n_batch, where
 * k = kvtile_store_n_tokens(s) (S holds ids[0..k) already: a kept cache
 * of a document continues where it ends). @return 0, -EINVAL (n < k, a
 * bad id, a store whose tile size is not the context's), or a store
 * error. */
int kvtile_prefill(kvtile_ctx *c, kvtile_store *s, const int32_t *ids, int64_t n);

/* ---- scoring (perplexity) --------------------------------------------------- */

/* Progress after every batch. @return 0 to go on, < 0 to stop the run
 * with that error. */
struct kvtile_progress {
    int64_t window, n_windows; /* window being evaluated */
    int64_t n_eval;            /* tokens evaluated so far by this run */
    double nll_sum;            /* sums so far */
    int64_t n_scored;
};
typedef int (*kvtile_progress_fn)(void *user, const struct kvtile_progress *p);

struct kvtile_score_params {
    int64_t n_ctx;          /* tokens per window (0: the context's n_ctx;
                               capped at the text's length) */
    int64_t max_windows;    /* score at most this many windows (< 0: all) */
    int64_t stride;         /* sliding windows every STRIDE tokens (0:
                               non-overlapping windows) */
    int score_all;          /* score every position after the first, not
                               the second half of each window */
    int64_t score_from;     /* > 0: score positions >= score_from only */
    int decode;             /* scored positions one token at a time */
    const char *resume_dir; /* NULL, or the directory of the journal
                               (ppl.journal) and KV cache (ppl.kvt); made
                               if missing (its parent must exist) */
    int resume;             /* continue the run recorded there */
    kvtile_progress_fn progress;
    void *user;
};
void kvtile_score_params_default(struct kvtile_score_params *p);

struct kvtile_score_result {
    double nll_sum, nll2_sum;
    int64_t n_scored;
    double ppl, ppl_stderr;
    int64_t n_ctx, n_windows, n_eval;
    int resumed_from;       /* window a resumed run continued in, -1 */
};

/* Score the tokenized text ids[0..n_tok) as `kvtile ppl` does (windows of
 * n_ctx, BOS substituted first when the model adds one, the logits of the
 * second half of each window scored; bit-identical sums): with the
 * context's threads, batch and positions, in a KV store opened from SP
 * (NULL: defaults; with resume_dir its path is resume_dir/ppl.kvt).
 * @return 0 and R, -EINVAL (fewer than 2 tokens, no whole window, a
 * stride not in 1 .. n_ctx-1, resume without resume_dir), KVTILE_EOTHERRUN
 * (the journal is another run's), KVTILE_EFORMAT (a damaged journal),
 * -EBUSY (another run holds it), store and I/O errors, or progress's. */
int kvtile_score(kvtile_ctx *c, const struct kvtile_store_params *sp, const int32_t *ids,
                 int64_t n_tok, const struct kvtile_score_params *p,
                 struct kvtile_score_result *r);

/* ---- generation ------------------------------------------------------------- */

/* Each generated token with its text (piece[0..len), not NUL-terminated).
 * @return 0 to go on, > 0 to stop after this token, < 0 to fail. */
typedef int (*kvtile_token_fn)(void *user, int32_t id, const char *piece, int len);

struct kvtile_gen_params {
    int64_t n_predict;      /* tokens to generate at most (default 64) */
    double temp;            /* 0: greedy (default); > 0: sampling */
    double top_p;           /* nucleus (default 0.95) */
    uint64_t seed;          /* sampling seed (default 42) */
    int stop_at_eos;        /* stop at the model's EOS (default 1) */
    const char *const *stop; /* strings that end the text (not included) */
    int n_stop;
    kvtile_token_fn on_token;
    void *user;
};
void kvtile_gen_params_default(struct kvtile_gen_params *p);

struct kvtile_gen_result {
    int64_t n_out;          /* tokens generated */
    int64_t n_prefill;      /* prompt tokens evaluated (not already in S) */
    int finish;             /* 0 length, 1 EOS, 2 stop string, 3 callback */
    double prefill_s, decode_s;
};

/* Continue the prompt ids[0..n_prompt): S must hold its first
 * k = kvtile_store_n_tokens(s) < n_prompt tokens (0: evaluate it all; a
 * kept cache of a document: only the rest), which are evaluated with the
 * positions prepared for n_prompt + n_predict (grow_positions: for the
 * length so far); then up to n_predict tokens
 * are generated (each passed to on_token). TEXT[0..cap): the generated
 * text, cut to cap - 1 bytes and NUL-terminated (cap 0: not wanted).
 * Afterwards S holds the prompt and the generated tokens. R: counts and
 * times. @return the bytes of the whole generated text (> cap - 1: TEXT
 * holds its start), -EINVAL (k >= n_prompt, a bad id or parameter, a
 * store whose tile size is not the context's), -ENOMEM, store errors, or
 * on_token's error. */
int64_t kvtile_generate(kvtile_ctx *c, kvtile_store *s, const int32_t *ids, int64_t n_prompt,
                        const struct kvtile_gen_params *p, char *text, size_t cap,
                        struct kvtile_gen_result *r);

#ifdef __cplusplus
}
#endif

#endif
