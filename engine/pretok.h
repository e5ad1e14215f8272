/* pretok.h - byte-level BPE pre-tokenizers, named by tokenizer.ggml.pre.
 *
 * A pre-tokenizer is a sequence of 1..6 regexes (PCRE2, UTF + UCP, `$` at
 * the end of the subject only). The first splits the text into chunks: each
 * match is a chunk and so is each run of text between matches. Every
 * further regex splits each chunk the same way, seeing only that chunk (a
 * lookahead stops at its end). The chunks left after the last regex are the
 * words the merges run on. This is how the Hugging Face "Sequence" of
 * "Split" pre-tokenizers with behaviour "Isolated" works, and how llama.cpp
 * applies its lists (the regex strings are those llama.cpp uses for each
 * name, which in places are ASCII-case adaptations of the originals).
 *
 * Besides its split, a name decides two things llama.cpp ties to it:
 * ignore_merges (a word that is itself a piece is emitted whole, without
 * merging: llama-bpe, tekken) and whether BOS is added by default when the
 * file has no tokenizer.ggml.add_bos_token key (llama-bpe, tekken,
 * chameleon); chatglm-bpe has no BOS.
 */
#ifndef KVT_PRETOK_H
#define KVT_PRETOK_H

#include <stddef.h>

typedef struct pretok pretok;

enum { PRETOK_IGNORE_MERGES = 1, PRETOK_ADD_BOS = 2, PRETOK_NO_BOS = 4 };

/* The pre-tokenizer called NAME[0..len). @return 0 and *out, KVT_EUNSUPP
 * for a name not in the table (with a one-line reason in err naming it),
 * or -ENOMEM. */
int pretok_open(const char *name, size_t len, pretok **out, char *err,
                size_t err_cap);
void pretok_free(pretok *p); /* NULL is a no-op */

/* The canonical name of the entry NAME matched (e.g. "llama-bpe" for
 * "llama3"), and its PRETOK_* flags. */
const char *pretok_name(const pretok *p);
unsigned pretok_flags(const pretok *p);

/* Every name pretok_open accepts, NULL-terminated, in table order. */
const char *const *pretok_names(void);

/* The regexes of P: *n of them, in order (for documentation and tests). */
const char *const *pretok_regexes(const pretok *p, int *n);

/* Split TEXT[0..len) (valid UTF-8) into words, calling WORD(ctx, w, n) for
 * each, in order; the words concatenate to TEXT. Stops at the first
 * non-zero return of WORD and returns it. @return 0, WORD's value,
 * -ENOMEM, or KVT_EUNSUPP when PCRE2 gives up (match limit). */
typedef int (*pretok_word_fn)(void *ctx, const char *w, size_t n);
int pretok_split(const pretok *p, const char *text, size_t len,
                 pretok_word_fn word, void *ctx);

#endif
