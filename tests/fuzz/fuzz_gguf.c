/* fuzz_gguf.c - libFuzzer target for the GGUF reader.
 *   clang -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -I. \
 *     tests/fuzz/fuzz_gguf.c engine/gguf.c io/kvt.c -lxxhash -lm
 * With -DKVT_REPLAY it is a plain program: fuzz_gguf FILE... replays inputs.
 * Property: gguf_open never crashes; on success every tensor lies inside
 * the file and every metadata accessor stays in bounds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "engine/gguf.h"
#include "base/kvt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void touch_all(const gguf *g)
{
    for (int i = 0; i < gguf_n_kv(g); i++) {
        const char *k = gguf_key(g, i), *s;
        int64_t v;
        double d;
        size_t len;
        int et;
        uint64_t n;
        gguf_get_int(g, k, &v);
        gguf_get_float(g, k, &d);
        if (gguf_get_str(g, k, &s, &len) == 0 && len) KVT_ASSERT(s[len - 1] || 1);
        if (gguf_get_arr(g, k, &et, &n) == 0)
            for (uint64_t j = 0; j < n && j < 64; j++) {
                if (gguf_arr_str(g, k, j, &s, &len) == 0 && len)
                    KVT_ASSERT(s[len - 1] || 1);
                gguf_arr_int(g, k, j, &v);
                gguf_arr_float(g, k, j, &d);
            }
    }
    for (int i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        KVT_ASSERT(gguf_find_tensor(g, t->name) == t);
        if (t->size) KVT_ASSERT(((const volatile uint8_t *)t->data)[t->size - 1] || 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz_gguf", MFD_CLOEXEC);
    if (fd < 0) return 0;
    if (write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    gguf *g;
    char err[256];
    if (gguf_open(path, &g, err, sizeof err) == 0) {
        touch_all(g);
        gguf_close(g);
    }
    close(fd);
    return 0;
}

#ifdef KVT_REPLAY
#include "replay.h"   /* main: replay the files named */
#endif
