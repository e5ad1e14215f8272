/* score.c - perplexity of a text file with libkvtile, as `kvtile ppl`.
 *
 *   cc score.c $(pkg-config --cflags --libs kvtile) -o score
 *   ./score MODEL.gguf TEXT.txt [N_CTX [WINDOWS [KERNELS]]]
 *
 * Prints one JSON object: the same nll_sum (bit for bit), n_scored and ppl
 * as `kvtile ppl MODEL -f TEXT -c N_CTX --chunks WINDOWS --json` (with
 * KVT_CPU=KERNELS when a kernel set is given: portable, avx2, avx512).
 */
#include <kvtile.h>

#include <stdio.h>
#include <stdlib.h>

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

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL.gguf TEXT.txt [N_CTX [WINDOWS [KERNELS]]]\n", argv[0]);
        return 2;
    }
    char err[512];
    kvtile_model *m;
    int rc = kvtile_model_open(argv[1], NULL, &m, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "%s: %s\n", argv[1], err);
        return 1;
    }
    struct kvtile_model_info info;
    kvtile_model_info(m, &info);

    size_t len;
    char *text = read_file(argv[2], &len);
    if (!text) {
        fprintf(stderr, "%s: cannot read\n", argv[2]);
        return 1;
    }
    size_t cap = kvtile_tokenize_bound(len);
    int32_t *ids = malloc(cap * sizeof *ids);
    int64_t n = ids ? kvtile_tokenize(m, text, len, info.add_bos ? KVTILE_TOK_ADD_SPECIAL : 0,
                                      ids, cap, NULL)
                    : -12;
    if (n < 0) {
        fprintf(stderr, "%s: %s\n", argv[2], kvtile_strerror((int)n));
        return 1;
    }

    struct kvtile_ctx_params cp;
    kvtile_ctx_params_default(&cp);
    cp.n_ctx = argc > 3 ? atoll(argv[3]) : 0;
    cp.kernels = argc > 5 ? argv[5] : NULL;
    kvtile_ctx *c;
    if ((rc = kvtile_ctx_create(m, &cp, &c)) < 0) {
        fprintf(stderr, "context: %s\n", kvtile_strerror(rc));
        return 1;
    }
    struct kvtile_score_params sp;
    kvtile_score_params_default(&sp);
    sp.max_windows = argc > 4 ? atoll(argv[4]) : -1;
    struct kvtile_score_result r;
    if ((rc = kvtile_score(c, NULL, ids, n, &sp, &r)) < 0) {
        fprintf(stderr, "%s: %s\n", argv[2], kvtile_strerror(rc));
        return 1;
    }
    printf("{\"ppl\": %.6f, \"ppl_stderr\": %.6f, \"nll_sum\": %.17g, \"n_scored\": %lld, "
           "\"n_ctx\": %lld, \"n_chunks\": %lld, \"n_tokens\": %lld}\n",
           r.ppl, r.ppl_stderr, r.nll_sum, (long long)r.n_scored, (long long)r.n_ctx,
           (long long)r.n_windows, (long long)n);
    kvtile_ctx_free(c);
    kvtile_model_close(m);
    free(ids);
    free(text);
    return 0;
}
