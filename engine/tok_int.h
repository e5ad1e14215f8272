/* tok_int.h - internals shared by tok.c (vocabulary, open, decode) and
 * tok_encode.c (text -> ids). Not a public header. */
#ifndef KVT_TOK_INT_H
#define KVT_TOK_INT_H

#include <stddef.h>
#include <stdint.h>

#include "engine/pretok.h"
#include "engine/tok.h"
#include "engine/tok_special.h"

enum { TOK_SPM = 0, TOK_BPE = 1 };

/* llama.cpp token types (tokenizer.ggml.token_type). */
enum {
    TOK_T_UNDEFINED = 0, TOK_T_NORMAL = 1, TOK_T_UNKNOWN = 2,
    TOK_T_CONTROL = 3, TOK_T_USER = 4, TOK_T_UNUSED = 5, TOK_T_BYTE = 6
};

/* Longest text tok_encode accepts (symbol indices are int32). */
#define TOK_TEXT_MAX ((size_t)1 << 28)

typedef struct tok_strtab {
    char *arena;    /* strings, each NUL-terminated */
    size_t *off;    /* (n) */
    uint32_t *len;  /* (n) */
    int n;
    int32_t *slot;  /* (mask + 1): 0 or index + 1 */
    size_t mask;
} tok_strtab;

struct tok {
    int model;             /* TOK_SPM or TOK_BPE */
    tok_strtab vocab;      /* pieces; id = index */
    float *score;          /* (n_vocab) SPM merge scores */
    uint8_t *type;         /* (n_vocab) TOK_T_* */
    tok_strtab merges;     /* BPE: "left right"; rank = index */
    int bos, eos, unk, add_bos, add_eos, add_space_prefix;
    toksp *special;        /* control/user/unknown pieces, matched in text */
    int32_t byte_tok[256]; /* id for a raw byte (fallback), -1 if none */
    uint8_t isolated[128]; /* SPM: ASCII char in no multi-char piece */
    pretok *pre;           /* BPE pre-tokenizer */
    int ignore_merges;     /* BPE: a word that is a piece is not merged */
    char b2u[256][2];      /* BPE: byte -> UTF-8 of its code point */
    uint8_t b2u_len[256];
    int16_t u2b[324];      /* BPE: code point -> byte, -1 if none */
};

/* Index of string S[0..n) in T, or -1. */
int tok_tab_find(const tok_strtab *t, const char *s, size_t n);
/* Id of the piece S[0..n), or -1. */
int tok_id(const tok *t, const char *s, size_t n);
/* Bytes in the UTF-8 sequence starting with lead byte C (1 for bad). */
size_t tok_utf8_len(unsigned char c);
/* Length of the well-formed UTF-8 sequence at S[0..n) (no overlongs,
 * surrogates or code points > U+10FFFF), or 0 if S does not start one. */
size_t tok_char_len(const unsigned char *s, size_t n);
/* Offset of the first byte of S[0..n) that starts no well-formed UTF-8
 * sequence, or n if S is well-formed. */
size_t tok_utf8_bad(const unsigned char *s, size_t n);

#endif
