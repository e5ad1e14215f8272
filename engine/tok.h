/* tok.h - tokenizers read from GGUF metadata (text -> token ids).
 *
 *   tokenizer.ggml.model = "llama": SentencePiece-style BPE: pieces with
 *       scores, merges by best score, byte fallback (<0xNN>), dummy prefix
 *       (tokenizer.ggml.add_space_prefix, default true), spaces as U+2581.
 *   tokenizer.ggml.model = "gpt2": byte-level BPE: merges
 *       (tokenizer.ggml.merges), the GPT-2 pre-tokenizer regex (PCRE2),
 *       bytes mapped to printable code points.
 * Special ids from tokenizer.ggml.bos_token_id / eos_token_id /
 * add_bos_token. Control/user-defined pieces (token_type) are not matched
 * inside text (parse_special = false), as llama.cpp's tokenize with
 * add_special=false, parse_special=false.
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
void tok_free(tok *t); /* NULL is a no-op */

int tok_n_vocab(const tok *t);
int tok_bos(const tok *t);       /* -1 if none */
int tok_eos(const tok *t);       /* -1 if none */
int tok_add_bos(const tok *t);   /* 1 if the model wants BOS prepended */

/* Upper bound on the ids TEXT of LEN bytes can produce (BOS included). */
size_t tok_encode_bound(size_t len);

/* Encode TEXT[0..len) into ids[0..cap). BOS first if ADD_BOS (and the
 * vocabulary has one). @return number of ids (>= 0), KVT_EUTF8 if the text
 * is not valid UTF-8, -ENOSPC if cap is too small. */
int64_t tok_encode(const tok *t, const char *text, size_t len, int add_bos,
                   int32_t *ids, size_t cap);

/* The raw piece string of ID (NUL-terminated), or NULL if out of range. */
const char *tok_piece(const tok *t, int id);

/* The text ID decodes to (U+2581 -> ' ', <0xNN> -> byte, byte-level BPE
 * code points -> bytes; control tokens -> ""), written to buf.
 * @return bytes written (no NUL), or -ENOSPC. */
int tok_decode_piece(const tok *t, int id, char *buf, size_t cap);

#endif
