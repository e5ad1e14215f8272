/* fuzz_sidecar.c - libFuzzer target for the batch document-cache sidecar
 * reader (tools/batch_cache.h: bc_read, the .kvm header and NLLs).
 * Input: byte 0 bit 0 reseal the header checksum, bit 1 recompute the NLL
 * checksum (so mutations reach the field checks), then the file's bytes.
 * Property: on success 0 <= cached_tokens <= doc_tokens, 0 <= n_nll <=
 * doc_tokens, and n_nll doubles were read (the array is touched end to end).
 * With -DKVT_REPLAY: fuzz_sidecar FILE... replays; --seeds DIR writes real
 * sidecars (through bc_write). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "base/kvt.h"
#include "tools/batch_cache.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    size_t n = size - 1;
    uint8_t *f = malloc(n ? n : 1);
    KVT_ASSERT(f);
    memcpy(f, data + 1, n);
    if (n >= BC_HDR_BYTES) {
        if (data[0] & 2) put64(f + 72, XXH3_64bits(f + BC_HDR_BYTES, (n - BC_HDR_BYTES) / 8 * 8));
        if (data[0] & 1) put64(f + 120, XXH3_64bits(f, 120));
    }
    char path[64];
    snprintf(path, sizeof path, "/tmp/fuzz_sidecar.%d.kvm", (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    KVT_ASSERT(fd >= 0);
    KVT_ASSERT(write(fd, f, n) == (ssize_t)n);
    close(fd);
    free(f);
    struct bc_hdr h;
    double *nll = NULL;
    if (bc_read(path, &h, &nll) == 0) {
        KVT_ASSERT(h.cached_tokens >= 0 && h.cached_tokens <= h.doc_tokens);
        KVT_ASSERT(h.n_nll >= 0 && h.n_nll <= h.doc_tokens);
        KVT_ASSERT((uint64_t)h.n_nll * 8 + BC_HDR_BYTES <= n);
        KVT_ASSERT(h.n_nll == 0 || nll != NULL);
        volatile double s = 0;
        for (int64_t i = 0; i < h.n_nll; i++) s += nll[i];
        (void)s;
    }
    free(nll);
    unlink(path);
    return 0;
}

#ifdef KVT_REPLAY
#define REPLAY_OWN_MAIN
#include "replay.h"

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--seeds")) {
        for (int k = 0; k < 3; k++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/sidecar-%d", argv[2], k);
            char tmp[64];
            snprintf(tmp, sizeof tmp, "/tmp/fuzz_sidecar.%d.seed", (int)getpid());
            int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC, 0600);
            KVT_ASSERT(fd >= 0);
            struct bc_hdr h = { .doc_hash = 0x1234u * (uint64_t)(k + 1), .doc_tokens = 20,
                                .cached_tokens = 8 * k, .n_nll = 5 * k };
            double nll[20];
            for (int i = 0; i < 20; i++) nll[i] = 0.5 * i;
            KVT_ASSERT(bc_write(fd, &h, nll, 0) == 0);
            off_t len = lseek(fd, 0, SEEK_END);
            uint8_t *b = malloc((size_t)len + 1);
            KVT_ASSERT(b && pread(fd, b + 1, (size_t)len, 0) == len);
            b[0] = 0;
            close(fd);
            unlink(tmp);
            FILE *o = fopen(path, "wb");
            KVT_ASSERT(o);
            fwrite(b, 1, (size_t)len + 1, o);
            fclose(o);
            free(b);
        }
        return 0;
    }
    replay_files(argc, argv);
    return 0;
}
#endif
