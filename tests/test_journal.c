/* test_journal.c - the progress journal (kvstore/journal.h): round trips,
 * a torn last record at every offset, damaged records, other runs' and
 * foreign files, the lock, a full disk during an append, atomic commits.
 * (Its fuzz corpus is replayed by test_fuzz.) */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/io.h"
#include "base/kvt.h"
#include "kvstore/journal.h"
#include "t.h"
#include "tproc.h"

static char dir[64], path[128];
static const char *KEY = "kvtile-test 1 model=abc text=def";

static long fsize(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

/* A journal of N records "record i ..." under KEY. @return its size. */
static long make(int n)
{
    jnl_file *j;
    T_CHECK(jnl_open(path, KEY, 0, &j) == 0);
    if (!j) return -1;
    for (int i = 0; i < n; i++) {
        char r[64];
        int l = snprintf(r, sizeof r, "record %d of the run, %s", i, i % 2 ? "odd" : "even");
        T_CHECK(jnl_append(j, r, (size_t)l) == 0);
    }
    jnl_close(j);
    return fsize(path);
}

static int check_records(jnl_file *j, int n)
{
    if (jnl_count(j) != n) return 0;
    for (int i = 0; i < n; i++) {
        char r[64];
        snprintf(r, sizeof r, "record %d of the run, %s", i, i % 2 ? "odd" : "even");
        size_t len;
        const char *got = jnl_record(j, i, &len);
        if (len != strlen(r) || strcmp(got, r) != 0) return 0;
    }
    return 1;
}

static void test_round_trip(void)
{
    long size = make(5);
    jnl_file *j;
    T_CHECK(jnl_open(path, KEY, JNL_RESUME, &j) == 0);
    if (!j) return;
    T_CHECK(check_records(j, 5) && jnl_cut_bytes(j) == 0);
    T_CHECK(jnl_append(j, "record 5 of the run, odd", 24) == 0);
    jnl_close(j);
    T_CHECK(jnl_open(path, KEY, JNL_RESUME, &j) == 0);
    if (j) T_CHECK(check_records(j, 6));
    jnl_close(j);
    /* without JNL_RESUME: a new, empty journal */
    T_CHECK(jnl_open(path, KEY, 0, &j) == 0);
    if (j) T_CHECK(jnl_count(j) == 0);
    jnl_close(j);
    T_CHECK(fsize(path) < size);
    /* the file format, by hand: the key line and a record's hash */
    char *t = t_slurp(path, NULL);
    T_CHECK(t && !strncmp(t, "kvtile-journal 1 ", 17) && strstr(t, KEY));
    free(t);
}

/* Cut the file at every offset inside the last record: the journal keeps
 * the records before it, cuts the file back, and appends cleanly. */
static void test_torn_tail_every_offset(void)
{
    long full = make(4), prev = make(3);
    make(4);
    char *t = t_slurp(path, NULL);
    T_CHECK(t != NULL);
    int bad = 0;
    for (long cut = prev; cut < full; cut++) {
        FILE *f = fopen(path, "w");
        fwrite(t, 1, (size_t)cut, f);
        fclose(f);
        jnl_file *j;
        if (jnl_open(path, KEY, JNL_RESUME, &j) != 0) { bad++; continue; }
        bad += !check_records(j, 3);
        bad += jnl_cut_bytes(j) != (uint64_t)(cut - prev);
        bad += fsize(path) != prev;
        bad += jnl_append(j, "record 3 of the run, odd", 24) != 0;
        jnl_close(j);
        bad += fsize(path) != full;
        T_CHECK(jnl_open(path, KEY, JNL_RESUME, &j) == 0);
        if (j) bad += !check_records(j, 4);
        jnl_close(j);
    }
    T_CHECK(bad == 0);
    free(t);
}

static void test_damaged_records(void)
{
    long full = make(6);
    (void)full;
    char *t = t_slurp(path, NULL);
    T_CHECK(t != NULL);
    if (!t) return;
    /* a changed digit in record 3's text: records 0..2 kept, rest cut */
    char *r3 = strstr(t, "record 3 of");
    T_CHECK(r3 != NULL);
    r3[7] = '7';
    FILE *f = fopen(path, "w");
    fputs(t, f);
    fclose(f);
    jnl_file *j;
    T_CHECK(jnl_open(path, KEY, JNL_RESUME, &j) == 0);
    if (j) T_CHECK(check_records(j, 3) && jnl_cut_bytes(j) > 0);
    jnl_close(j);
    free(t);
    /* records of another key do not verify under this one */
    make(3);
    t = t_slurp(path, NULL);
    jnl_file *o;
    char other[160];
    snprintf(other, sizeof other, "%s.other", path);
    T_CHECK(jnl_open(other, "kvtile-test 1 model=xyz", 0, &o) == 0);
    if (o) T_CHECK(jnl_append(o, "record 3 of the run, odd", 24) == 0);
    jnl_close(o);
    char *ot = t_slurp(other, NULL);
    f = fopen(path, "w");
    fputs(t, f);
    fputs(strchr(ot, '\n') + 1, f); /* its record line, appended here */
    fclose(f);
    T_CHECK(jnl_open(path, KEY, JNL_RESUME, &j) == 0);
    if (j) T_CHECK(check_records(j, 3));
    jnl_close(j);
    unlink(other);
    free(t);
    free(ot);
}

static void test_other_runs_and_files(void)
{
    make(2);
    jnl_file *j = NULL;
    T_CHECK(jnl_open(path, "kvtile-test 1 model=abc text=XYZ", JNL_RESUME, &j) == KVT_EOTHERRUN);
    T_CHECK(j == NULL);
    FILE *f = fopen(path, "w");
    fputs("{\"kvtile_journal\":1,\"run\":\"0\"}\n", f);
    fclose(f);
    T_CHECK(jnl_open(path, KEY, JNL_RESUME, &j) == KVT_EFORMAT);
    /* a first line torn before its '\n' (a crash while creating): new */
    f = fopen(path, "w");
    fputs("kvtile-journal 1 0123", f);
    fclose(f);
    T_CHECK(jnl_open(path, KEY, JNL_RESUME, &j) == 0);
    if (j) T_CHECK(jnl_count(j) == 0);
    jnl_close(j);
    /* a missing file with JNL_RESUME: created */
    unlink(path);
    T_CHECK(jnl_open(path, KEY, JNL_RESUME, &j) == 0);
    if (j) T_CHECK(jnl_count(j) == 0);
    jnl_close(j);
    T_CHECK(fsize(path) > 0);
}

/* One writer: a second open fails with -EBUSY at once, also from another
 * process; the lock goes with the close. */
static void test_lock(void)
{
    make(1);
    jnl_file *a, *b = NULL;
    T_CHECK(jnl_open(path, KEY, JNL_RESUME, &a) == 0);
    T_CHECK(jnl_open(path, KEY, JNL_RESUME, &b) == -EBUSY && b == NULL);
    pid_t pid = fork();
    if (pid == 0) {
        jnl_file *c;
        _exit(jnl_open(path, KEY, JNL_RESUME, &c) == -EBUSY ? 0 : 1);
    }
    int st;
    waitpid(pid, &st, 0);
    T_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    jnl_close(a);
    T_CHECK(jnl_open(path, KEY, JNL_RESUME, &b) == 0);
    jnl_close(b);
}

/* A full disk or an I/O error during an append: the error comes back, no
 * partial line stays, the journal goes on afterwards. */
static void test_append_faults(void)
{
    long size = make(3);
    jnl_file *j;
    T_CHECK(jnl_open(path, KEY, JNL_RESUME, &j) == 0);
    if (!j) return;
    io_sys_set_fault(IO_OP_WRITE, 1, 0); /* a short write is absorbed */
    T_CHECK(jnl_append(j, "record 3 of the run, odd", 24) == 0);
    io_sys_set_fault(IO_OP_WRITE, 1, ENOSPC);
    T_CHECK(jnl_append(j, "record 4 of the run, even", 25) == -ENOSPC);
    io_sys_set_fault(IO_OP_FSYNC, 1, EIO);
    T_CHECK(jnl_append(j, "record 4 of the run, even", 25) == -EIO);
    long after = fsize(path);
    T_CHECK(after > size);
    T_CHECK(jnl_append(j, "record 4 of the run, even", 25) == 0);
    jnl_close(j);
    T_CHECK(jnl_open(path, KEY, JNL_RESUME, &j) == 0);
    if (j) T_CHECK(check_records(j, 5) && jnl_cut_bytes(j) == 0);
    jnl_close(j);
}

static void test_commit_and_remove(void)
{
    char tmp[160], out[160];
    snprintf(out, sizeof out, "%s/out.txt", dir);
    snprintf(tmp, sizeof tmp, "%s/out.txt.tmp", dir);
    FILE *f = fopen(tmp, "w");
    fputs("whole output\n", f);
    fclose(f);
    T_CHECK(jnl_commit(tmp, out) == 0);
    T_CHECK(access(tmp, F_OK) != 0 && fsize(out) == 13);
    T_CHECK(jnl_commit(tmp, out) == -ENOENT);
    make(2);
    jnl_file *j;
    T_CHECK(jnl_open(path, KEY, JNL_RESUME, &j) == 0);
    if (j) T_CHECK(jnl_remove(j) == 0);
    T_CHECK(access(path, F_OK) != 0);
    T_CHECK(jnl_fsync_dir(out) == 0 && jnl_fsync_dir("/nonexistent/x") == -ENOENT);
}

int main(void)
{
    T_CHECK(t_tmpdir(dir, sizeof dir) != NULL);
    snprintf(path, sizeof path, "%s/j.journal", dir);
    T_RUN(test_round_trip);
    T_RUN(test_torn_tail_every_offset);
    T_RUN(test_damaged_records);
    T_RUN(test_other_runs_and_files);
    T_RUN(test_lock);
    T_RUN(test_append_faults);
    T_RUN(test_commit_and_remove);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return t_done();
}
