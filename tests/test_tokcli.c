/* test_tokcli.c - `kvtile tokenize` and `kvtile info` on vocabulary-only
 * GGUF files: every llama.cpp test vector of the six vocabularies through
 * the command line, the pre-tokenizer errors and override, --utf8,
 * --parse-special, llama-bpe's default BOS. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/gguf.h"
#include "engine/gguf_write.h"
#include "tests/t.h"
#include "tests/tproc.h"

#define VOCAB(name) T_DATA("vocab/ggml-vocab-" name ".gguf")

static char g_dir[256];
static char g_out[1 << 16], g_err[4096];

static void write_file(const char *path, const char *s, size_t n)
{
    FILE *f = fopen(path, "wb");
    T_CHECK(f != NULL);
    if (!f) return;
    T_CHECK(fwrite(s, 1, n, f) == n);
    fclose(f);
}

/* Parse up to cap ids from S; @return how many. */
static int parse_ids(const char *s, long *ids, int cap)
{
    int n = 0;
    for (;;) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || n == cap) return n;
        ids[n++] = v;
        s = end;
    }
}

/* `kvtile tokenize VOCAB -f FILE OPTS` on TEXT[0..n); @return exit status. */
static int run_tok(const char *vocab, const char *text, size_t n, const char *opts)
{
    char path[512], args[1024];
    snprintf(path, sizeof path, "%s/in.txt", g_dir);
    write_file(path, text, n);
    snprintf(args, sizeof args, "tokenize %s -f %s %s", vocab, path, opts);
    return t_run(args, g_out, sizeof g_out, g_err, sizeof g_err);
}

static int vectors_cli(const char *name)
{
    char path[256];
    snprintf(path, sizeof path, T_DATA("vocab/%s.inp"), name);
    char *inp = t_slurp(path, NULL);
    snprintf(path, sizeof path, T_DATA("vocab/%s.out"), name);
    char *out = t_slurp(path, NULL);
    T_CHECK(inp && out);
    if (!inp || !out) return 0;
    snprintf(path, sizeof path, T_DATA("vocab/%s"), name);
    static const char sep[] = "\n__ggml_vocab_test__\n";
    int total = 0, ok = 0;
    char *ip = inp, *op = out;
    for (char *e; (e = strstr(ip, sep)) != NULL; ip = e + sizeof sep - 1) {
        char *oe = strchr(op, '\n');
        if (!oe) break;
        *oe = 0;
        total++;
        long want[512], got[512];
        int nw = parse_ids(op, want, 512);
        int rc = run_tok(path, ip, (size_t)(e - ip), "--no-bos");
        int ng = parse_ids(g_out, got, 512);
        int same = rc == 0 && ng == nw && memcmp(want, got, sizeof *want * (size_t)nw) == 0;
        ok += same;
        if (!same)
            fprintf(stderr, "  %s vector %d: exit %d, want [%s], got [%.*s] %s", name, total,
                    rc, op, (int)strcspn(g_out, "\n"), g_out, g_err);
        op = oe + 1;
    }
    fprintf(stderr, "  %s: %d/%d vectors through the CLI\n", name, ok, total);
    free(inp);
    free(out);
    T_CHECK(total == 46);
    return ok == total;
}

static void test_vectors(void)
{
    static const char *const names[] = {
        "ggml-vocab-llama-spm.gguf", "ggml-vocab-phi-3.gguf", "ggml-vocab-gpt-2.gguf",
        "ggml-vocab-llama-bpe.gguf", "ggml-vocab-deepseek-llm.gguf",
        "ggml-vocab-deepseek-coder.gguf",
    };
    for (int i = 0; i < 6; i++) T_CHECK(vectors_cli(names[i]));
}

/* A copy of SRC with tokenizer.ggml.pre set to PRE (NULL: removed). */
static void write_variant(const char *src, const char *pre, const char *dst)
{
    char err[256];
    gguf *g;
    gguf_w *w;
    T_CHECK(gguf_open(src, &g, err, sizeof err) == 0);
    T_CHECK(gguf_w_init(&w) == 0);
    T_CHECK(gguf_w_copy_from(w, g) == 0);
    if (pre) T_CHECK(gguf_w_set_str(w, "tokenizer.ggml.pre", pre) == 0);
    else T_CHECK(gguf_w_remove(w, "tokenizer.ggml.pre") == 0);
    T_CHECK(gguf_w_write(w, dst) == 0);
    gguf_w_free(w);
    gguf_close(g);
}

static int lines(const char *s)
{
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static void test_pre_tokenizer_names(void)
{
    char bad[512], none[512];
    snprintf(bad, sizeof bad, "%s/bad-pre.gguf", g_dir);
    snprintf(none, sizeof none, "%s/no-pre.gguf", g_dir);
    write_variant(VOCAB("llama-bpe"), "no-such-pre", bad);
    write_variant(VOCAB("llama-bpe"), NULL, none);
    const char *s = "in 3333 years";
    /* unknown name: one line naming it, exit 1, nothing on stdout */
    T_CHECK(run_tok(bad, s, strlen(s), "--no-bos") == 1);
    T_CHECK(strstr(g_err, "unknown pre-tokenizer 'no-such-pre'") != NULL);
    T_CHECK(lines(g_err) == 1);
    T_CHECK(g_out[0] == 0);
    char args[1024];
    snprintf(args, sizeof args, "info %s", bad);
    T_CHECK(t_run(args, g_out, sizeof g_out, g_err, sizeof g_err) == 1);
    T_CHECK(strstr(g_err, "no-such-pre") != NULL && lines(g_err) == 1);
    /* an unknown name given as the option is refused the same way */
    T_CHECK(run_tok(VOCAB("llama-bpe"), s, strlen(s), "--pre-tokenizer nope") == 1);
    T_CHECK(strstr(g_err, "unknown pre-tokenizer 'nope'") != NULL);
    /* forced: one warning, GPT-2's split ("3333" whole, not "333" "3") */
    long want[16], got[16];
    T_CHECK(run_tok(VOCAB("llama-bpe"), s, strlen(s), "--no-bos") == 0);
    int nw = parse_ids(g_out, want, 16);
    T_CHECK(run_tok(bad, s, strlen(s), "--no-bos --pre-tokenizer llama-bpe") == 0);
    T_CHECK(parse_ids(g_out, got, 16) == nw && memcmp(want, got, sizeof *got * (size_t)nw) == 0);
    T_CHECK(strstr(g_err, "--pre-tokenizer") != NULL && lines(g_err) == 1);
    T_CHECK(run_tok(bad, s, strlen(s), "--no-bos --pre-tokenizer gpt-2") == 0);
    /* " 3333" is one word (llama-bpe: " " "333" "3"); its merges give "33" "33" */
    T_CHECK(parse_ids(g_out, got, 16) == 5 && got[2] == 1644 && got[3] == 1644);
    T_CHECK(nw == 5 && want[2] == 8765 && want[3] == 18);
    /* no key: llama.cpp's "default" split, with a warning */
    T_CHECK(run_tok(none, s, strlen(s), "--no-bos") == 0);
    T_CHECK(strstr(g_err, "no tokenizer.ggml.pre") != NULL && lines(g_err) == 1);
}

static void test_bos_special_utf8(void)
{
    /* llama-bpe: no add_bos_token key, BOS added by default (as llama.cpp) */
    T_CHECK(run_tok(VOCAB("llama-bpe"), "Hello", 5, "") == 0);
    long ids[16];
    T_CHECK(parse_ids(g_out, ids, 16) == 2 && ids[0] == 128000 && ids[1] == 9906);
    /* gpt-2: no BOS by default */
    T_CHECK(run_tok(VOCAB("gpt-2"), "Hello", 5, "") == 0);
    T_CHECK(parse_ids(g_out, ids, 16) == 1 && ids[0] == 15496);
    /* control pieces: text unless --parse-special */
    const char *eot = "<|eot_id|>";
    T_CHECK(run_tok(VOCAB("llama-bpe"), eot, strlen(eot), "--no-bos") == 0);
    T_CHECK(parse_ids(g_out, ids, 16) > 1);
    T_CHECK(run_tok(VOCAB("llama-bpe"), eot, strlen(eot), "--no-bos --parse-special") == 0);
    T_CHECK(parse_ids(g_out, ids, 16) == 1 && ids[0] == 128009);
    /* user-defined pieces are matched in text without it (deepseek-coder
     * "\xc3\xbc" (u umlaut) is user-defined 32xxx, not the byte pieces) */
    T_CHECK(run_tok(VOCAB("deepseek-coder"), "\xc3\xbc", 2, "--no-bos") == 0);
    T_CHECK(parse_ids(g_out, ids, 16) == 1 && ids[0] >= 32000);
    /* invalid UTF-8: error naming the byte offset, or replacement */
    const char badtxt[] = "ab\xe2\x82 cd\xff";
    T_CHECK(run_tok(VOCAB("llama-bpe"), badtxt, sizeof badtxt - 1, "--no-bos") == 1);
    T_CHECK(strstr(g_err, "invalid UTF-8 at byte 2") != NULL && lines(g_err) == 1);
    T_CHECK(run_tok(VOCAB("llama-bpe"), badtxt, sizeof badtxt - 1, "--no-bos --utf8 replace") == 0);
    long want[32], got[32];
    int ng = parse_ids(g_out, got, 32);
    const char fixed[] = "ab\xef\xbf\xbd\xef\xbf\xbd cd\xef\xbf\xbd"; /* one U+FFFD per bad byte */
    T_CHECK(run_tok(VOCAB("llama-bpe"), fixed, sizeof fixed - 1, "--no-bos") == 0);
    int nw = parse_ids(g_out, want, 32);
    T_CHECK(ng == nw && memcmp(want, got, sizeof *got * (size_t)nw) == 0);
    T_CHECK(run_tok(VOCAB("llama-bpe"), badtxt, sizeof badtxt - 1, "--utf8 ignore") == 2);
    T_CHECK(strstr(g_err, "--utf8") != NULL && lines(g_err) == 1); /* a usage error */
    /* SentencePiece: byte pieces <0xE2> <0x82> */
    T_CHECK(run_tok(VOCAB("llama-spm"), "\xe2\x82", 2, "--no-bos --utf8 replace") == 0);
    T_CHECK(parse_ids(g_out, ids, 16) == 3 && ids[0] == 29871 && ids[1] == 0xE2 + 3 &&
            ids[2] == 0x82 + 3);
}

static void test_info_vocab_only(void)
{
    char args[512];
    snprintf(args, sizeof args, "info %s", VOCAB("deepseek-llm"));
    T_CHECK(t_run(args, g_out, sizeof g_out, g_err, sizeof g_err) == 0);
    T_CHECK(strstr(g_out, "vocabulary only") != NULL);
    T_CHECK(strstr(g_out, "pre-tokenizer deepseek-llm") != NULL);
    T_CHECK(strstr(g_out, "102400 (BOS 100000, EOS 100001)") != NULL);
}

int main(void)
{
    if (!t_tmpdir(g_dir, sizeof g_dir)) return 1;
    char d[256];
    snprintf(d, sizeof d, "%s", g_dir);
    T_RUN(test_vectors);
    T_RUN(test_pre_tokenizer_names);
    T_RUN(test_bos_special_utf8);
    T_RUN(test_info_vocab_only);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    if (system(cmd) != 0) fprintf(stderr, "  could not remove %s\n", d);
    return t_done();
}
