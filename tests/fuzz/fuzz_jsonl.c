/* fuzz_jsonl.c - libFuzzer target for the JSONL record reader of batch
 * input and merge (jrec_parse, tools/json.h, on jansson).
 * Properties: on success there are at most FJ_FIELDS members, every key and
 * string is NUL-terminated with no NUL inside and is strict UTF-8 (an
 * independent oracle), keys are unique (jrec_get finds each member itself),
 * a number's text reads back as the same double, and the record survives a
 * round trip (json_dumps, parse again: same members, json_equal values).
 * On failure no root is returned and the error position is within the input.
 * The input is copied to an exact-size buffer so ASan sees any overread.
 * With -DKVT_REPLAY it replays files. */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "base/kvt.h"
#include "tools/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FJ_FIELDS 16

/* Independent oracle: strict UTF-8 (no overlongs, surrogates, > U+10FFFF). */
static int utf8_ok(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = s[i], cp, len;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
        else return 0;
        if (i + len > n) return 0;
        for (unsigned j = 1; j < len; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += len;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size ? size : 1);
    KVT_ASSERT(text);
    memcpy(text, data, size);
    struct jrec_field f[FJ_FIELDS];
    struct json_t *root = (struct json_t *)text; /* must be overwritten */
    struct jrec_err err;
    int n = jrec_parse(text, size, f, FJ_FIELDS, &root, &err);
    if (n >= 0) {
        KVT_ASSERT(n <= FJ_FIELDS && root && json_is_object(root));
        KVT_ASSERT(json_object_size(root) == (size_t)n);
        for (int i = 0; i < n; i++) {
            KVT_ASSERT(strlen(f[i].key) == f[i].key_len);
            KVT_ASSERT(utf8_ok((const unsigned char *)f[i].key, f[i].key_len));
            KVT_ASSERT(jrec_get(f, n, f[i].key) == &f[i]);
            KVT_ASSERT(f[i].val == json_object_get(root, f[i].key));
            if (f[i].type == JREC_STR) {
                KVT_ASSERT(strlen(f[i].str) == f[i].str_len);
                KVT_ASSERT(utf8_ok((const unsigned char *)f[i].str, f[i].str_len));
            }
            if (f[i].type == JREC_NUM) KVT_ASSERT(strtod(f[i].str, NULL) == f[i].num);
        }
        char *dump = json_dumps(root, 0);
        KVT_ASSERT(dump);
        struct jrec_field g[FJ_FIELDS];
        struct json_t *again;
        KVT_ASSERT(jrec_parse(dump, strlen(dump), g, FJ_FIELDS, &again, NULL) == n);
        KVT_ASSERT(json_equal(root, again));
        for (int i = 0; i < n; i++) KVT_ASSERT(!strcmp(f[i].key, g[i].key)); /* order kept */
        jrec_free(again);
        free(dump);
        jrec_free(root);
    } else {
        KVT_ASSERT(root == NULL);
        KVT_ASSERT(n == KVT_EFORMAT || n == KVT_EUTF8 || n == -ENOSPC);
        KVT_ASSERT(err.off <= size + 1);
    }
    free(text);
    return 0;
}

#ifdef KVT_REPLAY
#include "replay.h"   /* main: replay the files named */
#endif
