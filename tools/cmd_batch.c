/* cmd_batch.c - `kvtile batch`: score or question many documents overnight.
 *
 * The parts: tools/batch.h (input, cache policy, tasks, journal).
 *
 * Input: a JSONL file, one object per line {"id", "text" | "path",
 * "prompt"?, "question"?} ("path" relative to the JSONL file's directory;
 * "prompt" replaces --template for that document), or a directory of .txt
 * files (sorted by name, id = file name). Blank lines are not documents.
 * Document i (0-based, in input order, bad lines included) goes to shard
 * i % N.
 *
 * Output: OUT gets one JSON line per document of this shard, in input
 * order, each with "index" and "id"; a bad document (malformed line,
 * missing file, text that is not UTF-8, too few tokens) gets {"index",
 * "id", "error"} and a line on stderr, and the batch goes on. The
 * run-dependent fields (cache_hit, prefill_tokens, prefill_s, decode_s) are
 * left out with --no-timings, so two runs can be compared byte for byte.
 *
 * --task score: tokens (BOS + text), every token after the first scored
 *   from an empty cache, nll_sum (the doubles summed in position order),
 *   perplexity, and per-bucket perplexity (bucket b: scored positions
 *   [b*B, (b+1)*B), B = --bucket). Positions are prepared for the
 *   document's length (the common position options apply).
 * --task generate: the template is rendered; the document part (before
 *   {question}) is evaluated with positions prepared for its length, the
 *   rest with positions prepared for prompt + n; then up to n tokens,
 *   greedy or temperature/top-p (document i samples from seed S mixed with
 *   i), cut at EOS or at the first stop string.
 *   The prompt is always the tokenization of the whole rendered text; the
 *   cached part is its longest prefix shared with the tokenization of the
 *   document part (at most all but one token, so the rest is never empty).
 *
 * Evaluation is cut in chunks of C = --batch rounded down to a multiple of
 * --tile-tokens (at least one tile), starting at 0: results do not depend
 * on where a run was interrupted, because a resumed document restarts at
 * a chunk boundary and is cut the same way.
 *
 * --cache-dir DIR: document caches (batch_cache.h). Score: the sidecar
 *   keeps every per-token NLL, so a hit reproduces nll_sum exactly without
 *   evaluating anything. Generate: a hit reopens the KV, appends only the
 *   question, and truncates back to the document afterwards. During a
 *   prefill the cache is checkpointed (kvs_sync, then sidecar) every
 *   --checkpoint tokens (rounded up to chunks; default 8192) and at the
 *   end; a later run reuses a partial cache from its last checkpoint.
 *
 * Journal and resume: OUT.journal gets a header line (a hash of every
 * option the output depends on) and then each finished document's output
 * line, appended and fsynced. At the end OUT.tmp is written in input order,
 * fsynced and renamed to OUT, and the journal removed. --resume keeps the
 * journal's finished documents (refusing a journal of other options), so a
 * resumed run's OUT equals an uninterrupted run's. On a fatal error (disk
 * full, I/O error) the batch stops with one line on stderr; the journal
 * keeps what was finished.
 */
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "base/kvt.h"
#include "tools/batch.h"

#define DEFAULT_TEMPLATE "{doc}\n\nQuestion: {question}\nAnswer:"

static char *unescape_nl(const char *s)
{
    char *d = batch_strdup(s), *w = d;
    for (const char *r = s; *r; r++) {
        if (r[0] == '\\' && r[1] == 'n') { *w++ = '\n'; r++; }
        else *w++ = *r;
    }
    *w = 0;
    return d;
}

static const char *const task_names[] = { [TASK_SCORE] = "score", [TASK_GENERATE] = "generate", NULL };

static void parse_shard(void *field, const char *name, const char *v)
{
    struct batch *b = field;
    char extra;
    if (sscanf(v, "%d/%d%c", &b->shard_i, &b->shard_n, &extra) != 2 || b->shard_n < 1 ||
        b->shard_i < 0 || b->shard_i >= b->shard_n)
        cli_die("%s: '%s' (expected i/N with 0 <= i < N)", name, v);
}

static void parse_stop(void *field, const char *name, const char *v)
{
    struct batch *b = field;
    if (b->n_stops == BATCH_MAX_STOPS) cli_die("%s: at most %d", name, BATCH_MAX_STOPS);
    if (!*v) cli_die("%s: empty string", name);
    b->stops[b->n_stops++] = v;
}

static void parse_args(struct batch *b, int argc, char **argv)
{
    cli_opts_default(&b->o);
    b->n_gen = 32;
    b->bucket = 256;
    b->checkpoint = 8192;
    sample_params_default(&b->sample);
    b->shard_n = 1;
    const char *tmpl = NULL;
    struct opt tab[] = {
        OPT_STR("--input", "-i", "INPUT", &b->input, "JSONL file or directory of .txt files"),
        OPT_STR("--output", "-o", "OUT", &b->out, "output JSONL (written at the end; OUT.journal meanwhile)"),
        OPT_CHOICE("--task", NULL, &b->task, task_names, "what to do with each document"),
        OPT_FLAG("--resume", NULL, &b->resume, "keep the documents OUT.journal says are finished"),
        OPT_FN("--shard", NULL, "i/N", b, parse_shard, "only documents with index % N == i"),
        OPT_I64("--bucket", NULL, "N", &b->bucket, 1, 1e12, "score: perplexity per N positions"),
        OPT_I64("--checkpoint", NULL, "N", &b->checkpoint, 1, 1e12, "cache checkpoint every N tokens"),
        OPT_I64("--n-predict", "-n", "N", &b->n_gen, 1, 1 << 20, "generate: max tokens"),
        OPT_STR("--template", NULL, "T", &tmpl, "generate: {doc}, {question}, \\n",
                .def = "\"{doc}\\n\\nQuestion: {question}\\nAnswer:\""),
        CLI_OPTS_SAMPLE(&b->sample),
        OPT_FN("--stop", NULL, "STR", b, parse_stop, "stop string (repeatable)"),
        OPT_FLAG("--no-timings", NULL, &b->no_timings, "leave out cache_hit, prefill_tokens, *_s"),
        CLI_OPTS_RUN(&b->o),
        CLI_OPTS_TILES(&b->o),
        CLI_OPTS_DISK(&b->o),
        CLI_OPTS_POS(&b->o),
        CLI_OPT_ATTEND(&b->o),
        CLI_OPTS_TEXT,
        OPT_END(),
    };
    const char *usage = "MODEL -i INPUT -o OUT.jsonl [options]";
    if (opt_parse("batch", usage, tab, argc, argv, &b->o.model_path, 1) < 1 || !b->input || !b->out)
        opt_usage("batch", usage);
    b->tmpl = DEFAULT_TEMPLATE;
    if (tmpl) b->tmpl = b->tmpl_owned = unescape_nl(tmpl);
}

/* Model, positions, chunk, the shared store or the cache directory. */
static void setup(struct batch *b)
{
    cli_load(b->o.model_path, &b->m, &b->tk);
    b->hp = model_hparams(b->m);
    model_fingerprint(b->m, b->fp);
    for (int k = 0; k < 32; k++) sprintf(b->fp_hex + 2 * k, "%02x", b->fp[k]);
    cli_rope_params(&b->o, b->m, &b->rp);
    b->chunk = KVT_MAX(b->o.n_batch / b->o.tile_tokens, 1) * b->o.tile_tokens;
    b->o.n_batch = b->chunk;
    const struct rope_params *rp = &b->rp;
    snprintf(b->pos_key, sizeof b->pos_key,
             "rope=%s scale=%.17g base=%.17g orig=%lld attn=%.17g beta=%.17g/%.17g ext=%.17g "
             "nhat=%lld factors=%d se=%d:%d type=%d tile=%d chunk=%d",
             rope_scheme_name(rp->scheme), rp->scale, rp->freq_base, (long long)rp->orig_ctx,
             rp->attn_factor, rp->beta_fast, rp->beta_slow, rp->ext_factor, (long long)rp->n_hat,
             rp->have_factors ? (int)XXH3_64bits(rp->factors_long, sizeof rp->factors_long) : 0,
             b->o.se_group, b->o.se_window, b->o.cache_type, b->o.tile_tokens, b->chunk);
    if (rp->mscale_mult > 0) { /* (absent when unset: the keys of earlier runs stay valid) */
        size_t kl = strlen(b->pos_key);
        snprintf(b->pos_key + kl, sizeof b->pos_key - kl, " mscale=%.17g", rp->mscale_mult);
    }
    b->mc = cli_model_ctx(&b->o, b->m);
    if (b->o.cache_dir) cli_mkdir(b->o.cache_dir);
    else cli_kv_open(&b->o, b->m, "batch.kvt", 0, &b->shared);
    b->logits = malloc((size_t)b->chunk * (size_t)b->hp->n_vocab * sizeof *b->logits);
    if (!b->logits || gen_create(b->m, b->tk, &b->gen) < 0) cli_die("out of memory");
}

static void teardown(struct batch *b)
{
    for (int64_t i = 0; i < b->n_docs; i++) {
        free(b->lines[i]);
        free(b->docs[i].name);
    }
    free(b->lines);
    free(b->docs);
    free(b->in_text);
    free(b->logits);
    gen_free(b->gen);
    cli_unload(b->o.cache_dir ? NULL : &b->shared, b->mc, b->tk, b->m);
    free(b->tmpl_owned);
    free(b);
}

int cmd_batch(int argc, char **argv)
{
    struct batch *b = calloc(1, sizeof *b);
    if (!b) cli_die("out of memory");
    parse_args(b, argc, argv);
    batch_load_input(b);
    setup(b);
    batch_journal_open(b);
    int64_t mine = 0;
    for (int64_t i = 0; i < b->n_docs; i++) mine += i % b->shard_n == b->shard_i;
    struct cli_progress pr;
    cli_progress_start(&pr, b->o.quiet, "documents");
    double t0 = kvt_now_s();
    for (int64_t i = 0; i < b->n_docs; i++) {
        if (i % b->shard_n != b->shard_i || b->lines[i]) continue;
        struct doc_in d;
        char err[8400];
        char *line;
        if (batch_load_doc(b, i, &d, err, sizeof err) < 0)
            line = batch_error_line(b, i, d.id, err);
        else if (b->task == TASK_SCORE)
            line = batch_do_score(b, i, &d, &pr);
        else
            line = batch_do_generate(b, i, &d, &pr);
        doc_in_free(&d);
        batch_journal_append(b, line);
        b->lines[i] = line;
        b->n_done++;
        cli_progress(&pr, b->n_done, mine, b->tok_eval, NULL);
    }
    cli_progress_end(&pr);
    batch_write_output(b);
    double secs = kvt_now_s() - t0;
    if (!b->o.quiet)
        cli_warn("batch: %lld documents, %lld errors, %lld cache hits, %lld tokens evaluated "
                 "in %.1f s (%.0f tok/s)", (long long)mine, (long long)b->n_errors,
                 (long long)b->n_hits, (long long)b->tok_eval, secs,
                 secs > 0 ? (double)b->tok_eval / secs : 0.0);
    teardown(b);
    return 0;
}
