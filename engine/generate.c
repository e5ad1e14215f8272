/* generate.c - the prefill + decode loop (generate.h). */
#include "generate.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/kvt.h"

#define PIECE_CAP 256

struct gen {
    const tok *tk;
    int n_vocab;
    sampler *smp;
    float *logits;     /* (n_vocab): the row the next token is drawn from */
    char *text;        /* the run's text, NUL-terminated */
    size_t text_len, text_cap;
};

int gen_prefill(model_ctx *mc, kvs *kv, const int32_t *ids, int64_t from,
                int64_t n, const struct gen_prefill_params *p)
{
    if (p->n_batch < 1 || (p->logits != GEN_LOGITS_NONE && !p->logits_buf)) return -EINVAL;
    float *lg = p->logits == GEN_LOGITS_NONE ? NULL : p->logits_buf;
    for (int64_t p0 = from; p0 < n; p0 += p->n_batch) {
        int c = (int)KVT_MIN((int64_t)p->n_batch, n - p0);
        int rc = model_eval(mc, kv, ids + p0, c, p0, lg, p->logits == GEN_LOGITS_ALL);
        if (rc < 0) return rc;
        if (p->on_chunk && (rc = p->on_chunk(p->user, p0, c, lg)) < 0) return rc;
    }
    return 0;
}

void gen_params_default(struct gen_params *p)
{
    memset(p, 0, sizeof *p);
    p->n_predict = 64;
    p->n_batch = MODEL_DEFAULT_BATCH;
    sample_params_default(&p->sample);
    p->feed_last = 1;
}

int gen_create(const model *m, const tok *tk, gen **out)
{
    *out = NULL;
    gen *g = calloc(1, sizeof *g);
    if (!g) return -ENOMEM;
    g->tk = tk;
    g->n_vocab = model_hparams(m)->n_vocab;
    struct sample_params sp;
    sample_params_default(&sp);
    int rc = sampler_create(g->n_vocab, &sp, &g->smp);
    g->logits = malloc((size_t)g->n_vocab * sizeof *g->logits);
    g->text_cap = 256;
    g->text = malloc(g->text_cap);
    if (rc < 0 || !g->logits || !g->text) {
        gen_free(g);
        return rc < 0 ? rc : -ENOMEM;
    }
    g->text[0] = 0;
    *out = g;
    return 0;
}

void gen_free(gen *g)
{
    if (!g) return;
    sampler_free(g->smp);
    free(g->logits);
    free(g->text);
    free(g);
}

const char *gen_text(const gen *g, size_t *len)
{
    if (len) *len = g->text_len;
    return g->text;
}

static int params_ok(const struct gen_params *p, int64_t from, int64_t n_prompt)
{
    if (from < 0 || from >= n_prompt || p->n_predict < 0 || p->n_batch < 1) return 0;
    if ((p->grow || p->exact) && !p->rope) return 0;
    if (p->n_stop_ids < 0 || p->n_stop_strs < 0) return 0;
    for (int k = 0; k < p->n_stop_strs; k++)
        if (!p->stop_strs[k] || !p->stop_strs[k][0]) return 0;
    return 1;
}

static int append(gen *g, const char *s, size_t n)
{
    if (g->text_len + n + 1 > g->text_cap) {
        size_t cap = g->text_cap;
        while (g->text_len + n + 1 > cap) cap *= 2;
        char *t = realloc(g->text, cap);
        if (!t) return -ENOMEM;
        g->text = t;
        g->text_cap = cap;
    }
    memcpy(g->text + g->text_len, s, n);
    g->text_len += n;
    g->text[g->text_len] = 0;
    return 0;
}

/* The earliest stop string in the text: 1 with the text cut before it. */
static int cut_at_stop(gen *g, const struct gen_params *p)
{
    const char *first = NULL;
    for (int k = 0; k < p->n_stop_strs; k++) {
        const char *s = memmem(g->text, g->text_len, p->stop_strs[k], strlen(p->stop_strs[k]));
        if (s && (!first || s < first)) first = s;
    }
    if (!first) return 0;
    g->text_len = (size_t)(first - g->text);
    g->text[g->text_len] = 0;
    return 1;
}

static int is_stop_id(const struct gen_params *p, int id)
{
    for (int k = 0; k < p->n_stop_ids; k++)
        if (p->stop_ids[k] == id) return 1;
    return 0;
}

#define FAIL(stage, err) do { r->fail = (stage); return (err); } while (0)

/* Step 3 of generate.h for the token at POS: positions, then evaluate. */
static int feed(gen *g, model_ctx *mc, kvs *kv, const int32_t *ids, int64_t pos,
                const struct gen_params *p, struct gen_result *r)
{
    if (p->grow) {
        int changed = model_ctx_set_rope(mc, p->rope, pos + 1);
        if (changed < 0) FAIL(GEN_FAIL_POSITIONS, changed);
        if (changed && p->exact) { /* the prefix again, under the new table */
            r->n_reeval++;
            int rc = kvs_truncate(kv, 0);
            struct gen_prefill_params pp = { .n_batch = p->n_batch, .logits = GEN_LOGITS_NONE };
            if (rc == 0) rc = gen_prefill(mc, kv, ids, 0, pos, &pp);
            if (rc < 0) FAIL(GEN_FAIL_STORE, rc);
        }
    }
    int rc = model_eval(mc, kv, ids + pos, 1, pos, g->logits, 0);
    if (rc < 0) FAIL(GEN_FAIL_STORE, rc);
    r->n_decode++;
    return 0;
}

static int decode(gen *g, model_ctx *mc, kvs *kv, int32_t *ids, int64_t n_prompt,
                  const struct gen_params *p, struct gen_result *r)
{
    char piece[PIECE_CAP];
    r->finish = GEN_FINISH_LENGTH;
    for (int64_t k = 0; k < p->n_predict; k++) {
        int id = sampler_next(g->smp, g->logits);
        if (is_stop_id(p, id)) {
            r->finish = GEN_FINISH_TOKEN;
            return 0;
        }
        int64_t pos = n_prompt + k;
        ids[pos] = id;
        r->n_out++;
        int w = tok_decode_piece(g->tk, id, piece, sizeof piece);
        if (w < 0) w = 0; /* a piece longer than PIECE_CAP: no text */
        if (append(g, piece, (size_t)w) < 0) FAIL(GEN_FAIL_MEMORY, -ENOMEM);
        int last = k + 1 == p->n_predict;
        if (p->on_token) {
            int rc = p->on_token(p->user, id, piece, w);
            if (rc < 0) FAIL(GEN_FAIL_CALLBACK, rc);
            if (rc > 0) { r->finish = GEN_FINISH_CALLBACK; last = 1; }
        }
        if (cut_at_stop(g, p)) { r->finish = GEN_FINISH_STOP; last = 1; }
        if (!last || p->feed_last) {
            int rc = feed(g, mc, kv, ids, pos, p, r);
            if (rc < 0) return rc;
        }
        if (last) return 0;
    }
    return 0;
}

int gen_run(gen *g, model_ctx *mc, kvs *kv, int32_t *ids, int64_t from,
            int64_t n_prompt, const struct gen_params *p, struct gen_result *r)
{
    memset(r, 0, sizeof *r);
    g->text_len = 0;
    g->text[0] = 0;
    if (!params_ok(p, from, n_prompt) || sampler_set(g->smp, &p->sample) < 0)
        FAIL(GEN_FAIL_PARAMS, -EINVAL);
    double t0 = kvt_now_s();
    if (p->rope) {
        int rc = model_ctx_set_rope(mc, p->rope, p->grow ? n_prompt : n_prompt + p->n_predict);
        if (rc < 0) FAIL(GEN_FAIL_POSITIONS, rc);
    }
    struct gen_prefill_params pp = {
        .n_batch = p->n_batch, .logits = GEN_LOGITS_LAST, .logits_buf = g->logits,
    };
    int rc = gen_prefill(mc, kv, ids, from, n_prompt, &pp);
    if (rc < 0) FAIL(GEN_FAIL_STORE, rc);
    r->n_prefill = n_prompt - from;
    double t1 = kvt_now_s();
    struct attn_stats s0, s1;
    model_ctx_attn_stats(mc, &s0);
    rc = decode(g, mc, kv, ids, n_prompt, p, r);
    model_ctx_attn_stats(mc, &s1);
    r->decode_st = (struct attn_stats){
        s1.steps - s0.steps, s1.tiles - s0.tiles, s1.tiles_read - s0.tiles_read,
        s1.bytes_read - s0.bytes_read,
    };
    r->prefill_s = t1 - t0;
    r->decode_s = kvt_now_s() - t1;
    return rc;
}
