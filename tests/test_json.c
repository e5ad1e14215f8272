/* test_json.c - the JSONL record reader (tools/json.c, compiled in here:
 * the tools are not part of libkvt). Expected values are written by hand. */
#include <errno.h>
#include <string.h>

#include "t.h"
#include "io/kvt.h"
#include "tools/json.h"

#define MAXF 16

/* Parse S with a buffer of exactly json_buf_bound bytes (ASan sees any
 * overrun). */
static int parse(const char *s, struct json_field *f, char **buf)
{
    size_t len = strlen(s);
    *buf = malloc(json_buf_bound(len));
    return json_parse_object(s, len, *buf, json_buf_bound(len), f, MAXF, NULL);
}

static void test_types(void)
{
    struct json_field f[MAXF];
    char *buf;
    int n = parse(" {\"id\": \"doc-1\", \"n\": -12.5e1, \"z\": 0, \"ok\": true, \"no\": false,"
                  " \"x\": null, \"nest\": {\"a\": [1, {\"b\": \"c\"}, []], \"d\": {}},"
                  " \"arr\": [ \"s\" , 2 ] }\n", f, &buf);
    T_CHECK(n == 8);
    if (n == 8) {
        T_CHECK(!strcmp(f[0].key, "id") && f[0].type == JSON_STR && !strcmp(f[0].str, "doc-1"));
        T_CHECK(f[0].str_len == 5);
        T_CHECK(f[1].type == JSON_NUM);
        T_NEAR(f[1].num, -125.0, 0);
        T_CHECK(f[1].str_len == 7 && !memcmp(f[1].str, "-12.5e1", 7));
        T_CHECK(f[2].type == JSON_NUM && f[2].num == 0);
        T_CHECK(f[3].type == JSON_BOOL && f[3].b == 1);
        T_CHECK(f[4].type == JSON_BOOL && f[4].b == 0);
        T_CHECK(f[5].type == JSON_NULL);
        T_CHECK(f[6].type == JSON_SKIPPED);
        T_CHECK(f[6].str_len == strlen("{\"a\": [1, {\"b\": \"c\"}, []], \"d\": {}}"));
        T_CHECK(f[7].type == JSON_SKIPPED && !memcmp(f[7].str, "[ \"s\" , 2 ]", 11));
        T_CHECK(json_get(f, n, "ok") == &f[3]);
        T_CHECK(json_get(f, n, "missing") == NULL);
    }
    free(buf);
    T_CHECK(parse("{}", f, &buf) == 0);
    free(buf);
    T_CHECK(parse("  { }  ", f, &buf) == 0);
    free(buf);
}

static void test_escapes(void)
{
    struct json_field f[MAXF];
    char *buf;
    /* \u00e9 = C3 A9; \u20ac = E2 82 AC; \ud83d\ude00 = U+1F600 = F0 9F 98 80;
     * a raw UTF-8 e-acute passes through. */
    int n = parse("{\"t\": \"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t|\\u00e9\\u20AC\\ud83d\\ude00|\xc3\xa9\"}",
                  f, &buf);
    T_CHECK(n == 1);
    if (n == 1) {
        const char want[] = "a\"b\\c/d\b\f\n\r\t|\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80|\xc3\xa9";
        T_CHECK(f[0].str_len == sizeof want - 1);
        T_CHECK(!memcmp(f[0].str, want, sizeof want));
    }
    free(buf);
    /* duplicate keys: the first wins */
    n = parse("{\"k\": \"1\", \"k\": \"2\"}", f, &buf);
    T_CHECK(n == 2 && !strcmp(json_get(f, n, "k")->str, "1"));
    free(buf);
    /* escaped key */
    n = parse("{\"\\u0069d\": 7}", f, &buf);
    T_CHECK(n == 1 && !strcmp(f[0].key, "id") && f[0].num == 7);
    free(buf);
}

static void test_malformed(void)
{
    static const char *const bad[] = {
        "", "   ", "[]", "\"s\"", "42", "{", "}", "{\"a\"}", "{\"a\":}", "{\"a\" 1}",
        "{\"a\":1,}", "{,}", "{\"a\":1 \"b\":2}", "{a:1}", "{'a':1}", "{\"a\":1}x",
        "{\"a\":1}{}", "{\"a\":tru}", "{\"a\":nul}", "{\"a\":True}", "{\"a\":01}",
        "{\"a\":1.}", "{\"a\":.5}", "{\"a\":-}", "{\"a\":1e}", "{\"a\":+1}", "{\"a\":0x10}",
        "{\"a\":\"unterminated}", "{\"a\":\"tab\there\"}", "{\"a\":\"\\x\"}",
        "{\"a\":\"\\u12\"}", "{\"a\":\"\\u12G4\"}", "{\"a\":\"\\ud83d\"}",
        "{\"a\":\"\\ud83d\\u0041\"}", "{\"a\":\"\\ude00\"}", "{\"a\":\"\\u0000\"}",
        "{\"a\":[1,2}", "{\"a\":[1,]}", "{\"a\":{\"b\"}}", "{\"a\":{\"b\":1,}}",
        "{\"a\":[}", "{\"a\":\"x\"", "{\"a\":\"x\\",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct json_field f[MAXF];
        char *buf;
        int rc = parse(bad[i], f, &buf);
        if (rc != KVT_EFORMAT) fprintf(stderr, "  case %zu: '%s' -> %d\n", i, bad[i], rc);
        T_CHECK(rc == KVT_EFORMAT);
        free(buf);
    }
    /* not UTF-8: a stray continuation byte, a truncated sequence, an
     * overlong '/', an encoded surrogate, a byte above F4 */
    static const char *const bad_utf8[] = {
        "{\"a\":\"\x80\"}", "{\"a\":\"\xc3\"}", "{\"a\":\"\xc0\xaf\"}",
        "{\"a\":\"\xed\xa0\x80\"}", "{\"a\":\"\xf5\x80\x80\x80\"}", "{\"\xff\":1}",
    };
    for (size_t i = 0; i < sizeof bad_utf8 / sizeof bad_utf8[0]; i++) {
        struct json_field f[MAXF];
        char *buf;
        T_CHECK(parse(bad_utf8[i], f, &buf) == KVT_EUTF8);
        free(buf);
    }
}

static void test_limits(void)
{
    struct json_field f[2];
    char buf[64];
    size_t off = 0;
    const char *s = "{\"a\":1,\"b\":2,\"c\":3}";
    T_CHECK(json_parse_object(s, strlen(s), buf, sizeof buf, f, 2, NULL) == -ENOSPC);
    T_CHECK(json_parse_object(s, strlen(s), buf, 4, f, 2, NULL) == -ENOSPC);
    s = "{\"a\":1, \"b\":x}";
    T_CHECK(json_parse_object(s, strlen(s), buf, sizeof buf, f, 2, &off) == KVT_EFORMAT);
    T_CHECK(off == 12); /* at the 'x' */
    /* nesting: JSON_MAX_DEPTH levels are fine, one more is refused */
    char deep[2 * JSON_MAX_DEPTH + 32];
    for (int extra = 0; extra <= 1; extra++) {
        int d = JSON_MAX_DEPTH + extra;
        size_t k = 0;
        k += (size_t)sprintf(deep, "{\"a\":");
        for (int i = 0; i < d; i++) deep[k++] = '[';
        for (int i = 0; i < d; i++) deep[k++] = ']';
        deep[k++] = '}';
        char *b = malloc(json_buf_bound(k));
        int rc = json_parse_object(deep, k, b, json_buf_bound(k), f, 2, NULL);
        T_CHECK(extra ? rc == KVT_EFORMAT : rc == 1);
        free(b);
    }
    /* not NUL-terminated input: only [0, len) is read */
    const char raw[] = "{\"a\":\"b\"}GARBAGE";
    T_CHECK(json_parse_object(raw, 9, buf, sizeof buf, f, 2, NULL) == 1);
}

int main(void)
{
    T_RUN(test_types);
    T_RUN(test_escapes);
    T_RUN(test_malformed);
    T_RUN(test_limits);
    return t_done();
}
