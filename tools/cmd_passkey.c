/* cmd_passkey.c - `kvtile passkey`: passkey retrieval accuracy per prompt
 * length x key depth (the LongRoPE evaluation / llama.cpp passkey example).
 *
 * Protocol: for each length L (tokens, BOS included) and depth d, K trials.
 * Trial t draws a key N in [10000, 99999] from splitmix64(seed, L index,
 * d index, t), so a cell's keys do not depend on the other cells. The
 * prompt (batch_prompt.h) gets the most filler repetitions whose
 * tokenization fits in L tokens (measured with the model's tokenizer, per
 * trial: the key's digits change the count). It is evaluated from an empty
 * KV store with positions prepared for (prompt + n) tokens, then n tokens
 * (default 8) are decoded greedily; the trial is correct when the first
 * integer in the decoded text equals N. A guess is right with p = 1/90000.
 *
 * Output: a table (stdout), or one JSON object with --json; --svg FILE
 * writes a heat map of accuracy (rows: lengths, columns: depths).
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "base/kvt.h"
#include "engine/generate.h"
#include "tools/batch_prompt.h"

#define MAX_LIST 64
#define ANSWER_CAP 256

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

static long trial_key(uint64_t seed, int li, int di, int t)
{
    uint64_t h = splitmix64(seed);
    h = splitmix64(h ^ (uint64_t)li);
    h = splitmix64(h ^ ((uint64_t)di << 20));
    h = splitmix64(h ^ ((uint64_t)t << 40));
    return 10000 + (long)(h % 90000);
}

static int parse_list(const char *what, const char *s, double *v, int is_count)
{
    int n = 0;
    char *copy = strdup(s);
    if (!copy) cli_die("out of memory");
    for (char *save = NULL, *p = strtok_r(copy, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        if (n == MAX_LIST) cli_die("%s: at most %d values", what, MAX_LIST);
        if (is_count) {
            v[n] = (double)cli_parse_count(what, p);
        } else {
            char *end;
            v[n] = strtod(p, &end);
            if (end == p || *end || !(v[n] >= 0.0 && v[n] <= 1.0))
                cli_die("%s: '%s' is not a depth in [0, 1]", what, p);
        }
        n++;
    }
    free(copy);
    if (n == 0) cli_die("%s: empty list", what);
    return n;
}

/* Tokens of the prompt with N_REPS repetitions (BOS included). */
static int64_t prompt_tokens(tok *tk, int n_reps, double depth, long key,
                             char **buf, size_t *cap, int32_t **ids)
{
    size_t need = passkey_prompt_bound(n_reps);
    if (need > *cap) {
        free(*buf);
        *buf = malloc(need);
        if (!*buf) cli_die("out of memory");
        *cap = need;
    }
    int64_t len = passkey_prompt(*buf, *cap, n_reps, depth, key);
    if (len < 0) cli_die("passkey prompt: %s", kvt_strerror((int)len));
    free(*ids);
    int64_t n;
    *ids = cli_tokenize(tk, "passkey prompt", *buf, (size_t)len, tok_add_bos(tk), &n);
    return n;
}

/* The most repetitions whose prompt fits in L tokens; *ids holds it. */
static int fit_reps(tok *tk, int64_t L, double depth, long key, char **buf,
                    size_t *cap, int32_t **ids, int64_t *n_tok)
{
    int64_t t0 = prompt_tokens(tk, 0, depth, key, buf, cap, ids);
    if (t0 > L) cli_die("--lengths: %lld tokens is shorter than the bare prompt (%lld tokens)",
                        (long long)L, (long long)t0);
    int64_t t1 = prompt_tokens(tk, 1, depth, key, buf, cap, ids);
    int64_t per = KVT_MAX(t1 - t0, (int64_t)1);
    int reps = (int)((L - t0) / per);
    while (reps > 0 && prompt_tokens(tk, reps, depth, key, buf, cap, ids) > L) reps--;
    while (prompt_tokens(tk, reps + 1, depth, key, buf, cap, ids) <= L) reps++;
    *n_tok = prompt_tokens(tk, reps, depth, key, buf, cap, ids);
    return reps;
}

/* The decoded answer: every piece that still fits (ANSWER_CAP). */
struct answer {
    char *buf;
    size_t len;
};

static int answer_piece(void *user, int32_t id, const char *piece, int len)
{
    struct answer *a = user;
    (void)id;
    if (len > 0 && a->len + (size_t)len < ANSWER_CAP) {
        memcpy(a->buf + a->len, piece, (size_t)len);
        a->len += (size_t)len;
    }
    a->buf[a->len] = 0;
    return 0;
}

struct cell {
    int correct, trials;
    double tokens_mean;
    long keys[MAX_LIST];
    char answers[MAX_LIST][ANSWER_CAP];
};

static void write_svg(const char *path, const char *model_path, const double *lens,
                      int n_len, const double *depths, int n_dep,
                      const struct cell *cells)
{
    FILE *f = fopen(path, "w");
    if (!f) cli_die("%s: %s", path, strerror(errno));
    const int cw = 70, ch = 34, left = 90, top = 60;
    int w = left + cw * n_dep + 20, h = top + ch * n_len + 50;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n", w, h);
    fprintf(f, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", w, h);
    fprintf(f, "<text x=\"10\" y=\"20\" font-size=\"14\">passkey retrieval accuracy: ");
    for (const char *c = model_path; *c; c++) {
        if (*c == '<') fputs("&lt;", f);
        else if (*c == '&') fputs("&amp;", f);
        else fputc(*c, f);
    }
    fprintf(f, "</text>\n<text x=\"%d\" y=\"%d\">key depth</text>\n", left, top - 22);
    fprintf(f, "<text x=\"10\" y=\"%d\">length</text>\n", top - 6);
    for (int d = 0; d < n_dep; d++)
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%.2f</text>\n",
                left + d * cw + cw / 2, top - 6, depths[d]);
    for (int l = 0; l < n_len; l++) {
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%lld</text>\n", left - 8,
                top + l * ch + ch / 2 + 4, (long long)lens[l]);
        for (int d = 0; d < n_dep; d++) {
            const struct cell *c = &cells[l * n_dep + d];
            double a = c->trials ? (double)c->correct / c->trials : 0;
            int r = (int)lround(215 * (1 - a) + 26 * a), g = (int)lround(48 * (1 - a) + 150 * a),
                b = (int)lround(39 * (1 - a) + 65 * a);
            fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"rgb(%d,%d,%d)\" "
                       "stroke=\"white\"/>\n", left + d * cw, top + l * ch, cw, ch, r, g, b);
            fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" fill=\"white\">%d/%d</text>\n",
                    left + d * cw + cw / 2, top + l * ch + ch / 2 + 4, c->correct, c->trials);
        }
    }
    fprintf(f, "<text x=\"10\" y=\"%d\">green = retrieved, red = missed; a guess is right "
               "with p = 1/90000</text>\n</svg>\n", top + ch * n_len + 30);
    if (fclose(f) != 0) cli_die("%s: %s", path, strerror(errno));
}

int cmd_passkey(int argc, char **argv)
{
    struct cli_opts o;
    cli_opts_default(&o);
    double lens[MAX_LIST] = { 1024, 2048, 4096 }, depths[MAX_LIST] = { 0, 0.25, 0.5, 0.75, 1 };
    int n_len = 3, n_dep = 5, trials = 5, n_gen = 8;
    uint64_t seed = 1;
    const char *svg = NULL, *len_arg = NULL, *dep_arg = NULL;
    struct opt tab[] = {
        OPT_STR("--lengths", NULL, "L,...", &len_arg, "prompt lengths in tokens", .def = "1k,2k,4k"),
        OPT_STR("--depths", NULL, "D,...", &dep_arg, "key depths in [0, 1]", .def = "0,0.25,0.5,0.75,1"),
        OPT_INT("--trials", NULL, "K", &trials, 1, MAX_LIST, "trials per cell"),
        OPT_U64("--seed", NULL, "S", &seed, "key generator seed"),
        OPT_INT("--n-predict", "-n", "N", &n_gen, 1, 64, "tokens decoded per answer"),
        OPT_STR("--svg", NULL, "FILE", &svg, "heat map of accuracy"),
        CLI_OPTS_MODEL_RUN(&o),
        OPT_END(),
    };
    const char *usage = "MODEL [options]";
    if (opt_parse("passkey", usage, tab, argc, argv, &o.model_path, 1) < 1) opt_usage("passkey", usage);
    if (len_arg) n_len = parse_list("--lengths", len_arg, lens, 1);
    if (dep_arg) n_dep = parse_list("--depths", dep_arg, depths, 0);

    model *m;
    tok *tk;
    cli_load(o.model_path, &m, &tk);
    const struct model_hparams *hp = model_hparams(m);
    int64_t max_len = 0;
    for (int l = 0; l < n_len; l++) max_len = KVT_MAX(max_len, (int64_t)lens[l]);
    o.n_ctx = max_len + n_gen;
    struct rope_params rp;
    cli_rope_params(&o, m, &rp);
    model_ctx *mc = cli_model_ctx(&o, m);
    struct cli_kv ck;
    cli_kv_open(&o, m, "passkey.kvt", 0, &ck);
    struct cell *cells = calloc((size_t)(n_len * n_dep), sizeof *cells);
    gen *g;
    if (!cells || gen_create(m, tk, &g) < 0) cli_die("out of memory");
    struct gen_params gp; /* greedy, the last answer token not evaluated */
    gen_params_default(&gp);
    int32_t eos = tok_eos(tk);
    gp.n_predict = n_gen;
    gp.n_batch = o.n_batch;
    gp.sample.temp = 0;
    gp.stop_ids = &eos;
    gp.n_stop_ids = 1;
    gp.feed_last = 0;
    gp.rope = &rp;
    gp.on_token = answer_piece;
    struct gen_result r;
    const char *kvname = ck.path[0] ? ck.path : "KV store";

    char *buf = NULL;
    size_t cap = 0;
    int32_t *ids = NULL;
    struct cli_progress pr;
    cli_progress_start(&pr, o.quiet || o.json, "trials");
    int64_t total = (int64_t)n_len * n_dep * trials, done = 0, n_eval = 0;
    double t0 = kvt_now_s();
    for (int l = 0; l < n_len; l++)
        for (int d = 0; d < n_dep; d++) {
            struct cell *c = &cells[l * n_dep + d];
            for (int t = 0; t < trials; t++) {
                long key = trial_key(seed, l, d, t);
                int64_t n;
                fit_reps(tk, (int64_t)lens[l], depths[d], key, &buf, &cap, &ids, &n);
                struct answer a = { c->answers[t], 0 };
                a.buf[0] = 0;
                int32_t *seq = realloc(ids, (size_t)(n + n_gen) * sizeof *seq);
                if (!seq) cli_die("out of memory");
                ids = seq;
                int rc = kvs_truncate(ck.kv, 0);
                if (rc < 0) cli_die("%s: %s", kvname, kvt_strerror(rc));
                gp.user = &a;
                cli_gen_check(gen_run(g, mc, ck.kv, ids, 0, n, &gp, &r), &r, o.model_path, kvname);
                c->keys[t] = key;
                c->correct += first_int(a.buf, a.len) == key;
                c->trials++;
                c->tokens_mean += (double)n / trials;
                n_eval += n + n_gen;
                cli_progress(&pr, ++done, total, n_eval, NULL);
            }
        }
    cli_progress_end(&pr);
    double secs = kvt_now_s() - t0;
    int beyond = max_len > hp->n_ctx_train;

    if (o.json) {
        printf("{");
        cli_json_cpu(stdout);
        printf("\"model\": ");
        cli_json_str(stdout, o.model_path);
        printf(", \"n_ctx_train\": %lld, \"rope\": \"%s\", \"trials\": %d, \"seed\": %llu, "
               "\"n_gen\": %d, \"chance\": %.3g, \"seconds\": %.3f, ",
               (long long)hp->n_ctx_train, rope_scheme_name(rp.scheme), trials,
               (unsigned long long)seed, n_gen, 1.0 / 90000, secs);
        cli_json_io(stdout);
        struct attn_stats st;
        model_ctx_attn_stats(mc, &st);
        cli_json_attend(stdout, &o, m, &st);
        printf(", \"cells\": [");
        for (int l = 0; l < n_len; l++)
            for (int d = 0; d < n_dep; d++) {
                const struct cell *c = &cells[l * n_dep + d];
                printf("%s\n  {\"length\": %lld, \"tokens_mean\": %.1f, \"depth\": %g, "
                       "\"correct\": %d, \"trials\": %d, \"accuracy\": %.4f, \"keys\": [",
                       l || d ? "," : "", (long long)lens[l], c->tokens_mean, depths[d],
                       c->correct, c->trials, (double)c->correct / c->trials);
                for (int t = 0; t < c->trials; t++) printf("%s%ld", t ? ", " : "", c->keys[t]);
                printf("], \"answers\": [");
                for (int t = 0; t < c->trials; t++) {
                    if (t) printf(", ");
                    cli_json_str(stdout, c->answers[t]);
                }
                printf("]}");
            }
        printf("]}\n");
    } else {
        printf("passkey retrieval: %s, %d trials per cell, seed %llu, greedy %d tokens, "
               "rope %s, %.1f s\n", o.model_path, trials, (unsigned long long)seed, n_gen,
               rope_scheme_name(rp.scheme), secs);
        printf("%-8s %-8s", "length", "tokens");
        for (int d = 0; d < n_dep; d++) printf(" d=%-6.2f", depths[d]);
        printf("\n");
        for (int l = 0; l < n_len; l++) {
            double tm = 0;
            for (int d = 0; d < n_dep; d++) tm += cells[l * n_dep + d].tokens_mean / n_dep;
            printf("%-8lld %-8.0f", (long long)lens[l], tm);
            for (int d = 0; d < n_dep; d++) {
                const struct cell *c = &cells[l * n_dep + d];
                char s[32];
                snprintf(s, sizeof s, "%d/%d", c->correct, c->trials);
                printf(" %-8s", s);
            }
            printf("\n");
        }
        printf("chance: a guessed 5-digit key is right with p = 1/90000.\n");
        if (beyond)
            printf("note: the model was trained at %lld tokens; longer prompts rely on the "
                   "position scheme (%s).\n", (long long)hp->n_ctx_train, rope_scheme_name(rp.scheme));
    }
    if (svg) write_svg(svg, o.model_path, lens, n_len, depths, n_dep, cells);
    free(buf);
    free(ids);
    free(cells);
    gen_free(g);
    cli_unload(&ck, mc, tk, m);
    return 0;
}
