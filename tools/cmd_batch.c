/* cmd_batch.c - `kvtile batch`: score or question many documents overnight.
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
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "cli.h"
#include "base/kvt.h"
#include "kvstore/journal.h"
#include "tools/batch_cache.h"
#include "tools/batch_prompt.h"
#include "tools/json.h"

#define MAX_STOPS 16
#define MAX_FIELDS 64
#define DEFAULT_TEMPLATE "{doc}\n\nQuestion: {question}\nAnswer:"

enum task { TASK_SCORE, TASK_GENERATE };

struct batch {
    struct cli_opts o;
    const char *input, *out;
    int task, resume, no_timings;
    int shard_i, shard_n;
    int64_t n_gen, bucket, checkpoint;
    const char *tmpl;
    char *tmpl_owned;          /* --template, unescaped */
    double temp, top_p;
    uint64_t seed;
    const char *stops[MAX_STOPS];
    int n_stops;

    /* input */
    int is_dir;
    char *in_text;             /* JSONL file contents */
    char in_dir[4096];         /* JSONL's directory, or the input directory */
    struct doc { size_t off, len; int64_t line; char *name; } *docs;
    int64_t n_docs;

    /* model */
    model *m;
    tok *tk;
    model_ctx *mc;
    struct rope_params rp;
    const struct model_hparams *hp;
    uint8_t fp[32];
    char fp_hex[65];
    char pos_key[512];
    int chunk;                 /* C */
    struct cli_kv shared;      /* the store when there is no --cache-dir */
    float *logits;             /* (chunk, n_vocab) */
    struct cand { float p; int id; } *cands;

    /* journal and outputs */
    char journal[8192];
    jnl_file *jnl;
    char **lines;              /* (n_docs) finished output lines, or NULL */

    /* totals */
    int64_t n_done, n_hits, n_errors, tok_eval;
};

/* ---- small helpers ------------------------------------------------------ */

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (!d) cli_die("out of memory");
    return d;
}

static void hex(const uint8_t *b, int n, char *out)
{
    for (int i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", b[i]);
}

/* One record to the journal, fsynced; a failure is fatal (disk full). */
static void journal_append(struct batch *b, const char *line)
{
    int rc = jnl_append(b->jnl, line, strlen(line));
    if (rc < 0) cli_die("%s: %s", b->journal, kvt_strerror(rc));
}

/* ---- input -------------------------------------------------------------- */

static int name_cmp(const void *x, const void *y)
{
    return strcmp(((const struct doc *)x)->name, ((const struct doc *)y)->name);
}

static void load_input(struct batch *b)
{
    struct stat st;
    if (stat(b->input, &st) != 0) cli_die("%s: %s", b->input, strerror(errno));
    int64_t cap = 64;
    b->docs = malloc((size_t)cap * sizeof *b->docs);
    if (!b->docs) cli_die("out of memory");
    if (S_ISDIR(st.st_mode)) {
        b->is_dir = 1;
        snprintf(b->in_dir, sizeof b->in_dir, "%s", b->input);
        DIR *d = opendir(b->input);
        if (!d) cli_die("%s: %s", b->input, strerror(errno));
        struct dirent *e;
        while ((e = readdir(d))) {
            size_t l = strlen(e->d_name);
            if (l < 5 || strcmp(e->d_name + l - 4, ".txt") || e->d_name[0] == '.') continue;
            if (b->n_docs == cap) {
                cap *= 2;
                b->docs = realloc(b->docs, (size_t)cap * sizeof *b->docs);
                if (!b->docs) cli_die("out of memory");
            }
            b->docs[b->n_docs++] = (struct doc){ 0, 0, 0, xstrdup(e->d_name) };
        }
        closedir(d);
        qsort(b->docs, (size_t)b->n_docs, sizeof *b->docs, name_cmp);
        return;
    }
    size_t len;
    b->in_text = cli_read_file(b->input, &len);
    const char *slash = strrchr(b->input, '/');
    if (slash) snprintf(b->in_dir, sizeof b->in_dir, "%.*s", (int)(slash - b->input), b->input);
    else snprintf(b->in_dir, sizeof b->in_dir, ".");
    int64_t line = 0;
    for (size_t pos = 0; pos < len;) {
        const char *nl = memchr(b->in_text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - b->in_text) : len;
        line++;
        size_t s = pos;
        while (s < end && strchr(" \t\r", b->in_text[s])) s++;
        if (s < end) {
            if (b->n_docs == cap) {
                cap *= 2;
                b->docs = realloc(b->docs, (size_t)cap * sizeof *b->docs);
                if (!b->docs) cli_die("out of memory");
            }
            b->docs[b->n_docs++] = (struct doc){ pos, end - pos, line, NULL };
        }
        pos = end + 1;
    }
}

/* A document's inputs: text (malloc'ed), question, template, id. On a bad
 * record returns < 0 with a message in err (the batch goes on). */
struct doc_in {
    char *text;
    size_t text_len;
    char *id, *question, *tmpl;
    struct json_t *jroot; /* owns question and tmpl */
    char src[8300];     /* where the text came from, for messages */
};

static void doc_in_free(struct doc_in *d)
{
    free(d->text);
    jrec_free(d->jroot);
    free(d->id);
    memset(d, 0, sizeof *d);
}

static int read_doc_file(const char *path, struct doc_in *d, char *err, size_t cap)
{
    snprintf(d->src, sizeof d->src, "%s", path);
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (!f) { snprintf(err, cap, "%s: %s", path, strerror(errno)); return -1; }
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        snprintf(err, cap, "%s: not a regular file", path);
        return -1;
    }
    d->text = malloc((size_t)st.st_size + 1);
    if (!d->text) cli_die("%s: out of memory", path);
    d->text_len = fread(d->text, 1, (size_t)st.st_size, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || d->text_len != (size_t)st.st_size) {
        snprintf(err, cap, "%s: read error", path);
        return -1;
    }
    d->text[d->text_len] = 0;
    return 0;
}

static int load_doc(struct batch *b, int64_t i, struct doc_in *d, char *err, size_t cap)
{
    memset(d, 0, sizeof *d);
    const struct doc *dc = &b->docs[i];
    char path[8192];
    if (b->is_dir) {
        d->id = xstrdup(dc->name);
        snprintf(path, sizeof path, "%s/%s", b->in_dir, dc->name);
        return read_doc_file(path, d, err, cap);
    }
    const char *s = b->in_text + dc->off;
    struct jrec_field f[MAX_FIELDS];
    struct jrec_err je;
    int n = jrec_parse(s, dc->len, f, MAX_FIELDS, &d->jroot, &je);
    if (n == KVT_EUTF8) {
        snprintf(err, cap, "%s:%lld: text is not valid UTF-8 (near byte %zu)", b->input,
                 (long long)dc->line, je.off);
        return -1;
    }
    if (n < 0) {
        snprintf(err, cap, "%s:%lld: malformed JSON near byte %zu: %s", b->input,
                 (long long)dc->line, je.off, je.text);
        return -1;
    }
    const struct jrec_field *id = jrec_get(f, n, "id"), *text = jrec_get(f, n, "text"),
                            *p = jrec_get(f, n, "path"), *q = jrec_get(f, n, "question"),
                            *pr = jrec_get(f, n, "prompt");
    if (id && id->type == JREC_STR) d->id = xstrdup(id->str);
    else if (id && id->type == JREC_NUM) {
        d->id = malloc(id->str_len + 1);
        if (!d->id) cli_die("out of memory");
        memcpy(d->id, id->str, id->str_len);
        d->id[id->str_len] = 0;
    }
    if (q && q->type == JREC_STR) d->question = (char *)q->str;
    if (pr && pr->type == JREC_STR) d->tmpl = (char *)pr->str;
    if ((q && q->type != JREC_STR) || (pr && pr->type != JREC_STR) ||
        (id && id->type != JREC_STR && id->type != JREC_NUM)) {
        snprintf(err, cap, "%s:%lld: \"id\", \"question\", \"prompt\" must be strings",
                 b->input, (long long)dc->line);
        return -1;
    }
    if (text && text->type == JREC_STR) {
        snprintf(d->src, sizeof d->src, "%s:%lld", b->input, (long long)dc->line);
        d->text = malloc(text->str_len + 1);
        if (!d->text) cli_die("out of memory");
        memcpy(d->text, text->str, text->str_len + 1);
        d->text_len = text->str_len;
        return 0;
    }
    if (p && p->type == JREC_STR) {
        if (p->str[0] == '/') snprintf(path, sizeof path, "%s", p->str);
        else snprintf(path, sizeof path, "%s/%s", b->in_dir, p->str);
        return read_doc_file(path, d, err, cap);
    }
    snprintf(err, cap, "%s:%lld: no \"text\" or \"path\" string", b->input, (long long)dc->line);
    return -1;
}

/* Tokenize; KVT_EUTF8 is a bad record (first bad byte in *bad), anything
 * else fatal. */
static int64_t tokenize(struct batch *b, const char *text, size_t len, int bos,
                        int32_t **ids, size_t *bad)
{
    size_t cap = tok_encode_bound(len);
    *ids = malloc(cap * sizeof **ids);
    if (!*ids) cli_die("out of memory");
    int64_t n = cli_encode(b->tk, text, len, bos && tok_add_bos(b->tk), *ids, cap, bad);
    if (n < 0 && n != KVT_EUTF8) cli_die("%s: tokenizer: %s", b->input, kvt_strerror((int)n));
    return n;
}

/* ---- document caches ---------------------------------------------------- */

struct dcache {
    kvs *kv;            /* the store used for this document */
    int own;            /* 1: kv is a document cache file (close it) */
    char path[8192], side[8192];
    int sfd;            /* sidecar, -1 without --cache-dir */
    struct bc_hdr h;
    int64_t start;      /* tokens reused from the cache (chunk boundary or all) */
    int hit;            /* the whole document part is cached */
    double *nll;        /* score: (doc_tokens - 1) */
};

static void kv_fatal(const char *what, int rc)
{
    cli_die("%s: %s", what, kvt_strerror(rc));
}

/* Open (or create) the cache of the token run ids[0..n) for TASK_TAG and
 * work out what is reusable. Without --cache-dir: the shared store, empty. */
static void dcache_open(struct batch *b, const char *tag, const int32_t *ids, int64_t n,
                        struct dcache *dc)
{
    memset(dc, 0, sizeof *dc);
    dc->sfd = -1;
    if (b->task == TASK_SCORE && n > 1) {
        dc->nll = malloc((size_t)(n - 1) * sizeof *dc->nll);
        if (!dc->nll) cli_die("out of memory");
    }
    if (!b->o.cache_dir) {
        dc->kv = b->shared.kv;
        int rc = kvs_truncate(dc->kv, 0);
        if (rc < 0) kv_fatal("KV store", rc);
        return;
    }
    XXH3_state_t *st = XXH3_createState();
    if (!st) cli_die("out of memory");
    XXH3_64bits_reset(st);
    XXH3_64bits_update(st, tag, strlen(tag) + 1);
    XXH3_64bits_update(st, b->pos_key, strlen(b->pos_key) + 1);
    XXH3_64bits_update(st, ids, (size_t)n * sizeof *ids);
    uint64_t hash = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    snprintf(dc->path, sizeof dc->path, "%s/%s-%016llx.kvt", b->o.cache_dir, b->fp_hex,
             (unsigned long long)hash);
    snprintf(dc->side, sizeof dc->side, "%s/%s-%016llx.kvm", b->o.cache_dir, b->fp_hex,
             (unsigned long long)hash);

    /* one run at a time per document cache: the sidecar's flock (other
     * runs on the same --cache-dir wait here, then find the cache) */
    dc->sfd = open(dc->side, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (dc->sfd < 0) cli_die("%s: %s", dc->side, strerror(errno));
    if (flock(dc->sfd, LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK && errno != EINTR) cli_die("%s: %s", dc->side, strerror(errno));
        if (!b->o.quiet) cli_warn("%s: in use by another kvtile run; waiting for it", dc->side);
        while (flock(dc->sfd, LOCK_EX) != 0)
            if (errno != EINTR) cli_die("%s: %s", dc->side, strerror(errno));
    }

    /* what the sidecar says is durable */
    struct bc_hdr h;
    double *nll = NULL;
    int64_t durable = 0, have_nll = 0;
    int rc = bc_read(dc->side, &h, &nll);
    if (rc == -EIO || rc == -EACCES || rc == -ENOMEM) cli_die("%s: %s", dc->side, kvt_strerror(rc));
    /* anything else that is not this document's sidecar: no progress */
    if (rc == 0 && h.doc_hash == hash && h.doc_tokens == n && !memcmp(h.model_fp, b->fp, 32)) {
        durable = h.cached_tokens;
        have_nll = h.n_nll;
        if (dc->nll && have_nll > 0) memcpy(dc->nll, nll, (size_t)have_nll * sizeof *nll);
    }
    free(nll);

    const struct model_hparams *hp = b->hp;
    struct kvs_config cfg = {
        .n_layer = hp->n_layer, .kv_dim = hp->kv_dim, .tile_tokens = b->o.tile_tokens,
        .backing = KVS_DISK, .type = b->o.cache_type, .codec = b->o.codec, .io = b->o.io,
        .queue_depth = b->o.queue_depth, .ram_budget_bytes = b->o.ram_budget,
        .path = dc->path, .reopen = 1,
    };
    model_kv_pairing(b->m, &cfg.head_dim, &cfg.neox_rot);
    memcpy(cfg.model_fp, b->fp, 32);
    int64_t have = 0;
    rc = durable > 0 ? kvs_open(&cfg, &dc->kv) : -ENOENT;
    if (rc == 0 && b->o.sel.on && kvs_summary_missing(dc->kv) > 0) {
        int64_t nb = kvs_summary_rebuild(dc->kv); /* a cache from before summaries */
        if (nb < 0) kv_fatal(dc->path, (int)nb);
    }
    if (rc == 0) {
        have = kvs_n_tokens(dc->kv);
    } else if (rc == -EIO || rc == -ENOSPC || rc == -EACCES || rc == -ENOMEM) {
        kv_fatal(dc->path, rc);
    } else if (rc == -EBUSY) {
        cli_die("%s: in use by another kvtile run (locked)", dc->path);
    } else { /* missing, damaged or another model's: start over */
        cfg.reopen = 0;
        rc = kvs_open(&cfg, &dc->kv);
        if (rc < 0) kv_fatal(dc->path, rc);
        if ((rc = jnl_fsync_dir(dc->path)) < 0) kv_fatal(b->o.cache_dir, rc);
        durable = 0;
    }
    cli_note_io(dc->path, &b->o, dc->kv);
    dc->own = 1;
    int64_t ok = KVT_MIN(have, durable);
    int complete = ok >= n && (b->task != TASK_SCORE || have_nll >= n - 1);
    if (complete) {
        dc->start = n;
        dc->hit = 1;
    } else {
        dc->start = ok / b->chunk * b->chunk;
        if (b->task == TASK_SCORE) dc->start = KVT_MIN(dc->start, have_nll / b->chunk * b->chunk);
    }
    /* layers fill independently: a run killed inside a batch can leave the
     * first layers ahead of kvs_n_tokens; cut every layer back to start */
    int64_t most = 0;
    for (int il = 0; il < hp->n_layer; il++)
        most = KVT_MAX(most, kvs_layer_tokens(dc->kv, il));
    if (most > dc->start && (rc = kvs_truncate(dc->kv, dc->start)) < 0) kv_fatal(dc->path, rc);

    memcpy(dc->h.model_fp, b->fp, 32);
    dc->h.doc_hash = hash;
    dc->h.doc_tokens = n;
    dc->h.cached_tokens = dc->start;
    dc->h.n_nll = b->task == TASK_SCORE ? KVT_MIN(dc->start, n - 1) : 0;
    if (dc->hit) {
        if (futimens(dc->sfd, NULL) != 0) cli_die("%s: %s", dc->side, strerror(errno));
    } else {
        rc = bc_write(dc->sfd, &dc->h, dc->nll, dc->h.n_nll);
        if (rc < 0) cli_die("%s: %s", dc->side, kvt_strerror(rc));
    }
}

/* Make tokens [0, kvs_n_tokens) durable and record them in the sidecar. */
static void dcache_checkpoint(struct dcache *dc, int64_t n_nll)
{
    if (dc->sfd < 0) return;
    int rc = kvs_sync(dc->kv);
    if (rc < 0) kv_fatal(dc->path, rc);
    int64_t from = dc->h.n_nll;
    dc->h.cached_tokens = KVT_MIN(kvs_n_tokens(dc->kv), dc->h.doc_tokens);
    dc->h.n_nll = n_nll;
    rc = bc_write(dc->sfd, &dc->h, dc->nll, KVT_MIN(from, n_nll));
    if (rc < 0) cli_die("%s: %s", dc->side, kvt_strerror(rc));
}

static void dcache_close(struct dcache *dc)
{
    if (dc->own) {
        int rc = kvs_sync(dc->kv);
        if (rc < 0) kv_fatal(dc->path, rc);
        kvs_close(dc->kv);
    }
    if (dc->sfd >= 0) close(dc->sfd);
    free(dc->nll);
    memset(dc, 0, sizeof *dc);
}

/* ---- evaluation --------------------------------------------------------- */


/* Evaluate ids[start, n) in chunks (the document part); score: NLLs into
 * dc->nll; checkpoints every b->checkpoint tokens and at the end. */
static void prefill(struct batch *b, struct dcache *dc, const int32_t *ids, int64_t n,
                    int score, struct cli_progress *pr)
{
    int V = b->hp->n_vocab, rc;
    int64_t since = 0;
    for (int64_t p0 = dc->start; p0 < n; p0 += b->chunk) {
        int c = (int)KVT_MIN((int64_t)b->chunk, n - p0);
        rc = model_eval(b->mc, dc->kv, ids + p0, c, p0, score ? b->logits : NULL, 1);
        if (rc < 0) kv_fatal(dc->own ? dc->path : "KV store", rc);
        b->tok_eval += c;
        if (score)
            for (int t = 0; t < c && p0 + t < n - 1; t++)
                dc->nll[p0 + t] = cli_nll(b->logits + (size_t)t * V, V, ids[p0 + t + 1]);
        since += c;
        if (since >= b->checkpoint || p0 + c >= n) {
            dcache_checkpoint(dc, score ? KVT_MIN(p0 + c, n - 1) : 0);
            since = 0;
        }
        cli_progress(pr, b->n_done, b->n_docs, b->tok_eval, NULL);
    }
}

static double rng_uniform(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return (double)((*s * 0x2545F4914F6CDD1DULL) >> 11) * (1.0 / 9007199254740992.0);
}

static int cand_cmp(const void *x, const void *y)
{
    const struct cand *a = x, *c = y;
    if (a->p != c->p) return a->p < c->p ? 1 : -1;
    return a->id - c->id;
}

/* Greedy when temp <= 0; else softmax(logits / temp) cut to the smallest
 * most likely set of mass >= top_p (as `kvtile generate`). */
static int sample(struct batch *b, const float *logits, uint64_t *rng)
{
    int V = b->hp->n_vocab, best = 0;
    for (int i = 1; i < V; i++) if (logits[i] > logits[best]) best = i;
    if (b->temp <= 0) return best;
    struct cand *c = b->cands;
    double sum = 0;
    for (int i = 0; i < V; i++) {
        c[i].id = i;
        c[i].p = (float)exp((logits[i] - logits[best]) / b->temp);
        sum += c[i].p;
    }
    qsort(c, (size_t)V, sizeof *c, cand_cmp);
    double mass = 0;
    int k = 0;
    while (k < V) { mass += c[k].p / sum; k++; if (mass >= b->top_p) break; }
    double r = rng_uniform(rng) * mass * sum, acc = 0;
    for (int i = 0; i < k; i++) { acc += c[i].p; if (r < acc) return c[i].id; }
    return c[k - 1].id;
}

/* ---- one document ------------------------------------------------------- */

static void line_start(FILE *f, int64_t index, const char *id)
{
    fprintf(f, "{\"index\":%lld,\"id\":", (long long)index);
    if (id) cli_json_str(f, id);
    else fputs("null", f);
}

static char *error_line(struct batch *b, int64_t i, const char *id, const char *err)
{
    char *s = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&s, &n);
    if (!f) cli_die("out of memory");
    line_start(f, i, id);
    fputs(",\"error\":", f);
    cli_json_str(f, err);
    fputc('}', f);
    fclose(f);
    cli_warn("%s", err);
    b->n_errors++;
    return s;
}

static void timings(struct batch *b, FILE *f, const struct dcache *dc, int64_t prefill,
                    double prefill_s, double decode_s)
{
    if (b->no_timings) return;
    fprintf(f, ",\"cache_hit\":%s,\"prefill_tokens\":%lld,\"prefill_s\":%.3f,\"decode_s\":%.3f",
            dc->hit ? "true" : "false", (long long)prefill, prefill_s, decode_s);
    fputc(',', f);
    cli_json_io(f);
}

static char *do_score(struct batch *b, int64_t i, struct doc_in *d, struct cli_progress *pr)
{
    int32_t *ids;
    size_t bad = 0;
    int64_t n = tokenize(b, d->text, d->text_len, 1, &ids, &bad);
    char err[8400];
    if (n == KVT_EUTF8) {
        free(ids);
        snprintf(err, sizeof err, "%s: text is not valid UTF-8 (byte %zu)", d->src, bad);
        return error_line(b, i, d->id, err);
    }
    if (n < 2) {
        free(ids);
        snprintf(err, sizeof err, "%s: fewer than 2 tokens", d->src);
        return error_line(b, i, d->id, err);
    }
    double t0 = kvt_now_s();
    int rc = model_ctx_set_rope(b->mc, &b->rp, n);
    if (rc < 0) cli_die("%s: positions: %s", b->o.model_path, kvt_strerror(rc));
    struct dcache dc;
    dcache_open(b, "score", ids, n, &dc);
    int64_t start = dc.start;
    if (dc.hit) b->n_hits++;
    else prefill(b, &dc, ids, n, 1, pr);
    double t1 = kvt_now_s();
    double sum = 0;
    for (int64_t p = 0; p < n - 1; p++) sum += dc.nll[p];
    char *s = NULL;
    size_t sl = 0;
    FILE *f = open_memstream(&s, &sl);
    if (!f) cli_die("out of memory");
    line_start(f, i, d->id);
    fprintf(f, ",\"task\":\"score\",\"tokens\":%lld,\"scored\":%lld,\"nll_sum\":%.17g,"
               "\"perplexity\":%.6f,\"bucket\":%lld,\"bucket_ppl\":[",
            (long long)n, (long long)(n - 1), sum, exp(sum / (double)(n - 1)), (long long)b->bucket);
    /* scored position p (1 .. n-1) uses nll[p-1]; bucket = p / B */
    for (int64_t bk = 0; bk * b->bucket <= n - 1; bk++) {
        double bs = 0;
        int64_t cnt = 0;
        for (int64_t p = KVT_MAX(bk * b->bucket, (int64_t)1);
             p < (bk + 1) * b->bucket && p <= n - 1; p++) {
            bs += dc.nll[p - 1];
            cnt++;
        }
        if (cnt) fprintf(f, "%s%.6f", bk ? "," : "", exp(bs / (double)cnt));
    }
    fputc(']', f);
    timings(b, f, &dc, dc.hit ? 0 : n - start, t1 - t0, 0.0);
    fputc('}', f);
    fclose(f);
    dcache_close(&dc);
    free(ids);
    return s;
}

/* The first stop string in text[0..len), or NULL; *at = its offset. */
static const char *find_stop(struct batch *b, const char *text, size_t len, size_t *at)
{
    const char *best = NULL;
    for (int k = 0; k < b->n_stops; k++) {
        const char *p = memmem(text, len, b->stops[k], strlen(b->stops[k]));
        if (p && (!best || (size_t)(p - text) < *at)) { best = b->stops[k]; *at = (size_t)(p - text); }
    }
    return best;
}

static char *do_generate(struct batch *b, int64_t i, struct doc_in *d, struct cli_progress *pr)
{
    const char *tm = d->tmpl ? d->tmpl : b->tmpl, *q = d->question ? d->question : "";
    size_t cap = tmpl_render_bound(tm, d->text_len, strlen(q)), doc_part;
    char *prompt = malloc(cap), err[8400];
    if (!prompt) cli_die("out of memory");
    int64_t plen = tmpl_render(tm, d->text, d->text_len, q, strlen(q), prompt, cap, &doc_part);
    KVT_ASSERT(plen >= 0);
    int32_t *ids, *dids;
    size_t bad = 0;
    int64_t n = tokenize(b, prompt, (size_t)plen, 1, &ids, &bad);
    int64_t nd = n < 0 ? n : tokenize(b, prompt, doc_part, 1, &dids, &bad);
    if (n == KVT_EUTF8 || nd == KVT_EUTF8) {
        free(prompt);
        free(ids);
        if (n >= 0) free(dids);
        snprintf(err, sizeof err, "%s: text is not valid UTF-8 (byte %zu of the prompt)", d->src, bad);
        return error_line(b, i, d->id, err);
    }
    if (n < 1) {
        free(prompt); free(ids); free(dids);
        snprintf(err, sizeof err, "%s: empty prompt", d->src);
        return error_line(b, i, d->id, err);
    }
    int64_t D = 0;
    while (D < nd && D < n - 1 && ids[D] == dids[D]) D++;
    free(dids);

    double t0 = kvt_now_s();
    int rc = D > 0 ? model_ctx_set_rope(b->mc, &b->rp, D) : 0;
    if (rc < 0) cli_die("%s: positions: %s", b->o.model_path, kvt_strerror(rc));
    struct dcache dc;
    dcache_open(b, "generate", ids, D, &dc);
    int64_t start = dc.start;
    if (dc.hit) b->n_hits++;
    else prefill(b, &dc, ids, D, 0, pr);
    double t1 = kvt_now_s();
    rc = model_ctx_set_rope(b->mc, &b->rp, n + b->n_gen);
    if (rc < 0) cli_die("%s: positions: %s", b->o.model_path, kvt_strerror(rc));
    for (int64_t p0 = D; p0 < n; p0 += b->chunk) {
        int c = (int)KVT_MIN((int64_t)b->chunk, n - p0);
        rc = model_eval(b->mc, dc.kv, ids + p0, c, p0, b->logits, 0);
        if (rc < 0) kv_fatal(dc.own ? dc.path : "KV store", rc);
        b->tok_eval += c;
    }
    uint64_t rng = (b->seed ^ ((uint64_t)i * 0xD1B54A32D192ED03ULL)) * 0x9E3779B97F4A7C15ULL + 1;
    size_t acap = 256, alen = 0;
    char *ans = malloc(acap);
    if (!ans) cli_die("out of memory");
    ans[0] = 0;
    const char *why = "length";
    int64_t n_out = 0;
    struct attn_stats st0, st1;
    model_ctx_attn_stats(b->mc, &st0);
    for (; n_out < b->n_gen; n_out++) {
        int id = sample(b, b->logits, &rng);
        if (id == tok_eos(b->tk)) { why = "eos"; break; }
        char piece[256];
        int w = tok_decode_piece(b->tk, id, piece, sizeof piece);
        if (w > 0) {
            if (alen + (size_t)w + 1 > acap) {
                while (alen + (size_t)w + 1 > acap) acap *= 2;
                ans = realloc(ans, acap);
                if (!ans) cli_die("out of memory");
            }
            memcpy(ans + alen, piece, (size_t)w);
            alen += (size_t)w;
            ans[alen] = 0;
        }
        size_t at = 0;
        if (find_stop(b, ans, alen, &at)) {
            alen = at;
            ans[alen] = 0;
            why = "stop";
            n_out++;
            break;
        }
        if (n_out + 1 < b->n_gen) {
            int32_t t32 = id;
            rc = model_eval(b->mc, dc.kv, &t32, 1, n + n_out, b->logits, 0);
            if (rc < 0) kv_fatal(dc.own ? dc.path : "KV store", rc);
            b->tok_eval++;
        }
    }
    double t2 = kvt_now_s();
    model_ctx_attn_stats(b->mc, &st1);
    if (dc.own && (rc = kvs_truncate(dc.kv, D)) < 0) kv_fatal(dc.path, rc);
    /* a decoded piece may end inside a UTF-8 sequence; the JSON string
     * carries the bytes as they are */
    char *s = NULL;
    size_t sl = 0;
    FILE *f = open_memstream(&s, &sl);
    if (!f) cli_die("out of memory");
    line_start(f, i, d->id);
    fputs(",\"task\":\"generate\",\"answer\":", f);
    cli_json_str(f, ans);
    fprintf(f, ",\"answer_tokens\":%lld,\"finish\":\"%s\",\"tokens\":%lld,\"doc_tokens\":%lld,"
               "\"question_tokens\":%lld",
            (long long)n_out, why, (long long)n, (long long)D, (long long)(n - D));
    if (b->o.sel.on) { /* what the decode steps of this answer read */
        struct attn_stats d_st = { st1.steps - st0.steps, st1.tiles - st0.tiles,
                                   st1.tiles_read - st0.tiles_read,
                                   st1.bytes_read - st0.bytes_read };
        cli_json_attend(f, &b->o, b->m, &d_st);
    }
    timings(b, f, &dc, dc.hit ? 0 : D - start, t1 - t0, t2 - t1);
    fputc('}', f);
    fclose(f);
    dcache_close(&dc);
    free(ans);
    free(ids);
    free(prompt);
    return s;
}

/* ---- journal ------------------------------------------------------------ */

/* The file document I is read from, if any: a directory's file, or the
 * "path" of a JSONL line without "text". @return 1 with PATH filled, 0. */
static int doc_file(const struct batch *b, int64_t i, char *path, size_t cap)
{
    const struct doc *dc = &b->docs[i];
    if (b->is_dir) {
        snprintf(path, cap, "%s/%s", b->in_dir, dc->name);
        return 1;
    }
    struct jrec_field f[MAX_FIELDS];
    struct json_t *jb;
    int nf = jrec_parse(b->in_text + dc->off, dc->len, f, MAX_FIELDS, &jb, NULL);
    const struct jrec_field *t = nf > 0 ? jrec_get(f, nf, "text") : NULL;
    const struct jrec_field *p = nf > 0 ? jrec_get(f, nf, "path") : NULL;
    int ok = !t && p && p->type == JREC_STR;
    if (ok && p->str[0] == '/') snprintf(path, cap, "%s", p->str);
    else if (ok) snprintf(path, cap, "%s/%s", b->in_dir, p->str);
    jrec_free(jb);
    return ok;
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
            (long long)b->bucket, b->tmpl, b->temp, b->top_p, (unsigned long long)b->seed,
            b->no_timings, b->pos_key, b->chunk, (long long)b->n_docs);
    for (int k = 0; k < b->n_stops; k++) fprintf(f, "|%s", b->stops[k]);
    /* the input itself: the JSONL text, and the size and mtime of every
     * document file (a directory's, or one a JSONL line names by "path") */
    if (!b->is_dir)
        fprintf(f, "|text=%016llx", (unsigned long long)XXH3_64bits(b->in_text, strlen(b->in_text)));
    for (int64_t i = 0; i < b->n_docs; i++) {
        char p[8192];
        if (!doc_file(b, i, p, sizeof p)) continue;
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

static void journal_open(struct batch *b)
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
        struct jrec_field f[MAX_FIELDS];
        struct json_t *jb;
        int nf = jrec_parse(rec, l, f, MAX_FIELDS, &jb, NULL);
        const struct jrec_field *ix = nf > 0 ? jrec_get(f, nf, "index") : NULL;
        jrec_free(jb);
        if (!ix || ix->type != JREC_NUM || ix->num < 0 || ix->num >= (double)b->n_docs ||
            ix->num != floor(ix->num))
            cli_die("%s: record %lld is not a document line; remove the journal or drop --resume",
                    b->journal, (long long)r + 1);
        int64_t k = (int64_t)ix->num;
        if (!b->lines[k]) {
            b->lines[k] = xstrdup(rec);
            if (strstr(b->lines[k], "\"error\":")) b->n_errors++;
            kept++;
        }
    }
    b->n_done = kept;
    if (b->resume && !b->o.quiet)
        cli_warn("%s: resuming, %lld documents already finished", b->journal, (long long)kept);
}

static void write_output(struct batch *b)
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

/* ---- the command -------------------------------------------------------- */

static char *unescape_nl(const char *s)
{
    char *d = xstrdup(s), *w = d;
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
    if (b->n_stops == MAX_STOPS) cli_die("%s: at most %d", name, MAX_STOPS);
    if (!*v) cli_die("%s: empty string", name);
    b->stops[b->n_stops++] = v;
}

static void parse_args(struct batch *b, int argc, char **argv)
{
    cli_opts_default(&b->o);
    b->n_gen = 32;
    b->bucket = 256;
    b->checkpoint = 8192;
    b->top_p = 0.95;
    b->seed = 42;
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
        OPT_DOUBLE("--temp", NULL, "T", &b->temp, 0, 1e3, "temperature (0: greedy)"),
        OPT_DOUBLE("--top-p", NULL, "P", &b->top_p, 1e-9, 1, "nucleus sampling mass"),
        OPT_U64("--seed", NULL, "S", &b->seed, "sampler seed"),
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

int cmd_batch(int argc, char **argv)
{
    struct batch *b = calloc(1, sizeof *b);
    if (!b) cli_die("out of memory");
    parse_args(b, argc, argv);
    load_input(b);

    cli_load(b->o.model_path, &b->m, &b->tk);
    b->hp = model_hparams(b->m);
    model_fingerprint(b->m, b->fp);
    hex(b->fp, 32, b->fp_hex);
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
    b->mc = cli_model_ctx(&b->o, b->m);
    if (b->o.cache_dir) {
        cli_mkdir(b->o.cache_dir);
    } else {
        cli_kv_open(&b->o, b->m, "batch.kvt", 0, &b->shared);
    }
    b->logits = malloc((size_t)b->chunk * (size_t)b->hp->n_vocab * sizeof *b->logits);
    b->cands = malloc((size_t)b->hp->n_vocab * sizeof *b->cands);
    if (!b->logits || !b->cands) cli_die("out of memory");

    journal_open(b);
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
        if (load_doc(b, i, &d, err, sizeof err) < 0)
            line = error_line(b, i, d.id, err);
        else if (b->task == TASK_SCORE)
            line = do_score(b, i, &d, &pr);
        else
            line = do_generate(b, i, &d, &pr);
        doc_in_free(&d);
        journal_append(b, line);
        b->lines[i] = line;
        b->n_done++;
        cli_progress(&pr, b->n_done, mine, b->tok_eval, NULL);
    }
    cli_progress_end(&pr);
    write_output(b);
    double secs = kvt_now_s() - t0;
    if (!b->o.quiet)
        cli_warn("batch: %lld documents, %lld errors, %lld cache hits, %lld tokens evaluated "
                 "in %.1f s (%.0f tok/s)", (long long)mine, (long long)b->n_errors,
                 (long long)b->n_hits, (long long)b->tok_eval, secs,
                 secs > 0 ? (double)b->tok_eval / secs : 0.0);

    for (int64_t i = 0; i < b->n_docs; i++) { free(b->lines[i]); free(b->docs[i].name); }
    free(b->lines);
    free(b->docs);
    free(b->in_text);
    free(b->logits);
    free(b->cands);
    if (!b->o.cache_dir) cli_kv_close(&b->shared);
    model_ctx_free(b->mc);
    tok_free(b->tk);
    model_close(b->m);
    free(b->tmpl_owned);
    free(b);
    return 0;
}
