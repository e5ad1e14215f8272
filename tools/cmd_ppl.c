/* cmd_ppl.c - `kvtile ppl`: perplexity of a long text.
 *
 * Protocol (llama.cpp's llama-perplexity, so numbers compare): the text is
 * tokenized once (BOS first when the model adds one) and cut into
 * non-overlapping windows of n_ctx tokens (the tail is dropped; a text
 * shorter than n_ctx is one window of its own length); each window is
 * evaluated from an empty KV store with its first token replaced by BOS
 * (when the model adds one: Qwen2 files say add_bos_token = false); the logits at positions n/2 .. n-2 are
 * scored against the next tokens (--score all: positions 0 .. n-2);
 * PPL = exp(mean NLL). Positions are prepared for the window's true length.
 * --stride S: sliding windows of n_ctx starting every S tokens; the first
 * is scored as above, each later one only on its last S predictions.
 *
 * --sweep L1,L2,.. --schemes a,b,..: the same protocol for every context
 * length x position scheme, as a table (and --json, --plot FILE.svg).
 *
 * --cache-dir DIR --resume: a journal (DIR/ppl.journal) records the running
 * sums after every batch once the KV tiles are durable (kvs_sync); a
 * resumed run reopens the cache, continues at the last recorded batch the
 * cache still holds, and ends with the same nll_sum as an uninterrupted run.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "base/kvt.h"
#include "engine/generate.h"
#include "engine/score.h"
#include "kvstore/journal.h"
#include "svg.h"



struct ppl_sums {
    double nll_sum, nll2_sum;
    int64_t n_scored;
};

struct ppl_job {
    const struct cli_opts *o;
    model *m;
    tok *tk;
    const int32_t *ids;
    int64_t n_tok, n_ctx, n_windows, stride; /* stride 0: chunks */
    int score_all;
    int64_t score_from;     /* > 0: score positions >= score_from only */
    int grow, exact;        /* positions follow the length evaluated so far */
    int decode;             /* scored positions one token at a time */
    struct rope_params rp;
    int resume;
    const char *text_path;
    /* per-position curve (NULL: off): sums per bucket */
    int64_t bucket;
    int64_t sweep_tokens;   /* sweep: tokens per length (0: the whole text) */
    double *curve_nll;
    int64_t *curve_n;
};

struct ppl_result {
    struct ppl_sums s;
    struct attn_stats att;  /* decode-step reads (--decode) */
    int64_t n_eval;
    double secs;
    int resumed_from;       /* window index a resumed run started in, -1 */
    int64_t cache_peak_bytes, cache_end_bytes; /* largest ever, at the end */
};

/* ---- evaluation (engine/score.h) -----------------------------------------
 *
 * The journal is DIR/ppl.journal, the cache DIR/ppl.kvt (score_run). */

static void score_job_of(const struct ppl_job *j, struct score_job *sj)
{
    const struct cli_opts *o = j->o;
    *sj = (struct score_job){
        .m = j->m, .ids = j->ids, .n_tok = j->n_tok, .n_ctx = j->n_ctx,
        .n_windows = j->n_windows, .stride = j->stride, .score_all = j->score_all,
        .score_from = j->score_from,
        .bos = tok_add_bos(j->tk) ? tok_bos(j->tk) : -1, /* as llama-perplexity */
        .n_batch = o->n_batch, .grow = j->grow, .exact = j->exact, .decode = j->decode,
        .rp = j->rp, .tile_tokens = o->tile_tokens, .cache_type = o->cache_type,
        .codec = o->codec, .se_group = o->se_group, .se_window = o->se_window,
        .rotate_k_on_write = o->rotate_k_on_write, .sel = o->sel, .bucket = j->bucket,
        .curve_nll = j->curve_nll, .curve_n = j->curve_n,
    };
}

/* First scored position of window w. */
static int64_t window_first(const struct ppl_job *j, int64_t w)
{
    struct score_job sj;
    score_job_of(j, &sj);
    return score_first(&sj, w);
}

static int ppl_progress(void *arg, const struct score_progress *p)
{
    char extra[64];
    snprintf(extra, sizeof extra, "ppl %.4f",
             p->s.n_scored ? exp(p->s.nll_sum / (double)p->s.n_scored) : 0.0);
    cli_progress(arg, p->window, p->n_windows, p->n_eval, extra);
    return 0;
}

static void ppl_run(struct ppl_job *j, struct ppl_result *res)
{
    const struct cli_opts *o = j->o;
    struct cli_opts oo = *o;
    if (oo.n_batch > j->n_ctx) oo.n_batch = (int)j->n_ctx;
    struct score_job sj;
    score_job_of(j, &sj);
    struct cli_progress pr;
    cli_progress_start(&pr, o->quiet || o->json, "windows");
    sj.progress = ppl_progress;
    sj.arg = &pr;

    jnl_file *jr = NULL;
    char jpath[8192] = "";
    int reopen = 0;
    if (o->cache_dir) {
        char key[2048], cpath[8192];
        score_journal_key(&sj, key, sizeof key);
        cli_mkdir(o->cache_dir);
        snprintf(jpath, sizeof jpath, "%s/ppl.journal", o->cache_dir);
        jr = cli_journal_open(jpath, key, j->resume, "model, text or options");
        /* (a record that is not a score record: score_run says which) */
        int need = score_journal_needs_cache(jr, j->n_ctx) > 0;
        snprintf(cpath, sizeof cpath, "%s/ppl.kvt", o->cache_dir);
        reopen = need && o->kv_backing == KVS_DISK && access(cpath, F_OK) == 0;
    } else if (j->resume) {
        cli_die("--resume needs --cache-dir DIR (where the journal and the KV cache live)");
    }
    struct cli_kv ck;
    cli_kv_open(o, j->m, "ppl.kvt", reopen ? 2 : 0, &ck); /* damaged: start over */
    const char *kvname = ck.path[0] ? ck.path : "KV store";
    model_ctx *mc = cli_model_ctx(&oo, j->m);

    memset(res, 0, sizeof *res);
    struct score_result sr;
    double t0 = kvt_now_s();
    int rc = score_run(&sj, mc, ck.kv, jr, &sr);
    if (rc == KVT_EFORMAT && sr.err_at == SCORE_AT_JOURNAL) {
        if (sr.bad_record >= 0)
            cli_die("%s: record %lld is not a ppl record; run without --resume to start over",
                    jpath, (long long)sr.bad_record + 1);
        cli_die("%s: no start record for window %d; run without --resume", jpath, sr.resumed_from);
    }
    if (rc < 0)
        cli_die("%s: %s%s", sr.err_at == SCORE_AT_POSITIONS ? o->model_path
                            : sr.err_at == SCORE_AT_JOURNAL ? jpath : kvname,
                sr.err_at == SCORE_AT_POSITIONS ? "positions: " : "", kvt_strerror(rc));
    cli_progress(&pr, j->n_windows, j->n_windows, sr.n_eval, NULL);
    cli_progress_end(&pr);
    res->secs = kvt_now_s() - t0;
    res->s = (struct ppl_sums){ sr.s.nll_sum, sr.s.nll2_sum, sr.s.n_scored };
    res->n_eval = sr.n_eval;
    res->resumed_from = sr.resumed_from;
    kvs_file_bytes(ck.kv, &res->cache_peak_bytes);
    res->cache_end_bytes = kvs_file_bytes(ck.kv, NULL);
    jnl_close(jr);
    cli_kv_close(&ck);
    model_ctx_attn_stats(mc, &res->att);
    model_ctx_free(mc);
}

static void ppl_stats(const struct ppl_sums *s, double *ppl, double *err)
{
    score_stats(&(struct score_sums){ s->nll_sum, s->nll2_sum, s->n_scored }, ppl, err);
}

/* ---- sweep -------------------------------------------------------------- */

enum { SCHEME_SE = ROPE_NSCHEMES }; /* self-extend: plain RoPE + grouping */

/* Positions for scheme SCH at context CTX: the factor is the extension
 * ratio ctx / original context (at least 1), unless --rope-scale fixes it. */
static int sweep_setup(const struct cli_opts *o, const model *m, int sch, int64_t ctx,
                       struct rope_params *rp, struct cli_opts *oo, const char **why)
{
    struct cli_opts base = *o;
    base.rope_scaling = NULL;
    base.rope_scale = -1;
    cli_rope_params(&base, m, rp);
    int64_t orig = rp->orig_ctx > 0 ? rp->orig_ctx : model_hparams(m)->n_ctx_train;
    double s = o->rope_scale > 0 ? o->rope_scale : (double)ctx / (double)orig;
    if (s < 1) s = 1;
    *oo = *o;
    oo->se_group = oo->se_window = 0;
    *why = NULL;
    if (sch == SCHEME_SE) {
        rp->scheme = ROPE_NONE;
        rp->have_factors = 0;
        rp->attn_factor = 0;
        if (ctx > orig) {
            int w = o->se_window > 0 ? o->se_window : (int)(orig / 2);
            int g = o->se_group > 0 ? o->se_group
                                    : (int)((ctx - w + (orig - w) - 1) / (orig - w));
            oo->se_group = g < 2 ? 2 : g;
            oo->se_window = w;
        }
        return 0;
    }
    if (sch == ROPE_LONGROPE && !rp->have_factors) {
        *why = "no LongRoPE factors (give --longrope-factors FILE)";
        return -1;
    }
    if (sch != ROPE_LONGROPE) {
        rp->have_factors = 0;
        if (rp->scheme != sch) rp->attn_factor = 0; /* the file's belongs to its scheme */
    }
    rp->scheme = sch;
    rp->orig_ctx = orig;
    if (sch == ROPE_DYN_NTK) rp->scale = 1.0; /* the length decides */
    else if (sch != ROPE_LONGROPE) rp->scale = s;
    else if (rp->scale <= 1.0) rp->scale = s;
    return 0;
}

static int parse_list(const char *s, char out[][32], int max)
{
    int n = 0;
    while (*s && n < max) {
        size_t len = strcspn(s, ",");
        if (len == 0 || len >= 32) cli_die("bad list '%s'", s);
        memcpy(out[n], s, len);
        out[n][len] = 0;
        n++;
        s += len;
        if (*s == ',') s++;
    }
    return n;
}

static void run_sweep(struct ppl_job *j, const char *sweep, const char *schemes, const char *plot)
{
    char ctxs_s[32][32], sch_s[16][32];
    int n_ctx = parse_list(sweep, ctxs_s, 32);
    int n_sch = parse_list(schemes ? schemes : "none,linear,ntk,yarn,longrope,self-extend", sch_s, 16);
    int sch[16];
    double x[32];
    for (int i = 0; i < n_sch; i++) {
        sch[i] = !strcmp(sch_s[i], "self-extend") ? SCHEME_SE : rope_scheme_parse(sch_s[i]);
        if (sch[i] < 0) cli_die("--schemes: unknown scheme '%s'", sch_s[i]);
    }
    for (int c = 0; c < n_ctx; c++) x[c] = (double)cli_parse_count("--sweep", ctxs_s[c]);
    double *ppl = malloc(sizeof(double) * (size_t)(n_ctx * n_sch));
    if (!ppl) cli_die("out of memory");
    const struct cli_opts *o = j->o;
    if (o->json) {
        printf("{");
        cli_json_cpu(stdout);
        printf("\"sweep\": [");
    }
    else {
        printf("%-8s", "ctx");
        for (int i = 0; i < n_sch; i++) printf(" %12s", sch_s[i]);
        printf("\n");
    }
    int first_json = 1;
    for (int c = 0; c < n_ctx; c++) {
        int64_t ctx = (int64_t)x[c];
        if (!o->json) { printf("%-8lld", (long long)ctx); fflush(stdout); }
        for (int i = 0; i < n_sch; i++) {
            struct cli_opts oo;
            const char *why;
            struct ppl_job jj = *j;
            double *v = &ppl[c * n_sch + i];
            *v = NAN;
            if (sweep_setup(o, j->m, sch[i], ctx, &jj.rp, &oo, &why) < 0) {
                if (!o->json) printf(" %12s", "n/a");
                else {
                    printf("%s{\"ctx\": %lld, \"scheme\": \"%s\", \"ppl\": null, \"note\": ", first_json ? "" : ", ", (long long)ctx, sch_s[i]);
                    cli_json_str(stdout, why);
                    printf("}");
                    first_json = 0;
                }
                fflush(stdout);
                continue;
            }
            jj.o = &oo;
            jj.n_ctx = ctx > j->n_tok ? j->n_tok : ctx;
            jj.n_windows = score_count_windows(j->n_tok, jj.n_ctx, 0);
            if (j->n_windows > 0 && j->n_windows < jj.n_windows) jj.n_windows = j->n_windows;
            if (j->sweep_tokens > 0) {
                int64_t nw = j->sweep_tokens / jj.n_ctx;
                jj.n_windows = KVT_MIN(jj.n_windows, KVT_MAX(nw, (int64_t)1));
            }
            struct ppl_result r;
            ppl_run(&jj, &r);
            double p, e;
            ppl_stats(&r.s, &p, &e);
            *v = p;
            if (o->json) {
                printf("%s{\"ctx\": %lld, \"scheme\": \"%s\", \"ppl\": %.6f, \"ppl_stderr\": %.6f, "
                       "\"nll_sum\": %.17g, \"n_scored\": %lld, \"n_chunks\": %lld, \"scale\": %.6g, "
                       "\"self_extend\": \"%d:%d\", ",
                       first_json ? "" : ", ", (long long)ctx, sch_s[i], p, e, r.s.nll_sum,
                       (long long)r.s.n_scored, (long long)jj.n_windows, jj.rp.scale,
                       oo.se_group, oo.se_window);
                cli_json_io(stdout);
                printf("}");
                first_json = 0;
            } else {
                printf(" %12.4f", p);
            }
            fflush(stdout);
        }
        if (!o->json) printf("\n");
    }
    if (o->json) printf("]}\n");
    if (plot) {
        struct svg_series ser[16];
        for (int i = 0; i < n_sch; i++) {
            ser[i].name = sch_s[i];
            double *col = malloc(sizeof(double) * (size_t)n_ctx);
            if (!col) cli_die("out of memory");
            for (int c = 0; c < n_ctx; c++) col[c] = ppl[c * n_sch + i];
            ser[i].y = col;
        }
        char title[256];
        snprintf(title, sizeof title, "Perplexity by context length (%s)", j->text_path);
        int rc = svg_line_plot(plot, title, "context length (tokens)", "perplexity", x, n_ctx, ser, n_sch, 1);
        if (rc < 0) cli_die("%s: %s", plot, kvt_strerror(rc));
        for (int i = 0; i < n_sch; i++) free((void *)ser[i].y);
    }
    free(ppl);
}

/* ---- --attend-sweep: one prefix, teacher-forced decode per policy ------- */

/* Window 0 only: its unscored prefix is evaluated once (batches, exact);
 * then for each policy the scored positions are decoded one token at a
 * time from that prefix (the store cut back to it between policies), as
 * --decode --attend P would, with the same operations in the same order.
 * If the first policy is "all", every later one is also compared with it
 * token by token: the mean KL divergence KL(exact || policy) of the next-
 * token distributions (nats) and how often both rank the same token first. */

/* log softmax of logits into lp (n); @return the argmax. */
static int log_softmax(const float *logits, int n, float *lp)
{
    int best = 0;
    for (int i = 1; i < n; i++) best = logits[i] > logits[best] ? i : best;
    double sum = 0;
    for (int i = 0; i < n; i++) sum += exp((double)logits[i] - logits[best]);
    double lse = logits[best] + log(sum);
    for (int i = 0; i < n; i++) lp[i] = (float)(logits[i] - lse);
    return best;
}
static void run_attend_sweep(struct ppl_job *j, const char *list, const char *plot)
{
    const struct cli_opts *o = j->o;
    const struct model_hparams *hp = model_hparams(j->m);
    int n_vocab = hp->n_vocab, rc;
    int64_t n_ctx = j->n_ctx, first = window_first(j, 0);
    if (first < 1 || first > n_ctx - 2) cli_die("--attend-sweep: nothing to decode (see --score-from)");
    struct sel_policy pol[16];
    int n_pol = 0;
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *sv = NULL, *t = strtok_r(buf, ";", &sv); t; t = strtok_r(NULL, ";", &sv)) {
        if (n_pol == 16) cli_die("--attend-sweep: at most 16 policies");
        if (sel_parse(t, &pol[n_pol++]) < 0) cli_die("--attend-sweep: bad policy '%s'", t);
    }
    if (n_pol == 0) cli_die("--attend-sweep: empty list");
    struct cli_opts oo = *o;
    if (oo.n_batch > n_ctx) oo.n_batch = (int)n_ctx;
    struct cli_kv ck;
    cli_kv_open(o, j->m, "ppl.kvt", 0, &ck);
    const char *kvname = ck.path[0] ? ck.path : "KV store";
    int32_t *win = malloc((size_t)n_ctx * sizeof *win);
    float *logits = malloc((size_t)n_vocab * sizeof *logits);
    float *lp = malloc((size_t)n_vocab * sizeof *lp);
    int64_t n_steps = n_ctx - 1 - first;
    int compare = !pol[0].on;
    float *ref = compare ? malloc((size_t)n_steps * (size_t)n_vocab * sizeof *ref) : NULL;
    int *ref_top = compare ? malloc((size_t)n_steps * sizeof *ref_top) : NULL;
    if (!win || !logits || !lp || (compare && (!ref || !ref_top))) cli_die("out of memory");
    memcpy(win, j->ids, (size_t)n_ctx * sizeof *win);
    if (tok_bos(j->tk) >= 0) win[0] = tok_bos(j->tk);
    oo.sel.on = 0;
    model_ctx *mc = cli_model_ctx(&oo, j->m);
    if ((rc = model_ctx_set_rope(mc, &j->rp, n_ctx)) < 0)
        cli_die("%s: positions: %s", o->model_path, kvt_strerror(rc));
    double t0 = kvt_now_s();
    struct gen_prefill_params pp = { .n_batch = oo.n_batch, .logits = GEN_LOGITS_NONE };
    if ((rc = gen_prefill(mc, ck.kv, win, 0, first, &pp)) < 0)
        cli_die("%s: %s", kvname, kvt_strerror(rc));
    model_ctx_free(mc);
    double t_prefix = kvt_now_s() - t0;
    double ppl_v[16], frac[16], x[16], exact = NAN;
    if (o->json) printf("{\"n_ctx\": %lld, \"first\": %lld, \"prefix_seconds\": %.3f, \"runs\": [",
                        (long long)n_ctx, (long long)first, t_prefix);
    else printf("prefix of %lld tokens in %.1f s; %lld decode steps per policy\n%-36s %10s %9s %12s %10s %8s%s\n",
                (long long)first, t_prefix, (long long)(n_ctx - 1 - first), "attend",
                "PPL", "vs exact", "tiles/token", "fraction", "s",
                compare ? "  KL nats    top1=" : "");
    for (int pi = 0; pi < n_pol; pi++) {
        if ((rc = kvs_truncate(ck.kv, first)) < 0) cli_die("%s: %s", kvname, kvt_strerror(rc));
        oo.sel = pol[pi];
        mc = cli_model_ctx(&oo, j->m);
        if ((rc = model_ctx_set_rope(mc, &j->rp, n_ctx)) < 0)
            cli_die("%s: positions: %s", o->model_path, kvt_strerror(rc));
        struct ppl_sums sm = { 0 };
        double kl = 0;
        int64_t same_top = 0;
        double t1 = kvt_now_s();
        for (int64_t pos = first; pos <= n_ctx - 2; pos++) {
            if ((rc = model_eval_rows(mc, ck.kv, win + pos, 1, pos, logits, 0)) < 0)
                cli_die("%s: %s", kvname, kvt_strerror(rc));
            if (compare) {
                size_t at = (size_t)(pos - first);
                float *r = ref + at * (size_t)n_vocab;
                int top = log_softmax(logits, n_vocab, pi == 0 ? r : lp);
                if (pi == 0) {
                    ref_top[at] = top;
                } else {
                    for (int i = 0; i < n_vocab; i++) kl += exp((double)r[i]) * ((double)r[i] - lp[i]);
                    same_top += top == ref_top[at];
                }
            }
            double v = score_nll(logits, n_vocab, win[pos + 1]);
            sm.nll_sum += v;
            sm.nll2_sum += v * v;
            sm.n_scored++;
        }
        double secs = kvt_now_s() - t1, err;
        ppl_stats(&sm, &ppl_v[pi], &err);
        struct attn_stats st;
        model_ctx_attn_stats(mc, &st);
        model_ctx_free(mc);
        frac[pi] = st.tiles ? (double)st.tiles_read / (double)st.tiles : 0.0;
        x[pi] = pol[pi].on ? 100.0 * frac[pi] : 100.0;
        if (!pol[pi].on && isnan(exact)) exact = ppl_v[pi];
        char spec[128];
        sel_format(&pol[pi], spec, sizeof spec);
        double steps = (double)st.steps / hp->n_layer;
        if (o->json) {
            printf("%s{\"ppl\": %.6f, \"ppl_stderr\": %.6f, \"nll_sum\": %.17g, \"n_scored\": %lld, "
                   "\"seconds\": %.3f", pi ? ", " : "", ppl_v[pi], err, sm.nll_sum,
                   (long long)sm.n_scored, secs);
            if (compare && pi > 0)
                printf(", \"kl_vs_exact\": %.6f, \"same_top1\": %.4f", kl / (double)n_steps,
                       (double)same_top / (double)n_steps);
            cli_json_attend(stdout, &oo, j->m, &st);
            printf("}");
        } else {
            printf("%-36s %10.4f %+8.2f%% %12.1f %10.4f %8.1f", spec, ppl_v[pi],
                   isnan(exact) ? 0.0 : 100.0 * (ppl_v[pi] / exact - 1),
                   (double)st.tiles_read / (steps > 0 ? steps : 1), frac[pi], secs);
            if (compare && pi > 0)
                printf(" %8.4f %7.1f%%", kl / (double)n_steps, 100.0 * (double)same_top / (double)n_steps);
            printf("\n");
        }
        fflush(stdout);
    }
    if (o->json) printf("]}\n");
    if (plot) {
        double ex[16];
        for (int i = 0; i < n_pol; i++) ex[i] = exact;
        struct svg_series ser[2] = { { "selected tiles", ppl_v }, { "exact (every tile)", ex } };
        char title[256];
        snprintf(title, sizeof title, "Teacher-forced decode after %lld tokens (%s)",
                 (long long)first, j->text_path);
        rc = svg_line_plot(plot, title, "tiles read (% of the cache)", "perplexity", x, n_pol,
                           ser, isnan(exact) ? 1 : 2, 1);
        if (rc < 0) cli_die("%s: %s", plot, kvt_strerror(rc));
    }
    free(win);
    free(logits);
    free(lp);
    free(ref);
    free(ref_top);
    cli_kv_close(&ck);
}

/* ---- command ------------------------------------------------------------ */

static const char *const ppl_score_names[] = { "half", "all", NULL };

int cmd_ppl(int argc, char **argv)
{
    struct cli_opts o;
    cli_opts_default(&o);
    const char *file = NULL, *sweep = NULL, *schemes = NULL, *plot = NULL, *curve = NULL;
    const char *attend_sweep = NULL;
    int64_t max_chunks = -1, stride = 0, bucket = 256, sweep_tokens = 0;
    int score_all = 0, resume = 0, grow = 0, exact = 0, decode = 0;
    int64_t score_from = 0;
    struct opt tab[] = {
        OPT_STR("--file", "-f", "FILE", &file, "text to score (UTF-8)"),
        OPT_I64("--ctx", "-c", "N", &o.n_ctx, 2, 1e12, "tokens per window", .def = "the model's context"),
        OPT_I64("--chunks", NULL, "K", &max_chunks, 0, 1e12, "score only the first K windows",
                .def = "all"),
        OPT_CHOICE("--score", NULL, &score_all, ppl_score_names,
                   "score the second half of each window (as llama-perplexity)\n"
                   "or every token after the first"),
        OPT_I64("--stride", NULL, "S", &stride, 0, 1e12, "sliding windows every S tokens (scores the last S)",
                .def = "none"),
        OPT_I64("--score-from", NULL, "P", &score_from, 0, 1e12, "score only positions >= P of each window"),
        OPT_FLAG("--grow-positions", NULL, &grow,
                 "positions follow the length evaluated so far (batch by\n"
                 "batch; --batch 1 is token by token) instead of the\n"
                 "window's length: LongRoPE switches to long factors\n"
                 "when the window passes the original context"),
        OPT_FLAG("--longrope-exact", NULL, &exact,
                 "re-evaluate the prefix at a switch (implies --grow-positions)"),
        OPT_STR("--curve", NULL, "FILE", &curve, "per-position NLL curve (TSV: position bucket, tokens, ppl)"),
        OPT_I64("--bucket", NULL, "N", &bucket, 1, 1e12, "curve bucket size in positions"),
        OPT_FLAG("--resume", NULL, &resume, "continue an interrupted run (needs --cache-dir)"),
        OPT_STR("--sweep", NULL, "L1,L2,...", &sweep, "context lengths to sweep"),
        OPT_STR("--schemes", NULL, "S1,S2,...", &schemes,
                "position schemes for the sweep: none, linear, ntk,\n"
                "dynamic-ntk, yarn, longrope, self-extend"),
        OPT_I64("--sweep-tokens", NULL, "N", &sweep_tokens, 0, 1e12,
                "with --sweep: about N tokens per length (whole windows)", .def = "all"),
        OPT_FLAG("--decode", NULL, &decode,
                 "teacher-forced decode: the unscored prefix in batches,\n"
                 "every scored position one token at a time (the steps\n"
                 "--attend selects tiles for)"),
        OPT_STR("--attend-sweep", NULL, "'P1;P2;..'", &attend_sweep,
                "--decode of the first window for each --attend policy\n"
                "from one evaluation of its prefix: a table, --json,\n"
                "--plot FILE.svg (perplexity by tiles read)"),
        OPT_STR("--plot", NULL, "FILE.svg", &plot,
                "with --sweep: perplexity vs context length; with\n"
                "--attend-sweep: perplexity vs tiles read"),
        CLI_OPTS_MODEL_RUN(&o),
        OPT_END(),
    };
    const char *usage = "MODEL -f FILE [options]";
    if (opt_parse("ppl", usage, tab, argc, argv, &o.model_path, 1) < 1 || !file)
        opt_usage("ppl", usage);
    if (exact) grow = 1;
    if (sweep && (resume || curve || stride || grow)) cli_die("--sweep runs without --resume, --curve, --stride or --grow-positions");
    if (grow && resume) cli_die("--grow-positions runs without --resume");
    if (o.sel.on && !decode)
        cli_die("ppl: --attend selects tiles for decode steps; add --decode (scored tokens one at a time)");
    if (sweep && decode) cli_die("--sweep runs without --decode");

    model *m;
    tok *tk;
    cli_load(o.model_path, &m, &tk);
    const struct model_hparams *hp = model_hparams(m);
    if (o.n_ctx == 0) o.n_ctx = hp->n_ctx_train;
    if (o.n_ctx < 2) cli_die("-c: a window needs at least 2 tokens");

    size_t len;
    char *text = cli_read_file(file, &len);
    int64_t n_tok;
    int32_t *ids = cli_tokenize(tk, file, text, len, tok_add_bos(tk), &n_tok);
    free(text);
    if (n_tok < 2) cli_die("%s: only %lld tokens", file, (long long)n_tok);

    struct ppl_job j = { .o = &o, .m = m, .tk = tk, .ids = ids, .n_tok = n_tok,
                         .score_all = score_all, .resume = resume, .text_path = file,
                         .stride = stride, .bucket = bucket, .grow = grow, .exact = exact,
                         .score_from = score_from, .decode = decode,
                         .sweep_tokens = sweep_tokens };
    j.n_ctx = o.n_ctx > n_tok ? n_tok : o.n_ctx; /* one window: the whole text */
    if (stride && (stride >= j.n_ctx || stride < 1)) cli_die("--stride must be in 1 .. n_ctx-1");
    j.n_windows = score_count_windows(n_tok, j.n_ctx, stride);
    if (max_chunks >= 0 && max_chunks < j.n_windows) j.n_windows = max_chunks;
    if (j.n_windows < 1) cli_die("%s: no window to score", file);

    if (sweep) {
        if (max_chunks < 0) j.n_windows = 0; /* each length: all its windows */
        run_sweep(&j, sweep, schemes, plot);
        free(ids);
        tok_free(tk);
        model_close(m);
        return 0;
    }
    cli_rope_params(&o, m, &j.rp);
    if (attend_sweep) {
        if (resume || curve || stride || grow || o.sel.on)
            cli_die("--attend-sweep runs without --resume, --curve, --stride, --grow-positions or --attend");
        run_attend_sweep(&j, attend_sweep, plot);
        free(ids);
        tok_free(tk);
        model_close(m);
        return 0;
    }
    if (curve) {
        int64_t nb = (j.n_ctx + bucket - 1) / bucket;
        j.curve_nll = calloc((size_t)nb, sizeof *j.curve_nll);
        j.curve_n = calloc((size_t)nb, sizeof *j.curve_n);
        if (!j.curve_nll || !j.curve_n) cli_die("out of memory");
    }
    struct ppl_result r;
    ppl_run(&j, &r);
    double ppl, err;
    ppl_stats(&r.s, &ppl, &err);
    double tps = r.secs > 0 ? (double)r.n_eval / r.secs : 0.0;
    int64_t rss = kvt_peak_rss_bytes();
    if (curve) {
        struct cli_out out;
        FILE *f = cli_out_open(&out, curve);
        fprintf(f, "position\ttokens\tppl\n");
        for (int64_t b = 0; b * bucket < j.n_ctx; b++)
            if (j.curve_n[b])
                fprintf(f, "%lld\t%lld\t%.6f\n", (long long)(b * bucket), (long long)j.curve_n[b],
                        exp(j.curve_nll[b] / (double)j.curve_n[b]));
        cli_out_commit(&out);
        if (resume && r.resumed_from >= 0)
            cli_warn("%s: the curve covers only the part evaluated after resuming", curve);
    }
    if (o.json) {
        printf("{");
        cli_json_cpu(stdout);
        printf("\"ppl\": %.6f, \"ppl_stderr\": %.6f, \"nll_sum\": %.17g, "
               "\"n_scored\": %lld, \"n_ctx\": %lld, \"n_chunks\": %lld, "
               "\"n_tokens\": %lld, \"tokens_per_s\": %.1f, \"seconds\": %.3f, "
               "\"peak_rss_bytes\": %lld, \"rope\": \"%s\", \"resumed_from\": %d, "
               "\"cache_peak_bytes\": %lld, \"cache_end_bytes\": %lld, ",
               ppl, err, r.s.nll_sum, (long long)r.s.n_scored, (long long)j.n_ctx,
               (long long)j.n_windows, (long long)n_tok, tps, r.secs, (long long)rss,
               rope_scheme_name(j.rp.scheme), r.resumed_from, (long long)r.cache_peak_bytes,
               (long long)r.cache_end_bytes);
        cli_json_io(stdout);
        cli_json_attend(stdout, &o, m, &r.att);
        printf("}\n");
    } else {
        printf("%lld tokens, %lld windows of %lld, %lld scored, %.1f tokens/s, peak RSS %.1f MiB\n",
               (long long)n_tok, (long long)j.n_windows, (long long)j.n_ctx,
               (long long)r.s.n_scored, tps, (double)rss / 1048576.0);
        printf("PPL = %.4f +/- %.5f\n", ppl, err);
    }
    free(j.curve_nll);
    free(j.curve_n);
    free(ids);
    tok_free(tk);
    model_close(m);
    return 0;
}
