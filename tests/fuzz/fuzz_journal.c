/* fuzz_journal.c - libFuzzer target for the journal reader
 * (kvstore/journal.c).
 *   clang -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -I. \
 *     tests/fuzz/fuzz_journal.c kvstore/journal.c io/io.c io/kvt.c -luring -lxxhash
 * With -DKVT_REPLAY it is a plain program: fuzz_journal FILE... replays
 * inputs (the corpus, tests/fuzz/corpus/fuzz_journal/, is replayed by
 * test_fuzz in `make test`). Seeds: the first lines of a real `kvtile ppl
 * --cache-dir` journal (whole, with a torn last record, with a record
 * whose text no longer matches its hash), journals in the batch and
 * longrope-search formats, edge cases (empty, header only, a torn header,
 * the pre-journal batch header); the 40-hex-digit names are inputs a
 * 10-minute libFuzzer run found, merged with -merge=1.
 *
 * Properties, for the input read as a journal under two keys (a fixed one,
 * and the key its first line names, so the header can verify):
 *   - jnl_parse stays in bounds: every record lies inside the input, has
 *     no '\n' or NUL, and ends before good_len <= size;
 *   - jnl_open(JNL_RESUME) on a file of those bytes keeps exactly the
 *     records jnl_parse found (or starts a new journal when there is no
 *     complete first line), and cuts the file to good_len;
 *   - a record appended then is read back as the last one after a reopen,
 *     after all the earlier ones, unchanged. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/kvt.h"
#include "kvstore/journal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct seen {
    const char *base;
    size_t size, end; /* end of the last record */
    int64_t n;
    const char *first[8]; /* the first records, to compare after open */
    size_t first_len[8];
};

static int on_record(void *ctx, const char *p, size_t len)
{
    struct seen *s = ctx;
    KVT_ASSERT(p >= s->base && p + len < s->base + s->size); /* its '\n' follows */
    KVT_ASSERT(!memchr(p, '\n', len) && !memchr(p, 0, len));
    KVT_ASSERT(p[len] == '\n');
    KVT_ASSERT((size_t)(p - s->base) >= s->end);
    s->end = (size_t)(p - s->base) + len + 1;
    if (s->n < 8) {
        s->first[s->n] = p;
        s->first_len[s->n] = len;
    }
    s->n++;
    return 0;
}

static void check_key(const uint8_t *data, size_t size, const char *key, int fd,
                      const char *path)
{
    struct seen s = { (const char *)data, size, 0, 0, { 0 }, { 0 } };
    size_t good = 0;
    int64_t n = jnl_parse((const char *)data, size, key, on_record, &s, &good);
    KVT_ASSERT(good <= size);
    if (n >= 0) KVT_ASSERT(n == s.n && s.end <= good);

    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size) return;
    jnl_file *j;
    int rc = jnl_open(path, key, JNL_RESUME, &j);
    int fresh = size == 0 || !memchr(data, '\n', size);
    if (fresh) {
        KVT_ASSERT(rc == 0 && jnl_count(j) == 0);
    } else if (n < 0) {
        KVT_ASSERT(rc == (int)n);
        return;
    } else {
        KVT_ASSERT(rc == 0);
        KVT_ASSERT(jnl_count(j) == n && jnl_cut_bytes(j) == size - good);
        for (int64_t i = 0; i < n && i < 8; i++) {
            size_t len;
            const char *r = jnl_record(j, i, &len);
            KVT_ASSERT(len == s.first_len[i] && !memcmp(r, s.first[i], len));
        }
        struct stat st;
        KVT_ASSERT(fstat(fd, &st) == 0 && (size_t)st.st_size == good);
    }
    int64_t before = jnl_count(j);
    static const char rec[] = "appended record";
    KVT_ASSERT(jnl_append(j, rec, sizeof rec - 1) == 0);
    jnl_close(j);
    KVT_ASSERT(jnl_open(path, key, JNL_RESUME, &j) == 0);
    KVT_ASSERT(jnl_count(j) == before + 1 && jnl_cut_bytes(j) == 0);
    size_t len;
    const char *last = jnl_record(j, before, &len);
    KVT_ASSERT(len == sizeof rec - 1 && !memcmp(last, rec, len));
    jnl_close(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 20) return 0;
    int fd = memfd_create("fuzz_journal", MFD_CLOEXEC);
    if (fd < 0) return 0;
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    check_key(data, size, "kvtile-fuzz 1 key=fixed", fd, path);
    /* the key the first line names: "kvtile-journal 1 HASH KEY\n" */
    const char *nl = memchr(data, '\n', size);
    size_t head = sizeof "kvtile-journal 1 0123456789abcdef " - 1;
    if (nl && (size_t)(nl - (const char *)data) > head) {
        size_t kl = (size_t)(nl - (const char *)data) - head;
        char *key = malloc(kl + 1);
        if (key) {
            memcpy(key, data + head, kl);
            key[kl] = 0;
            if (!strchr(key, '\n') && strlen(key) == kl) check_key(data, size, key, fd, path);
            free(key);
        }
    }
    close(fd);
    return 0;
}

#ifdef KVT_REPLAY
#include "replay.h"   /* main: replay the files named */
#endif
