/* test_bpe_ref.c - Llama 3's byte-level BPE (llama-bpe) on 5 MiB of text
 * against a naive reference written here from the definition, not from
 * kvtile's tokenizer:
 *   1. split the text with the pre-tokenizer's regex (written out below,
 *      PCRE2 UTF + UCP, interpreter);
 *   2. map each word's bytes to GPT-2's printable code points;
 *   3. a word that is itself a piece is that piece (ignore_merges);
 *   4. otherwise start from its characters and, while some adjacent pair
 *      is a merge, merge the pair of lowest rank (left-most on ties),
 *      scanning every pair every time;
 *   5. look each symbol up in the vocabulary (sorted array, bsearch).
 * Also prints kvtile's throughput on the text. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "engine/gguf.h"
#include "engine/tok.h"
#include "tests/bpetext.h"
#include "tests/t.h"

#define VOCAB T_DATA("vocab/ggml-vocab-llama-bpe.gguf")

/* Llama 3's split (its tokenizer.json, with (?i:...) spelled out). */
static const char llama3_re[] =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
    "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+"
    "|\\p{N}{1,3}"
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+"
    "|\\s+(?!\\S)"
    "|\\s+";

typedef struct entry {
    const char *s;
    size_t n;
    int v; /* id or rank */
} entry;

static int cmp_entry(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    size_t m = x->n < y->n ? x->n : y->n;
    int c = memcmp(x->s, y->s, m);
    if (c) return c;
    if (x->n != y->n) return x->n < y->n ? -1 : 1;
    return x->v < y->v ? -1 : x->v > y->v; /* stable on duplicates */
}

typedef struct table {
    entry *e;
    size_t n;
} table;

static int table_load(table *t, const gguf *g, const char *key)
{
    int et;
    uint64_t n;
    if (gguf_get_arr(g, key, &et, &n) < 0) return -1;
    t->e = malloc(sizeof *t->e * n);
    t->n = n;
    for (uint64_t i = 0; i < n; i++) {
        gguf_arr_str(g, key, i, &t->e[i].s, &t->e[i].n);
        t->e[i].v = (int)i;
    }
    qsort(t->e, n, sizeof *t->e, cmp_entry);
    return 0;
}

/* The entry for S[0..n): FIRST = 1 the lowest value among duplicates
 * (merge ranks: the first one counts), else the highest (token ids: the
 * last one wins, as a text -> id map built in id order). -1 if none. */
static int table_get(const table *t, const char *s, size_t n, int first)
{
    size_t lo = 0, hi = t->n;
    entry key = {s, n, first ? -1 : INT32_MAX};
    while (lo < hi) { /* first entry >= key */
        size_t mid = (lo + hi) / 2;
        if (cmp_entry(&t->e[mid], &key) < 0) lo = mid + 1;
        else hi = mid;
    }
    if (first) {
        if (lo < t->n && t->e[lo].n == n && memcmp(t->e[lo].s, s, n) == 0)
            return t->e[lo].v;
        return -1;
    }
    if (lo > 0 && t->e[lo - 1].n == n && memcmp(t->e[lo - 1].s, s, n) == 0)
        return t->e[lo - 1].v;
    return -1;
}

typedef struct ref {
    table vocab, merges;
    char b2u[256][3]; /* NUL-terminated UTF-8 of each byte's code point */
} ref;

/* GPT-2's bytes_to_unicode: the printable bytes ! .. ~, ¡ .. ¬, ® .. ÿ are
 * their own code point; the other bytes, in order, get 256, 257, ... */
static void ref_byte_map(ref *r)
{
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) ||
                        (b >= 0xAE && b <= 0xFF);
        int cp = printable ? b : 256 + extra++;
        if (cp < 0x80) {
            r->b2u[b][0] = (char)cp;
            r->b2u[b][1] = 0;
        } else {
            r->b2u[b][0] = (char)(0xC0 | (cp >> 6));
            r->b2u[b][1] = (char)(0x80 | (cp & 0x3F));
            r->b2u[b][2] = 0;
        }
    }
}

/* Tokenize one word; append ids to out (*n of them). */
static void ref_word(const ref *r, const char *w, size_t len, int32_t *out,
                     size_t *n)
{
    char *m = calloc(2 * len + 1, 1);
    size_t ml = 0;
    for (size_t i = 0; i < len; i++) {
        const char *u = r->b2u[(unsigned char)w[i]];
        size_t k = strlen(u);
        memcpy(m + ml, u, k);
        ml += k;
    }
    int whole = table_get(&r->vocab, m, ml, 0);
    if (whole >= 0) {
        out[(*n)++] = whole;
        free(m);
        return;
    }
    /* symbols: [start, len) into m */
    size_t ns = 0, *st = malloc(sizeof *st * (ml + 1)), *sl = malloc(sizeof *sl * (ml + 1));
    for (size_t i = 0; i < ml;) {
        size_t k = ((unsigned char)m[i] < 0x80) ? 1 : 2; /* mapped: 1 or 2 bytes */
        st[ns] = i;
        sl[ns++] = k;
        i += k;
    }
    char *key = malloc(ml + 2);
    for (;;) {
        int best = -1;
        size_t at = 0;
        for (size_t i = 0; i + 1 < ns; i++) {
            memcpy(key, m + st[i], sl[i]);
            key[sl[i]] = ' ';
            memcpy(key + sl[i] + 1, m + st[i + 1], sl[i + 1]);
            int rank = table_get(&r->merges, key, sl[i] + sl[i + 1] + 1, 1);
            if (rank >= 0 && (best < 0 || rank < best)) {
                best = rank;
                at = i;
            }
        }
        if (best < 0) break;
        sl[at] += sl[at + 1];
        memmove(st + at + 1, st + at + 2, (ns - at - 2) * sizeof *st);
        memmove(sl + at + 1, sl + at + 2, (ns - at - 2) * sizeof *sl);
        ns--;
    }
    for (size_t i = 0; i < ns; i++) {
        int id = table_get(&r->vocab, m + st[i], sl[i], 0);
        T_CHECK(id >= 0); /* every merge result and every byte is a piece */
        out[(*n)++] = id;
    }
    free(key);
    free(st);
    free(sl);
    free(m);
}

static size_t ref_encode(const ref *r, const char *text, size_t len, int32_t *out)
{
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)llama3_re, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP, &ec, &eo, NULL);
    T_CHECK(re != NULL);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    size_t pos = 0, n = 0;
    while (pos < len) {
        /* the UTF-8 check of the whole subject once, not on every call */
        int rc = pcre2_match(re, (PCRE2_SPTR)text, len, pos,
                             pos ? PCRE2_NO_UTF_CHECK : 0, md, NULL);
        size_t a = len, b = len;
        if (rc >= 0) {
            a = pcre2_get_ovector_pointer(md)[0];
            b = pcre2_get_ovector_pointer(md)[1];
        }
        if (a > pos) ref_word(r, text + pos, a - pos, out, &n); /* a gap */
        if (b > a) ref_word(r, text + a, b - a, out, &n);
        T_CHECK(b > pos); /* this regex never matches empty text */
        if (b <= pos) break;
        pos = b;
    }
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return n;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void test_llama_bpe_5mib(void)
{
    char err[256];
    gguf *g;
    tok *t;
    T_CHECK(gguf_open(VOCAB, &g, err, sizeof err) == 0);
    T_CHECK(tok_open(g, &t, err, sizeof err) == 0);
    size_t len;
    char *text = t_bpe_text(T_DATA("kjv.txt"), 5u << 20, &len);
    T_CHECK(text != NULL);
    if (!text) return;
    T_CHECK(len > (5u << 20) - 256);
    ref r;
    T_CHECK(table_load(&r.vocab, g, "tokenizer.ggml.tokens") == 0);
    T_CHECK(table_load(&r.merges, g, "tokenizer.ggml.merges") == 0);
    ref_byte_map(&r);
    int32_t *want = malloc(sizeof *want * (len + 1));
    size_t cap = tok_encode_bound(len);
    int32_t *got = malloc(sizeof *got * cap);
    double t0 = now_s();
    size_t nw = ref_encode(&r, text, len, want);
    double t_ref = now_s() - t0, best = 1e9;
    int64_t ng = -1;
    for (int rep = 0; rep < 3; rep++) {
        t0 = now_s();
        ng = tok_encode(t, text, len, 0, got, cap);
        double dt = now_s() - t0;
        best = dt < best ? dt : best;
    }
    size_t same = 0;
    while (ng >= 0 && same < nw && same < (size_t)ng && got[same] == want[same]) same++;
    fprintf(stderr, "  %zu bytes: reference %zu ids (%.1f s), kvtile %lld ids, "
            "first %zu equal; kvtile %.2f MB/s (best of 3, 1 thread)\n", len, nw,
            t_ref, (long long)ng, same, (double)len / best / 1e6);
    if (ng >= 0 && same < nw)
        fprintf(stderr, "  first difference at id %zu: want %d, got %d\n", same,
                want[same], same < (size_t)ng ? got[same] : -1);
    T_CHECK(ng == (int64_t)nw);
    T_CHECK(same == nw);
    T_CHECK(nw > 1000000);
    free(r.vocab.e);
    free(r.merges.e);
    free(want);
    free(got);
    free(text);
    tok_free(t);
    gguf_close(g);
}

int main(void)
{
    T_RUN(test_llama_bpe_5mib);
    return t_done();
}
