/* fuzz_kvs.c - libFuzzer target for reopening a cache file: the file
 * header check, the record scan and replay (kvs_open with reopen = 1), then
 * streaming every layer back and appending after it.
 *
 * Input (compact, expanded here to the 4 KiB-record file layout of tile.h):
 *   byte 0  flags: bit 0 reseal each record's tile header checksum, bit 1
 *           recompute its payload checksum, bit 2 use the mmap backend
 *   byte 1  n_layer - 1 (1..3), byte 2 kv_dim / 4 - 1 (4..32), byte 3
 *           tile_tokens - 1 (1..16), byte 4 type
 *   then records: u16 LE length, that many bytes (tile header + payload),
 *   each placed at the next multiple of 4096 after the file header block.
 * Property: kvs_open either fails with an error code or gives a store whose
 * every span can be read or fails with an error code; nothing crashes, no
 * read or write leaves its buffer.
 * With -DKVT_REPLAY: fuzz_kvs FILE... replays; fuzz_kvs --seeds DIR writes
 * real cache files (tiles, tails, sync and truncate markers) converted to
 * the compact form. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/io.h"
#include "base/kvt.h"
#include "kvstore/kvs.h"
#include "kvstore/tile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FK_PRE 5
#define FK_PAGE 4096

static void fk_path(char *p, size_t cap) { snprintf(p, cap, "/tmp/fuzz_kvs.%d.kvt", (int)getpid()); }

static struct kvs_config fk_config(const uint8_t *pre, const char *path)
{
    struct kvs_config c = {
        .n_layer = 1 + pre[1] % 3, .kv_dim = 4 * (1 + pre[2] % 8),
        .tile_tokens = 1 + pre[3] % 16, .backing = KVS_DISK, .type = pre[4] % KVS_NTYPES,
        .codec = TILE_LZ4, .io = (pre[0] & 4) ? IO_MMAP : IO_PREAD, .path = path, .reopen = 1,
    };
    return c;
}

/* The file the compact input stands for. @return its size, 0 if none. */
static size_t fk_expand(const uint8_t *data, size_t size, const struct kvs_config *c, uint8_t **out)
{
    size_t cap = FK_PAGE, n = FK_PAGE;
    for (size_t p = FK_PRE; p + 2 <= size;) {
        size_t len = (size_t)data[p] | (size_t)data[p + 1] << 8;
        if (len > size - p - 2) len = size - p - 2;
        cap += (len + FK_PAGE - 1) / FK_PAGE * FK_PAGE + FK_PAGE;
        p += 2 + len;
    }
    uint8_t *f = calloc(1, cap);
    KVT_ASSERT(f);
    struct kvs_file_hdr fh = {
        .magic = KVS_FILE_MAGIC, .version = KVS_FILE_VERSION, .hdr_size = sizeof fh,
        .n_layer = (uint32_t)c->n_layer, .kv_dim = (uint32_t)c->kv_dim,
        .tile_tokens = (uint32_t)c->tile_tokens, .type = (uint8_t)c->type, .codec = TILE_LZ4,
    };
    fh.hdr_xxh = tile_hash(&fh, offsetof(struct kvs_file_hdr, hdr_xxh));
    memcpy(f, &fh, sizeof fh);
    for (size_t p = FK_PRE; p + 2 <= size;) {
        size_t len = (size_t)data[p] | (size_t)data[p + 1] << 8;
        if (len > size - p - 2) len = size - p - 2;
        uint8_t *r = f + n;
        memcpy(r, data + p + 2, len);
        if (len >= sizeof(struct tile_hdr)) {
            struct tile_hdr h;
            memcpy(&h, r, sizeof h);
            if (data[0] & 2) {
                size_t pay = h.enc_size < len - sizeof h ? h.enc_size : len - sizeof h;
                h.enc_xxh = tile_hash(r + sizeof h, pay);
            }
            if (data[0] & 1) tile_hdr_seal(&h);
            memcpy(r, &h, sizeof h);
        }
        n += (len + FK_PAGE - 1) / FK_PAGE * FK_PAGE;
        if (len == 0) n += FK_PAGE; /* an empty record: a page of zeros */
        p += 2 + len;
    }
    *out = f;
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < FK_PRE) return 0;
    char path[256];
    fk_path(path, sizeof path);
    struct kvs_config c = fk_config(data, path);
    uint8_t *file;
    size_t fsize = fk_expand(data, size, &c, &file);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    KVT_ASSERT(fd >= 0);
    KVT_ASSERT(write(fd, file, fsize) == (ssize_t)fsize);
    close(fd);
    free(file);
    kvs *s;
    if (kvs_open(&c, &s) == 0) {
        for (int l = 0; l < c.n_layer; l++) {
            int64_t nt = kvs_layer_tokens(s, l);
            KVT_ASSERT(nt >= 0);
            if (kvs_read_begin(s, l, nt) < 0) continue;
            struct kvs_span sp;
            int64_t seen = 0;
            int rc;
            while ((rc = kvs_read_next(s, &sp)) == 1) {
                KVT_ASSERT(sp.n > 0 && sp.pos0 == seen);
                volatile float x = sp.k[(size_t)sp.n * (size_t)c.kv_dim - 1] + sp.v[0];
                (void)x;
                seen += sp.n;
            }
            kvs_read_end(s);
            KVT_ASSERT(rc < 0 || seen == nt);
        }
        float row[32] = { 0 };
        for (int l = 0; l < c.n_layer; l++) kvs_append(s, l, row, row, 1);
        kvs_sync(s);
        kvs_close(s);
    }
    unlink(path);
    return 0;
}

#ifdef KVT_REPLAY
#define REPLAY_OWN_MAIN
#include "replay.h"

/* A real cache file of CFG, in the compact form. */
static void write_seed(const char *dir, int type, int T, int variant)
{
    char path[256], out[4096];
    fk_path(path, sizeof path);
    uint8_t pre[FK_PRE] = { 3, 1, 7, (uint8_t)(T - 1), (uint8_t)type };
    struct kvs_config c = fk_config(pre, path);
    c.reopen = 0;
    kvs *s;
    KVT_ASSERT(kvs_open(&c, &s) == 0);
    float k[8 * 64], v[8 * 64];
    for (int i = 0; i < 8 * 64; i++) { k[i] = (float)(i % 13) * 0.5f; v[i] = (float)(i % 7) - 3.0f; }
    for (int l = 0; l < c.n_layer; l++) KVT_ASSERT(kvs_append(s, l, k, v, 10) == 0);
    KVT_ASSERT(kvs_sync(s) == 0);
    if (variant) {
        KVT_ASSERT(kvs_truncate(s, 6) == 0);
        for (int l = 0; l < c.n_layer; l++) KVT_ASSERT(kvs_append(s, l, k, v, 3) == 0);
    }
    kvs_close(s);
    FILE *f = fopen(path, "rb");
    KVT_ASSERT(f);
    fseek(f, 0, SEEK_END);
    long fsz = ftell(f);
    uint8_t *b = malloc((size_t)fsz);
    fseek(f, 0, SEEK_SET);
    KVT_ASSERT(fread(b, 1, (size_t)fsz, f) == (size_t)fsz);
    fclose(f);
    unlink(path);
    snprintf(out, sizeof out, "%s/%s-T%d-%d", dir, tile_type_name(type), T, variant);
    FILE *o = fopen(out, "wb");
    KVT_ASSERT(o);
    fwrite(pre, 1, sizeof pre, o);
    for (long off = FK_PAGE; off + (long)sizeof(struct tile_hdr) <= fsz;) {
        struct tile_hdr h;
        memcpy(&h, b + off, sizeof h);
        if (h.magic != TILE_MAGIC) break;
        size_t len = sizeof h + h.enc_size;
        uint8_t l2[2] = { (uint8_t)len, (uint8_t)(len >> 8) };
        fwrite(l2, 1, 2, o);
        fwrite(b + off, 1, len, o);
        off += (long)((len + FK_PAGE - 1) / FK_PAGE * FK_PAGE);
    }
    fclose(o);
    free(b);
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--seeds")) {
        for (int type = 0; type < KVS_NTYPES; type++)
            for (int variant = 0; variant < 2; variant++) write_seed(argv[2], type, 4, variant);
        return 0;
    }
    replay_files(argc, argv);
    return 0;
}
#endif
