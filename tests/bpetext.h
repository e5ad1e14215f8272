/* bpetext.h - the 5 MiB tokenizer test text, built deterministically. */
#ifndef KVT_BPETEXT_H
#define KVT_BPETEXT_H

#include <stddef.h>

/* KJV_PATH (the whole file) followed by generated lines mixing numbers of
 * every length, contractions in both cases, runs of spaces, tabs, CR LF
 * and blank lines, accented Latin, Greek, Cyrillic, CJK, Korean, Hebrew,
 * Arabic, Devanagari, Thai, Khmer, emoji (with joiners), fractions and
 * other numerals, up to TARGET bytes (cut at a line end). Same bytes on
 * every run. @return malloc'ed, NUL-terminated; NULL if KJV_PATH cannot
 * be read. */
char *t_bpe_text(const char *kjv_path, size_t target, size_t *len);

#endif
