/* cmd_generate.c - `kvtile generate MODEL -p PROMPT -n N`: continue a prompt,
 * greedy or with temperature / top-p sampling from a seed.
 * Positions are prepared for the whole evaluation's length (prompt + n),
 * known up front. With --grow-positions they follow the current length
 * instead (an open-ended session): when the table changes (LongRoPE's switch
 * to long factors, dynamic NTK), every cached key is rotated with the new
 * table from then on; --longrope-exact re-evaluates the prefix at each
 * change so the result equals a one-shot evaluation. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "base/kvt.h"
#include "engine/generate.h"

/* Text mode: each piece to stdout as it comes. */
static int print_piece(void *user, int32_t id, const char *piece, int len)
{
    (void)user;
    (void)id;
    if (len > 0) {
        fwrite(piece, 1, (size_t)len, stdout);
        fflush(stdout);
    }
    return 0;
}

int cmd_generate(int argc, char **argv)
{
    struct cli_opts o;
    cli_opts_default(&o);
    const char *prompt = NULL, *pfile = NULL;
    int64_t n_gen = 64;
    struct gen_params gp;
    gen_params_default(&gp);
    int grow = 0, exact = 0;
    struct opt tab[] = {
        OPT_STR("--prompt", "-p", "TEXT", &prompt, "the prompt"),
        OPT_STR("--file", "-f", "FILE", &pfile, "the prompt from FILE"),
        OPT_I64("--n-predict", "-n", "N", &n_gen, 0, 1 << 30, "tokens to generate at most"),
        CLI_OPTS_SAMPLE(&gp.sample),
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
    struct cli_kv ck;
    cli_kv_open(&o, m, "generate.kvt", 0, &ck);
    gen *g;
    if (gen_create(m, tk, &g) < 0) cli_die("out of memory");
    int32_t eos = tok_eos(tk);
    gp.n_predict = n_gen;
    gp.n_batch = o.n_batch;
    gp.stop_ids = &eos;
    gp.n_stop_ids = 1;
    gp.rope = &rp;
    gp.grow = grow;
    gp.exact = exact;
    if (!o.json) {
        fwrite(text, 1, len, stdout);
        gp.on_token = print_piece;
    }
    struct gen_result r;
    cli_gen_check(gen_run(g, mc, ck.kv, ids, 0, n_prompt, &gp, &r), &r, o.model_path,
                  ck.path[0] ? ck.path : "KV store");
    int64_t n_out = r.n_out, n_reeval = r.n_reeval;
    const char *out = gen_text(g, NULL);
    double prompt_tps = (double)n_prompt / (r.prefill_s + 1e-9);
    double decode_tps = (double)n_out / (r.decode_s + 1e-9);
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
               (long long)n_prompt, (long long)n_out, prompt_tps, decode_tps, r.prefill_s,
               r.decode_s, (long long)n_reeval, (long long)cli_peak_rss_bytes());
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
    free(ids);
    free(text);
    gen_free(g);
    cli_unload(&ck, mc, tk, m);
    return 0;
}
