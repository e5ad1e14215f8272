/* cmd_ppl.c - `kvtile ppl`: perplexity of a long text.
 *
 * Protocol (llama.cpp's llama-perplexity, so numbers compare): the text is
 * tokenized once with BOS and cut into non-overlapping chunks of n_ctx
 * tokens (the tail is dropped; a text shorter than n_ctx is one chunk of
 * its own length); each chunk is evaluated from an empty KV store with its
 * first token replaced by BOS; the logits at positions n/2 .. n-2 are
 * scored against the next tokens (--score all: positions 0 .. n-2);
 * PPL = exp(mean NLL). Positions are prepared for the chunk's true length.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "io/kvt.h"

static void usage(void)
{
    fprintf(stderr,
            "usage: kvtile ppl MODEL -f FILE [options]\n"
            "  -f FILE              text to score\n"
            "  -c, --ctx N          tokens per chunk (default: the model's context)\n"
            "  --chunks K           score only the first K chunks\n"
            "  --score half|all     score the second half of each chunk (default,\n"
            "                       as llama-perplexity) or every token after the first\n"
            "%s", cli_common_help);
    exit(2);
}

/* -log softmax(logits)[target], in double. */
static double nll_of(const float *logits, int n_vocab, int target)
{
    float mx = logits[0];
    for (int i = 1; i < n_vocab; i++) mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0.0;
    for (int i = 0; i < n_vocab; i++) sum += exp((double)(logits[i] - mx));
    return -((double)(logits[target] - mx) - log(sum));
}

int cmd_ppl(int argc, char **argv)
{
    struct cli_opts o;
    cli_opts_default(&o);
    const char *file = NULL;
    int64_t max_chunks = -1;
    int score_all = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_common_opt(&o, argc, argv, &i)) continue;
        if (!strcmp(a, "-f") && i + 1 < argc) file = argv[++i];
        else if ((!strcmp(a, "-c") || !strcmp(a, "--ctx")) && i + 1 < argc)
            o.n_ctx = cli_parse_count(a, argv[++i]);
        else if (!strcmp(a, "--chunks") && i + 1 < argc)
            max_chunks = cli_parse_count(a, argv[++i]);
        else if (!strcmp(a, "--score") && i + 1 < argc) {
            const char *v = argv[++i];
            if (!strcmp(v, "all")) score_all = 1;
            else if (!strcmp(v, "half")) score_all = 0;
            else cli_die("--score: '%s' (expected half or all)", v);
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) usage();
        else if (a[0] == '-' && a[1]) cli_die("ppl: unknown option '%s' (see kvtile ppl --help)", a);
        else if (!o.model_path) o.model_path = a;
        else cli_die("ppl: unexpected argument '%s'", a);
    }
    if (!o.model_path || !file) usage();

    model *m;
    tok *tk;
    cli_load(o.model_path, &m, &tk);
    const struct model_hparams *hp = model_hparams(m);
    if (o.n_ctx == 0) o.n_ctx = hp->n_ctx_train;
    if (o.n_ctx < 2) cli_die("-c: a chunk needs at least 2 tokens");

    size_t len;
    char *text = cli_read_file(file, &len);
    int64_t n_tok;
    int32_t *ids = cli_tokenize(tk, file, text, len, 1, &n_tok);
    free(text);
    if (n_tok < 2) cli_die("%s: only %lld tokens", file, (long long)n_tok);

    int64_t n_ctx = o.n_ctx;
    if (n_ctx > n_tok) n_ctx = n_tok; /* one chunk: the whole text */
    int64_t n_chunks = n_tok / n_ctx;
    if (max_chunks >= 0 && max_chunks < n_chunks) n_chunks = max_chunks;
    if (n_chunks < 1) cli_die("%s: no chunk to score", file);
    if (o.n_batch > n_ctx) o.n_batch = (int)n_ctx;

    struct rope_params rp;
    cli_rope_params(&o, m, &rp);
    model_ctx *mc = cli_model_ctx(&o, m);
    int rc = model_ctx_set_rope(mc, &rp, n_ctx);
    if (rc < 0) cli_die("%s: positions: %s", o.model_path, kvt_strerror(rc));
    struct cli_kv ck;
    cli_kv_open(&o, m, "ppl.kvt", 0, &ck);

    int n_vocab = hp->n_vocab;
    float *logits = malloc((size_t)o.n_batch * (size_t)n_vocab * sizeof *logits);
    int32_t *chunk = malloc((size_t)n_ctx * sizeof *chunk);
    if (!logits || !chunk) cli_die("out of memory");
    int bos = tok_bos(tk);

    int64_t first = score_all ? 0 : n_ctx / 2;
    double nll_sum = 0.0, nll2_sum = 0.0;
    int64_t n_scored = 0, n_eval = 0;
    struct cli_progress pr;
    cli_progress_start(&pr, o.quiet || o.json, "chunks");
    double t0 = kvt_now_s();
    for (int64_t ci = 0; ci < n_chunks; ci++) {
        memcpy(chunk, ids + ci * n_ctx, (size_t)n_ctx * sizeof *chunk);
        if (bos >= 0) chunk[0] = bos;
        if ((rc = kvs_truncate(ck.kv, 0)) < 0)
            cli_die("%s: %s", ck.path[0] ? ck.path : "KV store", kvt_strerror(rc));
        for (int64_t p0 = 0; p0 < n_ctx; p0 += o.n_batch) {
            int n = (int)KVT_MIN((int64_t)o.n_batch, n_ctx - p0);
            rc = model_eval(mc, ck.kv, chunk + p0, n, p0, logits, 1);
            if (rc < 0) cli_die("%s: %s", ck.path[0] ? ck.path : "KV store", kvt_strerror(rc));
            n_eval += n;
            for (int t = 0; t < n; t++) {
                int64_t pos = p0 + t;
                if (pos < first || pos > n_ctx - 2) continue;
                double v = nll_of(logits + (size_t)t * n_vocab, n_vocab, chunk[pos + 1]);
                nll_sum += v;
                nll2_sum += v * v;
                n_scored++;
            }
            char extra[64];
            snprintf(extra, sizeof extra, "ppl %.4f", n_scored ? exp(nll_sum / n_scored) : 0.0);
            cli_progress(&pr, ci, n_chunks, n_eval, extra);
        }
    }
    cli_progress(&pr, n_chunks, n_chunks, n_eval, NULL);
    cli_progress_end(&pr);
    double secs = kvt_now_s() - t0;
    double mean = nll_sum / (double)n_scored;
    double ppl = exp(mean);
    double var = nll2_sum / (double)n_scored - mean * mean;
    double err = n_scored > 1 && var > 0 ? sqrt(var / (double)(n_scored - 1)) * ppl : 0.0;
    double tps = secs > 0 ? (double)n_eval / secs : 0.0;
    int64_t rss = kvt_peak_rss_bytes();
    if (o.json) {
        printf("{\"ppl\": %.6f, \"ppl_stderr\": %.6f, \"nll_sum\": %.17g, "
               "\"n_scored\": %lld, \"n_ctx\": %lld, \"n_chunks\": %lld, "
               "\"n_tokens\": %lld, \"tokens_per_s\": %.1f, \"seconds\": %.3f, "
               "\"peak_rss_bytes\": %lld, \"kv_store\": \"%s\", \"rope\": \"%s\"}\n",
               ppl, err, nll_sum, (long long)n_scored, (long long)n_ctx,
               (long long)n_chunks, (long long)n_tok, tps, secs, (long long)rss,
               o.kv_backing == KVS_DISK ? "disk" : "ram", rope_scheme_name(rp.scheme));
    } else {
        printf("%lld tokens, %lld chunks of %lld, %lld scored, %.1f tokens/s, peak RSS %.1f MiB\n",
               (long long)n_tok, (long long)n_chunks, (long long)n_ctx,
               (long long)n_scored, tps, (double)rss / 1048576.0);
        printf("PPL = %.4f +/- %.5f\n", ppl, err);
    }
    free(logits);
    free(chunk);
    free(ids);
    cli_kv_close(&ck);
    model_ctx_free(mc);
    tok_free(tk);
    model_close(m);
    return 0;
}
