/* tok_encode.c - text -> ids (see tok.h; internals in tok_int.h).
 *
 * SPM: the whole text (spaces -> U+2581, dummy prefix) is one sequence of
 * UTF-8 characters; adjacent pairs whose concatenation is a piece are
 * merged best score first (ties: left-most) through a binary heap with
 * lazy invalidation; a final symbol that is not a piece becomes byte
 * tokens <0xNN>. Exactness trick for speed and memory: an ASCII character
 * that occurs in no piece of two or more characters can never be part of a
 * merge, so the text is cut there into independent segments; the result
 * is identical to running over the whole text at once.
 *
 * BPE: the pre-tokenizer (pretok.h) splits the text into words; each
 * word's bytes are mapped to printable code points; with ignore_merges a
 * word that is a piece is that piece; otherwise merged lowest merge rank
 * first (ties: left-most).
 *
 * Before either, special pieces found in the text (tok_special.h) cut it
 * into fragments; SPM gives the dummy prefix to the first fragment and to
 * every fragment after a special piece, as llama.cpp.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/tok_int.h"
#include "base/kvt.h"

/* Bytes in the UTF-8 sequence starting with lead byte C (1 for bad). */
size_t tok_utf8_len(unsigned char c)
{
    static const uint8_t lens[16] = {1, 1, 1, 1, 1, 1, 1, 1,
                                     1, 1, 1, 1, 2, 2, 3, 4};
    return lens[c >> 4];
}

/* Length of the well-formed UTF-8 sequence at S[0..n) (no overlongs,
 * surrogates or code points > U+10FFFF), or 0 if S does not start one. */
size_t tok_char_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t k;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) k = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
        k = 2;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        k = 3;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else return 0;
    if (n <= k) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t j = 2; j <= k; j++)
        if ((s[j] & 0xC0) != 0x80) return 0;
    return k + 1;
}

/* Offset of the first byte of S[0..n) that starts no well-formed UTF-8
 * sequence, or n if S is well-formed. */
size_t tok_utf8_bad(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = tok_char_len(s + i, n - i);
        if (k == 0) return i;
        i += k;
    }
    return n;
}

/* ---- shared encode machinery -------------------------------------------- */

typedef struct tok_sym {
    int32_t off;  /* byte offset in the segment/word buffer */
    int32_t n;    /* bytes; 0 once merged into its left neighbour */
    int32_t prev, next;
    int32_t id;   /* piece id of the symbol's text, -1 if none */
} tok_sym;

/* A candidate merge of symbol LEFT with its right neighbour. KEY orders
 * the heap (SPM: -score; BPE: rank); smaller KEY first, then smaller LEFT.
 * Stale entries are recognized by SIZE (see tok_merge_all). */
typedef struct tok_pair {
    float key;
    int32_t left;
    int32_t size;
    int32_t id;
} tok_pair;

/* Per-call scratch, grown on demand (amortized; reused across segments). */
typedef struct tok_scratch {
    char *buf;
    size_t buf_cap;
    tok_sym *sym;
    size_t sym_cap;
    tok_pair *heap;
    size_t heap_cap, heap_n;
    char *key;      /* BPE: "left right" lookups */
    size_t key_cap;
} tok_scratch;

static int tok_grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return -ENOMEM;
    *p = q;
    *cap = c;
    return 0;
}

static void tok_scratch_free(tok_scratch *s)
{
    free(s->buf);
    free(s->sym);
    free(s->heap);
    free(s->key);
}

static int tok_pair_less(const tok_pair *a, const tok_pair *b)
{
    return a->key < b->key || (a->key == b->key && a->left < b->left);
}

static void tok_heap_push(tok_scratch *s, tok_pair p)
{
    KVT_ASSERT(s->heap_n < s->heap_cap);
    size_t i = s->heap_n++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!tok_pair_less(&p, &s->heap[up])) break;
        s->heap[i] = s->heap[up];
        i = up;
    }
    s->heap[i] = p;
}

static tok_pair tok_heap_pop(tok_scratch *s)
{
    tok_pair top = s->heap[0], last = s->heap[--s->heap_n];
    size_t i = 0, n = s->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && tok_pair_less(&s->heap[c + 1], &s->heap[c])) c++;
        if (!tok_pair_less(&s->heap[c], &last)) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n > 0) s->heap[i] = last;
    return top;
}

/* Split buf[0..len) into UTF-8 character symbols; sizes the heap for every
 * pair that can ever be pushed (n - 1 initial + 2 per merge). */
static int tok_symbols(tok_scratch *s, size_t len, size_t *n_out)
{
    int rc;
    if ((rc = tok_grow((void **)&s->sym, &s->sym_cap, len + 1,
                       sizeof *s->sym)) < 0 ||
        (rc = tok_grow((void **)&s->heap, &s->heap_cap, 3 * len + 1,
                       sizeof *s->heap)) < 0)
        return rc;
    size_t n = 0, i = 0;
    while (i < len) {
        size_t k = tok_char_len((const unsigned char *)s->buf + i, len - i);
        if (k == 0) k = 1; /* a byte of invalid UTF-8 (--utf8 replace) */
        s->sym[n] = (tok_sym){.off = (int32_t)i, .n = (int32_t)k,
                              .prev = (int32_t)n - 1,
                              .next = i + k < len ? (int32_t)n + 1 : -1,
                              .id = -1};
        n++;
        i += k;
    }
    s->heap_n = 0;
    *n_out = n;
    return 0;
}

/* The candidate merge of L with its right neighbour, if any. */
static void tok_try_pair(const tok *t, tok_scratch *s, int32_t l)
{
    if (l < 0) return;
    int32_t r = s->sym[l].next;
    if (r < 0) return;
    const char *a = s->buf + s->sym[l].off;
    size_t na = (size_t)s->sym[l].n, nb = (size_t)s->sym[r].n;
    tok_pair p = {.left = l, .size = (int32_t)(na + nb)};
    if (t->model == TOK_SPM) {
        int id = tok_id(t, a, na + nb);
        if (id < 0) return;
        p.key = -t->score[id];
        p.id = id;
    } else {
        char *k = s->key; /* sized by the caller: word bytes + 1 */
        memcpy(k, a, na);
        k[na] = ' ';
        memcpy(k + na + 1, a + na, nb);
        int rank = tok_tab_find(&t->merges, k, na + nb + 1);
        if (rank < 0) return;
        p.key = (float)rank; /* exact: ranks < 2^24 checked at use */
        p.id = rank;
    }
    tok_heap_push(s, p);
}

/* Run the merges over symbols 0..n-1 of s->buf. A popped pair is stale
 * when its left symbol was absorbed (n == 0) or either side changed size;
 * since symbols only grow by absorbing their right neighbour, equal total
 * SIZE with a live left symbol means the same two symbols. */
static void tok_merge_all(const tok *t, tok_scratch *s, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++) tok_try_pair(t, s, (int32_t)i);
    while (s->heap_n > 0) {
        tok_pair p = tok_heap_pop(s);
        tok_sym *l = &s->sym[p.left];
        if (l->n == 0 || l->next < 0) continue;
        tok_sym *r = &s->sym[l->next];
        if (l->n + r->n != p.size) continue;
        l->n += r->n;
        l->id = t->model == TOK_SPM ? p.id : -1;
        r->n = 0;
        l->next = r->next;
        if (l->next >= 0) s->sym[l->next].prev = p.left;
        tok_try_pair(t, s, l->prev);
        tok_try_pair(t, s, p.left);
    }
}

typedef struct tok_out {
    int32_t *ids;
    size_t cap, n;
} tok_out;

static int tok_emit(tok_out *o, int32_t id)
{
    if (o->n >= o->cap) return -ENOSPC;
    o->ids[o->n++] = id;
    return 0;
}

/* ---- SPM ----------------------------------------------------------------- */

/* Emit the piece for TEXT[0..n), or its bytes as byte tokens. */
static int tok_spm_emit_text(const tok *t, tok_out *o, const char *text,
                             size_t n, int id)
{
    if (id >= 0) return tok_emit(o, id);
    for (size_t i = 0; i < n; i++) {
        int32_t b = t->byte_tok[(unsigned char)text[i]];
        if (b < 0) continue; /* no byte piece and no unk: dropped */
        int rc = tok_emit(o, b);
        if (rc < 0) return rc;
    }
    return 0;
}

/* Tokenize one segment: [dummy prefix] + escaped TEXT[0..len). */
static int tok_spm_segment(const tok *t, tok_scratch *s, tok_out *o,
                           const char *text, size_t len, int prefix)
{
    static const char sp[3] = {'\xe2', '\x96', '\x81'}; /* U+2581 */
    int rc = tok_grow((void **)&s->buf, &s->buf_cap, 3 * len + 4, 1);
    if (rc < 0) return rc;
    size_t m = 0;
    if (prefix) {
        memcpy(s->buf, sp, 3);
        m = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(s->buf + m, sp, 3);
            m += 3;
        } else {
            s->buf[m++] = text[i];
        }
    }
    size_t n;
    if ((rc = tok_symbols(s, m, &n)) < 0) return rc;
    for (size_t i = 0; i < n; i++)
        s->sym[i].id = tok_id(t, s->buf + s->sym[i].off,
                              (size_t)s->sym[i].n);
    tok_merge_all(t, s, n);
    for (int32_t i = n ? 0 : -1; i >= 0; i = s->sym[i].next) {
        rc = tok_spm_emit_text(t, o, s->buf + s->sym[i].off,
                               (size_t)s->sym[i].n, s->sym[i].id);
        if (rc < 0) return rc;
    }
    return 0;
}

/* SPM over one piece of text; PREFIX: add the dummy prefix (U+2581). */
static int tok_encode_spm(const tok *t, tok_scratch *s, tok_out *o,
                          const char *text, size_t len, int prefix)
{
    size_t pos = 0;
    while (pos < len) {
        size_t end = pos;
        while (end < len && !((unsigned char)text[end] < 0x80 &&
                              t->isolated[(unsigned char)text[end]]))
            end++;
        if (end > pos || prefix) {
            int rc = tok_spm_segment(t, s, o, text + pos, end - pos, prefix);
            if (rc < 0) return rc;
        }
        prefix = 0;
        if (end < len) { /* an isolated ASCII char: never merged */
            int rc = tok_spm_emit_text(t, o, text + end, 1,
                                       tok_id(t, text + end, 1));
            if (rc < 0) return rc;
        }
        pos = end + 1;
    }
    return 0;
}

/* ---- BPE ----------------------------------------------------------------- */

static int tok_bpe_word(const tok *t, tok_scratch *s, tok_out *o,
                        const char *w, size_t len)
{
    int rc;
    if ((rc = tok_grow((void **)&s->buf, &s->buf_cap, 2 * len + 1, 1)) < 0 ||
        (rc = tok_grow((void **)&s->key, &s->key_cap, 2 * len + 2, 1)) < 0)
        return rc;
    size_t m = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char b = (unsigned char)w[i];
        memcpy(s->buf + m, t->b2u[b], t->b2u_len[b]);
        m += t->b2u_len[b];
    }
    if (t->ignore_merges) { /* a word that is a piece is emitted whole */
        int id = tok_id(t, s->buf, m);
        if (id >= 0) return tok_emit(o, id);
    }
    size_t n;
    if ((rc = tok_symbols(s, m, &n)) < 0) return rc;
    tok_merge_all(t, s, n);
    for (int32_t i = n ? 0 : -1; i >= 0; i = s->sym[i].next) {
        const char *p = s->buf + s->sym[i].off;
        size_t k = (size_t)s->sym[i].n;
        int id = tok_id(t, p, k);
        if (id >= 0) {
            if ((rc = tok_emit(o, id)) < 0) return rc;
            continue;
        }
        for (size_t j = 0; j < k; j++) { /* as llama.cpp: single bytes */
            int b = tok_id(t, p + j, 1);
            if (b >= 0 && (rc = tok_emit(o, b)) < 0) return rc;
        }
    }
    return 0;
}

typedef struct tok_bpe_ctx {
    const tok *t;
    tok_scratch *s;
    tok_out *o;
} tok_bpe_ctx;

static int tok_bpe_word_cb(void *ctx, const char *w, size_t n)
{
    tok_bpe_ctx *c = ctx;
    return tok_bpe_word(c->t, c->s, c->o, w, n);
}

/* ---- special pieces inside text, then the tokenizer per fragment -------- */

/* TEXT with every byte that starts no well-formed sequence replaced by
 * U+FFFD (malloc'ed; *out_len its length). */
static char *tok_utf8_replace(const char *text, size_t len, size_t *out_len)
{
    if (len > (SIZE_MAX - 1) / 3) return NULL;
    char *r = malloc(3 * len + 1);
    if (!r) return NULL;
    size_t m = 0, i = 0;
    while (i < len) {
        size_t k = tok_char_len((const unsigned char *)text + i, len - i);
        if (k == 0) {
            memcpy(r + m, "\xef\xbf\xbd", 3);
            m += 3;
            i++;
        } else {
            memcpy(r + m, text + i, k);
            m += k;
            i += k;
        }
    }
    *out_len = m;
    return r;
}

static int tok_encode_frags(const tok *t, tok_out *o, const char *text,
                            const toksp_frag *f, size_t n)
{
    tok_scratch s = {0};
    tok_bpe_ctx bc = {t, &s, o};
    int rc = 0, prev_special = 1;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const toksp_frag *x = &f[i];
        if (x->id >= 0) {
            rc = tok_emit(o, x->id);
            prev_special = 1;
        } else if (t->model == TOK_SPM) {
            rc = tok_encode_spm(t, &s, o, text + x->off, x->len,
                                prev_special && t->add_space_prefix);
            prev_special = 0;
        } else {
            rc = pretok_split(t->pre, text + x->off, x->len, tok_bpe_word_cb,
                              &bc);
        }
    }
    tok_scratch_free(&s);
    return rc;
}

int64_t tok_encode_ex(const tok *t, const char *text, size_t len,
                      unsigned flags, int32_t *ids, size_t cap,
                      size_t *bad_off)
{
    KVT_ASSERT(t != NULL);
    KVT_ASSERT(text != NULL || len == 0);
    KVT_ASSERT(ids != NULL || cap == 0);
    if (len > TOK_TEXT_MAX) return KVT_ERANGE;
    if (t->model == TOK_BPE && t->merges.n >= (1 << 24)) return KVT_ERANGE;
    size_t bad = tok_utf8_bad((const unsigned char *)text, len);
    char *fixed = NULL;
    if (bad < len) {
        if (!(flags & TOK_UTF8_REPLACE)) {
            if (bad_off) *bad_off = bad;
            return KVT_EUTF8;
        }
        if (t->model == TOK_BPE) { /* SPM: bad bytes become byte pieces */
            fixed = tok_utf8_replace(text, len, &len);
            if (!fixed) return -ENOMEM;
            text = fixed;
        }
    }
    tok_out o = {.ids = ids, .cap = cap};
    int rc = 0;
    if ((flags & TOK_ADD_BOS) && t->bos >= 0) rc = tok_emit(&o, t->bos);
    toksp_frag *f = NULL;
    size_t nf = 0;
    unsigned classes = TOKSP_USER |
                       ((flags & TOK_PARSE_SPECIAL) ? TOKSP_CONTROL : 0);
    if (rc == 0) rc = toksp_partition(t->special, text, len, classes, &f, &nf);
    if (rc == 0) rc = tok_encode_frags(t, &o, text, f, nf);
    if (rc == 0 && (flags & TOK_ADD_EOS) && t->eos >= 0)
        rc = tok_emit(&o, t->eos);
    free(f);
    free(fixed);
    return rc < 0 ? rc : (int64_t)o.n;
}

int64_t tok_encode(const tok *t, const char *text, size_t len, int add_bos,
                   int32_t *ids, size_t cap)
{
    return tok_encode_ex(t, text, len, add_bos ? TOK_ADD_BOS : 0, ids, cap,
                         NULL);
}

