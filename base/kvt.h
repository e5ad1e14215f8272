/* kvt.h - the base layer every module includes: error codes, assertions,
 * clocks. Nothing here allocates or prints except kvt_assert_fail().
 *
 * Error convention (all modules): functions return int, >= 0 on success,
 * -errno for operating-system errors, or one of the KVT_E* codes below
 * (all <= KVT_EBASE, far below any errno). kvt_strerror() names both kinds.
 */
#ifndef KVT_H
#define KVT_H

#include <stddef.h>
#include <stdint.h>

#define KVT_EBASE (-10000)

/* X(name, message): one list, so the enum and the strings cannot drift. */
#define KVT_ERRORS(X)                                                        \
    X(KVT_EFORMAT, "malformed file")                                         \
    X(KVT_EVERSION, "unsupported format version")                            \
    X(KVT_ETYPE, "unsupported tensor or element type")                       \
    X(KVT_EMISSING, "missing tensor or metadata key")                        \
    X(KVT_ESHAPE, "tensor has the wrong shape")                              \
    X(KVT_EARCH, "unsupported model architecture")                           \
    X(KVT_ECHECKSUM, "checksum mismatch")                                    \
    X(KVT_EMODEL, "cache was built by another model")                        \
    X(KVT_ETRUNC, "file is truncated")                                       \
    X(KVT_EUTF8, "text is not valid UTF-8")                                  \
    X(KVT_ERANGE, "value out of range")                                      \
    X(KVT_EUNSUPP, "not supported by this machine or build")                 \
    X(KVT_EOTHERRUN, "belongs to another run (inputs or options differ)")

/* Codes count down from KVT_EBASE - 1. */
#define KVT_X_ENUM(name, msg) name##_IDX,
enum kvt_err_idx { KVT_ERRORS(KVT_X_ENUM) KVT_NERR };
#undef KVT_X_ENUM
#define KVT_X_ENUM(name, msg) enum { name = KVT_EBASE - 1 - name##_IDX };
KVT_ERRORS(KVT_X_ENUM)
#undef KVT_X_ENUM

/* @return a static string for a negative error code (project code or
 * -errno). Never NULL. */
const char *kvt_strerror(int err);

/* Always on, also in release builds: programmer errors die loudly. */
#define KVT_ASSERT(cond)                                                     \
    do {                                                                     \
        if (!(cond)) kvt_assert_fail(#cond, __FILE__, __LINE__);             \
    } while (0)

_Noreturn void kvt_assert_fail(const char *cond, const char *file, int line);

/* Monotonic seconds. */
double kvt_now_s(void);

/* Peak resident set size of this process in bytes (getrusage). */
int64_t kvt_peak_rss_bytes(void);

#define KVT_MIN(a, b) ((a) < (b) ? (a) : (b))
#define KVT_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
