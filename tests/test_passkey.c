/* test_passkey.c - the passkey prompt builder against a hand-written
 * fixture (tests/data/passkey_fixture.txt), the answer parser, and
 * `kvtile passkey` end to end at small lengths (tiny-kjv cannot retrieve:
 * trained at 256 tokens on Bible text, so only the protocol is checked). */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "t.h"
#include "base/kvt.h"
#include "tools/batch_prompt.h"
#include "tools/json.h"

#include <jansson.h>

static void test_fixture(void)
{
    FILE *f = fopen(T_DATA("passkey_fixture.txt"), "r");
    T_CHECK(f != NULL);
    if (!f) return;
    char line[8192], want[8192];
    int cases = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] != '=') continue;
        int reps;
        double depth;
        long key;
        T_CHECK(sscanf(line, "= %d %lf %ld", &reps, &depth, &key) == 3);
        T_CHECK(fgets(want, sizeof want, f) != NULL);
        want[strcspn(want, "\n")] = 0;
        char got[8192];
        T_CHECK(passkey_prompt_bound(reps) <= sizeof got);
        int64_t n = passkey_prompt(got, sizeof got, reps, depth, key);
        T_CHECK(n == (int64_t)strlen(want));
        if (strcmp(got, want)) {
            fprintf(stderr, "  case reps=%d depth=%g key=%ld:\n  got  %s\n  want %s\n",
                    reps, depth, key, got, want);
            T_CHECK(0);
        }
        /* the bound is enough, and one byte less than needed is refused */
        T_CHECK((size_t)n < passkey_prompt_bound(reps));
        T_CHECK(passkey_prompt(got, (size_t)n, reps, depth, key) == -ENOSPC);
        T_CHECK(passkey_prompt(got, (size_t)n + 1, reps, depth, key) == n);
        cases++;
    }
    fclose(f);
    T_CHECK(cases == 5);
}

static void test_args_and_answers(void)
{
    char buf[4096];
    T_CHECK(passkey_prompt(buf, sizeof buf, -1, 0.5, 12345) == KVT_ERANGE);
    T_CHECK(passkey_prompt(buf, sizeof buf, 3, 1.5, 12345) == KVT_ERANGE);
    T_CHECK(passkey_prompt(buf, sizeof buf, 3, -0.1, 12345) == KVT_ERANGE);
    T_CHECK(passkey_prompt(buf, 0, 3, 0.5, 12345) == -ENOSPC);
    /* first integer of the decoded answer */
    T_CHECK(first_int(" 12345. Remember", 16) == 12345);
    T_CHECK(first_int(" the same", 9) == -1);
    T_CHECK(first_int("", 0) == -1);
    T_CHECK(first_int("key 007 and 8", 13) == 7);
    T_CHECK(first_int("x12", 2) == 1); /* only [0, len) is read */
    /* template rendering: the document part ends before {question} */
    size_t dp;
    const char *tm = "{doc}\n\nQuestion: {question}\nAnswer:";
    T_CHECK(tmpl_render_bound(tm, 3, 2) == strlen(tm) - 5 - 10 + 3 + 2 + 1);
    T_CHECK(tmpl_render(tm, "abc", 3, "q?", 2, buf, sizeof buf, &dp) == 25);
    T_CHECK(!strcmp(buf, "abc\n\nQuestion: q?\nAnswer:"));
    T_CHECK(dp == 15);
    T_CHECK(tmpl_render("A{doc}B", "x", 1, "q", 1, buf, sizeof buf, &dp) == 3 && dp == 3);
    T_CHECK(tmpl_render(tm, "abc", 3, "q?", 2, buf, 25, &dp) == -ENOSPC);
}

static const char *bin(void)
{
    static char path[4096];
    const char *b = getenv("KVT_BUILD");
    snprintf(path, sizeof path, "%s/kvtile", b && *b ? b : "build");
    return path;
}

static char *run(const char *cmd)
{
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *out = malloc(cap);
    size_t got;
    while ((got = fread(out + n, 1, cap - n - 1, p)) > 0) {
        n += got;
        if (n + 1 == cap) out = realloc(out, cap *= 2);
    }
    out[n] = 0;
    if (pclose(p) != 0) { free(out); return NULL; }
    return out;
}

static void test_end_to_end(void)
{
    T_REQUIRE(access(bin(), X_OK) == 0 && access(T_MODEL("tiny-kjv-f32.gguf"), R_OK) == 0,
              "no kvtile binary or model");
    char cmd[8192], svg[] = "/tmp/kvt-passkey-XXXXXX";
    int fd = mkstemp(svg);
    T_CHECK(fd >= 0);
    close(fd);
    snprintf(cmd, sizeof cmd, "%s passkey %s --lengths 128,300 --depths 0,0.5,1 --trials 2 "
             "--seed 7 --json --svg %s", bin(), T_MODEL("tiny-kjv-f32.gguf"), svg);
    char *out = run(cmd);
    T_CHECK(out != NULL);
    if (!out) return;
    /* one JSON object, cells in a nested array: check the top level, then
     * each cell line on its own */
    struct jrec_field f[32];
    size_t len = strlen(out);
    struct json_t *buf;
    int n = jrec_parse(out, len, f, 32, &buf, NULL);
    T_CHECK(n > 0);
    if (n > 0) {
        T_CHECK(jrec_get(f, n, "trials")->num == 2);
        T_CHECK(jrec_get(f, n, "n_ctx_train")->num == 256);
        T_CHECK(jrec_get(f, n, "cells")->type == JREC_NEST);
    }
    int cells = 0, correct = 0;
    for (char *line = strstr(out, "\n  {"); line; line = strstr(line + 1, "\n  {")) {
        char *s = line + 3, *e = strchr(s, '\n');
        size_t l = e ? (size_t)(e - s) : strlen(s);
        if (l && s[l - 1] == ',') l--;
        if (l >= 4 && !memcmp(s + l - 4, "]}]}", 4)) l -= 2; /* the last cell */
        struct jrec_field c[16];
        struct json_t *cb;
        int m = jrec_parse(s, l, c, 16, &cb, NULL);
        T_CHECK(m == 8);
        if (m == 8) {
            double L = jrec_get(c, m, "length")->num, tm = jrec_get(c, m, "tokens_mean")->num;
            /* the filler repeats while it fits: within one repetition (35 tokens) */
            T_CHECK(tm <= L && tm > L - 40);
            double acc = jrec_get(c, m, "accuracy")->num;
            T_CHECK(acc >= 0 && acc <= 1);
            correct += (int)jrec_get(c, m, "correct")->num;
            const struct jrec_field *k = jrec_get(c, m, "keys");
            long k1 = 0, k2 = 0;
            T_CHECK(k && k->type == JREC_NEST && json_array_size(k->val) == 2);
            if (k && k->type == JREC_NEST) {
                k1 = (long)json_integer_value(json_array_get(k->val, 0));
                k2 = (long)json_integer_value(json_array_get(k->val, 1));
            }
            T_CHECK(k1 >= 10000 && k1 <= 99999 && k2 >= 10000 && k2 <= 99999);
        }
        jrec_free(cb);
        cells++;
    }
    T_CHECK(cells == 6);
    fprintf(stderr, "  tiny-kjv: %d/12 keys retrieved (chance: 1/90000 each)\n", correct);
    /* the heat map: one cell rectangle per length x depth */
    FILE *sf = fopen(svg, "r");
    int rects = 0;
    char line[1024];
    while (sf && fgets(line, sizeof line, sf)) rects += strstr(line, "<rect x=") != NULL;
    if (sf) fclose(sf);
    T_CHECK(rects == 6);
    unlink(svg);
    /* the same seed gives the same keys */
    char *again = run(cmd);
    T_CHECK(again != NULL);
    if (again) {
        char *k1 = strstr(out, "\"keys\""), *k2 = strstr(again, "\"keys\"");
        T_CHECK(k1 && k2 && !strncmp(k1, k2, 30));
    }
    free(again);
    jrec_free(buf);
    free(out);
}

int main(void)
{
    T_RUN(test_fixture);
    T_RUN(test_args_and_answers);
    T_RUN(test_end_to_end);
    return t_done();
}
