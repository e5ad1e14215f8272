/* longrope_out.c - files of `kvtile longrope-search` (longrope_out.h). */
#include "longrope_out.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "svg.h"
#include "kvstore/journal.h"
#include "engine/gguf_write.h"
#include "base/kvt.h"

void lr_write_factors(const char *path, const int16_t *q, int np, int64_t target_ctx,
                      double s, int64_t n_hat, double mscale_mult, double ppl, const char *set)
{
    struct cli_out out;
    FILE *f = cli_out_open(&out, path);
    fprintf(f, "# LongRoPE %s factors for %lld tokens (s = %.4g), search ppl %.4f; target_ctx %lld n_hat %lld",
            set, (long long)target_ctx, s, ppl, (long long)target_ctx, (long long)n_hat);
    if (mscale_mult > 0) fprintf(f, " mscale %.2f", mscale_mult);
    fputc('\n', f);
    for (int i = 0; i < np; i++) fprintf(f, "%.2f\n", (double)q[i] / 100.0);
    cli_out_commit(&out);
}

/* The number after KEY in the first line of text, or -1. */
static double header_num(const char *text, const char *key)
{
    const char *nl = strchr(text, '\n');
    size_t n = nl ? (size_t)(nl - text) : strlen(text);
    size_t kl = strlen(key);
    for (size_t i = 0; i + kl < n; i++)
        if (!memcmp(text + i, key, kl) && (i == 0 || text[i - 1] == ' '))
            return strtod(text + i + kl, NULL);
    return -1;
}

void lr_read_from(const char *path, int np, int64_t from_ctx, float *lam, int64_t *target_ctx,
                  int64_t *n_hat, double *mscale_mult)
{
    size_t len;
    char *text = cli_read_file(path, &len);
    int n = 0;
    int rc = rope_factors_parse(text, len, lam, ROPE_MAX_PAIRS, &n);
    if (rc < 0) cli_die("%s: %s", path, kvt_strerror(rc));
    if (n != np) cli_die("%s: %d factors, the model rotates %d pairs", path, n, np);
    int64_t tc = text[0] == '#' ? (int64_t)header_num(text, "target_ctx ") : -1;
    int64_t nh = text[0] == '#' ? (int64_t)header_num(text, "n_hat ") : -1;
    double ms = text[0] == '#' ? header_num(text, "mscale ") : -1;
    free(text);
    if (ms != -1 && !(ms >= 0.01 && ms <= 10.0)) cli_die("%s: mscale %g out of range", path, ms);
    *mscale_mult = ms > 0 ? ms : 0;
    if (from_ctx > 0) tc = from_ctx;
    if (tc <= 0) cli_die("%s: no 'target_ctx' in its first line; give --from-ctx L", path);
    *target_ctx = tc;
    *n_hat = nh > 0 ? nh : 0;
}

static void json_factors(FILE *f, const int16_t *q, int np)
{
    fputc('[', f);
    for (int i = 0; i < np; i++) fprintf(f, "%s%.2f", i ? ", " : "", (double)q[i] / 100.0);
    fputc(']', f);
}

void lr_write_log(const char *path, const struct lr_result *r)
{
    struct cli_out out;
    FILE *f = cli_out_open(&out, path);
    int n_it, best = lrs_best(r->search);
    const struct lrs_iter *it = lrs_iters(r->search, &n_it);
    double best_nll;
    const struct lrs_cand *bc = lrs_cand_at(r->search, best, &best_nll);
    const double mult = bc->mscale ? bc->mscale / 100.0 : r->mscale_mult > 0 ? r->mscale_mult : 1.0;
    fprintf(f, "{\"model\": ");
    cli_json_str(f, r->model_path);
    fprintf(f, ", \"factors\": \"%s\", \"eval_ctx\": %lld, \"target_ctx\": %lld, \"original_ctx\": %lld, "
               "\"scale\": %.6g, \"magnitude\": %.9g, \"magnitude_multiplier\": %.2f, "
               "\"magnitude_searched\": %s, \"n_hat\": %d, \"n_hat_searched\": %s, "
               "\"self_extend\": \"%d:%d\", \"population\": %d, \"samples\": %d, \"workers\": %d, \"patience\": %d, \"budget\": %lld, \"refine\": %d, "
               "\"stopped\": \"%s\", \"evaluations\": %d, \"computed\": %lld, \"seconds\": %.3f, "
               "\"best_ppl\": %.6f, \"best_nll\": %.17g, \"best_factors\": ",
            r->set, (long long)r->eval_ctx, (long long)r->target_ctx, (long long)r->orig_ctx, r->scale,
            r->mscale * (bc->mscale ? bc->mscale / 100.0 : 1.0), mult, r->search_mscale ? "true" : "false",
            (int)bc->n_hat, r->search_n_hat ? "true" : "false", r->se_group, r->se_window, r->population, r->samples,
            r->n_workers, r->patience, (long long)r->budget, r->refine, r->stopped, lrs_n_cands(r->search),
            n_it ? (long long)it[n_it - 1].n_computed : 0LL, r->seconds, exp(best_nll), best_nll);
    json_factors(f, bc->q, r->n_pairs);
    fprintf(f, ",\n \"iterations\": [\n");
    for (int i = 0; i < n_it; i++) {
        const struct lrs_cand *c = lrs_cand_at(r->search, it[i].best, NULL);
        fprintf(f, "  {\"iter\": %d, \"evaluated\": %d, \"new\": %d, \"best_ppl\": %.6f, \"median_ppl\": %.6f, "
                   "\"best_nll\": %.17g, \"best_n_hat\": %d, ",
                it[i].iter, it[i].n_eval, it[i].n_new, exp(it[i].best_nll), exp(it[i].median_nll),
                it[i].best_nll, (int)c->n_hat);
        if (r->search_mscale) fprintf(f, "\"best_mscale\": %.2f, ", c->mscale / 100.0);
        if (it[i].refine) fprintf(f, "\"refine\": %d, \"refine_step\": %.6g, ", it[i].refine, it[i].refine_rel);
        fprintf(f, "\"best_factors\": ");
        json_factors(f, c->q, r->n_pairs);
        fprintf(f, "}%s\n", i + 1 < n_it ? "," : "");
    }
    fprintf(f, " ]}\n");
    cli_out_commit(&out);
}

void lr_write_svg(const char *path, const struct lr_result *r)
{
    int n_it;
    const struct lrs_iter *it = lrs_iters(r->search, &n_it);
    double *v = malloc((size_t)(3 * n_it + 1) * sizeof *v);
    if (!v) cli_die("out of memory");
    double *x = v, *best = v + n_it, *med = v + 2 * n_it;
    for (int i = 0; i < n_it; i++) {
        x[i] = it[i].iter;
        best[i] = exp(it[i].best_nll);
        med[i] = exp(it[i].median_nll);
    }
    struct svg_series ser[2] = { { "best so far", best }, { "median of the iteration", med } };
    char title[256];
    snprintf(title, sizeof title, "LongRoPE search, %s factors for %lld tokens (population %d, %d windows)",
             r->set, (long long)r->target_ctx, r->population, r->samples);
    int rc = svg_line_plot(path, title, "iteration", "perplexity (search windows)", x, n_it, ser, 2, 0);
    free(v);
    if (rc < 0) cli_die("%s: %s", path, kvt_strerror(rc));
}

/* llama (and qwen2) files: rope_freqs.weight (F32, n_rot/2) = the factors,
 *   {arch}.context_length = L, .rope.scaling.original_context_length, the
 *   magnitude as .rope.scaling.attn_factor, .rope.scaling.type/.factor
 *   removed. llama.cpp (and engine/model.c) divide theta by rope_freqs at
 *   EVERY length: the file is meant for contexts near L. Not carried: n_hat
 *   (llama.cpp has no such key) and short factors.
 * phi3 files: rope_factors_long/short.weight, original context,
 *   attn_factor, context L. */
void lr_write_gguf(const char *path, const model *m, const char *model_path, int64_t L,
                   int64_t orig, double mscale, const float *lf, const float *sf, int np)
{
    const struct model_hparams *hp = model_hparams(m);
    gguf_w *w;
    if (gguf_w_init(&w) < 0) cli_die("out of memory");
    int rc = gguf_w_copy_from(w, model_gguf(m));
    if (rc < 0) cli_die("%s: copy: %s", model_path, kvt_strerror(rc));
    char k[160];
    const char *a = hp->arch_name;
    const int64_t ne[1] = { np };
#define KEY(s) (snprintf(k, sizeof k, "%s." s, a), k)
    if (rc >= 0) rc = gguf_w_set_u32(w, KEY("context_length"), (uint32_t)L);
    if (rc >= 0) rc = gguf_w_set_u32(w, KEY("rope.scaling.original_context_length"), (uint32_t)orig);
    if (rc >= 0) rc = gguf_w_set_f32(w, KEY("rope.scaling.attn_factor"), (float)mscale);
    if (hp->arch == ARCH_PHI3) {
        if (rc >= 0) rc = gguf_w_set_str(w, KEY("rope.scaling.type"), "longrope");
        if (rc >= 0) rc = gguf_w_add_tensor(w, "rope_factors_long.weight", GGML_TYPE_F32, 1, ne, lf, (size_t)np * 4);
        if (rc >= 0) rc = gguf_w_add_tensor(w, "rope_factors_short.weight", GGML_TYPE_F32, 1, ne, sf, (size_t)np * 4);
    } else {
        gguf_w_remove(w, KEY("rope.scaling.type"));
        gguf_w_remove(w, KEY("rope.scaling.factor"));
        if (rc >= 0) rc = gguf_w_add_tensor(w, "rope_freqs.weight", GGML_TYPE_F32, 1, ne, lf, (size_t)np * 4);
    }
#undef KEY
    char tmp[4400];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    cli_cleanup_add(tmp, 0);
    if (rc >= 0) rc = gguf_w_write(w, tmp);
    if (rc >= 0) rc = jnl_commit(tmp, path);
    if (rc < 0) cli_die("%s: %s", path, kvt_strerror(rc));
    cli_cleanup_forget(tmp);
    gguf_w_free(w);
}
