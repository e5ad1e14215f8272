/* cmd_generate.c - `kvtile generate MODEL -p PROMPT -n N`: continue a prompt,
 * greedy or with temperature / top-p sampling from a seed.
 * Positions are prepared for the whole evaluation's length (prompt + n),
 * known up front. With --grow-positions they follow the current length
 * instead (an open-ended session): when the table changes (LongRoPE's switch
 * to long factors, dynamic NTK), every cached key is rotated with the new
 * table from then on; --longrope-exact re-evaluates the prefix at each
 * change so the result equals a one-shot evaluation. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "base/kvt.h"

/* xorshift64*: the sampler's generator, reproducible from the seed. */
static double rng_uniform(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return (double)((*s * 0x2545F4914F6CDD1DULL) >> 11) * (1.0 / 9007199254740992.0);
}

struct cand { float p; int id; };

static int cand_cmp(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->p != y->p) return x->p < y->p ? 1 : -1;
    return x->id - y->id;
}

/* Greedy when temp <= 0; else softmax(logits / temp), keep the smallest
 * set of most likely tokens whose mass reaches top_p, draw from it. */
static int sample(const float *logits, int n_vocab, double temp, double top_p,
                  uint64_t *rng, struct cand *c)
{
    int best = 0;
    for (int i = 1; i < n_vocab; i++) if (logits[i] > logits[best]) best = i;
    if (temp <= 0) return best;
    double sum = 0;
    for (int i = 0; i < n_vocab; i++) {
        c[i].id = i;
        c[i].p = (float)exp((logits[i] - logits[best]) / temp);
        sum += c[i].p;
    }
    qsort(c, (size_t)n_vocab, sizeof *c, cand_cmp);
    double mass = 0;
    int k = 0;
    while (k < n_vocab) { mass += c[k].p / sum; k++; if (mass >= top_p) break; }
    double r = rng_uniform(rng) * mass * sum, acc = 0;
    for (int i = 0; i < k; i++) { acc += c[i].p; if (r < acc) return c[i].id; }
    return c[k - 1].id;
}

int cmd_generate(int argc, char **argv)
{
    struct cli_opts o;
    cli_opts_default(&o);
    const char *prompt = NULL, *pfile = NULL;
    int64_t n_gen = 64;
    double temp = 0.0, top_p = 0.95;
    uint64_t seed = 42;
    int grow = 0, exact = 0;
    struct opt tab[] = {
        OPT_STR("--prompt", "-p", "TEXT", &prompt, "the prompt"),
        OPT_STR("--file", "-f", "FILE", &pfile, "the prompt from FILE"),
        OPT_I64("--n-predict", "-n", "N", &n_gen, 0, 1 << 30, "tokens to generate at most"),
        OPT_DOUBLE("--temp", NULL, "T", &temp, 0, 1e3, "temperature (0: greedy)"),
        OPT_DOUBLE("--top-p", NULL, "P", &top_p, 1e-9, 1, "nucleus sampling mass"),
        OPT_U64("--seed", NULL, "S", &seed, "sampler seed"),
        OPT_FLAG("--grow-positions", NULL, &grow,
                 "positions follow the current length (an open-ended\n"
                 "session) instead of prompt + n"),
        OPT_FLAG("--longrope-exact", NULL, &exact,
                 "with growing positions: re-evaluate the prefix when the\n"
                 "rotation table changes (implies --grow-positions)"),
        CLI_OPTS_MODEL_RUN(&o),
        OPT_END(),
    };
    const char *usage = "MODEL -p PROMPT|-f FILE [options]";
    if (opt_parse("generate", usage, tab, argc, argv, &o.model_path, 1) < 1 ||
        !prompt == !pfile)
        opt_usage("generate", usage);
    if (exact) grow = 1;
    model *m;
    tok *tk;
    cli_load(o.model_path, &m, &tk);
    const struct model_hparams *hp = model_hparams(m);
    size_t len;
    char *text = pfile ? cli_read_file(pfile, &len) : strdup(prompt);
    if (!pfile) len = strlen(text);
    int64_t n_prompt;
    int32_t *ids = cli_tokenize(tk, pfile ? pfile : "prompt", text, len, tok_add_bos(tk), &n_prompt);
    if (n_prompt < 1) cli_die("prompt: empty");
    int64_t total = n_prompt + n_gen;
    o.n_ctx = total;
    int32_t *seq = realloc(ids, (size_t)total * sizeof *seq);
    if (!seq) cli_die("out of memory");
    ids = seq;
    struct rope_params rp;
    cli_rope_params(&o, m, &rp);
    model_ctx *mc = cli_model_ctx(&o, m);
    int rc = model_ctx_set_rope(mc, &rp, grow ? n_prompt : total);
    if (rc < 0) cli_die("%s: positions: %s", o.model_path, kvt_strerror(rc));
    struct cli_kv ck;
    cli_kv_open(&o, m, "generate.kvt", 0, &ck);
    float *logits = malloc((size_t)hp->n_vocab * sizeof *logits);
    struct cand *cands = malloc((size_t)hp->n_vocab * sizeof *cands);
    if (!logits || !cands) cli_die("out of memory");
    uint64_t rng = seed * 0x9E3779B97F4A7C15ULL + 1;
    double t0 = kvt_now_s();
    for (int64_t p0 = 0; p0 < n_prompt; p0 += o.n_batch) {
        int n = (int)KVT_MIN((int64_t)o.n_batch, n_prompt - p0);
        rc = model_eval(mc, ck.kv, ids + p0, n, p0, logits, 0);
        if (rc < 0) cli_die("KV store: %s", kvt_strerror(rc));
    }
    double t1 = kvt_now_s();
    if (!o.json) fwrite(text, 1, len, stdout);
    char piece[256];
    size_t out_len = 0, out_cap = 1024;
    char *out = malloc(out_cap); /* the generated text, for --json */
    if (!out) cli_die("out of memory");
    int64_t pos = n_prompt, n_out = 0, n_reeval = 0;
    for (; n_out < n_gen; n_out++) {
        int id = sample(logits, hp->n_vocab, temp, top_p, &rng, cands);
        if (id == tok_eos(tk)) break;
        int w = tok_decode_piece(tk, id, piece, sizeof piece);
        if (w > 0 && o.json) {
            if (out_len + (size_t)w + 1 > out_cap) {
                out_cap = 2 * (out_len + (size_t)w + 1);
                out = realloc(out, out_cap);
                if (!out) cli_die("out of memory");
            }
            memcpy(out + out_len, piece, (size_t)w);
            out_len += (size_t)w;
        } else if (w > 0) {
            fwrite(piece, 1, (size_t)w, stdout);
            fflush(stdout);
        }
        ids[pos] = id;
        if (grow) {
            int changed = model_ctx_set_rope(mc, &rp, pos + 1);
            if (changed < 0) cli_die("%s: positions: %s", o.model_path, kvt_strerror(changed));
            if (changed && exact) { /* the prefix again, under the new table */
                n_reeval++;
                cli_reevaluate(mc, ck.kv, ids, pos, o.n_batch, ck.path[0] ? ck.path : "KV store");
            }
        }
        rc = model_eval(mc, ck.kv, ids + pos, 1, pos, logits, 0);
        if (rc < 0) cli_die("KV store: %s", kvt_strerror(rc));
        pos++;
    }
    double t2 = kvt_now_s();
    double prompt_tps = (double)n_prompt / (t1 - t0 + 1e-9);
    double decode_tps = (double)n_out / (t2 - t1 + 1e-9);
    out[out_len] = 0;
    if (o.json) {
        printf("{");
        cli_json_cpu(stdout);
        printf("\"prompt\": ");
        cli_json_str(stdout, text);
        printf(", \"text\": ");
        cli_json_str(stdout, out);
        printf(", \"prompt_tokens\": %lld, \"generated_tokens\": %lld, "
               "\"prompt_tok_s\": %.3f, \"decode_tok_s\": %.3f, \"prompt_s\": %.6f, "
               "\"decode_s\": %.6f, \"reevaluations\": %lld, \"peak_rss_bytes\": %lld, ",
               (long long)n_prompt, (long long)n_out, prompt_tps, decode_tps, t1 - t0,
               t2 - t1, (long long)n_reeval, (long long)cli_peak_rss_bytes());
        cli_json_io(stdout);
        struct attn_stats st;
        model_ctx_attn_stats(mc, &st);
        cli_json_attend(stdout, &o, m, &st);
        printf("}\n");
    } else {
        printf("\n");
    }
    if (!o.quiet && !o.json)
        fprintf(stderr, "kvtile: prompt %lld tokens at %.1f tok/s, generated %lld at %.1f tok/s%s\n",
                (long long)n_prompt, prompt_tps, (long long)n_out, decode_tps, n_reeval ? ", prefix re-evaluated at a position change" : "");
    free(logits); free(cands); free(ids); free(text); free(out);
    cli_kv_close(&ck);
    model_ctx_free(mc);
    tok_free(tk);
    model_close(m);
    return 0;
}
