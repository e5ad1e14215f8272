/* fuzz_tile.c - libFuzzer target for tile decoding, every codec (the
 * Huffman decoders of plane-huf and dedup-huf above all).
 *
 * Input: byte 0 type, byte 1 codec, byte 2 tokens - 1 (n = 1..64), byte 3
 * kv_dim / 4 - 1 (kv_dim = 4..256 step 4), byte 4 bit 0: keep the payload
 * checksum as given (else it is recomputed so the decoder sees the bytes),
 * then the payload. The header is built and sealed here, so the fuzzer's
 * bytes reach the codec itself instead of stopping at a checksum.
 * Property: tile_decode never reads or writes out of bounds and returns
 * n or a negative error; on success the raw checksum matched.
 * With -DKVT_REPLAY: fuzz_tile FILE... replays inputs; fuzz_tile --seeds DIR
 * writes one valid encoded tile per (codec, type) as a seed corpus. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/kvt.h"
#include "kvstore/kvs.h"
#include "kvstore/tile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FT_PRE 5

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < FT_PRE) return 0;
    int type = data[0] % KVS_NTYPES, codec = data[1] % TILE_NCODECS;
    int n = 1 + data[2] % 64, kv_dim = 4 * (1 + data[3] % 64);
    if (tile_check_dims(type, kv_dim) < 0) return 0;
    size_t pay = size - FT_PRE;
    size_t raw = tile_raw_bytes(type, kv_dim, n);
    struct tile_hdr h;
    memset(&h, 0, sizeof h);
    h.type = (uint8_t)type;
    h.codec = (uint8_t)codec;
    h.n = (uint32_t)n;
    h.kv_dim = (uint32_t)kv_dim;
    h.raw_size = (uint32_t)raw;
    h.enc_size = (uint32_t)pay;
    h.raw_xxh = 0;
    h.enc_xxh = (data[4] & 1) && pay >= 8 ? 0 : tile_hash(data + FT_PRE, pay);
    tile_hdr_seal(&h);
    uint8_t *src = malloc(sizeof h + pay);
    size_t cap = (size_t)n * (size_t)kv_dim;
    float *k = malloc(cap * sizeof *k), *v = malloc(cap * sizeof *v);
    size_t scap = tile_scratch_bound(type, kv_dim, n);
    uint8_t *rawb = malloc(raw), *scratch = malloc(scap);
    KVT_ASSERT(src && k && v && rawb && scratch);
    memcpy(src, &h, sizeof h);
    memcpy(src + sizeof h, data + FT_PRE, pay);
    struct tile_hdr out;
    int rc = tile_decode(src, sizeof h + pay, k, cap, v, cap, rawb, raw, scratch, scap, &out);
    KVT_ASSERT(rc < 0 || rc == n);
    free(src); free(k); free(v); free(rawb); free(scratch);
    return 0;
}

#ifdef KVT_REPLAY
#include <math.h>
#define REPLAY_OWN_MAIN
#include "replay.h"

/* One valid tile per (codec, type): smooth values with repeats, so every
 * codec really compresses (and dedup-huf finds duplicate rows). */
static void write_seeds(const char *dir)
{
    const int n = 16, kv_dim = 32;
    float k[16 * 32], v[16 * 32];
    for (int t = 0; t < n; t++)
        for (int j = 0; j < kv_dim; j++) {
            k[t * kv_dim + j] = (float)sin(0.1 * (t % 5) + 0.3 * j);
            v[t * kv_dim + j] = (float)((j % 7) - 3) * 0.25f;
        }
    for (int type = 0; type < KVS_NTYPES; type++)
        for (int codec = 0; codec < TILE_NCODECS; codec++) {
            size_t rb = tile_raw_bytes(type, kv_dim, n), eb = tile_encode_bound(type, kv_dim, n);
            size_t sb = tile_scratch_bound(type, kv_dim, n);
            uint8_t *kr = malloc(rb / 2), *vr = malloc(rb / 2), *enc = malloc(eb), *sc = malloc(sb);
            KVT_ASSERT(kr && vr && enc && sc);
            tile_pack(type, kv_dim, k, n, kr);
            tile_pack(type, kv_dim, v, n, vr);
            struct tile_hdr h = { .type = (uint8_t)type, .codec = (uint8_t)codec,
                                  .n = (uint32_t)n, .kv_dim = (uint32_t)kv_dim };
            int64_t w = tile_encode(&h, kr, vr, enc, eb, sc, sb);
            KVT_ASSERT(w > 0);
            struct tile_hdr got;
            memcpy(&got, enc, sizeof got);
            char path[4096];
            snprintf(path, sizeof path, "%s/%s-%s", dir, tile_codec_name(codec), tile_type_name(type));
            FILE *f = fopen(path, "wb");
            KVT_ASSERT(f);
            uint8_t pre[FT_PRE] = { (uint8_t)type, got.codec, (uint8_t)(n - 1), (uint8_t)(kv_dim / 4 - 1), 0 };
            fwrite(pre, 1, sizeof pre, f);
            fwrite(enc + sizeof got, 1, got.enc_size, f);
            fclose(f);
            free(kr); free(vr); free(enc); free(sc);
        }
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--seeds")) {
        write_seeds(argv[2]);
        return 0;
    }
    replay_files(argc, argv);
    return 0;
}
#endif
