/* batch_task.c - the per-document tasks of `kvtile batch` (batch.h): the
 * document's tokens through its cache (batch_dcache.c) and the model, and
 * one JSON output line: {"index", "id", ...}.
 *
 * Score: every token after the first scored from an empty cache; the
 * prefill keeps each NLL in the cache's sidecar array and checkpoints.
 * Generate: the document part through the cache, the rest of the prompt
 * and the answer through the engine's generate loop (engine/generate.h),
 * then the cache cut back to the document part. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/kvt.h"
#include "engine/score.h"
#include "tools/batch.h"
#include "tools/batch_prompt.h"

/* ---- output lines -------------------------------------------------------- */

struct line {
    FILE *f;
    char *s;
    size_t n;
};

/* A line in memory, started with {"index":I,"id":ID. */
static FILE *line_open(struct line *l, int64_t index, const char *id)
{
    l->s = NULL;
    l->n = 0;
    l->f = open_memstream(&l->s, &l->n);
    if (!l->f) cli_die("out of memory");
    fprintf(l->f, "{\"index\":%lld,\"id\":", (long long)index);
    if (id) cli_json_str(l->f, id);
    else fputs("null", l->f);
    return l->f;
}

/* The closing brace; @return the line (malloc'ed). */
static char *line_close(struct line *l)
{
    fputc('}', l->f);
    if (fclose(l->f) != 0) cli_die("out of memory");
    return l->s;
}

char *batch_error_line(struct batch *b, int64_t i, const char *id, const char *err)
{
    struct line l;
    FILE *f = line_open(&l, i, id);
    fputs(",\"error\":", f);
    cli_json_str(f, err);
    cli_warn("%s", err);
    b->n_errors++;
    return line_close(&l);
}

/* The run-dependent fields (left out with --no-timings). */
static void timings(const struct batch *b, FILE *f, const struct dcache *dc, int64_t prefill,
                    double prefill_s, double decode_s)
{
    if (b->no_timings) return;
    fprintf(f, ",\"cache_hit\":%s,\"prefill_tokens\":%lld,\"prefill_s\":%.3f,\"decode_s\":%.3f",
            dc->hit ? "true" : "false", (long long)prefill, prefill_s, decode_s);
    fputc(',', f);
    cli_json_io(f);
}

/* ---- prefill through the cache ------------------------------------------- */

struct prefill_state {
    struct batch *b;
    struct dcache *dc;
    const int32_t *ids;
    int64_t n, since;
    struct cli_progress *pr;
};

/* After each chunk: score: its NLLs; a checkpoint every --checkpoint
 * tokens and at the end; progress. */
static int prefill_chunk(void *user, int64_t p0, int c, const float *logits)
{
    struct prefill_state *ps = user;
    struct batch *b = ps->b;
    int V = b->hp->n_vocab;
    b->tok_eval += c;
    if (logits)
        for (int t = 0; t < c && p0 + t < ps->n - 1; t++)
            ps->dc->nll[p0 + t] = score_nll(logits + (size_t)t * V, V, ps->ids[p0 + t + 1]);
    ps->since += c;
    if (ps->since >= b->checkpoint || p0 + c >= ps->n) {
        dcache_checkpoint(ps->dc, logits ? KVT_MIN(p0 + c, ps->n - 1) : 0);
        ps->since = 0;
    }
    cli_progress(ps->pr, b->n_done, b->n_docs, b->tok_eval, NULL);
    return 0;
}

static void set_positions(struct batch *b, int64_t len)
{
    int rc = model_ctx_set_rope(b->mc, &b->rp, len);
    if (rc < 0) cli_die("%s: positions: %s", b->o.model_path, kvt_strerror(rc));
}

/* The document part ids[0, n) through its cache (positions prepared for
 * n): what is not cached is evaluated in chunks from dc->start; score: its
 * NLLs into dc->nll. @return the tokens evaluated. */
static int64_t cached_prefill(struct batch *b, const char *tag, const int32_t *ids, int64_t n,
                              struct dcache *dc, struct cli_progress *pr)
{
    if (n > 0) set_positions(b, n);
    dcache_open(b, tag, ids, n, dc);
    if (dc->hit) {
        b->n_hits++;
        return 0;
    }
    struct prefill_state ps = { b, dc, ids, n, 0, pr };
    struct gen_prefill_params pp = {
        .n_batch = b->chunk, .logits = b->task == TASK_SCORE ? GEN_LOGITS_ALL : GEN_LOGITS_NONE,
        .logits_buf = b->logits, .on_chunk = prefill_chunk, .user = &ps,
    };
    int rc = gen_prefill(b->mc, dc->kv, ids, dc->start, n, &pp);
    if (rc < 0) cli_die("%s: %s", dcache_name(dc), kvt_strerror(rc));
    return n - dc->start;
}

/* ---- score ---------------------------------------------------------------- */

/* "bucket_ppl": scored position p (1 .. n-1) uses nll[p-1]; bucket p / B. */
static void bucket_ppl(FILE *f, const double *nll, int64_t n, int64_t B)
{
    fputs(",\"bucket_ppl\":[", f);
    for (int64_t bk = 0; bk * B <= n - 1; bk++) {
        double bs = 0;
        int64_t cnt = 0;
        for (int64_t p = KVT_MAX(bk * B, (int64_t)1); p < (bk + 1) * B && p <= n - 1; p++) {
            bs += nll[p - 1];
            cnt++;
        }
        if (cnt) fprintf(f, "%s%.6f", bk ? "," : "", exp(bs / (double)cnt));
    }
    fputc(']', f);
}

char *batch_do_score(struct batch *b, int64_t i, struct doc_in *d, struct cli_progress *pr)
{
    int32_t *ids;
    size_t bad = 0;
    int64_t n = batch_tokenize(b, d->text, d->text_len, 1, &ids, &bad);
    char err[8400];
    if (n == KVT_EUTF8 || n < 2) {
        free(ids);
        if (n == KVT_EUTF8)
            snprintf(err, sizeof err, "%s: text is not valid UTF-8 (byte %zu)", d->src, bad);
        else
            snprintf(err, sizeof err, "%s: fewer than 2 tokens", d->src);
        return batch_error_line(b, i, d->id, err);
    }
    double t0 = kvt_now_s();
    struct dcache dc;
    int64_t evaluated = cached_prefill(b, "score", ids, n, &dc, pr);
    double t1 = kvt_now_s();
    double sum = 0;
    for (int64_t p = 0; p < n - 1; p++) sum += dc.nll[p];
    struct line l;
    FILE *f = line_open(&l, i, d->id);
    fprintf(f, ",\"task\":\"score\",\"tokens\":%lld,\"scored\":%lld,\"nll_sum\":%.17g,"
               "\"perplexity\":%.6f,\"bucket\":%lld",
            (long long)n, (long long)(n - 1), sum, exp(sum / (double)(n - 1)), (long long)b->bucket);
    bucket_ppl(f, dc.nll, n, b->bucket);
    timings(b, f, &dc, evaluated, t1 - t0, 0.0);
    dcache_close(&dc);
    free(ids);
    return line_close(&l);
}

/* ---- generate ------------------------------------------------------------- */

/* The rendered prompt's tokens (*ids, n + n_gen entries) and *doc_tokens,
 * the length of their longest prefix shared with the document part's
 * tokenization (at most n - 1). @return n, or < 0 with ERR filled. */
static int64_t prompt_tokens(struct batch *b, const struct doc_in *d, int32_t **ids,
                             int64_t *doc_tokens, char *err, size_t err_cap)
{
    const char *tm = d->tmpl ? d->tmpl : b->tmpl, *q = d->question ? d->question : "";
    size_t cap = tmpl_render_bound(tm, d->text_len, strlen(q)), doc_part;
    char *prompt = malloc(cap);
    if (!prompt) cli_die("out of memory");
    int64_t plen = tmpl_render(tm, d->text, d->text_len, q, strlen(q), prompt, cap, &doc_part);
    KVT_ASSERT(plen >= 0);
    int32_t *dids = NULL;
    size_t bad = 0;
    int64_t n = batch_tokenize(b, prompt, (size_t)plen, 1, ids, &bad);
    int64_t nd = n < 0 ? n : batch_tokenize(b, prompt, doc_part, 1, &dids, &bad);
    free(prompt);
    if (n == KVT_EUTF8 || nd == KVT_EUTF8)
        snprintf(err, err_cap, "%s: text is not valid UTF-8 (byte %zu of the prompt)", d->src, bad);
    else if (n < 1)
        snprintf(err, err_cap, "%s: empty prompt", d->src);
    int64_t D = 0;
    while (n >= 1 && D < nd && D < n - 1 && (*ids)[D] == dids[D]) D++;
    free(dids);
    if (n < 1 || nd < 0) {
        free(*ids);
        return n < 1 ? -1 : nd;
    }
    int32_t *seq = realloc(*ids, (size_t)(n + b->n_gen) * sizeof *seq);
    if (!seq) cli_die("out of memory");
    *ids = seq;
    *doc_tokens = D;
    return n;
}

char *batch_do_generate(struct batch *b, int64_t i, struct doc_in *d, struct cli_progress *pr)
{
    int32_t *ids;
    int64_t D = 0;
    char err[8400];
    int64_t n = prompt_tokens(b, d, &ids, &D, err, sizeof err);
    if (n < 0) return batch_error_line(b, i, d->id, err);

    double t0 = kvt_now_s();
    struct dcache dc;
    int64_t evaluated = cached_prefill(b, "generate", ids, D, &dc, pr);
    double t1 = kvt_now_s();
    /* the question and the answer: positions for prompt + n; document i
     * samples from stream i of the seed; the last token is not evaluated */
    int32_t eos = tok_eos(b->tk);
    struct gen_params gp;
    gen_params_default(&gp);
    gp.n_predict = b->n_gen;
    gp.n_batch = b->chunk;
    gp.sample = b->sample;
    gp.sample.stream = (uint64_t)i;
    gp.stop_ids = &eos;
    gp.n_stop_ids = 1;
    gp.stop_strs = b->stops;
    gp.n_stop_strs = b->n_stops;
    gp.feed_last = 0;
    gp.rope = &b->rp;
    struct gen_result r;
    cli_gen_check(gen_run(b->gen, b->mc, dc.kv, ids, D, n, &gp, &r), &r, b->o.model_path,
                  dcache_name(&dc));
    b->tok_eval += r.n_prefill + r.n_decode;
    double t2 = kvt_now_s();
    int rc;
    if (dc.own && (rc = kvs_truncate(dc.kv, D)) < 0)
        cli_die("%s: %s", dc.path, kvt_strerror(rc));
    static const char *const finish[] = {
        [GEN_FINISH_LENGTH] = "length", [GEN_FINISH_TOKEN] = "eos",
        [GEN_FINISH_STOP] = "stop", [GEN_FINISH_CALLBACK] = "stop",
    };
    /* a decoded piece may end inside a UTF-8 sequence; the JSON string
     * carries the bytes as they are */
    struct line l;
    FILE *f = line_open(&l, i, d->id);
    fputs(",\"task\":\"generate\",\"answer\":", f);
    cli_json_str(f, gen_text(b->gen, NULL));
    fprintf(f, ",\"answer_tokens\":%lld,\"finish\":\"%s\",\"tokens\":%lld,\"doc_tokens\":%lld,"
               "\"question_tokens\":%lld",
            (long long)r.n_out, finish[r.finish], (long long)n, (long long)D, (long long)(n - D));
    if (b->o.sel.on) /* what the decode steps of this answer read */
        cli_json_attend(f, &b->o, b->m, &r.decode_st);
    timings(b, f, &dc, evaluated, t1 - t0, t2 - t1);
    dcache_close(&dc);
    free(ids);
    return line_close(&l);
}
