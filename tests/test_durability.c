/* test_durability.c - unattended runs through the kvtile binary: kills and
 * torn journals, signals and error exits, shared cache directories,
 * fallback notes, the disk bound.
 *
 * References: an uninterrupted run of the same command (bit-identical
 * nll_sum / output bytes), the K/V size of one window computed from the
 * model's shape, an empty $TMPDIR. Seeded randomness prints its seed. */
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "t.h"
#include "tproc.h"

#define MODEL "models/tiny-kjv-f32.gguf"
#define NT "tests/data/kjv-nt.txt"
/* small windows, batches smaller than a tile: journal records, tail
 * rewrites and sealed tiles all happen inside every window */
#define PPL_ARGS MODEL " -f " NT " -c 128 --chunks 16 --batch 32 --tile-tokens 64"

static char out[1 << 16], err[1 << 14];

/* The binary and the model (a skip on a developer machine, a failure
 * under CI=true). */
#define NEED()                                                              \
    T_REQUIRE(access(t_kvtile(), X_OK) == 0 && access(MODEL, R_OK) == 0,     \
              "the kvtile binary and " MODEL)
static uint64_t rng_state;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static long file_size(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

/* Cut the journal's last record at a random offset inside it. */
static void tear_last_record(const char *path)
{
    char *t;
    size_t len;
    if (!(t = t_slurp(path, &len)) || len < 2) { free(t); return; }
    size_t start = len - 1; /* first byte of the last line */
    while (start > 0 && t[start - 1] != '\n') start--;
    free(t);
    size_t at = start + (size_t)(rnd() % (len - start)); /* < len */
    T_CHECK(truncate(path, (off_t)at) == 0);
}

/* 20 times: start (resuming), SIGKILL at a random point, tear the
 * journal's last record; then resume to the end. The result must be the
 * uninterrupted nll_sum bit for bit (a refusal would have to say why). */
static void test_kill_tear_resume(void)
{
    NEED();
    char dir[64], a[1024], journal[128];
    T_CHECK(t_tmpdir(dir, sizeof dir) != NULL);
    snprintf(journal, sizeof journal, "%s/ppl.journal", dir);
    T_CHECK(t_run("ppl " PPL_ARGS " --json", out, sizeof out, NULL, 0) == 0);
    double whole = t_json_num(out, "nll_sum");
    rng_state = (uint64_t)time(NULL) | 1;
    fprintf(stderr, "  seed %llu\n", (unsigned long long)rng_state);
    snprintf(a, sizeof a, "ppl " PPL_ARGS " --cache-dir %s --resume --quiet", dir);
    int finished_early = 0;
    for (int round = 0; round < 20; round++) {
        pid_t pid = t_spawn(a);
        T_CHECK(pid > 0);
        /* a random point: at a random time in the first 0.3 s (startup,
         * first records), or a few random records and microseconds on */
        long target = t_count_lines(journal) + 1 + (long)(rnd() % 5);
        int by_time = rnd() % 3 == 0;
        long wait_us = by_time ? (long)(rnd() % 300000) : 10000000;
        int st = 0, done = 0;
        for (long t = 0; t < wait_us; t += 1000) {
            if (waitpid(pid, &st, WNOHANG) == pid) { done = 1; break; }
            if (!by_time && t_count_lines(journal) >= target) {
                usleep((useconds_t)(rnd() % 20000));
                break;
            }
            usleep(1000);
        }
        if (!done) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
        } else {
            finished_early++;
        }
        tear_last_record(journal);
    }
    long left = t_count_lines(journal);
    snprintf(a, sizeof a, "ppl " PPL_ARGS " --cache-dir %s --resume --json", dir);
    int rc = t_run(a, out, sizeof out, err, sizeof err);
    double resumed = t_json_num(out, "nll_sum");
    fprintf(stderr, "  20 kills + torn journals (%d runs ended before their kill, %ld of 82 "
                    "journal lines then): %.17g vs %.17g, rc %d\n", finished_early, left,
            resumed, whole, rc);
    if (rc != 0) fprintf(stderr, "  refused: %s", err);
    T_CHECK(rc == 0 && resumed == whole);
    t_system("rm -rf %s", dir);
}

/* The cache and the window it held: tear away the record that finished a
 * window after the next window has started (the cache then holds the next
 * window's keys); the resume must restart the window, not continue it. */
static void test_resume_never_on_other_window(void)
{
    NEED();
    char dir[64], a[1024], journal[128];
    T_CHECK(t_tmpdir(dir, sizeof dir) != NULL);
    snprintf(journal, sizeof journal, "%s/ppl.journal", dir);
    T_CHECK(t_run("ppl " PPL_ARGS " --chunks 3 --json", out, sizeof out, NULL, 0) == 0);
    double whole = t_json_num(out, "nll_sum");
    snprintf(a, sizeof a, "ppl " PPL_ARGS " --chunks 3 --cache-dir %s --quiet", dir);
    T_CHECK(t_run(a, NULL, 0, NULL, 0) == 0); /* the cache now holds window 2 */
    /* keep the key line and records w0 p0..p128, w1 p0, p32, p64: the
     * journal of a run stopped inside window 1 */
    T_CHECK(t_system("head -n 9 %s > %s.x && mv %s.x %s", journal, journal, journal, journal) == 0);
    snprintf(a, sizeof a, "ppl " PPL_ARGS " --chunks 3 --cache-dir %s --resume --json", dir);
    T_CHECK(t_run(a, out, sizeof out, NULL, 0) == 0);
    double resumed = t_json_num(out, "nll_sum");
    fprintf(stderr, "  cache of window 2, journal inside window 1: %.17g vs %.17g\n", resumed,
            whole);
    T_CHECK(t_json_num(out, "resumed_from") == 1 && resumed == whole);
    /* the same with the cache file cut inside its header (a kill while it
     * was being made): started over, with a warning */
    T_CHECK(t_system("head -n 9 %s > %s.x && mv %s.x %s && truncate -s 100 %s/ppl.kvt", journal,
               journal, journal, journal, dir) == 0);
    T_CHECK(t_run(a, out, sizeof out, err, sizeof err) == 0);
    resumed = t_json_num(out, "nll_sum");
    fprintf(stderr, "  cache cut to 100 bytes: %.17g; said: %s", resumed, err);
    T_CHECK(resumed == whole && strstr(err, "starting the cache over"));
    t_system("rm -rf %s", dir);
}

/* Signals and an error exit leave nothing in $TMPDIR; the exit status of
 * a signal is 128 + its number; a kept cache stays resumable. */
static void test_signals_clean_tmpdir(void)
{
    NEED();
    const int sigs[] = { SIGINT, SIGTERM, SIGHUP };
    for (int i = 0; i < 3; i++) {
        char tmp[64];
        T_CHECK(t_tmpdir(tmp, sizeof tmp) != NULL);
        setenv("TMPDIR", tmp, 1);
        pid_t pid = t_spawn("ppl " MODEL " -f " NT " -c 256 --chunks 400 --quiet");
        unsetenv("TMPDIR");
        int seen = 0;
        for (int t = 0; t < 1000 && !seen; t++) { /* the cache exists: 10 s */
            seen = t_dir_entries(tmp) > 0;
            usleep(10000);
        }
        usleep(200000);
        T_CHECK(seen);
        kill(pid, sigs[i]);
        int st = 0;
        waitpid(pid, &st, 0);
        int left = t_dir_entries(tmp);
        fprintf(stderr, "  signal %d: exit %d, %d entries left in TMPDIR\n", sigs[i],
                WIFEXITED(st) ? WEXITSTATUS(st) : -1, left);
        T_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 128 + sigs[i]);
        T_CHECK(left == 0);
        t_system("rm -rf %s", tmp);
    }
    /* an error exit after the cache was made (the curve file cannot be
     * written): the temporary directory goes too */
    char tmp[64], a[512];
    T_CHECK(t_tmpdir(tmp, sizeof tmp) != NULL);
    snprintf(a, sizeof a, "TMPDIR=%s %s ppl " MODEL " -f " NT " -c 256 --chunks 2 "
                          "--curve /nonexistent/dir/curve.tsv 2>/dev/null", tmp, t_kvtile());
    int rc = t_system("%s", a);
    fprintf(stderr, "  error exit %d, %d entries left in TMPDIR\n", rc, t_dir_entries(tmp));
    T_CHECK(rc == 1);
    T_CHECK(t_dir_entries(tmp) == 0);
    t_system("rm -rf %s", tmp);
}

static void test_kept_cache_after_sigterm(void)
{
    NEED();
    char dir[64], a[1024];
    T_CHECK(t_tmpdir(dir, sizeof dir) != NULL);
    T_CHECK(t_run("ppl " PPL_ARGS " --json", out, sizeof out, NULL, 0) == 0);
    double whole = t_json_num(out, "nll_sum");
    snprintf(a, sizeof a, "%s/ppl.journal", dir);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "ppl " PPL_ARGS " --cache-dir %s --quiet", dir);
    pid_t pid = t_spawn(cmd);
    for (int t = 0; t < 1000 && t_count_lines(a) < 30; t++) usleep(10000);
    kill(pid, SIGTERM);
    int st = 0;
    waitpid(pid, &st, 0);
    fprintf(stderr, "  exited %d signalled %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1,
            WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    T_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 128 + SIGTERM);
    snprintf(cmd, sizeof cmd, "ppl " PPL_ARGS " --cache-dir %s --resume --json", dir);
    T_CHECK(t_run(cmd, out, sizeof out, NULL, 0) == 0);
    double resumed = t_json_num(out, "nll_sum");
    fprintf(stderr, "  SIGTERM, then --resume from window %g: %.17g vs %.17g\n",
            t_json_num(out, "resumed_from"), resumed, whole);
    T_CHECK(t_json_num(out, "resumed_from") >= 0 && resumed == whole);
    t_system("rm -rf %s", dir);
}

/* Two batch runs at once on one cache directory: both correct; two on
 * one output: the second refuses at once. */
static void test_two_batches_one_cache_dir(void)
{
    NEED();
    char dir[64];
    T_CHECK(t_tmpdir(dir, sizeof dir) != NULL);
    /* 6 documents of ~2000 tokens each */
    T_CHECK(t_system("cd %s && for i in 1 2 3 4 5 6; do "
               "printf '{\"id\":\"d%%s\",\"path\":\"d%%s.txt\"}\\n' $i $i >> docs.jsonl; "
               "tail -c +$((i * 20000)) %s/" NT " | head -c 9000 > d$i.txt; done",
               dir, getcwd(out, sizeof out)) == 0);
    const char *bin = t_kvtile();
    T_CHECK(t_system("%s batch " MODEL " -i %s/docs.jsonl -o %s/ref.jsonl --no-timings --quiet",
               bin, dir, dir) == 0);
    int rc = t_system("(%s batch " MODEL " -i %s/docs.jsonl -o %s/a.jsonl --cache-dir %s/c --no-timings "
                "--quiet & %s batch " MODEL " -i %s/docs.jsonl -o %s/b.jsonl --cache-dir %s/c "
                "--no-timings --quiet & wait %%1; r1=$?; wait %%2; r2=$?; exit $((r1 + r2)))",
                bin, dir, dir, dir, bin, dir, dir, dir);
    T_CHECK(rc == 0);
    T_CHECK(t_system("cmp -s %s/ref.jsonl %s/a.jsonl && cmp -s %s/ref.jsonl %s/b.jsonl", dir, dir,
               dir, dir) == 0);
    /* `cache rm --all` leaves a cache a batch holds (its sidecar's flock) */
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ls %s/c/*.kvm | head -n 1", dir);
    FILE *ls = popen(cmd, "r");
    char side[512] = "";
    if (ls) {
        if (!fgets(side, sizeof side, ls)) side[0] = 0;
        pclose(ls);
    }
    side[strcspn(side, "\n")] = 0;
    int hold = side[0] ? open(side, O_RDONLY) : -1;
    T_CHECK(hold >= 0 && flock(hold, LOCK_EX) == 0);
    T_CHECK(t_system("%s cache rm %s/c --all 2>/dev/null >/dev/null", bin, dir) == 0);
    T_CHECK(access(side, F_OK) == 0);
    T_CHECK(t_system("test $(ls %s/c/*.kvm | wc -l) -eq 1", dir) == 0);
    if (hold >= 0) close(hold);
    /* same output file: one of them refuses at once, the other is right */
    rc = t_system("(%s batch " MODEL " -i %s/docs.jsonl -o %s/s.jsonl --no-timings --quiet "
            "2>%s/s1.err & sleep 0.3; %s batch " MODEL " -i %s/docs.jsonl -o %s/s.jsonl "
            "--no-timings --quiet 2>%s/s2.err; r2=$?; wait %%1; r1=$?; echo $r1 $r2 > %s/rc)",
            bin, dir, dir, dir, bin, dir, dir, dir, dir);
    char p[128];
    snprintf(p, sizeof p, "%s/rc", dir);
    char *rcs = t_slurp(p, NULL);
    int second = rcs && !strcmp(rcs, "0 1\n"); /* which one refused */
    snprintf(p, sizeof p, "%s/s%d.err", dir, second ? 2 : 1);
    char *e = t_slurp(p, NULL);
    fprintf(stderr, "  same -o: exit codes %s  the refused one said: %s", rcs ? rcs : "?",
            e ? e : "?");
    T_CHECK(rcs && (!strcmp(rcs, "0 1\n") || !strcmp(rcs, "1 0\n")));
    T_CHECK(e && strstr(e, "in use by another kvtile run"));
    T_CHECK(t_system("cmp -s %s/ref.jsonl %s/s.jsonl", dir, dir) == 0);
    free(rcs);
    free(e);
    /* a document file changed under an interrupted batch: its journal is
     * another run's (the key covers each document file's size and mtime) */
    snprintf(cmd, sizeof cmd, "batch " MODEL " -i %s/docs.jsonl -o %s/k.jsonl --quiet", dir, dir);
    pid_t kp = t_spawn(cmd);
    snprintf(p, sizeof p, "%s/k.jsonl.journal", dir);
    for (int t = 0; t < 2000 && t_count_lines(p) < 3; t++) usleep(5000);
    kill(kp, SIGKILL);
    waitpid(kp, NULL, 0);
    T_CHECK(t_count_lines(p) >= 3 && t_count_lines(p) < 7);
    T_CHECK(t_system("echo ' And more.' >> %s/d6.txt", dir) == 0);
    snprintf(cmd, sizeof cmd, "batch " MODEL " -i %s/docs.jsonl -o %s/k.jsonl --resume --quiet",
             dir, dir);
    rc = t_run(cmd, NULL, 0, err, sizeof err);
    fprintf(stderr, "  resume after a document changed: exit %d: %s", rc, err);
    T_CHECK(rc == 1 && strstr(err, "journal of another run (input or options differ)"));
    /* two ppl runs on one --cache-dir: the second refuses at once */
    char a[1024];
    snprintf(a, sizeof a, "ppl " PPL_ARGS " --cache-dir %s/p --quiet", dir);
    pid_t pid = t_spawn(a);
    snprintf(p, sizeof p, "%s/p/ppl.journal", dir);
    for (int t = 0; t < 1000 && t_count_lines(p) < 3; t++) usleep(10000);
    /* the first is stopped while it holds the lock, so it cannot finish
     * before the second starts however loaded the machine is */
    kill(pid, SIGSTOP);
    rc = t_run(a, NULL, 0, err, sizeof err);
    fprintf(stderr, "  second ppl on one --cache-dir: exit %d: %s", rc, err);
    T_CHECK(rc == 1 && strstr(err, "in use by another kvtile run"));
    kill(pid, SIGCONT);
    waitpid(pid, NULL, 0);
    t_system("rm -rf %s", dir);
}

/* KVT_NO_URING=1: one line on stderr, and --json says what was used. */
static void test_fallback_is_reported(void)
{
    NEED();
    setenv("KVT_NO_URING", "1", 1);
    int rc = t_run("ppl " MODEL " -f " NT " -c 256 --chunks 2 --json", out, sizeof out, err,
                   sizeof err);
    unsetenv("KVT_NO_URING");
    T_CHECK(rc == 0);
    int lines = 0;
    for (const char *c = err; *c; c++) lines += *c == '\n';
    fprintf(stderr, "  stderr: %s", err);
    T_CHECK(lines == 1 && strstr(err, "io_uring is not available"));
    T_CHECK(strstr(out, "\"io_backend\": \"pread\""));
    rc = t_run("ppl " MODEL " -f " NT " -c 256 --chunks 2 --json", out, sizeof out, err,
               sizeof err);
    T_CHECK(rc == 0 && strstr(out, "\"io_backend\": \"") && strstr(out, "\"o_direct\": "));
    rc = t_run("ppl " MODEL " -f " NT " -c 256 --chunks 2 --kv-store ram --json", out,
               sizeof out, NULL, 0);
    T_CHECK(rc == 0 && strstr(out, "\"io_backend\": \"none\""));
}

/* The disk bound: the cache of a run over many windows never exceeds
 * 3 x one window's K/V (4 layers x 128 x 2 x 4 bytes per token, f32). */
static void test_disk_bound(void)
{
    NEED();
    T_CHECK(t_run("ppl " MODEL " -f " NT " -c 256 --chunks 60 --json", out, sizeof out, NULL,
                  0) == 0);
    double peak = t_json_num(out, "cache_peak_bytes"), end = t_json_num(out, "cache_end_bytes");
    double window = 256.0 * 4 * 128 * 2 * 4;
    fprintf(stderr, "  -c 256, 60 windows: peak %.0f B, end %.0f B, one window's K/V %.0f B\n",
            peak, end, window);
    T_CHECK(peak > 0.5 * window && peak <= 3 * window && end <= 3 * window);
    /* with a journal (a sync per batch of 32, tiles of 64) */
    char dir[64], a[512];
    T_CHECK(t_tmpdir(dir, sizeof dir) != NULL);
    snprintf(a, sizeof a, "ppl " PPL_ARGS " --cache-dir %s --json", dir);
    T_CHECK(t_run(a, out, sizeof out, NULL, 0) == 0);
    peak = t_json_num(out, "cache_peak_bytes");
    window = 128.0 * 4 * 128 * 2 * 4;
    snprintf(a, sizeof a, "%s/ppl.kvt", dir);
    fprintf(stderr, "  -c 128 journaled: peak %.0f B, file %ld B, one window's K/V %.0f B\n",
            peak, file_size(a), window);
    T_CHECK(peak <= 3 * window && file_size(a) <= 3 * window);
    t_system("rm -rf %s", dir);
}

int main(void)
{
    if (getenv("KVT_ONLY_KILL")) {
        T_RUN(test_kept_cache_after_sigterm);
        T_RUN(test_kill_tear_resume);
        return t_done();
    }
    T_RUN(test_disk_bound);
    T_RUN(test_fallback_is_reported);
    T_RUN(test_signals_clean_tmpdir);
    T_RUN(test_kept_cache_after_sigterm);
    T_RUN(test_resume_never_on_other_window);
    T_RUN(test_kill_tear_resume);
    T_RUN(test_two_batches_one_cache_dir);
    return t_done();
}
