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
#include "io/kvt.h"

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
    o.kv_backing = KVS_RAM;
    const char *prompt = NULL, *pfile = NULL;
    int64_t n_gen = 64;
    double temp = 0.0, top_p = 0.95;
    uint64_t seed = 42;
    int grow = 0, exact = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_common_opt(&o, argc, argv, &i)) continue;
        if (!strcmp(a, "-p") && i + 1 < argc) prompt = argv[++i];
        else if (!strcmp(a, "-f") && i + 1 < argc) pfile = argv[++i];
        else if (!strcmp(a, "-n") && i + 1 < argc) n_gen = cli_parse_count(a, argv[++i]);
        else if (!strcmp(a, "--temp") && i + 1 < argc) temp = atof(argv[++i]);
        else if (!strcmp(a, "--top-p") && i + 1 < argc) top_p = atof(argv[++i]);
        else if (!strcmp(a, "--seed") && i + 1 < argc) seed = (uint64_t)cli_parse_count(a, argv[++i]);
        else if (!strcmp(a, "--grow-positions")) grow = 1;
        else if (!strcmp(a, "--longrope-exact")) exact = grow = 1;
        else if (a[0] == '-') {
            fprintf(stderr, "usage: kvtile generate MODEL -p PROMPT|-f FILE [-n N] [--temp T] [--top-p P] [--seed S]\n"
                    "  [--grow-positions] [--longrope-exact]\n%s", cli_common_help);
            return 2;
        } else o.model_path = a;
    }
    if (!o.model_path || (!prompt && !pfile)) {
        fprintf(stderr, "usage: kvtile generate MODEL -p PROMPT|-f FILE [-n N] [--temp T] [--top-p P] [--seed S]\n");
        return 2;
    }
    if (!(top_p > 0 && top_p <= 1)) cli_die("--top-p must be in (0, 1]");
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
    /* --json: the generated text is kept for the JSON object at the end */
    char *gen = NULL;
    size_t gen_len = 0, gen_cap = 0;
    if (!o.json) fwrite(text, 1, len, stdout);
    char piece[256];
    int64_t pos = n_prompt, n_out = 0, n_reeval = 0;
    for (; n_out < n_gen; n_out++) {
        int id = sample(logits, hp->n_vocab, temp, top_p, &rng, cands);
        if (id == tok_eos(tk)) break;
        int w = tok_decode_piece(tk, id, piece, sizeof piece);
        if (w > 0 && o.json) {
            if (gen_len + (size_t)w + 1 > gen_cap) {
                gen_cap = 2 * (gen_len + (size_t)w + 1);
                char *g = realloc(gen, gen_cap);
                if (!g) cli_die("out of memory");
                gen = g;
            }
            memcpy(gen + gen_len, piece, (size_t)w);
            gen_len += (size_t)w;
            gen[gen_len] = 0;
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
    if (o.json) {
        printf("{\"text\": ");
        cli_json_str(stdout, gen ? gen : "");
        printf(", \"prompt_tokens\": %lld, \"generated_tokens\": %lld, "
               "\"prompt_seconds\": %.3f, \"generate_seconds\": %.3f",
               (long long)n_prompt, (long long)n_out, t1 - t0, t2 - t1);
        struct attn_stats st;
        model_ctx_attn_stats(mc, &st);
        cli_json_attend(stdout, &o, m, &st);
        printf("}");
    }
    free(gen);
    printf("\n");
    if (!o.quiet)
        fprintf(stderr, "kvtile: prompt %lld tokens at %.1f tok/s, generated %lld at %.1f tok/s%s\n",
                (long long)n_prompt, (double)n_prompt / (t1 - t0 + 1e-9), (long long)n_out,
                (double)n_out / (t2 - t1 + 1e-9), n_reeval ? ", prefix re-evaluated at a position change" : "");
    free(logits); free(cands); free(ids); free(text);
    cli_kv_close(&ck);
    model_ctx_free(mc);
    tok_free(tk);
    model_close(m);
    return 0;
}
