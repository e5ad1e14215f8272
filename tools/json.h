/* json.h - a reader for one JSON object per line (JSONL records).
 *
 * json_parse_object() reads exactly one object from TEXT[0..len): its
 * members become json_field entries; leading/trailing whitespace is allowed,
 * anything else after the object is an error. Member values of type
 * string, number, true/false and null are decoded; nested objects and arrays
 * are validated and skipped (JSON_SKIPPED, nesting depth <= JSON_MAX_DEPTH).
 *
 * Strings: escapes \" \\ \/ \b \f \n \r \t and \uXXXX, surrogate pairs
 * combined into one code point and written as UTF-8. Refused: raw control
 * characters (< 0x20), lone or reversed surrogates, \u0000 (strings are
 * handed out NUL-terminated, so an embedded NUL could not be seen), and raw
 * bytes that are not valid UTF-8 (KVT_EUTF8: no overlongs, no surrogates,
 * <= U+10FFFF).
 *
 * Numbers: the JSON grammar exactly (-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?
 * [0-9]+)?), converted with strtod; the source text is kept too.
 *
 * Ownership: the caller owns every buffer. Decoded keys and strings are
 * written NUL-terminated into BUF, which needs json_buf_bound(len) bytes
 * (decoding never grows a string, and its two quotes pay for the NUL);
 * field pointers point into BUF or TEXT and live as long as they do.
 * Duplicate keys are kept in order; json_get returns the first.
 */
#ifndef KVT_JSON_H
#define KVT_JSON_H

#include <stddef.h>

#define JSON_MAX_DEPTH 64

enum json_type { JSON_NULL, JSON_BOOL, JSON_NUM, JSON_STR, JSON_SKIPPED };

struct json_field {
    const char *key;     /* NUL-terminated, in BUF */
    size_t key_len;      /* bytes, without the NUL */
    int type;            /* enum json_type */
    const char *str;     /* JSON_STR: decoded, NUL-terminated, in BUF;
                            JSON_NUM / JSON_SKIPPED: the source text in TEXT
                            (not NUL-terminated, str_len bytes) */
    size_t str_len;
    double num;          /* JSON_NUM */
    int b;               /* JSON_BOOL: 0 or 1 */
};

/* Bytes BUF needs to decode an object of LEN bytes. */
size_t json_buf_bound(size_t len);

/* Parse one object. @return the number of members (>= 0) with fields[0..n)
 * filled; KVT_EFORMAT for malformed JSON, KVT_EUTF8 for a string that is
 * not valid UTF-8, -ENOSPC if there are more than fields_cap members or
 * BUF is smaller than json_buf_bound(len). On error *err_off (if not NULL)
 * is the byte offset in TEXT where parsing stopped. */
int json_parse_object(const char *text, size_t len, char *buf, size_t buf_cap,
                      struct json_field *fields, int fields_cap,
                      size_t *err_off);

/* The first member named KEY, or NULL. */
const struct json_field *json_get(const struct json_field *fields, int n,
                                  const char *key);

#endif
