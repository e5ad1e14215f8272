/* json.c - one JSON object per line (see json.h). */
#include "tools/json.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "io/kvt.h"

struct jp {
    const char *s;
    size_t len, pos;
    char *out;       /* BUF */
    size_t out_cap, out_len;
};

static void ws(struct jp *p)
{
    while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' ||
                               p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
        p->pos++;
}

static int peek(const struct jp *p) { return p->pos < p->len ? (unsigned char)p->s[p->pos] : -1; }

static int hex4(struct jp *p, unsigned *v)
{
    if (p->len - p->pos < 4) return KVT_EFORMAT;
    *v = 0;
    for (int i = 0; i < 4; i++) {
        int c = p->s[p->pos + i];
        unsigned d;
        if (c >= '0' && c <= '9') d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') d = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') d = (unsigned)(c - 'A' + 10);
        else return KVT_EFORMAT;
        *v = *v << 4 | d;
    }
    p->pos += 4;
    return 0;
}

static void put(struct jp *p, unsigned char c)
{
    KVT_ASSERT(p->out_len < p->out_cap); /* json_buf_bound guarantees it */
    p->out[p->out_len++] = (char)c;
}

static void put_utf8(struct jp *p, unsigned cp)
{
    if (cp < 0x80) {
        put(p, (unsigned char)cp);
    } else if (cp < 0x800) {
        put(p, (unsigned char)(0xC0 | cp >> 6));
        put(p, (unsigned char)(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        put(p, (unsigned char)(0xE0 | cp >> 12));
        put(p, (unsigned char)(0x80 | (cp >> 6 & 0x3F)));
        put(p, (unsigned char)(0x80 | (cp & 0x3F)));
    } else {
        put(p, (unsigned char)(0xF0 | cp >> 18));
        put(p, (unsigned char)(0x80 | (cp >> 12 & 0x3F)));
        put(p, (unsigned char)(0x80 | (cp >> 6 & 0x3F)));
        put(p, (unsigned char)(0x80 | (cp & 0x3F)));
    }
}

/* Length of the valid UTF-8 sequence at s[0..n) (>= 2 bytes, s[0] >= 0x80),
 * or 0 if it is not valid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0], cp;
    size_t k;
    if (c >= 0xC2 && c <= 0xDF) { k = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { k = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { k = 4; cp = c & 0x07; }
    else return 0;
    if (n < k) return 0;
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if ((k == 3 && cp < 0x800) || (k == 4 && cp < 0x10000)) return 0; /* overlong */
    if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
    if (cp > 0x10FFFF) return 0;
    return k;
}

/* A string at p->pos (the opening quote), decoded into BUF when DECODE. */
static int string(struct jp *p, int decode, const char **str, size_t *str_len)
{
    KVT_ASSERT(peek(p) == '"');
    p->pos++;
    size_t start = p->out_len;
    for (;;) {
        if (p->pos >= p->len) return KVT_EFORMAT;
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '"') { p->pos++; break; }
        if (c < 0x20) return KVT_EFORMAT;
        if (c >= 0x80) {
            size_t k = utf8_seq((const unsigned char *)p->s + p->pos, p->len - p->pos);
            if (!k) return KVT_EUTF8;
            for (size_t i = 0; i < k; i++)
                if (decode) put(p, (unsigned char)p->s[p->pos + i]);
            p->pos += k;
            continue;
        }
        p->pos++;
        if (c != '\\') {
            if (decode) put(p, c);
            continue;
        }
        if (p->pos >= p->len) return KVT_EFORMAT;
        char e = p->s[p->pos++];
        unsigned cp;
        switch (e) {
        case '"': cp = '"'; break;
        case '\\': cp = '\\'; break;
        case '/': cp = '/'; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u': {
            if (hex4(p, &cp) < 0) return KVT_EFORMAT;
            if (cp >= 0xDC00 && cp <= 0xDFFF) return KVT_EFORMAT; /* lone low */
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                unsigned lo;
                if (p->len - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u')
                    return KVT_EFORMAT; /* lone high surrogate */
                p->pos += 2;
                if (hex4(p, &lo) < 0) return KVT_EFORMAT;
                if (lo < 0xDC00 || lo > 0xDFFF) return KVT_EFORMAT;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (cp == 0) return KVT_EFORMAT;
            break;
        }
        default:
            return KVT_EFORMAT;
        }
        if (decode) put_utf8(p, cp);
    }
    if (decode) {
        put(p, 0);
        *str = p->out + start;
        *str_len = p->out_len - start - 1;
    }
    return 0;
}

static int digits(struct jp *p)
{
    size_t s = p->pos;
    while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
    return p->pos > s ? 0 : KVT_EFORMAT;
}

static int number(struct jp *p, double *v)
{
    size_t start = p->pos;
    if (peek(p) == '-') p->pos++;
    if (peek(p) == '0') p->pos++;
    else if (digits(p) < 0) return KVT_EFORMAT;
    if (peek(p) == '.') {
        p->pos++;
        if (digits(p) < 0) return KVT_EFORMAT;
    }
    if (peek(p) == 'e' || peek(p) == 'E') {
        p->pos++;
        if (peek(p) == '+' || peek(p) == '-') p->pos++;
        if (digits(p) < 0) return KVT_EFORMAT;
    }
    char tmp[64];
    size_t n = p->pos - start;
    if (n >= sizeof tmp) { /* long but valid: strtod on a heap copy */
        char *h = malloc(n + 1);
        if (!h) return -ENOMEM;
        memcpy(h, p->s + start, n);
        h[n] = 0;
        *v = strtod(h, NULL);
        free(h);
    } else {
        memcpy(tmp, p->s + start, n);
        tmp[n] = 0;
        *v = strtod(tmp, NULL);
    }
    return 0;
}

static int literal(struct jp *p, const char *word)
{
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0) return KVT_EFORMAT;
    p->pos += n;
    return 0;
}

/* Validate and skip any value (nested structures included). */
static int skip_value(struct jp *p, int depth)
{
    if (depth > JSON_MAX_DEPTH) return KVT_EFORMAT;
    ws(p);
    int c = peek(p);
    double d;
    if (c == '"') return string(p, 0, NULL, NULL);
    if (c == 't') return literal(p, "true");
    if (c == 'f') return literal(p, "false");
    if (c == 'n') return literal(p, "null");
    if (c == '-' || (c >= '0' && c <= '9')) return number(p, &d);
    if (c != '{' && c != '[') return KVT_EFORMAT;
    int close = c == '{' ? '}' : ']';
    p->pos++;
    ws(p);
    if (peek(p) == close) { p->pos++; return 0; }
    for (;;) {
        int rc;
        if (close == '}') {
            ws(p);
            if (peek(p) != '"') return KVT_EFORMAT;
            if ((rc = string(p, 0, NULL, NULL)) < 0) return rc;
            ws(p);
            if (peek(p) != ':') return KVT_EFORMAT;
            p->pos++;
        }
        if ((rc = skip_value(p, depth + 1)) < 0) return rc;
        ws(p);
        c = peek(p);
        p->pos++;
        if (c == close) return 0;
        if (c != ',') { p->pos--; return KVT_EFORMAT; }
    }
}

/* A member value into F. */
static int member_value(struct jp *p, struct json_field *f)
{
    ws(p);
    int c = peek(p);
    size_t start = p->pos;
    int rc;
    if (c == '"') {
        f->type = JSON_STR;
        return string(p, 1, &f->str, &f->str_len);
    }
    if (c == 't' || c == 'f') {
        f->type = JSON_BOOL;
        f->b = c == 't';
        return literal(p, c == 't' ? "true" : "false");
    }
    if (c == 'n') {
        f->type = JSON_NULL;
        return literal(p, "null");
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        f->type = JSON_NUM;
        rc = number(p, &f->num);
    } else {
        f->type = JSON_SKIPPED;
        rc = skip_value(p, 1);
    }
    f->str = p->s + start;
    f->str_len = p->pos - start;
    return rc;
}

size_t json_buf_bound(size_t len) { return len + 1; }

int json_parse_object(const char *text, size_t len, char *buf, size_t buf_cap,
                      struct json_field *fields, int fields_cap,
                      size_t *err_off)
{
    struct jp p = { text, len, 0, buf, buf_cap, 0 };
    int n = 0, rc = 0;
    if (buf_cap < json_buf_bound(len)) { rc = -ENOSPC; goto out; }
    ws(&p);
    if (peek(&p) != '{') { rc = KVT_EFORMAT; goto out; }
    p.pos++;
    ws(&p);
    if (peek(&p) == '}') {
        p.pos++;
    } else {
        for (;;) {
            ws(&p);
            if (peek(&p) != '"') { rc = KVT_EFORMAT; goto out; }
            if (n >= fields_cap) { rc = -ENOSPC; goto out; }
            struct json_field *f = &fields[n];
            memset(f, 0, sizeof *f);
            if ((rc = string(&p, 1, &f->key, &f->key_len)) < 0) goto out;
            ws(&p);
            if (peek(&p) != ':') { rc = KVT_EFORMAT; goto out; }
            p.pos++;
            if ((rc = member_value(&p, f)) < 0) goto out;
            n++;
            ws(&p);
            int c = peek(&p);
            if (c == '}') { p.pos++; break; }
            if (c != ',') { rc = KVT_EFORMAT; goto out; }
            p.pos++;
        }
    }
    ws(&p);
    if (p.pos != len) rc = KVT_EFORMAT; /* trailing garbage */
out:
    if (err_off) *err_off = p.pos;
    return rc < 0 ? rc : n;
}

const struct json_field *json_get(const struct json_field *fields, int n,
                                  const char *key)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(fields[i].key, key)) return &fields[i];
    return NULL;
}
