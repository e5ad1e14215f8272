/* tproc.c - run the kvtile binary from tests (see tproc.h). */
#include "tproc.h"

#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

const char *t_kvtile(void)
{
    static char path[4096];
    const char *b = getenv("KVT_BUILD");
    snprintf(path, sizeof path, "%s/kvtile", b && *b ? b : "build");
    return path;
}

static void slurp(FILE *f, char *out, size_t cap)
{
    size_t n = 0;
    if (cap == 0) return;
    while (n + 1 < cap) {
        size_t r = fread(out + n, 1, cap - 1 - n, f);
        if (r == 0) break;
        n += r;
    }
    out[n] = 0;
    char sink[4096];
    while (fread(sink, 1, sizeof sink, f) > 0) { }
}

int t_sh(const char *cmdline, char *out, size_t cap, char *err, size_t err_cap)
{
    char errpath[] = "/tmp/kvt-test-err-XXXXXX";
    int efd = mkstemp(errpath);
    if (efd < 0) return -1;
    close(efd);
    size_t need = strlen(cmdline) + sizeof errpath + 32;
    char *cmd = malloc(need);
    if (!cmd) return -1;
    snprintf(cmd, need, "%s 2>%s", cmdline, errpath);
    FILE *p = popen(cmd, "r");
    free(cmd);
    if (!p) { unlink(errpath); return -1; }
    char dummy[1];
    if (out) slurp(p, out, cap);
    else slurp(p, dummy, sizeof dummy);
    int st = pclose(p);
    if (err && err_cap) {
        FILE *f = fopen(errpath, "r");
        if (f) { slurp(f, err, err_cap); fclose(f); } else err[0] = 0;
    }
    unlink(errpath);
    if (st == -1 || !WIFEXITED(st)) return -1;
    return WEXITSTATUS(st);
}

int t_run(const char *args, char *out, size_t cap, char *err, size_t err_cap)
{
    size_t need = strlen(args) + strlen(t_kvtile()) + 2;
    char *cmd = malloc(need);
    if (!cmd) return -1;
    snprintf(cmd, need, "%s %s", t_kvtile(), args);
    int rc = t_sh(cmd, out, cap, err, err_cap);
    free(cmd);
    return rc;
}

pid_t t_spawn(const char *args)
{
    size_t need = strlen(args) + strlen(t_kvtile()) + 64;
    char *cmd = malloc(need);
    if (!cmd) return -1;
    snprintf(cmd, need, "exec %s %s >/dev/null 2>&1", t_kvtile(), args);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    free(cmd);
    return pid;
}

double t_json_num(const char *json, const char *key)
{
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(json, pat);
    if (!p) return NAN;
    return strtod(p + strlen(pat), NULL);
}

char *t_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0)
        buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (!buf) return NULL;
    buf[n] = 0;
    if (len) *len = (size_t)n;
    return buf;
}

long t_count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    long n = 0;
    int c;
    while ((c = fgetc(f)) != EOF) n += c == '\n';
    fclose(f);
    return n;
}

char *t_tmpdir(char *buf, size_t cap)
{
    snprintf(buf, cap, "/tmp/kvt-test-XXXXXX");
    return mkdtemp(buf);
}

int t_dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}
