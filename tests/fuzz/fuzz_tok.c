/* fuzz_tok.c - libFuzzer target for tokenizer input: arbitrary bytes into
 * the SentencePiece (tiny-kjv) and byte-level BPE (gpt-2) tokenizers; run
 * from the repo root.
 *   clang -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -I. \
 *     tests/fuzz/fuzz_tok.c engine/tok.c engine/gguf.c io/kvt.c \
 *     -lpcre2-8 -lxxhash -lm
 * With -DKVT_REPLAY it is a plain program: fuzz_tok FILE... replays inputs.
 * Property: encode returns KVT_EUTF8 or ids in range, within the bound. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/tok.h"
#include "io/kvt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static gguf *g_g[2];
static tok *g_t[2];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const files[2] = {
        "models/tiny-kjv-f32.gguf", "tests/data/vocab/ggml-vocab-gpt-2.gguf"};
    if (!g_t[0])
        for (int i = 0; i < 2; i++) {
            KVT_ASSERT(gguf_open(files[i], &g_g[i], NULL, 0) == 0);
            KVT_ASSERT(tok_open(g_g[i], &g_t[i], NULL, 0) == 0);
        }
    size_t cap = tok_encode_bound(size);
    int32_t *ids = malloc(cap * sizeof *ids);
    KVT_ASSERT(ids != NULL);
    for (int i = 0; i < 2; i++) {
        int64_t n = tok_encode(g_t[i], (const char *)data, size, 1, ids, cap);
        KVT_ASSERT(n >= 0 || n == KVT_EUTF8);
        for (int64_t j = 0; j < n; j++)
            KVT_ASSERT(ids[j] >= 0 && ids[j] < tok_n_vocab(g_t[i]));
        char piece[512];
        for (int64_t j = 0; j < n; j++)
            KVT_ASSERT(tok_decode_piece(g_t[i], ids[j], piece, sizeof piece) >= 0);
    }
    free(ids);
    return 0;
}

#ifdef KVT_REPLAY
#include "replay.h"

int main(int argc, char **argv)
{
    replay_files(argc, argv);
    for (int i = 0; i < 2; i++) {
        tok_free(g_t[i]);
        gguf_close(g_g[i]);
    }
    return 0;
}
#endif
