/* cmd_merge.c - `kvtile merge OUT.jsonl SHARD...`: join the outputs of
 * `kvtile batch --shard i/N` back into input order. Every line must carry
 * "index"; lines are copied byte for byte, sorted by index. An index seen
 * twice, or missing between 0 and the largest one, is an error (a shard
 * was left out or given twice). OUT is written as OUT.tmp, fsynced and
 * renamed. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "tools/json.h"

#define MAX_FIELDS 64

int cmd_merge(int argc, char **argv)
{
    struct opt tab[] = { OPT_END() };
    const char *usage = "OUT.jsonl SHARD.jsonl...";
    const char **files = calloc((size_t)argc, sizeof *files);
    if (!files) cli_die("out of memory");
    int n_pos = opt_parse("merge", usage, tab, argc, argv, files, argc);
    if (n_pos < 2) opt_usage("merge", usage);
    const char *out = files[0];
    int64_t cap = 1024, max = -1;
    char **lines = calloc((size_t)cap, sizeof *lines);
    if (!lines) cli_die("out of memory");
    for (int a = 1; a < n_pos; a++) {
        size_t len;
        char *text = cli_read_file(files[a], &len);
        int64_t ln = 0;
        for (size_t pos = 0; pos < len;) {
            const char *nl = memchr(text + pos, '\n', len - pos);
            size_t l = nl ? (size_t)(nl - (text + pos)) : len - pos;
            ln++;
            if (l == 0) { pos += 1; continue; }
            struct json_field f[MAX_FIELDS];
            char *jb = malloc(json_buf_bound(l));
            if (!jb) cli_die("out of memory");
            int nf = json_parse_object(text + pos, l, jb, json_buf_bound(l), f, MAX_FIELDS, NULL);
            const struct json_field *ix = nf > 0 ? json_get(f, nf, "index") : NULL;
            if (!ix || ix->type != JSON_NUM || ix->num < 0 || ix->num > 1e12 ||
                ix->num != (double)(int64_t)ix->num)
                cli_die("%s:%lld: not a batch output line (no \"index\")", files[a], (long long)ln);
            int64_t k = (int64_t)ix->num;
            free(jb);
            if (k >= cap) {
                int64_t nc = cap;
                while (nc <= k) nc *= 2;
                lines = realloc(lines, (size_t)nc * sizeof *lines);
                if (!lines) cli_die("out of memory");
                memset(lines + cap, 0, (size_t)(nc - cap) * sizeof *lines);
                cap = nc;
            }
            if (lines[k]) cli_die("%s:%lld: index %lld appears twice", files[a], (long long)ln, (long long)k);
            lines[k] = strndup(text + pos, l);
            if (!lines[k]) cli_die("out of memory");
            if (k > max) max = k;
            pos += l + 1;
        }
        free(text);
    }
    for (int64_t k = 0; k <= max; k++)
        if (!lines[k]) cli_die("%s: index %lld is missing (a shard left out?)", out, (long long)k);
    char tmp[8192];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    FILE *f = fopen(tmp, "w");
    if (!f) cli_die("%s: %s", tmp, strerror(errno));
    for (int64_t k = 0; k <= max; k++) { fputs(lines[k], f); fputc('\n', f); free(lines[k]); }
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) cli_die("%s: %s", tmp, strerror(errno));
    if (fclose(f) != 0) cli_die("%s: %s", tmp, strerror(errno));
    if (rename(tmp, out) != 0) cli_die("%s: %s", out, strerror(errno));
    free(lines);
    free(files);
    return 0;
}
