/* cmd_tokenize.c - `kvtile tokenize MODEL TEXT|-f FILE`: token ids of a
 * text. Reads only the tokenizer's metadata, so vocabulary-only GGUF files
 * (no tensors, any architecture) work. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "base/kvt.h"

int cmd_tokenize(int argc, char **argv)
{
    const char *pos[2] = { NULL, NULL }, *file = NULL;
    int no_bos = 0, pieces = 0, count = 0;
    struct opt tab[] = {
        OPT_STR("-f", NULL, "FILE", &file, "text from FILE instead of TEXT"),
        OPT_FLAG("--no-bos", NULL, &no_bos, "do not add BOS"),
        OPT_FLAG("--pieces", NULL, &pieces, "print id:\"piece\" pairs"),
        OPT_FLAG("--count", NULL, &count, "print the number of tokens only"),
        CLI_OPTS_TEXT,
        OPT_END(),
    };
    const char *usage = "MODEL TEXT|-f FILE [options]";
    int n_pos = opt_parse("tokenize", usage, tab, argc, argv, pos, 2);
    const char *model_path = pos[0], *text_arg = pos[1];
    if (n_pos < 1 || (!text_arg && !file) || (text_arg && file)) opt_usage("tokenize", usage);
    int add_bos = !no_bos;
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
