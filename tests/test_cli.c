/* test_cli.c - the option tables (tools/opt.h) as a user meets them:
 * every command refuses an option it does not take with one line and exit
 * 2, refuses out-of-range values, prints generated help, shows the same
 * defaults everywhere; generate --json prints one JSON object. Runs the
 * kvtile binary. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "engine/gguf.h"
#include "engine/gguf_write.h"
#include "t.h"
#include "tools/cli.h"
#include "tproc.h"

#define MODEL "models/tiny-kjv-f32.gguf"
static char out[1 << 16], err[1 << 14];

static int one_line(const char *s)
{
    const char *nl = strchr(s, '\n');
    return s[0] && (!nl || nl[1] == 0);
}

static void test_unknown_refused(void)
{
    T_REQUIRE(access(t_kvtile(), X_OK) == 0, "no kvtile binary");
    static const char *const cmds[] = {
        "info " MODEL, "tokenize " MODEL " x", "generate " MODEL " -p x",
        "ppl " MODEL " -f x", "batch " MODEL " -i x -o y", "passkey " MODEL,
        "longrope-search " MODEL " -f x --target-ctx 4096 -o y", "merge a b",
        "cache ls /tmp", "iobench",
    };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        char a[512];
        snprintf(a, sizeof a, "%s --no-such-option", cmds[i]);
        int rc = t_run(a, out, sizeof out, err, sizeof err);
        T_CHECK(rc == 2);
        T_CHECK(one_line(err) && strstr(err, "unknown option '--no-such-option'"));
    }
    /* options a command does not use are refused, not ignored */
    static const char *const inapplicable[] = {
        "longrope-search " MODEL " -f x --target-ctx 4096 -o y --kv-store disk",
        "longrope-search " MODEL " -f x --target-ctx 4096 -o y --codec lz4",
        "longrope-search " MODEL " -f x --target-ctx 4096 -o y --io pread",
        "longrope-search " MODEL " -f x --target-ctx 4096 -o y --cache-dir /tmp",
        "longrope-search " MODEL " -f x --target-ctx 4096 -o y --queue-depth 4",
        "longrope-search " MODEL " -f x --target-ctx 4096 -o y --ram-budget 64M",
        "batch " MODEL " -i x -o y --json", "info " MODEL " --codec lz4",
        "tokenize " MODEL " x --threads 2",
    };
    for (size_t i = 0; i < sizeof inapplicable / sizeof inapplicable[0]; i++) {
        int rc = t_run(inapplicable[i], out, sizeof out, err, sizeof err);
        T_CHECK(rc == 2 && one_line(err) && strstr(err, "unknown option"));
    }
}

static void test_values(void)
{
    T_REQUIRE(access(t_kvtile(), X_OK) == 0, "no kvtile binary");
    /* the store accepts at most KVS_MAX_QUEUE_DEPTH = 1024 */
    T_CHECK(t_run("ppl " MODEL " -f x --queue-depth 1025", out, sizeof out, err, sizeof err) == 2);
    T_CHECK(one_line(err) && strstr(err, "out of range (1 .. 1024)"));
    T_CHECK(t_run("ppl " MODEL " -f x --kv-store tape", out, sizeof out, err, sizeof err) == 2);
    T_CHECK(one_line(err) && strstr(err, "expected ram|disk"));
    T_CHECK(t_run("generate " MODEL " -p x -t", out, sizeof out, err, sizeof err) == 2);
    T_CHECK(one_line(err) && strstr(err, "--threads needs a value"));
    T_CHECK(t_run("generate " MODEL " -p x --top-p 2", out, sizeof out, err, sizeof err) == 2);
    T_CHECK(t_run("generate " MODEL " -p x --json=1", out, sizeof out, err, sizeof err) == 2);
}

static void test_help(void)
{
    T_REQUIRE(access(t_kvtile(), X_OK) == 0, "no kvtile binary");
    static const char *const run_cmds[] = { "generate", "ppl", "batch", "passkey" };
    for (size_t i = 0; i < sizeof run_cmds / sizeof run_cmds[0]; i++) {
        char a[128];
        snprintf(a, sizeof a, "%s --help", run_cmds[i]);
        T_CHECK(t_run(a, out, sizeof out, err, sizeof err) == 0);
        /* one default for every command, printed from the code's value */
        T_CHECK(strstr(out, "--kv-store ram|disk     where K/V tiles live (default disk)") != NULL);
        T_CHECK(strstr(out, "--queue-depth N         tile reads in flight (default 8)") != NULL);
        T_CHECK(strstr(out, "--codec C") && strstr(out, "(default lz4)"));
    }
    T_CHECK(t_run("longrope-search --help", out, sizeof out, err, sizeof err) == 0);
    T_CHECK(strstr(out, "--kv-store") == NULL && strstr(out, "--tile-tokens") != NULL);
}

static void test_generate_json(void)
{
    T_REQUIRE(access(t_kvtile(), X_OK) == 0 && access(MODEL, R_OK) == 0, "no kvtile binary or model");
    int rc = t_run("generate " MODEL " -p 'In the beginning' -n 8 --json", out, sizeof out, err, sizeof err);
    T_CHECK(rc == 0);
    T_CHECK(one_line(out) && out[0] == '{');
    T_CHECK(t_json_num(out, "prompt_tokens") >= 2);
    T_CHECK(t_json_num(out, "generated_tokens") >= 1 && t_json_num(out, "generated_tokens") <= 8);
    T_CHECK(t_json_num(out, "prompt_tok_s") > 0 && t_json_num(out, "decode_tok_s") > 0);
    T_CHECK(t_json_num(out, "peak_rss_bytes") > 1e6);
    T_CHECK(strstr(out, "\"text\": \"") && strstr(out, "\"kv_store\": \"disk\""));
    T_CHECK(strstr(out, "\"io_backend\": \"uring\"") || strstr(out, "\"io_backend\": \"pread\""));
    T_CHECK(strstr(out, "\"cpu\": \"") && strstr(out, "; kernels "));
    rc = t_run("generate " MODEL " -p 'In the beginning' -n 8 --json --kv-store ram", out, sizeof out, err, sizeof err);
    T_CHECK(rc == 0 && strstr(out, "\"kv_store\": \"ram\"") && strstr(out, "\"io_backend\": \"none\""));
}

/* KVT_CPU: info names the set forced (portable runs everywhere), a
 * bogus or missing set is one line and exit 2. */
static void test_cpu_env(void)
{
    T_REQUIRE(access(t_kvtile(), X_OK) == 0 && access(MODEL, R_OK) == 0, "no kvtile binary or model");
    setenv("KVT_CPU", "portable", 1);
    T_CHECK(t_run("info " MODEL, out, sizeof out, err, sizeof err) == 0);
    T_CHECK(strstr(out, "\ncpu ") && strstr(out, "; kernels portable\n"));
    setenv("KVT_CPU", "sse9", 1);
    T_CHECK(t_run("info " MODEL, out, sizeof out, err, sizeof err) == 2);
    T_CHECK(one_line(err) && strstr(err, "KVT_CPU=sse9: unknown kernel set"));
    unsetenv("KVT_CPU");
    T_CHECK(t_run("info " MODEL, out, sizeof out, err, sizeof err) == 0);
    T_CHECK(strstr(out, "; kernels portable\n") == NULL || strstr(out, "\ncpu baseline"));
}

/* A copy of the model with one tokenizer key set to VAL (u32). */
static int write_hostile(const char *path, const char *key, uint32_t val)
{
    gguf *g;
    if (gguf_open(MODEL, &g, NULL, 0) < 0) return -1;
    gguf_w *w;
    int rc = gguf_w_init(&w);
    if (rc == 0) rc = gguf_w_copy_from(w, g);
    if (rc == 0) rc = gguf_w_set_u32(w, key, val);
    if (rc == 0) rc = gguf_w_write(w, path);
    gguf_w_free(w);
    gguf_close(g);
    return rc;
}

/* A model whose BOS (or padding) id is outside the vocabulary: one line
 * naming the file and the key, exit 1, for every command that loads it. */
static void test_hostile_model(void)
{
    T_REQUIRE(access(t_kvtile(), X_OK) == 0 && access(MODEL, R_OK) == 0, "no kvtile binary or model");
    char path[] = "/tmp/kvt-test-cli-XXXXXX";
    int fd = mkstemp(path);
    T_CHECK(fd >= 0);
    if (fd < 0) return;
    close(fd);
    static const char *const keys[] = { "tokenizer.ggml.bos_token_id", "tokenizer.ggml.padding_token_id" };
    for (int i = 0; i < 2; i++) {
        T_CHECK(write_hostile(path, keys[i], 5000) == 0);
        char a[256];
        snprintf(a, sizeof a, "info %s", path);
        T_CHECK(t_run(a, out, sizeof out, err, sizeof err) == 1);
        T_CHECK(one_line(err) && strstr(err, path) && strstr(err, keys[i]) &&
                strstr(err, "outside the vocabulary"));
        snprintf(a, sizeof a, "generate %s -p hello -n 2 --kv-store ram", path);
        T_CHECK(t_run(a, out, sizeof out, err, sizeof err) == 1);
        T_CHECK(one_line(err) && strstr(err, keys[i]));
    }
    unlink(path);
}

static void check_json_str(const char *in, const char *want)
{
    char buf[256] = "";
    FILE *f = fmemopen(buf, sizeof buf - 1, "w");
    T_CHECK(f != NULL);
    if (!f) return;
    cli_json_str(f, in);
    fclose(f);
    if (strcmp(buf, want)) fprintf(stderr, "  json_str: got %s want %s\n", buf, want);
    T_CHECK(strcmp(buf, want) == 0);
}

/* The JSON string writer: escapes, and never emits bytes that are not UTF-8. */
static void test_json_str(void)
{
    check_json_str("a\"b\\c\nd\te\x01", "\"a\\\"b\\\\c\\nd\\te\\u0001\"");
    check_json_str("caf\xc3\xa9 \xf0\x9f\x98\x80", "\"caf\xc3\xa9 \xf0\x9f\x98\x80\"");
    check_json_str("\r\x1f\x7f/\xe2\x80\xa8", "\"\\r\\u001F\x7f/\xe2\x80\xa8\""); /* jansson's escapes */
    /* not UTF-8: each byte becomes U+FFFD (EF BF BD), written raw */
#define FFFD "\xef\xbf\xbd"
    check_json_str("cut \xe2\x80", "\"cut " FFFD FFFD "\"");            /* ends inside a character */
    check_json_str("\xc0\xaf \xed\xa0\x80 \xff", "\"" FFFD FFFD " " FFFD FFFD FFFD " " FFFD "\"");
#undef FFFD
}

int main(void)
{
    T_RUN(test_json_str);
    T_RUN(test_hostile_model);
    T_RUN(test_unknown_refused);
    T_RUN(test_values);
    T_RUN(test_help);
    T_RUN(test_generate_json);
    T_RUN(test_cpu_env);
    return t_done();
}
