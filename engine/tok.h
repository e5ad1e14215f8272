/* tok.h - tokenizers read from GGUF metadata (text -> token ids).
 *
 *   tokenizer.ggml.model = "llama": SentencePiece-style BPE: pieces with
 *       scores, merges by best score, byte fallback (<0xNN>), dummy prefix
 *       (tokenizer.ggml.add_space_prefix, default true), spaces as U+2581.
 *   tokenizer.ggml.model = "gpt2": byte-level BPE: merges
 *       (tokenizer.ggml.merges), the pre-tokenizer named by
 *       tokenizer.ggml.pre (engine/pretok.h; "default" when the key is
 *       absent, an unknown name is an error), bytes mapped to printable
 *       code points.
 * Special ids from tokenizer.ggml.bos_token_id / eos_token_id /
 * add_bos_token / add_eos_token, with llama.cpp's defaults when absent.
 * As llama.cpp's tokenize: user-defined pieces (token_type 4) are matched
 * inside the text before it is split (longest piece first); control and
 * unknown pieces only with TOK_PARSE_SPECIAL. llama.cpp also treats a few
 * pieces as control whatever their type ("<|endoftext|>", "<|im_end|>",
 * "<|eot_id|>", fill-in-the-middle markers, ...); so does this tokenizer.
 */
#ifndef KVT_TOK_H
#define KVT_TOK_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

typedef struct tok tok;

/* Build from the metadata of G (G must outlive the tokenizer only during
 * tok_open; everything needed is copied). Errors: KVT_EMISSING,
 * KVT_EFORMAT, KVT_EUNSUPP, with a one-line reason in err. */
int tok_open(const gguf *g, tok **out, char *err, size_t err_cap);

struct tok_params {
    const char *pre; /* pre-tokenizer name to use instead of the file's
                        tokenizer.ggml.pre (NULL: the file's) */
};
/* tok_open with parameters (P may be NULL). */
int tok_open_with(const gguf *g, const struct tok_params *p, tok **out,
                  char *err, size_t err_cap);
void tok_free(tok *t); /* NULL is a no-op */

int tok_n_vocab(const tok *t);
int tok_bos(const tok *t);       /* -1 if none */
int tok_eos(const tok *t);       /* -1 if none */
int tok_add_bos(const tok *t);   /* 1 if the model wants BOS prepended */
int tok_add_eos(const tok *t);   /* 1 if the model wants EOS appended */
/* The byte-level BPE pre-tokenizer in use ("llama-bpe", ...), NULL for
 * SentencePiece. */
const char *tok_pre_name(const tok *t);

/* Upper bound on the ids TEXT of LEN bytes can produce (BOS, EOS and
 * replacements included). */
size_t tok_encode_bound(size_t len);

/* Encode TEXT[0..len) into ids[0..cap). BOS first if ADD_BOS (and the
 * vocabulary has one). @return number of ids (>= 0), KVT_EUTF8 if the text
 * is not valid UTF-8, -ENOSPC if cap is too small. */
int64_t tok_encode(const tok *t, const char *text, size_t len, int add_bos,
                   int32_t *ids, size_t cap);

enum tok_flags {
    TOK_ADD_BOS = 1,        /* BOS first (if the vocabulary has one) */
    TOK_ADD_EOS = 2,        /* EOS last (if the vocabulary has one) */
    TOK_PARSE_SPECIAL = 4,  /* match control pieces inside the text too */
    TOK_UTF8_REPLACE = 8,   /* invalid UTF-8: each byte that starts no
                               well-formed sequence becomes U+FFFD
                               (byte-level BPE, as llama.cpp) or its byte
                               piece <0xNN> (SentencePiece; unk if none) */
};
/* tok_encode with TOK_* FLAGS. Without TOK_UTF8_REPLACE, invalid UTF-8
 * gives KVT_EUTF8 and, if BAD_OFF is not NULL, the byte offset of the
 * first byte that starts no well-formed sequence in *BAD_OFF. */
int64_t tok_encode_ex(const tok *t, const char *text, size_t len,
                      unsigned flags, int32_t *ids, size_t cap,
                      size_t *bad_off);

/* The raw piece string of ID (NUL-terminated), or NULL if out of range. */
const char *tok_piece(const tok *t, int id);

/* The text ID decodes to (U+2581 -> ' ', <0xNN> -> byte, byte-level BPE
 * code points -> bytes; control tokens -> ""), written to buf.
 * @return bytes written (no NUL), or -ENOSPC. */
int tok_decode_piece(const tok *t, int id, char *buf, size_t cap);

#endif
