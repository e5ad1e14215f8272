/* run.c - libkvtile's long runs: scoring a text (engine/score.h) and
 * generating (engine/generate.h). */
#include "api/api_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/kvt.h"
#include "engine/generate.h"
#include "engine/score.h"
#include "kvstore/journal.h"

/* ---- scoring -------------------------------------------------------------- */

KVTILE_API void kvtile_score_params_default(struct kvtile_score_params *p)
{
    memset(p, 0, sizeof *p);
    p->max_windows = -1;
}

struct score_cb {
    kvtile_progress_fn fn;
    void *user;
};

static int score_progress(void *arg, const struct score_progress *p)
{
    struct score_cb *cb = arg;
    struct kvtile_progress kp = { .window = p->window, .n_windows = p->n_windows,
                                  .n_eval = p->n_eval, .nll_sum = p->s.nll_sum,
                                  .n_scored = p->s.n_scored };
    return cb->fn(cb->user, &kp);
}

/* The store of a scoring run: resume_dir/ppl.kvt (reopened when the
 * journal continues a window it holds, started over when it is damaged),
 * or as SP says. */
static int score_store(const kvtile_ctx *c, const struct kvtile_store_params *sp,
                       const char *dir, int reopen, kvtile_store **out)
{
    struct kvtile_store_params p = *sp;
    char path[4352];
    if (dir) {
        snprintf(path, sizeof path, "%s/ppl.kvt", dir);
        p.path = path;
        p.keep = 1;
        p.open = reopen && p.disk && access(path, F_OK) == 0 ? KVTILE_STORE_REOPEN
                                                              : KVTILE_STORE_CREATE;
    }
    int rc = kvtile_store_open(c->m, &p, out);
    if (p.open == KVTILE_STORE_REOPEN &&
        (rc == KVT_ETRUNC || rc == KVT_EFORMAT || rc == KVT_ECHECKSUM || rc == KVT_EVERSION ||
         rc == KVT_EMODEL || rc == KVT_EUNSUPP)) {
        p.open = KVTILE_STORE_CREATE; /* damaged: start over */
        rc = kvtile_store_open(c->m, &p, out);
    }
    return rc;
}

KVTILE_API int kvtile_score(kvtile_ctx *c, const struct kvtile_store_params *sp,
                            const int32_t *ids, int64_t n_tok,
                            const struct kvtile_score_params *p, struct kvtile_score_result *r)
{
    struct kvtile_store_params sdef;
    struct kvtile_score_params pdef;
    if (!sp) {
        kvtile_store_params_default(&sdef);
        sp = &sdef;
    }
    if (!p) {
        kvtile_score_params_default(&pdef);
        p = &pdef;
    }
    memset(r, 0, sizeof *r);
    r->resumed_from = -1;
    if (n_tok < 2 || p->n_ctx < 0 || p->stride < 0 || p->score_from < 0 ||
        (p->resume && !p->resume_dir))
        return -EINVAL;
    const kvtile_model *km = c->m;
    int n_vocab = model_hparams(km->m)->n_vocab;
    for (int64_t i = 0; i < n_tok; i++)
        if (ids[i] < 0 || ids[i] >= n_vocab) return -EINVAL;
    int64_t n_ctx = p->n_ctx ? p->n_ctx : c->n_ctx;
    if (n_ctx > n_tok) n_ctx = n_tok; /* one window: the whole text */
    if (n_ctx < 2 || (p->stride && p->stride >= n_ctx)) return -EINVAL;
    int64_t n_win = score_count_windows(n_tok, n_ctx, p->stride);
    if (p->max_windows >= 0 && p->max_windows < n_win) n_win = p->max_windows;
    if (n_win < 1) return -EINVAL;
    struct kvs_config cfg;
    int rc = api_store_config(km, sp, &cfg);
    if (rc < 0) return rc;
    if (cfg.tile_tokens != c->mp.tile_tokens) return -EINVAL;

    struct score_cb cb = { p->progress, p->user };
    struct score_job j = {
        .m = km->m, .ids = ids, .n_tok = n_tok, .n_ctx = n_ctx, .n_windows = n_win,
        .stride = p->stride, .score_all = p->score_all, .score_from = p->score_from,
        .bos = tok_add_bos(km->tk) ? tok_bos(km->tk) : -1, .n_batch = c->mp.n_batch,
        .grow = c->grow, .exact = c->exact, .decode = p->decode, .rp = c->rp,
        .tile_tokens = cfg.tile_tokens, .cache_type = cfg.type, .codec = cfg.codec,
        .se_group = c->mp.se_group, .se_window = c->mp.se_window,
        .rotate_k_on_write = c->mp.rotate_k_on_write, .sel = c->mp.sel,
        .progress = p->progress ? score_progress : NULL, .arg = &cb,
    };
    jnl_file *jr = NULL;
    int need = 0;
    if (p->resume_dir) {
        char key[2048], jpath[4352];
        score_journal_key(&j, key, sizeof key);
        if (mkdir(p->resume_dir, 0777) < 0 && errno != EEXIST) return -errno;
        snprintf(jpath, sizeof jpath, "%s/ppl.journal", p->resume_dir);
        if ((rc = jnl_open(jpath, key, p->resume ? JNL_RESUME : 0, &jr)) < 0) return rc;
        need = score_journal_needs_cache(jr, n_ctx) > 0;
    }
    kvtile_store *s = NULL;
    model_ctx *mc = NULL;
    struct model_ctx_params mp = c->mp; /* one pass is at most a window */
    if (mp.n_batch > n_ctx) mp.n_batch = (int)n_ctx;
    if ((rc = score_store(c, sp, p->resume_dir, need, &s)) >= 0 &&
        (rc = model_ctx_create(km->m, &mp, &mc)) >= 0) {
        struct score_result sr;
        rc = score_run(&j, mc, s->kv, jr, &sr);
        r->nll_sum = sr.s.nll_sum;
        r->nll2_sum = sr.s.nll2_sum;
        r->n_scored = sr.s.n_scored;
        r->n_eval = sr.n_eval;
        r->resumed_from = sr.resumed_from;
        if (rc >= 0 && sr.s.n_scored > 0) score_stats(&sr.s, &r->ppl, &r->ppl_stderr);
    }
    r->n_ctx = n_ctx;
    r->n_windows = n_win;
    model_ctx_free(mc);
    kvtile_store_close(s);
    jnl_close(jr);
    return rc < 0 ? rc : 0;
}

/* ---- generation ------------------------------------------------------------- */

KVTILE_API void kvtile_gen_params_default(struct kvtile_gen_params *p)
{
    memset(p, 0, sizeof *p);
    struct sample_params sp;
    sample_params_default(&sp);
    p->n_predict = 64;
    p->temp = sp.temp;
    p->top_p = sp.top_p;
    p->seed = sp.seed;
    p->stop_at_eos = 1;
}

KVTILE_API int64_t kvtile_generate(kvtile_ctx *c, kvtile_store *s, const int32_t *ids,
                                   int64_t n_prompt, const struct kvtile_gen_params *p,
                                   char *text, size_t cap, struct kvtile_gen_result *r)
{
    struct kvtile_gen_params def;
    if (!p) {
        kvtile_gen_params_default(&def);
        p = &def;
    }
    memset(r, 0, sizeof *r);
    const kvtile_model *km = c->m;
    int64_t from = kvs_n_tokens(s->kv);
    int n_vocab = model_hparams(km->m)->n_vocab;
    if (from >= n_prompt || p->n_predict < 0 || p->n_stop < 0 ||
        s->tile_tokens != c->mp.tile_tokens)
        return -EINVAL;
    for (int64_t i = 0; i < n_prompt; i++)
        if (ids[i] < 0 || ids[i] >= n_vocab) return -EINVAL;
    int32_t *all = malloc((size_t)(n_prompt + p->n_predict) * sizeof *all);
    if (!all) return -ENOMEM;
    memcpy(all, ids, (size_t)n_prompt * sizeof *all);
    int32_t eos = tok_eos(km->tk);
    struct gen_params gp;
    gen_params_default(&gp);
    gp.n_predict = p->n_predict;
    gp.n_batch = c->mp.n_batch;
    gp.sample.temp = p->temp;
    gp.sample.top_p = p->top_p;
    gp.sample.seed = p->seed;
    gp.stop_ids = &eos;
    gp.n_stop_ids = p->stop_at_eos && eos >= 0;
    gp.stop_strs = p->stop;
    gp.n_stop_strs = p->n_stop;
    gp.rope = &c->rp;
    gp.grow = c->grow;
    gp.exact = c->exact;
    gp.on_token = p->on_token;
    gp.user = p->user;
    gen *g = NULL;
    int64_t rc = gen_create(km->m, km->tk, &g);
    struct gen_result gr;
    if (rc >= 0) rc = gen_run(g, c->mc, s->kv, all, from, n_prompt, &gp, &gr);
    if (rc >= 0) {
        size_t len;
        const char *t = gen_text(g, &len);
        if (cap) {
            size_t k = len < cap ? len : cap - 1;
            memcpy(text, t, k);
            text[k] = 0;
        }
        r->n_out = gr.n_out;
        r->n_prefill = gr.n_prefill;
        r->finish = gr.finish;
        r->prefill_s = gr.prefill_s;
        r->decode_s = gr.decode_s;
        rc = (int64_t)len;
    }
    gen_free(g);
    free(all);
    return rc;
}
