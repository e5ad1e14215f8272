/* score.h - the windowed negative log-likelihood loop: how a text is
 * scored (perplexity), the one place that does it.
 *
 * Protocol (llama.cpp's llama-perplexity, so numbers compare): a window of
 * n tokens is evaluated from an empty KV store, its first token replaced
 * by BOS when the model adds one; the logits at positions first .. n-2 are
 * scored against the next tokens: NLL = -log softmax(logits)[next], summed
 * in double. PPL = exp(nll_sum / n_scored).
 *
 * score_window evaluates one window (longrope's search calls it per
 * candidate); score_run cuts a tokenized text into windows (chunks or a
 * stride), keeps a journal and resumes an interrupted run (tools/cmd_ppl.c,
 * the library's kvtile_score).
 *
 * Nothing here prints or exits: errors are -errno or KVT_E* (base/kvt.h);
 * progress goes through callbacks.
 */
#ifndef KVT_SCORE_H
#define KVT_SCORE_H

#include <stddef.h>
#include <stdint.h>

#include "engine/model.h"
#include "engine/rope.h"
#include "engine/select.h"
#include "kvstore/journal.h"
#include "kvstore/kvs.h"

/* -log softmax(logits)[target], in double: the loss of one token.
 * logits: (n_vocab); 0 <= target < n_vocab. */
double score_nll(const float *logits, int n_vocab, int target);

/* Running sums of a scored text. */
struct score_sums {
    double nll_sum, nll2_sum; /* sum of NLL, of NLL^2 */
    int64_t n_scored;         /* tokens scored */
};

/* PPL = exp(mean NLL) and its standard error (0 with fewer than two
 * tokens). s->n_scored must be > 0. */
void score_stats(const struct score_sums *s, double *ppl, double *err);

/* Called after every evaluated batch of a window: POS tokens of the
 * window are in the store, S holds the sums so far, N_EVAL the tokens
 * evaluated so far (by this call of score_window). A negative return stops
 * the window and is returned by score_window. */
typedef int (*score_batch_fn)(void *arg, int64_t pos, const struct score_sums *s,
                              int64_t n_eval);

/* How one window is evaluated and scored. */
struct score_window_params {
    int64_t first;     /* first scored position (0 .. n-1); the logits at
                          first .. n-2 are scored */
    int32_t bos;       /* >= 0: evaluate this token at position 0 instead
                          of ids[0] (llama-perplexity); < 0: ids as given */
    int n_batch;       /* tokens per forward pass (<= the context's) */
    int decode;        /* the prefix before FIRST in batches, then every
                          scored position one token at a time */
    int grow;          /* positions follow the length evaluated so far:
                          model_ctx_set_rope(rp, p0 + n) before each batch */
    int exact;         /* with grow: when the table changes, evaluate the
                          prefix again under the new one */
    const struct rope_params *rp; /* the scheme (needed with grow) */
    /* per-position curve (NULL: off): curve_nll[pos / bucket] += NLL,
     * curve_n[pos / bucket]++, arrays of (n + bucket - 1) / bucket */
    int64_t bucket;
    double *curve_nll;
    int64_t *curve_n;
    score_batch_fn on_batch; /* NULL: none */
    void *arg;
};

/* Buffers of score_window, allocated once per run: tokens (n_ctx) the
 * window with BOS substituted, logits (n_batch, n_vocab). */
struct score_buf {
    int32_t *tokens;
    float *logits;
    int64_t n_ctx;
    int n_batch, n_vocab;
};
/* @return 0 or -ENOMEM. score_buf_free frees; a zeroed buf is a no-op. */
int score_buf_init(struct score_buf *b, int64_t n_ctx, int n_batch, int n_vocab);
void score_buf_free(struct score_buf *b);

/* Evaluate the window ids[0..n) (n >= 2, n <= buf->n_ctx, p->n_batch <=
 * buf->n_batch) and add the NLL of its scored positions to S (not
 * cleared). The store KV must hold exactly the first P_BEGIN tokens of
 * this window (0: empty; a resumed window continues at P_BEGIN). The
 * positions table must be set (model_ctx_set_rope for length n) unless
 * p->grow. N_EVAL (may be NULL) gets the number of tokens evaluated added.
 * @return 0, a store or positions error, or on_batch's negative return. */
int score_window(model_ctx *mc, kvs *kv, const int32_t *ids, int64_t n, int64_t p_begin,
                 const struct score_window_params *p, struct score_buf *buf,
                 struct score_sums *s, int64_t *n_eval);

/* ---- a whole text -------------------------------------------------------- */

/* Progress of score_run after every batch. A negative return stops the
 * run (score_run returns it). */
struct score_progress {
    int64_t window, n_windows; /* window being evaluated */
    int64_t n_eval;            /* tokens evaluated by this run */
    struct score_sums s;       /* sums so far (resumed ones included) */
};
typedef int (*score_progress_fn)(void *arg, const struct score_progress *p);

/* A text to score. Windows: stride 0: window w is ids[w*n_ctx ..
 * (w+1)*n_ctx) (chunks); stride S: ids[w*S .. w*S+n_ctx), the first scored
 * from n_ctx/2 (or 0), each later one only on its last S predictions.
 * score_from > 0 overrides the first scored position of every window. */
struct score_job {
    const model *m;
    const int32_t *ids;       /* (n_tok) the tokenized text */
    int64_t n_tok;
    int64_t n_ctx;            /* tokens per window, <= n_tok */
    int64_t n_windows;        /* windows to score (score_count_windows
                                 or fewer) */
    int64_t stride;           /* 0: chunks */
    int score_all;            /* first scored position 0, not n_ctx / 2 */
    int64_t score_from;
    int32_t bos;              /* as score_window_params.bos */
    int n_batch;              /* tokens per pass (clamped to n_ctx) */
    int grow, exact, decode;  /* as score_window_params */
    struct rope_params rp;    /* positions, prepared for n_ctx */
    /* what the store and the context were made with: only part of the
     * journal's run key (a resumed run must use the same) */
    int tile_tokens, cache_type, codec, se_group, se_window, rotate_k_on_write;
    struct sel_policy sel;
    /* optional per-position curve, as score_window_params */
    int64_t bucket;
    double *curve_nll;
    int64_t *curve_n;
    score_progress_fn progress; /* NULL: none */
    void *arg;
};

/* Number of windows of n_ctx in n_tok tokens (0 when the text is shorter
 * than one window with a stride). */
int64_t score_count_windows(int64_t n_tok, int64_t n_ctx, int64_t stride);

/* The first scored position of window W of J. */
int64_t score_first(const struct score_job *j, int64_t w);

/* The journal run key of J (every input and option the sums depend on and
 * the cache name "ppl.kvt") into key[cap]. */
void score_journal_key(const struct score_job *j, char *key, size_t cap);

/* 1 when the journal's last record is inside a window the run has not
 * finished (then a resumed run continues from the kept cache: reopen it),
 * 0 when not (no records: the cache is not needed), KVT_EFORMAT when that
 * record is not a score record. */
int score_journal_needs_cache(const jnl_file *j, int64_t n_ctx);

/* Where score_run's error came from. */
enum score_err_at { SCORE_AT_NONE, SCORE_AT_STORE, SCORE_AT_POSITIONS, SCORE_AT_JOURNAL,
                    SCORE_AT_PROGRESS };

struct score_result {
    struct score_sums s;
    int64_t n_eval;           /* tokens evaluated by this run */
    int resumed_from;         /* window a resumed run started in, -1 */
    int err_at;               /* enum score_err_at of an error */
    int64_t bad_record;       /* KVT_EFORMAT from the journal: the index of
                                 the record that is not a score record, or
                                 -1 when window resumed_from has no start
                                 record */
};

/* Score J. MC: a context of J->m allowing min(n_batch, n_ctx) tokens per
 * pass (its positions are set here). KV: the store, empty or (when the
 * journal needs it, score_journal_needs_cache) the cache the interrupted
 * run kept. JR (NULL: no journal): the journal opened with
 * score_journal_key's key; its records are continued (a resumed run) and a
 * record "w W p P s NLL NLL2 N" is appended after every batch once the KV
 * tiles are durable (kvs_sync), one with p 0 when window W starts. The
 * store is reset with the tag of the window it holds (run key hash and W),
 * so a resume continues a window only on that window's keys.
 * @return 0 (RES filled), or an error (RES->err_at says where). */
int score_run(const struct score_job *j, model_ctx *mc, kvs *kv, jnl_file *jr,
              struct score_result *res);

#endif
