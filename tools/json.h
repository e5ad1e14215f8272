/* json.h - a reader for one JSON object per line (JSONL records), on top of
 * jansson (Debian libjansson-dev; see README "JSON").
 *
 * jrec_parse() reads exactly one object from TEXT[0..len) (TEXT need not be
 * NUL-terminated): its members become jrec_field entries, in input order.
 * Leading/trailing whitespace is allowed, anything else after the object is
 * an error. Values of type string, number, true/false and null are decoded;
 * nested objects and arrays are JREC_NEST (their jansson value in `val`),
 * nesting depth <= JREC_MAX_DEPTH counting the record itself as 0.
 *
 * jansson enforces RFC 8259: strings are strict UTF-8 (no overlongs,
 * surrogates, > U+10FFFF), \uXXXX surrogate pairs are combined, lone
 * surrogates and raw control characters are refused, and so is \u0000
 * (JSON_ALLOW_NUL is not set: strings are handed out NUL-terminated).
 * Duplicate keys are refused (JSON_REJECT_DUPLICATES): a record whose
 * meaning depends on which copy wins is an error, not a guess.
 * Numbers follow the JSON grammar; integers must fit in a long long and
 * reals in a double (jansson refuses 1e400 and 2^63 as overflow).
 *
 * Ownership: *ROOT owns every string the fields point to; release it with
 * jrec_free(). For JREC_NUM, `str` is a canonical text of the number (an
 * integer in decimal, a real as %.17g) kept in the field itself.
 */
#ifndef KVT_JSON_H
#define KVT_JSON_H

#include <stddef.h>

#define JREC_MAX_DEPTH 64

struct json_t; /* jansson's value type */

enum jrec_type { JREC_NULL, JREC_BOOL, JREC_NUM, JREC_STR, JREC_NEST };

struct jrec_field {
    const char *key;     /* NUL-terminated, owned by ROOT */
    size_t key_len;      /* bytes, without the NUL */
    int type;            /* enum jrec_type */
    const char *str;     /* JREC_STR: decoded, NUL-terminated, owned by ROOT;
                            JREC_NUM: num_text; JREC_NEST/NULL/BOOL: NULL */
    size_t str_len;
    double num;          /* JREC_NUM */
    int b;               /* JREC_BOOL: 0 or 1 */
    const struct json_t *val; /* the jansson value (owned by ROOT) */
    char num_text[32];
};

/* Where and why a parse failed: OFF is jansson's byte position (the bytes
 * it had consumed: 1 + the offset of the offending byte for a bad token,
 * the offset itself for a byte that is not UTF-8), TEXT its message. */
struct jrec_err {
    size_t off;
    char text[160];
};

/* Parse one object. @return the number of members (>= 0) with fields[0..n)
 * filled and *ROOT set; KVT_EFORMAT for malformed JSON, KVT_EUTF8 for bytes
 * that are not valid UTF-8, -ENOSPC for more than fields_cap members,
 * -ENOMEM. On error *ROOT is NULL and ERR (if not NULL) is filled. */
int jrec_parse(const char *text, size_t len, struct jrec_field *fields, int fields_cap,
               struct json_t **root, struct jrec_err *err);

/* Release what jrec_parse returned in *ROOT (NULL is fine). */
void jrec_free(struct json_t *root);

/* The member named KEY, or NULL. */
const struct jrec_field *jrec_get(const struct jrec_field *fields, int n, const char *key);

#endif
