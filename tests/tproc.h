/* tproc.h - tests that run the kvtile binary ($KVT_BUILD/kvtile, default
 * build/kvtile) and read what it prints. */
#ifndef KVT_TPROC_H
#define KVT_TPROC_H

#include <stddef.h>
#include <sys/types.h>

/* Path of the kvtile binary. */
const char *t_kvtile(void);

/* Run "kvtile ARGS" through sh; stdout into out[cap] (NUL-terminated),
 * stderr into err[err_cap] if err is not NULL (else discarded).
 * @return the exit status (0..255), or -1 if it could not run. */
int t_run(const char *args, char *out, size_t cap, char *err, size_t err_cap);

/* The same for any shell command line CMD (run by sh -c). */
int t_sh(const char *cmd, char *out, size_t cap, char *err, size_t err_cap);

/* Start "kvtile ARGS" in the background (stdout, stderr to /dev/null). */
pid_t t_spawn(const char *args);

/* The number after "KEY": in a JSON text; NAN if absent. */
double t_json_num(const char *json, const char *key);

/* Whole file, NUL-terminated, malloc'ed; *len (if not NULL) its size.
 * NULL if it cannot be read. */
char *t_slurp(const char *path, size_t *len);

/* Lines in a file (0 if it does not exist). */
long t_count_lines(const char *path);

/* A fresh temporary directory (static buffer per call site: copy it). */
/* Entries in DIR other than . and .. (-1: cannot open). */
int t_dir_entries(const char *dir);
char *t_tmpdir(char *buf, size_t cap);

#endif
