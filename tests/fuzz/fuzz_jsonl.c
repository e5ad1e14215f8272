/* fuzz_jsonl.c - libFuzzer target for the JSONL record reader of batch
 * input and merge (json_parse_object, tools/json.h).
 * Property: on success every field's key and string are NUL-terminated
 * inside BUF, strings are valid UTF-8 without NUL, and json_get finds the
 * first member of each key; on failure err_off <= len. The input is copied
 * to an exact-size buffer so ASan sees any overread.
 * With -DKVT_REPLAY it replays files. */
#include <stdlib.h>
#include <string.h>

#include "io/kvt.h"
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
    size_t cap = json_buf_bound(size);
    char *buf = malloc(cap);
    KVT_ASSERT(text && buf);
    memcpy(text, data, size);
    struct json_field f[FJ_FIELDS];
    size_t at = 0;
    int n = json_parse_object(text, size, buf, cap, f, FJ_FIELDS, &at);
    if (n >= 0) {
        KVT_ASSERT(n <= FJ_FIELDS);
        for (int i = 0; i < n; i++) {
            KVT_ASSERT(f[i].key >= buf && f[i].key + f[i].key_len < buf + cap);
            KVT_ASSERT(f[i].key[f[i].key_len] == 0 && strlen(f[i].key) == f[i].key_len);
            if (f[i].type == JSON_STR) {
                KVT_ASSERT(f[i].str >= buf && f[i].str + f[i].str_len < buf + cap);
                KVT_ASSERT(strlen(f[i].str) == f[i].str_len);
                KVT_ASSERT(utf8_ok((const unsigned char *)f[i].str, f[i].str_len));
            }
            const struct json_field *g = json_get(f, n, f[i].key);
            KVT_ASSERT(g && g <= &f[i]);
        }
    } else {
        KVT_ASSERT(at <= size);
    }
    free(text);
    free(buf);
    return 0;
}

#ifdef KVT_REPLAY
#include "replay.h"

int main(int argc, char **argv)
{
    replay_files(argc, argv);
    return 0;
}
#endif
