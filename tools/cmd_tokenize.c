/* cmd_tokenize.c - `kvtile tokenize MODEL TEXT|-f FILE`: token ids of a
 * text. Reads only the tokenizer's metadata, so vocabulary-only GGUF files
 * (no tensors, any architecture) work. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "io/kvt.h"

static const char usage[] =
    "usage: kvtile tokenize MODEL TEXT|-f FILE [--no-bos] [--pieces] [--count]\n"
    "       [--utf8 error|replace] [--parse-special] [--pre-tokenizer NAME]\n";

int cmd_tokenize(int argc, char **argv)
{
    const char *model_path = NULL, *text_arg = NULL, *file = NULL;
    int add_bos = 1, pieces = 0, count = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_tok_opt(argc, argv, &i)) continue;
        if (!strcmp(a, "-f") && i + 1 < argc) file = argv[++i];
        else if (!strcmp(a, "--no-bos")) add_bos = 0;
        else if (!strcmp(a, "--pieces")) pieces = 1;
        else if (!strcmp(a, "--count")) count = 1;
        else if (a[0] == '-' && a[1]) {
            fputs(usage, stderr);
            return 2;
        } else if (!model_path) model_path = a;
        else if (!text_arg) text_arg = a;
        else cli_die("tokenize: unexpected argument '%s'", a);
    }
    if (!model_path || (!text_arg && !file)) {
        fputs(usage, stderr);
        return 2;
    }
    gguf *g;
    char err[512] = "";
    int rc = gguf_open(model_path, &g, err, sizeof err);
    if (rc < 0) cli_die("%s: %s", model_path, err[0] ? err : kvt_strerror(rc));
    tok *tk = cli_open_tok(g, model_path);
    size_t len;
    char *text;
    const char *src = file ? file : "TEXT";
    if (file) text = cli_read_file(file, &len);
    else { len = strlen(text_arg); text = strdup(text_arg); }
    int64_t n;
    int32_t *ids = cli_tokenize(tk, src, text, len, add_bos && tok_add_bos(tk), &n);
    if (count) {
        printf("%lld\n", (long long)n);
    } else {
        for (int64_t i = 0; i < n; i++) {
            if (pieces) {
                const char *p = tok_piece(tk, ids[i]);
                printf("%s%d:", i ? " " : "", ids[i]);
                cli_json_str(stdout, p ? p : "");
            } else {
                printf("%s%d", i ? " " : "", ids[i]);
            }
        }
        printf("\n");
    }
    free(ids);
    free(text);
    tok_free(tk);
    gguf_close(g);
    return 0;
}
