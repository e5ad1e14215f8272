/* batch_input.c - the documents of `kvtile batch` (batch.h): a JSONL file
 * (one document per non-blank line, line numbers kept for messages) or a
 * directory of .txt files (sorted by name, id = file name), and one
 * document's inputs from its record or file. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/kvt.h"
#include "tools/batch.h"
#include "tools/json.h"

char *batch_strdup(const char *s)
{
    char *d = strdup(s);
    if (!d) cli_die("out of memory");
    return d;
}

static int name_cmp(const void *x, const void *y)
{
    return strcmp(((const struct batch_doc *)x)->name, ((const struct batch_doc *)y)->name);
}

static void add_doc(struct batch *b, int64_t *cap, struct batch_doc d)
{
    if (b->n_docs == *cap) {
        *cap *= 2;
        b->docs = realloc(b->docs, (size_t)*cap * sizeof *b->docs);
        if (!b->docs) cli_die("out of memory");
    }
    b->docs[b->n_docs++] = d;
}

/* NAME as a path: absolute as it is, else relative to the input's folder. */
static void input_path(const struct batch *b, const char *name, char *path, size_t cap)
{
    if (name[0] == '/') snprintf(path, cap, "%s", name);
    else snprintf(path, cap, "%s/%s", b->in_dir, name);
}

void batch_load_input(struct batch *b)
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
            add_doc(b, &cap, (struct batch_doc){ 0, 0, 0, batch_strdup(e->d_name) });
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
            add_doc(b, &cap, (struct batch_doc){ pos, end - pos, line, NULL });
        }
        pos = end + 1;
    }
}

void doc_in_free(struct doc_in *d)
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

int batch_load_doc(struct batch *b, int64_t i, struct doc_in *d, char *err, size_t cap)
{
    memset(d, 0, sizeof *d);
    const struct batch_doc *dc = &b->docs[i];
    char path[8192];
    if (b->is_dir) {
        d->id = batch_strdup(dc->name);
        input_path(b, dc->name, path, sizeof path);
        return read_doc_file(path, d, err, cap);
    }
    const char *s = b->in_text + dc->off;
    struct jrec_field f[BATCH_MAX_FIELDS];
    struct jrec_err je;
    int n = jrec_parse(s, dc->len, f, BATCH_MAX_FIELDS, &d->jroot, &je);
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
    if (id && id->type == JREC_STR) d->id = batch_strdup(id->str);
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
        input_path(b, p->str, path, sizeof path);
        return read_doc_file(path, d, err, cap);
    }
    snprintf(err, cap, "%s:%lld: no \"text\" or \"path\" string", b->input, (long long)dc->line);
    return -1;
}

int batch_doc_file(const struct batch *b, int64_t i, char *path, size_t cap)
{
    const struct batch_doc *dc = &b->docs[i];
    if (b->is_dir) {
        input_path(b, dc->name, path, cap);
        return 1;
    }
    struct jrec_field f[BATCH_MAX_FIELDS];
    struct json_t *jb;
    int nf = jrec_parse(b->in_text + dc->off, dc->len, f, BATCH_MAX_FIELDS, &jb, NULL);
    const struct jrec_field *t = nf > 0 ? jrec_get(f, nf, "text") : NULL;
    const struct jrec_field *p = nf > 0 ? jrec_get(f, nf, "path") : NULL;
    int ok = !t && p && p->type == JREC_STR;
    if (ok) input_path(b, p->str, path, cap);
    jrec_free(jb);
    return ok;
}

int64_t batch_tokenize(struct batch *b, const char *text, size_t len, int bos,
                       int32_t **ids, size_t *bad)
{
    size_t cap = tok_encode_bound(len);
    *ids = malloc(cap * sizeof **ids);
    if (!*ids) cli_die("out of memory");
    int64_t n = cli_encode(b->tk, text, len, bos && tok_add_bos(b->tk), *ids, cap, bad);
    if (n < 0 && n != KVT_EUTF8) cli_die("%s: tokenizer: %s", b->input, kvt_strerror((int)n));
    return n;
}
