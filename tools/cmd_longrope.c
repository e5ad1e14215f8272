/* cmd_longrope.c - `kvtile longrope-search`: the LongRoPE paper's
 * evolutionary search (engine/longrope_search.h) run on the model.
 *
 * Fitness: mean NLL over K windows of L tokens of TEXT, each scored by
 * engine/score's score_window, the loop `kvtile ppl MODEL -c L
 * --longrope-factors F --longrope-n-hat N` runs for a chunk (first token
 * replaced by BOS, empty RAM KV store, positions prepared for length L),
 * scoring the llama-perplexity second half (positions L/2 .. L-2) by
 * default or every token after the first with --score all. Windows are spread evenly over the selected token range
 * (--skip, --text-range, --text-before). The magnitude is the paper's
 * sqrt(1 + ln s / ln L_orig) for each target's s (or the file's
 * attn_factor), times --longrope-mscale M if given; --search-mscale
 * searches that multiplier as a gene (LR_MSCALE_MIN..MAX hundredths,
 * seeded at 1). --self-extend G:W searches factors under SelfExtend's
 * grouping (both of its views use the factors).
 *
 * Refinement: --refine R adds up to R rounds of coordinate moves on the
 * best after the iterations (engine/longrope_search.h); they are not part
 * of the journal's key, like --iterations: more rounds continue a search,
 * and a journal with rounds cannot be continued by more iterations (the
 * replay stops at the first round: its recorded state differs).
 *
 * Workers: --workers W model contexts, each with its own RAM store and
 * max(1, threads / W) threads, evaluate a generation's candidates in
 * parallel; the search's decisions do not depend on W.
 *
 * Stages: --target-ctx L is one search; --schedule L1,L2,... runs one per
 * length, each seeded with the previous stage's best scaled to its target
 * (as --from FILE seeds the first), and writes OUT-Lk.* for each.
 *
 * Journal (append-only, one per stage, kvstore/journal.h): a header binding
 * it to the search's configuration, then
 *   eval SET ITER NLL NHAT q0,q1,... [mscale M]  one per computed candidate
 *                                      (%.17g; M = 100 x multiplier, searched only)
 *   iter SET ITER rng HEX64 best NLL   one per finished iteration
 * --resume replays the search from the start taking the NLL of every
 * candidate in the journal instead of evaluating it, and checks each
 * recorded RNG state: an interrupted search ends exactly as an
 * uninterrupted one (more --iterations simply continue it).
 *
 * Output per stage: OUT.factors.txt (longrope_out.h), OUT.log.json (best
 * and median perplexity per iteration), OUT.convergence.svg, OUT.gguf
 * (longrope_out.c says what the GGUF carries; n_hat has no llama.cpp key).
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "longrope_out.h"
#include "kvstore/journal.h"
#include "engine/longrope_search.h"
#include "engine/score.h"
#include "base/kvt.h"

#define LR_MAX_WORKERS 16
#define LR_MAX_STAGES 16
#define LR_MSCALE_MIN 70   /* --search-mscale: multipliers 0.70 .. 1.30 */
#define LR_MSCALE_MAX 130

struct worker {
    model_ctx *mc;
    struct cli_kv ck;
    struct score_buf buf;
};

/* Everything the stages share. */
struct run {
    struct cli_opts o;
    model *m;
    tok *tk;
    const struct model_hparams *hp;
    struct rope_params rp; /* LONGROPE, factors set per candidate */
    int np;
    int64_t orig;
    int32_t *ids;
    int64_t lo, hi;
    uint64_t text_hash;
    int K, P, T, patience, refine, n_workers, score_all, search_nhat, search_mscale, do_short, resume;
    int64_t budget, n_hat;
    uint64_t seed;
    const char *before;
    struct worker w[LR_MAX_WORKERS];
    int n_vocab, bos;
};

/* One search (a set of factors at one length). */
struct stage {
    struct run *R;
    int set;               /* 0 long, 1 short */
    int64_t L;             /* evaluation length */
    struct rope_params rp;
    const int32_t **win;
    jnl_file *j;
    const char *jpath;
    uint64_t *marks;       /* journal: (set, iter, rng mark) triples, flat */
    int n_marks;
    double t0;
};

/* ---- fitness ------------------------------------------------------------------ */

static int lr_eval(void *user, int wi, const struct lrs_cand *c, double *nll)
{
    struct stage *st = user;
    const struct run *R = st->R;
    struct worker *w = &st->R->w[wi];
    struct rope_params rp = st->rp;
    float *f = st->set ? rp.factors_short : rp.factors_long;
    for (int i = 0; i < R->np; i++) f[i] = (float)c->q[i] / 100.0f;
    rp.n_hat = c->n_hat;
    if (c->mscale) rp.mscale_mult = c->mscale / 100.0;
    int rc = model_ctx_set_rope(w->mc, &rp, st->L);
    if (rc < 0) return rc;
    const struct score_window_params sp = {
        .first = R->score_all ? 0 : st->L / 2, .bos = R->bos, .n_batch = R->o.n_batch, .rp = &rp,
    };
    struct score_sums sums = { 0 };
    for (int k = 0; k < R->K; k++) {
        if ((rc = kvs_truncate(w->ck.kv, 0)) < 0) return rc;
        if ((rc = score_window(w->mc, w->ck.kv, st->win[k], st->L, 0, &sp, &w->buf, &sums, NULL)) < 0)
            return rc;
    }
    *nll = sums.nll_sum / (double)sums.n_scored;
    return 0;
}

/* ---- journal ------------------------------------------------------------------- */

static void journal_line(struct stage *st, const char *line)
{
    int rc = jnl_append(st->j, line, strlen(line));
    if (rc < 0) cli_die("%s: %s", st->jpath, kvt_strerror(rc));
}

static int lr_on_eval(void *user, const struct lrs_cand *c, double nll, int iter)
{
    struct stage *st = user;
    char line[ROPE_MAX_PAIRS * 7 + 96];
    size_t p = (size_t)snprintf(line, sizeof line, "eval %d %d %.17g %d ", st->set, iter, nll,
                                (int)c->n_hat);
    for (int i = 0; i < st->R->np && p < sizeof line; i++)
        p += (size_t)snprintf(line + p, sizeof line - p, "%s%d", i ? "," : "", c->q[i]);
    if (c->mscale && p < sizeof line)
        p += (size_t)snprintf(line + p, sizeof line - p, " mscale %d", c->mscale);
    if (p >= sizeof line) cli_die("journal line too long");
    journal_line(st, line);
    return 0;
}

static uint64_t rng_mark(const uint64_t st[4], int set, int it)
{
    uint64_t h = 0x243f6a8885a308d3ULL ^ ((uint64_t)set << 32) ^ (uint64_t)it;
    for (int i = 0; i < 4; i++) {
        h ^= st[i];
        h *= 1099511628211ULL;
        h ^= h >> 31;
    }
    return h;
}

static void fmt_time(double s, char *out, size_t cap)
{
    if (s < 120) snprintf(out, cap, "%.0fs", s);
    else if (s < 7200) snprintf(out, cap, "%.0fm%02.0fs", floor(s / 60), fmod(s, 60));
    else snprintf(out, cap, "%.0fh%02.0fm", floor(s / 3600), fmod(s / 60, 60));
}

static int lr_on_iter(void *user, const struct lrs_iter *it)
{
    struct stage *st = user;
    uint64_t mark = rng_mark(it->rng, st->set, it->iter);
    int found = 0;
    for (int i = 0; i < st->n_marks; i++) {
        const uint64_t *m = st->marks + 3 * i;
        if ((int)m[0] != st->set || (int)m[1] != it->iter) continue;
        if (m[2] != mark)
            cli_die("%s: iteration %d does not replay to the recorded state (different model, text, options or build?)",
                    st->jpath, it->iter);
        found = 1;
    }
    if (!found) {
        char line[256];
        snprintf(line, sizeof line, "iter %d %d rng %016llx%016llx%016llx%016llx best %.17g", st->set,
                 it->iter, (unsigned long long)it->rng[0], (unsigned long long)it->rng[1],
                 (unsigned long long)it->rng[2], (unsigned long long)it->rng[3], it->best_nll);
        journal_line(st, line);
    }
    if (!st->R->o.quiet && isatty(2)) {
        double el = kvt_now_s() - st->t0;
        char e1[32];
        fmt_time(el, e1, sizeof e1);
        fprintf(stderr, "%s %lld iter %d: best ppl %.4f, median %.4f, %d evaluated (%lld computed), %s\n",
                st->set ? "short" : "long", (long long)st->L, it->iter, exp(it->best_nll),
                exp(it->median_nll), it->n_eval, (long long)it->n_computed, e1);
    }
    return 0;
}

/* Feed the journal's records of SET to the search; keep its iteration marks. */
static void journal_load(struct stage *st, lrs *s)
{
    const int np = st->R->np;
    for (int64_t r = 0; r < jnl_count(st->j); r++) {
        const char *p = jnl_record(st->j, r, NULL);
        int set, it, nh, used = 0;
        double nll;
        if (sscanf(p, "eval %d %d %lf %d %n", &set, &it, &nll, &nh, &used) == 4 && used > 0) {
            if (set != st->set) continue;
            struct lrs_cand c = { .n_hat = nh };
            int n = 0;
            const char *t = p + used;
            while (*t && n < ROPE_MAX_PAIRS) {
                char *e;
                long v = strtol(t, &e, 10);
                if (e == t || v < 0 || v > 32767) break;
                c.q[n++] = (int16_t)v;
                t = *e == ',' ? e + 1 : e;
                if (*e != ',' && *e) break;
            }
            int m = 0, mused = 0; /* the optional magnitude gene */
            if (n == np && *t &&
                (sscanf(t, " mscale %d%n", &m, &mused) != 1 || t[mused] || m < 1 || m > 1000))
                n = -1;
            c.mscale = (int16_t)m;
            if (n != np) cli_die("%s: bad eval record %lld", st->jpath, (long long)r + 1);
            if (lrs_known(s, &c, nll) < 0) cli_die("out of memory");
        } else if (!strncmp(p, "iter ", 5)) {
            char hex[65];
            if (sscanf(p, "iter %d %d rng %64s", &set, &it, hex) != 3 || strlen(hex) != 64 ||
                (set != 0 && set != 1) || it < 0)
                cli_die("%s: bad iter record %lld", st->jpath, (long long)r + 1);
            uint64_t rv[4];
            for (int i = 0; i < 4; i++) {
                char part[17];
                memcpy(part, hex + 16 * i, 16);
                part[16] = '\0';
                rv[i] = strtoull(part, NULL, 16);
            }
            uint64_t *m = realloc(st->marks, (size_t)(st->n_marks + 1) * 3 * sizeof *m);
            if (!m) cli_die("out of memory");
            st->marks = m;
            m += 3 * st->n_marks++;
            m[0] = (uint64_t)set;
            m[1] = (uint64_t)it;
            m[2] = rng_mark(rv, set, it);
        } else {
            cli_die("%s: unexpected record '%.40s'", st->jpath, p);
        }
    }
}

/* ---- one search -------------------------------------------------------------------- */

/* Search SET at length L (scale s for the target TL), seeded by cfg's
 * seeds; write OUT.* (short: OUT.short-*). @return the finished search. */
static lrs *run_search(struct stage *st, struct lrs_config *cfg, int64_t TL, double s,
                       double mscale, const char *out, double *secs)
{
    struct run *R = st->R;
    cfg->n_pairs = R->np;
    cfg->domain = st->set;
    cfg->population = R->P;
    cfg->max_iter = R->T;
    cfg->patience = R->patience;
    cfg->refine = R->refine;
    cfg->budget = R->budget;
    cfg->seed = R->seed;
    cfg->n_workers = R->n_workers;
    cfg->eval = lr_eval;
    cfg->on_eval = lr_on_eval;
    cfg->on_iter = lr_on_iter;
    cfg->user = st;
    lrs *s_ = NULL;
    int rc = lrs_create(cfg, &s_);
    if (rc < 0) cli_die("longrope-search: %s", kvt_strerror(rc));
    journal_load(st, s_);
    st->t0 = kvt_now_s();
    if ((rc = lrs_run(s_)) < 0) cli_die("%s: evaluation: %s", R->o.model_path, kvt_strerror(rc));
    *secs = kvt_now_s() - st->t0;

    int n_it, best = lrs_best(s_);
    const struct lrs_iter *it = lrs_iters(s_, &n_it);
    double nll;
    const struct lrs_cand *bc = lrs_cand_at(s_, best, &nll);
    const char *stopped = lrs_refine_converged(s_) ? "refined"
                        : n_it && it[n_it - 1].refine ? "refine rounds"
                        : R->budget > 0 && lrs_n_cands(s_) >= R->budget ? "budget"
                        : n_it - 1 >= R->T ? "iterations" : "patience";
    struct lr_result res = {
        .model_path = R->o.model_path, .set = st->set ? "short" : "long", .eval_ctx = st->L,
        .target_ctx = TL, .orig_ctx = R->orig, .scale = s, .mscale = mscale, .n_pairs = R->np,
        .population = R->P, .samples = R->K, .n_workers = R->n_workers, .patience = R->patience,
        .refine = R->refine,
        .budget = R->budget, .search_n_hat = cfg->n_nhat > 1,
        .search_mscale = cfg->mscale_min < cfg->mscale_max, .mscale_mult = st->rp.mscale_mult, .se_group = R->o.se_group, .se_window = R->o.se_window, .stopped = stopped,
        .seconds = *secs, .search = s_,
    };
    (void)it;
    char path[4300];
    const char *pre = st->set ? "short-" : "";
    snprintf(path, sizeof path, "%s.%sfactors.txt", out, pre);
    lr_write_factors(path, bc->q, R->np, st->set ? R->orig : TL, s, bc->n_hat,
                     bc->mscale ? bc->mscale / 100.0 : st->rp.mscale_mult, exp(nll), res.set);
    snprintf(path, sizeof path, st->set ? "%s.short.log.json" : "%s.log.json", out);
    lr_write_log(path, &res);
    snprintf(path, sizeof path, st->set ? "%s.short.convergence.svg" : "%s.convergence.svg", out);
    lr_write_svg(path, &res);
    return s_;
}

/* Windows of length L spread over [lo, hi). */
static const int32_t **make_windows(const struct run *R, int64_t L)
{
    const int32_t **win = malloc((size_t)R->K * sizeof *win);
    if (!win) cli_die("out of memory");
    for (int k = 0; k < R->K; k++)
        win[k] = R->ids + R->lo + (R->K > 1 ? (R->hi - R->lo - L) * k / (R->K - 1) : 0);
    return win;
}

struct from { int have; float lam[ROPE_MAX_PAIRS]; int64_t ctx, n_hat; double mscale_mult; };

/* One stage: long factors for L (seeded by *from if set), optionally short
 * factors; writes OUT.*; leaves the best long factors in *from. */
static void run_stage(struct run *R, int64_t L, const char *out, const char *jpath_opt,
                      struct from *from, FILE *json, int last)
{
    struct rope_params rp = R->rp;
    /* the scale of the seeds, the range and the magnitude: L / orig, or --rope-scale */
    const double s = R->o.rope_scale > 0 ? R->o.rope_scale : (double)L / (double)R->orig;
    rp.scale = s;
    struct rope_table rt;
    int rc = rope_prepare(&rp, L, &rt);
    if (rc < 0) cli_die("%s: positions: %s", R->o.model_path, kvt_strerror(rc));
    const double mscale = rt.mscale;
    if (R->hi - R->lo < L)
        cli_die("%lld tokens in the selected range, a window of %lld does not fit",
                (long long)(R->hi - R->lo), (long long)L);

    /* the journal header binds it to this search (the magnitude key only
       when one is used: earlier journals keep resuming) */
    char mkey[96] = "";
    if (R->search_mscale)
        snprintf(mkey, sizeof mkey, " mscale search%d:%d from %.2f", LR_MSCALE_MIN, LR_MSCALE_MAX,
                 from->have ? from->mscale_mult : 0.0);
    else if (rp.mscale_mult > 0)
        snprintf(mkey, sizeof mkey, " mscale %.17g", rp.mscale_mult);
    uint8_t fp[32];
    model_fingerprint(R->m, fp);
    char header[1024];
    int hn = snprintf(header, sizeof header, "kvtile-longrope-search 3 config model ");
    for (int i = 0; i < 32; i++) hn += snprintf(header + hn, sizeof header - (size_t)hn, "%02x", fp[i]);
    uint64_t fh = 0;
    for (int i = 0; from->have && i < R->np; i++) fh = fh * 1099511628211ULL + (uint64_t)lround(from->lam[i] * 100);
    snprintf(header + hn, sizeof header - (size_t)hn,
             " text %016llx target %lld samples %d population %d seed %llu n_hat %s%lld score %s short %d"
             " budget %lld from %016llx:%lld:%lld se %d:%d scale %.9g%s",
             (unsigned long long)R->text_hash, (long long)L, R->K, R->P, (unsigned long long)R->seed,
             R->search_nhat ? "search<=" : "", (long long)(R->search_nhat ? R->orig : R->n_hat),
             R->score_all ? "all" : "half", R->do_short && last, (long long)R->budget,
             (unsigned long long)fh, (long long)from->ctx, (long long)from->n_hat, R->o.se_group,
             R->o.se_window, rp.scale, mkey);
    char jdef[4200];
    const char *jpath = jpath_opt;
    if (!jpath) { snprintf(jdef, sizeof jdef, "%s.journal", out); jpath = jdef; }
    if (!R->resume && access(jpath, F_OK) == 0)
        cli_die("%s: journal exists (use --resume to continue it, or remove it)", jpath);
    struct stage st = { .R = R, .set = 0, .L = L, .rp = rp, .jpath = jpath };
    st.j = cli_journal_open(jpath, header, R->resume,
                            "model, text, target, samples, population, seed, n_hat, magnitude, score, budget, --from or self-extend");
    st.win = make_windows(R, L);

    /* long factors at L */
    struct lrs_config cfg = { 0 };
    cfg.qmin = 100;
    cfg.qmax = (int)floor(125.0 * s + 1e-9);
    if (cfg.qmax > 32767) cli_die("target %lld: scale %.1f too large for the 0.01 grid", (long long)L, s);
    if (R->search_nhat) {
        cfg.n_nhat = lrs_nhat_paper_set(R->orig, cfg.nhat);
    } else {
        cfg.n_nhat = 1;
        cfg.nhat[0] = (int32_t)R->n_hat;
    }
    int32_t nh0 = cfg.nhat[0];
    if (from->have) {
        double s_from = (double)from->ctx / (double)R->orig;
        if (!(s_from > 1.0)) cli_die("--from: its target %lld is not beyond the original context", (long long)from->ctx);
        int32_t nh = nh0;
        for (int k = 0; R->search_nhat && k < cfg.n_nhat; k++)
            if (cfg.nhat[k] == from->n_hat) nh = (int32_t)from->n_hat;
        lrs_seeds_from(from->lam, R->np, s_from, s, cfg.qmin, cfg.qmax, nh, cfg.seeds);
        cfg.n_seeds = 2;
    }
    lrs_seeds_standard(&rp, s, cfg.qmin, cfg.qmax, nh0, cfg.seeds + cfg.n_seeds);
    cfg.n_seeds += 3;
    if (R->search_mscale) { /* seeds at the paper's magnitude; --from's at its own */
        cfg.mscale_min = LR_MSCALE_MIN;
        cfg.mscale_max = LR_MSCALE_MAX;
        long fm = from->have ? lround(from->mscale_mult * 100.0) : 0;
        if (fm < LR_MSCALE_MIN || fm > LR_MSCALE_MAX) fm = 100;
        for (int k = 0; k < cfg.n_seeds; k++) cfg.seeds[k].mscale = (int16_t)(from->have && k < 2 ? fm : 100);
    }
    double secs;
    lrs *ls = run_search(&st, &cfg, L, s, mscale, out, &secs);
    double best_nll;
    const struct lrs_cand *bc = lrs_cand_at(ls, lrs_best(ls), &best_nll);
    float lf[ROPE_MAX_PAIRS], sf[ROPE_MAX_PAIRS];
    for (int i = 0; i < R->np; i++) {
        lf[i] = (float)bc->q[i] / 100.0f;
        sf[i] = rp.factors_short[i];
    }
    const int32_t best_nhat = bc->n_hat;
    const double best_mult = bc->mscale ? bc->mscale / 100.0 : rp.mscale_mult;
    int n_it;
    const struct lrs_iter *its = lrs_iters(ls, &n_it);
    const int64_t computed = n_it ? its[n_it - 1].n_computed : 0;
    const int n_evals = lrs_n_cands(ls);

    if (R->do_short && last) { /* short factors at the original context, from identity */
        struct stage s2 = st;
        s2.set = 1;
        s2.L = R->orig;
        s2.rp.n_hat = best_nhat;
        s2.rp.mscale_mult = best_mult;
        memcpy(s2.rp.factors_long, lf, sizeof lf);
        free(s2.win);
        s2.win = make_windows(R, R->orig);
        struct lrs_config c2 = { .qmin = 100, .qmax = (int)floor(100.0 * s + 1e-9), .n_nhat = 1 };
        c2.nhat[0] = best_nhat;
        double lam1[ROPE_MAX_PAIRS];
        for (int i = 0; i < R->np; i++) lam1[i] = 1.0;
        lrs_q_from_lambda(lam1, R->np, c2.qmin, c2.qmax, c2.seeds[0].q);
        c2.seeds[0].n_hat = best_nhat;
        lrs_seeds_standard(&rp, s, c2.qmin, c2.qmax, best_nhat, c2.seeds + 1);
        c2.n_seeds = 4;
        double secs2;
        lrs *l2 = run_search(&s2, &c2, L, s, mscale, out, &secs2);
        const struct lrs_cand *b2 = lrs_cand_at(l2, lrs_best(l2), NULL);
        for (int i = 0; i < R->np; i++) sf[i] = (float)b2->q[i] / 100.0f;
        lrs_free(l2);
        free(s2.win);
        st.win = NULL;
        free(s2.marks);
        st.marks = NULL;
    }
    float gl[ROPE_MAX_PAIRS];
    memcpy(gl, lf, sizeof gl);
    if (rp.have_freq_factors) /* the file's rope_freqs stay in effect: fold them in */
        for (int i = 0; i < R->np && R->hp->arch != ARCH_PHI3; i++) gl[i] *= rp.freq_factors[i];
    char path[4300];
    snprintf(path, sizeof path, "%s.gguf", out);
    /* the magnitude with the chosen multiplier, as llama.cpp's attn_factor
       (computed as rope_prepare does for --longrope-mscale: the same float) */
    struct rope_params rpm = rp;
    rpm.mscale_mult = best_mult;
    if ((rc = rope_prepare(&rpm, L, &rt)) < 0) cli_die("%s: positions: %s", R->o.model_path, kvt_strerror(rc));
    const double gmscale = rt.mscale;
    lr_write_gguf(path, R->m, R->o.model_path, L, R->orig, gmscale, gl, sf, R->np);

    if (json) {
        fprintf(json, "{\"target_ctx\": %lld, \"best_ppl\": %.6f, \"best_nll\": %.17g, \"n_hat\": %d, "
                      "\"mscale\": %.2f, \"evaluations\": %d, \"computed\": %lld, \"seconds\": %.3f, \"iterations\": %d, \"factors\": [",
                (long long)L, exp(best_nll), best_nll, (int)best_nhat, best_mult > 0 ? best_mult : 1.0, n_evals, (long long)computed, secs,
                n_it - 1);
        for (int i = 0; i < R->np; i++) fprintf(json, "%s%.2f", i ? ", " : "", (double)lf[i]);
        fprintf(json, "]}");
    } else {
        printf("%lld: best ppl %.4f (n_hat %d, mscale %.2f) after %d iterations, %d candidates (%lld computed) in %.1f s; wrote %s.*\n",
               (long long)L, exp(best_nll), (int)best_nhat, best_mult > 0 ? best_mult : 1.0, n_it - 1, n_evals, (long long)computed, secs, out);
    }
    from->have = 1;
    memcpy(from->lam, lf, sizeof lf);
    from->ctx = L;
    from->n_hat = best_nhat;
    from->mscale_mult = best_mult;
    lrs_free(ls);
    jnl_close(st.j);
    free(st.win);
    free(st.marks);
}

/* ---- the command -------------------------------------------------------------- */

static const char *const lr_score_names[] = { "half", "all", NULL };

/* --text-range A:B into int64_t[2]. */
static void parse_range(void *field, const char *name, const char *v)
{
    int64_t *r = field;
    const char *c = strchr(v, ':');
    if (!c) cli_die("%s: '%s' (expected A:B)", name, v);
    char buf[64];
    snprintf(buf, sizeof buf, "%.*s", (int)(c - v), v);
    r[0] = cli_parse_count(name, buf);
    r[1] = cli_parse_count(name, c + 1);
    if (r[1] <= r[0]) cli_die("%s: empty range '%s'", name, v);
}

/* --schedule L1,L2,... into int64_t[LR_MAX_STAGES + 1] (0-terminated). */
static void parse_schedule(void *field, const char *name, const char *v)
{
    int64_t *r = field;
    int n = 0;
    for (const char *p = v; *p;) {
        const char *c = strchr(p, ',');
        char buf[64];
        snprintf(buf, sizeof buf, "%.*s", (int)(c ? c - p : (long)strlen(p)), p);
        if (n == LR_MAX_STAGES) cli_die("%s: more than %d stages", name, LR_MAX_STAGES);
        r[n] = cli_parse_count(name, buf);
        if (r[n] <= 0 || (n && r[n] <= r[n - 1])) cli_die("%s: '%s' (increasing lengths expected)", name, v);
        n++;
        p = c ? c + 1 : p + strlen(p);
    }
    r[n] = 0;
}

/* The text before the first line that starts with MARK. */
static size_t cut_before(const char *text, size_t len, const char *mark)
{
    size_t ml = strlen(mark);
    for (size_t i = 0; i + ml <= len; i++)
        if ((i == 0 || text[i - 1] == '\n') && !memcmp(text + i, mark, ml)) return i;
    cli_die("--text-before: no line starts with '%s'", mark);
}

int cmd_longrope(int argc, char **argv)
{
    static struct run R;
    struct cli_opts *o = &R.o;
    cli_opts_default(o);
    const char *file = NULL, *out = NULL, *journal_path = NULL, *from_path = NULL;
    int64_t L = 0, skip = 0, from_ctx = 0, sched[LR_MAX_STAGES + 1] = { 0 };
    int64_t range[2] = { -1, -1 };
    R.K = 4; R.P = 16; R.T = 10; R.seed = 1; R.n_workers = 2;
    struct opt tab[] = {
        OPT_STR("--file", "-f", "FILE", &file, "text the windows are taken from"),
        OPT_I64("--target-ctx", NULL, "L", &L, 1, 1e9, "length to search factors for"),
        OPT_FN("--schedule", NULL, "L1,L2,..", sched, parse_schedule,
               "progressive: one search per length, each seeded by\nthe previous (writes OUT-L.* per stage)"),
        OPT_STR("--out", "-o", "OUT", &out, "writes OUT.factors.txt, .log.json, .convergence.svg, .gguf"),
        OPT_STR("--from", NULL, "FILE", &from_path, "seed with a previous result scaled to the target"),
        OPT_I64("--from-ctx", NULL, "L", &from_ctx, 1, 1e9, "target of --from (default: its first line)"),
        OPT_INT("--samples", NULL, "K", &R.K, 1, 1024, "windows of L tokens per evaluation"),
        OPT_INT("--population", NULL, "P", &R.P, 2, 4096, "candidates per iteration"),
        OPT_INT("--iterations", NULL, "T", &R.T, 0, 100000, "iterations after the initial one"),
        OPT_INT("--patience", NULL, "N", &R.patience, 0, 100000,
                "stop after N iterations without a better best (0: off)"),
        OPT_I64("--budget", NULL, "N", &R.budget, 0, 1e9, "at most N candidates evaluated (0: no limit)"),
        OPT_INT("--refine", NULL, "R", &R.refine, 0, 100000,
                "then up to R rounds of coordinate moves on the best\n(steps of 4% halved to 0.01; not bound by --budget;\n0: none)"),
        OPT_INT("--workers", NULL, "W", &R.n_workers, 1, LR_MAX_WORKERS,
                "candidates evaluated in parallel (threads / W each)"),
        OPT_U64("--seed", NULL, "S", &R.seed, "random seed"),
        OPT_I64("--n-hat", NULL, "N", &R.n_hat, 0, 1e12, "first N positions not interpolated (fixed)"),
        OPT_FLAG("--search-n-hat", NULL, &R.search_nhat,
                 "search n_hat too, in {0,1,2,4,8,...,32,64,128,256} up to\nthe original context"),
        OPT_FLAG("--search-mscale", NULL, &R.search_mscale,
                 "search a multiplier of the magnitude too, 0.70..1.30\nstep 0.01 (--longrope-mscale M reproduces it)"),
        OPT_FLAG("--short", NULL, &R.do_short,
                 "also search short factors at the original context\n(phi3 files only)"),
        OPT_CHOICE("--score", NULL, &R.score_all, lr_score_names,
                   "NLL of the second half of each window or of all tokens"),
        OPT_I64("--skip", NULL, "N", &skip, 0, 1e12, "ignore the first N tokens of the text"),
        OPT_FN("--text-range", NULL, "A:B", range, parse_range, "use tokens [A, B) only"),
        OPT_STR("--text-before", NULL, "S", &R.before, "use the text before the first line starting with S"),
        OPT_STR("--journal", NULL, "FILE", &journal_path, "journal (one stage)", .def = "OUT.journal"),
        OPT_FLAG("--resume", NULL, &R.resume, "continue the search recorded in the journal"),
        CLI_OPTS_RUN(o),
        CLI_OPT_JSON(o),
        /* candidates are scored with a RAM store: the disk options do not apply */
        CLI_OPTS_TILES(o),
        CLI_OPTS_POS(o),
        CLI_OPTS_TEXT,
        OPT_END(),
    };
    const char *usage = "MODEL -f TEXT (--target-ctx L | --schedule L1,L2,..) -o OUT [options]";
    if (opt_parse("longrope-search", usage, tab, argc, argv, &o->model_path, 1) < 1 || !file ||
        !out || (L <= 0) == (sched[0] <= 0))
        opt_usage("longrope-search", usage);
    if (sched[0] <= 0) { sched[0] = L; sched[1] = 0; }
    if (sched[1] > 0 && journal_path) cli_die("--journal: one per stage with --schedule (OUT-L.journal)");
    if (R.search_nhat && R.n_hat) cli_die("--n-hat and --search-n-hat: give one");
    if (R.search_mscale && o->longrope_mscale > 0) cli_die("--longrope-mscale and --search-mscale: give one");
    o->kv_backing = KVS_RAM;

    cli_load(o->model_path, &R.m, &R.tk);
    R.hp = model_hparams(R.m);
    cli_rope_params(o, R.m, &R.rp);
    R.np = R.rp.n_rot / 2;
    R.orig = R.rp.orig_ctx;
    if (sched[0] <= R.orig)
        cli_die("target %lld: not beyond the original context %lld", (long long)sched[0], (long long)R.orig);
    if (R.do_short && R.hp->arch != ARCH_PHI3)
        cli_die("--short: not applicable to '%s' files (rope_freqs.weight has one set of factors, applied at every length); phi3 only",
                R.hp->arch_name);
    /* positions exactly as `ppl -c L --longrope-factors F --rope-scaling longrope` */
    R.rp.scheme = ROPE_LONGROPE;
    if (!R.rp.have_factors)
        for (int i = 0; i < R.np; i++) R.rp.factors_short[i] = R.rp.factors_long[i] = 1.0f;
    R.rp.have_factors = 1;
    struct from from = { 0 };
    if (from_path) {
        lr_read_from(from_path, R.np, from_ctx, from.lam, &from.ctx, &from.n_hat, &from.mscale_mult);
        from.have = 1;
    }

    /* the text */
    size_t len;
    char *text = cli_read_file(file, &len);
    if (R.before) len = cut_before(text, len, R.before);
    int64_t n_tok;
    R.ids = cli_tokenize(R.tk, file, text, len, tok_add_bos(R.tk), &n_tok);
    free(text);
    R.lo = skip;
    R.hi = n_tok;
    if (range[0] >= 0) { R.lo = KVT_MAX(R.lo, range[0]); R.hi = KVT_MIN(R.hi, range[1]); }
    R.text_hash = 1469598103934665603ULL;
    for (int64_t i = R.lo; i < R.hi; i++) { R.text_hash ^= (uint32_t)R.ids[i]; R.text_hash *= 1099511628211ULL; }
    R.n_vocab = R.hp->n_vocab;
    R.bos = tok_add_bos(R.tk) ? tok_bos(R.tk) : -1;

    /* workers: a model context, a RAM store and buffers each */
    int64_t Lmax = 0;
    for (int k = 0; sched[k]; k++) Lmax = sched[k];
    if (o->n_batch > Lmax) o->n_batch = (int)Lmax;
    const int threads = o->n_threads;
    o->n_threads = KVT_MAX(1, threads / R.n_workers);
    for (int w = 0; w < R.n_workers; w++) {
        char name[32];
        snprintf(name, sizeof name, "longrope%d.kvt", w);
        R.w[w].mc = cli_model_ctx(o, R.m);
        cli_kv_open(o, R.m, name, 0, &R.w[w].ck);
        if (score_buf_init(&R.w[w].buf, Lmax, o->n_batch, R.n_vocab) < 0) cli_die("out of memory");
    }

    double t0 = kvt_now_s();
    if (o->json) {
        printf("{");
        cli_json_cpu(stdout);
        printf("\"workers\": %d, \"stages\": [", R.n_workers);
    }
    for (int k = 0; sched[k]; k++) {
        char prefix[4100];
        if (sched[1]) snprintf(prefix, sizeof prefix, "%s-%lld", out, (long long)sched[k]);
        else snprintf(prefix, sizeof prefix, "%s", out);
        if (o->json && k) printf(", ");
        run_stage(&R, sched[k], prefix, journal_path, &from, o->json ? stdout : NULL, !sched[k + 1]);
    }
    if (o->json) {
        printf("], \"seconds\": %.3f, ", kvt_now_s() - t0);
        cli_json_io(stdout);
        printf("}\n");
    }
    for (int w = 0; w < R.n_workers; w++) {
        score_buf_free(&R.w[w].buf);
        cli_kv_close(&R.w[w].ck);
        model_ctx_free(R.w[w].mc);
    }
    free(R.ids);
    tok_free(R.tk);
    model_close(R.m);
    return 0;
}
