/* test_iobench.c - `kvtile iobench` end to end on a tiny cache: every row
 * of the JSON is there with positive numbers, codec none has ratio 1 and
 * every run decodes exactly the raw bytes; without io_uring (KVT_NO_URING=1)
 * the run says once that it falls back to pread and still completes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "t.h"
#include "tproc.h"

#define OUT_CAP (1 << 16)

static char out[OUT_CAP], err[OUT_CAP];

static int count_str(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

/* Check every row line of the JSON; @return the number of rows. */
static int check_rows(char *json, const char *want_used_for_uring)
{
    int rows = 0;
    for (char *save = NULL, *line = strtok_r(json, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        if (!strstr(line, "{\"type\":")) continue;
        rows++;
        static const char *const pos[] = {
            "raw_bytes", "decoded_bytes", "read_bytes", "enc_bytes", "seconds",
            "device_gbps", "effective_gbps", "ratio", "probe_gbps", "frac_device",
        };
        for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++) {
            double v = t_json_num(line, pos[i]);
            if (!(v > 0)) fprintf(stderr, "  %s = %g in: %s\n", pos[i], v, line);
            T_CHECK(v > 0);
        }
        /* CPU time can round to 0 on an idle, very short row */
        T_CHECK(t_json_num(line, "cpu_s") >= 0);
        T_CHECK(t_json_num(line, "decoded_bytes") == t_json_num(line, "raw_bytes"));
        if (strstr(line, "\"codec\": \"none\"")) T_CHECK(t_json_num(line, "ratio") == 1.0);
        if (strstr(line, "\"backend\": \"uring\"") && want_used_for_uring) {
            char pat[64];
            snprintf(pat, sizeof pat, "\"backend_used\": \"%s\"", want_used_for_uring);
            T_CHECK(strstr(line, pat) != NULL);
        }
    }
    return rows;
}

static const char args_fmt[] =
    "iobench --dir %s --size 4M --kv-dim 128 --layers 2 --tile-tokens 64 "
    "--qd 1,4 --codecs none,lz4 --backends uring,pread,mmap --json";

static void test_json_rows(void)
{
    char tmp[4096], args[8192];
    if (!t_tmpdir(tmp, sizeof tmp)) T_SKIP("no temporary directory");
    snprintf(args, sizeof args, args_fmt, tmp);
    int rc = t_run(args, out, sizeof out, err, sizeof err);
    if (rc != 0) fprintf(stderr, "  rc %d, stderr: %s\n", rc, err);
    T_CHECK(rc == 0);
    T_CHECK(strstr(out, "\"best_uring\":") != NULL);
    T_CHECK(strstr(out, "\"uring_in_use\":") != NULL);
    T_CHECK(t_json_num(out, "ref_gbps") > 0);
    /* 2 codecs x 1 tile x 2 queue depths x 3 backends */
    T_CHECK(check_rows(out, NULL) == 12);
    T_CHECK(t_dir_entries(tmp) == 0);
    rmdir(tmp);
}

static void test_no_uring(void)
{
    char tmp[4096], args[8192];
    if (!t_tmpdir(tmp, sizeof tmp)) T_SKIP("no temporary directory");
    snprintf(args, sizeof args, args_fmt, tmp);
    setenv("KVT_NO_URING", "1", 1);
    int rc = t_run(args, out, sizeof out, err, sizeof err);
    unsetenv("KVT_NO_URING");
    T_CHECK(rc == 0);
    T_CHECK(count_str(err, "falling back to pread") == 1);
    T_CHECK(strstr(out, "\"uring_in_use\": false") != NULL);
    T_CHECK(strstr(out, "\"uring_fallback\": true") != NULL);
    T_CHECK(check_rows(out, "pread") == 12);
    T_CHECK(t_dir_entries(tmp) == 0);
    rmdir(tmp);
}

static void test_bad_args(void)
{
    int rc = t_run("iobench --codecs zip", out, sizeof out, err, sizeof err);
    T_CHECK(rc != 0);
    T_CHECK(strncmp(err, "kvtile: ", 8) == 0);
    T_CHECK(count_str(err, "\n") == 1);
    rc = t_run("iobench --size 4k --kv-dim 128 --layers 2 --dir /tmp", out, sizeof out,
               err, sizeof err);
    T_CHECK(rc != 0);
    T_CHECK(strstr(err, "too small") != NULL);
}

int main(void)
{
    T_RUN(test_json_rows);
    T_RUN(test_no_uring);
    T_RUN(test_bad_args);
    return t_done();
}
