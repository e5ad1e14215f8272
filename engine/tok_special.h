/* tok_special.h - special pieces matched inside text before it is split
 * (llama.cpp's tokenizer_st_partition, same result, one pass).
 *
 * Pieces are tried longest first (ties: lower id first). Each piece, in
 * that order, takes its occurrences left to right that do not overlap
 * text taken by an earlier piece or by its own previous occurrence. A
 * piece with TOKSP_RSTRIP also drops the whitespace (C isspace) right
 * after each occurrence, TOKSP_LSTRIP the whitespace right before it. What
 * is left is raw text, cut into fragments at the taken pieces.
 */
#ifndef KVT_TOK_SPECIAL_H
#define KVT_TOK_SPECIAL_H

#include <stddef.h>
#include <stdint.h>

typedef struct toksp toksp;

enum {
    TOKSP_USER = 1,    /* user-defined: matched always */
    TOKSP_CONTROL = 2, /* control and unknown: matched with parse-special */
    TOKSP_LSTRIP = 4,
    TOKSP_RSTRIP = 8,
};

/* N pieces: ids ID[i], texts TEXT[i] of LEN[i] > 0 bytes, FLAGS[i] (one
 * class and strip bits). Everything is copied. @return 0 or -ENOMEM. */
int toksp_build(int n, const int32_t *id, const char *const *text,
                const uint32_t *len, const uint8_t *flags, toksp **out);
void toksp_free(toksp *sp); /* NULL is a no-op */

/* 1 if a piece of a class in CLASSES exists. */
int toksp_any(const toksp *sp, unsigned classes);

/* A fragment: raw text [off, off + len) if id < 0, else the piece id. */
typedef struct toksp_frag {
    size_t off, len;
    int32_t id;
} toksp_frag;

/* Partition TEXT[0..len) with the pieces of CLASSES. *FRAGS is malloc'ed
 * (the caller frees it), in text order, *N_FRAGS of them.
 * @return 0 or -ENOMEM. */
int toksp_partition(const toksp *sp, const char *text, size_t len,
                    unsigned classes, toksp_frag **frags, size_t *n_frags);

#endif
