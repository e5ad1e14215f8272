/* cmd_cache.c - `kvtile cache ls|rm|gc`: the document caches of
 * `kvtile batch --cache-dir DIR` (format: batch_cache.h).
 *
 *   ls DIR [--json]          one line per cache: name, bytes (.kvt + .kvm),
 *                            tokens cached / document tokens, model
 *                            fingerprint, last use (sidecar mtime)
 *   rm DIR NAME... | --all   remove caches (NAME: the stem, or any prefix
 *                            of it that names exactly one cache)
 *   gc --max-bytes N DIR     remove least recently used caches until the
 *                            total is at most N bytes
 * Only FP-HASH.kvt / .kvm pairs (and their .tmp leftovers) are touched;
 * journals and other files in DIR are left alo A cache whose sidecar a running
 * batch holds (flock) is left in place with a warning.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "base/kvt.h"
#include "tools/batch_cache.h"

struct entry {
    char stem[96];
    uint64_t bytes;
    double last_use;     /* seconds since the epoch */
    int have_hdr;
    struct bc_hdr h;
};

/* FP-HASH: 64 hex, '-', 16 hex. */
static int is_stem(const char *s, size_t n)
{
    if (n != 81 || s[64] != '-') return 0;
    for (size_t i = 0; i < n; i++)
        if (i != 64 && !strchr("0123456789abcdef", s[i])) return 0;
    return 1;
}

static int entry_cmp(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    if (x->last_use != y->last_use) return x->last_use < y->last_use ? -1 : 1;
    return strcmp(x->stem, y->stem);
}

static struct entry *scan(const char *dir, int *n_out)
{
    DIR *d = opendir(dir);
    if (!d) cli_die("%s: %s", dir, strerror(errno));
    int n = 0, cap = 16;
    struct entry *e = malloc((size_t)cap * sizeof *e);
    if (!e) cli_die("out of memory");
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l < 85) continue;
        const char *ext = de->d_name + 81;
        if (strcmp(ext, ".kvt") && strcmp(ext, ".kvm")) continue;
        if (!is_stem(de->d_name, 81)) continue;
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        struct stat st;
        if (stat(path, &st) != 0) continue;
        int k;
        for (k = 0; k < n; k++) if (!strncmp(e[k].stem, de->d_name, 81)) break;
        if (k == n) {
            if (n == cap) {
                e = realloc(e, (size_t)(cap *= 2) * sizeof *e);
                if (!e) cli_die("out of memory");
            }
            memset(&e[n], 0, sizeof e[n]);
            memcpy(e[n].stem, de->d_name, 81);
            n++;
        }
        e[k].bytes += (uint64_t)st.st_size;
        double t = (double)st.st_mtim.tv_sec + st.st_mtim.tv_nsec * 1e-9;
        if (!strcmp(ext, ".kvm")) {
            e[k].last_use = t; /* the sidecar decides */
            e[k].have_hdr = bc_read_hdr(path, &e[k].h) == 0;
        } else if (!e[k].have_hdr && t > e[k].last_use) {
            e[k].last_use = t;
        }
    }
    closedir(d);
    qsort(e, (size_t)n, sizeof *e, entry_cmp);
    *n_out = n;
    return e;
}

/* Remove a document cache, unless a batch run holds it (the sidecar's
 * flock, tools/cmd_batch.c): then leave it and say so. @return 1 removed. */
static int remove_entry(const char *dir, const struct entry *e)
{
    static const char *const ext[] = { ".kvt", ".kvm", ".kvt.tmp", ".kvm.tmp" };
    char side[8192];
    snprintf(side, sizeof side, "%s/%s.kvm", dir, e->stem);
    int fd = open(side, O_RDONLY | O_CLOEXEC);
    if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) != 0) {
        cli_warn("%s: in use by a running batch; left in place", side);
        close(fd);
        return 0;
    }
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++) {
        char path[8192];
        snprintf(path, sizeof path, "%s/%s%s", dir, e->stem, ext[i]);
        if (unlink(path) != 0 && errno != ENOENT) cli_die("%s: %s", path, strerror(errno));
    }
    if (fd >= 0) close(fd); /* the lock goes with the removed file */
    return 1;
}

_Noreturn static void usage(void)
{
    fprintf(stderr, "usage: kvtile cache ls DIR [--json]\n"
                    "       kvtile cache rm DIR NAME...|--all\n"
                    "       kvtile cache gc --max-bytes N DIR\n");
    exit(2);
}

int cmd_cache(int argc, char **argv)
{
    if (argc < 2) usage();
    const char *sub = argv[1];
    if (!strcmp(sub, "ls")) {
        const char *dir = NULL;
        int json = 0;
        struct opt tab[] = {
            OPT_FLAG("--json", NULL, &json, "one JSON object per cache on stdout"),
            OPT_END(),
        };
        if (opt_parse("cache ls", "DIR [--json]", tab, argc - 1, argv + 1, &dir, 1) < 1)
            opt_usage("cache ls", "DIR [--json]");
        int n;
        struct entry *e = scan(dir, &n);
        uint64_t total = 0;
        if (!json) printf("%-30s %12s %17s %-16s %s\n", "cache", "bytes", "tokens", "model", "last use");
        for (int i = 0; i < n; i++) {
            char when[32];
            time_t t = (time_t)e[i].last_use;
            struct tm tm;
            strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", localtime_r(&t, &tm));
            total += e[i].bytes;
            long long ntok = e[i].have_hdr ? (long long)e[i].h.cached_tokens : -1;
            long long doc = e[i].have_hdr ? (long long)e[i].h.doc_tokens : -1;
            if (json) {
                printf("{\"cache\":\"%s\",\"bytes\":%llu,\"tokens\":%lld,\"doc_tokens\":%lld,"
                       "\"model_fp\":\"%.64s\",\"last_use\":\"%s\"}\n", e[i].stem,
                       (unsigned long long)e[i].bytes, ntok, doc, e[i].stem, when);
            } else {
                char tk[40];
                if (e[i].have_hdr) snprintf(tk, sizeof tk, "%lld/%lld", ntok, doc);
                else snprintf(tk, sizeof tk, "?");
                printf("%.8s..-%-16s %12llu %17s %.16s %s\n", e[i].stem, e[i].stem + 65,
                       (unsigned long long)e[i].bytes, tk, e[i].stem, when);
            }
        }
        if (!json) printf("%d caches, %llu bytes\n", n, (unsigned long long)total);
        free(e);
        return 0;
    }
    if (!strcmp(sub, "rm")) {
        int all = 0;
        const char **pos = calloc((size_t)argc, sizeof *pos);
        if (!pos) cli_die("out of memory");
        struct opt tab[] = {
            OPT_FLAG("--all", NULL, &all, "remove every cache in DIR"),
            OPT_END(),
        };
        const char *usage_rm = "DIR NAME...|--all";
        int n_pos = opt_parse("cache rm", usage_rm, tab, argc - 1, argv + 1, pos, argc);
        if (n_pos < 1 || (all != (n_pos == 1))) opt_usage("cache rm", usage_rm);
        const char *dir = pos[0];
        int n;
        struct entry *e = scan(dir, &n);
        if (all) {
            for (int i = 0; i < n; i++) remove_entry(dir, &e[i]);
        } else {
            for (int a = 1; a < n_pos; a++) {
                int hit = -1, count = 0;
                size_t l = strlen(pos[a]);
                for (int i = 0; i < n; i++)
                    if (!strncmp(e[i].stem, pos[a], l) || (l > 16 && strstr(e[i].stem, pos[a]))) { hit = i; count++; }
                if (count != 1)
                    cli_die("%s: %s", pos[a], count ? "names more than one cache" : "no such cache");
                remove_entry(dir, &e[hit]);
            }
        }
        free(e);
        free(pos);
        return 0;
    }
    if (!strcmp(sub, "gc")) {
        const char *dir = NULL;
        size_t max_bytes = 0;
        int have_max = 0;
        struct opt tab[] = {
            OPT_BYTES("--max-bytes", NULL, "N", &max_bytes, "remove the oldest caches until DIR holds at most N bytes"),
            OPT_END(),
        };
        const char *usage_gc = "--max-bytes N DIR";
        for (int i = 2; i < argc; i++) have_max |= !strncmp(argv[i], "--max-bytes", 11);
        if (opt_parse("cache gc", usage_gc, tab, argc - 1, argv + 1, &dir, 1) < 1 || !have_max)
            opt_usage("cache gc", usage_gc);
        int64_t max = (int64_t)max_bytes;
        int n;
        struct entry *e = scan(dir, &n);
        uint64_t total = 0, freed = 0;
        for (int i = 0; i < n; i++) total += e[i].bytes;
        int removed = 0;
        for (int i = 0; i < n && total > (uint64_t)max; i++) { /* oldest first */
            if (!remove_entry(dir, &e[i])) continue; /* in use */
            total -= e[i].bytes;
            freed += e[i].bytes;
            removed++;
        }
        printf("removed %d caches (%llu bytes), %d left (%llu bytes)\n", removed,
               (unsigned long long)freed, n - removed, (unsigned long long)total);
        free(e);
        return 0;
    }
    usage();
}
