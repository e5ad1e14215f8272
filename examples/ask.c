/* ask.c - answer a question over a document with libkvtile, keeping the
 * document's KV cache on disk so the next question skips its prefill.
 *
 *   cc ask.c $(pkg-config --cflags --libs kvtile) -o ask
 *   ./ask MODEL.gguf DOC.txt CACHE.kvt "QUESTION"
 *
 * The first run evaluates the document into CACHE.kvt and keeps it; a later
 * run over the same document (and model) finds it there, labelled with the
 * document's tokens (kvtile_tokens_tag), and evaluates only the question.
 * Another document, or a cache of another model, starts the cache over.
 * The answer (greedy, up to 32 tokens, to the end of its line) goes to
 * stdout; "prefill N tokens" or "reused N cached tokens" to stderr.
 */
#include <kvtile.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0, k;
    char *buf = malloc(cap);
    while (buf && (k = fread(buf + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n == cap && !(buf = realloc(buf, cap *= 2))) break;
    }
    fclose(f);
    *len = n;
    return buf;
}

static int fail(const char *what, int rc)
{
    fprintf(stderr, "ask: %s: %s\n", what, kvtile_strerror(rc));
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s MODEL.gguf DOC.txt CACHE.kvt \"QUESTION\"\n", argv[0]);
        return 2;
    }
    const char *model_path = argv[1], *doc_path = argv[2], *cache = argv[3];
    enum { N_PREDICT = 32 };
    char err[512];
    kvtile_model *m;
    int rc = kvtile_model_open(model_path, NULL, &m, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "ask: %s: %s\n", model_path, err);
        return 1;
    }
    struct kvtile_model_info info;
    kvtile_model_info(m, &info);

    /* the prompt: the document, then the question */
    size_t dlen;
    char *doc = read_file(doc_path, &dlen);
    if (!doc) return fail(doc_path, -2);
    char q[4096];
    int qlen = snprintf(q, sizeof q, "\nQuestion: %s\nAnswer:", argv[4]);
    if (qlen < 0 || (size_t)qlen >= sizeof q) return fail("question", -7);
    size_t cap = kvtile_tokenize_bound(dlen) + kvtile_tokenize_bound((size_t)qlen);
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return fail("tokens", -12);
    int64_t n_doc = kvtile_tokenize(m, doc, dlen, info.add_bos ? KVTILE_TOK_ADD_SPECIAL : 0,
                                    ids, cap, NULL);
    if (n_doc < 1) return fail(doc_path, n_doc < 0 ? (int)n_doc : -22);
    int64_t n_q = kvtile_tokenize(m, q, (size_t)qlen, 0, ids + n_doc, cap - (size_t)n_doc, NULL);
    if (n_q < 1) return fail("question", n_q < 0 ? (int)n_q : -22);
    int64_t n_prompt = n_doc + n_q;

    /* the context: positions for the whole prompt and the answer */
    struct kvtile_ctx_params cp;
    kvtile_ctx_params_default(&cp);
    cp.n_ctx = n_prompt + N_PREDICT;
    kvtile_ctx *c;
    if ((rc = kvtile_ctx_create(m, &cp, &c)) < 0) return fail("context", rc);

    /* the document's cache: reopened when it exists */
    struct kvtile_store_params sp;
    kvtile_store_params_default(&sp);
    sp.path = cache;
    sp.open = KVTILE_STORE_ANY;
    kvtile_store *s;
    rc = kvtile_store_open(m, &sp, &s);
    if (rc == KVTILE_EMODEL || rc == KVTILE_EFORMAT || rc == KVTILE_ECHECKSUM ||
        rc == KVTILE_ETRUNC || rc == KVTILE_EVERSION) {
        fprintf(stderr, "ask: %s: %s; starting it over\n", cache, kvtile_strerror(rc));
        sp.open = KVTILE_STORE_CREATE;
        rc = kvtile_store_open(m, &sp, &s);
    }
    if (rc < 0) return fail(cache, rc);
    uint64_t tag = kvtile_tokens_tag(ids, (size_t)n_doc);
    int64_t have = kvtile_store_tag(s) == tag ? kvtile_store_n_tokens(s) : 0;
    if (have > n_doc) have = n_doc; /* (only the document is kept) */
    if (have == 0) rc = kvtile_store_reset(s, tag);
    else rc = kvtile_store_truncate(s, have);
    if (rc < 0) return fail(cache, rc);
    if (have == n_doc) fprintf(stderr, "reused %lld cached tokens\n", (long long)have);
    else fprintf(stderr, "prefill %lld tokens\n", (long long)(n_doc - have));
    /* the rest of the document (all of it the first time), made durable */
    if ((rc = kvtile_prefill(c, s, ids, n_doc)) < 0 || (rc = kvtile_store_sync(s)) < 0)
        return fail(cache, rc);

    /* the question and the answer; then the cache is cut back to the document */
    struct kvtile_gen_params gp;
    kvtile_gen_params_default(&gp);
    gp.n_predict = N_PREDICT;
    const char *stop[] = { "\n" };
    gp.stop = stop;
    gp.n_stop = 1;
    char answer[1024];
    struct kvtile_gen_result r;
    int64_t len = kvtile_generate(c, s, ids, n_prompt, &gp, answer, sizeof answer, &r);
    if (len < 0) return fail("generate", (int)len);
    if ((rc = kvtile_store_truncate(s, n_doc)) < 0 || (rc = kvtile_store_sync(s)) < 0)
        return fail(cache, rc);
    printf("%s\n", answer);
    kvtile_store_close(s);
    kvtile_ctx_free(c);
    kvtile_model_close(m);
    free(ids);
    free(doc);
    return 0;
}
