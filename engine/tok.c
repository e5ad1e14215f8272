/* tok.c - SentencePiece-style BPE ("llama") and byte-level BPE ("gpt2")
 * tokenizers, matching llama.cpp's llm_tokenizer_spm / llm_tokenizer_bpe
 * with add_special = false, parse_special = false (see tok.h).
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
 * BPE: the GPT-2 pre-tokenizer regex (PCRE2, UTF + UCP) splits the text
 * into words; each word's bytes are mapped to printable code points and
 * merged lowest merge rank first (ties: left-most).
 */
#include "engine/tok.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "io/kvt.h"

enum { TOK_SPM = 0, TOK_BPE = 1 };

/* llama.cpp token types (tokenizer.ggml.token_type). */
enum {
    TOK_T_UNDEFINED = 0, TOK_T_NORMAL = 1, TOK_T_UNKNOWN = 2,
    TOK_T_CONTROL = 3, TOK_T_USER = 4, TOK_T_UNUSED = 5, TOK_T_BYTE = 6
};

/* Longest text tok_encode accepts (symbol indices are int32). */
#define TOK_TEXT_MAX ((size_t)1 << 28)

static const char tok_gpt2_re[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+"
    "|\\s+(?!\\S)|\\s+";

/* ---- string table: strings in one arena + open-addressing hash ---------- */

typedef struct tok_strtab {
    char *arena;    /* strings, each NUL-terminated */
    size_t *off;    /* (n) */
    uint32_t *len;  /* (n) */
    int n;
    int32_t *slot;  /* (mask + 1): 0 or index + 1 */
    size_t mask;
} tok_strtab;

static uint64_t tok_hash(const char *s, size_t n) { return XXH3_64bits(s, n); }

/* Index of string S[0..n) or -1. */
static int tok_tab_find(const tok_strtab *t, const char *s, size_t n)
{
    size_t h = (size_t)tok_hash(s, n) & t->mask;
    for (;;) {
        int32_t v = t->slot[h];
        if (v == 0) return -1;
        int i = v - 1;
        if (t->len[i] == n && memcmp(t->arena + t->off[i], s, n) == 0)
            return i;
        h = (h + 1) & t->mask;
    }
}

/* Index string I; when another index holds the same string, LAST_WINS
 * chooses which one the table keeps. */
static void tok_tab_insert(tok_strtab *t, int i, int last_wins)
{
    const char *s = t->arena + t->off[i];
    size_t h = (size_t)tok_hash(s, t->len[i]) & t->mask;
    for (;;) {
        int32_t v = t->slot[h];
        if (v == 0) {
            t->slot[h] = i + 1;
            return;
        }
        int j = v - 1;
        if (t->len[j] == t->len[i] && memcmp(t->arena + t->off[j], s,
                                              t->len[i]) == 0) {
            if (last_wins) t->slot[h] = i + 1;
            return;
        }
        h = (h + 1) & t->mask;
    }
}

static void tok_tab_free(tok_strtab *t)
{
    free(t->arena);
    free(t->off);
    free(t->len);
    free(t->slot);
}

/* Fill T from the string array KEY of G. */
static int tok_tab_load(tok_strtab *t, const gguf *g, const char *key,
                        int last_wins)
{
    int et;
    uint64_t n;
    int rc = gguf_get_arr(g, key, &et, &n);
    if (rc < 0) return rc;
    if (et != GGUF_VT_STR || n == 0 || n > INT32_MAX / 4) return KVT_EFORMAT;
    size_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        if ((rc = gguf_arr_str(g, key, i, &s, &len)) < 0) return rc;
        if (len > UINT32_MAX) return KVT_EFORMAT;
        total += len + 1; /* bounded by the file size */
    }
    size_t cap = 16;
    while (cap < 2 * (size_t)n) cap *= 2;
    t->n = (int)n;
    t->arena = malloc(total);
    t->off = malloc(n * sizeof *t->off);
    t->len = malloc(n * sizeof *t->len);
    t->slot = calloc(cap, sizeof *t->slot);
    t->mask = cap - 1;
    if (!t->arena || !t->off || !t->len || !t->slot) return -ENOMEM;
    size_t pos = 0;
    for (uint64_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        gguf_arr_str(g, key, i, &s, &len);
        memcpy(t->arena + pos, s, len);
        t->arena[pos + len] = '\0';
        t->off[i] = pos;
        t->len[i] = (uint32_t)len;
        pos += len + 1;
        tok_tab_insert(t, (int)i, last_wins);
    }
    return 0;
}

/* ---- the handle ---------------------------------------------------------- */

struct tok {
    int model;             /* TOK_SPM or TOK_BPE */
    tok_strtab vocab;      /* pieces; id = index */
    float *score;          /* (n_vocab) SPM merge scores */
    uint8_t *type;         /* (n_vocab) TOK_T_* */
    tok_strtab merges;     /* BPE: "left right"; rank = index */
    int bos, eos, unk, add_bos, add_space_prefix;
    int32_t byte_tok[256]; /* id for a raw byte (fallback), -1 if none */
    uint8_t isolated[128]; /* SPM: ASCII char in no multi-char piece */
    pcre2_code *re;        /* BPE pre-tokenizer */
    char b2u[256][2];      /* BPE: byte -> UTF-8 of its code point */
    uint8_t b2u_len[256];
    int16_t u2b[324];      /* BPE: code point -> byte, -1 if none */
};

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static int tok_fail(char *err, size_t cap, int code, const char *fmt, ...)
{
    if (err && cap > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, cap, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* Bytes in the UTF-8 sequence starting with lead byte C (1 for bad). */
static size_t tok_utf8_len(unsigned char c)
{
    static const uint8_t lens[16] = {1, 1, 1, 1, 1, 1, 1, 1,
                                     1, 1, 1, 1, 2, 2, 3, 4};
    return lens[c >> 4];
}

/* 1 if S[0..n) is well-formed UTF-8 (no overlongs, surrogates, > U+10FFFF). */
static int tok_utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
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
        if (n - i <= k) return 0;
        if (s[i + 1] < lo || s[i + 1] > hi) return 0;
        for (size_t j = 2; j <= k; j++)
            if ((s[i + j] & 0xC0) != 0x80) return 0;
        i += k + 1;
    }
    return 1;
}

/* ---- open ---------------------------------------------------------------- */

static int tok_opt_id(const gguf *g, const char *key, int def, int n,
                      int *out)
{
    int64_t v;
    int rc = gguf_get_int(g, key, &v);
    if (rc == KVT_EMISSING) {
        *out = def < n ? def : -1;
        return 0;
    }
    if (rc < 0) return rc;
    if (v < 0 || v >= n) return KVT_ERANGE;
    *out = (int)v;
    return 0;
}

static int tok_opt_bool(const gguf *g, const char *key, int def, int *out)
{
    int64_t v;
    int rc = gguf_get_int(g, key, &v);
    if (rc == KVT_EMISSING) {
        *out = def;
        return 0;
    }
    if (rc < 0) return rc;
    *out = v != 0;
    return 0;
}

/* GPT-2 bytes_to_unicode: printable bytes map to themselves, the others to
 * 256, 257, ... in byte order. */
static void tok_init_byte_map(tok *t)
{
    int next = 256;
    for (int i = 0; i < 324; i++) t->u2b[i] = -1;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) ||
                   (b >= 174 && b <= 255);
        int cp = keep ? b : next++;
        t->u2b[cp] = (int16_t)b;
        if (cp < 0x80) {
            t->b2u[b][0] = (char)cp;
            t->b2u_len[b] = 1;
        } else {
            t->b2u[b][0] = (char)(0xC0 | (cp >> 6));
            t->b2u[b][1] = (char)(0x80 | (cp & 0x3F));
            t->b2u_len[b] = 2;
        }
    }
}

static int tok_id(const tok *t, const char *s, size_t n)
{
    return tok_tab_find(&t->vocab, s, n);
}

static int tok_hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* The byte of a piece "<0xHH>" (exactly two hex digits, either case), or
 * -1 if the piece is not of that form. */
static int tok_byte_piece(const char *p, size_t k)
{
    if (k != 6 || p[0] != '<' || p[1] != '0' || p[2] != 'x' || p[5] != '>') return -1;
    int hi = tok_hexval(p[3]), lo = tok_hexval(p[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

/* 1 if a piece looks like a byte piece, "<0x" ... ">" of at most 8 bytes. */
static int tok_byte_like(const char *p, size_t k)
{
    return k >= 4 && k <= 8 && memcmp(p, "<0x", 3) == 0 && p[k - 1] == '>';
}

/* Byte pieces (SPM): a piece of type BYTE must be "<0xHH>", and so must any
 * piece that looks like one ("<0x-1>", "<0xZZ>", "<0x1>" are refused rather
 * than taken as text); two pieces for one byte are refused. Fills byte_tok
 * from them. */
static int tok_check_bytes(tok *t, char *err, size_t cap)
{
    for (int b = 0; b < 256; b++) t->byte_tok[b] = -1;
    if (t->model != TOK_SPM) return 0;
    for (int i = 0; i < t->vocab.n; i++) {
        const char *p = t->vocab.arena + t->vocab.off[i];
        size_t k = t->vocab.len[i];
        int ty = t->type[i];
        if (ty != TOK_T_BYTE && (ty == TOK_T_USER || ty == TOK_T_CONTROL || !tok_byte_like(p, k)))
            continue;
        int b = tok_byte_piece(p, k);
        if (b < 0)
            return tok_fail(err, cap, KVT_EFORMAT, "tokenizer.ggml.tokens[%d]: byte piece "
                            "'%.*s' is not <0xHH>", i, (int)KVT_MIN(k, 16), p);
        if (t->byte_tok[b] >= 0)
            return tok_fail(err, cap, KVT_EFORMAT, "tokenizer.ggml.tokens[%d]: byte piece "
                            "'%.*s' repeats token %d", i, (int)k, p, t->byte_tok[b]);
        t->byte_tok[b] = i;
    }
    return 0;
}

static void tok_init_bytes(tok *t)
{
    for (int b = 0; b < 256; b++) {
        char buf[8];
        int id;
        if (t->model == TOK_BPE) {
            id = tok_id(t, t->b2u[b], t->b2u_len[b]);
        } else {
            id = t->byte_tok[b]; /* tok_check_bytes */
            if (id < 0) {
                buf[0] = (char)b;
                id = tok_id(t, buf, 1);
            }
            if (id < 0) id = t->unk;
        }
        t->byte_tok[b] = id;
    }
    memset(t->isolated, 1, sizeof t->isolated);
    for (int i = 0; i < t->vocab.n; i++) {
        const unsigned char *s =
            (const unsigned char *)t->vocab.arena + t->vocab.off[i];
        size_t n = t->vocab.len[i];
        if (n == 0 || tok_utf8_len(s[0]) >= n) continue; /* one char */
        for (size_t j = 0; j < n; j++)
            if (s[j] < 0x80) t->isolated[s[j]] = 0;
    }
    t->isolated[' '] = 0; /* a space is escaped to U+2581 before merging */
}

static int tok_load_arrays(tok *t, const gguf *g, char *err, size_t cap)
{
    int n = t->vocab.n, et;
    uint64_t m;
    t->score = calloc((size_t)n, sizeof *t->score);
    t->type = malloc((size_t)n);
    if (!t->score || !t->type) return -ENOMEM;
    memset(t->type, TOK_T_NORMAL, (size_t)n);
    int rc = gguf_get_arr(g, "tokenizer.ggml.scores", &et, &m);
    if (rc == 0) {
        if (m != (uint64_t)n)
            return tok_fail(err, cap, KVT_EFORMAT, "tokenizer.ggml.scores "
                            "has %llu entries, want %d",
                            (unsigned long long)m, n);
        for (int i = 0; i < n; i++) {
            double v;
            if ((rc = gguf_arr_float(g, "tokenizer.ggml.scores", (uint64_t)i,
                                     &v)) < 0)
                return tok_fail(err, cap, rc, "tokenizer.ggml.scores is "
                                "not numeric");
            t->score[i] = (float)v;
        }
    } else if (rc != KVT_EMISSING) {
        return tok_fail(err, cap, rc, "tokenizer.ggml.scores: bad type");
    }
    rc = gguf_get_arr(g, "tokenizer.ggml.token_type", &et, &m);
    if (rc == 0) {
        if (m != (uint64_t)n)
            return tok_fail(err, cap, KVT_EFORMAT, "tokenizer.ggml.token_type"
                            " has %llu entries, want %d",
                            (unsigned long long)m, n);
        for (int i = 0; i < n; i++) {
            int64_t v;
            if ((rc = gguf_arr_int(g, "tokenizer.ggml.token_type",
                                   (uint64_t)i, &v)) < 0)
                return tok_fail(err, cap, rc, "tokenizer.ggml.token_type is "
                                "not an integer array");
            t->type[i] = (v >= 0 && v <= TOK_T_BYTE) ? (uint8_t)v
                                                      : TOK_T_UNDEFINED;
        }
    } else if (rc != KVT_EMISSING) {
        return tok_fail(err, cap, rc, "tokenizer.ggml.token_type: bad type");
    }
    return 0;
}

/* Special tokens: BOS, EOS and UNK are used; every other
 * tokenizer.ggml.*_token_id (padding, separator, cls, mask, eot, fim ...)
 * is checked too. An id outside the vocabulary is an error naming the key
 * (it would otherwise be dropped silently). */
static int tok_load_specials(tok *t, const gguf *g, char *err, size_t cap)
{
    static const char pre[] = "tokenizer.ggml.", suf[] = "_token_id";
    int n = t->vocab.n, spm = t->model == TOK_SPM, rc;
    for (int i = 0; i < gguf_n_kv(g); i++) {
        const char *k = gguf_key(g, i);
        size_t kl = strlen(k);
        if (kl <= sizeof pre + sizeof suf - 2 || strncmp(k, pre, sizeof pre - 1) ||
            strcmp(k + kl - (sizeof suf - 1), suf))
            continue;
        int64_t v;
        if ((rc = gguf_get_int(g, k, &v)) < 0)
            return tok_fail(err, cap, rc, "%s is not an integer", k);
        if (v < 0 || v >= n)
            return tok_fail(err, cap, KVT_ERANGE, "%s = %lld is outside the vocabulary "
                            "(%d tokens)", k, (long long)v, n);
    }
    if ((rc = tok_opt_id(g, "tokenizer.ggml.bos_token_id", spm ? 1 : -1, n,
                         &t->bos)) < 0 ||
        (rc = tok_opt_id(g, "tokenizer.ggml.eos_token_id", spm ? 2 : -1, n,
                         &t->eos)) < 0 ||
        (rc = tok_opt_id(g, "tokenizer.ggml.unknown_token_id", spm ? 0 : -1,
                         n, &t->unk)) < 0 ||
        (rc = tok_opt_bool(g, "tokenizer.ggml.add_bos_token", spm,
                           &t->add_bos)) < 0 ||
        (rc = tok_opt_bool(g, "tokenizer.ggml.add_space_prefix", spm,
                           &t->add_space_prefix)) < 0)
        return tok_fail(err, cap, rc, "bad special token metadata");
    return 0;
}

static int tok_open_impl(tok *t, const gguf *g, char *err, size_t cap)
{
    const char *model;
    size_t mlen;
    int rc = gguf_get_str(g, "tokenizer.ggml.model", &model, &mlen);
    if (rc < 0)
        return tok_fail(err, cap, rc, "no string tokenizer.ggml.model");
    if (mlen == 5 && memcmp(model, "llama", 5) == 0) t->model = TOK_SPM;
    else if (mlen == 4 && memcmp(model, "gpt2", 4) == 0) t->model = TOK_BPE;
    else
        return tok_fail(err, cap, KVT_EUNSUPP, "tokenizer model '%.*s' is "
                        "not supported (want llama or gpt2)",
                        (int)KVT_MIN(mlen, 32), model);
    rc = tok_tab_load(&t->vocab, g, "tokenizer.ggml.tokens", 1);
    if (rc < 0)
        return tok_fail(err, cap, rc, "tokenizer.ggml.tokens: %s",
                        kvt_strerror(rc));
    if ((rc = tok_load_arrays(t, g, err, cap)) < 0) return rc;
    if ((rc = tok_load_specials(t, g, err, cap)) < 0) return rc;
    tok_init_byte_map(t);
    if (t->model == TOK_BPE) {
        rc = tok_tab_load(&t->merges, g, "tokenizer.ggml.merges", 0);
        if (rc < 0)
            return tok_fail(err, cap, rc, "tokenizer.ggml.merges: %s",
                            kvt_strerror(rc));
        int ecode;
        PCRE2_SIZE eoff;
        t->re = pcre2_compile((PCRE2_SPTR)tok_gpt2_re, PCRE2_ZERO_TERMINATED,
                              PCRE2_UTF | PCRE2_UCP, &ecode, &eoff, NULL);
        if (!t->re)
            return tok_fail(err, cap, KVT_EUNSUPP, "PCRE2 cannot compile "
                            "the GPT-2 pre-tokenizer regex");
        pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE); /* optional speed-up */
    }
    if ((rc = tok_check_bytes(t, err, cap)) < 0) return rc;
    tok_init_bytes(t);
    return 0;
}

int tok_open(const gguf *g, tok **out, char *err, size_t err_cap)
{
    KVT_ASSERT(g != NULL);
    KVT_ASSERT(out != NULL);
    *out = NULL;
    if (err && err_cap) err[0] = '\0';
    tok *t = calloc(1, sizeof *t);
    if (!t) return -ENOMEM;
    int rc = tok_open_impl(t, g, err, err_cap);
    if (rc < 0) {
        if (rc == -ENOMEM) tok_fail(err, err_cap, rc, "out of memory");
        tok_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void tok_free(tok *t)
{
    if (!t) return;
    tok_tab_free(&t->vocab);
    tok_tab_free(&t->merges);
    free(t->score);
    free(t->type);
    if (t->re) pcre2_code_free(t->re);
    free(t);
}

int tok_n_vocab(const tok *t) { return t->vocab.n; }
int tok_bos(const tok *t) { return t->bos; }
int tok_eos(const tok *t) { return t->eos; }
int tok_add_bos(const tok *t) { return t->add_bos; }

/* SPM: every byte can become up to 3 byte tokens (a space is U+2581, 3
 * bytes), plus the 3-byte dummy prefix, plus BOS. BPE needs at most len+1. */
size_t tok_encode_bound(size_t len)
{
    if (len > (SIZE_MAX - 8) / 3) return SIZE_MAX;
    return 3 * len + 4;
}

const char *tok_piece(const tok *t, int id)
{
    if (id < 0 || id >= t->vocab.n) return NULL;
    return t->vocab.arena + t->vocab.off[id];
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
        size_t k = KVT_MIN(len - i, tok_utf8_len((unsigned char)s->buf[i]));
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

static int tok_encode_spm(const tok *t, tok_scratch *s, tok_out *o,
                          const char *text, size_t len)
{
    size_t pos = 0;
    int first = 1;
    while (pos < len) {
        size_t end = pos;
        while (end < len && !((unsigned char)text[end] < 0x80 &&
                              t->isolated[(unsigned char)text[end]]))
            end++;
        int prefix = first && t->add_space_prefix;
        if (end > pos || prefix) {
            int rc = tok_spm_segment(t, s, o, text + pos, end - pos, prefix);
            if (rc < 0) return rc;
        }
        first = 0;
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

static int tok_encode_bpe(const tok *t, tok_scratch *s, tok_out *o,
                          const char *text, size_t len)
{
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(t->re, NULL);
    if (!md) return -ENOMEM;
    size_t pos = 0;
    int rc = 0;
    while (pos < len && rc == 0) {
        int m = pcre2_match(t->re, (PCRE2_SPTR)text, len, pos,
                            PCRE2_NO_UTF_CHECK, md, NULL);
        size_t a = len, b = len;
        if (m >= 0) {
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            a = ov[0];
            b = ov[1];
        } else if (m != PCRE2_ERROR_NOMATCH) {
            rc = KVT_EUNSUPP; /* e.g. PCRE2 match limit */
            break;
        }
        if (a > pos) rc = tok_bpe_word(t, s, o, text + pos, a - pos);
        if (rc == 0 && b > a) rc = tok_bpe_word(t, s, o, text + a, b - a);
        if (b == a && a < len) /* empty match: step one character */
            b = a + KVT_MIN(len - a, tok_utf8_len((unsigned char)text[a]));
        pos = b;
    }
    pcre2_match_data_free(md);
    return rc;
}

int64_t tok_encode(const tok *t, const char *text, size_t len, int add_bos,
                   int32_t *ids, size_t cap)
{
    KVT_ASSERT(t != NULL);
    KVT_ASSERT(text != NULL || len == 0);
    KVT_ASSERT(ids != NULL || cap == 0);
    if (!tok_utf8_valid((const unsigned char *)text, len)) return KVT_EUTF8;
    if (len > TOK_TEXT_MAX) return KVT_ERANGE;
    if (t->model == TOK_BPE && t->merges.n >= (1 << 24)) return KVT_ERANGE;
    tok_out o = {.ids = ids, .cap = cap};
    if (add_bos && t->bos >= 0 && tok_emit(&o, t->bos) < 0) return -ENOSPC;
    if (len == 0) return (int64_t)o.n;
    tok_scratch s = {0};
    int rc = t->model == TOK_SPM ? tok_encode_spm(t, &s, &o, text, len)
                                 : tok_encode_bpe(t, &s, &o, text, len);
    tok_scratch_free(&s);
    return rc < 0 ? rc : (int64_t)o.n;
}

/* ---- decode -------------------------------------------------------------- */

static int tok_put(char *buf, size_t cap, size_t *n, const char *s, size_t k)
{
    if (k > cap - *n) return -ENOSPC;
    memcpy(buf + *n, s, k);
    *n += k;
    return 0;
}


static int tok_decode_spm(const char *p, size_t k, int type, char *buf,
                          size_t cap)
{
    size_t n = 0;
    if (type == TOK_T_BYTE && tok_byte_piece(p, k) >= 0) {
        char b = (char)tok_byte_piece(p, k);
        return tok_put(buf, cap, &n, &b, 1) < 0 ? -ENOSPC : 1;
    }
    if (type == TOK_T_UNKNOWN)
        return tok_put(buf, cap, &n, "\xe2\x96\x85", 3) < 0 ? -ENOSPC : 3;
    for (size_t i = 0; i < k;) {
        int rc;
        if (type != TOK_T_USER && k - i >= 3 && memcmp(p + i, "\xe2\x96\x81",
                                                       3) == 0) {
            rc = tok_put(buf, cap, &n, " ", 1);
            i += 3;
        } else {
            rc = tok_put(buf, cap, &n, p + i, 1);
            i++;
        }
        if (rc < 0) return rc;
    }
    return (int)n;
}

static int tok_decode_bpe(const tok *t, const char *p, size_t k, int type,
                          char *buf, size_t cap)
{
    size_t n = 0;
    if (type == TOK_T_USER) return tok_put(buf, cap, &n, p, k) < 0
                                       ? -ENOSPC : (int)k;
    for (size_t i = 0; i < k;) {
        size_t l = KVT_MIN(k - i, tok_utf8_len((unsigned char)p[i]));
        unsigned cp = (unsigned char)p[i];
        if (l == 2)
            cp = ((cp & 0x1Fu) << 6) | ((unsigned char)p[i + 1] & 0x3Fu);
        int rc;
        if (l <= 2 && cp < 324 && t->u2b[cp] >= 0) {
            char b = (char)t->u2b[cp];
            rc = tok_put(buf, cap, &n, &b, 1);
        } else {
            rc = tok_put(buf, cap, &n, p + i, l); /* not byte-mapped: as is */
        }
        if (rc < 0) return rc;
        i += l;
    }
    return (int)n;
}

int tok_decode_piece(const tok *t, int id, char *buf, size_t cap)
{
    KVT_ASSERT(t != NULL);
    KVT_ASSERT(buf != NULL || cap == 0);
    if (id < 0 || id >= t->vocab.n) return 0;
    int type = t->type[id];
    if (type == TOK_T_CONTROL || type == TOK_T_UNUSED) return 0;
    const char *p = t->vocab.arena + t->vocab.off[id];
    size_t k = t->vocab.len[id];
    if (k > INT32_MAX) return -ENOSPC;
    return t->model == TOK_SPM ? tok_decode_spm(p, k, type, buf, cap)
                               : tok_decode_bpe(t, p, k, type, buf, cap);
}
