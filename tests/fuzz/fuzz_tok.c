/* fuzz_tok.c - libFuzzer target for tokenizer input: arbitrary bytes into
 * the SentencePiece (tiny-kjv) and byte-level BPE (gpt-2, llama-bpe,
 * deepseek-llm with its user-defined pieces) tokenizers, strict and with
 * --utf8 replace + --parse-special; run from the repo root (`make fuzz`).
 * With -DKVT_REPLAY it is a plain program: fuzz_tok FILE... replays inputs.
 * Property: encode returns KVT_EUTF8 (strict only) or ids in range, within
 * the bound. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/tok.h"
#include "base/kvt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NT 4
static gguf *g_g[NT];
static tok *g_t[NT];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const files[NT] = {
        "models/tiny-kjv-f32.gguf", "tests/data/vocab/ggml-vocab-gpt-2.gguf",
        "tests/data/vocab/ggml-vocab-llama-bpe.gguf",
        "tests/data/vocab/ggml-vocab-deepseek-llm.gguf"};
    if (!g_t[0])
        for (int i = 0; i < NT; i++) {
            KVT_ASSERT(gguf_open(files[i], &g_g[i], NULL, 0) == 0);
            KVT_ASSERT(tok_open(g_g[i], &g_t[i], NULL, 0) == 0);
        }
    size_t cap = tok_encode_bound(size);
    int32_t *ids = malloc(cap * sizeof *ids);
    KVT_ASSERT(ids != NULL);
    for (int k = 0; k < 2 * NT; k++) {
        int i = k % NT;
        unsigned fl = k < NT ? TOK_ADD_BOS
                             : TOK_ADD_BOS | TOK_ADD_EOS | TOK_UTF8_REPLACE | TOK_PARSE_SPECIAL;
        size_t bad = SIZE_MAX;
        int64_t n = tok_encode_ex(g_t[i], (const char *)data, size, fl, ids, cap, &bad);
        KVT_ASSERT(n >= 0 || (n == KVT_EUTF8 && k < NT && bad < size));
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
#define REPLAY_OWN_MAIN
#include "replay.h"

int main(int argc, char **argv)
{
    replay_files(argc, argv);
    for (int i = 0; i < NT; i++) {
        tok_free(g_t[i]);
        gguf_close(g_g[i]);
    }
    return 0;
}
#endif
