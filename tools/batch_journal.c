/* batch_journal.c - the journal and the output of `kvtile batch` (batch.h).
 *
 * OUT.journal (kvstore/journal.h) starts with the run's key, a hash of
 * every option and input the output lines depend on; each finished
 * document's line is appended and fsynced. --resume keeps the lines of a
 * journal of the same key (one of another key is refused). At the end OUT
 * is written whole in input order and the journal removed. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

#include "base/kvt.h"
#include "tools/batch.h"
#include "tools/json.h"

void batch_journal_append(struct batch *b, const char *line)
{
    int rc = jnl_append(b->jnl, line, strlen(line));
    if (rc < 0) cli_die("%s: %s", b->journal, kvt_strerror(rc));
}

/* Every option the output lines depend on, hashed. */
static uint64_t run_key(const struct batch *b)
{
    char *s = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&s, &n);
    if (!f) cli_die("out of memory");
    fprintf(f, "%s|%s|%d|%d/%d|%lld|%lld|%s|%.17g|%.17g|%llu|%d|%s|%d|%lld", b->fp_hex,
            b->input, b->task, b->shard_i, b->shard_n, (long long)b->n_gen,
            (long long)b->bucket, b->tmpl, b->sample.temp, b->sample.top_p,
            (unsigned long long)b->sample.seed,
            b->no_timings, b->pos_key, b->chunk, (long long)b->n_docs);
    for (int k = 0; k < b->n_stops; k++) fprintf(f, "|%s", b->stops[k]);
    /* the input itself: the JSONL text, and the size and mtime of every
     * document file (a directory's, or one a JSONL line names by "path") */
    if (!b->is_dir)
        fprintf(f, "|text=%016llx", (unsigned long long)XXH3_64bits(b->in_text, strlen(b->in_text)));
    for (int64_t i = 0; i < b->n_docs; i++) {
        char p[8192];
        if (!batch_doc_file(b, i, p, sizeof p)) continue;
        struct stat st;
        if (stat(p, &st) == 0)
            fprintf(f, "|%lld@%lld.%09ld", (long long)st.st_size, (long long)st.st_mtim.tv_sec,
                    st.st_mtim.tv_nsec);
    }
    if (b->o.sel.on) { /* only then: journals of exact runs keep their keys */
        char spec[128];
        sel_format(&b->o.sel, spec, sizeof spec);
        fprintf(f, "|attend=%s", spec);
    }
    fclose(f);
    uint64_t h = XXH3_64bits(s, n);
    free(s);
    return h;
}

void batch_journal_open(struct batch *b)
{
    snprintf(b->journal, sizeof b->journal, "%s.journal", b->out);
    char key[128];
    snprintf(key, sizeof key, "kvtile-batch 2 run=%016llx", (unsigned long long)run_key(b));
    b->lines = calloc((size_t)b->n_docs, sizeof *b->lines);
    if (!b->lines) cli_die("out of memory");
    b->jnl = cli_journal_open(b->journal, key, b->resume, "input or options");
    int64_t kept = 0;
    for (int64_t r = 0; r < jnl_count(b->jnl); r++) {
        size_t l;
        const char *rec = jnl_record(b->jnl, r, &l);
        struct jrec_field f[BATCH_MAX_FIELDS];
        struct json_t *jb;
        int nf = jrec_parse(rec, l, f, BATCH_MAX_FIELDS, &jb, NULL);
        const struct jrec_field *ix = nf > 0 ? jrec_get(f, nf, "index") : NULL;
        jrec_free(jb);
        if (!ix || ix->type != JREC_NUM || ix->num < 0 || ix->num >= (double)b->n_docs ||
            ix->num != floor(ix->num))
            cli_die("%s: record %lld is not a document line; remove the journal or drop --resume",
                    b->journal, (long long)r + 1);
        int64_t k = (int64_t)ix->num;
        if (!b->lines[k]) {
            b->lines[k] = batch_strdup(rec);
            if (strstr(b->lines[k], "\"error\":")) b->n_errors++;
            kept++;
        }
    }
    b->n_done = kept;
    if (b->resume && !b->o.quiet)
        cli_warn("%s: resuming, %lld documents already finished", b->journal, (long long)kept);
}

void batch_write_output(struct batch *b)
{
    struct cli_out out;
    FILE *f = cli_out_open(&out, b->out);
    for (int64_t i = 0; i < b->n_docs; i++)
        if (b->lines[i]) { fputs(b->lines[i], f); fputc('\n', f); }
    cli_out_commit(&out);
    int rc = jnl_remove(b->jnl);
    b->jnl = NULL;
    if (rc < 0) cli_die("%s: %s", b->journal, kvt_strerror(rc));
}
