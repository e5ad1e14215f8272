/* kvt.c - error strings, assertion failure, clocks. */
#define _POSIX_C_SOURCE 200809L
#include "kvt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static const char *const kvt_msgs[KVT_NERR] = {
#define KVT_X_MSG(name, msg) msg,
    KVT_ERRORS(KVT_X_MSG)
#undef KVT_X_MSG
};
_Static_assert(sizeof kvt_msgs / sizeof kvt_msgs[0] == KVT_NERR,
               "error table length");

const char *kvt_strerror(int err)
{
    if (err <= KVT_EBASE - 1 && err > KVT_EBASE - 1 - KVT_NERR)
        return kvt_msgs[KVT_EBASE - 1 - err];
    if (err < 0 && err > KVT_EBASE) return strerror(-err);
    return "unknown error";
}

void kvt_assert_fail(const char *cond, const char *file, int line)
{
    fprintf(stderr, "%s:%d: assertion failed: %s\n", file, line, cond);
    abort();
}

double kvt_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int64_t kvt_peak_rss_bytes(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return -1;
    return (int64_t)ru.ru_maxrss * 1024;
}
