/* test_json.c - the JSONL record reader (tools/json.c on jansson) and the
 * JSON string writer (cli_json_str). Expected values are written by hand. */
#include <errno.h>
#include <string.h>

#include "t.h"
#include "base/kvt.h"
#include "tools/json.h"

#include <jansson.h>

#define MAXF 16

/* Parse S; *root owns the strings (jrec_free it). */
static int parse(const char *s, struct jrec_field *f, struct json_t **root)
{
    return jrec_parse(s, strlen(s), f, MAXF, root, NULL);
}

static void test_types(void)
{
    struct jrec_field f[MAXF];
    struct json_t *buf;
    int n = parse(" {\"id\": \"doc-1\", \"n\": -12.5e1, \"z\": 0, \"ok\": true, \"no\": false,"
                  " \"x\": null, \"nest\": {\"a\": [1, {\"b\": \"c\"}, []], \"d\": {}},"
                  " \"arr\": [ \"s\" , 2 ] }\n", f, &buf);
    T_CHECK(n == 8);
    if (n == 8) {
        T_CHECK(!strcmp(f[0].key, "id") && f[0].type == JREC_STR && !strcmp(f[0].str, "doc-1"));
        T_CHECK(f[0].str_len == 5);
        T_CHECK(f[1].type == JREC_NUM);
        T_NEAR(f[1].num, -125.0, 0);
        T_CHECK(!strcmp(f[1].str, "-125")); /* canonical text, not the source's */
        T_CHECK(f[2].type == JREC_NUM && f[2].num == 0);
        T_CHECK(f[3].type == JREC_BOOL && f[3].b == 1);
        T_CHECK(f[4].type == JREC_BOOL && f[4].b == 0);
        T_CHECK(f[5].type == JREC_NULL);
        T_CHECK(f[6].type == JREC_NEST && json_is_object(f[6].val) && f[6].str == NULL);
        T_CHECK(json_object_size(f[6].val) == 2);
        T_CHECK(f[7].type == JREC_NEST && json_array_size(f[7].val) == 2);
        T_CHECK(!strcmp(json_string_value(json_array_get(f[7].val, 0)), "s"));
        T_CHECK(json_integer_value(json_array_get(f[7].val, 1)) == 2);
        T_CHECK(jrec_get(f, n, "ok") == &f[3]);
        T_CHECK(jrec_get(f, n, "missing") == NULL);
    }
    jrec_free(buf);
    T_CHECK(parse("{}", f, &buf) == 0);
    jrec_free(buf);
    T_CHECK(parse("  { }  ", f, &buf) == 0);
    jrec_free(buf);
}

static void test_escapes(void)
{
    struct jrec_field f[MAXF];
    struct json_t *buf;
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
    jrec_free(buf);
    /* duplicate keys are refused (JSON_REJECT_DUPLICATES), also when the
     * second spelling is escaped */
    T_CHECK(parse("{\"k\": \"1\", \"k\": \"2\"}", f, &buf) == KVT_EFORMAT && !buf);
    T_CHECK(parse("{\"k\": 1, \"\\u006b\": 1}", f, &buf) == KVT_EFORMAT && !buf);
    /* numbers: integers exact to 2^63-1, reals as doubles; overflow refused */
    n = parse("{\"i\": 9007199254740993, \"m\": -9223372036854775808, \"r\": 0.1,"
              " \"e\": 1E-2, \"z\": -0}", f, &buf);
    T_CHECK(n == 5);
    if (n == 5) {
        T_CHECK(!strcmp(f[0].str, "9007199254740993")); /* the text keeps every digit */
        T_CHECK(json_integer_value(f[0].val) == 9007199254740993LL);
        T_CHECK(!strcmp(f[1].str, "-9223372036854775808"));
        T_CHECK(f[2].num == 0.1 && !strcmp(f[2].str, "0.10000000000000001"));
        T_CHECK(f[3].num == 0.01 && f[4].num == 0);
    }
    jrec_free(buf);
    T_CHECK(parse("{\"a\": 9223372036854775808}", f, &buf) == KVT_EFORMAT);
    T_CHECK(parse("{\"a\": 1e400}", f, &buf) == KVT_EFORMAT);
    n = parse("{\"a\": 1e-400}", f, &buf); /* underflow is fine: 0 */
    T_CHECK(n == 1 && f[0].num == 0);
    jrec_free(buf);
    /* escaped key */
    n = parse("{\"\\u0069d\": 7}", f, &buf);
    T_CHECK(n == 1 && !strcmp(f[0].key, "id") && f[0].num == 7);
    jrec_free(buf);
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
        struct jrec_field f[MAXF];
        struct json_t *buf;
        int rc = parse(bad[i], f, &buf);
        if (rc != KVT_EFORMAT) fprintf(stderr, "  case %zu: '%s' -> %d\n", i, bad[i], rc);
        T_CHECK(rc == KVT_EFORMAT);
        jrec_free(buf);
    }
    /* not UTF-8: a stray continuation byte, a truncated sequence, an
     * overlong '/', an encoded surrogate, a byte above F4 */
    static const char *const bad_utf8[] = {
        "{\"a\":\"\x80\"}", "{\"a\":\"\xc3\"}", "{\"a\":\"\xc0\xaf\"}",
        "{\"a\":\"\xed\xa0\x80\"}", "{\"a\":\"\xf5\x80\x80\x80\"}", "{\"\xff\":1}",
    };
    for (size_t i = 0; i < sizeof bad_utf8 / sizeof bad_utf8[0]; i++) {
        struct jrec_field f[MAXF];
        struct json_t *buf;
        T_CHECK(parse(bad_utf8[i], f, &buf) == KVT_EUTF8);
        jrec_free(buf);
    }
}

static void test_limits(void)
{
    struct jrec_field f[3];
    struct json_t *root = NULL;
    struct jrec_err e;
    const char *s = "{\"a\":1,\"b\":2,\"c\":3}";
    T_CHECK(jrec_parse(s, strlen(s), f, 2, &root, NULL) == -ENOSPC && !root);
    T_CHECK(jrec_parse(s, strlen(s), f, 3, &root, NULL) == 3);
    jrec_free(root);
    /* the error position: jansson counts the bytes it consumed, so the 'x'
     * at offset 12 gives 13 */
    s = "{\"a\":1, \"b\":x}";
    T_CHECK(jrec_parse(s, strlen(s), f, 2, &root, &e) == KVT_EFORMAT);
    T_CHECK(e.off == 13 && strstr(e.text, "invalid token") != NULL);
    s = "{\"a\":\"\xc3(\"}";
    T_CHECK(jrec_parse(s, strlen(s), f, 2, &root, &e) == KVT_EUTF8);
    T_CHECK(e.off == 6 && strstr(e.text, "0xc3") != NULL); /* the byte's own offset */
    /* nesting: JREC_MAX_DEPTH levels below the record are fine, one more is
     * refused, in arrays and in objects */
    char deep[8 * JREC_MAX_DEPTH + 32];
    for (int obj = 0; obj <= 1; obj++)
        for (int extra = 0; extra <= 1; extra++) {
            int d = JREC_MAX_DEPTH + extra;
            size_t k = 0;
            k += (size_t)sprintf(deep, "{\"a\":");
            for (int i = 0; i < d; i++) k += (size_t)sprintf(deep + k, obj ? "{\"k\":" : "[");
            deep[k++] = '1';
            for (int i = 0; i < d; i++) deep[k++] = obj ? '}' : ']';
            deep[k++] = '}';
            int rc = jrec_parse(deep, k, f, 2, &root, NULL);
            T_CHECK(extra ? rc == KVT_EFORMAT : rc == 1);
            jrec_free(root);
        }
    /* not NUL-terminated input: only [0, len) is read */
    const char raw[] = "{\"a\":\"b\"}GARBAGE";
    T_CHECK(jrec_parse(raw, 9, f, 2, &root, NULL) == 1 && !strcmp(f[0].str, "b"));
    jrec_free(root);
    T_CHECK(jrec_parse(raw, 10, f, 2, &root, NULL) == KVT_EFORMAT);
}

int main(void)
{
    T_RUN(test_types);
    T_RUN(test_escapes);
    T_RUN(test_malformed);
    T_RUN(test_limits);
    return t_done();
}
