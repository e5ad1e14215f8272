/* score.c - the windowed NLL loop (score.h). */
#include "engine/score.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "base/kvt.h"
#include "engine/generate.h"

double score_nll(const float *logits, int n_vocab, int target)
{
    float mx = logits[0];
    for (int i = 1; i < n_vocab; i++) mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0.0;
    for (int i = 0; i < n_vocab; i++) sum += exp((double)(logits[i] - mx));
    return -((double)(logits[target] - mx) - log(sum));
}

void score_stats(const struct score_sums *s, double *ppl, double *err)
{
    double mean = s->nll_sum / (double)s->n_scored;
    double var = s->nll2_sum / (double)s->n_scored - mean * mean;
    *ppl = exp(mean);
    *err = s->n_scored > 1 && var > 0 ? sqrt(var / (double)(s->n_scored - 1)) * *ppl : 0.0;
}

int score_buf_init(struct score_buf *b, int64_t n_ctx, int n_batch, int n_vocab)
{
    KVT_ASSERT(n_ctx > 0 && n_batch > 0 && n_vocab > 0);
    memset(b, 0, sizeof *b);
    b->tokens = malloc((size_t)n_ctx * sizeof *b->tokens);
    b->logits = malloc((size_t)n_batch * (size_t)n_vocab * sizeof *b->logits);
    if (!b->tokens || !b->logits) {
        score_buf_free(b);
        return -ENOMEM;
    }
    b->n_ctx = n_ctx;
    b->n_batch = n_batch;
    b->n_vocab = n_vocab;
    return 0;
}

void score_buf_free(struct score_buf *b)
{
    free(b->tokens);
    free(b->logits);
    memset(b, 0, sizeof *b);
}

int score_window(model_ctx *mc, kvs *kv, const int32_t *ids, int64_t n, int64_t p_begin,
                 const struct score_window_params *p, struct score_buf *buf,
                 struct score_sums *s, int64_t *n_eval)
{
    KVT_ASSERT(n >= 2 && n <= buf->n_ctx);
    KVT_ASSERT(p->n_batch >= 1 && p->n_batch <= buf->n_batch);
    KVT_ASSERT(p_begin >= 0 && p_begin <= n);
    KVT_ASSERT(!p->grow || p->rp);
    int32_t *win = buf->tokens;
    float *logits = buf->logits;
    int n_vocab = buf->n_vocab, rc;
    int64_t first = p->first, evaluated = 0;
    memcpy(win, ids, (size_t)n * sizeof *win);
    if (p->bos >= 0) win[0] = p->bos;
    for (int64_t p0 = p_begin, nb; p0 < n; p0 += nb) {
        nb = KVT_MIN((int64_t)p->n_batch, n - p0);
        if (p->decode) /* the prefix in batches, then decode steps */
            nb = p0 >= first ? 1 : KVT_MIN(nb, first - p0);
        if (p->grow) {
            int changed = model_ctx_set_rope(mc, p->rp, p0 + nb);
            if (changed < 0) return changed;
            if (changed && p->exact && p0 > 0) { /* the prefix again, under the new table */
                struct gen_prefill_params pp = { .n_batch = p->n_batch, .logits = GEN_LOGITS_NONE };
                if ((rc = kvs_truncate(kv, 0)) < 0 || (rc = gen_prefill(mc, kv, win, 0, p0, &pp)) < 0)
                    return rc;
            }
        }
        /* logits only from the first scored position of this batch */
        int from = (int)KVT_MIN(nb, KVT_MAX((int64_t)0, first - p0));
        rc = model_eval_rows(mc, kv, win + p0, (int)nb, p0, from < nb ? logits : NULL, from);
        if (rc < 0) return rc;
        evaluated += nb;
        if (n_eval) *n_eval += nb;
        for (int t = from; t < nb; t++) {
            int64_t pos = p0 + t;
            if (pos > n - 2) continue;
            double v = score_nll(logits + (size_t)(t - from) * (size_t)n_vocab, n_vocab,
                                 win[pos + 1]);
            s->nll_sum += v;
            s->nll2_sum += v * v;
            s->n_scored++;
            if (p->curve_nll) {
                p->curve_nll[pos / p->bucket] += v;
                p->curve_n[pos / p->bucket]++;
            }
        }
        if (p->on_batch && (rc = p->on_batch(p->arg, p0 + nb, s, evaluated)) < 0) return rc;
    }
    return 0;
}

/* ---- a whole text -------------------------------------------------------- */

int64_t score_count_windows(int64_t n_tok, int64_t n_ctx, int64_t stride)
{
    if (!stride) return n_tok / n_ctx;
    return n_tok < n_ctx ? 0 : (n_tok - n_ctx) / stride + 1;
}

void score_journal_key(const struct score_job *j, char *key, size_t cap)
{
    uint8_t fp[32];
    model_fingerprint(j->m, fp);
    uint64_t th = XXH3_64bits(j->ids, (size_t)j->n_tok * sizeof *j->ids);
    int n = snprintf(key, cap, "kvtile-ppl 2 cache=ppl.kvt model=");
    for (int i = 0; i < 32; i++) n += snprintf(key + n, cap - (size_t)n, "%02x", fp[i]);
    const struct rope_params *rp = &j->rp;
    snprintf(key + n, cap - (size_t)n,
             " text=%016llx n_tok=%lld n_ctx=%lld windows=%lld stride=%lld score=%d batch=%d "
             "tile=%d type=%d codec=%d rope=%d scale=%.17g base=%.17g beta=%.17g/%.17g "
             "factors=%016llx se=%d:%d from=%lld kr=%d",
             (unsigned long long)th, (long long)j->n_tok, (long long)j->n_ctx,
             (long long)j->n_windows, (long long)j->stride, j->score_all, j->n_batch,
             j->tile_tokens, j->cache_type, j->codec, rp->scheme, rp->scale, rp->freq_base,
             rp->beta_fast, rp->beta_slow,
             (unsigned long long)(rp->have_factors
                                      ? XXH3_64bits(rp->factors_long, sizeof rp->factors_long) ^
                                            XXH3_64bits(rp->factors_short, sizeof rp->factors_short)
                                      : 0),
             j->se_group, j->se_window, (long long)j->score_from, j->rotate_k_on_write);
    if (j->decode) { /* only then: older journals keep their keys */
        char spec[128];
        sel_format(&j->sel, spec, sizeof spec);
        size_t at = strlen(key);
        snprintf(key + at, cap - at, " decode=1 attend=%s", spec);
    }
}

struct jline { int64_t win, pos; struct score_sums s; };

static int journal_parse(const char *rec, struct jline *r)
{
    long long w, p, ns;
    char tail;
    if (sscanf(rec, "w %lld p %lld s %lg %lg %lld%c", &w, &p, &r->s.nll_sum, &r->s.nll2_sum,
               &ns, &tail) != 5 || w < 0 || p < 0 || ns < 0)
        return KVT_EFORMAT;
    r->win = w;
    r->pos = p;
    r->s.n_scored = ns;
    return 0;
}

int score_journal_needs_cache(const jnl_file *j, int64_t n_ctx)
{
    int64_t nl = jnl_count(j);
    if (nl <= 0) return 0;
    struct jline last;
    if (journal_parse(jnl_record(j, nl - 1, NULL), &last) < 0) return KVT_EFORMAT;
    return last.pos < n_ctx;
}

/* The state of one score_run. */
struct run {
    const struct score_job *j;
    kvs *kv;
    jnl_file *jr;
    uint64_t key_hash;
    int64_t w;              /* window being evaluated */
    int64_t n_eval0;        /* tokens evaluated before this window */
    struct score_result *res;
};

/* The cache tag of window W of this run (never 0). */
static uint64_t window_tag(uint64_t key_hash, int64_t w)
{
    uint64_t t = XXH3_64bits_withSeed(&w, sizeof w, key_hash);
    return t ? t : 1;
}

/* Durable record: the KV tiles up to pos are synced first. */
static int journal_put(struct run *r, int64_t pos, const struct score_sums *s)
{
    int rc = kvs_sync(r->kv);
    if (rc < 0) {
        r->res->err_at = SCORE_AT_STORE;
        return rc;
    }
    char rec[256];
    int n = snprintf(rec, sizeof rec, "w %lld p %lld s %.17g %.17g %lld", (long long)r->w,
                     (long long)pos, s->nll_sum, s->nll2_sum, (long long)s->n_scored);
    if ((rc = jnl_append(r->jr, rec, (size_t)n)) < 0) r->res->err_at = SCORE_AT_JOURNAL;
    return rc;
}

static int run_batch(void *arg, int64_t pos, const struct score_sums *s, int64_t n_eval)
{
    struct run *r = arg;
    int rc;
    if (r->jr && (rc = journal_put(r, pos, s)) < 0) return rc;
    if (r->j->progress) {
        struct score_progress pr = { .window = r->w, .n_windows = r->j->n_windows,
                                     .n_eval = r->n_eval0 + n_eval, .s = *s };
        if ((rc = r->j->progress(r->j->arg, &pr)) < 0) {
            r->res->err_at = SCORE_AT_PROGRESS;
            return rc;
        }
    }
    return 0;
}

/* Where a journal says to continue: window *w0 from position *p_start
 * with the sums in res->s. */
static int run_resume(struct run *r, int64_t *w0, int64_t *p_start)
{
    const struct score_job *j = r->j;
    struct score_result *res = r->res;
    int64_t nl = jnl_count(r->jr);
    *w0 = *p_start = 0;
    if (nl <= 0) return 0;
    struct jline *lines = malloc((size_t)nl * sizeof *lines);
    if (!lines) return -ENOMEM;
    for (int64_t i = 0; i < nl; i++)
        if (journal_parse(jnl_record(r->jr, i, NULL), &lines[i]) < 0) {
            free(lines);
            res->bad_record = i;
            res->err_at = SCORE_AT_JOURNAL;
            return KVT_EFORMAT;
        }
    struct jline last = lines[nl - 1];
    res->resumed_from = (int)last.win;
    if (last.pos >= j->n_ctx) { /* that window was finished */
        *w0 = last.win + 1;
        res->s = last.s;
        free(lines);
        return 0;
    }
    *w0 = last.win;
    /* tokens the cache still holds: only keys of window w0 of this run count */
    int64_t have = kvs_tag(r->kv) == window_tag(r->key_hash, *w0) ? kvs_n_tokens(r->kv) : 0;
    /* the latest record of window w0 the cache still covers; the window's
     * start record (pos 0) is written before any other */
    struct jline best = { .win = -1 };
    for (int64_t i = 0; i < nl; i++)
        if (lines[i].win == *w0 && lines[i].pos <= have) best = lines[i];
    free(lines);
    if (best.win != *w0) {
        res->bad_record = -1;
        res->err_at = SCORE_AT_JOURNAL;
        return KVT_EFORMAT;
    }
    *p_start = best.pos;
    res->s = best.s;
    return 0;
}

int64_t score_first(const struct score_job *j, int64_t w)
{
    if (j->score_from > 0) return j->score_from;
    if (j->stride && w > 0) return j->n_ctx - j->stride - 1;
    return j->score_all ? 0 : j->n_ctx / 2;
}

int score_run(const struct score_job *j, model_ctx *mc, kvs *kv, jnl_file *jr,
              struct score_result *res)
{
    KVT_ASSERT(j->n_ctx >= 2 && j->n_ctx <= j->n_tok);
    memset(res, 0, sizeof *res);
    res->resumed_from = -1;
    int64_t n_ctx = j->n_ctx;
    int n_batch = (int)KVT_MIN((int64_t)j->n_batch, n_ctx);
    int rc = model_ctx_set_rope(mc, &j->rp, n_ctx);
    if (rc < 0) {
        res->err_at = SCORE_AT_POSITIONS;
        return rc;
    }
    char key[2048];
    score_journal_key(j, key, sizeof key);
    struct run r = { .j = j, .kv = kv, .jr = jr, .key_hash = XXH3_64bits(key, strlen(key)),
                     .res = res };
    int64_t w0 = 0, p_start = 0;
    if (jr && (rc = run_resume(&r, &w0, &p_start)) < 0) return rc;
    int reopen = p_start > 0; /* continue window w0 from p_start */
    if (reopen && (rc = kvs_truncate(kv, p_start)) < 0) {
        res->err_at = SCORE_AT_STORE;
        return rc;
    }
    struct score_buf buf;
    if ((rc = score_buf_init(&buf, n_ctx, n_batch, model_hparams(j->m)->n_vocab)) < 0) return rc;
    struct score_window_params wp = {
        .bos = j->bos, .n_batch = n_batch, .decode = j->decode, .grow = j->grow,
        .exact = j->exact, .rp = &j->rp, .bucket = j->bucket, .curve_nll = j->curve_nll,
        .curve_n = j->curve_n, .on_batch = run_batch, .arg = &r,
    };
    for (int64_t w = w0; w < j->n_windows && rc >= 0; w++) {
        int64_t p_begin = 0;
        r.w = w;
        r.n_eval0 = res->n_eval;
        if (w == w0 && reopen) {
            p_begin = p_start;
        } else {
            /* an empty cache labelled with this window: the space of the
             * last window is reused */
            if ((rc = kvs_reset(kv, window_tag(r.key_hash, w))) < 0) {
                res->err_at = SCORE_AT_STORE;
                break;
            }
            if (jr && (rc = journal_put(&r, 0, &res->s)) < 0) break;
        }
        wp.first = score_first(j, w);
        int64_t start = j->stride ? w * j->stride : w * n_ctx;
        rc = score_window(mc, kv, j->ids + start, n_ctx, p_begin, &wp, &buf, &res->s,
                          &res->n_eval);
        /* (positions for shorter lengths than the one set above cannot fail) */
        if (rc < 0 && res->err_at == SCORE_AT_NONE) res->err_at = SCORE_AT_STORE;
    }
    score_buf_free(&buf);
    return rc < 0 ? rc : 0;
}
