/* generate.h - the prefill + decode loop: a token sequence into a KV
 * store, then new tokens from the sampler (sample.h), one at a time.
 *
 * Prefill (gen_prefill): ids[from, n) are evaluated at positions from ..
 * n-1 in chunks of n_batch tokens cut from FROM ([from, from + n_batch),
 * ...), appended to the KV store, which must hold exactly FROM tokens.
 *
 * Generation (gen_run):
 *   1. positions: with p->rope, the table is prepared for the length
 *      n_prompt + n_predict (the whole evaluation's length, known up
 *      front), or n_prompt with p->grow (an open-ended session);
 *   2. prefill ids[from, n_prompt), the last token's logits kept;
 *   3. up to n_predict times: sample a token; a stop token (p->stop_ids,
 *      e.g. EOS) ends decoding and is not emitted; otherwise it is emitted:
 *      stored at ids[n_prompt + k], its text (tok_decode_piece) appended to
 *      the run's text and passed to p->on_token; the first occurrence of a
 *      stop string (p->stop_strs) in the text so far ends decoding, the
 *      text cut where it starts (the token counts as emitted); then the
 *      token is evaluated at position n_prompt + k for the next logits,
 *      except for the last emitted token when p->feed_last is 0.
 *      With p->grow, before each evaluation the table is prepared for the
 *      length so far (position + 1); when it changes (LongRoPE's switch to
 *      long factors, dynamic NTK) and p->exact is set, the store is
 *      emptied and ids[0, pos) evaluated again under the new table, so
 *      the result equals a one-shot evaluation.
 * After gen_run the store holds ids[0, n_prompt + n_out), except that
 * without feed_last the last emitted token is not in it when decoding
 * ended on that token (length, stop string, callback; a stop token ends
 * decoding after the last emitted token was evaluated).
 *
 * Library rules: nothing is printed; errors are returned (-errno or
 * KVT_E*); the caller owns the model context, the store and the ids.
 */
#ifndef KVT_GENERATE_H
#define KVT_GENERATE_H

#include <stddef.h>
#include <stdint.h>

#include "attn.h"
#include "model.h"
#include "rope.h"
#include "sample.h"
#include "tok.h"
#include "kvstore/kvs.h"

/* ---- prefill ------------------------------------------------------------ */

enum gen_logits {
    GEN_LOGITS_NONE, /* no output layer (K/V only) */
    GEN_LOGITS_LAST, /* each chunk's last token: logits (1, n_vocab) */
    GEN_LOGITS_ALL,  /* every token of each chunk: logits (chunk, n_vocab) */
};

/* Called after each prefill chunk: tokens [pos0, pos0 + n) are in the
 * store; LOGITS as the mode says (row 0 = token pos0 for ALL; NULL for
 * NONE). @return 0 to go on, < 0 to stop the prefill with that error. */
typedef int (*gen_chunk_fn)(void *user, int64_t pos0, int n, const float *logits);

struct gen_prefill_params {
    int n_batch;           /* tokens per evaluation, 1 .. the context's n_batch */
    int logits;            /* enum gen_logits */
    float *logits_buf;     /* LAST: (1, n_vocab); ALL: (n_batch, n_vocab);
                              NONE: unused */
    gen_chunk_fn on_chunk; /* NULL: none */
    void *user;
};

/* Evaluate ids[from, n) into KV (which holds FROM tokens) as above.
 * from >= n evaluates nothing. @return 0, -EINVAL (n_batch < 1, a logits
 * mode without logits_buf), a model_eval error, or on_chunk's error. */
int gen_prefill(model_ctx *mc, kvs *kv, const int32_t *ids, int64_t from,
                int64_t n, const struct gen_prefill_params *p);

/* ---- generation --------------------------------------------------------- */

enum gen_finish {
    GEN_FINISH_LENGTH,   /* n_predict tokens emitted */
    GEN_FINISH_TOKEN,    /* a stop token (EOS) was sampled */
    GEN_FINISH_STOP,     /* a stop string appeared in the text */
    GEN_FINISH_CALLBACK, /* on_token asked to stop */
};

/* Which step failed when gen_run returns an error. */
enum gen_fail {
    GEN_FAIL_NONE,
    GEN_FAIL_PARAMS,    /* -EINVAL: the parameters (below) */
    GEN_FAIL_POSITIONS, /* model_ctx_set_rope */
    GEN_FAIL_STORE,     /* model_eval or kvs_truncate: the KV store */
    GEN_FAIL_CALLBACK,  /* on_token returned < 0 */
    GEN_FAIL_MEMORY,    /* -ENOMEM growing the text */
};

/* Called for each emitted token with its text piece (PIECE[0..len), not
 * NUL-terminated, len may be 0). @return 0 to go on, > 0 to stop after
 * this token, < 0 to fail with that error. */
typedef int (*gen_token_fn)(void *user, int32_t id, const char *piece, int len);

struct gen_params {
    int64_t n_predict;             /* tokens to emit at most, >= 0 */
    int n_batch;                   /* prefill chunk, as gen_prefill */
    struct sample_params sample;   /* sample.h */
    const int32_t *stop_ids;       /* tokens that end decoding (EOS) */
    int n_stop_ids;
    const char *const *stop_strs;  /* strings that end decoding (non-empty) */
    int n_stop_strs;
    int feed_last;                 /* 1: evaluate the last emitted token too
                                      (the store then continues the text) */
    const struct rope_params *rope; /* NULL: positions as the context has them */
    int grow;                      /* positions follow the length (needs rope) */
    int exact;                     /* with grow: re-evaluate on a change */
    gen_token_fn on_token;         /* NULL: none */
    void *user;
};

/* Defaults: n_predict 64, n_batch 512, sample_params_default, EOS not
 * set (no stop tokens), feed_last 1, no rope, no callback. */
void gen_params_default(struct gen_params *p);

struct gen_result {
    int64_t n_out;         /* tokens emitted (ids[n_prompt, n_prompt + n_out)) */
    int finish;            /* enum gen_finish */
    int64_t n_prefill;     /* tokens the prefill evaluated (n_prompt - from) */
    int64_t n_decode;      /* single-token evaluations of the decode */
    int64_t n_reeval;      /* prefix re-evaluations (exact) */
    double prefill_s, decode_s;  /* wall time of steps 1-2 and of step 3 */
    struct attn_stats decode_st; /* what the decode steps read (attn.h):
                                    the context's counters after - before */
    int fail;              /* enum gen_fail, when gen_run returned < 0 */
};

typedef struct gen gen;

/* A generation state for model M and tokenizer TK: a sampler, a logits
 * row (n_vocab) and the text buffer. @return 0 or -ENOMEM. */
int gen_create(const model *m, const tok *tk, gen **out);
void gen_free(gen *g); /* NULL is a no-op */

/* Generate as above. IDS: n_prompt + n_predict entries, the prompt in
 * [0, n_prompt); KV holds ids[0, from) evaluated with mc's table; 0 <=
 * from < n_prompt (at least one token is evaluated, for its logits).
 * The sampler is restarted from p->sample for every run.
 * @return 0, or < 0 with r->fail naming the step (r holds what was done
 * up to then): -EINVAL for bad parameters (from, n_prompt, n_predict < 0,
 * n_batch < 1, grow without rope, an empty stop string, sample params),
 * model_ctx_set_rope / model_eval / kvs_truncate errors, on_token's
 * error, -ENOMEM. */
int gen_run(gen *g, model_ctx *mc, kvs *kv, int32_t *ids, int64_t from,
            int64_t n_prompt, const struct gen_params *p, struct gen_result *r);

/* The text of the last gen_run (NUL-terminated; cut before a stop string;
 * a piece can end inside a UTF-8 sequence). Valid until the next gen_run
 * or gen_free. *len: its bytes (NULL: not wanted). */
const char *gen_text(const gen *g, size_t *len);

#endif
