/* batch_prompt.h - prompt builders of the overnight jobs (passkey, batch).
 * Pure text functions: no model, no I/O; the caller owns every buffer.
 *
 * Passkey prompt (the LongRoPE evaluation / llama.cpp passkey example):
 *
 *   PASSKEY_PREFIX
 *   + PASSKEY_FILLER x k
 *   + " The pass key is N. Remember it. N is the pass key."
 *   + PASSKEY_FILLER x (n_reps - k)
 *   + PASSKEY_SUFFIX
 *
 * with k = floor(depth * n_reps) clamped to [0, n_reps]: the key sits
 * between repetitions, depth 0 before the first, depth 1 after the last.
 *
 * Batch template: "{doc}" and "{question}" are replaced everywhere they
 * occur; the document part (what a document cache holds) is the rendered
 * text before the first "{question}" (the whole text if there is none).
 */
#ifndef KVT_BATCH_PROMPT_H
#define KVT_BATCH_PROMPT_H

#include <stddef.h>
#include <stdint.h>

#define PASSKEY_PREFIX "There is an important info hidden inside a lot of irrelevant " \
    "text. Find it and memorize them. I will quiz you about the important information there."
#define PASSKEY_FILLER " The grass is green. The sky is blue. The sun is yellow. " \
    "Here we go. There and back again."
#define PASSKEY_SUFFIX " What is the pass key? The pass key is"

/* Bytes passkey_prompt needs for N_REPS repetitions (NUL included). */
size_t passkey_prompt_bound(int n_reps);

/* Write the prompt (NUL-terminated) to buf. key: 0 .. 99999999.
 * @return its length in bytes (no NUL), -ENOSPC if cap is too small,
 * KVT_ERANGE for n_reps < 0, depth outside [0, 1] or a bad key. */
int64_t passkey_prompt(char *buf, size_t cap, int n_reps, double depth,
                       long key);

/* The first run of ASCII digits in TEXT[0..len) as a number (at most 18
 * digits), or -1 if there is none. */
long long first_int(const char *text, size_t len);

/* Bytes tmpl_render needs (NUL included). */
size_t tmpl_render_bound(const char *tmpl, size_t doc_len, size_t q_len);

/* Render TMPL into out (NUL-terminated); *doc_part = bytes of the document
 * part. @return the length (no NUL) or -ENOSPC. */
int64_t tmpl_render(const char *tmpl, const char *doc, size_t doc_len,
                    const char *q, size_t q_len, char *out, size_t cap,
                    size_t *doc_part);

#endif
