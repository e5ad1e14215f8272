/* t.h - the tiny test harness. One program per module:
 *
 *   static void test_x(void) { T_CHECK(a == b); T_NEAR(x, y, 1e-6); }
 *   int main(void) { T_RUN(test_x); return t_done(); }
 *
 * A failed check prints file:line and the expression and marks the current
 * test failed; the test goes on. t_done() prints "N passed, N failed" and
 * returns the exit status (0, or 1 if anything failed). T_SKIP() inside a
 * test marks it skipped; a program whose every test skipped exits 77.
 */
#ifndef KVT_T_H
#define KVT_T_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int t_pass_, t_fail_, t_skip_, t_cur_failed_, t_cur_skipped_;

#define T_CHECK(cond)                                                        \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "  %s:%d: check failed: %s\n", __FILE__,        \
                    __LINE__, #cond);                                        \
            t_cur_failed_ = 1;                                               \
        }                                                                    \
    } while (0)

#define T_NEAR(a, b, tol)                                                    \
    do {                                                                     \
        double t_a_ = (double)(a), t_b_ = (double)(b);                       \
        if (!(fabs(t_a_ - t_b_) <= (tol))) {                                 \
            fprintf(stderr, "  %s:%d: %s = %.9g, %s = %.9g, |diff| > %g\n",  \
                    __FILE__, __LINE__, #a, t_a_, #b, t_b_, (double)(tol));  \
            t_cur_failed_ = 1;                                               \
        }                                                                    \
    } while (0)

#define T_SKIP(why)                                                          \
    do {                                                                     \
        fprintf(stderr, "  skip: %s\n", why);                                \
        t_cur_skipped_ = 1;                                                  \
        return;                                                              \
    } while (0)

/* A prerequisite of the test (the kvtile binary, a model, a data file) is
 * missing. On a developer's machine the test is skipped; under CI=true (or
 * CI=1) a missing prerequisite is a failure, so a broken checkout cannot
 * pass by skipping. Not for machine features (io_uring, AVX-512): those
 * always skip. */
static inline int t_ci_(void)
{
    const char *v = getenv("CI");
    return v && (!strcmp(v, "true") || !strcmp(v, "1"));
}
#define T_REQUIRE(cond, what)                                                \
    do {                                                                     \
        if (!(cond)) {                                                       \
            if (t_ci_()) {                                                   \
                fprintf(stderr, "  %s:%d: missing under CI: %s\n",          \
                        __FILE__, __LINE__, what);                          \
                t_cur_failed_ = 1;                                           \
                return;                                                      \
            }                                                                \
            T_SKIP(what);                                                    \
        }                                                                    \
    } while (0)

#define T_RUN(fn)                                                            \
    do {                                                                     \
        t_cur_failed_ = 0;                                                   \
        t_cur_skipped_ = 0;                                                  \
        fn();                                                                \
        if (t_cur_failed_) { t_fail_++; fprintf(stderr, "FAIL %s\n", #fn); } \
        else if (t_cur_skipped_) { t_skip_++; fprintf(stderr, "skip %s\n", #fn); } \
        else { t_pass_++; fprintf(stderr, "ok   %s\n", #fn); }               \
    } while (0)

static inline int t_done(void)
{
    printf("%d passed, %d failed, %d skipped\n", t_pass_, t_fail_, t_skip_);
    if (t_fail_) return 1;
    if (t_pass_ == 0 && t_skip_ > 0) return 77;
    return 0;
}

/* Repository-relative data paths work from the repo root (the runner's cwd). */
#define T_DATA(name) "tests/data/" name
#define T_MODEL(name) "models/" name

#endif
