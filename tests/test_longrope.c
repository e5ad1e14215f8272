/* test_longrope.c - `kvtile longrope-search` through the built binary on
 * tiny-kjv with small budgets: same seed -> same result, with one worker or
 * two; SIGKILL + --resume -> the same factors as an uninterrupted run; the
 * fitness equals the NLL `kvtile ppl` reports for the same window, factors
 * and n_hat; n_hat searched over the paper's set; --patience and --budget
 * stop where their rules say; --schedule seeds each stage with the previous
 * result scaled (as --from does); the written GGUF carries the factors
 * (kvtile info) and gives the same nll_sum as the model with
 * --longrope-factors (llama and phi3 files); the magnitude multiplier as a
 * searched gene (--search-mscale) keeps all of these, and
 * --longrope-mscale reproduces its result; --refine rounds continue a
 * search through --resume exactly. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/kvt.h"
#include "tests/t.h"
#include "tests/tproc.h"

static char g_dir[64];
static char g_bin[512];
static double g_best_nll = NAN; /* run A's best NLL */

#define MODEL T_MODEL("tiny-kjv-f32.gguf")
#define PHI3 T_MODEL("tiny-kjv-phi3-longrope-x8-f32.gguf")
/* the Old Testament part of kjv.txt (training domain, not the held-out NT) */
#define SEARCH_ARGS "-f " T_DATA("kjv.txt") " --text-before 'Matthew 1' --target-ctx 512 " \
                    "--samples 1 --population 6 --seed 7 -t 1 --quiet"


/* Run a shell command, capture stdout into out (may be NULL). @return exit status. */
static int run(char *out, size_t cap, const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = 0;
    char buf[4096];
    size_t r;
    while ((r = fread(buf, 1, sizeof buf, p)) > 0)
        if (out && n + r < cap) { memcpy(out + n, buf, r); n += r; }
    if (out) out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int files_equal(const char *a, const char *b)
{
    size_t la, lb;
    char *x = t_slurp(a, &la), *y = t_slurp(b, &lb);
    int eq = x && y && la == lb && !memcmp(x, y, la);
    free(x);
    free(y);
    return eq;
}

static double json_num(const char *s, const char *key)
{
    char k[64];
    snprintf(k, sizeof k, "\"%s\": ", key);
    const char *p = strstr(s, k);
    return p ? strtod(p + strlen(k), NULL) : NAN;
}

/* Journal records whose text starts with PREFIX (a record line is 16 hex
 * digits of checksum, a space, the text; kvstore/journal.h). */
static int count_lines(const char *path, const char *prefix)
{
    char *t = t_slurp(path, NULL);
    int n = 0;
    for (char *p = t; p && *p;) {
        if (strlen(p) > 17 && p[16] == ' ' && !strncmp(p + 17, prefix, strlen(prefix))) n++;
        char *nl = strchr(p, '\n');
        p = nl ? nl + 1 : p + strlen(p);
    }
    free(t);
    return n;
}

/* Runs A and B: same seed -> identical factors and identical journals. */
static void test_same_seed_same_result(void)
{
    char out[4096];
    T_CHECK(run(out, sizeof out, "%s longrope-search %s %s --iterations 4 -o %s/a --json",
                g_bin, MODEL, SEARCH_ARGS, g_dir) == 0);
    T_CHECK(json_num(out, "evaluations") == 30);
    g_best_nll = json_num(out, "best_nll");
    T_CHECK(run(NULL, 0, "%s longrope-search %s %s --iterations 4 -o %s/b", g_bin, MODEL,
                SEARCH_ARGS, g_dir) == 0);
    char a[256], b[256];
    snprintf(a, sizeof a, "%s/a.factors.txt", g_dir);
    snprintf(b, sizeof b, "%s/b.factors.txt", g_dir);
    T_CHECK(files_equal(a, b));
    snprintf(a, sizeof a, "%s/a.journal", g_dir);
    snprintf(b, sizeof b, "%s/b.journal", g_dir);
    T_CHECK(files_equal(a, b));
    T_CHECK(count_lines(a, "iter ") == 5);
    T_CHECK(count_lines(a, "eval ") == 30);
    /* another seed searches differently */
    T_CHECK(run(NULL, 0, "%s longrope-search %s %s --iterations 1 --seed 8 -o %s/c", g_bin,
                MODEL, SEARCH_ARGS, g_dir) == 0);
    snprintf(b, sizeof b, "%s/c.journal", g_dir);
    T_CHECK(!files_equal(a, b));
    /* the journal is not overwritten without --resume */
    T_CHECK(run(NULL, 0, "%s longrope-search %s %s --iterations 4 -o %s/a 2>/dev/null", g_bin,
                MODEL, SEARCH_ARGS, g_dir) != 0);
    /* a journal of another search is refused */
    T_CHECK(run(NULL, 0, "%s longrope-search %s %s --iterations 4 --journal %s --resume -o %s/x 2>/dev/null",
                g_bin, MODEL, SEARCH_ARGS, b, g_dir) != 0);
    char lr[256];
    snprintf(lr, sizeof lr, "%s/a.log.json", g_dir);
    char *log = t_slurp(lr, NULL);
    T_CHECK(log && strstr(log, "\"iter\": 4") && strstr(log, "\"best_factors\": ["));
    free(log);
}

/* SIGKILL after two iterations, then --resume: same result as run A. */
static void test_kill_and_resume(void)
{
    char jr[256];
    snprintf(jr, sizeof jr, "%s/k.journal", g_dir);
    pid_t pid = fork();
    if (pid == 0) {
        char cmd[2048];
        snprintf(cmd, sizeof cmd, "exec %s longrope-search %s %s --iterations 4 -o %s/k",
                 g_bin, MODEL, SEARCH_ARGS, g_dir);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    T_CHECK(pid > 0);
    int waited = 0;
    while (count_lines(jr, "iter ") < 2 && waited < 60000) {
        struct timespec ts = { 0, 20 * 1000 * 1000 };
        nanosleep(&ts, NULL);
        waited += 20;
    }
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    T_CHECK(WIFSIGNALED(st)); /* killed before it finished */
    int evals_before = count_lines(jr, "eval ");
    T_CHECK(evals_before >= 12 && evals_before < 30);
    /* a torn line as a kill in the middle of a write leaves it */
    FILE *f = fopen(jr, "a");
    if (f) { fputs("eval 0 9 2.5 100,10", f); fclose(f); }
    char out[4096];
    T_CHECK(run(out, sizeof out, "%s longrope-search %s %s --iterations 4 -o %s/k --resume --json",
                g_bin, MODEL, SEARCH_ARGS, g_dir) == 0);
    T_CHECK(json_num(out, "evaluations") == 30);
    T_CHECK(json_num(out, "computed") == 30 - evals_before);
    char a[256], k[256];
    snprintf(a, sizeof a, "%s/a.factors.txt", g_dir);
    snprintf(k, sizeof k, "%s/k.factors.txt", g_dir);
    T_CHECK(files_equal(a, k));
    snprintf(a, sizeof a, "%s/a.journal", g_dir);
    T_CHECK(files_equal(a, jr)); /* the torn line was cut, nothing else differs */
}

/* The search's fitness is the ppl protocol's mean NLL of the window; the
 * GGUF gives the same nll_sum as the model with the factors file. */
static void test_gguf_matches_factors(void)
{
    char o1[4096], o2[4096];
    double best_nll = g_best_nll;
    T_CHECK(isfinite(best_nll));
    /* window 1 of 1 = tokens [0, 512) of the text = ppl's first chunk */
    T_CHECK(run(o1, sizeof o1, "%s ppl %s -f %s -c 512 --chunks 1 --kv-store ram -t 1 --json "
                "--longrope-factors %s/a.factors.txt --rope-scaling longrope",
                g_bin, MODEL, T_DATA("kjv.txt"), g_dir) == 0);
    T_NEAR(json_num(o1, "nll_sum") / json_num(o1, "n_scored"), best_nll, 1e-9);
    /* GGUF vs factors file, on held-out text */
    T_CHECK(run(o1, sizeof o1, "%s ppl %s/a.gguf -f %s -c 512 --chunks 3 --kv-store ram --json",
                g_bin, g_dir, T_DATA("kjv-nt.txt")) == 0);
    T_CHECK(run(o2, sizeof o2, "%s ppl %s -f %s -c 512 --chunks 3 --kv-store ram --json "
                "--longrope-factors %s/a.factors.txt --rope-scaling longrope",
                g_bin, MODEL, T_DATA("kjv-nt.txt"), g_dir) == 0);
    double n1 = json_num(o1, "nll_sum"), n2 = json_num(o2, "nll_sum");
    T_CHECK(isfinite(n1) && n1 == n2);
    /* plain RoPE differs (the factors are in effect) */
    T_CHECK(run(o2, sizeof o2, "%s ppl %s -f %s -c 512 --chunks 3 --kv-store ram --json",
                g_bin, MODEL, T_DATA("kjv-nt.txt")) == 0);
    T_CHECK(json_num(o2, "nll_sum") != n1);
    /* info shows the factors, the context and the magnitude */
    T_CHECK(run(o1, sizeof o1, "%s info %s/a.gguf", g_bin, g_dir) == 0);
    char path[256];
    snprintf(path, sizeof path, "%s/a.factors.txt", g_dir);
    char *fac = t_slurp(path, NULL);
    T_CHECK(fac != NULL);
    char want[1024] = "rope_freqs     ";
    int nf = 0;
    for (char *p = fac ? strchr(fac, '\n') + 1 : NULL; p && *p; nf++) {
        char *e;
        double v = strtod(p, &e);
        size_t l = strlen(want);
        snprintf(want + l, sizeof want - l, " %.6g", (double)(float)v);
        p = *e ? e + 1 : e;
    }
    T_CHECK(nf == 32);
    T_CHECK(strstr(o1, want) != NULL);
    T_CHECK(strstr(o1, "context         512 trained") != NULL);
    T_CHECK(strstr(o1, "magnitude 1.060660") != NULL); /* sqrt(1 + ln 2 / ln 256) */
    free(fac);
    /* --short does not apply to llama files */
    T_CHECK(run(NULL, 0, "%s longrope-search %s %s --short -o %s/s 2>/dev/null", g_bin, MODEL,
                SEARCH_ARGS, g_dir) != 0);
}

/* phi3: rope_factors_long.weight; same nll_sum as the file with the factors. */
static void test_phi3(void)
{
    char o1[4096], o2[4096];
    T_CHECK(run(NULL, 0, "%s longrope-search %s %s --population 3 --iterations 1 --short -o %s/p",
                g_bin, PHI3, SEARCH_ARGS, g_dir) == 0);
    T_CHECK(run(o1, sizeof o1, "%s ppl %s/p.gguf -f %s -c 512 --chunks 2 --kv-store ram --json",
                g_bin, g_dir, T_DATA("kjv-nt.txt")) == 0);
    T_CHECK(run(o2, sizeof o2, "%s ppl %s -f %s -c 512 --chunks 2 --kv-store ram --json "
                "--longrope-factors %s/p.factors.txt",
                g_bin, PHI3, T_DATA("kjv-nt.txt"), g_dir) == 0);
    double n1 = json_num(o1, "nll_sum"), n2 = json_num(o2, "nll_sum");
    T_CHECK(isfinite(n1) && n1 == n2);
    T_CHECK(run(o1, sizeof o1, "%s info %s/p.gguf", g_bin, g_dir) == 0);
    T_CHECK(strstr(o1, "longrope        long factors") != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/p.short-factors.txt", g_dir);
    T_CHECK(access(path, F_OK) == 0);
}

/* A search with n_hat: one worker and two give the same journal; every
 * n_hat tried is in the paper's set, more than one was tried; the best's
 * fitness is what `ppl --longrope-n-hat` gives. */
static void test_workers_and_n_hat(void)
{
    char out[4096], a[256], b[256];
    T_CHECK(run(out, sizeof out, "%s longrope-search %s %s --iterations 3 --search-n-hat --workers 2 -t 2 "
                "-o %s/n2 --json", g_bin, MODEL, SEARCH_ARGS, g_dir) == 0);
    double nll = json_num(out, "best_nll");
    double nh = json_num(out, "n_hat");
    T_CHECK(run(NULL, 0, "%s longrope-search %s %s --iterations 3 --search-n-hat --workers 1 -o %s/n1",
                g_bin, MODEL, SEARCH_ARGS, g_dir) == 0);
    snprintf(a, sizeof a, "%s/n2.journal", g_dir);
    snprintf(b, sizeof b, "%s/n1.journal", g_dir);
    T_CHECK(files_equal(a, b));
    snprintf(b, sizeof b, "%s/n2.factors.txt", g_dir);
    /* n_hat values of the journal's candidates */
    static const int paper[] = { 0, 1, 2, 4, 8, 12, 16, 20, 24, 28, 32, 64, 128, 256 };
    int seen[14] = { 0 }, bad = 0, n = 0;
    char *t = t_slurp(a, NULL);
    for (char *p = t; p && (p = strstr(p, " eval 0 ")) != NULL; p++) {
        int it, v;
        double x;
        if (sscanf(p, " eval 0 %d %lf %d", &it, &x, &v) != 3) { bad++; continue; }
        int k = 0;
        while (k < 14 && paper[k] != v) k++;
        if (k == 14) bad++;
        else seen[k] = 1;
        n++;
    }
    free(t);
    int distinct = 0;
    for (int k = 0; k < 14; k++) distinct += seen[k];
    T_CHECK(n == 24 && bad == 0);
    T_CHECK(distinct >= 2);
    /* the fitness is the ppl protocol with the factors and n_hat */
    T_CHECK(run(out, sizeof out, "%s ppl %s -f %s -c 512 --chunks 1 --kv-store ram -t 1 --json "
                "--longrope-factors %s --rope-scaling longrope --longrope-n-hat %d",
                g_bin, MODEL, T_DATA("kjv.txt"), b, (int)nh) == 0);
    T_NEAR(json_num(out, "nll_sum") / json_num(out, "n_scored"), nll, 1e-9);
    /* the factors file says its target and n_hat */
    char *f = t_slurp(b, NULL);
    char want[64];
    snprintf(want, sizeof want, "target_ctx 512 n_hat %d\n", (int)nh);
    T_CHECK(f && strstr(f, want) != NULL);
    free(f);
}

/* Start `sh -c CMD`, SIGKILL it once JOURNAL has N iteration records.
 * @return 1 if it was killed before finishing. */
static int kill_after_iters(const char *cmd, const char *journal, int n)
{
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    if (pid < 0) return 0;
    for (int waited = 0; count_lines(journal, "iter ") < n && waited < 60000; waited += 20) {
        struct timespec ts = { 0, 20 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    return WIFSIGNALED(st);
}

/* The magnitude multiplier as a gene: every candidate carries one on the
 * 0.70..1.30 grid and several are tried; one worker and two, and a killed
 * and resumed search, write the same journal; the best's fitness is what
 * `ppl --longrope-mscale M` gives; the GGUF's attn_factor is M times the
 * paper's magnitude and gives the same nll_sum as the factors with
 * --longrope-mscale M; --from seeds with the file's multiplier. */
static void test_mscale(void)
{
    char out[4096], a[256], b[256], cmd[2048];
#define MS_ARGS SEARCH_ARGS " --iterations 4 --search-n-hat --search-mscale"
    T_CHECK(run(out, sizeof out, "%s longrope-search %s %s --workers 2 -t 2 -o %s/m2 --json", g_bin,
                MODEL, MS_ARGS, g_dir) == 0);
    const double nll = json_num(out, "best_nll"), nh = json_num(out, "n_hat");
    const double ms = json_num(out, "mscale"), n_evals = json_num(out, "evaluations");
    T_CHECK(ms >= 0.70 && ms <= 1.30);
    T_CHECK(n_evals >= 20 && n_evals <= 30); /* (children equal to earlier ones are dropped) */
    T_CHECK(run(NULL, 0, "%s longrope-search %s %s --workers 1 -o %s/m1", g_bin, MODEL, MS_ARGS,
                g_dir) == 0);
    snprintf(a, sizeof a, "%s/m2.journal", g_dir);
    snprintf(b, sizeof b, "%s/m1.journal", g_dir);
    T_CHECK(files_equal(a, b));
    /* every candidate's multiplier is on the grid; several were tried */
    int seen[61] = { 0 }, bad = 0, n = 0, distinct = 0;
    char *t = t_slurp(a, NULL);
    for (char *p = t; p && (p = strstr(p, " eval 0 ")) != NULL; p++) {
        char *nl = strchr(p, '\n'), *m = strstr(p, " mscale ");
        int v = m && (!nl || m < nl) ? atoi(m + 8) : -1;
        if (v < 70 || v > 130) bad++;
        else seen[v - 70] = 1;
        n++;
    }
    free(t);
    for (int k = 0; k < 61; k++) distinct += seen[k];
    T_CHECK(n == (int)n_evals && bad == 0);
    T_CHECK(distinct >= 3);
    /* without the gene the journal has no multiplier */
    snprintf(b, sizeof b, "%s/a.journal", g_dir);
    t = t_slurp(b, NULL);
    T_CHECK(t && !strstr(t, "mscale"));
    free(t);
    /* killed after two iterations and resumed: the same journal and factors */
    snprintf(b, sizeof b, "%s/mk.journal", g_dir);
    snprintf(cmd, sizeof cmd, "exec %s longrope-search %s %s -o %s/mk", g_bin, MODEL, MS_ARGS, g_dir);
    T_CHECK(kill_after_iters(cmd, b, 2));
    T_CHECK(run(out, sizeof out, "%s longrope-search %s %s -o %s/mk --resume --json", g_bin, MODEL,
                MS_ARGS, g_dir) == 0);
    T_CHECK(json_num(out, "computed") < n_evals);
    T_CHECK(files_equal(a, b));
    snprintf(a, sizeof a, "%s/m2.factors.txt", g_dir);
    snprintf(b, sizeof b, "%s/mk.factors.txt", g_dir);
    T_CHECK(files_equal(a, b));
    /* the factors file names the multiplier; ppl with it gives the fitness */
    char *f = t_slurp(a, NULL);
    char want[96];
    snprintf(want, sizeof want, "n_hat %d mscale %.2f\n", (int)nh, ms);
    T_CHECK(f && strstr(f, want) != NULL);
    free(f);
    T_CHECK(run(out, sizeof out, "%s ppl %s -f %s -c 512 --chunks 1 --kv-store ram -t 1 --json "
                "--longrope-factors %s --rope-scaling longrope --longrope-n-hat %d --longrope-mscale %.2f",
                g_bin, MODEL, T_DATA("kjv.txt"), a, (int)nh, ms) == 0);
    T_NEAR(json_num(out, "nll_sum") / json_num(out, "n_scored"), nll, 1e-9);
    /* the GGUF: attn_factor = M x sqrt(1 + ln 2 / ln 256); same nll_sum */
    char o2[4096];
    T_CHECK(run(out, sizeof out, "%s ppl %s/m2.gguf -f %s -c 512 --chunks 3 --kv-store ram --json "
                "--longrope-n-hat %d", g_bin, g_dir, T_DATA("kjv-nt.txt"), (int)nh) == 0);
    T_CHECK(run(o2, sizeof o2, "%s ppl %s -f %s -c 512 --chunks 3 --kv-store ram --json "
                "--longrope-factors %s --rope-scaling longrope --longrope-n-hat %d --longrope-mscale %.2f",
                g_bin, MODEL, T_DATA("kjv-nt.txt"), a, (int)nh, ms) == 0);
    T_CHECK(isfinite(json_num(out, "nll_sum")) && json_num(out, "nll_sum") == json_num(o2, "nll_sum"));
    T_CHECK(run(out, sizeof out, "%s info %s/m2.gguf", g_bin, g_dir) == 0);
    snprintf(want, sizeof want, "magnitude %.6f", (double)(float)(ms * sqrt(1.0 + log(2.0) / log(256.0))));
    T_CHECK(strstr(out, want) != NULL);
    /* --longrope-mscale 1 is the plain magnitude; another multiplier is not */
    T_CHECK(run(out, sizeof out, "%s ppl %s -f %s -c 512 --chunks 1 --kv-store ram -t 1 --json "
                "--longrope-factors %s --rope-scaling longrope", g_bin, MODEL, T_DATA("kjv.txt"), a) == 0);
    T_CHECK(run(o2, sizeof o2, "%s ppl %s -f %s -c 512 --chunks 1 --kv-store ram -t 1 --json "
                "--longrope-factors %s --rope-scaling longrope --longrope-mscale 1", g_bin, MODEL,
                T_DATA("kjv.txt"), a) == 0);
    T_CHECK(json_num(out, "nll_sum") == json_num(o2, "nll_sum"));
    T_CHECK(run(o2, sizeof o2, "%s ppl %s -f %s -c 512 --chunks 1 --kv-store ram -t 1 --json "
                "--longrope-factors %s --rope-scaling longrope --longrope-mscale 0.9", g_bin, MODEL,
                T_DATA("kjv.txt"), a) == 0);
    T_CHECK(json_num(out, "nll_sum") != json_num(o2, "nll_sum"));
    /* --from seeds its first candidate with the file's multiplier */
    T_CHECK(run(NULL, 0, "%s longrope-search %s -f %s --text-before 'Matthew 1' --target-ctx 1024 --from %s "
                "--search-mscale --samples 1 --population 3 --iterations 0 -t 1 --quiet -o %s/mf",
                g_bin, MODEL, T_DATA("kjv.txt"), a, g_dir) == 0);
    snprintf(b, sizeof b, "%s/mf.journal", g_dir);
    t = t_slurp(b, NULL);
    char *e0 = t ? strstr(t, " eval 0 0 ") : NULL;
    char *nl = e0 ? strchr(e0, '\n') : NULL, *m = e0 ? strstr(e0, " mscale ") : NULL;
    T_CHECK(m && (!nl || m < nl) && atoi(m + 8) == (int)lround(ms * 100));
    free(t);
    /* a fixed multiplier and a searched one: refused */
    T_CHECK(run(NULL, 0, "%s longrope-search %s %s --longrope-mscale 0.9 -o %s/mx 2>/dev/null", g_bin,
                MODEL, MS_ARGS, g_dir) != 0);
#undef MS_ARGS
}

/* best_ppl of iteration I of a log (the I-th "best_ppl" after "iterations"). */
static double iter_best(const char *log, int i)
{
    const char *p = strstr(log, "\"iterations\"");
    for (int k = 0; p && k <= i; k++) {
        p = strstr(p + 1, "\"best_ppl\": ");
    }
    return p ? strtod(p + 12, NULL) : NAN;
}

/* --patience stops after that many iterations without a better best;
 * --budget caps the candidates. */
static void test_stopping(void)
{
    char out[4096], path[256];
    T_CHECK(run(out, sizeof out, "%s longrope-search %s %s --iterations 60 --patience 2 -o %s/pt --json",
                g_bin, MODEL, SEARCH_ARGS, g_dir) == 0);
    int iters = (int)json_num(out, "iterations");
    T_CHECK(iters >= 2 && iters < 60);
    snprintf(path, sizeof path, "%s/pt.log.json", g_dir);
    char *log = t_slurp(path, NULL);
    T_CHECK(log && strstr(log, "\"stopped\": \"patience\""));
    if (log && iters >= 2) {
        /* the last two iterations did not improve; the one before them did (or was 0) */
        double b0 = iter_best(log, iters - 2), b1 = iter_best(log, iters - 1), b2 = iter_best(log, iters);
        T_CHECK(b0 == b1 && b1 == b2);
        if (iters >= 3) T_CHECK(iter_best(log, iters - 3) > b0);
        T_CHECK(isnan(iter_best(log, iters + 1)));
    }
    free(log);
    T_CHECK(run(out, sizeof out, "%s longrope-search %s %s --iterations 60 --budget 10 -o %s/bu --json",
                g_bin, MODEL, SEARCH_ARGS, g_dir) == 0);
    T_CHECK(json_num(out, "evaluations") == 10);
    T_CHECK(json_num(out, "iterations") == 1); /* 6 + 4 */
    snprintf(path, sizeof path, "%s/bu.log.json", g_dir);
    log = t_slurp(path, NULL);
    T_CHECK(log && strstr(log, "\"stopped\": \"budget\""));
    free(log);
    snprintf(path, sizeof path, "%s/bu.convergence.svg", g_dir);
    char *svg = t_slurp(path, NULL);
    T_CHECK(svg && strstr(svg, "<svg") && strstr(svg, "median"));
    free(svg);
}

/* --refine: the rounds after the iterations, logged as such; a search
 * continued with --resume --refine writes the same journal as one run; a
 * journal with rounds refuses more iterations (its next record is a round). */
static void test_refine(void)
{
    char out[4096], a[256], b[256];
    T_CHECK(run(out, sizeof out, "%s longrope-search %s %s --iterations 1 --refine 2 -o %s/rf --json",
                g_bin, MODEL, SEARCH_ARGS, g_dir) == 0);
    T_CHECK(json_num(out, "iterations") == 3);
    double ev = json_num(out, "evaluations");
    T_CHECK(ev > 12 + 32 && ev <= 12 + 2 * (2 * 32 + 5));
    snprintf(a, sizeof a, "%s/rf.log.json", g_dir);
    char *log = t_slurp(a, NULL);
    T_CHECK(log && strstr(log, "\"stopped\": \"refine rounds\"") && strstr(log, "\"refine\": 2, \"refine_step\": "));
    free(log);
    T_CHECK(run(NULL, 0, "%s longrope-search %s %s --iterations 1 -o %s/rg", g_bin, MODEL, SEARCH_ARGS,
                g_dir) == 0);
    T_CHECK(run(NULL, 0, "%s longrope-search %s %s --iterations 1 --refine 2 --resume -o %s/rg", g_bin,
                MODEL, SEARCH_ARGS, g_dir) == 0);
    snprintf(a, sizeof a, "%s/rf.journal", g_dir);
    snprintf(b, sizeof b, "%s/rg.journal", g_dir);
    T_CHECK(files_equal(a, b));
    T_CHECK(count_lines(a, "iter ") == 4);
    snprintf(a, sizeof a, "%s/rf.factors.txt", g_dir);
    snprintf(b, sizeof b, "%s/rg.factors.txt", g_dir);
    T_CHECK(files_equal(a, b));
    T_CHECK(run(NULL, 0, "%s longrope-search %s %s --iterations 2 --resume -o %s/rf 2>/dev/null", g_bin,
                MODEL, SEARCH_ARGS, g_dir) != 0);
}

/* --schedule 512,1024: the 1024 stage's first candidate is the 512 result
 * times 2 (on the grid); --from gives the same stage. */
static void test_schedule(void)
{
    char out[8192], path[256];
    T_CHECK(run(out, sizeof out, "%s longrope-search %s -f %s --text-before 'Matthew 1' --schedule 512,1024 "
                "--samples 1 --population 4 --iterations 1 --seed 3 -t 1 --quiet -o %s/sc --json",
                g_bin, MODEL, T_DATA("kjv.txt"), g_dir) == 0);
    T_CHECK(strstr(out, "\"target_ctx\": 512") && strstr(out, "\"target_ctx\": 1024"));
    snprintf(path, sizeof path, "%s/sc-512.factors.txt", g_dir);
    char *f = t_slurp(path, NULL);
    snprintf(path, sizeof path, "%s/sc-1024.journal", g_dir);
    char *j = t_slurp(path, NULL);
    T_CHECK(f && j);
    if (f && j) {
        char want[512] = " eval 0 0 ";
        const char *p = strstr(j, want);
        T_CHECK(p != NULL);
        p = p ? strchr(p + 10, ' ') : NULL;  /* after the NLL */
        p = p ? strchr(p + 1, ' ') : NULL;   /* after n_hat */
        int n = 0, ok = p != NULL;
        for (char *q = strchr(f, '\n') + 1; ok && *q; n++) {
            char *e;
            double lam = strtod(q, &e);
            long want_q = lround(lam * 100.0 * 2.0);
            if (want_q > 500) want_q = 500; /* 1.25 s */
            long got = strtol(p + 1, (char **)&p, 10);
            ok = got == want_q;
            q = *e ? e + 1 : e;
        }
        T_CHECK(ok && n == 32);
    }
    free(f);
    free(j);
    char a[256], b[256];
    snprintf(a, sizeof a, "%s/sc-512.factors.txt", g_dir);
    T_CHECK(run(NULL, 0, "%s longrope-search %s -f %s --text-before 'Matthew 1' --target-ctx 1024 --from %s "
                "--samples 1 --population 4 --iterations 1 --seed 3 -t 1 --quiet -o %s/fr",
                g_bin, MODEL, T_DATA("kjv.txt"), a, g_dir) == 0);
    snprintf(a, sizeof a, "%s/sc-1024.factors.txt", g_dir);
    snprintf(b, sizeof b, "%s/fr.factors.txt", g_dir);
    T_CHECK(files_equal(a, b));
    /* a factors file without its target needs --from-ctx */
    snprintf(a, sizeof a, "%s/bare.txt", g_dir);
    FILE *bf = fopen(a, "w");
    for (int i = 0; bf && i < 32; i++) fprintf(bf, "2\n");
    if (bf) fclose(bf);
    T_CHECK(run(NULL, 0, "%s longrope-search %s -f %s --target-ctx 1024 --from %s -o %s/x 2>/dev/null",
                g_bin, MODEL, T_DATA("kjv.txt"), a, g_dir) != 0);
}

int main(void)
{
    const char *b = getenv("KVT_BUILD");
    snprintf(g_bin, sizeof g_bin, "%s/kvtile", b && *b ? b : "build");
    if (access(g_bin, X_OK) != 0) {
        fprintf(stderr, "no %s (build it first)\n", g_bin);
        return 1;
    }
    snprintf(g_dir, sizeof g_dir, "/tmp/kvt_longrope.XXXXXX");
    if (!mkdtemp(g_dir)) { perror("mkdtemp"); return 1; }
    T_RUN(test_same_seed_same_result);
    T_RUN(test_kill_and_resume);
    T_RUN(test_gguf_matches_factors);
    T_RUN(test_workers_and_n_hat);
    T_RUN(test_stopping);
    T_RUN(test_schedule);
    T_RUN(test_phi3);
    T_RUN(test_mscale);
    T_RUN(test_refine);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "  could not remove %s\n", g_dir);
    return t_done();
}
