/* journal.c - progress journals and durable files (see journal.h). */
#include "kvstore/journal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "io/io.h"
#include "base/kvt.h"

#define JNL_MAGIC "kvtile-journal 1 "
#define JNL_HASH_HEX 16

struct jnl_file {
    int fd;
    char *path;
    uint64_t seed;     /* XXH3-64 of the key: record hash seed */
    uint64_t end;      /* file size: where the next record goes */
    uint64_t cut;      /* torn bytes dropped at open */
    char *buf;         /* records read at open, '\n' -> NUL */
    size_t *offs;      /* (n) payload offsets in buf */
    int64_t n, cap;
};

static void put_hex(char *out, uint64_t v)
{
    static const char digits[] = "0123456789abcdef";
    for (int i = JNL_HASH_HEX - 1; i >= 0; i--, v >>= 4) out[i] = digits[v & 15];
}

/* 16 lower-case hex digits -> *v. @return 0 or -1. */
static int get_hex(const char *s, uint64_t *v)
{
    uint64_t x = 0;
    for (int i = 0; i < JNL_HASH_HEX; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        x = x << 4 | (uint64_t)d;
    }
    *v = x;
    return 0;
}

int64_t jnl_parse(const char *buf, size_t len, const char *key,
                  int (*fn)(void *ctx, const char *payload, size_t len),
                  void *ctx, size_t *good_len)
{
    *good_len = 0;
    size_t kl = strlen(key), ml = sizeof JNL_MAGIC - 1;
    const char *nl = memchr(buf, '\n', len);
    if (len < ml || memcmp(buf, JNL_MAGIC, ml) != 0 || !nl) return KVT_EFORMAT;
    size_t first = (size_t)(nl - buf); /* "magic HASH KEY" */
    uint64_t kh;
    if (first < ml + JNL_HASH_HEX + 1 || get_hex(buf + ml, &kh) < 0 ||
        buf[ml + JNL_HASH_HEX] != ' ')
        return KVT_EFORMAT;
    const char *k = buf + ml + JNL_HASH_HEX + 1;
    size_t klen = first - ml - JNL_HASH_HEX - 1;
    if (kh != XXH3_64bits(k, klen)) return KVT_EFORMAT; /* torn or damaged */
    if (klen != kl || memcmp(k, key, kl) != 0) return KVT_EOTHERRUN;
    size_t pos = first + 1;
    *good_len = pos;
    int64_t n = 0;
    while (pos < len) {
        const char *e = memchr(buf + pos, '\n', len - pos);
        if (!e) break; /* cut short */
        size_t l = (size_t)(e - (buf + pos));
        uint64_t h;
        if (l < JNL_HASH_HEX + 1 || get_hex(buf + pos, &h) < 0 ||
            buf[pos + JNL_HASH_HEX] != ' ')
            break;
        const char *p = buf + pos + JNL_HASH_HEX + 1;
        size_t pl = l - JNL_HASH_HEX - 1;
        if (memchr(p, 0, pl) || XXH3_64bits_withSeed(p, pl, kh) != h) break;
        if (fn) {
            int rc = fn(ctx, p, pl);
            if (rc < 0) return rc;
        }
        n++;
        pos += l + 1;
        *good_len = pos;
    }
    return n;
}

static int jnl_keep(void *ctx, const char *payload, size_t len)
{
    (void)len;
    jnl_file *j = ctx;
    if (j->n == j->cap) {
        int64_t cap = j->cap ? 2 * j->cap : 64;
        size_t *p = realloc(j->offs, (size_t)cap * sizeof *p);
        if (!p) return -ENOMEM;
        j->offs = p;
        j->cap = cap;
    }
    j->offs[j->n++] = (size_t)(payload - j->buf);
    return 0;
}

/* Write the whole of BUF at the end, fsync; cut a partial write off. */
static int jnl_put(jnl_file *j, const char *buf, size_t len)
{
    int rc = io_fd_write(j->fd, buf, len, j->end);
    if (rc == 0) rc = io_fd_fsync(j->fd);
    if (rc < 0) {
        while (ftruncate(j->fd, (off_t)j->end) != 0 && errno == EINTR) {}
        return rc;
    }
    j->end += len;
    return 0;
}

/* Read the existing file and keep its good records. @return 0, 1 (no
 * complete first line: treat as new), or < 0. */
static int jnl_load(jnl_file *j, const char *key, uint64_t size)
{
    if (size > SIZE_MAX - 1) return -EFBIG;
    j->buf = malloc((size_t)size + 1);
    if (!j->buf) return -ENOMEM;
    int64_t got = io_fd_read(j->fd, j->buf, (size_t)size, 0);
    if (got < 0) return (int)got;
    j->buf[got] = 0;
    if (!memchr(j->buf, '\n', (size_t)got)) return 1; /* torn first line: start over */
    size_t good;
    int64_t n = jnl_parse(j->buf, (size_t)got, key, jnl_keep, j, &good);
    if (n < 0) return (int)n;
    for (int64_t i = 0; i < j->n; i++) { /* terminate the payloads */
        char *p = j->buf + j->offs[i];
        *strchr(p, '\n') = 0;
    }
    j->end = good;
    j->cut = (uint64_t)got - good;
    if (j->cut > 0) {
        while (ftruncate(j->fd, (off_t)good) != 0)
            if (errno != EINTR) return -errno;
        return io_fd_fsync(j->fd);
    }
    return 0;
}

int jnl_open(const char *path, const char *key, int flags, jnl_file **out)
{
    *out = NULL;
    KVT_ASSERT(!strchr(key, '\n'));
    jnl_file *j = calloc(1, sizeof *j);
    if (!j) return -ENOMEM;
    j->fd = -1;
    j->seed = XXH3_64bits(key, strlen(key));
    j->path = strdup(path);
    int rc = -ENOMEM;
    if (!j->path) goto fail;
    int created = 0;
    j->fd = open(path, O_RDWR | O_CLOEXEC);
    if (j->fd < 0 && errno == ENOENT) {
        j->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        created = 1;
    }
    if (j->fd < 0) { rc = -errno; goto fail; }
    while ((rc = flock(j->fd, LOCK_EX | LOCK_NB)) != 0 && errno == EINTR) {}
    if (rc != 0) { rc = errno == EWOULDBLOCK ? -EBUSY : -errno; goto fail; }
    struct stat st;
    if (fstat(j->fd, &st) != 0) { rc = -errno; goto fail; }
    rc = 1;
    if ((flags & JNL_RESUME) && st.st_size > 0) {
        rc = jnl_load(j, key, (uint64_t)st.st_size);
        if (rc < 0) goto fail;
    }
    if (rc == 1) { /* a new journal: the key line */
        while ((rc = ftruncate(j->fd, 0)) != 0 && errno == EINTR) {}
        if (rc != 0) { rc = -errno; goto fail; }
        size_t kl = strlen(key), ml = sizeof JNL_MAGIC - 1;
        size_t hl = ml + JNL_HASH_HEX + 1 + kl + 1;
        char *h = malloc(hl);
        if (!h) { rc = -ENOMEM; goto fail; }
        memcpy(h, JNL_MAGIC, ml);
        put_hex(h + ml, j->seed);
        h[ml + JNL_HASH_HEX] = ' ';
        memcpy(h + ml + JNL_HASH_HEX + 1, key, kl);
        h[hl - 1] = '\n';
        j->end = 0;
        rc = jnl_put(j, h, hl);
        free(h);
        if (rc < 0) goto fail;
    }
    if (created && (rc = jnl_fsync_dir(path)) < 0) goto fail;
    *out = j;
    return 0;
fail:
    jnl_close(j);
    return rc;
}

void jnl_close(jnl_file *j)
{
    if (!j) return;
    if (j->fd >= 0) close(j->fd); /* releases the flock */
    free(j->path);
    free(j->buf);
    free(j->offs);
    free(j);
}

int jnl_remove(jnl_file *j)
{
    int rc = unlink(j->path) == 0 ? 0 : -errno;
    if (rc == 0) rc = jnl_fsync_dir(j->path);
    jnl_close(j);
    return rc;
}

int64_t jnl_count(const jnl_file *j) { return j->n; }
uint64_t jnl_cut_bytes(const jnl_file *j) { return j->cut; }

const char *jnl_record(const jnl_file *j, int64_t i, size_t *len)
{
    KVT_ASSERT(i >= 0 && i < j->n);
    const char *p = j->buf + j->offs[i];
    if (len) *len = strlen(p);
    return p;
}

int jnl_append(jnl_file *j, const char *payload, size_t len)
{
    KVT_ASSERT(!memchr(payload, '\n', len) && !memchr(payload, 0, len));
    if (len > SIZE_MAX - JNL_HASH_HEX - 2) return -EOVERFLOW;
    char *line = malloc(len + JNL_HASH_HEX + 2);
    if (!line) return -ENOMEM;
    put_hex(line, XXH3_64bits_withSeed(payload, len, j->seed));
    line[JNL_HASH_HEX] = ' ';
    memcpy(line + JNL_HASH_HEX + 1, payload, len);
    line[len + JNL_HASH_HEX + 1] = '\n';
    int rc = jnl_put(j, line, len + JNL_HASH_HEX + 2);
    free(line);
    return rc;
}

/* ---- durable files ------------------------------------------------------ */

int jnl_fsync_dir(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(dir, sizeof dir, ".");
    } else if (slash == path) {
        snprintf(dir, sizeof dir, "/");
    } else {
        size_t n = (size_t)(slash - path);
        if (n >= sizeof dir) return -ENAMETOOLONG;
        memcpy(dir, path, n);
        dir[n] = 0;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -errno;
    int rc = io_fd_fsync(fd);
    close(fd);
    return rc;
}

int jnl_commit(const char *tmp, const char *path)
{
    int fd = open(tmp, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    int rc = io_fd_fsync(fd);
    close(fd);
    if (rc < 0) return rc;
    if (rename(tmp, path) != 0) return -errno;
    return jnl_fsync_dir(path);
}
