/* test_install: `make install` into a temporary prefix gives the layout
 * the README promises; the examples build against that copy with nothing
 * but pkg-config and print the CLI's numbers (bit-identical nll_sum); the
 * ask example reuses its kept cache and refuses another model's.
 *
 * Runs make in the current directory (the source tree), with BUILD =
 * $KVT_BUILD, so nothing is compiled again when the build is current. */
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "t.h"
#include "tproc.h"

static const char *MODEL = "models/tiny-kjv-f32.gguf";
static const char *MODEL_F16 = "models/tiny-kjv-f16.gguf";
static const char *TEXT = "tests/data/kjv-nt.txt";

static char tmp[256], prefix[300], env[700];
static int installed;
static char out[1 << 16], err[1 << 16], cmd[1 << 14];

static const char *build_dir(void)
{
    const char *b = getenv("KVT_BUILD");
    return b && *b ? b : "build";
}

static int exists(const char *dir, const char *rel)
{
    char p[8192];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    return stat(p, &st) == 0;
}

/* The number after "nll_sum": in S (NAN: none). */
static double nll_sum(const char *s) { return t_json_num(s, "nll_sum"); }

static void test_install_layout(void)
{
    T_REQUIRE(access(MODEL, R_OK) == 0, MODEL);
    T_CHECK(t_tmpdir(tmp, sizeof tmp) != NULL);
    snprintf(prefix, sizeof prefix, "%s/prefix", tmp);
    /* (CI's -Werror does not change objects: the build stays current) */
    snprintf(cmd, sizeof cmd, "make -s install BUILD=%s PREFIX=%s 2>&1", build_dir(), prefix);
    int rc = t_sh(cmd, out, sizeof out, NULL, 0);
    if (rc != 0) fprintf(stderr, "  make install: exit %d\n%s", rc, out);
    T_CHECK(rc == 0);
    static const char *const files[] = {
        "bin/kvtile", "include/kvtile.h", "lib/libkvtile.so", "lib/libkvtile.a",
        "lib/pkgconfig/kvtile.pc", "share/man/man1/kvtile.1",
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        if (!exists(prefix, files[i])) fprintf(stderr, "  missing %s\n", files[i]);
        T_CHECK(exists(prefix, files[i]));
    }
    /* the soname link chain: libkvtile.so -> libkvtile.so.MAJOR -> the file */
    char p[8192], target[256];
    snprintf(p, sizeof p, "%s/lib/libkvtile.so", prefix);
    ssize_t n = readlink(p, target, sizeof target - 1);
    T_CHECK(n > 0);
    target[n > 0 ? n : 0] = 0;
    T_CHECK(!strcmp(target, "libkvtile.so.0"));
    T_CHECK(exists(prefix, "lib/libkvtile.so.0"));
    snprintf(cmd, sizeof cmd, "readelf -d %s/lib/libkvtile.so.0 | grep SONAME", prefix);
    T_CHECK(t_sh(cmd, out, sizeof out, NULL, 0) == 0 && strstr(out, "[libkvtile.so.0]"));
    /* only kvtile_* is exported */
    snprintf(cmd, sizeof cmd, "nm -D --defined-only %s/lib/libkvtile.so.0 | awk '{print $3}'", prefix);
    T_CHECK(t_sh(cmd, out, sizeof out, NULL, 0) == 0);
    int n_sym = 0, n_other = 0;
    for (char *sv = NULL, *l = strtok_r(out, "\n", &sv); l; l = strtok_r(NULL, "\n", &sv)) {
        if (!strncmp(l, "kvtile_", 7)) n_sym++;
        else if (strcmp(l, "KVTILE_0")) {
            fprintf(stderr, "  exported: %s\n", l);
            n_other++;
        }
    }
    T_CHECK(n_sym >= 25);
    T_CHECK(n_other == 0);
    /* the man page: every command, and options of each */
    snprintf(p, sizeof p, "%s/share/man/man1/kvtile.1", prefix);
    char *man = t_slurp(p, NULL);
    T_CHECK(man != NULL);
    static const char *const in_man[] = {
        ".TH KVTILE 1", ".SS kvtile info", ".SS kvtile tokenize", ".SS kvtile generate",
        ".SS kvtile ppl", ".SS kvtile longrope\\-search", ".SS kvtile passkey",
        ".SS kvtile batch", ".SS kvtile merge", ".SS kvtile cache ls", ".SS kvtile cache rm",
        ".SS kvtile cache gc", ".SS kvtile iobench", "\\fB\\-\\-stride\\fR \\fIS\\fR",
        "\\fB\\-\\-cache\\-dir\\fR \\fIDIR\\fR", "\\fB\\-t, \\-\\-threads\\fR",
    };
    for (size_t i = 0; man && i < sizeof in_man / sizeof in_man[0]; i++) {
        if (!strstr(man, in_man[i])) fprintf(stderr, "  man page lacks %s\n", in_man[i]);
        T_CHECK(strstr(man, in_man[i]) != NULL);
    }
    free(man);
    /* the installed CLI runs */
    snprintf(cmd, sizeof cmd, "%s/bin/kvtile info %s", prefix, MODEL);
    T_CHECK(t_sh(cmd, out, sizeof out, NULL, 0) == 0);
    snprintf(env, sizeof env, "PKG_CONFIG_PATH=%s/lib/pkgconfig LD_LIBRARY_PATH=%s/lib", prefix,
             prefix);
    installed = 1;
}

/* DESTDIR stages the same layout under another root; the .pc names PREFIX. */
static void test_install_destdir(void)
{
    if (!installed) T_SKIP("no install");
    snprintf(cmd, sizeof cmd, "make -s install BUILD=%s PREFIX=/opt/kvt DESTDIR=%s/stage 2>&1",
             build_dir(), tmp);
    T_CHECK(t_sh(cmd, out, sizeof out, NULL, 0) == 0);
    char stage[400];
    snprintf(stage, sizeof stage, "%s/stage/opt/kvt", tmp);
    T_CHECK(exists(stage, "lib/libkvtile.so.0") && exists(stage, "include/kvtile.h"));
    char p[8192];
    snprintf(p, sizeof p, "%s/lib/pkgconfig/kvtile.pc", stage);
    char *pc = t_slurp(p, NULL);
    T_CHECK(pc && strstr(pc, "prefix=/opt/kvt\n"));
    free(pc);
}

/* Build example NAME.c with nothing but pkg-config's flags. */
static int build_example(const char *name)
{
    snprintf(cmd, sizeof cmd,
             "export %s; cc -std=c11 -Wall -Wextra -Werror examples/%s.c "
             "$(pkg-config --cflags --libs kvtile) -o %s/%s 2>&1", env, name, tmp, name);
    int rc = t_sh(cmd, out, sizeof out, NULL, 0);
    if (rc != 0) fprintf(stderr, "  building %s: %s\n", name, out);
    return rc;
}

/* A sanitizer build: its library cannot be loaded by a program built
 * without the sanitizer (python), nor run the examples' timing. */
static int sanitized(void)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/cflags", build_dir());
    char *f = t_slurp(p, NULL);
    int san = f && strstr(f, "-fsanitize");
    free(f);
    return san;
}

static void test_score_example(void)
{
    if (!installed) T_SKIP("no install");
    if (sanitized()) T_SKIP("sanitizer build");
    T_CHECK(build_example("score") == 0);
    snprintf(cmd, sizeof cmd, "head -c 80000 %s > %s/text.txt", TEXT, tmp);
    T_CHECK(t_sh(cmd, NULL, 0, NULL, 0) == 0);
    /* (the kernel set: the library's per-context option against the
     * CLI's KVT_CPU; "" = the default) */
    static const char *const runs[][3] = { { "256", "4", "" }, { "100", "7", "" },
                                           { "256", "2", "portable" } };
    for (size_t i = 0; i < 3; i++) {
        snprintf(cmd, sizeof cmd, "ppl %s -f %s/text.txt -c %s --chunks %s --json -q", MODEL,
                 tmp, runs[i][0], runs[i][1]);
        char envcmd[sizeof cmd + 64];
        snprintf(envcmd, sizeof envcmd, "%s%s %s %s", runs[i][2][0] ? "KVT_CPU=" : "",
                 runs[i][2], t_kvtile(), cmd);
        T_CHECK(t_sh(envcmd, out, sizeof out, err, sizeof err) == 0);
        double ref = nll_sum(out), ref_n = t_json_num(out, "n_scored");
        if (runs[i][2][0]) T_CHECK(strstr(out, "kernels portable") != NULL);
        snprintf(cmd, sizeof cmd, "export %s; %s/score %s %s/text.txt %s %s %s", env, tmp,
                 MODEL, tmp, runs[i][0], runs[i][1], runs[i][2]);
        T_CHECK(t_sh(cmd, out, sizeof out, err, sizeof err) == 0);
        if (nll_sum(out) != ref) fprintf(stderr, "  score: %s  cli: %.17g\n", out, ref);
        T_CHECK(!isnan(ref) && nll_sum(out) == ref); /* bit for bit */
        T_CHECK(t_json_num(out, "n_scored") == ref_n);
        if (runs[i][2][0]) continue;
        /* the same through ctypes */
        snprintf(cmd, sizeof cmd, "export %s; python3 examples/score.py %s %s/text.txt %s %s",
                 env, MODEL, tmp, runs[i][0], runs[i][1]);
        int rc = t_sh(cmd, out, sizeof out, err, sizeof err);
        if (rc != 0) fprintf(stderr, "  score.py: %s", err);
        T_CHECK(rc == 0 && nll_sum(out) == ref);
    }
}

static void test_ask_example(void)
{
    if (!installed) T_SKIP("no install");
    if (sanitized()) T_SKIP("sanitizer build");
    T_CHECK(build_example("ask") == 0);
    snprintf(cmd, sizeof cmd, "head -c 5000 %s > %s/doc.txt && tail -c 5000 %s > %s/doc2.txt",
             TEXT, tmp, TEXT, tmp);
    T_CHECK(t_sh(cmd, NULL, 0, NULL, 0) == 0);
    char ans[3][1024], note[3][256];
    const char *docs[3] = { "doc", "doc", "doc2" };
    for (int i = 0; i < 3; i++) {
        snprintf(cmd, sizeof cmd, "export %s; %s/ask %s %s/%s.txt %s/doc.kvt 'Who begat Jacob?'",
                 env, tmp, MODEL, tmp, docs[i], tmp);
        int rc = t_sh(cmd, ans[i], sizeof ans[i], note[i], sizeof note[i]);
        if (rc != 0) fprintf(stderr, "  ask: %s", note[i]);
        T_CHECK(rc == 0);
    }
    /* the first run prefills and keeps the cache, the second only reuses it */
    T_CHECK(!strncmp(note[0], "prefill ", 8));
    T_CHECK(!strncmp(note[1], "reused ", 7));
    T_CHECK(atol(note[0] + 8) > 1000 && atol(note[0] + 8) == atol(note[1] + 7));
    T_CHECK(strlen(ans[0]) > 1);
    T_CHECK(!strcmp(ans[0], ans[1]));
    if (strcmp(ans[0], ans[1])) fprintf(stderr, "  answers: '%s' vs '%s'\n", ans[0], ans[1]);
    /* another document starts the cache over */
    T_CHECK(!strncmp(note[2], "prefill ", 8));
    /* another model's cache is refused (the example then starts it over) */
    if (access(MODEL_F16, R_OK) == 0) {
        snprintf(cmd, sizeof cmd, "export %s; %s/ask %s %s/doc2.txt %s/doc.kvt 'Who?'", env, tmp,
                 MODEL_F16, tmp, tmp);
        T_CHECK(t_sh(cmd, out, sizeof out, err, sizeof err) == 0);
        T_CHECK(strstr(err, "cache was built by another model; starting it over") != NULL);
    }
}

/* The static archive exports only kvtile_*: a program with functions of the
 * library's internal names (pool_create, rope_prepare) links against it and
 * keeps its own. With a plain `ar` of the objects the link fails (multiple
 * definitions). */
static void test_static_archive(void)
{
    if (!installed) T_SKIP("no install");
    snprintf(cmd, sizeof cmd,
             "nm -g --defined-only %s/lib/libkvtile.a | awk 'NF==3{print $3}'", prefix);
    T_CHECK(t_sh(cmd, out, sizeof out, NULL, 0) == 0);
    int n_api = 0, n_other = 0;
    for (char *sv = NULL, *l = strtok_r(out, "\n", &sv); l; l = strtok_r(NULL, "\n", &sv)) {
        if (!strncmp(l, "kvtile_", 7)) n_api++;
        else if (n_other++ < 5) fprintf(stderr, "  libkvtile.a defines %s\n", l);
    }
    T_CHECK(n_api >= 25);
    T_CHECK(n_other == 0);
    char src[400];
    snprintf(src, sizeof src, "%s/clash.c", tmp);
    FILE *f = fopen(src, "w");
    T_REQUIRE(f != NULL, src);
    fputs("#include <stdio.h>\n#include <kvtile.h>\n"
          "int pool_create(void) { return 7; }\n"
          "int rope_prepare(void) { return 42; }\n"
          "int main(void) {\n"
          "    printf(\"%s %d %d\\n\", kvtile_version_string(), pool_create(), rope_prepare());\n"
          "    return kvtile_version() > 0 ? 0 : 1;\n}\n", f);
    T_CHECK(fclose(f) == 0);
    if (sanitized()) T_SKIP("sanitizer build: the archive needs the sanitizer runtime");
    snprintf(cmd, sizeof cmd,
             "export %s; cc -std=c11 -Wall -Werror %s $(pkg-config --cflags kvtile) "
             "%s/lib/libkvtile.a $(pkg-config --static --libs kvtile | sed 's/-lkvtile//') "
             "-o %s/clash 2>&1 && %s/clash", env, src, prefix, tmp, tmp);
    int rc = t_sh(cmd, out, sizeof out, NULL, 0);
    if (rc != 0) fprintf(stderr, "  static link: %s", out);
    T_CHECK(rc == 0);
    T_CHECK(strstr(out, " 7 42\n") != NULL);
}

int main(void)
{
    T_RUN(test_install_layout);
    T_RUN(test_install_destdir);
    T_RUN(test_static_archive);
    T_RUN(test_score_example);
    T_RUN(test_ask_example);
    if (tmp[0]) {
        snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
        t_sh(cmd, NULL, 0, NULL, 0);
    }
    return t_done();
}
